/*
 * cfg_test - main.cf parsing, $name expansion, defaults, overrides, typed
 * access with bounds, cfg_check, and loading files from a directory.
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
#include <sys/stat.h>
#include <unistd.h>

#include "cfg.h"
#include "log.h"
#include "xalloc.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* log_fatal() ends in the exit hook, which jumps back into the test. */
static jmp_buf fatal_jmp;
static int fatal_armed;

static void
exit_hook(int status)
{
	(void)status;
	if (fatal_armed) {
		fatal_armed = 0;
		longjmp(fatal_jmp, 1);
	}
}

#define EXPECT_FATAL(stmt, substr)                                                                 \
	do {                                                                                       \
		fatal_armed = 1;                                                                   \
		if (setjmp(fatal_jmp) == 0) {                                                      \
			stmt;                                                                      \
			fatal_armed = 0;                                                           \
			fail_msg("no fatal error from %s", #stmt);                                 \
		}                                                                                  \
		if (strstr(log_last_message(), substr) == NULL)                                    \
			fail_msg("fatal message \"%s\" lacks \"%s\"", log_last_message(), substr); \
	} while (0)

static void
load(const char *text)
{
	struct buf err = BUF_INIT;

	if (cfg_load_string(text, "t", &err) != 0)
		fail_msg("load failed: %s", buf_str(&err));
	buf_free(&err);
}

/* expand - cfg_expand into a static buffer; NULL on error (reason in why_buf) */
static char out_buf[CFG_VALUE_MAX + 16];
static char why_buf[1024];

static const char *
expand(const char *text)
{
	struct buf out = BUF_INIT, why = BUF_INIT;
	int rc = cfg_expand(text, &out, &why);

	snprintf(out_buf, sizeof(out_buf), "%s", buf_str(&out));
	snprintf(why_buf, sizeof(why_buf), "%s", buf_str(&why));
	buf_free(&out);
	buf_free(&why);
	return rc == 0 ? out_buf : NULL;
}

static int
setup(void **state)
{
	(void)state;
	cfg_set_default(P_MYHOSTNAME, "host.example.com");
	return 0;
}

/* ---------------------------------------------------------------- parsing */

struct parse_case {
	const char *text;
	const char *err;   /* NULL: must load; else a substring of the error */
	const char *name;  /* checked after a good load */
	const char *value; /* its raw value */
	const char *origin;
};

static const struct parse_case parse_cases[] = {
	{ "a = 1\n", NULL, "a", "1", "t:1" },
	{ "a=1", NULL, "a", "1", "t:1" },
	{ "a\t=\t  spaced out  \t\n", NULL, "a", "spaced out", "t:1" },
	{ "# comment\n\n   # indented comment\na = x\n", NULL, "a", "x", "t:4" },
	{ "a = x\n  y\n\tz\n", NULL, "a", "x y z", "t:1" },
	{ "a = x\n# comment\n  y\n", NULL, "a", "x y", "t:1" },
	{ "a = x\n\n  y\nb = 2\n", NULL, "a", "x y", "t:1" },
	{ "a =\n  x\n", NULL, "a", "x", "t:1" },
	{ "a = 1\nb = 2\na = 3\n", NULL, "a", "3", "t:3" },
	{ "a = # not a comment\n", NULL, "a", "# not a comment", "t:1" },
	{ "a = x  \r\nb = y\r\n", NULL, "a", "x", "t:1" },
	{ "a = x = y\n", NULL, "a", "x = y", "t:1" },
	{ "a =\n", NULL, "a", "", "t:1" },
	{ "A_b9 = v\n", NULL, "A_b9", "v", "t:1" },
	{ "  a = 1\n", "t:1: continuation line with no line to continue", NULL, NULL, NULL },
	{ "# c\n\n\ta = 1\n", "t:3: continuation line", NULL, NULL, NULL },
	{ "a\n", "t:1: missing \"=\" in \"a\"", NULL, NULL, NULL },
	{ "b = 1\nfoo bar = 1\n", "t:2: bad parameter name \"foo bar\"", NULL, NULL, NULL },
	{ "= 1\n", "t:1: bad parameter name \"\"", NULL, NULL, NULL },
	{ "a-b = 1\n", "t:1: bad parameter name", NULL, NULL, NULL },
	{ "a.b = 1\n", "t:1: bad parameter name", NULL, NULL, NULL },
	{ "ok = 1\nbad\n  continued = 2\nok2 = 3\nworse\n", "t:5: missing", NULL, NULL, NULL },
};

static void
test_parse(void **state)
{
	struct buf err = BUF_INIT;
	const char *raw, *origin;
	size_t i;
	int rc;

	(void)state;
	for (i = 0; i < N(parse_cases); i++) {
		const struct parse_case *c = &parse_cases[i];

		buf_reset(&err);
		rc = cfg_load_string(c->text, "t", &err);
		if (c->err == NULL) {
			if (rc != 0)
				fail_msg("case %zu: %s", i, buf_str(&err));
			raw = cfg_raw(c->name, &origin);
			assert_non_null(raw);
			assert_string_equal(raw, c->value);
			assert_string_equal(origin, c->origin);
			assert_true(cfg_is_set(c->name));
		} else {
			if (rc != -1)
				fail_msg("case %zu: loaded, want error \"%s\"", i, c->err);
			if (strstr(buf_str(&err), c->err) == NULL)
				fail_msg("case %zu: error \"%s\" lacks \"%s\"", i, buf_str(&err), c->err);
		}
	}
	buf_free(&err);
}

/* Every bad line is reported, each with its own line number. */
static void
test_parse_all_errors(void **state)
{
	struct buf err = BUF_INIT;

	(void)state;
	assert_int_equal(cfg_load_string("x\na = 1\n  more\ny\nb c = 2\n", "t", &err), -1);
	assert_string_equal(buf_str(&err), "t:1: missing \"=\" in \"x\"\nt:4: missing \"=\" in \"y\"\n"
	                                   "t:5: bad parameter name \"b c\" (letters, digits and _ only)");
	buf_free(&err);
}

static void
test_parse_long_lines(void **state)
{
	struct buf text = BUF_INIT, err = BUF_INIT;
	size_t i;

	(void)state;
	/* Exactly CFG_LINE_MAX bytes is fine. */
	buf_puts(&text, "a = ");
	for (i = 4; i < CFG_LINE_MAX; i++)
		buf_putc(&text, 'x');
	buf_putc(&text, '\n');
	assert_int_equal(cfg_load_string(buf_str(&text), "t", &err), 0);
	assert_int_equal(strlen(cfg_raw("a", NULL)), CFG_LINE_MAX - 4);

	/* One more byte on a physical line is an error. */
	buf_reset(&text);
	buf_puts(&text, "b = 1\na = ");
	for (i = 4; i < CFG_LINE_MAX + 1; i++)
		buf_putc(&text, 'x');
	buf_puts(&text, "\nc = 2\n");
	assert_int_equal(cfg_load_string(buf_str(&text), "t", &err), -1);
	assert_non_null(strstr(buf_str(&err), "t:2: line longer than 65536 bytes"));

	/* So is a logical line that grows too long through continuations. */
	buf_reset(&text);
	buf_reset(&err);
	buf_puts(&text, "a = start\n");
	for (i = 0; i < 100; i++) {
		buf_puts(&text, "  ");
		for (size_t j = 0; j < 1000; j++)
			buf_putc(&text, 'y');
		buf_putc(&text, '\n');
	}
	buf_puts(&text, "b = 1\n");
	assert_int_equal(cfg_load_string(buf_str(&text), "t", &err), -1);
	assert_non_null(strstr(buf_str(&err), "t:1: logical line (with its continuation lines) longer than"));
	/* ... reported once, not once per remaining continuation line. */
	assert_null(strchr(buf_str(&err), '\n'));
	buf_free(&text);
	buf_free(&err);
}

/* A failed load leaves the previous configuration in place. */
static void
test_failed_load_keeps_old(void **state)
{
	struct buf err = BUF_INIT;

	(void)state;
	load("a = 1\n");
	assert_int_equal(cfg_load_string("a = 2\nbroken\n", "t", &err), -1);
	assert_string_equal(cfg_raw("a", NULL), "1");
	/* A good load replaces everything. */
	load("b = 2\n");
	assert_null(cfg_raw("a", NULL));
	assert_false(cfg_is_set("a"));
	buf_free(&err);
}

struct walk_state {
	char names[256];
};

static void
walk_fn(const char *name, const char *raw, const char *origin, void *arg)
{
	struct walk_state *w = arg;
	size_t n = strlen(w->names);

	snprintf(w->names + n, sizeof(w->names) - n, "%s=%s@%s;", name, raw, origin);
}

static void
test_walk(void **state)
{
	struct walk_state w = { "" };

	(void)state;
	load("zz = 1\nmyhostname = h.example\naa = 2\nzz = 3\n");
	cfg_set("extra", "4", "-o");
	cfg_walk_set(walk_fn, &w);
	assert_string_equal(w.names, "zz=3@t:4;myhostname=h.example@t:2;aa=2@t:3;extra=4@-o;");
}

/* ---------------------------------------------------------------- expansion */

struct expand_case {
	const char *conf;
	const char *text;
	const char *want; /* NULL: an error containing err */
	const char *err;
};

static const struct expand_case expand_cases[] = {
	{ "a = 1\n", "$a", "1", NULL },
	{ "a = 1\n", "${a}", "1", NULL },
	{ "a = 1\n", "$(a)", "1", NULL },
	{ "a = 1\n", "x$a.y-${a}z$(a)", "x1.y-1z1", NULL },
	{ "a = 1\nb = <$a>\nc = [$b]\n", "$c", "[<1>]", NULL },
	{ "a = 1\n", "$a_b", "", NULL },
	{ "a = 1\n", "$$", "$", NULL },
	{ "a = 1\n", "$$a", "$a", NULL },
	{ "a = 1\n", "$$$a", "$1", NULL },
	{ "a = 1\n", "no references", "no references", NULL },
	{ "a = 1\n", "", "", NULL },
	{ "a = 1\n", "${a?yes}", "yes", NULL },
	{ "a =\n", "${a?yes}", "", NULL },
	{ "a = 1\n", "${undeclared?yes}", "", NULL },
	{ "a = 1\n", "${a:no}", "", NULL },
	{ "a =\n", "${a:no}", "no", NULL },
	{ "a = 1\n", "${undeclared:no}", "no", NULL },
	{ "a = 1\nb = B\n", "${a?$b}", "B", NULL },
	{ "a = 1\nb = B\n", "${a?[${b}]:25}", "[B]:25", NULL },
	{ "a = 1\n", "${a?{x}}", "{x}", NULL },
	{ "a = 1\nb = B\n", "${a?${b?${a}}}", "1", NULL },
	{ "a = 1\n", "$(a?yes)", "yes", NULL },
	{ "a =\n", "$(a:no)", "no", NULL },
	/* The test is on the expanded value: e is empty because f is. */
	{ "e = $f\nf =\n", "${e?set}${e:empty}", "empty", NULL },
	/* ? and : texts are only expanded when used. */
	{ "a = 1\n", "${a:$nosuch$}", "", NULL },
	{ "a = 1\n", "$undeclared", "", NULL },
	{ "a = 1\n", "$", NULL, "\"$\" at the end of the value" },
	{ "a = 1\n", "x$ y", NULL, "\"$\" followed by ' '" },
	{ "a = 1\n", "$-", NULL, "\"$\" followed by '-'" },
	{ "a = 1\n", "${", NULL, "no parameter name after \"${\"" },
	{ "a = 1\n", "${}", NULL, "no parameter name after \"${\"" },
	{ "a = 1\n", "$(", NULL, "no parameter name after \"$(\"" },
	{ "a = 1\n", "${a", NULL, "missing '}' after \"${a\"" },
	{ "a = 1\n", "$(a}", NULL, "unexpected '}' after \"$(a\"" },
	{ "a = 1\n", "${a b}", NULL, "unexpected ' ' after \"${a\"" },
	{ "a = 1\n", "${a?x", NULL, "missing '}' after \"${a?\"" },
	{ "a = 1\n", "${a?{x}", NULL, "missing '}'" },
	{ "a = 1\nb = ${a\n", "$b", NULL, "missing '}' after \"${a\" (in the value of b)" },
	{ "a = $b\nb = $a\n", "$a", NULL, "$name loop: a -> b -> a" },
	{ "a = $a\n", "$a", NULL, "$name loop: a -> a" },
	{ "a = $b\nb = $c\nc = $b\n", "$a", NULL, "$name loop: b -> c -> b" },
	{ "a = ${x?$a}\nx = 1\n", "$a", NULL, "$name loop: a -> a" },
	{ "a = ${x:$a}\nx = 1\n", "$a", "", NULL },
	/* Defaults refer to other parameters and computed defaults. */
	{ "", "$mydestination", "host.example.com, localhost.example.com, localhost", NULL },
	{ "myhostname = mail.foo.org\n", "$mydestination", "mail.foo.org, localhost.foo.org, localhost", NULL },
	{ "myhostname = single\n", "$mydomain", "localdomain", NULL },
	{ "myhostname = a.b\nmydomain = other.net\n", "$mydomain/$myorigin", "other.net/a.b", NULL },
	{ "smtpd_tls_cert_file = /c.pem\n", "$smtpd_tls_key_file", "/c.pem", NULL },
	{ "", "[$virtual_mailbox_domains]", "[]", NULL },
	{ "virtual_mailbox_maps = hash:/v\n", "$virtual_mailbox_domains", "hash:/v", NULL },
	{ "myhostname = $mydomain\n", "$myhostname", NULL, "$name loop: myhostname -> mydomain -> myhostname" },
	/* CFG_RAW parameters are inserted as written. */
	{ "mailbox_command = /bin/x $user $\n", "[$mailbox_command]", "[/bin/x $user $]", NULL },
};

static void
test_expand(void **state)
{
	const char *got;
	size_t i;

	(void)state;
	for (i = 0; i < N(expand_cases); i++) {
		const struct expand_case *c = &expand_cases[i];

		load(c->conf);
		got = expand(c->text);
		if (c->want != NULL && got == NULL)
			fail_msg("case %zu \"%s\": error \"%s\", want \"%s\"", i, c->text, why_buf, c->want);
		if (c->want != NULL && strcmp(got, c->want) != 0)
			fail_msg("case %zu \"%s\": got \"%s\", want \"%s\"", i, c->text, got, c->want);
		if (c->want == NULL && got != NULL)
			fail_msg("case %zu \"%s\": got \"%s\", want error \"%s\"", i, c->text, got, c->err);
		if (c->want == NULL && strstr(why_buf, c->err) == NULL)
			fail_msg("case %zu \"%s\": error \"%s\" lacks \"%s\"", i, c->text, why_buf, c->err);
	}
}

/* A chain of references deeper than CFG_EXPAND_DEPTH is refused. */
static void
test_expand_depth(void **state)
{
	struct buf text = BUF_INIT;
	int i;

	(void)state;
	for (i = 0; i < CFG_EXPAND_DEPTH - 1; i++)
		buf_printf(&text, "p%d = $p%d\n", i, i + 1);
	buf_printf(&text, "p%d = end\n", i);
	load(buf_str(&text));
	assert_non_null(expand("$p0"));
	assert_string_equal(out_buf, "end");

	buf_reset(&text);
	for (i = 0; i < CFG_EXPAND_DEPTH + 50; i++)
		buf_printf(&text, "p%d = $p%d\n", i, i + 1);
	buf_printf(&text, "p%d = end\n", i);
	load(buf_str(&text));
	assert_null(expand("$p0"));
	assert_non_null(strstr(why_buf, "nested more than 100 deep"));

	/* Deeply nested ${x?...} texts count as well (no stack overflow). */
	buf_reset(&text);
	buf_puts(&text, "x = 1\ndeep = ");
	for (i = 0; i < 10000; i++)
		buf_puts(&text, "${x?");
	for (i = 0; i < 10000; i++)
		buf_puts(&text, "}");
	buf_putc(&text, '\n');
	load(buf_str(&text));
	assert_null(expand("$deep"));
	assert_non_null(strstr(why_buf, "nested more than 100 deep"));
	buf_free(&text);
}

/* Expansion cannot build values past CFG_VALUE_MAX (no doubling bombs). */
static void
test_expand_length(void **state)
{
	struct buf text = BUF_INIT;
	int i;

	(void)state;
	buf_puts(&text, "a0 = xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n");
	for (i = 1; i < 60; i++)
		buf_printf(&text, "a%d = $a%d$a%d\n", i, i - 1, i - 1);
	load(buf_str(&text));
	assert_null(expand("$a59"));
	assert_non_null(strstr(why_buf, "value longer than 65536 bytes after $name expansion"));
	assert_non_null(expand("$a5"));
	assert_int_equal(strlen(out_buf), 32 * strlen(cfg_raw("a0", NULL)));
	buf_free(&text);
}

/* cfg_str of a bad value is fatal and names where the value came from. */
static void
test_str_fatal(void **state)
{
	(void)state;
	load("x = 1\nrelayhost = $a\na = $relayhost\n");
	EXPECT_FATAL(cfg_str(P_RELAYHOST), "fatal: t:2: parameter relayhost: $name loop: relayhost -> a -> relayhost");
	EXPECT_FATAL(cfg_lookup("a"), "fatal: t:3: parameter a: $name loop: a -> relayhost -> a");
	load("myorigin = ${oops\n");
	EXPECT_FATAL(cfg_str(P_MYORIGIN), "fatal: t:1: parameter myorigin: missing '}' after \"${oops\"");
}

/* ---------------------------------------------------------------- lookups and overrides */

static void
test_lookup(void **state)
{
	const char *origin = "x";

	(void)state;
	load("helper = h\nrelayhost = [$helper]\n");
	assert_string_equal(cfg_lookup("relayhost"), "[h]");
	assert_string_equal(cfg_lookup("helper"), "h");
	assert_string_equal(cfg_lookup("myorigin"), "host.example.com");
	assert_null(cfg_lookup("nosuch"));
	assert_null(cfg_lookup("bad name"));
	assert_null(cfg_raw("nosuch", &origin));
	assert_null(origin);
	/* Declared and unset: the default as written, no origin. */
	assert_string_equal(cfg_raw("myorigin", &origin), "$myhostname");
	assert_null(origin);
	assert_string_equal(cfg_raw("myhostname", NULL), "host.example.com");
	assert_string_equal(cfg_raw("mydomain", NULL), "example.com");
	assert_string_equal(cfg_raw("config_directory", NULL), DEF_CONFIG_DIR);
	assert_false(cfg_is_set("myorigin"));
	assert_true(cfg_is_set("helper"));
	assert_string_equal(cfg_str(P_MAILBOX_COMMAND), "");
	assert_string_equal(cfg_str(P_CONFIG_DIRECTORY), DEF_CONFIG_DIR);
	assert_string_equal(cfg_config_dir(), DEF_CONFIG_DIR);
}

/* -o overrides go over main.cf; values handed out stay valid. */
static void
test_overrides(void **state)
{
	struct buf err = BUF_INIT;
	const char *before, *origin;

	(void)state;
	load("max_idle = 10s\nmyhostname = one.example\n");
	before = cfg_str(P_MYORIGIN);
	assert_string_equal(before, "one.example");
	assert_int_equal(cfg_time(P_MAX_IDLE), 10);

	assert_int_equal(cfg_set_option("max_idle=20s", "master.cf:3", &err), 0);
	assert_int_equal(cfg_time(P_MAX_IDLE), 20);
	assert_string_equal(cfg_raw("max_idle", &origin), "20s");
	assert_string_equal(origin, "master.cf:3");
	assert_int_equal(cfg_set_option("  max_idle  =  30s  ", "master.cf:4", &err), 0);
	assert_int_equal(cfg_time(P_MAX_IDLE), 30);
	assert_string_equal(cfg_raw("max_idle", NULL), "30s");

	/* Changing a value changes what depends on it; the old string lives on. */
	cfg_set("myhostname", "two.example", "-o");
	assert_string_equal(cfg_str(P_MYORIGIN), "two.example");
	assert_string_equal(cfg_str(P_MYDOMAIN), "example");
	assert_string_equal(before, "one.example");

	assert_int_equal(cfg_set_option("new_name=x", "-o", &err), 0);
	assert_string_equal(cfg_lookup("new_name"), "x");
	assert_int_equal(cfg_set_option("empty=", "-o", &err), 0);
	assert_string_equal(cfg_lookup("empty"), "");

	assert_int_equal(cfg_set_option("noequals", "-o", &err), -1);
	assert_non_null(strstr(buf_str(&err), "expected name=value"));
	buf_reset(&err);
	assert_int_equal(cfg_set_option("max idle=1", "-o", &err), -1);
	assert_non_null(strstr(buf_str(&err), "bad parameter name"));
	buf_reset(&err);
	assert_int_equal(cfg_set_option("=1", "-o", &err), -1);
	assert_int_equal(cfg_set_option("a$b=1", "-o", &err), -1);

	/* A bad override is reported with the override's origin. */
	assert_int_equal(cfg_set_option("max_idle=0", "master.cf:9", &err), 0);
	EXPECT_FATAL(cfg_time(P_MAX_IDLE), "fatal: master.cf:9: parameter max_idle:");
	buf_free(&err);
}

/* cfg_set_default replaces a computed default, and survives loads. */
static void
test_set_default(void **state)
{
	(void)state;
	load("");
	cfg_set_default(P_MYHOSTNAME, "x.y.example");
	assert_string_equal(cfg_str(P_MYDOMAIN), "y.example");
	load("");
	assert_string_equal(cfg_str(P_MYHOSTNAME), "x.y.example");
	cfg_set_default(P_MAX_USE, "7");
	assert_int_equal(cfg_int(P_MAX_USE), 7);
	load("max_use = 8\n");
	assert_int_equal(cfg_int(P_MAX_USE), 8);
	cfg_set_default(P_MAX_USE, cfg_params[P_MAX_USE].def);
	cfg_set_default(P_MYHOSTNAME, "host.example.com");
}

/* ---------------------------------------------------------------- types */

static void
test_parse_helpers(void **state)
{
	static const struct {
		const char *in;
		char unit;
		int ok;
		long long want;
	} times[] = {
		{ "0", 0, 0, 0 },
		{ "10", 0, 0, 10 },
		{ "10", 's', 0, 10 },
		{ "10", 'm', 0, 600 },
		{ "2", 'd', 0, 172800 },
		{ "10s", 'd', 0, 10 },
		{ "2m", 0, 0, 120 },
		{ "3h", 0, 0, 10800 },
		{ "1d", 0, 0, 86400 },
		{ "1w", 0, 0, 604800 },
		{ "", 0, -1, 0 },
		{ "s", 0, -1, 0 },
		{ "5x", 0, -1, 0 },
		{ "5S", 0, -1, 0 },
		{ "5ss", 0, -1, 0 },
		{ " 5s", 0, -1, 0 },
		{ "-5s", 0, -1, 0 },
		{ "+5", 0, -1, 0 },
		{ "1.5h", 0, -1, 0 },
		{ "9223372036854775807", 0, 0, 9223372036854775807LL },
		{ "9223372036854775807s", 0, 0, 9223372036854775807LL },
		{ "9223372036854775808", 0, -1, 0 },
		{ "15250284452471w", 0, 0, 15250284452471LL * 604800 },
		{ "15250284452472w", 0, -1, 0 },
		{ "99999999999999999999999999999999999d", 0, -1, 0 },
	};
	static const struct {
		const char *in;
		int ok;
		bool want;
	} bools[] = {
		{ "yes", 0, true },
		{ "YES", 0, true },
		{ "True", 0, true },
		{ "1", 0, true },
		{ "no", 0, false },
		{ "No", 0, false },
		{ "false", 0, false },
		{ "0", 0, false },
		{ "", -1, false },
		{ "y", -1, false },
		{ "on", -1, false },
		{ "yes ", -1, false },
		{ "2", -1, false },
	};
	long long t;
	bool b;
	size_t i;

	(void)state;
	for (i = 0; i < N(times); i++) {
		t = -1;
		if (cfg_parse_time(times[i].in, times[i].unit, &t) != times[i].ok)
			fail_msg("time case \"%s\": wrong status", times[i].in);
		if (times[i].ok == 0 && t != times[i].want)
			fail_msg("time case \"%s\": got %lld want %lld", times[i].in, t, times[i].want);
	}
	for (i = 0; i < N(bools); i++) {
		b = !bools[i].want;
		if (cfg_parse_bool(bools[i].in, &b) != bools[i].ok)
			fail_msg("bool case \"%s\": wrong status", bools[i].in);
		if (bools[i].ok == 0 && b != bools[i].want)
			fail_msg("bool case \"%s\": wrong value", bools[i].in);
	}
	assert_true(cfg_valid_name("a_Z9", 4));
	assert_false(cfg_valid_name("", 0));
	assert_false(cfg_valid_name("a-b", 3));
	assert_true(cfg_valid_name("ab-", 2));
}

struct typed_case {
	enum param_id id;
	const char *value;
	long long want;  /* for bool: 0 or 1 */
	const char *err; /* NULL: valid */
};

static const struct typed_case typed_cases[] = {
	{ P_SMTPD_SASL_AUTH_ENABLE, "yes", 1, NULL },
	{ P_SMTPD_SASL_AUTH_ENABLE, "FALSE", 0, NULL },
	{ P_SMTPD_SASL_AUTH_ENABLE, "maybe", 0, "\"maybe\" is not yes or no" },
	{ P_SMTPD_SASL_AUTH_ENABLE, "", 0, "\"\" is not yes or no" },
	{ P_DEFAULT_PROCESS_LIMIT, "5", 5, NULL },
	{ P_DEFAULT_PROCESS_LIMIT, "1", 1, NULL },
	{ P_DEFAULT_PROCESS_LIMIT, "100000", 100000, NULL },
	{ P_DEFAULT_PROCESS_LIMIT, "0", 0, "\"0\" is below the minimum of 1" },
	{ P_DEFAULT_PROCESS_LIMIT, "100001", 0, "\"100001\" is above the maximum of 100000" },
	{ P_DEFAULT_PROCESS_LIMIT, "-1", 0, "\"-1\" is below the minimum of 1" },
	{ P_DEFAULT_PROCESS_LIMIT, "abc", 0, "\"abc\" is not an integer" },
	{ P_DEFAULT_PROCESS_LIMIT, "10k", 0, "\"10k\" is not an integer" },
	{ P_DEFAULT_PROCESS_LIMIT, "99999999999999999999", 0, "\"99999999999999999999\" is not an integer in range" },
	{ P_MESSAGE_SIZE_LIMIT, "0", 0, NULL },
	{ P_MESSAGE_SIZE_LIMIT, "1099511627776", 1099511627776LL, NULL },
	{ P_MESSAGE_SIZE_LIMIT, "1099511627777", 0, "\"1099511627777\" is above the maximum of 1099511627776" },
	{ P_DAEMON_TIMEOUT, "10", 10, NULL },
	{ P_DAEMON_TIMEOUT, "2m", 120, NULL },
	{ P_DAEMON_TIMEOUT, "1w", 604800, NULL },
	{ P_DAEMON_TIMEOUT, "10d", 864000, NULL },
	{ P_DAEMON_TIMEOUT, "2w", 0, "\"2w\" is above the maximum of 864000s" },
	{ P_DAEMON_TIMEOUT, "0", 0, "\"0\" is below the minimum of 1s" },
	{ P_DAEMON_TIMEOUT, "5x", 0, "\"5x\" is not a time" },
	{ P_DAEMON_TIMEOUT, "9223372036854775807w", 0, "\"9223372036854775807w\" is not a time" },
	{ P_BOUNCE_QUEUE_LIFETIME, "2", 172800, NULL },
	{ P_BOUNCE_QUEUE_LIFETIME, "0", 0, NULL },
	{ P_DELAY_WARNING_TIME, "4", 14400, NULL },
	{ P_AUTH_FAILURE_DELAY, "61", 0, "\"61\" is above the maximum of 60s" },
};

static long long
typed_get(enum param_id id)
{
	switch (cfg_params[id].type) {
	case CFG_BOOL:
		return cfg_bool(id);
	case CFG_INT:
		return cfg_int(id);
	case CFG_TIME:
		return cfg_time(id);
	default:
		fail_msg("not a typed parameter");
	}
	return 0;
}

static void
test_typed(void **state)
{
	struct buf text = BUF_INIT, err = BUF_INIT;
	char want[512];
	volatile size_t i; /* kept across the longjmp out of log_fatal */

	(void)state;
	for (i = 0; i < N(typed_cases); i++) {
		const struct typed_case *c = &typed_cases[i];

		buf_reset(&text);
		buf_printf(&text, "# line 1\nhelper = %s\n%s = $helper\n", c->value, cfg_params[c->id].name);
		load(buf_str(&text));
		buf_reset(&err);
		if (c->err == NULL) {
			if (typed_get(c->id) != c->want)
				fail_msg("case %zu %s = %s: got %lld", i, cfg_params[c->id].name, c->value,
				    typed_get(c->id));
			assert_int_equal(cfg_check(&err), 0);
			assert_string_equal(buf_str(&err), "");
		} else {
			snprintf(want, sizeof(want), "fatal: t:3: parameter %s: %s", cfg_params[c->id].name, c->err);
			EXPECT_FATAL(typed_get(c->id), want);
			assert_int_equal(cfg_check(&err), 1);
			snprintf(want, sizeof(want), "t:3: parameter %s: %s", cfg_params[c->id].name, c->err);
			if (strstr(buf_str(&err), want) == NULL)
				fail_msg("case %zu: cfg_check said \"%s\", want \"%s\"", i, buf_str(&err), want);
		}
	}
	buf_free(&text);
	buf_free(&err);
}

/* Every default in the table is valid. */
static void
test_defaults_valid(void **state)
{
	struct buf err = BUF_INIT;
	size_t i;

	(void)state;
	load("");
	assert_int_equal(cfg_check(&err), 0);
	assert_string_equal(buf_str(&err), "");
	for (i = 0; i < P_COUNT; i++) {
		assert_non_null(cfg_param_find(cfg_params[i].name));
		assert_int_equal(cfg_param_id(cfg_param_find(cfg_params[i].name)), i);
		assert_non_null(cfg_str((enum param_id)i));
	}
	assert_null(cfg_param_find("nosuch"));
	assert_null(cfg_param_find(""));
	assert_int_equal(cfg_time(P_MAXIMAL_QUEUE_LIFETIME), 5 * 86400);
	assert_int_equal(cfg_int(P_DEFAULT_PROCESS_LIMIT), 100);
	assert_false(cfg_bool(P_SMTPD_SASL_AUTH_ENABLE));
	assert_int_equal(cfg_param_default_kind(P_MYHOSTNAME), CFG_DEF_COMPUTED);
	assert_int_equal(cfg_param_default_kind(P_QUEUE_DIRECTORY), CFG_DEF_BUILD);
	assert_int_equal(cfg_param_default_kind(P_MAIL_OWNER), CFG_DEF_BUILD);
	assert_int_equal(cfg_param_default_kind(P_RELAYHOST), CFG_DEF_LITERAL);
	buf_free(&err);
}

/* ---------------------------------------------------------------- cfg_check */

struct check_case {
	const char *conf;
	const char *note;    /* cfg_note_references() text, or NULL */
	int nerr;            /* errors counted */
	const char *err;     /* a substring of err, or NULL */
	const char *warning; /* the last warning, or NULL for none */
};

static const struct check_case check_cases[] = {
	{ "relayhost = x\n", NULL, 0, NULL, NULL },
	{ "foo = 1\n", NULL, 0, NULL, "warning: t:1: unknown parameter foo" },
	{ "foo = 1\nrelayhost = $foo\n", NULL, 0, NULL, NULL },
	{ "foo = 1\nbar = ${foo?x}\nrelayhost = $bar\n", NULL, 0, NULL, NULL },
	{ "foo = 1\nbar = $(foo:x)\nrelayhost = ${bar}\n", NULL, 0, NULL, NULL },
	{ "foo = 1\n", "-o x=$foo", 0, NULL, NULL },
	{ "foo = 1\n", "${foo?a}", 0, NULL, NULL },
	{ "foo = 1\nbar = 2\nrelayhost = $foo\n", NULL, 0, NULL, "warning: t:2: unknown parameter bar" },
	/* A RAW value is not scanned: its $names belong to its user. */
	{ "foo = 1\nmailbox_command = $foo\n", NULL, 0, NULL, "warning: t:1: unknown parameter foo" },
	{ "relayhost = $nosuch\n", NULL, 0, NULL,
	    "warning: t:1: parameter relayhost: $nosuch is not set and no program declares it" },
	{ "relayhost = ${nosuch?x}\n", NULL, 0, NULL, NULL },
	{ "max_idle = 0\nmax_use = x\nrelayhost = ${x\n", NULL, 3, "t:1: parameter max_idle: \"0\" is below", NULL },
	{ "max_idle = 0\nmax_use = x\n", NULL, 2, "t:2: parameter max_use: \"x\" is not an integer", NULL },
	{ "a = $b\nb = $a\nmyorigin = $a\n", NULL, 1, "t:3: parameter myorigin: $name loop: a -> b -> a", NULL },
	/* Every parameter whose default uses $myhostname fails too: at least these four. */
	{ "myhostname = $mydomain\n", NULL, -4,
	    "default: parameter mydomain: $name loop: mydomain -> myhostname -> mydomain", NULL },
};

static void
test_check(void **state)
{
	struct buf err = BUF_INIT;
	size_t i;
	int n;

	(void)state;
	for (i = 0; i < N(check_cases); i++) {
		const struct check_case *c = &check_cases[i];

		load(c->conf);
		if (c->note)
			cfg_note_references(c->note);
		log_warn("sentinel");
		buf_reset(&err);
		n = cfg_check(&err);
		/* A negative count means "at least": the table grows as programs add parameters. */
		if (c->nerr >= 0 ? n != c->nerr : n < -c->nerr)
			fail_msg("case %zu: %d errors (%s), want %d", i, n, buf_str(&err), c->nerr);
		if (c->err && strstr(buf_str(&err), c->err) == NULL)
			fail_msg("case %zu: errors \"%s\" lack \"%s\"", i, buf_str(&err), c->err);
		if (c->warning == NULL && strcmp(log_last_message(), "warning: sentinel") != 0)
			fail_msg("case %zu: unexpected warning \"%s\"", i, log_last_message());
		if (c->warning && strstr(log_last_message(), c->warning) == NULL)
			fail_msg("case %zu: warning \"%s\" lacks \"%s\"", i, log_last_message(), c->warning);
	}
	/* References noted before a load are forgotten by it. */
	cfg_note_references("$foo");
	load("foo = 1\n");
	assert_int_equal(cfg_check(&err), 0);
	assert_non_null(strstr(log_last_message(), "unknown parameter foo"));
	buf_free(&err);
}

/* ---------------------------------------------------------------- files */

static char tmpdir[64];

static void
write_file(const char *name, const void *data, size_t len)
{
	char path[256];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	assert_non_null(fp = fopen(path, "w"));
	assert_int_equal(fwrite(data, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
}

static void
test_files(void **state)
{
	static const char nul_text[] = "a = 1\nb = x\0y\nc = 3\n";
	struct buf err = BUF_INIT, big = BUF_INIT;
	char path[256], origin[300];
	const char *o;

	(void)state;
	strcpy(tmpdir, "/tmp/cfg_test.XXXXXX");
	assert_non_null(mkdtemp(tmpdir));

	/* No main.cf: defaults, and the directory is remembered. */
	assert_int_equal(cfg_load(tmpdir, &err), 0);
	assert_string_equal(cfg_config_dir(), tmpdir);
	assert_string_equal(cfg_str(P_CONFIG_DIRECTORY), tmpdir);
	assert_string_equal(cfg_str(P_RELAYHOST), "");

	write_file("main.cf", "# test\nrelayhost = [relay.example]\nmax_use = 0\n", 47);
	assert_int_equal(cfg_load(tmpdir, &err), 0);
	assert_string_equal(cfg_str(P_RELAYHOST), "[relay.example]");
	assert_string_equal(cfg_raw("relayhost", &o), "[relay.example]");
	snprintf(origin, sizeof(origin), "%s/main.cf:2", tmpdir);
	assert_string_equal(o, origin);
	assert_int_equal(cfg_check(&err), 1);
	snprintf(origin, sizeof(origin), "%s/main.cf:3: parameter max_use: \"0\" is below the minimum of 1", tmpdir);
	assert_string_equal(buf_str(&err), origin);

	/* $POSTERN_CONFIG_DIR when no directory is given. */
	setenv("POSTERN_CONFIG_DIR", tmpdir, 1);
	assert_string_equal(cfg_resolve_dir(NULL), tmpdir);
	assert_string_equal(cfg_resolve_dir("/elsewhere"), "/elsewhere");
	load("");
	assert_int_equal(cfg_load(NULL, &err), 0);
	assert_string_equal(cfg_str(P_RELAYHOST), "[relay.example]");
	unsetenv("POSTERN_CONFIG_DIR");
	assert_string_equal(cfg_resolve_dir(NULL), DEF_CONFIG_DIR);

	/* A NUL byte is an error with its line number. */
	write_file("main.cf", nul_text, sizeof(nul_text) - 1);
	buf_reset(&err);
	assert_int_equal(cfg_load(tmpdir, &err), -1);
	snprintf(origin, sizeof(origin), "%s/main.cf:2: NUL byte in line", tmpdir);
	assert_string_equal(buf_str(&err), origin);
	/* ... and the old configuration is still there. */
	assert_string_equal(cfg_str(P_RELAYHOST), "[relay.example]");

	/* Too large a file. */
	buf_reserve(&big, CFG_FILE_MAX + 2);
	memset(big.data, '#', CFG_FILE_MAX + 1);
	for (size_t i = 63; i < CFG_FILE_MAX + 1; i += 64)
		big.data[i] = '\n';
	big.len = CFG_FILE_MAX + 1;
	write_file("main.cf", big.data, big.len);
	buf_reset(&err);
	assert_int_equal(cfg_load(tmpdir, &err), -1);
	assert_non_null(strstr(buf_str(&err), "file too large"));
	write_file("main.cf", big.data, big.len - 1);
	assert_int_equal(cfg_load(tmpdir, &err), 0);

	/* A main.cf that cannot be read is an error, not defaults. */
	snprintf(path, sizeof(path), "%s/main.cf", tmpdir);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(mkdir(path, 0700), 0);
	buf_reset(&err);
	assert_int_equal(cfg_load(tmpdir, &err), -1);
	assert_non_null(strstr(buf_str(&err), "main.cf: not a regular file"));
	assert_int_equal(rmdir(path), 0);
	buf_reset(&err);
	snprintf(path, sizeof(path), "%s/not-a-dir", tmpdir);
	write_file("not-a-dir", "", 0);
	assert_int_equal(cfg_load(path, &err), -1);
	assert_non_null(strstr(buf_str(&err), "cannot open"));

	snprintf(path, sizeof(path), "%s/not-a-dir", tmpdir);
	unlink(path);
	assert_int_equal(rmdir(tmpdir), 0);
	buf_free(&err);
	buf_free(&big);
	load("");
}

/* Logical-line reader edge cases shared with master.cf. */
static void
test_lines(void **state)
{
	static const char text[] = "a\n\n  b\n# c\n\tc \r\nd\r\n  \n";
	struct buf line = BUF_INIT, why = BUF_INIT;
	struct cfg_lines r;
	int first = 0;

	(void)state;
	cfg_lines_init(&r, text, sizeof(text) - 1, 100);
	assert_int_equal(cfg_lines_next(&r, &line, &first, &why), 1);
	assert_string_equal(buf_str(&line), "a b c");
	assert_int_equal(first, 1);
	assert_int_equal(cfg_lines_next(&r, &line, &first, &why), 1);
	assert_string_equal(buf_str(&line), "d");
	assert_int_equal(first, 6);
	assert_int_equal(cfg_lines_next(&r, &line, &first, &why), 0);
	assert_int_equal(cfg_lines_next(&r, &line, &first, &why), 0);

	cfg_lines_init(&r, "", 0, 100);
	assert_int_equal(cfg_lines_next(&r, &line, &first, &why), 0);
	buf_free(&line);
	buf_free(&why);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_parse_all_errors),
		cmocka_unit_test(test_parse_long_lines),
		cmocka_unit_test(test_failed_load_keeps_old),
		cmocka_unit_test(test_walk),
		cmocka_unit_test(test_expand),
		cmocka_unit_test(test_expand_depth),
		cmocka_unit_test(test_expand_length),
		cmocka_unit_test(test_str_fatal),
		cmocka_unit_test(test_lookup),
		cmocka_unit_test(test_overrides),
		cmocka_unit_test(test_set_default),
		cmocka_unit_test(test_parse_helpers),
		cmocka_unit_test(test_typed),
		cmocka_unit_test(test_defaults_valid),
		cmocka_unit_test(test_check),
		cmocka_unit_test(test_files),
		cmocka_unit_test(test_lines),
	};

	log_init("cfg_test", LOG_DEST_STDERR);
	log_set_exit_hook(exit_hook);
	return cmocka_run_group_tests(tests, setup, NULL);
}
