/*
 * clock.h - the daemon's clocks and time units, in one place.
 *
 * Owns: the monotonic clock every deadline, timeout and age is measured on
 * (clock_now_ns), the wall clock for what is shown or stored (clock_real_s),
 * and the conversions between nanoseconds, struct timespec and struct
 * timeval. Header only, so that unit tests link it as the daemon does.
 */
#ifndef GRANARY_CLOCK_H
#define GRANARY_CLOCK_H

#include <stdint.h>
#include <sys/time.h>
#include <time.h>

#define NS_PER_US 1000LL
#define NS_PER_MS 1000000LL
#define NS_PER_S  1000000000LL

/* CLOCK_MONOTONIC, in nanoseconds. */
static inline int64_t clock_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

/* CLOCK_REALTIME, in seconds. */
static inline int64_t clock_real_s(void)
{
	return (int64_t)time(NULL);
}

static inline int64_t clock_ns_of(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * NS_PER_S + ts->tv_nsec;
}

/* @ns (not negative) as a timeval, for libevent timers. */
static inline struct timeval clock_timeval(int64_t ns)
{
	struct timeval tv = {.tv_sec = (time_t)(ns / NS_PER_S),
			     .tv_usec = (suseconds_t)(ns % NS_PER_S / NS_PER_US)};

	return tv;
}

/* The CLOCK_MONOTONIC time @ns from now, for pthread_cond_timedwait. */
static inline struct timespec clock_mono_after(int64_t ns)
{
	int64_t t = clock_now_ns() + ns;
	struct timespec ts = {.tv_sec = (time_t)(t / NS_PER_S), .tv_nsec = (long)(t % NS_PER_S)};

	return ts;
}

#endif
