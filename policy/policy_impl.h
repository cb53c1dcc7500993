/*
 * policy_impl.h - private to policy/: the common state of a struct policy and
 * the operations table each eviction policy (lru.c, epoch.c) fills in.
 *
 * DESIGN: policy.c owns datasets (names, epochs, counters, when each was last
 * read), the logical read clock and the per-dataset entry and byte totals. A
 * policy owns the order of entries: it links an unpinned entry into its own
 * lists when the common layer says the entry entered or moved, and picks the
 * victim. Lists are circular with a sentinel, so an entry is unlinked without
 * knowing which list holds it; that is what lets the epoch policy retag a
 * whole list by splicing it on an epoch advance instead of walking it.
 */
#ifndef GRANARY_POLICY_IMPL_H
#define GRANARY_POLICY_IMPL_H

#include "policy.h"

/* Values of policy_entry.list. */
enum {
	POLICY_LIST_NONE = 0, /* not in the policy (never inserted, removed, evicted) */
	POLICY_LIST_PINNED,   /* in the policy, on no list: never a victim */
	POLICY_LIST_LRU,      /* lru.c: the one list */
	POLICY_LIST_STALE,    /* epoch.c: not yet read in the current epoch */
	POLICY_LIST_FRESH,    /* epoch.c: read in the current epoch, next use unknown */
	POLICY_LIST_RANKED,   /* epoch.c: read in the current epoch, in the next-use heap */
};

struct policy_ds {
	char *name;
	uint32_t id;
	uint64_t epoch;
	uint64_t hits, misses;
	uint64_t prev_hits, prev_misses;
	uint64_t total_hits, total_misses;
	uint64_t entries, bytes; /* every cached entry, pinned or not */
	uint64_t last_read;	 /* policy clock at the last read or insert */
	bool ever_read;

	/* hinted order: see policy_hint_begin() */
	uint64_t hint_seq;   /* 0: no order; entries whose hint_seq differs have no next use */
	uint64_t hint_epoch; /* epoch in which policy_hint_begin was called */
	bool hint_next;	     /* the order is for the epoch after hint_epoch */

	/* datasets ordered by last read, least recent first */
	struct policy_ds *lr_prev, *lr_next;

	void *priv; /* the policy's per-dataset state */
};

struct policy_ops {
	const char *name;
	int (*init)(struct policy *p);
	void (*fini)(struct policy *p);
	int (*dataset_init)(struct policy *p, struct policy_ds *d);
	void (*dataset_fini)(struct policy *p, struct policy_ds *d);

	/*
	 * Entry hooks. The common layer has already updated the entry's fields
	 * (last_epoch, last_access, pinned) for insert and access; remove and
	 * access are called while the entry is still linked.
	 */
	void (*insert)(struct policy *p, struct policy_entry *e);
	void (*access)(struct policy *p, struct policy_entry *e, uint64_t old_epoch);
	void (*remove)(struct policy *p, struct policy_entry *e);
	struct policy_entry *(*victim)(struct policy *p);
	bool (*admit)(struct policy *p, struct policy_ds *d, uint64_t size, uint64_t need);
	void (*pin)(struct policy *p, struct policy_entry *e, bool pinned);

	/* dataset hooks, after the common layer updated the dataset */
	void (*epoch_advance)(struct policy *p, struct policy_ds *d);
	void (*hint)(struct policy *p, struct policy_ds *d);
	void (*next_use)(struct policy *p, struct policy_entry *e);
};

struct policy {
	const struct policy_ops *ops;
	struct policy_ds **ds; /* by id; pointers stay put when the array grows */
	size_t nds, cap;
	struct policy_ds lr_head; /* sentinel of the least-recently-read ring */
	uint64_t clock;		  /* counts reads (hits and misses) */
	uint64_t entries;	  /* cached entries, all datasets */
	uint64_t idle_window;	  /* 0: automatic, see policy_dataset_active() */
	uint64_t next_hint_seq;
	void *priv;
};

extern const struct policy_ops policy_lru_ops;
extern const struct policy_ops policy_epoch_ops;

static inline struct policy_ds *policy_ds_of(const struct policy *p, const struct policy_entry *e)
{
	return e->dataset < p->nds ? p->ds[e->dataset] : NULL;
}

/* Is the dataset being read? (Common rule, documented in policy.h.) */
bool policy_ds_active(const struct policy *p, const struct policy_ds *d);

/* The next use of @e under its dataset's current order, or POLICY_NO_USE. */
static inline uint64_t policy_entry_next_use(const struct policy_ds *d,
					     const struct policy_entry *e)
{
	if (d->hint_seq == 0 || e->hint_seq != d->hint_seq)
		return POLICY_NO_USE;
	return e->next_use;
}

/* Circular intrusive lists with a sentinel entry. */
static inline void plist_init(struct policy_entry *head)
{
	head->prev = head;
	head->next = head;
}

static inline bool plist_empty(const struct policy_entry *head)
{
	return head->next == head;
}

static inline void plist_add_tail(struct policy_entry *head, struct policy_entry *e)
{
	e->prev = head->prev;
	e->next = head;
	head->prev->next = e;
	head->prev = e;
}

static inline void plist_del(struct policy_entry *e)
{
	e->prev->next = e->next;
	e->next->prev = e->prev;
	e->prev = NULL;
	e->next = NULL;
}

/* Move every entry of @from to the tail of @to, keeping their order; O(1). */
static inline void plist_splice_tail(struct policy_entry *to, struct policy_entry *from)
{
	if (plist_empty(from))
		return;
	from->next->prev = to->prev;
	to->prev->next = from->next;
	from->prev->next = to;
	to->prev = from->prev;
	plist_init(from);
}

#endif
