/*
 * qfile_test - queue files: writer/reader round trips, the record order,
 * done markers, and hostile files (every truncation, every flipped byte,
 * hand-made records that break one rule each).
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

static char tmpdir[] = "/tmp/qfile_test.XXXXXX";
static char oldcwd[4096];

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
	if (mkdir(QUEUE_INCOMING, 0700) < 0 || mkdir(QUEUE_DEFERRED, 0700) < 0 || mkdir("t", 0700) < 0)
		return -1;
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

/* Helpers. */

static const struct timeval arrival = { 1700000000, 123456 };

static int
open_read(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	return fd;
}

static unsigned char *
slurp(const char *path, size_t *len)
{
	struct stat st;
	unsigned char *p;
	int fd = open_read(path);

	assert_int_equal(fstat(fd, &st), 0);
	p = malloc((size_t)st.st_size + 1);
	assert_non_null(p);
	assert_int_equal(pread(fd, p, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return p;
}

/* put_file - write bytes as t/NAME with the given mode */
static void
put_file(const char *name, const void *p, size_t n, mode_t mode)
{
	int fd;

	unlink(name);
	fd = open(name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	if (n)
		assert_int_equal(write(fd, p, n), (ssize_t)n);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static int
read_path(const char *path, struct qfile_env *env, const struct qfile_read_limits *lim, struct buf *err)
{
	int fd = open_read(path), r;

	r = qfile_read(fd, env, lim, err);
	close(fd);
	return r;
}

/* read_content - all content of a file that qfile_read accepted; returns the chunk count */
static size_t
read_content(int fd, const struct qfile_env *env, struct buf *all)
{
	struct buf chunk = BUF_INIT, err = BUF_INIT;
	off_t pos = env->content_offset;
	size_t n = 0;
	int r;

	buf_reset(all);
	while ((r = qfile_content_next(fd, &pos, &chunk, &err)) == 1) {
		assert_true(chunk.len > 0 && chunk.len <= QF_CHUNK_MAX);
		buf_append(all, chunk.data, chunk.len);
		n++;
	}
	if (r != 0)
		fail_msg("content: %s", buf_str(&err));
	buf_free(&chunk);
	buf_free(&err);
	return n;
}

/* Round trips. */

struct rt_case {
	const char *what;
	size_t content_len;
	size_t piece;   /* write the content in pieces of this size (0: one call) */
	size_t nrcpt;   /* envelope recipients */
	size_t nxrcpt;  /* extracted recipients */
	size_t nchunks; /* expected number of C records */
	bool one_write; /* the whole file must still be in memory at commit */
};

static const struct rt_case rt_cases[] = {
	{ "empty content", 0, 0, 1, 0, 0, true },
	{ "one byte", 1, 0, 1, 0, 1, true },
	{ "2 KiB line by line", 2048, 64, 3, 0, 1, true },
	{ "2 KiB byte by byte", 2048, 1, 3, 0, 1, true },
	{ "exactly 64 KiB", 65536, 0, 2, 0, 1, false },
	{ "64 KiB + 1 in lines", 65537, 100, 2, 0, 2, false },
	{ "1 MiB + 3", 1024 * 1024 + 3, 0, 5, 2, 17, false },
	{ "1 MiB + 3 in odd pieces", 1024 * 1024 + 3, 4099, 1, 1, 17, false },
	{ "extracted only", 10, 0, 0, 3, 1, true },
	{ "many recipients", 300, 0, 5000, 100, 1, false },
};

static void
make_content(unsigned char *p, size_t n)
{
	size_t i;

	/* Lines with NUL and high bytes in them: content is bytes. */
	for (i = 0; i < n; i++)
		p[i] = (i % 61 == 60) ? '\n' : (i % 7 == 3) ? 0 : (unsigned char)(i * 31 + 7);
}

static void
rcpt_name(char *out, size_t len, const char *prefix, size_t i)
{
	snprintf(out, len, "%s%zu@example.com", prefix, i);
}

static void
test_roundtrip(void **state)
{
	struct qfile_writer w;
	struct qfile_env env;
	struct buf err = BUF_INIT, all = BUF_INIT;
	unsigned char *content;
	char addr[128], orcpt[160];
	struct stat st;
	size_t i, k, off, take, r;
	int fd;

	(void)state;
	content = malloc(2 * 1024 * 1024);
	assert_non_null(content);
	for (k = 0; k < sizeof(rt_cases) / sizeof(rt_cases[0]); k++) {
		const struct rt_case *c = &rt_cases[k];

		make_content(content, c->content_len);
		assert_int_equal(qfile_create(&w, QUEUE_INCOMING, &err), 0);
		assert_true(qid_valid(w.id));
		assert_int_equal(qfile_put_time(&w, &arrival, &err), 0);
		assert_int_equal(qfile_put_sender(&w, k % 2 ? "" : "sender@example.org", &err), 0);
		assert_int_equal(qfile_put_attr(&w, "client", "mail.example.net[192.0.2.1]", &err), 0);
		assert_int_equal(qfile_put_attr(&w, "empty", "", &err), 0);
		assert_int_equal(qfile_put_attr(&w, "helo", "a=b=c \xff", &err), 0);
		for (i = 0; i < c->nrcpt; i++) {
			rcpt_name(addr, sizeof(addr), "user", i);
			snprintf(orcpt, sizeof(orcpt), "rfc822;%s", addr);
			assert_int_equal(qfile_put_rcpt(&w, addr, i % 3 == 1 ? orcpt : NULL,
			                     i % 3 == 2 ? (QF_NOTIFY_SUCCESS | QF_NOTIFY_DELAY) : 0, &err),
			    0);
		}
		assert_int_equal(qfile_begin_content(&w, &err), 0);
		for (off = 0; off < c->content_len; off += take) {
			take = c->piece ? c->piece : c->content_len;
			if (take > c->content_len - off)
				take = c->content_len - off;
			assert_int_equal(qfile_put_content(&w, content + off, take, &err), 0);
		}
		if (c->nxrcpt) {
			assert_int_equal(qfile_begin_extracted(&w, &err), 0);
			assert_int_equal(qfile_put_attr(&w, "xattr", "1", &err), 0);
			for (i = 0; i < c->nxrcpt; i++) {
				rcpt_name(addr, sizeof(addr), "x", i);
				assert_int_equal(qfile_put_rcpt(&w, addr, NULL, QF_NOTIFY_NEVER, &err), 0);
			}
		}
		if (c->one_write)
			assert_int_equal(w.flushed, 0);
		else
			assert_true(w.flushed > 0);
		if (qfile_commit(&w, k % 2 ? QF_COMMIT_NOSYNC : 0, &err) != 0)
			fail_msg("%s: commit: %s", c->what, buf_str(&err));
		qfile_abort(&w); /* after a commit: leaves the file alone */

		assert_int_equal(stat(w.path, &st), 0);
		assert_int_equal(st.st_mode & 07777, QF_MODE_COMPLETE);
		assert_int_equal(strncmp(w.path, "incoming/", 9), 0);
		fd = open_read(w.path);
		r = (size_t)qfile_read(fd, &env, NULL, &err);
		if (r != 0)
			fail_msg("%s: read: %s", c->what, buf_str(&err));
		assert_int_equal(env.version, QF_FORMAT_VERSION);
		assert_int_equal(env.arrival.tv_sec, arrival.tv_sec);
		assert_int_equal(env.arrival.tv_usec, arrival.tv_usec);
		assert_string_equal(env.sender, k % 2 ? "" : "sender@example.org");
		assert_int_equal(env.nattrs, 3 + (c->nxrcpt ? 1 : 0));
		assert_string_equal(qfile_env_attr(&env, "client"), "mail.example.net[192.0.2.1]");
		assert_string_equal(qfile_env_attr(&env, "empty"), "");
		assert_string_equal(qfile_env_attr(&env, "helo"), "a=b=c \xff");
		assert_null(qfile_env_attr(&env, "absent"));
		assert_int_equal(env.nrcpts, c->nrcpt + c->nxrcpt);
		assert_int_equal(env.ndone, 0);
		for (i = 0; i < c->nrcpt; i++) {
			rcpt_name(addr, sizeof(addr), "user", i);
			assert_string_equal(env.rcpts[i].addr, addr);
			assert_false(env.rcpts[i].done);
			if (i % 3 == 1) {
				snprintf(orcpt, sizeof(orcpt), "rfc822;%s", addr);
				assert_string_equal(env.rcpts[i].orcpt, orcpt);
			} else {
				assert_null(env.rcpts[i].orcpt);
			}
			assert_int_equal(env.rcpts[i].notify, i % 3 == 2 ? (QF_NOTIFY_SUCCESS | QF_NOTIFY_DELAY) : 0);
			if (i > 0)
				assert_true(env.rcpts[i].offset > env.rcpts[i - 1].offset);
			assert_true(env.rcpts[i].offset < env.content_offset);
		}
		for (i = 0; i < c->nxrcpt; i++) {
			rcpt_name(addr, sizeof(addr), "x", i);
			assert_string_equal(env.rcpts[c->nrcpt + i].addr, addr);
			assert_int_equal(env.rcpts[c->nrcpt + i].notify, QF_NOTIFY_NEVER);
			assert_true(env.rcpts[c->nrcpt + i].offset > env.content_offset);
		}
		assert_int_equal(env.content_size, c->content_len);
		assert_int_equal(env.file_size, st.st_size);
		assert_int_equal(env.content_offset, w.content_offset);
		if (read_content(fd, &env, &all) != c->nchunks)
			fail_msg("%s: wrong number of content records", c->what);
		assert_int_equal(all.len, c->content_len);
		if (c->content_len)
			assert_memory_equal(all.data, content, c->content_len);
		qfile_env_free(&env);
		qfile_env_free(&env); /* twice is harmless */
		close(fd);
		unlink(w.path);
	}
	free(content);
	buf_free(&err);
	buf_free(&all);
}

/* The exact bytes of a tiny file (doc/queue-format.md shows the same). */
static void
test_known_bytes(void **state)
{
	static const unsigned char want[] = "V\x40"
	                                    "POSTERN 1 offset=0000000149 size=000000000012 rcpts=00000001    "
	                                    "T\x11"
	                                    "1700000000.123456"
	                                    "S\x11"
	                                    "alice@example.org"
	                                    "A\x0f"
	                                    "protocol=ESMTPS"
	                                    "R\x18"
	                                    "bob@example.com\0notify=6"
	                                    "M\x00"
	                                    "C\x0c"
	                                    "Subject: hi\n"
	                                    "E\x00";
	struct qfile_writer w;
	struct buf err = BUF_INIT;
	unsigned char *got;
	size_t len;

	(void)state;
	assert_int_equal(qfile_create(&w, QUEUE_INCOMING, &err), 0);
	assert_int_equal(qfile_put_time(&w, &arrival, &err), 0);
	assert_int_equal(qfile_put_sender(&w, "alice@example.org", &err), 0);
	assert_int_equal(qfile_put_attr(&w, "protocol", "ESMTPS", &err), 0);
	assert_int_equal(qfile_put_rcpt(&w, "bob@example.com", NULL, QF_NOTIFY_SUCCESS | QF_NOTIFY_FAILURE, &err), 0);
	assert_int_equal(qfile_begin_content(&w, &err), 0);
	assert_int_equal(qfile_put_content(&w, "Subject: ", 9, &err), 0);
	assert_int_equal(qfile_put_content(&w, "hi\n", 3, &err), 0);
	assert_int_equal(qfile_commit(&w, 0, &err), 0);
	got = slurp(w.path, &len);
	if (len != sizeof(want) - 1 || memcmp(got, want, len) != 0) {
		size_t i;

		for (i = 0; i < len; i++)
			fprintf(stderr, "%02x%c", got[i], i % 16 == 15 ? '\n' : ' ');
		fail_msg("file bytes differ (%zu vs %zu)", len, sizeof(want) - 1);
	}
	free(got);
	unlink(w.path);
	buf_free(&err);
}

/* A large envelope is flushed early and the V record is patched with pwrite. */
static void
test_large_envelope(void **state)
{
	struct qfile_writer w;
	struct qfile_env env;
	struct buf err = BUF_INIT;
	char addr[600];
	size_t i;

	(void)state;
	assert_int_equal(qfile_create(&w, QUEUE_INCOMING, &err), 0);
	assert_int_equal(qfile_put_time(&w, &arrival, &err), 0);
	assert_int_equal(qfile_put_sender(&w, "s@example.org", &err), 0);
	memset(addr, 'a', sizeof(addr));
	for (i = 0; i < 1000; i++) {
		snprintf(addr + 500, 100, "%zu@example.com", i);
		assert_int_equal(qfile_put_rcpt(&w, addr, NULL, 0, &err), 0);
	}
	assert_true(w.flushed > 0);
	assert_int_equal(qfile_begin_content(&w, &err), 0);
	assert_int_equal(qfile_put_content(&w, "x\n", 2, &err), 0);
	assert_int_equal(qfile_commit(&w, 0, &err), 0);
	assert_int_equal(read_path(w.path, &env, NULL, &err), 0);
	assert_int_equal(env.nrcpts, 1000);
	assert_int_equal(env.content_size, 2);
	assert_true(env.content_offset > 500000);
	assert_string_equal(env.rcpts[999].addr + 500, "999@example.com");
	qfile_env_free(&env);
	unlink(w.path);
	buf_free(&err);
}

/* Writer: the record order, as a table of call sequences. */

static int
do_op(struct qfile_writer *w, char op, struct buf *err)
{
	switch (op) {
	case 'T':
		return qfile_put_time(w, &arrival, err);
	case 'S':
		return qfile_put_sender(w, "s@example.org", err);
	case 'A':
		return qfile_put_attr(w, "name", "value", err);
	case 'R':
		return qfile_put_rcpt(w, "r@example.com", NULL, 0, err);
	case 'M':
		return qfile_begin_content(w, err);
	case 'C':
		return qfile_put_content(w, "line\n", 5, err);
	case 'X':
		return qfile_begin_extracted(w, err);
	case 'E':
		return qfile_commit(w, QF_COMMIT_NOSYNC, err);
	}
	fail_msg("bad op %c", op);
	return -1;
}

static void
test_writer_order(void **state)
{
	static const struct {
		const char *ops;
		int fail_at; /* index of the first call that must fail; -1: none */
	} cases[] = {
		{ "TSARMCE", -1 },
		{ "TSRME", -1 },
		{ "TSAARRMCCCE", -1 },
		{ "TSRMCXRAE", -1 },
		{ "TSRMCXARAE", -1 },
		{ "TSMXRE", -1 },
		{ "TSRMXE", -1 },
		{ "TSMCE", 4 }, /* no recipients */
		{ "TSMXE", 4 }, /* still none */
		{ "STRME", 0 }, /* S before T */
		{ "RTSME", 0 },
		{ "MTSRE", 0 },
		{ "ETSRM", 0 },
		{ "TTSRME", 1 },  /* T twice */
		{ "TSSRME", 2 },  /* S twice */
		{ "TRSME", 1 },   /* R before S */
		{ "TSRAME", 3 },  /* A after R in the envelope */
		{ "TSRCME", 3 },  /* content before M */
		{ "TSRMMCE", 4 }, /* M twice */
		{ "TSRE", 3 },    /* no M */
		{ "TSRXE", 3 },   /* X before M */
		{ "TSRMXCE", 5 }, /* content after X */
		{ "TSRMXXE", 5 }, /* X twice */
		{ "TSRMXME", 5 },
		{ "TSRMEE", 5 },  /* commit twice */
		{ "TSRMECE", 5 }, /* content after commit */
		{ "TSRMERE", 5 },
	};
	struct qfile_writer w;
	struct buf err = BUF_INIT;
	char path[sizeof(w.path)];
	const char *e;
	size_t i, j;
	int r;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(qfile_create(&w, QUEUE_INCOMING, &err), 0);
		strcpy(path, w.path);
		for (j = 0; cases[i].ops[j]; j++) {
			buf_reset(&err);
			r = do_op(&w, cases[i].ops[j], &err);
			if ((int)j == cases[i].fail_at) {
				if (r != -1)
					fail_msg("%s: step %zu should fail", cases[i].ops, j);
				assert_true(buf_len(&err) > 0);
				break;
			}
			if (r != 0)
				fail_msg("%s: step %zu failed: %s", cases[i].ops, j, buf_str(&err));
		}
		e = strchr(cases[i].ops, 'E');
		if (e != NULL && (cases[i].fail_at < 0 || e - cases[i].ops < cases[i].fail_at)) {
			/* committed: a complete file */
			struct qfile_env env;

			assert_int_equal(read_path(path, &env, NULL, &err), 0);
			qfile_env_free(&env);
			qfile_abort(&w);
			assert_int_equal(access(path, F_OK), 0);
			unlink(path);
		} else {
			qfile_abort(&w);
			qfile_abort(&w); /* idempotent */
			assert_int_equal(access(path, F_OK), -1);
		}
	}
	buf_free(&err);
}

static void
test_writer_bad_values(void **state)
{
	static const struct timeval bad_tv[] = { { -1, 0 }, { 0, -1 }, { 0, 1000000 } };
	static const char *const bad_names[] = { "", "Name", "a-b", "a=b", "a b",
		"a12345678901234567890123456789012345678901234567890123456789012345" };
	static const int bad_notify[] = { 0x10, -1, QF_NOTIFY_NEVER | QF_NOTIFY_SUCCESS,
		QF_NOTIFY_NEVER | QF_NOTIFY_DELAY };
	struct qfile_writer w;
	struct buf err = BUF_INIT;
	char *big;
	size_t i;

	(void)state;
	assert_int_equal(qfile_create(&w, QUEUE_INCOMING, &err), 0);
	for (i = 0; i < sizeof(bad_tv) / sizeof(bad_tv[0]); i++)
		assert_int_equal(qfile_put_time(&w, &bad_tv[i], &err), -1);
	assert_int_equal(qfile_put_time(&w, &arrival, &err), 0);
	big = malloc(QF_RECORD_MAX + 2);
	assert_non_null(big);
	memset(big, 'b', QF_RECORD_MAX + 1);
	big[QF_RECORD_MAX + 1] = 0;
	assert_int_equal(qfile_put_sender(&w, big, &err), -1);
	assert_int_equal(qfile_put_sender(&w, "", &err), 0);
	for (i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++)
		if (qfile_put_attr(&w, bad_names[i], "v", &err) != -1)
			fail_msg("attribute name \"%s\" accepted", bad_names[i]);
	assert_int_equal(qfile_put_attr(&w, "ok_name_1", "", &err), 0);
	assert_int_equal(qfile_put_rcpt(&w, "", NULL, 0, &err), -1);
	for (i = 0; i < sizeof(bad_notify) / sizeof(bad_notify[0]); i++)
		assert_int_equal(qfile_put_rcpt(&w, "a@b", NULL, bad_notify[i], &err), -1);
	assert_int_equal(qfile_put_rcpt(&w, big, NULL, 0, &err), -1);
	assert_int_equal(qfile_put_rcpt(&w, "a@b", "", QF_NOTIFY_NEVER, &err), 0);
	assert_int_equal(qfile_begin_content(&w, &err), 0);
	assert_int_equal(qfile_commit(&w, QF_COMMIT_NOSYNC, &err), 0);
	unlink(w.path);
	free(big);

	/* Bad queue names never become a path. */
	assert_int_equal(qfile_create(&w, "../etc", &err), -1);
	qfile_abort(&w);
	assert_int_equal(qfile_create(&w, "private", &err), -1);
	qfile_abort(&w);
	/* A missing queue directory is an error, not a crash. */
	assert_int_equal(qfile_create(&w, QUEUE_HOLD, &err), -1);
	assert_non_null(strstr(buf_str(&err), "hold/"));
	qfile_abort(&w);
	buf_free(&err);
}

/* mark_done: in place, idempotent, and only on R records. */
static void
test_mark_done(void **state)
{
	struct qfile_writer w;
	struct qfile_env env, env2;
	struct buf err = BUF_INIT;
	off_t bad[8];
	size_t i;
	int fd;

	(void)state;
	assert_int_equal(qfile_create(&w, QUEUE_INCOMING, &err), 0);
	assert_int_equal(qfile_put_time(&w, &arrival, &err), 0);
	assert_int_equal(qfile_put_sender(&w, "Rsender", &err), 0);
	assert_int_equal(qfile_put_rcpt(&w, "a@x", NULL, 0, &err), 0);
	assert_int_equal(qfile_put_rcpt(&w, "b@x", "rfc822;b@x", 0, &err), 0);
	assert_int_equal(qfile_put_rcpt(&w, "c@x", NULL, 0, &err), 0);
	assert_int_equal(qfile_begin_content(&w, &err), 0);
	assert_int_equal(qfile_put_content(&w, "RRRR\n", 5, &err), 0);
	assert_int_equal(qfile_begin_extracted(&w, &err), 0);
	assert_int_equal(qfile_put_rcpt(&w, "d@x", NULL, 0, &err), 0);
	assert_int_equal(qfile_commit(&w, 0, &err), 0);

	fd = open(w.path, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(qfile_read(fd, &env, NULL, &err), 0);
	assert_int_equal(env.nrcpts, 4);
	assert_int_equal(qfile_mark_done(fd, env.rcpts[1].offset, &err), 0);
	assert_int_equal(qfile_mark_done(fd, env.rcpts[1].offset, &err), 0); /* again: fine */
	assert_int_equal(qfile_mark_done(fd, env.rcpts[3].offset, &err), 0);
	assert_int_equal(qfile_read(fd, &env2, NULL, &err), 0);
	assert_int_equal(env2.ndone, 2);
	for (i = 0; i < 4; i++) {
		assert_int_equal(env2.rcpts[i].done, i == 1 || i == 3);
		assert_string_equal(env2.rcpts[i].addr, env.rcpts[i].addr);
		assert_int_equal(env2.rcpts[i].offset, env.rcpts[i].offset);
	}
	assert_string_equal(env2.rcpts[1].orcpt, "rfc822;b@x");

	/* Offsets that are not a recipient's type byte. */
	bad[0] = 0;                       /* V */
	bad[1] = 2;                       /* V payload */
	bad[2] = env.rcpts[0].offset + 1; /* inside R */
	bad[3] = env.content_offset;      /* C ("RRRR" is in its payload) */
	bad[4] = env.content_offset + 2;  /* 'R' inside content */
	bad[5] = env.file_size;           /* past the end */
	bad[6] = -1;
	bad[7] = env.file_size - 2; /* E */
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char c;

		buf_reset(&err);
		if (bad[i] == env.content_offset + 2) {
			/* That byte really is an 'R': mark_done cannot know; callers pass offsets from qfile_read. */
			assert_int_equal(pread(fd, &c, 1, bad[i]), 1);
			assert_int_equal(c, 'R');
			continue;
		}
		if (qfile_mark_done(fd, bad[i], &err) != -1)
			fail_msg("mark_done at %lld accepted", (long long)bad[i]);
		assert_true(buf_len(&err) > 0);
	}
	qfile_env_free(&env2);
	assert_int_equal(qfile_read(fd, &env2, NULL, &err), 0);
	assert_int_equal(env2.ndone, 2);
	qfile_env_free(&env2);
	close(fd);

	/* A read-only descriptor cannot be marked. */
	fd = open_read(w.path);
	assert_int_equal(qfile_mark_done(fd, env.rcpts[0].offset, &err), -1);
	close(fd);
	qfile_env_free(&env);
	unlink(w.path);
	buf_free(&err);
}

/* A small but complete file with every kind of record. */
static char *
small_file(void)
{
	struct qfile_writer w;
	struct buf err = BUF_INIT;

	assert_int_equal(qfile_create(&w, QUEUE_INCOMING, &err), 0);
	assert_int_equal(qfile_put_time(&w, &arrival, &err), 0);
	assert_int_equal(qfile_put_sender(&w, "s@example.org", &err), 0);
	assert_int_equal(qfile_put_attr(&w, "client", "[192.0.2.1]", &err), 0);
	assert_int_equal(qfile_put_rcpt(&w, "a@example.com", "rfc822;a@example.com", QF_NOTIFY_FAILURE, &err), 0);
	assert_int_equal(qfile_put_rcpt(&w, "b@example.com", NULL, 0, &err), 0);
	assert_int_equal(qfile_begin_content(&w, &err), 0);
	assert_int_equal(qfile_put_content(&w, "Subject: x\n\nbody\0with nul\n", 27, &err), 0);
	assert_int_equal(qfile_begin_extracted(&w, &err), 0);
	assert_int_equal(qfile_put_attr(&w, "x", "y", &err), 0);
	assert_int_equal(qfile_put_rcpt(&w, "c@example.com", NULL, QF_NOTIFY_NEVER, &err), 0);
	assert_int_equal(qfile_commit(&w, QF_COMMIT_NOSYNC, &err), 0);
	buf_free(&err);
	return strdup(w.path);
}

/* Every proper prefix of a valid file is incomplete, never complete. */
static void
test_truncation(void **state)
{
	struct qfile_env env;
	struct buf err = BUF_INIT;
	unsigned char *data;
	char *path = small_file();
	size_t size, n;
	int r;

	(void)state;
	data = slurp(path, &size);
	assert_int_equal(read_path(path, &env, NULL, &err), 0);
	qfile_env_free(&env);
	for (n = 0; n < size; n++) {
		put_file("t/trunc", data, n, QF_MODE_COMPLETE);
		r = read_path("t/trunc", &env, NULL, &err);
		if (r != 1)
			fail_msg("prefix of %zu/%zu bytes: %d (%s)", n, size, r, buf_str(&err));
		assert_int_equal(env.nrcpts, 0); /* nothing is handed back */
		assert_null(env.rcpts);
	}
	/* One byte more than the file: data after E. */
	data = realloc(data, size + 1);
	assert_non_null(data);
	data[size] = 'E';
	put_file("t/trunc", data, size + 1, QF_MODE_COMPLETE);
	assert_int_equal(read_path("t/trunc", &env, NULL, &err), -1);
	free(data);
	free(path);
	buf_free(&err);
}

/* Truncations of a file with large content, around the chunk boundaries. */
static void
test_truncation_big(void **state)
{
	struct qfile_writer w;
	struct qfile_env env;
	struct buf err = BUF_INIT;
	unsigned char *content, *data;
	size_t size, n, clen = 3 * QF_CHUNK_MAX + 10;
	int r;

	(void)state;
	content = malloc(clen);
	assert_non_null(content);
	make_content(content, clen);
	assert_int_equal(qfile_create(&w, QUEUE_INCOMING, &err), 0);
	assert_int_equal(qfile_put_time(&w, &arrival, &err), 0);
	assert_int_equal(qfile_put_sender(&w, "", &err), 0);
	assert_int_equal(qfile_put_rcpt(&w, "a@b", NULL, 0, &err), 0);
	assert_int_equal(qfile_begin_content(&w, &err), 0);
	assert_int_equal(qfile_put_content(&w, content, clen, &err), 0);
	assert_int_equal(qfile_commit(&w, QF_COMMIT_NOSYNC, &err), 0);
	data = slurp(w.path, &size);
	for (n = 0; n < size; n += (n % QF_CHUNK_MAX < 16 || n % QF_CHUNK_MAX > QF_CHUNK_MAX - 16) ? 1 : 997) {
		put_file("t/trunc", data, n, QF_MODE_COMPLETE);
		r = read_path("t/trunc", &env, NULL, &err);
		if (r != 1)
			fail_msg("prefix of %zu/%zu bytes: %d (%s)", n, size, r, buf_str(&err));
	}
	put_file("t/trunc", data, size, QF_MODE_COMPLETE);
	assert_int_equal(read_path("t/trunc", &env, NULL, &err), 0);
	assert_int_equal(env.content_size, clen);
	qfile_env_free(&env);
	unlink(w.path);
	free(data);
	free(content);
	buf_free(&err);
}

/*
 * Flip every byte of a small file in turn.  Never a crash or a read out of
 * bounds (the sanitizer build checks that); a file that still reads as
 * complete must agree with its V record, so it has as many recipients
 * and as much content as the original.
 */
static void
test_flip_bytes(void **state)
{
	static const unsigned char masks[] = { 0x01, 0x02, 0x10, 0x20, 0x80, 0xff };
	struct qfile_env env, orig;
	struct buf err = BUF_INIT, all = BUF_INIT;
	unsigned char *data;
	char *path = small_file();
	size_t size, i, m, complete = 0, rejected = 0;
	int r, fd;

	(void)state;
	data = slurp(path, &size);
	assert_int_equal(read_path(path, &orig, NULL, &err), 0);
	for (i = 0; i < size; i++) {
		for (m = 0; m < sizeof(masks); m++) {
			data[i] ^= masks[m];
			put_file("t/flip", data, size, QF_MODE_COMPLETE);
			data[i] ^= masks[m];
			fd = open_read("t/flip");
			r = qfile_read(fd, &env, NULL, &err);
			assert_true(r == 0 || r == 1 || r == -1);
			if (r == 0) {
				complete++;
				assert_int_equal(env.nrcpts, orig.nrcpts);
				assert_int_equal(env.content_size, orig.content_size);
				assert_int_equal(env.content_offset, orig.content_offset);
				read_content(fd, &env, &all);
				assert_int_equal(all.len, orig.content_size);
				for (size_t k = 0; k < env.nrcpts; k++)
					assert_true(env.rcpts[k].offset == orig.rcpts[k].offset);
			} else {
				rejected++;
				assert_true(buf_len(&err) > 0);
				assert_null(env.rcpts);
			}
			qfile_env_free(&env);
			close(fd);
		}
	}
	/* Most flips are caught: every structural byte is checked. */
	assert_true(rejected > complete);
	qfile_env_free(&orig);
	free(data);
	free(path);
	buf_free(&err);
	buf_free(&all);
}

static void
test_mode(void **state)
{
	static const struct {
		mode_t mode;
		int want;
	} cases[] = {
		{ 0700, 0 },
		{ 0600, 1 },
		{ 0400, 1 },
		{ 0755, 1 },
		{ 0701, 1 },
		{ 04700, 1 },
		{ 0500, 1 },
	};
	struct qfile_env env;
	struct buf err = BUF_INIT;
	char *path = small_file();
	size_t i;
	int fd, p[2];

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(chmod(path, cases[i].mode), 0);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		assert_true(fd >= 0);
		if (qfile_read(fd, &env, NULL, &err) != cases[i].want)
			fail_msg("mode %04o: wrong result (%s)", (unsigned)cases[i].mode, buf_str(&err));
		qfile_env_free(&env);
		close(fd);
	}
	/* A descriptor that is not a regular file. */
	fd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_int_equal(qfile_read(fd, &env, NULL, &err), -1);
	close(fd);
	assert_int_equal(pipe(p), 0);
	assert_int_equal(qfile_read(p[0], &env, NULL, &err), -1);
	close(p[0]);
	close(p[1]);
	assert_int_equal(qfile_read(-1, &env, NULL, &err), -1);
	unlink(path);
	free(path);
	buf_free(&err);
}

static void
test_limits(void **state)
{
	struct qfile_read_limits lim;
	struct qfile_env env;
	struct buf err = BUF_INIT;
	char *path = small_file(); /* 3 recipients, 2 attributes */

	(void)state;
	lim.max_rcpts = 3;
	lim.max_attrs = 2;
	assert_int_equal(read_path(path, &env, &lim, &err), 0);
	qfile_env_free(&env);
	lim.max_rcpts = 2;
	assert_int_equal(read_path(path, &env, &lim, &err), -1);
	assert_non_null(strstr(buf_str(&err), "more than 2 recipients"));
	assert_null(env.rcpts);
	lim.max_rcpts = 0;
	lim.max_attrs = 1;
	assert_int_equal(read_path(path, &env, &lim, &err), -1);
	assert_non_null(strstr(buf_str(&err), "more than 1 attributes"));
	unlink(path);
	free(path);
	buf_free(&err);
}

/* Hand-made files, each breaking one rule. */

struct rec {
	char type;
	const char *p;
	size_t len;
};

#define R(t, s)                     \
	{                           \
		t, s, sizeof(s) - 1 \
	}
#define REND               \
	{                  \
		0, NULL, 0 \
	}

/*
 * build - write records; the V record is computed from them unless vover
 * is given.  Returns the file size.
 */
static size_t
build(const char *name, const struct rec *recs, const char *vover, mode_t mode)
{
	struct buf f = BUF_INIT;
	unsigned char h[8];
	unsigned long long offset = 0, size = 0, rcpts = 0;
	char v[128];
	size_t i;

	for (i = recs[0].type == 'V' ? 1 : 0; recs[i].type; i++) {
		if (recs[i].type == 'M')
			offset = f.len + 2;
		if (recs[i].type == 'C')
			size += recs[i].len;
		if (recs[i].type == 'R' || recs[i].type == 'D')
			rcpts++;
		h[0] = (unsigned char)recs[i].type;
		buf_append(&f, h, 1 + qfile_varint_put(h + 1, recs[i].len));
		buf_append(&f, recs[i].p, recs[i].len);
	}
	if (recs[0].type != 'V') {
		/* no V record at all */
	} else {
		if (vover)
			snprintf(v, sizeof(v), "%s", vover);
		else
			snprintf(v, sizeof(v), "POSTERN 1 offset=%010llu size=%012llu rcpts=%08llu    ", offset + 66,
			    size, rcpts);
		h[0] = 'V';
		h[1] = (unsigned char)strlen(v);
		{
			struct buf g = BUF_INIT;

			buf_append(&g, h, 2);
			buf_append(&g, v, strlen(v));
			buf_append(&g, f.data, f.len);
			buf_free(&f);
			f = g;
		}
	}
	put_file(name, f.data, f.len, mode);
	i = f.len;
	buf_free(&f);
	return i;
}

#define HEAD R('V', ""), R('T', "1700000000.123456"), R('S', "s@x")

static const struct {
	const char *what;
	struct rec recs[12];
	const char *vover;
	int want;
} hand[] = {
	{ "valid", { HEAD, R('R', "a@x"), R('M', ""), R('C', "hi\n"), R('E', ""), REND }, NULL, 0 },
	{ "valid, done", { HEAD, R('D', "a@x"), R('M', ""), R('E', ""), REND }, NULL, 0 },
	{ "valid, extracted",
	    { HEAD, R('M', ""), R('X', ""), R('A', "a=b"), R('R', "a@x"), R('A', "c="), R('E', ""), REND }, NULL, 0 },
	{ "valid, fields", { HEAD, R('R', "a@x\0orcpt=rfc822;a@x\0notify=14"), R('M', ""), R('E', ""), REND }, NULL,
	    0 },
	{ "valid, notify 1", { HEAD, R('R', "a@x\0notify=1"), R('M', ""), R('E', ""), REND }, NULL, 0 },
	{ "valid, address bytes", { HEAD, R('R', "\xff\xfe@x y"), R('M', ""), R('E', ""), REND }, NULL, 0 },
	{ "no recipients", { HEAD, R('M', ""), R('E', ""), REND }, NULL, -1 },
	{ "unknown type", { HEAD, R('R', "a@x"), R('Q', ""), R('M', ""), R('E', ""), REND }, NULL, -1 },
	{ "lower-case type", { HEAD, R('r', "a@x"), R('M', ""), R('E', ""), REND }, NULL, -1 },
	{ "missing V", { R('T', "1700000000.123456"), R('S', "s@x"), R('R', "a@x"), R('M', ""), R('E', ""), REND },
	    NULL, -1 },
	{ "missing T", { R('V', ""), R('S', "s@x"), R('R', "a@x"), R('M', ""), R('E', ""), REND }, NULL, -1 },
	{ "missing S", { R('V', ""), R('T', "1.000000"), R('R', "a@x"), R('M', ""), R('E', ""), REND }, NULL, -1 },
	{ "T twice", { HEAD, R('T', "1.000000"), R('R', "a@x"), R('M', ""), R('E', ""), REND }, NULL, -1 },
	{ "V twice", { HEAD, R('V', "POSTERN"), R('R', "a@x"), R('M', ""), R('E', ""), REND }, NULL, -1 },
	{ "A after R", { HEAD, R('R', "a@x"), R('A', "a=b"), R('M', ""), R('E', ""), REND }, NULL, -1 },
	{ "M twice", { HEAD, R('R', "a@x"), R('M', ""), R('M', ""), R('E', ""), REND }, NULL, -1 },
	{ "no M", { HEAD, R('R', "a@x"), R('E', ""), REND }, NULL, -1 },
	{ "C before M", { HEAD, R('R', "a@x"), R('C', "x"), R('M', ""), R('E', ""), REND }, NULL, -1 },
	{ "C after X", { HEAD, R('R', "a@x"), R('M', ""), R('X', ""), R('C', "x"), R('E', ""), REND }, NULL, -1 },
	{ "X twice", { HEAD, R('R', "a@x"), R('M', ""), R('X', ""), R('X', ""), R('E', ""), REND }, NULL, -1 },
	{ "empty C", { HEAD, R('R', "a@x"), R('M', ""), R('C', ""), R('E', ""), REND }, NULL, -1 },
	{ "M with payload", { HEAD, R('R', "a@x"), R('M', "x"), R('E', ""), REND }, NULL, -1 },
	{ "X with payload", { HEAD, R('R', "a@x"), R('M', ""), R('X', "x"), R('E', ""), REND }, NULL, -1 },
	{ "E with payload", { HEAD, R('R', "a@x"), R('M', ""), R('E', "x"), REND }, NULL, -1 },
	{ "record after E", { HEAD, R('R', "a@x"), R('M', ""), R('E', ""), R('E', ""), REND }, NULL, -1 },
	{ "no E", { HEAD, R('R', "a@x"), R('M', ""), R('C', "x"), REND }, NULL, 1 },
	{ "T no dot", { R('V', ""), R('T', "1700000000"), R('S', ""), R('R', "a@x"), R('M', ""), R('E', ""), REND },
	    NULL, -1 },
	{ "T short usec", { R('V', ""), R('T', "1.5"), R('S', ""), R('R', "a@x"), R('M', ""), R('E', ""), REND }, NULL,
	    -1 },
	{ "T long usec", { R('V', ""), R('T', "1.0000000"), R('S', ""), R('R', "a@x"), R('M', ""), R('E', ""), REND },
	    NULL, -1 },
	{ "T leading zero",
	    { R('V', ""), R('T', "01.000000"), R('S', ""), R('R', "a@x"), R('M', ""), R('E', ""), REND }, NULL, -1 },
	{ "T sign", { R('V', ""), R('T', "-1.000000"), R('S', ""), R('R', "a@x"), R('M', ""), R('E', ""), REND }, NULL,
	    -1 },
	{ "T no seconds", { R('V', ""), R('T', ".000000"), R('S', ""), R('R', "a@x"), R('M', ""), R('E', ""), REND },
	    NULL, -1 },
	{ "T huge",
	    { R('V', ""), R('T', "99999999999999999999.000000"), R('S', ""), R('R', "a@x"), R('M', ""), R('E', ""),
	        REND },
	    NULL, -1 },
	{ "T zero ok", { R('V', ""), R('T', "0.000000"), R('S', ""), R('R', "a@x"), R('M', ""), R('E', ""), REND },
	    NULL, 0 },
	{ "S with NUL", { R('V', ""), R('T', "1.000000"), R('S', "a\0b"), R('R', "a@x"), R('M', ""), R('E', ""), REND },
	    NULL, -1 },
	{ "A no =", { HEAD, R('A', "name"), R('R', "a@x"), R('M', ""), R('E', ""), REND }, NULL, -1 },
	{ "A empty name", { HEAD, R('A', "=v"), R('R', "a@x"), R('M', ""), R('E', ""), REND }, NULL, -1 },
	{ "A upper name", { HEAD, R('A', "Name=v"), R('R', "a@x"), R('M', ""), R('E', ""), REND }, NULL, -1 },
	{ "A NUL in value", { HEAD, R('A', "n=v\0w"), R('R', "a@x"), R('M', ""), R('E', ""), REND }, NULL, -1 },
	{ "R empty", { HEAD, R('R', ""), R('M', ""), R('E', ""), REND }, NULL, -1 },
	{ "R empty address", { HEAD, R('R', "\0notify=1"), R('M', ""), R('E', ""), REND }, NULL, -1 },
	{ "R trailing NUL", { HEAD, R('R', "a@x\0"), R('M', ""), R('E', ""), REND }, NULL, -1 },
	{ "R unknown field", { HEAD, R('R', "a@x\0color=red"), R('M', ""), R('E', ""), REND }, NULL, -1 },
	{ "R notify 0", { HEAD, R('R', "a@x\0notify=0"), R('M', ""), R('E', ""), REND }, NULL, -1 },
	{ "R notify 16", { HEAD, R('R', "a@x\0notify=16"), R('M', ""), R('E', ""), REND }, NULL, -1 },
	{ "R notify never+success", { HEAD, R('R', "a@x\0notify=3"), R('M', ""), R('E', ""), REND }, NULL, -1 },
	{ "R notify leading zero", { HEAD, R('R', "a@x\0notify=02"), R('M', ""), R('E', ""), REND }, NULL, -1 },
	{ "R notify junk", { HEAD, R('R', "a@x\0notify=2x"), R('M', ""), R('E', ""), REND }, NULL, -1 },
	{ "R notify empty", { HEAD, R('R', "a@x\0notify="), R('M', ""), R('E', ""), REND }, NULL, -1 },
	{ "R orcpt empty", { HEAD, R('R', "a@x\0orcpt="), R('M', ""), R('E', ""), REND }, NULL, -1 },
	{ "R fields reversed", { HEAD, R('R', "a@x\0notify=2\0orcpt=x"), R('M', ""), R('E', ""), REND }, NULL, -1 },
	{ "R orcpt twice", { HEAD, R('R', "a@x\0orcpt=x\0orcpt=y"), R('M', ""), R('E', ""), REND }, NULL, -1 },
	{ "V bad magic", { HEAD, R('R', "a@x"), R('M', ""), R('E', ""), REND },
	    "POSTERM 1 offset=0000000097 size=000000000000 rcpts=00000001    ", -1 },
	{ "V version 2", { HEAD, R('R', "a@x"), R('M', ""), R('E', ""), REND },
	    "POSTERN 2 offset=0000000097 size=000000000000 rcpts=00000001    ", -1 },
	{ "V right numbers", { HEAD, R('R', "a@x"), R('M', ""), R('E', ""), REND },
	    "POSTERN 1 offset=0000000097 size=000000000000 rcpts=00000001    ", 0 },
	{ "V wrong offset", { HEAD, R('R', "a@x"), R('M', ""), R('E', ""), REND },
	    "POSTERN 1 offset=0000000098 size=000000000000 rcpts=00000001    ", -1 },
	{ "V placeholder", { HEAD, R('R', "a@x"), R('M', ""), R('E', ""), REND },
	    "POSTERN 1 offset=0000000000 size=000000000000 rcpts=00000000    ", -1 },
	{ "V wrong size", { HEAD, R('R', "a@x"), R('M', ""), R('E', ""), REND },
	    "POSTERN 1 offset=0000000097 size=000000000001 rcpts=00000001    ", -1 },
	{ "V wrong rcpts", { HEAD, R('R', "a@x"), R('M', ""), R('E', ""), REND },
	    "POSTERN 1 offset=0000000097 size=000000000000 rcpts=00000002    ", -1 },
	{ "V no padding", { HEAD, R('R', "a@x"), R('M', ""), R('E', ""), REND },
	    "POSTERN 1 offset=0000000097 size=000000000000 rcpts=00000001xxxx", -1 },
	{ "V short", { HEAD, R('R', "a@x"), R('M', ""), R('E', ""), REND },
	    "POSTERN 1 offset=0000000097 size=000000000000 rcpts=00000001", -1 },
	{ "V sign", { HEAD, R('R', "a@x"), R('M', ""), R('E', ""), REND },
	    "POSTERN 1 offset=+000000106 size=000000000000 rcpts=00000001    ", -1 },
};

static void
test_handmade(void **state)
{
	struct qfile_env env;
	struct buf err = BUF_INIT;
	size_t i;
	int r;

	(void)state;
	for (i = 0; i < sizeof(hand) / sizeof(hand[0]); i++) {
		build("t/hand", hand[i].recs, hand[i].vover, QF_MODE_COMPLETE);
		buf_reset(&err);
		r = read_path("t/hand", &env, NULL, &err);
		if (r != hand[i].want)
			fail_msg("%s: %d, wanted %d (%s)", hand[i].what, r, hand[i].want, buf_str(&err));
		if (r != 0)
			assert_true(buf_len(&err) > 0);
		qfile_env_free(&env);
	}
	buf_free(&err);
}

/* Record lengths: codec and oversized records. */

static void
test_varint(void **state)
{
	static const size_t lens[] = { 0, 1, 127, 128, 16383, 16384, 65536, QF_RECORD_MAX, (1u << 28) - 1 };
	static const struct {
		const char *bytes;
		size_t len;
		int want;
	} bad[] = {
		{ "C", 1, 0 },                      /* need more */
		{ "C\x80", 2, 0 },                  /* need more */
		{ "C\x80\x80\x80", 4, 0 },          /* need more */
		{ "C\x80\x00", 3, -1 },             /* not minimal */
		{ "C\xff\x80\x00", 4, -1 },         /* not minimal */
		{ "C\x80\x80\x80\x80\x01", 6, -1 }, /* five length bytes */
		{ "C\xff\xff\xff\xff", 5, -1 },
		{ "C\x00", 2, 2 },
		{ "C\xff\xff\xff\x7f", 5, 5 },
	};
	unsigned char h[8];
	size_t i, len, n;
	int type;

	(void)state;
	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		h[0] = 'R';
		n = qfile_varint_put(h + 1, lens[i]);
		assert_true(n >= 1 && n <= 4);
		assert_int_equal(qfile_rec_header(h, 1 + n, &type, &len), (int)(1 + n));
		assert_int_equal(type, 'R');
		assert_int_equal(len, lens[i]);
		/* Every shorter prefix asks for more. */
		for (size_t k = 0; k < 1 + n; k++)
			assert_int_equal(qfile_rec_header(h, k, &type, &len), 0);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (qfile_rec_header((const unsigned char *)bad[i].bytes, bad[i].len, &type, &len) != bad[i].want)
			fail_msg("varint case %zu", i);
}

static void
test_oversized(void **state)
{
	static const struct {
		const char *what;
		const char *tail; /* appended after a valid V T S R M */
		size_t len;
		int want;
	} cases[] = {
		{ "C over the chunk cap", "C\x81\x80\x04", 4, -1 },  /* 65537 */
		{ "R over the record cap", "R\x81\x80\x40", 4, -1 }, /* 1 MiB + 1 */
		{ "A of 256 MiB", "A\xff\xff\xff\x7f", 5, -1 },
		{ "five length bytes", "C\x80\x80\x80\x80\x01", 6, -1 },
		{ "C at the cap, file ends", "C\x80\x80\x04", 4, 1 }, /* 65536: allowed, but missing */
		{ "header cut", "C\x80", 2, 1 },
		{ "NUL type", "\0\0", 2, -1 },
		{ "type with high bit", "\xc3\0", 2, -1 },
	};
	static const struct rec head[] = { HEAD, R('R', "a@x"), R('M', ""), REND };
	struct qfile_env env;
	struct buf err = BUF_INIT;
	unsigned char *data;
	size_t size, i;

	(void)state;
	build("t/big", head, NULL, QF_MODE_COMPLETE);
	data = slurp("t/big", &size);
	data = realloc(data, size + 16);
	assert_non_null(data);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memcpy(data + size, cases[i].tail, cases[i].len);
		put_file("t/big", data, size + cases[i].len, QF_MODE_COMPLETE);
		if (read_path("t/big", &env, NULL, &err) != cases[i].want)
			fail_msg("%s: wrong result (%s)", cases[i].what, buf_str(&err));
	}
	/* The same 256 MiB record in the envelope: refused by its length alone. */
	{
		static const struct rec h2[] = { HEAD, REND };

		build("t/big", h2, NULL, QF_MODE_COMPLETE);
		free(data);
		data = slurp("t/big", &size);
		data = realloc(data, size + 16);
		memcpy(data + size, "R\xff\xff\xff\x7f", 5);
		put_file("t/big", data, size + 5, QF_MODE_COMPLETE);
		assert_int_equal(read_path("t/big", &env, NULL, &err), -1);
		assert_non_null(strstr(buf_str(&err), "too long"));
	}
	free(data);
	buf_free(&err);
}

static void
test_content_next_errors(void **state)
{
	struct qfile_env env;
	struct buf err = BUF_INIT, out = BUF_INIT;
	char *path = small_file();
	off_t pos;
	int fd;

	(void)state;
	fd = open_read(path);
	assert_int_equal(qfile_read(fd, &env, NULL, &err), 0);
	pos = 0;
	assert_int_equal(qfile_content_next(fd, &pos, &out, &err), -1);
	pos = env.rcpts[0].offset; /* an R record is not content */
	assert_int_equal(qfile_content_next(fd, &pos, &out, &err), -1);
	assert_int_equal(pos, env.rcpts[0].offset);
	pos = env.file_size; /* nothing there */
	assert_int_equal(qfile_content_next(fd, &pos, &out, &err), -1);
	pos = env.content_offset;
	assert_int_equal(qfile_content_next(fd, &pos, &out, &err), 1);
	assert_int_equal(out.len, 27);
	assert_memory_equal(out.data, "Subject: x\n\nbody\0with nul\n", 27);
	/* At X the content ends, and stays ended. */
	assert_int_equal(qfile_content_next(fd, &pos, &out, &err), 0);
	assert_int_equal(out.len, 0);
	assert_int_equal(qfile_content_next(fd, &pos, &out, &err), 0);
	/* The descriptor's own offset is not used. */
	assert_int_equal(lseek(fd, 5, SEEK_SET), 5);
	qfile_env_free(&env);
	assert_int_equal(qfile_read(fd, &env, NULL, &err), 0);
	qfile_env_free(&env);
	close(fd);
	unlink(path);
	free(path);
	buf_free(&err);
	buf_free(&out);
}

static void
test_queue_names(void **state)
{
	static const char *const good[] = { QUEUE_MAILDROP, QUEUE_INCOMING, QUEUE_ACTIVE, QUEUE_DEFERRED, QUEUE_HOLD,
		QUEUE_CORRUPT, QUEUE_DEFER, QUEUE_BOUNCE };
	static const char *const bad[] = { "", "private", "public", "pid", "..", ".", "incoming/", "Incoming",
		"incoming/..", "deferred/A" };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_true(qfile_queue_valid(good[i]));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(qfile_queue_valid(bad[i]));
	assert_false(qfile_queue_valid(NULL));
}

/* A file in a hashed queue goes into its subdirectory. */
static void
test_hashed_create(void **state)
{
	struct qfile_writer w;
	struct buf err = BUF_INIT;
	const char *digits = "0123456789ABCDEFGHIJKLMNOPQRSTUV";
	char d[32], want[64];
	int i;

	(void)state;
	for (i = 0; i < 32; i++) {
		snprintf(d, sizeof(d), "%s/%c", QUEUE_DEFERRED, digits[i]);
		assert_int_equal(mkdir(d, 0700), 0);
	}
	assert_int_equal(qfile_create(&w, QUEUE_DEFERRED, &err), 0);
	snprintf(want, sizeof(want), "%s/%c/%s", QUEUE_DEFERRED, qid_hash(w.id), w.id);
	assert_string_equal(w.path, want);
	qfile_abort(&w);
	assert_int_equal(access(want, F_OK), -1);
	buf_free(&err);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_known_bytes),
		cmocka_unit_test(test_large_envelope),
		cmocka_unit_test(test_writer_order),
		cmocka_unit_test(test_writer_bad_values),
		cmocka_unit_test(test_mark_done),
		cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_truncation_big),
		cmocka_unit_test(test_flip_bytes),
		cmocka_unit_test(test_mode),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_handmade),
		cmocka_unit_test(test_varint),
		cmocka_unit_test(test_oversized),
		cmocka_unit_test(test_content_next_errors),
		cmocka_unit_test(test_queue_names),
		cmocka_unit_test(test_hashed_create),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
