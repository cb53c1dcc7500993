/*
 * test_store.c - the cache directory (daemon/store.c): the layout and its
 * modes, commit of a staging file into the public or private tree, moves
 * between them, the size check on open, the start-up scan (strangers warned
 * about and left alone), clean-up of tmp/, and the one-time emptying of a cache
 * written by an older layout.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cmocka.h>

#include "log.h"
#include "store.h"

struct fixture {
	char top[64];	 /* mkdtemp */
	char dir[96];	 /* top/cache: the cache dir, created by store_open */
	char logf[96];	 /* where log lines go, to look for warnings */
	struct store st; /* open */
};

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	return flag == FTW_DP ? rmdir(p) : unlink(p);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	snprintf(f->top, sizeof(f->top), "/tmp/granary-test-store-XXXXXX");
	assert_non_null(mkdtemp(f->top));
	snprintf(f->dir, sizeof(f->dir), "%s/cache", f->top);
	snprintf(f->logf, sizeof(f->logf), "%s/log", f->top);
	assert_int_equal(log_init(LOG_INFO, f->logf), 0);
	assert_int_equal(store_open(&f->st, f->dir), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	store_close(&f->st);
	nftw(f->top, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

/* The permission bits of @rel under the cache dir, or -errno. */
static int mode_of(struct fixture *f, const char *rel)
{
	struct stat sb;

	if (fstatat(f->st.dirfd, rel, &sb, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	return (int)(sb.st_mode & 07777);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

/* A complete copy of @len bytes of @fill, committed as the fetch path does. */
static void put_object(struct fixture *f, uint64_t id, bool priv, size_t len, char fill)
{
	char buf[4096];
	int fd = store_tmp_create(&f->st, id);

	assert_true(fd >= 0);
	assert_true(len <= sizeof(buf));
	memset(buf, fill, len);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	assert_int_equal(store_commit(&f->st, id, fd, priv), 0);
	close(fd);
}

/* A file named @rel (under the cache dir) that store.c did not write. */
static void put_file(struct fixture *f, const char *rel)
{
	int fd = openat(f->st.dirfd, rel, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, "x", 1), 1);
	assert_int_equal(fchmod(fd, 0644), 0);
	close(fd);
}

/* Reopen with the layout file holding @layout, or without one (NULL). */
static void reopen(struct fixture *f, const char *layout)
{
	int fd;

	if (!layout) {
		assert_int_equal(unlinkat(f->st.dirfd, "layout", 0), 0);
	} else {
		fd = openat(f->st.dirfd, "layout", O_WRONLY | O_TRUNC);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, layout, strlen(layout)), (ssize_t)strlen(layout));
		close(fd);
	}
	store_close(&f->st);
	assert_int_equal(store_open(&f->st, f->dir), 0);
}

static void test_layout_and_modes(void **state)
{
	struct fixture *f = *state;
	char name[32], path[160], buf[16] = "";
	mode_t old;
	int i, fd;

	assert_int_equal(mode_of(f, "."), 0700);
	assert_int_equal(mode_of(f, "tmp"), 0700);
	assert_int_equal(mode_of(f, "objects"), 0711);
	assert_int_equal(mode_of(f, "private"), 0700);
	for (i = 0; i < 256; i++) {
		snprintf(name, sizeof(name), "objects/%02x", i);
		assert_int_equal(mode_of(f, name), 0711);
		snprintf(name, sizeof(name), "private/%02x", i);
		assert_int_equal(mode_of(f, name), 0700);
	}
	assert_int_equal(mode_of(f, "layout"), 0600);
	fd = openat(f->st.dirfd, "layout", O_RDONLY);
	assert_true(fd >= 0);
	assert_true(read(fd, buf, sizeof(buf) - 1) > 0);
	close(fd);
	assert_int_equal(atoi(buf), STORE_LAYOUT);

	/* modes widened or narrowed by hand come back at the next open, whatever the umask */
	store_close(&f->st);
	assert_int_equal(chmod(f->dir, 0755), 0);
	snprintf(path, sizeof(path), "%s/objects", f->dir);
	assert_int_equal(chmod(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/private/ab", f->dir);
	assert_int_equal(chmod(path, 0755), 0);
	old = umask(077);
	assert_int_equal(store_open(&f->st, f->dir), 0);
	umask(old);
	assert_int_equal(mode_of(f, "."), 0700);
	assert_int_equal(mode_of(f, "objects"), 0711);
	assert_int_equal(mode_of(f, "private/ab"), 0700);
}

/* Committed public or private; opened with the size checked. */
static void test_commit_and_open(void **state)
{
	struct fixture *f = *state;
	uint64_t pub = 0x1234abcd, priv = 0x77ff, sum = 0;
	char buf[200], want[100];
	int fd, before;

	put_object(f, pub, false, 100, 'p');
	put_object(f, priv, true, 50, 's');
	memset(want, 'p', sizeof(want));
	assert_int_equal(mode_of(f, "objects/cd/000000001234abcd"), 0444);
	assert_int_equal(mode_of(f, "private/ff/00000000000077ff"), 0400);
	/* each only in its own tree, and gone from tmp/ */
	assert_int_equal(mode_of(f, "private/cd/000000001234abcd"), -ENOENT);
	assert_int_equal(mode_of(f, "objects/ff/00000000000077ff"), -ENOENT);
	assert_int_equal(mode_of(f, "tmp/000000001234abcd"), -ENOENT);
	assert_int_equal(store_object_size(&f->st, pub, false), 100);
	assert_int_equal(store_object_size(&f->st, priv, true), 50);
	assert_int_equal(store_object_size(&f->st, priv, false), -ENOENT);

	fd = store_object_open(&f->st, pub, 100, false);
	assert_true(fd >= 0);
	assert_int_equal(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDONLY);
	assert_int_equal(read(fd, buf, sizeof(buf)), 100);
	close(fd);
	assert_memory_equal(buf, want, 100);
	assert_int_equal(store_object_checksum(&f->st, pub, 100, false, &sum), 0);
	assert_true(sum == XXH3_64bits(want, 100));

	/* a wrong size, the wrong tree, no such id: nothing is left open */
	before = count_fds();
	assert_int_equal(store_object_open(&f->st, pub, 99, false), -EIO);
	assert_int_equal(store_object_open(&f->st, pub, 101, false), -EIO);
	assert_int_equal(store_object_open(&f->st, pub, 100, true), -ENOENT);
	assert_int_equal(store_object_open(&f->st, pub + 1, 100, false), -ENOENT);
	assert_int_equal(store_object_checksum(&f->st, pub, 1, false, &sum), -EIO);
	assert_int_equal(count_fds(), before);
}

static void test_move_both_ways(void **state)
{
	struct fixture *f = *state;
	int fd;

	put_object(f, 0x100, false, 10, 'a');
	assert_int_equal(store_object_move(&f->st, 0x100, true), 0);
	assert_int_equal(mode_of(f, "private/00/0000000000000100"), 0400);
	assert_int_equal(mode_of(f, "objects/00/0000000000000100"), -ENOENT);
	fd = store_object_open(&f->st, 0x100, 10, true);
	assert_true(fd >= 0);
	close(fd);

	assert_int_equal(store_object_move(&f->st, 0x100, false), 0);
	assert_int_equal(mode_of(f, "objects/00/0000000000000100"), 0444);
	assert_int_equal(mode_of(f, "private/00/0000000000000100"), -ENOENT);

	/* nothing to move */
	assert_int_equal(store_object_move(&f->st, 0x101, true), -ENOENT);
	assert_int_equal(store_object_move(&f->st, 0x101, false), -ENOENT);
	assert_int_equal(store_object_unlink(&f->st, 0x100, false), 0);
	assert_int_equal(store_object_unlink(&f->st, 0x100, false), -ENOENT);
}

/* What store_scan() should report in test_scan(), and how often it did. */
static const struct {
	uint64_t id;
	bool priv;
} want[] = {{0, false}, {0xff, false}, {UINT64_MAX - 1, true}, {0x5a5a, true}};

static void collect(uint64_t id, bool priv, void *arg)
{
	unsigned *seen = arg, i;

	for (i = 0; i < 4 && (want[i].id != id || want[i].priv != priv); i++)
		;
	seen[i]++; /* seen[4]: anything else */
}

static bool log_has(struct fixture *f, const char *what)
{
	char buf[8192];
	ssize_t n;
	int fd = open(f->logf, O_RDONLY);

	assert_true(fd >= 0);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	assert_true(n >= 0);
	buf[n] = '\0';
	return strstr(buf, what) != NULL;
}

static void test_scan(void **state)
{
	struct fixture *f = *state;
	unsigned i, seen[5] = {0};

	for (i = 0; i < 4; i++)
		put_object(f, want[i].id, want[i].priv, 1, 'a');
	put_file(f, "objects/12/notours");
	put_file(f, "private/ab/00000000000000ab0"); /* 17 digits */
	put_file(f, "objects/ab/00000000000000zz");
	put_file(f, "tmp/0000000000000001"); /* staging files are not objects */
	/* strtoull would read these as ids: a sign, a prefix, capitals, the wrong xx/ */
	put_file(f, "objects/01/-000000000000001");
	put_file(f, "objects/01/0x00000000000001");
	put_file(f, "objects/ab/00000000000000AB");
	put_file(f, "objects/01/0000000000000002");
	assert_int_equal(store_scan(&f->st, collect, seen), 0);
	for (i = 0; i < 4; i++)
		assert_int_equal(seen[i], 1);
	assert_int_equal(seen[4], 0);
	/* strangers: warned about, left where they are */
	assert_true(log_has(f, "unexpected file in cache dir name=objects/12/notours"));
	assert_true(log_has(f, "name=private/ab/00000000000000ab0"));
	assert_true(log_has(f, "name=objects/ab/00000000000000zz"));
	assert_true(log_has(f, "name=objects/01/-000000000000001"));
	assert_true(log_has(f, "name=objects/01/0x00000000000001"));
	assert_true(log_has(f, "name=objects/ab/00000000000000AB"));
	assert_true(log_has(f, "name=objects/01/0000000000000002"));
	assert_int_equal(mode_of(f, "objects/12/notours"), 0644);
	assert_int_equal(mode_of(f, "private/ab/00000000000000ab0"), 0644);
	assert_int_equal(mode_of(f, "objects/ab/00000000000000zz"), 0644);
}

static void test_clear_tmp(void **state)
{
	struct fixture *f = *state;
	int i, fd;

	for (i = 1; i <= 3; i++) {
		fd = store_tmp_create(&f->st, (uint64_t)i);
		assert_true(fd >= 0);
		assert_int_equal(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDWR);
		close(fd);
	}
	assert_int_equal(mode_of(f, "tmp/0000000000000002"), 0600);
	put_object(f, 9, false, 5, 'k');
	assert_int_equal(store_tmp_unlink(&f->st, 3), 0);
	assert_int_equal(store_tmp_unlink(&f->st, 3), -ENOENT);
	assert_int_equal(store_clear_tmp(&f->st), 2);
	assert_int_equal(mode_of(f, "tmp/0000000000000001"), -ENOENT);
	assert_int_equal(store_clear_tmp(&f->st), 0);
	/* complete copies are not staging files */
	assert_int_equal(store_object_size(&f->st, 9, false), 5);
}

/*
 * A cache of an older layout (a catalog, and no layout file or an older one)
 * is emptied once; a fresh directory, or one of this layout, keeps its files.
 */
static void test_old_layout_emptied(void **state)
{
	struct fixture *f = *state;
	unsigned seen[5] = {0};

	put_object(f, 1, false, 3, 'o');
	put_object(f, 2, true, 3, 'o');
	reopen(f, NULL); /* no catalog: nothing was cached here, nothing goes */
	assert_int_equal(store_object_size(&f->st, 1, false), 3);
	assert_int_equal(store_object_size(&f->st, 2, true), 3);
	assert_int_equal(mode_of(f, "layout"), 0600);
	assert_false(log_has(f, "cache written by an older granaryd"));

	put_file(f, "catalog.db");
	put_file(f, "objects/07/stranger");
	reopen(f, NULL);
	assert_int_equal(store_scan(&f->st, collect, seen), 0);
	assert_int_equal(seen[0] + seen[1] + seen[2] + seen[3] + seen[4], 0);
	assert_true(log_has(f, "cache written by an older granaryd"));
	/* the catalog (its rows are dropped at restore) and strangers stay */
	assert_int_equal(mode_of(f, "catalog.db"), 0644);
	assert_int_equal(mode_of(f, "objects/07/stranger"), 0644);
	assert_int_equal(mode_of(f, "layout"), 0600);

	/* once marked, a reopen keeps the copies */
	put_object(f, 3, false, 3, 'n');
	put_object(f, 4, true, 3, 'n');
	reopen(f, "2\n");
	assert_int_equal(store_object_size(&f->st, 3, false), 3);
	assert_int_equal(store_object_size(&f->st, 4, true), 3);
	/* an older layout number empties it too */
	reopen(f, "1\n");
	assert_int_equal(store_object_size(&f->st, 3, false), -ENOENT);
	assert_int_equal(store_object_size(&f->st, 4, true), -ENOENT);
	reopen(f, "2\n");
	assert_true(store_free_bytes(&f->st) > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_layout_and_modes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_and_open, setup, teardown),
		cmocka_unit_test_setup_teardown(test_move_both_ways, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scan, setup, teardown),
		cmocka_unit_test_setup_teardown(test_clear_tmp, setup, teardown),
		cmocka_unit_test_setup_teardown(test_old_layout_emptied, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
