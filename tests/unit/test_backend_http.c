/*
 * test_backend_http.c - the http backend's calls against a small in-process
 * HTTP server: head of objects and directories, a whole GET with its
 * checksum, ranged GETs reassembled in order, a blind GET that describes the
 * object itself from its first range (no HEAD; its described() hook may move
 * the rest to another descriptor; an empty object's 416; a directory's
 * redirect), a changed ETag refused, a missing key, and a JSON listing paged
 * by name.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <xxhash.h>

#include "backend.h"
#include "proto.h"

#define OBJ_SIZE (300 * 1024 + 7)

static uint8_t obj[OBJ_SIZE];
static const char *etag = "\"v1\"";
static int lfd, port;
static volatile int n_get, n_range, n_head;

static const char listing[] = "[{\"name\":\"b.bin\",\"type\":\"file\",\"size\":3},"
			      "{\"name\":\"sub\",\"type\":\"directory\"},"
			      "{\"name\":\"a.bin\",\"type\":\"file\",\"size\":1},"
			      "{\"name\":\"c.bin\",\"type\":\"file\",\"size\":5}]";

static void reply(int fd, const char *status, const char *extra, const void *body, size_t len,
		  bool head)
{
	char h[512];
	int n = snprintf(h, sizeof(h), "HTTP/1.1 %s\r\nContent-Length: %zu\r\n%s\r\n", status, len,
			 extra);

	if (write(fd, h, (size_t)n) < 0)
		return;
	if (!head && len && write(fd, body, len) < 0)
		return;
}

static void *conn_thread(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[8192];
	size_t have = 0;
	ssize_t n;

	while ((n = read(fd, buf + have, sizeof(buf) - 1 - have)) > 0) {
		char *end, method[8], path[256], extra[256], *rg, *im;
		unsigned long long a, b;
		bool head;

		have += (size_t)n;
		buf[have] = '\0';
		end = strstr(buf, "\r\n\r\n");
		if (!end)
			continue;
		*end = '\0';
		if (sscanf(buf, "%7s %255s", method, path) != 2)
			break;
		head = !strcmp(method, "HEAD");
		if (head)
			__atomic_add_fetch(&n_head, 1, __ATOMIC_SEQ_CST);
		rg = strcasestr(buf, "\r\nRange: bytes=");
		im = strcasestr(buf, "\r\nIf-Match: ");
		if (!strcmp(path, "/obj.bin")) {
			if (im && strncmp(im + 12, etag, strlen(etag))) {
				reply(fd, "412 Precondition Failed", "", NULL, 0, head);
			} else if (rg && sscanf(rg + 15, "%llu-%llu", &a, &b) == 2) {
				__atomic_add_fetch(&n_range, 1, __ATOMIC_SEQ_CST);
				snprintf(extra, sizeof(extra),
					 "ETag: %s\r\nContent-Range: bytes %llu-%llu/%d\r\n", etag,
					 a, b, OBJ_SIZE);
				reply(fd, "206 Partial Content", extra, obj + a,
				      (size_t)(b - a + 1), head);
			} else {
				if (!head)
					__atomic_add_fetch(&n_get, 1, __ATOMIC_SEQ_CST);
				snprintf(
					extra, sizeof(extra),
					"ETag: %s\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\n",
					etag);
				reply(fd, "200 OK", extra, obj, OBJ_SIZE, head);
			}
		} else if (!strcmp(path, "/empty")) {
			if (rg && !head)
				reply(fd, "416 Range Not Satisfiable",
				      "Content-Range: bytes */0\r\n", NULL, 0, head);
			else
				reply(fd, "200 OK", "ETag: \"e0\"\r\n", NULL, 0, head);
		} else if (!strcmp(path, "/dir")) {
			reply(fd, "301 Moved Permanently", "Location: http://x/dir/\r\n", NULL, 0,
			      head);
		} else if (!strcmp(path, "/dir/")) {
			reply(fd, "200 OK", "Content-Type: application/json\r\n", listing,
			      sizeof(listing) - 1, head);
		} else {
			reply(fd, "404 Not Found", "", "no", 2, head);
		}
		have -= (size_t)(end + 4 - buf);
		memmove(buf, end + 4, have);
	}
	close(fd);
	return NULL;
}

static void *accept_thread(void *arg)
{
	(void)arg;
	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		pthread_t th;

		if (fd < 0)
			return NULL;
		pthread_create(&th, NULL, conn_thread, (void *)(intptr_t)fd);
		pthread_detach(th);
	}
}

struct fixture {
	struct config cfg;
	struct config_mount cm;
	struct granaryd d;
	struct mount m;
	char url[64];
	pthread_t acceptor;
	int answered;
};

static int setup(void **state)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256];
	size_t i;

	for (i = 0; i < OBJ_SIZE; i++)
		obj[i] = (uint8_t)(i * 2654435761u >> 13);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(lfd, 64), 0);
	getsockname(lfd, (struct sockaddr *)&a, &len);
	port = ntohs(a.sin_port);
	pthread_create(&f->acceptor, NULL, accept_thread, NULL);

	config_init_defaults(&f->cfg);
	f->cfg.fetch.large_threshold = 128 * 1024;
	f->cfg.fetch.chunk_size = 64 * 1024;
	f->cfg.fetch.chunk_parallel = 3;
	f->cfg.fetch.retries = 1;
	snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d/", port);
	f->cm.path = "/m";
	f->cm.url = f->url;
	f->cm.backend = CONFIG_BACKEND_HTTP;
	f->d.cfg = &f->cfg;
	f->d.base = event_base_new();
	f->m.d = &f->d;
	f->m.cfg = &f->cm;
	f->m.ops = backend_for(CONFIG_BACKEND_HTTP);
	assert_non_null(f->m.ops);
	assert_int_equal(f->m.ops->init(&f->m, err, sizeof(err)), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	f->m.ops->fini(&f->m);
	event_base_free(f->d.base);
	shutdown(lfd, SHUT_RDWR);
	close(lfd);
	pthread_join(f->acceptor, NULL);
	free(f);
	return 0;
}

static void on_done(struct backend_call *call)
{
	struct fixture *f = call->arg;

	f->answered++;
	event_base_loopbreak(f->d.base);
}

/* Run the loop until the call just made is answered, exactly once. */
static void wait_call(struct fixture *f, int before)
{
	struct timeval tv = {10, 0};

	event_base_loopexit(f->d.base, &tv);
	event_base_dispatch(f->d.base);
	assert_int_equal(f->answered, before + 1);
}

#define CALL(f, call, expr)                                                                        \
	do {                                                                                       \
		int before_ = (f)->answered;                                                       \
		(call)->done = on_done;                                                            \
		(call)->arg = (f);                                                                 \
		expr;                                                                              \
		wait_call((f), before_);                                                           \
	} while (0)

static void check_fd(int fd, uint64_t size)
{
	uint8_t *buf = malloc(size + 1);

	assert_int_equal(pread(fd, buf, size + 1, 0), (ssize_t)size);
	assert_memory_equal(buf, obj, size);
	free(buf);
}

static void test_head(void **state)
{
	struct fixture *f = *state;
	struct backend_call c = {0};

	CALL(f, &c, f->m.ops->head_async(&f->m, "obj.bin", &c));
	assert_int_equal(c.err, 0);
	assert_int_equal(c.type, PROTO_FT_REG);
	assert_int_equal(c.v.size, OBJ_SIZE);
	assert_string_equal(c.v.etag, etag);
	assert_true(c.v.mtime_ns == 784111777 * NS_PER_S);
	assert_true(c.v.ino != 0);

	memset(&c, 0, sizeof(c));
	CALL(f, &c, f->m.ops->head_async(&f->m, "dir", &c));
	assert_int_equal(c.err, 0);
	assert_int_equal(c.type, PROTO_FT_DIR);

	memset(&c, 0, sizeof(c));
	CALL(f, &c, f->m.ops->head_async(&f->m, "absent", &c));
	assert_int_equal(c.err, -ENOENT);
}

static void test_get_whole_ranged_blind(void **state)
{
	struct fixture *f = *state;
	struct backend_call h = {0}, c;
	int fd = memfd_create("t", 0), g0, r0;

	CALL(f, &h, f->m.ops->head_async(&f->m, "obj.bin", &h));
	assert_int_equal(h.err, 0);

	/* over large_threshold: ranged GETs of chunk_size, reassembled in order */
	memset(&c, 0, sizeof(c));
	c.v = h.v;
	r0 = n_range;
	CALL(f, &c, f->m.ops->get_async(&f->m, "obj.bin", fd, &c));
	assert_int_equal(c.err, 0);
	assert_int_equal(c.bytes, OBJ_SIZE);
	assert_true(c.checksum == XXH3_64bits(obj, OBJ_SIZE));
	assert_int_equal(n_range - r0, (OBJ_SIZE + 65535) / 65536);
	check_fd(fd, OBJ_SIZE);

	/* small enough for one GET */
	f->cfg.fetch.large_threshold = 1 << 20;
	assert_int_equal(ftruncate(fd, 0), 0);
	memset(&c, 0, sizeof(c));
	c.v = h.v;
	g0 = n_get;
	CALL(f, &c, f->m.ops->get_async(&f->m, "obj.bin", fd, &c));
	assert_int_equal(c.err, 0);
	assert_int_equal(n_get - g0, 1);
	assert_true(c.checksum == XXH3_64bits(obj, OBJ_SIZE));
	check_fd(fd, OBJ_SIZE);

	/* blind: no head, the GET describes the object */
	assert_int_equal(ftruncate(fd, 0), 0);
	memset(&c, 0, sizeof(c));
	CALL(f, &c, f->m.ops->get_async(&f->m, "obj.bin", fd, &c));
	assert_int_equal(c.err, 0);
	assert_int_equal(c.bytes, OBJ_SIZE);
	assert_int_equal(c.v.size, OBJ_SIZE);
	assert_string_equal(c.v.etag, etag);
	assert_true(c.v.ino == h.v.ino);
	assert_true(backend_same_version(&c.v, &h.v));
	check_fd(fd, OBJ_SIZE);
	f->cfg.fetch.large_threshold = 128 * 1024;

	/* the ETag moved on since head: refused, nothing left in the file */
	memset(&c, 0, sizeof(c));
	c.v = h.v;
	snprintf(c.v.etag, sizeof(c.v.etag), "\"v0\"");
	CALL(f, &c, f->m.ops->get_async(&f->m, "obj.bin", fd, &c));
	assert_int_equal(c.err, -ESTALE);
	assert_int_equal(lseek(fd, 0, SEEK_END), 0);

	/* gone */
	memset(&c, 0, sizeof(c));
	c.v = h.v;
	CALL(f, &c, f->m.ops->get_async(&f->m, "absent", fd, &c));
	assert_int_equal(c.err, -ENOENT);
	close(fd);
}

static int moved_fd = -1;

/* described() hook: move what came so far to moved_fd, as fetch.c does for a memfd. */
static int move_to_other(struct backend_call *call, int *fd)
{
	uint8_t *buf = malloc(call->bytes + 1);
	ssize_t n = pread(*fd, buf, call->bytes + 1, 0);

	assert_int_equal(n, (ssize_t)call->bytes);
	assert_true(call->v.size == OBJ_SIZE);
	assert_int_equal(pwrite(moved_fd, buf, (size_t)n, 0), n);
	free(buf);
	*fd = moved_fd;
	return 0;
}

static int refuse(struct backend_call *call, int *fd)
{
	(void)fd;
	snprintf(call->msg, sizeof(call->msg), "no room");
	return -ENOSPC;
}

static void test_get_blind(void **state)
{
	struct fixture *f = *state;
	struct backend_call c;
	int fd = memfd_create("t", 0), h0 = n_head, r0 = n_range, g0 = n_get;

	/* over large_threshold: the first range, then the others in chunks; no HEAD */
	memset(&c, 0, sizeof(c));
	CALL(f, &c, f->m.ops->get_async(&f->m, "obj.bin", fd, &c));
	assert_int_equal(c.err, 0);
	assert_int_equal(c.bytes, OBJ_SIZE);
	assert_int_equal(c.v.size, OBJ_SIZE);
	assert_int_equal(c.type, PROTO_FT_REG);
	assert_true(c.checksum == XXH3_64bits(obj, OBJ_SIZE));
	assert_int_equal(n_range - r0, (OBJ_SIZE + 65535) / 65536);
	assert_int_equal(n_head - h0, 0);
	assert_int_equal(n_get - g0, 0);
	check_fd(fd, OBJ_SIZE);

	/* the hook moves the rest to another descriptor */
	moved_fd = memfd_create("m", 0);
	assert_int_equal(ftruncate(fd, 0), 0);
	memset(&c, 0, sizeof(c));
	c.described = move_to_other;
	CALL(f, &c, f->m.ops->get_async(&f->m, "obj.bin", fd, &c));
	assert_int_equal(c.err, 0);
	assert_true(c.checksum == XXH3_64bits(obj, OBJ_SIZE));
	check_fd(moved_fd, OBJ_SIZE);
	assert_int_equal(lseek(fd, 0, SEEK_END), 65536); /* only the first range */
	close(moved_fd);

	/* the hook says no: the call ends with its error, nothing more asked for */
	r0 = n_range;
	memset(&c, 0, sizeof(c));
	c.described = refuse;
	CALL(f, &c, f->m.ops->get_async(&f->m, "obj.bin", fd, &c));
	assert_int_equal(c.err, -ENOSPC);
	assert_string_equal(c.msg, "no room");
	assert_int_equal(n_range - r0, 1);

	/* an empty object: 416 to the range, described by its HEAD */
	h0 = n_head;
	memset(&c, 0, sizeof(c));
	CALL(f, &c, f->m.ops->get_async(&f->m, "empty", fd, &c));
	assert_int_equal(c.err, 0);
	assert_int_equal(c.bytes, 0);
	assert_int_equal(c.v.size, 0);
	assert_string_equal(c.v.etag, "\"e0\"");
	assert_int_equal(n_head - h0, 1);
	assert_int_equal(lseek(fd, 0, SEEK_END), 0);

	/* a directory, and nothing at all */
	memset(&c, 0, sizeof(c));
	CALL(f, &c, f->m.ops->get_async(&f->m, "dir", fd, &c));
	assert_int_equal(c.err, 0);
	assert_int_equal(c.type, PROTO_FT_DIR);
	memset(&c, 0, sizeof(c));
	CALL(f, &c, f->m.ops->get_async(&f->m, "absent", fd, &c));
	assert_int_equal(c.err, -ENOENT);
	close(fd);
}

static void test_list(void **state)
{
	struct fixture *f = *state;
	struct backend_dirent ents[2];
	struct backend_call c = {0};

	c.ents = ents;
	c.max_ents = 2;
	CALL(f, &c, f->m.ops->list_async(&f->m, "dir", "", &c));
	assert_int_equal(c.err, 0);
	assert_int_equal(c.n_ents, 2);
	assert_string_equal(ents[0].name, "a.bin");
	assert_int_equal(ents[0].type, PROTO_FT_REG);
	assert_int_equal(ents[0].size, 1);
	assert_string_equal(ents[1].name, "b.bin");
	assert_true(c.more);

	memset(&c, 0, sizeof(c));
	c.ents = ents;
	c.max_ents = 2;
	CALL(f, &c, f->m.ops->list_async(&f->m, "dir", "b.bin", &c));
	assert_int_equal(c.err, 0);
	assert_int_equal(c.n_ents, 2);
	assert_string_equal(ents[0].name, "c.bin");
	assert_string_equal(ents[1].name, "sub");
	assert_int_equal(ents[1].type, PROTO_FT_DIR);
	assert_false(c.more);

	memset(&c, 0, sizeof(c));
	c.ents = ents;
	c.max_ents = 2;
	CALL(f, &c, f->m.ops->list_async(&f->m, "nodir", "", &c));
	assert_int_equal(c.err, -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_head),
		cmocka_unit_test(test_get_whole_ranged_blind),
		cmocka_unit_test(test_get_blind),
		cmocka_unit_test(test_list),
	};

	/* the server thread may write to a connection libcurl just closed */
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, setup, teardown);
}
