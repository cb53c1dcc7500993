/*
 * sim.h - trace simulator: replays a read trace through an eviction policy
 * (policy.h) or through Belady's optimal choice, with a capacity in bytes,
 * and counts hits per epoch of the trace.
 *
 * Owns: traces (objects, datasets, reads, epoch marks), synthetic shuffled
 * epoch traces, the text trace format, and the per-epoch results. The space
 * is accounted as the daemon does it: on a miss, if the policy admits the
 * object, evict victims until it fits and insert it; otherwise serve the read
 * without keeping it.
 */
#ifndef GRANARY_SIM_H
#define GRANARY_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SIM_ALL_DATASETS UINT32_MAX

enum sim_op_kind {
	SIM_READ,  /* arg: object index */
	SIM_EPOCH, /* arg: dataset index, or SIM_ALL_DATASETS; starts a trace epoch */
};

struct sim_op {
	uint32_t kind;
	uint32_t arg;
};

struct sim_object {
	char *path; /* NULL in synthetic traces */
	uint32_t ds;
	uint64_t size;
};

struct sim_trace {
	struct sim_object *obj;
	uint32_t nobj, capobj;
	char **ds_names;
	uint32_t nds;
	struct sim_op *ops;
	size_t nops, capops;
	uint32_t epochs;      /* trace epochs: SIM_EPOCH marks + 1 */
	uint64_t total_bytes; /* sum of the sizes of distinct objects */
	uint32_t *index;      /* path hash table: object index + 1, 0 = empty */
	size_t index_cap;
};

/*
 * A shuffled epoch trace: @objects objects of @size bytes in one dataset
 * "synthetic", read @epochs times, each epoch a fresh permutation drawn from
 * a PRNG seeded with @seed (the same seed gives the same trace). An epoch
 * mark precedes every epoch but the first. Returns 0 or -ENOMEM/-EINVAL.
 */
int sim_trace_synthetic(struct sim_trace *t, uint32_t objects, uint32_t epochs, uint64_t seed,
			uint64_t size);

/*
 * Parse a text trace: one read per line, "dataset path size" or "path" (the
 * dataset "default", @default_size bytes); "#epoch" or "#epoch dataset" marks
 * the start of an epoch (of every dataset, or of the one named); other lines
 * starting with '#' and blank lines are ignored. An object keeps the dataset
 * and size of its first line. Returns 0, or -EINVAL with a message naming the
 * line in @err, or -ENOMEM.
 */
int sim_trace_parse(struct sim_trace *t, FILE *f, uint64_t default_size, char *err, size_t errlen);

void sim_trace_fini(struct sim_trace *t);

struct sim_options {
	const char *policy;   /* "lru", "epoch", or "belady" */
	uint64_t capacity;    /* bytes */
	bool hint;	      /* send each epoch's order one epoch ahead */
	bool explicit_epochs; /* pass epoch marks to the policy; else it detects them */
};

struct sim_result {
	uint32_t epochs;
	uint64_t *hits;	 /* per trace epoch, [0] is epoch 1 */
	uint64_t *reads; /* per trace epoch */
	uint64_t evictions;
	uint64_t bypassed; /* misses served without being kept */
};

/*
 * Replay @t with @opt. With hint, the order of trace epoch k+1 is sent to
 * the policy (policy_hint_begin, policy_set_next_use) right after the first
 * read of each dataset in epoch k, as a sampler that draws its permutations
 * one epoch ahead would. Returns 0, -EINVAL (unknown policy) or -ENOMEM;
 * the caller frees @res with sim_result_fini.
 */
int sim_run(const struct sim_trace *t, const struct sim_options *opt, struct sim_result *res);

void sim_result_fini(struct sim_result *res);

/* Hit ratio over trace epochs @first..@last (1-based, inclusive); 0 if no read. */
double sim_result_ratio(const struct sim_result *res, uint32_t first, uint32_t last);

#endif
