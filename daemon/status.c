/*
 * status.c - the daemon's state as one JSON document, for STATUS and
 * `granary status --json` (see status.h).
 */
#include "granary_version.h"
#include "status.h"

#include <jansson.h>
#include <unistd.h>

#include "backend.h"
#include "catalog.h"
#include "hint.h"
#include "peer.h"
#include "policy.h"
#include "qos.h"
#include "uring.h"

static const char *consistency_name(const struct config_mount *cm)
{
	switch (cm->consistency) {
	case CONFIG_CONSISTENCY_TTL:
		return "ttl";
	case CONFIG_CONSISTENCY_IMMUTABLE:
		return "immutable";
	default:
		return "strict";
	}
}

static double ratio(uint64_t a, uint64_t b)
{
	return a + b ? (double)a / (double)(a + b) : 0.0;
}

char *server_status_json(struct granaryd *d)
{
	json_t *root, *mounts, *datasets, *counters;
	uint64_t ops, commits, errors;
	size_t i;
	char *s;

	catalog_stats(d->cat, &ops, &commits, &errors);
	counters = json_object();
	for (i = 0; i < counter_defs_n; i++)
		json_object_set_new(counters, counter_defs[i].name,
				    json_integer((json_int_t)counter_get(&d->c, &counter_defs[i])));
	json_object_set_new(counters, "inflight", json_integer((json_int_t)d->fetches_inflight));
	json_object_set_new(counters, "catalog_commits", json_integer((json_int_t)commits));
	mounts = json_array();
	for (i = 0; i < d->n_mounts; i++) {
		const struct mount *m = &d->mounts[i];

		json_array_append_new(
			mounts,
			json_pack("{ss ss ss sI sI sI sI sf sI sI sf so}", "path", m->cfg->path,
				  "backend", m->ops->name, "consistency", consistency_name(m->cfg),
				  "objects", (json_int_t)m->objects, "bytes", (json_int_t)m->bytes,
				  "hits", (json_int_t)m->hits, "misses", (json_int_t)m->misses,
				  "hit_ratio", ratio(m->hits, m->misses), "fetches",
				  (json_int_t)m->fetches, "fetch_errors",
				  (json_int_t)m->fetch_errors, "fetch_seconds", m->fetch_seconds,
				  "hint", hint_status_json(d, m)));
	}
	datasets = json_array();
	for (i = 0; i < policy_dataset_count(d->policy); i++) {
		struct policy_dataset_stats st;

		policy_dataset_stats(d->policy, (uint32_t)i, &st);
		json_array_append_new(
			datasets,
			json_pack("{ss sI sI sI sf sI sI sf sI sI sb}", "name",
				  policy_dataset_name(d->policy, (uint32_t)i), "epoch",
				  (json_int_t)st.epoch, "hits", (json_int_t)st.hits, "misses",
				  (json_int_t)st.misses, "hit_ratio", ratio(st.hits, st.misses),
				  "prev_hits", (json_int_t)st.prev_hits, "prev_misses",
				  (json_int_t)st.prev_misses, "prev_hit_ratio",
				  ratio(st.prev_hits, st.prev_misses), "entries",
				  (json_int_t)st.entries, "bytes", (json_int_t)st.bytes, "hinted",
				  st.hinted));
	}
	root = json_pack("{ss sI sI ss ss s{ss sI sI sI sI sf sf} so so so}", "version",
			 GRANARY_VERSION, "pid", (json_int_t)getpid(), "uptime_s",
			 (json_int_t)((clock_now_ns() - d->start_mono_ns) / NS_PER_S), "policy",
			 policy_name(d->policy), "io", uring_kind(d->io), "cache", "dir",
			 d->cfg->cache.dir, "capacity", (json_int_t)d->cfg->cache.capacity, "used",
			 (json_int_t)d->used, "reserved", (json_int_t)d->reserved, "objects",
			 (json_int_t)index_count(d->idx), "high_watermark",
			 d->cfg->cache.high_watermark, "low_watermark", d->cfg->cache.low_watermark,
			 "counters", counters, "mounts", mounts, "datasets", datasets);
	if (!root)
		return NULL;
	json_object_set_new(root, "qos", qos_status_json(d));
	peer_status_json(d, root);
	s = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	return s;
}
