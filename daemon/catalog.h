/*
 * catalog.h - the durable record of the cache: SQLite in WAL mode.
 *
 * Owns: the database file cache.dir/catalog.db, its schema, and the writer
 * thread. Holds what survives a restart: objects (path, mount, size,
 * validator, checksum, epoch, pin), datasets and their epochs.
 *
 * DESIGN: the loop thread never waits on SQLite while serving. It queues
 * operations (catalog_put, catalog_del, ...), which copy what they need; a
 * writer thread applies everything queued in one transaction every
 * commit_interval. At start-up catalog_load runs on the main thread before the
 * writer starts. catalog_flush waits until everything queued is committed
 * (shutdown, tests).
 */
#ifndef GRANARY_CATALOG_H
#define GRANARY_CATALOG_H

#include <stdbool.h>
#include <stdint.h>

#define CATALOG_SCHEMA_VERSION 2 /* 2: objects.dev */

/* In catalog_row.mode: the object's path is closed to others (validator.restricted). */
#define CATALOG_MODE_RESTRICTED 0x80000000u

struct catalog_row {
	uint64_t id;
	const char *path;
	const char *mount;
	uint64_t size;
	int64_t mtime_ns;
	uint64_t ino;
	uint64_t dev; /* the source's device: with ino, which file it is */
	uint32_t mode, uid, gid;
	const char *etag;
	uint64_t checksum;
	uint64_t last_epoch;
	int64_t last_access;
	bool pinned;
};

struct catalog;

/* Open or create @path. Returns NULL with *err set and a log line. */
struct catalog *catalog_open(const char *path, int *err);

/* Start the writer thread, committing every @interval_ns. */
int catalog_start(struct catalog *c, uint64_t interval_ns);

/* Stop the writer after committing everything queued; close the database. */
void catalog_close(struct catalog *c);

/*
 * Call @fn for every object row (start-up, before catalog_start). Strings in
 * the row are valid during the call only. Returns 0 or -EIO.
 */
int catalog_load(struct catalog *c, void (*fn)(const struct catalog_row *row, void *arg),
		 void *arg);

/* Largest object id ever recorded (ids are never reused). */
uint64_t catalog_max_id(struct catalog *c);

/* Epoch of every dataset (start-up). */
int catalog_load_datasets(struct catalog *c,
			  void (*fn)(const char *name, uint64_t epoch, void *arg), void *arg);

/* Queue an insert-or-replace of @row; strings are copied. Loop thread. */
void catalog_put(struct catalog *c, const struct catalog_row *row);
/* Queue the deletion of object @id. */
void catalog_del(struct catalog *c, uint64_t id);
/* Queue a pin change. */
void catalog_pin(struct catalog *c, uint64_t id, bool pinned);
/* Queue a dataset's epoch. */
void catalog_epoch(struct catalog *c, const char *dataset, uint64_t epoch);

/* Commit everything queued so far before returning. */
void catalog_flush(struct catalog *c);

/* Operations committed, transactions, failures (for status). */
void catalog_stats(struct catalog *c, uint64_t *ops, uint64_t *commits, uint64_t *errors);

#endif
