/*
 * qmgr - the queue manager: one event-driven process that moves mail
 * from incoming/ and deferred/ into active/, routes every recipient to a
 * transport and next hop, hands the recipients to delivery agents over
 * their service sockets, and finishes each message: removes it, defers
 * it with backoff, or returns it to its sender.
 *
 *   qmgr.c          main: the service description, start and stop
 *   qmgr_scan.c     triggers, directory scans, start-up recovery
 *   qmgr_message.c  messages in memory, their recipients, completion
 *   qmgr_route.c    recipient -> transport:nexthop (pure, unit tested)
 *   qmgr_deliver.c  transports, destinations, the scheduler, and the
 *                   non-blocking connections to the agents
 *   qmgr_bounce.c   backoff, expiry, and notices to senders (DSN)
 *
 * Everything runs in the one event loop (common/event.h); nothing waits
 * on a peer except brief local socket writes, the queue file system, and
 * the submission of a notice to cleanup.
 */
#ifndef POSTERN_QMGR_H
#define POSTERN_QMGR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>
#include <sys/types.h>
#include <time.h>

#include "buf.h"
#include "deliver.h"
#include "dict.h"
#include "mastercf.h"
#include "qid.h"
#include "qlog.h"
#include "resolve.h"

#define QMGR_JOB_RCPT_MAX   50      /* recipients in one delivery request */
#define QMGR_FILE_RCPT_MAX  2000000 /* guard for qfile_read: above anything cleanup writes */
#define QMGR_FILE_ATTR_MAX  10000   /* same, for attributes */
#define QMGR_DEBRIS_AGE     3600    /* a 0600 file in incoming/ older than this is a dead writer's */
#define QMGR_TRANSPORT_MAX  64      /* longest transport name */
#define QMGR_NEXTHOP_MAX    1024    /* longest next hop */
#define QMGR_RETURN_LIMIT   50000   /* bytes of the original message returned in a failure notice */
#define QMGR_UNLIMITED_PROC 100     /* in-flight requests for a maxproc 0 (unlimited) transport */
#define QMGR_DRAIN_SECONDS  30      /* at stop, wait this long for requests in flight */

/* Everything qmgr reads from main.cf, read once at start. */
struct qmgr_conf {
	long long active_limit;    /* qmgr_message_active_limit */
	long long rcpt_limit;      /* qmgr_message_recipient_limit */
	long long queue_run_delay; /* seconds */
	long long min_backoff, max_backoff;
	long long max_lifetime, bounce_lifetime;
	long long delay_warning; /* 0: never */
	long long ipc_timeout;
	long long default_process_limit;
	long long default_dest_limit;
	long long initial_dest_concurrency;
	long long local_dest_limit;
	bool dsn_delivered;
	const char *double_bounce_rcpt;
};
extern struct qmgr_conf qmgr_conf;
/* Fill qmgr_conf from the loaded configuration. */
void qmgr_conf_load(void);

/* ---------------------------------------------------------------- routing */

enum qmgr_route_status {
	QMGR_ROUTE_OK,
	QMGR_ROUTE_DEFER,  /* try again later: dsn and reason say why */
	QMGR_ROUTE_BOUNCE, /* never deliverable: dsn and reason say why */
};

struct qmgr_route {
	enum qmgr_route_status status;
	char transport[QMGR_TRANSPORT_MAX + 1];
	struct buf nexthop;
	bool per_rcpt;  /* the destination is the mailbox (local delivery), not the next hop */
	int dest_limit; /* for a mailbox: its own concurrency limit, 0 for the transport's */
	char dsn[16];
	struct buf reason;
};

struct qmgr_router;

/* From the loaded configuration; NULL with err on a bad domain list or table. */
struct qmgr_router *qmgr_router_open(struct buf *err);
void qmgr_router_close(struct qmgr_router *r);
/* Route one recipient address; out is (re)initialised by qmgr_route_init. */
void qmgr_route_init(struct qmgr_route *out);
void qmgr_route_free(struct qmgr_route *out);
enum qmgr_route_status qmgr_route_rcpt(struct qmgr_router *r, const char *addr, struct qmgr_route *out);
/* True for a transport name that may become a socket path. */
bool qmgr_transport_valid(const char *name);

/* ---------------------------------------------------------------- messages */

enum qmgr_rcpt_state {
	QMGR_RCPT_QUEUED,   /* waiting in a destination's queue */
	QMGR_RCPT_BUSY,     /* in a delivery request */
	QMGR_RCPT_DONE,     /* sent or bounced: marked done in the file */
	QMGR_RCPT_DEFERRED, /* to be retried in a later attempt */
};

struct qmgr_msg;
struct qmgr_group;
struct qmgr_dest;

struct qmgr_rcpt {
	char *addr;
	char *orcpt;
	off_t offset;
	int notify;
	unsigned char state;
	struct qmgr_msg *msg;
	struct qmgr_group *group;
	struct qmgr_dest *dest;
	struct qmgr_rcpt *dprev, *dnext; /* in the destination's queue */
	struct qmgr_rcpt *gprev, *gnext; /* in the group's list of queued recipients */
};

/* The recipients of one message that go to one transport and next hop. */
struct qmgr_group {
	struct qmgr_transport *transport;
	char *nexthop;
	struct qmgr_rcpt *head, *tail; /* queued ones */
	struct qmgr_group *next;
};

struct qmgr_msg {
	char id[QID_LEN + 1];
	char *sender;
	int flags; /* CLEANUP_FLAG_* from the file's "flags" attribute */
	struct timeval arrival;
	double active_time; /* when this attempt began (seconds since the epoch) */
	time_t last_defer;  /* newest defer log record before this attempt (delay notices) */
	struct qmgr_rcpt *rcpts;
	size_t nrcpts;
	size_t nqueued, nbusy, ndeferred;
	int fd;            /* the file open for writing (done markers), or -1 */
	off_t size;        /* of the file: small ones become spares when done (qpool.h) */
	bool loading;      /* recipients are being routed: do not finish yet */
	off_t cursor;      /* recipients after this offset are not loaded yet */
	bool more;         /* the file holds recipients beyond the cursor */
	bool deferred_any; /* some recipient of this attempt (any batch) was deferred */
	bool gone;         /* the file vanished or turned out corrupt while in memory */
	bool fresh;        /* taken from incoming/: counts in the in-flow backlog (flow.h) */
	struct qmgr_group *groups;
	struct qmgr_msg *prev, *next; /* every message in memory */
};

/* Messages in memory now. */
extern size_t qmgr_active_count;
/* The routing tables, opened at start. */
extern struct qmgr_router *qmgr_router;

/*
 * Take active/ID into memory and schedule its recipients.  Returns 0, or
 * -1 when the file was corrupt (already moved to corrupt/) or vanished.
 */
int qmgr_message_load(const char *id, bool fresh);
/* A recipient's outcome, from an agent or from qmgr itself. */
void qmgr_message_result(struct qmgr_rcpt *r, enum deliver_status st, const char *dsn, const char *relay,
    const char *reason, const double *delays);
/* Called when a recipient left the queued or busy state: finish the message when nothing is left. */
void qmgr_message_check_done(struct qmgr_msg *m);
/* Log one recipient line in Postfix's shape. */
void qmgr_log_rcpt(const struct qmgr_msg *m, const struct qmgr_rcpt *r, const char *relay, const double *delays,
    const char *dsn, const char *status, const char *reason);
/* "12.34", "0.5", "0": a delay for the log (at most two decimals). */
void qmgr_fmt_delay(char *out, size_t len, double seconds);
/* The address inside an RFC 3461 ORCPT ("rfc822;a+2Bb@x" -> "a+b@x"), or NULL when it is not rfc822. */
char *qmgr_orcpt_addr(const char *orcpt);

/* ---------------------------------------------------------------- delivery */

struct qmgr_transport {
	char *name;
	char *path; /* "private/NAME" */
	int cap;    /* requests in flight at most (master.cf maxproc) */
	int inflight;
	int dest_limit; /* per destination */
	bool per_rcpt;
	struct qmgr_dest *ring_head, *ring_tail; /* destinations with work, round robin */
	int64_t throttle_until;                  /* monotonic ms: connect said busy */
	struct qmgr_transport *next;
};

struct qmgr_dest {
	struct qmgr_transport *transport;
	char *key;
	int inflight;
	int window;         /* slow start: requests allowed in flight now (at most the limit) */
	int64_t dead_until; /* monotonic ms: unreachable, its mail is deferred without a try */
	char *dead_reason;  /* why, for the recipients deferred meanwhile */
	char dead_dsn[16];
	int limit; /* a mailbox's own concurrency limit (virtual mailboxes), 0 for the transport's */
	struct qmgr_rcpt *head, *tail;
	bool in_ring;
	struct qmgr_dest *ring_next;
	struct qmgr_dest *hnext; /* hash chain */
};

/* Read master.cf for the transports' process limits (once, at start). */
void qmgr_deliver_init(const struct mcf *mcf);
struct qmgr_transport *qmgr_transport_get(const char *name, bool per_rcpt);
/* Queue a recipient for delivery to (transport, nexthop) as part of group g. */
void qmgr_deliver_enqueue(struct qmgr_rcpt *r, const char *key, int limit);
/* Start what the limits allow (soon, from the event loop). */
void qmgr_deliver_kick(void);
/* Requests in flight, over all transports. */
int qmgr_deliver_inflight(void);
/* Stop starting requests (qmgr is shutting down). */
void qmgr_deliver_stop(void);
/* Forget that destinations were unreachable (a flush asks for a try now). */
void qmgr_deliver_revive(void);

/* ---------------------------------------------------------------- scans */

#define QMGR_REQ_INCOMING 0x01
#define QMGR_REQ_DEFERRED 0x02
#define QMGR_REQ_FLUSH    0x04

/* Trigger bytes -> QMGR_REQ_* bits (duplicates collapse); returns the number of unknown bytes. */
size_t qmgr_trigger_parse(const unsigned char *p, size_t n, int *req);
/* A client connected to public/qmgr (the skeleton's accept callback). */
void qmgr_trigger_accept(int fd);
/* Ask for scans (QMGR_REQ_*); they run from the event loop. */
void qmgr_scan_request(int req);
/* A slot in the active queue was freed: resume a scan that stopped for lack of one. */
void qmgr_scan_slot_free(void);
/* Start-up: take the lock, put active/ back into incoming/, remove old debris. */
void qmgr_scan_recover(void);
/* The periodic scans (queue_run_delay). */
void qmgr_scan_start_timer(void);
/* Stop scanning (shutdown). */
void qmgr_scan_stop(void);

/* ---------------------------------------------------------------- bounces */

/* When to try a message again after an attempt at now (backoff, delay notice time). */
time_t qmgr_next_attempt(
    time_t now, time_t arrival, long long min_backoff, long long max_backoff, long long delay_warning);
/* True when a message that arrived at arrival is past its lifetime at now (0: after the first attempt). */
bool qmgr_expired(time_t now, time_t arrival, long long lifetime);
/*
 * The end of an attempt with recipients still deferred: bounce them all
 * when the message is past its lifetime.  Returns true when it did.
 */
bool qmgr_bounce_expire(struct qmgr_msg *m);
/*
 * Send the notices the bounce log asks for (failed, delivered); remove the
 * log when they are in cleanup's hands.  Returns 0, or -1 when a notice
 * could not be sent (the log stays: the message must be kept and retried).
 */
int qmgr_bounce_flush(struct qmgr_msg *m);
/* A delay notice for the recipients still deferred, if one is due now. */
void qmgr_bounce_delay_warning(struct qmgr_msg *m);
/* Which kinds of notice a recipient's NOTIFY asks for. */
bool qmgr_notify_failure(int notify);
bool qmgr_notify_delay(int notify);
bool qmgr_notify_success(int notify);

#endif
