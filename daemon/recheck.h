/*
 * recheck.h - the rights on the sources of public copies, checked again.
 *
 * Owns: the ring of public copies of NAS (posix) objects and the timer that
 * walks it. A public copy may be opened by id by any local user, with no
 * question to the daemon; when its source stops being readable by every
 * local user (a chmod, a directory closed, an ACL added), the copy must leave
 * the public tree. Opens through granary notice at once on strict mounts,
 * within the ttl on ttl mounts; this walk bounds the time on every mount,
 * immutable ones included, to access.recheck for as long as it keeps up
 * (it checks at most RECHECK_MAX_RATE copies a second and says so when the
 * ring is too large for the interval).
 *
 * DESIGN: loop thread only. Each tick takes the copies at the head of the ring
 * to its tail and hands each to fetch_recheck(), which describes the source
 * as the daemon on a worker and applies what changed (fetch.c validated()).
 */
#ifndef GRANARY_RECHECK_H
#define GRANARY_RECHECK_H

#include "granaryd.h"
#include "index.h"

#define RECHECK_MAX_RATE 4096 /* copies checked a second, at most */

int recheck_start(struct granaryd *d);
void recheck_stop(struct granaryd *d);

/* @o is a public copy of a posix object now (track it), or no longer (untrack). */
void recheck_track(struct granaryd *d, struct object *o);
void recheck_untrack(struct granaryd *d, struct object *o);

/* A check handed out by a tick has finished. */
void recheck_done(struct granaryd *d);

#endif
