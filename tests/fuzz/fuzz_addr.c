/*
 * fuzz_addr - the address parser (common/addr.c) that every MAIL FROM
 * and RCPT TO goes through, and the split/join pair that later programs
 * use on what it accepted.
 *
 * Input: one flags byte (ADDR_* bits), then the path text.  Properties:
 * an accepted address holds no control character and fits the limits;
 * parsing what it produced gives the same result; splitting and joining
 * it again gives an address that parses to the same local part and
 * domain.
 */
#include "config.h"

#include "addr.h"
#include "fuzz.h"

static void
check_printable(const struct buf *b)
{
	size_t i;

	for (i = 0; i < b->len; i++)
		FUZZ_ASSERT(b->data[i] >= 0x20 && b->data[i] != 0x7f);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf out = BUF_INIT, again = BUF_INIT, local = BUF_INIT, domain = BUF_INIT, local2 = BUF_INIT,
	           domain2 = BUF_INIT, joined = BUF_INIT, wrapped = BUF_INIT;
	const char *end, *why;
	char *s;
	int flags;

	fuzz_quiet();
	if (size < 1)
		return 0;
	flags = data[0] & (ADDR_NULL_OK | ADDR_UTF8 | ADDR_BARE_OK | ADDR_LOCAL_OK | ADDR_LONG_LOCAL);
	s = fuzz_str(data + 1, size - 1);

	if (addr_parse_path(s, flags, &out, &end, &why) == 0) {
		FUZZ_ASSERT(end >= s && end <= s + strlen(s));
		FUZZ_ASSERT(strlen(buf_str(&out)) == out.len);
		check_printable(&out);
		FUZZ_ASSERT(out.len <= ADDR_PATH_MAX);
		/* The limit counts the brackets when there are some: a bare path may be two bytes longer. */
		if (out.len > 0 && out.len + 2 <= ADDR_PATH_MAX) {
			/* What we accepted parses again to itself (a source route is gone already). */
			buf_printf(&wrapped, "<%s>", buf_str(&out));
			FUZZ_ASSERT(addr_parse_path(buf_str(&wrapped), flags & ~ADDR_BARE_OK, &again, &end, &why) == 0);
			FUZZ_ASSERT(*end == 0);
			FUZZ_ASSERT(again.len == out.len && memcmp(again.data, out.data, out.len) == 0);

			/* Split, join, parse, split: the same local part and domain. */
			FUZZ_ASSERT(addr_split(buf_str(&out), &local, &domain) == 0);
			FUZZ_ASSERT(addr_domain(buf_str(&out)) != NULL || domain.len == 0);
			addr_join(&joined, buf_str(&local), buf_str(&domain));
			FUZZ_ASSERT(joined.len <= out.len);
			buf_reset(&wrapped);
			buf_printf(&wrapped, "<%s>", buf_str(&joined));
			FUZZ_ASSERT(addr_parse_path(buf_str(&wrapped), flags & ~ADDR_BARE_OK, &again, &end, &why) == 0);
			FUZZ_ASSERT(addr_split(buf_str(&again), &local2, &domain2) == 0);
			FUZZ_ASSERT(strcmp(buf_str(&local), buf_str(&local2)) == 0);
			FUZZ_ASSERT(strcmp(buf_str(&domain), buf_str(&domain2)) == 0);
			if (domain.len > 0 && !addr_is_literal(buf_str(&domain)))
				FUZZ_ASSERT(addr_domain_valid(buf_str(&domain), (flags & ADDR_UTF8) != 0));
		}
	} else {
		FUZZ_ASSERT(why != NULL && *why);
	}

	/* The helpers take any string without harm. */
	(void)addr_domain_valid(s, data[0] & 0x80);
	(void)addr_domain_fqdn(s);
	(void)addr_domain(s);
	if (addr_split(s, &local, &domain) == 0)
		addr_join(&joined, buf_str(&local), buf_str(&domain));
	addr_printable(&joined, s, strlen(s));
	check_printable(&joined);

	free(s);
	buf_free(&out);
	buf_free(&again);
	buf_free(&local);
	buf_free(&domain);
	buf_free(&local2);
	buf_free(&domain2);
	buf_free(&joined);
	buf_free(&wrapped);
	return 0;
}
