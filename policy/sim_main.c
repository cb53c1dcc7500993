/*
 * sim_main.c - granary-sim: replay a synthetic shuffled-epoch trace or a text
 * trace through the eviction policies and Belady's optimum at several cache
 * sizes, and print the hit ratio per epoch as a Markdown table.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

#define MAX_LIST 32

static void usage(FILE *f)
{
	fprintf(f,
		"usage: granary-sim [options]\n"
		"  --objects N        synthetic trace: objects (10000)\n"
		"  --epochs E         synthetic trace: epochs, each a fresh permutation (5)\n"
		"  --seed S           synthetic trace: PRNG seed (1)\n"
		"  --size BYTES       object size (1); for a trace, of lines without a size\n"
		"  --trace FILE       replay FILE instead: \"dataset path size\" or \"path\" per\n"
		"                     line, \"#epoch [dataset]\" starts an epoch\n"
		"  --ratios LIST      cache sizes as fractions of the distinct bytes\n"
		"                     (0.1,0.25,0.5,0.75,0.9)\n"
		"  --capacity BYTES   one cache size in bytes instead of --ratios\n"
		"  --policies LIST    lru, epoch, epoch+hint (lru,epoch,epoch+hint); belady is\n"
		"                     always added\n"
		"  --auto-epoch       do not pass epoch marks to the policies: they detect\n"
		"                     epochs by themselves\n");
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno || *end || end == s || s[0] == '-' ? -EINVAL : 0;
}

/* Split @s (modified) at commas into at most MAX_LIST items. */
static int split(char *s, char **items)
{
	int n = 0;
	char *save = NULL;

	for (char *tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (n == MAX_LIST)
			return -EINVAL;
		items[n++] = tok;
	}
	return n ? n : -EINVAL;
}

struct row {
	const char *label;
	struct sim_options opt;
};

static void print_ratio(const struct sim_result *res, uint32_t first, uint32_t last)
{
	if (first > last)
		printf(" - |");
	else
		printf(" %.4f |", sim_result_ratio(res, first, last));
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"objects", required_argument, NULL, 'n'},
		{"epochs", required_argument, NULL, 'e'},
		{"seed", required_argument, NULL, 's'},
		{"size", required_argument, NULL, 'z'},
		{"trace", required_argument, NULL, 't'},
		{"ratios", required_argument, NULL, 'r'},
		{"capacity", required_argument, NULL, 'c'},
		{"policies", required_argument, NULL, 'p'},
		{"auto-epoch", no_argument, NULL, 'a'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	char ratios_buf[] = "0.1,0.25,0.5,0.75,0.9", policies_buf[] = "lru,epoch,epoch+hint";
	char *ratios_arg = ratios_buf, *policies_arg = policies_buf, *ratio_s[MAX_LIST],
	     *policy_s[MAX_LIST];
	uint64_t objects = 10000, epochs = 5, seed = 1, size = 1, capacity = 0;
	const char *trace_path = NULL;
	bool explicit_epochs = true;
	struct row rows[MAX_LIST + 1];
	int nratios, nrows = 0, c, rc;
	double ratios[MAX_LIST];
	struct sim_trace t;
	char err[512];

	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		uint64_t *dst = NULL;

		switch (c) {
		case 'n':
			dst = &objects;
			break;
		case 'e':
			dst = &epochs;
			break;
		case 's':
			dst = &seed;
			break;
		case 'z':
			dst = &size;
			break;
		case 'c':
			dst = &capacity;
			break;
		case 't':
			trace_path = optarg;
			break;
		case 'r':
			ratios_arg = optarg;
			break;
		case 'p':
			policies_arg = optarg;
			break;
		case 'a':
			explicit_epochs = false;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
		if (dst && parse_u64(optarg, dst) < 0) {
			fprintf(stderr, "granary-sim: not a number: %s\n", optarg);
			return 2;
		}
	}
	if (optind < argc || objects == 0 || objects >= UINT32_MAX || epochs == 0 ||
	    epochs >= UINT32_MAX || size == 0) {
		usage(stderr);
		return 2;
	}

	nratios = capacity ? 1 : split(ratios_arg, ratio_s);
	for (int i = 0; !capacity && i < nratios; i++) {
		char *end;

		ratios[i] = strtod(ratio_s[i], &end);
		if (*end || end == ratio_s[i] || ratios[i] <= 0) {
			fprintf(stderr, "granary-sim: --ratios: bad fraction: %s\n", ratio_s[i]);
			return 2;
		}
	}
	if (nratios < 0) {
		fprintf(stderr, "granary-sim: --ratios: expected a comma-separated list\n");
		return 2;
	}
	rc = split(policies_arg, policy_s);
	if (rc < 0) {
		fprintf(stderr, "granary-sim: --policies: expected a comma-separated list\n");
		return 2;
	}
	for (int i = 0; i < rc; i++) {
		struct row *r = &rows[nrows++];

		r->label = policy_s[i];
		r->opt.explicit_epochs = explicit_epochs;
		r->opt.hint = strcmp(policy_s[i], "epoch+hint") == 0;
		r->opt.policy = r->opt.hint ? "epoch" : policy_s[i];
		if (strcmp(r->opt.policy, "lru") && strcmp(r->opt.policy, "epoch")) {
			fprintf(stderr, "granary-sim: unknown policy: %s\n", policy_s[i]);
			return 2;
		}
	}
	rows[nrows].label = "belady";
	rows[nrows].opt.policy = "belady";
	rows[nrows].opt.hint = false;
	rows[nrows].opt.explicit_epochs = explicit_epochs;
	nrows++;

	if (trace_path) {
		FILE *f = fopen(trace_path, "r");

		if (!f) {
			fprintf(stderr, "granary-sim: %s: %s\n", trace_path, strerror(errno));
			return 1;
		}
		err[0] = 0;
		rc = sim_trace_parse(&t, f, size, err, sizeof(err));
		fclose(f);
		if (rc < 0) {
			fprintf(stderr, "granary-sim: %s: %s\n", trace_path,
				err[0] ? err : strerror(-rc));
			return 1;
		}
		printf("trace %s: %u objects, %zu operations, %u epochs, %llu bytes\n\n",
		       trace_path, t.nobj, t.nops, t.epochs, (unsigned long long)t.total_bytes);
	} else {
		rc = sim_trace_synthetic(&t, (uint32_t)objects, (uint32_t)epochs, seed, size);
		if (rc < 0) {
			fprintf(stderr, "granary-sim: synthetic trace: %s\n", strerror(-rc));
			return 1;
		}
		printf("synthetic trace: %llu objects of %llu bytes, %llu shuffled epochs, seed %llu%s\n\n",
		       (unsigned long long)objects, (unsigned long long)size,
		       (unsigned long long)epochs, (unsigned long long)seed,
		       explicit_epochs ? "" : ", epochs detected by the policies");
	}

	printf("| cache f | policy | epoch 1 | epochs 2-%u | bound min(1,f) |", t.epochs);
	for (uint32_t e = 2; e <= t.epochs && t.epochs <= 10; e++)
		printf(" e%u |", e);
	printf("\n|---|---|---|---|---|");
	for (uint32_t e = 2; e <= t.epochs && t.epochs <= 10; e++)
		printf("---|");
	printf("\n");

	for (int i = 0; i < nratios; i++) {
		uint64_t cap = capacity ? capacity : (uint64_t)(ratios[i] * (double)t.total_bytes);
		double f = (double)cap / (double)t.total_bytes;

		for (int j = 0; j < nrows; j++) {
			struct sim_result res;

			rows[j].opt.capacity = cap;
			rc = sim_run(&t, &rows[j].opt, &res);
			if (rc < 0) {
				fprintf(stderr, "granary-sim: %s: %s\n", rows[j].label,
					strerror(-rc));
				sim_trace_fini(&t);
				return 1;
			}
			printf("| %.2f | %s |", f, rows[j].label);
			print_ratio(&res, 1, 1);
			print_ratio(&res, 2, t.epochs);
			printf(" %.4f |", f < 1 ? f : 1.0);
			for (uint32_t e = 2; e <= t.epochs && t.epochs <= 10; e++)
				print_ratio(&res, e, e);
			printf("\n");
			sim_result_fini(&res);
		}
	}
	sim_trace_fini(&t);
	return 0;
}
