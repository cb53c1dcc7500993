/*
 * fetch.c - lookup, single flight, admission, copy, commit, dropping and
 * eviction (see fetch.h); checking cached copies is fetch_check.c's. Loop
 * thread, except the pool tasks' work functions.
 */
#include "fetch.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "backend.h"
#include "catalog.h"
#include "fastidx.h"
#include "fetch_impl.h"
#include "hint.h"
#include "log.h"
#include "metrics.h"
#include "peer.h"
#include "policy.h"
#include "pool.h"
#include "qos.h"
#include "recheck.h"
#include "uring.h"

#define COPY_CHUNK    (1u << 20)
#define FETCH_RETRIES 3

struct fetch {
	struct pool_task task;
	struct uring_req io;
	struct backend_call call; /* remote backends */
	struct peer_call pcall;	  /* the rack */
	bool peer_tried, from_peer;
	struct granaryd *d;
	struct mount *m;
	char *path;
	const char *rel;
	struct fetch_waiter *waiters;
	struct validator v;
	int srcfd, tmpfd;
	uint64_t id;
	uint64_t off; /* bytes copied */
	size_t wdone; /* bytes of the current chunk written */
	size_t chunk; /* bytes of the current chunk read */
	uint8_t *buf;
	size_t bufsz;
	XXH3_state_t *xx;
	uint64_t checksum;
	int err;
	bool changed;	  /* the source changed while copied */
	bool invalidated; /* dropped by a client while fetched */
	bool admitted;
	bool staged;	     /* tmp/<id> exists */
	bool not_kept;	     /* blind GET stopped: not admitted, and nobody wants the bytes */
	struct qos_req slot; /* backend slot, foreground or background */
	unsigned attempts;
	int64_t start_ns;
	char msg[256];
};

static struct object *entry_object(struct policy_entry *e)
{
	return (struct object *)((char *)e - offsetof(struct object, pe));
}

static bool needs_validation(struct granaryd *d, const struct object *o)
{
	const struct config_mount *cm = o->mount->cfg;

	switch (cm->consistency) {
	case CONFIG_CONSISTENCY_IMMUTABLE:
		return false;
	case CONFIG_CONSISTENCY_TTL:
		return clock_now_ns() - o->validated_ns >= (int64_t)cm->ttl_ns;
	case CONFIG_CONSISTENCY_STRICT:
	default:
		(void)d;
		return true;
	}
}

bool fetch_fresh(struct granaryd *d, const struct object *o)
{
	return o->state == OBJ_CACHED && !needs_validation(d, o);
}

/* Per-mount fetch counts and time, for status and `granary top`. */
static void mount_fetch_observed(struct mount *m, int64_t start_ns, int err)
{
	m->fetch_seconds += (double)(clock_now_ns() - start_ns) / 1e9;
	if (err)
		m->fetch_errors++;
	else
		m->fetches++;
}

/* ---- the shared index ---- */

bool fetch_mount_private(const struct mount *m)
{
	return m->cfg->n_allow_uids || m->cfg->n_allow_gids;
}

bool fetch_fast_eligible(const struct mount *m)
{
	const struct config_mount *cm = m->cfg;

	/* NAS mounts: clients check the original themselves and open the copy */
	if (cm->backend == CONFIG_BACKEND_POSIX)
		return true;
	/*
	 * Object stores: no original to check, so only what is not checked again
	 * (immutable) or not before its ttl (the slot says when it was last
	 * validated; clients ask the daemon past it), and only when anyone may
	 * read it: an allow list needs the daemon to look at the caller.
	 */
	return cm->consistency != CONFIG_CONSISTENCY_STRICT && !cm->n_allow_uids &&
	       !cm->n_allow_gids;
}

void fetch_publish(struct granaryd *d, struct object *o)
{
	recheck_track(d, o);
	/* only public copies: a private one reaches a caller after its check */
	if (d->fx && o->verified && !o->v.restricted && fetch_fast_eligible(o->mount))
		fastidx_put(d->fx, o, (uint32_t)(o->mount - d->mounts));
}

/* ---- dropping and eviction ---- */

/* Write @o's catalog row (added, or changed in place). */
void fetch_catalog_put(struct granaryd *d, const struct object *o)
{
	struct catalog_row row;

	memset(&row, 0, sizeof(row));
	row.id = o->id;
	row.path = o->path;
	row.mount = o->mount->cfg->path;
	row.size = o->v.size;
	row.mtime_ns = o->v.mtime_ns;
	row.ino = o->v.ino;
	row.dev = o->v.dev;
	/* the top bit keeps `restricted` without a schema change */
	row.mode = o->v.mode | (o->v.restricted ? CATALOG_MODE_RESTRICTED : 0);
	row.uid = o->v.uid;
	row.gid = o->v.gid;
	row.etag = o->v.etag;
	row.checksum = o->checksum;
	row.last_access = o->last_access;
	row.pinned = o->pe.pinned;
	catalog_put(d->cat, &row);
}

static void object_forget(struct granaryd *d, struct object *o)
{
	struct mount *m = o->mount;

	if (d->fx)
		fastidx_del(d->fx, o);
	recheck_untrack(d, o);
	store_object_unlink(&d->store, o->id, o->v.restricted);
	catalog_del(d->cat, o->id);
	d->used -= o->v.size;
	m->objects--;
	m->bytes -= o->v.size;
	index_del(d->idx, o);
}

void fetch_drop(struct granaryd *d, struct object *o, bool evicted)
{
	if (o->state == OBJ_FETCHING) {
		if (o->fetch)
			o->fetch->invalidated = true;
		return;
	}
	if (o->in_policy)
		policy_remove(d->policy, &o->pe);
	o->in_policy = false;
	if (evicted)
		d->c.evictions++;
	object_forget(d, o);
}

static void evict_one(struct granaryd *d, struct policy_entry *e)
{
	struct object *o = entry_object(e);

	o->in_policy = false; /* policy_victim unlinked it */
	d->c.evictions++;
	log_debug("evicted path=%s bytes=%llu", o->path, (unsigned long long)o->v.size);
	object_forget(d, o);
}

#define FULL_RETRY_NS (10 * NS_PER_S)

/*
 * The cache's file system is full before the configured capacity: bring the
 * watermarks down to what it holds now and evict toward them. Ten seconds
 * later the configured ones are tried again (space may have been freed).
 */
static void disk_full(struct granaryd *d)
{
	int64_t now = clock_now_ns();

	if (!d->full_since_ns)
		log_err("cache file system is full before the configured capacity, using what "
			"it holds dir=%s used=%llu capacity=%llu",
			d->store.dir, (unsigned long long)d->used,
			(unsigned long long)d->cfg->cache.capacity);
	d->full_since_ns = now;
	d->high = d->used * 95 / 100;
	d->low = d->used * 90 / 100;
	fetch_trim(d);
}

static void disk_full_recheck(struct granaryd *d)
{
	if (d->full_since_ns && clock_now_ns() - d->full_since_ns >= FULL_RETRY_NS) {
		d->full_since_ns = 0;
		d->high = d->high_cfg;
		d->low = d->low_cfg;
		log_info("trying the configured cache capacity again dir=%s", d->store.dir);
	}
}

/*
 * Make room for @size new bytes of dataset @ds. Returns true when they fit
 * under the high watermark; evicts down to the low one where the policy allows.
 */
static bool make_room(struct granaryd *d, uint32_t ds, uint64_t size)
{
	uint64_t after;
	struct policy_entry *e;

	disk_full_recheck(d);
	after = d->used + d->reserved + size;

	if (size > d->high)
		return false;
	if (after <= d->high)
		return true;
	if (!policy_admit(d->policy, ds, size, after - d->high))
		return false;
	while (d->used + d->reserved + size > d->low && (e = policy_victim(d->policy)))
		evict_one(d, e);
	return d->used + d->reserved + size <= d->high;
}

void fetch_trim(struct granaryd *d)
{
	struct policy_entry *e;

	if (d->used + d->reserved <= d->high)
		return;
	while (d->used + d->reserved > d->low && (e = policy_victim(d->policy)))
		evict_one(d, e);
}

/* ---- completing a fetch ---- */

static void fetch_free(struct fetch *f)
{
	if (f->srcfd >= 0)
		close(f->srcfd);
	if (f->tmpfd >= 0)
		close(f->tmpfd);
	if (f->xx)
		XXH3_freeState(f->xx);
	free(f->buf);
	free(f->path);
	free(f);
}

static void release_staging(struct fetch *f)
{
	struct granaryd *d = f->d;

	if (f->tmpfd >= 0) {
		close(f->tmpfd);
		f->tmpfd = -1;
	}
	if (f->staged) {
		store_tmp_unlink(&d->store, f->id);
		f->staged = false;
	}
	if (f->admitted) {
		d->reserved -= f->v.size;
		f->admitted = false;
	}
}

static void fetch_fail(struct fetch *f, int err, const char *msg)
{
	struct granaryd *d = f->d;
	struct fetch_waiter *w = f->waiters, *next;
	struct object *o = index_get(d->idx, f->path);

	if (err != -ENOENT && err != -EISDIR && err != -EACCES && err != -EPERM) {
		struct mount *m = f->m;
		int64_t now = clock_now_ns();

		d->c.fetch_errors++;
		/* one warning a second a mount: a dead backend must not flood the log */
		if (now - m->warned_ns >= NS_PER_S) {
			log_errno(LOG_WARNING, err,
				  "fetch failed mount=%s path=%s detail=\"%s\" suppressed=%llu",
				  m->cfg->path, f->path, msg, (unsigned long long)m->unwarned);
			m->warned_ns = now;
			m->unwarned = 0;
		} else {
			m->unwarned++;
			log_errno(LOG_DEBUG, err, "fetch failed mount=%s path=%s detail=\"%s\"",
				  m->cfg->path, f->path, msg);
		}
	}
	release_staging(f);
	if (o && o->fetch == f)
		index_del(d->idx, o);
	d->fetches_inflight--;
	qos_release(d, &f->slot);
	mount_fetch_observed(f->m, f->start_ns, err);
	metrics_fetch_observed(d, f->m, (double)(clock_now_ns() - f->start_ns) / 1e9, 0, err);
	f->waiters = NULL;
	for (; w; w = next) {
		next = w->next;
		w->done(w, NULL, -1, err, msg, PROTO_SRC_BACKEND);
	}
	fetch_free(f);
}

static int reopen_fd(int fd)
{
	char p[64];
	int nfd;

	snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
	nfd = open(p, O_RDONLY | O_CLOEXEC);
	return nfd < 0 ? -errno : nfd;
}

/* The policy will not keep it: hand each reader the source itself. */
static void fetch_direct(struct fetch *f)
{
	struct granaryd *d = f->d;
	struct fetch_waiter *w = f->waiters, *next;
	struct object *o = index_get(d->idx, f->path);
	enum proto_source src = f->from_peer ? PROTO_SRC_PEER : PROTO_SRC_DIRECT;

	if (!f->from_peer)
		d->c.not_admitted++;
	if (o && o->fetch == f)
		index_del(d->idx, o);
	d->fetches_inflight--;
	qos_release(d, &f->slot);
	f->waiters = NULL;
	for (; w; w = next) {
		int fd = -1;

		next = w->next;
		w->size = f->v.size;
		if (w->want_fd) {
			fd = reopen_fd(f->srcfd);
			if (fd < 0) {
				w->done(w, NULL, -1, fd, "cannot reopen the source", src);
				continue;
			}
			if (!f->from_peer)
				d->c.bytes_direct += f->v.size;
		}
		w->done(w, NULL, fd, 0, "", src);
	}
	fetch_free(f);
}

static void fetch_start(struct fetch *f);

static void fetch_committed(struct fetch *f)
{
	struct granaryd *d = f->d;
	struct mount *m = f->m;
	struct fetch_waiter *w = f->waiters, *next;
	struct object *o = index_get(d->idx, f->path);
	bool read = false;

	if (!o || o->fetch != f) {
		/* cannot happen: a fetching object is only removed by its fetch */
		store_object_unlink(&d->store, f->id, f->v.restricted);
		fetch_fail(f, -EIO, "internal: object vanished during fetch"); /* releases all */
		return;
	}
	d->reserved -= f->v.size;
	f->admitted = false;
	d->fetches_inflight--;
	qos_release(d, &f->slot);
	o->state = OBJ_CACHED;
	o->fetch = NULL;
	o->id = f->id;
	o->v = f->v;
	o->checksum = f->checksum;
	o->validated_ns = clock_now_ns();
	o->last_access = clock_real_s();
	o->verified = true;
	d->used += f->v.size;
	m->objects++;
	m->bytes += f->v.size;
	d->c.fetches++;
	if (!f->from_peer)
		d->c.bytes_backend += f->v.size;

	for (w = f->waiters; w; w = w->next)
		read |= w->foreground;
	o->pe.size = f->v.size;
	o->pe.dataset = m->dataset;
	o->pe.pinned = false;
	if (read)
		policy_insert(d->policy, &o->pe);
	else
		policy_insert_unread(d->policy, &o->pe);
	o->in_policy = true;
	hint_apply(d, o);

	fetch_catalog_put(d, o);
	fetch_publish(d, o);

	mount_fetch_observed(m, f->start_ns, 0);
	metrics_fetch_observed(d, m, (double)(clock_now_ns() - f->start_ns) / 1e9, f->v.size, 0);
	log_debug("fetched path=%s bytes=%llu ms=%.3f", o->path, (unsigned long long)o->v.size,
		  (double)(clock_now_ns() - f->start_ns) / 1e6);
	w = f->waiters;
	f->waiters = NULL;
	for (; w; w = next) {
		next = w->next;
		w->size = f->v.size;
		/* re-look-up: an earlier waiter's answer cannot drop it, but be safe */
		o = index_get(d->idx, f->path);
		if (!o) {
			w->done(w, NULL, -1, -EAGAIN, "object dropped while answering",
				PROTO_SRC_BACKEND);
			continue;
		}
		w->done(w, o, -1, 0, "", f->from_peer ? PROTO_SRC_PEER : PROTO_SRC_BACKEND);
	}
	fetch_free(f);
}

/* worker thread: check the source did not change, sync, rename into place */
static void finish_work(struct pool_task *t)
{
	struct fetch *f = (struct fetch *)t;
	struct stat sb;

	f->err = 0;
	if (f->srcfd < 0 || f->from_peer) {
		/* remote: the GET was conditional; a peer's memfd is sealed */
	} else if (fstat(f->srcfd, &sb) < 0) {
		f->err = -errno;
		snprintf(f->msg, sizeof(f->msg), "fstat of the source failed");
		return;
	} else if ((uint64_t)sb.st_size != f->v.size || clock_ns_of(&sb.st_mtim) != f->v.mtime_ns) {
		f->changed = true;
		return;
	}
	if (f->d->cfg->cache.durability == CONFIG_DURABILITY_FSYNC && fsync(f->tmpfd) < 0) {
		f->err = -errno;
		snprintf(f->msg, sizeof(f->msg), "fsync of the staging file failed");
		return;
	}
	/* an allow list makes every copy of the mount private */
	f->v.restricted = f->v.restricted || fetch_mount_private(f->m);
	f->err = store_commit(&f->d->store, f->id, f->tmpfd, f->v.restricted);
	close(f->tmpfd);
	f->tmpfd = -1;
	if (f->err)
		snprintf(f->msg, sizeof(f->msg), "rename into the cache failed");
	else
		f->staged = false;
}

static void retry_or_fail(struct fetch *f, const char *why)
{
	release_staging(f);
	if (++f->attempts >= FETCH_RETRIES) {
		fetch_fail(f, -EAGAIN, why);
		return;
	}
	f->d->c.refetches_changed++;
	if (f->srcfd >= 0)
		close(f->srcfd);
	f->srcfd = -1;
	f->changed = f->invalidated = false;
	f->off = 0;
	f->d->fetches_inflight--;
	fetch_start(f);
}

static void finish_done(struct pool_task *t)
{
	struct fetch *f = (struct fetch *)t;

	if (f->changed) {
		retry_or_fail(f, "the source kept changing while it was copied");
		return;
	}
	if (f->err) {
		fetch_fail(f, f->err, f->msg);
		return;
	}
	if (f->invalidated) {
		/* written by a client after we began: the copy may be old */
		store_object_unlink(&f->d->store, f->id, f->v.restricted);
		retry_or_fail(f, "the source kept changing while it was copied");
		return;
	}
	if (!f->m->ops->get_async || f->from_peer)
		f->checksum = XXH3_64bits_digest(f->xx);
	fetch_committed(f);
}

static void copy_step(struct fetch *f);

static void write_done(struct uring_req *r)
{
	struct fetch *f = r->arg;

	if (r->res == -ENOSPC && f->srcfd >= 0) {
		/* the disk holds less than configured: shrink, serve from the source */
		disk_full(f->d);
		release_staging(f);
		fetch_direct(f);
		return;
	}
	if (r->res < 0) {
		snprintf(f->msg, sizeof(f->msg), "writing the staging file failed: %s",
			 strerror((int)-r->res));
		fetch_fail(f, (int)r->res, f->msg);
		return;
	}
	f->wdone += (size_t)r->res;
	if (f->wdone < f->chunk) {
		r->buf = f->buf + f->wdone;
		r->len = f->chunk - f->wdone;
		r->off = (off_t)(f->off + f->wdone);
		uring_submit(f->d->io, r);
		return;
	}
	f->off += f->chunk;
	copy_step(f);
}

static void read_done(struct uring_req *r)
{
	struct fetch *f = r->arg;

	if (f->d->stopping) {
		fetch_fail(f, -ECANCELED, "granaryd is shutting down");
		return;
	}
	if (r->res < 0) {
		snprintf(f->msg, sizeof(f->msg), "reading the source failed: %s",
			 strerror((int)-r->res));
		fetch_fail(f, (int)r->res, f->msg);
		return;
	}
	if (r->res == 0) {
		/* shorter than it said: it is being rewritten */
		retry_or_fail(f, "the source kept changing while it was copied");
		return;
	}
	f->chunk = (size_t)r->res;
	f->wdone = 0;
	XXH3_64bits_update(f->xx, f->buf, f->chunk);
	r->op = URING_WRITE;
	r->fd = f->tmpfd;
	r->buf = f->buf;
	r->len = f->chunk;
	r->off = (off_t)f->off;
	r->done = write_done;
	uring_submit(f->d->io, r);
}

static void copy_step(struct fetch *f)
{
	uint64_t left = f->v.size - f->off;

	if (left == 0) {
		f->task.work = finish_work;
		f->task.done = finish_done;
		pool_submit(f->d->pool, &f->task);
		return;
	}
	memset(&f->io, 0, sizeof(f->io));
	f->io.op = URING_READ;
	f->io.fd = f->srcfd;
	f->io.buf = f->buf;
	f->io.len = left < f->bufsz ? (size_t)left : f->bufsz;
	f->io.off = (off_t)f->off;
	f->io.done = read_done;
	f->io.arg = f;
	uring_submit(f->d->io, &f->io);
}

/* worker thread: open the source */
static void open_work(struct pool_task *t)
{
	struct fetch *f = (struct fetch *)t;

	f->msg[0] = '\0';
	if (f->srcfd >= 0) /* opened by the caller's check */
		f->err = f->m->ops->describe_fd(f->m, f->srcfd, &f->v, f->msg, sizeof(f->msg));
	else
		f->err = f->m->ops->open(f->m, f->rel, &f->srcfd, &f->v, f->msg, sizeof(f->msg));
}

static void get_done(struct backend_call *call);

static bool wants_fd(const struct fetch *f)
{
	const struct fetch_waiter *w;

	for (w = f->waiters; w; w = w->next)
		if (w->want_fd)
			return true;
	return false;
}

/* A new object id and its staging file for @f; fails @f and returns -1 if none. */
static int stage(struct fetch *f)
{
	struct granaryd *d = f->d;
	int fd;

	f->id = d->next_id++;
	fd = store_tmp_create(&d->store, f->id);
	if (fd < 0) {
		log_errno(LOG_ERR, fd, "cannot create staging file dir=%s", d->store.dir);
		fetch_fail(f, fd, "cannot create a staging file in the cache");
		return -1;
	}
	f->tmpfd = fd;
	f->staged = true;
	return 0;
}

/* The source is described: admit the object or serve it directly, then copy. */
static void fetch_described(struct fetch *f)
{
	struct granaryd *d = f->d;
	size_t want;

	if (d->stopping) {
		fetch_fail(f, -ECANCELED, "granaryd is shutting down");
		return;
	}
	if (!make_room(d, f->m->dataset, f->v.size)) {
		fetch_direct(f);
		return;
	}
	f->admitted = true;
	d->reserved += f->v.size;
	qos_charge(d, &f->slot, f->v.size);
	if (stage(f) < 0)
		return;
	want = f->v.size < COPY_CHUNK ? (size_t)f->v.size : COPY_CHUNK;
	if (want == 0)
		want = 1;
	if (f->bufsz < want) {
		free(f->buf);
		f->buf = malloc(want);
		f->bufsz = f->buf ? want : 0;
		if (!f->buf) {
			fetch_fail(f, -ENOMEM, "out of memory");
			return;
		}
	}
	XXH3_64bits_reset(f->xx);
	f->off = 0;
	copy_step(f);
}

static void open_done(struct pool_task *t)
{
	struct fetch *f = (struct fetch *)t;

	if (f->err) {
		fetch_fail(f, f->err, f->msg);
		return;
	}
	fetch_described(f);
}

static void get_done(struct backend_call *call)
{
	struct fetch *f = call->arg;

	if (call->err && f->not_kept) {
		release_staging(f);
		fetch_direct(f); /* warms only: nothing more to download */
		return;
	}
	if (call->err) {
		fetch_fail(f, call->err, call->msg);
		return;
	}
	if (call->type == PROTO_FT_DIR) {
		fetch_fail(f, -EISDIR, "");
		return;
	}
	if (call->bytes != f->v.size) {
		snprintf(f->msg, sizeof(f->msg), "got %llu bytes of %llu",
			 (unsigned long long)call->bytes, (unsigned long long)f->v.size);
		fetch_fail(f, -EIO, f->msg);
		return;
	}
	if (!f->admitted) {
		/* a memfd for direct readers: make it immutable first */
		if (fcntl(f->srcfd, F_ADD_SEALS,
			  F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
			fetch_fail(f, -errno, "cannot seal the memfd");
			return;
		}
		fetch_direct(f);
		return;
	}
	f->checksum = call->checksum;
	f->task.work = finish_work;
	f->task.done = finish_done;
	pool_submit(f->d->pool, &f->task);
}

/* Copy the first @n bytes of @from to @to (the part of a blind GET already in). */
static int copy_prefix(int from, int to, uint64_t n)
{
	uint8_t buf[64 * 1024];
	uint64_t off = 0;

	while (off < n) {
		size_t want = n - off < sizeof(buf) ? (size_t)(n - off) : sizeof(buf);
		ssize_t r = pread(from, buf, want, (off_t)off), w;

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		w = pwrite(to, buf, (size_t)r, (off_t)off);
		if (w != r)
			return w < 0 ? -errno : -EIO;
		off += (uint64_t)r;
	}
	return 0;
}

/*
 * The first range of a blind GET described the object (its first
 * call->bytes are in the staging file): admit it, or, when the policy will
 * not keep it, move those bytes to a memfd for the readers (or stop, when
 * only warms wait: nothing would use the bytes).
 */
static int blind_described(struct backend_call *call, int *fd)
{
	struct fetch *f = call->arg;
	struct granaryd *d = f->d;
	int mfd, rc;

	f->v = call->v;
	if (d->stopping) {
		snprintf(call->msg, sizeof(call->msg), "granaryd is shutting down");
		return -ECANCELED;
	}
	if (make_room(d, f->m->dataset, f->v.size)) {
		f->admitted = true;
		d->reserved += f->v.size;
		qos_charge(d, &f->slot, f->v.size);
		return 0;
	}
	if (!wants_fd(f)) {
		f->not_kept = true;
		snprintf(call->msg, sizeof(call->msg), "not admitted");
		return -ECANCELED;
	}
	mfd = memfd_create("granary", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (mfd < 0) {
		rc = -errno;
		snprintf(call->msg, sizeof(call->msg), "cannot create a memfd");
		return rc;
	}
	rc = copy_prefix(f->tmpfd, mfd, call->bytes);
	if (rc < 0) {
		close(mfd);
		snprintf(call->msg, sizeof(call->msg), "cannot copy to a memfd: %s", strerror(-rc));
		return rc;
	}
	release_staging(f); /* the backend writes to the memfd from now on */
	f->srcfd = mfd;
	*fd = mfd;
	return 0;
}

/*
 * Remote: one GET, no HEAD. Its first range lands in a staging file before
 * the object is admitted (at most fetch.chunk_size bytes; the whole object
 * from a server that ignores Range), and describes it.
 */
static void fetch_blind(struct fetch *f)
{
	if (stage(f) < 0)
		return;
	f->not_kept = false;
	memset(&f->call, 0, sizeof(f->call));
	f->call.done = get_done;
	f->call.described = blind_described;
	f->call.arg = f;
	f->call.foreground = f->waiters && f->waiters->foreground;
	f->m->ops->get_async(f->m, f->rel, f->tmpfd, &f->call);
}

static void fetch_source(struct fetch *f);

static void peer_done(struct peer_call *call)
{
	struct fetch *f = call->arg;

	if (call->err) {
		/* the owner is gone or failed: the backend, as if it never was */
		log_debug("peer fetch failed, using the backend path=%s detail=\"%s\"", f->path,
			  call->msg);
		fetch_source(f);
		return;
	}
	f->from_peer = true;
	if (f->srcfd >= 0)
		close(f->srcfd); /* the caller's open of the source: the owner's copy serves */
	f->srcfd = call->fd;
	f->v = call->v;
	f->d->c.bytes_peer += f->v.size;
	if (f->m->cfg->placement == CONFIG_PLACEMENT_REPLICATE) {
		fetch_described(f); /* keep a copy: copied from the memfd */
		return;
	}
	fetch_direct(f); /* partition: the owner keeps it; readers get the memfd */
}

/* Holding a backend slot: describe the source (the owner in the rack first). */
static void fetch_source(struct fetch *f)
{
	if (!f->peer_tried && peer_remote_owner(f->d, f->m, f->path)) {
		f->peer_tried = true;
		memset(&f->pcall, 0, sizeof(f->pcall));
		f->pcall.fd = -1;
		f->pcall.done = peer_done;
		f->pcall.arg = f;
		peer_fetch(f->d, f->m, f->path, &f->pcall);
		return;
	}
	if (f->m->ops->get_async) {
		fetch_blind(f);
		return;
	}
	f->task.work = open_work;
	f->task.done = open_done;
	pool_submit(f->d->pool, &f->task);
}

static void slot_granted(struct qos_req *q)
{
	struct fetch *f = (struct fetch *)((char *)q - offsetof(struct fetch, slot));

	if (f->d->stopping) {
		fetch_fail(f, -ECANCELED, "granaryd is shutting down");
		return;
	}
	fetch_source(f);
}

static void fetch_start(struct fetch *f)
{
	f->d->fetches_inflight++;
	f->start_ns = clock_now_ns();
	f->slot.start = slot_granted;
	if (!qos_acquire(f->d, &f->slot, f->waiters && f->waiters->foreground))
		return; /* queued: slot_granted goes on */
	fetch_source(f);
}

static void fetch_new(struct granaryd *d, struct mount *m, const char *path, struct fetch_waiter *w)
{
	struct fetch *f = calloc(1, sizeof(*f));
	struct object *o;

	if (!f || !(f->path = strdup(path)) || !(f->xx = XXH3_createState())) {
		if (f) {
			free(f->path);
			free(f);
		}
		w->done(w, NULL, -1, -ENOMEM, "out of memory", PROTO_SRC_BACKEND);
		return;
	}
	o = index_add(d->idx, path, m);
	if (!o) {
		XXH3_freeState(f->xx);
		free(f->path);
		free(f);
		w->done(w, NULL, -1, -ENOMEM, "out of memory", PROTO_SRC_BACKEND);
		return;
	}
	o->state = OBJ_FETCHING;
	o->fetch = f;
	f->d = d;
	f->m = m;
	f->rel = mount_rel(m, f->path);
	f->srcfd = f->tmpfd = -1;
	if (w->has_srcfd) {
		/* copy the file the caller was allowed to open, not the path again */
		f->srcfd = w->srcfd;
		w->has_srcfd = false;
	}
	w->next = NULL;
	f->waiters = w;
	fetch_start(f);
}

static void miss(struct granaryd *d, struct mount *m, const char *path, struct fetch_waiter *w)
{
	struct object *o = index_get(d->idx, path);

	if (o && o->state == OBJ_FETCHING) {
		w->next = o->fetch->waiters;
		o->fetch->waiters = w;
		if (w->foreground)
			qos_promote(d, &o->fetch->slot); /* a reader overtakes queued warms */
		return;
	}
	fetch_new(d, m, path, w);
}

void fetch_get(struct granaryd *d, struct mount *m, const char *path, struct fetch_waiter *w)
{
	struct object *o = index_get(d->idx, path);

	w->next = NULL;
	if (o && o->state == OBJ_CACHED) {
		if (needs_validation(d, o))
			fetch_validate(d, m, path, w);
		else
			fetch_answer_hit(d, o, w);
		return;
	}
	if (w->foreground) {
		d->c.misses++;
		m->misses++;
		policy_miss(d->policy, m->dataset);
	}
	miss(d, m, path, w);
}

int fetch_open_cached(struct granaryd *d, struct object *o)
{
	int fd = store_object_open(&d->store, o->id, o->v.size, o->v.restricted);

	if (fd == -EIO || fd == -ENOENT) {
		log_warn("cache file damaged or missing, dropped path=%s id=%llu", o->path,
			 (unsigned long long)o->id);
		fetch_drop(d, o, false);
	}
	return fd;
}

struct object *fetch_restore(struct granaryd *d, struct mount *m, const char *path, uint64_t id,
			     const struct validator *v, uint64_t checksum, bool pinned)
{
	struct object *o = index_add(d->idx, path, m);

	if (!o)
		return NULL;
	o->state = OBJ_CACHED;
	o->id = id;
	o->v = *v;
	o->checksum = checksum;
	o->validated_ns = clock_now_ns();
	o->pe.size = v->size;
	o->pe.dataset = m->dataset;
	policy_insert_unread(d->policy, &o->pe);
	o->in_policy = true;
	if (pinned)
		policy_pin(d->policy, &o->pe, true);
	d->used += v->size;
	m->objects++;
	m->bytes += v->size;
	fetch_publish(d, o);
	return o;
}
