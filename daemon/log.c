/* log.c - key=value log lines (see log.h). Thread-safe: one write(2) a line. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int log_level = LOG_INFO;
static int log_fd = STDERR_FILENO;
static char *log_path;

static const char *level_name(int level)
{
	switch (level) {
	case LOG_EMERG:
	case LOG_ALERT:
	case LOG_CRIT:
	case LOG_ERR:
		return "error";
	case LOG_WARNING:
		return "warning";
	case LOG_NOTICE:
	case LOG_INFO:
		return "info";
	default:
		return "debug";
	}
}

static int open_log(const char *path)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);

	return fd < 0 ? -errno : fd;
}

int log_init(int level, const char *file)
{
	log_level = level;
	if (!file)
		return 0;
	int fd = open_log(file);
	if (fd < 0)
		return fd;
	free(log_path);
	log_path = strdup(file);
	if (log_fd != STDERR_FILENO)
		close(log_fd);
	log_fd = fd;
	return 0;
}

int log_reopen(void)
{
	int fd;

	if (!log_path)
		return 0;
	fd = open_log(log_path);
	if (fd < 0)
		return fd;
	dup2(fd, log_fd);
	close(fd);
	return 0;
}

bool log_enabled(int level)
{
	return level <= log_level;
}

static void log_vline(int level, int err, const char *fmt, va_list ap)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;
	size_t n;
	int r;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	r = snprintf(line + n, sizeof(line) - n, ".%03ldZ level=%s msg=", ts.tv_nsec / 1000000,
		     level_name(level));
	n += (size_t)r;
	r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	if (r > 0)
		n = n + (size_t)r < sizeof(line) ? n + (size_t)r : sizeof(line) - 1;
	if (err && n < sizeof(line) - 1) {
		r = snprintf(line + n, sizeof(line) - n, " err=\"%s\"",
			     strerror(err < 0 ? -err : err));
		if (r > 0)
			n = n + (size_t)r < sizeof(line) ? n + (size_t)r : sizeof(line) - 1;
	}
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (write(log_fd, line, n) < 0) {
		/* nowhere left to report it */
	}
}

void log_msg(int level, const char *fmt, ...)
{
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	log_vline(level, 0, fmt, ap);
	va_end(ap);
}

void log_errno(int level, int err, const char *fmt, ...)
{
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	log_vline(level, err ? err : EIO, fmt, ap);
	va_end(ap);
}

bool log_limit_pass(struct log_limit *l, int64_t now_ns, int64_t interval_ns,
		    unsigned long long *held)
{
	if (now_ns < l->next_ns) {
		l->held++;
		return false;
	}
	*held = l->held;
	l->held = 0;
	l->next_ns = now_ns + interval_ns;
	return true;
}
