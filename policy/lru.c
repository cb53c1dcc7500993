/*
 * lru.c - least recently used: the baseline policy. One list of unpinned
 * entries, least recently read at the head; datasets and epochs are only
 * counted (by policy.c), never consulted.
 */
#include <errno.h>
#include <stdlib.h>

#include "policy_impl.h"

struct lru {
	struct policy_entry head;
	uint64_t bytes; /* unpinned bytes on the list */
};

static struct lru *lru_of(struct policy *p)
{
	return p->priv;
}

static int lru_init(struct policy *p)
{
	struct lru *l = calloc(1, sizeof(*l));

	if (!l)
		return -ENOMEM;
	plist_init(&l->head);
	p->priv = l;
	return 0;
}

static void lru_fini(struct policy *p)
{
	free(p->priv);
	p->priv = NULL;
}

static void lru_link(struct lru *l, struct policy_entry *e)
{
	plist_add_tail(&l->head, e);
	e->list = POLICY_LIST_LRU;
	l->bytes += e->size;
}

static void lru_unlink(struct lru *l, struct policy_entry *e)
{
	plist_del(e);
	l->bytes -= e->size;
}

static void lru_insert(struct policy *p, struct policy_entry *e)
{
	lru_link(lru_of(p), e);
}

static void lru_access(struct policy *p, struct policy_entry *e, uint64_t old_epoch)
{
	struct lru *l = lru_of(p);

	(void)old_epoch;
	lru_unlink(l, e);
	lru_link(l, e);
}

static void lru_remove(struct policy *p, struct policy_entry *e)
{
	lru_unlink(lru_of(p), e);
}

static struct policy_entry *lru_victim(struct policy *p)
{
	struct lru *l = lru_of(p);
	struct policy_entry *e;

	if (plist_empty(&l->head))
		return NULL;
	e = l->head.next;
	lru_unlink(l, e);
	return e;
}

/* No admission filter: anything may be kept if eviction can make room. */
static bool lru_admit(struct policy *p, struct policy_ds *d, uint64_t size, uint64_t need)
{
	(void)d;
	(void)size;
	return lru_of(p)->bytes >= need;
}

/* An unpinned entry comes back as most recently used: it was just in use. */
static void lru_pin(struct policy *p, struct policy_entry *e, bool pinned)
{
	struct lru *l = lru_of(p);

	if (pinned)
		lru_unlink(l, e);
	else
		lru_link(l, e);
}

const struct policy_ops policy_lru_ops = {
	.name = "lru",
	.init = lru_init,
	.fini = lru_fini,
	.insert = lru_insert,
	.access = lru_access,
	.remove = lru_remove,
	.victim = lru_victim,
	.admit = lru_admit,
	.pin = lru_pin,
};
