/*
 * store.h - the cache directory: staging files, complete objects, clean-up.
 *
 * Owns: the layout under cache.dir:
 *   catalog.db            SQLite catalog (catalog.c)
 *   tmp/<id>              a fetch in progress; never handed out
 *   objects/<xx>/<id>     complete objects, xx = low byte of the id in hex
 * An object file appears under objects/ only by rename from tmp/ after its
 * last byte was written, so anything under objects/ with the catalog's size is
 * complete. Descriptors handed out are O_RDONLY.
 */
#ifndef GRANARY_STORE_H
#define GRANARY_STORE_H

#include <stddef.h>
#include <stdint.h>

struct store {
	char *dir;
	int dirfd;
	int tmpfd;
	int objfd;
};

/* Create the layout under @dir if needed and open it. Returns 0 or -errno. */
int store_open(struct store *st, const char *dir);
void store_close(struct store *st);

/* Delete everything under tmp/ (left by a crash). Returns files removed. */
long store_clear_tmp(struct store *st);

/* A new staging file tmp/<id>, O_RDWR. Returns a descriptor or -errno. */
int store_tmp_create(struct store *st, uint64_t id);
int store_tmp_unlink(struct store *st, uint64_t id);

/* Rename tmp/<id> to objects/. Returns 0 or -errno. */
int store_commit(struct store *st, uint64_t id);

/*
 * Open the complete object @id for reading and check that it holds @size
 * bytes. Returns a descriptor, or -errno with nothing left open (-EIO when
 * the size is wrong).
 */
int store_object_open(struct store *st, uint64_t id, uint64_t size);

int store_object_unlink(struct store *st, uint64_t id);

/* Size of object @id on disk, or -errno. */
int64_t store_object_size(struct store *st, uint64_t id);

/*
 * Call @fn for every object file found under objects/ (start-up check against
 * the catalog). Returns 0 or -errno.
 */
int store_scan(struct store *st, void (*fn)(uint64_t id, void *arg), void *arg);

struct validator;

/*
 * Give a cache file the source's owner and read bits, so that the kernel
 * grants a client opening it directly what it grants on the original. A
 * daemon that is not root keeps its files to itself (0400).
 */
void store_set_owner(int fd, const struct validator *v);
void store_object_set_owner(struct store *st, uint64_t id, const struct validator *v);

/* Bytes free on the cache filesystem, or -errno. */
int64_t store_free_bytes(struct store *st);

#endif
