/*
 * backend_remote.h - private to the object-store backends (backend_remote.c,
 * backend_http.c, backend_s3.c): a mount's state and one request to the
 * server with its retries.
 *
 * Owns: struct remote_mount (the mount's URL split for its kind, credentials,
 * the calls in flight), struct remote_op (one backend_call being answered),
 * struct remote_req (one HTTP request: easy handle, retries with jittered
 * exponential backoff, response headers, where the body goes).
 *
 * DESIGN: every remote mount shares the daemon's one curl_loop. A backend
 * call becomes an op; an op runs one request (head, small get, listing) or
 * up to fetch.chunk_parallel at once (ranged get). A request retries by
 * itself on timeouts, connection errors and 5xx; what reaches the op is a
 * final HTTP status, or an error once the retry budget is spent. The op
 * answers the call from a zero-delay event, never from inside libcurl. When
 * the daemon begins to stop, ops in flight are answered -ECANCELED at once,
 * as posix copies are at their next chunk, so that the stop does not wait
 * for (or leak) a stalled transfer; fini() drops whatever is left without
 * answering.
 */
#ifndef GRANARY_BACKEND_REMOTE_H
#define GRANARY_BACKEND_REMOTE_H

#include <stdbool.h>
#include <stdint.h>

#include <curl/curl.h>
#include <xxhash.h>

#include "list.h"
#include "backend.h"
#include "curl_loop.h"

struct remote_creds {
	char *key, *secret, *token; /* NULL when absent: unsigned requests */
};

/* A listing of an http directory, kept for the next pages of the same walk. */
struct http_listing;

struct remote_op;
struct remote_mount;

/*
 * What tells one remote kind from the other, filled by backend_http.c and
 * backend_s3.c: backend_remote.c asks the table, never the kind's name.
 */
struct remote_kind {
	const char *name;
	bool bucket;	 /* the URL names a bucket and a key prefix; its root is a directory */
	bool slash_dirs; /* directories are URLs ending in '/' (and redirects to them) */
	/* Set up what the kind needs beyond the URL (credentials). 0 or -errno. */
	int (*init)(struct remote_mount *rm, char *err, size_t errsz);
	/* Sign a request; NULL: requests go unsigned. */
	int (*sign)(struct remote_mount *rm, CURL *easy, struct curl_slist **hdrs);
	/* The server's own code and words in an error body; NULL: none. */
	int (*error_text)(const char *body, size_t len, char *code, size_t codesz, char *msg,
			  size_t msgsz);
	/* A 404 for an object: maybe a directory of keys. NULL: -ENOENT. Finishes @op. */
	void (*not_found)(struct remote_op *op);
	/* A 403 of a HEAD: find out why. NULL: the status's message. Finishes @op. */
	void (*denied)(struct remote_op *op, const char *url);
};

struct remote_mount {
	struct mount *m;
	struct curl_loop *cl;
	const struct remote_kind *kind;
	char *url;	  /* the mount's base URL, ending in '/' */
	char host[256];	  /* host[:port], for messages */
	bool tls;	  /* https: offer HTTP/2 and wait for multiplexing */
	char *bucket_url; /* s3: the bucket's URL, for listings */
	char *key_prefix; /* s3: the mount's key prefix, "" or ending in '/' */
	char sigv4[128];  /* s3: CURLOPT_AWS_SIGV4 parameter */
	struct remote_creds cred;
	struct list_node ops; /* in flight */
	struct event *watch;  /* while ops are in flight: is the daemon stopping? */
	bool down;	      /* the last request gave up: logged once */
	uint64_t rnd;	      /* backoff jitter */
	struct http_listing *lcache;
};

enum remote_sink {
	SINK_BODY = 0, /* collected in memory (listings, error pages) */
	SINK_FD = 1,   /* 2xx bodies written at their offset in op->fd */
};

struct remote_req {
	struct curl_xfer x;
	struct remote_op *op;
	struct event *backoff;
	char *url;
	bool head;
	enum remote_sink sink;
	bool ranged;	   /* send Range: bytes=off-(off+len-1) */
	uint64_t off, len; /* SINK_FD: where the bytes go, how many expected */
	bool hash;	   /* SINK_FD: feed op->xx in order (whole-object GET) */
	bool blind;	   /* the first range of a blind GET: describes the object */
	const char *if_match;
	size_t body_max;
	unsigned attempts;
	int index;
	/* filled per attempt */
	long status;
	bool checked; /* status and validator checked at the first byte */
	char etag[80];
	int64_t lastmod; /* seconds, or -1 */
	bool has_crange;
	uint64_t crange_start, crange_total;
	char location[512];
	char ctype[128];
	char *body;
	size_t blen, bcap;
	uint64_t got; /* body bytes of this attempt */
	int werr;     /* why the write callback stopped the transfer */
	/*
	 * SINK_FD: bytes of this attempt not yet written, and how many were.
	 * Written in large pieces, the cache file's pages come in large folios,
	 * which every later read of it copies faster.
	 */
	char *wbuf;
	size_t wlen, wcap;
	uint64_t wrote;
	char errbuf[CURL_ERROR_SIZE];
	struct curl_slist *hdrs;
	/*
	 * The request's answer: @rc 0 with status and headers filled, or -errno
	 * with @cause after the retries (or at once for an error no retry fixes).
	 */
	void (*done)(struct remote_req *r, int rc, const char *cause);
};

struct remote_op {
	struct remote_mount *rm;
	struct backend_call *call;
	struct list_node node; /* in the mount's ops */
	struct event *deliver;
	bool finished;
	char *rel;
	char *url; /* of the object, or of the listing */
	int fd;
	struct validator want; /* get: what head said */
	XXH3_state_t *xx;
	/* one request, or the ranged requests in flight */
	struct remote_req *req;
	struct remote_req **slots;
	unsigned nslots;
	/*
	 * ranged get: chunk c covers [c * span, ...) when base is 0; after a
	 * blind GET's first range [0, base), chunk 0 is that range and chunk
	 * c >= 1 covers [base + (c - 1) * span, ...), each up to the size.
	 */
	uint64_t nchunks, next_chunk, hashed;
	uint64_t base, span;
	uint8_t *chunk_done;
	/* listing */
	char *after;
	void *priv; /* the kind's own state for this op */
	void (*priv_free)(void *priv);
};

/* backend_remote.c */
int remote_init(struct mount *m, const struct remote_kind *kind, char *err, size_t errsz);
void remote_fini(struct mount *m);
void remote_head_async(struct mount *m, const char *rel, struct backend_call *call);
void remote_get_async(struct mount *m, const char *rel, int fd, struct backend_call *call);

struct remote_op *remote_op_new(struct remote_mount *rm, struct backend_call *call,
				const char *rel);
/* Answer the op's call with @err (0 or -errno) and a message for the user. */
void remote_op_finish(struct remote_op *op, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Answer @call with -ENOMEM from the loop, when not even an op could be had. */
void remote_answer_enomem(struct remote_mount *rm, struct backend_call *call);
/* A new request of @op (not started), or NULL. @url is copied. */
struct remote_req *remote_req_new(struct remote_op *op, const char *url,
				  void (*done)(struct remote_req *r, int rc, const char *cause));
int remote_req_start(struct remote_req *r);
void remote_req_free(struct remote_req *r);

/* @rel with every path component URL-escaped, '/' kept. Caller frees. */
char *remote_escape_path(const char *rel);
/* The URL of the object @rel of the mount. Caller frees. */
char *remote_object_url(const struct remote_mount *rm, const char *rel);
/*
 * The message for a status no retry changes (401, 403, other 4xx): writes a
 * sentence naming the host and returns the errno to answer with.
 */
int remote_status_error(const struct remote_req *r, char *msg, size_t msgsz);
/*
 * At the first byte of a body bound for the fd: is this the response asked
 * for, of the version head described? Returns 0 or -errno.
 */
int remote_check_first(struct remote_req *r);
/* A stable stand-in for an inode: a hash of the object's URL, never 0. */
uint64_t remote_pseudo_ino(const char *url);

static inline const struct config *remote_cfg(const struct remote_mount *rm)
{
	return rm->m->d->cfg;
}

/* backend_s3.c */
/* Parse a credentials file's text (AWS ini, or "KEY\nSECRET"). */
int s3_creds_parse(const char *text, const char *profile, struct remote_creds *c, char *err,
		   size_t errsz);
/* Credentials of an s3 mount: its file (mode 0600 or stricter) or the environment. */
int s3_creds_load(const struct config_mount *cm, struct remote_creds *c, char *err, size_t errsz);
void s3_creds_free(struct remote_creds *c);
/* Sign @easy's request for an s3 mount (no-op without credentials). */
int s3_sign_setup(struct remote_mount *rm, CURL *easy, struct curl_slist **hdrs);
/* HEAD answered 404: is it a "directory" (keys under rel/)? Finishes @op. */
void s3_probe_dir(struct remote_op *op);
/* HEAD answered 403: fetch the error code with a one-byte GET. Finishes @op. */
void s3_explain_denied(struct remote_op *op, const char *url);

/* backend_http.c */
void http_listing_free(struct http_listing *l);

#endif
