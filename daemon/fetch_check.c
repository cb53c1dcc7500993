/*
 * fetch_check.c - checking cached copies: validation against the source by
 * each mount's consistency, the rights re-check of public copies
 * (recheck.c), the checksum of a restored copy's first read, and answering a
 * hit (see fetch_impl.h). Loop thread, except the pool tasks' work functions.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "fastidx.h"
#include "fetch.h"
#include "fetch_impl.h"
#include "log.h"
#include "policy.h"
#include "pool.h"
#include "recheck.h"
#include "store.h"

/* A validation of a cached object against its source. */
struct validate {
	struct backend_call call; /* the backend's description of the source */
	struct granaryd *d;
	struct mount *m;
	struct fetch_waiter *w;
	bool recheck; /* the rights re-check (recheck.c): no waiter */
	char path[];
};

static void checksum_first(struct granaryd *d, struct object *o, struct fetch_waiter *w);

/*
 * A read by another node (peer.c) counts for the object only once per epoch:
 * several nodes reading it in one epoch is not a repeat revealing the next
 * epoch, which only this node's own readers (or an explicit advance) tell.
 */
static bool peer_read_counted(struct granaryd *d, const struct object *o)
{
	struct policy_dataset_stats st;

	policy_dataset_stats(d->policy, o->pe.dataset, &st);
	return o->pe.last_epoch >= st.epoch;
}

static void record_hit(struct granaryd *d, struct object *o, struct fetch_waiter *w)
{
	if (!w->foreground)
		return;
	d->c.hits++;
	o->mount->hits++;
	o->last_access = clock_real_s();
	if (o->in_policy && !(w->peer && peer_read_counted(d, o)))
		policy_access(d->policy, &o->pe);
}

void fetch_answer_hit(struct granaryd *d, struct object *o, struct fetch_waiter *w)
{
	if (!o->verified) {
		/* restored from the catalog: read it once before trusting it */
		checksum_first(d, o, w);
		return;
	}
	record_hit(d, o, w);
	w->size = o->v.size;
	w->done(w, o, -1, 0, "", PROTO_SRC_LOCAL);
}

/* ---- validation of cached objects ---- */

/*
 * The rights on @o's source changed, its content did not: follow them. A
 * copy whose source is no longer readable by every local user leaves the
 * shared index first, then the public tree. Returns false when the copy had
 * to be dropped instead.
 */
static bool rights_changed(struct granaryd *d, struct object *o, const struct validator *nv)
{
	bool priv = nv->restricted || fetch_mount_private(o->mount);
	int rc;

	o->v.mode = nv->mode;
	o->v.uid = nv->uid;
	o->v.gid = nv->gid;
	if (priv != o->v.restricted) {
		if (priv && d->fx)
			fastidx_del(d->fx, o);
		if (priv)
			recheck_untrack(d, o);
		rc = store_object_move(&d->store, o->id, priv);
		if (rc < 0) {
			log_errno(LOG_ERR, rc, "cannot move a copy between trees, dropped path=%s",
				  o->path);
			fetch_drop(d, o, false);
			return false;
		}
		o->v.restricted = priv;
		d->c.made_private += priv;
		log_info("copy is now %s path=%s", priv ? "private" : "public", o->path);
	}
	fetch_catalog_put(d, o);
	return true;
}

static void validated(struct validate *v)
{
	struct granaryd *d = v->d;
	struct fetch_waiter *w = v->w;
	struct object *o = index_get(d->idx, v->path);

	d->c.validations++;
	if (v->recheck)
		recheck_done(d);
	if (v->recheck && o && o->state == OBJ_CACHED && !v->call.err &&
	    !backend_same_version(&o->v, &v->call.v) &&
	    o->mount->cfg->consistency == CONFIG_CONSISTENCY_IMMUTABLE) {
		/* immutable: the rights are checked again, the bytes are not */
		v->call.v.size = o->v.size;
		v->call.v.mtime_ns = o->v.mtime_ns;
		v->call.v.ino = o->v.ino;
		v->call.v.dev = o->v.dev;
		memcpy(v->call.v.etag, o->v.etag, sizeof(v->call.v.etag));
	}
	if (!o || o->state != OBJ_CACHED) {
		/* dropped or refetching meanwhile: start over */
		if (w)
			fetch_get(d, v->m, v->path, w);
	} else if (v->call.err == -ENOENT) {
		fetch_drop(d, o, false);
		if (w)
			w->done(w, NULL, -1, -ENOENT, "the source no longer exists",
				PROTO_SRC_BACKEND);
	} else if (v->call.err) {
		/* the daemon itself may no longer read it: nobody gets it from us */
		if (v->call.err == -EACCES && !w)
			fetch_drop(d, o, false);
		if (w)
			w->done(w, NULL, -1, v->call.err,
				v->call.msg[0] ? v->call.msg : "cannot validate against the source",
				PROTO_SRC_BACKEND);
	} else if (v->call.type == PROTO_FT_REG && backend_same_version(&o->v, &v->call.v)) {
		bool republish = o->mount->cfg->consistency == CONFIG_CONSISTENCY_TTL;

		o->validated_ns = clock_now_ns();
		if (o->v.mode != v->call.v.mode || o->v.uid != v->call.v.uid ||
		    o->v.gid != v->call.v.gid ||
		    o->v.restricted != (v->call.v.restricted || fetch_mount_private(o->mount))) {
			if (!rights_changed(d, o, &v->call.v)) {
				if (w)
					fetch_get(d, v->m, v->path, w);
				free(v);
				return;
			}
			republish = true;
		}
		/* a ttl mount's slot carries the validation time: clients count from it */
		if (republish)
			fetch_publish(d, o);
		if (w)
			fetch_answer_hit(d, o, w);
	} else {
		log_debug("source changed path=%s", o->path);
		fetch_drop(d, o, false);
		if (w) {
			d->c.refetches_changed++;
			fetch_get(d, v->m, v->path, w);
		}
	}
	free(v);
}

static void validate_answered(struct backend_call *call);

/* Describe @o's source for a validation; validated() follows on the loop. */
static void validate_start(struct validate *v)
{
	v->call.done = validate_answered;
	v->call.arg = v;
	if (v->w && v->w->has_srcfd && v->m->ops->describe_fd)
		backend_describe_fd_call(v->m, v->w->srcfd, &v->call);
	else
		backend_describe_call(v->m, mount_rel(v->m, v->path), &v->call);
}

int fetch_recheck(struct granaryd *d, struct object *o)
{
	size_t n = strlen(o->path) + 1;
	struct validate *v = calloc(1, sizeof(*v) + n);

	if (!v)
		return -ENOMEM;
	memcpy(v->path, o->path, n);
	v->d = d;
	v->m = o->mount;
	v->recheck = true;
	validate_start(v);
	return 0;
}

static void validate_answered(struct backend_call *call)
{
	validated(call->arg);
}

/* ---- the first read of an object restored at start-up ---- */

struct checksum_task {
	struct pool_task task;
	struct granaryd *d;
	struct mount *m;
	struct fetch_waiter *waiters; /* every reader that came while it ran */
	uint64_t id, size, checksum;
	bool priv;
	bool ok;
	char path[];
};

static void checksum_work(struct pool_task *t)
{
	struct checksum_task *c = (struct checksum_task *)t;
	uint64_t sum = 0;

	c->ok = store_object_checksum(&c->d->store, c->id, c->size, c->priv, &sum) == 0 &&
		sum == c->checksum;
}

static void checksum_done(struct pool_task *t)
{
	struct checksum_task *c = (struct checksum_task *)t;
	struct granaryd *d = c->d;
	struct object *o = index_get(d->idx, c->path);
	struct fetch_waiter *w, *next;

	if (o && o->verifying == c)
		o->verifying = NULL;
	if (o && o->state == OBJ_CACHED && o->id == c->id) {
		if (c->ok) {
			o->verified = true;
			fetch_publish(d, o);
		} else {
			d->c.corrupt++;
			log_warn(
				"cache file failed its checksum, dropped and fetched again path=%s id=%llu",
				o->path, (unsigned long long)o->id);
			fetch_drop(d, o, false);
		}
	}
	/* start over: a hit now, or a miss that fetches a good copy (once, for all) */
	w = c->waiters;
	c->waiters = NULL;
	for (; w; w = next) {
		next = w->next;
		fetch_get(d, c->m, c->path, w);
	}
	free(c);
}

static void checksum_first(struct granaryd *d, struct object *o, struct fetch_waiter *w)
{
	size_t n = strlen(o->path) + 1;
	struct checksum_task *c;

	if (o->verifying) {
		/* one read of the copy answers every reader who comes meanwhile */
		w->next = o->verifying->waiters;
		o->verifying->waiters = w;
		return;
	}
	c = calloc(1, sizeof(*c) + n);
	if (!c) {
		w->done(w, NULL, -1, -ENOMEM, "out of memory", PROTO_SRC_LOCAL);
		return;
	}
	memcpy(c->path, o->path, n);
	c->d = d;
	c->m = o->mount;
	w->next = NULL;
	c->waiters = w;
	o->verifying = c;
	c->id = o->id;
	c->size = o->v.size;
	c->priv = o->v.restricted;
	c->checksum = o->checksum;
	c->task.work = checksum_work;
	c->task.done = checksum_done;
	pool_submit(d->pool, &c->task);
}

void fetch_validate(struct granaryd *d, struct mount *m, const char *path, struct fetch_waiter *w)
{
	size_t n = strlen(path) + 1;
	struct validate *v = calloc(1, sizeof(*v) + n);

	if (!v) {
		w->done(w, NULL, -1, -ENOMEM, "out of memory", PROTO_SRC_LOCAL);
		return;
	}
	memcpy(v->path, path, n);
	v->d = d;
	v->m = m;
	v->w = w;
	v->call.foreground = w->foreground;
	validate_start(v);
}
