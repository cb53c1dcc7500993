/*
 * proto.h - the local wire format between granaryd and its clients.
 *
 * Owns: message framing, TLV encoding and decoding, request/reply types and
 * tags, path normalisation. Shared by the daemon, libgranary, the CLI and the
 * LD_PRELOAD shim; it allocates nothing and calls no stdio, so the shim can use
 * it before its own initialisation.
 *
 * Transport: AF_UNIX SOCK_SEQPACKET. One datagram is one message, at most
 * PROTO_MSG_MAX bytes: a 16-byte header then TLV items. Integers are in host
 * byte order (the socket is local). A reply carries the request's id and the
 * type PROTO_REPLY | request type; its first item is PROTO_T_STATUS (0 or
 * -errno), optionally followed by PROTO_T_ERRMSG with a human sentence. An
 * OPEN reply that succeeds carries the cache file's descriptor as SCM_RIGHTS.
 * See docs/protocol.md.
 */
#ifndef GRANARY_PROTO_H
#define GRANARY_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROTO_MAGIC    0x594e5247u /* "GRNY" in memory on little endian */
#define PROTO_VERSION  1
#define PROTO_HDR_SIZE 16
#define PROTO_MSG_MAX  65536
#define PROTO_PATH_MAX 4096 /* bytes, without the terminating NUL */
#define PROTO_NAME_MAX 255  /* one path component */

struct proto_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint32_t id;  /* chosen by the client, echoed in the reply */
	uint32_t len; /* bytes of TLV body after the header */
};

/*
 * Requests. Items listed are what the daemon reads; [] marks optional ones.
 * Replies always start with PROTO_T_STATUS.
 */
enum proto_type {
	PROTO_HELLO = 1,   /* -> MOUNT* (one per mount: path; then BACKEND, FLAGS) */
	PROTO_OPEN = 2,	   /* PATH [FLAGS] -> fd by SCM_RIGHTS, SIZE, MTIME_NS, MODE, SOURCE */
	PROTO_STAT = 3,	   /* PATH -> SIZE, MTIME_NS, MODE, TYPE, CACHED */
	PROTO_WARM = 4,	   /* PATH -> SIZE, SOURCE (no descriptor): the object is cached */
	PROTO_LIST = 5,	   /* PATH [COOKIE] -> (NAME TYPE SIZE)* [COOKIE when more follow] */
	PROTO_STATUS = 6,  /* -> JSON (the whole status document) */
	PROTO_LS = 7,	   /* PATH [COOKIE] -> (NAME TYPE SIZE STATE)* [COOKIE] */
	PROTO_EVICT = 8,   /* PATH -> COUNT (objects dropped at or under PATH) */
	PROTO_DROP = 9,	   /* PATH: the source was written by a client; forget the copy */
	PROTO_PIN = 10,	   /* PATH [FLAGS: PROTO_F_UNPIN] -> COUNT */
	PROTO_EPOCH = 11,  /* [DATASET] [PATH] -> DATASET, EPOCH (after the advance) */
	PROTO_HINT = 12,   /* DATASET FLAGS(BEGIN/END) PATH* -> COUNT */
	PROTO_VERIFY = 13, /* [PATH] -> COUNT (checked), COUNT2 (bad, dropped) */
	PROTO_ACCESS = 14, /* FLAGS SLOTS: reads served by the fast path -> COUNT, unless NOREPLY */
	PROTO_TYPE_MAX = 15,
	PROTO_REPLY = 0x8000,
};

enum proto_tag {
	PROTO_T_STATUS = 1,   /* i32: 0 or -errno */
	PROTO_T_ERRMSG = 2,   /* string: what went wrong, for people */
	PROTO_T_PATH = 3,     /* string: absolute path, normalised by the daemon */
	PROTO_T_FLAGS = 4,    /* u32 */
	PROTO_T_SIZE = 5,     /* u64 bytes */
	PROTO_T_MTIME_NS = 6, /* i64 nanoseconds since the epoch */
	PROTO_T_MODE = 7,     /* u32 st_mode as the source reports it */
	PROTO_T_SOURCE = 8,   /* u32 enum proto_source */
	PROTO_T_NAME = 9,     /* string: a directory entry's name */
	PROTO_T_TYPE = 10,    /* u32 enum proto_ftype */
	PROTO_T_COOKIE = 11,  /* string: where a listing goes on */
	PROTO_T_JSON = 12,    /* string: a JSON document */
	PROTO_T_COUNT = 13,   /* u64 */
	PROTO_T_COUNT2 = 14,  /* u64 */
	PROTO_T_MOUNT = 15,   /* string: a mount's path prefix */
	PROTO_T_BACKEND = 16, /* u32 enum proto_backend */
	PROTO_T_DATASET = 17, /* string */
	PROTO_T_EPOCH = 18,   /* u64 */
	PROTO_T_STATE = 19,   /* u32 enum proto_state */
	PROTO_T_CACHED = 20,  /* u32: 1 when a valid copy is in the cache */
	PROTO_T_INO = 21,     /* u64 inode of the source where it has one */
	PROTO_T_SLOTS = 22,   /* array of struct proto_fx_access */
	PROTO_T_TTL = 23,     /* u64 ns: a HELLO mount's consistency ttl */
};

/* PROTO_T_FLAGS of OPEN */
#define PROTO_F_NOFETCH 0x1u /* a miss answers -ENODATA instead of fetching */
/* PROTO_T_FLAGS of HINT */
#define PROTO_F_BEGIN 0x1u /* first message of an order: forget the previous one */
#define PROTO_F_END   0x2u /* last message of an order */
/* PROTO_T_FLAGS of ACCESS and other one-way messages */
#define PROTO_F_NOREPLY 0x8u
/* PROTO_T_FLAGS of PIN */
#define PROTO_F_UNPIN 0x1u
/* PROTO_T_FLAGS of a HELLO mount */
#define PROTO_F_MOUNT_FAILOPEN 0x1u /* the original path exists: fail open to it */
#define PROTO_F_MOUNT_FAST     0x2u /* cached objects are in the shared index */
#define PROTO_F_MOUNT_STRICT   0x4u /* fast path: compare the original's stat first */

/*
 * The shared index (fast path). With HELLO's reply the daemon passes two
 * descriptors: a read-only memfd holding the index, and an O_PATH descriptor
 * of the cache's objects/ directory. A client may then, for a path under a
 * mount flagged PROTO_F_MOUNT_FAST, find the object's slot, check it under the
 * slot's sequence lock, (for PROTO_F_MOUNT_STRICT mounts) stat the original
 * and compare size, mtime, inode, mode, uid and gid, and open objects/<xx>/<id> itself, where
 * xx is the id's low byte in two hex digits and id is 16 hex digits. The
 * index and objects/ hold public copies only: of sources every local user may
 * read (docs/security.md); every other copy stays private to the daemon and
 * is handed out over the socket after a check as the caller. The memfd is
 * sealed against writes. Reads served this way are reported later with
 * PROTO_ACCESS.
 *
 * Lookup: key1 = XXH3_64bits_withSeed(path, len, PROTO_FX_SEED1), key2 the
 * same with PROTO_FX_SEED2; probe slots key1 % nslots onwards, at most
 * PROTO_FX_PROBE of them, until an empty slot (both keys 0). A slot whose keys
 * are both PROTO_FX_TOMB was freed. Anything odd (a torn read, an open that
 * fails): use the socket.
 */
#define PROTO_FX_MAGIC	 0x58465247u /* "GRFX" */
#define PROTO_FX_VERSION 1
#define PROTO_FX_SEED1	 0x6772616e61727931ull
#define PROTO_FX_SEED2	 0x9e3779b97f4a7c15ull
#define PROTO_FX_PROBE	 64
#define PROTO_FX_TOMB	 UINT64_MAX

struct proto_fx_hdr {
	uint32_t magic;
	uint32_t version;
	uint64_t nslots;
	uint64_t reserved[6];
};

struct proto_fx_slot {
	uint32_t seq;	/* odd while the daemon writes the slot */
	uint32_t mount; /* index of the mount in HELLO's order */
	uint64_t key1, key2;
	uint64_t id;
	uint64_t size;
	int64_t mtime_ns;
	uint64_t ino;
	uint32_t mode; /* the source's st_mode, uid and gid */
	uint32_t uid;
	uint32_t gid;
	uint32_t validated_s; /* CLOCK_MONOTONIC seconds of the last validation */
};

/* One read served by the fast path, reported in PROTO_ACCESS's SLOTS item. */
struct proto_fx_access {
	uint64_t slot;
	uint64_t id;
};

enum proto_source {
	PROTO_SRC_LOCAL = 0,   /* served from this node's cache */
	PROTO_SRC_BACKEND = 1, /* fetched from the backend for this request */
	PROTO_SRC_PEER = 2,    /* fetched from a peer of the rack */
	PROTO_SRC_DIRECT = 3,  /* not kept: served straight from the source */
};

enum proto_ftype {
	PROTO_FT_REG = 1,
	PROTO_FT_DIR = 2,
	PROTO_FT_OTHER = 3,
};

enum proto_backend {
	PROTO_BE_POSIX = 1,
	PROTO_BE_HTTP = 2,
	PROTO_BE_S3 = 3,
};

enum proto_state {
	PROTO_ST_ABSENT = 0,   /* not in the cache */
	PROTO_ST_CACHED = 1,   /* complete copy on local disk */
	PROTO_ST_FETCHING = 2, /* a fetch is under way */
	PROTO_ST_PINNED = 3,   /* cached and pinned */
};

/* A message being built. The caller owns the storage. */
struct proto_buf {
	uint8_t data[PROTO_MSG_MAX];
	size_t len;
};

/* Start a message of @type with request @id in @b. */
void proto_begin(struct proto_buf *b, uint16_t type, uint32_t id);

/*
 * Append one item. Return 0, or -EMSGSIZE when it does not fit (the message is
 * left as it was before the call).
 */
int proto_put(struct proto_buf *b, uint16_t tag, const void *val, uint32_t len);
int proto_put_u32(struct proto_buf *b, uint16_t tag, uint32_t v);
int proto_put_i32(struct proto_buf *b, uint16_t tag, int32_t v);
int proto_put_u64(struct proto_buf *b, uint16_t tag, uint64_t v);
int proto_put_i64(struct proto_buf *b, uint16_t tag, int64_t v);
int proto_put_str(struct proto_buf *b, uint16_t tag, const char *s);

/*
 * Check a received datagram of @len bytes: magic, version, a known type, and a
 * body length that matches. Fill @h. Returns 0 or -EBADMSG / -EPROTO (version).
 */
int proto_check(const void *msg, size_t len, struct proto_hdr *h);

/* Walks the items of a checked message. Points into the message; no copies. */
struct proto_iter {
	const uint8_t *p;
	const uint8_t *end;
};

struct proto_item {
	uint16_t tag;
	uint32_t len;
	const uint8_t *val;
};

void proto_iter_init(struct proto_iter *it, const void *msg, size_t len);

/* Returns 1 with @item filled, 0 at the end, -EBADMSG on a truncated item. */
int proto_next(struct proto_iter *it, struct proto_item *item);

/* Typed reads of an item; -EBADMSG when the length is not the type's. */
int proto_item_u32(const struct proto_item *item, uint32_t *v);
int proto_item_i32(const struct proto_item *item, int32_t *v);
int proto_item_u64(const struct proto_item *item, uint64_t *v);
int proto_item_i64(const struct proto_item *item, int64_t *v);

/*
 * Copy a string item into @out of @outsz bytes with a terminating NUL.
 * -EBADMSG when it holds a NUL, -ENAMETOOLONG when it does not fit.
 */
int proto_item_str(const struct proto_item *item, char *out, size_t outsz);

/*
 * Find the first item with @tag. Returns 1 and fills @item, 0 when absent,
 * -EBADMSG on a malformed body.
 */
int proto_find(const void *msg, size_t len, uint16_t tag, struct proto_item *item);

/*
 * Normalise an absolute path: collapse repeated slashes, drop "." components
 * and a trailing slash. Refuses (-EINVAL) a relative path, a ".." component, an
 * empty path; -ENAMETOOLONG past PROTO_PATH_MAX or a component past
 * PROTO_NAME_MAX. @in is @len bytes and need not be NUL-terminated; NUL inside
 * it is -EINVAL. @out gets a NUL-terminated result (@outsz >= 2).
 */
int proto_path_normalize(const char *in, size_t len, char *out, size_t outsz);

/*
 * True when @path lies at or under the directory @prefix (both normalised):
 * "/a/b" is under "/a" and "/a/b", not under "/a/bc".
 */
bool proto_path_under(const char *path, const char *prefix);

/* A short name for a request type ("open"), or "?" */
const char *proto_type_name(uint16_t type);

#endif
