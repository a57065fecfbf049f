/*
 * smtp_test - the smtp client's pure parts and the TLS client: reply
 * lines and replies (hostile ones included), enhanced status codes,
 * EHLO keywords, next hops, the content writer (CRLF, dot-stuffing,
 * long lines, chunk boundaries), the 8-bit MIME downgrade, DNS answer
 * parsing (MX, null MX, A/AAAA, malformed packets) and MX ordering, and
 * tls_client_start against a forked server (verification, name check,
 * STARTTLS response injection).
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "buf.h"
#include "dns.h"
#include "smtp.h"
#include "stream.h"
#include "tls.h"

/* ---------------------------------------------------------------- replies */

static void
t_reply_line(void **state)
{
	static const struct {
		const char *line;
		int rc, code;
		bool last;
		size_t off;
	} cases[] = {
		{ "250 ok", 0, 250, true, 4 },
		{ "250-PIPELINING", 0, 250, false, 4 },
		{ "220", 0, 220, true, 3 },
		{ "554 ", 0, 554, true, 4 },
		{ "199 no", -1, 0, false, 0 },
		{ "600 no", -1, 0, false, 0 },
		{ "25", -1, 0, false, 0 },
		{ "", -1, 0, false, 0 },
		{ "2a0 x", -1, 0, false, 0 },
		{ "250x", -1, 0, false, 0 },
		{ "250_ok", -1, 0, false, 0 },
		{ " 250 ok", -1, 0, false, 0 },
	};
	size_t i, off;
	int code;
	bool last;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		code = 0;
		last = false;
		off = 0;
		assert_int_equal(
		    smtp_reply_parse_line(cases[i].line, strlen(cases[i].line), &code, &last, &off), cases[i].rc);
		if (cases[i].rc == 0) {
			assert_int_equal(code, cases[i].code);
			assert_int_equal(last, cases[i].last);
			assert_int_equal(off, cases[i].off);
		}
	}
}

static void
t_dsn_prefix(void **state)
{
	(void)state;
	assert_int_equal(smtp_dsn_prefix("5.1.1 no such user", 5), 5);
	assert_int_equal(smtp_dsn_prefix("2.0.0", 2), 5);
	assert_int_equal(smtp_dsn_prefix("4.7.123 x", 4), 7);
	assert_int_equal(smtp_dsn_prefix("5.1.1 x", 4), 0); /* class must agree */
	assert_int_equal(smtp_dsn_prefix("5.1.1x", 5), 0);  /* must end there */
	assert_int_equal(smtp_dsn_prefix("5.1234.1 x", 5), 0);
	assert_int_equal(smtp_dsn_prefix("5..1 x", 5), 0);
	assert_int_equal(smtp_dsn_prefix("", 5), 0);
	assert_int_equal(smtp_dsn_prefix("Ok", 2), 0);
}

/* feed - a stream whose peer wrote data and closed (or not) */
static struct stream *
feed(const void *data, size_t len, bool close_it, int *other)
{
	int sv[2];
	struct stream *s;
	size_t off = 0;
	ssize_t n;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	while (off < len) {
		n = write(sv[1], (const char *)data + off, len - off);
		assert_true(n > 0);
		off += (size_t)n;
	}
	if (close_it) {
		close(sv[1]);
		*other = -1;
	} else {
		*other = sv[1];
	}
	s = stream_new(sv[0], 0);
	stream_set_timeout(s, 1);
	return s;
}

static void
t_reply_read(void **state)
{
	static const struct {
		const char *data;
		size_t len; /* 0: strlen */
		int rc;
		int code;
		const char *dsn, *text, *why;
	} cases[] = {
		{ "250 2.1.0 Ok\r\n", 0, STREAM_OK, 250, "2.1.0", "250 2.1.0 Ok", NULL },
		{ "250-mx.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n", 0, STREAM_OK, 250, "2.0.0",
		    "250 mx.example PIPELINING 8BITMIME", NULL },
		{ "550 5.1.1 <a@b>: no\r\n", 0, STREAM_OK, 550, "5.1.1", "550 5.1.1 <a@b>: no", NULL },
		{ "450 5.1.1 wrong class\r\n", 0, STREAM_OK, 450, "4.0.0", NULL, NULL },
		{ "250\r\n", 0, STREAM_OK, 250, "2.0.0", "250", NULL },
		{ "250 ok\n", 0, STREAM_OK, 250, "2.0.0", "250 ok", NULL },                 /* bare LF is tolerated */
		{ "550 bad\0user\r\n", 14, STREAM_OK, 550, "5.0.0", "550 bad user", NULL }, /* NUL becomes a blank */
		{ "550 a\rb\x01"
		  "c\r\n",
		    0, STREAM_OK, 550, "5.0.0", "550 a b c", NULL },
		{ "550 caf\xc3\xa9\r\n", 0, STREAM_OK, 550, "5.0.0", "550 caf??", NULL },
		{ "250-first\r\n251 second\r\n", 0, STREAM_TOOLONG, 0, NULL, NULL, "different codes" },
		{ "hello\r\n", 0, STREAM_TOOLONG, 0, NULL, NULL, "malformed reply" },
		{ "250-no final line\r\n", 0, STREAM_EOF, 0, NULL, NULL, NULL },
		{ "250 cut", 0, STREAM_EOF, 0, NULL, NULL, NULL },
		{ "", 0, STREAM_EOF, 0, NULL, NULL, NULL },
	};
	struct smtp_reply r;
	struct buf why = BUF_INIT;
	struct stream *s;
	size_t i, len;
	int other;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		len = cases[i].len ? cases[i].len : strlen(cases[i].data);
		s = feed(cases[i].data, len, true, &other);
		smtp_reply_init(&r);
		buf_reset(&why);
		assert_int_equal(smtp_reply_read(s, &r, &why), cases[i].rc);
		if (cases[i].rc == STREAM_OK) {
			assert_int_equal(r.code, cases[i].code);
			assert_string_equal(r.dsn, cases[i].dsn);
			if (cases[i].text)
				assert_string_equal(buf_str(&r.text), cases[i].text);
		}
		if (cases[i].why)
			assert_non_null(strstr(buf_str(&why), cases[i].why));
		smtp_reply_free(&r);
		stream_free(s);
	}
	buf_free(&why);
}

static void
t_reply_hostile(void **state)
{
	struct smtp_reply r;
	struct buf why = BUF_INIT, in = BUF_INIT;
	struct stream *s;
	int other, i;

	(void)state;
	/* Too many lines. */
	for (i = 0; i < SMTP_REPLY_LINES_MAX + 10; i++)
		buf_puts(&in, "250-x\r\n");
	buf_puts(&in, "250 end\r\n");
	s = feed(in.data, in.len, true, &other);
	smtp_reply_init(&r);
	assert_int_equal(smtp_reply_read(s, &r, &why), STREAM_TOOLONG);
	assert_non_null(strstr(buf_str(&why), "more than"));
	stream_free(s);

	/* A long line is cut, and the text stays bounded. */
	buf_reset(&in);
	buf_puts(&in, "550 ");
	for (i = 0; i < 10000; i++)
		buf_putc(&in, 'x');
	buf_puts(&in, "\r\n");
	s = feed(in.data, in.len, true, &other);
	assert_int_equal(smtp_reply_read(s, &r, &why), STREAM_OK);
	assert_int_equal(r.code, 550);
	assert_true(r.text.len <= SMTP_REPLY_TEXT_MAX);
	stream_free(s);

	/* A line longer than the skip limit is a protocol error. */
	buf_reset(&in);
	buf_puts(&in, "550 ");
	for (i = 0; i < 2 * SMTP_REPLY_SKIP_MAX; i++)
		buf_putc(&in, 'y');
	buf_puts(&in, "\r\n");
	s = feed(in.data, in.len, true, &other);
	buf_reset(&why);
	assert_int_equal(smtp_reply_read(s, &r, &why), STREAM_TOOLONG);
	assert_non_null(strstr(buf_str(&why), "too long"));
	stream_free(s);

	/* No last line and no end of file: the deadline ends the wait. */
	s = feed("250-waiting\r\n", 13, false, &other);
	stream_set_deadline(s, 1);
	assert_int_equal(smtp_reply_read(s, &r, &why), STREAM_TIMEOUT);
	stream_free(s);
	close(other);

	smtp_reply_free(&r);
	buf_free(&why);
	buf_free(&in);
}

static void
t_ehlo(void **state)
{
	long long size;
	unsigned mechs, f;

	(void)state;
	f = smtp_ehlo_parse("mx.example greets you\nPIPELINING\nSIZE 10240000\n8bitmime\nSTARTTLS\nAUTH PLAIN LOGIN "
	                    "CRAM-MD5\nDSN\nSMTPUTF8\nENHANCEDSTATUSCODES\n",
	    &size, &mechs);
	assert_true(f & SMTP_FEAT_ESMTP);
	assert_true(f & SMTP_FEAT_PIPELINING);
	assert_true(f & SMTP_FEAT_SIZE);
	assert_true(f & SMTP_FEAT_8BITMIME);
	assert_true(f & SMTP_FEAT_STARTTLS);
	assert_true(f & SMTP_FEAT_AUTH);
	assert_true(f & SMTP_FEAT_DSN);
	assert_true(f & SMTP_FEAT_SMTPUTF8);
	assert_int_equal(size, 10240000);
	assert_int_equal(mechs, SMTP_AUTH_PLAIN | SMTP_AUTH_LOGIN);

	/* The greeting line is not a keyword; look-alikes are not keywords; junk sizes are ignored. */
	f = smtp_ehlo_parse("PIPELINING is my name\nPIPELININGX\nSIZE junk\nAUTH=LOGIN\nSTARTTLSX\n", &size, &mechs);
	assert_false(f & SMTP_FEAT_PIPELINING);
	assert_false(f & SMTP_FEAT_STARTTLS);
	assert_true(f & SMTP_FEAT_SIZE);
	assert_int_equal(size, 0);
	assert_int_equal(mechs, SMTP_AUTH_LOGIN);
	f = smtp_ehlo_parse("x\nSIZE 99999999999999999999999\n", &size, &mechs);
	assert_int_equal(size, 0);
	f = smtp_ehlo_parse("", &size, &mechs);
	assert_int_equal(f, SMTP_FEAT_ESMTP);
}

/* ---------------------------------------------------------------- next hops */

static void
t_nexthop(void **state)
{
	static const struct {
		const char *in;
		int rc;
		const char *host;
		int port;
		bool mx, literal;
	} cases[] = {
		{ "example.com", 0, "example.com", 25, true, false },
		{ "Example.COM.", 0, "example.com", 25, true, false },
		{ "example.com:2525", 0, "example.com", 2525, true, false },
		{ "[mx.example.com]", 0, "mx.example.com", 25, false, false },
		{ "[mx.example.com]:587", 0, "mx.example.com", 587, false, false },
		{ "[relay.example]:submission", 0, "relay.example", 587, false, false },
		{ "[192.0.2.1]", 0, "192.0.2.1", 25, false, true },
		{ "[192.0.2.1]:26", 0, "192.0.2.1", 26, false, true },
		{ "[ipv6:2001:db8::1]:25", 0, "2001:db8::1", 25, false, true },
		{ "[::1]:2525", 0, "::1", 2525, false, true },
		{ "192.0.2.7", 0, "192.0.2.7", 25, false, true },
		{ "", -1, NULL, 0, false, false },
		{ "[mx.example.com", -1, NULL, 0, false, false },
		{ "[mx]x", -1, NULL, 0, false, false },
		{ "example.com:0", -1, NULL, 0, false, false },
		{ "example.com:65536", -1, NULL, 0, false, false },
		{ "example.com:25x", -1, NULL, 0, false, false },
		{ "2001:db8::1", -1, NULL, 0, false, false },
		{ "exa mple.com", -1, NULL, 0, false, false },
		{ "a..b", -1, NULL, 0, false, false },
		{ ".example", -1, NULL, 0, false, false },
		{ "ex$ample.com", -1, NULL, 0, false, false },
		{ "[]", -1, NULL, 0, false, false },
	};
	struct smtp_nexthop nh;
	struct buf err = BUF_INIT;
	char longname[400];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		buf_reset(&err);
		assert_int_equal(smtp_nexthop_parse(cases[i].in, &nh, &err), cases[i].rc);
		if (cases[i].rc == 0) {
			assert_string_equal(nh.host, cases[i].host);
			assert_int_equal(nh.port, cases[i].port);
			assert_int_equal(nh.mx, cases[i].mx);
			assert_int_equal(nh.literal, cases[i].literal);
		} else {
			assert_true(err.len > 0);
		}
	}
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	assert_int_equal(smtp_nexthop_parse(longname, &nh, &err), -1);
	buf_free(&err);
}

static void
t_tls_level(void **state)
{
	enum smtp_tls_level l;

	(void)state;
	assert_int_equal(smtp_tls_level_parse("none", &l), 0);
	assert_int_equal(l, SMTP_TLS_NONE);
	assert_int_equal(smtp_tls_level_parse("may", &l), 0);
	assert_int_equal(l, SMTP_TLS_MAY);
	assert_int_equal(smtp_tls_level_parse("encrypt", &l), 0);
	assert_int_equal(l, SMTP_TLS_ENCRYPT);
	assert_int_equal(smtp_tls_level_parse("secure", &l), 0);
	assert_int_equal(l, SMTP_TLS_VERIFY);
	assert_int_equal(smtp_tls_level_parse("MAY", &l), -1);
	assert_int_equal(smtp_tls_level_parse("", &l), -1);
	assert_int_equal(smtp_tls_level_parse("dane", &l), -1);
}

/* ---------------------------------------------------------------- content */

/* wire - the writer's output for in, fed whole or one byte at a time */
static void
wire(const char *in, size_t len, size_t limit, bool bytewise, struct buf *out)
{
	struct smtp_wstate w;
	size_t i;

	buf_reset(out);
	smtp_content_init(&w, limit);
	if (bytewise)
		for (i = 0; i < len; i++)
			smtp_content_put(&w, (const unsigned char *)in + i, 1, out);
	else
		smtp_content_put(&w, (const unsigned char *)in, len, out);
	smtp_content_end(&w, out);
}

static void
t_content(void **state)
{
	static const struct {
		const char *in, *out;
		size_t limit;
	} cases[] = {
		{ "Subject: x\n\nhello\n", "Subject: x\r\n\r\nhello\r\n.\r\n", 998 },
		{ "", ".\r\n", 998 },
		{ "no newline", "no newline\r\n.\r\n", 998 },
		{ ".\n..\n.x\nx.\n", "..\r\n...\r\n..x\r\nx.\r\n.\r\n", 998 },
		/* stray CR: before LF it is dropped, elsewhere it ends a line */
		{ "a\r\nb\n", "a\r\nb\r\n.\r\n", 998 },
		{ "a\rb\n", "a\r\nb\r\n.\r\n", 998 },
		{ "a\r.\r\n", "a\r\n..\r\n.\r\n", 998 },
		{ "\n.\r", "\r\n..\r\n.\r\n", 998 },
		{ "x\r", "x\r\n.\r\n", 998 },
		{ "a\r\r\nb", "a\r\n\r\nb\r\n.\r\n", 998 },
		/* the smuggling shapes end up as plain data lines */
		{ "x\n.\rMAIL FROM:<evil>\n", "x\r\n..\r\nMAIL FROM:<evil>\r\n.\r\n", 998 },
		/* long lines: CRLF SPACE after limit bytes */
		{ "abcdefghij\n", "abcd\r\n efg\r\n hij\r\n.\r\n", 4 },
		{ ".bcdefg\n", "..bc\r\n def\r\n g\r\n.\r\n", 4 },
		{ "abcd\n", "abcd\r\n.\r\n", 4 },
	};
	struct buf out = BUF_INIT, out2 = BUF_INIT;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		wire(cases[i].in, strlen(cases[i].in), cases[i].limit, false, &out);
		wire(cases[i].in, strlen(cases[i].in), cases[i].limit, true, &out2);
		if (out.len != strlen(cases[i].out) || memcmp(out.data, cases[i].out, out.len) != 0)
			fail_msg("case %zu: got \"%s\"", i, buf_str(&out));
		assert_int_equal(out2.len, out.len);
		assert_memory_equal(out2.data, out.data, out.len);
	}
	/* NUL bytes are data. */
	wire("a\0b\n", 4, 998, false, &out);
	assert_int_equal(out.len, 8);
	assert_memory_equal(out.data, "a\0b\r\n.\r\n", 8);
	buf_free(&out);
	buf_free(&out2);
}

/* check_wire - every CR is followed by LF, every LF follows a CR, and no line exceeds limit */
static void
check_wire(const struct buf *b, size_t limit)
{
	size_t i, col = 0;

	for (i = 0; i < b->len; i++) {
		if (b->data[i] == '\r') {
			assert_true(i + 1 < b->len && b->data[i + 1] == '\n');
			continue;
		}
		if (b->data[i] == '\n') {
			assert_true(i > 0 && b->data[i - 1] == '\r');
			col = 0;
			continue;
		}
		col++;
		assert_true(col <= limit);
	}
	assert_true((b->len == 3 && memcmp(b->data, ".\r\n", 3) == 0) ||
	            (b->len >= 5 && memcmp(b->data + b->len - 5, "\r\n.\r\n", 5) == 0));
}

static void
t_content_random(void **state)
{
	static const char alphabet[] = "ab.\r\n\n\r. ";
	struct buf out = BUF_INIT, out2 = BUF_INIT;
	char in[600];
	int round;
	size_t i;

	(void)state;
	srandom(7);
	for (round = 0; round < 500; round++) {
		size_t len = (size_t)(random() % (long)sizeof(in));

		for (i = 0; i < len; i++)
			in[i] = alphabet[random() % (long)(sizeof(alphabet) - 1)];
		wire(in, len, 100, false, &out);
		wire(in, len, 100, true, &out2);
		check_wire(&out, 100);
		assert_int_equal(out.len, out2.len);
		assert_memory_equal(out.data, out2.data, out.len);
	}
	buf_free(&out);
	buf_free(&out2);
}

/* ---------------------------------------------------------------- 8-bit downgrade */

static bool
seven_bit(const struct buf *b)
{
	size_t i;

	for (i = 0; i < b->len; i++)
		if (b->data[i] & 0x80)
			return false;
	return true;
}

static size_t
longest_line(const struct buf *b)
{
	size_t i, col = 0, max = 0;

	for (i = 0; i < b->len; i++) {
		if (b->data[i] == '\n') {
			col = 0;
			continue;
		}
		if (++col > max)
			max = col;
	}
	return max;
}

static void
downgrade_ok(const char *in, struct buf *out)
{
	struct buf why = BUF_INIT;

	if (smtp_mime_downgrade((const unsigned char *)in, strlen(in), out, &why) != 0)
		fail_msg("downgrade failed: %s", buf_str(&why));
	assert_true(seven_bit(out));
	buf_free(&why);
}

static void
t_mime_plain(void **state)
{
	struct buf out = BUF_INIT, why = BUF_INIT;
	const char *s;

	(void)state;
	/* 7-bit content is untouched, byte for byte. */
	downgrade_ok("Subject: x\n\nplain text\n", &out);
	assert_string_equal(buf_str(&out), "Subject: x\n\nplain text\n");

	/* A non-MIME 8-bit message gets MIME headers and quoted-printable. */
	downgrade_ok("Subject: x\n\ncaf\xc3\xa9 = ok \n", &out);
	s = buf_str(&out);
	assert_non_null(strstr(s, "MIME-Version: 1.0\n"));
	assert_non_null(strstr(s, "Content-Type: text/plain; charset=utf-8\n"));
	assert_non_null(strstr(s, "Content-Transfer-Encoding: quoted-printable\n\n"));
	assert_non_null(strstr(s, "\n\ncaf=C3=A9 =3D ok=20\n"));

	/* Not UTF-8: unknown-8bit. */
	downgrade_ok("Subject: x\n\n\xff\xfe\n", &out);
	assert_non_null(strstr(buf_str(&out), "charset=unknown-8bit"));
	assert_non_null(strstr(buf_str(&out), "=FF=FE\n"));

	/* A MIME text part labelled 8bit: the label is replaced, other headers stay. */
	downgrade_ok("MIME-Version: 1.0\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: "
	             "8bit\nX-Keep: yes\n\n\xe9t\xe9\n",
	    &out);
	s = buf_str(&out);
	assert_null(strstr(s, "8bit"));
	assert_non_null(strstr(s, "X-Keep: yes\n"));
	assert_non_null(strstr(s, "charset=iso-8859-1"));
	assert_non_null(strstr(s, "\n\n=E9t=E9\n"));
	assert_int_equal(strstr(s, "MIME-Version") - s, 0); /* not added twice */
	assert_null(strstr(s + 1, "MIME-Version"));

	/* Long 8-bit lines are soft-broken at 76 characters. */
	{
		char in[4000];
		size_t k = (size_t)snprintf(in, sizeof(in), "Subject: x\n\n");

		while (k < 3000) {
			in[k++] = (char)0xc3;
			in[k++] = (char)0xa9;
		}
		in[k++] = '\n';
		in[k] = 0;
		downgrade_ok(in, &out);
		assert_true(longest_line(&out) <= 76);
	}

	/* 8-bit in the header cannot be converted. */
	buf_reset(&why);
	assert_int_equal(
	    smtp_mime_downgrade((const unsigned char *)"Subject: caf\xc3\xa9\n\nx\xc3\xa9\n", 22, &out, &why), -1);
	assert_non_null(strstr(buf_str(&why), "header"));
	buf_free(&out);
	buf_free(&why);
}

static void
t_mime_multipart(void **state)
{
	static const char msg[] = "MIME-Version: 1.0\n"
	                          "Content-Type: multipart/mixed; boundary=\"=b1\"\n"
	                          "Content-Transfer-Encoding: 8bit\n"
	                          "\n"
	                          "preamble\n"
	                          "--=b1\n"
	                          "Content-Type: text/plain; charset=utf-8\n"
	                          "\n"
	                          "gr\xc3\xbc\xc3\x9f\n"
	                          "--=b1\n"
	                          "Content-Type: application/octet-stream\n"
	                          "Content-Transfer-Encoding: 8bit\n"
	                          "\n"
	                          "\x01\xff\xfe\n"
	                          "--=b1\n"
	                          "Content-Type: text/plain\n"
	                          "\n"
	                          "ascii only\n"
	                          "--=b1\n"
	                          "Content-Type: message/rfc822\n"
	                          "\n"
	                          "Subject: inner\n"
	                          "\n"
	                          "inn\xc3\xa9r\n"
	                          "--=b1--\n"
	                          "epilogue\n";
	struct buf out = BUF_INIT;
	const char *s;

	(void)state;
	downgrade_ok(msg, &out);
	s = buf_str(&out);
	assert_non_null(strstr(s, "Content-Transfer-Encoding: 7bit\n"));
	assert_non_null(strstr(s, "preamble\n--=b1\n"));
	assert_non_null(strstr(s, "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: "
	                          "quoted-printable\n\ngr=C3=BC=C3=9F\n--=b1\n"));
	/* The line break before a boundary belongs to the boundary: the part is 3 bytes. */
	assert_non_null(
	    strstr(s, "Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\nAf/+\n\n--=b1\n"));
	assert_non_null(strstr(s, "Content-Type: text/plain\n\nascii only\n--=b1\n"));
	assert_non_null(strstr(s, "Subject: inner\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"));
	assert_non_null(strstr(s, "inn=C3=A9r\n--=b1--\nepilogue\n"));
	buf_free(&out);
}

static void
t_mime_refused(void **state)
{
	static const char *const bad[] = {
		/* 8-bit base64 */
		"MIME-Version: 1.0\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n\nAAA\xff\n",
		/* 8-bit preamble */
		"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\npre\xff\n--b\n\nx\n--b--\n",
		/* 8-bit in a part header */
		"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\nX-H: \xff\n\nx\n--b--\n",
		/* multipart without its boundary in the body */
		"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n\xff\n",
		/* 8-bit epilogue */
		"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--\n\xff\n",
	};
	struct buf out = BUF_INIT, why = BUF_INIT, deep = BUF_INIT;
	size_t i;
	int d;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		buf_reset(&why);
		if (smtp_mime_downgrade((const unsigned char *)bad[i], strlen(bad[i]), &out, &why) != -1)
			fail_msg("case %zu was converted", i);
		assert_true(why.len > 0);
	}
	/* A QP part with stray 8-bit bytes keeps its encoding. */
	downgrade_ok("MIME-Version: 1.0\nContent-Transfer-Encoding: quoted-printable\n\na=3Db\xe9\n", &out);
	assert_non_null(strstr(buf_str(&out), "\n\na=3Db=E9\n"));
	/* Nesting beyond the limit is refused, not followed. */
	buf_puts(&deep, "MIME-Version: 1.0\n");
	for (d = 0; d < SMTP_MIME_DEPTH_MAX + 5; d++)
		buf_printf(&deep, "Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n", d, d);
	buf_puts(&deep, "Content-Type: text/plain\n\n\xc3\xa9\n");
	buf_reset(&why);
	assert_int_equal(smtp_mime_downgrade(deep.data, deep.len, &out, &why), -1);
	assert_non_null(strstr(buf_str(&why), "deep"));
	buf_free(&deep);
	buf_free(&out);
	buf_free(&why);
}

/* ---------------------------------------------------------------- DNS answers */

/* A DNS message under construction. */
struct pkt {
	unsigned char b[2048];
	size_t n;
};

static void
put16(struct pkt *p, unsigned v)
{
	p->b[p->n++] = (unsigned char)(v >> 8);
	p->b[p->n++] = (unsigned char)v;
}

static void
put_name(struct pkt *p, const char *name)
{
	const char *dot;
	size_t len;

	while (*name) {
		dot = strchr(name, '.');
		len = dot ? (size_t)(dot - name) : strlen(name);
		p->b[p->n++] = (unsigned char)len;
		memcpy(p->b + p->n, name, len);
		p->n += len;
		name += len + (dot != NULL);
	}
	p->b[p->n++] = 0;
}

static void
pkt_start(struct pkt *p, const char *qname, unsigned qtype, unsigned ancount)
{
	memset(p, 0, sizeof(*p));
	put16(p, 0x1234);
	put16(p, 0x8180);
	put16(p, 1);
	put16(p, ancount);
	put16(p, 0);
	put16(p, 0);
	put_name(p, qname);
	put16(p, qtype);
	put16(p, 1);
}

static void
rr_mx(struct pkt *p, unsigned pref, const char *host)
{
	size_t rdlen_at;

	put16(p, 0xc00c); /* the question's name */
	put16(p, ns_t_mx);
	put16(p, 1);
	put16(p, 0);
	put16(p, 300);
	rdlen_at = p->n;
	put16(p, 0);
	put16(p, pref);
	put_name(p, host);
	p->b[rdlen_at] = (unsigned char)((p->n - rdlen_at - 2) >> 8);
	p->b[rdlen_at + 1] = (unsigned char)(p->n - rdlen_at - 2);
}

static void
rr_addr(struct pkt *p, unsigned type, const void *a, size_t len)
{
	put16(p, 0xc00c);
	put16(p, type);
	put16(p, 1);
	put16(p, 0);
	put16(p, 300);
	put16(p, (unsigned)len);
	memcpy(p->b + p->n, a, len);
	p->n += len;
}

static void
t_dns_mx(void **state)
{
	struct dns_mx *mx = NULL;
	struct pkt p;
	size_t n = 0;
	bool nullmx;

	(void)state;
	pkt_start(&p, "example.com", ns_t_mx, 3);
	rr_mx(&p, 20, "MX2.example.com");
	rr_mx(&p, 10, "mx1.example.com");
	rr_mx(&p, 30, "bad_$name.example.com");
	assert_int_equal(dns_parse_mx(p.b, p.n, &mx, &n, &nullmx), 0);
	assert_false(nullmx);
	assert_int_equal(n, 2); /* the bad name is skipped */
	dns_mx_sort(mx, n);
	assert_string_equal(mx[0].host, "mx1.example.com");
	assert_int_equal(mx[0].pref, 10);
	assert_string_equal(mx[1].host, "mx2.example.com"); /* folded */
	free(mx);

	/* RFC 7505 */
	mx = NULL;
	n = 0;
	pkt_start(&p, "example.com", ns_t_mx, 1);
	rr_mx(&p, 0, "");
	assert_int_equal(dns_parse_mx(p.b, p.n, &mx, &n, &nullmx), 0);
	assert_true(nullmx);
	assert_int_equal(n, 0);

	/* Truncated, and a compression pointer that loops. */
	pkt_start(&p, "example.com", ns_t_mx, 1);
	rr_mx(&p, 10, "mx.example.com");
	assert_int_equal(dns_parse_mx(p.b, p.n - 3, &mx, &n, &nullmx), -1);
	pkt_start(&p, "example.com", ns_t_mx, 1);
	put16(&p, 0xc00c);
	put16(&p, ns_t_mx);
	put16(&p, 1);
	put16(&p, 0);
	put16(&p, 300);
	put16(&p, 4);
	put16(&p, 10);
	put16(&p, (unsigned)(0xc000 | p.n)); /* points at itself */
	n = 0;
	assert_int_equal(dns_parse_mx(p.b, p.n, &mx, &n, &nullmx), -1);
	assert_int_equal(dns_parse_mx(p.b, 5, &mx, &n, &nullmx), -1);
	free(mx);
}

static void
t_dns_mx_sort_random(void **state)
{
	struct dns_mx v[3];
	int first_b = 0, round;

	(void)state;
	for (round = 0; round < 200; round++) {
		memset(v, 0, sizeof(v));
		strcpy(v[0].host, "c");
		v[0].pref = 20;
		strcpy(v[1].host, "a");
		v[1].pref = 10;
		strcpy(v[2].host, "b");
		v[2].pref = 10;
		dns_mx_sort(v, 3);
		assert_int_equal(v[0].pref, 10);
		assert_int_equal(v[1].pref, 10);
		assert_string_equal(v[2].host, "c");
		first_b += strcmp(v[0].host, "b") == 0;
	}
	/* Equal preferences share the load (200 rounds: both orders appear). */
	assert_true(first_b > 20 && first_b < 180);
}

static void
t_dns_addrs(void **state)
{
	static const unsigned char a1[4] = { 192, 0, 2, 1 }, a2[4] = { 192, 0, 2, 2 };
	unsigned char a6[16] = { 0x20, 0x01, 0x0d, 0xb8 };
	struct dns_addr out[4];
	char text[64];
	struct pkt p;
	size_t n = 0;

	(void)state;
	a6[15] = 1;
	pkt_start(&p, "mx.example.com", ns_t_a, 4);
	rr_addr(&p, ns_t_a, a1, 4);
	rr_addr(&p, ns_t_a, a1, 4); /* duplicate */
	rr_addr(&p, ns_t_aaaa, a6, 16);
	rr_addr(&p, ns_t_a, a2, 4);
	assert_int_equal(dns_parse_addrs(p.b, p.n, AF_INET, out, 4, &n), 0);
	assert_int_equal(n, 2);
	dns_addr_str(&out[0], text, sizeof(text));
	assert_string_equal(text, "192.0.2.1");
	dns_addr_str(&out[1], text, sizeof(text));
	assert_string_equal(text, "192.0.2.2");
	n = 0;
	assert_int_equal(dns_parse_addrs(p.b, p.n, AF_INET6, out, 4, &n), 0);
	assert_int_equal(n, 1);
	dns_addr_str(&out[0], text, sizeof(text));
	assert_string_equal(text, "2001:db8::1");
	/* The limit holds. */
	n = 0;
	assert_int_equal(dns_parse_addrs(p.b, p.n, AF_INET, out, 1, &n), 0);
	assert_int_equal(n, 1);
	/* An A record of the wrong length is a malformed answer. */
	pkt_start(&p, "mx.example.com", ns_t_a, 1);
	rr_addr(&p, ns_t_a, a6, 5);
	n = 0;
	assert_int_equal(dns_parse_addrs(p.b, p.n, AF_INET, out, 4, &n), -1);
}

static void
t_addr_order(void **state)
{
	struct dns_addr v[4];
	int i, v6first = 0;

	(void)state;
	memset(v, 0, sizeof(v));
	v[0].family = AF_INET;
	v[0].a[0] = 1;
	v[1].family = AF_INET6;
	v[1].a[0] = 2;
	v[2].family = AF_INET;
	v[2].a[0] = 3;
	v[3].family = AF_INET6;
	v[3].a[0] = 4;
	smtp_addr_order(v, 4, SMTP_PREF_IPV6);
	assert_int_equal(v[0].a[0], 2);
	assert_int_equal(v[1].a[0], 4);
	assert_int_equal(v[2].a[0], 1);
	assert_int_equal(v[3].a[0], 3);
	smtp_addr_order(v, 4, SMTP_PREF_IPV4);
	assert_int_equal(v[0].a[0], 1);
	assert_int_equal(v[1].a[0], 3);
	assert_int_equal(v[2].a[0], 2);
	for (i = 0; i < 100; i++) {
		smtp_addr_order(v, 4, SMTP_PREF_ANY);
		v6first += v[0].family == AF_INET6;
	}
	assert_true(v6first > 5 && v6first < 95);
}

/* ---------------------------------------------------------------- TLS client */

static char tdir[64], ca_path[128], srv_cert[128], srv_key[128];

static X509 *
make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *ikey, bool ca, const char *san)
{
	X509 *c = X509_new();
	X509V3_CTX ctx;
	X509_EXTENSION *ext;

	X509_set_version(c, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(c), ca ? 1 : 2);
	X509_gmtime_adj(X509_getm_notBefore(c), -3600);
	X509_gmtime_adj(X509_getm_notAfter(c), 3600);
	X509_set_pubkey(c, key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(c), "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : X509_get_subject_name(c));
	X509V3_set_ctx(&ctx, issuer ? issuer : c, c, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE");
	X509_add_ext(c, ext, -1);
	X509_EXTENSION_free(ext);
	if (san) {
		ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
		X509_add_ext(c, ext, -1);
		X509_EXTENSION_free(ext);
	}
	assert_true(X509_sign(c, ikey ? ikey : key, EVP_sha256()) > 0);
	return c;
}

static void
write_pem(const char *path, X509 *c, EVP_PKEY *k)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	if (c)
		assert_true(PEM_write_X509(f, c));
	if (k)
		assert_true(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL));
	assert_int_equal(fclose(f), 0);
}

static int
tls_setup(void **state)
{
	EVP_PKEY *cak, *k;
	X509 *ca, *leaf;

	(void)state;
	signal(SIGPIPE, SIG_IGN);
	strcpy(tdir, "/tmp/smtp_test.XXXXXX");
	assert_non_null(mkdtemp(tdir));
	snprintf(ca_path, sizeof(ca_path), "%s/ca.pem", tdir);
	snprintf(srv_cert, sizeof(srv_cert), "%s/cert.pem", tdir);
	snprintf(srv_key, sizeof(srv_key), "%s/key.pem", tdir);
	cak = EVP_EC_gen("P-256");
	k = EVP_EC_gen("P-256");
	ca = make_cert(cak, "Test CA", NULL, NULL, true, NULL);
	leaf = make_cert(k, "mx.example.test", ca, cak, false, "DNS:mx.example.test,IP:127.0.0.1");
	write_pem(ca_path, ca, NULL);
	write_pem(srv_cert, leaf, NULL);
	write_pem(srv_key, NULL, k);
	X509_free(ca);
	X509_free(leaf);
	EVP_PKEY_free(cak);
	EVP_PKEY_free(k);
	return 0;
}

static int
tls_teardown(void **state)
{
	(void)state;
	unlink(ca_path);
	unlink(srv_cert);
	unlink(srv_key);
	rmdir(tdir);
	return 0;
}

/* server - a forked STARTTLS server: "220 go" plus an injected line, the handshake, then "hello" under TLS */
static pid_t
server(int fd)
{
	pid_t pid = fork();
	struct buf err = BUF_INIT, line = BUF_INIT;
	struct stream *s;
	SSL_CTX *ctx;

	assert_true(pid >= 0);
	if (pid > 0)
		return pid;
	ctx = tls_server_ctx(srv_cert, srv_key, &err);
	if (ctx == NULL)
		_exit(2);
	s = stream_new(fd, 0);
	stream_set_timeout(s, 5);
	stream_puts(s, "220 go ahead\r\n250 injected\r\n");
	if (tls_server_start(s, ctx, &err) < 0)
		_exit(3);
	stream_puts(s, "hello\r\n");
	stream_flush(s);
	(void)stream_getline(s, &line, 100); /* until the client closes */
	stream_free(s);
	SSL_CTX_free(ctx);
	_exit(0);
}

/* client - read the 220 line, then start TLS as told; returns tls_client_start's result */
static int
client(const char *ca, const char *name, bool verify, bool *trusted, struct buf *err)
{
	struct tls_client_opts o = { .sni = name, .verify_name = name, .verify = verify };
	struct buf line = BUF_INIT;
	struct stream *s;
	SSL_CTX *ctx;
	int sv[2], status, rc;
	pid_t pid;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	pid = server(sv[1]);
	close(sv[1]);
	ctx = tls_client_ctx(ca, err);
	assert_non_null(ctx);
	s = stream_new(sv[0], 0);
	stream_set_timeout(s, 5);
	assert_int_equal(stream_getline(s, &line, 100), STREAM_OK);
	assert_string_equal(buf_str(&line), "220 go ahead\r\n");
	/* Make sure the injected line has arrived before the handshake starts. */
	usleep(100000);
	rc = tls_client_start(s, ctx, &o, trusted, err);
	if (rc == 0) {
		assert_true(tls_active(s));
		/* The first thing read is what the server sent under TLS, not the injection. */
		assert_int_equal(stream_getline(s, &line, 100), STREAM_OK);
		assert_string_equal(buf_str(&line), "hello\r\n");
		tls_peer_cn(s, &line);
		assert_string_equal(buf_str(&line), "mx.example.test");
	}
	stream_free(s);
	SSL_CTX_free(ctx);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	buf_free(&line);
	return rc;
}

static void
t_tls_client(void **state)
{
	struct buf err = BUF_INIT;
	bool trusted;

	(void)state;
	/* verify with the right CA and name */
	assert_int_equal(client(ca_path, "mx.example.test", true, &trusted, &err), 0);
	assert_true(trusted);
	/* an IP address literal is checked against the IP SAN */
	assert_int_equal(client(ca_path, "127.0.0.1", true, &trusted, &err), 0);
	assert_true(trusted);
	/* the wrong name fails the handshake under verify */
	buf_reset(&err);
	assert_int_equal(client(ca_path, "other.example.test", true, &trusted, &err), -1);
	assert_non_null(strstr(buf_str(&err), "not verified"));
	/* ... and is only untrusted without it */
	assert_int_equal(client(ca_path, "other.example.test", false, &trusted, &err), 0);
	assert_false(trusted);
	/* no CA that knows the server: untrusted, or a failure under verify */
	assert_int_equal(client(srv_cert, "mx.example.test", false, &trusted, &err), 0);
	assert_false(trusted);
	buf_reset(&err);
	assert_int_equal(client(srv_cert, "mx.example.test", true, &trusted, &err), -1);
	buf_free(&err);
}

static void
t_tls_client_ctx(void **state)
{
	struct buf err = BUF_INIT;
	SSL_CTX *ctx;

	(void)state;
	assert_null(tls_client_ctx("/nonexistent/ca.pem", &err));
	assert_non_null(strstr(buf_str(&err), "CA file"));
	ctx = tls_client_ctx("", &err);
	assert_non_null(ctx);
	SSL_CTX_free(ctx);
	buf_free(&err);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_reply_line),
		cmocka_unit_test(t_dsn_prefix),
		cmocka_unit_test(t_reply_read),
		cmocka_unit_test(t_reply_hostile),
		cmocka_unit_test(t_ehlo),
		cmocka_unit_test(t_nexthop),
		cmocka_unit_test(t_tls_level),
		cmocka_unit_test(t_content),
		cmocka_unit_test(t_content_random),
		cmocka_unit_test(t_mime_plain),
		cmocka_unit_test(t_mime_multipart),
		cmocka_unit_test(t_mime_refused),
		cmocka_unit_test(t_dns_mx),
		cmocka_unit_test(t_dns_mx_sort_random),
		cmocka_unit_test(t_dns_addrs),
		cmocka_unit_test(t_addr_order),
		cmocka_unit_test_setup_teardown(t_tls_client, tls_setup, tls_teardown),
		cmocka_unit_test(t_tls_client_ctx),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
