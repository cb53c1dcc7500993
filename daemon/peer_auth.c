/*
 * peer_auth.c - the rack's authentication (see peer_impl.h): the rack secret,
 * the handshake that opens a session, session keys, and sealing and accepting
 * the messages of a session. The only file of the rack that uses libcrypto.
 *
 * DESIGN: every node keeps two sessions with every other node: the one it
 * opened (its "out" session, over which it asks for objects and sends
 * heartbeats) and the one the other opened (its "in" session, over which it
 * answers). A session is opened by a four-way handshake that proves both
 * sides hold the rack secret without sending it:
 *
 *   HELLO  initiator -> responder  sid, number, names, boot id, nonce_i,
 *                                  HMAC(secret, "hello" | transcript so far)
 *   CHAL   responder -> initiator  boot id, nonce_r, HMAC(secret, "responder" | transcript)
 *   AUTH   initiator -> responder  HMAC(secret, "initiator" | transcript)
 *   OK     responder -> initiator  (the first message under the session key)
 *
 * and its key is HMAC(secret, "session" | transcript). Every later message
 * carries a sequence number, one more than the last in its direction of its
 * session, and an HMAC-SHA256 (truncated to 128 bits) of header and body under
 * that key; a message whose MAC is wrong, or whose number is not above the
 * last one taken, is dropped.
 *
 * Nothing a node knows about a peer (up or down, its sessions, its boot id,
 * what is in flight with it) changes on a message before that message's
 * proof has verified. A HELLO without a valid proof is refused at once and
 * answered with nothing. A HELLO with one may still be a copy of an old one:
 * the responder answers it from a pending slot beside the established
 * session, which stays as it is until the AUTH of that exchange verifies;
 * only then does the new session replace the old, and a new boot id end what
 * was in flight with the previous life. A HELLO repeating or preceding the
 * established session (same sid, or an older number of the same boot), a
 * CHAL for a handshake already answered and an AUTH for no pending slot are
 * dropped. Answers go to the address the configuration gives for the name a
 * message claims, never to wherever it came from. Refusals are counted per
 * node and logged at most once a second per node name, with the number held
 * back.
 */
#include "peer_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define SECRET_MIN     16
#define REFUSED_LOG_NS (1000LL * 1000000) /* refusal lines: one a second per node name */
#define PENDING_NS     (10 * NS_PER_S)	  /* how long one waits for its AUTH */

/* ---- small helpers ---- */

static void random_bytes(void *buf, size_t len)
{
	uint8_t *b = buf;

	while (len) {
		ssize_t n = getrandom(b, len, 0);

		if (n < 0)
			continue; /* EINTR; the pool is initialised long after boot */
		b += n;
		len -= (size_t)n;
	}
}

uint64_t random_u64(void)
{
	uint64_t v;

	do
		random_bytes(&v, sizeof(v));
	while (v == 0);
	return v;
}

/* ---- authentication ---- */

/* The transcript both proofs and the session key are computed over. */
static size_t transcript(const struct session *s, const char *name_i, const char *name_r,
			 const char *label, uint8_t *out, size_t outsz)
{
	size_t n = 0, l;

#define PUT(ptr, len)                                                                              \
	do {                                                                                       \
		l = (len);                                                                         \
		if (n + l <= outsz)                                                                \
			memcpy(out + n, (ptr), l);                                                 \
		n += l;                                                                            \
	} while (0)
	PUT("granary-rack-v2 ", 16);
	PUT(label, strlen(label) + 1);
	PUT(&s->sid, sizeof(s->sid));
	PUT(&s->hseq, sizeof(s->hseq));
	PUT(name_i, strlen(name_i) + 1);
	PUT(name_r, strlen(name_r) + 1);
	PUT(&s->boot_i, sizeof(s->boot_i));
	PUT(&s->boot_r, sizeof(s->boot_r));
	PUT(s->nonce_i, NONCE_LEN);
	PUT(s->nonce_r, NONCE_LEN);
#undef PUT
	return n;
}

static void rack_hmac(const uint8_t *key, size_t keylen, const void *data, size_t len,
		      uint8_t out[KEY_LEN])
{
	unsigned int olen = KEY_LEN;

	if (!HMAC(EVP_sha256(), key, (int)keylen, data, len, out, &olen))
		memset(out, 0, KEY_LEN); /* never matches a real proof */
}

static void proof(struct peer *p, const struct session *s, const char *name_i, const char *name_r,
		  const char *label, uint8_t out[KEY_LEN])
{
	uint8_t t[512];
	size_t n = transcript(s, name_i, name_r, label, t, sizeof(t));

	rack_hmac(p->secret, p->secret_len, t, n, out);
	OPENSSL_cleanse(t, sizeof(t));
}

/* The authenticator of a message: header (its mac zeroed) and body. */
static void message_mac(const uint8_t key[KEY_LEN], const struct wire_hdr *h, const void *body,
			uint8_t out[MAC_LEN])
{
	uint8_t buf[FABRIC_MSG_MAX], full[KEY_LEN];
	struct wire_hdr copy = *h;

	memset(copy.mac, 0, MAC_LEN);
	memcpy(buf, &copy, sizeof(copy));
	if (h->len && h->len <= sizeof(buf) - sizeof(copy))
		memcpy(buf + sizeof(copy), body, h->len);
	rack_hmac(key, KEY_LEN, buf,
		  sizeof(copy) + (h->len <= sizeof(buf) - sizeof(copy) ? h->len : 0), full);
	memcpy(out, full, MAC_LEN);
}

/* Frame a message: header, then @body; authenticated when @key is given. */
int peer_msg_seal(const uint8_t *key, int type, bool init, uint64_t sid, uint64_t seq,
		  const void *body, size_t len, void *out, size_t outsz)
{
	struct wire_hdr h;

	if (sizeof(h) + len > outsz || sizeof(h) + len > FABRIC_MSG_MAX)
		return -EMSGSIZE;
	memset(&h, 0, sizeof(h));
	h.magic = WIRE_MAGIC;
	h.version = WIRE_VERSION;
	h.type = (uint8_t)type;
	h.init = init ? 1 : 0;
	h.len = (uint32_t)len;
	h.sid = sid;
	h.seq = seq;
	if (key)
		message_mac(key, &h, body, h.mac);
	memcpy(out, &h, sizeof(h));
	if (len)
		memcpy((uint8_t *)out + sizeof(h), body, len);
	return (int)(sizeof(h) + len);
}

/*
 * An authenticated message under @key: 0 when its MAC verifies and its
 * sequence number is above *@last, which then becomes that number.
 */
int peer_msg_accept(const uint8_t *key, uint64_t *last, const void *msg, size_t len)
{
	uint8_t mac[MAC_LEN];
	struct wire_hdr h;

	if (len < sizeof(h))
		return -EPROTO;
	memcpy(&h, msg, sizeof(h));
	if (h.len != len - sizeof(h))
		return -EPROTO;
	message_mac(key, &h, (const uint8_t *)msg + sizeof(h), mac);
	if (CRYPTO_memcmp(mac, h.mac, MAC_LEN) != 0)
		return -EBADMSG;
	if (h.seq <= *last)
		return -EALREADY;
	*last = h.seq;
	return 0;
}

/*
 * A HELLO (@sid, @boot, @hseq) with a valid proof, against the session the
 * same node opened last (@cur_sid, @cur_boot, @cur_hseq; all 0 before the
 * first): false when it is that session's HELLO again, or an older one of the
 * same life.
 */
bool peer_hello_fresh(uint64_t sid, uint64_t boot, uint64_t hseq, uint64_t cur_sid,
		      uint64_t cur_boot, uint64_t cur_hseq)
{
	if (sid == 0)
		return false;
	if (cur_sid == 0)
		return true;
	if (sid == cur_sid)
		return false;
	return boot != cur_boot || hseq > cur_hseq;
}

/* Read the rack secret from @path: a regular file of mode 0600 or stricter. */
int secret_load(struct peer *p, const char *path)
{
	struct stat sb;
	ssize_t n;
	size_t len = 0;
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		rc = -errno;
		log_errno(LOG_ERR, rc, "cannot open the rack secret peers.secret_file=%s", path);
		return rc;
	}
	if (fstat(fd, &sb) < 0) {
		rc = -errno;
		log_errno(LOG_ERR, rc, "cannot stat the rack secret peers.secret_file=%s", path);
		goto out;
	}
	if (!S_ISREG(sb.st_mode)) {
		log_err("the rack secret is not a regular file peers.secret_file=%s", path);
		rc = -EINVAL;
		goto out;
	}
	if (sb.st_mode & 077) {
		log_err("the rack secret must not be readable by group or others "
			"peers.secret_file=%s mode=%04o (chmod 600 %s)",
			path, (unsigned)(sb.st_mode & 07777), path);
		rc = -EPERM;
		goto out;
	}
	while (len < sizeof(p->secret) &&
	       (n = read(fd, p->secret + len, sizeof(p->secret) - len))) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			log_errno(LOG_ERR, rc, "cannot read the rack secret peers.secret_file=%s",
				  path);
			goto out;
		}
		len += (size_t)n;
	}
	/* a trailing newline from an editor or echo is not part of the secret */
	while (len && (p->secret[len - 1] == '\n' || p->secret[len - 1] == '\r' ||
		       p->secret[len - 1] == ' ' || p->secret[len - 1] == '\t'))
		len--;
	if (len < SECRET_MIN) {
		log_err("the rack secret is too short peers.secret_file=%s bytes=%zu minimum=%d "
			"(head -c 32 /dev/urandom | base64 > FILE)",
			path, len, SECRET_MIN);
		rc = -EINVAL;
		goto out;
	}
	p->secret_len = len;
out:
	close(fd);
	return rc;
}

/* Forget the rack secret and every session key: the rack is going away. */
void secrets_wipe(struct peer *p)
{
	OPENSSL_cleanse(p->secret, sizeof(p->secret));
	for (size_t i = 0; i < p->n_nodes; i++) {
		OPENSSL_cleanse(&p->nodes[i].os, sizeof(p->nodes[i].os));
		OPENSSL_cleanse(&p->nodes[i].is, sizeof(p->nodes[i].is));
		OPENSSL_cleanse(p->nodes[i].pend, sizeof(p->nodes[i].pend));
	}
}

/* ---- sending ---- */

/*
 * Send a message of @type to @n on the session @s (@init: this node opened
 * it). With @authed the message carries the session's next sequence number
 * and a MAC under its key; handshake messages go without, with the HELLO's
 * number.
 */
static int send_raw(struct peer *p, struct node *n, int type, bool init, struct session *s,
		    bool authed, const void *body, size_t len)
{
	uint8_t buf[FABRIC_MSG_MAX];
	int rc;

	if (!p->fab)
		return -ENOTCONN;
	rc = peer_msg_seal(authed ? s->key : NULL, type, init, s->sid, authed ? s->tx + 1 : s->hseq,
			   body, len, buf, sizeof(buf));
	if (rc < 0)
		return rc;
	if (authed)
		s->tx++; /* a number is never used twice, sent or not */
	return fabric_send(p->fab, n->fid, buf, (size_t)rc);
}

/* On this node's own session with @n (requests, heartbeats). */
int send_out(struct peer *p, struct node *n, int type, const void *body, size_t len)
{
	return send_raw(p, n, type, true, &n->os, true, body, len);
}

/* On @n's session with this node (answers). */
int send_in(struct peer *p, struct node *n, int type, const void *body, size_t len)
{
	return send_raw(p, n, type, false, &n->is, true, body, len);
}

/* ---- the handshake ---- */

/*
 * A message naming @n failed its proof at @step ("hello", "chal", "auth"):
 * count it, and say so at most once a second for this name. The name is the
 * one the message claims; where it came from is not known here.
 */
static void node_refused(struct peer *p, struct node *n, const char *step)
{
	unsigned long long held;

	n->refused++;
	p->refused++;
	if (!log_limit_pass(&n->refused_log, clock_now_ns(), REFUSED_LOG_NS, &held))
		return;
	if (!strcmp(step, "chal"))
		log_warn("peer failed authentication: it does not hold the rack secret "
			 "name=%s address=%s refused=%llu held=%llu",
			 n->name, n->address, (unsigned long long)n->refused, held);
	else
		log_warn("peer refused: wrong rack secret name=%s step=%s refused=%llu held=%llu",
			 n->name, step, (unsigned long long)n->refused, held);
}

/* An authenticated message on a session with @n was dropped (@err from peer_msg_accept). */
void node_dropped(struct peer *p, struct node *n, int err)
{
	unsigned long long held;

	if (err == -EALREADY) {
		n->replayed++;
		p->replayed++;
	} else {
		p->bad_macs++;
	}
	if (log_limit_pass(&n->dropped_log, clock_now_ns(), REFUSED_LOG_NS, &held))
		log_warn("message dropped name=%s reason=\"%s\" held=%llu", n->name,
			 err == -EALREADY ? "replayed or out of order" : "bad authenticator", held);
}

/* A handshake message with nothing to do with it: counted as a replay. */
static void node_stale(struct peer *p, struct node *n)
{
	n->replayed++;
	p->replayed++;
}

void send_hello(struct peer *p, struct node *n)
{
	struct m_hello h;

	memset(&h, 0, sizeof(h));
	memset(&n->os, 0, sizeof(n->os));
	n->os.sid = random_u64();
	n->os.hseq = ++p->hseq;
	n->os.boot_i = p->boot;
	random_bytes(n->os.nonce_i, NONCE_LEN);
	snprintf(h.from, sizeof(h.from), "%s", p->self->name);
	snprintf(h.to, sizeof(h.to), "%s", n->name);
	h.boot = p->boot;
	memcpy(h.nonce, n->os.nonce_i, NONCE_LEN);
	proof(p, &n->os, p->self->name, n->name, "hello", h.proof);
	n->out = OUT_HELLO;
	n->hello_ns = clock_now_ns();
	send_raw(p, n, M_HELLO, true, &n->os, false, &h, sizeof(h));
}

/* The slot for a new pending handshake of @n: a free or stale one, else the oldest. */
static struct pending *pending_slot(struct node *n, int64_t now)
{
	struct pending *oldest = &n->pend[0];

	for (int i = 0; i < PENDING_MAX; i++) {
		struct pending *pd = &n->pend[i];

		if (!pd->used || now - pd->at_ns > PENDING_NS)
			return pd;
		if (pd->at_ns < oldest->at_ns)
			oldest = pd;
	}
	return oldest;
}

void on_hello(struct peer *p, const struct wire_hdr *hdr, const struct m_hello *m)
{
	char from[NODE_NAME_MAX], to[NODE_NAME_MAX];
	uint8_t want[KEY_LEN];
	struct pending *pd;
	struct session s;
	struct node *n;
	struct m_chal c;
	int64_t now = clock_now_ns();

	if (p->leaving)
		return;
	memcpy(from, m->from, sizeof(from));
	memcpy(to, m->to, sizeof(to));
	from[sizeof(from) - 1] = to[sizeof(to) - 1] = '\0';
	n = node_by_name(p, from);
	if (!n || n->self || strcmp(to, p->self->name) != 0) {
		unsigned long long held;

		p->unknown_nodes++;
		if (log_limit_pass(&p->unknown_log, now, REFUSED_LOG_NS, &held))
			log_warn(
				"hello from a node not in peers.nodes refused name=\"%s\" to=\"%s\" "
				"held=%llu",
				from, to, held);
		return;
	}
	memset(&s, 0, sizeof(s));
	s.sid = hdr->sid;
	s.hseq = hdr->seq;
	s.boot_i = m->boot;
	memcpy(s.nonce_i, m->nonce, NONCE_LEN);
	proof(p, &s, n->name, p->self->name, "hello", want);
	if (CRYPTO_memcmp(want, m->proof, KEY_LEN) != 0) {
		OPENSSL_cleanse(&s, sizeof(s));
		node_refused(p, n, "hello");
		return;
	}
	/* proven, but perhaps a copy: of the established session, or of one under way */
	if (!peer_hello_fresh(s.sid, s.boot_i, s.hseq, n->is.sid, n->is.boot_i, n->is.hseq)) {
		node_stale(p, n);
		return;
	}
	for (int i = 0; i < PENDING_MAX; i++) {
		if (n->pend[i].used && n->pend[i].s.sid == s.sid) {
			node_stale(p, n);
			return;
		}
	}
	/* answered beside the established session, which stays until AUTH */
	s.boot_r = p->boot;
	random_bytes(s.nonce_r, NONCE_LEN);
	pd = pending_slot(n, now);
	OPENSSL_cleanse(pd, sizeof(*pd));
	pd->used = true;
	pd->at_ns = now;
	pd->s = s;
	memset(&c, 0, sizeof(c));
	c.boot = p->boot;
	memcpy(c.nonce, s.nonce_r, NONCE_LEN);
	proof(p, &s, n->name, p->self->name, "responder", c.proof);
	send_raw(p, n, M_CHAL, false, &pd->s, false, &c, sizeof(c));
}

void on_chal(struct peer *p, const struct wire_hdr *hdr, const struct m_chal *m)
{
	uint8_t want[KEY_LEN], t[512];
	struct session s;
	struct m_auth a;
	struct node *n = NULL;
	size_t len;

	for (size_t i = 0; i < p->n_nodes; i++) {
		if (!p->nodes[i].self && p->nodes[i].out == OUT_HELLO &&
		    p->nodes[i].os.sid == hdr->sid)
			n = &p->nodes[i];
	}
	if (!n) {
		p->unknown_sessions++; /* an answer to an older HELLO, or a copy */
		return;
	}
	/* checked on a copy: the handshake under way is left as it is unless this verifies */
	s = n->os;
	s.boot_r = m->boot;
	memcpy(s.nonce_r, m->nonce, NONCE_LEN);
	proof(p, &s, p->self->name, n->name, "responder", want);
	if (CRYPTO_memcmp(want, m->proof, KEY_LEN) != 0) {
		OPENSSL_cleanse(&s, sizeof(s));
		node_refused(p, n, "chal");
		return;
	}
	node_boot(p, n, m->boot);
	n->os = s;
	OPENSSL_cleanse(&s, sizeof(s));
	proof(p, &n->os, p->self->name, n->name, "initiator", a.proof);
	len = transcript(&n->os, p->self->name, n->name, "session", t, sizeof(t));
	rack_hmac(p->secret, p->secret_len, t, len, n->os.key);
	OPENSSL_cleanse(t, sizeof(t));
	n->os.tx = n->os.rx = 0;
	n->out = OUT_AUTH;
	send_raw(p, n, M_AUTH, true, &n->os, false, &a, sizeof(a));
}

void on_auth(struct peer *p, const struct wire_hdr *hdr, const struct m_auth *m)
{
	uint8_t want[KEY_LEN], t[512];
	struct pending *pd = NULL;
	struct node *n = NULL;
	int64_t now = clock_now_ns();
	size_t len;

	for (size_t i = 0; i < p->n_nodes && !pd; i++) {
		if (p->nodes[i].self)
			continue;
		for (int j = 0; j < PENDING_MAX; j++) {
			struct pending *x = &p->nodes[i].pend[j];

			if (x->used && x->s.sid == hdr->sid && now - x->at_ns <= PENDING_NS) {
				n = &p->nodes[i];
				pd = x;
				break;
			}
		}
	}
	if (!pd) {
		p->unknown_sessions++; /* already proven, expired, or never answered */
		return;
	}
	proof(p, &pd->s, n->name, p->self->name, "initiator", want);
	if (CRYPTO_memcmp(want, m->proof, KEY_LEN) != 0) {
		node_refused(p, n, "auth");
		return;
	}
	/* proven: now, and only now, the new session replaces the old one */
	node_boot(p, n, pd->s.boot_i);
	if (n->in != IN_NONE)
		pushes_abort_node(p, n); /* they belonged to its previous session */
	OPENSSL_cleanse(&n->is, sizeof(n->is));
	n->is = pd->s;
	OPENSSL_cleanse(pd, sizeof(*pd));
	len = transcript(&n->is, n->name, p->self->name, "session", t, sizeof(t));
	rack_hmac(p->secret, p->secret_len, t, len, n->is.key);
	OPENSSL_cleanse(t, sizeof(t));
	n->is.tx = n->is.rx = 0;
	n->in = IN_UP;
	n->handshakes++;
	send_in(p, n, M_OK, NULL, 0);
	/* it is talking: ours to it need not wait for the next heartbeat */
	if (n->out == OUT_IDLE)
		send_hello(p, n);
}
