/*
 * prefetch.c - the read-ahead window over a hinted order (see prefetch.h).
 */
#include "prefetch.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "access.h"
#include "fetch.h"
#include "hint.h"
#include "index.h"
#include "log.h"
#include "policy.h"
#include "proto.h"

struct prefetch {
	uint64_t gen;	     /* bumped by each new order */
	uint64_t cursor;     /* next position to consider */
	uint64_t stall_next; /* trainer's position when it backed off */
	bool stalled;
	bool pumping; /* inside prefetch_kick: completions only count */
	struct prefetch_stats st;
};

/* One background fetch; freed by its completion. */
struct prefetch_req {
	struct fetch_waiter w;
	struct access_req acc; /* as the order's sender: it learns nothing it may not read */
	struct caller who;
	struct granaryd *d;
	struct mount *m;
	uint64_t gen, pos;
	char path[PROTO_PATH_MAX + 1];
};

static struct prefetch *get(struct mount *m)
{
	if (!m->prefetch)
		m->prefetch = calloc(1, sizeof(*m->prefetch));
	return m->prefetch;
}

static void prefetch_req_free(struct prefetch_req *r)
{
	if (r->w.has_srcfd)
		close(r->w.srcfd);
	free(r);
}

static void done(struct fetch_waiter *w, struct object *o, int direct_fd, int err, const char *msg,
		 enum proto_source src)
{
	struct prefetch_req *r =
		(struct prefetch_req *)((char *)w - offsetof(struct prefetch_req, w));
	struct granaryd *d = r->d;
	struct mount *m = r->m;
	struct prefetch *pf = m->prefetch;
	uint64_t next;

	(void)msg;
	if (direct_fd >= 0)
		close(direct_fd); /* not asked for; never expected */
	if (!pf) {
		prefetch_req_free(r);
		return;
	}
	pf->st.inflight--;
	if (err) {
		pf->st.failed++;
	} else if (o) {
		pf->st.prefetched++;
	} else if (src == PROTO_SRC_DIRECT) {
		pf->st.refused++;
		if (r->gen == pf->gen) {
			/* the policy keeps nothing more now: wait for the trainer to read */
			hint_phase(d, m, &next);
			pf->stalled = true;
			pf->stall_next = next;
			if (r->pos < pf->cursor)
				pf->cursor = r->pos;
		}
	}
	prefetch_req_free(r);
	if (!pf->pumping)
		prefetch_kick(d, m);
}

static void checked(struct access_req *a)
{
	struct prefetch_req *r =
		(struct prefetch_req *)((char *)a - offsetof(struct prefetch_req, acc));

	r->w.has_srcfd = a->fd >= 0;
	r->w.srcfd = a->fd;
	if (a->err)
		done(&r->w, NULL, -1, a->err, a->msg, PROTO_SRC_LOCAL);
	else
		fetch_get(r->d, r->m, r->path, &r->w);
}

/*
 * Would the policy keep @k more objects of @m's average size, on top of what
 * is cached and reserved? Prefetches in flight reserve their space only once
 * their size is known, so the caller counts them in @k.
 */
static bool room_for(struct granaryd *d, struct mount *m, uint64_t k)
{
	uint64_t est = m->objects ? m->bytes / m->objects : 0;
	uint64_t after = d->used + d->reserved + k * est;

	if (!est || after <= d->high)
		return true;
	return policy_admit(d->policy, m->dataset, est, after - d->high);
}

void prefetch_kick(struct granaryd *d, struct mount *m)
{
	uint32_t window = d->cfg->policy.prefetch_window;
	char path[PROTO_PATH_MAX + 1];
	struct prefetch *pf;
	enum hint_phase ph;
	uint64_t next, end, n;

	if (!window || d->stopping || !m->hint)
		return;
	/* an order nobody reads from yet costs nothing: wait for the first read */
	ph = hint_phase(d, m, &next);
	if (ph != HINT_CURRENT || next == 0)
		return;
	pf = get(m);
	if (!pf || pf->pumping)
		return;
	if (pf->stalled) {
		if (next <= pf->stall_next)
			return;
		pf->stalled = false;
	}
	n = hint_count(m);
	end = next + window < n ? next + window : n;
	if (pf->cursor < next)
		pf->cursor = next;
	pf->pumping = true;
	while (pf->cursor < end && pf->st.inflight < window) {
		struct prefetch_req *r;
		uint64_t pos = pf->cursor;

		if (hint_path_at(m, pos, path, sizeof(path)) < 0) {
			pf->cursor++;
			continue;
		}
		if (index_get(d->idx, path)) {
			pf->cursor++; /* cached, or a fetch is under way */
			continue;
		}
		if (!room_for(d, m, pf->st.inflight + 1)) {
			pf->stalled = true;
			pf->stall_next = next;
			break;
		}
		r = calloc(1, sizeof(*r));
		if (!r)
			break;
		r->w.done = done;
		r->w.foreground = false;
		r->w.want_fd = false;
		r->d = d;
		r->m = m;
		r->gen = pf->gen;
		r->pos = pos;
		memcpy(r->path, path, sizeof(r->path));
		r->who = m->hint_who;
		access_prepare(&r->acc, d, m, &r->who, r->path, ACCESS_READ, checked);
		pf->cursor++;
		pf->st.inflight++;
		pf->st.issued++;
		access_check(&r->acc);
	}
	pf->pumping = false;
}

void prefetch_reset(struct mount *m)
{
	struct prefetch *pf = get(m);

	if (!pf)
		return;
	pf->gen++;
	pf->cursor = 0;
	pf->stalled = false;
	pf->stall_next = 0;
}

void prefetch_stats(const struct mount *m, struct prefetch_stats *out)
{
	const struct prefetch *pf = m->prefetch;

	memset(out, 0, sizeof(*out));
	if (!pf)
		return;
	*out = pf->st;
	out->cursor = pf->cursor;
	out->stalled = pf->stalled;
}

void prefetch_free(struct mount *m)
{
	free(m->prefetch);
	m->prefetch = NULL;
}
