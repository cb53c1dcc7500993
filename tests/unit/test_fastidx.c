/*
 * test_fastidx.c - the shared index (daemon/fastidx.c) as a client sees it:
 * the client's descriptor mapped read-only and walked with the rules of
 * client/proto.h (written again here, from the header alone), publish,
 * withdraw and republish, tombstones reused, a stale entry of the same path
 * replaced, the slot -> object map, and a client descriptor that cannot
 * write the index by any route (F_SEAL_FUTURE_WRITE).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cmocka.h>

#include "fastidx.h"
#include "proto.h"

#define NOBJ 3000

struct view {
	int fd;
	size_t len;
	const struct proto_fx_hdr *hdr;
	const struct proto_fx_slot *slots;
};

static struct view view_open(struct fastidx *fx)
{
	struct view v = {.fd = fastidx_client_fd(fx)};
	struct stat sb;
	void *map;

	assert_true(v.fd >= 0);
	assert_int_equal(fstat(v.fd, &sb), 0);
	v.len = (size_t)sb.st_size;
	map = mmap(NULL, v.len, PROT_READ, MAP_SHARED, v.fd, 0);
	assert_true(map != MAP_FAILED);
	v.hdr = map;
	v.slots = (const struct proto_fx_slot *)(v.hdr + 1);
	assert_int_equal(v.hdr->magic, PROTO_FX_MAGIC);
	assert_int_equal(v.hdr->version, PROTO_FX_VERSION);
	assert_int_equal(v.len, sizeof(*v.hdr) + v.hdr->nslots * sizeof(struct proto_fx_slot));
	return v;
}

static void view_close(struct view *v)
{
	munmap((void *)v->hdr, v->len);
	close(v->fd);
}

static void keys(const char *path, uint64_t *k1, uint64_t *k2)
{
	*k1 = XXH3_64bits_withSeed(path, strlen(path), PROTO_FX_SEED1);
	*k2 = XXH3_64bits_withSeed(path, strlen(path), PROTO_FX_SEED2);
	if ((*k1 == 0 && *k2 == 0) || (*k1 == PROTO_FX_TOMB && *k2 == PROTO_FX_TOMB))
		*k2 ^= 1;
}

/* Lookup as proto.h tells a client: 1 with the slot copied to @out, or 0. */
static int lookup(const struct view *v, const char *path, uint32_t mount, struct proto_fx_slot *out,
		  uint64_t *at)
{
	uint64_t k1, k2, n = v->hdr->nslots, i;

	keys(path, &k1, &k2);
	for (i = 0; i < PROTO_FX_PROBE; i++) {
		const struct proto_fx_slot *s = &v->slots[(k1 % n + i) % n];
		uint32_t seq = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);

		assert_int_equal(seq & 1, 0); /* nobody writes while we look */
		memcpy(out, s, sizeof(*out));
		assert_int_equal(__atomic_load_n(&s->seq, __ATOMIC_ACQUIRE), seq);
		if (out->key1 == 0 && out->key2 == 0)
			return 0;
		if (out->key1 != k1 || out->key2 != k2)
			continue; /* another path or a tombstone */
		*at = (k1 % n + i) % n;
		return out->mount == mount;
	}
	return 0;
}

static void object_init(struct object *o, char *path, uint64_t id)
{
	memset(o, 0, sizeof(*o));
	o->path = path;
	o->state = OBJ_CACHED;
	o->id = id;
	o->v.size = 1000 + id;
	o->v.mtime_ns = 1700000000123456789LL + (int64_t)id;
	o->v.ino = 77 + id;
	o->v.mode = S_IFREG | 0644;
	o->v.uid = 1000;
	o->v.gid = 100 + (uint32_t)id;
	o->validated_ns = 5 * NS_PER_S + 999;
}

/* @o is found by its path under mount @mount, every field as published. */
static void assert_published(struct fastidx *fx, const struct view *v, struct object *o,
			     uint32_t mount)
{
	struct proto_fx_slot s;
	uint64_t at = UINT64_MAX;

	assert_int_equal(lookup(v, o->path, mount, &s, &at), 1);
	assert_int_equal(at + 1, o->fx_slot);
	assert_int_equal(s.id, o->id);
	assert_int_equal(s.size, o->v.size);
	assert_int_equal(s.mtime_ns, o->v.mtime_ns);
	assert_int_equal(s.ino, o->v.ino);
	assert_int_equal(s.mode, o->v.mode);
	assert_int_equal(s.uid, o->v.uid);
	assert_int_equal(s.gid, o->v.gid);
	assert_int_equal(s.validated_s, 5);
	assert_ptr_equal(fastidx_object(fx, at, o->id), o);
}

static void assert_absent(const struct view *v, const char *path, uint32_t mount)
{
	struct proto_fx_slot s;
	uint64_t at;

	assert_int_equal(lookup(v, path, mount, &s, &at), 0);
}

static void test_publish_withdraw(void **state)
{
	struct object *o = calloc(NOBJ, sizeof(*o));
	char(*paths)[48] = calloc(NOBJ, sizeof(*paths));
	uint64_t used, nslots;
	struct fastidx *fx;
	struct view v;
	int err = 0, i;

	(void)state;
	assert_non_null(o);
	assert_non_null(paths);
	fx = fastidx_create(0, &err);
	assert_non_null(fx);
	v = view_open(fx);
	fastidx_stats(fx, &used, &nslots);
	assert_int_equal(nslots, v.hdr->nslots);
	for (i = 0; i < NOBJ; i++) {
		snprintf(paths[i], sizeof(paths[i]), "/data/train/d%02d/%06d.jpg", i % 37, i);
		object_init(&o[i], paths[i], (uint64_t)i + 1);
		fastidx_put(fx, &o[i], (uint32_t)(i % 3));
	}
	for (i = 0; i < NOBJ; i++) {
		assert_published(fx, &v, &o[i], (uint32_t)(i % 3));
		assert_absent(&v, paths[i], (uint32_t)(i % 3 + 1)); /* another mount's */
	}
	fastidx_stats(fx, &used, &nslots);
	assert_int_equal(used, NOBJ);

	for (i = 0; i < NOBJ; i += 3) {
		fastidx_del(fx, &o[i]);
		assert_int_equal(o[i].fx_slot, 0);
	}
	fastidx_stats(fx, &used, &nslots);
	assert_int_equal(used, NOBJ - NOBJ / 3);
	for (i = 0; i < NOBJ; i++) {
		if (i % 3 == 0)
			assert_absent(&v, paths[i], (uint32_t)(i % 3));
		else
			assert_published(fx, &v, &o[i], (uint32_t)(i % 3));
	}

	/* back, as a new version; and a published one updated in place */
	for (i = 0; i < NOBJ; i += 3) {
		o[i].v.size += 5;
		fastidx_put(fx, &o[i], (uint32_t)(i % 3));
	}
	o[1].v.size = 1;
	fastidx_put(fx, &o[1], 1);
	fastidx_stats(fx, &used, &nslots);
	assert_int_equal(used, NOBJ);
	for (i = 0; i < NOBJ; i++)
		assert_published(fx, &v, &o[i], (uint32_t)(i % 3));
	view_close(&v);
	fastidx_destroy(fx);
	free(paths);
	free(o);
}

/* Three paths whose probes start at the same slot. */
static void same_start(uint64_t nslots, char out[3][32], uint64_t *start)
{
	uint32_t *seen = calloc(nslots * 3, sizeof(*seen)); /* path number + 1 */
	uint64_t k1, k2, s;
	unsigned i, j;
	char p[32];

	assert_non_null(seen);
	for (i = 0;; i++) {
		snprintf(p, sizeof(p), "/data/c/%u", i);
		keys(p, &k1, &k2);
		s = k1 % nslots;
		for (j = 0; j < 3 && seen[s * 3 + j]; j++)
			;
		if (j < 3)
			seen[s * 3 + j] = i + 1;
		if (j == 2)
			break;
	}
	for (j = 0; j < 3; j++)
		snprintf(out[j], 32, "/data/c/%u", seen[s * 3 + j] - 1);
	*start = s;
	free(seen);
}

static void test_tombstones_reused(void **state)
{
	struct object a, b, c, b2;
	char p[3][32];
	uint64_t s, used, nslots;
	struct fastidx *fx;
	struct view v;
	int err = 0;

	(void)state;
	fx = fastidx_create(0, &err);
	assert_non_null(fx);
	v = view_open(fx);
	same_start(v.hdr->nslots, p, &s);
	object_init(&a, p[0], 10);
	object_init(&b, p[1], 11);
	object_init(&c, p[2], 12);
	object_init(&b2, p[1], 13); /* b's path, fetched again */
	fastidx_put(fx, &a, 0);
	fastidx_put(fx, &b, 0);
	assert_int_equal(a.fx_slot, s + 1);
	assert_int_equal(b.fx_slot, (s + 1) % v.hdr->nslots + 1);

	/* a withdrawn: a tombstone, which b's probe passes */
	fastidx_del(fx, &a);
	assert_true(v.slots[s].key1 == PROTO_FX_TOMB && v.slots[s].key2 == PROTO_FX_TOMB);
	assert_absent(&v, p[0], 0);
	assert_published(fx, &v, &b, 0);
	assert_null(fastidx_object(fx, s, a.id));

	/* the next key to probe there takes the tombstone */
	fastidx_put(fx, &c, 0);
	assert_int_equal(c.fx_slot, s + 1);
	assert_published(fx, &v, &c, 0);
	assert_published(fx, &v, &b, 0);
	fastidx_del(fx, &c);

	/* a new object of b's path replaces b's entry, not the tombstone before it */
	fastidx_put(fx, &b2, 0);
	assert_int_equal(b2.fx_slot, (s + 1) % v.hdr->nslots + 1);
	assert_int_equal(b.fx_slot, 0);
	assert_true(v.slots[s].key1 == PROTO_FX_TOMB);
	assert_published(fx, &v, &b2, 0);
	assert_null(fastidx_object(fx, b2.fx_slot - 1, b.id));
	fastidx_del(fx, &b); /* a stale handle withdraws nothing */
	assert_published(fx, &v, &b2, 0);
	b.fx_slot = b2.fx_slot; /* not even one that names the slot */
	fastidx_del(fx, &b);
	assert_int_equal(b.fx_slot, 0);
	assert_published(fx, &v, &b2, 0);
	fastidx_stats(fx, &used, &nslots);
	assert_int_equal(used, 1);
	fastidx_put(fx, &a, 0);
	assert_int_equal(a.fx_slot, s + 1);
	view_close(&v);
	fastidx_destroy(fx);
}

static void test_object_by_id(void **state)
{
	struct object a;
	char path[] = "/data/x.bin";
	struct fastidx *fx;
	uint64_t at, nslots, used;
	int err = 0;

	(void)state;
	fx = fastidx_create(1ull << 31, &err); /* 2 GiB of cache: more slots */
	assert_non_null(fx);
	fastidx_stats(fx, &used, &nslots);
	assert_true(nslots > (1u << 16) && (nslots & (nslots - 1)) == 0);
	object_init(&a, path, 0xabc);
	fastidx_put(fx, &a, 2);
	at = a.fx_slot - 1;
	assert_ptr_equal(fastidx_object(fx, at, 0xabc), &a);
	assert_null(fastidx_object(fx, at, 0xabd));
	assert_null(fastidx_object(fx, (at + 1) % nslots, 0xabc));
	assert_null(fastidx_object(fx, nslots, 0xabc));
	assert_null(fastidx_object(fx, UINT64_MAX, 0xabc));
	a.state = OBJ_FETCHING; /* being fetched again: not the copy the client read */
	assert_null(fastidx_object(fx, at, 0xabc));
	a.state = OBJ_CACHED;
	fastidx_del(fx, &a);
	assert_null(fastidx_object(fx, at, 0xabc));
	fastidx_destroy(fx);
}

static void assert_eperm(long rc)
{
	assert_int_equal(rc, -1);
	assert_int_equal(errno, EPERM);
}

static void test_client_cannot_write(void **state)
{
	struct object a;
	char path[] = "/data/sealed", proc[64];
	struct fastidx *fx;
	struct view v;
	void *map;
	int err = 0, rw;

	(void)state;
	fx = fastidx_create(0, &err);
	assert_non_null(fx);
	v = view_open(fx);
	assert_int_equal(fcntl(v.fd, F_GET_SEALS),
			 F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL);
	assert_int_equal(fcntl(v.fd, F_GETFL) & O_ACCMODE, O_RDONLY);
	assert_true(mmap(NULL, v.len, PROT_WRITE, MAP_SHARED, v.fd, 0) == MAP_FAILED);

	/* reopened for writing, as anyone holding the descriptor may */
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", v.fd);
	rw = open(proc, O_RDWR | O_CLOEXEC);
	assert_true(rw >= 0);
	assert_true(mmap(NULL, v.len, PROT_READ | PROT_WRITE, MAP_SHARED, rw, 0) == MAP_FAILED);
	assert_int_equal(errno, EPERM);
	assert_eperm(write(rw, "x", 1));
	assert_eperm(pwrite(rw, "x", 1, 64));
	assert_eperm(ftruncate(rw, 0));
	assert_eperm(fcntl(rw, F_ADD_SEALS, F_SEAL_WRITE)); /* sealed for good */
	/* a read-only shared mapping cannot be made writable later */
	map = mmap(NULL, v.len, PROT_READ, MAP_SHARED, rw, 0);
	assert_true(map != MAP_FAILED);
	assert_int_equal(mprotect(map, v.len, PROT_READ | PROT_WRITE), -1);
	assert_int_equal(errno, EACCES);
	munmap(map, v.len);
	/* a private mapping is the client's own copy: the index does not change */
	map = mmap(NULL, v.len, PROT_READ | PROT_WRITE, MAP_PRIVATE, rw, 0);
	assert_true(map != MAP_FAILED);
	memset(map, 0xff, v.len);
	munmap(map, v.len);
	close(rw);
	assert_int_equal(v.hdr->magic, PROTO_FX_MAGIC);
	assert_int_equal(v.slots[0].key1, 0);

	/* the daemon's own mapping still writes, and the client sees it */
	object_init(&a, path, 7);
	fastidx_put(fx, &a, 0);
	assert_published(fx, &v, &a, 0);
	view_close(&v);
	fastidx_destroy(fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_publish_withdraw),
		cmocka_unit_test(test_tombstones_reused),
		cmocka_unit_test(test_object_by_id),
		cmocka_unit_test(test_client_cannot_write),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
