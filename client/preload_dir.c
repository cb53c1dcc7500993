/*
 * preload_dir.c - directory listing for object-store mounts: opendir,
 * fdopendir, readdir, scandir and their kin on paths that exist only through
 * granary, answered from the daemon's LIST.
 *
 * DESIGN. A listing is a struct vdir of the shim's own, handed out as the
 * DIR *; every vdir is in a registry (a hash set of pointers under reg_lock),
 * so a DIR * not in it is libc's and goes to the real function. The registry
 * is only locked while at least one vdir is open: a process that never lists
 * an object store pays one atomic load per readdir. Entries are read from
 * the daemon a page at a time as readdir reaches them and kept, for seekdir
 * and because an entry returned stays valid until closedir
 * (preload_dirlist.c); each vdir has its own lock, since threads may share
 * one stream.
 *
 * A directory opened as a descriptor (open with O_DIRECTORY, an open the
 * daemon answers with EISDIR, as os.fwalk's are, or any open of a mount's
 * top, which the daemon would fetch as an object) is a sealed memfd that
 * holds a header and the directory's path. The descriptor describes itself,
 * so it is recognised after dup, fcntl(F_DUPFD), fork and across threads
 * without a table: fdopendir lists it, openat/fstatat resolve names relative
 * to it (preload.c asks shim_dir_fd_path() when /proc names a memfd), and
 * fstat on it shows a directory, with the device and inode stat by path
 * gives. memfds are recognised by their device, learnt from the first one
 * the shim makes.
 *
 * Extended attributes of object-store paths (none) are answered too, so that
 * ls -l does not report each entry as missing.
 *
 * fork: the child handler re-initialises reg_lock (held across fork by the
 * prepare handler, so the set is whole) and the lock of every open vdir; the
 * child's requests go over its own connection (preload_daemon.c).
 */
#include "preload.h"
#include "preload_dirlist.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

#define REG_SIZE      4096 /* open listings at once: at most 3/4 of this */
#define DIRFD_MAGIC   "GRNYDIR"
#define DIRFD_VERSION 1

_Static_assert(sizeof(struct dirent) == sizeof(struct dirent64), "dirent64 is dirent on this ABI");

struct vdir {
	int fd;	   /* the directory's descriptor: fdopendir's, or made by dirfd(); -1 */
	int mount; /* index in the mount table when opened */
	pthread_mutex_t lock;
	size_t pos; /* next entry readdir returns */
	struct preload_srcstat st;
	struct preload_dirlist list;
	char abs[PROTO_PATH_MAX + 1];
};

/* What a directory descriptor holds, followed by the path. */
struct dirfd_hdr {
	char magic[8];
	uint32_t version;
	uint32_t mount;
	uint64_t ino;
	int64_t mtime_ns;
	uint32_t mode;
	uint32_t path_len;
};

/* ---- the real functions ---- */

typedef int (*sel_fn)(const struct dirent *);
typedef int (*cmp_fn)(const struct dirent **, const struct dirent **);

static struct {
	DIR *(*opendir)(const char *);
	DIR *(*fdopendir)(int);
	struct dirent *(*readdir)(DIR *);
	struct dirent64 *(*readdir64)(DIR *);
	int (*readdir_r)(DIR *, struct dirent *, struct dirent **);
	int (*readdir64_r)(DIR *, struct dirent64 *, struct dirent64 **);
	int (*closedir)(DIR *);
	int (*dirfd)(DIR *);
	void (*rewinddir)(DIR *);
	long (*telldir)(DIR *);
	void (*seekdir)(DIR *, long);
	int (*scandir)(const char *, struct dirent ***, sel_fn, cmp_fn);
	int (*scandir64)(const char *, struct dirent64 ***, void *, void *);
	int (*scandirat)(int, const char *, struct dirent ***, sel_fn, cmp_fn);
	int (*scandirat64)(int, const char *, struct dirent64 ***, void *, void *);
	ssize_t (*getxattr)(const char *, const char *, void *, size_t);
	ssize_t (*lgetxattr)(const char *, const char *, void *, size_t);
	ssize_t (*listxattr)(const char *, char *, size_t);
	ssize_t (*llistxattr)(const char *, char *, size_t);
} real;

static void *real_sym(void **slot, const char *name)
{
	void *p = __atomic_load_n(slot, __ATOMIC_ACQUIRE);

	if (!p) {
		p = dlsym(RTLD_NEXT, name);
		__atomic_store_n(slot, p, __ATOMIC_RELEASE);
	}
	return p;
}

/* The next definition of @fn, or NULL (errno ENOSYS for the caller to report). */
#define REAL_DIR(fn) ((__typeof__(real.fn))real_sym((void **)&real.fn, #fn))

/* ---- the registry of listings handed out ---- */

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vdir *reg[REG_SIZE]; /* under reg_lock */
static unsigned reg_n;		   /* atomic; written under reg_lock */

static size_t reg_slot(const void *p)
{
	return (size_t)(((uintptr_t)p >> 4) * 0x9e3779b97f4a7c15ull >> 52) & (REG_SIZE - 1);
}

static int reg_add(struct vdir *d)
{
	size_t i;

	pthread_mutex_lock(&reg_lock);
	if (reg_n >= REG_SIZE / 4 * 3) {
		pthread_mutex_unlock(&reg_lock);
		return -EMFILE;
	}
	for (i = reg_slot(d); reg[i]; i = (i + 1) & (REG_SIZE - 1))
		;
	reg[i] = d;
	__atomic_store_n(&reg_n, reg_n + 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&reg_lock);
	return 0;
}

/* The vdir @p is, or NULL when it is libc's DIR. */
static struct vdir *reg_find(const void *p)
{
	struct vdir *d = NULL;
	size_t i;

	if (!p || !__atomic_load_n(&reg_n, __ATOMIC_ACQUIRE))
		return NULL;
	pthread_mutex_lock(&reg_lock);
	for (i = reg_slot(p); reg[i]; i = (i + 1) & (REG_SIZE - 1))
		if (reg[i] == p) {
			d = reg[i];
			break;
		}
	pthread_mutex_unlock(&reg_lock);
	return d;
}

/* Take @d out of the set; false when it was not there (closed twice). */
static bool reg_del(struct vdir *d)
{
	size_t i, j, k;

	pthread_mutex_lock(&reg_lock);
	for (i = reg_slot(d); reg[i] && reg[i] != d; i = (i + 1) & (REG_SIZE - 1))
		;
	if (!reg[i]) {
		pthread_mutex_unlock(&reg_lock);
		return false;
	}
	/* backward-shift deletion keeps every probe chain unbroken */
	reg[i] = NULL;
	for (j = (i + 1) & (REG_SIZE - 1); reg[j]; j = (j + 1) & (REG_SIZE - 1)) {
		k = reg_slot(reg[j]);
		if ((j > i && (k <= i || k > j)) || (j < i && k <= i && k > j)) {
			reg[i] = reg[j];
			reg[j] = NULL;
			i = j;
		}
	}
	__atomic_store_n(&reg_n, reg_n - 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&reg_lock);
	return true;
}

static void dir_fork_prepare(void)
{
	pthread_mutex_lock(&reg_lock);
}

static void dir_fork_parent(void)
{
	pthread_mutex_unlock(&reg_lock);
}

/* A thread of the parent may have held a listing's lock: none runs here now. */
static void dir_fork_child(void)
{
	size_t i;

	for (i = 0; i < REG_SIZE; i++)
		if (reg[i])
			pthread_mutex_init(&reg[i]->lock, NULL);
	pthread_mutex_init(&reg_lock, NULL);
}

__attribute__((constructor)) static void preload_dir_init(void)
{
	pthread_atfork(dir_fork_prepare, dir_fork_parent, dir_fork_child);
	REAL_DIR(opendir);
	REAL_DIR(fdopendir);
	REAL_DIR(readdir);
	REAL_DIR(readdir64);
	REAL_DIR(closedir);
}

/* ---- directory descriptors ---- */

static uint64_t memfd_dev; /* atomic: st_dev of memfds, 0 until known */

static int memfd_make(const char *name, unsigned flags)
{
	return (int)syscall(SYS_memfd_create, name, flags);
}

/* The memfd device, made known with a throwaway memfd when @probe. */
static uint64_t memfd_dev_get(bool probe)
{
	uint64_t dev = __atomic_load_n(&memfd_dev, __ATOMIC_ACQUIRE);
	struct stat st;
	int fd;

	if (dev || !probe)
		return dev;
	fd = memfd_make("granary-probe", MFD_CLOEXEC);
	if (fd < 0)
		return 0;
	if (syscall(SYS_fstat, fd, &st) == 0) {
		dev = st.st_dev;
		__atomic_store_n(&memfd_dev, dev, __ATOMIC_RELEASE);
	}
	shim_sys_close(fd);
	return dev;
}

/*
 * A descriptor for the directory @abs of mount @mount, attributes @s, with
 * open() @flags' O_CLOEXEC. Returns it or -errno.
 */
static int dirfd_make(const char *abs, int mount, const struct preload_srcstat *s, int flags)
{
	size_t plen = strlen(abs);
	struct {
		struct dirfd_hdr h;
		char path[PROTO_PATH_MAX + 1];
	} buf;
	struct stat st;
	int fd, rc;

	memset(&buf.h, 0, sizeof(buf.h));
	memcpy(buf.h.magic, DIRFD_MAGIC, sizeof(DIRFD_MAGIC));
	buf.h.version = DIRFD_VERSION;
	buf.h.mount = (uint32_t)mount;
	buf.h.ino = s->ino;
	buf.h.mtime_ns = s->mtime_ns;
	buf.h.mode = s->mode;
	buf.h.path_len = (uint32_t)plen;
	memcpy(buf.path, abs, plen);
	fd = memfd_make("granary-dir", MFD_ALLOW_SEALING | ((flags & O_CLOEXEC) ? MFD_CLOEXEC : 0));
	if (fd < 0)
		return -errno;
	if (pwrite(fd, &buf, sizeof(buf.h) + plen, 0) != (ssize_t)(sizeof(buf.h) + plen) ||
	    syscall(SYS_fstat, fd, &st) < 0) {
		rc = errno ? -errno : -EIO;
		goto err_close;
	}
	/* nothing may change what the descriptor says it is */
	fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
	if (flags & O_NONBLOCK)
		fcntl(fd, F_SETFL, O_NONBLOCK);
	__atomic_store_n(&memfd_dev, (uint64_t)st.st_dev, __ATOMIC_RELEASE);
	return fd;

err_close:
	shim_sys_close(fd);
	return rc;
}

/*
 * Whether @fd is a directory descriptor of the shim's; fills @h and @abs
 * (PROTO_PATH_MAX + 1 bytes). @probe lets it learn the memfd device.
 */
static bool dirfd_read(int fd, struct dirfd_hdr *h, char *abs, bool probe)
{
	struct stat st;
	uint64_t dev;
	size_t plen;

	if (fd < 0 || syscall(SYS_fstat, fd, &st) < 0 || !S_ISREG(st.st_mode))
		return false;
	if (st.st_size < (off_t)sizeof(*h) || st.st_size > (off_t)(sizeof(*h) + PROTO_PATH_MAX))
		return false;
	dev = memfd_dev_get(probe);
	if (!dev || (uint64_t)st.st_dev != dev)
		return false;
	if (pread(fd, h, sizeof(*h), 0) != (ssize_t)sizeof(*h) ||
	    memcmp(h->magic, DIRFD_MAGIC, sizeof(DIRFD_MAGIC)) || h->version != DIRFD_VERSION)
		return false;
	plen = h->path_len;
	if (plen != (size_t)st.st_size - sizeof(*h) || plen == 0 ||
	    pread(fd, abs, plen, sizeof(*h)) != (ssize_t)plen || abs[0] != '/' ||
	    memchr(abs, '\0', plen))
		return false;
	abs[plen] = '\0';
	return true;
}

static void hdr_srcstat(const struct dirfd_hdr *h, struct preload_srcstat *s)
{
	memset(s, 0, sizeof(*s));
	s->mode = h->mode;
	s->type = PROTO_FT_DIR;
	s->ino = h->ino;
	s->mtime_ns = h->mtime_ns;
}

int shim_dir_fd_path(int fd, char *abs, size_t abssz)
{
	char path[PROTO_PATH_MAX + 1];
	struct dirfd_hdr h;
	size_t n;

	if (!dirfd_read(fd, &h, path, true))
		return -ENOTDIR;
	n = strlen(path);
	if (n >= abssz)
		return -ENAMETOOLONG;
	memcpy(abs, path, n + 1);
	return 0;
}

void shim_dir_patch_stat(int fd, struct stat *st)
{
	char abs[PROTO_PATH_MAX + 1];
	struct preload_srcstat s;
	struct dirfd_hdr h;
	uint64_t dev = __atomic_load_n(&memfd_dev, __ATOMIC_ACQUIRE);

	if (!dev || (uint64_t)st->st_dev != dev || !S_ISREG(st->st_mode))
		return;
	if (!dirfd_read(fd, &h, abs, false))
		return;
	hdr_srcstat(&h, &s);
	preload_stat_fill(st, &s, shim_mount_dev((int)h.mount), geteuid(), getegid());
}

void shim_dir_patch_statx(int fd, struct statx *stx)
{
	char abs[PROTO_PATH_MAX + 1];
	struct preload_srcstat s;
	struct dirfd_hdr h;
	uint64_t dev = __atomic_load_n(&memfd_dev, __ATOMIC_ACQUIRE);

	if (!dev || makedev(stx->stx_dev_major, stx->stx_dev_minor) != dev ||
	    !S_ISREG(stx->stx_mode))
		return;
	if (!dirfd_read(fd, &h, abs, false))
		return;
	hdr_srcstat(&h, &s);
	preload_statx_fill(stx, &s, shim_mount_dev((int)h.mount), geteuid(), getegid());
}

/*
 * STAT @abs: 0 with @s filled (a missing inode becomes the path's hash),
 * or -errno (EIO when the daemon cannot be asked).
 */
static int dir_stat(const char *abs, struct preload_srcstat *s)
{
	enum shim_outcome o;
	char why[256];
	int err = 0;

	o = shim_stat_remote(abs, s, &err, why, sizeof(why));
	if (o == SHIM_DOWN) {
		shim_log_error("opendir", abs, EIO, why[0] ? why : "daemon unreachable");
		return -EIO;
	}
	if (o == SHIM_REFUSED)
		return -err;
	if (!s->ino)
		s->ino = preload_path_hash(abs);
	return 0;
}

static bool srcstat_dir(const struct preload_srcstat *s)
{
	return (s->mode & S_IFMT) ? S_ISDIR(s->mode) : s->type == PROTO_FT_DIR;
}

int shim_dir_open(const char *abs, const struct preload_hit *hit, int flags,
		  const struct preload_srcstat *known)
{
	struct preload_srcstat s;
	int rc;

	if (known) {
		s = *known;
		if (!s.ino)
			s.ino = preload_path_hash(abs);
	} else {
		rc = dir_stat(abs, &s);
		if (rc < 0) {
			shim_log("open %s: directory: %s", abs, shim_errname(-rc));
			return rc;
		}
		if (!srcstat_dir(&s))
			return -ENOTDIR;
	}
	if (!(s.mode & S_IFMT))
		s.mode = S_IFDIR | 0555;
	rc = dirfd_make(abs, hit->index, &s, flags);
	if (rc >= 0)
		shim_log("open %s: a directory of the object store, fd %d", abs, rc);
	return rc;
}

bool shim_dir_is_root(const char *abs, const struct preload_hit *hit)
{
	char parent[PROTO_PATH_MAX + 1];
	struct preload_hit up;
	size_t n = strlen(abs);

	if (n <= 1 || n > PROTO_PATH_MAX)
		return n <= 1;
	while (n > 1 && abs[n - 1] != '/')
		n--;
	if (n > 1)
		n--; /* the slash before the last name, unless it is the root's */
	memcpy(parent, abs, n);
	parent[n] = '\0';
	return !shim_match(parent, &up) || up.index != hit->index;
}

/* ---- listings ---- */

/* Read the next LIST page of @d. Returns the entries added or -errno. */
static int vdir_fetch(struct vdir *d)
{
	enum shim_outcome o;
	const void *msg;
	char why[256], before[PROTO_NAME_MAX + 1];
	size_t len;
	int err = 0, rc;

	memcpy(before, d->list.cookie, sizeof(before));
	o = shim_list_remote(d->abs, d->list.cookie, &msg, &len, &err, why, sizeof(why));
	if (o == SHIM_DOWN) {
		shim_log_error("readdir", d->abs, EIO, why[0] ? why : "daemon unreachable");
		return -EIO;
	}
	if (o == SHIM_REFUSED) {
		if (err != ENOENT && err != ENOTDIR)
			shim_log_error("readdir", d->abs, err, why[0] ? why : NULL);
		return -err;
	}
	rc = preload_dirlist_add_reply(&d->list, msg, len);
	if (rc == -EBADMSG)
		shim_log_error("readdir", d->abs, EIO, "garbled listing from the daemon");
	if (rc < 0)
		return rc == -EBADMSG ? -EIO : rc;
	if (d->list.more && before[0] && !strcmp(before, d->list.cookie))
		d->list.more = false; /* no progress: end rather than loop */
	return rc;
}

/*
 * Open the listing of @abs on mount @mount, over @fd (owned by the listing
 * from now on) or none (-1). With @known_dir the caller has checked that
 * @abs is a directory. Returns the listing, or NULL with *@err set.
 */
static struct vdir *vdir_open(const char *abs, int mount, int fd,
			      const struct preload_srcstat *known, int *err)
{
	struct preload_srcstat s;
	struct vdir *d = calloc(1, sizeof(*d));
	int rc, lrc;

	if (!d) {
		*err = ENOMEM;
		return NULL;
	}
	d->fd = fd;
	d->mount = mount;
	memcpy(d->abs, abs, strlen(abs) + 1);
	pthread_mutex_init(&d->lock, NULL);
	if (preload_dirlist_init(&d->list, abs) < 0) {
		rc = -ENOMEM;
		goto err_free;
	}
	lrc = vdir_fetch(d);
	if (lrc == -EIO) {
		rc = lrc;
		goto err_list;
	}
	if (known) {
		d->st = *known;
		rc = lrc < 0 ? lrc : 0;
	} else if (lrc > 0 || (lrc == 0 && d->list.more)) {
		/* entries: a directory (an object store lists no files as such) */
		d->st.mode = S_IFDIR | 0555;
		d->st.type = PROTO_FT_DIR;
		d->st.ino = preload_path_hash(abs);
		rc = 0;
	} else {
		/* empty, or refused: an empty directory, a file, or nothing at all? */
		rc = dir_stat(abs, &s);
		if (rc == 0 && !srcstat_dir(&s))
			rc = -ENOTDIR;
		else if (rc == 0 && lrc < 0)
			rc = lrc;
		d->st = s;
	}
	if (rc < 0)
		goto err_list;
	if (!(d->st.mode & S_IFMT))
		d->st.mode = S_IFDIR | 0555;
	rc = reg_add(d);
	if (rc < 0)
		goto err_list;
	return d;

err_list:
	preload_dirlist_fini(&d->list);
err_free:
	pthread_mutex_destroy(&d->lock);
	free(d);
	*err = -rc;
	return NULL;
}

/* The next entry of @d, or NULL at the end (errno unchanged) or on error (errno set). */
static struct dirent64 *vdir_read(struct vdir *d)
{
	struct dirent64 *de = NULL;
	int saved = errno, rc = 0;

	pthread_mutex_lock(&d->lock);
	while (d->pos >= d->list.n && d->list.more) {
		if (!shim_enter()) {
			rc = -EIO;
			break;
		}
		rc = vdir_fetch(d);
		shim_leave();
		if (rc < 0)
			break;
	}
	/* valid until closedir, as threads sharing a stream expect of glibc's */
	if (rc >= 0 && (de = preload_dirlist_at(&d->list, d->pos)))
		d->pos++;
	pthread_mutex_unlock(&d->lock);
	errno = rc < 0 ? -rc : saved; /* the end of the listing leaves errno alone */
	return de;
}

static void vdir_free(struct vdir *d)
{
	if (d->fd >= 0)
		close(d->fd);
	preload_dirlist_fini(&d->list);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

/*
 * The listing of @path (relative to @dirfd) when it lies on an object-store
 * mount: 1 with *@out set, 0 when libc should answer, -errno.
 */
static int vdir_open_path(const char *op, int dirfd, const char *path, struct vdir **out)
{
	char abs[PROTO_PATH_MAX + 1];
	struct preload_hit hit;
	int err = 0;

	if (!path || !shim_enter())
		return 0;
	if (!shim_objstore_find(op, dirfd, path, abs, &hit)) {
		shim_leave();
		return 0;
	}
	*out = vdir_open(abs, hit.index, -1, NULL, &err);
	if (*out)
		shim_log("%s %s: listed by the daemon", op, abs);
	else if (err != EIO)
		shim_log("%s %s: %s", op, abs, shim_errname(err));
	shim_leave();
	return *out ? 1 : -err;
}

EXPORT DIR *opendir(const char *name)
{
	struct vdir *d = NULL;
	int saved = errno, rc = vdir_open_path("opendir", AT_FDCWD, name, &d);

	if (rc > 0) {
		errno = saved;
		return (DIR *)d;
	}
	if (rc < 0) {
		errno = -rc;
		return NULL;
	}
	if (!REAL_DIR(opendir)) {
		errno = ENOSYS;
		return NULL;
	}
	return real.opendir(name);
}

EXPORT DIR *fdopendir(int fd)
{
	char abs[PROTO_PATH_MAX + 1];
	struct preload_srcstat s;
	struct dirfd_hdr h;
	struct vdir *d;
	int saved = errno, err = 0;

	if (dirfd_read(fd, &h, abs, true)) {
		if (!shim_enter()) {
			errno = EIO;
			return NULL;
		}
		hdr_srcstat(&h, &s);
		d = vdir_open(abs, (int)h.mount, fd, &s, &err);
		shim_leave();
		if (!d) {
			errno = err;
			return NULL;
		}
		fcntl(fd, F_SETFD, FD_CLOEXEC); /* as glibc's fdopendir does */
		errno = saved;
		return (DIR *)d;
	}
	if (!REAL_DIR(fdopendir)) {
		errno = ENOSYS;
		return NULL;
	}
	return real.fdopendir(fd);
}

EXPORT struct dirent *readdir(DIR *dirp)
{
	struct vdir *d = reg_find(dirp);

	if (d)
		return (struct dirent *)vdir_read(d);
	if (!REAL_DIR(readdir)) {
		errno = ENOSYS;
		return NULL;
	}
	return real.readdir(dirp);
}

EXPORT struct dirent64 *readdir64(DIR *dirp)
{
	struct vdir *d = reg_find(dirp);

	if (d)
		return vdir_read(d);
	if (!REAL_DIR(readdir64)) {
		errno = ENOSYS;
		return NULL;
	}
	return real.readdir64(dirp);
}

static int vdir_read_r(struct vdir *d, struct dirent64 *entry, struct dirent64 **result)
{
	int saved = errno, rc = 0;
	struct dirent64 *de;

	errno = 0;
	de = vdir_read(d);
	if (de) {
		memcpy(entry, de, offsetof(struct dirent64, d_name) + strlen(de->d_name) + 1);
		*result = entry;
	} else {
		rc = errno;
		*result = NULL;
	}
	errno = saved;
	return rc;
}

EXPORT int readdir_r(DIR *dirp, struct dirent *entry, struct dirent **result)
{
	struct vdir *d = reg_find(dirp);

	if (d)
		return vdir_read_r(d, (struct dirent64 *)entry, (struct dirent64 **)result);
	if (!REAL_DIR(readdir_r))
		return ENOSYS;
	return real.readdir_r(dirp, entry, result);
}

EXPORT int readdir64_r(DIR *dirp, struct dirent64 *entry, struct dirent64 **result)
{
	struct vdir *d = reg_find(dirp);

	if (d)
		return vdir_read_r(d, entry, result);
	if (!REAL_DIR(readdir64_r))
		return ENOSYS;
	return real.readdir64_r(dirp, entry, result);
}

EXPORT int closedir(DIR *dirp)
{
	struct vdir *d = reg_find(dirp);

	if (d) {
		if (!reg_del(d)) {
			errno = EBADF; /* another thread closed it meanwhile */
			return -1;
		}
		vdir_free(d);
		return 0;
	}
	if (!REAL_DIR(closedir)) {
		errno = ENOSYS;
		return -1;
	}
	return real.closedir(dirp);
}

EXPORT int dirfd(DIR *dirp)
{
	struct vdir *d = reg_find(dirp);
	int fd;

	if (!d) {
		if (!REAL_DIR(dirfd)) {
			errno = ENOSYS;
			return -1;
		}
		return real.dirfd(dirp);
	}
	pthread_mutex_lock(&d->lock);
	if (d->fd < 0) {
		/* made when first asked for: most listings never are */
		fd = dirfd_make(d->abs, d->mount, &d->st, O_CLOEXEC);
		if (fd >= 0)
			d->fd = fd;
	} else {
		fd = d->fd;
	}
	pthread_mutex_unlock(&d->lock);
	if (fd < 0) {
		errno = -fd;
		return -1;
	}
	return fd;
}

/*
 * Back to the first entry. The entries already read are kept: a listing
 * shows the object store as it was when first read that far.
 */
EXPORT void rewinddir(DIR *dirp)
{
	struct vdir *d = reg_find(dirp);

	if (!d) {
		if (REAL_DIR(rewinddir))
			real.rewinddir(dirp);
		return;
	}
	pthread_mutex_lock(&d->lock);
	d->pos = 0;
	pthread_mutex_unlock(&d->lock);
}

EXPORT long telldir(DIR *dirp)
{
	struct vdir *d = reg_find(dirp);
	long pos;

	if (!d) {
		if (!REAL_DIR(telldir)) {
			errno = ENOSYS;
			return -1;
		}
		return real.telldir(dirp);
	}
	pthread_mutex_lock(&d->lock);
	pos = (long)d->pos;
	pthread_mutex_unlock(&d->lock);
	return pos;
}

EXPORT void seekdir(DIR *dirp, long loc)
{
	struct vdir *d = reg_find(dirp);

	if (!d) {
		if (REAL_DIR(seekdir))
			real.seekdir(dirp, loc);
		return;
	}
	pthread_mutex_lock(&d->lock);
	d->pos = loc > 0 ? (size_t)loc : 0; /* past the end: read on to it */
	pthread_mutex_unlock(&d->lock);
}

/* ---- scandir: glibc's calls its internal opendir, so it is answered here ---- */

static int vdir_scan(struct vdir *d, struct dirent64 ***namelist, sel_fn sel, cmp_fn cmp)
{
	struct dirent64 **v = NULL, *de, *copy;
	size_t n = 0, cap = 0, sz;
	int saved = errno, err;

	for (;;) {
		errno = 0;
		de = vdir_read(d);
		if (!de) {
			err = errno;
			if (err)
				goto err_free;
			break;
		}
		if (sel && !sel((const struct dirent *)de))
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 32;
			struct dirent64 **nv = realloc(v, ncap * sizeof(*nv));

			if (!nv) {
				err = ENOMEM;
				goto err_free;
			}
			v = nv;
			cap = ncap;
		}
		sz = de->d_reclen > offsetof(struct dirent64, d_name) ? de->d_reclen : sizeof(*de);
		copy = malloc(sz);
		if (!copy) {
			err = ENOMEM;
			goto err_free;
		}
		memcpy(copy, de, sz);
		v[n++] = copy;
	}
	if (n > INT32_MAX) {
		err = EOVERFLOW;
		goto err_free;
	}
	if (cmp && n > 1)
		qsort(v, n, sizeof(*v), (int (*)(const void *, const void *))cmp);
	*namelist = v;
	errno = saved;
	return (int)n;

err_free:
	while (n)
		free(v[--n]);
	free(v);
	errno = err;
	return -1;
}

static int scan_common(int dirfd, const char *path, struct dirent64 ***namelist, sel_fn sel,
		       cmp_fn cmp, bool *handled)
{
	struct vdir *d = NULL;
	int rc = vdir_open_path("scandir", dirfd, path, &d);

	*handled = rc != 0;
	if (rc < 0) {
		errno = -rc;
		return -1;
	}
	if (rc == 0)
		return 0;
	rc = vdir_scan(d, namelist, sel, cmp);
	if (reg_del(d))
		vdir_free(d);
	return rc;
}

EXPORT int scandir(const char *path, struct dirent ***namelist, sel_fn sel, cmp_fn cmp)
{
	bool handled;
	int rc = scan_common(AT_FDCWD, path, (struct dirent64 ***)namelist, sel, cmp, &handled);

	if (handled)
		return rc;
	if (!REAL_DIR(scandir)) {
		errno = ENOSYS;
		return -1;
	}
	return real.scandir(path, namelist, sel, cmp);
}

EXPORT int scandir64(const char *path, struct dirent64 ***namelist,
		     int (*sel)(const struct dirent64 *),
		     int (*cmp)(const struct dirent64 **, const struct dirent64 **))
{
	bool handled;
	int rc = scan_common(AT_FDCWD, path, namelist, (sel_fn)sel, (cmp_fn)cmp, &handled);

	if (handled)
		return rc;
	if (!REAL_DIR(scandir64)) {
		errno = ENOSYS;
		return -1;
	}
	return real.scandir64(path, namelist, (void *)sel, (void *)cmp);
}

EXPORT int scandirat(int dirfd, const char *path, struct dirent ***namelist, sel_fn sel, cmp_fn cmp)
{
	bool handled;
	int rc = scan_common(dirfd, path, (struct dirent64 ***)namelist, sel, cmp, &handled);

	if (handled)
		return rc;
	if (!REAL_DIR(scandirat)) {
		errno = ENOSYS;
		return -1;
	}
	return real.scandirat(dirfd, path, namelist, sel, cmp);
}

EXPORT int scandirat64(int dirfd, const char *path, struct dirent64 ***namelist,
		       int (*sel)(const struct dirent64 *),
		       int (*cmp)(const struct dirent64 **, const struct dirent64 **))
{
	bool handled;
	int rc = scan_common(dirfd, path, namelist, (sel_fn)sel, (cmp_fn)cmp, &handled);

	if (handled)
		return rc;
	if (!REAL_DIR(scandirat64)) {
		errno = ENOSYS;
		return -1;
	}
	return real.scandirat64(dirfd, path, namelist, (void *)sel, (void *)cmp);
}

/* ---- extended attributes: what ls -l asks of every entry ---- */

/*
 * Objects and prefixes carry none. The path is not looked up: callers ask
 * after a stat, and a request per entry would double a listing's cost.
 * Returns true when @path lies on an object-store mount.
 */
static bool xattr_objstore(const char *op, const char *path)
{
	char abs[PROTO_PATH_MAX + 1];
	struct preload_hit hit;
	bool on;

	if (!path || !shim_enter())
		return false;
	on = shim_objstore_find(op, AT_FDCWD, path, abs, &hit);
	shim_leave();
	return on;
}

static ssize_t xattr_get(bool follow, const char *path, const char *name, void *value, size_t size)
{
	ssize_t (*fn)(const char *, const char *, void *, size_t);

	if (xattr_objstore("getxattr", path)) {
		errno = ENODATA;
		return -1;
	}
	fn = follow ? REAL_DIR(getxattr) : REAL_DIR(lgetxattr);
	if (!fn) {
		errno = ENOTSUP;
		return -1;
	}
	return fn(path, name, value, size);
}

static ssize_t xattr_list(bool follow, const char *path, char *list, size_t size)
{
	ssize_t (*fn)(const char *, char *, size_t);

	if (xattr_objstore("listxattr", path))
		return 0;
	fn = follow ? REAL_DIR(listxattr) : REAL_DIR(llistxattr);
	if (!fn) {
		errno = ENOTSUP;
		return -1;
	}
	return fn(path, list, size);
}

EXPORT ssize_t getxattr(const char *path, const char *name, void *value, size_t size)
{
	return xattr_get(true, path, name, value, size);
}

EXPORT ssize_t lgetxattr(const char *path, const char *name, void *value, size_t size)
{
	return xattr_get(false, path, name, value, size);
}

EXPORT ssize_t listxattr(const char *path, char *list, size_t size)
{
	return xattr_list(true, path, list, size);
}

EXPORT ssize_t llistxattr(const char *path, char *list, size_t size)
{
	return xattr_list(false, path, list, size);
}
