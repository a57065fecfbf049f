/*
 * qmgr_message - the active queue: messages in memory, their
 * recipients, and what happens when a message's attempt is over.
 *
 * qmgr_scan.c moves a file into active/ and calls qmgr_message_load(),
 * which reads it once (qfile_read: every length bounded, the file is not
 * trusted), keeps what scheduling needs (sender, flags, arrival, the
 * recipients still to do, at most qmgr_message_recipient_limit of them
 * at a time), routes each recipient and queues it for delivery.
 * qmgr_deliver.c reports each recipient's outcome through
 * qmgr_message_result(); when no recipient is queued or in flight, the
 * attempt is over: the message is removed (every recipient done), or
 * kept in deferred/ with its next attempt time as the file's mtime, after
 * expiry and notices (qmgr_bounce.c).
 *
 * A recipient is marked done in the file (R -> D) only after its outcome
 * is recorded: sent, or bounced with a record in bounce/ID that stays
 * until the notice is in cleanup's hands.  A crash at any point can only
 * repeat a delivery or a notice, never lose one.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg.h"
#include "cleanup_client.h"
#include "flow.h"
#include "log.h"
#include "qfile.h"
#include "qpool.h"
#include "qmgr.h"
#include "str.h"
#include "xalloc.h"

struct qmgr_conf qmgr_conf;
size_t qmgr_active_count;
static unsigned fresh_count; /* messages in memory taken from incoming/: the in-flow backlog */
struct qmgr_router *qmgr_router;

static struct qmgr_msg *msg_list;

static const struct qfile_read_limits msg_limits = { QMGR_FILE_RCPT_MAX, QMGR_FILE_ATTR_MAX };

void
qmgr_conf_load(void)
{
	qmgr_conf.active_limit = cfg_int(P_QMGR_MESSAGE_ACTIVE_LIMIT);
	qmgr_conf.rcpt_limit = cfg_int(P_QMGR_MESSAGE_RECIPIENT_LIMIT);
	qmgr_conf.queue_run_delay = cfg_time(P_QUEUE_RUN_DELAY);
	qmgr_conf.min_backoff = cfg_time(P_MINIMAL_BACKOFF_TIME);
	qmgr_conf.max_backoff = cfg_time(P_MAXIMAL_BACKOFF_TIME);
	qmgr_conf.max_lifetime = cfg_time(P_MAXIMAL_QUEUE_LIFETIME);
	qmgr_conf.bounce_lifetime = cfg_time(P_BOUNCE_QUEUE_LIFETIME);
	qmgr_conf.delay_warning = cfg_time(P_DELAY_WARNING_TIME);
	qmgr_conf.ipc_timeout = cfg_time(P_IPC_TIMEOUT);
	qmgr_conf.default_process_limit = cfg_int(P_DEFAULT_PROCESS_LIMIT);
	qmgr_conf.default_dest_limit = cfg_int(P_DEFAULT_DESTINATION_CONCURRENCY_LIMIT);
	qmgr_conf.initial_dest_concurrency = cfg_int(P_INITIAL_DESTINATION_CONCURRENCY);
	qmgr_conf.local_dest_limit = cfg_int(P_LOCAL_DESTINATION_CONCURRENCY_LIMIT);
	qmgr_conf.dsn_delivered = cfg_bool(P_DSN_DELIVERED_ENABLE);
	qmgr_conf.double_bounce_rcpt = cfg_str(P_DOUBLE_BOUNCE_NOTICE_RECIPIENT);
}

/* ---------------------------------------------------------------- logging */

void
qmgr_fmt_delay(char *out, size_t len, double s)
{
	char *p;

	if (!(s >= 0.005)) { /* also NaN and negative (a clock step) */
		snprintf(out, len, "0");
		return;
	}
	snprintf(out, len, s >= 100 ? "%.0f" : s >= 10 ? "%.1f" : "%.2f", s);
	if (strchr(out, '.') != NULL) {
		p = out + strlen(out) - 1;
		while (*p == '0')
			*p-- = 0;
		if (*p == '.')
			*p = 0;
	}
}

char *
qmgr_orcpt_addr(const char *orcpt)
{
	struct buf out = BUF_INIT;
	const char *p;
	int hi, lo;

	if (orcpt == NULL || str_ncasecmp(orcpt, "rfc822;", 7) != 0)
		return NULL;
	for (p = orcpt + 7; *p; p++) {
		if (*p != '+') {
			buf_putc(&out, *p);
			continue;
		}
		/* xtext: "+" and two upper-case hex digits */
		hi = p[1] >= '0' && p[1] <= '9' ? p[1] - '0' : p[1] >= 'A' && p[1] <= 'F' ? p[1] - 'A' + 10 : -1;
		lo = hi < 0                       ? -1
		     : p[2] >= '0' && p[2] <= '9' ? p[2] - '0'
		     : p[2] >= 'A' && p[2] <= 'F' ? p[2] - 'A' + 10
		                                  : -1;
		if (lo < 0 || (hi << 4 | lo) < 0x20 || (hi << 4 | lo) == 0x7f) {
			buf_free(&out);
			return NULL;
		}
		buf_putc(&out, hi << 4 | lo);
		p += 2;
	}
	if (out.len == 0) {
		buf_free(&out);
		return NULL;
	}
	return buf_export(&out);
}

/* printable - s for a log line: control bytes as '?', at most max bytes */
static const char *
printable(struct buf *out, const char *s, size_t max)
{
	size_t i;

	buf_reset(out);
	for (i = 0; s && s[i] && i < max; i++)
		buf_putc(out, (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i]);
	if (s && s[i])
		buf_puts(out, "...");
	return buf_str(out);
}

void
qmgr_log_rcpt(const struct qmgr_msg *m, const struct qmgr_rcpt *r, const char *relay, const double *delays,
    const char *dsn, const char *status, const char *reason)
{
	struct buf to = BUF_INIT, orig = BUF_INIT, rel = BUF_INIT, why = BUF_INIT;
	char d[4][16], total[16];
	char *orig_to = qmgr_orcpt_addr(r->orcpt);
	double sum = 0;
	int i;

	for (i = 0; i < 4; i++) {
		qmgr_fmt_delay(d[i], sizeof(d[i]), delays[i]);
		sum += delays[i] > 0 ? delays[i] : 0;
	}
	qmgr_fmt_delay(total, sizeof(total), sum);
	printable(&to, r->addr, 500);
	if (orig_to && str_casecmp(orig_to, r->addr) == 0) {
		free(orig_to);
		orig_to = NULL;
	}
	if (orig_to)
		printable(&orig, orig_to, 500);
	log_info("%s: to=<%s>%s%s%s, relay=%s, delay=%s, delays=%s/%s/%s/%s, dsn=%s, status=%s (%s)", m->id,
	    buf_str(&to), orig_to ? ", orig_to=<" : "", orig_to ? buf_str(&orig) : "", orig_to ? ">" : "",
	    printable(&rel, relay, 300), total, d[0], d[1], d[2], d[3], dsn, status, printable(&why, reason, 1000));
	free(orig_to);
	buf_free(&to);
	buf_free(&orig);
	buf_free(&rel);
	buf_free(&why);
}

/* ---------------------------------------------------------------- the file */

static double
now_real(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (double)tv.tv_sec + tv.tv_usec / 1e6;
}

static void
msg_path(const struct qmgr_msg *m, const char *queue, char *out, size_t len)
{
	if (qid_path(out, len, queue, m->id) < 0)
		log_panic("qmgr: no path for %s/%s", queue, m->id);
}

/* msg_mark_done - R -> D for r in the file; false (logged) when that failed */
static bool
msg_mark_done(struct qmgr_msg *m, struct qmgr_rcpt *r)
{
	struct buf err = BUF_INIT;
	char path[64];
	bool ok = true;

	if (m->fd < 0) {
		msg_path(m, QUEUE_ACTIVE, path, sizeof(path));
		if ((m->fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW)) < 0) {
			log_warn("%s: open %s to mark a recipient done: %m", m->id, path);
			return false;
		}
	}
	if (qfile_mark_done(m->fd, r->offset, &err) < 0) {
		log_warn("%s: %s", m->id, buf_str(&err));
		ok = false;
	}
	buf_free(&err);
	return ok;
}

/* msg_qlog - append r's outcome to defer/ID or bounce/ID; false (logged) on failure */
static bool
msg_qlog(const struct qmgr_msg *m, const struct qmgr_rcpt *r, const char *queue, char status, const char *dsn,
    const char *relay, const char *reason)
{
	struct qlog_entry e;
	struct buf err = BUF_INIT;
	bool ok = true;

	memset(&e, 0, sizeof(e));
	e.when = time(NULL);
	e.offset = r->offset;
	e.status = status;
	strlcpy(e.dsn, dsn, sizeof(e.dsn));
	e.addr = r->addr;
	e.orcpt = r->orcpt;
	e.notify = r->notify;
	e.relay = (char *)relay;
	e.reason = (char *)reason;
	if (qlog_append(queue, m->id, &e, &err) < 0) {
		log_warn("%s: %s", m->id, buf_str(&err));
		ok = false;
	}
	buf_free(&err);
	return ok;
}

/* ---------------------------------------------------------------- outcomes */

void
qmgr_message_result(struct qmgr_rcpt *r, enum deliver_status st, const char *dsn, const char *relay, const char *reason,
    const double *delays)
{
	struct qmgr_msg *m = r->msg;
	double own[4];

	if (r->state == QMGR_RCPT_QUEUED)
		m->nqueued--;
	else if (r->state == QMGR_RCPT_BUSY)
		m->nbusy--;
	else
		log_panic("%s: a result for a recipient that is not waiting for one", m->id);
	if (delays == NULL) {
		/* qmgr's own verdict: all of it was waiting here */
		own[0] = m->active_time - ((double)m->arrival.tv_sec + m->arrival.tv_usec / 1e6);
		own[1] = now_real() - m->active_time;
		own[2] = own[3] = 0;
		delays = own;
	}
	if (st == DELIVER_BOUNCED && !msg_qlog(m, r, QUEUE_BOUNCE, 'b', dsn, relay, reason)) {
		/* Without the record there would be no notice: try the recipient again later. */
		st = DELIVER_DEFERRED;
		dsn = "4.3.0";
		reason = "cannot record a bounce; will try again";
	}
	switch (st) {
	case DELIVER_SENT:
		if (qmgr_notify_success(r->notify) && qmgr_conf.dsn_delivered && *m->sender)
			(void)msg_qlog(m, r, QUEUE_BOUNCE, 's', dsn, relay, reason);
		/*
		 * The last outcome of a message that is about to be removed needs
		 * no marker: the removal says more, and neither is synced.
		 */
		if (m->nqueued > 0 || m->nbusy > 0 || m->ndeferred > 0 || m->more || m->loading)
			(void)msg_mark_done(m, r);
		r->state = QMGR_RCPT_DONE;
		qmgr_log_rcpt(m, r, relay, delays, dsn, "sent", reason);
		break;
	case DELIVER_BOUNCED:
		(void)msg_mark_done(m, r);
		r->state = QMGR_RCPT_DONE;
		qmgr_log_rcpt(m, r, relay, delays, dsn, "bounced", reason);
		break;
	case DELIVER_DEFERRED:
		(void)msg_qlog(m, r, QUEUE_DEFER, 'd', dsn, relay, reason);
		r->state = QMGR_RCPT_DEFERRED;
		m->ndeferred++;
		m->deferred_any = true;
		qmgr_log_rcpt(m, r, relay, delays, dsn, "deferred", reason);
		break;
	}
	qmgr_message_check_done(m);
}

/* ---------------------------------------------------------------- loading */

/* msg_take_rcpts - the next batch of recipients still to do, after the cursor */
static void
msg_take_rcpts(struct qmgr_msg *m, const struct qfile_env *env)
{
	size_t i, n = 0, want = 0;

	for (i = 0; i < env->nrcpts; i++)
		if (!env->rcpts[i].done && env->rcpts[i].offset > m->cursor)
			want++;
	if (want > (size_t)qmgr_conf.rcpt_limit)
		want = (size_t)qmgr_conf.rcpt_limit;
	m->rcpts = want ? xcalloc(want, sizeof(*m->rcpts)) : NULL;
	m->more = false;
	for (i = 0; i < env->nrcpts; i++) {
		const struct qfile_rcpt *q = &env->rcpts[i];
		struct qmgr_rcpt *r;

		if (q->done || q->offset <= m->cursor)
			continue;
		if (n == want) {
			m->more = true;
			break;
		}
		r = &m->rcpts[n++];
		r->addr = xstrdup(q->addr);
		r->orcpt = q->orcpt ? xstrdup(q->orcpt) : NULL;
		r->notify = q->notify;
		r->offset = q->offset;
		r->msg = m;
		r->state = QMGR_RCPT_QUEUED;
	}
	m->nrcpts = n;
	m->nqueued = n;
	if (n > 0)
		m->cursor = m->rcpts[n - 1].offset;
}

/* One routed recipient, sorted into groups. */
struct routed {
	struct qmgr_rcpt *r;
	struct qmgr_transport *t;
	char *nexthop;
	int limit; /* the mailbox's own concurrency limit, 0 for the transport's */
};

static int
routed_cmp(const void *a, const void *b)
{
	const struct routed *x = a, *y = b;
	int c;

	if (x->t != y->t)
		return x->t < y->t ? -1 : 1;
	if ((c = strcmp(x->nexthop, y->nexthop)) != 0)
		return c;
	return x->r->offset < y->r->offset ? -1 : x->r->offset > y->r->offset;
}

/* msg_route - route every loaded recipient; queue the deliverable ones by (transport, next hop) */
static void
msg_route(struct qmgr_msg *m)
{
	struct qmgr_route rt;
	struct routed *v = xcalloc(m->nrcpts ? m->nrcpts : 1, sizeof(*v));
	struct qmgr_group *g = NULL;
	struct buf key = BUF_INIT;
	size_t i, n = 0;

	qmgr_route_init(&rt);
	m->loading = true;
	for (i = 0; i < m->nrcpts; i++) {
		struct qmgr_rcpt *r = &m->rcpts[i];

		switch (qmgr_route_rcpt(qmgr_router, r->addr, &rt)) {
		case QMGR_ROUTE_OK:
			v[n].r = r;
			v[n].t = qmgr_transport_get(rt.transport, rt.per_rcpt);
			v[n].nexthop = xstrdup(buf_str(&rt.nexthop));
			v[n].limit = rt.dest_limit;
			n++;
			break;
		case QMGR_ROUTE_DEFER:
			qmgr_message_result(r, DELIVER_DEFERRED, rt.dsn, "none", buf_str(&rt.reason), NULL);
			break;
		case QMGR_ROUTE_BOUNCE:
			qmgr_message_result(r, DELIVER_BOUNCED, rt.dsn, "none", buf_str(&rt.reason), NULL);
			break;
		}
	}
	qmgr_route_free(&rt);
	if (n > 1)
		qsort(v, n, sizeof(*v), routed_cmp);
	for (i = 0; i < n; i++) {
		if (g == NULL || g->transport != v[i].t || strcmp(g->nexthop, v[i].nexthop) != 0) {
			g = xcalloc(1, sizeof(*g));
			g->transport = v[i].t;
			g->nexthop = v[i].nexthop;
			g->next = m->groups;
			m->groups = g;
		} else {
			free(v[i].nexthop);
		}
		v[i].r->group = g;
		if (g->transport->per_rcpt) {
			buf_strcpy(&key, v[i].r->addr);
			str_lower((char *)key.data);
		} else {
			buf_strcpy(&key, g->nexthop);
		}
		qmgr_deliver_enqueue(v[i].r, buf_str(&key), v[i].limit);
	}
	free(v);
	buf_free(&key);
	m->loading = false;
}

/* msg_read - open and read the message's file in active/; 0, or -1 (moved to corrupt/ or gone) */
static int
msg_read(const char *id, struct qfile_env *env, bool quiet_missing)
{
	struct buf err = BUF_INIT;
	char path[64], bad[64];
	int fd, r;

	if (qid_path(path, sizeof(path), QUEUE_ACTIVE, id) < 0)
		log_panic("qmgr: no path for %s", id);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)) < 0) {
		if (errno != ENOENT || !quiet_missing)
			log_warn("%s: open %s: %m", id, path);
		return -1;
	}
	r = qfile_read(fd, env, &msg_limits, &err);
	close(fd);
	if (r == 0) {
		buf_free(&err);
		return 0;
	}
	/* Outside incoming/ an incomplete file is damage, like a corrupt one. */
	if (qid_path(bad, sizeof(bad), QUEUE_CORRUPT, id) < 0 || rename(path, bad) < 0)
		log_warn("%s: corrupt queue file (%s); cannot move it to %s: %m", id, buf_str(&err), QUEUE_CORRUPT);
	else
		log_warn("%s: corrupt queue file, moved to %s/: %s", id, QUEUE_CORRUPT, buf_str(&err));
	buf_free(&err);
	return -1;
}

/* msg_last_defer - the time of the newest record in defer/ID (0: none) */
static time_t
msg_last_defer(const char *id)
{
	struct qlog_entry *v = NULL;
	struct buf err = BUF_INIT;
	size_t n = 0, i;
	time_t t = 0;

	if (qlog_read(QUEUE_DEFER, id, &v, &n, &err) < 0)
		log_warn("%s: %s", id, buf_str(&err));
	for (i = 0; i < n; i++)
		if (v[i].when > t)
			t = v[i].when;
	qlog_free(v, n);
	buf_free(&err);
	return t;
}

int
qmgr_message_load(const char *id, bool fresh)
{
	struct qfile_env env;
	struct qmgr_msg *m;
	const char *flags;
	long long fl;

	if (msg_read(id, &env, true) < 0)
		return -1;
	m = xcalloc(1, sizeof(*m));
	memcpy(m->id, id, QID_LEN + 1);
	m->fd = -1;
	m->fresh = fresh;
	if (fresh)
		flow_publish(++fresh_count);
	m->sender = xstrdup(env.sender);
	m->arrival = env.arrival;
	m->size = env.file_size;
	if ((flags = qfile_env_attr(&env, CLEANUP_ATTR_FLAGS)) != NULL && str_to_ll(flags, 0, 0xffff, &fl, NULL) == 0)
		m->flags = (int)fl;
	m->active_time = now_real();
	if (qmgr_conf.delay_warning > 0 && *m->sender)
		m->last_defer = msg_last_defer(id);
	msg_take_rcpts(m, &env);
	qfile_env_free(&env);

	m->next = msg_list;
	if (msg_list)
		msg_list->prev = m;
	msg_list = m;
	qmgr_active_count++;

	msg_route(m);
	qmgr_message_check_done(m);
	qmgr_deliver_kick();
	return 0;
}

/* msg_free_rcpts - forget the loaded batch (every recipient in it has an outcome) */
static void
msg_free_rcpts(struct qmgr_msg *m)
{
	struct qmgr_group *g, *next;
	size_t i;

	for (i = 0; i < m->nrcpts; i++) {
		free(m->rcpts[i].addr);
		free(m->rcpts[i].orcpt);
	}
	free(m->rcpts);
	m->rcpts = NULL;
	m->nrcpts = m->ndeferred = 0;
	for (g = m->groups; g; g = next) {
		next = g->next;
		free(g->nexthop);
		free(g);
	}
	m->groups = NULL;
}

static void
msg_free(struct qmgr_msg *m)
{
	if (m->prev)
		m->prev->next = m->next;
	else
		msg_list = m->next;
	if (m->next)
		m->next->prev = m->prev;
	if (m->fd >= 0)
		close(m->fd);
	msg_free_rcpts(m);
	free(m->sender);
	if (m->fresh)
		flow_publish(--fresh_count);
	free(m);
	qmgr_active_count--;
}

/* msg_next_batch - load and route the recipients after the cursor; false when there are none */
static bool
msg_next_batch(struct qmgr_msg *m)
{
	struct qfile_env env;

	msg_free_rcpts(m);
	m->more = false;
	if (msg_read(m->id, &env, false) < 0) {
		m->gone = true;
		return false;
	}
	msg_take_rcpts(m, &env);
	qfile_env_free(&env);
	if (m->nrcpts == 0)
		return false;
	msg_route(m);
	return true;
}

/* msg_remove - every recipient is done: the message leaves the queue */
static void
msg_remove(struct qmgr_msg *m)
{
	char path[64];

	msg_path(m, QUEUE_ACTIVE, path, sizeof(path));
	if (qpool_put(path, m->size) < 0 && unlink(path) < 0 && errno != ENOENT) {
		log_warn("%s: unlink %s: %m", m->id, path);
		return;
	}
	(void)qlog_remove(QUEUE_DEFER, m->id);
	log_info("%s: removed", m->id);
}

/* msg_defer - keep the message for a later attempt: mtime = when, then into deferred/ */
static void
msg_defer(struct qmgr_msg *m)
{
	struct timespec ts[2];
	char path[64], dest[64];
	time_t now = time(NULL);

	msg_path(m, QUEUE_ACTIVE, path, sizeof(path));
	msg_path(m, QUEUE_DEFERRED, dest, sizeof(dest));
	ts[0].tv_sec = 0;
	ts[0].tv_nsec = UTIME_NOW;
	ts[1].tv_sec = qmgr_next_attempt(now, m->arrival.tv_sec, qmgr_conf.min_backoff, qmgr_conf.max_backoff,
	    *m->sender ? qmgr_conf.delay_warning : 0);
	ts[1].tv_nsec = 0;
	/* Without the time the file would be retried at once: annoying, not dangerous. */
	if (utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW) < 0)
		log_warn("%s: set the next attempt time of %s: %m", m->id, path);
	if (rename(path, dest) < 0)
		log_warn("%s: rename %s to %s: %m", m->id, path, dest);
}

/* msg_finish - the attempt is over: expire, notify, then remove or defer */
static void
msg_finish(struct qmgr_msg *m)
{
	bool pending, keep = false;

	if (m->fd >= 0) {
		close(m->fd);
		m->fd = -1;
	}
	/* The next batch of a message with more recipients than fit in memory. */
	while (m->more) {
		if (!msg_next_batch(m)) {
			if (!m->gone)
				break;
			msg_free(m);
			qmgr_scan_slot_free();
			return;
		}
		if (m->nqueued > 0 || m->nbusy > 0) {
			qmgr_deliver_kick();
			return;
		}
	}
	pending = m->deferred_any;
	if (pending && qmgr_bounce_expire(m))
		pending = false;
	if (m->fd >= 0) {
		close(m->fd);
		m->fd = -1;
	}
	if (qmgr_bounce_flush(m) < 0)
		keep = true;
	if (pending)
		qmgr_bounce_delay_warning(m);
	if (pending || keep)
		msg_defer(m);
	else
		msg_remove(m);
	msg_free(m);
	qmgr_scan_slot_free();
}

void
qmgr_message_check_done(struct qmgr_msg *m)
{
	if (m->nbusy == 0 && m->fd >= 0) {
		close(m->fd);
		m->fd = -1;
	}
	if (m->loading || m->nqueued > 0 || m->nbusy > 0)
		return;
	msg_finish(m);
}
