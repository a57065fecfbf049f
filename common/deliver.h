/*
 * deliver - the delivery request between qmgr and a delivery agent
 * (local, smtp): doc/ipc.md section 8.3 is the specification.
 *
 *   agent -> qmgr   greeting: protocol=deliver version=1
 *   qmgr -> agent   the request: one attribute list
 *   qmgr -> agent   the queue file, opened read-only, passed with SCM_RIGHTS
 *   agent -> qmgr   one status list per recipient, in any order:
 *                   offset, status (sent | deferred | bounced), dsn, reason, relay
 *   agent -> qmgr   the end: done=1 [reuse=1] [unreachable=1]
 *   qmgr -> agent   after reuse=1 only: the next request on the same
 *                   connection (no new greeting), or the end of file
 *
 * Recipients are named by the offset of their record in the queue file;
 * qmgr alone marks them done.  The agent reads the envelope attributes
 * and the content from the passed descriptor (qfile_read,
 * qfile_content_next); it never opens the queue.  A recipient without a
 * status when the connection ends (the agent crashed, timed out) stays
 * deferred: nothing is lost, at worst it is delivered twice.
 */
#ifndef POSTERN_DELIVER_H
#define POSTERN_DELIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "buf.h"
#include "ipc.h"
#include "qid.h"
#include "stream.h"

#define DELIVER_PROTOCOL "deliver"
#define DELIVER_VERSION  1
#define DELIVER_RCPT_MAX 100000 /* recipients in one request */

enum deliver_status {
	DELIVER_SENT,
	DELIVER_DEFERRED,
	DELIVER_BOUNCED,
};

struct deliver_rcpt {
	char *addr;   /* the recipient (after virtual alias expansion) */
	char *orcpt;  /* RFC 3461 ORCPT as received, or NULL */
	int notify;   /* QF_NOTIFY_* */
	off_t offset; /* its record in the queue file */
};

struct deliver_request {
	char queue_id[QID_LEN + 1];
	char *sender;      /* "" for <> */
	char *transport;   /* "local", "smtp", ... */
	char *nexthop;     /* destination: a domain, [host]:port, or the mailbox domain */
	long long arrival; /* seconds since the epoch */
	int flags;         /* CLEANUP_FLAG_* of the message (bounce, ...) */
	struct deliver_rcpt *rcpts;
	size_t nrcpts;
	int fd; /* the queue file, read-only; -1 until received */
};

struct deliver_result {
	off_t offset;
	enum deliver_status status;
	char dsn[16]; /* "2.0.0", "4.2.2", "5.1.1", ... */
	char *reason; /* for the log and the DSN */
	char *relay;  /* "local", "mx.example.com[192.0.2.1]:25" */
};

/* qmgr side: the request as bytes to write when the socket is ready. */
void deliver_request_encode(const struct deliver_request *req, struct buf *out);
/* qmgr side: one status list -> result; 1 for a status, 0 for "done", -1 malformed. */
int deliver_result_parse(const struct ipc_msg *m, struct deliver_result *res);
void deliver_result_free(struct deliver_result *res);

/* agent side: greet, read the request and the descriptor; 0 or -1 with err. */
int deliver_request_read(struct stream *s, struct deliver_request *req, struct buf *err);
void deliver_request_free(struct deliver_request *req);
/* agent side: one recipient's outcome; reason is shortened and made printable. */
int deliver_status_send(
    struct stream *s, off_t offset, enum deliver_status st, const char *dsn, const char *relay, const char *reason);
int deliver_done_send(struct stream *s);

/* Flags of the end list. */
#define DELIVER_DONE_REUSE       0x01 /* the agent takes another request for the same transport:nexthop here */
#define DELIVER_DONE_UNREACHABLE 0x02 /* no host of the next hop could be reached (a site failure) */
/* agent side: the end, with DELIVER_DONE_* flags. */
int deliver_done_send_flags(struct stream *s, int flags);
/* qmgr side: the DELIVER_DONE_* flags of an end list. */
int deliver_done_flags(const struct ipc_msg *m);
/*
 * agent side, after an end with DELIVER_DONE_REUSE: the next request on
 * the same connection.  0 with a request, 1 when qmgr closed the
 * connection instead (a clean end), -1 with err.
 */
int deliver_request_next(struct stream *s, struct deliver_request *req, struct buf *err);

const char *deliver_status_name(enum deliver_status st);

#endif
