/*
 * cleanup_test - cleanup's two modules without a socket: the content
 * state machine (cleanup_message.c) fed in every chunking, and envelope
 * rewriting (cleanup_envelope.c) with inline: tables and a table that
 * answers "try again".
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"
#include "qfile.h"

/* 2023-11-14 22:13:20 UTC */
#define T_NOW 1700000000
#define T_QID "1LG5ID3GHOC00IL0"

/* ---------------------------------------------------------------- content */

static int
out_buf(void *arg, const unsigned char *p, size_t n)
{
	buf_append(arg, p, n);
	return 0;
}

static int
out_fail(void *arg, const unsigned char *p, size_t n)
{
	(void)arg;
	(void)p;
	(void)n;
	return -1;
}

static struct cleanup_msg_conf
conf_default(bool add)
{
	struct cleanup_msg_conf c;

	memset(&c, 0, sizeof(c));
	c.header_size_limit = 102400;
	c.hopcount_limit = 50;
	c.add_missing = add;
	c.myhostname = "mx.example.test";
	c.queue_id = T_QID;
	c.sender = "alice@example.org";
	c.now = T_NOW;
	return c;
}

/* The random part of an added Message-ID, made comparable. */
static void
mask_msgid(struct buf *b)
{
	static const char pfx[] = "Message-ID: <20231114221320.";
	char *p = strstr((char *)b->data, pfx);

	if (p != NULL && strlen(p) >= sizeof(pfx) - 1 + 8)
		memset(p + sizeof(pfx) - 1, 'X', 8);
}

/*
 * run - feed content in pieces of chunk bytes (0: all at once); returns
 * the status, the output in out (masked), the reason in why.
 */
static int
run(const struct cleanup_msg_conf *conf, const void *content, size_t len, size_t chunk, struct buf *out,
    struct cleanup_msg *keep)
{
	struct cleanup_msg m;
	struct cleanup_status st;
	const unsigned char *p = content;
	size_t off, take;
	int r = 0;

	buf_reset(out);
	cleanup_status_init(&st);
	cleanup_msg_init(&m, conf, out_buf, out);
	for (off = 0; off < len && r == 0; off += take) {
		take = chunk ? chunk : len;
		if (take > len - off)
			take = len - off;
		r = cleanup_msg_feed(&m, p + off, take, &st);
	}
	if (r == 0)
		r = cleanup_msg_finish(&m, &st);
	if (r == 0)
		assert_int_equal(st.status, 0);
	else
		assert_int_not_equal(st.status, 0);
	assert_true(!buf_has_nul(out) || memchr(content, 0, len) != NULL);
	mask_msgid(out);
	if (keep != NULL) {
		*keep = m;
		keep->pend.data = NULL; /* only scalars and msgid are looked at */
		buf_free(&m.pend);
	} else {
		cleanup_msg_free(&m);
	}
	r = st.status;
	cleanup_status_free(&st);
	return r;
}

#define ADDED                                                               \
	"Message-ID: <20231114221320.XXXXXXXX." T_QID "@mx.example.test>\n" \
	"Date: Tue, 14 Nov 2023 22:13:20 +0000\n"                           \
	"From: alice@example.org\n"

struct content_case {
	const char *what;
	const char *in;
	size_t in_len; /* 0: strlen(in) */
	bool add;
	const char *want;
	size_t want_len; /* 0: strlen(want) */
};

static const struct content_case content_cases[] = {
	{ "plain message", "Subject: hi\n\nbody\n", 0, false, "Subject: hi\n\nbody\n", 0 },
	{ "no empty line", "Subject: hi\nX-A: b\n", 0, false, "Subject: hi\nX-A: b\n", 0 },
	{ "last line without newline", "Subject: hi", 0, false, "Subject: hi\n", 0 },
	{ "body without final newline", "Subject: hi\n\nbody", 0, false, "Subject: hi\n\nbody\n", 0 },
	{ "empty content", "", 0, false, "", 0 },
	{ "only the empty line", "\n", 0, false, "\n", 0 },
	{ "first line not a header", "hello world\nmore\n", 0, false, "hello world\nmore\n", 0 },
	{ "continuation at the start is body", " x: y\n", 0, false, " x: y\n", 0 },
	{ "CR bytes are data", "Subject: a\rb\n\r\n\rbody\r", 0, false, "Subject: a\rb\n\r\n\rbody\r\n", 0 },
	{ "NUL and 8-bit bytes in the body", "S: x\n\n\0\xff\xfe\n", 10, false, "S: x\n\n\0\xff\xfe\n", 10 },
	{ "folded header kept byte for byte", "Subject: a\n b\n\tc\n\nx\n", 0, false, "Subject: a\n b\n\tc\n\nx\n", 0 },
	{ "submission adds all three", "Subject: hi\n\nbody\n", 0, true, "Subject: hi\n" ADDED "\nbody\n", 0 },
	{ "added after folded fields", "Subject: a\n b\n\tc\nFrom: x@y\n\nbody", 0, true,
	    "Subject: a\n b\n\tc\nFrom: x@y\n"
	    "Message-ID: <20231114221320.XXXXXXXX." T_QID "@mx.example.test>\n"
	    "Date: Tue, 14 Nov 2023 22:13:20 +0000\n\nbody\n",
	    0 },
	{ "present fields are not added (any case)",
	    "message-ID: <a@b>\nDATE: Mon, 1 Jan 2024 00:00:00 +0000\nfrom: a@b\n\nx\n", 0, true,
	    "message-ID: <a@b>\nDATE: Mon, 1 Jan 2024 00:00:00 +0000\nfrom: a@b\n\nx\n", 0 },
	{ "obsolete space before the colon", "From : a@b\nMessage-ID  :<x@y>\nDate\t: x\n\n", 0, true,
	    "From : a@b\nMessage-ID  :<x@y>\nDate\t: x\n\n", 0 },
	{ "a space inside a name is no field", "Sub ject: x\n", 0, true, ADDED "\nSub ject: x\n", 0 },
	{ "added before a body line without empty line", "Subject: x\nhello\n", 0, true,
	    "Subject: x\n" ADDED "\nhello\n", 0 },
	{ "header only, no newline, added after it", "Subject: x", 0, true, "Subject: x\n" ADDED, 0 },
	{ "a name without colon at the end", "Subject", 0, true, ADDED "\nSubject\n", 0 },
	{ "empty message gets the three", "", 0, true, ADDED, 0 },
	{ "null sender", "X: y\n\n", 0, true,
	    "X: y\n"
	    "Message-ID: <20231114221320.XXXXXXXX." T_QID "@mx.example.test>\n"
	    "Date: Tue, 14 Nov 2023 22:13:20 +0000\n"
	    "From: MAILER-DAEMON@mx.example.test\n\n",
	    0 },
	{ "header field line split anywhere, colon at the very end", "Received:\n\nb\n", 0, false, "Received:\n\nb\n",
	    0 },
};

static void
test_content_cases(void **state)
{
	static const size_t chunks[] = { 0, 1, 2, 3, 5, 7, 13 };
	struct buf out = BUF_INIT;
	size_t i, j, in_len, want_len;

	(void)state;
	for (i = 0; i < sizeof(content_cases) / sizeof(content_cases[0]); i++) {
		const struct content_case *c = &content_cases[i];
		struct cleanup_msg_conf conf = conf_default(c->add);

		if (strcmp(c->what, "null sender") == 0)
			conf.sender = "";
		in_len = c->in_len ? c->in_len : strlen(c->in);
		want_len = c->want_len ? c->want_len : strlen(c->want);
		for (j = 0; j < sizeof(chunks) / sizeof(chunks[0]); j++) {
			if (run(&conf, c->in, in_len, chunks[j], &out, NULL) != 0)
				fail_msg("%s: failed", c->what);
			if (out.len != want_len || memcmp(out.data, c->want, want_len) != 0)
				fail_msg("%s (chunk %zu): got \"%s\"", c->what, chunks[j], buf_str(&out));
		}
	}
	buf_free(&out);
}

static void
test_message_id_log(void **state)
{
	struct cleanup_msg_conf conf = conf_default(false);
	struct cleanup_msg m;
	struct buf out = BUF_INIT;
	const char *in = "Subject: x\nMessage-ID:\n  <abc\x01@example.org> \nmessage-id: <second@x>\n\n";

	(void)state;
	assert_int_equal(run(&conf, in, strlen(in), 1, &out, &m), 0);
	assert_string_equal(cleanup_msg_id(&m), "<abc?@example.org>");
	assert_string_equal(buf_str(&out), in + 0); /* nothing added, nothing changed */
	assert_int_equal(m.lines, 5);
	buf_free(&m.msgid);

	/* An added one is what the log shows. */
	conf.add_missing = true;
	assert_int_equal(run(&conf, "X: y\n", 5, 0, &out, &m), 0);
	assert_non_null(strstr(cleanup_msg_id(&m), "." T_QID "@mx.example.test>"));
	assert_int_equal(cleanup_msg_id(&m)[0], '<');
	buf_free(&m.msgid);
	buf_free(&out);
}

static void
test_hopcount(void **state)
{
	struct cleanup_msg_conf conf = conf_default(false);
	struct cleanup_msg m;
	struct buf in = BUF_INIT, out = BUF_INIT;
	size_t i;

	(void)state;
	conf.hopcount_limit = 5;
	for (i = 0; i < 5; i++)
		buf_puts(&in, i % 2 ? "received: from a\n\tby b\n" : "Received : x\n");
	buf_puts(&in, "\nReceived: in the body does not count\n");
	assert_int_equal(run(&conf, in.data, in.len, 3, &out, &m), 0);
	assert_int_equal(m.received, 5);
	buf_free(&m.msgid);

	/* One more in the header: a loop. */
	buf_reset(&in);
	for (i = 0; i < 6; i++)
		buf_puts(&in, "Received: x\n");
	buf_puts(&in, "\nbody\n");
	{
		struct cleanup_msg mm;
		struct cleanup_status st;

		cleanup_status_init(&st);
		cleanup_msg_init(&mm, &conf, out_buf, &out);
		assert_int_equal(cleanup_msg_feed(&mm, in.data, in.len, &st), -1);
		assert_int_equal(st.status, 5);
		assert_string_equal(st.dsn, "5.4.6");
		assert_string_equal(buf_str(&st.reason), "too many hops");
		/* Further input and the end are refused. */
		assert_int_equal(cleanup_msg_feed(&mm, (const unsigned char *)"x", 1, &st), -1);
		assert_int_equal(cleanup_msg_finish(&mm, &st), -1);
		cleanup_msg_free(&mm);
		cleanup_status_free(&st);
	}
	buf_free(&in);
	buf_free(&out);
}

static void
test_header_size_limit(void **state)
{
	struct cleanup_msg_conf conf = conf_default(false);
	struct cleanup_msg m;
	struct cleanup_status st;
	struct buf out = BUF_INIT;
	const char *line = "X-Header-Line: some value\n";
	size_t i, len = strlen(line);
	int r = 0;

	(void)state;
	conf.header_size_limit = 102400;
	cleanup_status_init(&st);
	cleanup_msg_init(&m, &conf, out_buf, &out);
	for (i = 0; i < 100000 && r == 0; i++)
		r = cleanup_msg_feed(&m, (const unsigned char *)line, len, &st);
	assert_int_equal(r, -1);
	assert_int_equal(st.status, 5);
	assert_string_equal(st.dsn, "5.3.4");
	assert_string_equal(buf_str(&st.reason), "message header size exceeds limit");
	/* It stopped at the limit, and kept nothing but what it passed on. */
	assert_true(i < 102400 / len + 2);
	assert_true(out.len <= 102400);
	assert_true(m.pend.cap <= 2 * CLEANUP_NAME_MAX + 64);
	assert_true(m.msgid.cap <= 2 * CLEANUP_MSGID_MAX + 64);
	cleanup_msg_free(&m);
	cleanup_status_free(&st);

	/* A single over-long field, and an endless name, are bounded too. */
	{
		unsigned char *big = malloc(200000);

		assert_non_null(big);
		memcpy(big, "Subject: ", 9);
		memset(big + 9, 'a', 200000 - 9);
		assert_int_equal(run(&conf, big, 200000, 4096, &out, NULL), 5);
		memset(big, 'b', 200000);
		big[199999] = '\n';
		/* No colon within the name limit: the body starts there, no limit applies. */
		assert_int_equal(run(&conf, big, 200000, 1000, &out, NULL), 0);
		assert_int_equal(out.len, 200000);
		free(big);
	}
	buf_free(&out);
}

static void
test_message_size_limit(void **state)
{
	struct cleanup_msg_conf conf = conf_default(false);
	struct buf out = BUF_INIT;
	struct cleanup_msg m;
	struct cleanup_status st;
	char body[1000];

	(void)state;
	memset(body, 'x', sizeof(body));
	body[sizeof(body) - 1] = '\n';
	conf.message_size_limit = 1000;
	assert_int_equal(run(&conf, body, 1000, 10, &out, NULL), 0);
	conf.message_size_limit = 999;
	cleanup_status_init(&st);
	cleanup_msg_init(&m, &conf, out_buf, &out);
	assert_int_equal(cleanup_msg_feed(&m, (unsigned char *)body, 500, &st), 0);
	assert_int_equal(cleanup_msg_feed(&m, (unsigned char *)body, 500, &st), -1);
	assert_int_equal(st.status, 5);
	assert_string_equal(st.dsn, "5.3.4");
	assert_string_equal(buf_str(&st.reason), "message file too big");
	cleanup_msg_free(&m);
	cleanup_status_free(&st);
	buf_free(&out);
}

static void
test_output_failure(void **state)
{
	struct cleanup_msg_conf conf = conf_default(false);
	struct cleanup_msg m;
	struct cleanup_status st;

	(void)state;
	cleanup_status_init(&st);
	cleanup_msg_init(&m, &conf, out_fail, NULL);
	assert_int_equal(cleanup_msg_feed(&m, (const unsigned char *)"Subject: x\n", 11, &st), -1);
	assert_int_equal(st.status, 4);
	assert_string_equal(st.dsn, "4.3.0");
	cleanup_msg_free(&m);
	cleanup_status_free(&st);
}

/* ---------------------------------------------------------------- envelope */

#define VIRTUAL                                                                          \
	"inline:{ { list@x.test = u1@x.test u2@y.test }, "                               \
	"n1@x.test=n2@x.test, n2@x.test=n3@x.test, n3@x.test=final@x.test, "             \
	"{ self@x.test = self@X.TEST, other@x.test }, "                                  \
	"loop-a@x.test=loop-b@x.test, loop-b@x.test=loop-a@x.test, "                     \
	"{ big@x.test = b1@x.test b2@x.test b3@x.test b4@x.test b5@x.test b6@x.test }, " \
	"{ tree@x.test = big@x.test, list@x.test }, "                                    \
	"@catch.test=catchall@x.test, @rename.test=@new.test, "                          \
	"user@d.test=real@x.test, @d.test=nobody@x.test, "                               \
	"postmaster=admin@x.test, bare@x.test=bob, "                                     \
	"{ dup@x.test = u1@x.test, U1@X.test, u1@x.TEST }, "                             \
	"bad@x.test=<broken> }"

struct rw_fixture {
	struct cleanup_rewrite rw;
	struct cleanup_rcpts l;
	struct cleanup_status st;
};

static struct rw_fixture *
rw_open(const char *canonical, const char *virtual_alias)
{
	struct rw_fixture *f = calloc(1, sizeof(*f));
	struct buf err = BUF_INIT;

	assert_non_null(f);
	if (cleanup_rewrite_open(&f->rw, canonical, "", "", virtual_alias, &err) != 0)
		fail_msg("open: %s", buf_str(&err));
	cleanup_rewrite_local(&f->rw, "local.test, localhost, hash:/ignored", "local.test");
	free(f->rw.delimiters);
	f->rw.delimiters = strdup("+");
	f->rw.recursion_limit = 10;
	f->rw.expansion_limit = 5;
	cleanup_rcpts_init(&f->l);
	cleanup_status_init(&f->st);
	buf_free(&err);
	return f;
}

static void
rw_reset(struct rw_fixture *f)
{
	cleanup_rcpts_free(&f->l);
	cleanup_status_free(&f->st);
	cleanup_rcpts_init(&f->l);
	cleanup_status_init(&f->st);
}

static void
rw_close(struct rw_fixture *f)
{
	cleanup_rcpts_free(&f->l);
	cleanup_status_free(&f->st);
	cleanup_rewrite_close(&f->rw);
	free(f);
}

/* The list as "addr[orcpt]" joined with spaces. */
static const char *
rw_list(struct rw_fixture *f, struct buf *out)
{
	size_t i;

	buf_reset(out);
	for (i = 0; i < f->l.n; i++)
		buf_printf(out, "%s%s%s%s%s", i ? " " : "", f->l.v[i].addr, f->l.v[i].orcpt ? "[" : "",
		    f->l.v[i].orcpt ? f->l.v[i].orcpt : "", f->l.v[i].orcpt ? "]" : "");
	return buf_str(out);
}

struct alias_case {
	const char *rcpt;
	const char *orcpt;
	int status;
	const char *want; /* the list, or a piece of the reason */
};

static const struct alias_case alias_cases[] = {
	{ "nomatch@y.test", NULL, 0, "nomatch@y.test" },
	{ "list@x.test", NULL, 0, "u1@x.test[rfc822;list@x.test] u2@y.test[rfc822;list@x.test]" },
	{ "LIST@x.test", NULL, 0, "u1@x.test[rfc822;LIST@x.test] u2@y.test[rfc822;LIST@x.test]" },
	{ "list@x.test", "rfc822;orig@z.test", 0, "u1@x.test[rfc822;orig@z.test] u2@y.test[rfc822;orig@z.test]" },
	{ "n1@x.test", NULL, 0, "final@x.test[rfc822;n1@x.test]" },
	{ "self@x.test", NULL, 0, "self@X.TEST[rfc822;self@x.test] other@x.test[rfc822;self@x.test]" },
	{ "loop-a@x.test", NULL, 4, "nesting" },
	{ "big@x.test", NULL, 4, "expansion size" },
	{ "tree@x.test", NULL, 4, "expansion size" },
	{ "anyone@catch.test", NULL, 0, "catchall@x.test[rfc822;anyone@catch.test]" },
	{ "who+ext@rename.test", NULL, 0, "who+ext@new.test[rfc822;who+2Bext@rename.test]" },
	{ "user+tag@d.test", NULL, 0, "real+tag@x.test[rfc822;user+2Btag@d.test]" },
	{ "user@d.test", NULL, 0, "real@x.test[rfc822;user@d.test]" },
	{ "someone@d.test", NULL, 0, "nobody@x.test[rfc822;someone@d.test]" },
	{ "+user@d.test", NULL, 0, "nobody@x.test[rfc822;+2Buser@d.test]" },
	{ "other+tag@d.test", NULL, 0, "nobody@x.test[rfc822;other+2Btag@d.test]" },
	{ "postmaster@local.test", NULL, 0, "admin@x.test[rfc822;postmaster@local.test]" },
	{ "postmaster@LocalHost", NULL, 0, "admin@x.test[rfc822;postmaster@LocalHost]" },
	{ "postmaster@elsewhere.test", NULL, 0, "postmaster@elsewhere.test" },
	{ "postmaster", NULL, 0, "admin@x.test[rfc822;postmaster]" },
	{ "bare@x.test", NULL, 0, "bob@local.test[rfc822;bare@x.test]" },
	{ "dup@x.test", NULL, 0, "u1@x.test[rfc822;dup@x.test] U1@X.test[rfc822;dup@x.test]" },
	{ "bad@x.test", NULL, 4, "lookup error" },
	{ "a+b=c@q.test", NULL, 0, "a+b=c@q.test" },
};

static void
test_virtual_alias(void **state)
{
	struct rw_fixture *f = rw_open("", VIRTUAL);
	struct buf out = BUF_INIT;
	size_t i;
	int r;

	(void)state;
	for (i = 0; i < sizeof(alias_cases) / sizeof(alias_cases[0]); i++) {
		const struct alias_case *c = &alias_cases[i];

		rw_reset(f);
		r = cleanup_rewrite_rcpt(&f->rw, &f->l, c->rcpt, c->orcpt, QF_NOTIFY_FAILURE, false, &f->st);
		if (c->status == 0) {
			if (r != 0)
				fail_msg("%s: failed: %s", c->rcpt, buf_str(&f->st.reason));
			if (strcmp(rw_list(f, &out), c->want) != 0)
				fail_msg("%s: got \"%s\", want \"%s\"", c->rcpt, buf_str(&out), c->want);
			assert_int_equal(f->l.v[0].notify, QF_NOTIFY_FAILURE);
		} else {
			if (r != -1)
				fail_msg("%s: should fail, got \"%s\"", c->rcpt, rw_list(f, &out));
			assert_int_equal(f->st.status, c->status);
			assert_string_equal(f->st.dsn, "4.3.0");
			if (strstr(buf_str(&f->st.reason), c->want) == NULL)
				fail_msg("%s: reason \"%s\"", c->rcpt, buf_str(&f->st.reason));
		}
	}
	buf_free(&out);
	rw_close(f);
}

static void
test_dedup_across_recipients(void **state)
{
	struct rw_fixture *f = rw_open("", VIRTUAL);
	struct buf out = BUF_INIT;

	(void)state;
	assert_int_equal(cleanup_rewrite_rcpt(&f->rw, &f->l, "u1@X.Test", NULL, 0, false, &f->st), 0);
	assert_int_equal(cleanup_rewrite_rcpt(&f->rw, &f->l, "list@x.test", NULL, 0, false, &f->st), 0);
	assert_int_equal(cleanup_rewrite_rcpt(&f->rw, &f->l, "u2@y.test", NULL, 0, false, &f->st), 0);
	assert_int_equal(cleanup_rewrite_rcpt(&f->rw, &f->l, "u1@x.test", NULL, 0, false, &f->st), 0);
	assert_string_equal(rw_list(f, &out), "u1@X.Test u2@y.test[rfc822;list@x.test]");
	/* no_alias keeps the address as it is. */
	assert_int_equal(cleanup_rewrite_rcpt(&f->rw, &f->l, "n1@x.test", NULL, 0, true, &f->st), 0);
	assert_string_equal(f->l.v[2].addr, "n1@x.test");
	assert_null(f->l.v[2].orcpt);
	/* Many recipients: the table stays right as it grows. */
	{
		char a[64];
		int i;

		for (i = 0; i < 3000; i++) {
			snprintf(a, sizeof(a), "r%d@many.test", i % 1500);
			assert_int_equal(cleanup_rewrite_rcpt(&f->rw, &f->l, a, NULL, 0, false, &f->st), 0);
		}
		assert_int_equal(f->l.n, 3 + 1500);
	}
	buf_free(&out);
	rw_close(f);
}

static void
test_retry_table(void **state)
{
	struct rw_fixture *f =
	    rw_open("", "inline:{a@x.test=a@x.test, b@x.test=c@x.test}, hash:/nonexistent/postern/table");
	struct buf out = BUF_INIT;

	(void)state;
	/* The first table answers before the broken one is asked; a self-reference ends there. */
	assert_int_equal(cleanup_rewrite_rcpt(&f->rw, &f->l, "a@x.test", NULL, 0, false, &f->st), 0);
	assert_string_equal(rw_list(f, &out), "a@x.test");
	rw_reset(f);
	/* b's result is looked up again, and the broken table is asked about it. */
	assert_int_equal(cleanup_rewrite_rcpt(&f->rw, &f->l, "b@x.test", NULL, 0, false, &f->st), -1);
	assert_int_equal(f->st.status, 4);
	rw_reset(f);
	assert_int_equal(cleanup_rewrite_rcpt(&f->rw, &f->l, "c@x.test", NULL, 0, false, &f->st), -1);
	assert_int_equal(f->st.status, 4);
	assert_string_equal(f->st.dsn, "4.3.0");
	assert_non_null(strstr(buf_str(&f->st.reason), "virtual_alias_maps lookup error, try again later"));
	/* Nothing was stored: the recipient is neither dropped nor kept unexpanded. */
	assert_int_equal(f->l.n, 0);
	rw_close(f);

	/* The same for canonical tables, and for the sender. */
	f = rw_open("hash:/nonexistent/postern/canonical", "");
	assert_int_equal(cleanup_rewrite_sender(&f->rw, "s@x.test", &out, &f->st), -1);
	assert_int_equal(f->st.status, 4);
	assert_non_null(strstr(buf_str(&f->st.reason), "canonical_maps lookup error"));
	rw_reset(f);
	assert_int_equal(cleanup_rewrite_sender(&f->rw, "", &out, &f->st), 0); /* <> is never looked up */
	assert_int_equal(cleanup_rewrite_rcpt(&f->rw, &f->l, "c@x.test", NULL, 0, false, &f->st), -1);
	rw_close(f);
	buf_free(&out);
}

static void
test_canonical(void **state)
{
	struct rw_fixture *f = rw_open(
	    "inline:{old@x.test=new@x.test, @olddom.test=@newdom.test, @all.test=one@x.test, root=admin@x.test}",
	    "inline:{new@x.test=deliver@x.test}");
	struct buf out = BUF_INIT;

	(void)state;
	assert_int_equal(cleanup_rewrite_sender(&f->rw, "old@x.test", &out, &f->st), 0);
	assert_string_equal(buf_str(&out), "new@x.test");
	assert_int_equal(cleanup_rewrite_sender(&f->rw, "joe@olddom.test", &out, &f->st), 0);
	assert_string_equal(buf_str(&out), "joe@newdom.test");
	assert_int_equal(cleanup_rewrite_sender(&f->rw, "joe@all.test", &out, &f->st), 0);
	assert_string_equal(buf_str(&out), "one@x.test");
	assert_int_equal(cleanup_rewrite_sender(&f->rw, "root", &out, &f->st), 0);
	assert_string_equal(buf_str(&out), "admin@x.test");
	assert_int_equal(cleanup_rewrite_sender(&f->rw, "root@elsewhere.test", &out, &f->st), 0);
	assert_string_equal(buf_str(&out), "root@elsewhere.test");
	assert_int_equal(cleanup_rewrite_sender(&f->rw, "", &out, &f->st), 0);
	assert_string_equal(buf_str(&out), "");
	/* Recipients: canonical first, then virtual aliases. */
	assert_int_equal(cleanup_rewrite_rcpt(&f->rw, &f->l, "old@x.test", NULL, 0, false, &f->st), 0);
	assert_string_equal(rw_list(f, &out), "deliver@x.test[rfc822;old@x.test]");
	rw_close(f);
	buf_free(&out);
}

static void
test_orcpt_encoding(void **state)
{
	struct buf out = BUF_INIT;

	(void)state;
	cleanup_orcpt_of(&out, "a+b=c d@x.test");
	assert_string_equal(buf_str(&out), "rfc822;a+2Bb+3Dc+20d@x.test");
	cleanup_orcpt_of(&out, "j\xc3\xb6rg+x\\@b\xc3\xbc.test");
	assert_string_equal(buf_str(&out), "utf-8;j\xc3\xb6rg\\x{2B}x\\x{5C}@b\xc3\xbc.test");
	buf_free(&out);
	assert_true(cleanup_addr_ok("a@b"));
	assert_false(cleanup_addr_ok(""));
	assert_false(cleanup_addr_ok("<a@b>"));
	assert_false(cleanup_addr_ok("a\n@b"));
	assert_false(cleanup_addr_ok("a\x7f@b"));
	assert_true(cleanup_addr_ok("\"john doe\"@b"));
}

/* ---------------------------------------------------------------- lazy queue files */

/* qf_write - a one-recipient file through the writer; returns qfile_commit's result */
static int
qf_write(struct qfile_writer *w, const char *content, struct buf *err)
{
	static const struct timeval tv = { T_NOW, 0 };

	if (qfile_put_time(w, &tv, err) < 0 || qfile_put_sender(w, "a@b", err) < 0 ||
	    qfile_put_rcpt(w, "c@d", NULL, 0, err) < 0 || qfile_begin_content(w, err) < 0 ||
	    qfile_put_content(w, content, strlen(content), err) < 0)
		return -1;
	return qfile_commit(w, QF_COMMIT_NOSYNC, err);
}

static void
test_lazy_queue_file(void **state)
{
	char dir[] = "/tmp/cleanup_test.XXXXXX", old[4096], path[64];
	struct qfile_writer w;
	struct buf err = BUF_INIT;
	struct stat st;
	char *big;

	(void)state;
	assert_non_null(getcwd(old, sizeof(old)));
	assert_non_null(mkdtemp(dir));
	assert_int_equal(chdir(dir), 0);
	assert_int_equal(mkdir(QUEUE_INCOMING, 0700), 0);
	snprintf(path, sizeof(path), "%s/%s", QUEUE_INCOMING, T_QID);

	/* Nothing on disk until the commit, which writes the file in one go. */
	assert_int_equal(qfile_create_id(&w, QUEUE_INCOMING, T_QID, QF_CREATE_LAZY, &err), 0);
	assert_string_equal(w.id, T_QID);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(qf_write(&w, "Subject: 1\n", &err), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, QF_MODE_COMPLETE);

	/* The same ID again: refused at the commit, and the first file is left alone. */
	assert_int_equal(qfile_create_id(&w, QUEUE_INCOMING, T_QID, QF_CREATE_LAZY, &err), 0);
	assert_int_equal(qf_write(&w, "Subject: 2\n", &err), -1);
	assert_non_null(strstr(buf_str(&err), "File exists"));
	qfile_abort(&w);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, QF_MODE_COMPLETE);
	/* Without lazy, at once. */
	assert_int_equal(qfile_create_id(&w, QUEUE_INCOMING, T_QID, 0, &err), -1);
	qfile_abort(&w);
	assert_int_equal(access(path, F_OK), 0);
	assert_int_equal(unlink(path), 0);

	/* Abort before anything was written: nothing to remove, nothing there. */
	assert_int_equal(qfile_create_id(&w, QUEUE_INCOMING, NULL, QF_CREATE_LAZY, &err), 0);
	assert_true(qid_valid(w.id));
	qfile_abort(&w);
	assert_int_equal(rmdir(QUEUE_INCOMING), 0); /* empty */
	assert_int_equal(mkdir(QUEUE_INCOMING, 0700), 0);

	/* A large message reaches the disk before the commit; abort removes it. */
	big = malloc(300000);
	assert_non_null(big);
	memset(big, 'x', 299999);
	big[299999] = 0;
	assert_int_equal(qfile_create_id(&w, QUEUE_INCOMING, T_QID, QF_CREATE_LAZY, &err), 0);
	assert_int_equal(qfile_put_time(&w, &(struct timeval){ T_NOW, 0 }, &err), 0);
	assert_int_equal(qfile_put_sender(&w, "", &err), 0);
	assert_int_equal(qfile_put_rcpt(&w, "c@d", NULL, 0, &err), 0);
	assert_int_equal(qfile_begin_content(&w, &err), 0);
	assert_int_equal(qfile_put_content(&w, big, 299999, &err), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, QF_MODE_INCOMPLETE);
	qfile_abort(&w);
	assert_int_equal(access(path, F_OK), -1);
	free(big);

	/* Bad IDs never become paths. */
	assert_int_equal(qfile_create_id(&w, QUEUE_INCOMING, "../../etc/passwd", QF_CREATE_LAZY, &err), -1);
	assert_int_equal(qfile_create_id(&w, QUEUE_INCOMING, "1lg5id3ghoc00il0", 0, &err), -1);

	assert_int_equal(rmdir(QUEUE_INCOMING), 0);
	assert_int_equal(chdir(old), 0);
	assert_int_equal(rmdir(dir), 0);
	buf_free(&err);
}

static int
setup(void **state)
{
	(void)state;
	/* A fixed zone so that Date: fields are predictable. */
	setenv("TZ", "UTC0", 1);
	tzset();
	log_init("cleanup_test", LOG_DEST_STDERR);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_content_cases),
		cmocka_unit_test(test_message_id_log),
		cmocka_unit_test(test_hopcount),
		cmocka_unit_test(test_header_size_limit),
		cmocka_unit_test(test_message_size_limit),
		cmocka_unit_test(test_output_failure),
		cmocka_unit_test(test_virtual_alias),
		cmocka_unit_test(test_dedup_across_recipients),
		cmocka_unit_test(test_retry_table),
		cmocka_unit_test(test_canonical),
		cmocka_unit_test(test_orcpt_encoding),
		cmocka_unit_test(test_lazy_queue_file),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
