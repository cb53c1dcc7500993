/*
 * backend.h - where objects come from: the interface every backend implements.
 *
 * Owns: struct backend_ops and the lookup by kind. Blocking operations run on
 * worker threads (pool.c), never on the loop; they may use only the mount's
 * configuration and the backend's own thread-safe state.
 *
 * @rel is the path under the mount without a leading slash ("" is the mount's
 * root). Every function returns 0 or -errno and, on error, may write one
 * sentence for the user into @err (never a credential).
 */
#ifndef GRANARY_BACKEND_H
#define GRANARY_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "granaryd.h"

struct backend_dirent {
	char name[256];
	int type; /* enum proto_ftype */
	uint64_t size;
};

struct backend_ops {
	const char *name;
	/* Start-up, on the main thread. */
	int (*init)(struct mount *m, char *err, size_t errsz);
	void (*fini)(struct mount *m);
	/*
	 * Open the object for reading and describe it. On success *fd is a
	 * descriptor positioned anywhere (read with pread).
	 */
	int (*open)(struct mount *m, const char *rel, int *fd, struct validator *v, char *err,
		    size_t errsz);
	/* Describe the object or directory without opening it. */
	int (*stat)(struct mount *m, const char *rel, struct validator *v, int *type, char *err,
		    size_t errsz);
	/*
	 * List the directory @rel in name order, the entries after @after (""
	 * for the first), calling @fn until it returns non-zero.
	 */
	int (*list)(struct mount *m, const char *rel, const char *after,
		    int (*fn)(const struct backend_dirent *de, void *arg), void *arg, char *err,
		    size_t errsz);
};

extern const struct backend_ops backend_posix;

const struct backend_ops *backend_for(enum config_backend kind);

/* True when two validators describe the same version of an object. */
int backend_same_version(const struct validator *a, const struct validator *b);

#endif
