/* store.c - cache files on local disk (see store.h). */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <xxhash.h>

#include "log.h"

#define CHECKSUM_CHUNK (1u << 20) /* a copy is read back in pieces this large */

static void id_name(uint64_t id, char *buf, size_t len)
{
	snprintf(buf, len, "%016" PRIx64, id);
}

static void obj_name(uint64_t id, char *buf, size_t len)
{
	snprintf(buf, len, "%02x/%016" PRIx64, (unsigned)(id & 0xff), id);
}

/* The tree an object's copy lives in. */
static int tree(const struct store *st, bool priv)
{
	return priv ? st->privfd : st->objfd;
}

static int mkdir_at(int dirfd, const char *name, mode_t mode)
{
	if (mkdirat(dirfd, name, mode) < 0 && errno != EEXIST)
		return -errno;
	/* objects/ is searchable, not listable: clients open files by id */
	if (fchmodat(dirfd, name, mode, 0) < 0)
		return -errno;
	return 0;
}

static int scan_tree(struct store *st, bool priv, void (*fn)(uint64_t id, bool priv, void *arg),
		     void *arg);

static void unlink_one(uint64_t id, bool priv, void *arg)
{
	store_object_unlink(arg, id, priv);
}

/*
 * Copies written before the public and private trees existed carry their
 * source's owner and mode, and some would be public by the old rule and not
 * by today's: such a cache is emptied once (its catalog rows then find no
 * file and are dropped at restore), and the layout is marked.
 */
static int check_layout(struct store *st)
{
	char buf[16] = "";
	ssize_t n;
	int fd;

	fd = openat(st->dirfd, "layout", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n > 0 && atoi(buf) == STORE_LAYOUT)
			return 0;
	}
	if (faccessat(st->dirfd, "catalog.db", F_OK, 0) == 0) {
		log_warn("cache written by an older granaryd: emptied, it will be fetched again "
			 "dir=%s",
			 st->dir);
		scan_tree(st, false, unlink_one, st);
		scan_tree(st, true, unlink_one, st);
	}
	fd = openat(st->dirfd, "layout", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	n = snprintf(buf, sizeof(buf), "%d\n", STORE_LAYOUT);
	if (write(fd, buf, (size_t)n) != n) {
		close(fd);
		return -EIO;
	}
	close(fd);
	return 0;
}

int store_open(struct store *st, const char *dir)
{
	char sub[8];
	int rc, i;

	memset(st, 0, sizeof(*st));
	st->dirfd = st->tmpfd = st->objfd = st->privfd = -1;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		rc = -errno;
		log_errno(LOG_ERR, rc, "mkdir failed path=%s", dir);
		return rc;
	}
	st->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (st->dirfd < 0) {
		rc = -errno;
		log_errno(LOG_ERR, rc, "open of cache dir failed path=%s", dir);
		return rc;
	}
	/* the catalog, staging files and private copies are the daemon's alone */
	if (fchmod(st->dirfd, 0700) < 0) {
		rc = -errno;
		goto err;
	}
	if ((rc = mkdir_at(st->dirfd, "tmp", 0700)) < 0 ||
	    (rc = mkdir_at(st->dirfd, "objects", 0711)) < 0 ||
	    (rc = mkdir_at(st->dirfd, "private", 0700)) < 0)
		goto err;
	st->tmpfd = openat(st->dirfd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	st->objfd = openat(st->dirfd, "objects", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	st->privfd = openat(st->dirfd, "private", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (st->tmpfd < 0 || st->objfd < 0 || st->privfd < 0) {
		rc = -errno;
		goto err;
	}
	for (i = 0; i < 256; i++) {
		snprintf(sub, sizeof(sub), "%02x", i);
		if ((rc = mkdir_at(st->objfd, sub, 0711)) < 0 ||
		    (rc = mkdir_at(st->privfd, sub, 0700)) < 0)
			goto err;
	}
	st->dir = strdup(dir);
	if (!st->dir) {
		rc = -ENOMEM;
		goto err;
	}
	rc = check_layout(st);
	if (rc < 0)
		goto err;
	return 0;
err:
	log_errno(LOG_ERR, rc, "cannot set up cache dir path=%s", dir);
	store_close(st);
	return rc;
}

void store_close(struct store *st)
{
	if (st->objfd >= 0)
		close(st->objfd);
	if (st->privfd >= 0)
		close(st->privfd);
	if (st->tmpfd >= 0)
		close(st->tmpfd);
	if (st->dirfd >= 0)
		close(st->dirfd);
	free(st->dir);
	st->dir = NULL;
	st->dirfd = st->tmpfd = st->objfd = st->privfd = -1;
}

long store_clear_tmp(struct store *st)
{
	int fd = dup(st->tmpfd);
	struct dirent *de;
	long n = 0;
	DIR *d;

	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (unlinkat(st->tmpfd, de->d_name, 0) == 0)
			n++;
	}
	closedir(d);
	return n;
}

int store_tmp_create(struct store *st, uint64_t id)
{
	char name[32];
	int fd;

	id_name(id, name, sizeof(name));
	fd = openat(st->tmpfd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	return fd < 0 ? -errno : fd;
}

int store_tmp_unlink(struct store *st, uint64_t id)
{
	char name[32];

	id_name(id, name, sizeof(name));
	return unlinkat(st->tmpfd, name, 0) < 0 ? -errno : 0;
}

int store_commit(struct store *st, uint64_t id, int fd, bool priv)
{
	char from[32], to[40];

	/* owned by the daemon; readable by all only in the public tree */
	if (fchmod(fd, priv ? 0400 : 0444) < 0)
		return -errno;
	id_name(id, from, sizeof(from));
	obj_name(id, to, sizeof(to));
	return renameat(st->tmpfd, from, tree(st, priv), to) < 0 ? -errno : 0;
}

int store_object_move(struct store *st, uint64_t id, bool to_priv)
{
	char name[40];
	int fd, rc;

	obj_name(id, name, sizeof(name));
	/* narrow first, widen last: never readable by all in the private tree */
	if (to_priv) {
		fd = openat(st->objfd, name, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		rc = fchmod(fd, 0400) < 0 ? -errno : 0;
		close(fd);
		if (rc < 0)
			return rc;
	}
	if (renameat(tree(st, !to_priv), name, tree(st, to_priv), name) < 0)
		return -errno;
	if (!to_priv) {
		fd = openat(st->objfd, name, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		rc = fchmod(fd, 0444) < 0 ? -errno : 0;
		close(fd);
		return rc;
	}
	return 0;
}

int store_object_open(struct store *st, uint64_t id, uint64_t size, bool priv)
{
	char name[40];
	struct stat sb;
	int fd, rc;

	obj_name(id, name, sizeof(name));
	fd = openat(tree(st, priv), name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &sb) < 0) {
		rc = -errno;
		goto err_close;
	}
	if ((uint64_t)sb.st_size != size) {
		rc = -EIO;
		goto err_close;
	}
	return fd;

err_close:
	close(fd);
	return rc;
}

int store_object_checksum(struct store *st, uint64_t id, uint64_t size, bool priv, uint64_t *sum)
{
	XXH3_state_t *xx = XXH3_createState();
	uint8_t *buf = malloc(CHECKSUM_CHUNK);
	int fd = -1, rc = -ENOMEM;
	ssize_t n = 0;

	if (!xx || !buf)
		goto out;
	fd = store_object_open(st, id, size, priv);
	if (fd < 0) {
		rc = fd;
		goto out;
	}
	XXH3_64bits_reset(xx);
	while ((n = read(fd, buf, CHECKSUM_CHUNK)) > 0)
		XXH3_64bits_update(xx, buf, (size_t)n);
	rc = n < 0 ? -errno : 0;
	*sum = XXH3_64bits_digest(xx);
	close(fd);
out:
	free(buf);
	XXH3_freeState(xx);
	return rc;
}

int store_object_unlink(struct store *st, uint64_t id, bool priv)
{
	char name[40];

	obj_name(id, name, sizeof(name));
	return unlinkat(tree(st, priv), name, 0) < 0 ? -errno : 0;
}

int64_t store_object_size(struct store *st, uint64_t id, bool priv)
{
	char name[40];
	struct stat sb;

	obj_name(id, name, sizeof(name));
	if (fstatat(tree(st, priv), name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (!S_ISREG(sb.st_mode))
		return -EINVAL;
	return sb.st_size;
}

static int scan_tree(struct store *st, bool priv, void (*fn)(uint64_t id, bool priv, void *arg),
		     void *arg)
{
	char sub[8];
	int i;

	for (i = 0; i < 256; i++) {
		struct dirent *de;
		DIR *d;
		int fd;

		snprintf(sub, sizeof(sub), "%02x", i);
		fd = openat(tree(st, priv), sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			continue;
		d = fdopendir(fd);
		if (!d) {
			close(fd);
			return -errno;
		}
		while ((de = readdir(d))) {
			uint64_t id;

			if (de->d_name[0] == '.')
				continue;
			/* exactly our names: 16 lower-case hex digits, in the right xx/ */
			if (strlen(de->d_name) != 16 ||
			    strspn(de->d_name, "0123456789abcdef") != 16 ||
			    ((id = strtoull(de->d_name, NULL, 16)) & 0xff) != (uint64_t)i) {
				/* not ours: leave a stranger's file alone, but say so */
				log_warn("unexpected file in cache dir name=%s/%s/%s",
					 priv ? "private" : "objects", sub, de->d_name);
				continue;
			}
			fn(id, priv, arg);
		}
		closedir(d);
	}
	return 0;
}

int store_scan(struct store *st, void (*fn)(uint64_t id, bool priv, void *arg), void *arg)
{
	int rc = scan_tree(st, false, fn, arg);

	return rc < 0 ? rc : scan_tree(st, true, fn, arg);
}

int64_t store_free_bytes(struct store *st)
{
	struct statvfs sv;

	if (fstatvfs(st->dirfd, &sv) < 0)
		return -errno;
	return (int64_t)sv.f_bavail * (int64_t)sv.f_frsize;
}
