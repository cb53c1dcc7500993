/*
 * test_qos.c - backend slots (daemon/qos.c): foreground slots reserved,
 * background work held to its share, the foreground queue first, promotion of
 * a queued or running background request when a reader arrives, a start that
 * fails at once, the stop that starts everything, and the background token
 * bucket: charged, settled, refunded, and a debt that holds work back until
 * the rate repays it (driven by the libevent timer, not by sleeping).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <event2/event.h>

#include "granaryd.h"
#include "qos.h"

#define NREQ 16

struct req {
	struct qos_req q; /* first: start() is handed the qos_req */
	struct granaryd *d;
	unsigned started;
	bool fail;	  /* release the slot from start(), as a failed fetch does */
	int64_t start_ns; /* when start() ran */
};

struct fixture {
	struct config cfg;
	struct granaryd d;
	struct req r[NREQ];
	unsigned order[NREQ * 2], norder; /* requests in the order they started */
	bool in_start;			  /* start() is never called from inside start() */
};

static struct fixture *fix;

static void on_start(struct qos_req *q)
{
	struct req *r = (struct req *)q;

	assert_false(fix->in_start);
	fix->in_start = true;
	r->started++;
	r->start_ns = clock_now_ns();
	fix->order[fix->norder++] = (unsigned)(r - fix->r);
	assert_true(q->holding);
	if (r->fail)
		qos_release(r->d, q); /* the outer dispatch starts the next */
	fix->in_start = false;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	unsigned i;

	assert_non_null(f);
	config_init_defaults(&f->cfg);
	f->cfg.fetch.max_parallel = 4;
	f->cfg.fetch.fg_reserved = 1;
	f->cfg.fetch.bg_rate = 0;
	f->d.cfg = &f->cfg;
	f->d.base = event_base_new();
	assert_non_null(f->d.base);
	for (i = 0; i < NREQ; i++) {
		f->r[i].q.start = on_start;
		f->r[i].d = &f->d;
	}
	fix = f;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (f->d.qos.timer)
		event_free(f->d.qos.timer);
	event_base_free(f->d.base);
	config_free(&f->cfg);
	free(f);
	return 0;
}

static bool acquire(struct fixture *f, unsigned i, bool fg)
{
	return qos_acquire(&f->d, &f->r[i].q, fg);
}

static void release(struct fixture *f, unsigned i)
{
	qos_release(&f->d, &f->r[i].q);
}

static void test_fg_reserved_bg_limited(void **state)
{
	struct fixture *f = *state;
	struct qos *qs = &f->d.qos;
	unsigned i;

	/* 4 slots, 1 kept for foreground: 3 background at most */
	for (i = 0; i < 8; i++)
		assert_true(acquire(f, i, false) == (i < 3));
	assert_int_equal(qs->bg_inflight, 3);
	assert_int_equal(qs->bgq.len, 5);
	assert_true(acquire(f, 8, true)); /* the reserved slot */
	assert_false(acquire(f, 9, true));
	assert_false(acquire(f, 10, true));
	assert_int_equal(qs->fgq.len, 2);
	assert_true(acquire(f, 0, false)); /* already holding: keeps it */
	assert_false(acquire(f, 9, true)); /* already queued: stays */
	assert_int_equal(qs->fgq.len, 2);

	/* freed background slots go to the foreground queue first */
	release(f, 0);
	release(f, 1);
	assert_int_equal(f->norder, 2);
	assert_int_equal(f->order[0], 9);
	assert_int_equal(f->order[1], 10);
	assert_int_equal(qs->fg_inflight, 3);
	assert_int_equal(qs->bg_inflight, 1);
	/* then background, within its share */
	release(f, 8);
	release(f, 9);
	release(f, 10);
	assert_int_equal(qs->bg_inflight, 3);
	assert_int_equal(f->norder, 4);
	assert_int_equal(f->order[2], 3); /* FIFO */
	assert_int_equal(f->order[3], 4);
	/* a queued request that gives up leaves its queue */
	release(f, 6);
	assert_int_equal(qs->bgq.len, 2);
	for (i = 2; i < 8; i++)
		release(f, i);
	assert_int_equal(f->r[6].started, 0);
	for (i = 0; i < 11; i++)
		assert_true(f->r[i].started == (i >= 3 && i != 6 && i != 8));
	assert_int_equal(qs->fg_inflight + qs->bg_inflight, 0);
	assert_int_equal(qs->fgq.len + qs->bgq.len, 0);
	assert_int_equal(qs->fg_started, 3);
	assert_int_equal(qs->bg_started, 8 - 1);
	assert_int_equal(qs->fg_queued_total, 2);
	assert_int_equal(qs->bg_queued_total, 5);
	release(f, 0); /* holds nothing: harmless */
	assert_int_equal(qs->bg_inflight, 0);
}

static void test_promotion(void **state)
{
	struct fixture *f = *state;
	struct qos *qs = &f->d.qos;

	f->cfg.fetch.max_parallel = 2; /* 1 background slot, 1 reserved */
	assert_true(acquire(f, 0, false));
	assert_true(acquire(f, 1, true));
	assert_false(acquire(f, 2, false));
	assert_false(acquire(f, 3, false));
	/* a reader waits on 3: it overtakes 2, but every slot is taken */
	qos_promote(&f->d, &f->r[3].q);
	assert_true(f->r[3].q.fg);
	assert_int_equal(qs->fgq.len, 1);
	assert_int_equal(qs->bgq.len, 1);
	assert_int_equal(f->r[3].started, 0);
	release(f, 0);
	assert_int_equal(f->r[3].started, 1);
	assert_int_equal(f->r[2].started, 0);
	assert_int_equal(qs->fg_inflight, 2);

	/* a reader on running background work: counted as foreground from now on */
	release(f, 1);
	release(f, 3);
	assert_int_equal(f->r[2].started, 1);
	assert_int_equal(qs->bg_inflight, 1);
	qos_promote(&f->d, &f->r[2].q);
	assert_int_equal(qs->bg_inflight, 0);
	assert_int_equal(qs->fg_inflight, 1);
	/* the background slot is free again for the next warm */
	assert_true(acquire(f, 4, false));
	qos_promote(&f->d, &f->r[2].q); /* already foreground */
	qos_promote(&f->d, &f->r[5].q); /* holds nothing */
	assert_int_equal(qs->promoted, 2);
	release(f, 2);
	release(f, 4);
	assert_int_equal(qs->fg_inflight + qs->bg_inflight, 0);

	/* promoted while queued with a slot free: starts inside qos_promote */
	f->cfg.fetch.max_parallel = 3;
	f->cfg.fetch.fg_reserved = 2; /* a background share of 1 */
	assert_true(acquire(f, 6, false));
	assert_false(acquire(f, 7, false));
	qos_promote(&f->d, &f->r[7].q);
	assert_int_equal(f->r[7].started, 1);
	assert_int_equal(qs->promoted, 3);
}

static void test_failed_start_and_stop(void **state)
{
	struct fixture *f = *state;
	struct qos *qs = &f->d.qos;
	unsigned i;

	f->cfg.fetch.max_parallel = 1;
	f->cfg.fetch.fg_reserved = 0;
	assert_true(acquire(f, 0, false));
	for (i = 1; i <= 4; i++) {
		f->r[i].fail = true;
		assert_false(acquire(f, i, false));
	}
	/* each start gives its slot back at once: the next one starts */
	release(f, 0);
	for (i = 1; i <= 4; i++)
		assert_int_equal(f->r[i].started, 1);
	assert_int_equal(qs->bg_inflight, 0);

	/* stopping: everything queued starts, past every limit, to fail */
	assert_true(acquire(f, 5, true));
	assert_false(acquire(f, 6, false));
	assert_false(acquire(f, 7, true));
	assert_false(acquire(f, 8, false));
	f->d.stopping = true;
	release(f, 5);
	assert_int_equal(f->norder, 4 + 3);
	assert_int_equal(f->order[4], 7); /* foreground first */
	assert_int_equal(qs->fg_inflight + qs->bg_inflight, 3);
	assert_int_equal(qs->fgq.len + qs->bgq.len, 0);
}

static void test_bg_rate(void **state)
{
	struct fixture *f = *state;
	struct qos *qs = &f->d.qos;
	const double rate = 4.0 * 1024 * 1024, cap = rate / 4; /* a quarter second */
	struct timeval tv, now;
	int64_t t0, loops = 0;

	f->cfg.fetch.bg_rate = 4 * 1024 * 1024;
	/* started: charged the default estimate from a full bucket */
	assert_true(acquire(f, 0, false));
	assert_true(qs->tokens == cap - 65536);
	assert_true(f->r[0].q.charged == 65536);
	/* nothing copied (failed): refunded */
	release(f, 0);
	assert_true(qs->tokens == cap);

	/* settled at its real size: 1.5 MiB puts the bucket in debt */
	assert_true(acquire(f, 1, false));
	t0 = clock_now_ns();
	qos_charge(&f->d, &f->r[1].q, 3 * 512 * 1024);
	assert_true(qs->tokens <= cap + 65536 - 1.5 * 1024 * 1024);
	assert_true(qs->bg_bytes == 3 * 512 * 1024);
	assert_true(qs->bg_avg == 3 * 512 * 1024);
	release(f, 1); /* sized: no refund */
	assert_true(qs->tokens < 0);

	/* held back while in debt, though a slot is free; a timer will look again */
	assert_false(acquire(f, 2, false));
	assert_int_equal(qs->throttled, 1);
	assert_non_null(qs->timer);
	assert_true(event_pending(qs->timer, EV_TIMEOUT, &tv));
	event_base_gettimeofday_cached(f->d.base, &now);
	/* at most the 100 ms tick away */
	assert_true((tv.tv_sec - now.tv_sec) * 1000000 + (tv.tv_usec - now.tv_usec) <= 150000);
	/* foreground is never paced */
	assert_true(acquire(f, 3, true));
	qos_charge(&f->d, &f->r[3].q, 1 << 30);
	assert_true(qs->bg_bytes == 3 * 512 * 1024);
	release(f, 3);
	assert_int_equal(f->r[2].started, 0);

	/* the loop runs the timer until the debt is repaid */
	while (!f->r[2].started) {
		assert_true(event_base_loop(f->d.base, EVLOOP_ONCE) >= 0);
		assert_true(++loops < 100);
	}
	/* ~448 KiB of debt at 4 MiB/s at least: 109 ms */
	assert_true(f->r[2].start_ns - t0 >= 109 * NS_PER_MS);
	assert_true(qs->throttled >= 2);
	assert_null(qs->timer); /* let go once nothing waits */
	/* charged the running average this time, taken from a bucket barely out of debt */
	assert_true(f->r[2].q.charged == 3 * 512 * 1024);
	assert_true(qs->tokens < 0);
	release(f, 2);
	assert_true(qs->tokens > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fg_reserved_bg_limited, setup, teardown),
		cmocka_unit_test_setup_teardown(test_promotion, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_start_and_stop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bg_rate, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
