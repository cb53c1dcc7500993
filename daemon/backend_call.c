/*
 * backend_call.c - the one asynchronous face of every backend: describing
 * and listing, answered on the loop thread through struct backend_call.
 *
 * Owns: the pool task that runs a blocking backend's (posix) stat or list on
 * a worker and answers as the asynchronous ones (http, s3) do, so that the
 * request handlers have one path per step, as uring.c hides its thread
 * fallback.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "pool.h"
#include "proto.h"

enum blocking_op { OP_STAT, OP_LIST, OP_DESCRIBE, OP_DESCRIBE_FD };

struct blocking_call {
	struct pool_task task;
	struct backend_call *call;
	struct mount *m;
	const struct caller *who;
	int fd; /* OP_DESCRIBE_FD */
	enum blocking_op op;
	char *rel, *after;
};

static int collect(const struct backend_dirent *de, void *arg)
{
	struct backend_call *call = arg;

	if (call->n_ents == call->max_ents) {
		call->more = true;
		return 1;
	}
	call->ents[call->n_ents++] = *de;
	return 0;
}

static void blocking_work(struct pool_task *t)
{
	struct blocking_call *b = (struct blocking_call *)t;
	struct backend_call *call = b->call;

	switch (b->op) {
	case OP_LIST:
		call->err = b->m->ops->list(b->m, b->rel, b->who, b->after, collect, call,
					    call->msg, sizeof(call->msg));
		break;
	case OP_STAT:
		call->err = b->m->ops->stat(b->m, b->rel, b->who, &call->v, &call->type,
					    &call->readable, call->msg, sizeof(call->msg));
		break;
	case OP_DESCRIBE:
		call->err = b->m->ops->describe(b->m, b->rel, &call->v, &call->type, call->msg,
						sizeof(call->msg));
		break;
	case OP_DESCRIBE_FD:
		call->type = PROTO_FT_REG; /* check opened regular files alone */
		call->err =
			b->m->ops->describe_fd(b->m, b->fd, &call->v, call->msg, sizeof(call->msg));
		break;
	}
}

static void blocking_done(struct pool_task *t)
{
	struct blocking_call *b = (struct blocking_call *)t;
	struct backend_call *call = b->call;

	free(b->rel);
	free(b->after);
	free(b);
	call->done(call);
}

/* Run @op on the pool; @rel, @after (copied) and @fd as the op needs them. */
static void blocking_submit(struct mount *m, enum blocking_op op, const char *rel,
			    const struct caller *who, const char *after, int fd,
			    struct backend_call *call)
{
	struct blocking_call *b = calloc(1, sizeof(*b));

	if (b) {
		b->rel = rel ? strdup(rel) : NULL;
		b->after = after ? strdup(after) : NULL;
	}
	if (!b || (rel && !b->rel) || (after && !b->after)) {
		if (b) {
			free(b->rel);
			free(b->after);
			free(b);
		}
		call->err = -ENOMEM;
		snprintf(call->msg, sizeof(call->msg), "out of memory");
		call->done(call);
		return;
	}
	b->call = call;
	b->m = m;
	b->who = who;
	b->fd = fd;
	b->op = op;
	b->task.work = blocking_work;
	b->task.done = blocking_done;
	pool_submit(m->d->pool, &b->task);
}

void backend_stat_call(struct mount *m, const char *rel, const struct caller *who,
		       struct backend_call *call)
{
	call->err = 0;
	call->msg[0] = '\0';
	call->readable = true; /* object stores: the allow lists were checked before */
	if (m->ops->head_async)
		m->ops->head_async(m, rel, call);
	else
		blocking_submit(m, OP_STAT, rel, who, NULL, -1, call);
}

void backend_list_call(struct mount *m, const char *rel, const struct caller *who,
		       const char *after, struct backend_call *call)
{
	call->err = 0;
	call->msg[0] = '\0';
	call->n_ents = 0;
	call->more = false;
	if (m->ops->list_async)
		m->ops->list_async(m, rel, after, call);
	else
		blocking_submit(m, OP_LIST, rel, who, after, -1, call);
}

void backend_describe_call(struct mount *m, const char *rel, struct backend_call *call)
{
	call->err = 0;
	call->msg[0] = '\0';
	memset(&call->v, 0, sizeof(call->v));
	if (m->ops->head_async)
		m->ops->head_async(m, rel, call); /* an object has no rights of its own */
	else
		blocking_submit(m, OP_DESCRIBE, rel, NULL, NULL, -1, call);
}

void backend_describe_fd_call(struct mount *m, int fd, struct backend_call *call)
{
	call->err = 0;
	call->msg[0] = '\0';
	memset(&call->v, 0, sizeof(call->v));
	blocking_submit(m, OP_DESCRIBE_FD, NULL, NULL, NULL, fd, call);
}
