/*
 * test_curl_loop.c - libcurl's multi interface on a libevent loop: a transfer
 * completes through the loop, the next one reuses the connection, and the
 * loop is destroyed cleanly with a transfer still waiting on a silent server.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "curl_loop.h"

/* A one-connection HTTP/1.1 server answering every request with "hello". */
struct server {
	int lfd;
	int port;
	bool answer; /* false: accept and stay silent */
	pthread_t th;
};

static void *serve(void *arg)
{
	static const char reply[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
	struct server *s = arg;
	char buf[4096];
	int fd = accept(s->lfd, NULL, NULL);
	ssize_t n;

	if (fd < 0)
		return NULL;
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		if (!s->answer)
			continue;
		if (memmem(buf, (size_t)n, "\r\n\r\n", 4) &&
		    write(fd, reply, sizeof(reply) - 1) < 0)
			break;
	}
	close(fd);
	return NULL;
}

static void server_start(struct server *s, bool answer)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);

	s->answer = answer;
	s->lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(s->lfd >= 0);
	assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(s->lfd, 4), 0);
	assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &len), 0);
	s->port = ntohs(a.sin_port);
	assert_int_equal(pthread_create(&s->th, NULL, serve, s), 0);
}

static void server_stop(struct server *s)
{
	shutdown(s->lfd, SHUT_RDWR);
	close(s->lfd);
	pthread_join(s->th, NULL);
}

struct xfer {
	struct curl_xfer x;
	struct event_base *base;
	char body[64];
	size_t len;
	int done;
	CURLcode rc;
};

static size_t on_body(char *p, size_t sz, size_t nm, void *arg)
{
	struct xfer *t = arg;
	size_t n = sz * nm;

	if (t->len + n < sizeof(t->body)) {
		memcpy(t->body + t->len, p, n);
		t->len += n;
	}
	return n;
}

static void on_done(struct curl_xfer *x, CURLcode rc)
{
	struct xfer *t = (struct xfer *)x;

	t->done++;
	t->rc = rc;
	assert_false(x->attached); /* detached before done() */
	event_base_loopbreak(t->base);
}

static void xfer_setup(struct xfer *t, struct event_base *base, int port)
{
	char url[64];

	memset(t, 0, sizeof(*t));
	t->base = base;
	t->x.easy = curl_easy_init();
	t->x.done = on_done;
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", port);
	curl_easy_setopt(t->x.easy, CURLOPT_URL, url);
	curl_easy_setopt(t->x.easy, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(t->x.easy, CURLOPT_WRITEDATA, t);
	curl_easy_setopt(t->x.easy, CURLOPT_NOSIGNAL, 1L);
}

static void run_for(struct event_base *base, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

static void test_complete_and_reuse(void **state)
{
	struct event_base *base = event_base_new();
	struct server s;
	struct curl_loop *cl;
	struct xfer a, b;
	long conns = -1;
	int err = 0;

	(void)state;
	server_start(&s, true);
	cl = curl_loop_create(base, 4, &err);
	assert_non_null(cl);

	xfer_setup(&a, base, s.port);
	assert_int_equal(curl_loop_add(cl, &a.x), 0);
	assert_int_equal(curl_loop_active(cl), 1);
	run_for(base, 5000);
	assert_int_equal(a.done, 1);
	assert_int_equal(a.rc, CURLE_OK);
	assert_int_equal(a.len, 5);
	assert_memory_equal(a.body, "hello", 5);
	assert_int_equal(curl_loop_active(cl), 0);

	/* the second transfer finds the first one's connection in the cache */
	xfer_setup(&b, base, s.port);
	assert_int_equal(curl_loop_add(cl, &b.x), 0);
	run_for(base, 5000);
	assert_int_equal(b.done, 1);
	assert_int_equal(b.rc, CURLE_OK);
	curl_easy_getinfo(b.x.easy, CURLINFO_NUM_CONNECTS, &conns);
	assert_int_equal(conns, 0);

	curl_easy_cleanup(a.x.easy);
	curl_easy_cleanup(b.x.easy);
	curl_loop_destroy(cl);
	server_stop(&s);
	event_base_free(base);
}

static void test_destroy_in_flight(void **state)
{
	struct event_base *base = event_base_new();
	struct server s;
	struct curl_loop *cl;
	struct xfer a, b;
	int err = 0;

	(void)state;
	server_start(&s, false);
	cl = curl_loop_create(base, 4, &err);
	assert_non_null(cl);
	xfer_setup(&a, base, s.port);
	xfer_setup(&b, base, s.port);
	assert_int_equal(curl_loop_add(cl, &a.x), 0);
	assert_int_equal(curl_loop_add(cl, &b.x), 0);
	run_for(base, 200);
	assert_int_equal(a.done, 0);
	assert_int_equal(curl_loop_active(cl), 2);

	/* one removed by its owner, the other still attached at destroy: no callbacks */
	curl_loop_remove(&a.x);
	assert_false(a.x.attached);
	curl_loop_remove(&a.x); /* twice is harmless */
	assert_int_equal(curl_loop_active(cl), 1);
	curl_loop_destroy(cl);
	assert_false(b.x.attached);
	assert_int_equal(a.done + b.done, 0);
	curl_easy_cleanup(a.x.easy);
	curl_easy_cleanup(b.x.easy);
	server_stop(&s);
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_complete_and_reuse),
		cmocka_unit_test(test_destroy_in_flight),
	};
	int rc;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	curl_global_cleanup();
	return rc;
}
