/*
 * cli.c - `granary`, the command line client of granaryd.
 *
 * One function per verb; each parses its own options (every verb takes
 * --help and --socket PATH), talks to the daemon through libgranary and
 * returns the exit status: 0 done, 1 failed, 2 usage error. Errors go to
 * stderr prefixed "granary: ". Formatting, parsing and the status views live in cli_*.c (cli_util.h).
 */
#include "cli_util.h"
#include "granary.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define EXIT_OK	   0
#define EXIT_FAIL  1
#define EXIT_USAGE 2
#define EXIT_INTR  130

static const char *opt_socket;
static char cwd[PATH_MAX];

struct verb {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *usage;
	const char *help;
};

static const struct verb *verb_find(const char *name);

static void err_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void err_msg(const char *fmt, ...)
{
	va_list ap;

	fputs("granary: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* "what: error (daemon's explanation)" */
static void err_req(const char *what, int rc)
{
	const char *why = granary_last_error(NULL);

	if (why && *why)
		err_msg("%s: %s (%s)", what, granary_strerror(rc), why);
	else
		err_msg("%s: %s", what, granary_strerror(rc));
}

static int usage_error(const struct verb *v, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int usage_error(const struct verb *v, const char *fmt, ...)
{
	va_list ap;

	fputs("granary: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (v)
		fprintf(stderr, "usage: granary %s %s\n", v->name, v->usage);
	fprintf(stderr, "Try 'granary %s%s--help'.\n", v ? v->name : "", v ? " " : "");
	return EXIT_USAGE;
}

static void print_help(const struct verb *v)
{
	printf("usage: granary %s %s\n\n%s", v->name, v->usage, v->help);
	printf("\ncommon options:\n"
	       "  --socket PATH  the daemon's socket (default: $GRANARY_SOCKET, else %s)\n"
	       "  -h, --help     this help\n",
	       GRANARY_SOCKET_DEFAULT);
}

/* --socket, else $GRANARY_SOCKET, else the default. */
static const char *socket_path(void)
{
	const char *path = opt_socket;

	if (!path || !*path)
		path = getenv("GRANARY_SOCKET");
	if (!path || !*path)
		path = GRANARY_SOCKET_DEFAULT;
	return path;
}

static struct granary *cli_connect(void)
{
	const char *path = socket_path();
	struct granary *g;
	int rc;

	g = granary_connect(path, &rc);
	if (!g) {
		if (rc == -ENOENT || rc == -ECONNREFUSED)
			err_msg("cannot connect to %s: %s (is granaryd running?)", path,
				granary_strerror(rc));
		else
			err_msg("cannot connect to %s: %s", path, granary_strerror(rc));
	}
	return g;
}

/* Make a command-line path absolute; prints the error. */
static int cli_path(const char *in, char *out, size_t outsz)
{
	int rc = cli_abspath(cwd, in, out, outsz);

	if (rc < 0)
		err_msg("%s: %s", in, granary_strerror(rc));
	return rc;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int term_width(void)
{
	struct winsize ws;
	const char *cols;

	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		return ws.ws_col;
	cols = getenv("COLUMNS");
	if (cols && atoi(cols) > 0)
		return atoi(cols);
	return 80;
}

/*
 * Parse options common to every verb plus the verb's own. @extra lists the
 * verb's long options (terminated by a zero entry), @shortopts its short ones.
 * Returns the option, -1 at the end, or 0x100 for --help / '?' for a bad
 * option (already reported). --socket is handled here.
 */
#define OPT_HELP   0x100
#define OPT_SOCKET 0x101

static int verb_getopt(int argc, char **argv, const char *shortopts, const struct option *extra,
		       const struct verb *v)
{
	static struct option opts[16];
	size_t n = 0;
	char sopts[32];
	int c;

	opts[n++] = (struct option){"help", no_argument, NULL, OPT_HELP};
	opts[n++] = (struct option){"socket", required_argument, NULL, OPT_SOCKET};
	for (; extra && extra->name && n < 15; extra++)
		opts[n++] = *extra;
	opts[n] = (struct option){0};
	snprintf(sopts, sizeof(sopts), ":h%s", shortopts ? shortopts : "");
	for (;;) {
		c = getopt_long(argc, argv, sopts, opts, NULL);
		if (c == 'h')
			return OPT_HELP;
		if (c == OPT_SOCKET) {
			opt_socket = optarg;
			continue;
		}
		if (c == '?') {
			if (optopt)
				usage_error(v, "unknown option '-%c'", optopt);
			else
				usage_error(v, "unknown option '%s'", argv[optind - 1]);
			return '?';
		}
		if (c == ':') {
			usage_error(v, "option '%s' needs a value", argv[optind - 1]);
			return '?';
		}
		return c;
	}
}

/* Handle the end of option parsing shared by all verbs. */
#define VERB_OPTS_LOOP(c, argc, argv, shortopts, extra, v)                                         \
	while ((c = verb_getopt(argc, argv, shortopts, extra, v)) != -1)                           \
		if (c == OPT_HELP) {                                                               \
			print_help(v);                                                             \
			return EXIT_OK;                                                            \
		} else if (c == '?') {                                                             \
			return EXIT_USAGE;                                                         \
		} else

/* ------------------------------------------------------------------ warm */

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

struct warm_ctx {
	struct cli_progress p;
	bool tty, quiet;
	int width;
	double last_draw;
	bool drawn;	      /* a progress line is on the terminal */
	bool retry_dirs;      /* collect EISDIR answers to expand them */
	struct cli_strv dirs; /* manifest entries that turned out to be directories */
	struct cli_strv failures;
	uint64_t lost; /* files not warmed because the connection failed */
};

static void warm_fail(struct warm_ctx *c, const char *path, int error, const char *why)
{
	char *line = NULL;

	if (asprintf(&line, "%s: %s%s%s%s", path, granary_strerror(error), why && *why ? " (" : "",
		     why && *why ? why : "", why && *why ? ")" : "") >= 0) {
		cli_strv_push(&c->failures, line, 0);
		free(line);
	}
}

static void warm_draw(struct warm_ctx *c, bool final)
{
	char line[512];
	double t = now_s();

	if (c->quiet)
		return;
	if (c->tty) {
		if (!final && t - c->last_draw < 0.1)
			return;
		cli_progress_bar(&c->p, t, c->width - 1, line, sizeof(line));
		fprintf(stderr, "\r%s\033[K", line);
		if (final)
			fputc('\n', stderr);
		c->drawn = !final;
	} else {
		if (final || t - c->last_draw < 2.0)
			return;
		cli_progress_plain(&c->p, t, line, sizeof(line));
		fprintf(stderr, "%s\n", line);
	}
	fflush(stderr);
	c->last_draw = t;
}

static int warm_cb(const char *path, uint64_t size, int source, int error, const char *errmsg,
		   void *arg)
{
	struct warm_ctx *c = arg;

	if (error == -ECONNRESET || error == -EPIPE || error == -ENOTCONN) {
		/* the connection is gone: counted once at the end, not per file */
		c->lost++;
		return 1;
	}
	if (error == -EISDIR && c->retry_dirs) {
		cli_strv_push(&c->dirs, path, 0);
		c->p.total_files--;
		return interrupted;
	}
	cli_progress_add(&c->p, size, source, error);
	if (error)
		warm_fail(c, path, error, errmsg);
	warm_draw(c, false);
	return interrupted;
}

struct expand_ctx {
	struct warm_ctx *c;
	struct cli_strv *files;
	double last_draw;
	uint64_t bytes;
};

static int expand_cb(const char *path, uint64_t size, void *arg)
{
	struct expand_ctx *e = arg;
	double t;
	int rc;

	rc = cli_strv_push(e->files, path, size);
	if (rc < 0)
		return rc;
	e->bytes += size;
	if (e->c->tty && !e->c->quiet) {
		t = now_s();
		if (t - e->last_draw >= 0.1) {
			char b[32];

			cli_fmt_bytes(e->bytes, b, sizeof(b));
			fprintf(stderr, "\rlisting: %zu files, %s\033[K", e->files->n, b);
			fflush(stderr);
			e->last_draw = t;
			e->c->drawn = true;
		}
	}
	return interrupted ? -EINTR : 0;
}

/*
 * Expand each of @roots (directories through LIST, files as they are) into
 * @files. A root that cannot be walked is counted as a failure.
 */
static int warm_expand(struct granary *g, struct warm_ctx *c, const struct cli_strv *roots,
		       struct cli_strv *files)
{
	struct expand_ctx e = {.c = c, .files = files};
	int rc;

	for (size_t i = 0; i < roots->n && !interrupted; i++) {
		size_t before = files->n;

		rc = granary_walk(g, roots->v[i], expand_cb, &e);
		if (rc == -ENOMEM)
			return rc;
		if (rc == -ECONNRESET || rc == -EPIPE)
			return rc;
		if (rc < 0 && rc != -EINTR) {
			/* keep what the walk found before it failed */
			c->p.total_files++;
			cli_progress_add(&c->p, 0, 0, rc);
			warm_fail(c, roots->v[i], rc, granary_last_error(g));
		}
		(void)before;
	}
	if (c->drawn) {
		fprintf(stderr, "\r\033[K");
		c->drawn = false;
	}
	return 0;
}

/* Warm @files (sizes known or UINT64_MAX) through the daemon. */
static int warm_run(struct granary *g, struct warm_ctx *c, struct cli_strv *files, unsigned jobs)
{
	bool known = true;
	int rc;

	for (size_t i = 0; i < files->n; i++) {
		if (files->sizes[i] == UINT64_MAX)
			known = false;
		else
			c->p.total_bytes += files->sizes[i];
	}
	c->p.bytes_known = c->p.bytes_known && known;
	c->p.total_files += files->n;
	rc = granary_warm(g, (const char *const *)files->v, files->n, jobs, warm_cb, c);
	if (rc == -ECANCELED)
		rc = 0;
	return rc < 0 ? rc : 0;
}

static const struct verb verb_warm;

static int cmd_warm(int argc, char **argv)
{
	static const struct option opts[] = {
		{"manifest", required_argument, NULL, 'm'},
		{"jobs", required_argument, NULL, 'j'},
		{"quiet", no_argument, NULL, 'q'},
		{0},
	};
	struct cli_strv roots, listed, files;
	struct warm_ctx c = {0};
	const char *manifest = NULL;
	unsigned long jobs = 16;
	struct sigaction sa = {0};
	struct granary *g = NULL;
	char path[PATH_MAX], err[256], line[512];
	int ch, rc, ret = EXIT_FAIL;

	VERB_OPTS_LOOP(ch, argc, argv, "m:j:q", opts, &verb_warm)
	{
		switch (ch) {
		case 'm':
			manifest = optarg;
			break;
		case 'j':
			if (cli_parse_uint(optarg, 1, 1024, &jobs) < 0)
				return usage_error(
					&verb_warm,
					"--jobs: expected a number from 1 to 1024, got '%s'",
					optarg);
			break;
		case 'q':
			c.quiet = true;
			break;
		}
	}
	if (optind >= argc && !manifest)
		return usage_error(&verb_warm, "nothing to warm: give paths or --manifest FILE");

	cli_strv_init(&roots);
	cli_strv_init(&listed);
	cli_strv_init(&files);
	cli_strv_init(&c.dirs);
	cli_strv_init(&c.failures);
	for (int i = optind; i < argc; i++) {
		if (cli_path(argv[i], path, sizeof(path)) < 0) {
			ret = EXIT_USAGE;
			goto out;
		}
		if (cli_strv_push(&roots, path, 0) < 0)
			goto out_nomem;
	}
	if (manifest) {
		FILE *f = strcmp(manifest, "-") ? fopen(manifest, "re") : stdin;
		long n;

		if (!f) {
			err_msg("%s: %s", manifest, strerror(errno));
			goto out;
		}
		n = cli_manifest_read(f, cwd, &files, err, sizeof(err));
		if (f != stdin)
			fclose(f);
		if (n < 0) {
			err_msg("%s: %s", manifest, err);
			goto out;
		}
	}

	g = cli_connect();
	if (!g)
		goto out;
	c.tty = isatty(STDERR_FILENO);
	c.width = term_width();
	c.p.bytes_known = true;
	c.p.start = now_s();
	c.last_draw = c.tty ? 0 : c.p.start;
	sa.sa_handler = on_sigint;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	/* Directories and files named on the command line. */
	rc = warm_expand(g, &c, &roots, &listed);
	if (rc < 0) {
		err_req("listing", rc);
		goto out;
	}
	/* Manifest entries are taken as files; any that are directories come back EISDIR. */
	for (size_t i = 0; i < files.n; i++)
		if (cli_strv_push(&listed, files.v[i], files.sizes[i]) < 0)
			goto out_nomem;
	c.retry_dirs = true;
	rc = warm_run(g, &c, &listed, (unsigned)jobs);
	c.retry_dirs = false;
	if (rc == 0 && c.dirs.n && !interrupted) {
		struct cli_strv more;

		cli_strv_init(&more);
		rc = warm_expand(g, &c, &c.dirs, &more);
		if (rc == 0)
			rc = warm_run(g, &c, &more, (unsigned)jobs);
		cli_strv_fini(&more);
	}
	if (c.tty && !c.quiet && (c.drawn || c.p.done_files))
		warm_draw(&c, true);
	if (!c.quiet) {
		cli_progress_summary(&c.p, now_s(), line, sizeof(line));
		printf("%s\n", line);
		fflush(stdout);
	}
	for (size_t i = 0; i < c.failures.n; i++)
		err_msg("failed: %s", c.failures.v[i]);
	if (rc < 0) {
		err_msg("lost the connection to granaryd: %s; %llu file%s not warmed",
			granary_strerror(rc), (unsigned long long)c.lost, c.lost == 1 ? "" : "s");
		ret = EXIT_FAIL;
	} else if (interrupted) {
		err_msg("interrupted: %llu of %llu files done", (unsigned long long)c.p.done_files,
			(unsigned long long)c.p.total_files);
		ret = EXIT_INTR;
	} else {
		ret = c.p.failed ? EXIT_FAIL : EXIT_OK;
	}
	goto out;

out_nomem:
	err_msg("%s", strerror(ENOMEM));
out:
	granary_close(g);
	cli_strv_fini(&roots);
	cli_strv_fini(&listed);
	cli_strv_fini(&files);
	cli_strv_fini(&c.dirs);
	cli_strv_fini(&c.failures);
	return ret;
}

static const struct verb verb_warm = {
	"warm",
	cmd_warm,
	"PATH... [--manifest FILE] [--jobs N] [--quiet]",
	"Fetch files into the cache ahead of a run. Directories are listed through\n"
	"the daemon (so object-store mounts work too) and everything under them is\n"
	"warmed, with N requests in flight. Files already cached are counted, not\n"
	"fetched again. Exits 1 and lists every file that failed.\n\n"
	"  -m, --manifest FILE  also warm the paths in FILE, one per line ('-' reads\n"
	"                       stdin; '#' starts a comment; blank lines are skipped)\n"
	"  -j, --jobs N         requests in flight (1-1024, default 16)\n"
	"  -q, --quiet          no progress and no summary; failures still reported\n",
};

/* ---------------------------------------------------------------- status */

/* Fetch the status document; prints the error. */
static char *status_fetch(struct granary *g)
{
	char *json = NULL;
	int rc = granary_status_json(g, &json);

	if (rc < 0) {
		err_req("status", rc);
		return NULL;
	}
	return json;
}

static int print_json_pretty(const char *text, const char *key)
{
	json_error_t je;
	json_t *root = json_loads(text, 0, &je), *x;

	if (!root) {
		err_msg("bad status document from the daemon: %s", je.text);
		return EXIT_FAIL;
	}
	x = key ? json_object_get(root, key) : root;
	if (!x) {
		err_msg("the status document has no %s", key);
		json_decref(root);
		return EXIT_FAIL;
	}
	json_dumpf(x, stdout, JSON_INDENT(2));
	putchar('\n');
	json_decref(root);
	return EXIT_OK;
}

static const struct verb verb_status, verb_stats;

static int status_common(int argc, char **argv, const struct verb *v, bool counters)
{
	static const struct option opts[] = {{"json", no_argument, NULL, 'J'}, {0}};
	struct granary *g;
	bool json = false;
	char *doc, err[256];
	int ch, ret;

	VERB_OPTS_LOOP(ch, argc, argv, "", opts, v)
	{
		if (ch == 'J')
			json = true;
	}
	if (optind < argc)
		return usage_error(v, "unexpected argument '%s'", argv[optind]);
	g = cli_connect();
	if (!g)
		return EXIT_FAIL;
	doc = status_fetch(g);
	granary_close(g);
	if (!doc)
		return EXIT_FAIL;
	if (json) {
		ret = print_json_pretty(doc, counters ? "counters" : NULL);
	} else {
		int rc = counters ? cli_stats_print(doc, stdout, err, sizeof(err))
				  : cli_status_print(doc, stdout, err, sizeof(err));

		if (rc < 0)
			err_msg("%s", err);
		ret = rc < 0 ? EXIT_FAIL : EXIT_OK;
	}
	granary_free(doc);
	return ret;
}

static int cmd_status(int argc, char **argv)
{
	return status_common(argc, argv, &verb_status, false);
}

static int cmd_stats(int argc, char **argv)
{
	return status_common(argc, argv, &verb_stats, true);
}

static const struct verb verb_status = {
	"status",
	cmd_status,
	"[--json]",
	"The daemon's state: cache use, hit ratio, bytes by source, mounts and\n"
	"datasets.\n\n"
	"  --json  print the daemon's status document as JSON\n",
};

static const struct verb verb_stats = {
	"stats",
	cmd_stats,
	"[--json]",
	"The daemon's counters (opens, hits, misses, bytes by source, evictions,\n"
	"fetch errors, requests in flight), one per line.\n\n"
	"  --json  print the counters as a JSON object\n",
};

/* ------------------------------------------------------------------- top */

static volatile sig_atomic_t resized;

static void on_sigwinch(int sig)
{
	(void)sig;
	resized = 1;
}

struct top_ctx {
	struct granary *g;
	bool tty;	      /* stdout is a terminal: redraw in place */
	bool keys;	      /* stdin is a terminal too, in non-canonical mode */
	struct termios saved; /* stdin's modes to put back */
	double interval;
	char *frame; /* the last screen drawn, for a redraw on resize */
	struct cli_top_sample prev;
	bool have_prev;
};

static void term_size(int *cols, int *rows)
{
	struct winsize ws;

	*cols = 80;
	*rows = 24;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0) {
		*cols = ws.ws_col;
		*rows = ws.ws_row;
	}
}

/*
 * Take the terminal: the alternate screen, no cursor, and keys read one at a
 * time without echo (signals still work, so Ctrl-C arrives as SIGINT).
 */
static void top_term_enter(struct top_ctx *t)
{
	if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &t->saved) == 0) {
		struct termios raw = t->saved;

		raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
		raw.c_cc[VMIN] = 0;
		raw.c_cc[VTIME] = 0;
		t->keys = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
	}
	fputs("\033[?1049h\033[?25l\033[H\033[2J", stdout);
	fflush(stdout);
}

static void top_term_leave(struct top_ctx *t)
{
	fputs("\033[?25h\033[?1049l", stdout);
	fflush(stdout);
	if (t->keys)
		tcsetattr(STDIN_FILENO, TCSANOW, &t->saved);
	t->keys = false;
}

/* Put @text on the screen (a terminal) or print it as one block. */
static void top_show(struct top_ctx *t, const char *text)
{
	int cols, rows;

	if (t->tty) {
		term_size(&cols, &rows);
		fputs("\033[H", stdout);
		cli_top_fit(text, cols, rows, true, stdout);
	} else {
		fputs(text, stdout);
		fputc('\n', stdout);
	}
	fflush(stdout);
}

/* Render the screen for @cur against the previous sample, and show it. */
static void top_draw(struct top_ctx *t, const struct cli_top_sample *cur)
{
	char *text = NULL;
	size_t len = 0;
	int cols, rows;
	FILE *f;

	f = open_memstream(&text, &len);
	if (!f)
		return;
	if (t->tty)
		term_size(&cols, &rows);
	else
		cols = 80;
	cli_top_render(t->have_prev ? &t->prev : NULL, cur, t->interval, cols,
		       t->tty ? "(q quits)" : NULL, f);
	if (fclose(f) != 0) {
		free(text);
		return;
	}
	top_show(t, text);
	free(t->frame);
	t->frame = text;
}

/* A screen (or block) that says the daemon could not be read. */
static void top_draw_error(struct top_ctx *t, int rc, const char *why)
{
	char *text = NULL;

	if (!t->tty) {
		if (why && *why)
			err_msg("status: %s (%s)", granary_strerror(rc), why);
		else
			err_msg("status: %s", granary_strerror(rc));
		return;
	}
	if (asprintf(&text,
		     "granary top  cannot read granaryd's status at %s: %s%s%s%s\n"
		     "retrying every %.1fs  (q quits)\n",
		     socket_path(), granary_strerror(rc), why && *why ? " (" : "", why ? why : "",
		     why && *why ? ")" : "", t->interval) < 0)
		return;
	top_show(t, text);
	free(t->frame);
	t->frame = text;
}

/*
 * One sample of the daemon's status into @s, connecting again when the
 * connection was lost. Returns 0 or -errno (the screen says why).
 */
static int top_sample(struct top_ctx *t, struct cli_top_sample *s)
{
	char *doc = NULL, err[256];
	int rc;

	if (!t->g) {
		t->g = granary_connect(socket_path(), &rc);
		if (!t->g) {
			top_draw_error(t, rc, NULL);
			return rc;
		}
	}
	rc = granary_status_json(t->g, &doc);
	if (rc < 0) {
		top_draw_error(t, rc, granary_last_error(t->g));
		/* connect afresh next time: the daemon may have been restarted */
		granary_close(t->g);
		t->g = NULL;
		return rc;
	}
	rc = cli_top_parse(doc, now_s(), time(NULL), s, err, sizeof(err));
	granary_free(doc);
	if (rc < 0)
		top_draw_error(t, rc, err);
	return rc;
}

/*
 * Wait until @deadline (now_s clock), reading keys. Returns 1 to go on, 0
 * when the user asked to quit (q, or a signal).
 */
static int top_wait(struct top_ctx *t, double deadline)
{
	for (;;) {
		struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
		double left = deadline - now_s();
		int n;

		if (interrupted)
			return 0;
		if (resized) {
			resized = 0;
			if (t->frame)
				top_show(t, t->frame);
		}
		if (left <= 0)
			return 1;
		n = poll(&pfd, t->keys ? 1 : 0, (int)(left * 1000) + 1);
		if (n > 0 && (pfd.revents & POLLIN)) {
			char keys[64];
			ssize_t got = read(STDIN_FILENO, keys, sizeof(keys));

			for (ssize_t i = 0; i < got; i++)
				if (keys[i] == 'q' || keys[i] == 'Q')
					return 0;
		} else if (n > 0) {
			/* the terminal went away: stop listening to it */
			t->keys = false;
		}
	}
}

static const struct verb verb_top;

static int cmd_top(int argc, char **argv)
{
	static const struct option opts[] = {
		{"interval", required_argument, NULL, 'i'},
		{"iterations", required_argument, NULL, 'n'},
		{0},
	};
	struct top_ctx t = {.interval = 1.0};
	unsigned long iterations = 0, done = 0, failed = 0;
	struct sigaction sa = {0};
	double deadline;
	int ch, rc;

	VERB_OPTS_LOOP(ch, argc, argv, "i:n:", opts, &verb_top)
	{
		switch (ch) {
		case 'i':
			if (cli_parse_seconds(optarg, 0.1, 3600, &t.interval) < 0)
				return usage_error(&verb_top,
						   "--interval: expected seconds from 0.1 to 3600, "
						   "got '%s'",
						   optarg);
			break;
		case 'n':
			if (cli_parse_uint(optarg, 1, ULONG_MAX, &iterations) < 0)
				return usage_error(
					&verb_top,
					"--iterations: expected a positive number, got '%s'",
					optarg);
			break;
		}
	}
	if (optind < argc)
		return usage_error(&verb_top, "unexpected argument '%s'", argv[optind]);

	t.g = cli_connect();
	if (!t.g)
		return EXIT_FAIL;
	t.tty = isatty(STDOUT_FILENO);
	/* the first sample only starts the intervals; a daemon that cannot answer it is an error */
	rc = top_sample(&t, &t.prev);
	if (rc < 0) {
		granary_close(t.g);
		return EXIT_FAIL;
	}
	t.have_prev = true;

	sa.sa_handler = on_sigint;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	if (t.tty) {
		sa.sa_handler = on_sigwinch;
		sigaction(SIGWINCH, &sa, NULL);
		top_term_enter(&t);
		/* show what is known at once: totals since the start, no rates yet */
		t.have_prev = false;
		top_draw(&t, &t.prev);
		t.have_prev = true;
	}

	deadline = t.prev.t + t.interval;
	while (!iterations || done < iterations) {
		struct cli_top_sample cur;

		if (!top_wait(&t, deadline))
			break;
		deadline += t.interval;
		if (deadline < now_s())
			deadline = now_s() + t.interval; /* fell behind: do not catch up */
		rc = top_sample(&t, &cur);
		done++;
		if (rc < 0) {
			failed++;
			continue;
		}
		top_draw(&t, &cur);
		cli_top_sample_fini(&t.prev);
		t.prev = cur;
		t.have_prev = true;
	}

	if (t.tty)
		top_term_leave(&t);
	cli_top_sample_fini(&t.prev);
	free(t.frame);
	granary_close(t.g);
	/* in a script, a status that could not be read is a failure */
	return !t.tty && failed ? EXIT_FAIL : EXIT_OK;
}

static const struct verb verb_top = {
	"top",
	cmd_top,
	"[--interval SECONDS] [--iterations N]",
	"A live view of the daemon, refreshed every interval: hit ratio over the\n"
	"last interval and since the start (overall, per mount and per dataset),\n"
	"bytes/s by source (local cache, backend, peers, direct), opens/s, fetches/s,\n"
	"fetches in flight, fetch errors/s, cache use, the QoS queues and hinted\n"
	"orders. On a terminal the screen is redrawn in place; q or Ctrl-C quits.\n"
	"Otherwise one plain block is printed per interval.\n\n"
	"  -i, --interval SECONDS  time between refreshes (0.1-3600, default 1)\n"
	"  -n, --iterations N      stop after N refreshes (default: run until quit)\n",
};

/* -------------------------------------------------------------------- ls */

static const char *state_name(uint32_t s)
{
	switch (s) {
	case GRANARY_ST_ABSENT:
		return "absent";
	case GRANARY_ST_CACHED:
		return "cached";
	case GRANARY_ST_FETCHING:
		return "fetching";
	case GRANARY_ST_PINNED:
		return "pinned";
	}
	return "?";
}

static const char *type_name(uint32_t t)
{
	switch (t) {
	case GRANARY_FT_REG:
		return "file";
	case GRANARY_FT_DIR:
		return "dir";
	}
	return "other";
}

struct ls_ctx {
	bool json;
	json_t *arr;
	struct cli_table t;
};

static int ls_cb(const struct granary_entry *e, void *arg)
{
	struct ls_ctx *l = arg;
	char size[32], name[PATH_MAX + 2];
	const char *row[3] = {e->type == GRANARY_FT_DIR ? "-" : state_name(e->state), size, name};

	if (l->json) {
		json_array_append_new(l->arr,
				      json_pack("{s:s, s:s, s:I, s:s}", "name", e->name, "type",
						type_name(e->type), "size", (json_int_t)e->size,
						"state", state_name(e->state)));
		return 0;
	}
	if (e->type == GRANARY_FT_DIR)
		snprintf(size, sizeof(size), "-");
	else
		cli_fmt_bytes(e->size, size, sizeof(size));
	snprintf(name, sizeof(name), "%s%s", e->name, e->type == GRANARY_FT_DIR ? "/" : "");
	return cli_table_row(&l->t, row);
}

static const struct verb verb_ls;

static int cmd_ls(int argc, char **argv)
{
	static const struct option opts[] = {{"json", no_argument, NULL, 'J'}, {0}};
	struct ls_ctx l = {0};
	struct granary *g;
	char path[PATH_MAX];
	int ch, rc;

	VERB_OPTS_LOOP(ch, argc, argv, "", opts, &verb_ls)
	{
		if (ch == 'J')
			l.json = true;
	}
	if (optind + 1 != argc)
		return usage_error(&verb_ls,
				   optind >= argc ? "ls needs a PATH" : "ls takes one PATH");
	if (cli_path(argv[optind], path, sizeof(path)) < 0)
		return EXIT_USAGE;
	g = cli_connect();
	if (!g)
		return EXIT_FAIL;
	l.arr = json_array();
	cli_table_init(&l.t, 3);
	l.t.right[1] = true;
	rc = granary_ls(g, path, ls_cb, &l);
	granary_close(g);
	if (rc < 0) {
		err_req(path, rc);
	} else if (l.json) {
		json_dumpf(l.arr, stdout, JSON_INDENT(2));
		putchar('\n');
	} else {
		cli_table_print(&l.t, stdout, 0);
	}
	json_decref(l.arr);
	cli_table_fini(&l.t);
	return rc < 0 ? EXIT_FAIL : EXIT_OK;
}

static const struct verb verb_ls = {
	"ls",
	cmd_ls,
	"PATH [--json]",
	"List a directory (or one file) with each entry's cache state: absent,\n"
	"cached, fetching or pinned, and its size.\n\n"
	"  --json  print a JSON array of {name, type, size, state}\n",
};

/* ------------------------------------------------------------------ stat */

static const struct verb verb_stat;

static int cmd_stat(int argc, char **argv)
{
	static const struct option opts[] = {{"json", no_argument, NULL, 'J'}, {0}};
	struct granary_stat st;
	struct granary *g;
	bool json = false;
	char path[PATH_MAX], size[32];
	int ch, rc;

	VERB_OPTS_LOOP(ch, argc, argv, "", opts, &verb_stat)
	{
		if (ch == 'J')
			json = true;
	}
	if (optind + 1 != argc)
		return usage_error(&verb_stat, "stat takes one PATH");
	if (cli_path(argv[optind], path, sizeof(path)) < 0)
		return EXIT_USAGE;
	g = cli_connect();
	if (!g)
		return EXIT_FAIL;
	rc = granary_stat(g, path, &st);
	granary_close(g);
	if (rc < 0) {
		err_req(path, rc);
		return EXIT_FAIL;
	}
	if (json) {
		json_t *o = json_pack("{s:s, s:I, s:I, s:i, s:s, s:b, s:I}", "path", path, "size",
				      (json_int_t)st.size, "mtime_ns", (json_int_t)st.mtime_ns,
				      "mode", (int)st.mode, "type", type_name(st.type), "cached",
				      (int)st.cached, "ino", (json_int_t)st.ino);

		json_dumpf(o, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(o);
		return EXIT_OK;
	}
	cli_fmt_bytes(st.size, size, sizeof(size));
	printf("path    %s\ntype    %s\nsize    %llu (%s)\nmode    %04o\nmtime   %lld.%09lld\n"
	       "cached  %s\n",
	       path, type_name(st.type), (unsigned long long)st.size, size, st.mode & 07777,
	       (long long)(st.mtime_ns / 1000000000), (long long)(st.mtime_ns % 1000000000),
	       st.cached ? "yes" : "no");
	return EXIT_OK;
}

static const struct verb verb_stat = {
	"stat",
	cmd_stat,
	"PATH [--json]",
	"What the daemon knows of one path: type, size, mode, mtime, and whether a\n"
	"valid copy is cached.\n\n"
	"  --json  print it as a JSON object\n",
};

/* ------------------------------------------------- evict, drop, pin, unpin */

enum count_op { OP_EVICT, OP_DROP, OP_PIN, OP_UNPIN };

static const struct verb verb_evict, verb_drop, verb_pin, verb_unpin;

static int count_verb(int argc, char **argv, const struct verb *v, enum count_op op)
{
	static const char *const done[] = {"evicted", "dropped", "pinned", "unpinned"};
	struct granary *g;
	char path[PATH_MAX];
	int ch, ret = EXIT_OK;

	VERB_OPTS_LOOP(ch, argc, argv, "", NULL, v)
	{
	}
	if (optind >= argc)
		return usage_error(v, "%s needs at least one PATH", v->name);
	g = cli_connect();
	if (!g)
		return EXIT_FAIL;
	for (int i = optind; i < argc; i++) {
		uint64_t count = 0;
		int rc;

		if (cli_path(argv[i], path, sizeof(path)) < 0) {
			ret = EXIT_FAIL;
			continue;
		}
		switch (op) {
		case OP_EVICT:
			rc = granary_evict(g, path, &count);
			break;
		case OP_DROP:
			rc = granary_drop(g, path, &count);
			break;
		default:
			rc = granary_pin(g, path, op == OP_UNPIN, &count);
			break;
		}
		if (rc < 0) {
			err_req(path, rc);
			ret = EXIT_FAIL;
			continue;
		}
		printf("%s: %s %llu object%s\n", path, done[op], (unsigned long long)count,
		       count == 1 ? "" : "s");
	}
	granary_close(g);
	return ret;
}

static int cmd_evict(int argc, char **argv)
{
	return count_verb(argc, argv, &verb_evict, OP_EVICT);
}

static int cmd_drop(int argc, char **argv)
{
	return count_verb(argc, argv, &verb_drop, OP_DROP);
}

static int cmd_pin(int argc, char **argv)
{
	return count_verb(argc, argv, &verb_pin, OP_PIN);
}

static int cmd_unpin(int argc, char **argv)
{
	return count_verb(argc, argv, &verb_unpin, OP_UNPIN);
}

static const struct verb verb_evict = {
	"evict",
	cmd_evict,
	"PATH...",
	"Remove the cached copies of the files at or under each PATH (pinned ones\n"
	"included). The backend is not touched.\n",
};

static const struct verb verb_drop = {
	"drop",
	cmd_drop,
	"PATH...",
	"Tell the daemon the source of each PATH was changed: its cached copy is\n"
	"forgotten and the next read fetches it again.\n",
};

static const struct verb verb_pin = {
	"pin",
	cmd_pin,
	"PATH...",
	"Keep the cached files at or under each PATH from ever being evicted.\n",
};

static const struct verb verb_unpin = {
	"unpin",
	cmd_unpin,
	"PATH...",
	"Undo 'granary pin': the files may be evicted again.\n",
};

/* ----------------------------------------------------------------- epoch */

static const struct verb verb_epoch;

static int cmd_epoch(int argc, char **argv)
{
	static const struct option opts[] = {{"path", required_argument, NULL, 'p'}, {0}};
	const char *dataset = NULL, *path_arg = NULL;
	struct granary *g;
	char path[PATH_MAX], name[512];
	uint64_t epoch = 0;
	int ch, rc;

	VERB_OPTS_LOOP(ch, argc, argv, "p:", opts, &verb_epoch)
	{
		if (ch == 'p')
			path_arg = optarg;
	}
	if (optind < argc)
		dataset = argv[optind++];
	if (optind < argc)
		return usage_error(&verb_epoch, "unexpected argument '%s'", argv[optind]);
	if (dataset && path_arg)
		return usage_error(&verb_epoch, "give a DATASET or --path, not both");
	if (path_arg && cli_path(path_arg, path, sizeof(path)) < 0)
		return EXIT_USAGE;
	g = cli_connect();
	if (!g)
		return EXIT_FAIL;
	rc = granary_epoch_name(g, dataset, path_arg ? path : NULL, &epoch, name, sizeof(name));
	granary_close(g);
	if (rc < 0) {
		err_req("epoch", rc);
		return EXIT_FAIL;
	}
	printf("%s: epoch %llu\n",
	       name[0]	 ? name
	       : dataset ? dataset
			 : "default",
	       (unsigned long long)epoch);
	return EXIT_OK;
}

static const struct verb verb_epoch = {
	"epoch",
	cmd_epoch,
	"[DATASET | --path PATH]",
	"Start a new epoch of a dataset (named, or the one PATH belongs to): files\n"
	"read in the previous epoch become the first candidates for eviction.\n"
	"Prints the dataset's new epoch number.\n\n"
	"  -p, --path PATH  the dataset PATH belongs to\n",
};

/* ------------------------------------------------------------------ hint */

static const struct verb verb_hint;

static int cmd_hint(int argc, char **argv)
{
	static const struct option opts[] = {
		{"order", required_argument, NULL, 'o'},
		{"dataset", required_argument, NULL, 'd'},
		{0},
	};
	const char *order = NULL, *dataset = NULL;
	struct cli_strv paths;
	struct granary *g;
	char err[256];
	long n;
	FILE *f;
	int ch;

	VERB_OPTS_LOOP(ch, argc, argv, "o:d:", opts, &verb_hint)
	{
		if (ch == 'o')
			order = optarg;
		else if (ch == 'd')
			dataset = optarg;
	}
	if (!order)
		return usage_error(&verb_hint, "hint needs --order FILE");
	if (optind < argc)
		return usage_error(&verb_hint, "unexpected argument '%s'", argv[optind]);
	f = strcmp(order, "-") ? fopen(order, "re") : stdin;
	if (!f) {
		err_msg("%s: %s", order, strerror(errno));
		return EXIT_FAIL;
	}
	cli_strv_init(&paths);
	n = cli_manifest_read(f, cwd, &paths, err, sizeof(err));
	if (f != stdin)
		fclose(f);
	if (n < 0) {
		err_msg("%s: %s", order, err);
		cli_strv_fini(&paths);
		return EXIT_FAIL;
	}
	g = cli_connect();
	if (!g) {
		cli_strv_fini(&paths);
		return EXIT_FAIL;
	}
	n = granary_hint(g, dataset, (const char *const *)paths.v, paths.n);
	granary_close(g);
	if (n < 0) {
		err_req("hint", (int)n);
		cli_strv_fini(&paths);
		return EXIT_FAIL;
	}
	printf("hinted %ld of %zu paths%s%s\n", n, paths.n, dataset ? " for " : "",
	       dataset ? dataset : "");
	cli_strv_fini(&paths);
	return EXIT_OK;
}

static const struct verb verb_hint = {
	"hint",
	cmd_hint,
	"--order FILE [--dataset NAME]",
	"Send the order in which the next epoch will read its files (one path per\n"
	"line in FILE, '-' for stdin), replacing any order sent before. The daemon\n"
	"evicts what is needed last and prefetches ahead of the reader.\n\n"
	"  -o, --order FILE    the epoch's read order\n"
	"  -d, --dataset NAME  the dataset (default: the one the paths belong to)\n",
};

/* ---------------------------------------------------------------- verify */

static const struct verb verb_verify;

static int cmd_verify(int argc, char **argv)
{
	struct granary *g;
	char path[PATH_MAX];
	uint64_t checked = 0, bad = 0;
	int ch, rc;

	VERB_OPTS_LOOP(ch, argc, argv, "", NULL, &verb_verify)
	{
	}
	if (argc - optind > 1)
		return usage_error(&verb_verify, "verify takes at most one PATH");
	if (optind < argc && cli_path(argv[optind], path, sizeof(path)) < 0)
		return EXIT_USAGE;
	g = cli_connect();
	if (!g)
		return EXIT_FAIL;
	rc = granary_verify(g, optind < argc ? path : NULL, &checked, &bad);
	granary_close(g);
	if (rc < 0) {
		err_req("verify", rc);
		return EXIT_FAIL;
	}
	printf("checked %llu object%s, %llu bad (dropped)\n", (unsigned long long)checked,
	       checked == 1 ? "" : "s", (unsigned long long)bad);
	if (bad) {
		err_msg("verify: %llu cached object%s did not match and were dropped",
			(unsigned long long)bad, bad == 1 ? "" : "s");
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

static const struct verb verb_verify = {
	"verify",
	cmd_verify,
	"[PATH]",
	"Re-read the cached files (at or under PATH, or all) and check them\n"
	"against their checksums. Bad copies are dropped, to be fetched again;\n"
	"exits 1 when any was found.\n",
};

/* ---------------------------------------------------------------- mounts */

struct mounts_ctx {
	bool json;
	json_t *arr;
	struct cli_table t;
};

static int mounts_cb(const char *path, uint32_t backend, uint32_t flags, void *arg)
{
	struct mounts_ctx *m = arg;
	const char *row[3] = {path, cli_backend_name(backend),
			      flags & GRANARY_MOUNT_FAILOPEN ? "fail-open" : "-"};

	if (m->json) {
		json_array_append_new(m->arr, json_pack("{s:s, s:s, s:b}", "path", path, "backend",
							cli_backend_name(backend), "failopen",
							(flags & GRANARY_MOUNT_FAILOPEN) != 0));
		return 0;
	}
	return cli_table_row(&m->t, row);
}

static const struct verb verb_mounts;

static int cmd_mounts(int argc, char **argv)
{
	static const struct option opts[] = {{"json", no_argument, NULL, 'J'}, {0}};
	static const char *const head[3] = {"PATH", "BACKEND", "FLAGS"};
	struct mounts_ctx m = {0};
	struct granary *g;
	int ch, rc;

	VERB_OPTS_LOOP(ch, argc, argv, "", opts, &verb_mounts)
	{
		if (ch == 'J')
			m.json = true;
	}
	if (optind < argc)
		return usage_error(&verb_mounts, "unexpected argument '%s'", argv[optind]);
	g = cli_connect();
	if (!g)
		return EXIT_FAIL;
	m.arr = json_array();
	cli_table_init(&m.t, 3);
	cli_table_row(&m.t, head);
	rc = granary_mounts(g, mounts_cb, &m);
	granary_close(g);
	if (rc < 0) {
		err_req("mounts", rc);
	} else if (m.json) {
		json_dumpf(m.arr, stdout, JSON_INDENT(2));
		putchar('\n');
	} else {
		cli_table_print(&m.t, stdout, 0);
	}
	json_decref(m.arr);
	cli_table_fini(&m.t);
	return rc < 0 ? EXIT_FAIL : EXIT_OK;
}

static const struct verb verb_mounts = {
	"mounts",
	cmd_mounts,
	"[--json]",
	"The path prefixes the daemon serves, their backend, and whether readers\n"
	"fall back to the original path when the daemon cannot answer.\n\n"
	"  --json  print a JSON array\n",
};

/* --------------------------------------------------------------- version */

static const struct verb verb_version;

static int cmd_version(int argc, char **argv)
{
	struct granary *g;
	char *doc = NULL;
	int ch, err;

	VERB_OPTS_LOOP(ch, argc, argv, "", NULL, &verb_version)
	{
	}
	printf("granary %s\n", granary_version());
	/* The daemon's version when one answers; its absence is no error here. */
	g = granary_connect(opt_socket, &err);
	if (g && granary_status_json(g, &doc) == 0) {
		json_t *root = json_loads(doc, 0, NULL);
		json_t *v = root ? json_object_get(root, "version") : NULL;

		if (json_is_string(v))
			printf("granaryd %s\n", json_string_value(v));
		json_decref(root);
	}
	granary_free(doc);
	granary_close(g);
	return EXIT_OK;
}

static const struct verb verb_version = {
	"version",
	cmd_version,
	"",
	"Print the client's version, and the daemon's when one answers.\n",
};

/* ------------------------------------------------------------------ main */

static const struct verb verb_help;

static const struct verb *const verbs[] = {
	&verb_warm,   &verb_status, &verb_stats,   &verb_ls,	&verb_stat,  &verb_top,
	&verb_evict,  &verb_drop,   &verb_pin,	   &verb_unpin, &verb_epoch, &verb_hint,
	&verb_verify, &verb_mounts, &verb_version, &verb_help,
};

static void print_usage(FILE *out)
{
	fprintf(out, "usage: granary [--socket PATH] VERB [ARGS...]\n\n"
		     "Control and pre-warm granaryd, the training-data cache.\n\nverbs:\n");
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		fprintf(out, "  %-8s %s\n", verbs[i]->name, verbs[i]->usage);
	fprintf(out,
		"\n'granary VERB --help' explains a verb. The socket is --socket, else\n"
		"$GRANARY_SOCKET, else %s.\n",
		GRANARY_SOCKET_DEFAULT);
}

static int cmd_help(int argc, char **argv)
{
	const struct verb *v;

	if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		print_help(&verb_help);
		return EXIT_OK;
	}
	if (argc > 1 && (v = verb_find(argv[1]))) {
		print_help(v);
		return EXIT_OK;
	}
	if (argc > 1) {
		err_msg("unknown verb '%s'", argv[1]);
		return EXIT_USAGE;
	}
	print_usage(stdout);
	return EXIT_OK;
}

static const struct verb verb_help = {
	"help",
	cmd_help,
	"[VERB]",
	"Explain granary, or one verb.\n",
};

static const struct verb *verb_find(const char *name)
{
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (!strcmp(verbs[i]->name, name))
			return verbs[i];
	return NULL;
}

int main(int argc, char **argv)
{
	const struct verb *v;
	int i = 1;

	if (!getcwd(cwd, sizeof(cwd)))
		cwd[0] = '\0';
	/* Options before the verb: --socket PATH, --socket=PATH, --help, --version. */
	while (i < argc && argv[i][0] == '-') {
		if (!strcmp(argv[i], "--socket") && i + 1 < argc) {
			opt_socket = argv[i + 1];
			i += 2;
		} else if (!strncmp(argv[i], "--socket=", 9)) {
			opt_socket = argv[i] + 9;
			i++;
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			print_usage(stdout);
			return EXIT_OK;
		} else if (!strcmp(argv[i], "--version")) {
			printf("granary %s\n", granary_version());
			return EXIT_OK;
		} else {
			err_msg("unknown option '%s'", argv[i]);
			print_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (i >= argc) {
		print_usage(stderr);
		return EXIT_USAGE;
	}
	v = verb_find(argv[i]);
	if (!v) {
		err_msg("unknown verb '%s'", argv[i]);
		print_usage(stderr);
		return EXIT_USAGE;
	}
	optind = 1;
	opterr = 0;
	return v->run(argc - i, argv + i);
}
