/*
 * sim.c - trace simulator: synthetic and text traces, replay through a
 * policy, and Belady's optimal replacement as the reference.
 *
 * DESIGN: a trace is a flat array of operations (reads of object indexes and
 * epoch marks) over an object table, so one trace is replayed through every
 * policy and capacity. Belady looks ahead in that array: each read knows the
 * index of the next read of its object, and the cache keeps a max-heap on it;
 * on a miss the object is kept only if some cached object is needed later
 * than it (with equal sizes that is the optimal choice; with mixed sizes it is
 * the usual greedy approximation).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "sim.h"

#define SIM_NEVER UINT64_MAX

/* splitmix64: small, fast, and the same sequence on every platform */
static uint64_t sim_rand(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static int sim_op_add(struct sim_trace *t, uint32_t kind, uint32_t arg)
{
	if (t->nops == t->capops) {
		size_t cap = t->capops ? t->capops * 2 : 1024;
		struct sim_op *ops = realloc(t->ops, cap * sizeof(*ops));

		if (!ops)
			return -ENOMEM;
		t->ops = ops;
		t->capops = cap;
	}
	t->ops[t->nops].kind = kind;
	t->ops[t->nops].arg = arg;
	t->nops++;
	if (kind == SIM_EPOCH)
		t->epochs++;
	return 0;
}

static int sim_ds_add(struct sim_trace *t, const char *name, uint32_t *id)
{
	char **names;

	for (uint32_t i = 0; i < t->nds; i++) {
		if (strcmp(t->ds_names[i], name) == 0) {
			*id = i;
			return 0;
		}
	}
	names = realloc(t->ds_names, (t->nds + 1) * sizeof(*names));
	if (!names)
		return -ENOMEM;
	t->ds_names = names;
	names[t->nds] = strdup(name);
	if (!names[t->nds])
		return -ENOMEM;
	*id = t->nds++;
	return 0;
}

static int sim_obj_add(struct sim_trace *t, char *path, uint32_t ds, uint64_t size, uint32_t *id)
{
	if (t->nobj == UINT32_MAX - 1)
		return -ENOMEM;
	if (t->nobj == t->capobj) {
		uint32_t cap = t->capobj ? t->capobj * 2 : 1024;
		struct sim_object *o = realloc(t->obj, (size_t)cap * sizeof(*o));

		if (!o)
			return -ENOMEM;
		t->obj = o;
		t->capobj = cap;
	}
	t->obj[t->nobj].path = path;
	t->obj[t->nobj].ds = ds;
	t->obj[t->nobj].size = size;
	t->total_bytes += size;
	*id = t->nobj++;
	return 0;
}

int sim_trace_synthetic(struct sim_trace *t, uint32_t objects, uint32_t epochs, uint64_t seed,
			uint64_t size)
{
	uint32_t *perm = NULL, ds, id;
	int rc;

	memset(t, 0, sizeof(*t));
	t->epochs = 1;
	if (objects == 0 || epochs == 0 || size == 0)
		return -EINVAL;
	rc = sim_ds_add(t, "synthetic", &ds);
	if (rc < 0)
		goto err;
	rc = -ENOMEM;
	perm = malloc((size_t)objects * sizeof(*perm));
	if (!perm)
		goto err;
	for (uint32_t i = 0; i < objects; i++) {
		rc = sim_obj_add(t, NULL, ds, size, &id);
		if (rc < 0)
			goto err;
		perm[i] = i;
	}
	for (uint32_t e = 0; e < epochs; e++) {
		if (e > 0) {
			rc = sim_op_add(t, SIM_EPOCH, SIM_ALL_DATASETS);
			if (rc < 0)
				goto err;
		}
		for (uint32_t i = objects - 1; i > 0; i--) {
			uint32_t j = (uint32_t)(sim_rand(&seed) % ((uint64_t)i + 1));
			uint32_t tmp = perm[i];

			perm[i] = perm[j];
			perm[j] = tmp;
		}
		for (uint32_t i = 0; i < objects; i++) {
			rc = sim_op_add(t, SIM_READ, perm[i]);
			if (rc < 0)
				goto err;
		}
	}
	free(perm);
	return 0;

err:
	free(perm);
	sim_trace_fini(t);
	return rc;
}

static uint64_t sim_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
	return h;
}

static int sim_index_grow(struct sim_trace *t)
{
	size_t cap = t->index_cap ? t->index_cap * 2 : 4096;
	uint32_t *index = calloc(cap, sizeof(*index));

	if (!index)
		return -ENOMEM;
	for (uint32_t i = 0; i < t->nobj; i++) {
		size_t slot = sim_hash(t->obj[i].path) & (cap - 1);

		while (index[slot])
			slot = (slot + 1) & (cap - 1);
		index[slot] = i + 1;
	}
	free(t->index);
	t->index = index;
	t->index_cap = cap;
	return 0;
}

/* The object named @path, added with @ds_name and @size if new. */
static int sim_obj_lookup(struct sim_trace *t, const char *ds_name, const char *path, uint64_t size,
			  uint32_t *id)
{
	size_t slot;
	uint32_t ds;
	char *copy;
	int rc;

	if ((t->nobj + 1) * 2 > t->index_cap) {
		rc = sim_index_grow(t);
		if (rc < 0)
			return rc;
	}
	slot = sim_hash(path) & (t->index_cap - 1);
	for (; t->index[slot]; slot = (slot + 1) & (t->index_cap - 1)) {
		if (strcmp(t->obj[t->index[slot] - 1].path, path) == 0) {
			*id = t->index[slot] - 1;
			return 0;
		}
	}
	rc = sim_ds_add(t, ds_name, &ds);
	if (rc < 0)
		return rc;
	copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	rc = sim_obj_add(t, copy, ds, size, id);
	if (rc < 0) {
		free(copy);
		return rc;
	}
	t->index[slot] = *id + 1;
	return 0;
}

static int sim_parse_line(struct sim_trace *t, char *line, uint64_t default_size, char *err,
			  size_t errlen)
{
	char *tok[4], *save = NULL, *end;
	const char *ds_name = "default";
	uint64_t size = default_size;
	uint32_t id, ds;
	int n = 0, rc;

	for (char *s = strtok_r(line, " \t\r\n", &save); s; s = strtok_r(NULL, " \t\r\n", &save)) {
		if (n == 4)
			break;
		tok[n++] = s;
	}
	if (n == 0)
		return 0;
	if (strcmp(tok[0], "#epoch") == 0) {
		if (n > 2) {
			snprintf(err, errlen, "\"#epoch\" takes at most a dataset name");
			return -EINVAL;
		}
		if (n == 1)
			return sim_op_add(t, SIM_EPOCH, SIM_ALL_DATASETS);
		rc = sim_ds_add(t, tok[1], &ds);
		return rc < 0 ? rc : sim_op_add(t, SIM_EPOCH, ds);
	}
	if (tok[0][0] == '#')
		return 0;
	if (n == 3) {
		ds_name = tok[0];
		errno = 0;
		size = strtoull(tok[2], &end, 10);
		if (errno || *end || end == tok[2] || tok[2][0] == '-' || size == 0) {
			snprintf(err, errlen, "size \"%s\" is not a positive integer", tok[2]);
			return -EINVAL;
		}
		tok[0] = tok[1];
	} else if (n != 1) {
		snprintf(err, errlen, "expected \"dataset path size\" or \"path\", got %d fields",
			 n);
		return -EINVAL;
	}
	rc = sim_obj_lookup(t, ds_name, tok[0], size, &id);
	return rc < 0 ? rc : sim_op_add(t, SIM_READ, id);
}

int sim_trace_parse(struct sim_trace *t, FILE *f, uint64_t default_size, char *err, size_t errlen)
{
	char *line = NULL, msg[256];
	size_t cap = 0, lineno = 0;
	int rc = 0;

	memset(t, 0, sizeof(*t));
	t->epochs = 1;
	msg[0] = 0;
	while (getline(&line, &cap, f) >= 0) {
		lineno++;
		rc = sim_parse_line(t, line, default_size, msg, sizeof(msg));
		if (rc < 0)
			break;
	}
	free(line);
	if (rc == -EINVAL)
		snprintf(err, errlen, "line %zu: %s", lineno, msg);
	else if (rc < 0)
		snprintf(err, errlen, "line %zu: %s", lineno, strerror(-rc));
	else if (ferror(f))
		rc = -EIO;
	if (rc < 0)
		sim_trace_fini(t);
	return rc;
}

void sim_trace_fini(struct sim_trace *t)
{
	for (uint32_t i = 0; i < t->nobj; i++)
		free(t->obj[i].path);
	for (uint32_t i = 0; i < t->nds; i++)
		free(t->ds_names[i]);
	free(t->obj);
	free(t->ds_names);
	free(t->ops);
	free(t->index);
	memset(t, 0, sizeof(*t));
}

void sim_result_fini(struct sim_result *res)
{
	free(res->hits);
	free(res->reads);
	memset(res, 0, sizeof(*res));
}

double sim_result_ratio(const struct sim_result *res, uint32_t first, uint32_t last)
{
	uint64_t hits = 0, reads = 0;

	for (uint32_t e = first; e <= last && e <= res->epochs; e++) {
		if (e == 0)
			continue;
		hits += res->hits[e - 1];
		reads += res->reads[e - 1];
	}
	return reads ? (double)hits / (double)reads : 0.0;
}

static int sim_result_init(struct sim_result *res, uint32_t epochs)
{
	memset(res, 0, sizeof(*res));
	res->epochs = epochs;
	res->hits = calloc(epochs, sizeof(*res->hits));
	res->reads = calloc(epochs, sizeof(*res->reads));
	if (!res->hits || !res->reads) {
		sim_result_fini(res);
		return -ENOMEM;
	}
	return 0;
}

/* State of one replay through a policy. */
struct sim_run {
	const struct sim_trace *t;
	const struct sim_options *opt;
	struct policy *p;
	uint32_t *ds;		/* trace dataset -> policy dataset */
	struct policy_entry *e; /* one per object */
	uint64_t used;
	uint64_t *next_pos; /* position of each object in the next epoch's order */
	bool *hinted;	    /* per dataset: the next order was sent this epoch */
	uint64_t *pos;	    /* per dataset: reads counted while building next_pos */
};

/* Positions of the objects in trace epoch that starts at op @from, per dataset. */
static void sim_next_order(struct sim_run *r, size_t from)
{
	const struct sim_trace *t = r->t;

	for (uint32_t i = 0; i < t->nobj; i++)
		r->next_pos[i] = POLICY_NO_USE;
	memset(r->pos, 0, t->nds * sizeof(*r->pos));
	for (size_t i = from; i < t->nops && t->ops[i].kind == SIM_READ; i++) {
		uint32_t o = t->ops[i].arg;

		if (r->next_pos[o] == POLICY_NO_USE)
			r->next_pos[o] = r->pos[t->obj[o].ds]++;
	}
}

/* Send the order of the next epoch of dataset @ds, as a sampler would. */
static void sim_send_hint(struct sim_run *r, uint32_t ds)
{
	const struct sim_trace *t = r->t;

	policy_hint_begin(r->p, r->ds[ds]);
	for (uint32_t i = 0; i < t->nobj; i++)
		if (t->obj[i].ds == ds && r->e[i].linked)
			policy_set_next_use(r->p, &r->e[i], r->next_pos[i]);
	r->hinted[ds] = true;
}

static void sim_read(struct sim_run *r, uint32_t o, struct sim_result *res, uint32_t epoch)
{
	const struct sim_object *obj = &r->t->obj[o];
	struct policy_entry *e = &r->e[o];
	uint32_t ds = r->ds[obj->ds];
	uint64_t cap = r->opt->capacity, need;

	res->reads[epoch]++;
	if (e->linked) {
		policy_access(r->p, e);
		res->hits[epoch]++;
		return;
	}
	policy_miss(r->p, ds);
	need = r->used + obj->size > cap ? r->used + obj->size - cap : 0;
	if (obj->size > cap || !policy_admit(r->p, ds, obj->size, need)) {
		res->bypassed++;
		return;
	}
	while (r->used + obj->size > cap) {
		struct policy_entry *v = policy_victim(r->p);

		if (!v)
			break;
		r->used -= v->size;
		res->evictions++;
	}
	if (r->used + obj->size > cap) {
		res->bypassed++;
		return;
	}
	e->size = obj->size;
	e->dataset = ds;
	policy_insert(r->p, e);
	r->used += obj->size;
	if (r->opt->hint && r->hinted[obj->ds])
		policy_set_next_use(r->p, e, r->next_pos[o]);
}

static int sim_run_policy(const struct sim_trace *t, const struct sim_options *opt,
			  struct sim_result *res)
{
	struct sim_run r = {.t = t, .opt = opt};
	uint32_t epoch = 0;
	bool seen_next = false;
	int rc;

	r.p = policy_create(opt->policy, &rc);
	if (!r.p)
		return rc;
	rc = -ENOMEM;
	r.ds = calloc(t->nds ? t->nds : 1, sizeof(*r.ds));
	r.e = calloc(t->nobj ? t->nobj : 1, sizeof(*r.e));
	r.next_pos = calloc(t->nobj ? t->nobj : 1, sizeof(*r.next_pos));
	r.hinted = calloc(t->nds ? t->nds : 1, sizeof(*r.hinted));
	r.pos = calloc(t->nds ? t->nds : 1, sizeof(*r.pos));
	if (!r.ds || !r.e || !r.next_pos || !r.hinted || !r.pos)
		goto out;
	for (uint32_t i = 0; i < t->nds; i++) {
		r.ds[i] = policy_dataset(r.p, t->ds_names[i]);
		if (r.ds[i] == POLICY_DATASET_NONE)
			goto out;
	}
	rc = sim_result_init(res, t->epochs);
	if (rc < 0)
		goto out;

	for (size_t i = 0; i < t->nops; i++) {
		const struct sim_op *op = &t->ops[i];

		if (op->kind == SIM_EPOCH) {
			epoch++;
			seen_next = false;
			memset(r.hinted, 0, t->nds * sizeof(*r.hinted));
			if (!opt->explicit_epochs)
				continue;
			for (uint32_t d = 0; d < t->nds; d++)
				if (op->arg == SIM_ALL_DATASETS || op->arg == d)
					policy_epoch_advance(r.p, r.ds[d]);
			continue;
		}
		sim_read(&r, op->arg, res, epoch);
		if (!opt->hint || r.hinted[t->obj[op->arg].ds])
			continue;
		/* the next epoch's order, from the mark that ends this one */
		if (!seen_next) {
			size_t j = i;

			while (j < t->nops && t->ops[j].kind == SIM_READ)
				j++;
			if (j == t->nops) {
				/* last epoch: no order to send */
				memset(r.hinted, 1, t->nds * sizeof(*r.hinted));
				continue;
			}
			sim_next_order(&r, j + 1);
			seen_next = true;
		}
		sim_send_hint(&r, t->obj[op->arg].ds);
	}
	rc = 0;
out:
	free(r.pos);
	free(r.hinted);
	free(r.next_pos);
	free(r.e);
	free(r.ds);
	policy_destroy(r.p);
	return rc;
}

/* Belady: a max-heap of cached objects on the index of their next read. */
struct sim_belady {
	uint32_t *heap; /* object indexes */
	size_t n;
	uint64_t *key;	/* per object: index of its next read */
	uint32_t *slot; /* per object: heap position + 1, 0 = not cached */
};

static void bh_set(struct sim_belady *b, size_t i, uint32_t o)
{
	b->heap[i] = o;
	b->slot[o] = (uint32_t)(i + 1);
}

static void bh_up(struct sim_belady *b, size_t i)
{
	uint32_t o = b->heap[i];

	while (i > 0 && b->key[b->heap[(i - 1) / 2]] < b->key[o]) {
		bh_set(b, i, b->heap[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	bh_set(b, i, o);
}

static void bh_down(struct sim_belady *b, size_t i)
{
	uint32_t o = b->heap[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= b->n)
			break;
		if (c + 1 < b->n && b->key[b->heap[c + 1]] > b->key[b->heap[c]])
			c++;
		if (b->key[b->heap[c]] <= b->key[o])
			break;
		bh_set(b, i, b->heap[c]);
		i = c;
	}
	bh_set(b, i, o);
}

static uint32_t bh_pop(struct sim_belady *b)
{
	uint32_t top = b->heap[0];

	b->slot[top] = 0;
	if (--b->n) {
		bh_set(b, 0, b->heap[b->n]);
		bh_down(b, 0);
	}
	return top;
}

static int sim_run_belady(const struct sim_trace *t, const struct sim_options *opt,
			  struct sim_result *res)
{
	struct sim_belady b = {0};
	uint64_t *next = NULL, *last = NULL, used = 0;
	uint32_t epoch = 0;
	int rc = -ENOMEM;

	next = malloc((t->nops ? t->nops : 1) * sizeof(*next));
	last = malloc((t->nobj ? t->nobj : 1) * sizeof(*last));
	b.heap = malloc((t->nobj ? t->nobj : 1) * sizeof(*b.heap));
	b.key = malloc((t->nobj ? t->nobj : 1) * sizeof(*b.key));
	b.slot = calloc(t->nobj ? t->nobj : 1, sizeof(*b.slot));
	if (!next || !last || !b.heap || !b.key || !b.slot)
		goto out;
	for (uint32_t o = 0; o < t->nobj; o++)
		last[o] = SIM_NEVER;
	for (size_t i = t->nops; i-- > 0;) {
		if (t->ops[i].kind != SIM_READ)
			continue;
		next[i] = last[t->ops[i].arg];
		last[t->ops[i].arg] = i;
	}
	rc = sim_result_init(res, t->epochs);
	if (rc < 0)
		goto out;

	for (size_t i = 0; i < t->nops; i++) {
		uint32_t o = t->ops[i].arg;
		uint64_t size;

		if (t->ops[i].kind == SIM_EPOCH) {
			epoch++;
			continue;
		}
		res->reads[epoch]++;
		if (b.slot[o]) {
			res->hits[epoch]++;
			b.key[o] = next[i];
			bh_up(&b, b.slot[o] - 1);
			bh_down(&b, b.slot[o] - 1);
			continue;
		}
		size = t->obj[o].size;
		/* keep it only if it is needed before what it would displace */
		while (next[i] != SIM_NEVER && size <= opt->capacity &&
		       used + size > opt->capacity && b.key[b.heap[0]] > next[i]) {
			used -= t->obj[bh_pop(&b)].size;
			res->evictions++;
		}
		if (next[i] == SIM_NEVER || used + size > opt->capacity) {
			res->bypassed++;
			continue;
		}
		b.key[o] = next[i];
		bh_set(&b, b.n++, o);
		bh_up(&b, b.n - 1);
		used += size;
	}
	rc = 0;
out:
	free(b.slot);
	free(b.key);
	free(b.heap);
	free(last);
	free(next);
	return rc;
}

int sim_run(const struct sim_trace *t, const struct sim_options *opt, struct sim_result *res)
{
	memset(res, 0, sizeof(*res));
	if (opt->policy && strcmp(opt->policy, "belady") == 0)
		return sim_run_belady(t, opt, res);
	return sim_run_policy(t, opt, res);
}
