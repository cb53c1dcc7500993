/*
 * rendezvous.h - highest random weight (rendezvous) placement: which node of
 * the rack owns an object key.
 *
 * Owns nothing: pure functions over what the caller passes, no I/O, no state.
 * Every node computes the same owner from the same set of live nodes, and a
 * node that leaves moves only the keys it owned (each to the node that
 * weighed next for that key); when it returns they come back to it.
 *
 * Nodes are identified by a seed derived from their name, so a node keeps
 * its keys across address changes and restarts.
 */
#ifndef GRANARY_RENDEZVOUS_H
#define GRANARY_RENDEZVOUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The seed of the node called @name (xxh3 of the name). */
uint64_t rendezvous_node_seed(const char *name);

/* The weight of @key (@len bytes) on the node with @seed. */
uint64_t rendezvous_weight(uint64_t seed, const void *key, size_t len);

/*
 * The index of the node with the highest weight for @key among the @n nodes
 * whose @live[i] is true (@live NULL: all of them), or -1 when none is. Equal
 * weights go to the node with the lower seed, then the lower index, so the
 * answer never depends on the order in which nodes were listed except for
 * nodes with the same name.
 */
int rendezvous_owner(const uint64_t *seeds, const bool *live, size_t n, const void *key,
		     size_t len);

#endif
