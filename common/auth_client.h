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

/* The result's name on the wire and in logs ("ok", "fail", "locked", "tempfail"). */
const char *auth_result_name(enum auth_result r);

#endif
