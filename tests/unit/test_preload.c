/*
 * test_preload.c - the shim's pure logic (client/preload_rules.c): path
 * resolution, fopen modes, open flags, the mount table, stat patching.
 *
 * The shim is a shared library with nothing but libc names exported, so the
 * rules are compiled into this program directly.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "../../client/preload_rules.c"

/* ---- path resolution ---- */

static void join_ok(const char *base, const char *path, const char *want, int want_rc)
{
	char out[PROTO_PATH_MAX + 1];
	int rc = preload_path_join(base, path, out, sizeof(out));

	assert_int_equal(rc, want_rc);
	assert_string_equal(out, want);
}

static void test_join_absolute(void **state)
{
	(void)state;
	join_ok(NULL, "/mnt/nas/a.jpg", "/mnt/nas/a.jpg", 0);
	join_ok(NULL, "//mnt///nas/./a.jpg", "/mnt/nas/a.jpg", 0);
	join_ok("/ignored", "/mnt/nas/a.jpg", "/mnt/nas/a.jpg", 0);
	join_ok(NULL, "/", "/", 0);
	/* "/.." is "/" for the kernel too */
	join_ok(NULL, "/../mnt/x", "/mnt/x", 0);
}

static void test_join_relative(void **state)
{
	(void)state;
	join_ok("/mnt/nas", "train/x.jpg", "/mnt/nas/train/x.jpg", 0);
	join_ok("/mnt/nas/", "./train//x.jpg", "/mnt/nas/train/x.jpg", 0);
	join_ok("/", "x", "/x", 0);
	/* ".." out of the cwd: the cwd is a real directory, its parent is exact */
	join_ok("/mnt/nas/train", "../val/y.jpg", "/mnt/nas/val/y.jpg", 0);
	join_ok("/mnt/nas/train", "../../other/z", "/mnt/other/z", 0);
	join_ok("/a", "../../../b", "/b", 0);
}

static void test_join_inexact(void **state)
{
	(void)state;
	/* ".." after a name of the caller's path: that name may be a symlink */
	join_ok(NULL, "/mnt/nas/link/../x", "/mnt/nas/x", 1);
	join_ok("/mnt/nas", "train/../x", "/mnt/nas/x", 1);
	/* one ".." out of the base and one out of the path */
	join_ok("/mnt/nas", "../nas/d/../x", "/mnt/nas/x", 1);
	/* a trailing slash or "." asks for a directory */
	join_ok(NULL, "/mnt/nas/file/", "/mnt/nas/file", 1);
	join_ok(NULL, "/mnt/nas/dir/.", "/mnt/nas/dir", 1);
	join_ok("/mnt/nas", ".", "/mnt/nas", 1);
	/* but a name that merely ends in a dot is an ordinary name */
	join_ok(NULL, "/mnt/nas/file.", "/mnt/nas/file.", 0);
	join_ok(NULL, "/mnt/nas/..x", "/mnt/nas/..x", 0);
}

static void test_join_errors(void **state)
{
	char out[PROTO_PATH_MAX + 1];
	char longname[PROTO_NAME_MAX + 2];
	static char longpath[PROTO_PATH_MAX + 10];
	size_t i;

	(void)state;
	assert_int_equal(preload_path_join(NULL, "", out, sizeof(out)), -ENOENT);
	assert_int_equal(preload_path_join(NULL, "rel", out, sizeof(out)), -EINVAL);
	assert_int_equal(preload_path_join("relbase", "rel", out, sizeof(out)), -EINVAL);

	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	longpath[0] = '/';
	memcpy(longpath + 1, longname, sizeof(longname));
	assert_int_equal(preload_path_join(NULL, longpath, out, sizeof(out)), -ENAMETOOLONG);

	for (i = 0; i < sizeof(longpath) - 1; i += 2) {
		longpath[i] = '/';
		longpath[i + 1] = 'a';
	}
	longpath[sizeof(longpath) - 1] = '\0';
	assert_int_equal(preload_path_join(NULL, longpath, out, sizeof(out)), -ENAMETOOLONG);
	/* a small output buffer is respected */
	assert_int_equal(preload_path_join(NULL, "/abcdef", out, 4), -ENAMETOOLONG);
	assert_int_equal(preload_path_join(NULL, "/abc", out, 5), 0);
	assert_string_equal(out, "/abc");
}

/* ---- fopen modes and open flags ---- */

static int mode(const char *m)
{
	int flags = -1;

	if (preload_mode_flags(m, &flags) < 0)
		return -1;
	return flags;
}

static void test_modes(void **state)
{
	(void)state;
	assert_int_equal(mode("r"), O_RDONLY);
	assert_int_equal(mode("rb"), O_RDONLY);
	assert_int_equal(mode("rbe"), O_RDONLY | O_CLOEXEC);
	assert_int_equal(mode("re"), O_RDONLY | O_CLOEXEC);
	assert_int_equal(mode("rm"), O_RDONLY);
	assert_int_equal(mode("r+"), O_RDWR);
	assert_int_equal(mode("rb+"), O_RDWR);
	assert_int_equal(mode("w"), O_WRONLY | O_CREAT | O_TRUNC);
	assert_int_equal(mode("wx"), O_WRONLY | O_CREAT | O_TRUNC | O_EXCL);
	assert_int_equal(mode("w+b"), O_RDWR | O_CREAT | O_TRUNC);
	assert_int_equal(mode("a"), O_WRONLY | O_CREAT | O_APPEND);
	assert_int_equal(mode("a+"), O_RDWR | O_CREAT | O_APPEND);
	/* glibc reads six characters after the first and ignores unknown ones */
	assert_int_equal(mode("rz"), O_RDONLY);
	assert_int_equal(mode("rbbbbbb+"), O_RDONLY);
	assert_int_equal(mode("rbbbbb+"), O_RDWR);
	assert_int_equal(mode("r,ccs=UTF-8"), O_RDONLY);
	assert_int_equal(mode(""), -1);
	assert_int_equal(mode("x"), -1);
	assert_int_equal(mode("+r"), -1);
}

static void test_flags(void **state)
{
	(void)state;
	assert_false(preload_flags_write(O_RDONLY));
	assert_false(preload_flags_write(O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
	assert_true(preload_flags_write(O_WRONLY));
	assert_true(preload_flags_write(O_RDWR));
	assert_true(preload_flags_write(O_RDONLY | O_CREAT));
	assert_true(preload_flags_write(O_RDONLY | O_TRUNC));
	assert_true(preload_flags_write(O_RDONLY | O_APPEND));
	assert_true(preload_flags_write(O_TMPFILE | O_RDWR));

	assert_false(preload_flags_passthrough(O_RDONLY, true));
	assert_false(preload_flags_passthrough(O_RDONLY | O_CLOEXEC, false));
	assert_true(preload_flags_passthrough(O_PATH, true));
	assert_true(preload_flags_passthrough(O_PATH, false));
	assert_true(preload_flags_passthrough(O_RDONLY | O_DIRECTORY, true));
	assert_true(preload_flags_passthrough(O_RDONLY | O_NOFOLLOW, true));
	/* object stores have no symbolic links to refuse */
	assert_false(preload_flags_passthrough(O_RDONLY | O_NOFOLLOW, false));
}

/* ---- the mount table ---- */

static struct proto_buf msg;

static void hello_begin(int32_t status)
{
	proto_begin(&msg, PROTO_REPLY | PROTO_HELLO, 7);
	assert_int_equal(proto_put_i32(&msg, PROTO_T_STATUS, status), 0);
}

static void hello_mount(const char *path, uint32_t backend, uint32_t flags)
{
	assert_int_equal(proto_put_str(&msg, PROTO_T_MOUNT, path), 0);
	assert_int_equal(proto_put_u32(&msg, PROTO_T_BACKEND, backend), 0);
	assert_int_equal(proto_put_u32(&msg, PROTO_T_FLAGS, flags), 0);
}

static struct preload_mounts table;

static void test_mounts_parse(void **state)
{
	(void)state;
	hello_begin(0);
	hello_mount("/mnt/nas/datasets", PROTO_BE_POSIX, PROTO_F_MOUNT_FAILOPEN);
	hello_mount("/granary//imagenet/", PROTO_BE_S3, 0);
	hello_mount("/granary/coco", PROTO_BE_HTTP, 0);
	assert_int_equal(preload_mounts_parse(&table, msg.data, msg.len), 0);
	assert_int_equal(table.n, 3);
	assert_string_equal(preload_mounts_path(&table, 0), "/mnt/nas/datasets");
	assert_int_equal(table.m[0].backend, PROTO_BE_POSIX);
	assert_int_equal(table.m[0].flags, PROTO_F_MOUNT_FAILOPEN);
	/* normalised, as the daemon compares them */
	assert_string_equal(preload_mounts_path(&table, 1), "/granary/imagenet");
	assert_int_equal(table.m[1].backend, PROTO_BE_S3);
	assert_int_equal(table.m[1].flags, 0);
	assert_string_equal(preload_mounts_path(&table, 2), "/granary/coco");
	assert_string_equal(preload_mounts_path(&table, 3), "");
	assert_string_equal(preload_mounts_path(&table, -1), "");

	/* no mounts at all */
	hello_begin(0);
	assert_int_equal(preload_mounts_parse(&table, msg.data, msg.len), 0);
	assert_int_equal(table.n, 0);
}

static void test_mounts_parse_errors(void **state)
{
	int i;

	(void)state;
	hello_begin(-EACCES);
	assert_int_equal(preload_mounts_parse(&table, msg.data, msg.len), -EACCES);

	/* STATUS must come first */
	proto_begin(&msg, PROTO_REPLY | PROTO_HELLO, 7);
	hello_mount("/a", PROTO_BE_POSIX, 0);
	assert_int_equal(preload_mounts_parse(&table, msg.data, msg.len), -EBADMSG);

	/* a BACKEND of the wrong size */
	hello_begin(0);
	proto_put_str(&msg, PROTO_T_MOUNT, "/a");
	proto_put_u64(&msg, PROTO_T_BACKEND, 1);
	assert_int_equal(preload_mounts_parse(&table, msg.data, msg.len), -EBADMSG);

	/* a truncated body */
	hello_begin(0);
	hello_mount("/a", PROTO_BE_POSIX, 0);
	assert_int_equal(preload_mounts_parse(&table, msg.data, msg.len - 2), -EBADMSG);

	/* relative and ".." mount paths are skipped, the others kept */
	hello_begin(0);
	hello_mount("relative", PROTO_BE_POSIX, 0);
	hello_mount("/a/../b", PROTO_BE_POSIX, 0);
	hello_mount("/ok", PROTO_BE_S3, 0);
	assert_int_equal(preload_mounts_parse(&table, msg.data, msg.len), 2);
	assert_int_equal(table.n, 1);
	assert_string_equal(preload_mounts_path(&table, 0), "/ok");
	assert_int_equal(table.m[0].backend, PROTO_BE_S3);

	/* more mounts than the table holds */
	hello_begin(0);
	for (i = 0; i < PRELOAD_MOUNTS_MAX + 3; i++) {
		char p[32];
		int n = 0, v = i;

		memcpy(p, "/m", 2);
		n = 2;
		do {
			p[n++] = (char)('0' + v % 10);
			v /= 10;
		} while (v);
		p[n] = '\0';
		hello_mount(p, PROTO_BE_POSIX, PROTO_F_MOUNT_FAILOPEN);
	}
	assert_int_equal(preload_mounts_parse(&table, msg.data, msg.len), 3);
	assert_int_equal(table.n, PRELOAD_MOUNTS_MAX);
}

static int match(const char *path)
{
	struct preload_hit hit;

	if (!preload_mounts_match(&table, path, &hit)) {
		assert_int_equal(hit.index, -1);
		return -1;
	}
	assert_int_equal(hit.backend, table.m[hit.index].backend);
	assert_int_equal(hit.flags, table.m[hit.index].flags);
	return hit.index;
}

static void test_mounts_match(void **state)
{
	(void)state;
	hello_begin(0);
	hello_mount("/mnt/nas", PROTO_BE_POSIX, PROTO_F_MOUNT_FAILOPEN);
	hello_mount("/mnt/nas/imagenet", PROTO_BE_S3, 0);
	hello_mount("/data", PROTO_BE_HTTP, 0);
	assert_int_equal(preload_mounts_parse(&table, msg.data, msg.len), 0);

	assert_int_equal(match("/mnt/nas"), 0);
	assert_int_equal(match("/mnt/nas/x.jpg"), 0);
	assert_int_equal(match("/mnt/nas/imagenetx/a"), 0);
	/* the longest mount wins, in any order */
	assert_int_equal(match("/mnt/nas/imagenet"), 1);
	assert_int_equal(match("/mnt/nas/imagenet/train/a.jpg"), 1);
	assert_int_equal(match("/data/a"), 2);
	/* a prefix of a name is not a parent directory */
	assert_int_equal(match("/mnt/nasty/a"), -1);
	assert_int_equal(match("/mnt"), -1);
	assert_int_equal(match("/dat"), -1);
	assert_int_equal(match("/etc/passwd"), -1);
	assert_int_equal(match("/"), -1);

	/* a mount of "/" takes everything */
	hello_begin(0);
	hello_mount("/", PROTO_BE_POSIX, PROTO_F_MOUNT_FAILOPEN);
	hello_mount("/data", PROTO_BE_S3, 0);
	assert_int_equal(preload_mounts_parse(&table, msg.data, msg.len), 0);
	assert_int_equal(match("/etc/passwd"), 0);
	assert_int_equal(match("/"), 0);
	assert_int_equal(match("/data/x"), 1);
}

static void test_mounts_match_torn(void **state)
{
	(void)state;
	/* a table caught half rewritten: out-of-range entries are skipped */
	hello_begin(0);
	hello_mount("/mnt/nas", PROTO_BE_POSIX, PROTO_F_MOUNT_FAILOPEN);
	assert_int_equal(preload_mounts_parse(&table, msg.data, msg.len), 0);
	table.n = PRELOAD_MOUNTS_MAX + 100;
	table.m[1].off = PRELOAD_POOL_SIZE - 2;
	table.m[1].len = 100;
	table.m[2].off = 5;
	table.m[2].len = 0;
	assert_int_equal(match("/mnt/nas/a"), 0);
	assert_int_equal(match("/other"), -1);
}

/* ---- stat ---- */

static void test_srcstat_parse(void **state)
{
	struct preload_srcstat s;

	(void)state;
	proto_begin(&msg, PROTO_REPLY | PROTO_OPEN, 1);
	proto_put_i32(&msg, PROTO_T_STATUS, 0);
	proto_put_u64(&msg, PROTO_T_SIZE, 112640);
	proto_put_i64(&msg, PROTO_T_MTIME_NS, 1700000000123456789LL);
	proto_put_u32(&msg, PROTO_T_MODE, S_IFREG | 0640);
	proto_put_u64(&msg, PROTO_T_INO, 4242);
	proto_put_u32(&msg, PROTO_T_SOURCE, PROTO_SRC_LOCAL);
	assert_int_equal(preload_srcstat_parse(msg.data, msg.len, &s), 0);
	assert_int_equal(s.size, 112640);
	assert_int_equal(s.mtime_ns, 1700000000123456789LL);
	assert_int_equal(s.mode, S_IFREG | 0640);
	assert_int_equal(s.ino, 4242);
	assert_int_equal(s.type, 0);

	/* SIZE and MTIME_NS are required */
	proto_begin(&msg, PROTO_REPLY | PROTO_OPEN, 1);
	proto_put_i32(&msg, PROTO_T_STATUS, 0);
	proto_put_u64(&msg, PROTO_T_SIZE, 1);
	assert_int_equal(preload_srcstat_parse(msg.data, msg.len, &s), -EBADMSG);
	/* and of the right size */
	proto_put_u32(&msg, PROTO_T_MTIME_NS, 1);
	assert_int_equal(preload_srcstat_parse(msg.data, msg.len, &s), -EBADMSG);
}

static void test_stat_patch(void **state)
{
	struct preload_srcstat s = {
		.size = 1000, .mtime_ns = 1700000000123456789LL, .mode = S_IFREG | 0644, .ino = 99};
	struct stat st;

	(void)state;
	memset(&st, 0, sizeof(st));
	st.st_dev = makedev(8, 1);
	st.st_ino = 5;
	st.st_mode = S_IFREG | 0600;
	st.st_size = 1000;
	st.st_uid = 123;
	st.st_mtim.tv_sec = 1;
	preload_stat_patch(&st, &s);
	assert_int_equal(st.st_size, 1000);
	assert_int_equal(st.st_mtim.tv_sec, 1700000000);
	assert_int_equal(st.st_mtim.tv_nsec, 123456789);
	assert_int_equal(st.st_ino, 99);
	assert_int_equal(st.st_mode, S_IFREG | 0644);
	/* what the daemon does not report stays */
	assert_int_equal(st.st_dev, makedev(8, 1));
	assert_int_equal(st.st_uid, 123);

	/* before the epoch, nanoseconds stay positive */
	s.mtime_ns = -1500000000LL;
	s.ino = 0;
	s.mode = 0755; /* no file type: keep the cache file's */
	preload_stat_patch(&st, &s);
	assert_int_equal(st.st_mtim.tv_sec, -2);
	assert_int_equal(st.st_mtim.tv_nsec, 500000000);
	assert_int_equal(st.st_ino, 99);
	assert_int_equal(st.st_mode, S_IFREG | 0755);
}

static void test_statx_patch(void **state)
{
	struct preload_srcstat s = {
		.size = 77, .mtime_ns = 2000000000LL + 5, .mode = S_IFREG | 0444, .ino = 12};
	struct statx stx;

	(void)state;
	memset(&stx, 0, sizeof(stx));
	stx.stx_mask = STATX_SIZE | STATX_INO;
	stx.stx_size = 77;
	stx.stx_ino = 3;
	stx.stx_mode = S_IFREG | 0600;
	preload_statx_patch(&stx, &s);
	assert_int_equal(stx.stx_ino, 12);
	/* not asked for and not returned: left alone */
	assert_int_equal(stx.stx_mtime.tv_sec, 0);
	assert_int_equal(stx.stx_mode, S_IFREG | 0600);

	stx.stx_mask = STATX_BASIC_STATS;
	preload_statx_patch(&stx, &s);
	assert_int_equal(stx.stx_mtime.tv_sec, 2);
	assert_int_equal(stx.stx_mtime.tv_nsec, 5);
	assert_int_equal(stx.stx_mode, S_IFREG | 0444);
}

static void test_stat_fill(void **state)
{
	struct preload_srcstat s = {
		.size = 1025, .mtime_ns = 3000000007LL, .mode = 0, .type = PROTO_FT_REG, .ino = 0};
	struct statx stx;
	struct stat st;

	(void)state;
	preload_stat_fill(&st, &s, makedev(0, 77), 1000, 1001);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0444);
	assert_int_equal(st.st_size, 1025);
	assert_int_equal(st.st_blocks, 3);
	assert_int_equal(st.st_nlink, 1);
	assert_int_equal(st.st_uid, 1000);
	assert_int_equal(st.st_gid, 1001);
	assert_int_equal(st.st_dev, makedev(0, 77));
	assert_int_equal(st.st_mtim.tv_sec, 3);
	assert_int_equal(st.st_mtim.tv_nsec, 7);

	s.type = PROTO_FT_DIR;
	s.mode = 0750;
	s.ino = 5;
	preload_statx_fill(&stx, &s, makedev(0, 77), 0, 0);
	assert_true(S_ISDIR(stx.stx_mode));
	assert_int_equal(stx.stx_mode & 07777, 0750);
	assert_int_equal(stx.stx_nlink, 2);
	assert_int_equal(stx.stx_ino, 5);
	assert_int_equal(stx.stx_dev_minor, 77);
	assert_int_equal(stx.stx_mask & STATX_BASIC_STATS, STATX_BASIC_STATS);

	/* a MODE with a file type wins over TYPE */
	s.mode = S_IFREG | 0600;
	preload_stat_fill(&st, &s, 0, 0, 0);
	assert_int_equal(st.st_mode, S_IFREG | 0600);
}

static void test_access(void **state)
{
	(void)state;
	assert_int_equal(preload_access_check(S_IFREG | 0444, F_OK), 0);
	assert_int_equal(preload_access_check(S_IFREG | 0444, R_OK), 0);
	assert_int_equal(preload_access_check(S_IFREG | 0444, W_OK), -EROFS);
	assert_int_equal(preload_access_check(S_IFREG | 0444, R_OK | W_OK), -EROFS);
	assert_int_equal(preload_access_check(S_IFREG | 0444, X_OK), -EACCES);
	assert_int_equal(preload_access_check(S_IFREG | 0555, X_OK), 0);
	assert_int_equal(preload_access_check(S_IFDIR | 0444, X_OK), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_join_absolute), cmocka_unit_test(test_join_relative),
		cmocka_unit_test(test_join_inexact),  cmocka_unit_test(test_join_errors),
		cmocka_unit_test(test_modes),	      cmocka_unit_test(test_flags),
		cmocka_unit_test(test_mounts_parse),  cmocka_unit_test(test_mounts_parse_errors),
		cmocka_unit_test(test_mounts_match),  cmocka_unit_test(test_mounts_match_torn),
		cmocka_unit_test(test_srcstat_parse), cmocka_unit_test(test_stat_patch),
		cmocka_unit_test(test_statx_patch),   cmocka_unit_test(test_stat_fill),
		cmocka_unit_test(test_access),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
