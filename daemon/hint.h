/*
 * hint.h - the hinted order of a dataset's coming epoch.
 *
 * Owns: struct hint (per mount): the order of paths the trainer announced,
 * and the next-use position it gives each cached object in the policy.
 * Loop thread only.
 */
#ifndef GRANARY_HINT_H
#define GRANARY_HINT_H

#include <stdbool.h>
#include <stddef.h>

#include "granaryd.h"

/*
 * Add @n paths to @m's order; @begin forgets the previous order first, @end
 * marks the order complete.
 */
void hint_add(struct granaryd *d, struct mount *m, bool begin, bool end, const char *const *paths,
	      size_t n);

/* Paths in @m's current order (0 when none). */
size_t hint_count(const struct mount *m);

void hint_free(struct mount *m);

#endif
