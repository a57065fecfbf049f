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
 * postern queue and postern cat read them.  Format: doc/queue-format.md.
 */
#ifndef POSTERN_QLOG_H
#define POSTERN_QLOG_H

#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include "buf.h"

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

/* queue is QUEUE_DEFER or QUEUE_BOUNCE; paths relative to queue_directory. */
int qlog_append(const char *queue, const char *id, const struct qlog_entry *e, struct buf *err);
/* All readable records; *n = 0 when the file does not exist.  -1 only on I/O errors. */
int qlog_read(const char *queue, const char *id, struct qlog_entry **out, size_t *n, struct buf *err);
void qlog_free(struct qlog_entry *v, size_t n);
/* Remove the log (missing is fine). */
int qlog_remove(const char *queue, const char *id);

#endif
