/*
 * preload_fast.c - the shim's fast path: the daemon's shared index of cached
 * objects (mapped, replaced, retired), the opens and stats served from it
 * without a request, and the ACCESS reports of those reads. The reports live
 * here, not with the connection they travel on, because they are the fast
 * path's: only its opens make them, they name slots of one index (fx.serial)
 * and are dropped with it, and a report that finds the daemon gone retires
 * the index.
 *
 * DESIGN. HELLO's reply may carry a read-only memfd with the daemon's
 * index of cached objects (of NAS mounts, and of immutable object-store
 * mounts without an allow list) and an O_PATH descriptor of its objects/
 * directory. The index is mapped (the memfd is closed then); the directory
 * descriptor and a duplicate of the connection HELLO came on are moved to
 * FX_FD_BASE or above and marked like the sockets. An open under a mount
 * flagged PROTO_F_MOUNT_FAST looks the path up, for a strict mount compares
 * the original's stat (an object store has no original: its slot alone
 * decides), and opens objects/xx/<id> as the caller: the kernel
 * checks the permissions the daemon copied from the source. The mapping, the
 * descriptors and the mount flags are read under fx.gen (a sequence counter,
 * odd while a HELLO replaces them) and g.seq; a reader that sees either move
 * closes what it opened and asks the socket. A mapping replaced is overlaid
 * with zero pages, never unmapped, so a late reader reads empty slots
 * instead of faulting.
 *
 * The index is trusted only while the daemon that published it runs: a new
 * daemon on the same cache may hand the ids it names to other files. So it
 * is used only in the connection epoch it came with (fx.epoch == fail_epoch),
 * and a fast open checks, at most every FX_LIVE_NS, that the duplicated
 * connection is not closed at the other end (fx_alive()). When it is, or a
 * report finds its connection closed, the epoch moves on and the next
 * request's HELLO brings the new daemon's index. A HELLO to the same daemon
 * brings the same memfd, which keeps its mapping and serial. The child of a
 * fork keeps its parent's mapping and descriptors: they stay valid, and its
 * reports go over its own connection.
 *
 * Each thread buffers its reads served this way (slot, id) and sends them
 * as one ACCESS message when ACCESS_BATCH are buffered, when the oldest is
 * ACCESS_AGE_NS old at the next open, and before fork, asking for no answer;
 * at thread and process exit it asks for one and waits ACCESS_WAIT_MS at
 * most, so the reads are counted before the reader is gone. A full socket
 * drops the batch: reports are statistics, never worth a stall.
 */
#include "preload.h"
#include "preload_fast.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define FX_FD_BASE     900	  /* where the objects/ descriptor is kept */
#define ACCESS_AGE_NS  20000000LL /* the oldest waits no longer, if there is an open */
#define FX_LIVE_NS     1000000LL  /* how often a fast open asks whether the daemon runs */
#define ACCESS_WAIT_MS 100	  /* for the answer to the reports sent at exit */

/*
 * The shared index; see DESIGN above. Readers load the fields atomically
 * between two reads of fx.gen; the rest is the writer's, under g.table_lock.
 */
static struct {
	uint32_t gen;			   /* atomic: odd while replaced */
	const struct proto_fx_slot *slots; /* atomic; NULL when there is no index */
	uint64_t nslots;		   /* atomic */
	int dirfd;			   /* atomic: objects/, O_PATH; -1 when none */
	int livefd;			   /* atomic: the HELLO connection, duplicated */
	uint64_t epoch;			   /* atomic: fail_epoch of the HELLO it came with */
	uint64_t serial;		   /* atomic: bumped when another index is mapped */
	int64_t live_checked;		   /* atomic: CLOCK_MONOTONIC ns of the last check */
	void *map;
	size_t maplen;
	uint64_t map_dev, map_ino; /* the memfd's, to recognise the same index again */
	uint64_t dir_dev, dir_ino, live_dev, live_ino;
} fx = {.dirfd = -1, .livefd = -1};

/* ---- the shared index: install, replace, retire ---- */

/* @fd moved (or with @dup_always, copied) to FX_FD_BASE or above, and its inode. */
static int fx_fd_keep(int fd, bool dup_always, uint64_t *dev, uint64_t *ino)
{
	struct stat st;
	int nd = fcntl(fd, F_DUPFD_CLOEXEC, FX_FD_BASE);

	if (nd < 0 && dup_always)
		nd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	else if (nd < 0)
		nd = fd;
	else if (!dup_always)
		shim_sys_close(fd);
	if (nd >= 0 && syscall(SYS_fstat, nd, &st) == 0) {
		*dev = st.st_dev;
		*ino = st.st_ino;
	} else {
		*dev = *ino = 0;
	}
	return nd;
}

/*
 * Close the fast path's @fd if the number still holds the file it had
 * (@dev, @ino): a program that closed it behind our back (close_range) may
 * have reused the number.
 */
static void fx_fd_close(int fd, uint64_t dev, uint64_t ino)
{
	struct stat st;

	if (fd >= 0 && shim_fx_fd_unmark(fd) && syscall(SYS_fstat, fd, &st) == 0 &&
	    st.st_dev == dev && st.st_ino == ino)
		shim_sys_close(fd);
}

/*
 * Make the index in @ifd and the objects/ directory @dfd (both from HELLO on
 * connection @conn, both consumed; -1 when HELLO brought none) the ones fast
 * opens use, for connection epoch @epoch. The same index again (a new
 * connection to the same daemon: the same memfd) keeps its mapping and its
 * serial, so reads not reported yet still count. Under g.table_lock.
 */
void fx_install(int ifd, int dfd, int conn, uint64_t epoch)
{
	void *map = NULL, *old_map = fx.map;
	size_t len = 0, old_len = fx.maplen;
	int old_dir = fx.dirfd, old_live = fx.livefd, nd = -1, nl = -1;
	uint64_t n = 0, serial = fx.serial, mdev = 0, mino = 0;
	uint64_t odd = fx.dir_dev, odi = fx.dir_ino, old = fx.live_dev, oli = fx.live_ino;
	struct stat st;

	if (ifd >= 0 && dfd >= 0 && !g.fast_off && syscall(SYS_fstat, ifd, &st) == 0 &&
	    st.st_size > 0) {
		if (old_map && st.st_dev == fx.map_dev && st.st_ino == fx.map_ino) {
			map = old_map; /* the same daemon */
			len = old_len;
			n = fx.nslots;
		} else {
			len = (size_t)st.st_size;
			map = mmap(NULL, len, PROT_READ, MAP_SHARED, ifd, 0);
			if (map == MAP_FAILED)
				map = NULL;
			n = map ? preload_fx_check(map, len) : 0;
			if (map && !n) {
				shim_log("shared index from %s unusable (magic, version or size)",
					 g.sock);
				munmap(map, len);
				map = NULL;
			}
			mdev = st.st_dev;
			mino = st.st_ino;
		}
	}
	if (n) {
		/* out of the way of programs that expect low numbers */
		nd = fx_fd_keep(dfd, false, &fx.dir_dev, &fx.dir_ino);
		dfd = -1;
		nl = fx_fd_keep(conn, true, &fx.live_dev, &fx.live_ino);
		if (nl < 0) {
			shim_sys_close(nd);
			nd = -1;
			n = 0;
		}
	}
	if (ifd >= 0)
		shim_sys_close(ifd);
	if (dfd >= 0)
		shim_sys_close(dfd);
	if (!n && map && map != old_map)
		munmap(map, len);
	if (!n)
		map = NULL;
	if (map != old_map)
		serial++; /* reports about the old index mean nothing now */
	if (!n && !old_map && old_dir < 0 && old_live < 0)
		return; /* nothing before, nothing now */

	__atomic_add_fetch(&fx.gen, 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	__atomic_store_n(&fx.slots,
			 n ? (const struct proto_fx_slot *)((const struct proto_fx_hdr *)map + 1)
			   : NULL,
			 __ATOMIC_RELAXED);
	__atomic_store_n(&fx.nslots, n, __ATOMIC_RELAXED);
	__atomic_store_n(&fx.dirfd, nd, __ATOMIC_RELAXED);
	__atomic_store_n(&fx.livefd, nl, __ATOMIC_RELAXED);
	__atomic_store_n(&fx.epoch, epoch, __ATOMIC_RELAXED);
	__atomic_store_n(&fx.serial, serial, __ATOMIC_RELAXED);
	__atomic_store_n(&fx.live_checked, 0, __ATOMIC_RELAXED);
	if (nd >= 0)
		shim_fx_fd_mark(nd);
	if (nl >= 0)
		shim_fx_fd_mark(nl);
	__atomic_add_fetch(&fx.gen, 1, __ATOMIC_RELEASE);
	fx.map = map;
	fx.maplen = n ? len : 0;
	if (map && map != old_map) {
		fx.map_dev = mdev;
		fx.map_ino = mino;
	}

	/* a reader may still be in the old one: zero pages, then it sees empty slots */
	if (old_map && old_map != map)
		mmap(old_map, old_len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	if (old_dir != nd)
		fx_fd_close(old_dir, odd, odi);
	if (old_live != nl)
		fx_fd_close(old_live, old, oli);
	if (n)
		shim_log("shared index: %llu slots%s, objects/ on fd %d", (unsigned long long)n,
			 map == old_map ? " (the same as before)" : "", nd);
	else
		shim_log("no shared index%s: every open asks the daemon",
			 g.fast_off ? " (GRANARY_FASTPATH=0)" : "");
}

/* Stop using the index until the next HELLO: its daemon is gone, or a descriptor is. */
void fx_retire(void)
{
	uint64_t e = __atomic_load_n(&fx.epoch, __ATOMIC_RELAXED);

	/* once per index: the first to notice makes the next request say HELLO */
	if (__atomic_compare_exchange_n(&g.fail_epoch, &e, e + 1, false, __ATOMIC_RELEASE,
					__ATOMIC_RELAXED))
		shim_log("fast path off until the daemon at %s answers again", g.sock);
}

void shim_fx_fd_lost(int fd)
{
	int want = fd;

	if (__atomic_compare_exchange_n(&fx.dirfd, &want, -1, false, __ATOMIC_RELAXED,
					__ATOMIC_RELAXED) ||
	    (want = fd, __atomic_compare_exchange_n(&fx.livefd, &want, -1, false, __ATOMIC_RELAXED,
						    __ATOMIC_RELAXED))) {
		/* readers between two fx.gen see it move */
		__atomic_add_fetch(&fx.gen, 2, __ATOMIC_RELEASE);
		fx_retire();
		shim_log("the application closed the fast path's fd %d; new ones will be asked for",
			 fd);
	}
}

/* ---- the fast path ---- */

static int64_t coarse_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void acc_lock(struct tstate *ts)
{
	while (__atomic_exchange_n(&ts->acc_lock, 1, __ATOMIC_ACQUIRE))
		sched_yield(); /* held for a few stores, by the owner or the exiting thread */
}

static void acc_unlock(struct tstate *ts)
{
	__atomic_store_n(&ts->acc_lock, 0, __ATOMIC_RELEASE);
}

/* A batch of reports taken out of a thread's state. */
struct acc_batch {
	uint32_t n;
	uint64_t serial;
	struct proto_fx_access a[ACCESS_BATCH];
};

/*
 * Take @ts's reports into @b, leaving none. A batch about another index
 * than the current one, or inherited from the parent across fork, is
 * dropped: its slots mean nothing now. Returns how many were taken.
 */
static uint32_t access_take(struct tstate *ts, struct acc_batch *b)
{
	bool keep;

	acc_lock(ts);
	b->n = ts->nacc;
	b->serial = ts->acc_serial;
	keep = b->n && ts->acc_fork == __atomic_load_n(&g.fork_gen, __ATOMIC_RELAXED) &&
	       b->serial == __atomic_load_n(&fx.serial, __ATOMIC_RELAXED);
	if (keep) {
		memcpy(b->a, ts->acc, b->n * sizeof(b->a[0]));
		__atomic_add_fetch(&g.acc_inflight, 1, __ATOMIC_RELAXED); /* see access_flush_all */
	}
	__atomic_store_n(&ts->nacc, 0, __ATOMIC_RELAXED);
	acc_unlock(ts);
	if (!keep)
		b->n = 0;
	return b->n;
}

/*
 * Send @b as one ACCESS on this thread's connection, never waiting for room:
 * a full socket drops it. With @wait, ask for the answer and wait for it
 * ACCESS_WAIT_MS at most (exits); else none is asked for.
 */
static void access_send(const struct acc_batch *b, bool wait)
{
	struct tstate *c;
	bool fresh;
	ssize_t r;
	uint32_t id;
	int old;

	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
	c = conn_get(&fresh);
	if (!c || b->serial != __atomic_load_n(&fx.serial, __ATOMIC_RELAXED))
		goto out; /* down, or HELLO just brought another index */
	id = ++c->next_id;
	proto_begin(&c->out, PROTO_ACCESS, id);
	if (proto_put_u32(&c->out, PROTO_T_FLAGS, wait ? 0 : PROTO_F_NOREPLY) < 0 ||
	    proto_put(&c->out, PROTO_T_SLOTS, b->a, b->n * (uint32_t)sizeof(b->a[0])) < 0)
		goto out;
	if (wait) {
		r = conn_call(c, id, PROTO_ACCESS, NULL, 0, ACCESS_WAIT_MS, MSG_DONTWAIT);
	} else {
		do {
			r = send(c->fd, c->out.data, c->out.len, MSG_DONTWAIT | MSG_NOSIGNAL);
		} while (r < 0 && errno == EINTR);
		if (r < 0)
			r = errno == EAGAIN ? -ETIMEDOUT : -errno;
	}
	if (r >= 0)
		goto out;
	if (r == -ETIMEDOUT) {
		shim_log("report of %u fast read(s): %s", b->n,
			 wait ? "no answer yet, not waiting" : "socket full, dropped");
	} else {
		conn_drop(c);
		if (r == -EPIPE || r == -ECONNRESET || r == -ENOTCONN)
			fx_retire(); /* the daemon went away: its index is not to be trusted */
		else
			shim_log("report of %u fast read(s) failed: %s", b->n,
				 shim_errname((int)-r));
	}
out:
	pthread_setcancelstate(old, NULL);
}

static void access_flush(struct tstate *ts, bool wait)
{
	struct acc_batch b;

	if (!access_take(ts, &b))
		return;
	access_send(&b, wait);
	__atomic_sub_fetch(&g.acc_inflight, 1, __ATOMIC_RELEASE);
}

/*
 * Report this thread's fast reads, if any, with the shim entered (exit and
 * fork). @wait: for the daemon's answer, a short while at most, so that the
 * reads are counted before the thread or the process is gone.
 */
void access_flush_now(struct tstate *ts, bool wait)
{
	int saved = errno;

	if (!ts || !__atomic_load_n(&ts->nacc, __ATOMIC_RELAXED) || tls_busy)
		return;
	tls_busy = 1;
	access_flush(ts, wait);
	tls_busy = 0;
	errno = saved;
}

/*
 * Every pending report of the process; the last message waits for its
 * answer. Then, a short while at most, for the batches other threads took
 * and are sending: the process ends when this returns.
 */
void access_flush_all(void)
{
	struct timespec pause = {.tv_sec = 0, .tv_nsec = 1000000};
	struct acc_batch prev, cur;
	int64_t end;
	int i;

	prev.n = 0;
	for (i = -1; i < TS_POOL_MAX; i++) {
		struct tstate *q = i < 0 ? tls_ts : __atomic_load_n(&ts_pool[i], __ATOMIC_ACQUIRE);

		if (i >= 0 && !q)
			break;
		if (!q || (i >= 0 && q == tls_ts) || !__atomic_load_n(&q->nacc, __ATOMIC_RELAXED) ||
		    !access_take(q, &cur))
			continue;
		if (prev.n) {
			access_send(&prev, false);
			__atomic_sub_fetch(&g.acc_inflight, 1, __ATOMIC_RELEASE);
		}
		prev = cur;
	}
	if (prev.n) {
		access_send(&prev, true);
		__atomic_sub_fetch(&g.acc_inflight, 1, __ATOMIC_RELEASE);
	}
	end = mono_ns() + (int64_t)ACCESS_WAIT_MS * 1000000;
	while (__atomic_load_n(&g.acc_inflight, __ATOMIC_ACQUIRE) && mono_ns() < end)
		nanosleep(&pause, NULL);
}

/* Remember a read of @slot (object @id) served from the index of @serial. */
static void access_record(uint64_t slot, uint64_t id, uint64_t serial)
{
	struct tstate *ts = tstate_get();
	uint64_t fg = __atomic_load_n(&g.fork_gen, __ATOMIC_RELAXED);
	bool full;

	if (!ts)
		return;
	acc_lock(ts);
	if (ts->nacc && (ts->acc_serial != serial || ts->acc_fork != fg))
		__atomic_store_n(&ts->nacc, 0,
				 __ATOMIC_RELAXED); /* another index's, the parent's */
	if (!ts->nacc) {
		ts->acc_serial = serial;
		ts->acc_fork = fg;
		ts->acc_first = coarse_ns();
	}
	ts->acc[ts->nacc].slot = slot;
	ts->acc[ts->nacc].id = id;
	__atomic_store_n(&ts->nacc, ts->nacc + 1, __ATOMIC_RELAXED);
	full = ts->nacc == ACCESS_BATCH;
	acc_unlock(ts);
	if (full)
		access_flush(ts, false);
}

void shim_access_tick(void)
{
	struct tstate *ts = tls_ts;

	if (ts && __atomic_load_n(&ts->nacc, __ATOMIC_RELAXED) &&
	    coarse_ns() - ts->acc_first >= ACCESS_AGE_NS)
		access_flush(ts, false);
}

/*
 * Whether the daemon that published the index still runs: its connection
 * (@livefd) is not closed at the other end. Asked at most every FX_LIVE_NS
 * per process, after the cache file is open: a daemon started after it
 * could reuse an id the index names only once it runs and has fetched,
 * which takes far longer.
 */
static bool fx_alive(int livefd)
{
	int64_t now = mono_ns(), last = __atomic_load_n(&fx.live_checked, __ATOMIC_RELAXED);
	struct pollfd p = {.fd = livefd, .events = POLLRDHUP};

	if (now - last < FX_LIVE_NS)
		return true;
	if (poll(&p, 1, 0) < 0 || (p.revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL)))
		return false;
	__atomic_store_n(&fx.live_checked, now, __ATOMIC_RELAXED);
	return true;
}

/* What a fast open or stat read of the published index, before the lookup. */
struct fx_view {
	const struct proto_fx_slot *slots;
	uint64_t nslots, serial;
	uint32_t gen;
	int dirfd, livefd;
};

/*
 * Look @abs up in the shared index for the mount @hit. Returns 1 with @slot
 * (and its number @at) when the index holds it, 0 when it does not or the
 * index cannot be used now, -1 when its slot is being written.
 */
static int fx_find(const char *abs, const struct preload_hit *hit, struct fx_view *v,
		   struct proto_fx_slot *slot, uint64_t *at)
{
	uint64_t k1, k2;
	int rc;

	if (g.fast_off || !(hit->flags & PROTO_F_MOUNT_FAST))
		return 0;
	v->gen = __atomic_load_n(&fx.gen, __ATOMIC_ACQUIRE);
	if (v->gen & 1)
		return 0;
	v->slots = __atomic_load_n(&fx.slots, __ATOMIC_RELAXED);
	v->nslots = __atomic_load_n(&fx.nslots, __ATOMIC_RELAXED);
	v->dirfd = __atomic_load_n(&fx.dirfd, __ATOMIC_RELAXED);
	v->livefd = __atomic_load_n(&fx.livefd, __ATOMIC_RELAXED);
	v->serial = __atomic_load_n(&fx.serial, __ATOMIC_RELAXED);
	if (!v->slots || v->dirfd < 0 || v->livefd < 0 ||
	    __atomic_load_n(&fx.epoch, __ATOMIC_RELAXED) !=
		    __atomic_load_n(&g.fail_epoch, __ATOMIC_ACQUIRE))
		return 0;
	preload_fx_keys(abs, strlen(abs), &k1, &k2);
	rc = preload_fx_lookup(v->slots, v->nslots, k1, k2, hit->order, slot, at);
	/* a ttl mount's copy past its ttl: the daemon revalidates it */
	if (rc == 1 && hit->ttl_ns && !preload_fx_fresh(slot, hit->ttl_ns, mono_ns()))
		return 0;
	return rc;
}

/*
 * After a lookup by fx_find: true when what it read still stands, the daemon
 * that published the index running and neither the index nor the mount
 * table replaced meanwhile.
 */
static bool fx_confirm(const struct fx_view *v, const struct preload_hit *hit)
{
	if (!fx_alive(v->livefd)) {
		if (__atomic_load_n(&fx.gen, __ATOMIC_ACQUIRE) == v->gen)
			fx_retire();
		return false;
	}
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	/* replaced meanwhile: the slot may be another index's, the flags another table's */
	return __atomic_load_n(&fx.gen, __ATOMIC_RELAXED) == v->gen &&
	       __atomic_load_n(&g.seq, __ATOMIC_RELAXED) == hit->seq;
}

static void fx_srcstat(const struct proto_fx_slot *slot, struct preload_srcstat *s)
{
	s->size = slot->size;
	s->mtime_ns = slot->mtime_ns;
	s->mode = slot->mode;
	s->type = PROTO_FT_REG;
	s->ino = slot->ino;
}

int shim_open_fast(const char *abs, const struct preload_hit *hit, int flags, int fd_limit,
		   struct stat *cst, struct preload_srcstat *s)
{
	struct proto_fx_slot slot;
	struct fx_view v;
	uint64_t at = 0;
	char name[20];
	struct stat st;
	int fd, rc, err;

	rc = fx_find(abs, hit, &v, &slot, &at);
	if (rc <= 0) {
		if (rc < 0)
			shim_log("open %s: its slot is being written, asking the daemon", abs);
		return -1;
	}
	if (hit->flags & PROTO_F_MOUNT_STRICT) {
		/* as the caller: the directories on the way must let it through too */
		if (syscall(SYS_newfstatat, AT_FDCWD, abs, &st, 0) < 0) {
			shim_log("open %s: stat of the original failed with %s, asking the daemon",
				 abs, shim_errname(errno));
			return -1;
		}
		if (!preload_fx_same(&slot, &st)) {
			shim_log("open %s: the original changed, asking the daemon", abs);
			return -1;
		}
	}
	preload_fx_name(slot.id, name);
	fd = (int)syscall(SYS_openat, v.dirfd, name,
			  O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_LARGEFILE |
				  (flags & (O_CLOEXEC | O_NONBLOCK)));
	if (fd < 0) {
		err = errno;
		if ((err == EBADF || err == ENOTDIR) &&
		    __atomic_load_n(&fx.gen, __ATOMIC_ACQUIRE) == v.gen)
			fx_retire(); /* the number is not our directory any more (close_range) */
		shim_log("open %s: cache file %s: %s, asking the daemon", abs, name,
			 shim_errname(err));
		return -1;
	}
	if (fd >= fd_limit || syscall(SYS_fstat, fd, cst) < 0 || !S_ISREG(cst->st_mode) ||
	    (uint64_t)cst->st_size != slot.size || !fx_confirm(&v, hit))
		goto decline;
	fx_srcstat(&slot, s);
	access_record(at, slot.id, v.serial);
	return fd;

decline:
	shim_sys_close(fd);
	shim_log("open %s: cache file %s not usable now, asking the daemon", abs, name);
	return -1;
}

bool shim_stat_fast(const char *abs, const struct preload_hit *hit, struct preload_srcstat *s)
{
	struct proto_fx_slot slot;
	struct fx_view v;
	uint64_t at = 0;

	/* a strict mount's answer is the original's, which the real stat gives */
	if (hit->flags & PROTO_F_MOUNT_STRICT)
		return false;
	if (fx_find(abs, hit, &v, &slot, &at) <= 0 || !fx_confirm(&v, hit))
		return false;
	/* an immutable object's attributes: what a STAT would answer from the index */
	fx_srcstat(&slot, s);
	return true;
}
