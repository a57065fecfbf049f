/*
 * stream_test - bounded line reading, timeouts, large writes, EOF and
 * descriptor passing over real socketpairs.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stream.h"

static void
pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
}

static void
feed(int fd, const char *s)
{
	assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
}

static void
test_lines(void **state)
{
	struct buf line = BUF_INIT;
	struct stream *s;
	int sv[2];

	pair(sv);
	feed(sv[1], "one\r\ntwo\nthree");
	close(sv[1]);
	s = stream_new(sv[0], 0);
	stream_set_timeout(s, 5);
	assert_int_equal(stream_getline(s, &line, 100), STREAM_OK);
	assert_string_equal(buf_str(&line), "one\r\n");
	assert_int_equal(stream_getline(s, &line, 100), STREAM_OK);
	assert_string_equal(buf_str(&line), "two\n");
	/* A last line without a newline is still a line. */
	assert_int_equal(stream_getline(s, &line, 100), STREAM_OK);
	assert_string_equal(buf_str(&line), "three");
	assert_int_equal(stream_getline(s, &line, 100), STREAM_EOF);
	assert_int_equal(stream_getline(s, &line, 100), STREAM_EOF);
	stream_free(s);
	buf_free(&line);
}

static void
test_too_long(void **state)
{
	struct buf line = BUF_INIT;
	struct stream *s;
	int sv[2];

	pair(sv);
	feed(sv[1], "abcdefghij\nok\n");
	close(sv[1]);
	s = stream_new(sv[0], 0);
	assert_int_equal(stream_getline(s, &line, 4), STREAM_TOOLONG);
	assert_int_equal(buf_len(&line), 4);
	assert_string_equal(buf_str(&line), "abcd");
	/* The rest stays readable: continue, or skip to the next line. */
	assert_int_equal(stream_getline(s, &line, 4), STREAM_TOOLONG);
	assert_string_equal(buf_str(&line), "efgh");
	assert_int_equal(stream_skipline(s, 100), STREAM_OK);
	assert_int_equal(stream_getline(s, &line, 4), STREAM_OK);
	assert_string_equal(buf_str(&line), "ok\n");
	stream_free(s);
	buf_free(&line);
}

static void
test_nul_in_line(void **state)
{
	static const char data[] = "a\0b\n";
	struct buf line = BUF_INIT;
	struct stream *s;
	int sv[2];

	pair(sv);
	assert_int_equal(write(sv[1], data, 4), 4);
	close(sv[1]);
	s = stream_new(sv[0], 0);
	assert_int_equal(stream_getline(s, &line, 100), STREAM_OK);
	assert_int_equal(buf_len(&line), 4);
	assert_true(buf_has_nul(&line));
	stream_free(s);
	buf_free(&line);
}

static void
test_timeout(void **state)
{
	struct buf line = BUF_INIT;
	struct stream *s;
	int64_t t0;
	int sv[2];

	pair(sv);
	s = stream_new(sv[0], 0);
	stream_set_timeout(s, 1);
	t0 = stream_now_ms();
	assert_int_equal(stream_getline(s, &line, 100), STREAM_TIMEOUT);
	assert_true(stream_now_ms() - t0 >= 900);
	assert_true(stream_now_ms() - t0 < 5000);
	/* Sticky: data arriving later does not revive a timed-out stream. */
	feed(sv[1], "late\n");
	assert_int_equal(stream_getline(s, &line, 100), STREAM_TIMEOUT);
	stream_free(s);
	close(sv[1]);
	buf_free(&line);
}

static void
test_deadline(void **state)
{
	struct stream *s;
	char c;
	int64_t t0;
	int sv[2];

	pair(sv);
	s = stream_new(sv[0], 0);
	stream_set_timeout(s, 100);
	stream_set_deadline(s, 1);
	t0 = stream_now_ms();
	assert_int_equal(stream_read(s, &c, 1), STREAM_TIMEOUT);
	assert_true(stream_now_ms() - t0 < 5000);
	stream_free(s);
	close(sv[1]);
}

static void
test_big_write(void **state)
{
	const size_t total = 8 * 1024 * 1024;
	unsigned char *data = malloc(total), *got = malloc(total);
	struct stream *w, *r;
	pid_t pid;
	int sv[2], status;
	size_t i;

	for (i = 0; i < total; i++)
		data[i] = (unsigned char)(i * 7 + (i >> 13));
	pair(sv);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(sv[0]);
		w = stream_new(sv[1], 0);
		stream_set_timeout(w, 10);
		/* Mix small buffered writes and one large direct write. */
		for (i = 0; i < 1000; i++)
			stream_write(w, data + i, 1);
		stream_write(w, data + 1000, total - 1000);
		_exit(stream_flush(w) == STREAM_OK ? 0 : 1);
	}
	close(sv[1]);
	r = stream_new(sv[0], 0);
	stream_set_timeout(r, 10);
	assert_int_equal(stream_read(r, got, total), (ssize_t)total);
	assert_memory_equal(got, data, total);
	assert_int_equal(stream_read(r, got, 1), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	stream_free(r);
	free(data);
	free(got);
}

static void
test_write_to_closed_peer(void **state)
{
	char block[65536];
	struct stream *s;
	int sv[2], i, r = STREAM_OK;

	memset(block, 'x', sizeof(block));
	pair(sv);
	close(sv[1]);
	s = stream_new(sv[0], 0);
	stream_set_timeout(s, 2);
	/* No SIGPIPE: the write fails with a status instead. */
	for (i = 0; i < 10 && r == STREAM_OK; i++) {
		r = stream_write(s, block, sizeof(block));
		if (r == STREAM_OK)
			r = stream_flush(s);
	}
	assert_int_equal(r, STREAM_EOF);
	assert_int_equal(stream_status(s), STREAM_EOF);
	stream_free(s);
}

static void
test_printf_pending(void **state)
{
	struct buf line = BUF_INIT;
	struct stream *a, *b;
	int sv[2];

	pair(sv);
	a = stream_new(sv[0], 0);
	b = stream_new(sv[1], 0);
	stream_set_timeout(b, 5);
	stream_printf(a, "250-%s\r\n250 %d\r\nEXTRA", "first", 2);
	assert_int_equal(stream_flush(a), STREAM_OK);
	assert_int_equal(stream_getline(b, &line, 512), STREAM_OK);
	assert_string_equal(buf_str(&line), "250-first\r\n");
	/* Pipelined input beyond the first line is visible and can be dropped. */
	assert_true(stream_pending(b) > 0);
	stream_discard_input(b);
	assert_int_equal(stream_pending(b), 0);
	assert_int_equal(stream_wait_readable(b, 0), 0);
	stream_free(a);
	stream_free(b);
	buf_free(&line);
}

static void
test_fd_passing(void **state)
{
	char path[] = "/tmp/stream_test.XXXXXX";
	struct stream *a, *b;
	struct stat st1, st2;
	int sv[2], fd, got;

	fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	pair(sv);
	a = stream_new(sv[0], 0);
	b = stream_new(sv[1], STREAM_FDPASS);
	stream_set_timeout(b, 5);
	stream_puts(a, "hdr");
	assert_int_equal(stream_send_fd(a, fd), STREAM_OK);
	stream_puts(a, "tail");
	stream_flush(a);
	{
		char h[3];

		assert_int_equal(stream_read(b, h, 3), 3);
		assert_memory_equal(h, "hdr", 3);
	}
	assert_int_equal(stream_recv_fd(b, &got), STREAM_OK);
	assert_true(got >= 0);
	assert_int_equal(fstat(fd, &st1), 0);
	assert_int_equal(fstat(got, &st2), 0);
	assert_int_equal(st1.st_ino, st2.st_ino);
	{
		char t[4];

		assert_int_equal(stream_read(b, t, 4), 4);
		assert_memory_equal(t, "tail", 4);
	}
	close(got);
	close(fd);
	stream_free(a);
	stream_free(b);
}

static void
test_fd_unexpected_closed(void **state)
{
	struct stream *a, *b;
	struct stat st;
	int sv[2], devnull, c;

	pair(sv);
	devnull = open("/dev/null", O_RDONLY);
	a = stream_new(sv[0], 0);
	b = stream_new(sv[1], 0); /* did not ask for descriptors */
	assert_int_equal(stream_send_fd(a, devnull), STREAM_OK);
	close(devnull);
	c = stream_getc(b);
	assert_int_equal(c, 'F');
	assert_int_equal(b->nfds, 0);
	/* The descriptor number devnull had is free again: nothing leaked. */
	assert_int_equal(fstat(devnull, &st), -1);
	stream_free(a);
	stream_free(b);
}

static void
test_recv_fd_missing(void **state)
{
	struct stream *a, *b;
	int sv[2], got;

	pair(sv);
	a = stream_new(sv[0], 0);
	b = stream_new(sv[1], STREAM_FDPASS);
	stream_puts(a, "F");
	stream_flush(a);
	assert_int_equal(stream_recv_fd(b, &got), STREAM_ERROR);
	assert_int_equal(got, -1);
	stream_free(a);
	stream_free(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lines),
		cmocka_unit_test(test_too_long),
		cmocka_unit_test(test_nul_in_line),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_deadline),
		cmocka_unit_test(test_big_write),
		cmocka_unit_test(test_write_to_closed_peer),
		cmocka_unit_test(test_printf_pending),
		cmocka_unit_test(test_fd_passing),
		cmocka_unit_test(test_fd_unexpected_closed),
		cmocka_unit_test(test_recv_fd_missing),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
