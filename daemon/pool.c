/*
 * pool.c - worker threads with completions posted back to the loop.
 *
 * DESIGN: one mutex guards both queues. Workers sleep on a condition variable;
 * a finished task is appended to the done queue and the eventfd is written,
 * which the loop reads as a hint to drain that queue.
 */
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"

struct pool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct pool_task *todo_head, *todo_tail;
	struct pool_task *done_head, *done_tail;
	unsigned pending;
	bool stopping;
	int efd;
	struct event *ev;
	unsigned nthreads;
	pthread_t *threads;
};

static void append(struct pool_task **head, struct pool_task **tail, struct pool_task *t)
{
	t->next = NULL;
	if (*tail)
		(*tail)->next = t;
	else
		*head = t;
	*tail = t;
}

static void *pool_worker(void *arg)
{
	struct pool *p = arg;
	uint64_t one = 1;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct pool_task *t;

		while (!p->todo_head && !p->stopping)
			pthread_cond_wait(&p->cond, &p->lock);
		t = p->todo_head;
		if (!t)
			break;
		p->todo_head = t->next;
		if (!p->todo_head)
			p->todo_tail = NULL;
		pthread_mutex_unlock(&p->lock);

		t->work(t);

		pthread_mutex_lock(&p->lock);
		append(&p->done_head, &p->done_tail, t);
		if (write(p->efd, &one, sizeof(one)) < 0) {
			/* the counter is saturated: the loop is awake anyway */
		}
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static void pool_drain(struct pool *p)
{
	struct pool_task *t;

	pthread_mutex_lock(&p->lock);
	t = p->done_head;
	p->done_head = p->done_tail = NULL;
	pthread_mutex_unlock(&p->lock);

	while (t) {
		struct pool_task *next = t->next;

		pthread_mutex_lock(&p->lock);
		p->pending--;
		pthread_mutex_unlock(&p->lock);
		t->done(t);
		t = next;
	}
}

static void pool_on_event(evutil_socket_t fd, short what, void *arg)
{
	uint64_t v;

	(void)what;
	if (read(fd, &v, sizeof(v)) < 0) {
		/* EAGAIN: another drain took it */
	}
	pool_drain(arg);
}

/* Let the workers finish what is queued, and join them. */
static void stop_workers(struct pool *p)
{
	unsigned i;

	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
}

struct pool *pool_create(struct event_base *base, unsigned nthreads, int *err)
{
	struct pool *p = calloc(1, sizeof(*p));
	unsigned i;
	int rc;

	if (!p) {
		*err = -ENOMEM;
		return NULL;
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (p->efd < 0) {
		*err = -errno;
		goto err_free;
	}
	p->ev = event_new(base, p->efd, EV_READ | EV_PERSIST, pool_on_event, p);
	if (!p->ev || event_add(p->ev, NULL) < 0) {
		*err = -ENOMEM;
		goto err_close;
	}
	p->threads = calloc(nthreads, sizeof(*p->threads));
	if (!p->threads) {
		*err = -ENOMEM;
		goto err_event;
	}
	for (i = 0; i < nthreads; i++) {
		rc = pthread_create(&p->threads[i], NULL, pool_worker, p);
		if (rc) {
			*err = -rc;
			log_errno(LOG_ERR, rc, "pthread_create failed");
			goto err_threads;
		}
		p->nthreads++;
	}
	return p;

err_threads:
	stop_workers(p);
	free(p->threads);
err_event:
	if (p->ev)
		event_free(p->ev);
err_close:
	close(p->efd);
err_free:
	free(p);
	return NULL;
}

void pool_submit(struct pool *p, struct pool_task *t)
{
	pthread_mutex_lock(&p->lock);
	append(&p->todo_head, &p->todo_tail, t);
	p->pending++;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

unsigned pool_pending(const struct pool *p)
{
	return p->pending;
}

void pool_destroy(struct pool *p)
{
	if (!p)
		return;
	stop_workers(p);
	/*
	 * Completions may submit more work (a validation that starts a fetch):
	 * with the workers gone, it runs here, until nothing is left.
	 */
	for (;;) {
		struct pool_task *t, *next;

		pool_drain(p);
		pthread_mutex_lock(&p->lock);
		t = p->todo_head;
		p->todo_head = p->todo_tail = NULL;
		pthread_mutex_unlock(&p->lock);
		if (!t)
			break;
		for (; t; t = next) {
			next = t->next;
			t->work(t);
			pthread_mutex_lock(&p->lock);
			append(&p->done_head, &p->done_tail, t);
			pthread_mutex_unlock(&p->lock);
		}
	}
	event_free(p->ev);
	close(p->efd);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p->threads);
	free(p);
}
