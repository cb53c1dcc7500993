/*
 * s3_list.h - the XML that S3 answers with: ListObjectsV2 pages and errors.
 *
 * Owns: parsing only (expat), no I/O, so that it can be tested on bodies
 * written by hand. Keys are returned as S3 sent them (full keys, not relative
 * to the prefix asked for).
 */
#ifndef GRANARY_S3_LIST_H
#define GRANARY_S3_LIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct s3_entry {
	char *key;	/* the object's key, or a common prefix ending in the delimiter */
	bool is_prefix; /* from CommonPrefixes */
	uint64_t size;	/* objects only */
};

struct s3_listing {
	struct s3_entry *ents; /* Contents then CommonPrefixes, in document order */
	size_t n, cap;
	bool truncated;	  /* IsTruncated */
	char *next_token; /* NextContinuationToken, or NULL */
};

/*
 * Parse one ListObjectsV2 response body into @out (zeroed by the caller or
 * freed before). Returns 0, -EPROTO for a body that is not a well-formed
 * ListBucketResult (with a sentence in @err), or -ENOMEM. @out is left to
 * s3_listing_free either way.
 */
int s3_list_parse(const char *body, size_t len, struct s3_listing *out, char *err, size_t errsz);

void s3_listing_free(struct s3_listing *l);

/*
 * The <Code> and <Message> of an S3 <Error> body, each "" when absent.
 * Returns 0, or -EPROTO when @body is not an S3 error document.
 */
int s3_error_parse(const char *body, size_t len, char *code, size_t codesz, char *msg,
		   size_t msgsz);

#endif
