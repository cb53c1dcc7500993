/*
 * curl_loop.c - libcurl's multi socket interface on the libevent loop (see
 * curl_loop.h). Loop thread only.
 */
#include "curl_loop.h"

#include <errno.h>
#include <stdlib.h>

#include "clock.h"
#include "log.h"

/* A socket libcurl asked us to watch. */
struct curl_sock {
	struct curl_loop *cl;
	curl_socket_t fd;
	struct event *ev;
	struct list_node node; /* in the loop's sockets */
};

struct curl_loop {
	struct event_base *base;
	CURLM *multi;
	struct event *timer;
	struct list_node xfers; /* attached */
	struct list_node socks;
	unsigned active;
};

static void xfer_unlink(struct curl_loop *cl, struct curl_xfer *x)
{
	list_del(&x->node);
	x->attached = false;
	cl->active--;
}

/* Hand finished transfers to their owners, after libcurl has returned. */
static void check_done(struct curl_loop *cl)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(cl->multi, &left))) {
		struct curl_xfer *x = NULL;
		CURLcode rc;

		if (msg->msg != CURLMSG_DONE)
			continue;
		rc = msg->data.result;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
		curl_multi_remove_handle(cl->multi, msg->easy_handle);
		if (!x)
			continue;
		xfer_unlink(cl, x);
		x->done(x, rc);
	}
}

static void on_socket(evutil_socket_t fd, short what, void *arg)
{
	struct curl_sock *s = arg;
	struct curl_loop *cl = s->cl;
	int flags = 0, running;

	if (what & EV_READ)
		flags |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		flags |= CURL_CSELECT_OUT;
	/* @s may be freed inside: use only cl afterwards */
	curl_multi_socket_action(cl->multi, fd, flags, &running);
	check_done(cl);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct curl_loop *cl = arg;
	int running;

	(void)fd;
	(void)what;
	curl_multi_socket_action(cl->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(cl);
}

static void sock_free(struct curl_sock *s)
{
	list_del(&s->node);
	if (s->ev)
		event_free(s->ev);
	free(s);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct curl_loop *cl = userp;
	struct curl_sock *s = socketp;
	short ev = EV_PERSIST;

	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (s)
			sock_free(s);
		curl_multi_assign(cl->multi, fd, NULL);
		return 0;
	}
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return -1;
		s->cl = cl;
		s->fd = fd;
		list_add_head(&cl->socks, &s->node);
		curl_multi_assign(cl->multi, fd, s);
	}
	if (what & CURL_POLL_IN)
		ev |= EV_READ;
	if (what & CURL_POLL_OUT)
		ev |= EV_WRITE;
	if (s->ev)
		event_free(s->ev);
	s->ev = event_new(cl->base, fd, ev, on_socket, s);
	if (!s->ev || event_add(s->ev, NULL) < 0) {
		log_err("cannot watch a connection's socket fd=%d", (int)fd);
		return -1;
	}
	return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct curl_loop *cl = userp;
	struct timeval tv;

	(void)multi;
	if (timeout_ms < 0) {
		evtimer_del(cl->timer);
		return 0;
	}
	/* 0 means "as soon as possible": from the loop, never from inside curl */
	tv = clock_timeval((int64_t)timeout_ms * NS_PER_MS);
	return evtimer_add(cl->timer, &tv) < 0 ? -1 : 0;
}

struct curl_loop *curl_loop_create(struct event_base *base, unsigned max_host_conns, int *err)
{
	struct curl_loop *cl = calloc(1, sizeof(*cl));

	if (!cl) {
		*err = -ENOMEM;
		return NULL;
	}
	cl->base = base;
	list_init(&cl->xfers);
	list_init(&cl->socks);
	cl->multi = curl_multi_init();
	cl->timer = evtimer_new(base, on_timer, cl);
	if (!cl->multi || !cl->timer) {
		*err = -ENOMEM;
		goto err_free;
	}
	curl_multi_setopt(cl->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(cl->multi, CURLMOPT_SOCKETDATA, cl);
	curl_multi_setopt(cl->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(cl->multi, CURLMOPT_TIMERDATA, cl);
	curl_multi_setopt(cl->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
	curl_multi_setopt(cl->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)max_host_conns);
	/* keep every connection we may open to a few hosts, idle ones too */
	curl_multi_setopt(cl->multi, CURLMOPT_MAXCONNECTS,
			  (long)(max_host_conns * 4 < 64 ? 64 : max_host_conns * 4));
	return cl;

err_free:
	if (cl->timer)
		event_free(cl->timer);
	if (cl->multi)
		curl_multi_cleanup(cl->multi);
	free(cl);
	return NULL;
}

void curl_loop_destroy(struct curl_loop *cl)
{
	if (!cl)
		return;
	while (!list_empty(&cl->xfers))
		curl_loop_remove(list_first(&cl->xfers, struct curl_xfer, node));
	curl_multi_cleanup(cl->multi);
	while (!list_empty(&cl->socks))
		sock_free(list_first(&cl->socks, struct curl_sock, node));
	event_free(cl->timer);
	free(cl);
}

int curl_loop_add(struct curl_loop *cl, struct curl_xfer *x)
{
	CURLMcode mc;

	curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
	mc = curl_multi_add_handle(cl->multi, x->easy);
	if (mc != CURLM_OK) {
		log_err("curl_multi_add_handle failed err=\"%s\"", curl_multi_strerror(mc));
		return mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO;
	}
	x->loop = cl;
	x->attached = true;
	list_add_head(&cl->xfers, &x->node);
	cl->active++;
	return 0;
}

void curl_loop_remove(struct curl_xfer *x)
{
	struct curl_loop *cl = x->loop;

	if (!x->attached || !cl)
		return;
	curl_multi_remove_handle(cl->multi, x->easy);
	xfer_unlink(cl, x);
}

unsigned curl_loop_active(const struct curl_loop *cl)
{
	return cl->active;
}
