/*
 * peer_pull.c - the requester side of the rack (see peer_impl.h): objects
 * this node fetches from their owners into sealed memfds for fetch.c.
 *
 * DESIGN: a pull sends GET, takes INFO, makes a memfd of the object's size
 * and offers the owner windows of it (at most WINDOWS_PER_PULL at a time, and
 * WINDOW_BUDGET registered bytes over all pulls; a pull that finds no room
 * queues until a window ends). Windows are hashed in order as their WDONE
 * comes; after the last, the memfd is sealed and the checksum checked before
 * peer_call->done() hands it over. Any failure ends the pull with an error,
 * and fetch.c reads the backend instead.
 */
#include "peer_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---- requester side: pulls ---- */

static void pull_pump_room(struct peer *p);

static void pull_release_windows(struct peer *p, struct pull *pl)
{
	for (int i = 0; i < WINDOWS_PER_PULL; i++) {
		struct pull_win *w = &pl->w[i];

		if (!w->active)
			continue;
		fabric_mr_close(w->mr);
		w->mr = NULL;
		p->win_used -= w->budget;
		w->active = false;
	}
}

static void pull_unlink(struct peer *p, struct pull *pl)
{
	struct pull **pp;

	for (pp = &p->pulls; *pp; pp = &(*pp)->next) {
		if (*pp == pl) {
			*pp = pl->next;
			p->n_pulls--;
			break;
		}
	}
	if (pl->waiting_room) {
		struct pull *prev = NULL, *q;

		for (q = p->room_head; q && q != pl; q = q->wnext)
			prev = q;
		if (q) {
			if (prev)
				prev->wnext = q->wnext;
			else
				p->room_head = q->wnext;
			if (p->room_tail == q)
				p->room_tail = prev;
		}
		pl->waiting_room = false;
	}
}

static void pull_free(struct pull *pl)
{
	if (pl->map && pl->size)
		munmap(pl->map, pl->size);
	if (pl->fd >= 0)
		close(pl->fd);
	XXH3_freeState(pl->xx);
	free(pl);
}

/*
 * End @pl with @err (0: success, call->fd holds the sealed memfd) and a
 * message for the log, then call the caller's done(). On failure the owner is
 * asked to stop when it may still be working on it.
 */
void pull_end(struct peer *p, struct pull *pl, int err, const char *fmt, ...)
{
	struct peer_call *call = pl->call;
	struct node *n = pl->n;
	bool had_windows = false;
	va_list ap;

	for (int i = 0; i < WINDOWS_PER_PULL; i++)
		had_windows |= pl->w[i].active;
	pull_release_windows(p, pl);
	pull_unlink(p, pl);
	call->fd = -1;
	call->err = err;
	call->msg[0] = '\0';
	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(call->msg, sizeof(call->msg), fmt, ap);
		va_end(ap);
	}
	if (err) {
		struct m_cancel c = {.req = pl->req};

		n->pull_failures++;
		if (had_windows || !pl->got_info) {
			/* the owner may be working on it still */
			if (n->out == OUT_UP)
				send_out(p, n, M_CANCEL, &c, sizeof(c));
		}
		log_debug("peer fetch failed path=%s owner=%s detail=\"%s\"", pl->path, n->name,
			  call->msg);
		pull_free(pl);
	} else {
		call->fd = pl->fd;
		call->v = pl->v;
		call->checksum = pl->sum;
		pl->fd = -1;
		n->pulls++;
		n->pull_bytes += pl->size;
		log_debug("fetched from peer path=%s owner=%s bytes=%llu ms=%.3f", pl->path,
			  n->name, (unsigned long long)pl->size,
			  (double)(clock_now_ns() - pl->start_ns) / 1e6);
		pull_free(pl);
	}
	pull_pump_room(p);
	call->done(call);
}

/* Every window is written and hashed: seal, check, hand over. */
static void pull_complete(struct peer *p, struct pull *pl)
{
	uint64_t sum = XXH3_64bits_digest(pl->xx);

	if (!pl->have_sum || sum != pl->sum) {
		pull_end(p, pl, -EIO, "the bytes from %s do not match their checksum", pl->n->name);
		return;
	}
	if (pl->map && pl->size)
		munmap(pl->map, pl->size);
	pl->map = NULL;
	if (fcntl(pl->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) <
	    0) {
		pull_end(p, pl, -errno, "cannot seal the memfd");
		return;
	}
	pull_end(p, pl, 0, NULL);
}

/* Offer the owner the next windows of @pl while room allows. */
static int pull_offer(struct peer *p, struct pull *pl)
{
	while (pl->next_win < pl->nwin) {
		struct pull_win *w = &pl->w[pl->next_win % WINDOWS_PER_PULL];
		uint64_t off = (uint64_t)pl->next_win * WINDOW_SIZE;
		uint32_t len =
			(uint32_t)(pl->size - off < WINDOW_SIZE ? pl->size - off : WINDOW_SIZE);
		size_t budget = ((size_t)len + 4095) & ~(size_t)4095;
		struct m_win m;
		int rc;

		if (w->active)
			break; /* two windows out already */
		if (p->win_used + budget > WINDOW_BUDGET && p->win_used > 0)
			break; /* full: a window that ends makes room */
		if (!p->fab)
			return -ENOTCONN;
		rc = fabric_mr_reg(p->fab, pl->map + off, len, true, &w->mr, &m.raddr, &m.rkey);
		if (rc < 0) {
			if (rc == -ENOMEM || rc == -EPERM)
				log_errno(LOG_WARNING, rc,
					  "cannot register a receive window bytes=%u: with an RDMA "
					  "provider raise the locked-memory limit (ulimit -l)",
					  len);
			return rc;
		}
		w->active = true;
		w->written = false;
		w->idx = pl->next_win;
		w->off = off;
		w->len = len;
		w->budget = budget;
		p->win_used += budget;
		m.req = pl->req;
		m.idx = w->idx;
		m.len = len;
		m.off = off;
		rc = send_out(p, pl->n, M_WIN, &m, sizeof(m));
		if (rc < 0)
			return rc;
		pl->next_win++;
	}
	return 0;
}

static bool pull_has_windows(const struct pull *pl)
{
	for (int i = 0; i < WINDOWS_PER_PULL; i++) {
		if (pl->w[i].active)
			return true;
	}
	return false;
}

/*
 * Offer windows to @pl, or queue it for room (at the front: it was first);
 * ends it on failure. True when it waits for room.
 */
static bool pull_advance(struct peer *p, struct pull *pl, bool front)
{
	int rc = pull_offer(p, pl);

	if (rc < 0) {
		pull_end(p, pl, -EIO, "cannot offer a window to %s: %s", pl->n->name,
			 strerror(-rc));
		return false;
	}
	if (pl->next_win >= pl->nwin || pull_has_windows(pl) || pl->waiting_room)
		return false;
	pl->waiting_room = true;
	if (front) {
		pl->wnext = p->room_head;
		p->room_head = pl;
		if (!p->room_tail)
			p->room_tail = pl;
	} else {
		pl->wnext = NULL;
		if (p->room_tail)
			p->room_tail->wnext = pl;
		else
			p->room_head = pl;
		p->room_tail = pl;
	}
	return true;
}

/* Room was freed: the pulls waiting for it go on, in order. */
static void pull_pump_room(struct peer *p)
{
	while (p->room_head) {
		struct pull *pl = p->room_head;

		p->room_head = pl->wnext;
		if (!p->room_head)
			p->room_tail = NULL;
		pl->waiting_room = false;
		if (pull_advance(p, pl, true))
			return;
	}
}

static struct pull *pull_find(struct peer *p, struct node *n, uint64_t req)
{
	for (struct pull *pl = p->pulls; pl; pl = pl->next) {
		if (pl->req == req && pl->n == n)
			return pl;
	}
	return NULL;
}

void on_info(struct peer *p, struct node *n, const struct m_info *m)
{
	struct pull *pl = pull_find(p, n, m->req);

	if (!pl || pl->got_info)
		return;
	pl->got_info = true;
	pl->deadline_ns = clock_now_ns() + p->idle_ns;
	if (m->status) {
		char msg[sizeof(m->msg) + 1];

		memcpy(msg, m->msg, sizeof(m->msg));
		msg[sizeof(m->msg)] = '\0';
		pull_end(p, pl, -EIO, "%s answered: %s%s%s", n->name, strerror(-m->status),
			 msg[0] ? ": " : "", msg);
		return;
	}
	pl->size = m->size;
	memset(&pl->v, 0, sizeof(pl->v));
	pl->v.size = m->size;
	pl->v.mtime_ns = m->mtime_ns;
	pl->v.ino = m->ino;
	pl->v.mode = m->mode;
	pl->v.uid = m->uid;
	pl->v.gid = m->gid;
	/* the copy is no more visible than the source; unknown is closed */
	pl->v.restricted = !(m->flags & INFO_OPEN);
	memcpy(pl->v.etag, m->etag, sizeof(pl->v.etag));
	pl->v.etag[sizeof(pl->v.etag) - 1] = '\0';

	pl->fd = memfd_create("granary-peer", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (pl->fd < 0) {
		pull_end(p, pl, -errno, "memfd_create failed");
		return;
	}
	if (ftruncate(pl->fd, (off_t)pl->size) < 0) {
		pull_end(p, pl, -errno, "cannot size a memfd of %llu bytes",
			 (unsigned long long)pl->size);
		return;
	}
	if (pl->size == 0) {
		pl->sum = m->checksum;
		pl->have_sum = true;
		pull_complete(p, pl);
		return;
	}
	pl->map = mmap(NULL, pl->size, PROT_READ | PROT_WRITE, MAP_SHARED, pl->fd, 0);
	if (pl->map == MAP_FAILED) {
		pl->map = NULL;
		pull_end(p, pl, -errno, "cannot map a memfd of %llu bytes",
			 (unsigned long long)pl->size);
		return;
	}
	pl->nwin = (uint32_t)((pl->size + WINDOW_SIZE - 1) / WINDOW_SIZE);
	if (p->room_head) {
		/* others wait for room already: behind them */
		pl->waiting_room = true;
		pl->wnext = NULL;
		p->room_tail->wnext = pl;
		p->room_tail = pl;
		return;
	}
	pull_advance(p, pl, false);
}

void on_wdone(struct peer *p, struct node *n, const struct m_wdone *m)
{
	struct pull *pl = pull_find(p, n, m->req);
	struct pull_win *w;

	if (!pl)
		return;
	pl->deadline_ns = clock_now_ns() + p->idle_ns;
	if (m->status) {
		pull_end(p, pl, -EIO, "%s failed to send it: %s", n->name, strerror(-m->status));
		return;
	}
	w = &pl->w[m->idx % WINDOWS_PER_PULL];
	if (!w->active || w->idx != m->idx) {
		pull_end(p, pl, -EIO, "%s reported an unknown window %u", n->name, m->idx);
		return;
	}
	w->written = true;
	if (m->last) {
		pl->sum = m->checksum;
		pl->have_sum = true;
	}
	/* hash and let go of the windows that are done, in order */
	for (;;) {
		w = &pl->w[pl->done_upto % WINDOWS_PER_PULL];
		if (pl->done_upto >= pl->nwin || !w->active || w->idx != pl->done_upto ||
		    !w->written)
			break;
		fabric_mr_close(w->mr);
		w->mr = NULL;
		XXH3_64bits_update(pl->xx, pl->map + w->off, w->len);
		w->active = false;
		p->win_used -= w->budget;
		pl->done_upto++;
	}
	if (pl->done_upto == pl->nwin) {
		pull_complete(p, pl);
		return;
	}
	pull_advance(p, pl, false);
	pull_pump_room(p);
}

/* Fail everything asked of @n. */
void pulls_fail_node(struct peer *p, struct node *n, int err, const char *why)
{
	struct pull *pl, *next;

	for (pl = p->pulls; pl; pl = next) {
		next = pl->next;
		if (pl->n == n) {
			pull_end(p, pl, err, "%s: %s", n->name, why);
			next = p->pulls; /* done() may have changed the list */
		}
	}
}

/*
 * Ask owner @n for @path (under @m) on behalf of @call; call->done reports,
 * perhaps before this returns.
 */
void pull_start(struct peer *p, struct node *n, struct mount *m, const char *path,
		struct peer_call *call)
{
	struct pull *pl;
	struct m_get *g;
	size_t plen = strlen(path), mlen = strlen(m->cfg->path);
	int rc;

	pl = calloc(1, sizeof(*pl) + plen + 1);
	g = calloc(1, sizeof(*g) + plen);
	if (!pl || !g || !(pl->xx = XXH3_createState())) {
		free(pl);
		free(g);
		call->err = -ENOMEM;
		snprintf(call->msg, sizeof(call->msg), "out of memory");
		call->done(call);
		return;
	}
	XXH3_64bits_reset(pl->xx);
	memcpy(pl->path, path, plen + 1);
	pl->n = n;
	pl->call = call;
	pl->fd = -1;
	pl->req = ++p->next_req;
	pl->start_ns = clock_now_ns();
	pl->deadline_ns = pl->start_ns + p->idle_ns;
	pl->next = p->pulls;
	p->pulls = pl;
	p->n_pulls++;

	g->req = pl->req;
	g->mount_len = (uint16_t)mlen;
	g->path_len = (uint16_t)plen;
	memcpy(g->path, path, plen);
	rc = send_out(p, n, M_GET, g, sizeof(*g) + plen);
	free(g);
	if (rc < 0) {
		pl->got_info = true; /* nothing to cancel */
		pull_end(p, pl, -EHOSTUNREACH, "cannot send to %s: %s", n->name, strerror(-rc));
	}
}

/* End the pulls past their deadline, or every one when the rack is leaving. */
void pulls_tick(struct peer *p, int64_t now)
{
	struct pull *pl;

	/* each end may change the list: start over after one */
	for (pl = p->pulls; pl;) {
		if (p->leaving) {
			pull_end(p, pl, -ECANCELED, "granaryd is shutting down");
			pl = p->pulls;
		} else if (now > pl->deadline_ns) {
			pull_end(p, pl, -EIO, "%s did not answer in time", pl->n->name);
			pl = p->pulls;
		} else {
			pl = pl->next;
		}
	}
}

/* The loop has ended: free every pull; their callers are not answered. */
void pulls_abandon(struct peer *p)
{
	while (p->pulls) {
		struct pull *pl = p->pulls;

		pull_release_windows(p, pl);
		p->pulls = pl->next;
		pull_free(pl);
	}
}
