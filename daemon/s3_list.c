/*
 * s3_list.c - ListObjectsV2 and error bodies parsed with expat (see s3_list.h).
 */
#include "s3_list.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <expat.h>

#define MAX_DEPTH 8

/* Where the parser is: the element names from the root down. */
struct xml_state {
	XML_Parser p;
	const char *path[MAX_DEPTH];
	int depth;
	char *text; /* character data of the current leaf */
	size_t tlen, tcap;
	int err;	  /* first error: -ENOMEM or -EPROTO */
	const char *root; /* expected root element */
	bool root_ok;
	/* listing */
	struct s3_listing *l;
	struct s3_entry cur; /* the Contents or CommonPrefixes being read */
	/* error */
	char *code, *msg;
	size_t codesz, msgsz;
};

static const char *const names[] = {
	"ListBucketResult", "Contents",	   "CommonPrefixes",	    "Key",   "Size",
	"Prefix",	    "IsTruncated", "NextContinuationToken", "Error", "Code",
	"Message",
};

/* Element names we care about are interned so that the path holds constants. */
static const char *intern(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(name, names[i]))
			return names[i];
	return "";
}

static bool at(const struct xml_state *s, int depth, const char *a, const char *b, const char *c)
{
	if (s->depth != depth)
		return false;
	return !strcmp(s->path[0], a) && (depth < 2 || !strcmp(s->path[1], b)) &&
	       (depth < 3 || !strcmp(s->path[2], c));
}

static void fail(struct xml_state *s, int err)
{
	if (!s->err)
		s->err = err;
	XML_StopParser(s->p, XML_FALSE);
}

static void XMLCALL on_start(void *arg, const XML_Char *name, const XML_Char **attrs)
{
	struct xml_state *s = arg;

	(void)attrs;
	if (s->depth == 0) {
		if (strcmp(name, s->root)) {
			fail(s, -EPROTO);
			return;
		}
		s->root_ok = true;
	}
	if (s->depth < MAX_DEPTH)
		s->path[s->depth] = intern(name);
	s->depth++;
	s->tlen = 0;
	if (s->l && (at(s, 2, "ListBucketResult", "Contents", NULL) ||
		     at(s, 2, "ListBucketResult", "CommonPrefixes", NULL))) {
		free(s->cur.key);
		memset(&s->cur, 0, sizeof(s->cur));
		s->cur.is_prefix = s->path[1] == names[2];
	}
}

static void XMLCALL on_text(void *arg, const XML_Char *t, int len)
{
	struct xml_state *s = arg;

	if (s->tlen + (size_t)len + 1 > s->tcap) {
		size_t ncap = (s->tlen + (size_t)len + 1) * 2;
		char *nt = realloc(s->text, ncap);

		if (!nt) {
			fail(s, -ENOMEM);
			return;
		}
		s->text = nt;
		s->tcap = ncap;
	}
	memcpy(s->text + s->tlen, t, (size_t)len);
	s->tlen += (size_t)len;
}

static char *text_dup(struct xml_state *s)
{
	char *r = malloc(s->tlen + 1);

	if (!r) {
		fail(s, -ENOMEM);
		return NULL;
	}
	memcpy(r, s->text ? s->text : "", s->tlen);
	r[s->tlen] = '\0';
	return r;
}

static void copy_text(struct xml_state *s, char *dst, size_t dstsz)
{
	size_t n = s->tlen < dstsz - 1 ? s->tlen : dstsz - 1;

	memcpy(dst, s->text ? s->text : "", n);
	dst[n] = '\0';
}

static int push_entry(struct s3_listing *l, struct s3_entry *e)
{
	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 64;
		struct s3_entry *ne = realloc(l->ents, ncap * sizeof(*ne));

		if (!ne)
			return -ENOMEM;
		l->ents = ne;
		l->cap = ncap;
	}
	l->ents[l->n++] = *e;
	memset(e, 0, sizeof(*e));
	return 0;
}

static void list_end(struct xml_state *s)
{
	struct s3_listing *l = s->l;

	if (at(s, 3, "ListBucketResult", "Contents", "Key") ||
	    at(s, 3, "ListBucketResult", "CommonPrefixes", "Prefix")) {
		free(s->cur.key);
		s->cur.key = text_dup(s);
	} else if (at(s, 3, "ListBucketResult", "Contents", "Size")) {
		char num[24], *end;

		if (s->tlen == 0 || s->tlen >= sizeof(num)) {
			fail(s, -EPROTO);
			return;
		}
		copy_text(s, num, sizeof(num));
		s->cur.size = strtoull(num, &end, 10);
		if (*end || num[0] == '-')
			fail(s, -EPROTO);
	} else if (at(s, 2, "ListBucketResult", "Contents", NULL) ||
		   at(s, 2, "ListBucketResult", "CommonPrefixes", NULL)) {
		if (!s->cur.key) {
			fail(s, -EPROTO);
			return;
		}
		if (push_entry(l, &s->cur) < 0)
			fail(s, -ENOMEM);
	} else if (at(s, 2, "ListBucketResult", "IsTruncated", NULL)) {
		l->truncated = s->tlen == 4 && !memcmp(s->text, "true", 4);
	} else if (at(s, 2, "ListBucketResult", "NextContinuationToken", NULL)) {
		free(l->next_token);
		l->next_token = text_dup(s);
	}
}

static void XMLCALL on_end(void *arg, const XML_Char *name)
{
	struct xml_state *s = arg;

	(void)name;
	if (s->l)
		list_end(s);
	else if (at(s, 2, "Error", "Code", NULL))
		copy_text(s, s->code, s->codesz);
	else if (at(s, 2, "Error", "Message", NULL))
		copy_text(s, s->msg, s->msgsz);
	s->depth--;
	s->tlen = 0;
}

static int run(struct xml_state *s, const char *body, size_t len, char *err, size_t errsz)
{
	enum XML_Status st;
	int rc;

	s->p = XML_ParserCreate("UTF-8");
	if (!s->p)
		return -ENOMEM;
	XML_SetUserData(s->p, s);
	XML_SetElementHandler(s->p, on_start, on_end);
	XML_SetCharacterDataHandler(s->p, on_text);
	st = XML_Parse(s->p, body, (int)len, XML_TRUE);
	rc = s->err;
	if (!rc && st != XML_STATUS_OK)
		rc = -EPROTO;
	if (!rc && !s->root_ok)
		rc = -EPROTO;
	if (rc == -EPROTO && err) {
		if (st != XML_STATUS_OK && !s->err)
			snprintf(err, errsz, "malformed XML at line %lu: %s",
				 (unsigned long)XML_GetCurrentLineNumber(s->p),
				 XML_ErrorString(XML_GetErrorCode(s->p)));
		else
			snprintf(err, errsz, "not a %s document", s->root);
	}
	XML_ParserFree(s->p);
	free(s->text);
	free(s->cur.key);
	return rc;
}

int s3_list_parse(const char *body, size_t len, struct s3_listing *out, char *err, size_t errsz)
{
	struct xml_state s = {.root = "ListBucketResult", .l = out};

	if (err && errsz)
		err[0] = '\0';
	return run(&s, body, len, err, errsz);
}

void s3_listing_free(struct s3_listing *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		free(l->ents[i].key);
	free(l->ents);
	free(l->next_token);
	memset(l, 0, sizeof(*l));
}

int s3_error_parse(const char *body, size_t len, char *code, size_t codesz, char *msg, size_t msgsz)
{
	struct xml_state s = {
		.root = "Error", .code = code, .codesz = codesz, .msg = msg, .msgsz = msgsz};

	code[0] = msg[0] = '\0';
	return run(&s, body, len, NULL, 0);
}
