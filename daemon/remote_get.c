/*
 * remote_get.c - the GET of one object from http or s3 (see backend.h,
 * get_async): whole, or in ranges fetched in parallel and checked against the
 * first (If-Match, size), or blind: a first range that describes the object
 * before admission. Bytes land at their offset in the caller's descriptor;
 * the object is answered only when every range has arrived and the total
 * matches. The requests, retries and the mount are backend_remote.c's.
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
#include <xxhash.h>

#include "log.h"
#include "proto.h"

#define HASH_READ (1u << 20) /* what was written is read back in pieces this large */

/*
 * A validator that head_async did not fill (ino 0) asks for a blind GET: the
 * first range describes the object. It saves every cold miss the HEAD's
 * round trip.
 */
static bool blind(const struct remote_op *op)
{
	return op->want.ino == 0;
}

static void get_finish_ok(struct remote_op *op, uint64_t checksum)
{
	struct backend_call *call = op->call;

	call->bytes = op->want.size;
	call->checksum = checksum;
	remote_op_finish(op, 0, "%s", "");
}

/* What a blind GET learnt of the object: as head_async would say it. */
static void describe(struct remote_op *op, const struct remote_req *r, uint64_t size)
{
	struct validator *v = &op->call->v;

	memset(v, 0, sizeof(*v));
	v->size = size;
	snprintf(v->etag, sizeof(v->etag), "%s", r->etag);
	v->mtime_ns = r->lastmod >= 0 ? r->lastmod * NS_PER_S : 0;
	v->ino = remote_pseudo_ino(op->url);
	v->mode = S_IFREG | 0444;
	op->call->type = PROTO_FT_REG;
	op->want = *v;
}

/* Tell the caller what the object is (blind GET); false when it stopped the op. */
static bool tell_described(struct remote_op *op, uint64_t have)
{
	struct backend_call *call = op->call;
	char msg[sizeof(call->msg)];
	int fd = op->fd, rc;

	if (!call->described)
		return true;
	call->bytes = have;
	call->msg[0] = '\0';
	rc = call->described(call, &fd);
	call->bytes = 0;
	if (rc) {
		snprintf(msg, sizeof(msg), "%s", call->msg[0] ? call->msg : strerror(-rc));
		remote_op_finish(op, rc, "%s", msg);
		return false;
	}
	op->fd = fd;
	return true;
}

static void get_fail(struct remote_op *op, int rc, const char *cause)
{
	if (rc == -ESTALE)
		remote_op_finish(op, -ESTALE, "the object changed at %s while it was fetched",
				 op->rm->host);
	else if (rc == -EPROTO)
		remote_op_finish(op, -EIO, "unexpected answer from %s", op->rm->host);
	else
		remote_op_finish(op, rc, "%s", cause ? cause : strerror(-rc));
}

/* The final status of a GET that was not 2xx: the op's answer. */
static void get_status_fail(struct remote_op *op, struct remote_req *r)
{
	char msg[256];
	int e = remote_status_error(r, msg, sizeof(msg));

	if (e == -ENOENT)
		remote_op_finish(op, -ENOENT, "the object vanished from %s", op->rm->host);
	else
		get_fail(op, e, msg);
}

/*
 * A finished GET of @want_len bytes with status @want_status, checked as
 * the first response (an empty body never reached check_first). True when
 * it holds; otherwise the op has failed.
 */
static bool response_holds(struct remote_op *op, struct remote_req *r, int rc, const char *cause,
			   long want_status, uint64_t want_len)
{
	if (rc) {
		get_fail(op, rc, cause);
		return false;
	}
	if (r->status != want_status) {
		get_status_fail(op, r);
		return false;
	}
	if (!r->checked) {
		r->checked = true;
		rc = remote_check_first(r);
	}
	if (rc || r->got != want_len) {
		get_fail(op, rc ? rc : -ESTALE, NULL);
		return false;
	}
	return true;
}

static void single_done(struct remote_req *r, int rc, const char *cause)
{
	struct remote_op *op = r->op;

	if (response_holds(op, r, rc, cause, 200, op->want.size))
		get_finish_ok(op, XXH3_64bits_digest(op->xx));
}

/*
 * Start the op's one whole-object GET into its file, hashed as it comes:
 * @blind for the first range of an object not yet described.
 */
static void whole_start(struct remote_op *op, bool blind,
			void (*done)(struct remote_req *r, int rc, const char *cause))
{
	struct remote_req *r = remote_req_new(op, op->url, done);
	int rc;

	if (!r) {
		remote_op_finish(op, -ENOMEM, "out of memory");
		return;
	}
	op->req = r;
	r->sink = SINK_FD;
	r->off = 0;
	r->hash = true;
	if (blind) {
		r->ranged = true;
		r->blind = true;
		r->len = remote_cfg(op->rm)->fetch.chunk_size;
	} else {
		r->len = op->want.size;
		r->if_match = op->want.etag;
	}
	rc = remote_req_start(r);
	if (rc < 0)
		remote_op_finish(op, rc, "cannot start a request to %s", op->rm->host);
}

static void single_start(struct remote_op *op)
{
	whole_start(op, false, single_done);
}

/* Where chunk @c lies in the object (see struct remote_op). */
static void chunk_span(const struct remote_op *op, uint64_t c, uint64_t *off, uint64_t *len)
{
	uint64_t o, n;

	if (op->base && c == 0) {
		o = 0;
		n = op->base;
	} else {
		o = op->base ? op->base + (c - 1) * op->span : c * op->span;
		n = op->span;
	}
	if (o > op->want.size)
		o = op->want.size;
	if (n > op->want.size - o)
		n = op->want.size - o;
	*off = o;
	*len = n;
}

/* Hash the chunks that completed in order from the start, reading them back. */
static int hash_frontier(struct remote_op *op)
{
	uint8_t *buf = NULL;
	int rc = 0;

	while (op->hashed < op->nchunks && op->chunk_done[op->hashed]) {
		uint64_t off, len, end;

		chunk_span(op, op->hashed, &off, &len);
		end = off + len;
		if (!buf && !(buf = malloc(HASH_READ)))
			return -ENOMEM;
		while (off < end) {
			size_t want = end - off < HASH_READ ? (size_t)(end - off) : HASH_READ;
			ssize_t n = pread(op->fd, buf, want, (off_t)off);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				rc = n < 0 ? -errno : -EIO;
				goto out;
			}
			XXH3_64bits_update(op->xx, buf, (size_t)n);
			off += (uint64_t)n;
		}
		op->hashed++;
	}
out:
	free(buf);
	return rc;
}

static void chunk_launch(struct remote_op *op, unsigned slot);

static void chunk_done(struct remote_req *r, int rc, const char *cause)
{
	struct remote_op *op = r->op;
	unsigned slot;

	if (rc == -ENOTSUP) {
		unsigned i;

		log_info("server ignores Range requests, fetching whole objects mount=%s host=%s",
			 op->rm->m->cfg->path, op->rm->host);
		for (i = 0; i < op->nslots; i++) {
			remote_req_free(op->slots[i]);
			op->slots[i] = NULL;
		}
		op->nslots = 0;
		single_start(op);
		return;
	}
	if (!response_holds(op, r, rc, cause, 206, r->len))
		return;
	op->chunk_done[r->index] = 1;
	for (slot = 0; slot < op->nslots && op->slots[slot] != r; slot++)
		;
	remote_req_free(r);
	op->slots[slot] = NULL;
	rc = hash_frontier(op);
	if (rc < 0) {
		remote_op_finish(op, rc, "reading back the fetched object failed: %s",
				 strerror(-rc));
		return;
	}
	if (op->hashed == op->nchunks) {
		get_finish_ok(op, XXH3_64bits_digest(op->xx));
		return;
	}
	chunk_launch(op, slot);
}

static void chunk_launch(struct remote_op *op, unsigned slot)
{
	struct remote_req *r;
	uint64_t c;
	int rc;

	if (op->next_chunk >= op->nchunks)
		return;
	c = op->next_chunk++;
	r = remote_req_new(op, op->url, chunk_done);
	if (!r) {
		remote_op_finish(op, -ENOMEM, "out of memory");
		return;
	}
	op->slots[slot] = r;
	r->index = (int)c;
	r->sink = SINK_FD;
	r->ranged = true;
	chunk_span(op, c, &r->off, &r->len);
	r->if_match = op->want.etag;
	rc = remote_req_start(r);
	if (rc < 0)
		remote_op_finish(op, rc, "cannot start a request to %s", op->rm->host);
}

/*
 * Fetch the chunks from @first on, chunk_parallel at a time; the ones
 * before are in the fd and, in order, already hashed.
 */
static void chunks_start(struct remote_op *op, uint64_t first)
{
	const struct config *cfg = remote_cfg(op->rm);
	uint64_t rest = op->want.size - op->base;
	unsigned i;

	op->nchunks = first + (rest + op->span - 1) / op->span;
	op->nslots = cfg->fetch.chunk_parallel;
	if (op->nslots > op->nchunks - first)
		op->nslots = (unsigned)(op->nchunks - first);
	op->slots = calloc(op->nslots, sizeof(*op->slots));
	op->chunk_done = calloc(op->nchunks, 1);
	if (!op->slots || !op->chunk_done) {
		op->nslots = 0;
		remote_op_finish(op, -ENOMEM, "out of memory");
		return;
	}
	memset(op->chunk_done, 1, first);
	op->hashed = op->next_chunk = first;
	for (i = 0; i < op->nslots && !op->finished; i++)
		chunk_launch(op, i);
}

static void ranged_start(struct remote_op *op)
{
	op->base = 0;
	op->span = remote_cfg(op->rm)->fetch.chunk_size;
	XXH3_64bits_reset(op->xx);
	chunks_start(op, 0);
}

/* ---- blind get ---- */

static void finish_dir(struct remote_op *op)
{
	struct backend_call *call = op->call;

	call->type = PROTO_FT_DIR;
	memset(&call->v, 0, sizeof(call->v));
	call->v.mode = S_IFDIR | 0555;
	call->bytes = 0;
	remote_op_finish(op, 0, "%s", "");
}

/* An empty object answers a Range with 416: its HEAD describes it. */
static void empty_head_done(struct remote_req *r, int rc, const char *cause)
{
	struct remote_op *op = r->op;
	curl_off_t clen = -1;

	if (rc) {
		get_fail(op, rc, cause);
		return;
	}
	if (r->status / 100 != 2) {
		get_status_fail(op, r);
		return;
	}
	curl_easy_getinfo(r->x.easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &clen);
	if (clen != 0) {
		/* not empty after all: it was written between the two requests */
		get_fail(op, -ESTALE, NULL);
		return;
	}
	describe(op, r, 0);
	if (!tell_described(op, 0))
		return;
	XXH3_64bits_reset(op->xx);
	get_finish_ok(op, XXH3_64bits_digest(op->xx));
}

static void empty_head(struct remote_op *op)
{
	struct remote_req *r;
	int rc;

	remote_req_free(op->req);
	op->req = r = remote_req_new(op, op->url, empty_head_done);
	if (!r) {
		remote_op_finish(op, -ENOMEM, "out of memory");
		return;
	}
	r->head = true;
	rc = remote_req_start(r);
	if (rc < 0)
		remote_op_finish(op, rc, "cannot start a request to %s", op->rm->host);
}

/* The first range of a blind GET answered: describe, then fetch the rest. */
static void blind_done(struct remote_req *r, int rc, const char *cause)
{
	struct remote_op *op = r->op;
	const struct config *cfg = remote_cfg(op->rm);
	uint64_t size, have;

	if (rc == -ENODATA || (!rc && r->status == 416)) {
		empty_head(op);
		return;
	}
	if (rc) {
		get_fail(op, rc, cause);
		return;
	}
	if (r->status == 404 && op->rm->kind->not_found) {
		/* no such key: maybe a "directory" (keys under rel/) */
		remote_req_free(r);
		op->req = NULL;
		op->rm->kind->not_found(op);
		return;
	}
	if (r->status == 404) {
		remote_op_finish(op, -ENOENT, "not found at %s", op->rm->host);
		return;
	}
	if (r->status / 100 == 3 && op->rm->kind->slash_dirs) {
		size_t ll = strlen(r->location);

		if (ll && r->location[ll - 1] == '/') {
			finish_dir(op); /* nginx redirects a directory to its name with a slash */
			return;
		}
		remote_op_finish(op, -EIO, "HTTP %ld from %s (redirects are not followed)",
				 r->status, op->rm->host);
		return;
	}
	if (r->status != 200 && r->status != 206) {
		get_status_fail(op, r);
		return;
	}
	if (!r->checked) {
		/* an empty body never reached check_first */
		r->checked = true;
		rc = remote_check_first(r);
		if (rc) {
			get_fail(op, rc, NULL);
			return;
		}
	}
	have = r->got;
	size = r->status == 200 ? have : r->crange_total;
	if (have > size || (r->status == 206 && !have)) {
		get_fail(op, -EPROTO, NULL);
		return;
	}
	describe(op, r, size);
	if (!tell_described(op, have))
		return;
	if (have == size) {
		get_finish_ok(op, XXH3_64bits_digest(op->xx));
		return;
	}
	/* the first range is hashed; the rest must be the same version */
	op->base = have;
	if (size >= cfg->fetch.large_threshold)
		op->span = cfg->fetch.chunk_size;
	else
		op->span = size - have; /* one more request, as one GET would have been */
	remote_req_free(r);
	op->req = NULL;
	chunks_start(op, 1);
}

static void blind_start(struct remote_op *op)
{
	whole_start(op, true, blind_done);
}

void remote_get_async(struct mount *m, const char *rel, int fd, struct backend_call *call)
{
	struct remote_mount *rm = m->priv;
	const struct config *cfg = m->d->cfg;
	struct remote_op *op = remote_op_new(rm, call, rel);

	if (!op) {
		remote_answer_enomem(rm, call);
		return;
	}
	op->fd = fd;
	op->want = call->v;
	call->bytes = 0;
	call->checksum = 0;
	if (!rel[0]) {
		/* the mount's top is the bucket or the index page, never an object */
		remote_op_finish(op, -EISDIR, "%s", "the mount's top directory");
		return;
	}
	op->url = remote_object_url(rm, rel);
	op->xx = XXH3_createState();
	if (!op->url || !op->xx) {
		remote_op_finish(op, -ENOMEM, "out of memory");
		return;
	}
	if (blind(op))
		blind_start(op);
	else if (op->want.size >= cfg->fetch.large_threshold &&
		 op->want.size > cfg->fetch.chunk_size)
		ranged_start(op);
	else
		single_start(op);
}
