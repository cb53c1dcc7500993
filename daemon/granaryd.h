/*
 * granaryd.h - the one struct of daemon state, and the mounts.
 *
 * Owns: struct granaryd (everything the loop thread owns), struct mount (a
 * configured path prefix bound to a backend), the daemon-wide counters, and
 * the space accounting of the cache (used, reserved, watermarks).
 *
 * DESIGN: a single libevent loop thread owns every field here. Worker threads
 * (pool.c), the catalog writer and io_uring completions never touch it; their
 * results come back to the loop as callbacks. docs/threads.md says more.
 */
#ifndef GRANARY_GRANARYD_H
#define GRANARY_GRANARYD_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <event2/event.h>

#include "caller.h"
#include "clock.h"
#include "config.h"
#include "counters.h"
#include "index.h"
#include "qos.h"
#include "store.h"

struct backend_ops;
struct policy;
struct catalog;
struct pool;
struct uring;
struct server;
struct hint;
struct prefetch;
struct metrics;
struct fastidx;
struct recheck;

struct mount {
	struct granaryd *d;
	const struct config_mount *cfg;
	const struct backend_ops *ops;
	void *priv;	  /* the backend's own state */
	uint32_t dataset; /* policy dataset id */
	uint64_t objects, bytes;
	uint64_t hits, misses;
	uint64_t fetches, fetch_errors; /* from the backend (or a peer) */
	double fetch_seconds;		/* summed duration of those fetches */
	int64_t warned_ns;		/* last "fetch failed" warning */
	uint64_t unwarned;		/* failures since, logged at debug */
	struct hint *hint;		/* the hinted order of the coming epoch, if any */
	struct prefetch *prefetch;	/* read-ahead over the hinted order */
	struct caller hint_who;		/* who sent the order: prefetches are checked as them */
	/* who last advanced the epoch or sent an order (server.c may_steer) */
	bool steered;
	uid_t steer_uid;
	int64_t steer_ns;
};

struct granaryd {
	struct config *cfg;
	struct event_base *base;
	struct pool *pool;
	struct uring *io;
	struct store store;
	struct catalog *cat;
	struct index *idx;
	struct policy *policy;
	struct server *srv;
	struct metrics *metrics;
	struct fastidx *fx; /* NULL when the fast path is off */
	struct recheck *rk; /* rights of public copies checked again */
	int objdir_path_fd; /* O_PATH of objects/, for clients */
	struct event *sig_term, *sig_int, *sig_hup, *stop_timer;

	size_t n_mounts;
	struct mount *mounts;

	uint64_t next_id;	    /* next cache file id */
	uint64_t used;		    /* bytes of complete objects */
	uint64_t reserved;	    /* bytes promised to fetches in flight */
	uint64_t high, low;	    /* watermarks in bytes, lowered while the disk is full */
	uint64_t high_cfg, low_cfg; /* the configured ones */
	int64_t full_since_ns;	    /* the cache's file system filled up (0: not) */
	unsigned fetches_inflight;
	struct qos qos; /* backend slots: foreground and background */

	struct counters c;
	int64_t start_mono_ns;
	bool stopping;
};

/* The mount serving @path (normalised), or NULL (mount.c). */
struct mount *granaryd_mount_find(struct granaryd *d, const char *path);
/* A mount's dataset id for an explicit dataset name or path. */
struct mount *granaryd_mount_by_dataset(struct granaryd *d, const char *name);

/*
 * @path (normalised, under @m) as the backend names it: relative to the
 * mount, without a leading slash; "" is the mount's root.
 */
static inline const char *mount_rel(const struct mount *m, const char *path)
{
	size_t n = strlen(m->cfg->path);

	if (n == 1)
		return path + 1;
	return path[n] == '/' ? path + n + 1 : path + n;
}

/* Begin the ordered shutdown (signals, tests). */
void granaryd_stop(struct granaryd *d);

#endif
