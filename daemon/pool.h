/*
 * pool.h - a small pool of worker threads for blocking work.
 *
 * Owns: the worker threads, the queue of tasks to run, the queue of finished
 * tasks, and the eventfd that wakes the loop for them.
 *
 * DESIGN: a task's work() runs on a worker thread and must touch only the
 * task's own memory; its done() runs later on the loop thread, where it may use
 * any daemon state. The task's memory belongs to the caller from submit until
 * done() is called; done() may free it. This is how NAS metadata calls, source
 * reads on the thread fallback, fsync and SQLite-free blocking work stay off
 * the loop.
 */
#ifndef GRANARY_POOL_H
#define GRANARY_POOL_H

#include <event2/event.h>

struct pool_task {
	void (*work)(struct pool_task *t); /* on a worker thread */
	void (*done)(struct pool_task *t); /* on the loop thread */
	struct pool_task *next;
};

struct pool;

/* Start @nthreads workers whose completions are delivered on @base. */
struct pool *pool_create(struct event_base *base, unsigned nthreads, int *err);

/* Queue @t; thread-safe. */
void pool_submit(struct pool *p, struct pool_task *t);

/* Tasks queued or running. */
unsigned pool_pending(const struct pool *p);

/*
 * Stop: finish the tasks already queued, join the workers, run every done()
 * on the caller's thread, and run there too whatever those submit, until
 * nothing is left; free the pool.
 */
void pool_destroy(struct pool *p);

#endif
