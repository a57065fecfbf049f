/*
 * tls_test - the TLS server module against a real OpenSSL client run in a
 * forked child over a socketpair: echo through the stream after STARTTLS,
 * plaintext injected after STARTTLS thrown away, large transfers in both
 * directions, garbage and silent clients, timeouts and deadlines, old
 * protocol versions refused, and the context loader's errors.  The
 * certificate and keys are made on the fly in a temporary directory.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "buf.h"
#include "stream.h"
#include "tls.h"

#define BIG (1024 * 1024 + 17)

static char dir[64];
static char cert_path[128], key_path[128], key2_path[128], both_path[128], junk_path[128];
static SSL_CTX *server_ctx;

/* Test data: a pattern a shifted or truncated copy cannot match. */
static unsigned char
pattern(size_t i)
{
	return (unsigned char)((i * 7 + (i >> 10)) & 0xff);
}

static void
write_pem_key(const char *path, EVP_PKEY *key)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_true(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL));
	assert_int_equal(fclose(f), 0);
}

static void
write_pem_cert(const char *path, X509 *cert, EVP_PKEY *key)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_true(PEM_write_X509(f, cert));
	if (key != NULL)
		assert_true(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL));
	assert_int_equal(fclose(f), 0);
}

static int
setup(void **state)
{
	struct buf err = BUF_INIT;
	EVP_PKEY *key, *key2;
	X509_NAME *name;
	X509 *cert;
	FILE *f;

	(void)state;
	/* A peer that went away must not kill the test with SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	strcpy(dir, "/tmp/tls_test.XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(cert_path, sizeof(cert_path), "%s/cert.pem", dir);
	snprintf(key_path, sizeof(key_path), "%s/key.pem", dir);
	snprintf(key2_path, sizeof(key2_path), "%s/key2.pem", dir);
	snprintf(both_path, sizeof(both_path), "%s/both.pem", dir);
	snprintf(junk_path, sizeof(junk_path), "%s/junk.pem", dir);

	key = EVP_EC_gen("P-256");
	key2 = EVP_EC_gen("P-256");
	assert_non_null(key);
	assert_non_null(key2);
	cert = X509_new();
	assert_non_null(cert);
	X509_set_version(cert, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
	X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
	X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
	X509_set_pubkey(cert, key);
	name = X509_get_subject_name(cert);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"tls-test.example", -1, -1, 0);
	X509_set_issuer_name(cert, name);
	assert_true(X509_sign(cert, key, EVP_sha256()) > 0);
	write_pem_cert(cert_path, cert, NULL);
	write_pem_key(key_path, key);
	write_pem_key(key2_path, key2);
	write_pem_cert(both_path, cert, key);
	f = fopen(junk_path, "w");
	assert_non_null(f);
	fputs("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n", f);
	assert_int_equal(fclose(f), 0);
	X509_free(cert);
	EVP_PKEY_free(key);
	EVP_PKEY_free(key2);

	server_ctx = tls_server_ctx(cert_path, key_path, &err);
	if (server_ctx == NULL)
		fail_msg("tls_server_ctx: %s", buf_str(&err));
	buf_free(&err);
	return 0;
}

static int
teardown(void **state)
{
	const char *files[] = { cert_path, key_path, key2_path, both_path, junk_path };
	size_t i;

	(void)state;
	SSL_CTX_free(server_ctx);
	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		unlink(files[i]);
	rmdir(dir);
	return 0;
}

/* ---------------------------------------------------------------- the client (child side) */

enum client_mode {
	CL_ECHO,     /* STARTTLS + injected line, 220, handshake, ping / echo ping, expect close_notify */
	CL_BIG,      /* handshake, receive BIG bytes, send them back */
	CL_GARBAGE,  /* an HTTP request instead of a ClientHello */
	CL_SILENT,   /* connect and say nothing */
	CL_HALF,     /* half a TLS record header, then nothing */
	CL_OLD,      /* handshake with at most TLS 1.1: must fail */
	CL_HANGUP,   /* close at once */
	CL_TLS_ONLY, /* handshake, ping, then wait for the close */
};

struct client_args {
	enum client_mode mode;
	int max_version; /* 0: OpenSSL's default */
};

/* child_wait_eof - keep the socket open until the server closes it (bounded) */
static void
child_wait_eof(int fd)
{
	struct pollfd pfd = { fd, POLLIN, 0 };
	char junk[512];
	time_t end = time(NULL) + 15;

	while (time(NULL) < end && poll(&pfd, 1, 1000) >= 0)
		if ((pfd.revents & (POLLIN | POLLHUP)) && read(fd, junk, sizeof(junk)) <= 0)
			return;
}

/* child_line - read one plaintext line byte by byte (nothing past it) */
static int
child_line(int fd, char *out, size_t max)
{
	size_t n = 0;
	char c;

	while (n + 1 < max && read(fd, &c, 1) == 1) {
		out[n++] = c;
		if (c == '\n')
			break;
	}
	out[n] = 0;
	return n > 0 && out[n - 1] == '\n' ? 0 : -1;
}

/* child_ssl_line - read one line under TLS */
static int
child_ssl_line(SSL *ssl, char *out, size_t max)
{
	size_t n = 0;
	char c;

	while (n + 1 < max && SSL_read(ssl, &c, 1) == 1) {
		out[n++] = c;
		if (c == '\n')
			break;
	}
	out[n] = 0;
	return n > 0 && out[n - 1] == '\n' ? 0 : -1;
}

static SSL *
child_connect(int fd, const struct client_args *a, SSL_CTX **cctx)
{
	SSL *ssl;

	*cctx = SSL_CTX_new(TLS_client_method());
	if (*cctx == NULL)
		return NULL;
	SSL_CTX_set_verify(*cctx, SSL_VERIFY_NONE, NULL);
	if (a->mode == CL_OLD) {
		/* Let this client offer what a default client no longer would. */
		SSL_CTX_set_security_level(*cctx, 0);
		SSL_CTX_set_cipher_list(*cctx, "DEFAULT:@SECLEVEL=0");
		SSL_CTX_set_min_proto_version(*cctx, TLS1_VERSION);
	}
	if (a->max_version)
		SSL_CTX_set_max_proto_version(*cctx, a->max_version);
	if ((ssl = SSL_new(*cctx)) == NULL)
		return NULL;
	SSL_set_fd(ssl, fd);
	if (SSL_connect(ssl) != 1) {
		SSL_free(ssl);
		return NULL;
	}
	return ssl;
}

/* client - the child's whole life; the exit status says where it failed (0: as expected) */
static int
client(int fd, const struct client_args *a)
{
	static const char inject[] = "STARTTLS\r\nMAIL FROM:<injected@example.com>\r\n";
	SSL_CTX *cctx = NULL;
	SSL *ssl = NULL;
	char line[256];
	unsigned char *big;
	size_t got;
	int r;

	switch (a->mode) {
	case CL_HANGUP:
		return 0;
	case CL_SILENT:
		child_wait_eof(fd);
		return 0;
	case CL_HALF:
		if (write(fd, "\x16\x03\x01\x02", 4) != 4)
			return 2;
		child_wait_eof(fd);
		return 0;
	case CL_GARBAGE:
		if (write(fd, "GET / HTTP/1.0\r\n\r\n", 18) != 18)
			return 2;
		child_wait_eof(fd);
		return 0;
	case CL_OLD:
		ssl = child_connect(fd, a, &cctx);
		r = ssl == NULL ? 0 : 3;
		break;
	case CL_ECHO:
		/* Both lines in one write: the server buffers the second with the first. */
		if (write(fd, inject, sizeof(inject) - 1) != (ssize_t)sizeof(inject) - 1)
			return 2;
		if (child_line(fd, line, sizeof(line)) < 0 || strcmp(line, "220 go ahead\r\n") != 0)
			return 3;
		/* FALLTHROUGH */
	case CL_TLS_ONLY:
		if ((ssl = child_connect(fd, a, &cctx)) == NULL)
			return 4;
		if (SSL_write(ssl, "ping\r\n", 6) != 6)
			return 5;
		if (child_ssl_line(ssl, line, sizeof(line)) < 0 || strcmp(line, "echo ping\r\n") != 0)
			return 6;
		/* The server ends TLS with close_notify: a clean end of file. */
		r = SSL_read(ssl, line, sizeof(line));
		r = (r == 0 && SSL_get_error(ssl, r) == SSL_ERROR_ZERO_RETURN) ? 0 : 7;
		break;
	case CL_BIG:
		if ((ssl = child_connect(fd, a, &cctx)) == NULL)
			return 4;
		big = malloc(BIG);
		if (big == NULL)
			return 8;
		for (got = 0; got < BIG;) {
			r = SSL_read(ssl, big + got, (int)(BIG - got));
			if (r <= 0)
				return 9;
			got += (size_t)r;
		}
		for (got = 0; got < BIG; got++)
			if (big[got] != pattern(got))
				return 10;
		for (got = 0; got < BIG;) {
			r = SSL_write(ssl, big + got, (int)(BIG - got > 40000 ? 40000 : BIG - got));
			if (r <= 0)
				return 11;
			got += (size_t)r;
		}
		free(big);
		r = SSL_read(ssl, line, sizeof(line));
		r = r == 0 ? 0 : 12;
		break;
	default:
		return 99;
	}
	SSL_free(ssl);
	SSL_CTX_free(cctx);
	return r;
}

/* ---------------------------------------------------------------- the server (test side) */

struct peer {
	pid_t pid;
	struct stream *s;
};

static struct peer
start_client(enum client_mode mode, int max_version, int timeout)
{
	struct client_args a = { mode, max_version };
	struct peer p;
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	p.pid = fork();
	assert_true(p.pid >= 0);
	if (p.pid == 0) {
		close(sv[0]);
		_exit(client(sv[1], &a));
	}
	close(sv[1]);
	p.s = stream_new(sv[0], 0);
	stream_set_timeout(p.s, timeout);
	return p;
}

/* end_client - free the server side, then the child's exit status */
static int
end_client(struct peer *p)
{
	int status;

	stream_free(p->s);
	assert_int_equal(waitpid(p->pid, &status, 0), p->pid);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static double
now_s(void)
{
	return (double)stream_now_ms() / 1000.0;
}

static void
test_starttls_echo(void **state)
{
	static const struct {
		int max_version;
		const char *version;
	} cases[] = {
		{ 0, "TLSv1.3" },
		{ TLS1_3_VERSION, "TLSv1.3" },
		{ TLS1_2_VERSION, "TLSv1.2" },
	};
	struct buf line = BUF_INIT, err = BUF_INIT;
	struct peer p;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		p = start_client(CL_ECHO, cases[i].max_version, 10);
		assert_false(tls_active(p.s));
		assert_int_equal(stream_getline(p.s, &line, 512), STREAM_OK);
		assert_string_equal(buf_str(&line), "STARTTLS\r\n");
		/* The injected command is already in our buffer... */
		assert_true(stream_pending(p.s) > 0);
		assert_int_equal(stream_puts(p.s, "220 go ahead\r\n"), STREAM_OK);
		if (tls_server_start(p.s, server_ctx, &err) != 0)
			fail_msg("case %zu: %s", i, buf_str(&err));
		/* ...and gone after the handshake. */
		assert_true(tls_active(p.s));
		assert_int_equal(stream_getline(p.s, &line, 512), STREAM_OK);
		assert_string_equal(buf_str(&line), "ping\r\n");
		assert_string_equal(tls_version(p.s), cases[i].version);
		assert_non_null(tls_cipher(p.s));
		if (cases[i].max_version == TLS1_2_VERSION)
			assert_memory_equal(tls_cipher(p.s), "ECDHE-", 6);
		assert_true(tls_cipher_bits(p.s) >= 128);
		assert_int_equal(stream_printf(p.s, "echo %s", buf_str(&line)), STREAM_OK);
		assert_int_equal(stream_flush(p.s), STREAM_OK);
		tls_stop(p.s);
		assert_false(tls_active(p.s));
		assert_null(tls_version(p.s));
		assert_int_equal(end_client(&p), 0);
	}
	buf_free(&line);
	buf_free(&err);
}

/* stream_free on a live TLS stream sends close_notify and frees the session (ASan checks the leak). */
static void
test_free_without_stop(void **state)
{
	struct buf line = BUF_INIT, err = BUF_INIT;
	struct peer p;

	(void)state;
	p = start_client(CL_TLS_ONLY, 0, 10);
	assert_int_equal(tls_server_start(p.s, server_ctx, &err), 0);
	assert_int_equal(stream_getline(p.s, &line, 512), STREAM_OK);
	assert_int_equal(stream_printf(p.s, "echo %s", buf_str(&line)), STREAM_OK);
	assert_int_equal(stream_flush(p.s), STREAM_OK);
	/* A second start on the same stream is refused. */
	assert_int_equal(tls_server_start(p.s, server_ctx, &err), -1);
	assert_non_null(strstr(buf_str(&err), "already"));
	assert_true(tls_active(p.s));
	assert_int_equal(end_client(&p), 0);
	buf_free(&line);
	buf_free(&err);
}

static void
test_big_transfer(void **state)
{
	struct buf err = BUF_INIT;
	unsigned char *data;
	struct peer p;
	size_t i;

	(void)state;
	data = malloc(BIG);
	assert_non_null(data);
	for (i = 0; i < BIG; i++)
		data[i] = pattern(i);
	p = start_client(CL_BIG, 0, 10);
	assert_int_equal(tls_server_start(p.s, server_ctx, &err), 0);
	/* Far more than a socketpair holds: the write must wait for the reader. */
	assert_int_equal(stream_write(p.s, data, BIG), STREAM_OK);
	assert_int_equal(stream_flush(p.s), STREAM_OK);
	memset(data, 0, BIG);
	assert_int_equal(stream_read(p.s, data, BIG), (ssize_t)BIG);
	for (i = 0; i < BIG; i++)
		if (data[i] != pattern(i))
			fail_msg("byte %zu differs", i);
	assert_int_equal(end_client(&p), 0);
	free(data);
	buf_free(&err);
}

/* Clients that never complete a handshake fail cleanly and in bounded time. */
static void
test_bad_handshakes(void **state)
{
	static const struct {
		enum client_mode mode;
		int max_version;
		int timeout, deadline;
		const char *reason; /* substring of err */
		int status;         /* stream status afterwards */
		double min_s, max_s;
	} cases[] = {
		{ CL_GARBAGE, 0, 10, 0, "TLS handshake failed", STREAM_ERROR, 0, 5 },
		{ CL_HANGUP, 0, 10, 0, "lost connection", STREAM_EOF, 0, 5 },
		{ CL_SILENT, 0, 1, 0, "timeout", STREAM_TIMEOUT, 0.9, 5 },
		{ CL_HALF, 0, 1, 0, "timeout", STREAM_TIMEOUT, 0.9, 5 },
		/* The deadline ends the wait even though each wait may last 30 s. */
		{ CL_HALF, 0, 30, 1, "timeout", STREAM_TIMEOUT, 0.9, 5 },
		{ CL_OLD, TLS1_1_VERSION, 10, 0, "unsupported protocol", STREAM_ERROR, 0, 5 },
		{ CL_OLD, TLS1_VERSION, 10, 0, "unsupported protocol", STREAM_ERROR, 0, 5 },
	};
	struct buf err = BUF_INIT, line = BUF_INIT;
	struct peer p;
	double t0, dt;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		p = start_client(cases[i].mode, cases[i].max_version, cases[i].timeout);
		if (cases[i].deadline)
			stream_set_deadline(p.s, cases[i].deadline);
		buf_reset(&err);
		t0 = now_s();
		assert_int_equal(tls_server_start(p.s, server_ctx, &err), -1);
		dt = now_s() - t0;
		if (strstr(buf_str(&err), cases[i].reason) == NULL)
			fail_msg("case %zu: \"%s\" lacks \"%s\"", i, buf_str(&err), cases[i].reason);
		if (dt < cases[i].min_s || dt > cases[i].max_s)
			fail_msg("case %zu: took %.2fs", i, dt);
		assert_false(tls_active(p.s));
		/* The failure is sticky: nothing more is read or written in plaintext. */
		assert_int_equal(stream_status(p.s), cases[i].status);
		assert_int_equal(stream_getline(p.s, &line, 100), cases[i].status);
		assert_int_equal(end_client(&p), 0);
	}
	buf_free(&err);
	buf_free(&line);
}

static void
test_plain_stream_info(void **state)
{
	struct stream *s;
	int sv[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	s = stream_new(sv[0], 0);
	assert_false(tls_active(s));
	assert_false(tls_active(NULL));
	assert_null(tls_version(s));
	assert_null(tls_cipher(s));
	assert_int_equal(tls_cipher_bits(s), 0);
	tls_stop(s); /* harmless without TLS */
	stream_free(s);
	close(sv[1]);
}

static void
test_ctx_errors(void **state)
{
	static const struct {
		const char *cert, *key;
		const char *reason; /* NULL: must succeed */
	} cases[] = {
		{ cert_path, key_path, NULL }, { both_path, NULL, NULL }, /* key in the certificate file */
		{ both_path, "", NULL }, { "", key_path, "no certificate" }, { NULL, NULL, "no certificate" },
		{ "/nonexistent/cert.pem", key_path, "certificate chain" },
		{ junk_path, key_path, "certificate chain" },
		{ key_path, key_path, "certificate chain" }, /* a key is not a certificate */
		{ cert_path, "/nonexistent/key.pem", "private key" }, { cert_path, junk_path, "private key" },
		{ cert_path, cert_path, "private key" }, /* no key in a bare certificate */
		{ cert_path, key2_path, "mismatch" },    /* another key: OpenSSL says "key values mismatch" */
	};
	struct buf err = BUF_INIT;
	SSL_CTX *ctx;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		buf_reset(&err);
		ctx = tls_server_ctx(cases[i].cert, cases[i].key, &err);
		if (cases[i].reason == NULL) {
			if (ctx == NULL)
				fail_msg("case %zu: %s", i, buf_str(&err));
			assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
			assert_true(SSL_CTX_get_options(ctx) & SSL_OP_NO_COMPRESSION);
			assert_true(SSL_CTX_get_options(ctx) & SSL_OP_NO_RENEGOTIATION);
			SSL_CTX_free(ctx);
		} else {
			assert_null(ctx);
			if (strstr(buf_str(&err), cases[i].reason) == NULL)
				fail_msg("case %zu: \"%s\" lacks \"%s\"", i, buf_str(&err), cases[i].reason);
		}
		/* Nothing left behind in OpenSSL's error queue to confuse the next caller. */
		assert_int_equal(ERR_peek_error(), 0);
	}
	buf_free(&err);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ctx_errors),
		cmocka_unit_test(test_plain_stream_info),
		cmocka_unit_test(test_starttls_echo),
		cmocka_unit_test(test_free_without_stop),
		cmocka_unit_test(test_big_transfer),
		cmocka_unit_test(test_bad_handshakes),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
