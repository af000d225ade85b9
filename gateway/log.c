/*
 * Gateway logging to stderr or syslog, one line per event.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>
#include <time.h>
#include <pthread.h>

static bool to_syslog;
static bool debug_on;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void
gw_log_init(const char *ident, bool use_syslog, bool debug)
{
	to_syslog = use_syslog;
	debug_on = debug;
	if (use_syslog)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

static void
vlog(int prio, const char *tag, const char *fmt, va_list ap)
{
	if (to_syslog) {
		vsyslog(prio, fmt, ap);
		return;
	}
	char ts[32];
	struct timespec now;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	pthread_mutex_lock(&log_lock);
	fprintf(stderr, "sealgated %s.%03ldZ %s: ", ts, now.tv_nsec / 1000000, tag);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	pthread_mutex_unlock(&log_lock);
}

#define LOGFN(name, prio, tag, cond)                 \
	void name(const char *fmt, ...)              \
	{                                            \
		va_list ap;                          \
		if (!(cond))                         \
			return;                      \
		va_start(ap, fmt);                   \
		vlog(prio, tag, fmt, ap);            \
		va_end(ap);                          \
	}

LOGFN(gw_log_error, LOG_ERR, "error", 1)
LOGFN(gw_log_warn, LOG_WARNING, "warning", 1)
LOGFN(gw_log_info, LOG_INFO, "info", 1)
LOGFN(gw_log_debug, LOG_DEBUG, "debug", debug_on)
