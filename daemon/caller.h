/*
 * caller.h - who asks, and asking the kernel as them.
 *
 * Owns: struct caller (a client's uid, gid and every supplementary group, as
 * the kernel reports them for the socket: SO_PEERCRED, SO_PEERGROUPS), and
 * acting as a caller on the calling worker thread. Between caller_enter() and
 * caller_leave() the thread has the caller's filesystem ids and groups and
 * none of the capabilities that bypass permission checks, so open, stat,
 * readdir and faccessat are decided by the kernel as they would be for the
 * caller itself: mode bits, ACLs, root_squash on NFS, LSMs.
 *
 * DESIGN: Linux keeps credentials per thread, but glibc's setgroups() and
 * setfsuid() wrappers change every thread of the process, so raw system calls
 * are used. Switching needs CAP_SETUID and CAP_SETGID: root has them, and the
 * systemd unit grants them to the service user (docs/security.md). Any
 * failure to switch is reported and must be taken as a refusal; a failure to
 * switch back ends the process, since a worker left with another user's
 * credentials must never run again.
 */
#ifndef GRANARY_CALLER_H
#define GRANARY_CALLER_H

#include <stdbool.h>
#include <sys/types.h>

#define CALLER_MAX_GROUPS 1024

struct caller {
	uid_t uid;
	gid_t gid;
	int ngroups; /* -1: unknown (too many to hold), and every check refuses */
	gid_t groups[CALLER_MAX_GROUPS];
};

/*
 * Fill @who from the connected AF_UNIX socket @fd (and *pid). Returns 0, or
 * -errno when the peer's credentials cannot be had; groups that do not fit
 * leave who->ngroups at -1.
 */
int caller_from_socket(int fd, struct caller *who, pid_t *pid);

/* Is @g the caller's group, primary or supplementary? */
bool caller_in_group(const struct caller *who, gid_t g);

struct caller_saved {
	bool entered;
	unsigned fsuid, fsgid;
	int ngroups;
	gid_t groups[CALLER_MAX_GROUPS];
	struct {
		unsigned effective, permitted, inheritable;
	} caps[2];
};

/*
 * Make this thread act as @who. Returns 0, or -EACCES with the thread left
 * as it was (an unknown group list, or a switch the daemon may not make).
 * Each successful call must be followed by caller_leave() on the same thread.
 */
int caller_enter(const struct caller *who, struct caller_saved *sv);
void caller_leave(struct caller_saved *sv);

/* Could this process act as a caller at all (root, or CAP_SETUID + CAP_SETGID)? */
bool caller_can_switch(void);

#endif
