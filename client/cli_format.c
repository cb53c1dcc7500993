/*
 * cli_format.c - numbers for people (sizes, durations, percentages, rates,
 * bars) and the tables whose columns are padded to their widest cell
 * (cli_util.h).
 */
#include "cli_util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "granary.h"

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

const char *cli_backend_name(uint32_t backend)
{
	switch (backend) {
	case GRANARY_BE_POSIX:
		return "posix";
	case GRANARY_BE_HTTP:
		return "http";
	case GRANARY_BE_S3:
		return "s3";
	}
	return "?";
}
