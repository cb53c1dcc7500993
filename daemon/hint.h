/*
 * hint.h - the hinted read order of a dataset's epoch, and the trainer's
 * position in it.
 *
 * Owns: struct hint (per mount): the order of paths the trainer announced, a
 * map from path to position in it, which epoch of the dataset the order is
 * for, and the trainer's position. The positions become the policy's next-use
 * keys of cached objects (those cached when the order comes, and those that
 * enter later, through hint_apply), and the prefetcher (prefetch.c) reads
 * ahead of the position. Loop thread only.
 *
 * DESIGN: an order can hold a million paths, so it is kept compact: the paths,
 * relative to the mount, one after the other in one arena; an array of arena
 * offsets indexed by position; an open-addressing table of positions hashed
 * by path. About 12 bytes per path besides the path itself. Which epoch the
 * order is for follows the policy's rule: sent before any read of the
 * current epoch it is this epoch's, otherwise the next one's. The trainer's
 * position counts only reads made during that epoch; once the dataset moves
 * past it, the order is stale and nothing is prefetched from it.
 */
#ifndef GRANARY_HINT_H
#define GRANARY_HINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "granaryd.h"

struct object;

enum hint_phase {
	HINT_NONE,     /* no order */
	HINT_UPCOMING, /* the order of the dataset's next epoch */
	HINT_CURRENT,  /* the order of the epoch being read */
	HINT_STALE,    /* its epoch is over */
};

/*
 * Add @n paths (normalised, under @m) to @m's order; @begin forgets the
 * previous order first, @end marks the order complete. Cached objects in the
 * order get their next use; the prefetcher restarts on a new order.
 */
void hint_add(struct granaryd *d, struct mount *m, bool begin, bool end, const char *const *paths,
	      size_t n);

/* Paths in @m's current order (0 when none). */
size_t hint_count(const struct mount *m);

/*
 * Position of @path (full and normalised) in @m's order: its first
 * occurrence. Returns false when the path is not in it or there is no order.
 */
bool hint_position(const struct mount *m, const char *path, uint64_t *pos);

/*
 * Write the full path at position @pos of @m's order into @buf. Returns 0,
 * -ERANGE past the end, -ENAMETOOLONG when @len is too short.
 */
int hint_path_at(const struct mount *m, uint64_t pos, char *buf, size_t len);

/*
 * Where @m's order stands against its dataset's epoch. For HINT_CURRENT,
 * *next (if not NULL) is the trainer's position: every position before it
 * was read or passed; 0 in the other phases.
 */
enum hint_phase hint_phase(struct granaryd *d, const struct mount *m, uint64_t *next);

/*
 * @o (of a hinted mount) just entered the policy: give it its next use in
 * the order, if the order names it.
 */
void hint_apply(struct granaryd *d, struct object *o);

/*
 * A trainer opened @path of @m (hit or miss): advance the position to just
 * past its place in the order and move the prefetch window.
 */
void hint_seen(struct granaryd *d, struct mount *m, const char *path);

/* {"paths", "complete", "phase", "epoch", "position", "prefetch_*"...} of @m. */
json_t *hint_status_json(struct granaryd *d, const struct mount *m);

/* Free @m's order and its prefetcher's state (at shutdown). */
void hint_free(struct mount *m);

#endif
