/*
 * dsn - delivery status notifications (RFC 3464): the message that tells
 * a sender what happened to recipients, built from the original queue
 * file and the outcomes, and submitted through cleanup with the null
 * sender <> (and CLEANUP_FLAG_BOUNCE, so it can never cause another
 * notification loop).
 *
 * The notification is multipart/report; report-type=delivery-status
 * (RFC 6522): a human-readable part, a message/delivery-status part with
 * Reporting-MTA, Arrival-Date, Original-Envelope-Id and, per recipient,
 * Final-Recipient, Original-Recipient, Action, Status, Remote-MTA and
 * Diagnostic-Code, then the original message (RET=FULL, the default) or
 * its header (RET=HDRS, or a message too large to return).
 *
 * Details (common/dsn.c): one notice is about one kind of outcome, so
 * Action comes from req->kind (failed, delayed, delivered) and Status
 * from each record's dsn (an expired message keeps its 4.x.x code with
 * Action failed, as RFC 3464 allows).  Only a DSN_FAILED notice returns
 * the whole message, and only when RET is not HDRS and the content is at
 * most return_limit bytes and holds no NUL byte; otherwise the header
 * section (text/rfc822-headers).  Reasons are cut to 4000 bytes, made
 * 7-bit printable and folded; no line is longer than 998 bytes except
 * in the returned original.  Messages with the smtputf8 attribute or
 * 8-bit addresses get the RFC 6533 types (message/global-delivery-status,
 * message/global, message/global-headers) and "utf-8;" addresses.
 * Reads myhostname, bounce_notice_sender, maximal_queue_lifetime (or
 * bounce_queue_lifetime for a notice about a notice: Will-Retry-Until)
 * and ipc_timeout from the configuration.
 */
#ifndef POSTERN_DSN_H
#define POSTERN_DSN_H

#include <stddef.h>

#include "buf.h"
#include "qfile.h"
#include "qlog.h"

enum dsn_kind {
	DSN_FAILED,    /* Undelivered Mail Returned to Sender */
	DSN_DELAYED,   /* Delayed Mail (still being retried) */
	DSN_DELIVERED, /* Successful Mail Delivery Report (NOTIFY=SUCCESS) */
};

struct dsn_request {
	enum dsn_kind kind;
	const char *queue_id;           /* the original message */
	int fd;                         /* its queue file, readable */
	const struct qfile_env *env;    /* its envelope (qfile_read) */
	const struct qlog_entry *rcpts; /* the recipients this notice is about */
	size_t nrcpts;
	const char *to;         /* recipient of the notice: the sender, or 2bounce_notice_recipient */
	long long return_limit; /* return at most this much of the original (bytes); 0: headers only */
};

/* Build the notification message (LF line ends) into out; -1 with err. */
int dsn_build(const struct dsn_request *req, struct buf *out, struct buf *err);
/*
 * Build and submit it through cleanup (private/cleanup relative to the
 * current directory, the queue): sender <>, CLEANUP_FLAG_BOUNCE, protocol
 * "local", the one recipient req->to.  Blocks for at most
 * min(ipc_timeout, 100s).  The new queue ID goes to new_id (QID_LEN + 1
 * bytes); -1 with err when cleanup is unreachable or refuses: the caller
 * keeps its bounce log and tries again later.
 */
int dsn_send(const struct dsn_request *req, char *new_id, struct buf *err);

#endif
