/*
 * qlog - per-message delivery logs beside the queue file:
 *
 *   defer/H/ID   why recipients were deferred (for mailq, delay notices,
 *                and the bounce when the message expires)
 *   bounce/H/ID  recipients that failed, waiting for the DSN to be sent
 *
 * One record per recipient outcome, appended (O_APPEND, one write per
 * record, no fsync: losing a log costs only detail, never mail).  A
 * torn last record is ignored by readers.  Only qmgr writes them; qmgr,
 * postern queue and postern cat read them.  Format: doc/queue-format.md
 * section 2.2: one line per record, nine tab-separated fields, text
 * fields escaped (\\ \t \n \r).
 */
#ifndef POSTERN_QLOG_H
#define POSTERN_QLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include "buf.h"

/* Status letters. */
#define QLOG_DEFERRED 'd'
#define QLOG_BOUNCED  'b'
#define QLOG_SENT     's'

/* Limits. */
#define QLOG_ADDR_MAX    4096  /* addr and orcpt bytes: longer is refused */
#define QLOG_TEXT_MAX    16384 /* relay and reason bytes: longer is cut */
#define QLOG_LINE_MAX    (2 * (2 * QLOG_ADDR_MAX + 2 * QLOG_TEXT_MAX) + 128)
#define QLOG_READ_MAX    (1024 * 1024) /* bytes a reader looks at; more is ignored with a warning */
#define QLOG_RECORDS_MAX 100000        /* records a reader returns */

struct qlog_entry {
	time_t when;
	off_t offset; /* the recipient's record in the queue file */
	char status;  /* 'd' deferred, 'b' bounced, 's' sent (for NOTIFY=SUCCESS) */
	char dsn[16];
	char *addr;  /* the recipient */
	char *orcpt; /* or NULL */
	int notify;
	char *relay;
	char *reason;
};

/*
 * queue is QUEUE_DEFER or QUEUE_BOUNCE; paths relative to queue_directory.
 * The ID is checked with qid_valid first.  -1 with err on an invalid ID
 * or entry (empty address, bad DSN code or status letter) or I/O error.
 */
int qlog_append(const char *queue, const char *id, const struct qlog_entry *e, struct buf *err);
/*
 * All readable records, in file order; *n = 0 when the file does not
 * exist.  Malformed lines and a torn last line are skipped (with a
 * warning); at most QLOG_READ_MAX bytes and QLOG_RECORDS_MAX records are
 * read.  -1 only on an invalid ID or an I/O error.
 */
int qlog_read(const char *queue, const char *id, struct qlog_entry **out, size_t *n, struct buf *err);
void qlog_free(struct qlog_entry *v, size_t n);
void qlog_entry_free(struct qlog_entry *e);
/* One record as a line (LF included) appended to out; -1 with err as qlog_append. */
int qlog_encode(const struct qlog_entry *e, struct buf *out, struct buf *err);
/* Parse one line (without its LF; modified in place) into e (to be freed); -1 when malformed. */
int qlog_parse(char *line, struct qlog_entry *e);
/* "C.S.D" with class 2, 4 or 5 and 1 to 3 digits per number (RFC 3463). */
bool qlog_dsn_valid(const char *dsn);
/* Remove the log (missing is fine). */
int qlog_remove(const char *queue, const char *id);

#endif
