/*
 * qmgr_bounce - retry times, expiry, and the notices qmgr sends to
 * senders (common/dsn.h builds them and submits them through cleanup).
 *
 *   backoff      the next attempt is now + the message's age, clamped to
 *                [minimal_backoff_time, maximal_backoff_time], so the
 *                intervals roughly double; the time is the mtime of the
 *                file in deferred/.
 *   expiry       an attempt that leaves recipients deferred after
 *                maximal_queue_lifetime (bounce_queue_lifetime for mail
 *                from <>; 0 means after the first failed attempt) bounces
 *                them with their last deferral reason.
 *   failures     bounce/ID collects failed recipients (and, for
 *                NOTIFY=SUCCESS, delivered ones); at the end of the
 *                attempt they become one notice each to the sender, and
 *                the log is removed only once cleanup has the notice.  A
 *                failure here keeps the message, so a notice is never
 *                lost (it may be sent twice after a crash).
 *   delay notice with delay_warning_time set, once per message: the
 *                first attempt that ends past arrival + delay_warning_time
 *                while the previous one (the newest defer/ID record)
 *                ended before it.  No marker is stored: the defer log's
 *                record times are the memory.
 *
 * Called by qmgr_message.c when a message's attempt is over.  Trusts its
 * own logs no more than qlog_read() does (bounded, torn records dropped).
 */
#include "config.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cleanup_client.h"
#include "dsn.h"
#include "log.h"
#include "qfile.h"
#include "qmgr.h"
#include "xalloc.h"

static const struct qfile_read_limits bounce_limits = { QMGR_FILE_RCPT_MAX, QMGR_FILE_ATTR_MAX };

time_t
qmgr_next_attempt(time_t now, time_t arrival, long long min_backoff, long long max_backoff, long long delay_warning)
{
	long long age = (long long)now - (long long)arrival, wait;
	time_t next, warn;

	if (age < 0)
		age = 0;
	wait = age < min_backoff ? min_backoff : age > max_backoff ? max_backoff : age;
	next = now + (time_t)wait;
	/* Be back in time for the delay notice. */
	warn = arrival + (time_t)delay_warning;
	if (delay_warning > 0 && warn > now && warn < next)
		next = warn;
	return next;
}

bool
qmgr_expired(time_t now, time_t arrival, long long lifetime)
{
	return lifetime == 0 || (long long)now - (long long)arrival > lifetime;
}

bool
qmgr_notify_failure(int notify)
{
	return notify == 0 || (notify & QF_NOTIFY_FAILURE) != 0;
}

bool
qmgr_notify_delay(int notify)
{
	return notify == 0 || (notify & QF_NOTIFY_DELAY) != 0;
}

bool
qmgr_notify_success(int notify)
{
	return (notify & QF_NOTIFY_SUCCESS) != 0;
}

/* ---------------------------------------------------------------- log records */

static int
entry_cmp(const void *a, const void *b)
{
	const struct qlog_entry *x = *(const struct qlog_entry *const *)a, *y = *(const struct qlog_entry *const *)b;

	if (x->offset != y->offset)
		return x->offset < y->offset ? -1 : 1;
	/* the records' order in the file: later ones win */
	return x < y ? -1 : x > y;
}

/*
 * latest - the newest record with the given status for each recipient
 * offset, sorted by offset.  Returns the number; *out is malloc'ed.
 */
static size_t
latest(struct qlog_entry *v, size_t n, char status, struct qlog_entry ***out)
{
	struct qlog_entry **p = xcalloc(n ? n : 1, sizeof(*p));
	size_t i, k = 0, m = 0;

	for (i = 0; i < n; i++)
		if (v[i].status == status)
			p[k++] = &v[i];
	if (k > 1)
		qsort(p, k, sizeof(*p), entry_cmp);
	for (i = 0; i < k; i++)
		if (i + 1 == k || p[i + 1]->offset != p[i]->offset)
			p[m++] = p[i];
	*out = p;
	return m;
}

static const struct qlog_entry *
find_offset(struct qlog_entry **p, size_t n, off_t offset)
{
	size_t lo = 0, hi = n, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (p[mid]->offset == offset)
			return p[mid];
		if (p[mid]->offset < offset)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* open_env - the message's file in active/ with its envelope; -1 (logged) */
static int
open_env(const struct qmgr_msg *m, int mode, struct qfile_env *env)
{
	struct buf err = BUF_INIT;
	char path[64];
	int fd;

	if (qid_path(path, sizeof(path), QUEUE_ACTIVE, m->id) < 0)
		log_panic("qmgr: no path for %s", m->id);
	if ((fd = open(path, mode | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)) < 0) {
		log_warn("%s: open %s: %m", m->id, path);
		return -1;
	}
	if (qfile_read(fd, env, &bounce_limits, &err) != 0) {
		log_warn("%s: read %s: %s", m->id, path, buf_str(&err));
		close(fd);
		buf_free(&err);
		return -1;
	}
	buf_free(&err);
	return fd;
}

/* send_notice - one DSN through cleanup; 0 or -1 (logged) */
static int
send_notice(const struct qmgr_msg *m, enum dsn_kind kind, int fd, const struct qfile_env *env,
    const struct qlog_entry *rcpts, size_t n, const char *to)
{
	static const char *const what[] = { "non-delivery", "delay", "delivery status" };
	struct dsn_request req;
	struct buf err = BUF_INIT;
	char new_id[QID_LEN + 1] = "";
	int idx = kind == DSN_FAILED ? 0 : kind == DSN_DELAYED ? 1 : 2;

	memset(&req, 0, sizeof(req));
	req.kind = kind;
	req.queue_id = m->id;
	req.fd = fd;
	req.env = env;
	req.rcpts = rcpts;
	req.nrcpts = n;
	req.to = to;
	req.return_limit = QMGR_RETURN_LIMIT;
	if (dsn_send(&req, new_id, &err) < 0) {
		log_warn("%s: cannot send the %s notification to <%s>: %s", m->id, what[idx], to, buf_str(&err));
		buf_free(&err);
		return -1;
	}
	log_info("%s: sender %s notification: %s", m->id, what[idx], new_id);
	buf_free(&err);
	return 0;
}

/* ---------------------------------------------------------------- expiry */

bool
qmgr_bounce_expire(struct qmgr_msg *m)
{
	struct qfile_env env;
	struct qlog_entry *log = NULL, **last = NULL, b;
	struct buf err = BUF_INIT;
	size_t nlog = 0, nlast, i, left = 0;
	long long lifetime = *m->sender ? qmgr_conf.max_lifetime : qmgr_conf.bounce_lifetime;
	int fd;

	if (!qmgr_expired(time(NULL), m->arrival.tv_sec, lifetime))
		return false;
	if ((fd = open_env(m, O_RDWR, &env)) < 0)
		return false;
	if (qlog_read(QUEUE_DEFER, m->id, &log, &nlog, &err) < 0)
		log_warn("%s: %s", m->id, buf_str(&err));
	nlast = latest(log, nlog, 'd', &last);
	for (i = 0; i < env.nrcpts; i++) {
		const struct qfile_rcpt *r = &env.rcpts[i];
		const struct qlog_entry *d;

		if (r->done)
			continue;
		d = find_offset(last, nlast, r->offset);
		memset(&b, 0, sizeof(b));
		b.when = time(NULL);
		b.offset = r->offset;
		b.status = 'b';
		strlcpy(b.dsn, d && d->dsn[0] == '4' ? d->dsn : "4.4.7", sizeof(b.dsn));
		b.addr = r->addr;
		b.orcpt = r->orcpt;
		b.notify = r->notify;
		b.relay = d && d->relay ? d->relay : (char *)"none";
		b.reason = d && d->reason && *d->reason ? d->reason : (char *)"message delayed too long";
		buf_reset(&err);
		/* The record first: a recipient marked done without it would get no notice. */
		if (qlog_append(QUEUE_BOUNCE, m->id, &b, &err) < 0) {
			log_warn("%s: %s", m->id, buf_str(&err));
			left++;
			continue;
		}
		buf_reset(&err);
		if (qfile_mark_done(fd, r->offset, &err) < 0)
			log_warn("%s: %s", m->id, buf_str(&err));
	}
	log_info("%s: from=<%s>, status=expired, returned to sender", m->id, m->sender);
	close(fd);
	free(last);
	qlog_free(log, nlog);
	qfile_env_free(&env);
	buf_free(&err);
	return left == 0;
}

/* ---------------------------------------------------------------- notices */

int
qmgr_bounce_flush(struct qmgr_msg *m)
{
	struct qlog_entry *log = NULL, **fl = NULL, **dl = NULL, *failed = NULL, *delivered = NULL;
	struct qfile_env env;
	struct buf err = BUF_INIT;
	size_t nlog = 0, nf, nd, i, kf = 0, kd = 0;
	const char *to = NULL;
	int fd = -1, rc = 0;

	if (qlog_read(QUEUE_BOUNCE, m->id, &log, &nlog, &err) < 0) {
		log_warn("%s: %s", m->id, buf_str(&err));
		buf_free(&err);
		return -1;
	}
	buf_free(&err);
	if (nlog == 0)
		return 0;
	nf = latest(log, nlog, 'b', &fl);
	nd = latest(log, nlog, 's', &dl);
	failed = xcalloc(nf + 1, sizeof(*failed));
	delivered = xcalloc(nd + 1, sizeof(*delivered));
	for (i = 0; i < nf; i++)
		if (qmgr_notify_failure(fl[i]->notify))
			failed[kf++] = *fl[i];
	for (i = 0; i < nd; i++)
		if (qmgr_notify_success(dl[i]->notify) && *m->sender)
			delivered[kd++] = *dl[i];
	if (kf > 0) {
		if (*m->sender)
			to = m->sender;
		else if (m->flags & CLEANUP_FLAG_BOUNCE)
			log_info("%s: discarding double bounce", m->id);
		else
			to = qmgr_conf.double_bounce_rcpt;
	}
	if ((to != NULL || kd > 0) && (fd = open_env(m, O_RDONLY, &env)) < 0)
		rc = -1;
	if (fd >= 0) {
		if (to != NULL && send_notice(m, DSN_FAILED, fd, &env, failed, kf, to) < 0)
			rc = -1;
		if (kd > 0 && send_notice(m, DSN_DELIVERED, fd, &env, delivered, kd, m->sender) < 0)
			rc = -1;
		close(fd);
		qfile_env_free(&env);
	}
	if (rc == 0)
		(void)qlog_remove(QUEUE_BOUNCE, m->id);
	free(failed);
	free(delivered);
	free(fl);
	free(dl);
	qlog_free(log, nlog);
	return rc;
}

void
qmgr_bounce_delay_warning(struct qmgr_msg *m)
{
	struct qlog_entry *log = NULL, **last = NULL, *v = NULL;
	struct qfile_env env;
	struct buf err = BUF_INIT;
	size_t nlog = 0, nlast, i, k = 0;
	time_t warn = m->arrival.tv_sec + (time_t)qmgr_conf.delay_warning;
	int fd;

	if (qmgr_conf.delay_warning <= 0 || !*m->sender || time(NULL) < warn || m->last_defer >= warn)
		return;
	if (qlog_read(QUEUE_DEFER, m->id, &log, &nlog, &err) < 0)
		log_warn("%s: %s", m->id, buf_str(&err));
	buf_free(&err);
	if ((fd = open_env(m, O_RDONLY, &env)) < 0) {
		qlog_free(log, nlog);
		return;
	}
	nlast = latest(log, nlog, 'd', &last);
	v = xcalloc(env.nrcpts + 1, sizeof(*v));
	for (i = 0; i < env.nrcpts; i++) {
		const struct qlog_entry *d;

		if (env.rcpts[i].done || !qmgr_notify_delay(env.rcpts[i].notify))
			continue;
		if ((d = find_offset(last, nlast, env.rcpts[i].offset)) != NULL)
			v[k++] = *d;
	}
	if (k > 0)
		(void)send_notice(m, DSN_DELAYED, fd, &env, v, k, m->sender);
	close(fd);
	free(v);
	free(last);
	qlog_free(log, nlog);
	qfile_env_free(&env);
}
