/*
 * peer.c - the rack (see peer.h): membership, heartbeats, placement, the
 * dispatch of what arrives, start, stop and status. Authentication is
 * peer_auth.c's, fetching from owners peer_pull.c's, serving this node's
 * objects peer_serve.c's; what they share is in peer_impl.h. The transport is
 * fabric.c.
 *
 * DESIGN: liveness. Each node sends HB on its out session every peers.heartbeat and
 * the other answers HB_ACK. A node whose acks stop for peers.miss_limit
 * periods is down: what was in flight with it fails at once (fetch.c then
 * reads the backend) and rendezvous hashing leaves it out. It is up again
 * when a handshake with it completes. A new boot id in a verified CHAL or
 * handshake means the node restarted: whatever was in flight with its old
 * self is dropped.
 *
 * Placement: rendezvous hashing (rendezvous.c) of an object's path over the
 * live nodes names its owner; a node asks the owner for the objects it does
 * not own (peer_remote_owner(), peer_fetch()).
 *
 * Everything here runs on the loop thread. There is one rack per process.
 */
#include "peer_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <jansson.h>

#include "rendezvous.h"

#define TICK_NS		 (100LL * 1000000) /* deadlines, shutdown */
#define HANDSHAKE_MIN_NS (250LL * 1000000) /* a HELLO waits at least this for its answer */

static struct peer *rack; /* one rack per process */

/* ---- membership ---- */

struct node *node_by_name(struct peer *p, const char *name)
{
	for (size_t i = 0; i < p->n_nodes; i++) {
		if (!strcmp(p->nodes[i].name, name))
			return &p->nodes[i];
	}
	return NULL;
}

static void live_update(struct peer *p)
{
	p->n_live = 0;
	for (size_t i = 0; i < p->n_nodes; i++) {
		p->live[i] = p->nodes[i].self || p->nodes[i].up;
		p->n_live += p->live[i];
	}
}

static void node_up(struct peer *p, struct node *n)
{
	if (n->up)
		return;
	n->up = true;
	n->up_since_ns = clock_now_ns();
	live_update(p);
	log_info("peer up name=%s address=%s live=%zu", n->name, n->address, p->n_live);
}

/* @n is gone (or restarted): drop what was in flight with it. */
static void node_down(struct peer *p, struct node *n, const char *why)
{
	bool was_up = n->up;

	n->up = false;
	n->out = OUT_IDLE;
	n->hello_ns = 0;
	live_update(p);
	if (was_up) {
		n->downs++;
		log_warn("peer down name=%s address=%s reason=\"%s\" live=%zu", n->name, n->address,
			 why, p->n_live);
	}
	pulls_fail_node(p, n, -EHOSTUNREACH, why);
	pushes_abort_node(p, n);
	if (p->fab)
		fabric_peer_reset(p->fab, n->fid);
}

/* A verified boot id from @n: a new one means it restarted since we last spoke. */
void node_boot(struct peer *p, struct node *n, uint64_t boot)
{
	if (n->boot && boot != n->boot) {
		log_info("peer restarted name=%s", n->name);
		node_down(p, n, "restarted");
	}
	n->boot = boot;
}

/* Heartbeats, handshakes, and the liveness verdict, every peers.heartbeat. */
static void on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
	struct peer *p = arg;
	int64_t now = clock_now_ns();
	int64_t retry = p->hb_ns > HANDSHAKE_MIN_NS ? p->hb_ns : HANDSHAKE_MIN_NS;

	(void)fd;
	(void)what;
	if (p->leaving)
		return;
	for (size_t i = 0; i < p->n_nodes; i++) {
		struct node *n = &p->nodes[i];

		if (n->self)
			continue;
		if (n->up && now - n->last_ack_ns > p->down_ns) {
			node_down(p, n, "missed heartbeats");
			continue;
		}
		if (n->out == OUT_UP) {
			struct m_hb hb = {.seq = ++n->hb_seq, .t_ns = now};

			send_out(p, n, M_HB, &hb, sizeof(hb));
		} else if (now - n->hello_ns >= retry) {
			send_hello(p, n);
		}
	}
}

/* ---- receiving ---- */

/* The established session a message names: @n and the session, or NULL. */
static struct node *session_of(struct peer *p, const struct wire_hdr *h, struct session **s)
{
	for (size_t i = 0; i < p->n_nodes; i++) {
		struct node *n = &p->nodes[i];

		if (n->self)
			continue;
		if (h->init && n->in == IN_UP && n->is.sid == h->sid) {
			*s = &n->is;
			return n;
		}
		if (!h->init && (n->out == OUT_AUTH || n->out == OUT_UP) && n->os.sid == h->sid) {
			*s = &n->os;
			return n;
		}
	}
	return NULL;
}

static bool body_fits(const struct wire_hdr *h, size_t want)
{
	return h->len >= want;
}

static void on_recv(void *arg, const void *msg, size_t len)
{
	struct peer *p = arg;
	struct wire_hdr h;
	const uint8_t *body = (const uint8_t *)msg + sizeof(h);
	struct session *s = NULL;
	struct node *n;
	int rc;
	union {
		struct m_hello hello;
		struct m_chal chal;
		struct m_auth auth;
		struct m_hb hb;
		struct m_info info;
		struct m_win win;
		struct m_wdone wdone;
		struct m_cancel cancel;
	} u;

	if (len < sizeof(h))
		return;
	memcpy(&h, msg, sizeof(h));
	if (h.magic != WIRE_MAGIC || h.version != WIRE_VERSION || h.len != len - sizeof(h))
		return;
	memset(&u, 0, sizeof(u));
	if (h.type != M_GET)
		memcpy(&u, body, h.len < sizeof(u) ? h.len : sizeof(u));

	switch (h.type) {
	case M_HELLO:
		if (h.init && body_fits(&h, sizeof(u.hello)))
			on_hello(p, &h, &u.hello);
		return;
	case M_CHAL:
		if (!h.init && body_fits(&h, sizeof(u.chal)))
			on_chal(p, &h, &u.chal);
		return;
	case M_AUTH:
		if (h.init && body_fits(&h, sizeof(u.auth)))
			on_auth(p, &h, &u.auth);
		return;
	default:
		break;
	}

	n = session_of(p, &h, &s);
	if (!n) {
		p->unknown_sessions++;
		return;
	}
	rc = peer_msg_accept(s->key, &s->rx, msg, len);
	if (rc < 0) {
		node_dropped(p, n, rc);
		return;
	}
	/* anything it says proves it alive, even when its acks queue behind data */
	if (n->out == OUT_UP)
		n->last_ack_ns = clock_now_ns();

	switch (h.type) {
	case M_OK:
		if (!h.init && n->out == OUT_AUTH) {
			n->out = OUT_UP;
			n->last_ack_ns = clock_now_ns();
			n->rtt_ns = n->last_ack_ns - n->hello_ns;
			n->handshakes++;
			node_up(p, n);
		}
		return;
	case M_HB:
		if (h.init && body_fits(&h, sizeof(u.hb)))
			send_in(p, n, M_HB_ACK, &u.hb, sizeof(u.hb));
		return;
	case M_HB_ACK:
		if (!h.init && n->out == OUT_UP && body_fits(&h, sizeof(u.hb))) {
			n->last_ack_ns = clock_now_ns();
			n->rtt_ns = n->last_ack_ns - u.hb.t_ns;
			node_up(p, n);
		}
		return;
	case M_BYE:
		if (h.init) {
			log_info("peer leaving name=%s", n->name);
			n->in = IN_NONE;
			node_down(p, n, "left the rack");
		}
		return;
	case M_GET:
		if (h.init && body_fits(&h, sizeof(struct m_get))) {
			/* the path follows the header: read it in place, aligned copy first */
			struct m_get *g = malloc(h.len);

			if (!g)
				return;
			memcpy(g, body, h.len);
			on_get(p, n, g, h.len);
			free(g);
		}
		return;
	case M_INFO:
		if (!h.init && body_fits(&h, sizeof(u.info)))
			on_info(p, n, &u.info);
		return;
	case M_WIN:
		if (h.init && body_fits(&h, sizeof(u.win)))
			on_win(p, n, &u.win);
		return;
	case M_WDONE:
		if (!h.init && body_fits(&h, sizeof(u.wdone)))
			on_wdone(p, n, &u.wdone);
		return;
	case M_CANCEL:
		if (h.init && body_fits(&h, sizeof(u.cancel)))
			on_cancel(p, n, &u.cancel);
		return;
	default:
		return;
	}
}

static void on_write_done(void *arg, void *ctx, int err)
{
	push_write_done(arg, ctx, err);
}

/* ---- housekeeping: deadlines and shutdown ---- */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct peer *p = arg;
	int64_t now = clock_now_ns();

	(void)fd;
	(void)what;
	if (p->d->stopping && !p->leaving) {
		/* say goodbye so the others stop asking at once, and let go */
		p->leaving = true;
		for (size_t i = 0; i < p->n_nodes; i++) {
			struct node *n = &p->nodes[i];

			if (!n->self && n->out == OUT_UP)
				send_out(p, n, M_BYE, NULL, 0);
		}
	}
	pulls_tick(p, now);
	pushes_tick(p, now);
}

/* ---- the interface ---- */

bool peer_rack_built(void)
{
	return true;
}

bool peer_remote_owner(struct granaryd *d, struct mount *m, const char *path)
{
	struct peer *p = rack;
	int owner;

	(void)m;
	if (!p || p->n_live < 2 || d->stopping || p->leaving)
		return false;
	/* being served to a peer: this node is where it ends, whatever it thinks */
	for (struct push *ps = p->pushes; ps; ps = ps->next) {
		if (ps->fetching && !strcmp(ps->path, path))
			return false;
	}
	owner = rendezvous_owner(p->seeds, p->live, p->n_nodes, path, strlen(path));
	return owner >= 0 && !p->nodes[owner].self;
}

void peer_fetch(struct granaryd *d, struct mount *m, const char *path, struct peer_call *call)
{
	struct peer *p = rack;
	size_t plen = strlen(path);
	int owner;

	(void)d;
	call->fd = -1;
	call->err = -EHOSTUNREACH;
	call->msg[0] = '\0';
	owner = p ? rendezvous_owner(p->seeds, p->live, p->n_nodes, path, plen) : -1;
	if (owner < 0 || p->nodes[owner].self || !p->nodes[owner].up || plen > PROTO_PATH_MAX) {
		snprintf(call->msg, sizeof(call->msg), "no live owner in the rack");
		call->done(call);
		return;
	}
	pull_start(p, &p->nodes[owner], m, path, call);
}

void peer_status_json(struct granaryd *d, void *json_object)
{
	struct peer *p = rack;
	json_t *root = json_object, *r, *nodes;
	int64_t now = clock_now_ns();

	(void)d;
	if (!root)
		return;
	if (!p) {
		json_object_set_new(root, "rack", json_pack("{sb}", "enabled", 0));
		return;
	}
	nodes = json_array();
	for (size_t i = 0; i < p->n_nodes; i++) {
		struct node *n = &p->nodes[i];

		json_array_append_new(
			nodes,
			json_pack("{ss ss sb sb sf sf sI sI sI sI sI sI sI sI sI sI}", "name",
				  n->name, "address", n->address, "self", n->self, "up",
				  n->self || n->up, "up_seconds",
				  n->up ? (double)(now - n->up_since_ns) / 1e9 : 0.0, "rtt_ms",
				  (double)n->rtt_ns / 1e6, "fetched", (json_int_t)n->pulls,
				  "fetched_bytes", (json_int_t)n->pull_bytes, "fetch_failures",
				  (json_int_t)n->pull_failures, "served", (json_int_t)n->pushes,
				  "served_bytes", (json_int_t)n->push_bytes, "serve_failures",
				  (json_int_t)n->push_failures, "downs", (json_int_t)n->downs,
				  "refused", (json_int_t)n->refused, "replayed",
				  (json_int_t)n->replayed, "handshakes",
				  (json_int_t)n->handshakes));
	}
	r = json_pack("{sb ss ss ss sI sI sI sI sI sI sI sI so}", "enabled", 1, "self",
		      p->self->name, "provider",
		      p->fab ? fabric_provider(p->fab) : p->d->cfg->peers.provider, "progress",
		      p->fab ? fabric_progress_mode(p->fab) : "none", "live", (json_int_t)p->n_live,
		      "fetching", (json_int_t)p->n_pulls, "serving", (json_int_t)p->n_pushes,
		      "refused", (json_int_t)p->refused, "replayed", (json_int_t)p->replayed,
		      "bad_macs", (json_int_t)p->bad_macs, "unknown_sessions",
		      (json_int_t)p->unknown_sessions, "window_bytes", (json_int_t)p->win_used,
		      "nodes", nodes);
	if (r)
		json_object_set_new(root, "rack", r);
}

/*
 * Open the endpoint, add the other nodes and register the read buffers. On
 * failure everything opened here is closed again.
 */
static int transport_open(struct peer *p)
{
	const struct config *cfg = p->d->cfg;
	struct fabric_cbs cbs = {.arg = p, .recv = on_recv, .write_done = on_write_done};
	size_t len = (size_t)CHUNKS * CHUNK_SIZE;
	int rc;

	rc = fabric_open(p->d->base, cfg->peers.provider, p->self->address, &cbs, &p->fab);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < p->n_nodes; i++) {
		struct node *n = &p->nodes[i];

		if (n->self)
			continue;
		n->fid = fabric_peer_add(p->fab, n->address);
		if (n->fid < 0) {
			rc = n->fid;
			goto err;
		}
	}
	rc = fabric_mr_reg(p->fab, p->chunk_mem, len, false, &p->chunk_mr, NULL, NULL);
	if (rc < 0) {
		log_errno(LOG_ERR, rc,
			  "cannot register the rack's read buffers bytes=%zu: with an RDMA "
			  "provider raise the locked-memory limit (ulimit -l, LimitMEMLOCK=)",
			  len);
		goto err;
	}
	return 0;
err:
	fabric_close(p->fab);
	p->fab = NULL;
	return rc;
}

static void transport_close(struct peer *p)
{
	fabric_mr_close(p->chunk_mr);
	p->chunk_mr = NULL;
	fabric_close(p->fab);
	p->fab = NULL;
}

static void rack_free(struct peer *p, bool keep_chunks)
{
	if (p->ev_hb)
		event_free(p->ev_hb);
	if (p->ev_tick)
		event_free(p->ev_tick);
	transport_close(p);
	if (p->chunk_mem && !keep_chunks)
		munmap(p->chunk_mem, (size_t)CHUNKS * CHUNK_SIZE);
	secrets_wipe(p);
	free(p->nodes);
	free(p->seeds);
	free(p->live);
	free(p);
}

int peer_start(struct granaryd *d)
{
	const struct config *cfg = d->cfg;
	struct peer *p;
	struct timeval tv;
	int rc;

	if (cfg->peers.n_nodes == 0)
		return 0; /* no rack: every object is this node's own */
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->d = d;
	p->n_nodes = cfg->peers.n_nodes;
	p->nodes = calloc(p->n_nodes, sizeof(*p->nodes));
	p->seeds = calloc(p->n_nodes, sizeof(*p->seeds));
	p->live = calloc(p->n_nodes, sizeof(*p->live));
	if (!p->nodes || !p->seeds || !p->live) {
		rc = -ENOMEM;
		goto err;
	}
	for (size_t i = 0; i < p->n_nodes; i++) {
		struct node *n = &p->nodes[i];

		n->name = cfg->peers.nodes[i].name;
		n->address = cfg->peers.nodes[i].address;
		n->fid = -1;
		n->self = !strcmp(n->name, cfg->peers.self);
		if (strlen(n->name) >= NODE_NAME_MAX) {
			log_err("peer name too long name=%s maximum=%d", n->name,
				NODE_NAME_MAX - 1);
			rc = -EINVAL;
			goto err;
		}
		if (n->self)
			p->self = n;
		p->seeds[i] = rendezvous_node_seed(n->name);
	}
	if (!p->self) {
		log_err("peers.self is not among peers.nodes self=%s", cfg->peers.self);
		rc = -EINVAL;
		goto err;
	}
	live_update(p);
	rc = secret_load(p, cfg->peers.secret_file);
	if (rc < 0)
		goto err;
	p->boot = random_u64();
	p->hb_ns = (int64_t)cfg->peers.heartbeat_ns;
	p->down_ns = p->hb_ns * (int64_t)(cfg->peers.miss_limit ? cfg->peers.miss_limit : 1);
	/* generous: an owner may itself be fetching a large object from a slow backend */
	p->idle_ns = 2 * (int64_t)cfg->fetch.timeout_ns * (int64_t)(cfg->fetch.retries + 1);
	if (p->idle_ns < 10 * NS_PER_S)
		p->idle_ns = 10 * NS_PER_S;
	if (p->n_nodes == 1) {
		log_info("rack of one node name=%s: nothing to share", p->self->name);
		rack = p;
		return 0;
	}

	p->chunk_mem = mmap(NULL, (size_t)CHUNKS * CHUNK_SIZE, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p->chunk_mem == MAP_FAILED) {
		p->chunk_mem = NULL;
		rc = -errno;
		goto err;
	}
	for (int i = CHUNKS - 1; i >= 0; i--) {
		p->chunks[i].buf = p->chunk_mem + (size_t)i * CHUNK_SIZE;
		chunk_put(p, &p->chunks[i]);
	}
	rc = transport_open(p);
	if (rc < 0)
		goto err;
	p->ev_hb = event_new(d->base, -1, EV_PERSIST, on_heartbeat, p);
	p->ev_tick = event_new(d->base, -1, EV_PERSIST, on_tick, p);
	if (!p->ev_hb || !p->ev_tick) {
		rc = -ENOMEM;
		goto err;
	}
	tv = clock_timeval((int64_t)p->hb_ns);
	event_add(p->ev_hb, &tv);
	tv = clock_timeval(TICK_NS);
	event_add(p->ev_tick, &tv);
	rack = p;
	for (size_t i = 0; i < p->n_nodes; i++) {
		if (!p->nodes[i].self)
			send_hello(p, &p->nodes[i]);
	}
	log_info("rack started self=%s nodes=%zu provider=%s heartbeat_ms=%lld miss_limit=%u",
		 p->self->name, p->n_nodes, fabric_provider(p->fab),
		 (long long)(p->hb_ns / 1000000), cfg->peers.miss_limit);
	return 0;

err:
	rack_free(p, false);
	return rc;
}

void peer_stop(struct granaryd *d)
{
	struct peer *p = rack;
	bool reading;

	(void)d;
	if (!p)
		return;
	rack = NULL;
	/*
	 * The loop has ended. Calls still waiting are not answered (their fetches
	 * are abandoned with the loop); pushes still inside fetch_get or a read
	 * are left for those to free.
	 */
	pulls_abandon(p);
	reading = pushes_abandon(p);
	if (reading)
		log_warn("rack stopped with reads in flight; their buffers are not freed");
	rack_free(p, reading);
}
