/*
 * smtpd_auth - SMTP AUTH (RFC 4954) with the PLAIN (RFC 4616) and LOGIN
 * mechanisms.  smtpd never sees a password hash: it decodes the client's
 * response and asks the auth service (common/auth_client.c), which also
 * slows down and locks out guessing.  Every copy of a password in this
 * process is wiped as soon as the check is done, including the command
 * line that carried it.  By default AUTH is offered and accepted only
 * over TLS (smtpd_tls_auth_only).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "auth_client.h"
#include "log.h"
#include "sasl.h"
#include "smtpd.h"
#include "str.h"
#include "xalloc.h"

bool
smtpd_auth_offered(const struct smtpd_session *ss)
{
	return smtpd_cfg.sasl_enable && ss->sasl_user == NULL && (ss->tls || !smtpd_cfg.tls_auth_only);
}

/* challenge - send "334 text", read the client's base64 answer into out; -1 after replying */
static int
challenge(struct smtpd_session *ss, const char *text, struct buf *out)
{
	smtpd_reply(ss, 334, NULL, "%s", text);
	smtpd_flush(ss);
	switch (sasl_read_response(ss->s, out)) {
	case SASL_READ_OK:
		return 0;
	case SASL_READ_CANCEL:
		smtpd_error(ss, 501, "5.7.0", "Authentication aborted");
		return -1;
	case SASL_READ_BAD:
		smtpd_error(ss, 501, "5.5.2", "Cannot decode response");
		return -1;
	case SASL_READ_TOOLONG:
		smtpd_error(ss, 500, "5.5.6", "Authentication exchange line is too long");
		/* FALLTHROUGH */
	case SASL_READ_LOST:
	default:
		ss->quit = true;
		return -1;
	}
}

/* decode_initial - an initial response given with the command ("=" is empty) */
static int
decode_initial(struct smtpd_session *ss, char *initial, struct buf *out)
{
	int r = sasl_b64_decode(initial, out, SASL_LINE_MAX);

	explicit_bzero(initial, strlen(initial));
	if (r < 0) {
		smtpd_error(ss, 501, "5.5.2", "Cannot decode response");
		return -1;
	}
	return 0;
}

/* plain - a PLAIN response: refused with a reply unless well formed */
static int
plain(struct smtpd_session *ss, const struct buf *resp, struct buf *user, struct buf *pass)
{
	const char *why;

	if (sasl_plain(resp, user, pass, &why) < 0) {
		log_warn("%s[%s]: SASL PLAIN authentication failed: %s", buf_str(&ss->name), ss->addr, why);
		smtpd_error(ss, 535, "5.7.8", "Error: authentication failed");
		return -1;
	}
	return 0;
}

void
smtpd_cmd_auth(struct smtpd_session *ss, const char *arg)
{
	struct buf resp = BUF_INIT, user = BUF_INIT, pass = BUF_INIT, canon = BUF_INIT, reason = BUF_INIT;
	char *mech, *initial;
	const char *method;
	enum auth_result ar;

	/* The argument lives in the command line buffer; it is wiped below. */
	mech = (char *)arg;
	initial = mech + strcspn(mech, " ");
	if (*initial)
		*initial++ = 0;
	if (!smtpd_cfg.sasl_enable) {
		smtpd_error(ss, 503, "5.5.1", "Error: authentication not enabled");
		goto out;
	}
	if (!ss->esmtp) {
		smtpd_error(ss, 503, "5.5.1", "Error: send EHLO first");
		goto out;
	}
	if (smtpd_cfg.tls_auth_only && !ss->tls) {
		smtpd_error(ss, 538, "5.7.11", "Encryption required for requested authentication mechanism");
		goto out;
	}
	if (ss->sasl_user) {
		smtpd_error(ss, 503, "5.5.1", "Error: already authenticated");
		goto out;
	}
	if (ss->mail) {
		smtpd_error(ss, 503, "5.5.1", "Error: MAIL transaction in progress");
		goto out;
	}
	if (str_casecmp(mech, "PLAIN") == 0) {
		method = "PLAIN";
		if (*initial ? decode_initial(ss, initial, &resp) < 0 : challenge(ss, "", &resp) < 0)
			goto out;
		if (plain(ss, &resp, &user, &pass) < 0)
			goto out;
	} else if (str_casecmp(mech, "LOGIN") == 0) {
		method = "LOGIN";
		if (*initial ? decode_initial(ss, initial, &user) < 0 : challenge(ss, "VXNlcm5hbWU6", &user) < 0)
			goto out;
		if (challenge(ss, "UGFzc3dvcmQ6", &pass) < 0)
			goto out;
	} else {
		smtpd_error(ss, 504, "5.5.4", "Unsupported authentication mechanism");
		goto out;
	}
	if (user.len == 0 || buf_has_nul(&user) || buf_has_nul(&pass) || user.len > AUTH_USER_MAX ||
	    pass.len > AUTH_PASSWORD_MAX) {
		log_warn("%s[%s]: SASL %s authentication failed: malformed credentials", buf_str(&ss->name), ss->addr,
		    method);
		smtpd_error(ss, 535, "5.7.8", "Error: authentication failed");
		goto out;
	}
	ar = auth_check("smtpd", buf_str(&user), buf_str(&pass), ss->addr, &canon, &reason);
	buf_freezero(&pass);
	switch (ar) {
	case AUTH_OK:
		ss->sasl_user = xstrdup(canon.len ? buf_str(&canon) : buf_str(&user));
		ss->sasl_method = method;
		ss->oks[SMTPD_AUTH]++;
		smtpd_reply(ss, 235, "2.7.0", "Authentication successful");
		break;
	case AUTH_FAIL:
		log_warn("%s[%s]: SASL %s authentication failed: %s", buf_str(&ss->name), ss->addr, method,
		    reason.len ? buf_str(&reason) : "authentication failure");
		smtpd_error(ss, 535, "5.7.8", "Error: authentication failed");
		break;
	case AUTH_LOCKED:
		log_warn(
		    "%s[%s]: SASL %s authentication refused: too many failures", buf_str(&ss->name), ss->addr, method);
		smtpd_error(ss, 454, "4.7.0", "Temporary authentication failure: too many failed attempts, try later");
		break;
	case AUTH_TEMPFAIL:
	default:
		log_warn("%s[%s]: SASL %s authentication not checked: %s", buf_str(&ss->name), ss->addr, method,
		    buf_str(&reason));
		smtpd_error(ss, 454, "4.7.0", "Temporary authentication failure");
		break;
	}
out:
	explicit_bzero(mech, strlen(mech));
	if (*initial)
		explicit_bzero(initial, strlen(initial));
	buf_freezero(&resp);
	buf_freezero(&user);
	buf_freezero(&pass);
	buf_free(&canon);
	buf_free(&reason);
}
