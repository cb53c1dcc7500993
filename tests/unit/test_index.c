/* test_index.c - the in-memory index: add, get, delete, growth, iteration. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "index.h"

static void test_basic(void **state)
{
	struct index *ix = index_create();
	struct object *a, *b;

	(void)state;
	assert_non_null(ix);
	assert_null(index_get(ix, "/a"));
	a = index_add(ix, "/a", NULL);
	b = index_add(ix, "/b", NULL);
	assert_non_null(a);
	assert_non_null(b);
	assert_ptr_equal(index_get(ix, "/a"), a);
	assert_ptr_equal(index_get(ix, "/b"), b);
	assert_null(index_get(ix, "/c"));
	assert_int_equal(index_count(ix), 2);
	assert_true(a->pe.next_use == POLICY_NO_USE);
	index_del(ix, a);
	assert_null(index_get(ix, "/a"));
	assert_ptr_equal(index_get(ix, "/b"), b);
	assert_int_equal(index_count(ix), 1);
	index_destroy(ix);
}

struct counter {
	size_t seen;
	size_t deleted;
	struct index *ix;
};

static void count_and_delete_odd(struct object *o, void *arg)
{
	struct counter *c = arg;
	unsigned n;

	c->seen++;
	sscanf(o->path, "/f%u", &n);
	if (n % 2) {
		index_del(c->ix, o);
		c->deleted++;
	}
}

static void test_growth_and_foreach(void **state)
{
	struct index *ix = index_create();
	struct counter c = {.ix = ix};
	char path[32];
	unsigned i;

	(void)state;
	for (i = 0; i < 100000; i++) {
		snprintf(path, sizeof(path), "/f%u", i);
		assert_non_null(index_add(ix, path, NULL));
	}
	assert_int_equal(index_count(ix), 100000);
	for (i = 0; i < 100000; i += 997) {
		snprintf(path, sizeof(path), "/f%u", i);
		assert_non_null(index_get(ix, path));
		assert_string_equal(index_get(ix, path)->path, path);
	}
	index_foreach(ix, count_and_delete_odd, &c);
	assert_int_equal(c.seen, 100000);
	assert_int_equal(c.deleted, 50000);
	assert_int_equal(index_count(ix), 50000);
	assert_null(index_get(ix, "/f1"));
	assert_non_null(index_get(ix, "/f2"));
	index_destroy(ix);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic),
		cmocka_unit_test(test_growth_and_foreach),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
