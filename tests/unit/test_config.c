/*
 * test_config.c - granaryd's settings: parsing every type, every error with
 * its file:line:column, validation, printing and reading back, the example
 * file, and the generated reference in docs/configuration.md.
 */
#include <errno.h>
#include <grp.h>
#include <libgen.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "config_keys.h"

#define NS_PER_S 1000000000ull

/* A file of the source tree: $GRANARY_SRC, else relative to this file. */
static char *src_file(const char *rel)
{
	const char *src = getenv("GRANARY_SRC");
	char here[PATH_MAX], *path = NULL;

	if (src && *src) {
		if (asprintf(&path, "%s/%s", src, rel) < 0)
			return NULL;
		if (!access(path, R_OK))
			return path;
		free(path);
	}
	snprintf(here, sizeof(here), "%s", __FILE__);
	if (asprintf(&path, "%s/../../%s", dirname(here), rel) < 0)
		return NULL;
	return path;
}

static char *read_all(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t cap = 0, n = 0, r;

	if (!f)
		return NULL;
	do {
		if (n + 4096 + 1 > cap) {
			cap = cap ? 2 * cap : 65536;
			buf = realloc(buf, cap);
			assert_non_null(buf);
		}
		r = fread(buf + n, 1, cap - n - 1, f);
		n += r;
	} while (r > 0);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

static int load(struct config *c, const char *yaml, char *err)
{
	return config_load_string(c, "t.yaml", yaml, err, CONFIG_ERR_MAX);
}

/* Load @yaml, which must succeed. */
static void load_ok(struct config *c, const char *yaml)
{
	char err[CONFIG_ERR_MAX];
	int rc = load(c, yaml, err);

	if (rc)
		fail_msg("load failed (%d): %s\n--- yaml:\n%s", rc, err, yaml);
}

/* Load @yaml, which must fail with exactly @msg on one line. */
static void expect_load_error(const char *yaml, const char *msg)
{
	char err[CONFIG_ERR_MAX];
	struct config c;
	int rc = load(&c, yaml, err);

	config_free(&c);
	if (rc != -EINVAL || strcmp(err, msg))
		fail_msg("yaml:\n%s\nrc %d, got      '%s'\n      expected '%s'", yaml, rc, err,
			 msg);
	assert_null(strchr(err, '\n'));
}

/* Load @yaml, which must load and then fail config_validate with @msg. */
static void expect_invalid(const char *yaml, const char *msg)
{
	char err[CONFIG_ERR_MAX];
	struct config c;
	int rc;

	load_ok(&c, yaml);
	rc = config_validate(&c, err, sizeof(err));
	config_free(&c);
	if (rc != -EINVAL || strcmp(err, msg))
		fail_msg("yaml:\n%s\nrc %d, got      '%s'\n      expected '%s'", yaml, rc, err,
			 msg);
}

static void expect_valid(const char *yaml)
{
	char err[CONFIG_ERR_MAX];
	struct config c;
	int rc;

	load_ok(&c, yaml);
	rc = config_validate(&c, err, sizeof(err));
	config_free(&c);
	if (rc)
		fail_msg("yaml:\n%s\nvalidate failed: %s", yaml, err);
}

/* ---- defaults --------------------------------------------------------- */

static void test_defaults(void **state)
{
	char err[CONFIG_ERR_MAX];
	struct config c;

	(void)state;
	config_init_defaults(&c);
	assert_string_equal(c.file, "(defaults)");
	assert_string_equal(c.socket, "/run/granary/granary.sock");
	assert_int_equal(c.socket_mode, 0660);
	if (getgrnam("granary"))
		assert_string_equal(c.socket_group, "granary");
	else
		assert_null(c.socket_group);
	assert_string_equal(c.cache.dir, "/var/cache/granary");
	assert_int_equal(c.cache.capacity, 100ull << 30);
	assert_true(c.cache.high_watermark == 0.95);
	assert_true(c.cache.low_watermark == 0.90);
	assert_int_equal(c.cache.durability, CONFIG_DURABILITY_NONE);
	assert_int_equal(c.cache.io, CONFIG_IO_AUTO);
	assert_int_equal(c.cache.uring_depth, 256);
	assert_int_equal(c.cache.commit_interval_ns, 200000000ull);
	assert_string_equal(c.policy.eviction, "epoch");
	assert_int_equal(c.policy.prefetch_window, 64);
	assert_int_equal(c.fetch.workers, 8);
	assert_int_equal(c.fetch.max_parallel, 64);
	assert_int_equal(c.fetch.fg_reserved, 16);
	assert_int_equal(c.fetch.bg_rate, 0);
	assert_int_equal(c.fetch.timeout_ns, 30 * NS_PER_S);
	assert_int_equal(c.fetch.retries, 4);
	assert_int_equal(c.fetch.chunk_size, 8ull << 20);
	assert_int_equal(c.fetch.chunk_parallel, 8);
	assert_int_equal(c.fetch.large_threshold, 64ull << 20);
	assert_int_equal(c.fetch.connections, 16);
	assert_null(c.peers.self);
	assert_string_equal(c.peers.provider, "tcp;ofi_rxm");
	assert_null(c.peers.secret_file);
	assert_int_equal(c.peers.placement, CONFIG_PLACEMENT_PARTITION);
	assert_int_equal(c.peers.heartbeat_ns, NS_PER_S);
	assert_int_equal(c.peers.miss_limit, 3);
	assert_int_equal(c.peers.n_nodes, 0);
	assert_null(c.metrics.listen);
	assert_int_equal(c.log.level, CONFIG_LOG_INFO);
	assert_null(c.log.file);
	assert_int_equal(c.n_mounts, 0);
	assert_null(c.marks);
	assert_int_equal(config_validate(&c, err, sizeof(err)), 0);
	assert_string_equal(err, "");
	config_free(&c);
	config_free(&c);
	assert_null(c.socket);

	/* an empty file, and one holding only a comment or ---, are the defaults */
	load_ok(&c, "");
	assert_string_equal(c.file, "t.yaml");
	assert_int_equal(c.cache.capacity, 100ull << 30);
	config_free(&c);
	load_ok(&c, "# nothing\n");
	config_free(&c);
	load_ok(&c, "---\n");
	config_free(&c);
	/* sections left empty keep their defaults */
	load_ok(&c, "cache:\nmounts:\n");
	assert_int_equal(c.n_mounts, 0);
	assert_string_equal(c.cache.dir, "/var/cache/granary");
	config_free(&c);
}

/* Build a file that sets @k to @value, inside a mount or node when needed. */
static void yaml_for_key(const struct config_key *k, const char *value, char *buf, size_t sz)
{
	const char *dot = strchr(k->name, '.');

	if (!strncmp(k->name, "mounts[].", 9)) {
		const char *local = k->name + 9;

		if (!strcmp(local, "path"))
			snprintf(buf, sz, "mounts:\n  - path: \"%s\"\n", value);
		else if (!strcmp(local, "ttl"))
			snprintf(buf, sz,
				 "mounts:\n  - path: /m\n    consistency: ttl\n    ttl: \"%s\"\n",
				 value);
		else
			snprintf(buf, sz, "mounts:\n  - path: /m\n    %s: \"%s\"\n", local, value);
	} else if (!strncmp(k->name, "peers.nodes[].", 14)) {
		const char *local = k->name + 14;

		snprintf(buf, sz, "peers:\n  nodes:\n    - { %s: \"%s\", %s }\n", local, value,
			 strcmp(local, "name") ? "name: a" : "address: \"b:1\"");
	} else if (dot) {
		snprintf(buf, sz, "%.*s:\n  %s: \"%s\"\n", (int)(dot - k->name), k->name, dot + 1,
			 value);
	} else {
		snprintf(buf, sz, "%s: \"%s\"\n", k->name, value);
	}
}

/* The table's defaults and bounds are values its own parsers accept. */
static void test_table_is_consistent(void **state)
{
	char yaml[512], err[CONFIG_ERR_MAX];
	struct config c;
	int rc;

	(void)state;
	for (size_t i = 0; i < CONFIG_N_KEYS; i++) {
		const struct config_key *k = &config_keys[i];

		assert_non_null(k->help);
		assert_true(k->type < CONFIG_T_COUNT);
		assert_true(k->def || k->def_doc);
		if ((k->type == CONFIG_T_ENUM || k->type == CONFIG_T_WORD ||
		     k->type == CONFIG_T_CONSISTENCY))
			assert_non_null(k->choices);
		/* names are unique */
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(k->name, config_keys[j].name);
		if (k->def) {
			yaml_for_key(k, k->def, yaml, sizeof(yaml));
			load_ok(&c, yaml);
			config_free(&c);
		}
		if (k->min) {
			yaml_for_key(k, k->min, yaml, sizeof(yaml));
			rc = load(&c, yaml, err);
			config_free(&c);
			assert_int_equal(rc, (k->flags & CONFIG_K_MIN_EXCL) ? -EINVAL : 0);
		}
		if (k->max) {
			yaml_for_key(k, k->max, yaml, sizeof(yaml));
			load_ok(&c, yaml);
			config_free(&c);
		}
	}
}

/* ---- sizes and durations ---------------------------------------------- */

static void test_parse_size(void **state)
{
	static const struct {
		const char *s;
		uint64_t v;
	} good[] = {
		{"0", 0},
		{"4096", 4096},
		{"4096B", 4096},
		{"512K", 512ull << 10},
		{"512k", 512ull << 10},
		{"512KiB", 512ull << 10},
		{"512KB", 512ull << 10},
		{"512 K", 512ull << 10},
		{"100M", 100ull << 20},
		{"1.5T", 3ull << 39},
		{"0.5K", 512},
		{"0.1K", 102}, /* fractions of a byte are dropped */
		{"1.00000000000000000000001K", 1024},
		{"2G", 2ull << 30},
		{"3P", 3ull << 50},
		{"15E", 15ull << 60},
		{"18446744073709551615", UINT64_MAX},
	};
	static const char *const bad[] = {
		"",
		"K",
		"-1",
		"+1",
		" 1",
		"1.5",
		"1.",
		".5K",
		"1KX",
		"1Kb",
		"1KiBB",
		"1 ",
		"1Q",
		"lots",
		"16E",
		"18446744073709551616",
		"99999999999999999999999K",
		"0x10",
		"1e3",
		"1,5K",
	};
	uint64_t v;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		v = 42;
		if (config_parse_size(good[i].s, &v) || v != good[i].v)
			fail_msg("'%s' gave %llu, expected %llu", good[i].s, (unsigned long long)v,
				 (unsigned long long)good[i].v);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (config_parse_size(bad[i], &v) != -EINVAL)
			fail_msg("'%s' was accepted as a size", bad[i]);
	assert_int_equal(config_parse_size(NULL, &v), -EINVAL);
}

static void test_parse_duration(void **state)
{
	static const struct {
		const char *s;
		uint64_t ns;
	} good[] = {
		{"0", 0},
		{"0s", 0},
		{"250ms", 250000000ull},
		{"30s", 30 * NS_PER_S},
		{"30", 30 * NS_PER_S},
		{"1.5", 1500000000ull},
		{"1.5s", 1500000000ull},
		{"5m", 300 * NS_PER_S},
		{"2h", 7200 * NS_PER_S},
		{"1d", 86400 * NS_PER_S},
		{"10us", 10000},
		{"7ns", 7},
		{"0.5ms", 500000},
		{"1 s", NS_PER_S},
		{"213503d", 213503ull * 86400 * NS_PER_S},
	};
	static const char *const bad[] = {
		"",
		"s",
		"-1s",
		"+1s",
		"1x",
		"1sec",
		"1S",
		"1.s",
		"1h30m",
		"213504d",
		"99999999999999999999s",
		"inf",
		"nan",
		"1e3s",
		" 1s",
	};
	uint64_t v;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		v = 42;
		if (config_parse_duration(good[i].s, &v) || v != good[i].ns)
			fail_msg("'%s' gave %llu, expected %llu", good[i].s, (unsigned long long)v,
				 (unsigned long long)good[i].ns);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (config_parse_duration(bad[i], &v) != -EINVAL)
			fail_msg("'%s' was accepted as a duration", bad[i]);
	assert_int_equal(config_parse_duration(NULL, &v), -EINVAL);
}

/* ---- every type ------------------------------------------------------- */

static const char every_type_yaml[] = "socket: /run//granary/./g.sock/\n"
				      "socket_mode: 0o640\n"
				      "socket_group: ~\n"
				      "cache:\n"
				      "  dir: /srv/cache\n"
				      "  capacity: 1.5T\n"
				      "  high_watermark: 0.8\n"
				      "  low_watermark: .5\n"
				      "  durability: fsync\n"
				      "  io: threads\n"
				      "  uring_depth: 32768\n"
				      "  commit_interval: 1.5s\n"
				      "policy:\n"
				      "  eviction: lru\n"
				      "  prefetch_window: 0\n"
				      "fetch:\n"
				      "  workers: 2\n"
				      "  max_parallel: 100\n"
				      "  fg_reserved: 10\n"
				      "  bg_rate: 100M/s\n"
				      "  timeout: 2m\n"
				      "  retries: 0\n"
				      "  chunk_size: 512KiB\n"
				      "  chunk_parallel: 3\n"
				      "  large_threshold: 1G\n"
				      "  connections: 5\n"
				      "mounts:\n"
				      "  - path: /data/nas/\n"
				      "    source: /mnt/real//nas\n"
				      "    dataset: \"nas: main #1\"\n"
				      "    consistency: immutable\n"
				      "    large: direct\n"
				      "  - path: /g/s3\n"
				      "    backend: s3\n"
				      "    url: HTTPS://s3.example.com/bucket\n"
				      "    region: eu-west-3\n"
				      "    credentials_file: /etc/granary/s3.cred\n"
				      "    path_style: no\n"
				      "    consistency: {ttl: 90s}\n"
				      "    placement: partition\n"
				      "    allow_uids: [0, 1000, 4294967294]\n"
				      "    allow_gids:\n"
				      "      - 1001\n"
				      "  - path: /g/http\n"
				      "    backend: http\n"
				      "    url: 'http://[::1]:8080/x/'\n"
				      "    consistency: ttl\n"
				      "    ttl: 250ms\n"
				      "    allow_uids: []\n"
				      "peers:\n"
				      "  self: n1\n"
				      "  provider: shm\n"
				      "  secret_file: /etc/granary/rack.secret\n"
				      "  placement: replicate\n"
				      "  heartbeat: 10ms\n"
				      "  miss_limit: 7\n"
				      "  nodes:\n"
				      "    - { name: n1, address: \"10.0.0.1:7471\" }\n"
				      "    - name: n2\n"
				      "      address: \"[fe80::2]:7471\"\n"
				      "metrics:\n"
				      "  listen: localhost:9471\n"
				      "log:\n"
				      "  level: debug\n"
				      "  file: null\n";

static void test_every_type(void **state)
{
	char err[CONFIG_ERR_MAX];
	const struct config_mount *m;
	struct config c;

	(void)state;
	load_ok(&c, every_type_yaml);
	assert_int_equal(config_validate(&c, err, sizeof(err)), 0);
	assert_string_equal(c.file, "t.yaml");
	assert_string_equal(c.socket, "/run/granary/g.sock");
	assert_int_equal(c.socket_mode, 0640);
	assert_null(c.socket_group);
	assert_string_equal(c.cache.dir, "/srv/cache");
	assert_int_equal(c.cache.capacity, 3ull << 39);
	assert_true(c.cache.high_watermark == 0.8);
	assert_true(c.cache.low_watermark == 0.5);
	assert_int_equal(c.cache.durability, CONFIG_DURABILITY_FSYNC);
	assert_int_equal(c.cache.io, CONFIG_IO_THREADS);
	assert_int_equal(c.cache.uring_depth, 32768);
	assert_int_equal(c.cache.commit_interval_ns, 1500000000ull);
	assert_string_equal(c.policy.eviction, "lru");
	assert_int_equal(c.policy.prefetch_window, 0);
	assert_int_equal(c.fetch.workers, 2);
	assert_int_equal(c.fetch.max_parallel, 100);
	assert_int_equal(c.fetch.fg_reserved, 10);
	assert_int_equal(c.fetch.bg_rate, 100ull << 20);
	assert_int_equal(c.fetch.timeout_ns, 120 * NS_PER_S);
	assert_int_equal(c.fetch.retries, 0);
	assert_int_equal(c.fetch.chunk_size, 512ull << 10);
	assert_int_equal(c.fetch.chunk_parallel, 3);
	assert_int_equal(c.fetch.large_threshold, 1ull << 30);
	assert_int_equal(c.fetch.connections, 5);

	assert_int_equal(c.n_mounts, 3);
	m = &c.mounts[0];
	assert_string_equal(m->path, "/data/nas");
	assert_int_equal(m->backend, CONFIG_BACKEND_POSIX);
	assert_string_equal(m->source, "/mnt/real/nas");
	assert_null(m->url);
	assert_string_equal(m->dataset, "nas: main #1");
	assert_int_equal(m->consistency, CONFIG_CONSISTENCY_IMMUTABLE);
	/* not set: the mount takes peers.placement, read after it */
	assert_int_equal(m->placement, CONFIG_PLACEMENT_REPLICATE);
	assert_int_equal(m->large, CONFIG_LARGE_DIRECT);
	assert_true(m->path_style);
	assert_int_equal(m->n_allow_uids, 0);
	assert_int_equal(m->line, 28);

	m = &c.mounts[1];
	assert_string_equal(m->path, "/g/s3");
	assert_int_equal(m->backend, CONFIG_BACKEND_S3);
	assert_null(m->source);
	assert_string_equal(m->url, "HTTPS://s3.example.com/bucket/");
	assert_string_equal(m->region, "eu-west-3");
	assert_string_equal(m->credentials_file, "/etc/granary/s3.cred");
	assert_false(m->path_style);
	assert_string_equal(m->dataset, "/g/s3");
	assert_int_equal(m->consistency, CONFIG_CONSISTENCY_TTL);
	assert_int_equal(m->ttl_ns, 90 * NS_PER_S);
	assert_int_equal(m->placement, CONFIG_PLACEMENT_PARTITION);
	assert_int_equal(m->large, CONFIG_LARGE_WHOLE);
	assert_int_equal(m->n_allow_uids, 3);
	assert_int_equal(m->allow_uids[0], 0);
	assert_int_equal(m->allow_uids[1], 1000);
	assert_int_equal(m->allow_uids[2], 4294967294u);
	assert_int_equal(m->n_allow_gids, 1);
	assert_int_equal(m->allow_gids[0], 1001);

	m = &c.mounts[2];
	assert_string_equal(m->url, "http://[::1]:8080/x/");
	assert_int_equal(m->consistency, CONFIG_CONSISTENCY_TTL);
	assert_int_equal(m->ttl_ns, 250000000ull);
	assert_int_equal(m->n_allow_uids, 0);

	assert_string_equal(c.peers.self, "n1");
	assert_string_equal(c.peers.provider, "shm");
	assert_string_equal(c.peers.secret_file, "/etc/granary/rack.secret");
	assert_int_equal(c.peers.placement, CONFIG_PLACEMENT_REPLICATE);
	assert_int_equal(c.peers.heartbeat_ns, 10000000ull);
	assert_int_equal(c.peers.miss_limit, 7);
	assert_int_equal(c.peers.n_nodes, 2);
	assert_string_equal(c.peers.nodes[0].name, "n1");
	assert_string_equal(c.peers.nodes[0].address, "10.0.0.1:7471");
	assert_string_equal(c.peers.nodes[1].name, "n2");
	assert_string_equal(c.peers.nodes[1].address, "[fe80::2]:7471");
	assert_string_equal(c.metrics.listen, "localhost:9471");
	assert_int_equal(c.log.level, CONFIG_LOG_DEBUG);
	assert_null(c.log.file);
	config_free(&c);
}

static void test_scalar_spellings(void **state)
{
	struct config c;

	(void)state;
	load_ok(&c, "socket_mode: 750\nmounts:\n  - {path: /a, path_style: off}\n"
		    "  - {path: /b, path_style: Yes}\n  - {path: /c, path_style: 'TRUE'}\n");
	assert_int_equal(c.socket_mode, 0750);
	assert_false(c.mounts[0].path_style);
	assert_true(c.mounts[1].path_style);
	assert_true(c.mounts[2].path_style);
	config_free(&c);

	load_ok(&c, "socket_mode: \"0600\"\nfetch: {bg_rate: 1G}\n");
	assert_int_equal(c.socket_mode, 0600);
	assert_int_equal(c.fetch.bg_rate, 1ull << 30);
	config_free(&c);

	/* a quoted empty string is as good as ~ for an optional key */
	load_ok(&c, "metrics: {listen: ''}\nlog: {file: ~}\n");
	assert_null(c.metrics.listen);
	config_free(&c);

	/* a dotted key is the nested key, and cannot be given both ways */
	load_ok(&c, "cache.capacity: 2T\nmetrics: {listen: 'h:1'}\n");
	assert_int_equal(c.cache.capacity, 2ull << 40);
	config_free(&c);
	expect_load_error("cache:\n  capacity: 1T\ncache.capacity: 2T\n",
			  "t.yaml:3:17: cache.capacity: given twice (first at line 2)");

	/* anchors and aliases are ordinary YAML */
	load_ok(&c,
		"mounts:\n  - path: /a\n    backend: http\n    url: http://h/\n    allow_uids: &u [5]\n"
		"    allow_gids: *u\n");
	assert_int_equal(c.mounts[0].n_allow_gids, 1);
	assert_int_equal(c.mounts[0].allow_gids[0], 5);
	config_free(&c);
}

/* ---- errors ----------------------------------------------------------- */

static void test_error_unknown_key(void **state)
{
	(void)state;
	expect_load_error("cache:\n  capasity: 1G\n",
			  "t.yaml:2:3: cache.capasity: unknown key; did you mean 'capacity'?");
	expect_load_error("cache:\n  zzzzzz: 1\n", "t.yaml:2:3: cache.zzzzzz: unknown key");
	expect_load_error("capacity: 1G\n",
			  "t.yaml:1:1: capacity: unknown key; did you mean 'cache.capacity'?");
	expect_load_error("cach:\n  capacity: 1G\n",
			  "t.yaml:1:1: cach: unknown key; did you mean 'cache'?");
	expect_load_error("mounts:\n  - path: /a\n    bakend: posix\n",
			  "t.yaml:3:5: mounts[0].bakend: unknown key; did you mean 'backend'?");
	expect_load_error(
		"peers:\n  nodes:\n    - {name: a, adress: 'b:1'}\n",
		"t.yaml:3:17: peers.nodes[0].adress: unknown key; did you mean 'address'?");
	expect_load_error("log:\n  level: info\n  file:\n    x: 1\n",
			  "t.yaml:4:5: log.file: expected an absolute path, got a mapping");
	expect_load_error(
		"mounts:\n  - path: /a\n    consistency: {tll: 1s}\n",
		"t.yaml:3:19: mounts[0].consistency: expected {ttl: DURATION}, got key 'tll'");
	expect_load_error("? [a]\n: 1\n",
			  "t.yaml:1:3: (top level): expected a key name, got a list");
	expect_load_error("cache:\n  ? [a]\n  : 1\n",
			  "t.yaml:2:5: cache: expected a key name, got a list");
}

static void test_error_wrong_type(void **state)
{
	(void)state;
	expect_load_error("cache: 5\n", "t.yaml:1:8: cache: expected a mapping, got a value");
	expect_load_error("cache:\n  capacity: [1]\n",
			  "t.yaml:2:13: cache.capacity: expected a size like 512G, got a list");
	expect_load_error(
		"cache:\n  durability: {a: 1}\n",
		"t.yaml:2:15: cache.durability: expected one of none, fsync, got a mapping");
	expect_load_error("mounts: {a: 1}\n",
			  "t.yaml:1:9: mounts: expected a list of mounts, got a mapping");
	expect_load_error("mounts:\n  - /a\n",
			  "t.yaml:2:5: mounts[0]: expected a mapping, got a value");
	expect_load_error(
		"peers:\n  nodes: node1\n",
		"t.yaml:2:10: peers.nodes: expected a list of {name, address}, got a value");
	expect_load_error(
		"mounts:\n  - path: /a\n    allow_uids: 5\n",
		"t.yaml:3:17: mounts[0].allow_uids: expected a list of ids like [1001, 1002], got a value");
	expect_load_error("mounts:\n  - path: /a\n    allow_uids: [1, abc]\n",
			  "t.yaml:3:21: mounts[0].allow_uids: expected a numeric id, got 'abc'");
	expect_load_error("mounts:\n  - path: /a\n    allow_gids: [-1]\n",
			  "t.yaml:3:18: mounts[0].allow_gids: expected a numeric id, got '-1'");
	expect_load_error(
		"mounts:\n  - path: /a\n    allow_gids: [4294967295]\n",
		"t.yaml:3:18: mounts[0].allow_gids: expected a numeric id, got '4294967295'");
	expect_load_error("mounts:\n  - path: /a\n    allow_gids: [[1]]\n",
			  "t.yaml:3:18: mounts[0].allow_gids: expected a numeric id, got a list");
	expect_load_error("- a\n",
			  "t.yaml:1:1: (top level): expected a mapping of settings, got a list");
	expect_load_error("just words\n",
			  "t.yaml:1:1: (top level): expected a mapping of settings, got a value");
}

static void test_error_values(void **state)
{
	(void)state;
	expect_load_error("cache:\n  capacity: lots\n",
			  "t.yaml:2:13: cache.capacity: expected a size like 512G, got 'lots'");
	expect_load_error("cache:\n  capacity: -1G\n",
			  "t.yaml:2:13: cache.capacity: expected a size like 512G, got '-1G'");
	expect_load_error(
		"cache:\n  capacity: 99999999E\n",
		"t.yaml:2:13: cache.capacity: expected a size like 512G, got '99999999E'");
	expect_load_error("cache:\n  capacity:\n",
			  "t.yaml:2:12: cache.capacity: expected a size like 512G, got nothing");
	expect_load_error("fetch:\n  timeout: soon\n",
			  "t.yaml:2:12: fetch.timeout: expected a duration like 30s, got 'soon'");
	expect_load_error("fetch:\n  bg_rate: fast\n",
			  "t.yaml:2:12: fetch.bg_rate: expected a rate like 100M, got 'fast'");
	expect_load_error("fetch:\n  workers: 1.5\n",
			  "t.yaml:2:12: fetch.workers: expected a whole number, got '1.5'");
	expect_load_error("fetch:\n  workers: 99999999999\n",
			  "t.yaml:2:12: fetch.workers: expected a whole number, got '99999999999'");
	expect_load_error(
		"cache:\n  high_watermark: high\n",
		"t.yaml:2:19: cache.high_watermark: expected a ratio like 0.9, got 'high'");
	expect_load_error(
		"cache:\n  high_watermark: nan\n",
		"t.yaml:2:19: cache.high_watermark: expected a ratio like 0.9, got 'nan'");
	expect_load_error("socket_mode: 0999\n",
			  "t.yaml:1:14: socket_mode: expected an octal mode like 0660, got '0999'");
	expect_load_error("mounts:\n  - path: /a\n    path_style: maybe\n",
			  "t.yaml:3:17: mounts[0].path_style: expected true or false, got 'maybe'");
	expect_load_error(
		"metrics:\n  listen: 9471\n",
		"t.yaml:2:11: metrics.listen: expected an address like 10.0.0.1:7471 or [::1]:7471, got '9471'");
	expect_load_error(
		"metrics:\n  listen: ::1:9471\n",
		"t.yaml:2:11: metrics.listen: expected an address like 10.0.0.1:7471 or [::1]:7471, got '::1:9471'");
	expect_load_error(
		"metrics:\n  listen: 'h:70000'\n",
		"t.yaml:2:11: metrics.listen: expected an address like 10.0.0.1:7471 or [::1]:7471, got 'h:70000'");
	expect_load_error(
		"mounts:\n  - path: /a\n    backend: http\n    url: ftp://h/x/\n",
		"t.yaml:4:10: mounts[0].url: expected an http:// or https:// URL without query, got 'ftp://h/x/'");
	expect_load_error(
		"mounts:\n  - path: /a\n    backend: http\n    url: 'http://h/x?a=b'\n",
		"t.yaml:4:10: mounts[0].url: expected an http:// or https:// URL without query, got 'http://h/x?a=b'");
	expect_load_error("socket: \"/a\\0b\"\n", "t.yaml:1:9: socket: contains a NUL byte");
	expect_load_error("\"socket\\0x\": /a\n", "t.yaml:1:1: socket: key contains a NUL byte");
	/* a value with a line break still makes a one-line message */
	expect_load_error("socket: \"a\\nb\"\n",
			  "t.yaml:1:9: socket: expected an absolute path, got 'a?b'");
}

static void test_error_out_of_range(void **state)
{
	(void)state;
	expect_load_error(
		"fetch:\n  workers: 0\n",
		"t.yaml:2:12: fetch.workers: must be at least 1 and at most 1024, got '0'");
	expect_load_error(
		"fetch:\n  workers: 1025\n",
		"t.yaml:2:12: fetch.workers: must be at least 1 and at most 1024, got '1025'");
	expect_load_error("cache:\n  capacity: 65535\n",
			  "t.yaml:2:13: cache.capacity: must be at least 64K, got '65535'");
	expect_load_error(
		"cache:\n  high_watermark: 0\n",
		"t.yaml:2:19: cache.high_watermark: must be above 0 and at most 1, got '0'");
	expect_load_error(
		"cache:\n  low_watermark: 1.01\n",
		"t.yaml:2:18: cache.low_watermark: must be above 0 and at most 1, got '1.01'");
	expect_load_error("fetch:\n  retries: 101\n",
			  "t.yaml:2:12: fetch.retries: must be at most 100, got '101'");
	expect_load_error(
		"fetch:\n  chunk_size: 2G\n",
		"t.yaml:2:15: fetch.chunk_size: must be at least 64K and at most 1G, got '2G'");
	expect_load_error(
		"peers:\n  heartbeat: 1ms\n",
		"t.yaml:2:14: peers.heartbeat: must be at least 10ms and at most 1h, got '1ms'");
	expect_load_error("socket_mode: 4755\n",
			  "t.yaml:1:14: socket_mode: must be at most 0777, got '4755'");
	expect_load_error("mounts:\n  - path: /a\n    consistency: {ttl: 0s}\n",
			  "t.yaml:3:24: mounts[0].ttl: must be at least 1ms, got '0s'");
}

static void test_error_enum(void **state)
{
	(void)state;
	expect_load_error("cache:\n  durability: sync\n",
			  "t.yaml:2:15: cache.durability: expected one of none, fsync; got 'sync'");
	expect_load_error("policy:\n  eviction: fifo\n",
			  "t.yaml:2:13: policy.eviction: expected one of epoch, lru; got 'fifo'");
	expect_load_error(
		"log:\n  level: INFO\n",
		"t.yaml:2:10: log.level: expected one of err, warning, info, debug; got 'INFO'");
	expect_load_error(
		"mounts:\n  - path: /a\n    backend: nfs\n",
		"t.yaml:3:14: mounts[0].backend: expected one of posix, http, s3; got 'nfs'");
	expect_load_error(
		"mounts:\n  - path: /a\n    consistency: sometimes\n",
		"t.yaml:3:18: mounts[0].consistency: expected one of strict, ttl, immutable or {ttl: DURATION}; got 'sometimes'");
	expect_load_error("policy:\n  eviction: ~\n",
			  "t.yaml:2:13: policy.eviction: expected a value, got nothing");
}

static void test_error_syntax(void **state)
{
	(void)state;
	expect_load_error(
		"cache:\n  capacity: 1G\n dir: /x\n",
		"t.yaml:3:2: syntax error: did not find expected key (while parsing a block mapping at 1:1)");
	expect_load_error(
		"cache: {capacity: 1G\n",
		"t.yaml:2:1: syntax error: did not find expected ',' or '}' (while parsing a flow mapping at 1:8)");
	expect_load_error(
		"cache:\n\tdir: /x\n",
		"t.yaml:2:1: syntax error: found character that cannot start any token (while scanning for the next token at 2:1)");
	expect_load_error("socket: *nope\n", "t.yaml:1:9: syntax error: found undefined alias");
	expect_load_error("socket: /a\xff\n",
			  "t.yaml:1:11: syntax error: invalid leading UTF-8 octet");
	expect_load_error(
		"a: b: c\n",
		"t.yaml:1:5: syntax error: mapping values are not allowed in this context");
	expect_load_error(
		"cache: {}\n---\nsocket: /x\n",
		"t.yaml:3:1: (top level): a second YAML document; the file must hold one");
	expect_load_error(
		"cache: {}\n---\n[\n",
		"t.yaml:4:1: syntax error: did not find expected node content (while parsing a flow node at 4:1)");
}

static void test_error_duplicate(void **state)
{
	(void)state;
	expect_load_error("cache:\n  capacity: 1G\n  capacity: 2G\n",
			  "t.yaml:3:3: cache.capacity: duplicate key (first at line 2)");
	expect_load_error("cache: {dir: /a}\nsocket: /s\ncache: {dir: /b}\n",
			  "t.yaml:3:1: cache: duplicate key (first at line 1)");
	expect_load_error("mounts:\n  - path: /a\n    path: /b\n",
			  "t.yaml:3:5: mounts[0].path: duplicate key (first at line 2)");
	/* the two ways to give a mount's ttl, both at once */
	expect_load_error("mounts:\n  - path: /a\n    ttl: 5s\n    consistency: {ttl: 1s}\n",
			  "t.yaml:4:24: mounts[0].ttl: given twice (first at line 3)");
}

static void test_error_missing(void **state)
{
	(void)state;
	expect_load_error("mounts:\n  - backend: posix\n", "t.yaml:2:5: mounts[0].path: required");
	expect_load_error("mounts:\n  - path: /a\n  - path: /b\n    backend: http\n",
			  "t.yaml:3:5: mounts[1].url: required for backend http");
	expect_load_error("mounts:\n  - path: /a\n    backend: s3\n    url: https://h/b/\n",
			  "t.yaml:2:5: mounts[0].region: required for backend s3");
	expect_load_error("mounts:\n  - {path: /a, backend: s3, region: r}\n",
			  "t.yaml:2:5: mounts[0].url: required for backend s3");
	expect_load_error("mounts:\n  - path: ~\n",
			  "t.yaml:2:11: mounts[0].path: expected an absolute path, got nothing");
	expect_load_error("peers:\n  nodes:\n    - {name: a}\n",
			  "t.yaml:3:7: peers.nodes[0].address: required");
	expect_load_error("peers:\n  nodes:\n    - address: 'h:1'\n",
			  "t.yaml:3:7: peers.nodes[0].name: required");
	expect_load_error("mounts:\n  - path: /a\n    ttl: 5s\n",
			  "t.yaml:3:10: mounts[0].ttl: applies only with consistency: ttl");
	expect_load_error("mounts:\n  - path: /a\n    consistency: {}\n",
			  "t.yaml:3:18: mounts[0].consistency: expected {ttl: DURATION}, got {}");
}

static void test_error_paths(void **state)
{
	(void)state;
	expect_load_error("cache:\n  dir: var/cache\n",
			  "t.yaml:2:8: cache.dir: expected an absolute path, got 'var/cache'");
	expect_load_error("mounts:\n  - path: data\n",
			  "t.yaml:2:11: mounts[0].path: expected an absolute path, got 'data'");
	expect_load_error(
		"mounts:\n  - path: /a/../etc\n",
		"t.yaml:2:11: mounts[0].path: '..' is not allowed in a path, got '/a/../etc'");
	expect_load_error("log:\n  file: ./granary.log\n",
			  "t.yaml:2:9: log.file: expected an absolute path, got './granary.log'");
	expect_load_error(
		"peers:\n  secret_file: rack.secret\n",
		"t.yaml:2:16: peers.secret_file: expected an absolute path, got 'rack.secret'");
}

static void test_error_too_many(void **state)
{
	size_t cap = 128 * (CONFIG_MAX_MOUNTS + 1) + 64, n;
	char *yaml = malloc(cap), expected[CONFIG_ERR_MAX];

	(void)state;
	assert_non_null(yaml);
	n = (size_t)snprintf(yaml, cap, "mounts:\n");
	for (int i = 0; i <= CONFIG_MAX_MOUNTS; i++)
		n += (size_t)snprintf(yaml + n, cap - n, "  - path: /m%d\n", i);
	snprintf(expected, sizeof(expected),
		 "t.yaml:%d:5: mounts[%d]: more than %d items in mounts", CONFIG_MAX_MOUNTS + 2,
		 CONFIG_MAX_MOUNTS, CONFIG_MAX_MOUNTS);
	expect_load_error(yaml, expected);

	n = (size_t)snprintf(yaml, cap, "mounts:\n  - path: /a\n    allow_uids: [");
	for (int i = 0; i <= CONFIG_MAX_IDS; i++)
		n += (size_t)snprintf(yaml + n, cap - n, "%s%d", i ? "," : "", i);
	snprintf(yaml + n, cap - n, "]\n");
	snprintf(expected, sizeof(expected), "t.yaml:3:%d: mounts[0].allow_uids: more than %d ids",
		 18 + 2 * 10 + 3 * (CONFIG_MAX_IDS - 10), CONFIG_MAX_IDS);
	expect_load_error(yaml, expected);
	free(yaml);
}

static void test_load_file(void **state)
{
	char path[] = "/tmp/test_config_XXXXXX", err[CONFIG_ERR_MAX], expected[CONFIG_ERR_MAX];
	struct config c;
	FILE *f;
	int fd;

	(void)state;
	assert_int_equal(config_load(&c, "/nonexistent/granary.yaml", err, sizeof(err)), -ENOENT);
	assert_string_equal(err,
			    "/nonexistent/granary.yaml: cannot open: No such file or directory");
	config_free(&c);
	assert_int_equal(config_load(&c, "/tmp", err, sizeof(err)), -EINVAL);
	config_free(&c);

	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	fputs("cache:\n  dir: /fast/cache\n  capacity: 2T\n\nfetch:\n  timeout: never\n", f);
	fclose(f);
	assert_int_equal(config_load(&c, path, err, sizeof(err)), -EINVAL);
	snprintf(expected, sizeof(expected),
		 "%s:6:12: fetch.timeout: expected a duration like 30s, got 'never'", path);
	assert_string_equal(err, expected);
	/* what was read before the error is there, and config_free takes it */
	assert_string_equal(c.cache.dir, "/fast/cache");
	config_free(&c);
	unlink(path);
}

/* ---- validation ------------------------------------------------------- */

static void test_validate(void **state)
{
	(void)state;
	expect_invalid(
		"cache:\n  high_watermark: 0.9\n  low_watermark: 0.95\n",
		"t.yaml:3:18: cache.low_watermark: 0.95 is above cache.high_watermark (0.9)");
	expect_valid("cache:\n  high_watermark: 0.9\n  low_watermark: 0.9\n");
	/* fg_reserved was not in the file: the message points at max_parallel */
	expect_invalid(
		"fetch:\n  max_parallel: 16\n",
		"t.yaml:2:17: fetch.fg_reserved: must be below fetch.max_parallel (16), got 16");
	expect_valid("fetch:\n  max_parallel: 17\n");
}

static void test_validate_programmatic(void **state)
{
	char err[CONFIG_ERR_MAX];
	struct config c;

	(void)state;
	/* a config built in code has no lines to point at */
	config_init_defaults(&c);
	c.cache.low_watermark = 0.99;
	assert_int_equal(config_validate(&c, err, sizeof(err)), -EINVAL);
	assert_string_equal(
		err, "(defaults): cache.low_watermark: 0.99 is above cache.high_watermark (0.95)");
	c.cache.low_watermark = 0;
	assert_int_equal(config_validate(&c, err, sizeof(err)), -EINVAL);
	assert_string_equal(
		err, "(defaults): cache.low_watermark: must be above 0 and at most 1, got 0.0");
	c.cache.low_watermark = 0.5;
	c.fetch.workers = 0;
	assert_int_equal(config_validate(&c, err, sizeof(err)), -EINVAL);
	assert_string_equal(
		err, "(defaults): fetch.workers: must be at least 1 and at most 1024, got 0");
	c.fetch.workers = 4;
	c.n_mounts = 1;
	c.mounts[0].backend = CONFIG_BACKEND_POSIX;
	assert_int_equal(config_validate(&c, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "(defaults): mounts[0].path: required");
	c.mounts[0].path = strdup("/data/");
	assert_int_equal(config_validate(&c, err, sizeof(err)), -EINVAL);
	assert_string_equal(
		err,
		"(defaults): mounts[0].path: expected an absolute, normalised path other than /, got '/data/'");
	c.mounts[0].path[5] = '\0';
	assert_int_equal(config_validate(&c, err, sizeof(err)), 0);
	/* a ttl matters only with consistency: ttl */
	c.mounts[0].consistency = CONFIG_CONSISTENCY_TTL;
	assert_int_equal(config_validate(&c, err, sizeof(err)), -EINVAL);
	assert_string_equal(
		err, "(defaults): mounts[0].ttl: must be at least 1ms with consistency: ttl");
	c.mounts[0].ttl_ns = NS_PER_S;
	assert_int_equal(config_validate(&c, err, sizeof(err)), 0);
	config_free(&c);
	config_free(&c);
}

static void test_validate_mounts(void **state)
{
	(void)state;
	expect_invalid(
		"mounts:\n  - path: /data\n  - path: /data/imagenet\n",
		"t.yaml:3:11: mounts[1].path: '/data/imagenet' is nested in mounts[0] ('/data')");
	expect_invalid(
		"mounts:\n  - path: /data/imagenet\n  - path: /data\n",
		"t.yaml:3:11: mounts[1].path: '/data' contains mounts[0] ('/data/imagenet')");
	expect_invalid("mounts:\n  - path: /data\n  - path: /data//\n",
		       "t.yaml:3:11: mounts[1].path: '/data' is also mounts[0]");
	expect_invalid(
		"mounts:\n  - path: /\n",
		"t.yaml:2:11: mounts[0].path: expected an absolute, normalised path other than /, got '/'");
	/* siblings sharing a prefix of characters are not nested */
	expect_valid("mounts:\n  - path: /data\n  - path: /database\n  - path: /dat\n");
	expect_invalid("mounts:\n  - path: /a\n    url: http://h/\n",
		       "t.yaml:3:10: mounts[0].url: applies only to backends http and s3");
	expect_invalid(
		"mounts:\n  - path: /a\n    backend: http\n    url: http://h/\n    source: /b\n",
		"t.yaml:5:13: mounts[0].source: applies only to backend posix");
	expect_invalid(
		"mounts:\n  - path: /a\n    backend: http\n    url: http://h/\n    region: r\n",
		"t.yaml:5:13: mounts[0].region: applies only to backend s3");
	expect_invalid("mounts:\n  - path: /a\n    credentials_file: /etc/c\n",
		       "t.yaml:3:23: mounts[0].credentials_file: applies only to backend s3");
	expect_invalid("mounts:\n  - path: /a\n    backend: s3\n    region: r\n    url: http://h/\n"
		       "    large: direct\n",
		       "t.yaml:6:12: mounts[0].large: direct applies only to backend posix");
	expect_valid("mounts:\n  - path: /a\n    large: direct\n");
}

static void test_validate_peers(void **state)
{
	char host[256], yaml[512], expected[CONFIG_ERR_MAX];
	struct config c;

	(void)state;
	expect_valid(
		"peers:\n  self: a\n  secret_file: /s\n  nodes:\n    - {name: a, address: 'h:1'}\n");
	expect_invalid(
		"peers:\n  self: c\n  secret_file: /s\n  nodes:\n    - {name: a, address: 'h:1'}\n"
		"    - {name: b, address: 'h:2'}\n",
		"t.yaml:2:9: peers.self: 'c' is not among peers.nodes");
	expect_invalid(
		"peers:\n  self: a\n  secret_file: /s\n  nodes:\n    - {name: a, address: 'h:1'}\n"
		"    - {name: a, address: 'h:2'}\n",
		"t.yaml:6:14: peers.nodes[1].name: 'a' is also peers.nodes[0]");
	expect_invalid(
		"peers:\n  self: a\n  nodes:\n    - {name: a, address: 'h:1'}\n",
		"t.yaml:4:5: peers.secret_file: required with peers.nodes: peers authenticate");
	/* self is optional when the host name is among the nodes */
	assert_int_equal(gethostname(host, sizeof(host)), 0);
	host[sizeof(host) - 1] = '\0';
	host[strcspn(host, ".")] = '\0';
	snprintf(yaml, sizeof(yaml),
		 "peers:\n  secret_file: /s\n  nodes:\n    - {name: '%s', address: 'h:1'}\n", host);
	load_ok(&c, yaml);
	assert_string_equal(c.peers.self, host);
	assert_int_equal(config_validate(&c, expected, sizeof(expected)), 0);
	config_free(&c);
	snprintf(yaml, sizeof(yaml),
		 "peers:\n  secret_file: /s\n  nodes:\n    - {name: 'x%s', address: 'h:1'}\n",
		 host);
	snprintf(expected, sizeof(expected),
		 "t.yaml:4:5: peers.self: '%s' is not among peers.nodes", host);
	expect_invalid(yaml, expected);
	/* no nodes: a single node, self does not matter */
	expect_valid("peers:\n  self: lonely\n");
}

/* ---- the example and the reference ------------------------------------ */

static bool key_set_somewhere(const struct config *c, const struct config_key *k)
{
	char key[128];
	int line, col;
	size_t n = 1;

	if (!strncmp(k->name, "mounts[].", 9))
		n = c->n_mounts;
	else if (!strncmp(k->name, "peers.nodes[].", 14))
		n = c->peers.n_nodes;
	for (size_t i = 0; i < n; i++) {
		const char *b = strstr(k->name, "[]");

		if (b)
			snprintf(key, sizeof(key), "%.*s[%zu]%s", (int)(b - k->name), k->name, i,
				 b + 2);
		else
			snprintf(key, sizeof(key), "%s", k->name);
		if (!config_key_location(c, key, &line, &col))
			return true;
	}
	return false;
}

static void test_example_file(void **state)
{
	char *path = src_file("config/granary.yaml"), err[CONFIG_ERR_MAX];
	const struct config_mount *m;
	struct config c;
	int line, col;

	(void)state;
	assert_non_null(path);
	if (config_load(&c, path, err, sizeof(err)))
		fail_msg("%s", err);
	if (config_validate(&c, err, sizeof(err)))
		fail_msg("%s", err);
	/* it shows every key */
	for (size_t i = 0; i < CONFIG_N_KEYS; i++)
		if (!key_set_somewhere(&c, &config_keys[i]))
			fail_msg("config/granary.yaml does not show %s", config_keys[i].name);
	assert_int_equal(c.n_mounts, 4);
	m = config_find_mount(&c, "/granary/imagenet/train/n01/x.JPEG");
	assert_non_null(m);
	assert_int_equal(m->backend, CONFIG_BACKEND_S3);
	assert_string_equal(m->url, "https://s3.us-east-1.amazonaws.com/my-bucket/imagenet/");
	assert_int_equal(config_key_location(&c, "mounts[1]", &line, &col), 0);
	assert_int_equal(m->line, line);
	assert_int_equal(c.mounts[2].consistency, CONFIG_CONSISTENCY_TTL);
	assert_int_equal(c.mounts[2].ttl_ns, 300 * NS_PER_S);
	assert_string_equal(c.mounts[2].url, "http://nas-gateway.internal/coco/");
	assert_int_equal(config_key_location(&c, "cache.nope", &line, &col), -ENOENT);
	config_free(&c);
	free(path);
}

static void test_docs_match_reference(void **state)
{
	char *path = src_file("docs/configuration.md"), *docs, *ref = NULL;
	size_t len = 0;
	FILE *f;

	(void)state;
	assert_non_null(path);
	docs = read_all(path);
	if (!docs)
		fail_msg("cannot read %s", path);
	f = open_memstream(&ref, &len);
	assert_non_null(f);
	config_print_reference(f);
	fclose(f);
	assert_true(len > 1000);
	if (!strstr(docs, ref)) {
		/* leave the fresh reference where a person can paste it from */
		f = fopen("config_reference.md", "w");
		if (f) {
			fputs(ref, f);
			fclose(f);
		}
		fail_msg("%s does not hold config_print_reference()'s output; "
			 "the current one is in ./config_reference.md",
			 path);
	}
	free(ref);
	free(docs);
	free(path);
}

/* The ```yaml examples of docs/configuration.md load and validate. */
static void test_docs_examples(void **state)
{
	char *path = src_file("docs/configuration.md"), *docs, *p, *end, err[CONFIG_ERR_MAX];
	struct config c;
	int n = 0;

	(void)state;
	assert_non_null(path);
	docs = read_all(path);
	if (!docs)
		fail_msg("cannot read %s", path);
	for (p = docs; (p = strstr(p, "```yaml\n")); p = end + 4) {
		p += 8;
		end = strstr(p, "```\n");
		assert_non_null(end);
		*end = '\0';
		if (config_load_string(&c, "example", p, err, sizeof(err)) ||
		    config_validate(&c, err, sizeof(err)))
			fail_msg("docs example %d: %s\n%s", n, err, p);
		config_free(&c);
		n++;
	}
	assert_true(n >= 2);
	free(docs);
	free(path);
}

/* ---- printing --------------------------------------------------------- */

/* Compare the keys of one scope of two configs, as the table describes them. */
static void compare_scope(const struct config_key *list, const void *a, const void *b)
{
	size_t plen = list ? strlen(list->name) : 0;

	for (size_t i = 0; i < CONFIG_N_KEYS; i++) {
		const struct config_key *k = &config_keys[i];
		const void *fa = (const char *)a + k->offset, *fb = (const char *)b + k->offset;
		bool in = list ? !strncmp(k->name, list->name, plen) &&
					  !strncmp(k->name + plen, "[].", 3)
			       : !strchr(k->name, '[');

		if (!in)
			continue;
		switch (k->type) {
		case CONFIG_T_STRING:
		case CONFIG_T_PATH:
		case CONFIG_T_URL:
		case CONFIG_T_ADDRESS:
		case CONFIG_T_WORD: {
			const char *sa = *(char *const *)fa, *sb = *(char *const *)fb;

			if ((!sa != !sb) || (sa && strcmp(sa, sb)))
				fail_msg("%s: '%s' != '%s'", k->name, sa ? sa : "(null)",
					 sb ? sb : "(null)");
			break;
		}
		case CONFIG_T_SIZE:
		case CONFIG_T_RATE:
		case CONFIG_T_DURATION:
			if (*(const uint64_t *)fa != *(const uint64_t *)fb)
				fail_msg("%s differs", k->name);
			break;
		case CONFIG_T_UINT:
		case CONFIG_T_MODE:
			if (*(const uint32_t *)fa != *(const uint32_t *)fb)
				fail_msg("%s differs", k->name);
			break;
		case CONFIG_T_RATIO:
			if (*(const double *)fa != *(const double *)fb)
				fail_msg("%s differs", k->name);
			break;
		case CONFIG_T_BOOL:
			if (*(const bool *)fa != *(const bool *)fb)
				fail_msg("%s differs", k->name);
			break;
		case CONFIG_T_ENUM:
		case CONFIG_T_CONSISTENCY:
			if (*(const int *)fa != *(const int *)fb)
				fail_msg("%s differs", k->name);
			break;
		case CONFIG_T_IDS: {
			size_t na = *(const size_t *)((const char *)a + k->count_offset);
			size_t nb = *(const size_t *)((const char *)b + k->count_offset);

			if (na != nb || memcmp(fa, fb, na * sizeof(uint32_t)))
				fail_msg("%s differs", k->name);
			break;
		}
		case CONFIG_T_PEERS:
		case CONFIG_T_MOUNTS: {
			size_t na = *(const size_t *)((const char *)a + k->count_offset);
			size_t nb = *(const size_t *)((const char *)b + k->count_offset);
			size_t size = k->type == CONFIG_T_MOUNTS ? sizeof(struct config_mount)
								 : sizeof(struct config_peer);

			if (na != nb)
				fail_msg("%s: %zu items != %zu", k->name, na, nb);
			for (size_t j = 0; j < na; j++)
				compare_scope(k, (const char *)fa + j * size,
					      (const char *)fb + j * size);
			break;
		}
		default:
			fail_msg("%s: type %d not compared", k->name, (int)k->type);
		}
	}
}

static char *print_to_string(const struct config *c)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	assert_non_null(f);
	config_print(c, f);
	fclose(f);
	return text;
}

static void roundtrip(const char *yaml)
{
	char *text, *again, err[CONFIG_ERR_MAX];
	struct config a, b;

	load_ok(&a, yaml);
	text = print_to_string(&a);
	if (config_load_string(&b, "printed", text, err, sizeof(err)))
		fail_msg("the printed settings do not load: %s\n%s", err, text);
	compare_scope(NULL, &a, &b);
	again = print_to_string(&b);
	assert_string_equal(strchr(text, '\n'), strchr(again, '\n'));
	free(again);
	free(text);
	config_free(&a);
	config_free(&b);
}

static void test_print_roundtrip(void **state)
{
	char *path = src_file("config/granary.yaml"), *example;
	struct config c;
	char *text;

	(void)state;
	roundtrip("");
	roundtrip(every_type_yaml);
	example = read_all(path);
	assert_non_null(example);
	roundtrip(example);
	/* strings that need quotes, and the odd values */
	roundtrip("socket_group: \"~\"\n"
		  "peers:\n  provider: \"a: b # c\"\n  self: '-x'\n"
		  "mounts:\n  - path: \"/with space/and#hash\"\n"
		  "    dataset: \"quote\\\" back\\\\slash\\ttab \\u00e9\"\n"
		  "  - path: /null\n    dataset: \"null\"\n"
		  "  - path: /empty\n    dataset: \"[x]\"\n"
		  "fetch: {bg_rate: 1536K, timeout: 1500ms, chunk_size: 65537}\n"
		  "cache: {high_watermark: 0.1, low_watermark: 0.1, commit_interval: 1001us}\n");

	/* the printed form, for a reader: sections, lists, units */
	load_ok(&c, "mounts:\n  - path: /a\n    consistency: {ttl: 90s}\n"
		    "peers: {self: n, secret_file: /s, nodes: [{name: n, address: 'h:1'}]}\n");
	text = print_to_string(&c);
	assert_non_null(strstr(text, "\ncache:\n  dir: /var/cache/granary\n  capacity: 100G\n"));
	assert_non_null(strstr(text, "\nmounts:\n  - path: /a\n    backend: posix\n"));
	assert_non_null(strstr(text, "    consistency: { ttl: 90s }\n"));
	assert_non_null(strstr(text, "  nodes:\n    - name: n\n      address: h:1\n"));
	assert_non_null(strstr(text, "\nsocket_mode: 0660\n"));
	assert_null(strstr(text, "url:"));
	free(text);
	config_free(&c);
	free(example);
	free(path);
}

/* ---- lookups and lifetime --------------------------------------------- */

static void test_find_mount(void **state)
{
	struct config c;

	(void)state;
	load_ok(&c, "mounts:\n  - path: /a\n  - path: /a/b\n  - path: /data/sets\n");
	assert_ptr_equal(config_find_mount(&c, "/a/b/c"), &c.mounts[1]);
	assert_ptr_equal(config_find_mount(&c, "/a/b"), &c.mounts[1]);
	assert_ptr_equal(config_find_mount(&c, "/a/bc"), &c.mounts[0]);
	assert_ptr_equal(config_find_mount(&c, "/a/bc/d"), &c.mounts[0]);
	assert_ptr_equal(config_find_mount(&c, "/a"), &c.mounts[0]);
	assert_ptr_equal(config_find_mount(&c, "/a/"), &c.mounts[0]);
	assert_ptr_equal(config_find_mount(&c, "/data/sets/x/y.jpg"), &c.mounts[2]);
	assert_null(config_find_mount(&c, "/ab"));
	assert_null(config_find_mount(&c, "/data/setsx"));
	assert_null(config_find_mount(&c, "/data"));
	assert_null(config_find_mount(&c, "/"));
	assert_null(config_find_mount(&c, ""));
	assert_null(config_find_mount(&c, NULL));
	config_free(&c);
	config_init_defaults(&c);
	assert_null(config_find_mount(&c, "/a"));
	config_free(&c);
}

static void test_free_is_safe(void **state)
{
	char err[CONFIG_ERR_MAX];
	struct config c;

	(void)state;
	memset(&c, 0, sizeof(c));
	config_free(&c);
	config_free(NULL);
	config_init_defaults(&c);
	config_free(&c);
	config_free(&c);
	/* init before load is allowed and leaks nothing */
	config_init_defaults(&c);
	load_ok(&c, "socket: /s\n");
	config_free(&c);
	/* a load that stops inside a mount and inside a node */
	assert_int_equal(load(&c,
			      "log: {file: /l}\nmounts:\n  - path: /a\n    dataset: d\n"
			      "    source: /s\n    backend: nfs\n",
			      err),
			 -EINVAL);
	assert_int_equal(c.n_mounts, 1);
	config_free(&c);
	config_free(&c);
	assert_int_equal(load(&c, "peers:\n  nodes:\n    - {name: a, address: b}\n", err), -EINVAL);
	config_free(&c);
	/* one node used twice through an alias gives two mounts of their own */
	load_ok(&c, "mounts:\n  - &m {path: /a, dataset: x}\n  - *m\n");
	assert_int_equal(c.n_mounts, 2);
	assert_ptr_not_equal(c.mounts[0].dataset, c.mounts[1].dataset);
	config_free(&c);
	/* a failed load with no room for the message */
	assert_int_equal(config_load_string(&c, "t", "cache: 1\n", NULL, 0), -EINVAL);
	config_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_table_is_consistent),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_every_type),
		cmocka_unit_test(test_scalar_spellings),
		cmocka_unit_test(test_error_unknown_key),
		cmocka_unit_test(test_error_wrong_type),
		cmocka_unit_test(test_error_values),
		cmocka_unit_test(test_error_out_of_range),
		cmocka_unit_test(test_error_enum),
		cmocka_unit_test(test_error_syntax),
		cmocka_unit_test(test_error_duplicate),
		cmocka_unit_test(test_error_missing),
		cmocka_unit_test(test_error_paths),
		cmocka_unit_test(test_error_too_many),
		cmocka_unit_test(test_load_file),
		cmocka_unit_test(test_validate),
		cmocka_unit_test(test_validate_programmatic),
		cmocka_unit_test(test_validate_mounts),
		cmocka_unit_test(test_validate_peers),
		cmocka_unit_test(test_example_file),
		cmocka_unit_test(test_docs_match_reference),
		cmocka_unit_test(test_docs_examples),
		cmocka_unit_test(test_print_roundtrip),
		cmocka_unit_test(test_find_mount),
		cmocka_unit_test(test_free_is_safe),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
