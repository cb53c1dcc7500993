/*
 * uring.c - io_uring with an eventfd in the libevent loop, and the thread
 * fallback (see uring.h).
 *
 * DESIGN: submissions are made from the loop thread only. The ring's eventfd is
 * registered with io_uring_register_eventfd; when it becomes readable the loop
 * drains every completion. Requests that find the submission queue full wait in
 * a FIFO and are submitted as completions free space.
 */
#include "uring.h"

#include <errno.h>
#include <liburing.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"

struct uring {
	bool use_ring;
	struct io_uring ring;
	int efd;
	struct event *ev;
	struct pool *pool;
	unsigned inflight;
	unsigned depth;
	struct uring_req *wait_head, *wait_tail;
};

static void thread_work(struct pool_task *t)
{
	struct uring_req *r = (struct uring_req *)t;
	ssize_t n;

	switch (r->op) {
	case URING_READ:
		n = pread(r->fd, r->buf, r->len, r->off);
		break;
	case URING_WRITE:
		n = pwrite(r->fd, r->buf, r->len, r->off);
		break;
	case URING_FSYNC:
		n = fsync(r->fd);
		break;
	default:
		n = -1;
		errno = EINVAL;
	}
	r->res = n < 0 ? -errno : n;
}

static void thread_done(struct pool_task *t)
{
	struct uring_req *r = (struct uring_req *)t;

	r->ring->inflight--;
	r->done(r);
}

static bool ring_prep(struct uring *u, struct uring_req *r)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

	if (!sqe)
		return false;
	switch (r->op) {
	case URING_READ:
		io_uring_prep_read(sqe, r->fd, r->buf, (unsigned)r->len, (uint64_t)r->off);
		break;
	case URING_WRITE:
		io_uring_prep_write(sqe, r->fd, r->buf, (unsigned)r->len, (uint64_t)r->off);
		break;
	case URING_FSYNC:
		io_uring_prep_fsync(sqe, r->fd, 0);
		break;
	}
	io_uring_sqe_set_data(sqe, r);
	return true;
}

static void ring_flush_waiting(struct uring *u)
{
	bool any = false;

	while (u->wait_head && u->inflight < u->depth) {
		struct uring_req *r = u->wait_head;

		if (!ring_prep(u, r))
			break;
		u->wait_head = r->next;
		if (!u->wait_head)
			u->wait_tail = NULL;
		u->inflight++;
		any = true;
	}
	if (any) {
		int rc = io_uring_submit(&u->ring);

		if (rc < 0)
			log_errno(LOG_ERR, rc, "io_uring_submit failed");
	}
}

static void ring_on_event(evutil_socket_t fd, short what, void *arg)
{
	struct uring *u = arg;
	struct io_uring_cqe *cqe;
	uint64_t v;

	(void)what;
	if (read(fd, &v, sizeof(v)) < 0) {
		/* EAGAIN: a spurious wakeup; drain anyway */
	}
	while (io_uring_peek_cqe(&u->ring, &cqe) == 0) {
		struct uring_req *r = io_uring_cqe_get_data(cqe);

		r->res = cqe->res;
		io_uring_cqe_seen(&u->ring, cqe);
		u->inflight--;
		r->done(r);
	}
	ring_flush_waiting(u);
}

static int ring_setup(struct uring *u, struct event_base *base, unsigned depth)
{
	int rc = io_uring_queue_init(depth, &u->ring, 0);

	if (rc < 0)
		return rc;
	u->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (u->efd < 0) {
		rc = -errno;
		goto err_ring;
	}
	rc = io_uring_register_eventfd(&u->ring, u->efd);
	if (rc < 0)
		goto err_efd;
	u->ev = event_new(base, u->efd, EV_READ | EV_PERSIST, ring_on_event, u);
	if (!u->ev || event_add(u->ev, NULL) < 0) {
		rc = -ENOMEM;
		goto err_efd;
	}
	u->use_ring = true;
	return 0;

err_efd:
	close(u->efd);
err_ring:
	io_uring_queue_exit(&u->ring);
	return rc;
}

struct uring *uring_create(struct event_base *base, struct pool *pool, int mode, unsigned depth,
			   int *err)
{
	struct uring *u = calloc(1, sizeof(*u));
	int rc;

	if (!u) {
		*err = -ENOMEM;
		return NULL;
	}
	u->pool = pool;
	u->efd = -1;
	u->depth = depth ? depth : 256;
	if (mode != 2) {
		rc = ring_setup(u, base, u->depth);
		if (rc < 0) {
			if (mode == 1) {
				log_errno(LOG_ERR, rc, "io_uring_queue_init(%u) failed", u->depth);
				free(u);
				*err = rc;
				return NULL;
			}
			log_errno(LOG_WARNING, rc,
				  "io_uring unavailable, disk I/O runs on worker threads");
		}
	}
	return u;
}

void uring_destroy(struct uring *u)
{
	if (!u)
		return;
	if (u->use_ring) {
		event_free(u->ev);
		io_uring_queue_exit(&u->ring);
		close(u->efd);
	}
	free(u);
}

void uring_submit(struct uring *u, struct uring_req *r)
{
	r->ring = u;
	r->next = NULL;
	if (!u->use_ring) {
		r->task.work = thread_work;
		r->task.done = thread_done;
		u->inflight++;
		pool_submit(u->pool, &r->task);
		return;
	}
	if (u->wait_tail)
		u->wait_tail->next = r;
	else
		u->wait_head = r;
	u->wait_tail = r;
	ring_flush_waiting(u);
}

const char *uring_kind(const struct uring *u)
{
	return u->use_ring ? "io_uring" : "threads";
}

unsigned uring_inflight(const struct uring *u)
{
	return u->inflight;
}
