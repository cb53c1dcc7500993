/*
 * rendezvous.c - highest random weight placement (see rendezvous.h).
 *
 * The weight is xxh3-64 of the key seeded with the node's seed: independent
 * across nodes for one key and uniform across keys for one node, which is all
 * rendezvous hashing asks of it.
 */
#include "rendezvous.h"

#include <string.h>
#include <xxhash.h>

/* Keeps a node's seed apart from a plain xxh3 of some key with the same bytes. */
#define RENDEZVOUS_NAME_SEED 0x6772616e61727952ULL /* "granaryR" */

uint64_t rendezvous_node_seed(const char *name)
{
	return XXH3_64bits_withSeed(name, strlen(name), RENDEZVOUS_NAME_SEED);
}

uint64_t rendezvous_weight(uint64_t seed, const void *key, size_t len)
{
	return XXH3_64bits_withSeed(key, len, seed);
}

int rendezvous_owner(const uint64_t *seeds, const bool *live, size_t n, const void *key, size_t len)
{
	uint64_t best_w = 0;
	int best = -1;

	for (size_t i = 0; i < n; i++) {
		uint64_t w;

		if (live && !live[i])
			continue;
		w = rendezvous_weight(seeds[i], key, len);
		if (best < 0 || w > best_w || (w == best_w && seeds[i] < seeds[best])) {
			best = (int)i;
			best_w = w;
		}
	}
	return best;
}
