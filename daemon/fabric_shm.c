/*
 * fabric_shm.c - what libfabric's shm provider needs alone (see
 * fabric_impl.h): doorbells, the names of an endpoint's lives, pid liveness,
 * the look at a peer's region lock, /dev/shm clean-up, and a new life for an
 * endpoint stuck on a dead peer. fabric.c is the generic transport.
 *
 * DESIGN: shm gives the completion queue no wait fd: fabric.c polls it every
 * millisecond, and a peer that posts something rings this node's doorbell
 * (see fabric_shm_ring()) so that it need not wait for the timer.
 *
 * shm and dead peers (libfabric 1.17). The provider keeps, in the sender's
 * own region, one response slot per operation that needs the receiver's
 * answer, and retires them strictly in order with no timeout and no cancel.
 * One operation posted to a process that died before answering stops every
 * later completion, to every peer; and since the command slots and bounce
 * buffers of the live peers are given back only as responses retire, their
 * queues then fill and each post to them meets -FI_EAGAIN for good: the
 * survivors lose each other. So here:
 *  - messages are sent without FI_DELIVERY_COMPLETE (fabric.c's
 *    make_hints()): up to the inject size
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
#include "fabric_impl.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <rdma/fi_errno.h>

#include "clock.h"
#include "log.h"

#define SHM_ASK_NS   (100LL * 1000000) /* a peer's name is asked at most this often */
#define SHM_RETIRE_S 10		       /* an old endpoint serves this long */

/* Doorbell datagrams (shm): the first byte says what. */
#define RING_POSTED 0 /* something was posted to you: progress, then ring me back */
#define RING_BACK   1 /* I progressed after your ring: your completions may be in */
#define BELL_ASK    2 /* what is your endpoint's name? */
#define BELL_NAME   3 /* my endpoint's name is (the rest) */

/* ---- peers: liveness, region locks, names ---- */

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

void fabric_shm_ring(struct fabric *f, struct fabric_peer *p)
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

/* ---- a new life for the endpoint ---- */

static void retire(evutil_socket_t fd, short what, void *arg);

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

/* ---- for fabric.c ---- */

bool fabric_shm_address_ok(const char *address)
{
	return strlen(address) + 24 < SHM_NAME_MAX && !strchr(address, '/');
}

int fabric_shm_setup(struct fabric *f, const char *address)
{
	int rc;

	/* the doorbell first: it proves the address is ours (see DESIGN) */
	if (!fabric_shm_address_ok(address)) {
		log_err("shm rack address too long or with a slash address=%s", address);
		return -EINVAL;
	}
	rc = bell_open(f, address);
	if (rc < 0)
		return rc;
	shm_remove_leftovers(address);
	snprintf(f->address, sizeof(f->address), "%s", address);
	snprintf(f->name, sizeof(f->name), "%s.%d.0", address, (int)getpid());
	return 0;
}

int fabric_shm_start(struct fabric *f)
{
	f->ev_bell = event_new(f->base, f->bell_fd, EV_READ | EV_PERSIST, on_bell, f);
	f->ev_restart = evtimer_new(f->base, restart, f);
	f->ev_retire = evtimer_new(f->base, retire, f);
	if (!f->ev_bell || !f->ev_restart || !f->ev_retire || event_add(f->ev_bell, NULL) < 0)
		return -ENOMEM;
	return 0;
}

void fabric_shm_close(struct fabric *f)
{
	if (f->ev_bell)
		event_free(f->ev_bell);
	if (f->ev_restart)
		event_free(f->ev_restart);
	if (f->ev_retire)
		event_free(f->ev_retire);
	if (f->bell_fd >= 0)
		close(f->bell_fd);
	if (f->old_ep)
		fi_close(&f->old_ep->fid);
}

void fabric_shm_peer_add(struct fabric *f, struct fabric_peer *p)
{
	bell_name(p->address, &p->bell, &p->bell_len);
	/* tell it who we are now, and ask who it is */
	bell_send(f, &p->bell, p->bell_len, BELL_NAME, f->name);
}

void fabric_shm_peer_close(struct fabric_peer *p)
{
	if (p->stat_fd >= 0)
		close(p->stat_fd);
	if (p->head)
		munmap(p->head, REGION_HEAD);
}

/*
 * The peer's endpoint name is learnt from its doorbell, and a peer whose
 * process is gone is forgotten before anything is posted to it (see DESIGN).
 */
int fabric_shm_peer_dest(struct fabric *f, struct fabric_peer *p)
{
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
	return 0;
}

int fabric_shm_post_ready(struct fabric *f, struct fabric_peer *p)
{
	int rc;

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
	return 0;
}

void fabric_shm_peer_reset(struct fabric *f, struct fabric_peer *p, bool stuck)
{
	if (stuck && !f->closing) {
		log_warn("rack endpoint waits on a peer that is gone peer=%s: replacing it",
			 p->address);
		event_active(f->ev_restart, EV_TIMEOUT, 0);
	}
	/* a dead life's entry goes; a live one (stalled, leaving) is kept */
	if (p->inc[0] && !peer_alive(p))
		peer_forget(f, p);
}
