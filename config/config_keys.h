/*
 * config_keys.h - the one table of granaryd's settings.
 *
 * Owns: for every key its dotted name, type, default, bounds, place in
 * struct config and one line of help. config.c parses, fills defaults,
 * checks, prints the effective settings and writes the reference
 * (docs/configuration.md) from this table alone, so adding a setting here is
 * all it takes. Keys of list items are named "mounts[].path": their offsets
 * are into the item's struct. Defaults and bounds are written as the user
 * would write them and go through the same parsers as the file.
 * Included by config.c and its unit test only.
 */
#ifndef GRANARY_CONFIG_KEYS_H
#define GRANARY_CONFIG_KEYS_H

#include <stddef.h>

#include "config.h"

enum config_type {
	CONFIG_T_STRING,      /* char *, any text */
	CONFIG_T_PATH,	      /* char *, absolute, stored normalised */
	CONFIG_T_URL,	      /* char *, http(s)://, stored ending in '/' */
	CONFIG_T_ADDRESS,     /* char *, host:port */
	CONFIG_T_SIZE,	      /* uint64_t bytes */
	CONFIG_T_RATE,	      /* uint64_t bytes per second */
	CONFIG_T_DURATION,    /* uint64_t nanoseconds */
	CONFIG_T_RATIO,	      /* double */
	CONFIG_T_UINT,	      /* uint32_t */
	CONFIG_T_MODE,	      /* uint32_t, written in octal */
	CONFIG_T_BOOL,	      /* bool */
	CONFIG_T_ENUM,	      /* an enum, from .choices */
	CONFIG_T_WORD,	      /* char *, one of .choices' names */
	CONFIG_T_IDS,	      /* uint32_t[CONFIG_MAX_IDS], count at .count_offset */
	CONFIG_T_CONSISTENCY, /* enum config_consistency, and ttl_ns */
	CONFIG_T_PEERS,	      /* struct config_peer[], count at .count_offset */
	CONFIG_T_MOUNTS,      /* struct config_mount[], count at .count_offset */
	CONFIG_T_COUNT
};

enum {
	CONFIG_K_OPTIONAL = 1 << 0, /* may be left unset (~): NULL */
	CONFIG_K_REQUIRED = 1 << 1, /* a list item needs it */
	CONFIG_K_MIN_EXCL = 1 << 2, /* the value must be above .min */
	CONFIG_K_PART = 1 << 3,	    /* printed and checked with another key */
};

struct config_choice {
	const char *name;
	int value;
};

struct config_key {
	const char *name; /* dotted; list items as "mounts[].path" */
	enum config_type type;
	unsigned flags;
	const char *def;     /* default as written in YAML, or NULL */
	const char *def_doc; /* what the reference says instead of def */
	const char *min, *max;
	size_t offset;			     /* into struct config, or the list item's struct */
	size_t count_offset;		     /* lists: the size_t that counts the items */
	size_t max_items;		     /* lists: capacity of the array */
	const struct config_choice *choices; /* ends with a NULL name */
	const char *help;
};

static const struct config_choice config_choices_durability[] = {
	{"none", CONFIG_DURABILITY_NONE},
	{"fsync", CONFIG_DURABILITY_FSYNC},
	{NULL, 0},
};

static const struct config_choice config_choices_io[] = {
	{"auto", CONFIG_IO_AUTO},
	{"uring", CONFIG_IO_URING},
	{"threads", CONFIG_IO_THREADS},
	{NULL, 0},
};

static const struct config_choice config_choices_eviction[] = {
	{"epoch", 0},
	{"lru", 1},
	{NULL, 0},
};

static const struct config_choice config_choices_placement[] = {
	{"partition", CONFIG_PLACEMENT_PARTITION},
	{"replicate", CONFIG_PLACEMENT_REPLICATE},
	{NULL, 0},
};

static const struct config_choice config_choices_log_level[] = {
	{"err", CONFIG_LOG_ERR},
	{"warning", CONFIG_LOG_WARNING},
	{"info", CONFIG_LOG_INFO},
	{"debug", CONFIG_LOG_DEBUG},
	{NULL, 0},
};

static const struct config_choice config_choices_backend[] = {
	{"posix", CONFIG_BACKEND_POSIX},
	{"http", CONFIG_BACKEND_HTTP},
	{"s3", CONFIG_BACKEND_S3},
	{NULL, 0},
};

static const struct config_choice config_choices_consistency[] = {
	{"strict", CONFIG_CONSISTENCY_STRICT},
	{"ttl", CONFIG_CONSISTENCY_TTL},
	{"immutable", CONFIG_CONSISTENCY_IMMUTABLE},
	{NULL, 0},
};

static const struct config_choice config_choices_large[] = {
	{"whole", CONFIG_LARGE_WHOLE},
	{"direct", CONFIG_LARGE_DIRECT},
	{NULL, 0},
};

#define CONFIG_TOP(f)  offsetof(struct config, f)
#define CONFIG_MNT(f)  offsetof(struct config_mount, f)
#define CONFIG_PEER(f) offsetof(struct config_peer, f)

/*
 * In print order. Keys of one section stay together, and the keys of a
 * list's items follow the list's own key.
 */
static const struct config_key config_keys[] = {
	{
		.name = "socket",
		.type = CONFIG_T_PATH,
		.def = "/run/granary/granary.sock",
		.offset = CONFIG_TOP(socket),
		.help = "local socket that trainers, the shim and the CLI connect to",
	},
	{
		.name = "socket_mode",
		.type = CONFIG_T_MODE,
		.def = "0660",
		.max = "0777",
		.offset = CONFIG_TOP(socket_mode),
		.help = "permissions of the socket, in octal",
	},
	{
		.name = "socket_group",
		.type = CONFIG_T_STRING,
		.flags = CONFIG_K_OPTIONAL,
		.def = "granary",
		.def_doc = "`granary` when that group exists, else none",
		.offset = CONFIG_TOP(socket_group),
		.help = "group that owns the socket; ~ keeps the daemon's own group",
	},
	{
		.name = "cache.dir",
		.type = CONFIG_T_PATH,
		.def = "/var/cache/granary",
		.offset = CONFIG_TOP(cache.dir),
		.help = "cache directory, on local NVMe: objects, staging files, catalog",
	},
	{
		.name = "cache.capacity",
		.type = CONFIG_T_SIZE,
		.def = "100G",
		.min = "64K",
		.offset = CONFIG_TOP(cache.capacity),
		.help = "most bytes the cached objects may take",
	},
	{
		.name = "cache.high_watermark",
		.type = CONFIG_T_RATIO,
		.flags = CONFIG_K_MIN_EXCL,
		.def = "0.95",
		.min = "0",
		.max = "1",
		.offset = CONFIG_TOP(cache.high_watermark),
		.help = "share of the capacity in use at which eviction starts",
	},
	{
		.name = "cache.low_watermark",
		.type = CONFIG_T_RATIO,
		.flags = CONFIG_K_MIN_EXCL,
		.def = "0.90",
		.min = "0",
		.max = "1",
		.offset = CONFIG_TOP(cache.low_watermark),
		.help = "share at which eviction stops; at most high_watermark",
	},
	{
		.name = "cache.durability",
		.type = CONFIG_T_ENUM,
		.def = "none",
		.offset = CONFIG_TOP(cache.durability),
		.choices = config_choices_durability,
		.help = "fsync each object before it enters the catalog, or not",
	},
	{
		.name = "cache.io",
		.type = CONFIG_T_ENUM,
		.def = "auto",
		.offset = CONFIG_TOP(cache.io),
		.choices = config_choices_io,
		.help = "disk I/O: io_uring, or threads when it cannot be set up (auto)",
	},
	{
		.name = "cache.uring_depth",
		.type = CONFIG_T_UINT,
		.def = "256",
		.min = "1",
		.max = "32768",
		.offset = CONFIG_TOP(cache.uring_depth),
		.help = "io_uring submission queue entries",
	},
	{
		.name = "cache.commit_interval",
		.type = CONFIG_T_DURATION,
		.def = "200ms",
		.min = "1ms",
		.max = "1m",
		.offset = CONFIG_TOP(cache.commit_interval_ns),
		.help = "period of the catalog's batched transaction",
	},
	{
		.name = "policy.eviction",
		.type = CONFIG_T_WORD,
		.def = "epoch",
		.offset = CONFIG_TOP(policy.eviction),
		.choices = config_choices_eviction,
		.help = "eviction policy: epoch-aware, or plain LRU",
	},
	{
		.name = "policy.prefetch_window",
		.type = CONFIG_T_UINT,
		.def = "64",
		.max = "1000000",
		.offset = CONFIG_TOP(policy.prefetch_window),
		.help = "objects fetched ahead of a trainer's position in a hinted order",
	},
	{
		.name = "fetch.workers",
		.type = CONFIG_T_UINT,
		.def = "8",
		.min = "1",
		.max = "1024",
		.offset = CONFIG_TOP(fetch.workers),
		.help = "threads for blocking work (catalog commits, NAS metadata calls)",
	},
	{
		.name = "fetch.max_parallel",
		.type = CONFIG_T_UINT,
		.def = "64",
		.min = "1",
		.max = "65536",
		.offset = CONFIG_TOP(fetch.max_parallel),
		.help = "backend fetches in flight, over all mounts",
	},
	{
		.name = "fetch.fg_reserved",
		.type = CONFIG_T_UINT,
		.def = "16",
		.max = "65536",
		.offset = CONFIG_TOP(fetch.fg_reserved),
		.help = "of those, slots kept for trainers' misses; below max_parallel",
	},
	{
		.name = "fetch.bg_rate",
		.type = CONFIG_T_RATE,
		.def = "0",
		.offset = CONFIG_TOP(fetch.bg_rate),
		.help = "bandwidth of background fetches (warm, prefetch); 0 = unlimited",
	},
	{
		.name = "fetch.timeout",
		.type = CONFIG_T_DURATION,
		.def = "30s",
		.min = "1ms",
		.max = "1d",
		.offset = CONFIG_TOP(fetch.timeout_ns),
		.help = "hard limit on one backend request",
	},
	{
		.name = "fetch.retries",
		.type = CONFIG_T_UINT,
		.def = "4",
		.max = "100",
		.offset = CONFIG_TOP(fetch.retries),
		.help = "retries after a 5xx or a timeout, with jittered backoff",
	},
	{
		.name = "fetch.chunk_size",
		.type = CONFIG_T_SIZE,
		.def = "8M",
		.min = "64K",
		.max = "1G",
		.offset = CONFIG_TOP(fetch.chunk_size),
		.help = "size of one ranged GET: every cold fetch's first range and each part of a large object",
	},
	{
		.name = "fetch.chunk_parallel",
		.type = CONFIG_T_UINT,
		.def = "8",
		.min = "1",
		.max = "256",
		.offset = CONFIG_TOP(fetch.chunk_parallel),
		.help = "ranged GETs in flight for one object",
	},
	{
		.name = "fetch.large_threshold",
		.type = CONFIG_T_SIZE,
		.def = "64M",
		.offset = CONFIG_TOP(fetch.large_threshold),
		.help = "objects at least this big are large: fetched in chunks, see mounts[].large",
	},
	{
		.name = "fetch.connections",
		.type = CONFIG_T_UINT,
		.def = "16",
		.min = "1",
		.max = "1024",
		.offset = CONFIG_TOP(fetch.connections),
		.help = "connections kept open to one backend host",
	},
	{
		.name = "mounts",
		.type = CONFIG_T_MOUNTS,
		.def_doc = "none",
		.offset = CONFIG_TOP(mounts),
		.count_offset = CONFIG_TOP(n_mounts),
		.max_items = CONFIG_MAX_MOUNTS,
		.help = "the path prefixes granary serves, one item per backend location",
	},
	{
		.name = "mounts[].path",
		.type = CONFIG_T_PATH,
		.flags = CONFIG_K_REQUIRED,
		.def_doc = "required",
		.offset = CONFIG_MNT(path),
		.help = "prefix trainers open files under; not nested in another mount",
	},
	{
		.name = "mounts[].backend",
		.type = CONFIG_T_ENUM,
		.def = "posix",
		.offset = CONFIG_MNT(backend),
		.choices = config_choices_backend,
		.help = "where the data lives: a mounted path, an HTTP server, an S3 bucket",
	},
	{
		.name = "mounts[].source",
		.type = CONFIG_T_PATH,
		.flags = CONFIG_K_OPTIONAL,
		.def_doc = "the mount's path",
		.offset = CONFIG_MNT(source),
		.help = "posix: directory read from",
	},
	{
		.name = "mounts[].url",
		.type = CONFIG_T_URL,
		.flags = CONFIG_K_OPTIONAL,
		.def_doc = "required for `http`, `s3`",
		.offset = CONFIG_MNT(url),
		.help = "http, s3: base URL; the path under the mount is appended",
	},
	{
		.name = "mounts[].region",
		.type = CONFIG_T_STRING,
		.flags = CONFIG_K_OPTIONAL,
		.def_doc = "required for `s3`",
		.offset = CONFIG_MNT(region),
		.help = "s3: region used in request signatures",
	},
	{
		.name = "mounts[].credentials_file",
		.type = CONFIG_T_PATH,
		.flags = CONFIG_K_OPTIONAL,
		.def_doc = "the environment",
		.offset = CONFIG_MNT(credentials_file),
		.help = "s3: file of mode 0600 holding the access key and secret",
	},
	{
		.name = "mounts[].path_style",
		.type = CONFIG_T_BOOL,
		.def = "true",
		.offset = CONFIG_MNT(path_style),
		.help = "s3: bucket in the URL path rather than in the host name",
	},
	{
		.name = "mounts[].dataset",
		.type = CONFIG_T_STRING,
		.flags = CONFIG_K_OPTIONAL,
		.def_doc = "the mount's path",
		.offset = CONFIG_MNT(dataset),
		.help = "dataset name under which epochs are counted",
	},
	{
		.name = "mounts[].consistency",
		.type = CONFIG_T_CONSISTENCY,
		.def = "strict",
		.offset = CONFIG_MNT(consistency),
		.choices = config_choices_consistency,
		.help = "when a cached object is checked against the backend; {ttl: 60s} also sets ttl",
	},
	{
		.name = "mounts[].ttl",
		.type = CONFIG_T_DURATION,
		.flags = CONFIG_K_PART,
		.def = "60s",
		.min = "1ms",
		.offset = CONFIG_MNT(ttl_ns),
		.help = "with consistency: ttl, how long a checked object is trusted",
	},
	{
		.name = "mounts[].placement",
		.type = CONFIG_T_ENUM,
		.def = "partition",
		.def_doc = "`peers.placement`",
		.offset = CONFIG_MNT(placement),
		.choices = config_choices_placement,
		.help = "objects fetched by a peer: read from it, or also kept locally",
	},
	{
		.name = "mounts[].large",
		.type = CONFIG_T_ENUM,
		.def = "whole",
		.offset = CONFIG_MNT(large),
		.choices = config_choices_large,
		.help = "large objects not cached yet: fetched whole first, or (posix) read from the source meanwhile",
	},
	{
		.name = "mounts[].allow_uids",
		.type = CONFIG_T_IDS,
		.def_doc = "none",
		.offset = CONFIG_MNT(allow_uids),
		.count_offset = CONFIG_MNT(n_allow_uids),
		.max_items = CONFIG_MAX_IDS,
		.help = "http, s3: user ids that may read; with allow_gids empty, anyone who can reach the socket",
	},
	{
		.name = "mounts[].allow_gids",
		.type = CONFIG_T_IDS,
		.def_doc = "none",
		.offset = CONFIG_MNT(allow_gids),
		.count_offset = CONFIG_MNT(n_allow_gids),
		.max_items = CONFIG_MAX_IDS,
		.help = "http, s3: group ids that may read",
	},
	{
		.name = "mounts[].allow_unsafe_path",
		.type = CONFIG_T_BOOL,
		.def = "false",
		.offset = CONFIG_MNT(allow_unsafe_path),
		.help = "posix: serve a source whose path a user other than root could change (refused by default)",
	},
	{
		.name = "access.admin_gids",
		.type = CONFIG_T_IDS,
		.def_doc = "none: root only",
		.offset = CONFIG_TOP(access.admin_gids),
		.count_offset = CONFIG_TOP(access.n_admin_gids),
		.max_items = CONFIG_MAX_IDS,
		.help = "group ids whose members may evict, pin, unpin, drop, verify and steer any dataset",
	},
	{
		.name = "access.recheck",
		.type = CONFIG_T_DURATION,
		.def = "60s",
		.min = "1s",
		.max = "1h",
		.offset = CONFIG_TOP(access.recheck_ns),
		.help = "how often the rights on the source of a public copy are checked again",
	},
	{
		.name = "access.steer_idle",
		.type = CONFIG_T_DURATION,
		.def = "10m",
		.min = "1s",
		.offset = CONFIG_TOP(access.steer_idle_ns),
		.help = "a dataset's epoch and order belong to the last user who set them until left alone this long",
	},
	{
		.name = "limits.connections",
		.type = CONFIG_T_UINT,
		.def = "4096",
		.min = "1",
		.max = "1000000",
		.offset = CONFIG_TOP(limits.connections),
		.help = "client connections open at once, all users",
	},
	{
		.name = "limits.connections_per_uid",
		.type = CONFIG_T_UINT,
		.def = "512",
		.min = "1",
		.max = "1000000",
		.offset = CONFIG_TOP(limits.connections_per_uid),
		.help = "client connections open at once by one user (root: no limit)",
	},
	{
		.name = "limits.requests_per_connection",
		.type = CONFIG_T_UINT,
		.def = "256",
		.min = "1",
		.max = "65536",
		.offset = CONFIG_TOP(limits.requests_per_connection),
		.help = "requests of one connection in flight; reading it pauses at this many",
	},
	{
		.name = "limits.requests_per_uid",
		.type = CONFIG_T_UINT,
		.def = "256",
		.min = "1",
		.max = "1000000",
		.offset = CONFIG_TOP(limits.requests_per_uid),
		.help = "requests of one user in flight over all its connections (root: no limit)",
	},
	{
		.name = "limits.reply_queue",
		.type = CONFIG_T_UINT,
		.def = "64",
		.min = "1",
		.max = "65536",
		.offset = CONFIG_TOP(limits.reply_queue),
		.help = "replies a client has not read yet; reading it pauses at this many",
	},
	{
		.name = "limits.idle_timeout",
		.type = CONFIG_T_DURATION,
		.def = "30m",
		.def_doc = "30m; 0 keeps idle connections open",
		.min = "0s",
		.offset = CONFIG_TOP(limits.idle_timeout_ns),
		.help = "a connection silent this long, with nothing in flight, is closed",
	},
	{
		.name = "peers.self",
		.type = CONFIG_T_STRING,
		.flags = CONFIG_K_OPTIONAL,
		.def_doc = "the host name, up to the first dot",
		.offset = CONFIG_TOP(peers.self),
		.help = "this node's name in peers.nodes",
	},
	{
		.name = "peers.provider",
		.type = CONFIG_T_STRING,
		.def = "tcp;ofi_rxm",
		.offset = CONFIG_TOP(peers.provider),
		.help = "libfabric provider: verbs;ofi_rxm with RDMA, tcp;ofi_rxm without, shm on one host",
	},
	{
		.name = "peers.secret_file",
		.type = CONFIG_T_PATH,
		.flags = CONFIG_K_OPTIONAL,
		.def_doc = "required with nodes",
		.offset = CONFIG_TOP(peers.secret_file),
		.help = "rack secret (mode 0600) that peers prove at connect",
	},
	{
		.name = "peers.placement",
		.type = CONFIG_T_ENUM,
		.def = "partition",
		.offset = CONFIG_TOP(peers.placement),
		.choices = config_choices_placement,
		.help = "placement of the mounts that do not set their own",
	},
	{
		.name = "peers.heartbeat",
		.type = CONFIG_T_DURATION,
		.def = "1s",
		.min = "10ms",
		.max = "1h",
		.offset = CONFIG_TOP(peers.heartbeat_ns),
		.help = "period of the heartbeats between peers",
	},
	{
		.name = "peers.miss_limit",
		.type = CONFIG_T_UINT,
		.def = "3",
		.min = "1",
		.max = "1000",
		.offset = CONFIG_TOP(peers.miss_limit),
		.help = "heartbeats missed before a peer counts as absent",
	},
	{
		.name = "peers.nodes",
		.type = CONFIG_T_PEERS,
		.def_doc = "none: no peers",
		.offset = CONFIG_TOP(peers.nodes),
		.count_offset = CONFIG_TOP(peers.n_nodes),
		.max_items = CONFIG_MAX_PEERS,
		.help = "the nodes of the rack, this one included",
	},
	{
		.name = "peers.nodes[].name",
		.type = CONFIG_T_STRING,
		.flags = CONFIG_K_REQUIRED,
		.def_doc = "required",
		.offset = CONFIG_PEER(name),
		.help = "node name, unique",
	},
	{
		.name = "peers.nodes[].address",
		.type = CONFIG_T_ADDRESS,
		.flags = CONFIG_K_REQUIRED,
		.def_doc = "required",
		.offset = CONFIG_PEER(address),
		.help = "address of the node's peer endpoint, host:port",
	},
	{
		.name = "metrics.listen",
		.type = CONFIG_T_ADDRESS,
		.flags = CONFIG_K_OPTIONAL,
		.def_doc = "none: no endpoint",
		.offset = CONFIG_TOP(metrics.listen),
		.help = "address of the Prometheus /metrics endpoint",
	},
	{
		.name = "log.level",
		.type = CONFIG_T_ENUM,
		.def = "info",
		.offset = CONFIG_TOP(log.level),
		.choices = config_choices_log_level,
		.help = "least important messages logged",
	},
	{
		.name = "log.file",
		.type = CONFIG_T_PATH,
		.flags = CONFIG_K_OPTIONAL,
		.def_doc = "stderr",
		.offset = CONFIG_TOP(log.file),
		.help = "file the log is appended to",
	},
};

#define CONFIG_N_KEYS (sizeof(config_keys) / sizeof(config_keys[0]))

#endif
