/*
 * test_policy.c - eviction policies on small exact traces: victim order,
 * pins, epoch categories, epoch advance, admission, hinted order, counters.
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

#include "policy.h"

#define NENT 16

struct fixture {
	struct policy *p;
	struct policy_entry e[NENT];
};

static struct policy *create(const char *name)
{
	int err = 1;
	struct policy *p = policy_create(name, &err);

	assert_non_null(p);
	assert_int_equal(err, 0);
	return p;
}

/* A read that misses and keeps the object, as the daemon does it. */
static void miss_insert(struct policy *p, struct policy_entry *e, uint32_t ds, uint64_t size)
{
	memset(e, 0, sizeof(*e));
	e->dataset = ds;
	e->size = size;
	policy_miss(p, ds);
	policy_insert(p, e);
}

static void test_create(void **state)
{
	struct policy *p;
	int err = 0;

	(void)state;
	assert_null(policy_create("fifo", &err));
	assert_int_equal(err, -EINVAL);
	p = create(NULL);
	assert_string_equal(policy_name(p), "epoch");
	policy_destroy(p);
	p = create("lru");
	assert_string_equal(policy_name(p), "lru");
	policy_destroy(p);
	policy_destroy(NULL);
}

static void test_datasets(void **state)
{
	struct policy *p = create("epoch");
	struct policy_dataset_stats st;
	char name[16] = "imagenet";
	uint32_t a, b;

	(void)state;
	a = policy_dataset(p, name);
	strcpy(name, "coco");
	b = policy_dataset(p, name);
	assert_int_not_equal(a, b);
	assert_int_equal(policy_dataset(p, "imagenet"), a);
	assert_int_equal(policy_dataset(p, "coco"), b);
	assert_string_equal(policy_dataset_name(p, a), "imagenet");
	assert_null(policy_dataset_name(p, 99));
	assert_int_equal(policy_dataset_count(p), 2);
	assert_false(policy_dataset_active(p, a));
	policy_dataset_stats(p, a, &st);
	assert_int_equal(st.epoch, 1);
	assert_int_equal(st.entries, 0);
	assert_false(st.hinted);

	/* enough datasets to grow the array several times; ids stay stable */
	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof(name), "ds%d", i);
		assert_int_equal(policy_dataset(p, name), (uint32_t)(i + 2));
	}
	assert_string_equal(policy_dataset_name(p, b), "coco");
	assert_string_equal(policy_dataset_name(p, 50), "ds48");
	policy_destroy(p);
}

static void test_lru_victim_order(void **state)
{
	struct fixture f = {.p = create("lru")};
	uint32_t ds = policy_dataset(f.p, "d");

	(void)state;
	for (int i = 0; i < 4; i++)
		miss_insert(f.p, &f.e[i], ds, 1);
	policy_access(f.p, &f.e[0]);
	policy_access(f.p, &f.e[2]);
	/* order of last reads: 1, 3, 0, 2 */
	assert_ptr_equal(policy_victim(f.p), &f.e[1]);
	assert_ptr_equal(policy_victim(f.p), &f.e[3]);
	policy_remove(f.p, &f.e[0]);
	assert_ptr_equal(policy_victim(f.p), &f.e[2]);
	assert_null(policy_victim(f.p));
	assert_true(policy_admit(f.p, ds, 1, 0));
	assert_false(policy_admit(f.p, ds, 1, 1));
	policy_destroy(f.p);
}

static void test_lru_pin(void **state)
{
	struct fixture f = {.p = create("lru")};
	uint32_t ds = policy_dataset(f.p, "d");

	(void)state;
	for (int i = 0; i < 3; i++)
		miss_insert(f.p, &f.e[i], ds, 10);
	policy_pin(f.p, &f.e[0], true);
	assert_true(f.e[0].pinned);
	/* pinned bytes cannot be freed */
	assert_true(policy_admit(f.p, ds, 10, 20));
	assert_false(policy_admit(f.p, ds, 10, 21));
	policy_access(f.p, &f.e[0]);
	assert_ptr_equal(policy_victim(f.p), &f.e[1]);
	assert_ptr_equal(policy_victim(f.p), &f.e[2]);
	assert_null(policy_victim(f.p));
	/* unpinned, it comes back as the most recently used */
	miss_insert(f.p, &f.e[3], ds, 10);
	policy_pin(f.p, &f.e[0], false);
	assert_ptr_equal(policy_victim(f.p), &f.e[3]);
	assert_ptr_equal(policy_victim(f.p), &f.e[0]);
	assert_null(policy_victim(f.p));

	/* pinned before it is cached: never a victim either */
	memset(&f.e[4], 0, sizeof(f.e[4]));
	f.e[4].dataset = ds;
	f.e[4].size = 1;
	policy_pin(f.p, &f.e[4], true);
	policy_insert(f.p, &f.e[4]);
	assert_null(policy_victim(f.p));
	policy_remove(f.p, &f.e[4]);
	policy_destroy(f.p);
}

static void test_epoch_pin(void **state)
{
	struct fixture f = {.p = create("epoch")};
	uint32_t ds = policy_dataset(f.p, "d");
	struct policy_dataset_stats st;

	(void)state;
	for (int i = 0; i < 3; i++)
		miss_insert(f.p, &f.e[i], ds, 10);
	policy_pin(f.p, &f.e[0], true);
	policy_pin(f.p, &f.e[2], true);
	assert_false(policy_admit(f.p, ds, 10, 11));
	assert_ptr_equal(policy_victim(f.p), &f.e[1]);
	assert_null(policy_victim(f.p));
	policy_dataset_stats(f.p, ds, &st);
	assert_int_equal(st.entries, 2);
	assert_int_equal(st.bytes, 20);
	/* a pinned entry read twice still advances the epoch */
	policy_access(f.p, &f.e[0]);
	policy_dataset_stats(f.p, ds, &st);
	assert_int_equal(st.epoch, 2);
	/* unpinned in epoch 2: e0 was read in it, e2 was not */
	policy_pin(f.p, &f.e[0], false);
	policy_pin(f.p, &f.e[2], false);
	assert_ptr_equal(policy_victim(f.p), &f.e[0]);
	assert_null(policy_victim(f.p));
	policy_remove(f.p, &f.e[2]);
	policy_dataset_stats(f.p, ds, &st);
	assert_int_equal(st.entries, 0);
	assert_int_equal(st.bytes, 0);
	policy_destroy(f.p);
}

/*
 * Dataset a goes idle; dataset b is read. Victims: a's entries (oldest
 * first), then b's entries already read in b's epoch, then nothing.
 */
static void test_epoch_categories(void **state)
{
	struct fixture f = {.p = create("epoch")};
	uint32_t a = policy_dataset(f.p, "a");
	uint32_t b = policy_dataset(f.p, "b");

	(void)state;
	policy_set_idle_window(f.p, 4);
	miss_insert(f.p, &f.e[0], a, 1);
	miss_insert(f.p, &f.e[1], a, 1);
	policy_access(f.p, &f.e[0]); /* epoch 2 of a: e0 read, e1 not yet */
	for (int i = 2; i < 6; i++)
		miss_insert(f.p, &f.e[i], b, 1);
	assert_int_equal(policy_epoch_advance(f.p, b), 2);
	policy_access(f.p, &f.e[4]);
	policy_access(f.p, &f.e[3]);
	/* b is read now; a was last read 6 reads ago */
	assert_true(policy_dataset_active(f.p, b));
	assert_false(policy_dataset_active(f.p, a));
	assert_true(policy_admit(f.p, b, 1, 4));
	assert_false(policy_admit(f.p, b, 1, 5));

	assert_ptr_equal(policy_victim(f.p), &f.e[1]); /* (1) a, not read in its epoch */
	assert_ptr_equal(policy_victim(f.p), &f.e[0]); /* (1) a, read in its epoch */
	assert_ptr_equal(policy_victim(f.p), &f.e[4]); /* (2) b, least recently read */
	assert_ptr_equal(policy_victim(f.p), &f.e[3]);
	assert_null(policy_victim(f.p)); /* (3) e2, e5: still to be read in epoch 2 */
	assert_false(policy_admit(f.p, b, 1, 1));

	/* b goes idle too: its unread entries may go */
	for (int i = 0; i < 4; i++)
		policy_miss(f.p, a);
	assert_false(policy_dataset_active(f.p, b));
	assert_true(policy_admit(f.p, a, 1, 2));
	assert_ptr_equal(policy_victim(f.p), &f.e[2]);
	assert_ptr_equal(policy_victim(f.p), &f.e[5]);
	assert_null(policy_victim(f.p));
	policy_destroy(f.p);
}

/* With the automatic idle window, one dataset being read is always active. */
static void test_epoch_auto_window(void **state)
{
	struct fixture f = {.p = create("epoch")};
	uint32_t a = policy_dataset(f.p, "a");
	uint32_t b = policy_dataset(f.p, "b");

	(void)state;
	miss_insert(f.p, &f.e[0], a, 1);
	for (int i = 0; i < POLICY_IDLE_MIN - 1; i++)
		policy_miss(f.p, b);
	assert_true(policy_dataset_active(f.p, a));
	policy_miss(f.p, b);
	assert_false(policy_dataset_active(f.p, a));
	assert_true(policy_dataset_active(f.p, b));
	assert_ptr_equal(policy_victim(f.p), &f.e[0]);
	policy_destroy(f.p);
}

static void test_epoch_advance_auto(void **state)
{
	struct fixture f = {.p = create("epoch")};
	uint32_t ds = policy_dataset(f.p, "d");
	struct policy_dataset_stats st;

	(void)state;
	for (int i = 0; i < 3; i++)
		miss_insert(f.p, &f.e[i], ds, 1);
	policy_miss(f.p, ds); /* a fourth object, not kept */
	policy_dataset_stats(f.p, ds, &st);
	assert_int_equal(st.epoch, 1);
	assert_int_equal(st.misses, 4);
	assert_int_equal(st.hits, 0);
	/* all three were read in epoch 1: any of them may go */
	assert_true(policy_admit(f.p, ds, 1, 3));

	/* reading e1 again starts epoch 2 */
	policy_access(f.p, &f.e[1]);
	assert_int_equal(f.e[1].last_epoch, 2);
	assert_int_equal(f.e[0].last_epoch, 1);
	policy_dataset_stats(f.p, ds, &st);
	assert_int_equal(st.epoch, 2);
	assert_int_equal(st.hits, 1);
	assert_int_equal(st.misses, 0);
	assert_int_equal(st.prev_hits, 0);
	assert_int_equal(st.prev_misses, 4);
	/* only e1 has been read in epoch 2 */
	assert_true(policy_admit(f.p, ds, 1, 1));
	assert_false(policy_admit(f.p, ds, 1, 2));
	policy_access(f.p, &f.e[0]);
	policy_access(f.p, &f.e[2]);
	policy_dataset_stats(f.p, ds, &st);
	assert_int_equal(st.epoch, 2);
	assert_int_equal(st.hits, 3);

	/* epoch 3 begins with e2 */
	policy_access(f.p, &f.e[2]);
	policy_dataset_stats(f.p, ds, &st);
	assert_int_equal(st.epoch, 3);
	assert_int_equal(st.hits, 1);
	assert_int_equal(st.prev_hits, 3);
	assert_int_equal(st.prev_misses, 0);
	assert_int_equal(st.total_hits, 4);
	assert_int_equal(st.total_misses, 4);
	assert_ptr_equal(policy_victim(f.p), &f.e[2]);
	assert_null(policy_victim(f.p));
	policy_destroy(f.p);
}

static void test_epoch_advance_explicit(void **state)
{
	struct fixture f = {.p = create("epoch")};
	uint32_t ds = policy_dataset(f.p, "d");
	struct policy_dataset_stats st;

	(void)state;
	miss_insert(f.p, &f.e[0], ds, 5);
	miss_insert(f.p, &f.e[1], ds, 5);
	policy_access(f.p, &f.e[0]); /* epoch 2 */
	assert_int_equal(policy_epoch_advance(f.p, ds), 3);
	assert_int_equal(policy_epoch_advance(f.p, 77), 0);
	policy_dataset_stats(f.p, ds, &st);
	assert_int_equal(st.epoch, 3);
	assert_int_equal(st.hits, 0);
	assert_int_equal(st.prev_hits, 1);
	assert_int_equal(st.prev_misses, 0);
	/* nothing read in epoch 3 yet: the miss is not kept */
	policy_miss(f.p, ds);
	assert_false(policy_admit(f.p, ds, 5, 5));
	assert_null(policy_victim(f.p));
	/* read e1 in epoch 3: no advance (it was last read in epoch 1) */
	policy_access(f.p, &f.e[1]);
	policy_dataset_stats(f.p, ds, &st);
	assert_int_equal(st.epoch, 3);
	assert_true(policy_admit(f.p, ds, 5, 5));
	assert_ptr_equal(policy_victim(f.p), &f.e[1]);
	assert_false(policy_admit(f.p, ds, 5, 5));
	assert_true(policy_admit(f.p, ds, 5, 0));
	policy_destroy(f.p);
}

static void test_epoch_admit_unread_only(void **state)
{
	struct fixture f = {.p = create("epoch")};
	uint32_t ds = policy_dataset(f.p, "d");

	(void)state;
	for (int i = 0; i < 4; i++)
		miss_insert(f.p, &f.e[i], ds, 100);
	policy_epoch_advance(f.p, ds);
	policy_miss(f.p, ds);
	/* 400 bytes cached, all still to be read in epoch 2 */
	assert_false(policy_admit(f.p, ds, 100, 1));
	assert_null(policy_victim(f.p));
	policy_access(f.p, &f.e[3]);
	policy_access(f.p, &f.e[1]);
	assert_true(policy_admit(f.p, ds, 100, 200));
	assert_false(policy_admit(f.p, ds, 100, 201));
	assert_ptr_equal(policy_victim(f.p), &f.e[3]);
	assert_ptr_equal(policy_victim(f.p), &f.e[1]);
	assert_null(policy_victim(f.p));
	policy_destroy(f.p);
}

/*
 * The order of the coming epoch, sent during this one: entries read this
 * epoch go farthest next use first; those without one (not in the order, or
 * never given a position) before all of them.
 */
static void test_epoch_hint_farthest(void **state)
{
	struct fixture f = {.p = create("epoch")};
	uint32_t ds = policy_dataset(f.p, "d");
	struct policy_dataset_stats st;
	static const uint64_t pos[6] = {5, 1, POLICY_NO_USE, 3, 0, 9};

	(void)state;
	for (int i = 0; i < 6; i++)
		miss_insert(f.p, &f.e[i], ds, 1);
	policy_hint_begin(f.p, ds);
	policy_dataset_stats(f.p, ds, &st);
	assert_true(st.hinted);
	for (int i = 0; i < 5; i++) /* e5 gets no position */
		policy_set_next_use(f.p, &f.e[i], pos[i]);
	policy_set_next_use(f.p, &f.e[3], 7); /* moved later */
	/* a late insert, placed by the caller */
	miss_insert(f.p, &f.e[6], ds, 1);
	policy_set_next_use(f.p, &f.e[6], 4);

	assert_ptr_equal(policy_victim(f.p), &f.e[2]); /* no use, read before e5 */
	assert_ptr_equal(policy_victim(f.p), &f.e[5]); /* no position */
	assert_ptr_equal(policy_victim(f.p), &f.e[3]); /* 7 */
	assert_ptr_equal(policy_victim(f.p), &f.e[0]); /* 5 */
	policy_remove(f.p, &f.e[6]);		       /* 4 */
	assert_ptr_equal(policy_victim(f.p), &f.e[1]); /* 1 */
	assert_ptr_equal(policy_victim(f.p), &f.e[4]); /* 0 */
	assert_null(policy_victim(f.p));
	policy_destroy(f.p);
}

/* The order expires with the epoch it was for; a cleared order right away. */
static void test_epoch_hint_expires(void **state)
{
	struct fixture f = {.p = create("epoch")};
	uint32_t ds = policy_dataset(f.p, "d");
	struct policy_dataset_stats st;

	(void)state;
	for (int i = 0; i < 4; i++)
		miss_insert(f.p, &f.e[i], ds, 1);
	policy_hint_begin(f.p, ds);
	for (int i = 0; i < 4; i++)
		policy_set_next_use(f.p, &f.e[i], (uint64_t)(10 - i));
	/* epoch 2 (the hinted one) reads e3, e0, e1 */
	policy_access(f.p, &f.e[3]);
	policy_access(f.p, &f.e[0]);
	policy_access(f.p, &f.e[1]);
	policy_dataset_stats(f.p, ds, &st);
	assert_int_equal(st.epoch, 2);
	assert_true(st.hinted);
	/* next uses are in epoch 3, not known: least recently read first */
	assert_ptr_equal(policy_victim(f.p), &f.e[3]);

	/* an order for epoch 3, then cleared: back to least recently read */
	policy_hint_begin(f.p, ds);
	policy_set_next_use(f.p, &f.e[0], 1);
	policy_set_next_use(f.p, &f.e[1], 2);
	policy_hint_clear(f.p, ds);
	policy_dataset_stats(f.p, ds, &st);
	assert_false(st.hinted);
	assert_ptr_equal(policy_victim(f.p), &f.e[0]);
	policy_access(f.p, &f.e[2]);

	/* an order given after an explicit advance is for that epoch */
	policy_epoch_advance(f.p, ds);
	policy_hint_begin(f.p, ds);
	policy_set_next_use(f.p, &f.e[1], 0);
	policy_set_next_use(f.p, &f.e[2], 1);
	policy_access(f.p, &f.e[1]);
	policy_access(f.p, &f.e[2]);
	policy_dataset_stats(f.p, ds, &st);
	assert_int_equal(st.epoch, 3);
	assert_true(st.hinted);
	assert_ptr_equal(policy_victim(f.p), &f.e[1]);
	assert_ptr_equal(policy_victim(f.p), &f.e[2]);
	assert_null(policy_victim(f.p));
	policy_destroy(f.p);
}

/* Warmed or restored entries wait for their read; reading them is no repeat. */
static void test_insert_unread(void **state)
{
	struct fixture f = {.p = create("epoch")};
	uint32_t ds = policy_dataset(f.p, "d");
	uint32_t other = policy_dataset(f.p, "other");
	struct policy_dataset_stats st;

	(void)state;
	for (int i = 0; i < 3; i++) {
		f.e[i].dataset = ds;
		f.e[i].size = 10;
		policy_insert_unread(f.p, &f.e[i]);
	}
	policy_dataset_stats(f.p, ds, &st);
	assert_int_equal(st.entries, 3);
	assert_int_equal(st.bytes, 30);
	assert_int_equal(st.hits + st.misses, 0);
	/* the warmed dataset counts as active: nothing may go */
	assert_true(policy_dataset_active(f.p, ds));
	assert_false(policy_admit(f.p, other, 10, 1));
	assert_null(policy_victim(f.p));
	/* the first read of each is a hit in epoch 1, then it may go */
	policy_access(f.p, &f.e[1]);
	policy_access(f.p, &f.e[0]);
	policy_dataset_stats(f.p, ds, &st);
	assert_int_equal(st.epoch, 1);
	assert_int_equal(st.hits, 2);
	assert_ptr_equal(policy_victim(f.p), &f.e[1]);
	assert_ptr_equal(policy_victim(f.p), &f.e[0]);
	assert_null(policy_victim(f.p));
	/* idle long enough, the unread one goes too */
	policy_set_idle_window(f.p, 2);
	policy_miss(f.p, other);
	policy_miss(f.p, other);
	assert_ptr_equal(policy_victim(f.p), &f.e[2]);
	policy_destroy(f.p);

	/* lru: an unread entry is simply the most recent */
	f.p = create("lru");
	ds = policy_dataset(f.p, "d");
	miss_insert(f.p, &f.e[0], ds, 1);
	memset(&f.e[1], 0, sizeof(f.e[1]));
	f.e[1].dataset = ds;
	f.e[1].size = 1;
	policy_insert_unread(f.p, &f.e[1]);
	assert_ptr_equal(policy_victim(f.p), &f.e[0]);
	assert_ptr_equal(policy_victim(f.p), &f.e[1]);
	policy_destroy(f.p);
}

static void test_stats_counters(void **state)
{
	struct fixture f = {.p = create("lru")};
	uint32_t a = policy_dataset(f.p, "a");
	uint32_t b = policy_dataset(f.p, "b");
	struct policy_dataset_stats st;

	(void)state;
	miss_insert(f.p, &f.e[0], a, 100);
	miss_insert(f.p, &f.e[1], a, 50);
	miss_insert(f.p, &f.e[2], b, 7);
	policy_miss(f.p, b);
	policy_access(f.p, &f.e[2]); /* b: epoch 2 */
	policy_access(f.p, &f.e[0]); /* a: epoch 2 */
	policy_access(f.p, &f.e[1]);

	policy_dataset_stats(f.p, a, &st);
	assert_int_equal(st.epoch, 2);
	assert_int_equal(st.hits, 2);
	assert_int_equal(st.misses, 0);
	assert_int_equal(st.prev_misses, 2);
	assert_int_equal(st.total_hits, 2);
	assert_int_equal(st.total_misses, 2);
	assert_int_equal(st.entries, 2);
	assert_int_equal(st.bytes, 150);
	policy_dataset_stats(f.p, b, &st);
	assert_int_equal(st.epoch, 2);
	assert_int_equal(st.hits, 1);
	assert_int_equal(st.prev_misses, 2);
	assert_int_equal(st.entries, 1);
	assert_int_equal(st.bytes, 7);

	assert_ptr_equal(policy_victim(f.p), &f.e[2]);
	policy_remove(f.p, &f.e[1]);
	policy_remove(f.p, &f.e[1]); /* twice: no effect */
	policy_dataset_stats(f.p, a, &st);
	assert_int_equal(st.entries, 1);
	assert_int_equal(st.bytes, 100);
	policy_dataset_stats(f.p, b, &st);
	assert_int_equal(st.entries, 0);
	assert_int_equal(st.bytes, 0);
	policy_dataset_stats(f.p, 42, &st);
	assert_int_equal(st.epoch, 0);
	policy_destroy(f.p);
}

/*
 * Shuffled epochs over many entries, the cache holding half: the epoch policy
 * hits exactly the cached half once it is warm, and its lists stay consistent
 * (every object is either cached or not, victims are real entries).
 */
static void test_epoch_many(void **state)
{
	enum { N = 200000, CAP = N / 2, EPOCHS = 3 };
	struct policy *p = create("epoch");
	uint32_t ds = policy_dataset(p, "big");
	struct policy_entry *e = calloc(N, sizeof(*e));
	uint32_t *perm = malloc(N * sizeof(*perm));
	uint64_t rng = 42, used = 0;
	struct policy_dataset_stats st;

	(void)state;
	assert_non_null(e);
	assert_non_null(perm);
	for (uint32_t i = 0; i < N; i++)
		perm[i] = i;
	for (int ep = 0; ep < EPOCHS; ep++) {
		for (uint32_t i = N - 1; i > 0; i--) {
			uint32_t j;

			rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
			j = (uint32_t)((rng >> 33) % (i + 1));
			uint32_t t = perm[i];
			perm[i] = perm[j];
			perm[j] = t;
		}
		/* as a sampler says it: auto-advance would begin at the first hit */
		if (ep > 0)
			policy_epoch_advance(p, ds);
		for (uint32_t i = 0; i < N; i++) {
			struct policy_entry *x = &e[perm[i]];

			if (x->linked) {
				policy_access(p, x);
				continue;
			}
			policy_miss(p, ds);
			if (!policy_admit(p, ds, 1, used + 1 > CAP ? 1 : 0))
				continue;
			while (used + 1 > CAP) {
				struct policy_entry *v = policy_victim(p);

				assert_non_null(v);
				assert_false(v->linked);
				used--;
			}
			x->dataset = ds;
			x->size = 1;
			policy_insert(p, x);
			used++;
		}
		policy_dataset_stats(p, ds, &st);
		assert_int_equal(st.entries, used);
		if (ep > 0)
			assert_int_equal(st.hits, CAP);
	}
	assert_int_equal(st.epoch, EPOCHS);
	free(perm);
	free(e);
	policy_destroy(p);
}

/*
 * Random operations on three datasets, checked against a brute-force reading
 * of the rules: each victim comes from the first non-empty category, admit
 * agrees with the evictable bytes, the per-dataset totals add up.
 */
enum { RN = 300, RDS = 3, RCAP = 150 * 10 };

struct rstate {
	struct policy *p;
	struct policy_entry e[RN];
	uint32_t ds[RDS];
	uint64_t used;
	uint64_t rng;
	bool lru;
};

static uint32_t rnd(struct rstate *s, uint32_t n)
{
	s->rng = s->rng * 6364136223846793005ULL + 1442695040888963407ULL;
	return (uint32_t)((s->rng >> 33) % n);
}

static bool is_fresh(struct rstate *s, const struct policy_entry *e)
{
	struct policy_dataset_stats st;

	policy_dataset_stats(s->p, e->dataset, &st);
	return e->last_epoch == st.epoch;
}

/* 1: unpinned in an idle dataset, 2: unpinned and read this epoch, 0: neither */
static int category(struct rstate *s, const struct policy_entry *e)
{
	if (!e->linked || e->pinned)
		return 0;
	if (s->lru || !policy_dataset_active(s->p, e->dataset))
		return 1;
	return is_fresh(s, e) ? 2 : 0;
}

/* Evict one entry if the rules allow any; false when nothing may go. */
static bool check_victim(struct rstate *s)
{
	uint64_t evictable = 0;
	bool has[3] = {false, false, false};
	struct policy_entry *v;

	for (int i = 0; i < RN; i++) {
		int c = category(s, &s->e[i]);

		has[c] = true;
		if (c)
			evictable += s->e[i].size;
	}
	assert_true(policy_admit(s->p, s->ds[0], 10, evictable ? evictable : 1) == (evictable > 0));
	assert_false(policy_admit(s->p, s->ds[0], 10, evictable + 1));
	v = policy_victim(s->p);
	if (!has[1] && !has[2]) {
		assert_null(v);
		return false;
	}
	assert_non_null(v);
	assert_true(v >= s->e && v < s->e + RN);
	assert_false(v->linked);
	assert_false(v->pinned);
	if (s->lru) {
		/* any unpinned entry */
	} else if (has[1]) {
		assert_false(policy_dataset_active(s->p, v->dataset));
	} else {
		assert_true(policy_dataset_active(s->p, v->dataset));
		assert_true(is_fresh(s, v));
	}
	s->used -= v->size;
	return true;
}

static void check_totals(struct rstate *s)
{
	uint64_t entries[RDS] = {0}, bytes[RDS] = {0};
	struct policy_dataset_stats st;

	for (int i = 0; i < RN; i++) {
		if (!s->e[i].linked)
			continue;
		entries[s->e[i].dataset]++;
		bytes[s->e[i].dataset] += s->e[i].size;
	}
	for (int d = 0; d < RDS; d++) {
		policy_dataset_stats(s->p, s->ds[d], &st);
		assert_int_equal(st.entries, entries[d]);
		assert_int_equal(st.bytes, bytes[d]);
	}
}

static void random_run(const char *name)
{
	struct rstate *s = calloc(1, sizeof(*s));

	assert_non_null(s);
	s->p = create(name);
	s->rng = 99;
	s->lru = strcmp(name, "lru") == 0;
	for (int d = 0; d < RDS; d++) {
		char n[8];

		snprintf(n, sizeof(n), "d%d", d);
		s->ds[d] = policy_dataset(s->p, n);
	}
	policy_set_idle_window(s->p, 60);
	for (int step = 0; step < 40000; step++) {
		/* dataset 2 is read rarely, so it keeps going idle */
		uint32_t i = rnd(s, RN), ds = i % RDS == 2 && rnd(s, 4) ? 0 : i % RDS;
		struct policy_entry *e = &s->e[ds * (RN / RDS) + i % (RN / RDS)];
		uint32_t op = rnd(s, 100);

		if (op < 60) {
			if (e->linked) {
				policy_access(s->p, e);
				continue;
			}
			e->dataset = s->ds[ds];
			e->size = 1 + rnd(s, 19);
			bool prefetch = rnd(s, 5) == 0;

			if (!prefetch)
				policy_miss(s->p, e->dataset);
			if (!policy_admit(s->p, e->dataset, e->size,
					  s->used + e->size > RCAP ? s->used + e->size - RCAP : 0))
				continue;
			while (s->used + e->size > RCAP)
				check_victim(s);
			if (prefetch)
				policy_insert_unread(s->p, e);
			else
				policy_insert(s->p, e);
			s->used += e->size;
		} else if (op < 66) {
			if (e->linked)
				s->used -= e->size;
			policy_remove(s->p, e);
		} else if (op < 72) {
			policy_pin(s->p, e, !e->pinned);
		} else if (op < 74) {
			policy_epoch_advance(s->p, s->ds[ds]);
		} else if (op < 77) {
			policy_hint_begin(s->p, s->ds[ds]);
			for (int k = 0; k < RN; k++)
				if (s->e[k].linked && s->e[k].dataset == s->ds[ds] && rnd(s, 8))
					policy_set_next_use(s->p, &s->e[k], rnd(s, 1000));
		} else if (op < 78) {
			policy_hint_clear(s->p, s->ds[ds]);
		} else if (op < 85) {
			policy_set_next_use(s->p, e, rnd(s, 3) ? rnd(s, 1000) : POLICY_NO_USE);
		} else if (op < 95) {
			policy_miss(s->p, s->ds[ds]);
		} else {
			check_victim(s);
		}
		if (step % 97 == 0)
			check_totals(s);
	}
	/* drain: with nothing pinned and every dataset idle, everything may go */
	for (int i = 0; i < RN; i++)
		policy_pin(s->p, &s->e[i], false);
	policy_set_idle_window(s->p, 1);
	policy_miss(s->p, s->ds[0]);
	policy_miss(s->p, s->ds[0]);
	policy_miss(s->p, s->ds[1]);
	policy_miss(s->p, s->ds[2]);
	while (check_victim(s))
		;
	if (!s->lru) {
		/* d2, read last, is active: only its entries not yet read remain */
		for (int i = 0; i < RN; i++) {
			assert_true(!s->e[i].linked || s->e[i].dataset == s->ds[2]);
			if (s->e[i].linked)
				assert_false(is_fresh(s, &s->e[i]));
		}
		policy_miss(s->p, s->ds[0]);
		while (check_victim(s))
			;
	}
	assert_int_equal(s->used, 0);
	check_totals(s);
	policy_destroy(s->p);
	free(s);
}

static void test_random_epoch(void **state)
{
	(void)state;
	random_run("epoch");
}

static void test_random_lru(void **state)
{
	(void)state;
	random_run("lru");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create),
		cmocka_unit_test(test_datasets),
		cmocka_unit_test(test_lru_victim_order),
		cmocka_unit_test(test_lru_pin),
		cmocka_unit_test(test_epoch_pin),
		cmocka_unit_test(test_epoch_categories),
		cmocka_unit_test(test_epoch_auto_window),
		cmocka_unit_test(test_epoch_advance_auto),
		cmocka_unit_test(test_epoch_advance_explicit),
		cmocka_unit_test(test_epoch_admit_unread_only),
		cmocka_unit_test(test_epoch_hint_farthest),
		cmocka_unit_test(test_epoch_hint_expires),
		cmocka_unit_test(test_insert_unread),
		cmocka_unit_test(test_stats_counters),
		cmocka_unit_test(test_epoch_many),
		cmocka_unit_test(test_random_epoch),
		cmocka_unit_test(test_random_lru),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
