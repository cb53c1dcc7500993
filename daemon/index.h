/*
 * index.h - the in-memory index of objects: cached, and being fetched.
 *
 * Owns: struct object and the hash table from path to object. At run time the
 * index is authoritative; the catalog is its durable copy. Loop thread only.
 */
#ifndef GRANARY_INDEX_H
#define GRANARY_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "list.h"
#include "policy.h"

struct mount;
struct fetch;

enum object_state {
	OBJ_FETCHING = 1, /* no copy yet; a fetch is under way */
	OBJ_CACHED = 2,	  /* a complete copy is under objects/ */
};

/* What the source said of the object when it was last validated. */
struct validator {
	uint64_t size;
	int64_t mtime_ns;
	uint64_t ino;
	uint64_t dev; /* posix: the source's device (0: none, object stores) */
	uint32_t mode;
	uint32_t uid, gid;
	bool restricted; /* not every local user may read the source: the copy is private */
	char etag[80];	 /* http, s3 */
};

struct checksum_task;

struct object {
	struct object *hnext;
	uint64_t hash;
	char *path; /* full, normalised path as trainers name it */
	struct mount *mount;
	enum object_state state;
	uint64_t id; /* cache file id, while cached */
	struct validator v;
	uint64_t checksum;    /* xxh3-64 of the content */
	int64_t validated_ns; /* CLOCK_MONOTONIC of the last validation */
	int64_t last_access;  /* CLOCK_REALTIME seconds */
	bool verified;	      /* checksum checked since start-up */
	bool in_policy;
	uint64_t fx_slot;		 /* slot + 1 in the shared index, 0 when absent */
	struct list_node rk;		 /* in the ring of public copies (recheck.c) */
	struct fetch *fetch;		 /* while a fetch is under way */
	struct checksum_task *verifying; /* the first read's checksum under way (fetch.c) */
	struct policy_entry pe;
};

struct index;

struct index *index_create(void);
/* Frees the table and every object in it. */
void index_destroy(struct index *ix);

struct object *index_get(struct index *ix, const char *path);

/*
 * Add a new object for @path (not present). The index owns it from now on.
 * Returns NULL on allocation failure.
 */
struct object *index_add(struct index *ix, const char *path, struct mount *m);

/* Remove @o from the table and free it. */
void index_del(struct index *ix, struct object *o);

size_t index_count(const struct index *ix);

/*
 * Call @fn for each object; @fn may index_del the object it is given (and no
 * other). Order is unspecified.
 */
void index_foreach(struct index *ix, void (*fn)(struct object *o, void *arg), void *arg);

#endif
