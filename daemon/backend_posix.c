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
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "backend.h"
#include "fetch.h"
#include "log.h"
#include "proto.h"

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

static int posix_init(struct mount *m, char *err, size_t errsz)
{
	struct posix_mount *pm = calloc(1, sizeof(*pm));
	int fd;

	if (!pm)
		return -ENOMEM;
	pm->source = m->cfg->source ? m->cfg->source : m->cfg->path;
	m->priv = pm;
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

static int open_beneath(int rootfd, const char *rel, uint64_t flags)
{
	struct open_how how = {
		/* O_PATH takes no other open flags */
		.flags = flags | O_CLOEXEC | ((flags & O_PATH) ? 0 : O_NOCTTY),
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
	};
	long fd;

	fd = syscall(SYS_openat2, rootfd, rel[0] ? rel : ".", &how, sizeof(how));
	if (fd < 0 && errno == ENOSYS) {
		/* kernels before 5.6: the request path already refuses ".." */
		fd = openat(rootfd, rel[0] ? rel : ".", (int)(how.flags));
	}
	return fd < 0 ? -errno : (int)fd;
}

/*
 * Is a directory on the way to @rel under the source closed to others (no
 * search bit for "other")? Then the file's own mode bits do not say who may
 * read it, and only a check as the caller does.
 */
static bool path_restricted(const struct posix_mount *pm, const char *rel)
{
	char path[8192];
	struct stat sb;
	size_t i, n;

	n = (size_t)snprintf(path, sizeof(path), "%s/%s", pm->source, rel);
	if (n >= sizeof(path))
		return true;
	for (i = n; i > 0; i--) {
		if (path[i] != '/')
			continue;
		path[i] = '\0';
		if (stat(i ? path : "/", &sb) < 0 || !(sb.st_mode & S_IXOTH))
			return true;
		path[i] = '/';
	}
	return stat("/", &sb) < 0 || !(sb.st_mode & S_IXOTH);
}

static void fill_validator(const struct stat *sb, struct validator *v)
{
	memset(v, 0, sizeof(*v));
	v->size = (uint64_t)sb->st_size;
	v->mtime_ns = (int64_t)sb->st_mtim.tv_sec * 1000000000LL + sb->st_mtim.tv_nsec;
	v->ino = sb->st_ino;
	v->mode = sb->st_mode;
	v->uid = sb->st_uid;
	v->gid = sb->st_gid;
}

/*
 * Open @rel beneath @m's source with @flags: a descriptor, or -errno with a
 * sentence in @err (a path leading out of the mount is -EACCES).
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

static int posix_open(struct mount *m, const char *rel, int *fdp, struct validator *v, char *err,
		      size_t errsz)
{
	struct stat sb;
	int fd, rc;

	fd = posix_open_rel(m, rel, O_RDONLY, err, errsz);
	if (fd < 0)
		return fd;
	if (fstat(fd, &sb) < 0) {
		rc = -errno;
		goto err_close;
	}
	if (S_ISDIR(sb.st_mode)) {
		rc = -EISDIR;
		goto err_close;
	}
	if (!S_ISREG(sb.st_mode)) {
		snprintf(err, errsz, "not a regular file");
		rc = -EINVAL;
		goto err_close;
	}
	fill_validator(&sb, v);
	v->restricted = path_restricted(m->priv, rel);
	*fdp = fd;
	return 0;

err_close:
	close(fd);
	return rc;
}

static int posix_stat(struct mount *m, const char *rel, struct validator *v, int *type, char *err,
		      size_t errsz)
{
	struct stat sb;
	int fd, rc;

	/* beneath the mount, like open: a symlink out of it describes nothing */
	fd = posix_open_rel(m, rel, O_PATH, err, errsz);
	if (fd < 0)
		return fd;
	rc = fstat(fd, &sb) < 0 ? -errno : 0;
	close(fd);
	if (rc < 0)
		return rc;
	fill_validator(&sb, v);
	*type = S_ISREG(sb.st_mode)   ? PROTO_FT_REG
		: S_ISDIR(sb.st_mode) ? PROTO_FT_DIR
				      : PROTO_FT_OTHER;
	return 0;
}

/*
 * Check as the caller: this worker thread takes the caller's filesystem ids
 * and groups (raw syscalls change only the calling thread, and dropping fsuid
 * 0 drops the capabilities that bypass permissions), asks the kernel, and
 * takes its own back. Only a daemon running as root can do this; otherwise the
 * daemon's own permission is the limit and the mode-bit check in server.c
 * applies.
 */
static int posix_access(struct mount *m, const char *rel, const struct caller *who)
{
	static __thread gid_t own_groups[256];
	static __thread int own_n = -1;
	struct posix_mount *pm = m->priv;
	int root, rc;

	if (geteuid() != 0 || who->uid == 0)
		return 0;
	if (own_n < 0)
		own_n = (int)syscall(SYS_getgroups, 256, own_groups);
	if (own_n < 0)
		return -EACCES;
	root = posix_root(pm);
	if (root < 0)
		return root;
	if (syscall(SYS_setgroups, (size_t)who->ngroups, who->groups) < 0) {
		close(root);
		return -EACCES;
	}
	syscall(SYS_setfsgid, who->gid);
	syscall(SYS_setfsuid, who->uid);
	rc = faccessat(root, rel[0] ? rel : ".", R_OK, AT_EACCESS) < 0 ? -errno : 0;
	close(root);
	syscall(SYS_setfsuid, 0);
	syscall(SYS_setfsgid, 0);
	syscall(SYS_setgroups, (size_t)own_n, own_groups);
	return rc == -ENOENT ? -ENOENT : rc ? -EACCES : 0;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int posix_list(struct mount *m, const char *rel, const char *after,
		      int (*fn)(const struct backend_dirent *de, void *arg), void *arg, char *err,
		      size_t errsz)
{
	size_t n = 0, cap = 0, i;
	char **names = NULL;
	struct dirent *e;
	int fd, rc = 0;
	DIR *dir;

	fd = posix_open_rel(m, rel, O_RDONLY | O_DIRECTORY, err, errsz);
	if (fd < 0)
		return fd;
	dir = fdopendir(fd);
	if (!dir) {
		rc = -errno;
		close(fd);
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
		struct stat sb;

		snprintf(de.name, sizeof(de.name), "%s", names[i]);
		if (fstatat(dirfd(dir), names[i], &sb, 0) < 0) {
			de.type = PROTO_FT_OTHER; /* vanished or a dangling link */
		} else {
			de.type = S_ISREG(sb.st_mode)	? PROTO_FT_REG
				  : S_ISDIR(sb.st_mode) ? PROTO_FT_DIR
							: PROTO_FT_OTHER;
			de.size = S_ISREG(sb.st_mode) ? (uint64_t)sb.st_size : 0;
		}
		if (fn(&de, arg))
			break;
	}
out:
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
	.access = posix_access,
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
	return a->mtime_ns == b->mtime_ns && a->ino == b->ino;
}
