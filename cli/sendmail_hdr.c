/*
 * sendmail_hdr - what "sendmail -t" needs from a message header: the
 * recipients in To:, Cc: and Bcc:, and the header without Bcc:.  The
 * input is the user's own message, but it is still parsed with bounds:
 * a malformed address list yields fewer addresses, never a crash.
 */
#include "config.h"

#include <string.h>

#include "sendmail.h"
#include "str.h"

#define FIELD_NAME_MAX 64

size_t
sendmail_addresses(const char *v, struct buf *out)
{
	struct buf cur = BUF_INIT, angle = BUF_INIT;
	bool in_angle = false, saw_angle = false;
	size_t n = 0;
	int depth = 0;

	for (;; v++) {
		char c = *v;

		if (c == 0 || (depth == 0 && !in_angle && (c == ',' || c == ';'))) {
			/* the end of one mailbox: "Name <addr>" or a bare addr */
			struct buf *src = saw_angle ? &angle : &cur;
			char *a;

			buf_putc(src, 0);
			a = str_trim((char *)src->data);
			if (*a && strpbrk(a, " \t") == NULL) {
				buf_append(out, a, strlen(a) + 1);
				n++;
			}
			buf_reset(&cur);
			buf_reset(&angle);
			saw_angle = in_angle = false;
			if (c == 0)
				break;
			continue;
		}
		if (c == '"' && depth == 0) {
			/* a quoted string: copy it whole (it may be a local part) */
			const char *end = v + 1;

			while (*end && *end != '"') {
				if (*end == '\\' && end[1])
					end++;
				end++;
			}
			buf_append(in_angle ? &angle : &cur, v, (size_t)(end - v) + (*end ? 1 : 0));
			v = *end ? end : end - 1;
			continue;
		}
		if (c == '(') {
			depth++;
			continue;
		}
		if (c == ')' && depth > 0) {
			depth--;
			continue;
		}
		if (depth > 0)
			continue;
		if (c == ':' && !in_angle) {
			/* "group:" starts a group; what came before was its name */
			buf_reset(&cur);
			continue;
		}
		if (c == '<') {
			in_angle = saw_angle = true;
			buf_reset(&angle);
			continue;
		}
		if (c == '>' && in_angle) {
			in_angle = false;
			continue;
		}
		buf_putc(in_angle ? &angle : &cur, (unsigned char)c);
	}
	buf_free(&cur);
	buf_free(&angle);
	return n;
}

/* field_is - is the field at line named name (case-insensitive)? */
static bool
field_is(const char *line, size_t len, const char *name)
{
	size_t n = strlen(name);

	return len > n && line[n] == ':' && str_ncasecmp(line, name, n) == 0;
}

size_t
sendmail_extract(const char *h, size_t len, struct buf *out, struct buf *rcpts)
{
	const char *end = h + len, *p, *fstart, *fend;
	static const char *const normal[] = { "To", "Cc", "Bcc", NULL };
	static const char *const resent[] = { "Resent-To", "Resent-Cc", "Resent-Bcc", NULL };
	const char *const *want = normal;
	struct buf value = BUF_INIT;
	size_t n = 0, i, k;

	/* Any Resent- field means the Resent- recipients are the ones (RFC 5322 3.6.6). */
	for (p = h; p < end;
	     p = memchr(p, '\n', (size_t)(end - p)) ? (char *)memchr(p, '\n', (size_t)(end - p)) + 1 : end)
		if ((size_t)(end - p) > 7 && str_ncasecmp(p, "Resent-", 7) == 0)
			want = resent;
	for (p = h; p < end; p = fend) {
		/* one field: its first line and every continuation line */
		fstart = p;
		fend = p;
		do {
			const char *nl = memchr(fend, '\n', (size_t)(end - fend));

			fend = nl ? nl + 1 : end;
		} while (fend < end && (*fend == ' ' || *fend == '\t'));
		for (i = 0; want[i]; i++)
			if (field_is(fstart, (size_t)(fend - fstart), want[i]))
				break;
		if (want[i] != NULL) {
			const char *colon = memchr(fstart, ':', (size_t)(fend - fstart));

			buf_set(&value, colon + 1, (size_t)(fend - colon - 1));
			for (k = 0; k < value.len; k++)
				if (value.data[k] == '\n' || value.data[k] == '\r' || value.data[k] == '\t')
					value.data[k] = ' ';
			n += sendmail_addresses(buf_str(&value), rcpts);
			if (strstr(want[i], "Bcc") != NULL)
				continue; /* blind copies leave no trace in the header */
		}
		buf_append(out, fstart, (size_t)(fend - fstart));
	}
	buf_free(&value);
	return n;
}
