/*
 * fuzz_smtp_content - what the smtp client sends after DATA
 * (smtp/smtp_content.c) and the 8-bit downgrade it applies for servers
 * without 8BITMIME (smtp/smtp_mime.c, the header and MIME parser).
 *
 * Input: one byte (piece size; whether to downgrade), then a stored
 * message (LF line ends).  Properties: on the wire there is no bare CR
 * or LF (the SMTP smuggling lesson: a relay must never pass on a
 * non-standard end of data), no line is a lone "." before the end, and
 * the end is exactly CRLF "." CRLF; a downgraded message is 7-bit.
 */
#include "config.h"

#include "fuzz.h"
#include "smtp.h"

static void
wire_check(const struct buf *out)
{
	size_t i;

	FUZZ_ASSERT(out->len >= 3 && memcmp(out->data + out->len - 3, ".\r\n", 3) == 0);
	FUZZ_ASSERT(
	    out->len == 3 || (out->len >= 5 && out->data[out->len - 5] == '\r' && out->data[out->len - 4] == '\n'));
	for (i = 0; i < out->len; i++) {
		if (out->data[i] == '\n')
			FUZZ_ASSERT(i > 0 && out->data[i - 1] == '\r');
		if (out->data[i] == '\r')
			FUZZ_ASSERT(i + 1 < out->len && out->data[i + 1] == '\n');
	}
	for (i = 0; i + 3 < out->len; i++)
		if (i == 0 || out->data[i - 1] == '\n')
			FUZZ_ASSERT(!(out->data[i] == '.' && out->data[i + 1] == '\r'));
}

static void
send_it(const unsigned char *p, size_t n, size_t piece)
{
	struct smtp_wstate w;
	struct buf out = BUF_INIT;
	size_t k;

	smtp_content_init(&w, 998);
	while (n > 0) {
		k = n < piece ? n : piece;
		smtp_content_put(&w, p, k, &out);
		p += k;
		n -= k;
	}
	smtp_content_end(&w, &out);
	wire_check(&out);
	buf_free(&out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf down = BUF_INIT, why = BUF_INIT;
	size_t i;

	fuzz_quiet();
	if (size < 1)
		return 0;
	send_it(data + 1, size - 1, 1 + (data[0] >> 1));
	if (data[0] & 1) {
		if (smtp_mime_downgrade(data + 1, size - 1, &down, &why) == 0) {
			for (i = 0; i < down.len; i++)
				FUZZ_ASSERT(down.data[i] < 0x80);
			send_it(down.data, down.len, 4096);
		} else {
			FUZZ_ASSERT(why.len > 0);
		}
	}
	buf_free(&down);
	buf_free(&why);
	return 0;
}
