/*
 * smtp_connect - an SMTP session up to the point where mail may flow:
 * TCP connect, the greeting, EHLO (HELO when EHLO is refused), STARTTLS
 * as the destination's TLS level asks, and AUTH when credentials exist;
 * and its end (QUIT), and RSET between messages of a kept session.
 *
 * Called by smtp_deliver.c for each address of the plan and by
 * smtp_trans.c for commands.  Every wait has the stage's timeout, and
 * the whole of each reply must arrive within it (stream deadline).  The
 * server is hostile: after our STARTTLS anything it sent beyond the 220
 * is discarded before the handshake (tls_client_start), features are
 * learned again after TLS, credentials go only over TLS unless
 * smtp_sasl_tls_only is off, and secrets are wiped after use.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "log.h"
#include "smtp.h"
#include "str.h"
#include "tls.h"
#include "xalloc.h"

#define CMD_MAX 2048 /* one command line we send */

/* fail_set - the session could not be used: why, with status and dsn */
static void fail_set(struct smtp_fail *f, enum deliver_status st, const char *dsn, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
fail_set(struct smtp_fail *f, enum deliver_status st, const char *dsn, const char *fmt, ...)
{
	va_list ap;

	f->status = st;
	strlcpy(f->dsn, dsn, sizeof(f->dsn));
	buf_reset(&f->why);
	va_start(ap, fmt);
	buf_vprintf(&f->why, fmt, ap);
	va_end(ap);
}

/* fail_code - as fail_set, keeping the reason already in f->why */
static void
fail_code(struct smtp_fail *f, enum deliver_status st, const char *dsn)
{
	f->status = st;
	strlcpy(f->dsn, dsn, sizeof(f->dsn));
}

/* soft_dsn - the reply's code with class 4: a server's refusal to talk is never final */
static void
soft_dsn(const struct smtp_reply *r, char *dsn, size_t len)
{
	strlcpy(dsn, r->dsn, len);
	dsn[0] = '4';
}

/* tcp_connect - a connected, non-blocking socket to t, or -1 with why */
static int
tcp_connect(const struct smtp_target *t, const char *addr, struct buf *why)
{
	struct sockaddr_storage ss;
	socklen_t len;
	struct pollfd pfd;
	int fd, r, e = 0;

	memset(&ss, 0, sizeof(ss));
	if (t->addr.family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;

		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)t->port);
		memcpy(&in->sin_addr, t->addr.a, 4);
		len = sizeof(*in);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)t->port);
		memcpy(&in6->sin6_addr, t->addr.a, 16);
		len = sizeof(*in6);
	}
	if ((fd = socket(t->addr.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) {
		buf_printf(why, "connect to %s[%s]:%d: %s", t->host, addr, t->port, strerror(errno));
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
		if (errno != EINPROGRESS && errno != EINTR) {
			e = errno;
		} else {
			pfd.fd = fd;
			pfd.events = POLLOUT;
			do
				r = poll(&pfd, 1, smtp_conf.connect_timeout * 1000);
			while (r < 0 && errno == EINTR);
			if (r == 0) {
				e = ETIMEDOUT;
			} else if (r < 0) {
				e = errno;
			} else {
				len = sizeof(e);
				if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
					e = errno;
			}
		}
	}
	if (e != 0) {
		buf_printf(why, "connect to %s[%s]:%d: %s", t->host, addr, t->port, strerror(e));
		close(fd);
		return -1;
	}
	return fd;
}

void
smtp_send(struct smtp_session *ss, const char *fmt, ...)
{
	char line[CMD_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line))
		log_panic("smtp_send: command too long");
	if (log_verbose)
		log_debug("> %s: %s", ss->relay, ss->secret ? "(credentials)" : line);
	(void)stream_write(ss->s, line, (size_t)n);
	(void)stream_write(ss->s, "\r\n", 2);
}

int
smtp_read(struct smtp_session *ss, int timeout, struct smtp_reply *r, struct buf *why)
{
	int rc;

	stream_set_timeout(ss->s, timeout);
	stream_set_deadline(ss->s, timeout);
	if ((rc = stream_flush(ss->s)) == STREAM_OK)
		rc = smtp_reply_read(ss->s, r, why);
	stream_set_deadline(ss->s, 0);
	if (rc != STREAM_OK)
		ss->broken = true;
	else if (r->code == 421)
		ss->broken = true; /* the server is closing the session */
	if (rc == STREAM_OK && log_verbose)
		log_debug("< %s: %s", ss->relay, buf_str(&r->text));
	return rc;
}

int
smtp_command(struct smtp_session *ss, int timeout, struct smtp_reply *r, struct buf *why, const char *fmt, ...)
{
	char line[CMD_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line))
		log_panic("smtp_command: command too long");
	smtp_send(ss, "%s", line);
	explicit_bzero(line, sizeof(line));
	return smtp_read(ss, timeout, r, why);
}

/* ehlo - EHLO, or HELO when EHLO is refused; false with f set */
static bool
ehlo(struct smtp_session *ss, struct smtp_reply *r, struct smtp_fail *f)
{
	int rc;

	rc = smtp_command(ss, smtp_conf.helo_timeout, r, &f->why, "EHLO %s", smtp_conf.helo_name);
	if (rc != STREAM_OK) {
		smtp_io_reason(ss, rc, "performing the EHLO handshake", &f->why);
		fail_code(f, DELIVER_DEFERRED, "4.4.2");
		return false;
	}
	if (r->code / 100 == 2) {
		ss->features = smtp_ehlo_parse(buf_str(&r->lines), &ss->size_max, &ss->auth_mechs);
		return true;
	}
	if (r->code / 100 == 5 && !ss->broken) {
		rc = smtp_command(ss, smtp_conf.helo_timeout, r, &f->why, "HELO %s", smtp_conf.helo_name);
		if (rc != STREAM_OK) {
			smtp_io_reason(ss, rc, "performing the HELO handshake", &f->why);
			fail_code(f, DELIVER_DEFERRED, "4.4.2");
			return false;
		}
		if (r->code / 100 == 2) {
			ss->features = 0;
			ss->size_max = 0;
			ss->auth_mechs = 0;
			return true;
		}
		smtp_said(ss, r, "HELO command", &f->why);
	} else {
		smtp_said(ss, r, "EHLO command", &f->why);
	}
	soft_dsn(r, f->dsn, sizeof(f->dsn));
	f->status = DELIVER_DEFERRED;
	return false;
}

/* starttls - STARTTLS and the handshake when the level asks for it; false with f set */
static bool
starttls(struct smtp_session *ss, const struct smtp_sess_opts *o, struct smtp_reply *r, struct smtp_fail *f,
    bool *tls_failed)
{
	struct tls_client_opts to;
	struct buf err = BUF_INIT;
	const char *how;
	bool literal;
	int rc;

	if (o->tls == SMTP_TLS_NONE || o->no_starttls || smtp_conf.tls_ctx == NULL)
		return true;
	if (!(ss->features & SMTP_FEAT_STARTTLS)) {
		if (o->tls == SMTP_TLS_MAY)
			return true;
		fail_set(f, DELIVER_DEFERRED, "4.7.4", "TLS is required, but was not offered by host %s[%s]", ss->host,
		    ss->addr);
		return false;
	}
	rc = smtp_command(ss, smtp_conf.starttls_timeout, r, &f->why, "STARTTLS");
	if (rc != STREAM_OK) {
		smtp_io_reason(ss, rc, "sending STARTTLS", &f->why);
		fail_code(f, DELIVER_DEFERRED, "4.4.2");
		return false;
	}
	if (r->code != 220) {
		if (o->tls == SMTP_TLS_MAY && !ss->broken) {
			log_info("%s: STARTTLS refused (%s); going on without TLS", ss->relay, buf_str(&r->text));
			return true;
		}
		smtp_said(ss, r, "STARTTLS command", &f->why);
		fail_set(f, DELIVER_DEFERRED, "4.7.4", "TLS is required, but %s", buf_str(&f->why));
		return false;
	}
	literal = strcmp(ss->host, ss->addr) == 0;
	memset(&to, 0, sizeof(to));
	to.sni = literal ? NULL : ss->host;
	to.verify_name = ss->host;
	to.verify = o->tls == SMTP_TLS_VERIFY;
	stream_set_timeout(ss->s, smtp_conf.starttls_timeout);
	stream_set_deadline(ss->s, smtp_conf.starttls_timeout);
	if (stream_pending(ss->s) > 0)
		log_warn("%s: discarding %zu bytes the server sent after its 220 reply to STARTTLS", ss->relay,
		    stream_pending(ss->s));
	rc = tls_client_start(ss->s, smtp_conf.tls_ctx, &to, &ss->trusted, &err);
	stream_set_deadline(ss->s, 0);
	if (rc < 0) {
		ss->broken = true;
		log_info("%s: %s", ss->relay, buf_str(&err));
		fail_set(f, DELIVER_DEFERRED, o->tls == SMTP_TLS_VERIFY ? "4.7.5" : "4.7.0",
		    "Cannot start TLS with %s[%s]: %s", ss->host, ss->addr, buf_str(&err));
		*tls_failed = o->tls == SMTP_TLS_MAY;
		buf_free(&err);
		return false;
	}
	buf_free(&err);
	ss->tls = true;
	how = o->tls == SMTP_TLS_VERIFY ? "Verified" : ss->trusted ? "Trusted" : "Untrusted";
	log_info("%s TLS connection established to %s: %s with cipher %s (%d bits)", how, ss->relay, tls_version(ss->s),
	    tls_cipher(ss->s), tls_cipher_bits(ss->s));
	/* What the server offered in plaintext may have been forged: ask again. */
	ss->features = 0;
	return ehlo(ss, r, f);
}

/* b64 - base64 of len bytes into out (replacing it) */
static void
b64(struct buf *out, const void *p, size_t len)
{
	buf_reset(out);
	buf_reserve(out, 4 * ((len + 2) / 3) + 1);
	out->len = (size_t)EVP_EncodeBlock(out->data, p, (int)len);
	out->data[out->len] = 0;
}

/* auth - SMTP AUTH when the destination has credentials; false with f set */
static bool
auth(struct smtp_session *ss, const struct smtp_sess_opts *o, struct smtp_reply *r, struct smtp_fail *f)
{
	struct buf user = BUF_INIT, pass = BUF_INIT, tok = BUF_INIT, raw = BUF_INIT;
	bool ok = false;
	int rc, found;

	if ((found = smtp_sasl_lookup(o->nexthop, ss->host, &user, &pass)) == 0)
		return true;
	if (found < 0) {
		fail_set(f, DELIVER_DEFERRED, "4.3.0", "SASL credentials lookup for %s failed", o->nexthop);
		goto out;
	}
	if (!(ss->features & SMTP_FEAT_AUTH)) {
		ok = true; /* the server does not ask for it */
		goto out;
	}
	if (smtp_conf.sasl_tls_only && !ss->tls) {
		fail_set(f, DELIVER_DEFERRED, "4.7.0", "not sending credentials to host %s[%s] without TLS", ss->host,
		    ss->addr);
		goto out;
	}
	ss->secret = true;
	if (ss->auth_mechs & SMTP_AUTH_PLAIN) {
		buf_putc(&raw, 0);
		buf_append(&raw, user.data, user.len);
		buf_putc(&raw, 0);
		buf_append(&raw, pass.data, pass.len);
		b64(&tok, raw.data, raw.len);
		rc = smtp_command(ss, smtp_conf.helo_timeout, r, &f->why, "AUTH PLAIN %s", buf_str(&tok));
	} else if (ss->auth_mechs & SMTP_AUTH_LOGIN) {
		rc = smtp_command(ss, smtp_conf.helo_timeout, r, &f->why, "AUTH LOGIN");
		if (rc == STREAM_OK && r->code == 334) {
			b64(&tok, user.data, user.len);
			rc = smtp_command(ss, smtp_conf.helo_timeout, r, &f->why, "%s", buf_str(&tok));
		}
		if (rc == STREAM_OK && r->code == 334) {
			b64(&tok, pass.data, pass.len);
			rc = smtp_command(ss, smtp_conf.helo_timeout, r, &f->why, "%s", buf_str(&tok));
		}
	} else {
		ss->secret = false;
		fail_set(f, DELIVER_DEFERRED, "4.7.0",
		    "host %s[%s] offers no SASL mechanism Postern supports (PLAIN, LOGIN)", ss->host, ss->addr);
		goto out;
	}
	ss->secret = false;
	if (rc != STREAM_OK) {
		smtp_io_reason(ss, rc, "authenticating", &f->why);
		fail_code(f, DELIVER_DEFERRED, "4.4.2");
	} else if (r->code != 235) {
		soft_dsn(r, f->dsn, sizeof(f->dsn));
		f->status = DELIVER_DEFERRED;
		buf_reset(&f->why);
		buf_printf(&f->why, "SASL authentication failed; server %s[%s] said: %s", ss->host, ss->addr,
		    buf_str(&r->text));
		if (r->code == 334)
			ss->broken = true; /* a challenge we do not answer: the dialogue is out of step */
	} else {
		ok = true;
	}
out:
	buf_freezero(&user);
	buf_freezero(&pass);
	buf_freezero(&tok);
	buf_freezero(&raw);
	return ok;
}

struct smtp_session *
smtp_session_open(const struct smtp_target *t, const struct smtp_sess_opts *o, struct smtp_fail *f, bool *tls_failed)
{
	struct smtp_session *ss;
	struct smtp_reply r;
	char addr[64];
	int fd, rc;

	*tls_failed = false;
	f->reached = false;
	strlcpy(f->relay, "none", sizeof(f->relay));
	dns_addr_str(&t->addr, addr, sizeof(addr));
	buf_reset(&f->why);
	if ((fd = tcp_connect(t, addr, &f->why)) < 0) {
		f->status = DELIVER_DEFERRED;
		strlcpy(f->dsn, "4.4.1", sizeof(f->dsn));
		log_info("%s", buf_str(&f->why));
		return NULL;
	}
	ss = xcalloc(1, sizeof(*ss));
	ss->s = stream_new(fd, 0);
	strlcpy(ss->host, t->host, sizeof(ss->host));
	strlcpy(ss->addr, addr, sizeof(ss->addr));
	ss->port = t->port;
	snprintf(ss->relay, sizeof(ss->relay), "%s[%s]:%d", ss->host, ss->addr, ss->port);
	smtp_reply_init(&r);
	stream_set_timeout(ss->s, smtp_conf.helo_timeout);
	stream_set_deadline(ss->s, smtp_conf.helo_timeout);
	rc = smtp_reply_read(ss->s, &r, &f->why);
	stream_set_deadline(ss->s, 0);
	if (rc != STREAM_OK) {
		ss->broken = true;
		smtp_io_reason(ss, rc, "receiving the initial server greeting", &f->why);
		fail_code(f, DELIVER_DEFERRED, "4.4.2");
		goto fail;
	}
	if (r.code != 220) {
		buf_reset(&f->why);
		buf_printf(&f->why, "host %s[%s] refused to talk to me: %s", ss->host, ss->addr, buf_str(&r.text));
		soft_dsn(&r, f->dsn, sizeof(f->dsn));
		f->status = DELIVER_DEFERRED;
		goto fail;
	}
	f->reached = true;
	if (!ehlo(ss, &r, f) || !starttls(ss, o, &r, f, tls_failed) || !auth(ss, o, &r, f))
		goto fail;
	smtp_reply_free(&r);
	return ss;
fail:
	log_info("%s", buf_str(&f->why));
	if (f->reached)
		strlcpy(f->relay, ss->relay, sizeof(f->relay));
	smtp_reply_free(&r);
	smtp_session_close(ss);
	return NULL;
}

bool
smtp_session_rset(struct smtp_session *ss)
{
	struct smtp_reply r;
	struct buf why = BUF_INIT;
	bool ok;

	if (ss->broken)
		return false;
	smtp_reply_init(&r);
	ok = smtp_command(ss, smtp_conf.rset_timeout, &r, &why, "RSET") == STREAM_OK && r.code / 100 == 2;
	if (!ok)
		ss->broken = true;
	smtp_reply_free(&r);
	buf_free(&why);
	return ok;
}

void
smtp_session_close(struct smtp_session *ss)
{
	struct smtp_reply r;
	struct buf why = BUF_INIT;

	if (ss == NULL)
		return;
	if (!ss->broken) {
		smtp_reply_init(&r);
		(void)smtp_command(ss, smtp_conf.quit_timeout, &r, &why, "QUIT");
		smtp_reply_free(&r);
	}
	buf_free(&why);
	stream_free(ss->s);
	free(ss->nexthop);
	free(ss);
}
