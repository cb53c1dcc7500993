/*
 * preload_fast.h - private interface between preload_daemon.c (settings,
 * thread states, connections, mount table) and preload_fast.c (the shared
 * index and the ACCESS reports of the reads served from it).
 *
 * preload_daemon.c owns everything declared in the first half: the fast
 * path reads the settings, the epochs and the mount table's sequence
 * counter, buffers its reports in the thread's state and sends them on the
 * thread's connection. preload_fast.c owns the second half: HELLO installs
 * the index it brought, and the ends of threads, of the process and fork
 * flush the reports. Nothing here is exported.
 */
#ifndef GRANARY_PRELOAD_FAST_H
#define GRANARY_PRELOAD_FAST_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/un.h>

#include "preload.h"
#include "proto.h"

#define TS_POOL_MAX  1024
#define ACCESS_BATCH 64 /* fast reads reported in one ACCESS */

/* One thread's state: mmap'd, never malloc'd; see preload_daemon.c. */
struct tstate {
	int fd;		   /* connection, -1 when none */
	int slot;	   /* in conn_reg, -1 when not registered */
	uint64_t epoch;	   /* fail_epoch when connected */
	uint64_t fork_gen; /* fork_gen when the state was last used */
	uint32_t next_id;
	int in_use;  /* atomic: a live thread's; 0: free for the next one */
	bool pooled; /* in ts_pool: never unmapped */
	/* reads served by the fast path, not reported yet: under acc_lock */
	int acc_lock;
	uint32_t nacc;
	uint64_t acc_serial; /* fx.serial of the index they were served from */
	uint64_t acc_fork;   /* fork_gen then */
	int64_t acc_first;   /* CLOCK_MONOTONIC_COARSE ns of the first */
	struct proto_fx_access acc[ACCESS_BATCH];
	struct proto_buf out;
	uint8_t in[PROTO_MSG_MAX];
};

/* The shim's settings, connection state and mount table (preload_daemon.c). */
struct shim_state {
	pthread_once_t once;
	int ready; /* atomic: settings read */
	bool disabled;
	bool fast_off; /* GRANARY_FASTPATH=0 */
	int debug;
	int timeout_ms;
	int64_t spin_ns;       /* GRANARY_SPIN_US: how long a waiter may spin */
	unsigned spin_max;     /* how many threads may spin at once */
	unsigned spinners;     /* atomic: how many do now */
	unsigned acc_inflight; /* atomic: batches of reports taken, not sent yet */
	char sock[sizeof(((struct sockaddr_un *)0)->sun_path)];
	pthread_key_t key;
	bool have_key;

	int64_t down_until;  /* atomic, CLOCK_MONOTONIC ns; 0 when up */
	unsigned timeouts;   /* atomic: failures by timeout in a row */
	uint64_t fail_epoch; /* atomic */
	uint64_t fork_gen;   /* atomic */
	int64_t syslog_last; /* atomic */

	uint64_t table_epoch; /* atomic: fail_epoch of the last HELLO */
	uint32_t seq;	      /* atomic: odd while the table is rewritten */
	pthread_mutex_t table_lock;
	struct preload_mounts mounts;
	struct preload_mounts scratch; /* under table_lock */
};

/* ---- owned by preload_daemon.c ---- */

extern struct shim_state g;

/* Every thread state made, filled in order, never unmapped (atomic). */
extern struct tstate *ts_pool[TS_POOL_MAX];

/* This thread's state; whether this thread is inside the shim now. */
extern __thread struct tstate *tls_ts TLS_IE;
extern __thread int tls_busy TLS_IE;

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t mono_ns(void);

/* This thread's state, made or taken from ts_pool if needed; NULL when out of memory. */
struct tstate *tstate_get(void);

/*
 * This thread's connection, made if needed (with HELLO when the mount table
 * is older than it); NULL while the daemon is taken as down or when
 * connecting fails now. *@fresh tells whether it was made by this call.
 */
struct tstate *conn_get(bool *fresh);

/* Close the thread's connection, if any. */
void conn_drop(struct tstate *ts);

/*
 * Send ts->out (request @id of @type) and receive its reply into ts->in.
 * @wait_ms < 0: wait as long as the socket timeout allows; else at most that.
 * @sendfl: more flags for send(): MSG_DONTWAIT gives up at once (-ETIMEDOUT)
 * when the socket is full. Returns the reply's length with @rfd[0..@nrfd-1]
 * its descriptors, -1 where it had none; -ETIMEDOUT when @wait_ms passed
 * (the connection stays usable); other -errno: the connection is unusable.
 */
ssize_t conn_call(struct tstate *ts, uint32_t id, uint16_t type, int *rfd, int nrfd, int wait_ms,
		  int sendfl);

/* ---- owned by preload_fast.c ---- */

/*
 * Make the index in @ifd and the objects/ directory @dfd (both from HELLO on
 * connection @conn, both consumed; -1 when HELLO brought none) the ones fast
 * opens use, for connection epoch @epoch. Under g.table_lock.
 */
void fx_install(int ifd, int dfd, int conn, uint64_t epoch);

/* Stop using the index until the next HELLO: its daemon is gone, or a descriptor is. */
void fx_retire(void);

/*
 * Report @ts's fast reads, if any, with the shim entered (exit and fork).
 * @wait: for the daemon's answer, ACCESS_WAIT_MS at most.
 */
void access_flush_now(struct tstate *ts, bool wait);

/*
 * Every pending report of the process, then a short wait for the batches
 * other threads are sending: at process exit, with the shim entered.
 */
void access_flush_all(void);

#endif
