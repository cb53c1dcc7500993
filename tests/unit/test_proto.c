/* test_proto.c - the wire format: building, checking, walking, paths. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "proto.h"

static void test_round_trip(void **state)
{
	static struct proto_buf b;
	struct proto_hdr h;
	struct proto_iter it;
	struct proto_item item;
	char s[64];
	uint32_t u32;
	uint64_t u64;
	int64_t i64;
	int32_t i32;

	(void)state;
	proto_begin(&b, PROTO_OPEN, 42);
	assert_int_equal(proto_put_str(&b, PROTO_T_PATH, "/mnt/nas/a"), 0);
	assert_int_equal(proto_put_u32(&b, PROTO_T_FLAGS, 7), 0);
	assert_int_equal(proto_put_u64(&b, PROTO_T_SIZE, 1ull << 40), 0);
	assert_int_equal(proto_put_i64(&b, PROTO_T_MTIME_NS, -5), 0);
	assert_int_equal(proto_put_i32(&b, PROTO_T_STATUS, -ENOENT), 0);
	assert_int_equal(proto_check(b.data, b.len, &h), 0);
	assert_int_equal(h.type, PROTO_OPEN);
	assert_int_equal(h.id, 42);
	assert_int_equal(h.len, b.len - PROTO_HDR_SIZE);

	proto_iter_init(&it, b.data, b.len);
	assert_int_equal(proto_next(&it, &item), 1);
	assert_int_equal(item.tag, PROTO_T_PATH);
	assert_int_equal(proto_item_str(&item, s, sizeof(s)), 0);
	assert_string_equal(s, "/mnt/nas/a");
	assert_int_equal(proto_next(&it, &item), 1);
	assert_int_equal(proto_item_u32(&item, &u32), 0);
	assert_int_equal(u32, 7);
	assert_int_equal(proto_item_u64(&item, &u64), -EBADMSG); /* wrong width */
	assert_int_equal(proto_next(&it, &item), 1);
	assert_int_equal(proto_item_u64(&item, &u64), 0);
	assert_true(u64 == 1ull << 40);
	assert_int_equal(proto_next(&it, &item), 1);
	assert_int_equal(proto_item_i64(&item, &i64), 0);
	assert_true(i64 == -5);
	assert_int_equal(proto_next(&it, &item), 1);
	assert_int_equal(proto_item_i32(&item, &i32), 0);
	assert_int_equal(i32, -ENOENT);
	assert_int_equal(proto_next(&it, &item), 0);

	assert_int_equal(proto_find(b.data, b.len, PROTO_T_SIZE, &item), 1);
	assert_int_equal(proto_find(b.data, b.len, PROTO_T_JSON, &item), 0);
	assert_string_equal(proto_type_name(PROTO_REPLY | PROTO_OPEN), "open");
	assert_string_equal(proto_type_name(99), "?");
}

static void test_full_message(void **state)
{
	static struct proto_buf b;
	static char big[PROTO_MSG_MAX];
	size_t before;

	(void)state;
	memset(big, 'x', sizeof(big));
	proto_begin(&b, PROTO_HINT, 1);
	while (proto_put(&b, PROTO_T_PATH, big, 1000) == 0)
		;
	before = b.len;
	assert_true(before <= PROTO_MSG_MAX);
	assert_int_equal(proto_put(&b, PROTO_T_PATH, big, 1000), -EMSGSIZE);
	assert_int_equal(b.len, before); /* unchanged on failure */
	assert_int_equal(proto_put(&b, PROTO_T_PATH, big, sizeof(big)), -EMSGSIZE);
}

static void test_check_rejects(void **state)
{
	static struct proto_buf b;
	struct proto_hdr h;
	uint8_t raw[64];

	(void)state;
	proto_begin(&b, PROTO_STAT, 3);
	proto_put_str(&b, PROTO_T_PATH, "/x");
	/* truncated datagram: header says more than there is */
	assert_int_equal(proto_check(b.data, b.len - 1, &h), -EBADMSG);
	/* too short for a header */
	assert_int_equal(proto_check(b.data, 10, &h), -EBADMSG);
	/* bad magic */
	memcpy(raw, b.data, b.len);
	raw[0] ^= 1;
	assert_int_equal(proto_check(raw, b.len, &h), -EBADMSG);
	/* other version */
	memcpy(raw, b.data, b.len);
	raw[4] = 9;
	assert_int_equal(proto_check(raw, b.len, &h), -EPROTO);
	/* unknown type, and type 0 in a request */
	proto_begin(&b, 99, 1);
	assert_int_equal(proto_check(b.data, b.len, &h), -EBADMSG);
	proto_begin(&b, 0, 1);
	assert_int_equal(proto_check(b.data, b.len, &h), -EBADMSG);
	/* a reply of base type 0 answers an undecodable request */
	proto_begin(&b, PROTO_REPLY, 1);
	assert_int_equal(proto_check(b.data, b.len, &h), 0);
}

static void test_truncated_item(void **state)
{
	static struct proto_buf b;
	struct proto_iter it;
	struct proto_item item;
	uint32_t bogus = 1000;

	(void)state;
	proto_begin(&b, PROTO_OPEN, 1);
	proto_put_str(&b, PROTO_T_PATH, "/abc");
	/* make the item claim 1000 bytes */
	memcpy(b.data + PROTO_HDR_SIZE + 4, &bogus, 4);
	proto_iter_init(&it, b.data, b.len);
	assert_int_equal(proto_next(&it, &item), -EBADMSG);
	/* a dangling partial item header */
	proto_begin(&b, PROTO_OPEN, 1);
	b.data[b.len++] = 1;
	proto_iter_init(&it, b.data, b.len);
	assert_int_equal(proto_next(&it, &item), -EBADMSG);
}

static void test_item_str(void **state)
{
	struct proto_item item = {.tag = PROTO_T_PATH, .len = 3, .val = (const uint8_t *)"a\0b"};
	char out[8];

	(void)state;
	assert_int_equal(proto_item_str(&item, out, sizeof(out)), -EBADMSG);
	item.val = (const uint8_t *)"abc";
	assert_int_equal(proto_item_str(&item, out, 3), -ENAMETOOLONG);
	assert_int_equal(proto_item_str(&item, out, 4), 0);
	assert_string_equal(out, "abc");
}

static int norm(const char *in, char *out)
{
	return proto_path_normalize(in, strlen(in), out, PROTO_PATH_MAX + 1);
}

static void test_normalize(void **state)
{
	static char out[PROTO_PATH_MAX + 1], in[PROTO_PATH_MAX + 64];

	(void)state;
	assert_int_equal(norm("/a//b/./c/", out), 0);
	assert_string_equal(out, "/a/b/c");
	assert_int_equal(norm("/", out), 0);
	assert_string_equal(out, "/");
	assert_int_equal(norm("//.//", out), 0);
	assert_string_equal(out, "/");
	assert_int_equal(norm("/a/.hidden/..x/x..", out), 0);
	assert_string_equal(out, "/a/.hidden/..x/x..");
	assert_int_equal(norm("relative/x", out), -EINVAL);
	assert_int_equal(norm("", out), -EINVAL);
	assert_int_equal(norm("/a/../b", out), -EINVAL);
	assert_int_equal(norm("/a/..", out), -EINVAL);
	assert_int_equal(proto_path_normalize("/a\0b", 4, out, sizeof(out)), -EINVAL);
	/* a name of 256 bytes */
	in[0] = '/';
	memset(in + 1, 'n', 256);
	in[257] = '\0';
	assert_int_equal(norm(in, out), -ENAMETOOLONG);
	in[256] = '\0';
	assert_int_equal(norm(in, out), 0);
	/* a path over PROTO_PATH_MAX */
	for (size_t i = 0; i < sizeof(in) - 1; i++)
		in[i] = (i % 100 == 0) ? '/' : 'p';
	in[sizeof(in) - 1] = '\0';
	assert_int_equal(norm(in, out), -ENAMETOOLONG);
	/* output buffer too small */
	assert_int_equal(proto_path_normalize("/abcdef", 7, out, 4), -ENAMETOOLONG);
}

static void test_under(void **state)
{
	(void)state;
	assert_true(proto_path_under("/a/b", "/a"));
	assert_true(proto_path_under("/a/b", "/a/b"));
	assert_false(proto_path_under("/a/bc", "/a/b"));
	assert_false(proto_path_under("/a", "/a/b"));
	assert_true(proto_path_under("/anything", "/"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),    cmocka_unit_test(test_full_message),
		cmocka_unit_test(test_check_rejects), cmocka_unit_test(test_truncated_item),
		cmocka_unit_test(test_item_str),      cmocka_unit_test(test_normalize),
		cmocka_unit_test(test_under),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
