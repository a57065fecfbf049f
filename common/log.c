/*
 * log - the one logging module every program uses.
 *
 * Lines have the shape log analyzers for Postfix already read:
 * "postern/smtpd[1234]: 3F7A...: client=host[addr]".  With maillog_file
 * each line gets a syslog-style timestamp and host name and is written
 * with one write(2) on an O_APPEND descriptor, so lines from concurrent
 * processes never interleave.  errno is preserved across calls so that
 * "%m" works and callers can log before inspecting errno.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define LOG_LINE_MAX 4096

int log_verbose;

static int log_dests = LOG_DEST_STDERR;
static int log_fd = -1;
static char log_ident[128] = "postern";
static char log_name[64] = "postern";
static char log_service[64];
static char log_host[256];
static bool log_syslog_open;
static void (*log_cleanup)(void);
static void (*log_exit_hook)(int);
static char log_last[LOG_LINE_MAX];
static pid_t log_self; /* getpid(), 0 until asked and again in a forked child */

static void
log_forked(void)
{
	log_self = 0;
}

pid_t
log_pid(void)
{
	static bool registered;

	if (!registered) {
		(void)pthread_atfork(NULL, NULL, log_forked);
		registered = true;
	}
	if (log_self == 0)
		log_self = getpid();
	return log_self;
}

static void
log_make_ident(void)
{
	if (log_service[0])
		snprintf(log_ident, sizeof(log_ident), "%s/%s", log_name, log_service);
	else
		snprintf(log_ident, sizeof(log_ident), "%s", log_name);
	if (log_syslog_open) {
		closelog();
		log_syslog_open = false;
	}
}

void
log_init(const char *service, int dests)
{
	snprintf(log_service, sizeof(log_service), "%s", service ? service : "");
	log_make_ident();
	log_dests = dests;
	if (gethostname(log_host, sizeof(log_host) - 1) != 0)
		strcpy(log_host, "localhost");
	log_host[strcspn(log_host, ".")] = 0;
}

void
log_set_syslog_name(const char *name)
{
	snprintf(log_name, sizeof(log_name), "%s", name);
	log_make_ident();
}

int
log_open_file(const char *path)
{
	int fd;

	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
	if (fd < 0)
		return -1;
	if (log_fd >= 0)
		close(log_fd);
	log_fd = fd;
	return 0;
}

void
log_set_dests(int dests)
{
	log_dests = dests;
}

int
log_get_dests(void)
{
	return log_dests;
}

void
log_set_verbose(int level)
{
	log_verbose = level;
}

void
log_prepare_chroot(void)
{
	if ((log_dests & LOG_DEST_SYSLOG) && !log_syslog_open) {
		openlog(log_ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
		log_syslog_open = true;
	}
}

void
log_set_cleanup(void (*fn)(void))
{
	log_cleanup = fn;
}

void
log_set_exit_hook(void (*fn)(int))
{
	log_exit_hook = fn;
}

const char *
log_last_message(void)
{
	return log_last;
}

/* log_emit - format one line and send it to every destination */
static void
log_emit(int prio, const char *prefix, const char *fmt, va_list ap)
{
	char text[LOG_LINE_MAX];
	char line[LOG_LINE_MAX + 512];
	int saved = errno;
	size_t n;
	char *p;

	errno = saved;
	vsnprintf(text, sizeof(text), fmt, ap);
	/* A log line is one line: control characters from peers are escaped. */
	for (p = text; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	if (prio != LOG_INFO && prio != LOG_DEBUG)
		snprintf(log_last, sizeof(log_last), "%s%s", prefix, text);

	if (log_dests & LOG_DEST_SYSLOG) {
		if (!log_syslog_open) {
			openlog(log_ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
			log_syslog_open = true;
		}
		syslog(prio, "%s%s", prefix, text);
	}
	if ((log_dests & LOG_DEST_FILE) && log_fd >= 0) {
		struct timespec ts;
		struct tm tm;
		char stamp[64];

		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		strftime(stamp, sizeof(stamp), "%b %e %H:%M:%S", &tm);
		n = (size_t)snprintf(line, sizeof(line), "%s.%06ld %s %s[%ld]: %s%s\n", stamp, ts.tv_nsec / 1000,
		    log_host[0] ? log_host : "localhost", log_ident, (long)log_pid(), prefix, text);
		if (n >= sizeof(line))
			n = sizeof(line) - 1, line[n - 1] = '\n';
		(void)!write(log_fd, line, n);
	}
	if (log_dests & LOG_DEST_STDERR) {
		n = (size_t)snprintf(line, sizeof(line), "%s: %s%s\n", log_ident, prefix, text);
		if (n >= sizeof(line))
			n = sizeof(line) - 1, line[n - 1] = '\n';
		(void)!write(STDERR_FILENO, line, n);
	}
	errno = saved;
}

void
log_debug(const char *fmt, ...)
{
	va_list ap;

	if (log_verbose <= 0)
		return;
	va_start(ap, fmt);
	log_emit(LOG_DEBUG, "debug: ", fmt, ap);
	va_end(ap);
}

void
log_vinfo(const char *fmt, va_list ap)
{
	log_emit(LOG_INFO, "", fmt, ap);
}

void
log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(LOG_INFO, "", fmt, ap);
	va_end(ap);
}

void
log_vwarn(const char *fmt, va_list ap)
{
	log_emit(LOG_WARNING, "warning: ", fmt, ap);
}

void
log_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(LOG_WARNING, "warning: ", fmt, ap);
	va_end(ap);
}

/* log_die - the common end of log_fatal and log_fatal_status */
static _Noreturn void
log_die(int status)
{
	static int dying;

	if (log_exit_hook)
		log_exit_hook(status);
	if (!dying++ && log_cleanup)
		log_cleanup();
	exit(status);
}

void
log_fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(LOG_CRIT, "fatal: ", fmt, ap);
	va_end(ap);
	log_die(1);
}

void
log_fatal_status(int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(LOG_CRIT, "fatal: ", fmt, ap);
	va_end(ap);
	log_die(status);
}

void
log_panic(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(LOG_CRIT, "panic: ", fmt, ap);
	va_end(ap);
	if (log_exit_hook)
		log_exit_hook(2);
	abort();
}
