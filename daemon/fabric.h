/*
 * fabric.h - the peer transport: one libfabric RDM endpoint with RMA.
 *
 * Owns: the libfabric fabric, domain, address vector, completion queue and
 * endpoint (with shm, its successive lives and their names, and the doorbell
 * socket through which peers learn them); the completion queue's wait fd (or
 * a poll timer where the provider has none) in the daemon's libevent loop; registered buffers for messages;
 * memory registration for the caller; posts that met -FI_EAGAIN and wait to be
 * retried; and, per peer, what is in flight to it, so that a peer declared
 * down gives back everything it held. This is the only module that includes
 * <rdma/fabric.h>: fabric.c, and fabric_shm.c for what only the shm provider
 * needs, around the private fabric_impl.h. Its callers see bytes, addresses
 * and keys. Loop thread.
 *
 * Messages are copied: fabric_send() returns as soon as the copy is queued.
 * RMA writes are posted with delivery-complete semantics: when write_done()
 * reports success the bytes are visible in the target's memory.
 */
#ifndef GRANARY_FABRIC_H
#define GRANARY_FABRIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

/* Largest message fabric_send() carries (a path of PROTO_PATH_MAX and headers). */
#define FABRIC_MSG_MAX 4608

struct fabric;
struct fabric_mr;

struct fabric_cbs {
	void *arg;
	/* A message arrived; @msg is valid during the call only. */
	void (*recv)(void *arg, const void *msg, size_t len);
	/* A write posted with fabric_write() finished: @err 0 or -errno. Once. */
	void (*write_done)(void *arg, void *ctx, int err);
};

/*
 * Open the endpoint of @provider ("tcp;ofi_rxm", "verbs;ofi_rxm", "shm")
 * bound to @address ("host:port"; with shm a name unique on the host) and add
 * its events to @base. 0 with *@out, or -errno after logging why.
 */
int fabric_open(struct event_base *base, const char *provider, const char *address,
		const struct fabric_cbs *cbs, struct fabric **out);

/* Close everything. No callback runs during or after the call. NULL is fine. */
void fabric_close(struct fabric *f);

/* The provider in use, as libfabric names it ("tcp;ofi_rxm"). */
const char *fabric_provider(const struct fabric *f);
/* How completions are noticed: "wait fd", "doorbell and polling", "polling". */
const char *fabric_progress_mode(const struct fabric *f);

/* Add the peer at @address (same form as fabric_open's). Its id, or -errno. */
int fabric_peer_add(struct fabric *f, const char *address);

/*
 * Forget what is in flight to @peer: queued sends are dropped, queued and
 * posted writes report -ECONNRESET through write_done() now (their buffers may
 * be reused at once; a completion that still comes is swallowed). With shm,
 * when a write to it was still unanswered, the endpoint is then replaced by a
 * new one (see fabric_shm.c): writes posted to the other peers report -ECANCELED.
 */
void fabric_peer_reset(struct fabric *f, int peer);

/*
 * Send a copy of @msg (@len <= FABRIC_MSG_MAX) to @peer. 0 when posted or
 * queued behind earlier posts to that peer; -EAGAIN when the peer cannot be
 * reached now (not started yet, too much already queued to it); -ENOBUFS when
 * every message buffer is in use. Delivery is not confirmed: protocols above
 * time out.
 */
int fabric_send(struct fabric *f, int peer, const void *msg, size_t len);

/*
 * Register @len bytes at @buf: as the target of peers' writes (@remote) or as
 * the local source of fabric_write(). On success *@raddr and *@rkey are what a
 * peer writing into @buf must use. -ENOMEM or -EPERM mean the locked-memory
 * limit (ulimit -l) is too small for what the provider pins; the caller logs.
 */
int fabric_mr_reg(struct fabric *f, void *buf, size_t len, bool remote, struct fabric_mr **mr,
		  uint64_t *raddr, uint64_t *rkey);
/* Deregister; NULL is fine. */
void fabric_mr_close(struct fabric_mr *mr);

/*
 * Write @len bytes at @buf (inside @mr, from fabric_mr_reg with !remote) to
 * @peer at @raddr (what the peer's registration gave, plus an offset) with
 * @rkey. write_done(@ctx) follows exactly once, unless this returns an error:
 * -ENOBUFS (out of memory for the request) or -EAGAIN (peer unreachable).
 */
int fabric_write(struct fabric *f, int peer, struct fabric_mr *mr, const void *buf, size_t len,
		 uint64_t raddr, uint64_t rkey, void *ctx);

/* Operations posted or queued and not yet finished. */
unsigned fabric_inflight(const struct fabric *f);

#endif
