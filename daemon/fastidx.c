/*
 * fastidx.c - the shared index of cached objects (see fastidx.h and the
 * comment above PROTO_FX_MAGIC in client/proto.h).
 *
 * DESIGN: open addressing with linear probing over a power-of-two table in a
 * memfd sealed against resizing and against any writer but the daemon's own
 * mapping (F_SEAL_FUTURE_WRITE). A slot is written under its sequence lock (odd while written)
 * with release stores, so a client that reads the same even sequence before
 * and after copying a slot has a consistent copy. Freed slots become
 * tombstones that later insertions reuse; a key that finds no room within
 * PROTO_FX_PROBE slots is simply not published and its readers use the socket.
 */
#define XXH_INLINE_ALL
#include "fastidx.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

#include "log.h"
#include "proto.h"

#define FX_MIN_SLOTS (1ull << 16)
#define FX_MAX_SLOTS (1ull << 24)

struct fastidx {
	int fd;
	size_t map_len;
	struct proto_fx_hdr *hdr;
	struct proto_fx_slot *slots;
	uint64_t mask;
	uint64_t used;
	struct object **objs; /* slot -> object */
};

struct fastidx *fastidx_create(uint64_t capacity, int *err)
{
	struct fastidx *fx = calloc(1, sizeof(*fx));
	uint64_t want = capacity / (16 * 1024), n = FX_MIN_SLOTS;

	if (!fx) {
		*err = -ENOMEM;
		return NULL;
	}
	while (n < want && n < FX_MAX_SLOTS)
		n <<= 1;
	fx->mask = n - 1;
	fx->map_len = sizeof(struct proto_fx_hdr) + n * sizeof(struct proto_fx_slot);
	fx->fd = memfd_create("granary-index", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fx->fd < 0) {
		*err = -errno;
		goto err_free;
	}
	if (ftruncate(fx->fd, (off_t)fx->map_len) < 0) {
		*err = -errno;
		goto err_close;
	}
	fx->hdr = mmap(NULL, fx->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fx->fd, 0);
	if (fx->hdr == MAP_FAILED) {
		*err = -errno;
		goto err_close;
	}
	/*
	 * Our mapping is the only writable one there will ever be: the seal
	 * refuses write() and writable mappings to every descriptor of this
	 * memfd, a client's reopening of /proc/PID/fd/N with O_RDWR included.
	 */
	if (fcntl(fx->fd, F_ADD_SEALS,
		  F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL) < 0) {
		*err = -errno;
		goto err_unmap;
	}
	fx->objs = calloc(n, sizeof(*fx->objs));
	if (!fx->objs) {
		*err = -ENOMEM;
		goto err_unmap;
	}
	fx->slots = (struct proto_fx_slot *)(fx->hdr + 1);
	fx->hdr->nslots = n;
	fx->hdr->version = PROTO_FX_VERSION;
	__atomic_store_n(&fx->hdr->magic, PROTO_FX_MAGIC, __ATOMIC_RELEASE);
	return fx;

err_unmap:
	munmap(fx->hdr, fx->map_len);
err_close:
	close(fx->fd);
err_free:
	free(fx);
	return NULL;
}

void fastidx_destroy(struct fastidx *fx)
{
	if (!fx)
		return;
	munmap(fx->hdr, fx->map_len);
	close(fx->fd);
	free(fx->objs);
	free(fx);
}

int fastidx_client_fd(struct fastidx *fx)
{
	char p[64];
	int fd;

	snprintf(p, sizeof(p), "/proc/self/fd/%d", fx->fd);
	fd = open(p, O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static void keys(const char *path, uint64_t *k1, uint64_t *k2)
{
	size_t n = strlen(path);

	*k1 = XXH3_64bits_withSeed(path, n, PROTO_FX_SEED1);
	*k2 = XXH3_64bits_withSeed(path, n, PROTO_FX_SEED2);
	/* 0 and the tombstone are reserved */
	if ((*k1 == 0 && *k2 == 0) || (*k1 == PROTO_FX_TOMB && *k2 == PROTO_FX_TOMB))
		*k2 ^= 1;
}

static void slot_write(struct proto_fx_slot *s, const struct proto_fx_slot *v)
{
	uint32_t seq = s->seq;

	__atomic_store_n(&s->seq, seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	__atomic_store_n(&s->mount, v->mount, __ATOMIC_RELAXED);
	__atomic_store_n(&s->key1, v->key1, __ATOMIC_RELAXED);
	__atomic_store_n(&s->key2, v->key2, __ATOMIC_RELAXED);
	__atomic_store_n(&s->id, v->id, __ATOMIC_RELAXED);
	__atomic_store_n(&s->size, v->size, __ATOMIC_RELAXED);
	__atomic_store_n(&s->mtime_ns, v->mtime_ns, __ATOMIC_RELAXED);
	__atomic_store_n(&s->ino, v->ino, __ATOMIC_RELAXED);
	__atomic_store_n(&s->mode, v->mode, __ATOMIC_RELAXED);
	__atomic_store_n(&s->uid, v->uid, __ATOMIC_RELAXED);
	__atomic_store_n(&s->gid, v->gid, __ATOMIC_RELAXED);
	__atomic_store_n(&s->validated_s, v->validated_s, __ATOMIC_RELAXED);
	__atomic_store_n(&s->seq, seq + 2, __ATOMIC_RELEASE);
}

static bool is_empty(const struct proto_fx_slot *s)
{
	return s->key1 == 0 && s->key2 == 0;
}

static bool is_tomb(const struct proto_fx_slot *s)
{
	return s->key1 == PROTO_FX_TOMB && s->key2 == PROTO_FX_TOMB;
}

void fastidx_put(struct fastidx *fx, struct object *o, uint32_t mount_index)
{
	struct proto_fx_slot v = {0};
	uint64_t i, at = UINT64_MAX, start;

	if (o->fx_slot)
		fastidx_del(fx, o);
	keys(o->path, &v.key1, &v.key2);
	start = v.key1 & fx->mask;
	for (i = 0; i < PROTO_FX_PROBE; i++) {
		uint64_t k = (start + i) & fx->mask;
		struct proto_fx_slot *s = &fx->slots[k];

		if (is_empty(s)) {
			if (at == UINT64_MAX)
				at = k;
			break;
		}
		if (is_tomb(s)) {
			if (at == UINT64_MAX)
				at = k;
			continue;
		}
		if (s->key1 == v.key1 && s->key2 == v.key2) {
			at = k; /* a stale entry of the same path */
			break;
		}
	}
	if (at == UINT64_MAX)
		return; /* no room nearby: this object is served through the socket */
	v.mount = mount_index;
	v.id = o->id;
	v.size = o->v.size;
	v.mtime_ns = o->v.mtime_ns;
	v.ino = o->v.ino;
	v.mode = o->v.mode;
	v.uid = o->v.uid;
	v.gid = o->v.gid;
	v.validated_s = o->validated_ns > 0 ? (uint32_t)(o->validated_ns / NS_PER_S) : 0;
	if (!fx->objs[at])
		fx->used++;
	else
		fx->objs[at]->fx_slot = 0;
	slot_write(&fx->slots[at], &v);
	fx->objs[at] = o;
	o->fx_slot = at + 1;
}

void fastidx_del(struct fastidx *fx, struct object *o)
{
	struct proto_fx_slot tomb = {0};
	uint64_t at;

	if (!o->fx_slot)
		return;
	at = o->fx_slot - 1;
	o->fx_slot = 0;
	if (fx->objs[at] != o)
		return;
	tomb.key1 = tomb.key2 = PROTO_FX_TOMB;
	slot_write(&fx->slots[at], &tomb);
	fx->objs[at] = NULL;
	fx->used--;
}

struct object *fastidx_object(struct fastidx *fx, uint64_t slot, uint64_t id)
{
	struct object *o;

	if (slot > fx->mask)
		return NULL;
	o = fx->objs[slot];
	return o && o->id == id && o->state == OBJ_CACHED ? o : NULL;
}

void fastidx_stats(const struct fastidx *fx, uint64_t *used, uint64_t *nslots)
{
	*used = fx ? fx->used : 0;
	*nslots = fx ? fx->mask + 1 : 0;
}
