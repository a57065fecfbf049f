/*
 * pop3d_handoff - the login part's side of doc/ipc.md 8.6, and the
 * request format both sides share.
 *
 * After auth accepted a password and returned a login token, the login
 * part connects to private/pop3d-mailbox and sends the token, the client
 * address and whatever the client has already sent after its login
 * command (pipelined commands must not be lost).  A plaintext client's
 * socket itself goes along (SCM_RIGHTS) and the login part is done with
 * it; a TLS client's session cannot be passed, so the login part keeps
 * it and relays bytes between the client and the mailbox part
 * (pop3d_proxy.c), as long as the session lasts.
 *
 * The mailbox part believes nothing in the request but the token; the
 * rest is for its log and for the session's first input bytes.  The
 * reply is read with small limits; anything unexpected is a temporary
 * failure for the client.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pop3d.h"
#include "proto.h"
#include "tls.h"
#include "xalloc.h"

static const char *const request_required[] = {
	POP3D_ATTR_TOKEN,
	POP3D_ATTR_CLIENT_ADDR,
	POP3D_ATTR_TLS,
	POP3D_ATTR_MODE,
	NULL,
};
static const char *const request_optional[] = { POP3D_ATTR_METHOD, POP3D_ATTR_INPUT, NULL };

static const struct ipc_limits reply_limits = { 512, 2048, 8 };

void
pop3d_hex_encode(const unsigned char *p, size_t n, struct buf *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	buf_reset(out);
	buf_reserve(out, 2 * n + 1);
	for (i = 0; i < n; i++) {
		buf_putc(out, digits[p[i] >> 4]);
		buf_putc(out, digits[p[i] & 15]);
	}
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int
pop3d_hex_decode(const char *in, struct buf *out, size_t max)
{
	size_t n = strlen(in), i;
	int hi, lo;

	buf_reset(out);
	if (n % 2 != 0 || n / 2 > max)
		return -1;
	for (i = 0; i < n; i += 2) {
		if ((hi = hexval((unsigned char)in[i])) < 0 || (lo = hexval((unsigned char)in[i + 1])) < 0)
			return -1;
		buf_putc(out, hi << 4 | lo);
	}
	return 0;
}

int
pop3d_request_parse(const struct ipc_msg *m, struct pop3d_request *r, struct buf *err)
{
	const char *mode, *tls, *input;

	memset(r, 0, sizeof(*r));
	if (ipc_msg_check(m, request_required, request_optional, IPC_STRICT, err) < 0)
		return -1;
	r->token = ipc_msg_str(m, POP3D_ATTR_TOKEN);
	r->client_addr = ipc_msg_str(m, POP3D_ATTR_CLIENT_ADDR);
	r->method = ipc_msg_str(m, POP3D_ATTR_METHOD);
	if (r->method == NULL)
		r->method = "unknown";
	mode = ipc_msg_str(m, POP3D_ATTR_MODE);
	tls = ipc_msg_str(m, POP3D_ATTR_TLS);
	input = ipc_msg_str(m, POP3D_ATTR_INPUT);
	if (strcmp(mode, POP3D_MODE_FD) == 0) {
		r->fd_mode = true;
	} else if (strcmp(mode, POP3D_MODE_PROXY) != 0) {
		buf_printf(err, "%s must be %s or %s", POP3D_ATTR_MODE, POP3D_MODE_FD, POP3D_MODE_PROXY);
		return -1;
	}
	if (strcmp(tls, "0") != 0 && strcmp(tls, "1") != 0) {
		buf_printf(err, "%s must be 0 or 1", POP3D_ATTR_TLS);
		return -1;
	}
	r->tls = tls[0] == '1';
	if (*r->client_addr == 0 || strlen(r->client_addr) > 64 || strpbrk(r->client_addr, " \t\r\n") != NULL) {
		buf_printf(err, "invalid %s", POP3D_ATTR_CLIENT_ADDR);
		return -1;
	}
	if (strlen(r->method) > 16 || strpbrk(r->method, " \t\r\n") != NULL) {
		buf_printf(err, "invalid %s", POP3D_ATTR_METHOD);
		return -1;
	}
	if (input != NULL && pop3d_hex_decode(input, &r->input, POP3D_INPUT_MAX) < 0) {
		buf_printf(err, "invalid %s (hex, at most %d bytes)", POP3D_ATTR_INPUT, POP3D_INPUT_MAX);
		return -1;
	}
	return 0;
}

void
pop3d_request_free(struct pop3d_request *r)
{
	buf_freezero(&r->input);
}

void
pop3d_stream_preload(struct stream *s, const unsigned char *p, size_t n)
{
	/*
	 * The stream allocates its buffer on first use; a buffer given here is
	 * used (and freed) the same way.  It must be empty: nothing was read.
	 */
	if (n == 0)
		return;
	if (s->rpos != s->rend)
		log_panic("pop3d_stream_preload: the stream has input already");
	free(s->rbuf);
	s->rcap = n < 16384 ? 16384 : n;
	s->rbuf = xmalloc(s->rcap);
	memcpy(s->rbuf, p, n);
	s->rpos = 0;
	s->rend = n;
}

/* take_input - the bytes the client sent after the login command, which the stream holds already */
static size_t
take_input(struct stream *s, struct buf *hex)
{
	size_t n = s->rend - s->rpos;

	buf_reset(hex);
	if (n == 0)
		return 0;
	if (n > POP3D_INPUT_MAX)
		n = POP3D_INPUT_MAX; /* cannot happen: the stream's buffer is smaller */
	pop3d_hex_encode(s->rbuf + s->rpos, n, hex);
	s->rpos += n;
	return n;
}

int
pop3d_handoff(struct pop3d_login *ls, const char *token, const char *method)
{
	struct buf err = BUF_INIT, hex = BUF_INIT;
	struct ipc_msg reply;
	struct stream *m;
	long long status = -1;
	const char *reason;
	bool fd_mode = !ls->tls;
	size_t taken = 0;
	int r;

	ipc_msg_init(&reply);
	if ((m = ipc_connect(SVC_PRIVATE_DIR "/" SVC_POP3D_MAILBOX, POP3D_HANDOFF_TIMEOUT, &err)) == NULL) {
		log_warn("%s: cannot reach the mailbox part: %s", ls->addr, buf_str(&err));
		goto temp;
	}
	stream_set_timeout(m, POP3D_HANDOFF_TIMEOUT);
	if ((r = ipc_expect_hello(m, POP3D_MAILBOX_PROTOCOL, POP3D_MAILBOX_VERSION, NULL)) != STREAM_OK) {
		log_warn("%s: mailbox part greeting: %s", ls->addr, ipc_strerror(r));
		goto temp;
	}
	taken = take_input(ls->s, &hex);
	r = ipc_put_str(m, POP3D_ATTR_TOKEN, token);
	if (r == STREAM_OK)
		r = ipc_put_str(m, POP3D_ATTR_CLIENT_ADDR, ls->addr);
	if (r == STREAM_OK)
		r = ipc_put_int(m, POP3D_ATTR_TLS, ls->tls);
	if (r == STREAM_OK)
		r = ipc_put_str(m, POP3D_ATTR_METHOD, method);
	if (r == STREAM_OK)
		r = ipc_put_str(m, POP3D_ATTR_MODE, fd_mode ? POP3D_MODE_FD : POP3D_MODE_PROXY);
	if (r == STREAM_OK && hex.len > 0)
		r = ipc_put_str(m, POP3D_ATTR_INPUT, buf_str(&hex));
	if (r == STREAM_OK)
		r = ipc_put_end(m);
	if (r == STREAM_OK && fd_mode)
		r = stream_send_fd(m, ls->s->fd);
	if (r == STREAM_OK)
		r = ipc_get(m, &reply, &reply_limits);
	if (r != STREAM_OK) {
		log_warn("%s: hand-off to the mailbox part: %s", ls->addr, ipc_strerror(r));
		goto temp;
	}
	reason = ipc_msg_str(&reply, ATTR_REASON);
	if (ipc_msg_int(&reply, ATTR_STATUS, 0, 2, &status) < 0) {
		log_warn("%s: hand-off to the mailbox part: a reply without a valid status", ls->addr);
		goto temp;
	}
	if (status != POP3D_STATUS_OK) {
		log_warn("%s: the mailbox part refused the session: %s", ls->addr, reason ? reason : "no reason given");
		if (status == POP3D_STATUS_PERM)
			pop3_err(ls->s, "[SYS/PERM] No mailbox can be opened for this login");
		else
			pop3_err(ls->s, "[SYS/TEMP] Mailbox temporarily unavailable, try again later");
		goto out;
	}
	if (fd_mode) {
		/* The mailbox part answers on the socket from now on; not another byte from us. */
		ls->s->wlen = 0;
	} else {
		(void)stream_flush(ls->s);
		pop3d_proxy(ls->s, m, pop3d_cfg.timeout);
	}
	ipc_msg_free(&reply);
	stream_free(m);
	buf_free(&err);
	buf_freezero(&hex);
	return 1;
temp:
	pop3_err(ls->s, "[SYS/TEMP] Mailbox temporarily unavailable, try again later");
out:
	/* Still ours: the client's next commands are read here after all. */
	ls->s->rpos -= taken;
	ipc_msg_free(&reply);
	stream_free(m);
	buf_free(&err);
	buf_freezero(&hex);
	return 0;
}
