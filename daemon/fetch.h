/*
 * fetch.h - getting an object into the cache: lookup, validation, single
 * flight, admission, the copy into a staging file, and the commit.
 *
 * Owns: struct fetch (one per object being fetched), the space accounting of
 * admissions and evictions, and dropping objects from the cache.
 *
 * DESIGN: fetch_get() is the one entry for every read and warm. A cached,
 * valid object answers at once; a cached object whose source changed is
 * dropped and fetched again; concurrent misses of one object wait on one
 * fetch. A fetch opens the source on a worker thread, asks the policy for room,
 * copies with io_uring (or the thread fallback) into tmp/<id>, checks that the
 * source did not change while it was copied, renames into objects/ and only
 * then records the object and answers its waiters. A remote object is not
 * asked for with a HEAD first: one ranged GET of its first chunk lands in the
 * staging file and describes it (size, validator), admission is decided
 * then, and the other ranges must match that version. A miss the policy will
 * not admit is answered with a descriptor of the source itself ("direct"; a
 * sealed memfd for remote objects).
 */
#ifndef GRANARY_FETCH_H
#define GRANARY_FETCH_H

#include <stdbool.h>
#include <sys/types.h>

#include "caller.h"
#include "granaryd.h"
#include "proto.h"

struct fetch_waiter;

/*
 * Called on the loop thread when the object is ready or failed. On success
 * @o is the cached object (valid during the call) and @direct_fd is -1, or
 * @o is NULL and @direct_fd is a read-only descriptor of the source that the
 * callee now owns. On failure @err is -errno and @msg a sentence for the user
 * (maybe empty).
 */
typedef void (*fetch_done_fn)(struct fetch_waiter *w, struct object *o, int direct_fd, int err,
			      const char *msg, enum proto_source src);

struct fetch_waiter {
	struct fetch_waiter *next;
	fetch_done_fn done;
	const struct caller *who; /* NULL: no check (warms by the daemon itself) */
	bool foreground;	  /* a process waits on it (counts as a read) */
	bool peer;		  /* asked by another node: see record_hit() */
	bool want_fd;		  /* a direct miss must produce a descriptor */
	/*
	 * with has_srcfd, the source as the caller opened it (access.h): a
	 * fetch started for this waiter takes it (clearing has_srcfd) and
	 * copies that very file; otherwise the waiter's owner closes it
	 */
	bool has_srcfd;
	int srcfd;
	uint64_t size; /* set before done(): the object's size */
};

/*
 * Make the object at @path (normalised, under @m) available and call
 * @w->done exactly once, maybe before returning. @w must stay valid until
 * then.
 */
void fetch_get(struct granaryd *d, struct mount *m, const char *path, struct fetch_waiter *w);

/*
 * True when @o is cached and its mount's consistency lets it be trusted now
 * without asking the backend (immutable, or checked within the TTL).
 */
bool fetch_fresh(struct granaryd *d, const struct object *o);

/*
 * Remove a cached object: its file, catalog row, index entry, policy entry.
 * An object being fetched is marked so that the fetch starts over.
 */
void fetch_drop(struct granaryd *d, struct object *o, bool evicted);

/* Evict down to the low watermark when above the high one. */
void fetch_trim(struct granaryd *d);

/* Open a descriptor of the cached object @o for a reader, or -errno. */
int fetch_open_cached(struct granaryd *d, struct object *o);

/*
 * May clients open @m's cached objects from the shared index, without asking?
 * NAS mounts (the shim checks the original), and object-store mounts that
 * are immutable and have no allow_uids/allow_gids.
 */
bool fetch_fast_eligible(const struct mount *m);
/* Are every copy of @m's objects private (an allow list)? */
bool fetch_mount_private(const struct mount *m);

/*
 * Describe @o's source again on a worker, as the daemon, and follow what
 * changed in its rights (recheck.c); no one waits on it. 0 or -ENOMEM.
 */
int fetch_recheck(struct granaryd *d, struct object *o);

/* Publish a cached object in the shared index when its mount allows. */
void fetch_publish(struct granaryd *d, struct object *o);

/* Record a cached object found in the catalog at start-up. */
struct object *fetch_restore(struct granaryd *d, struct mount *m, const char *path, uint64_t id,
			     const struct validator *v, uint64_t checksum, bool pinned);

#endif
