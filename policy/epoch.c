/*
 * epoch.c - the epoch-aware policy, the default.
 *
 * Shuffled training reads every sample once per epoch. An entry already read
 * in the current epoch of its dataset is not needed again before the next
 * epoch; one not yet read will be, soon. So victims come, in this order,
 * from (1) datasets that are no longer being read (least recently read
 * dataset first, its oldest entries first), (2) entries already read in the
 * current epoch of their dataset: the farthest next use when the dataset's
 * order for the coming epoch is known, the least recently read otherwise.
 * Entries not yet read in the current epoch of an active dataset are never
 * victims; a miss that would need them is served without being kept.
 *
 * DESIGN: each dataset has three lists of unpinned entries: stale (not yet
 * read this epoch), fresh (read this epoch, next use unknown) and ranked (read
 * this epoch, with a next use in the coming epoch's order; these are also in
 * a max-heap on next_use). Whether an entry is fresh is decided by comparing
 * its last_epoch with the dataset's epoch, never by a per-entry flag, so an
 * epoch advance splices fresh and ranked onto stale and empties the heap in
 * O(1), without touching the entries. Every operation is O(1) or O(log n) in
 * the entries, plus a walk over the datasets (few) for victim and admit.
 */
#include <errno.h>
#include <stdlib.h>

#include "policy_impl.h"

struct epoch_ds {
	struct policy_entry stale, fresh, ranked; /* list sentinels */
	uint64_t stale_bytes;			  /* unpinned, not read this epoch */
	uint64_t fresh_bytes;			  /* unpinned, read this epoch (fresh + ranked) */
	struct policy_entry **heap;		  /* ranked entries, farthest next use on top */
	size_t n, cap;
};

static struct epoch_ds *eds_of(struct policy_ds *d)
{
	return d->priv;
}

/* Is the order of the epoch after the current one known? */
static bool epoch_ranking(const struct policy_ds *d)
{
	return d->hint_seq != 0 && d->hint_next && d->hint_epoch == d->epoch;
}

/* Max-heap on next_use. */

static bool heap_has(const struct epoch_ds *ed, const struct policy_entry *e)
{
	return e->heap_idx < ed->n && ed->heap[e->heap_idx] == e;
}

static void heap_set(struct epoch_ds *ed, size_t i, struct policy_entry *e)
{
	ed->heap[i] = e;
	e->heap_idx = i;
}

static void heap_up(struct epoch_ds *ed, size_t i)
{
	struct policy_entry *e = ed->heap[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (ed->heap[parent]->next_use >= e->next_use)
			break;
		heap_set(ed, i, ed->heap[parent]);
		i = parent;
	}
	heap_set(ed, i, e);
}

static void heap_down(struct epoch_ds *ed, size_t i)
{
	struct policy_entry *e = ed->heap[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= ed->n)
			break;
		if (c + 1 < ed->n && ed->heap[c + 1]->next_use > ed->heap[c]->next_use)
			c++;
		if (ed->heap[c]->next_use <= e->next_use)
			break;
		heap_set(ed, i, ed->heap[c]);
		i = c;
	}
	heap_set(ed, i, e);
}

static int heap_push(struct epoch_ds *ed, struct policy_entry *e)
{
	if (ed->n == ed->cap) {
		size_t cap = ed->cap ? ed->cap * 2 : 64;
		struct policy_entry **h = realloc(ed->heap, cap * sizeof(*h));

		if (!h)
			return -ENOMEM;
		ed->heap = h;
		ed->cap = cap;
	}
	heap_set(ed, ed->n++, e);
	heap_up(ed, ed->n - 1);
	return 0;
}

static void heap_del(struct epoch_ds *ed, struct policy_entry *e)
{
	size_t i = e->heap_idx;
	struct policy_entry *last = ed->heap[--ed->n];

	e->heap_idx = SIZE_MAX;
	if (last == e)
		return;
	heap_set(ed, i, last);
	heap_up(ed, i);
	heap_down(ed, last->heap_idx);
}

/* Link the unpinned entry @e according to its fields. */
static void epoch_link(struct policy *p, struct policy_entry *e)
{
	struct policy_ds *d = policy_ds_of(p, e);
	struct epoch_ds *ed = eds_of(d);

	if (e->last_epoch != d->epoch) {
		plist_add_tail(&ed->stale, e);
		e->list = POLICY_LIST_STALE;
		ed->stale_bytes += e->size;
		return;
	}
	ed->fresh_bytes += e->size;
	if (epoch_ranking(d) && policy_entry_next_use(d, e) != POLICY_NO_USE &&
	    heap_push(ed, e) == 0) {
		plist_add_tail(&ed->ranked, e);
		e->list = POLICY_LIST_RANKED;
		return;
	}
	/* no next use in the coming epoch counts as the farthest of all */
	plist_add_tail(&ed->fresh, e);
	e->list = POLICY_LIST_FRESH;
}

/* Unlink @e, whose last_epoch was @old_epoch when it was linked. */
static void epoch_unlink(struct policy *p, struct policy_entry *e, uint64_t old_epoch)
{
	struct policy_ds *d = policy_ds_of(p, e);
	struct epoch_ds *ed = eds_of(d);

	if (old_epoch == d->epoch) {
		ed->fresh_bytes -= e->size;
		if (heap_has(ed, e))
			heap_del(ed, e);
	} else {
		ed->stale_bytes -= e->size;
	}
	plist_del(e);
}

static int epoch_dataset_init(struct policy *p, struct policy_ds *d)
{
	struct epoch_ds *ed = calloc(1, sizeof(*ed));

	(void)p;
	if (!ed)
		return -ENOMEM;
	plist_init(&ed->stale);
	plist_init(&ed->fresh);
	plist_init(&ed->ranked);
	d->priv = ed;
	return 0;
}

static void epoch_dataset_fini(struct policy *p, struct policy_ds *d)
{
	struct epoch_ds *ed = eds_of(d);

	(void)p;
	free(ed->heap);
	free(ed);
	d->priv = NULL;
}

static void epoch_insert(struct policy *p, struct policy_entry *e)
{
	e->heap_idx = SIZE_MAX;
	epoch_link(p, e);
}

static void epoch_access(struct policy *p, struct policy_entry *e, uint64_t old_epoch)
{
	epoch_unlink(p, e, old_epoch);
	epoch_link(p, e);
}

static void epoch_remove(struct policy *p, struct policy_entry *e)
{
	epoch_unlink(p, e, e->last_epoch);
}

static void epoch_pin(struct policy *p, struct policy_entry *e, bool pinned)
{
	if (pinned)
		epoch_unlink(p, e, e->last_epoch);
	else
		epoch_link(p, e);
}

/* Everything read in the ending epoch now waits for its read in the new one. */
static void epoch_advance(struct policy *p, struct policy_ds *d)
{
	struct epoch_ds *ed = eds_of(d);

	(void)p;
	plist_splice_tail(&ed->stale, &ed->fresh);
	plist_splice_tail(&ed->stale, &ed->ranked);
	ed->stale_bytes += ed->fresh_bytes;
	ed->fresh_bytes = 0;
	ed->n = 0;
}

/* A new order, or none: every ranked entry loses its next use until set again. */
static void epoch_hint(struct policy *p, struct policy_ds *d)
{
	struct epoch_ds *ed = eds_of(d);

	(void)p;
	plist_splice_tail(&ed->fresh, &ed->ranked);
	ed->n = 0;
}

static void epoch_next_use(struct policy *p, struct policy_entry *e)
{
	struct policy_ds *d = policy_ds_of(p, e);
	struct epoch_ds *ed = eds_of(d);
	bool ranked = e->last_epoch == d->epoch && epoch_ranking(d) &&
		      policy_entry_next_use(d, e) != POLICY_NO_USE;

	if (heap_has(ed, e)) {
		if (ranked) {
			heap_up(ed, e->heap_idx);
			heap_down(ed, e->heap_idx);
			return;
		}
		heap_del(ed, e);
		plist_del(e);
		plist_add_tail(&ed->fresh, e);
		e->list = POLICY_LIST_FRESH;
		return;
	}
	if (ranked && heap_push(ed, e) == 0) {
		plist_del(e);
		plist_add_tail(&ed->ranked, e);
		e->list = POLICY_LIST_RANKED;
	}
}

static struct policy_entry *older(struct policy_entry *a, struct policy_entry *b)
{
	if (!a)
		return b;
	if (!b)
		return a;
	return b->last_access < a->last_access ? b : a;
}

static struct policy_entry *list_first(struct policy_entry *head)
{
	return plist_empty(head) ? NULL : head->next;
}

/* Within an active dataset: the entry read this epoch to give up first. */
static struct policy_entry *epoch_fresh_candidate(struct policy_ds *d)
{
	struct epoch_ds *ed = eds_of(d);

	if (!plist_empty(&ed->fresh))
		return ed->fresh.next;
	if (ed->n)
		return ed->heap[0];
	return NULL;
}

static struct policy_entry *epoch_victim(struct policy *p)
{
	struct policy_ds *d = p->lr_head.lr_next;
	struct policy_entry *best = NULL;

	/* (1) datasets no longer read, the longest idle first */
	for (; d != &p->lr_head && !policy_ds_active(p, d); d = d->lr_next) {
		struct epoch_ds *ed = eds_of(d);

		best = list_first(&ed->stale);
		if (!best)
			best = older(list_first(&ed->fresh), list_first(&ed->ranked));
		if (best)
			goto found;
	}
	/* (2) entries already read in their dataset's current epoch */
	for (; d != &p->lr_head; d = d->lr_next)
		best = older(best, epoch_fresh_candidate(d));
	if (!best)
		return NULL;
found:
	epoch_unlink(p, best, best->last_epoch);
	return best;
}

static bool epoch_admit(struct policy *p, struct policy_ds *nd, uint64_t size, uint64_t need)
{
	uint64_t free_bytes = 0;

	(void)nd;
	(void)size;
	for (size_t i = 0; i < p->nds && free_bytes < need; i++) {
		struct policy_ds *d = p->ds[i];
		struct epoch_ds *ed = eds_of(d);

		free_bytes += ed->fresh_bytes;
		if (!policy_ds_active(p, d))
			free_bytes += ed->stale_bytes;
	}
	return free_bytes >= need;
}

const struct policy_ops policy_epoch_ops = {
	.name = "epoch",
	.dataset_init = epoch_dataset_init,
	.dataset_fini = epoch_dataset_fini,
	.insert = epoch_insert,
	.access = epoch_access,
	.remove = epoch_remove,
	.victim = epoch_victim,
	.admit = epoch_admit,
	.pin = epoch_pin,
	.epoch_advance = epoch_advance,
	.hint = epoch_hint,
	.next_use = epoch_next_use,
};
