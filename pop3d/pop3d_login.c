/*
 * pop3d_login - the AUTHORIZATION state (RFC 1939 4): greeting, CAPA,
 * STLS, USER/PASS, AUTH PLAIN, QUIT; the whole of what a client can say
 * before it has logged in.
 *
 * Runs in the login part: network_user, chrooted, holding nothing but the
 * TLS key it read before the chroot.  Everything the client sends is
 * hostile: a command line is at most pop3d_command_limit bytes (the rest
 * of a longer one is skipped within a bound), every wait is
 * pop3d_timeout, pop3d_error_limit bad commands or failed logins end the
 * connection, and passwords are wiped from every buffer that held them
 * as soon as auth has seen them.  Passwords are refused without TLS
 * unless pop3d_plaintext_auth allows them for this client; then CAPA
 * does not offer USER or SASL either.  APOP is not offered: it needs the
 * plaintext password on the server.
 *
 * auth checks the password and returns a login token; the session then
 * goes to the mailbox part (pop3d_handoff.c), which answers the login
 * with "+OK" once it holds the mailbox's lock.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "auth_client.h"
#include "log.h"
#include "pop3d.h"
#include "sasl.h"
#include "str.h"
#include "tls.h"

bool
pop3d_login_plaintext_ok(const struct pop3d_login *ls)
{
	if (ls->tls)
		return true;
	if (pop3d_cfg.tls_required)
		return false;
	return pop3d_cfg.plaintext == POP3D_PLAINTEXT_YES ||
	       (pop3d_cfg.plaintext == POP3D_PLAINTEXT_MYNETWORKS && ls->in_mynetworks);
}

/* login_error - a -ERR reply that counts towards pop3d_error_limit */
static void __attribute__((format(printf, 2, 3))) login_error(struct pop3d_login *ls, const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (++ls->errors >= pop3d_cfg.error_limit) {
		log_info("too many errors from [%s]; disconnecting", ls->addr);
		pop3_err(ls->s, "%s (too many errors, closing connection)", text);
		ls->quit = true;
		return;
	}
	pop3_err(ls->s, "%s", text);
}

/* wipe_consumed - forget input bytes already read (a password was among them) */
static void
wipe_consumed(struct stream *s, struct buf *line)
{
	if (s->rbuf != NULL && s->rpos > 0)
		explicit_bzero(s->rbuf, s->rpos);
	if (line->data != NULL)
		explicit_bzero(line->data, line->cap);
}

static bool
refuse_plaintext(struct pop3d_login *ls)
{
	if (pop3d_login_plaintext_ok(ls))
		return false;
	login_error(ls, "[AUTH] Plaintext authentication is not allowed without TLS%s",
	    pop3d_cfg.tls_ctx != NULL ? "; use STLS first" : "");
	return true;
}

/* do_login - ask auth; on success hand the session over */
static void
do_login(struct pop3d_login *ls, const char *user, const char *pass, const char *method)
{
	struct buf canon = BUF_INIT, token = BUF_INIT, reason = BUF_INIT;
	enum auth_result r;

	/* Earlier replies go out first: the check may take auth_failure_delay. */
	(void)stream_flush(ls->s);
	r = auth_login("pop3d", user, pass, ls->addr, &canon, &token, &reason);
	switch (r) {
	case AUTH_OK:
		log_info("login: user=<%s>, method=%s, client=[%s]%s", buf_str(&canon), method, ls->addr,
		    ls->tls ? ", TLS" : "");
		if (pop3d_handoff(ls, buf_str(&token), method))
			ls->quit = true;
		break;
	case AUTH_FAIL:
		log_warn("[%s]: %s authentication failed: %s", ls->addr, method,
		    reason.len ? buf_str(&reason) : "authentication failure");
		login_error(ls, "[AUTH] Authentication failed");
		break;
	case AUTH_LOCKED:
		log_warn("[%s]: %s authentication refused: too many failures", ls->addr, method);
		login_error(ls, "[SYS/TEMP] Too many failed logins; try again later");
		break;
	default:
		log_warn("[%s]: %s authentication not checked: %s", ls->addr, method, buf_str(&reason));
		pop3_err(ls->s, "[SYS/TEMP] Authentication temporarily unavailable; try again later");
		break;
	}
	buf_freezero(&token);
	buf_free(&canon);
	buf_free(&reason);
}

static void
cmd_user(struct pop3d_login *ls, const char *arg)
{
	size_t i, n = strlen(arg);

	buf_freezero(&ls->user);
	if (refuse_plaintext(ls))
		return;
	if (n == 0) {
		login_error(ls, "Syntax: USER name");
		return;
	}
	for (i = 0; i < n; i++)
		if ((unsigned char)arg[i] < 0x20 || arg[i] == 0x7f) {
			login_error(ls, "Invalid user name");
			return;
		}
	buf_strcpy(&ls->user, arg);
	pop3_ok(ls->s, "Send the password");
}

static void
cmd_pass(struct pop3d_login *ls, char *arg)
{
	struct buf user = BUF_INIT;

	if (refuse_plaintext(ls))
		goto out;
	if (ls->user.len == 0) {
		login_error(ls, "Send USER first");
		goto out;
	}
	if (*arg == 0) {
		login_error(ls, "Syntax: PASS password");
		goto out;
	}
	/* RFC 1939 7: the password is the rest of the line, spaces included. */
	buf_set(&user, ls->user.data, ls->user.len);
	do_login(ls, buf_str(&user), arg, "USER");
out:
	explicit_bzero(arg, strlen(arg));
	buf_freezero(&ls->user);
	buf_free(&user);
}

/* auth_continue - "+ " and the client's answer (RFC 5034 4); -1 after replying */
static int
auth_continue(struct pop3d_login *ls, struct buf *resp)
{
	stream_puts(ls->s, "+ \r\n");
	(void)stream_flush(ls->s);
	switch (sasl_read_response(ls->s, resp)) {
	case SASL_READ_OK:
		return 0;
	case SASL_READ_CANCEL:
		login_error(ls, "Authentication cancelled");
		return -1;
	case SASL_READ_BAD:
		login_error(ls, "Invalid base64 in the authentication response");
		return -1;
	case SASL_READ_TOOLONG:
		pop3_err(ls->s, "Authentication line too long");
		/* FALLTHROUGH */
	case SASL_READ_LOST:
	default:
		ls->quit = true;
		return -1;
	}
}

static void
cmd_auth(struct pop3d_login *ls, char *arg)
{
	struct buf resp = BUF_INIT, user = BUF_INIT, pass = BUF_INIT;
	char *mech = arg, *initial;
	const char *why;

	initial = mech + strcspn(mech, " ");
	if (*initial)
		*initial++ = 0;
	if (*mech == 0) {
		/* The mechanisms, as many clients ask before CAPA existed. */
		pop3_ok(ls->s, "Mechanisms follow");
		stream_puts(ls->s, pop3d_login_plaintext_ok(ls) ? "PLAIN\r\n.\r\n" : ".\r\n");
		goto out;
	}
	if (str_casecmp(mech, "PLAIN") != 0) {
		login_error(ls, "Unsupported authentication mechanism");
		goto out;
	}
	if (refuse_plaintext(ls))
		goto out;
	if (*initial) {
		/* "=" is an empty initial response (RFC 5034 4). */
		if (sasl_b64_decode(initial, &resp, SASL_LINE_MAX) < 0) {
			login_error(ls, "Invalid base64 in the authentication response");
			goto out;
		}
	} else if (auth_continue(ls, &resp) < 0) {
		goto out;
	}
	if (sasl_plain(&resp, &user, &pass, &why) < 0) {
		log_warn("[%s]: PLAIN authentication failed: %s", ls->addr, why);
		login_error(ls, "[AUTH] Authentication failed");
		goto out;
	}
	do_login(ls, buf_str(&user), buf_str(&pass), "PLAIN");
out:
	explicit_bzero(mech, strlen(mech));
	if (*initial)
		explicit_bzero(initial, strlen(initial));
	buf_freezero(&resp);
	buf_freezero(&user);
	buf_freezero(&pass);
}

static void
cmd_stls(struct pop3d_login *ls, const char *arg)
{
	struct buf err = BUF_INIT;

	if (*arg) {
		login_error(ls, "Syntax: STLS");
		return;
	}
	if (ls->tls) {
		login_error(ls, "TLS is already active");
		return;
	}
	if (pop3d_cfg.tls_ctx == NULL) {
		login_error(ls, "STLS is not available");
		return;
	}
	pop3_ok(ls->s, "Begin TLS negotiation");
	/* tls_server_start flushes our reply and drops what the client sent after STLS. */
	if (tls_server_start(ls->s, pop3d_cfg.tls_ctx, &err) < 0) {
		log_info("TLS handshake with [%s] failed: %s", ls->addr, buf_str(&err));
		ls->quit = true;
		buf_free(&err);
		return;
	}
	ls->tls = true;
	/* RFC 2595 4: the client forgets what it learned; so do we. */
	buf_freezero(&ls->user);
	log_info("TLS connection established from [%s]: %s with cipher %s (%d bits)", ls->addr, tls_version(ls->s),
	    tls_cipher(ls->s), tls_cipher_bits(ls->s));
	buf_free(&err);
}

static void
dispatch(struct pop3d_login *ls, struct pop3_cmd *c)
{
	switch (c->verb) {
	case POP3_CAPA:
		pop3_capa(ls->s, true, pop3d_login_plaintext_ok(ls), pop3d_cfg.tls_ctx != NULL && !ls->tls);
		break;
	case POP3_USER:
		cmd_user(ls, c->arg);
		break;
	case POP3_PASS:
		cmd_pass(ls, c->arg);
		break;
	case POP3_AUTH:
		cmd_auth(ls, c->arg);
		break;
	case POP3_STLS:
		cmd_stls(ls, c->arg);
		break;
	case POP3_QUIT:
		pop3_ok(ls->s, "Bye");
		ls->quit = true;
		break;
	case POP3_APOP:
		login_error(ls, "APOP is not supported; use USER/PASS or AUTH PLAIN");
		break;
	case POP3_UNKNOWN:
		login_error(ls, "Unknown command");
		break;
	default:
		login_error(ls, "%s is not allowed before login", c->name);
		break;
	}
}

/* read_command - one command line without its line end; -1 at the end of the session */
static int
read_command(struct pop3d_login *ls, struct buf *line)
{
	int r;

	while ((r = pop3_read_line(ls->s, line)) == 1) {
		buf_freezero(&ls->user);
		login_error(ls, "Line too long");
		if (ls->quit)
			return -1;
		if (stream_pending(ls->s) == 0)
			(void)stream_flush(ls->s);
	}
	if (r < 0) {
		log_info("%s from [%s]", r == STREAM_TOOLONG ? "line too long" : stream_strerror(r), ls->addr);
		return -1;
	}
	return 0;
}

void
pop3d_login_run(struct pop3d_login *ls)
{
	struct buf line = BUF_INIT, err = BUF_INIT;
	struct pop3_cmd c;
	const char *why;
	unsigned total = 0;
	int i;

	log_info("connect from [%s]", ls->addr);
	if (pop3d_cfg.tls_wrapper) {
		if (tls_server_start(ls->s, pop3d_cfg.tls_ctx, &err) < 0) {
			log_info("TLS handshake with [%s] failed: %s", ls->addr, buf_str(&err));
			goto done;
		}
		ls->tls = true;
		log_info("TLS connection established from [%s]: %s with cipher %s (%d bits)", ls->addr,
		    tls_version(ls->s), tls_cipher(ls->s), tls_cipher_bits(ls->s));
	}
	pop3_ok(ls->s, "%s POP3 server ready", pop3d_cfg.mail_name);
	(void)stream_flush(ls->s);
	while (!ls->quit && stream_status(ls->s) == STREAM_OK) {
		if (read_command(ls, &line) < 0)
			break;
		if (pop3_parse_line((char *)line.data, line.len, &c, &why) < 0) {
			ls->counts[POP3_UNKNOWN]++;
			login_error(ls, "Invalid command: %s", why);
		} else {
			ls->counts[c.verb]++;
			dispatch(ls, &c);
			if (c.verb == POP3_PASS || c.verb == POP3_AUTH || c.verb == POP3_USER)
				wipe_consumed(ls->s, &line);
		}
		if (stream_pending(ls->s) == 0 || ls->quit)
			(void)stream_flush(ls->s);
	}
	(void)stream_flush(ls->s);
done:
	if (ls->tls)
		tls_stop(ls->s);
	for (i = 0; i < POP3_NVERBS; i++)
		total += ls->counts[i];
	log_info("disconnect from [%s] commands=%u errors=%lld", ls->addr, total, ls->errors);
	buf_freezero(&ls->user);
	buf_freezero(&line);
	buf_free(&err);
}
