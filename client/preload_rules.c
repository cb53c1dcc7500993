/*
 * preload_rules.c - the shim's pure logic: paths, modes, mounts, the shared
 * index, stat (see preload_rules.h).
 */
#define XXH_INLINE_ALL /* the hash is compiled in: the shim gains no library */
#include "preload_rules.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <xxhash.h>

/* ---- paths ---- */

struct joiner {
	char *out;
	size_t o;      /* bytes in out, without the NUL */
	size_t cap;    /* usable bytes of out, NUL included */
	unsigned n;    /* names in out */
	unsigned base; /* how many of them came from the base directory */
	bool inexact;
};

static void join_pop(struct joiner *j)
{
	while (j->o > 0 && j->out[j->o - 1] != '/')
		j->o--;
	if (j->o > 0)
		j->o--; /* the slash before the name */
	j->n--;
}

/* Append the names of @s to @j. @from_base: they come from the base directory. */
static int join_names(struct joiner *j, const char *s, bool from_base)
{
	size_t i = 0;

	while (s[i]) {
		size_t start, len;

		while (s[i] == '/')
			i++;
		start = i;
		while (s[i] && s[i] != '/')
			i++;
		len = i - start;
		if (len == 0 || (len == 1 && s[start] == '.'))
			continue;
		if (len == 2 && s[start] == '.' && s[start + 1] == '.') {
			if (j->n == 0)
				continue; /* "/.." is "/" */
			if (!from_base && j->n > j->base)
				j->inexact = true;
			else if (!from_base)
				j->base--;
			join_pop(j);
			continue;
		}
		if (len > PROTO_NAME_MAX)
			return -ENAMETOOLONG;
		if (j->o + 1 + len + 1 > j->cap)
			return -ENAMETOOLONG;
		j->out[j->o++] = '/';
		memcpy(j->out + j->o, s + start, len);
		j->o += len;
		j->n++;
	}
	if (from_base)
		j->base = j->n;
	return 0;
}

int preload_path_join(const char *base, const char *path, char *out, size_t outsz)
{
	struct joiner j = {.out = out, .cap = outsz};
	size_t plen;
	int rc;

	if (outsz < 2)
		return -ENAMETOOLONG;
	if (j.cap > PROTO_PATH_MAX + 1)
		j.cap = PROTO_PATH_MAX + 1;
	if (!path[0])
		return -ENOENT;
	if (path[0] != '/') {
		if (!base || base[0] != '/')
			return -EINVAL;
		rc = join_names(&j, base, true);
		if (rc < 0)
			return rc;
	}
	rc = join_names(&j, path, false);
	if (rc < 0)
		return rc;
	if (j.o == 0)
		out[j.o++] = '/';
	out[j.o] = '\0';
	/*
	 * A trailing slash or "." asks the kernel for a directory; the file
	 * under the normalised name may not be one.
	 */
	plen = strlen(path);
	if (j.o > 1 && (path[plen - 1] == '/' ||
			(path[plen - 1] == '.' && (plen == 1 || path[plen - 2] == '/'))))
		j.inexact = true;
	return j.inexact ? 1 : 0;
}

/* ---- modes and flags ---- */

int preload_mode_flags(const char *mode, int *flags)
{
	int omode, oflags = 0, i;

	switch (mode[0]) {
	case 'r':
		omode = O_RDONLY;
		break;
	case 'w':
		omode = O_WRONLY;
		oflags = O_CREAT | O_TRUNC;
		break;
	case 'a':
		omode = O_WRONLY;
		oflags = O_CREAT | O_APPEND;
		break;
	default:
		return -EINVAL;
	}
	/* glibc looks at six more characters and ignores the ones it does not know */
	for (i = 1; i < 7 && mode[i]; i++) {
		if (mode[i] == '+')
			omode = O_RDWR;
		else if (mode[i] == 'x')
			oflags |= O_EXCL;
		else if (mode[i] == 'e')
			oflags |= O_CLOEXEC;
	}
	*flags = omode | oflags;
	return 0;
}

bool preload_flags_write(int flags)
{
	return (flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC | O_APPEND));
}

bool preload_flags_passthrough(int flags, bool failopen)
{
	if (flags & (O_PATH | O_DIRECTORY))
		return true;
	return failopen && (flags & O_NOFOLLOW);
}

/* ---- the mount table ---- */

int preload_mounts_parse(struct preload_mounts *t, const void *msg, size_t len)
{
	struct proto_iter it;
	struct proto_item item;
	int32_t status;
	int cur = -1, skipped = 0, rc;
	uint32_t order = 0;

	memset(t, 0, sizeof(*t));
	proto_iter_init(&it, msg, len);
	rc = proto_next(&it, &item);
	if (rc <= 0 || item.tag != PROTO_T_STATUS || proto_item_i32(&item, &status) < 0)
		return -EBADMSG;
	if (status > 0)
		return -EBADMSG;
	if (status < 0)
		return status;
	while ((rc = proto_next(&it, &item)) > 0) {
		struct preload_mount *m;
		uint32_t v;

		if (item.tag == PROTO_T_MOUNT) {
			char *dst = t->pool + t->used;
			size_t room = sizeof(t->pool) - t->used;

			cur = -1;
			order++;
			if (t->n == PRELOAD_MOUNTS_MAX || room < 2 ||
			    proto_path_normalize((const char *)item.val, item.len, dst, room) < 0) {
				if (room)
					memset(dst, 0, room);
				skipped++;
				continue;
			}
			cur = (int)t->n++;
			m = &t->m[cur];
			m->off = t->used;
			m->len = (uint32_t)strlen(dst);
			m->backend = 0;
			m->flags = 0;
			m->ttl_ns = 0;
			m->order = order - 1;
			t->used += m->len + 1;
			continue;
		}
		if (cur >= 0 && item.tag == PROTO_T_TTL) {
			if (proto_item_u64(&item, &t->m[cur].ttl_ns) < 0)
				return -EBADMSG;
			continue;
		}
		if (cur < 0 || (item.tag != PROTO_T_BACKEND && item.tag != PROTO_T_FLAGS))
			continue;
		if (proto_item_u32(&item, &v) < 0)
			return -EBADMSG;
		if (item.tag == PROTO_T_BACKEND)
			t->m[cur].backend = v;
		else
			t->m[cur].flags = v;
	}
	if (rc < 0)
		return -EBADMSG;
	return skipped;
}

bool preload_mounts_match(const struct preload_mounts *t, const char *path, struct preload_hit *hit)
{
	uint32_t i, n = t->n, best_len = 0;
	int best = -1;

	if (n > PRELOAD_MOUNTS_MAX)
		n = PRELOAD_MOUNTS_MAX;
	for (i = 0; i < n; i++) {
		const struct preload_mount *m = &t->m[i];
		uint32_t off = m->off, len = m->len;
		const char *p;

		/* the table may be rewritten under us: stay inside it */
		if (off >= PRELOAD_POOL_SIZE || len == 0 || len > PRELOAD_POOL_SIZE - off)
			continue;
		if (best >= 0 && len <= best_len)
			continue;
		p = t->pool + off;
		if (len == 1 && p[0] == '/') {
			if (path[0] != '/')
				continue;
		} else if (strncmp(path, p, len) != 0 || (path[len] != '\0' && path[len] != '/')) {
			continue;
		}
		best = (int)i;
		best_len = len;
		hit->order = m->order;
		hit->backend = m->backend;
		hit->flags = m->flags;
		hit->ttl_ns = m->ttl_ns;
	}
	hit->index = best;
	return best >= 0;
}

const char *preload_mounts_path(const struct preload_mounts *t, int i)
{
	if (i < 0 || (uint32_t)i >= t->n || i >= PRELOAD_MOUNTS_MAX ||
	    t->m[i].off >= PRELOAD_POOL_SIZE)
		return "";
	return t->pool + t->m[i].off;
}

/* ---- the shared index ---- */

void preload_fx_keys(const char *path, size_t len, uint64_t *k1, uint64_t *k2)
{
	*k1 = XXH3_64bits_withSeed(path, len, PROTO_FX_SEED1);
	*k2 = XXH3_64bits_withSeed(path, len, PROTO_FX_SEED2);
	if ((*k1 == 0 && *k2 == 0) || (*k1 == PROTO_FX_TOMB && *k2 == PROTO_FX_TOMB))
		*k2 ^= 1;
}

uint64_t preload_fx_check(const void *map, size_t len)
{
	const struct proto_fx_hdr *h = map;
	uint64_t n;

	if (len < sizeof(*h) || __atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != PROTO_FX_MAGIC ||
	    h->version != PROTO_FX_VERSION)
		return 0;
	n = h->nslots;
	if (n == 0 || n > (len - sizeof(*h)) / sizeof(struct proto_fx_slot))
		return 0;
	return n;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ volatile("yield");
#endif
}

/*
 * Copy @s under its sequence lock. Every field is read with an atomic load:
 * the daemon writes them while we read. Returns 0 or -EAGAIN.
 */
static int fx_slot_copy(const struct proto_fx_slot *s, struct proto_fx_slot *out)
{
	int tries;

	for (tries = 0; tries < PRELOAD_FX_TRIES; tries++) {
		uint32_t s1 = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);

		if (s1 & 1) {
			cpu_relax();
			continue;
		}
		out->mount = __atomic_load_n(&s->mount, __ATOMIC_RELAXED);
		out->key1 = __atomic_load_n(&s->key1, __ATOMIC_RELAXED);
		out->key2 = __atomic_load_n(&s->key2, __ATOMIC_RELAXED);
		out->id = __atomic_load_n(&s->id, __ATOMIC_RELAXED);
		out->size = __atomic_load_n(&s->size, __ATOMIC_RELAXED);
		out->mtime_ns = __atomic_load_n(&s->mtime_ns, __ATOMIC_RELAXED);
		out->ino = __atomic_load_n(&s->ino, __ATOMIC_RELAXED);
		out->mode = __atomic_load_n(&s->mode, __ATOMIC_RELAXED);
		out->uid = __atomic_load_n(&s->uid, __ATOMIC_RELAXED);
		out->gid = __atomic_load_n(&s->gid, __ATOMIC_RELAXED);
		out->validated_s = __atomic_load_n(&s->validated_s, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&s->seq, __ATOMIC_RELAXED) == s1) {
			out->seq = s1;
			return 0;
		}
	}
	return -EAGAIN;
}

int preload_fx_lookup(const struct proto_fx_slot *slots, uint64_t nslots, uint64_t k1, uint64_t k2,
		      uint32_t order, struct proto_fx_slot *out, uint64_t *at)
{
	uint64_t start, i;

	if (nslots == 0)
		return 0;
	start = k1 % nslots;
	for (i = 0; i < PROTO_FX_PROBE && i < nslots; i++) {
		uint64_t k = start + i < nslots ? start + i : start + i - nslots;

		if (fx_slot_copy(&slots[k], out) < 0)
			return -EAGAIN;
		if (out->key1 == 0 && out->key2 == 0)
			return 0;
		if (out->key1 != k1 || out->key2 != k2)
			continue; /* another path, or a tombstone */
		if (out->mount != order)
			return 0;
		*at = k;
		return 1;
	}
	return 0;
}

bool preload_fx_fresh(const struct proto_fx_slot *slot, uint64_t ttl_ns, int64_t now_ns)
{
	int64_t at = (int64_t)slot->validated_s * 1000000000LL;

	if (!ttl_ns)
		return true;
	if (!slot->validated_s)
		return false; /* not validated since the daemon started */
	return now_ns >= at && (uint64_t)(now_ns - at) < ttl_ns;
}

bool preload_fx_same(const struct proto_fx_slot *slot, const struct stat *st)
{
	int64_t mtime = (int64_t)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;

	return (uint64_t)st->st_size == slot->size && mtime == slot->mtime_ns &&
	       (uint64_t)st->st_ino == slot->ino && st->st_mode == slot->mode &&
	       st->st_uid == slot->uid && st->st_gid == slot->gid;
}

void preload_fx_name(uint64_t id, char *out)
{
	static const char hex[] = "0123456789abcdef";
	int i;

	out[0] = hex[(id >> 4) & 0xf];
	out[1] = hex[id & 0xf];
	out[2] = '/';
	for (i = 0; i < 16; i++)
		out[3 + i] = hex[(id >> (60 - 4 * i)) & 0xf];
	out[19] = '\0';
}

/* ---- stat ---- */

int preload_srcstat_parse(const void *msg, size_t len, struct preload_srcstat *s)
{
	struct proto_iter it;
	struct proto_item item;
	bool have_size = false, have_mtime = false;
	int rc;

	memset(s, 0, sizeof(*s));
	proto_iter_init(&it, msg, len);
	while ((rc = proto_next(&it, &item)) > 0) {
		switch (item.tag) {
		case PROTO_T_SIZE:
			if (proto_item_u64(&item, &s->size) < 0)
				return -EBADMSG;
			have_size = true;
			break;
		case PROTO_T_MTIME_NS:
			if (proto_item_i64(&item, &s->mtime_ns) < 0)
				return -EBADMSG;
			have_mtime = true;
			break;
		case PROTO_T_MODE:
			if (proto_item_u32(&item, &s->mode) < 0)
				return -EBADMSG;
			break;
		case PROTO_T_TYPE:
			if (proto_item_u32(&item, &s->type) < 0)
				return -EBADMSG;
			break;
		case PROTO_T_INO:
			if (proto_item_u64(&item, &s->ino) < 0)
				return -EBADMSG;
			break;
		default:
			break;
		}
	}
	if (rc < 0 || !have_size || !have_mtime)
		return -EBADMSG;
	return 0;
}

static void ns_split(int64_t ns, int64_t *sec, long *nsec)
{
	int64_t s = ns / 1000000000LL, r = ns % 1000000000LL;

	if (r < 0) {
		r += 1000000000LL;
		s--;
	}
	*sec = s;
	*nsec = (long)r;
}

/* The full st_mode of @s: its file type from TYPE when MODE has none. */
static uint32_t src_mode(const struct preload_srcstat *s, uint32_t fallback_type)
{
	uint32_t perm = s->mode & 07777;

	if (s->mode & S_IFMT)
		return s->mode;
	if (s->type == PROTO_FT_DIR)
		return S_IFDIR | (perm ? perm : 0555);
	if (s->type == PROTO_FT_REG)
		return S_IFREG | (perm ? perm : 0444);
	return fallback_type | (perm ? perm : 0444);
}

void preload_stat_patch(struct stat *st, const struct preload_srcstat *s)
{
	int64_t sec;
	long nsec;

	ns_split(s->mtime_ns, &sec, &nsec);
	st->st_size = (off_t)s->size;
	st->st_mtim.tv_sec = (time_t)sec;
	st->st_mtim.tv_nsec = nsec;
	if (s->ino)
		st->st_ino = (ino_t)s->ino;
	st->st_mode = src_mode(s, st->st_mode & S_IFMT);
}

void preload_statx_patch(struct statx *stx, const struct preload_srcstat *s)
{
	int64_t sec;
	long nsec;

	ns_split(s->mtime_ns, &sec, &nsec);
	if (stx->stx_mask & STATX_SIZE)
		stx->stx_size = s->size;
	if (stx->stx_mask & STATX_MTIME) {
		stx->stx_mtime.tv_sec = sec;
		stx->stx_mtime.tv_nsec = (uint32_t)nsec;
	}
	if ((stx->stx_mask & STATX_INO) && s->ino)
		stx->stx_ino = s->ino;
	if (stx->stx_mask & (STATX_MODE | STATX_TYPE))
		stx->stx_mode = (uint16_t)src_mode(s, stx->stx_mode & S_IFMT);
}

void preload_stat_fill(struct stat *st, const struct preload_srcstat *s, uint64_t dev, uint32_t uid,
		       uint32_t gid)
{
	int64_t sec;
	long nsec;

	ns_split(s->mtime_ns, &sec, &nsec);
	memset(st, 0, sizeof(*st));
	st->st_dev = (dev_t)dev;
	st->st_ino = (ino_t)s->ino;
	st->st_mode = src_mode(s, S_IFREG);
	st->st_nlink = S_ISDIR(st->st_mode) ? 2 : 1;
	st->st_uid = uid;
	st->st_gid = gid;
	st->st_size = (off_t)s->size;
	st->st_blksize = 4096;
	st->st_blocks = (blkcnt_t)((s->size + 511) / 512);
	st->st_mtim.tv_sec = (time_t)sec;
	st->st_mtim.tv_nsec = nsec;
	st->st_atim = st->st_mtim;
	st->st_ctim = st->st_mtim;
}

void preload_statx_fill(struct statx *stx, const struct preload_srcstat *s, uint64_t dev,
			uint32_t uid, uint32_t gid)
{
	int64_t sec;
	long nsec;
	uint32_t mode = src_mode(s, S_IFREG);

	ns_split(s->mtime_ns, &sec, &nsec);
	memset(stx, 0, sizeof(*stx));
	stx->stx_mask = STATX_BASIC_STATS;
	stx->stx_blksize = 4096;
	stx->stx_nlink = S_ISDIR(mode) ? 2 : 1;
	stx->stx_uid = uid;
	stx->stx_gid = gid;
	stx->stx_mode = (uint16_t)mode;
	stx->stx_ino = s->ino;
	stx->stx_size = s->size;
	stx->stx_blocks = (s->size + 511) / 512;
	stx->stx_mtime.tv_sec = sec;
	stx->stx_mtime.tv_nsec = (uint32_t)nsec;
	stx->stx_atime = stx->stx_mtime;
	stx->stx_ctime = stx->stx_mtime;
	stx->stx_dev_major = major((dev_t)dev);
	stx->stx_dev_minor = minor((dev_t)dev);
}

int preload_access_check(uint32_t mode, int amode)
{
	if (amode & W_OK)
		return -EROFS;
	if ((amode & X_OK) && !S_ISDIR(mode) && !(mode & 0111))
		return -EACCES;
	return 0;
}
