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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "caller.h"
#include "granaryd.h"

struct backend_dirent {
	char name[256];
	int type; /* enum proto_ftype */
	uint64_t size;
	bool readable; /* the one listing may read it (object stores: always) */
};

/*
 * One asynchronous call of a remote backend. The caller owns it (usually
 * embedded in its own request) and fills the inputs; the backend fills the
 * outputs and calls done() on the loop thread exactly once.
 */
struct backend_call {
	void (*done)(struct backend_call *call);
	void *arg;
	bool foreground; /* a process waits on it (QoS class) */
	/* outputs */
	int err;	    /* 0 or -errno */
	char msg[256];	    /* for the user, never a credential */
	struct validator v; /* head, get: what the backend said of the object */
	int type;	    /* head: enum proto_ftype */
	bool readable;	    /* stat: the caller may read it (the daemon's answer: true) */
	uint64_t checksum;  /* get: xxh3-64 of every byte written to the fd */
	uint64_t bytes;	    /* get: bytes written */
	/*
	 * get, blind (v.ino == 0 on entry): called once on the loop thread when
	 * the first response has described the object (call->v, call->type,
	 * call->bytes = bytes already written at offset 0 of the fd), before
	 * the rest is asked for. It may hand over another descriptor in *fd,
	 * holding those bytes at the same offsets; the old one is not touched
	 * again. Returns 0 to go on, or -errno (with call->msg) to stop: the
	 * call then ends with that error, and *fd must be left as it was.
	 */
	int (*described)(struct backend_call *call, int *fd);
	/* list: the caller provides room for max_ents entries */
	struct backend_dirent *ents;
	size_t n_ents, max_ents;
	bool more; /* entries follow the last one returned */
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
	/*
	 * Describe the object or directory without opening it, as @who would
	 * see it (NULL: as the daemon): a caller who may not search the way
	 * gets the kernel's -EACCES.
	 */
	int (*stat)(struct mount *m, const char *rel, const struct caller *who, struct validator *v,
		    int *type, bool *readable, char *err, size_t errsz);
	/*
	 * List the directory @rel in name order, the entries after @after (""
	 * for the first), calling @fn until it returns non-zero; as @who
	 * would list it (NULL: as the daemon).
	 */
	int (*list)(struct mount *m, const char *rel, const struct caller *who, const char *after,
		    int (*fn)(const struct backend_dirent *de, void *arg), void *arg, char *err,
		    size_t errsz);

	/*
	 * Blocking: open @rel for reading as @who, describe what was opened in
	 * @seen (size, mtime, inode, owner, mode) and close it. 0, or the
	 * -errno the caller would get from the source itself (-EACCES when
	 * acting as @who fails). The decision binds to @seen: what is served
	 * afterwards must be that same version of that same file. With @fdp,
	 * the descriptor opened as the caller is kept there (O_RDONLY): a fetch
	 * for this caller copies that very file, never the path resolved again.
	 */
	int (*check)(struct mount *m, const char *rel, const struct caller *who,
		     struct validator *seen, int *fdp, char *err, size_t errsz);
	/*
	 * Blocking, as the daemon: describe the open source @fd (from check,
	 * as the caller), whether a copy must be private included.
	 */
	int (*describe_fd)(struct mount *m, int fd, struct validator *v, char *err, size_t errsz);
	/*
	 * Blocking, as the daemon: like stat, and also say in v->restricted
	 * whether a copy must stay private (validation, the rights re-check).
	 */
	int (*describe)(struct mount *m, const char *rel, struct validator *v, int *type, char *err,
			size_t errsz);

	/*
	 * Remote backends (http, s3) implement these instead of open, stat and
	 * list; they run on the loop thread and answer through call->done.
	 *
	 * head_async: describe @rel (size, ETag or Last-Modified, type).
	 * get_async: write the whole object at offset 0 of @fd (a staging file or
	 * a memfd) and fill bytes and checksum; call->v holds on entry what
	 * head_async said, and the object must still match it (If-Match, size):
	 * otherwise fail with -ESTALE, never a mixed object. A zeroed call->v
	 * asks for a blind GET: no HEAD first; the first ranged GET describes
	 * the object (call->v, and call->type: a directory ends the call with
	 * no bytes), and the other ranges must match what it said.
	 * list_async: the entries of directory @rel in name order after @after.
	 */
	void (*head_async)(struct mount *m, const char *rel, struct backend_call *call);
	void (*get_async)(struct mount *m, const char *rel, int fd, struct backend_call *call);
	void (*list_async)(struct mount *m, const char *rel, const char *after,
			   struct backend_call *call);
};

extern const struct backend_ops backend_posix, backend_http, backend_s3;

/*
 * The asynchronous face of every backend (backend_call.c), on the loop
 * thread: describe @rel, or list the entries of directory @rel after @after
 * into call->ents (room for call->max_ents), as @who sees them (NULL: as the
 * daemon; object stores have no per-file rights, their allow lists are the
 * caller's to check first). call->done runs once on the loop thread,
 * possibly before the function returns. @who must stay valid until then.
 */
void backend_stat_call(struct mount *m, const char *rel, const struct caller *who,
		       struct backend_call *call);
void backend_list_call(struct mount *m, const char *rel, const struct caller *who,
		       const char *after, struct backend_call *call);
/*
 * As the daemon, describe @rel for a validation: call->v with `restricted`
 * where the backend has per-file rights (posix), call->type.
 */
void backend_describe_call(struct mount *m, const char *rel, struct backend_call *call);
/*
 * The same for a source a caller's check opened (@fd, still the caller's):
 * a validation for that caller describes the file it may read, never the
 * path resolved again, which could lead where the caller may not look.
 */
void backend_describe_fd_call(struct mount *m, int fd, struct backend_call *call);

const struct backend_ops *backend_for(enum config_backend kind);

/* True when two validators describe the same version of an object. */
int backend_same_version(const struct validator *a, const struct validator *b);

#endif
