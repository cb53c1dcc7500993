/*
 * curl_loop.h - libcurl's multi interface driven by the daemon's libevent loop.
 *
 * Owns: one CURLM handle, the libevent events of its sockets and its timer,
 * and the list of transfers attached to it. Connections (and HTTP/2 streams
 * over them) are kept in the multi handle's cache and reused by every
 * transfer; at most @max_host_conns are open to one host at once, transfers
 * beyond that wait inside libcurl for a free connection.
 *
 * DESIGN: everything here runs on the loop thread. libcurl tells us which
 * sockets to watch (CURLMOPT_SOCKETFUNCTION) and when to wake it
 * (CURLMOPT_TIMERFUNCTION); each event calls curl_multi_socket_action, and
 * finished transfers are detached and handed to their done() after libcurl
 * has returned, so done() may start new transfers or free its own.
 */
#ifndef GRANARY_CURL_LOOP_H
#define GRANARY_CURL_LOOP_H

#include <stdbool.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "list.h"

struct curl_loop;

/*
 * One transfer. The caller owns it and its easy handle, sets the handle up,
 * and fills done; curl_loop_add attaches it. done() runs on the loop thread
 * once the transfer finished (detached by then), with libcurl's result.
 */
struct curl_xfer {
	CURL *easy;
	void (*done)(struct curl_xfer *x, CURLcode rc);
	/* private to curl_loop */
	struct curl_loop *loop;
	struct list_node node; /* in the loop's transfers */
	bool attached;
};

/* Returns NULL with *err = -errno. */
struct curl_loop *curl_loop_create(struct event_base *base, unsigned max_host_conns, int *err);

/*
 * Detach every transfer still attached (their done() is not called; their
 * owners free them), close the connections, free the loop.
 */
void curl_loop_destroy(struct curl_loop *cl);

/* Start @x. Returns 0 or -errno (nothing started). */
int curl_loop_add(struct curl_loop *cl, struct curl_xfer *x);

/* Stop @x if attached, without calling its done(). Safe on a detached one. */
void curl_loop_remove(struct curl_xfer *x);

/* Transfers attached. */
unsigned curl_loop_active(const struct curl_loop *cl);

#endif
