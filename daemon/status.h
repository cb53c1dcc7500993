/*
 * status.h - the daemon's state as one JSON document.
 *
 * Owns: the document that STATUS answers (docs/protocol.md): cache, counters,
 * mounts, datasets, QoS and the rack. It names mounts and datasets, never an
 * object's path: any local user may ask for it.
 */
#ifndef GRANARY_STATUS_H
#define GRANARY_STATUS_H

#include "granaryd.h"

/* A malloc'd JSON document (caller frees), or NULL when out of memory. */
char *server_status_json(struct granaryd *d);

#endif
