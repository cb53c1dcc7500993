/*
 * test_sim.c - the trace simulator on shuffled epochs: the epoch policy
 * reaches the bound min(1,f), LRU stays far below it, Belady equals it; and
 * text traces parse as documented.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sim.h"

enum { OBJECTS = 2000, EPOCHS = 5 };

static double steady(const struct sim_trace *t, const char *policy, bool hint, double f,
		     bool explicit_epochs)
{
	struct sim_options opt = {
		.policy = policy,
		.capacity = (uint64_t)(f * (double)t->total_bytes),
		.hint = hint,
		.explicit_epochs = explicit_epochs,
	};
	struct sim_result res;
	double ratio;

	assert_int_equal(sim_run(t, &opt, &res), 0);
	assert_int_equal(res.epochs, t->epochs);
	/* every object is read once per epoch; nothing hits in the first */
	for (uint32_t e = 0; e < res.epochs; e++)
		assert_int_equal(res.reads[e], OBJECTS);
	assert_int_equal(res.hits[0], 0);
	ratio = sim_result_ratio(&res, 2, res.epochs);
	sim_result_fini(&res);
	return ratio;
}

static void test_sim_half(void **state)
{
	struct sim_trace t;

	(void)state;
	assert_int_equal(sim_trace_synthetic(&t, OBJECTS, EPOCHS, 7, 1), 0);
	assert_int_equal(t.epochs, EPOCHS);
	assert_int_equal(t.total_bytes, OBJECTS);
	assert_true(steady(&t, "epoch", false, 0.5, true) >= 0.98 * 0.5);
	assert_true(steady(&t, "epoch", true, 0.5, true) >= 0.98 * 0.5);
	assert_true(steady(&t, "epoch", false, 0.5, false) >= 0.98 * 0.5);
	assert_true(steady(&t, "lru", false, 0.5, true) < 0.3);
	double b = steady(&t, "belady", false, 0.5, true);
	assert_true(b >= 0.49 && b <= 0.51);
	sim_trace_fini(&t);
}

/* The epoch policy stays within 2% of the bound over the whole range. */
static void test_sim_bound(void **state)
{
	static const double fs[] = {0.1, 0.25, 0.5, 0.75, 0.9};
	struct sim_trace t;

	(void)state;
	assert_int_equal(sim_trace_synthetic(&t, OBJECTS, EPOCHS, 11, 4096), 0);
	for (size_t i = 0; i < sizeof(fs) / sizeof(fs[0]); i++) {
		double e = steady(&t, "epoch", false, fs[i], true);
		double l = steady(&t, "lru", false, fs[i], true);

		assert_true(e >= 0.98 * fs[i]);
		assert_true(e <= fs[i] + 0.001);
		assert_true(l < e);
	}
	assert_true(steady(&t, "epoch", false, 1.5, true) == 1.0);
	sim_trace_fini(&t);
}

static void test_sim_deterministic(void **state)
{
	struct sim_trace a, b, c;

	(void)state;
	assert_int_equal(sim_trace_synthetic(&a, 100, 3, 5, 1), 0);
	assert_int_equal(sim_trace_synthetic(&b, 100, 3, 5, 1), 0);
	assert_int_equal(sim_trace_synthetic(&c, 100, 3, 6, 1), 0);
	assert_int_equal(a.nops, 302);
	assert_int_equal(a.ops[100].kind, SIM_EPOCH);
	assert_memory_equal(a.ops, b.ops, a.nops * sizeof(*a.ops));
	assert_memory_not_equal(a.ops, c.ops, a.nops * sizeof(*a.ops));
	sim_trace_fini(&a);
	sim_trace_fini(&b);
	sim_trace_fini(&c);
	assert_int_equal(sim_trace_synthetic(&a, 0, 3, 5, 1), -EINVAL);
}

static FILE *text(const char *s)
{
	FILE *f = fmemopen((void *)s, strlen(s), "r");

	assert_non_null(f);
	return f;
}

static void test_sim_parse(void **state)
{
	const char *src = "# comment\n"
			  "imagenet /a 10\n"
			  "/b\n"
			  "\n"
			  "imagenet /a 999\n"
			  "#epoch\n"
			  "coco /c 5\n"
			  "#epoch coco\n"
			  "/b\n";
	struct sim_options opt = {.policy = "lru", .capacity = 1000, .explicit_epochs = true};
	struct sim_result res;
	struct sim_trace t;
	char err[128] = "";
	FILE *f = text(src);

	(void)state;
	assert_int_equal(sim_trace_parse(&t, f, 7, err, sizeof(err)), 0);
	fclose(f);
	assert_int_equal(t.nobj, 3);
	assert_int_equal(t.nds, 3);
	assert_int_equal(t.epochs, 3);
	assert_int_equal(t.nops, 7);
	assert_string_equal(t.ds_names[t.obj[0].ds], "imagenet");
	assert_int_equal(t.obj[0].size, 10); /* the first line wins */
	assert_string_equal(t.ds_names[t.obj[1].ds], "default");
	assert_int_equal(t.obj[1].size, 7);
	assert_string_equal(t.ds_names[t.obj[2].ds], "coco");
	assert_int_equal(t.total_bytes, 22);
	assert_int_equal(t.ops[5].kind, SIM_EPOCH);
	assert_int_equal(t.ops[5].arg, t.obj[2].ds);

	/* /a hits in epoch 1, /b in epoch 3 */
	assert_int_equal(sim_run(&t, &opt, &res), 0);
	assert_int_equal(res.reads[0], 3);
	assert_int_equal(res.hits[0], 1);
	assert_int_equal(res.hits[1], 0);
	assert_int_equal(res.hits[2], 1);
	assert_true(sim_result_ratio(&res, 1, 3) > 0.39 && sim_result_ratio(&res, 1, 3) < 0.41);
	sim_result_fini(&res);
	opt.policy = "fifo";
	assert_int_equal(sim_run(&t, &opt, &res), -EINVAL);
	sim_trace_fini(&t);

	f = text("a b\n");
	assert_int_equal(sim_trace_parse(&t, f, 1, err, sizeof(err)), -EINVAL);
	fclose(f);
	assert_string_equal(err,
			    "line 1: expected \"dataset path size\" or \"path\", got 2 fields");
	f = text("/x\nd /y 0\n");
	assert_int_equal(sim_trace_parse(&t, f, 1, err, sizeof(err)), -EINVAL);
	fclose(f);
	assert_string_equal(err, "line 2: size \"0\" is not a positive integer");
}

/* Many distinct paths: the path index grows and still finds every object. */
static void test_sim_parse_many(void **state)
{
	enum { N = 20000 };
	size_t len = 0;
	char *src = malloc(N * 2 * 24);
	struct sim_trace t;
	char err[128];
	FILE *f;

	(void)state;
	assert_non_null(src);
	for (int pass = 0; pass < 2; pass++)
		for (int i = 0; i < N; i++)
			len += (size_t)sprintf(src + len, "/data/%d\n", i);
	f = fmemopen(src, len, "r");
	assert_non_null(f);
	assert_int_equal(sim_trace_parse(&t, f, 1, err, sizeof(err)), 0);
	fclose(f);
	assert_int_equal(t.nobj, N);
	assert_int_equal(t.nops, 2 * N);
	for (int i = 0; i < N; i++)
		assert_int_equal(t.ops[N + i].arg, t.ops[i].arg);
	sim_trace_fini(&t);
	free(src);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sim_half),	  cmocka_unit_test(test_sim_bound),
		cmocka_unit_test(test_sim_deterministic), cmocka_unit_test(test_sim_parse),
		cmocka_unit_test(test_sim_parse_many),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
