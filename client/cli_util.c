/* cli_util.c - formatting and parsing for the granary CLI (see cli_util.h). */
#include "cli_util.h"
#include "granary.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

void cli_strv_init(struct cli_strv *s)
{
	memset(s, 0, sizeof(*s));
}

void cli_strv_fini(struct cli_strv *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	free(s->sizes);
	memset(s, 0, sizeof(*s));
}

int cli_strv_push(struct cli_strv *s, const char *str, uint64_t size)
{
	char *copy;

	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		char **v = realloc(s->v, cap * sizeof(*v));
		uint64_t *sz;

		if (!v)
			return -ENOMEM;
		s->v = v;
		sz = realloc(s->sizes, cap * sizeof(*sz));
		if (!sz)
			return -ENOMEM;
		s->sizes = sz;
		s->cap = cap;
	}
	copy = strdup(str);
	if (!copy)
		return -ENOMEM;
	s->v[s->n] = copy;
	s->sizes[s->n] = size;
	s->n++;
	return 0;
}

int cli_parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
	unsigned long long v;
	char *end;

	if (!s || !isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (*end)
		return -EINVAL;
	if (errno == ERANGE || v < min || v > max)
		return -ERANGE;
	*out = (unsigned long)v;
	return 0;
}

int cli_abspath(const char *cwd, const char *in, char *out, size_t outsz)
{
	char *tmp;
	size_t o = 0, i = 0, len;
	int rc = 0;

	if (!in || !*in || outsz < 2)
		return -EINVAL;
	if (in[0] == '/') {
		tmp = strdup(in);
	} else {
		if (!cwd || cwd[0] != '/')
			return -EINVAL;
		if (asprintf(&tmp, "%s/%s", cwd, in) < 0)
			tmp = NULL;
	}
	if (!tmp)
		return -ENOMEM;
	len = strlen(tmp);
	while (i < len) {
		size_t start, clen;

		while (i < len && tmp[i] == '/')
			i++;
		start = i;
		while (i < len && tmp[i] != '/')
			i++;
		clen = i - start;
		if (clen == 0 || (clen == 1 && tmp[start] == '.'))
			continue;
		if (clen == 2 && tmp[start] == '.' && tmp[start + 1] == '.') {
			/* back up over the last component; ".." of "/" is "/" */
			while (o > 0 && out[o - 1] != '/')
				o--;
			if (o > 0)
				o--;
			continue;
		}
		if (o + 1 + clen + 1 > outsz) {
			rc = -ENAMETOOLONG;
			goto out;
		}
		out[o++] = '/';
		memcpy(out + o, tmp + start, clen);
		o += clen;
	}
	if (o == 0)
		out[o++] = '/';
	out[o] = '\0';
out:
	free(tmp);
	return rc;
}

char *cli_manifest_line(char *line)
{
	char *p, *end;

	p = line;
	while (*p == ' ' || *p == '\t')
		p++;
	for (end = p; *end; end++) {
		if (*end == '\n' || *end == '\r' ||
		    (*end == '#' && (end == p || end[-1] == ' ' || end[-1] == '\t')))
			break;
	}
	*end = '\0';
	while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
		*--end = '\0';
	return *p ? p : NULL;
}

long cli_manifest_read(FILE *f, const char *cwd, struct cli_strv *out, char *err, size_t errsz)
{
	char *line = NULL, *abs = NULL;
	size_t cap = 0;
	long count = 0, lineno = 0;
	int rc = 0;

	abs = malloc(PATH_MAX);
	if (!abs)
		return -ENOMEM;
	errno = 0;
	while (getline(&line, &cap, f) >= 0) {
		char *path;

		lineno++;
		path = cli_manifest_line(line);
		if (!path)
			continue;
		rc = cli_abspath(cwd, path, abs, PATH_MAX);
		if (rc == 0)
			rc = cli_strv_push(out, abs, UINT64_MAX);
		if (rc < 0) {
			snprintf(err, errsz, "line %ld: %s", lineno, granary_strerror(rc));
			goto out;
		}
		count++;
	}
	if (ferror(f)) {
		rc = errno ? -errno : -EIO;
		snprintf(err, errsz, "line %ld: %s", lineno + 1, granary_strerror(rc));
	}
out:
	free(line);
	free(abs);
	return rc < 0 ? rc : count;
}

void cli_fmt_bytes(uint64_t b, char *buf, size_t n)
{
	static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
	double v = (double)b;
	int u = -1;

	if (b < 1024) {
		snprintf(buf, n, "%llu B", (unsigned long long)b);
		return;
	}
	while (v >= 1024 && u < 5) {
		v /= 1024;
		u++;
	}
	if (v < 10)
		snprintf(buf, n, "%.2f %s", v, units[u]);
	else if (v < 100)
		snprintf(buf, n, "%.1f %s", v, units[u]);
	else
		snprintf(buf, n, "%.0f %s", v, units[u]);
}

void cli_fmt_duration(double s, char *buf, size_t n)
{
	unsigned long long t, d, h, m, sec;

	if (!(s >= 0) || s > 100.0 * 86400) {
		snprintf(buf, n, "--:--");
		return;
	}
	t = (unsigned long long)(s + 0.5);
	if (t < 60) {
		snprintf(buf, n, "%llus", t);
		return;
	}
	d = t / 86400;
	h = t / 3600 % 24;
	m = t / 60 % 60;
	sec = t % 60;
	if (d)
		snprintf(buf, n, "%llud %02llu:%02llu:%02llu", d, h, m, sec);
	else if (h)
		snprintf(buf, n, "%llu:%02llu:%02llu", h, m, sec);
	else
		snprintf(buf, n, "%llu:%02llu", m, sec);
}

void cli_fmt_percent(double num, double den, char *buf, size_t n)
{
	if (!(den > 0)) {
		snprintf(buf, n, "-");
		return;
	}
	snprintf(buf, n, "%.1f%%", 100.0 * num / den);
}

void cli_progress_add(struct cli_progress *p, uint64_t size, int source, int error)
{
	p->done_files++;
	if (error) {
		p->failed++;
		return;
	}
	p->done_bytes += size;
	switch (source) {
	case GRANARY_SRC_LOCAL:
		p->cached++;
		break;
	case GRANARY_SRC_DIRECT:
		p->direct++;
		break;
	default:
		p->fetched++;
		break;
	}
}

/* Rates over the time since the start; 0 before any time has passed. */
static void progress_rates(const struct cli_progress *p, double now, double *mbps, double *fps)
{
	double dt = now - p->start;

	*mbps = dt > 0 ? (double)p->done_bytes / dt / 1e6 : 0;
	*fps = dt > 0 ? (double)p->done_files / dt : 0;
}

/* Seconds left, by bytes when every size is known, else by files; -1 unknown. */
static double progress_eta(const struct cli_progress *p, double now)
{
	double dt = now - p->start;

	if (dt <= 0)
		return -1;
	if (p->done_files >= p->total_files)
		return 0;
	if (p->bytes_known && p->total_bytes && p->done_bytes) {
		double rate = (double)p->done_bytes / dt;
		uint64_t left = p->total_bytes > p->done_bytes ? p->total_bytes - p->done_bytes : 0;

		return (double)left / rate;
	}
	if (p->done_files)
		return (double)(p->total_files - p->done_files) * dt / (double)p->done_files;
	return -1;
}

void cli_progress_bar(const struct cli_progress *p, double now, int width, char *buf, size_t n)
{
	char done_b[32], total_b[32], eta[32], bytes[80], tail[256];
	double mbps, fps, frac;
	int bar, filled, len;

	progress_rates(p, now, &mbps, &fps);
	cli_fmt_bytes(p->done_bytes, done_b, sizeof(done_b));
	if (p->bytes_known) {
		cli_fmt_bytes(p->total_bytes, total_b, sizeof(total_b));
		snprintf(bytes, sizeof(bytes), "%s/%s", done_b, total_b);
	} else {
		snprintf(bytes, sizeof(bytes), "%s", done_b);
	}
	cli_fmt_duration(progress_eta(p, now), eta, sizeof(eta));
	len = snprintf(tail, sizeof(tail), " %llu/%llu files  %s  %.1f MB/s  %.0f files/s  ETA %s",
		       (unsigned long long)p->done_files, (unsigned long long)p->total_files, bytes,
		       mbps, fps, eta);
	if (p->failed)
		snprintf(tail + len, sizeof(tail) - (size_t)len, "  %llu failed",
			 (unsigned long long)p->failed);
	len = (int)strlen(tail);

	/* "[" bar "]" tail: the bar gets what is left, at least 10 or none */
	bar = width - len - 2;
	if (bar > 40)
		bar = 40;
	if (bar < 10) {
		snprintf(buf, n, "%s", tail + 1);
		if (width > 0 && (size_t)width < n)
			buf[width] = '\0';
		return;
	}
	if (p->bytes_known && p->total_bytes)
		frac = (double)p->done_bytes / (double)p->total_bytes;
	else
		frac = p->total_files ? (double)p->done_files / (double)p->total_files : 1;
	if (frac > 1)
		frac = 1;
	filled = (int)(frac * bar);
	if ((size_t)(bar + 3) + (size_t)len >= n) {
		snprintf(buf, n, "%s", tail + 1);
		return;
	}
	buf[0] = '[';
	memset(buf + 1, '#', (size_t)filled);
	memset(buf + 1 + filled, '.', (size_t)(bar - filled));
	buf[1 + bar] = ']';
	memcpy(buf + 2 + bar, tail, (size_t)len + 1);
}

void cli_progress_plain(const struct cli_progress *p, double now, char *buf, size_t n)
{
	char done_b[32], eta[32];
	double mbps, fps;

	progress_rates(p, now, &mbps, &fps);
	cli_fmt_bytes(p->done_bytes, done_b, sizeof(done_b));
	cli_fmt_duration(progress_eta(p, now), eta, sizeof(eta));
	snprintf(buf, n, "warm: %llu/%llu files, %s, %.1f MB/s, %.0f files/s, %llu failed, ETA %s",
		 (unsigned long long)p->done_files, (unsigned long long)p->total_files, done_b,
		 mbps, fps, (unsigned long long)p->failed, eta);
}

void cli_progress_summary(const struct cli_progress *p, double now, char *buf, size_t n)
{
	int len;

	len = snprintf(buf, n,
		       "warmed %llu files (%llu bytes) in %.1f s: %llu fetched, %llu already "
		       "cached, %llu failed",
		       (unsigned long long)(p->done_files - p->failed),
		       (unsigned long long)p->done_bytes, now - p->start > 0 ? now - p->start : 0,
		       (unsigned long long)p->fetched, (unsigned long long)p->cached,
		       (unsigned long long)p->failed);
	if (p->direct && len > 0 && (size_t)len < n)
		snprintf(buf + len, n - (size_t)len, ", %llu not kept (cache policy)",
			 (unsigned long long)p->direct);
}

int cli_table_init(struct cli_table *t, size_t ncols)
{
	memset(t, 0, sizeof(*t));
	t->ncols = ncols;
	t->right = calloc(ncols, sizeof(*t->right));
	return t->right ? 0 : -ENOMEM;
}

void cli_table_fini(struct cli_table *t)
{
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t->right);
	memset(t, 0, sizeof(*t));
}

int cli_table_row(struct cli_table *t, const char *const *cells)
{
	if (t->nrows == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 8;
		char **c = realloc(t->cells, cap * t->ncols * sizeof(*c));

		if (!c)
			return -ENOMEM;
		t->cells = c;
		t->cap = cap;
	}
	for (size_t j = 0; j < t->ncols; j++) {
		char *s = strdup(cells[j] ? cells[j] : "");

		if (!s) {
			for (size_t k = 0; k < j; k++)
				free(t->cells[t->nrows * t->ncols + k]);
			return -ENOMEM;
		}
		t->cells[t->nrows * t->ncols + j] = s;
	}
	t->nrows++;
	return 0;
}

void cli_table_print(const struct cli_table *t, FILE *out, int indent)
{
	size_t *w = calloc(t->ncols ? t->ncols : 1, sizeof(*w));

	if (!w)
		return;
	for (size_t i = 0; i < t->nrows; i++)
		for (size_t j = 0; j < t->ncols; j++) {
			size_t l = strlen(t->cells[i * t->ncols + j]);

			if (l > w[j])
				w[j] = l;
		}
	for (size_t i = 0; i < t->nrows; i++) {
		fprintf(out, "%*s", indent, "");
		for (size_t j = 0; j < t->ncols; j++) {
			const char *c = t->cells[i * t->ncols + j];
			bool last = j + 1 == t->ncols;

			if (t->right[j])
				fprintf(out, "%*s", (int)w[j], c);
			else if (last)
				fputs(c, out);
			else
				fprintf(out, "%-*s", (int)w[j], c);
			if (!last)
				fputs("  ", out);
		}
		fputc('\n', out);
	}
	free(w);
}

/* A number member of @o as a double; false when absent or not a number. */
static bool json_num(json_t *o, const char *key, double *v)
{
	json_t *x = o ? json_object_get(o, key) : NULL;

	if (!x || !json_is_number(x))
		return false;
	*v = json_number_value(x);
	return true;
}

static bool json_u64(json_t *o, const char *key, uint64_t *v)
{
	json_t *x = o ? json_object_get(o, key) : NULL;

	if (x && json_is_integer(x)) {
		json_int_t i = json_integer_value(x);

		*v = i < 0 ? 0 : (uint64_t)i;
		return true;
	}
	if (x && json_is_real(x)) {
		double d = json_real_value(x);

		*v = d < 0 ? 0 : (uint64_t)d;
		return true;
	}
	return false;
}

/* A member as text: strings as they are, numbers and booleans printed. */
static bool json_text(json_t *o, const char *key, char *buf, size_t n)
{
	json_t *x = o ? json_object_get(o, key) : NULL;

	if (!x)
		return false;
	if (json_is_string(x))
		snprintf(buf, n, "%s", json_string_value(x));
	else if (json_is_integer(x))
		snprintf(buf, n, "%lld", (long long)json_integer_value(x));
	else if (json_is_real(x))
		snprintf(buf, n, "%g", json_real_value(x));
	else if (json_is_boolean(x))
		snprintf(buf, n, "%s", json_is_true(x) ? "yes" : "no");
	else
		return false;
	return true;
}

static void json_bytes(json_t *o, const char *key, char *buf, size_t n)
{
	uint64_t v;

	if (json_u64(o, key, &v))
		cli_fmt_bytes(v, buf, n);
	else
		snprintf(buf, n, "-");
}

static void json_count(json_t *o, const char *key, char *buf, size_t n)
{
	uint64_t v;

	if (json_u64(o, key, &v))
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

static const char *backend_name(json_t *m, char *buf, size_t n)
{
	json_t *x = json_object_get(m, "backend");

	if (x && json_is_integer(x)) {
		switch (json_integer_value(x)) {
		case GRANARY_BE_POSIX:
			return "posix";
		case GRANARY_BE_HTTP:
			return "http";
		case GRANARY_BE_S3:
			return "s3";
		}
	}
	if (!json_text(m, "backend", buf, n))
		snprintf(buf, n, "-");
	return buf;
}

static json_t *status_parse(const char *json, char *err, size_t errsz)
{
	json_error_t je;
	json_t *root = json_loads(json, 0, &je);

	if (!root) {
		snprintf(err, errsz, "bad status document: %s (line %d)", je.text, je.line);
		return NULL;
	}
	if (!json_is_object(root)) {
		snprintf(err, errsz, "bad status document: not an object");
		json_decref(root);
		return NULL;
	}
	return root;
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

	root = status_parse(json, err, errsz);
	if (!root)
		return -EINVAL;
	if (cli_table_init(&t, 2) < 0) {
		json_decref(root);
		return -ENOMEM;
	}
	cache = json_object_get(root, "cache");
	ctr = json_object_get(root, "counters");

	if (json_text(root, "version", a, sizeof(a))) {
		int len = snprintf(line, sizeof(line), "%s", a);

		if (json_text(root, "pid", b, sizeof(b)))
			len += snprintf(line + len, sizeof(line) - (size_t)len, " (pid %s", b);
		if (json_num(root, "uptime_s", &d1)) {
			cli_fmt_duration(d1, c, sizeof(c));
			len += snprintf(line + len, sizeof(line) - (size_t)len, "%s up %s",
					strchr(line, '(') ? "," : " (", c);
		}
		if (strchr(line, '('))
			snprintf(line + len, sizeof(line) - (size_t)len, ")");
		kv(&t, "granaryd", line);
	}
	if (json_text(root, "policy", a, sizeof(a)))
		kv(&t, "policy", a);
	if (json_text(root, "io", a, sizeof(a)))
		kv(&t, "io", a);
	if (json_is_object(cache)) {
		if (json_text(cache, "dir", line, sizeof(line)))
			kv(&t, "cache", line);
		if (json_u64(cache, "used", &u1)) {
			cli_fmt_bytes(u1, a, sizeof(a));
			if (json_u64(cache, "capacity", &u2) && u2) {
				cli_fmt_bytes(u2, b, sizeof(b));
				cli_fmt_percent((double)u1, (double)u2, c, sizeof(c));
				snprintf(line, sizeof(line), "%s of %s (%s)", a, b, c);
			} else {
				snprintf(line, sizeof(line), "%s", a);
			}
			kv(&t, "used", line);
		} else if (json_u64(cache, "capacity", &u2)) {
			cli_fmt_bytes(u2, a, sizeof(a));
			kv(&t, "capacity", a);
		}
		if (json_u64(cache, "objects", &u1)) {
			snprintf(line, sizeof(line), "%llu", (unsigned long long)u1);
			kv(&t, "objects", line);
		}
		if (json_num(cache, "high_watermark", &d1) &&
		    json_num(cache, "low_watermark", &d2)) {
			fmt_ratio(d1, a, sizeof(a));
			fmt_ratio(d2, b, sizeof(b));
			snprintf(line, sizeof(line), "high %s, low %s", a, b);
			kv(&t, "watermarks", line);
		}
	}
	if (json_is_object(ctr)) {
		if (json_u64(ctr, "opens", &u1)) {
			snprintf(line, sizeof(line), "%llu", (unsigned long long)u1);
			kv(&t, "opens", line);
		}
		if (json_u64(ctr, "hits", &u1) && json_u64(ctr, "misses", &u2)) {
			cli_fmt_percent((double)u1, (double)(u1 + u2), a, sizeof(a));
			snprintf(line, sizeof(line), "%s (%llu hits, %llu misses)", a,
				 (unsigned long long)u1, (unsigned long long)u2);
			kv(&t, "hit ratio", line);
		}
		if (json_u64(ctr, "bytes_local", &u1) && json_u64(ctr, "bytes_backend", &u2)) {
			cli_fmt_bytes(u1, a, sizeof(a));
			cli_fmt_bytes(u2, b, sizeof(b));
			if (json_u64(ctr, "bytes_peer", &u3)) {
				cli_fmt_bytes(u3, c, sizeof(c));
				snprintf(line, sizeof(line), "%s local, %s backend, %s peer", a, b,
					 c);
			} else {
				snprintf(line, sizeof(line), "%s local, %s backend", a, b);
			}
			kv(&t, "served", line);
		}
		if (json_u64(ctr, "evictions", &u1)) {
			snprintf(line, sizeof(line), "%llu", (unsigned long long)u1);
			kv(&t, "evictions", line);
		}
		if (json_u64(ctr, "fetch_errors", &u1)) {
			snprintf(line, sizeof(line), "%llu", (unsigned long long)u1);
			kv(&t, "fetch errors", line);
		}
		if (json_u64(ctr, "inflight", &u1)) {
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

			row[1] = backend_name(x, be, sizeof(be));
			if (!json_text(x, "path", path, sizeof(path)))
				snprintf(path, sizeof(path), "-");
			if (!json_text(x, "consistency", cons, sizeof(cons)))
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

			if (!json_text(x, "name", name, sizeof(name)))
				snprintf(name, sizeof(name), "-");
			json_count(x, "epoch", ep, sizeof(ep));
			/* from the counts when they are there: 0 of 0 is "-", not 0% */
			if (json_u64(x, "hits", &u1) && json_u64(x, "misses", &u2))
				cli_fmt_percent((double)u1, (double)(u1 + u2), hr, sizeof(hr));
			else if (json_num(x, "hit_ratio", &d1))
				fmt_ratio(d1, hr, sizeof(hr));
			else
				snprintf(hr, sizeof(hr), "-");
			if (json_u64(x, "prev_hits", &u1) && json_u64(x, "prev_misses", &u2))
				cli_fmt_percent((double)u1, (double)(u1 + u2), prev, sizeof(prev));
			else if (json_num(x, "prev_hit_ratio", &d1))
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

	root = status_parse(json, err, errsz);
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
			json_text(ctr, key, val, sizeof(val));
		else
			continue;
		cli_table_row(&t, row);
	}
	if (json_u64(ctr, "hits", &hits) && json_u64(ctr, "misses", &misses)) {
		const char *row[2] = {"hit_ratio", val};

		cli_fmt_percent((double)hits, (double)(hits + misses), val, sizeof(val));
		cli_table_row(&t, row);
	}
	cli_table_print(&t, out, 0);
	cli_table_fini(&t);
	json_decref(root);
	return 0;
}

/* ---------------------------------------------------------------- top */

int cli_parse_seconds(const char *s, double min, double max, double *out)
{
	char *end;
	double v;

	if (!s || !(isdigit((unsigned char)s[0]) || s[0] == '.') || strpbrk(s, "xX"))
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (end == s || errno == ERANGE)
		return -EINVAL;
	if (*end == 's')
		end++;
	if (*end || !(v == v) || v > 1e300)
		return -EINVAL;
	if (v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

void cli_fmt_rate(double per_s, char *buf, size_t n)
{
	double a = per_s < 0 ? -per_s : per_s;
	const char *sign = per_s < 0 ? "-" : "";

	if (!(a >= 0.05))
		snprintf(buf, n, "0/s");
	else if (a < 9.95)
		snprintf(buf, n, "%s%.1f/s", sign, a);
	else if (a < 9999.5)
		snprintf(buf, n, "%s%.0f/s", sign, a);
	else if (a < 999.95e3)
		snprintf(buf, n, "%s%.1fk/s", sign, a / 1e3);
	else if (a < 999.95e6)
		snprintf(buf, n, "%s%.1fM/s", sign, a / 1e6);
	else
		snprintf(buf, n, "%s%.1fG/s", sign, a / 1e9);
}

void cli_fmt_rate_bytes(double bytes_per_s, char *buf, size_t n)
{
	char b[32];

	if (!(bytes_per_s > 0))
		snprintf(b, sizeof(b), "0 B");
	else if (bytes_per_s >= 1.8e19)
		cli_fmt_bytes(UINT64_MAX, b, sizeof(b));
	else
		cli_fmt_bytes((uint64_t)(bytes_per_s + 0.5), b, sizeof(b));
	snprintf(buf, n, "%s/s", b);
}

void cli_fmt_bar(uint64_t used, uint64_t cap, int width, char *buf, size_t n)
{
	int inner, filled = 0;

	if (width < 3)
		width = 3;
	if ((size_t)width >= n) {
		if (n)
			buf[0] = '\0';
		return;
	}
	inner = width - 2;
	if (cap && used >= cap)
		filled = inner;
	else if (cap)
		filled = (int)((double)used / (double)cap * inner);
	buf[0] = '[';
	memset(buf + 1, '#', (size_t)filled);
	memset(buf + 1 + filled, '.', (size_t)(inner - filled));
	buf[width - 1] = ']';
	buf[width] = '\0';
}

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
		json_u64(o, f[i].key, (uint64_t *)((char *)s + f[i].off));
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

	snprintf(m->backend, sizeof(m->backend), "%s", backend_name(x, be, sizeof(be)));
	json_u64(x, "hits", &m->hits);
	json_u64(x, "misses", &m->misses);
	json_u64(x, "objects", &m->objects);
	json_u64(x, "bytes", &m->bytes);
	m->has_fetch = json_u64(x, "fetches", &m->fetches);
	json_u64(x, "fetch_errors", &m->fetch_errors);
	json_num(x, "fetch_seconds", &m->fetch_seconds);
	if (json_is_object(h)) {
		json_u64(h, "paths", &m->hint_paths);
		json_u64(h, "position", &m->hint_position);
		json_u64(h, "prefetched", &m->prefetched);
		json_u64(h, "prefetch_failed", &m->prefetch_failed);
		json_u64(h, "prefetch_inflight", &m->prefetch_inflight);
		if (!json_text(h, "phase", m->hint_phase, sizeof(m->hint_phase)))
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
	root = status_parse(json, err, errsz);
	if (!root)
		return -EINVAL;
	s->t = t;
	s->wall = wall;
	if (json_num(root, "pid", &d))
		s->pid = (long long)d;
	json_num(root, "uptime_s", &s->uptime);
	if (!json_text(root, "version", s->version, sizeof(s->version)))
		snprintf(s->version, sizeof(s->version), "-");
	read_fields(json_object_get(root, "counters"), counter_fields,
		    sizeof(counter_fields) / sizeof(counter_fields[0]), s);
	read_fields(json_object_get(root, "cache"), cache_fields,
		    sizeof(cache_fields) / sizeof(cache_fields[0]), s);
	x = json_object_get(root, "qos");
	if (json_is_object(x)) {
		s->has_qos = true;
		read_fields(x, qos_fields, sizeof(qos_fields) / sizeof(qos_fields[0]), s);
		json_num(x, "fg_wait_max_ms", &s->fg_wait_max_ms);
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
			json_u64(x, "epoch", &ds->epoch);
			json_u64(x, "hits", &ds->hits);
			json_u64(x, "misses", &ds->misses);
			json_u64(x, "prev_hits", &ds->prev_hits);
			json_u64(x, "prev_misses", &ds->prev_misses);
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
