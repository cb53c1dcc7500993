/*
 * hint.c - hinted epoch orders (see hint.h). The order's positions become the
 * policy's next-use keys of the objects already cached.
 */
#include "hint.h"

#include <stdlib.h>

#include "index.h"
#include "policy.h"

struct hint {
	size_t n; /* paths received */
	bool complete;
};

void hint_add(struct granaryd *d, struct mount *m, bool begin, bool end, const char *const *paths,
	      size_t n)
{
	size_t i;

	if (!m->hint) {
		m->hint = calloc(1, sizeof(*m->hint));
		if (!m->hint)
			return;
	}
	if (begin) {
		m->hint->n = 0;
		m->hint->complete = false;
		policy_hint_begin(d->policy, m->dataset);
	}
	for (i = 0; i < n; i++) {
		struct object *o = index_get(d->idx, paths[i]);
		uint64_t pos = m->hint->n++;

		if (o && o->state == OBJ_CACHED && o->in_policy)
			policy_set_next_use(d->policy, &o->pe, pos);
	}
	if (end)
		m->hint->complete = true;
}

size_t hint_count(const struct mount *m)
{
	return m->hint ? m->hint->n : 0;
}

void hint_free(struct mount *m)
{
	free(m->hint);
	m->hint = NULL;
}
