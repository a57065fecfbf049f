/*
 * deliver - encode and decode the delivery request (see deliver.h and
 * doc/ipc.md 8.3).  qmgr trusts agents only with what they report about
 * the recipients it sent them: a status for an offset it did not ask
 * about is ignored by qmgr.  Agents trust qmgr (its socket is for the
 * queue owner only) but still bound everything they read.
 */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "deliver.h"
#include "log.h"
#include "str.h"
#include "xalloc.h"

#define REASON_MAX 1000

static const char *const status_names[] = { "sent", "deferred", "bounced" };

const char *
deliver_status_name(enum deliver_status st)
{
	return status_names[st];
}

void
deliver_request_encode(const struct deliver_request *req, struct buf *out)
{
	size_t i;

	ipc_buf_str(out, "queue_id", req->queue_id);
	ipc_buf_str(out, "sender", req->sender);
	ipc_buf_str(out, "transport", req->transport);
	ipc_buf_str(out, "nexthop", req->nexthop);
	ipc_buf_int(out, "arrival", req->arrival);
	ipc_buf_int(out, "flags", req->flags);
	for (i = 0; i < req->nrcpts; i++) {
		ipc_buf_str(out, "rcpt", req->rcpts[i].addr);
		ipc_buf_int(out, "offset", (long long)req->rcpts[i].offset);
		if (req->rcpts[i].orcpt)
			ipc_buf_str(out, "orcpt", req->rcpts[i].orcpt);
		if (req->rcpts[i].notify)
			ipc_buf_int(out, "notify", req->rcpts[i].notify);
	}
	ipc_buf_end(out);
}

int
deliver_result_parse(const struct ipc_msg *m, struct deliver_result *res)
{
	const char *st, *dsn, *reason, *relay;
	long long off;

	memset(res, 0, sizeof(*res));
	if (ipc_msg_str(m, "done") != NULL)
		return 0;
	if (ipc_msg_int(m, "offset", 1, (1LL << 40), &off) < 0 || (st = ipc_msg_str(m, "status")) == NULL ||
	    (dsn = ipc_msg_str(m, "dsn")) == NULL)
		return -1;
	if (strcmp(st, "sent") == 0)
		res->status = DELIVER_SENT;
	else if (strcmp(st, "deferred") == 0)
		res->status = DELIVER_DEFERRED;
	else if (strcmp(st, "bounced") == 0)
		res->status = DELIVER_BOUNCED;
	else
		return -1;
	/* x.y.z whose class agrees with the status */
	if (strlen(dsn) < 5 || strlen(dsn) >= sizeof(res->dsn) || strspn(dsn, "0123456789.") != strlen(dsn) ||
	    dsn[0] != (res->status == DELIVER_SENT          ? '2'
	                  : res->status == DELIVER_DEFERRED ? '4'
	                                                    : '5'))
		return -1;
	strlcpy(res->dsn, dsn, sizeof(res->dsn));
	res->offset = (off_t)off;
	reason = ipc_msg_str(m, "reason");
	relay = ipc_msg_str(m, "relay");
	res->reason = xstrdup(reason ? reason : "");
	res->relay = xstrdup(relay ? relay : "none");
	return 1;
}

void
deliver_result_free(struct deliver_result *res)
{
	free(res->reason);
	free(res->relay);
	res->reason = res->relay = NULL;
}

void
deliver_request_free(struct deliver_request *req)
{
	size_t i;

	for (i = 0; i < req->nrcpts; i++) {
		free(req->rcpts[i].addr);
		free(req->rcpts[i].orcpt);
	}
	free(req->rcpts);
	free(req->sender);
	free(req->transport);
	free(req->nexthop);
	if (req->fd >= 0)
		close(req->fd);
	memset(req, 0, sizeof(*req));
	req->fd = -1;
}

/* request_get - one request list and its descriptor; 1 at a clean end of file before the list */
static int
request_get(struct stream *s, struct deliver_request *req, struct buf *err)
{
	static const struct ipc_limits lim = { 4096, 64 * 1024 * 1024, 4 * DELIVER_RCPT_MAX + 16 };
	struct ipc_msg m;
	struct deliver_rcpt *r = NULL;
	const char *qid, *v;
	long long n;
	size_t i;
	int rc;

	memset(req, 0, sizeof(*req));
	req->fd = -1;
	ipc_msg_init(&m);
	if ((rc = ipc_get(s, &m, &lim)) != STREAM_OK) {
		if (rc == STREAM_EOF) {
			ipc_msg_free(&m);
			return 1;
		}
		buf_printf(err, "read request: %s", ipc_strerror(rc));
		goto fail;
	}
	if ((qid = ipc_msg_str(&m, "queue_id")) == NULL || !qid_valid(qid)) {
		buf_puts(err, "request without a valid queue_id");
		goto fail;
	}
	strlcpy(req->queue_id, qid, sizeof(req->queue_id));
	req->sender = xstrdup((v = ipc_msg_str(&m, "sender")) ? v : "");
	req->transport = xstrdup((v = ipc_msg_str(&m, "transport")) ? v : "");
	req->nexthop = xstrdup((v = ipc_msg_str(&m, "nexthop")) ? v : "");
	if (ipc_msg_int(&m, "arrival", 0, 1LL << 40, &req->arrival) < 0)
		req->arrival = 0;
	if (ipc_msg_int(&m, "flags", 0, 0xffff, &n) == 0)
		req->flags = (int)n;
	for (i = 0; i < ipc_msg_count(&m); i++) {
		const char *name = ipc_msg_name(&m, i), *val = ipc_msg_value(&m, i, NULL);

		if (strcmp(name, "rcpt") == 0) {
			if (req->nrcpts >= DELIVER_RCPT_MAX) {
				buf_puts(err, "too many recipients in one request");
				goto fail;
			}
			req->rcpts = xreallocarray(req->rcpts, req->nrcpts + 1, sizeof(*req->rcpts));
			r = &req->rcpts[req->nrcpts++];
			memset(r, 0, sizeof(*r));
			r->addr = xstrdup(val);
		} else if (r != NULL && strcmp(name, "offset") == 0) {
			if (str_to_ll(val, 1, 1LL << 40, &n, NULL) < 0) {
				buf_printf(err, "bad offset \"%s\"", val);
				goto fail;
			}
			r->offset = (off_t)n;
		} else if (r != NULL && strcmp(name, "orcpt") == 0) {
			free(r->orcpt);
			r->orcpt = xstrdup(val);
		} else if (r != NULL && strcmp(name, "notify") == 0) {
			if (str_to_ll(val, 0, 0xff, &n, NULL) == 0)
				r->notify = (int)n;
		}
	}
	for (i = 0; i < req->nrcpts; i++) {
		if (req->rcpts[i].offset <= 0) {
			buf_printf(err, "recipient %s without an offset", req->rcpts[i].addr);
			goto fail;
		}
	}
	if (req->nrcpts == 0) {
		buf_puts(err, "request without recipients");
		goto fail;
	}
	if ((rc = stream_recv_fd(s, &req->fd)) != STREAM_OK) {
		buf_printf(err, "receive the queue file: %s", ipc_strerror(rc));
		goto fail;
	}
	if (ipc_check_fd(req->fd, S_IFREG, O_RDONLY, err) < 0)
		goto fail;
	ipc_msg_free(&m);
	return 0;
fail:
	ipc_msg_free(&m);
	deliver_request_free(req);
	return -1;
}

int
deliver_request_read(struct stream *s, struct deliver_request *req, struct buf *err)
{
	int rc;

	memset(req, 0, sizeof(*req));
	req->fd = -1;
	if ((rc = ipc_send_hello(s, DELIVER_PROTOCOL, DELIVER_VERSION)) != STREAM_OK) {
		buf_printf(err, "send greeting: %s", ipc_strerror(rc));
		return -1;
	}
	if ((rc = request_get(s, req, err)) == 1) {
		buf_printf(err, "read request: %s", ipc_strerror(STREAM_EOF));
		return -1;
	}
	return rc;
}

int
deliver_request_next(struct stream *s, struct deliver_request *req, struct buf *err)
{
	return request_get(s, req, err);
}

int
deliver_status_send(
    struct stream *s, off_t offset, enum deliver_status st, const char *dsn, const char *relay, const char *reason)
{
	struct buf r = BUF_INIT;
	size_t i;
	int rc;

	/* One line of printable text: it goes into logs and DSNs. */
	for (i = 0; reason && reason[i] && i < REASON_MAX; i++)
		buf_putc(&r, (unsigned char)reason[i] < 0x20 || reason[i] == 0x7f ? ' ' : reason[i]);
	ipc_put_int(s, "offset", (long long)offset);
	ipc_put_str(s, "status", status_names[st]);
	ipc_put_str(s, "dsn", dsn);
	ipc_put_str(s, "relay", relay ? relay : "none");
	ipc_put_str(s, "reason", buf_str(&r));
	rc = ipc_put_end(s);
	buf_free(&r);
	return rc;
}

int
deliver_done_send(struct stream *s)
{
	return deliver_done_send_flags(s, 0);
}

int
deliver_done_send_flags(struct stream *s, int flags)
{
	ipc_put_str(s, "done", "1");
	if (flags & DELIVER_DONE_REUSE)
		ipc_put_str(s, "reuse", "1");
	if (flags & DELIVER_DONE_UNREACHABLE)
		ipc_put_str(s, "unreachable", "1");
	return ipc_put_end(s);
}

int
deliver_done_flags(const struct ipc_msg *m)
{
	const char *v;
	int flags = 0;

	if ((v = ipc_msg_str(m, "reuse")) != NULL && strcmp(v, "1") == 0)
		flags |= DELIVER_DONE_REUSE;
	if ((v = ipc_msg_str(m, "unreachable")) != NULL && strcmp(v, "1") == 0)
		flags |= DELIVER_DONE_UNREACHABLE;
	return flags;
}
