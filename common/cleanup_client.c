/*
 * cleanup_client - the client side of the cleanup protocol (see
 * cleanup_client.h; doc/ipc.md section 8.1 is the specification).
 *
 * smtpd calls it once per message; later pickup and qmgr (for bounces)
 * will too.  It trusts its caller for the envelope (smtpd has checked
 * every address) and cleanup only as far as the reply's syntax goes: the
 * status must be 0, 4 or 5, the DSN code must look like one and agree
 * with the status, and the queue ID must be valid, or the reply counts as
 * a lost connection (4.3.0).  Every wait is bounded by the timeout given
 * to cleanup_open.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup_client.h"
#include "ipc.h"
#include "log.h"
#include "proto.h"

/* Content gathers into frames of this size before it is sent. */
#define CC_CHUNK 65536

/* The reply is small; a peer that sends more is not cleanup. */
#define CC_REPLY_VALUE_MAX 4096
#define CC_REPLY_LIST_MAX  16384
#define CC_REPLY_ATTRS_MAX 16

void
cleanup_result_init(struct cleanup_result *res)
{
	res->status = CLEANUP_STAT_TEMP;
	strlcpy(res->dsn, "4.3.0", sizeof(res->dsn));
	buf_init(&res->reason, 0);
	res->queue_id[0] = 0;
}

void
cleanup_result_free(struct cleanup_result *res)
{
	buf_free(&res->reason);
}

/* cc_fail - a result that says the exchange failed, 4.3.0 */
static void
cc_fail(struct cleanup_result *res, const char *why)
{
	res->status = CLEANUP_STAT_TEMP;
	strlcpy(res->dsn, "4.3.0", sizeof(res->dsn));
	buf_reset(&res->reason);
	buf_printf(&res->reason, "queue file write error (%s)", why);
}

/* cc_close - drop the connection and what is buffered */
static void
cc_close(struct cleanup_client *cc)
{
	if (cc->s != NULL) {
		stream_free(cc->s);
		cc->s = NULL;
	}
	buf_free(&cc->frame);
}

/* cc_put - one attribute, skipped when value is NULL; the first error sticks */
static void
cc_put(struct cleanup_client *cc, const char *name, const char *value)
{
	if (value != NULL && cc->error == 0 && ipc_put_str(cc->s, name, value) != STREAM_OK)
		cc->error = stream_status(cc->s);
}

static void
cc_put_int(struct cleanup_client *cc, const char *name, long long value)
{
	char num[32];

	snprintf(num, sizeof(num), "%lld", value);
	cc_put(cc, name, num);
}

int
cleanup_open(struct cleanup_client *cc, const struct cleanup_env *env, int timeout, struct buf *err)
{
	char path[64];
	size_t i;

	cc->s = NULL;
	cc->error = 0;
	buf_init(&cc->frame, 0);
	snprintf(path, sizeof(path), "%s/%s", SVC_PRIVATE_DIR, SVC_CLEANUP);
	if ((cc->s = ipc_connect(path, timeout, err)) == NULL) {
		cc->error = STREAM_ERROR;
		return -1;
	}
	/*
	 * No waiting for cleanup's greeting here, and the envelope stays in
	 * the stream's buffer: both are read and sent with the content, so a
	 * small message costs each side one wakeup instead of three.  The
	 * greeting is checked in cleanup_finish, before the result.
	 */
	if (env->queue_id != NULL && *env->queue_id)
		cc_put(cc, ATTR_QUEUE_ID, env->queue_id);
	cc_put(cc, CLEANUP_ATTR_SENDER, env->sender ? env->sender : "");
	cc_put_int(cc, CLEANUP_ATTR_FLAGS, env->flags);
	cc_put(cc, CLEANUP_ATTR_CLIENT_NAME, env->client_name);
	cc_put(cc, CLEANUP_ATTR_CLIENT_ADDR, env->client_addr);
	cc_put(cc, CLEANUP_ATTR_HELO, env->helo);
	cc_put(cc, CLEANUP_ATTR_PROTOCOL, env->protocol);
	cc_put(cc, CLEANUP_ATTR_SASL_METHOD, env->sasl_method);
	cc_put(cc, CLEANUP_ATTR_SASL_USERNAME, env->sasl_username);
	cc_put(cc, CLEANUP_ATTR_ENVID, env->envid);
	cc_put(cc, CLEANUP_ATTR_RET, env->ret);
	cc_put(cc, CLEANUP_ATTR_BODY, env->body);
	cc_put_int(cc, CLEANUP_ATTR_SMTPUTF8, env->smtputf8 ? 1 : 0);
	cc_put_int(cc, CLEANUP_ATTR_SIZE, env->size > 0 ? env->size : 0);
	for (i = 0; i < env->nrcpts; i++) {
		/* orcpt and notify belong to the rcpt right before them. */
		cc_put(cc, CLEANUP_ATTR_RCPT, env->rcpts[i].addr);
		if (env->rcpts[i].orcpt != NULL && *env->rcpts[i].orcpt)
			cc_put(cc, CLEANUP_ATTR_ORCPT, env->rcpts[i].orcpt);
		if (env->rcpts[i].notify)
			cc_put_int(cc, CLEANUP_ATTR_NOTIFY, env->rcpts[i].notify);
	}
	if (cc->error == 0 && stream_write(cc->s, "", 1) != STREAM_OK) /* the end of the list, unflushed */
		cc->error = stream_status(cc->s);
	if (cc->error != 0) {
		buf_reset(err);
		buf_printf(err, "%s: sending the envelope: %s", path, stream_strerror(cc->error));
		cc_close(cc);
		return -1;
	}
	return 0;
}

/* cc_frame - send one frame: "LENGTH\n" and the bytes */
static int
cc_frame(struct cleanup_client *cc, const void *data, size_t len)
{
	if (cc->error != 0)
		return -1;
	if (stream_printf(cc->s, "%zu\n", len) != STREAM_OK ||
	    (len > 0 && stream_write(cc->s, data, len) != STREAM_OK)) {
		cc->error = stream_status(cc->s);
		return -1;
	}
	return 0;
}

int
cleanup_write(struct cleanup_client *cc, const void *data, size_t len)
{
	const unsigned char *p = data;
	size_t take;

	if (cc->error != 0 || cc->s == NULL)
		return -1;
	while (len > 0) {
		if (cc->frame.len == 0 && len >= CC_CHUNK) {
			/* Large pieces go out as they are, without a copy. */
			take = len < CLEANUP_FRAME_MAX ? len : CLEANUP_FRAME_MAX;
			if (cc_frame(cc, p, take) < 0)
				return -1;
		} else {
			take = CC_CHUNK - cc->frame.len;
			if (take > len)
				take = len;
			buf_append(&cc->frame, p, take);
			if (cc->frame.len == CC_CHUNK) {
				if (cc_frame(cc, cc->frame.data, cc->frame.len) < 0)
					return -1;
				buf_reset(&cc->frame);
			}
		}
		p += take;
		len -= take;
	}
	return 0;
}

/* cc_dsn_ok - "C.SSS.DDD" with class C matching the status (RFC 3463) */
static bool
cc_dsn_ok(const char *dsn, int status)
{
	size_t n1, n2;

	if (dsn == NULL || strlen(dsn) >= sizeof(((struct cleanup_result *)0)->dsn))
		return false;
	if (dsn[0] != (status == CLEANUP_STAT_OK ? '2' : '0' + status) || dsn[1] != '.')
		return false;
	n1 = strspn(dsn + 2, "0123456789");
	if (n1 < 1 || n1 > 3 || dsn[2 + n1] != '.')
		return false;
	n2 = strspn(dsn + 3 + n1, "0123456789");
	return n2 >= 1 && n2 <= 3 && dsn[3 + n1 + n2] == 0;
}

/* cc_read_result - the reply list into res; -1 when it is not a valid reply */
static int
cc_read_result(struct cleanup_client *cc, struct cleanup_result *res, struct buf *why)
{
	static const struct ipc_limits lim = { CC_REPLY_VALUE_MAX, CC_REPLY_LIST_MAX, CC_REPLY_ATTRS_MAX };
	static const char *const required[] = { ATTR_STATUS, CLEANUP_ATTR_DSN, NULL };
	struct ipc_msg m;
	const char *dsn, *reason, *qid;
	long long status;
	size_t i;
	int r, ret = -1;

	ipc_msg_init(&m);
	if ((r = ipc_get(cc->s, &m, &lim)) != STREAM_OK) {
		buf_puts(why, r == STREAM_EOF ? "lost connection with cleanup" : ipc_strerror(r));
		goto out;
	}
	if (ipc_msg_check(&m, required, NULL, IPC_LENIENT, why) < 0)
		goto out;
	if (ipc_msg_int(&m, ATTR_STATUS, 0, 5, &status) < 0 ||
	    (status != CLEANUP_STAT_OK && status != CLEANUP_STAT_TEMP && status != CLEANUP_STAT_PERM)) {
		buf_puts(why, "invalid status in the reply");
		goto out;
	}
	dsn = ipc_msg_str(&m, CLEANUP_ATTR_DSN);
	if (!cc_dsn_ok(dsn, (int)status)) {
		buf_puts(why, "invalid DSN code in the reply");
		goto out;
	}
	qid = ipc_msg_str(&m, ATTR_QUEUE_ID);
	if (qid != NULL && *qid && !qid_valid(qid)) {
		buf_puts(why, "invalid queue ID in the reply");
		goto out;
	}
	res->status = (int)status;
	strlcpy(res->dsn, dsn, sizeof(res->dsn));
	if (qid != NULL && *qid)
		strlcpy(res->queue_id, qid, sizeof(res->queue_id));
	buf_reset(&res->reason);
	reason = ipc_msg_str(&m, ATTR_REASON);
	/* The reason ends up in an SMTP reply: one line of printable text. */
	for (i = 0; reason != NULL && reason[i]; i++)
		buf_putc(&res->reason, (unsigned char)reason[i] < 0x20 || reason[i] == 0x7f ? ' ' : reason[i]);
	ret = 0;
out:
	ipc_msg_free(&m);
	return ret;
}

int
cleanup_finish(struct cleanup_client *cc, struct cleanup_result *res)
{
	struct buf why = BUF_INIT;
	int r, ret = -1;

	if (cc->s == NULL) {
		cc_fail(res, "no connection with cleanup");
		goto out;
	}
	if ((cc->frame.len > 0 && cc_frame(cc, cc->frame.data, cc->frame.len) < 0) || cc_frame(cc, NULL, 0) < 0 ||
	    stream_flush(cc->s) != STREAM_OK) {
		cc_fail(res, "lost connection with cleanup");
		goto out;
	}
	if ((r = ipc_expect_hello(cc->s, CLEANUP_PROTOCOL, CLEANUP_VERSION, NULL)) != STREAM_OK) {
		buf_printf(&why, "greeting: %s", ipc_strerror(r));
		log_warn("cleanup: %s", buf_str(&why));
		cc_fail(res, buf_str(&why));
		goto out;
	}
	if (cc_read_result(cc, res, &why) < 0) {
		log_warn("cleanup: %s", buf_str(&why));
		cc_fail(res, buf_str(&why));
		goto out;
	}
	ret = 0;
out:
	cc_close(cc);
	buf_free(&why);
	return ret;
}

void
cleanup_abort(struct cleanup_client *cc)
{
	/* Closing before the last frame tells cleanup to forget the message. */
	cc_close(cc);
	cc->error = STREAM_ERROR;
}
