/*
 * fuzz_proto.c - libFuzzer target for the wire decoder (client/proto.h).
 *
 * The input is one received datagram. Whatever proto_check says, walking the
 * items must stay inside the buffer; for a checked message every item is read
 * with each typed reader, PATH items are normalised, and a reply built from
 * the same items must check and decode back to them, in order.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

#define MAX_ITEMS 8192

struct seen {
	uint16_t tag;
	uint32_t len;
	const uint8_t *val;
};

static struct seen items[MAX_ITEMS];
static struct proto_buf reply;
static char str[PROTO_MSG_MAX + 1];

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_proto: invariant broken: %s\n", what);
	abort();
}

static void typed_reads(const struct proto_item *it)
{
	uint32_t u32;
	int32_t i32;
	uint64_t u64;
	int64_t i64;
	int rc;

	rc = proto_item_u32(it, &u32);
	if ((rc == 0) != (it->len == 4) || (rc && rc != -EBADMSG))
		fail("proto_item_u32 result does not follow the length");
	if (rc == 0 && memcmp(&u32, it->val, 4))
		fail("proto_item_u32 value");
	rc = proto_item_i32(it, &i32);
	if ((rc == 0) != (it->len == 4))
		fail("proto_item_i32 result does not follow the length");
	rc = proto_item_u64(it, &u64);
	if ((rc == 0) != (it->len == 8) || (rc && rc != -EBADMSG))
		fail("proto_item_u64 result does not follow the length");
	if (rc == 0 && memcmp(&u64, it->val, 8))
		fail("proto_item_u64 value");
	rc = proto_item_i64(it, &i64);
	if ((rc == 0) != (it->len == 8))
		fail("proto_item_i64 result does not follow the length");

	/* strings: the exact size, one byte short, and the daemon's path buffer */
	rc = proto_item_str(it, str, (size_t)it->len + 1);
	if (memchr(it->val, '\0', it->len)) {
		if (rc != -EBADMSG)
			fail("proto_item_str accepted a NUL");
	} else {
		if (rc != 0 || str[it->len] != '\0' || memcmp(str, it->val, it->len))
			fail("proto_item_str of an exact-size buffer");
		if (proto_item_str(it, str, it->len) != -ENAMETOOLONG)
			fail("proto_item_str overflowed a short buffer");
	}
}

/* Absolute; no empty, "." or ".." component; no trailing slash but for "/". */
static int is_normal(const char *p)
{
	const char *c = p;

	if (p[0] != '/')
		return 0;
	if (p[1] == '\0')
		return 1;
	while (*c == '/') {
		const char *e = strchr(c + 1, '/');
		size_t clen = e ? (size_t)(e - c - 1) : strlen(c + 1);

		if (clen == 0 || clen > PROTO_NAME_MAX || (clen == 1 && c[1] == '.') ||
		    (clen == 2 && c[1] == '.' && c[2] == '.'))
			return 0;
		if (!e)
			return 1;
		c = e;
	}
	return 0;
}

static void normalise_path(const struct proto_item *it)
{
	static char out[PROTO_PATH_MAX + 1], again[PROTO_PATH_MAX + 1];
	size_t n;
	int rc;

	rc = proto_path_normalize((const char *)it->val, it->len, out, sizeof(out));
	if (rc) {
		if (rc != -EINVAL && rc != -ENAMETOOLONG)
			fail("proto_path_normalize returned an unexpected error");
		return;
	}
	n = strlen(out);
	if (!is_normal(out) || n > PROTO_PATH_MAX)
		fail("normalised PATH is not normal");
	if (proto_path_normalize(out, n, again, sizeof(again)) || strcmp(out, again))
		fail("normalising a normalised PATH changed it");
}

/* Rebuild the message as a reply, carrying every item that fits. */
static void rebuild(const struct proto_hdr *h, size_t n)
{
	struct proto_hdr rh;
	struct proto_iter it;
	struct proto_item item;
	size_t i, kept = 0;
	int32_t st;
	int rc;

	proto_begin(&reply, (uint16_t)(h->type | PROTO_REPLY), h->id);
	if (proto_put_i32(&reply, PROTO_T_STATUS, -EIO))
		fail("a STATUS did not fit in an empty reply");
	for (i = 0; i < n; i++) {
		size_t before = reply.len;

		rc = proto_put(&reply, items[i].tag, items[i].val, items[i].len);
		if (rc == -EMSGSIZE) {
			if (reply.len != before)
				fail("a refused proto_put changed the message");
			break;
		}
		if (rc)
			fail("proto_put returned an unexpected error");
		kept++;
	}
	if (reply.len > PROTO_MSG_MAX)
		fail("reply longer than PROTO_MSG_MAX");
	if (proto_check(reply.data, reply.len, &rh))
		fail("a built reply does not check");
	if (rh.id != h->id || rh.type != (uint16_t)(h->type | PROTO_REPLY) ||
	    rh.len != reply.len - PROTO_HDR_SIZE)
		fail("reply header");

	proto_iter_init(&it, reply.data, reply.len);
	if (proto_next(&it, &item) != 1 || item.tag != PROTO_T_STATUS ||
	    proto_item_i32(&item, &st) || st != -EIO)
		fail("reply does not start with its STATUS");
	for (i = 0; i < kept; i++) {
		if (proto_next(&it, &item) != 1)
			fail("reply lost an item");
		if (item.tag != items[i].tag || item.len != items[i].len ||
		    (item.len && memcmp(item.val, items[i].val, item.len)))
			fail("reply item differs from the request's");
	}
	if (proto_next(&it, &item) != 0)
		fail("reply has items it was not given");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_hdr h;
	struct proto_iter it;
	struct proto_item item;
	size_t n = 0;
	int rc, checked;

	checked = proto_check(data, size, &h);
	if (checked && checked != -EBADMSG && checked != -EPROTO)
		fail("proto_check returned an unexpected error");
	if (proto_type_name(checked ? 0 : h.type) == NULL)
		fail("proto_type_name returned NULL");

	/* walking an unchecked body must stay in bounds too */
	proto_iter_init(&it, data, size);
	while ((rc = proto_next(&it, &item)) == 1) {
		if (item.val < data || item.val + item.len > data + size)
			fail("item outside the message");
		if (n < MAX_ITEMS)
			items[n] = (struct seen){item.tag, item.len, item.val};
		n++;
		if (checked == 0) {
			typed_reads(&item);
			if (item.tag == PROTO_T_PATH)
				normalise_path(&item);
		}
	}
	if (rc != 0 && rc != -EBADMSG)
		fail("proto_next returned an unexpected value");

	if (checked == 0) {
		/* proto_find agrees with the walk */
		rc = proto_find(data, size, PROTO_T_PATH, &item);
		if (rc == 1 && item.tag != PROTO_T_PATH)
			fail("proto_find returned another tag");
		if (rc == 1 && n <= MAX_ITEMS) {
			size_t i;

			for (i = 0; i < n && items[i].tag != PROTO_T_PATH; i++)
				;
			if (i == n || items[i].val != item.val)
				fail("proto_find did not find the first PATH");
		}
		if (rc == 0 && n && n <= MAX_ITEMS) {
			size_t i;

			for (i = 0; i < n; i++)
				if (items[i].tag == PROTO_T_PATH)
					fail("proto_find missed a PATH");
		}
		if (n <= MAX_ITEMS)
			rebuild(&h, n);
	}
	return 0;
}
