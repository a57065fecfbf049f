/*
 * smtp_trans - one mail transaction: MAIL FROM, RCPT TO, DATA, the
 * content and the final reply, with PIPELINING when offered.
 *
 * Called by smtp_deliver.c with an open session and the recipients that
 * have no outcome yet.  Each server reply decides: 2xx sent (after the
 * final dot), 4xx deferred, 5xx bounced, with the server's words in the
 * reason ("host mx[addr] said: ... (in reply to RCPT TO command)").  A
 * refusal of MAIL or DATA applies to every recipient of the transaction.
 * A session that dies before the content was sent (lost connection,
 * timeout, 421) delivered nothing, so the caller may try the next server
 * with the same recipients (SMTP_TX_NEXT); once the content went out,
 * trouble defers: the mail may arrive twice, never not at all.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "smtp.h"
#include "xalloc.h"

void
smtp_rcpt_set(struct smtp_rcpt *r, enum deliver_status st, const char *dsn, const char *relay, const char *reason)
{
	r->final = true;
	r->accepted = false;
	r->status = st;
	strlcpy(r->dsn, dsn, sizeof(r->dsn));
	strlcpy(r->relay, relay, sizeof(r->relay));
	buf_strcpy(&r->reason, reason);
}

/* status_of - what a 4xx or 5xx reply means for a recipient */
static enum deliver_status
status_of(const struct smtp_reply *r)
{
	return r->code / 100 == 5 ? DELIVER_BOUNCED : DELIVER_DEFERRED;
}

/* reply_all - every recipient without an outcome (or only the accepted ones) gets this reply */
static void
reply_all(const struct smtp_session *ss, struct smtp_rcpt *v, size_t n, bool accepted_only, const struct smtp_reply *r,
    const char *stage)
{
	struct buf why = BUF_INIT;
	size_t i;

	smtp_said(ss, r, stage, &why);
	for (i = 0; i < n; i++)
		if (!v[i].final && (!accepted_only || v[i].accepted))
			smtp_rcpt_set(&v[i], status_of(r), r->dsn, ss->relay, buf_str(&why));
	buf_free(&why);
}

/* fail_all - every recipient without an outcome gets this status and reason */
static void
fail_all(const struct smtp_session *ss, struct smtp_rcpt *v, size_t n, enum deliver_status st, const char *dsn,
    const char *why)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!v[i].final)
			smtp_rcpt_set(&v[i], st, dsn, ss->relay, why);
}

/* next - the session died before anything was delivered: the caller may try another server */
static enum smtp_tx_result
next(const struct smtp_session *ss, struct smtp_fail *f, int rc, const struct smtp_reply *r, const char *stage)
{
	char cmd[64];

	f->status = DELIVER_DEFERRED;
	f->reached = true;
	strlcpy(f->relay, ss->relay, sizeof(f->relay));
	if (rc == STREAM_OK) {
		/* 421: the server is going away */
		snprintf(cmd, sizeof(cmd), "%s command", stage);
		smtp_said(ss, r, cmd, &f->why);
		strlcpy(f->dsn, r->dsn, sizeof(f->dsn));
		f->dsn[0] = '4';
	} else {
		snprintf(cmd, sizeof(cmd), "sending %s", stage);
		smtp_io_reason(ss, rc, cmd, &f->why);
		strlcpy(f->dsn, "4.4.2", sizeof(f->dsn));
	}
	log_info("%s", buf_str(&f->why));
	return SMTP_TX_NEXT;
}

/* notify_str - RFC 3461 NOTIFY value for QF_NOTIFY_* bits */
static void
notify_str(int notify, char *out, size_t len)
{
	out[0] = 0;
	if (notify & QF_NOTIFY_NEVER) {
		strlcpy(out, "NEVER", len);
		return;
	}
	if (notify & QF_NOTIFY_SUCCESS)
		strlcat(out, "SUCCESS", len);
	if (notify & QF_NOTIFY_FAILURE)
		strlcat(out, *out ? ",FAILURE" : "FAILURE", len);
	if (notify & QF_NOTIFY_DELAY)
		strlcat(out, *out ? ",DELAY" : "DELAY", len);
}

/* convert - the 7-bit form of the message, made once; 0, or -1 when it cannot be made */
static int
convert(struct smtp_msg *m)
{
	struct buf all = BUF_INIT, chunk = BUF_INIT;
	off_t pos = m->content_offset;
	int r;

	if (m->converted)
		return m->convert_rc;
	m->converted = true;
	m->convert_rc = -1;
	if (m->content_size > SMTP_DOWNGRADE_MAX) {
		buf_strcpy(&m->convert_why, "message too large to convert to 7-bit");
		goto out;
	}
	while ((r = qfile_content_next(m->fd, &pos, &chunk, &m->convert_why)) > 0) {
		if (all.len + chunk.len > SMTP_DOWNGRADE_MAX) {
			buf_strcpy(&m->convert_why, "message too large to convert to 7-bit");
			goto out;
		}
		buf_append(&all, chunk.data, chunk.len);
	}
	if (r < 0)
		goto out;
	m->convert_rc = smtp_mime_downgrade(all.data, all.len, &m->seven, &m->convert_why);
out:
	buf_free(&all);
	buf_free(&chunk);
	return m->convert_rc;
}

/* content - the message after 354; STREAM_OK or the status of the failed write */
static int
content(struct smtp_session *ss, struct smtp_msg *m, bool seven)
{
	struct smtp_wstate w;
	struct buf chunk = BUF_INIT, out = BUF_INIT, err = BUF_INIT;
	off_t pos = m->content_offset;
	size_t off;
	int r, rc = STREAM_OK;

	smtp_content_init(&w, (size_t)smtp_conf.line_limit);
	stream_set_timeout(ss->s, smtp_conf.data_xfer_timeout);
	if (seven) {
		for (off = 0; off < m->seven.len && rc == STREAM_OK; off += QF_CHUNK_MAX) {
			size_t k = m->seven.len - off < QF_CHUNK_MAX ? m->seven.len - off : QF_CHUNK_MAX;

			buf_reset(&out);
			smtp_content_put(&w, m->seven.data + off, k, &out);
			rc = stream_write(ss->s, out.data, out.len);
		}
	} else {
		while (rc == STREAM_OK && (r = qfile_content_next(m->fd, &pos, &chunk, &err)) > 0) {
			buf_reset(&out);
			smtp_content_put(&w, chunk.data, chunk.len, &out);
			rc = stream_write(ss->s, out.data, out.len);
		}
		if (rc == STREAM_OK && r < 0) {
			/* The queue file went bad under us: end the session without the final dot. */
			log_warn("%s: cannot read the message: %s", m->req->queue_id, buf_str(&err));
			rc = STREAM_ERROR;
		}
	}
	if (rc == STREAM_OK) {
		buf_reset(&out);
		smtp_content_end(&w, &out);
		rc = stream_write(ss->s, out.data, out.len);
	}
	if (w.broken > 0)
		log_info("%s: %" PRIu64 " lines longer than %d bytes were broken for %s", m->req->queue_id, w.broken,
		    smtp_conf.line_limit, ss->relay);
	if (rc != STREAM_OK)
		ss->broken = true;
	buf_free(&chunk);
	buf_free(&out);
	buf_free(&err);
	return rc;
}

/* rcpt_reply - one RCPT reply read and applied; STREAM_OK, or the failure (then the session is gone) */
static int
rcpt_reply(struct smtp_session *ss, struct smtp_rcpt *rc, struct smtp_reply *r, struct buf *why, bool *gone)
{
	int st = smtp_read(ss, smtp_conf.rcpt_timeout, r, why);

	*gone = st != STREAM_OK || r->code == 421;
	if (*gone)
		return st;
	if (r->code / 100 == 2) {
		rc->accepted = true;
	} else {
		smtp_said(ss, r, "RCPT TO command", why);
		smtp_rcpt_set(rc, status_of(r), r->dsn, ss->relay, buf_str(why));
	}
	return STREAM_OK;
}

enum smtp_tx_result
smtp_trans(struct smtp_session *ss, struct smtp_msg *m, struct smtp_rcpt *v, size_t n, struct smtp_fail *f)
{
	struct smtp_reply r;
	struct buf why = BUF_INIT, params = BUF_INIT;
	enum smtp_tx_result res = SMTP_TX_DONE;
	size_t i, first, sent, accepted = 0, *todo;
	size_t ntodo = 0;
	bool pipe = (ss->features & SMTP_FEAT_PIPELINING) != 0, seven = false, mail_ok, gone;
	char notify[64];
	int rc;

	todo = xcalloc(n ? n : 1, sizeof(*todo));
	for (i = 0; i < n; i++)
		if (!v[i].final)
			todo[ntodo++] = i;
	smtp_reply_init(&r);
	if (ntodo == 0)
		goto out;

	/* What this server cannot take is decided before a command is sent. */
	if (m->need_utf8 && !(ss->features & SMTP_FEAT_SMTPUTF8)) {
		buf_printf(&why, "SMTPUTF8 is required, but was not offered by host %s[%s]", ss->host, ss->addr);
		fail_all(ss, v, n, DELIVER_BOUNCED, "5.6.7", buf_str(&why));
		goto out;
	}
	if ((ss->features & SMTP_FEAT_SIZE) && ss->size_max > 0 && m->wire_size > (uint64_t)ss->size_max) {
		buf_printf(&why, "message size %" PRIu64 " exceeds size limit %lld of server %s[%s]", m->wire_size,
		    ss->size_max, ss->host, ss->addr);
		fail_all(ss, v, n, DELIVER_BOUNCED, "5.3.4", buf_str(&why));
		goto out;
	}
	if (m->has_8bit && !(ss->features & SMTP_FEAT_8BITMIME)) {
		if (convert(m) < 0) {
			buf_printf(&why,
			    "cannot convert 8-bit content for host %s[%s], which does not offer 8BITMIME: %s", ss->host,
			    ss->addr, buf_str(&m->convert_why));
			fail_all(ss, v, n, DELIVER_BOUNCED, "5.6.3", buf_str(&why));
			goto out;
		}
		seven = true;
	}

	ss->count++;
	if (ss->features & SMTP_FEAT_SIZE)
		buf_printf(&params, " SIZE=%" PRIu64, m->wire_size);
	if (m->has_8bit && !seven)
		buf_puts(&params, " BODY=8BITMIME");
	if (m->smtputf8 && (ss->features & SMTP_FEAT_SMTPUTF8))
		buf_puts(&params, " SMTPUTF8");
	if (ss->features & SMTP_FEAT_DSN) {
		if (m->ret)
			buf_printf(&params, " RET=%s", m->ret);
		if (m->envid)
			buf_printf(&params, " ENVID=%s", m->envid);
	}
	smtp_send(ss, "MAIL FROM:<%s>%s", m->req->sender, buf_str(&params));
	mail_ok = true;
	if (!pipe) {
		if ((rc = smtp_read(ss, smtp_conf.mail_timeout, &r, &why)) != STREAM_OK || r.code == 421) {
			res = next(ss, f, rc, &r, "MAIL FROM");
			goto out;
		}
		if (r.code / 100 != 2) {
			reply_all(ss, v, n, false, &r, "MAIL FROM command");
			goto out;
		}
	}
	for (first = 0; first < ntodo; first = sent) {
		/* A batch of RCPTs; with pipelining their replies are read after the batch is sent. */
		for (sent = first; sent < ntodo && (sent == first || pipe) && sent - first < SMTP_PIPELINE_BATCH;
		     sent++) {
			const struct deliver_rcpt *dr = v[todo[sent]].r;

			buf_reset(&params);
			if ((ss->features & SMTP_FEAT_DSN) && dr->notify) {
				notify_str(dr->notify, notify, sizeof(notify));
				buf_printf(&params, " NOTIFY=%s", notify);
			}
			if ((ss->features & SMTP_FEAT_DSN) && dr->orcpt && strlen(dr->orcpt) < 600)
				buf_printf(&params, " ORCPT=%s", dr->orcpt);
			smtp_send(ss, "RCPT TO:<%s>%s", dr->addr, buf_str(&params));
		}
		if (pipe && first == 0) {
			rc = smtp_read(ss, smtp_conf.mail_timeout, &r, &why);
			if (rc != STREAM_OK || r.code == 421) {
				res = next(ss, f, rc, &r, "MAIL FROM");
				goto out;
			}
			if (r.code / 100 != 2) {
				mail_ok = false;
				reply_all(ss, v, n, false, &r, "MAIL FROM command");
			}
		}
		for (i = first; i < sent; i++) {
			if (!mail_ok) {
				/* The RCPT replies still come (503s): read them to stay in step. */
				if (smtp_read(ss, smtp_conf.rcpt_timeout, &r, &why) != STREAM_OK)
					break;
				continue;
			}
			rc = rcpt_reply(ss, &v[todo[i]], &r, &why, &gone);
			if (gone) {
				res = next(ss, f, rc, &r, "RCPT TO");
				goto out;
			}
			if (v[todo[i]].accepted)
				accepted++;
		}
		if (!mail_ok)
			goto out;
	}
	if (accepted == 0)
		goto out;

	rc = smtp_command(ss, smtp_conf.data_init_timeout, &r, &why, "DATA");
	if (rc != STREAM_OK || r.code == 421) {
		res = next(ss, f, rc, &r, "DATA");
		goto out;
	}
	if (r.code != 354) {
		if (r.code / 100 == 2 || r.code / 100 == 3) {
			/* Not what DATA may answer: nothing was sent, and the dialogue is out of step. */
			ss->broken = true;
			buf_printf(&why, "host %s[%s] answered DATA with %s", ss->host, ss->addr, buf_str(&r.text));
			fail_all(ss, v, n, DELIVER_DEFERRED, "4.5.0", buf_str(&why));
		} else {
			reply_all(ss, v, n, true, &r, "DATA command");
		}
		goto out;
	}
	if ((rc = content(ss, m, seven)) != STREAM_OK) {
		smtp_io_reason(ss, rc, "sending message body", &why);
		fail_all(ss, v, n, DELIVER_DEFERRED, "4.4.2", buf_str(&why));
		goto out;
	}
	rc = smtp_read(ss, smtp_conf.data_done_timeout, &r, &why);
	if (rc != STREAM_OK) {
		smtp_io_reason(ss, rc, "sending end of data -- message may be sent more than once", &why);
		fail_all(ss, v, n, DELIVER_DEFERRED, "4.4.2", buf_str(&why));
		goto out;
	}
	if (r.code / 100 == 2) {
		for (i = 0; i < n; i++)
			if (!v[i].final && v[i].accepted)
				smtp_rcpt_set(&v[i], DELIVER_SENT, r.dsn, ss->relay, buf_str(&r.text));
	} else if (r.code / 100 == 3) {
		ss->broken = true;
		buf_printf(&why, "host %s[%s] answered the end of data with %s", ss->host, ss->addr, buf_str(&r.text));
		fail_all(ss, v, n, DELIVER_DEFERRED, "4.5.0", buf_str(&why));
	} else {
		reply_all(ss, v, n, true, &r, "end of DATA command");
	}
out:
	/* A recipient that was accepted but never reached the end stays without an outcome only on SMTP_TX_NEXT. */
	if (res == SMTP_TX_DONE)
		for (i = 0; i < n; i++)
			if (!v[i].final)
				smtp_rcpt_set(&v[i], DELIVER_DEFERRED, "4.3.0", ss->relay,
				    buf_len(&why) ? buf_str(&why) : "delivery was not attempted");
	for (i = 0; i < n; i++)
		v[i].accepted = false;
	smtp_reply_free(&r);
	buf_free(&why);
	buf_free(&params);
	free(todo);
	return res;
}
