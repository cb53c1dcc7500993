/*
 * policy.h - eviction and admission policies: pure C over plain structs.
 *
 * Owns: datasets and their epoch counters, per-epoch hit/miss counts, the
 * order of cached entries for eviction, admission of misses, hinted next-use
 * positions. No I/O, no clock, no allocation per access: the daemon and the
 * trace simulator (sim.c) drive it the same way.
 *
 * The caller embeds a struct policy_entry in each cached object, sets size and
 * dataset, and calls policy_insert when the object enters the cache,
 * policy_access on every read, policy_remove when it leaves for any reason
 * other than policy_victim. Space accounting (used bytes, watermarks) stays
 * with the caller; the policy only chooses.
 *
 * Not thread-safe: one thread (the daemon's loop) owns a struct policy.
 */
#ifndef GRANARY_POLICY_H
#define GRANARY_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define POLICY_NO_USE UINT64_MAX /* next_use of an entry not in the hinted order */
#define POLICY_DATASET_NONE UINT32_MAX /* policy_dataset() out of memory */

struct policy;

struct policy_entry {
	/* set by the caller before policy_insert */
	uint64_t size;
	uint32_t dataset; /* from policy_dataset() */
	bool pinned;      /* change through policy_pin() only */

	/* owned by the policy */
	uint64_t last_epoch;  /* epoch of the dataset when last read */
	uint64_t last_access; /* logical clock of the last read */
	uint64_t next_use;    /* position in the hinted order, or POLICY_NO_USE */
	uint64_t hint_seq;    /* order next_use belongs to; stale orders count as no use */
	struct policy_entry *prev, *next;
	size_t heap_idx;
	uint32_t list; /* which of the policy's lists holds it */
	bool linked;
};

struct policy_dataset_stats {
	uint64_t epoch;      /* current epoch, from 1 */
	uint64_t hits;       /* in the current epoch */
	uint64_t misses;     /* in the current epoch */
	uint64_t prev_hits;  /* in the previous epoch */
	uint64_t prev_misses;
	uint64_t total_hits, total_misses;
	uint64_t entries;    /* cached entries of the dataset */
	uint64_t bytes;
	bool hinted;         /* an order is known for the current epoch */
};

/*
 * Create a policy by name: "epoch" (the default) or "lru".
 * Returns NULL with *err = -EINVAL for an unknown name, -ENOMEM.
 */
struct policy *policy_create(const char *name, int *err);
void policy_destroy(struct policy *p);
const char *policy_name(const struct policy *p);

/*
 * Id of the dataset @name, created on first use (epoch 1, inactive); the name
 * is copied. Returns POLICY_DATASET_NONE when out of memory; every call
 * taking a dataset id ignores ids it did not hand out.
 */
uint32_t policy_dataset(struct policy *p, const char *name);
const char *policy_dataset_name(const struct policy *p, uint32_t ds);
size_t policy_dataset_count(const struct policy *p);

/* Advance @ds to its next epoch (explicit call). Returns the new epoch. */
uint64_t policy_epoch_advance(struct policy *p, uint32_t ds);
void policy_dataset_stats(const struct policy *p, uint32_t ds, struct policy_dataset_stats *out);

/*
 * Record a read of an object of @ds that is not cached (a miss). Counts the
 * miss and marks the dataset active.
 */
void policy_miss(struct policy *p, uint32_t ds);

/*
 * Record a read of the cached entry @e (a hit). May advance the dataset's epoch
 * (the entry was already read in the current epoch). Counts the hit.
 */
void policy_access(struct policy *p, struct policy_entry *e);

/*
 * May a missed object of @size bytes in @ds be kept, when @need bytes must be
 * freed first to make room? True when enough evictable bytes exist that the
 * policy ranks below the new object. With need == 0 always true.
 */
bool policy_admit(struct policy *p, uint32_t ds, uint64_t size, uint64_t need);

/*
 * @e enters the cache; it counts as read in the current epoch of its dataset.
 * The policy-owned fields must be zero (a calloc'd object) or as
 * policy_victim/policy_remove left them; an entry already in is ignored.
 */
void policy_insert(struct policy *p, struct policy_entry *e);

/*
 * @e enters the cache without being read (warmed, prefetched, or restored at
 * start-up): it counts as not yet read in the current epoch.
 */
void policy_insert_unread(struct policy *p, struct policy_entry *e);

/* @e leaves the cache (dropped, invalidated, evicted by a user). */
void policy_remove(struct policy *p, struct policy_entry *e);

/*
 * The entry to evict next, unlinked from the policy, or NULL when nothing may
 * be evicted (everything pinned, or under "epoch" only objects not yet read in
 * the current epoch of an active dataset remain). The caller frees the
 * object's space and must not call policy_remove on it.
 */
struct policy_entry *policy_victim(struct policy *p);

/* Pin or unpin @e (pinned entries are never victims). */
void policy_pin(struct policy *p, struct policy_entry *e, bool pinned);

/*
 * Hinted order. policy_hint_begin starts a new order for @ds (the coming
 * epoch); the caller then sets each cached entry's position with
 * policy_set_next_use (and sets it on entries inserted later, from its own map
 * of the order). policy_hint_clear forgets the order.
 *
 * Which epoch the order is for follows from when it comes: after the first
 * read of the current epoch, it is the next epoch's order, and until that
 * epoch begins the entries already read are evicted farthest position first
 * (entries without a position first of all). Before any read of the current
 * epoch (just after policy_epoch_advance), it is this epoch's order; their
 * next uses being past, it changes no choice. Positions set under an earlier
 * order count as no use.
 */
void policy_hint_begin(struct policy *p, uint32_t ds);
void policy_set_next_use(struct policy *p, struct policy_entry *e, uint64_t pos);
void policy_hint_clear(struct policy *p, uint32_t ds);

/*
 * A dataset is active while it was read (hit, miss or insert) within the last
 * W reads of all datasets together. W is the number of cached entries (at
 * least POLICY_IDLE_MIN) unless set here; 0 restores the automatic window.
 * Inactive datasets lose their space first.
 */
#define POLICY_IDLE_MIN 64
void policy_set_idle_window(struct policy *p, uint64_t reads);
bool policy_dataset_active(const struct policy *p, uint32_t ds);

#endif
