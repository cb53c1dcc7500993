/*
 * metrics.c - Prometheus exposition (see metrics.h).
 *
 * DESIGN: everything runs on the loop thread. The evhttp server shares the
 * daemon's event_base, so a scrape reads struct granaryd directly with no
 * locking and no copy; it is a snapshot because nothing else runs while the
 * page is written. The only state kept here is what the rest of the daemon
 * does not count: fetch latency histograms, fetched bytes and backend errors,
 * by backend kind. Text format 0.0.4: one HELP and one TYPE line per family,
 * then its samples; label values escaped (backslash, quote, newline).
 */
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>

#include "backend.h"
#include "granary_version.h"
#include "log.h"
#include "metrics.h"
#include "policy.h"
#include "pool.h"
#include "server.h"
#include "uring.h"

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define METRICS_IDLE_TIMEOUT 30 /* seconds a scraper's connection may idle */
#define METRICS_MAX_HEADERS  8192

/* Upper bounds of the fetch duration buckets, seconds; +Inf is implied. */
static const double bucket_le[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
				   0.25,   0.5,	  1,	  2.5,	 5,    10,    30};
#define N_BUCKETS (sizeof(bucket_le) / sizeof(bucket_le[0]))

/* Index into struct metrics_backend.errors; names in error_kind_name. */
enum error_kind { ERR_TIMEOUT, ERR_IO, ERR_NOTFOUND, ERR_DENIED, ERR_OTHER, N_ERR_KINDS };
static const char *const error_kind_name[N_ERR_KINDS] = {"timeout", "io", "notfound", "denied",
							 "other"};

/* Backend kinds are enum config_backend values, 1..3. */
#define N_BACKENDS 4

struct metrics_backend {
	bool used; /* a mount has this backend: render it even with no fetch yet */
	uint64_t buckets[N_BUCKETS + 1]; /* per bucket, not cumulative; last is +Inf */
	uint64_t count;
	double sum;
	uint64_t bytes;
	uint64_t errors[N_ERR_KINDS];
};

struct metrics {
	struct evhttp *http;
	struct metrics_backend backends[N_BACKENDS];
	uint64_t scrapes;
};

static enum error_kind error_kind_of(int err)
{
	switch (err < 0 ? -err : err) {
	case ETIMEDOUT:
	case ETIME:
		return ERR_TIMEOUT;
	case EIO:
	case ECONNREFUSED:
	case ECONNRESET:
	case ECONNABORTED:
	case EHOSTUNREACH:
	case ENETUNREACH:
	case ENETDOWN:
	case EPIPE:
	case ESTALE:
	case EREMOTEIO:
	case EPROTO:
		return ERR_IO;
	case ENOENT:
	case ENOTDIR:
		return ERR_NOTFOUND;
	case EACCES:
	case EPERM:
		return ERR_DENIED;
	default:
		return ERR_OTHER;
	}
}

static struct metrics_backend *backend_of(struct metrics *mx, const struct mount *m)
{
	unsigned kind = m && m->cfg ? (unsigned)m->cfg->backend : 0;

	if (kind == 0 || kind >= N_BACKENDS)
		return NULL;
	return &mx->backends[kind];
}

void metrics_fetch_observed(struct granaryd *d, struct mount *m, double seconds, uint64_t bytes,
			    int err)
{
	struct metrics_backend *b;
	size_t i;

	if (!d->metrics)
		return;
	b = backend_of(d->metrics, m);
	if (!b)
		return;
	b->used = true;
	if (err) {
		b->errors[error_kind_of(err)]++;
		return;
	}
	if (!(seconds >= 0)) /* also NaN */
		seconds = 0;
	for (i = 0; i < N_BUCKETS && seconds > bucket_le[i]; i++)
		;
	b->buckets[i]++;
	b->count++;
	b->sum += seconds;
	b->bytes += bytes;
}

/* ---- rendering ---- */

/* Write @s as a label value: backslash, double quote and newline escaped. */
static void put_label_value(struct evbuffer *out, const char *s)
{
	const char *run = s;

	for (; *s; s++) {
		const char *esc = NULL;

		if (*s == '\\')
			esc = "\\\\";
		else if (*s == '"')
			esc = "\\\"";
		else if (*s == '\n')
			esc = "\\n";
		if (!esc)
			continue;
		evbuffer_add(out, run, (size_t)(s - run));
		evbuffer_add(out, esc, 2);
		run = s + 1;
	}
	evbuffer_add(out, run, (size_t)(s - run));
}

/* A float the way the format wants it: NaN, +Inf, -Inf, or shortest exact-enough. */
static void put_double(struct evbuffer *out, double v)
{
	if (isnan(v))
		evbuffer_add_printf(out, "NaN");
	else if (isinf(v))
		evbuffer_add_printf(out, v > 0 ? "+Inf" : "-Inf");
	else {
		char s[40];

		/* the shortest of two precisions that reads back as the same double */
		snprintf(s, sizeof(s), "%.15g", v);
		if (strtod(s, NULL) != v)
			snprintf(s, sizeof(s), "%.17g", v);
		evbuffer_add(out, s, strlen(s));
	}
}

static void family(struct evbuffer *out, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One sample with no label or one label. */
static void sample_u64(struct evbuffer *out, const char *name, const char *label, const char *value,
		       uint64_t v)
{
	evbuffer_add_printf(out, "%s", name);
	if (label) {
		evbuffer_add_printf(out, "{%s=\"", label);
		put_label_value(out, value);
		evbuffer_add_printf(out, "\"}");
	}
	evbuffer_add_printf(out, " %llu\n", (unsigned long long)v);
}

static void counter(struct evbuffer *out, const char *name, const char *help, uint64_t v)
{
	family(out, name, "counter", help);
	sample_u64(out, name, NULL, NULL, v);
}

static void gauge(struct evbuffer *out, const char *name, const char *help, uint64_t v)
{
	family(out, name, "gauge", help);
	sample_u64(out, name, NULL, NULL, v);
}

static double ratio(uint64_t hits, uint64_t misses)
{
	return hits + misses ? (double)hits / (double)(hits + misses) : NAN;
}

static void render_mounts(struct granaryd *d, struct evbuffer *out)
{
	static const struct {
		const char *name, *type, *help;
		size_t off;
	} per_mount[] = {
		{"granary_hits_total", "counter", "Opens answered from a cached copy, by mount.",
		 offsetof(struct mount, hits)},
		{"granary_misses_total", "counter", "Opens of objects not cached, by mount.",
		 offsetof(struct mount, misses)},
		{"granary_mount_objects", "gauge", "Objects cached, by mount.",
		 offsetof(struct mount, objects)},
		{"granary_mount_bytes", "gauge", "Bytes of objects cached, by mount.",
		 offsetof(struct mount, bytes)},
	};
	size_t f, i;

	for (f = 0; f < sizeof(per_mount) / sizeof(per_mount[0]); f++) {
		family(out, per_mount[f].name, per_mount[f].type, per_mount[f].help);
		for (i = 0; i < d->n_mounts; i++) {
			const struct mount *m = &d->mounts[i];
			uint64_t v = *(const uint64_t *)((const char *)m + per_mount[f].off);

			sample_u64(out, per_mount[f].name, "mount", m->cfg->path, v);
		}
	}
}

/* The daemon-wide counters, from their table (counters.h). */
static void render_counters(struct granaryd *d, struct evbuffer *out)
{
	const char *last = NULL;
	size_t i;

	for (i = 0; i < counter_defs_n; i++) {
		const struct counter_def *def = &counter_defs[i];

		if (!def->family)
			continue;
		if (!last || strcmp(last, def->family) != 0)
			family(out, def->family, "counter", def->help);
		last = def->family;
		sample_u64(out, def->family, def->label, def->value, counter_get(&d->c, def));
	}
}

static void render_datasets(struct granaryd *d, struct evbuffer *out)
{
	size_t n = d->policy ? policy_dataset_count(d->policy) : 0;
	struct policy_dataset_stats st;
	uint32_t ds;

	family(out, "granary_dataset_epoch", "gauge", "Current epoch of each dataset, from 1.");
	for (ds = 0; ds < n; ds++) {
		policy_dataset_stats(d->policy, ds, &st);
		sample_u64(out, "granary_dataset_epoch", "dataset",
			   policy_dataset_name(d->policy, ds), st.epoch);
	}
	family(out, "granary_dataset_hit_ratio", "gauge",
	       "Hits over reads of each dataset in its current and previous epoch "
	       "(NaN before any read).");
	for (ds = 0; ds < n; ds++) {
		const char *name = policy_dataset_name(d->policy, ds);

		policy_dataset_stats(d->policy, ds, &st);
		evbuffer_add_printf(out, "granary_dataset_hit_ratio{dataset=\"");
		put_label_value(out, name);
		evbuffer_add_printf(out, "\",epoch=\"current\"} ");
		put_double(out, ratio(st.hits, st.misses));
		evbuffer_add_printf(out, "\ngranary_dataset_hit_ratio{dataset=\"");
		put_label_value(out, name);
		evbuffer_add_printf(out, "\",epoch=\"previous\"} ");
		put_double(out, ratio(st.prev_hits, st.prev_misses));
		evbuffer_add_printf(out, "\n");
	}
}

static void render_backends(struct metrics *mx, struct evbuffer *out)
{
	const char *h = "granary_fetch_duration_seconds";
	unsigned k, e;
	size_t i;

	family(out, h, "histogram",
	       "Time from the start of a fetch to the object being cached, "
	       "successful fetches, by backend.");
	for (k = 1; k < N_BACKENDS; k++) {
		const struct metrics_backend *b = &mx->backends[k];
		uint64_t cum = 0;

		if (!b->used)
			continue;
		for (i = 0; i < N_BUCKETS; i++) {
			cum += b->buckets[i];
			evbuffer_add_printf(out, "%s_bucket{backend=\"%s\",le=\"%g\"} %llu\n", h,
					    backend_for((enum config_backend)k)->name, bucket_le[i],
					    (unsigned long long)cum);
		}
		cum += b->buckets[N_BUCKETS];
		evbuffer_add_printf(out, "%s_bucket{backend=\"%s\",le=\"+Inf\"} %llu\n", h,
				    backend_for((enum config_backend)k)->name,
				    (unsigned long long)cum);
		evbuffer_add_printf(out, "%s_sum{backend=\"%s\"} ", h,
				    backend_for((enum config_backend)k)->name);
		put_double(out, b->sum);
		evbuffer_add_printf(out, "\n%s_count{backend=\"%s\"} %llu\n", h,
				    backend_for((enum config_backend)k)->name,
				    (unsigned long long)b->count);
	}

	family(out, "granary_fetched_bytes_total", "counter",
	       "Bytes fetched from backends into the cache, by backend.");
	for (k = 1; k < N_BACKENDS; k++) {
		if (mx->backends[k].used)
			sample_u64(out, "granary_fetched_bytes_total", "backend",
				   backend_for((enum config_backend)k)->name,
				   mx->backends[k].bytes);
	}

	family(out, "granary_backend_errors_total", "counter",
	       "Fetches that failed, by backend and kind of error "
	       "(timeout, io, notfound, denied, other).");
	for (k = 1; k < N_BACKENDS; k++) {
		if (!mx->backends[k].used)
			continue;
		for (e = 0; e < N_ERR_KINDS; e++)
			evbuffer_add_printf(out,
					    "granary_backend_errors_total{backend=\"%s\","
					    "kind=\"%s\"} %llu\n",
					    backend_for((enum config_backend)k)->name,
					    error_kind_name[e],
					    (unsigned long long)mx->backends[k].errors[e]);
	}
}

static void render(struct granaryd *d, struct evbuffer *out)
{
	render_counters(d, out);
	render_mounts(d, out);

	gauge(out, "granary_cache_capacity_bytes", "Configured capacity of the cache.",
	      d->cfg->cache.capacity);
	gauge(out, "granary_cache_used_bytes", "Bytes of complete objects in the cache.", d->used);
	gauge(out, "granary_cache_reserved_bytes", "Bytes promised to fetches in flight.",
	      d->reserved);
	gauge(out, "granary_cache_objects", "Objects in the index, cached or being fetched.",
	      d->idx ? index_count(d->idx) : 0);
	gauge(out, "granary_fetches_inflight", "Backend fetches under way.", d->fetches_inflight);

	family(out, "granary_queue_depth", "gauge",
	       "Requests queued or running: disk I/O (uring) and blocking work (pool).");
	sample_u64(out, "granary_queue_depth", "queue", "uring", d->io ? uring_inflight(d->io) : 0);
	sample_u64(out, "granary_queue_depth", "queue", "pool",
		   d->pool ? pool_pending(d->pool) : 0);
	gauge(out, "granary_connections", "Client connections open on the local socket.",
	      server_connections(d));

	render_datasets(d, out);
	render_backends(d->metrics, out);

	family(out, "granary_uptime_seconds", "gauge", "Seconds since granaryd started.");
	evbuffer_add_printf(out, "granary_uptime_seconds ");
	put_double(out, (double)(clock_now_ns() - d->start_mono_ns) / 1e9);
	evbuffer_add_printf(out, "\n");
	counter(out, "granary_metrics_scrapes_total", "Requests for this page.",
		d->metrics->scrapes);
	family(out, "granary_build_info", "gauge", "Always 1; the labels say which build runs.");
	evbuffer_add_printf(out, "granary_build_info{version=\"%s\"} 1\n", GRANARY_VERSION);
}

static void reply_text(struct evhttp_request *req, int code, const char *reason,
		       struct evbuffer *body)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	evhttp_add_header(h, "Content-Type", METRICS_CONTENT_TYPE);
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_send_reply(req, code, reason, body);
}

static void on_metrics(struct evhttp_request *req, void *arg)
{
	struct granaryd *d = arg;
	struct evbuffer *out = evbuffer_new();

	if (!out) {
		evhttp_send_error(req, HTTP_SERVUNAVAIL, "out of memory");
		return;
	}
	d->metrics->scrapes++;
	render(d, out);
	reply_text(req, HTTP_OK, "OK", out);
	evbuffer_free(out);
}

static void on_other(struct evhttp_request *req, void *arg)
{
	struct evbuffer *out = evbuffer_new();

	(void)arg;
	if (!out) {
		evhttp_send_error(req, HTTP_NOTFOUND, NULL);
		return;
	}
	evbuffer_add_printf(out, "not found; metrics are at /metrics\n");
	reply_text(req, HTTP_NOTFOUND, "Not Found", out);
	evbuffer_free(out);
}

/*
 * Parse "host:port" into @ss: an IPv4 address, a bracketed IPv6 address, or
 * "localhost" (127.0.0.1). No name resolution: the daemon must not stall or
 * bind somewhere unexpected because of DNS. Returns 0 or -EINVAL.
 */
static int parse_listen(const char *spec, struct sockaddr_storage *ss, int *len)
{
	char buf[128];
	const char *colon = strrchr(spec, ':');

	if (!colon || strlen(spec) >= sizeof(buf) - 16)
		return -EINVAL;
	if ((size_t)(colon - spec) == strlen("localhost") &&
	    !strncmp(spec, "localhost", strlen("localhost"))) {
		snprintf(buf, sizeof(buf), "127.0.0.1%s", colon);
		spec = buf;
	}
	*len = (int)sizeof(*ss);
	memset(ss, 0, sizeof(*ss));
	if (evutil_parse_sockaddr_port(spec, (struct sockaddr *)ss, len) < 0)
		return -EINVAL;
	/* it accepts a missing port as 0: insist on a real one */
	if ((ss->ss_family == AF_INET && ((struct sockaddr_in *)ss)->sin_port == 0) ||
	    (ss->ss_family == AF_INET6 && ((struct sockaddr_in6 *)ss)->sin6_port == 0))
		return -EINVAL;
	return 0;
}

static bool is_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;

		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;

		return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
		       (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127);
	}
	return false;
}

/* A listening, non-blocking socket on @ss. Returns the fd or -errno. */
static int listen_on(const struct sockaddr_storage *ss, int len)
{
	int fd, one = 1, rc;

	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* a restarted daemon must get its port back while old connections linger */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		goto err;
	if (bind(fd, (const struct sockaddr *)ss, (socklen_t)len) < 0)
		goto err;
	if (listen(fd, 64) < 0)
		goto err;
	return fd;

err:
	rc = -errno;
	close(fd);
	return rc;
}

int metrics_start(struct granaryd *d)
{
	const char *spec = d->cfg->metrics.listen;
	struct sockaddr_storage ss;
	struct metrics *mx;
	size_t i;
	int len, fd, rc;

	d->metrics = NULL;
	if (!spec || !spec[0])
		return 0;
	mx = calloc(1, sizeof(*mx));
	if (!mx)
		return -ENOMEM;
	for (i = 0; i < d->n_mounts; i++) {
		struct metrics_backend *b = backend_of(mx, &d->mounts[i]);

		if (b)
			b->used = true;
	}
	rc = parse_listen(spec, &ss, &len);
	if (rc < 0) {
		log_errno(LOG_ERR, rc,
			  "metrics.listen is not host:port (IPv4, [IPv6] or localhost) listen=%s",
			  spec);
		goto err_free;
	}
	if (!is_loopback(&ss))
		log_warn("metrics.listen is not a loopback address: anyone who can reach it reads "
			 "the counters, mount paths and dataset names; put it behind a firewall "
			 "listen=%s",
			 spec);
	mx->http = evhttp_new(d->base);
	if (!mx->http) {
		rc = -ENOMEM;
		log_errno(LOG_ERR, rc, "evhttp_new failed");
		goto err_free;
	}
	evhttp_set_allowed_methods(mx->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_timeout(mx->http, METRICS_IDLE_TIMEOUT);
	evhttp_set_max_headers_size(mx->http, METRICS_MAX_HEADERS);
	evhttp_set_max_body_size(mx->http, 0);
	if (evhttp_set_cb(mx->http, "/metrics", on_metrics, d) < 0) {
		rc = -ENOMEM;
		log_errno(LOG_ERR, rc, "evhttp_set_cb failed");
		goto err_http;
	}
	evhttp_set_gencb(mx->http, on_other, d);

	fd = listen_on(&ss, len);
	if (fd < 0) {
		rc = fd;
		log_errno(LOG_ERR, rc, "cannot listen for metrics listen=%s", spec);
		goto err_http;
	}
	if (!evhttp_accept_socket_with_handle(mx->http, fd)) {
		/* not closed here: libevent may have closed it already; we exit anyway */
		rc = errno ? -errno : -ENOMEM;
		log_errno(LOG_ERR, rc, "evhttp_accept_socket_with_handle failed listen=%s", spec);
		goto err_http;
	}
	d->metrics = mx;
	log_info("metrics listening listen=%s", spec);
	return 0;

err_http:
	evhttp_free(mx->http);
err_free:
	free(mx);
	return rc;
}

void metrics_stop(struct granaryd *d)
{
	struct metrics *mx = d->metrics;

	if (!mx)
		return;
	d->metrics = NULL;
	/* closes the listener and every scraper's connection */
	evhttp_free(mx->http);
	free(mx);
}
