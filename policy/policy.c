/*
 * policy.c - what every eviction policy shares: datasets, epochs, hit and miss
 * counters, the read clock, and dispatch to the chosen policy's operations.
 *
 * DESIGN: datasets live in an array of pointers indexed by id (ids are handed
 * out in order and never reused), so a dataset's address stays valid while the
 * array grows and the policies may keep sentinels inside their per-dataset
 * state. Datasets are also kept on a ring ordered by their last read; since
 * every dataset shares one idle window, the inactive ones are a prefix of that
 * ring, which is how a policy finds them without looking at all of them.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "policy_impl.h"

static const struct policy_ops *policy_ops_find(const char *name)
{
	if (!name || strcmp(name, "epoch") == 0)
		return &policy_epoch_ops;
	if (strcmp(name, "lru") == 0)
		return &policy_lru_ops;
	return NULL;
}

struct policy *policy_create(const char *name, int *err)
{
	const struct policy_ops *ops = policy_ops_find(name);
	struct policy *p;
	int rc;

	if (!ops) {
		rc = -EINVAL;
		goto err;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		rc = -ENOMEM;
		goto err;
	}
	p->ops = ops;
	p->lr_head.lr_prev = &p->lr_head;
	p->lr_head.lr_next = &p->lr_head;
	p->next_hint_seq = 1;
	if (ops->init) {
		rc = ops->init(p);
		if (rc < 0)
			goto err_free;
	}
	if (err)
		*err = 0;
	return p;

err_free:
	free(p);
err:
	if (err)
		*err = rc;
	return NULL;
}

void policy_destroy(struct policy *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->nds; i++) {
		if (p->ops->dataset_fini)
			p->ops->dataset_fini(p, p->ds[i]);
		free(p->ds[i]->name);
		free(p->ds[i]);
	}
	free(p->ds);
	if (p->ops->fini)
		p->ops->fini(p);
	free(p);
}

const char *policy_name(const struct policy *p)
{
	return p->ops->name;
}

static struct policy_ds *policy_ds_get(const struct policy *p, uint32_t ds)
{
	return ds < p->nds ? p->ds[ds] : NULL;
}

static void policy_lr_unlink(struct policy_ds *d)
{
	d->lr_prev->lr_next = d->lr_next;
	d->lr_next->lr_prev = d->lr_prev;
}

static void policy_lr_add_tail(struct policy *p, struct policy_ds *d)
{
	d->lr_prev = p->lr_head.lr_prev;
	d->lr_next = &p->lr_head;
	p->lr_head.lr_prev->lr_next = d;
	p->lr_head.lr_prev = d;
}

/* @d was just read: it becomes the most recently read dataset. */
static void policy_ds_touch(struct policy *p, struct policy_ds *d)
{
	d->last_read = p->clock;
	d->ever_read = true;
	policy_lr_unlink(d);
	policy_lr_add_tail(p, d);
}

uint32_t policy_dataset(struct policy *p, const char *name)
{
	struct policy_ds *d;

	for (size_t i = 0; i < p->nds; i++)
		if (strcmp(p->ds[i]->name, name) == 0)
			return (uint32_t)i;
	if (p->nds >= POLICY_DATASET_NONE)
		return POLICY_DATASET_NONE;
	if (p->nds == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 8;
		struct policy_ds **a = realloc(p->ds, cap * sizeof(*a));

		if (!a)
			return POLICY_DATASET_NONE;
		p->ds = a;
		p->cap = cap;
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return POLICY_DATASET_NONE;
	d->name = strdup(name);
	if (!d->name)
		goto err_free;
	d->id = (uint32_t)p->nds;
	d->epoch = 1;
	if (p->ops->dataset_init && p->ops->dataset_init(p, d) < 0)
		goto err_name;
	/* never read: least recently read of all, so at the head of the ring */
	d->lr_next = p->lr_head.lr_next;
	d->lr_prev = &p->lr_head;
	p->lr_head.lr_next->lr_prev = d;
	p->lr_head.lr_next = d;
	p->ds[p->nds++] = d;
	return d->id;

err_name:
	free(d->name);
err_free:
	free(d);
	return POLICY_DATASET_NONE;
}

const char *policy_dataset_name(const struct policy *p, uint32_t ds)
{
	const struct policy_ds *d = policy_ds_get(p, ds);

	return d ? d->name : NULL;
}

size_t policy_dataset_count(const struct policy *p)
{
	return p->nds;
}

void policy_set_idle_window(struct policy *p, uint64_t reads)
{
	p->idle_window = reads;
}

bool policy_ds_active(const struct policy *p, const struct policy_ds *d)
{
	uint64_t window = p->idle_window;

	if (!d->ever_read)
		return false;
	if (!window)
		window = p->entries > POLICY_IDLE_MIN ? p->entries : POLICY_IDLE_MIN;
	return p->clock - d->last_read < window;
}

bool policy_dataset_active(const struct policy *p, uint32_t ds)
{
	const struct policy_ds *d = policy_ds_get(p, ds);

	return d && policy_ds_active(p, d);
}

static void policy_ds_advance(struct policy *p, struct policy_ds *d)
{
	d->prev_hits = d->hits;
	d->prev_misses = d->misses;
	d->hits = 0;
	d->misses = 0;
	d->epoch++;
	if (p->ops->epoch_advance)
		p->ops->epoch_advance(p, d);
}

uint64_t policy_epoch_advance(struct policy *p, uint32_t ds)
{
	struct policy_ds *d = policy_ds_get(p, ds);

	if (!d)
		return 0;
	policy_ds_advance(p, d);
	return d->epoch;
}

void policy_dataset_stats(const struct policy *p, uint32_t ds, struct policy_dataset_stats *out)
{
	const struct policy_ds *d = policy_ds_get(p, ds);

	memset(out, 0, sizeof(*out));
	if (!d)
		return;
	out->epoch = d->epoch;
	out->hits = d->hits;
	out->misses = d->misses;
	out->prev_hits = d->prev_hits;
	out->prev_misses = d->prev_misses;
	out->total_hits = d->total_hits;
	out->total_misses = d->total_misses;
	out->entries = d->entries;
	out->bytes = d->bytes;
	/* an order given in this epoch, or in the last one for the epoch after it */
	out->hinted = d->hint_seq != 0 && (d->hint_epoch == d->epoch ||
					   (d->hint_next && d->hint_epoch + 1 == d->epoch));
}

void policy_miss(struct policy *p, uint32_t ds)
{
	struct policy_ds *d = policy_ds_get(p, ds);

	if (!d)
		return;
	p->clock++;
	d->misses++;
	d->total_misses++;
	policy_ds_touch(p, d);
}

void policy_access(struct policy *p, struct policy_entry *e)
{
	struct policy_ds *d = policy_ds_of(p, e);
	uint64_t old_epoch = e->last_epoch;

	if (!d || e->list == POLICY_LIST_NONE)
		return;
	p->clock++;
	/* read twice in one epoch: the trainer has started the next one */
	if (e->last_epoch == d->epoch)
		policy_ds_advance(p, d);
	d->hits++;
	d->total_hits++;
	policy_ds_touch(p, d);
	e->last_epoch = d->epoch;
	e->last_access = p->clock;
	if (!e->pinned)
		p->ops->access(p, e, old_epoch);
}

bool policy_admit(struct policy *p, uint32_t ds, uint64_t size, uint64_t need)
{
	struct policy_ds *d = policy_ds_get(p, ds);

	if (need == 0)
		return true;
	if (!d)
		return false;
	return p->ops->admit(p, d, size, need);
}

static void policy_insert_as(struct policy *p, struct policy_entry *e, bool read)
{
	struct policy_ds *d = policy_ds_of(p, e);

	if (!d || e->list != POLICY_LIST_NONE)
		return;
	policy_ds_touch(p, d);
	/* epochs start at 1: last_epoch 0 means never read */
	e->last_epoch = read ? d->epoch : d->epoch - 1;
	e->last_access = p->clock;
	e->prev = NULL;
	e->next = NULL;
	e->linked = true;
	d->entries++;
	d->bytes += e->size;
	p->entries++;
	if (e->pinned) {
		e->list = POLICY_LIST_PINNED;
		return;
	}
	p->ops->insert(p, e);
}

void policy_insert(struct policy *p, struct policy_entry *e)
{
	policy_insert_as(p, e, true);
}

void policy_insert_unread(struct policy *p, struct policy_entry *e)
{
	policy_insert_as(p, e, false);
}

static void policy_forget(struct policy *p, struct policy_ds *d, struct policy_entry *e)
{
	d->entries--;
	d->bytes -= e->size;
	p->entries--;
	e->list = POLICY_LIST_NONE;
	e->linked = false;
	e->prev = NULL;
	e->next = NULL;
}

void policy_remove(struct policy *p, struct policy_entry *e)
{
	struct policy_ds *d = policy_ds_of(p, e);

	if (!d || e->list == POLICY_LIST_NONE)
		return;
	if (e->list != POLICY_LIST_PINNED)
		p->ops->remove(p, e);
	policy_forget(p, d, e);
}

struct policy_entry *policy_victim(struct policy *p)
{
	struct policy_entry *e = p->ops->victim(p);

	if (e)
		policy_forget(p, policy_ds_of(p, e), e);
	return e;
}

void policy_pin(struct policy *p, struct policy_entry *e, bool pinned)
{
	if (e->pinned == pinned)
		return;
	if (e->list == POLICY_LIST_NONE) {
		/* not cached yet: policy_insert honours the flag */
		e->pinned = pinned;
		return;
	}
	if (pinned) {
		p->ops->pin(p, e, true);
		e->pinned = true;
		e->list = POLICY_LIST_PINNED;
	} else {
		e->pinned = false;
		p->ops->pin(p, e, false);
	}
}

void policy_hint_begin(struct policy *p, uint32_t ds)
{
	struct policy_ds *d = policy_ds_get(p, ds);

	if (!d)
		return;
	d->hint_seq = p->next_hint_seq++;
	d->hint_epoch = d->epoch;
	/*
	 * Sent after the epoch's first read, the order can only be for the
	 * next epoch (the sampler draws it ahead); sent before any read of the
	 * epoch (right after an explicit advance, or for a new dataset), it is
	 * the order of this one.
	 */
	d->hint_next = d->hits + d->misses > 0;
	if (p->ops->hint)
		p->ops->hint(p, d);
}

void policy_set_next_use(struct policy *p, struct policy_entry *e, uint64_t pos)
{
	struct policy_ds *d = policy_ds_of(p, e);

	if (!d)
		return;
	e->next_use = pos;
	e->hint_seq = d->hint_seq;
	if (e->list != POLICY_LIST_NONE && e->list != POLICY_LIST_PINNED && p->ops->next_use)
		p->ops->next_use(p, e);
}

void policy_hint_clear(struct policy *p, uint32_t ds)
{
	struct policy_ds *d = policy_ds_get(p, ds);

	if (!d)
		return;
	d->hint_seq = 0;
	d->hint_next = false;
	if (p->ops->hint)
		p->ops->hint(p, d);
}
