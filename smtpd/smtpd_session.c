/*
 * smtpd_session - one SMTP conversation: the command loop, replies,
 * pipelining discipline, error limits, and the commands that do not move
 * message content (HELO, EHLO, MAIL, RCPT, RSET, NOOP, VRFY, HELP,
 * STARTTLS, QUIT).  DATA/BDAT are in smtpd_data.c, AUTH in smtpd_auth.c.
 *
 * The client is hostile: a command line is at most line_length_limit
 * bytes (the rest is skipped, within a bound), every wait is
 * smtpd_timeout, the error and junk counters end abusive sessions, and a
 * client that pipelines commands without having been offered PIPELINING
 * is disconnected (554 5.5.0), as are clients talking before our replies
 * after HELO.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addr.h"
#include "anvil_client.h"
#include "cfg.h"
#include "log.h"
#include "qfile.h"
#include "smtpd.h"
#include "str.h"
#include "tls.h"
#include "xalloc.h"

#define SKIP_MAX (16 * 1024 * 1024) /* an over-long line is skipped up to this much */

static const char *const verb_names[] = { "unknown", "helo", "ehlo", "mail", "rcpt", "data", "bdat", "rset", "noop",
	"quit", "vrfy", "expn", "help", "starttls", "auth" };

static void
smtpd_vreply(struct smtpd_session *ss, int code, const char *dsn, const char *fmt, va_list ap)
{
	char text[1024];

	vsnprintf(text, sizeof(text), fmt, ap);
	if (dsn != NULL)
		stream_printf(ss->s, "%d %s %s\r\n", code, dsn, text);
	else
		stream_printf(ss->s, "%d %s\r\n", code, text);
}

void
smtpd_reply(struct smtpd_session *ss, int code, const char *dsn, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	smtpd_vreply(ss, code, dsn, fmt, ap);
	va_end(ap);
}

void
smtpd_error(struct smtpd_session *ss, int code, const char *dsn, const char *fmt, ...)
{
	va_list ap;

	ss->errors++;
	/* A client that keeps failing is slowed down, then dropped. */
	if (ss->errors >= smtpd_cfg.soft_error_limit && smtpd_cfg.error_sleep > 0) {
		smtpd_flush(ss);
		sleep((unsigned)smtpd_cfg.error_sleep);
	}
	va_start(ap, fmt);
	smtpd_vreply(ss, code, dsn, fmt, ap);
	va_end(ap);
	if (ss->errors >= smtpd_cfg.hard_error_limit && !ss->quit) {
		log_info("too many errors after %s from %s[%s]", "command", buf_str(&ss->name), ss->addr);
		smtpd_reply(ss, 421, "4.7.0", "%s Error: too many errors", smtpd_cfg.myhostname);
		ss->quit = true;
	}
}

void
smtpd_flush(struct smtpd_session *ss)
{
	(void)stream_flush(ss->s);
}

const char *
smtpd_protocol_name(const struct smtpd_session *ss)
{
	static char name[16];

	if (!ss->esmtp)
		return "SMTP";
	snprintf(name, sizeof(name), "%s%s%s", ss->mail && ss->margs.smtputf8 ? "UTF8SMTP" : "ESMTP",
	    ss->tls ? "S" : "", ss->sasl_user ? "A" : "");
	return name;
}

void
smtpd_reset_transaction(struct smtpd_session *ss)
{
	size_t i;

	if (ss->cc_open) {
		cleanup_abort(&ss->cc);
		ss->cc_open = false;
	}
	for (i = 0; i < ss->nrcpts; i++) {
		free(ss->rcpts[i].addr);
		free(ss->rcpts[i].orcpt);
	}
	free(ss->rcpts);
	ss->rcpts = NULL;
	ss->nrcpts = ss->crcpts = 0;
	ss->rcpt_attempts = 0;
	smtpd_mail_args_free(&ss->margs);
	memset(&ss->margs, 0, sizeof(ss->margs));
	buf_reset(&ss->sender);
	ss->mail = false;
	ss->bdat = ss->bdat_failed = false;
	ss->queue_id[0] = 0;
}

/* reset_session - what STARTTLS and a second EHLO forget (RFC 3207 4.2) */
static void
reset_session(struct smtpd_session *ss)
{
	smtpd_reset_transaction(ss);
	free(ss->helo);
	ss->helo = NULL;
	ss->esmtp = false;
}

static void
cmd_helo(struct smtpd_session *ss, struct smtpd_cmd *c)
{
	char *name = str_trim(c->arg);

	if (*name == 0) {
		smtpd_error(ss, 501, "5.5.4", "Syntax: %s hostname", c->verb == SMTPD_EHLO ? "EHLO" : "HELO");
		return;
	}
	if (strlen(name) > 255) {
		smtpd_error(
		    ss, 501, "5.5.4", "Syntax: %s hostname (too long)", c->verb == SMTPD_EHLO ? "EHLO" : "HELO");
		return;
	}
	reset_session(ss);
	ss->helo = xstrdup(name);
	ss->esmtp = c->verb == SMTPD_EHLO;
	ss->oks[c->verb]++;
	if (c->verb == SMTPD_HELO) {
		smtpd_reply(ss, 250, NULL, "%s", smtpd_cfg.myhostname);
		return;
	}
	stream_printf(ss->s, "250-%s\r\n", smtpd_cfg.myhostname);
	stream_puts(ss->s, "250-PIPELINING\r\n");
	stream_printf(ss->s, "250-SIZE %lld\r\n", smtpd_cfg.message_size_limit);
	if (!smtpd_cfg.vrfy_disabled)
		stream_puts(ss->s, "250-VRFY\r\n");
	if (smtpd_cfg.tls_ctx != NULL && !ss->tls)
		stream_puts(ss->s, "250-STARTTLS\r\n");
	if (smtpd_auth_offered(ss))
		stream_puts(ss->s, "250-AUTH PLAIN LOGIN\r\n");
	stream_puts(ss->s, "250-ENHANCEDSTATUSCODES\r\n");
	stream_puts(ss->s, "250-8BITMIME\r\n");
	stream_puts(ss->s, "250-DSN\r\n");
	if (smtpd_cfg.smtputf8)
		stream_puts(ss->s, "250-SMTPUTF8\r\n");
	stream_puts(ss->s, "250 CHUNKING\r\n");
}

static void
parse_opts(const struct smtpd_session *ss, struct smtpd_parse_opts *o)
{
	(void)ss;
	memset(o, 0, sizeof(*o));
	o->smtputf8_ok = smtpd_cfg.smtputf8;
	o->dsn_ok = true;
	o->size_max = smtpd_cfg.message_size_limit;
}

static void
cmd_mail(struct smtpd_session *ss, struct smtpd_cmd *c)
{
	struct smtpd_parse_opts o;
	struct smtpd_reply rep;

	if (ss->helo == NULL && smtpd_cfg.helo_required) {
		smtpd_error(ss, 503, "5.5.1", "Error: send HELO/EHLO first");
		return;
	}
	if (ss->mail) {
		smtpd_error(ss, 503, "5.5.1", "Error: nested MAIL command");
		return;
	}
	if (smtpd_cfg.tls_level == TLS_LEVEL_ENCRYPT && !ss->tls) {
		smtpd_error(ss, 530, "5.7.0", "Must issue a STARTTLS command first");
		return;
	}
	parse_opts(ss, &o);
	smtpd_mail_args_free(&ss->margs);
	memset(&ss->margs, 0, sizeof(ss->margs));
	if (smtpd_parse_mail(c->arg, &o, &ss->sender, &ss->margs, &rep) < 0) {
		smtpd_error(ss, rep.code, rep.dsn, "%s", rep.text);
		return;
	}
	if (!ss->esmtp &&
	    (ss->margs.size || ss->margs.body || ss->margs.smtputf8 || ss->margs.envid || ss->margs.ret)) {
		smtpd_mail_args_free(&ss->margs);
		memset(&ss->margs, 0, sizeof(ss->margs));
		smtpd_error(ss, 555, "5.5.4", "Error: MAIL parameters need EHLO");
		return;
	}
	ss->mail = true;
	ss->oks[SMTPD_MAIL]++;
	smtpd_reply(ss, 250, "2.1.0", "Ok");
}

static void
cmd_rcpt(struct smtpd_session *ss, struct smtpd_cmd *c)
{
	struct smtpd_parse_opts o;
	struct smtpd_rcpt_args ra;
	struct smtpd_reply rep;
	struct buf rcpt = BUF_INIT;
	struct smtpd_rcpt *r;

	if (!ss->mail) {
		smtpd_error(ss, 503, "5.5.1", "Error: need MAIL command");
		return;
	}
	if (ss->bdat) {
		smtpd_error(ss, 503, "5.5.1", "Error: RCPT during BDAT");
		return;
	}
	ss->rcpt_attempts++;
	if (ss->nrcpts >= (size_t)smtpd_cfg.recipient_limit) {
		smtpd_error(ss, 452, "4.5.3", "Error: too many recipients");
		return;
	}
	parse_opts(ss, &o);
	memset(&ra, 0, sizeof(ra));
	if (smtpd_parse_rcpt(c->arg, &o, ss->margs.smtputf8, &rcpt, &ra, &rep) < 0) {
		smtpd_error(ss, rep.code, rep.dsn, "%s", rep.text);
		buf_free(&rcpt);
		return;
	}
	if (smtpd_check_rcpt(ss, buf_str(&rcpt)) < 0) {
		smtpd_rcpt_args_free(&ra);
		buf_free(&rcpt);
		return;
	}
	if (ss->queue_id[0] == 0) {
		qid_new(ss->queue_id);
		if (ss->sasl_user)
			log_info("%s: client=%s[%s], sasl_method=%s, sasl_username=%s", ss->queue_id,
			    buf_str(&ss->name), ss->addr, ss->sasl_method, ss->sasl_user);
		else
			log_info("%s: client=%s[%s]", ss->queue_id, buf_str(&ss->name), ss->addr);
	}
	if (ss->nrcpts == ss->crcpts) {
		ss->crcpts = ss->crcpts ? ss->crcpts * 2 : 8;
		ss->rcpts = xreallocarray(ss->rcpts, ss->crcpts, sizeof(*ss->rcpts));
	}
	r = &ss->rcpts[ss->nrcpts++];
	r->addr = buf_export(&rcpt);
	r->orcpt = ra.orcpt;
	r->notify = ra.notify;
	ra.orcpt = NULL;
	smtpd_rcpt_args_free(&ra);
	ss->oks[SMTPD_RCPT]++;
	smtpd_reply(ss, 250, "2.1.5", "Ok");
}

static void
cmd_vrfy(struct smtpd_session *ss, struct smtpd_cmd *c)
{
	struct buf addr = BUF_INIT;
	const char *end, *why;

	ss->junk++;
	if (smtpd_cfg.vrfy_disabled) {
		smtpd_error(ss, 502, "5.5.1", "VRFY command is disabled");
		return;
	}
	if (addr_parse_path(str_trim(c->arg), ADDR_BARE_OK | ADDR_LOCAL_OK, &addr, &end, &why) < 0 || *end) {
		smtpd_error(ss, 501, "5.1.3", "Bad recipient address syntax");
	} else if (smtpd_check_vrfy(ss, buf_str(&addr)) == 0) {
		ss->oks[SMTPD_VRFY]++;
		smtpd_reply(ss, 252, "2.0.0", "%s", buf_str(&addr));
	}
	buf_free(&addr);
}

static void
cmd_starttls(struct smtpd_session *ss, struct smtpd_cmd *c)
{
	struct buf err = BUF_INIT;

	if (*c->arg) {
		smtpd_error(ss, 501, "5.5.4", "Syntax: STARTTLS");
		return;
	}
	if (ss->tls) {
		smtpd_error(ss, 554, "5.5.1", "Error: TLS already active");
		return;
	}
	if (smtpd_cfg.tls_ctx == NULL) {
		smtpd_error(ss, 502, "5.5.1", "Error: command not implemented");
		return;
	}
	if (!ss->esmtp) {
		smtpd_error(ss, 503, "5.5.1", "Error: send EHLO first");
		return;
	}
	smtpd_reply(ss, 220, "2.0.0", "Ready to start TLS");
	smtpd_flush(ss);
	/* tls_server_start drops whatever plaintext came after the command. */
	if (tls_server_start(ss->s, smtpd_cfg.tls_ctx, &err) < 0) {
		log_info("SSL_accept error from %s[%s]: %s", buf_str(&ss->name), ss->addr, buf_str(&err));
		ss->quit = true;
		buf_free(&err);
		return;
	}
	ss->tls = true;
	ss->oks[SMTPD_STARTTLS]++;
	log_info("TLS connection established from %s[%s]: %s with cipher %s (%d bits)", buf_str(&ss->name), ss->addr,
	    tls_version(ss->s), tls_cipher(ss->s), tls_cipher_bits(ss->s));
	reset_session(ss);
	buf_free(&err);
}

/* dispatch - run one parsed command */
static void
dispatch(struct smtpd_session *ss, struct smtpd_cmd *c)
{
	switch (c->verb) {
	case SMTPD_HELO:
	case SMTPD_EHLO:
		cmd_helo(ss, c);
		break;
	case SMTPD_MAIL:
		cmd_mail(ss, c);
		break;
	case SMTPD_RCPT:
		cmd_rcpt(ss, c);
		break;
	case SMTPD_DATA:
		smtpd_cmd_data(ss, c->arg);
		break;
	case SMTPD_BDAT:
		smtpd_cmd_bdat(ss, c->arg);
		break;
	case SMTPD_RSET:
		ss->junk++;
		if (*c->arg) {
			smtpd_error(ss, 501, "5.5.4", "Syntax: RSET");
			break;
		}
		smtpd_reset_transaction(ss);
		ss->oks[SMTPD_RSET]++;
		smtpd_reply(ss, 250, "2.0.0", "Ok");
		break;
	case SMTPD_NOOP:
		ss->junk++;
		ss->oks[SMTPD_NOOP]++;
		smtpd_reply(ss, 250, "2.0.0", "Ok");
		break;
	case SMTPD_QUIT:
		ss->oks[SMTPD_QUIT]++;
		smtpd_reply(ss, 221, "2.0.0", "Bye");
		ss->quit = true;
		break;
	case SMTPD_VRFY:
		cmd_vrfy(ss, c);
		break;
	case SMTPD_EXPN:
		ss->junk++;
		smtpd_error(ss, 502, "5.5.1", "Error: command not implemented");
		break;
	case SMTPD_HELP:
		ss->junk++;
		ss->oks[SMTPD_HELP]++;
		smtpd_reply(
		    ss, 214, "2.0.0", "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH");
		break;
	case SMTPD_STARTTLS:
		cmd_starttls(ss, c);
		break;
	case SMTPD_AUTH:
		smtpd_cmd_auth(ss, c->arg);
		break;
	case SMTPD_UNKNOWN:
		smtpd_error(ss, 500, "5.5.2", "Error: command not recognized");
		break;
	}
	if (ss->junk > smtpd_cfg.junk_limit && c->verb != SMTPD_QUIT && !ss->quit) {
		ss->errors++;
		if (ss->errors >= smtpd_cfg.hard_error_limit) {
			smtpd_reply(ss, 421, "4.7.0", "%s Error: too many commands without mail", smtpd_cfg.myhostname);
			ss->quit = true;
		}
	}
}

/* read_command_line - read_command's work; each line it reads gets its own deadline */
static int
read_command_line(struct smtpd_session *ss, struct buf *line, const char **last)
{
	size_t len;
	int r;

	for (;;) {
		stream_set_deadline(ss->s, smtpd_cfg.timeout);
		r = stream_getline(ss->s, line, (size_t)smtpd_cfg.line_limit + 2);
		if (r == STREAM_TOOLONG) {
			if (stream_skipline(ss->s, SKIP_MAX) != STREAM_OK) {
				log_info(
				    "%s after %s from %s[%s]", "line too long", *last, buf_str(&ss->name), ss->addr);
				return -1;
			}
			smtpd_error(ss, 500, "5.5.2", "Error: line too long");
			if (ss->quit)
				return -1;
			if (stream_pending(ss->s) == 0)
				smtpd_flush(ss);
			continue;
		}
		if (r != STREAM_OK) {
			log_info("%s after %s from %s[%s]", stream_strerror(r), *last, buf_str(&ss->name), ss->addr);
			return -1;
		}
		len = line->len;
		if (len == 0 || line->data[len - 1] != '\n') {
			log_info("lost connection after %s from %s[%s]", *last, buf_str(&ss->name), ss->addr);
			return -1;
		}
		if (len >= 2 && line->data[len - 2] == '\r') {
			buf_truncate(line, len - 2);
		} else {
			buf_truncate(line, len - 1);
			if (smtpd_cfg.bare_lf == BARE_LF_REJECT) {
				smtpd_error(ss, 500, "5.5.2", "Error: bare <LF> received");
				if (ss->quit)
					return -1;
				if (stream_pending(ss->s) == 0)
					smtpd_flush(ss);
				continue;
			}
		}
		return 0;
	}
}

/*
 * read_command - one command line without its line end; -1 at the end of
 * the session.  smtpd_timeout bounds the whole line, not only each wait:
 * a client that drips a byte now and then must not keep the process.
 */
static int
read_command(struct smtpd_session *ss, struct buf *line, const char **last)
{
	int r;

	r = read_command_line(ss, line, last);
	stream_set_deadline(ss->s, 0);
	return r;
}

/* disconnect_line - "ehlo=1 mail=1 rcpt=0/1 data=1 quit=1 commands=4" */
static void
log_disconnect(struct smtpd_session *ss)
{
	struct buf b = BUF_INIT;
	unsigned total = 0, ok = 0;
	size_t i;

	for (i = 1; i < sizeof(verb_names) / sizeof(verb_names[0]); i++) {
		if (ss->counts[i] == 0)
			continue;
		if (ss->oks[i] == ss->counts[i])
			buf_printf(&b, " %s=%u", verb_names[i], ss->counts[i]);
		else
			buf_printf(&b, " %s=%u/%u", verb_names[i], ss->oks[i], ss->counts[i]);
		total += ss->counts[i];
		ok += ss->oks[i];
	}
	if (ss->counts[0])
		buf_printf(&b, " unknown=0/%u", ss->counts[0]), total += ss->counts[0];
	if (ok == total)
		buf_printf(&b, " commands=%u", total);
	else
		buf_printf(&b, " commands=%u/%u", ok, total);
	log_info("disconnect from %s[%s]%s", buf_str(&ss->name), ss->addr, buf_str(&b));
	buf_free(&b);
}

/* limits - connection count and rate across all smtpd processes (anvil) */
static int
limits(struct smtpd_session *ss)
{
	long long count = 0, rate = 0;

	if (ss->in_mynetworks || (smtpd_cfg.conn_count_limit == 0 && smtpd_cfg.conn_rate_limit == 0))
		return 0;
	if (anvil_connect(ss->service, ss->addr, &count, &rate) < 0)
		return 0; /* no counter service: no limits, mail still flows */
	ss->anvil_counted = true;
	if (smtpd_cfg.conn_count_limit > 0 && count > smtpd_cfg.conn_count_limit) {
		log_warn("Connection concurrency limit exceeded: %lld from %s[%s] for service %s", count,
		    buf_str(&ss->name), ss->addr, ss->service);
		smtpd_reply(ss, 421, "4.7.0", "%s Error: too many connections from %s", smtpd_cfg.myhostname, ss->addr);
		return -1;
	}
	if (smtpd_cfg.conn_rate_limit > 0 && rate > smtpd_cfg.conn_rate_limit) {
		log_warn("Connection rate limit exceeded: %lld from %s[%s] for service %s", rate, buf_str(&ss->name),
		    ss->addr, ss->service);
		smtpd_reply(ss, 421, "4.7.0", "%s Error: too many connections from %s", smtpd_cfg.myhostname, ss->addr);
		return -1;
	}
	return 0;
}

void
smtpd_session_run(struct smtpd_session *ss)
{
	struct buf line = BUF_INIT, err = BUF_INIT;
	struct smtpd_reply rep;
	struct smtpd_cmd c;
	const char *last = "CONNECT";

	log_info("connect from %s[%s]", buf_str(&ss->name), ss->addr);
	if (smtpd_cfg.tls_wrapper) {
		if (tls_server_start(ss->s, smtpd_cfg.tls_ctx, &err) < 0) {
			log_info("SSL_accept error from %s[%s]: %s", buf_str(&ss->name), ss->addr, buf_str(&err));
			goto done;
		}
		ss->tls = true;
		log_info("TLS connection established from %s[%s]: %s with cipher %s (%d bits)", buf_str(&ss->name),
		    ss->addr, tls_version(ss->s), tls_cipher(ss->s), tls_cipher_bits(ss->s));
	}
	if (limits(ss) < 0) {
		smtpd_flush(ss);
		goto done;
	}
	/*
	 * A client that talks before the greeting does not wait for replies
	 * (RFC 5321 4.3.1): spam software, or an attempt to get commands past
	 * a relay.  Under implicit TLS only what TLS has already decrypted
	 * counts (the socket may hold the rest of the handshake).
	 */
	if (ss->tls ? stream_pending(ss->s) > 0 : stream_wait_readable(ss->s, 0) == 1) {
		log_info("improper command pipelining before the greeting from %s[%s]", buf_str(&ss->name), ss->addr);
		smtpd_reply(ss, 554, "5.5.0", "Error: SMTP protocol synchronization");
		smtpd_flush(ss);
		goto done;
	}
	smtpd_reply(ss, 220, NULL, "%s", smtpd_cfg.banner);
	smtpd_flush(ss);
	while (!ss->quit && stream_status(ss->s) == STREAM_OK) {
		if (read_command(ss, &line, &last) < 0)
			break;
		if (smtpd_parse_line((char *)line.data, line.len, &c, &rep) < 0) {
			ss->counts[0]++;
			smtpd_error(ss, rep.code, rep.dsn, "%s", rep.text);
			smtpd_flush(ss);
			continue;
		}
		ss->counts[c.verb]++;
		ss->ncommands++;
		last = c.name;
		/*
		 * Commands may be pipelined only after EHLO offered PIPELINING,
		 * and never behind EHLO itself (RFC 2920 3.1).
		 */
		if ((!ss->esmtp || c.verb == SMTPD_EHLO) && c.verb != SMTPD_STARTTLS && stream_pending(ss->s) > 0) {
			log_info(
			    "improper command pipelining after %s from %s[%s]", c.name, buf_str(&ss->name), ss->addr);
			smtpd_reply(ss, 554, "5.5.0", "Error: SMTP protocol synchronization");
			smtpd_flush(ss);
			break;
		}
		dispatch(ss, &c);
		stream_set_deadline(ss->s, 0); /* DATA and BDAT bound their reads with one */
		if (stream_pending(ss->s) == 0 || ss->quit)
			smtpd_flush(ss);
	}
	smtpd_flush(ss);
done:
	smtpd_reset_transaction(ss);
	if (ss->tls)
		tls_stop(ss->s);
	log_disconnect(ss);
	if (ss->anvil_counted)
		(void)anvil_disconnect(ss->service, ss->addr);
	free(ss->helo);
	free(ss->sasl_user);
	buf_free(&ss->sender);
	buf_free(&line);
	buf_free(&err);
}
