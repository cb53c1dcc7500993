/*
 * test_backend_remote.c - the object-store backends' pure parts: escaping
 * object keys into URLs, and reading S3 credentials (both file forms, the
 * profile, a file readable by others refused, the secret never in a message).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "backend_remote.h"

static void test_escape(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{"", ""},
		{"a/b/c.jpg", "a/b/c.jpg"},
		{"train/n01440764/x y.JPEG", "train/n01440764/x%20y.JPEG"},
		{"a+b=c&d?e#f%g", "a%2Bb%3Dc%26d%3Fe%23f%25g"},
		{"caf\xc3\xa9/~-._", "caf%C3%A9/~-._"},
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *e = remote_escape_path(cases[i].in);

		assert_non_null(e);
		assert_string_equal(e, cases[i].out);
		free(e);
	}
}

static void test_creds_ini(void **state)
{
	static const char ini[] =
		"# written by hand\n"
		"[other]\n"
		"aws_access_key_id = OTHERKEY\n"
		"aws_secret_access_key = OTHERSECRET\n"
		"\n"
		"[default]\r\n"
		"aws_access_key_id=AKIDEXAMPLE\r\n"
		"  aws_secret_access_key =  wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY \n"
		"region = us-east-1\n"
		"[profile third]\n"
		"aws_access_key_id = THIRD\n"
		"aws_secret_access_key = THIRDSECRET\n"
		"aws_session_token = TOKEN3\n";
	struct remote_creds c = {0};
	char err[256] = "";

	(void)state;
	assert_int_equal(s3_creds_parse(ini, NULL, &c, err, sizeof(err)), 0);
	assert_string_equal(c.key, "AKIDEXAMPLE");
	assert_string_equal(c.secret, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
	assert_null(c.token);
	s3_creds_free(&c);
	assert_null(c.key);

	assert_int_equal(s3_creds_parse(ini, "other", &c, err, sizeof(err)), 0);
	assert_string_equal(c.key, "OTHERKEY");
	s3_creds_free(&c);

	assert_int_equal(s3_creds_parse(ini, "third", &c, err, sizeof(err)), 0);
	assert_string_equal(c.key, "THIRD");
	assert_string_equal(c.token, "TOKEN3");
	s3_creds_free(&c);

	assert_int_equal(s3_creds_parse(ini, "absent", &c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "[absent]"));
	assert_null(c.key);
}

static void test_creds_two_lines(void **state)
{
	struct remote_creds c = {0};
	char err[256] = "";

	(void)state;
	assert_int_equal(s3_creds_parse("S3RVER\nS3RVER-SECRET\n", NULL, &c, err, sizeof(err)), 0);
	assert_string_equal(c.key, "S3RVER");
	assert_string_equal(c.secret, "S3RVER-SECRET");
	s3_creds_free(&c);

	/* one line only, or three: neither form */
	assert_int_equal(s3_creds_parse("ONLYKEY\n", NULL, &c, err, sizeof(err)), -EINVAL);
	assert_int_equal(s3_creds_parse("A\nB\nC\n", NULL, &c, err, sizeof(err)), -EINVAL);
	/* an ini without the secret names what is missing, and holds no half */
	assert_int_equal(
		s3_creds_parse("[default]\naws_access_key_id=K\n", NULL, &c, err, sizeof(err)),
		-EINVAL);
	assert_non_null(strstr(err, "aws_secret_access_key"));
	assert_null(c.key);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static void test_creds_file_mode(void **state)
{
	char dir[] = "/tmp/granary-creds-XXXXXX", path[256], err[512];
	struct config_mount cm = {0};
	struct remote_creds c = {0};

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/s3.credentials", dir);
	cm.credentials_file = path;

	write_file(path, "[default]\naws_access_key_id=AK\naws_secret_access_key=TOPSECRET\n",
		   0644);
	err[0] = '\0';
	assert_int_equal(s3_creds_load(&cm, &c, err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "0644"));
	assert_null(strstr(err, "TOPSECRET"));
	assert_null(c.key);

	assert_int_equal(chmod(path, 0640), 0);
	assert_int_equal(s3_creds_load(&cm, &c, err, sizeof(err)), -EPERM);

	assert_int_equal(chmod(path, 0400), 0);
	assert_int_equal(s3_creds_load(&cm, &c, err, sizeof(err)), 0);
	assert_string_equal(c.key, "AK");
	assert_string_equal(c.secret, "TOPSECRET");
	s3_creds_free(&c);

	/* a malformed file is named in the message, its content is not quoted */
	write_file(path, "TOPSECRET-ONLY\n", 0600);
	assert_int_equal(s3_creds_load(&cm, &c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, path));
	assert_null(strstr(err, "TOPSECRET"));

	unlink(path);
	assert_true(s3_creds_load(&cm, &c, err, sizeof(err)) == -ENOENT);
	rmdir(dir);
}

static void test_creds_environment(void **state)
{
	struct config_mount cm = {0};
	struct remote_creds c = {0};
	char err[256];

	(void)state;
	unsetenv("AWS_SESSION_TOKEN");
	setenv("AWS_ACCESS_KEY_ID", "ENVKEY", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "ENVSECRET", 1);
	assert_int_equal(s3_creds_load(&cm, &c, err, sizeof(err)), 0);
	assert_string_equal(c.key, "ENVKEY");
	assert_string_equal(c.secret, "ENVSECRET");
	s3_creds_free(&c);

	/* none at all: unsigned requests, for a public bucket */
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	assert_int_equal(s3_creds_load(&cm, &c, err, sizeof(err)), 0);
	assert_null(c.key);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_creds_ini),
		cmocka_unit_test(test_creds_two_lines),
		cmocka_unit_test(test_creds_file_mode),
		cmocka_unit_test(test_creds_environment),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
