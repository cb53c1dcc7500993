/*
 * fabric.c - the peer transport over libfabric (see fabric.h). The only file
 * that includes <rdma/fabric.h>.
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
 * node's doorbell (see ring()) so that it need not wait for the timer.
 *
 * shm and dead peers (libfabric 1.17). The provider keeps, in the sender's
 * own region, one response slot per operation that needs the receiver's
 * answer, and retires them strictly in order with no timeout and no cancel.
 * One operation posted to a process that died before answering stops every
 * later completion, to every peer; and since the command slots and bounce
 * buffers of the live peers are given back only as responses retire, their
 * queues then fill and each post to them meets -FI_EAGAIN for good: the
 * survivors lose each other. So here:
 *  - messages are sent without FI_DELIVERY_COMPLETE: up to the inject size
 *    the provider copies them into the receiver's queue and completes them at
 *    once, with no response to wait for (the protocol above times out);
 *  - before each post the peer's process is checked to be alive and not
 *    exiting, and its region lock free: a receiver killed while it holds the
 *    lock (it does while it copies a write in) never lets go, and libfabric
 *    spins on it without end (see peer_lock_wait());
 *  - every life of an endpoint has its own name, ADDRESS.PID.GEN, learnt
 *    through the doorbell (see on_bell()), never a region left behind by a
 *    dead process or re-created in place under a name peers still map; a
 *    node removes its own dead lives' regions when it starts;
 *  - a peer declared down with writes (or messages above the inject size)
 *    still unanswered has stopped this endpoint's completions: the endpoint
 *    is replaced by a new life (see restart()), and the old one keeps
 *    serving the others' writes to it until they have moved to the new name.
 */
#include "fabric.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <stddef.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#include "clock.h"
#include "log.h"

#define FABRIC_VERSION	  FI_VERSION(1, 9)
#define FABRIC_RECVS	  64
#define FABRIC_SENDS	  128
#define FABRIC_CQ_SIZE	  1024
#define FABRIC_PEER_QUEUE 8    /* queued sends per peer before -EAGAIN */
#define FABRIC_BATCH	  32   /* completions read at once */
#define FABRIC_ROUNDS	  16   /* batches per progress call, so the loop breathes */
#define POLL_US		  1000 /* shm, or a wait fd with work in flight */
#define SHM_PREFIX	  "granary://"
#define SHM_NAME_MAX	  200		    /* ADDRESS.PID.GEN, without the prefix */
#define SHM_INJECT	  4096		    /* above this a send waits for an answer */
#define SHM_ASK_NS	  (100LL * 1000000) /* a peer's name is asked at most this often */
#define SHM_RETIRE_S	  10		    /* an old endpoint serves this long */

enum fop_kind { FOP_RECV, FOP_SEND, FOP_WRITE };

struct fop {
	struct fi_context2 fctx; /* first: the provider may use it (FI_CONTEXT2) */
	enum fop_kind kind;
	int peer;
	unsigned gen; /* the endpoint life it was posted on */
	bool posted, detached;
	struct fop *qnext;	 /* the peer's queue of posts waiting for room */
	struct fop *prev, *next; /* the peer's list of posted operations */
	void *buf;
	size_t len;
	/* writes */
	struct fabric_mr *mr;
	uint64_t raddr, rkey;
	void *ctx;
};

struct fabric_peer {
	char *address;
	void *dest; /* the provider's form of the address */
	size_t destlen;
	struct sockaddr_un bell; /* shm: the peer's doorbell */
	socklen_t bell_len;
	char inc[SHM_NAME_MAX]; /* shm: the name of its endpoint now, "" if unknown */
	pid_t inc_pid;
	int64_t asked_ns;
	int stat_fd;	     /* shm: its /proc/PID/stat, or -1 */
	int64_t alive_ns;    /* shm: when it was last seen alive */
	void *head;	     /* shm: its region's first page, read only (see peer_lock_wait()) */
	unsigned n_detached; /* its detached operations not completed yet */
	fi_addr_t addr;	     /* FI_ADDR_NOTAVAIL until inserted */
	struct fop *q_head, *q_tail;
	unsigned queued;
	struct fop *posted;
};

struct fabric_mr {
	struct fid_mr *mr;
	void *desc;
};

struct fabric {
	struct event_base *base;
	struct fabric_cbs cbs;
	struct fi_info *info;
	struct fid_fabric *fab;
	struct fid_domain *dom;
	struct fid_av *av;
	struct fid_cq *cq;
	struct fid_ep *ep;
	int wait_fd;
	struct event *ev_cq, *ev_poll;
	bool shm, closing;
	uint64_t key_mask;
	char prov[64];

	uint8_t *msgbuf; /* FABRIC_RECVS + FABRIC_SENDS slots of FABRIC_MSG_MAX */
	size_t msgbuf_len;
	struct fabric_mr *msg_mr;
	struct fop recvs[FABRIC_RECVS];
	struct fop sends[FABRIC_SENDS];
	struct fop *send_free; /* linked through qnext */

	struct fop *detached; /* posted to a peer that was reset: see DESIGN */
	unsigned inflight;    /* posted or queued, not detached */
	bool busy;	      /* the last progress found completions */
	int bell_fd;	      /* shm: this node's doorbell, or -1 */
	struct event *ev_bell;
	size_t n_peers;
	struct fabric_peer *peers;

	/* shm: the lives of this endpoint (see DESIGN and restart()) */
	char address[SHM_NAME_MAX];
	char name[SHM_NAME_MAX]; /* ADDRESS.PID.GEN */
	unsigned gen;
	struct fid_ep *old_ep; /* the previous life, serving until ev_retire */
	struct event *ev_restart, *ev_retire;
	struct {
		fi_addr_t addr;
		unsigned gen;
	} stale[16]; /* address entries of dead peers, removed with that life */
	size_t n_stale;
};

static void bell_name(const char *address, struct sockaddr_un *sa, socklen_t *len);
static int getinfo_for(bool shm, const char *address, bool source, struct fi_info *h,
		       struct fi_info **out);

/* Doorbell datagrams (shm): the first byte says what. */
#define RING_POSTED 0 /* something was posted to you: progress, then ring me back */
#define RING_BACK   1 /* I progressed after your ring: your completions may be in */
#define BELL_ASK    2 /* what is your endpoint's name? */
#define BELL_NAME   3 /* my endpoint's name is (the rest) */

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

static void detached_unlink(struct fabric *f, struct fop *op)
{
	if (op->prev)
		op->prev->next = op->next;
	else if (f->detached == op)
		f->detached = op->next;
	if (op->next)
		op->next->prev = op->prev;
	op->prev = op->next = NULL;
}

static void send_put(struct fabric *f, struct fop *op)
{
	op->qnext = f->send_free;
	f->send_free = op;
}

/* ---- peers' addresses ---- */

/* Whether process @pid exists (EPERM: it does, under another user). */
static bool pid_alive(pid_t pid)
{
	return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

#define PF_EXITING_FLAG 0x4	      /* the kernel's PF_EXITING, field 9 of /proc/PID/stat */
#define ALIVE_REUSE_NS	(20LL * 1000) /* see peer_alive() */

/*
 * Whether @p's endpoint process is alive and not exiting. A process killed
 * while it holds its region's lock (it does while it copies a peer's write in)
 * leaves that lock taken, and a post to it would spin for ever; kill(pid, 0)
 * still answers for a process tearing itself down or not yet reaped, the
 * exiting flag does not. One pread of its stat file, kept open.
 */
static bool peer_alive(struct fabric_peer *p)
{
	char buf[512], *s;
	unsigned long flags;
	int64_t now = clock_now_ns();
	ssize_t n;

	if (p->stat_fd < 0)
		return pid_alive(p->inc_pid);
	/* posts in one burst share a look: it costs about 12 us */
	if (now - p->alive_ns < ALIVE_REUSE_NS)
		return true;
	n = pread(p->stat_fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	s = strrchr(buf, ')');
	/* ") state ppid pgrp session tty_nr tpgid flags" */
	if (!s || sscanf(s + 1, " %*c %*d %*d %*d %*d %*d %lu", &flags) != 1)
		return pid_alive(p->inc_pid);
	if (flags & PF_EXITING_FLAG)
		return false;
	p->alive_ns = now;
	return true;
}

/*
 * The lock a post takes. libfabric 1.17's shm takes the receiver's region lock
 * with pthread_spin_lock() for every post, and the receiver holds it while it
 * copies a peer's write in (tens of microseconds per chunk). A receiver killed
 * then never lets go, and a post that started spinning a moment before its
 * death spins for ever: checking that it is alive cannot help. So the lock
 * word is looked at first (read only, through a mapping of the region's first
 * page), and a post waits for it a bounded while, checking that the peer
 * lives, before it lets the provider take it; still held, the post is queued
 * and retried. The word's place is the provider's: region_head() checks what
 * it can of the layout (version, pid, base address) and gives up on anything
 * else, and then posts go straight to the provider as before.
 */
#define REGION_HEAD  4096
#define REGION_PID   4	/* int pid */
#define REGION_BASE  16 /* void *base_addr */
#define REGION_LOCK  24 /* pthread_spinlock_t lock */
#define LOCK_WAIT_NS (500LL * 1000)

static void *region_head(const char *name, pid_t pid)
{
	char path[sizeof("/dev/shm/") + SHM_NAME_MAX];
	uint64_t base;
	uint8_t *h;
	int fd, rpid;

	snprintf(path, sizeof(path), "/dev/shm/%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	h = mmap(NULL, REGION_HEAD, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (h == MAP_FAILED)
		return NULL;
	memcpy(&rpid, h + REGION_PID, sizeof(rpid));
	memcpy(&base, h + REGION_BASE, sizeof(base));
	if (h[0] == 0 || rpid != pid || base == 0 || base % 4096 != 0) {
		munmap(h, REGION_HEAD);
		return NULL;
	}
	return h;
}

static bool lock_held(const void *head)
{
	int v = __atomic_load_n((const int *)((const uint8_t *)head + REGION_LOCK),
				__ATOMIC_RELAXED);
#if defined(__x86_64__) || defined(__i386__)
	return v <= 0; /* glibc's x86 spinlocks count down from 1 */
#else
	return v != 0;
#endif
}

/* 0 when @p's region lock is free (or cannot be seen), -EAGAIN, -EHOSTUNREACH. */
static int peer_lock_wait(struct fabric_peer *p)
{
	int64_t start;

	if (!p->head || !lock_held(p->head))
		return 0;
	start = clock_now_ns();
	while (lock_held(p->head)) {
		if (!peer_alive(p))
			return -EHOSTUNREACH;
		if (clock_now_ns() - start > LOCK_WAIT_NS)
			return -EAGAIN;
#if defined(__x86_64__) || defined(__i386__)
		__builtin_ia32_pause();
#endif
	}
	return 0;
}

/* The pid in an shm endpoint name ADDRESS.PID.GEN, or 0. */
static pid_t name_pid(const char *name)
{
	const char *gen = strrchr(name, '.');
	const char *pid;
	long v;

	if (!gen || gen == name)
		return 0;
	for (pid = gen - 1; pid > name && pid[-1] != '.'; pid--)
		;
	if (pid == name)
		return 0;
	v = strtol(pid, NULL, 10);
	return v > 0 && v < (1L << 22) ? (pid_t)v : 0;
}

static void bell_send(struct fabric *f, const struct sockaddr_un *to, socklen_t len, char type,
		      const char *text);

/* Ask @p for its endpoint's name, at most every SHM_ASK_NS. */
static void peer_ask(struct fabric *f, struct fabric_peer *p)
{
	int64_t now = clock_now_ns();

	if (now - p->asked_ns < SHM_ASK_NS)
		return;
	p->asked_ns = now;
	bell_send(f, &p->bell, p->bell_len, BELL_ASK, NULL);
}

/*
 * Let go of @p's address entry (shm: its endpoint is gone or replaced). The
 * provider may still hold responses owed by it for operations of this or the
 * previous life of the endpoint; removing the entry under them would leave
 * them pointing at unmapped memory, so then it is removed only when that life
 * is retired (see retire()).
 */
static void peer_forget(struct fabric *f, struct fabric_peer *p)
{
	if (p->addr != FI_ADDR_NOTAVAIL) {
		if (!p->posted && !p->n_detached)
			fi_av_remove(f->av, &p->addr, 1, 0);
		else if (f->n_stale < sizeof(f->stale) / sizeof(f->stale[0])) {
			f->stale[f->n_stale].addr = p->addr;
			f->stale[f->n_stale].gen = f->gen;
			f->n_stale++;
		}
		/* else: one mapping kept until fabric_close */
	}
	p->addr = FI_ADDR_NOTAVAIL;
	p->inc[0] = '\0';
	p->inc_pid = 0;
	p->asked_ns = 0;
	if (p->stat_fd >= 0)
		close(p->stat_fd);
	p->stat_fd = -1;
	p->alive_ns = 0;
	if (p->head)
		munmap(p->head, REGION_HEAD);
	p->head = NULL;
}

/* The provider's form of destination @address (shm: an endpoint name). */
static int dest_for(struct fabric *f, const char *address, void **dest, size_t *len)
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
 * process is gone is never posted to (see DESIGN).
 */
static int peer_resolve(struct fabric *f, struct fabric_peer *p)
{
	fi_addr_t a;
	int n;

	if (f->shm) {
		if (p->inc[0] && p->addr == FI_ADDR_NOTAVAIL && !peer_alive(p))
			peer_forget(f, p);
		if (!p->inc[0]) {
			peer_ask(f, p);
			return -EAGAIN;
		}
		if (p->addr == FI_ADDR_NOTAVAIL) {
			free(p->dest);
			p->dest = NULL;
			if (dest_for(f, p->inc, &p->dest, &p->destlen) != 0)
				return -EAGAIN;
		}
	}
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

/*
 * Remove the regions earlier lives of this node's endpoint left in /dev/shm
 * (a process killed with SIGKILL cannot): ADDRESS.PID.GEN of a PID that is
 * gone, and ADDRESS itself, the name older versions used. Called once this
 * process holds the address's doorbell, so no live process owns them.
 */
static void shm_remove_leftovers(const char *address)
{
	size_t alen = strlen(address);
	unsigned removed = 0;
	struct dirent *de;
	DIR *dir = opendir("/dev/shm");

	if (!dir)
		return;
	while ((de = readdir(dir))) {
		pid_t pid;

		if (strncmp(de->d_name, address, alen) != 0)
			continue;
		if (de->d_name[alen] == '\0') {
			pid = 0;
		} else if (de->d_name[alen] == '.') {
			pid = name_pid(de->d_name);
			if (!pid || pid == getpid() || pid_alive(pid))
				continue;
		} else {
			continue;
		}
		if (shm_unlink(de->d_name) == 0)
			removed++;
	}
	closedir(dir);
	if (removed)
		log_info(
			"removed regions of earlier lives of the rack endpoint count=%u address=%s",
			removed, address);
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
		if (strlen(address) + 24 >= SHM_NAME_MAX || strchr(address, '/'))
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
	if (f->shm) {
		bell_name(address, &p->bell, &p->bell_len);
		/* tell it who we are now, and ask who it is */
		bell_send(f, &p->bell, p->bell_len, BELL_NAME, f->name);
	}
	peer_resolve(f, p);
	return (int)(f->n_peers - 1);
}

/* ---- shm doorbells ---- */

/*
 * shm gives no wait fd, and polling alone costs a millisecond per hop. Each
 * node binds a datagram socket in the abstract namespace named after its
 * address; after posting to a peer it sends that peer's doorbell a byte, and
 * the peer's loop wakes and progresses at once. A lost or stray ring costs
 * nothing: the poll timer still runs.
 */
static void bell_name(const char *address, struct sockaddr_un *sa, socklen_t *len)
{
	int n;

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	n = snprintf(sa->sun_path + 1, sizeof(sa->sun_path) - 1, "granary-rack/%s", address);
	if (n < 0 || (size_t)n >= sizeof(sa->sun_path) - 1)
		n = (int)sizeof(sa->sun_path) - 2;
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

static void ring(struct fabric *f, struct fabric_peer *p)
{
	char b = RING_POSTED;

	if (f->bell_fd >= 0 && p->bell_len)
		(void)sendto(f->bell_fd, &b, 1, MSG_DONTWAIT | MSG_NOSIGNAL,
			     (struct sockaddr *)&p->bell, p->bell_len);
}

static void bell_send(struct fabric *f, const struct sockaddr_un *to, socklen_t len, char type,
		      const char *text)
{
	char buf[1 + SHM_NAME_MAX];
	size_t n = 1;

	if (f->bell_fd < 0 || !len)
		return;
	buf[0] = type;
	if (text) {
		n += strlen(text);
		memcpy(buf + 1, text, n - 1);
	}
	(void)sendto(f->bell_fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL, (const struct sockaddr *)to,
		     len);
}

/*
 * @from says its endpoint is now @name. A new name means a new life of that
 * node's endpoint (it restarted, or replaced its endpoint): what was posted
 * to the old one is settled by fabric_peer_reset() when peer.c notices.
 */
static void bell_learn(struct fabric *f, const struct sockaddr_un *from, socklen_t len,
		       const char *name)
{
	char path[64];

	for (size_t i = 0; i < f->n_peers; i++) {
		struct fabric_peer *p = &f->peers[i];
		pid_t pid = name_pid(name);

		if (p->bell_len != len || memcmp(&p->bell, from, len) != 0)
			continue;
		if (!strcmp(p->inc, name) || !pid)
			return;
		if (p->inc[0])
			log_info("rack peer endpoint changed peer=%s old=%s new=%s", p->address,
				 p->inc, name);
		peer_forget(f, p);
		snprintf(p->inc, sizeof(p->inc), "%s", name);
		p->inc_pid = pid;
		snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
		p->stat_fd = open(path, O_RDONLY | O_CLOEXEC);
		p->head = region_head(name, pid);
		peer_resolve(f, p);
		return;
	}
}

static void on_event(evutil_socket_t fd, short what, void *arg);

/*
 * Rung. A peer's writes into this node complete at the peer only once this
 * node has processed them, so after progressing, ring back whoever rang with
 * news (never in answer to a ring back: no ping-pong). Names are asked and
 * told here too (see DESIGN).
 */
static void on_bell(evutil_socket_t fd, short what, void *arg)
{
	struct fabric *f = arg;
	struct sockaddr_un from[4];
	socklen_t fromlen[4];
	int nfrom = 0;

	for (;;) {
		struct sockaddr_un sa;
		socklen_t len = sizeof(sa);
		char b[1 + SHM_NAME_MAX];
		ssize_t n =
			recvfrom(fd, b, sizeof(b) - 1, MSG_DONTWAIT, (struct sockaddr *)&sa, &len);

		if (n < 0)
			break;
		if (n < 1 || len <= offsetof(struct sockaddr_un, sun_path))
			continue;
		if (b[0] == BELL_ASK) {
			bell_send(f, &sa, len, BELL_NAME, f->name);
			continue;
		}
		if (b[0] == BELL_NAME && n > 1) {
			b[n] = '\0';
			bell_learn(f, &sa, len, b + 1);
			continue;
		}
		if (n != 1 || b[0] != RING_POSTED)
			continue;
		for (int i = 0; i <= nfrom; i++) {
			if (i == nfrom) {
				if (nfrom < 4) {
					from[nfrom] = sa;
					fromlen[nfrom++] = len;
				}
				break;
			}
			if (fromlen[i] == len && !memcmp(&from[i], &sa, len))
				break;
		}
	}
	on_event(fd, what, arg);
	for (int i = 0; i < nfrom; i++) {
		char b = RING_BACK;

		(void)sendto(f->bell_fd, &b, 1, MSG_DONTWAIT | MSG_NOSIGNAL,
			     (struct sockaddr *)&from[i], fromlen[i]);
	}
}

/*
 * Bind this node's doorbell. With shm the peers find this node's endpoint
 * through it, so it is required; holding it also proves that no live process
 * uses this address. 0 or -errno after logging.
 */
static int bell_open(struct fabric *f, const char *address)
{
	struct sockaddr_un sa;
	socklen_t len;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int rc;

	if (fd < 0) {
		rc = -errno;
		log_errno(LOG_ERR, rc, "cannot open the shm doorbell address=%s", address);
		return rc;
	}
	bell_name(address, &sa, &len);
	if (bind(fd, (struct sockaddr *)&sa, len) < 0) {
		rc = -errno;
		log_errno(LOG_ERR, rc,
			  "cannot bind the shm doorbell: is another granaryd using this rack "
			  "address on this host? address=%s",
			  address);
		close(fd);
		return rc;
	}
	f->bell_fd = fd;
	return 0;
}

/* ---- posting ---- */

static ssize_t post(struct fabric *f, struct fop *op)
{
	struct fabric_peer *p = &f->peers[op->peer];
	int rc;

	if (f->shm) {
		if (peer_resolve(f, p) < 0)
			return -FI_EAGAIN;
		/* never touch the region of a process that is gone (see DESIGN) */
		if (!peer_alive(p))
			return -FI_EHOSTUNREACH;
		rc = peer_lock_wait(p);
		if (rc == -EAGAIN)
			return -FI_EAGAIN;
		if (rc < 0)
			return -FI_EHOSTUNREACH;
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

static void schedule_poll(struct fabric *f, long usec)
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
			ring(f, p);
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
				ring(f, p);
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
static bool detach_posted(struct fabric *f, struct fabric_peer *p, int err)
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
	if (!f->shm)
		return;
	if (stuck && !f->closing) {
		log_warn("rack endpoint waits on a peer that is gone peer=%s: replacing it",
			 p->address);
		event_active(f->ev_restart, EV_TIMEOUT, 0);
	}
	/* a dead life's entry goes; a live one (stalled, leaving) is kept */
	if (p->inc[0] && !peer_alive(p))
		peer_forget(f, p);
}

/* ---- a new life for the endpoint (shm) ---- */

static int ep_open(struct fabric *f, const char *name, struct fid_ep **out);
static void repost_recv(struct fabric *f, struct fop *op);
static void retire(evutil_socket_t fd, short what, void *arg);
static void progress(struct fabric *f);

/*
 * The provider retires responses in order (see DESIGN): one owed by a dead
 * peer stops this endpoint's completions for good. Open a new endpoint under
 * a new name, tell the peers, and keep the old one a while: it goes on
 * serving the peers' writes and messages to it (only its own completions are
 * stuck) until they have moved, so no peer is left waiting on it in turn.
 * Everything posted on the old one is detached; its receives are cancelled
 * and come back on the new one.
 */
static void restart(evutil_socket_t fd, short what, void *arg)
{
	struct fabric *f = arg;
	struct fid_ep *ep;
	char name[SHM_NAME_MAX];
	struct timeval tv = {SHM_RETIRE_S, 0};

	(void)fd;
	(void)what;
	if (f->closing)
		return;
	if (f->old_ep) {
		/* a second in a row: the oldest goes now */
		event_del(f->ev_retire);
		retire(-1, 0, f);
	}
	if (snprintf(name, sizeof(name), "%s.%d.%u", f->address, (int)getpid(), f->gen + 1) >=
		    (int)sizeof(name) ||
	    ep_open(f, name, &ep) < 0)
		return; /* logged; the old endpoint stays, stuck */
	f->old_ep = f->ep;
	f->ep = ep;
	f->gen++;
	snprintf(f->name, sizeof(f->name), "%s", name);
	for (size_t i = 0; i < f->n_peers; i++)
		(void)detach_posted(f, &f->peers[i], -ECANCELED); /* the peer is fine */
	for (int i = 0; i < FABRIC_RECVS; i++) {
		struct fop *op = &f->recvs[i];

		/* a cancelled receive completes, and reposts itself on the new one */
		if (op->posted)
			(void)fi_cancel(&f->old_ep->fid, op);
		else
			repost_recv(f, op);
	}
	for (size_t i = 0; i < f->n_peers; i++)
		bell_send(f, &f->peers[i].bell, f->peers[i].bell_len, BELL_NAME, f->name);
	event_add(f->ev_retire, &tv);
	log_info("rack endpoint replaced name=%s", f->name);
	schedule_poll(f, 0);
}

/* Close the previous life, and what only it could still refer to. */
static void retire(evutil_socket_t fd, short what, void *arg)
{
	struct fabric *f = arg;
	unsigned gen = f->gen - 1;
	struct fop *op, *next;
	size_t i, kept = 0;

	(void)fd;
	(void)what;
	if (!f->old_ep)
		return;
	fi_close(&f->old_ep->fid);
	f->old_ep = NULL;
	/* completions it wrote before closing find their operations first */
	progress(f);
	for (op = f->detached; op; op = next) {
		next = op->next;
		if (op->gen > gen)
			continue;
		detached_unlink(f, op);
		f->peers[op->peer].n_detached--;
		if (op->kind == FOP_SEND)
			send_put(f, op);
		else
			free(op);
	}
	for (i = 0; i < f->n_stale; i++) {
		if (f->stale[i].gen <= gen)
			fi_av_remove(f->av, &f->stale[i].addr, 1, 0);
		else
			f->stale[kept++] = f->stale[i];
	}
	f->n_stale = kept;
}

/* ---- completions ---- */

static void repost_recv(struct fabric *f, struct fop *op)
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

static void progress(struct fabric *f)
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

static void on_event(evutil_socket_t fd, short what, void *arg)
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
	 * not (see DESIGN).
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
static int ep_open(struct fabric *f, const char *name, struct fid_ep **out)
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
		/* the doorbell first: it proves the address is ours (see DESIGN) */
		if (strlen(address) + 24 >= SHM_NAME_MAX || strchr(address, '/')) {
			log_err("shm rack address too long or with a slash address=%s", address);
			rc = -EINVAL;
			goto err;
		}
		rc = bell_open(f, address);
		if (rc < 0)
			goto err;
		shm_remove_leftovers(address);
		snprintf(f->address, sizeof(f->address), "%s", address);
		snprintf(f->name, sizeof(f->name), "%s.%d.0", address, (int)getpid());
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
		f->ev_bell = event_new(base, f->bell_fd, EV_READ | EV_PERSIST, on_bell, f);
		f->ev_restart = evtimer_new(base, restart, f);
		f->ev_retire = evtimer_new(base, retire, f);
		if (!f->ev_bell || !f->ev_restart || !f->ev_retire ||
		    event_add(f->ev_bell, NULL) < 0) {
			rc = -ENOMEM;
			goto err;
		}
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
	if (f->ev_bell)
		event_free(f->ev_bell);
	if (f->ev_restart)
		event_free(f->ev_restart);
	if (f->ev_retire)
		event_free(f->ev_retire);
	if (f->bell_fd >= 0)
		close(f->bell_fd);
	/* the endpoints first: after them nothing the provider holds is touched */
	if (f->old_ep)
		fi_close(&f->old_ep->fid);
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
		if (p->stat_fd >= 0)
			close(p->stat_fd);
		if (p->head)
			munmap(p->head, REGION_HEAD);
	}
	free(f->peers);
	while (f->detached) {
		struct fop *op = f->detached;

		f->detached = op->next;
		if (op->kind == FOP_WRITE)
			free(op);
	}
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
