/*
 * preload.c - libgranary-preload.so: lets unmodified programs read through
 * granaryd by interposing the libc open and stat families.
 *
 * An open of a path under one of the daemon's mounts is answered with the
 * cache file's descriptor (opened by the shim itself when the daemon's
 * shared index holds the file, see preload_fast.c; else passed by the
 * daemon), so read, pread, mmap, fread and lseek go to the kernel with no
 * daemon on the path; fstat on that descriptor shows the
 * source's size, mtime, mode and inode. Opens for writing go to the original
 * file and tell the daemon to drop its copy. Any failure on a mount whose
 * original exists falls open to it; on object-store mounts it is an errno.
 * Every other call goes to the real libc untouched. See docs/shim.md.
 *
 * DESIGN. Real functions are found with dlsym(RTLD_NEXT) on first use; a
 * call made while this thread is inside dlsym (an allocator that opens files
 * while it starts) uses the raw system call instead. The descriptors handed
 * out are kept in fdtab, indexed by descriptor, with the source's attributes
 * and the cache file's device and inode: fstat patches a result only when
 * that device and inode match, so an entry left behind by a close the shim did
 * not see (fclose inside libc, close_range) can never touch another file.
 * Opens for writing are kept in wtrack so that their close sends a second
 * DROP once the new bytes are in place.
 */
#include "preload.h"
#include "preload_dirlist.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

#define FDTAB_MAX  65536 /* descriptors at or above this are not served from the cache */
#define WTRACK_MAX 64	 /* opens for writing tracked until their close */

#ifndef SYS_faccessat2
#define SYS_faccessat2 439
#endif

_Static_assert(sizeof(struct stat) == sizeof(struct stat64), "stat64 is stat on this ABI");

/* Compatibility entry points of glibc before 2.33; no header declares them now. */
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);
int __xstat(int ver, const char *path, struct stat *st);
int __xstat64(int ver, const char *path, struct stat64 *st);
int __lxstat(int ver, const char *path, struct stat *st);
int __lxstat64(int ver, const char *path, struct stat64 *st);
int __fxstat(int ver, int fd, struct stat *st);
int __fxstat64(int ver, int fd, struct stat64 *st);
int __fxstatat(int ver, int dirfd, const char *path, struct stat *st, int flags);
int __fxstatat64(int ver, int dirfd, const char *path, struct stat64 *st, int flags);
int _IO_fclose(FILE *fp);

/* ---- the real functions ---- */

#define REAL_LIST(X)                                                                               \
	X(open)                                                                                    \
	X(open64)                                                                                  \
	X(openat)                                                                                  \
	X(openat64)                                                                                \
	X(__open_2)                                                                                \
	X(__open64_2)                                                                              \
	X(__openat_2)                                                                              \
	X(__openat64_2)                                                                            \
	X(creat)                                                                                   \
	X(creat64)                                                                                 \
	X(fopen)                                                                                   \
	X(fopen64)                                                                                 \
	X(stat)                                                                                    \
	X(stat64)                                                                                  \
	X(lstat)                                                                                   \
	X(lstat64)                                                                                 \
	X(fstat)                                                                                   \
	X(fstat64)                                                                                 \
	X(fstatat)                                                                                 \
	X(fstatat64)                                                                               \
	X(statx)                                                                                   \
	X(access)                                                                                  \
	X(faccessat)                                                                               \
	X(__xstat)                                                                                 \
	X(__xstat64)                                                                               \
	X(__lxstat)                                                                                \
	X(__lxstat64)                                                                              \
	X(__fxstat)                                                                                \
	X(__fxstat64)                                                                              \
	X(__fxstatat)                                                                              \
	X(__fxstatat64)                                                                            \
	X(close)                                                                                   \
	X(dup)                                                                                     \
	X(dup2)                                                                                    \
	X(dup3)                                                                                    \
	X(fclose)

#define REAL_ENUM(n) R_##n,
#define REAL_NAME(n) #n,
enum real_id { REAL_LIST(REAL_ENUM) R_MAX };
static const char *const real_names[R_MAX] = {REAL_LIST(REAL_NAME)};
#define REAL_MISSING ((void *)1)

static void *real_ptr[R_MAX];
static __thread int tls_resolving TLS_IE;

/* The next definition of function @id, or NULL when it cannot be had now. */
static void *real_get(enum real_id id)
{
	void *p = __atomic_load_n(&real_ptr[id], __ATOMIC_ACQUIRE);

	if (__builtin_expect(p != NULL, 1))
		return p == REAL_MISSING ? NULL : p;
	if (tls_resolving)
		return NULL; /* called from inside dlsym: the caller uses the system call */
	tls_resolving = 1;
	p = dlsym(RTLD_NEXT, real_names[id]);
	tls_resolving = 0;
	__atomic_store_n(&real_ptr[id], p ? p : REAL_MISSING, __ATOMIC_RELEASE);
	return p;
}

#define REAL(n) ((__typeof__(&n))real_get(R_##n))

__attribute__((constructor)) static void preload_resolve_all(void)
{
	int i;

	for (i = 0; i < R_MAX; i++)
		real_get((enum real_id)i);
}

enum open_kind {
	OK_OPEN,
	OK_OPEN64,
	OK_OPENAT,
	OK_OPENAT64,
	OK_OPEN2,
	OK_OPEN64_2,
	OK_OPENAT2,
	OK_OPENAT64_2
};

static int real_open(enum open_kind k, int dirfd, const char *path, int flags, mode_t mode)
{
	switch (k) {
	case OK_OPEN:
		if (REAL(open))
			return REAL(open)(path, flags, mode);
		break;
	case OK_OPEN64:
		if (REAL(open64))
			return REAL(open64)(path, flags, mode);
		break;
	case OK_OPENAT:
		if (REAL(openat))
			return REAL(openat)(dirfd, path, flags, mode);
		break;
	case OK_OPENAT64:
		if (REAL(openat64))
			return REAL(openat64)(dirfd, path, flags, mode);
		break;
	case OK_OPEN2:
		if (REAL(__open_2))
			return REAL(__open_2)(path, flags);
		break;
	case OK_OPEN64_2:
		if (REAL(__open64_2))
			return REAL(__open64_2)(path, flags);
		break;
	case OK_OPENAT2:
		if (REAL(__openat_2))
			return REAL(__openat_2)(dirfd, path, flags);
		break;
	case OK_OPENAT64_2:
		if (REAL(__openat64_2))
			return REAL(__openat64_2)(dirfd, path, flags);
		break;
	}
	return (int)syscall(SYS_openat, dirfd, path, flags, mode);
}

enum stat_kind {
	SK_STAT,
	SK_STAT64,
	SK_LSTAT,
	SK_LSTAT64,
	SK_FSTATAT,
	SK_FSTATAT64,
	SK_XSTAT,
	SK_XSTAT64,
	SK_LXSTAT,
	SK_LXSTAT64,
	SK_FXSTATAT,
	SK_FXSTATAT64,
};

static int real_stat(enum stat_kind k, int ver, int dirfd, const char *path, struct stat *st,
		     int flags)
{
	struct stat64 *st64 = (struct stat64 *)st;

	switch (k) {
	case SK_STAT:
		if (REAL(stat))
			return REAL(stat)(path, st);
		break;
	case SK_STAT64:
		if (REAL(stat64))
			return REAL(stat64)(path, st64);
		break;
	case SK_LSTAT:
		if (REAL(lstat))
			return REAL(lstat)(path, st);
		break;
	case SK_LSTAT64:
		if (REAL(lstat64))
			return REAL(lstat64)(path, st64);
		break;
	case SK_FSTATAT:
		if (REAL(fstatat))
			return REAL(fstatat)(dirfd, path, st, flags);
		break;
	case SK_FSTATAT64:
		if (REAL(fstatat64))
			return REAL(fstatat64)(dirfd, path, st64, flags);
		break;
	case SK_XSTAT:
		if (REAL(__xstat))
			return REAL(__xstat)(ver, path, st);
		break;
	case SK_XSTAT64:
		if (REAL(__xstat64))
			return REAL(__xstat64)(ver, path, st64);
		break;
	case SK_LXSTAT:
		if (REAL(__lxstat))
			return REAL(__lxstat)(ver, path, st);
		break;
	case SK_LXSTAT64:
		if (REAL(__lxstat64))
			return REAL(__lxstat64)(ver, path, st64);
		break;
	case SK_FXSTATAT:
		if (REAL(__fxstatat))
			return REAL(__fxstatat)(ver, dirfd, path, st, flags);
		break;
	case SK_FXSTATAT64:
		if (REAL(__fxstatat64))
			return REAL(__fxstatat64)(ver, dirfd, path, st64, flags);
		break;
	}
	return (int)syscall(SYS_newfstatat, dirfd, path, st, flags);
}

/* ---- descriptors handed out from the cache ---- */

#define FDF_SRC	  0x1u /* a cache file: fstat shows the source */
#define FDF_WRITE 0x2u /* opened for writing: close sends DROP (see wtrack) */
#define FDF_CONN  0x4u /* one of the shim's own connections */
#define FDF_FX	  0x8u /* the shim's fast path descriptors: objects/, the daemon's liveness */

struct fdent {
	uint32_t flags; /* atomic; published after the fields */
	uint32_t mode;
	uint64_t cdev, cino; /* the cache file, to recognise the descriptor */
	uint64_t size;
	int64_t mtime_ns;
	uint64_t ino;
};

static struct fdent fdtab[FDTAB_MAX];

static void fd_set_src(int fd, const struct stat *cst, const struct preload_srcstat *s)
{
	struct fdent *e = &fdtab[fd];

	__atomic_store_n(&e->flags, 0, __ATOMIC_RELAXED);
	e->cdev = cst->st_dev;
	e->cino = cst->st_ino;
	e->size = s->size;
	e->mtime_ns = s->mtime_ns;
	e->mode = s->mode;
	e->ino = s->ino;
	__atomic_store_n(&e->flags, FDF_SRC, __ATOMIC_RELEASE);
}

/* Forget @fd before it is closed; returns the flags it had. */
static uint32_t fd_forget(int fd)
{
	if (fd < 0 || fd >= FDTAB_MAX || !__atomic_load_n(&fdtab[fd].flags, __ATOMIC_RELAXED))
		return 0;
	return __atomic_exchange_n(&fdtab[fd].flags, 0, __ATOMIC_ACQ_REL);
}

/* Copy what is known of @from to its duplicate @to. */
static void fd_copy(int from, int to)
{
	struct fdent e;

	if (from < 0 || from >= FDTAB_MAX || to < 0 || to >= FDTAB_MAX || from == to)
		return;
	if (!(__atomic_load_n(&fdtab[from].flags, __ATOMIC_ACQUIRE) & FDF_SRC))
		return;
	e = fdtab[from];
	__atomic_store_n(&fdtab[to].flags, 0, __ATOMIC_RELAXED);
	fdtab[to].cdev = e.cdev;
	fdtab[to].cino = e.cino;
	fdtab[to].size = e.size;
	fdtab[to].mtime_ns = e.mtime_ns;
	fdtab[to].mode = e.mode;
	fdtab[to].ino = e.ino;
	__atomic_store_n(&fdtab[to].flags, FDF_SRC, __ATOMIC_RELEASE);
}

/* The source's attributes of @fd if it is a cache file whose device and inode are @dev, @ino. */
static bool fd_lookup(int fd, uint64_t dev, uint64_t ino, struct preload_srcstat *s)
{
	const struct fdent *e;

	if (fd < 0 || fd >= FDTAB_MAX)
		return false;
	e = &fdtab[fd];
	if (!(__atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) & FDF_SRC))
		return false;
	if (e->cdev != dev || e->cino != ino)
		return false;
	s->size = e->size;
	s->mtime_ns = e->mtime_ns;
	s->mode = e->mode;
	s->type = 0;
	s->ino = e->ino;
	return true;
}

static void fd_patch_stat(int fd, struct stat *st)
{
	struct preload_srcstat s;

	if (fd_lookup(fd, st->st_dev, st->st_ino, &s))
		preload_stat_patch(st, &s);
	else
		shim_dir_patch_stat(fd, st);
}

static void fd_patch_statx(int fd, struct statx *stx)
{
	struct preload_srcstat s;

	if (!(stx->stx_mask & STATX_INO))
		return;
	if (fd_lookup(fd, makedev(stx->stx_dev_major, stx->stx_dev_minor), stx->stx_ino, &s))
		preload_statx_patch(stx, &s);
	else
		shim_dir_patch_statx(fd, stx);
}

void shim_conn_fd_mark(int fd)
{
	if (fd >= 0 && fd < FDTAB_MAX)
		__atomic_store_n(&fdtab[fd].flags, FDF_CONN, __ATOMIC_RELEASE);
}

bool shim_conn_fd_ours(int fd)
{
	if (fd < 0 || fd >= FDTAB_MAX)
		return fd >= 0;
	return __atomic_load_n(&fdtab[fd].flags, __ATOMIC_ACQUIRE) & FDF_CONN;
}

static bool own_fd_unmark(int fd, uint32_t kind)
{
	uint32_t want = kind;

	if (fd < 0 || fd >= FDTAB_MAX)
		return fd >= 0;
	return __atomic_compare_exchange_n(&fdtab[fd].flags, &want, 0, false, __ATOMIC_ACQ_REL,
					   __ATOMIC_RELAXED);
}

bool shim_conn_fd_unmark(int fd)
{
	return own_fd_unmark(fd, FDF_CONN);
}

void shim_fx_fd_mark(int fd)
{
	if (fd >= 0 && fd < FDTAB_MAX)
		__atomic_store_n(&fdtab[fd].flags, FDF_FX, __ATOMIC_RELEASE);
}

bool shim_fx_fd_unmark(int fd)
{
	return own_fd_unmark(fd, FDF_FX);
}

/*
 * Make a descriptor from the daemon into what open(@flags) would have
 * returned, and remember its source. Returns 0, or -errno with @fd closed.
 */
static int fd_install(int fd, int flags, const struct preload_srcstat *s, bool failopen)
{
	struct stat cst;
	int rc;

	if (fd >= FDTAB_MAX && failopen) {
		rc = -EMFILE; /* fstat could not show the source: the original can */
		goto err_close;
	}
	if (!(flags & O_CLOEXEC) && fcntl(fd, F_SETFD, 0) < 0) {
		rc = -errno;
		goto err_close;
	}
	if (flags & O_NONBLOCK)
		fcntl(fd, F_SETFL, O_NONBLOCK);
	if (fd >= FDTAB_MAX)
		return 0;
	if (syscall(SYS_fstat, fd, &cst) < 0) {
		rc = -errno;
		goto err_close;
	}
	fd_set_src(fd, &cst, s);
	return 0;

err_close:
	shim_sys_close(fd);
	return rc;
}

/* ---- opens for writing ---- */

struct wslot {
	int state; /* atomic: 0 free, -1 busy, fd + 1 tracking fd */
	char path[PROTO_PATH_MAX + 1];
};

static struct wslot wtrack[WTRACK_MAX];

static void wtrack_add(int fd, const char *abs)
{
	int i;

	if (fd < 0 || fd >= FDTAB_MAX)
		return;
	for (i = 0; i < WTRACK_MAX; i++) {
		int zero = 0;

		if (!__atomic_compare_exchange_n(&wtrack[i].state, &zero, -1, false,
						 __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
			continue;
		memcpy(wtrack[i].path, abs, strlen(abs) + 1);
		__atomic_store_n(&wtrack[i].state, fd + 1, __ATOMIC_RELEASE);
		__atomic_store_n(&fdtab[fd].flags, FDF_WRITE, __ATOMIC_RELEASE);
		return;
	}
	/* all slots taken: the DROP sent at open is all this file gets */
}

/* Claim the slot tracking @fd before it is closed; -1 when there is none. */
static int wtrack_claim(int fd)
{
	int i;

	for (i = 0; i < WTRACK_MAX; i++) {
		int want = fd + 1;

		if (__atomic_compare_exchange_n(&wtrack[i].state, &want, -1, false,
						__ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
			return i;
	}
	return -1;
}

/* After the close: the new bytes are in place, drop the copy again. */
static void wtrack_release(int slot)
{
	int saved = errno;

	if (shim_enter()) {
		shim_log("close %s: written, dropping the cached copy", wtrack[slot].path);
		shim_drop_remote(wtrack[slot].path);
		shim_leave();
	}
	__atomic_store_n(&wtrack[slot].state, 0, __ATOMIC_RELEASE);
	errno = saved;
}

/* ---- paths ---- */

struct target {
	char abs[PROTO_PATH_MAX + 1];
	struct preload_hit hit;
	bool failopen;
	int fd;
	int err;
};

/* Make @path (relative to @dirfd) absolute and normalised; preload_path_join's result. */
static int resolve(int dirfd, const char *path, char *abs, size_t abssz)
{
	char base[PROTO_PATH_MAX + 1];

	if (path[0] == '/')
		return preload_path_join(NULL, path, abs, abssz);
	if (!path[0])
		return -ENOENT;
	if (dirfd == AT_FDCWD) {
		if (!getcwd(base, sizeof(base)))
			return -errno;
	} else {
		char link[32] = "/proc/self/fd/";
		char digits[12];
		int i = 0, n = 0, fd = dirfd;
		ssize_t len;

		if (dirfd < 0)
			return -EBADF;
		do {
			digits[i++] = (char)('0' + dirfd % 10);
			dirfd /= 10;
		} while (dirfd);
		n = 14;
		while (i > 0)
			link[n++] = digits[--i];
		link[n] = '\0';
		len = readlink(link, base, sizeof(base) - 1);
		if (len < 0)
			return -errno;
		if (len == (ssize_t)sizeof(base) - 1)
			return -ENAMETOOLONG;
		base[len] = '\0';
		/* a directory of an object store opened as a descriptor (preload_dir.c) */
		if (!strncmp(base, "/memfd:", 7) && shim_dir_fd_path(fd, base, sizeof(base)) < 0)
			return -ENOTDIR;
	}
	if (base[0] != '/')
		return -EINVAL; /* "pipe:[...]", an unreachable directory, ... */
	return preload_path_join(base, path, abs, abssz);
}

/*
 * Resolve and match @path. Returns true when a mount serves it and the shim
 * should act, with @t filled.
 */
static bool target_find(const char *op, int dirfd, const char *path, struct target *t)
{
	int rc = resolve(dirfd, path, t->abs, sizeof(t->abs));

	if (rc < 0)
		return false;
	if (!shim_match(t->abs, &t->hit)) {
		if (shim_debug() >= 2)
			shim_log("%s %s: not under a mount", op, t->abs);
		return false;
	}
	t->failopen = t->hit.flags & PROTO_F_MOUNT_FAILOPEN;
	if (rc == 1 && t->failopen) {
		shim_log("%s %s: path goes through '..' or ends in '/', using the original", op,
			 path);
		return false;
	}
	return true;
}

bool shim_objstore_find(const char *op, int dirfd, const char *path, char *abs,
			struct preload_hit *hit)
{
	struct target t;

	if (!path || shim_no_mounts() || !target_find(op, dirfd, path, &t) || t.failopen)
		return false;
	memcpy(abs, t.abs, strlen(t.abs) + 1);
	*hit = t.hit;
	return true;
}

/*
 * NULL or "". Kept out of line of the callers: glibc declares their path
 * arguments nonnull, yet statx accepts NULL with AT_EMPTY_PATH.
 */
static bool path_empty(const char *p)
{
	return !p || !p[0];
}

/* The same hash readdir gives a directory's d_ino and fstat its descriptor (preload_dir.c). */
static uint64_t path_hash(const char *s)
{
	return preload_path_hash(s);
}

/* ---- the open family ---- */

enum decision { D_REAL, D_FD, D_WRITE, D_ERR, D_DONE };

static enum decision open_decide(const char *op, int dirfd, const char *path, int flags,
				 struct target *t)
{
	struct preload_srcstat s;
	enum shim_outcome o;
	char why[256];
	int err = 0, rc;

	shim_access_tick();
	if (!path || shim_no_mounts() || !target_find(op, dirfd, path, t))
		return D_REAL;
	if (preload_flags_write(flags)) {
		if (t->failopen) {
			shim_log("%s %s: for writing, opening the original", op, t->abs);
			return D_WRITE;
		}
		t->err = EROFS;
		shim_log_error(op, t->abs, EROFS, "opened for writing");
		return D_ERR;
	}
	if (!t->failopen && ((flags & O_DIRECTORY) || shim_dir_is_root(t->abs, &t->hit))) {
		/* a directory of an object store, as os.fwalk opens them (preload_dir.c) */
		t->fd = shim_dir_open(t->abs, &t->hit, flags, NULL);
		t->err = -t->fd;
		return t->fd >= 0 ? D_FD : D_ERR;
	}
	if (preload_flags_passthrough(flags, t->failopen)) {
		shim_log("%s %s: flags 0x%x ask for the original", op, t->abs, (unsigned)flags);
		return D_REAL;
	}
	if (t->hit.flags & PROTO_F_MOUNT_FAST) {
		struct stat cst;

		t->fd = shim_open_fast(t->abs, &t->hit, flags, FDTAB_MAX, &cst, &s);
		if (t->fd >= 0) {
			fd_set_src(t->fd, &cst, &s);
			shim_log("%s %s: from the shared index, fd %d", op, t->abs, t->fd);
			return D_FD;
		}
	}
	o = shim_open_remote(t->abs, &t->fd, &s, &err, why, sizeof(why));
	if (o == SHIM_REFUSED && err == EISDIR && !t->failopen) {
		/* a key prefix opened without O_DIRECTORY */
		struct preload_srcstat ds = {.mode = S_IFDIR | 0555, .type = PROTO_FT_DIR};

		t->fd = shim_dir_open(t->abs, &t->hit, flags, &ds);
		t->err = -t->fd;
		return t->fd >= 0 ? D_FD : D_ERR;
	}
	if (o == SHIM_OK) {
		rc = fd_install(t->fd, flags, &s, t->failopen);
		if (rc == 0) {
			shim_log("%s %s: from the cache, fd %d", op, t->abs, t->fd);
			return D_FD;
		}
		err = -rc;
		o = SHIM_DOWN;
		memcpy(why, "cache descriptor unusable", sizeof("cache descriptor unusable"));
	}
	if (t->failopen) {
		if (o == SHIM_REFUSED)
			shim_log("%s %s: daemon says %s%s%s, opening the original", op, t->abs,
				 shim_errname(err), why[0] ? ": " : "", why);
		else if (err == ENOTCONN)
			shim_log("%s %s: daemon down, opening the original", op, t->abs);
		else
			shim_log("%s %s: no answer from the daemon (%s), opening the original", op,
				 t->abs, shim_errname(err));
		return D_REAL;
	}
	t->err = o == SHIM_DOWN ? EIO : err;
	shim_log_error(op, t->abs, t->err,
		       why[0]		? why
		       : o == SHIM_DOWN ? "daemon unreachable"
					: NULL);
	return D_ERR;
}

/* After a successful open for writing of a mount's file: drop the cached copy. */
static void after_write_open(int fd, const struct target *t)
{
	int saved = errno;

	if (shim_enter()) {
		shim_drop_remote(t->abs);
		wtrack_add(fd, t->abs);
		shim_leave();
	}
	errno = saved;
}

static int open_common(enum open_kind k, int dirfd, const char *path, int flags, mode_t mode)
{
	struct target t;
	enum decision d;
	int saved = errno, fd;

	if (!shim_enter())
		return real_open(k, dirfd, path, flags, mode);
	d = open_decide("open", dirfd, path, flags, &t);
	shim_leave();
	switch (d) {
	case D_FD:
		errno = saved;
		return t.fd;
	case D_ERR:
		errno = t.err;
		return -1;
	case D_WRITE:
		errno = saved;
		fd = real_open(k, dirfd, path, flags, mode);
		if (fd >= 0)
			after_write_open(fd, &t);
		return fd;
	default:
		errno = saved;
		return real_open(k, dirfd, path, flags, mode);
	}
}

static mode_t mode_arg(int flags, va_list ap)
{
	if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE)
		return (mode_t)va_arg(ap, int);
	return 0;
}

EXPORT int open(const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = mode_arg(flags, ap);
	va_end(ap);
	return open_common(OK_OPEN, AT_FDCWD, path, flags, mode);
}

EXPORT int open64(const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = mode_arg(flags, ap);
	va_end(ap);
	return open_common(OK_OPEN64, AT_FDCWD, path, flags, mode);
}

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = mode_arg(flags, ap);
	va_end(ap);
	return open_common(OK_OPENAT, dirfd, path, flags, mode);
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = mode_arg(flags, ap);
	va_end(ap);
	return open_common(OK_OPENAT64, dirfd, path, flags, mode);
}

EXPORT int __open_2(const char *path, int flags)
{
	return open_common(OK_OPEN2, AT_FDCWD, path, flags, 0);
}

EXPORT int __open64_2(const char *path, int flags)
{
	return open_common(OK_OPEN64_2, AT_FDCWD, path, flags, 0);
}

EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
	return open_common(OK_OPENAT2, dirfd, path, flags, 0);
}

EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
	return open_common(OK_OPENAT64_2, dirfd, path, flags, 0);
}

/* creat() is an open for writing: it goes to the source and drops the copy. */
static int creat_common(const char *path, mode_t mode, bool is64)
{
	struct target t;
	enum decision d;
	int saved = errno, fd;
	int (*fn)(const char *, mode_t) = is64 ? REAL(creat64) : REAL(creat);

	if (shim_enter()) {
		d = open_decide("creat", AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, &t);
		shim_leave();
	} else {
		d = D_REAL;
	}
	if (d == D_ERR) {
		errno = t.err;
		return -1;
	}
	errno = saved;
	fd = fn ? fn(path, mode)
		: (int)syscall(SYS_openat, AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
	if (fd >= 0 && d == D_WRITE)
		after_write_open(fd, &t);
	return fd;
}

EXPORT int creat(const char *path, mode_t mode)
{
	return creat_common(path, mode, false);
}

EXPORT int creat64(const char *path, mode_t mode)
{
	return creat_common(path, mode, true);
}

/* ---- fopen ---- */

static FILE *real_fopen(bool is64, const char *path, const char *mode)
{
	FILE *(*fn)(const char *, const char *) = is64 ? REAL(fopen64) : REAL(fopen);
	int flags, fd;
	FILE *fp;

	if (fn)
		return fn(path, mode);
	/* inside dlsym: open with the system call and wrap the descriptor */
	if (preload_mode_flags(mode, &flags) < 0) {
		errno = EINVAL;
		return NULL;
	}
	fd = (int)syscall(SYS_openat, AT_FDCWD, path, flags, 0666);
	if (fd < 0)
		return NULL;
	fp = fdopen(fd, mode);
	if (!fp) {
		int e = errno;

		shim_sys_close(fd);
		errno = e;
	}
	return fp;
}

static FILE *fopen_common(bool is64, const char *path, const char *mode)
{
	struct target t;
	enum decision d;
	int saved = errno, flags;
	FILE *fp;

	/* ",ccs=" asks for a conversion fdopen does not offer: leave it to libc */
	if (!path || !mode || strchr(mode, ',') || preload_mode_flags(mode, &flags) < 0)
		return real_fopen(is64, path, mode);
	if (!shim_enter())
		return real_fopen(is64, path, mode);
	d = open_decide("fopen", AT_FDCWD, path, flags, &t);
	shim_leave();
	switch (d) {
	case D_FD:
		fp = fdopen(t.fd, mode);
		if (!fp) {
			int e = errno;

			fd_forget(t.fd);
			shim_sys_close(t.fd);
			errno = e;
			return NULL;
		}
		errno = saved;
		return fp;
	case D_ERR:
		errno = t.err;
		return NULL;
	case D_WRITE:
		errno = saved;
		fp = real_fopen(is64, path, mode);
		if (fp)
			after_write_open(fileno(fp), &t);
		return fp;
	default:
		errno = saved;
		return real_fopen(is64, path, mode);
	}
}

EXPORT FILE *fopen(const char *path, const char *mode)
{
	return fopen_common(false, path, mode);
}

EXPORT FILE *fopen64(const char *path, const char *mode)
{
	return fopen_common(true, path, mode);
}

/* ---- the stat family ---- */

/* A device number for the paths of object-store mount @index. */
static uint64_t mount_dev(int index)
{
	return makedev(0, 0xfe000 + (unsigned)index);
}

uint64_t shim_mount_dev(int index)
{
	return mount_dev(index);
}

/*
 * stat by path. On a mount whose original exists the real call answers; on
 * an object-store mount the daemon does. Returns D_REAL, D_DONE with @s
 * filled, or D_ERR.
 */
static enum decision stat_decide(const char *op, int dirfd, const char *path, struct target *t,
				 struct preload_srcstat *s)
{
	enum shim_outcome o;
	char why[256];
	int err = 0;

	if (!path || shim_no_mounts() || !target_find(op, dirfd, path, t))
		return D_REAL;
	if (t->failopen)
		return D_REAL;
	if (shim_stat_fast(t->abs, &t->hit, s)) {
		shim_log("%s %s: answered from the shared index, size %llu", op, t->abs,
			 (unsigned long long)s->size);
		return D_DONE;
	}
	o = shim_stat_remote(t->abs, s, &err, why, sizeof(why));
	if (o == SHIM_OK) {
		if (!s->ino)
			s->ino = path_hash(t->abs);
		shim_log("%s %s: answered by the daemon, size %llu", op, t->abs,
			 (unsigned long long)s->size);
		return D_DONE;
	}
	t->err = o == SHIM_DOWN ? EIO : err;
	if (o == SHIM_DOWN || err != ENOENT)
		shim_log_error(op, t->abs, t->err,
			       why[0]		? why
			       : o == SHIM_DOWN ? "daemon unreachable"
						: NULL);
	else
		shim_log("%s %s: no such object", op, t->abs);
	return D_ERR;
}

static int stat_common(enum stat_kind k, int ver, int dirfd, const char *path, struct stat *st,
		       int flags)
{
	struct preload_srcstat s;
	struct target t;
	enum decision d;
	int saved = errno, rc;

	if (path && !path[0] && (flags & AT_EMPTY_PATH)) {
		rc = real_stat(k, ver, dirfd, path, st, flags);
		if (rc == 0)
			fd_patch_stat(dirfd, st);
		return rc;
	}
	if (!shim_enter())
		return real_stat(k, ver, dirfd, path, st, flags);
	d = stat_decide("stat", dirfd, path, &t, &s);
	if (d == D_DONE)
		preload_stat_fill(st, &s, mount_dev(t.hit.index), geteuid(), getegid());
	shim_leave();
	switch (d) {
	case D_DONE:
		errno = saved;
		return 0;
	case D_ERR:
		errno = t.err;
		return -1;
	default:
		errno = saved;
		return real_stat(k, ver, dirfd, path, st, flags);
	}
}

EXPORT int stat(const char *restrict path, struct stat *restrict st)
{
	return stat_common(SK_STAT, 0, AT_FDCWD, path, st, 0);
}

EXPORT int stat64(const char *restrict path, struct stat64 *restrict st)
{
	return stat_common(SK_STAT64, 0, AT_FDCWD, path, (struct stat *)st, 0);
}

EXPORT int lstat(const char *restrict path, struct stat *restrict st)
{
	return stat_common(SK_LSTAT, 0, AT_FDCWD, path, st, AT_SYMLINK_NOFOLLOW);
}

EXPORT int lstat64(const char *restrict path, struct stat64 *restrict st)
{
	return stat_common(SK_LSTAT64, 0, AT_FDCWD, path, (struct stat *)st, AT_SYMLINK_NOFOLLOW);
}

EXPORT int fstatat(int dirfd, const char *restrict path, struct stat *restrict st, int flags)
{
	return stat_common(SK_FSTATAT, 0, dirfd, path, st, flags);
}

EXPORT int fstatat64(int dirfd, const char *restrict path, struct stat64 *restrict st, int flags)
{
	return stat_common(SK_FSTATAT64, 0, dirfd, path, (struct stat *)st, flags);
}

EXPORT int __xstat(int ver, const char *path, struct stat *st)
{
	return stat_common(SK_XSTAT, ver, AT_FDCWD, path, st, 0);
}

EXPORT int __xstat64(int ver, const char *path, struct stat64 *st)
{
	return stat_common(SK_XSTAT64, ver, AT_FDCWD, path, (struct stat *)st, 0);
}

EXPORT int __lxstat(int ver, const char *path, struct stat *st)
{
	return stat_common(SK_LXSTAT, ver, AT_FDCWD, path, st, AT_SYMLINK_NOFOLLOW);
}

EXPORT int __lxstat64(int ver, const char *path, struct stat64 *st)
{
	return stat_common(SK_LXSTAT64, ver, AT_FDCWD, path, (struct stat *)st,
			   AT_SYMLINK_NOFOLLOW);
}

EXPORT int __fxstatat(int ver, int dirfd, const char *path, struct stat *st, int flags)
{
	return stat_common(SK_FXSTATAT, ver, dirfd, path, st, flags);
}

EXPORT int __fxstatat64(int ver, int dirfd, const char *path, struct stat64 *st, int flags)
{
	return stat_common(SK_FXSTATAT64, ver, dirfd, path, (struct stat *)st, flags);
}

EXPORT int fstat(int fd, struct stat *st)
{
	int rc = REAL(fstat) ? REAL(fstat)(fd, st) : (int)syscall(SYS_fstat, fd, st);

	if (rc == 0)
		fd_patch_stat(fd, st);
	return rc;
}

EXPORT int fstat64(int fd, struct stat64 *st)
{
	int rc = REAL(fstat64) ? REAL(fstat64)(fd, st) : (int)syscall(SYS_fstat, fd, st);

	if (rc == 0)
		fd_patch_stat(fd, (struct stat *)st);
	return rc;
}

EXPORT int __fxstat(int ver, int fd, struct stat *st)
{
	int rc = REAL(__fxstat) ? REAL(__fxstat)(ver, fd, st) : (int)syscall(SYS_fstat, fd, st);

	if (rc == 0)
		fd_patch_stat(fd, st);
	return rc;
}

EXPORT int __fxstat64(int ver, int fd, struct stat64 *st)
{
	int rc = REAL(__fxstat64) ? REAL(__fxstat64)(ver, fd, st) : (int)syscall(SYS_fstat, fd, st);

	if (rc == 0)
		fd_patch_stat(fd, (struct stat *)st);
	return rc;
}

static int real_statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *stx)
{
	if (REAL(statx))
		return REAL(statx)(dirfd, path, flags, mask, stx);
	return (int)syscall(SYS_statx, dirfd, path, flags, mask, stx);
}

EXPORT int statx(int dirfd, const char *restrict path, int flags, unsigned int mask,
		 struct statx *restrict stx)
{
	struct preload_srcstat s;
	struct target t;
	enum decision d;
	int saved = errno, rc;

	if (path_empty(path) && (flags & AT_EMPTY_PATH)) {
		rc = real_statx(dirfd, path, flags, mask, stx);
		if (rc == 0)
			fd_patch_statx(dirfd, stx);
		return rc;
	}
	if (!shim_enter())
		return real_statx(dirfd, path, flags, mask, stx);
	d = stat_decide("statx", dirfd, path, &t, &s);
	if (d == D_DONE)
		preload_statx_fill(stx, &s, mount_dev(t.hit.index), geteuid(), getegid());
	shim_leave();
	switch (d) {
	case D_DONE:
		errno = saved;
		return 0;
	case D_ERR:
		errno = t.err;
		return -1;
	default:
		errno = saved;
		return real_statx(dirfd, path, flags, mask, stx);
	}
}

/* ---- access ---- */

static int real_access(bool at, int dirfd, const char *path, int amode, int flags)
{
	if (!at && REAL(access))
		return REAL(access)(path, amode);
	if (at && REAL(faccessat))
		return REAL(faccessat)(dirfd, path, amode, flags);
	if (flags)
		return (int)syscall(SYS_faccessat2, dirfd, path, amode, flags);
	return (int)syscall(SYS_faccessat, dirfd, path, amode);
}

static int access_common(bool at, int dirfd, const char *path, int amode, int flags)
{
	struct preload_srcstat s;
	struct target t;
	enum decision d;
	int saved = errno, rc = 0;

	if (!shim_enter())
		return real_access(at, dirfd, path, amode, flags);
	d = stat_decide("access", dirfd, path, &t, &s);
	if (d == D_DONE) {
		struct stat st;

		preload_stat_fill(&st, &s, 0, 0, 0);
		rc = preload_access_check(st.st_mode, amode);
	}
	shim_leave();
	switch (d) {
	case D_DONE:
		if (rc < 0) {
			errno = -rc;
			return -1;
		}
		errno = saved;
		return 0;
	case D_ERR:
		errno = t.err;
		return -1;
	default:
		errno = saved;
		return real_access(at, dirfd, path, amode, flags);
	}
}

EXPORT int access(const char *path, int amode)
{
	return access_common(false, AT_FDCWD, path, amode, 0);
}

EXPORT int faccessat(int dirfd, const char *path, int amode, int flags)
{
	return access_common(true, dirfd, path, amode, flags);
}

/* ---- close and dup: keep fdtab right ---- */

EXPORT int close(int fd)
{
	uint32_t f = fd_forget(fd);
	int slot = (f & FDF_WRITE) ? wtrack_claim(fd) : -1;
	int rc;

	if (f & FDF_CONN)
		shim_conn_fd_lost(fd);
	if (f & FDF_FX)
		shim_fx_fd_lost(fd);
	rc = REAL(close) ? REAL(close)(fd) : shim_sys_close(fd);

	if (slot >= 0)
		wtrack_release(slot);
	return rc;
}

EXPORT int fclose(FILE *fp)
{
	int saved = errno, fd = fileno(fp), slot = -1, rc;

	errno = saved;
	if (fd >= 0 && (fd_forget(fd) & FDF_WRITE))
		slot = wtrack_claim(fd);
	rc = REAL(fclose) ? REAL(fclose)(fp) : _IO_fclose(fp);
	if (slot >= 0)
		wtrack_release(slot);
	return rc;
}

EXPORT int dup(int fd)
{
	int rc = REAL(dup) ? REAL(dup)(fd) : (int)syscall(SYS_dup, fd);

	if (rc >= 0)
		fd_copy(fd, rc);
	return rc;
}

/*
 * dup2 and dup3 close @newfd when it is open: an open for writing gets its
 * second DROP then. Afterwards @newfd is what @oldfd is.
 */
static int dup_over(int oldfd, int newfd, int flags, bool three)
{
	int rc, slot = -1;
	uint32_t f;

	if (three)
		rc = REAL(dup3) ? REAL(dup3)(oldfd, newfd, flags)
				: (int)syscall(SYS_dup3, oldfd, newfd, flags);
	else
		rc = REAL(dup2) ? REAL(dup2)(oldfd, newfd) : (int)syscall(SYS_dup2, oldfd, newfd);
	if (rc < 0 || oldfd == newfd)
		return rc;
	f = fd_forget(newfd);
	if (f & FDF_CONN)
		shim_conn_fd_lost(newfd);
	if (f & FDF_FX)
		shim_fx_fd_lost(newfd);
	if (f & FDF_WRITE)
		slot = wtrack_claim(newfd);
	fd_copy(oldfd, newfd);
	if (slot >= 0)
		wtrack_release(slot);
	return rc;
}

EXPORT int dup2(int oldfd, int newfd)
{
	return dup_over(oldfd, newfd, 0, false);
}

EXPORT int dup3(int oldfd, int newfd, int flags)
{
	return dup_over(oldfd, newfd, flags, true);
}
