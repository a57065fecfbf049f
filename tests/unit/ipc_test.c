/*
 * ipc_test - attribute lists: round trips over socketpairs, hostile byte
 * sequences against every limit, the checks, the greeting, descriptor
 * passing and connecting by path.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ipc.h"
#include "log.h"
#include "proto.h"
#include "qid.h"

#define TIMEOUT 10

static void
pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

/* lowest_free_fd - the number the next open() would get */
static int
lowest_free_fd(void)
{
	int fd = dup(0);

	assert_true(fd >= 0);
	close(fd);
	return fd;
}

/*
 * feed - a child writes the bytes to one end of a socketpair and exits;
 * returns a stream on the other end (the child never blocks the test, and
 * EOF follows the bytes).
 */
static struct stream *
feed(const void *p, size_t n, int flags, pid_t *pid)
{
	int sv[2];
	struct stream *s;

	pair(sv);
	*pid = fork();
	assert_true(*pid >= 0);
	if (*pid == 0) {
		const unsigned char *q = p;
		ssize_t r;

		signal(SIGPIPE, SIG_IGN);
		close(sv[0]);
		while (n > 0) {
			r = write(sv[1], q, n);
			if (r <= 0)
				_exit(1);
			q += r;
			n -= (size_t)r;
		}
		_exit(0);
	}
	close(sv[1]);
	s = stream_new(sv[0], flags);
	stream_set_timeout(s, TIMEOUT);
	return s;
}

static void
reap(pid_t pid)
{
	int st;

	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
}

/* Raw byte sequences against the limits. */

struct raw_case {
	const char *what;
	const char *bytes;
	size_t len;
	struct ipc_limits lim; /* all zero: the defaults */
	int want;
	size_t nattrs; /* when want == STREAM_OK */
};

#define B(s) s, sizeof(s) - 1

static const char name64[] = "abcdefghijklmnopqrstuvwxyz0123456789_abcdefghijklmnopqrstuvwxyz0";
static const char name65[] = "abcdefghijklmnopqrstuvwxyz0123456789_abcdefghijklmnopqrstuvwxyz01";

static const struct raw_case raw_cases[] = {
	{ "empty list", B("\0"), { 0, 0, 0 }, STREAM_OK, 0 },
	{ "one attr", B("a\0b\0\0"), { 0, 0, 0 }, STREAM_OK, 1 },
	{ "empty value", B("a\0\0\0"), { 0, 0, 0 }, STREAM_OK, 1 },
	{ "repeated names", B("r\0x\0r\0y\0r\0\0\0"), { 0, 0, 0 }, STREAM_OK, 3 },
	{ "high bytes in value", B("v\0\xff\x80\n\r\t\x01\0\0"), { 0, 0, 0 }, STREAM_OK, 1 },
	{ "nothing at all", B(""), { 0, 0, 0 }, STREAM_EOF, 0 },
	{ "eof in name", B("ab"), { 0, 0, 0 }, IPC_ERR_SYNTAX, 0 },
	{ "eof after name", B("ab\0"), { 0, 0, 0 }, IPC_ERR_SYNTAX, 0 },
	{ "eof in value", B("ab\0cd"), { 0, 0, 0 }, IPC_ERR_SYNTAX, 0 },
	{ "eof before terminator", B("ab\0cd\0"), { 0, 0, 0 }, IPC_ERR_SYNTAX, 0 },
	{ "upper case name", B("A\0b\0\0"), { 0, 0, 0 }, IPC_ERR_SYNTAX, 0 },
	{ "upper case later", B("aB\0b\0\0"), { 0, 0, 0 }, IPC_ERR_SYNTAX, 0 },
	{ "dash in name", B("a-b\0x\0\0"), { 0, 0, 0 }, IPC_ERR_SYNTAX, 0 },
	{ "space in name", B("a b\0x\0\0"), { 0, 0, 0 }, IPC_ERR_SYNTAX, 0 },
	{ "equals in name", B("a=b\0\0"), { 0, 0, 0 }, IPC_ERR_SYNTAX, 0 },
	{ "high byte in name", B("\xff\0x\0\0"), { 0, 0, 0 }, IPC_ERR_SYNTAX, 0 },
	{ "second name bad", B("a\0x\0B\0y\0\0"), { 0, 0, 0 }, IPC_ERR_SYNTAX, 0 },
	{ "value at cap",
	    B("a\0"
	      "12345678\0\0"),
	    { 8, 1000, 10 }, STREAM_OK, 1 },
	{ "value over cap",
	    B("a\0"
	      "123456789\0\0"),
	    { 8, 1000, 10 }, IPC_ERR_TOOBIG, 0 },
	{ "value over cap, no NUL",
	    B("a\0"
	      "1234567890123"),
	    { 8, 1000, 10 }, IPC_ERR_TOOBIG, 0 },
	{ "zero value cap", B("a\0\0\0"), { 0, 1000, 10 }, STREAM_OK, 1 },
	{ "list at cap", B("abc\0defgh\0\0"), { 100, 11, 10 }, STREAM_OK, 1 },
	{ "list over cap by terminator", B("abc\0defgh\0\0"), { 100, 10, 10 }, IPC_ERR_TOOBIG, 0 },
	{ "list over cap in value", B("abc\0defgh\0\0"), { 100, 7, 10 }, IPC_ERR_TOOBIG, 0 },
	{ "list over cap in name", B("abcdefgh\0x\0\0"), { 100, 4, 10 }, IPC_ERR_TOOBIG, 0 },
	{ "count at cap", B("a\0\0b\0\0\0"), { 100, 100, 2 }, STREAM_OK, 2 },
	{ "count over cap", B("a\0\0b\0\0c\0\0\0"), { 100, 100, 2 }, IPC_ERR_TOOBIG, 0 },
	{ "count cap zero", B("a\0\0\0"), { 100, 100, 0 }, IPC_ERR_TOOBIG, 0 },
	{ "count cap zero, empty list", B("\0"), { 100, 100, 0 }, STREAM_OK, 0 },
};

static void
test_raw_table(void **state)
{
	struct ipc_msg m;
	struct stream *s;
	size_t i;
	pid_t pid;
	int r;

	(void)state;
	ipc_msg_init(&m);
	for (i = 0; i < sizeof(raw_cases) / sizeof(raw_cases[0]); i++) {
		const struct raw_case *c = &raw_cases[i];
		const struct ipc_limits *lim = c->lim.list_max ? &c->lim : NULL;

		s = feed(c->bytes, c->len, 0, &pid);
		r = ipc_get(s, &m, lim);
		if (r != c->want)
			fail_msg("%s: ipc_get returned %d, wanted %d", c->what, r, c->want);
		if (r == STREAM_OK)
			assert_int_equal(ipc_msg_count(&m), c->nattrs);
		else
			assert_int_equal(ipc_msg_count(&m), 0); /* reset on error */
		stream_free(s);
		reap(pid);
	}
	ipc_msg_free(&m);
}

static void
test_names_at_limit(void **state)
{
	struct ipc_msg m;
	struct stream *s;
	char bytes[200];
	size_t n;
	pid_t pid;

	(void)state;
	ipc_msg_init(&m);
	n = (size_t)snprintf(bytes, sizeof(bytes), "%s", name64);
	memcpy(bytes + n, "\0v\0\0", 4);
	s = feed(bytes, n + 4, 0, &pid);
	assert_int_equal(ipc_get(s, &m, NULL), STREAM_OK);
	assert_string_equal(ipc_msg_name(&m, 0), name64);
	assert_string_equal(ipc_msg_value(&m, 0, NULL), "v");
	stream_free(s);
	reap(pid);

	n = (size_t)snprintf(bytes, sizeof(bytes), "%s", name65);
	memcpy(bytes + n, "\0v\0\0", 4);
	s = feed(bytes, n + 4, 0, &pid);
	assert_int_equal(ipc_get(s, &m, NULL), IPC_ERR_SYNTAX);
	stream_free(s);
	reap(pid);
	ipc_msg_free(&m);
}

/* Large inputs against the default limits. */
static void
test_default_limits(void **state)
{
	struct ipc_msg m;
	struct stream *s;
	unsigned char *big;
	size_t n, i;
	pid_t pid;

	(void)state;
	ipc_msg_init(&m);
	big = malloc(IPC_LIST_MAX_DEFAULT + 70000);
	assert_non_null(big);

	/* A value of exactly IPC_VALUE_MAX_DEFAULT bytes, then one byte more. */
	for (i = 0; i < 2; i++) {
		n = 0;
		big[n++] = 'v';
		big[n++] = 0;
		memset(big + n, 'x', IPC_VALUE_MAX_DEFAULT + i);
		n += IPC_VALUE_MAX_DEFAULT + i;
		big[n++] = 0;
		big[n++] = 0;
		s = feed(big, n, 0, &pid);
		if (i == 0) {
			size_t len;

			assert_int_equal(ipc_get(s, &m, NULL), STREAM_OK);
			assert_non_null(ipc_msg_value(&m, 0, &len));
			assert_int_equal(len, IPC_VALUE_MAX_DEFAULT);
		} else {
			assert_int_equal(ipc_get(s, &m, NULL), IPC_ERR_TOOBIG);
		}
		stream_free(s);
		reap(pid);
	}

	/* A list just over IPC_LIST_MAX_DEFAULT made of values under their cap. */
	n = 0;
	while (n < IPC_LIST_MAX_DEFAULT) {
		big[n++] = 'v';
		big[n++] = 0;
		memset(big + n, 'y', 60000);
		n += 60000;
		big[n++] = 0;
	}
	big[n++] = 0;
	s = feed(big, n, 0, &pid);
	assert_int_equal(ipc_get(s, &m, NULL), IPC_ERR_TOOBIG);
	assert_int_equal(ipc_msg_count(&m), 0);
	stream_free(s);
	reap(pid);

	/* IPC_ATTRS_MAX_DEFAULT attributes, then one more. */
	for (i = 0; i < 2; i++) {
		size_t k, count = IPC_ATTRS_MAX_DEFAULT + i;

		n = 0;
		for (k = 0; k < count; k++) {
			big[n++] = 'a';
			big[n++] = 0;
			big[n++] = 0;
		}
		big[n++] = 0;
		s = feed(big, n, 0, &pid);
		if (i == 0) {
			assert_int_equal(ipc_get(s, &m, NULL), STREAM_OK);
			assert_int_equal(ipc_msg_count(&m), IPC_ATTRS_MAX_DEFAULT);
			assert_int_equal(ipc_msg_count_name(&m, "a"), IPC_ATTRS_MAX_DEFAULT);
		} else {
			assert_int_equal(ipc_get(s, &m, NULL), IPC_ERR_TOOBIG);
		}
		stream_free(s);
		reap(pid);
	}
	free(big);
	ipc_msg_free(&m);
}

/* Round trip: a writer process using ipc_put_*, a reader using ipc_get. */

#define NRCPT 2000

static void
writer_lists(int fd)
{
	struct stream *s = stream_new(fd, 0);
	char v[64];
	int i;

	stream_set_timeout(s, TIMEOUT);
	if (ipc_send_hello(s, "test", 3) != STREAM_OK)
		_exit(1);
	ipc_put_str(s, ATTR_QUEUE_ID, "0123456789ABCDEF");
	ipc_put_str(s, "empty", "");
	ipc_put_int(s, "neg", -42);
	ipc_put_int(s, "big", 9223372036854775807LL);
	ipc_put_str(s, "bytes", "\xff\xfe\n\r\t caf\xc3\xa9");
	for (i = 0; i < NRCPT; i++) {
		snprintf(v, sizeof(v), "user%d@example.com", i);
		ipc_put_str(s, "rcpt", v);
	}
	ipc_put_str(s, "empty", "");
	if (ipc_put_end(s) != STREAM_OK)
		_exit(2);
	if (ipc_put_end(s) != STREAM_OK) /* an empty list */
		_exit(3);
	stream_free(s);
	_exit(0);
}

static void
test_roundtrip(void **state)
{
	struct ipc_msg m;
	struct stream *s;
	long long v;
	size_t i, len, k;
	char want[64];
	int sv[2], version = 0, st;
	pid_t pid;

	(void)state;
	pair(sv);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(sv[0]);
		writer_lists(sv[1]);
	}
	close(sv[1]);
	s = stream_new(sv[0], 0);
	stream_set_timeout(s, TIMEOUT);
	ipc_msg_init(&m);

	assert_int_equal(ipc_expect_hello(s, "test", 2, &version), STREAM_OK);
	assert_int_equal(version, 3);

	assert_int_equal(ipc_get(s, &m, NULL), STREAM_OK);
	assert_int_equal(ipc_msg_count(&m), 6 + NRCPT);
	assert_string_equal(ipc_msg_str(&m, ATTR_QUEUE_ID), "0123456789ABCDEF");
	assert_string_equal(ipc_msg_str(&m, "empty"), "");
	assert_int_equal(ipc_msg_count_name(&m, "empty"), 2);
	assert_int_equal(ipc_msg_int(&m, "neg", -100, 100, &v), 0);
	assert_int_equal(v, -42);
	assert_int_equal(ipc_msg_int(&m, "neg", 0, 100, &v), -1);
	assert_int_equal(ipc_msg_int(&m, "big", 0, 9223372036854775807LL, &v), 0);
	assert_int_equal(v, 9223372036854775807LL);
	assert_int_equal(ipc_msg_int(&m, "big", 0, 1000, &v), -1);
	assert_int_equal(ipc_msg_int(&m, "bytes", 0, 1000, &v), -1);
	assert_int_equal(ipc_msg_int(&m, "empty", 0, 1000, &v), -1);
	assert_int_equal(ipc_msg_int(&m, "absent", 0, 1000, &v), -1);
	assert_null(ipc_msg_str(&m, "absent"));
	assert_string_equal(ipc_msg_value(&m, 4, &len), "\xff\xfe\n\r\t caf\xc3\xa9");
	assert_int_equal(len, strlen("\xff\xfe\n\r\t caf\xc3\xa9"));
	assert_int_equal(ipc_msg_count_name(&m, "rcpt"), NRCPT);
	/* Order is preserved. */
	for (i = 0, k = 0; i < ipc_msg_count(&m); i++) {
		if (strcmp(ipc_msg_name(&m, i), "rcpt") != 0)
			continue;
		snprintf(want, sizeof(want), "user%zu@example.com", k++);
		assert_string_equal(ipc_msg_value(&m, i, NULL), want);
	}
	assert_string_equal(ipc_msg_name(&m, ipc_msg_count(&m) - 1), "empty");

	assert_int_equal(ipc_get(s, &m, NULL), STREAM_OK);
	assert_int_equal(ipc_msg_count(&m), 0);
	/* The writer is gone: a clean EOF between lists. */
	assert_int_equal(ipc_get(s, &m, NULL), STREAM_EOF);

	ipc_msg_free(&m);
	stream_free(s);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* ipc_msg_check, table-driven. */

static void
test_check(void **state)
{
	static const char *const req[] = { "queue_id", "sender", NULL };
	static const char *const opt[] = { "size", NULL };
	static const struct {
		const char *bytes;
		size_t len;
		int mode;
		int want;
		const char *errword;
	} cases[] = {
		{ B("queue_id\0x\0sender\0y\0\0"), IPC_STRICT, 0, NULL },
		{ B("sender\0y\0queue_id\0x\0size\0"
		    "1\0\0"),
		    IPC_STRICT, 0, NULL },
		{ B("queue_id\0x\0sender\0y\0extra\0z\0\0"), IPC_STRICT, -1, "extra" },
		{ B("queue_id\0x\0sender\0y\0extra\0z\0\0"), IPC_LENIENT, 0, NULL },
		{ B("queue_id\0x\0\0"), IPC_STRICT, -1, "sender" }, { B("queue_id\0x\0\0"), IPC_LENIENT, -1, "sender" },
		{ B("\0"), IPC_LENIENT, -1, "queue_id" },
		{ B("sender\0\0queue_id\0\0\0"), IPC_STRICT, 0, NULL }, /* empty values count as present */
	};
	struct buf err = BUF_INIT;
	struct ipc_msg m;
	struct stream *s;
	size_t i;
	pid_t pid;

	(void)state;
	ipc_msg_init(&m);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		s = feed(cases[i].bytes, cases[i].len, 0, &pid);
		assert_int_equal(ipc_get(s, &m, NULL), STREAM_OK);
		buf_reset(&err);
		if (ipc_msg_check(&m, req, opt, cases[i].mode, &err) != cases[i].want)
			fail_msg("check case %zu: wrong result (%s)", i, buf_str(&err));
		if (cases[i].errword && strstr(buf_str(&err), cases[i].errword) == NULL)
			fail_msg("check case %zu: error \"%s\" does not name %s", i, buf_str(&err), cases[i].errword);
		stream_free(s);
		reap(pid);
	}
	/* No lists at all: strict means no attribute is allowed. */
	s = feed(B("a\0b\0\0"), 0, &pid);
	assert_int_equal(ipc_get(s, &m, NULL), STREAM_OK);
	assert_int_equal(ipc_msg_check(&m, NULL, NULL, IPC_LENIENT, &err), 0);
	assert_int_equal(ipc_msg_check(&m, NULL, NULL, IPC_STRICT, &err), -1);
	assert_int_equal(ipc_msg_check(&m, NULL, NULL, IPC_STRICT, NULL), -1);
	stream_free(s);
	reap(pid);
	buf_free(&err);
	ipc_msg_free(&m);
}

/* The greeting. */

static void
test_hello(void **state)
{
	static const struct {
		const char *bytes;
		size_t len;
		const char *proto;
		int min;
		int want;
		int version;
	} cases[] = {
		{ B("protocol\0cleanup\0version\0"
		    "2\0\0"),
		    "cleanup", 1, STREAM_OK, 2 },
		{ B("protocol\0cleanup\0version\0"
		    "2\0\0"),
		    "cleanup", 2, STREAM_OK, 2 },
		{ B("version\0"
		    "2\0protocol\0cleanup\0extra\0x\0\0"),
		    "cleanup", 2, STREAM_OK, 2 },
		{ B("protocol\0cleanup\0version\0"
		    "2\0\0"),
		    "cleanup", 3, IPC_ERR_PROTO, 0 },
		{ B("protocol\0qmgr\0version\0"
		    "2\0\0"),
		    "cleanup", 1, IPC_ERR_PROTO, 0 },
		{ B("protocol\0cleanupx\0version\0"
		    "2\0\0"),
		    "cleanup", 1, IPC_ERR_PROTO, 0 },
		{ B("protocol\0cleanup\0\0"), "cleanup", 1, IPC_ERR_PROTO, 0 },
		{ B("version\0"
		    "2\0\0"),
		    "cleanup", 1, IPC_ERR_PROTO, 0 },
		{ B("protocol\0cleanup\0version\0two\0\0"), "cleanup", 1, IPC_ERR_PROTO, 0 },
		{ B("protocol\0cleanup\0version\0-1\0\0"), "cleanup", 0, IPC_ERR_PROTO, 0 },
		{ B("protocol\0cleanup\0version\0"
		    "99999999999999999999\0\0"),
		    "cleanup", 1, IPC_ERR_PROTO, 0 },
		{ B("\0"), "cleanup", 1, IPC_ERR_PROTO, 0 },
		{ B(""), "cleanup", 1, STREAM_EOF, 0 },
		{ B("220 smtp.example.com ESMTP\r\n"), "cleanup", 1, IPC_ERR_SYNTAX, 0 },
		{ B("protocol\0cleanup\0version\0"
		    "2\0"),
		    "cleanup", 1, IPC_ERR_SYNTAX, 0 },
	};
	struct stream *s;
	size_t i;
	pid_t pid;
	int version, r;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		s = feed(cases[i].bytes, cases[i].len, 0, &pid);
		version = -7;
		r = ipc_expect_hello(s, cases[i].proto, cases[i].min, &version);
		if (r != cases[i].want)
			fail_msg("hello case %zu: %d, wanted %d", i, r, cases[i].want);
		if (r == STREAM_OK)
			assert_int_equal(version, cases[i].version);
		else
			assert_int_equal(version, -7);
		stream_free(s);
		reap(pid);
	}
	/* A huge greeting is refused without reading all of it. */
	{
		size_t n = 100000;
		char *big = malloc(n);

		assert_non_null(big);
		memcpy(big, "protocol\0", 9);
		memset(big + 9, 'x', n - 9);
		s = feed(big, n, 0, &pid);
		assert_int_equal(ipc_expect_hello(s, "cleanup", 1, NULL), IPC_ERR_TOOBIG);
		stream_free(s);
		reap(pid);
		free(big);
	}
}

/* Descriptor passing with validation by the receiver. */

struct fd_case {
	const char *what;
	int kind; /* 0 read-only file, 1 read-write file, 2 socket, 3 write-only file */
	int ok;
};

static void
test_fd_passing(void **state)
{
	static const struct fd_case cases[] = {
		{ "read-only regular file", 0, 1 },
		{ "read-write regular file", 1, 0 },
		{ "socket", 2, 0 },
		{ "write-only regular file", 3, 0 },
	};
	char dir[] = "/tmp/ipc_test.XXXXXX", path[256], data[16];
	struct buf err = BUF_INIT;
	struct stream *a, *b;
	struct ipc_msg m;
	int sv[2], fd, got, other[2];
	size_t i;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/file", dir);
	fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "hello", 5), 5);
	close(fd);
	ipc_msg_init(&m);

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		pair(sv);
		a = stream_new(sv[0], 0);
		b = stream_new(sv[1], STREAM_FDPASS);
		stream_set_timeout(a, TIMEOUT);
		stream_set_timeout(b, TIMEOUT);
		other[0] = other[1] = -1;
		switch (cases[i].kind) {
		case 0:
			fd = open(path, O_RDONLY | O_CLOEXEC);
			break;
		case 1:
			fd = open(path, O_RDWR | O_CLOEXEC);
			break;
		case 2:
			pair(other);
			fd = other[0];
			break;
		default:
			fd = open(path, O_WRONLY | O_CLOEXEC);
			break;
		}
		assert_true(fd >= 0);
		/* The request list, then the descriptor beside it. */
		assert_int_equal(ipc_put_str(a, ATTR_QUEUE_ID, "0123456789ABCDEF"), STREAM_OK);
		assert_int_equal(ipc_put_end(a), STREAM_OK);
		assert_int_equal(stream_send_fd(a, fd), STREAM_OK);
		close(fd);
		if (other[1] >= 0)
			close(other[1]);

		assert_int_equal(ipc_get(b, &m, NULL), STREAM_OK);
		assert_string_equal(ipc_msg_str(&m, ATTR_QUEUE_ID), "0123456789ABCDEF");
		assert_int_equal(stream_recv_fd(b, &got), STREAM_OK);
		assert_true(got >= 0);
		buf_reset(&err);
		if ((ipc_check_fd(got, S_IFREG, O_RDONLY, &err) == 0) != cases[i].ok)
			fail_msg("%s: ipc_check_fd disagrees (%s)", cases[i].what, buf_str(&err));
		if (cases[i].ok) {
			assert_int_equal(pread(got, data, sizeof(data), 0), 5);
			assert_memory_equal(data, "hello", 5);
		} else {
			assert_true(buf_len(&err) > 0);
		}
		/* Skipping a test with -1 accepts anything. */
		assert_int_equal(ipc_check_fd(got, (mode_t)-1, -1, &err), 0);
		close(got);
		stream_free(a);
		stream_free(b);
	}
	assert_int_equal(ipc_check_fd(-1, S_IFREG, O_RDONLY, &err), -1);
	assert_int_equal(ipc_check_fd(987654, S_IFREG, -1, &err), -1);
	assert_int_equal(ipc_check_fd(987654, (mode_t)-1, O_RDONLY, &err), -1);
	unlink(path);
	rmdir(dir);
	ipc_msg_free(&m);
	buf_free(&err);
}

/* A receiver that did not ask for descriptors closes them. */
static void
test_fd_unexpected(void **state)
{
	struct stream *a, *b;
	struct ipc_msg m;
	int sv[2], fd, before;

	(void)state;
	ipc_msg_init(&m);
	pair(sv);
	a = stream_new(sv[0], 0);
	b = stream_new(sv[1], 0); /* no STREAM_FDPASS */
	stream_set_timeout(a, TIMEOUT);
	stream_set_timeout(b, TIMEOUT);
	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(ipc_put_str(a, "x", "1"), STREAM_OK);
	assert_int_equal(ipc_put_end(a), STREAM_OK);
	assert_int_equal(stream_send_fd(a, fd), STREAM_OK);
	assert_int_equal(ipc_put_str(a, "y", "2"), STREAM_OK);
	assert_int_equal(ipc_put_end(a), STREAM_OK);
	close(fd);
	before = lowest_free_fd();

	assert_int_equal(ipc_get(b, &m, NULL), STREAM_OK);
	assert_string_equal(ipc_msg_str(&m, "x"), "1");
	/* The 'F' marker is not a valid name: a receiver that expects no descriptor drops the peer. */
	assert_int_equal(ipc_get(b, &m, NULL), IPC_ERR_SYNTAX);
	assert_int_equal(lowest_free_fd(), before);
	assert_non_null(strstr(log_last_message(), "unexpected descriptor"));
	stream_free(a);
	stream_free(b);

	/* A receiver that expects a descriptor but gets only the marker byte. */
	pair(sv);
	a = stream_new(sv[0], 0);
	b = stream_new(sv[1], STREAM_FDPASS);
	stream_set_timeout(b, TIMEOUT);
	assert_int_equal(stream_write(a, "F", 1), STREAM_OK);
	assert_int_equal(stream_flush(a), STREAM_OK);
	assert_true(stream_recv_fd(b, &fd) < 0);
	assert_int_equal(fd, -1);
	stream_free(a);
	stream_free(b);
	ipc_msg_free(&m);
}

/* Connecting by path. */
static void
test_connect(void **state)
{
	char dir[] = "/tmp/ipc_test.XXXXXX", cwd[4096], longpath[300];
	struct buf err = BUF_INIT;
	struct sockaddr_un sun;
	struct stream *c, *srv;
	int lfd, afd, version;

	(void)state;
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_non_null(mkdtemp(dir));
	assert_int_equal(chdir(dir), 0);
	assert_int_equal(mkdir("private", 0700), 0);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(lfd >= 0);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strcpy(sun.sun_path, "private/test");
	assert_int_equal(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(lfd, 8), 0);

	/* A relative path, as clients use after chdir(queue_directory). */
	c = ipc_connect("private/test", TIMEOUT, &err);
	assert_non_null(c);
	assert_true(c->flags & STREAM_FDPASS);
	afd = accept(lfd, NULL, NULL);
	assert_true(afd >= 0);
	srv = stream_new(afd, 0);
	stream_set_timeout(srv, TIMEOUT);
	assert_int_equal(ipc_send_hello(srv, "test", 1), STREAM_OK);
	assert_int_equal(ipc_expect_hello(c, "test", 1, &version), STREAM_OK);
	assert_int_equal(version, 1);
	stream_free(c);
	stream_free(srv);

	c = ipc_connect("private/nothere", TIMEOUT, &err);
	assert_null(c);
	assert_non_null(strstr(buf_str(&err), "connect to private/nothere: "));
	assert_non_null(strstr(buf_str(&err), strerror(ENOENT)));

	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = 0;
	c = ipc_connect(longpath, TIMEOUT, &err);
	assert_null(c);
	assert_non_null(strstr(buf_str(&err), "too long"));
	c = ipc_connect("", TIMEOUT, &err);
	assert_null(c);

	/* A path that exists but is not a socket. */
	c = ipc_connect("private", TIMEOUT, &err);
	assert_null(c);
	assert_non_null(strstr(buf_str(&err), "connect to private: "));

	close(lfd);
	unlink("private/test");
	rmdir("private");
	assert_int_equal(chdir(cwd), 0);
	rmdir(dir);
	buf_free(&err);
}

/* Our own bad names are bugs: log_panic.  The exit hook turns it into a longjmp. */

static jmp_buf panic_jmp;

static void
panic_hook(int status)
{
	longjmp(panic_jmp, status);
}

static void
test_put_bad_names(void **state)
{
	static const char *const bad[] = { "", "A", "a-b", "a b", "caf\xc3\xa9", name65, NULL };
	struct stream *s;
	int sv[2];
	volatile size_t i;
	volatile int panics = 0;

	(void)state;
	pair(sv);
	s = stream_new(sv[0], 0);
	log_set_exit_hook(panic_hook);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (setjmp(panic_jmp) == 0)
			ipc_put_str(s, bad[i], "v");
		else
			panics++;
	}
	if (setjmp(panic_jmp) == 0)
		ipc_put_str(s, "ok", NULL);
	else
		panics++;
	log_set_exit_hook(NULL);
	assert_int_equal(panics, sizeof(bad) / sizeof(bad[0]) + 1);
	/* Nothing was buffered for the bad attributes. */
	assert_int_equal(s->wlen, 0);
	assert_int_equal(ipc_put_str(s, name64, "v"), STREAM_OK);
	assert_true(ipc_name_valid(name64));
	assert_false(ipc_name_valid(name65));
	stream_free(s);
	close(sv[1]);
}

static void
test_strerror(void **state)
{
	(void)state;
	assert_non_null(strstr(ipc_strerror(IPC_ERR_SYNTAX), "malformed"));
	assert_non_null(strstr(ipc_strerror(IPC_ERR_TOOBIG), "limit"));
	assert_non_null(strstr(ipc_strerror(IPC_ERR_PROTO), "protocol"));
	assert_string_equal(ipc_strerror(STREAM_TIMEOUT), stream_strerror(STREAM_TIMEOUT));
}

/* ipc_parse: a list built with ipc_buf_*, fed whole and in every split */
static void
test_parse_memory(void **state)
{
	struct buf b = BUF_INIT;
	struct ipc_msg m;
	size_t used, cut;
	int r;

	(void)state;
	ipc_msg_init(&m);
	ipc_buf_str(&b, "queue_id", "1LG5ID3GHOC00IL0");
	ipc_buf_int(&b, "offset", 1234);
	ipc_buf_str(&b, "empty", "");
	ipc_buf_end(&b);
	buf_append(&b, "next", 4); /* the start of another list */
	assert_int_equal(ipc_parse(b.data, b.len, &m, NULL, &used), 1);
	assert_int_equal(used, b.len - 4);
	assert_int_equal(ipc_msg_count(&m), 3);
	assert_string_equal(ipc_msg_str(&m, "queue_id"), "1LG5ID3GHOC00IL0");
	assert_string_equal(ipc_msg_str(&m, "empty"), "");
	for (cut = 0; cut < b.len - 4; cut++) {
		r = ipc_parse(b.data, cut, &m, NULL, &used);
		if (r != 0)
			fail_msg("prefix of %zu bytes: got %d, want 0 (incomplete)", cut, r);
		assert_int_equal(ipc_msg_count(&m), 0);
	}
	/* Hostile input: bad name, value over the cap, too many attributes. */
	{
		static const unsigned char bad[] = "Name\0v\0\0";
		struct ipc_limits lim = { 4, 1024, 2 };
		struct buf big = BUF_INIT;

		assert_int_equal(ipc_parse(bad, sizeof(bad) - 1, &m, NULL, &used), IPC_ERR_SYNTAX);
		ipc_buf_str(&big, "a", "12345");
		ipc_buf_end(&big);
		assert_int_equal(ipc_parse(big.data, big.len, &m, &lim, &used), IPC_ERR_TOOBIG);
		/* an unterminated over-long value is refused before it is complete */
		assert_int_equal(ipc_parse(big.data, 7, &m, &lim, &used), IPC_ERR_TOOBIG);
		buf_reset(&big);
		ipc_buf_str(&big, "a", "1");
		ipc_buf_str(&big, "b", "2");
		ipc_buf_str(&big, "c", "3");
		ipc_buf_end(&big);
		assert_int_equal(ipc_parse(big.data, big.len, &m, &lim, &used), IPC_ERR_TOOBIG);
		buf_free(&big);
	}
	{
		unsigned char longname[IPC_NAME_MAX + 8];

		memset(longname, 'a', sizeof(longname));
		assert_int_equal(ipc_parse(longname, sizeof(longname), &m, NULL, &used), IPC_ERR_SYNTAX);
	}
	ipc_msg_free(&m);
	buf_free(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_raw_table),
		cmocka_unit_test(test_names_at_limit),
		cmocka_unit_test(test_default_limits),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_check),
		cmocka_unit_test(test_hello),
		cmocka_unit_test(test_fd_passing),
		cmocka_unit_test(test_fd_unexpected),
		cmocka_unit_test(test_connect),
		cmocka_unit_test(test_put_bad_names),
		cmocka_unit_test(test_strerror),
		cmocka_unit_test(test_parse_memory),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
