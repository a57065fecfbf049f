/*
 * anvil_client - the client side of the anvil counter service (see
 * anvil_client.h; doc/ipc.md 8.5 is the protocol).
 *
 * Used by smtpd (connection counts and rates) and auth (failure
 * counters).  Each process keeps one connection to private/anvil for its
 * whole life, opened on first use: anvil ties the connection counts to
 * it, so they are released when the process exits or crashes.  A call
 * sends one request and waits at most ANVIL_TIMEOUT for the reply; a
 * connection that fails is dropped and the request tried once more on a
 * fresh one (anvil may have been restarted).  Replies are anvil's, read
 * leniently and with small limits; anvil is trusted for its numbers only.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "anvil_client.h"
#include "ipc.h"
#include "log.h"
#include "proto.h"
#include "stream.h"

#define ANVIL_WARN_INTERVAL_MS 60000

static const struct ipc_limits anvil_reply_limits = { 256, 4096, 16 };

static struct stream *anvil_stream;
static pid_t anvil_pid;            /* the process that opened anvil_stream */
static int64_t anvil_last_warning; /* stream_now_ms() of the last warning, 0 = never */

/* anvil_warn - log that anvil cannot be used, at most once a minute */
static void
anvil_warn(const char *request, const char *why)
{
	int64_t now = stream_now_ms();

	if (anvil_last_warning != 0 && now - anvil_last_warning < ANVIL_WARN_INTERVAL_MS)
		return;
	anvil_last_warning = now;
	log_warn("anvil %s: %s; carrying on without connection and login limits", request, why);
}

void
anvil_close(void)
{
	stream_free(anvil_stream);
	anvil_stream = NULL;
}

/* anvil_open - connect and check the greeting; 0 or -1 with why */
static int
anvil_open(struct buf *why)
{
	int r;

	anvil_stream = ipc_connect(SVC_PRIVATE_DIR "/" ANVIL_SERVICE, ANVIL_TIMEOUT, why);
	if (anvil_stream == NULL)
		return -1;
	anvil_pid = getpid();
	if ((r = ipc_expect_hello(anvil_stream, ANVIL_PROTOCOL, ANVIL_VERSION, NULL)) != STREAM_OK) {
		buf_printf(why, "greeting: %s", ipc_strerror(r));
		anvil_close();
		return -1;
	}
	return 0;
}

/* anvil_exchange - one request and its reply on the open connection */
static int
anvil_exchange(const char *request, const char *ident, struct ipc_msg *reply, struct buf *why)
{
	int r;

	if ((r = ipc_put_str(anvil_stream, ANVIL_ATTR_REQUEST, request)) != STREAM_OK ||
	    (r = ipc_put_str(anvil_stream, ANVIL_ATTR_IDENT, ident)) != STREAM_OK ||
	    (r = ipc_put_end(anvil_stream)) != STREAM_OK ||
	    (r = ipc_get(anvil_stream, reply, &anvil_reply_limits)) != STREAM_OK) {
		buf_printf(why, "%s", ipc_strerror(r));
		return -1;
	}
	return 0;
}

/*
 * anvil_request - send request for ident; the reply's count and rate (when
 * asked for and present).  0 on success, -1 when anvil cannot be used.
 */
static int
anvil_request(const char *request, const char *ident, long long *count, long long *rate)
{
	struct buf why = BUF_INIT;
	struct ipc_msg reply;
	long long status;
	int attempt, rc = -1;

	if (strlen(ident) > ANVIL_IDENT_MAX) {
		log_warn("anvil %s: identifier longer than %d bytes: %.64s...", request, ANVIL_IDENT_MAX, ident);
		return -1;
	}
	ipc_msg_init(&reply);
	/*
	 * A child forked after the connection was made must not speak on its
	 * parent's connection: closing our copy leaves the parent's open.
	 */
	if (anvil_stream != NULL && anvil_pid != getpid())
		anvil_close();
	for (attempt = 0; attempt < 2; attempt++) {
		buf_reset(&why);
		/* A fresh connection that fails is not worth a second try. */
		if (anvil_stream == NULL) {
			attempt++;
			if (anvil_open(&why) < 0)
				break;
		}
		if (anvil_exchange(request, ident, &reply, &why) == 0)
			break;
		anvil_close();
	}
	if (anvil_stream == NULL) {
		anvil_warn(request, buf_len(&why) ? buf_str(&why) : "no connection");
		goto out;
	}
	if (ipc_msg_int(&reply, ATTR_STATUS, 0, 1000, &status) < 0) {
		anvil_warn(request, "reply without a valid status");
		anvil_close();
		goto out;
	}
	if (status != ANVIL_STAT_OK) {
		const char *reason = ipc_msg_str(&reply, ATTR_REASON);

		anvil_warn(request, reason ? reason : "refused");
		goto out;
	}
	if ((count && ipc_msg_int(&reply, ANVIL_ATTR_COUNT, 0, INT64_MAX, count) < 0) ||
	    (rate && ipc_msg_int(&reply, ANVIL_ATTR_RATE, 0, INT64_MAX, rate) < 0)) {
		anvil_warn(request, "reply without a valid count");
		anvil_close();
		goto out;
	}
	rc = 0;
out:
	ipc_msg_free(&reply);
	buf_free(&why);
	return rc;
}

/* anvil_conn_ident - "SERVICE:ADDR" into out; -1 when it does not fit */
static int
anvil_conn_ident(char *out, size_t size, const char *service, const char *addr)
{
	int n = snprintf(out, size, "%s:%s", service, addr);

	if (n < 0 || (size_t)n >= size) {
		log_warn("anvil: identifier for %.32s:%.64s is longer than %d bytes", service, addr, ANVIL_IDENT_MAX);
		return -1;
	}
	return 0;
}

int
anvil_connect(const char *service, const char *addr, long long *count, long long *rate)
{
	char ident[ANVIL_IDENT_MAX + 1];
	long long c, r;

	if (anvil_conn_ident(ident, sizeof(ident), service, addr) < 0)
		return -1;
	if (anvil_request(ANVIL_REQ_CONNECT, ident, &c, &r) < 0)
		return -1;
	if (count)
		*count = c;
	if (rate)
		*rate = r;
	return 0;
}

int
anvil_disconnect(const char *service, const char *addr)
{
	char ident[ANVIL_IDENT_MAX + 1];

	if (anvil_conn_ident(ident, sizeof(ident), service, addr) < 0)
		return -1;
	return anvil_request(ANVIL_REQ_DISCONNECT, ident, NULL, NULL);
}

int
anvil_auth_fail(const char *key, long long *count)
{
	long long c;

	if (anvil_request(ANVIL_REQ_AUTH_FAIL, key, &c, NULL) < 0)
		return -1;
	if (count)
		*count = c;
	return 0;
}

int
anvil_auth_count(const char *key, long long *count)
{
	long long c;

	if (anvil_request(ANVIL_REQ_AUTH_COUNT, key, &c, NULL) < 0)
		return -1;
	if (count)
		*count = c;
	return 0;
}

int
anvil_auth_reset(const char *key)
{
	return anvil_request(ANVIL_REQ_AUTH_RESET, key, NULL, NULL);
}
