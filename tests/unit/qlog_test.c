/*
 * qlog_test - per-message delivery logs: round trips with hostile field
 * contents, the exact line format, torn and malformed lines, the size
 * bound, missing files, refused IDs, queues and entries.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qfile.h"
#include "qid.h"
#include "qlog.h"

static char tmpdir[] = "/tmp/qlog_test.XXXXXX";
static char oldcwd[4096];

/* A valid ID whose hash character is C. */
#define ID  "1LG5ID3GHOC00IL0"
#define ID2 "1LG5ID3GHOD00IL0"

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
	static const char hash[] = "0123456789ABCDEFGHIJKLMNOPQRSTUV";
	const char *q[] = { QUEUE_DEFER, QUEUE_BOUNCE, QUEUE_DEFERRED };
	char path[64];
	size_t i, j;

	(void)state;
	if (getcwd(oldcwd, sizeof(oldcwd)) == NULL || mkdtemp(tmpdir) == NULL || chdir(tmpdir) < 0)
		return -1;
	for (i = 0; i < 3; i++) {
		if (mkdir(q[i], 0700) < 0)
			return -1;
		for (j = 0; hash[j]; j++) {
			snprintf(path, sizeof(path), "%s/%c", q[i], hash[j]);
			if (mkdir(path, 0700) < 0)
				return -1;
		}
	}
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

static struct qlog_entry
entry(char status, const char *dsn, const char *addr, const char *orcpt, const char *relay, const char *reason)
{
	struct qlog_entry e;

	memset(&e, 0, sizeof(e));
	e.when = 1700000300;
	e.offset = 121;
	e.status = status;
	strncpy(e.dsn, dsn, sizeof(e.dsn) - 1);
	e.addr = (char *)addr;
	e.orcpt = (char *)orcpt;
	e.notify = 6;
	e.relay = (char *)relay;
	e.reason = (char *)reason;
	return e;
}

static void
put_raw(const char *path, const char *bytes, size_t len)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, bytes, len), (ssize_t)len);
	close(fd);
}

static char *
slurp(const char *path, size_t *len)
{
	struct stat st;
	char *p;
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	p = malloc((size_t)st.st_size + 1);
	assert_non_null(p);
	assert_int_equal(read(fd, p, (size_t)st.st_size), st.st_size);
	p[st.st_size] = 0;
	close(fd);
	*len = (size_t)st.st_size;
	return p;
}

static void
assert_str_or_null(const char *a, const char *b)
{
	if (b == NULL)
		assert_null(a);
	else
		assert_string_equal(a, b);
}

/* The line of doc/queue-format.md 2.2, byte for byte, and the file's place and mode. */
static void
test_exact_format(void **state)
{
	struct qlog_entry e = entry('b', "5.1.1", "bob@example.com", "rfc822;bob@example.com",
	    "mx.example.com[192.0.2.1]:25", "host mx.example.com said: 550 5.1.1 no such user");
	struct buf err = BUF_INIT;
	struct stat st;
	size_t len;
	char *text;

	(void)state;
	assert_int_equal(qlog_append(QUEUE_BOUNCE, ID, &e, &err), 0);
	assert_int_equal(stat("bounce/C/" ID, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	text = slurp("bounce/C/" ID, &len);
	assert_string_equal(text, "1700000300\t121\tb\t5.1.1\t6\tbob@example.com\trfc822;bob@example.com\t"
	                          "mx.example.com[192.0.2.1]:25\thost mx.example.com said: 550 5.1.1 no such user\n");
	free(text);
	assert_int_equal(qlog_remove(QUEUE_BOUNCE, ID), 0);
	assert_int_equal(stat("bounce/C/" ID, &st), -1);
	/* Removing again is fine. */
	assert_int_equal(qlog_remove(QUEUE_BOUNCE, ID), 0);
	buf_free(&err);
}

/* Hostile contents survive the round trip unchanged, in order. */
static void
test_round_trip(void **state)
{
	char *big = malloc(10 * 1024 + 1);
	struct qlog_entry in[6], *out;
	struct buf err = BUF_INIT;
	size_t n, i, len;
	char *text;

	(void)state;
	assert_non_null(big);
	for (i = 0; i < 10 * 1024; i++)
		big[i] = "ab\\\t\n\r c\xc3\xa9"[i % 11];
	big[10 * 1024] = 0;
	in[0] = entry('d', "4.4.1", "a\tb@example.com", NULL, "", "connection refused");
	in[1] = entry('b', "5.1.1", "back\\slash\\@example.com", "-", "local", big);
	in[2] = entry('s', "2.0.0", "line\nbreak@example.com", "rfc822;x\\-y", NULL, NULL);
	in[3] = entry('d', "4.999.999", "cr\r@example.com", "utf-8;\xe2\x98\x83@example.com", "\\t\\n", "\\0 \\");
	in[4] = entry('b', "5.0.0", "-", "\\", "-", "-");
	in[5] = entry('b', "5.7.1", "\xff\xfe@example.com", "rfc822;\t\n", "x\ty", "tab\there\nnewline");
	in[4].notify = 0;
	in[5].notify = 1;
	in[5].when = 0;
	in[5].offset = 0;
	for (i = 0; i < 6; i++)
		assert_int_equal(qlog_append(QUEUE_DEFER, ID, &in[i], &err), 0);

	/* Six lines: no field leaked a record separator. */
	text = slurp("defer/C/" ID, &len);
	for (i = 0, n = 0; i < len; i++)
		n += text[i] == '\n';
	assert_int_equal(n, 6);
	free(text);

	assert_int_equal(qlog_read(QUEUE_DEFER, ID, &out, &n, &err), 0);
	assert_int_equal(n, 6);
	for (i = 0; i < 6; i++) {
		assert_int_equal(out[i].when, in[i].when);
		assert_int_equal(out[i].offset, in[i].offset);
		assert_int_equal(out[i].status, in[i].status);
		assert_string_equal(out[i].dsn, in[i].dsn);
		assert_int_equal(out[i].notify, in[i].notify);
		assert_string_equal(out[i].addr, in[i].addr);
		assert_str_or_null(out[i].orcpt, in[i].orcpt);
		assert_string_equal(out[i].relay, in[i].relay ? in[i].relay : "");
		assert_string_equal(out[i].reason, in[i].reason ? in[i].reason : "");
	}
	qlog_free(out, n);
	assert_int_equal(qlog_remove(QUEUE_DEFER, ID), 0);
	free(big);
	buf_free(&err);
}

/* A reason over QLOG_TEXT_MAX is cut, not refused. */
static void
test_long_reason_cut(void **state)
{
	size_t n, len = QLOG_TEXT_MAX + 5000;
	char *big = malloc(len + 1);
	struct qlog_entry e, *out;
	struct buf err = BUF_INIT;

	(void)state;
	memset(big, '\\', len);
	big[len] = 0;
	e = entry('b', "5.1.1", "bob@example.com", NULL, big, big);
	assert_int_equal(qlog_append(QUEUE_BOUNCE, ID2, &e, &err), 0);
	assert_int_equal(qlog_read(QUEUE_BOUNCE, ID2, &out, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(strlen(out[0].reason), QLOG_TEXT_MAX);
	assert_int_equal(strlen(out[0].relay), QLOG_TEXT_MAX);
	assert_true(strspn(out[0].reason, "\\") == QLOG_TEXT_MAX);
	qlog_free(out, n);
	qlog_remove(QUEUE_BOUNCE, ID2);
	free(big);
	buf_free(&err);
}

/* A torn last line and damaged lines in the middle are skipped; the rest count. */
static void
test_torn_and_malformed(void **state)
{
	struct qlog_entry e1 = entry('d', "4.2.2", "one@example.com", NULL, "local", "mailbox full");
	struct qlog_entry e2 = entry('d', "4.2.2", "two@example.com", NULL, "local", "mailbox full");
	const char *torn = "1700000300\t121\td\t4.2.2\t6\tthree@example.com\t-\tlocal\tmail";
	struct qlog_entry *out;
	struct buf err = BUF_INIT;
	size_t n;

	(void)state;
	assert_int_equal(qlog_append(QUEUE_DEFER, ID2, &e1, &err), 0);
	put_raw("defer/D/" ID2, "garbage line\n", 13);
	put_raw("defer/D/" ID2, "1\t2\td\t4.0.0\t0\ta\\q\t-\t\t\n", 22);
	put_raw("defer/D/" ID2, "1\t2\td\t4.0.0\t0\ta\0b\t-\t\t\n", 22);
	assert_int_equal(qlog_append(QUEUE_DEFER, ID2, &e2, &err), 0);
	/* A torn record: most of a line, no LF. */
	put_raw("defer/D/" ID2, torn, strlen(torn));
	assert_int_equal(qlog_read(QUEUE_DEFER, ID2, &out, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_string_equal(out[0].addr, "one@example.com");
	assert_string_equal(out[1].addr, "two@example.com");
	assert_null(out[1].orcpt);
	qlog_free(out, n);
	qlog_remove(QUEUE_DEFER, ID2);
	buf_free(&err);
}

/* qlog_parse refuses every line that breaks one rule. */
static void
test_parse_table(void **state)
{
	static const struct {
		const char *line;
		int ok;
	} cases[] = {
		{ "1\t2\td\t4.0.0\t0\ta\t-\t\t", 1 }, { "1\t2\tb\t5.1.1\t14\ta\trfc822;a\tr\tx", 1 },
		{ "1\t2\ts\t2.0.0\t2\ta\t\\-\tr\t\\\\\\t\\n\\r", 1 }, { "0\t0\td\t4.0.0\t0\ta\t-\t\t", 1 }, { "", 0 },
		{ "1\t2\td\t4.0.0\t0\ta\t-\t", 0 },                      /* eight fields */
		{ "1\t2\td\t4.0.0\t0\ta\t-\t\t\t", 0 },                  /* ten fields */
		{ "-1\t2\td\t4.0.0\t0\ta\t-\t\t", 0 },                   /* sign */
		{ "+1\t2\td\t4.0.0\t0\ta\t-\t\t", 0 },                   /* sign */
		{ " 1\t2\td\t4.0.0\t0\ta\t-\t\t", 0 },                   /* space */
		{ "1x\t2\td\t4.0.0\t0\ta\t-\t\t", 0 },                   /* junk */
		{ "99999999999999999999\t2\td\t4.0.0\t0\ta\t-\t\t", 0 }, /* overflow */
		{ "1\t\td\t4.0.0\t0\ta\t-\t\t", 0 },                     /* empty offset */
		{ "1\t2\tx\t4.0.0\t0\ta\t-\t\t", 0 },                    /* status letter */
		{ "1\t2\tdd\t4.0.0\t0\ta\t-\t\t", 0 },                   /* two letters */
		{ "1\t2\td\t3.0.0\t0\ta\t-\t\t", 0 },                    /* DSN class */
		{ "1\t2\td\t4.0\t0\ta\t-\t\t", 0 },                      /* DSN short */
		{ "1\t2\td\t4.0.1000\t0\ta\t-\t\t", 0 },                 /* DSN detail too long */
		{ "1\t2\td\t4.0.0x\t0\ta\t-\t\t", 0 },                   /* DSN junk */
		{ "1\t2\td\t4.0.0\t16\ta\t-\t\t", 0 },                   /* notify range */
		{ "1\t2\td\t4.0.0\t\ta\t-\t\t", 0 },                     /* notify empty */
		{ "1\t2\td\t4.0.0\t0\t\t-\t\t", 0 },                     /* empty address */
		{ "1\t2\td\t4.0.0\t0\ta\t\t\t", 0 },                     /* empty orcpt */
		{ "1\t2\td\t4.0.0\t0\ta\\\t-\t\t", 0 },                  /* trailing backslash */
		{ "1\t2\td\t4.0.0\t0\ta\\0\t-\t\t", 0 },                 /* \0 */
		{ "1\t2\td\t4.0.0\t0\ta\t-\t\\x\t", 0 },                 /* unknown escape in relay */
		{ "1\t2\td\t4.0.0\t0\ta\t-\t\tbad\\", 0 },               /* trailing backslash in reason */
	};
	struct qlog_entry e;
	char line[256];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r;

		strcpy(line, cases[i].line);
		r = qlog_parse(line, &e);
		if (r != (cases[i].ok ? 0 : -1))
			fail_msg("case %zu (%s): %d", i, cases[i].line, r);
		if (r == 0)
			qlog_entry_free(&e);
	}
	/* "\-" is a literal "-", not "none". */
	strcpy(line, "1\t2\ts\t2.0.0\t2\ta\t\\-\tr\tx");
	assert_int_equal(qlog_parse(line, &e), 0);
	assert_string_equal(e.orcpt, "-");
	qlog_entry_free(&e);
}

/* The writer refuses entries that could not be read back. */
static void
test_bad_entries(void **state)
{
	char *longaddr = malloc(QLOG_ADDR_MAX + 2);
	struct qlog_entry e;
	struct buf err = BUF_INIT;
	struct stat st;

	(void)state;
	memset(longaddr, 'a', QLOG_ADDR_MAX + 1);
	longaddr[QLOG_ADDR_MAX + 1] = 0;
	e = entry('x', "5.0.0", "a@b", NULL, "", "");
	assert_int_equal(qlog_append(QUEUE_BOUNCE, ID, &e, &err), -1);
	e = entry('b', "3.0.0", "a@b", NULL, "", "");
	assert_int_equal(qlog_append(QUEUE_BOUNCE, ID, &e, &err), -1);
	e = entry('b', "5.0", "a@b", NULL, "", "");
	assert_int_equal(qlog_append(QUEUE_BOUNCE, ID, &e, &err), -1);
	e = entry('b', "5.0.0", "", NULL, "", "");
	assert_int_equal(qlog_append(QUEUE_BOUNCE, ID, &e, &err), -1);
	e = entry('b', "5.0.0", NULL, NULL, "", "");
	assert_int_equal(qlog_append(QUEUE_BOUNCE, ID, &e, &err), -1);
	e = entry('b', "5.0.0", "a@b", "", "", "");
	assert_int_equal(qlog_append(QUEUE_BOUNCE, ID, &e, &err), -1);
	e = entry('b', "5.0.0", longaddr, NULL, "", "");
	assert_int_equal(qlog_append(QUEUE_BOUNCE, ID, &e, &err), -1);
	e = entry('b', "5.0.0", "a@b", NULL, "", "");
	e.notify = 16;
	assert_int_equal(qlog_append(QUEUE_BOUNCE, ID, &e, &err), -1);
	e.notify = 0;
	e.when = -1;
	assert_int_equal(qlog_append(QUEUE_BOUNCE, ID, &e, &err), -1);
	/* Nothing was written. */
	assert_int_equal(stat("bounce/C/" ID, &st), -1);
	/* Exactly at the limit is fine. */
	longaddr[QLOG_ADDR_MAX] = 0;
	e = entry('b', "5.0.0", longaddr, NULL, "", "");
	assert_int_equal(qlog_append(QUEUE_BOUNCE, ID, &e, &err), 0);
	qlog_remove(QUEUE_BOUNCE, ID);
	free(longaddr);
	buf_free(&err);
}

/* IDs and queue names that must never become paths. */
static void
test_refused_names(void **state)
{
	static const char *const ids[] = { "", "1LG5ID3GHOC00IL", "1LG5ID3GHOC00IL00", "1lg5id3ghoc00il0",
		"1LG5ID3GHOC00ILW", "../../etc/passw", "1LG5ID3GHO/00IL0", "1LG5ID3GHO.00IL0", NULL };
	static const char *const queues[] = { QUEUE_DEFERRED, QUEUE_ACTIVE, "", "..", "defer/..", "bounce/C", NULL };
	struct qlog_entry e = entry('b', "5.0.0", "a@b", NULL, "", ""), *out = (void *)1;
	struct buf err = BUF_INIT;
	size_t i, n = 7;

	(void)state;
	for (i = 0; ids[i] != NULL; i++) {
		assert_int_equal(qlog_append(QUEUE_BOUNCE, ids[i], &e, &err), -1);
		assert_int_equal(qlog_read(QUEUE_BOUNCE, ids[i], &out, &n, &err), -1);
		assert_null(out);
		assert_int_equal(n, 0);
		assert_int_equal(qlog_remove(QUEUE_BOUNCE, ids[i]), -1);
	}
	assert_int_equal(qlog_append(QUEUE_BOUNCE, NULL, &e, &err), -1);
	for (i = 0; queues[i] != NULL; i++) {
		assert_int_equal(qlog_append(queues[i], ID, &e, &err), -1);
		assert_int_equal(qlog_read(queues[i], ID, &out, &n, &err), -1);
		assert_int_equal(qlog_remove(queues[i], ID), -1);
	}
	buf_free(&err);
}

/* A missing log is an empty one; a symlink is never followed. */
static void
test_missing_and_symlink(void **state)
{
	struct qlog_entry e = entry('b', "5.0.0", "a@b", NULL, "", ""), *out = (void *)1;
	struct buf err = BUF_INIT;
	size_t n = 7;

	(void)state;
	assert_int_equal(qlog_read(QUEUE_DEFER, ID, &out, &n, &err), 0);
	assert_null(out);
	assert_int_equal(n, 0);

	put_raw("target", "", 0);
	assert_int_equal(symlink("../../target", "bounce/C/" ID), 0);
	assert_int_equal(qlog_append(QUEUE_BOUNCE, ID, &e, &err), -1);
	assert_int_equal(qlog_read(QUEUE_BOUNCE, ID, &out, &n, &err), -1);
	assert_int_equal(unlink("bounce/C/" ID), 0);
	/* The hash subdirectory missing is an error, not a silent success. */
	assert_int_equal(rmdir("bounce/D"), 0);
	assert_int_equal(qlog_append(QUEUE_BOUNCE, ID2, &e, &err), -1);
	assert_int_equal(mkdir("bounce/D", 0700), 0);
	buf_free(&err);
}

/* A log over QLOG_READ_MAX: the records in the first MiB, then nothing. */
static void
test_size_bound(void **state)
{
	struct qlog_entry *out;
	struct buf err = BUF_INIT, all = BUF_INIT;
	char reason[1001];
	size_t n, lines, linelen;
	struct qlog_entry e;

	(void)state;
	memset(reason, 'r', 1000);
	reason[1000] = 0;
	e = entry('d', "4.0.0", "a@example.com", NULL, "local", reason);
	assert_int_equal(qlog_encode(&e, &all, &err), 0);
	linelen = all.len;
	buf_reset(&all);
	lines = QLOG_READ_MAX / linelen + 50;
	for (n = 0; n < lines; n++)
		assert_int_equal(qlog_encode(&e, &all, &err), 0);
	put_raw("defer/C/" ID, (const char *)all.data, all.len);
	assert_int_equal(qlog_read(QUEUE_DEFER, ID, &out, &n, &err), 0);
	assert_int_equal(n, QLOG_READ_MAX / linelen);
	qlog_free(out, n);
	qlog_remove(QUEUE_DEFER, ID);
	buf_free(&all);
	buf_free(&err);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exact_format),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_long_reason_cut),
		cmocka_unit_test(test_torn_and_malformed),
		cmocka_unit_test(test_parse_table),
		cmocka_unit_test(test_bad_entries),
		cmocka_unit_test(test_refused_names),
		cmocka_unit_test(test_missing_and_symlink),
		cmocka_unit_test(test_size_bound),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
