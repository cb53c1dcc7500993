/*
 * fuzz_path.c - libFuzzer target for path normalisation and prefix matching
 * (proto_path_normalize, proto_path_under in client/proto.h).
 *
 * The input is "PATH\nPREFIX" (no newline: the prefix is "/"). Invariants:
 * a normalised path is absolute, has no empty, "." or ".." component, no
 * trailing slash but for "/", and normalising it again changes nothing; the
 * result equals a plain component-by-component model of the rules in
 * proto.h; a buffer one byte short is refused, never overrun; and
 * proto_path_under agrees with its definition on component boundaries.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

static char out[PROTO_PATH_MAX + 2], again[PROTO_PATH_MAX + 2], model[PROTO_PATH_MAX + 2];
static char prefix[PROTO_PATH_MAX + 2], joined[2 * PROTO_PATH_MAX + 8];

static void fail(const char *what, const char *a, const char *b)
{
	fprintf(stderr, "fuzz_path: invariant broken: %s\n  [%s]\n  [%s]\n", what, a ? a : "",
		b ? b : "");
	abort();
}

/* Absolute; no empty, "." or ".." component; no trailing slash but for "/". */
static bool is_normal(const char *p)
{
	const char *c = p;

	if (p[0] != '/')
		return false;
	if (p[1] == '\0')
		return true;
	while (*c == '/') {
		const char *e = strchr(c + 1, '/');
		size_t clen = e ? (size_t)(e - c - 1) : strlen(c + 1);

		if (clen == 0 || clen > PROTO_NAME_MAX || (clen == 1 && c[1] == '.') ||
		    (clen == 2 && c[1] == '.' && c[2] == '.'))
			return false;
		if (!e)
			return true;
		c = e;
	}
	return false;
}

/*
 * The rules of proto.h written out plainly: 0 with the result in @m, or the
 * error proto_path_normalize must give for an output buffer of PROTO_PATH_MAX+1.
 */
static int model_normalize(const char *in, size_t len, char *m)
{
	size_t i = 0, o = 0;

	if (len == 0 || in[0] != '/' || memchr(in, '\0', len))
		return -EINVAL;
	if (len > PROTO_PATH_MAX)
		return -ENAMETOOLONG;
	while (i < len) {
		size_t start;

		for (; i < len && in[i] == '/'; i++)
			;
		for (start = i; i < len && in[i] != '/'; i++)
			;
		if (i == start || (i - start == 1 && in[start] == '.'))
			continue;
		if (i - start == 2 && in[start] == '.' && in[start + 1] == '.')
			return -EINVAL;
		if (i - start > PROTO_NAME_MAX)
			return -ENAMETOOLONG;
		m[o++] = '/';
		memcpy(m + o, in + start, i - start);
		o += i - start;
	}
	if (o == 0)
		m[o++] = '/';
	m[o] = '\0';
	return 0;
}

static bool model_under(const char *path, const char *pre)
{
	size_t n = strlen(pre);

	if (!strcmp(pre, "/"))
		return true;
	return !strncmp(path, pre, n) && (path[n] == '\0' || path[n] == '/');
}

/* Normalise @in; check the invariants; return 0 with the result in @res. */
static int normalise_checked(const char *in, size_t len, char *res)
{
	size_t n;
	int rc, mrc;

	mrc = model_normalize(in, len, model);
	rc = proto_path_normalize(in, len, res, PROTO_PATH_MAX + 1);
	if (rc != mrc)
		fail("result differs from the model", in, mrc ? "model refuses" : model);
	if (rc)
		return rc;
	if (strcmp(res, model))
		fail("normalised path differs from the model", res, model);
	n = strlen(res);
	if (!is_normal(res) || n > PROTO_PATH_MAX)
		fail("normalised path is not normal", res, NULL);
	if (strstr(res, "//") || strstr(res, "/./"))
		fail("normalised path holds // or /./", res, NULL);
	if (proto_path_normalize(res, n, again, sizeof(again)) || strcmp(res, again))
		fail("normalising twice is not idempotent", res, again);
	/* exactly big enough works; one byte short is refused without overrun */
	if (proto_path_normalize(in, len, again, n + 1) || strcmp(res, again))
		fail("an exact-size buffer was refused", res, NULL);
	if (proto_path_normalize(in, len, again, n) != -ENAMETOOLONG)
		fail("a buffer one byte short was accepted", res, NULL);
	return 0;
}

static int check_input(const char *in, size_t size)
{
	const char *nl = memchr(in, '\n', size);
	size_t plen = nl ? (size_t)(nl - in) : size;
	size_t n;

	if (normalise_checked(in, plen, out))
		return 0;
	if (!nl)
		strcpy(prefix, "/");
	else if (normalise_checked(nl + 1, size - plen - 1, prefix))
		return 0;

	if (!proto_path_under(out, out) || !proto_path_under(out, "/"))
		fail("a path is not under itself or under /", out, NULL);
	if (proto_path_under(out, prefix) != model_under(out, prefix))
		fail("proto_path_under disagrees with its definition", out, prefix);
	if (proto_path_under(out, prefix) && proto_path_under(prefix, out) && strcmp(out, prefix))
		fail("two different paths are under each other", out, prefix);

	/* a child of the prefix is under it; a sibling sharing its text is not */
	n = strlen(prefix);
	snprintf(joined, sizeof(joined), "%s%s", n > 1 ? prefix : "", out);
	if (strlen(joined) <= PROTO_PATH_MAX && !proto_path_under(joined, prefix))
		fail("prefix + path is not under the prefix", joined, prefix);
	if (n > 1) {
		snprintf(joined, sizeof(joined), "%sx%s", prefix, out);
		if (proto_path_under(joined, prefix))
			fail("a sibling sharing the prefix's text is under it", joined, prefix);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* a terminated copy, so that a failure can print the input */
	char *in = malloc(size + 1);

	if (!in)
		return 0;
	memcpy(in, data, size);
	in[size] = '\0';
	check_input(in, size);
	free(in);
	return 0;
}
