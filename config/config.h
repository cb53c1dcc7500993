/*
 * config.h - granaryd's settings: one struct, loaded from YAML (libyaml).
 *
 * Owns: struct config and its parts, defaults, the key table (config_keys.h),
 * size/duration parsing, validation, printing the effective settings, and the
 * generated reference (docs/configuration.md). Errors name the file, line,
 * column and key: "granary.yaml:12:5: cache.capacity: expected a size like
 * 512G, got 'lots'".
 */
#ifndef GRANARY_CONFIG_H
#define GRANARY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define CONFIG_MAX_MOUNTS 64
#define CONFIG_MAX_IDS	  64
#define CONFIG_MAX_PEERS  64
#define CONFIG_ERR_MAX	  512

enum config_backend {
	CONFIG_BACKEND_POSIX = 1, /* same values as enum proto_backend */
	CONFIG_BACKEND_HTTP = 2,
	CONFIG_BACKEND_S3 = 3,
};

enum config_consistency {
	CONFIG_CONSISTENCY_STRICT = 0, /* stat the source on every open */
	CONFIG_CONSISTENCY_TTL = 1,    /* revalidate after ttl_ns */
	CONFIG_CONSISTENCY_IMMUTABLE = 2,
};

enum config_durability {
	CONFIG_DURABILITY_NONE = 0,
	CONFIG_DURABILITY_FSYNC = 1,
};

enum config_io {
	CONFIG_IO_AUTO = 0,    /* io_uring, or threads when it cannot be set up */
	CONFIG_IO_URING = 1,   /* io_uring or refuse to start */
	CONFIG_IO_THREADS = 2, /* the thread-pool fallback */
};

enum config_placement {
	CONFIG_PLACEMENT_PARTITION = 0,
	CONFIG_PLACEMENT_REPLICATE = 1,
};

enum config_large {
	CONFIG_LARGE_WHOLE = 0,	 /* fetch whole before handing out */
	CONFIG_LARGE_DIRECT = 1, /* posix: open the source while fetching behind */
};

enum config_log_level {
	CONFIG_LOG_ERR = 3,
	CONFIG_LOG_WARNING = 4,
	CONFIG_LOG_INFO = 6,
	CONFIG_LOG_DEBUG = 7,
};

struct config_mount {
	char *path;		/* where trainers open files; normalised, absolute */
	char *source;		/* posix: directory read from (default: path) */
	char *url;		/* http, s3: base URL ending in '/' */
	char *region;		/* s3 */
	char *credentials_file; /* s3: mode 0600 file */
	bool path_style;	/* s3: path-style addressing (default true) */
	char *dataset;		/* dataset name for epochs (default: path) */
	enum config_backend backend;
	enum config_consistency consistency;
	uint64_t ttl_ns;		 /* consistency: ttl */
	enum config_placement placement; /* peers */
	enum config_large large;	 /* objects >= fetch.large_threshold */
	size_t n_allow_uids, n_allow_gids;
	uid_t allow_uids[CONFIG_MAX_IDS]; /* object stores: who may read */
	gid_t allow_gids[CONFIG_MAX_IDS];
	bool allow_unsafe_path; /* posix: accept a source others could move */
	int line;		/* where it was defined, for messages */
};

struct config_peer {
	char *name;
	char *address; /* host:port */
};

struct config {
	char *file; /* the file loaded, or "(defaults)" */
	char *socket;
	uint32_t socket_mode; /* default 0660 */
	char *socket_group;   /* default "granary" when that group exists */

	struct {
		char *dir;
		uint64_t capacity; /* bytes */
		double high_watermark, low_watermark;
		enum config_durability durability;
		enum config_io io;
		uint32_t uring_depth;
		uint64_t commit_interval_ns; /* catalog batch period */
	} cache;

	struct {
		char *eviction;		  /* "epoch" or "lru" */
		uint32_t prefetch_window; /* objects kept in flight ahead of a hint */
	} policy;

	struct {
		uint32_t workers;      /* blocking-work thread pool size */
		uint32_t max_parallel; /* backend fetches in flight, all mounts */
		uint32_t fg_reserved;  /* slots kept for foreground misses */
		uint64_t bg_rate;      /* background bytes/s, 0 = unlimited */
		uint64_t timeout_ns;   /* per request */
		uint32_t retries;
		uint64_t chunk_size;	  /* ranged GET size */
		uint32_t chunk_parallel;  /* ranged GETs per object */
		uint64_t large_threshold; /* bytes */
		uint32_t connections;	  /* per backend host */
	} fetch;

	struct {
		size_t n_admin_gids;
		gid_t admin_gids[CONFIG_MAX_IDS]; /* besides root: admin verbs */
		uint64_t recheck_ns;		  /* rights of public copies checked again */
		uint64_t steer_idle_ns;		  /* a dataset's steerer holds it this long */
	} access;

	struct {
		uint32_t connections; /* all users */
		uint32_t connections_per_uid;
		uint32_t requests_per_connection; /* in flight */
		uint32_t requests_per_uid;
		uint32_t reply_queue;	  /* unread replies per connection */
		uint64_t idle_timeout_ns; /* 0: never */
	} limits;

	struct {
		char *self;
		char *provider;
		char *secret_file;
		uint64_t heartbeat_ns;
		uint32_t miss_limit;		 /* heartbeats missed before a peer is down */
		enum config_placement placement; /* for mounts that do not set one */
		size_t n_nodes;
		struct config_peer nodes[CONFIG_MAX_PEERS];
	} peers;

	struct {
		char *listen; /* host:port, or NULL for none */
	} metrics;

	struct {
		enum config_log_level level;
		char *file; /* NULL: stderr */
	} log;

	size_t n_mounts;
	struct config_mount mounts[CONFIG_MAX_MOUNTS];

	struct config_marks *marks; /* private to config.c: where keys were read */
};

/*
 * Fill @c with every default (no mounts). Allocates nothing: default strings
 * are the key table's own, which config_free knows not to free. Strings set
 * later belong to @c and must come from malloc.
 */
void config_init_defaults(struct config *c);

/*
 * Load @path over the defaults (@c is set to them first, so it need not be
 * initialised; a config loaded before must be freed first). On error returns
 * -EINVAL (or -errno of the open) and writes one line into @err,
 * "FILE:LINE:COL: KEY: what is wrong". The config is left to config_free
 * either way. Loading does not run config_validate.
 */
int config_load(struct config *c, const char *path, char *err, size_t errsz);

/* Same, from a string in memory; @name stands for the file in messages. */
int config_load_string(struct config *c, const char *name, const char *yaml, char *err,
		       size_t errsz);

/*
 * Cross-field checks after loading (watermarks ordered, mounts not nested,
 * backend settings complete, self among peers). Same error form, with the
 * mount's line where it applies.
 */
int config_validate(const struct config *c, char *err, size_t errsz);

/* Free what @c holds and zero it; safe on defaults, partial loads, twice. */
void config_free(struct config *c);

/*
 * Where @key ("cache.dir", "mounts[2].source", "peers.nodes[0]") was read:
 * 0 with its 1-based line and column, or -ENOENT for a default or a config
 * built in code. For the daemon's own messages about settings.
 */
int config_key_location(const struct config *c, const char *key, int *line, int *column);

/* Print the effective settings as YAML (for --check-config). */
void config_print(const struct config *c, FILE *out);

/* Print the reference of every key as Markdown (docs/configuration.md). */
void config_print_reference(FILE *out);

/*
 * Parsers shared with the CLI: "512G", "1.5T", "4096" (bytes, binary units
 * K M G T P with optional 'i' or 'B'); "30s", "250ms", "5m", "2h", "1d".
 * Return 0 or -EINVAL.
 */
int config_parse_size(const char *s, uint64_t *out);
int config_parse_duration(const char *s, uint64_t *ns);

/*
 * The mount whose path is the longest prefix of the normalised absolute @path
 * on a component boundary (/a/b is under /a, /a/bc is not), or NULL.
 */
const struct config_mount *config_find_mount(const struct config *c, const char *path);

#endif
