/*
 * auth_client - ask the auth service whether a password is right (see
 * auth_client.h; doc/ipc.md 8.4 is the protocol).
 *
 * Called by smtpd (SMTP AUTH) and pop3d (USER/PASS, AUTH) with what a
 * network client typed.  One connection to private/auth per check.  The
 * password passes through the stream's write buffer, which is wiped as
 * soon as the request is out; the caller wipes its own copy.  The reply
 * comes from auth, which is trusted, but it is still read with small
 * limits and anything unexpected counts as a temporary failure: a broken
 * auth service must never let a login through.
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "auth_client.h"
#include "cfg.h"
#include "ipc.h"
#include "log.h"
#include "proto.h"
#include "stream.h"

/* The seconds auth may take beyond auth_failure_delay (anvil, crypt, a busy queue of clients). */
#define AUTH_CLIENT_SLACK 30

/* Connections tried when auth closes before its greeting. */
#define AUTH_CLIENT_TRIES 3

static const struct ipc_limits auth_reply_limits = { 1024, 4096, 16 };

const char *
auth_result_name(enum auth_result r)
{
	switch (r) {
	case AUTH_OK:
		return AUTH_RESULT_OK;
	case AUTH_FAIL:
		return AUTH_RESULT_FAIL;
	case AUTH_LOCKED:
		return AUTH_RESULT_LOCKED;
	default:
		return AUTH_RESULT_TEMPFAIL;
	}
}

/* auth_delay - the failure delay, for failures decided without asking auth */
static void
auth_delay(void)
{
	struct timespec ts = { (time_t)cfg_time(P_AUTH_FAILURE_DELAY), 0 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* auth_wipe_output - forget the request bytes, password included, that the stream buffered */
static void
auth_wipe_output(struct stream *s)
{
	if (s->wbuf != NULL)
		explicit_bzero(s->wbuf, s->wcap);
}

enum auth_result
auth_check(const char *service, const char *user, const char *password, const char *client_addr, struct buf *user_out,
    struct buf *reason)
{
	struct buf err = BUF_INIT;
	struct ipc_msg reply;
	enum auth_result res = AUTH_TEMPFAIL;
	const char *result, *text, *canon;
	struct stream *s = NULL;
	int timeout, r, attempt;

	buf_reset(reason);
	if (strlen(user) > AUTH_USER_MAX || strlen(password) > AUTH_PASSWORD_MAX) {
		/* Cannot be right; do not make it cheaper to try than a wrong password. */
		auth_delay();
		buf_strcpy(reason, "user name or password too long");
		return AUTH_FAIL;
	}
	if (strlen(service) > AUTH_SERVICE_MAX || strlen(client_addr) > AUTH_ADDR_MAX) {
		buf_strcpy(reason, "auth request: service name or client address too long");
		return AUTH_TEMPFAIL;
	}
	timeout = (int)cfg_time(P_AUTH_FAILURE_DELAY) + AUTH_CLIENT_SLACK;
	ipc_msg_init(&reply);
	/*
	 * An auth process that finds its table rebuilt exits instead of
	 * greeting (doc/ipc.md 8.4); so may one that reached max_use.  Nothing
	 * was sent yet, so trying another process is harmless.
	 */
	for (attempt = 0;; attempt++) {
		if ((s = ipc_connect(SVC_PRIVATE_DIR "/" SVC_AUTH, timeout, &err)) == NULL) {
			buf_printf(reason, "auth service: %s", buf_str(&err));
			goto out;
		}
		stream_set_deadline(s, timeout);
		if ((r = ipc_expect_hello(s, AUTH_PROTOCOL, AUTH_VERSION, NULL)) == STREAM_OK)
			break;
		stream_free(s);
		s = NULL;
		if (r != STREAM_EOF || attempt + 1 >= AUTH_CLIENT_TRIES) {
			buf_printf(reason, "auth service greeting: %s", ipc_strerror(r));
			goto out;
		}
	}
	r = ipc_put_str(s, AUTH_ATTR_SERVICE, service);
	if (r == STREAM_OK)
		r = ipc_put_str(s, AUTH_ATTR_USER, user);
	if (r == STREAM_OK)
		r = ipc_put_str(s, AUTH_ATTR_PASSWORD, password);
	if (r == STREAM_OK)
		r = ipc_put_str(s, AUTH_ATTR_CLIENT_ADDR, client_addr);
	if (r == STREAM_OK)
		r = ipc_put_end(s);
	auth_wipe_output(s);
	if (r != STREAM_OK || (r = ipc_get(s, &reply, &auth_reply_limits)) != STREAM_OK) {
		buf_printf(reason, "auth service: %s", ipc_strerror(r));
		goto out;
	}
	result = ipc_msg_str(&reply, AUTH_ATTR_RESULT);
	text = ipc_msg_str(&reply, ATTR_REASON);
	if (result == NULL) {
		buf_strcpy(reason, "auth service: reply without a result");
	} else if (strcmp(result, AUTH_RESULT_OK) == 0) {
		canon = ipc_msg_str(&reply, AUTH_ATTR_USER);
		if (canon == NULL || *canon == 0 || strlen(canon) > AUTH_USER_MAX) {
			buf_strcpy(reason, "auth service: success without a valid user name");
		} else {
			buf_strcpy(user_out, canon);
			res = AUTH_OK;
		}
	} else if (strcmp(result, AUTH_RESULT_FAIL) == 0) {
		res = AUTH_FAIL;
	} else if (strcmp(result, AUTH_RESULT_LOCKED) == 0) {
		res = AUTH_LOCKED;
	} else if (strcmp(result, AUTH_RESULT_TEMPFAIL) != 0) {
		buf_printf(reason, "auth service: unknown result \"%.32s\"", result);
	}
	if (buf_len(reason) == 0 && text != NULL)
		buf_strcpy(reason, text);
out:
	ipc_msg_free(&reply);
	stream_free(s);
	buf_free(&err);
	return res;
}
