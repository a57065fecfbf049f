/*
 * pop3d_test - pop3d's parsers and pieces, linked directly: command
 * lines and numeric arguments (hostile ones included), base64 and AUTH
 * PLAIN, the LF to CRLF and dot-stuffing converter split at every chunk
 * boundary, Maildir names and UIDLs, login tokens (made, verified,
 * expired, for another service, tampered, the doc's test vector), the
 * hand-off request, the mailbox lookup, a Maildir's lock, listing and
 * UPDATE, the TLS relay's plumbing (over plain sockets), and a whole
 * TRANSACTION session over a socketpair.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "auth_client.h"
#include "buf.h"
#include "sasl.h"
#include "cfg.h"
#include "ipc.h"
#include "log.h"
#include "mailbox.h"
#include "pop3d.h"
#include "stream.h"
#include "xalloc.h"

/* ---------------------------------------------------------------- commands */

static void
test_parse_line(void **state)
{
	static const struct {
		const char *line;
		int rc;
		enum pop3_verb verb;
		const char *arg;
	} cases[] = {
		{ "STAT", 0, POP3_STAT, "" },
		{ "stat", 0, POP3_STAT, "" },
		{ "RETR 1", 0, POP3_RETR, "1" },
		{ "top 1 10", 0, POP3_TOP, "1 10" },
		{ "PASS  two spaces ", 0, POP3_PASS, " two spaces " },
		{ "USER demo@example.test", 0, POP3_USER, "demo@example.test" },
		{ "CAPA", 0, POP3_CAPA, "" },
		{ "STLS", 0, POP3_STLS, "" },
		{ "APOP x y", 0, POP3_APOP, "x y" },
		{ "XYZZY", 0, POP3_UNKNOWN, "" },
		{ "LISTX", 0, POP3_UNKNOWN, "" },
		{ "LIS", 0, POP3_UNKNOWN, "" },
		{ "%n%s", 0, POP3_UNKNOWN, "" },
		{ "STAT\t1", 0, POP3_UNKNOWN, "" },
		{ "", -1, POP3_UNKNOWN, NULL },
		{ " STAT", -1, POP3_UNKNOWN, NULL },
		{ " ", -1, POP3_UNKNOWN, NULL },
	};
	struct pop3_cmd c;
	const char *why;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *line = xstrdup(cases[i].line);

		assert_int_equal(pop3_parse_line(line, strlen(line), &c, &why), cases[i].rc);
		assert_int_equal(c.verb, cases[i].verb);
		if (cases[i].rc == 0 && cases[i].verb != POP3_UNKNOWN)
			assert_string_equal(c.arg, cases[i].arg);
		free(line);
	}
	/* A NUL inside the line is refused, not cut short. */
	{
		char line[] = "STAT\0RETR 1";

		assert_int_equal(pop3_parse_line(line, sizeof(line) - 1, &c, &why), -1);
		assert_non_null(strstr(why, "NUL"));
	}
}

static void
test_parse_numbers(void **state)
{
	static const struct {
		const char *arg;
		int min, max, rc;
		unsigned long long v0, v1;
	} cases[] = {
		{ "1", 1, 1, 1, 1, 0 },
		{ "1 10", 2, 2, 2, 1, 10 },
		{ "007", 1, 1, 1, 7, 0 },
		{ "4294967295", 1, 1, 1, 4294967295ULL, 0 },
		{ "0", 1, 1, 1, 0, 0 },
		{ "", 0, 1, 0, 0, 0 },
		{ "", 1, 1, -1, 0, 0 },
		{ "4294967296", 1, 1, -1, 0, 0 },
		{ "99999999999999999999", 1, 1, -1, 0, 0 },
		{ "-1", 1, 1, -1, 0, 0 },
		{ "+1", 1, 1, -1, 0, 0 },
		{ "1 -1", 2, 2, -1, 0, 0 },
		{ "1 ", 1, 1, -1, 0, 0 },
		{ "1  2", 2, 2, -1, 0, 0 },
		{ "1 2 3", 2, 2, -1, 0, 0 },
		{ "1 2", 1, 1, -1, 0, 0 },
		{ "1", 2, 2, -1, 0, 0 },
		{ "1x", 1, 1, -1, 0, 0 },
		{ "x", 1, 1, -1, 0, 0 },
		{ " 1", 1, 1, -1, 0, 0 },
		{ "%n%s", 1, 1, -1, 0, 0 },
	};
	unsigned long long v[POP3_ARGS_MAX];
	const char *why;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = pop3_parse_numbers(cases[i].arg, cases[i].min, cases[i].max, v, &why);

		if (rc != cases[i].rc)
			fail_msg("\"%s\": got %d, want %d", cases[i].arg, rc, cases[i].rc);
		if (rc >= 1)
			assert_int_equal(v[0], cases[i].v0);
		if (rc >= 2)
			assert_int_equal(v[1], cases[i].v1);
	}
}

static void
test_base64(void **state)
{
	static const struct {
		const char *in;
		int rc;
		const char *out;
		size_t outlen;
	} cases[] = {
		{ "", 0, "", 0 },
		{ "QQ==", 0, "A", 1 },
		{ "QUI=", 0, "AB", 2 },
		{ "QUJD", 0, "ABC", 3 },
		{ "AGRlbW8AcHc=", 0, "\0demo\0pw", 8 },
		{ "QQ", -1, NULL, 0 },
		{ "QQ=A", -1, NULL, 0 },
		{ "Q===", -1, NULL, 0 },
		{ "QQ==QUJD", -1, NULL, 0 },
		{ "QU J", -1, NULL, 0 },
		{ "QUJ*", -1, NULL, 0 },
		{ "====", -1, NULL, 0 },
	};
	struct buf out = BUF_INIT;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(sasl_b64_decode(cases[i].in, &out, 100), cases[i].rc);
		if (cases[i].rc == 0) {
			assert_int_equal(out.len, cases[i].outlen);
			assert_memory_equal(out.data, cases[i].out, out.len);
		}
	}
	/* The cap counts decoded bytes. */
	assert_int_equal(sasl_b64_decode("QUJD", &out, 3), 0);
	assert_int_equal(sasl_b64_decode("QUJDQUJD", &out, 5), -1);
	buf_free(&out);
}

static void
test_sasl_plain(void **state)
{
	static const struct {
		const char *resp;
		size_t len;
		int rc;
		const char *user, *pass;
	} cases[] = {
		{ "\0demo\0secret", 12, 0, "demo", "secret" },
		{ "demo\0demo\0secret", 16, 0, "demo", "secret" },
		{ "\0demo\0with space", 16, 0, "demo", "with space" },
		{ "other\0demo\0secret", 17, -1, NULL, NULL },
		{ "\0demo", 5, -1, NULL, NULL },
		{ "\0\0secret", 8, -1, NULL, NULL },
		{ "\0demo\0", 6, -1, NULL, NULL },
		{ "\0demo\0sec\0ret", 13, -1, NULL, NULL },
		{ "", 0, -1, NULL, NULL },
		{ "demosecret", 10, -1, NULL, NULL },
	};
	struct buf resp = BUF_INIT, user = BUF_INIT, pass = BUF_INIT;
	const char *why;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		buf_set(&resp, cases[i].resp, cases[i].len);
		assert_int_equal(sasl_plain(&resp, &user, &pass, &why), cases[i].rc);
		if (cases[i].rc == 0) {
			assert_string_equal(buf_str(&user), cases[i].user);
			assert_string_equal(buf_str(&pass), cases[i].pass);
		}
	}
	buf_free(&resp);
	buf_free(&user);
	buf_free(&pass);
}

/* ---------------------------------------------------------------- converter */

/* convert - the whole input through the converter in chunks of at most chunk bytes */
static void
convert(const char *in, size_t n, size_t chunk, long long max_lines, struct buf *out)
{
	struct pop3_conv cv;
	size_t pos = 0;

	buf_reset(out);
	pop3_conv_init(&cv, max_lines);
	while (pos < n && !cv.done) {
		size_t take = n - pos < chunk ? n - pos : chunk;
		size_t used = pop3_conv_feed(&cv, (const unsigned char *)in + pos, take, out);

		assert_true(used <= take);
		if (used < take)
			assert_true(cv.done);
		pos += take;
	}
	pop3_conv_finish(&cv, out);
}

static void
test_conv(void **state)
{
	static const struct {
		const char *in;
		long long max_lines;
		const char *out;
	} cases[] = {
		{ "a\nb\n", -1, "a\r\nb\r\n.\r\n" },
		{ "a\r\nb\r\n", -1, "a\r\r\nb\r\r\n.\r\n" },
		{ ".\n", -1, "..\r\n.\r\n" },
		{ ".dot\n..two\nx.y\n", -1, "..dot\r\n...two\r\nx.y\r\n.\r\n" },
		{ "no newline", -1, "no newline\r\n.\r\n" },
		{ "ends in cr\r", -1, "ends in cr\r\r\n.\r\n" },
		{ "", -1, ".\r\n" },
		{ "\n", -1, "\r\n.\r\n" },
		{ "bare\rcr\n", -1, "bare\rcr\r\n.\r\n" },
		{ "H: 1\nH: 2\n\nb1\nb2\nb3\n", 0, "H: 1\r\nH: 2\r\n\r\n.\r\n" },
		{ "H: 1\nH: 2\n\nb1\nb2\nb3\n", 2, "H: 1\r\nH: 2\r\n\r\nb1\r\nb2\r\n.\r\n" },
		{ "H: 1\nH: 2\n\nb1\nb2\nb3\n", 10, "H: 1\r\nH: 2\r\n\r\nb1\r\nb2\r\nb3\r\n.\r\n" },
		{ "H: 1\r\n\r\n.b1\r\nb2\r\n", 1, "H: 1\r\r\n\r\r\n..b1\r\r\n.\r\n" },
		{ "H: only header\n", 0, "H: only header\r\n.\r\n" },
		{ "\nbody\n", 0, "\r\n.\r\n" },
		{ "H: x\n\nlast line no nl", 5, "H: x\r\n\r\nlast line no nl\r\n.\r\n" },
	};
	struct buf whole = BUF_INIT, part = BUF_INIT;
	size_t i, chunk;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = strlen(cases[i].in);

		convert(cases[i].in, n, n + 1, cases[i].max_lines, &whole);
		if (whole.len != strlen(cases[i].out) || memcmp(whole.data, cases[i].out, whole.len) != 0)
			fail_msg("case %zu: got \"%.*s\"", i, (int)whole.len, (const char *)whole.data);
		/* Every chunk size gives the same bytes: state survives every boundary. */
		for (chunk = 1; chunk <= n; chunk++) {
			convert(cases[i].in, n, chunk, cases[i].max_lines, &part);
			assert_int_equal(part.len, whole.len);
			assert_memory_equal(part.data, whole.data, whole.len);
		}
	}
	buf_free(&whole);
	buf_free(&part);
}

static void
test_conv_split_everywhere(void **state)
{
	const char *in = "From: a\r\nX: .y\n\n.\n..\r\nz\r\r\n.\rq\nend";
	size_t n = strlen(in), split, split2;
	struct buf whole = BUF_INIT, part = BUF_INIT;
	struct pop3_conv cv;

	(void)state;
	convert(in, n, n, -1, &whole);
	/* Two splits at every pair of positions. */
	for (split = 0; split <= n; split++) {
		for (split2 = split; split2 <= n; split2++) {
			buf_reset(&part);
			pop3_conv_init(&cv, -1);
			(void)pop3_conv_feed(&cv, (const unsigned char *)in, split, &part);
			(void)pop3_conv_feed(&cv, (const unsigned char *)in + split, split2 - split, &part);
			(void)pop3_conv_feed(&cv, (const unsigned char *)in + split2, n - split2, &part);
			pop3_conv_finish(&cv, &part);
			assert_int_equal(part.len, whole.len);
			assert_memory_equal(part.data, whole.data, whole.len);
		}
	}
	buf_free(&whole);
	buf_free(&part);
}

static void
test_crlf_size(void **state)
{
	static const struct {
		const char *in;
		long long size;
	} cases[] = {
		{ "", 0 },
		{ "a\n", 3 },
		{ "a\r\n", 4 },
		{ "a\nb\nc\n", 9 },
		{ ".dot\n", 6 }, /* stuffing is not counted */
		{ "x\r\ry\n", 6 },
		{ "no newline", 10 },
	};
	size_t i, k;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = strlen(cases[i].in);
		long long total = 0;

		assert_int_equal(pop3_crlf_size((const unsigned char *)cases[i].in, n), cases[i].size);
		/* One byte at a time gives the same sum. */
		for (k = 0; k < n; k++)
			total += pop3_crlf_size((const unsigned char *)cases[i].in + k, 1);
		assert_int_equal(total, cases[i].size);
	}
}

/* ---------------------------------------------------------------- Maildir names */

static void
test_name_parse(void **state)
{
	static const struct {
		const char *name;
		int rc;
		size_t base_len;
		long long s, w;
		const char *flags;
	} cases[] = {
		{ "1700000000.M1P1Q1.host,S=40,W=46", 0, 22, 40, 46, NULL },
		{ "1700000000.M1P1Q1.host,S=40,W=46:2,S", 0, 22, 40, 46, "S" },
		{ "1700000000.M1P1Q1.host:2,RS", 0, 22, -1, -1, "RS" },
		{ "1700000000.M1P1Q1.host,W=7:2,", 0, 22, -1, 7, "" },
		{ "123.abc", 0, 7, -1, -1, NULL },
		{ "123.abc,Q=junk,S=5", 0, 7, 5, -1, NULL },
		{ "123.abc:1,experimental", 0, 7, -1, -1, NULL },
		{ ".pop3d.lock", -1, 0, 0, 0, NULL },
		{ ".", -1, 0, 0, 0, NULL },
		{ "", -1, 0, 0, 0, NULL },
		{ ",S=5", -1, 0, 0, 0, NULL },
		{ ":2,S", -1, 0, 0, 0, NULL },
		{ "x,S=", -1, 0, 0, 0, NULL },
		{ "x,S=abc", -1, 0, 0, 0, NULL },
		{ "x,S=12a", -1, 0, 0, 0, NULL },
		{ "x,W=-1", -1, 0, 0, 0, NULL },
		{ "x,W=9999999999999999", -1, 0, 0, 0, NULL },
	};
	struct pop3_name pn;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = pop3_name_parse(cases[i].name, &pn);

		if (rc != cases[i].rc)
			fail_msg("\"%s\": got %d", cases[i].name, rc);
		if (rc < 0)
			continue;
		assert_int_equal(pn.base_len, cases[i].base_len);
		assert_int_equal(pn.size_s, cases[i].s);
		assert_int_equal(pn.size_w, cases[i].w);
		if (cases[i].flags == NULL)
			assert_null(pn.flags);
		else
			assert_string_equal(pn.flags, cases[i].flags);
	}
}

static void
test_uidl(void **state)
{
	char u[POP3_UIDL_MAX + 1], v[POP3_UIDL_MAX + 1];
	char long_name[200];
	size_t i;

	(void)state;
	pop3_uidl("1700000000.M1P1Q1.host", 22, u);
	assert_string_equal(u, "1700000000.M1P1Q1.host");
	/* 70 characters is still itself; 71 becomes a hash. */
	memset(long_name, 'a', sizeof(long_name));
	pop3_uidl(long_name, 70, u);
	assert_int_equal(strlen(u), 70);
	pop3_uidl(long_name, 71, u);
	assert_int_equal(strlen(u), 64);
	assert_int_equal(strspn(u, "0123456789abcdef"), 64);
	pop3_uidl(long_name, 71, v);
	assert_string_equal(u, v); /* stable */
	pop3_uidl(long_name, 72, v);
	assert_string_not_equal(u, v);
	/* Not printable ASCII: a space, a byte above 0x7e. */
	pop3_uidl("a b", 3, u);
	assert_int_equal(strlen(u), 64);
	pop3_uidl("caf\xc3\xa9", 5, u);
	assert_int_equal(strlen(u), 64);
	for (i = 0; u[i]; i++)
		assert_true(u[i] >= 0x21 && u[i] <= 0x7e);
}

/* ---------------------------------------------------------------- tokens */

static void
test_token(void **state)
{
	unsigned char key[AUTH_TOKEN_KEY_LEN], key2[AUTH_TOKEN_KEY_LEN];
	struct buf tok = BUF_INIT, user = BUF_INIT, err = BUF_INIT, bad = BUF_INIT;
	long long now = 1763812740;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(key); i++) {
		key[i] = (unsigned char)i;
		key2[i] = (unsigned char)(i + 1);
	}
	/* The example of doc/ipc.md 8.6.1. */
	assert_int_equal(auth_token_make(key, "pop3d", "demo@example.test", 1763812800, &tok, &err), 0);
	assert_string_equal(buf_str(&tok), "1:1763812800:64656d6f406578616d706c652e74657374:"
	                                   "cb14c1afda0167285aa4b264b327759f309e101cc2d6b83218a607e182c403b3");
	assert_int_equal(auth_token_verify(key, "pop3d", buf_str(&tok), now, &user, &err), 0);
	assert_string_equal(buf_str(&user), "demo@example.test");
	/* The last second is still good; one later is not. */
	assert_int_equal(auth_token_verify(key, "pop3d", buf_str(&tok), 1763812800, &user, &err), 0);
	assert_int_equal(auth_token_verify(key, "pop3d", buf_str(&tok), 1763812801, &user, &err), -1);
	assert_non_null(strstr(buf_str(&err), "expired"));
	assert_int_equal(user.len, 0);
	/* Minted for the far future: refused. */
	assert_int_equal(auth_token_verify(key, "pop3d", buf_str(&tok), 1763812800 - 3600, &user, &err), -1);
	/* Another service, another key. */
	assert_int_equal(auth_token_verify(key, "smtpd", buf_str(&tok), now, &user, &err), -1);
	assert_int_equal(auth_token_verify(key2, "pop3d", buf_str(&tok), now, &user, &err), -1);
	/* Tampered: another user (same MAC), a later expiry, a flipped MAC digit, case changes. */
	buf_strcpy(&bad, "1:1763812800:726f6f74406578616d706c652e74657374:"
	                 "cb14c1afda0167285aa4b264b327759f309e101cc2d6b83218a607e182c403b3");
	assert_int_equal(auth_token_verify(key, "pop3d", buf_str(&bad), now, &user, &err), -1);
	buf_strcpy(&bad, buf_str(&tok));
	bad.data[11] = '1';
	assert_int_equal(auth_token_verify(key, "pop3d", buf_str(&bad), now, &user, &err), -1);
	buf_strcpy(&bad, buf_str(&tok));
	bad.data[bad.len - 1] = bad.data[bad.len - 1] == '0' ? '1' : '0';
	assert_int_equal(auth_token_verify(key, "pop3d", buf_str(&bad), now, &user, &err), -1);
	buf_strcpy(&bad, buf_str(&tok));
	bad.data[bad.len - 2] = 'C';
	assert_int_equal(auth_token_verify(key, "pop3d", buf_str(&bad), now, &user, &err), -1);
	/* Malformed shapes. */
	{
		static const char *const shapes[] = {
			"",
			"1",
			"1:1763812800",
			"1:1763812800:64656d6f",
			"2:1763812800:64656d6f:cb14",
			"1:01763812800:64656d6f406578616d706c652e74657374:"
			"cb14c1afda0167285aa4b264b327759f309e101cc2d6b83218a607e182c403b3",
			"1:-1:64656d6f:cb14",
			"1:1763812800::cb14c1afda0167285aa4b264b327759f309e101cc2d6b83218a607e182c403b3",
			"1:1763812800:6:cb14c1afda0167285aa4b264b327759f309e101cc2d6b83218a607e182c403b3",
			"1:1763812800:0064:cb14c1afda0167285aa4b264b327759f309e101cc2d6b83218a607e182c403b3",
			"1:1763812800:64656d6f406578616d706c652e74657374:cb14",
			"1:1763812800:64656d6f406578616d706c652e74657374:"
			"cb14c1afda0167285aa4b264b327759f309e101cc2d6b83218a607e182c403b3:",
			"1:99999999999999999999999:64:cb",
		};

		for (i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
			if (auth_token_verify(key, "pop3d", shapes[i], now, &user, &err) != -1)
				fail_msg("accepted \"%s\"", shapes[i]);
	}
	/* Bad arguments to make. */
	assert_int_equal(auth_token_make(key, "pop3d", "", now, &tok, &err), -1);
	assert_int_equal(auth_token_make(key, "", "demo", now, &tok, &err), -1);
	buf_free(&tok);
	buf_free(&user);
	buf_free(&err);
	buf_free(&bad);
}

static void
test_token_key_file(void **state)
{
	char dir[] = "/tmp/pop3d_test.XXXXXX", path[128], other[128];
	unsigned char k1[AUTH_TOKEN_KEY_LEN], k2[AUTH_TOKEN_KEY_LEN];
	struct buf err = BUF_INIT;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/auth.key", dir);
	assert_int_equal(auth_key_load(path, false, geteuid(), k1, &err), -1);
	assert_int_equal(auth_key_load(path, true, geteuid(), k1, &err), 0);
	assert_int_equal(auth_key_load(path, false, geteuid(), k2, &err), 0);
	assert_memory_equal(k1, k2, sizeof(k1));
	/* Another owner, a mode with group bits, a wrong size: all refused. */
	assert_int_equal(auth_key_load(path, false, geteuid() + 1, k2, &err), -1);
	assert_int_equal(chmod(path, 0640), 0);
	assert_int_equal(auth_key_load(path, false, geteuid(), k2, &err), -1);
	assert_int_equal(chmod(path, 0600), 0);
	snprintf(other, sizeof(other), "%s/short.key", dir);
	fd = open(other, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "short", 5), 5);
	close(fd);
	assert_int_equal(auth_key_load(other, true, geteuid(), k2, &err), -1);
	/* A symbolic link is not followed. */
	unlink(other);
	assert_int_equal(symlink(path, other), 0);
	assert_int_equal(auth_key_load(other, false, geteuid(), k2, &err), -1);
	unlink(other);
	unlink(path);
	rmdir(dir);
	buf_free(&err);
}

/* ---------------------------------------------------------------- hand-off request */

static void
make_msg(struct ipc_msg *m, const char *const *pairs)
{
	struct buf wire = BUF_INIT;
	size_t used;

	for (; pairs[0] != NULL; pairs += 2)
		ipc_buf_str(&wire, pairs[0], pairs[1]);
	ipc_buf_end(&wire);
	ipc_msg_reset(m);
	assert_int_equal(ipc_parse(wire.data, wire.len, m, NULL, &used), 1);
	buf_free(&wire);
}

static void
test_request(void **state)
{
	const char *good[] = { "token", "1:2:61:ab", "client_addr", "192.0.2.1", "tls", "0", "mode", "fd", "method",
		"USER", "input", "535441540d0a", NULL };
	const char *proxy[] = { "token", "t", "client_addr", "::1", "tls", "1", "mode", "proxy", NULL };
	const char *bad[][12] = {
		{ "token", "t", "client_addr", "a", "tls", "0", NULL },
		{ "token", "t", "client_addr", "a", "tls", "0", "mode", "pipe", NULL },
		{ "token", "t", "client_addr", "a", "tls", "yes", "mode", "fd", NULL },
		{ "token", "t", "client_addr", "a b", "tls", "0", "mode", "fd", NULL },
		{ "token", "t", "client_addr", "", "tls", "0", "mode", "fd", NULL },
		{ "token", "t", "client_addr", "a", "tls", "0", "mode", "fd", "input", "5", NULL },
		{ "token", "t", "client_addr", "a", "tls", "0", "mode", "fd", "input", "5G", NULL },
		{ "token", "t", "client_addr", "a", "tls", "0", "mode", "fd", "user", "root", NULL },
	};
	struct pop3d_request r;
	struct buf err = BUF_INIT;
	struct ipc_msg m;
	size_t i;

	(void)state;
	ipc_msg_init(&m);
	make_msg(&m, good);
	assert_int_equal(pop3d_request_parse(&m, &r, &err), 0);
	assert_true(r.fd_mode);
	assert_false(r.tls);
	assert_string_equal(r.method, "USER");
	assert_int_equal(r.input.len, 6);
	assert_memory_equal(r.input.data, "STAT\r\n", 6);
	pop3d_request_free(&r);
	make_msg(&m, proxy);
	assert_int_equal(pop3d_request_parse(&m, &r, &err), 0);
	assert_false(r.fd_mode);
	assert_true(r.tls);
	assert_int_equal(r.input.len, 0);
	pop3d_request_free(&r);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		make_msg(&m, bad[i]);
		if (pop3d_request_parse(&m, &r, &err) != -1)
			fail_msg("bad request %zu accepted", i);
		pop3d_request_free(&r);
	}
	ipc_msg_free(&m);
	buf_free(&err);
}

static void
test_hex(void **state)
{
	struct buf out = BUF_INIT, back = BUF_INIT;
	unsigned char all[256];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(all); i++)
		all[i] = (unsigned char)i;
	pop3d_hex_encode(all, sizeof(all), &out);
	assert_int_equal(out.len, 512);
	assert_int_equal(pop3d_hex_decode(buf_str(&out), &back, 256), 0);
	assert_memory_equal(back.data, all, 256);
	assert_int_equal(pop3d_hex_decode(buf_str(&out), &back, 255), -1);
	assert_int_equal(pop3d_hex_decode("0", &back, 10), -1);
	assert_int_equal(pop3d_hex_decode("0A", &back, 10), -1);
	assert_int_equal(pop3d_hex_decode("zz", &back, 10), -1);
	buf_free(&out);
	buf_free(&back);
}

/* ---------------------------------------------------------------- mailbox lookup */

static void
test_mailbox_find(void **state)
{
	static const struct {
		const char *login;
		enum mailbox_result r;
		const char *path;
		long uid;
	} cases[] = {
		{ "demo@example.test", MAILBOX_FOUND, "/srv/mail/example.test/demo", 2000 },
		{ "demo+tag@example.test", MAILBOX_FOUND, "/srv/mail/example.test/demo", 2000 },
		{ "anyone@example.test", MAILBOX_FOUND, "/srv/mail/example.test/catchall", 3000 },
		{ "mbox@example.test", MAILBOX_REFUSED, NULL, 0 },
		{ "evil@example.test", MAILBOX_REFUSED, NULL, 0 },
		{ "abs@example.test", MAILBOX_REFUSED, NULL, 0 },
		{ "rootly@example.test", MAILBOX_REFUSED, NULL, 0 },
		{ "nobody@elsewhere.test", MAILBOX_NOTFOUND, NULL, 0 },
		{ "@example.test", MAILBOX_NOTFOUND, NULL, 0 },
		{ "x@", MAILBOX_NOTFOUND, NULL, 0 },
		{ "", MAILBOX_NOTFOUND, NULL, 0 },
		{ "root", MAILBOX_REFUSED, NULL, 0 },
		{ "root@localhost", MAILBOX_REFUSED, NULL, 0 },
		{ "no-such-user-xyz", MAILBOX_NOTFOUND, NULL, 0 },
		{ "a/b", MAILBOX_NOTFOUND, NULL, 0 },
		{ "daemon", MAILBOX_FOUND, "/usr/sbin/Maildir", 1 },
		{ "daemon+x@localhost", MAILBOX_FOUND, "/usr/sbin/Maildir", 1 },
	};
	struct mailbox_maps *maps;
	struct buf err = BUF_INIT;
	struct mailbox mb;
	size_t i;

	(void)state;
	assert_int_equal(
	    cfg_load_string("myhostname = mail.example.test\n"
	                    "mydestination = localhost\n"
	                    "recipient_delimiter = +\n"
	                    "virtual_mailbox_domains = example.test\n"
	                    "virtual_mailbox_base = /srv/mail/\n"
	                    "virtual_mailbox_maps = inline:{ demo@example.test=example.test/demo/, "
	                    "mbox@example.test=example.test/mbox, evil@example.test=example.test/../../etc/, "
	                    "abs@example.test=/etc/, rootly@example.test=example.test/rootly/, "
	                    "@example.test=example.test/catchall/ }\n"
	                    "virtual_uid_maps = inline:{ demo@example.test=2000, rootly@example.test=0, "
	                    "@example.test=3000 }\n"
	                    "virtual_gid_maps = static:2000\n"
	                    "home_mailbox = Maildir/\n",
	        "t", &err),
	    0);
	maps = mailbox_open(&err);
	assert_non_null(maps);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum mailbox_result r = mailbox_find(maps, cases[i].login, &mb, &err);

		if (r != cases[i].r)
			fail_msg("%s: got %d (%s), want %d", cases[i].login, r, buf_str(&err), cases[i].r);
		if (r == MAILBOX_FOUND) {
			if (strcmp(cases[i].login, "daemon") != 0 && strncmp(cases[i].login, "daemon+", 7) != 0) {
				assert_string_equal(mb.path, cases[i].path);
				assert_int_equal(mb.uid, cases[i].uid);
				assert_true(mb.virtual);
			} else {
				/* Debian's daemon user: uid 1, home /usr/sbin. */
				assert_int_equal(mb.uid, 1);
				assert_false(mb.virtual);
				assert_string_equal(mb.path, cases[i].path);
			}
		} else {
			assert_null(mb.path);
			assert_true(err.len > 0);
		}
		mailbox_free(&mb);
	}
	mailbox_close(maps);
	/* An mbox mailbox for system users is refused with a reason that says so. */
	assert_int_equal(
	    cfg_load_string("mydestination = localhost\nhome_mailbox =\nmail_spool_directory = /var/mail\n", "t", &err),
	    0);
	maps = mailbox_open(&err);
	assert_non_null(maps);
	assert_int_equal(mailbox_find(maps, "daemon", &mb, &err), MAILBOX_REFUSED);
	assert_non_null(strstr(buf_str(&err), "Maildir"));
	mailbox_close(maps);
	/* A trailing "/" on mail_spool_directory means Maildir. */
	assert_int_equal(
	    cfg_load_string("mydestination = localhost\nmail_spool_directory = /var/mail/\n", "t", &err), 0);
	maps = mailbox_open(&err);
	assert_int_equal(mailbox_find(maps, "daemon", &mb, &err), MAILBOX_FOUND);
	assert_string_equal(mb.path, "/var/mail/daemon");
	mailbox_free(&mb);
	mailbox_close(maps);
	buf_free(&err);
}

/* ---------------------------------------------------------------- Maildir */

static char mdir[64];

static void
put_file(const char *sub, const char *name, const char *content)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s/%s", mdir, sub, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(content, f);
	fclose(f);
}

static bool
exists(const char *sub, const char *name)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s/%s", mdir, sub, name);
	return access(path, F_OK) == 0;
}

static void
make_maildir(void)
{
	char path[128];

	strcpy(mdir, "/tmp/pop3d_md.XXXXXX");
	assert_non_null(mkdtemp(mdir));
	snprintf(path, sizeof(path), "%s/new", mdir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/cur", mdir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/tmp", mdir);
	assert_int_equal(mkdir(path, 0700), 0);
}

static void
remove_maildir(void)
{
	static const char *const subs[] = { "new", "cur", "tmp", "." };
	char path[512];
	struct dirent *de;
	size_t i;
	DIR *d;

	for (i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", mdir, subs[i]);
		if ((d = opendir(path)) == NULL)
			continue;
		while ((de = readdir(d)) != NULL) {
			char f[1024];

			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			snprintf(f, sizeof(f), "%s/%s", path, de->d_name);
			(void)unlink(f);
		}
		closedir(d);
		if (strcmp(subs[i], ".") != 0)
			(void)rmdir(path);
	}
	(void)rmdir(mdir);
}

static void
test_maildir(void **state)
{
	struct pop3_maildir md, md2;
	struct buf err = BUF_INIT;
	long long size;
	size_t i;

	(void)state;
	make_maildir();
	put_file("new", "1700000002.M2P1Q2.host,S=6,W=9", "a\nb\nc\n");
	put_file("new", "1700000001.M1P1Q1.host", "x\r\ny\n");
	put_file("cur", "999999999.M0P1Q0.host,S=2,W=3:2,T", "z\n");
	put_file("new", ".hidden", "not a message");
	put_file("tmp", "1700000003.M3P1Q3.host,S=2,W=3", "w\n");
	pop3_maildir_init(&md);
	assert_int_equal(pop3_maildir_open(&md, mdir, &err), 0);
	assert_int_equal(pop3_maildir_scan(&md, &err), 0);
	assert_int_equal(md.n, 3);
	/* Ordered by delivery time: the nine-digit one is older. */
	assert_string_equal(md.msgs[0].uidl, "999999999.M0P1Q0.host");
	assert_string_equal(md.msgs[1].uidl, "1700000001.M1P1Q1.host");
	assert_string_equal(md.msgs[2].uidl, "1700000002.M2P1Q2.host");
	/* W= is believed without reading; the name without it is measured. */
	assert_int_equal(md.msgs[2].size, 9);
	assert_int_equal(md.msgs[1].size, -1);
	assert_int_equal(pop3_maildir_size(&md, 1, &size, &err), 0);
	assert_int_equal(size, 7);
	assert_int_equal(md.msgs[1].size, 7);
	/* A second session on the same Maildir finds it locked. */
	pop3_maildir_init(&md2);
	assert_int_equal(pop3_maildir_open(&md2, mdir, &err), POP3_MD_INUSE);
	pop3_maildir_close(&md2);
	/* UPDATE: delete the oldest, retrieve the other two. */
	md.msgs[0].deleted = true;
	md.msgs[1].retrieved = true;
	md.msgs[2].retrieved = true;
	assert_int_equal(pop3_maildir_update(&md, &err), 0);
	pop3_maildir_close(&md);
	assert_false(exists("cur", "999999999.M0P1Q0.host,S=2,W=3:2,T"));
	assert_true(exists("cur", "1700000001.M1P1Q1.host:2,S"));
	assert_true(exists("cur", "1700000002.M2P1Q2.host,S=6,W=9:2,S"));
	assert_false(exists("new", "1700000002.M2P1Q2.host,S=6,W=9"));
	assert_true(exists("new", ".hidden"));
	/* The lock went with the close; UIDLs survive the move to cur/. */
	pop3_maildir_init(&md);
	assert_int_equal(pop3_maildir_open(&md, mdir, &err), 0);
	assert_int_equal(pop3_maildir_scan(&md, &err), 0);
	assert_int_equal(md.n, 2);
	assert_string_equal(md.msgs[0].uidl, "1700000001.M1P1Q1.host");
	assert_string_equal(md.msgs[1].uidl, "1700000002.M2P1Q2.host");
	for (i = 0; i < md.n; i++)
		assert_true(md.msgs[i].in_cur);
	/* Flags stay sorted: S goes before T, after R. */
	put_file("cur", "1700000004.M4P1Q4.host,S=2,W=3:2,RT", "q\n");
	pop3_maildir_close(&md);
	pop3_maildir_init(&md);
	assert_int_equal(pop3_maildir_open(&md, mdir, &err), 0);
	assert_int_equal(pop3_maildir_scan(&md, &err), 0);
	assert_int_equal(md.n, 3);
	md.msgs[2].retrieved = true;
	assert_int_equal(pop3_maildir_update(&md, &err), 0);
	assert_true(exists("cur", "1700000004.M4P1Q4.host,S=2,W=3:2,RST"));
	pop3_maildir_close(&md);
	/* A missing Maildir is an empty maildrop, not an error. */
	pop3_maildir_init(&md);
	assert_int_equal(pop3_maildir_open(&md, "/nonexistent/pop3d/maildir", &err), POP3_MD_MISSING);
	pop3_maildir_close(&md);
	remove_maildir();
	buf_free(&err);
}

static void
test_maildir_duplicate_uidl(void **state)
{
	struct pop3_maildir md;
	struct buf err = BUF_INIT;

	(void)state;
	make_maildir();
	put_file("new", "1700000001.M1P1Q1.host,S=2,W=3", "a\n");
	put_file("cur", "1700000001.M1P1Q1.host,S=2,W=3:2,S", "a\n");
	pop3_maildir_init(&md);
	assert_int_equal(pop3_maildir_open(&md, mdir, &err), 0);
	assert_int_equal(pop3_maildir_scan(&md, &err), 0);
	assert_int_equal(md.n, 2);
	assert_string_not_equal(md.msgs[0].uidl, md.msgs[1].uidl);
	pop3_maildir_close(&md);
	remove_maildir();
	buf_free(&err);
}

/* ---------------------------------------------------------------- a session over a socketpair */

/* talk - send the commands, read everything until the server closes */
static void
talk(int fd, const char *commands, struct buf *out)
{
	char chunk[4096];
	ssize_t n;

	buf_reset(out);
	assert_int_equal(write(fd, commands, strlen(commands)), (ssize_t)strlen(commands));
	/* Then the client goes away, as a dropped connection does. */
	assert_int_equal(shutdown(fd, SHUT_WR), 0);
	while ((n = read(fd, chunk, sizeof(chunk))) > 0)
		buf_append(out, chunk, (size_t)n);
}

/* session - run a TRANSACTION session on the Maildir in a child; the client's bytes in out */
static void
session(const char *preload, const char *commands, struct buf *out)
{
	int sv[2], status;
	pid_t pid;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct stream *s;

		close(sv[0]);
		s = stream_new(sv[1], 0);
		stream_set_timeout(s, 5);
		pop3d_stream_preload(s, (const unsigned char *)preload, strlen(preload));
		pop3d_session_run(s, "demo@example.test", "192.0.2.1", mdir);
		stream_free(s);
		_exit(0);
	}
	close(sv[1]);
	talk(sv[0], commands, out);
	close(sv[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void
test_session(void **state)
{
	struct buf out = BUF_INIT;

	(void)state;
	make_maildir();
	put_file("new", "1700000001.M1P1Q1.host,S=14,W=16", "H: 1\n\n.dot\nb2\n");
	put_file("new", "1700000002.M2P1Q2.host,S=2,W=3", "x\n");
	/* Pipelined, the first commands preloaded as the login part passes them. */
	session("STAT\r\nLIST\r\n",
	    "UIDL\r\nLIST 2\r\nRETR 1\r\nTOP 1 0\r\nTOP 1 -1\r\nDELE 2\r\nDELE 2\r\nLIST 2\r\nSTAT\r\nRSET\r\n"
	    "STAT\r\nRETR 3\r\nRETR 0\r\nUSER x\r\n\r\nNOOP\r\nDELE 2\r\nQUIT\r\n",
	    &out);
	assert_string_equal(buf_str(&out), "+OK Logged in\r\n"
	                                   "+OK 2 19\r\n"
	                                   "+OK 2 messages (19 octets)\r\n1 16\r\n2 3\r\n.\r\n"
	                                   "+OK Unique-ID listing follows\r\n1 1700000001.M1P1Q1.host\r\n"
	                                   "2 1700000002.M2P1Q2.host\r\n.\r\n"
	                                   "+OK 2 3\r\n"
	                                   "+OK 16 octets\r\nH: 1\r\n\r\n..dot\r\nb2\r\n.\r\n"
	                                   "+OK Top of message follows\r\nH: 1\r\n\r\n.\r\n"
	                                   "-ERR Syntax: not a number\r\n"
	                                   "+OK Message 2 deleted\r\n"
	                                   "-ERR Message 2 is deleted\r\n"
	                                   "-ERR Message 2 is deleted\r\n"
	                                   "+OK 1 16\r\n"
	                                   "+OK 2 messages\r\n"
	                                   "+OK 2 19\r\n"
	                                   "-ERR No such message\r\n"
	                                   "-ERR No such message\r\n"
	                                   "-ERR Already logged in\r\n"
	                                   "-ERR Invalid command: empty command line\r\n"
	                                   "+OK Nothing happens\r\n"
	                                   "+OK Message 2 deleted\r\n"
	                                   "+OK Bye (1 message left)\r\n");
	assert_false(exists("new", "1700000002.M2P1Q2.host,S=2,W=3"));
	assert_true(exists("cur", "1700000001.M1P1Q1.host,S=14,W=16:2,S"));
	/* A dropped connection changes nothing. */
	session("", "DELE 1\r\n", &out);
	assert_true(exists("cur", "1700000001.M1P1Q1.host,S=14,W=16:2,S"));
	/* Errors end the session without UPDATE. */
	session("", "DELE 1\r\nX\r\nX\r\nX\r\nX\r\nX\r\nX\r\nX\r\nX\r\nX\r\nX\r\nQUIT\r\n", &out);
	assert_non_null(strstr(buf_str(&out), "too many errors"));
	assert_null(strstr(buf_str(&out), "Bye"));
	assert_true(exists("cur", "1700000001.M1P1Q1.host,S=14,W=16:2,S"));
	remove_maildir();
	buf_free(&out);
}

/* ---------------------------------------------------------------- the relay */

static void
test_proxy(void **state)
{
	int client[2], mailbox[2], status;
	size_t big = 3 * 1024 * 1024, sent_c = 0, sent_m = 0, got_c = 0, got_m = 0;
	unsigned char *from_client, *from_mailbox, chunk[65536];
	pid_t pid;
	size_t i;

	(void)state;
	from_client = xmalloc(big);
	from_mailbox = xmalloc(big);
	for (i = 0; i < big; i++) {
		from_client[i] = (unsigned char)(i * 7);
		from_mailbox[i] = (unsigned char)(i * 13 + 1);
	}
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, client), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, mailbox), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct stream *c, *m;

		close(client[0]);
		close(mailbox[0]);
		c = stream_new(client[1], 0);
		m = stream_new(mailbox[1], 0);
		pop3d_proxy(c, m, 10);
		stream_free(c);
		stream_free(m);
		_exit(0);
	}
	close(client[1]);
	close(mailbox[1]);
	(void)fcntl(client[0], F_SETFL, O_NONBLOCK);
	(void)fcntl(mailbox[0], F_SETFL, O_NONBLOCK);
	/* Both directions at once, megabytes each way: the relay must not wedge. */
	while (got_c < big || got_m < big) {
		struct pollfd p[2] = { { client[0], POLLIN, 0 }, { mailbox[0], POLLIN, 0 } };
		ssize_t n;

		if (sent_c < big)
			p[0].events |= POLLOUT;
		if (sent_m < big)
			p[1].events |= POLLOUT;
		assert_true(poll(p, 2, 10000) > 0);
		if ((p[0].revents & POLLOUT) && (n = write(client[0], from_client + sent_c, big - sent_c)) > 0)
			sent_c += (size_t)n;
		if ((p[1].revents & POLLOUT) && (n = write(mailbox[0], from_mailbox + sent_m, big - sent_m)) > 0)
			sent_m += (size_t)n;
		if ((p[0].revents & POLLIN) && (n = read(client[0], chunk, sizeof(chunk))) > 0) {
			assert_memory_equal(chunk, from_mailbox + got_c, (size_t)n);
			got_c += (size_t)n;
		}
		if ((p[1].revents & POLLIN) && (n = read(mailbox[0], chunk, sizeof(chunk))) > 0) {
			assert_memory_equal(chunk, from_client + got_m, (size_t)n);
			got_m += (size_t)n;
		}
	}
	/* The mailbox side closes: the relay ends and the client sees end of file. */
	close(mailbox[0]);
	(void)fcntl(client[0], F_SETFL, 0);
	assert_int_equal(read(client[0], chunk, sizeof(chunk)), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(client[0]);
	free(from_client);
	free(from_mailbox);
}

static void
test_proxy_client_half_close(void **state)
{
	int client[2], mailbox[2], status;
	char got[64];
	ssize_t n;
	pid_t pid;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, client), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, mailbox), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct stream *c, *m;

		close(client[0]);
		close(mailbox[0]);
		c = stream_new(client[1], 0);
		m = stream_new(mailbox[1], 0);
		pop3d_proxy(c, m, 10);
		stream_free(c);
		stream_free(m);
		_exit(0);
	}
	close(client[1]);
	close(mailbox[1]);
	/* "QUIT" and the client stops writing: the mailbox part still gets to answer. */
	assert_int_equal(write(client[0], "QUIT\r\n", 6), 6);
	assert_int_equal(shutdown(client[0], SHUT_WR), 0);
	n = read(mailbox[0], got, sizeof(got));
	assert_int_equal(n, 6);
	assert_int_equal(read(mailbox[0], got, sizeof(got)), 0); /* the relay passed the end on */
	assert_int_equal(write(mailbox[0], "+OK Bye\r\n", 9), 9);
	close(mailbox[0]);
	assert_int_equal(read(client[0], got, sizeof(got)), 9);
	assert_memory_equal(got, "+OK Bye\r\n", 9);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	close(client[0]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_line),
		cmocka_unit_test(test_parse_numbers),
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_sasl_plain),
		cmocka_unit_test(test_conv),
		cmocka_unit_test(test_conv_split_everywhere),
		cmocka_unit_test(test_crlf_size),
		cmocka_unit_test(test_name_parse),
		cmocka_unit_test(test_uidl),
		cmocka_unit_test(test_token),
		cmocka_unit_test(test_token_key_file),
		cmocka_unit_test(test_request),
		cmocka_unit_test(test_hex),
		cmocka_unit_test(test_mailbox_find),
		cmocka_unit_test(test_maildir),
		cmocka_unit_test(test_maildir_duplicate_uidl),
		cmocka_unit_test(test_session),
		cmocka_unit_test(test_proxy),
		cmocka_unit_test(test_proxy_client_half_close),
	};

	log_init("pop3d_test", LOG_DEST_STDERR);
	signal(SIGPIPE, SIG_IGN);
	pop3d_cfg.timeout = 5;
	pop3d_cfg.error_limit = 10;
	pop3d_cfg.command_limit = 1024;
	pop3d_cfg.mail_name = "Postern";
	return cmocka_run_group_tests(tests, NULL, NULL);
}
