/*
 * access.h - may this caller do this to this path: the one access decision.
 *
 * Owns: the check made before anything is fetched, listed, described or handed
 * out for a client, and who counts as an administrator.
 *
 * NAS (posix) mounts: the kernel decides. The source is opened as the caller
 * on a worker thread (caller.h), so mode bits, ACLs, root_squash and LSMs
 * apply, and the answer carries what the caller saw (size, mtime, inode):
 * what is then served must be that same file in that same version.
 * Object-store mounts: the mount's allow_uids and allow_gids; none means
 * every local user. Root is not checked (it may read every source). Every
 * internal error refuses.
 */
#ifndef GRANARY_ACCESS_H
#define GRANARY_ACCESS_H

#include <stdbool.h>

#include "caller.h"
#include "granaryd.h"
#include "index.h"
#include "pool.h"

enum access_want {
	ACCESS_READ,  /* open for reading, as the source would allow */
	ACCESS_WRITE, /* the caller may write the source (a DROP after a write) */
};

/*
 * One check; the caller embeds it and fills the inputs. done() runs on the
 * loop thread exactly once, possibly before access_check() returns.
 */
struct access_req {
	struct pool_task task;
	/* inputs */
	struct granaryd *d;
	struct mount *m;
	const struct caller *who;
	const char *path; /* normalised, under m; valid until done() */
	enum access_want want;
	void (*done)(struct access_req *a);
	/* outputs */
	int err;	 /* 0, or the -errno the source would give the caller */
	char msg[256];	 /* a sentence for the user when err */
	bool seen_valid; /* @seen describes the file the caller opened */
	struct validator seen;
	int fd; /* NAS reads: that file, opened as the caller (-1: none); the caller's to close */
};

/* Fill @a's inputs (@path and @who must stay valid until done() has run). */
void access_prepare(struct access_req *a, struct granaryd *d, struct mount *m,
		    const struct caller *who, const char *path, enum access_want want,
		    void (*done)(struct access_req *a));

void access_check(struct access_req *a);

/* Does @who's check tell anything (not root)? */
bool access_needed(const struct caller *who);

/* May @who read object-store mount @m at all (its allow lists)? */
bool access_mount_allows(const struct mount *m, const struct caller *who);

/* Root, or a member of a group in access.admin_gids. */
bool access_is_admin(const struct granaryd *d, const struct caller *who);

/* Is what @a's caller saw the same file and version as @v describes? */
bool access_same_file(const struct access_req *a, const struct validator *v);

#endif
