/*
 * conn.c - the local socket's connections: accept, credentials, the queue of
 * replies, and the limits per connection and per user (see conn.h).
 */
#include "conn.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "server.h"

#define READ_BUDGET	64		  /* requests read per wakeup, for fairness */
#define ACCEPT_PAUSE_NS (100LL * 1000000) /* after EMFILE */
#define LOG_INTERVAL_NS (1000LL * 1000000)
#define REFUSE_WAIT_NS	(1000LL * 1000000) /* for a refused client's first request */
#define REFUSING_MAX	64

struct outmsg {
	struct outmsg *next;
	int fds[2];
	size_t len;
	uint8_t data[];
};

/* What one uid holds: connections, and requests in flight over all of them. */
struct conn_user {
	struct conn_user *next;
	uid_t uid;
	unsigned conns;	   /* open connections */
	unsigned structs;  /* struct conn alive (closed ones waiting on requests) */
	unsigned inflight; /* requests in flight */
	bool paused;	   /* some connection waits for inflight to drop */
};

static struct log_limit limit_accept, limit_refused, limit_paused;

void conn_get(struct conn *c)
{
	c->refs++;
}

static struct conn_user *user_get(struct server *s, uid_t uid)
{
	struct conn_user *u;

	for (u = s->users; u; u = u->next)
		if (u->uid == uid)
			break;
	if (!u) {
		u = calloc(1, sizeof(*u));
		if (!u)
			return NULL;
		u->uid = uid;
		u->next = s->users;
		s->users = u;
	}
	u->structs++;
	return u;
}

static void user_put(struct server *s, struct conn_user *u)
{
	struct conn_user **pp;

	if (--u->structs > 0)
		return;
	/* after server_destroy() the list is gone with the server */
	for (pp = s ? &s->users : NULL; pp && *pp; pp = &(*pp)->next) {
		if (*pp == u) {
			*pp = u->next;
			break;
		}
	}
	free(u);
}

static void close_fds(const int fds[2])
{
	if (fds[0] >= 0)
		close(fds[0]);
	if (fds[1] >= 0)
		close(fds[1]);
}

void conn_put(struct conn *c)
{
	struct outmsg *o, *next;

	if (--c->refs > 0)
		return;
	for (o = c->out_head; o; o = next) {
		next = o->next;
		close_fds(o->fds);
		free(o);
	}
	if (c->user)
		user_put(c->d->srv, c->user);
	free(c);
}

static void conn_close(struct conn *c)
{
	struct server *s = c->d->srv;

	if (c->closed)
		return;
	c->closed = true;
	event_free(c->ev);
	close(c->fd);
	if (c->user)
		c->user->conns--;
	list_del(&c->node);
	s->nconns--;
	conn_put(c);
}

static int send_one(struct conn *c, const void *data, size_t len, const int fds[2])
{
	struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	int nfds = (fds[0] >= 0) + (fds[0] >= 0 && fds[1] >= 0);
	ssize_t n;

	if (nfds) {
		struct cmsghdr *cm;

		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(cm), fds, nfds * sizeof(int));
	}
	n = sendmsg(c->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
	return n < 0 ? -errno : 0;
}

static void conn_on_event(evutil_socket_t fd, short what, void *arg);

/*
 * May @c be read now? Not while it, or its user, has as many requests in
 * flight as allowed, nor while the client leaves as many replies unread.
 * Root is held to the per-connection limits only.
 */
static bool conn_may_read(const struct conn *c)
{
	const struct config *cfg = c->d->cfg;

	if (c->inflight >= cfg->limits.requests_per_connection ||
	    c->queued >= cfg->limits.reply_queue)
		return false;
	return c->who.uid == 0 || !c->user || c->user->inflight < cfg->limits.requests_per_uid;
}

/* Arm the connection's event for what it needs now: reading, writing. */
static void conn_arm(struct conn *c)
{
	bool wr = c->out_head != NULL, rd;

	if (c->closed)
		return;
	rd = conn_may_read(c);
	if (!rd && c->reading && c->user) {
		unsigned long long held;

		c->user->paused =
			c->user->paused || c->inflight < c->d->cfg->limits.requests_per_connection;
		if (log_limit_pass(&limit_paused, clock_now_ns(), LOG_INTERVAL_NS, &held))
			log_info("client paused at its limit uid=%u pid=%d inflight=%u queued=%u "
				 "held=%llu",
				 (unsigned)c->cred.uid, (int)c->cred.pid, c->inflight, c->queued,
				 held);
	}
	if (c->writing == wr && c->reading == rd)
		return;
	c->writing = wr;
	c->reading = rd;
	event_del(c->ev);
	if (!wr && !rd)
		return;
	event_assign(c->ev, c->d->base, c->fd,
		     EV_PERSIST | (rd ? EV_READ : 0) | (wr ? EV_WRITE : 0), conn_on_event, c);
	event_add(c->ev, NULL);
}

/* A user's requests drained below the limit: read its paused connections again. */
static void user_resume(struct server *s, struct conn_user *u)
{
	struct list_node *n, *tmp;
	struct conn *c;

	if (!u->paused || u->inflight >= s->d->cfg->limits.requests_per_uid)
		return;
	u->paused = false;
	list_for_each_safe(n, tmp, &s->conns)
	{
		c = list_entry(n, struct conn, node);
		if (c->user == u && !c->reading)
			conn_arm(c);
	}
}

void conn_req_begin(struct conn *c)
{
	c->refs++;
	c->inflight++;
	if (c->user)
		c->user->inflight++;
	if (!conn_may_read(c))
		conn_arm(c);
}

void conn_req_end(struct conn *c)
{
	struct server *s = c->d->srv;

	c->inflight--;
	if (c->user) {
		c->user->inflight--;
		if (s)
			user_resume(s, c->user);
	}
	if (!c->closed && !c->reading)
		conn_arm(c);
	conn_put(c);
}

/*
 * Send @len bytes with up to two descriptors attached (-1: none); they are
 * closed afterwards, sent or not.
 */
void conn_send2(struct conn *c, const void *data, size_t len, int fd0, int fd1)
{
	const int fds[2] = {fd0, fd0 >= 0 ? fd1 : -1};
	struct outmsg *o;
	int rc;

	if (fd0 < 0 && fd1 >= 0)
		close(fd1);
	if (c->closed) {
		close_fds(fds);
		return;
	}
	if (!c->out_head) {
		rc = send_one(c, data, len, fds);
		if (rc == 0) {
			close_fds(fds);
			c->last_ns = clock_now_ns();
			return;
		}
		if (rc != -EAGAIN && rc != -ENOBUFS) {
			close_fds(fds);
			log_debug("client gone pid=%d", (int)c->cred.pid);
			conn_close(c);
			return;
		}
	}
	o = malloc(sizeof(*o) + len);
	if (!o) {
		close_fds(fds);
		log_err("out of memory queueing a reply, closing the connection pid=%d",
			(int)c->cred.pid);
		conn_close(c);
		return;
	}
	o->next = NULL;
	o->fds[0] = fds[0];
	o->fds[1] = fds[1];
	o->len = len;
	memcpy(o->data, data, len);
	if (c->out_tail)
		c->out_tail->next = o;
	else
		c->out_head = o;
	c->out_tail = o;
	c->queued++;
	conn_arm(c);
}

void conn_send(struct conn *c, const void *data, size_t len, int fd)
{
	conn_send2(c, data, len, fd, -1);
}

static void conn_flush(struct conn *c)
{
	while (c->out_head) {
		struct outmsg *o = c->out_head;
		int rc = send_one(c, o->data, o->len, o->fds);

		if (rc == -EAGAIN || rc == -ENOBUFS)
			return;
		if (rc < 0) {
			conn_close(c);
			return;
		}
		c->out_head = o->next;
		if (!c->out_head)
			c->out_tail = NULL;
		c->queued--;
		c->last_ns = clock_now_ns();
		close_fds(o->fds);
		free(o);
	}
	conn_arm(c);
}

static void conn_read(struct conn *c)
{
	struct server *s = c->d->srv;
	int budget = READ_BUDGET;

	c->refs++; /* a reply may close it under us */
	while (budget-- > 0 && !c->closed && conn_may_read(c)) {
		union {
			char buf[CMSG_SPACE(sizeof(int) * 16)];
			struct cmsghdr align;
		} u;
		struct iovec iov = {.iov_base = s->in, .iov_len = sizeof(s->in)};
		struct msghdr mh = {.msg_iov = &iov,
				    .msg_iovlen = 1,
				    .msg_control = u.buf,
				    .msg_controllen = sizeof(u.buf)};
		struct cmsghdr *cm;
		ssize_t n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				conn_close(c);
			break;
		}
		if (n == 0) {
			conn_close(c);
			break;
		}
		/* we accept no descriptors from clients */
		for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
				int *fds = (int *)CMSG_DATA(cm);
				size_t k, nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);

				for (k = 0; k < nfd; k++)
					close(fds[k]);
			}
		}
		c->last_ns = clock_now_ns();
		server_dispatch(c, s->in, (size_t)n > PROTO_MSG_MAX ? PROTO_MSG_MAX : (size_t)n,
				(size_t)n > PROTO_MSG_MAX || (mh.msg_flags & MSG_TRUNC));
	}
	if (!c->closed && !conn_may_read(c))
		conn_arm(c);
	conn_put(c);
}

static void conn_on_event(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	c->refs++;
	if (what & EV_WRITE)
		conn_flush(c);
	if ((what & EV_READ) && !c->closed)
		conn_read(c);
	conn_put(c);
}

static void accept_resume(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;

	(void)fd;
	(void)what;
	if (s->fd >= 0 && s->ev)
		event_add(s->ev, NULL);
}

/*
 * A connection over a limit. It is answered once, to its first request (its
 * id, so the client shows the reason rather than a reset connection), and
 * closed; or closed after REFUSE_WAIT_NS when nothing comes. At most
 * REFUSING_MAX wait at once: beyond, a connection is closed at once.
 */
struct refusal {
	struct list_node node; /* in server.refusals */
	struct server *s;
	int fd;
	struct event *ev;
	char msg[160];
};

static void refusal_end(struct refusal *r)
{
	list_del(&r->node);
	r->s->refusing--;
	event_free(r->ev);
	close(r->fd);
	free(r);
}

static void refusal_on_event(evutil_socket_t fd, short what, void *arg)
{
	struct refusal *r = arg;
	struct proto_buf *b = &r->s->out;
	struct proto_hdr h;
	ssize_t n;

	if (what & EV_READ) {
		n = recv(fd, r->s->in, sizeof(r->s->in), MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n >= (ssize_t)PROTO_HDR_SIZE) {
			memcpy(&h, r->s->in, sizeof(h));
			proto_begin(b, (uint16_t)(PROTO_REPLY | (h.type & ~PROTO_REPLY)), h.id);
			proto_put_i32(b, PROTO_T_STATUS, -EUSERS);
			proto_put_str(b, PROTO_T_ERRMSG, r->msg);
			(void)!send(fd, b->data, b->len, MSG_DONTWAIT | MSG_NOSIGNAL);
			/* whatever else it sent is read, so the close is not a reset */
			while (recv(fd, r->s->in, sizeof(r->s->in), MSG_DONTWAIT) > 0)
				;
		}
	}
	refusal_end(r);
}

static void refuse(struct server *s, int fd, const struct caller *who, pid_t pid, const char *why,
		   unsigned limit)
{
	struct timeval wait = {0, (suseconds_t)(REFUSE_WAIT_NS / 1000)};
	unsigned long long held;
	struct refusal *r = NULL;

	s->d->c.refused_connections++;
	if (log_limit_pass(&limit_refused, clock_now_ns(), LOG_INTERVAL_NS, &held))
		log_warn("connection refused uid=%u pid=%d why=\"%s\" limit=%u held=%llu",
			 (unsigned)who->uid, (int)pid, why, limit, held);
	if (s->refusing < REFUSING_MAX)
		r = calloc(1, sizeof(*r));
	if (r) {
		r->s = s;
		r->fd = fd;
		snprintf(r->msg, sizeof(r->msg), "%s (limit %u)", why, limit);
		r->ev = event_new(s->d->base, fd, EV_READ, refusal_on_event, r);
	}
	if (!r || !r->ev || event_add(r->ev, &wait) < 0) {
		if (r && r->ev)
			event_free(r->ev);
		free(r);
		close(fd);
		return;
	}
	s->refusing++;
	list_add_tail(&s->refusals, &r->node);
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
	struct server *s = arg;
	struct granaryd *d = s->d;
	const struct config *cfg = d->cfg;
	const struct timeval pause = {0, (suseconds_t)(ACCEPT_PAUSE_NS / 1000)};
	struct caller who;
	struct conn *c;
	pid_t pid;
	int fd, i;

	(void)what;
	for (i = 0; i < READ_BUDGET; i++) {
		unsigned long long held;
		struct conn_user *u;

		fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EMFILE && errno != ENFILE && errno != ENOBUFS &&
			    errno != ENOMEM)
				return;
			/* out of descriptors: stop accepting for a moment, say so once */
			if (log_limit_pass(&limit_accept, clock_now_ns(), LOG_INTERVAL_NS, &held))
				log_errno(LOG_ERR, errno,
					  "accept4 failed, pausing accepts for 100 ms held=%llu",
					  held);
			event_del(s->ev);
			evtimer_add(s->accept_timer, &pause);
			return;
		}
		if (caller_from_socket(fd, &who, &pid) < 0) {
			close(fd); /* no credentials: nothing can be decided for it */
			continue;
		}
		if (s->nconns >= cfg->limits.connections) {
			refuse(s, fd, &who, pid, "too many connections to granaryd",
			       cfg->limits.connections);
			continue;
		}
		for (u = s->users; u && u->uid != who.uid; u = u->next)
			;
		if (who.uid != 0 && u && u->conns >= cfg->limits.connections_per_uid) {
			refuse(s, fd, &who, pid, "too many connections of this user",
			       cfg->limits.connections_per_uid);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			return;
		}
		c->d = d;
		c->fd = fd;
		c->refs = 1;
		c->who = who;
		c->cred.pid = pid;
		c->cred.uid = who.uid;
		c->cred.gid = who.gid;
		c->last_ns = clock_now_ns();
		c->user = user_get(s, who.uid);
		c->ev = event_new(d->base, fd, EV_READ | EV_PERSIST, conn_on_event, c);
		if (!c->user || !c->ev || event_add(c->ev, NULL) < 0) {
			if (c->ev)
				event_free(c->ev);
			if (c->user)
				user_put(s, c->user);
			close(fd);
			free(c);
			return;
		}
		c->reading = true;
		c->user->conns++;
		list_add_head(&s->conns, &c->node);
		s->nconns++;
	}
}

/*
 * Close connections that have been silent for limits.idle_timeout with
 * nothing in flight and nothing unread: a client that comes back reconnects.
 */
static void on_idle_timer(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	int64_t now = clock_now_ns(), idle = (int64_t)s->d->cfg->limits.idle_timeout_ns;
	struct list_node *n, *tmp;
	struct conn *c;

	(void)fd;
	(void)what;
	list_for_each_safe(n, tmp, &s->conns)
	{
		c = list_entry(n, struct conn, node);
		if (!c->inflight && !c->out_head && now - c->last_ns >= idle) {
			log_debug("idle connection closed uid=%u pid=%d", (unsigned)c->cred.uid,
				  (int)c->cred.pid);
			conn_close(c);
		}
	}
}

static int mkdir_parent(const char *path)
{
	char dir[PROTO_PATH_MAX + 1];
	char *slash;
	size_t i;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = '\0';
	for (i = 1; dir[i]; i++) {
		if (dir[i] != '/')
			continue;
		dir[i] = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			return -errno;
		dir[i] = '/';
	}
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/*
 * A socket file that no daemon answers on is left over from a crash and is
 * replaced; anything else at that path (a file, a directory, a link) is
 * someone's and is left alone: -EEXIST.
 */
static int claim_path(const struct sockaddr_un *sa)
{
	struct stat sb;
	int fd, rc;

	if (lstat(sa->sun_path, &sb) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(sb.st_mode))
		return -EEXIST;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	rc = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	close(fd);
	if (rc == 0)
		return -EADDRINUSE;
	unlink(sa->sun_path);
	return 0;
}

int server_start(struct granaryd *d)
{
	struct server *s = calloc(1, sizeof(*s));
	const char *path = d->cfg->socket;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int rc;

	if (!s)
		return -ENOMEM;
	s->d = d;
	list_init(&s->conns);
	list_init(&s->refusals);
	s->fd = -1;
	d->srv = s;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		log_err("socket path too long path=%s max=%zu", path, sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	rc = mkdir_parent(path);
	if (rc < 0) {
		log_errno(LOG_ERR, rc, "cannot create the socket's directory path=%s", path);
		return rc;
	}
	rc = claim_path(&sa);
	if (rc == -EEXIST) {
		log_err("the socket path holds something that is not a socket; not replacing it "
			"path=%s",
			path);
		return rc;
	}
	if (rc < 0) {
		log_errno(LOG_ERR, rc, "another granaryd is serving this socket path=%s", path);
		return rc;
	}
	s->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0)
		return -errno;
	if (bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = -errno;
		log_errno(LOG_ERR, rc, "bind failed path=%s", path);
		return rc;
	}
	if (chmod(path, d->cfg->socket_mode) < 0)
		log_errno(LOG_WARNING, errno, "chmod of socket failed path=%s", path);
	if (d->cfg->socket_group && d->cfg->socket_group[0]) {
		struct group *g = getgrnam(d->cfg->socket_group);

		if (g && chown(path, (uid_t)-1, g->gr_gid) < 0)
			log_errno(LOG_WARNING, errno, "chown of socket failed path=%s group=%s",
				  path, d->cfg->socket_group);
	}
	if (listen(s->fd, 512) < 0) {
		rc = -errno;
		log_errno(LOG_ERR, rc, "listen failed path=%s", path);
		return rc;
	}
	s->path = strdup(path);
	s->ev = event_new(d->base, s->fd, EV_READ | EV_PERSIST, on_accept, s);
	s->accept_timer = evtimer_new(d->base, accept_resume, s);
	if (!s->path || !s->ev || !s->accept_timer || event_add(s->ev, NULL) < 0)
		return -ENOMEM;
	if (d->cfg->limits.idle_timeout_ns) {
		int64_t period = (int64_t)d->cfg->limits.idle_timeout_ns / 4;
		struct timeval tv;

		if (period < NS_PER_S)
			period = NS_PER_S;
		tv = clock_timeval(period);
		s->idle_timer = event_new(d->base, -1, EV_PERSIST, on_idle_timer, s);
		if (!s->idle_timer || evtimer_add(s->idle_timer, &tv) < 0)
			return -ENOMEM;
	}
	return 0;
}

void server_stop_listening(struct granaryd *d)
{
	struct server *s = d->srv;

	if (!s || s->fd < 0)
		return;
	if (s->ev) {
		event_free(s->ev);
		s->ev = NULL;
	}
	if (s->accept_timer) {
		event_free(s->accept_timer);
		s->accept_timer = NULL;
	}
	if (s->idle_timer) {
		event_free(s->idle_timer);
		s->idle_timer = NULL;
	}
	close(s->fd);
	s->fd = -1;
	if (s->path)
		unlink(s->path);
}

void server_destroy(struct granaryd *d)
{
	struct server *s = d->srv;

	if (!s)
		return;
	server_stop_listening(d);
	while (!list_empty(&s->conns))
		conn_close(list_first(&s->conns, struct conn, node));
	while (!list_empty(&s->refusals))
		refusal_end(list_first(&s->refusals, struct refusal, node));
	/* users of connections still referenced by requests that never ended */
	while (s->users) {
		struct conn_user *u = s->users;

		s->users = u->next;
		u->next = NULL;
	}
	free(s->path);
	free(s);
	d->srv = NULL;
}

unsigned server_connections(const struct granaryd *d)
{
	return d->srv ? d->srv->nconns : 0;
}