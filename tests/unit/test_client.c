/*
 * test_client.c - libgranary and the CLI's pure logic.
 *
 * The CLI helpers (cli_*.c, cli_util.h) are called directly. The library is driven
 * against a scripted server thread on a socket in a temporary directory: it
 * answers in batches and in reverse order, passes descriptors, pages
 * listings and hangs up on demand, which is what libgranary must survive.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli_util.h"
#include "granary.h"
#include "proto.h"

/* ------------------------------------------------------------ pure logic */

static void test_parse_uint(void **state)
{
	unsigned long v = 0;

	(void)state;
	assert_int_equal(cli_parse_uint("16", 1, 1024, &v), 0);
	assert_int_equal(v, 16);
	assert_int_equal(cli_parse_uint("1024", 1, 1024, &v), 0);
	assert_int_equal(cli_parse_uint("0", 1, 1024, &v), -ERANGE);
	assert_int_equal(cli_parse_uint("1025", 1, 1024, &v), -ERANGE);
	assert_int_equal(cli_parse_uint("-3", 1, 1024, &v), -EINVAL);
	assert_int_equal(cli_parse_uint("12x", 1, 1024, &v), -EINVAL);
	assert_int_equal(cli_parse_uint("", 1, 1024, &v), -EINVAL);
	assert_int_equal(cli_parse_uint(" 4", 1, 1024, &v), -EINVAL);
	assert_int_equal(cli_parse_uint("99999999999999999999999", 0, 10, &v), -ERANGE);
}

static void test_abspath(void **state)
{
	char out[64];

	(void)state;
	assert_int_equal(cli_abspath("/home/u", "data/x.jpg", out, sizeof(out)), 0);
	assert_string_equal(out, "/home/u/data/x.jpg");
	assert_int_equal(cli_abspath("/home/u", "../v/./y//z/", out, sizeof(out)), 0);
	assert_string_equal(out, "/home/v/y/z");
	assert_int_equal(cli_abspath("/home/u", "/mnt/nas/../../..", out, sizeof(out)), 0);
	assert_string_equal(out, "/");
	assert_int_equal(cli_abspath("/", ".", out, sizeof(out)), 0);
	assert_string_equal(out, "/");
	assert_int_equal(cli_abspath("/a", "", out, sizeof(out)), -EINVAL);
	assert_int_equal(cli_abspath(NULL, "rel", out, sizeof(out)), -EINVAL);
	assert_int_equal(cli_abspath("/a", "/0123456789/0123456789/0123456789", out, 20),
			 -ENAMETOOLONG);
}

static void test_manifest_line(void **state)
{
	char a[] = "  /mnt/nas/a.jpg  \n", b[] = "# a comment\n", c[] = "\t\r\n";
	char d[] = "/x/b#c.jpg # trailing\n", e[] = "/x/y\r\n", f[] = "";

	(void)state;
	assert_string_equal(cli_manifest_line(a), "/mnt/nas/a.jpg");
	assert_null(cli_manifest_line(b));
	assert_null(cli_manifest_line(c));
	/* '#' inside a name is part of it; after a blank it starts a comment */
	assert_string_equal(cli_manifest_line(d), "/x/b#c.jpg");
	assert_string_equal(cli_manifest_line(e), "/x/y");
	assert_null(cli_manifest_line(f));
}

static void test_manifest_read(void **state)
{
	static const char text[] = "# order of epoch 3\n"
				   "/mnt/nas/train/a.jpg\n"
				   "\n"
				   "train/b.jpg\n"
				   "   /mnt/nas/train/../val/c.jpg   # relative parts resolved\n"
				   "/mnt/nas/last-without-newline";
	struct cli_strv v;
	char err[128] = "";
	FILE *f;
	long n;

	(void)state;
	f = fmemopen((void *)text, strlen(text), "r");
	assert_non_null(f);
	cli_strv_init(&v);
	n = cli_manifest_read(f, "/mnt/nas", &v, err, sizeof(err));
	fclose(f);
	assert_int_equal(n, 4);
	assert_int_equal(v.n, 4);
	assert_string_equal(v.v[0], "/mnt/nas/train/a.jpg");
	assert_string_equal(v.v[1], "/mnt/nas/train/b.jpg");
	assert_string_equal(v.v[2], "/mnt/nas/val/c.jpg");
	assert_string_equal(v.v[3], "/mnt/nas/last-without-newline");
	assert_true(v.sizes[0] == UINT64_MAX);
	cli_strv_fini(&v);
}

static void test_fmt_bytes(void **state)
{
	char b[32];

	(void)state;
	cli_fmt_bytes(0, b, sizeof(b));
	assert_string_equal(b, "0 B");
	cli_fmt_bytes(1023, b, sizeof(b));
	assert_string_equal(b, "1023 B");
	cli_fmt_bytes(1536, b, sizeof(b));
	assert_string_equal(b, "1.50 KiB");
	cli_fmt_bytes(12ull << 20, b, sizeof(b));
	assert_string_equal(b, "12.0 MiB");
	cli_fmt_bytes(300ull << 30, b, sizeof(b));
	assert_string_equal(b, "300 GiB");
	cli_fmt_bytes(3ull << 40, b, sizeof(b));
	assert_string_equal(b, "3.00 TiB");
}

static void test_fmt_duration_percent(void **state)
{
	char b[32];

	(void)state;
	cli_fmt_duration(42.2, b, sizeof(b));
	assert_string_equal(b, "42s");
	cli_fmt_duration(187, b, sizeof(b));
	assert_string_equal(b, "3:07");
	cli_fmt_duration(3723, b, sizeof(b));
	assert_string_equal(b, "1:02:03");
	cli_fmt_duration(2 * 86400 + 3 * 3600, b, sizeof(b));
	assert_string_equal(b, "2d 03:00:00");
	cli_fmt_duration(-1, b, sizeof(b));
	assert_string_equal(b, "--:--");
	cli_fmt_percent(813, 1000, b, sizeof(b));
	assert_string_equal(b, "81.3%");
	cli_fmt_percent(0, 0, b, sizeof(b));
	assert_string_equal(b, "-");
}

static void test_progress(void **state)
{
	struct cli_progress p = {.total_files = 4, .total_bytes = 4000000, .bytes_known = true};
	char line[256];

	(void)state;
	p.start = 100.0;
	cli_progress_add(&p, 1000000, GRANARY_SRC_BACKEND, 0);
	cli_progress_add(&p, 1000000, GRANARY_SRC_LOCAL, 0);

	/* 2 MB in 2 s: 1 MB/s, 1 file/s, 2 MB left: 2 s to go */
	cli_progress_bar(&p, 102.0, 100, line, sizeof(line));
	assert_non_null(strstr(line, "2/4 files"));
	assert_non_null(strstr(line, "1.0 MB/s"));
	assert_non_null(strstr(line, "1 files/s"));
	assert_non_null(strstr(line, "ETA 2s"));
	assert_true(line[0] == '[');
	assert_true(strlen(line) <= 100);
	/* half the bytes: half the bar filled */
	{
		const char *end = strchr(line, ']');
		size_t bar = (size_t)(end - line - 1), hashes = 0;

		for (size_t i = 1; i <= bar; i++)
			hashes += line[i] == '#';
		assert_int_equal(hashes, bar / 2);
	}
	/* too narrow for a bar: the numbers alone, cut to the width */
	cli_progress_bar(&p, 102.0, 30, line, sizeof(line));
	assert_true(line[0] != '[');
	assert_true(strlen(line) <= 30);

	cli_progress_add(&p, 0, 0, -ENOENT);
	cli_progress_add(&p, 500, GRANARY_SRC_DIRECT, 0);
	cli_progress_plain(&p, 104.0, line, sizeof(line));
	assert_non_null(strstr(line, "4/4 files"));
	assert_non_null(strstr(line, "1 failed"));
	cli_progress_summary(&p, 104.0, line, sizeof(line));
	assert_string_equal(line, "warmed 3 files (2000500 bytes) in 4.0 s: 1 fetched, "
				  "1 already cached, 1 failed, 1 not kept (cache policy)");
}

static char *capture(int (*fn)(const char *, FILE *, char *, size_t), const char *json, int *rc)
{
	char *buf = NULL, err[256];
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	*rc = fn(json, f, err, sizeof(err));
	fclose(f);
	return buf;
}

static void test_status_print(void **state)
{
	static const char doc[] =
		"{\"version\":\"0.1.0\",\"pid\":42,\"uptime_s\":3723,\"policy\":\"epoch\","
		"\"cache\":{\"dir\":\"/var/cache/granary\",\"capacity\":1073741824,"
		"\"used\":268435456,\"objects\":7,\"high_watermark\":0.95,\"low_watermark\":0.9},"
		"\"counters\":{\"opens\":10,\"hits\":3,\"misses\":1,\"bytes_local\":2048,"
		"\"bytes_backend\":1048576},"
		"\"mounts\":[{\"path\":\"/mnt/nas\",\"backend\":\"posix\",\"consistency\":\"strict\","
		"\"objects\":7,\"bytes\":268435456},{\"path\":\"/granary/coco\",\"backend\":3}],"
		"\"datasets\":[{\"name\":\"imagenet\",\"epoch\":3,\"hit_ratio\":0.5,"
		"\"entries\":7,\"bytes\":1024},"
		"{\"name\":\"unread\",\"epoch\":1,\"hits\":0,\"misses\":0,\"hit_ratio\":0.0,"
		"\"prev_hits\":1,\"prev_misses\":3,\"prev_hit_ratio\":0.25}]}";
	char *out;
	int rc;

	(void)state;
	out = capture(cli_status_print, doc, &rc);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(out, "0.1.0 (pid 42, up 1:02:03)"));
	assert_non_null(strstr(out, "256 MiB of 1.00 GiB (25.0%)"));
	assert_non_null(strstr(out, "high 95.0%, low 90.0%"));
	assert_non_null(strstr(out, "75.0% (3 hits, 1 misses)"));
	assert_non_null(strstr(out, "2.00 KiB local, 1.00 MiB backend\n"));
	/* missing fields are left out or shown as "-", never invented */
	assert_null(strstr(out, "evictions"));
	assert_non_null(strstr(out, "/granary/coco  s3"));
	assert_non_null(strstr(out, "imagenet"));
	assert_non_null(strstr(out, "50.0%"));
	/* a dataset not read in this epoch has no ratio yet, which is not 0% */
	{
		const char *u = strstr(out, "unread");
		char line[128];

		assert_non_null(u);
		snprintf(line, sizeof(line), "%.*s", (int)strcspn(u, "\n"), u);
		assert_null(strstr(line, "0.0%"));
		assert_non_null(strstr(line, " -  "));
		assert_non_null(strstr(line, "25.0%"));
	}
	/* columns line up: every row of the mounts table starts its BACKEND at one column */
	{
		const char *h = strstr(out, "PATH"), *r = strstr(out, "/mnt/nas  ");
		const char *hl = h, *rl = r;

		assert_non_null(h);
		assert_non_null(r);
		while (hl > out && hl[-1] != '\n')
			hl--;
		while (rl > out && rl[-1] != '\n')
			rl--;
		assert_int_equal(strstr(h, "BACKEND") - hl, strstr(r, "posix") - rl);
	}
	free(out);

	out = capture(cli_status_print, "{}", &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(out, "");
	free(out);
	out = capture(cli_status_print, "{\"version\":", &rc);
	assert_int_equal(rc, -EINVAL);
	free(out);
	out = capture(cli_stats_print, "{\"counters\":{\"hits\":1,\"misses\":3}}", &rc);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(out, "hit_ratio  25.0%"));
	free(out);
}

static void test_table(void **state)
{
	const char *r1[] = {"a", "1"}, *r2[] = {"longer", "100"};
	struct cli_table t;
	char *buf = NULL;
	size_t len;
	FILE *f;

	(void)state;
	assert_int_equal(cli_table_init(&t, 2), 0);
	t.right[1] = true;
	cli_table_row(&t, r1);
	cli_table_row(&t, r2);
	f = open_memstream(&buf, &len);
	cli_table_print(&t, f, 2);
	fclose(f);
	assert_string_equal(buf, "  a         1\n  longer  100\n");
	free(buf);
	cli_table_fini(&t);
}

/* ------------------------------------------------------------------ top */

static void test_parse_seconds(void **state)
{
	double v = 0;

	(void)state;
	assert_int_equal(cli_parse_seconds("0.5", 0.1, 3600, &v), 0);
	assert_true(v == 0.5);
	assert_int_equal(cli_parse_seconds("2", 0.1, 3600, &v), 0);
	assert_true(v == 2.0);
	assert_int_equal(cli_parse_seconds("1.5s", 0.1, 3600, &v), 0);
	assert_true(v == 1.5);
	assert_int_equal(cli_parse_seconds(".25", 0.1, 3600, &v), 0);
	assert_true(v == 0.25);
	assert_int_equal(cli_parse_seconds("0.01", 0.1, 3600, &v), -ERANGE);
	assert_int_equal(cli_parse_seconds("7200", 0.1, 3600, &v), -ERANGE);
	assert_int_equal(cli_parse_seconds("-1", 0.1, 3600, &v), -EINVAL);
	assert_int_equal(cli_parse_seconds("", 0.1, 3600, &v), -EINVAL);
	assert_int_equal(cli_parse_seconds("1ms", 0.1, 3600, &v), -EINVAL);
	assert_int_equal(cli_parse_seconds("nan", 0.1, 3600, &v), -EINVAL);
	assert_int_equal(cli_parse_seconds("inf", 0.1, 3600, &v), -EINVAL);
	assert_int_equal(cli_parse_seconds("0x10", 0.1, 3600, &v), -EINVAL);
	assert_int_equal(cli_parse_seconds(".", 0.1, 3600, &v), -EINVAL);
	assert_true(v == 0.25); /* untouched by the failures */
}

static void test_fmt_rates(void **state)
{
	char b[32];

	(void)state;
	cli_fmt_rate(0, b, sizeof(b));
	assert_string_equal(b, "0/s");
	cli_fmt_rate(0.01, b, sizeof(b));
	assert_string_equal(b, "0/s");
	cli_fmt_rate(0.5, b, sizeof(b));
	assert_string_equal(b, "0.5/s");
	cli_fmt_rate(42, b, sizeof(b));
	assert_string_equal(b, "42/s");
	cli_fmt_rate(1234.4, b, sizeof(b));
	assert_string_equal(b, "1234/s");
	cli_fmt_rate(12345, b, sizeof(b));
	assert_string_equal(b, "12.3k/s");
	cli_fmt_rate(999.9e3, b, sizeof(b));
	assert_string_equal(b, "999.9k/s");
	cli_fmt_rate(999.96e3, b, sizeof(b));
	assert_string_equal(b, "1.0M/s");
	cli_fmt_rate(4.56e6 + 1, b, sizeof(b));
	assert_string_equal(b, "4.6M/s");
	cli_fmt_rate(2.5e9, b, sizeof(b));
	assert_string_equal(b, "2.5G/s");
	cli_fmt_rate(-3, b, sizeof(b));
	assert_string_equal(b, "-3.0/s");
	cli_fmt_rate(-20, b, sizeof(b));
	assert_string_equal(b, "-20/s");

	cli_fmt_rate_bytes(0, b, sizeof(b));
	assert_string_equal(b, "0 B/s");
	cli_fmt_rate_bytes(-5, b, sizeof(b));
	assert_string_equal(b, "0 B/s");
	cli_fmt_rate_bytes(45.0 * 1048576, b, sizeof(b));
	assert_string_equal(b, "45.0 MiB/s");
	cli_fmt_rate_bytes(1023.6, b, sizeof(b));
	assert_string_equal(b, "1.00 KiB/s");

	cli_fmt_bar(50, 100, 12, b, sizeof(b));
	assert_string_equal(b, "[#####.....]");
	cli_fmt_bar(0, 100, 5, b, sizeof(b));
	assert_string_equal(b, "[...]");
	cli_fmt_bar(300, 100, 5, b, sizeof(b));
	assert_string_equal(b, "[###]");
	cli_fmt_bar(10, 0, 4, b, sizeof(b));
	assert_string_equal(b, "[..]");
	cli_fmt_bar(1, 1, 1, b, sizeof(b));
	assert_string_equal(b, "[#]");
	cli_fmt_bar(1, 1, 40, b, 8); /* does not fit: nothing, no overflow */
	assert_string_equal(b, "");
}

/* A status document with the fields `granary top` reads. */
static char *top_doc(long pid, long uptime, unsigned long long k)
{
	char *s = NULL;

	/* k scales every counter, so a later sample is a multiple of an earlier one */
	assert_true(asprintf(&s,
			     "{\"version\":\"0.1.0\",\"pid\":%ld,\"uptime_s\":%ld,"
			     "\"cache\":{\"capacity\":1000,\"used\":%llu,\"objects\":%llu},"
			     "\"counters\":{\"opens\":%llu,\"hits\":%llu,\"misses\":%llu,"
			     "\"fast_hits\":%llu,\"bytes_local\":%llu,\"bytes_backend\":%llu,"
			     "\"bytes_peer\":0,\"bytes_direct\":%llu,\"fetches\":%llu,"
			     "\"fetch_errors\":%llu,\"evictions\":0,\"not_admitted\":0,"
			     "\"inflight\":%llu,\"corrupt\":0},"
			     "\"mounts\":[],\"datasets\":[]}",
			     pid, uptime, 100 * k, 10 * k, 40 * k, 30 * k, 10 * k, 20 * k,
			     1048576 * k, 2097152 * k, 4096 * k, 10 * k, k, 3 * k) > 0);
	return s;
}

static void top_sample_of(const char *json, double t, struct cli_top_sample *s)
{
	char err[128];

	assert_int_equal(cli_top_parse(json, t, 0, s, err, sizeof(err)), 0);
}

static void test_top_rates(void **state)
{
	struct cli_top_sample a, b, c;
	struct cli_top_rates r;
	char *doc, err[128];

	(void)state;
	assert_true(cli_top_rate(10, 30, 2.0) == 10.0);
	assert_true(cli_top_rate(10, 10, 2.0) == 0.0);
	/* reset (the daemon restarted): everything counted since is new */
	assert_true(cli_top_rate(100, 6, 2.0) == 3.0);
	assert_true(cli_top_rate(0, 6, 0.0) == 0.0);
	assert_true(cli_top_ratio(10, 10, 13, 11) == 0.75);
	assert_true(cli_top_ratio(10, 10, 10, 10) == -1);
	assert_true(cli_top_ratio(10, 10, 5, 11) == -1);

	doc = top_doc(7, 100, 1);
	top_sample_of(doc, 50.0, &a);
	free(doc);
	assert_int_equal(a.pid, 7);
	assert_int_equal(a.hits, 30);
	assert_int_equal(a.inflight, 3);
	assert_int_equal(a.used, 100);
	assert_int_equal(a.capacity, 1000);
	assert_string_equal(a.version, "0.1.0");

	doc = top_doc(7, 102, 3); /* twice as much again, 2 s later */
	top_sample_of(doc, 52.0, &b);
	free(doc);
	assert_int_equal(cli_top_rates(&a, &b, &r), 0);
	assert_true(r.dt == 2.0);
	assert_true(r.opens == 40.0);  /* (120 - 40) / 2 */
	assert_true(r.hits == 30.0);   /* (90 - 30) / 2 */
	assert_true(r.misses == 10.0); /* (30 - 10) / 2 */
	assert_true(r.fast_hits == 20.0);
	assert_true(r.bytes_local == 1048576.0);
	assert_true(r.bytes_backend == 2097152.0);
	assert_true(r.bytes_direct == 4096.0);
	assert_true(r.fetches == 10.0);
	assert_true(r.fetch_errors == 1.0);
	assert_true(r.hit_ratio == 0.75);

	/* the same moment, or time going back: no rates */
	assert_int_equal(cli_top_rates(&b, &b, &r), -EINVAL);
	assert_true(r.opens == 0 && r.hit_ratio == -1);
	/* another daemon process: by pid, or by an uptime that went back */
	doc = top_doc(8, 200, 1);
	top_sample_of(doc, 53.0, &c);
	free(doc);
	assert_int_equal(cli_top_rates(&b, &c, &r), -ESTALE);
	cli_top_sample_fini(&c);
	doc = top_doc(7, 1, 1);
	top_sample_of(doc, 53.0, &c);
	free(doc);
	assert_int_equal(cli_top_rates(&b, &c, &r), -ESTALE);
	cli_top_sample_fini(&c);

	/* bad documents are refused with a reason; missing fields read as 0 */
	assert_int_equal(cli_top_parse("[1,2]", 1.0, 0, &c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not an object"));
	assert_int_equal(cli_top_parse("{\"counters\":", 1.0, 0, &c, err, sizeof(err)), -EINVAL);
	assert_int_equal(cli_top_parse("{}", 1.0, 0, &c, err, sizeof(err)), 0);
	assert_int_equal(c.hits + c.opens + c.nmounts + c.ndatasets, 0);
	assert_false(c.has_qos);
	cli_top_sample_fini(&c);
	cli_top_sample_fini(&a);
	cli_top_sample_fini(&b);
}

/* Two samples one second apart with mounts, datasets, qos and hints. */
static const char top_doc0[] =
	"{\"version\":\"0.1.0\",\"pid\":9,\"uptime_s\":60,"
	"\"cache\":{\"capacity\":1073741824,\"used\":268435456,\"objects\":70},"
	"\"counters\":{\"opens\":100,\"hits\":60,\"misses\":40,\"fetches\":40,"
	"\"fetch_errors\":2,\"inflight\":0,\"bytes_backend\":0},"
	"\"qos\":{\"fg_inflight\":1,\"bg_inflight\":2,\"fg_queued\":3,\"bg_queued\":4,"
	"\"fg_wait_max_ms\":1.25},"
	"\"mounts\":[{\"path\":\"/mnt/nas\",\"backend\":\"posix\",\"hits\":60,\"misses\":20,"
	"\"objects\":50,\"bytes\":1000},"
	"{\"path\":\"/granary/s3\",\"backend\":\"s3\",\"hits\":0,\"misses\":20,"
	"\"objects\":20,\"bytes\":2000,\"hint\":{\"paths\":1000,\"position\":10,"
	"\"phase\":\"reading\",\"prefetched\":5,\"prefetch_inflight\":0,"
	"\"prefetch_failed\":0}}],"
	"\"datasets\":[{\"name\":\"nas\",\"epoch\":1,\"hits\":60,\"misses\":20,"
	"\"prev_hits\":0,\"prev_misses\":0},"
	"{\"name\":\"s3\",\"epoch\":4,\"hits\":0,\"misses\":20,\"prev_hits\":5,"
	"\"prev_misses\":15}]}";

static const char top_doc1[] =
	"{\"version\":\"0.1.0\",\"pid\":9,\"uptime_s\":61,"
	"\"cache\":{\"capacity\":1073741824,\"used\":536870912,\"objects\":90},"
	"\"counters\":{\"opens\":140,\"hits\":90,\"misses\":50,\"fetches\":65,"
	"\"fetch_errors\":5,\"inflight\":7,\"bytes_backend\":3145728},"
	"\"qos\":{\"fg_inflight\":1,\"bg_inflight\":2,\"fg_queued\":3,\"bg_queued\":4,"
	"\"fg_wait_max_ms\":1.25},"
	"\"mounts\":[{\"path\":\"/granary/s3\",\"backend\":\"s3\",\"hits\":0,\"misses\":30,"
	"\"objects\":45,\"bytes\":4000,\"hint\":{\"paths\":1000,\"position\":30,"
	"\"phase\":\"reading\",\"prefetched\":25,\"prefetch_inflight\":8,"
	"\"prefetch_failed\":1}},"
	"{\"path\":\"/mnt/nas\",\"backend\":\"posix\",\"hits\":90,\"misses\":20,"
	"\"objects\":45,\"bytes\":900}],"
	"\"datasets\":[{\"name\":\"nas\",\"epoch\":1,\"hits\":90,\"misses\":20,"
	"\"prev_hits\":0,\"prev_misses\":0},"
	"{\"name\":\"s3\",\"epoch\":5,\"hits\":3,\"misses\":1,\"prev_hits\":1,"
	"\"prev_misses\":30}]}";

static char *top_render_text(const struct cli_top_sample *prev, const struct cli_top_sample *cur,
			     int width)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	cli_top_render(prev, cur, 1.0, width, "(q quits)", f);
	fclose(f);
	return buf;
}

/* The line of @text that starts with @prefix. */
static const char *line_of(const char *text, const char *prefix)
{
	size_t n = strlen(prefix);

	for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (!strncmp(p, prefix, n))
			return p;
	return NULL;
}

/* Is there a line in @text whose blank-separated words are exactly @words? */
static bool row_is(const char *text, const char *const *words)
{
	for (const char *p = text; *p;) {
		size_t n = strcspn(p, "\n"), i = 0;
		char line[256], *save = NULL, *tok;

		snprintf(line, sizeof(line), "%.*s", (int)n, p);
		for (tok = strtok_r(line, " ", &save); tok && words[i] && !strcmp(tok, words[i]);
		     tok = strtok_r(NULL, " ", &save))
			i++;
		if (!tok && !words[i])
			return true;
		p += n;
		if (*p)
			p++;
	}
	return false;
}

static void test_top_render(void **state)
{
	struct cli_top_sample a, b;
	char *out;

	(void)state;
	top_sample_of(top_doc0, 10.0, &a);
	top_sample_of(top_doc1, 11.0, &b);
	assert_int_equal(b.nmounts, 2);
	assert_string_equal(b.mounts[0].path, "/granary/s3");
	assert_string_equal(b.mounts[0].hint_phase, "reading");
	assert_false(b.mounts[0].has_fetch);
	assert_true(b.has_qos);

	out = top_render_text(&a, &b, 100);
	assert_non_null(strstr(out, "granaryd 0.1.0, pid 9, up 1:01  every 1.0s  (q quits)\n"));
	/* 30 hits, 10 misses in the interval; 90 and 50 since the start */
	assert_non_null(
		strstr(out, "hit ratio  now 75.0%, since start 64.3% (90 hits, 50 misses)\n"));
	assert_non_null(strstr(out, "opens      40/s (fast path 0/s), hits 30/s, misses 10/s\n"));
	assert_non_null(strstr(out, "backend 3.00 MiB/s"));
	assert_non_null(
		strstr(out, "fetches    25/s, in flight 7, errors 3.0/s (5 since start)\n"));
	assert_non_null(strstr(out, "fg 1 running, 3 queued (longest wait 1.2 ms); bg 2 running"));
	/* half full: half of the bar's inside is filled */
	{
		const char *c = line_of(out, "cache"), *l = strchr(c, '['), *r = strchr(c, ']');
		size_t hashes = 0;

		assert_non_null(l);
		assert_non_null(strstr(c, "] 512 MiB of 1.00 GiB (50.0%), 90 objects\n"));
		for (const char *p = l + 1; p < r; p++)
			hashes += *p == '#';
		assert_int_equal(hashes, (size_t)(r - l - 1) / 2);
		assert_true(strcspn(c, "\n") <= 100);
	}
	/* mounts are matched by path although their order changed */
	assert_true(row_is(out, (const char *const[]){"/mnt/nas", "posix", "100.0%", "81.8%", "0/s",
						      "-5.0/s", "45", "900", "B", NULL}));
	assert_true(row_is(out, (const char *const[]){"/granary/s3", "s3", "0.0%", "0.0%", "10/s",
						      "25/s", "45", "3.91", "KiB", NULL}));
	/* no per-mount fetch figures from this daemon: no columns and no slowest line */
	assert_null(strstr(out, "FETCH/S"));
	assert_null(strstr(out, "slowest"));
	/* the hinted order of the one mount that has one */
	assert_true(row_is(out, (const char *const[]){"/granary/s3", "reading", "30/1000", "20/s",
						      "8", "1", NULL}));
	/* nas: 30 hits, 0 misses in the interval; s3 advanced one epoch: the rest of
	 * epoch 4 (1 hit, 10 misses) and epoch 5 so far (3 hits, 1 miss) */
	assert_true(row_is(out, (const char *const[]){"nas", "1", "100.0%", "81.8%", "-", NULL}));
	assert_true(row_is(out, (const char *const[]){"s3", "5", "26.7%", "75.0%", "3.2%", NULL}));
	free(out);

	/* no previous sample: totals only, every rate "-" */
	out = top_render_text(NULL, &b, 100);
	assert_non_null(strstr(out, "hit ratio  now -, since start 64.3%"));
	assert_non_null(strstr(out, "opens      - (140 since start)\n"));
	assert_non_null(strstr(out, "fetches    -, in flight 7, errors - (5 since start)\n"));
	assert_true(row_is(out, (const char *const[]){"/mnt/nas", "posix", "-", "81.8%", "-", "-",
						      "45", "900", "B", NULL}));
	assert_null(strstr(out, "restarted"));
	free(out);

	/* a sample from another daemon process: said so, and no rates */
	b.pid = 10;
	out = top_render_text(&a, &b, 100);
	assert_non_null(strstr(out, "granaryd restarted"));
	assert_non_null(strstr(out, "opens      - (140 since start)\n"));
	free(out);
	b.pid = 9;

	/* narrow screen: no bar */
	out = top_render_text(&a, &b, 40);
	assert_non_null(strstr(out, "cache      512 MiB of 1.00 GiB (50.0%), 90 objects\n"));
	free(out);
	cli_top_sample_fini(&a);
	cli_top_sample_fini(&b);
}

static void test_top_slowest(void **state)
{
	static const char d0[] =
		"{\"pid\":1,\"uptime_s\":5,\"counters\":{},\"mounts\":["
		"{\"path\":\"/a\",\"backend\":\"posix\",\"fetches\":10,\"fetch_errors\":0,"
		"\"fetch_seconds\":0.1},"
		"{\"path\":\"/b\",\"backend\":\"s3\",\"fetches\":10,\"fetch_errors\":1,"
		"\"fetch_seconds\":1.0},"
		"{\"path\":\"/c\",\"backend\":\"http\"}]}";
	static const char d1[] =
		"{\"pid\":1,\"uptime_s\":7,\"counters\":{},\"mounts\":["
		"{\"path\":\"/a\",\"backend\":\"posix\",\"fetches\":30,\"fetch_errors\":0,"
		"\"fetch_seconds\":0.3},"
		"{\"path\":\"/b\",\"backend\":\"s3\",\"fetches\":14,\"fetch_errors\":3,"
		"\"fetch_seconds\":1.2},"
		"{\"path\":\"/c\",\"backend\":\"http\"}]}";
	struct cli_top_sample a, b;
	char *out;

	(void)state;
	top_sample_of(d0, 1.0, &a);
	top_sample_of(d1, 3.0, &b);
	assert_true(b.mounts[1].has_fetch);
	assert_false(b.mounts[2].has_fetch);
	out = top_render_text(&a, &b, 120);
	/* /a: 20 fetches in 0.2 s (10 ms each); /b: 4 in 0.2 s (50 ms each) */
	assert_non_null(strstr(
		out, "slowest    /b (s3): 50.0 ms per fetch, 2.0/s fetches, 1.0/s errors\n"));
	assert_true(row_is(out, (const char *const[]){"/a", "posix", "-", "-", "0/s", "0/s", "0",
						      "0", "B", "10/s", "0/s", "10.0", NULL}));
	assert_true(row_is(out, (const char *const[]){"/c", "http", "-", "-", "0/s", "0/s", "0",
						      "0", "B", "-", "-", "-", NULL}));
	free(out);
	/* the same sample twice: no interval at all */
	out = top_render_text(&b, &b, 120);
	assert_non_null(strstr(out, "opens      - ("));
	assert_non_null(strstr(out, "slowest    -\n"));
	free(out);
	/* nothing fetched in the interval */
	{
		struct cli_top_sample c;

		top_sample_of(d1, 9.0, &c);
		out = top_render_text(&b, &c, 120);
		assert_non_null(strstr(out, "slowest    - (no fetches in the interval)\n"));
		free(out);
		cli_top_sample_fini(&c);
	}
	cli_top_sample_fini(&a);
	cli_top_sample_fini(&b);
}

static char *fit(const char *text, int width, int height, bool ansi)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	cli_top_fit(text, width, height, ansi, f);
	fclose(f);
	return buf;
}

static void test_top_fit(void **state)
{
	char *out;

	(void)state;
	out = fit("abcdef\nxy\n\nlast", 4, 0, false);
	assert_string_equal(out, "abcd\nxy\n\nlast\n");
	free(out);
	out = fit("abcdef\nxy\n", 0, 0, false);
	assert_string_equal(out, "abcdef\nxy\n");
	free(out);
	/* a column is a character: "é" (2 bytes) and "€" (3 bytes) are cut whole */
	out = fit("h\xc3\xa9llo\n\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\n", 2, 0, false);
	assert_string_equal(out, "h\xc3\xa9\n\xe2\x82\xac\xe2\x82\xac\n");
	free(out);
	/* at most @height lines */
	out = fit("1\n2\n3\n4\n", 10, 2, false);
	assert_string_equal(out, "1\n2\n");
	free(out);
	/* on a terminal: erase each line's tail, no newline after the last, erase below */
	out = fit("1\n2\n3\n4\n", 10, 3, true);
	assert_string_equal(out, "1\033[K\n2\033[K\n3\033[K\033[J");
	free(out);
	out = fit("", 10, 3, true);
	assert_string_equal(out, "\033[J");
	free(out);
}

/* ------------------------------------------------------ scripted server */

/* cmocka's asserts may not jump out of another thread: the server aborts. */
#define CHECK(x)                                                                                   \
	do {                                                                                       \
		if (!(x))                                                                          \
			abort();                                                                   \
	} while (0)

enum server_mode {
	SRV_NORMAL,
	SRV_HANGUP_ON_WARM, /* close the connection at the first WARM */
};

struct server {
	char dir[32], path[64];
	int lfd;
	pthread_t thread;
	enum server_mode mode;
	volatile int stop; /* teardown: give up the connection */
	int opens_done;	   /* the server closed its copies of what it sent */
	/* what the server saw, for assertions */
	unsigned hint_msgs, hint_paths, hint_first_flags, hint_last_flags, hint_mid_flags;
	unsigned max_batch;
};

static void reply_begin(struct proto_buf *b, const struct proto_hdr *h, int32_t status)
{
	proto_begin(b, PROTO_REPLY | h->type, h->id);
	proto_put_i32(b, PROTO_T_STATUS, status);
}

/*
 * A tree under /t for walks: a directory at depth d (0 for /t) holds
 * tree_files(path) files f0.. of size 100 * depth + index and, above depth 3,
 * three subdirectories s0..s2; listing /t/s1/s2 fails with EACCES.
 */
static unsigned tree_hash(const char *path)
{
	unsigned h = 5381;

	for (; *path; path++)
		h = h * 33 + (unsigned char)*path;
	return h;
}

static int tree_depth(const char *path)
{
	int d = 0;

	for (path += 2; *path; path++)
		d += *path == '/';
	return d;
}

static bool tree_is_dir(const char *path)
{
	const char *last = strrchr(path, '/');

	if (strncmp(path, "/t", 2) || (path[2] && path[2] != '/'))
		return false;
	return !path[2] || last[1] == 's';
}

static unsigned tree_files(const char *path)
{
	return tree_hash(path) % 4;
}

static unsigned tree_dirs(const char *path)
{
	return tree_depth(path) >= 3 ? 0 : 3;
}

static void tree_list(struct proto_buf *b, const struct proto_hdr *h, const char *path)
{
	char name[16];

	if (!strcmp(path, "/t/s1/s2")) {
		reply_begin(b, h, -EACCES);
		proto_put_str(b, PROTO_T_ERRMSG, "no listing for you");
		return;
	}
	reply_begin(b, h, 0);
	for (unsigned i = 0; i < tree_files(path); i++) {
		snprintf(name, sizeof(name), "f%u", i);
		proto_put_str(b, PROTO_T_NAME, name);
		proto_put_u32(b, PROTO_T_TYPE, PROTO_FT_REG);
		proto_put_u64(b, PROTO_T_SIZE, 100 * (uint64_t)tree_depth(path) + i);
	}
	for (unsigned i = 0; i < tree_dirs(path); i++) {
		snprintf(name, sizeof(name), "s%u", i);
		proto_put_str(b, PROTO_T_NAME, name);
		proto_put_u32(b, PROTO_T_TYPE, PROTO_FT_DIR);
		proto_put_u64(b, PROTO_T_SIZE, 0);
	}
}

static void send_with_fds(int fd, const struct proto_buf *b, const int *fds, int nfds)
{
	union {
		char buf[CMSG_SPACE(4 * sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = (void *)b->data, .iov_len = b->len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

	if (nfds) {
		struct cmsghdr *c;

		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.buf;
		mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
	}
	sendmsg(fd, &mh, MSG_NOSIGNAL);
}

/* The size the server reports for a path: its length times 10. */
static uint64_t fake_size(const char *path)
{
	return strlen(path) * 10;
}

/* Answer one request. Returns false to hang up. */
static bool serve_one(struct server *s, int fd, const uint8_t *msg, size_t len)
{
	struct proto_buf *b = malloc(sizeof(*b));
	struct proto_item item;
	struct proto_iter it;
	struct proto_hdr h;
	char path[PROTO_PATH_MAX + 1] = "", cookie[64] = "";
	uint32_t flags = 0;

	CHECK(b);
	CHECK(proto_check(msg, len, &h) == 0);
	proto_iter_init(&it, msg, len);
	while (proto_next(&it, &item) > 0) {
		if (item.tag == PROTO_T_PATH && !path[0])
			proto_item_str(&item, path, sizeof(path));
		else if (item.tag == PROTO_T_COOKIE)
			proto_item_str(&item, cookie, sizeof(cookie));
		else if (item.tag == PROTO_T_FLAGS)
			proto_item_u32(&item, &flags);
	}

	switch (h.type) {
	case PROTO_WARM:
		if (s->mode == SRV_HANGUP_ON_WARM) {
			free(b);
			return false;
		}
		if (strstr(path, "missing")) {
			reply_begin(b, &h, -ENOENT);
			proto_put_str(b, PROTO_T_ERRMSG, "not on the backend");
		} else {
			reply_begin(b, &h, 0);
			proto_put_u64(b, PROTO_T_SIZE, fake_size(path));
			proto_put_u32(b, PROTO_T_SOURCE,
				      strstr(path, "cached") ? PROTO_SRC_LOCAL : PROTO_SRC_BACKEND);
		}
		send_with_fds(fd, b, NULL, 0);
		break;
	case PROTO_STAT:
		reply_begin(b, &h, 0);
		proto_put_u64(b, PROTO_T_SIZE, fake_size(path));
		proto_put_u32(b, PROTO_T_TYPE,
			      !strcmp(path, "/m") || !strcmp(path, "/m/sub") || tree_is_dir(path)
				      ? PROTO_FT_DIR
				      : PROTO_FT_REG);
		proto_put_u32(b, PROTO_T_CACHED, 1);
		send_with_fds(fd, b, NULL, 0);
		break;
	case PROTO_OPEN: {
		int p1[2], p2[2], bogus[2], fds[2];

		CHECK(pipe(p1) == 0 && pipe(p2) == 0 && pipe(bogus) == 0);
		/* first a reply to no request, carrying a descriptor to be closed */
		proto_begin(b, PROTO_REPLY | PROTO_OPEN, 0x7fffffff);
		proto_put_i32(b, PROTO_T_STATUS, 0);
		send_with_fds(fd, b, &bogus[0], 1);
		/* then the answer, with one descriptor too many */
		reply_begin(b, &h, 0);
		proto_put_u64(b, PROTO_T_SIZE, 1234);
		proto_put_u32(b, PROTO_T_SOURCE, PROTO_SRC_BACKEND);
		fds[0] = p1[0];
		fds[1] = p2[0];
		send_with_fds(fd, b, fds, 2);
		close(p1[0]);
		close(p1[1]);
		close(p2[0]);
		close(p2[1]);
		close(bogus[0]);
		close(bogus[1]);
		__atomic_store_n(&s->opens_done, 1, __ATOMIC_RELEASE);
		break;
	}
	case PROTO_LIST:
		reply_begin(b, &h, 0);
		if (!strcmp(path, "/m") && !cookie[0]) {
			proto_put_str(b, PROTO_T_NAME, "a");
			proto_put_u32(b, PROTO_T_TYPE, PROTO_FT_REG);
			proto_put_u64(b, PROTO_T_SIZE, 1);
			proto_put_str(b, PROTO_T_NAME, "b");
			proto_put_u32(b, PROTO_T_TYPE, PROTO_FT_REG);
			proto_put_u64(b, PROTO_T_SIZE, 2);
			proto_put_str(b, PROTO_T_COOKIE, "page2");
		} else if (!strcmp(path, "/m") && !strcmp(cookie, "page2")) {
			proto_put_str(b, PROTO_T_NAME, "sub");
			proto_put_u32(b, PROTO_T_TYPE, PROTO_FT_DIR);
			proto_put_u64(b, PROTO_T_SIZE, 0);
		} else if (!strcmp(path, "/m/sub")) {
			proto_put_str(b, PROTO_T_NAME, "x");
			proto_put_u32(b, PROTO_T_TYPE, PROTO_FT_REG);
			proto_put_u64(b, PROTO_T_SIZE, 3);
		} else if (!strncmp(path, "/t", 2) && (!path[2] || path[2] == '/')) {
			tree_list(b, &h, path);
		} else {
			reply_begin(b, &h, -ENOTDIR);
		}
		send_with_fds(fd, b, NULL, 0);
		break;
	case PROTO_HINT: {
		unsigned n = 0;

		proto_iter_init(&it, msg, len);
		while (proto_next(&it, &item) > 0)
			n += item.tag == PROTO_T_PATH;
		if (s->hint_msgs == 0)
			s->hint_first_flags = flags;
		else if (s->hint_msgs > 1)
			s->hint_mid_flags |= s->hint_last_flags; /* the previous one was inside */
		s->hint_last_flags = flags;
		s->hint_msgs++;
		s->hint_paths += n;
		reply_begin(b, &h, 0);
		proto_put_u64(b, PROTO_T_COUNT, n);
		send_with_fds(fd, b, NULL, 0);
		break;
	}
	case PROTO_EPOCH:
		reply_begin(b, &h, 0);
		proto_put_str(b, PROTO_T_DATASET, "imagenet");
		proto_put_u64(b, PROTO_T_EPOCH, 7);
		send_with_fds(fd, b, NULL, 0);
		break;
	case PROTO_DROP:
		/* what the daemon answers to a request it cannot parse: type unknown */
		proto_begin(b, PROTO_REPLY, h.id);
		proto_put_i32(b, PROTO_T_STATUS, -EBADMSG);
		proto_put_str(b, PROTO_T_ERRMSG, "malformed request");
		send_with_fds(fd, b, NULL, 0);
		break;
	default:
		reply_begin(b, &h, -EOPNOTSUPP);
		proto_put_str(b, PROTO_T_ERRMSG, "not in this test");
		send_with_fds(fd, b, NULL, 0);
		break;
	}
	free(b);
	return true;
}

/*
 * Serve one connection: gather every request that arrives within a few
 * milliseconds of each other, then answer the batch last to first.
 */
static void *server_main(void *arg)
{
	struct server *s = arg;
	struct {
		uint8_t *msg;
		size_t len;
	} batch[1024];
	size_t nb = 0;
	bool open = true;
	int fd;

	fd = accept(s->lfd, NULL, NULL);
	if (fd < 0)
		return NULL;
	while (open) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int rc = poll(&pfd, 1, nb ? 5 : 50);

		if (rc == 0 && !nb && s->stop)
			break;

		if (rc > 0 && nb < 1024) {
			uint8_t *m = malloc(PROTO_MSG_MAX);
			ssize_t n = recv(fd, m, PROTO_MSG_MAX, 0);

			if (n <= 0) {
				free(m);
				break;
			}
			batch[nb].msg = m;
			batch[nb].len = (size_t)n;
			nb++;
			continue;
		}
		if (nb > s->max_batch)
			s->max_batch = (unsigned)nb;
		while (nb > 0 && open) {
			nb--;
			open = serve_one(s, fd, batch[nb].msg, batch[nb].len);
			free(batch[nb].msg);
		}
	}
	while (nb > 0)
		free(batch[--nb].msg);
	close(fd);
	return NULL;
}

static int server_setup(void **state)
{
	struct server *s = calloc(1, sizeof(*s));
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	snprintf(s->dir, sizeof(s->dir), "/tmp/granary-test-XXXXXX");
	assert_non_null(mkdtemp(s->dir));
	snprintf(s->path, sizeof(s->path), "%s/sock", s->dir);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", s->path);
	s->lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	assert_true(s->lfd >= 0);
	assert_int_equal(bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(s->lfd, 4), 0);
	*state = s;
	return 0;
}

static void server_start(struct server *s, enum server_mode mode)
{
	s->mode = mode;
	assert_int_equal(pthread_create(&s->thread, NULL, server_main, s), 0);
}

static int server_teardown(void **state)
{
	struct server *s = *state;

	s->stop = 1;
	pthread_join(s->thread, NULL);
	close(s->lfd);
	unlink(s->path);
	rmdir(s->dir);
	free(s);
	return 0;
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

struct warm_seen {
	char paths[64][32];
	uint64_t sizes[64];
	int sources[64], errors[64];
	char msgs[64][64];
	size_t n;
};

static int warm_seen_cb(const char *path, uint64_t size, int source, int error, const char *errmsg,
			void *arg)
{
	struct warm_seen *w = arg;

	snprintf(w->paths[w->n], sizeof(w->paths[0]), "%s", path);
	w->sizes[w->n] = size;
	w->sources[w->n] = source;
	w->errors[w->n] = error;
	snprintf(w->msgs[w->n], sizeof(w->msgs[0]), "%s", errmsg);
	w->n++;
	return 0;
}

static void test_warm_out_of_order(void **state)
{
	struct server *s = *state;
	const char *paths[10];
	char names[10][32];
	struct warm_seen w = {0};
	struct granary *g;
	int err, rc;
	bool in_order = true;

	for (int i = 0; i < 10; i++) {
		snprintf(names[i], sizeof(names[i]), "/m/%s%d",
			 i == 3	  ? "missing"
			 : i == 5 ? "cached"
				  : "f",
			 i);
		paths[i] = names[i];
	}
	server_start(s, SRV_NORMAL);
	g = granary_connect(s->path, &err);
	assert_non_null(g);
	rc = granary_warm(g, paths, 10, 4, warm_seen_cb, &w);
	assert_int_equal(rc, 1); /* one file failed */
	assert_int_equal(w.n, 10);
	assert_true(s->max_batch > 1 && s->max_batch <= 4); /* pipelined, never more than jobs */
	for (int i = 0; i < 10; i++) {
		size_t k;

		for (k = 0; k < w.n; k++)
			if (!strcmp(w.paths[k], names[i]))
				break;
		assert_true(k < w.n);
		if (k != (size_t)i)
			in_order = false;
		if (i == 3) {
			assert_int_equal(w.errors[k], -ENOENT);
			assert_string_equal(w.msgs[k], "not on the backend");
		} else {
			assert_int_equal(w.errors[k], 0);
			assert_int_equal(w.sizes[k], fake_size(names[i]));
			assert_int_equal(w.sources[k],
					 i == 5 ? GRANARY_SRC_LOCAL : GRANARY_SRC_BACKEND);
		}
	}
	assert_false(in_order); /* the server answered batches backwards */
	assert_string_equal(granary_last_error(g), "not on the backend");

	/* single requests still work after a pipeline on the same connection */
	{
		uint64_t size = 0;
		int source = -1;

		assert_int_equal(granary_warm_one(g, "/m/cached", &size, &source), 0);
		assert_int_equal(size, fake_size("/m/cached"));
		assert_int_equal(source, GRANARY_SRC_LOCAL);
		assert_int_equal(granary_warm_one(g, "relative", NULL, NULL), -EINVAL);
	}
	granary_close(g);
}

static void test_open_passes_one_fd(void **state)
{
	struct server *s = *state;
	struct granary_stat st;
	struct granary *g;
	struct stat sb;
	int err, before, fd;

	server_start(s, SRV_NORMAL);
	g = granary_connect(s->path, &err);
	assert_non_null(g);
	assert_int_equal(granary_stat(g, "/m/f", NULL), 0); /* the server has accepted */
	before = count_fds();
	fd = granary_open(g, "/m/f", 0, &st);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &sb), 0);
	assert_true(S_ISFIFO(sb.st_mode));
	assert_int_equal(st.size, 1234);
	assert_int_equal(st.source, GRANARY_SRC_BACKEND);
	while (!__atomic_load_n(&s->opens_done, __ATOMIC_ACQUIRE))
		usleep(1000);
	/* the stray reply's descriptor and the extra one were closed */
	assert_int_equal(count_fds(), before + 1);
	close(fd);
	granary_close(g);
}

struct walk_seen {
	char paths[8][32];
	uint64_t sizes[8];
	size_t n;
};

static int walk_seen_cb(const char *path, uint64_t size, void *arg)
{
	struct walk_seen *w = arg;

	snprintf(w->paths[w->n], sizeof(w->paths[0]), "%s", path);
	w->sizes[w->n++] = size;
	return 0;
}

/* What a sequential walk of the /t tree reports, in its order. */
struct tree_expect {
	char paths[256][64];
	uint64_t sizes[256];
	size_t n;
	bool failed;
};

static void tree_expected(const char *dir, struct tree_expect *e)
{
	char p[64];

	if (e->failed)
		return;
	if (!strcmp(dir, "/t/s1/s2")) {
		e->failed = true;
		return;
	}
	for (unsigned i = 0; i < tree_files(dir); i++) {
		assert_true(e->n < 256);
		snprintf(e->paths[e->n], sizeof(e->paths[0]), "%s/f%u", dir, i);
		e->sizes[e->n++] = 100 * (uint64_t)tree_depth(dir) + i;
	}
	for (unsigned i = 0; i < tree_dirs(dir) && !e->failed; i++) {
		snprintf(p, sizeof(p), "%s/s%u", dir, i);
		tree_expected(p, e);
	}
}

struct tree_seen {
	struct tree_expect got;
	size_t stop_at; /* stop the walk after this many files (0: never) */
};

static int tree_seen_cb(const char *path, uint64_t size, void *arg)
{
	struct tree_seen *t = arg;

	assert_true(t->got.n < 256);
	snprintf(t->got.paths[t->got.n], sizeof(t->got.paths[0]), "%s", path);
	t->got.sizes[t->got.n++] = size;
	return t->stop_at && t->got.n == t->stop_at ? 42 : 0;
}

static void test_walk_parallel_keeps_order(void **state)
{
	struct server *s = *state;
	struct tree_expect *want = calloc(1, sizeof(*want));
	struct tree_seen *seen = calloc(1, sizeof(*seen));
	struct granary *g;
	int err;

	assert_non_null(want);
	assert_non_null(seen);
	tree_expected("/t", want);
	/* the tree is big enough to have listings in flight together */
	assert_true(want->failed);
	assert_true(want->n > 10);
	server_start(s, SRV_NORMAL);
	g = granary_connect(s->path, &err);
	assert_non_null(g);
	for (int round = 0; round < 20; round++) {
		/* every file before the unlistable directory, in order, then its error */
		memset(seen, 0, sizeof(*seen));
		assert_int_equal(granary_walk(g, "/t", tree_seen_cb, seen), -EACCES);
		assert_string_equal(granary_last_error(g), "no listing for you");
		assert_int_equal(seen->got.n, want->n);
		for (size_t i = 0; i < want->n; i++) {
			assert_string_equal(seen->got.paths[i], want->paths[i]);
			assert_int_equal(seen->got.sizes[i], want->sizes[i]);
		}
		/* a callback's verdict stops the walk at once and is returned */
		memset(seen, 0, sizeof(*seen));
		seen->stop_at = 3;
		assert_int_equal(granary_walk(g, "/t", tree_seen_cb, seen), 42);
		assert_int_equal(seen->got.n, 3);
		assert_string_equal(seen->got.paths[2], want->paths[2]);
	}
	/* a subtree that lists in full */
	memset(seen, 0, sizeof(*seen));
	assert_int_equal(granary_walk(g, "/t/s0", tree_seen_cb, seen), 0);
	assert_true(seen->got.n > 3);
	for (size_t i = 0; i < seen->got.n; i++)
		assert_memory_equal(seen->got.paths[i], "/t/s0/", 6);
	granary_close(g);
	free(want);
	free(seen);
}

static void test_walk_follows_cookies(void **state)
{
	struct server *s = *state;
	struct walk_seen w = {0};
	struct granary *g;
	uint64_t epoch = 0;
	char name[32];
	int err;

	server_start(s, SRV_NORMAL);
	g = granary_connect(s->path, &err);
	assert_non_null(g);
	assert_int_equal(granary_walk(g, "/m", walk_seen_cb, &w), 0);
	assert_int_equal(w.n, 3);
	assert_string_equal(w.paths[0], "/m/a");
	assert_string_equal(w.paths[1], "/m/b");
	assert_string_equal(w.paths[2], "/m/sub/x");
	assert_int_equal(w.sizes[2], 3);
	/* a file is reported itself, with the size STAT gave */
	w.n = 0;
	assert_int_equal(granary_walk(g, "/m/file", walk_seen_cb, &w), 0);
	assert_int_equal(w.n, 1);
	assert_int_equal(w.sizes[0], fake_size("/m/file"));

	assert_int_equal(granary_epoch_name(g, NULL, "/m/a", &epoch, name, sizeof(name)), 0);
	assert_int_equal(epoch, 7);
	assert_string_equal(name, "imagenet");
	/* an error with the daemon's words */
	assert_int_equal(granary_verify(g, NULL, NULL, NULL), -EOPNOTSUPP);
	assert_string_equal(granary_last_error(NULL), "not in this test");
	/* an answer without the request's type is still that request's answer */
	assert_int_equal(granary_drop(g, "/m/a", NULL), -EBADMSG);
	assert_string_equal(granary_last_error(NULL), "malformed request");
	assert_int_equal(granary_stat(g, "/m/a", NULL), 0);
	granary_close(g);
}

static void test_hint_split(void **state)
{
	struct server *s = *state;
	enum { N = 3000 };
	static char names[N][100];
	const char *paths[N];
	struct granary *g;
	int err;
	long n;

	for (int i = 0; i < N; i++) {
		snprintf(names[i], sizeof(names[i]), "/m/train/%090d", i);
		paths[i] = names[i];
	}
	server_start(s, SRV_NORMAL);
	g = granary_connect(s->path, &err);
	assert_non_null(g);
	n = granary_hint(g, "imagenet", paths, N);
	assert_int_equal(n, N);
	assert_true(s->hint_msgs >= 5); /* 3000 * ~108 bytes do not fit in one message */
	assert_int_equal(s->hint_paths, N);
	assert_int_equal(s->hint_first_flags, PROTO_F_BEGIN);
	assert_int_equal(s->hint_last_flags, PROTO_F_END);
	assert_int_equal(s->hint_mid_flags, 0);
	granary_close(g);
}

static void test_hangup_fails_every_file(void **state)
{
	struct server *s = *state;
	const char *paths[] = {"/m/1", "/m/2", "/m/3", "/m/4", "/m/5", "/m/6"};
	struct warm_seen w = {0};
	struct granary *g;
	int err, rc;

	server_start(s, SRV_HANGUP_ON_WARM);
	g = granary_connect(s->path, &err);
	assert_non_null(g);
	rc = granary_warm(g, paths, 6, 2, warm_seen_cb, &w);
	assert_true(rc == -ECONNRESET || rc == -EPIPE);
	assert_int_equal(w.n, 6);
	for (size_t i = 0; i < w.n; i++)
		assert_int_equal(w.errors[i], rc);
	/* the connection stays failed */
	assert_true(granary_stat(g, "/m/a", NULL) < 0);
	granary_close(g);
}

struct stat_thread {
	struct granary *g;
	int id, bad;
};

static void *stat_thread_main(void *arg)
{
	struct stat_thread *t = arg;
	char path[64];

	for (int i = 0; i < 200; i++) {
		struct granary_stat st;
		int n = snprintf(path, sizeof(path), "/m/t%d/%.*d", t->id, i % 20 + 1, i);

		(void)n;
		if (granary_stat(t->g, path, &st) < 0 || st.size != fake_size(path))
			t->bad++;
	}
	return NULL;
}

static void test_threads_share_connection(void **state)
{
	struct server *s = *state;
	struct stat_thread t[4];
	pthread_t th[4];
	struct granary *g;
	int err;

	server_start(s, SRV_NORMAL);
	g = granary_connect(s->path, &err);
	assert_non_null(g);
	for (int i = 0; i < 4; i++) {
		t[i] = (struct stat_thread){.g = g, .id = i};
		pthread_create(&th[i], NULL, stat_thread_main, &t[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(t[i].bad, 0);
	}
	granary_close(g);
}

static void test_connect_errors(void **state)
{
	char longpath[200];
	int err = 0;

	(void)state;
	assert_null(granary_connect("/nonexistent/granary.sock", &err));
	assert_int_equal(err, -ENOENT);
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	assert_null(granary_connect(longpath, &err));
	assert_int_equal(err, -ENAMETOOLONG);
	assert_string_equal(granary_strerror(-ENOENT), "No such file or directory");
	assert_string_equal(granary_strerror(ENOENT), "No such file or directory");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_uint),
		cmocka_unit_test(test_abspath),
		cmocka_unit_test(test_manifest_line),
		cmocka_unit_test(test_manifest_read),
		cmocka_unit_test(test_fmt_bytes),
		cmocka_unit_test(test_fmt_duration_percent),
		cmocka_unit_test(test_progress),
		cmocka_unit_test(test_status_print),
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_parse_seconds),
		cmocka_unit_test(test_fmt_rates),
		cmocka_unit_test(test_top_rates),
		cmocka_unit_test(test_top_render),
		cmocka_unit_test(test_top_slowest),
		cmocka_unit_test(test_top_fit),
		cmocka_unit_test(test_connect_errors),
		cmocka_unit_test_setup_teardown(test_warm_out_of_order, server_setup,
						server_teardown),
		cmocka_unit_test_setup_teardown(test_open_passes_one_fd, server_setup,
						server_teardown),
		cmocka_unit_test_setup_teardown(test_walk_follows_cookies, server_setup,
						server_teardown),
		cmocka_unit_test_setup_teardown(test_walk_parallel_keeps_order, server_setup,
						server_teardown),
		cmocka_unit_test_setup_teardown(test_hint_split, server_setup, server_teardown),
		cmocka_unit_test_setup_teardown(test_hangup_fails_every_file, server_setup,
						server_teardown),
		cmocka_unit_test_setup_teardown(test_threads_share_connection, server_setup,
						server_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
