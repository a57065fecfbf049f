/*
 * smtp_content - the message content as it goes on the wire.
 *
 * Called by smtp_trans.c with the stored content (doc/queue-format.md 7:
 * LF line ends, no dot-stuffing), chunk by chunk, and by smtp_deliver.c
 * to scan a message before it is sent.  The content is input from the
 * queue and may hold anything: bare CR, NUL, lines of any length.  What
 * goes out obeys RFC 5321 whatever it holds, so that Postern can never
 * be the relay that smuggles a second message past a filter:
 *
 *   - every line ends in CRLF and no CR or LF appears anywhere else: a
 *     stored LF becomes CRLF, a CR before LF is dropped (CR CR LF stays
 *     one line end), and any other CR is a line end of its own;
 *   - a line that starts with "." gets another (dot-stuffing);
 *   - a line longer than smtp_line_length_limit is broken by inserting
 *     CRLF and a space (a header folding; in a body it starts a
 *     continuation line), as Postfix does;
 *   - the content ends with CRLF "." CRLF.
 */
#include "config.h"

#include <string.h>

#include "log.h"
#include "smtp.h"

void
smtp_content_init(struct smtp_wstate *w, size_t limit)
{
	memset(w, 0, sizeof(*w));
	w->bol = true;
	w->limit = limit;
}

/* newline - end the current output line */
static void
newline(struct smtp_wstate *w, struct buf *out)
{
	buf_append(out, "\r\n", 2);
	w->col = 0;
	w->bol = true;
}

void
smtp_content_put(struct smtp_wstate *w, const unsigned char *p, size_t n, struct buf *out)
{
	size_t i, run;

	buf_reserve(out, n + n / 64 + 8);
	for (i = 0; i < n; i++) {
		unsigned char c = p[i];

		if (w->cr) {
			w->cr = false;
			if (c != '\n')
				newline(w, out); /* a bare CR ends its line */
		}
		if (c == '\n') {
			newline(w, out);
			continue;
		}
		if (c == '\r') {
			w->cr = true;
			continue;
		}
		if (w->bol && c == '.') {
			buf_putc(out, '.');
			w->col++;
		}
		w->bol = false;
		if (w->col >= w->limit) {
			buf_append(out, "\r\n ", 3);
			w->col = 1;
			w->broken++;
		}
		/* The common case: a run of plain bytes that fits on the line. */
		for (run = 1; i + run < n && w->col + run < w->limit && p[i + run] != '\n' && p[i + run] != '\r'; run++)
			;
		buf_append(out, p + i, run);
		w->col += run;
		i += run - 1;
	}
}

void
smtp_content_end(struct smtp_wstate *w, struct buf *out)
{
	if (w->cr) {
		w->cr = false;
		newline(w, out);
	}
	if (!w->bol)
		newline(w, out);
	buf_append(out, ".\r\n", 3);
}

/* ascii - true when s has no byte with the high bit set */
static bool
ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return false;
	return true;
}

int
smtp_msg_scan(struct smtp_msg *m, struct buf *err)
{
	struct buf chunk = BUF_INIT;
	off_t pos = m->content_offset;
	bool header = true, bol = true;
	uint64_t lines = 0;
	size_t i;
	int r;

	m->has_8bit = m->hdr_8bit = false;
	while ((r = qfile_content_next(m->fd, &pos, &chunk, err)) > 0) {
		for (i = 0; i < chunk.len; i++) {
			unsigned char c = chunk.data[i];

			if (c == '\n') {
				lines++;
				if (bol)
					header = false; /* the empty line after the header */
				bol = true;
				continue;
			}
			bol = false;
			if (c >= 0x80) {
				m->has_8bit = true;
				if (header)
					m->hdr_8bit = true;
			}
		}
	}
	buf_free(&chunk);
	if (r < 0)
		return -1;
	/* RFC 1870: an estimate; CRLF for LF, a little for dot-stuffing. */
	m->wire_size = m->content_size + lines + 3;
	m->need_utf8 = !ascii(m->req->sender);
	for (i = 0; i < m->req->nrcpts && !m->need_utf8; i++)
		m->need_utf8 = !ascii(m->req->rcpts[i].addr);
	if (m->smtputf8 && m->hdr_8bit)
		m->need_utf8 = true;
	return 0;
}
