/*
 * test_peer_auth.c - the rack's acceptance rules: an authenticated message is
 * taken only when its MAC verifies under the session key and its sequence
 * number is above the last one taken (a copy or an older message is dropped
 * and changes nothing), the number is covered by the MAC, and a HELLO that
 * repeats or precedes the established session is not fresh.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "granaryd.h"
#include "peer.h"

/* The wire header of peer_impl.h: magic, version, type, init, pad, len, pad, sid, seq, mac. */
#define HDR_LEN	 48
#define SEQ_OFF	 24
#define MAC_OFF	 32
#define MSG_MAX	 4608
#define T_HB	 5
#define T_GET	 8
#define SID	 0x1122334455667788ull
#define BOOT_A	 0xa1a2a3a4a5a6a7a8ull
#define BOOT_B	 0xb1b2b3b4b5b6b7b8ull
#define OTHERSID 0x99aabbccddeeff00ull

struct msg {
	uint8_t b[MSG_MAX];
	size_t len;
};

static const uint8_t key[PEER_KEY_LEN] = "0123456789abcdef0123456789abcde";
static const uint8_t other_key[PEER_KEY_LEN] = "fedcba9876543210fedcba987654321";

static void seal(struct msg *m, const uint8_t *k, int type, uint64_t seq, const char *body)
{
	int n = peer_msg_seal(k, type, true, SID, seq, body, body ? strlen(body) : 0, m->b,
			      sizeof(m->b));

	assert_true(n >= HDR_LEN);
	m->len = (size_t)n;
}

static void test_in_order_messages_are_taken(void **state)
{
	uint64_t last = 0;
	struct msg m;

	(void)state;
	for (uint64_t seq = 1; seq <= 5; seq++) {
		seal(&m, key, T_HB, seq, "heartbeat");
		assert_int_equal(peer_msg_accept(key, &last, m.b, m.len), 0);
		assert_true(last == seq);
	}
	/* a gap (a message lost on the way) is fine: newer is what counts */
	seal(&m, key, T_GET, 9, "/data/a");
	assert_int_equal(peer_msg_accept(key, &last, m.b, m.len), 0);
	assert_true(last == 9);
}

static void test_replayed_message_is_dropped(void **state)
{
	uint64_t last = 0;
	struct msg m1, m2;

	(void)state;
	seal(&m1, key, T_HB, 1, "heartbeat");
	seal(&m2, key, T_HB, 2, "heartbeat");
	assert_int_equal(peer_msg_accept(key, &last, m1.b, m1.len), 0);
	assert_int_equal(peer_msg_accept(key, &last, m2.b, m2.len), 0);
	/* the same bytes again, and an older message: dropped, nothing changes */
	assert_int_equal(peer_msg_accept(key, &last, m2.b, m2.len), -EALREADY);
	assert_int_equal(peer_msg_accept(key, &last, m1.b, m1.len), -EALREADY);
	assert_true(last == 2);
	/* number 0 is never taken, even as the first */
	last = 0;
	seal(&m1, key, T_HB, 0, "heartbeat");
	assert_int_equal(peer_msg_accept(key, &last, m1.b, m1.len), -EALREADY);
	assert_true(last == 0);
}

static void test_sequence_number_is_covered_by_the_mac(void **state)
{
	uint64_t last = 1, seq = 7;
	struct msg m;

	(void)state;
	/* a copy of message 1 with its number raised to pass the replay rule */
	seal(&m, key, T_GET, 1, "/data/a");
	memcpy(m.b + SEQ_OFF, &seq, sizeof(seq));
	assert_int_equal(peer_msg_accept(key, &last, m.b, m.len), -EBADMSG);
	assert_true(last == 1);
}

static void test_forged_or_altered_messages_are_dropped(void **state)
{
	uint64_t last = 0;
	struct msg m;

	(void)state;
	/* sealed under another key (another session, or a wrong secret) */
	seal(&m, other_key, T_HB, 1, "heartbeat");
	assert_int_equal(peer_msg_accept(key, &last, m.b, m.len), -EBADMSG);
	/* without a MAC at all */
	seal(&m, NULL, T_HB, 1, "heartbeat");
	assert_int_equal(peer_msg_accept(key, &last, m.b, m.len), -EBADMSG);
	/* one body byte changed */
	seal(&m, key, T_GET, 1, "/data/a");
	m.b[HDR_LEN] ^= 1;
	assert_int_equal(peer_msg_accept(key, &last, m.b, m.len), -EBADMSG);
	/* one MAC byte changed */
	seal(&m, key, T_GET, 1, "/data/a");
	m.b[MAC_OFF + 3] ^= 0x80;
	assert_int_equal(peer_msg_accept(key, &last, m.b, m.len), -EBADMSG);
	assert_true(last == 0);
	/* and the untouched one is still taken */
	seal(&m, key, T_GET, 1, "/data/a");
	assert_int_equal(peer_msg_accept(key, &last, m.b, m.len), 0);
}

static void test_malformed_messages_are_dropped(void **state)
{
	uint64_t last = 0;
	struct msg m;

	(void)state;
	seal(&m, key, T_GET, 1, "/data/a");
	assert_int_equal(peer_msg_accept(key, &last, m.b, HDR_LEN - 1), -EPROTO);
	assert_int_equal(peer_msg_accept(key, &last, m.b, m.len - 1), -EPROTO);
	assert_int_equal(peer_msg_accept(key, &last, m.b, m.len + 1), -EPROTO);
	assert_true(last == 0);
	assert_int_equal(peer_msg_seal(key, T_GET, true, SID, 1, m.b, MSG_MAX, m.b, sizeof(m.b)),
			 -EMSGSIZE);
}

static void test_hello_freshness(void **state)
{
	(void)state;
	/* nothing established yet */
	assert_true(peer_hello_fresh(SID, BOOT_A, 3, 0, 0, 0));
	/* the established session's own HELLO again */
	assert_false(peer_hello_fresh(SID, BOOT_A, 3, SID, BOOT_A, 3));
	/* an older HELLO of the same life, or the same number under another sid */
	assert_false(peer_hello_fresh(OTHERSID, BOOT_A, 2, SID, BOOT_A, 3));
	assert_false(peer_hello_fresh(OTHERSID, BOOT_A, 3, SID, BOOT_A, 3));
	/* a later one of the same life: the peer opens a new session */
	assert_true(peer_hello_fresh(OTHERSID, BOOT_A, 4, SID, BOOT_A, 3));
	/* another life: a restart (its numbers start again) */
	assert_true(peer_hello_fresh(OTHERSID, BOOT_B, 1, SID, BOOT_A, 3));
	/* no session is ever 0 */
	assert_false(peer_hello_fresh(0, BOOT_A, 4, SID, BOOT_A, 3));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_in_order_messages_are_taken),
		cmocka_unit_test(test_replayed_message_is_dropped),
		cmocka_unit_test(test_sequence_number_is_covered_by_the_mac),
		cmocka_unit_test(test_forged_or_altered_messages_are_dropped),
		cmocka_unit_test(test_malformed_messages_are_dropped),
		cmocka_unit_test(test_hello_freshness),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
