/*
 * fuzz_smtp_reply - the SMTP client's reply reader (smtp/smtp_reply.c):
 * what a remote server, or a man in the middle before STARTTLS, says to
 * the smtp client.  OpenSMTPD's CVE-2020-8794 began in this place: a
 * multi-line reply that ended oddly put a newline into the envelope.
 *
 * Input: one byte (the piece size the stream hands out), then a stream
 * of replies.  Properties: a reply that is read has a code 200..599 and
 * a text that is printable and bounded (it goes into logs, DSNs and the
 * queue's defer logs); a broken reply is refused with a reason; the EHLO
 * keyword parser copes with any text.
 */
#include "config.h"

#include "fuzz.h"
#include "smtp.h"

#define REPLIES_MAX 64

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_mem mem;
	struct stream *s;
	struct smtp_reply r;
	struct buf why = BUF_INIT;
	long long size_max;
	unsigned mechs, feats;
	size_t i, off;
	int code, k, st;
	bool last;
	char *line;

	fuzz_quiet();
	if (size < 1)
		return 0;
	mem.p = data + 1;
	mem.len = size - 1;
	mem.pos = 0;
	mem.piece = 1 + data[0];
	s = fuzz_stream(&mem);
	smtp_reply_init(&r);
	for (k = 0; k < REPLIES_MAX; k++) {
		buf_reset(&why);
		st = smtp_reply_read(s, &r, &why);
		if (st != STREAM_OK) {
			FUZZ_ASSERT(
			    st == STREAM_EOF || st == STREAM_TOOLONG || st == STREAM_ERROR || st == STREAM_TIMEOUT);
			if (st == STREAM_TOOLONG)
				FUZZ_ASSERT(why.len > 0);
			break;
		}
		FUZZ_ASSERT(r.code >= 200 && r.code <= 599);
		FUZZ_ASSERT(strlen(buf_str(&r.text)) == r.text.len);
		for (i = 0; i < r.text.len; i++)
			FUZZ_ASSERT(r.text.data[i] >= 0x20 && r.text.data[i] < 0x7f);
		FUZZ_ASSERT(r.dsn[0] == '0' + r.code / 100);
		feats = smtp_ehlo_parse(buf_str(&r.lines), &size_max, &mechs);
		FUZZ_ASSERT(!(feats & SMTP_FEAT_SIZE) || size_max >= 0);
	}
	smtp_reply_free(&r);
	stream_free(s);

	/* The line parser alone, on the input as one line. */
	line = fuzz_str(data + 1, size - 1);
	if (smtp_reply_parse_line(line, size - 1, &code, &last, &off) == 0) {
		FUZZ_ASSERT(code >= 200 && code <= 599);
		FUZZ_ASSERT(off <= size - 1);
	}
	(void)smtp_dsn_prefix(line, 2 + data[0] % 4);
	free(line);
	buf_free(&why);
	return 0;
}
