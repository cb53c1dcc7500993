/*
 * prefetch.h - reading ahead of a trainer in its hinted order.
 *
 * Owns: struct prefetch (per mount): the window of background fetches kept
 * in flight ahead of the trainer's position in the hinted order (hint.h).
 *
 * DESIGN: once the trainer has read from the order of the epoch being read,
 * the prefetcher fetches the paths at positions [next, next + window) that
 * are neither cached nor being fetched, window = policy.prefetch_window, next
 * = the trainer's position. An order sent ahead (for the next epoch, or
 * before the trainer starts) fetches nothing until the trainer reads from it:
 * warming is `granary warm`'s job. It moves on when the trainer's position advances
 * and when one of its fetches completes. Its fetches are background work
 * (qos.h) with no reader waiting, so the objects enter the policy unread and
 * are kept until read. It backs off when the policy would not keep what it
 * brings (a fetch answered "direct", or the cache full of objects not yet
 * read) until the trainer moves on, and stops when the order's epoch is
 * over or the daemon stops. Loop thread only.
 */
#ifndef GRANARY_PREFETCH_H
#define GRANARY_PREFETCH_H

#include <stdbool.h>
#include <stdint.h>

#include "granaryd.h"

struct prefetch_stats {
	uint64_t inflight;   /* fetches under way */
	uint64_t issued;     /* fetches started, all orders together */
	uint64_t prefetched; /* of those, objects now cached */
	uint64_t refused;    /* answered "direct": the policy would not keep them */
	uint64_t failed;     /* errors */
	uint64_t cursor;     /* next position it considers */
	bool stalled;	     /* backing off until the trainer moves */
};

/* Issue what the window allows for @m now. */
void prefetch_kick(struct granaryd *d, struct mount *m);

/* @m got a new order: start over from its first position. */
void prefetch_reset(struct mount *m);

void prefetch_stats(const struct mount *m, struct prefetch_stats *out);

/*
 * Free @m's prefetch state. Fetches still in flight keep their own memory
 * and free it when they end; they no longer count anywhere.
 */
void prefetch_free(struct mount *m);

#endif
