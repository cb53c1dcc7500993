/* recheck.c - the rights on the sources of public copies, checked again (see recheck.h). */
#include "recheck.h"

#include <stdlib.h>

#include "fetch.h"
#include "log.h"

#define TICK_NS	     NS_PER_S
#define MAX_INFLIGHT 64

struct recheck {
	struct granaryd *d;
	struct event *timer;
	struct list_node ring; /* public copies, through o->rk; the next one checked first */
	uint64_t n;
	unsigned inflight;
	int64_t behind_warned_ns;
};

void recheck_track(struct granaryd *d, struct object *o)
{
	struct recheck *rk = d->rk;
	bool want = o->state == OBJ_CACHED && !o->v.restricted &&
		    o->mount->cfg->backend == CONFIG_BACKEND_POSIX;

	if (!rk)
		return;
	if (want && !list_linked(&o->rk)) {
		list_add_tail(&rk->ring, &o->rk);
		rk->n++;
	} else if (!want && list_linked(&o->rk)) {
		list_del(&o->rk);
		rk->n--;
	}
}

void recheck_untrack(struct granaryd *d, struct object *o)
{
	if (d->rk && list_linked(&o->rk)) {
		list_del(&o->rk);
		d->rk->n--;
	}
}

void recheck_done(struct granaryd *d)
{
	if (d->rk && d->rk->inflight)
		d->rk->inflight--;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct recheck *rk = arg;
	struct granaryd *d = rk->d;
	uint64_t interval_s = d->cfg->access.recheck_ns / (uint64_t)NS_PER_S, budget;
	int64_t now = clock_now_ns();

	(void)fd;
	(void)what;
	if (list_empty(&rk->ring) || d->stopping)
		return;
	if (!interval_s)
		interval_s = 1;
	/* the whole ring once per interval, a slice each second */
	budget = (rk->n + interval_s - 1) / interval_s;
	if (budget > RECHECK_MAX_RATE) {
		if (now - rk->behind_warned_ns >= 600 * TICK_NS) {
			log_warn(
				"rights re-check cannot cover every public copy within access.recheck "
				"copies=%llu rate=%d interval_s=%llu",
				(unsigned long long)rk->n, RECHECK_MAX_RATE,
				(unsigned long long)interval_s);
			rk->behind_warned_ns = now;
		}
		budget = RECHECK_MAX_RATE;
	}
	if (budget > rk->n)
		budget = rk->n;
	while (budget-- > 0 && rk->inflight < MAX_INFLIGHT && !list_empty(&rk->ring)) {
		struct object *o = list_first(&rk->ring, struct object, rk);

		list_del(&o->rk); /* to the tail: the ring turns */
		list_add_tail(&rk->ring, &o->rk);
		if (fetch_recheck(d, o) == 0)
			rk->inflight++;
	}
}

int recheck_start(struct granaryd *d)
{
	struct recheck *rk = calloc(1, sizeof(*rk));
	struct timeval tv = clock_timeval(TICK_NS);

	if (!rk)
		return -ENOMEM;
	rk->d = d;
	list_init(&rk->ring);
	rk->timer = event_new(d->base, -1, EV_PERSIST, on_tick, rk);
	if (!rk->timer || evtimer_add(rk->timer, &tv) < 0) {
		if (rk->timer)
			event_free(rk->timer);
		free(rk);
		return -ENOMEM;
	}
	d->rk = rk;
	return 0;
}

void recheck_stop(struct granaryd *d)
{
	struct recheck *rk = d->rk;

	if (!rk)
		return;
	/* the objects are the index's: they are freed with it, ring and all */
	event_free(rk->timer);
	free(rk);
	d->rk = NULL;
}
