/*
 * test_catalog.c - the SQLite catalog (daemon/catalog.c): rows queued before
 * and after the writer starts are committed by catalog_flush(), survive a
 * close and reopen with every field intact (the restricted bit in mode, the
 * pin, epochs, 64-bit values past INT64_MAX), deletions and replacements
 * stick, ids are never handed out again, and the database is the daemon's
 * alone (0600, its WAL too).
 */
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

#include <cmocka.h>

#include "catalog.h"

#define MAXROWS 8

struct fixture {
	char dir[64];
	char db[96];
	struct catalog *c;
};

/* Everything catalog_load() gave, strings copied. */
struct loaded {
	unsigned n;
	struct catalog_row r[MAXROWS];
	char path[MAXROWS][64], mount[MAXROWS][64], etag[MAXROWS][64];
	unsigned nds;
	char ds[MAXROWS][32];
	uint64_t epoch[MAXROWS];
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
	int err = 0;

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/granary-test-catalog-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->db, sizeof(f->db), "%s/catalog.db", f->dir);
	f->c = catalog_open(f->db, &err);
	assert_non_null(f->c);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	catalog_close(f->c);
	nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static void on_row(const struct catalog_row *row, void *arg)
{
	struct loaded *l = arg;
	unsigned i = l->n++;

	assert_true(i < MAXROWS);
	l->r[i] = *row;
	snprintf(l->path[i], sizeof(l->path[i]), "%s", row->path);
	snprintf(l->mount[i], sizeof(l->mount[i]), "%s", row->mount);
	assert_non_null(row->etag);
	snprintf(l->etag[i], sizeof(l->etag[i]), "%s", row->etag);
}

static void on_dataset(const char *name, uint64_t epoch, void *arg)
{
	struct loaded *l = arg;

	assert_true(l->nds < MAXROWS);
	snprintf(l->ds[l->nds], sizeof(l->ds[0]), "%s", name);
	l->epoch[l->nds++] = epoch;
}

/* Close, reopen (as a restart does) and read everything back into @l. */
static void reopen(struct fixture *f, struct loaded *l)
{
	int err = 0;

	catalog_close(f->c);
	f->c = catalog_open(f->db, &err);
	assert_non_null(f->c);
	memset(l, 0, sizeof(*l));
	assert_int_equal(catalog_load(f->c, on_row, l), 0);
	assert_int_equal(catalog_load_datasets(f->c, on_dataset, l), 0);
}

static const struct catalog_row *find(const struct loaded *l, uint64_t id)
{
	unsigned i;

	for (i = 0; i < l->n; i++)
		if (l->r[i].id == id)
			return &l->r[i];
	return NULL;
}

static int mode_of(const char *path)
{
	struct stat sb;

	return stat(path, &sb) < 0 ? -errno : (int)(sb.st_mode & 07777);
}

static void test_rows_survive_reopen(void **state)
{
	struct fixture *f = *state;
	const struct catalog_row priv = {
		.id = 7,
		.path = "/mnt/nas/secret/a.bin",
		.mount = "/mnt/nas",
		.size = 5ull << 32,
		.mtime_ns = -1234567890123LL, /* before 1970 */
		.ino = (1ull << 62) + 5,
		.dev = 0xfd01,
		.mode = S_IFREG | 0640 | CATALOG_MODE_RESTRICTED,
		.uid = 4294967294u,
		.gid = 65534,
		.etag = "\"9b2cf535f27731c974343645a3985328\"",
		.checksum = 0xfedcba9876543210ull, /* past INT64_MAX */
		.last_epoch = 41,
		.last_access = 1700000000,
		.pinned = true,
	};
	struct catalog_row pub = priv;
	const struct catalog_row *r;
	uint64_t ops, commits, errors;
	struct loaded l;
	char wal[128];

	pub.id = 9;
	pub.path = "/mnt/nas/public/b.bin";
	pub.mode = S_IFREG | 0644;
	pub.etag = NULL; /* none: read back as "" */
	pub.pinned = false;
	pub.checksum = 1;

	catalog_put(f->c, &priv); /* before start: written through */
	assert_int_equal(catalog_start(f->c, 60ull * 1000000000), 0);
	catalog_put(f->c, &pub);
	catalog_epoch(f->c, "nas", 3);
	catalog_epoch(f->c, "nas", 4);
	catalog_epoch(f->c, "imagenet", 1ull << 40);
	/* a minute's interval: only the flush can commit this soon */
	catalog_flush(f->c);
	catalog_stats(f->c, &ops, &commits, &errors);
	assert_int_equal(ops, 5);
	assert_int_equal(errors, 0);
	assert_true(commits >= 2);

	/* the database and its WAL are the daemon's alone */
	assert_int_equal(mode_of(f->db), 0600);
	snprintf(wal, sizeof(wal), "%s-wal", f->db);
	assert_int_equal(mode_of(wal), 0600);

	reopen(f, &l);
	assert_int_equal(l.n, 2);
	r = find(&l, 7);
	assert_non_null(r);
	assert_string_equal(l.path[r - l.r], priv.path);
	assert_string_equal(l.mount[r - l.r], priv.mount);
	assert_string_equal(l.etag[r - l.r], priv.etag);
	assert_true(r->size == priv.size);
	assert_true(r->mtime_ns == priv.mtime_ns);
	assert_true(r->ino == priv.ino);
	assert_true(r->dev == priv.dev);
	assert_true(r->mode == priv.mode);
	assert_true(r->mode & CATALOG_MODE_RESTRICTED);
	assert_true(r->uid == priv.uid);
	assert_true(r->gid == priv.gid);
	assert_true(r->checksum == priv.checksum);
	assert_true(r->last_epoch == 41);
	assert_true(r->last_access == 1700000000);
	assert_true(r->pinned);
	r = find(&l, 9);
	assert_non_null(r);
	assert_string_equal(l.path[r - l.r], pub.path);
	assert_string_equal(l.etag[r - l.r], "");
	assert_true(r->mode == (S_IFREG | 0644));
	assert_false(r->pinned);

	assert_int_equal(l.nds, 2);
	for (unsigned i = 0; i < l.nds; i++) {
		if (strcmp(l.ds[i], "nas") == 0)
			assert_true(l.epoch[i] == 4); /* the last one queued */
		else
			assert_true(strcmp(l.ds[i], "imagenet") == 0 && l.epoch[i] == 1ull << 40);
	}
	assert_true(catalog_max_id(f->c) == 9);
}

static void test_del_pin_replace(void **state)
{
	struct fixture *f = *state;
	struct catalog_row row = {
		.path = "/d/a", .mount = "/d", .size = 1, .mode = S_IFREG | 0644, .etag = "e"};
	const struct catalog_row *r;
	struct loaded l;
	unsigned i;

	assert_int_equal(catalog_start(f->c, 1000000), 0);
	for (i = 1; i <= 5; i++) {
		char p[16];

		snprintf(p, sizeof(p), "/d/%u", i);
		row.id = i;
		row.path = p;
		catalog_put(f->c, &row);
	}
	catalog_del(f->c, 5); /* the newest: its id is not handed out again */
	catalog_del(f->c, 2);
	catalog_del(f->c, 99); /* not there: harmless */
	catalog_pin(f->c, 3, true);
	row.id = 4;
	row.path = "/d/4";
	row.size = 444; /* the same id again: replaced */
	catalog_put(f->c, &row);
	row.id = 6;
	row.path = "/d/1"; /* the same path under a new id: the old row goes */
	row.size = 111;
	catalog_put(f->c, &row);
	catalog_flush(f->c);

	reopen(f, &l);
	assert_int_equal(l.n, 3);
	assert_null(find(&l, 1));
	assert_null(find(&l, 2));
	assert_null(find(&l, 5));
	assert_non_null(r = find(&l, 3));
	assert_true(r->pinned);
	assert_non_null(r = find(&l, 4));
	assert_true(r->size == 444);
	assert_false(r->pinned);
	assert_non_null(r = find(&l, 6));
	assert_string_equal(l.path[r - l.r], "/d/1");
	assert_true(r->size == 111);
	assert_true(catalog_max_id(f->c) == 6);

	/* unpin, delete the newest row; left queued, a minute from its batch */
	assert_int_equal(catalog_start(f->c, 60ull * 1000000000), 0);
	catalog_pin(f->c, 3, false);
	catalog_del(f->c, 6);
	reopen(f, &l); /* catalog_close commits what is queued */
	assert_int_equal(l.n, 2);
	assert_false(find(&l, 3)->pinned);
	assert_true(catalog_max_id(f->c) == 6);
}

/* A database left 0644 (by hand, or an older granaryd) is narrowed at open. */
static void test_mode_narrowed(void **state)
{
	struct fixture *f = *state;
	struct loaded l;
	mode_t old;
	int err = 0;

	catalog_close(f->c);
	f->c = NULL;
	assert_int_equal(chmod(f->db, 0644), 0);
	old = umask(0);
	f->c = catalog_open(f->db, &err);
	umask(old);
	assert_non_null(f->c);
	assert_int_equal(mode_of(f->db), 0600);
	memset(&l, 0, sizeof(l));
	assert_int_equal(catalog_load(f->c, on_row, &l), 0);
	assert_int_equal(l.n, 0);
	assert_true(catalog_max_id(f->c) == 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_rows_survive_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_del_pin_replace, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mode_narrowed, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
