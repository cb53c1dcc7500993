/*
 * qos.c - backend slots for foreground and background work, the background
 * token bucket (see qos.h).
 */
#include "qos.h"

#include <event2/event.h>

#include "granaryd.h"
#include "log.h"

#define QOS_TICK_MIN_NS 1000000LL   /* 1 ms */
#define QOS_TICK_MAX_NS 100000000LL /* 100 ms */

static void queue_push(struct qos_queue *qq, struct qos_req *q)
{
	q->next = NULL;
	q->prev = qq->tail;
	if (qq->tail)
		qq->tail->next = q;
	else
		qq->head = q;
	qq->tail = q;
	qq->len++;
	q->queued = true;
}

static void queue_unlink(struct qos_queue *qq, struct qos_req *q)
{
	if (q->prev)
		q->prev->next = q->next;
	else
		qq->head = q->next;
	if (q->next)
		q->next->prev = q->prev;
	else
		qq->tail = q->prev;
	q->prev = q->next = NULL;
	qq->len--;
	q->queued = false;
}

/* Most tokens the bucket holds: a quarter second of the rate, at least 64 KiB. */
static double bucket_size(uint64_t rate)
{
	double b = (double)rate / 4.0;

	return b < 65536.0 ? 65536.0 : b;
}

static void refill(struct granaryd *d, int64_t now)
{
	struct qos *qs = &d->qos;
	uint64_t rate = d->cfg->fetch.bg_rate;
	double cap;

	if (!rate)
		return;
	cap = bucket_size(rate);
	if (qs->refill_ns == 0) {
		qs->tokens = cap; /* first use: a full bucket */
	} else if (now > qs->refill_ns) {
		qs->tokens += (double)rate * (double)(now - qs->refill_ns) / 1e9;
		if (qs->tokens > cap)
			qs->tokens = cap;
	}
	qs->refill_ns = now;
}

static unsigned bg_share(const struct granaryd *d)
{
	const struct config *c = d->cfg;

	return c->fetch.max_parallel > c->fetch.fg_reserved
		       ? c->fetch.max_parallel - c->fetch.fg_reserved
		       : 1;
}

static bool slot_free(const struct granaryd *d)
{
	return d->qos.fg_inflight + d->qos.bg_inflight < d->cfg->fetch.max_parallel;
}

/* What a background object is expected to cost before its size is known. */
static double bg_estimate(const struct qos *qs)
{
	return qs->bg_avg > 0 ? qs->bg_avg : 65536.0;
}

static void grant(struct granaryd *d, struct qos_req *q, int64_t now)
{
	struct qos *qs = &d->qos;

	q->holding = true;
	q->charged = 0;
	q->sized = false;
	if (q->fg) {
		qs->fg_inflight++;
		qs->fg_started++;
		if (q->queued_ns && now - q->queued_ns > qs->fg_wait_max_ns)
			qs->fg_wait_max_ns = now - q->queued_ns;
	} else {
		qs->bg_inflight++;
		qs->bg_started++;
		if (d->cfg->fetch.bg_rate) {
			q->charged = bg_estimate(qs);
			qs->tokens -= q->charged;
		}
	}
}

static void dispatch(struct granaryd *d);

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct granaryd *d = arg;

	(void)fd;
	(void)what;
	dispatch(d);
	/* still throttled: dispatch re-armed it; otherwise let it go */
	if (d->qos.timer && !event_pending(d->qos.timer, EV_TIMEOUT, NULL)) {
		event_free(d->qos.timer);
		d->qos.timer = NULL;
	}
}

/* Background work waits for tokens: wake up when the debt is repaid. */
static void arm_timer(struct granaryd *d)
{
	struct qos *qs = &d->qos;
	uint64_t rate = d->cfg->fetch.bg_rate;
	int64_t ns = QOS_TICK_MIN_NS;
	struct timeval tv;

	if (rate && qs->tokens < 0)
		ns = (int64_t)(-qs->tokens / (double)rate * 1e9) + QOS_TICK_MIN_NS;
	if (ns > QOS_TICK_MAX_NS)
		ns = QOS_TICK_MAX_NS;
	if (!qs->timer) {
		qs->timer = evtimer_new(d->base, on_timer, d);
		if (!qs->timer) {
			log_err("cannot create the background rate timer");
			return;
		}
	}
	if (event_pending(qs->timer, EV_TIMEOUT, NULL))
		return;
	tv = clock_timeval(ns);
	evtimer_add(qs->timer, &tv);
}

/*
 * Start what the limits allow: foreground first, then background within its
 * share and the bucket. A start may release its slot at once (a failure) and
 * come back here: the outer call's loop picks that up.
 */
static void dispatch(struct granaryd *d)
{
	struct qos *qs = &d->qos;
	int64_t now = clock_now_ns();

	if (qs->dispatching)
		return;
	qs->dispatching = true;
	for (;;) {
		struct qos_req *q = NULL;

		if (d->stopping) {
			/* start everything: each sees the daemon stopping and fails */
			q = qs->fgq.head ? qs->fgq.head : qs->bgq.head;
			if (!q)
				break;
			queue_unlink(q->fg ? &qs->fgq : &qs->bgq, q);
		} else if (qs->fgq.head && slot_free(d)) {
			q = qs->fgq.head;
			queue_unlink(&qs->fgq, q);
		} else if (qs->bgq.head && slot_free(d) && qs->bg_inflight < bg_share(d)) {
			refill(d, now);
			if (d->cfg->fetch.bg_rate && qs->tokens <= 0) {
				qs->throttled++;
				arm_timer(d);
				break;
			}
			q = qs->bgq.head;
			queue_unlink(&qs->bgq, q);
		} else {
			break;
		}
		grant(d, q, now);
		q->start(q);
	}
	qs->dispatching = false;
}

bool qos_acquire(struct granaryd *d, struct qos_req *q, bool fg)
{
	struct qos *qs = &d->qos;
	int64_t now;

	if (q->holding)
		return true;
	if (q->queued)
		return false;
	q->fg = fg;
	q->queued_ns = 0;
	now = clock_now_ns();
	if (fg) {
		/* foreground overtakes queued background work */
		if (!qs->fgq.head && slot_free(d)) {
			grant(d, q, now);
			return true;
		}
		qs->fg_queued_total++;
		q->queued_ns = now;
		queue_push(&qs->fgq, q);
		return false;
	}
	if (!qs->fgq.head && !qs->bgq.head && slot_free(d) && qs->bg_inflight < bg_share(d)) {
		refill(d, now);
		if (!d->cfg->fetch.bg_rate || qs->tokens > 0) {
			grant(d, q, now);
			return true;
		}
		qs->throttled++;
	}
	qs->bg_queued_total++;
	q->queued_ns = now;
	queue_push(&qs->bgq, q);
	if (d->cfg->fetch.bg_rate)
		arm_timer(d);
	return false;
}

void qos_promote(struct granaryd *d, struct qos_req *q)
{
	struct qos *qs = &d->qos;

	if (q->fg || (!q->queued && !q->holding))
		return;
	qs->promoted++;
	if (q->queued) {
		queue_unlink(&qs->bgq, q);
		q->fg = true;
		q->queued_ns = clock_now_ns(); /* a reader waits from now */
		queue_push(&qs->fgq, q);
	} else {
		/* running as background: it now counts against the foreground */
		qs->bg_inflight--;
		qs->fg_inflight++;
		q->fg = true;
	}
	dispatch(d);
}

void qos_charge(struct granaryd *d, struct qos_req *q, uint64_t bytes)
{
	struct qos *qs = &d->qos;

	if (q->fg)
		return;
	qs->bg_bytes += bytes;
	qs->bg_avg = qs->bg_avg > 0 ? qs->bg_avg * 0.9 + (double)bytes * 0.1 : (double)bytes;
	if (!d->cfg->fetch.bg_rate)
		return;
	refill(d, clock_now_ns());
	qs->tokens -= (double)bytes - q->charged;
	q->charged = (double)bytes;
	q->sized = true;
}

void qos_release(struct granaryd *d, struct qos_req *q)
{
	struct qos *qs = &d->qos;

	if (q->queued) {
		queue_unlink(q->fg ? &qs->fgq : &qs->bgq, q);
		return;
	}
	if (!q->holding)
		return;
	q->holding = false;
	if (!q->sized && q->charged > 0)
		qs->tokens += q->charged; /* nothing was copied (failed, or direct) */
	q->charged = 0;
	if (q->fg)
		qs->fg_inflight--;
	else
		qs->bg_inflight--;
	dispatch(d);
}

json_t *qos_status_json(struct granaryd *d)
{
	struct qos *qs = &d->qos;

	if (d->cfg->fetch.bg_rate)
		refill(d, clock_now_ns());
	return json_pack("{sI sI sI sI sI sI sI sI sI sI sI sI sf sf}", "max_parallel",
			 (json_int_t)d->cfg->fetch.max_parallel, "fg_reserved",
			 (json_int_t)d->cfg->fetch.fg_reserved, "fg_inflight",
			 (json_int_t)qs->fg_inflight, "bg_inflight", (json_int_t)qs->bg_inflight,
			 "fg_queued", (json_int_t)qs->fgq.len, "bg_queued", (json_int_t)qs->bgq.len,
			 "fg_started", (json_int_t)qs->fg_started, "bg_started",
			 (json_int_t)qs->bg_started, "promoted", (json_int_t)qs->promoted,
			 "throttled", (json_int_t)qs->throttled, "bg_bytes",
			 (json_int_t)qs->bg_bytes, "bg_rate", (json_int_t)d->cfg->fetch.bg_rate,
			 "bg_tokens", d->cfg->fetch.bg_rate ? qs->tokens : 0.0, "fg_wait_max_ms",
			 (double)qs->fg_wait_max_ns / 1e6);
}
