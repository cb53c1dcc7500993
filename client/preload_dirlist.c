/*
 * preload_dirlist.c - a directory listing of an object-store mount, built
 * from the daemon's LIST pages, read by position. See preload_dirlist.h.
 */
#include "preload_dirlist.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define FNV_BASIS 1469598103934665603ULL
#define FNV_PRIME 1099511628211ULL

static uint64_t fnv_more(uint64_t h, const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * FNV_PRIME;
	return h;
}

static uint64_t fnv_end(uint64_t h)
{
	return h ? h : 1;
}

uint64_t preload_path_hash(const char *s)
{
	return fnv_end(fnv_more(FNV_BASIS, s, strlen(s)));
}

#define CHUNK_SIZE 65536

/* Append one entry. Returns 0 or -ENOMEM. */
static int push(struct preload_dirlist *l, const char *name, size_t len, uint8_t type, uint64_t ino)
{
	struct preload_dirlist_chunk *c = l->chunks;
	size_t reclen = (offsetof(struct dirent64, d_name) + len + 1 + 7) & ~(size_t)7;
	struct dirent64 *de;

	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 64;
		struct dirent64 **ne = realloc(l->ents, ncap * sizeof(*ne));

		if (!ne)
			return -ENOMEM;
		l->ents = ne;
		l->cap = ncap;
	}
	/* room for a whole struct after each record: callers copy sizeof(*de) */
	if (!c || c->used + reclen + sizeof(struct dirent64) > CHUNK_SIZE) {
		c = calloc(1, sizeof(*c) + CHUNK_SIZE);
		if (!c)
			return -ENOMEM;
		c->next = l->chunks;
		l->chunks = c;
	}
	de = (struct dirent64 *)(c->data + c->used);
	de->d_ino = ino;
	de->d_off = (int64_t)l->n + 1;
	de->d_reclen = (unsigned short)reclen;
	de->d_type = type;
	memcpy(de->d_name, name, len);
	de->d_name[len] = '\0';
	c->used += reclen;
	l->ents[l->n++] = de;
	return 0;
}

/* Forget the entries from position @n on (they are the newest). */
static void truncate_to(struct preload_dirlist *l, size_t n)
{
	while (l->n > n) {
		struct preload_dirlist_chunk *c = l->chunks;

		l->n--;
		c->used = (size_t)((unsigned char *)l->ents[l->n] - c->data);
		if (!c->used && c->next) {
			l->chunks = c->next;
			free(c);
		}
	}
}

int preload_dirlist_init(struct preload_dirlist *l, const char *dir)
{
	size_t len = strlen(dir), plen = len;
	int rc;

	memset(l, 0, sizeof(*l));
	l->more = true;
	/* "/" hashes as the path itself; "/a" as "/a" then "/" name */
	l->dir_hash = fnv_more(FNV_BASIS, dir, len > 1 ? len : 0);
	while (plen > 1 && dir[plen - 1] != '/')
		plen--;
	if (plen > 1)
		plen--; /* the slash before the last name, unless it is the root's */
	rc = push(l, ".", 1, DT_DIR, preload_path_hash(dir));
	if (rc == 0)
		rc = push(l, "..", 2, DT_DIR, fnv_end(fnv_more(FNV_BASIS, dir, plen)));
	if (rc < 0)
		preload_dirlist_fini(l);
	return rc;
}

void preload_dirlist_fini(struct preload_dirlist *l)
{
	while (l->chunks) {
		struct preload_dirlist_chunk *c = l->chunks;

		l->chunks = c->next;
		free(c);
	}
	free(l->ents);
	memset(l, 0, sizeof(*l));
}

static uint8_t dtype(uint32_t ftype)
{
	switch (ftype) {
	case PROTO_FT_DIR:
		return DT_DIR;
	case PROTO_FT_REG:
		return DT_REG;
	default:
		return DT_UNKNOWN;
	}
}

static bool name_ok(const struct proto_item *it)
{
	if (it->len == 0 || it->len > PROTO_NAME_MAX)
		return false;
	if (memchr(it->val, '/', it->len) || memchr(it->val, '\0', it->len))
		return false;
	if (it->val[0] == '.' && (it->len == 1 || (it->len == 2 && it->val[1] == '.')))
		return false;
	return true;
}

/* Whether @it names the entry appended last (not "." or ".."). */
static bool same_as_last(const struct preload_dirlist *l, const struct proto_item *it)
{
	const struct dirent64 *e;

	if (l->n <= 2)
		return false;
	e = l->ents[l->n - 1];
	return strlen(e->d_name) == it->len && !memcmp(e->d_name, it->val, it->len);
}

int preload_dirlist_add_reply(struct preload_dirlist *l, const void *msg, size_t len)
{
	struct proto_iter it;
	struct proto_item item, name = {0};
	char cookie[PROTO_NAME_MAX + 1] = "";
	size_t n0 = l->n;
	bool have_name = false, have_cookie = false;
	int rc;

	proto_iter_init(&it, msg, len);
	while ((rc = proto_next(&it, &item)) > 0) {
		uint32_t type;

		switch (item.tag) {
		case PROTO_T_NAME:
			if (have_name)
				goto bad; /* a NAME without its TYPE */
			name = item;
			have_name = true;
			break;
		case PROTO_T_TYPE:
			if (!have_name || proto_item_u32(&item, &type) < 0)
				goto bad;
			have_name = false;
			if (!name_ok(&name) || same_as_last(l, &name))
				break;
			rc = push(l, (const char *)name.val, name.len, dtype(type),
				  fnv_end(fnv_more(fnv_more(l->dir_hash, "/", 1),
						   (const char *)name.val, name.len)));
			if (rc < 0)
				goto undo;
			break;
		case PROTO_T_COOKIE:
			if (proto_item_str(&item, cookie, sizeof(cookie)) < 0 || !cookie[0])
				goto bad;
			have_cookie = true;
			break;
		default:
			break; /* STATUS, SIZE, what a later daemon adds */
		}
	}
	if (rc < 0 || have_name)
		goto bad;
	l->more = have_cookie;
	memcpy(l->cookie, cookie, sizeof(cookie));
	return (int)(l->n - n0);

bad:
	rc = -EBADMSG;
undo:
	truncate_to(l, n0);
	return rc;
}

struct dirent64 *preload_dirlist_at(const struct preload_dirlist *l, size_t pos)
{
	return pos < l->n ? l->ents[pos] : NULL;
}
