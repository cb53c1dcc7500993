/*
 * cli_util.h - the pure logic of the `granary` CLI: number and path parsing,
 * manifests, human units, the warm progress line and summary, status tables.
 *
 * Owns nothing global and does no I/O on the daemon, so the unit tests can
 * drive it directly. Lives in the static granary_client library only; it is
 * not part of libgranary's public API.
 */
#ifndef GRANARY_CLI_UTIL_H
#define GRANARY_CLI_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

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

/* "0 B", "512 B", "1.5 KiB", "12.0 MiB", "3.21 GiB", "1.00 TiB" */
void cli_fmt_bytes(uint64_t b, char *buf, size_t n);

/* "42s", "3:07", "1:02:03", "2d 03:00:00"; "--:--" for negative or huge */
void cli_fmt_duration(double s, char *buf, size_t n);

/* "81.3%" of @num/@den, "-" when @den is 0 */
void cli_fmt_percent(double num, double den, char *buf, size_t n);

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

/*
 * Print the daemon's status document (JSON text) for people: aligned
 * key/value lines with units, then the mounts and datasets tables. Fields that
 * are missing are left out. Returns 0, or -EINVAL with the parse error in @err.
 */
int cli_status_print(const char *json, FILE *out, char *err, size_t errsz);

/* Print the "counters" object of a status document, one per line. */
int cli_stats_print(const char *json, FILE *out, char *err, size_t errsz);

#endif
