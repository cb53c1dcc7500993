/*
 * preload.h - private interface between the parts of libgranary-preload.so.
 *
 * preload.c owns the interposed libc functions, the real ones behind them and
 * the table of descriptors handed out from the cache; preload_daemon.c owns
 * the settings from the environment, the log, the per-thread connections to
 * granaryd, the mount table and the requests; preload_fast.c owns the fast
 * path (the daemon's shared index, the opens and stats served from it, the
 * ACCESS reports of those reads); preload_dir.c owns the directory listings
 * of object-store mounts. preload_fast.h is what preload_daemon.c and
 * preload_fast.c share besides. Nothing here is exported.
 */
#ifndef GRANARY_PRELOAD_H
#define GRANARY_PRELOAD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "preload_rules.h"

#define TLS_IE __attribute__((tls_model("initial-exec")))

/* How a request to the daemon ended. */
enum shim_outcome {
	SHIM_OK,      /* answered with success */
	SHIM_REFUSED, /* answered with an error: *err is its errno */
	SHIM_DOWN,    /* no answer: absent, refused, timed out, garbled; *err says why */
};

/*
 * Enter the shim for one intercepted call: initialise on first use, then
 * return false when the shim is disabled or this thread is already inside it
 * (a nested call, a signal handler): the caller then goes to the real libc.
 * After true, call shim_leave() before returning or calling the real libc.
 */
bool shim_enter(void);
void shim_leave(void);

/* 0 when quiet; 1 logs each decision on a mount; 2 also every path not on one. */
int shim_debug(void);

/*
 * One line to stderr when GRANARY_DEBUG is set: "granary-preload[pid]: ..."
 * Formats %s %d %u %ld %lu %llu %x %% only; uses no stdio and no malloc.
 */
void shim_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * An error on a path that exists only through granary: a line to syslog at
 * most once a minute, since stderr belongs to the application, and a debug
 * line as usual.
 */
void shim_log_error(const char *op, const char *path, int err, const char *why);

/* A short name for an errno ("ENOENT"), never NULL. */
const char *shim_errname(int err);

/*
 * Whether the mount table is empty; fetches it first if this process has none
 * yet and the daemon may be reachable. With false the caller matches paths.
 */
bool shim_no_mounts(void);

/* Match a normalised absolute path against the mount table. */
bool shim_match(const char *abs, struct preload_hit *hit);

/*
 * OPEN @abs. On SHIM_OK *@fd is the cache file's descriptor (close-on-exec)
 * and @s the source's attributes. @why gets the daemon's message on failure.
 */
enum shim_outcome shim_open_remote(const char *abs, int *fd, struct preload_srcstat *s, int *err,
				   char *why, size_t whysz);

/*
 * The fast path: open @abs, under the mount @hit flagged PROTO_F_MOUNT_FAST,
 * straight from the daemon's shared index, as the caller, without a request.
 * @flags are the caller's (a read-only open); O_CLOEXEC and O_NONBLOCK are
 * honoured. Returns the cache file's descriptor, below @fd_limit, with @cst
 * its fstat and @s the source's attributes; -1 when the socket must be asked
 * (not in the index, changed at the source, evicted, refused by the kernel,
 * no index). The read is reported to the daemon later (ACCESS).
 */
int shim_open_fast(const char *abs, const struct preload_hit *hit, int flags, int fd_limit,
		   struct stat *cst, struct preload_srcstat *s);

/*
 * stat of @abs, under the mount @hit flagged PROTO_F_MOUNT_FAST and not strict,
 * from the shared index without a request: true with @s filled when the
 * object is cached there; false when the socket must be asked.
 */
bool shim_stat_fast(const char *abs, const struct preload_hit *hit, struct preload_srcstat *s);

/*
 * Called on each open: sends this thread's reports of reads served by the
 * fast path once the oldest is ACCESS_AGE_NS old.
 */
void shim_access_tick(void);

/* STAT @abs. On SHIM_OK @s is filled. */
enum shim_outcome shim_stat_remote(const char *abs, struct preload_srcstat *s, int *err, char *why,
				   size_t whysz);

/*
 * DROP @abs: the source was or is being written. Waits a short while for the
 * answer at most; a late answer is discarded by a later request.
 */
void shim_drop_remote(const char *abs);

/* The raw close(2): the shim's own descriptors never go through close(). */
int shim_sys_close(int fd);

/*
 * The shim's own sockets are marked in the descriptor table (preload.c), so
 * that an application closing one, or dup2-ing over it (daemons close every
 * descriptor when they start), is noticed: the connection is then given up
 * without closing or writing to a number that may be someone else's by now.
 * shim_conn_fd_unmark() returns whether @fd was still the shim's.
 */
void shim_conn_fd_mark(int fd);
bool shim_conn_fd_ours(int fd);
bool shim_conn_fd_unmark(int fd);

/* The application closed the shim's socket @fd (preload_daemon.c). */
void shim_conn_fd_lost(int fd);

/*
 * The same for the fast path's descriptors (the daemon's objects/ directory,
 * and a duplicate of the connection HELLO came on that tells whether that
 * daemon still runs), which the shim keeps at high numbers.
 */
void shim_fx_fd_mark(int fd);
bool shim_fx_fd_unmark(int fd);

/* The application closed or dup2'd over the fast path's descriptor @fd (preload_fast.c). */
void shim_fx_fd_lost(int fd);

/* ---- directories of object-store mounts ---- */

/*
 * Resolve @path (relative to @dirfd) and match it (preload.c): true, with
 * the normalised path in @abs (PROTO_PATH_MAX + 1 bytes) and the mount in
 * @hit, only when it lies on an object-store mount (no original to fall
 * open to), which the shim answers alone.
 */
bool shim_objstore_find(const char *op, int dirfd, const char *path, char *abs,
			struct preload_hit *hit);

/* The device number stat shows for the paths of object-store mount @index (preload.c). */
uint64_t shim_mount_dev(int index);

/*
 * LIST @abs from after @cookie ("" for the first page) (preload_daemon.c).
 * On SHIM_OK *@reply points at the reply of *@len bytes, valid until this
 * thread's next request.
 */
enum shim_outcome shim_list_remote(const char *abs, const char *cookie, const void **reply,
				   size_t *len, int *err, char *why, size_t whysz);

/*
 * A descriptor for the directory @abs of an object-store mount (preload_dir.c),
 * as open(@flags) with O_DIRECTORY gives one: fstat shows a directory,
 * fdopendir lists it, names resolve relative to it. @known: its attributes
 * when the caller has them, else the daemon is asked (-ENOENT, -ENOTDIR).
 * Returns the descriptor or -errno.
 */
int shim_dir_open(const char *abs, const struct preload_hit *hit, int flags,
		  const struct preload_srcstat *known);

/*
 * Whether @abs, matched to @hit, is the top of its mount: a directory, which
 * the daemon would fetch as an object (a bucket's or a server's index).
 */
bool shim_dir_is_root(const char *abs, const struct preload_hit *hit);

/*
 * When @fd is such a descriptor: 0 with its directory's path in @abs;
 * else -ENOTDIR.
 */
int shim_dir_fd_path(int fd, char *abs, size_t abssz);

/* fstat/statx results of such a descriptor become the directory's. */
void shim_dir_patch_stat(int fd, struct stat *st);
struct statx;
void shim_dir_patch_statx(int fd, struct statx *stx);

#endif
