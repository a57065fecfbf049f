/*
 * smtp_mime - 8-bit content made 7-bit for a server that does not offer
 * 8BITMIME (RFC 6152: such a server must never see an 8-bit byte).
 *
 * Called by smtp_trans.c, once per message, on the whole content in
 * memory (the downgrade is rare: most servers offer 8BITMIME).  The
 * content is hostile input: every header section is bounded, nesting is
 * bounded, boundaries are found by scanning lines, never by trusting
 * lengths, and anything we cannot convert without changing what the
 * recipient reads (8-bit bytes in a header, in a preamble or a boundary
 * line, in a part that claims base64) makes the conversion fail: the
 * caller then bounces the mail rather than send raw 8-bit.
 *
 * A leaf part with 8-bit bytes in its body is re-encoded: text parts as
 * quoted-printable, anything else as base64, with its
 * Content-Transfer-Encoding header replaced; a part that already says
 * quoted-printable keeps its encoding and gets its stray 8-bit bytes
 * escaped.  Containers (multipart, message/rfc822) are walked and
 * their own 8bit/binary label becomes 7bit.  Everything without 8-bit
 * bytes is copied byte for byte.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "smtp.h"
#include "str.h"
#include "xalloc.h"

#define TYPE_MAX 128
#define QP_LINE  76

struct mime {
	struct buf *out;
	struct buf *why;
	int depth;
};

/* The header facts an entity's conversion needs. */
struct mime_hdr {
	char type[TYPE_MAX];    /* "text", "multipart", ... lower case; "" when absent */
	char subtype[TYPE_MAX]; /* "plain", "mixed", ... */
	struct buf boundary;
	char cte[TYPE_MAX]; /* "8bit", "base64", ...; "" when absent */
	bool has_ct, has_version;
};

static int entity(struct mime *m, const unsigned char *p, size_t n, bool top, bool digest_part);

static bool
has8(const unsigned char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] & 0x80)
			return true;
	return false;
}

static int
fail(struct mime *m, const char *why)
{
	if (buf_len(m->why) == 0)
		buf_puts(m->why, why);
	return -1;
}

/* utf8_valid - is p well-formed UTF-8 (no overlongs, no surrogates) */
static bool
utf8_valid(const unsigned char *p, size_t n)
{
	size_t i = 0, k, len;
	unsigned cp;

	while (i < n) {
		unsigned char c = p[i];

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			len = 2, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			len = 3, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			len = 4, cp = c & 0x07;
		else
			return false;
		if (i + len > n)
			return false;
		for (k = 1; k < len; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
		    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
			return false;
		i += len;
	}
	return true;
}

/* header_split - the header section's length (its lines) and whether an empty line follows */
static size_t
header_split(const unsigned char *p, size_t n, size_t *sep)
{
	size_t i = 0;
	const unsigned char *nl;

	*sep = 0;
	while (i < n) {
		if (p[i] == '\n') {
			*sep = 1;
			return i;
		}
		if ((nl = memchr(p + i, '\n', n - i)) == NULL)
			return n;
		i = (size_t)(nl - p) + 1;
	}
	return n;
}

/* field_end - where the header field starting at i ends (after its continuation lines) */
static size_t
field_end(const unsigned char *p, size_t n, size_t i)
{
	const unsigned char *nl;

	for (;;) {
		if ((nl = memchr(p + i, '\n', n - i)) == NULL)
			return n;
		i = (size_t)(nl - p) + 1;
		if (i >= n || (p[i] != ' ' && p[i] != '\t'))
			return i;
	}
}

/* field_is - does the field at p (len bytes) have this name; *value set after the colon */
static bool
field_is(const unsigned char *p, size_t len, const char *name, const unsigned char **value)
{
	size_t k = strlen(name), i = k;

	if (len <= k || str_ncasecmp((const char *)p, name, k) != 0)
		return false;
	while (i < len && (p[i] == ' ' || p[i] == '\t'))
		i++;
	if (i >= len || p[i] != ':')
		return false;
	*value = p + i + 1;
	return true;
}

/* unfold - a field value as one line into out: line breaks gone, comments removed */
static void
unfold(const unsigned char *v, const unsigned char *end, struct buf *out)
{
	int depth = 0;
	bool quoted = false;

	buf_reset(out);
	for (; v < end; v++) {
		unsigned char c = *v;

		if (c == '\r' || c == '\n')
			continue;
		if (quoted) {
			if (c == '\\' && v + 1 < end) {
				buf_putc(out, c);
				c = *++v;
			} else if (c == '"') {
				quoted = false;
			}
			buf_putc(out, c);
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
		if (c == '"')
			quoted = true;
		buf_putc(out, c == '\t' ? ' ' : c);
	}
}

/* token - the next token of s (lower-cased into out), skipping blanks; advances *sp */
static void
token(const char **sp, const char *stops, char *out, size_t len)
{
	const char *s = *sp;
	size_t k = 0;

	while (*s == ' ')
		s++;
	while (*s && *s != ' ' && !strchr(stops, *s)) {
		if (k + 1 < len)
			out[k++] = (char)(*s >= 'A' && *s <= 'Z' ? *s + 32 : *s);
		s++;
	}
	out[k] = 0;
	*sp = s;
}

/* ct_parse - type, subtype and boundary of a Content-Type value */
static void
ct_parse(const char *v, struct mime_hdr *h)
{
	char name[TYPE_MAX];
	const char *s = v;

	token(&s, "/;", h->type, sizeof(h->type));
	while (*s == ' ')
		s++;
	if (*s == '/') {
		s++;
		token(&s, ";", h->subtype, sizeof(h->subtype));
	}
	while ((s = strchr(s, ';')) != NULL) {
		s++;
		token(&s, "=;", name, sizeof(name));
		while (*s == ' ')
			s++;
		if (*s != '=')
			continue;
		s++;
		while (*s == ' ')
			s++;
		if (strcmp(name, "boundary") != 0) {
			continue;
		}
		buf_reset(&h->boundary);
		if (*s == '"') {
			for (s++; *s && *s != '"'; s++) {
				if (*s == '\\' && s[1])
					s++;
				buf_putc(&h->boundary, (unsigned char)*s);
			}
		} else {
			for (; *s && *s != ';' && *s != ' '; s++)
				buf_putc(&h->boundary, (unsigned char)*s);
		}
	}
}

/* hdr_parse - the MIME facts of a header section */
static void
hdr_parse(const unsigned char *p, size_t n, struct mime_hdr *h)
{
	struct buf v = BUF_INIT;
	const unsigned char *val;
	size_t i = 0, e;
	const char *s;

	memset(h, 0, sizeof(*h));
	while (i < n) {
		e = field_end(p, n, i);
		if (field_is(p + i, e - i, "Content-Type", &val)) {
			unfold(val, p + e, &v);
			h->has_ct = true;
			h->type[0] = h->subtype[0] = 0;
			ct_parse(buf_str(&v), h);
		} else if (field_is(p + i, e - i, "Content-Transfer-Encoding", &val)) {
			unfold(val, p + e, &v);
			s = buf_str(&v);
			token(&s, ";", h->cte, sizeof(h->cte));
		} else if (field_is(p + i, e - i, "MIME-Version", &val)) {
			h->has_version = true;
		}
		i = e;
	}
	buf_free(&v);
}

/* put_header - the header section without its Content-Transfer-Encoding fields, then extra lines */
static void
put_header(struct mime *m, const unsigned char *p, size_t n, const char *extra)
{
	const unsigned char *val;
	size_t i = 0, e;

	while (i < n) {
		e = field_end(p, n, i);
		if (!field_is(p + i, e - i, "Content-Transfer-Encoding", &val))
			buf_append(m->out, p + i, e - i);
		i = e;
	}
	if (n > 0 && p[n - 1] != '\n')
		buf_putc(m->out, '\n');
	buf_puts(m->out, extra);
	buf_putc(m->out, '\n'); /* the empty line */
}

static void
qp_encode(const unsigned char *p, size_t n, struct buf *out)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i, col = 0, len;
	bool enc;

	for (i = 0; i < n; i++) {
		unsigned char c = p[i];

		if (c == '\n') {
			buf_putc(out, '\n');
			col = 0;
			continue;
		}
		enc = !((c >= 33 && c <= 126 && c != '=') || c == ' ' || c == '\t');
		/* Blanks at the end of a line would be lost in transit. */
		if ((c == ' ' || c == '\t') && (i + 1 == n || p[i + 1] == '\n'))
			enc = true;
		len = enc ? 3 : 1;
		if (col + len > QP_LINE - 1) {
			buf_append(out, "=\n", 2);
			col = 0;
		}
		if (enc) {
			buf_putc(out, '=');
			buf_putc(out, hex[c >> 4]);
			buf_putc(out, hex[c & 15]);
		} else {
			buf_putc(out, c);
		}
		col += len;
	}
}

static void
b64_encode(const unsigned char *p, size_t n, struct buf *out)
{
	unsigned char line[QP_LINE + 4];
	size_t i, k;

	for (i = 0; i < n; i += k) {
		k = n - i < 57 ? n - i : 57; /* 57 bytes make a 76-character line */
		buf_append(out, line, (size_t)EVP_EncodeBlock(line, p + i, (int)k));
		buf_putc(out, '\n');
	}
}

/* qp_escape - a part that says quoted-printable: only its raw 8-bit bytes are escaped */
static void
qp_escape(const unsigned char *p, size_t n, struct buf *out)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i] & 0x80) {
			buf_putc(out, '=');
			buf_putc(out, hex[p[i] >> 4]);
			buf_putc(out, hex[p[i] & 15]);
		} else {
			buf_putc(out, p[i]);
		}
	}
}

/* delim - is the line at p (up to end) a delimiter for boundary b; *close for "--b--" */
static bool
delim(const unsigned char *p, const unsigned char *end, const struct buf *b, bool *close)
{
	size_t n = (size_t)(end - p), k = b->len;

	if (n < k + 2 || p[0] != '-' || p[1] != '-' || memcmp(p + 2, b->data, k) != 0)
		return false;
	p += k + 2;
	*close = p + 1 < end && p[0] == '-' && p[1] == '-';
	if (*close)
		p += 2;
	for (; p < end; p++)
		if (*p != ' ' && *p != '\t' && *p != '\r')
			return false;
	return true;
}

/* verbatim - copy bytes that must stay as they are; they must be 7-bit */
static int
verbatim(struct mime *m, const unsigned char *p, size_t n, const char *what)
{
	if (has8(p, n))
		return fail(m, what);
	buf_append(m->out, p, n);
	return 0;
}

/* multipart - walk the parts of body (boundary b) */
static int
multipart(struct mime *m, const unsigned char *body, size_t n, const struct buf *b, bool digest)
{
	const unsigned char *end = body + n, *line = body, *nl, *lend;
	const unsigned char *part = NULL; /* start of the current part's content */
	bool close = false, seen = false;

	while (line < end && !close) {
		nl = memchr(line, '\n', (size_t)(end - line));
		lend = nl ? nl : end;
		if (delim(line, lend, b, &close)) {
			const unsigned char *next = nl ? nl + 1 : end;

			if (!seen) {
				/* preamble and the first delimiter line */
				if (verbatim(m, body, (size_t)(next - body), "8-bit text in a MIME preamble") < 0)
					return -1;
				seen = true;
			} else {
				/* The line break before a delimiter belongs to the delimiter. */
				const unsigned char *pe = line > part && line[-1] == '\n' ? line - 1 : line;

				if (pe < part)
					pe = part;
				if (entity(m, part, (size_t)(pe - part), false, digest) < 0)
					return -1;
				if (verbatim(m, pe, (size_t)(next - pe), "8-bit text in a MIME boundary line") < 0)
					return -1;
			}
			part = next;
			line = next;
			continue;
		}
		line = nl ? nl + 1 : end;
	}
	if (!seen)
		return fail(m, "8-bit text in a multipart without its boundary");
	if (!close)
		return entity(
		    m, part, (size_t)(end - part), false, digest); /* unterminated: the rest is the last part */
	return verbatim(m, part, (size_t)(end - part), "8-bit text in a MIME epilogue");
}

static int
entity(struct mime *m, const unsigned char *p, size_t n, bool top, bool digest_part)
{
	struct mime_hdr h;
	size_t hlen, sep;
	const unsigned char *body;
	size_t blen;
	char extra[256];
	bool text;
	int rc = -1;

	if (!has8(p, n)) {
		buf_append(m->out, p, n);
		return 0;
	}
	if (++m->depth > SMTP_MIME_DEPTH_MAX) {
		m->depth--;
		return fail(m, "MIME nesting too deep to convert");
	}
	hlen = header_split(p, n, &sep);
	if (hlen > SMTP_MIME_HEADER_MAX) {
		rc = fail(m, "MIME header section too large to convert");
		goto out;
	}
	if (has8(p, hlen)) {
		rc = fail(m, "8-bit text in a message or MIME header");
		goto out;
	}
	body = p + hlen + sep;
	blen = n - hlen - sep;
	hdr_parse(p, hlen, &h);
	if (!h.has_ct) {
		strlcpy(h.type, digest_part ? "message" : "text", sizeof(h.type));
		strlcpy(h.subtype, digest_part ? "rfc822" : "plain", sizeof(h.subtype));
	}
	extra[0] = 0;
	if (top && !h.has_version)
		strlcat(extra, "MIME-Version: 1.0\n", sizeof(extra));
	if (strcmp(h.type, "multipart") == 0 && h.boundary.len > 0 && h.boundary.len <= 200) {
		if (strcmp(h.cte, "") != 0 && strcmp(h.cte, "7bit") != 0)
			strlcat(extra, "Content-Transfer-Encoding: 7bit\n", sizeof(extra));
		put_header(m, p, hlen, extra);
		rc = multipart(m, body, blen, &h.boundary, strcmp(h.subtype, "digest") == 0);
	} else if (strcmp(h.type, "message") == 0 && strcmp(h.subtype, "rfc822") == 0) {
		if (strcmp(h.cte, "") != 0 && strcmp(h.cte, "7bit") != 0)
			strlcat(extra, "Content-Transfer-Encoding: 7bit\n", sizeof(extra));
		put_header(m, p, hlen, extra);
		rc = entity(m, body, blen, true, false);
	} else if (strcmp(h.type, "multipart") == 0 || strcmp(h.type, "message") == 0) {
		rc = fail(m, "8-bit text in a MIME container that cannot be re-encoded");
	} else if (strcmp(h.cte, "base64") == 0) {
		rc = fail(m, "8-bit bytes in a base64 MIME part");
	} else if (strcmp(h.cte, "quoted-printable") == 0) {
		buf_append(m->out, p, hlen + sep);
		qp_escape(body, blen, m->out);
		rc = 0;
	} else {
		text = strcmp(h.type, "text") == 0;
		if (!h.has_ct)
			strlcat(extra,
			    utf8_valid(body, blen) ? "Content-Type: text/plain; charset=utf-8\n"
			                           : "Content-Type: text/plain; charset=unknown-8bit\n",
			    sizeof(extra));
		strlcat(extra,
		    text ? "Content-Transfer-Encoding: quoted-printable\n" : "Content-Transfer-Encoding: base64\n",
		    sizeof(extra));
		put_header(m, p, hlen, extra);
		if (text)
			qp_encode(body, blen, m->out);
		else
			b64_encode(body, blen, m->out);
		rc = 0;
	}
	buf_free(&h.boundary);
out:
	m->depth--;
	return rc;
}

int
smtp_mime_downgrade(const unsigned char *p, size_t n, struct buf *out, struct buf *why)
{
	struct mime m;

	buf_reset(out);
	memset(&m, 0, sizeof(m));
	m.out = out;
	m.why = why;
	buf_reset(why);
	if (n > SMTP_DOWNGRADE_MAX) {
		buf_puts(why, "message too large to convert to 7-bit");
		return -1;
	}
	return entity(&m, p, n, true, false);
}
