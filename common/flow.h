/*
 * flow - the in-flow regulator: new mail is taken in no faster than it
 * leaves.
 *
 * The master shares one page of memory with every child (a memfd at
 * MASTER_FLOW_FD, master_proto.h).  qmgr publishes in it how many new
 * messages (taken from incoming/) its active queue holds; smtpd (at
 * DATA and BDAT) and pickup (for each maildrop file) wait while that
 * backlog is above FLOW_BACKLOG_LIMIT, for at most in_flow_delay, then go
 * on regardless.  Without this, a few hundred SMTP sessions outrun the
 * single qmgr for CPU: the queue grows, latency grows to seconds and
 * throughput falls.  Like Postfix's in_flow_delay, it only ever delays;
 * it never refuses mail, and with no qmgr (or in_flow_delay = 0) nothing
 * waits.
 */
#ifndef POSTERN_FLOW_H
#define POSTERN_FLOW_H

#include <stdatomic.h>
#include <stdbool.h>

/*
 * The page also carries the "incoming/ has news" flag, so a burst of new
 * messages costs qmgr one trigger connection instead of one each:
 * cleanup, after committing a file, claims the flag and sends the
 * trigger only when nobody had (flow_trigger_claim); qmgr clears it just
 * before it reads incoming/ (flow_trigger_reset), so a file committed
 * before a claim that found the flag set is seen by that read.  A sender
 * whose trigger failed clears it again.  Without the page every message
 * sends its trigger, as before.
 */
bool flow_trigger_claim(void);
void flow_trigger_reset(void);

/*
 * The page also holds the indexes of the queue-file pool (qpool.h):
 * qmgr fills pool/HEAD, cleanup claims pool/TAIL.  NULL when this process
 * has no writable page.
 */
struct flow_pool {
	_Atomic unsigned long long head, tail;
};
struct flow_pool *flow_pool(void);

/* New messages in qmgr's active queue above which producers pause. */
#define FLOW_BACKLOG_LIMIT 500

/* Master: the shared page, made once; the descriptor every child gets. */
int flow_create(void);

/*
 * The skeleton, for daemons that must not write the page (the network
 * daemons, local): fd MASTER_FLOW_FD becomes a read-only descriptor of
 * the same page, so even a subverted process cannot map it writable,
 * hold everybody's mail back or suppress qmgr's triggers.
 */
void flow_read_only(void);
/* The skeleton, when no master started us: never map descriptor 6. */
void flow_disable(void);

/* qmgr: publish the backlog (a store to shared memory, no system call). */
void flow_publish(unsigned backlog);
/* The backlog as last published (0 when there is no shared page). */
unsigned flow_backlog(void);
/*
 * smtpd, pickup: wait while the backlog is over the limit, up to max_ms
 * (0: never).  Returns the milliseconds waited.
 */
int flow_wait(int max_ms);

#endif
