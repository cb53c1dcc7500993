/* caller.c - who asks, and asking the kernel as them (see caller.h). */
#include "caller.h"

#include <errno.h>
#include <linux/capability.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"

int caller_from_socket(int fd, struct caller *who, pid_t *pid)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	memset(who, 0, sizeof(*who));
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return -errno;
	who->uid = cred.uid;
	who->gid = cred.gid;
	*pid = cred.pid;
	len = sizeof(who->groups);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, who->groups, &len) == 0)
		who->ngroups = (int)(len / sizeof(gid_t));
	else
		who->ngroups = -1; /* ERANGE: more groups than we hold; never guess */
	return 0;
}

bool caller_in_group(const struct caller *who, gid_t g)
{
	int i;

	if (who->gid == g)
		return true;
	for (i = 0; i < who->ngroups; i++)
		if (who->groups[i] == g)
			return true;
	return false;
}

static int caps_get(struct caller_saved *sv)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};

	return syscall(SYS_capget, &h, sv->caps) < 0 ? -errno : 0;
}

static int caps_set(const void *data)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};

	return syscall(SYS_capset, &h, data) < 0 ? -errno : 0;
}

/* The capabilities that let a process read or search what its ids may not. */
static const int bypass_caps[] = {CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER};

bool caller_can_switch(void)
{
	struct caller_saved sv;

	if (caps_get(&sv) < 0)
		return false;
	return (sv.caps[0].effective & (1u << CAP_SETUID)) &&
	       (sv.caps[0].effective & (1u << CAP_SETGID));
}

static __attribute__((noreturn)) void cannot_return(int err)
{
	log_errno(LOG_ERR, err, "cannot take the daemon's own credentials back; stopping");
	abort();
}

int caller_enter(const struct caller *who, struct caller_saved *sv)
{
	struct __user_cap_data_struct drop[2];
	size_t i;
	int rc;

	sv->entered = false;
	if (who->ngroups < 0 || who->ngroups > CALLER_MAX_GROUPS)
		return -EACCES;
	rc = caps_get(sv);
	if (rc < 0)
		return -EACCES;
	sv->fsuid = (unsigned)syscall(SYS_setfsuid, -1);
	sv->fsgid = (unsigned)syscall(SYS_setfsgid, -1);
	sv->ngroups = (int)syscall(SYS_getgroups, CALLER_MAX_GROUPS, sv->groups);
	if (sv->ngroups < 0)
		return -EACCES;
	if (syscall(SYS_setgroups, (size_t)who->ngroups, who->groups) < 0)
		return -EACCES;
	sv->entered = true; /* from here on, leave() puts everything back */
	syscall(SYS_setfsgid, who->gid);
	syscall(SYS_setfsuid, who->uid);
	/* setfs*id report no error: ask for the ids now in force */
	if ((uid_t)syscall(SYS_setfsuid, -1) != who->uid ||
	    (gid_t)syscall(SYS_setfsgid, -1) != who->gid)
		goto refuse;
	/*
	 * Leaving fsuid 0 clears these already; a service user that holds
	 * CAP_DAC_READ_SEARCH keeps it across setfsuid, so drop it here.
	 */
	memcpy(drop, sv->caps, sizeof(drop));
	for (i = 0; i < sizeof(bypass_caps) / sizeof(bypass_caps[0]); i++)
		drop[bypass_caps[i] / 32].effective &= ~(1u << (bypass_caps[i] % 32));
	if (caps_set(drop) < 0)
		goto refuse;
	return 0;

refuse:
	caller_leave(sv);
	return -EACCES;
}

void caller_leave(struct caller_saved *sv)
{
	if (!sv->entered)
		return;
	sv->entered = false;
	syscall(SYS_setfsuid, sv->fsuid);
	syscall(SYS_setfsgid, sv->fsgid);
	if ((unsigned)syscall(SYS_setfsuid, -1) != sv->fsuid ||
	    (unsigned)syscall(SYS_setfsgid, -1) != sv->fsgid)
		cannot_return(EPERM);
	if (syscall(SYS_setgroups, (size_t)sv->ngroups, sv->groups) < 0)
		cannot_return(errno);
	if (caps_set(sv->caps) < 0)
		cannot_return(errno);
}
