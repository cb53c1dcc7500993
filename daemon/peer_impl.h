/*
 * peer_impl.h - what the files of the rack share; private to them (the rest
 * of the daemon sees peer.h only).
 *
 * The rack is four files around this header:
 *   peer.c        membership (the node list, heartbeats, liveness), placement,
 *                 the dispatch of received messages, deadlines, start and
 *                 stop, and the status document;
 *   peer_auth.c   the rack secret, the handshake, session keys, and sealing
 *                 and accepting messages (the only file that uses libcrypto);
 *   peer_pull.c   the requester side: objects fetched from their owners;
 *   peer_serve.c  the owner side: this node's objects sent to the others.
 * Which file owns which part of the shared state is said above struct node
 * and struct peer. Everything runs on the loop thread; there is one rack per
 * process (peer.c's `rack`).
 *
 * Moving an object, requester R (peer_pull.c) and owner O (peer_serve.c):
 *
 *   GET    R -> O  mount, path
 *   INFO   O -> R  status, size, validator       (O ran fetch_get: cache or backend)
 *                   and whether the source is open to every local user (else, or
 *                   when O cannot tell, R keeps its copy private)
 *   WIN    R -> O  offset, length, address, key  (R registered part of a memfd)
 *   WDONE  O -> R  window written; the last one carries the checksum
 *   CANCEL R -> O  the requester gave up
 *
 * O reads its copy into registered buffers (io_uring, one read at a time per
 * object so the checksum is computed in order) and fi_writes each chunk into
 * R's window with delivery complete; WDONE leaves only after every write to
 * the window has completed. R offers at most two windows per object and a
 * bounded number of registered bytes in all, so pinned memory stays small
 * whatever the object size. R hashes each window as it is done, then seals
 * the memfd and checks the checksum before fetch.c sees it.
 */
#ifndef GRANARY_PEER_IMPL_H
#define GRANARY_PEER_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <xxhash.h>

#include "clock.h"
#include "fabric.h"
#include "fetch.h"
#include "granaryd.h"
#include "log.h"
#include "peer.h"
#include "proto.h"
#include "uring.h"

#define WIRE_MAGIC    0x4b415247u /* "GRAK" */
#define WIRE_VERSION  2
#define NODE_NAME_MAX 64 /* bytes with the NUL */
#define NONCE_LEN     32
#define KEY_LEN	      32
#define MAC_LEN	      16
#define SECRET_MAX    4096

/*
 * Registered memory stays under the 8 MiB a default `ulimit -l` allows (verbs
 * pins it; tcp and shm do not): 0.9 MiB of messages (fabric.c), 3 MiB of read
 * buffers, at most 3 MiB of windows.
 */
/* owner: registered read buffers */
#define CHUNK_SIZE	(512u * 1024)
#define CHUNKS		6
#define CHUNKS_PER_PUSH 4
/* requester: windows of the memfd registered for the owner's writes */
#define WINDOW_SIZE	 (1024u * 1024)
#define WINDOWS_PER_PULL 2
#define WINDOW_BUDGET	 (3u * 1024 * 1024)

#define PENDING_MAX 4 /* handshakes answered and not yet proven, per node */

enum msg_type {
	M_HELLO = 1,
	M_CHAL = 2,
	M_AUTH = 3,
	M_OK = 4,
	M_HB = 5,
	M_HB_ACK = 6,
	M_BYE = 7,
	M_GET = 8,
	M_INFO = 9,
	M_WIN = 10,
	M_WDONE = 11,
	M_CANCEL = 12,
};

/*
 * The header of every message. @init says whose session @sid is: 1 when the
 * sender opened it, 0 when the receiver did. All fields in the byte order of
 * the nodes (the rack is one architecture; a swapped magic is dropped).
 */
struct wire_hdr {
	uint32_t magic;
	uint8_t version;
	uint8_t type;
	uint8_t init;
	uint8_t pad;
	uint32_t len; /* body bytes that follow */
	uint32_t pad2;
	uint64_t sid;
	/*
	 * Authenticated messages: 1 for the first in each direction of a
	 * session, then one more each time. HELLO, CHAL, AUTH: the number of
	 * the initiator's HELLO (in the transcript the proofs cover).
	 */
	uint64_t seq;
	uint8_t mac[MAC_LEN]; /* zero in HELLO, CHAL, AUTH */
};

struct m_hello {
	char from[NODE_NAME_MAX];
	char to[NODE_NAME_MAX];
	uint64_t boot;
	uint8_t nonce[NONCE_LEN];
	uint8_t proof[KEY_LEN]; /* HMAC(secret, "hello" | transcript with no responder part) */
};

struct m_chal {
	uint64_t boot;
	uint8_t nonce[NONCE_LEN];
	uint8_t proof[KEY_LEN];
};

struct m_auth {
	uint8_t proof[KEY_LEN];
};

struct m_hb {
	uint64_t seq;
	int64_t t_ns;
};

struct m_get {
	uint64_t req;
	uint16_t mount_len; /* the mount is the first mount_len bytes of the path */
	uint16_t path_len;
	uint32_t pad;
	char path[]; /* not terminated */
};

struct m_info {
	uint64_t req;
	int32_t status; /* 0 or -errno */
	uint32_t mode;
	uint64_t size;
	int64_t mtime_ns;
	uint64_t ino;
	uint32_t uid, gid;
	uint32_t flags; /* INFO_OPEN */
	uint32_t pad;
	uint64_t checksum; /* with size 0 only: there is no WDONE */
	char etag[80];
	char msg[160];
};

/*
 * In m_info.flags: the owner's validator says every local user may read the
 * source (validator.restricted is false). Without it the copy is restricted.
 */
#define INFO_OPEN 1u

struct m_win {
	uint64_t req;
	uint32_t idx;
	uint32_t len;
	uint64_t off;
	uint64_t raddr;
	uint64_t rkey;
};

struct m_wdone {
	uint64_t req;
	uint32_t idx;
	int32_t status;
	uint64_t checksum; /* with last */
	uint32_t last;
	uint32_t pad;
};

struct m_cancel {
	uint64_t req;
};

_Static_assert(sizeof(struct wire_hdr) == 48, "wire header layout");
_Static_assert(KEY_LEN == PEER_KEY_LEN, "session key length");
_Static_assert(sizeof(struct wire_hdr) + sizeof(struct m_get) + PROTO_PATH_MAX <= FABRIC_MSG_MAX,
	       "a GET of the longest path fits a message");

enum out_state { OUT_IDLE, OUT_HELLO, OUT_AUTH, OUT_UP };
enum in_state { IN_NONE, IN_UP };

struct session {
	uint64_t sid;
	uint64_t hseq; /* the number of the HELLO that opened it */
	uint64_t boot_i, boot_r;
	uint8_t nonce_i[NONCE_LEN], nonce_r[NONCE_LEN];
	uint8_t key[KEY_LEN];
	uint64_t tx, rx; /* last sequence number sent, last one taken */
};

/* Responder: a HELLO answered with a CHAL whose AUTH has not come. */
struct pending {
	bool used;
	int64_t at_ns;
	struct session s;
};

/*
 * A node of the rack (this one too, with self set). peer.c: name, address,
 * fid, self, up, last_ack_ns, up_since_ns, rtt_ns, hb_seq, boot, downs.
 * peer_auth.c: the sessions (out and os, in and is), hello_ns, pend, the
 * refusal counters and their log limits; peer.c marks the out session up on
 * OK and idle when the node goes down, and the in session over on BYE.
 * peer_pull.c: pulls, pull_bytes, pull_failures. peer_serve.c: pushes,
 * push_bytes, push_failures.
 */
struct node {
	const char *name, *address;
	int fid; /* fabric peer id; -1 for this node */
	bool self, up;
	/* the session this node opened to it */
	enum out_state out;
	struct session os;
	int64_t hello_ns, last_ack_ns, up_since_ns, rtt_ns;
	uint64_t hb_seq;
	uint64_t boot; /* its boot id as last seen, 0 before */
	/* the session it opened to this node, and its handshakes under way */
	enum in_state in;
	struct session is;
	struct pending pend[PENDING_MAX];
	struct log_limit refused_log, dropped_log;
	/* for status */
	uint64_t pulls, pull_bytes, pull_failures;
	uint64_t pushes, push_bytes, push_failures;
	uint64_t downs, refused, replayed, handshakes;
};

struct chunk {
	struct chunk *next;
	uint8_t *buf;
	struct push *push;
	uint64_t off; /* where in the object */
	uint32_t len;
	int win; /* slot of the window it is written to */
};

struct pull_win {
	bool active, written;
	uint32_t idx, len;
	uint64_t off;
	size_t budget; /* registered bytes counted against WINDOW_BUDGET */
	struct fabric_mr *mr;
};

/* Requester side: one object being fetched from its owner. */
struct pull {
	struct pull *next, *wnext;
	struct node *n;
	struct peer_call *call;
	uint64_t req;
	bool got_info, waiting_room, have_sum;
	int64_t deadline_ns, start_ns;
	int fd;
	uint8_t *map;
	uint64_t size, sum;
	struct validator v;
	uint32_t nwin, next_win, done_upto;
	struct pull_win w[WINDOWS_PER_PULL];
	XXH3_state_t *xx;
	char path[];
};

struct push_win {
	bool active;
	uint32_t idx, len;
	uint64_t off, raddr, rkey;
	uint32_t posted, written; /* bytes read and posted; bytes whose write completed */
};

/* Owner side: one object being sent to a requester. */
struct push {
	struct push *next, *cnext;
	struct peer *p;
	struct node *n;
	uint64_t req;
	struct fetch_waiter w;
	struct uring_req rd;
	bool fetching, reading, aborted, orphan, waiting_chunk, have_expect;
	int fd;
	uint64_t size, expect, obj_id, read_off;
	uint32_t next_idx, done_idx; /* next window expected from R; next WDONE to send */
	uint64_t win_end;	     /* end offset of the last window offered */
	unsigned writes;
	struct chunk *rd_chunk;
	struct push_win win[WINDOWS_PER_PULL];
	XXH3_state_t *xx;
	int64_t deadline_ns, start_ns;
	struct mount *m;
	char path[];
};
/*
 * The rack. peer.c creates and frees it, and owns d, fab, the node list,
 * seeds, the live set, the timers and leaving (set once granaryd stops).
 * peer_auth.c: secret, boot (drawn by peer.c at start), hseq and the refusal
 * counters; peer.c counts unknown_sessions too. peer_pull.c: next_req, pulls,
 * n_pulls, win_used and the queue of pulls waiting for room. peer_serve.c:
 * pushes, n_pushes, and the read buffers (chunks, their free list and the
 * queue of pushes waiting for one); peer.c maps chunk_mem and registers it.
 */

struct peer {
	struct granaryd *d;
	struct fabric *fab;
	size_t n_nodes;
	struct node *nodes;
	struct node *self;
	uint64_t *seeds;
	bool *live;
	size_t n_live;
	uint8_t secret[SECRET_MAX];
	size_t secret_len;
	uint64_t boot;
	int64_t hb_ns, down_ns, idle_ns;
	struct event *ev_hb, *ev_tick;
	uint64_t next_req;
	struct pull *pulls;
	struct push *pushes;
	unsigned n_pulls, n_pushes;
	/* owner: registered read buffers */
	uint8_t *chunk_mem;
	struct fabric_mr *chunk_mr;
	struct chunk chunks[CHUNKS];
	struct chunk *chunk_free;
	struct push *chunk_wait_head, *chunk_wait_tail;
	/* requester: registered window bytes */
	size_t win_used;
	struct pull *room_head, *room_tail;
	/* for status */
	uint64_t bad_macs, unknown_sessions, unknown_nodes, refused, replayed;
	struct log_limit unknown_log;
	uint64_t hseq; /* the number of this node's last HELLO */
	bool leaving;
};

/* ---- peer.c ---- */

/* The node named @name in the configuration, or NULL. */
struct node *node_by_name(struct peer *p, const char *name);
/* A verified boot id from @n: a new one means it restarted (see node_down()). */
void node_boot(struct peer *p, struct node *n, uint64_t boot);

/* ---- peer_auth.c ---- */

/* A random number other than 0. */
uint64_t random_u64(void);
/* Read the rack secret from @path into @p (0600 or stricter). 0 or -errno, logged. */
int secret_load(struct peer *p, const char *path);
/* Wipe the secret and every session key of @p. */
void secrets_wipe(struct peer *p);
/* Authenticated, on this node's own session with @n (requests, heartbeats). */
int send_out(struct peer *p, struct node *n, int type, const void *body, size_t len);
/* Authenticated, on @n's session with this node (answers). */
int send_in(struct peer *p, struct node *n, int type, const void *body, size_t len);
/* Open a new session to @n: a HELLO. */
void send_hello(struct peer *p, struct node *n);
/* The handshake messages, as they arrive (their proofs are checked here). */
void on_hello(struct peer *p, const struct wire_hdr *hdr, const struct m_hello *m);
void on_chal(struct peer *p, const struct wire_hdr *hdr, const struct m_chal *m);
void on_auth(struct peer *p, const struct wire_hdr *hdr, const struct m_auth *m);
/* An authenticated message from @n was dropped: @err from peer_msg_accept(). */
void node_dropped(struct peer *p, struct node *n, int err);

/* ---- peer_pull.c ---- */

/* Ask owner @n for @path (under @m) for @call; call->done reports, maybe at once. */
void pull_start(struct peer *p, struct node *n, struct mount *m, const char *path,
		struct peer_call *call);
/* End @pl with @err and a message; the caller's done() runs. @pl is freed. */
void pull_end(struct peer *p, struct pull *pl, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void on_info(struct peer *p, struct node *n, const struct m_info *m);
void on_wdone(struct peer *p, struct node *n, const struct m_wdone *m);
/* Fail everything asked of @n. */
void pulls_fail_node(struct peer *p, struct node *n, int err, const char *why);
/* End the pulls past their deadline, or all of them when the rack is leaving. */
void pulls_tick(struct peer *p, int64_t now);
/* The loop has ended: free every pull without answering its caller. */
void pulls_abandon(struct peer *p);

/* ---- peer_serve.c ---- */

/* Give read buffer @c back to the pool. */
void chunk_put(struct peer *p, struct chunk *c);
/* fabric.c's write_done for a chunk written to a requester. */
void push_write_done(struct peer *p, struct chunk *c, int err);
void on_get(struct peer *p, struct node *n, const struct m_get *m, size_t len);
void on_win(struct peer *p, struct node *n, const struct m_win *m);
void on_cancel(struct peer *p, struct node *n, const struct m_cancel *m);
/* Stop serving @n: it is gone, or its session was replaced. */
void pushes_abort_node(struct peer *p, struct node *n);
/* Stop the pushes whose requester went quiet, or all of them when leaving. */
void pushes_tick(struct peer *p, int64_t now);
/*
 * The loop has ended: free every push, except those still inside fetch_get
 * or a read, which are left to free themselves. True when a read is still in
 * flight (its buffer must then outlive the rack).
 */
bool pushes_abandon(struct peer *p);

#endif
