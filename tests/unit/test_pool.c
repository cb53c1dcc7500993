/*
 * test_pool.c - the worker pool (daemon/pool.c): work() runs on a worker
 * thread and done() on the loop thread, every task completes exactly once,
 * pool_destroy() finishes what is queued, and work submitted by a done() that
 * runs inside pool_destroy() is run too (the shutdown defect fixed in 70e0a5f:
 * before it, such work was lost).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include <event2/event.h>

#include "pool.h"

struct run {
	struct pool *p;
	pthread_t loop; /* the thread that owns the event_base */
	unsigned submitted, works, dones;
	unsigned work_on_loop;	  /* work() calls on the loop thread */
	unsigned done_off_loop;	  /* done() calls elsewhere */
	unsigned more;		  /* children each done() submits, down the generations */
	pthread_mutex_t lock;	  /* works is counted by the workers */
	unsigned char seen[4096]; /* per task: bit 0 work ran, bit 1 done ran, bit 2 twice */
};

struct task {
	struct pool_task t; /* first: the pool hands it back */
	struct run *r;
	unsigned n;	 /* index in run.seen */
	unsigned depth;	 /* generation: 0 for those the test submits */
	pthread_t where; /* the thread work() ran on */
};

static void task_work(struct pool_task *pt)
{
	struct task *t = (struct task *)pt;
	struct run *r = t->r;

	t->where = pthread_self();
	pthread_mutex_lock(&r->lock);
	r->works++;
	if (r->seen[t->n] & 1)
		r->seen[t->n] |= 4;
	r->seen[t->n] |= 1;
	pthread_mutex_unlock(&r->lock);
}

static void submit(struct run *r, unsigned depth);

static void task_done(struct pool_task *pt)
{
	struct task *t = (struct task *)pt;
	struct run *r = t->r;

	r->dones++;
	if (!pthread_equal(pthread_self(), r->loop))
		r->done_off_loop++;
	if (pthread_equal(t->where, r->loop))
		r->work_on_loop++;
	if (r->seen[t->n] & 2)
		r->seen[t->n] |= 4;
	r->seen[t->n] |= 2;
	if (t->depth < r->more)
		submit(r, t->depth + 1); /* a validation that starts a fetch */
	free(t);			 /* done() may free its task */
}

static void submit(struct run *r, unsigned depth)
{
	struct task *t = calloc(1, sizeof(*t));

	assert_non_null(t);
	assert_true(r->submitted < sizeof(r->seen));
	t->t.work = task_work;
	t->t.done = task_done;
	t->r = r;
	t->n = r->submitted++;
	t->depth = depth;
	pool_submit(r->p, &t->t);
}

/* Every task submitted ran work() and done() exactly once. */
static void check_all_once(struct run *r)
{
	unsigned i;

	assert_int_equal(r->works, r->submitted);
	assert_int_equal(r->dones, r->submitted);
	for (i = 0; i < r->submitted; i++)
		assert_int_equal(r->seen[i], 3);
}

static struct run *run_new(struct event_base *base, unsigned nthreads)
{
	struct run *r = calloc(1, sizeof(*r));
	int err = 0;

	assert_non_null(r);
	pthread_mutex_init(&r->lock, NULL);
	r->loop = pthread_self();
	r->p = pool_create(base, nthreads, &err);
	assert_non_null(r->p);
	assert_int_equal(err, 0);
	return r;
}

static void run_free(struct run *r)
{
	pthread_mutex_destroy(&r->lock);
	free(r);
}

static void test_threads(void **state)
{
	struct event_base *base = event_base_new();
	struct run *r;
	unsigned i;

	(void)state;
	assert_non_null(base);
	r = run_new(base, 4);
	for (i = 0; i < 64; i++)
		submit(r, 0);
	assert_int_equal(pool_pending(r->p), 64);
	/* nothing completes before the loop runs */
	assert_int_equal(r->dones, 0);
	while (r->dones < 64)
		assert_true(event_base_loop(base, EVLOOP_ONCE) >= 0);
	check_all_once(r);
	assert_int_equal(r->work_on_loop, 0);
	assert_int_equal(r->done_off_loop, 0);
	assert_int_equal(pool_pending(r->p), 0);
	pool_destroy(r->p);
	run_free(r);
	event_base_free(base);
}

static void test_many_tasks_once(void **state)
{
	struct event_base *base = event_base_new();
	struct run *r;
	unsigned i;

	(void)state;
	assert_non_null(base);
	r = run_new(base, 8);
	r->more = 1; /* each done() submits one more, from the loop thread */
	for (i = 0; i < 2000; i++)
		submit(r, 0);
	while (r->dones < 4000)
		assert_true(event_base_loop(base, EVLOOP_ONCE) >= 0);
	assert_int_equal(r->submitted, 4000);
	check_all_once(r);
	assert_int_equal(r->work_on_loop, 0);
	assert_int_equal(r->done_off_loop, 0);
	assert_int_equal(pool_pending(r->p), 0);
	/* nothing left over for the loop */
	assert_int_equal(event_base_loop(base, EVLOOP_NONBLOCK), 0);
	assert_int_equal(r->dones, 4000);
	pool_destroy(r->p);
	run_free(r);
	event_base_free(base);
}

/* Tasks still queued when pool_destroy() starts are run, and their done() too. */
static void test_destroy_runs_queued(void **state)
{
	struct event_base *base = event_base_new();
	struct run *r;
	unsigned i;

	(void)state;
	assert_non_null(base);
	r = run_new(base, 2);
	for (i = 0; i < 500; i++)
		submit(r, 0);
	pool_destroy(r->p); /* the loop never ran */
	check_all_once(r);
	assert_int_equal(r->done_off_loop, 0);
	run_free(r);
	event_base_free(base);
}

/*
 * Regression (70e0a5f): a done() run by pool_destroy() that submits work. The
 * workers are gone by then; before the fix the new task was left in the queue,
 * never run, its done() never called (and its memory lost).
 */
static void test_destroy_runs_work_submitted_by_done(void **state)
{
	struct event_base *base = event_base_new();
	struct run *r;
	unsigned i;

	(void)state;
	assert_non_null(base);
	r = run_new(base, 3);
	r->more = 3; /* each done() submits a child, three generations deep */
	for (i = 0; i < 100; i++)
		submit(r, 0);
	pool_destroy(r->p);
	assert_int_equal(r->submitted, 400);
	check_all_once(r);
	/* the 300 children were submitted after the workers left: run by the caller */
	assert_int_equal(r->work_on_loop, 300);
	assert_int_equal(r->done_off_loop, 0);
	run_free(r);
	event_base_free(base);
}

/* The same with no worker at all: everything queued runs in pool_destroy(). */
static void test_destroy_without_workers(void **state)
{
	struct event_base *base = event_base_new();
	struct run *r;
	unsigned i;

	(void)state;
	assert_non_null(base);
	r = run_new(base, 0);
	r->more = 2;
	for (i = 0; i < 10; i++)
		submit(r, 0);
	assert_int_equal(event_base_loop(base, EVLOOP_NONBLOCK), 0);
	assert_int_equal(r->works, 0);
	pool_destroy(r->p);
	assert_int_equal(r->submitted, 30);
	check_all_once(r);
	/* run there, on the caller's thread */
	assert_int_equal(r->work_on_loop, 30);
	assert_int_equal(r->done_off_loop, 0);
	run_free(r);
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_many_tasks_once),
		cmocka_unit_test(test_destroy_runs_queued),
		cmocka_unit_test(test_destroy_runs_work_submitted_by_done),
		cmocka_unit_test(test_destroy_without_workers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
