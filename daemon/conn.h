/*
 * conn.h - the local socket's connections (private to conn.c and server.c).
 *
 * Owns: the listening AF_UNIX SOCK_SEQPACKET socket, every client connection,
 * its credentials (SO_PEERCRED, SO_PEERGROUPS), its queue of replies not yet
 * sent with the descriptors they carry, and the limits that keep one client
 * or one user from holding the daemon (connections per user and in all,
 * requests in flight, replies queued, idle time).
 *
 * DESIGN: the loop thread reads each datagram and hands it to
 * server_dispatch() (server.c). A request that must wait (a fetch, a
 * validation, a listing on a worker) takes a reference on its connection
 * with conn_req_begin() and gives it back with conn_req_end(); a connection
 * closed meanwhile lives on until the last reference is dropped, and its
 * replies are discarded. Reading a connection pauses while it, or its user,
 * has too many requests in flight or too many replies queued, and resumes
 * when they drain: a client that never reads its replies stops itself, not
 * the daemon.
 */
#ifndef GRANARY_CONN_H
#define GRANARY_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "fetch.h"
#include "granaryd.h"
#include "list.h"
#include "proto.h"

struct outmsg;
struct conn_user;
struct refusal;

struct conn {
	struct granaryd *d;
	struct list_node node; /* in server.conns */
	int fd;
	struct event *ev;
	bool writing;
	bool reading; /* EV_READ armed (off while paused by a limit) */
	bool closed;
	int refs;
	unsigned inflight; /* requests taken with conn_req_begin */
	unsigned queued;   /* replies waiting in out_head */
	int64_t last_ns;   /* last request read or reply sent, for the idle timeout */
	struct ucred cred;
	struct caller who;	/* uid, gid and every group: checks as the caller */
	struct conn_user *user; /* per-uid accounting */
	struct outmsg *out_head, *out_tail;
};

struct server {
	struct granaryd *d;
	int fd;
	struct event *ev;
	struct event *accept_timer; /* accept paused after EMFILE */
	struct event *idle_timer;
	struct list_node conns;
	unsigned nconns;
	unsigned refusing; /* refused connections waiting for their one answer */
	struct list_node refusals;
	struct conn_user *users;
	char *path;
	struct proto_buf out; /* replies are built here on the loop thread */
	uint8_t in[PROTO_MSG_MAX + 1];
};

/* Take and drop a reference on @c (the last put frees it). */
void conn_get(struct conn *c);
void conn_put(struct conn *c);

/*
 * Send @len bytes with up to two descriptors attached (-1: none); they are
 * closed afterwards, sent or not. Queued when the client is not reading.
 */
void conn_send2(struct conn *c, const void *data, size_t len, int fd0, int fd1);
void conn_send(struct conn *c, const void *data, size_t len, int fd);

/*
 * A request of @c starts waiting (takes a reference) or is answered (drops
 * it). Reading pauses while the connection or its user is at its limit.
 */
void conn_req_begin(struct conn *c);
void conn_req_end(struct conn *c);

/* One request read from @c (server.c). */
void server_dispatch(struct conn *c, const void *msg, size_t len, bool truncated);

#endif
