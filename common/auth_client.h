/*
 * auth_client - ask the auth service whether a password is right.
 *
 * auth is the only process that reads password tables (auth_passwd_maps);
 * smtpd and pop3d send it the login name, the password and the client
 * address over private/auth, one connection per check:
 *
 *   auth -> client   greeting: protocol=auth version=1
 *   client -> auth   service=smtpd user=NAME password=SECRET client_addr=ADDR
 *   auth -> client   result=ok|fail|tempfail|locked user=CANONICAL reason=TEXT
 *
 * (doc/ipc.md 8.4 is the exact protocol.)
 *
 * The reply to a wrong password comes after auth_failure_delay.  After
 * repeated failures from one client address, or for one user, auth
 * answers "locked" without checking (a temporary error for the client),
 * until auth_lockout_time has passed.  Passwords are wiped from memory on
 * both sides as soon as they have been used.
 */
#ifndef POSTERN_AUTH_CLIENT_H
#define POSTERN_AUTH_CLIENT_H

#include <stdbool.h>
#include <sys/types.h>

#include "buf.h"

#define AUTH_PROTOCOL     "auth"
#define AUTH_VERSION      1
#define AUTH_USER_MAX     256
#define AUTH_PASSWORD_MAX 511
#define AUTH_SERVICE_MAX  32  /* the service attribute ("smtpd") */
#define AUTH_ADDR_MAX     128 /* the client_addr attribute */

/* Attribute names and result values (doc/ipc.md 8.4); reason is in proto.h. */
#define AUTH_ATTR_SERVICE     "service"
#define AUTH_ATTR_USER        "user"
#define AUTH_ATTR_PASSWORD    "password"
#define AUTH_ATTR_CLIENT_ADDR "client_addr"
#define AUTH_ATTR_RESULT      "result"
#define AUTH_RESULT_OK        "ok"
#define AUTH_RESULT_FAIL      "fail"
#define AUTH_RESULT_LOCKED    "locked"
#define AUTH_RESULT_TEMPFAIL  "tempfail"
#define AUTH_ATTR_WANT_TOKEN  "want_token" /* optional in a request: "1" asks for a login token */
#define AUTH_ATTR_TOKEN       "token"      /* in an ok reply to a request that asked for one */

enum auth_result {
	AUTH_OK,       /* the password is right; user holds the canonical login */
	AUTH_FAIL,     /* wrong user or password */
	AUTH_LOCKED,   /* too many failures: try again later */
	AUTH_TEMPFAIL, /* the check could not be made (table, service down) */
};

/*
 * Check user/password for service ("smtpd", "pop3d") on behalf of a
 * client at client_addr.  On AUTH_OK, user_out gets the canonical login
 * (the table key).  reason gets a short text for the log.
 */
enum auth_result auth_check(const char *service, const char *user, const char *password, const char *client_addr,
    struct buf *user_out, struct buf *reason);

/*
 * As auth_check, and on AUTH_OK also a login token in token_out: proof,
 * checkable by whoever can read the token key, that auth accepted this
 * user's password for this service moments ago.  pop3d's login part
 * hands it to the mailbox part (doc/ipc.md 8.6), which believes the
 * token, never the login part.  A reply without a token is AUTH_TEMPFAIL.
 */
enum auth_result auth_login(const char *service, const char *user, const char *password, const char *client_addr,
    struct buf *user_out, struct buf *token_out, struct buf *reason);

/* The result's name on the wire and in logs ("ok", "fail", "locked", "tempfail"). */
const char *auth_result_name(enum auth_result r);

/*
 * Login tokens:  "1:EXPIRES:HEXUSER:HEXMAC", where EXPIRES is a time(2)
 * value, HEXUSER the canonical login in hex and HEXMAC the HMAC-SHA256,
 * keyed with the token key, of
 *     "postern-auth-token" NUL "1" NUL SERVICE NUL USER NUL EXPIRES
 * (none of the parts can hold a NUL, so the message is unambiguous).
 * The key is AUTH_TOKEN_KEY_LEN random bytes in AUTH_TOKEN_KEY_FILE
 * (relative to queue_directory), mode 0600, owned by mail_owner: auth
 * makes it when it is missing; root and mail_owner can read it.
 */
#define AUTH_TOKEN_KEY_FILE "private/auth.key"
#define AUTH_TOKEN_KEY_LEN  32
#define AUTH_TOKEN_LIFETIME 60 /* seconds a token is good for */
#define AUTH_TOKEN_MAX      (2 + 20 + 1 + 2 * AUTH_USER_MAX + 1 + 64)

/* Make a token for user and service, good until expires; 0, or -1 with err (bad arguments). */
int auth_token_make(const unsigned char *key, const char *service, const char *user, long long expires, struct buf *out,
    struct buf *err);
/*
 * Check a token for service at time now: its form, its MAC (compared in
 * constant time), its expiry (and that it does not expire further than
 * AUTH_TOKEN_LIFETIME from now).  0 with the login in user, or -1 with
 * the reason in err.
 */
int auth_token_verify(
    const unsigned char *key, const char *service, const char *token, long long now, struct buf *user, struct buf *err);
/*
 * Read the token key from path into key (AUTH_TOKEN_KEY_LEN bytes).  It
 * must be a regular file of exactly that size, owned by owner, with no
 * permissions for group or others.  With create, a missing file is made
 * first (random bytes; written aside and linked into place, so that
 * processes starting together agree on one key).  0, or -1 with err.
 */
int auth_key_load(const char *path, bool create, uid_t owner, unsigned char *key, struct buf *err);

#endif
