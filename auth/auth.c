/*
 * auth - the password checker (auth(8); doc/ipc.md 8.4 is the protocol).
 *
 * smtpd and pop3d never see a password hash: they hand what the client
 * typed to this daemon over private/auth (master.cf: "auth unix - - n -
 * - auth"), one check per connection, and get ok, fail, locked or
 * tempfail back.  auth is the only reader of auth_passwd_maps, which it
 * opens in pre_init while still privileged (the table may be readable by
 * root only) and then only reads through the descriptors it holds.
 *
 * What it trusts: its configuration and the password tables.  What it
 * does not: the request, whose every value comes from a network client
 * (sizes are capped by the framing, the names checked strictly).  Against
 * guessing it delays every failure by auth_failure_delay, and with anvil
 * it counts failures per client address and per user and refuses to
 * check at all ("locked") once either reaches its limit, until
 * auth_lockout_time has passed since the last counted failure.  Unknown
 * users cost the same crypt(3) work as known ones and count the same, so
 * neither the timing nor the lockout tells which users exist.  Passwords
 * are wiped from memory as soon as they have been checked.
 *
 * On request (want_token) a successful check also returns a login token
 * (auth_client.h), an HMAC with the key in private/auth.key, which auth
 * makes at start when it is missing.  pop3d's mailbox part believes the
 * token rather than the login part that carries it (doc/ipc.md 8.6).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "anvil_client.h"
#include "auth_client.h"
#include "buf.h"
#include "cfg.h"
#include "dict.h"
#include "ipc.h"
#include "log.h"
#include "proto.h"
#include "pwhash.h"
#include "server.h"
#include "str.h"
#include "xalloc.h"

#define AUTH_READ_TIMEOUT 10 /* seconds for the request to arrive (clients send it at once) */

/* The request is small: a password is the largest value. */
static const struct ipc_limits auth_limits = { AUTH_PASSWORD_MAX, 4096, 8 };

static const char *const auth_required[] = {
	AUTH_ATTR_SERVICE,
	AUTH_ATTR_USER,
	AUTH_ATTR_PASSWORD,
	AUTH_ATTR_CLIENT_ADDR,
	NULL,
};
static const char *const auth_optional[] = { AUTH_ATTR_WANT_TOKEN, NULL };

static struct dict_list *passwd_maps;
static char *fake_hash; /* checked against when the user is unknown */
static unsigned char token_key[AUTH_TOKEN_KEY_LEN];
static bool token_key_ok; /* the key file could be read: tokens can be made */

/* One check: the request's values and what became of them. */
struct check {
	const char *service;
	const char *user; /* as sent */
	const char *addr;
	char *password; /* inside the request's store: wiped after use */
	size_t password_len;
	char user_key[AUTH_USER_MAX + 1]; /* folded: the table's key */
	char addr_counter[ANVIL_IDENT_MAX + 1];
	char user_counter[ANVIL_IDENT_MAX + 1];
	struct buf reason; /* for the log */
};

static void
auth_sleep(long long seconds)
{
	struct timespec ts = { (time_t)seconds, 0 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void
wipe_password(struct check *c)
{
	explicit_bzero(c->password, c->password_len);
}

/* value_ok - 1..max bytes, no white space or control characters */
static bool
value_ok(const char *v, size_t max)
{
	size_t n = strnlen(v, max + 1);
	size_t i;

	if (n == 0 || n > max)
		return false;
	for (i = 0; i < n; i++)
		if ((unsigned char)v[i] <= ' ' || v[i] == 0x7f)
			return false;
	return true;
}

/* locked_out - true when anvil counts too many recent failures for the address or the user */
static bool
locked_out(struct check *c)
{
	long long n, limit;

	limit = cfg_int(P_AUTH_CLIENT_FAILURE_LIMIT);
	if (anvil_auth_count(c->addr_counter, &n) == 0 && n >= limit) {
		buf_printf(&c->reason, "%lld recent failures from the client address (limit %lld)", n, limit);
		return true;
	}
	limit = cfg_int(P_AUTH_USER_FAILURE_LIMIT);
	if (anvil_auth_count(c->user_counter, &n) == 0 && n >= limit) {
		buf_printf(&c->reason, "%lld recent failures for the user (limit %lld)", n, limit);
		return true;
	}
	return false;
}

/* decide - check one request; the password is wiped before this returns */
static enum auth_result
decide(struct check *c)
{
	struct buf hash = BUF_INIT;
	enum dict_result dr;
	bool ok;

	if (*c->user == 0 || c->password_len == 0) {
		wipe_password(c);
		buf_strcpy(&c->reason, *c->user == 0 ? "empty user name" : "empty password");
		return AUTH_FAIL;
	}
	if (strlen(c->user) > AUTH_USER_MAX) {
		wipe_password(c);
		buf_printf(&c->reason, "user name longer than %d bytes", AUTH_USER_MAX);
		return AUTH_FAIL;
	}
	if (locked_out(c)) {
		/* No check at all while locked: a right guess must not be recognisable. */
		wipe_password(c);
		return AUTH_LOCKED;
	}
	dr = dict_list_lookup(passwd_maps, c->user_key, &hash);
	if (dr == DICT_RETRY) {
		wipe_password(c);
		buf_printf(&c->reason, "password table lookup failed: %s", dict_list_error(passwd_maps));
		buf_freezero(&hash);
		return AUTH_TEMPFAIL;
	}
	/* Unknown users cost the same crypt(3) work as known ones. */
	ok = pwhash_verify(c->password, dr == DICT_FOUND ? buf_str(&hash) : fake_hash);
	wipe_password(c);
	buf_freezero(&hash);
	if (dr == DICT_NOTFOUND) {
		buf_strcpy(&c->reason, "unknown user");
		return AUTH_FAIL;
	}
	if (!ok) {
		buf_strcpy(&c->reason, "wrong password");
		return AUTH_FAIL;
	}
	return AUTH_OK;
}

static void
reply(struct stream *s, enum auth_result r, const char *user, const char *token, const char *reason)
{
	if (ipc_put_str(s, AUTH_ATTR_RESULT, auth_result_name(r)) != STREAM_OK)
		return;
	if (r == AUTH_OK && ipc_put_str(s, AUTH_ATTR_USER, user) != STREAM_OK)
		return;
	if (r == AUTH_OK && token != NULL && ipc_put_str(s, AUTH_ATTR_TOKEN, token) != STREAM_OK)
		return;
	if (ipc_put_str(s, ATTR_REASON, reason) != STREAM_OK)
		return;
	(void)ipc_put_end(s);
}

/* serve - one request on a connection whose greeting was sent */
static void
serve(struct stream *s, struct ipc_msg *m)
{
	struct buf err = BUF_INIT, token = BUF_INIT;
	const char *want;
	struct check c;
	enum auth_result r;
	int status;

	memset(&c, 0, sizeof(c));
	buf_init(&c.reason, 0);
	status = ipc_get(s, m, &auth_limits);
	/* The raw request, password included, is in the stream's buffer: nothing else is expected. */
	if (s->rbuf != NULL)
		explicit_bzero(s->rbuf, s->rcap);
	stream_discard_input(s);
	if (status != STREAM_OK) {
		if (status != STREAM_EOF)
			log_warn("bad request: %s", ipc_strerror(status));
		goto out;
	}
	if (ipc_msg_check(m, auth_required, auth_optional, IPC_STRICT, &err) < 0) {
		log_warn("bad request: %s", buf_str(&err));
		reply(s, AUTH_TEMPFAIL, NULL, NULL, "protocol error");
		goto out;
	}
	want = ipc_msg_str(m, AUTH_ATTR_WANT_TOKEN);
	c.service = ipc_msg_str(m, AUTH_ATTR_SERVICE);
	c.user = ipc_msg_str(m, AUTH_ATTR_USER);
	c.addr = ipc_msg_str(m, AUTH_ATTR_CLIENT_ADDR);
	/* The value lives in the message's store, which is ours to wipe. */
	c.password = (char *)ipc_msg_str(m, AUTH_ATTR_PASSWORD);
	c.password_len = strlen(c.password);
	if (!value_ok(c.service, AUTH_SERVICE_MAX) || !value_ok(c.addr, AUTH_ADDR_MAX)) {
		wipe_password(&c);
		log_warn("bad request: invalid service name or client address");
		reply(s, AUTH_TEMPFAIL, NULL, NULL, "protocol error");
		goto out;
	}
	if (want != NULL && strcmp(want, "0") != 0 && strcmp(want, "1") != 0) {
		wipe_password(&c);
		log_warn("bad request: %s must be 0 or 1", AUTH_ATTR_WANT_TOKEN);
		reply(s, AUTH_TEMPFAIL, NULL, NULL, "protocol error");
		goto out;
	}
	/* Tables fold their keys: so do the name we answer with and the user's counter. */
	strlcpy(c.user_key, c.user, sizeof(c.user_key));
	str_lower(c.user_key);
	snprintf(c.addr_counter, sizeof(c.addr_counter), "addr:%s", c.addr);
	snprintf(c.user_counter, sizeof(c.user_counter), "user:%s", c.user_key);

	r = decide(&c);
	switch (r) {
	case AUTH_OK:
		/*
		 * Only the user's counter starts over.  The address keeps its count:
		 * otherwise one account of their own would let a guesser reset the
		 * address limit between guesses at other accounts.
		 */
		(void)anvil_auth_reset(c.user_counter);
		if (want != NULL && strcmp(want, "1") == 0) {
			buf_reset(&err);
			if (!token_key_ok) {
				log_warn("login of user=%s client=%s service=%s not completed: no token key (%s)",
				    c.user_key, c.addr, c.service, AUTH_TOKEN_KEY_FILE);
				reply(s, AUTH_TEMPFAIL, NULL, NULL, "no login token key");
				break;
			}
			if (auth_token_make(token_key, c.service, c.user_key,
			        (long long)time(NULL) + AUTH_TOKEN_LIFETIME, &token, &err) < 0) {
				log_warn("login of user=%s client=%s service=%s not completed: %s", c.user_key, c.addr,
				    c.service, buf_str(&err));
				reply(s, AUTH_TEMPFAIL, NULL, NULL, "no login token");
				break;
			}
		}
		log_info("login ok user=%s client=%s service=%s", c.user_key, c.addr, c.service);
		reply(s, r, c.user_key, token.len ? buf_str(&token) : NULL, "");
		break;
	case AUTH_FAIL:
		/* Empty and over-long names are refused before the counters apply. */
		if (*c.user != 0 && c.password_len != 0 && strlen(c.user) <= AUTH_USER_MAX) {
			(void)anvil_auth_fail(c.addr_counter, NULL);
			(void)anvil_auth_fail(c.user_counter, NULL);
		}
		log_warn("authentication failed for user=%.256s client=%s service=%s: %s", c.user, c.addr, c.service,
		    buf_str(&c.reason));
		auth_sleep(cfg_time(P_AUTH_FAILURE_DELAY));
		reply(s, r, NULL, NULL, "authentication failed");
		break;
	case AUTH_LOCKED:
		log_warn("login refused, locked out: user=%s client=%s service=%s: %s", c.user_key, c.addr, c.service,
		    buf_str(&c.reason));
		reply(s, r, NULL, NULL, "too many failed logins; try again later");
		break;
	default:
		log_warn("login not checked: user=%s client=%s service=%s: %s", c.user_key, c.addr, c.service,
		    buf_str(&c.reason));
		reply(s, r, NULL, NULL, "password check temporarily unavailable");
		break;
	}
out:
	if (c.password != NULL)
		wipe_password(&c);
	buf_free(&c.reason);
	buf_freezero(&token);
	buf_free(&err);
}

static void
auth_service(struct stream *s, struct server_ctx *ctx)
{
	struct ipc_msg m;

	(void)ctx;
	/*
	 * A rebuilt table may be unreadable to us now that root is gone: let
	 * the master start a fresh process, which opens it before the drop.
	 * Before the greeting the client just tries again (doc/ipc.md 8.4).
	 */
	if (dict_list_changed(passwd_maps)) {
		log_info("auth_passwd_maps changed: restarting to read it afresh");
		exit(0);
	}
	stream_set_timeout(s, AUTH_READ_TIMEOUT);
	ipc_msg_init(&m);
	if (ipc_send_hello(s, AUTH_PROTOCOL, AUTH_VERSION) == STREAM_OK)
		serve(s, &m);
	/* Whatever is left of the request (a rejected list too) is wiped with it. */
	if (m.store.data != NULL)
		explicit_bzero(m.store.data, m.store.cap);
	ipc_msg_free(&m);
	if (dict_list_changed(passwd_maps)) {
		log_info("auth_passwd_maps changed: restarting to read it afresh");
		stream_free(s);
		exit(0);
	}
}

/* auth_cleanup - close the tables at exit (Berkeley DB's memory would show up as leaked under ASan) */
static void
auth_cleanup(void)
{
	dict_list_close(passwd_maps);
	passwd_maps = NULL;
	free(fake_hash);
	fake_hash = NULL;
	explicit_bzero(token_key, sizeof(token_key));
}

static void
auth_pre_init(struct server_ctx *ctx)
{
	struct buf err = BUF_INIT;
	const char *maps = cfg_str(P_AUTH_PASSWD_MAPS);

	(void)ctx;
	if ((passwd_maps = dict_list_open(maps, 0, &err)) == NULL)
		server_config_error("auth_passwd_maps: %s", buf_str(&err));
	if (*maps == 0)
		log_warn("auth_passwd_maps is empty: every login will fail");
	atexit(auth_cleanup);
	buf_free(&err);
}

static void
auth_post_init(struct server_ctx *ctx)
{
	struct buf err = BUF_INIT, hash = BUF_INIT;
	unsigned char raw[18];
	char secret[sizeof(raw) * 2 + 1];
	size_t i;

	(void)ctx;
	/* A hash of a random password, made like the real ones, for unknown users. */
	arc4random_buf(raw, sizeof(raw));
	for (i = 0; i < sizeof(raw); i++)
		snprintf(secret + 2 * i, 3, "%02x", raw[i]);
	if (pwhash_make(secret, NULL, &hash, &err) < 0)
		log_fatal("cannot make the stand-in password hash: %s", buf_str(&err));
	fake_hash = buf_export(&hash);
	explicit_bzero(raw, sizeof(raw));
	explicit_bzero(secret, sizeof(secret));
	/*
	 * The token key, made here when missing: we are mail_owner now, so the
	 * file is ours (0600) without a chown, and root can read it too.
	 */
	buf_reset(&err);
	if (auth_key_load(AUTH_TOKEN_KEY_FILE, true, geteuid(), token_key, &err) == 0)
		token_key_ok = true;
	else
		log_warn("login tokens unavailable (pop3d logins will fail): %s", buf_str(&err));
	buf_free(&err);
}

int
main(int argc, char **argv)
{
	static const struct server_desc desc = {
		.name = "auth",
		.kind = SERVER_SINGLE,
		.identity = SERVER_ID_QUEUE,
		.chroot_ok = true,
		.pre_init = auth_pre_init,
		.post_init = auth_post_init,
		.service = auth_service,
	};

	server_main(argc, argv, &desc);
}
