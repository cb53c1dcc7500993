/*
 * store.h - the cache directory: staging files, complete objects, clean-up.
 *
 * Owns: the layout under cache.dir:
 *   (0700, the daemon's)  the cache directory itself
 *   layout                STORE_LAYOUT, the version of this layout
 *   catalog.db            SQLite catalog (catalog.c), 0600
 *   tmp/<id>              a fetch in progress; never handed out
 *   objects/<xx>/<id>     public copies: of sources every local user may
 *                         read; 0444, the tree 0711 (searchable, not
 *                         listable); clients open them by id (fast path)
 *   private/<xx>/<id>     every other copy: 0400 in a 0700 tree, reaching a
 *                         caller only as a descriptor after its check
 * xx = low byte of the id in hex. A copy appears in a tree only by rename from
 * tmp/ after its last byte was written, so anything there with the catalog's
 * size is complete. Copies belong to the daemon, whatever their source's
 * owner. Descriptors handed out are O_RDONLY.
 */
#ifndef GRANARY_STORE_H
#define GRANARY_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_LAYOUT 2

struct store {
	char *dir;
	int dirfd;
	int tmpfd;
	int objfd;  /* objects/: public copies */
	int privfd; /* private/ */
};

/*
 * Create the layout under @dir if needed and open it; a cache of an older
 * layout is emptied. Returns 0 or -errno.
 */
int store_open(struct store *st, const char *dir);
void store_close(struct store *st);

/* Delete everything under tmp/ (left by a crash). Returns files removed. */
long store_clear_tmp(struct store *st);

/* A new staging file tmp/<id>, O_RDWR. Returns a descriptor or -errno. */
int store_tmp_create(struct store *st, uint64_t id);
int store_tmp_unlink(struct store *st, uint64_t id);

/*
 * Give the staging file @fd (tmp/<id>) its mode and rename it into the
 * public tree, or the private one when @priv. Returns 0 or -errno.
 */
int store_commit(struct store *st, uint64_t id, int fd, bool priv);

/* Move a complete copy to the private tree (@to_priv) or out of it. 0 or -errno. */
int store_object_move(struct store *st, uint64_t id, bool to_priv);

/*
 * Open the complete object @id for reading and check that it holds @size
 * bytes. Returns a descriptor, or -errno with nothing left open (-EIO when
 * the size is wrong).
 */
int store_object_open(struct store *st, uint64_t id, uint64_t size, bool priv);

/*
 * Read object @id back and put the xxh3-64 of its bytes in *@sum. Returns 0,
 * -ENOMEM, or the -errno of the open (-EIO for a wrong size) or of a read.
 */
int store_object_checksum(struct store *st, uint64_t id, uint64_t size, bool priv, uint64_t *sum);

int store_object_unlink(struct store *st, uint64_t id, bool priv);

/* Size of object @id on disk, or -errno. */
int64_t store_object_size(struct store *st, uint64_t id, bool priv);

/*
 * Call @fn for every object file found under objects/ (start-up check against
 * the catalog). Returns 0 or -errno.
 */
int store_scan(struct store *st, void (*fn)(uint64_t id, bool priv, void *arg), void *arg);

/* Bytes free on the cache filesystem, or -errno. */
int64_t store_free_bytes(struct store *st);

#endif
