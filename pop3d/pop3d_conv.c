/*
 * pop3d_conv - a Maildir file as POP3 sends it: every LF becomes CRLF, a
 * line that starts with "." is byte-stuffed (RFC 1939 3), and for TOP
 * the output stops after the header, the empty line that ends it, and
 * the first n lines of the body.
 *
 * Maildir files hold lines ended by LF, as local(8) writes them from the
 * queue (where smtpd stored each CRLF as LF); a CR left before an LF was
 * part of the line's content and is sent as such.  That is also how local
 * computes the ,W= size in a file's name: the file's size plus one byte
 * per LF.  pop3_crlf_size() counts the same way, for names without W=;
 * it is the size LIST, STAT and "+OK n octets" give (RFC 1939: the
 * stuffing and the final "." are not counted).
 *
 * Called by the mailbox part's RETR and TOP with chunks of the file as
 * they are read (no whole-file loads), so the state of the current line
 * is carried across chunk boundaries: a "." that starts a chunk after a
 * line end is stuffed, one in the middle of a line is not.  The file is
 * the mailbox owner's and may hold any bytes; nothing here depends on it
 * being well formed.
 */
#include "config.h"

#include <string.h>

#include "pop3d.h"

void
pop3_conv_init(struct pop3_conv *cv, long long max_lines)
{
	memset(cv, 0, sizeof(*cv));
	cv->max_lines = max_lines;
	/* TOP n 0 after an empty header still ends at the empty line. */
}

/* line_end - the current line ended with LF; true when the TOP limit is reached */
static bool
line_end(struct pop3_conv *cv)
{
	bool empty = cv->line_len == 0 || (cv->line_len == 1 && cv->last_cr);

	cv->line_len = 0;
	cv->last_cr = false;
	if (!cv->in_body) {
		if (empty) {
			cv->in_body = true;
			return cv->max_lines == 0;
		}
		return false;
	}
	cv->body_lines++;
	return cv->max_lines >= 0 && cv->body_lines >= cv->max_lines;
}

size_t
pop3_conv_feed(struct pop3_conv *cv, const unsigned char *in, size_t n, struct buf *out)
{
	size_t pos = 0, seg;
	const unsigned char *nl;

	if (cv->done)
		return 0;
	/* Room for the worst case (every byte a line end: two out) once, not per line. */
	buf_reserve(out, 2 * n + 2);
	while (pos < n) {
		if (cv->line_len == 0 && in[pos] == '.')
			buf_putc(out, '.');
		nl = memchr(in + pos, '\n', n - pos);
		seg = nl != NULL ? (size_t)(nl - (in + pos)) : n - pos;
		if (seg > 0) {
			buf_append(out, in + pos, seg);
			cv->last_cr = in[pos + seg - 1] == '\r';
			cv->line_len = cv->line_len + seg < cv->line_len ? (size_t)-1 : cv->line_len + seg;
		}
		pos += seg;
		if (nl == NULL)
			break;
		buf_append(out, "\r\n", 2);
		pos++;
		if (line_end(cv)) {
			cv->done = true;
			break;
		}
	}
	return pos;
}

void
pop3_conv_finish(struct pop3_conv *cv, struct buf *out)
{
	/* A last line without its line end still has to end before the ".". */
	if (cv->line_len > 0 && !cv->done)
		buf_append(out, "\r\n", 2);
	buf_append(out, ".\r\n", 3);
	cv->line_len = 0;
	cv->last_cr = false;
}

long long
pop3_crlf_size(const unsigned char *in, size_t n)
{
	long long size = (long long)n;
	const unsigned char *p = in, *end = in + n, *nl;

	while (p < end && (nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		size++;
		p = nl + 1;
	}
	return size;
}
