/*
 * backend_remote.c - what http and s3 share: the mount's set-up, requests
 * with retries, HEAD and GET of objects (see backend_remote.h). Loop thread,
 * except init and fini (main thread, before and after the loop runs).
 */
#include "backend_remote.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "proto.h"

#define BACKOFF_BASE_MS	  100
#define BACKOFF_MAX_MS	  5000
#define CONNECT_MAX_MS	  10000L
#define ERROR_BODY_MAX	  (64u << 10)
#define WBUF_MIN	  (64u << 10)  /* first write buffer of a body */
#define WBUF_MAX	  (512u << 10) /* largest: written when full */
#define CURL_BUFFER_BYTES (128L << 10)
#define WATCH_MS	  50

/* Every remote mount shares one multi handle on the daemon's loop. */
static struct curl_loop *shared_loop;
static unsigned shared_users;

static struct event_base *base_of(const struct remote_mount *rm)
{
	return rm->m->d->base;
}

/* ---- URLs ---- */

char *remote_escape_path(const char *rel)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(rel), i, o = 0;
	char *out = malloc(n * 3 + 1);

	if (!out)
		return NULL;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)rel[i];

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~' || c == '/') {
			out[o++] = (char)c;
		} else {
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
	return out;
}

char *remote_object_url(const struct remote_mount *rm, const char *rel)
{
	char *esc = remote_escape_path(rel), *url;
	size_t n;

	if (!esc)
		return NULL;
	n = strlen(rm->url) + strlen(esc) + 1;
	url = malloc(n);
	if (url)
		snprintf(url, n, "%s%s", rm->url, esc);
	free(esc);
	return url;
}

/* Split the mount's URL: host for messages, bucket and key prefix for s3. */
static int split_url(struct remote_mount *rm, bool path_style, char *err, size_t errsz)
{
	const char *u = rm->url, *auth, *path, *at;
	char *unesc;
	size_t alen;
	int n;

	rm->tls = !strncasecmp(u, "https://", 8);
	auth = strstr(u, "://") + 3;
	path = strchr(auth, '/'); /* the config guarantees a trailing '/' */
	at = memchr(auth, '@', (size_t)(path - auth));
	if (at) {
		/* credentials never belong in the URL: they would reach the logs */
		snprintf(err, errsz, "url must not carry a user name or password");
		return -EINVAL;
	}
	alen = (size_t)(path - auth);
	snprintf(rm->host, sizeof(rm->host), "%.*s", (int)alen, auth);
	if (!rm->kind->bucket)
		return 0;
	if (path_style) {
		const char *b = path + 1, *slash = strchr(b, '/');

		if (!slash || slash == b) {
			snprintf(err, errsz,
				 "url names no bucket: with path_style the URL is "
				 "http(s)://HOST/BUCKET/[PREFIX/]");
			return -EINVAL;
		}
		n = (int)(slash - u);
		if (asprintf(&rm->bucket_url, "%.*s", n, u) < 0)
			return -ENOMEM;
		path = slash;
	} else {
		n = (int)(path - u);
		if (asprintf(&rm->bucket_url, "%.*s/", n, u) < 0)
			return -ENOMEM;
	}
	unesc = curl_unescape(path + 1, 0);
	if (!unesc)
		return -ENOMEM;
	rm->key_prefix = strdup(unesc);
	curl_free(unesc);
	return rm->key_prefix ? 0 : -ENOMEM;
}

/* ---- the mount ---- */

static void on_watch(evutil_socket_t fd, short what, void *arg)
{
	struct remote_mount *rm = arg;
	struct list_node *n, *tmp;
	struct remote_op *op;

	(void)fd;
	(void)what;
	if (!rm->m->d->stopping)
		return;
	list_for_each_safe(n, tmp, &rm->ops)
	{
		op = list_entry(n, struct remote_op, node);
		remote_op_finish(op, -ECANCELED, "granaryd is shutting down");
	}
	event_del(rm->watch);
}

int remote_init(struct mount *m, const struct remote_kind *kind, char *err, size_t errsz)
{
	const struct config_mount *cm = m->cfg;
	struct remote_mount *rm;
	int rc;

	if (!cm->url) {
		snprintf(err, errsz, "no url configured");
		return -EINVAL;
	}
	rm = calloc(1, sizeof(*rm));
	if (!rm)
		return -ENOMEM;
	rm->m = m;
	rm->kind = kind;
	list_init(&rm->ops);
	rm->url = strdup(cm->url);
	if (!rm->url) {
		rc = -ENOMEM;
		goto err_free;
	}
	rc = split_url(rm, cm->path_style, err, errsz);
	if (rc < 0)
		goto err_free;
	if (kind->init) {
		rc = kind->init(rm, err, errsz);
		if (rc < 0)
			goto err_free;
	}
	if (!shared_loop) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
			snprintf(err, errsz, "libcurl failed to initialise");
			rc = -EIO;
			goto err_free;
		}
		shared_loop = curl_loop_create(m->d->base, m->d->cfg->fetch.connections, &rc);
		if (!shared_loop) {
			curl_global_cleanup();
			snprintf(err, errsz, "cannot set up libcurl's multi handle");
			goto err_free;
		}
	}
	rm->watch = event_new(m->d->base, -1, EV_PERSIST, on_watch, rm);
	if (!rm->watch) {
		rc = -ENOMEM;
		goto err_loop;
	}
	shared_users++;
	rm->cl = shared_loop;
	rm->rnd = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)rm;
	m->priv = rm;
	log_info("mount ready mount=%s backend=%s host=%s", cm->path, kind->name, rm->host);
	return 0;

err_loop:
	if (shared_users == 0) {
		curl_loop_destroy(shared_loop);
		shared_loop = NULL;
		curl_global_cleanup();
	}
err_free:
	s3_creds_free(&rm->cred);
	free(rm->bucket_url);
	free(rm->key_prefix);
	free(rm->url);
	free(rm);
	return rc;
}

static void op_free(struct remote_op *op);

void remote_fini(struct mount *m)
{
	struct remote_mount *rm = m->priv;

	if (!rm)
		return;
	/* the daemon is going away: drop what is in flight without answering */
	while (!list_empty(&rm->ops))
		op_free(list_first(&rm->ops, struct remote_op, node));
	event_free(rm->watch);
	http_listing_free(rm->lcache);
	s3_creds_free(&rm->cred);
	free(rm->bucket_url);
	free(rm->key_prefix);
	free(rm->url);
	free(rm);
	m->priv = NULL;
	if (--shared_users == 0) {
		curl_loop_destroy(shared_loop);
		shared_loop = NULL;
		curl_global_cleanup();
	}
}

/* ---- requests ---- */

static size_t on_header(char *p, size_t size, size_t nmemb, void *arg)
{
	struct remote_req *r = arg;
	size_t n = size * nmemb, nl;
	char line[1024], *v, *end;

	if (n >= 5 && !strncmp(p, "HTTP/", 5)) {
		/* a new response (after a 100 Continue or a redirect): forget the last */
		r->etag[0] = r->location[0] = r->ctype[0] = '\0';
		r->lastmod = -1;
		r->has_crange = false;
		return n;
	}
	nl = n < sizeof(line) - 1 ? n : sizeof(line) - 1;
	memcpy(line, p, nl);
	line[nl] = '\0';
	v = strchr(line, ':');
	if (!v)
		return n;
	*v++ = '\0';
	while (*v == ' ' || *v == '\t')
		v++;
	end = v + strlen(v);
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
		*--end = '\0';
	if (!strcasecmp(line, "etag")) {
		if (strlen(v) < sizeof(r->etag))
			snprintf(r->etag, sizeof(r->etag), "%s", v);
	} else if (!strcasecmp(line, "last-modified")) {
		time_t t = curl_getdate(v, NULL);

		r->lastmod = t < 0 ? -1 : (int64_t)t;
	} else if (!strcasecmp(line, "content-range")) {
		unsigned long long a = 0, b = 0, t = 1;

		if (sscanf(v, "bytes %llu-%llu/%llu", &a, &b, &t) == 3) {
			r->has_crange = true;
			r->crange_start = a;
			r->crange_total = t;
		}
		if (r->blind && (!strcmp(v, "bytes */0") || (r->has_crange && t == 0))) {
			/*
			 * An empty object has no range to send (some servers
			 * announce one byte anyway and never send it): stop
			 * here, its HEAD describes it.
			 */
			r->werr = -ENODATA;
			return 0;
		}
	} else if (!strcasecmp(line, "location")) {
		snprintf(r->location, sizeof(r->location), "%s", v);
	} else if (!strcasecmp(line, "content-type")) {
		snprintf(r->ctype, sizeof(r->ctype), "%s", v);
	}
	return n;
}

/* backend_remote.h */
int remote_check_first(struct remote_req *r)
{
	const struct validator *want = &r->op->want;

	if (r->blind) {
		/* nothing to compare yet: this response describes the object */
		if (r->status == 200)
			return 0; /* Range ignored: the whole object follows */
		if (r->status != 206 || !r->has_crange || r->crange_start != 0)
			return -EPROTO;
		return 0;
	}
	if (r->ranged && r->status != 206)
		return -ENOTSUP; /* the server ignores Range */
	if (!r->ranged && r->status != 200)
		return -EPROTO;
	if (want->etag[0] && r->etag[0] && strcmp(want->etag, r->etag))
		return -ESTALE;
	if (!want->etag[0] && want->mtime_ns && r->lastmod >= 0 &&
	    r->lastmod * NS_PER_S != want->mtime_ns)
		return -ESTALE;
	if (r->ranged &&
	    (!r->has_crange || r->crange_start != r->off || r->crange_total != want->size))
		return -ESTALE;
	return 0;
}

static size_t body_append(struct remote_req *r, const char *p, size_t n)
{
	size_t room = r->body_max - r->blen;

	if (n > room) {
		if (r->status / 100 == 2) {
			r->werr = -EFBIG;
			return 0;
		}
		n = room; /* an error page: its beginning says enough */
	}
	if (r->blen + n + 1 > r->bcap) {
		size_t ncap = (r->blen + n + 1) * 2;
		char *nb;

		if (ncap > r->body_max + 1)
			ncap = r->body_max + 1;
		nb = realloc(r->body, ncap);
		if (!nb) {
			r->werr = -ENOMEM;
			return 0;
		}
		r->body = nb;
		r->bcap = ncap;
	}
	memcpy(r->body + r->blen, p, n);
	r->blen += n;
	r->body[r->blen] = '\0';
	return n;
}

static int write_at(int fd, const char *p, size_t n, uint64_t off)
{
	size_t done = 0;

	while (done < n) {
		ssize_t w = pwrite(fd, p + done, n - done, (off_t)(off + done));

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		done += (size_t)w;
	}
	return 0;
}

/* Write what the request's buffer holds at its place in op->fd. */
static int wbuf_flush(struct remote_req *r)
{
	int rc;

	if (!r->wlen)
		return 0;
	rc = write_at(r->op->fd, r->wbuf, r->wlen, r->off + r->wrote);
	if (rc < 0)
		return rc;
	r->wrote += r->wlen;
	r->wlen = 0;
	return 0;
}

/*
 * Make room in a full buffer: grow it, else (at its largest, or no memory
 * to grow) write out what it holds. A request that never had a buffer is
 * left with none, and its bytes go straight to the file.
 */
static int wbuf_room(struct remote_req *r)
{
	if (r->wcap < WBUF_MAX) {
		size_t cap = r->wcap ? r->wcap * 2 : WBUF_MIN;
		char *nb;

		if (cap > WBUF_MAX)
			cap = WBUF_MAX;
		nb = realloc(r->wbuf, cap);
		if (nb) {
			r->wbuf = nb;
			r->wcap = cap;
			return 0;
		}
	}
	return wbuf_flush(r);
}

static size_t on_write(char *p, size_t size, size_t nmemb, void *arg)
{
	struct remote_req *r = arg;
	struct remote_op *op = r->op;
	size_t n = size * nmemb, done = 0;
	int rc;

	if (!r->checked) {
		r->checked = true;
		curl_easy_getinfo(r->x.easy, CURLINFO_RESPONSE_CODE, &r->status);
		if (r->sink == SINK_FD && r->status / 100 == 2) {
			rc = remote_check_first(r);
			if (rc) {
				r->werr = rc;
				return 0;
			}
		}
	}
	if (r->sink != SINK_FD || r->status / 100 != 2) {
		size_t got = body_append(r, p, n);

		return r->werr ? 0 : (got < n ? n : got);
	}
	if (r->got + n > r->len && !(r->blind && r->status == 200)) {
		r->werr = -ESTALE; /* longer than head said */
		return 0;
	}
	while (done < n) {
		size_t k;

		rc = r->wlen == r->wcap ? wbuf_room(r) : 0;
		if (rc == 0 && !r->wcap) /* no buffer to be had: straight to the file */
			rc = write_at(op->fd, p + done, n - done, r->off + r->wrote);
		if (rc < 0) {
			r->werr = rc;
			return 0;
		}
		if (!r->wcap) {
			r->wrote += n - done;
			break;
		}
		k = r->wcap - r->wlen < n - done ? r->wcap - r->wlen : n - done;
		memcpy(r->wbuf + r->wlen, p + done, k);
		r->wlen += k;
		done += k;
	}
	if (r->hash)
		XXH3_64bits_update(op->xx, p, n);
	r->got += n;
	return n;
}

static void mark_up(struct remote_mount *rm)
{
	if (rm->down) {
		rm->down = false;
		log_info("backend reachable again mount=%s host=%s", rm->m->cfg->path, rm->host);
	}
}

static bool permanent(CURLcode rc)
{
	switch (rc) {
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
	case CURLE_NOT_BUILT_IN:
	case CURLE_OUT_OF_MEMORY:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_LOGIN_DENIED:
	case CURLE_TOO_MANY_REDIRECTS:
	case CURLE_FILESIZE_EXCEEDED:
	case CURLE_ABORTED_BY_CALLBACK:
		return true;
	default:
		return false;
	}
}

static uint64_t next_rand(struct remote_mount *rm)
{
	/* xorshift64*: jitter only, no need for more */
	rm->rnd ^= rm->rnd >> 12;
	rm->rnd ^= rm->rnd << 25;
	rm->rnd ^= rm->rnd >> 27;
	return rm->rnd * 0x2545F4914F6CDD1DULL;
}

static void on_backoff(evutil_socket_t fd, short what, void *arg)
{
	struct remote_req *r = arg;
	int rc;

	(void)fd;
	(void)what;
	if (r->op->rm->m->d->stopping) {
		r->done(r, -ECANCELED, "granaryd is shutting down");
		return;
	}
	rc = remote_req_start(r);
	if (rc < 0)
		r->done(r, rc, "cannot start a request");
}

static void xfer_done(struct curl_xfer *x, CURLcode rc)
{
	struct remote_req *r = (struct remote_req *)x;
	struct remote_mount *rm = r->op->rm;
	const struct config *cfg = remote_cfg(rm);
	char cause[CURL_ERROR_SIZE + 300];
	struct timeval tv;
	uint64_t ms;

	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &r->status);
	if (rc == CURLE_OK && r->status < 500 && r->status != 429 && r->status != 408) {
		int frc = r->sink == SINK_FD ? wbuf_flush(r) : 0;

		mark_up(rm);
		if (frc < 0)
			r->done(r, frc, strerror(-frc));
		else
			r->done(r, 0, NULL);
		return;
	}
	if (rc == CURLE_WRITE_ERROR && r->werr) {
		mark_up(rm);
		r->done(r, r->werr, strerror(-r->werr));
		return;
	}
	if (rc == CURLE_OK)
		snprintf(cause, sizeof(cause), "HTTP %ld from %s", r->status, rm->host);
	else
		snprintf(cause, sizeof(cause), "%s from %s",
			 r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc), rm->host);
	if (rc != CURLE_OK && permanent(rc)) {
		r->done(r, -EIO, cause);
		return;
	}
	if (rm->m->d->stopping) {
		r->done(r, -ECANCELED, "granaryd is shutting down");
		return;
	}
	if (r->attempts > cfg->fetch.retries) {
		char msg[sizeof(cause) + 64];

		if (!rm->down) {
			rm->down = true;
			log_warn("backend failing mount=%s host=%s attempts=%u cause=\"%s\"",
				 rm->m->cfg->path, rm->host, r->attempts, cause);
		}
		snprintf(msg, sizeof(msg), "%s (after %u attempts)", cause, r->attempts);
		r->done(r, -EIO, msg);
		return;
	}
	/* jittered exponential backoff: [0.5, 1.5) times base * 2^(attempt-1) */
	ms = (uint64_t)BACKOFF_BASE_MS << (r->attempts - 1 < 10 ? r->attempts - 1 : 10);
	if (ms > BACKOFF_MAX_MS)
		ms = BACKOFF_MAX_MS;
	ms = ms / 2 + next_rand(rm) % (ms ? ms : 1);
	log_debug("retrying mount=%s url=%s attempt=%u in_ms=%llu cause=\"%s\"", rm->m->cfg->path,
		  r->url, r->attempts, (unsigned long long)ms, cause);
	tv = clock_timeval((int64_t)ms * NS_PER_MS);
	evtimer_add(r->backoff, &tv);
}

struct remote_req *remote_req_new(struct remote_op *op, const char *url,
				  void (*done)(struct remote_req *r, int rc, const char *cause))
{
	struct remote_req *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->op = op;
	r->done = done;
	r->index = -1;
	r->body_max = ERROR_BODY_MAX;
	r->url = strdup(url);
	r->backoff = evtimer_new(base_of(op->rm), on_backoff, r);
	if (!r->url || !r->backoff) {
		remote_req_free(r);
		return NULL;
	}
	return r;
}

void remote_req_free(struct remote_req *r)
{
	if (!r)
		return;
	if (r->x.easy) {
		curl_loop_remove(&r->x);
		curl_easy_cleanup(r->x.easy);
	}
	if (r->backoff)
		event_free(r->backoff);
	curl_slist_free_all(r->hdrs);
	free(r->body);
	free(r->wbuf);
	free(r->url);
	free(r);
}

static int add_header(struct curl_slist **l, const char *h)
{
	struct curl_slist *n = curl_slist_append(*l, h);

	if (!n)
		return -ENOMEM;
	*l = n;
	return 0;
}

int remote_req_start(struct remote_req *r)
{
	struct remote_mount *rm = r->op->rm;
	const struct config *cfg = remote_cfg(rm);
	long timeout_ms = (long)(cfg->fetch.timeout_ns / 1000000);
	char h[160];
	CURL *e;
	int rc;

	r->attempts++;
	r->status = 0;
	r->checked = false;
	r->etag[0] = r->location[0] = r->ctype[0] = '\0';
	r->lastmod = -1;
	r->has_crange = false;
	r->blen = 0;
	r->got = 0;
	r->werr = 0;
	r->wlen = 0;
	r->wrote = 0;
	r->errbuf[0] = '\0';
	curl_slist_free_all(r->hdrs);
	r->hdrs = NULL;
	if (r->hash)
		XXH3_64bits_reset(r->op->xx);

	if (!r->x.easy) {
		r->x.easy = curl_easy_init();
		if (!r->x.easy)
			return -ENOMEM;
	} else {
		curl_easy_reset(r->x.easy);
	}
	e = r->x.easy;
	if (timeout_ms < 1)
		timeout_ms = 1;
	curl_easy_setopt(e, CURLOPT_URL, r->url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
			 timeout_ms < CONNECT_MAX_MS ? timeout_ms : CONNECT_MAX_MS);
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "granary");
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_BUFFERSIZE, CURL_BUFFER_BYTES);
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	if (rm->tls)
		curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
	if (r->head)
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	if (r->ranged) {
		snprintf(h, sizeof(h), "Range: bytes=%llu-%llu", (unsigned long long)r->off,
			 (unsigned long long)(r->off + r->len - 1));
		if (add_header(&r->hdrs, h) < 0)
			return -ENOMEM;
	}
	if (r->if_match && r->if_match[0] && strncmp(r->if_match, "W/", 2)) {
		/* a weak ETag never matches If-Match; compare the header instead */
		snprintf(h, sizeof(h), "If-Match: %s", r->if_match);
		if (add_header(&r->hdrs, h) < 0)
			return -ENOMEM;
	}
	if (rm->kind->sign) {
		rc = rm->kind->sign(rm, e, &r->hdrs);
		if (rc < 0)
			return rc;
	}
	if (r->hdrs)
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
	r->x.done = xfer_done;
	return curl_loop_add(rm->cl, &r->x);
}

int remote_status_error(const struct remote_req *r, char *msg, size_t msgsz)
{
	const struct remote_mount *rm = r->op->rm;
	char code[128] = "", text[256] = "";

	if (rm->kind->error_text && r->blen)
		rm->kind->error_text(r->body, r->blen, code, sizeof(code), text, sizeof(text));
	switch (r->status) {
	case 401:
	case 403:
		snprintf(msg, msgsz, "%ld %s from %s%s%s", r->status,
			 r->status == 401 ? "Unauthorized" : "Forbidden", rm->host,
			 code[0] ? ": " : "", code);
		return -EACCES;
	case 404:
		snprintf(msg, msgsz, "not found at %s", rm->host);
		return -ENOENT;
	case 412:
		snprintf(msg, msgsz, "the object changed at %s", rm->host);
		return -ESTALE;
	default:
		snprintf(msg, msgsz, "HTTP %ld from %s%s%s", r->status, rm->host,
			 code[0] ? ": " : "", code);
		return -EIO;
	}
}

/* ---- ops ---- */

static void op_free(struct remote_op *op)
{
	struct remote_mount *rm = op->rm;
	unsigned i;

	remote_req_free(op->req);
	for (i = 0; i < op->nslots; i++)
		remote_req_free(op->slots[i]);
	free(op->slots);
	if (op->xx)
		XXH3_freeState(op->xx);
	if (op->priv_free)
		op->priv_free(op->priv);
	if (op->deliver)
		event_free(op->deliver);
	list_del(&op->node);
	if (list_empty(&rm->ops) && rm->watch)
		event_del(rm->watch);
	free(op->chunk_done);
	free(op->after);
	free(op->url);
	free(op->rel);
	free(op);
}

static void on_deliver(evutil_socket_t fd, short what, void *arg)
{
	struct remote_op *op = arg;
	struct backend_call *call = op->call;

	(void)fd;
	(void)what;
	op_free(op);
	call->done(call);
}

struct remote_op *remote_op_new(struct remote_mount *rm, struct backend_call *call, const char *rel)
{
	struct remote_op *op = calloc(1, sizeof(*op));

	if (!op)
		return NULL;
	op->rm = rm;
	op->call = call;
	op->fd = -1;
	op->rel = strdup(rel);
	op->deliver = event_new(base_of(rm), -1, 0, on_deliver, op);
	list_add_head(&rm->ops, &op->node);
	if (!evtimer_pending(rm->watch, NULL)) {
		struct timeval tv = {0, WATCH_MS * 1000};

		event_add(rm->watch, &tv);
	}
	if (!op->rel || !op->deliver) {
		op_free(op);
		return NULL;
	}
	call->err = 0;
	call->msg[0] = '\0';
	return op;
}

void remote_op_finish(struct remote_op *op, int err, const char *fmt, ...)
{
	struct backend_call *call = op->call;
	unsigned i;
	va_list ap;

	if (op->finished)
		return;
	op->finished = true;
	call->err = err;
	/* @fmt's arguments must not point into call->msg: it is written here */
	va_start(ap, fmt);
	vsnprintf(call->msg, sizeof(call->msg), fmt, ap);
	va_end(ap);
	/* stop what still runs now; free it with the op */
	if (op->req && op->req->x.easy)
		curl_loop_remove(&op->req->x);
	if (op->req)
		evtimer_del(op->req->backoff);
	for (i = 0; i < op->nslots; i++) {
		if (op->slots[i] && op->slots[i]->x.easy)
			curl_loop_remove(&op->slots[i]->x);
		if (op->slots[i])
			evtimer_del(op->slots[i]->backoff);
	}
	if (err && op->fd >= 0 && ftruncate(op->fd, 0) < 0)
		log_debug("truncating a failed fetch's file failed fd=%d", op->fd);
	event_active(op->deliver, 0, 0);
}

/* An op that could not even be allocated still answers, later. */
static void on_early(evutil_socket_t fd, short what, void *arg)
{
	struct backend_call *call = arg;

	(void)fd;
	(void)what;
	call->done(call);
}

void remote_answer_enomem(struct remote_mount *rm, struct backend_call *call)
{
	struct timeval tv = {0, 0};

	call->err = -ENOMEM;
	snprintf(call->msg, sizeof(call->msg), "out of memory");
	if (event_base_once(base_of(rm), -1, EV_TIMEOUT, on_early, call, &tv) < 0)
		log_err("cannot schedule an answer: a request is lost");
}

/* ---- head ---- */

uint64_t remote_pseudo_ino(const char *url)
{
	uint64_t h = XXH3_64bits(url, strlen(url));

	return h ? h : 1;
}

static void head_done(struct remote_req *r, int rc, const char *cause)
{
	struct remote_op *op = r->op;
	struct remote_mount *rm = op->rm;
	struct backend_call *call = op->call;
	struct validator *v = &call->v;
	curl_off_t clen = -1;
	char msg[sizeof(call->msg)];
	size_t ul;
	int e;

	if (rc) {
		remote_op_finish(op, rc, "%s", cause);
		return;
	}
	ul = strlen(r->url);
	if (r->status / 100 == 2) {
		if (rm->kind->slash_dirs && (!op->rel[0] || (ul && r->url[ul - 1] == '/'))) {
			call->type = PROTO_FT_DIR;
			memset(v, 0, sizeof(*v));
			v->mode = S_IFDIR | 0555;
			remote_op_finish(op, 0, "%s", "");
			return;
		}
		curl_easy_getinfo(r->x.easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &clen);
		if (clen < 0) {
			remote_op_finish(op, -EIO, "%s sent no Content-Length for the object",
					 rm->host);
			return;
		}
		memset(v, 0, sizeof(*v));
		v->size = (uint64_t)clen;
		snprintf(v->etag, sizeof(v->etag), "%s", r->etag);
		v->mtime_ns = r->lastmod >= 0 ? r->lastmod * NS_PER_S : 0;
		v->ino = remote_pseudo_ino(r->url);
		v->mode = S_IFREG | 0444;
		call->type = PROTO_FT_REG;
		remote_op_finish(op, 0, "%s", "");
		return;
	}
	if (r->status / 100 == 3 && rm->kind->slash_dirs) {
		size_t ll = strlen(r->location);

		if (ll && r->location[ll - 1] == '/') {
			/* nginx redirects a directory to its name with a slash */
			call->type = PROTO_FT_DIR;
			memset(v, 0, sizeof(*v));
			v->mode = S_IFDIR | 0555;
			remote_op_finish(op, 0, "%s", "");
			return;
		}
		remote_op_finish(op, -EIO, "HTTP %ld from %s (redirects are not followed)",
				 r->status, rm->host);
		return;
	}
	if (rm->kind->not_found && r->status == 404) {
		remote_req_free(r);
		op->req = NULL;
		rm->kind->not_found(op);
		return;
	}
	if (rm->kind->denied && r->status == 403) {
		char *url = r->url;

		r->url = NULL;
		remote_req_free(r);
		op->req = NULL;
		rm->kind->denied(op, url);
		free(url);
		return;
	}
	e = remote_status_error(r, msg, sizeof(msg));
	remote_op_finish(op, e, "%s", msg);
}

void remote_head_async(struct mount *m, const char *rel, struct backend_call *call)
{
	struct remote_mount *rm = m->priv;
	struct remote_op *op = remote_op_new(rm, call, rel);
	int rc;

	if (!op) {
		remote_answer_enomem(rm, call);
		return;
	}
	if (rm->kind->bucket && !rel[0]) {
		/* the bucket (or the mount's prefix) itself */
		call->type = PROTO_FT_DIR;
		memset(&call->v, 0, sizeof(call->v));
		call->v.mode = S_IFDIR | 0555;
		remote_op_finish(op, 0, "%s", "");
		return;
	}
	op->url = rel[0] ? remote_object_url(rm, rel) : strdup(rm->url);
	if (!op->url || !(op->req = remote_req_new(op, op->url, head_done))) {
		remote_op_finish(op, -ENOMEM, "out of memory");
		return;
	}
	op->req->head = true;
	rc = remote_req_start(op->req);
	if (rc < 0)
		remote_op_finish(op, rc, "cannot start a request to %s", rm->host);
}
