/*
 * test_preload_dir.c - the shim's directory listing buffer
 * (client/preload_dirlist.c): LIST replies appended page by page, entries
 * read by position as readdir, telldir and seekdir see them.
 *
 * Compiled in directly, as test_preload.c does with the shim's rules: the
 * shim exports nothing but libc names.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../../client/preload_dirlist.c"

struct ent {
	const char *name;
	uint32_t type;
};

/* A LIST reply: STATUS 0, (NAME TYPE SIZE)*, then COOKIE when @cookie. */
static void reply(struct proto_buf *b, const struct ent *e, size_t n, const char *cookie)
{
	size_t i;

	proto_begin(b, PROTO_REPLY | PROTO_LIST, 7);
	assert_int_equal(proto_put_i32(b, PROTO_T_STATUS, 0), 0);
	for (i = 0; i < n; i++) {
		assert_int_equal(proto_put_str(b, PROTO_T_NAME, e[i].name), 0);
		assert_int_equal(proto_put_u32(b, PROTO_T_TYPE, e[i].type), 0);
		assert_int_equal(proto_put_u64(b, PROTO_T_SIZE, 10 + i), 0);
	}
	if (cookie)
		assert_int_equal(proto_put_str(b, PROTO_T_COOKIE, cookie), 0);
}

/* The whole message, header included, as the shim receives it. */
static const void *body(const struct proto_buf *b)
{
	return b->data;
}

static size_t body_len(const struct proto_buf *b)
{
	return b->len;
}

static void expect(const struct preload_dirlist *l, size_t pos, const char *name,
		   unsigned char type)
{
	const struct dirent64 *de = preload_dirlist_at(l, pos);

	assert_non_null(de);
	assert_string_equal(de->d_name, name);
	assert_int_equal(de->d_type, type);
	assert_int_equal(de->d_off, (int64_t)pos + 1);
	assert_true(de->d_ino != 0);
	assert_true(de->d_reclen >= offsetof(struct dirent64, d_name) + strlen(name) + 1);
	assert_int_equal(de->d_reclen % 8, 0);
	assert_int_equal((uintptr_t)de % 8, 0);
}

static void test_dots(void **state)
{
	struct preload_dirlist l;
	const struct dirent64 *de;

	(void)state;
	assert_int_equal(preload_dirlist_init(&l, "/mnt/s3/train"), 0);
	assert_true(l.more);
	assert_int_equal(l.n, 2);
	expect(&l, 0, ".", DT_DIR);
	expect(&l, 1, "..", DT_DIR);
	assert_non_null(de = preload_dirlist_at(&l, 0));
	assert_int_equal(de->d_ino, preload_path_hash("/mnt/s3/train"));
	assert_non_null(de = preload_dirlist_at(&l, 1));
	assert_int_equal(de->d_ino, preload_path_hash("/mnt/s3"));
	assert_null(preload_dirlist_at(&l, 2));
	preload_dirlist_fini(&l);

	/* the parent of a top-level directory is the root; the root's is itself */
	assert_int_equal(preload_dirlist_init(&l, "/mnt"), 0);
	assert_non_null(de = preload_dirlist_at(&l, 1));
	assert_int_equal(de->d_ino, preload_path_hash("/"));
	preload_dirlist_fini(&l);
	assert_int_equal(preload_dirlist_init(&l, "/"), 0);
	assert_non_null(de = preload_dirlist_at(&l, 1));
	assert_int_equal(de->d_ino, preload_path_hash("/"));
	preload_dirlist_fini(&l);
}

static void test_pages(void **state)
{
	static const struct ent p1[] = {{"class0", PROTO_FT_DIR}, {"img 1.png", PROTO_FT_REG}};
	static const struct ent p2[] = {{"img 1.png", PROTO_FT_REG}, /* repeated at the boundary */
					{"odd", PROTO_FT_OTHER},
					{"zeta", PROTO_FT_REG}};
	struct proto_buf b;
	struct preload_dirlist l;
	const struct dirent64 *de;

	(void)state;
	assert_int_equal(preload_dirlist_init(&l, "/mnt/s3"), 0);
	reply(&b, p1, 2, "img 1.png");
	assert_int_equal(preload_dirlist_add_reply(&l, body(&b), body_len(&b)), 2);
	assert_true(l.more);
	assert_string_equal(l.cookie, "img 1.png");
	reply(&b, p2, 3, NULL);
	assert_int_equal(preload_dirlist_add_reply(&l, body(&b), body_len(&b)), 2);
	assert_false(l.more);
	assert_int_equal(l.n, 6);
	expect(&l, 2, "class0", DT_DIR);
	expect(&l, 3, "img 1.png", DT_REG);
	expect(&l, 4, "odd", DT_UNKNOWN);
	expect(&l, 5, "zeta", DT_REG);
	assert_null(preload_dirlist_at(&l, 6));
	/* a directory's d_ino is what stat shows for it: the hash of its path */
	assert_non_null(de = preload_dirlist_at(&l, 2));
	assert_int_equal(de->d_ino, preload_path_hash("/mnt/s3/class0"));
	preload_dirlist_fini(&l);
}

static void test_bad_names_skipped(void **state)
{
	static const struct ent e[] = {{".", PROTO_FT_DIR},
				       {"..", PROTO_FT_DIR},
				       {"a/b", PROTO_FT_REG},
				       {"...", PROTO_FT_REG},
				       {".hidden", PROTO_FT_REG}};
	struct proto_buf b;
	struct preload_dirlist l;

	(void)state;
	assert_int_equal(preload_dirlist_init(&l, "/m"), 0);
	reply(&b, e, 5, NULL);
	assert_int_equal(preload_dirlist_add_reply(&l, body(&b), body_len(&b)), 2);
	expect(&l, 2, "...", DT_REG);
	expect(&l, 3, ".hidden", DT_REG);
	preload_dirlist_fini(&l);
}

static void test_malformed(void **state)
{
	static const struct ent ok[] = {{"a", PROTO_FT_REG}};
	struct proto_buf b;
	struct preload_dirlist l;

	(void)state;
	assert_int_equal(preload_dirlist_init(&l, "/m"), 0);
	reply(&b, ok, 1, "a");
	assert_int_equal(preload_dirlist_add_reply(&l, body(&b), body_len(&b)), 1);

	/* a NAME without its TYPE: nothing of the page is kept, the cookie stays */
	reply(&b, ok, 1, NULL);
	assert_int_equal(proto_put_str(&b, PROTO_T_NAME, "b"), 0);
	assert_int_equal(preload_dirlist_add_reply(&l, body(&b), body_len(&b)), -EBADMSG);
	assert_int_equal(l.n, 3);
	assert_true(l.more);
	assert_string_equal(l.cookie, "a");

	/* a TYPE without a NAME, a TYPE of the wrong width, an empty cookie */
	proto_begin(&b, PROTO_REPLY | PROTO_LIST, 1);
	proto_put_u32(&b, PROTO_T_TYPE, PROTO_FT_REG);
	assert_int_equal(preload_dirlist_add_reply(&l, body(&b), body_len(&b)), -EBADMSG);
	proto_begin(&b, PROTO_REPLY | PROTO_LIST, 1);
	proto_put_str(&b, PROTO_T_NAME, "c");
	proto_put_u64(&b, PROTO_T_TYPE, PROTO_FT_REG);
	assert_int_equal(preload_dirlist_add_reply(&l, body(&b), body_len(&b)), -EBADMSG);
	reply(&b, ok, 0, "");
	assert_int_equal(preload_dirlist_add_reply(&l, body(&b), body_len(&b)), -EBADMSG);

	/* a truncated item */
	reply(&b, ok, 1, NULL);
	assert_int_equal(preload_dirlist_add_reply(&l, body(&b), body_len(&b) - 3), -EBADMSG);
	assert_int_equal(l.n, 3);
	preload_dirlist_fini(&l);
}

/* 2,500 names in pages of 200, as the daemon pages a large prefix. */
static void test_many_pages(void **state)
{
	static char names[2500][8];
	struct ent e[200];
	struct proto_buf b;
	struct preload_dirlist l;
	const struct dirent64 *de, *first = NULL;
	size_t i, at = 0, pos;

	(void)state;
	for (i = 0; i < 2500; i++)
		snprintf(names[i], sizeof(names[i]), "k%05zu", i);
	assert_int_equal(preload_dirlist_init(&l, "/m/many"), 0);
	while (at < 2500) {
		size_t n = 2500 - at < 200 ? 2500 - at : 200;

		for (i = 0; i < n; i++) {
			e[i].name = names[at + i];
			e[i].type = PROTO_FT_REG;
		}
		reply(&b, e, n, at + n < 2500 ? names[at + n - 1] : NULL);
		assert_int_equal(preload_dirlist_add_reply(&l, body(&b), body_len(&b)), (int)n);
		if (!at)
			first = preload_dirlist_at(&l, 2);
		at += n;
		assert_int_equal(l.more, at < 2500);
	}
	assert_int_equal(l.n, 2502);
	for (pos = 2; pos < l.n; pos++) {
		assert_non_null(de = preload_dirlist_at(&l, pos));
		assert_string_equal(de->d_name, names[pos - 2]);
	}
	/* readdir's pointers stay put while later pages come in */
	assert_ptr_equal(first, preload_dirlist_at(&l, 2));
	assert_string_equal(first->d_name, "k00000");

	/* a bad page long enough to fill chunks is taken back whole */
	reply(&b, e, 0, NULL);
	for (i = 0; i < 2400; i++) {
		assert_int_equal(proto_put_str(&b, PROTO_T_NAME, names[i]), 0);
		assert_int_equal(proto_put_u32(&b, PROTO_T_TYPE, PROTO_FT_REG), 0);
	}
	assert_int_equal(proto_put_str(&b, PROTO_T_NAME, "dangling"), 0);
	assert_int_equal(preload_dirlist_add_reply(&l, body(&b), body_len(&b)), -EBADMSG);
	assert_int_equal(l.n, 2502);
	e[0].name = "zz";
	reply(&b, e, 1, NULL);
	assert_int_equal(preload_dirlist_add_reply(&l, body(&b), body_len(&b)), 1);
	expect(&l, 2502, "zz", DT_REG);
	expect(&l, 2501, "k02499", DT_REG);
	assert_string_equal(first->d_name, "k00000");

	/* seekdir back to a position telldir gave */
	assert_non_null(de = preload_dirlist_at(&l, 1234));
	assert_string_equal(de->d_name, names[1232]);
	assert_int_equal(de->d_off, 1235);
	preload_dirlist_fini(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dots),
		cmocka_unit_test(test_pages),
		cmocka_unit_test(test_bad_names_skipped),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_many_pages),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
