/*
 * backend_s3.c - an S3 bucket (or a prefix of one) through the S3 REST API.
 *
 * Requests are signed by libcurl (CURLOPT_AWS_SIGV4, "aws:amz:REGION:s3")
 * with an unsigned payload; objects are read with HEAD and GET like any
 * HTTP object (backend_remote.c), directories are key prefixes, listed
 * with ListObjectsV2 and the delimiter '/'. The validator is the ETag.
 *
 * Credentials come from the mount's credentials_file, which must not be
 * readable by group or others (granaryd refuses to start otherwise), or from
 * AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN); with
 * neither, requests go unsigned (a public bucket). They are never logged. The
 * file is either the AWS ini form, profile [default] (or $AWS_PROFILE):
 *
 *   [default]
 *   aws_access_key_id = AKIA...
 *   aws_secret_access_key = ...
 *   aws_session_token = ...        (optional)
 *
 * or two lines, the access key then the secret.
 *
 * The mount's url names the bucket: with path_style (the default)
 * https://ENDPOINT/BUCKET/[PREFIX/], else https://BUCKET.ENDPOINT/[PREFIX/].
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend_remote.h"
#include "log.h"
#include "proto.h"
#include "s3_list.h"

#define CREDS_MAX     (64u << 10)
#define LIST_BODY_MAX (32u << 20)
#define LIST_MAX_KEYS 1000
#define LIST_PAGES    64 /* continuation pages one call may read */

/* ---- credentials ---- */

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t' || *s == '\r')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

static int set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = strdup(v);
	return *dst ? 0 : -ENOMEM;
}

void s3_creds_free(struct remote_creds *c)
{
	if (c->secret)
		explicit_bzero(c->secret, strlen(c->secret));
	if (c->token)
		explicit_bzero(c->token, strlen(c->token));
	free(c->key);
	free(c->secret);
	free(c->token);
	c->key = c->secret = c->token = NULL;
}

int s3_creds_parse(const char *text, const char *profile, struct remote_creds *c, char *err,
		   size_t errsz)
{
	char *copy = strdup(text), *line, *save = NULL;
	char *plain[2] = {NULL, NULL};
	bool ini = false, in_profile = true;
	int nplain = 0, rc = 0;

	if (!copy)
		return -ENOMEM;
	if (!profile || !profile[0])
		profile = "default";
	for (line = strtok_r(copy, "\n", &save); line && !rc; line = strtok_r(NULL, "\n", &save)) {
		char *l = trim(line), *eq;

		if (!l[0] || l[0] == '#' || l[0] == ';')
			continue;
		if (l[0] == '[') {
			char *end = strchr(l, ']'), *name;

			ini = true;
			if (!end) {
				snprintf(err, errsz, "credentials file: unterminated section '%s'",
					 l);
				rc = -EINVAL;
				break;
			}
			*end = '\0';
			name = trim(l + 1);
			if (!strncmp(name, "profile ", 8))
				name = trim(name + 8);
			in_profile = !strcmp(name, profile);
			continue;
		}
		eq = strchr(l, '=');
		if (eq) {
			char *k, *v;

			ini = true;
			*eq = '\0';
			k = trim(l);
			v = trim(eq + 1);
			if (!in_profile)
				continue;
			if (!strcasecmp(k, "aws_access_key_id"))
				rc = set_str(&c->key, v);
			else if (!strcasecmp(k, "aws_secret_access_key"))
				rc = set_str(&c->secret, v);
			else if (!strcasecmp(k, "aws_session_token"))
				rc = set_str(&c->token, v);
			continue;
		}
		if (nplain < 2)
			plain[nplain] = l;
		nplain++;
	}
	if (!rc && !ini) {
		if (nplain == 2) {
			rc = set_str(&c->key, plain[0]);
			if (!rc)
				rc = set_str(&c->secret, plain[1]);
		} else {
			snprintf(
				err, errsz,
				"credentials file: expected AWS ini lines (aws_access_key_id = ..., "
				"aws_secret_access_key = ...) or two lines, the key then the secret");
			rc = -EINVAL;
		}
	}
	if (!rc && (!c->key || !c->secret)) {
		snprintf(err, errsz,
			 "credentials file: no aws_access_key_id and aws_secret_access_key in "
			 "profile [%s]",
			 profile);
		rc = -EINVAL;
	}
	explicit_bzero(copy, strlen(text));
	free(copy);
	if (rc)
		s3_creds_free(c);
	return rc;
}

static int creds_from_file(const char *path, struct remote_creds *c, char *err, size_t errsz)
{
	struct stat sb;
	char *buf;
	ssize_t n;
	size_t len = 0;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errsz, "cannot open credentials file %s: %s", path, strerror(errno));
		return rc;
	}
	if (fstat(fd, &sb) < 0) {
		rc = -errno;
		snprintf(err, errsz, "cannot stat credentials file %s: %s", path, strerror(errno));
		goto err_close;
	}
	if (!S_ISREG(sb.st_mode)) {
		snprintf(err, errsz, "credentials file %s is not a regular file", path);
		rc = -EINVAL;
		goto err_close;
	}
	if (sb.st_mode & 077) {
		snprintf(err, errsz,
			 "credentials file %s has mode %04o: it must not be readable by group or "
			 "others (chmod 600 %s)",
			 path, (unsigned)(sb.st_mode & 07777), path);
		rc = -EPERM;
		goto err_close;
	}
	buf = calloc(1, CREDS_MAX + 1);
	if (!buf) {
		rc = -ENOMEM;
		goto err_close;
	}
	while (len < CREDS_MAX && (n = read(fd, buf + len, CREDS_MAX - len)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			snprintf(err, errsz, "cannot read credentials file %s: %s", path,
				 strerror(errno));
			goto err_free;
		}
		len += (size_t)n;
	}
	rc = s3_creds_parse(buf, getenv("AWS_PROFILE"), c, err, errsz);
	if (rc == -EINVAL) {
		/* name the file: the parser does not know it */
		char tmp[256];

		snprintf(tmp, sizeof(tmp), "%s", err);
		snprintf(err, errsz, "%s: %s", path, tmp);
	}
err_free:
	explicit_bzero(buf, len);
	free(buf);
err_close:
	close(fd);
	return rc;
}

int s3_creds_load(const struct config_mount *cm, struct remote_creds *c, char *err, size_t errsz)
{
	const char *k = getenv("AWS_ACCESS_KEY_ID"), *s = getenv("AWS_SECRET_ACCESS_KEY");
	const char *t = getenv("AWS_SESSION_TOKEN");

	if (cm->credentials_file)
		return creds_from_file(cm->credentials_file, c, err, errsz);
	if (!k || !k[0] || !s || !s[0])
		return 0; /* anonymous: a public bucket */
	if (set_str(&c->key, k) || set_str(&c->secret, s) || (t && t[0] && set_str(&c->token, t))) {
		s3_creds_free(c);
		return -ENOMEM;
	}
	return 0;
}

int s3_sign_setup(struct remote_mount *rm, CURL *easy, struct curl_slist **hdrs)
{
	struct curl_slist *n = curl_slist_append(*hdrs, "x-amz-content-sha256: UNSIGNED-PAYLOAD");

	if (!n)
		return -ENOMEM;
	*hdrs = n;
	if (!rm->cred.key)
		return 0;
	if (rm->cred.token) {
		char *h;

		if (asprintf(&h, "x-amz-security-token: %s", rm->cred.token) < 0)
			return -ENOMEM;
		n = curl_slist_append(*hdrs, h);
		explicit_bzero(h, strlen(h));
		free(h);
		if (!n)
			return -ENOMEM;
		*hdrs = n;
	}
	curl_easy_setopt(easy, CURLOPT_AWS_SIGV4, rm->sigv4);
	curl_easy_setopt(easy, CURLOPT_USERNAME, rm->cred.key);
	curl_easy_setopt(easy, CURLOPT_PASSWORD, rm->cred.secret);
	return 0;
}

/* ---- listing ---- */

static int query_add(char **q, size_t *len, const char *name, const char *value)
{
	char *esc = curl_easy_escape(NULL, value, 0), *nq;
	size_t need;

	if (!esc)
		return -ENOMEM;
	need = *len + strlen(name) + strlen(esc) + 3;
	nq = realloc(*q, need);
	if (!nq) {
		curl_free(esc);
		return -ENOMEM;
	}
	*q = nq;
	*len += (size_t)sprintf(nq + *len, "%s%s=%s", *len ? "&" : "", name, esc);
	curl_free(esc);
	return 0;
}

/*
 * A ListObjectsV2 URL. The parameters go in the order SigV4's canonical query
 * string wants (sorted by name, values fully escaped), so that the signature
 * does not depend on whether libcurl sorts them.
 */
static char *list_url(const struct remote_mount *rm, const char *prefix, const char *start_after,
		      const char *token, unsigned max_keys)
{
	char *q = NULL, *url = NULL, num[16];
	size_t len = 0;
	int rc = 0;

	snprintf(num, sizeof(num), "%u", max_keys);
	if (token)
		rc = query_add(&q, &len, "continuation-token", token);
	if (!rc)
		rc = query_add(&q, &len, "delimiter", "/");
	if (!rc)
		rc = query_add(&q, &len, "list-type", "2");
	if (!rc)
		rc = query_add(&q, &len, "max-keys", num);
	if (!rc)
		rc = query_add(&q, &len, "prefix", prefix);
	if (!rc && start_after && !token)
		rc = query_add(&q, &len, "start-after", start_after);
	if (!rc && asprintf(&url, "%s?%s", rm->bucket_url, q) < 0)
		url = NULL;
	free(q);
	return url;
}

struct s3_list_state {
	char *prefix; /* keys of the directory start with it */
	char *start_after;
	struct s3_listing acc; /* pages read so far */
	unsigned pages;
	bool probe; /* head's question: is there anything under prefix? */
};

static void list_state_free(void *p)
{
	struct s3_list_state *st = p;

	if (!st)
		return;
	free(st->prefix);
	free(st->start_after);
	s3_listing_free(&st->acc);
	free(st);
}

static void list_page(struct remote_op *op, const char *token);

/* The entry's name under the directory, or NULL when it is not a child. */
static const char *child_name(const struct s3_entry *e, const char *prefix, size_t plen, char *buf,
			      size_t bufsz)
{
	size_t n;

	if (strncmp(e->key, prefix, plen))
		return NULL;
	n = strlen(e->key + plen);
	if (e->is_prefix && n && e->key[plen + n - 1] == '/')
		n--;
	if (!n || n >= bufsz || memchr(e->key + plen, '/', n))
		return NULL; /* the directory's own marker, or a name we cannot return */
	memcpy(buf, e->key + plen, n);
	buf[n] = '\0';
	return buf;
}

static int cmp_dirent(const void *a, const void *b)
{
	const struct backend_dirent *x = a, *y = b;

	return strcmp(x->name, y->name);
}

/*
 * Keys come in key order, where "a.txt" < "a/" although the name "a" sorts
 * before "a.txt". When the listing was cut short after key K, a directory
 * not yet seen may be named by a prefix of K's name followed by a byte below
 * '/': only names before the shortest such prefix are certainly complete.
 * Returns that prefix's length, or 0 when every name is safe.
 */
static size_t safe_cut(const char *kname)
{
	size_t i;

	for (i = 1; kname[i]; i++)
		if ((unsigned char)kname[i] < '/')
			return i;
	return 0;
}

static void list_answer(struct remote_op *op, struct s3_list_state *st, bool truncated)
{
	struct backend_call *call = op->call;
	size_t plen = strlen(st->prefix), i, n = 0, cut = 0;
	struct backend_dirent *all = NULL;
	const char *kmax = NULL;
	char name[256];

	for (i = 0; i < st->acc.n; i++)
		if (!kmax || strcmp(st->acc.ents[i].key, kmax) > 0)
			kmax = st->acc.ents[i].key;
	if (truncated && kmax && strlen(kmax) > plen)
		cut = safe_cut(kmax + plen);
	if (st->acc.n) {
		all = calloc(st->acc.n, sizeof(*all));
		if (!all) {
			remote_op_finish(op, -ENOMEM, "out of memory");
			return;
		}
	}
	for (i = 0; i < st->acc.n; i++) {
		const struct s3_entry *e = &st->acc.ents[i];
		const char *nm = child_name(e, st->prefix, plen, name, sizeof(name));

		if (!nm || (op->after[0] && strcmp(nm, op->after) <= 0))
			continue;
		if (cut && strncmp(nm, kmax + plen, cut) >= 0)
			continue;
		snprintf(all[n].name, sizeof(all[n].name), "%s", nm);
		all[n].type = e->is_prefix ? PROTO_FT_DIR : PROTO_FT_REG;
		all[n].size = e->is_prefix ? 0 : e->size;
		n++;
	}
	if (!n && truncated && st->pages < LIST_PAGES && st->acc.next_token) {
		/* nothing certain yet: read on */
		char *tok = strdup(st->acc.next_token);

		free(all);
		if (!tok) {
			remote_op_finish(op, -ENOMEM, "out of memory");
			return;
		}
		list_page(op, tok);
		free(tok);
		return;
	}
	if (n) /* all is NULL for an empty listing */
		qsort(all, n, sizeof(*all), cmp_dirent);
	call->n_ents = n < call->max_ents ? n : call->max_ents;
	if (call->n_ents)
		memcpy(call->ents, all, call->n_ents * sizeof(*all));
	call->more = truncated || n > call->max_ents;
	free(all);
	remote_op_finish(op, 0, "%s", "");
}

static void list_done(struct remote_req *r, int rc, const char *cause)
{
	struct remote_op *op = r->op;
	struct s3_list_state *st = op->priv;
	struct backend_call *call = op->call;
	struct s3_listing page = {0};
	char perr[160];
	size_t i;

	if (rc) {
		if (rc == -EFBIG)
			remote_op_finish(op, -EIO, "listing page from %s too large", op->rm->host);
		else
			remote_op_finish(op, rc, "%s", cause);
		return;
	}
	if (r->status != 200) {
		char msg[sizeof(call->msg)];
		int e = remote_status_error(r, msg, sizeof(msg));

		remote_op_finish(op, e == -ESTALE ? -EIO : e, "%s", msg);
		return;
	}
	rc = s3_list_parse(r->body ? r->body : "", r->blen, &page, perr, sizeof(perr));
	if (rc < 0) {
		s3_listing_free(&page);
		remote_op_finish(op, rc == -ENOMEM ? rc : -EIO, "bad listing from %s: %s",
				 op->rm->host, perr);
		return;
	}
	remote_req_free(r);
	op->req = NULL;
	st->pages++;
	if (st->probe) {
		bool any = false;
		size_t plen = strlen(st->prefix);

		for (i = 0; i < page.n && !any; i++)
			any = !strncmp(page.ents[i].key, st->prefix, plen);
		s3_listing_free(&page);
		if (!any) {
			remote_op_finish(op, -ENOENT, "no such object at %s", op->rm->host);
			return;
		}
		call->type = PROTO_FT_DIR;
		memset(&call->v, 0, sizeof(call->v));
		call->v.mode = S_IFDIR | 0555;
		remote_op_finish(op, 0, "%s", "");
		return;
	}
	/* move the page's entries into the accumulated listing */
	for (i = 0; i < page.n; i++) {
		if (st->acc.n == st->acc.cap) {
			size_t ncap = st->acc.cap ? st->acc.cap * 2 : 256;
			struct s3_entry *ne = realloc(st->acc.ents, ncap * sizeof(*ne));

			if (!ne) {
				s3_listing_free(&page);
				remote_op_finish(op, -ENOMEM, "out of memory");
				return;
			}
			st->acc.ents = ne;
			st->acc.cap = ncap;
		}
		st->acc.ents[st->acc.n++] = page.ents[i];
		page.ents[i].key = NULL;
	}
	free(st->acc.next_token);
	st->acc.next_token = page.next_token;
	page.next_token = NULL;
	st->acc.truncated = page.truncated;
	s3_listing_free(&page);
	if (page.truncated && !st->acc.next_token) {
		remote_op_finish(op, -EIO, "truncated listing without a continuation token from %s",
				 op->rm->host);
		return;
	}
	list_answer(op, st, st->acc.truncated);
}

static void list_page(struct remote_op *op, const char *token)
{
	struct s3_list_state *st = op->priv;
	size_t want = op->call->max_ents + 1;
	char *url;
	int rc;

	if (st->probe)
		want = 1;
	url = list_url(op->rm, st->prefix, st->start_after, token,
		       (unsigned)(want > LIST_MAX_KEYS ? LIST_MAX_KEYS : want));
	if (!url) {
		remote_op_finish(op, -ENOMEM, "out of memory");
		return;
	}
	remote_req_free(op->req);
	op->req = remote_req_new(op, url, list_done);
	free(url);
	if (!op->req) {
		remote_op_finish(op, -ENOMEM, "out of memory");
		return;
	}
	op->req->body_max = LIST_BODY_MAX;
	rc = remote_req_start(op->req);
	if (rc < 0)
		remote_op_finish(op, rc, "cannot start a request to %s", op->rm->host);
}

static struct s3_list_state *list_state(struct remote_op *op, const char *rel)
{
	struct remote_mount *rm = op->rm;
	struct s3_list_state *st = calloc(1, sizeof(*st));

	if (!st)
		return NULL;
	op->priv = st;
	op->priv_free = list_state_free;
	if (asprintf(&st->prefix, "%s%s%s", rm->key_prefix, rel, rel[0] ? "/" : "") < 0) {
		st->prefix = NULL;
		return NULL;
	}
	return st;
}

static void s3_list_async(struct mount *m, const char *rel, const char *after,
			  struct backend_call *call)
{
	struct remote_op *op = remote_op_new(m->priv, call, rel);
	struct s3_list_state *st;

	call->n_ents = 0;
	call->more = false;
	if (!op) {
		remote_answer_enomem(m->priv, call);
		return;
	}
	st = list_state(op, rel);
	op->after = strdup(after);
	if (!st || !op->after ||
	    (after[0] && asprintf(&st->start_after, "%s%s", st->prefix, after) < 0)) {
		remote_op_finish(op, -ENOMEM, "out of memory");
		return;
	}
	list_page(op, NULL);
}

void s3_probe_dir(struct remote_op *op)
{
	struct s3_list_state *st = list_state(op, op->rel);

	if (!st) {
		remote_op_finish(op, -ENOMEM, "out of memory");
		return;
	}
	st->probe = true;
	list_page(op, NULL);
}

static void denied_done(struct remote_req *r, int rc, const char *cause)
{
	struct remote_op *op = r->op;
	char code[128] = "", text[256];

	if (rc) {
		/* the one-byte GET failed too: say what the HEAD said */
		(void)cause;
		remote_op_finish(op, -EACCES, "403 Forbidden from %s", op->rm->host);
		return;
	}
	if (r->blen)
		s3_error_parse(r->body, r->blen, code, sizeof(code), text, sizeof(text));
	remote_op_finish(op, -EACCES, "403 Forbidden from %s%s%s", op->rm->host,
			 code[0] ? ": " : "", code);
}

void s3_explain_denied(struct remote_op *op, const char *url)
{
	struct remote_req *r = remote_req_new(op, url, denied_done);
	int rc;

	if (!r) {
		remote_op_finish(op, -EACCES, "403 Forbidden from %s", op->rm->host);
		return;
	}
	op->req = r;
	/* a HEAD has no body: ask for one byte to read S3's error code */
	r->ranged = true;
	r->off = 0;
	r->len = 1;
	r->sink = SINK_BODY;
	rc = remote_req_start(r);
	if (rc < 0)
		remote_op_finish(op, -EACCES, "403 Forbidden from %s", op->rm->host);
}

/* The region's signing parameter and the credentials. */
static int s3_kind_init(struct remote_mount *rm, char *err, size_t errsz)
{
	const struct config_mount *cm = rm->m->cfg;
	int rc;

	snprintf(rm->sigv4, sizeof(rm->sigv4), "aws:amz:%s:s3",
		 cm->region ? cm->region : "us-east-1");
	rc = s3_creds_load(cm, &rm->cred, err, errsz);
	if (rc < 0)
		return rc;
	if (!rm->cred.key)
		log_info("no s3 credentials, requests are unsigned mount=%s", cm->path);
	return 0;
}

static const struct remote_kind s3_kind = {
	.name = "s3",
	.bucket = true,
	.init = s3_kind_init,
	.sign = s3_sign_setup,
	.error_text = s3_error_parse,
	.not_found = s3_probe_dir,
	.denied = s3_explain_denied,
};

static int s3_init(struct mount *m, char *err, size_t errsz)
{
	return remote_init(m, &s3_kind, err, errsz);
}

const struct backend_ops backend_s3 = {
	.name = "s3",
	.init = s3_init,
	.fini = remote_fini,
	.head_async = remote_head_async,
	.get_async = remote_get_async,
	.list_async = s3_list_async,
};
