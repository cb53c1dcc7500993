/*
 * qos.h - two classes of backend work: foreground and background.
 *
 * Owns: struct qos (the daemon's backend slots, the queues of fetches waiting
 * for one, the background token bucket) and struct qos_req (one per fetch).
 *
 * DESIGN: a foreground request has a process blocked on it (a trainer's
 * miss); background requests are warms and prefetches. At most
 * fetch.max_parallel requests hold a slot; background ones hold at most
 * max_parallel - fg_reserved of them, so the reserved slots are always left
 * to foreground misses. Requests that cannot start wait in two FIFO queues;
 * the foreground queue always goes first. Background bytes are charged to a
 * token bucket of fetch.bg_rate bytes/s (0 = unlimited): a background request
 * starts only while the bucket is not in debt. It is charged the average size
 * of background objects when it starts (so that starts are paced, not let
 * through in bursts), then settled at the object's real size once that is
 * known, or refunded if nothing was copied; a large object may put the bucket
 * in debt and hold back the ones after it. A libevent timer wakes the queue
 * when the bucket refills. A request that gains a foreground waiter is promoted: out
 * of the background queue into the foreground one, or, if it already runs,
 * into the foreground count. Loop thread only.
 */
#ifndef GRANARY_QOS_H
#define GRANARY_QOS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

struct granaryd;
struct event;

struct qos_req {
	/* set by the caller: called on the loop thread when the slot is granted */
	void (*start)(struct qos_req *q);

	/* owned by qos */
	struct qos_req *prev, *next;
	int64_t queued_ns;
	double charged; /* bytes taken from the bucket so far */
	bool sized;	/* charged at the real size */
	bool fg;	/* the class it is counted in */
	bool queued;	/* waiting in a queue */
	bool holding;	/* holds a slot */
};

struct qos_queue {
	struct qos_req *head, *tail;
	uint64_t len;
};

struct qos {
	unsigned fg_inflight, bg_inflight;
	struct qos_queue fgq, bgq;
	double tokens;	   /* bytes; negative while in debt */
	double bg_avg;	   /* running average size of background objects */
	int64_t refill_ns; /* when tokens were last refilled */
	struct event *timer;
	bool dispatching;
	/* counters */
	uint64_t fg_started, bg_started, fg_queued_total, bg_queued_total;
	uint64_t promoted, throttled, bg_bytes;
	int64_t fg_wait_max_ns;
};

/*
 * Ask for a backend slot for @q in class @fg. Returns true when @q holds one
 * now (the caller goes on; q->start is not called), false when @q was queued:
 * q->start is called later from the loop. A request already holding a slot
 * keeps it and gets true. While the daemon stops, queued requests are started
 * regardless of the limits so that they can fail at once.
 */
bool qos_acquire(struct granaryd *d, struct qos_req *q, bool fg);

/*
 * @q gained a foreground waiter: count it as foreground from now on; a
 * queued request moves to the foreground queue (and may start at once, from
 * inside this call).
 */
void qos_promote(struct granaryd *d, struct qos_req *q);

/*
 * Charge @bytes to the background bucket if @q is background work. Called
 * when the size of what it copies is known.
 */
void qos_charge(struct granaryd *d, struct qos_req *q, uint64_t bytes);

/*
 * @q is over: give back its slot, or leave its queue. May start queued
 * requests from inside the call. Harmless on a request that holds nothing.
 */
void qos_release(struct granaryd *d, struct qos_req *q);

/* Queue depths, slots in use and counters, for `granary status --json`. */
json_t *qos_status_json(struct granaryd *d);

#endif
