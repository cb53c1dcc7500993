/*
 * peer_serve.c - the owner side of the rack (see peer_impl.h): this node's
 * objects sent to the nodes that ask for them.
 *
 * DESIGN: a GET becomes a push, which asks fetch_get() for the object (cache
 * or backend), answers INFO, then for each window the requester offers reads
 * the copy into registered buffers (CHUNKS of them shared by every push, at
 * most CHUNKS_PER_PUSH writes in flight per push) and fi_writes them there;
 * WDONE follows once every write to a window has completed, the last one
 * with the checksum of the whole, checked against the cache's own.
 *
 * The owner answers GETs through fetch_get(), so single flight holds across the rack:
 * every node sends the misses of an object to its owner. A path being served
 * to a peer is never forwarded again (peer_remote_owner() says no for it),
 * so two nodes that briefly disagree on who is alive cannot bounce a request
 * between them.
 */
#include "peer_impl.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- owner side: pushes ---- */

static void push_pump(struct push *ps);
static void chunks_pump(struct peer *p);

static void chunk_wait_remove(struct peer *p, struct push *ps)
{
	if (ps->waiting_chunk) {
		struct push *prev = NULL, *q;

		for (q = p->chunk_wait_head; q && q != ps; q = q->cnext)
			prev = q;
		if (q) {
			if (prev)
				prev->cnext = q->cnext;
			else
				p->chunk_wait_head = q->cnext;
			if (p->chunk_wait_tail == q)
				p->chunk_wait_tail = prev;
		}
		ps->waiting_chunk = false;
	}
}

static void push_unlink(struct peer *p, struct push *ps)
{
	struct push **pp;

	for (pp = &p->pushes; *pp; pp = &(*pp)->next) {
		if (*pp == ps) {
			*pp = ps->next;
			p->n_pushes--;
			break;
		}
	}
	chunk_wait_remove(p, ps);
}

static void push_destroy(struct push *ps)
{
	if (ps->fd >= 0)
		close(ps->fd);
	XXH3_freeState(ps->xx);
	free(ps);
}

/* Free @ps once nothing it started is outstanding. */
static void push_maybe_free(struct push *ps)
{
	if (ps->fetching || ps->reading || ps->writes)
		return;
	if (ps->orphan) {
		push_destroy(ps);
		return;
	}
	push_unlink(ps->p, ps);
	push_destroy(ps);
}

/* Stop sending @ps; with @err tell the requester (0: it knows, or is gone). */
static void push_abort(struct push *ps, int err, const char *why)
{
	struct peer *p = ps->p;

	if (ps->aborted)
		return;
	ps->aborted = true;
	if (why) {
		ps->n->push_failures++;
		log_debug("serving a peer stopped path=%s peer=%s detail=\"%s\"", ps->path,
			  ps->n->name, why);
	}
	if (err && ps->n->in == IN_UP) {
		struct m_wdone m = {.req = ps->req, .idx = ps->done_idx, .status = err};

		send_in(p, ps->n, M_WDONE, &m, sizeof(m));
	}
	chunk_wait_remove(p, ps);
	push_maybe_free(ps);
}

void chunk_put(struct peer *p, struct chunk *c)
{
	c->push = NULL;
	c->next = p->chunk_free;
	p->chunk_free = c;
}

/*
 * Send the WDONEs that are due, in window order; end the push after the last.
 * False when @ps is over (and maybe freed).
 */
static bool push_report(struct push *ps)
{
	struct peer *p = ps->p;

	for (;;) {
		struct push_win *w = &ps->win[ps->done_idx % WINDOWS_PER_PULL];
		struct m_wdone m;
		bool last;

		if (!w->active || w->idx != ps->done_idx || w->written < w->len)
			return true;
		last = w->off + w->len == ps->size;
		memset(&m, 0, sizeof(m));
		m.req = ps->req;
		m.idx = w->idx;
		if (last) {
			m.checksum = XXH3_64bits_digest(ps->xx);
			m.last = 1;
			if (ps->have_expect && m.checksum != ps->expect) {
				struct object *o = index_get(p->d->idx, ps->path);

				log_warn("cache file failed its checksum while serving a peer, "
					 "dropped path=%s id=%llu",
					 ps->path, (unsigned long long)ps->obj_id);
				p->d->c.corrupt++;
				if (o && o->state == OBJ_CACHED && o->id == ps->obj_id)
					fetch_drop(p->d, o, false);
				push_abort(ps, -EIO, "cached copy failed its checksum");
				return false;
			}
		}
		if (send_in(p, ps->n, M_WDONE, &m, sizeof(m)) < 0) {
			push_abort(ps, 0, "cannot send to the requester");
			return false;
		}
		w->active = false;
		ps->done_idx++;
		if (last) {
			ps->n->pushes++;
			ps->n->push_bytes += ps->size;
			log_debug("served a peer path=%s peer=%s bytes=%llu ms=%.3f", ps->path,
				  ps->n->name, (unsigned long long)ps->size,
				  (double)(clock_now_ns() - ps->start_ns) / 1e6);
			ps->aborted = true; /* nothing more to do */
			push_maybe_free(ps);
			return false;
		}
	}
}

void push_write_done(struct peer *p, struct chunk *c, int err)
{
	struct push *ps = c->push;
	struct push_win *w = &ps->win[c->win];

	ps->writes--;
	if (!ps->aborted && !err)
		w->written += c->len;
	chunk_put(p, c);
	if (ps->aborted) {
		push_maybe_free(ps);
	} else if (err) {
		/* reset: the requester is gone; else tell it, or it waits for its timeout */
		push_abort(ps, err == -ECONNRESET ? 0 : -EIO, strerror(-err));
	} else if (push_report(ps)) {
		push_pump(ps);
	}
	chunks_pump(p);
}

static void push_read_done(struct uring_req *r)
{
	struct push *ps = r->arg;
	struct peer *p = ps->p;
	struct chunk *c = ps->rd_chunk;
	struct push_win *w;
	int rc;

	ps->reading = false;
	ps->rd_chunk = NULL;
	if (ps->orphan) {
		/* the rack stopped: the buffer pool was left alone for this read */
		push_maybe_free(ps);
		return;
	}
	if (ps->aborted || r->res != (ssize_t)c->len) {
		chunk_put(p, c);
		if (!ps->aborted)
			push_abort(ps, -EIO,
				   r->res < 0 ? strerror((int)-r->res) : "short read of the copy");
		else
			push_maybe_free(ps);
		chunks_pump(p);
		return;
	}
	XXH3_64bits_update(ps->xx, c->buf, c->len);
	ps->read_off += c->len;
	w = &ps->win[c->win];
	rc = !p->fab ? -ENOTCONN
		     : fabric_write(p->fab, ps->n->fid, p->chunk_mr, c->buf, c->len,
				    w->raddr + (c->off - w->off), w->rkey, c);
	if (rc < 0) {
		chunk_put(p, c);
		push_abort(ps, 0, "cannot post a write");
		chunks_pump(p);
		return;
	}
	ps->writes++;
	push_pump(ps);
}

/* Start the next read of @ps when a window has room, a buffer is free and none is going. */
static void push_pump(struct push *ps)
{
	struct peer *p = ps->p;
	struct push_win *w = NULL;
	struct chunk *c;

	if (ps->aborted || ps->reading || ps->writes >= CHUNKS_PER_PUSH)
		return;
	for (uint32_t i = ps->done_idx; i < ps->next_idx; i++) {
		struct push_win *x = &ps->win[i % WINDOWS_PER_PULL];

		if (x->active && x->posted < x->len) {
			w = x;
			break;
		}
	}
	if (!w)
		return;
	c = p->chunk_free;
	if (!c) {
		if (!ps->waiting_chunk) {
			ps->waiting_chunk = true;
			ps->cnext = NULL;
			if (p->chunk_wait_tail)
				p->chunk_wait_tail->cnext = ps;
			else
				p->chunk_wait_head = ps;
			p->chunk_wait_tail = ps;
		}
		return;
	}
	p->chunk_free = c->next;
	c->push = ps;
	c->win = (int)(w - ps->win);
	c->len = w->len - w->posted < CHUNK_SIZE ? w->len - w->posted : CHUNK_SIZE;
	c->off = ps->read_off;
	w->posted += c->len;
	ps->rd_chunk = c;
	ps->reading = true;
	memset(&ps->rd, 0, sizeof(ps->rd));
	ps->rd.op = URING_READ;
	ps->rd.fd = ps->fd;
	ps->rd.buf = c->buf;
	ps->rd.len = c->len;
	ps->rd.off = (off_t)ps->read_off;
	ps->rd.done = push_read_done;
	ps->rd.arg = ps;
	uring_submit(p->d->io, &ps->rd);
}

/* Buffers came free: the pushes waiting for one go on, in order. */
static void chunks_pump(struct peer *p)
{
	while (p->chunk_free && p->chunk_wait_head) {
		struct push *ps = p->chunk_wait_head;

		p->chunk_wait_head = ps->cnext;
		if (!p->chunk_wait_head)
			p->chunk_wait_tail = NULL;
		ps->waiting_chunk = false;
		push_pump(ps);
	}
}

static void send_info_error(struct peer *p, struct node *n, uint64_t req, int err, const char *msg)
{
	struct m_info m;

	memset(&m, 0, sizeof(m));
	m.req = req;
	m.status = err ? err : -EIO;
	snprintf(m.msg, sizeof(m.msg), "%s", msg ? msg : "");
	send_in(p, n, M_INFO, &m, sizeof(m));
}

/* fetch_get answered the owner: describe the object to the requester. */
static void push_fetched(struct fetch_waiter *w, struct object *o, int direct_fd, int err,
			 const char *msg, enum proto_source src)
{
	struct push *ps = (struct push *)((char *)w - offsetof(struct push, w));
	struct peer *p = ps->p;
	struct validator v;
	struct m_info m;
	struct stat sb;

	(void)src;
	ps->fetching = false;
	if (ps->orphan || ps->aborted) {
		if (direct_fd >= 0)
			close(direct_fd);
		push_maybe_free(ps);
		return;
	}
	if (err) {
		send_info_error(p, ps->n, ps->req, err, msg);
		ps->n->push_failures++;
		ps->aborted = true;
		push_maybe_free(ps);
		return;
	}
	memset(&v, 0, sizeof(v));
	if (o) {
		ps->fd = fetch_open_cached(p->d, o);
		if (ps->fd < 0) {
			send_info_error(p, ps->n, ps->req, ps->fd, "cannot open the cached copy");
			ps->aborted = true;
			push_maybe_free(ps);
			return;
		}
		v = o->v;
		ps->expect = o->checksum;
		ps->have_expect = true;
		ps->obj_id = o->id;
	} else {
		/*
		 * Not kept here (the policy said no): the source itself, a file
		 * or a sealed memfd. Its own description is the best there is;
		 * whether the path to it is open to everyone is not in it, so
		 * the requester keeps its copy private.
		 */
		ps->fd = direct_fd;
		if (fstat(ps->fd, &sb) < 0) {
			send_info_error(p, ps->n, ps->req, -errno, "fstat of the source failed");
			ps->aborted = true;
			push_maybe_free(ps);
			return;
		}
		v.size = (uint64_t)sb.st_size;
		v.mtime_ns = clock_ns_of(&sb.st_mtim);
		v.ino = (uint64_t)sb.st_ino;
		v.mode = (uint32_t)sb.st_mode;
		v.uid = (uint32_t)sb.st_uid;
		v.gid = (uint32_t)sb.st_gid;
		v.restricted = true;
	}
	ps->size = v.size;
	memset(&m, 0, sizeof(m));
	m.req = ps->req;
	m.size = v.size;
	m.mtime_ns = v.mtime_ns;
	m.ino = v.ino;
	m.mode = v.mode;
	m.uid = v.uid;
	m.gid = v.gid;
	m.flags = v.restricted ? 0 : INFO_OPEN;
	memcpy(m.etag, v.etag, sizeof(m.etag));
	if (v.size == 0)
		m.checksum = XXH3_64bits(NULL, 0);
	ps->deadline_ns = clock_now_ns() + p->idle_ns;
	if (send_in(p, ps->n, M_INFO, &m, sizeof(m)) < 0) {
		push_abort(ps, 0, "cannot send to the requester");
		return;
	}
	if (v.size == 0) {
		ps->n->pushes++;
		ps->aborted = true;
		push_maybe_free(ps);
	}
}

void on_get(struct peer *p, struct node *n, const struct m_get *m, size_t len)
{
	char path[PROTO_PATH_MAX + 1], norm[PROTO_PATH_MAX + 1];
	struct mount *mt;
	struct push *ps;
	size_t plen = m->path_len;

	if (len < sizeof(*m) + plen || plen == 0 || plen > PROTO_PATH_MAX || m->mount_len > plen) {
		send_info_error(p, n, m->req, -EINVAL, "malformed request");
		return;
	}
	memcpy(path, m->path, plen);
	path[plen] = '\0';
	if (memchr(path, '\0', plen) || proto_path_normalize(path, plen, norm, sizeof(norm)) < 0 ||
	    strcmp(norm, path) != 0) {
		send_info_error(p, n, m->req, -EINVAL, "path not normalised");
		return;
	}
	mt = granaryd_mount_find(p->d, path);
	if (!mt || strlen(mt->cfg->path) != m->mount_len ||
	    memcmp(mt->cfg->path, path, m->mount_len) != 0) {
		send_info_error(p, n, m->req, -ENOENT, "no such mount on this node");
		return;
	}
	if (p->d->stopping || p->leaving) {
		send_info_error(p, n, m->req, -ESHUTDOWN, "shutting down");
		return;
	}
	ps = calloc(1, sizeof(*ps) + plen + 1);
	if (!ps || !(ps->xx = XXH3_createState())) {
		free(ps);
		send_info_error(p, n, m->req, -ENOMEM, "out of memory");
		return;
	}
	XXH3_64bits_reset(ps->xx);
	memcpy(ps->path, path, plen + 1);
	ps->p = p;
	ps->n = n;
	ps->m = mt;
	ps->req = m->req;
	ps->fd = -1;
	ps->start_ns = clock_now_ns();
	ps->deadline_ns = ps->start_ns + p->idle_ns;
	ps->next = p->pushes;
	p->pushes = ps;
	p->n_pushes++;
	ps->w.done = push_fetched;
	ps->w.who = NULL; /* the requester checked its caller; peers are trusted */
	ps->w.foreground = true;
	ps->w.peer = true; /* once per epoch in the policy: see fetch.c */
	ps->w.want_fd = true;
	ps->fetching = true;
	/*
	 * Fetching it from a peer that now asks for it: the two views of the rack
	 * differ for a moment. Waiting on each other would last until a timeout;
	 * this node takes it from the backend instead.
	 */
	for (struct pull *pl = p->pulls; pl;) {
		if (!strcmp(pl->path, ps->path)) {
			pull_end(p, pl, -EAGAIN, "%s asked for it meanwhile", n->name);
			pl = p->pulls;
		} else {
			pl = pl->next;
		}
	}
	fetch_get(p->d, mt, ps->path, &ps->w); /* may answer before returning */
}

static struct push *push_find(struct peer *p, struct node *n, uint64_t req)
{
	for (struct push *ps = p->pushes; ps; ps = ps->next) {
		if (ps->req == req && ps->n == n)
			return ps;
	}
	return NULL;
}

void on_win(struct peer *p, struct node *n, const struct m_win *m)
{
	struct push *ps = push_find(p, n, m->req);
	struct push_win *w;

	if (!ps || ps->aborted || ps->fetching)
		return;
	w = &ps->win[m->idx % WINDOWS_PER_PULL];
	if (m->idx != ps->next_idx || w->active || m->off != ps->win_end || m->len == 0 ||
	    m->off + m->len > ps->size) {
		push_abort(ps, -EPROTO, "a window out of order");
		return;
	}
	memset(w, 0, sizeof(*w));
	w->active = true;
	w->idx = m->idx;
	w->len = m->len;
	w->off = m->off;
	w->raddr = m->raddr;
	w->rkey = m->rkey;
	ps->next_idx++;
	ps->win_end = m->off + m->len;
	ps->deadline_ns = clock_now_ns() + p->idle_ns;
	push_pump(ps);
}

void on_cancel(struct peer *p, struct node *n, const struct m_cancel *m)
{
	struct push *ps = push_find(p, n, m->req);

	if (ps)
		push_abort(ps, 0, NULL);
}

void pushes_abort_node(struct peer *p, struct node *n)
{
	struct push *ps, *next;

	for (ps = p->pushes; ps; ps = next) {
		next = ps->next;
		if (ps->n == n && !ps->aborted) {
			push_abort(ps, 0, "the requester is gone");
			next = p->pushes;
		}
	}
}

/* Stop the pushes whose requester went quiet, or every one when leaving. */
void pushes_tick(struct peer *p, int64_t now)
{
	struct push *ps;

	/* each end may change the list: start over after one */
	for (ps = p->pushes; ps;) {
		if (!ps->aborted && !ps->fetching && (p->leaving || now > ps->deadline_ns)) {
			push_abort(ps, -ETIMEDOUT,
				   p->leaving ? "shutting down" : "the requester went quiet");
			ps = p->pushes;
		} else {
			ps = ps->next;
		}
	}
}

/*
 * The loop has ended: free every push but those still inside fetch_get or a
 * read, left for those to free. True when a read is still in flight.
 */
bool pushes_abandon(struct peer *p)
{
	bool reading = false;

	while (p->pushes) {
		struct push *ps = p->pushes;

		p->pushes = ps->next;
		ps->writes = 0; /* peer_stop()'s fabric_close drops them */
		if (ps->fetching || ps->reading) {
			reading |= ps->reading;
			ps->orphan = true;
			continue;
		}
		push_destroy(ps);
	}
	return reading;
}
