/*
 * preload_rules.h - the decisions of the LD_PRELOAD shim that depend on
 * strings and numbers alone: where a path leads, what an fopen mode asks for,
 * which mount serves a path, how a source's stat is shown to the caller.
 *
 * Owns: struct preload_mounts (the mount table as HELLO reports it), the
 * lookup in the daemon's shared index (the fast path), and the pure functions
 * over them. Nothing here does I/O, allocates or touches global state, so the
 * shim can call it before its own initialisation and the unit tests can call
 * it without a daemon.
 */
#ifndef GRANARY_PRELOAD_RULES_H
#define GRANARY_PRELOAD_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "proto.h"

#define PRELOAD_MOUNTS_MAX 64
#define PRELOAD_POOL_SIZE  16384 /* bytes of mount paths, NULs included */

struct preload_mount {
	uint32_t off;	  /* of the path in the pool */
	uint32_t len;	  /* strlen of the path */
	uint32_t backend; /* enum proto_backend */
	uint32_t flags;	  /* PROTO_F_MOUNT_* */
	uint32_t order;	  /* position in HELLO's reply, skipped mounts included */
	uint32_t pad;
	uint64_t ttl_ns; /* consistency ttl, 0 when none */
};

/*
 * The mounts a daemon serves. Plain data: copied whole, compared with memcmp
 * (unused bytes stay zero), and read by preload_mounts_match() even while
 * another thread rewrites it (every index is bounds-checked).
 */
struct preload_mounts {
	uint32_t n;
	uint32_t used; /* bytes of pool in use */
	struct preload_mount m[PRELOAD_MOUNTS_MAX];
	char pool[PRELOAD_POOL_SIZE];
};

/* What a match tells the caller, copied out of the table. */
struct preload_hit {
	int index;	/* in the table */
	uint32_t order; /* in HELLO's reply: what the shared index calls the mount */
	uint32_t backend;
	uint32_t flags;
	uint32_t seq; /* the shim's table sequence when matched (preload_daemon.c) */
	uint64_t ttl_ns;
};

/* A source file's attributes as the daemon reports them. */
struct preload_srcstat {
	uint64_t size;
	int64_t mtime_ns;
	uint32_t mode;
	uint32_t type; /* enum proto_ftype, 0 when not reported */
	uint64_t ino;
};

/*
 * Join @path to the absolute directory @base (ignored when @path is absolute)
 * and normalise the result into @out: repeated slashes and "." go, ".." takes
 * away the name before it. Returns 0; 1 when a ".." took away a name that
 * came from @path, since the kernel would resolve it through that name, which
 * may be a symbolic link, and the lexical result may not be the same file;
 * -ENOENT for an empty @path, -EINVAL for a relative @path without a @base or a
 * @base that is not absolute, -ENAMETOOLONG past PROTO_PATH_MAX or @outsz.
 */
int preload_path_join(const char *base, const char *path, char *out, size_t outsz);

/*
 * Translate an fopen() mode into open() flags, as glibc reads it: "r", "w" or
 * "a", then up to six of '+', 'b', 'x', 'e', 'm', 'c' until a ','.
 * Returns 0 or -EINVAL for a mode glibc would refuse.
 */
int preload_mode_flags(const char *mode, int *flags);

/* True when open() @flags may modify the file: the shim sends those to the source. */
bool preload_flags_write(int flags);

/*
 * True when open() @flags ask for something a cache copy cannot give: a path
 * descriptor, a directory, or (on a mount whose original exists) refusal of
 * a symbolic link. Such opens go to the real libc.
 */
bool preload_flags_passthrough(int flags, bool failopen);

/*
 * Fill @t from a HELLO reply of @len bytes (MOUNT, then BACKEND and FLAGS, per
 * mount). Mount paths are normalised; ones that do not fit are skipped.
 * Returns the number of mounts skipped, or -EBADMSG / the reply's -errno.
 */
int preload_mounts_parse(struct preload_mounts *t, const void *msg, size_t len);

/*
 * Find the mount serving the normalised absolute @path: the longest mount path
 * at or above it. Returns true and fills @hit, or false.
 */
bool preload_mounts_match(const struct preload_mounts *t, const char *path,
			  struct preload_hit *hit);

/* The mount path of entry @i of @t, or "" when @i is out of range. */
const char *preload_mounts_path(const struct preload_mounts *t, int i);

/*
 * Read SIZE, MTIME_NS, MODE, TYPE and INO of a reply into @s.
 * Returns 0, or -EBADMSG when SIZE or MTIME_NS is missing or malformed.
 */
int preload_srcstat_parse(const void *msg, size_t len, struct preload_srcstat *s);

/*
 * Show the source in @st, the result of fstat() on a cache file: size, mtime,
 * inode and mode become the source's. Other fields stay the cache file's.
 */
void preload_stat_patch(struct stat *st, const struct preload_srcstat *s);

/* The same for a statx() result: only fields present in stx_mask change. */
struct statx;
void preload_statx_patch(struct statx *stx, const struct preload_srcstat *s);

/*
 * Build a whole stat for a path that exists only through granary (object-store
 * mounts): owned by @uid/@gid, on device @dev, read-only.
 */
void preload_stat_fill(struct stat *st, const struct preload_srcstat *s, uint64_t dev, uint32_t uid,
		       uint32_t gid);
void preload_statx_fill(struct statx *stx, const struct preload_srcstat *s, uint64_t dev,
			uint32_t uid, uint32_t gid);

/* ---- the shared index (see the comment above PROTO_FX_MAGIC in proto.h) ---- */

/* Reads of a slot that find it being written before the lookup gives up. */
#define PRELOAD_FX_TRIES 8

/*
 * The index's two keys of the normalised absolute @path of @len bytes, as the
 * daemon computes them (a pair that would read as empty or as a tombstone
 * has the low bit of key2 flipped).
 */
void preload_fx_keys(const char *path, size_t len, uint64_t *k1, uint64_t *k2);

/*
 * Check the header of a mapped index of @len bytes: magic, version, and room
 * for its slots. Returns the number of slots, or 0 when the index is unusable.
 */
uint64_t preload_fx_check(const void *map, size_t len);

/*
 * Find the slot of keys @k1, @k2 for the mount HELLO listed at @order among
 * the @nslots @slots, which the daemon may be rewriting meanwhile. Each slot
 * is copied under its sequence lock; one still odd after PRELOAD_FX_TRIES
 * reads, or changed while copied, ends the lookup. Returns 1 with a
 * consistent copy in @out and its index in @at; 0 when the path is not there
 * (an empty slot, PROTO_FX_PROBE slots seen, or its slot names another
 * mount); -EAGAIN when a slot on the way was being written.
 */
int preload_fx_lookup(const struct proto_fx_slot *slots, uint64_t nslots, uint64_t k1, uint64_t k2,
		      uint32_t order, struct proto_fx_slot *out, uint64_t *at);

/*
 * Whether the source's stat @st is the version a slot describes: size,
 * mtime, inode, mode, owner and group all equal.
 */
bool preload_fx_same(const struct proto_fx_slot *slot, const struct stat *st);

/*
 * Whether a slot of a mount with consistency ttl @ttl_ns (0: none) may be
 * served without asking the daemon at CLOCK_MONOTONIC @now_ns: validated
 * less than the ttl ago. The slot keeps whole seconds, rounded down, so the
 * copy may expire up to a second early, never late; 0 means not validated
 * since the daemon started (a restored object), never fresh.
 */
bool preload_fx_fresh(const struct proto_fx_slot *slot, uint64_t ttl_ns, int64_t now_ns);

/* The cache file's name under objects/ for @id: "xx/<16 hex digits>". @out >= 20 bytes. */
void preload_fx_name(uint64_t id, char *out);

/*
 * access() on an object-store path that exists with mode @mode: reading is
 * allowed, writing is -EROFS, executing needs a directory or an x bit.
 * Returns 0 or -errno.
 */
int preload_access_check(uint32_t mode, int amode);

#endif
