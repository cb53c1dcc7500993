/*
 * preload_daemon.c - the shim's side of the socket: settings, log, per-thread
 * connections to granaryd, the mount table and the requests OPEN, STAT, DROP
 * and LIST. The fast path and the ACCESS reports of its reads are
 * preload_fast.c's: HELLO hands it the shared index, and thread exit,
 * process exit and fork have it send the reports still buffered.
 *
 * DESIGN. Each thread has its own SOCK_SEQPACKET connection, so concurrent
 * readers do not wait for each other; its state (descriptor, request ids, a
 * send and a receive buffer) lives in one mmap'd block, never malloc'd, found
 * through an initial-exec TLS pointer and freed by a pthread key destructor.
 * A request is one send and one receive; a reply whose id is not the one
 * awaited (a DROP answered late) is discarded with any descriptor it carries.
 *
 * Failure: when a connection fails (absent, refused, timeout, garbled
 * reply), the daemon is taken as down for RETRY_NS (longer after timeouts in
 * a row, see retry_ns()): every thread falls open
 * without trying, then one thread at a time tries to connect again. Each
 * failure bumps fail_epoch; a connection made before the last failure is
 * replaced before its next use, and the first connection after it fetches
 * the mount table again (HELLO), so a restarted daemon is picked up without a
 * restart of the application. A send that finds a connection closed by its
 * peer (a daemon that went away since) reconnects once at once.
 *
 * The mount table is read under a sequence counter, without a lock: readers
 * retry when a HELLO rewrote it meanwhile; writers hold table_lock.
 *
 * fork: the child must not share its parent's connections. A pthread_atfork
 * child handler closes every connection descriptor (all are registered in
 * conn_reg) and bumps fork_gen; a thread's state from another generation is
 * treated as unconnected.
 */
#include "preload.h"
#include "preload_fast.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define SOCKET_DEFAULT	"/run/granary/granary.sock"
#define TIMEOUT_DEFAULT 30000 /* ms: a miss may fetch a large file */
#define SPIN_US_DEFAULT 100   /* a hit is answered in tens of microseconds */
#define RETRY_NS	1000000000LL
#define DROP_WAIT_MS	100
#define HELLO_WAIT_MS	2000
#define SYSLOG_EVERY_NS 60000000000LL
#define CONN_REG_MAX	1024
#define TABLE_NEVER	UINT64_MAX
#define MAX_REPLY_FDS	4

struct shim_state g = {
	.once = PTHREAD_ONCE_INIT,
	.table_epoch = TABLE_NEVER,
	.table_lock = PTHREAD_MUTEX_INITIALIZER,
};

static int conn_reg[CONN_REG_MAX]; /* fd + 1 of every connection, 0 when free */

/*
 * Every thread state made, filled in order, never unmapped: a thread's
 * state goes back to the pool when it ends, and at process exit the reports
 * of threads still ending (a program that joined them has gone on before
 * their destructors ran) are taken from here.
 */
struct tstate *ts_pool[TS_POOL_MAX]; /* atomic */

__thread struct tstate *tls_ts TLS_IE;
__thread int tls_busy TLS_IE;

int shim_sys_close(int fd)
{
	return (int)syscall(SYS_close, fd);
}

int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- log ---- */

struct line {
	char buf[1024];
	size_t n;
};

static void line_str(struct line *l, const char *s)
{
	if (!s)
		s = "(null)";
	while (*s && l->n < sizeof(l->buf) - 1)
		l->buf[l->n++] = *s++;
}

static void line_num(struct line *l, unsigned long long v, bool neg, unsigned base)
{
	char tmp[24];
	int i = 0;

	do {
		tmp[i++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	if (neg)
		tmp[i++] = '-';
	while (i > 0 && l->n < sizeof(l->buf) - 1)
		l->buf[l->n++] = tmp[--i];
}

static void line_vfmt(struct line *l, const char *fmt, va_list ap)
{
	for (; *fmt && l->n < sizeof(l->buf) - 1; fmt++) {
		int lng = 0;

		if (*fmt != '%') {
			l->buf[l->n++] = *fmt;
			continue;
		}
		fmt++;
		while (*fmt == 'l') {
			lng++;
			fmt++;
		}
		switch (*fmt) {
		case 's':
			line_str(l, va_arg(ap, const char *));
			break;
		case 'd': {
			long long v = lng >= 2 ? va_arg(ap, long long)
				      : lng    ? va_arg(ap, long)
					       : va_arg(ap, int);

			line_num(l, v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v,
				 v < 0, 10);
			break;
		}
		case 'u':
		case 'x': {
			unsigned long long v = lng >= 2 ? va_arg(ap, unsigned long long)
					       : lng	? va_arg(ap, unsigned long)
							: va_arg(ap, unsigned);

			line_num(l, v, false, *fmt == 'x' ? 16 : 10);
			break;
		}
		case '%':
			l->buf[l->n++] = '%';
			break;
		case '\0':
			return;
		default:
			l->buf[l->n++] = '?';
			break;
		}
	}
}

static void line_prefix(struct line *l)
{
	line_str(l, "granary-preload[");
	line_num(l, (unsigned long long)getpid(), false, 10);
	line_str(l, "]: ");
}

static void line_write(int fd, struct line *l)
{
	size_t off = 0;

	l->buf[l->n++] = '\n';
	while (off < l->n) {
		ssize_t w = write(fd, l->buf + off, l->n - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		off += (size_t)w;
	}
}

void shim_log(const char *fmt, ...)
{
	struct line l = {.n = 0};
	va_list ap;
	int saved = errno;

	if (!g.debug)
		return;
	line_prefix(&l);
	va_start(ap, fmt);
	line_vfmt(&l, fmt, ap);
	va_end(ap);
	line_write(STDERR_FILENO, &l);
	errno = saved;
}

int shim_debug(void)
{
	return g.debug;
}

const char *shim_errname(int err)
{
	const char *s = strerrorname_np(err);

	return s ? s : "E?";
}

/* One datagram to syslog's socket, if there is one; never blocks. */
static void syslog_line(const char *msg)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX, .sun_path = "/dev/log"};
	struct line l = {.n = 0};
	int fd;

	line_str(&l, "<11>granary-preload[");
	line_num(&l, (unsigned long long)getpid(), false, 10);
	line_str(&l, "]: ");
	line_str(&l, msg);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return;
	sendto(fd, l.buf, l.n, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&sa, sizeof(sa));
	shim_sys_close(fd);
}

void shim_log_error(const char *op, const char *path, int err, const char *why)
{
	struct line l = {.n = 0};
	int64_t now = mono_ns();
	int64_t last = __atomic_load_n(&g.syslog_last, __ATOMIC_RELAXED);
	int saved = errno;

	shim_log("%s %s: object-store mount, %s%s%s", op, path, shim_errname(err),
		 why && why[0] ? ": " : "", why ? why : "");
	if (err == ENOENT || (last && now - last < SYSLOG_EVERY_NS))
		goto out; /* a missing file is an answer, not a fault */
	if (!__atomic_compare_exchange_n(&g.syslog_last, &last, now, false, __ATOMIC_RELAXED,
					 __ATOMIC_RELAXED))
		goto out;
	line_str(&l, op);
	line_str(&l, " ");
	line_str(&l, path);
	line_str(&l, " failed with ");
	line_str(&l, shim_errname(err));
	if (why && why[0]) {
		line_str(&l, ": ");
		line_str(&l, why);
	}
	line_str(&l, " (granaryd at ");
	line_str(&l, g.sock);
	line_str(&l, "; further errors in the next minute are not logged)");
	l.buf[l.n] = '\0';
	syslog_line(l.buf);
out:
	errno = saved;
}

/* ---- settings and threads ---- */

static void tstate_destroy(void *p);
static void fork_prepare(void);
static void fork_parent(void);
static void fork_child(void);

static int env_int(const char *name, int def)
{
	const char *s = getenv(name);
	long v = 0;

	if (!s || !*s)
		return def;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return def;
		v = v * 10 + (*s - '0');
		if (v > 1000000000L)
			return def;
	}
	return (int)v;
}

static void shim_init(void)
{
	cpu_set_t cpus;
	unsigned ncpu = 1;
	const char *s;
	size_t n;

	s = getenv("GRANARY_DISABLE");
	g.disabled = s && *s && strcmp(s, "0") != 0;
	s = getenv("GRANARY_FASTPATH");
	g.fast_off = s && strcmp(s, "0") == 0;
	s = getenv("GRANARY_DEBUG");
	if (s && *s && strcmp(s, "0") != 0)
		g.debug = env_int("GRANARY_DEBUG", 1) >= 2 ? 2 : 1;
	g.timeout_ms = env_int("GRANARY_TIMEOUT_MS", TIMEOUT_DEFAULT);
	if (g.timeout_ms <= 0)
		g.timeout_ms = TIMEOUT_DEFAULT;
	g.spin_ns = (int64_t)env_int("GRANARY_SPIN_US", SPIN_US_DEFAULT) * 1000;
	if (sched_getaffinity(0, sizeof(cpus), &cpus) == 0)
		ncpu = (unsigned)CPU_COUNT(&cpus);
	g.spin_max = ncpu / 4; /* none below 4 CPUs: the daemon needs them */
	s = getenv("GRANARY_SOCKET");
	if (!s || !*s)
		s = SOCKET_DEFAULT;
	n = strlen(s);
	if (n >= sizeof(g.sock)) {
		shim_log("GRANARY_SOCKET is longer than a socket path may be: disabled");
		g.disabled = true;
	} else {
		memcpy(g.sock, s, n + 1);
	}
	if (!g.disabled)
		g.have_key = pthread_key_create(&g.key, tstate_destroy) == 0;
	__atomic_store_n(&g.ready, 1, __ATOMIC_RELEASE);
}

static bool shim_ready(void)
{
	if (__builtin_expect(!__atomic_load_n(&g.ready, __ATOMIC_ACQUIRE), 0))
		pthread_once(&g.once, shim_init);
	return !g.disabled;
}

bool shim_enter(void)
{
	if (tls_busy)
		return false;
	if (!shim_ready())
		return false;
	tls_busy = 1;
	return true;
}

void shim_leave(void)
{
	tls_busy = 0;
}

__attribute__((constructor)) static void shim_ctor(void)
{
	if (shim_ready())
		pthread_atfork(fork_prepare, fork_parent, fork_child);
}

struct tstate *tstate_get(void)
{
	struct tstate *ts = tls_ts;
	void *p;
	int i;

	if (ts)
		return ts;
	for (i = 0; i < TS_POOL_MAX && !ts; i++) {
		struct tstate *q = __atomic_load_n(&ts_pool[i], __ATOMIC_ACQUIRE);
		int zero = 0;

		if (!q)
			break;
		if (__atomic_compare_exchange_n(&q->in_use, &zero, 1, false, __ATOMIC_ACQUIRE,
						__ATOMIC_RELAXED))
			ts = q;
	}
	if (!ts) {
		p = mmap(NULL, sizeof(*ts), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
			 0);
		if (p == MAP_FAILED)
			return NULL;
		ts = p;
		ts->in_use = 1;
		for (i = 0; i < TS_POOL_MAX && !ts->pooled; i++) {
			struct tstate *null = NULL;

			ts->pooled = __atomic_compare_exchange_n(
				&ts_pool[i], &null, ts, false, __ATOMIC_RELEASE, __ATOMIC_RELAXED);
		}
	}
	ts->fd = -1;
	ts->slot = -1;
	ts->fork_gen = __atomic_load_n(&g.fork_gen, __ATOMIC_RELAXED);
	ts->next_id = (uint32_t)mono_ns();
	tls_ts = ts;
	if (g.have_key)
		pthread_setspecific(g.key, ts);
	return ts;
}

static void reg_add(struct tstate *ts)
{
	int i;

	ts->slot = -1;
	for (i = 0; i < CONN_REG_MAX; i++) {
		int zero = 0;

		if (__atomic_compare_exchange_n(&conn_reg[i], &zero, ts->fd + 1, false,
						__ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
			ts->slot = i;
			return;
		}
	}
}

/* Close the thread's connection. The registry forgets it first, so a fork
 * meanwhile can leak it to the child but never close a stranger's descriptor. */
void conn_drop(struct tstate *ts)
{
	if (ts->fd < 0)
		return;
	if (ts->slot >= 0)
		__atomic_store_n(&conn_reg[ts->slot], 0, __ATOMIC_RELAXED);
	if (shim_conn_fd_unmark(ts->fd))
		shim_sys_close(ts->fd);
	ts->fd = -1;
	ts->slot = -1;
}

void shim_conn_fd_lost(int fd)
{
	int i;

	for (i = 0; i < CONN_REG_MAX; i++) {
		int want = fd + 1;

		if (__atomic_compare_exchange_n(&conn_reg[i], &want, 0, false, __ATOMIC_RELAXED,
						__ATOMIC_RELAXED))
			break;
	}
	shim_log("the application closed the connection on fd %d; a new one will be made", fd);
}

static void tstate_destroy(void *p)
{
	struct tstate *ts = p;

	access_flush_now(ts, true);
	if (ts->fork_gen == __atomic_load_n(&g.fork_gen, __ATOMIC_RELAXED))
		conn_drop(ts);
	if (tls_ts == ts)
		tls_ts = NULL;
	if (!ts->pooled) {
		munmap(ts, sizeof(*ts));
		return;
	}
	__atomic_store_n(&ts->in_use, 0, __ATOMIC_RELEASE);
}

/*
 * At exit: this thread's reports and those other threads have not sent yet
 * (threads a program joined may not have reached their destructors).
 */
__attribute__((destructor)) static void shim_dtor(void)
{
	int saved = errno;

	if (!__atomic_load_n(&g.ready, __ATOMIC_ACQUIRE) || g.disabled || tls_busy)
		return;
	tls_busy = 1;
	access_flush_all();
	tls_busy = 0;
	errno = saved;
}

static void fork_prepare(void)
{
	/* before the lock: reporting may connect, and HELLO takes it */
	access_flush_now(tls_ts, false);
	pthread_mutex_lock(&g.table_lock);
}

static void fork_parent(void)
{
	pthread_mutex_unlock(&g.table_lock);
}

static void fork_child(void)
{
	int i;

	pthread_mutex_unlock(&g.table_lock);
	for (i = 0; i < CONN_REG_MAX; i++) {
		int v = __atomic_exchange_n(&conn_reg[i], 0, __ATOMIC_RELAXED);

		if (v > 0 && shim_conn_fd_unmark(v - 1))
			shim_sys_close(v - 1);
	}
	/* the other threads' states: no thread of this process owns them */
	for (i = 0; i < TS_POOL_MAX; i++) {
		struct tstate *q = __atomic_load_n(&ts_pool[i], __ATOMIC_RELAXED);

		if (!q)
			break;
		if (q == tls_ts)
			continue;
		q->nacc = 0;
		__atomic_store_n(&q->acc_lock, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&q->in_use, 0, __ATOMIC_RELEASE);
	}
	__atomic_add_fetch(&g.fork_gen, 1, __ATOMIC_RELAXED);
	__atomic_store_n(&g.spinners, 0, __ATOMIC_RELAXED); /* only this thread lives on */
	__atomic_store_n(&g.acc_inflight, 0, __ATOMIC_RELAXED);
}

/* ---- connections ---- */

static int conn_open(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct timeval tv = {.tv_sec = g.timeout_ms / 1000,
			     .tv_usec = (g.timeout_ms % 1000) * 1000};
	int fd, fl, tries = 0, rc;

	memcpy(sa.sun_path, g.sock, strlen(g.sock) + 1);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* non-blocking: a daemon whose backlog is full must not stall the caller */
	while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = -errno;
		if (rc == -EINTR)
			continue;
		if (rc == -EAGAIN && ++tries < 5) {
			struct timespec pause = {.tv_sec = 0, .tv_nsec = 2000000};

			nanosleep(&pause, NULL);
			continue;
		}
		goto err_close;
	}
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) {
		rc = -errno;
		goto err_close;
	}
	return fd;

err_close:
	shim_sys_close(fd);
	return rc;
}

/*
 * How long the daemon is left alone after a failure: RETRY_NS, doubled after
 * each timeout in a row up to 16 times that, since a daemon that accepts but
 * does not answer would otherwise hold up one open every second.
 */
static int64_t retry_ns(void)
{
	unsigned t = __atomic_load_n(&g.timeouts, __ATOMIC_RELAXED);

	return RETRY_NS << (t < 4 ? t : 4);
}

static void mark_down(const char *what, int err)
{
	int64_t wait;

	if (err == ETIMEDOUT)
		__atomic_add_fetch(&g.timeouts, 1, __ATOMIC_RELAXED);
	else
		__atomic_store_n(&g.timeouts, 0, __ATOMIC_RELAXED);
	wait = retry_ns();
	__atomic_store_n(&g.down_until, mono_ns() + wait, __ATOMIC_RELAXED);
	__atomic_add_fetch(&g.fail_epoch, 1, __ATOMIC_RELAXED);
	shim_log("daemon at %s: %s failed with %s; falling open, next try in %d s", g.sock, what,
		 shim_errname(err), (int)(wait / RETRY_NS));
}

/* Close any descriptors that came with a message we do not keep. */
static void close_fds(const int *fds, int n)
{
	int i;

	for (i = 0; i < n; i++)
		shim_sys_close(fds[i]);
}

/*
 * recvmsg on the connection. An answer from the cache usually comes sooner
 * than a sleeping thread is woken: with @spin, try a non-blocking receive for
 * up to g.spin_ns before blocking, but only while few threads of this process
 * are doing the same, since a spinning waiter must not take the CPU that its
 * daemon or its siblings need.
 */
static ssize_t conn_recv(struct tstate *ts, struct msghdr *mh, bool spin)
{
	size_t controllen = mh->msg_controllen;
	ssize_t n;

	if (spin && g.spin_ns > 0 && g.spin_max > 0) {
		unsigned w = __atomic_add_fetch(&g.spinners, 1, __ATOMIC_RELAXED);
		int64_t end = mono_ns() + g.spin_ns;

		while (w <= g.spin_max) {
			mh->msg_controllen = controllen;
			mh->msg_flags = 0;
			n = recvmsg(ts->fd, mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
			if (n >= 0 || (errno != EAGAIN && errno != EINTR)) {
				__atomic_sub_fetch(&g.spinners, 1, __ATOMIC_RELAXED);
				return n;
			}
			if (mono_ns() >= end)
				break;
		}
		__atomic_sub_fetch(&g.spinners, 1, __ATOMIC_RELAXED);
		mh->msg_controllen = controllen;
		mh->msg_flags = 0;
	}
	return recvmsg(ts->fd, mh, MSG_CMSG_CLOEXEC);
}

/*
 * Send ts->out (request @id of @type) and receive its reply into ts->in.
 * @wait_ms < 0: wait as long as the socket timeout allows; else at most that.
 * @sendfl: more flags for send(): MSG_DONTWAIT gives up at once (-ETIMEDOUT)
 * when the socket is full.
 * Returns the reply's length with @rfd[0..@nrfd-1] its descriptors, -1 where
 * it had none (any more are closed); -ETIMEDOUT when @wait_ms passed (the
 * connection stays usable); other -errno: the connection is unusable.
 */
ssize_t conn_call(struct tstate *ts, uint32_t id, uint16_t type, int *rfd, int nrfd, int wait_ms,
		  int sendfl)
{
	ssize_t n;
	int i;

	for (i = 0; i < nrfd; i++)
		rfd[i] = -1;
	do {
		n = send(ts->fd, ts->out.data, ts->out.len, MSG_NOSIGNAL | sendfl);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN ? -ETIMEDOUT : -errno;
	if ((size_t)n != ts->out.len)
		return -EMSGSIZE;
	for (;;) {
		union {
			char buf[CMSG_SPACE(sizeof(int) * MAX_REPLY_FDS)];
			struct cmsghdr align;
		} u;
		struct iovec iov = {.iov_base = ts->in, .iov_len = sizeof(ts->in)};
		struct msghdr mh = {.msg_iov = &iov,
				    .msg_iovlen = 1,
				    .msg_control = u.buf,
				    .msg_controllen = sizeof(u.buf)};
		struct cmsghdr *cm;
		struct proto_hdr h;
		int fds[MAX_REPLY_FDS], nfds = 0;

		if (wait_ms >= 0) {
			struct pollfd p = {.fd = ts->fd, .events = POLLIN};
			int r = poll(&p, 1, wait_ms);

			if (r < 0 && errno == EINTR)
				continue;
			if (r == 0)
				return -ETIMEDOUT;
		}
		n = conn_recv(ts, &mh, wait_ms < 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		}
		if (n == 0)
			return -ECONNRESET;
		for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			size_t k, cnt;

			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
				continue;
			cnt = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (k = 0; k < cnt && nfds < MAX_REPLY_FDS; k++)
				memcpy(&fds[nfds++], CMSG_DATA(cm) + k * sizeof(int), sizeof(int));
		}
		if ((mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
		    proto_check(ts->in, (size_t)n, &h) < 0) {
			close_fds(fds, nfds);
			return -EBADMSG;
		}
		if (h.id != id) {
			close_fds(fds, nfds); /* the late answer to an earlier request */
			continue;
		}
		if (h.type != (uint16_t)(PROTO_REPLY | type) && h.type != PROTO_REPLY) {
			close_fds(fds, nfds);
			return -EBADMSG;
		}
		for (i = 0; i < nfds && i < nrfd; i++)
			rfd[i] = fds[i];
		if (nfds > nrfd)
			close_fds(fds + nrfd, nfds - nrfd);
		return n;
	}
}

static int hello(struct tstate *ts, uint64_t epoch)
{
	uint32_t id = ++ts->next_id;
	ssize_t n;
	int rfd[2], rc, i;
	bool changed;

	proto_begin(&ts->out, PROTO_HELLO, id);
	/* HELLO costs the daemon nothing: a slow answer means a sick daemon */
	n = conn_call(ts, id, PROTO_HELLO, rfd, 2,
		      g.timeout_ms < HELLO_WAIT_MS ? g.timeout_ms : HELLO_WAIT_MS, 0);
	if (n < 0)
		return (int)n;
	pthread_mutex_lock(&g.table_lock);
	rc = preload_mounts_parse(&g.scratch, ts->in, (size_t)n);
	if (rc < 0) {
		pthread_mutex_unlock(&g.table_lock);
		for (i = 0; i < 2; i++)
			if (rfd[i] >= 0)
				shim_sys_close(rfd[i]);
		return rc;
	}
	changed = memcmp(&g.scratch, &g.mounts, sizeof(g.mounts)) != 0;
	if (changed) {
		uint32_t s = __atomic_load_n(&g.seq, __ATOMIC_RELAXED);

		__atomic_store_n(&g.seq, s + 1, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_RELEASE);
		memcpy(&g.mounts, &g.scratch, sizeof(g.mounts));
		__atomic_store_n(&g.seq, s + 2, __ATOMIC_RELEASE);
	}
	/*
	 * After the table: a fast open checks that neither moved since it
	 * matched its path, and an index older than this table is already
	 * refused by its epoch.
	 */
	fx_install(rfd[0], rfd[1], ts->fd, epoch);
	__atomic_store_n(&g.table_epoch, epoch, __ATOMIC_RELEASE);
	if (g.debug && changed) {
		shim_log("connected to %s: %u mount(s)%s", g.sock, g.mounts.n,
			 rc > 0 ? ", some skipped (too many or too long)" : "");
		for (i = 0; i < (int)g.mounts.n; i++)
			shim_log("mount %s backend %u%s", preload_mounts_path(&g.mounts, i),
				 g.mounts.m[i].backend,
				 g.mounts.m[i].flags & PROTO_F_MOUNT_FAILOPEN ? " (falls open)"
									      : "");
	}
	pthread_mutex_unlock(&g.table_lock);
	return 0;
}

/*
 * This thread's connection, made if needed; NULL while the daemon is taken
 * as down or when connecting fails now. *@fresh tells whether it was made by
 * this call.
 */
struct tstate *conn_get(bool *fresh)
{
	struct tstate *ts = tstate_get();
	uint64_t epoch, fg;
	int64_t du, now = 0;
	int fd, rc;

	if (!ts)
		return NULL;
	fg = __atomic_load_n(&g.fork_gen, __ATOMIC_RELAXED);
	if (ts->fork_gen != fg) {
		ts->fd = -1; /* closed in the child by fork_child() */
		ts->slot = -1;
		ts->fork_gen = fg;
	}
	if (ts->fd >= 0 && !shim_conn_fd_ours(ts->fd)) {
		ts->fd = -1; /* the application closed it: the number is not ours to close */
		ts->slot = -1;
	}
	epoch = __atomic_load_n(&g.fail_epoch, __ATOMIC_ACQUIRE);
	if (ts->fd >= 0 && ts->epoch == epoch) {
		*fresh = false;
		return ts;
	}
	conn_drop(ts);
	du = __atomic_load_n(&g.down_until, __ATOMIC_RELAXED);
	if (du) {
		/* down: one thread tries again per RETRY_NS, the others fall open */
		now = mono_ns();
		if (now < du ||
		    !__atomic_compare_exchange_n(&g.down_until, &du, now + retry_ns(), false,
						 __ATOMIC_RELAXED, __ATOMIC_RELAXED))
			return NULL;
	}
	fd = conn_open();
	if (fd < 0) {
		mark_down("connect", -fd);
		return NULL;
	}
	ts->fd = fd;
	ts->epoch = epoch;
	shim_conn_fd_mark(fd);
	reg_add(ts);
	if (__atomic_load_n(&g.table_epoch, __ATOMIC_ACQUIRE) != epoch) {
		rc = hello(ts, epoch);
		if (rc < 0) {
			conn_drop(ts);
			mark_down("hello", -rc);
			return NULL;
		}
	}
	if (du) {
		__atomic_store_n(&g.down_until, 0, __ATOMIC_RELAXED);
		shim_log("daemon at %s is back", g.sock);
	}
	*fresh = true;
	return ts;
}

/*
 * One request of @type about @path (none when NULL). Returns the reply's
 * length in (*@tsp)->in with *@rfd its descriptor or -1, or -errno when
 * there was no usable answer.
 */
static ssize_t shim_call_locked(uint16_t type, const char *path, int *rfd, struct tstate **tsp,
				int wait_ms)
{
	ssize_t n = -ENOTCONN;
	int attempt;

	*rfd = -1;
	for (attempt = 0; attempt < 2; attempt++) {
		bool fresh = false;
		struct tstate *ts = conn_get(&fresh);
		uint32_t id;

		if (!ts)
			return -ENOTCONN;
		id = ++ts->next_id;
		proto_begin(&ts->out, type, id);
		if (path && proto_put_str(&ts->out, PROTO_T_PATH, path) < 0)
			return -ENAMETOOLONG;
		n = conn_call(ts, id, type, rfd, 1, wait_ms, 0);
		if (n >= 0) {
			if (__atomic_load_n(&g.timeouts, __ATOMIC_RELAXED))
				__atomic_store_n(&g.timeouts, 0, __ATOMIC_RELAXED);
			*tsp = ts;
			return n;
		}
		if (n == -ETIMEDOUT && wait_ms >= 0)
			return n;
		conn_drop(ts);
		/*
		 * A connection to a daemon that has gone since: try a new one once.
		 * The daemon may have been restarted with other mounts, and the
		 * other threads' connections are stale too: a new epoch makes them
		 * reconnect and the first of them fetch the mount table again.
		 */
		if (!fresh && (n == -EPIPE || n == -ECONNRESET || n == -ENOTCONN)) {
			__atomic_add_fetch(&g.fail_epoch, 1, __ATOMIC_RELEASE);
			continue;
		}
		break;
	}
	mark_down(proto_type_name(type), (int)-n);
	return n;
}

/*
 * shim_call_locked() with thread cancellation held off: a thread cancelled
 * in the middle of a request would leave its answer to the next one.
 */
static ssize_t shim_call(uint16_t type, const char *path, int *rfd, struct tstate **tsp,
			 int wait_ms)
{
	ssize_t n;
	int old;

	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
	n = shim_call_locked(type, path, rfd, tsp, wait_ms);
	pthread_setcancelstate(old, NULL);
	return n;
}

/* The STATUS of a reply and its ERRMSG into @why. Returns 0 or -EBADMSG. */
static int reply_status(const void *msg, size_t len, int32_t *status, char *why, size_t whysz)
{
	struct proto_iter it;
	struct proto_item item;

	if (why && whysz)
		why[0] = '\0';
	proto_iter_init(&it, msg, len);
	if (proto_next(&it, &item) <= 0 || item.tag != PROTO_T_STATUS ||
	    proto_item_i32(&item, status) < 0 || *status > 0)
		return -EBADMSG;
	if (*status < 0 && why && whysz && proto_find(msg, len, PROTO_T_ERRMSG, &item) > 0 &&
	    proto_item_str(&item, why, whysz) < 0)
		why[0] = '\0';
	return 0;
}

/* Common part of OPEN and STAT. */
static enum shim_outcome request(uint16_t type, const char *abs, int *fd, struct preload_srcstat *s,
				 int *err, char *why, size_t whysz)
{
	struct tstate *ts = NULL;
	int32_t status;
	ssize_t n;
	int rfd;

	if (why && whysz)
		why[0] = '\0';
	n = shim_call(type, abs, &rfd, &ts, -1);
	if (n < 0) {
		*err = (int)-n;
		return SHIM_DOWN;
	}
	if (reply_status(ts->in, (size_t)n, &status, why, whysz) < 0) {
		if (rfd >= 0)
			shim_sys_close(rfd);
		*err = EBADMSG;
		return SHIM_DOWN;
	}
	if (status < 0) {
		if (rfd >= 0)
			shim_sys_close(rfd);
		*err = -status;
		return SHIM_REFUSED;
	}
	if (preload_srcstat_parse(ts->in, (size_t)n, s) < 0 || (fd && rfd < 0)) {
		if (rfd >= 0)
			shim_sys_close(rfd);
		*err = EBADMSG;
		return SHIM_DOWN;
	}
	if (fd)
		*fd = rfd;
	else if (rfd >= 0)
		shim_sys_close(rfd);
	return SHIM_OK;
}

enum shim_outcome shim_open_remote(const char *abs, int *fd, struct preload_srcstat *s, int *err,
				   char *why, size_t whysz)
{
	return request(PROTO_OPEN, abs, fd, s, err, why, whysz);
}

enum shim_outcome shim_stat_remote(const char *abs, struct preload_srcstat *s, int *err, char *why,
				   size_t whysz)
{
	return request(PROTO_STAT, abs, NULL, s, err, why, whysz);
}

void shim_drop_remote(const char *abs)
{
	struct tstate *ts = NULL;
	ssize_t n;
	int rfd;

	n = shim_call(PROTO_DROP, abs, &rfd, &ts, DROP_WAIT_MS);
	if (rfd >= 0)
		shim_sys_close(rfd);
	if (n < 0)
		shim_log("drop %s: %s", abs,
			 n == -ETIMEDOUT ? "no answer yet, not waiting" : shim_errname((int)-n));
}

/* ---- the mount table ---- */

bool shim_no_mounts(void)
{
	if (__atomic_load_n(&g.table_epoch, __ATOMIC_ACQUIRE) == TABLE_NEVER) {
		bool fresh;
		int old;

		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
		conn_get(&fresh);
		pthread_setcancelstate(old, NULL);
	}
	return __atomic_load_n(&g.mounts.n, __ATOMIC_RELAXED) == 0;
}

bool shim_match(const char *abs, struct preload_hit *hit)
{
	for (;;) {
		uint32_t s1 = __atomic_load_n(&g.seq, __ATOMIC_ACQUIRE), s2;
		bool found;

		if (s1 & 1) {
			sched_yield();
			continue;
		}
		found = preload_mounts_match(&g.mounts, abs, hit);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		s2 = __atomic_load_n(&g.seq, __ATOMIC_RELAXED);
		if (s1 == s2) {
			hit->seq = s1;
			return found;
		}
	}
}

/* ---- listings (asked by preload_dir.c) ---- */

/*
 * shim_call_locked() for a LIST: PATH, then COOKIE unless @cookie is empty.
 * The same rule for a connection closed by a daemon that has gone: one new
 * connection at once.
 */
static ssize_t list_call(const char *abs, const char *cookie, struct tstate **tsp)
{
	ssize_t n = -ENOTCONN;
	int attempt, rfd, old;

	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
	for (attempt = 0; attempt < 2; attempt++) {
		bool fresh = false;
		struct tstate *ts = conn_get(&fresh);
		uint32_t id;

		if (!ts) {
			n = -ENOTCONN;
			goto out;
		}
		id = ++ts->next_id;
		proto_begin(&ts->out, PROTO_LIST, id);
		if (proto_put_str(&ts->out, PROTO_T_PATH, abs) < 0 ||
		    (cookie[0] && proto_put_str(&ts->out, PROTO_T_COOKIE, cookie) < 0)) {
			n = -ENAMETOOLONG;
			goto out;
		}
		n = conn_call(ts, id, PROTO_LIST, &rfd, 1, -1, 0);
		if (n >= 0) {
			if (rfd >= 0)
				shim_sys_close(rfd);
			*tsp = ts;
			goto out;
		}
		conn_drop(ts);
		if (!fresh && (n == -EPIPE || n == -ECONNRESET || n == -ENOTCONN)) {
			__atomic_add_fetch(&g.fail_epoch, 1, __ATOMIC_RELEASE);
			continue;
		}
		break;
	}
	mark_down("list", (int)-n);
out:
	pthread_setcancelstate(old, NULL);
	return n;
}

enum shim_outcome shim_list_remote(const char *abs, const char *cookie, const void **reply,
				   size_t *len, int *err, char *why, size_t whysz)
{
	struct tstate *ts = NULL;
	int32_t status;
	ssize_t n;

	if (why && whysz)
		why[0] = '\0';
	n = list_call(abs, cookie, &ts);
	if (n < 0) {
		*err = (int)-n;
		return SHIM_DOWN;
	}
	if (reply_status(ts->in, (size_t)n, &status, why, whysz) < 0) {
		*err = EBADMSG;
		return SHIM_DOWN;
	}
	if (status < 0) {
		*err = -status;
		return SHIM_REFUSED;
	}
	*reply = ts->in;
	*len = (size_t)n;
	return SHIM_OK;
}
