/*
 * server.c - the requests of the local socket protocol: parsing, the access
 * decision for each, and the answers (see server.h, conn.h and
 * docs/protocol.md).
 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access.h"
#include "backend.h"
#include "catalog.h"
#include "conn.h"
#include "fastidx.h"
#include "fetch.h"
#include "hint.h"
#include "log.h"
#include "policy.h"
#include "pool.h"
#include "prefetch.h"
#include "proto.h"
#include "status.h"

#define LIST_PAGE_MAX 1024
#define ACCESS_MAX    64 /* reads one ACCESS report counts: the shim's batch */

/* A request that waits for a fetch or a worker. */
struct req {
	struct fetch_waiter w; /* first: the fetch hands it back */
	struct access_req acc; /* the caller's check, made before the fetch */
	struct conn *c;
	uint32_t id;
	uint16_t type;
	uint32_t flags;
	bool retried;	/* the cache file was damaged: fetched again once */
	bool rechecked; /* the source changed after the check: checked again once */
	struct mount *m;
	char path[PROTO_PATH_MAX + 1];
};

static struct req *req_of(struct fetch_waiter *w)
{
	return (struct req *)w;
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

/* The caller as checks see it; NULL for root, who acts as the daemon does. */
static const struct caller *who_of(const struct conn *c)
{
	return access_needed(&c->who) ? &c->who : NULL;
}

/* An object-store mount's allow lists; a refusal is answered here. */
static bool may_read_mount(struct conn *c, const struct parsed *p, const struct mount *m)
{
	if (access_mount_allows(m, &c->who))
		return true;
	c->d->c.denied++;
	reply_errorf(c, p->h.type, p->h.id, -EACCES, "uid %u may not read %s", (unsigned)c->who.uid,
		     m->cfg->path);
	return false;
}

/* Admin verbs: root or access.admin_gids; others get EPERM and why. */
static bool need_admin(struct conn *c, const struct parsed *p)
{
	if (access_is_admin(c->d, &c->who))
		return true;
	c->d->c.denied++;
	reply_errorf(c, p->h.type, p->h.id, -EPERM,
		     "%s is for root or a group in access.admin_gids; uid %u is neither",
		     proto_type_name(p->h.type), (unsigned)c->who.uid);
	return false;
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
	if (r->w.has_srcfd)
		close(r->w.srcfd);
	conn_req_end(r->c);
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
		v.mtime_ns = clock_ns_of(&sb.st_mtim);
		v.ino = sb.st_ino;
		v.dev = sb.st_dev;
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
	if (!access_same_file(&r->acc, &v)) {
		/* what the check opened is not what would be served: check again */
		if (fd >= 0)
			close(fd);
		if (!r->rechecked && !c->closed) {
			r->rechecked = true;
			access_check(&r->acc);
			return;
		}
		reply_errorf(c, r->type, r->id, -EAGAIN, "%s kept changing while it was opened",
			     r->path);
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

/* The caller may read the source (or was refused): go on with the fetch. */
static void open_checked(struct access_req *a)
{
	struct req *r = (struct req *)((char *)a - offsetof(struct req, acc));
	struct conn *c = r->c;
	char path[PROTO_PATH_MAX + 1];
	struct granaryd *d;
	struct mount *m;
	uid_t uid;
	struct object *o;

	if (a->err) {
		reply_error(c, r->type, r->id, a->err, a->msg);
		req_free(r);
		return;
	}
	if (r->w.has_srcfd) /* a check made again: its open replaces the first */
		close(r->w.srcfd);
	r->w.has_srcfd = a->fd >= 0;
	r->w.srcfd = a->fd;
	if (r->flags & PROTO_F_NOFETCH) {
		/* asked after the check: the answer tells nothing to who may not read */
		o = index_get(c->d->idx, r->path);
		if (!o || o->state != OBJ_CACHED) {
			reply_error(c, r->type, r->id, -ENODATA, "not cached");
			req_free(r);
			return;
		}
	}
	if (r->type != PROTO_OPEN || r->rechecked) {
		fetch_get(c->d, r->m, r->path, &r->w);
		return;
	}
	/* the answer may come at once and free @r: the hint needs its own copy */
	memcpy(path, r->path, sizeof(path));
	m = r->m;
	d = c->d;
	uid = c->who.uid;
	fetch_get(d, m, r->path, &r->w);
	if (m->hint_who.uid == uid)    /* an order moves with its sender's reads alone */
		hint_seen(d, m, path); /* after the miss, so it starts first */
}

static void handle_open(struct conn *c, struct parsed *p)
{
	struct mount *m = need_mount(c, p);
	struct req *r;

	if (!m)
		return;
	r = calloc(1, sizeof(*r));
	if (!r) {
		reply_error(c, p->h.type, p->h.id, -ENOMEM, "out of memory");
		return;
	}
	r->c = c;
	conn_req_begin(c);
	r->id = p->h.id;
	r->type = p->h.type;
	r->flags = p->flags;
	r->m = m;
	memcpy(r->path, p->path, sizeof(r->path));
	r->w.done = open_answered;
	r->w.foreground = p->h.type == PROTO_OPEN;
	r->w.want_fd = p->h.type == PROTO_OPEN;
	r->w.who = &c->who;
	access_prepare(&r->acc, c->d, m, &c->who, r->path, ACCESS_READ, open_checked);
	/* every open is checked as the caller first: nothing is fetched for a refusal */
	access_check(&r->acc);
}

/* ---- work on the pool: STAT, LIST, LS, VERIFY ---- */

struct work {
	struct pool_task task;	  /* VERIFY */
	struct backend_call call; /* STAT, LIST, LS: the backend's answer */
	struct conn *c;
	struct mount *m;
	uint32_t id;
	uint16_t type;
	int err;
	char path[PROTO_PATH_MAX + 1];
	char cookie[PROTO_NAME_MAX + 1];
	/* LIST, LS */
	struct backend_dirent *ents;
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
	bool priv;
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
	conn_req_begin(c);
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
	conn_req_end(w->c);
	free(w);
}

static void reply_stat(struct work *w)
{
	struct conn *c = w->c;
	struct object *o;
	struct proto_buf *b;

	if (c->closed) {
		work_free(w);
		return;
	}
	if (w->call.err) {
		reply_error(c, w->type, w->id, w->call.err, w->call.msg);
		work_free(w);
		return;
	}
	o = index_get(c->d->idx, w->path);
	b = reply_begin(c, w->type, w->id, 0);
	put_stat(b, &w->call.v);
	proto_put_u32(b, PROTO_T_TYPE, (uint32_t)w->call.type);
	/* what is cached is told only to whom may read it */
	proto_put_u32(b, PROTO_T_CACHED,
		      w->call.readable && o && o->state == OBJ_CACHED &&
			      backend_same_version(&o->v, &w->call.v));
	reply_send(c, b, -1);
	work_free(w);
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

/*
 * One page of a listing: as many entries as fit a reply; when some were left
 * out, the cookie (the last name sent) asks for the rest.
 */
static void reply_list(struct work *w)
{
	struct conn *c = w->c;
	struct proto_buf *b;
	char full[PROTO_PATH_MAX + PROTO_NAME_MAX + 2];
	size_t i, n = w->call.n_ents, bytes = 0;
	bool more = w->call.more;

	if (c->closed) {
		work_free(w);
		return;
	}
	if (w->call.err) {
		reply_error(c, w->type, w->id, w->call.err, w->call.msg);
		work_free(w);
		return;
	}
	for (i = 0; i < n; i++) {
		bytes += 8 * 4 + strlen(w->ents[i].name) + 4 + 8 + 4;
		if (bytes > PROTO_MSG_MAX - 1024) {
			n = i;
			more = true;
			break;
		}
	}
	b = reply_begin(c, w->type, w->id, 0);
	for (i = 0; i < n; i++) {
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
				      de->type == PROTO_FT_REG &&
						      (de->readable || !w->m->ops->check)
					      ? object_state(c->d, full)
					      : PROTO_ST_ABSENT);
	}
	if (more && n)
		proto_put_str(b, PROTO_T_COOKIE, w->ents[n - 1].name);
	reply_send(c, b, -1);
	work_free(w);
}

static void stat_answered(struct backend_call *call)
{
	reply_stat(call->arg);
}

/* LS of a path the listing did not show as a directory: one entry, itself. */
static void ls_stat_answered(struct backend_call *call)
{
	struct work *w = call->arg;

	if (!call->err && call->type != PROTO_FT_DIR) {
		w->single = true;
		w->call.n_ents = 1;
		w->ents[0].type = call->type;
		w->ents[0].size = call->v.size;
		w->ents[0].readable = call->readable;
	} else if (!call->err) {
		w->call.n_ents = 0; /* an empty directory */
	}
	w->call.more = false;
	reply_list(w);
}

static void list_answered(struct backend_call *call)
{
	struct work *w = call->arg;

	/* an object store has no directories, and a NAS path may name a file */
	if (w->type == PROTO_LS && !w->cookie[0] &&
	    ((!call->err && call->n_ents == 0) || call->err == -ENOTDIR || call->err == -ENOENT)) {
		call->done = ls_stat_answered;
		backend_stat_call(w->m, mount_rel(w->m, w->path), who_of(w->c), call);
		return;
	}
	reply_list(w);
}

static void handle_stat_list(struct conn *c, struct parsed *p)
{
	struct mount *m = need_mount(c, p);
	struct object *o;
	struct work *w;

	if (!m)
		return;
	if (!may_read_mount(c, p, m))
		return;
	w = work_new(c, p, m);
	if (!w)
		return;
	w->call.arg = w;
	if (p->h.type == PROTO_STAT) {
		o = index_get(c->d->idx, w->path);
		if (o && !m->ops->check && fetch_fresh(c->d, o)) {
			/* an object store's copy within its consistency: the index answers */
			w->call.v = o->v;
			w->call.type = PROTO_FT_REG;
			w->call.readable = true;
			reply_stat(w);
			return;
		}
		w->call.done = stat_answered;
		backend_stat_call(m, mount_rel(m, w->path), who_of(c), &w->call);
		return;
	}
	if (p->has_name) {
		size_t n = strlen(p->name);

		if (n >= sizeof(w->cookie)) {
			reply_error(c, p->h.type, p->h.id, -EINVAL, "bad listing cookie");
			work_free(w);
			return;
		}
		memcpy(w->cookie, p->name, n + 1);
	}
	w->ents = calloc(LIST_PAGE_MAX, sizeof(*w->ents));
	if (!w->ents) {
		reply_error(c, p->h.type, p->h.id, -ENOMEM, "out of memory");
		work_free(w);
		return;
	}
	w->call.done = list_answered;
	w->call.ents = w->ents;
	w->call.max_ents = LIST_PAGE_MAX;
	backend_list_call(m, mount_rel(m, w->path), who_of(c), w->cookie, &w->call);
}

/* worker: read each object back and compare its checksum */
static void verify_work(struct pool_task *t)
{
	struct work *w = (struct work *)t;
	size_t i;

	for (i = 0; i < w->n_items; i++) {
		struct verify_item *it = &w->items[i];
		uint64_t sum = 0;
		int rc = store_object_checksum((struct store *)w->store, it->id, it->size, it->priv,
					       &sum);

		w->checked++;
		if (rc == -ENOMEM) {
			w->err = rc;
			return;
		}
		it->bad = rc < 0 || sum != it->checksum;
		w->bad += it->bad;
	}
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
	w->items[w->n_items] = (struct verify_item){.path = strdup(o->path),
						    .id = o->id,
						    .size = o->v.size,
						    .checksum = o->checksum,
						    .priv = o->v.restricted};
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
	if (!need_admin(c, p)) {
		work_free(w);
		return;
	}
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

static void drop_path(struct conn *c, uint16_t type, uint32_t id, const char *path)
{
	struct object *o = index_get(c->d->idx, path);
	struct proto_buf *b;
	uint64_t count = 0;

	if (o) {
		count = o->state == OBJ_CACHED;
		fetch_drop(c->d, o, false);
	}
	b = reply_begin(c, type, id, 0);
	proto_put_u64(b, PROTO_T_COUNT, count);
	reply_send(c, b, -1);
}

/* A DROP by a user who is not an administrator: allowed to who may write the source. */
struct drop_req {
	struct access_req acc;
	struct conn *c;
	uint32_t id;
	char path[PROTO_PATH_MAX + 1];
};

static void drop_checked(struct access_req *a)
{
	struct drop_req *r = (struct drop_req *)a;
	struct conn *c = r->c;

	if (a->err)
		reply_errorf(c, PROTO_DROP, r->id, a->err == -EPERM ? -EPERM : a->err,
			     "uid %u may not drop %s: %s", (unsigned)c->who.uid, r->path, a->msg);
	else
		drop_path(c, PROTO_DROP, r->id, r->path);
	conn_req_end(c);
	free(r);
}

static void handle_drop(struct conn *c, struct parsed *p)
{
	struct mount *m;
	struct drop_req *r;

	if (access_is_admin(c->d, &c->who)) {
		drop_path(c, p->h.type, p->h.id, p->path);
		return;
	}
	m = need_mount(c, p);
	if (!m)
		return;
	r = calloc(1, sizeof(*r));
	if (!r) {
		reply_error(c, p->h.type, p->h.id, -ENOMEM, "out of memory");
		return;
	}
	r->c = c;
	r->id = p->h.id;
	memcpy(r->path, p->path, sizeof(r->path));
	access_prepare(&r->acc, c->d, m, &c->who, r->path, ACCESS_WRITE, drop_checked);
	conn_req_begin(c);
	access_check(&r->acc);
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
		handle_drop(c, p);
		return;
	}
	if (!need_admin(c, p))
		return;
	u.unpin = p->flags & PROTO_F_UNPIN;
	index_foreach(c->d->idx, under_apply, &u);
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

/*
 * EPOCH and HINT steer a dataset for everyone who reads it. A user who is not
 * an administrator may steer a dataset that nobody else steers, or that its
 * last steerer left alone for access.steer_idle; that user then holds it.
 */
static bool may_steer(struct conn *c, const struct parsed *p, struct mount *m)
{
	struct granaryd *d = c->d;
	int64_t now = clock_now_ns(), idle = (int64_t)d->cfg->access.steer_idle_ns;

	if (!access_is_admin(d, &c->who) && m->steered && m->steer_uid != c->who.uid &&
	    now - m->steer_ns < idle) {
		d->c.denied++;
		reply_errorf(c, p->h.type, p->h.id, -EPERM,
			     "dataset %s is steered by uid %u (its last epoch or hint %llds ago): "
			     "ask an administrator, or wait until it has been left alone for "
			     "access.steer_idle",
			     policy_dataset_name(d->policy, m->dataset), (unsigned)m->steer_uid,
			     (long long)((now - m->steer_ns) / NS_PER_S));
		return false;
	}
	m->steered = true;
	m->steer_uid = c->who.uid;
	m->steer_ns = now;
	return true;
}

static void handle_epoch(struct conn *c, struct parsed *p)
{
	struct mount *m = dataset_mount(c, p);
	struct proto_buf *b;
	uint64_t e;

	if (!m || !may_read_mount(c, p, m) || !may_steer(c, p, m))
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
	if (!m || !may_read_mount(c, p, m) || !may_steer(c, p, m))
		return;
	/* the prefetcher reads the order as its sender could, no more */
	m->hint_who = c->who;
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
	size_t n_seen = 0;

	proto_iter_init(&it, p->msg, p->len);
	while (proto_next(&it, &item) > 0) {
		size_t i, n;

		if (item.tag != PROTO_T_SLOTS || item.len % sizeof(struct proto_fx_access))
			continue;
		n = item.len / sizeof(struct proto_fx_access);
		for (i = 0; i < n && d->fx && n_seen < ACCESS_MAX; i++) {
			struct proto_fx_access a;
			struct object *o;

			memcpy(&a, item.val + i * sizeof(a), sizeof(a));
			n_seen++; /* a report is one shim batch: so many reads at most */
			o = fastidx_object(d->fx, a.slot, a.id);
			if (!o)
				continue;
			counted++;
			d->c.hits++;
			d->c.fast_hits++;
			d->c.opens++;
			d->c.bytes_local += o->v.size;
			o->mount->hits++;
			o->last_access = clock_real_s();
			if (o->in_policy)
				policy_access(d->policy, &o->pe);
			if (o->mount->hint_who.uid == c->who.uid)
				hint_seen(d, o->mount,
					  o->path); /* an order moves with its sender's reads */
		}
	}
	/* a client flushing at exit waits, so its reads are counted before it ends */
	if (!(p->flags & PROTO_F_NOREPLY)) {
		struct proto_buf *b = reply_begin(c, p->h.type, p->h.id, 0);

		proto_put_u64(b, PROTO_T_COUNT, counted);
		reply_send(c, b, -1);
	}
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

void server_dispatch(struct conn *c, const void *msg, size_t len, bool truncated)
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
