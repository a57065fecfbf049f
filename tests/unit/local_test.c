/*
 * local_test - the local delivery agent's modules without a socket:
 * aliases(5) value parsing, the command splitter, the sysexits mapping,
 * mboxrd From_ quoting fed in every chunking, Maildir file names and the
 * W= size, the Delivered-To header scan (loop detection), forward_path
 * expansion, address splitting, and real deliveries into a temporary
 * directory (Maildir, mbox, a command; the file safety refusals) from a
 * queue file written with the queue writer.  The deliveries run without
 * identity switching (local_privileged stays false), as the test user.
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
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "local.h"
#include "log.h"
#include "qfile.h"

/* ---------------------------------------------------------------- alias values */

struct exp_dest {
	enum local_dest_type type;
	const char *value;
};

struct alias_case {
	const char *text;
	bool is_file;
	int rc;
	size_t n;
	struct exp_dest d[4];
};

static const struct alias_case alias_cases[] = {
	{ "alice, bob", false, 0, 2, { { LOCAL_DEST_ADDR, "alice" }, { LOCAL_DEST_ADDR, "bob" } } },
	{ "alice bob\tcarol", false, 0, 3,
	    { { LOCAL_DEST_ADDR, "alice" }, { LOCAL_DEST_ADDR, "bob" }, { LOCAL_DEST_ADDR, "carol" } } },
	{ "  ,, alice ,", false, 0, 1, { { LOCAL_DEST_ADDR, "alice" } } },
	{ "<bob@example.com>, carol@example.org", false, 0, 2,
	    { { LOCAL_DEST_ADDR, "bob@example.com" }, { LOCAL_DEST_ADDR, "carol@example.org" } } },
	{ "|/usr/bin/vacation -a joe, joe", false, 0, 2,
	    { { LOCAL_DEST_COMMAND, "/usr/bin/vacation -a joe" }, { LOCAL_DEST_ADDR, "joe" } } },
	{ "\"|/usr/bin/cmd a, b\", x", false, 0, 2,
	    { { LOCAL_DEST_COMMAND, "/usr/bin/cmd a, b" }, { LOCAL_DEST_ADDR, "x" } } },
	{ "|/bin/echo \"a, b\" >>/tmp/x, y", false, 0, 2,
	    { { LOCAL_DEST_COMMAND, "/bin/echo \"a, b\" >>/tmp/x" }, { LOCAL_DEST_ADDR, "y" } } },
	{ "\"|/bin/echo \\\"q\\\"\"", false, 0, 1, { { LOCAL_DEST_COMMAND, "/bin/echo \"q\"" } } },
	{ "/var/log/mail copy, \"/tmp/with, comma\"", false, 0, 2,
	    { { LOCAL_DEST_FILE, "/var/log/mail copy" }, { LOCAL_DEST_FILE, "/tmp/with, comma" } } },
	{ ":include:/etc/postern/staff, :INCLUDE: /etc/x", false, 0, 2,
	    { { LOCAL_DEST_INCLUDE, "/etc/postern/staff" }, { LOCAL_DEST_INCLUDE, "/etc/x" } } },
	{ "\\alice, alice", false, 0, 2, { { LOCAL_DEST_SELF, "alice" }, { LOCAL_DEST_ADDR, "alice" } } },
	{ "\"john doe\"@example.com, z", false, 0, 2,
	    { { LOCAL_DEST_ADDR, "\"john doe\"@example.com" }, { LOCAL_DEST_ADDR, "z" } } },
	{ "# a comment, not@x\nalice\n  # indented comment\nbob, #x\n", true, 0, 3,
	    { { LOCAL_DEST_ADDR, "alice" }, { LOCAL_DEST_ADDR, "bob" }, { LOCAL_DEST_ADDR, "#x" } } },
	{ "# x y", false, 0, 3, { { LOCAL_DEST_ADDR, "#" }, { LOCAL_DEST_ADDR, "x" }, { LOCAL_DEST_ADDR, "y" } } },
	{ "alice\n|/bin/cat\n/tmp/f\n", true, 0, 3,
	    { { LOCAL_DEST_ADDR, "alice" }, { LOCAL_DEST_COMMAND, "/bin/cat" }, { LOCAL_DEST_FILE, "/tmp/f" } } },
	{ "", false, 0, 0, { { 0, NULL } } },
	{ "<>", false, 0, 0, { { 0, NULL } } },
	/* malformed */
	{ "\"unterminated, x", false, -1, 0, { { 0, NULL } } },
	{ "|/bin/echo \"open", false, -1, 0, { { 0, NULL } } },
	{ "|, x", false, -1, 0, { { 0, NULL } } },
	{ "|   ", false, -1, 0, { { 0, NULL } } },
	{ ":include:relative/path", false, -1, 0, { { 0, NULL } } },
	{ "\\", false, -1, 0, { { 0, NULL } } },
	{ "\\bob@example.com", false, -1, 0, { { 0, NULL } } },
	{ "\"a\nb\"", false, -1, 0, { { 0, NULL } } },
};

static void
test_alias_parse(void **state)
{
	size_t i, j;

	(void)state;
	for (i = 0; i < sizeof(alias_cases) / sizeof(alias_cases[0]); i++) {
		const struct alias_case *c = &alias_cases[i];
		struct local_dests d;
		struct buf err = BUF_INIT;
		int rc = local_alias_parse(c->text, strlen(c->text), c->is_file, 100, &d, &err);

		if (rc != c->rc)
			fail_msg("case %zu \"%s\": rc %d, want %d (%s)", i, c->text, rc, c->rc, buf_str(&err));
		if (rc < 0) {
			assert_true(buf_len(&err) > 0);
			assert_int_equal(d.n, 0);
			buf_free(&err);
			continue;
		}
		if (d.n != c->n)
			fail_msg("case %zu \"%s\": %zu destinations, want %zu", i, c->text, d.n, c->n);
		for (j = 0; j < d.n; j++) {
			if (d.v[j].type != c->d[j].type || strcmp(d.v[j].value, c->d[j].value) != 0)
				fail_msg("case %zu destination %zu: %s \"%s\", want %s \"%s\"", i, j,
				    local_dest_type_name(d.v[j].type), d.v[j].value, local_dest_type_name(c->d[j].type),
				    c->d[j].value);
		}
		local_dests_free(&d);
		buf_free(&err);
	}
}

static void
test_alias_parse_limits(void **state)
{
	struct local_dests d;
	struct buf err = BUF_INIT, big = BUF_INIT;
	size_t i;

	(void)state;
	/* A NUL byte is refused, not a string end. */
	assert_int_equal(local_alias_parse("alice\0bob", 9, false, 10, &d, &err), -1);
	buf_reset(&err);
	/* The destination limit. */
	assert_int_equal(local_alias_parse("a, b, c", 7, false, 2, &d, &err), -1);
	assert_non_null(strstr(buf_str(&err), "more than 2"));
	buf_reset(&err);
	assert_int_equal(local_alias_parse("a, b, c", 7, false, 3, &d, &err), 0);
	assert_int_equal(d.n, 3);
	local_dests_free(&d);
	/* An over-long destination. */
	buf_putc(&big, '|');
	for (i = 0; i < LOCAL_DEST_LEN_MAX + 10; i++)
		buf_putc(&big, 'x');
	assert_int_equal(local_alias_parse(buf_str(&big), big.len, false, 10, &d, &err), -1);
	/* Many short ones stay within the limit given. */
	buf_reset(&big);
	for (i = 0; i < 5000; i++)
		buf_printf(&big, "u%zu,", i);
	assert_int_equal(local_alias_parse(buf_str(&big), big.len, false, 5000, &d, &err), 0);
	assert_int_equal(d.n, 5000);
	assert_string_equal(d.v[4999].value, "u4999");
	local_dests_free(&d);
	buf_free(&big);
	buf_free(&err);
}

static void
test_src_parse(void **state)
{
	struct buf err = BUF_INIT;
	int bits;

	(void)state;
	assert_int_equal(local_src_parse("alias, forward", &bits, &err), 0);
	assert_int_equal(bits, LOCAL_SRC_ALIAS | LOCAL_SRC_FORWARD);
	assert_int_equal(local_src_parse("Include", &bits, &err), 0);
	assert_int_equal(bits, LOCAL_SRC_INCLUDE);
	assert_int_equal(local_src_parse("", &bits, &err), 0);
	assert_int_equal(bits, 0);
	assert_int_equal(local_src_parse("alias, everything", &bits, &err), -1);
	buf_free(&err);
}

/* ---------------------------------------------------------------- commands */

struct split_case {
	const char *cmd;
	int rc;
	const char *words[5];
};

static const struct split_case split_cases[] = {
	{ "/usr/bin/procmail -a foo", 1, { "/usr/bin/procmail", "-a", "foo", NULL } },
	{ "procmail", 1, { "procmail", NULL } },
	{ "  cat\t -u  ", 1, { "cat", "-u", NULL } },
	{ "/usr/bin/mail-filter --to=x", 0, { NULL } },
	{ "cmd | other", 0, { NULL } },
	{ "cmd > /tmp/out", 0, { NULL } },
	{ "cmd $HOME", 0, { NULL } },
	{ "cmd 'quoted arg'", 0, { NULL } },
	{ "cmd \"quoted arg\"", 0, { NULL } },
	{ "cmd; rm -rf /", 0, { NULL } },
	{ "cmd && x", 0, { NULL } },
	{ "cmd `id`", 0, { NULL } },
	{ "cmd *.txt", 0, { NULL } },
	{ "cmd ~/x", 0, { NULL } },
	{ "cmd a\\ b", 0, { NULL } },
	{ "cmd\nother", 0, { NULL } },
	{ "(subshell)", 0, { NULL } },
	{ "", -1, { NULL } },
	{ " \t ", -1, { NULL } },
};

static void
test_cmd_split(void **state)
{
	struct buf many = BUF_INIT;
	char **argv;
	size_t i, j;
	int rc;

	(void)state;
	for (i = 0; i < sizeof(split_cases) / sizeof(split_cases[0]); i++) {
		const struct split_case *c = &split_cases[i];

		rc = local_cmd_split(c->cmd, &argv);
		if (rc != c->rc)
			fail_msg("\"%s\": %d, want %d", c->cmd, rc, c->rc);
		if (rc != 1) {
			assert_null(argv);
			continue;
		}
		for (j = 0; c->words[j] != NULL; j++) {
			assert_non_null(argv[j]);
			assert_string_equal(argv[j], c->words[j]);
		}
		assert_null(argv[j]);
		local_argv_free(argv);
	}
	/* Too many words for an argv of our own: the shell gets it. */
	for (i = 0; i < LOCAL_ARGV_MAX + 1; i++)
		buf_puts(&many, "w ");
	assert_int_equal(local_cmd_split(buf_str(&many), &argv), 0);
	assert_null(argv);
	buf_free(&many);
}

static void
test_sysexits(void **state)
{
	static const struct {
		int code;
		enum deliver_status st;
		const char *dsn;
	} want[] = {
		{ 64, DELIVER_BOUNCED, "5.3.0" },
		{ 65, DELIVER_BOUNCED, "5.6.0" },
		{ 66, DELIVER_BOUNCED, "5.3.0" },
		{ 67, DELIVER_BOUNCED, "5.1.1" },
		{ 68, DELIVER_BOUNCED, "5.1.2" },
		{ 69, DELIVER_BOUNCED, "5.3.0" },
		{ 70, DELIVER_BOUNCED, "5.3.0" },
		{ 71, DELIVER_DEFERRED, "4.3.0" },
		{ 72, DELIVER_BOUNCED, "5.3.0" },
		{ 73, DELIVER_BOUNCED, "5.2.0" },
		{ 74, DELIVER_BOUNCED, "5.3.0" },
		{ 75, DELIVER_DEFERRED, "4.3.0" },
		{ 76, DELIVER_BOUNCED, "5.5.0" },
		{ 77, DELIVER_BOUNCED, "5.7.0" },
		{ 78, DELIVER_BOUNCED, "5.3.5" },
	};
	struct local_result r;
	size_t i;

	(void)state;
	local_conf.command_time_limit = 42;
	local_result_init(&r);
	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const struct local_sysexit *se = local_sysexit(want[i].code);

		assert_non_null(se);
		assert_int_equal(se->status, want[i].st);
		assert_string_equal(se->dsn, want[i].dsn);
		local_cmd_result(want[i].code << 8, false, "/bin/x", (const unsigned char *)"", 0, &r);
		assert_int_equal(r.status, want[i].st);
		assert_string_equal(r.dsn, want[i].dsn);
		assert_non_null(strstr(buf_str(&r.reason), se->name));
	}
	assert_null(local_sysexit(0));
	assert_null(local_sysexit(1));
	assert_null(local_sysexit(63));
	assert_null(local_sysexit(79));

	/* 0: sent; another code: bounced 5.3.0 "command failed" with the first line of output */
	local_cmd_result(0, false, "/bin/x", (const unsigned char *)"", 0, &r);
	assert_int_equal(r.status, DELIVER_SENT);
	assert_string_equal(r.dsn, "2.0.0");
	local_cmd_result(
	    1 << 8, false, "/bin/x", (const unsigned char *)"\nno such\x01 mailbox\r\nsecond line\n", 31, &r);
	assert_int_equal(r.status, DELIVER_BOUNCED);
	assert_string_equal(r.dsn, "5.3.0");
	assert_non_null(strstr(buf_str(&r.reason), "command failed"));
	assert_non_null(strstr(buf_str(&r.reason), "no such? mailbox"));
	assert_null(strstr(buf_str(&r.reason), "second line"));
	/* killed by a signal, or for time: deferred */
	local_cmd_result(9, false, "/bin/x", (const unsigned char *)"", 0, &r);
	assert_int_equal(r.status, DELIVER_DEFERRED);
	assert_string_equal(r.dsn, "4.3.0");
	local_cmd_result(9, true, "/bin/x", (const unsigned char *)"", 0, &r);
	assert_int_equal(r.status, DELIVER_DEFERRED);
	assert_non_null(strstr(buf_str(&r.reason), "timed out after 42 seconds"));
	local_result_free(&r);
}

/* ---------------------------------------------------------------- From_ quoting */

struct quote_case {
	const char *in;
	const char *out;
};

static const struct quote_case quote_cases[] = {
	{ "From x\n", ">From x\n" },
	{ ">From x\n", ">>From x\n" },
	{ ">>From x\n", ">>>From x\n" },
	{ "From \n", ">From \n" },
	{ "From", "From" },
	{ "Fro\n", "Fro\n" },
	{ "FFrom x\n", "FFrom x\n" },
	{ "Fromage\n", "Fromage\n" },
	{ ">Fromage\n", ">Fromage\n" },
	{ "> From x\n", "> From x\n" },
	{ "a From x\n", "a From x\n" },
	{ "from x\n", "from x\n" },
	{ "x\nFrom y\nz\n\nFrom w", "x\n>From y\nz\n\n>From w" },
	{ ">\n>>\nFrom\n", ">\n>>\nFrom\n" },
	{ "From a From b\nFrom c\n", ">From a From b\n>From c\n" },
	{ "", "" },
};

/* quote_all - run the quoter over in, cut into pieces of step bytes */
static void
quote_all(const char *in, size_t step, struct buf *out)
{
	struct local_quote q;
	size_t len = strlen(in), i, n;

	local_quote_init(&q);
	buf_reset(out);
	for (i = 0; i < len; i += n) {
		n = len - i < step ? len - i : step;
		local_quote(&q, (const unsigned char *)in + i, n, out);
	}
	local_quote_end(&q, out);
}

static void
test_from_quoting(void **state)
{
	struct buf out = BUF_INIT;
	size_t i, step;

	(void)state;
	for (i = 0; i < sizeof(quote_cases) / sizeof(quote_cases[0]); i++) {
		for (step = 1; step <= strlen(quote_cases[i].in) + 1; step++) {
			quote_all(quote_cases[i].in, step, &out);
			if (out.len != strlen(quote_cases[i].out) || memcmp(out.data, quote_cases[i].out, out.len) != 0)
				fail_msg("\"%s\" in pieces of %zu: \"%s\", want \"%s\"", quote_cases[i].in, step,
				    buf_str(&out), quote_cases[i].out);
		}
	}
	buf_free(&out);
}

static void
test_from_line(void **state)
{
	struct buf out = BUF_INIT;

	(void)state;
	setenv("TZ", "UTC", 1);
	tzset();
	local_mbox_from(&out, "", 0);
	assert_string_equal(buf_str(&out), "From MAILER-DAEMON Thu Jan  1 00:00:00 1970\n");
	buf_reset(&out);
	local_mbox_from(&out, "\"a b\"@example.org\n", 1700000000);
	assert_string_equal(buf_str(&out), "From \"a_b\"@example.org_ Tue Nov 14 22:13:20 2023\n");
	buf_free(&out);
}

/* ---------------------------------------------------------------- Maildir names */

static void
test_maildir_names(void **state)
{
	struct buf b = BUF_INIT;
	static const unsigned char msg[] = "Return-Path: <a@b>\nSubject: x\n\nbody\nno newline";

	(void)state;
	local_maildir_hostname("mail/host:1", &b);
	assert_string_equal(buf_str(&b), "mail\\057host\\0721");
	buf_reset(&b);
	local_maildir_hostname("", &b);
	assert_string_equal(buf_str(&b), "localhost");
	buf_reset(&b);
	local_maildir_unique(&b, 1700000000, 123, 4242, 7, "mx.example.test");
	assert_string_equal(buf_str(&b), "1700000000.M123P4242Q7.mx.example.test");
	buf_reset(&b);
	local_maildir_final(&b, "1.M2P3Q4.h", 1000, 25);
	assert_string_equal(buf_str(&b), "1.M2P3Q4.h,S=1000,W=1025");
	assert_int_equal(local_count_lf(msg, sizeof(msg) - 1), 4);
	assert_int_equal(local_count_lf(msg, 0), 0);
	assert_int_equal(local_count_lf((const unsigned char *)"\n\n\n", 3), 3);
	buf_free(&b);
}

/* ---------------------------------------------------------------- Delivered-To */

static const char header[] = "Received: from x\n"
                             "Delivered-To: Alice@Example.COM\n"
                             "delivered-to:\n"
                             " <Bob@Example.Net>\n"
                             "Delivered-To : not-a-field@x\n"
                             "X-Delivered-To: mallory@x\n"
                             "Subject: Delivered-To: eve@x\n"
                             "\n"
                             "Delivered-To: carol@example.com\n";

static void
test_loop_detection(void **state)
{
	size_t step, len = strlen(header), i, n;

	(void)state;
	for (step = 1; step <= len; step++) {
		struct local_hdrscan h;
		bool done = false;

		local_hdrscan_init(&h);
		for (i = 0; i < len && !done; i += n) {
			n = len - i < step ? len - i : step;
			done = local_hdrscan_feed(&h, (const unsigned char *)header + i, n);
		}
		assert_true(done);
		local_hdrscan_end(&h);
		if (h.ndt != 2)
			fail_msg("pieces of %zu: %zu Delivered-To values", step, h.ndt);
		assert_string_equal(h.dt[0], "alice@example.com");
		assert_string_equal(h.dt[1], "bob@example.net");
		assert_true(local_dt_match(h.dt, h.ndt, "alice@example.com"));
		assert_true(local_dt_match(h.dt, h.ndt, "ALICE@example.COM"));
		assert_true(local_dt_match(h.dt, h.ndt, "<bob@example.net>"));
		assert_false(local_dt_match(h.dt, h.ndt, "carol@example.com")); /* in the body */
		assert_false(local_dt_match(h.dt, h.ndt, "mallory@x"));
		assert_false(local_dt_match(h.dt, h.ndt, "eve@x"));
		assert_false(local_dt_match(h.dt, h.ndt, "alice@example.co"));
		local_hdrscan_free(&h);
	}
}

static void
test_loop_detection_hostile(void **state)
{
	struct local_hdrscan h;
	struct buf b = BUF_INIT;
	size_t i;

	(void)state;
	/* An over-long line is ignored, the next one still counts. */
	buf_puts(&b, "Delivered-To: ");
	for (i = 0; i < LOCAL_HDR_LINE_MAX * 2; i++)
		buf_putc(&b, 'a');
	buf_puts(&b, "@x\nDelivered-To: ok@x\n");
	/* More lines than remembered: bounded. */
	for (i = 0; i < LOCAL_DT_MAX + 50; i++)
		buf_printf(&b, "Delivered-To: u%zu@x\n", i);
	/* No empty line at all: the end of the content ends the header. */
	local_hdrscan_init(&h);
	assert_false(local_hdrscan_feed(&h, b.data, b.len));
	local_hdrscan_end(&h);
	assert_int_equal(h.ndt, LOCAL_DT_MAX);
	assert_string_equal(h.dt[0], "ok@x");
	local_hdrscan_free(&h);
	/* A continuation line first, NUL bytes: nothing taken from them. */
	local_hdrscan_init(&h);
	local_hdrscan_feed(&h, (const unsigned char *)" Delivered-To: a@x\nDelivered-To: b\0@x\n\n", 39);
	local_hdrscan_end(&h);
	assert_int_equal(h.ndt, 0);
	local_hdrscan_free(&h);
	buf_free(&b);
}

/* ---------------------------------------------------------------- addresses, forward_path */

static void
test_addr_split(void **state)
{
	struct local_addr a;

	(void)state;
	local_addr_split(&a, "User+Ext@Example.COM", "+", true);
	assert_string_equal(a.addr, "user+ext@example.com");
	assert_string_equal(a.local, "user+ext");
	assert_string_equal(a.user, "user");
	assert_string_equal(a.ext, "ext");
	assert_string_equal(a.domain, "example.com");
	local_addr_free(&a);
	local_addr_split(&a, "User-a+b@x@Example.COM", "+-", false);
	assert_string_equal(a.addr, "User-a+b@x@Example.COM");
	assert_string_equal(a.local, "User-a+b@x");
	assert_string_equal(a.user, "User");
	assert_string_equal(a.ext, "a+b@x");
	assert_string_equal(a.domain, "example.com");
	local_addr_free(&a);
	local_addr_split(&a, "+tag@x", "+", true);
	assert_string_equal(a.user, "+tag");
	assert_string_equal(a.ext, "");
	local_addr_free(&a);
	local_addr_split(&a, "bob", "", true);
	assert_string_equal(a.addr, "bob");
	assert_string_equal(a.domain, "");
	assert_string_equal(a.ext, "");
	local_addr_free(&a);
}

static void
test_path_expand(void **state)
{
	static const struct {
		const char *in;
		const char *out;
	} ok[] = {
		{ "$home/.forward", "/home/joe/.forward" },
		{ "${home}/.forward${recipient_delimiter}${extension}", "/home/joe/.forward+.._.._etc" },
		{ "${extension?$home/.forward+$extension}", "/home/joe/.forward+.._.._etc" },
		{ "${extension:none}", "" },
		{ "/var/forward/$user/$local@$domain $$", "/var/forward/joe/joe+.._.._etc@example.com $" },
		{ "$recipient", "joe+.._.._etc@example.com" },
	};
	static const char *const bad[] = { "$nosuch", "${home", "${home!x}", "$", "${}", "${HOME}" };
	struct local_addr a;
	struct buf out = BUF_INIT, err = BUF_INIT;
	size_t i;

	(void)state;
	local_conf.recipient_delimiter = "+";
	local_addr_split(&a, "joe+../../etc@example.com", "+", true);
	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		buf_reset(&err);
		if (local_path_expand(ok[i].in, &a, "/home/joe", "joe", &out, &err) != 0)
			fail_msg("\"%s\": %s", ok[i].in, buf_str(&err));
		assert_string_equal(buf_str(&out), ok[i].out);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		buf_reset(&err);
		if (local_path_expand(bad[i], &a, "/home/joe", "joe", &out, &err) != -1)
			fail_msg("\"%s\" expanded to \"%s\"", bad[i], buf_str(&out));
		assert_true(buf_len(&err) > 0);
	}
	local_addr_free(&a);
	/* ".." alone becomes harmless. */
	local_addr_split(&a, "joe+..@example.com", "+", true);
	assert_int_equal(local_path_expand("$home/.forward+$extension", &a, "/h", "joe", &out, &err), 0);
	assert_string_equal(buf_str(&out), "/h/.forward+__");
	local_addr_free(&a);
	buf_free(&out);
	buf_free(&err);
}

static void
test_dup(void **state)
{
	struct local_dup *d = local_dup_new(100);
	char key[32];
	int i;

	(void)state;
	assert_false(local_dup_seen(d, "maildir:/x"));
	local_dup_add(d, "maildir:/x");
	assert_true(local_dup_seen(d, "maildir:/x"));
	assert_false(local_dup_seen(d, "maildir:/y"));
	for (i = 0; i < 200; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		local_dup_add(d, key);
	}
	/* Only the first 100 keys are remembered. */
	assert_true(local_dup_seen(d, "k0"));
	assert_true(local_dup_seen(d, "k98"));
	assert_false(local_dup_seen(d, "k150"));
	local_dup_free(d);
	d = local_dup_new(0);
	local_dup_add(d, "x");
	assert_false(local_dup_seen(d, "x"));
	local_dup_free(d);
}

/* ---------------------------------------------------------------- deliveries */

static char oldcwd[4096];
static char tmpdir[] = "/tmp/local_test.XXXXXX";

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int
setup(void **state)
{
	(void)state;
	if (getcwd(oldcwd, sizeof(oldcwd)) == NULL || mkdtemp(tmpdir) == NULL || chdir(tmpdir) < 0)
		return -1;
	if (mkdir(QUEUE_INCOMING, 0700) < 0)
		return -1;
	local_conf.myhostname = "mx.example.test";
	local_conf.command_time_limit = 10;
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	if (chdir(oldcwd) < 0)
		return -1;
	return nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A queue file with this content, opened read-only, read into env. */
struct qmsg {
	struct local_msg m;
	struct qfile_env env;
	char path[256];
};

static void
qmsg_make(struct qmsg *q, const char *sender, const unsigned char *content, size_t len)
{
	static const struct timeval tv = { 1700000000, 1 };
	struct qfile_writer w;
	struct buf err = BUF_INIT;
	static const struct qfile_read_limits lim = { .max_rcpts = 100, .max_attrs = 100 };
	int fd;

	assert_int_equal(qfile_create(&w, QUEUE_INCOMING, &err), 0);
	assert_int_equal(qfile_put_time(&w, &tv, &err), 0);
	assert_int_equal(qfile_put_sender(&w, sender, &err), 0);
	assert_int_equal(qfile_put_rcpt(&w, "joe@example.test", NULL, 0, &err), 0);
	assert_int_equal(qfile_begin_content(&w, &err), 0);
	assert_int_equal(qfile_put_content(&w, content, len, &err), 0);
	snprintf(q->path, sizeof(q->path), "%s", w.path);
	assert_int_equal(qfile_commit(&w, QF_COMMIT_NOSYNC, &err), 0);
	fd = open(q->path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(qfile_read(fd, &q->env, &lim, &err), 0);
	memset(&q->m, 0, sizeof(q->m));
	q->m.queue_id = "TESTQUEUEID";
	q->m.sender = q->env.sender;
	q->m.fd = fd;
	q->m.content_offset = q->env.content_offset;
	q->m.content_size = q->env.content_size;
	q->m.env = &q->env;
	buf_free(&err);
}

static void
qmsg_free(struct qmsg *q)
{
	close(q->m.fd);
	unlink(q->path);
	qfile_env_free(&q->env);
}

static unsigned char *
slurp(const char *path, size_t *len)
{
	struct buf b = BUF_INIT;
	char chunk[4096];
	ssize_t n;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return NULL;
	while ((n = read(fd, chunk, sizeof(chunk))) > 0)
		buf_append(&b, chunk, (size_t)n);
	close(fd);
	*len = b.len;
	buf_putc(&b, 0);
	return b.data;
}

/* The one file in dir, or NULL. */
static char *
only_file(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char *name = NULL;
	int n = 0;

	if (d == NULL)
		return NULL;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		n++;
		free(name);
		name = strdup(e->d_name);
	}
	closedir(d);
	if (n != 1) {
		free(name);
		return NULL;
	}
	return name;
}

static const unsigned char content[] =
    "Subject: test\nFrom: a@b\n\nFrom the start\n>From quoted\n8-bit \xff\x00 NUL\nend";

static void
test_maildir_deliver(void **state)
{
	struct local_ident id = { getuid(), getgid(), NULL, NULL };
	struct local_result r;
	struct qmsg q;
	struct stat st;
	char path[512], *name;
	unsigned char *got;
	size_t len;
	unsigned long long size, w;
	const char *want_head = "Return-Path: <sender@example.org>\nDelivered-To: joe@example.test\n";

	(void)state;
	qmsg_make(&q, "sender@example.org", content, sizeof(content) - 1);
	local_result_init(&r);
	assert_int_equal(mkdir("md", 0700), 0);
	assert_int_equal(local_maildir_deliver(&q.m, "joe@example.test", "md/", &id, &r), 0);
	assert_int_equal(r.status, DELIVER_SENT);
	assert_int_equal(stat("md/cur", &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_null(only_file("md/tmp"));
	name = only_file("md/new");
	assert_non_null(name);
	snprintf(path, sizeof(path), "md/new/%s", name);
	got = slurp(path, &len);
	assert_non_null(got);
	assert_int_equal(len, strlen(want_head) + sizeof(content) - 1);
	assert_memory_equal(got, want_head, strlen(want_head));
	assert_memory_equal(got + strlen(want_head), content, sizeof(content) - 1);
	assert_non_null(strstr(name, ".mx.example.test,S="));
	assert_int_equal(sscanf(strstr(name, ",S="), ",S=%llu,W=%llu", &size, &w), 2);
	assert_int_equal(size, len);
	assert_int_equal(w, len + local_count_lf(got, len));
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	free(got);
	free(name);

	/* A symbolic link where new/ should be: refused, nothing written. */
	assert_int_equal(mkdir("md2", 0700), 0);
	assert_int_equal(mkdir("elsewhere", 0700), 0);
	assert_int_equal(symlink("../elsewhere", "md2/new"), 0);
	assert_int_equal(local_maildir_deliver(&q.m, "joe@example.test", "md2", &id, &r), -1);
	assert_int_equal(r.status, DELIVER_DEFERRED);
	assert_string_equal(r.dsn, "4.2.0");
	assert_non_null(strstr(buf_str(&r.reason), "symbolic link"));
	assert_null(only_file("elsewhere"));
	assert_null(only_file("md2/tmp"));
	local_result_free(&r);
	qmsg_free(&q);
}

static void
test_mbox_deliver(void **state)
{
	struct local_ident id = { getuid(), getgid(), NULL, NULL };
	struct local_result r;
	struct qmsg q;
	unsigned char *got;
	size_t len;
	const char *want_tail = "Return-Path: <>\nDelivered-To: joe@example.test\n"
	                        "Subject: test\nFrom: a@b\n\n>From the start\n>>From quoted\n8-bit \xff";

	(void)state;
	qmsg_make(&q, "", content, sizeof(content) - 1);
	local_result_init(&r);
	assert_int_equal(local_mbox_deliver(&q.m, "joe@example.test", "mbox", &id, 0, LOCAL_MBOX_OWNER, &r), 0);
	assert_int_equal(r.status, DELIVER_SENT);
	assert_int_equal(local_mbox_deliver(&q.m, "joe@example.test", "mbox", &id, 0, LOCAL_MBOX_OWNER, &r), 0);
	got = slurp("mbox", &len);
	assert_non_null(got);
	assert_memory_equal(got, "From MAILER-DAEMON ", 19);
	{
		unsigned char *nl = memchr(got, '\n', len);
		size_t one;

		assert_non_null(nl);
		assert_memory_equal(nl + 1, want_tail, strlen(want_tail));
		/* two copies, each ending in "end\n\n" (the missing LF added) */
		one = len / 2;
		assert_memory_equal(got + one - 6, "\nend\n\n", 6);
		assert_memory_equal(got + len - 6, "\nend\n\n", 6);
		assert_memory_equal(got + one, "From MAILER-DAEMON ", 19);
	}
	free(got);
	assert_int_equal(access("mbox.lock", F_OK), -1);

	/* Over the size limit: bounced 5.2.2, the file unchanged. */
	assert_int_equal(
	    local_mbox_deliver(&q.m, "joe@example.test", "mbox", &id, (long long)len + 10, LOCAL_MBOX_OWNER, &r), -1);
	assert_int_equal(r.status, DELIVER_BOUNCED);
	assert_string_equal(r.dsn, "5.2.2");
	{
		size_t len2;
		unsigned char *again = slurp("mbox", &len2);

		assert_int_equal(len2, len);
		free(again);
	}

	/* A symbolic link: refused, the target untouched. */
	assert_int_equal(close(open("target", O_WRONLY | O_CREAT, 0600)), 0);
	assert_int_equal(symlink("target", "linked"), 0);
	assert_int_equal(local_mbox_deliver(&q.m, "joe@example.test", "linked", &id, 0, LOCAL_MBOX_OWNER, &r), -1);
	assert_int_equal(r.status, DELIVER_DEFERRED);
	assert_string_equal(r.dsn, "4.2.0");
	assert_non_null(strstr(buf_str(&r.reason), "symbolic link"));
	got = slurp("target", &len);
	assert_int_equal(len, 0);
	free(got);

	/* A second hard link: refused, nothing written. */
	assert_int_equal(link("target", "hard"), 0);
	assert_int_equal(local_mbox_deliver(&q.m, "joe@example.test", "hard", &id, 0, LOCAL_MBOX_OWNER, &r), -1);
	assert_int_equal(r.status, DELIVER_DEFERRED);
	assert_non_null(strstr(buf_str(&r.reason), "hard links"));
	got = slurp("target", &len);
	assert_int_equal(len, 0);
	free(got);

	/* A FIFO does not hang the delivery. */
	assert_int_equal(mkfifo("fifo", 0600), 0);
	assert_int_equal(local_mbox_deliver(&q.m, "joe@example.test", "fifo", &id, 0, LOCAL_MBOX_OWNER, &r), -1);
	assert_int_equal(r.status, DELIVER_DEFERRED);

	/* A stale dot-lock is removed; a fresh one makes us wait (not tested: a minute). */
	assert_int_equal(close(open("mbox2.lock", O_WRONLY | O_CREAT, 0600)), 0);
	{
		struct timespec old[2] = { { time(NULL) - 3600, 0 }, { time(NULL) - 3600, 0 } };

		assert_int_equal(utimensat(AT_FDCWD, "mbox2.lock", old, 0), 0);
	}
	assert_int_equal(local_mbox_deliver(&q.m, "joe@example.test", "mbox2", &id, 0, LOCAL_MBOX_OWNER, &r), 0);
	assert_int_equal(access("mbox2.lock", F_OK), -1);

	/* /dev/null takes anything. */
	assert_int_equal(local_mbox_deliver(&q.m, "joe@example.test", "/dev/null", &id, 0, 0, &r), 0);
	local_result_free(&r);
	qmsg_free(&q);
}

static void
test_pipe_deliver(void **state)
{
	struct local_ident id = { getuid(), getgid(), "joe", "/" };
	struct local_addr a;
	struct local_result r;
	struct qmsg q;
	unsigned char *got;
	size_t len;
	char cmd[512];

	(void)state;
	qmsg_make(&q, "sender@example.org", content, sizeof(content) - 1);
	local_result_init(&r);
	local_addr_split(&a, "joe+ext@example.test", "+", true);

	/* The message on standard input, byte for byte, without a shell. */
	snprintf(cmd, sizeof(cmd), "/usr/bin/tee %s/piped", tmpdir);
	assert_int_equal(local_pipe_deliver(&q.m, &a, cmd, &id, &r), 0);
	assert_int_equal(r.status, DELIVER_SENT);
	got = slurp("piped", &len);
	assert_non_null(got);
	{
		const char *head = "Return-Path: <sender@example.org>\nDelivered-To: joe+ext@example.test\n";

		assert_int_equal(len, strlen(head) + sizeof(content) - 1);
		assert_memory_equal(got, head, strlen(head));
		assert_memory_equal(got + strlen(head), content, sizeof(content) - 1);
	}
	free(got);

	/* The environment, the descriptors, the directory. */
	snprintf(cmd, sizeof(cmd), "env > %s/env; ls /proc/self/fd > %s/fds; pwd > %s/pwd", tmpdir, tmpdir, tmpdir);
	assert_int_equal(local_pipe_deliver(&q.m, &a, cmd, &id, &r), 0);
	got = slurp("env", &len);
	assert_non_null(got);
	assert_non_null(strstr((char *)got, "RECIPIENT=joe+ext@example.test\n"));
	assert_non_null(strstr((char *)got, "EXTENSION=ext\n"));
	assert_non_null(strstr((char *)got, "LOCAL=joe+ext\n"));
	assert_non_null(strstr((char *)got, "DOMAIN=example.test\n"));
	assert_non_null(strstr((char *)got, "SENDER=sender@example.org\n"));
	assert_non_null(strstr((char *)got, "USER=joe\n"));
	assert_non_null(strstr((char *)got, "PATH=/usr/bin:/bin\n"));
	assert_null(strstr((char *)got, "LD_"));
	free(got);
	got = slurp("fds", &len);
	assert_non_null(got);
	/* 0, 1, 2, and the descriptor ls itself opened for the directory */
	assert_true(strncmp((char *)got, "0\n1\n2\n3\n", 8) == 0 && len == 8);
	free(got);

	/* Exit codes: 75 defers, 67 bounces 5.1.1, output goes into the reason. */
	assert_int_equal(local_pipe_deliver(&q.m, &a, "echo try later; exit 75", &id, &r), -1);
	assert_int_equal(r.status, DELIVER_DEFERRED);
	assert_non_null(strstr(buf_str(&r.reason), "try later"));
	assert_int_equal(local_pipe_deliver(&q.m, &a, "echo no such user >&2; exit 67", &id, &r), -1);
	assert_int_equal(r.status, DELIVER_BOUNCED);
	assert_string_equal(r.dsn, "5.1.1");
	assert_non_null(strstr(buf_str(&r.reason), "no such user"));
	/* A command that does not read its input still counts by its exit. */
	assert_int_equal(local_pipe_deliver(&q.m, &a, "/bin/true", &id, &r), 0);
	/* Not found. */
	assert_int_equal(local_pipe_deliver(&q.m, &a, "no-such-command-here", &id, &r), -1);
	assert_int_equal(r.status, DELIVER_BOUNCED);
	/* The time limit kills the whole group and defers. */
	local_conf.command_time_limit = 1;
	{
		time_t t0 = time(NULL);

		assert_int_equal(local_pipe_deliver(&q.m, &a, "sleep 30 & sleep 30", &id, &r), -1);
		assert_int_equal(r.status, DELIVER_DEFERRED);
		assert_non_null(strstr(buf_str(&r.reason), "timed out"));
		assert_true(time(NULL) - t0 < 10);
	}
	local_conf.command_time_limit = 10;
	local_addr_free(&a);
	local_result_free(&r);
	qmsg_free(&q);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_alias_parse),
		cmocka_unit_test(test_alias_parse_limits),
		cmocka_unit_test(test_src_parse),
		cmocka_unit_test(test_cmd_split),
		cmocka_unit_test(test_sysexits),
		cmocka_unit_test(test_from_quoting),
		cmocka_unit_test(test_from_line),
		cmocka_unit_test(test_maildir_names),
		cmocka_unit_test(test_loop_detection),
		cmocka_unit_test(test_loop_detection_hostile),
		cmocka_unit_test(test_addr_split),
		cmocka_unit_test(test_path_expand),
		cmocka_unit_test(test_dup),
		cmocka_unit_test(test_maildir_deliver),
		cmocka_unit_test(test_mbox_deliver),
		cmocka_unit_test(test_pipe_deliver),
	};

	log_init("local_test", LOG_DEST_STDERR);
	return cmocka_run_group_tests(tests, setup, teardown);
}
