/*
 * test_preload.c - the shim's pure logic (client/preload_rules.c): path
 * resolution, fopen modes, open flags, the mount table, the lookup in the
 * daemon's shared index, stat patching.
 *
 * The shim is a shared library with nothing but libc names exported, so the
 * rules are compiled into this program directly. The index lookup is checked
 * against tables built here and against the daemon's own writer (fastidx.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "../../client/preload_rules.c"
#include "fastidx.h"

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
	assert_int_equal(proto_put_u64(&msg, PROTO_T_TTL, 60000000000ull), 0);
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
	assert_int_equal(table.m[2].order, 2);
	/* a ttl belongs to the mount before it; the others have none */
	assert_int_equal(table.m[2].ttl_ns, 60000000000ull);
	assert_int_equal(table.m[0].ttl_ns, 0);
	assert_int_equal(table.m[1].ttl_ns, 0);
	assert_string_equal(preload_mounts_path(&table, 3), "");
	assert_string_equal(preload_mounts_path(&table, -1), "");

	/* no mounts at all */
	hello_begin(0);
	assert_int_equal(preload_mounts_parse(&table, msg.data, msg.len), 0);
	assert_int_equal(table.n, 0);
}

static void test_fx_fresh(void **state)
{
	struct proto_fx_slot slot = {.validated_s = 1000};
	const int64_t s = NS_PER_S;

	(void)state;
	/* no ttl: always */
	assert_true(preload_fx_fresh(&slot, 0, 5000 * s));
	/* validated at 1000 s, ttl 60 s: fresh until 1060 s, not at it */
	assert_true(preload_fx_fresh(&slot, 60 * s, 1000 * s));
	assert_true(preload_fx_fresh(&slot, 60 * s, 1059 * s + 999999999));
	assert_false(preload_fx_fresh(&slot, 60 * s, 1060 * s));
	assert_false(preload_fx_fresh(&slot, 60 * s, 99999 * s));
	/* a clock before the validation (another boot's slot): not fresh */
	assert_false(preload_fx_fresh(&slot, 60 * s, 999 * s));
	/* never validated since the daemon started */
	slot.validated_s = 0;
	assert_false(preload_fx_fresh(&slot, 60 * s, 10 * s));
	assert_true(preload_fx_fresh(&slot, 0, 10 * s));
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
	/* the shared index names mounts by their place in HELLO, skipped ones included */
	assert_int_equal(table.m[0].order, 2);

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
	assert_int_equal(hit.order, table.m[hit.index].order);
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

/* ---- the shared index ---- */

#define FX_N 128 /* twice PROTO_FX_PROBE */

static struct proto_fx_slot fxt[FX_N];

/* Write slot @k as the daemon does: seq odd, fields, seq even. */
static void fx_set(uint64_t k, uint64_t k1, uint64_t k2, uint32_t mount, uint64_t id)
{
	struct proto_fx_slot *s = &fxt[k];

	s->seq++;
	s->mount = mount;
	s->key1 = k1;
	s->key2 = k2;
	s->id = id;
	s->size = id * 10;
	s->mtime_ns = (int64_t)id * 1000;
	s->ino = id + 1;
	s->mode = S_IFREG | 0644;
	s->uid = 1000;
	s->gid = 1001;
	s->seq++;
}

static void fx_tomb(uint64_t k)
{
	fx_set(k, PROTO_FX_TOMB, PROTO_FX_TOMB, 0, 0);
}

static int fx_find(uint64_t k1, uint64_t k2, uint32_t mount, struct proto_fx_slot *out,
		   uint64_t *at)
{
	return preload_fx_lookup(fxt, FX_N, k1, k2, mount, out, at);
}

static void test_fx_keys(void **state)
{
	const char *p = "/mnt/nas/train/n01/x.JPEG";
	uint64_t k1, k2;

	(void)state;
	preload_fx_keys(p, strlen(p), &k1, &k2);
	assert_true(k1 == XXH3_64bits_withSeed(p, strlen(p), PROTO_FX_SEED1));
	assert_true(k2 == XXH3_64bits_withSeed(p, strlen(p), PROTO_FX_SEED2));
	assert_true(k1 != k2);
	/* the length given counts, not a NUL */
	preload_fx_keys(p, 8, &k1, &k2);
	assert_true(k1 == XXH3_64bits_withSeed("/mnt/nas", 8, PROTO_FX_SEED1));
}

/* The key is of the path the daemon gets: normalising what the shim sends changes nothing. */
static void test_fx_path_as_sent(void **state)
{
	static const char *const paths[][2] = {
		{NULL, "//mnt///nas/./train/x.jpg"},
		{NULL, "/mnt/nas/train/"},
		{"/mnt/nas/train", "../val/./y.jpg"},
		{"/mnt//nas/", "a//b/c.bin"},
		{NULL, "/mnt/nas/..x/.y"},
		{"/", "mnt/nas"},
	};
	char joined[PROTO_PATH_MAX + 1], norm[PROTO_PATH_MAX + 1];
	uint64_t k1, k2, n1, n2;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		assert_true(preload_path_join(paths[i][0], paths[i][1], joined, sizeof(joined)) >=
			    0);
		assert_int_equal(proto_path_normalize(joined, strlen(joined), norm, sizeof(norm)),
				 0);
		assert_string_equal(norm, joined);
		preload_fx_keys(joined, strlen(joined), &k1, &k2);
		preload_fx_keys(norm, strlen(norm), &n1, &n2);
		assert_true(k1 == n1 && k2 == n2);
	}
}

static void test_fx_lookup(void **state)
{
	struct proto_fx_slot out;
	uint64_t at = 99;

	(void)state;
	memset(fxt, 0, sizeof(fxt));
	/* key1 % FX_N == 5 */
	fx_set(5, FX_N * 3 + 5, 77, 1, 42);
	assert_int_equal(fx_find(FX_N * 3 + 5, 77, 1, &out, &at), 1);
	assert_int_equal(at, 5);
	assert_int_equal(out.id, 42);
	assert_int_equal(out.size, 420);
	assert_int_equal(out.mtime_ns, 42000);
	assert_int_equal(out.ino, 43);
	assert_int_equal(out.mode, S_IFREG | 0644);
	assert_int_equal(out.uid, 1000);
	assert_int_equal(out.gid, 1001);
	assert_int_equal(out.seq, 2);

	/* miss: the empty slot after its start ends the search */
	assert_int_equal(fx_find(FX_N * 3 + 5, 78, 1, &out, &at), 0);
	assert_int_equal(fx_find(6, 77, 1, &out, &at), 0);
	/* key2 decides too */
	assert_int_equal(fx_find(5, 77, 1, &out, &at), 0);

	/* wrong mount: the path is another mount's object */
	assert_int_equal(fx_find(FX_N * 3 + 5, 77, 0, &out, &at), 0);
	assert_int_equal(fx_find(FX_N * 3 + 5, 77, 2, &out, &at), 0);
}

static void test_fx_probe(void **state)
{
	struct proto_fx_slot out;
	uint64_t at = 0;
	int i;

	(void)state;
	memset(fxt, 0, sizeof(fxt));
	/* start at 10: a tombstone, another path, then ours */
	fx_tomb(10);
	fx_set(11, 10, 1, 0, 7);
	fx_set(12, 10, 2, 0, 8);
	assert_int_equal(fx_find(10, 2, 0, &out, &at), 1);
	assert_int_equal(at, 12);
	assert_int_equal(out.id, 8);
	assert_int_equal(fx_find(10, 1, 0, &out, &at), 1);
	assert_int_equal(at, 11);
	/* freeing the first leaves the second reachable */
	fx_tomb(11);
	assert_int_equal(fx_find(10, 2, 0, &out, &at), 1);
	assert_int_equal(at, 12);
	assert_int_equal(fx_find(10, 1, 0, &out, &at), 0);
	/* a tombstone's keys are no path's */
	assert_int_equal(fx_find(PROTO_FX_TOMB, PROTO_FX_TOMB, 0, &out, &at), 0);

	/* the search wraps around the end of the table */
	fx_set(FX_N - 1, 5, 5, 0, 1);
	fx_set(0, FX_N - 1, 9, 0, 2);
	assert_int_equal(fx_find(FX_N - 1, 9, 0, &out, &at), 1);
	assert_int_equal(at, 0);
	assert_int_equal(out.id, 2);

	/* at most PROTO_FX_PROBE slots from the start: the daemon puts none further */
	memset(fxt, 0, sizeof(fxt));
	for (i = 0; i < FX_N; i++)
		fx_set((uint64_t)i, FX_N + 1 + (uint64_t)i, 3, 0, (uint64_t)i + 1);
	fx_set(1 + PROTO_FX_PROBE - 1, 1, 4, 0, 500);
	fx_set(1 + PROTO_FX_PROBE, 1, 5, 0, 501);
	assert_int_equal(fx_find(1, 4, 0, &out, &at), 1);
	assert_int_equal(at, PROTO_FX_PROBE);
	assert_int_equal(out.id, 500);
	assert_int_equal(fx_find(1, 5, 0, &out, &at), 0);
}

static void test_fx_torn(void **state)
{
	struct proto_fx_slot out;
	uint64_t at = 0;

	(void)state;
	memset(fxt, 0, sizeof(fxt));
	fx_set(3, 3, 1, 0, 5);
	fx_set(4, 3, 2, 0, 6);
	/* the daemon is writing our slot: give up, the socket answers */
	fxt[4].seq = 7;
	assert_int_equal(fx_find(3, 2, 0, &out, &at), -EAGAIN);
	/* or a slot on the way to ours */
	fxt[4].seq = 8;
	fxt[3].seq = 9;
	assert_int_equal(fx_find(3, 2, 0, &out, &at), -EAGAIN);
	fxt[3].seq = 10;
	assert_int_equal(fx_find(3, 2, 0, &out, &at), 1);
	assert_int_equal(out.id, 6);
	assert_int_equal(out.seq, 8);
	/* an empty slot being written is not taken as the end */
	fxt[5].seq = 1;
	assert_int_equal(fx_find(5, 1, 0, &out, &at), -EAGAIN);
}

/* A writer that rewrites one slot as fast as it can, every field from one number. */
struct fx_race {
	struct proto_fx_slot *slot;
	int stop;
};

static void *fx_writer(void *arg)
{
	struct fx_race *r = arg;
	struct proto_fx_slot *s = r->slot;
	uint64_t v = 1;

	while (!__atomic_load_n(&r->stop, __ATOMIC_RELAXED)) {
		uint32_t seq = s->seq;

		v++;
		__atomic_store_n(&s->seq, seq + 1, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_RELEASE);
		__atomic_store_n(&s->id, v, __ATOMIC_RELAXED);
		__atomic_store_n(&s->size, v * 3, __ATOMIC_RELAXED);
		__atomic_store_n(&s->mtime_ns, (int64_t)v * 5, __ATOMIC_RELAXED);
		__atomic_store_n(&s->ino, v * 7, __ATOMIC_RELAXED);
		__atomic_store_n(&s->uid, (uint32_t)v, __ATOMIC_RELAXED);
		__atomic_store_n(&s->seq, seq + 2, __ATOMIC_RELEASE);
	}
	return NULL;
}

static void test_fx_torn_race(void **state)
{
	struct fx_race r = {.slot = &fxt[7]};
	struct proto_fx_slot out;
	unsigned hits = 0, busy = 0, i;
	uint64_t at;
	pthread_t t;

	(void)state;
	memset(fxt, 0, sizeof(fxt));
	fx_set(7, 7, 1, 0, 1);
	fxt[7].size = 3;
	fxt[7].mtime_ns = 5;
	fxt[7].ino = 7;
	fxt[7].uid = 1;
	assert_int_equal(pthread_create(&t, NULL, fx_writer, &r), 0);
	for (i = 0; i < 200000; i++) {
		int rc = fx_find(7, 1, 0, &out, &at);

		if (rc == -EAGAIN) {
			busy++;
			continue;
		}
		assert_int_equal(rc, 1);
		/* never a copy mixing two versions */
		assert_int_equal(out.size, out.id * 3);
		assert_int_equal(out.mtime_ns, (int64_t)out.id * 5);
		assert_int_equal(out.ino, out.id * 7);
		assert_int_equal(out.uid, (uint32_t)out.id);
		assert_int_equal(out.seq & 1, 0);
		hits++;
	}
	__atomic_store_n(&r.stop, 1, __ATOMIC_RELAXED);
	pthread_join(t, NULL);
	print_message("%u consistent copies, %u lookups gave up\n", hits, busy);
	assert_true(hits > 0);
}

static void test_fx_check(void **state)
{
	static union {
		struct proto_fx_hdr h;
		uint8_t b[sizeof(struct proto_fx_hdr) + 16 * sizeof(struct proto_fx_slot)];
	} m;

	(void)state;
	m.h.magic = PROTO_FX_MAGIC;
	m.h.version = PROTO_FX_VERSION;
	m.h.nslots = 16;
	assert_int_equal(preload_fx_check(&m, sizeof(m)), 16);
	/* slots past the end of the mapping */
	assert_int_equal(preload_fx_check(&m, sizeof(m) - 1), 0);
	m.h.nslots = 0;
	assert_int_equal(preload_fx_check(&m, sizeof(m)), 0);
	m.h.nslots = UINT64_MAX / 8;
	assert_int_equal(preload_fx_check(&m, sizeof(m)), 0);
	m.h.nslots = 16;
	m.h.version = PROTO_FX_VERSION + 1;
	assert_int_equal(preload_fx_check(&m, sizeof(m)), 0);
	m.h.version = PROTO_FX_VERSION;
	m.h.magic = 0;
	assert_int_equal(preload_fx_check(&m, sizeof(m)), 0);
	assert_int_equal(preload_fx_check(&m, sizeof(m.h) - 1), 0);
}

static void test_fx_same_name(void **state)
{
	struct proto_fx_slot slot = {.size = 100,
				     .mtime_ns = 1700000000123456789LL,
				     .ino = 55,
				     .mode = S_IFREG | 0640,
				     .uid = 10,
				     .gid = 20};
	struct stat st, base;
	char name[20];

	(void)state;
	memset(&base, 0, sizeof(base));
	base.st_size = 100;
	base.st_mtim.tv_sec = 1700000000;
	base.st_mtim.tv_nsec = 123456789;
	base.st_ino = 55;
	base.st_mode = S_IFREG | 0640;
	base.st_uid = 10;
	base.st_gid = 20;
	assert_true(preload_fx_same(&slot, &base));
	st = base;
	st.st_size = 101;
	assert_false(preload_fx_same(&slot, &st));
	st = base;
	st.st_mtim.tv_nsec++;
	assert_false(preload_fx_same(&slot, &st));
	st = base;
	st.st_ino = 56;
	assert_false(preload_fx_same(&slot, &st));
	st = base;
	st.st_mode = S_IFREG | 0600;
	assert_false(preload_fx_same(&slot, &st));
	st = base;
	st.st_uid = 0;
	assert_false(preload_fx_same(&slot, &st));
	st = base;
	st.st_gid = 0;
	assert_false(preload_fx_same(&slot, &st));

	preload_fx_name(0x1234abcdULL, name);
	assert_string_equal(name, "cd/000000001234abcd");
	preload_fx_name(UINT64_MAX, name);
	assert_string_equal(name, "ff/ffffffffffffffff");
	preload_fx_name(0, name);
	assert_string_equal(name, "00/0000000000000000");
}

/* The daemon's writer (daemon/fastidx.c) and this reader agree on the contract. */
static void test_fx_daemon_index(void **state)
{
	struct object a, b;
	struct proto_fx_slot out;
	struct fastidx *fx;
	struct stat st;
	uint64_t k1, k2, n, at = 0;
	void *map;
	int err = 0, fd;

	(void)state;
	fx = fastidx_create(1ull << 30, &err);
	assert_non_null(fx);
	memset(&a, 0, sizeof(a));
	a.path = "/mnt/nas/train/a.jpg";
	a.state = OBJ_CACHED;
	a.id = 0x1f2e;
	a.v.size = 112640;
	a.v.mtime_ns = 1700000000000000001LL;
	a.v.ino = 4242;
	a.v.mode = S_IFREG | 0644;
	a.v.uid = 1000;
	a.v.gid = 100;
	b = a;
	b.path = "/mnt/other/b.jpg";
	b.id = 0x1f2f;
	fastidx_put(fx, &a, 0);
	fastidx_put(fx, &b, 3);

	fd = fastidx_client_fd(fx);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(map != MAP_FAILED);
	close(fd);
	n = preload_fx_check(map, (size_t)st.st_size);
	assert_true(n > 0);

	preload_fx_keys(a.path, strlen(a.path), &k1, &k2);
	assert_int_equal(
		preload_fx_lookup((const struct proto_fx_slot *)((struct proto_fx_hdr *)map + 1), n,
				  k1, k2, 0, &out, &at),
		1);
	assert_int_equal(at + 1, a.fx_slot);
	assert_int_equal(out.id, a.id);
	assert_int_equal(out.size, a.v.size);
	assert_int_equal(out.mtime_ns, a.v.mtime_ns);
	assert_int_equal(out.ino, a.v.ino);
	assert_int_equal(out.mode, a.v.mode);
	assert_int_equal(out.uid, a.v.uid);
	assert_int_equal(out.gid, a.v.gid);
	assert_ptr_equal(fastidx_object(fx, at, out.id), &a);

	/* b is mount 3's */
	preload_fx_keys(b.path, strlen(b.path), &k1, &k2);
	assert_int_equal(
		preload_fx_lookup((const struct proto_fx_slot *)((struct proto_fx_hdr *)map + 1), n,
				  k1, k2, 0, &out, &at),
		0);
	assert_int_equal(
		preload_fx_lookup((const struct proto_fx_slot *)((struct proto_fx_hdr *)map + 1), n,
				  k1, k2, 3, &out, &at),
		1);
	assert_int_equal(out.id, b.id);

	/* withdrawn (evicted): gone for readers too */
	fastidx_del(fx, &a);
	preload_fx_keys(a.path, strlen(a.path), &k1, &k2);
	assert_int_equal(
		preload_fx_lookup((const struct proto_fx_slot *)((struct proto_fx_hdr *)map + 1), n,
				  k1, k2, 0, &out, &at),
		0);
	munmap(map, (size_t)st.st_size);
	fastidx_destroy(fx);
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
		cmocka_unit_test(test_join_absolute),	cmocka_unit_test(test_join_relative),
		cmocka_unit_test(test_join_inexact),	cmocka_unit_test(test_join_errors),
		cmocka_unit_test(test_modes),		cmocka_unit_test(test_flags),
		cmocka_unit_test(test_mounts_parse),	cmocka_unit_test(test_mounts_parse_errors),
		cmocka_unit_test(test_mounts_match),	cmocka_unit_test(test_mounts_match_torn),
		cmocka_unit_test(test_srcstat_parse),	cmocka_unit_test(test_stat_patch),
		cmocka_unit_test(test_statx_patch),	cmocka_unit_test(test_stat_fill),
		cmocka_unit_test(test_access),		cmocka_unit_test(test_fx_keys),
		cmocka_unit_test(test_fx_path_as_sent), cmocka_unit_test(test_fx_lookup),
		cmocka_unit_test(test_fx_probe),	cmocka_unit_test(test_fx_torn),
		cmocka_unit_test(test_fx_torn_race),	cmocka_unit_test(test_fx_check),
		cmocka_unit_test(test_fx_same_name),	cmocka_unit_test(test_fx_fresh),
		cmocka_unit_test(test_fx_daemon_index),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
