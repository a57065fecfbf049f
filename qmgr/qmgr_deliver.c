/*
 * qmgr_deliver - the scheduler and the connections to delivery agents.
 *
 * Each transport (a master.cf service reached at private/NAME) has
 * destinations: the next hop, or for final delivery (local_transport,
 * virtual_transport) the recipient's mailbox.  Routed recipients wait in
 * their destination's FIFO queue.  A destination with queued recipients
 * and fewer than TRANSPORT_destination_concurrency_limit requests in
 * flight sits in its transport's round-robin ring; while the transport
 * has fewer requests in flight than its master.cf maxproc, the scheduler
 * takes the next destination from the ring and makes one request of up to
 * QMGR_JOB_RCPT_MAX recipients of one message that share the transport and
 * next hop (and, for mailbox destinations, whose mailboxes have a free
 * slot).  One slow destination therefore never starves the others.
 *
 * A request (doc/ipc.md 8.3) is one connection, driven by the event loop
 * without blocking: connect, read the agent's greeting, write the request,
 * pass the queue file read-only, then read one status per recipient and
 * "done".  An agent that ends with "reuse" (smtp, which keeps its SMTP
 * session) gets the next request for the same destination on the same
 * connection while there is one and no other destination waits for the
 * transport's slots; otherwise qmgr closes the connection.  For a
 * mailbox transport (local) the next request may be for any mailbox
 * that waits: the connection only saves the connect and accept.
 *
 * Politeness toward next hops: a destination starts with
 * initial_destination_concurrency requests in flight and gains one with
 * each request that reaches it, up to its limit.  A request whose agent
 * reports the destination unreachable drops it to one; another such
 * report at one marks it dead for minimal_backoff_time (or until a
 * flush): its queued mail is deferred with the last reason, without a
 * connection.  Mailbox destinations (local delivery) never slow down.
 *
 * Agents are trusted only with what they say about the
 * recipients they were given: a status for another offset is ignored, a
 * malformed list ends the connection, and every recipient without a status
 * when the connection ends (crash, timeout, end of file) is deferred.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cfg.h"
#include "event.h"
#include "ipc.h"
#include "log.h"
#include "proto.h"
#include "qfile.h"
#include "qmgr.h"
#include "str.h"
#include "xalloc.h"

#define JOB_READ_CHUNK   16384
#define BUSY_RETRY_MS    1000  /* a transport whose backlog is full is tried again after this */
#define WARN_INTERVAL_MS 60000 /* one "transport unavailable" warning per transport per minute */

enum job_state {
	JOB_GREETING, /* connected, waiting for the agent's greeting */
	JOB_SENDING,  /* writing the request, then the descriptor */
	JOB_READING,  /* reading status lists */
};

struct job_rcpt {
	struct qmgr_rcpt *r; /* valid until answered */
	struct qmgr_dest *dest;
	off_t offset;
	bool answered;
};

struct job {
	char id[QID_LEN + 1];
	struct qmgr_transport *t;
	struct qmgr_dest *dest; /* the next-hop destination, or NULL for mailbox destinations */
	struct job_rcpt *v;
	size_t n;
	int sock;
	int file; /* active/ID read-only until it is passed, else -1 */
	enum job_state state;
	bool fd_sent;
	struct buf out;
	size_t out_off;
	struct buf in;
	struct ipc_msg list;
	double delay_a, delay_b; /* before active, in qmgr */
	char defer_dsn[16];      /* the agent's last deferral, for a dead destination's mail */
	char *defer_reason;
	double t_begin, t_conn;
	struct job *prev, *next;
};

static const struct ipc_limits greet_limits = { 256, 4096, 32 };
static const struct ipc_limits reply_limits = { 4096, 16384, 16 };

static const struct mcf *deliver_mcf;
static struct qmgr_transport *transports;
static struct job *jobs;
static bool stopping;
static bool kick_pending;

/* destinations: a chained hash on (transport, key) */
static struct qmgr_dest **dest_tab;
static size_t dest_size, dest_count;

static double
now_real(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (double)tv.tv_sec + tv.tv_usec / 1e6;
}

void
qmgr_deliver_init(const struct mcf *mcf)
{
	deliver_mcf = mcf;
}

/* ---------------------------------------------------------------- transports */

/* tr_dest_limit - TRANSPORT_destination_concurrency_limit, else the default */
static int
tr_dest_limit(const char *name)
{
	char param[QMGR_TRANSPORT_MAX + 64];
	const char *v, *why;
	long long n;

	snprintf(param, sizeof(param), "%s_destination_concurrency_limit", name);
	if ((v = cfg_lookup(param)) == NULL || *v == 0)
		return (int)qmgr_conf.default_dest_limit;
	if (str_to_ll(v, 1, 10000, &n, &why) < 0) {
		log_warn("%s = %s: %s (1 to 10000); using default_destination_concurrency_limit", param, v, why);
		return (int)qmgr_conf.default_dest_limit;
	}
	return (int)n;
}

struct qmgr_transport *
qmgr_transport_get(const char *name, bool per_rcpt)
{
	const struct mcf_service *svc;
	struct qmgr_transport *t;

	for (t = transports; t; t = t->next)
		if (strcmp(t->name, name) == 0)
			return t;
	t = xcalloc(1, sizeof(*t));
	t->name = xstrdup(name);
	t->path = xasprintf("%s/%s", SVC_PRIVATE_DIR, name);
	t->per_rcpt = per_rcpt;
	t->dest_limit = tr_dest_limit(name);
	svc = deliver_mcf ? mcf_find(deliver_mcf, name, MCF_UNIX) : NULL;
	if (svc == NULL || svc->maxproc < 0)
		t->cap = (int)qmgr_conf.default_process_limit;
	else
		t->cap = svc->maxproc == 0 ? QMGR_UNLIMITED_PROC : svc->maxproc;
	t->next = transports;
	transports = t;
	log_debug("transport %s: %d requests in flight, %d per destination%s", name, t->cap, t->dest_limit,
	    per_rcpt ? " (mailbox)" : "");
	return t;
}

int
qmgr_deliver_inflight(void)
{
	struct qmgr_transport *t;
	int n = 0;

	for (t = transports; t; t = t->next)
		n += t->inflight;
	return n;
}

/* ---------------------------------------------------------------- destinations */

static size_t
dest_hash(const struct qmgr_transport *t, const char *key)
{
	size_t h = (size_t)(uintptr_t)t * 2654435761u;
	const unsigned char *p;

	for (p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h;
}

static void
dest_grow(void)
{
	struct qmgr_dest **tab, *d, *next;
	size_t size = dest_size ? dest_size * 2 : 256, i, h;

	tab = xcalloc(size, sizeof(*tab));
	for (i = 0; i < dest_size; i++) {
		for (d = dest_tab[i]; d; d = next) {
			next = d->hnext;
			h = dest_hash(d->transport, d->key) & (size - 1);
			d->hnext = tab[h];
			tab[h] = d;
		}
	}
	free(dest_tab);
	dest_tab = tab;
	dest_size = size;
}

static struct qmgr_dest *
dest_get(struct qmgr_transport *t, const char *key)
{
	struct qmgr_dest *d;
	size_t h;

	if (dest_size == 0 || dest_count >= dest_size * 2)
		dest_grow();
	h = dest_hash(t, key) & (dest_size - 1);
	for (d = dest_tab[h]; d; d = d->hnext)
		if (d->transport == t && strcmp(d->key, key) == 0)
			return d;
	d = xcalloc(1, sizeof(*d));
	d->transport = t;
	d->key = xstrdup(key);
	d->window = (int)qmgr_conf.initial_dest_concurrency;
	d->hnext = dest_tab[h];
	dest_tab[h] = d;
	dest_count++;
	return d;
}

/* dest_release - free a destination with nothing queued, nothing in flight, not in a ring */
static void
dest_release(struct qmgr_dest *d)
{
	struct qmgr_dest **pp;
	size_t h;

	if (d->head || d->inflight > 0 || d->in_ring || d->dead_until > 0)
		return;
	h = dest_hash(d->transport, d->key) & (dest_size - 1);
	for (pp = &dest_tab[h]; *pp; pp = &(*pp)->hnext) {
		if (*pp == d) {
			*pp = d->hnext;
			break;
		}
	}
	dest_count--;
	free(d->key);
	free(d->dead_reason);
	free(d);
}

/* dest_window - requests d may have in flight now */
static int
dest_window(const struct qmgr_dest *d)
{
	int limit = d->transport->dest_limit;

	if (d->transport->per_rcpt)
		return d->limit > 0 ? d->limit : limit;
	return d->window < limit ? (d->window < 1 ? 1 : d->window) : limit;
}

static bool
dest_eligible(const struct qmgr_dest *d)
{
	return d->head != NULL && d->inflight < dest_window(d) && d->dead_until == 0;
}

/* dest_ready - into the ring when it has work it may start */
static void
dest_ready(struct qmgr_dest *d)
{
	struct qmgr_transport *t = d->transport;

	if (d->in_ring || !dest_eligible(d)) {
		dest_release(d);
		return;
	}
	d->in_ring = true;
	d->ring_next = NULL;
	if (t->ring_tail)
		t->ring_tail->ring_next = d;
	else
		t->ring_head = d;
	t->ring_tail = d;
	qmgr_deliver_kick();
}

static struct qmgr_dest *
ring_pop(struct qmgr_transport *t)
{
	struct qmgr_dest *d = t->ring_head;

	if (d == NULL)
		return NULL;
	t->ring_head = d->ring_next;
	if (t->ring_head == NULL)
		t->ring_tail = NULL;
	d->in_ring = false;
	d->ring_next = NULL;
	return d;
}

/* ---------------------------------------------------------------- queues */

static void
fifo_unlink(struct qmgr_rcpt *r)
{
	struct qmgr_dest *d = r->dest;
	struct qmgr_group *g = r->group;

	if (r->dprev)
		r->dprev->dnext = r->dnext;
	else
		d->head = r->dnext;
	if (r->dnext)
		r->dnext->dprev = r->dprev;
	else
		d->tail = r->dprev;
	if (r->gprev)
		r->gprev->gnext = r->gnext;
	else
		g->head = r->gnext;
	if (r->gnext)
		r->gnext->gprev = r->gprev;
	else
		g->tail = r->gprev;
	r->dprev = r->dnext = r->gprev = r->gnext = NULL;
}

/* fifo_push_front - back where it was taken from (the transport was busy) */
static void
fifo_push_front(struct qmgr_rcpt *r)
{
	struct qmgr_dest *d = r->dest;
	struct qmgr_group *g = r->group;

	r->dprev = NULL;
	r->dnext = d->head;
	if (d->head)
		d->head->dprev = r;
	else
		d->tail = r;
	d->head = r;
	r->gprev = NULL;
	r->gnext = g->head;
	if (g->head)
		g->head->gprev = r;
	else
		g->tail = r;
	g->head = r;
}

void
qmgr_deliver_enqueue(struct qmgr_rcpt *r, const char *key, int limit)
{
	struct qmgr_dest *d = dest_get(r->group->transport, key);
	struct qmgr_group *g = r->group;

	d->limit = limit;
	r->dest = d;
	if (d->dead_until > 0) {
		qmgr_message_result(r, DELIVER_DEFERRED, d->dead_dsn, "none", d->dead_reason, NULL);
		dest_release(d);
		return;
	}
	r->dnext = NULL;
	r->dprev = d->tail;
	if (d->tail)
		d->tail->dnext = r;
	else
		d->head = r;
	d->tail = r;
	r->gnext = NULL;
	r->gprev = g->tail;
	if (g->tail)
		g->tail->gnext = r;
	else
		g->head = r;
	g->tail = r;
	dest_ready(d);
}

/* ---------------------------------------------------------------- jobs */

static void job_read(int fd, int events, void *arg);
static void job_write(int fd, int events, void *arg);
static void job_timeout(void *arg);
static void sched_run(void *arg);

/* job_take - r joins the job: busy, and (for mailbox destinations) holding a slot of its mailbox */
static void
job_take(struct job *j, struct qmgr_rcpt *r)
{
	struct job_rcpt *e = &j->v[j->n++];

	fifo_unlink(r);
	r->state = QMGR_RCPT_BUSY;
	r->msg->nqueued--;
	r->msg->nbusy++;
	e->r = r;
	e->offset = r->offset;
	e->dest = r->dest;
	e->answered = false;
	if (j->dest == NULL)
		r->dest->inflight++;
}

/* job_form - the next request for destination d (which is eligible) */
static struct job *
job_form(struct qmgr_transport *t, struct qmgr_dest *d)
{
	struct qmgr_rcpt *first = d->head, *r, *next;
	struct qmgr_msg *m = first->msg;
	struct job *j = xcalloc(1, sizeof(*j));

	memcpy(j->id, m->id, sizeof(j->id));
	j->t = t;
	j->v = xcalloc(QMGR_JOB_RCPT_MAX, sizeof(*j->v));
	j->sock = j->file = -1;
	ipc_msg_init(&j->list);
	if (!t->per_rcpt) {
		j->dest = d;
		d->inflight++;
	}
	job_take(j, first);
	/* Same message, transport and next hop: the group's other queued recipients. */
	for (r = first->group->head; r && j->n < QMGR_JOB_RCPT_MAX; r = next) {
		next = r->gnext;
		if (t->per_rcpt ? r->dest->inflight < dest_window(r->dest) : r->dest == d)
			job_take(j, r);
	}
	t->inflight++;
	j->t_begin = now_real();
	j->delay_a = m->active_time - ((double)m->arrival.tv_sec + m->arrival.tv_usec / 1e6);
	j->delay_b = j->t_begin - m->active_time;
	j->next = jobs;
	if (jobs)
		jobs->prev = j;
	jobs = j;
	return j;
}

/* job_unlink - the job stops holding its transport and destination slots */
static void
job_unlink(struct job *j)
{
	if (j->prev)
		j->prev->next = j->next;
	else
		jobs = j->next;
	if (j->next)
		j->next->prev = j->prev;
	j->t->inflight--;
	if (j->dest) {
		j->dest->inflight--;
		dest_ready(j->dest);
	}
	qmgr_deliver_kick();
}

static void
job_free(struct job *j)
{
	event_timer_cancel(job_timeout, j);
	if (j->sock >= 0) {
		event_forget(j->sock);
		close(j->sock);
	}
	if (j->file >= 0)
		close(j->file);
	buf_free(&j->out);
	buf_free(&j->in);
	ipc_msg_free(&j->list);
	free(j->defer_reason);
	free(j->v);
	free(j);
}

/* job_answer - entry e's outcome goes to its message */
static void
job_answer(
    struct job *j, struct job_rcpt *e, enum deliver_status st, const char *dsn, const char *relay, const char *reason)
{
	double now = now_real(), delays[4];

	e->answered = true;
	if (j->dest == NULL) {
		e->dest->inflight--;
		dest_ready(e->dest);
	}
	delays[0] = j->delay_a;
	delays[1] = j->delay_b;
	if (j->t_conn > 0) {
		delays[2] = j->t_conn - j->t_begin;
		delays[3] = now - j->t_conn;
	} else {
		delays[2] = now - j->t_begin;
		delays[3] = 0;
	}
	qmgr_message_result(e->r, st, dsn, relay, reason, delays);
}

/*
 * job_end - the connection is over.  Every recipient without a status
 * is deferred with reason: nothing is lost.
 */
static void
job_end(struct job *j, const char *dsn, const char *reason)
{
	size_t i;

	if (j->sock >= 0) {
		event_forget(j->sock);
		close(j->sock);
		j->sock = -1;
	}
	job_unlink(j);
	for (i = 0; i < j->n; i++)
		if (!j->v[i].answered)
			job_answer(j, &j->v[i], DELIVER_DEFERRED, dsn, "none", reason);
	job_free(j);
}

/* job_requeue - the transport is busy: everything goes back to where it was */
static void
job_requeue(struct job *j)
{
	size_t i;

	for (i = j->n; i-- > 0;) {
		struct qmgr_rcpt *r = j->v[i].r;

		if (j->dest == NULL)
			r->dest->inflight--;
		r->state = QMGR_RCPT_QUEUED;
		r->msg->nbusy--;
		r->msg->nqueued++;
		fifo_push_front(r);
	}
	for (i = 0; i < j->n; i++)
		dest_ready(j->v[i].r->dest);
	job_unlink(j);
	job_free(j);
}

/* job_connect - a non-blocking connection to the transport's socket; -1 with errno */
static int
job_connect(const char *path)
{
	struct sockaddr_un sun;
	int fd, saved;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	/* A Unix socket connects at once, or says EAGAIN when the listener's backlog is full. */
	while (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		if (errno == EINTR)
			continue;
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

/* job_prepare - open the queue file and encode the request; -1 when the job is over */
static int
job_prepare(struct job *j)
{
	struct qmgr_transport *t = j->t;
	struct qmgr_msg *m = j->v[0].r->msg;
	struct deliver_request req;
	struct deliver_rcpt *rv;
	char path[64], why[256];
	size_t i;

	if (qid_path(path, sizeof(path), QUEUE_ACTIVE, j->id) < 0)
		log_panic("job_prepare: no path for %s", j->id);
	if ((j->file = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)) < 0) {
		snprintf(why, sizeof(why), "cannot open the queue file: %s", strerror(errno));
		log_warn("%s: open %s: %m", j->id, path);
		job_end(j, "4.3.0", why);
		return -1;
	}
	memset(&req, 0, sizeof(req));
	memcpy(req.queue_id, j->id, sizeof(req.queue_id));
	req.sender = m->sender;
	req.transport = t->name;
	req.nexthop = j->v[0].r->group->nexthop;
	req.arrival = m->arrival.tv_sec;
	req.flags = m->flags;
	rv = xcalloc(j->n, sizeof(*rv));
	for (i = 0; i < j->n; i++) {
		rv[i].addr = j->v[i].r->addr;
		rv[i].orcpt = j->v[i].r->orcpt;
		rv[i].notify = j->v[i].r->notify;
		rv[i].offset = j->v[i].offset;
	}
	req.rcpts = rv;
	req.nrcpts = j->n;
	req.fd = -1;
	deliver_request_encode(&req, &j->out);
	free(rv);
	return 0;
}

/* job_start - connect and wait for the greeting; the job may be over when this returns */
static void
job_start(struct job *j)
{
	static int64_t last_warn;
	struct qmgr_transport *t = j->t;
	char why[256];
	int64_t now;

	if ((j->sock = job_connect(t->path)) < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			/* The master starts agents on demand: wait a little, then try again. */
			t->throttle_until = stream_now_ms() + BUSY_RETRY_MS;
			event_timer_set(sched_run, t, BUSY_RETRY_MS);
			job_requeue(j);
			return;
		}
		snprintf(why, sizeof(why), "mail transport unavailable: %s: %s", t->path, strerror(errno));
		now = stream_now_ms();
		if (now - last_warn >= WARN_INTERVAL_MS || last_warn == 0) {
			log_warn("connect to transport %s: %s", t->path, strerror(errno));
			last_warn = now;
		}
		job_end(j, "4.3.0", why);
		return;
	}
	if (job_prepare(j) < 0)
		return;
	j->state = JOB_GREETING;
	event_enable_read(j->sock, job_read, j);
	event_timer_set(job_timeout, j, qmgr_conf.ipc_timeout * 1000);
}

static void
job_timeout(void *arg)
{
	struct job *j = arg;

	log_warn("%s: delivery agent %s did not finish within %llds", j->id, j->t->path, qmgr_conf.ipc_timeout);
	job_end(j, "4.3.0", "delivery agent timed out");
}

/* ---------------------------------------------------------------- politeness */

static void dest_revive_timer(void *arg);

/* dest_dead - d could not be reached again: defer its mail without trying, for a while */
static void
dest_dead(struct qmgr_dest *d, const char *dsn, const char *reason)
{
	struct qmgr_rcpt *r;
	int64_t ms = qmgr_conf.min_backoff * 1000;

	d->dead_until = stream_now_ms() + ms;
	free(d->dead_reason);
	d->dead_reason = xasprintf("delivery temporarily suspended: %s", reason);
	strlcpy(d->dead_dsn, dsn[0] == '4' ? dsn : "4.4.1", sizeof(d->dead_dsn));
	log_info("%s: destination %s unreachable: its mail waits for %llds (%s)", d->transport->name, d->key,
	    qmgr_conf.min_backoff, reason);
	event_timer_set(dest_revive_timer, d, ms);
	while ((r = d->head) != NULL) {
		fifo_unlink(r);
		qmgr_message_result(r, DELIVER_DEFERRED, d->dead_dsn, "none", d->dead_reason, NULL);
	}
}

/* dest_revive - d may be tried again (time passed, or a flush) */
static void
dest_revive(struct qmgr_dest *d)
{
	event_timer_cancel(dest_revive_timer, d);
	d->dead_until = 0;
	d->window = 1;
	free(d->dead_reason);
	d->dead_reason = NULL;
	dest_ready(d);
}

static void
dest_revive_timer(void *arg)
{
	dest_revive(arg);
}

void
qmgr_deliver_revive(void)
{
	struct qmgr_dest *d, *next;
	size_t i;

	for (i = 0; i < dest_size; i++)
		for (d = dest_tab[i]; d; d = next) {
			next = d->hnext;
			if (d->dead_until > 0)
				dest_revive(d);
		}
}

/* dest_feedback - slow start: a request that reached d widens its window, one that did not narrows it */
static void
dest_feedback(struct qmgr_dest *d, bool unreachable, const char *dsn, const char *reason)
{
	if (d->transport->per_rcpt || d->dead_until > 0)
		return;
	if (!unreachable) {
		if (d->window < d->transport->dest_limit)
			d->window++;
		return;
	}
	if (d->window <= 1 && d->inflight <= 1)
		dest_dead(d, dsn, reason ? reason : "destination unreachable");
	else
		d->window = 1;
}

/* ring_others - does a destination other than d wait for t's slots */
static bool
ring_others(const struct qmgr_transport *t, const struct qmgr_dest *d)
{
	const struct qmgr_dest *e;

	for (e = t->ring_head; e; e = e->ring_next)
		if (e != d && dest_eligible(e))
			return true;
	return false;
}

/*
 * job_done - the agent's end list.  With DELIVER_DONE_REUSE and more
 * mail for the same destination the connection carries the next
 * request; otherwise it is closed.
 */
static void
job_done(struct job *j, int flags)
{
	struct qmgr_dest *d = j->dest;
	struct qmgr_transport *t = j->t;
	struct job *n;
	int sock;

	if (d != NULL) {
		/* The connection's own slot counts as free while we decide. */
		d->inflight--;
		dest_feedback(d, (flags & DELIVER_DONE_UNREACHABLE) != 0, j->defer_dsn, j->defer_reason);
		d->inflight++;
	}
	if (d == NULL && (flags & DELIVER_DONE_REUSE) && !stopping && j->in.len == 0 &&
	    t->throttle_until <= stream_now_ms()) {
		/* A mailbox transport (local): the connection serves whichever mailbox waits next. */
		sock = j->sock;
		event_forget(sock);
		j->sock = -1;
		job_end(j, "4.3.0", "delivery agent returned no status for this recipient");
		while ((d = ring_pop(t)) != NULL && !dest_eligible(d))
			dest_release(d);
		if (d == NULL) {
			close(sock);
			return;
		}
	} else if (!(flags & DELIVER_DONE_REUSE) || stopping || d == NULL || d->head == NULL || d->dead_until > 0 ||
	           j->in.len > 0 || (t->inflight >= t->cap && ring_others(t, d))) {
		job_end(j, "4.3.0", "delivery agent returned no status for this recipient");
		return;
	} else {
		sock = j->sock;
		event_forget(sock);
		j->sock = -1;
		job_end(j, "4.3.0", "delivery agent returned no status for this recipient");
		/* d still has queued mail, so it was not released. */
		if (!dest_eligible(d)) {
			close(sock);
			return;
		}
	}
	n = job_form(t, d);
	dest_ready(d);
	n->sock = sock;
	n->t_conn = n->t_begin;
	if (job_prepare(n) < 0)
		return;
	n->state = JOB_SENDING;
	event_enable_read(sock, job_read, n);
	event_enable_write(sock, job_write, n);
	event_timer_set(job_timeout, n, qmgr_conf.ipc_timeout * 1000);
}

/* job_status - one status list from the agent; false when the job is over */
static bool
job_status(struct job *j)
{
	struct deliver_result res;
	size_t i;
	int r;

	if ((r = deliver_result_parse(&j->list, &res)) < 0) {
		log_warn("%s: malformed status from delivery agent %s", j->id, j->t->path);
		job_end(j, "4.3.0", "delivery agent went away");
		return false;
	}
	if (r == 0) {
		job_done(j, deliver_done_flags(&j->list));
		return false;
	}
	for (i = 0; i < j->n; i++)
		if (!j->v[i].answered && j->v[i].offset == res.offset)
			break;
	if (i == j->n)
		log_warn("%s: delivery agent %s reported on offset %lld, which it was not given or already reported; "
		         "ignored",
		    j->id, j->t->path, (long long)res.offset);
	else
		job_answer(j, &j->v[i], res.status, res.dsn, res.relay, res.reason);
	if (i < j->n && res.status == DELIVER_DEFERRED) {
		free(j->defer_reason);
		j->defer_reason = xstrdup(res.reason);
		strlcpy(j->defer_dsn, res.dsn, sizeof(j->defer_dsn));
	}
	deliver_result_free(&res);
	return true;
}

/* job_parse - act on every complete list in the input; false when the job is over */
static bool
job_parse(struct job *j)
{
	const struct ipc_limits *lim;
	long long version;
	const char *proto;
	size_t used;
	int r;

	while (j->in.len > 0 && j->state != JOB_SENDING) {
		lim = j->state == JOB_GREETING ? &greet_limits : &reply_limits;
		r = ipc_parse(j->in.data, j->in.len, &j->list, lim, &used);
		if (r == 0) {
			if (j->in.len > lim->list_max) {
				r = IPC_ERR_TOOBIG;
			} else {
				return true;
			}
		}
		if (r < 0) {
			log_warn("%s: delivery agent %s: %s", j->id, j->t->path, ipc_strerror(r));
			job_end(j, "4.3.0", "delivery agent went away");
			return false;
		}
		buf_consume(&j->in, used);
		if (j->state == JOB_GREETING) {
			proto = ipc_msg_str(&j->list, ATTR_PROTOCOL);
			if (proto == NULL || strcmp(proto, DELIVER_PROTOCOL) != 0 ||
			    ipc_msg_int(&j->list, ATTR_VERSION, DELIVER_VERSION, 1000000, &version) < 0) {
				log_warn("%s: %s: expected protocol %s version %d or later, the peer greeted with %s",
				    j->id, j->t->path, DELIVER_PROTOCOL, DELIVER_VERSION, proto ? proto : "nothing");
				job_end(j, "4.3.0", "mail transport unavailable: not a delivery agent");
				return false;
			}
			j->t_conn = now_real();
			j->state = JOB_SENDING;
			event_enable_write(j->sock, job_write, j);
			continue;
		}
		if (!job_status(j))
			return false;
	}
	return true;
}

static void
job_read(int fd, int events, void *arg)
{
	struct job *j = arg;
	ssize_t n;

	(void)events;
	buf_reserve(&j->in, JOB_READ_CHUNK);
	n = read(fd, j->in.data + j->in.len, JOB_READ_CHUNK);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		if (n < 0)
			log_warn("%s: read from delivery agent %s: %m", j->id, j->t->path);
		job_end(j, "4.3.0", "delivery agent went away");
		return;
	}
	j->in.len += (size_t)n;
	j->in.data[j->in.len] = 0;
	/* Nothing may arrive while the request is being sent but the end of the connection. */
	if (j->state == JOB_SENDING && j->in.len > reply_limits.list_max) {
		log_warn("%s: delivery agent %s talks before it has the request", j->id, j->t->path);
		job_end(j, "4.3.0", "delivery agent went away");
		return;
	}
	(void)job_parse(j);
}

/* job_send_fd - the queue file as one 'F' byte with SCM_RIGHTS; 1 sent, 0 try later, -1 failed */
static int
job_send_fd(struct job *j)
{
	ssize_t r;

	do
		r = stream_sendmsg_fd(j->sock, j->file, MSG_DONTWAIT);
	while (r < 0 && errno == EINTR);
	if (r == 1)
		return 1;
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return 0;
	return -1;
}

static void
job_write(int fd, int events, void *arg)
{
	struct job *j = arg;
	ssize_t n;
	int r;

	(void)events;
	while (j->out_off < j->out.len) {
		n = send(fd, j->out.data + j->out_off, j->out.len - j->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			log_warn("%s: write to delivery agent %s: %m", j->id, j->t->path);
			job_end(j, "4.3.0", "delivery agent went away");
			return;
		}
		j->out_off += (size_t)n;
	}
	if ((r = job_send_fd(j)) == 0)
		return;
	if (r < 0) {
		log_warn("%s: pass the queue file to delivery agent %s: %m", j->id, j->t->path);
		job_end(j, "4.3.0", "delivery agent went away");
		return;
	}
	close(j->file);
	j->file = -1;
	buf_free(&j->out);
	event_disable_write(fd);
	j->state = JOB_READING;
	(void)job_parse(j);
}

/* ---------------------------------------------------------------- the scheduler */

/* sched_run - start every request the limits allow, round robin over destinations (arg: a throttled transport, or NULL)
 */
static void
sched_run(void *arg)
{
	struct qmgr_transport *t;
	struct qmgr_dest *d;
	int64_t now = stream_now_ms();
	struct job *j;

	(void)arg;
	kick_pending = false;
	for (t = transports; t && !stopping; t = t->next) {
		while (t->inflight < t->cap && t->throttle_until <= now && (d = ring_pop(t)) != NULL) {
			if (!dest_eligible(d)) {
				dest_release(d);
				continue;
			}
			j = job_form(t, d);
			dest_ready(d);
			job_start(j);
		}
	}
}

void
qmgr_deliver_kick(void)
{
	if (kick_pending || stopping)
		return;
	kick_pending = true;
	event_timer_set(sched_run, NULL, 0);
}

void
qmgr_deliver_stop(void)
{
	stopping = true;
	event_timer_cancel(sched_run, NULL);
}
