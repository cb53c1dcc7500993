/*
 * uring.h - asynchronous disk I/O for the loop: io_uring, or a thread fallback.
 *
 * Owns: the ring, its eventfd event in the loop, the queue of requests waiting
 * for submission-queue space. When io_uring cannot be set up (seccomp in a
 * container answers ENOSYS or EPERM, or cache.io: threads) the same requests
 * run as pread/pwrite/fsync on the worker pool; callers cannot tell.
 *
 * One allocation per request, owned by the caller from uring_submit until its
 * done() runs on the loop thread; done() may free it.
 */
#ifndef GRANARY_URING_H
#define GRANARY_URING_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pool.h"

enum uring_op {
	URING_READ = 1,
	URING_WRITE = 2,
	URING_FSYNC = 3,
};

struct uring_req {
	struct pool_task task; /* used by the thread fallback */
	enum uring_op op;
	int fd;
	void *buf;
	size_t len;
	off_t off;
	ssize_t res; /* bytes, or -errno */
	void (*done)(struct uring_req *r);
	void *arg;
	struct uring_req *next;
	struct uring *ring;
};

struct uring;

/*
 * @mode: 0 auto, 1 io_uring only (fail if unavailable), 2 threads only.
 * Returns NULL with *err set.
 */
struct uring *uring_create(struct event_base *base, struct pool *pool, int mode, unsigned depth,
			   int *err);
void uring_destroy(struct uring *u);

/* Queue @r; its done() runs on the loop thread with r->res set. */
void uring_submit(struct uring *u, struct uring_req *r);

/* "io_uring" or "threads" */
const char *uring_kind(const struct uring *u);
/* Requests submitted and not yet completed. */
unsigned uring_inflight(const struct uring *u);

#endif
