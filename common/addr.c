/*
 * addr - parse and rebuild mail addresses (see addr.h).
 *
 * smtpd calls addr_parse_path() on every MAIL FROM and RCPT TO; cleanup,
 * local and the sendmail front take stored addresses apart with
 * addr_split().  The path text comes straight from the network: every
 * byte is checked against the RFC 5321 grammar (RFC 6531 for UTF-8),
 * every length is bounded, and nothing is copied out until the whole
 * path has been accepted.  addr_split() and addr_join() trust that their
 * input went through addr_parse_path() only as far as quoting goes; they
 * never interpret any other character.
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "addr.h"
#include "str.h"

#define ADDR_LABEL_MAX   63 /* RFC 1035 2.3.4 */
#define ADDR_LITERAL_MAX 64 /* "[IPv6:" + the longest IPv6 text fits easily */

/* One pass over the path: where we are, what is allowed, why we stopped. */
struct scan {
	const unsigned char *p;
	int flags;
	const char *why;
};

static bool
is_alpha(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
is_digit(int c)
{
	return c >= '0' && c <= '9';
}

/* RFC 5322 atext (ASCII only; callers handle bytes >= 0x80). */
static bool
is_atext(int c)
{
	return is_alpha(c) || is_digit(c) || (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

static bool
is_ctrl(int c)
{
	return c < 32 || c == 127;
}

/* utf8_seq - length of the well-formed UTF-8 character at p (p[0] >= 0x80), or 0 */
static size_t
utf8_seq(const unsigned char *p)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n, i;

	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		n = 2;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		n = 3;
		if (p[0] == 0xe0)
			lo = 0xa0; /* overlong */
		else if (p[0] == 0xed)
			hi = 0x9f; /* UTF-16 surrogates */
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		n = 4;
		if (p[0] == 0xf0)
			lo = 0x90; /* overlong */
		else if (p[0] == 0xf4)
			hi = 0x8f; /* beyond U+10FFFF */
	} else {
		return 0; /* a continuation byte, C0/C1 overlongs, F5..FF */
	}
	/* Each test stops at the first bad byte, so the NUL is never passed. */
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

static bool
fail(struct scan *sp, const char *why)
{
	sp->why = why;
	return false;
}

/* scan_utf8 - step over one non-ASCII character, if SMTPUTF8 allows it */
static bool
scan_utf8(struct scan *sp)
{
	size_t n;

	if (!(sp->flags & ADDR_UTF8))
		return fail(sp, "Non-ASCII address without SMTPUTF8");
	if ((n = utf8_seq(sp->p)) == 0)
		return fail(sp, "Invalid UTF-8 in address");
	sp->p += n;
	return true;
}

/* The reason for stopping at c when something else was expected. */
static const char *
stop_why(int c, const char *end_why, const char *other_why)
{
	if (c == 0 || c == '>')
		return end_why;
	if (is_ctrl(c))
		return "Control character in address";
	if (c == '"')
		return "Unbalanced quotes";
	return other_why;
}

/* scan_dot_string - Dot-string: atoms of atext separated by single dots */
static bool
scan_dot_string(struct scan *sp)
{
	const unsigned char *start = sp->p;
	bool atom = false; /* the current atom has at least one character */

	for (;;) {
		int c = *sp->p;

		if (c >= 0x80) {
			if (!scan_utf8(sp))
				return false;
			atom = true;
		} else if (is_atext(c)) {
			sp->p++;
			atom = true;
		} else if (c == '.') {
			if (sp->p == start)
				return fail(sp, "Local part starts with a dot");
			if (!atom)
				return fail(sp, "Consecutive dots in local part");
			sp->p++;
			atom = false;
		} else {
			break;
		}
	}
	if (sp->p == start)
		return fail(sp, stop_why(*sp->p, "Empty local part", "Bad character in local part"));
	if (!atom)
		return fail(sp, "Local part ends with a dot");
	return true;
}

/* scan_quoted - Quoted-string, with qtextSMTP and quoted-pairSMTP */
static bool
scan_quoted(struct scan *sp)
{
	const unsigned char *start = sp->p++;

	for (;;) {
		int c = *sp->p;

		if (c == '"')
			break;
		if (c == 0)
			return fail(sp, "Unbalanced quotes");
		if (c == '\\') {
			c = sp->p[1];
			if (c == 0)
				return fail(sp, "Unbalanced quotes");
			if (c < 32 || c > 126)
				return fail(sp, "Bad quoted character in local part");
			sp->p += 2;
		} else if (c >= 0x80) {
			if (!scan_utf8(sp))
				return false;
		} else if (is_ctrl(c)) {
			return fail(sp, "Control character in address");
		} else {
			sp->p++;
		}
	}
	sp->p++;
	if (sp->p - start == 2)
		return fail(sp, "Empty local part");
	return true;
}

/* literal_tag_ok - a General-address-literal's Standardized-tag (Ldh-str) */
static bool
literal_tag_ok(const char *tag, size_t len)
{
	size_t i;

	if (len == 0 || tag[len - 1] == '-')
		return false;
	for (i = 0; i < len; i++)
		if (!is_alpha(tag[i]) && !is_digit(tag[i]) && tag[i] != '-')
			return false;
	return true;
}

/* scan_literal - "[" IPv4 / "IPv6:" IPv6 / tag ":" dcontent "]" */
static bool
scan_literal(struct scan *sp)
{
	const unsigned char *q = sp->p + 1;
	char text[ADDR_LITERAL_MAX + 1];
	unsigned char bin[sizeof(struct in6_addr)];
	const char *colon;
	size_t n;
	bool ok;

	/* dcontent is %d33-90 / %d94-126: no brackets, no backslash. */
	for (; *q != ']'; q++) {
		if (*q == 0)
			return fail(sp, "Unterminated address literal");
		if (*q < 33 || *q > 126 || *q == '[' || *q == '\\')
			return fail(sp, "Bad address literal");
		if ((size_t)(q - sp->p) > ADDR_LITERAL_MAX)
			return fail(sp, "Bad address literal");
	}
	n = (size_t)(q - sp->p - 1);
	memcpy(text, sp->p + 1, n);
	text[n] = 0;
	if ((colon = strchr(text, ':')) == NULL)
		ok = inet_pton(AF_INET, text, bin) == 1;
	else if (colon - text == 4 && str_ncasecmp(text, "IPv6", 4) == 0)
		ok = inet_pton(AF_INET6, colon + 1, bin) == 1;
	else
		ok = literal_tag_ok(text, (size_t)(colon - text)) && colon[1] != 0;
	if (!ok)
		return fail(sp, "Bad address literal");
	sp->p = q + 1;
	return true;
}

/* scan_domain - Domain or address-literal; stops at the first byte that cannot continue it */
static bool
scan_domain(struct scan *sp)
{
	const unsigned char *start = sp->p, *label;
	bool hyphen;

	if (*sp->p == '[')
		return scan_literal(sp);
	for (;;) {
		label = sp->p;
		hyphen = false;
		for (;;) {
			int c = *sp->p;

			if (c >= 0x80) {
				if (!scan_utf8(sp))
					return false;
				hyphen = false;
			} else if (is_alpha(c) || is_digit(c)) {
				sp->p++;
				hyphen = false;
			} else if (c == '-') {
				if (sp->p == label)
					return fail(sp, "Domain label starts with a hyphen");
				sp->p++;
				hyphen = true;
			} else {
				break;
			}
			if (sp->p - label > ADDR_LABEL_MAX)
				return fail(sp, "Domain label too long");
		}
		if (sp->p == label) {
			if (label != start || *sp->p == '.')
				return fail(sp, "Empty domain label");
			return fail(sp, stop_why(*sp->p, "Missing domain", "Bad character in domain"));
		}
		if (hyphen)
			return fail(sp, "Domain label ends with a hyphen");
		if (sp->p - start > ADDR_DOMAIN_MAX)
			return fail(sp, "Domain too long");
		if (*sp->p != '.')
			return true;
		sp->p++;
	}
}

/* scan_route - A-d-l ":" (RFC 5321 4.1.2), checked and then ignored */
static bool
scan_route(struct scan *sp)
{
	for (;;) {
		if (*sp->p != '@')
			return fail(sp, "Bad source route");
		sp->p++;
		if (!scan_domain(sp))
			return false;
		if (*sp->p == ':') {
			sp->p++;
			return true;
		}
		if (*sp->p != ',')
			return fail(sp, "Bad source route");
		sp->p++;
	}
}

/* Does the path end here (">" in brackets, a space or the end when bare)? */
static bool
path_ends(const unsigned char *p, bool angle)
{
	return angle ? *p == '>' : (*p == 0 || *p == ' ');
}

int
addr_parse_path(const char *s, int flags, struct buf *out, const char **end, const char **why)
{
	struct scan sc = { (const unsigned char *)s, flags, NULL };
	const unsigned char *local, *local_end, *domain = NULL, *domain_end = NULL;
	bool angle = false;
	size_t off;

	buf_reset(out);
	if (*sc.p == '<') {
		angle = true;
		sc.p++;
	} else if (!(flags & ADDR_BARE_OK)) {
		*why = *sc.p == 0 ? "Missing address" : "Missing angle brackets";
		return -1;
	}
	if (angle && *sc.p == '>') {
		if (!(flags & ADDR_NULL_OK)) {
			*why = "Null address not allowed";
			return -1;
		}
		buf_reserve(out, 0);
		*end = (const char *)sc.p + 1;
		return 0;
	}
	if (*sc.p == '@' && !scan_route(&sc))
		goto bad;
	local = sc.p;
	if ((flags & ADDR_LOCAL_OK) && str_ncasecmp((const char *)local, "postmaster", 10) == 0 &&
	    path_ends(local + 10, angle)) {
		sc.p += 10;
		local_end = sc.p;
	} else {
		if (*sc.p == '"' ? !scan_quoted(&sc) : !scan_dot_string(&sc))
			goto bad;
		local_end = sc.p;
		if (*sc.p != '@') {
			sc.why = stop_why(*sc.p, "Missing domain", "Bad character in local part");
			goto bad;
		}
		domain = ++sc.p;
		if (!scan_domain(&sc))
			goto bad;
		domain_end = sc.p;
	}
	if (!path_ends(sc.p, angle)) {
		if (*sc.p == 0)
			sc.why = "Missing \">\"";
		else
			sc.why = is_ctrl(*sc.p) ? "Control character in address" : "Bad character in domain";
		goto bad;
	}
	if (angle)
		sc.p++;
	if (!(flags & ADDR_LONG_LOCAL) && local_end - local > ADDR_LOCAL_MAX) {
		sc.why = "Local part too long";
		goto bad;
	}
	if (sc.p - (const unsigned char *)s > ADDR_PATH_MAX) {
		sc.why = "Address too long";
		goto bad;
	}
	buf_append(out, local, (size_t)(local_end - local));
	if (domain) {
		buf_putc(out, '@');
		off = out->len;
		buf_append(out, domain, (size_t)(domain_end - domain));
		str_lower((char *)out->data + off);
	}
	*end = (const char *)sc.p;
	return 0;
bad:
	*why = sc.why;
	return -1;
}

bool
addr_domain_valid(const char *domain, bool utf8)
{
	struct scan sc = { (const unsigned char *)domain, utf8 ? ADDR_UTF8 : 0, NULL };

	return scan_domain(&sc) && *sc.p == 0;
}

bool
addr_is_literal(const char *domain)
{
	return domain[0] == '[';
}

bool
addr_domain_fqdn(const char *domain)
{
	const char *dot;

	if (addr_is_literal(domain))
		return true; /* an address literal needs no qualification */
	dot = strchr(domain, '.');
	return dot != NULL && dot != domain && dot[1] != 0;
}

/*
 * last_at - the last '@' outside quotes and outside an address literal
 * (or NULL); *ok is false when quoting is broken.  A literal's dcontent
 * may hold '@' ("user@[tag:a@b]"), and '[' cannot appear unquoted in a
 * local part, so an unquoted '[' starts the domain's literal.
 */
static const char *
last_at(const char *s, bool *ok)
{
	const char *at = NULL;
	bool quoted = false;

	*ok = false;
	for (; *s; s++) {
		if (quoted && *s == '\\') {
			if (*++s == 0)
				return NULL;
		} else if (*s == '"') {
			quoted = !quoted;
		} else if (*s == '[' && !quoted) {
			if ((s = strchr(s, ']')) == NULL)
				break;
		} else if (*s == '@' && !quoted) {
			at = s;
		}
	}
	*ok = !quoted;
	return at;
}

int
addr_split(const char *addr, struct buf *local, struct buf *domain)
{
	const char *at, *lend, *p;
	bool ok;

	buf_reset(local);
	buf_reset(domain);
	buf_reserve(local, 0);
	buf_reserve(domain, 0);
	at = last_at(addr, &ok);
	if (!ok || (at && (at == addr || at[1] == 0)))
		return -1;
	lend = at ? at : addr + strlen(addr);
	if (*addr == '"') {
		/* One quoted string and nothing else before the '@'. */
		for (p = addr + 1; p < lend && *p != '"'; p++) {
			if (*p == '\\')
				p++;
			buf_putc(local, *p);
		}
		if (p != lend - 1) {
			buf_reset(local);
			return -1;
		}
	} else {
		if (memchr(addr, '"', (size_t)(lend - addr)) != NULL)
			return -1;
		buf_append(local, addr, (size_t)(lend - addr));
	}
	if (at) {
		buf_puts(domain, at + 1);
		str_lower((char *)domain->data);
	}
	return 0;
}

const char *
addr_domain(const char *addr)
{
	bool ok;
	const char *at = last_at(addr, &ok);

	return ok && at ? at + 1 : NULL;
}

/* Can this local part go out without quotes (a dot-atom; UTF-8 counts as atext)? */
static bool
is_dot_atom(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	bool atom = false;

	if (*p == 0)
		return false;
	for (; *p; p++) {
		if (*p == '.') {
			if (!atom)
				return false;
			atom = false;
		} else if (*p >= 0x80 || is_atext(*p)) {
			atom = true;
		} else {
			return false;
		}
	}
	return atom;
}

void
addr_join(struct buf *out, const char *local, const char *domain)
{
	const char *p;
	size_t off;

	buf_reset(out);
	buf_reserve(out, strlen(local) + strlen(domain) + 3);
	if (is_dot_atom(local)) {
		buf_puts(out, local);
	} else if (*local || *domain) {
		buf_putc(out, '"');
		for (p = local; *p; p++) {
			if (*p == '\\' || *p == '"')
				buf_putc(out, '\\');
			buf_putc(out, *p);
		}
		buf_putc(out, '"');
	}
	if (*domain) {
		buf_putc(out, '@');
		off = out->len;
		buf_puts(out, domain);
		str_lower((char *)out->data + off);
	}
}

void
addr_printable(struct buf *out, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i;

	buf_reset(out);
	buf_reserve(out, len);
	for (i = 0; i < len; i++) {
		if (p[i] >= 32 && p[i] < 127)
			buf_putc(out, p[i]);
		else
			buf_printf(out, "\\x%02x", p[i]);
	}
}
