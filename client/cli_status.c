/*
 * cli_status.c - `granary status` and `granary stats`: the daemon's status
 * document printed for people, aligned key/value lines with units and the
 * mounts and datasets tables, or its counters one per line (cli_util.h).
 */
#include "cli_json.h"
#include "cli_util.h"

#include <errno.h>
#include <string.h>

static void json_bytes(json_t *o, const char *key, char *buf, size_t n)
{
	uint64_t v;

	if (cli_json_u64(o, key, &v))
		cli_fmt_bytes(v, buf, n);
	else
		snprintf(buf, n, "-");
}

static void json_count(json_t *o, const char *key, char *buf, size_t n)
{
	uint64_t v;

	if (cli_json_u64(o, key, &v))
		snprintf(buf, n, "%llu", (unsigned long long)v);
	else
		snprintf(buf, n, "-");
}

/* A ratio in [0, 1] (or already a percentage) as "81.3%". */
static void fmt_ratio(double r, char *buf, size_t n)
{
	if (r > 1.0)
		r /= 100.0;
	cli_fmt_percent(r, 1.0, buf, n);
}

/* Key/value line into a two-column table. */
static void kv(struct cli_table *t, const char *key, const char *val)
{
	const char *row[2] = {key, val};

	cli_table_row(t, row);
}

int cli_status_print(const char *json, FILE *out, char *err, size_t errsz)
{
	json_t *root, *cache, *ctr, *arr, *x;
	struct cli_table t;
	char a[64], b[64], c[64], line[512];
	double d1, d2;
	uint64_t u1, u2, u3;
	size_t i;

	root = cli_json_parse(json, err, errsz);
	if (!root)
		return -EINVAL;
	if (cli_table_init(&t, 2) < 0) {
		json_decref(root);
		return -ENOMEM;
	}
	cache = json_object_get(root, "cache");
	ctr = json_object_get(root, "counters");

	if (cli_json_text(root, "version", a, sizeof(a))) {
		int len = snprintf(line, sizeof(line), "%s", a);

		if (cli_json_text(root, "pid", b, sizeof(b)))
			len += snprintf(line + len, sizeof(line) - (size_t)len, " (pid %s", b);
		if (cli_json_num(root, "uptime_s", &d1)) {
			cli_fmt_duration(d1, c, sizeof(c));
			len += snprintf(line + len, sizeof(line) - (size_t)len, "%s up %s",
					strchr(line, '(') ? "," : " (", c);
		}
		if (strchr(line, '('))
			snprintf(line + len, sizeof(line) - (size_t)len, ")");
		kv(&t, "granaryd", line);
	}
	if (cli_json_text(root, "policy", a, sizeof(a)))
		kv(&t, "policy", a);
	if (cli_json_text(root, "io", a, sizeof(a)))
		kv(&t, "io", a);
	if (json_is_object(cache)) {
		if (cli_json_text(cache, "dir", line, sizeof(line)))
			kv(&t, "cache", line);
		if (cli_json_u64(cache, "used", &u1)) {
			cli_fmt_bytes(u1, a, sizeof(a));
			if (cli_json_u64(cache, "capacity", &u2) && u2) {
				cli_fmt_bytes(u2, b, sizeof(b));
				cli_fmt_percent((double)u1, (double)u2, c, sizeof(c));
				snprintf(line, sizeof(line), "%s of %s (%s)", a, b, c);
			} else {
				snprintf(line, sizeof(line), "%s", a);
			}
			kv(&t, "used", line);
		} else if (cli_json_u64(cache, "capacity", &u2)) {
			cli_fmt_bytes(u2, a, sizeof(a));
			kv(&t, "capacity", a);
		}
		if (cli_json_u64(cache, "objects", &u1)) {
			snprintf(line, sizeof(line), "%llu", (unsigned long long)u1);
			kv(&t, "objects", line);
		}
		if (cli_json_num(cache, "high_watermark", &d1) &&
		    cli_json_num(cache, "low_watermark", &d2)) {
			fmt_ratio(d1, a, sizeof(a));
			fmt_ratio(d2, b, sizeof(b));
			snprintf(line, sizeof(line), "high %s, low %s", a, b);
			kv(&t, "watermarks", line);
		}
	}
	if (json_is_object(ctr)) {
		if (cli_json_u64(ctr, "opens", &u1)) {
			snprintf(line, sizeof(line), "%llu", (unsigned long long)u1);
			kv(&t, "opens", line);
		}
		if (cli_json_u64(ctr, "hits", &u1) && cli_json_u64(ctr, "misses", &u2)) {
			cli_fmt_percent((double)u1, (double)(u1 + u2), a, sizeof(a));
			snprintf(line, sizeof(line), "%s (%llu hits, %llu misses)", a,
				 (unsigned long long)u1, (unsigned long long)u2);
			kv(&t, "hit ratio", line);
		}
		if (cli_json_u64(ctr, "bytes_local", &u1) &&
		    cli_json_u64(ctr, "bytes_backend", &u2)) {
			cli_fmt_bytes(u1, a, sizeof(a));
			cli_fmt_bytes(u2, b, sizeof(b));
			if (cli_json_u64(ctr, "bytes_peer", &u3)) {
				cli_fmt_bytes(u3, c, sizeof(c));
				snprintf(line, sizeof(line), "%s local, %s backend, %s peer", a, b,
					 c);
			} else {
				snprintf(line, sizeof(line), "%s local, %s backend", a, b);
			}
			kv(&t, "served", line);
		}
		if (cli_json_u64(ctr, "evictions", &u1)) {
			snprintf(line, sizeof(line), "%llu", (unsigned long long)u1);
			kv(&t, "evictions", line);
		}
		if (cli_json_u64(ctr, "fetch_errors", &u1)) {
			snprintf(line, sizeof(line), "%llu", (unsigned long long)u1);
			kv(&t, "fetch errors", line);
		}
		if (cli_json_u64(ctr, "inflight", &u1)) {
			snprintf(line, sizeof(line), "%llu", (unsigned long long)u1);
			kv(&t, "in flight", line);
		}
	}
	cli_table_print(&t, out, 0);
	cli_table_fini(&t);

	arr = json_object_get(root, "mounts");
	if (json_is_array(arr) && json_array_size(arr)) {
		const char *head[] = {"PATH", "BACKEND", "CONSISTENCY", "OBJECTS", "BYTES"};

		cli_table_init(&t, 5);
		t.right[3] = t.right[4] = true;
		cli_table_row(&t, head);
		json_array_foreach(arr, i, x)
		{
			char path[512], be[32], cons[64], objs[32], bytes[32];
			const char *row[] = {path, be, cons, objs, bytes};

			row[1] = cli_json_backend(x, be, sizeof(be));
			if (!cli_json_text(x, "path", path, sizeof(path)))
				snprintf(path, sizeof(path), "-");
			if (!cli_json_text(x, "consistency", cons, sizeof(cons)))
				snprintf(cons, sizeof(cons), "-");
			json_count(x, "objects", objs, sizeof(objs));
			json_bytes(x, "bytes", bytes, sizeof(bytes));
			cli_table_row(&t, row);
		}
		fprintf(out, "\nmounts\n");
		cli_table_print(&t, out, 2);
		cli_table_fini(&t);
	}

	arr = json_object_get(root, "datasets");
	if (json_is_array(arr) && json_array_size(arr)) {
		const char *head[] = {"DATASET",    "EPOCH",   "HIT RATIO",
				      "PREV EPOCH", "ENTRIES", "BYTES"};

		cli_table_init(&t, 6);
		for (i = 1; i < 6; i++)
			t.right[i] = true;
		cli_table_row(&t, head);
		json_array_foreach(arr, i, x)
		{
			char name[256], ep[32], hr[32], prev[32], ent[32], bytes[32];
			const char *row[] = {name, ep, hr, prev, ent, bytes};

			if (!cli_json_text(x, "name", name, sizeof(name)))
				snprintf(name, sizeof(name), "-");
			json_count(x, "epoch", ep, sizeof(ep));
			/* from the counts when they are there: 0 of 0 is "-", not 0% */
			if (cli_json_u64(x, "hits", &u1) && cli_json_u64(x, "misses", &u2))
				cli_fmt_percent((double)u1, (double)(u1 + u2), hr, sizeof(hr));
			else if (cli_json_num(x, "hit_ratio", &d1))
				fmt_ratio(d1, hr, sizeof(hr));
			else
				snprintf(hr, sizeof(hr), "-");
			if (cli_json_u64(x, "prev_hits", &u1) &&
			    cli_json_u64(x, "prev_misses", &u2))
				cli_fmt_percent((double)u1, (double)(u1 + u2), prev, sizeof(prev));
			else if (cli_json_num(x, "prev_hit_ratio", &d1))
				fmt_ratio(d1, prev, sizeof(prev));
			else
				snprintf(prev, sizeof(prev), "-");
			json_count(x, "entries", ent, sizeof(ent));
			json_bytes(x, "bytes", bytes, sizeof(bytes));
			cli_table_row(&t, row);
		}
		fprintf(out, "\ndatasets\n");
		cli_table_print(&t, out, 2);
		cli_table_fini(&t);
	}
	json_decref(root);
	return 0;
}

int cli_stats_print(const char *json, FILE *out, char *err, size_t errsz)
{
	json_t *root, *ctr, *v;
	struct cli_table t;
	const char *key;
	uint64_t hits, misses;
	char val[64];

	root = cli_json_parse(json, err, errsz);
	if (!root)
		return -EINVAL;
	ctr = json_object_get(root, "counters");
	if (!json_is_object(ctr)) {
		snprintf(err, errsz, "the status document has no counters");
		json_decref(root);
		return -EINVAL;
	}
	cli_table_init(&t, 2);
	t.right[1] = true;
	json_object_foreach(ctr, key, v)
	{
		const char *row[2] = {key, val};

		if (json_is_integer(v) || json_is_real(v) || json_is_string(v))
			cli_json_text(ctr, key, val, sizeof(val));
		else
			continue;
		cli_table_row(&t, row);
	}
	if (cli_json_u64(ctr, "hits", &hits) && cli_json_u64(ctr, "misses", &misses)) {
		const char *row[2] = {"hit_ratio", val};

		cli_fmt_percent((double)hits, (double)(hits + misses), val, sizeof(val));
		cli_table_row(&t, row);
	}
	cli_table_print(&t, out, 0);
	cli_table_fini(&t);
	json_decref(root);
	return 0;
}
