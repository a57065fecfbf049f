/*
 * smtp_reply - reading what an SMTP server says.
 *
 * Called by the session and transaction code after every command.  The
 * server is hostile: a line is kept up to SMTP_REPLY_LINE_MAX bytes and
 * the rest of it skipped (up to SMTP_REPLY_SKIP_MAX), a reply has at
 * most SMTP_REPLY_LINES_MAX lines, every line must carry the first
 * line's code, and the caller's deadline bounds the whole reply, so a
 * server that trickles lines or never sends a last line times out.  NUL,
 * CR and other control bytes never reach a reason: the text kept for
 * logs and DSNs is printable ASCII, at most SMTP_REPLY_TEXT_MAX bytes.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "smtp.h"
#include "str.h"
#include "xalloc.h"

void
smtp_reply_init(struct smtp_reply *r)
{
	memset(r, 0, sizeof(*r));
}

void
smtp_reply_free(struct smtp_reply *r)
{
	buf_free(&r->text);
	buf_free(&r->lines);
}

int
smtp_reply_parse_line(const char *line, size_t len, int *code, bool *last, size_t *text_off)
{
	if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' || line[2] < '0' ||
	    line[2] > '9')
		return -1;
	*code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (len == 3) {
		*last = true;
		*text_off = 3;
		return 0;
	}
	if (line[3] != ' ' && line[3] != '-')
		return -1;
	*last = line[3] == ' ';
	*text_off = 4;
	return 0;
}

/* digits - 1 to 3 digits at p: how many, else 0 */
static size_t
digits(const char *p)
{
	size_t n = 0;

	while (n < 4 && p[n] >= '0' && p[n] <= '9')
		n++;
	return n >= 1 && n <= 3 ? n : 0;
}

size_t
smtp_dsn_prefix(const char *text, int cls)
{
	size_t off = 0, d;

	if (text[0] != '0' + cls || text[1] != '.')
		return 0;
	off = 2;
	if ((d = digits(text + off)) == 0 || text[off + d] != '.')
		return 0;
	off += d + 1;
	if ((d = digits(text + off)) == 0)
		return 0;
	off += d;
	return text[off] == 0 || text[off] == ' ' ? off : 0;
}

/* put_printable - append at most room bytes of p as printable ASCII */
static void
put_printable(struct buf *out, const char *p, size_t n, size_t max)
{
	size_t i;

	for (i = 0; i < n && out->len < max; i++) {
		unsigned char c = (unsigned char)p[i];

		buf_putc(out, c < 0x20 || c == 0x7f ? ' ' : c >= 0x80 ? '?' : c);
	}
}

/* malformed - "malformed reply: TEXT" into why */
static int
malformed(struct buf *why, const char *what, const char *line, size_t len)
{
	if (why) {
		buf_reset(why);
		buf_printf(why, "%s: \"", what);
		put_printable(why, line, len, why->len + 100);
		buf_putc(why, '"');
	}
	return STREAM_TOOLONG;
}

int
smtp_reply_read(struct stream *s, struct smtp_reply *r, struct buf *why)
{
	struct buf line = BUF_INIT;
	size_t nlines = 0, off, len, i;
	bool last = false;
	int rc, code, first = 0;

	buf_reset(&r->text);
	buf_reset(&r->lines);
	r->code = 0;
	r->dsn[0] = 0;
	while (!last) {
		rc = stream_getline(s, &line, SMTP_REPLY_LINE_MAX);
		if (rc == STREAM_TOOLONG) {
			/* Keep what we have of the line; the rest goes unread. */
			if ((rc = stream_skipline(s, SMTP_REPLY_SKIP_MAX)) != STREAM_OK) {
				if (rc == STREAM_TOOLONG)
					rc = malformed(why, "reply line too long", (char *)line.data, 40);
				goto out;
			}
		} else if (rc != STREAM_OK) {
			goto out;
		} else if (line.len == 0 || line.data[line.len - 1] != '\n') {
			rc = STREAM_EOF; /* the connection ended inside a line */
			goto out;
		}
		len = line.len;
		while (len > 0 && (line.data[len - 1] == '\n' || line.data[len - 1] == '\r'))
			len--;
		/* A NUL would end the text early: it is a blank like any control byte. */
		for (i = 0; i < len; i++)
			if (line.data[i] == 0)
				line.data[i] = ' ';
		line.data[len] = 0;
		if (smtp_reply_parse_line((char *)line.data, len, &code, &last, &off) < 0) {
			rc = malformed(why, "malformed reply", (char *)line.data, len);
			goto out;
		}
		if (nlines == 0) {
			first = code;
			buf_printf(&r->text, "%d", code);
		} else if (code != first) {
			rc = malformed(why, "reply lines with different codes", (char *)line.data, len);
			goto out;
		}
		if (len > off) {
			buf_putc(&r->text, ' ');
			put_printable(&r->text, (char *)line.data + off, len - off, SMTP_REPLY_TEXT_MAX);
		}
		put_printable(&r->lines, (char *)line.data + off, len - off, (size_t)-1);
		buf_putc(&r->lines, '\n');
		if (!last && ++nlines >= SMTP_REPLY_LINES_MAX) {
			if (why) {
				buf_reset(why);
				buf_printf(why, "reply has more than %d lines", SMTP_REPLY_LINES_MAX);
			}
			rc = STREAM_TOOLONG;
			goto out;
		}
	}
	r->code = first;
	{
		const char *t = buf_str(&r->text) + 3;
		size_t d;

		t += *t == ' ';
		if ((d = smtp_dsn_prefix(t, first / 100)) > 0 && d < sizeof(r->dsn)) {
			memcpy(r->dsn, t, d);
			r->dsn[d] = 0;
		} else {
			snprintf(r->dsn, sizeof(r->dsn), "%d.0.0", first / 100);
		}
	}
	rc = STREAM_OK;
out:
	buf_free(&line);
	return rc;
}

/* kw - does the EHLO line start with keyword (case-insensitive) followed by the end, a space or '=' */
static bool
kw(const char *line, size_t len, const char *keyword, const char **rest)
{
	size_t k = strlen(keyword);

	if (len < k || str_ncasecmp(line, keyword, k) != 0 || (len > k && line[k] != ' ' && line[k] != '='))
		return false;
	*rest = line + k + (len > k);
	return true;
}

/* auth_mechs - PLAIN and LOGIN among the words of s (up to end) */
static unsigned
auth_mechs(const char *s, const char *end)
{
	unsigned m = 0;
	size_t n;

	while (s < end) {
		while (s < end && (*s == ' ' || *s == '='))
			s++;
		for (n = 0; s + n < end && s[n] != ' '; n++)
			;
		if (n == 5 && str_ncasecmp(s, "PLAIN", 5) == 0)
			m |= SMTP_AUTH_PLAIN;
		else if (n == 5 && str_ncasecmp(s, "LOGIN", 5) == 0)
			m |= SMTP_AUTH_LOGIN;
		s += n;
	}
	return m;
}

unsigned
smtp_ehlo_parse(const char *lines, long long *size_max, unsigned *mechs)
{
	const char *p = lines, *nl, *rest;
	unsigned f = SMTP_FEAT_ESMTP;
	char num[24];
	long long v;
	size_t len;
	bool first = true;

	*size_max = 0;
	*mechs = 0;
	for (; *p; p = nl + 1) {
		if ((nl = strchr(p, '\n')) == NULL)
			break;
		len = (size_t)(nl - p);
		if (first) {
			first = false; /* the server's name and greeting */
			continue;
		}
		if (kw(p, len, "PIPELINING", &rest))
			f |= SMTP_FEAT_PIPELINING;
		else if (kw(p, len, "8BITMIME", &rest))
			f |= SMTP_FEAT_8BITMIME;
		else if (kw(p, len, "SMTPUTF8", &rest))
			f |= SMTP_FEAT_SMTPUTF8;
		else if (kw(p, len, "DSN", &rest))
			f |= SMTP_FEAT_DSN;
		else if (kw(p, len, "STARTTLS", &rest))
			f |= SMTP_FEAT_STARTTLS;
		else if (kw(p, len, "AUTH", &rest)) {
			f |= SMTP_FEAT_AUTH;
			*mechs |= auth_mechs(rest, nl);
		} else if (kw(p, len, "SIZE", &rest)) {
			f |= SMTP_FEAT_SIZE;
			len = (size_t)(nl - rest);
			if (rest < nl && len < sizeof(num)) {
				memcpy(num, rest, len);
				num[len] = 0;
				if (str_to_ll(str_trim(num), 0, 1LL << 50, &v, NULL) == 0)
					*size_max = v;
			}
		}
	}
	return f;
}

void
smtp_said(const struct smtp_session *ss, const struct smtp_reply *r, const char *stage, struct buf *why)
{
	buf_reset(why);
	buf_printf(why, "host %s[%s] said: %s (in reply to %s)", ss->host, ss->addr, buf_str(&r->text), stage);
}

void
smtp_io_reason(const struct smtp_session *ss, int status, const char *stage, struct buf *why)
{
	char *detail;

	if (status == STREAM_TOOLONG) {
		/* smtp_reply_read left the detail in why. */
		detail = xstrdup(buf_str(why));
		buf_reset(why);
		buf_printf(why, "protocol error from %s[%s] while %s: %s", ss->host, ss->addr, stage,
		    *detail ? detail : "malformed reply");
		free(detail);
		return;
	}
	buf_reset(why);
	if (status == STREAM_TIMEOUT)
		buf_printf(why, "conversation with %s[%s] timed out while %s", ss->host, ss->addr, stage);
	else
		buf_printf(why, "lost connection with %s[%s] while %s", ss->host, ss->addr, stage);
}
