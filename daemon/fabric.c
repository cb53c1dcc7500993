/*
 * fabric.c - the peer transport over libfabric (see fabric.h): the generic
 * part. What only the shm provider needs is fabric_shm.c's; fabric_impl.h is
 * what the two share. These are the only files that include <rdma/fabric.h>.
 *
 * DESIGN: one RDM endpoint, one completion queue for sends, receives and
 * writes, one address vector. Everything runs on the loop thread
 * (FI_THREAD_DOMAIN). Every operation carries a struct fop as its context;
 * the completion finds it there. Posts that meet -FI_EAGAIN (the first posts
 * while a connection is made, a full queue) wait in their peer's queue, in
 * order, and are retried after each round of progress; a peer that cannot be
 * reached holds up only its own queue.
 *
 * Progress: when the provider gives the completion queue a wait fd (tcp,
 * verbs), the fd is an event of the loop, and fi_trywait() decides before
 * going back to sleep whether more must be read first. shm has no wait fd:
 * its queue is polled every millisecond (or on the next loop iteration while
 * completions keep coming), and a peer that posts something rings this
 * node's doorbell (see fabric_shm.c) so that it need not wait for the timer.
 *
 * shm and dead peers (libfabric 1.17): fabric_shm.c says what goes wrong and
 * what is done about it. Here, messages are sent without FI_DELIVERY_COMPLETE
 * with shm (see make_hints()), a post to an shm peer first asks
 * fabric_shm_post_ready(), and a peer reset with an answer still owed hands
 * the endpoint to fabric_shm_peer_reset() to be replaced.
 */
#include "fabric_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include <rdma/fi_cm.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#include "clock.h"
#include "log.h"

#define FABRIC_VERSION	  FI_VERSION(1, 9)
#define FABRIC_CQ_SIZE	  1024
#define FABRIC_PEER_QUEUE 8    /* queued sends per peer before -EAGAIN */
#define FABRIC_BATCH	  32   /* completions read at once */
#define FABRIC_ROUNDS	  16   /* batches per progress call, so the loop breathes */
#define POLL_US		  1000 /* shm, or a wait fd with work in flight */
#define SHM_PREFIX	  "granary://"

static int getinfo_for(bool shm, const char *address, bool source, struct fi_info *h,
		       struct fi_info **out);

static const char *ferr(int rc)
{
	return fi_strerror(rc < 0 ? -rc : rc);
}

/* libfabric's codes below 256 are errno values; the rest become EIO. */
static int to_errno(int rc)
{
	if (rc < 0)
		rc = -rc;
	return rc > 0 && rc < FI_ERRNO_OFFSET ? -rc : -EIO;
}

const char *fabric_provider(const struct fabric *f)
{
	return f->prov;
}

const char *fabric_progress_mode(const struct fabric *f)
{
	if (f->wait_fd >= 0)
		return "wait fd";
	return f->bell_fd >= 0 ? "doorbell and polling" : "polling";
}

unsigned fabric_inflight(const struct fabric *f)
{
	return f->inflight;
}

/* ---- posted-operation bookkeeping ---- */

static void posted_link(struct fabric *f, struct fop *op)
{
	struct fabric_peer *p = &f->peers[op->peer];

	op->posted = true;
	op->prev = NULL;
	op->next = p->posted;
	if (p->posted)
		p->posted->prev = op;
	p->posted = op;
}

static void posted_unlink(struct fabric *f, struct fop *op)
{
	struct fabric_peer *p = &f->peers[op->peer];

	if (op->prev)
		op->prev->next = op->next;
	else if (p->posted == op)
		p->posted = op->next;
	if (op->next)
		op->next->prev = op->prev;
	op->prev = op->next = NULL;
	op->posted = false;
}

void detached_unlink(struct fabric *f, struct fop *op)
{
	if (op->prev)
		op->prev->next = op->next;
	else if (f->detached == op)
		f->detached = op->next;
	if (op->next)
		op->next->prev = op->prev;
	op->prev = op->next = NULL;
}

void send_put(struct fabric *f, struct fop *op)
{
	op->qnext = f->send_free;
	f->send_free = op;
}

/* ---- peers' addresses ---- */

/* The provider's form of destination @address (shm: an endpoint name). */
int dest_for(struct fabric *f, const char *address, void **dest, size_t *len)
{
	struct fi_info *h, *pi = NULL;
	int rc;

	h = fi_dupinfo(f->info);
	if (!h)
		return -FI_ENOMEM;
	free(h->src_addr);
	h->src_addr = NULL;
	h->src_addrlen = 0;
	free(h->dest_addr);
	h->dest_addr = NULL;
	h->dest_addrlen = 0;
	rc = getinfo_for(f->shm, address, false, h, &pi);
	fi_freeinfo(h);
	if (!rc && (!pi || !pi->dest_addr))
		rc = -FI_EINVAL;
	if (!rc) {
		*dest = malloc(pi->dest_addrlen);
		if (*dest) {
			memcpy(*dest, pi->dest_addr, pi->dest_addrlen);
			*len = pi->dest_addrlen;
		} else {
			rc = -FI_ENOMEM;
		}
	}
	if (pi)
		fi_freeinfo(pi);
	return rc;
}

/*
 * Insert @p into the address vector when it can be: 0, or -EAGAIN. With shm
 * the peer's endpoint name is learnt from its doorbell, and a peer whose
 * process is gone is never posted to (see fabric_shm.c).
 */
int peer_resolve(struct fabric *f, struct fabric_peer *p)
{
	fi_addr_t a;
	int n;

	if (f->shm && fabric_shm_peer_dest(f, p) < 0)
		return -EAGAIN;
	if (p->addr != FI_ADDR_NOTAVAIL)
		return 0;
	n = fi_av_insert(f->av, p->dest, 1, &a, 0, NULL);
	if (n != 1) {
		log_warn("fi_av_insert failed peer=%s", p->address);
		return -EAGAIN;
	}
	p->addr = a;
	return 0;
}

/* Split "host:port" (or "[v6]:port"); 0 or -EINVAL. */
static int split_address(const char *address, char *host, size_t hostsz, char *port, size_t portsz)
{
	const char *colon = strrchr(address, ':');
	const char *h = address;
	size_t hl;

	if (!colon || !colon[1])
		return -EINVAL;
	hl = (size_t)(colon - address);
	if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl == 0 || hl >= hostsz || strlen(colon + 1) >= portsz)
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	snprintf(port, portsz, "%s", colon + 1);
	return 0;
}

/*
 * fi_getinfo for @address as a source (@source) or a destination, with the
 * hints @h. shm takes a name with a prefix as is; IP providers take host and
 * port.
 */
static int getinfo_for(bool shm, const char *address, bool source, struct fi_info *h,
		       struct fi_info **out)
{
	char host[256], port[32], name[300];

	if (shm) {
		snprintf(name, sizeof(name), SHM_PREFIX "%s", address);
		return fi_getinfo(FABRIC_VERSION, name, NULL, source ? FI_SOURCE : 0, h, out);
	}
	if (split_address(address, host, sizeof(host), port, sizeof(port)) < 0)
		return -FI_EINVAL;
	return fi_getinfo(FABRIC_VERSION, host, port, source ? FI_SOURCE : 0, h, out);
}

int fabric_peer_add(struct fabric *f, const char *address)
{
	struct fabric_peer *np, *p;
	int rc = 0;

	np = realloc(f->peers, (f->n_peers + 1) * sizeof(*np));
	if (!np)
		return -ENOMEM;
	f->peers = np;
	p = &f->peers[f->n_peers];
	memset(p, 0, sizeof(*p));
	p->addr = FI_ADDR_NOTAVAIL;
	p->stat_fd = -1;
	if (f->shm) {
		/* its endpoint's name comes from its doorbell; check the form only */
		if (!fabric_shm_address_ok(address))
			rc = -FI_EINVAL;
	} else {
		rc = dest_for(f, address, &p->dest, &p->destlen);
	}
	if (rc) {
		log_err("cannot resolve peer address address=%s provider=%s detail=\"%s\"", address,
			f->prov, ferr(rc));
		return to_errno(rc);
	}
	p->address = strdup(address);
	if (!p->address) {
		free(p->dest);
		return -ENOMEM;
	}
	f->n_peers++;
	if (f->shm)
		fabric_shm_peer_add(f, p);
	peer_resolve(f, p);
	return (int)(f->n_peers - 1);
}

/* ---- posting ---- */

static ssize_t post(struct fabric *f, struct fop *op)
{
	struct fabric_peer *p = &f->peers[op->peer];
	int rc;

	if (f->shm) {
		/* shm: the peer's endpoint known, its process alive, its lock free */
		rc = fabric_shm_post_ready(f, p);
		if (rc < 0)
			return rc;
	}
	op->gen = f->gen;
	if (op->kind == FOP_SEND)
		return fi_send(f->ep, op->buf, op->len, f->msg_mr->desc, p->addr, op);

	struct iovec iov = {.iov_base = op->buf, .iov_len = op->len};
	void *desc = op->mr->desc;
	struct fi_rma_iov rma = {.addr = op->raddr, .len = op->len, .key = op->rkey};
	struct fi_msg_rma msg = {
		.msg_iov = &iov,
		.desc = &desc,
		.iov_count = 1,
		.addr = p->addr,
		.rma_iov = &rma,
		.rma_iov_count = 1,
		.context = op,
	};

	return fi_writemsg(f->ep, &msg, FI_DELIVERY_COMPLETE | FI_COMPLETION);
}

void schedule_poll(struct fabric *f, long usec)
{
	struct timeval tv = {0, usec};

	if (!f->closing)
		event_add(f->ev_poll, &tv);
}

/* A write that will not be posted (or was detached): tell the caller. */
static void write_finish(struct fabric *f, struct fop *op, int err)
{
	void *ctx = op->ctx;

	free(op);
	f->cbs.write_done(f->cbs.arg, ctx, err);
}

/* Post @op now, or queue it behind its peer's earlier posts. */
static void post_or_queue(struct fabric *f, struct fop *op)
{
	struct fabric_peer *p = &f->peers[op->peer];
	ssize_t rc = -FI_EAGAIN;

	f->inflight++;
	if (!p->q_head) {
		rc = post(f, op);
		if (rc == 0) {
			posted_link(f, op);
			fabric_shm_ring(f, p);
			return;
		}
	}
	if (rc != -FI_EAGAIN) {
		log_debug("post failed peer=%s kind=%d detail=\"%s\"", p->address, (int)op->kind,
			  ferr((int)rc));
		f->inflight--;
		if (op->kind == FOP_SEND)
			send_put(f, op);
		else
			write_finish(f, op, to_errno((int)rc));
		return;
	}
	op->qnext = NULL;
	if (p->q_tail)
		p->q_tail->qnext = op;
	else
		p->q_head = op;
	p->q_tail = op;
	p->queued++;
	schedule_poll(f, 0); /* progress, then retry */
}

/* Retry the queued posts of every peer, in order, until one meets -FI_EAGAIN. */
static void flush_queues(struct fabric *f)
{
	for (size_t i = 0; i < f->n_peers; i++) {
		struct fabric_peer *p = &f->peers[i];

		while (p->q_head) {
			struct fop *op = p->q_head;
			ssize_t rc = post(f, op);

			if (rc == -FI_EAGAIN)
				break;
			p->q_head = op->qnext;
			if (!p->q_head)
				p->q_tail = NULL;
			p->queued--;
			if (rc == 0) {
				posted_link(f, op);
				fabric_shm_ring(f, p);
				continue;
			}
			log_debug("post failed peer=%s detail=\"%s\"", p->address, ferr((int)rc));
			f->inflight--;
			if (op->kind == FOP_SEND)
				send_put(f, op);
			else
				write_finish(f, op, to_errno((int)rc));
		}
	}
}

int fabric_send(struct fabric *f, int peer, const void *msg, size_t len)
{
	struct fabric_peer *p;
	struct fop *op;

	if (peer < 0 || (size_t)peer >= f->n_peers || len > FABRIC_MSG_MAX)
		return -EINVAL;
	p = &f->peers[peer];
	if (peer_resolve(f, p) < 0 || p->queued >= FABRIC_PEER_QUEUE)
		return -EAGAIN;
	op = f->send_free;
	if (!op)
		return -ENOBUFS;
	f->send_free = op->qnext;
	op->peer = peer;
	op->len = len;
	op->detached = false;
	memcpy(op->buf, msg, len);
	post_or_queue(f, op);
	return 0;
}

int fabric_write(struct fabric *f, int peer, struct fabric_mr *mr, const void *buf, size_t len,
		 uint64_t raddr, uint64_t rkey, void *ctx)
{
	struct fabric_peer *p;
	struct fop *op;

	if (peer < 0 || (size_t)peer >= f->n_peers)
		return -EINVAL;
	p = &f->peers[peer];
	if (peer_resolve(f, p) < 0)
		return -EAGAIN;
	op = calloc(1, sizeof(*op));
	if (!op)
		return -ENOBUFS;
	op->kind = FOP_WRITE;
	op->peer = peer;
	op->buf = (void *)buf;
	op->len = len;
	op->mr = mr;
	op->raddr = raddr;
	op->rkey = rkey;
	op->ctx = ctx;
	post_or_queue(f, op);
	return 0;
}

/*
 * Detach what is posted to @p: its completion may never come, so the caller
 * hears now and the memory waits for it. True when one of them waits for an
 * answer from the peer in the provider's response queue (shm: a write, or a
 * message above the inject size), which then blocks every later completion.
 */
bool detach_posted(struct fabric *f, struct fabric_peer *p, int err)
{
	struct fop *op, *next;
	bool answer = false;

	for (op = p->posted; op; op = next) {
		next = op->next;
		if (op->kind == FOP_WRITE || op->len > SHM_INJECT)
			answer = true;
		op->detached = true;
		op->posted = false;
		op->prev = NULL;
		op->next = f->detached;
		if (f->detached)
			f->detached->prev = op;
		f->detached = op;
		f->inflight--;
		p->n_detached++;
		if (op->kind == FOP_WRITE) {
			void *ctx = op->ctx;

			op->ctx = NULL;
			f->cbs.write_done(f->cbs.arg, ctx, err);
		}
	}
	p->posted = NULL;
	return answer;
}

void fabric_peer_reset(struct fabric *f, int peer)
{
	struct fabric_peer *p;
	struct fop *op, *next;
	bool stuck;

	if (!f || peer < 0 || (size_t)peer >= f->n_peers)
		return;
	p = &f->peers[peer];
	/* queued: never posted, so free at once */
	op = p->q_head;
	p->q_head = p->q_tail = NULL;
	p->queued = 0;
	for (; op; op = next) {
		next = op->qnext;
		f->inflight--;
		if (op->kind == FOP_SEND)
			send_put(f, op);
		else
			write_finish(f, op, -ECONNRESET);
	}
	stuck = detach_posted(f, p, -ECONNRESET);
	if (f->shm)
		fabric_shm_peer_reset(f, p, stuck);
}

/* ---- completions ---- */

void repost_recv(struct fabric *f, struct fop *op)
{
	ssize_t rc;

	if (f->closing)
		return;
	rc = fi_recv(f->ep, op->buf, FABRIC_MSG_MAX, f->msg_mr->desc, FI_ADDR_UNSPEC, op);
	if (rc == -FI_EAGAIN) {
		/* rare: try again after the next progress */
		op->posted = false;
		schedule_poll(f, POLL_US);
		return;
	}
	if (rc)
		log_warn("fi_recv failed detail=\"%s\"", ferr((int)rc));
	op->posted = rc == 0;
}

static void complete(struct fabric *f, struct fop *op, int err, size_t len)
{
	switch (op->kind) {
	case FOP_RECV:
		op->posted = false;
		if (!err && !f->closing)
			f->cbs.recv(f->cbs.arg, op->buf, len);
		repost_recv(f, op);
		return;
	case FOP_SEND:
		if (op->detached) {
			detached_unlink(f, op);
			f->peers[op->peer].n_detached--;
			send_put(f, op);
			return;
		}
		posted_unlink(f, op);
		f->inflight--;
		if (err)
			log_debug("send failed peer=%s detail=\"%s\"", f->peers[op->peer].address,
				  ferr(err));
		send_put(f, op);
		return;
	case FOP_WRITE:
		if (op->detached) {
			detached_unlink(f, op);
			f->peers[op->peer].n_detached--;
			free(op);
			return;
		}
		posted_unlink(f, op);
		f->inflight--;
		write_finish(f, op, err);
		return;
	}
}

void progress(struct fabric *f)
{
	struct fi_cq_msg_entry ent[FABRIC_BATCH];

	f->busy = false;
	for (int round = 0; round < FABRIC_ROUNDS && !f->closing; round++) {
		ssize_t n = fi_cq_read(f->cq, ent, FABRIC_BATCH);

		if (n == -FI_EAVAIL) {
			struct fi_cq_err_entry e;
			char buf[128];

			memset(&e, 0, sizeof(e));
			if (fi_cq_readerr(f->cq, &e, 0) != 1)
				continue;
			f->busy = true;
			if (e.err != FI_ECANCELED || !f->closing)
				log_debug("completion error detail=\"%s\" provider=\"%s\"",
					  ferr(e.err),
					  fi_cq_strerror(f->cq, e.prov_errno, e.err_data, buf,
							 sizeof(buf)));
			if (e.op_context)
				complete(f, e.op_context, to_errno(e.err ? e.err : FI_EIO), 0);
			continue;
		}
		if (n == -FI_EAGAIN || n == 0)
			break;
		if (n < 0) {
			log_warn("fi_cq_read failed detail=\"%s\"", ferr((int)n));
			break;
		}
		f->busy = true;
		for (ssize_t i = 0; i < n; i++)
			complete(f, ent[i].op_context, 0, ent[i].len);
	}
	for (int i = 0; i < FABRIC_RECVS; i++) {
		if (!f->recvs[i].posted)
			repost_recv(f, &f->recvs[i]);
	}
	flush_queues(f);
}

/* Sleep on the wait fd, or come back soon when there is more to do. */
static void rearm(struct fabric *f)
{
	if (f->closing)
		return;
	if (f->busy) {
		schedule_poll(f, 0); /* the next loop iteration, after other events */
		return;
	}
	if (f->wait_fd < 0) {
		schedule_poll(f, POLL_US);
		return;
	}
	struct fid *fids[1] = {&f->cq->fid};

	if (fi_trywait(f->fab, fids, 1) == -FI_EAGAIN)
		schedule_poll(f, 0);
	else if (f->inflight)
		schedule_poll(f, POLL_US); /* a safety net, not the path */
}

void on_event(evutil_socket_t fd, short what, void *arg)
{
	struct fabric *f = arg;

	(void)fd;
	(void)what;
	progress(f);
	rearm(f);
}

/* ---- memory registration ---- */

int fabric_mr_reg(struct fabric *f, void *buf, size_t len, bool remote, struct fabric_mr **out,
		  uint64_t *raddr, uint64_t *rkey)
{
	uint64_t mode = f->info->domain_attr->mr_mode;
	uint64_t access = remote ? FI_REMOTE_WRITE : FI_SEND | FI_RECV | FI_WRITE | FI_READ;
	struct fabric_mr *m = calloc(1, sizeof(*m));
	int rc = -FI_ENOKEY;

	if (!m)
		return -ENOMEM;
	/* with provider keys the key is the provider's; else a random one per region */
	for (int tries = 0; tries < 4 && rc == -FI_ENOKEY; tries++) {
		uint64_t key = 0;

		if (!(mode & FI_MR_PROV_KEY) &&
		    getrandom(&key, sizeof(key), GRND_NONBLOCK) != sizeof(key))
			key = (uint64_t)(uintptr_t)buf ^ (uint64_t)len;
		rc = fi_mr_reg(f->dom, buf, len, access, 0, key & f->key_mask, 0, &m->mr, NULL);
	}
	if (rc) {
		free(m);
		return to_errno(rc);
	}
	if (mode & FI_MR_ENDPOINT) {
		rc = fi_mr_bind(m->mr, &f->ep->fid, 0);
		if (!rc)
			rc = fi_mr_enable(m->mr);
		if (rc) {
			fi_close(&m->mr->fid);
			free(m);
			return to_errno(rc);
		}
	}
	m->desc = fi_mr_desc(m->mr);
	if (raddr)
		*raddr = (mode & FI_MR_VIRT_ADDR) ? (uint64_t)(uintptr_t)buf : 0;
	if (rkey)
		*rkey = fi_mr_key(m->mr);
	*out = m;
	return 0;
}

void fabric_mr_close(struct fabric_mr *m)
{
	if (!m)
		return;
	fi_close(&m->mr->fid);
	free(m);
}

/* ---- open and close ---- */

static struct fi_info *make_hints(const char *provider)
{
	struct fi_info *h = fi_allocinfo();

	if (!h)
		return NULL;
	h->caps = FI_MSG | FI_RMA | FI_SEND | FI_RECV | FI_WRITE | FI_REMOTE_WRITE;
	h->mode = FI_CONTEXT | FI_CONTEXT2;
	h->ep_attr->type = FI_EP_RDM;
	h->domain_attr->threading = FI_THREAD_DOMAIN;
	h->domain_attr->mr_mode =
		FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY | FI_MR_ENDPOINT;
	/*
	 * Writes ask for delivery complete themselves (see post()). Messages
	 * need not: the protocol above answers each one. With shm they must
	 * not (see fabric_shm.c).
	 */
	h->tx_attr->op_flags = strcmp(provider, "shm") ? FI_DELIVERY_COMPLETE : 0;
	h->fabric_attr->prov_name = strdup(provider);
	if (!h->fabric_attr->prov_name) {
		fi_freeinfo(h);
		return NULL;
	}
	return h;
}

static int open_cq(struct fabric *f)
{
	struct fi_cq_attr attr = {
		.size = FABRIC_CQ_SIZE,
		.format = FI_CQ_FORMAT_MSG,
		.wait_obj = FI_WAIT_FD,
	};
	int rc = fi_cq_open(f->dom, &attr, &f->cq, NULL);

	f->wait_fd = -1;
	if (rc == 0) {
		rc = fi_control(&f->cq->fid, FI_GETWAIT, &f->wait_fd);
		if (rc == 0 && f->wait_fd >= 0)
			return 0;
		fi_close(&f->cq->fid);
		f->cq = NULL;
		f->wait_fd = -1;
	}
	/* shm: no wait objects; poll */
	attr.wait_obj = FI_WAIT_NONE;
	return fi_cq_open(f->dom, &attr, &f->cq, NULL);
}

static int setup_buffers(struct fabric *f)
{
	size_t nslots = FABRIC_RECVS + FABRIC_SENDS;
	int rc;

	f->msgbuf_len = nslots * FABRIC_MSG_MAX;
	f->msgbuf = mmap(NULL, f->msgbuf_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			 -1, 0);
	if (f->msgbuf == MAP_FAILED) {
		f->msgbuf = NULL;
		return -errno;
	}
	rc = fabric_mr_reg(f, f->msgbuf, f->msgbuf_len, false, &f->msg_mr, NULL, NULL);
	if (rc < 0) {
		log_errno(LOG_ERR, rc,
			  "cannot register the peer message buffers bytes=%zu: with an RDMA "
			  "provider raise the locked-memory limit (ulimit -l, LimitMEMLOCK=)",
			  f->msgbuf_len);
		return rc;
	}
	for (int i = 0; i < FABRIC_RECVS; i++) {
		struct fop *op = &f->recvs[i];

		op->kind = FOP_RECV;
		op->peer = -1;
		op->buf = f->msgbuf + (size_t)i * FABRIC_MSG_MAX;
	}
	for (int i = FABRIC_SENDS - 1; i >= 0; i--) {
		struct fop *op = &f->sends[i];

		op->kind = FOP_SEND;
		op->buf = f->msgbuf + (size_t)(FABRIC_RECVS + i) * FABRIC_MSG_MAX;
		send_put(f, op);
	}
	return 0;
}

/*
 * An endpoint on the open domain, bound to the queue and the address vector
 * and enabled. With shm @name is this life's name. 0 or -errno after logging.
 */
int ep_open(struct fabric *f, const char *name, struct fid_ep **out)
{
	struct fi_info *info = f->info, *hints = NULL, *own = NULL;
	struct fid_ep *ep = NULL;
	int rc = 0;

	if (name) {
		/* a new life: the same attributes under a new source name */
		hints = make_hints(f->prov);
		rc = hints ? getinfo_for(true, name, true, hints, &own) : -FI_ENOMEM;
		fi_freeinfo(hints);
		if (!rc && !own)
			rc = -FI_ENODATA;
		if (!rc)
			info = own;
	}
	if (!rc)
		rc = fi_endpoint(f->dom, info, &ep, NULL);
	if (!rc)
		rc = fi_ep_bind(ep, &f->cq->fid, FI_TRANSMIT | FI_RECV);
	if (!rc)
		rc = fi_ep_bind(ep, &f->av->fid, 0);
	if (!rc)
		rc = fi_enable(ep);
	if (own)
		fi_freeinfo(own);
	if (rc) {
		log_err("cannot open the rack endpoint provider=%s address=%s detail=\"%s\"",
			f->prov, name ? name : "", ferr(rc));
		if (ep)
			fi_close(&ep->fid);
		return to_errno(rc);
	}
	*out = ep;
	return 0;
}

int fabric_open(struct event_base *base, const char *provider, const char *address,
		const struct fabric_cbs *cbs, struct fabric **out)
{
	struct fabric *f = calloc(1, sizeof(*f));
	struct fi_info *hints = NULL;
	struct fi_av_attr av_attr = {.type = FI_AV_MAP};
	const char *source = address;
	char name[256];
	size_t namelen = sizeof(name);
	int rc;

	if (!f)
		return -ENOMEM;
	f->base = base;
	f->cbs = *cbs;
	f->wait_fd = -1;
	f->bell_fd = -1;
	f->shm = !strcmp(provider, "shm");
	if (f->shm) {
		rc = fabric_shm_setup(f, address);
		if (rc < 0)
			goto err;
		source = f->name;
	}
	hints = make_hints(provider);
	if (!hints) {
		rc = -ENOMEM;
		goto err;
	}
	rc = getinfo_for(f->shm, source, true, hints, &f->info);
	fi_freeinfo(hints);
	if (rc || !f->info) {
		log_err("libfabric offers no endpoint for the rack provider=%s address=%s "
			"detail=\"%s\" (fi_info -p '%s' lists what the provider offers here)",
			provider, address, ferr(rc ? rc : FI_ENODATA), provider);
		rc = rc ? to_errno(rc) : -ENODEV;
		goto err;
	}
	snprintf(f->prov, sizeof(f->prov), "%s", f->info->fabric_attr->prov_name);
	f->key_mask = f->info->domain_attr->mr_key_size >= 8
			      ? ~0ULL
			      : (1ULL << (8 * f->info->domain_attr->mr_key_size)) - 1;
	if (!f->key_mask)
		f->key_mask = ~0ULL;

	rc = fi_fabric(f->info->fabric_attr, &f->fab, NULL);
	if (!rc)
		rc = fi_domain(f->fab, f->info, &f->dom, NULL);
	if (!rc)
		rc = open_cq(f);
	if (!rc)
		rc = fi_av_open(f->dom, &av_attr, &f->av, NULL);
	if (rc) {
		log_err("cannot open the rack endpoint provider=%s address=%s detail=\"%s\"",
			f->prov, address, ferr(rc));
		rc = to_errno(rc);
		goto err;
	}
	rc = ep_open(f, NULL, &f->ep);
	if (rc < 0)
		goto err;
	rc = setup_buffers(f);
	if (rc < 0)
		goto err;

	if (f->bell_fd >= 0) {
		rc = fabric_shm_start(f);
		if (rc < 0)
			goto err;
	}
	f->ev_poll = evtimer_new(base, on_event, f);
	if (f->wait_fd >= 0)
		f->ev_cq = event_new(base, f->wait_fd, EV_READ | EV_PERSIST, on_event, f);
	if (!f->ev_poll || (f->wait_fd >= 0 && !f->ev_cq) ||
	    (f->ev_cq && event_add(f->ev_cq, NULL) < 0)) {
		rc = -ENOMEM;
		goto err;
	}
	for (int i = 0; i < FABRIC_RECVS; i++)
		repost_recv(f, &f->recvs[i]);
	rearm(f);
	schedule_poll(f, 0);

	name[0] = '\0';
	if (fi_getname(&f->ep->fid, name, &namelen) == 0) {
		char str[256];
		size_t sl = sizeof(str);

		fi_av_straddr(f->av, name, str, &sl);
		snprintf(name, sizeof(name), "%s", str);
	}
	log_info(
		"rack endpoint open provider=%s address=%s bound=%s progress=\"%s\" mr_mode=0x%llx",
		f->prov, address, name, fabric_progress_mode(f),
		(unsigned long long)f->info->domain_attr->mr_mode);
	*out = f;
	return 0;

err:
	fabric_close(f);
	return rc;
}

void fabric_close(struct fabric *f)
{
	if (!f)
		return;
	f->closing = true;
	if (f->ev_cq)
		event_free(f->ev_cq);
	if (f->ev_poll)
		event_free(f->ev_poll);
	/* the endpoints first (shm: both lives): after them nothing the provider holds is touched */
	fabric_shm_close(f);
	if (f->ep)
		fi_close(&f->ep->fid);
	for (size_t i = 0; i < f->n_peers; i++) {
		struct fabric_peer *p = &f->peers[i];
		struct fop *op, *next;

		for (op = p->q_head; op; op = next) {
			next = op->qnext;
			if (op->kind == FOP_WRITE)
				free(op);
		}
		for (op = p->posted; op; op = next) {
			next = op->next;
			if (op->kind == FOP_WRITE)
				free(op);
		}
		free(p->address);
		free(p->dest);
		fabric_shm_peer_close(p);
	}
	free(f->peers);
	while (f->detached) {
		struct fop *op = f->detached;

		f->detached = op->next;
		if (op->kind == FOP_WRITE)
			free(op);
	}
	/* shm: entries of dead peers kept for the previous life */
	for (size_t i = 0; i < f->n_stale; i++)
		fi_av_remove(f->av, &f->stale[i].addr, 1, 0);
	fabric_mr_close(f->msg_mr);
	if (f->av)
		fi_close(&f->av->fid);
	if (f->cq)
		fi_close(&f->cq->fid);
	if (f->dom)
		fi_close(&f->dom->fid);
	if (f->fab)
		fi_close(&f->fab->fid);
	if (f->info)
		fi_freeinfo(f->info);
	if (f->msgbuf)
		munmap(f->msgbuf, f->msgbuf_len);
	free(f);
}
