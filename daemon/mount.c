/* mount.c - finding the mount that serves a path or a dataset (see granaryd.h). */
#include <string.h>

#include "granaryd.h"
#include "policy.h"
#include "proto.h"

struct mount *granaryd_mount_find(struct granaryd *d, const char *path)
{
	struct mount *best = NULL;
	size_t i, best_len = 0;

	for (i = 0; i < d->n_mounts; i++) {
		const char *mp = d->mounts[i].cfg->path;
		size_t n = strlen(mp);

		if (n >= best_len && proto_path_under(path, mp)) {
			best = &d->mounts[i];
			best_len = n;
		}
	}
	return best;
}

struct mount *granaryd_mount_by_dataset(struct granaryd *d, const char *name)
{
	size_t i;

	for (i = 0; i < d->n_mounts; i++) {
		if (!strcmp(policy_dataset_name(d->policy, d->mounts[i].dataset), name) ||
		    !strcmp(d->mounts[i].cfg->path, name))
			return &d->mounts[i];
	}
	return NULL;
}
