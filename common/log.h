/*
 * log - one line per event, to syslog (facility mail), a maillog_file, or
 * standard error.
 *
 * Levels follow STYLE.md: log_info for events, log_warn for bad input from
 * a peer or a table (we continue), log_fatal for a broken environment (the
 * process exits non-zero; the master restarts it and mail stays queued),
 * log_panic for an internal inconsistency (abort with a core).  "%m" in a
 * format is strerror(errno), as glibc's printf provides.
 */
#ifndef POSTERN_LOG_H
#define POSTERN_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <sys/types.h>

#define LOG_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* Where log lines go; several may be on at once. */
enum log_dest {
	LOG_DEST_SYSLOG = 1,
	LOG_DEST_FILE = 2,
	LOG_DEST_STDERR = 4,
};

/* Start logging as "postern/<service>" (or plain "postern" when NULL). */
void log_init(const char *service, int dests);
/* Name used in the ident: "postern" by default (syslog_name). */
void log_set_syslog_name(const char *name);
/* Send lines to a file instead of syslog; returns -1 with errno on failure. */
int log_open_file(const char *path);
/* Change the destination set (for example after config load). */
void log_set_dests(int dests);
int log_get_dests(void);
/* Make sure syslog's socket or the log file is open before a chroot. */
void log_prepare_chroot(void);
/* Debug lines (log_debug) are printed only at this level or above. */
void log_set_verbose(int level);
extern int log_verbose;

void log_debug(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_info(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_warn(const char *fmt, ...) LOG_PRINTF(1, 2);
_Noreturn void log_fatal(const char *fmt, ...) LOG_PRINTF(1, 2);
/* log_fatal with a chosen exit status (MASTER_EXIT_CONFIG for config errors). */
_Noreturn void log_fatal_status(int status, const char *fmt, ...) LOG_PRINTF(2, 3);
_Noreturn void log_panic(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_vinfo(const char *fmt, va_list ap) LOG_PRINTF(1, 0);
void log_vwarn(const char *fmt, va_list ap) LOG_PRINTF(1, 0);

/*
 * Run before a fatal exit (for example to remove a half-written file).
 * Tests may install an exit hook that longjmps instead of exiting.
 */
void log_set_cleanup(void (*fn)(void));
void log_set_exit_hook(void (*fn)(int status));

/* getpid(), without a system call per log line (a forked child asks again). */
pid_t log_pid(void);

/* The last message given to log_fatal/log_panic/log_warn (for tests). */
const char *log_last_message(void);

#endif
