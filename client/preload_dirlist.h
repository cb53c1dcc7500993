/*
 * preload_dirlist.h - the entries of one directory listing of an object-store
 * mount, as the shim's readdir hands them out: filled page by page from the
 * daemon's LIST replies, read by position (telldir/seekdir are positions).
 *
 * Owns: struct preload_dirlist and the parsing of a LIST reply into it. No
 * I/O and no global state; it allocates (the entries of a large prefix do
 * not fit a fixed buffer), so the unit tests can drive it without a daemon.
 */
#ifndef GRANARY_PRELOAD_DIRLIST_H
#define GRANARY_PRELOAD_DIRLIST_H

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

/* Records are packed in chunks that never move, as in glibc's DIR buffer. */
struct preload_dirlist_chunk {
	struct preload_dirlist_chunk *next;
	size_t used;
	_Alignas(8) unsigned char data[];
};

/*
 * The entries read so far, "." and ".." first, then the daemon's in its
 * order, as struct dirent64 records of d_reclen bytes (d_off is the position
 * after the entry: telldir's answer). cookie is where the next LIST page
 * starts; more is false once the daemon sent a page without one.
 */
struct preload_dirlist {
	struct dirent64 **ents; /* by position, into the chunks */
	size_t n, cap;
	struct preload_dirlist_chunk *chunks; /* the newest first */
	uint64_t dir_hash;		      /* FNV-1a state after the directory's path */
	bool more;
	char cookie[PROTO_NAME_MAX + 1];
};

/*
 * FNV-1a of @s, never 0: the inode the shim shows for a path the daemon gives
 * none for (a directory of an object store).
 */
uint64_t preload_path_hash(const char *s);

/*
 * Start the listing of the normalised absolute @dir: "." and ".." only, more
 * to come. Returns 0 or -ENOMEM. preload_dirlist_fini() frees it.
 */
int preload_dirlist_init(struct preload_dirlist *l, const char *dir);
void preload_dirlist_fini(struct preload_dirlist *l);

/*
 * Append the entries of a successful LIST reply of @len bytes (the whole
 * message, header included): (NAME TYPE SIZE)* then COOKIE when more follow;
 * remember the cookie. Names that cannot be one path component ("", ".",
 * "..", with '/') are skipped; so is
 * a name equal to the last one appended, which a page boundary could repeat.
 * Each entry's inode is the hash of the directory's path, '/' and the name,
 * what stat shows for a directory. Returns the number of entries appended,
 * -EBADMSG for a malformed reply (nothing appended), -ENOMEM.
 */
int preload_dirlist_add_reply(struct preload_dirlist *l, const void *msg, size_t len);

/*
 * The entry at @pos (a struct dirent64, which on this ABI is struct dirent),
 * valid until preload_dirlist_fini(); NULL past the entries read so far.
 */
struct dirent64 *preload_dirlist_at(const struct preload_dirlist *l, size_t pos);

#endif
