/*
 * cli_progress.c - the progress of `granary warm`: counting finished files, the
 * terminal bar, the periodic line for logs and the closing summary
 * (cli_util.h).
 */
#include "cli_util.h"
#include "granary.h"

#include <stdio.h>
#include <string.h>

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
