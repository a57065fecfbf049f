/*
 * qid - queue IDs (see qid.h and doc/queue-format.md).
 *
 * Called by cleanup (new IDs), qmgr, the delivery agents, showq and the
 * admin commands (validation and paths).  An ID that arrives from a peer,
 * a command line or a directory listing is untrusted until qid_valid()
 * accepts it: only then may it be joined into a path.
 *
 * Layout: 7 base-32 digits of seconds, 4 of microseconds, 5 of the pid,
 * most significant digit first, alphabet 0-9A-V, so that IDs sort by
 * arrival time as plain strings.  Not thread-safe (Postern's processes
 * are single-threaded).
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "log.h"
#include "qfile.h"
#include "qid.h"

#define QID_SEC_DIGITS  7
#define QID_USEC_DIGITS 4
#define QID_PID_DIGITS  5
#define QID_HASH_INDEX  (QID_SEC_DIGITS + QID_USEC_DIGITS - 1)

#define QID_SEC_MAX ((1LL << (5 * QID_SEC_DIGITS)) - 1) /* year 3058 */
#define QID_PID_MAX ((1L << (5 * QID_PID_DIGITS)) - 1)  /* 33554431 */

static const char qid_alphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUV";

/* qid_digit - value of one ID character, or -1 */
static int
qid_digit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'V')
		return c - 'A' + 10;
	return -1;
}

/* qid_put - write v as n base-32 digits, most significant first */
static void
qid_put(char *out, unsigned long long v, int n)
{
	while (n-- > 0) {
		out[n] = qid_alphabet[v & 31];
		v >>= 5;
	}
}

/* qid_get - decode n digits (the caller has validated them) */
static unsigned long long
qid_get(const char *s, int n)
{
	unsigned long long v = 0;

	while (n-- > 0)
		v = (v << 5) | (unsigned)qid_digit((unsigned char)*s++);
	return v;
}

void
qid_make(char *out, const struct timeval *tv, long pid)
{
	if (tv->tv_sec < 0 || tv->tv_sec > QID_SEC_MAX || tv->tv_usec < 0 || tv->tv_usec >= 1000000)
		log_panic("qid_make: time %lld.%06ld out of range", (long long)tv->tv_sec, (long)tv->tv_usec);
	if (pid < 0 || pid > QID_PID_MAX)
		log_panic("qid_make: pid %ld out of range", pid);
	qid_put(out, (unsigned long long)tv->tv_sec, QID_SEC_DIGITS);
	qid_put(out + QID_SEC_DIGITS, (unsigned long long)tv->tv_usec, QID_USEC_DIGITS);
	qid_put(out + QID_SEC_DIGITS + QID_USEC_DIGITS, (unsigned long long)pid, QID_PID_DIGITS);
	out[QID_LEN] = 0;
}

void
qid_new(char *out)
{
	static struct timeval last;
	struct timeval now;

	gettimeofday(&now, NULL);
	/* Never repeat within this process, even if the clock stalls or steps back. */
	if (now.tv_sec < last.tv_sec || (now.tv_sec == last.tv_sec && now.tv_usec <= last.tv_usec)) {
		now = last;
		if (++now.tv_usec >= 1000000) {
			now.tv_usec = 0;
			now.tv_sec++;
		}
	}
	last = now;
	qid_make(out, &now, (long)log_pid());
}

bool
qid_valid(const char *s)
{
	size_t i;

	if (s == NULL)
		return false;
	for (i = 0; i < QID_LEN; i++)
		if (qid_digit((unsigned char)s[i]) < 0)
			return false;
	return s[QID_LEN] == 0;
}

int
qid_time(const char *s, struct timeval *tv)
{
	unsigned long long usec;

	if (!qid_valid(s))
		return -1;
	usec = qid_get(s + QID_SEC_DIGITS, QID_USEC_DIGITS);
	if (usec >= 1000000)
		return -1;
	tv->tv_sec = (time_t)qid_get(s, QID_SEC_DIGITS);
	tv->tv_usec = (suseconds_t)usec;
	return 0;
}

char
qid_hash(const char *id)
{
	if (!qid_valid(id))
		return 0;
	/* The last microsecond digit: uniform over 32 values for real traffic. */
	return id[QID_HASH_INDEX];
}

bool
qid_queue_hashed(const char *queue)
{
	return queue != NULL && (strcmp(queue, QUEUE_DEFERRED) == 0 || strcmp(queue, QUEUE_DEFER) == 0 ||
	                            strcmp(queue, QUEUE_BOUNCE) == 0);
}

int
qid_path(char *out, size_t outlen, const char *queue, const char *id)
{
	int n;

	if (outlen > 0)
		out[0] = 0;
	if (!qfile_queue_valid(queue) || !qid_valid(id))
		return -1;
	if (qid_queue_hashed(queue))
		n = snprintf(out, outlen, "%s/%c/%s", queue, qid_hash(id), id);
	else
		n = snprintf(out, outlen, "%s/%s", queue, id);
	if (n < 0 || (size_t)n >= outlen) {
		if (outlen > 0)
			out[0] = 0;
		return -1;
	}
	return 0;
}
