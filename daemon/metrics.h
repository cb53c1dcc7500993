/*
 * metrics.h - /metrics in the Prometheus text format, over libevent's evhttp.
 *
 * Owns: the HTTP listener on metrics.listen, the fetch latency histograms by
 * backend, and the rendering of every counter of struct granaryd. Loop thread.
 */
#ifndef GRANARY_METRICS_H
#define GRANARY_METRICS_H

#include <stdint.h>

#include "granaryd.h"

/* Listen on cfg->metrics.listen when set. Returns 0 or -errno with a log line. */
int metrics_start(struct granaryd *d);
void metrics_stop(struct granaryd *d);

/* A fetch from @m's backend ended after @seconds with @bytes (err 0) or -errno. */
void metrics_fetch_observed(struct granaryd *d, struct mount *m, double seconds, uint64_t bytes,
			    int err);

#endif
