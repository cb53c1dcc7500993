/*
 * cli_util.h - the pure logic of the `granary` CLI: number and path parsing,
 * manifests, human units, the warm progress line and summary, status tables,
 * and the samples, rates and screen of `granary top`.
 *
 * Owns nothing global and does no I/O on the daemon, so the unit tests can
 * drive it directly. Lives in the static granary_client library only; it is
 * not part of libgranary's public API. One header for the files below, each
 * section named after the file that implements it; cli_json.h is the
 * private part cli_status.c and cli_top.c share.
 */
#ifndef GRANARY_CLI_UTIL_H
#define GRANARY_CLI_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

/* ---- cli_parse.c: arguments, paths, manifests ---- */

/* A growable array of owned strings. */
struct cli_strv {
	char **v;
	uint64_t *sizes; /* per string; UINT64_MAX when unknown */
	size_t n, cap;
};

void cli_strv_init(struct cli_strv *s);
void cli_strv_fini(struct cli_strv *s);
/* Append a copy of @str with @size. 0 or -ENOMEM. */
int cli_strv_push(struct cli_strv *s, const char *str, uint64_t size);

/*
 * Parse a decimal unsigned integer in [@min, @max]. Returns 0 or -EINVAL
 * (not a number, trailing junk, sign) / -ERANGE.
 */
int cli_parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out);

/*
 * Parse a duration in seconds ("0.5", "2", "1.5s") into [@min, @max].
 * Returns 0, -EINVAL (not a number, junk, not finite) or -ERANGE.
 */
int cli_parse_seconds(const char *s, double min, double max, double *out);

/*
 * Make @in absolute against @cwd and resolve ".", ".." and repeated slashes
 * lexically (symbolic links are not followed: mount prefixes are matched as
 * written). Returns 0, -EINVAL (empty), -ENAMETOOLONG.
 */
int cli_abspath(const char *cwd, const char *in, char *out, size_t outsz);

/*
 * One manifest line, edited in place: strips the newline, surrounding blanks
 * and '#' comments (a '#' at the start of the line or after a blank). Returns
 * the path, or NULL for a line with none.
 */
char *cli_manifest_line(char *line);

/*
 * Read a manifest (one path per line) from @f, each made absolute against
 * @cwd, appended to @out with unknown size. Returns the number of paths read,
 * or -errno with "LINE: what" in @err.
 */
long cli_manifest_read(FILE *f, const char *cwd, struct cli_strv *out, char *err, size_t errsz);

/* ---- cli_format.c: numbers and tables for people ---- */

/* A backend's name from its number (enum granary_backend), "?" when unknown. */
const char *cli_backend_name(uint32_t backend);

/* "0 B", "512 B", "1.5 KiB", "12.0 MiB", "3.21 GiB", "1.00 TiB" */
void cli_fmt_bytes(uint64_t b, char *buf, size_t n);

/* "42s", "3:07", "1:02:03", "2d 03:00:00"; "--:--" for negative or huge */
void cli_fmt_duration(double s, char *buf, size_t n);

/* "81.3%" of @num/@den, "-" when @den is 0 */
void cli_fmt_percent(double num, double den, char *buf, size_t n);

/* "0/s", "0.5/s", "42/s", "1234/s", "12.3k/s", "4.56M/s" */
void cli_fmt_rate(double per_s, char *buf, size_t n);

/* "0 B/s", "45.0 MiB/s": cli_fmt_bytes of the rounded rate, per second */
void cli_fmt_rate_bytes(double bytes_per_s, char *buf, size_t n);

/*
 * "[######..............]" in exactly @width columns (at least 3) for
 * @used of @cap; full when @used exceeds @cap, empty when @cap is 0.
 */
void cli_fmt_bar(uint64_t used, uint64_t cap, int width, char *buf, size_t n);

/* A table printed with columns padded to their widest cell. */
struct cli_table {
	size_t ncols, nrows, cap;
	char **cells; /* nrows * ncols, owned */
	bool *right;  /* per column: align right (numbers) */
};

int cli_table_init(struct cli_table *t, size_t ncols);
void cli_table_fini(struct cli_table *t);
/* Append a row of ncols cells (copied). */
int cli_table_row(struct cli_table *t, const char *const *cells);
/* Print with @indent spaces and two spaces between columns. */
void cli_table_print(const struct cli_table *t, FILE *out, int indent);

/* ---- cli_progress.c: the progress of a warm ---- */

/* Progress of a warm, as the CLI counts it. */
struct cli_progress {
	uint64_t total_files, total_bytes;
	bool bytes_known; /* every file's size was known before the warm */
	uint64_t done_files, done_bytes;
	uint64_t fetched, cached, direct, failed;
	double start; /* seconds, any clock */
};

/* Count one finished file (source as enum granary_source, error 0 or -errno). */
void cli_progress_add(struct cli_progress *p, uint64_t size, int source, int error);

/*
 * The terminal line: "[#####.....] 120/1000 files  1.2/9.8 GiB  45.0 MB/s
 * 30 files/s  ETA 0:30", fitted into @width columns (the bar shrinks, then
 * goes). @now is on the clock of p->start.
 */
void cli_progress_bar(const struct cli_progress *p, double now, int width, char *buf, size_t n);

/* The periodic line for logs: "warm: 120/1000 files, 1.2 GiB, 45.0 MB/s, ..." */
void cli_progress_plain(const struct cli_progress *p, double now, char *buf, size_t n);

/*
 * "warmed N files (B bytes) in T s: F fetched, C already cached, X failed"
 * (", D not kept" added when the policy declined some).
 */
void cli_progress_summary(const struct cli_progress *p, double now, char *buf, size_t n);

/* ---- cli_status.c: the status document for people ---- */

/*
 * Print the daemon's status document (JSON text) for people: aligned
 * key/value lines with units, then the mounts and datasets tables. Fields that
 * are missing are left out. Returns 0, or -EINVAL with the parse error in @err.
 */
int cli_status_print(const char *json, FILE *out, char *err, size_t errsz);

/* Print the "counters" object of a status document, one per line. */
int cli_stats_print(const char *json, FILE *out, char *err, size_t errsz);

/* ---- cli_top.c: granary top ---- */

/* One mount of a status document, as `granary top` uses it. */
struct cli_top_mount {
	char *path;
	char backend[16];
	uint64_t hits, misses, objects, bytes;
	/*
	 * Per-mount fetch statistics, when the daemon reports them ("fetches",
	 * "fetch_errors" and "fetch_seconds", the summed duration of the
	 * fetches): the source of fetches/s, errors/s and latency per backend.
	 */
	bool has_fetch;
	uint64_t fetches, fetch_errors;
	double fetch_seconds;
	/* The hinted order of the mount ("hint"), when one was sent. */
	uint64_t hint_paths, hint_position, prefetched, prefetch_failed, prefetch_inflight;
	char hint_phase[24];
};

/* One dataset: counts of the current and the previous epoch. */
struct cli_top_dataset {
	char *name;
	uint64_t epoch, hits, misses, prev_hits, prev_misses;
};

/* What `granary top` reads from one status document. */
struct cli_top_sample {
	double t;      /* when it was taken: seconds on a monotonic clock */
	time_t wall;   /* the same moment on the wall clock, for the header */
	long long pid; /* of the daemon: a new pid means counters restarted */
	double uptime;
	char version[32];
	uint64_t opens, hits, misses, fast_hits;
	uint64_t bytes_local, bytes_backend, bytes_peer, bytes_direct;
	uint64_t fetches, fetch_errors, evictions, not_admitted, corrupt;
	uint64_t inflight; /* a gauge, not a counter */
	uint64_t used, capacity, objects;
	bool has_qos;
	uint64_t fg_inflight, bg_inflight, fg_queued, bg_queued;
	double fg_wait_max_ms;
	size_t nmounts, ndatasets;
	struct cli_top_mount *mounts;
	struct cli_top_dataset *datasets;
};

/*
 * Fill @s from the status document @json taken at @t (monotonic) and @wall.
 * Missing fields read as 0. Returns 0, -EINVAL with the reason in @err, or
 * -ENOMEM. On success release @s with cli_top_sample_fini().
 */
int cli_top_parse(const char *json, double t, time_t wall, struct cli_top_sample *s, char *err,
		  size_t errsz);
void cli_top_sample_fini(struct cli_top_sample *s);

/*
 * Per second between two readings of a counter @dt seconds apart. A counter
 * that went backwards was reset, so its whole new value is counted. 0 when
 * @dt is not positive.
 */
double cli_top_rate(uint64_t prev, uint64_t cur, double dt);

/*
 * Share of hits among the hits and misses added between two readings,
 * in [0, 1]; -1 when there were none (or a reading went backwards).
 */
double cli_top_ratio(uint64_t hits0, uint64_t misses0, uint64_t hits1, uint64_t misses1);

/* Rates of the daemon-wide counters between two samples. */
struct cli_top_rates {
	double dt;
	double opens, hits, misses, fast_hits;
	double bytes_local, bytes_backend, bytes_peer, bytes_direct;
	double fetches, fetch_errors, evictions, not_admitted;
	double hit_ratio; /* of the interval; -1 when nothing was looked up */
};

/*
 * The rates from @prev to @cur. Returns 0; -ESTALE when the samples come
 * from different daemon processes, -EINVAL when @cur is not later than
 * @prev: then the rates are 0 and the ratio -1.
 */
int cli_top_rates(const struct cli_top_sample *prev, const struct cli_top_sample *cur,
		  struct cli_top_rates *r);

/*
 * Write one screen of `granary top` to @out as plain text: the header (with
 * @note appended when not NULL), cache use, hit ratios over the interval and
 * since the start, rates by source, fetches, errors, QoS, the slowest backend
 * when the daemon reports per-mount fetch times, then the mounts, hinted
 * orders and datasets. @prev (NULL for none yet, or from another daemon
 * process) gives the interval; its values show as "-" without it. @width is
 * the screen's width, for the cache bar.
 */
void cli_top_render(const struct cli_top_sample *prev, const struct cli_top_sample *cur,
		    double interval, int width, const char *note, FILE *out);

/*
 * Copy @text to @out for a screen of @width columns and @height rows (0: no
 * limit): lines are cut at @width (never inside a UTF-8 sequence) and at
 * most @height are written. Without @ansi each line ends with a newline.
 * With @ansi each is followed by "erase to end of line", the last one by
 * "erase to end of screen" and no newline, so the screen never scrolls.
 */
void cli_top_fit(const char *text, int width, int height, bool ansi, FILE *out);

#endif
