/*
 * smtpd_data - DATA and BDAT: the message from the client to cleanup.
 *
 * DATA ends only at CRLF "." CRLF, where the line before the dot also
 * ended in CRLF.  A bare LF is a line end for the content (or an error,
 * with smtpd_forbid_bare_newline = reject) but never part of the end of
 * data, and a bare CR is plain data; so none of the smuggling variants
 * ("\n.\n", "\n.\r\n", "\r.\r\n", "\r\n.\n") can end a message early and
 * start a second one.  Lines of any length are read in bounded pieces;
 * the content is counted and a message over message_size_limit is read
 * to its end and discarded.  cleanup receives the content with LF line
 * ends, dot-stuffing undone, after the Received: header made here.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cfg.h"
#include "cleanup_client.h"
#include "flow.h"
#include "log.h"
#include "qfile.h"
#include "smtpd.h"
#include "str.h"
#include "tls.h"
#include "xalloc.h"

#define PIECE_MAX 65536

/* put - content for cleanup, counted against message_size_limit */
static void
put(struct smtpd_session *ss, const void *p, size_t n)
{
	if (ss->too_big || !ss->cc_open)
		return;
	ss->msg_size += (long long)n;
	if (smtpd_cfg.message_size_limit > 0 && ss->msg_size > smtpd_cfg.message_size_limit) {
		ss->too_big = true;
		cleanup_abort(&ss->cc);
		ss->cc_open = false;
		return;
	}
	if (cleanup_write(&ss->cc, p, n) < 0) {
		/* cleanup went away: the reply at the end says so. */
		cleanup_abort(&ss->cc);
		ss->cc_open = false;
	}
}

/* received - our Received: header (RFC 5321 4.4; RFC 3848 protocol names) */
static void
received(struct smtpd_session *ss)
{
	char date[64];
	struct buf h = BUF_INIT;
	struct tm tm;
	time_t now = time(NULL);

	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	buf_printf(&h, "Received: from %s (%s [%s%s])\n", ss->helo ? ss->helo : buf_str(&ss->name), buf_str(&ss->name),
	    strchr(ss->addr, ':') ? "IPv6:" : "", ss->addr);
	if (ss->tls)
		buf_printf(&h, "\t(using %s with cipher %s (%d bits))\n", tls_version(ss->s), tls_cipher(ss->s),
		    tls_cipher_bits(ss->s));
	if (ss->sasl_user && smtpd_cfg.sasl_header)
		buf_printf(&h, "\t(Authenticated sender: %s)\n", ss->sasl_user);
	buf_printf(&h, "\tby %s (%s) with %s id %s", smtpd_cfg.myhostname, smtpd_cfg.mail_name, smtpd_protocol_name(ss),
	    ss->queue_id);
	if (ss->nrcpts == 1)
		buf_printf(&h, "\n\tfor <%s>", ss->rcpts[0].addr);
	buf_printf(&h, "; %s\n", date);
	put(ss, h.data, h.len);
	buf_free(&h);
}

/* open_cleanup - start the queue file; -1 when cleanup cannot be reached (the caller replies 451) */
static int
open_cleanup(struct smtpd_session *ss)
{
	struct cleanup_rcpt *r = xcalloc(ss->nrcpts, sizeof(*r));
	struct cleanup_env env;
	struct buf err = BUF_INIT;
	static int flow_delay_ms = -1;
	size_t i;
	int rc;

	/* The in-flow regulator: while qmgr is far behind, the next message waits (flow.h). */
	if (flow_delay_ms < 0)
		flow_delay_ms = (int)cfg_time(P_IN_FLOW_DELAY) * 1000;
	if (flow_delay_ms > 0 && (rc = flow_wait(flow_delay_ms)) > 0)
		log_debug("%s: in-flow regulator: waited %d ms", ss->queue_id, rc);
	for (i = 0; i < ss->nrcpts; i++) {
		r[i].addr = ss->rcpts[i].addr;
		r[i].orcpt = ss->rcpts[i].orcpt;
		r[i].notify = ss->rcpts[i].notify;
	}
	memset(&env, 0, sizeof(env));
	env.queue_id = ss->queue_id;
	env.sender = buf_str(&ss->sender);
	env.flags = ss->sasl_user ? CLEANUP_FLAG_SUBMISSION : 0;
	env.client_name = buf_str(&ss->name);
	env.client_addr = ss->addr;
	env.helo = ss->helo;
	env.protocol = smtpd_protocol_name(ss);
	env.sasl_method = ss->sasl_user ? ss->sasl_method : NULL;
	env.sasl_username = ss->sasl_user;
	env.envid = ss->margs.envid;
	env.ret = ss->margs.ret;
	env.body = ss->margs.body == SMTPD_BODY_8BITMIME ? "8BITMIME"
	           : ss->margs.body == SMTPD_BODY_7BIT   ? "7BIT"
	                                                 : NULL;
	env.smtputf8 = ss->margs.smtputf8;
	env.size = ss->margs.size;
	env.rcpts = r;
	env.nrcpts = ss->nrcpts;
	rc = cleanup_open(&ss->cc, &env, smtpd_cfg.timeout, &err);
	free(r);
	if (rc < 0) {
		log_warn("%s: cleanup: %s", ss->queue_id, buf_str(&err));
		buf_free(&err);
		return -1;
	}
	buf_free(&err);
	ss->cc_open = true;
	ss->msg_size = 0;
	ss->too_big = false;
	received(ss);
	return 0;
}

/* finish_code - the reply code for a refusal by cleanup: 452 for a full queue (4.3.1), 552 for size */
static int
finish_code(const struct cleanup_result *res)
{
	if (res->status == 5)
		return strncmp(res->dsn, "5.3.4", 5) == 0 ? 552 : 554;
	return strncmp(res->dsn, "4.3.1", 5) == 0 ? 452 : 451;
}

/* finish - commit at cleanup and give the client the verdict */
static void
finish(struct smtpd_session *ss, bool bare_lf)
{
	struct cleanup_result res;

	if (ss->too_big) {
		log_info("%s: reject: %s from %s[%s]: 552 5.3.4 Message size exceeds fixed limit", ss->queue_id,
		    ss->bdat ? "BDAT" : "DATA", buf_str(&ss->name), ss->addr);
		smtpd_error(ss, 552, "5.3.4", "Error: message file too big");
	} else if (bare_lf) {
		log_info("%s: reject: bare <LF> in DATA from %s[%s]", ss->queue_id, buf_str(&ss->name), ss->addr);
		smtpd_error(ss, 550, "5.5.2", "Error: bare <LF> received");
	} else if (!ss->cc_open) {
		smtpd_error(ss, 451, "4.3.0", "Error: queue file write error");
	} else {
		cleanup_result_init(&res);
		ss->cc_open = false;
		(void)cleanup_finish(&ss->cc, &res);
		if (res.status == 0) {
			ss->oks[ss->bdat ? SMTPD_BDAT : SMTPD_DATA]++;
			smtpd_reply(
			    ss, 250, "2.0.0", "Ok: queued as %s", res.queue_id[0] ? res.queue_id : ss->queue_id);
		} else {
			int code = finish_code(&res);

			log_info("%s: reject: %s from %s[%s]: %d %s %s", ss->queue_id, ss->bdat ? "BDAT" : "DATA",
			    buf_str(&ss->name), ss->addr, code, res.dsn, buf_str(&res.reason));
			smtpd_error(ss, code, res.dsn, "%s", buf_str(&res.reason));
		}
		cleanup_result_free(&res);
	}
	smtpd_reset_transaction(ss);
}

/* precheck - what DATA needs; a reply and -1 when not met */
static int
precheck(struct smtpd_session *ss)
{
	if (!ss->mail) {
		smtpd_error(ss, 503, "5.5.1", "Error: need RCPT command");
		return -1;
	}
	if (ss->nrcpts == 0) {
		smtpd_error(ss, 554, "5.5.1", "Error: no valid recipients");
		return -1;
	}
	return 0;
}

void
smtpd_cmd_data(struct smtpd_session *ss, const char *arg)
{
	struct buf line = BUF_INIT;
	bool bol = true, prev_crlf = true, held_cr = false, bare_lf = false;
	size_t n;
	int r;

	if (*arg) {
		smtpd_error(ss, 501, "5.5.4", "Syntax: DATA");
		return;
	}
	if (ss->bdat) {
		smtpd_error(ss, 503, "5.5.1", "Error: DATA during BDAT");
		return;
	}
	if (precheck(ss) < 0)
		return;
	if (open_cleanup(ss) < 0) {
		smtpd_error(ss, 451, "4.3.0", "Error: queue file write error");
		return;
	}
	smtpd_reply(ss, 354, NULL, "End data with <CR><LF>.<CR><LF>");
	smtpd_flush(ss);
	for (;;) {
		/* smtpd_timeout bounds each piece as a whole (a drip-fed line ends too); the session clears it. */
		stream_set_deadline(ss->s, smtpd_cfg.timeout);
		r = stream_getline(ss->s, &line, PIECE_MAX);
		if (r != STREAM_OK && r != STREAM_TOOLONG) {
			log_info("%s after DATA (%lld bytes) from %s[%s]", stream_strerror(r), ss->msg_size,
			    buf_str(&ss->name), ss->addr);
			ss->quit = true;
			smtpd_reset_transaction(ss);
			buf_free(&line);
			return;
		}
		n = line.len;
		if (r == STREAM_TOOLONG || line.data[n - 1] != '\n') {
			/*
			 * A piece of a long line.  A CR at its end may be half of a
			 * CRLF: hold it back until we see the next byte.
			 */
			size_t off = 0;

			if (held_cr)
				put(ss, "\r", 1), held_cr = false;
			if (bol && line.data[0] == '.')
				off = 1; /* dot-stuffing; not the end: more follows on this line */
			if (line.data[n - 1] == '\r')
				held_cr = true, n--;
			put(ss, line.data + off, n - off);
			bol = false;
			if (r != STREAM_TOOLONG) { /* EOF without a newline */
				log_info("lost connection after DATA (%lld bytes) from %s[%s]", ss->msg_size,
				    buf_str(&ss->name), ss->addr);
				ss->quit = true;
				smtpd_reset_transaction(ss);
				buf_free(&line);
				return;
			}
			continue;
		}
		/* A complete line (or the last piece of one) ending in LF. */
		{
			bool crlf = (n >= 2 && line.data[n - 2] == '\r') || (n == 1 && held_cr);
			size_t body = crlf && n >= 2 ? n - 2 : n - 1;

			if (bol && prev_crlf && crlf && n == 3 && line.data[0] == '.')
				break; /* CRLF . CRLF */
			if (held_cr && n == 1)
				held_cr = false; /* that CR was the CR of this CRLF */
			else if (held_cr)
				put(ss, "\r", 1), held_cr = false;
			if (!crlf && smtpd_cfg.bare_lf == BARE_LF_REJECT)
				bare_lf = true;
			if (bol && body > 0 && line.data[0] == '.')
				put(ss, line.data + 1, body - 1);
			else
				put(ss, line.data, body);
			put(ss, "\n", 1);
			bol = true;
			prev_crlf = crlf;
		}
	}
	buf_free(&line);
	finish(ss, bare_lf);
}

/* bdat_fail - remember why the rest of this BDAT transfer is refused */
static void
bdat_fail(struct smtpd_session *ss, int code, const char *dsn, const char *text)
{
	ss->bdat_failed = true;
	ss->fail_code = code;
	ss->fail_dsn = dsn;
	ss->fail_text = text;
	if (ss->cc_open) {
		cleanup_abort(&ss->cc);
		ss->cc_open = false;
	}
}

void
smtpd_cmd_bdat(struct smtpd_session *ss, const char *arg)
{
	unsigned char piece[PIECE_MAX];
	struct smtpd_reply rep;
	long long size, left;
	bool last;
	ssize_t got;
	size_t i, start;

	if (smtpd_parse_bdat(arg, &size, &last, &rep) < 0) {
		/* Without a size the following bytes cannot be told from commands. */
		smtpd_error(ss, rep.code, rep.dsn, "%s", rep.text);
		ss->quit = true;
		return;
	}
	if (!ss->bdat) {
		ss->bdat_cr = false;
		ss->bdat_failed = false;
		if (!ss->esmtp)
			bdat_fail(ss, 503, "5.5.1", "Error: send EHLO first");
		else if (!ss->mail)
			bdat_fail(ss, 503, "5.5.1", "Error: need RCPT command");
		else if (ss->nrcpts == 0)
			bdat_fail(ss, 554, "5.5.1", "Error: no valid recipients");
		else if (open_cleanup(ss) < 0)
			bdat_fail(ss, 451, "4.3.0", "Error: queue file write error");
		ss->bdat = true;
	}
	/* Read the whole chunk whatever happens: the client sends it anyway. */
	for (left = size; left > 0; left -= got) {
		stream_set_deadline(ss->s, smtpd_cfg.timeout);
		got = stream_read(ss->s, piece, left > (long long)sizeof(piece) ? sizeof(piece) : (size_t)left);
		if (got <= 0) {
			log_info("%s after BDAT (%lld bytes) from %s[%s]",
			    got == 0 ? "lost connection" : stream_strerror((int)got), ss->msg_size, buf_str(&ss->name),
			    ss->addr);
			ss->quit = true;
			smtpd_reset_transaction(ss);
			return;
		}
		if (ss->bdat_failed)
			continue;
		/* CRLF becomes LF, also across chunk and piece boundaries; other bytes pass. */
		start = 0;
		if (ss->bdat_cr) {
			if (piece[0] != '\n')
				put(ss, "\r", 1);
			ss->bdat_cr = false;
		}
		for (i = 0; i < (size_t)got; i++) {
			if (piece[i] != '\r')
				continue;
			if (i + 1 == (size_t)got) {
				put(ss, piece + start, i - start);
				start = i + 1;
				ss->bdat_cr = true;
			} else if (piece[i + 1] == '\n') {
				put(ss, piece + start, i - start);
				start = i + 1; /* the LF is kept */
			}
		}
		put(ss, piece + start, (size_t)got - start);
	}
	if (!last) {
		if (ss->bdat_failed)
			smtpd_error(ss, ss->fail_code, ss->fail_dsn, "%s", ss->fail_text);
		else
			smtpd_reply(ss, 250, "2.0.0", "Ok: %lld bytes", size);
		return;
	}
	if (ss->bdat_failed) {
		smtpd_error(ss, ss->fail_code, ss->fail_dsn, "%s", ss->fail_text);
		smtpd_reset_transaction(ss);
		return;
	}
	if (ss->bdat_cr)
		put(ss, "\r", 1);
	finish(ss, false);
}
