/*
 * tls - TLS under a stream, with OpenSSL 3 (see tls.h).
 *
 * smtpd and pop3d make one server context in pre_init and call
 * tls_server_start() on a client's stream after STARTTLS/STLS, or at once
 * in wrapper mode.  The peer is a hostile network client: the handshake
 * is bounded by the stream's timeout and deadline, every OpenSSL error
 * becomes a reason in err (or an I/O error on the stream), and plaintext
 * that arrived before the handshake is thrown away so that it can never
 * be read as if it had come under TLS (STARTTLS command injection).
 *
 * Choices: TLS 1.2 and 1.3 only; TLS 1.2 with ECDHE and AEAD ciphers only,
 * TLS 1.3 with OpenSSL's default suites; no compression, no
 * renegotiation; the server's cipher order wins.  No session resumption
 * at all (no tickets, no session cache): every smtpd is a separate
 * process with its own keys, so a ticket issued by one would be refused
 * by the next anyway, and mail sessions are long enough that a full
 * handshake costs little.  A peer that closes the TCP connection without
 * close_notify is read as end of file: SMTP and POP3 frame their own
 * data, so a truncation cannot go unnoticed.
 *
 * The smtp client uses the client half: a context with the CA file, and
 * tls_client_start() after the server said 220 to STARTTLS.  There the
 * server is the hostile peer: its plaintext after the 220 is dropped,
 * and "verify" makes OpenSSL fail the handshake on a chain or name that
 * does not check out.  Other levels still compute the result, so the log
 * can say whether a connection was trusted.
 *
 * OpenSSL writes to the socket with write(2): callers must ignore
 * SIGPIPE (the server skeleton does).
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "tls.h"

/* TLS 1.2 only; TLS 1.3 suites are OpenSSL's defaults. */
#define TLS_CIPHERS_12 "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL"

/* tls_seterr - "what: OpenSSL's reasons" into err; empties OpenSSL's error queue */
static void
tls_seterr(struct buf *err, const char *what)
{
	char text[256];
	unsigned long e;
	int n = 0;

	if (err == NULL) {
		ERR_clear_error();
		return;
	}
	buf_reset(err);
	buf_puts(err, what);
	while ((e = ERR_get_error()) != 0) {
		/* The first few reasons say it all; a long chain only repeats. */
		if (n++ < 3) {
			ERR_error_string_n(e, text, sizeof(text));
			buf_printf(err, "%s%s", n == 1 ? ": " : "; ", text);
		}
	}
}

SSL_CTX *
tls_server_ctx(const char *cert_file, const char *key_file, struct buf *err)
{
	SSL_CTX *ctx;

	ERR_clear_error();
	if (cert_file == NULL || *cert_file == 0) {
		buf_strcpy(err, "no certificate file configured");
		return NULL;
	}
	if (key_file == NULL || *key_file == 0)
		key_file = cert_file;
	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		tls_seterr(err, "cannot make a TLS context");
		return NULL;
	}
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) {
		tls_seterr(err, "cannot set the minimum TLS version");
		goto fail;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
	                             SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	/* TLS 1.3 would still send stateful tickets: none at all. */
	(void)SSL_CTX_set_num_tickets(ctx, 0);
	/*
	 * The stream retries a write with the same bytes, but a large write
	 * may go out straight from the caller's memory: allow both.
	 */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (!SSL_CTX_set_cipher_list(ctx, TLS_CIPHERS_12)) {
		tls_seterr(err, "cannot set the cipher list");
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
		tls_seterr(err, "cannot load the certificate chain");
		buf_printf(err, " (file %s)", cert_file);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
		tls_seterr(err, "cannot load the private key");
		buf_printf(err, " (file %s)", key_file);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		tls_seterr(err, "the private key does not match the certificate");
		buf_printf(err, " (files %s, %s)", cert_file, key_file);
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

/*
 * tls_fail - turn the result r of an SSL_read/SSL_write into the stream's
 * conventions: -1 with errno EAGAIN and *want, 0 for end of file (reads),
 * or -1 with an errno that the stream reports as EOF or an I/O error.
 */
static ssize_t
tls_fail(struct stream *s, int r, bool reading, short *want)
{
	SSL *ssl = s->ctx;
	int saved = errno;
	char text[256];

	switch (SSL_get_error(ssl, r)) {
	case SSL_ERROR_WANT_READ:
		*want = POLLIN;
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_WANT_WRITE:
		*want = POLLOUT;
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_ZERO_RETURN:
		/* close_notify from the peer (or a TCP close: SSL_OP_IGNORE_UNEXPECTED_EOF). */
		if (reading)
			return 0;
		errno = EPIPE;
		return -1;
	case SSL_ERROR_SYSCALL:
		/* After a fatal error no close_notify may be sent (SSL_shutdown(3)). */
		SSL_set_quiet_shutdown(ssl, 1);
		ERR_clear_error();
		errno = (saved == ECONNRESET || saved == EPIPE) ? saved : EIO;
		return -1;
	default:
		SSL_set_quiet_shutdown(ssl, 1);
		ERR_error_string_n(ERR_peek_error(), text, sizeof(text));
		log_debug("TLS %s error: %s", reading ? "read" : "write", text);
		ERR_clear_error();
		errno = EIO;
		return -1;
	}
}

static ssize_t
tls_read(struct stream *s, void *p, size_t n, short *want)
{
	int r;

	ERR_clear_error();
	r = SSL_read(s->ctx, p, n > INT_MAX ? INT_MAX : (int)n);
	return r > 0 ? r : tls_fail(s, r, true, want);
}

static ssize_t
tls_write(struct stream *s, const void *p, size_t n, short *want)
{
	int r;

	ERR_clear_error();
	r = SSL_write(s->ctx, p, n > INT_MAX ? INT_MAX : (int)n);
	return r > 0 ? r : tls_fail(s, r, false, want);
}

static size_t
tls_pending(struct stream *s)
{
	int n = SSL_pending(s->ctx);

	return n > 0 ? (size_t)n : 0;
}

/* tls_close - stream_free's hook: a best-effort close_notify, then free */
static void
tls_close(struct stream *s)
{
	SSL *ssl = s->ctx;

	if (ssl == NULL)
		return;
	ERR_clear_error();
	(void)SSL_shutdown(ssl);
	ERR_clear_error();
	SSL_free(ssl);
	s->ctx = NULL;
}

static const struct stream_ops tls_ops = { tls_read, tls_write, tls_pending, tls_close };

/*
 * handshake - SSL_accept or SSL_connect under the stream's timeout and
 * deadline; on success the TLS transport is slotted under the stream.
 * On failure ssl is freed, s->status says what happened, err says why.
 */
static int
handshake(struct stream *s, SSL *ssl, bool client, struct buf *err)
{
	int r, w, e;
	long vr;
	short want;

	for (;;) {
		ERR_clear_error();
		if ((r = client ? SSL_connect(ssl) : SSL_accept(ssl)) == 1)
			break;
		e = SSL_get_error(ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			want = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
			if ((w = stream_wait(s, want)) == STREAM_OK)
				continue;
			buf_printf(err, "TLS handshake: %s", w == STREAM_TIMEOUT ? "timeout" : "poll failed");
			s->status = w;
		} else if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && r == 0 && ERR_peek_error() == 0)) {
			buf_strcpy(err, "TLS handshake: lost connection");
			s->status = STREAM_EOF;
		} else if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
			buf_printf(err, "TLS handshake: %s", strerror(errno));
			s->status = errno == ECONNRESET || errno == EPIPE ? STREAM_EOF : STREAM_ERROR;
		} else if (client && (vr = SSL_get_verify_result(ssl)) != X509_V_OK) {
			ERR_clear_error();
			buf_reset(err);
			buf_printf(err, "TLS handshake failed: server certificate not verified: %s",
			    X509_verify_cert_error_string(vr));
			s->status = STREAM_ERROR;
		} else {
			tls_seterr(err, "TLS handshake failed");
			s->status = STREAM_ERROR;
		}
		/* No close_notify into a failed handshake. */
		ERR_clear_error();
		SSL_free(ssl);
		return -1;
	}
	stream_set_ops(s, &tls_ops, ssl);
	return 0;
}

/*
 * tls_new - the SSL object for a STARTTLS on s: what is buffered for
 * writing goes out in plaintext first (the reply that invited the
 * handshake), and whatever was read but not yet used is discarded, since
 * it came before TLS and could be an injection (CVE-2011-0411 and kin).
 */
static SSL *
tls_new(struct stream *s, SSL_CTX *ctx, struct buf *err)
{
	SSL *ssl;

	if (tls_active(s)) {
		buf_strcpy(err, "TLS is already active");
		return NULL;
	}
	if (stream_flush(s) != STREAM_OK) {
		buf_printf(err, "before the TLS handshake: %s", stream_strerror(stream_status(s)));
		return NULL;
	}
	stream_discard_input(s);
	ERR_clear_error();
	if ((ssl = SSL_new(ctx)) == NULL || SSL_set_fd(ssl, s->fd) != 1) {
		tls_seterr(err, "cannot start TLS");
		SSL_free(ssl);
		return NULL;
	}
	return ssl;
}

int
tls_server_start(struct stream *s, SSL_CTX *ctx, struct buf *err)
{
	SSL *ssl;

	/* Whatever the client sent after STARTTLS was not protected: tls_new drops it. */
	if ((ssl = tls_new(s, ctx, err)) == NULL)
		return -1;
	return handshake(s, ssl, false, err);
}

SSL_CTX *
tls_client_ctx(const char *ca_file, struct buf *err)
{
	SSL_CTX *ctx;

	ERR_clear_error();
	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		tls_seterr(err, "cannot make a TLS context");
		return NULL;
	}
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) {
		tls_seterr(err, "cannot set the minimum TLS version");
		goto fail;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (ca_file != NULL && *ca_file) {
		if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
			tls_seterr(err, "cannot load the CA file");
			buf_printf(err, " (file %s)", ca_file);
			goto fail;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		/* Not fatal: certificates just will not verify. */
		ERR_clear_error();
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

int
tls_client_start(struct stream *s, SSL_CTX *ctx, const struct tls_client_opts *o, bool *trusted, struct buf *err)
{
	X509_VERIFY_PARAM *vp;
	unsigned char ip[16];
	SSL *ssl;
	bool literal;

	*trusted = false;
	/* Anything after the server's 220 came before TLS (an injection?): tls_new drops it. */
	if ((ssl = tls_new(s, ctx, err)) == NULL)
		return -1;
	if (o->sni != NULL && *o->sni && SSL_set_tlsext_host_name(ssl, o->sni) != 1) {
		tls_seterr(err, "cannot set the server name");
		SSL_free(ssl);
		return -1;
	}
	if (o->verify_name != NULL && *o->verify_name) {
		literal = inet_pton(AF_INET, o->verify_name, ip) == 1 || inet_pton(AF_INET6, o->verify_name, ip) == 1;
		vp = SSL_get0_param(ssl);
		X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if ((literal ? X509_VERIFY_PARAM_set1_ip_asc(vp, o->verify_name)
		             : X509_VERIFY_PARAM_set1_host(vp, o->verify_name, 0)) != 1) {
			tls_seterr(err, "cannot set the name to verify");
			SSL_free(ssl);
			return -1;
		}
	}
	/* Without "verify" the result is still computed, for the log: trusted or not. */
	SSL_set_verify(ssl, o->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
	if (handshake(s, ssl, true, err) < 0)
		return -1;
	{
		X509 *peer = SSL_get1_peer_certificate(ssl);

		*trusted = peer != NULL && SSL_get_verify_result(ssl) == X509_V_OK;
		X509_free(peer);
	}
	return 0;
}

void
tls_peer_cn(const struct stream *s, struct buf *out)
{
	X509 *peer;
	char cn[256];
	int n;

	buf_reset(out);
	if (!tls_active(s) || (peer = SSL_get1_peer_certificate(s->ctx)) == NULL)
		return;
	n = X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof(cn));
	X509_free(peer);
	if (n <= 0)
		return;
	for (int i = 0; i < n && cn[i]; i++)
		buf_putc(out, (unsigned char)cn[i] < 0x20 || (unsigned char)cn[i] >= 0x7f ? '?' : cn[i]);
}

void
tls_stop(struct stream *s)
{
	if (!tls_active(s))
		return;
	/* What was written under TLS leaves under TLS. */
	(void)stream_flush(s);
	tls_close(s);
	stream_set_ops(s, NULL, NULL);
}

bool
tls_active(const struct stream *s)
{
	return s != NULL && s->ops == &tls_ops && s->ctx != NULL;
}

const char *
tls_version(const struct stream *s)
{
	return tls_active(s) ? SSL_get_version(s->ctx) : NULL;
}

const char *
tls_cipher(const struct stream *s)
{
	const SSL_CIPHER *c;

	if (!tls_active(s) || (c = SSL_get_current_cipher(s->ctx)) == NULL)
		return NULL;
	return SSL_CIPHER_get_name(c);
}

int
tls_cipher_bits(const struct stream *s)
{
	const SSL_CIPHER *c;

	if (!tls_active(s) || (c = SSL_get_current_cipher(s->ctx)) == NULL)
		return 0;
	return SSL_CIPHER_get_bits(c, NULL);
}
