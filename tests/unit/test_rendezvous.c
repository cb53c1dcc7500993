/*
 * test_rendezvous.c - placement over the rack: one owner per key, the same on
 * every node, an even share per node, and a node leaving or joining moves only
 * the keys it owns.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "rendezvous.h"

#define NKEYS 30000

static const char *const names[] = {"node1", "node2", "node3", "node4", "node5"};

static void seeds_of(uint64_t *seeds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		seeds[i] = rendezvous_node_seed(names[i]);
}

static int owner_of(const uint64_t *seeds, const bool *live, size_t n, unsigned k)
{
	char key[64];
	int len = snprintf(key, sizeof(key), "/data/web/d%02u/f%05u.bin", k % 10, k);

	return rendezvous_owner(seeds, live, n, key, (size_t)len);
}

static void test_seed_and_weight_are_stable(void **state)
{
	(void)state;
	assert_true(rendezvous_node_seed("node1") == rendezvous_node_seed("node1"));
	assert_true(rendezvous_node_seed("node1") != rendezvous_node_seed("node2"));
	assert_true(rendezvous_weight(1, "abc", 3) == rendezvous_weight(1, "abc", 3));
	assert_true(rendezvous_weight(1, "abc", 3) != rendezvous_weight(2, "abc", 3));
	assert_true(rendezvous_weight(1, "abc", 3) != rendezvous_weight(1, "abd", 3));
}

static void test_owner_is_the_heaviest(void **state)
{
	uint64_t seeds[3];
	const char *key = "/data/web/x";

	(void)state;
	seeds_of(seeds, 3);
	for (unsigned k = 0; k < 1000; k++) {
		int o = owner_of(seeds, NULL, 3, k);
		char buf[64];
		int len = snprintf(buf, sizeof(buf), "/data/web/d%02u/f%05u.bin", k % 10, k);

		assert_in_range(o, 0, 2);
		for (int i = 0; i < 3; i++)
			assert_true(rendezvous_weight(seeds[o], buf, (size_t)len) >=
				    rendezvous_weight(seeds[i], buf, (size_t)len));
	}
	/* a single live node owns everything; no live node owns nothing */
	{
		bool live[3] = {false, true, false};
		bool none[3] = {false, false, false};

		assert_int_equal(rendezvous_owner(seeds, live, 3, key, strlen(key)), 1);
		assert_int_equal(rendezvous_owner(seeds, none, 3, key, strlen(key)), -1);
		assert_int_equal(rendezvous_owner(seeds, NULL, 0, key, strlen(key)), -1);
	}
}

/* Each node computes the owner from its own list: order must not matter. */
static void test_order_does_not_matter(void **state)
{
	uint64_t a[3], b[3];

	(void)state;
	seeds_of(a, 3);
	b[0] = a[2];
	b[1] = a[0];
	b[2] = a[1];
	for (unsigned k = 0; k < 5000; k++) {
		int oa = owner_of(a, NULL, 3, k), ob = owner_of(b, NULL, 3, k);

		assert_true(a[oa] == b[ob]);
	}
}

static void test_even_share(void **state)
{
	uint64_t seeds[3];
	unsigned count[3] = {0};

	(void)state;
	seeds_of(seeds, 3);
	for (unsigned k = 0; k < NKEYS; k++)
		count[owner_of(seeds, NULL, 3, k)]++;
	for (int i = 0; i < 3; i++) {
		/* 10000 expected; 5 standard deviations is about 400 */
		assert_in_range(count[i], NKEYS / 3 - 400, NKEYS / 3 + 400);
	}
}

/* A node that leaves moves only its own keys, spread over the others; back, they return. */
static void test_leave_and_rejoin_move_only_its_keys(void **state)
{
	uint64_t seeds[5];
	bool live[5] = {true, true, true, true, true};
	static int before[NKEYS], during[NKEYS];
	unsigned moved_to[5] = {0};

	(void)state;
	seeds_of(seeds, 5);
	for (unsigned k = 0; k < NKEYS; k++)
		before[k] = owner_of(seeds, live, 5, k);
	live[2] = false;
	for (unsigned k = 0; k < NKEYS; k++) {
		during[k] = owner_of(seeds, live, 5, k);
		assert_int_not_equal(during[k], 2);
		if (before[k] != 2)
			assert_int_equal(during[k], before[k]);
		else
			moved_to[during[k]]++;
	}
	for (int i = 0; i < 5; i++) {
		if (i == 2)
			continue;
		/* the leaver's ~6000 keys spread evenly: ~1500 each */
		assert_in_range(moved_to[i], 1100, 1900);
	}
	live[2] = true;
	for (unsigned k = 0; k < NKEYS; k++)
		assert_int_equal(owner_of(seeds, live, 5, k), before[k]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seed_and_weight_are_stable),
		cmocka_unit_test(test_owner_is_the_heaviest),
		cmocka_unit_test(test_order_does_not_matter),
		cmocka_unit_test(test_even_share),
		cmocka_unit_test(test_leave_and_rejoin_move_only_its_keys),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
