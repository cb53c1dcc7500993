/*
 * counters.h - the daemon-wide counters: one table for the struct, the STATUS
 * document and /metrics.
 *
 * Owns: every counter's name in `granary status --json`, its Prometheus family
 * (with a label where several counters share one family) and its help text.
 * status.c and metrics.c walk the table; adding a counter here is all it
 * takes, as config_keys.h does for settings. Loop thread only.
 */
#ifndef GRANARY_COUNTERS_H
#define GRANARY_COUNTERS_H

#include <stddef.h>
#include <stdint.h>

/*
 * X(field, Prometheus family or NULL for status only, label, label value,
 * help). Counters of one family are next to each other.
 */
#define GRANARY_COUNTERS(X)                                                                        \
	X(requests, "granary_requests_total", NULL, NULL,                                          \
	  "Requests received on the local socket.")                                                \
	X(bad_requests, "granary_bad_requests_total", NULL, NULL,                                  \
	  "Requests rejected as malformed.")                                                       \
	X(opens, "granary_opens_total", NULL, NULL, "Descriptors handed to readers.")              \
	X(hits, NULL, NULL, NULL, "Opens answered from a cached copy (by mount in /metrics).")     \
	X(misses, NULL, NULL, NULL, "Opens of objects not cached (by mount in /metrics).")         \
	X(fast_hits, "granary_fast_hits_total", NULL, NULL,                                        \
	  "Reads clients served from the shared index without asking the daemon.")                 \
	X(denied, "granary_denied_total", NULL, NULL,                                              \
	  "Requests refused because the caller may not read, or may not do, what it asked.")       \
	X(bytes_local, "granary_served_bytes_total", "source", "local",                            \
	  "Bytes of objects handed to readers, by where the copy came from.")                      \
	X(bytes_backend, "granary_served_bytes_total", "source", "backend", NULL)                  \
	X(bytes_peer, "granary_served_bytes_total", "source", "peer", NULL)                        \
	X(bytes_direct, "granary_served_bytes_total", "source", "direct", NULL)                    \
	X(fetches, "granary_fetches_total", NULL, NULL,                                            \
	  "Objects fetched from a backend into the cache.")                                        \
	X(fetch_errors, "granary_fetch_errors_total", NULL, NULL,                                  \
	  "Fetches that failed for a reason other than a missing or forbidden object.")            \
	X(refetches_changed, "granary_refetches_changed_total", NULL, NULL,                        \
	  "Cached objects fetched again because the source changed.")                              \
	X(validations, "granary_validations_total", NULL, NULL,                                    \
	  "Checks of a cached copy against its source.")                                           \
	X(evictions, "granary_evictions_total", NULL, NULL, "Objects evicted to make room.")       \
	X(not_admitted, "granary_not_admitted_total", NULL, NULL,                                  \
	  "Misses served without being kept because the policy would not make room.")              \
	X(corrupt, "granary_corrupt_total", NULL, NULL,                                            \
	  "Cache files that failed their checksum and were dropped.")                              \
	X(made_private, "granary_made_private_total", NULL, NULL,                                  \
	  "Public copies moved to the private tree because their source's rights narrowed.")       \
	X(refused_connections, "granary_refused_connections_total", NULL, NULL,                    \
	  "Connections refused at a limit (limits.connections, limits.connections_per_uid).")

struct counters {
#define GRANARY_COUNTER_FIELD(field, family, label, value, help) uint64_t field;
	GRANARY_COUNTERS(GRANARY_COUNTER_FIELD)
#undef GRANARY_COUNTER_FIELD
};

struct counter_def {
	const char *name;   /* in the STATUS document */
	const char *family; /* Prometheus family, NULL: status only */
	const char *label, *value;
	const char *help; /* NULL: the family's help was given by the one before */
	size_t off;	  /* in struct counters */
};

extern const struct counter_def counter_defs[];
extern const size_t counter_defs_n;

static inline uint64_t counter_get(const struct counters *c, const struct counter_def *def)
{
	return *(const uint64_t *)((const char *)c + def->off);
}

#endif
