/*
 * client.c - libgranary: requests and replies on one connection to granaryd.
 *
 * DESIGN. A connection is one SOCK_SEQPACKET socket shared by every thread
 * that uses the struct granary. A request registers a struct pending (its id)
 * under the connection's mutex, then sends its datagram without the lock (a
 * datagram is written whole, so concurrent senders cannot interleave). Replies
 * may come back in any order, so receiving is done by whichever waiting thread
 * finds nobody else reading (leader/follower): it drops the lock, reads one
 * datagram, retakes the lock, hands the reply (and any descriptor) to the
 * pending request with that id, and wakes everyone. A reply nobody waits for
 * is dropped, and a descriptor that comes with it is closed. When the socket
 * fails every waiter returns the error and so does every later call.
 *
 * Nothing is held across a callback: callbacks run after the reply has been
 * taken off the connection.
 */
#include "granary.h"
#include "proto.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define ERRMSG_MAX 512

struct waiter;

/* One request waiting for its reply. */
struct pending {
	uint32_t id;
	bool done;
	uint8_t *msg; /* the reply, malloc'd, once done */
	size_t len;
	int fd;	      /* descriptor received with the reply, or -1 */
	void *cookie; /* the caller's: which request this is */
	struct waiter *w;
	struct pending *next;	   /* in the connection's list of pendings */
	struct pending *done_next; /* in the waiter's queue of completions */
};

/* A thread waiting for one or more of its pendings. */
struct waiter {
	struct pending *head, *tail; /* completed, in arrival order */
};

struct granary {
	int fd;
	pthread_mutex_t lock; /* protects everything below */
	pthread_cond_t cond;
	bool reading; /* a thread is receiving */
	int dead;     /* 0, or -errno once the connection failed */
	uint32_t next_id;
	struct pending *pending;
};

/* A parsed reply: status first, then the items for the caller to walk. */
struct reply {
	uint8_t *msg;
	size_t len;
	int fd;
	int status;
	char errmsg[ERRMSG_MAX];
};

static __thread char tls_errmsg[ERRMSG_MAX];

static void set_errmsg(const char *msg)
{
	snprintf(tls_errmsg, sizeof(tls_errmsg), "%s", msg ? msg : "");
}

struct granary *granary_connect(const char *socket_path, int *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct granary *g;
	int rc;

	if (!socket_path || !*socket_path)
		socket_path = getenv("GRANARY_SOCKET");
	if (!socket_path || !*socket_path)
		socket_path = GRANARY_SOCKET_DEFAULT;
	if (strlen(socket_path) >= sizeof(sa.sun_path)) {
		rc = -ENAMETOOLONG;
		goto err;
	}
	memcpy(sa.sun_path, socket_path, strlen(socket_path) + 1);

	g = calloc(1, sizeof(*g));
	if (!g) {
		rc = -ENOMEM;
		goto err;
	}
	g->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (g->fd < 0) {
		rc = -errno;
		goto err_free;
	}
	do {
		rc = connect(g->fd, (struct sockaddr *)&sa, sizeof(sa));
	} while (rc < 0 && errno == EINTR);
	if (rc < 0) {
		rc = -errno;
		goto err_close;
	}
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->cond, NULL);
	g->next_id = 1;
	return g;

err_close:
	close(g->fd);
err_free:
	free(g);
err:
	if (err)
		*err = rc;
	return NULL;
}

void granary_close(struct granary *g)
{
	if (!g)
		return;
	close(g->fd);
	pthread_cond_destroy(&g->cond);
	pthread_mutex_destroy(&g->lock);
	free(g);
}

/* Close every descriptor in a control message block. */
static void close_cmsg_fds(struct msghdr *mh, int keep)
{
	struct cmsghdr *c;

	for (c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		size_t i, n;
		int fd;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < n; i++) {
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (fd != keep)
				close(fd);
		}
	}
}

/*
 * Receive one datagram into @buf (PROTO_MSG_MAX bytes). *@fd gets the first
 * descriptor that came with it (others are closed), or -1. Returns the length
 * or -errno; -ECONNRESET when the daemon closed the connection.
 */
static ssize_t recv_one(int sock, uint8_t *buf, int *fd)
{
	union {
		char buf[CMSG_SPACE(4 * sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = buf, .iov_len = PROTO_MSG_MAX};
	struct msghdr mh = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = ctl.buf,
		.msg_controllen = sizeof(ctl.buf),
	};
	struct cmsghdr *c;
	ssize_t n;

	*fd = -1;
	do {
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
		    c->cmsg_len >= CMSG_LEN(sizeof(int))) {
			memcpy(fd, CMSG_DATA(c), sizeof(int));
			break;
		}
	}
	close_cmsg_fds(&mh, *fd);
	if (n == 0) {
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
		return -ECONNRESET;
	}
	if (mh.msg_flags & MSG_TRUNC) {
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
		return -EMSGSIZE;
	}
	return n;
}

/*
 * Give a received reply to its pending request. Called with the lock held.
 * Returns 0, or -errno when the datagram is not a reply at all: then the
 * connection cannot be trusted and is given up.
 */
/*
 * proto_check(), also accepting the reply of type PROTO_REPLY alone that the
 * daemon sends to a request it could not parse (its type unknown).
 */
static int reply_check(const void *msg, size_t len, struct proto_hdr *h)
{
	int rc = proto_check(msg, len, h);

	if (rc == -EBADMSG && len >= PROTO_HDR_SIZE && h->magic == PROTO_MAGIC &&
	    h->version == PROTO_VERSION && h->type == PROTO_REPLY &&
	    (size_t)h->len == len - PROTO_HDR_SIZE)
		return 0;
	return rc;
}

static int dispatch(struct granary *g, uint8_t *buf, size_t len, int fd)
{
	struct proto_hdr h;
	struct pending *p;
	int rc;

	rc = reply_check(buf, len, &h);
	if (rc == 0 && !(h.type & PROTO_REPLY))
		rc = -EBADMSG;
	if (rc < 0) {
		if (fd >= 0)
			close(fd);
		return rc;
	}
	for (p = g->pending; p; p = p->next) {
		if (p->id == h.id && !p->done)
			break;
	}
	if (!p) {
		/* Nobody waits for it (a request given up): drop it. */
		if (fd >= 0)
			close(fd);
		return 0;
	}
	p->msg = malloc(len); /* NULL: the request sees -ENOMEM */
	if (p->msg) {
		memcpy(p->msg, buf, len);
		p->len = len;
		p->fd = fd;
	} else if (fd >= 0) {
		close(fd);
	}
	p->done = true;
	p->done_next = NULL;
	if (p->w->tail)
		p->w->tail->done_next = p;
	else
		p->w->head = p;
	p->w->tail = p;
	return 0;
}

/* Register @p for @w under the lock and give it an id. */
static void pending_add(struct granary *g, struct waiter *w, struct pending *p, void *cookie)
{
	memset(p, 0, sizeof(*p));
	p->fd = -1;
	p->w = w;
	p->cookie = cookie;
	pthread_mutex_lock(&g->lock);
	p->id = g->next_id++;
	if (p->id == 0)
		p->id = g->next_id++;
	p->next = g->pending;
	g->pending = p;
	pthread_mutex_unlock(&g->lock);
}

/* Unregister @p; whatever it received is left for the caller to free. */
static void pending_remove(struct granary *g, struct pending *p)
{
	struct pending **pp;

	pthread_mutex_lock(&g->lock);
	for (pp = &g->pending; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	}
	pthread_mutex_unlock(&g->lock);
}

static int send_msg(struct granary *g, const struct proto_buf *b)
{
	ssize_t n;

	do {
		n = send(g->fd, b->data, b->len, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if ((size_t)n != b->len)
		return -EMSGSIZE;
	return 0;
}

/*
 * Wait until one of @w's requests completes and return it (unregistered), or
 * NULL with *@err set when the connection failed. @scratch is a PROTO_MSG_MAX
 * buffer, used when this thread becomes the reader.
 */
static struct pending *wait_any(struct granary *g, struct waiter *w, uint8_t **scratch, int *err)
{
	struct pending *p = NULL;

	pthread_mutex_lock(&g->lock);
	while (!w->head) {
		if (g->dead) {
			*err = g->dead;
			goto out;
		}
		if (g->reading) {
			pthread_cond_wait(&g->cond, &g->lock);
			continue;
		}
		if (!*scratch) {
			pthread_mutex_unlock(&g->lock);
			*scratch = malloc(PROTO_MSG_MAX);
			pthread_mutex_lock(&g->lock);
			if (!*scratch) {
				*err = -ENOMEM;
				goto out;
			}
			continue;
		}
		g->reading = true;
		pthread_mutex_unlock(&g->lock);
		{
			int fd;
			ssize_t n = recv_one(g->fd, *scratch, &fd);

			pthread_mutex_lock(&g->lock);
			g->reading = false;
			if (n < 0)
				g->dead = (int)n;
			else
				g->dead = dispatch(g, *scratch, (size_t)n, fd);
		}
		pthread_cond_broadcast(&g->cond);
	}
	p = w->head;
	w->head = p->done_next;
	if (!w->head)
		w->tail = NULL;
out:
	pthread_mutex_unlock(&g->lock);
	if (p)
		pending_remove(g, p);
	return p;
}

/*
 * Check the reply of @p against @type, take its status and error message.
 * Fills @r (which then owns the message and the descriptor). Returns the
 * status, or -EPROTO / -EBADMSG / -ENOMEM for a bad or missing reply.
 */
static int reply_take(struct pending *p, uint16_t type, struct reply *r)
{
	struct proto_iter it;
	struct proto_item item;
	struct proto_hdr h;
	int32_t status;
	int rc;

	memset(r, 0, sizeof(*r));
	r->fd = p->fd;
	r->msg = p->msg;
	r->len = p->len;
	p->msg = NULL;
	p->fd = -1;
	if (!r->msg)
		return r->status = -ENOMEM;
	rc = reply_check(r->msg, r->len, &h);
	if (rc < 0)
		return r->status = rc;
	if (h.type != (PROTO_REPLY | type) && h.type != PROTO_REPLY)
		return r->status = -EPROTO;
	proto_iter_init(&it, r->msg, r->len);
	rc = proto_next(&it, &item);
	if (rc <= 0 || item.tag != PROTO_T_STATUS || proto_item_i32(&item, &status) < 0)
		return r->status = -EBADMSG;
	if (status > 0)
		status = -status;
	r->status = status;
	if (proto_find(r->msg, r->len, PROTO_T_ERRMSG, &item) == 1) {
		size_t n = item.len < sizeof(r->errmsg) - 1 ? item.len : sizeof(r->errmsg) - 1;

		memcpy(r->errmsg, item.val, n);
		r->errmsg[n] = '\0';
		/* a NUL inside would cut the text short, which is harmless */
	}
	return status;
}

static void reply_fini(struct reply *r)
{
	free(r->msg);
	r->msg = NULL;
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
}

/*
 * Send the request in @b (its id is set here) and wait for its reply, parsed
 * into @r. Returns the reply's status or -errno; on any failure the thread's
 * error message is set. @r must be released with reply_fini() whatever the
 * result.
 */
static int call(struct granary *g, struct proto_buf *b, struct reply *r)
{
	struct waiter w = {0};
	struct pending p, *done;
	uint8_t *scratch = NULL;
	struct proto_hdr h;
	int rc;

	memset(r, 0, sizeof(*r));
	r->fd = -1;
	memcpy(&h, b->data, sizeof(h));
	pthread_mutex_lock(&g->lock);
	rc = g->dead;
	pthread_mutex_unlock(&g->lock);
	if (rc < 0)
		goto fail;

	pending_add(g, &w, &p, NULL);
	h.id = p.id;
	memcpy(b->data, &h, sizeof(h));
	rc = send_msg(g, b);
	if (rc < 0) {
		pending_remove(g, &p);
		goto fail;
	}
	done = wait_any(g, &w, &scratch, &rc);
	free(scratch);
	if (!done) {
		pending_remove(g, &p);
		goto fail;
	}
	rc = reply_take(done, h.type, r);
	if (rc < 0)
		set_errmsg(r->errmsg);
	return rc;

fail:
	set_errmsg("");
	r->status = rc;
	return rc;
}

/* A request buffer: too large for small thread stacks. */
static struct proto_buf *req_new(uint16_t type)
{
	struct proto_buf *b = malloc(sizeof(*b));

	if (b)
		proto_begin(b, type, 0);
	return b;
}

/* A request of @type with one PATH item (skipped when @path is NULL). */
static int req_path(struct proto_buf **out, uint16_t type, const char *path)
{
	struct proto_buf *b;

	if (path && (path[0] != '/' || strlen(path) > PROTO_PATH_MAX)) {
		set_errmsg("");
		return path[0] != '/' ? -EINVAL : -ENAMETOOLONG;
	}
	b = req_new(type);
	if (!b)
		return -ENOMEM;
	if (path && proto_put_str(b, PROTO_T_PATH, path) < 0) {
		free(b);
		return -ENAMETOOLONG;
	}
	*out = b;
	return 0;
}

/* Fill @st from the items of a reply. */
static void parse_stat(const struct reply *r, struct granary_stat *st)
{
	struct proto_iter it;
	struct proto_item item;
	uint32_t v32;

	memset(st, 0, sizeof(*st));
	proto_iter_init(&it, r->msg, r->len);
	while (proto_next(&it, &item) > 0) {
		switch (item.tag) {
		case PROTO_T_SIZE:
			proto_item_u64(&item, &st->size);
			break;
		case PROTO_T_MTIME_NS:
			proto_item_i64(&item, &st->mtime_ns);
			break;
		case PROTO_T_MODE:
			proto_item_u32(&item, &st->mode);
			break;
		case PROTO_T_TYPE:
			proto_item_u32(&item, &st->type);
			break;
		case PROTO_T_SOURCE:
			proto_item_u32(&item, &st->source);
			break;
		case PROTO_T_CACHED:
			if (proto_item_u32(&item, &v32) == 0)
				st->cached = v32 ? 1 : 0;
			break;
		case PROTO_T_INO:
			proto_item_u64(&item, &st->ino);
			break;
		}
	}
}

/* The first item of @tag as a u64 (0 when absent). */
static uint64_t reply_u64(const struct reply *r, uint16_t tag)
{
	struct proto_item item;
	uint64_t v = 0;

	if (proto_find(r->msg, r->len, tag, &item) == 1)
		proto_item_u64(&item, &v);
	return v;
}

int granary_open(struct granary *g, const char *path, unsigned flags, struct granary_stat *st)
{
	struct proto_buf *b;
	struct reply r;
	int rc;

	rc = req_path(&b, PROTO_OPEN, path);
	if (rc < 0)
		return rc;
	if (flags && proto_put_u32(b, PROTO_T_FLAGS, flags) < 0)
		rc = -ENAMETOOLONG;
	if (rc == 0)
		rc = call(g, b, &r);
	free(b);
	if (rc < 0)
		goto out;
	if (r.fd < 0) {
		rc = -EPROTO;
		goto out;
	}
	if (st)
		parse_stat(&r, st);
	rc = r.fd;
	r.fd = -1;
out:
	reply_fini(&r);
	return rc;
}

int granary_stat(struct granary *g, const char *path, struct granary_stat *st)
{
	struct proto_buf *b;
	struct reply r;
	int rc;

	rc = req_path(&b, PROTO_STAT, path);
	if (rc < 0)
		return rc;
	rc = call(g, b, &r);
	free(b);
	if (rc == 0 && st)
		parse_stat(&r, st);
	reply_fini(&r);
	return rc;
}

int granary_warm_one(struct granary *g, const char *path, uint64_t *size, int *source)
{
	struct granary_stat st;
	struct proto_buf *b;
	struct reply r;
	int rc;

	rc = req_path(&b, PROTO_WARM, path);
	if (rc < 0)
		return rc;
	rc = call(g, b, &r);
	free(b);
	if (rc == 0) {
		parse_stat(&r, &st);
		if (size)
			*size = st.size;
		if (source)
			*source = (int)st.source;
	}
	reply_fini(&r);
	return rc;
}

/* Report one file of a warm; returns the callback's verdict. */
static int warm_report(granary_progress_fn cb, void *arg, const char *path, uint64_t size,
		       int source, int error, const char *errmsg)
{
	if (error < 0)
		set_errmsg(errmsg);
	if (!cb)
		return 0;
	return cb(path, size, source, error, errmsg ? errmsg : "", arg);
}

int granary_warm(struct granary *g, const char *const *paths, size_t n, unsigned jobs,
		 granary_progress_fn cb, void *arg)
{
	struct waiter w = {0};
	struct pending *slots, *free_list = NULL, *p;
	uint8_t *scratch = NULL;
	struct proto_buf *b;
	size_t next = 0, inflight = 0, i;
	int failed = 0, fatal = 0, rc;
	bool stop = false;

	if (jobs == 0)
		jobs = 16;
	if (jobs > 1024)
		jobs = 1024;
	b = malloc(sizeof(*b));
	slots = calloc(jobs, sizeof(*slots));
	if (!b || !slots) {
		free(b);
		free(slots);
		return -ENOMEM;
	}
	for (i = 0; i < jobs; i++) {
		slots[i].next = free_list;
		free_list = &slots[i];
	}
	pthread_mutex_lock(&g->lock);
	fatal = g->dead;
	pthread_mutex_unlock(&g->lock);

	while (!fatal && (next < n || inflight)) {
		while (!stop && !fatal && free_list && next < n) {
			const char *path = paths[next];
			struct proto_hdr h;

			p = free_list;
			free_list = p->next;
			rc = 0;
			if (!path || path[0] != '/')
				rc = -EINVAL;
			else if (strlen(path) > PROTO_PATH_MAX)
				rc = -ENAMETOOLONG;
			if (rc == 0) {
				proto_begin(b, PROTO_WARM, 0);
				if (proto_put_str(b, PROTO_T_PATH, path) < 0)
					rc = -ENAMETOOLONG;
			}
			if (rc < 0) {
				failed++;
				p->next = free_list;
				free_list = p;
				if (warm_report(cb, arg, path ? path : "", 0, 0, rc, ""))
					stop = true;
				next++;
				continue;
			}
			pending_add(g, &w, p, (void *)(uintptr_t)next);
			memcpy(&h, b->data, sizeof(h));
			h.id = p->id;
			memcpy(b->data, &h, sizeof(h));
			rc = send_msg(g, b);
			if (rc < 0) {
				pending_remove(g, p);
				p->next = free_list;
				free_list = p;
				fatal = rc;
				break;
			}
			inflight++;
			next++;
		}
		if (!inflight)
			break;
		p = wait_any(g, &w, &scratch, &rc);
		if (!p) {
			fatal = rc;
			break;
		}
		inflight--;
		{
			size_t idx = (size_t)(uintptr_t)p->cookie;
			struct granary_stat st;
			struct reply r;

			rc = reply_take(p, PROTO_WARM, &r);
			if (rc == 0)
				parse_stat(&r, &st);
			else
				failed++;
			if (warm_report(cb, arg, paths[idx], rc == 0 ? st.size : 0,
					rc == 0 ? (int)st.source : 0, rc, r.errmsg))
				stop = true;
			reply_fini(&r);
		}
		p->next = free_list;
		free_list = p;
	}

	if (fatal) {
		/* Report what is still in flight, then what was never sent. */
		for (i = 0; i < jobs; i++) {
			p = &slots[i];
			if (!p->w)
				continue;
			pthread_mutex_lock(&g->lock);
			{
				struct pending *q;

				for (q = g->pending; q && q != p; q = q->next)
					;
				if (!q) {
					pthread_mutex_unlock(&g->lock);
					continue;
				}
			}
			pthread_mutex_unlock(&g->lock);
			pending_remove(g, p);
			free(p->msg);
			if (p->fd >= 0)
				close(p->fd);
			warm_report(cb, arg, paths[(size_t)(uintptr_t)p->cookie], 0, 0, fatal, "");
		}
		for (; next < n; next++)
			warm_report(cb, arg, paths[next] ? paths[next] : "", 0, 0, fatal, "");
	}
	free(scratch);
	free(slots);
	free(b);
	if (fatal)
		return fatal;
	if (stop && next < n)
		return -ECANCELED;
	return failed;
}

/*
 * LIST or LS of @path: call @cb per entry, following cookies until the
 * listing ends.
 */
static int list_common(struct granary *g, uint16_t type, const char *path, granary_entry_fn cb,
		       void *arg)
{
	char *cookie = NULL, *name = NULL;
	struct proto_buf *b = NULL;
	int rc;

	name = malloc(PROTO_PATH_MAX + 1);
	cookie = malloc(PROTO_PATH_MAX + 1);
	if (!name || !cookie) {
		rc = -ENOMEM;
		goto out;
	}
	cookie[0] = '\0';
	for (;;) {
		struct proto_iter it;
		struct proto_item item;
		struct granary_entry e = {0};
		bool have = false, more = false;
		struct reply r;

		free(b);
		rc = req_path(&b, type, path);
		if (rc < 0) {
			b = NULL;
			goto out;
		}
		if (cookie[0] && proto_put_str(b, PROTO_T_COOKIE, cookie) < 0) {
			rc = -ENAMETOOLONG;
			goto out;
		}
		rc = call(g, b, &r);
		if (rc < 0) {
			reply_fini(&r);
			goto out;
		}
		proto_iter_init(&it, r.msg, r.len);
		while (rc == 0 && proto_next(&it, &item) > 0) {
			switch (item.tag) {
			case PROTO_T_NAME:
				if (have)
					rc = cb(&e, arg);
				memset(&e, 0, sizeof(e));
				if (rc == 0 && proto_item_str(&item, name, PROTO_PATH_MAX + 1) < 0)
					rc = -EBADMSG;
				e.name = name;
				have = true;
				break;
			case PROTO_T_TYPE:
				proto_item_u32(&item, &e.type);
				break;
			case PROTO_T_SIZE:
				proto_item_u64(&item, &e.size);
				break;
			case PROTO_T_STATE:
				proto_item_u32(&item, &e.state);
				break;
			case PROTO_T_COOKIE:
				if (proto_item_str(&item, cookie, PROTO_PATH_MAX + 1) < 0)
					rc = -EBADMSG;
				else
					more = cookie[0] != '\0';
				break;
			}
		}
		if (rc == 0 && have)
			rc = cb(&e, arg);
		reply_fini(&r);
		if (rc != 0 || !more)
			break;
	}
out:
	free(b);
	free(name);
	free(cookie);
	return rc;
}

int granary_list(struct granary *g, const char *dir, granary_entry_fn cb, void *arg)
{
	return list_common(g, PROTO_LIST, dir, cb, arg);
}

int granary_ls(struct granary *g, const char *path, granary_entry_fn cb, void *arg)
{
	return list_common(g, PROTO_LS, path, cb, arg);
}

/*
 * granary_walk() lists directories in parallel (a listing of an object-store
 * prefix is a round trip to the backend; one after the other they add up) and
 * reports files in the order a sequential walk would: each directory's files
 * as listed, then each subdirectory in turn.
 */
#define WALK_JOBS 8

struct walk_file {
	char *path;
	uint64_t size;
};

struct walk_node {
	char *path;
	int depth;
	bool done;
	int rc;
	char errmsg[ERRMSG_MAX];
	struct walk_file *files;
	size_t n_files, cap_files;
	struct walk_node **kids;
	size_t n_kids, cap_kids;
	struct walk_node *qnext; /* listing queue */
};

struct walk {
	struct granary *g;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct walk_node *qhead, *qtail;
	bool stop;
};

static int walk_join(const char *dir, const char *name, char *out)
{
	size_t dl = strlen(dir), nl = strlen(name);

	if (strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, "..") || !nl)
		return -EBADMSG; /* a listing entry is one name */
	if (dl == 1)
		dl = 0; /* the root */
	if (dl + 1 + nl > PROTO_PATH_MAX)
		return -ENAMETOOLONG;
	memcpy(out, dir, dl);
	out[dl] = '/';
	memcpy(out + dl + 1, name, nl + 1);
	return 0;
}

static struct walk_node *walk_node_new(const char *path, int depth)
{
	struct walk_node *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->path = strdup(path);
	if (!n->path) {
		free(n);
		return NULL;
	}
	n->depth = depth;
	return n;
}

static void walk_node_free(struct walk_node *n)
{
	if (!n)
		return;
	for (size_t i = 0; i < n->n_files; i++)
		free(n->files[i].path);
	free(n->files);
	for (size_t i = 0; i < n->n_kids; i++)
		walk_node_free(n->kids[i]);
	free(n->kids);
	free(n->path);
	free(n);
}

static int grow(void **v, size_t *cap, size_t n, size_t elem)
{
	size_t c;
	void *nv;

	if (n < *cap)
		return 0;
	c = *cap ? *cap * 2 : 16;
	nv = realloc(*v, c * elem);
	if (!nv)
		return -ENOMEM;
	*v = nv;
	*cap = c;
	return 0;
}

/* One entry of a directory being listed, kept in its node. */
static int walk_entry(const struct granary_entry *e, void *arg)
{
	struct walk_node *n = arg;
	char path[PROTO_PATH_MAX + 1];
	int rc;

	rc = walk_join(n->path, e->name, path);
	if (rc < 0)
		return rc;
	if (e->type == GRANARY_FT_DIR) {
		struct walk_node *k;

		if (n->depth + 1 > PROTO_PATH_MAX / 2)
			return -ELOOP;
		if (grow((void **)&n->kids, &n->cap_kids, n->n_kids, sizeof(*n->kids)) < 0)
			return -ENOMEM;
		k = walk_node_new(path, n->depth + 1);
		if (!k)
			return -ENOMEM;
		n->kids[n->n_kids++] = k;
		return 0;
	}
	if (e->type != GRANARY_FT_REG)
		return 0;
	if (grow((void **)&n->files, &n->cap_files, n->n_files, sizeof(*n->files)) < 0)
		return -ENOMEM;
	n->files[n->n_files].path = strdup(path);
	if (!n->files[n->n_files].path)
		return -ENOMEM;
	n->files[n->n_files++].size = e->size;
	return 0;
}

static void walk_enqueue(struct walk *w, struct walk_node *n)
{
	n->qnext = NULL;
	if (w->qtail)
		w->qtail->qnext = n;
	else
		w->qhead = n;
	w->qtail = n;
}

/* List one node; its subdirectories join the queue. Called without the lock. */
static void walk_list_node(struct walk *w, struct walk_node *n)
{
	int rc = granary_list(w->g, n->path, walk_entry, n);

	if (rc < 0)
		snprintf(n->errmsg, sizeof(n->errmsg), "%s", tls_errmsg);
	pthread_mutex_lock(&w->lock);
	n->rc = rc;
	n->done = true;
	if (rc == 0)
		for (size_t i = 0; i < n->n_kids; i++)
			walk_enqueue(w, n->kids[i]);
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

static void *walk_worker(void *arg)
{
	struct walk *w = arg;
	struct walk_node *n;

	for (;;) {
		pthread_mutex_lock(&w->lock);
		while (!w->stop && !w->qhead)
			pthread_cond_wait(&w->cond, &w->lock);
		if (w->stop) {
			pthread_mutex_unlock(&w->lock);
			return NULL;
		}
		n = w->qhead;
		w->qhead = n->qnext;
		if (!w->qhead)
			w->qtail = NULL;
		pthread_mutex_unlock(&w->lock);
		walk_list_node(w, n);
	}
}

/*
 * Report @n's files, then its subdirectories' in turn, each as soon as its
 * listing is in. The caller's thread lists too, when the node it waits for is
 * still queued, so a walk without worker threads still finishes.
 */
static int walk_emit(struct walk *w, struct walk_node *n, granary_file_fn cb, void *arg)
{
	int rc;

	pthread_mutex_lock(&w->lock);
	while (!n->done) {
		struct walk_node *q = w->qhead, *prev = NULL;

		while (q && q != n) {
			prev = q;
			q = q->qnext;
		}
		if (q) { /* still queued: list it here */
			if (prev)
				prev->qnext = q->qnext;
			else
				w->qhead = q->qnext;
			if (w->qtail == q)
				w->qtail = prev;
			pthread_mutex_unlock(&w->lock);
			walk_list_node(w, n);
			pthread_mutex_lock(&w->lock);
			continue;
		}
		pthread_cond_wait(&w->cond, &w->lock);
	}
	pthread_mutex_unlock(&w->lock);
	if (n->rc < 0) {
		set_errmsg(n->errmsg);
		return n->rc;
	}
	for (size_t i = 0; i < n->n_files; i++) {
		rc = cb(n->files[i].path, n->files[i].size, arg);
		if (rc != 0)
			return rc;
	}
	for (size_t i = 0; i < n->n_kids; i++) {
		rc = walk_emit(w, n->kids[i], cb, arg);
		if (rc != 0)
			return rc; /* parts may still be listed: freed after the join */
		/* all of it reported, none of it queued: no longer needed */
		walk_node_free(n->kids[i]);
		n->kids[i] = NULL;
	}
	return 0;
}

/* Walk the directory @dir with up to WALK_JOBS listings in flight. */
static int walk_dir(struct granary *g, const char *dir, granary_file_fn cb, void *arg)
{
	struct walk w = {.g = g};
	pthread_t th[WALK_JOBS];
	struct walk_node *root;
	int nth = 0, rc;

	root = walk_node_new(dir, 0);
	if (!root)
		return -ENOMEM;
	pthread_mutex_init(&w.lock, NULL);
	pthread_cond_init(&w.cond, NULL);
	walk_enqueue(&w, root);
	for (int i = 0; i < WALK_JOBS; i++) {
		if (pthread_create(&th[nth], NULL, walk_worker, &w) != 0)
			break; /* fewer helpers; the caller's thread lists as well */
		nth++;
	}
	rc = walk_emit(&w, root, cb, arg);
	pthread_mutex_lock(&w.lock);
	w.stop = true;
	pthread_cond_broadcast(&w.cond);
	pthread_mutex_unlock(&w.lock);
	for (int i = 0; i < nth; i++)
		pthread_join(th[i], NULL);
	walk_node_free(root);
	pthread_cond_destroy(&w.cond);
	pthread_mutex_destroy(&w.lock);
	return rc;
}

int granary_walk(struct granary *g, const char *path, granary_file_fn cb, void *arg)
{
	char why[ERRMSG_MAX];
	struct granary_stat st;
	int rc, lrc;

	rc = granary_stat(g, path, &st);
	memcpy(why, tls_errmsg, sizeof(why));
	if (rc == 0 && st.type == GRANARY_FT_REG)
		return cb(path, st.size, arg);
	if (rc == 0 && st.type != GRANARY_FT_DIR && st.type != 0)
		return -EINVAL; /* neither a file nor a directory */
	/* A directory, or a prefix that only listing knows (object stores). */
	lrc = walk_dir(g, path, cb, arg);
	if (lrc == 0 || rc == 0)
		return lrc;
	/* Nothing to list either: the stat's answer explains it best. */
	if (lrc == -ENOENT || lrc == -ENOTDIR) {
		set_errmsg(why);
		return rc;
	}
	return lrc;
}

/* A request with PATH (optional) and FLAGS (when non-zero) answering COUNT. */
static int count_request(struct granary *g, uint16_t type, const char *path, uint32_t flags,
			 uint64_t *count, uint64_t *count2)
{
	struct proto_buf *b;
	struct reply r;
	int rc;

	rc = req_path(&b, type, path);
	if (rc < 0)
		return rc;
	if (flags && proto_put_u32(b, PROTO_T_FLAGS, flags) < 0) {
		free(b);
		return -EMSGSIZE;
	}
	rc = call(g, b, &r);
	free(b);
	if (rc == 0) {
		if (count)
			*count = reply_u64(&r, PROTO_T_COUNT);
		if (count2)
			*count2 = reply_u64(&r, PROTO_T_COUNT2);
	}
	reply_fini(&r);
	return rc;
}

int granary_evict(struct granary *g, const char *path, uint64_t *count)
{
	if (!path)
		return -EINVAL;
	return count_request(g, PROTO_EVICT, path, 0, count, NULL);
}

int granary_drop(struct granary *g, const char *path, uint64_t *count)
{
	if (!path)
		return -EINVAL;
	return count_request(g, PROTO_DROP, path, 0, count, NULL);
}

int granary_pin(struct granary *g, const char *path, int unpin, uint64_t *count)
{
	if (!path)
		return -EINVAL;
	return count_request(g, PROTO_PIN, path, unpin ? PROTO_F_UNPIN : 0, count, NULL);
}

int granary_verify(struct granary *g, const char *path, uint64_t *checked, uint64_t *bad)
{
	return count_request(g, PROTO_VERIFY, path, 0, checked, bad);
}

int granary_epoch_name(struct granary *g, const char *dataset, const char *path, uint64_t *epoch,
		       char *name, size_t namesz)
{
	struct proto_item item;
	struct proto_buf *b;
	struct reply r;
	int rc;

	rc = req_path(&b, PROTO_EPOCH, NULL);
	if (rc < 0)
		return rc;
	if (dataset && proto_put_str(b, PROTO_T_DATASET, dataset) < 0)
		rc = -ENAMETOOLONG;
	if (rc == 0 && path) {
		if (path[0] != '/')
			rc = -EINVAL;
		else if (proto_put_str(b, PROTO_T_PATH, path) < 0)
			rc = -ENAMETOOLONG;
	}
	if (rc < 0) {
		free(b);
		return rc;
	}
	rc = call(g, b, &r);
	free(b);
	if (rc == 0) {
		if (epoch)
			*epoch = reply_u64(&r, PROTO_T_EPOCH);
		if (name && namesz) {
			name[0] = '\0';
			if (proto_find(r.msg, r.len, PROTO_T_DATASET, &item) == 1 &&
			    proto_item_str(&item, name, namesz) < 0)
				name[0] = '\0';
		}
	}
	reply_fini(&r);
	return rc;
}

int granary_epoch(struct granary *g, const char *dataset, const char *path, uint64_t *epoch)
{
	return granary_epoch_name(g, dataset, path, epoch, NULL, 0);
}

/* What finding the mount of a path carries through granary_mounts(). */
struct mount_match {
	const char *path;
	char *best; /* PROTO_PATH_MAX + 1 */
	size_t best_len;
};

static int mount_match_cb(const char *mount, uint32_t backend, uint32_t flags, void *arg)
{
	struct mount_match *mm = arg;
	size_t len = strlen(mount);

	(void)backend;
	(void)flags;
	if (proto_path_under(mm->path, mount) && (!mm->best[0] || len > mm->best_len)) {
		memcpy(mm->best, mount, len + 1);
		mm->best_len = len;
	}
	return 0;
}

long granary_hint(struct granary *g, const char *dataset, const char *const *paths, size_t n)
{
	struct proto_buf *b;
	char *mount = NULL;
	uint64_t total = 0;
	size_t i = 0;
	bool first = true;
	int rc = 0;

	for (size_t k = 0; k < n; k++) {
		if (!paths[k] || paths[k][0] != '/')
			return -EINVAL;
		if (strlen(paths[k]) > PROTO_PATH_MAX)
			return -ENAMETOOLONG;
	}
	if (!dataset && n > 0) {
		/*
		 * A hint's paths are the order, not its scope: name the dataset by
		 * the mount holding the first path (the daemon takes a mount's
		 * path as its dataset's name).
		 */
		struct mount_match mm = {.path = paths[0]};

		mount = mm.best = calloc(1, PROTO_PATH_MAX + 1);
		if (!mount)
			return -ENOMEM;
		rc = granary_mounts(g, mount_match_cb, &mm);
		if (rc < 0) {
			free(mount);
			return rc;
		}
		if (mount[0])
			dataset = mount;
	}
	b = malloc(sizeof(*b));
	if (!b) {
		free(mount);
		return -ENOMEM;
	}
	do {
		uint32_t flags = first ? PROTO_F_BEGIN : 0;
		size_t flags_at;
		struct reply r;

		proto_begin(b, PROTO_HINT, 0);
		if (dataset && proto_put_str(b, PROTO_T_DATASET, dataset) < 0) {
			rc = -ENAMETOOLONG;
			break;
		}
		if (proto_put_u32(b, PROTO_T_FLAGS, 0) < 0) {
			rc = -EMSGSIZE;
			break;
		}
		flags_at = b->len - sizeof(uint32_t);
		while (i < n && proto_put_str(b, PROTO_T_PATH, paths[i]) == 0)
			i++;
		if (i < n && flags_at + sizeof(uint32_t) == b->len) {
			rc = -EMSGSIZE; /* one path does not fit in a message */
			break;
		}
		if (i == n)
			flags |= PROTO_F_END;
		memcpy(b->data + flags_at, &flags, sizeof(flags));
		rc = call(g, b, &r);
		if (rc == 0)
			total += reply_u64(&r, PROTO_T_COUNT);
		reply_fini(&r);
		first = false;
	} while (rc == 0 && i < n);
	free(b);
	free(mount);
	if (rc < 0)
		return rc;
	return (long)total;
}

int granary_status_json(struct granary *g, char **json)
{
	struct proto_item item;
	struct proto_buf *b;
	struct reply r;
	int rc;

	*json = NULL;
	rc = req_path(&b, PROTO_STATUS, NULL);
	if (rc < 0)
		return rc;
	rc = call(g, b, &r);
	free(b);
	if (rc == 0) {
		if (proto_find(r.msg, r.len, PROTO_T_JSON, &item) != 1) {
			rc = -EBADMSG;
		} else {
			*json = malloc(item.len + 1);
			if (!*json) {
				rc = -ENOMEM;
			} else {
				memcpy(*json, item.val, item.len);
				(*json)[item.len] = '\0';
			}
		}
	}
	reply_fini(&r);
	return rc;
}

int granary_mounts(struct granary *g, granary_mount_fn cb, void *arg)
{
	struct proto_iter it;
	struct proto_item item;
	struct proto_buf *b;
	struct reply r;
	char *path;
	uint32_t backend = 0, flags = 0;
	bool have = false;
	int rc;

	path = malloc(PROTO_PATH_MAX + 1);
	if (!path)
		return -ENOMEM;
	rc = req_path(&b, PROTO_HELLO, NULL);
	if (rc < 0)
		goto out;
	rc = call(g, b, &r);
	free(b);
	if (rc < 0)
		goto out_reply;
	proto_iter_init(&it, r.msg, r.len);
	while (rc == 0 && proto_next(&it, &item) > 0) {
		switch (item.tag) {
		case PROTO_T_MOUNT:
			if (have)
				rc = cb(path, backend, flags, arg);
			backend = flags = 0;
			if (rc == 0 && proto_item_str(&item, path, PROTO_PATH_MAX + 1) < 0)
				rc = -EBADMSG;
			have = true;
			break;
		case PROTO_T_BACKEND:
			proto_item_u32(&item, &backend);
			break;
		case PROTO_T_FLAGS:
			proto_item_u32(&item, &flags);
			break;
		}
	}
	if (rc == 0 && have)
		rc = cb(path, backend, flags, arg);
out_reply:
	reply_fini(&r);
out:
	free(path);
	return rc;
}

const char *granary_last_error(const struct granary *g)
{
	(void)g;
	return tls_errmsg;
}

const char *granary_strerror(int err)
{
	const char *s;

	if (err < 0)
		err = -err;
	if (err == 0)
		return "Success";
	s = strerrordesc_np(err);
	return s ? s : "Unknown error";
}

void granary_free(void *p)
{
	free(p);
}

const char *granary_version(void)
{
	return GRANARY_VERSION;
}
