/*
 * backend_http.c - any HTTP(S) server that answers Range requests.
 *
 * Objects are read with HEAD and GET (backend_remote.c); the validator is the
 * ETag, else Last-Modified with the size. A directory is a URL ending in '/'
 * (a server redirects the name without it there), listed from nginx's
 * autoindex in JSON (autoindex on; autoindex_format json;).
 *
 * DESIGN: the server lists a whole directory in one answer, which the
 * backend pages by name. The last listing is kept for a few seconds so that
 * walking a large directory page by page reads it once, not once per page.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "backend_remote.h"
#include "log.h"
#include "proto.h"

#define LIST_BODY_MAX (256u << 20)
#define LIST_KEEP_NS  (10 * NS_PER_S)

struct http_listing {
	char *rel;
	struct backend_dirent *ents; /* sorted by name */
	size_t n;
	int64_t at_ns;
};

void http_listing_free(struct http_listing *l)
{
	if (!l)
		return;
	free(l->rel);
	free(l->ents);
	free(l);
}

static int cmp_dirent(const void *a, const void *b)
{
	const struct backend_dirent *x = a, *y = b;

	return strcmp(x->name, y->name);
}

/* Parse nginx's JSON autoindex. Returns 0, -ENOTDIR (not a listing) or -ENOMEM. */
static int parse_autoindex(const char *body, size_t len, struct http_listing *l)
{
	json_error_t jerr;
	json_t *root = json_loadb(body, len, 0, &jerr), *e;
	size_t i;

	if (!root)
		return -ENOTDIR;
	if (!json_is_array(root)) {
		json_decref(root);
		return -ENOTDIR;
	}
	l->ents = calloc(json_array_size(root) + 1, sizeof(*l->ents));
	if (!l->ents) {
		json_decref(root);
		return -ENOMEM;
	}
	json_array_foreach(root, i, e)
	{
		const char *name = json_string_value(json_object_get(e, "name"));
		const char *type = json_string_value(json_object_get(e, "type"));
		json_t *size = json_object_get(e, "size");
		struct backend_dirent *d = &l->ents[l->n];

		if (!name || !name[0] || strlen(name) >= sizeof(d->name) || strchr(name, '/') ||
		    !strcmp(name, ".") || !strcmp(name, ".."))
			continue;
		snprintf(d->name, sizeof(d->name), "%s", name);
		if (type && !strcmp(type, "directory"))
			d->type = PROTO_FT_DIR;
		else if (type && !strcmp(type, "file"))
			d->type = PROTO_FT_REG;
		else
			d->type = PROTO_FT_OTHER;
		d->size = json_is_integer(size) && json_integer_value(size) > 0
				  ? (uint64_t)json_integer_value(size)
				  : 0;
		l->n++;
	}
	json_decref(root);
	qsort(l->ents, l->n, sizeof(*l->ents), cmp_dirent);
	return 0;
}

/* Answer the op's call with the entries of @l after op->after. */
static void answer_page(struct remote_op *op, const struct http_listing *l)
{
	struct backend_call *call = op->call;
	size_t lo = 0, hi = l->n, n;

	/* the first entry after op->after */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (strcmp(l->ents[mid].name, op->after) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	n = l->n - lo;
	call->n_ents = n < call->max_ents ? n : call->max_ents;
	if (call->n_ents)
		memcpy(call->ents, l->ents + lo, call->n_ents * sizeof(*l->ents));
	call->more = n > call->max_ents;
	remote_op_finish(op, 0, "%s", "");
}

static void list_done(struct remote_req *r, int rc, const char *cause)
{
	struct remote_op *op = r->op;
	struct remote_mount *rm = op->rm;
	struct http_listing *l;

	if (rc) {
		if (rc == -EFBIG)
			remote_op_finish(op, -EIO, "directory listing from %s too large", rm->host);
		else
			remote_op_finish(op, rc, "%s", cause);
		return;
	}
	if (r->status != 200) {
		char msg[256];
		int e = remote_status_error(r, msg, sizeof(msg));

		remote_op_finish(op, e == -ESTALE ? -EIO : e, "%s", msg);
		return;
	}
	l = calloc(1, sizeof(*l));
	if (!l || !(l->rel = strdup(op->rel))) {
		http_listing_free(l);
		remote_op_finish(op, -ENOMEM, "out of memory");
		return;
	}
	rc = parse_autoindex(r->body ? r->body : "", r->blen, l);
	if (rc < 0) {
		http_listing_free(l);
		if (rc == -ENOTDIR)
			remote_op_finish(op, -ENOTDIR,
					 "%s did not answer with a JSON directory listing "
					 "(nginx: autoindex on; autoindex_format json;)",
					 rm->host);
		else
			remote_op_finish(op, rc, "out of memory");
		return;
	}
	l->at_ns = clock_now_ns();
	http_listing_free(rm->lcache);
	rm->lcache = l;
	answer_page(op, l);
}

static void http_list_async(struct mount *m, const char *rel, const char *after,
			    struct backend_call *call)
{
	struct remote_mount *rm = m->priv;
	struct remote_op *op = remote_op_new(rm, call, rel);
	struct http_listing *l = rm->lcache;
	char *esc;
	int rc;

	call->n_ents = 0;
	call->more = false;
	if (!op) {
		remote_answer_enomem(rm, call);
		return;
	}
	op->after = strdup(after);
	if (!op->after) {
		remote_op_finish(op, -ENOMEM, "out of memory");
		return;
	}
	/* a walk's next page: the listing its first page read */
	if (after[0] && l && !strcmp(l->rel, rel) && clock_now_ns() - l->at_ns < LIST_KEEP_NS) {
		answer_page(op, l);
		return;
	}
	esc = remote_escape_path(rel);
	if (esc && asprintf(&op->url, "%s%s%s", rm->url, esc, rel[0] ? "/" : "") < 0)
		op->url = NULL;
	free(esc);
	if (!op->url || !(op->req = remote_req_new(op, op->url, list_done))) {
		remote_op_finish(op, -ENOMEM, "out of memory");
		return;
	}
	op->req->body_max = LIST_BODY_MAX;
	rc = remote_req_start(op->req);
	if (rc < 0)
		remote_op_finish(op, rc, "cannot start a request to %s", rm->host);
}

static const struct remote_kind http_kind = {
	.name = "http",
	.slash_dirs = true,
};

static int http_init(struct mount *m, char *err, size_t errsz)
{
	return remote_init(m, &http_kind, err, errsz);
}

const struct backend_ops backend_http = {
	.name = "http",
	.init = http_init,
	.fini = remote_fini,
	.head_async = remote_head_async,
	.get_async = remote_get_async,
	.list_async = http_list_async,
};
