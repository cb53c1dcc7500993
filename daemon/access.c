/* access.c - the one access decision (see access.h). */
#include "access.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "backend.h"

bool access_needed(const struct caller *who)
{
	return who && who->uid != 0;
}

bool access_mount_allows(const struct mount *m, const struct caller *who)
{
	const struct config_mount *cm = m->cfg;
	size_t i;

	if (!access_needed(who) || (!cm->n_allow_uids && !cm->n_allow_gids))
		return true;
	for (i = 0; i < cm->n_allow_uids; i++)
		if (cm->allow_uids[i] == who->uid)
			return true;
	for (i = 0; i < cm->n_allow_gids; i++)
		if (who->ngroups >= 0 && caller_in_group(who, cm->allow_gids[i]))
			return true;
	return false;
}

bool access_is_admin(const struct granaryd *d, const struct caller *who)
{
	const struct config *cfg = d->cfg;
	size_t i;

	if (who->uid == 0)
		return true;
	if (who->ngroups < 0)
		return false;
	for (i = 0; i < cfg->access.n_admin_gids; i++)
		if (caller_in_group(who, cfg->access.admin_gids[i]))
			return true;
	return false;
}

static void check_work(struct pool_task *t)
{
	struct access_req *a = (struct access_req *)t;

	a->err = a->m->ops->check(a->m, mount_rel(a->m, a->path), a->who,
				  a->want == ACCESS_WRITE ? NULL : &a->seen,
				  a->want == ACCESS_WRITE ? NULL : &a->fd, a->msg, sizeof(a->msg));
	a->seen_valid = a->err == 0 && a->want == ACCESS_READ;
}

static void check_done(struct pool_task *t)
{
	struct access_req *a = (struct access_req *)t;

	if (a->err == -EACCES || a->err == -EPERM)
		a->d->c.denied++;
	if (a->err && !a->msg[0])
		snprintf(a->msg, sizeof(a->msg), "%s", strerror(-a->err));
	a->done(a);
}

void access_prepare(struct access_req *a, struct granaryd *d, struct mount *m,
		    const struct caller *who, const char *path, enum access_want want,
		    void (*done)(struct access_req *a))
{
	a->d = d;
	a->m = m;
	a->who = who;
	a->path = path;
	a->want = want;
	a->done = done;
}

void access_check(struct access_req *a)
{
	a->err = 0;
	a->msg[0] = '\0';
	a->seen_valid = false;
	a->fd = -1;
	if (!access_needed(a->who)) {
		a->done(a);
		return;
	}
	if (!a->m->ops->check) {
		/* object stores: the mount's allow lists, and nothing to write */
		if (a->want == ACCESS_WRITE) {
			a->err = -EPERM;
			snprintf(a->msg, sizeof(a->msg), "only an administrator may drop %s",
				 a->path);
		} else if (!access_mount_allows(a->m, a->who)) {
			a->d->c.denied++;
			a->err = -EACCES;
			snprintf(a->msg, sizeof(a->msg), "uid %u may not read %s",
				 (unsigned)a->who->uid, a->m->cfg->path);
		}
		a->done(a);
		return;
	}
	a->task.work = check_work;
	a->task.done = check_done;
	pool_submit(a->d->pool, &a->task);
}

bool access_same_file(const struct access_req *a, const struct validator *v)
{
	if (!a->seen_valid)
		return true;
	return a->seen.size == v->size && backend_same_version(&a->seen, v);
}
