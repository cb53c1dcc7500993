/*
 * fuzz_s3_list.c - libFuzzer target for the S3 XML parsers (daemon/s3_list.h).
 *
 * The input is a response body. s3_list_parse answers 0, -EPROTO with a
 * sentence, or -ENOMEM, and what it returns is well formed: every entry has a
 * key, a prefix entry has no size, the listing frees to zero. s3_error_parse
 * keeps its strings terminated inside the buffers it is given, however small.
 * Parsing is a function of the body: a second parse gives the same listing.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3_list.h"

static void fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_s3_list: invariant broken: %s: %s\n", what, detail ? detail : "");
	abort();
}

static void check_listing(const struct s3_listing *l)
{
	size_t i;

	if (l->n > l->cap || (l->n && !l->ents))
		fail("listing counts", NULL);
	for (i = 0; i < l->n; i++) {
		const struct s3_entry *e = &l->ents[i];

		if (!e->key)
			fail("entry without a key", NULL);
		(void)strlen(e->key);
		if (e->is_prefix && e->size)
			fail("a common prefix with a size", e->key);
	}
	if (l->next_token)
		(void)strlen(l->next_token);
}

static int same_listing(const struct s3_listing *a, const struct s3_listing *b)
{
	size_t i;

	if (a->n != b->n || a->truncated != b->truncated || !a->next_token != !b->next_token)
		return 0;
	if (a->next_token && strcmp(a->next_token, b->next_token))
		return 0;
	for (i = 0; i < a->n; i++)
		if (strcmp(a->ents[i].key, b->ents[i].key) ||
		    a->ents[i].is_prefix != b->ents[i].is_prefix ||
		    a->ents[i].size != b->ents[i].size)
			return 0;
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body = (const char *)data;
	struct s3_listing l = {0}, l2 = {0};
	char err[128], code[16], msg[32];
	int rc, rc2;

	memset(err, 0x55, sizeof(err));
	rc = s3_list_parse(body, size, &l, err, sizeof(err));
	if (rc == 0) {
		check_listing(&l);
	} else if (rc == -EPROTO) {
		if (!memchr(err, '\0', sizeof(err)) || !err[0])
			fail("-EPROTO without a terminated sentence", NULL);
	} else if (rc != -ENOMEM) {
		fail("unexpected error code", NULL);
	}
	rc2 = s3_list_parse(body, size, &l2, err, sizeof(err));
	if (rc != rc2 || (rc == 0 && !same_listing(&l, &l2)))
		fail("a second parse of the same body differs", NULL);
	s3_listing_free(&l);
	s3_listing_free(&l2);
	if (l.ents || l.n || l.next_token)
		fail("s3_listing_free left something behind", NULL);
	s3_listing_free(&l);

	/* error documents, into deliberately small buffers */
	memset(code, 0x55, sizeof(code));
	memset(msg, 0x55, sizeof(msg));
	rc = s3_error_parse(body, size, code, sizeof(code), msg, sizeof(msg));
	if (rc != 0 && rc != -EPROTO && rc != -ENOMEM)
		fail("s3_error_parse: unexpected error code", NULL);
	if (rc == 0 && (!memchr(code, '\0', sizeof(code)) || !memchr(msg, '\0', sizeof(msg))))
		fail("s3_error_parse left a string unterminated", NULL);
	return 0;
}
