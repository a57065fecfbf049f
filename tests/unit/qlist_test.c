/*
 * qlist_test - the queue listing and the showq protocol: escaping of
 * hostile envelope values (text and JSON), the listing of a queue with
 * complete, incomplete, corrupt, held and deferred messages, bounds, a
 * sink that fails, and the client against scripted servers that lie
 * (bad greeting, refusal, oversized or malformed frames, a listing cut
 * short) and against the real server end.
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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "ipc.h"
#include "qfile.h"
#include "qid.h"
#include "qlist.h"
#include "qlog.h"
#include "stream.h"

static char tmpdir[] = "/tmp/qlist_test.XXXXXX";
static char oldcwd[4096];

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	chmod(path, 0700);
	return remove(path);
}

static int
setup(void **state)
{
	static const char hash[] = "0123456789ABCDEFGHIJKLMNOPQRSTUV";
	const char *q[] = { QUEUE_INCOMING, QUEUE_ACTIVE, QUEUE_DEFERRED, QUEUE_HOLD, QUEUE_DEFER, "public" };
	char path[64];
	size_t i, j;

	(void)state;
	setenv("TZ", "UTC", 1);
	tzset();
	if (getcwd(oldcwd, sizeof(oldcwd)) == NULL || mkdtemp(tmpdir) == NULL || chdir(tmpdir) < 0)
		return -1;
	for (i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
		if (mkdir(q[i], 0700) < 0)
			return -1;
		for (j = 0; qid_queue_hashed(q[i]) && hash[j]; j++) {
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

/* ---------------------------------------------------------------- escaping */

static void
test_escape(void **state)
{
	static const struct {
		const char *in, *text, *json;
	} cases[] = {
		{ "plain@example.org", "plain@example.org", "\"plain@example.org\"" },
		{ "", "", "\"\"" },
		{ "a\x01"
		  "b\\c\"d",
		    "a\\x01b\\x5Cc\"d", "\"a\\u0001b\\\\c\\\"d\"" },
		{ "\x1b[31mred\x7f", "\\x1B[31mred\\x7F", "\"\\u001b[31mred\\u007f\"" },
		{ "tab\there\nnl\r", "tab\\x09here\\x0Anl\\x0D", "\"tab\\u0009here\\u000anl\\u000d\"" },
		/* valid UTF-8 passes in JSON; text leaves high bytes alone */
		{ "caf\xc3\xa9 \xf0\x9f\x98\x80", "caf\xc3\xa9 \xf0\x9f\x98\x80", "\"caf\xc3\xa9 \xf0\x9f\x98\x80\"" },
		/* invalid: lone byte, overlong, surrogate, above U+10FFFF, truncated */
		{ "\xff", "\xff", "\"\\u00ff\"" },
		{ "\xc0\x80", "\xc0\x80", "\"\\u00c0\\u0080\"" },
		{ "\xed\xa0\x80", "\xed\xa0\x80", "\"\\u00ed\\u00a0\\u0080\"" },
		{ "\xf4\x90\x80\x80", "\xf4\x90\x80\x80", "\"\\u00f4\\u0090\\u0080\\u0080\"" },
		{ "\xe2\x82", "\xe2\x82", "\"\\u00e2\\u0082\"" },
		{ "\xe0\x80\xaf", "\xe0\x80\xaf", "\"\\u00e0\\u0080\\u00af\"" },
	};
	struct buf b = BUF_INIT;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		buf_reset(&b);
		qlist_escape(&b, cases[i].in);
		assert_string_equal(buf_str(&b), cases[i].text);
		buf_reset(&b);
		qlist_json_str(&b, cases[i].in);
		assert_string_equal(buf_str(&b), cases[i].json);
	}
	buf_free(&b);
}

/* ---------------------------------------------------------------- listing */

struct sink {
	struct buf out;
	int calls;
	int fail_after; /* 0: never */
};

static int
sink_emit(void *arg, const unsigned char *data, size_t len)
{
	struct sink *k = arg;

	k->calls++;
	if (k->fail_after && k->calls >= k->fail_after)
		return -1;
	buf_append(&k->out, data, len);
	return 0;
}

/* make_msg - a complete message in incoming/, moved to queue; its ID in id */
static void
make_msg(const char *queue, const char *sender, const char *const *rcpts, size_t size, char *id)
{
	struct qfile_writer w;
	struct buf err = BUF_INIT;
	struct timeval tv = { 1700000000, 5 };
	char from[64], to[64], *content;
	size_t i;

	assert_int_equal(qfile_create(&w, QUEUE_INCOMING, &err), 0);
	assert_int_equal(qfile_put_time(&w, &tv, &err), 0);
	assert_int_equal(qfile_put_sender(&w, sender, &err), 0);
	for (i = 0; rcpts[i]; i++)
		assert_int_equal(qfile_put_rcpt(&w, rcpts[i], NULL, 0, &err), 0);
	assert_int_equal(qfile_begin_content(&w, &err), 0);
	content = malloc(size);
	assert_non_null(content);
	memset(content, 'x', size);
	content[size - 1] = '\n';
	assert_int_equal(qfile_put_content(&w, content, size, &err), 0);
	free(content);
	strcpy(id, w.id);
	assert_int_equal(qfile_commit(&w, QF_COMMIT_NOSYNC, &err), 0);
	if (strcmp(queue, QUEUE_INCOMING) != 0) {
		assert_int_equal(qid_path(from, sizeof(from), QUEUE_INCOMING, id), 0);
		assert_int_equal(qid_path(to, sizeof(to), queue, id), 0);
		assert_int_equal(rename(from, to), 0);
	}
	buf_free(&err);
}

/* defer_reason - log a deferral for the first recipient of id */
static void
defer_reason(const char *queue, const char *id, const char *reason)
{
	struct qlog_entry e;
	struct qfile_env env;
	struct qfile_read_limits lim = { 100, 100 };
	struct buf err = BUF_INIT;
	char path[64];
	int fd;

	assert_int_equal(qid_path(path, sizeof(path), queue, id), 0);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(qfile_read(fd, &env, &lim, &err), 0);
	close(fd);
	memset(&e, 0, sizeof(e));
	e.when = 1700000100;
	e.offset = env.rcpts[0].offset;
	e.status = QLOG_DEFERRED;
	strcpy(e.dsn, "4.3.0");
	e.addr = env.rcpts[0].addr;
	e.relay = "none";
	e.reason = (char *)reason;
	assert_int_equal(qlog_append(QUEUE_DEFER, id, &e, &err), 0);
	qfile_env_free(&env);
	buf_free(&err);
}

static void
remove_all(void)
{
	static const char *const q[] = { QUEUE_INCOMING, QUEUE_ACTIVE, QUEUE_HOLD, NULL };
	char cmd[256];
	size_t i;

	for (i = 0; q[i]; i++) {
		snprintf(cmd, sizeof(cmd), "rm -f %s/*", q[i]);
		assert_int_equal(system(cmd), 0);
	}
	assert_int_equal(system("rm -f deferred/*/* defer/*/*"), 0);
}

static void
test_empty_queue(void **state)
{
	struct sink k = { BUF_INIT, 0, 0 };
	struct buf err = BUF_INIT;

	(void)state;
	remove_all();
	assert_int_equal(qlist_run(false, sink_emit, &k, &err), 0);
	assert_string_equal(buf_str(&k.out), "Mail queue is empty\n");
	buf_reset(&k.out);
	assert_int_equal(qlist_run(true, sink_emit, &k, &err), 0);
	assert_int_equal(k.out.len, 0);
	buf_free(&k.out);
	buf_free(&err);
}

static void
test_listing(void **state)
{
	static const char *const r1[] = { "bob@example.org", "carol@example.org", NULL };
	static const char *const r2[] = { "evil\x1b]0;owned\x07@example.org", NULL };
	static const char *const r3[] = { "dave@example.org", NULL };
	struct sink k = { BUF_INIT, 0, 0 };
	struct buf err = BUF_INIT, expect = BUF_INIT;
	char a[QID_LEN + 1], d[QID_LEN + 1], h[QID_LEN + 1], longreason[5000];
	const char *text;
	struct qfile_writer w;
	struct timespec ts[2];
	struct timeval now = { 1700000000, 0 };
	char path[64];
	int fd;

	(void)state;
	remove_all();
	make_msg(QUEUE_ACTIVE, "alice@example.org", r1, 1000, a);
	make_msg(QUEUE_DEFERRED, "", r2, 3000, d);
	make_msg(QUEUE_HOLD, "hold\\er@example.org", r3, 10, h);
	memset(longreason, 'r', sizeof(longreason) - 1);
	longreason[sizeof(longreason) - 1] = 0;
	defer_reason(QUEUE_DEFERRED, d, "first try\x1b[2J");
	defer_reason(QUEUE_DEFERRED, d, longreason);
	/* next_retry_time is the deferred file's mtime */
	assert_int_equal(qid_path(path, sizeof(path), QUEUE_DEFERRED, d), 0);
	ts[0].tv_sec = ts[1].tv_sec = 1800000000;
	ts[0].tv_nsec = ts[1].tv_nsec = 0;
	assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
	/* Not listed: an incomplete file, a corrupt one, names that are not IDs. */
	assert_int_equal(qfile_create(&w, QUEUE_INCOMING, &err), 0);
	assert_int_equal(qfile_put_time(&w, &now, &err), 0);
	assert_int_equal(qfile_put_sender(&w, "x", &err), 0);
	fd = open("active/1LG5AAAAAA000001", O_WRONLY | O_CREAT, 0700);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "garbage", 7), 7);
	close(fd);
	fd = open("hold/not-an-id", O_WRONLY | O_CREAT, 0700);
	assert_true(fd >= 0);
	close(fd);

	assert_int_equal(qlist_run(false, sink_emit, &k, &err), 0);
	text = buf_str(&k.out);
	buf_printf(&expect, "-Queue ID-        --Size-- ----Arrival Time---- -Sender/Recipient-------\n");
	/* IDs made in this order sort in this order */
	buf_printf(&expect, "%s*     1000 Tue Nov 14 22:13:20  alice@example.org\n", a);
	buf_printf(&expect, "%48s%s\n%48s%s\n\n", "", "bob@example.org", "", "carol@example.org");
	buf_printf(&expect, "%s      3000 Tue Nov 14 22:13:20  MAILER-DAEMON\n%42s(", d, "");
	buf_append(&expect, longreason, QLIST_REASON_MAX);
	buf_printf(&expect, ")\n%48sevil\\x1B]0;owned\\x07@example.org\n\n", "");
	buf_printf(
	    &expect, "%s!       10 Tue Nov 14 22:13:20  hold\\x5Cer@example.org\n%48sdave@example.org\n\n", h, "");
	buf_printf(&expect, "-- 4 Kbytes in 3 Requests.\n");
	assert_string_equal(text, buf_str(&expect));

	buf_reset(&k.out);
	assert_int_equal(qlist_run(true, sink_emit, &k, &err), 0);
	buf_reset(&expect);
	buf_printf(&expect,
	    "{\"queue_name\": \"active\", \"queue_id\": \"%s\", \"arrival_time\": 1700000000, \"message_size\": 1000, "
	    "\"sender\": \"alice@example.org\", \"recipients\": [{\"address\": \"bob@example.org\", \"done\": false}, "
	    "{\"address\": \"carol@example.org\", \"done\": false}]}\n",
	    a);
	buf_printf(&expect,
	    "{\"queue_name\": \"deferred\", \"queue_id\": \"%s\", \"arrival_time\": 1700000000, \"message_size\": "
	    "3000, "
	    "\"next_retry_time\": 1800000000, \"sender\": \"\", \"recipients\": [{\"address\": "
	    "\"evil\\u001b]0;owned\\u0007@example.org\", \"done\": false, \"delay_reason\": \"",
	    d);
	buf_append(&expect, longreason, QLIST_REASON_MAX);
	buf_printf(&expect, "\"}]}\n");
	buf_printf(&expect,
	    "{\"queue_name\": \"hold\", \"queue_id\": \"%s\", \"arrival_time\": 1700000000, \"message_size\": 10, "
	    "\"sender\": \"hold\\\\er@example.org\", \"recipients\": [{\"address\": \"dave@example.org\", \"done\": "
	    "false}]}\n",
	    h);
	assert_string_equal(buf_str(&k.out), buf_str(&expect));

	/* A sink that fails stops the listing with an error. */
	buf_reset(&k.out);
	k.calls = 0;
	k.fail_after = 1;
	buf_reset(&err);
	assert_int_equal(qlist_run(false, sink_emit, &k, &err), QLIST_ERR_IO);
	assert_int_equal(k.calls, 1);
	qfile_abort(&w);
	buf_free(&k.out);
	buf_free(&err);
	buf_free(&expect);
}

static void
test_unreadable_directory(void **state)
{
	struct sink k = { BUF_INIT, 0, 0 };
	struct buf err = BUF_INIT;

	(void)state;
	if (geteuid() == 0)
		skip(); /* root reads everything */
	assert_int_equal(chmod(QUEUE_HOLD, 0), 0);
	assert_int_equal(qlist_run(false, sink_emit, &k, &err), QLIST_ERR_ACCESS);
	assert_int_equal(k.out.len, 0); /* nothing before the error */
	assert_non_null(strstr(buf_str(&err), "hold"));
	assert_int_equal(chmod(QUEUE_HOLD, 0700), 0);
	buf_free(&k.out);
	buf_free(&err);
}

/* ---------------------------------------------------------------- protocol */

/* serve_script - a server on public/showq that answers one client with bytes, or with qlist_serve */
static pid_t
serve_script(const unsigned char *bytes, size_t len, bool real)
{
	struct sockaddr_un sun;
	pid_t pid;
	int lfd, fd;

	unlink("public/showq");
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strcpy(sun.sun_path, "public/showq");
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(lfd, 4), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char junk[4096];

		alarm(20);
		fd = accept(lfd, NULL, NULL);
		if (fd < 0)
			_exit(1);
		if (real) {
			struct stream *s = stream_new(fd, 0);

			qlist_serve(s);
			stream_free(s);
			_exit(0);
		}
		if (write(fd, bytes, len) != (ssize_t)len)
			_exit(1);
		shutdown(fd, SHUT_WR);
		while (read(fd, junk, sizeof(junk)) > 0)
			;
		_exit(0);
	}
	close(lfd);
	return pid;
}

static void
reap(pid_t pid)
{
	int status;

	assert_int_equal(waitpid(pid, &status, 0), pid);
}

#define HELLO                        \
	"protocol\0showq\0version\0" \
	"1\0\0"
#define OK         \
	"status\0" \
	"0\0\0"
#define BYTES(s) (const unsigned char *)(s), sizeof(s) - 1

static void
test_fetch_hostile_servers(void **state)
{
	static const struct {
		const unsigned char *bytes;
		size_t len;
		int rc;
		const char *out, *why;
	} cases[] = {
		{ BYTES(HELLO OK "6\nhello\n"
		                 "3\nab\n"
		                 "0\n"),
		    0, "hello\nab\n", NULL },
		{ BYTES(HELLO OK "0\n"), 0, "", NULL },
		{ BYTES("protocol\0cleanup\0version\0"
		        "1\0\0"),
		    -1, "", "greeting" },
		{ BYTES(HELLO "status\0"
		              "5\0reason\0no \x1b way\0\0"),
		    -1, "", "refused: no \\x1B way" },
		{ BYTES(HELLO "status\0"
		              "9\0\0"),
		    -1, "", "malformed" },
		{ BYTES(HELLO OK "6\nhel"), -1, "", "ended early" },
		{ BYTES(HELLO OK "6\nhello\n"), -1, "hello\n", "ended early" },
		{ BYTES(HELLO OK "99999999999\n"), -1, "", "malformed" },
		{ BYTES(HELLO OK "1048577\n"), -1, "", "malformed" },
		{ BYTES(HELLO OK "-1\nx"), -1, "", "malformed" },
		{ BYTES(HELLO OK "abc\n"), -1, "", "malformed" },
		{ BYTES(HELLO OK "12345678901234567890123456789\n"), -1, "", NULL },
		{ BYTES(HELLO OK "\n"), -1, "", NULL },
		{ BYTES(""), -1, "", NULL },
	};
	struct sink k = { BUF_INIT, 0, 0 };
	struct buf err = BUF_INIT;
	size_t i;
	pid_t pid;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		buf_reset(&k.out);
		buf_reset(&err);
		pid = serve_script(cases[i].bytes, cases[i].len, false);
		assert_int_equal(qlist_fetch("public/showq", i % 2 == 0, 5, sink_emit, &k, &err), cases[i].rc);
		reap(pid);
		assert_int_equal(k.out.len, strlen(cases[i].out));
		assert_memory_equal(k.out.data ? (const char *)k.out.data : "", cases[i].out, k.out.len);
		if (cases[i].why)
			assert_non_null(strstr(buf_str(&err), cases[i].why));
	}
	buf_free(&k.out);
	buf_free(&err);
}

static void
test_fetch_real_server(void **state)
{
	static const char *const r[] = { "bob@example.org", NULL };
	struct sink k = { BUF_INIT, 0, 0 }, direct = { BUF_INIT, 0, 0 };
	struct buf err = BUF_INIT;
	char id[QID_LEN + 1];
	bool json;
	pid_t pid;

	(void)state;
	remove_all();
	make_msg(QUEUE_DEFERRED, "alice@example.org", r, 200000, id);
	for (json = false;; json = true) {
		buf_reset(&k.out);
		buf_reset(&direct.out);
		pid = serve_script(NULL, 0, true);
		assert_int_equal(qlist_fetch("public/showq", json, 5, sink_emit, &k, &err), 0);
		reap(pid);
		assert_int_equal(qlist_run(json, sink_emit, &direct, &err), 0);
		assert_int_equal(k.out.len, direct.out.len);
		assert_memory_equal(k.out.data, direct.out.data, k.out.len);
		assert_non_null(strstr(buf_str(&k.out), id));
		if (json)
			break;
	}
	buf_free(&k.out);
	buf_free(&direct.out);
	buf_free(&err);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_empty_queue),
		cmocka_unit_test(test_listing),
		cmocka_unit_test(test_unreadable_directory),
		cmocka_unit_test(test_fetch_hostile_servers),
		cmocka_unit_test(test_fetch_real_server),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, setup, teardown);
}
