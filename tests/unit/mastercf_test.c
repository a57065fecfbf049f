/*
 * mastercf_test - master.cf columns, defaults, continuation lines, -o in
 * both syntaxes, errors with line numbers, duplicates, limits, mcf_same.
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
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "mastercf.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* A service as expected: -2 in an int field means "do not check". */
struct want {
	const char *name;
	enum mcf_type type;
	int private_, unpriv, chroot;
	int wakeup, wakeup_if_used, maxproc;
	const char *argv;      /* argv joined with '|' */
	const char *overrides; /* name=value joined with '|' */
};

struct ok_case {
	const char *text;
	struct want w;
};

static const struct ok_case ok_cases[] = {
	{ "smtp inet n - n - - smtpd\n", { "smtp", MCF_INET, 0, 1, 0, 0, 0, -1, "smtpd", "" } },
	{ "smtp inet - - - - - smtpd", { "smtp", MCF_INET, 0, 1, 0, 0, 0, -1, "smtpd", "" } },
	{ "cleanup unix - - - - - cleanup", { "cleanup", MCF_UNIX, 1, 1, 0, 0, 0, -1, "cleanup", "" } },
	{ "pickup unix n - y 60 1 pickup", { "pickup", MCF_UNIX, 0, 1, 1, 60, 0, 1, "pickup", "" } },
	{ "qmgr unix y n n 300? 0 qmgr", { "qmgr", MCF_UNIX, 1, 0, 0, 300, 1, 0, "qmgr", "" } },
	{ "x fifo - - - 0 100000 x", { "x", MCF_FIFO, 1, 1, 0, 0, 0, 100000, "x", "" } },
	{ "x pass - - - 0? - x", { "x", MCF_PASS, 1, 1, 0, 0, 1, -1, "x", "" } },
	{ "127.0.0.1:2525 inet n - n - 10 smtpd", { "127.0.0.1:2525", MCF_INET, 0, 1, 0, 0, 0, 10, "smtpd", "" } },
	{ "[::1]:2525 inet n - n - - smtpd", { "[::1]:2525", MCF_INET, 0, 1, 0, 0, 0, -1, "smtpd", "" } },
	{ "2525 inet n - n - - smtpd", { "2525", MCF_INET, 0, 1, 0, 0, 0, -1, "smtpd", "" } },
	{ "localhost:smtp inet n - n - - smtpd", { "localhost:smtp", MCF_INET, 0, 1, 0, 0, 0, -1, "smtpd", "" } },
	{ "mail.example.com:65535 inet n - n - - smtpd", { NULL, MCF_INET, 0, 1, 0, 0, 0, -1, "smtpd", "" } },
	{ "x.y-z_1 unix - - - - - a.b-c_d", { "x.y-z_1", MCF_UNIX, 1, 1, 0, 0, 0, -1, "a.b-c_d", "" } },
	{ "t unix - - - - - /opt/test/echod -v", { "t", MCF_UNIX, 1, 1, 0, 0, 0, -1, "/opt/test/echod|-v", "" } },
	/* Arguments, continuation lines, comments in between. */
	{ "smtp inet n - n - - smtpd -v\n  -t unix\n# comment\n\n\t-o a=b\n",
	    { "smtp", MCF_INET, 0, 1, 0, 0, 0, -1, "smtpd|-v|-t|unix", "a=b" } },
	{ "# leading comment\n\nsmtp\n inet\n n - n - -\n smtpd\n",
	    { "smtp", MCF_INET, 0, 1, 0, 0, 0, -1, "smtpd", "" } },
	/* -o in every accepted spelling; order is kept. */
	{ "s inet n - n - - smtpd -o a=1 -o { b = two words } -oc=3 -o d= -o {e=5}",
	    { NULL, MCF_INET, -2, -2, -2, -2, -2, -2, "smtpd", "a=1|b=two words|c=3|d=|e=5" } },
	{ "s inet n - n - - smtpd -o x=${y?{z}} -o { p = a=b }",
	    { NULL, MCF_INET, -2, -2, -2, -2, -2, -2, "smtpd", "x=${y?{z}}|p=a=b" } },
	{ "s inet n - n - - smtpd -o { x = {nested} braces }",
	    { NULL, MCF_INET, -2, -2, -2, -2, -2, -2, "smtpd", "x={nested} braces" } },
	/* Braces make one argument with spaces. */
	{ "s unix - n n - - local { arg with  spaces } {x} plain",
	    { NULL, MCF_UNIX, -2, -2, -2, -2, -2, -2, "local|arg with  spaces|x|plain", "" } },
	{ "s unix - n n - - local {}", { NULL, MCF_UNIX, -2, -2, -2, -2, -2, -2, "local|", "" } },
};

static void
join_service(const struct mcf_service *s, struct buf *argv, struct buf *ov)
{
	size_t i;

	buf_reset(argv);
	buf_reset(ov);
	for (i = 0; i < s->argc; i++)
		buf_printf(argv, "%s%s", i ? "|" : "", s->argv[i]);
	assert_null(s->argv[s->argc]);
	for (i = 0; i < s->noverrides; i++)
		buf_printf(ov, "%s%s=%s", i ? "|" : "", s->overrides[i].name, s->overrides[i].value);
}

static void
test_ok(void **state)
{
	struct buf err = BUF_INIT, argv = BUF_INIT, ov = BUF_INIT;
	const struct mcf_service *s;
	struct mcf m;
	size_t i;

	(void)state;
	for (i = 0; i < N(ok_cases); i++) {
		const struct want *w = &ok_cases[i].w;

		buf_reset(&err);
		if (mcf_load_string(ok_cases[i].text, "t", &m, &err) != 0)
			fail_msg("case %zu: %s", i, buf_str(&err));
		assert_int_equal(m.nservices, 1);
		s = &m.services[0];
		if (w->name)
			assert_string_equal(s->name, w->name);
		assert_int_equal(s->type, w->type);
		if (w->private_ != -2) {
			if (s->private_ != w->private_ || s->unpriv != w->unpriv || s->chroot != w->chroot)
				fail_msg(
				    "case %zu: private/unpriv/chroot %d %d %d", i, s->private_, s->unpriv, s->chroot);
			if (s->wakeup != w->wakeup || s->wakeup_if_used != w->wakeup_if_used ||
			    s->maxproc != w->maxproc)
				fail_msg("case %zu: wakeup %d%s maxproc %d", i, s->wakeup, s->wakeup_if_used ? "?" : "",
				    s->maxproc);
		}
		assert_string_equal(s->command, s->argv[0]);
		join_service(s, &argv, &ov);
		if (strcmp(buf_str(&argv), w->argv) != 0 || strcmp(buf_str(&ov), w->overrides) != 0)
			fail_msg("case %zu: argv \"%s\" overrides \"%s\"", i, buf_str(&argv), buf_str(&ov));
		assert_string_equal(s->file, "t");
		mcf_free(&m);
		assert_int_equal(m.nservices, 0);
	}
	buf_free(&err);
	buf_free(&argv);
	buf_free(&ov);
}

struct bad_case {
	const char *text;
	const char *err; /* the whole error report */
};

static const struct bad_case bad_cases[] = {
	{ "smtp inet n - n - -\n", "t:1: 7 columns; a service needs 8" },
	{ "smtp\n", "t:1: 1 columns" },
	{ "  smtp inet n - n - - smtpd\n", "t:1: continuation line with no line to continue" },
	{ "smtp tcp n - n - - smtpd\n", "t:1: bad service type \"tcp\" (expected inet, unix, fifo or pass)" },
	{ "smtp inet yes - n - - smtpd\n", "t:1: bad private column \"yes\" (expected y, n or -)" },
	{ "x unix - Y n - - x\n", "t:1: bad unpriv column \"Y\"" },
	{ "x unix - - 1 - - x\n", "t:1: bad chroot column \"1\"" },
	{ "smtp inet y - n - - smtpd\n", "t:1: an inet service cannot be private" },
	{ "x unix - - - abc - x\n", "t:1: bad wakeup column \"abc\"" },
	{ "x unix - - - -5 - x\n", "t:1: bad wakeup column \"-5\"" },
	{ "x unix - - - ? - x\n", "t:1: bad wakeup column \"?\"" },
	{ "x unix - - - 60?? - x\n", "t:1: bad wakeup column \"60??\"" },
	{ "x unix - - - 999999999 - x\n", "t:1: bad wakeup column" },
	{ "x unix - - - - -1 x\n", "t:1: bad maxproc column \"-1\" (0 to 100000, or -)" },
	{ "x unix - - - - 100001 x\n", "t:1: bad maxproc column \"100001\"" },
	{ "x unix - - - - 1x x\n", "t:1: bad maxproc column \"1x\"" },
	{ "x unix - - - - - bin/x\n",
	    "t:1: bad command \"bin/x\" (a program name in daemon_directory, or an absolute path)" },
	{ "x unix - - - - - ..\n", "t:1: bad command \"..\"" },
	{ "../x unix - - - - - x\n", "t:1: bad unix service name \"../x\"" },
	{ ".. unix - - - - - x\n", "t:1: bad unix service name \"..\"" },
	{ ". fifo - - - - - x\n", "t:1: bad fifo service name \".\"" },
	{ "a/b pass - - - - - x\n", "t:1: bad pass service name \"a/b\"" },
	{ ":25 inet n - n - - smtpd\n", "t:1: bad inet service name \":25\": empty host before ':'" },
	{ "::1:25 inet n - n - - smtpd\n",
	    "t:1: bad inet service name \"::1:25\": an IPv6 address must be written in [brackets]" },
	{ "[::1] inet n - n - - smtpd\n", "t:1: bad inet service name \"[::1]\": expected ':port' after ']'" },
	{ "[::1:25 inet n - n - - smtpd\n", "t:1: bad inet service name \"[::1:25\": missing ']' after the address" },
	{ "[]:25 inet n - n - - smtpd\n", "t:1: bad inet service name \"[]:25\": bad address in [brackets]" },
	{ "[zz]:25 inet n - n - - smtpd\n", "t:1: bad inet service name \"[zz]:25\": bad address in [brackets]" },
	{ "[::1]: inet n - n - - smtpd\n", "t:1: bad inet service name \"[::1]:\": missing port" },
	{ "host: inet n - n - - smtpd\n", "t:1: bad inet service name \"host:\": missing port" },
	{ "host:0 inet n - n - - smtpd\n", "t:1: bad inet service name \"host:0\": port number out of range 1..65535" },
	{ "65536 inet n - n - - smtpd\n", "t:1: bad inet service name \"65536\": port number out of range" },
	{ "ho$t:25 inet n - n - - smtpd\n", "t:1: bad inet service name \"ho$t:25\": bad host name" },
	{ "host:sm+tp inet n - n - - smtpd\n", "t:1: bad inet service name \"host:sm+tp\": bad port" },
	{ "{x} inet n - n - - smtpd\n", "t:1: '{' in column 1" },
	{ "x unix - - - - - x {unterminated\n", "t:1: missing '}'" },
	{ "x unix - - - - - x {a}b\n", "t:1: text right after '}'" },
	{ "x unix - - - - - x -o\n", "t:1: -o at the end of the line (expected -o name=value)" },
	{ "x unix - - - - - x -o a\n", "t:1: -o \"a\": expected name=value" },
	{ "x unix - - - - - x -o a b=c\n", "t:1: -o \"a\": expected name=value" },
	{ "x unix - - - - - x -o a = b\n", "t:1: -o \"a\": expected name=value" },
	{ "x unix - - - - - x -o =v\n", "t:1: -o \"=v\": bad parameter name" },
	{ "x unix - - - - - x -o { bad name = v }\n", "t:1: -o \"bad name = v\": bad parameter name" },
	{ "x unix - - - - - x -o {a b}\n", "t:1: -o \"a b\": expected name=value" },
	{ "x unix - - - - - x -oa$=1\n", "t:1: -o \"a$=1\": bad parameter name" },
	/* Duplicates: same name and type; the first line is named. */
	{ "smtp inet n - n - - smtpd\n# c\nsmtp inet n - n - - smtpd -v\n",
	    "t:3: duplicate service \"smtp\" type inet (first defined at line 1)" },
	/* Every error is reported with its own line; good lines in between are fine. */
	{ "bad\nsmtp inet n - n - - smtpd\n\nx y\n  z\nq unix - - - - - q\nq unix - - - - - q\n",
	    "t:1: 1 columns; a service needs 8 (service type private unpriv chroot wakeup maxproc command)\n"
	    "t:4: 3 columns; a service needs 8 (service type private unpriv chroot wakeup maxproc command)\n"
	    "t:7: duplicate service \"q\" type unix (first defined at line 6)" },
};

static void
test_bad(void **state)
{
	struct buf err = BUF_INIT;
	struct mcf m;
	size_t i;

	(void)state;
	for (i = 0; i < N(bad_cases); i++) {
		buf_reset(&err);
		if (mcf_load_string(bad_cases[i].text, "t", &m, &err) != -1)
			fail_msg("case %zu: loaded, want \"%s\"", i, bad_cases[i].err);
		if (strncmp(buf_str(&err), bad_cases[i].err, strlen(bad_cases[i].err)) != 0)
			fail_msg("case %zu: error \"%s\", want \"%s\"", i, buf_str(&err), bad_cases[i].err);
		assert_int_equal(m.nservices, 0);
		assert_null(m.services);
	}
	buf_free(&err);
}

/* The same name with another type is another service. */
static void
test_find(void **state)
{
	struct buf err = BUF_INIT;
	struct mcf m;

	(void)state;
	assert_int_equal(mcf_load_string("smtp inet n - n - - smtpd\nsmtp unix - - n - - smtp\n\n"
	                                 "# end\n",
	                     "t", &m, &err),
	    0);
	assert_int_equal(m.nservices, 2);
	assert_string_equal(mcf_find(&m, "smtp", MCF_INET)->command, "smtpd");
	assert_string_equal(mcf_find(&m, "smtp", MCF_UNIX)->command, "smtp");
	assert_int_equal(mcf_find(&m, "smtp", MCF_UNIX)->line, 2);
	assert_null(mcf_find(&m, "smtp", MCF_FIFO));
	assert_null(mcf_find(&m, "cleanup", MCF_UNIX));
	assert_string_equal(mcf_type_name(MCF_INET), "inet");
	assert_string_equal(mcf_type_name(MCF_UNIX), "unix");
	assert_string_equal(mcf_type_name(MCF_FIFO), "fifo");
	assert_string_equal(mcf_type_name(MCF_PASS), "pass");
	mcf_free(&m);
	/* An empty file has no services and is not an error. */
	assert_int_equal(mcf_load_string("# nothing\n\n", "t", &m, &err), 0);
	assert_int_equal(m.nservices, 0);
	mcf_free(&m);
	buf_free(&err);
}

static void
test_limits(void **state)
{
	struct buf text = BUF_INIT, err = BUF_INIT;
	struct mcf m;
	int i;

	(void)state;
	/* MCF_MAX_ARGS argv entries are fine, one more is not. */
	buf_puts(&text, "x unix - - - - - x");
	for (i = 1; i < MCF_MAX_ARGS; i++)
		buf_puts(&text, " a");
	assert_int_equal(mcf_load_string(buf_str(&text), "t", &m, &err), 0);
	assert_int_equal(m.services[0].argc, MCF_MAX_ARGS);
	mcf_free(&m);
	buf_puts(&text, " a");
	assert_int_equal(mcf_load_string(buf_str(&text), "t", &m, &err), -1);
	assert_non_null(strstr(buf_str(&err), "t:1: more than 256 arguments"));

	/* Too many -o options. */
	buf_reset(&text);
	buf_reset(&err);
	buf_puts(&text, "x unix - - - - - x");
	for (i = 0; i <= MCF_MAX_ARGS; i++)
		buf_puts(&text, " -oa=1");
	assert_int_equal(mcf_load_string(buf_str(&text), "t", &m, &err), -1);
	assert_non_null(strstr(buf_str(&err), "t:1: more than 256 -o options"));

	/* Too many services. */
	buf_reset(&text);
	buf_reset(&err);
	for (i = 0; i <= MCF_MAX_SERVICES; i++)
		buf_printf(&text, "s%d unix - - - - - x\n", i);
	assert_int_equal(mcf_load_string(buf_str(&text), "t", &m, &err), -1);
	assert_non_null(strstr(buf_str(&err), "t:1001: more than 1000 services"));

	/* An over-long line, and an over-long logical line. */
	buf_reset(&text);
	buf_reset(&err);
	buf_puts(&text, "x unix - - - - - x ");
	for (i = 0; i < MCF_LINE_MAX; i++)
		buf_putc(&text, 'a');
	buf_puts(&text, "\ny unix - - - - - y\n");
	assert_int_equal(mcf_load_string(buf_str(&text), "t", &m, &err), -1);
	assert_string_equal(buf_str(&err), "t:1: line longer than 65536 bytes");
	buf_reset(&text);
	buf_reset(&err);
	buf_puts(&text, "x unix - - - - - x\n");
	for (i = 0; i < 100; i++) {
		buf_puts(&text, "  -o a=");
		for (int j = 0; j < 1000; j++)
			buf_putc(&text, 'v');
		buf_putc(&text, '\n');
	}
	assert_int_equal(mcf_load_string(buf_str(&text), "t", &m, &err), -1);
	assert_string_equal(buf_str(&err), "t:1: logical line (with its continuation lines) longer than 65536 bytes");

	/* A very long service name. */
	buf_reset(&text);
	buf_reset(&err);
	for (i = 0; i < 300; i++)
		buf_putc(&text, 'n');
	buf_puts(&text, " unix - - - - - x\n");
	assert_int_equal(mcf_load_string(buf_str(&text), "t", &m, &err), -1);
	assert_non_null(strstr(buf_str(&err), "t:1: service name longer than 255 bytes"));
	buf_free(&text);
	buf_free(&err);
}

/* mcf_same: every column, argv and overrides count; file and line do not. */
static void
test_same(void **state)
{
	static const char *const base = "smtp inet n - y 60 10 smtpd -v -o a=1 -o b=2\n";
	static const char *const differ[] = {
		"smtp2 inet n - y 60 10 smtpd -v -o a=1 -o b=2\n",
		"smtp unix n - y 60 10 smtpd -v -o a=1 -o b=2\n",
		"smtp inet n n y 60 10 smtpd -v -o a=1 -o b=2\n",
		"smtp inet n - n 60 10 smtpd -v -o a=1 -o b=2\n",
		"smtp inet n - y 61 10 smtpd -v -o a=1 -o b=2\n",
		"smtp inet n - y 60? 10 smtpd -v -o a=1 -o b=2\n",
		"smtp inet n - y 60 11 smtpd -v -o a=1 -o b=2\n",
		"smtp inet n - y 60 - smtpd -v -o a=1 -o b=2\n",
		"smtp inet n - y 60 10 smtpd2 -v -o a=1 -o b=2\n",
		"smtp inet n - y 60 10 smtpd -o a=1 -o b=2\n",
		"smtp inet n - y 60 10 smtpd -v -v -o a=1 -o b=2\n",
		"smtp inet n - y 60 10 smtpd -V -o a=1 -o b=2\n",
		"smtp inet n - y 60 10 smtpd -v -o a=1\n",
		"smtp inet n - y 60 10 smtpd -v -o a=1 -o b=3\n",
		"smtp inet n - y 60 10 smtpd -v -o a=1 -o c=2\n",
		"smtp inet n - y 60 10 smtpd -v -o b=2 -o a=1\n",
		"x unix - - - - - x\nsmtp inet n - y 60 10 smtpd -v -o a=1 -o b=2 -o b=2\n",
	};
	static const char *const same[] = {
		base,
		"# moved down\n\nsmtp inet n - y 60 10 smtpd\n  -v\n  -o { a = 1 }\n  -ob=2\n",
		"smtp inet - - y 60 10 smtpd -v -o a=1 -o b=2\n",
	};
	struct buf err = BUF_INIT;
	struct mcf a, b;
	size_t i;

	(void)state;
	assert_int_equal(mcf_load_string(base, "one", &a, &err), 0);
	for (i = 0; i < N(same); i++) {
		assert_int_equal(mcf_load_string(same[i], "two", &b, &err), 0);
		if (!mcf_same(&a.services[0], &b.services[b.nservices - 1]))
			fail_msg("same case %zu differs", i);
		mcf_free(&b);
	}
	for (i = 0; i < N(differ); i++) {
		assert_int_equal(mcf_load_string(differ[i], "two", &b, &err), 0);
		if (mcf_same(&a.services[0], &b.services[b.nservices - 1]))
			fail_msg("differ case %zu is the same", i);
		mcf_free(&b);
	}
	mcf_free(&a);
	buf_free(&err);
}

static void
test_file(void **state)
{
	static const char text[] = "smtp inet n - n - - smtpd\nx unix - - - - - x \0 y\n";
	char dir[] = "/tmp/mastercf_test.XXXXXX", path[128], want[256];
	struct buf err = BUF_INIT;
	struct mcf m;
	FILE *fp;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/master.cf", dir);

	assert_int_equal(mcf_load(path, &m, &err), -1);
	snprintf(want, sizeof(want), "%s: no such file", path);
	assert_string_equal(buf_str(&err), want);

	assert_non_null(fp = fopen(path, "w"));
	assert_int_equal(fwrite(text, 1, sizeof(text) - 1, fp), sizeof(text) - 1);
	assert_int_equal(fclose(fp), 0);
	buf_reset(&err);
	assert_int_equal(mcf_load(path, &m, &err), -1);
	snprintf(want, sizeof(want), "%s:2: NUL byte in line", path);
	assert_string_equal(buf_str(&err), want);

	assert_non_null(fp = fopen(path, "w"));
	fputs("# services\nsmtp inet n - n - - smtpd\n  -o x=1\n", fp);
	assert_int_equal(fclose(fp), 0);
	buf_reset(&err);
	assert_int_equal(mcf_load(path, &m, &err), 0);
	assert_int_equal(m.nservices, 1);
	assert_string_equal(m.services[0].file, path);
	assert_int_equal(m.services[0].line, 2);
	assert_string_equal(m.services[0].overrides[0].value, "1");
	mcf_free(&m);

	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(dir), 0);
	buf_free(&err);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ok),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_find),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_same),
		cmocka_unit_test(test_file),
	};

	log_init("mastercf_test", LOG_DEST_STDERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
