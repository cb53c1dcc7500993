/*
 * server.c - the local socket protocol (see server.h and docs/protocol.md).
 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <xxhash.h>

#include "backend.h"
#include "catalog.h"
#include "fastidx.h"
#include "fetch.h"
#include "hint.h"
#include "log.h"
#include "peer.h"
#include "policy.h"
#include "pool.h"
#include "prefetch.h"
#include "proto.h"
#include "uring.h"

#define MAX_GROUPS    64
#define READ_BUDGET   64 /* requests read per wakeup, for fairness */
#define LIST_PAGE_MAX 1024

struct outmsg {
	struct outmsg *next;
	int fds[2];
	size_t len;
	uint8_t data[];
};

struct conn {
	struct granaryd *d;
	struct conn *prev, *next;
	int fd;
	struct event *ev;
	bool writing;
	bool closed;
	int refs;
	struct ucred cred;
	gid_t groups[MAX_GROUPS];
	int ngroups;
	struct caller who; /* the same, for checks as the caller */
	struct outmsg *out_head, *out_tail;
};

struct server {
	struct granaryd *d;
	int fd;
	struct event *ev;
	struct conn *conns;
	unsigned nconns;
	char *path;
	struct proto_buf out; /* replies are built here on the loop thread */
	uint8_t in[PROTO_MSG_MAX + 1];
};

/* A request that waits for a fetch or a worker. */
struct req {
	struct fetch_waiter w; /* first: the fetch hands it back */
	struct conn *c;
	uint32_t id;
	uint16_t type;
	uint32_t flags;
	bool retried;
	struct mount *m;
	char path[PROTO_PATH_MAX + 1];
};

static struct req *req_of(struct fetch_waiter *w)
{
	return (struct req *)w;
}

/* ---- connections and replies ---- */

static void close_fds(const int fds[2])
{
	if (fds[0] >= 0)
		close(fds[0]);
	if (fds[1] >= 0)
		close(fds[1]);
}

static void conn_put(struct conn *c)
{
	struct outmsg *o, *next;

	if (--c->refs > 0)
		return;
	for (o = c->out_head; o; o = next) {
		next = o->next;
		close_fds(o->fds);
		free(o);
	}
	free(c);
}

static void conn_close(struct conn *c)
{
	struct server *s = c->d->srv;

	if (c->closed)
		return;
	c->closed = true;
	event_free(c->ev);
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nconns--;
	conn_put(c);
}

static int send_one(struct conn *c, const void *data, size_t len, const int fds[2])
{
	struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	int nfds = (fds[0] >= 0) + (fds[0] >= 0 && fds[1] >= 0);
	ssize_t n;

	if (nfds) {
		struct cmsghdr *cm;

		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(cm), fds, nfds * sizeof(int));
	}
	n = sendmsg(c->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
	return n < 0 ? -errno : 0;
}

static void conn_on_event(evutil_socket_t fd, short what, void *arg);

static void conn_want_write(struct conn *c, bool on)
{
	if (c->writing == on)
		return;
	c->writing = on;
	event_del(c->ev);
	event_assign(c->ev, c->d->base, c->fd, EV_READ | EV_PERSIST | (on ? EV_WRITE : 0),
		     conn_on_event, c);
	event_add(c->ev, NULL);
}

/*
 * Send @len bytes with up to two descriptors attached (-1: none); they are
 * closed afterwards, sent or not.
 */
static void conn_send2(struct conn *c, const void *data, size_t len, int fd0, int fd1)
{
	const int fds[2] = {fd0, fd0 >= 0 ? fd1 : -1};
	struct outmsg *o;
	int rc;

	if (fd0 < 0 && fd1 >= 0)
		close(fd1);
	if (c->closed) {
		close_fds(fds);
		return;
	}
	if (!c->out_head) {
		rc = send_one(c, data, len, fds);
		if (rc == 0) {
			close_fds(fds);
			return;
		}
		if (rc != -EAGAIN && rc != -ENOBUFS) {
			close_fds(fds);
			log_debug("client gone pid=%d", (int)c->cred.pid);
			conn_close(c);
			return;
		}
	}
	o = malloc(sizeof(*o) + len);
	if (!o) {
		close_fds(fds);
		log_err("out of memory queueing a reply, closing the connection pid=%d",
			(int)c->cred.pid);
		conn_close(c);
		return;
	}
	o->next = NULL;
	o->fds[0] = fds[0];
	o->fds[1] = fds[1];
	o->len = len;
	memcpy(o->data, data, len);
	if (c->out_tail)
		c->out_tail->next = o;
	else
		c->out_head = o;
	c->out_tail = o;
	conn_want_write(c, true);
}

static void conn_send(struct conn *c, const void *data, size_t len, int fd)
{
	conn_send2(c, data, len, fd, -1);
}

static void conn_flush(struct conn *c)
{
	while (c->out_head) {
		struct outmsg *o = c->out_head;
		int rc = send_one(c, o->data, o->len, o->fds);

		if (rc == -EAGAIN || rc == -ENOBUFS)
			return;
		if (rc < 0) {
			conn_close(c);
			return;
		}
		c->out_head = o->next;
		if (!c->out_head)
			c->out_tail = NULL;
		close_fds(o->fds);
		free(o);
	}
	conn_want_write(c, false);
}

static struct proto_buf *reply_begin(struct conn *c, uint16_t type, uint32_t id, int status)
{
	struct proto_buf *b = &c->d->srv->out;

	proto_begin(b, (uint16_t)(PROTO_REPLY | type), id);
	proto_put_i32(b, PROTO_T_STATUS, status);
	return b;
}

static void reply_send(struct conn *c, struct proto_buf *b, int fd)
{
	conn_send(c, b->data, b->len, fd);
}

static void reply_error(struct conn *c, uint16_t type, uint32_t id, int err, const char *msg)
{
	struct proto_buf *b = reply_begin(c, type, id, err);

	if (msg && msg[0])
		proto_put_str(b, PROTO_T_ERRMSG, msg);
	reply_send(c, b, -1);
}

static void reply_errorf(struct conn *c, uint16_t type, uint32_t id, int err, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static void reply_errorf(struct conn *c, uint16_t type, uint32_t id, int err, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	reply_error(c, type, id, err, msg);
}

/* ---- request parsing ---- */

struct parsed {
	struct proto_hdr h;
	const void *msg;
	size_t len;
	char path[PROTO_PATH_MAX + 1];
	bool has_path;
	uint32_t flags;
	char name[PROTO_PATH_MAX + 1]; /* DATASET or COOKIE */
	bool has_name;
};

/*
 * Read the common items. Returns 0 or -errno with @why filled. PATH is
 * normalised here: relative paths and ".." are refused.
 */
static int parse_common(struct parsed *p, uint16_t name_tag, char *why, size_t whysz)
{
	struct proto_iter it;
	struct proto_item item;
	int rc;

	proto_iter_init(&it, p->msg, p->len);
	while ((rc = proto_next(&it, &item)) > 0) {
		if (item.tag == PROTO_T_PATH && !p->has_path) {
			if (item.len > PROTO_PATH_MAX) {
				snprintf(why, whysz, "path longer than %d bytes", PROTO_PATH_MAX);
				return -ENAMETOOLONG;
			}
			rc = proto_path_normalize((const char *)item.val, item.len, p->path,
						  sizeof(p->path));
			if (rc == -EINVAL) {
				if (item.len == 0 || item.val[0] != '/')
					snprintf(why, whysz, "path must be absolute");
				else if (memchr(item.val, '\0', item.len))
					snprintf(why, whysz, "path contains a NUL byte");
				else
					snprintf(why, whysz, "path must not contain '..'");
				return rc;
			}
			if (rc < 0) {
				snprintf(why, whysz, "path or one of its names is too long");
				return rc;
			}
			p->has_path = true;
		} else if (item.tag == PROTO_T_FLAGS) {
			if (proto_item_u32(&item, &p->flags) < 0) {
				snprintf(why, whysz, "FLAGS item of %u bytes, expected 4",
					 item.len);
				return -EBADMSG;
			}
		} else if (item.tag == name_tag && name_tag && !p->has_name) {
			rc = proto_item_str(&item, p->name, sizeof(p->name));
			if (rc < 0) {
				snprintf(why, whysz, "bad string item");
				return rc;
			}
			p->has_name = true;
		}
	}
	if (rc < 0) {
		snprintf(why, whysz, "truncated item in request body");
		return rc;
	}
	return 0;
}

static struct mount *need_mount(struct conn *c, const struct parsed *p)
{
	struct mount *m;

	if (!p->has_path) {
		reply_error(c, p->h.type, p->h.id, -EINVAL, "request needs a PATH");
		return NULL;
	}
	m = granaryd_mount_find(c->d, p->path);
	if (!m)
		reply_errorf(c, p->h.type, p->h.id, -EXDEV, "%s is not under any granary mount",
			     p->path);
	return m;
}

/* ---- access control ---- */

static bool in_groups(const struct conn *c, gid_t g)
{
	int i;

	if (c->cred.gid == g)
		return true;
	for (i = 0; i < c->ngroups; i++)
		if (c->groups[i] == g)
			return true;
	return false;
}

/*
 * May the caller read the object? On a NAS mount: as the caller could open
 * the original (its mode bits); on object stores: the mount's allow lists.
 */
static bool may_read(const struct conn *c, const struct mount *m, const struct validator *v)
{
	const struct config_mount *cm = m->cfg;
	size_t i;

	if (c->cred.uid == 0)
		return true;
	if (cm->backend != CONFIG_BACKEND_POSIX) {
		if (!cm->n_allow_uids && !cm->n_allow_gids)
			return true;
		for (i = 0; i < cm->n_allow_uids; i++)
			if (cm->allow_uids[i] == c->cred.uid)
				return true;
		for (i = 0; i < cm->n_allow_gids; i++)
			if (in_groups(c, cm->allow_gids[i]))
				return true;
		return false;
	}
	if (v->uid == c->cred.uid)
		return v->mode & S_IRUSR;
	if (in_groups(c, v->gid))
		return v->mode & S_IRGRP;
	return v->mode & S_IROTH;
}

/* ---- OPEN and WARM ---- */

static void put_stat(struct proto_buf *b, const struct validator *v)
{
	proto_put_u64(b, PROTO_T_SIZE, v->size);
	proto_put_i64(b, PROTO_T_MTIME_NS, v->mtime_ns);
	proto_put_u32(b, PROTO_T_MODE, v->mode);
	proto_put_u64(b, PROTO_T_INO, v->ino);
}

static void req_free(struct req *r)
{
	conn_put(r->c);
	free(r);
}

static void open_answered(struct fetch_waiter *w, struct object *o, int direct_fd, int err,
			  const char *msg, enum proto_source src);

static void open_answered(struct fetch_waiter *w, struct object *o, int direct_fd, int err,
			  const char *msg, enum proto_source src)
{
	struct req *r = req_of(w);
	struct conn *c = r->c;
	struct granaryd *d = c->d;
	struct validator v;
	struct proto_buf *b;
	int fd;

	if (err) {
		reply_error(c, r->type, r->id, err, msg);
		req_free(r);
		return;
	}
	if (direct_fd >= 0) {
		struct stat sb;

		if (fstat(direct_fd, &sb) < 0) {
			close(direct_fd);
			reply_error(c, r->type, r->id, -errno, "fstat of the source failed");
			req_free(r);
			return;
		}
		memset(&v, 0, sizeof(v));
		v.size = (uint64_t)sb.st_size;
		v.mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec;
		v.ino = sb.st_ino;
		v.mode = sb.st_mode;
		v.uid = sb.st_uid;
		v.gid = sb.st_gid;
		fd = direct_fd;
	} else if (o) {
		v = o->v;
		fd = -1;
	} else {
		/* warm of an object the policy would not keep */
		b = reply_begin(c, r->type, r->id, 0);
		proto_put_u64(b, PROTO_T_SIZE, w->size);
		proto_put_u32(b, PROTO_T_SOURCE, PROTO_SRC_DIRECT);
		reply_send(c, b, -1);
		req_free(r);
		return;
	}
	if (!may_read(c, r->m, &v)) {
		d->c.denied++;
		if (fd >= 0)
			close(fd);
		reply_errorf(c, r->type, r->id, -EACCES, "uid %u may not read %s",
			     (unsigned)c->cred.uid, r->path);
		req_free(r);
		return;
	}
	if (r->type == PROTO_WARM) {
		if (fd >= 0)
			close(fd);
		b = reply_begin(c, r->type, r->id, 0);
		proto_put_u64(b, PROTO_T_SIZE, v.size);
		proto_put_u32(b, PROTO_T_SOURCE, src);
		reply_send(c, b, -1);
		req_free(r);
		return;
	}
	if (fd < 0) {
		fd = fetch_open_cached(d, o);
		if (fd < 0) {
			if (!r->retried && !c->closed) {
				/* the cache file was damaged: fetch it again */
				r->retried = true;
				fetch_get(d, r->m, r->path, &r->w);
				return;
			}
			reply_errorf(c, r->type, r->id, -EIO, "cache file unusable: %s",
				     strerror(-fd));
			req_free(r);
			return;
		}
	}
	d->c.opens++;
	if (src == PROTO_SRC_LOCAL)
		d->c.bytes_local += v.size;
	b = reply_begin(c, r->type, r->id, 0);
	put_stat(b, &v);
	proto_put_u32(b, PROTO_T_SOURCE, src);
	reply_send(c, b, fd);
	req_free(r);
}

static const char *rel_path(const struct mount *m, const char *path);

struct access_task {
	struct pool_task task;
	struct req *r;
	int rc;
};

static void access_work(struct pool_task *t)
{
	struct access_task *a = (struct access_task *)t;
	struct req *r = a->r;

	a->rc = r->m->ops->access(r->m, rel_path(r->m, r->path), r->w.who);
}

static void access_done(struct pool_task *t)
{
	struct access_task *a = (struct access_task *)t;
	struct req *r = a->r;
	struct conn *c = r->c;

	if (a->rc == -EACCES) {
		c->d->c.denied++;
		reply_errorf(c, r->type, r->id, -EACCES, "uid %u may not read %s",
			     (unsigned)c->cred.uid, r->path);
		req_free(r);
	} else {
		fetch_get(c->d, r->m, r->path, &r->w);
	}
	free(a);
}

static void handle_open(struct conn *c, struct parsed *p)
{
	struct mount *m = need_mount(c, p);
	struct object *o;
	struct req *r;

	if (!m)
		return;
	if (p->flags & PROTO_F_NOFETCH) {
		struct object *o = index_get(c->d->idx, p->path);

		if (!o || o->state != OBJ_CACHED) {
			reply_error(c, p->h.type, p->h.id, -ENODATA, "not cached");
			return;
		}
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		reply_error(c, p->h.type, p->h.id, -ENOMEM, "out of memory");
		return;
	}
	r->c = c;
	c->refs++;
	r->id = p->h.id;
	r->type = p->h.type;
	r->flags = p->flags;
	r->m = m;
	memcpy(r->path, p->path, sizeof(r->path));
	r->w.done = open_answered;
	r->w.foreground = p->h.type == PROTO_OPEN;
	r->w.want_fd = p->h.type == PROTO_OPEN;
	r->w.who = &c->who;
	o = index_get(c->d->idx, r->path);
	/* misses, and hits on paths closed to others unless validation asks anyway */
	if (m->ops->access && c->who.uid != 0 &&
	    (!o || o->state != OBJ_CACHED ||
	     (o->v.restricted && m->cfg->consistency != CONFIG_CONSISTENCY_STRICT))) {
		/* a miss: ask as the caller before fetching anything for it */
		struct access_task *a = calloc(1, sizeof(*a));

		if (a) {
			a->r = r;
			a->task.work = access_work;
			a->task.done = access_done;
			pool_submit(c->d->pool, &a->task);
		} else {
			fetch_get(c->d, m, r->path, &r->w);
		}
	} else {
		fetch_get(c->d, m, r->path, &r->w);
	}
	if (p->h.type == PROTO_OPEN)
		hint_seen(c->d, m, p->path); /* after the miss, so it starts first */
}

/* ---- work on the pool: STAT, LIST, LS, VERIFY ---- */

struct work {
	struct pool_task task;
	struct backend_call call; /* remote backends */
	struct conn *c;
	struct mount *m;
	uint32_t id;
	uint16_t type;
	int err;
	char msg[256];
	char path[PROTO_PATH_MAX + 1];
	char cookie[PROTO_NAME_MAX + 1];
	/* STAT */
	struct validator v;
	int ftype;
	/* LIST, LS */
	struct backend_dirent *ents;
	size_t n_ents;
	size_t bytes;
	bool more;
	bool single; /* LS of one file */
	/* VERIFY */
	size_t n_items;
	struct verify_item *items;
	uint64_t checked, bad;
	const struct store *store;
};

struct verify_item {
	char *path;
	uint64_t id, size, checksum;
	bool bad;
};

static struct work *work_new(struct conn *c, const struct parsed *p, struct mount *m)
{
	struct work *w = calloc(1, sizeof(*w));

	if (!w) {
		reply_error(c, p->h.type, p->h.id, -ENOMEM, "out of memory");
		return NULL;
	}
	w->c = c;
	c->refs++;
	w->m = m;
	w->id = p->h.id;
	w->type = p->h.type;
	memcpy(w->path, p->path, sizeof(w->path));
	return w;
}

static void work_free(struct work *w)
{
	size_t i;

	for (i = 0; i < w->n_items; i++)
		free(w->items[i].path);
	free(w->items);
	free(w->ents);
	conn_put(w->c);
	free(w);
}

static const char *rel_path(const struct mount *m, const char *path)
{
	size_t n = strlen(m->cfg->path);

	if (n == 1)
		return path + 1;
	return path[n] == '/' ? path + n + 1 : path + n;
}

static void stat_work(struct pool_task *t)
{
	struct work *w = (struct work *)t;

	w->err = w->m->ops->stat(w->m, rel_path(w->m, w->path), &w->v, &w->ftype, w->msg,
				 sizeof(w->msg));
}

static void stat_done(struct pool_task *t)
{
	struct work *w = (struct work *)t;
	struct conn *c = w->c;
	struct object *o;
	struct proto_buf *b;

	if (c->closed) {
		work_free(w);
		return;
	}
	if (w->err) {
		reply_error(c, w->type, w->id, w->err, w->msg);
		work_free(w);
		return;
	}
	o = index_get(c->d->idx, w->path);
	b = reply_begin(c, w->type, w->id, 0);
	put_stat(b, &w->v);
	proto_put_u32(b, PROTO_T_TYPE, (uint32_t)w->ftype);
	proto_put_u32(b, PROTO_T_CACHED,
		      o && o->state == OBJ_CACHED && backend_same_version(&o->v, &w->v));
	reply_send(c, b, -1);
	work_free(w);
}

static int list_collect(const struct backend_dirent *de, void *arg)
{
	struct work *w = arg;
	size_t cost = 8 * 4 + strlen(de->name) + 4 + 8 + 4;

	if (w->n_ents == LIST_PAGE_MAX || w->bytes + cost > PROTO_MSG_MAX - 1024) {
		w->more = true;
		return 1;
	}
	w->ents[w->n_ents++] = *de;
	w->bytes += cost;
	return 0;
}

static void list_work(struct pool_task *t)
{
	struct work *w = (struct work *)t;
	const char *rel = rel_path(w->m, w->path);

	w->ents = calloc(LIST_PAGE_MAX, sizeof(*w->ents));
	if (!w->ents) {
		w->err = -ENOMEM;
		return;
	}
	w->err = w->m->ops->list(w->m, rel, w->cookie, list_collect, w, w->msg, sizeof(w->msg));
	if (w->err == -ENOTDIR && w->type == PROTO_LS) {
		/* ls of one file */
		int ftype;

		w->err = w->m->ops->stat(w->m, rel, &w->v, &ftype, w->msg, sizeof(w->msg));
		if (!w->err) {
			w->single = true;
			w->n_ents = 1;
			w->ents[0].type = ftype;
			w->ents[0].size = w->v.size;
		}
	}
}

static uint32_t object_state(struct granaryd *d, const char *path)
{
	struct object *o = index_get(d->idx, path);

	if (!o)
		return PROTO_ST_ABSENT;
	if (o->state == OBJ_FETCHING)
		return PROTO_ST_FETCHING;
	return o->pe.pinned ? PROTO_ST_PINNED : PROTO_ST_CACHED;
}

static void list_done(struct pool_task *t)
{
	struct work *w = (struct work *)t;
	struct conn *c = w->c;
	struct proto_buf *b;
	char full[PROTO_PATH_MAX + PROTO_NAME_MAX + 2];
	size_t i;

	if (c->closed) {
		work_free(w);
		return;
	}
	if (w->err) {
		reply_error(c, w->type, w->id, w->err, w->msg);
		work_free(w);
		return;
	}
	b = reply_begin(c, w->type, w->id, 0);
	for (i = 0; i < w->n_ents; i++) {
		const struct backend_dirent *de = &w->ents[i];

		if (w->single)
			snprintf(full, sizeof(full), "%s", w->path);
		else
			snprintf(full, sizeof(full), "%s%s%s", w->path, w->path[1] ? "/" : "",
				 de->name);
		proto_put_str(b, PROTO_T_NAME, w->single ? full : de->name);
		proto_put_u32(b, PROTO_T_TYPE, (uint32_t)de->type);
		proto_put_u64(b, PROTO_T_SIZE, de->size);
		if (w->type == PROTO_LS)
			proto_put_u32(b, PROTO_T_STATE,
				      de->type == PROTO_FT_REG ? object_state(c->d, full)
							       : PROTO_ST_ABSENT);
	}
	if (w->more && w->n_ents)
		proto_put_str(b, PROTO_T_COOKIE, w->ents[w->n_ents - 1].name);
	reply_send(c, b, -1);
	work_free(w);
}

#define REMOTE_PAGE_MAX 200 /* entries whose longest names still fit a reply */

static void remote_stat_done(struct backend_call *call)
{
	struct work *w = call->arg;

	w->err = call->err;
	w->v = call->v;
	w->ftype = call->type;
	memcpy(w->msg, call->msg, sizeof(w->msg));
	if (w->type == PROTO_LS) {
		/* ls of one object, after an empty listing */
		if (!w->err) {
			w->single = true;
			w->n_ents = 1;
			w->ents[0].type = w->ftype;
			w->ents[0].size = w->v.size;
		}
		list_done(&w->task);
		return;
	}
	stat_done(&w->task);
}

static void remote_list_done(struct backend_call *call)
{
	struct work *w = call->arg;
	const struct mount *m = w->m;

	w->err = call->err;
	memcpy(w->msg, call->msg, sizeof(w->msg));
	w->n_ents = call->n_ents;
	w->more = call->more;
	if (w->type == PROTO_LS && !w->cookie[0] &&
	    ((!w->err && w->n_ents == 0) || w->err == -ENOTDIR || w->err == -ENOENT)) {
		/* an object store has no directories: maybe PATH names an object */
		memset(&w->call, 0, sizeof(w->call));
		w->call.done = remote_stat_done;
		w->call.arg = w;
		m->ops->head_async(w->m, rel_path(m, w->path), &w->call);
		return;
	}
	list_done(&w->task);
}

static void remote_stat_list(struct work *w)
{
	const struct mount *m = w->m;
	const char *rel = rel_path(m, w->path);

	w->call.arg = w;
	if (w->type == PROTO_STAT) {
		struct object *o = index_get(w->c->d->idx, w->path);

		if (o && fetch_fresh(w->c->d, o)) {
			/* immutable, or checked within the TTL: the index answers, no HEAD */
			w->v = o->v;
			w->ftype = PROTO_FT_REG;
			w->err = 0;
			stat_done(&w->task);
			return;
		}
		w->call.done = remote_stat_done;
		m->ops->head_async(w->m, rel, &w->call);
		return;
	}
	w->ents = calloc(REMOTE_PAGE_MAX, sizeof(*w->ents));
	if (!w->ents) {
		w->err = -ENOMEM;
		list_done(&w->task);
		return;
	}
	w->call.done = remote_list_done;
	w->call.ents = w->ents;
	w->call.max_ents = REMOTE_PAGE_MAX;
	m->ops->list_async(w->m, rel, w->cookie, &w->call);
}

static void handle_stat_list(struct conn *c, struct parsed *p)
{
	struct mount *m = need_mount(c, p);
	struct work *w;

	if (!m)
		return;
	w = work_new(c, p, m);
	if (!w)
		return;
	if (p->h.type == PROTO_STAT) {
		w->task.work = stat_work;
		w->task.done = stat_done;
	} else {
		if (p->has_name) {
			size_t n = strlen(p->name);

			if (n >= sizeof(w->cookie)) {
				reply_error(c, p->h.type, p->h.id, -EINVAL, "bad listing cookie");
				work_free(w);
				return;
			}
			memcpy(w->cookie, p->name, n + 1);
		}
		w->task.work = list_work;
		w->task.done = list_done;
	}
	if (m->ops->head_async) {
		remote_stat_list(w);
		return;
	}
	pool_submit(c->d->pool, &w->task);
}

/* worker: read each object back and compare its checksum */
static void verify_work(struct pool_task *t)
{
	struct work *w = (struct work *)t;
	size_t i;
	void *buf = malloc(1 << 20);

	if (!buf) {
		w->err = -ENOMEM;
		return;
	}
	for (i = 0; i < w->n_items; i++) {
		struct verify_item *it = &w->items[i];
		XXH3_state_t *st = XXH3_createState();
		int fd = store_object_open((struct store *)w->store, it->id, it->size);
		ssize_t n;

		w->checked++;
		if (fd < 0 || !st) {
			it->bad = fd < 0;
			XXH3_freeState(st);
			if (fd >= 0)
				close(fd);
			w->bad += it->bad;
			continue;
		}
		XXH3_64bits_reset(st);
		while ((n = read(fd, buf, 1 << 20)) > 0)
			XXH3_64bits_update(st, buf, (size_t)n);
		it->bad = n < 0 || XXH3_64bits_digest(st) != it->checksum;
		w->bad += it->bad;
		XXH3_freeState(st);
		close(fd);
	}
	free(buf);
}

static void verify_done(struct pool_task *t)
{
	struct work *w = (struct work *)t;
	struct conn *c = w->c;
	struct granaryd *d = c->d;
	struct proto_buf *b;
	size_t i;

	for (i = 0; i < w->n_items; i++) {
		struct object *o;

		if (!w->items[i].bad) {
			o = index_get(d->idx, w->items[i].path);
			if (o && o->id == w->items[i].id)
				o->verified = true;
			continue;
		}
		o = index_get(d->idx, w->items[i].path);
		d->c.corrupt++;
		log_warn("cache file failed verification, dropped path=%s id=%llu",
			 w->items[i].path, (unsigned long long)w->items[i].id);
		if (o && o->state == OBJ_CACHED && o->id == w->items[i].id)
			fetch_drop(d, o, false);
	}
	if (c->closed) {
		work_free(w);
		return;
	}
	if (w->err) {
		reply_error(c, w->type, w->id, w->err, "verification could not run");
	} else {
		b = reply_begin(c, w->type, w->id, 0);
		proto_put_u64(b, PROTO_T_COUNT, w->checked);
		proto_put_u64(b, PROTO_T_COUNT2, w->bad);
		reply_send(c, b, -1);
	}
	work_free(w);
}

struct collect {
	const char *prefix;
	struct work *w;
	size_t cap;
	int err;
};

static void verify_collect(struct object *o, void *arg)
{
	struct collect *k = arg;
	struct work *w = k->w;

	if (k->err || o->state != OBJ_CACHED ||
	    (k->prefix && !proto_path_under(o->path, k->prefix)))
		return;
	if (w->n_items == k->cap) {
		size_t ncap = k->cap ? k->cap * 2 : 256;
		struct verify_item *n = realloc(w->items, ncap * sizeof(*n));

		if (!n) {
			k->err = -ENOMEM;
			return;
		}
		w->items = n;
		k->cap = ncap;
	}
	w->items[w->n_items] = (struct verify_item){
		.path = strdup(o->path), .id = o->id, .size = o->v.size, .checksum = o->checksum};
	if (!w->items[w->n_items].path) {
		k->err = -ENOMEM;
		return;
	}
	w->n_items++;
}

static void handle_verify(struct conn *c, struct parsed *p)
{
	struct work *w = work_new(c, p, NULL);
	struct collect k = {.prefix = p->has_path ? p->path : NULL};

	if (!w)
		return;
	k.w = w;
	index_foreach(c->d->idx, verify_collect, &k);
	if (k.err) {
		reply_error(c, p->h.type, p->h.id, k.err, "out of memory");
		work_free(w);
		return;
	}
	w->store = &c->d->store;
	w->task.work = verify_work;
	w->task.done = verify_done;
	pool_submit(c->d->pool, &w->task);
}

/* ---- EVICT, DROP, PIN ---- */

struct under {
	struct granaryd *d;
	const char *prefix;
	uint16_t type;
	bool unpin;
	uint64_t count;
};

static void under_apply(struct object *o, void *arg)
{
	struct under *u = arg;

	if (!proto_path_under(o->path, u->prefix))
		return;
	switch (u->type) {
	case PROTO_EVICT:
		if (o->state == OBJ_CACHED)
			u->count++;
		fetch_drop(u->d, o, false);
		break;
	case PROTO_PIN:
		if (o->state != OBJ_CACHED || !o->in_policy)
			return;
		policy_pin(u->d->policy, &o->pe, !u->unpin);
		catalog_pin(u->d->cat, o->id, !u->unpin);
		u->count++;
		break;
	}
}

static void handle_under(struct conn *c, struct parsed *p)
{
	struct under u = {.d = c->d, .prefix = p->path, .type = p->h.type};
	struct proto_buf *b;

	if (!p->has_path) {
		reply_error(c, p->h.type, p->h.id, -EINVAL, "request needs a PATH");
		return;
	}
	if (p->h.type == PROTO_DROP) {
		struct object *o = index_get(c->d->idx, p->path);

		if (o) {
			u.count = o->state == OBJ_CACHED;
			fetch_drop(c->d, o, false);
		}
	} else {
		u.unpin = p->flags & PROTO_F_UNPIN;
		index_foreach(c->d->idx, under_apply, &u);
	}
	b = reply_begin(c, p->h.type, p->h.id, 0);
	proto_put_u64(b, PROTO_T_COUNT, u.count);
	reply_send(c, b, -1);
}

/* ---- EPOCH, HINT ---- */

static struct mount *dataset_mount(struct conn *c, struct parsed *p)
{
	struct mount *m = NULL;

	if (p->has_name)
		m = granaryd_mount_by_dataset(c->d, p->name);
	else if (p->has_path)
		m = granaryd_mount_find(c->d, p->path);
	else if (c->d->n_mounts == 1)
		m = &c->d->mounts[0];
	if (!m)
		reply_errorf(c, p->h.type, p->h.id, -ENOENT, "no such dataset: %s",
			     p->has_name   ? p->name
			     : p->has_path ? p->path
					   : "(none given)");
	return m;
}

static void handle_epoch(struct conn *c, struct parsed *p)
{
	struct mount *m = dataset_mount(c, p);
	struct proto_buf *b;
	uint64_t e;

	if (!m)
		return;
	e = policy_epoch_advance(c->d->policy, m->dataset);
	prefetch_kick(c->d, m); /* an order for this epoch starts; one for the last stops */
	catalog_epoch(c->d->cat, policy_dataset_name(c->d->policy, m->dataset), e);
	log_info("epoch advanced dataset=%s epoch=%llu",
		 policy_dataset_name(c->d->policy, m->dataset), (unsigned long long)e);
	b = reply_begin(c, p->h.type, p->h.id, 0);
	proto_put_str(b, PROTO_T_DATASET, policy_dataset_name(c->d->policy, m->dataset));
	proto_put_u64(b, PROTO_T_EPOCH, e);
	reply_send(c, b, -1);
}

static void handle_hint(struct conn *c, struct parsed *p)
{
	static const char *paths[PROTO_MSG_MAX / 8];
	static char store[PROTO_MSG_MAX];
	struct proto_iter it;
	struct proto_item item;
	struct mount *m;
	struct proto_buf *b;
	size_t n = 0, used = 0;
	int rc;

	p->has_path = false; /* a hint's PATH items are the order, not a scope */
	m = dataset_mount(c, p);
	if (!m)
		return;
	proto_iter_init(&it, p->msg, p->len);
	while ((rc = proto_next(&it, &item)) > 0) {
		char *dst = store + used;

		if (item.tag != PROTO_T_PATH)
			continue;
		if (proto_path_normalize((const char *)item.val, item.len, dst,
					 sizeof(store) - used) < 0 ||
		    !proto_path_under(dst, m->cfg->path))
			continue; /* an order may name files we do not serve */
		paths[n++] = dst;
		used += strlen(dst) + 1;
	}
	hint_add(c->d, m, p->flags & PROTO_F_BEGIN, p->flags & PROTO_F_END, paths, n);
	b = reply_begin(c, p->h.type, p->h.id, 0);
	proto_put_u64(b, PROTO_T_COUNT, n);
	reply_send(c, b, -1);
}

/* ---- HELLO, STATUS ---- */

static void handle_hello(struct conn *c, struct parsed *p)
{
	struct granaryd *d = c->d;
	struct proto_buf *b = reply_begin(c, p->h.type, p->h.id, 0);
	int ifd = -1, dfd = -1;
	size_t i;

	if (d->fx && d->objdir_path_fd >= 0) {
		ifd = fastidx_client_fd(d->fx);
		dfd = ifd >= 0 ? fcntl(d->objdir_path_fd, F_DUPFD_CLOEXEC, 0) : -1;
		if (ifd < 0 || dfd < 0) {
			if (ifd >= 0)
				close(ifd);
			ifd = dfd = -1;
		}
	}
	for (i = 0; i < d->n_mounts; i++) {
		const struct config_mount *cm = d->mounts[i].cfg;
		uint32_t flags = 0;

		if (cm->backend == CONFIG_BACKEND_POSIX) {
			flags |= PROTO_F_MOUNT_FAILOPEN;
			if (cm->consistency == CONFIG_CONSISTENCY_STRICT)
				flags |= PROTO_F_MOUNT_STRICT;
		}
		/* an object-store mount has no original: the index entry alone decides */
		if (ifd >= 0 && fetch_fast_eligible(&d->mounts[i]))
			flags |= PROTO_F_MOUNT_FAST;
		proto_put_str(b, PROTO_T_MOUNT, cm->path);
		proto_put_u32(b, PROTO_T_BACKEND, (uint32_t)cm->backend);
		proto_put_u32(b, PROTO_T_FLAGS, flags);
		/* the fast path serves a copy validated less than the ttl ago */
		if (cm->consistency == CONFIG_CONSISTENCY_TTL)
			proto_put_u64(b, PROTO_T_TTL, cm->ttl_ns);
	}
	conn_send2(c, b->data, b->len, ifd, dfd);
}

/* Reads a client served from the shared index: count them as hits. */
static void handle_access(struct conn *c, struct parsed *p)
{
	struct granaryd *d = c->d;
	struct proto_iter it;
	struct proto_item item;
	uint64_t counted = 0;

	proto_iter_init(&it, p->msg, p->len);
	while (proto_next(&it, &item) > 0) {
		size_t i, n;

		if (item.tag != PROTO_T_SLOTS || item.len % sizeof(struct proto_fx_access))
			continue;
		n = item.len / sizeof(struct proto_fx_access);
		for (i = 0; i < n && d->fx; i++) {
			struct proto_fx_access a;
			struct object *o;

			memcpy(&a, item.val + i * sizeof(a), sizeof(a));
			o = fastidx_object(d->fx, a.slot, a.id);
			if (!o)
				continue;
			counted++;
			d->c.hits++;
			d->c.fast_hits++;
			d->c.opens++;
			d->c.bytes_local += o->v.size;
			o->mount->hits++;
			o->last_access = granaryd_realtime_s();
			if (o->in_policy)
				policy_access(d->policy, &o->pe);
			hint_seen(d, o->mount, o->path);
		}
	}
	/* a client flushing at exit waits, so its reads are counted before it ends */
	if (!(p->flags & PROTO_F_NOREPLY)) {
		struct proto_buf *b = reply_begin(c, p->h.type, p->h.id, 0);

		proto_put_u64(b, PROTO_T_COUNT, counted);
		reply_send(c, b, -1);
	}
}

static const char *consistency_name(const struct config_mount *cm)
{
	switch (cm->consistency) {
	case CONFIG_CONSISTENCY_TTL:
		return "ttl";
	case CONFIG_CONSISTENCY_IMMUTABLE:
		return "immutable";
	default:
		return "strict";
	}
}

static const char *backend_name(enum config_backend b)
{
	switch (b) {
	case CONFIG_BACKEND_HTTP:
		return "http";
	case CONFIG_BACKEND_S3:
		return "s3";
	default:
		return "posix";
	}
}

static double ratio(uint64_t a, uint64_t b)
{
	return a + b ? (double)a / (double)(a + b) : 0.0;
}

char *server_status_json(struct granaryd *d)
{
	json_t *root, *mounts, *datasets, *counters;
	uint64_t ops, commits, errors;
	size_t i;
	char *s;

	catalog_stats(d->cat, &ops, &commits, &errors);
	counters = json_pack(
		"{sI sI sI sI sI sI sI sI sI sI sI sI sI sI sI sI sI sI sI}", "requests",
		(json_int_t)d->c.requests, "bad_requests", (json_int_t)d->c.bad_requests, "opens",
		(json_int_t)d->c.opens, "hits", (json_int_t)d->c.hits, "misses",
		(json_int_t)d->c.misses, "bytes_local", (json_int_t)d->c.bytes_local,
		"bytes_backend", (json_int_t)d->c.bytes_backend, "bytes_peer",
		(json_int_t)d->c.bytes_peer, "bytes_direct", (json_int_t)d->c.bytes_direct,
		"fetches", (json_int_t)d->c.fetches, "fetch_errors", (json_int_t)d->c.fetch_errors,
		"refetches_changed", (json_int_t)d->c.refetches_changed, "evictions",
		(json_int_t)d->c.evictions, "not_admitted", (json_int_t)d->c.not_admitted, "denied",
		(json_int_t)d->c.denied, "fast_hits", (json_int_t)d->c.fast_hits, "corrupt",
		(json_int_t)d->c.corrupt, "inflight", (json_int_t)d->fetches_inflight,
		"catalog_commits", (json_int_t)commits);
	mounts = json_array();
	for (i = 0; i < d->n_mounts; i++) {
		const struct mount *m = &d->mounts[i];

		json_array_append_new(
			mounts,
			json_pack("{ss ss ss sI sI sI sI sf sI sI sf so}", "path", m->cfg->path,
				  "backend", backend_name(m->cfg->backend), "consistency",
				  consistency_name(m->cfg), "objects", (json_int_t)m->objects,
				  "bytes", (json_int_t)m->bytes, "hits", (json_int_t)m->hits,
				  "misses", (json_int_t)m->misses, "hit_ratio",
				  ratio(m->hits, m->misses), "fetches", (json_int_t)m->fetches,
				  "fetch_errors", (json_int_t)m->fetch_errors, "fetch_seconds",
				  m->fetch_seconds, "hint", hint_status_json(d, m)));
	}
	datasets = json_array();
	for (i = 0; i < policy_dataset_count(d->policy); i++) {
		struct policy_dataset_stats st;

		policy_dataset_stats(d->policy, (uint32_t)i, &st);
		json_array_append_new(
			datasets,
			json_pack("{ss sI sI sI sf sI sI sf sI sI sb}", "name",
				  policy_dataset_name(d->policy, (uint32_t)i), "epoch",
				  (json_int_t)st.epoch, "hits", (json_int_t)st.hits, "misses",
				  (json_int_t)st.misses, "hit_ratio", ratio(st.hits, st.misses),
				  "prev_hits", (json_int_t)st.prev_hits, "prev_misses",
				  (json_int_t)st.prev_misses, "prev_hit_ratio",
				  ratio(st.prev_hits, st.prev_misses), "entries",
				  (json_int_t)st.entries, "bytes", (json_int_t)st.bytes, "hinted",
				  st.hinted));
	}
	root = json_pack("{ss sI sI ss ss s{ss sI sI sI sI sf sf} so so so}", "version", "0.1.0",
			 "pid", (json_int_t)getpid(), "uptime_s",
			 (json_int_t)((granaryd_now_ns() - d->start_mono_ns) / 1000000000LL),
			 "policy", policy_name(d->policy), "io", uring_kind(d->io), "cache", "dir",
			 d->cfg->cache.dir, "capacity", (json_int_t)d->cfg->cache.capacity, "used",
			 (json_int_t)d->used, "reserved", (json_int_t)d->reserved, "objects",
			 (json_int_t)index_count(d->idx), "high_watermark",
			 d->cfg->cache.high_watermark, "low_watermark", d->cfg->cache.low_watermark,
			 "counters", counters, "mounts", mounts, "datasets", datasets);
	if (!root)
		return NULL;
	json_object_set_new(root, "qos", qos_status_json(d));
	peer_status_json(d, root);
	s = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	return s;
}

static void handle_status(struct conn *c, struct parsed *p)
{
	char *s = server_status_json(c->d);
	struct proto_buf *b;

	if (!s) {
		reply_error(c, p->h.type, p->h.id, -ENOMEM, "cannot build the status document");
		return;
	}
	b = reply_begin(c, p->h.type, p->h.id, 0);
	if (proto_put_str(b, PROTO_T_JSON, s) < 0) {
		free(s);
		reply_error(c, p->h.type, p->h.id, -EMSGSIZE, "status document too large");
		return;
	}
	free(s);
	reply_send(c, b, -1);
}

/* ---- dispatch ---- */

static void dispatch(struct conn *c, const void *msg, size_t len, bool truncated)
{
	struct granaryd *d = c->d;
	struct parsed *p = malloc(sizeof(*p));
	char why[256] = "";
	uint16_t name_tag = 0;
	int rc;

	if (!p) {
		reply_error(c, 0, 0, -ENOMEM, "out of memory");
		return;
	}
	memset(p, 0, offsetof(struct parsed, path));
	p->has_path = p->has_name = false;
	p->flags = 0;
	p->msg = msg;
	p->len = len;
	d->c.requests++;
	if (truncated) {
		d->c.bad_requests++;
		if (len >= PROTO_HDR_SIZE)
			memcpy(&p->h, msg, sizeof(p->h));
		reply_errorf(c, 0, p->h.id, -EMSGSIZE, "request larger than %d bytes",
			     PROTO_MSG_MAX);
		goto out;
	}
	rc = proto_check(msg, len, &p->h);
	if (rc < 0 || (p->h.type & PROTO_REPLY)) {
		uint32_t id = 0;

		d->c.bad_requests++;
		if (len >= PROTO_HDR_SIZE)
			memcpy(&id, (const uint8_t *)msg + offsetof(struct proto_hdr, id), 4);
		if (rc == -EPROTO)
			reply_errorf(c, 0, id, rc, "protocol version %u not supported (speaks %d)",
				     p->h.version, PROTO_VERSION);
		else
			reply_errorf(c, 0, id, -EBADMSG,
				     "malformed request: bad header (length %zu)", len);
		goto out;
	}
	if (p->h.type == PROTO_EPOCH || p->h.type == PROTO_HINT)
		name_tag = PROTO_T_DATASET;
	else if (p->h.type == PROTO_LIST || p->h.type == PROTO_LS)
		name_tag = PROTO_T_COOKIE;
	rc = parse_common(p, name_tag, why, sizeof(why));
	if (rc < 0 && p->h.type != PROTO_HINT) {
		d->c.bad_requests++;
		reply_errorf(c, p->h.type, p->h.id, rc, "bad %s request: %s",
			     proto_type_name(p->h.type), why);
		goto out;
	}
	switch (p->h.type) {
	case PROTO_HELLO:
		handle_hello(c, p);
		break;
	case PROTO_OPEN:
	case PROTO_WARM:
		handle_open(c, p);
		break;
	case PROTO_STAT:
	case PROTO_LIST:
	case PROTO_LS:
		handle_stat_list(c, p);
		break;
	case PROTO_STATUS:
		handle_status(c, p);
		break;
	case PROTO_EVICT:
	case PROTO_DROP:
	case PROTO_PIN:
		handle_under(c, p);
		break;
	case PROTO_EPOCH:
		handle_epoch(c, p);
		break;
	case PROTO_HINT:
		handle_hint(c, p);
		break;
	case PROTO_VERIFY:
		handle_verify(c, p);
		break;
	case PROTO_ACCESS:
		handle_access(c, p);
		break;
	default:
		reply_error(c, p->h.type, p->h.id, -EOPNOTSUPP, "request type not supported");
	}
out:
	free(p);
}

static void conn_read(struct conn *c)
{
	struct server *s = c->d->srv;
	int budget = READ_BUDGET;

	c->refs++; /* a reply may close it under us */
	while (budget-- > 0 && !c->closed) {
		union {
			char buf[CMSG_SPACE(sizeof(int) * 16)];
			struct cmsghdr align;
		} u;
		struct iovec iov = {.iov_base = s->in, .iov_len = sizeof(s->in)};
		struct msghdr mh = {.msg_iov = &iov,
				    .msg_iovlen = 1,
				    .msg_control = u.buf,
				    .msg_controllen = sizeof(u.buf)};
		struct cmsghdr *cm;
		ssize_t n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				conn_close(c);
			break;
		}
		if (n == 0) {
			conn_close(c);
			break;
		}
		/* we accept no descriptors from clients */
		for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
				int *fds = (int *)CMSG_DATA(cm);
				size_t k, nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);

				for (k = 0; k < nfd; k++)
					close(fds[k]);
			}
		}
		dispatch(c, s->in, (size_t)n > PROTO_MSG_MAX ? PROTO_MSG_MAX : (size_t)n,
			 (size_t)n > PROTO_MSG_MAX || (mh.msg_flags & MSG_TRUNC));
	}
	conn_put(c);
}

static void conn_on_event(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	c->refs++;
	if (what & EV_WRITE)
		conn_flush(c);
	if ((what & EV_READ) && !c->closed)
		conn_read(c);
	conn_put(c);
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
	struct server *s = arg;
	struct granaryd *d = s->d;
	socklen_t len;
	struct conn *c;
	int fd;

	(void)what;
	for (;;) {
		fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE)
				log_errno(LOG_ERR, errno, "accept4 failed: out of descriptors");
			return;
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			return;
		}
		c->d = d;
		c->fd = fd;
		c->refs = 1;
		len = sizeof(c->cred);
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c->cred, &len) < 0) {
			c->cred.uid = (uid_t)-1;
			c->cred.gid = (gid_t)-1;
		}
		len = sizeof(c->groups);
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, c->groups, &len) == 0)
			c->ngroups = (int)(len / sizeof(gid_t));
		c->who.uid = c->cred.uid;
		c->who.gid = c->cred.gid;
		c->who.ngroups = c->ngroups;
		memcpy(c->who.groups, c->groups, sizeof(c->who.groups));
		c->ev = event_new(d->base, fd, EV_READ | EV_PERSIST, conn_on_event, c);
		if (!c->ev || event_add(c->ev, NULL) < 0) {
			close(fd);
			free(c);
			return;
		}
		c->next = s->conns;
		if (s->conns)
			s->conns->prev = c;
		s->conns = c;
		s->nconns++;
	}
}

static int mkdir_parent(const char *path)
{
	char dir[PROTO_PATH_MAX + 1];
	char *slash;
	size_t i;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = '\0';
	for (i = 1; dir[i]; i++) {
		if (dir[i] != '/')
			continue;
		dir[i] = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			return -errno;
		dir[i] = '/';
	}
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* A socket file that no daemon answers on is left over from a crash. */
static int claim_path(const struct sockaddr_un *sa)
{
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	int rc;

	if (fd < 0)
		return -errno;
	rc = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	close(fd);
	if (rc == 0)
		return -EADDRINUSE;
	unlink(sa->sun_path);
	return 0;
}

int server_start(struct granaryd *d)
{
	struct server *s = calloc(1, sizeof(*s));
	const char *path = d->cfg->socket;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int rc;

	if (!s)
		return -ENOMEM;
	s->d = d;
	s->fd = -1;
	d->srv = s;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		log_err("socket path too long path=%s max=%zu", path, sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	rc = mkdir_parent(path);
	if (rc < 0) {
		log_errno(LOG_ERR, rc, "cannot create the socket's directory path=%s", path);
		return rc;
	}
	rc = claim_path(&sa);
	if (rc < 0) {
		log_errno(LOG_ERR, rc, "another granaryd is serving this socket path=%s", path);
		return rc;
	}
	s->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0)
		return -errno;
	if (bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = -errno;
		log_errno(LOG_ERR, rc, "bind failed path=%s", path);
		return rc;
	}
	if (chmod(path, d->cfg->socket_mode) < 0)
		log_errno(LOG_WARNING, errno, "chmod of socket failed path=%s", path);
	if (d->cfg->socket_group && d->cfg->socket_group[0]) {
		struct group *g = getgrnam(d->cfg->socket_group);

		if (g && chown(path, (uid_t)-1, g->gr_gid) < 0)
			log_errno(LOG_WARNING, errno, "chown of socket failed path=%s group=%s",
				  path, d->cfg->socket_group);
	}
	if (listen(s->fd, 512) < 0) {
		rc = -errno;
		log_errno(LOG_ERR, rc, "listen failed path=%s", path);
		return rc;
	}
	s->path = strdup(path);
	s->ev = event_new(d->base, s->fd, EV_READ | EV_PERSIST, on_accept, s);
	if (!s->path || !s->ev || event_add(s->ev, NULL) < 0)
		return -ENOMEM;
	return 0;
}

void server_stop_listening(struct granaryd *d)
{
	struct server *s = d->srv;

	if (!s || s->fd < 0)
		return;
	if (s->ev) {
		event_free(s->ev);
		s->ev = NULL;
	}
	close(s->fd);
	s->fd = -1;
	if (s->path)
		unlink(s->path);
}

void server_destroy(struct granaryd *d)
{
	struct server *s = d->srv;

	if (!s)
		return;
	server_stop_listening(d);
	while (s->conns)
		conn_close(s->conns);
	free(s->path);
	free(s);
	d->srv = NULL;
}

unsigned server_connections(const struct granaryd *d)
{
	return d->srv ? d->srv->nconns : 0;
}
