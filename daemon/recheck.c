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
	struct object *head; /* circular, through o->rk_next and o->rk_prev */
	uint64_t n;
	unsigned inflight;
	int64_t behind_warned_ns;
};

static void ring_remove(struct recheck *rk, struct object *o)
{
	if (o->rk_next == o) {
		rk->head = NULL;
	} else {
		o->rk_prev->rk_next = o->rk_next;
		o->rk_next->rk_prev = o->rk_prev;
		if (rk->head == o)
			rk->head = o->rk_next;
	}
	o->rk_next = o->rk_prev = NULL;
	rk->n--;
}

static void ring_append(struct recheck *rk, struct object *o)
{
	if (!rk->head) {
		o->rk_next = o->rk_prev = o;
		rk->head = o;
	} else {
		o->rk_prev = rk->head->rk_prev;
		o->rk_next = rk->head;
		rk->head->rk_prev->rk_next = o;
		rk->head->rk_prev = o;
	}
	rk->n++;
}

void recheck_track(struct granaryd *d, struct object *o)
{
	struct recheck *rk = d->rk;
	bool want = o->state == OBJ_CACHED && !o->v.restricted &&
		    o->mount->cfg->backend == CONFIG_BACKEND_POSIX;

	if (!rk)
		return;
	if (want && !o->rk_next)
		ring_append(rk, o);
	else if (!want && o->rk_next)
		ring_remove(rk, o);
}

void recheck_untrack(struct granaryd *d, struct object *o)
{
	if (d->rk && o->rk_next)
		ring_remove(d->rk, o);
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
	if (!rk->n || d->stopping)
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
	while (budget-- > 0 && rk->inflight < MAX_INFLIGHT && rk->head) {
		struct object *o = rk->head;

		rk->head = o->rk_next; /* o goes to the tail */
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
