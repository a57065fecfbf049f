/*
 * dsn_test - delivery status notifications built from real queue files:
 * the MIME structure (boundary, three parts, the per-message and
 * per-recipient fields), what is returned per RET and return_limit,
 * hostile reasons and content (a line equal to the boundary, 8-bit, NUL,
 * injected header lines), SMTPUTF8, and dsn_send against a fake cleanup.
 * When /usr/bin/python3 exists, Python's email package must parse the
 * notice the way a mail client would.
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

#include "cfg.h"
#include "cleanup_client.h"
#include "dsn.h"
#include "ipc.h"
#include "proto.h"
#include "qfile.h"
#include "qid.h"
#include "qlog.h"

static char tmpdir[] = "/tmp/dsn_test.XXXXXX";
static char oldcwd[4096];

/*
 * The randomness dsn.c uses for the boundary and the Message-Id, made
 * predictable here (the test binary's definition wins over the C
 * library's): fake_fill >= 0 makes every call return that byte.
 */
static int fake_fill = -1;
static unsigned fake_count;

void
arc4random_buf(void *p, size_t n)
{
	unsigned char *c = p;
	size_t i;

	for (i = 0; i < n; i++)
		c[i] = fake_fill >= 0 ? (unsigned char)fake_fill : (unsigned char)(fake_count * 31 + i * 7 + 1);
	fake_count++;
}

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
	struct buf err = BUF_INIT;

	(void)state;
	setenv("TZ", "UTC", 1);
	tzset();
	if (getcwd(oldcwd, sizeof(oldcwd)) == NULL || mkdtemp(tmpdir) == NULL || chdir(tmpdir) < 0)
		return -1;
	if (mkdir(QUEUE_INCOMING, 0700) < 0 || mkdir(SVC_PRIVATE_DIR, 0700) < 0)
		return -1;
	if (cfg_load_string("myhostname = mx.example.test\nmaximal_queue_lifetime = 2d\n", "test", &err) < 0)
		return -1;
	buf_free(&err);
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

/* A message to queue. */
struct spec {
	const char *sender;
	const char *envid, *ret, *smtputf8;
	const char *rcpt[4], *orcpt[4];
	const char *content;
	size_t content_len; /* 0: strlen(content) */
};

/* A queue file written and read back, with one qlog entry per recipient. */
struct queued {
	char path[128];
	int fd;
	struct qfile_env env;
	struct qlog_entry e[4];
	size_t n;
};

static void
queue_message(const struct spec *sp, struct queued *q)
{
	static const struct timeval arrival = { 1700000000, 123456 };
	struct qfile_writer w;
	struct buf err = BUF_INIT;
	size_t i, len = sp->content_len ? sp->content_len : strlen(sp->content);

	memset(q, 0, sizeof(*q));
	assert_int_equal(qfile_create(&w, QUEUE_INCOMING, &err), 0);
	snprintf(q->path, sizeof(q->path), "%s", w.path);
	assert_int_equal(qfile_put_time(&w, &arrival, &err), 0);
	assert_int_equal(qfile_put_sender(&w, sp->sender ? sp->sender : "alice@example.org", &err), 0);
	assert_int_equal(qfile_put_attr(&w, "protocol", "ESMTP", &err), 0);
	if (sp->envid)
		assert_int_equal(qfile_put_attr(&w, CLEANUP_ATTR_ENVID, sp->envid, &err), 0);
	if (sp->ret)
		assert_int_equal(qfile_put_attr(&w, CLEANUP_ATTR_RET, sp->ret, &err), 0);
	if (sp->smtputf8)
		assert_int_equal(qfile_put_attr(&w, CLEANUP_ATTR_SMTPUTF8, sp->smtputf8, &err), 0);
	for (i = 0; i < 4 && sp->rcpt[i]; i++)
		assert_int_equal(qfile_put_rcpt(&w, sp->rcpt[i], sp->orcpt[i], 0, &err), 0);
	assert_int_equal(qfile_begin_content(&w, &err), 0);
	assert_int_equal(qfile_put_content(&w, sp->content, len, &err), 0);
	assert_int_equal(qfile_commit(&w, QF_COMMIT_NOSYNC, &err), 0);
	q->fd = open(q->path, O_RDONLY | O_CLOEXEC);
	assert_true(q->fd >= 0);
	assert_int_equal(qfile_read(q->fd, &q->env, NULL, &err), 0);
	q->n = q->env.nrcpts;
	for (i = 0; i < q->n; i++) {
		struct qlog_entry *e = &q->e[i];

		e->when = 1700000300;
		e->offset = q->env.rcpts[i].offset;
		e->status = QLOG_BOUNCED;
		strcpy(e->dsn, "5.1.1");
		e->addr = q->env.rcpts[i].addr;
		e->orcpt = q->env.rcpts[i].orcpt;
		e->relay = (char *)"local";
		e->reason = (char *)"unknown user";
	}
	buf_free(&err);
}

static void
unqueue(struct queued *q)
{
	close(q->fd);
	unlink(q->path);
	qfile_env_free(&q->env);
}

static void
request(struct dsn_request *r, struct queued *q, enum dsn_kind kind, long long return_limit)
{
	memset(r, 0, sizeof(*r));
	r->kind = kind;
	r->queue_id = q->path + strlen(QUEUE_INCOMING) + 1;
	r->fd = q->fd;
	r->env = &q->env;
	r->rcpts = q->e;
	r->nrcpts = q->n;
	r->to = "alice@example.org";
	r->return_limit = return_limit;
}

/* Parsing the notice in C: the top header, the boundary, the parts. */
struct notice {
	char *text;
	char boundary[128];
	const char *part[8]; /* each part: its header, a blank line, its body */
	size_t partlen[8];
	size_t nparts;
	bool closed; /* the close delimiter was found */
};

static void
notice_parse(const struct buf *msg, struct notice *nt)
{
	char *b, *end, delim[140], *p, *next;

	memset(nt, 0, sizeof(*nt));
	nt->text = strndup((const char *)msg->data, msg->len);
	assert_non_null(nt->text);
	assert_int_equal(strlen(nt->text), msg->len);
	b = strstr(nt->text, "boundary=\"");
	assert_non_null(b);
	b += 10;
	end = strchr(b, '"');
	assert_non_null(end);
	assert_true((size_t)(end - b) < sizeof(nt->boundary));
	assert_true(end - b <= 70);
	memcpy(nt->boundary, b, (size_t)(end - b));
	snprintf(delim, sizeof(delim), "\n--%s", nt->boundary);
	p = strstr(nt->text, delim);
	while (p != NULL) {
		p += strlen(delim);
		if (strncmp(p, "--\n", 3) == 0) {
			nt->closed = true;
			assert_string_equal(p + 3, "");
			break;
		}
		assert_true(*p == '\n');
		p++;
		next = strstr(p, delim);
		assert_non_null(next);
		assert_true(nt->nparts < 8);
		nt->part[nt->nparts] = p;
		nt->partlen[nt->nparts] = (size_t)(next - p);
		nt->nparts++;
		p = next;
	}
}

static void
notice_free(struct notice *nt)
{
	free(nt->text);
}

/* header - the unfolded value of the first field name in a header section (up to a blank line), or NULL */
static char *
header(const char *sec, size_t len, const char *name)
{
	const char *p = sec, *end = sec + len, *nl;
	size_t nlen = strlen(name);

	while (p < end && *p != '\n') {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			nl = end;
		if ((size_t)(nl - p) > nlen && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
			char *v = malloc(len + 1), *w = v;
			const char *q = p + nlen + 1;

			while (*q == ' ')
				q++;
			for (;;) {
				memcpy(w, q, (size_t)(nl - q));
				w += nl - q;
				if (nl + 1 >= end || (nl[1] != ' ' && nl[1] != '\t'))
					break;
				q = nl + 1;
				nl = memchr(q, '\n', (size_t)(end - q));
				if (nl == NULL)
					nl = end;
			}
			*w = 0;
			return v;
		}
		p = nl + 1;
	}
	return NULL;
}

static void
assert_header(const char *sec, size_t len, const char *name, const char *want)
{
	char *v = header(sec, len, name);

	if (want == NULL) {
		if (v != NULL)
			fail_msg("%s: unexpected value %s", name, v);
		return;
	}
	if (v == NULL)
		fail_msg("%s: missing", name);
	if (strcmp(v, want) != 0)
		fail_msg("%s: got \"%s\", want \"%s\"", name, v, want);
	free(v);
}

/* body - the body of a part (after its first blank line) */
static const char *
body(const char *part, size_t len, size_t *blen)
{
	const char *p;

	if (len > 0 && part[0] == '\n') {
		*blen = len - 1;
		return part + 1;
	}
	p = memmem(part, len, "\n\n", 2);
	assert_non_null(p);
	*blen = len - (size_t)(p + 2 - part);
	return p + 2;
}

/* block - the i-th blank-line separated block of a delivery-status body */
static const char *
block(const char *b, size_t blen, size_t i, size_t *len)
{
	const char *p = b, *end = b + blen, *q;

	*len = 0;
	for (;;) {
		q = memmem(p, (size_t)(end - p), "\n\n", 2);
		if (i == 0) {
			*len = q ? (size_t)(q + 1 - p) : (size_t)(end - p);
			return p;
		}
		if (q == NULL)
			return NULL;
		p = q + 2;
		i--;
	}
}

/*
 * Every line of s is at most 998 bytes, not white space alone (a folded
 * line must hold something), and, unless eight_bit, 7-bit and free of
 * controls.
 */
static void
assert_clean_lines(const char *s, size_t len, bool eight_bit)
{
	size_t i, col = 0, blank = 0;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\n') {
			if (col > 0 && blank == col)
				fail_msg("white space line before %zu", i);
			col = blank = 0;
			continue;
		}
		if (c == ' ' || c == '\t')
			blank++;
		if (++col > 998)
			fail_msg("line longer than 998 bytes at %zu", i);
		if ((c < 0x20 && c != '\t') || c == 0x7f || (!eight_bit && c >= 0x80))
			fail_msg("byte 0x%02x at %zu", c, i);
	}
}

/* python_check - run Python's email parser on msg; its report in out; false when there is no python */
static bool
python_check(const struct buf *msg, struct buf *out)
{
	static const char script[] =
	    "import sys, email, email.policy\n"
	    "m = email.message_from_binary_file(open(sys.argv[1], 'rb'), policy=email.policy.default)\n"
	    "assert m.get_content_type() == 'multipart/report', m.get_content_type()\n"
	    "assert m.get_param('report-type') == 'delivery-status'\n"
	    "parts = list(m.iter_parts())\n"
	    "print('parts', len(parts), ' '.join(p.get_content_type() for p in parts))\n"
	    "ds = [p for p in parts if p.get_content_type() == 'message/delivery-status'][0]\n"
	    "blocks = ds.get_payload()\n"
	    "print('mta', blocks[0]['Reporting-MTA'])\n"
	    "for b in blocks[1:]:\n"
	    "    print('rcpt', b['Final-Recipient'], '|', b['Action'], '|', b['Status'])\n"
	    "if parts[2].get_content_type() == 'message/rfc822':\n"
	    "    print('subject', parts[2].get_payload()[0]['Subject'])\n"
	    "print('defects', sum(len(p.defects) for p in m.walk()))\n";
	char cmd[256], line[1024];
	FILE *f, *p;

	if (access("/usr/bin/python3", X_OK) != 0)
		return false;
	f = fopen("notice.eml", "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(msg->data, 1, msg->len, f), msg->len);
	assert_int_equal(fclose(f), 0);
	f = fopen("check.py", "w");
	assert_non_null(f);
	fputs(script, f);
	assert_int_equal(fclose(f), 0);
	snprintf(cmd, sizeof(cmd), "/usr/bin/python3 check.py notice.eml 2>&1");
	p = popen(cmd, "r");
	assert_non_null(p);
	buf_reset(out);
	while (fgets(line, sizeof(line), p) != NULL)
		buf_puts(out, line);
	if (pclose(p) != 0)
		fail_msg("python: %s", buf_str(out));
	return true;
}

static const char content1[] = "From: Alice <alice@example.org>\n"
                               "To: bob@example.com\n"
                               "Subject: the quarterly numbers\n"
                               "Message-ID: <123@example.org>\n"
                               "\n"
                               "Here they are.\n"
                               "-- \n"
                               "Alice\n";

/* Three recipients, ORCPT, ENVID, RET absent (FULL): the whole structure, field by field. */
static void
test_failed_full(void **state)
{
	struct spec sp = {
		.envid = "QQ314159",
		.rcpt = { "bob@example.com", "carol@example.net", "dave@example.test" },
		.orcpt = { "rfc822;bob+2Bx@example.com", NULL, "rfc822;dave@example.test" },
		.content = content1,
	};
	struct dsn_request r;
	struct queued q;
	struct buf msg = BUF_INIT, err = BUF_INIT, py = BUF_INIT;
	struct notice nt;
	const char *b, *blk;
	size_t blen, len;
	char want[1024];

	(void)state;
	queue_message(&sp, &q);
	q.e[0].relay = (char *)"mx.example.com[192.0.2.1]:25";
	q.e[0].reason = (char *)"host mx.example.com[192.0.2.1] said: 550 5.1.1 <bob@example.com>: no such user";
	q.e[1].status = QLOG_DEFERRED;
	strcpy(q.e[1].dsn, "4.4.1");
	q.e[1].relay = (char *)"none";
	q.e[1].reason = (char *)"connect to mx.example.net: Connection refused";
	strcpy(q.e[2].dsn, "5.2.2");
	q.e[2].reason = (char *)"mailbox full";
	request(&r, &q, DSN_FAILED, 50000);
	assert_int_equal(dsn_build(&r, &msg, &err), 0);
	notice_parse(&msg, &nt);
	assert_true(nt.closed);
	assert_int_equal(nt.nparts, 3);

	/* The top-level header. */
	assert_header(nt.text, msg.len, "From", "MAILER-DAEMON@mx.example.test (Mail Delivery System)");
	assert_header(nt.text, msg.len, "To", "alice@example.org");
	assert_header(nt.text, msg.len, "Subject", "Undelivered Mail Returned to Sender");
	assert_header(nt.text, msg.len, "Auto-Submitted", "auto-replied");
	assert_header(nt.text, msg.len, "MIME-Version", "1.0");
	snprintf(want, sizeof(want), "multipart/report; report-type=delivery-status;\tboundary=\"%s\"", nt.boundary);
	assert_header(nt.text, msg.len, "Content-Type", want);
	assert_header(nt.text, msg.len, "Content-Transfer-Encoding", "7bit");
	assert_non_null(strstr(nt.text, "\nMessage-Id: <"));
	snprintf(want, sizeof(want), ".%s@mx.example.test>\n", r.queue_id);
	assert_non_null(strstr(nt.text, want));
	assert_non_null(strstr(nt.text, "\nDate: "));
	assert_true(strncmp(nt.boundary, r.queue_id, QID_LEN) == 0);

	/* Part 1: the explanation names every recipient and its reason. */
	assert_header(nt.part[0], nt.partlen[0], "Content-Type", "text/plain; charset=us-ascii");
	b = body(nt.part[0], nt.partlen[0], &blen);
	assert_non_null(memmem(b, blen, "<bob@example.com>: host mx.example.com[192.0.2.1] said: 550 5.1.1", 65));
	assert_non_null(memmem(b, blen, "<carol@example.net>: connect to mx.example.net:", 47));
	assert_non_null(memmem(b, blen, "<dave@example.test>: mailbox full", 33));

	/* Part 2: the report. */
	assert_header(nt.part[1], nt.partlen[1], "Content-Type", "message/delivery-status");
	b = body(nt.part[1], nt.partlen[1], &blen);
	blk = block(b, blen, 0, &len);
	assert_header(blk, len, "Original-Envelope-Id", "QQ314159");
	assert_header(blk, len, "Reporting-MTA", "dns; mx.example.test");
	assert_header(blk, len, "Arrival-Date", "Tue, 14 Nov 2023 22:13:20 +0000");
	assert_header(blk, len, "X-Postern-Queue-ID", r.queue_id);
	/* Original-Envelope-Id comes first (RFC 3464's grammar). */
	assert_true(strncmp(blk, "Original-Envelope-Id:", 21) == 0);

	blk = block(b, blen, 1, &len);
	assert_non_null(blk);
	assert_header(blk, len, "Original-Recipient", "rfc822; bob+2Bx@example.com");
	assert_header(blk, len, "Final-Recipient", "rfc822; bob@example.com");
	assert_header(blk, len, "Action", "failed");
	assert_header(blk, len, "Status", "5.1.1");
	assert_header(blk, len, "Remote-MTA", "dns; mx.example.com");
	assert_header(blk, len, "Diagnostic-Code", "smtp; 550 5.1.1 <bob@example.com>: no such user");
	assert_header(blk, len, "Last-Attempt-Date", "Tue, 14 Nov 2023 22:18:20 +0000");
	assert_header(blk, len, "Will-Retry-Until", NULL);

	blk = block(b, blen, 2, &len);
	assert_non_null(blk);
	assert_header(blk, len, "Original-Recipient", NULL);
	assert_header(blk, len, "Final-Recipient", "rfc822; carol@example.net");
	assert_header(blk, len, "Action", "failed");
	assert_header(blk, len, "Status", "4.4.1"); /* expired: the record's code stays */
	assert_header(blk, len, "Remote-MTA", NULL);
	assert_header(blk, len, "Diagnostic-Code", "X-Postern; connect to mx.example.net: Connection refused");

	blk = block(b, blen, 3, &len);
	assert_non_null(blk);
	assert_header(blk, len, "Original-Recipient", "rfc822; dave@example.test");
	assert_header(blk, len, "Final-Recipient", "rfc822; dave@example.test");
	assert_header(blk, len, "Status", "5.2.2");
	assert_header(blk, len, "Remote-MTA", NULL); /* relay "local" */
	assert_null(block(b, blen, 4, &len));

	/* Part 3: the whole message, byte for byte. */
	assert_header(nt.part[2], nt.partlen[2], "Content-Type", "message/rfc822");
	assert_header(nt.part[2], nt.partlen[2], "Content-Description", "Undelivered Message");
	b = body(nt.part[2], nt.partlen[2], &blen);
	/* The delimiter's own LF follows the content's last one. */
	assert_int_equal(blen, strlen(content1));
	assert_memory_equal(b, content1, blen);

	assert_clean_lines(nt.text, msg.len, false);
	if (python_check(&msg, &py)) {
		assert_string_equal(buf_str(&py), "parts 3 text/plain message/delivery-status message/rfc822\n"
		                                  "mta dns; mx.example.test\n"
		                                  "rcpt rfc822; bob@example.com | failed | 5.1.1\n"
		                                  "rcpt rfc822; carol@example.net | failed | 4.4.1\n"
		                                  "rcpt rfc822; dave@example.test | failed | 5.2.2\n"
		                                  "subject the quarterly numbers\n"
		                                  "defects 0\n");
	}
	notice_free(&nt);
	unqueue(&q);
	buf_free(&msg);
	buf_free(&err);
	buf_free(&py);
}

/* headers_only - build with these settings and check that part 3 is the header section of content1 */
static void
check_headers_only(const char *ret, long long limit, enum dsn_kind kind, const char *description)
{
	struct spec sp = { .ret = ret, .rcpt = { "bob@example.com" }, .content = content1 };
	struct dsn_request r;
	struct queued q;
	struct buf msg = BUF_INIT, err = BUF_INIT, py = BUF_INIT;
	struct notice nt;
	const char *b, *hdr_end = strstr(content1, "\n\n") + 1;
	size_t blen;

	queue_message(&sp, &q);
	request(&r, &q, kind, limit);
	if (kind == DSN_DELIVERED) {
		q.e[0].status = QLOG_SENT;
		strcpy(q.e[0].dsn, "2.0.0");
		q.e[0].reason = (char *)"delivered to maildir";
	} else if (kind == DSN_DELAYED) {
		q.e[0].status = QLOG_DEFERRED;
		strcpy(q.e[0].dsn, "4.2.2");
		q.e[0].reason = (char *)"mailbox full";
	}
	assert_int_equal(dsn_build(&r, &msg, &err), 0);
	notice_parse(&msg, &nt);
	assert_int_equal(nt.nparts, 3);
	assert_true(nt.closed);
	assert_header(nt.part[2], nt.partlen[2], "Content-Type", "text/rfc822-headers");
	assert_header(nt.part[2], nt.partlen[2], "Content-Description", description);
	b = body(nt.part[2], nt.partlen[2], &blen);
	assert_int_equal(blen, (size_t)(hdr_end - content1));
	assert_memory_equal(b, content1, blen);
	assert_null(strstr(nt.text, "Here they are."));
	if (python_check(&msg, &py)) {
		char want[512];
		const char *action = kind == DSN_DELIVERED ? "delivered" : kind == DSN_DELAYED ? "delayed" : "failed";

		snprintf(want, sizeof(want),
		    "parts 3 text/plain message/delivery-status text/rfc822-headers\n"
		    "mta dns; mx.example.test\n"
		    "rcpt rfc822; bob@example.com | %s | %s\n"
		    "defects 0\n",
		    action, q.e[0].dsn);
		assert_string_equal(buf_str(&py), want);
	}
	notice_free(&nt);
	unqueue(&q);
	buf_free(&msg);
	buf_free(&err);
	buf_free(&py);
}

/* RET=HDRS, a content over return_limit, return_limit 0: the header section only. */
static void
test_headers_only(void **state)
{
	(void)state;
	check_headers_only("HDRS", 50000, DSN_FAILED, "Undelivered Message Headers");
	check_headers_only("hdrs", 50000, DSN_FAILED, "Undelivered Message Headers");
	check_headers_only(NULL, (long long)strlen(content1) - 1, DSN_FAILED, "Undelivered Message Headers");
	check_headers_only("FULL", 0, DSN_FAILED, "Undelivered Message Headers");
	/* Delay and success notices never return the body, whatever RET says. */
	check_headers_only("FULL", 50000, DSN_DELAYED, "Delayed Message Headers");
	check_headers_only(NULL, 50000, DSN_DELIVERED, "Delivered Message Headers");
}

/* Exactly return_limit bytes is still returned whole. */
static void
test_return_limit_edge(void **state)
{
	struct spec sp = { .rcpt = { "bob@example.com" }, .content = content1 };
	struct dsn_request r;
	struct queued q;
	struct buf msg = BUF_INIT, err = BUF_INIT;
	struct notice nt;

	(void)state;
	queue_message(&sp, &q);
	request(&r, &q, DSN_FAILED, (long long)strlen(content1));
	assert_int_equal(dsn_build(&r, &msg, &err), 0);
	notice_parse(&msg, &nt);
	assert_header(nt.part[2], nt.partlen[2], "Content-Type", "message/rfc822");
	notice_free(&nt);
	unqueue(&q);
	buf_free(&msg);
	buf_free(&err);
}

/* A large content over return_limit: headers only, in several queue records. */
static void
test_large_content(void **state)
{
	size_t big = 3 * QF_CHUNK_MAX + 17, i;
	char *content = malloc(big + 1);
	struct spec sp = { .rcpt = { "bob@example.com" } };
	struct dsn_request r;
	struct queued q;
	struct buf msg = BUF_INIT, err = BUF_INIT;
	struct notice nt;
	const char *b;
	size_t blen;

	(void)state;
	strcpy(content, "Subject: big\nX-Filler: yes\n\n");
	for (i = strlen(content); i < big; i++)
		content[i] = i % 64 == 63 ? '\n' : 'x';
	content[big] = 0;
	sp.content = content;
	queue_message(&sp, &q);
	request(&r, &q, DSN_FAILED, 50000);
	assert_int_equal(dsn_build(&r, &msg, &err), 0);
	assert_true(msg.len < 10000);
	notice_parse(&msg, &nt);
	assert_header(nt.part[2], nt.partlen[2], "Content-Type", "text/rfc822-headers");
	b = body(nt.part[2], nt.partlen[2], &blen);
	assert_int_equal(blen, strlen("Subject: big\nX-Filler: yes\n"));
	/* With a limit above the size, all of it comes back. */
	notice_free(&nt);
	request(&r, &q, DSN_FAILED, (long long)big);
	assert_int_equal(dsn_build(&r, &msg, &err), 0);
	notice_parse(&msg, &nt);
	assert_header(nt.part[2], nt.partlen[2], "Content-Type", "message/rfc822");
	b = body(nt.part[2], nt.partlen[2], &blen);
	assert_int_equal(blen, big);
	assert_memory_equal(b, content, big);
	notice_free(&nt);
	unqueue(&q);
	free(content);
	buf_free(&msg);
	buf_free(&err);
}

/* Content that holds the first boundary Postern would choose: it chooses another. */
static void
test_boundary_collision(void **state)
{
	struct spec sp = { .rcpt = { "bob@example.com" } };
	struct dsn_request r;
	struct queued q;
	struct buf msg = BUF_INIT, err = BUF_INIT, content = BUF_INIT;
	struct notice nt;
	char id[QID_LEN + 1], bad[128];
	const char *b;
	size_t blen;

	(void)state;
	/* The queue ID is known only once the file exists: queue a placeholder first. */
	sp.content = "x\n";
	queue_message(&sp, &q);
	memcpy(id, q.path + strlen(QUEUE_INCOMING) + 1, sizeof(id));
	unqueue(&q);

	/* With every random byte 0, the first boundary is "ID.0000000000000000/mx.example.test". */
	snprintf(bad, sizeof(bad), "%s.0000000000000000/mx.example.test", id);
	buf_printf(&content, "Subject: trap\n\n--%s\nContent-Type: text/plain\n\nfake part\n--%s--\n", bad, bad);
	sp.content = buf_str(&content);
	queue_message(&sp, &q);
	/* The new file has a new ID: the request names the old one, which the boundary uses. */
	request(&r, &q, DSN_FAILED, 50000);
	r.queue_id = id;
	fake_fill = 0;
	fake_count = 0;
	assert_int_equal(dsn_build(&r, &msg, &err), -1); /* every try gives the same boundary */
	assert_non_null(strstr(buf_str(&err), "boundary"));
	fake_fill = -1;
	assert_int_equal(dsn_build(&r, &msg, &err), 0);
	notice_parse(&msg, &nt);
	assert_string_not_equal(nt.boundary, bad);
	assert_null(strstr(buf_str(&content), nt.boundary));
	assert_int_equal(nt.nparts, 3);
	b = body(nt.part[2], nt.partlen[2], &blen);
	assert_int_equal(blen, content.len);
	assert_memory_equal(b, content.data, blen);

	/* A boundary that collides once is replaced by the next try. */
	notice_free(&nt);
	fake_fill = -1;
	fake_count = 0;
	{
		/* Predict the first try of the counter pattern and plant it. */
		unsigned char rnd[8];
		char first[128];
		size_t i, n;

		for (i = 0; i < 8; i++)
			rnd[i] = (unsigned char)(0 * 31 + i * 7 + 1);
		n = (size_t)snprintf(first, sizeof(first), "%s.", id);
		for (i = 0; i < 8; i++)
			n += (size_t)snprintf(first + n, sizeof(first) - n, "%02x", rnd[i]);
		snprintf(first + n, sizeof(first) - n, "/mx.example.test");
		unqueue(&q);
		buf_reset(&content);
		buf_printf(&content, "Subject: trap\n\n--%s\n", first);
		sp.content = buf_str(&content);
		queue_message(&sp, &q);
		request(&r, &q, DSN_FAILED, 50000);
		r.queue_id = id;
		fake_count = 0;
		assert_int_equal(dsn_build(&r, &msg, &err), 0);
		notice_parse(&msg, &nt);
		assert_string_not_equal(nt.boundary, first);
		assert_true(fake_count >= 3); /* two boundary tries and the Message-Id */
		assert_int_equal(nt.nparts, 3);
		notice_free(&nt);
	}
	unqueue(&q);
	buf_free(&msg);
	buf_free(&err);
	buf_free(&content);
}

/* 8-bit content is returned as it is, declared 8bit, and still parses. */
static void
test_8bit_content(void **state)
{
	static const char content[] = "Subject: =?utf-8?q?caf=C3=A9?=\n"
	                              "Content-Type: text/plain; charset=utf-8\n"
	                              "Content-Transfer-Encoding: 8bit\n"
	                              "\n"
	                              "caf\xc3\xa9 cr\xc3\xa8me br\xc3\xbbl\xc3\xa9"
	                              "e\n";
	struct spec sp = { .rcpt = { "bob@example.com" }, .content = content };
	struct dsn_request r;
	struct queued q;
	struct buf msg = BUF_INIT, err = BUF_INIT, py = BUF_INIT;
	struct notice nt;
	const char *b;
	size_t blen;

	(void)state;
	queue_message(&sp, &q);
	request(&r, &q, DSN_FAILED, 50000);
	assert_int_equal(dsn_build(&r, &msg, &err), 0);
	notice_parse(&msg, &nt);
	assert_header(nt.text, msg.len, "Content-Transfer-Encoding", "8bit");
	assert_header(nt.part[2], nt.partlen[2], "Content-Transfer-Encoding", "8bit");
	b = body(nt.part[2], nt.partlen[2], &blen);
	assert_int_equal(blen, strlen(content));
	assert_memory_equal(b, content, blen);
	/* Parts 1 and 2 stay 7-bit. */
	assert_clean_lines(nt.part[0], (size_t)(nt.part[2] - nt.part[0]), false);
	if (python_check(&msg, &py))
		assert_non_null(strstr(buf_str(&py), "subject caf\xc3\xa9\n"));
	notice_free(&nt);
	unqueue(&q);
	buf_free(&msg);
	buf_free(&err);
	buf_free(&py);
}

/* A remote server's hostile reply cannot add fields, end a part, or make long lines. */
static void
test_hostile_reason(void **state)
{
	struct spec sp = { .rcpt = { "bob@example.com", "carol@example.com" }, .content = content1 };
	struct dsn_request r;
	struct queued q;
	struct buf msg = BUF_INIT, err = BUF_INIT, reason = BUF_INIT, py = BUF_INIT;
	struct notice nt;
	const char *b, *blk;
	size_t blen, len, i;

	(void)state;
	buf_puts(&reason, "550 5.1.1 no\r\nStatus: 2.0.0\n\nAction: delivered\n--fake\x01\x7f\xc3\xa9\t");
	for (i = 0; i < 10000; i++)
		buf_putc(&reason, i % 3000 == 2999 ? ' ' : 'z');
	queue_message(&sp, &q);
	q.e[0].reason = (char *)buf_str(&reason);
	q.e[1].addr = (char *)"evil\n@example.com";
	q.e[1].reason = (char *)"\n\n--x\n                                                                          "
	                        "                                                                        \t\t ";
	request(&r, &q, DSN_FAILED, 50000);
	assert_int_equal(dsn_build(&r, &msg, &err), 0);
	notice_parse(&msg, &nt);
	assert_int_equal(nt.nparts, 3);
	/* Parts 1 and 2: short, clean lines. */
	assert_clean_lines(nt.part[0], (size_t)(nt.part[2] - nt.part[0]), false);
	b = body(nt.part[1], nt.partlen[1], &blen);
	blk = block(b, blen, 1, &len);
	assert_header(blk, len, "Status", "5.1.1");
	assert_header(blk, len, "Action", "failed");
	/* One recipient block each: nothing split them. */
	assert_non_null(block(b, blen, 2, &len));
	assert_null(block(b, blen, 3, &len));
	blk = block(b, blen, 2, &len);
	assert_header(blk, len, "Final-Recipient", "rfc822; evil @example.com");
	if (python_check(&msg, &py)) {
		assert_string_equal(buf_str(&py), "parts 3 text/plain message/delivery-status message/rfc822\n"
		                                  "mta dns; mx.example.test\n"
		                                  "rcpt rfc822; bob@example.com | failed | 5.1.1\n"
		                                  "rcpt rfc822; evil @example.com | failed | 5.1.1\n"
		                                  "subject the quarterly numbers\n"
		                                  "defects 0\n");
	}
	notice_free(&nt);
	unqueue(&q);
	buf_free(&msg);
	buf_free(&err);
	buf_free(&reason);
	buf_free(&py);
}

/* The header section when there is no body, or no header. */
static void
test_header_section_edges(void **state)
{
	static const struct {
		const char *content;
		size_t content_len;
		const char *want;
		size_t want_len;
		const char *type;
	} cases[] = {
		{ "Subject: only headers\nX: y\n", 0, "Subject: only headers\nX: y\n", 27, "text/rfc822-headers" },
		{ "\nbody without header\n", 0, "", 0, "text/rfc822-headers" },
		{ "Subject: no final newline", 0, "Subject: no final newline", 25, "text/rfc822-headers" },
		/* NUL in the content: never returned whole, and shown as '?' in the header. */
		{ "Subject: a\0b\n\nbody\0\n", 20, "Subject: a?b\n", 13, "text/rfc822-headers" },
	};
	struct spec sp = { .ret = "HDRS", .rcpt = { "bob@example.com" } };
	struct dsn_request r;
	struct queued q;
	struct buf msg = BUF_INIT, err = BUF_INIT;
	struct notice nt;
	const char *b;
	size_t blen, i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		sp.content = cases[i].content;
		sp.content_len = cases[i].content_len;
		sp.ret = i == 3 ? NULL : "HDRS"; /* the NUL case asks for the full message */
		queue_message(&sp, &q);
		request(&r, &q, DSN_FAILED, 50000);
		assert_int_equal(dsn_build(&r, &msg, &err), 0);
		assert_null(memchr(msg.data, 0, msg.len));
		notice_parse(&msg, &nt);
		assert_int_equal(nt.nparts, 3);
		assert_header(nt.part[2], nt.partlen[2], "Content-Type", cases[i].type);
		b = body(nt.part[2], nt.partlen[2], &blen);
		if (blen != cases[i].want_len || memcmp(b, cases[i].want, blen) != 0)
			fail_msg("case %zu: got %zu bytes \"%.*s\"", i, blen, (int)blen, b);
		notice_free(&nt);
		unqueue(&q);
	}
	buf_free(&msg);
	buf_free(&err);
}

/* SMTPUTF8: the RFC 6533 types and utf-8 addresses. */
static void
test_smtputf8(void **state)
{
	struct spec sp = {
		.smtputf8 = "1",
		.rcpt = { "j\xc3\xb6rg@b\xc3\xbc"
		          "cher.example",
		    "plain@example.com" },
		.orcpt = { "utf-8;j\xc3\xb6rg@b\xc3\xbc"
		           "cher.example",
		    NULL },
		.content = "Subject: gr\xc3\xbc\xc3\x9f"
		           "e\n\nhallo\n",
	};
	struct dsn_request r;
	struct queued q;
	struct buf msg = BUF_INIT, err = BUF_INIT;
	struct notice nt;
	const char *b, *blk;
	size_t blen, len;

	(void)state;
	queue_message(&sp, &q);
	request(&r, &q, DSN_FAILED, 50000);
	assert_int_equal(dsn_build(&r, &msg, &err), 0);
	notice_parse(&msg, &nt);
	assert_int_equal(nt.nparts, 3);
	assert_header(nt.part[1], nt.partlen[1], "Content-Type", "message/global-delivery-status");
	assert_header(nt.part[2], nt.partlen[2], "Content-Type", "message/global");
	b = body(nt.part[1], nt.partlen[1], &blen);
	blk = block(b, blen, 1, &len);
	assert_header(blk, len, "Final-Recipient",
	    "utf-8; j\xc3\xb6rg@b\xc3\xbc"
	    "cher.example");
	assert_header(blk, len, "Original-Recipient",
	    "utf-8; j\xc3\xb6rg@b\xc3\xbc"
	    "cher.example");
	blk = block(b, blen, 2, &len);
	assert_header(blk, len, "Final-Recipient", "rfc822; plain@example.com");
	notice_free(&nt);

	/* Headers only: message/global-headers. */
	request(&r, &q, DSN_DELAYED, 50000);
	assert_int_equal(dsn_build(&r, &msg, &err), 0);
	notice_parse(&msg, &nt);
	assert_header(nt.part[2], nt.partlen[2], "Content-Type", "message/global-headers");
	b = body(nt.part[1], nt.partlen[1], &blen);
	blk = block(b, blen, 1, &len);
	assert_header(blk, len, "Action", "delayed");
	/* maximal_queue_lifetime = 2d after the arrival. */
	assert_header(blk, len, "Will-Retry-Until", "Thu, 16 Nov 2023 22:13:20 +0000");
	notice_free(&nt);
	unqueue(&q);
	buf_free(&msg);
	buf_free(&err);
}

/* Requests that cannot make a notice. */
static void
test_bad_requests(void **state)
{
	struct spec sp = { .rcpt = { "bob@example.com" }, .content = content1 };
	struct dsn_request r;
	struct queued q;
	struct buf msg = BUF_INIT, err = BUF_INIT;

	(void)state;
	queue_message(&sp, &q);
	request(&r, &q, DSN_FAILED, 50000);
	r.queue_id = "../../etc/passwd";
	assert_int_equal(dsn_build(&r, &msg, &err), -1);
	request(&r, &q, DSN_FAILED, 50000);
	r.nrcpts = 0;
	assert_int_equal(dsn_build(&r, &msg, &err), -1);
	request(&r, &q, DSN_FAILED, 50000);
	r.to = "";
	assert_int_equal(dsn_build(&r, &msg, &err), -1);
	request(&r, &q, DSN_FAILED, 50000);
	r.to = NULL;
	assert_int_equal(dsn_build(&r, &msg, &err), -1);
	request(&r, &q, DSN_FAILED, 50000);
	q.e[0].addr = (char *)"";
	assert_int_equal(dsn_build(&r, &msg, &err), -1);
	q.e[0].addr = q.env.rcpts[0].addr;
	/* An unreadable descriptor is an error, not an empty message. */
	request(&r, &q, DSN_FAILED, 50000);
	r.fd = -1;
	assert_int_equal(dsn_build(&r, &msg, &err), -1);
	unqueue(&q);
	buf_free(&msg);
	buf_free(&err);
}

/* The fake cleanup: one connection; checks the envelope, saves the content, answers. */
static void
fake_cleanup(int lfd, int status)
{
	struct ipc_msg m;
	struct stream *s;
	struct buf line = BUF_INIT, content = BUF_INIT;
	const char *v;
	long long len;
	int cfd, ok = 1;
	FILE *f;

	if ((cfd = accept(lfd, NULL, NULL)) < 0)
		_exit(2);
	s = stream_new(cfd, 0);
	stream_set_timeout(s, 10);
	ipc_msg_init(&m);
	if (ipc_send_hello(s, CLEANUP_PROTOCOL, CLEANUP_VERSION) != STREAM_OK || ipc_get(s, &m, NULL) != STREAM_OK)
		_exit(3);
	v = ipc_msg_str(&m, CLEANUP_ATTR_SENDER);
	ok &= v != NULL && *v == 0;
	v = ipc_msg_str(&m, CLEANUP_ATTR_FLAGS);
	ok &= v != NULL && strcmp(v, "4") == 0;
	v = ipc_msg_str(&m, CLEANUP_ATTR_PROTOCOL);
	ok &= v != NULL && strcmp(v, "local") == 0;
	ok &= ipc_msg_count_name(&m, CLEANUP_ATTR_RCPT) == 1;
	v = ipc_msg_str(&m, CLEANUP_ATTR_RCPT);
	ok &= v != NULL && strcmp(v, "alice@example.org") == 0;
	for (;;) {
		if (stream_getline(s, &line, CLEANUP_FRAME_LINE_MAX) != STREAM_OK)
			_exit(4);
		len = atoll(buf_str(&line));
		if (len == 0)
			break;
		buf_reserve(&content, (size_t)len);
		if (stream_read(s, content.data + content.len, (size_t)len) != len)
			_exit(5);
		content.len += (size_t)len;
	}
	if ((f = fopen("sent.eml", "wb")) == NULL)
		_exit(6);
	fwrite(content.data, 1, content.len, f);
	fclose(f);
	ipc_put_int(s, ATTR_STATUS, status);
	if (status == 0) {
		ipc_put_str(s, CLEANUP_ATTR_DSN, "2.0.0");
		ipc_put_str(s, ATTR_QUEUE_ID, "1LG5ID3GHOE00IL0");
	} else {
		ipc_put_str(s, CLEANUP_ATTR_DSN, "4.3.0");
		ipc_put_str(s, ATTR_REASON, "queue file write error");
	}
	ipc_put_end(s);
	stream_flush(s);
	stream_free(s);
	_exit(ok ? 0 : 7);
}

static int
listen_cleanup(void)
{
	struct sockaddr_un sun;
	int lfd;

	unlink("private/cleanup");
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strcpy(sun.sun_path, "private/cleanup");
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(lfd, 4), 0);
	return lfd;
}

/* dsn_send: the notice reaches cleanup with <>, the BOUNCE flag, one recipient. */
static void
test_send(void **state)
{
	struct spec sp = { .rcpt = { "bob@example.com" }, .content = content1 };
	struct dsn_request r;
	struct queued q;
	struct buf err = BUF_INIT, built = BUF_INIT, sent = BUF_INIT;
	char new_id[QID_LEN + 1];
	int lfd, st;
	pid_t pid;
	FILE *f;
	char chunk[4096];
	size_t n;

	(void)state;
	queue_message(&sp, &q);
	request(&r, &q, DSN_FAILED, 50000);

	/* No cleanup listening: -1, and the caller keeps its bounce log. */
	unlink("private/cleanup");
	assert_int_equal(dsn_send(&r, new_id, &err), -1);
	assert_string_equal(new_id, "");
	assert_true(err.len > 0);

	lfd = listen_cleanup();
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		fake_cleanup(lfd, 0);
	assert_int_equal(dsn_send(&r, new_id, &err), 0);
	assert_string_equal(new_id, "1LG5ID3GHOE00IL0");
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	/* What cleanup got is a notice like dsn_build's (Date and Message-Id aside). */
	f = fopen("sent.eml", "rb");
	assert_non_null(f);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_append(&sent, chunk, n);
	fclose(f);
	assert_int_equal(dsn_build(&r, &built, &err), 0);
	assert_true(sent.len > 0);
	assert_non_null(strstr(buf_str(&sent), "Subject: Undelivered Mail Returned to Sender\n"));
	assert_non_null(strstr(buf_str(&sent), "\nFinal-Recipient: rfc822; bob@example.com\n"));

	/* cleanup refuses: -1 with its reason. */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		fake_cleanup(lfd, 4);
	assert_int_equal(dsn_send(&r, new_id, &err), -1);
	assert_non_null(strstr(buf_str(&err), "4.3.0"));
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	close(lfd);
	unlink("private/cleanup");
	unqueue(&q);
	buf_free(&err);
	buf_free(&built);
	buf_free(&sent);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_failed_full),
		cmocka_unit_test(test_headers_only),
		cmocka_unit_test(test_return_limit_edge),
		cmocka_unit_test(test_large_content),
		cmocka_unit_test(test_boundary_collision),
		cmocka_unit_test(test_8bit_content),
		cmocka_unit_test(test_hostile_reason),
		cmocka_unit_test(test_header_section_edges),
		cmocka_unit_test(test_smtputf8),
		cmocka_unit_test(test_bad_requests),
		cmocka_unit_test(test_send),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, setup, teardown);
}
