/*
 * peer.c - the rack (see peer.h). Without peers in the config every object is
 * this node's own.
 */
#include "peer.h"

#include <errno.h>

int peer_start(struct granaryd *d)
{
	(void)d;
	return 0;
}

void peer_stop(struct granaryd *d)
{
	(void)d;
}

bool peer_remote_owner(struct granaryd *d, struct mount *m, const char *path)
{
	(void)d;
	(void)m;
	(void)path;
	return false;
}

void peer_fetch(struct granaryd *d, struct mount *m, const char *path, struct peer_call *call)
{
	(void)d;
	(void)m;
	(void)path;
	call->err = -EHOSTUNREACH;
	call->fd = -1;
	call->done(call);
}
