/* metrics.c - Prometheus exposition (see metrics.h). */
#include "metrics.h"

int metrics_start(struct granaryd *d)
{
	(void)d;
	return 0;
}

void metrics_stop(struct granaryd *d)
{
	(void)d;
}

void metrics_fetch_observed(struct granaryd *d, struct mount *m, double seconds, uint64_t bytes,
			    int err)
{
	(void)d;
	(void)m;
	(void)seconds;
	(void)bytes;
	(void)err;
}
