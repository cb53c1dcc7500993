/*
 * rack_off.c - peer.h in a granaryd built without the rack
 * (-DGRANARY_RACK=OFF): no libfabric, no libcrypto, and none of peer*.c or
 * fabric*.c. Every object is this node's own, as with a configuration that
 * lists no peers.nodes; one that lists some is refused at start, so a node
 * never runs alone believing it is in a rack.
 */
#include "peer.h"

#include <errno.h>
#include <stdio.h>

#include <jansson.h>

#include "log.h"

bool peer_rack_built(void)
{
	return false;
}

int peer_start(struct granaryd *d)
{
	if (d->cfg->peers.n_nodes == 0)
		return 0;
	log_err("this granaryd was built without the rack (GRANARY_RACK=OFF); "
		"peers.nodes cannot be used");
	return -EOPNOTSUPP;
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

/* Never called (no path has a remote owner); answers as peer.c does without a rack. */
void peer_fetch(struct granaryd *d, struct mount *m, const char *path, struct peer_call *call)
{
	(void)d;
	(void)m;
	(void)path;
	call->fd = -1;
	call->err = -EHOSTUNREACH;
	snprintf(call->msg, sizeof(call->msg), "no live owner in the rack");
	call->done(call);
}

/* The same document as a granaryd with the rack and no peers.nodes. */
void peer_status_json(struct granaryd *d, void *json_object)
{
	json_t *root = json_object;

	(void)d;
	if (!root)
		return;
	json_object_set_new(root, "rack", json_pack("{sb}", "enabled", 0));
}

/* The wire's rules need libcrypto's HMAC: nothing is sealed or taken here. */
int peer_msg_seal(const uint8_t *key, int type, bool init, uint64_t sid, uint64_t seq,
		  const void *body, size_t len, void *out, size_t outsz)
{
	(void)key;
	(void)type;
	(void)init;
	(void)sid;
	(void)seq;
	(void)body;
	(void)len;
	(void)out;
	(void)outsz;
	return -EOPNOTSUPP;
}

int peer_msg_accept(const uint8_t *key, uint64_t *last, const void *msg, size_t len)
{
	(void)key;
	(void)last;
	(void)msg;
	(void)len;
	return -EOPNOTSUPP;
}

bool peer_hello_fresh(uint64_t sid, uint64_t boot, uint64_t hseq, uint64_t cur_sid,
		      uint64_t cur_boot, uint64_t cur_hseq)
{
	(void)sid;
	(void)boot;
	(void)hseq;
	(void)cur_sid;
	(void)cur_boot;
	(void)cur_hseq;
	return false;
}
