/*
 * main.c - granaryd: argv -> config -> state -> loop -> ordered shutdown.
 *
 * Start-up order: load and validate the config (exit 2 on error, before the
 * cache is touched), open the cache directory and catalog, restore the index
 * from the catalog while dropping what a crash left behind, start the
 * workers, the catalog writer and the socket, then tell systemd we are ready.
 * Shutdown runs the same list backwards after in-flight fetches settle.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "granary_version.h"
#include "backend.h"
#include "caller.h"
#include "catalog.h"
#include "fastidx.h"
#include "fetch.h"
#include "granaryd.h"
#include "hint.h"
#include "log.h"
#include "metrics.h"
#include "peer.h"
#include "policy.h"
#include "pool.h"
#include "proto.h"
#include "recheck.h"
#include "server.h"
#include "uring.h"

#define DEFAULT_CONFIG "/etc/granary/granary.yaml"
#define STOP_GRACE_NS  (5 * NS_PER_S)

/* ---- systemd readiness, spoken directly over NOTIFY_SOCKET ---- */

static void notify(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	socklen_t len;
	int fd;

	if (!path || !path[0] || strlen(path) >= sizeof(sa.sun_path))
		return;
	memcpy(sa.sun_path, path, strlen(path));
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = '\0'; /* abstract namespace */
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, len) < 0)
		log_errno(LOG_WARNING, errno, "sd_notify failed state=%s", state);
	close(fd);
}

/* ---- start-up: restore the cache ---- */

struct restore {
	struct granaryd *d;
	uint64_t *ids;
	size_t n, cap;
	uint64_t dropped, max_file_id;
	long stray;
};

static void restore_row(const struct catalog_row *r, void *arg)
{
	struct restore *rs = arg;
	struct granaryd *d = rs->d;
	struct mount *m = granaryd_mount_find(d, r->path);
	bool priv = (r->mode & CATALOG_MODE_RESTRICTED) != 0;
	struct validator v = {0};
	int64_t size;

	if (!m || strcmp(m->cfg->path, r->mount) != 0) {
		/* its mount is gone from the config */
		catalog_del(d->cat, r->id);
		store_object_unlink(&d->store, r->id, priv);
		rs->dropped++;
		return;
	}
	/* an allow list added since: its copies leave the public tree */
	if (!priv && fetch_mount_private(m) && store_object_move(&d->store, r->id, true) == 0)
		priv = true;
	size = store_object_size(&d->store, r->id, priv);
	if (size < 0 || (uint64_t)size != r->size || index_get(d->idx, r->path)) {
		catalog_del(d->cat, r->id);
		if (size >= 0)
			store_object_unlink(&d->store, r->id, priv);
		rs->dropped++;
		return;
	}
	v.size = r->size;
	v.mtime_ns = r->mtime_ns;
	v.ino = r->ino;
	v.dev = r->dev;
	v.mode = r->mode & ~CATALOG_MODE_RESTRICTED;
	v.restricted = priv;
	v.uid = r->uid;
	v.gid = r->gid;
	snprintf(v.etag, sizeof(v.etag), "%s", r->etag ? r->etag : "");
	if (!fetch_restore(d, m, r->path, r->id, &v, r->checksum, r->pinned)) {
		rs->dropped++;
		return;
	}
	if (rs->n == rs->cap) {
		size_t ncap = rs->cap ? rs->cap * 2 : 1024;
		uint64_t *n = realloc(rs->ids, ncap * sizeof(*n));

		if (!n)
			return;
		rs->ids = n;
		rs->cap = ncap;
	}
	rs->ids[rs->n++] = r->id << 1 | priv; /* a file in the other tree is a stray */
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void restore_file(uint64_t id, bool priv, void *arg)
{
	struct restore *rs = arg;
	uint64_t key = id << 1 | priv;

	if (id > rs->max_file_id)
		rs->max_file_id = id;
	if (rs->ids && bsearch(&key, rs->ids, rs->n, sizeof(key), cmp_u64))
		return;
	/* renamed into place, but the catalog never heard of it */
	store_object_unlink(&rs->d->store, id, priv);
	rs->stray++;
}

static void restore_epoch(const char *name, uint64_t epoch, void *arg)
{
	struct granaryd *d = arg;
	uint32_t ds = policy_dataset(d->policy, name);
	struct policy_dataset_stats st;

	policy_dataset_stats(d->policy, ds, &st);
	while (st.epoch < epoch && epoch - st.epoch < 1000000) {
		policy_epoch_advance(d->policy, ds);
		policy_dataset_stats(d->policy, ds, &st);
	}
}

static int restore_cache(struct granaryd *d)
{
	struct restore rs = {.d = d};
	int64_t t0 = clock_now_ns();
	long tmp;
	int rc;

	tmp = store_clear_tmp(&d->store);
	catalog_load_datasets(d->cat, restore_epoch, d);
	rc = catalog_load(d->cat, restore_row, &rs);
	if (rc < 0) {
		log_err("cannot read the catalog dir=%s", d->cfg->cache.dir);
		free(rs.ids);
		return rc;
	}
	if (rs.n)
		qsort(rs.ids, rs.n, sizeof(*rs.ids), cmp_u64);
	store_scan(&d->store, restore_file, &rs);
	d->next_id = catalog_max_id(d->cat);
	if (rs.max_file_id > d->next_id)
		d->next_id = rs.max_file_id;
	d->next_id++;
	log_info("cache restored objects=%zu bytes=%llu dropped_rows=%llu stray_files=%ld "
		 "tmp_files=%ld ms=%.1f",
		 rs.n, (unsigned long long)d->used, (unsigned long long)rs.dropped, rs.stray,
		 tmp < 0 ? 0 : tmp, (double)(clock_now_ns() - t0) / 1e6);
	free(rs.ids);
	return 0;
}

/* ---- shutdown ---- */

static int64_t stop_deadline;

static void stop_poll(evutil_socket_t fd, short what, void *arg)
{
	struct granaryd *d = arg;

	(void)fd;
	(void)what;
	if ((d->fetches_inflight == 0 && pool_pending(d->pool) == 0 &&
	     uring_inflight(d->io) == 0) ||
	    clock_now_ns() > stop_deadline) {
		if (d->fetches_inflight)
			log_warn("stopping with fetches in flight count=%u", d->fetches_inflight);
		event_base_loopbreak(d->base);
	}
}

void granaryd_stop(struct granaryd *d)
{
	struct timeval tv = {0, 20000};

	if (d->stopping)
		return;
	d->stopping = true;
	notify("STOPPING=1");
	log_info("stopping");
	server_stop_listening(d);
	stop_deadline = clock_now_ns() + STOP_GRACE_NS;
	d->stop_timer = event_new(d->base, -1, EV_PERSIST, stop_poll, d);
	if (d->stop_timer)
		event_add(d->stop_timer, &tv);
	else
		event_base_loopbreak(d->base);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct granaryd *d = arg;

	(void)what;
	if (sig == SIGHUP) {
		int rc = log_reopen();

		if (rc < 0)
			log_errno(LOG_ERR, rc, "cannot reopen the log file");
		log_info("log reopened");
		return;
	}
	granaryd_stop(d);
}

/* ---- main ---- */

static void usage(FILE *out)
{
	fprintf(out,
		"usage: granaryd [--config FILE] [--check-config] [--print-reference]\n"
		"\n"
		"  -c, --config FILE      settings (default $GRANARY_CONFIG, else %s)\n"
		"      --check-config     validate the settings, print them in effect, exit\n"
		"      --print-reference  print the reference of every setting (Markdown)\n"
		"  -V, --version          print the version\n",
		DEFAULT_CONFIG);
}

static int setup_mounts(struct granaryd *d)
{
	char err[256];
	size_t i;

	d->mounts = calloc(d->cfg->n_mounts ? d->cfg->n_mounts : 1, sizeof(*d->mounts));
	if (!d->mounts)
		return -ENOMEM;
	for (i = 0; i < d->cfg->n_mounts; i++) {
		struct mount *m = &d->mounts[i];
		const struct config_mount *cm = &d->cfg->mounts[i];
		int rc;

		m->d = d;
		m->cfg = cm;
		m->ops = backend_for(cm->backend);
		if (!m->ops) {
			log_err("backend not available in this build mount=%s backend=%d", cm->path,
				(int)cm->backend);
			return -EOPNOTSUPP;
		}
		m->dataset = policy_dataset(d->policy, cm->dataset ? cm->dataset : cm->path);
		err[0] = '\0';
		rc = m->ops->init(m, err, sizeof(err));
		d->n_mounts++;
		if (rc < 0) {
			log_errno(LOG_ERR, rc, "mount failed mount=%s detail=\"%s\"", cm->path,
				  err);
			return rc;
		}
	}
	return 0;
}

static void teardown(struct granaryd *d)
{
	size_t i;

	peer_stop(d);
	metrics_stop(d);
	/* work that outlived the stop grace completes first, answering through the server */
	pool_destroy(d->pool);
	uring_destroy(d->io);
	server_destroy(d);
	if (d->cat)
		catalog_close(d->cat);
	for (i = 0; i < d->n_mounts; i++) {
		if (d->mounts[i].ops && d->mounts[i].ops->fini)
			d->mounts[i].ops->fini(&d->mounts[i]);
		hint_free(&d->mounts[i]);
	}
	free(d->mounts);
	recheck_stop(d);
	index_destroy(d->idx);
	fastidx_destroy(d->fx);
	if (d->objdir_path_fd >= 0)
		close(d->objdir_path_fd);
	policy_destroy(d->policy);
	store_close(&d->store);
	if (d->stop_timer)
		event_free(d->stop_timer);
	if (d->sig_term)
		event_free(d->sig_term);
	if (d->sig_int)
		event_free(d->sig_int);
	if (d->sig_hup)
		event_free(d->sig_hup);
	if (d->qos.timer)
		event_free(d->qos.timer);
	if (d->base)
		event_base_free(d->base);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"check-config", no_argument, NULL, 'k'},
		{"print-reference", no_argument, NULL, 'r'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct config cfg;
	struct granaryd d;
	const char *path = getenv("GRANARY_CONFIG");
	char err[CONFIG_ERR_MAX], dbpath[4200];
	bool check = false;
	int c, rc, status = 1;

	while ((c = getopt_long(argc, argv, "c:Vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 'k':
			check = true;
			break;
		case 'r':
			config_print_reference(stdout);
			return 0;
		case 'V':
			printf("granaryd %s\nrack: %s\n", GRANARY_VERSION,
			       peer_rack_built() ? "on" : "off");
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "granaryd: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (!path || !path[0])
		path = DEFAULT_CONFIG;

	config_init_defaults(&cfg);
	rc = config_load(&cfg, path, err, sizeof(err));
	if (rc == 0)
		rc = config_validate(&cfg, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "granaryd: %s\n", err[0] ? err : strerror(-rc));
		config_free(&cfg);
		return 2;
	}
	if (check) {
		config_print(&cfg, stdout);
		config_free(&cfg);
		return 0;
	}
	if (cfg.n_mounts == 0)
		fprintf(stderr, "granaryd: warning: %s defines no mounts; nothing will be cached\n",
			path);

	memset(&d, 0, sizeof(d));
	d.objdir_path_fd = -1;
	d.cfg = &cfg;
	d.start_mono_ns = clock_now_ns();
	rc = log_init((int)cfg.log.level, cfg.log.file);
	if (rc < 0) {
		fprintf(stderr, "granaryd: cannot open log file %s: %s\n", cfg.log.file,
			strerror(-rc));
		goto out;
	}
	signal(SIGPIPE, SIG_IGN);

	d.base = event_base_new();
	if (!d.base) {
		log_err("event_base_new failed");
		goto out;
	}
	if (store_open(&d.store, cfg.cache.dir) < 0)
		goto out;
	snprintf(dbpath, sizeof(dbpath), "%s/catalog.db", cfg.cache.dir);
	d.cat = catalog_open(dbpath, &rc);
	if (!d.cat)
		goto out;
	d.policy = policy_create(cfg.policy.eviction, &rc);
	if (!d.policy) {
		log_errno(LOG_ERR, rc, "unknown eviction policy name=%s", cfg.policy.eviction);
		goto out;
	}
	d.idx = index_create();
	if (!d.idx)
		goto out;
	d.high = (uint64_t)((double)cfg.cache.capacity * cfg.cache.high_watermark);
	d.low = (uint64_t)((double)cfg.cache.capacity * cfg.cache.low_watermark);
	d.high_cfg = d.high;
	d.low_cfg = d.low;
	if (setup_mounts(&d) < 0)
		goto out;
	if (!getenv("GRANARY_NO_FAST_PATH")) {
		/* clients open cached files themselves; off: every open asks us */
		d.fx = fastidx_create(cfg.cache.capacity, &rc);
		if (!d.fx)
			log_errno(LOG_WARNING, rc,
				  "shared index unavailable, every open uses the socket");
		d.objdir_path_fd =
			openat(d.store.dirfd, "objects", O_PATH | O_DIRECTORY | O_CLOEXEC);
	}
	if (recheck_start(&d) < 0)
		goto out;
	if (!caller_can_switch())
		log_warn("granaryd cannot act as its callers (it needs root, or CAP_SETUID and "
			 "CAP_SETGID): on NAS mounts every user but root is refused");
	if (restore_cache(&d) < 0)
		goto out;
	fetch_trim(&d);

	d.pool = pool_create(d.base, cfg.fetch.workers, &rc);
	if (!d.pool) {
		log_errno(LOG_ERR, rc, "cannot start worker threads count=%u", cfg.fetch.workers);
		goto out;
	}
	d.io = uring_create(d.base, d.pool, (int)cfg.cache.io, cfg.cache.uring_depth, &rc);
	if (!d.io)
		goto out;
	if (catalog_start(d.cat, cfg.cache.commit_interval_ns) < 0)
		goto out;
	if (server_start(&d) < 0)
		goto out;
	if (metrics_start(&d) < 0)
		goto out;
	if (peer_start(&d) < 0)
		goto out;

	d.sig_term = evsignal_new(d.base, SIGTERM, on_signal, &d);
	d.sig_int = evsignal_new(d.base, SIGINT, on_signal, &d);
	d.sig_hup = evsignal_new(d.base, SIGHUP, on_signal, &d);
	if (!d.sig_term || !d.sig_int || !d.sig_hup || evsignal_add(d.sig_term, NULL) < 0 ||
	    evsignal_add(d.sig_int, NULL) < 0 || evsignal_add(d.sig_hup, NULL) < 0) {
		log_err("cannot install signal handlers");
		goto out;
	}

	log_info("granaryd ready socket=%s cache=%s capacity=%llu used=%llu objects=%zu "
		 "mounts=%zu policy=%s io=%s pid=%d",
		 cfg.socket, cfg.cache.dir, (unsigned long long)cfg.cache.capacity,
		 (unsigned long long)d.used, index_count(d.idx), d.n_mounts, policy_name(d.policy),
		 uring_kind(d.io), (int)getpid());
	notify("READY=1");

	event_base_dispatch(d.base);

	/* connections stay until teardown(): work still running answers through them */
	catalog_flush(d.cat);
	log_info("stopped");
	status = 0;
out:
	teardown(&d);
	config_free(&cfg);
	return status;
}
