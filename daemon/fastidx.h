/*
 * fastidx.h - the shared index of cached objects (the shim's fast path).
 *
 * Owns: a memfd holding struct proto_fx_hdr and an array of struct
 * proto_fx_slot (layout and rules in client/proto.h), the daemon's writable
 * mapping of it, a read-only descriptor that clients receive with HELLO, and
 * the slot -> object map used to account reads clients report with ACCESS.
 * Loop thread only; clients read the slots under their sequence locks.
 */
#ifndef GRANARY_FASTIDX_H
#define GRANARY_FASTIDX_H

#include <stdbool.h>
#include <stdint.h>

#include "granaryd.h"

struct fastidx;

/* Size the table for @capacity bytes of cache. NULL with *err on failure. */
struct fastidx *fastidx_create(uint64_t capacity, int *err);
void fastidx_destroy(struct fastidx *fx);

/* A read-only descriptor of the index for a client (caller closes), or -errno. */
int fastidx_client_fd(struct fastidx *fx);

/* Publish @o (cached, of a mount eligible for the fast path). */
void fastidx_put(struct fastidx *fx, struct object *o, uint32_t mount_index);
/* Withdraw @o, if published. */
void fastidx_del(struct fastidx *fx, struct object *o);

/* The object in @slot if it still holds @id, else NULL. */
struct object *fastidx_object(struct fastidx *fx, uint64_t slot, uint64_t id);

/* Slots in use, and the table's size. */
void fastidx_stats(const struct fastidx *fx, uint64_t *used, uint64_t *nslots);

#endif
