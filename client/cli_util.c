/* cli_util.c - formatting and parsing for the granary CLI (see cli_util.h). */
#include "cli_util.h"
#include "granary.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
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
			if (json_num(x, "hit_ratio", &d1))
				fmt_ratio(d1, hr, sizeof(hr));
			else if (json_u64(x, "hits", &u1) && json_u64(x, "misses", &u2))
				cli_fmt_percent((double)u1, (double)(u1 + u2), hr, sizeof(hr));
			else
				snprintf(hr, sizeof(hr), "-");
			if (json_num(x, "prev_hit_ratio", &d1))
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
