/*
 * peer.h - the rack: membership, placement, and fetching from other nodes.
 *
 * Owns: the static peer list of the config, heartbeats and liveness,
 * rendezvous hashing of object keys over live nodes, the peer endpoint (over
 * fabric.c, the only file that speaks libfabric), rack authentication, and
 * serving this node's objects to the others. Loop thread. The code: peer.c
 * (membership, placement), peer_auth.c, peer_pull.c (fetching from owners)
 * and peer_serve.c (serving), around the private peer_impl.h.
 *
 * fetch.c asks peer_remote_owner() before going to the backend; when another
 * live node owns the object it calls peer_fetch(), and falls back to the
 * backend when that fails, so a dead peer costs speed, never an error.
 */
#ifndef GRANARY_PEER_H
#define GRANARY_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "granaryd.h"

struct peer_call {
	void (*done)(struct peer_call *call); /* on the loop thread, once */
	void *arg;
	/* outputs */
	int err; /* 0, or -errno: the caller then fetches from the backend */
	char msg[256];
	struct validator v; /* what the owner validated */
	uint64_t checksum;  /* xxh3-64 of the content */
	int fd;		    /* a sealed memfd with the whole object; the caller owns it */
};

/*
 * Whether this granaryd was built with the rack: false with -DGRANARY_RACK=OFF
 * (rack_off.c), where peer_start() refuses a configuration that lists
 * peers.nodes and the rest does nothing. `granaryd --version` says which.
 */
bool peer_rack_built(void);

/* Start the endpoint and heartbeats when cfg->peers lists nodes. 0 or -errno. */
int peer_start(struct granaryd *d);
void peer_stop(struct granaryd *d);

/* True when another live node owns @path (normalised, under @m). */
bool peer_remote_owner(struct granaryd *d, struct mount *m, const char *path);

/* Fetch @path from its owner; call->done reports. */
void peer_fetch(struct granaryd *d, struct mount *m, const char *path, struct peer_call *call);

/*
 * Add "rack" to @json_object (a jansson json_t object, the STATUS reply):
 * this node, the provider, and per node whether it is up, its round trip,
 * what was fetched from it and served to it, and the messages naming it that
 * were refused (a proof that failed) or dropped as copies.
 */
void peer_status_json(struct granaryd *d, void *json_object);

/*
 * The acceptance rules of the rack's wire (see peer_auth.c), pure so they can be
 * tested alone.
 */
#define PEER_KEY_LEN 32

/*
 * Frame a message of @type on session @sid into @out: with @key (a session
 * key of PEER_KEY_LEN bytes) it carries sequence number @seq and a MAC of
 * header and body; without, @seq is the handshake's HELLO number. Its length,
 * or -EMSGSIZE.
 */
int peer_msg_seal(const uint8_t *key, int type, bool init, uint64_t sid, uint64_t seq,
		  const void *body, size_t len, void *out, size_t outsz);

/*
 * Take an authenticated message of @len bytes: 0 when its MAC under @key
 * verifies and its sequence number is above *@last (which then becomes it);
 * -EBADMSG for a wrong MAC, -EALREADY for a copy or an older message, -EPROTO
 * when it is malformed. *@last changes only on 0.
 */
int peer_msg_accept(const uint8_t *key, uint64_t *last, const void *msg, size_t len);

/*
 * A HELLO whose proof verified (@sid, the sender's @boot id, its HELLO number
 * @hseq), against the last session the same node opened (@cur_*, 0 before
 * any): false when it is that session's HELLO again or an older one of the
 * same life.
 */
bool peer_hello_fresh(uint64_t sid, uint64_t boot, uint64_t hseq, uint64_t cur_sid,
		      uint64_t cur_boot, uint64_t cur_hseq);

#endif
