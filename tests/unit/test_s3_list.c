/*
 * test_s3_list.c - S3's XML answers: ListObjectsV2 pages (contents, common
 * prefixes, continuation, escaped keys), error documents, and what is not
 * one of those.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "s3_list.h"

static const char page1[] =
	"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	"<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
	"<Name>bucket</Name><Prefix>train/</Prefix><KeyCount>4</KeyCount>"
	"<MaxKeys>4</MaxKeys><Delimiter>/</Delimiter><IsTruncated>true</IsTruncated>"
	"<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>"
	"<Contents><Key>train/a.jpg</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified>"
	"<ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag><Size>110592</Size>"
	"<StorageClass>STANDARD</StorageClass></Contents>"
	"<Contents><Key>train/b &amp; c.jpg</Key><Size>0</Size></Contents>"
	"<Contents><Key>train/caf\xc3\xa9.jpg</Key><Size>18446744073709551615</Size></Contents>"
	"<CommonPrefixes><Prefix>train/n01440764/</Prefix></CommonPrefixes>"
	"<CommonPrefixes><Prefix>train/n01443537/</Prefix></CommonPrefixes>"
	"</ListBucketResult>";

static void test_page(void **state)
{
	struct s3_listing l = {0};
	char err[128];

	(void)state;
	assert_int_equal(s3_list_parse(page1, sizeof(page1) - 1, &l, err, sizeof(err)), 0);
	assert_int_equal(l.n, 5);
	assert_true(l.truncated);
	assert_non_null(l.next_token);
	assert_string_equal(l.next_token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");

	assert_string_equal(l.ents[0].key, "train/a.jpg");
	assert_false(l.ents[0].is_prefix);
	assert_int_equal(l.ents[0].size, 110592);
	assert_string_equal(l.ents[1].key, "train/b & c.jpg"); /* entity decoded */
	assert_int_equal(l.ents[1].size, 0);
	assert_string_equal(l.ents[2].key, "train/caf\xc3\xa9.jpg");
	assert_true(l.ents[2].size == UINT64_MAX);
	assert_string_equal(l.ents[3].key, "train/n01440764/");
	assert_true(l.ents[3].is_prefix);
	assert_string_equal(l.ents[4].key, "train/n01443537/");
	assert_true(l.ents[4].is_prefix);
	s3_listing_free(&l);
	assert_null(l.ents);
	assert_int_equal(l.n, 0);
}

static void test_last_page_and_empty(void **state)
{
	static const char last[] = "<ListBucketResult><IsTruncated>false</IsTruncated>"
				   "<Contents><Key>k</Key><Size>7</Size></Contents>"
				   "</ListBucketResult>";
	static const char empty[] = "<?xml version=\"1.0\"?><ListBucketResult "
				    "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
				    "<Name>b</Name><KeyCount>0</KeyCount>"
				    "<IsTruncated>false</IsTruncated></ListBucketResult>";
	struct s3_listing l = {0};
	char err[128];

	(void)state;
	assert_int_equal(s3_list_parse(last, sizeof(last) - 1, &l, err, sizeof(err)), 0);
	assert_int_equal(l.n, 1);
	assert_false(l.truncated);
	assert_null(l.next_token);
	assert_int_equal(l.ents[0].size, 7);
	s3_listing_free(&l);

	assert_int_equal(s3_list_parse(empty, sizeof(empty) - 1, &l, err, sizeof(err)), 0);
	assert_int_equal(l.n, 0);
	assert_false(l.truncated);
	s3_listing_free(&l);
}

/* Keys are only read where S3 puts them: not from a nested element of another name. */
static void test_ignores_foreign_elements(void **state)
{
	static const char body[] = "<ListBucketResult><Owner><Key>nope</Key></Owner>"
				   "<Contents><Key>yes</Key><Size>1</Size>"
				   "<Owner><ID>x</ID></Owner></Contents>"
				   "<IsTruncated>true</IsTruncated></ListBucketResult>";
	struct s3_listing l = {0};

	(void)state;
	assert_int_equal(s3_list_parse(body, sizeof(body) - 1, &l, NULL, 0), 0);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.ents[0].key, "yes");
	assert_true(l.truncated);
	/* truncated without a token: the caller must notice, the parser reports it as is */
	assert_null(l.next_token);
	s3_listing_free(&l);
}

static void test_malformed(void **state)
{
	static const char *bad[] = {
		"<ListBucketResult><Contents><Key>a</Key>", /* cut short */
		"<Error><Code>AccessDenied</Code></Error>", /* not a listing */
		"<ListBucketResult><Contents><Size>3</Size></Contents></ListBucketResult>", /* no key */
		"<ListBucketResult><Contents><Key>a</Key><Size>-1</Size></Contents>"
		"</ListBucketResult>",
		"<ListBucketResult><Contents><Key>a</Key><Size>12x</Size></Contents>"
		"</ListBucketResult>",
		"",
		"not xml at all",
	};
	char err[128];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct s3_listing l = {0};

		err[0] = '\0';
		assert_int_equal(s3_list_parse(bad[i], strlen(bad[i]), &l, err, sizeof(err)),
				 -EPROTO);
		assert_true(err[0] != '\0');
		s3_listing_free(&l);
	}
}

static void test_error_document(void **state)
{
	static const char body[] =
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SignatureDoesNotMatch</Code>"
		"<Message>The request signature we calculated does not match the signature you "
		"provided.</Message><RequestId>4442587FB7D0A2F9</RequestId></Error>";
	char code[32], msg[256], small[8];

	(void)state;
	assert_int_equal(
		s3_error_parse(body, sizeof(body) - 1, code, sizeof(code), msg, sizeof(msg)), 0);
	assert_string_equal(code, "SignatureDoesNotMatch");
	assert_true(!strncmp(msg, "The request signature", 21));
	/* truncated to the room given, never past it */
	assert_int_equal(
		s3_error_parse(body, sizeof(body) - 1, small, sizeof(small), msg, sizeof(msg)), 0);
	assert_string_equal(small, "Signatu");
	/* an nginx error page is not an S3 error */
	assert_int_equal(s3_error_parse("<html><body>502</body></html>", 29, code, sizeof(code),
					msg, sizeof(msg)),
			 -EPROTO);
	assert_string_equal(code, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_page),
		cmocka_unit_test(test_last_page_and_empty),
		cmocka_unit_test(test_ignores_foreign_elements),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_error_document),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
