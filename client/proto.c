/* proto.c - encoding and decoding of the local wire format (see proto.h). */
#include "proto.h"

#include <errno.h>
#include <string.h>

struct tlv_hdr {
	uint16_t tag;
	uint16_t pad;
	uint32_t len;
};

#define TLV_HDR_SIZE 8

void proto_begin(struct proto_buf *b, uint16_t type, uint32_t id)
{
	struct proto_hdr h = {
		.magic = PROTO_MAGIC,
		.version = PROTO_VERSION,
		.type = type,
		.id = id,
		.len = 0,
	};

	memcpy(b->data, &h, sizeof(h));
	b->len = PROTO_HDR_SIZE;
}

int proto_put(struct proto_buf *b, uint16_t tag, const void *val, uint32_t len)
{
	struct tlv_hdr t = {.tag = tag, .pad = 0, .len = len};
	uint32_t body;

	if (len > PROTO_MSG_MAX || b->len + TLV_HDR_SIZE + (size_t)len > PROTO_MSG_MAX)
		return -EMSGSIZE;
	memcpy(b->data + b->len, &t, TLV_HDR_SIZE);
	if (len)
		memcpy(b->data + b->len + TLV_HDR_SIZE, val, len);
	b->len += TLV_HDR_SIZE + len;
	body = (uint32_t)(b->len - PROTO_HDR_SIZE);
	memcpy(b->data + offsetof(struct proto_hdr, len), &body, sizeof(body));
	return 0;
}

int proto_put_u32(struct proto_buf *b, uint16_t tag, uint32_t v)
{
	return proto_put(b, tag, &v, sizeof(v));
}

int proto_put_i32(struct proto_buf *b, uint16_t tag, int32_t v)
{
	return proto_put(b, tag, &v, sizeof(v));
}

int proto_put_u64(struct proto_buf *b, uint16_t tag, uint64_t v)
{
	return proto_put(b, tag, &v, sizeof(v));
}

int proto_put_i64(struct proto_buf *b, uint16_t tag, int64_t v)
{
	return proto_put(b, tag, &v, sizeof(v));
}

int proto_put_str(struct proto_buf *b, uint16_t tag, const char *s)
{
	size_t n = strlen(s);

	if (n > PROTO_MSG_MAX)
		return -EMSGSIZE;
	return proto_put(b, tag, s, (uint32_t)n);
}

int proto_check(const void *msg, size_t len, struct proto_hdr *h)
{
	uint16_t base;

	if (len < PROTO_HDR_SIZE || len > PROTO_MSG_MAX)
		return -EBADMSG;
	memcpy(h, msg, sizeof(*h));
	if (h->magic != PROTO_MAGIC)
		return -EBADMSG;
	if (h->version != PROTO_VERSION)
		return -EPROTO;
	if ((size_t)h->len != len - PROTO_HDR_SIZE)
		return -EBADMSG;
	base = h->type & (uint16_t)~PROTO_REPLY;
	/* A reply of base type 0 answers a request that could not be decoded. */
	if (base >= PROTO_TYPE_MAX || (base == 0 && !(h->type & PROTO_REPLY)))
		return -EBADMSG;
	return 0;
}

void proto_iter_init(struct proto_iter *it, const void *msg, size_t len)
{
	const uint8_t *m = msg;

	if (len < PROTO_HDR_SIZE) {
		it->p = it->end = m;
		return;
	}
	it->p = m + PROTO_HDR_SIZE;
	it->end = m + len;
}

int proto_next(struct proto_iter *it, struct proto_item *item)
{
	struct tlv_hdr t;
	size_t left = (size_t)(it->end - it->p);

	if (left == 0)
		return 0;
	if (left < TLV_HDR_SIZE)
		return -EBADMSG;
	memcpy(&t, it->p, TLV_HDR_SIZE);
	if ((size_t)t.len > left - TLV_HDR_SIZE)
		return -EBADMSG;
	item->tag = t.tag;
	item->len = t.len;
	item->val = it->p + TLV_HDR_SIZE;
	it->p += TLV_HDR_SIZE + t.len;
	return 1;
}

int proto_item_u32(const struct proto_item *item, uint32_t *v)
{
	if (item->len != sizeof(*v))
		return -EBADMSG;
	memcpy(v, item->val, sizeof(*v));
	return 0;
}

int proto_item_i32(const struct proto_item *item, int32_t *v)
{
	if (item->len != sizeof(*v))
		return -EBADMSG;
	memcpy(v, item->val, sizeof(*v));
	return 0;
}

int proto_item_u64(const struct proto_item *item, uint64_t *v)
{
	if (item->len != sizeof(*v))
		return -EBADMSG;
	memcpy(v, item->val, sizeof(*v));
	return 0;
}

int proto_item_i64(const struct proto_item *item, int64_t *v)
{
	if (item->len != sizeof(*v))
		return -EBADMSG;
	memcpy(v, item->val, sizeof(*v));
	return 0;
}

int proto_item_str(const struct proto_item *item, char *out, size_t outsz)
{
	if (memchr(item->val, '\0', item->len))
		return -EBADMSG;
	if ((size_t)item->len >= outsz)
		return -ENAMETOOLONG;
	memcpy(out, item->val, item->len);
	out[item->len] = '\0';
	return 0;
}

int proto_find(const void *msg, size_t len, uint16_t tag, struct proto_item *item)
{
	struct proto_iter it;
	int rc;

	proto_iter_init(&it, msg, len);
	while ((rc = proto_next(&it, item)) > 0) {
		if (item->tag == tag)
			return 1;
	}
	return rc;
}

int proto_path_normalize(const char *in, size_t len, char *out, size_t outsz)
{
	size_t i = 0, o = 0;

	if (outsz < 2)
		return -ENAMETOOLONG;
	if (len == 0 || in[0] != '/')
		return -EINVAL;
	if (memchr(in, '\0', len))
		return -EINVAL;
	if (len > PROTO_PATH_MAX)
		return -ENAMETOOLONG;

	while (i < len) {
		size_t start, clen;

		while (i < len && in[i] == '/')
			i++;
		start = i;
		while (i < len && in[i] != '/')
			i++;
		clen = i - start;
		if (clen == 0 || (clen == 1 && in[start] == '.'))
			continue;
		if (clen == 2 && in[start] == '.' && in[start + 1] == '.')
			return -EINVAL;
		if (clen > PROTO_NAME_MAX)
			return -ENAMETOOLONG;
		if (o + 1 + clen + 1 > outsz)
			return -ENAMETOOLONG;
		out[o++] = '/';
		memcpy(out + o, in + start, clen);
		o += clen;
	}
	if (o == 0)
		out[o++] = '/';
	out[o] = '\0';
	return 0;
}

bool proto_path_under(const char *path, const char *prefix)
{
	size_t n = strlen(prefix);

	if (n == 1 && prefix[0] == '/')
		return path[0] == '/';
	if (strncmp(path, prefix, n) != 0)
		return false;
	return path[n] == '\0' || path[n] == '/';
}

const char *proto_type_name(uint16_t type)
{
	static const char *const names[PROTO_TYPE_MAX] = {
		[PROTO_HELLO] = "hello",   [PROTO_OPEN] = "open",     [PROTO_STAT] = "stat",
		[PROTO_WARM] = "warm",	   [PROTO_LIST] = "list",     [PROTO_STATUS] = "status",
		[PROTO_LS] = "ls",	   [PROTO_EVICT] = "evict",   [PROTO_DROP] = "drop",
		[PROTO_PIN] = "pin",	   [PROTO_EPOCH] = "epoch",   [PROTO_HINT] = "hint",
		[PROTO_VERIFY] = "verify", [PROTO_ACCESS] = "access",
	};
	uint16_t base = type & (uint16_t)~PROTO_REPLY;

	if (base == 0 || base >= PROTO_TYPE_MAX)
		return "?";
	return names[base];
}
