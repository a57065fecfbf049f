/*
 * smtpd_parse_test - the SMTP command language: command lines, MAIL and
 * RCPT with every ESMTP parameter and every error reply, xtext, BDAT and
 * base64, plus every byte value at every position of each parser's input.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "sasl.h"
#include "qfile.h"
#include "smtpd_parse.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* opts bits for the tables */
#define O_U 0x01 /* SMTPUTF8 offered */
#define O_D 0x02 /* DSN offered */
#define O_T 0x04 /* RCPT: the transaction is SMTPUTF8 */

#define SYN_MAIL "501 5.5.4 Syntax: MAIL FROM:<address>"
#define SYN_RCPT "501 5.5.4 Syntax: RCPT TO:<address>"
#define BAD_FROM "501 5.1.7 Bad sender address syntax"
#define BAD_TO   "501 5.1.3 Bad recipient address syntax"
#define TOO_BIG  "552 5.3.4 Message size exceeds fixed limit"

/* A reply must be a complete, printable SMTP reply line. */
static void
check_reply(const struct smtpd_reply *rep)
{
	const unsigned char *p;

	assert_true(rep->code == 500 || rep->code == 501 || rep->code == 552 || rep->code == 555);
	assert_non_null(rep->dsn);
	assert_int_equal(rep->dsn[0], '0' + rep->code / 100);
	assert_true(rep->text[0] != 0);
	for (p = (const unsigned char *)rep->text; *p; p++)
		assert_true(*p >= 32 && *p < 127);
}

/* ---------------------------------------------------------------- lines */

struct line_case {
	const char *line;
	size_t len; /* 0: strlen */
	enum smtpd_verb verb;
	const char *name;
	const char *arg; /* NULL: refused, name holds "code dsn text" */
};

static const struct line_case line_cases[] = {
	{ "MAIL FROM:<a@b>", 0, SMTPD_MAIL, "MAIL", "FROM:<a@b>" },
	{ "mail from:<a@b>", 0, SMTPD_MAIL, "MAIL", "from:<a@b>" },
	{ "MaIl FROM:<a@b>", 0, SMTPD_MAIL, "MAIL", "FROM:<a@b>" },
	{ "RCPT TO:<a@b> NOTIFY=NEVER", 0, SMTPD_RCPT, "RCPT", "TO:<a@b> NOTIFY=NEVER" },
	{ "QUIT", 0, SMTPD_QUIT, "QUIT", "" },
	{ "quit ", 0, SMTPD_QUIT, "QUIT", "" },
	{ "NOOP   x  ", 0, SMTPD_NOOP, "NOOP", "x" },
	{ "NOOP a  b", 0, SMTPD_NOOP, "NOOP", "a  b" },
	{ "HELO\tclient.example", 0, SMTPD_HELO, "HELO", "client.example" },
	{ "EHLO  client.example", 0, SMTPD_EHLO, "EHLO", "client.example" },
	{ "EHLO [192.0.2.1]", 0, SMTPD_EHLO, "EHLO", "[192.0.2.1]" },
	{ "STARTTLS", 0, SMTPD_STARTTLS, "STARTTLS", "" },
	{ "starttls", 0, SMTPD_STARTTLS, "STARTTLS", "" },
	{ "AUTH PLAIN AGZvbwBiYXI=", 0, SMTPD_AUTH, "AUTH", "PLAIN AGZvbwBiYXI=" },
	{ "DATA", 0, SMTPD_DATA, "DATA", "" },
	{ "DATA\t", 0, SMTPD_DATA, "DATA", "" },
	{ "BDAT 10 LAST", 0, SMTPD_BDAT, "BDAT", "10 LAST" },
	{ "RSET", 0, SMTPD_RSET, "RSET", "" },
	{ "VRFY user", 0, SMTPD_VRFY, "VRFY", "user" },
	{ "EXPN list", 0, SMTPD_EXPN, "EXPN", "list" },
	{ "HELP", 0, SMTPD_HELP, "HELP", "" },
	{ "help me", 0, SMTPD_HELP, "HELP", "me" },
	{ "XFOO bar", 0, SMTPD_UNKNOWN, "XFOO", "bar" },
	{ "xfoo", 0, SMTPD_UNKNOWN, "xfoo", "" },
	{ "GET / HTTP/1.0", 0, SMTPD_UNKNOWN, "GET", "/ HTTP/1.0" },
	{ "ABCDEFGHIJKLMNOP", 0, SMTPD_UNKNOWN, "ABCDEFGHIJKLMNOP", "" },
	{ "MAILFROM", 0, SMTPD_UNKNOWN, "MAILFROM", "" },
	{ "MAIL FROM:<\xc3\xbc@x> SMTPUTF8", 0, SMTPD_MAIL, "MAIL", "FROM:<\xc3\xbc@x> SMTPUTF8" },
	{ "HELO \x01\x7f", 0, SMTPD_HELO, "HELO", "\x01\x7f" },
	{ "ABCDEFGHIJKLMNOPQ", 0, SMTPD_UNKNOWN, "500 5.5.2 Error: command not recognized", NULL },
	{ "", 0, SMTPD_UNKNOWN, "500 5.5.2 Error: bad syntax", NULL },
	{ " MAIL FROM:<a@b>", 0, SMTPD_UNKNOWN, "500 5.5.2 Error: bad syntax", NULL },
	{ "\tQUIT", 0, SMTPD_UNKNOWN, "500 5.5.2 Error: bad syntax", NULL },
	{ "123", 0, SMTPD_UNKNOWN, "500 5.5.2 Error: bad syntax", NULL },
	{ "MAIL:FROM", 0, SMTPD_UNKNOWN, "500 5.5.2 Error: command not recognized", NULL },
	{ "X-FOO", 0, SMTPD_UNKNOWN, "500 5.5.2 Error: command not recognized", NULL },
	{ "EHLO2 x", 0, SMTPD_UNKNOWN, "500 5.5.2 Error: command not recognized", NULL },
	{ "HELO\x80", 0, SMTPD_UNKNOWN, "500 5.5.2 Error: command not recognized", NULL },
	{ "\xc3\x9cHELO", 0, SMTPD_UNKNOWN, "500 5.5.2 Error: bad syntax", NULL },
	{ "MAIL\0 FROM", 10, SMTPD_UNKNOWN, "500 5.5.2 Error: NUL character in command", NULL },
	{ "MAIL FROM:<a\0@b>", 17, SMTPD_UNKNOWN, "500 5.5.2 Error: NUL character in command", NULL },
	{ "QUIT\0", 5, SMTPD_UNKNOWN, "500 5.5.2 Error: NUL character in command", NULL },
	{ "\0", 1, SMTPD_UNKNOWN, "500 5.5.2 Error: NUL character in command", NULL },
	{ "MAIL FROM:<a@b>\r", 0, SMTPD_UNKNOWN, "500 5.5.2 Error: bare CR or LF in command", NULL },
	{ "MAIL FROM:\n<a@b>", 0, SMTPD_UNKNOWN, "500 5.5.2 Error: bare CR or LF in command", NULL },
	{ "QUIT\r\nRSET", 0, SMTPD_UNKNOWN, "500 5.5.2 Error: bare CR or LF in command", NULL },
	{ "\r", 0, SMTPD_UNKNOWN, "500 5.5.2 Error: bare CR or LF in command", NULL },
	{ "\r\0", 2, SMTPD_UNKNOWN, "500 5.5.2 Error: NUL character in command", NULL },
};

static void
test_lines(void **state)
{
	char line[256], got[300];
	size_t i, len;

	(void)state;
	for (i = 0; i < NELEM(line_cases); i++) {
		const struct line_case *c = &line_cases[i];
		struct smtpd_cmd cmd;
		struct smtpd_reply rep;
		int r;

		len = c->len ? c->len : strlen(c->line);
		memcpy(line, c->line, len);
		line[len] = 0;
		r = smtpd_parse_line(line, len, &cmd, &rep);
		if (c->arg) {
			if (r != 0)
				fail_msg("case %zu \"%s\": refused: %d %s", i, c->line, rep.code, rep.text);
			assert_int_equal(cmd.verb, c->verb);
			assert_string_equal(cmd.name, c->name);
			assert_string_equal(cmd.arg, c->arg);
		} else {
			assert_int_equal(r, -1);
			check_reply(&rep);
			snprintf(got, sizeof(got), "%d %s %s", rep.code, rep.dsn, rep.text);
			if (strcmp(got, c->name) != 0)
				fail_msg("case %zu \"%s\": got \"%s\" want \"%s\"", i, c->line, got, c->name);
			assert_int_equal(cmd.verb, SMTPD_UNKNOWN);
			assert_non_null(cmd.arg);
		}
	}
}

/* ---------------------------------------------------------------- MAIL */

/* Run smtpd_parse_mail and describe the outcome in one line (static). */
static const char *
mail_result(const char *arg, int opts, long long size_max, const char **why)
{
	static char res[1024];
	struct smtpd_parse_opts o = { .smtputf8_ok = opts & O_U, .dsn_ok = opts & O_D, .size_max = size_max };
	struct buf addr = BUF_INIT, b = BUF_INIT;
	struct smtpd_mail_args a;
	struct smtpd_reply rep;

	buf_strcpy(&addr, "stale");
	memset(&a, 0x5a, sizeof(a));
	rep.why = "stale";
	if (smtpd_parse_mail(arg, &o, &addr, &a, &rep) < 0) {
		check_reply(&rep);
		/* nothing is left behind on failure */
		assert_int_equal(addr.len, 0);
		assert_null(a.envid);
		assert_null(a.ret);
		assert_null(a.auth);
		snprintf(res, sizeof(res), "%d %s %s", rep.code, rep.dsn, rep.text);
		if (why)
			*why = rep.why;
	} else {
		buf_printf(&b, "<%s>", buf_str(&addr));
		if (a.size)
			buf_printf(&b, " SIZE=%lld", a.size);
		if (a.body)
			buf_printf(&b, " BODY=%s", a.body == SMTPD_BODY_7BIT ? "7BIT" : "8BITMIME");
		if (a.smtputf8)
			buf_puts(&b, " SMTPUTF8");
		if (a.ret)
			buf_printf(&b, " RET=%s", a.ret);
		if (a.envid)
			buf_printf(&b, " ENVID=%s", a.envid);
		if (a.auth)
			buf_printf(&b, " AUTH=%s", a.auth);
		snprintf(res, sizeof(res), "%s", buf_str(&b));
		smtpd_mail_args_free(&a);
		assert_null(a.envid);
	}
	buf_free(&addr);
	buf_free(&b);
	return res;
}

struct mail_case {
	const char *arg;
	int opts;
	long long size_max;
	const char *want;
};

static const struct mail_case mail_cases[] = {
	/* the command itself */
	{ "FROM:<a@b>", 0, 0, "<a@b>" },
	{ "from:<A@B>", 0, 0, "<A@b>" },
	{ "From: <a@b>", 0, 0, "<a@b>" },
	{ "FROM:  \t<a@b>", 0, 0, "<a@b>" },
	{ "FROM:<>", 0, 0, "<>" },
	{ "FROM:<> SIZE=0", 0, 0, "<>" },
	{ "FROM:<a@b> ", 0, 0, "<a@b>" },
	{ "FROM:<@r.example:a@b>", 0, 0, "<a@b>" },
	{ "FROM:<\"a b\"@c>", 0, 0, "<\"a b\"@c>" },
	{ "", 0, 0, SYN_MAIL },
	{ "FROM", 0, 0, SYN_MAIL },
	{ "FROM<a@b>", 0, 0, SYN_MAIL },
	{ "FROM :<a@b>", 0, 0, SYN_MAIL },
	{ "TO:<a@b>", 0, 0, SYN_MAIL },
	{ " FROM:<a@b>", 0, 0, SYN_MAIL },
	{ "FROM:", 0, 0, BAD_FROM },
	{ "FROM:a@b", 0, 0, BAD_FROM },
	{ "FROM:<a@b", 0, 0, BAD_FROM },
	{ "FROM:<a@b>x", 0, 0, BAD_FROM },
	{ "FROM:<a@b>SIZE=1", 0, 0, BAD_FROM },
	{ "FROM:<postmaster>", 0, 0, BAD_FROM },
	{ "FROM:<a..b@c>", 0, 0, BAD_FROM },
	{ "FROM:<a@b\r>", 0, 0, BAD_FROM },
	/* SIZE (RFC 1870) */
	{ "FROM:<a@b> SIZE=1000", 0, 0, "<a@b> SIZE=1000" },
	{ "FROM:<a@b> size=1000 body=8bitmime", 0, 0, "<a@b> SIZE=1000 BODY=8BITMIME" },
	{ "FROM:<a@b>  SIZE=5   BODY=7bit", 0, 0, "<a@b> SIZE=5 BODY=7BIT" },
	{ "FROM:<a@b>\tSIZE=5", 0, 0, "<a@b> SIZE=5" },
	{ "FROM:<a@b> SIZE=10485760", 0, 10485760, "<a@b> SIZE=10485760" },
	{ "FROM:<a@b> SIZE=10485761", 0, 10485760, TOO_BIG },
	{ "FROM:<a@b> SIZE=00000000000000000007", 0, 0, "<a@b> SIZE=7" },
	{ "FROM:<a@b> SIZE=9223372036854775806", 0, 0, "<a@b> SIZE=9223372036854775806" },
	{ "FROM:<a@b> SIZE=99999999999999999999", 0, 0, TOO_BIG },
	{ "FROM:<a@b> SIZE=99999999999999999999", 0, 100, TOO_BIG },
	{ "FROM:<a@b> SIZE=999999999999999999999", 0, 0, "501 5.5.4 Bad value for SIZE" },
	{ "FROM:<a@b> SIZE=", 0, 0, "501 5.5.4 Bad value for SIZE" },
	{ "FROM:<a@b> SIZE", 0, 0, "501 5.5.4 Bad value for SIZE" },
	{ "FROM:<a@b> SIZE=-1", 0, 0, "501 5.5.4 Bad value for SIZE" },
	{ "FROM:<a@b> SIZE=+1", 0, 0, "501 5.5.4 Bad value for SIZE" },
	{ "FROM:<a@b> SIZE=1k", 0, 0, "501 5.5.4 Bad value for SIZE" },
	{ "FROM:<a@b> SIZE=0x10", 0, 0, "501 5.5.4 Bad value for SIZE" },
	{ "FROM:<a@b> SIZE= 1", 0, 0, "501 5.5.4 Bad value for SIZE" },
	{ "FROM:<a@b> SIZE=1=2", 0, 0, "501 5.5.4 Bad value for SIZE" },
	{ "FROM:<a@b> SIZE=1 SIZE=2", 0, 0, "555 5.5.4 Repeated option: SIZE" },
	{ "FROM:<a@b> size=1 Size=1", 0, 0, "555 5.5.4 Repeated option: Size" },
	/* BODY (RFC 6152, RFC 3030) */
	{ "FROM:<a@b> BODY=7BIT", 0, 0, "<a@b> BODY=7BIT" },
	{ "FROM:<a@b> BODY=8bitMIME", 0, 0, "<a@b> BODY=8BITMIME" },
	{ "FROM:<a@b> BODY=BINARYMIME", 0, 0, "555 5.5.4 Unsupported option: BODY=BINARYMIME" },
	{ "FROM:<a@b> BODY=8BIT", 0, 0, "501 5.5.4 Bad value for BODY" },
	{ "FROM:<a@b> BODY=", 0, 0, "501 5.5.4 Bad value for BODY" },
	{ "FROM:<a@b> BODY", 0, 0, "501 5.5.4 Bad value for BODY" },
	{ "FROM:<a@b> BODY=7BIT BODY=7BIT", 0, 0, "555 5.5.4 Repeated option: BODY" },
	/* SMTPUTF8 (RFC 6531) */
	{ "FROM:<a@b> SMTPUTF8", O_U, 0, "<a@b> SMTPUTF8" },
	{ "FROM:<a@b> smtputf8", O_U, 0, "<a@b> SMTPUTF8" },
	{ "FROM:<a@b> SMTPUTF8", 0, 0, "555 5.5.4 Unsupported option: SMTPUTF8" },
	{ "FROM:<a@b> SMTPUTF8=yes", O_U, 0, "501 5.5.4 Bad value for SMTPUTF8" },
	{ "FROM:<a@b> SMTPUTF8=", O_U, 0, "501 5.5.4 Bad value for SMTPUTF8" },
	{ "FROM:<a@b> SMTPUTF8 SMTPUTF8", O_U, 0, "555 5.5.4 Repeated option: SMTPUTF8" },
	{ "FROM:<\xc3\xbc@b\xc3\xbc.x> SMTPUTF8", O_U, 0, "<\xc3\xbc@b\xc3\xbc.x> SMTPUTF8" },
	{ "FROM:<\xc3\xbc@x> BODY=8BITMIME SMTPUTF8", O_U, 0, "<\xc3\xbc@x> BODY=8BITMIME SMTPUTF8" },
	{ "FROM:<\xc3\xbc@x>", O_U, 0, BAD_FROM },
	{ "FROM:<\xc3\xbc@x> SMTPUTF8", 0, 0, BAD_FROM },
	{ "FROM:<\xc0\xaf@x> SMTPUTF8", O_U, 0, BAD_FROM },
	/* RET and ENVID (RFC 3461) */
	{ "FROM:<a@b> RET=FULL", O_D, 0, "<a@b> RET=FULL" },
	{ "FROM:<a@b> ret=hdrs", O_D, 0, "<a@b> RET=HDRS" },
	{ "FROM:<a@b> RET=FULL", 0, 0, "555 5.5.4 Unsupported option: RET" },
	{ "FROM:<a@b> RET=NONE", O_D, 0, "501 5.5.4 Bad value for RET" },
	{ "FROM:<a@b> RET", O_D, 0, "501 5.5.4 Bad value for RET" },
	{ "FROM:<a@b> RET=FULL RET=HDRS", O_D, 0, "555 5.5.4 Repeated option: RET" },
	{ "FROM:<a@b> ENVID=QQ+2Bx", O_D, 0, "<a@b> ENVID=QQ+2Bx" },
	{ "FROM:<a@b> ENVID=+0D+0A+00", O_D, 0, "<a@b> ENVID=+0D+0A+00" },
	{ "FROM:<a@b> ENVID=<id@host>", O_D, 0, "<a@b> ENVID=<id@host>" },
	{ "FROM:<a@b> ENVID=a+2b", O_D, 0, "501 5.5.4 Bad value for ENVID" },
	{ "FROM:<a@b> ENVID=a+", O_D, 0, "501 5.5.4 Bad value for ENVID" },
	{ "FROM:<a@b> ENVID=a=b", O_D, 0, "501 5.5.4 Bad value for ENVID" },
	{ "FROM:<a@b> ENVID=", O_D, 0, "501 5.5.4 Bad value for ENVID" },
	{ "FROM:<a@b> ENVID", O_D, 0, "501 5.5.4 Bad value for ENVID" },
	{ "FROM:<a@b> ENVID=\xc3\xbc", O_D | O_U, 0, "501 5.5.4 Bad value for ENVID" },
	{ "FROM:<a@b> ENVID=x", 0, 0, "555 5.5.4 Unsupported option: ENVID" },
	{ "FROM:<a@b> ENVID=x ENVID=y", O_D, 0, "555 5.5.4 Repeated option: ENVID" },
	/* a failure after a value was stored frees it */
	{ "FROM:<a@b> ENVID=x RET=BAD", O_D, 0, "501 5.5.4 Bad value for RET" },
	{ "FROM:<a@b> RET=FULL AUTH=<> ENVID=x SIZE=x", O_D, 0, "501 5.5.4 Bad value for SIZE" },
	{ "FROM:<\xc3\xbc@x> ENVID=x AUTH=<> RET=FULL", O_D | O_U, 0, BAD_FROM },
	/* AUTH (RFC 4954) */
	{ "FROM:<a@b> AUTH=<>", 0, 0, "<a@b> AUTH=<>" },
	{ "FROM:<a@b> AUTH=user+40example.com", 0, 0, "<a@b> AUTH=user+40example.com" },
	{ "FROM:<a@b> AUTH=", 0, 0, "501 5.5.4 Bad value for AUTH" },
	{ "FROM:<a@b> AUTH", 0, 0, "501 5.5.4 Bad value for AUTH" },
	{ "FROM:<a@b> AUTH=a=b", 0, 0, "501 5.5.4 Bad value for AUTH" },
	{ "FROM:<a@b> AUTH=a+4", 0, 0, "501 5.5.4 Bad value for AUTH" },
	{ "FROM:<a@b> AUTH=<> AUTH=<>", 0, 0, "555 5.5.4 Repeated option: AUTH" },
	/* unknown and malformed keywords */
	{ "FROM:<a@b> XFOO=bar", 0, 0, "555 5.5.4 Unsupported option: XFOO" },
	{ "FROM:<a@b> x-foo", 0, 0, "555 5.5.4 Unsupported option: x-foo" },
	{ "FROM:<a@b> NOTIFY=NEVER", O_D, 0, "555 5.5.4 Unsupported option: NOTIFY" },
	{ "FROM:<a@b> ORCPT=rfc822;a@b", O_D, 0, "555 5.5.4 Unsupported option: ORCPT" },
	{ "FROM:<a@b> SIZEX=1", 0, 0, "555 5.5.4 Unsupported option: SIZEX" },
	{ "FROM:<a@b> SIZ=1", 0, 0, "555 5.5.4 Unsupported option: SIZ" },
	{ "FROM:<a@b> XFOO SIZE=1", 0, 0, "555 5.5.4 Unsupported option: XFOO" },
	{ "FROM:<a@b> -bad", 0, 0, "501 5.5.4 Syntax: bad parameter: -bad" },
	{ "FROM:<a@b> =x", 0, 0, "501 5.5.4 Syntax: bad parameter: " },
	{ "FROM:<a@b> SI_ZE=1", 0, 0, "501 5.5.4 Syntax: bad parameter: SI_ZE" },
	{ "FROM:<a@b> \x01X=1", 0, 0, "501 5.5.4 Syntax: bad parameter: \\x01X" },
	{ "FROM:<a@b> \x1b[2J", 0, 0, "501 5.5.4 Syntax: bad parameter: \\x1b[2J" },
	{ "FROM:<a@b> X\xc3\xbc", O_U, 0, "501 5.5.4 Syntax: bad parameter: X\\xc3\\xbc" },
	{ "FROM:<a@b> \x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a", 0,
	    0,
	    "501 5.5.4 Syntax: bad parameter: "
	    "\\x01\\x02\\x03\\x04\\x05\\x06\\x07\\x08\\x0b\\x0c\\x0e\\x0f\\x10\\x11\\x12"
	    "\\x13\\x14\\x15\\x16\\x17..." },
	{ "FROM:<a@b> A234567890123456789012345678901234567890123456789", 0, 0,
	    "555 5.5.4 Unsupported option: A234567890123456789012345678901234567890..." },
	{ "FROM:<a@b> A2345678901234567890123456789012345678901234567890123456789012345", 0, 0,
	    "501 5.5.4 Syntax: bad parameter: A234567890123456789012345678901234567890..." },
	/* everything at once */
	{ "FROM:<a@b> SIZE=10 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=abc AUTH=<>", O_U | O_D, 100,
	    "<a@b> SIZE=10 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=abc AUTH=<>" },
};

static void
test_mail(void **state)
{
	size_t i;
	const char *got;

	(void)state;
	for (i = 0; i < NELEM(mail_cases); i++) {
		const struct mail_case *c = &mail_cases[i];

		got = mail_result(c->arg, c->opts, c->size_max, NULL);
		if (strcmp(got, c->want) != 0)
			fail_msg("case %zu \"%s\": got \"%s\" want \"%s\"", i, c->arg, got, c->want);
	}
}

static void
test_mail_why(void **state)
{
	const char *why = NULL;

	(void)state;
	assert_string_equal(mail_result("FROM:<a@b", 0, 0, &why), BAD_FROM);
	assert_string_equal(why, "Missing \">\"");
	assert_string_equal(mail_result("FROM:<a@b>x", 0, 0, &why), BAD_FROM);
	assert_string_equal(why, "Junk after address");
	assert_string_equal(mail_result("FROM:<\xc3\xbc@x>", O_U, 0, &why), BAD_FROM);
	assert_string_equal(why, "Non-ASCII address without SMTPUTF8");
	assert_string_equal(mail_result("FROM:<\xc3\xbc@x> SMTPUTF8", 0, 0, &why), BAD_FROM);
	assert_string_equal(why, "Non-ASCII address without SMTPUTF8");
	why = "stale";
	assert_string_equal(mail_result("FROM:<a@b> XFOO", 0, 0, &why), "555 5.5.4 Unsupported option: XFOO");
	assert_null(why);
}

static void
test_mail_lengths(void **state)
{
	char arg[2048], want[2048];

	(void)state;
	/* ENVID: 100 characters of xtext */
	snprintf(arg, sizeof(arg), "FROM:<a@b> ENVID=%0100d", 0);
	snprintf(want, sizeof(want), "<a@b> ENVID=%0100d", 0);
	assert_string_equal(mail_result(arg, O_D, 0, NULL), want);
	snprintf(arg, sizeof(arg), "FROM:<a@b> ENVID=%0101d", 0);
	assert_string_equal(mail_result(arg, O_D, 0, NULL), "501 5.5.4 Bad value for ENVID");
	/* AUTH: 500 */
	snprintf(arg, sizeof(arg), "FROM:<a@b> AUTH=%0500d", 0);
	assert_true(strncmp(mail_result(arg, 0, 0, NULL), "<a@b> AUTH=000", 14) == 0);
	snprintf(arg, sizeof(arg), "FROM:<a@b> AUTH=%0501d", 0);
	assert_string_equal(mail_result(arg, 0, 0, NULL), "501 5.5.4 Bad value for AUTH");
	/* a 10 KiB address and a 10 KiB list of parameters */
	{
		char *big = malloc(12000);

		assert_non_null(big);
		strcpy(big, "FROM:<");
		memset(big + 6, 'a', 10240);
		strcpy(big + 6 + 10240, "@b>");
		assert_string_equal(mail_result(big, 0, 0, NULL), BAD_FROM);
		strcpy(big, "FROM:<a@b>");
		for (size_t n = strlen(big); n < 10240; n += 7)
			strcpy(big + n, " SIZE=1");
		assert_string_equal(mail_result(big, 0, 0, NULL), "555 5.5.4 Repeated option: SIZE");
		strcpy(big, "FROM:<a@b> SIZE=");
		memset(big + 16, '9', 10240);
		big[16 + 10240] = 0;
		assert_string_equal(mail_result(big, 0, 0, NULL), "501 5.5.4 Bad value for SIZE");
		free(big);
	}
}

/* ---------------------------------------------------------------- RCPT */

static const char *
notify_words(int n)
{
	static char s[64];

	s[0] = 0;
	if (n & QF_NOTIFY_NEVER)
		strcat(s, ",NEVER");
	if (n & QF_NOTIFY_SUCCESS)
		strcat(s, ",SUCCESS");
	if (n & QF_NOTIFY_FAILURE)
		strcat(s, ",FAILURE");
	if (n & QF_NOTIFY_DELAY)
		strcat(s, ",DELAY");
	return s + 1;
}

static const char *
rcpt_result(const char *arg, int opts)
{
	static char res[1024];
	struct smtpd_parse_opts o = { .smtputf8_ok = opts & O_U, .dsn_ok = opts & O_D, .size_max = 0 };
	struct buf addr = BUF_INIT, b = BUF_INIT;
	struct smtpd_rcpt_args a;
	struct smtpd_reply rep;

	buf_strcpy(&addr, "stale");
	memset(&a, 0x5a, sizeof(a));
	if (smtpd_parse_rcpt(arg, &o, opts & O_T, &addr, &a, &rep) < 0) {
		check_reply(&rep);
		assert_int_equal(addr.len, 0);
		assert_null(a.orcpt);
		assert_int_equal(a.notify, 0);
		snprintf(res, sizeof(res), "%d %s %s", rep.code, rep.dsn, rep.text);
	} else {
		buf_printf(&b, "<%s>", buf_str(&addr));
		if (a.notify)
			buf_printf(&b, " NOTIFY=%s", notify_words(a.notify));
		if (a.orcpt)
			buf_printf(&b, " ORCPT=%s", a.orcpt);
		snprintf(res, sizeof(res), "%s", buf_str(&b));
		smtpd_rcpt_args_free(&a);
		assert_null(a.orcpt);
	}
	buf_free(&addr);
	buf_free(&b);
	return res;
}

struct rcpt_case {
	const char *arg;
	int opts;
	const char *want;
};

static const struct rcpt_case rcpt_cases[] = {
	{ "TO:<a@b>", 0, "<a@b>" },
	{ "to: <A@B>", 0, "<A@b>" },
	{ "To:\t<a@B.Example>", 0, "<a@b.example>" },
	{ "TO:<postmaster>", 0, "<postmaster>" },
	{ "TO:<Postmaster>", 0, "<Postmaster>" },
	{ "TO:<@r:a@b>", 0, "<a@b>" },
	{ "TO:<\"user@other\"@ours>", 0, "<\"user@other\"@ours>" },
	{ "TO:<user%other@ours>", 0, "<user%other@ours>" },
	{ "TO:<>", 0, BAD_TO },
	{ "TO:a@b", 0, BAD_TO },
	{ "TO:<a@b>x", 0, BAD_TO },
	{ "TO:<a@b", 0, BAD_TO },
	{ "TO:<postmasterx>", 0, BAD_TO },
	{ "TO:", 0, BAD_TO },
	{ "TO<a@b>", 0, SYN_RCPT },
	{ "FROM:<a@b>", 0, SYN_RCPT },
	{ "", 0, SYN_RCPT },
	{ "T", 0, SYN_RCPT },
	{ "TO:<\xc3\xbc@x>", O_U, BAD_TO },
	{ "TO:<\xc3\xbc@x>", O_U | O_T, "<\xc3\xbc@x>" },
	{ "TO:<\xed\xa0\x80@x>", O_U | O_T, BAD_TO },
	/* NOTIFY */
	{ "TO:<a@b> NOTIFY=NEVER", O_D, "<a@b> NOTIFY=NEVER" },
	{ "TO:<a@b> NOTIFY=SUCCESS,FAILURE,DELAY", O_D, "<a@b> NOTIFY=SUCCESS,FAILURE,DELAY" },
	{ "TO:<a@b> notify=delay,success", O_D, "<a@b> NOTIFY=SUCCESS,DELAY" },
	{ "TO:<a@b> NOTIFY=FAILURE", O_D, "<a@b> NOTIFY=FAILURE" },
	{ "TO:<a@b> NOTIFY=SUCCESS,SUCCESS", O_D, "<a@b> NOTIFY=SUCCESS" },
	{ "TO:<a@b> NOTIFY=Never", O_D, "<a@b> NOTIFY=NEVER" },
	{ "TO:<a@b> NOTIFY=NEVER,SUCCESS", O_D, "501 5.5.4 Bad value for NOTIFY" },
	{ "TO:<a@b> NOTIFY=SUCCESS,NEVER", O_D, "501 5.5.4 Bad value for NOTIFY" },
	{ "TO:<a@b> NOTIFY=NEVER,NEVER", O_D, "<a@b> NOTIFY=NEVER" },
	{ "TO:<a@b> NOTIFY=", O_D, "501 5.5.4 Bad value for NOTIFY" },
	{ "TO:<a@b> NOTIFY", O_D, "501 5.5.4 Bad value for NOTIFY" },
	{ "TO:<a@b> NOTIFY=SUCCESS,", O_D, "501 5.5.4 Bad value for NOTIFY" },
	{ "TO:<a@b> NOTIFY=,SUCCESS", O_D, "501 5.5.4 Bad value for NOTIFY" },
	{ "TO:<a@b> NOTIFY=SUCCESS,,DELAY", O_D, "501 5.5.4 Bad value for NOTIFY" },
	{ "TO:<a@b> NOTIFY=FOO", O_D, "501 5.5.4 Bad value for NOTIFY" },
	{ "TO:<a@b> NOTIFY=SUCCESSFAILURE", O_D, "501 5.5.4 Bad value for NOTIFY" },
	{ "TO:<a@b> NOTIFY=SUCCES", O_D, "501 5.5.4 Bad value for NOTIFY" },
	{ "TO:<a@b> NOTIFY=NEVER", 0, "555 5.5.4 Unsupported option: NOTIFY" },
	{ "TO:<a@b> NOTIFY=NEVER NOTIFY=NEVER", O_D, "555 5.5.4 Repeated option: NOTIFY" },
	/* ORCPT */
	{ "TO:<a@b> ORCPT=rfc822;a@b", O_D, "<a@b> ORCPT=rfc822;a@b" },
	{ "TO:<a@b> ORCPT=RFC822;a+40b", O_D, "<a@b> ORCPT=RFC822;a+40b" },
	{ "TO:<a@b> ORCPT=utf-8;\\x{00FC}@b", O_D, "<a@b> ORCPT=utf-8;\\x{00FC}@b" },
	{ "TO:<a@b> ORCPT=rfc822;+0D+0A+00", O_D, "<a@b> ORCPT=rfc822;+0D+0A+00" },
	{ "TO:<a@b> ORCPT=rfc822", O_D, "501 5.5.4 Bad value for ORCPT" },
	{ "TO:<a@b> ORCPT=;a@b", O_D, "501 5.5.4 Bad value for ORCPT" },
	{ "TO:<a@b> ORCPT=rfc822;", O_D, "501 5.5.4 Bad value for ORCPT" },
	{ "TO:<a@b> ORCPT=rfc822;a=b", O_D, "501 5.5.4 Bad value for ORCPT" },
	{ "TO:<a@b> ORCPT=rfc822;a+2b", O_D, "501 5.5.4 Bad value for ORCPT" },
	{ "TO:<a@b> ORCPT=rfc822;a+", O_D, "501 5.5.4 Bad value for ORCPT" },
	{ "TO:<a@b> ORCPT=rf(c;a", O_D, "501 5.5.4 Bad value for ORCPT" },
	{ "TO:<a@b> ORCPT=rf.c;a", O_D, "501 5.5.4 Bad value for ORCPT" },
	{ "TO:<a@b> ORCPT=", O_D, "501 5.5.4 Bad value for ORCPT" },
	{ "TO:<a@b> ORCPT", O_D, "501 5.5.4 Bad value for ORCPT" },
	{ "TO:<a@b> ORCPT=rfc822;\xc3\xbc", O_D | O_U | O_T, "501 5.5.4 Bad value for ORCPT" },
	{ "TO:<a@b> ORCPT=rfc822;a@b", 0, "555 5.5.4 Unsupported option: ORCPT" },
	{ "TO:<a@b> ORCPT=rfc822;a ORCPT=rfc822;b", O_D, "555 5.5.4 Repeated option: ORCPT" },
	/* MAIL's parameters are not RCPT's */
	{ "TO:<a@b> SIZE=10", O_D, "555 5.5.4 Unsupported option: SIZE" },
	{ "TO:<a@b> SMTPUTF8", O_D | O_U, "555 5.5.4 Unsupported option: SMTPUTF8" },
	{ "TO:<a@b> RET=FULL", O_D, "555 5.5.4 Unsupported option: RET" },
	{ "TO:<a@b> XRCPTFORWARD=x", O_D, "555 5.5.4 Unsupported option: XRCPTFORWARD" },
	/* failures after ORCPT was stored free it */
	{ "TO:<a@b> ORCPT=rfc822;x NOTIFY=BAD", O_D, "501 5.5.4 Bad value for NOTIFY" },
	{ "TO:<a@b> NOTIFY=DELAY ORCPT=rfc822;x XFOO", O_D, "555 5.5.4 Unsupported option: XFOO" },
	{ "TO:<a@b> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@b", O_D, "<a@b> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@b" },
};

static void
test_rcpt(void **state)
{
	size_t i;
	const char *got;
	char arg[1024], want[1024];

	(void)state;
	for (i = 0; i < NELEM(rcpt_cases); i++) {
		const struct rcpt_case *c = &rcpt_cases[i];

		got = rcpt_result(c->arg, c->opts);
		if (strcmp(got, c->want) != 0)
			fail_msg("case %zu \"%s\": got \"%s\" want \"%s\"", i, c->arg, got, c->want);
	}
	/* ORCPT: 500 characters in all */
	snprintf(arg, sizeof(arg), "TO:<a@b> ORCPT=rfc822;%0493d", 0);
	snprintf(want, sizeof(want), "<a@b> ORCPT=rfc822;%0493d", 0);
	assert_string_equal(rcpt_result(arg, O_D), want);
	snprintf(arg, sizeof(arg), "TO:<a@b> ORCPT=rfc822;%0494d", 0);
	assert_string_equal(rcpt_result(arg, O_D), "501 5.5.4 Bad value for ORCPT");
}

/* ---------------------------------------------------------------- xtext */

static const struct {
	const char *s;
	bool valid;
	const char *shown;
} xtext_cases[] = {
	{ "", true, "" },
	{ "abc", true, "abc" },
	{ "a+2Bb", true, "a+b" },
	{ "+41", true, "A" },
	{ "!~", true, "!~" },
	{ "<id@host>", true, "<id@host>" },
	{ "+2B+3D", true, "+=" },
	{ "+0D+0A", true, "\\x0d\\x0a" },
	{ "+00", true, "\\x00" },
	{ "a+00b", true, "a\\x00b" },
	{ "+FF+80", true, "\\xff\\x80" },
	{ "+5C", true, "\\" },
	{ "+7F+1B", true, "\\x7f\\x1b" },
	{ "+2b", false, NULL },
	{ "+aB", false, NULL },
	{ "+2", false, NULL },
	{ "+", false, NULL },
	{ "a+", false, NULL },
	{ "++41", false, NULL },
	{ "+G0", false, NULL },
	{ "+0G", false, NULL },
	{ "a=b", false, NULL },
	{ "=", false, NULL },
	{ "a b", false, NULL },
	{ "\t", false, NULL },
	{ "a\r\n", false, NULL },
	{ "\x7f", false, NULL },
	{ "\x80", false, NULL },
	{ "\xc3\xbc", false, NULL },
};

static void
test_xtext(void **state)
{
	struct buf out = BUF_INIT;
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(xtext_cases); i++) {
		if (smtpd_xtext_valid(xtext_cases[i].s) != xtext_cases[i].valid)
			fail_msg("case %zu \"%s\": valid is not %d", i, xtext_cases[i].s, xtext_cases[i].valid);
		buf_strcpy(&out, "stale");
		if (xtext_cases[i].valid) {
			assert_int_equal(smtpd_xtext_display(xtext_cases[i].s, &out), 0);
			assert_string_equal(buf_str(&out), xtext_cases[i].shown);
		} else {
			assert_int_equal(smtpd_xtext_display(xtext_cases[i].s, &out), -1);
			assert_string_equal(buf_str(&out), "");
		}
	}
	buf_free(&out);
}

/* ---------------------------------------------------------------- BDAT */

static const struct {
	const char *arg;
	int ok;
	long long size;
	bool last;
	const char *text;
} bdat_cases[] = {
	{ "0", 0, 0, false, NULL },
	{ "0 LAST", 0, 0, true, NULL },
	{ "100", 0, 100, false, NULL },
	{ "100 LAST", 0, 100, true, NULL },
	{ "100 last", 0, 100, true, NULL },
	{ "100 Last", 0, 100, true, NULL },
	{ "100  LAST", 0, 100, true, NULL },
	{ "100\tLAST", 0, 100, true, NULL },
	{ "100 LAST ", 0, 100, true, NULL },
	{ "100 ", 0, 100, false, NULL },
	{ "00010", 0, 10, false, NULL },
	{ "1099511627776", 0, 1099511627776LL, false, NULL },
	{ "1099511627777", -1, 0, false, "BDAT size too large" },
	{ "99999999999999999999999999", -1, 0, false, "BDAT size too large" },
	{ "", -1, 0, false, "Syntax: BDAT size [LAST]" },
	{ "LAST", -1, 0, false, "Syntax: BDAT size [LAST]" },
	{ "-1", -1, 0, false, "Syntax: BDAT size [LAST]" },
	{ "+1", -1, 0, false, "Syntax: BDAT size [LAST]" },
	{ " 10", -1, 0, false, "Syntax: BDAT size [LAST]" },
	{ "10x", -1, 0, false, "Syntax: BDAT size [LAST]" },
	{ "0x10", -1, 0, false, "Syntax: BDAT size [LAST]" },
	{ "10LAST", -1, 0, false, "Syntax: BDAT size [LAST]" },
	{ "10 LASTX", -1, 0, false, "Syntax: BDAT size [LAST]" },
	{ "10 LAS", -1, 0, false, "Syntax: BDAT size [LAST]" },
	{ "10 LAST X", -1, 0, false, "Syntax: BDAT size [LAST]" },
	{ "10 LAST LAST", -1, 0, false, "Syntax: BDAT size [LAST]" },
	{ "10 FIRST", -1, 0, false, "Syntax: BDAT size [LAST]" },
	{ "10 20", -1, 0, false, "Syntax: BDAT size [LAST]" },
	{ "1.5", -1, 0, false, "Syntax: BDAT size [LAST]" },
};

static void
test_bdat(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(bdat_cases); i++) {
		long long size = -7;
		bool last = true;
		struct smtpd_reply rep;
		int r = smtpd_parse_bdat(bdat_cases[i].arg, &size, &last, &rep);

		if (r != bdat_cases[i].ok)
			fail_msg("case %zu \"%s\": result %d", i, bdat_cases[i].arg, r);
		if (r == 0) {
			assert_int_equal(size, bdat_cases[i].size);
			assert_int_equal(last, bdat_cases[i].last);
		} else {
			check_reply(&rep);
			assert_int_equal(rep.code, 501);
			assert_string_equal(rep.dsn, "5.5.4");
			assert_string_equal(rep.text, bdat_cases[i].text);
			assert_false(last);
		}
	}
}

/* ---------------------------------------------------------------- base64 */

static const struct {
	const char *in;
	size_t max;
	int ok;
	const char *out;
	size_t outlen;
} b64_cases[] = {
	/* RFC 4648 section 10 */
	{ "", 100, 0, "", 0 },
	{ "Zg==", 100, 0, "f", 1 },
	{ "Zm8=", 100, 0, "fo", 2 },
	{ "Zm9v", 100, 0, "foo", 3 },
	{ "Zm9vYg==", 100, 0, "foob", 4 },
	{ "Zm9vYmE=", 100, 0, "fooba", 5 },
	{ "Zm9vYmFy", 100, 0, "foobar", 6 },
	/* RFC 4954: "=" is the empty response */
	{ "=", 0, 0, "", 0 },
	{ "AGZvbwBiYXI=", 100, 0, "\0foo\0bar", 8 },
	{ "/+8=", 100, 0, "\xff\xef", 2 },
	/* the limit */
	{ "Zm9vYmFy", 6, 0, "foobar", 6 },
	{ "Zm9vYmFy", 5, -1, NULL, 0 },
	{ "Zm9vYmE=", 5, 0, "fooba", 5 },
	{ "Zm9vYmE=", 4, -1, NULL, 0 },
	{ "Zg==", 1, 0, "f", 1 },
	{ "Zg==", 0, -1, NULL, 0 },
	/* length and padding */
	{ "Zg=", 100, -1, NULL, 0 },
	{ "Zg", 100, -1, NULL, 0 },
	{ "Z", 100, -1, NULL, 0 },
	{ "Zm9vY", 100, -1, NULL, 0 },
	{ "Z===", 100, -1, NULL, 0 },
	{ "====", 100, -1, NULL, 0 },
	{ "==", 100, -1, NULL, 0 },
	{ "Zg==Zg==", 100, -1, NULL, 0 },
	{ "Zg=a", 100, -1, NULL, 0 },
	{ "Z=g=", 100, -1, NULL, 0 },
	{ "Zm9v=", 100, -1, NULL, 0 },
	{ "Zm9v====", 100, -1, NULL, 0 },
	/* non-canonical: bits beyond the data */
	{ "Zh==", 100, -1, NULL, 0 },
	{ "Zm9=", 100, -1, NULL, 0 },
	/* outside the alphabet, white space included */
	{ "Zm9v\n", 100, -1, NULL, 0 },
	{ "Zm9v\r\n", 100, -1, NULL, 0 },
	{ "Zm 9v", 100, -1, NULL, 0 },
	{ " Zm9v", 100, -1, NULL, 0 },
	{ "Zm9v ", 100, -1, NULL, 0 },
	{ "Zm9\tv", 100, -1, NULL, 0 },
	{ "Zm9-", 100, -1, NULL, 0 },
	{ "Zm9_", 100, -1, NULL, 0 },
	{ "Zm9*", 100, -1, NULL, 0 },
	{ "Zm9\x80", 100, -1, NULL, 0 },
	{ "*", 100, -1, NULL, 0 },
};

static void
test_base64(void **state)
{
	struct buf out = BUF_INIT, enc = BUF_INIT;
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(b64_cases); i++) {
		int r;

		buf_strcpy(&out, "stale");
		r = sasl_b64_decode(b64_cases[i].in, &out, b64_cases[i].max);
		if (r != b64_cases[i].ok)
			fail_msg("case %zu \"%s\": result %d", i, b64_cases[i].in, r);
		if (r == 0) {
			assert_int_equal(out.len, b64_cases[i].outlen);
			assert_memory_equal(out.data, b64_cases[i].out, out.len);
			assert_int_equal(out.data[out.len], 0);
			/* and back, except the two spellings of empty */
			sasl_b64_encode(out.data, out.len, &enc);
			if (strcmp(b64_cases[i].in, "=") != 0)
				assert_string_equal(buf_str(&enc), b64_cases[i].in);
		} else {
			assert_int_equal(out.len, 0);
		}
	}
	buf_strcpy(&enc, "stale");
	sasl_b64_encode((const unsigned char *)"", 0, &enc);
	assert_string_equal(buf_str(&enc), "");
	buf_free(&out);
	buf_free(&enc);
}

/* More than one EVP chunk each way, every byte value. */
static void
test_base64_big(void **state)
{
	const size_t n = 200003;
	unsigned char *data = malloc(n);
	struct buf enc = BUF_INIT, dec = BUF_INIT;
	size_t i;

	(void)state;
	assert_non_null(data);
	for (i = 0; i < n; i++)
		data[i] = (unsigned char)(i * 7 + i / 251);
	sasl_b64_encode(data, n, &enc);
	assert_int_equal(enc.len, (n + 2) / 3 * 4);
	assert_int_equal(strlen(buf_str(&enc)), enc.len);
	assert_int_equal(sasl_b64_decode(buf_str(&enc), &dec, n), 0);
	assert_int_equal(dec.len, n);
	assert_memory_equal(dec.data, data, n);
	assert_int_equal(sasl_b64_decode(buf_str(&enc), &dec, n - 1), -1);
	/* one bad character deep inside the second chunk */
	enc.data[100000] = '-';
	assert_int_equal(sasl_b64_decode(buf_str(&enc), &dec, n), -1);
	buf_free(&enc);
	buf_free(&dec);
	free(data);
}

/* ---------------------------------------------------------------- every byte */

static void
test_every_byte(void **state)
{
	static const char *mails[] = {
		"FROM:<a.b@c.example> SIZE=100 BODY=8BITMIME RET=FULL ENVID=x+2By AUTH=<>",
		"FROM:<\"q r\"@[1.2.3.4]> SMTPUTF8",
		"FROM:<>",
	};
	static const char *rcpts[] = {
		"TO:<a@b.example> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;a+40b",
		"TO:<postmaster>",
	};
	static const char *lines[] = { "MAIL FROM:<a@b>", "QUIT", "EHLO x" };
	static const char *others[] = { "1234 LAST", "Zm9vYmE=", "a+2Bb" };
	struct smtpd_parse_opts all = { .smtputf8_ok = true, .dsn_ok = true, .size_max = 1000 };
	struct smtpd_parse_opts none = { .smtputf8_ok = false, .dsn_ok = false, .size_max = 0 };
	struct buf addr = BUF_INIT, out = BUF_INIT;
	struct smtpd_mail_args ma;
	struct smtpd_rcpt_args ra;
	struct smtpd_reply rep;
	struct smtpd_cmd cmd;
	char s[256];
	size_t i, pos, len;
	int c;

	(void)state;
	for (i = 0; i < NELEM(mails); i++) {
		len = strlen(mails[i]);
		for (pos = 0; pos < len; pos++)
			for (c = 1; c < 256; c++) {
				memcpy(s, mails[i], len + 1);
				s[pos] = (char)c;
				if (smtpd_parse_mail(s, &all, &addr, &ma, &rep) == 0)
					smtpd_mail_args_free(&ma);
				else
					check_reply(&rep);
				if (smtpd_parse_mail(s, &none, &addr, &ma, &rep) == 0)
					smtpd_mail_args_free(&ma);
				else
					check_reply(&rep);
			}
	}
	for (i = 0; i < NELEM(rcpts); i++) {
		len = strlen(rcpts[i]);
		for (pos = 0; pos < len; pos++)
			for (c = 1; c < 256; c++) {
				memcpy(s, rcpts[i], len + 1);
				s[pos] = (char)c;
				if (smtpd_parse_rcpt(s, &all, true, &addr, &ra, &rep) == 0)
					smtpd_rcpt_args_free(&ra);
				else
					check_reply(&rep);
				if (smtpd_parse_rcpt(s, &none, false, &addr, &ra, &rep) == 0)
					smtpd_rcpt_args_free(&ra);
				else
					check_reply(&rep);
			}
	}
	/* command lines take NUL too, through the explicit length */
	for (i = 0; i < NELEM(lines); i++) {
		len = strlen(lines[i]);
		for (pos = 0; pos < len; pos++)
			for (c = 0; c < 256; c++) {
				memcpy(s, lines[i], len + 1);
				s[pos] = (char)c;
				if (smtpd_parse_line(s, len, &cmd, &rep) == 0) {
					assert_non_null(cmd.name);
					assert_true(cmd.arg >= s && cmd.arg <= s + len);
					assert_true(c != 0 && c != '\r' && c != '\n');
				} else {
					check_reply(&rep);
					assert_int_equal(rep.code, 500);
				}
			}
	}
	for (i = 0; i < NELEM(others); i++) {
		len = strlen(others[i]);
		for (pos = 0; pos < len; pos++)
			for (c = 1; c < 256; c++) {
				long long size;
				bool last;

				memcpy(s, others[i], len + 1);
				s[pos] = (char)c;
				if (smtpd_parse_bdat(s, &size, &last, &rep) == 0)
					assert_true(size >= 0 && size <= 1099511627776LL);
				else
					check_reply(&rep);
				if (sasl_b64_decode(s, &out, 100) == 0)
					assert_true(out.len <= 6);
				if (smtpd_xtext_valid(s))
					assert_int_equal(smtpd_xtext_display(s, &out), 0);
				else
					assert_int_equal(smtpd_xtext_display(s, &out), -1);
			}
	}
	buf_free(&addr);
	buf_free(&out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lines),
		cmocka_unit_test(test_mail),
		cmocka_unit_test(test_mail_why),
		cmocka_unit_test(test_mail_lengths),
		cmocka_unit_test(test_rcpt),
		cmocka_unit_test(test_xtext),
		cmocka_unit_test(test_bdat),
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_base64_big),
		cmocka_unit_test(test_every_byte),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
