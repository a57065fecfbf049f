/*
 * anvil_client - counters shared by every process of a service: how many
 * connections a client address has open now, how many it opened in the
 * last anvil_rate_time_unit, and how many authentication failures a
 * client address or a user had lately (for auth's lockout).
 *
 * anvil is one event-driven process (private/anvil).  A client keeps one
 * connection open for as long as it runs; counts held by a connection
 * are released when it closes, so a crashed smtpd never leaves a client
 * "connected" forever.  Requests and replies are attribute lists:
 *
 *   request=connect ident=SERVICE:ADDR  ->  status=0 count=N rate=N
 *   request=disconnect ident=...        ->  status=0 count=N
 *   request=auth_fail ident=KEY         ->  status=0 count=N
 *   request=auth_count ident=KEY        ->  status=0 count=N
 *   request=auth_reset ident=KEY        ->  status=0
 *
 * A refused request gets status=1 reason=TEXT (doc/ipc.md 8.5 has the
 * details: windows, expiry, limits).
 *
 * When anvil cannot be reached the calls answer -1 and callers carry on
 * without the limit (a warning is logged at most once a minute): a
 * missing counter service must not stop mail.
 */
#ifndef POSTERN_ANVIL_CLIENT_H
#define POSTERN_ANVIL_CLIENT_H

#define ANVIL_SERVICE   "anvil" /* socket private/anvil */
#define ANVIL_PROTOCOL  "anvil"
#define ANVIL_VERSION   1
#define ANVIL_IDENT_MAX 512
#define ANVIL_TIMEOUT   10 /* seconds a client waits for anvil */

/* Attribute names and values (doc/ipc.md 8.5); status and reason are in proto.h. */
#define ANVIL_ATTR_REQUEST   "request"
#define ANVIL_ATTR_IDENT     "ident"
#define ANVIL_ATTR_COUNT     "count"
#define ANVIL_ATTR_RATE      "rate"
#define ANVIL_REQ_CONNECT    "connect"
#define ANVIL_REQ_DISCONNECT "disconnect"
#define ANVIL_REQ_AUTH_FAIL  "auth_fail"
#define ANVIL_REQ_AUTH_COUNT "auth_count"
#define ANVIL_REQ_AUTH_RESET "auth_reset"
#define ANVIL_STAT_OK        0
#define ANVIL_STAT_REFUSED   1

/* A new connection from addr to service: current count and rate after it. */
int anvil_connect(const char *service, const char *addr, long long *count, long long *rate);
/* That connection ended. */
int anvil_disconnect(const char *service, const char *addr);
/* Authentication failure counters (key: "addr:1.2.3.4" or "user:name"). */
int anvil_auth_fail(const char *key, long long *count);
int anvil_auth_count(const char *key, long long *count);
int anvil_auth_reset(const char *key);
/* Close the connection (releasing every count it holds); the next call reconnects. */
void anvil_close(void);

#endif
