/*
 * catalog.c - SQLite catalog with a batching writer thread (see catalog.h).
 *
 * DESIGN: one mutex guards the queue of operations and the counters. The
 * writer owns the database connection once started; before that the main
 * thread uses it for loading. Each operation is one allocation holding its
 * strings.
 */
#include "catalog.h"

#include <errno.h>
#include <unistd.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "log.h"

enum op_kind { OP_PUT, OP_DEL, OP_PIN, OP_EPOCH };

struct catalog_op {
	struct catalog_op *next;
	enum op_kind kind;
	struct catalog_row row;
	uint64_t epoch;
	char strings[]; /* path, mount, etag (or dataset name) */
};

struct catalog {
	sqlite3 *db;
	sqlite3_stmt *put, *del, *pin, *epoch;
	pthread_t thread;
	bool started, stopping;
	pthread_mutex_t lock;
	pthread_cond_t cond, flushed;
	struct catalog_op *head, *tail;
	uint64_t queued_gen, committed_gen;
	unsigned flush_waiters;
	uint64_t interval_ns;
	uint64_t n_ops, n_commits, n_errors;
};

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS objects("
	" id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, mount TEXT NOT NULL,"
	" size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ino INTEGER NOT NULL,"
	" mode INTEGER NOT NULL, uid INTEGER NOT NULL, gid INTEGER NOT NULL,"
	" etag TEXT NOT NULL DEFAULT '', checksum INTEGER NOT NULL,"
	" last_epoch INTEGER NOT NULL DEFAULT 0, last_access INTEGER NOT NULL DEFAULT 0,"
	" pinned INTEGER NOT NULL DEFAULT 0, dev INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE IF NOT EXISTS datasets(name TEXT PRIMARY KEY, epoch INTEGER NOT NULL);";

static int db_exec(sqlite3 *db, const char *sql)
{
	char *msg = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		log_err("sqlite3_exec failed sql=\"%.60s\" err=\"%s\"", sql, msg ? msg : "?");
		sqlite3_free(msg);
		return -EIO;
	}
	return 0;
}

static int check_schema(sqlite3 *db)
{
	sqlite3_stmt *st;
	int rc = 0, version = 0;

	if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key='schema_version'", -1, &st,
			       NULL) != SQLITE_OK)
		return -EIO;
	if (sqlite3_step(st) == SQLITE_ROW)
		version = atoi((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	if (version == 0)
		rc = db_exec(db, "INSERT OR REPLACE INTO meta VALUES('schema_version','2')");
	else if (version == 1)
		/* rows of version 1 come from a cache the store empties (STORE_LAYOUT 2) */
		rc = db_exec(db, "ALTER TABLE objects ADD COLUMN dev INTEGER NOT NULL DEFAULT 0;"
				 "INSERT OR REPLACE INTO meta VALUES('schema_version','2')");
	else if (version != CATALOG_SCHEMA_VERSION) {
		log_err("catalog schema is newer than this granaryd version=%d supported=%d",
			version, CATALOG_SCHEMA_VERSION);
		rc = -EPROTO;
	}
	return rc;
}

/* The batching wait counts on the monotonic clock: a clock step cannot stretch it. */
static void cond_init_monotonic(pthread_cond_t *cond)
{
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(cond, &ca);
	pthread_condattr_destroy(&ca);
}

struct catalog *catalog_open(const char *path, int *err)
{
	struct catalog *c = calloc(1, sizeof(*c));
	int rc;

	if (!c) {
		*err = -ENOMEM;
		return NULL;
	}
	pthread_mutex_init(&c->lock, NULL);
	cond_init_monotonic(&c->cond);
	pthread_cond_init(&c->flushed, NULL);
	/* the daemon's alone (SQLite gives its -wal and -shm the same mode) */
	rc = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (rc >= 0) {
		if (fchmod(rc, 0600) < 0)
			log_errno(LOG_WARNING, errno, "chmod of the catalog failed path=%s", path);
		close(rc);
	}
	rc = sqlite3_open_v2(path, &c->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
			     NULL);
	if (rc != SQLITE_OK) {
		log_err("sqlite3_open_v2 failed path=%s err=\"%s\"", path,
			c->db ? sqlite3_errmsg(c->db) : "out of memory");
		*err = -EIO;
		goto err;
	}
	sqlite3_busy_timeout(c->db, 5000);
	if (db_exec(c->db, "PRAGMA journal_mode=WAL") ||
	    db_exec(c->db, "PRAGMA synchronous=NORMAL") || db_exec(c->db, schema)) {
		*err = -EIO;
		goto err;
	}
	rc = check_schema(c->db);
	if (rc < 0) {
		*err = rc;
		goto err;
	}
	if (sqlite3_prepare_v2(
		    c->db,
		    "INSERT OR REPLACE INTO objects(id,path,mount,size,mtime_ns,ino,mode,"
		    "uid,gid,etag,checksum,last_epoch,last_access,pinned,dev) "
		    "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
		    -1, &c->put, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(c->db, "DELETE FROM objects WHERE id=?", -1, &c->del, NULL) !=
		    SQLITE_OK ||
	    sqlite3_prepare_v2(c->db, "UPDATE objects SET pinned=? WHERE id=?", -1, &c->pin,
			       NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(c->db, "INSERT OR REPLACE INTO datasets(name,epoch) VALUES(?,?)", -1,
			       &c->epoch, NULL) != SQLITE_OK) {
		log_err("sqlite3_prepare_v2 failed err=\"%s\"", sqlite3_errmsg(c->db));
		*err = -EIO;
		goto err;
	}
	return c;
err:
	catalog_close(c);
	return NULL;
}

int catalog_load(struct catalog *c, void (*fn)(const struct catalog_row *row, void *arg), void *arg)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(c->db,
			       "SELECT id,path,mount,size,mtime_ns,ino,mode,uid,gid,etag,checksum,"
			       "last_epoch,last_access,pinned,dev FROM objects",
			       -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct catalog_row r = {
			.id = (uint64_t)sqlite3_column_int64(st, 0),
			.path = (const char *)sqlite3_column_text(st, 1),
			.mount = (const char *)sqlite3_column_text(st, 2),
			.size = (uint64_t)sqlite3_column_int64(st, 3),
			.mtime_ns = sqlite3_column_int64(st, 4),
			.ino = (uint64_t)sqlite3_column_int64(st, 5),
			.mode = (uint32_t)sqlite3_column_int64(st, 6),
			.uid = (uint32_t)sqlite3_column_int64(st, 7),
			.gid = (uint32_t)sqlite3_column_int64(st, 8),
			.etag = (const char *)sqlite3_column_text(st, 9),
			.checksum = (uint64_t)sqlite3_column_int64(st, 10),
			.last_epoch = (uint64_t)sqlite3_column_int64(st, 11),
			.last_access = sqlite3_column_int64(st, 12),
			.pinned = sqlite3_column_int(st, 13) != 0,
			.dev = (uint64_t)sqlite3_column_int64(st, 14),
		};
		if (r.path && r.mount)
			fn(&r, arg);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

uint64_t catalog_max_id(struct catalog *c)
{
	sqlite3_stmt *st;
	uint64_t id = 0;

	if (sqlite3_prepare_v2(c->db, "SELECT max(id) FROM objects", -1, &st, NULL) != SQLITE_OK)
		return 0;
	if (sqlite3_step(st) == SQLITE_ROW)
		id = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (sqlite3_prepare_v2(c->db, "SELECT value FROM meta WHERE key='next_id'", -1, &st,
			       NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW) {
			uint64_t next =
				strtoull((const char *)sqlite3_column_text(st, 0), NULL, 10);

			if (next > id)
				id = next;
		}
		sqlite3_finalize(st);
	}
	return id;
}

int catalog_load_datasets(struct catalog *c,
			  void (*fn)(const char *name, uint64_t epoch, void *arg), void *arg)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(c->db, "SELECT name,epoch FROM datasets", -1, &st, NULL) !=
	    SQLITE_OK)
		return -EIO;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		fn((const char *)sqlite3_column_text(st, 0), (uint64_t)sqlite3_column_int64(st, 1),
		   arg);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

static int step_reset(struct catalog *c, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_DONE) {
		log_err("catalog write failed err=\"%s\"", sqlite3_errmsg(c->db));
		return -EIO;
	}
	return 0;
}

static int apply(struct catalog *c, const struct catalog_op *op)
{
	const struct catalog_row *r = &op->row;
	sqlite3_stmt *st;

	switch (op->kind) {
	case OP_PUT:
		st = c->put;
		sqlite3_bind_int64(st, 1, (sqlite3_int64)r->id);
		sqlite3_bind_text(st, 2, r->path, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, r->mount, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 4, (sqlite3_int64)r->size);
		sqlite3_bind_int64(st, 5, r->mtime_ns);
		sqlite3_bind_int64(st, 6, (sqlite3_int64)r->ino);
		sqlite3_bind_int64(st, 7, r->mode);
		sqlite3_bind_int64(st, 8, r->uid);
		sqlite3_bind_int64(st, 9, r->gid);
		sqlite3_bind_text(st, 10, r->etag ? r->etag : "", -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 11, (sqlite3_int64)r->checksum);
		sqlite3_bind_int64(st, 12, (sqlite3_int64)r->last_epoch);
		sqlite3_bind_int64(st, 13, r->last_access);
		sqlite3_bind_int(st, 14, r->pinned);
		sqlite3_bind_int64(st, 15, (sqlite3_int64)r->dev);
		return step_reset(c, st);
	case OP_DEL:
		sqlite3_bind_int64(c->del, 1, (sqlite3_int64)r->id);
		return step_reset(c, c->del);
	case OP_PIN:
		sqlite3_bind_int(c->pin, 1, r->pinned);
		sqlite3_bind_int64(c->pin, 2, (sqlite3_int64)r->id);
		return step_reset(c, c->pin);
	case OP_EPOCH:
		sqlite3_bind_text(c->epoch, 1, r->path, -1, SQLITE_STATIC);
		sqlite3_bind_int64(c->epoch, 2, (sqlite3_int64)op->epoch);
		return step_reset(c, c->epoch);
	}
	return -EINVAL;
}

/* Writer thread: commit one batch; returns the number of operations. */
static uint64_t commit_batch(struct catalog *c, struct catalog_op *ops)
{
	uint64_t n = 0, errors = 0, max_id = 0;
	struct catalog_op *op, *next;
	char sql[192];

	if (!ops)
		return 0;
	if (db_exec(c->db, "BEGIN") < 0)
		errors++;
	for (op = ops; op; op = next) {
		next = op->next;
		if (op->kind == OP_PUT && op->row.id > max_id)
			max_id = op->row.id;
		if (apply(c, op) < 0)
			errors++;
		n++;
		free(op);
	}
	if (max_id) {
		/* ids are never reused, even after the newest row is deleted */
		snprintf(sql, sizeof(sql),
			 "INSERT OR REPLACE INTO meta VALUES('next_id',"
			 "max(%llu,coalesce((SELECT value FROM meta WHERE key='next_id'),0)))",
			 (unsigned long long)max_id);
		if (db_exec(c->db, sql) < 0)
			errors++;
	}
	if (db_exec(c->db, "COMMIT") < 0) {
		errors++;
		db_exec(c->db, "ROLLBACK");
	}
	pthread_mutex_lock(&c->lock);
	c->n_ops += n;
	c->n_commits++;
	c->n_errors += errors;
	pthread_mutex_unlock(&c->lock);
	return n;
}

static void *catalog_writer(void *arg)
{
	struct catalog *c = arg;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		struct catalog_op *ops;
		struct timespec ts;
		uint64_t gen;

		while (!c->stopping && !c->head)
			pthread_cond_wait(&c->cond, &c->lock);
		if (!c->stopping && !c->flush_waiters) {
			/* let the batch gather for one interval */
			ts = clock_mono_after((int64_t)c->interval_ns);
			pthread_cond_timedwait(&c->cond, &c->lock, &ts);
		}
		ops = c->head;
		gen = c->queued_gen;
		c->head = c->tail = NULL;
		pthread_mutex_unlock(&c->lock);

		commit_batch(c, ops);

		pthread_mutex_lock(&c->lock);
		c->committed_gen = gen;
		pthread_cond_broadcast(&c->flushed);
		if (c->stopping && !c->head)
			break;
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

int catalog_start(struct catalog *c, uint64_t interval_ns)
{
	int rc;

	c->interval_ns = interval_ns ? interval_ns : 200000000ull;
	rc = pthread_create(&c->thread, NULL, catalog_writer, c);
	if (rc) {
		log_errno(LOG_ERR, rc, "pthread_create of catalog writer failed");
		return -rc;
	}
	c->started = true;
	return 0;
}

static void enqueue(struct catalog *c, struct catalog_op *op)
{
	op->next = NULL;
	pthread_mutex_lock(&c->lock);
	if (c->tail)
		c->tail->next = op;
	else
		c->head = op;
	c->tail = op;
	/* wake the writer on the first op of a batch; it then waits the interval */
	if (c->queued_gen++ == c->committed_gen)
		pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
	if (!c->started) {
		/* before start-up completes, write through */
		pthread_mutex_lock(&c->lock);
		struct catalog_op *ops = c->head;
		uint64_t gen = c->queued_gen;

		c->head = c->tail = NULL;
		pthread_mutex_unlock(&c->lock);
		commit_batch(c, ops);
		c->committed_gen = gen;
	}
}

static struct catalog_op *op_new(enum op_kind kind, const char *a, const char *b, const char *e)
{
	size_t la = a ? strlen(a) + 1 : 0, lb = b ? strlen(b) + 1 : 0, le = e ? strlen(e) + 1 : 0;
	struct catalog_op *op = calloc(1, sizeof(*op) + la + lb + le);
	char *p;

	if (!op) {
		log_err("out of memory queueing a catalog write; it is lost until the next change");
		return NULL;
	}
	op->kind = kind;
	p = op->strings;
	if (a) {
		op->row.path = memcpy(p, a, la);
		p += la;
	}
	if (b) {
		op->row.mount = memcpy(p, b, lb);
		p += lb;
	}
	if (e)
		op->row.etag = memcpy(p, e, le);
	return op;
}

void catalog_put(struct catalog *c, const struct catalog_row *row)
{
	struct catalog_op *op = op_new(OP_PUT, row->path, row->mount, row->etag);

	if (!op)
		return;
	const char *p = op->row.path, *m = op->row.mount, *e = op->row.etag;

	op->row = *row;
	op->row.path = p;
	op->row.mount = m;
	op->row.etag = e;
	enqueue(c, op);
}

void catalog_del(struct catalog *c, uint64_t id)
{
	struct catalog_op *op = op_new(OP_DEL, NULL, NULL, NULL);

	if (!op)
		return;
	op->row.id = id;
	enqueue(c, op);
}

void catalog_pin(struct catalog *c, uint64_t id, bool pinned)
{
	struct catalog_op *op = op_new(OP_PIN, NULL, NULL, NULL);

	if (!op)
		return;
	op->row.id = id;
	op->row.pinned = pinned;
	enqueue(c, op);
}

void catalog_epoch(struct catalog *c, const char *dataset, uint64_t epoch)
{
	struct catalog_op *op = op_new(OP_EPOCH, dataset, NULL, NULL);

	if (!op)
		return;
	op->epoch = epoch;
	enqueue(c, op);
}

void catalog_flush(struct catalog *c)
{
	uint64_t gen;

	if (!c->started)
		return;
	pthread_mutex_lock(&c->lock);
	gen = c->queued_gen;
	c->flush_waiters++;
	pthread_cond_signal(&c->cond);
	while (c->committed_gen < gen)
		pthread_cond_wait(&c->flushed, &c->lock);
	c->flush_waiters--;
	pthread_mutex_unlock(&c->lock);
}

void catalog_stats(struct catalog *c, uint64_t *ops, uint64_t *commits, uint64_t *errors)
{
	pthread_mutex_lock(&c->lock);
	*ops = c->n_ops;
	*commits = c->n_commits;
	*errors = c->n_errors;
	pthread_mutex_unlock(&c->lock);
}

void catalog_close(struct catalog *c)
{
	if (!c)
		return;
	if (c->started) {
		pthread_mutex_lock(&c->lock);
		c->stopping = true;
		pthread_cond_signal(&c->cond);
		pthread_mutex_unlock(&c->lock);
		pthread_join(c->thread, NULL);
	}
	sqlite3_finalize(c->put);
	sqlite3_finalize(c->del);
	sqlite3_finalize(c->pin);
	sqlite3_finalize(c->epoch);
	if (c->db)
		sqlite3_close(c->db);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	pthread_cond_destroy(&c->flushed);
	free(c);
}
