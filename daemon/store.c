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

#include "index.h"
#include "log.h"

static void id_name(uint64_t id, char *buf, size_t len)
{
	snprintf(buf, len, "%016" PRIx64, id);
}

static void obj_name(uint64_t id, char *buf, size_t len)
{
	snprintf(buf, len, "%02x/%016" PRIx64, (unsigned)(id & 0xff), id);
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

int store_open(struct store *st, const char *dir)
{
	char sub[8];
	int rc, i;

	memset(st, 0, sizeof(*st));
	st->dirfd = st->tmpfd = st->objfd = -1;
	if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
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
	if ((rc = mkdir_at(st->dirfd, "tmp", 0700)) < 0 ||
	    (rc = mkdir_at(st->dirfd, "objects", 0711)) < 0)
		goto err;
	st->tmpfd = openat(st->dirfd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	st->objfd = openat(st->dirfd, "objects", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (st->tmpfd < 0 || st->objfd < 0) {
		rc = -errno;
		goto err;
	}
	for (i = 0; i < 256; i++) {
		snprintf(sub, sizeof(sub), "%02x", i);
		if ((rc = mkdir_at(st->objfd, sub, 0711)) < 0)
			goto err;
	}
	st->dir = strdup(dir);
	if (!st->dir) {
		rc = -ENOMEM;
		goto err;
	}
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
	if (st->tmpfd >= 0)
		close(st->tmpfd);
	if (st->dirfd >= 0)
		close(st->dirfd);
	free(st->dir);
	st->dir = NULL;
	st->dirfd = st->tmpfd = st->objfd = -1;
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
	fd = openat(st->tmpfd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	return fd < 0 ? -errno : fd;
}

int store_tmp_unlink(struct store *st, uint64_t id)
{
	char name[32];

	id_name(id, name, sizeof(name));
	return unlinkat(st->tmpfd, name, 0) < 0 ? -errno : 0;
}

int store_commit(struct store *st, uint64_t id)
{
	char from[32], to[40];

	id_name(id, from, sizeof(from));
	obj_name(id, to, sizeof(to));
	return renameat(st->tmpfd, from, st->objfd, to) < 0 ? -errno : 0;
}

int store_object_open(struct store *st, uint64_t id, uint64_t size)
{
	char name[40];
	struct stat sb;
	int fd, rc;

	obj_name(id, name, sizeof(name));
	fd = openat(st->objfd, name, O_RDONLY | O_CLOEXEC);
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

int store_object_unlink(struct store *st, uint64_t id)
{
	char name[40];

	obj_name(id, name, sizeof(name));
	return unlinkat(st->objfd, name, 0) < 0 ? -errno : 0;
}

int64_t store_object_size(struct store *st, uint64_t id)
{
	char name[40];
	struct stat sb;

	obj_name(id, name, sizeof(name));
	if (fstatat(st->objfd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (!S_ISREG(sb.st_mode))
		return -EINVAL;
	return sb.st_size;
}

int store_scan(struct store *st, void (*fn)(uint64_t id, void *arg), void *arg)
{
	char sub[8];
	int i;

	for (i = 0; i < 256; i++) {
		struct dirent *de;
		DIR *d;
		int fd;

		snprintf(sub, sizeof(sub), "%02x", i);
		fd = openat(st->objfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			continue;
		d = fdopendir(fd);
		if (!d) {
			close(fd);
			return -errno;
		}
		while ((de = readdir(d))) {
			char *end;
			uint64_t id;

			if (de->d_name[0] == '.')
				continue;
			errno = 0;
			id = strtoull(de->d_name, &end, 16);
			if (*end || errno || strlen(de->d_name) != 16) {
				/* not ours: leave a stranger's file alone, but say so */
				log_warn("unexpected file in cache dir name=%s/%s", sub,
					 de->d_name);
				continue;
			}
			fn(id, arg);
		}
		closedir(d);
	}
	return 0;
}

void store_set_owner(int fd, const struct validator *v)
{
	if (geteuid() == 0) {
		if (fchown(fd, v->uid, v->gid) < 0 || fchmod(fd, v->mode & 0444) < 0)
			log_errno(LOG_WARNING, errno, "cannot set a cache file's owner");
	} else if (fchmod(fd, 0400) < 0) {
		log_errno(LOG_WARNING, errno, "cannot set a cache file's mode");
	}
}

void store_object_set_owner(struct store *st, uint64_t id, const struct validator *v)
{
	char name[40];
	int fd;

	obj_name(id, name, sizeof(name));
	fd = openat(st->objfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	store_set_owner(fd, v);
	close(fd);
}

int64_t store_free_bytes(struct store *st)
{
	struct statvfs sv;

	if (fstatvfs(st->dirfd, &sv) < 0)
		return -errno;
	return (int64_t)sv.f_bavail * (int64_t)sv.f_frsize;
}
