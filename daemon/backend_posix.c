/*
 * backend_posix.c - any mounted path: an NFS export, SMB, Lustre, a local disk.
 *
 * Objects are opened beneath the mount's source directory with openat2 and
 * RESOLVE_BENEATH, so neither ".." nor a symlink can lead out of it. The
 * validator is size + mtime_ns + inode.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "backend.h"
#include "caller.h"
#include "fetch.h"
#include "log.h"
#include "proto.h"

#define OPENAT2_TRIES 64 /* lookups made again after a concurrent rename */

struct posix_mount {
	const char *source;
};

/*
 * The source directory, opened by path for each call and closed after it
 * (the caller closes): nothing is held open on the NAS, so it can be
 * unmounted, and a NAS mounted after start-up, an export remounted, or a
 * dataset directory renamed or swapped is seen at once.
 */
static int posix_root(struct posix_mount *pm)
{
	int fd = open(pm->source, O_PATH | O_DIRECTORY | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

/*
 * Could anyone but root or the daemon change where @path leads? Each name on
 * it (symlinks too) must belong to root or the daemon, and each directory
 * must be writable by no one else, or be sticky with the next name already
 * there (then only its owner may replace it). Returns 0, or -EPERM with the
 * reason in @why. A missing tail is judged by its parent.
 */
static int path_unsafe(const char *path, char *why, size_t whysz)
{
	char p[PATH_MAX];
	uid_t me = geteuid();
	struct stat sb, parent = {.st_mode = S_IFDIR | 0755};
	size_t i, n = strlen(path);

	if (n >= sizeof(p))
		return 0;
	memcpy(p, path, n + 1);
	for (i = 1; i <= n; i++) {
		if (p[i] != '/' && p[i] != '\0')
			continue;
		p[i] = '\0';
		if (lstat(p, &sb) < 0) {
			if ((parent.st_mode & 022) && !(parent.st_mode & S_ISVTX)) {
				snprintf(why, whysz, "%s does not exist and others may create it",
					 p);
				return -EPERM;
			}
			if (parent.st_mode & S_ISVTX) {
				snprintf(
					why, whysz,
					"%s does not exist and any user may create it in its sticky parent",
					p);
				return -EPERM;
			}
			return 0;
		}
		if (sb.st_uid != 0 && sb.st_uid != me) {
			snprintf(why, whysz,
				 "%s belongs to uid %u, who can change what it leads to", p,
				 (unsigned)sb.st_uid);
			return -EPERM;
		}
		if (S_ISDIR(sb.st_mode) && (sb.st_mode & 022) && !(sb.st_mode & S_ISVTX) && i < n) {
			snprintf(why, whysz,
				 "%s is writable by others, who can replace what is in it", p);
			return -EPERM;
		}
		parent = sb;
		if (i < n)
			p[i] = '/';
	}
	return 0;
}

static int posix_init(struct mount *m, char *err, size_t errsz)
{
	struct posix_mount *pm = calloc(1, sizeof(*pm));
	char why[PATH_MAX + 128], real[PATH_MAX];
	int fd, rc;

	if (!pm)
		return -ENOMEM;
	pm->source = m->cfg->source ? m->cfg->source : m->cfg->path;
	m->priv = pm;
	/* the source is opened by path on every call: nobody else may move it */
	rc = path_unsafe(pm->source, why, sizeof(why));
	if (rc == 0 && realpath(pm->source, real))
		rc = path_unsafe(real, why, sizeof(why));
	if (rc < 0 && !m->cfg->allow_unsafe_path) {
		snprintf(err, errsz,
			 "source %s is not safe: %s (set allow_unsafe_path: true to accept it)",
			 pm->source, why);
		return rc;
	}
	if (rc < 0)
		log_warn("mount source accepted though unsafe mount=%s source=%s why=\"%s\"",
			 m->cfg->path, pm->source, why);
	fd = posix_root(pm);
	if (fd >= 0)
		close(fd);
	if (fd < 0) {
		/* the NAS may come later; every request retries */
		snprintf(err, errsz, "source %s is not reachable yet: %s", pm->source,
			 strerror(-fd));
		log_warn("mount source not reachable mount=%s source=%s err=\"%s\"", m->cfg->path,
			 pm->source, strerror(-fd));
	}
	return 0;
}

static void posix_fini(struct mount *m)
{
	free(m->priv);
	m->priv = NULL;
}

/*
 * Does what @fd refers to carry a POSIX access ACL beyond its mode bits?
 * Errors other than "no such attribute" or "not supported" say yes: a copy is
 * only public when that is certain.
 */
static bool fd_has_acl(int fd)
{
	char path[64];
	ssize_t n;

	/* through the descriptor's magic link: the object itself, O_PATH ones too */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = getxattr(path, "system.posix_acl_access", NULL, 0);
	return n >= 0 || (errno != ENODATA && errno != EOPNOTSUPP);
}

static int open_beneath(int rootfd, const char *rel, uint64_t flags)
{
	struct open_how how = {
		/* O_PATH takes no other open flags */
		.flags = flags | O_CLOEXEC | ((flags & O_PATH) ? 0 : O_NOCTTY),
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
	};
	int tries = OPENAT2_TRIES;
	long fd;

	/*
	 * A rename anywhere on the system while ".." is resolved beneath the
	 * root makes openat2 answer EAGAIN: the lookup is to be made again.
	 */
	do
		fd = syscall(SYS_openat2, rootfd, rel[0] ? rel : ".", &how, sizeof(how));
	while (fd < 0 && errno == EAGAIN && --tries > 0);
	if (fd < 0 && errno == ENOSYS) {
		/* kernels before 5.6: the request path already refuses ".." */
		fd = openat(rootfd, rel[0] ? rel : ".", (int)(how.flags));
	}
	return fd < 0 ? -errno : (int)fd;
}

/*
 * May every local user read what @fd holds? Only then can its copy be public
 * (readable by all through the fast path): its mode gives read to owner,
 * group and others alike, no access ACL narrows it, and every directory from
 * it up to "/" may be searched by owner, group and others, with no ACL
 * either. A mode like 0604 is not public: the file's group is refused. Any
 * doubt (a path too long, a failed stat) answers no.
 */
static bool posix_public(int fd, const struct stat *sb)
{
	char link[64], path[PATH_MAX], *comp[PATH_MAX / 2], *save = NULL, *c;
	size_t n_comp = 0, i;
	struct stat st;
	bool ok = false;
	ssize_t n;
	int dir;

	if (!S_ISREG(sb->st_mode) || (sb->st_mode & 0444) != 0444 || fd_has_acl(fd))
		return false;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof(path) - 1);
	if (n <= 0 || path[0] != '/')
		return false;
	path[n] = '\0';
	for (c = strtok_r(path, "/", &save); c && n_comp < sizeof(comp) / sizeof(comp[0]);
	     c = strtok_r(NULL, "/", &save))
		comp[n_comp++] = c;
	if (!n_comp || c)
		return false;
	/*
	 * Walk down from "/" one name at a time, judging each directory by
	 * the descriptor it was reached through: a rename during the walk
	 * cannot make it judge one directory and pass through another.
	 */
	dir = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	for (i = 0; dir >= 0; i++) {
		int next;

		if (fstat(dir, &st) < 0)
			break;
		if (i == n_comp) {
			/* the name leads to the very file being judged */
			ok = st.st_dev == sb->st_dev && st.st_ino == sb->st_ino;
			break;
		}
		if (!S_ISDIR(st.st_mode) || (st.st_mode & 0111) != 0111 || fd_has_acl(dir))
			break;
		next = openat(dir, comp[i], O_PATH | O_NOFOLLOW | O_CLOEXEC);
		close(dir);
		dir = next;
	}
	if (dir >= 0)
		close(dir);
	return ok;
}

static void fill_validator(const struct stat *sb, struct validator *v)
{
	memset(v, 0, sizeof(*v));
	v->size = (uint64_t)sb->st_size;
	v->mtime_ns = clock_ns_of(&sb->st_mtim);
	v->ino = sb->st_ino;
	v->dev = sb->st_dev;
	v->mode = sb->st_mode;
	v->uid = sb->st_uid;
	v->gid = sb->st_gid;
}

/*
 * Open @rel beneath @m's source with @flags: a descriptor, or -errno with a
 * sentence in @err (a path leading out of the mount is -EACCES). Symlinks are
 * followed only while they stay beneath the source.
 */
static int posix_open_rel(struct mount *m, const char *rel, uint64_t flags, char *err, size_t errsz)
{
	struct posix_mount *pm = m->priv;
	int root = posix_root(pm), fd;

	if (root < 0) {
		snprintf(err, errsz, "source %s unreachable", pm->source);
		return root;
	}
	fd = open_beneath(root, rel, flags);
	close(root);
	if (fd == -EXDEV) {
		snprintf(err, errsz, "path leads out of the mount");
		return -EACCES;
	}
	return fd;
}

/*
 * Open @rel for reading and describe it. O_NONBLOCK: a FIFO or a device
 * must not hold a worker; only regular files go further.
 */
static int open_regular(struct mount *m, const char *rel, int *fdp, struct stat *sb, char *err,
			size_t errsz)
{
	int fd, rc;

	fd = posix_open_rel(m, rel, O_RDONLY | O_NONBLOCK, err, errsz);
	if (fd < 0)
		return fd;
	if (fstat(fd, sb) < 0) {
		rc = -errno;
		goto err_close;
	}
	if (S_ISDIR(sb->st_mode)) {
		rc = -EISDIR;
		goto err_close;
	}
	if (!S_ISREG(sb->st_mode)) {
		snprintf(err, errsz, "not a regular file");
		rc = -EINVAL;
		goto err_close;
	}
	*fdp = fd;
	return 0;

err_close:
	close(fd);
	return rc;
}

static int posix_open(struct mount *m, const char *rel, int *fdp, struct validator *v, char *err,
		      size_t errsz)
{
	struct stat sb;
	int rc;

	rc = open_regular(m, rel, fdp, &sb, err, errsz);
	if (rc < 0)
		return rc;
	fill_validator(&sb, v);
	v->restricted = !posix_public(*fdp, &sb);
	return 0;
}

/*
 * Act as @who (NULL: as the daemon) for the calls that follow; 0 or -EACCES
 * with a sentence. Every failure to switch is a refusal.
 */
static int as_caller(const struct caller *who, struct caller_saved *sv, char *err, size_t errsz)
{
	sv->entered = false;
	if (!who)
		return 0;
	if (caller_enter(who, sv) < 0) {
		snprintf(err, errsz, "cannot check access as uid %u", (unsigned)who->uid);
		return -EACCES;
	}
	return 0;
}

static int posix_check(struct mount *m, const char *rel, const struct caller *who,
		       struct validator *seen, int *fdp, char *err, size_t errsz)
{
	struct caller_saved sv;
	struct stat sb;
	int fd = -1, rc;

	rc = as_caller(who, &sv, err, errsz);
	if (rc < 0)
		return rc;
	if (seen) {
		rc = open_regular(m, rel, &fd, &sb, err, errsz);
	} else {
		/* may write: asked of the file itself, found as the caller finds it */
		fd = posix_open_rel(m, rel, O_PATH, err, errsz);
		rc = fd < 0						       ? fd
		     : faccessat(fd, "", W_OK, AT_EMPTY_PATH | AT_EACCESS) < 0 ? -errno
									       : 0;
	}
	caller_leave(&sv);
	if (rc == 0 && seen && fdp) {
		*fdp = fd; /* the caller's own open, for the fetch */
		fd = -1;
	}
	if (fd >= 0)
		close(fd);
	if (rc < 0)
		return rc;
	if (seen)
		fill_validator(&sb, seen);
	return 0;
}

static int posix_describe_fd(struct mount *m, int fd, struct validator *v, char *err, size_t errsz)
{
	struct stat sb;

	(void)m;
	if (fstat(fd, &sb) < 0) {
		snprintf(err, errsz, "fstat of the source failed");
		return -errno;
	}
	fill_validator(&sb, v);
	v->restricted = !posix_public(fd, &sb);
	return 0;
}

static int posix_stat(struct mount *m, const char *rel, const struct caller *who,
		      struct validator *v, int *type, bool *readable, char *err, size_t errsz)
{
	struct caller_saved sv;
	struct stat sb;
	int fd, rc;

	rc = as_caller(who, &sv, err, errsz);
	if (rc < 0)
		return rc;
	/* beneath the mount, like open: a symlink out of it describes nothing */
	fd = posix_open_rel(m, rel, O_PATH, err, errsz);
	rc = fd < 0 ? fd : fstat(fd, &sb) < 0 ? -errno : 0;
	/* whether the caller may read it too: a stat must not tell what is cached of the rest */
	*readable = rc == 0 && faccessat(fd, "", R_OK, AT_EACCESS | AT_EMPTY_PATH) == 0;
	caller_leave(&sv);
	if (fd >= 0)
		close(fd);
	if (rc < 0)
		return rc;
	fill_validator(&sb, v);
	*type = S_ISREG(sb.st_mode)   ? PROTO_FT_REG
		: S_ISDIR(sb.st_mode) ? PROTO_FT_DIR
				      : PROTO_FT_OTHER;
	return 0;
}

/* As the daemon: describe @rel, and whether a copy of it may be public. */
static int posix_describe(struct mount *m, const char *rel, struct validator *v, int *type,
			  char *err, size_t errsz)
{
	struct stat sb;
	int fd, rc;

	fd = posix_open_rel(m, rel, O_PATH, err, errsz);
	if (fd < 0)
		return fd;
	rc = fstat(fd, &sb) < 0 ? -errno : 0;
	if (rc == 0) {
		fill_validator(&sb, v);
		v->restricted = !posix_public(fd, &sb);
		*type = S_ISREG(sb.st_mode)   ? PROTO_FT_REG
			: S_ISDIR(sb.st_mode) ? PROTO_FT_DIR
					      : PROTO_FT_OTHER;
	}
	close(fd);
	return rc;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Describe one entry of a listing: a symlink by what it leads to, and only
 * when that stays beneath the mount (openat2 from the directory with
 * RESOLVE_BENEATH would allow "..", so resolve from the source's root).
 */
static void describe_entry(struct mount *m, int dirfd, const char *rel, const char *name,
			   struct backend_dirent *de)
{
	char path[PATH_MAX], err[8];
	struct stat sb;
	int fd;

	if (fstatat(dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
		de->type = PROTO_FT_OTHER; /* vanished */
		return;
	}
	if (S_ISLNK(sb.st_mode)) {
		if ((size_t)snprintf(path, sizeof(path), "%s%s%s", rel, rel[0] ? "/" : "", name) >=
		    sizeof(path)) {
			de->type = PROTO_FT_OTHER;
			return;
		}
		fd = posix_open_rel(m, path, O_PATH, err, sizeof(err));
		if (fd < 0 || fstat(fd, &sb) < 0) {
			if (fd >= 0)
				close(fd);
			de->type = PROTO_FT_OTHER; /* dangling, or leads out of the mount */
			return;
		}
		de->readable = faccessat(fd, "", R_OK, AT_EACCESS | AT_EMPTY_PATH) == 0;
		close(fd);
	} else {
		de->readable = faccessat(dirfd, name, R_OK, AT_EACCESS) == 0;
	}
	de->type = S_ISREG(sb.st_mode)	 ? PROTO_FT_REG
		   : S_ISDIR(sb.st_mode) ? PROTO_FT_DIR
					 : PROTO_FT_OTHER;
	de->size = S_ISREG(sb.st_mode) ? (uint64_t)sb.st_size : 0;
}

static int posix_list(struct mount *m, const char *rel, const struct caller *who, const char *after,
		      int (*fn)(const struct backend_dirent *de, void *arg), void *arg, char *err,
		      size_t errsz)
{
	size_t n = 0, cap = 0, i;
	struct caller_saved sv;
	char **names = NULL;
	struct dirent *e;
	int fd, rc;
	DIR *dir;

	/* the whole listing as the caller: names, then each entry's stat */
	rc = as_caller(who, &sv, err, errsz);
	if (rc < 0)
		return rc;
	fd = posix_open_rel(m, rel, O_RDONLY | O_DIRECTORY | O_NONBLOCK, err, errsz);
	if (fd < 0) {
		caller_leave(&sv);
		return fd;
	}
	dir = fdopendir(fd);
	if (!dir) {
		rc = -errno;
		close(fd);
		caller_leave(&sv);
		return rc;
	}
	while ((e = readdir(dir))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (after[0] && strcmp(e->d_name, after) <= 0)
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 256;
			char **nn = realloc(names, ncap * sizeof(*nn));

			if (!nn) {
				rc = -ENOMEM;
				goto out;
			}
			names = nn;
			cap = ncap;
		}
		names[n] = strdup(e->d_name);
		if (!names[n]) {
			rc = -ENOMEM;
			goto out;
		}
		n++;
	}
	qsort(names, n, sizeof(*names), cmp_names);
	for (i = 0; i < n; i++) {
		struct backend_dirent de = {0};

		snprintf(de.name, sizeof(de.name), "%s", names[i]);
		describe_entry(m, dirfd(dir), rel, names[i], &de);
		if (fn(&de, arg))
			break;
	}
out:
	caller_leave(&sv);
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
	closedir(dir);
	return rc;
}

const struct backend_ops backend_posix = {
	.name = "posix",
	.init = posix_init,
	.fini = posix_fini,
	.open = posix_open,
	.stat = posix_stat,
	.list = posix_list,
	.check = posix_check,
	.describe_fd = posix_describe_fd,
	.describe = posix_describe,
};

const struct backend_ops *backend_for(enum config_backend kind)
{
	/* defined in backend_http.c and backend_s3.c */

	switch (kind) {
	case CONFIG_BACKEND_POSIX:
		return &backend_posix;
	case CONFIG_BACKEND_HTTP:
		return &backend_http;
	case CONFIG_BACKEND_S3:
		return &backend_s3;
	default:
		return NULL;
	}
}

int backend_same_version(const struct validator *a, const struct validator *b)
{
	if (a->size != b->size)
		return 0;
	if (a->etag[0] || b->etag[0])
		return strcmp(a->etag, b->etag) == 0;
	/*
	 * The same file (device and inode) in the same version. A copy from a
	 * peer knows no device of this node's (0): its inode is the NAS's own.
	 */
	return a->mtime_ns == b->mtime_ns && a->ino == b->ino &&
	       (a->dev == b->dev || !a->dev || !b->dev);
}
