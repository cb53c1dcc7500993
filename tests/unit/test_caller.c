/*
 * test_caller.c - acting as a caller on one thread: the kernel refuses what the
 * caller may not read (mode bits, groups, ACL-free 0604 group exclusion), the
 * other threads keep the daemon's rights meanwhile, and the daemon's rights
 * come back after caller_leave(). An unknown group list refuses. Needs root
 * (or CAP_SETUID and CAP_SETGID): exits 77 without, saying so.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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

#include "caller.h"

#define NOBODY	65534
#define NOGROUP 65534

static char dir[64];

static void make_file(const char *name, mode_t mode, gid_t gid)
{
	char p[128];
	int fd;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "x", 1), 1);
	assert_int_equal(fchown(fd, 0, gid), 0);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

/* open @name for reading as @who: 0 or -errno */
static int open_as(const struct caller *who, const char *name)
{
	struct caller_saved sv;
	char p[128];
	int fd, rc;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	rc = caller_enter(who, &sv);
	if (rc < 0)
		return rc;
	fd = open(p, O_RDONLY);
	rc = fd < 0 ? -errno : 0;
	if (fd >= 0)
		close(fd);
	caller_leave(&sv);
	return rc;
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/granary-test-caller-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	chmod(dir, 0755);
	make_file("secret", 0600, 0);
	make_file("public", 0644, 0);
	make_file("group_excluded", 0604, NOGROUP);
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_kernel_decides_as_caller(void **state)
{
	struct caller nobody = {.uid = NOBODY, .gid = NOGROUP, .ngroups = 0};
	struct caller member = {.uid = NOBODY, .gid = 1, .ngroups = 1, .groups = {NOGROUP}};

	(void)state;
	assert_int_equal(open_as(&nobody, "secret"), -EACCES);
	assert_int_equal(open_as(&nobody, "public"), 0);
	/* 0604 with group nogroup: "other" may read, the group may not */
	assert_int_equal(open_as(&nobody, "group_excluded"), -EACCES);
	member.gid = 1;
	assert_int_equal(open_as(&member, "group_excluded"), -EACCES);
	{
		struct caller other = {.uid = NOBODY, .gid = 1, .ngroups = 0};

		assert_int_equal(open_as(&other, "group_excluded"), 0);
	}
}

static void test_daemon_rights_come_back(void **state)
{
	struct caller nobody = {.uid = NOBODY, .gid = NOGROUP, .ngroups = 0};
	char p[128];
	int fd;

	(void)state;
	assert_int_equal(open_as(&nobody, "secret"), -EACCES);
	snprintf(p, sizeof(p), "%s/secret", dir);
	fd = open(p, O_RDONLY);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal((int)getgroups(0, NULL) >= 0, 1);
}

static void test_unknown_groups_refuse(void **state)
{
	struct caller who = {.uid = NOBODY, .gid = NOGROUP, .ngroups = -1};
	struct caller_saved sv;

	(void)state;
	assert_int_equal(caller_enter(&who, &sv), -EACCES);
	assert_false(sv.entered);
	assert_int_equal(open_as(&who, "public"), -EACCES);
}

static pthread_barrier_t entered, opened;

static void *open_secret(void *arg)
{
	char p[128];
	int fd;

	(void)arg;
	pthread_barrier_wait(&entered);
	snprintf(p, sizeof(p), "%s/secret", dir);
	fd = open(p, O_RDONLY);
	if (fd >= 0)
		close(fd);
	pthread_barrier_wait(&opened);
	return (void *)(intptr_t)(fd >= 0);
}

/*
 * Only the calling thread changes: a thread started before (as the daemon's
 * workers are) still reads as the daemon while this one acts as nobody.
 */
static void test_other_threads_unchanged(void **state)
{
	struct caller nobody = {.uid = NOBODY, .gid = NOGROUP, .ngroups = 0};
	struct caller_saved sv;
	pthread_t t;
	void *ok;
	char p[128];

	(void)state;
	pthread_barrier_init(&entered, NULL, 2);
	pthread_barrier_init(&opened, NULL, 2);
	assert_int_equal(pthread_create(&t, NULL, open_secret, NULL), 0);
	assert_int_equal(caller_enter(&nobody, &sv), 0);
	pthread_barrier_wait(&entered);
	snprintf(p, sizeof(p), "%s/secret", dir);
	assert_int_equal(open(p, O_RDONLY), -1);
	assert_int_equal(errno, EACCES);
	pthread_barrier_wait(&opened); /* the other thread opened while we were nobody */
	caller_leave(&sv);
	assert_int_equal(pthread_join(t, &ok), 0);
	assert_true((intptr_t)ok == 1);
	pthread_barrier_destroy(&entered);
	pthread_barrier_destroy(&opened);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kernel_decides_as_caller),
		cmocka_unit_test(test_daemon_rights_come_back),
		cmocka_unit_test(test_unknown_groups_refuse),
		cmocka_unit_test(test_other_threads_unchanged),
	};

	if (!caller_can_switch()) {
		fprintf(stderr,
			"skip: acting as a caller needs root or CAP_SETUID and CAP_SETGID\n");
		return 77;
	}
	return cmocka_run_group_tests(tests, setup, teardown);
}
