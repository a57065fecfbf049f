/*
 * fuzz_cleanup_header - cleanup's content machine
 * (cleanup/cleanup_message.c): the header watcher that every message
 * passes on its way into the queue, fed in pieces split anywhere.
 *
 * Input: two option bytes (add missing fields; the piece size; a small
 * or large header limit), then the content.  Properties: without added
 * fields the stored bytes are the input, plus a final newline when it
 * had none; a failure is a proper status; the Message-ID kept for the
 * log is printable and bounded; the result does not depend on where the
 * pieces were split.
 */
#include "config.h"

#include "cleanup.h"
#include "fuzz.h"

static int
collect(void *arg, const unsigned char *p, size_t n)
{
	buf_append(arg, p, n);
	return 0;
}

/* run - the whole content through the machine in pieces of at most piece bytes; the status */
static int
run(const struct cleanup_msg_conf *conf, const uint8_t *p, size_t n, size_t piece, struct buf *out, struct buf *id)
{
	struct cleanup_msg m;
	struct cleanup_status st;
	int r = 0, status;
	size_t k;

	cleanup_status_init(&st);
	cleanup_msg_init(&m, conf, collect, out);
	while (n > 0 && r == 0) {
		k = n < piece ? n : piece;
		r = cleanup_msg_feed(&m, p, k, &st);
		p += k;
		n -= k;
	}
	if (r == 0)
		r = cleanup_msg_finish(&m, &st);
	FUZZ_ASSERT((r == 0) == (st.status == CLEANUP_STAT_OK));
	if (r < 0) {
		FUZZ_ASSERT(st.status == CLEANUP_STAT_PERM || st.status == CLEANUP_STAT_TEMP);
		FUZZ_ASSERT(st.dsn != NULL && st.dsn[0] == '0' + st.status);
	} else {
		const char *msgid = cleanup_msg_id(&m);

		FUZZ_ASSERT(strlen(msgid) <= CLEANUP_MSGID_MAX);
		for (; *msgid; msgid++)
			FUZZ_ASSERT(*msgid >= 0x20 && *msgid < 0x7f);
		buf_strcpy(id, cleanup_msg_id(&m));
	}
	status = st.status;
	cleanup_msg_free(&m);
	cleanup_status_free(&st);
	return status;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cleanup_msg_conf conf;
	struct buf a = BUF_INIT, b = BUF_INIT, ida = BUF_INIT, idb = BUF_INIT;
	size_t piece;
	int sa, sb;

	fuzz_quiet();
	if (size < 2)
		return 0;
	memset(&conf, 0, sizeof(conf));
	conf.add_missing = data[0] & 1;
	conf.header_size_limit = (data[0] & 2) ? 1024 : 102400;
	conf.message_size_limit = (data[0] & 4) ? 4096 : 0;
	conf.hopcount_limit = 5;
	conf.myhostname = "mail.example.test";
	conf.queue_id = "0123456789ABCDEF";
	conf.sender = (data[0] & 8) ? "" : "sender@example.org";
	conf.now = 1700000000;
	piece = 1 + data[1];
	data += 2;
	size -= 2;

	sa = run(&conf, data, size, piece, &a, &ida);
	sb = run(&conf, data, size, size ? size : 1, &b, &idb);
	/* One piece or many: the same verdict; the same bytes unless a random Message-ID was added. */
	FUZZ_ASSERT(sa == sb);
	if (sa == CLEANUP_STAT_OK && !conf.add_missing) {
		FUZZ_ASSERT(a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0));
		FUZZ_ASSERT(strcmp(buf_str(&ida), buf_str(&idb)) == 0);
		/* Nothing added: the input, and a final newline when it had none. */
		FUZZ_ASSERT(a.len == size + (size > 0 && data[size - 1] != '\n'));
		FUZZ_ASSERT(size == 0 || memcmp(a.data, data, size) == 0);
	}
	if (sa == CLEANUP_STAT_OK && conf.add_missing) {
		FUZZ_ASSERT(a.len == b.len);
		FUZZ_ASSERT(a.len >= size);
	}
	buf_free(&a);
	buf_free(&b);
	buf_free(&ida);
	buf_free(&idb);
	return 0;
}
