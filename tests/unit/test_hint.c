/*
 * test_hint.c - hinted orders: the path -> position map over a large order,
 * repeats, paths outside the mount, the trainer's position, which epoch an
 * order is for, and next-use positions given to cached objects.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "granaryd.h"
#include "hint.h"
#include "index.h"
#include "policy.h"

struct fixture {
	struct config cfg;
	struct config_mount cm;
	struct granaryd d;
	struct mount m;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	config_init_defaults(&f->cfg);
	f->cfg.policy.prefetch_window = 0; /* no fetches here: the map alone */
	f->cm.path = "/data";
	f->d.cfg = &f->cfg;
	f->d.policy = policy_create("epoch", &(int){0});
	f->d.idx = index_create();
	assert_non_null(f->d.policy);
	assert_non_null(f->d.idx);
	f->m.d = &f->d;
	f->m.cfg = &f->cm;
	f->m.dataset = policy_dataset(f->d.policy, "/data");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	hint_free(&f->m);
	index_destroy(f->d.idx);
	policy_destroy(f->d.policy);
	free(f);
	return 0;
}

static char *path_of(unsigned i)
{
	char buf[64];

	snprintf(buf, sizeof(buf), "/data/d%02u/sample-%07u.jpg", i % 97, i);
	return strdup(buf);
}

/* Send @n paths in messages of @batch, as the server does. */
static void send_order(struct fixture *f, char **paths, size_t n, size_t batch)
{
	size_t i;

	for (i = 0; i < n; i += batch) {
		size_t k = n - i < batch ? n - i : batch;

		hint_add(&f->d, &f->m, i == 0, i + k == n, (const char *const *)paths + i, k);
	}
}

static void test_large_order(void **state)
{
	struct fixture *f = *state;
	const unsigned n = 200000;
	char **paths = calloc(n, sizeof(*paths));
	char buf[128];
	uint64_t pos;
	unsigned i;

	assert_non_null(paths);
	for (i = 0; i < n; i++)
		paths[i] = path_of((i * 7919u) % n); /* a permutation: 7919 is prime */
	send_order(f, paths, n, 1000);
	assert_int_equal(hint_count(&f->m), n);
	for (i = 0; i < n; i += 997) {
		assert_true(hint_position(&f->m, paths[i], &pos));
		assert_int_equal(pos, i);
		assert_int_equal(hint_path_at(&f->m, i, buf, sizeof(buf)), 0);
		assert_string_equal(buf, paths[i]);
	}
	assert_true(hint_position(&f->m, paths[n - 1], &pos));
	assert_int_equal(pos, n - 1);
	assert_false(hint_position(&f->m, "/data/d00/absent.jpg", &pos));
	assert_false(hint_position(&f->m, "/elsewhere/d00/sample-0000000.jpg", &pos));
	assert_int_equal(hint_path_at(&f->m, n, buf, sizeof(buf)), -ERANGE);
	assert_int_equal(hint_path_at(&f->m, 0, buf, 8), -ENAMETOOLONG);

	/* a new order replaces it entirely */
	send_order(f, paths + 10, 5, 5);
	assert_int_equal(hint_count(&f->m), 5);
	assert_false(hint_position(&f->m, paths[0], &pos));
	assert_true(hint_position(&f->m, paths[12], &pos));
	assert_int_equal(pos, 2);
	for (i = 0; i < n; i++)
		free(paths[i]);
	free(paths);
}

static void test_repeats_and_foreign_paths(void **state)
{
	struct fixture *f = *state;
	const char *order[] = {"/data/a", "/data/b", "/other/x", "/data/a", "/datax/y", "/data/c"};
	char buf[64];
	uint64_t pos;

	hint_add(&f->d, &f->m, true, true, order, 6);
	/* paths outside the mount take no position; a repeat takes one */
	assert_int_equal(hint_count(&f->m), 4);
	assert_true(hint_position(&f->m, "/data/a", &pos));
	assert_int_equal(pos, 0); /* the first occurrence */
	assert_int_equal(hint_path_at(&f->m, 2, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/data/a");
	assert_true(hint_position(&f->m, "/data/c", &pos));
	assert_int_equal(pos, 3);
	assert_false(hint_position(&f->m, "/datax/y", &pos));
}

static void test_position_and_phases(void **state)
{
	struct fixture *f = *state;
	const char *order[] = {"/data/p0", "/data/p1", "/data/p2", "/data/p3", "/data/p4"};
	uint64_t next;

	assert_int_equal(hint_phase(&f->d, &f->m, &next), HINT_NONE);
	/* before any read of epoch 1: the order is epoch 1's */
	hint_add(&f->d, &f->m, true, true, order, 5);
	assert_int_equal(hint_phase(&f->d, &f->m, &next), HINT_CURRENT);
	assert_int_equal(next, 0);
	hint_seen(&f->d, &f->m, "/data/p2");
	hint_seen(&f->d, &f->m, "/data/p0"); /* behind the position: no move back */
	hint_seen(&f->d, &f->m, "/data/unknown");
	assert_int_equal(hint_phase(&f->d, &f->m, &next), HINT_CURRENT);
	assert_int_equal(next, 3);

	/* epoch 1 had reads: a new order is for epoch 2 */
	policy_miss(f->d.policy, f->m.dataset);
	hint_add(&f->d, &f->m, true, true, order, 5);
	assert_int_equal(hint_phase(&f->d, &f->m, &next), HINT_UPCOMING);
	hint_seen(&f->d, &f->m, "/data/p4"); /* a read of epoch 1 */
	policy_epoch_advance(f->d.policy, f->m.dataset);
	assert_int_equal(hint_phase(&f->d, &f->m, &next), HINT_CURRENT);
	assert_int_equal(next, 0);
	hint_seen(&f->d, &f->m, "/data/p1");
	hint_phase(&f->d, &f->m, &next);
	assert_int_equal(next, 2);

	/* its epoch is over: stale, and reads no longer move it */
	policy_epoch_advance(f->d.policy, f->m.dataset);
	assert_int_equal(hint_phase(&f->d, &f->m, &next), HINT_STALE);
	hint_seen(&f->d, &f->m, "/data/p4");
	assert_int_equal(next, 0);
}

static struct object *cached(struct fixture *f, const char *path, bool read)
{
	struct object *o = index_add(f->d.idx, path, &f->m);

	assert_non_null(o);
	o->state = OBJ_CACHED;
	o->pe.size = 100;
	o->pe.dataset = f->m.dataset;
	if (read)
		policy_insert(f->d.policy, &o->pe);
	else
		policy_insert_unread(f->d.policy, &o->pe);
	o->in_policy = true;
	return o;
}

static void test_next_use(void **state)
{
	struct fixture *f = *state;
	const char *order[] = {"/data/n0", "/data/n1", "/data/n2", "/data/n3"};
	struct object *early, *late;

	early = cached(f, "/data/n2", true);
	hint_add(&f->d, &f->m, true, true, order, 4);
	assert_int_equal(early->pe.next_use, 2);
	late = cached(f, "/data/n1", true);
	assert_true(late->pe.next_use == POLICY_NO_USE);
	hint_apply(&f->d, late);
	assert_int_equal(late->pe.next_use, 1);
	late = cached(f, "/data/none", true);
	hint_apply(&f->d, late);
	assert_true(late->pe.next_use == POLICY_NO_USE);
}

static void test_root_mount(void **state)
{
	struct fixture *f = *state;
	const char *order[] = {"/x/1", "/y/2"};
	char buf[32];
	uint64_t pos;

	f->cm.path = "/";
	hint_add(&f->d, &f->m, true, true, order, 2);
	assert_true(hint_position(&f->m, "/y/2", &pos));
	assert_int_equal(pos, 1);
	assert_int_equal(hint_path_at(&f->m, 0, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/x/1");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_large_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_repeats_and_foreign_paths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_position_and_phases, setup, teardown),
		cmocka_unit_test_setup_teardown(test_next_use, setup, teardown),
		cmocka_unit_test_setup_teardown(test_root_mount, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
