/*
 * peer.h - the rack: membership, placement, and fetching from other nodes.
 *
 * Owns: the static peer list of the config, heartbeats and liveness,
 * rendezvous hashing of object keys over live nodes, the peer endpoint (over
 * fabric.c, the only file that speaks libfabric), rack authentication, and
 * serving this node's objects to the others. Loop thread.
 *
 * fetch.c asks peer_remote_owner() before going to the backend; when another
 * live node owns the object it calls peer_fetch(), and falls back to the
 * backend when that fails, so a dead peer costs speed, never an error.
 */
#ifndef GRANARY_PEER_H
#define GRANARY_PEER_H

#include <stdbool.h>
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
 * and what was fetched from it and served to it.
 */
void peer_status_json(struct granaryd *d, void *json_object);

#endif
