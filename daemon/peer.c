/*
 * peer.c - the rack (see peer.h): membership, authentication, placement, and
 * moving objects between nodes over fabric.c.
 *
 * DESIGN: every node keeps two sessions with every other node: the one it
 * opened (its "out" session, over which it asks for objects and sends
 * heartbeats) and the one the other opened (its "in" session, over which it
 * answers). A session is opened by a four-way handshake that proves both
 * sides hold the rack secret without sending it:
 *
 *   HELLO  initiator -> responder  sid, number, names, boot id, nonce_i,
 *                                  HMAC(secret, "hello" | transcript so far)
 *   CHAL   responder -> initiator  boot id, nonce_r, HMAC(secret, "responder" | transcript)
 *   AUTH   initiator -> responder  HMAC(secret, "initiator" | transcript)
 *   OK     responder -> initiator  (the first message under the session key)
 *
 * and its key is HMAC(secret, "session" | transcript). Every later message
 * carries a sequence number, one more than the last in its direction of its
 * session, and an HMAC-SHA256 (truncated to 128 bits) of header and body under
 * that key; a message whose MAC is wrong, or whose number is not above the
 * last one taken, is dropped.
 *
 * Nothing a node knows about a peer (up or down, its sessions, its boot id,
 * what is in flight with it) changes on a message before that message's
 * proof has verified. A HELLO without a valid proof is refused at once and
 * answered with nothing. A HELLO with one may still be a copy of an old one:
 * the responder answers it from a pending slot beside the established
 * session, which stays as it is until the AUTH of that exchange verifies;
 * only then does the new session replace the old, and a new boot id end what
 * was in flight with the previous life. A HELLO repeating or preceding the
 * established session (same sid, or an older number of the same boot), a
 * CHAL for a handshake already answered and an AUTH for no pending slot are
 * dropped. Answers go to the address the configuration gives for the name a
 * message claims, never to wherever it came from. Refusals are counted per
 * node and logged at most once a second per node name, with the number held
 * back.
 *
 * Liveness: each node sends HB on its out session every peers.heartbeat and
 * the other answers HB_ACK. A node whose acks stop for peers.miss_limit
 * periods is down: what was in flight with it fails at once (fetch.c then
 * reads the backend) and rendezvous hashing leaves it out. It is up again
 * when a handshake with it completes. A new boot id in a verified CHAL or
 * handshake means the node restarted: whatever was in flight with its old
 * self is dropped.
 *
 * Moving an object, requester R and owner O:
 *
 *   GET    R -> O  mount, path
 *   INFO   O -> R  status, size, validator       (O ran fetch_get: cache or backend)
 *                   and whether the source is open to every local user (else, or
 *                   when O cannot tell, R keeps its copy private)
 *   WIN    R -> O  offset, length, address, key  (R registered part of a memfd)
 *   WDONE  O -> R  window written; the last one carries the checksum
 *
 * O reads its copy into registered buffers (io_uring, one read at a time per
 * object so the checksum is computed in order) and fi_writes each chunk into
 * R's window with delivery complete; WDONE leaves only after every write to
 * the window has completed. R offers at most two windows per object and a
 * bounded number of registered bytes in all, so pinned memory stays small
 * whatever the object size. R hashes each window as it is done, then seals
 * the memfd and checks the checksum before fetch.c sees it.
 *
 * O answers GETs through fetch_get(), so single flight holds across the rack:
 * every node sends the misses of an object to its owner. A path being served
 * to a peer is never forwarded again (peer_remote_owner() says no for it),
 * so two nodes that briefly disagree on who is alive cannot bounce a request
 * between them.
 *
 * Everything here runs on the loop thread. There is one rack per process.
 */
#include "peer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <xxhash.h>

#include "fabric.h"
#include "fetch.h"
#include "log.h"
#include "proto.h"
#include "rendezvous.h"
#include "uring.h"

#define WIRE_MAGIC    0x4b415247u /* "GRAK" */
#define WIRE_VERSION  2
#define NODE_NAME_MAX 64 /* bytes with the NUL */
#define NONCE_LEN     32
#define KEY_LEN	      32
#define MAC_LEN	      16
#define SECRET_MIN    16
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

#define TICK_NS		 (100LL * 1000000)  /* deadlines, shutdown */
#define HANDSHAKE_MIN_NS (250LL * 1000000)  /* a HELLO waits at least this for its answer */
#define REFUSED_LOG_NS	 (1000LL * 1000000) /* refusal lines: one a second per node name */
#define PENDING_MAX	 4		    /* handshakes answered and not yet proven, per node */
#define PENDING_NS	 (10 * NS_PER_S)    /* how long one waits for its AUTH */

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

static struct peer *rack; /* one rack per process */

/* ---- small helpers ---- */

static void random_bytes(void *buf, size_t len)
{
	uint8_t *b = buf;

	while (len) {
		ssize_t n = getrandom(b, len, 0);

		if (n < 0)
			continue; /* EINTR; the pool is initialised long after boot */
		b += n;
		len -= (size_t)n;
	}
}

static uint64_t random_u64(void)
{
	uint64_t v;

	do
		random_bytes(&v, sizeof(v));
	while (v == 0);
	return v;
}

static struct node *node_by_name(struct peer *p, const char *name)
{
	for (size_t i = 0; i < p->n_nodes; i++) {
		if (!strcmp(p->nodes[i].name, name))
			return &p->nodes[i];
	}
	return NULL;
}

static void live_update(struct peer *p)
{
	p->n_live = 0;
	for (size_t i = 0; i < p->n_nodes; i++) {
		p->live[i] = p->nodes[i].self || p->nodes[i].up;
		p->n_live += p->live[i];
	}
}

/* ---- authentication ---- */

/* The transcript both proofs and the session key are computed over. */
static size_t transcript(const struct session *s, const char *name_i, const char *name_r,
			 const char *label, uint8_t *out, size_t outsz)
{
	size_t n = 0, l;

#define PUT(ptr, len)                                                                              \
	do {                                                                                       \
		l = (len);                                                                         \
		if (n + l <= outsz)                                                                \
			memcpy(out + n, (ptr), l);                                                 \
		n += l;                                                                            \
	} while (0)
	PUT("granary-rack-v2 ", 16);
	PUT(label, strlen(label) + 1);
	PUT(&s->sid, sizeof(s->sid));
	PUT(&s->hseq, sizeof(s->hseq));
	PUT(name_i, strlen(name_i) + 1);
	PUT(name_r, strlen(name_r) + 1);
	PUT(&s->boot_i, sizeof(s->boot_i));
	PUT(&s->boot_r, sizeof(s->boot_r));
	PUT(s->nonce_i, NONCE_LEN);
	PUT(s->nonce_r, NONCE_LEN);
#undef PUT
	return n;
}

static void rack_hmac(const uint8_t *key, size_t keylen, const void *data, size_t len,
		      uint8_t out[KEY_LEN])
{
	unsigned int olen = KEY_LEN;

	if (!HMAC(EVP_sha256(), key, (int)keylen, data, len, out, &olen))
		memset(out, 0, KEY_LEN); /* never matches a real proof */
}

static void proof(struct peer *p, const struct session *s, const char *name_i, const char *name_r,
		  const char *label, uint8_t out[KEY_LEN])
{
	uint8_t t[512];
	size_t n = transcript(s, name_i, name_r, label, t, sizeof(t));

	rack_hmac(p->secret, p->secret_len, t, n, out);
	OPENSSL_cleanse(t, sizeof(t));
}

/* The authenticator of a message: header (its mac zeroed) and body. */
static void message_mac(const uint8_t key[KEY_LEN], const struct wire_hdr *h, const void *body,
			uint8_t out[MAC_LEN])
{
	uint8_t buf[FABRIC_MSG_MAX], full[KEY_LEN];
	struct wire_hdr copy = *h;

	memset(copy.mac, 0, MAC_LEN);
	memcpy(buf, &copy, sizeof(copy));
	if (h->len && h->len <= sizeof(buf) - sizeof(copy))
		memcpy(buf + sizeof(copy), body, h->len);
	rack_hmac(key, KEY_LEN, buf,
		  sizeof(copy) + (h->len <= sizeof(buf) - sizeof(copy) ? h->len : 0), full);
	memcpy(out, full, MAC_LEN);
}

/* Frame a message: header, then @body; authenticated when @key is given. */
int peer_msg_seal(const uint8_t *key, int type, bool init, uint64_t sid, uint64_t seq,
		  const void *body, size_t len, void *out, size_t outsz)
{
	struct wire_hdr h;

	if (sizeof(h) + len > outsz || sizeof(h) + len > FABRIC_MSG_MAX)
		return -EMSGSIZE;
	memset(&h, 0, sizeof(h));
	h.magic = WIRE_MAGIC;
	h.version = WIRE_VERSION;
	h.type = (uint8_t)type;
	h.init = init ? 1 : 0;
	h.len = (uint32_t)len;
	h.sid = sid;
	h.seq = seq;
	if (key)
		message_mac(key, &h, body, h.mac);
	memcpy(out, &h, sizeof(h));
	if (len)
		memcpy((uint8_t *)out + sizeof(h), body, len);
	return (int)(sizeof(h) + len);
}

/*
 * An authenticated message under @key: 0 when its MAC verifies and its
 * sequence number is above *@last, which then becomes that number.
 */
int peer_msg_accept(const uint8_t *key, uint64_t *last, const void *msg, size_t len)
{
	uint8_t mac[MAC_LEN];
	struct wire_hdr h;

	if (len < sizeof(h))
		return -EPROTO;
	memcpy(&h, msg, sizeof(h));
	if (h.len != len - sizeof(h))
		return -EPROTO;
	message_mac(key, &h, (const uint8_t *)msg + sizeof(h), mac);
	if (CRYPTO_memcmp(mac, h.mac, MAC_LEN) != 0)
		return -EBADMSG;
	if (h.seq <= *last)
		return -EALREADY;
	*last = h.seq;
	return 0;
}

/*
 * A HELLO (@sid, @boot, @hseq) with a valid proof, against the session the
 * same node opened last (@cur_sid, @cur_boot, @cur_hseq; all 0 before the
 * first): false when it is that session's HELLO again, or an older one of the
 * same life.
 */
bool peer_hello_fresh(uint64_t sid, uint64_t boot, uint64_t hseq, uint64_t cur_sid,
		      uint64_t cur_boot, uint64_t cur_hseq)
{
	if (sid == 0)
		return false;
	if (cur_sid == 0)
		return true;
	if (sid == cur_sid)
		return false;
	return boot != cur_boot || hseq > cur_hseq;
}

/* Read the rack secret from @path: a regular file of mode 0600 or stricter. */
static int secret_load(struct peer *p, const char *path)
{
	struct stat sb;
	ssize_t n;
	size_t len = 0;
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		rc = -errno;
		log_errno(LOG_ERR, rc, "cannot open the rack secret peers.secret_file=%s", path);
		return rc;
	}
	if (fstat(fd, &sb) < 0) {
		rc = -errno;
		log_errno(LOG_ERR, rc, "cannot stat the rack secret peers.secret_file=%s", path);
		goto out;
	}
	if (!S_ISREG(sb.st_mode)) {
		log_err("the rack secret is not a regular file peers.secret_file=%s", path);
		rc = -EINVAL;
		goto out;
	}
	if (sb.st_mode & 077) {
		log_err("the rack secret must not be readable by group or others "
			"peers.secret_file=%s mode=%04o (chmod 600 %s)",
			path, (unsigned)(sb.st_mode & 07777), path);
		rc = -EPERM;
		goto out;
	}
	while (len < sizeof(p->secret) &&
	       (n = read(fd, p->secret + len, sizeof(p->secret) - len))) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			log_errno(LOG_ERR, rc, "cannot read the rack secret peers.secret_file=%s",
				  path);
			goto out;
		}
		len += (size_t)n;
	}
	/* a trailing newline from an editor or echo is not part of the secret */
	while (len && (p->secret[len - 1] == '\n' || p->secret[len - 1] == '\r' ||
		       p->secret[len - 1] == ' ' || p->secret[len - 1] == '\t'))
		len--;
	if (len < SECRET_MIN) {
		log_err("the rack secret is too short peers.secret_file=%s bytes=%zu minimum=%d "
			"(head -c 32 /dev/urandom | base64 > FILE)",
			path, len, SECRET_MIN);
		rc = -EINVAL;
		goto out;
	}
	p->secret_len = len;
out:
	close(fd);
	return rc;
}

/* ---- sending ---- */

/*
 * Send a message of @type to @n on the session @sid (@init: this node opened
 * it). With @key the message is authenticated; handshake messages go without.
 */
/*
 * Send a message of @type to @n on the session @s (@init: this node opened
 * it). With @authed the message carries the session's next sequence number
 * and a MAC under its key; handshake messages go without, with the HELLO's
 * number.
 */
static int send_raw(struct peer *p, struct node *n, int type, bool init, struct session *s,
		    bool authed, const void *body, size_t len)
{
	uint8_t buf[FABRIC_MSG_MAX];
	int rc;

	if (!p->fab)
		return -ENOTCONN;
	rc = peer_msg_seal(authed ? s->key : NULL, type, init, s->sid, authed ? s->tx + 1 : s->hseq,
			   body, len, buf, sizeof(buf));
	if (rc < 0)
		return rc;
	if (authed)
		s->tx++; /* a number is never used twice, sent or not */
	return fabric_send(p->fab, n->fid, buf, (size_t)rc);
}

/* On this node's own session with @n (requests, heartbeats). */
static int send_out(struct peer *p, struct node *n, int type, const void *body, size_t len)
{
	return send_raw(p, n, type, true, &n->os, true, body, len);
}

/* On @n's session with this node (answers). */
static int send_in(struct peer *p, struct node *n, int type, const void *body, size_t len)
{
	return send_raw(p, n, type, false, &n->is, true, body, len);
}

/* ---- requester side: pulls ---- */

static void pull_pump_room(struct peer *p);

static void pull_release_windows(struct peer *p, struct pull *pl)
{
	for (int i = 0; i < WINDOWS_PER_PULL; i++) {
		struct pull_win *w = &pl->w[i];

		if (!w->active)
			continue;
		fabric_mr_close(w->mr);
		w->mr = NULL;
		p->win_used -= w->budget;
		w->active = false;
	}
}

static void pull_unlink(struct peer *p, struct pull *pl)
{
	struct pull **pp;

	for (pp = &p->pulls; *pp; pp = &(*pp)->next) {
		if (*pp == pl) {
			*pp = pl->next;
			p->n_pulls--;
			break;
		}
	}
	if (pl->waiting_room) {
		struct pull *prev = NULL, *q;

		for (q = p->room_head; q && q != pl; q = q->wnext)
			prev = q;
		if (q) {
			if (prev)
				prev->wnext = q->wnext;
			else
				p->room_head = q->wnext;
			if (p->room_tail == q)
				p->room_tail = prev;
		}
		pl->waiting_room = false;
	}
}

static void pull_free(struct pull *pl)
{
	if (pl->map && pl->size)
		munmap(pl->map, pl->size);
	if (pl->fd >= 0)
		close(pl->fd);
	XXH3_freeState(pl->xx);
	free(pl);
}

/*
 * End @pl with @err (0: success, call->fd holds the sealed memfd) and a
 * message for the log, then call the caller's done(). On failure the owner is
 * asked to stop when it may still be working on it.
 */
static void pull_end(struct peer *p, struct pull *pl, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void pull_end(struct peer *p, struct pull *pl, int err, const char *fmt, ...)
{
	struct peer_call *call = pl->call;
	struct node *n = pl->n;
	bool had_windows = false;
	va_list ap;

	for (int i = 0; i < WINDOWS_PER_PULL; i++)
		had_windows |= pl->w[i].active;
	pull_release_windows(p, pl);
	pull_unlink(p, pl);
	call->fd = -1;
	call->err = err;
	call->msg[0] = '\0';
	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(call->msg, sizeof(call->msg), fmt, ap);
		va_end(ap);
	}
	if (err) {
		struct m_cancel c = {.req = pl->req};

		n->pull_failures++;
		if (had_windows || !pl->got_info) {
			/* the owner may be working on it still */
			if (n->out == OUT_UP)
				send_out(p, n, M_CANCEL, &c, sizeof(c));
		}
		log_debug("peer fetch failed path=%s owner=%s detail=\"%s\"", pl->path, n->name,
			  call->msg);
		pull_free(pl);
	} else {
		call->fd = pl->fd;
		call->v = pl->v;
		call->checksum = pl->sum;
		pl->fd = -1;
		n->pulls++;
		n->pull_bytes += pl->size;
		log_debug("fetched from peer path=%s owner=%s bytes=%llu ms=%.3f", pl->path,
			  n->name, (unsigned long long)pl->size,
			  (double)(clock_now_ns() - pl->start_ns) / 1e6);
		pull_free(pl);
	}
	pull_pump_room(p);
	call->done(call);
}

/* Every window is written and hashed: seal, check, hand over. */
static void pull_complete(struct peer *p, struct pull *pl)
{
	uint64_t sum = XXH3_64bits_digest(pl->xx);

	if (!pl->have_sum || sum != pl->sum) {
		pull_end(p, pl, -EIO, "the bytes from %s do not match their checksum", pl->n->name);
		return;
	}
	if (pl->map && pl->size)
		munmap(pl->map, pl->size);
	pl->map = NULL;
	if (fcntl(pl->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) <
	    0) {
		pull_end(p, pl, -errno, "cannot seal the memfd");
		return;
	}
	pull_end(p, pl, 0, NULL);
}

/* Offer the owner the next windows of @pl while room allows. */
static int pull_offer(struct peer *p, struct pull *pl)
{
	while (pl->next_win < pl->nwin) {
		struct pull_win *w = &pl->w[pl->next_win % WINDOWS_PER_PULL];
		uint64_t off = (uint64_t)pl->next_win * WINDOW_SIZE;
		uint32_t len =
			(uint32_t)(pl->size - off < WINDOW_SIZE ? pl->size - off : WINDOW_SIZE);
		size_t budget = ((size_t)len + 4095) & ~(size_t)4095;
		struct m_win m;
		int rc;

		if (w->active)
			break; /* two windows out already */
		if (p->win_used + budget > WINDOW_BUDGET && p->win_used > 0)
			break; /* full: a window that ends makes room */
		if (!p->fab)
			return -ENOTCONN;
		rc = fabric_mr_reg(p->fab, pl->map + off, len, true, &w->mr, &m.raddr, &m.rkey);
		if (rc < 0) {
			if (rc == -ENOMEM || rc == -EPERM)
				log_errno(LOG_WARNING, rc,
					  "cannot register a receive window bytes=%u: with an RDMA "
					  "provider raise the locked-memory limit (ulimit -l)",
					  len);
			return rc;
		}
		w->active = true;
		w->written = false;
		w->idx = pl->next_win;
		w->off = off;
		w->len = len;
		w->budget = budget;
		p->win_used += budget;
		m.req = pl->req;
		m.idx = w->idx;
		m.len = len;
		m.off = off;
		rc = send_out(p, pl->n, M_WIN, &m, sizeof(m));
		if (rc < 0)
			return rc;
		pl->next_win++;
	}
	return 0;
}

static bool pull_has_windows(const struct pull *pl)
{
	for (int i = 0; i < WINDOWS_PER_PULL; i++) {
		if (pl->w[i].active)
			return true;
	}
	return false;
}

/*
 * Offer windows to @pl, or queue it for room (at the front: it was first);
 * ends it on failure. True when it waits for room.
 */
static bool pull_advance(struct peer *p, struct pull *pl, bool front)
{
	int rc = pull_offer(p, pl);

	if (rc < 0) {
		pull_end(p, pl, -EIO, "cannot offer a window to %s: %s", pl->n->name,
			 strerror(-rc));
		return false;
	}
	if (pl->next_win >= pl->nwin || pull_has_windows(pl) || pl->waiting_room)
		return false;
	pl->waiting_room = true;
	if (front) {
		pl->wnext = p->room_head;
		p->room_head = pl;
		if (!p->room_tail)
			p->room_tail = pl;
	} else {
		pl->wnext = NULL;
		if (p->room_tail)
			p->room_tail->wnext = pl;
		else
			p->room_head = pl;
		p->room_tail = pl;
	}
	return true;
}

/* Room was freed: the pulls waiting for it go on, in order. */
static void pull_pump_room(struct peer *p)
{
	while (p->room_head) {
		struct pull *pl = p->room_head;

		p->room_head = pl->wnext;
		if (!p->room_head)
			p->room_tail = NULL;
		pl->waiting_room = false;
		if (pull_advance(p, pl, true))
			return;
	}
}

static struct pull *pull_find(struct peer *p, struct node *n, uint64_t req)
{
	for (struct pull *pl = p->pulls; pl; pl = pl->next) {
		if (pl->req == req && pl->n == n)
			return pl;
	}
	return NULL;
}

static void on_info(struct peer *p, struct node *n, const struct m_info *m)
{
	struct pull *pl = pull_find(p, n, m->req);

	if (!pl || pl->got_info)
		return;
	pl->got_info = true;
	pl->deadline_ns = clock_now_ns() + p->idle_ns;
	if (m->status) {
		char msg[sizeof(m->msg) + 1];

		memcpy(msg, m->msg, sizeof(m->msg));
		msg[sizeof(m->msg)] = '\0';
		pull_end(p, pl, -EIO, "%s answered: %s%s%s", n->name, strerror(-m->status),
			 msg[0] ? ": " : "", msg);
		return;
	}
	pl->size = m->size;
	memset(&pl->v, 0, sizeof(pl->v));
	pl->v.size = m->size;
	pl->v.mtime_ns = m->mtime_ns;
	pl->v.ino = m->ino;
	pl->v.mode = m->mode;
	pl->v.uid = m->uid;
	pl->v.gid = m->gid;
	/* the copy is no more visible than the source; unknown is closed */
	pl->v.restricted = !(m->flags & INFO_OPEN);
	memcpy(pl->v.etag, m->etag, sizeof(pl->v.etag));
	pl->v.etag[sizeof(pl->v.etag) - 1] = '\0';

	pl->fd = memfd_create("granary-peer", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (pl->fd < 0) {
		pull_end(p, pl, -errno, "memfd_create failed");
		return;
	}
	if (ftruncate(pl->fd, (off_t)pl->size) < 0) {
		pull_end(p, pl, -errno, "cannot size a memfd of %llu bytes",
			 (unsigned long long)pl->size);
		return;
	}
	if (pl->size == 0) {
		pl->sum = m->checksum;
		pl->have_sum = true;
		pull_complete(p, pl);
		return;
	}
	pl->map = mmap(NULL, pl->size, PROT_READ | PROT_WRITE, MAP_SHARED, pl->fd, 0);
	if (pl->map == MAP_FAILED) {
		pl->map = NULL;
		pull_end(p, pl, -errno, "cannot map a memfd of %llu bytes",
			 (unsigned long long)pl->size);
		return;
	}
	pl->nwin = (uint32_t)((pl->size + WINDOW_SIZE - 1) / WINDOW_SIZE);
	if (p->room_head) {
		/* others wait for room already: behind them */
		pl->waiting_room = true;
		pl->wnext = NULL;
		p->room_tail->wnext = pl;
		p->room_tail = pl;
		return;
	}
	pull_advance(p, pl, false);
}

static void on_wdone(struct peer *p, struct node *n, const struct m_wdone *m)
{
	struct pull *pl = pull_find(p, n, m->req);
	struct pull_win *w;

	if (!pl)
		return;
	pl->deadline_ns = clock_now_ns() + p->idle_ns;
	if (m->status) {
		pull_end(p, pl, -EIO, "%s failed to send it: %s", n->name, strerror(-m->status));
		return;
	}
	w = &pl->w[m->idx % WINDOWS_PER_PULL];
	if (!w->active || w->idx != m->idx) {
		pull_end(p, pl, -EIO, "%s reported an unknown window %u", n->name, m->idx);
		return;
	}
	w->written = true;
	if (m->last) {
		pl->sum = m->checksum;
		pl->have_sum = true;
	}
	/* hash and let go of the windows that are done, in order */
	for (;;) {
		w = &pl->w[pl->done_upto % WINDOWS_PER_PULL];
		if (pl->done_upto >= pl->nwin || !w->active || w->idx != pl->done_upto ||
		    !w->written)
			break;
		fabric_mr_close(w->mr);
		w->mr = NULL;
		XXH3_64bits_update(pl->xx, pl->map + w->off, w->len);
		w->active = false;
		p->win_used -= w->budget;
		pl->done_upto++;
	}
	if (pl->done_upto == pl->nwin) {
		pull_complete(p, pl);
		return;
	}
	pull_advance(p, pl, false);
	pull_pump_room(p);
}

/* Fail everything asked of @n. */
static void pulls_fail_node(struct peer *p, struct node *n, int err, const char *why)
{
	struct pull *pl, *next;

	for (pl = p->pulls; pl; pl = next) {
		next = pl->next;
		if (pl->n == n) {
			pull_end(p, pl, err, "%s: %s", n->name, why);
			next = p->pulls; /* done() may have changed the list */
		}
	}
}

/* ---- owner side: pushes ---- */

static void push_pump(struct push *ps);
static void chunks_pump(struct peer *p);

static void chunk_wait_remove(struct peer *p, struct push *ps)
{
	if (ps->waiting_chunk) {
		struct push *prev = NULL, *q;

		for (q = p->chunk_wait_head; q && q != ps; q = q->cnext)
			prev = q;
		if (q) {
			if (prev)
				prev->cnext = q->cnext;
			else
				p->chunk_wait_head = q->cnext;
			if (p->chunk_wait_tail == q)
				p->chunk_wait_tail = prev;
		}
		ps->waiting_chunk = false;
	}
}

static void push_unlink(struct peer *p, struct push *ps)
{
	struct push **pp;

	for (pp = &p->pushes; *pp; pp = &(*pp)->next) {
		if (*pp == ps) {
			*pp = ps->next;
			p->n_pushes--;
			break;
		}
	}
	chunk_wait_remove(p, ps);
}

static void push_destroy(struct push *ps)
{
	if (ps->fd >= 0)
		close(ps->fd);
	XXH3_freeState(ps->xx);
	free(ps);
}

/* Free @ps once nothing it started is outstanding. */
static void push_maybe_free(struct push *ps)
{
	if (ps->fetching || ps->reading || ps->writes)
		return;
	if (ps->orphan) {
		push_destroy(ps);
		return;
	}
	push_unlink(ps->p, ps);
	push_destroy(ps);
}

/* Stop sending @ps; with @err tell the requester (0: it knows, or is gone). */
static void push_abort(struct push *ps, int err, const char *why)
{
	struct peer *p = ps->p;

	if (ps->aborted)
		return;
	ps->aborted = true;
	if (why) {
		ps->n->push_failures++;
		log_debug("serving a peer stopped path=%s peer=%s detail=\"%s\"", ps->path,
			  ps->n->name, why);
	}
	if (err && ps->n->in == IN_UP) {
		struct m_wdone m = {.req = ps->req, .idx = ps->done_idx, .status = err};

		send_in(p, ps->n, M_WDONE, &m, sizeof(m));
	}
	chunk_wait_remove(p, ps);
	push_maybe_free(ps);
}

static void chunk_put(struct peer *p, struct chunk *c)
{
	c->push = NULL;
	c->next = p->chunk_free;
	p->chunk_free = c;
}

/*
 * Send the WDONEs that are due, in window order; end the push after the last.
 * False when @ps is over (and maybe freed).
 */
static bool push_report(struct push *ps)
{
	struct peer *p = ps->p;

	for (;;) {
		struct push_win *w = &ps->win[ps->done_idx % WINDOWS_PER_PULL];
		struct m_wdone m;
		bool last;

		if (!w->active || w->idx != ps->done_idx || w->written < w->len)
			return true;
		last = w->off + w->len == ps->size;
		memset(&m, 0, sizeof(m));
		m.req = ps->req;
		m.idx = w->idx;
		if (last) {
			m.checksum = XXH3_64bits_digest(ps->xx);
			m.last = 1;
			if (ps->have_expect && m.checksum != ps->expect) {
				struct object *o = index_get(p->d->idx, ps->path);

				log_warn("cache file failed its checksum while serving a peer, "
					 "dropped path=%s id=%llu",
					 ps->path, (unsigned long long)ps->obj_id);
				p->d->c.corrupt++;
				if (o && o->state == OBJ_CACHED && o->id == ps->obj_id)
					fetch_drop(p->d, o, false);
				push_abort(ps, -EIO, "cached copy failed its checksum");
				return false;
			}
		}
		if (send_in(p, ps->n, M_WDONE, &m, sizeof(m)) < 0) {
			push_abort(ps, 0, "cannot send to the requester");
			return false;
		}
		w->active = false;
		ps->done_idx++;
		if (last) {
			ps->n->pushes++;
			ps->n->push_bytes += ps->size;
			log_debug("served a peer path=%s peer=%s bytes=%llu ms=%.3f", ps->path,
				  ps->n->name, (unsigned long long)ps->size,
				  (double)(clock_now_ns() - ps->start_ns) / 1e6);
			ps->aborted = true; /* nothing more to do */
			push_maybe_free(ps);
			return false;
		}
	}
}

static void push_write_done(struct peer *p, struct chunk *c, int err)
{
	struct push *ps = c->push;
	struct push_win *w = &ps->win[c->win];

	ps->writes--;
	if (!ps->aborted && !err)
		w->written += c->len;
	chunk_put(p, c);
	if (ps->aborted) {
		push_maybe_free(ps);
	} else if (err) {
		/* reset: the requester is gone; else tell it, or it waits for its timeout */
		push_abort(ps, err == -ECONNRESET ? 0 : -EIO, strerror(-err));
	} else if (push_report(ps)) {
		push_pump(ps);
	}
	chunks_pump(p);
}

static void push_read_done(struct uring_req *r)
{
	struct push *ps = r->arg;
	struct peer *p = ps->p;
	struct chunk *c = ps->rd_chunk;
	struct push_win *w;
	int rc;

	ps->reading = false;
	ps->rd_chunk = NULL;
	if (ps->orphan) {
		/* the rack stopped: the buffer pool was left alone for this read */
		push_maybe_free(ps);
		return;
	}
	if (ps->aborted || r->res != (ssize_t)c->len) {
		chunk_put(p, c);
		if (!ps->aborted)
			push_abort(ps, -EIO,
				   r->res < 0 ? strerror((int)-r->res) : "short read of the copy");
		else
			push_maybe_free(ps);
		chunks_pump(p);
		return;
	}
	XXH3_64bits_update(ps->xx, c->buf, c->len);
	ps->read_off += c->len;
	w = &ps->win[c->win];
	rc = !p->fab ? -ENOTCONN
		     : fabric_write(p->fab, ps->n->fid, p->chunk_mr, c->buf, c->len,
				    w->raddr + (c->off - w->off), w->rkey, c);
	if (rc < 0) {
		chunk_put(p, c);
		push_abort(ps, 0, "cannot post a write");
		chunks_pump(p);
		return;
	}
	ps->writes++;
	push_pump(ps);
}

/* Start the next read of @ps when a window has room, a buffer is free and none is going. */
static void push_pump(struct push *ps)
{
	struct peer *p = ps->p;
	struct push_win *w = NULL;
	struct chunk *c;

	if (ps->aborted || ps->reading || ps->writes >= CHUNKS_PER_PUSH)
		return;
	for (uint32_t i = ps->done_idx; i < ps->next_idx; i++) {
		struct push_win *x = &ps->win[i % WINDOWS_PER_PULL];

		if (x->active && x->posted < x->len) {
			w = x;
			break;
		}
	}
	if (!w)
		return;
	c = p->chunk_free;
	if (!c) {
		if (!ps->waiting_chunk) {
			ps->waiting_chunk = true;
			ps->cnext = NULL;
			if (p->chunk_wait_tail)
				p->chunk_wait_tail->cnext = ps;
			else
				p->chunk_wait_head = ps;
			p->chunk_wait_tail = ps;
		}
		return;
	}
	p->chunk_free = c->next;
	c->push = ps;
	c->win = (int)(w - ps->win);
	c->len = w->len - w->posted < CHUNK_SIZE ? w->len - w->posted : CHUNK_SIZE;
	c->off = ps->read_off;
	w->posted += c->len;
	ps->rd_chunk = c;
	ps->reading = true;
	memset(&ps->rd, 0, sizeof(ps->rd));
	ps->rd.op = URING_READ;
	ps->rd.fd = ps->fd;
	ps->rd.buf = c->buf;
	ps->rd.len = c->len;
	ps->rd.off = (off_t)ps->read_off;
	ps->rd.done = push_read_done;
	ps->rd.arg = ps;
	uring_submit(p->d->io, &ps->rd);
}

/* Buffers came free: the pushes waiting for one go on, in order. */
static void chunks_pump(struct peer *p)
{
	while (p->chunk_free && p->chunk_wait_head) {
		struct push *ps = p->chunk_wait_head;

		p->chunk_wait_head = ps->cnext;
		if (!p->chunk_wait_head)
			p->chunk_wait_tail = NULL;
		ps->waiting_chunk = false;
		push_pump(ps);
	}
}

static void send_info_error(struct peer *p, struct node *n, uint64_t req, int err, const char *msg)
{
	struct m_info m;

	memset(&m, 0, sizeof(m));
	m.req = req;
	m.status = err ? err : -EIO;
	snprintf(m.msg, sizeof(m.msg), "%s", msg ? msg : "");
	send_in(p, n, M_INFO, &m, sizeof(m));
}

/* fetch_get answered the owner: describe the object to the requester. */
static void push_fetched(struct fetch_waiter *w, struct object *o, int direct_fd, int err,
			 const char *msg, enum proto_source src)
{
	struct push *ps = (struct push *)((char *)w - offsetof(struct push, w));
	struct peer *p = ps->p;
	struct validator v;
	struct m_info m;
	struct stat sb;

	(void)src;
	ps->fetching = false;
	if (ps->orphan || ps->aborted) {
		if (direct_fd >= 0)
			close(direct_fd);
		push_maybe_free(ps);
		return;
	}
	if (err) {
		send_info_error(p, ps->n, ps->req, err, msg);
		ps->n->push_failures++;
		ps->aborted = true;
		push_maybe_free(ps);
		return;
	}
	memset(&v, 0, sizeof(v));
	if (o) {
		ps->fd = fetch_open_cached(p->d, o);
		if (ps->fd < 0) {
			send_info_error(p, ps->n, ps->req, ps->fd, "cannot open the cached copy");
			ps->aborted = true;
			push_maybe_free(ps);
			return;
		}
		v = o->v;
		ps->expect = o->checksum;
		ps->have_expect = true;
		ps->obj_id = o->id;
	} else {
		/*
		 * Not kept here (the policy said no): the source itself, a file
		 * or a sealed memfd. Its own description is the best there is;
		 * whether the path to it is open to everyone is not in it, so
		 * the requester keeps its copy private.
		 */
		ps->fd = direct_fd;
		if (fstat(ps->fd, &sb) < 0) {
			send_info_error(p, ps->n, ps->req, -errno, "fstat of the source failed");
			ps->aborted = true;
			push_maybe_free(ps);
			return;
		}
		v.size = (uint64_t)sb.st_size;
		v.mtime_ns = clock_ns_of(&sb.st_mtim);
		v.ino = (uint64_t)sb.st_ino;
		v.mode = (uint32_t)sb.st_mode;
		v.uid = (uint32_t)sb.st_uid;
		v.gid = (uint32_t)sb.st_gid;
		v.restricted = true;
	}
	ps->size = v.size;
	memset(&m, 0, sizeof(m));
	m.req = ps->req;
	m.size = v.size;
	m.mtime_ns = v.mtime_ns;
	m.ino = v.ino;
	m.mode = v.mode;
	m.uid = v.uid;
	m.gid = v.gid;
	m.flags = v.restricted ? 0 : INFO_OPEN;
	memcpy(m.etag, v.etag, sizeof(m.etag));
	if (v.size == 0)
		m.checksum = XXH3_64bits(NULL, 0);
	ps->deadline_ns = clock_now_ns() + p->idle_ns;
	if (send_in(p, ps->n, M_INFO, &m, sizeof(m)) < 0) {
		push_abort(ps, 0, "cannot send to the requester");
		return;
	}
	if (v.size == 0) {
		ps->n->pushes++;
		ps->aborted = true;
		push_maybe_free(ps);
	}
}

static void on_get(struct peer *p, struct node *n, const struct m_get *m, size_t len)
{
	char path[PROTO_PATH_MAX + 1], norm[PROTO_PATH_MAX + 1];
	struct mount *mt;
	struct push *ps;
	size_t plen = m->path_len;

	if (len < sizeof(*m) + plen || plen == 0 || plen > PROTO_PATH_MAX || m->mount_len > plen) {
		send_info_error(p, n, m->req, -EINVAL, "malformed request");
		return;
	}
	memcpy(path, m->path, plen);
	path[plen] = '\0';
	if (memchr(path, '\0', plen) || proto_path_normalize(path, plen, norm, sizeof(norm)) < 0 ||
	    strcmp(norm, path) != 0) {
		send_info_error(p, n, m->req, -EINVAL, "path not normalised");
		return;
	}
	mt = granaryd_mount_find(p->d, path);
	if (!mt || strlen(mt->cfg->path) != m->mount_len ||
	    memcmp(mt->cfg->path, path, m->mount_len) != 0) {
		send_info_error(p, n, m->req, -ENOENT, "no such mount on this node");
		return;
	}
	if (p->d->stopping || p->leaving) {
		send_info_error(p, n, m->req, -ESHUTDOWN, "shutting down");
		return;
	}
	ps = calloc(1, sizeof(*ps) + plen + 1);
	if (!ps || !(ps->xx = XXH3_createState())) {
		free(ps);
		send_info_error(p, n, m->req, -ENOMEM, "out of memory");
		return;
	}
	XXH3_64bits_reset(ps->xx);
	memcpy(ps->path, path, plen + 1);
	ps->p = p;
	ps->n = n;
	ps->m = mt;
	ps->req = m->req;
	ps->fd = -1;
	ps->start_ns = clock_now_ns();
	ps->deadline_ns = ps->start_ns + p->idle_ns;
	ps->next = p->pushes;
	p->pushes = ps;
	p->n_pushes++;
	ps->w.done = push_fetched;
	ps->w.who = NULL; /* the requester checked its caller; peers are trusted */
	ps->w.foreground = true;
	ps->w.peer = true; /* once per epoch in the policy: see fetch.c */
	ps->w.want_fd = true;
	ps->fetching = true;
	/*
	 * Fetching it from a peer that now asks for it: the two views of the rack
	 * differ for a moment. Waiting on each other would last until a timeout;
	 * this node takes it from the backend instead.
	 */
	for (struct pull *pl = p->pulls; pl;) {
		if (!strcmp(pl->path, ps->path)) {
			pull_end(p, pl, -EAGAIN, "%s asked for it meanwhile", n->name);
			pl = p->pulls;
		} else {
			pl = pl->next;
		}
	}
	fetch_get(p->d, mt, ps->path, &ps->w); /* may answer before returning */
}

static struct push *push_find(struct peer *p, struct node *n, uint64_t req)
{
	for (struct push *ps = p->pushes; ps; ps = ps->next) {
		if (ps->req == req && ps->n == n)
			return ps;
	}
	return NULL;
}

static void on_win(struct peer *p, struct node *n, const struct m_win *m)
{
	struct push *ps = push_find(p, n, m->req);
	struct push_win *w;

	if (!ps || ps->aborted || ps->fetching)
		return;
	w = &ps->win[m->idx % WINDOWS_PER_PULL];
	if (m->idx != ps->next_idx || w->active || m->off != ps->win_end || m->len == 0 ||
	    m->off + m->len > ps->size) {
		push_abort(ps, -EPROTO, "a window out of order");
		return;
	}
	memset(w, 0, sizeof(*w));
	w->active = true;
	w->idx = m->idx;
	w->len = m->len;
	w->off = m->off;
	w->raddr = m->raddr;
	w->rkey = m->rkey;
	ps->next_idx++;
	ps->win_end = m->off + m->len;
	ps->deadline_ns = clock_now_ns() + p->idle_ns;
	push_pump(ps);
}

static void on_cancel(struct peer *p, struct node *n, const struct m_cancel *m)
{
	struct push *ps = push_find(p, n, m->req);

	if (ps)
		push_abort(ps, 0, NULL);
}

static void pushes_abort_node(struct peer *p, struct node *n)
{
	struct push *ps, *next;

	for (ps = p->pushes; ps; ps = next) {
		next = ps->next;
		if (ps->n == n && !ps->aborted) {
			push_abort(ps, 0, "the requester is gone");
			next = p->pushes;
		}
	}
}

/* ---- membership ---- */

static void node_up(struct peer *p, struct node *n)
{
	if (n->up)
		return;
	n->up = true;
	n->up_since_ns = clock_now_ns();
	live_update(p);
	log_info("peer up name=%s address=%s live=%zu", n->name, n->address, p->n_live);
}

/* @n is gone (or restarted): drop what was in flight with it. */
static void node_down(struct peer *p, struct node *n, const char *why)
{
	bool was_up = n->up;

	n->up = false;
	n->out = OUT_IDLE;
	n->hello_ns = 0;
	live_update(p);
	if (was_up) {
		n->downs++;
		log_warn("peer down name=%s address=%s reason=\"%s\" live=%zu", n->name, n->address,
			 why, p->n_live);
	}
	pulls_fail_node(p, n, -EHOSTUNREACH, why);
	pushes_abort_node(p, n);
	if (p->fab)
		fabric_peer_reset(p->fab, n->fid);
}

/* A verified boot id from @n: a new one means it restarted since we last spoke. */
static void node_boot(struct peer *p, struct node *n, uint64_t boot)
{
	if (n->boot && boot != n->boot) {
		log_info("peer restarted name=%s", n->name);
		node_down(p, n, "restarted");
	}
	n->boot = boot;
}

/*
 * A message naming @n failed its proof at @step ("hello", "chal", "auth"):
 * count it, and say so at most once a second for this name. The name is the
 * one the message claims; where it came from is not known here.
 */
static void node_refused(struct peer *p, struct node *n, const char *step)
{
	unsigned long long held;

	n->refused++;
	p->refused++;
	if (!log_limit_pass(&n->refused_log, clock_now_ns(), REFUSED_LOG_NS, &held))
		return;
	if (!strcmp(step, "chal"))
		log_warn("peer failed authentication: it does not hold the rack secret "
			 "name=%s address=%s refused=%llu held=%llu",
			 n->name, n->address, (unsigned long long)n->refused, held);
	else
		log_warn("peer refused: wrong rack secret name=%s step=%s refused=%llu held=%llu",
			 n->name, step, (unsigned long long)n->refused, held);
}

/* An authenticated message on a session with @n was dropped (@err from peer_msg_accept). */
static void node_dropped(struct peer *p, struct node *n, int err)
{
	unsigned long long held;

	if (err == -EALREADY) {
		n->replayed++;
		p->replayed++;
	} else {
		p->bad_macs++;
	}
	if (log_limit_pass(&n->dropped_log, clock_now_ns(), REFUSED_LOG_NS, &held))
		log_warn("message dropped name=%s reason=\"%s\" held=%llu", n->name,
			 err == -EALREADY ? "replayed or out of order" : "bad authenticator", held);
}

/* A handshake message with nothing to do with it: counted as a replay. */
static void node_stale(struct peer *p, struct node *n)
{
	n->replayed++;
	p->replayed++;
}

static void send_hello(struct peer *p, struct node *n)
{
	struct m_hello h;

	memset(&h, 0, sizeof(h));
	memset(&n->os, 0, sizeof(n->os));
	n->os.sid = random_u64();
	n->os.hseq = ++p->hseq;
	n->os.boot_i = p->boot;
	random_bytes(n->os.nonce_i, NONCE_LEN);
	snprintf(h.from, sizeof(h.from), "%s", p->self->name);
	snprintf(h.to, sizeof(h.to), "%s", n->name);
	h.boot = p->boot;
	memcpy(h.nonce, n->os.nonce_i, NONCE_LEN);
	proof(p, &n->os, p->self->name, n->name, "hello", h.proof);
	n->out = OUT_HELLO;
	n->hello_ns = clock_now_ns();
	send_raw(p, n, M_HELLO, true, &n->os, false, &h, sizeof(h));
}

/* The slot for a new pending handshake of @n: a free or stale one, else the oldest. */
static struct pending *pending_slot(struct node *n, int64_t now)
{
	struct pending *oldest = &n->pend[0];

	for (int i = 0; i < PENDING_MAX; i++) {
		struct pending *pd = &n->pend[i];

		if (!pd->used || now - pd->at_ns > PENDING_NS)
			return pd;
		if (pd->at_ns < oldest->at_ns)
			oldest = pd;
	}
	return oldest;
}

static void on_hello(struct peer *p, const struct wire_hdr *hdr, const struct m_hello *m)
{
	char from[NODE_NAME_MAX], to[NODE_NAME_MAX];
	uint8_t want[KEY_LEN];
	struct pending *pd;
	struct session s;
	struct node *n;
	struct m_chal c;
	int64_t now = clock_now_ns();

	if (p->leaving)
		return;
	memcpy(from, m->from, sizeof(from));
	memcpy(to, m->to, sizeof(to));
	from[sizeof(from) - 1] = to[sizeof(to) - 1] = '\0';
	n = node_by_name(p, from);
	if (!n || n->self || strcmp(to, p->self->name) != 0) {
		unsigned long long held;

		p->unknown_nodes++;
		if (log_limit_pass(&p->unknown_log, now, REFUSED_LOG_NS, &held))
			log_warn(
				"hello from a node not in peers.nodes refused name=\"%s\" to=\"%s\" "
				"held=%llu",
				from, to, held);
		return;
	}
	memset(&s, 0, sizeof(s));
	s.sid = hdr->sid;
	s.hseq = hdr->seq;
	s.boot_i = m->boot;
	memcpy(s.nonce_i, m->nonce, NONCE_LEN);
	proof(p, &s, n->name, p->self->name, "hello", want);
	if (CRYPTO_memcmp(want, m->proof, KEY_LEN) != 0) {
		OPENSSL_cleanse(&s, sizeof(s));
		node_refused(p, n, "hello");
		return;
	}
	/* proven, but perhaps a copy: of the established session, or of one under way */
	if (!peer_hello_fresh(s.sid, s.boot_i, s.hseq, n->is.sid, n->is.boot_i, n->is.hseq)) {
		node_stale(p, n);
		return;
	}
	for (int i = 0; i < PENDING_MAX; i++) {
		if (n->pend[i].used && n->pend[i].s.sid == s.sid) {
			node_stale(p, n);
			return;
		}
	}
	/* answered beside the established session, which stays until AUTH */
	s.boot_r = p->boot;
	random_bytes(s.nonce_r, NONCE_LEN);
	pd = pending_slot(n, now);
	OPENSSL_cleanse(pd, sizeof(*pd));
	pd->used = true;
	pd->at_ns = now;
	pd->s = s;
	memset(&c, 0, sizeof(c));
	c.boot = p->boot;
	memcpy(c.nonce, s.nonce_r, NONCE_LEN);
	proof(p, &s, n->name, p->self->name, "responder", c.proof);
	send_raw(p, n, M_CHAL, false, &pd->s, false, &c, sizeof(c));
}

static void on_chal(struct peer *p, const struct wire_hdr *hdr, const struct m_chal *m)
{
	uint8_t want[KEY_LEN], t[512];
	struct session s;
	struct m_auth a;
	struct node *n = NULL;
	size_t len;

	for (size_t i = 0; i < p->n_nodes; i++) {
		if (!p->nodes[i].self && p->nodes[i].out == OUT_HELLO &&
		    p->nodes[i].os.sid == hdr->sid)
			n = &p->nodes[i];
	}
	if (!n) {
		p->unknown_sessions++; /* an answer to an older HELLO, or a copy */
		return;
	}
	/* checked on a copy: the handshake under way is left as it is unless this verifies */
	s = n->os;
	s.boot_r = m->boot;
	memcpy(s.nonce_r, m->nonce, NONCE_LEN);
	proof(p, &s, p->self->name, n->name, "responder", want);
	if (CRYPTO_memcmp(want, m->proof, KEY_LEN) != 0) {
		OPENSSL_cleanse(&s, sizeof(s));
		node_refused(p, n, "chal");
		return;
	}
	node_boot(p, n, m->boot);
	n->os = s;
	OPENSSL_cleanse(&s, sizeof(s));
	proof(p, &n->os, p->self->name, n->name, "initiator", a.proof);
	len = transcript(&n->os, p->self->name, n->name, "session", t, sizeof(t));
	rack_hmac(p->secret, p->secret_len, t, len, n->os.key);
	OPENSSL_cleanse(t, sizeof(t));
	n->os.tx = n->os.rx = 0;
	n->out = OUT_AUTH;
	send_raw(p, n, M_AUTH, true, &n->os, false, &a, sizeof(a));
}

static void on_auth(struct peer *p, const struct wire_hdr *hdr, const struct m_auth *m)
{
	uint8_t want[KEY_LEN], t[512];
	struct pending *pd = NULL;
	struct node *n = NULL;
	int64_t now = clock_now_ns();
	size_t len;

	for (size_t i = 0; i < p->n_nodes && !pd; i++) {
		if (p->nodes[i].self)
			continue;
		for (int j = 0; j < PENDING_MAX; j++) {
			struct pending *x = &p->nodes[i].pend[j];

			if (x->used && x->s.sid == hdr->sid && now - x->at_ns <= PENDING_NS) {
				n = &p->nodes[i];
				pd = x;
				break;
			}
		}
	}
	if (!pd) {
		p->unknown_sessions++; /* already proven, expired, or never answered */
		return;
	}
	proof(p, &pd->s, n->name, p->self->name, "initiator", want);
	if (CRYPTO_memcmp(want, m->proof, KEY_LEN) != 0) {
		node_refused(p, n, "auth");
		return;
	}
	/* proven: now, and only now, the new session replaces the old one */
	node_boot(p, n, pd->s.boot_i);
	if (n->in != IN_NONE)
		pushes_abort_node(p, n); /* they belonged to its previous session */
	OPENSSL_cleanse(&n->is, sizeof(n->is));
	n->is = pd->s;
	OPENSSL_cleanse(pd, sizeof(*pd));
	len = transcript(&n->is, n->name, p->self->name, "session", t, sizeof(t));
	rack_hmac(p->secret, p->secret_len, t, len, n->is.key);
	OPENSSL_cleanse(t, sizeof(t));
	n->is.tx = n->is.rx = 0;
	n->in = IN_UP;
	n->handshakes++;
	send_in(p, n, M_OK, NULL, 0);
	/* it is talking: ours to it need not wait for the next heartbeat */
	if (n->out == OUT_IDLE)
		send_hello(p, n);
}

/* Heartbeats, handshakes, and the liveness verdict, every peers.heartbeat. */
static void on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
	struct peer *p = arg;
	int64_t now = clock_now_ns();
	int64_t retry = p->hb_ns > HANDSHAKE_MIN_NS ? p->hb_ns : HANDSHAKE_MIN_NS;

	(void)fd;
	(void)what;
	if (p->leaving)
		return;
	for (size_t i = 0; i < p->n_nodes; i++) {
		struct node *n = &p->nodes[i];

		if (n->self)
			continue;
		if (n->up && now - n->last_ack_ns > p->down_ns) {
			node_down(p, n, "missed heartbeats");
			continue;
		}
		if (n->out == OUT_UP) {
			struct m_hb hb = {.seq = ++n->hb_seq, .t_ns = now};

			send_out(p, n, M_HB, &hb, sizeof(hb));
		} else if (now - n->hello_ns >= retry) {
			send_hello(p, n);
		}
	}
}

/* ---- receiving ---- */

/* The established session a message names: @n and the session, or NULL. */
static struct node *session_of(struct peer *p, const struct wire_hdr *h, struct session **s)
{
	for (size_t i = 0; i < p->n_nodes; i++) {
		struct node *n = &p->nodes[i];

		if (n->self)
			continue;
		if (h->init && n->in == IN_UP && n->is.sid == h->sid) {
			*s = &n->is;
			return n;
		}
		if (!h->init && (n->out == OUT_AUTH || n->out == OUT_UP) && n->os.sid == h->sid) {
			*s = &n->os;
			return n;
		}
	}
	return NULL;
}

static bool body_fits(const struct wire_hdr *h, size_t want)
{
	return h->len >= want;
}

static void on_recv(void *arg, const void *msg, size_t len)
{
	struct peer *p = arg;
	struct wire_hdr h;
	const uint8_t *body = (const uint8_t *)msg + sizeof(h);
	struct session *s = NULL;
	struct node *n;
	int rc;
	union {
		struct m_hello hello;
		struct m_chal chal;
		struct m_auth auth;
		struct m_hb hb;
		struct m_info info;
		struct m_win win;
		struct m_wdone wdone;
		struct m_cancel cancel;
	} u;

	if (len < sizeof(h))
		return;
	memcpy(&h, msg, sizeof(h));
	if (h.magic != WIRE_MAGIC || h.version != WIRE_VERSION || h.len != len - sizeof(h))
		return;
	memset(&u, 0, sizeof(u));
	if (h.type != M_GET)
		memcpy(&u, body, h.len < sizeof(u) ? h.len : sizeof(u));

	switch (h.type) {
	case M_HELLO:
		if (h.init && body_fits(&h, sizeof(u.hello)))
			on_hello(p, &h, &u.hello);
		return;
	case M_CHAL:
		if (!h.init && body_fits(&h, sizeof(u.chal)))
			on_chal(p, &h, &u.chal);
		return;
	case M_AUTH:
		if (h.init && body_fits(&h, sizeof(u.auth)))
			on_auth(p, &h, &u.auth);
		return;
	default:
		break;
	}

	n = session_of(p, &h, &s);
	if (!n) {
		p->unknown_sessions++;
		return;
	}
	rc = peer_msg_accept(s->key, &s->rx, msg, len);
	if (rc < 0) {
		node_dropped(p, n, rc);
		return;
	}
	/* anything it says proves it alive, even when its acks queue behind data */
	if (n->out == OUT_UP)
		n->last_ack_ns = clock_now_ns();

	switch (h.type) {
	case M_OK:
		if (!h.init && n->out == OUT_AUTH) {
			n->out = OUT_UP;
			n->last_ack_ns = clock_now_ns();
			n->rtt_ns = n->last_ack_ns - n->hello_ns;
			n->handshakes++;
			node_up(p, n);
		}
		return;
	case M_HB:
		if (h.init && body_fits(&h, sizeof(u.hb)))
			send_in(p, n, M_HB_ACK, &u.hb, sizeof(u.hb));
		return;
	case M_HB_ACK:
		if (!h.init && n->out == OUT_UP && body_fits(&h, sizeof(u.hb))) {
			n->last_ack_ns = clock_now_ns();
			n->rtt_ns = n->last_ack_ns - u.hb.t_ns;
			node_up(p, n);
		}
		return;
	case M_BYE:
		if (h.init) {
			log_info("peer leaving name=%s", n->name);
			n->in = IN_NONE;
			node_down(p, n, "left the rack");
		}
		return;
	case M_GET:
		if (h.init && body_fits(&h, sizeof(struct m_get))) {
			/* the path follows the header: read it in place, aligned copy first */
			struct m_get *g = malloc(h.len);

			if (!g)
				return;
			memcpy(g, body, h.len);
			on_get(p, n, g, h.len);
			free(g);
		}
		return;
	case M_INFO:
		if (!h.init && body_fits(&h, sizeof(u.info)))
			on_info(p, n, &u.info);
		return;
	case M_WIN:
		if (h.init && body_fits(&h, sizeof(u.win)))
			on_win(p, n, &u.win);
		return;
	case M_WDONE:
		if (!h.init && body_fits(&h, sizeof(u.wdone)))
			on_wdone(p, n, &u.wdone);
		return;
	case M_CANCEL:
		if (h.init && body_fits(&h, sizeof(u.cancel)))
			on_cancel(p, n, &u.cancel);
		return;
	default:
		return;
	}
}

static void on_write_done(void *arg, void *ctx, int err)
{
	push_write_done(arg, ctx, err);
}

/* ---- housekeeping: deadlines and shutdown ---- */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct peer *p = arg;
	int64_t now = clock_now_ns();
	struct pull *pl;
	struct push *ps;

	(void)fd;
	(void)what;
	if (p->d->stopping && !p->leaving) {
		/* say goodbye so the others stop asking at once, and let go */
		p->leaving = true;
		for (size_t i = 0; i < p->n_nodes; i++) {
			struct node *n = &p->nodes[i];

			if (!n->self && n->out == OUT_UP)
				send_out(p, n, M_BYE, NULL, 0);
		}
	}
	/* each end may change the lists: start over after one */
	for (pl = p->pulls; pl;) {
		if (p->leaving) {
			pull_end(p, pl, -ECANCELED, "granaryd is shutting down");
			pl = p->pulls;
		} else if (now > pl->deadline_ns) {
			pull_end(p, pl, -EIO, "%s did not answer in time", pl->n->name);
			pl = p->pulls;
		} else {
			pl = pl->next;
		}
	}
	for (ps = p->pushes; ps;) {
		if (!ps->aborted && !ps->fetching && (p->leaving || now > ps->deadline_ns)) {
			push_abort(ps, -ETIMEDOUT,
				   p->leaving ? "shutting down" : "the requester went quiet");
			ps = p->pushes;
		} else {
			ps = ps->next;
		}
	}
}

/* ---- the interface ---- */

bool peer_remote_owner(struct granaryd *d, struct mount *m, const char *path)
{
	struct peer *p = rack;
	int owner;

	(void)m;
	if (!p || p->n_live < 2 || d->stopping || p->leaving)
		return false;
	/* being served to a peer: this node is where it ends, whatever it thinks */
	for (struct push *ps = p->pushes; ps; ps = ps->next) {
		if (ps->fetching && !strcmp(ps->path, path))
			return false;
	}
	owner = rendezvous_owner(p->seeds, p->live, p->n_nodes, path, strlen(path));
	return owner >= 0 && !p->nodes[owner].self;
}

void peer_fetch(struct granaryd *d, struct mount *m, const char *path, struct peer_call *call)
{
	struct peer *p = rack;
	struct pull *pl;
	struct m_get *g;
	size_t plen = strlen(path), mlen = strlen(m->cfg->path);
	struct node *n;
	int owner, rc;

	(void)d;
	call->fd = -1;
	call->err = -EHOSTUNREACH;
	call->msg[0] = '\0';
	owner = p ? rendezvous_owner(p->seeds, p->live, p->n_nodes, path, plen) : -1;
	if (owner < 0 || p->nodes[owner].self || !p->nodes[owner].up || plen > PROTO_PATH_MAX) {
		snprintf(call->msg, sizeof(call->msg), "no live owner in the rack");
		call->done(call);
		return;
	}
	n = &p->nodes[owner];
	pl = calloc(1, sizeof(*pl) + plen + 1);
	g = calloc(1, sizeof(*g) + plen);
	if (!pl || !g || !(pl->xx = XXH3_createState())) {
		free(pl);
		free(g);
		call->err = -ENOMEM;
		snprintf(call->msg, sizeof(call->msg), "out of memory");
		call->done(call);
		return;
	}
	XXH3_64bits_reset(pl->xx);
	memcpy(pl->path, path, plen + 1);
	pl->n = n;
	pl->call = call;
	pl->fd = -1;
	pl->req = ++p->next_req;
	pl->start_ns = clock_now_ns();
	pl->deadline_ns = pl->start_ns + p->idle_ns;
	pl->next = p->pulls;
	p->pulls = pl;
	p->n_pulls++;

	g->req = pl->req;
	g->mount_len = (uint16_t)mlen;
	g->path_len = (uint16_t)plen;
	memcpy(g->path, path, plen);
	rc = send_out(p, n, M_GET, g, sizeof(*g) + plen);
	free(g);
	if (rc < 0) {
		pl->got_info = true; /* nothing to cancel */
		pull_end(p, pl, -EHOSTUNREACH, "cannot send to %s: %s", n->name, strerror(-rc));
	}
}

void peer_status_json(struct granaryd *d, void *json_object)
{
	struct peer *p = rack;
	json_t *root = json_object, *r, *nodes;
	int64_t now = clock_now_ns();

	(void)d;
	if (!root)
		return;
	if (!p) {
		json_object_set_new(root, "rack", json_pack("{sb}", "enabled", 0));
		return;
	}
	nodes = json_array();
	for (size_t i = 0; i < p->n_nodes; i++) {
		struct node *n = &p->nodes[i];

		json_array_append_new(
			nodes,
			json_pack("{ss ss sb sb sf sf sI sI sI sI sI sI sI sI sI sI}", "name",
				  n->name, "address", n->address, "self", n->self, "up",
				  n->self || n->up, "up_seconds",
				  n->up ? (double)(now - n->up_since_ns) / 1e9 : 0.0, "rtt_ms",
				  (double)n->rtt_ns / 1e6, "fetched", (json_int_t)n->pulls,
				  "fetched_bytes", (json_int_t)n->pull_bytes, "fetch_failures",
				  (json_int_t)n->pull_failures, "served", (json_int_t)n->pushes,
				  "served_bytes", (json_int_t)n->push_bytes, "serve_failures",
				  (json_int_t)n->push_failures, "downs", (json_int_t)n->downs,
				  "refused", (json_int_t)n->refused, "replayed",
				  (json_int_t)n->replayed, "handshakes",
				  (json_int_t)n->handshakes));
	}
	r = json_pack("{sb ss ss ss sI sI sI sI sI sI sI sI so}", "enabled", 1, "self",
		      p->self->name, "provider",
		      p->fab ? fabric_provider(p->fab) : p->d->cfg->peers.provider, "progress",
		      p->fab ? fabric_progress_mode(p->fab) : "none", "live", (json_int_t)p->n_live,
		      "fetching", (json_int_t)p->n_pulls, "serving", (json_int_t)p->n_pushes,
		      "refused", (json_int_t)p->refused, "replayed", (json_int_t)p->replayed,
		      "bad_macs", (json_int_t)p->bad_macs, "unknown_sessions",
		      (json_int_t)p->unknown_sessions, "window_bytes", (json_int_t)p->win_used,
		      "nodes", nodes);
	if (r)
		json_object_set_new(root, "rack", r);
}

/*
 * Open the endpoint, add the other nodes and register the read buffers. On
 * failure everything opened here is closed again.
 */
static int transport_open(struct peer *p)
{
	const struct config *cfg = p->d->cfg;
	struct fabric_cbs cbs = {.arg = p, .recv = on_recv, .write_done = on_write_done};
	size_t len = (size_t)CHUNKS * CHUNK_SIZE;
	int rc;

	rc = fabric_open(p->d->base, cfg->peers.provider, p->self->address, &cbs, &p->fab);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < p->n_nodes; i++) {
		struct node *n = &p->nodes[i];

		if (n->self)
			continue;
		n->fid = fabric_peer_add(p->fab, n->address);
		if (n->fid < 0) {
			rc = n->fid;
			goto err;
		}
	}
	rc = fabric_mr_reg(p->fab, p->chunk_mem, len, false, &p->chunk_mr, NULL, NULL);
	if (rc < 0) {
		log_errno(LOG_ERR, rc,
			  "cannot register the rack's read buffers bytes=%zu: with an RDMA "
			  "provider raise the locked-memory limit (ulimit -l, LimitMEMLOCK=)",
			  len);
		goto err;
	}
	return 0;
err:
	fabric_close(p->fab);
	p->fab = NULL;
	return rc;
}

static void transport_close(struct peer *p)
{
	fabric_mr_close(p->chunk_mr);
	p->chunk_mr = NULL;
	fabric_close(p->fab);
	p->fab = NULL;
}

static void rack_free(struct peer *p, bool keep_chunks)
{
	if (p->ev_hb)
		event_free(p->ev_hb);
	if (p->ev_tick)
		event_free(p->ev_tick);
	transport_close(p);
	if (p->chunk_mem && !keep_chunks)
		munmap(p->chunk_mem, (size_t)CHUNKS * CHUNK_SIZE);
	OPENSSL_cleanse(p->secret, sizeof(p->secret));
	for (size_t i = 0; i < p->n_nodes; i++) {
		OPENSSL_cleanse(&p->nodes[i].os, sizeof(p->nodes[i].os));
		OPENSSL_cleanse(&p->nodes[i].is, sizeof(p->nodes[i].is));
		OPENSSL_cleanse(p->nodes[i].pend, sizeof(p->nodes[i].pend));
	}
	free(p->nodes);
	free(p->seeds);
	free(p->live);
	free(p);
}

int peer_start(struct granaryd *d)
{
	const struct config *cfg = d->cfg;
	struct peer *p;
	struct timeval tv;
	int rc;

	if (cfg->peers.n_nodes == 0)
		return 0; /* no rack: every object is this node's own */
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->d = d;
	p->n_nodes = cfg->peers.n_nodes;
	p->nodes = calloc(p->n_nodes, sizeof(*p->nodes));
	p->seeds = calloc(p->n_nodes, sizeof(*p->seeds));
	p->live = calloc(p->n_nodes, sizeof(*p->live));
	if (!p->nodes || !p->seeds || !p->live) {
		rc = -ENOMEM;
		goto err;
	}
	for (size_t i = 0; i < p->n_nodes; i++) {
		struct node *n = &p->nodes[i];

		n->name = cfg->peers.nodes[i].name;
		n->address = cfg->peers.nodes[i].address;
		n->fid = -1;
		n->self = !strcmp(n->name, cfg->peers.self);
		if (strlen(n->name) >= NODE_NAME_MAX) {
			log_err("peer name too long name=%s maximum=%d", n->name,
				NODE_NAME_MAX - 1);
			rc = -EINVAL;
			goto err;
		}
		if (n->self)
			p->self = n;
		p->seeds[i] = rendezvous_node_seed(n->name);
	}
	if (!p->self) {
		log_err("peers.self is not among peers.nodes self=%s", cfg->peers.self);
		rc = -EINVAL;
		goto err;
	}
	live_update(p);
	rc = secret_load(p, cfg->peers.secret_file);
	if (rc < 0)
		goto err;
	p->boot = random_u64();
	p->hb_ns = (int64_t)cfg->peers.heartbeat_ns;
	p->down_ns = p->hb_ns * (int64_t)(cfg->peers.miss_limit ? cfg->peers.miss_limit : 1);
	/* generous: an owner may itself be fetching a large object from a slow backend */
	p->idle_ns = 2 * (int64_t)cfg->fetch.timeout_ns * (int64_t)(cfg->fetch.retries + 1);
	if (p->idle_ns < 10 * NS_PER_S)
		p->idle_ns = 10 * NS_PER_S;
	if (p->n_nodes == 1) {
		log_info("rack of one node name=%s: nothing to share", p->self->name);
		rack = p;
		return 0;
	}

	p->chunk_mem = mmap(NULL, (size_t)CHUNKS * CHUNK_SIZE, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p->chunk_mem == MAP_FAILED) {
		p->chunk_mem = NULL;
		rc = -errno;
		goto err;
	}
	for (int i = CHUNKS - 1; i >= 0; i--) {
		p->chunks[i].buf = p->chunk_mem + (size_t)i * CHUNK_SIZE;
		chunk_put(p, &p->chunks[i]);
	}
	rc = transport_open(p);
	if (rc < 0)
		goto err;
	p->ev_hb = event_new(d->base, -1, EV_PERSIST, on_heartbeat, p);
	p->ev_tick = event_new(d->base, -1, EV_PERSIST, on_tick, p);
	if (!p->ev_hb || !p->ev_tick) {
		rc = -ENOMEM;
		goto err;
	}
	tv = clock_timeval((int64_t)p->hb_ns);
	event_add(p->ev_hb, &tv);
	tv = clock_timeval(TICK_NS);
	event_add(p->ev_tick, &tv);
	rack = p;
	for (size_t i = 0; i < p->n_nodes; i++) {
		if (!p->nodes[i].self)
			send_hello(p, &p->nodes[i]);
	}
	log_info("rack started self=%s nodes=%zu provider=%s heartbeat_ms=%lld miss_limit=%u",
		 p->self->name, p->n_nodes, fabric_provider(p->fab),
		 (long long)(p->hb_ns / 1000000), cfg->peers.miss_limit);
	return 0;

err:
	rack_free(p, false);
	return rc;
}

void peer_stop(struct granaryd *d)
{
	struct peer *p = rack;
	bool reading = false;

	(void)d;
	if (!p)
		return;
	rack = NULL;
	/*
	 * The loop has ended. Calls still waiting are not answered (their fetches
	 * are abandoned with the loop); pushes still inside fetch_get or a read
	 * are left for those to free.
	 */
	while (p->pulls) {
		struct pull *pl = p->pulls;

		pull_release_windows(p, pl);
		p->pulls = pl->next;
		pull_free(pl);
	}
	while (p->pushes) {
		struct push *ps = p->pushes;

		p->pushes = ps->next;
		ps->writes = 0; /* fabric_close below drops them */
		if (ps->fetching || ps->reading) {
			reading |= ps->reading;
			ps->orphan = true;
			continue;
		}
		push_destroy(ps);
	}
	if (reading)
		log_warn("rack stopped with reads in flight; their buffers are not freed");
	rack_free(p, reading);
}
