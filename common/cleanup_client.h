/*
 * cleanup_client - how smtpd (and later pickup and qmgr's bounces) hand a
 * message to cleanup, the only writer of queue files.
 *
 * One connection per message:
 *
 *   cleanup -> client   greeting: protocol=cleanup version=1
 *   client -> cleanup   the envelope as one attribute list (doc/ipc.md 8.1)
 *   client -> cleanup   the content as frames "LENGTH\n" + LENGTH bytes,
 *                       ended by the frame "0\n"; LENGTH <= CLEANUP_FRAME_MAX
 *   cleanup -> client   the result: status, dsn, reason, queue_id
 *
 * The content is the message with LF line ends: the client has already
 * undone SMTP's dot-stuffing and CRLF.  A client that hangs up before the
 * last frame abandons the message and cleanup leaves nothing behind.
 * cleanup answers only after the last frame, even when it refuses the
 * envelope, and a status 0 only after the queue file is on disk (fsync),
 * so a client may say "250 queued" as soon as it has it.  A malformed
 * list or frame gets no answer: the connection closes (4.3.0).
 */
#ifndef POSTERN_CLEANUP_CLIENT_H
#define POSTERN_CLEANUP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "qid.h"
#include "stream.h"

#define CLEANUP_PROTOCOL       "cleanup"
#define CLEANUP_VERSION        1
#define CLEANUP_FRAME_MAX      1048576
#define CLEANUP_FRAME_LINE_MAX 20 /* "LENGTH\n": longest line cleanup reads */

/*
 * Envelope attribute names (doc/ipc.md 8.1).  cleanup stores the
 * descriptive ones (client_name ... smtputf8, and flags when not 0) as
 * queue file attributes under the same names.  The reply uses status,
 * reason and queue_id from proto.h, and dsn.
 */
#define CLEANUP_ATTR_SENDER        "sender"
#define CLEANUP_ATTR_FLAGS         "flags"
#define CLEANUP_ATTR_CLIENT_NAME   "client_name"
#define CLEANUP_ATTR_CLIENT_ADDR   "client_addr"
#define CLEANUP_ATTR_HELO          "helo"
#define CLEANUP_ATTR_PROTOCOL      "protocol"
#define CLEANUP_ATTR_SASL_METHOD   "sasl_method"
#define CLEANUP_ATTR_SASL_USERNAME "sasl_username"
#define CLEANUP_ATTR_ENVID         "envid"
#define CLEANUP_ATTR_RET           "ret"
#define CLEANUP_ATTR_BODY          "body"
#define CLEANUP_ATTR_SMTPUTF8      "smtputf8"
#define CLEANUP_ATTR_SIZE          "size"
#define CLEANUP_ATTR_RCPT          "rcpt"
#define CLEANUP_ATTR_ORCPT         "orcpt"
#define CLEANUP_ATTR_NOTIFY        "notify"
#define CLEANUP_ATTR_DSN           "dsn"

/* Limits cleanup enforces on the envelope list. */
#define CLEANUP_RCPT_MAX  100000 /* "rcpt" attributes in one envelope */
#define CLEANUP_VALUE_MAX 2048   /* bytes of one envelope value */
#define CLEANUP_ENVID_MAX 100    /* RFC 3461 section 4.4 */
#define CLEANUP_ORCPT_MAX 500    /* RFC 3461 section 4.2 allows 500 bytes */

/* The reply's status. */
#define CLEANUP_STAT_OK   0 /* queued: the file is on disk */
#define CLEANUP_STAT_TEMP 4 /* not queued; try again later (4xx) */
#define CLEANUP_STAT_PERM 5 /* not queued; do not try again (5xx) */

/* Envelope flags (attribute "flags", a decimal bit mask). */
#define CLEANUP_FLAG_SUBMISSION 0x01 /* add Message-ID, Date, From when missing */
#define CLEANUP_FLAG_NO_ALIAS   0x02 /* do not apply virtual_alias_maps (already done) */
#define CLEANUP_FLAG_BOUNCE     0x04 /* a DSN made by Postern: never bounce it again */
#define CLEANUP_FLAG_MASK       0x07 /* every defined flag; others are refused */

struct cleanup_rcpt {
	const char *addr;  /* external form */
	const char *orcpt; /* RFC 3461 ORCPT as received ("rfc822;..." in xtext), or NULL */
	int notify;        /* QF_NOTIFY_* bits, 0 = not given */
};

struct cleanup_env {
	const char *queue_id;      /* chosen by the client (qid_new), or NULL: cleanup picks one */
	const char *sender;        /* external form, "" for <> */
	int flags;                 /* CLEANUP_FLAG_* */
	const char *client_name;   /* e.g. "localhost" */
	const char *client_addr;   /* e.g. "127.0.0.1" */
	const char *helo;          /* as given by the client */
	const char *protocol;      /* "ESMTP", "ESMTPSA", "SMTP", "local", ... */
	const char *sasl_method;   /* "PLAIN", or NULL */
	const char *sasl_username; /* or NULL */
	const char *envid;         /* RFC 3461 ENVID, xtext as received, or NULL */
	const char *ret;           /* "FULL" or "HDRS", or NULL */
	const char *body;          /* "7BIT", "8BITMIME", or NULL */
	bool smtputf8;
	long long size; /* SIZE= from MAIL FROM, or 0 */
	const struct cleanup_rcpt *rcpts;
	size_t nrcpts;
};

struct cleanup_result {
	int status;        /* 0 queued; 4 temporary failure; 5 permanent failure */
	char dsn[16];      /* "2.0.0", "4.3.0", "5.3.4", ... */
	struct buf reason; /* text for the SMTP reply and the log */
	char queue_id[QID_LEN + 1];
};

struct cleanup_client {
	struct stream *s;
	struct buf frame; /* content not yet sent (sent in frames) */
	int error;        /* sticky: the connection failed */
};

/*
 * Connect to private/cleanup (relative to queue_directory) and queue the
 * envelope; it leaves with the content, and cleanup's greeting is checked
 * by cleanup_finish.  Returns 0, or -1 with err set (the caller answers
 * 451 4.3.0).
 */
int cleanup_open(struct cleanup_client *cc, const struct cleanup_env *env, int timeout, struct buf *err);
/* Add content (buffered; sent in frames). Returns 0 or -1. */
int cleanup_write(struct cleanup_client *cc, const void *data, size_t len);
/*
 * Send the last frame and wait for the result.  Returns 0 when a result
 * was read (it may still be a failure: see res->status), -1 when the
 * connection failed (res says 4.3.0).  Closes the connection.
 */
int cleanup_finish(struct cleanup_client *cc, struct cleanup_result *res);
/* Abandon the message: cleanup removes what it wrote. */
void cleanup_abort(struct cleanup_client *cc);

void cleanup_result_init(struct cleanup_result *res);
void cleanup_result_free(struct cleanup_result *res);

#endif
