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
 *
 * Also the login tokens (auth_client.h): auth makes them, pop3d's mailbox
 * part checks them.  A token is only as secret as the key file; the key
 * is read with its owner and mode checked, and callers wipe it after use.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth_client.h"
#include "cfg.h"
#include "ipc.h"
#include "log.h"
#include "proto.h"
#include "str.h"
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
	return auth_login(service, user, password, client_addr, user_out, NULL, reason);
}

enum auth_result
auth_login(const char *service, const char *user, const char *password, const char *client_addr, struct buf *user_out,
    struct buf *token_out, struct buf *reason)
{
	struct buf err = BUF_INIT;
	struct ipc_msg reply;
	enum auth_result res = AUTH_TEMPFAIL;
	const char *result, *text, *canon, *token;
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
	if (r == STREAM_OK && token_out != NULL)
		r = ipc_put_str(s, AUTH_ATTR_WANT_TOKEN, "1");
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
		token = ipc_msg_str(&reply, AUTH_ATTR_TOKEN);
		if (canon == NULL || *canon == 0 || strlen(canon) > AUTH_USER_MAX) {
			buf_strcpy(reason, "auth service: success without a valid user name");
		} else if (token_out != NULL && (token == NULL || *token == 0 || strlen(token) > AUTH_TOKEN_MAX)) {
			buf_strcpy(reason, "auth service: success without a login token");
		} else {
			if (token_out != NULL)
				buf_strcpy(token_out, token);
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

#define TOKEN_VERSION "1"
#define TOKEN_LABEL   "postern-auth-token"
#define TOKEN_MAC_LEN 32

/* token_mac - HMAC-SHA256 of the token's fields (auth_client.h gives the message) */
static int
token_mac(const unsigned char *key, const char *service, const char *user, const char *expires,
    unsigned char mac[TOKEN_MAC_LEN])
{
	struct buf msg = BUF_INIT;
	unsigned int len = 0;
	unsigned char *r;

	buf_append(&msg, TOKEN_LABEL, sizeof(TOKEN_LABEL));
	buf_append(&msg, TOKEN_VERSION, sizeof(TOKEN_VERSION));
	buf_append(&msg, service, strlen(service) + 1);
	buf_append(&msg, user, strlen(user) + 1);
	buf_puts(&msg, expires);
	r = HMAC(EVP_sha256(), key, AUTH_TOKEN_KEY_LEN, msg.data, msg.len, mac, &len);
	buf_freezero(&msg);
	return r != NULL && len == TOKEN_MAC_LEN ? 0 : -1;
}

static void
hex_append(struct buf *out, const unsigned char *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		buf_putc(out, digits[p[i] >> 4]);
		buf_putc(out, digits[p[i] & 15]);
	}
}

static int
hex_value(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* hex_decode - exactly n hex digits (lower case) into out; -1 on anything else */
static int
hex_decode(const char *p, size_t n, struct buf *out)
{
	size_t i;
	int hi, lo;

	buf_reset(out);
	if (n % 2 != 0)
		return -1;
	for (i = 0; i < n; i += 2) {
		if ((hi = hex_value((unsigned char)p[i])) < 0 || (lo = hex_value((unsigned char)p[i + 1])) < 0)
			return -1;
		buf_putc(out, hi << 4 | lo);
	}
	return 0;
}

int
auth_token_make(const unsigned char *key, const char *service, const char *user, long long expires, struct buf *out,
    struct buf *err)
{
	unsigned char mac[TOKEN_MAC_LEN];
	char when[24];
	size_t ulen = strlen(user);

	buf_reset(out);
	if (*service == 0 || strlen(service) > AUTH_SERVICE_MAX || ulen == 0 || ulen > AUTH_USER_MAX || expires < 0) {
		buf_strcpy(err, "login token: invalid service, user or expiry");
		return -1;
	}
	snprintf(when, sizeof(when), "%lld", expires);
	if (token_mac(key, service, user, when, mac) < 0) {
		buf_strcpy(err, "login token: HMAC failed");
		return -1;
	}
	buf_printf(out, "%s:%s:", TOKEN_VERSION, when);
	hex_append(out, (const unsigned char *)user, ulen);
	buf_putc(out, ':');
	hex_append(out, mac, sizeof(mac));
	explicit_bzero(mac, sizeof(mac));
	return 0;
}

int
auth_token_verify(
    const unsigned char *key, const char *service, const char *token, long long now, struct buf *user, struct buf *err)
{
	struct buf macbuf = BUF_INIT;
	unsigned char mac[TOKEN_MAC_LEN];
	const char *f[4], *p;
	size_t len[4], i;
	char when[24];
	long long expires;
	int r = -1;

	buf_reset(user);
	if (strnlen(token, AUTH_TOKEN_MAX + 1) > AUTH_TOKEN_MAX) {
		buf_strcpy(err, "login token too long");
		return -1;
	}
	/* Four fields separated by ':'; none may be empty. */
	for (i = 0, p = token; i < 4; i++) {
		f[i] = p;
		len[i] = strcspn(p, ":");
		if (len[i] == 0 || (i < 3 && p[len[i]] != ':') || (i == 3 && p[len[i]] != 0)) {
			buf_strcpy(err, "malformed login token");
			return -1;
		}
		p += len[i] + 1;
	}
	if (len[0] != strlen(TOKEN_VERSION) || memcmp(f[0], TOKEN_VERSION, len[0]) != 0) {
		buf_strcpy(err, "login token of an unknown version");
		return -1;
	}
	if (len[1] >= sizeof(when) || f[1][0] == '0' || strspn(f[1], "0123456789") != len[1]) {
		buf_strcpy(err, "malformed expiry in login token");
		return -1;
	}
	memcpy(when, f[1], len[1]);
	when[len[1]] = 0;
	if (str_to_ll(when, 1, 1LL << 62, &expires, NULL) < 0) {
		buf_strcpy(err, "malformed expiry in login token");
		return -1;
	}
	if (hex_decode(f[2], len[2], user) < 0 || user->len > AUTH_USER_MAX || buf_has_nul(user)) {
		buf_strcpy(err, "malformed user in login token");
		goto out;
	}
	if (hex_decode(f[3], len[3], &macbuf) < 0 || macbuf.len != TOKEN_MAC_LEN) {
		buf_strcpy(err, "malformed MAC in login token");
		goto out;
	}
	if (token_mac(key, service, buf_str(user), when, mac) < 0) {
		buf_strcpy(err, "login token: HMAC failed");
		goto out;
	}
	/* The MAC first, so that nothing about a forged token depends on its other fields. */
	if (CRYPTO_memcmp(mac, macbuf.data, TOKEN_MAC_LEN) != 0) {
		buf_strcpy(err, "login token does not verify (forged, another service, or another key)");
		goto out;
	}
	if (expires < now) {
		buf_printf(err, "login token expired %llds ago", now - expires);
		goto out;
	}
	if (expires > now + AUTH_TOKEN_LIFETIME + 5) {
		buf_strcpy(err, "login token expires too far in the future");
		goto out;
	}
	r = 0;
out:
	if (r < 0)
		buf_reset(user);
	explicit_bzero(mac, sizeof(mac));
	buf_free(&macbuf);
	return r;
}

/* key_create - random bytes into a new file beside path, then linked to path (EEXIST is fine) */
static int
key_create(const char *path, struct buf *err)
{
	unsigned char key[AUTH_TOKEN_KEY_LEN];
	struct buf tmp = BUF_INIT;
	int fd, r = -1;

	buf_printf(&tmp, "%s.%ld", path, (long)getpid());
	(void)unlink(buf_str(&tmp));
	if ((fd = open(buf_str(&tmp), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0) {
		buf_printf(err, "create %s: %s", buf_str(&tmp), strerror(errno));
		goto out;
	}
	arc4random_buf(key, sizeof(key));
	if (write(fd, key, sizeof(key)) != (ssize_t)sizeof(key) || fsync(fd) < 0) {
		buf_printf(err, "write %s: %s", buf_str(&tmp), strerror(errno));
		close(fd);
		goto out_unlink;
	}
	close(fd);
	if (link(buf_str(&tmp), path) < 0 && errno != EEXIST) {
		buf_printf(err, "link %s to %s: %s", buf_str(&tmp), path, strerror(errno));
		goto out_unlink;
	}
	r = 0;
out_unlink:
	(void)unlink(buf_str(&tmp));
out:
	explicit_bzero(key, sizeof(key));
	buf_free(&tmp);
	return r;
}

int
auth_key_load(const char *path, bool create, uid_t owner, unsigned char *key, struct buf *err)
{
	struct stat st;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT && create) {
		if (key_create(path, err) < 0)
			return -1;
		fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	}
	if (fd < 0) {
		buf_printf(err, "open %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		buf_printf(err, "fstat %s: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode) || st.st_size != AUTH_TOKEN_KEY_LEN) {
		buf_printf(err, "%s: not a regular file of %d bytes", path, AUTH_TOKEN_KEY_LEN);
		goto fail;
	}
	if (st.st_uid != owner || (st.st_mode & 077) != 0) {
		buf_printf(err, "%s: must be owned by uid %ld with mode 0600 (it is uid %ld, mode %04o)", path,
		    (long)owner, (long)st.st_uid, (unsigned)(st.st_mode & 07777));
		goto fail;
	}
	n = pread(fd, key, AUTH_TOKEN_KEY_LEN, 0);
	if (n != AUTH_TOKEN_KEY_LEN) {
		buf_printf(err, "read %s: %s", path, n < 0 ? strerror(errno) : "short read");
		explicit_bzero(key, AUTH_TOKEN_KEY_LEN);
		goto fail;
	}
	close(fd);
	return 0;
fail:
	close(fd);
	return -1;
}
