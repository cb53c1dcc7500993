/*
 * log.h - the daemon's log: one line per event, key=value, to stderr or a file.
 *
 * Owns: the level threshold, the output descriptor, reopening on SIGHUP.
 * Lines look like
 *   2026-11-22T01:42:11.123Z level=info msg="fetched" path=/mnt/nas/a bytes=4096
 * Never pass credentials to it.
 */
#ifndef GRANARY_LOG_H
#define GRANARY_LOG_H

#include <stdbool.h>
#include <stdint.h>
#include <syslog.h>

/* Route lines at or under @level to @file (NULL: stderr). Returns 0 or -errno. */
int log_init(int level, const char *file);
/* Reopen the file (SIGHUP after rotation). */
int log_reopen(void);
bool log_enabled(int level);

/* @fmt gives the message then optional " key=value" pairs. */
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Same, with err=<strerror(err)> appended; @err is a positive or negative errno. */
void log_errno(int level, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/*
 * A line that may repeat at a high rate (a client flood, EMFILE) goes through
 * one of these: log_limit_pass() says whether to print it now (at most one per
 * @interval_ns) and, when it does, how many were held back since the last.
 */
struct log_limit {
	int64_t next_ns;
	unsigned long long held;
};
bool log_limit_pass(struct log_limit *l, int64_t now_ns, int64_t interval_ns,
		    unsigned long long *held);

#define log_err(...)   log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
