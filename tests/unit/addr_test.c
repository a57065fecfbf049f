/*
 * addr_test - RFC 5321 paths: valid and hostile forms, every flag, length
 * limits, UTF-8 edge cases, split/join round trips, and every byte value
 * at every position of a few paths.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "buf.h"

#define N        ADDR_NULL_OK
#define U        ADDR_UTF8
#define B        ADDR_BARE_OK
#define L        ADDR_LOCAL_OK
#define LL       ADDR_LONG_LOCAL
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

#define CTRL    "Control character in address"
#define BADUTF8 "Invalid UTF-8 in address"
#define NOUTF8  "Non-ASCII address without SMTPUTF8"
#define BADLIT  "Bad address literal"
#define BADDOM  "Bad character in domain"
#define BADLOC  "Bad character in local part"

struct path_case {
	const char *in;
	int flags;
	const char *want; /* external form, or NULL when refused */
	const char *rest; /* success: what follows the path; failure: the reason */
};

static const struct path_case path_cases[] = {
	/* ordinary paths */
	{ "<user@example.com>", 0, "user@example.com", "" },
	{ "<User.Name@Example.COM>", 0, "User.Name@example.com", "" },
	{ "<user@example.com> SIZE=100", 0, "user@example.com", " SIZE=100" },
	{ "<user@example.com>junk", 0, "user@example.com", "junk" },
	{ "<a@b>", 0, "a@b", "" },
	{ "<1@2.3.4.5>", 0, "1@2.3.4.5", "" },
	{ "<a-b@a-b.c-d>", 0, "a-b@a-b.c-d", "" },
	{ "<a@xn--bcher-kva.example>", 0, "a@xn--bcher-kva.example", "" },
	{ "<a+tag@example.com>", 0, "a+tag@example.com", "" },
	{ "<!#$%&'*+-/=?^_`{|}~@example.com>", 0, "!#$%&'*+-/=?^_`{|}~@example.com", "" },
	/* metacharacters are plain atext */
	{ "<$(id)|`x`@example.com>", 0, NULL, BADLOC },
	{ "<${HOME}|`x`{{y}}@example.com>", 0, "${HOME}|`x`{{y}}@example.com", "" },
	{ "<a;b@example.com>", 0, NULL, BADLOC },
	{ "<\"a;b|c$d\"@example.com>", 0, "\"a;b|c$d\"@example.com", "" },
	/* null path */
	{ "<>", N, "", "" },
	{ "<> BODY=8BITMIME", N, "", " BODY=8BITMIME" },
	{ "<>", 0, NULL, "Null address not allowed" },
	{ "<>", B | L | U, NULL, "Null address not allowed" },
	/* quoted local parts */
	{ "<\"john doe\"@example.com>", 0, "\"john doe\"@example.com", "" },
	{ "<\"a\\\"b\"@example.com>", 0, "\"a\\\"b\"@example.com", "" },
	{ "<\"a\\\\b\"@example.com>", 0, "\"a\\\\b\"@example.com", "" },
	{ "<\"\\ \"@example.com>", 0, "\"\\ \"@example.com", "" },
	{ "<\"<>()[]:;,@ !\"@example.com>", 0, "\"<>()[]:;,@ !\"@example.com", "" },
	{ "<\"\"@example.com>", 0, NULL, "Empty local part" },
	{ "<\"abc@x>", 0, NULL, "Unbalanced quotes" },
	{ "<abc\"@x>", 0, NULL, "Unbalanced quotes" },
	{ "<a\"b\"@x>", 0, NULL, "Unbalanced quotes" },
	{ "<\"a\"\"b\"@x>", 0, NULL, "Unbalanced quotes" },
	{ "<\"a\" b@x>", 0, NULL, BADLOC },
	{ "<\"a\\", 0, NULL, "Unbalanced quotes" },
	{ "<\"a\\\x01\"@x>", 0, NULL, "Bad quoted character in local part" },
	{ "<\"a\rb\"@x>", 0, NULL, CTRL },
	{ "<\"a\x7f\"@x>", 0, NULL, CTRL },
	{ "<\"a\tb\"@x>", 0, NULL, CTRL },
	/* relay tricks parse as ordinary addresses at the last unquoted '@' */
	{ "<user%other@ours.example>", 0, "user%other@ours.example", "" },
	{ "<other!user@ours.example>", 0, "other!user@ours.example", "" },
	{ "<\"user@other\"@ours.example>", 0, "\"user@other\"@ours.example", "" },
	{ "<a@b@c>", 0, NULL, BADDOM },
	/* source routes are checked and dropped */
	{ "<@a:b@c>", 0, "b@c", "" },
	{ "<@a.example,@b.example:user@c.example>", 0, "user@c.example", "" },
	{ "<@[192.0.2.1]:u@c.example>", 0, "u@c.example", "" },
	{ "<@example.com>", 0, NULL, "Bad source route" },
	{ "<@a.example:>", 0, NULL, "Empty local part" },
	{ "<@a.example user@b>", 0, NULL, "Bad source route" },
	{ "<@a.example,user@b>", 0, NULL, "Bad source route" },
	{ "<@:a@b>", 0, NULL, BADDOM },
	{ "<@a..b:c@d>", 0, NULL, "Empty domain label" },
	/* postmaster */
	{ "<postmaster>", L, "postmaster", "" },
	{ "<PostMaster>", L, "PostMaster", "" },
	{ "<postmaster@example.com>", L, "postmaster@example.com", "" },
	{ "<postmaster>", 0, NULL, "Missing domain" },
	{ "<postmasterx>", L, NULL, "Missing domain" },
	{ "<postmaste>", L, NULL, "Missing domain" },
	{ "<postmaster >", L, NULL, BADLOC },
	{ "postmaster", B | L, "postmaster", "" },
	{ "postmaster x", B | L, "postmaster", " x" },
	/* brackets */
	{ "user@example.com", 0, NULL, "Missing angle brackets" },
	{ "", 0, NULL, "Missing address" },
	{ "", B, NULL, "Empty local part" },
	{ "<", 0, NULL, "Empty local part" },
	{ "<user@example.com", 0, NULL, "Missing \">\"" },
	{ "<<user@example.com>>", 0, NULL, BADLOC },
	{ "user@example.com", B, "user@example.com", "" },
	{ "user@example.com SIZE=5", B, "user@example.com", " SIZE=5" },
	{ "\"a b\"@example.com x", B, "\"a b\"@example.com", " x" },
	{ "<user@example.com>", B, "user@example.com", "" },
	{ "user@example.com>", B, NULL, BADDOM },
	{ "user@example.com\t", B, NULL, CTRL },
	{ "user", B, NULL, "Missing domain" },
	{ "\"a b@x", B, NULL, "Unbalanced quotes" },
	/* local part syntax */
	{ "<user>", 0, NULL, "Missing domain" },
	{ "<.a@x>", 0, NULL, "Local part starts with a dot" },
	{ "<a..b@x>", 0, NULL, "Consecutive dots in local part" },
	{ "<a.@x>", 0, NULL, "Local part ends with a dot" },
	{ "<a b@x>", 0, NULL, BADLOC },
	{ "<a,b@x>", 0, NULL, BADLOC },
	{ "<(comment)a@x>", 0, NULL, BADLOC },
	{ "<a\tb@x>", 0, NULL, CTRL },
	{ "<a\rb@x>", 0, NULL, CTRL },
	{ "<a\nb@x>", 0, NULL, CTRL },
	{ "<a\r\n@x>", 0, NULL, CTRL },
	{ "<a\x01@x>", 0, NULL, CTRL },
	{ "<a\x1b@x>", 0, NULL, CTRL },
	{ "<a\x7f@x>", 0, NULL, CTRL },
	/* domain syntax */
	{ "<user@>", 0, NULL, "Missing domain" },
	{ "<a@x..y>", 0, NULL, "Empty domain label" },
	{ "<a@x.>", 0, NULL, "Empty domain label" },
	{ "<a@.x>", 0, NULL, "Empty domain label" },
	{ "<a@-x.y>", 0, NULL, "Domain label starts with a hyphen" },
	{ "<a@x-.y>", 0, NULL, "Domain label ends with a hyphen" },
	{ "<a@x.y->", 0, NULL, "Domain label ends with a hyphen" },
	{ "<a@a--b.example>", 0, "a@a--b.example", "" },
	{ "<a@b_c>", 0, NULL, BADDOM },
	{ "<a@_b>", 0, NULL, BADDOM },
	{ "<a@x\r>", 0, NULL, CTRL },
	{ "<a@x\n>", 0, NULL, CTRL },
	{ "<a@x y>", 0, NULL, BADDOM },
	/* address literals */
	{ "<user@[192.0.2.1]>", 0, "user@[192.0.2.1]", "" },
	{ "<user@[IPv6:2001:DB8::1]>", 0, "user@[ipv6:2001:db8::1]", "" },
	{ "<user@[ipv6:::1]>", 0, "user@[ipv6:::1]", "" },
	{ "<user@[IPv6:::ffff:192.0.2.1]>", 0, "user@[ipv6:::ffff:192.0.2.1]", "" },
	{ "<user@[x-tag:Some=Thing]>", 0, "user@[x-tag:some=thing]", "" },
	{ "<a@[1.2.3]>", 0, NULL, BADLIT },
	{ "<a@[256.1.1.1]>", 0, NULL, BADLIT },
	{ "<a@[1.2.3.4.5]>", 0, NULL, BADLIT },
	{ "<a@[IPv6:1::2::3]>", 0, NULL, BADLIT },
	{ "<a@[IPv6:1.2.3.4]>", 0, NULL, BADLIT },
	{ "<a@[IPv4:1.2.3.4:5]>", 0, "a@[ipv4:1.2.3.4:5]", "" },
	/* a General-address-literal by the grammar (tag "2001"), not IPv6 */
	{ "<a@[2001:db8::1]>", 0, "a@[2001:db8::1]", "" },
	{ "<a@[]>", 0, NULL, BADLIT },
	{ "<a@[:x]>", 0, NULL, BADLIT },
	{ "<a@[tag:]>", 0, NULL, BADLIT },
	{ "<a@[tag-:x]>", 0, NULL, BADLIT },
	{ "<a@[a b]>", 0, NULL, BADLIT },
	{ "<a@[a\\]b]>", 0, NULL, BADLIT },
	{ "<a@[a[b]>", 0, NULL, BADLIT },
	{ "<a@[1.2.3.4>", 0, NULL, "Unterminated address literal" },
	{ "<a@[1.2.3.4]x>", 0, NULL, BADDOM },
	{ "<a@[1.2.3.4].example>", 0, NULL, BADDOM },
	{ "<a@[1.2.3.4\r]>", 0, NULL, BADLIT },
	/* UTF-8 (RFC 6531) */
	{ "<\xc3\xbcser@b\xc3\xbc"
	  "cher.example>",
	    U,
	    "\xc3\xbcser@b\xc3\xbc"
	    "cher.example",
	    "" },
	{ "<a@B\xc3\x9c"
	  "CHER.Example>",
	    U,
	    "a@b\xc3\x9c"
	    "cher.example",
	    "" },
	{ "<\"\xc3\xbc ser\"@x.example>", U, "\"\xc3\xbc ser\"@x.example", "" },
	{ "<a\xc2\x80@x>", U, "a\xc2\x80@x", "" },
	{ "<a\xdf\xbf@x>", U, "a\xdf\xbf@x", "" },
	{ "<a\xe0\xa0\x80@x>", U, "a\xe0\xa0\x80@x", "" },
	{ "<a\xed\x9f\xbf@x>", U, "a\xed\x9f\xbf@x", "" },
	{ "<a\xee\x80\x80@x>", U, "a\xee\x80\x80@x", "" },
	{ "<a\xef\xbf\xbf@x>", U, "a\xef\xbf\xbf@x", "" },
	{ "<a\xf0\x90\x80\x80@x>", U, "a\xf0\x90\x80\x80@x", "" },
	{ "<a\xf4\x8f\xbf\xbf@x>", U, "a\xf4\x8f\xbf\xbf@x", "" },
	{ "<\xc3\xbcser@example.com>", 0, NULL, NOUTF8 },
	{ "<a@b\xc3\xbc.example>", 0, NULL, NOUTF8 },
	{ "<\"\xc3\xbc\"@x>", 0, NULL, NOUTF8 },
	{ "<@b\xc3\xbc:a@x>", 0, NULL, NOUTF8 },
	{ "<a\xc0\xaf@x>", U, NULL, BADUTF8 },
	{ "<a\xc1\xbf@x>", U, NULL, BADUTF8 },
	{ "<a\xe0\x80\xaf@x>", U, NULL, BADUTF8 },
	{ "<a\xe0\x9f\xbf@x>", U, NULL, BADUTF8 },
	{ "<a\xf0\x80\x80\xaf@x>", U, NULL, BADUTF8 },
	{ "<a\xf0\x8f\xbf\xbf@x>", U, NULL, BADUTF8 },
	{ "<a\xed\xa0\x80@x>", U, NULL, BADUTF8 },
	{ "<a\xed\xbf\xbf@x>", U, NULL, BADUTF8 },
	{ "<a\xf4\x90\x80\x80@x>", U, NULL, BADUTF8 },
	{ "<a\xf5\x80\x80\x80@x>", U, NULL, BADUTF8 },
	{ "<a\xf8\x88\x80\x80\x80@x>", U, NULL, BADUTF8 },
	{ "<a\x80@x>", U, NULL, BADUTF8 },
	{ "<a\xbf@x>", U, NULL, BADUTF8 },
	{ "<a\xc3@x>", U, NULL, BADUTF8 },
	{ "<a\xe2\x82@x>", U, NULL, BADUTF8 },
	{ "<a\xf0\x9f\x98@x>", U, NULL, BADUTF8 },
	{ "<a\xc3\xc3\xbc@x>", U, NULL, BADUTF8 },
	{ "<a\xff@x>", U, NULL, BADUTF8 },
	{ "<a\xfe@x>", U, NULL, BADUTF8 },
	{ "<a@\xc3x>", U, NULL, BADUTF8 },
	{ "<a@x\xed\xa0\x80>", U, NULL, BADUTF8 },
	{ "<\"\xc0\x80\"@x>", U, NULL, BADUTF8 },
	{ "<\"\\\xc3\xbc\"@x>", U, NULL, "Bad quoted character in local part" },
	{ "<a@[\xc3\xbc]>", U, NULL, BADLIT },
};

static void
test_paths(void **state)
{
	struct buf out = BUF_INIT;
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(path_cases); i++) {
		const struct path_case *c = &path_cases[i];
		const char *end = NULL, *why = NULL;
		int r;

		buf_strcpy(&out, "stale");
		r = addr_parse_path(c->in, c->flags, &out, &end, &why);
		if (c->want) {
			if (r != 0)
				fail_msg("case %zu \"%s\": refused (%s)", i, c->in, why);
			if (strcmp(buf_str(&out), c->want) != 0)
				fail_msg("case %zu \"%s\": got \"%s\" want \"%s\"", i, c->in, buf_str(&out), c->want);
			if (strcmp(end, c->rest) != 0)
				fail_msg("case %zu \"%s\": rest \"%s\" want \"%s\"", i, c->in, end, c->rest);
		} else {
			if (r != -1)
				fail_msg("case %zu \"%s\": accepted as \"%s\"", i, c->in, buf_str(&out));
			if (why == NULL || strcmp(why, c->rest) != 0)
				fail_msg(
				    "case %zu \"%s\": why \"%s\" want \"%s\"", i, c->in, why ? why : "(null)", c->rest);
		}
	}
	buf_free(&out);
}

/* Parse s with flags; return the external form (static) or the reason prefixed by "!". */
static const char *
try_path(const char *s, int flags)
{
	static struct buf out = BUF_INIT;
	static char res[256];
	const char *end, *why;

	if (addr_parse_path(s, flags, &out, &end, &why) < 0) {
		snprintf(res, sizeof(res), "!%s", why);
		return res;
	}
	if (*end != 0)
		return "!unexpected rest";
	snprintf(res, sizeof(res), "%zu", out.len);
	return res;
}

static char *
make(const char *pre, int fill, size_t n, const char *post)
{
	size_t a = strlen(pre), c = strlen(post);
	char *s = malloc(a + n + c + 1);

	assert_non_null(s);
	memcpy(s, pre, a);
	memset(s + a, fill, n);
	memcpy(s + a + n, post, c + 1);
	return s;
}

static void
check_len(const char *pre, int fill, size_t n, const char *post, int flags, const char *want)
{
	char *s = make(pre, fill, n, post);
	const char *got = try_path(s, flags);

	if (strcmp(got, want) != 0)
		fail_msg("%s[%c x %zu]%s flags %#x: got \"%s\" want \"%s\"", pre, fill, n, post, flags, got, want);
	free(s);
}

static void
test_lengths(void **state)
{
	char dom[300], *p;
	int i;

	(void)state;
	/* local part: 64 bytes as written */
	check_len("<", 'a', 64, "@x>", 0, "66");
	check_len("<", 'a', 65, "@x>", 0, "!Local part too long");
	check_len("<", 'a', 65, "@x>", LL, "67");
	check_len("<\"", 'a', 62, "\"@x>", 0, "66");
	check_len("<\"", 'a', 63, "\"@x>", 0, "!Local part too long");
	check_len("", 'a', 65, "@x", B, "!Local part too long");
	/* whole path: 512 bytes with brackets */
	check_len("<", 'a', 508, "@x>", LL, "510");
	check_len("<", 'a', 509, "@x>", LL, "!Address too long");
	/* labels: 63 */
	check_len("<a@", 'b', 63, ">", 0, "65");
	check_len("<a@", 'b', 64, ">", 0, "!Domain label too long");
	check_len("<a@x.", 'b', 64, ".y>", 0, "!Domain label too long");
	/* domain: 255 */
	p = dom;
	for (i = 0; i < 4; i++) {
		memset(p, 'a' + i, 63);
		p += 63;
		*p++ = '.';
	}
	p[-1] = 0; /* 4 x 63 + 3 dots = 255 */
	assert_int_equal(strlen(dom), 255);
	check_len("<a@", 'x', 0, dom, 0, "!Missing \">\"");
	{
		char buf[300];

		snprintf(buf, sizeof(buf), "<a@%s>", dom);
		assert_string_equal(try_path(buf, 0), "257");
		assert_true(addr_domain_valid(dom, false));
		dom[254] = 0;
		snprintf(buf, sizeof(buf), "<a@%s.z>", dom); /* 256 */
		assert_string_equal(try_path(buf, 0), "!Domain too long");
		snprintf(buf, sizeof(buf), "%s.z", dom);
		assert_false(addr_domain_valid(buf, false));
	}
	{
		/* two valid 254-byte hops make a path over 512 */
		struct buf r = BUF_INIT;

		buf_printf(&r, "<@%s,@%s:a@x>", dom, dom);
		assert_string_equal(try_path(buf_str(&r), 0), "!Address too long");
		buf_free(&r);
	}
	/* 10 KiB inputs of every shape */
	check_len("<", 'a', 10240, "@x>", 0, "!Local part too long");
	check_len("<", 'a', 10240, "@x>", LL, "!Address too long");
	check_len("", 'a', 10240, "@x", B | LL, "!Address too long");
	check_len("<\"", ' ', 10240, "\"@x>", 0, "!Local part too long");
	check_len("<\"", 'a', 10240, "", 0, "!Unbalanced quotes");
	check_len("<a@", 'b', 10240, ">", 0, "!Domain label too long");
	check_len("<a@[", '1', 10240, "]>", 0, "!" BADLIT);
	check_len("<", '<', 10240, "", 0, "!" BADLOC);
	check_len("<", '.', 10240, "", 0, "!Local part starts with a dot");
	check_len("<a@", '.', 10240, "", 0, "!Empty domain label");
	check_len("<", '\x80', 10240, "@x>", U, "!" BADUTF8);
	check_len("<", '\x01', 10240, "@x>", 0, "!" CTRL);
	check_len("<", '@', 10240, "", 0, "!" BADDOM);
	check_len("<a@", '-', 10240, ">", 0, "!Domain label starts with a hyphen");
	{
		/* "a.a.a...": a long domain of short labels */
		char *s = make("<a@", 'a', 10241, ">");

		for (i = 4; i < 10240; i += 2)
			s[i] = '.';
		assert_string_equal(try_path(s, 0), "!Domain too long");
		free(s);
	}
	{
		/* a long source route of short hops */
		struct buf r = BUF_INIT;

		buf_puts(&r, "<");
		for (i = 0; i < 3500; i++)
			buf_puts(&r, "@r,");
		buf_puts(&r, "@r:u@x>");
		assert_string_equal(try_path(buf_str(&r), 0), "!Address too long");
		buf_free(&r);
	}
	{
		/* UTF-8 4-byte characters fill a local part quickly */
		char s[512] = "<";

		for (i = 0; i < 16; i++)
			strcat(s, "\xf0\x9f\x98\x80");
		strcat(s, "@x>");
		assert_string_equal(try_path(s, U), "66");
		s[strlen(s) - 3] = 0;
		strcat(s, "a@x>");
		assert_string_equal(try_path(s, U), "!Local part too long");
	}
}

/* Every byte value at every position: no crash, and what is accepted is clean and stable. */
static void
test_every_byte(void **state)
{
	static const char *bases[] = {
		"<\"a b\"@[1.2.3.4]>",
		"<@r.example,@s:user.name@sub.example.com> X",
		"<postmaster>",
		"<>",
		"<u@[IPv6:::1]>",
		"user@example.com z",
		"<\xc3\xbc@b\xc3\xbc.x>",
	};
	static const int flagsets[] = { 0, N | L, B, U, N | U | B | L | LL };
	struct buf out = BUF_INIT, again = BUF_INIT, tmp = BUF_INIT;
	char s[128], wrapped[600];
	size_t bi, pos, fi, k, len;
	int c;

	(void)state;
	for (bi = 0; bi < NELEM(bases); bi++) {
		len = strlen(bases[bi]);
		for (pos = 0; pos < len; pos++) {
			for (c = 1; c < 256; c++) {
				memcpy(s, bases[bi], len + 1);
				s[pos] = (char)c;
				for (fi = 0; fi < NELEM(flagsets); fi++) {
					int f = flagsets[fi];
					const char *end = NULL, *why = NULL;

					if (addr_parse_path(s, f, &out, &end, &why) < 0) {
						assert_non_null(why);
						assert_true(why[0] != 0);
						continue;
					}
					assert_true(end > s && end <= s + len);
					for (k = 0; k < out.len; k++) {
						assert_true(out.data[k] >= 32 && out.data[k] != 127);
						assert_true(out.data[k] < 0x80 || (f & U));
					}
					if (out.len == 0)
						continue;
					/* The external form parses back to itself. */
					snprintf(wrapped, sizeof(wrapped), "<%s>", buf_str(&out));
					if (addr_parse_path(wrapped, f | L, &again, &end, &why) < 0)
						fail_msg("\"%s\" -> \"%s\" refused: %s", s, wrapped, why);
					assert_string_equal(buf_str(&again), buf_str(&out));
					if (memchr(out.data, '@', out.len))
						assert_int_equal(addr_split(buf_str(&out), &tmp, &again), 0);
				}
			}
		}
	}
	buf_free(&out);
	buf_free(&again);
	buf_free(&tmp);
}

static void
test_domains(void **state)
{
	static const struct {
		const char *d;
		bool utf8, valid, literal, fqdn;
	} cases[] = {
		{ "example.com", false, true, false, true },
		{ "EXAMPLE.COM", false, true, false, true },
		{ "a", false, true, false, false },
		{ "localhost", false, true, false, false },
		{ "[192.0.2.1]", false, true, true, true },
		{ "[IPv6:::1]", false, true, true, true },
		{ "[1.2.3]", false, false, true, true },
		{ "a..b", false, false, false, true },
		{ "", false, false, false, false },
		{ "a.", false, false, false, false },
		{ ".a", false, false, false, false },
		{ "-a.b", false, false, false, true },
		{ "a-.b", false, false, false, true },
		{ "b\xc3\xbc"
		  "cher.de",
		    false, false, false, true },
		{ "b\xc3\xbc"
		  "cher.de",
		    true, true, false, true },
		{ "b\xc3"
		  "cher.de",
		    true, false, false, true },
		{ "a b", false, false, false, false },
		{ "a_b.c", false, false, false, true },
		{ "[1.2.3.4]x", false, false, true, true },
		{ "a@b", false, false, false, false },
		{ "a.b\n", false, false, false, true },
	};
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(cases); i++) {
		if (addr_domain_valid(cases[i].d, cases[i].utf8) != cases[i].valid)
			fail_msg("case %zu \"%s\": valid is not %d", i, cases[i].d, cases[i].valid);
		assert_int_equal(addr_is_literal(cases[i].d), cases[i].literal);
		if (addr_domain_fqdn(cases[i].d) != cases[i].fqdn)
			fail_msg("case %zu \"%s\": fqdn is not %d", i, cases[i].d, cases[i].fqdn);
	}
}

struct split_case {
	const char *addr;
	int ok;
	const char *local, *domain;
	const char *dpart; /* addr_domain() */
};

static const struct split_case split_cases[] = {
	{ "user@example.com", 0, "user", "example.com", "example.com" },
	{ "User@EXAMPLE.com", 0, "User", "example.com", "EXAMPLE.com" },
	{ "\"john doe\"@example.com", 0, "john doe", "example.com", "example.com" },
	{ "\"a\\\"b\"@x", 0, "a\"b", "x", "x" },
	{ "\"a\\\\b\"@x", 0, "a\\b", "x", "x" },
	{ "\"user@other\"@ours", 0, "user@other", "ours", "ours" },
	{ "\"a\\\"@x\"@y", 0, "a\"@x", "y", "y" },
	{ "user%other@ours", 0, "user%other", "ours", "ours" },
	{ "other!user@ours", 0, "other!user", "ours", "ours" },
	{ "a@b@c", 0, "a@b", "c", "c" },
	{ "postmaster", 0, "postmaster", "", NULL },
	{ "\"a@b\"", 0, "a@b", "", NULL },
	{ "", 0, "", "", NULL },
	{ "\"\"@x", 0, "", "x", "x" },
	{ "$(x)|`y`@example.com", 0, "$(x)|`y`", "example.com", "example.com" },
	{ "@x", -1, "", "", "x" },
	{ "user@", -1, "", "", "" },
	{ "\"abc@x", -1, "", "", NULL },
	{ "a\"b\"@x", -1, "", "", "x" },
	{ "\"a\"b@x", -1, "", "", "x" },
	{ "\"a\\", -1, "", "", NULL },
	{ "\"a\\\"@x", -1, "", "", NULL },
	/* An address literal may hold '@' (RFC 5321 dcontent): the domain is the whole literal (found by fuzzing). */
	{ "-@[---0-----1:@]", 0, "-", "[---0-----1:@]", "[---0-----1:@]" },
	{ "user@[x:a@ours]", 0, "user", "[x:a@ours]", "[x:a@ours]" },
	{ "user@[Tag:A@B@C]", 0, "user", "[tag:a@b@c]", "[Tag:A@B@C]" },
	{ "\"a@[x\"@[y:b@c]", 0, "a@[x", "[y:b@c]", "[y:b@c]" },
	{ "user@[127.0.0.1]", 0, "user", "[127.0.0.1]", "[127.0.0.1]" },
};

static void
test_split(void **state)
{
	struct buf l = BUF_INIT, d = BUF_INIT;
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(split_cases); i++) {
		const struct split_case *c = &split_cases[i];
		const char *dp;

		buf_strcpy(&l, "stale");
		buf_strcpy(&d, "stale");
		if (addr_split(c->addr, &l, &d) != c->ok)
			fail_msg("case %zu \"%s\": result is not %d", i, c->addr, c->ok);
		assert_string_equal(buf_str(&l), c->local);
		assert_string_equal(buf_str(&d), c->domain);
		dp = addr_domain(c->addr);
		if (c->dpart == NULL)
			assert_null(dp);
		else
			assert_string_equal(dp, c->dpart);
	}
	buf_free(&l);
	buf_free(&d);
}

static const struct {
	const char *local, *domain, *want;
} join_cases[] = {
	{ "user", "example.com", "user@example.com" },
	{ "User", "EXAMPLE.com", "User@example.com" },
	{ "john doe", "x", "\"john doe\"@x" },
	{ "a\"b", "x", "\"a\\\"b\"@x" },
	{ "a\\b", "x", "\"a\\\\b\"@x" },
	{ "user@other", "ours", "\"user@other\"@ours" },
	{ "a..b", "x", "\"a..b\"@x" },
	{ ".a", "x", "\".a\"@x" },
	{ "a.", "x", "\"a.\"@x" },
	{ "a;b", "x", "\"a;b\"@x" },
	{ "", "x", "\"\"@x" },
	{ "postmaster", "", "postmaster" },
	{ "john doe", "", "\"john doe\"" },
	{ "", "", "" },
	{ "\xc3\xbc", "x", "\xc3\xbc@x" },
	{ "$|`{x}", "x", "$|`{x}@x" },
	{ "first.last", "Sub.Example", "first.last@sub.example" },
	{ "\"", "x", "\"\\\"\"@x" },
};

static void
test_join(void **state)
{
	struct buf out = BUF_INIT, l = BUF_INIT, d = BUF_INIT, dl = BUF_INIT;
	const char *end, *why;
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(join_cases); i++) {
		buf_strcpy(&out, "stale");
		addr_join(&out, join_cases[i].local, join_cases[i].domain);
		assert_string_equal(buf_str(&out), join_cases[i].want);
		/* split(join(l, d)) gives l and d folded back */
		assert_int_equal(addr_split(buf_str(&out), &l, &d), 0);
		assert_string_equal(buf_str(&l), join_cases[i].local);
		buf_reset(&dl);
		buf_puts(&dl, join_cases[i].domain);
		for (size_t k = 0; k < dl.len; k++)
			if (dl.data[k] >= 'A' && dl.data[k] <= 'Z')
				dl.data[k] += 'a' - 'A';
		if (strcmp(buf_str(&d), buf_str(&dl)) != 0)
			fail_msg("join case %zu: domain \"%s\" want \"%s\"", i, buf_str(&d), buf_str(&dl));
	}
	/* join(split(x)) names the same mailbox for every valid path above */
	for (i = 0; i < NELEM(path_cases); i++) {
		struct buf j = BUF_INIT, l2 = BUF_INIT, d2 = BUF_INIT;

		if (path_cases[i].want == NULL || path_cases[i].want[0] == 0)
			continue;
		assert_int_equal(addr_split(path_cases[i].want, &l, &d), 0);
		addr_join(&j, buf_str(&l), buf_str(&d));
		assert_int_equal(addr_split(buf_str(&j), &l2, &d2), 0);
		assert_string_equal(buf_str(&l2), buf_str(&l));
		assert_string_equal(buf_str(&d2), buf_str(&d));
		/* and what join builds from a parsed address parses again */
		buf_set(&dl, "<", 1);
		buf_puts(&dl, buf_str(&j));
		buf_puts(&dl, ">");
		if (addr_parse_path(buf_str(&dl), path_cases[i].flags | ADDR_LOCAL_OK, &out, &end, &why) < 0)
			fail_msg("\"%s\" joined to \"%s\": %s", path_cases[i].want, buf_str(&j), why);
		buf_free(&j);
		buf_free(&l2);
		buf_free(&d2);
	}
	buf_free(&out);
	buf_free(&l);
	buf_free(&d);
	buf_free(&dl);
}

static void
test_printable(void **state)
{
	static const struct {
		const char *in;
		size_t len;
		const char *want;
	} cases[] = {
		{ "abc", 3, "abc" },
		{ "", 0, "" },
		{ " ~", 2, " ~" },
		{ "a\0b", 3, "a\\x00b" },
		{ "\r\n", 2, "\\x0d\\x0a" },
		{ "\x1b[31m", 5, "\\x1b[31m" },
		{ "\xc3\xbc", 2, "\\xc3\\xbc" },
		{ "\x7f\xff", 2, "\\x7f\\xff" },
		{ "a\\b", 3, "a\\b" },
		{ "abcdef", 3, "abc" },
	};
	struct buf out = BUF_INIT;
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(cases); i++) {
		buf_strcpy(&out, "stale");
		addr_printable(&out, cases[i].in, cases[i].len);
		assert_string_equal(buf_str(&out), cases[i].want);
	}
	buf_free(&out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_paths),
		cmocka_unit_test(test_lengths),
		cmocka_unit_test(test_every_byte),
		cmocka_unit_test(test_domains),
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_join),
		cmocka_unit_test(test_printable),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
