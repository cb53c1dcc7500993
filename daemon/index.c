/* index.c - chained hash table of objects keyed by path (see index.h). */
#include "index.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

struct index {
	struct object **buckets;
	size_t mask;
	size_t count;
};

static uint64_t path_hash(const char *path)
{
	return XXH3_64bits(path, strlen(path));
}

struct index *index_create(void)
{
	struct index *ix = calloc(1, sizeof(*ix));

	if (!ix)
		return NULL;
	ix->mask = 1023;
	ix->buckets = calloc(ix->mask + 1, sizeof(*ix->buckets));
	if (!ix->buckets) {
		free(ix);
		return NULL;
	}
	return ix;
}

static void object_free(struct object *o)
{
	free(o->path);
	free(o);
}

void index_destroy(struct index *ix)
{
	size_t i;

	if (!ix)
		return;
	for (i = 0; i <= ix->mask; i++) {
		struct object *o = ix->buckets[i], *next;

		for (; o; o = next) {
			next = o->hnext;
			object_free(o);
		}
	}
	free(ix->buckets);
	free(ix);
}

struct object *index_get(struct index *ix, const char *path)
{
	uint64_t h = path_hash(path);
	struct object *o;

	for (o = ix->buckets[h & ix->mask]; o; o = o->hnext)
		if (o->hash == h && strcmp(o->path, path) == 0)
			return o;
	return NULL;
}

static void index_grow(struct index *ix)
{
	size_t nmask = ix->mask * 2 + 1, i;
	struct object **nb = calloc(nmask + 1, sizeof(*nb));

	if (!nb)
		return; /* keep the longer chains; still correct */
	for (i = 0; i <= ix->mask; i++) {
		struct object *o = ix->buckets[i], *next;

		for (; o; o = next) {
			next = o->hnext;
			o->hnext = nb[o->hash & nmask];
			nb[o->hash & nmask] = o;
		}
	}
	free(ix->buckets);
	ix->buckets = nb;
	ix->mask = nmask;
}

struct object *index_add(struct index *ix, const char *path, struct mount *m)
{
	struct object *o = calloc(1, sizeof(*o));
	size_t b;

	if (!o)
		return NULL;
	o->path = strdup(path);
	if (!o->path) {
		free(o);
		return NULL;
	}
	o->hash = path_hash(path);
	o->mount = m;
	o->pe.next_use = POLICY_NO_USE;
	if (ix->count >= ix->mask + 1)
		index_grow(ix);
	b = o->hash & ix->mask;
	o->hnext = ix->buckets[b];
	ix->buckets[b] = o;
	ix->count++;
	return o;
}

void index_del(struct index *ix, struct object *o)
{
	struct object **pp = &ix->buckets[o->hash & ix->mask];

	for (; *pp; pp = &(*pp)->hnext) {
		if (*pp == o) {
			*pp = o->hnext;
			ix->count--;
			object_free(o);
			return;
		}
	}
}

size_t index_count(const struct index *ix)
{
	return ix->count;
}

void index_foreach(struct index *ix, void (*fn)(struct object *o, void *arg), void *arg)
{
	size_t i;

	for (i = 0; i <= ix->mask; i++) {
		struct object *o = ix->buckets[i], *next;

		for (; o; o = next) {
			next = o->hnext;
			fn(o, arg);
		}
	}
}
