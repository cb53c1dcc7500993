/*
 * granary.h - libgranary, the C client library of granaryd's local socket.
 *
 * Owns: one connection to the daemon and every request a program can make on
 * it: open a file through the cache, stat, warm (one file, or many pipelined),
 * list and walk directories, cache state (ls), evict, drop, pin, epochs and
 * epoch hints, verify, status, the mount table.
 *
 * Conventions. Every function that can fail returns 0 (or a descriptor or a
 * count where it says so) or a negative errno value; granary_strerror() names
 * it. When the daemon explains an error in words, granary_last_error() gives
 * that sentence.
 *
 * Threads. A struct granary may be shared by any number of threads: requests
 * from different threads run concurrently on the one connection, replies are
 * matched to their requests by id. Callbacks run in the thread that made the
 * call, with no library lock held, and may not use the same struct granary
 * from inside the callback except from other threads. After fork() the child
 * must not use a connection made by the parent: it connects again.
 *
 * The socket is AF_UNIX SOCK_SEQPACKET at the path given, else $GRANARY_SOCKET,
 * else GRANARY_SOCKET_DEFAULT.
 */
#ifndef GRANARY_H
#define GRANARY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifdef GRANARY_BUILD_SHARED
#define GRANARY_API __attribute__((visibility("default")))
#else
#define GRANARY_API
#endif

#include "granary_version.h" /* GRANARY_VERSION */

#define GRANARY_SOCKET_DEFAULT "/run/granary/granary.sock"

/* Where a file's bytes came from (same values as the wire format). */
enum granary_source {
	GRANARY_SRC_LOCAL = 0,	 /* already in this node's cache */
	GRANARY_SRC_BACKEND = 1, /* fetched from the backend for this request */
	GRANARY_SRC_PEER = 2,	 /* fetched from a peer of the rack */
	GRANARY_SRC_DIRECT = 3,	 /* readable, but not kept: the policy would not admit it */
};

enum granary_ftype {
	GRANARY_FT_REG = 1,
	GRANARY_FT_DIR = 2,
	GRANARY_FT_OTHER = 3,
};

/* The cache state of an entry in granary_ls(). */
enum granary_state {
	GRANARY_ST_ABSENT = 0,
	GRANARY_ST_CACHED = 1,
	GRANARY_ST_FETCHING = 2,
	GRANARY_ST_PINNED = 3,
};

enum granary_backend {
	GRANARY_BE_POSIX = 1,
	GRANARY_BE_HTTP = 2,
	GRANARY_BE_S3 = 3,
};

/* granary_open() flags */
#define GRANARY_O_NOFETCH 0x1u /* a miss fails with -ENODATA instead of fetching */

/* granary_mounts() flags */
#define GRANARY_MOUNT_FAILOPEN 0x1u /* the original path exists: readers may fall back to it */

/* What the daemon knows about a file. Fields a reply did not carry are 0. */
struct granary_stat {
	uint64_t size;
	int64_t mtime_ns; /* of the source */
	uint32_t mode;	  /* st_mode as the source reports it */
	uint32_t type;	  /* enum granary_ftype (stat only) */
	uint32_t source;  /* enum granary_source (open only) */
	uint32_t cached;  /* 1 when a valid copy is in the cache (stat only) */
	uint64_t ino;	  /* inode of the source where it has one */
};

/* One entry of granary_list() or granary_ls(). Valid during the callback. */
struct granary_entry {
	const char *name; /* a name in the directory; ls of a file: its full path */
	uint32_t type;	  /* enum granary_ftype */
	uint64_t size;
	uint32_t state; /* enum granary_state (granary_ls only) */
};

/* Return 0 to go on, anything else to stop (the walk returns that value). */
typedef int (*granary_entry_fn)(const struct granary_entry *e, void *arg);

/*
 * The outcome of one file of granary_warm(): @error is 0 or -errno, @errmsg the
 * daemon's explanation ("" when none), @size and @source valid when @error is
 * 0. Strings are valid during the call only. Return 0 to go on; anything else
 * stops sending new requests: those in flight are still reported, and
 * granary_warm() returns -ECANCELED.
 */
typedef int (*granary_progress_fn)(const char *path, uint64_t size, int source, int error,
				   const char *errmsg, void *arg);

/* One mount of the daemon: its path prefix, enum granary_backend, flags. */
typedef int (*granary_mount_fn)(const char *path, uint32_t backend, uint32_t flags, void *arg);

/* A file found by granary_walk(): full path and size. */
typedef int (*granary_file_fn)(const char *path, uint64_t size, void *arg);

struct granary;

/*
 * Connect to the daemon at @socket_path (NULL: $GRANARY_SOCKET, else the
 * default). Returns the connection, or NULL with -errno in *@err (when @err is
 * not NULL): -ENOENT or -ECONNREFUSED when no daemon listens there.
 */
GRANARY_API struct granary *granary_connect(const char *socket_path, int *err);

/* Close the connection. No call on @g may be running or follow. NULL is a no-op. */
GRANARY_API void granary_close(struct granary *g);

/*
 * Open @path (absolute, under one of the daemon's mounts) through the cache:
 * a complete copy, fetched first on a miss unless @flags has GRANARY_O_NOFETCH.
 * Returns a read-only descriptor (O_CLOEXEC) owned by the caller, or -errno.
 * @st (may be NULL) gets size, mtime_ns, mode, source, ino.
 */
GRANARY_API int granary_open(struct granary *g, const char *path, unsigned flags,
			     struct granary_stat *st);

/* Stat @path as the daemon sees it (size, mtime_ns, mode, type, cached, ino). */
GRANARY_API int granary_stat(struct granary *g, const char *path, struct granary_stat *st);

/*
 * Make sure @path is cached. *@size and *@source (either may be NULL) tell the
 * size and whether it was already there (GRANARY_SRC_LOCAL), fetched now, or
 * readable but not kept (GRANARY_SRC_DIRECT).
 */
GRANARY_API int granary_warm_one(struct granary *g, const char *path, uint64_t *size, int *source);

/*
 * Warm @n files, keeping up to @jobs WARM requests in flight (0 means 16),
 * and report every file's outcome through @cb (may be NULL) in completion
 * order. Returns the number of files that failed (0: all warmed), or -errno
 * when the connection itself failed; then every file not reported before has
 * been reported with that error.
 */
GRANARY_API int granary_warm(struct granary *g, const char *const *paths, size_t n, unsigned jobs,
			     granary_progress_fn cb, void *arg);

/*
 * Call @cb for each entry of the directory @dir as the backend lists it
 * (one level). Returns 0, the callback's non-zero value, or -errno
 * (-ENOTDIR when @dir is a file).
 */
GRANARY_API int granary_list(struct granary *g, const char *dir, granary_entry_fn cb, void *arg);

/*
 * Like granary_list() with the cache state of each entry; @path may also be a
 * single file (one entry, whose name is the full path).
 */
GRANARY_API int granary_ls(struct granary *g, const char *path, granary_entry_fn cb, void *arg);

/*
 * Call @cb with every regular file at or under @path, found by listing through
 * the daemon (so it works on object-store mounts too). A @path that is a file
 * is reported itself. Returns 0, the callback's non-zero value, or -errno.
 */
GRANARY_API int granary_walk(struct granary *g, const char *path, granary_file_fn cb, void *arg);

/* Drop cached objects at or under @path; *@count (may be NULL) gets how many. */
GRANARY_API int granary_evict(struct granary *g, const char *path, uint64_t *count);

/* Tell the daemon the source of @path was written: forget the cached copy. */
GRANARY_API int granary_drop(struct granary *g, const char *path, uint64_t *count);

/* Pin (or with @unpin non-zero, unpin) the objects at or under @path. */
GRANARY_API int granary_pin(struct granary *g, const char *path, int unpin, uint64_t *count);

/*
 * Advance the epoch of a dataset, named by @dataset, or the dataset that
 * @path belongs to (either may be NULL; both NULL: the daemon's default).
 * *@epoch (may be NULL) gets the epoch after the advance.
 */
GRANARY_API int granary_epoch(struct granary *g, const char *dataset, const char *path,
			      uint64_t *epoch);

/* Same, and copy the name of the dataset advanced into @name (@namesz bytes). */
GRANARY_API int granary_epoch_name(struct granary *g, const char *dataset, const char *path,
				   uint64_t *epoch, char *name, size_t namesz);

/*
 * Send the order in which the next epoch of @dataset (NULL: the dataset of the
 * mount that holds paths[0]) will read @paths, replacing any previous order. Long orders are sent
 * in several messages. Returns the number of paths the daemon took, or -errno.
 */
GRANARY_API long granary_hint(struct granary *g, const char *dataset, const char *const *paths,
			      size_t n);

/*
 * The daemon's status document (JSON) in *@json, a NUL-terminated string the
 * caller frees with granary_free().
 */
GRANARY_API int granary_status_json(struct granary *g, char **json);

/*
 * Re-check the checksums of cached objects at or under @path (NULL: all).
 * *@checked and *@bad (either may be NULL) get how many were read and how
 * many were wrong and dropped.
 */
GRANARY_API int granary_verify(struct granary *g, const char *path, uint64_t *checked,
			       uint64_t *bad);

/* Call @cb for each mount the daemon serves. Returns 0, @cb's value, or -errno. */
GRANARY_API int granary_mounts(struct granary *g, granary_mount_fn cb, void *arg);

/*
 * The daemon's explanation of the last request that failed in the calling
 * thread (any connection), or "" when it gave none. Valid until the thread's
 * next granary call. @g is not used and may be NULL.
 */
GRANARY_API const char *granary_last_error(const struct granary *g);

/* A description of -errno (or errno) @err; never NULL, never freed. */
GRANARY_API const char *granary_strerror(int err);

/* Free memory the library returned (granary_status_json). */
GRANARY_API void granary_free(void *p);

/* The library's version, GRANARY_VERSION. */
GRANARY_API const char *granary_version(void);

#ifdef __cplusplus
}
#endif

#endif
