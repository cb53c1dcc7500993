/*
 * hint.c - hinted epoch orders and the trainer's position in them (see
 * hint.h).
 */
#include "hint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "index.h"
#include "log.h"
#include "proto.h"
#include "policy.h"
#include "prefetch.h"

#define HINT_ARENA_MAX UINT32_MAX /* offsets are 32 bits */
#define HINT_SLOTS_MIN 1024

struct hint {
	char *arena; /* relative paths, each NUL-terminated */
	size_t arena_len, arena_cap;
	uint32_t *off; /* by position: offset of its path in arena */
	uint64_t n, cap;
	uint32_t *slot; /* position + 1 of a distinct path, 0 = empty */
	uint64_t nslot; /* a power of two */
	uint64_t distinct;
	uint64_t epoch; /* the dataset's epoch the order is for */
	uint64_t next;	/* trainer's position: positions below it were read or passed */
	uint64_t reads; /* trainer reads counted against the order */
	bool complete;
	bool full; /* the arena hit its limit: later paths were dropped */
};

/* @path relative to @m, or NULL when it is not under it. */
static const char *rel_of(const struct mount *m, const char *path)
{
	return proto_path_under(path, m->cfg->path) ? mount_rel(m, path) : NULL;
}

static uint64_t hash_rel(const char *rel, size_t len)
{
	return XXH3_64bits(rel, len);
}

static const char *path_of(const struct hint *h, uint64_t pos)
{
	return h->arena + h->off[pos];
}

/* Position of @rel, or UINT64_MAX; *at gets the slot it is in or would go to. */
static uint64_t lookup(const struct hint *h, const char *rel, size_t len, uint64_t *at)
{
	uint64_t mask = h->nslot - 1;
	uint64_t i = hash_rel(rel, len) & mask;

	while (h->slot[i]) {
		uint64_t pos = h->slot[i] - 1;

		if (!strcmp(path_of(h, pos), rel)) {
			*at = i;
			return pos;
		}
		i = (i + 1) & mask;
	}
	*at = i;
	return UINT64_MAX;
}

static int grow_slots(struct hint *h)
{
	uint64_t nslot = h->nslot ? h->nslot * 2 : HINT_SLOTS_MIN;
	uint32_t *old = h->slot;
	uint64_t oldn = h->nslot, i;

	h->slot = calloc(nslot, sizeof(*h->slot));
	if (!h->slot) {
		h->slot = old;
		return -ENOMEM;
	}
	h->nslot = nslot;
	for (i = 0; i < oldn; i++) {
		uint64_t at;
		const char *p;

		if (!old[i])
			continue;
		p = path_of(h, old[i] - 1);
		lookup(h, p, strlen(p), &at);
		h->slot[at] = old[i];
	}
	free(old);
	return 0;
}

/* Append @rel at the next position. Returns 0 or -errno (nothing added). */
static int append(struct hint *h, const char *rel)
{
	size_t len = strlen(rel);
	uint64_t at, pos;

	if (h->n >= UINT32_MAX - 1)
		return -E2BIG;
	if (h->n == h->cap) {
		uint64_t cap = h->cap ? h->cap * 2 : 1024;
		uint32_t *off = realloc(h->off, cap * sizeof(*off));

		if (!off)
			return -ENOMEM;
		h->off = off;
		h->cap = cap;
	}
	if ((h->distinct + 1) * 2 > h->nslot && grow_slots(h) < 0)
		return -ENOMEM;
	pos = lookup(h, rel, len, &at);
	if (pos != UINT64_MAX) {
		/* a repeat within the order: share the first occurrence's path */
		h->off[h->n++] = h->off[pos];
		return 0;
	}
	if (h->arena_len + len + 1 > h->arena_cap) {
		size_t cap = h->arena_cap ? h->arena_cap : 65536;
		char *a;

		while (cap < h->arena_len + len + 1)
			cap *= 2;
		if (cap > HINT_ARENA_MAX)
			cap = HINT_ARENA_MAX;
		if (h->arena_len + len + 1 > cap)
			return -E2BIG;
		a = realloc(h->arena, cap);
		if (!a)
			return -ENOMEM;
		h->arena = a;
		h->arena_cap = cap;
	}
	memcpy(h->arena + h->arena_len, rel, len + 1);
	h->off[h->n] = (uint32_t)h->arena_len;
	h->arena_len += len + 1;
	h->slot[at] = (uint32_t)(h->n + 1);
	h->distinct++;
	h->n++;
	return 0;
}

static void reset(struct granaryd *d, struct mount *m)
{
	struct hint *h = m->hint;
	struct policy_dataset_stats st;

	h->n = 0;
	h->arena_len = 0;
	h->distinct = 0;
	if (h->slot)
		memset(h->slot, 0, h->nslot * sizeof(*h->slot));
	h->complete = false;
	h->full = false;
	h->next = 0;
	h->reads = 0;
	/* the policy's rule: before any read of the epoch, the order is this epoch's */
	policy_dataset_stats(d->policy, m->dataset, &st);
	h->epoch = st.hits + st.misses > 0 ? st.epoch + 1 : st.epoch;
	policy_hint_begin(d->policy, m->dataset);
}

void hint_add(struct granaryd *d, struct mount *m, bool begin, bool end, const char *const *paths,
	      size_t n)
{
	struct hint *h = m->hint;
	size_t i;

	if (!h) {
		h = m->hint = calloc(1, sizeof(*m->hint));
		if (!h) {
			log_err("out of memory for a hinted order mount=%s", m->cfg->path);
			return;
		}
		begin = true;
	}
	if (begin) {
		reset(d, m);
		prefetch_reset(m);
	}
	for (i = 0; i < n && !h->full; i++) {
		const char *rel = rel_of(m, paths[i]);
		uint64_t pos = h->n, distinct = h->distinct;
		struct object *o;
		int rc;

		if (!rel)
			continue;
		rc = append(h, rel);
		if (rc < 0) {
			log_errno(LOG_WARNING, rc, "hinted order truncated mount=%s paths=%llu",
				  m->cfg->path, (unsigned long long)h->n);
			h->full = true;
			break;
		}
		if (h->distinct == distinct)
			continue; /* a repeat: the next use is its first position */
		o = index_get(d->idx, paths[i]);
		if (o && o->state == OBJ_CACHED && o->in_policy)
			policy_set_next_use(d->policy, &o->pe, pos);
	}
	if (end)
		h->complete = true;
	prefetch_kick(d, m);
}

size_t hint_count(const struct mount *m)
{
	return m->hint ? (size_t)m->hint->n : 0;
}

bool hint_position(const struct mount *m, const char *path, uint64_t *pos)
{
	const struct hint *h = m->hint;
	const char *rel;
	uint64_t at, p;

	if (!h || !h->n)
		return false;
	rel = rel_of(m, path);
	if (!rel)
		return false;
	p = lookup(h, rel, strlen(rel), &at);
	if (p == UINT64_MAX)
		return false;
	*pos = p;
	return true;
}

int hint_path_at(const struct mount *m, uint64_t pos, char *buf, size_t len)
{
	const struct hint *h = m->hint;
	const char *mp = m->cfg->path;
	int n;

	if (!h || pos >= h->n)
		return -ERANGE;
	n = snprintf(buf, len, "%s/%s", strcmp(mp, "/") ? mp : "", path_of(h, pos));
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	return 0;
}

enum hint_phase hint_phase(struct granaryd *d, const struct mount *m, uint64_t *next)
{
	const struct hint *h = m->hint;
	struct policy_dataset_stats st;

	if (next)
		*next = 0;
	if (!h || !h->n)
		return HINT_NONE;
	policy_dataset_stats(d->policy, m->dataset, &st);
	if (st.epoch < h->epoch)
		return HINT_UPCOMING;
	if (st.epoch > h->epoch)
		return HINT_STALE;
	if (next)
		*next = h->next;
	return HINT_CURRENT;
}

void hint_apply(struct granaryd *d, struct object *o)
{
	struct mount *m = o->mount;
	uint64_t pos;

	if (!m->hint || !o->in_policy)
		return;
	if (hint_position(m, o->path, &pos) && hint_phase(d, m, NULL) != HINT_STALE)
		policy_set_next_use(d->policy, &o->pe, pos);
}

void hint_seen(struct granaryd *d, struct mount *m, const char *path)
{
	struct hint *h = m->hint;
	uint64_t pos;

	if (!h || hint_phase(d, m, NULL) != HINT_CURRENT || !hint_position(m, path, &pos))
		return;
	h->reads++;
	if (pos + 1 > h->next)
		h->next = pos + 1;
	prefetch_kick(d, m);
}

static const char *phase_name(enum hint_phase p)
{
	switch (p) {
	case HINT_UPCOMING:
		return "upcoming";
	case HINT_CURRENT:
		return "current";
	case HINT_STALE:
		return "stale";
	default:
		return "none";
	}
}

json_t *hint_status_json(struct granaryd *d, const struct mount *m)
{
	const struct hint *h = m->hint;
	struct prefetch_stats ps;
	enum hint_phase ph;
	uint64_t next;

	ph = hint_phase(d, m, &next);
	prefetch_stats(m, &ps);
	return json_pack("{sI sb ss sI sI sI sI sI sI sI sI sI sb}", "paths",
			 (json_int_t)(h ? h->n : 0), "complete", h && h->complete, "phase",
			 phase_name(ph), "epoch", (json_int_t)(h ? h->epoch : 0), "position",
			 (json_int_t)next, "reads", (json_int_t)(h ? h->reads : 0), "arena_bytes",
			 (json_int_t)(h ? h->arena_cap : 0), "prefetch_inflight",
			 (json_int_t)ps.inflight, "prefetch_issued", (json_int_t)ps.issued,
			 "prefetched", (json_int_t)ps.prefetched, "prefetch_refused",
			 (json_int_t)ps.refused, "prefetch_failed", (json_int_t)ps.failed,
			 "prefetch_stalled", ps.stalled);
}

void hint_free(struct mount *m)
{
	struct hint *h = m->hint;

	prefetch_free(m);
	if (!h)
		return;
	free(h->arena);
	free(h->off);
	free(h->slot);
	free(h);
	m->hint = NULL;
}
