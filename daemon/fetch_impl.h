/*
 * fetch_impl.h - what fetch.c and fetch_check.c share, private to them.
 *
 * fetch.c owns fetches (single flight, admission, copy, commit) and the
 * catalog rows of objects; fetch_check.c owns the checks of cached copies
 * (validation, rights, the first read's checksum) and answering hits.
 */
#ifndef GRANARY_FETCH_IMPL_H
#define GRANARY_FETCH_IMPL_H

#include "fetch.h"

/* Answer @w with the cached @o (checked first when restored at start-up). */
void fetch_answer_hit(struct granaryd *d, struct object *o, struct fetch_waiter *w);

/* Validate the cached copy of @path against its source, then answer @w. */
void fetch_validate(struct granaryd *d, struct mount *m, const char *path, struct fetch_waiter *w);

/* Write @o's catalog row (added, or changed in place). */
void fetch_catalog_put(struct granaryd *d, const struct object *o);

#endif
