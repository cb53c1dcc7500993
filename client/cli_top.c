/*
 * cli_top.c - `granary top`: samples of the status document, the rates and
 * hit ratios between two of them, and the screen drawn from them and fitted
 * to the terminal (cli_util.h).
 */
#include "cli_json.h"
#include "cli_util.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

void cli_top_sample_fini(struct cli_top_sample *s)
{
	for (size_t i = 0; i < s->nmounts; i++)
		free(s->mounts[i].path);
	for (size_t i = 0; i < s->ndatasets; i++)
		free(s->datasets[i].name);
	free(s->mounts);
	free(s->datasets);
	memset(s, 0, sizeof(*s));
}

struct u64_field {
	const char *key;
	size_t off;
};

#define SAMPLE_FIELD(name)                                                                         \
	{                                                                                          \
#name, offsetof(struct cli_top_sample, name)                                       \
	}

static const struct u64_field counter_fields[] = {
	SAMPLE_FIELD(opens),	    SAMPLE_FIELD(hits),		SAMPLE_FIELD(misses),
	SAMPLE_FIELD(fast_hits),    SAMPLE_FIELD(bytes_local),	SAMPLE_FIELD(bytes_backend),
	SAMPLE_FIELD(bytes_peer),   SAMPLE_FIELD(bytes_direct), SAMPLE_FIELD(fetches),
	SAMPLE_FIELD(fetch_errors), SAMPLE_FIELD(evictions),	SAMPLE_FIELD(not_admitted),
	SAMPLE_FIELD(corrupt),	    SAMPLE_FIELD(inflight),
};

static const struct u64_field cache_fields[] = {
	SAMPLE_FIELD(used),
	SAMPLE_FIELD(capacity),
	SAMPLE_FIELD(objects),
};

static const struct u64_field qos_fields[] = {
	SAMPLE_FIELD(fg_inflight),
	SAMPLE_FIELD(bg_inflight),
	SAMPLE_FIELD(fg_queued),
	SAMPLE_FIELD(bg_queued),
};

static void read_fields(json_t *o, const struct u64_field *f, size_t n, struct cli_top_sample *s)
{
	for (size_t i = 0; i < n; i++)
		cli_json_u64(o, f[i].key, (uint64_t *)((char *)s + f[i].off));
}

/* A string member copied, "-" when absent. */
static char *dup_text(json_t *o, const char *key)
{
	json_t *x = json_object_get(o, key);

	return strdup(json_is_string(x) ? json_string_value(x) : "-");
}

static void parse_mount(json_t *x, struct cli_top_mount *m)
{
	json_t *h = json_object_get(x, "hint");
	char be[32];

	snprintf(m->backend, sizeof(m->backend), "%s", cli_json_backend(x, be, sizeof(be)));
	cli_json_u64(x, "hits", &m->hits);
	cli_json_u64(x, "misses", &m->misses);
	cli_json_u64(x, "objects", &m->objects);
	cli_json_u64(x, "bytes", &m->bytes);
	m->has_fetch = cli_json_u64(x, "fetches", &m->fetches);
	cli_json_u64(x, "fetch_errors", &m->fetch_errors);
	cli_json_num(x, "fetch_seconds", &m->fetch_seconds);
	if (json_is_object(h)) {
		cli_json_u64(h, "paths", &m->hint_paths);
		cli_json_u64(h, "position", &m->hint_position);
		cli_json_u64(h, "prefetched", &m->prefetched);
		cli_json_u64(h, "prefetch_failed", &m->prefetch_failed);
		cli_json_u64(h, "prefetch_inflight", &m->prefetch_inflight);
		if (!cli_json_text(h, "phase", m->hint_phase, sizeof(m->hint_phase)))
			snprintf(m->hint_phase, sizeof(m->hint_phase), "-");
	}
}

int cli_top_parse(const char *json, double t, time_t wall, struct cli_top_sample *s, char *err,
		  size_t errsz)
{
	json_t *root, *arr, *x;
	double d;
	size_t i;

	memset(s, 0, sizeof(*s));
	root = cli_json_parse(json, err, errsz);
	if (!root)
		return -EINVAL;
	s->t = t;
	s->wall = wall;
	if (cli_json_num(root, "pid", &d))
		s->pid = (long long)d;
	cli_json_num(root, "uptime_s", &s->uptime);
	if (!cli_json_text(root, "version", s->version, sizeof(s->version)))
		snprintf(s->version, sizeof(s->version), "-");
	read_fields(json_object_get(root, "counters"), counter_fields,
		    sizeof(counter_fields) / sizeof(counter_fields[0]), s);
	read_fields(json_object_get(root, "cache"), cache_fields,
		    sizeof(cache_fields) / sizeof(cache_fields[0]), s);
	x = json_object_get(root, "qos");
	if (json_is_object(x)) {
		s->has_qos = true;
		read_fields(x, qos_fields, sizeof(qos_fields) / sizeof(qos_fields[0]), s);
		cli_json_num(x, "fg_wait_max_ms", &s->fg_wait_max_ms);
	}

	arr = json_object_get(root, "mounts");
	if (json_is_array(arr) && json_array_size(arr)) {
		s->mounts = calloc(json_array_size(arr), sizeof(*s->mounts));
		if (!s->mounts)
			goto nomem;
		json_array_foreach(arr, i, x)
		{
			struct cli_top_mount *m = &s->mounts[s->nmounts];

			if (!json_is_object(x))
				continue;
			m->path = dup_text(x, "path");
			if (!m->path)
				goto nomem;
			s->nmounts++;
			parse_mount(x, m);
		}
	}
	arr = json_object_get(root, "datasets");
	if (json_is_array(arr) && json_array_size(arr)) {
		s->datasets = calloc(json_array_size(arr), sizeof(*s->datasets));
		if (!s->datasets)
			goto nomem;
		json_array_foreach(arr, i, x)
		{
			struct cli_top_dataset *ds = &s->datasets[s->ndatasets];

			if (!json_is_object(x))
				continue;
			ds->name = dup_text(x, "name");
			if (!ds->name)
				goto nomem;
			s->ndatasets++;
			cli_json_u64(x, "epoch", &ds->epoch);
			cli_json_u64(x, "hits", &ds->hits);
			cli_json_u64(x, "misses", &ds->misses);
			cli_json_u64(x, "prev_hits", &ds->prev_hits);
			cli_json_u64(x, "prev_misses", &ds->prev_misses);
		}
	}
	json_decref(root);
	return 0;

nomem:
	json_decref(root);
	cli_top_sample_fini(s);
	snprintf(err, errsz, "%s", strerror(ENOMEM));
	return -ENOMEM;
}

double cli_top_rate(uint64_t prev, uint64_t cur, double dt)
{
	if (!(dt > 0))
		return 0;
	return (double)(cur >= prev ? cur - prev : cur) / dt;
}

double cli_top_ratio(uint64_t hits0, uint64_t misses0, uint64_t hits1, uint64_t misses1)
{
	uint64_t dh, dm;

	if (hits1 < hits0 || misses1 < misses0)
		return -1;
	dh = hits1 - hits0;
	dm = misses1 - misses0;
	if (dh + dm == 0)
		return -1;
	return (double)dh / (double)(dh + dm);
}

int cli_top_rates(const struct cli_top_sample *prev, const struct cli_top_sample *cur,
		  struct cli_top_rates *r)
{
	double dt = cur->t - prev->t;

	memset(r, 0, sizeof(*r));
	r->hit_ratio = -1;
	/* uptime is in whole seconds: going back means a new process */
	if (prev->pid != cur->pid || cur->uptime < prev->uptime)
		return -ESTALE;
	if (!(dt > 0))
		return -EINVAL;
	r->dt = dt;
#define RATE(f) r->f = cli_top_rate(prev->f, cur->f, dt)
	RATE(opens);
	RATE(hits);
	RATE(misses);
	RATE(fast_hits);
	RATE(bytes_local);
	RATE(bytes_backend);
	RATE(bytes_peer);
	RATE(bytes_direct);
	RATE(fetches);
	RATE(fetch_errors);
	RATE(evictions);
	RATE(not_admitted);
#undef RATE
	r->hit_ratio = cli_top_ratio(prev->hits, prev->misses, cur->hits, cur->misses);
	return 0;
}

/* "81.3%", or "-" for a ratio below 0 (unknown). */
static void fmt_ratio_known(double r, char *buf, size_t n)
{
	if (r < 0)
		snprintf(buf, n, "-");
	else
		cli_fmt_percent(r, 1.0, buf, n);
}

/* The hits, misses and ratio of a whole count pair; -1 when both are 0. */
static double ratio_of(uint64_t hits, uint64_t misses)
{
	return cli_top_ratio(0, 0, hits, misses);
}

/* The mount of @prev with @m's path (most often at the same index). */
static const struct cli_top_mount *prev_mount(const struct cli_top_sample *prev, size_t i,
					      const struct cli_top_mount *m)
{
	if (!prev)
		return NULL;
	if (i < prev->nmounts && !strcmp(prev->mounts[i].path, m->path))
		return &prev->mounts[i];
	for (size_t j = 0; j < prev->nmounts; j++)
		if (!strcmp(prev->mounts[j].path, m->path))
			return &prev->mounts[j];
	return NULL;
}

static const struct cli_top_dataset *prev_dataset(const struct cli_top_sample *prev, size_t i,
						  const struct cli_top_dataset *d)
{
	if (!prev)
		return NULL;
	if (i < prev->ndatasets && !strcmp(prev->datasets[i].name, d->name))
		return &prev->datasets[i];
	for (size_t j = 0; j < prev->ndatasets; j++)
		if (!strcmp(prev->datasets[j].name, d->name))
			return &prev->datasets[j];
	return NULL;
}

/*
 * A dataset's hit ratio over the interval. Counts restart with each epoch,
 * so across one advance the interval is the rest of the old epoch (now the
 * previous one) plus the new one so far; across more it is unknown.
 */
static double dataset_interval_ratio(const struct cli_top_dataset *p,
				     const struct cli_top_dataset *c)
{
	uint64_t h, m;

	if (c->epoch == p->epoch)
		return cli_top_ratio(p->hits, p->misses, c->hits, c->misses);
	if (c->epoch != p->epoch + 1 || c->prev_hits < p->hits || c->prev_misses < p->misses)
		return -1;
	h = c->prev_hits - p->hits + c->hits;
	m = c->prev_misses - p->misses + c->misses;
	return ratio_of(h, m);
}

/* The mount whose fetches took longest on average over the interval. */
static void render_slowest(const struct cli_top_sample *prev, const struct cli_top_sample *cur,
			   double dt, FILE *out)
{
	const struct cli_top_mount *worst = NULL, *wp = NULL;
	double worst_s = -1;
	bool any = false;
	char a[32], b[32];

	for (size_t i = 0; i < cur->nmounts; i++) {
		const struct cli_top_mount *m = &cur->mounts[i], *p = prev_mount(prev, i, m);
		double mean;

		if (!m->has_fetch)
			continue;
		any = true;
		if (!p || !p->has_fetch || m->fetches <= p->fetches ||
		    m->fetch_seconds < p->fetch_seconds)
			continue;
		mean = (m->fetch_seconds - p->fetch_seconds) / (double)(m->fetches - p->fetches);
		if (mean > worst_s) {
			worst_s = mean;
			worst = m;
			wp = p;
		}
	}
	if (!any)
		return;
	if (!prev) {
		fprintf(out, "slowest    -\n");
		return;
	}
	if (!worst) {
		fprintf(out, "slowest    - (no fetches in the interval)\n");
		return;
	}
	cli_fmt_rate(cli_top_rate(wp->fetches, worst->fetches, dt), a, sizeof(a));
	cli_fmt_rate(cli_top_rate(wp->fetch_errors, worst->fetch_errors, dt), b, sizeof(b));
	fprintf(out, "slowest    %s (%s): %.1f ms per fetch, %s fetches, %s errors\n", worst->path,
		worst->backend, worst_s * 1e3, a, b);
}

static void render_mounts(const struct cli_top_sample *prev, const struct cli_top_sample *cur,
			  double dt, FILE *out)
{
	static const char *const head[] = {"MOUNT",   "BACKEND", "HIT NOW", "HIT ALL",
					   "MISS/S",  "NEW/S",	 "OBJECTS", "BYTES",
					   "FETCH/S", "ERR/S",	 "MS/FETCH"};
	bool fetch_cols = false;
	struct cli_table t;
	size_t ncols;

	for (size_t i = 0; i < cur->nmounts; i++)
		fetch_cols |= cur->mounts[i].has_fetch;
	ncols = fetch_cols ? 11 : 8;
	if (cli_table_init(&t, ncols) < 0)
		return;
	for (size_t j = 2; j < ncols; j++)
		t.right[j] = true;
	cli_table_row(&t, head);
	for (size_t i = 0; i < cur->nmounts; i++) {
		const struct cli_top_mount *m = &cur->mounts[i], *p = prev_mount(prev, i, m);
		char now[16], all[16], miss[32], new[32], objs[32], bytes[32], fps[32], eps[32],
			ms[32];
		const char *row[] = {m->path, m->backend, now, all, miss, new,
				     objs,    bytes,	  fps, eps, ms};

		fmt_ratio_known(p ? cli_top_ratio(p->hits, p->misses, m->hits, m->misses) : -1, now,
				sizeof(now));
		fmt_ratio_known(ratio_of(m->hits, m->misses), all, sizeof(all));
		snprintf(miss, sizeof(miss), "-");
		snprintf(new, sizeof(new), "-");
		snprintf(fps, sizeof(fps), "-");
		snprintf(eps, sizeof(eps), "-");
		snprintf(ms, sizeof(ms), "-");
		if (p) {
			cli_fmt_rate(cli_top_rate(p->misses, m->misses, dt), miss, sizeof(miss));
			/* a gauge: evictions make it negative */
			cli_fmt_rate(((double)m->objects - (double)p->objects) / dt, new,
				     sizeof(new));
		}
		if (p && m->has_fetch && p->has_fetch) {
			cli_fmt_rate(cli_top_rate(p->fetches, m->fetches, dt), fps, sizeof(fps));
			cli_fmt_rate(cli_top_rate(p->fetch_errors, m->fetch_errors, dt), eps,
				     sizeof(eps));
			if (m->fetches > p->fetches && m->fetch_seconds >= p->fetch_seconds)
				snprintf(ms, sizeof(ms), "%.1f",
					 (m->fetch_seconds - p->fetch_seconds) * 1e3 /
						 (double)(m->fetches - p->fetches));
		}
		snprintf(objs, sizeof(objs), "%llu", (unsigned long long)m->objects);
		cli_fmt_bytes(m->bytes, bytes, sizeof(bytes));
		cli_table_row(&t, row);
	}
	fputc('\n', out);
	cli_table_print(&t, out, 0);
	cli_table_fini(&t);
}

static void render_hints(const struct cli_top_sample *prev, const struct cli_top_sample *cur,
			 double dt, FILE *out)
{
	static const char *const head[] = {"HINTED ORDER", "PHASE",	  "POSITION",
					   "PREFETCHED/S", "PREFETCHING", "FAILED"};
	struct cli_table t;
	bool any = false;

	for (size_t i = 0; i < cur->nmounts; i++)
		any |= cur->mounts[i].hint_paths > 0;
	if (!any || cli_table_init(&t, 6) < 0)
		return;
	for (size_t j = 2; j < 6; j++)
		t.right[j] = true;
	cli_table_row(&t, head);
	for (size_t i = 0; i < cur->nmounts; i++) {
		const struct cli_top_mount *m = &cur->mounts[i], *p = prev_mount(prev, i, m);
		char pos[64], pf[32], infl[32], failed[32];
		const char *row[] = {m->path, m->hint_phase, pos, pf, infl, failed};

		if (!m->hint_paths)
			continue;
		snprintf(pos, sizeof(pos), "%llu/%llu", (unsigned long long)m->hint_position,
			 (unsigned long long)m->hint_paths);
		if (p)
			cli_fmt_rate(cli_top_rate(p->prefetched, m->prefetched, dt), pf,
				     sizeof(pf));
		else
			snprintf(pf, sizeof(pf), "-");
		snprintf(infl, sizeof(infl), "%llu", (unsigned long long)m->prefetch_inflight);
		snprintf(failed, sizeof(failed), "%llu", (unsigned long long)m->prefetch_failed);
		cli_table_row(&t, row);
	}
	fputc('\n', out);
	cli_table_print(&t, out, 0);
	cli_table_fini(&t);
}

static void render_datasets(const struct cli_top_sample *prev, const struct cli_top_sample *cur,
			    FILE *out)
{
	static const char *const head[] = {"DATASET", "EPOCH", "HIT NOW", "THIS EPOCH",
					   "LAST EPOCH"};
	struct cli_table t;

	if (!cur->ndatasets || cli_table_init(&t, 5) < 0)
		return;
	for (size_t j = 1; j < 5; j++)
		t.right[j] = true;
	cli_table_row(&t, head);
	for (size_t i = 0; i < cur->ndatasets; i++) {
		const struct cli_top_dataset *d = &cur->datasets[i], *p = prev_dataset(prev, i, d);
		char ep[32], now[16], this[16], last[16];
		const char *row[] = {d->name, ep, now, this, last};

		snprintf(ep, sizeof(ep), "%llu", (unsigned long long)d->epoch);
		fmt_ratio_known(p ? dataset_interval_ratio(p, d) : -1, now, sizeof(now));
		fmt_ratio_known(ratio_of(d->hits, d->misses), this, sizeof(this));
		fmt_ratio_known(ratio_of(d->prev_hits, d->prev_misses), last, sizeof(last));
		cli_table_row(&t, row);
	}
	fputc('\n', out);
	cli_table_print(&t, out, 0);
	cli_table_fini(&t);
}

void cli_top_render(const struct cli_top_sample *prev, const struct cli_top_sample *cur,
		    double interval, int width, const char *note, FILE *out)
{
	struct cli_top_rates r;
	char a[64], b[64], c[64], d[64], up[32], clock[16], line[256];
	bool have = false, restarted = false;
	struct tm tm;
	int bar, len;

	if (prev) {
		int rc = cli_top_rates(prev, cur, &r);

		have = rc == 0;
		restarted = rc == -ESTALE;
	}
	if (!have) {
		memset(&r, 0, sizeof(r));
		r.hit_ratio = -1;
		prev = NULL; /* nothing per mount or dataset either */
	}

	cli_fmt_duration(cur->uptime, up, sizeof(up));
	if (localtime_r(&cur->wall, &tm))
		strftime(clock, sizeof(clock), "%H:%M:%S", &tm);
	else
		snprintf(clock, sizeof(clock), "-");
	fprintf(out, "granary top  %s  granaryd %s, pid %lld, up %s  every %.1fs%s%s\n", clock,
		cur->version, cur->pid, up, interval, note ? "  " : "", note ? note : "");
	if (restarted)
		fprintf(out, "granaryd restarted: rates start again at the next refresh\n");

	/* cache [####......] 1.20 GiB of 200 GiB (0.6%), 1234 objects */
	cli_fmt_bytes(cur->used, a, sizeof(a));
	cli_fmt_bytes(cur->capacity, b, sizeof(b));
	cli_fmt_percent((double)cur->used, (double)cur->capacity, c, sizeof(c));
	len = snprintf(line, sizeof(line), " %s of %s (%s), %llu objects", a, b, c,
		       (unsigned long long)cur->objects);
	bar = width - 11 - len;
	if (bar > 42)
		bar = 42;
	if (bar >= 12) {
		cli_fmt_bar(cur->used, cur->capacity, bar, d, sizeof(d));
		fprintf(out, "cache      %s%s\n", d, line);
	} else {
		fprintf(out, "cache     %s\n", line);
	}

	fmt_ratio_known(r.hit_ratio, a, sizeof(a));
	fmt_ratio_known(ratio_of(cur->hits, cur->misses), b, sizeof(b));
	fprintf(out, "hit ratio  now %s, since start %s (%llu hits, %llu misses)\n", a, b,
		(unsigned long long)cur->hits, (unsigned long long)cur->misses);

	if (have) {
		cli_fmt_rate(r.opens, a, sizeof(a));
		cli_fmt_rate(r.fast_hits, b, sizeof(b));
		cli_fmt_rate(r.hits, c, sizeof(c));
		cli_fmt_rate(r.misses, d, sizeof(d));
		fprintf(out, "opens      %s (fast path %s), hits %s, misses %s\n", a, b, c, d);
		cli_fmt_rate_bytes(r.bytes_local, a, sizeof(a));
		cli_fmt_rate_bytes(r.bytes_backend, b, sizeof(b));
		cli_fmt_rate_bytes(r.bytes_peer, c, sizeof(c));
		cli_fmt_rate_bytes(r.bytes_direct, d, sizeof(d));
		fprintf(out, "bytes      local %s, backend %s, peer %s, direct %s\n", a, b, c, d);
		cli_fmt_rate(r.fetches, a, sizeof(a));
		cli_fmt_rate(r.fetch_errors, b, sizeof(b));
	} else {
		fprintf(out, "opens      - (%llu since start)\n", (unsigned long long)cur->opens);
		fprintf(out, "bytes      local -, backend -, peer -, direct -\n");
		snprintf(a, sizeof(a), "-");
		snprintf(b, sizeof(b), "-");
	}
	fprintf(out, "fetches    %s, in flight %llu, errors %s (%llu since start)\n", a,
		(unsigned long long)cur->inflight, b, (unsigned long long)cur->fetch_errors);
	if (have) {
		cli_fmt_rate(r.evictions, a, sizeof(a));
		cli_fmt_rate(r.not_admitted, b, sizeof(b));
	}
	fprintf(out, "evictions  %s, not kept %s, corrupt copies %llu since start\n", a, b,
		(unsigned long long)cur->corrupt);
	if (cur->has_qos)
		fprintf(out,
			"qos        fg %llu running, %llu queued (longest wait %.1f ms); bg %llu running, "
			"%llu queued\n",
			(unsigned long long)cur->fg_inflight, (unsigned long long)cur->fg_queued,
			cur->fg_wait_max_ms, (unsigned long long)cur->bg_inflight,
			(unsigned long long)cur->bg_queued);
	render_slowest(prev, cur, r.dt, out);
	if (cur->nmounts)
		render_mounts(prev, cur, r.dt, out);
	render_hints(prev, cur, r.dt, out);
	render_datasets(prev, cur, out);
}

void cli_top_fit(const char *text, int width, int height, bool ansi, FILE *out)
{
	const char *p = text;
	int lines = 0;

	while (*p && (height <= 0 || lines < height)) {
		const char *eol = strchr(p, '\n'), *cut;
		int cols = 0;

		if (!eol)
			eol = p + strlen(p);
		/* count columns as UTF-8 sequences; stop before the one past @width */
		for (cut = p; cut < eol; cut++) {
			if (((unsigned char)*cut & 0xc0) == 0x80)
				continue;
			if (width > 0 && cols == width)
				break;
			cols++;
		}
		if (ansi && lines)
			fputc('\n', out);
		fwrite(p, 1, (size_t)(cut - p), out);
		if (ansi)
			fputs("\033[K", out);
		else
			fputc('\n', out);
		lines++;
		p = *eol ? eol + 1 : eol;
	}
	if (ansi)
		fputs("\033[J", out);
}
