/*
 * fabric_impl.h - what fabric.c and fabric_shm.c share; private to them (the
 * rest of the daemon sees fabric.h only).
 *
 * fabric.c is the generic libfabric transport: the endpoint, the completion
 * queue and progress, posting and queueing, memory registration, opening and
 * closing. fabric_shm.c holds what only the shm provider of libfabric 1.17
 * needs (see its DESIGN): doorbells, the names of an endpoint's lives, pid
 * liveness, the look at a peer's region lock, /dev/shm clean-up, and
 * replacing a stuck endpoint. fabric.c calls it through the fabric_shm_*
 * functions below, only when f->shm; fabric_shm.c calls back into the few
 * fabric.c functions declared after them. These two are the only files that
 * include <rdma/fabric.h>. Loop thread.
 *
 * Ownership of the shared state: struct fop and the message buffers,
 * queues, posted and detached lists are fabric.c's (fabric_shm.c's restart
 * and retire detach and free through fabric.c's functions). The fields
 * marked "shm" in struct fabric_peer and struct fabric are fabric_shm.c's;
 * fabric.c only sets them empty when it creates the structs, reads bell_fd
 * (for the progress mode) and gen (the life an operation is posted on), and
 * removes the stale address entries at close.
 */
#ifndef GRANARY_FABRIC_IMPL_H
#define GRANARY_FABRIC_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include <event2/event.h>
#include <rdma/fabric.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>

#include "fabric.h"

#define FABRIC_RECVS 64
#define FABRIC_SENDS 128
#define SHM_NAME_MAX 200  /* ADDRESS.PID.GEN, without the prefix */
#define SHM_INJECT   4096 /* shm: above this a send waits for an answer */

enum fop_kind { FOP_RECV, FOP_SEND, FOP_WRITE };

struct fop {
	struct fi_context2 fctx; /* first: the provider may use it (FI_CONTEXT2) */
	enum fop_kind kind;
	int peer;
	unsigned gen; /* the endpoint life it was posted on */
	bool posted, detached;
	struct fop *qnext;	 /* the peer's queue of posts waiting for room */
	struct fop *prev, *next; /* the peer's list of posted operations */
	void *buf;
	size_t len;
	/* writes */
	struct fabric_mr *mr;
	uint64_t raddr, rkey;
	void *ctx;
};

struct fabric_peer {
	char *address;
	void *dest; /* the provider's form of the address */
	size_t destlen;
	struct sockaddr_un bell; /* shm: the peer's doorbell */
	socklen_t bell_len;
	char inc[SHM_NAME_MAX]; /* shm: the name of its endpoint now, "" if unknown */
	pid_t inc_pid;		/* shm: the pid in that name */
	int64_t asked_ns;	/* shm: when its name was last asked */
	int stat_fd;		/* shm: its /proc/PID/stat, or -1 */
	int64_t alive_ns;	/* shm: when it was last seen alive */
	void *head;		/* shm: its region's first page, read only (see peer_lock_wait()) */
	unsigned n_detached;	/* its detached operations not completed yet */
	fi_addr_t addr;		/* FI_ADDR_NOTAVAIL until inserted */
	struct fop *q_head, *q_tail;
	unsigned queued;
	struct fop *posted;
};

struct fabric_mr {
	struct fid_mr *mr;
	void *desc;
};

struct fabric {
	struct event_base *base;
	struct fabric_cbs cbs;
	struct fi_info *info;
	struct fid_fabric *fab;
	struct fid_domain *dom;
	struct fid_av *av;
	struct fid_cq *cq;
	struct fid_ep *ep;
	int wait_fd;
	struct event *ev_cq, *ev_poll;
	bool shm, closing;
	uint64_t key_mask;
	char prov[64];

	uint8_t *msgbuf; /* FABRIC_RECVS + FABRIC_SENDS slots of FABRIC_MSG_MAX */
	size_t msgbuf_len;
	struct fabric_mr *msg_mr;
	struct fop recvs[FABRIC_RECVS];
	struct fop sends[FABRIC_SENDS];
	struct fop *send_free; /* linked through qnext */

	struct fop *detached;  /* posted to a peer that was reset: see fabric_shm.c */
	unsigned inflight;     /* posted or queued, not detached */
	bool busy;	       /* the last progress found completions */
	int bell_fd;	       /* shm: this node's doorbell, or -1 */
	struct event *ev_bell; /* shm */
	size_t n_peers;
	struct fabric_peer *peers;

	/* shm: the lives of this endpoint (see fabric_shm.c's DESIGN and restart()) */
	char address[SHM_NAME_MAX];
	char name[SHM_NAME_MAX]; /* ADDRESS.PID.GEN */
	unsigned gen;
	struct fid_ep *old_ep; /* the previous life, serving until ev_retire */
	struct event *ev_restart, *ev_retire;
	struct {
		fi_addr_t addr;
		unsigned gen;
	} stale[16]; /* address entries of dead peers, removed with that life */
	size_t n_stale;
};

/* ---- fabric_shm.c, for fabric.c (each only when f->shm) ---- */

/* Whether @address can name an shm endpoint: room for .PID.GEN, no slash. */
bool fabric_shm_address_ok(const char *address);
/*
 * Before the endpoint opens: bind this node's doorbell at @address, remove
 * the regions of this address's dead lives, and name this life (f->name,
 * the source address to open). 0 or -errno after logging.
 */
int fabric_shm_setup(struct fabric *f, const char *address);
/* Once the endpoint is open: the doorbell's event and the restart timers. */
int fabric_shm_start(struct fabric *f);
/* At close, before the endpoint: the events, the doorbell, the previous life. */
void fabric_shm_close(struct fabric *f);
/* @p was added: tell it this endpoint's name, and ask for its own. */
void fabric_shm_peer_add(struct fabric *f, struct fabric_peer *p);
/* At close: what was kept open to watch @p. */
void fabric_shm_peer_close(struct fabric_peer *p);
/* Make @p's destination the name of its endpoint now: 0, or -EAGAIN. */
int fabric_shm_peer_dest(struct fabric *f, struct fabric_peer *p);
/* Before a post to @p: 0, -FI_EAGAIN (queue and retry) or -FI_EHOSTUNREACH. */
int fabric_shm_post_ready(struct fabric *f, struct fabric_peer *p);
/* Something was posted to @p: ring its doorbell. Nothing without one. */
void fabric_shm_ring(struct fabric *f, struct fabric_peer *p);
/* @p was reset; @stuck: a post to it still waits for its answer. */
void fabric_shm_peer_reset(struct fabric *f, struct fabric_peer *p, bool stuck);

/* ---- fabric.c, for fabric_shm.c ---- */

/* The provider's form of destination @address (shm: an endpoint name). */
int dest_for(struct fabric *f, const char *address, void **dest, size_t *len);
/* Insert @p into the address vector when it can be: 0, or -EAGAIN. */
int peer_resolve(struct fabric *f, struct fabric_peer *p);
/* An endpoint on the open domain, enabled; with @name a new shm life. */
int ep_open(struct fabric *f, const char *name, struct fid_ep **out);
/* Detach what is posted to @p (write_done gets @err); true when one waits for an answer. */
bool detach_posted(struct fabric *f, struct fabric_peer *p, int err);
void detached_unlink(struct fabric *f, struct fop *op);
/* Give a send slot back. */
void send_put(struct fabric *f, struct fop *op);
/* Post receive @op again on the endpoint of now. */
void repost_recv(struct fabric *f, struct fop *op);
/* Read completions now. */
void progress(struct fabric *f);
/* Progress again in @usec. */
void schedule_poll(struct fabric *f, long usec);
/* The completion queue's event: progress, then sleep or come back soon. */
void on_event(evutil_socket_t fd, short what, void *arg);

#endif
