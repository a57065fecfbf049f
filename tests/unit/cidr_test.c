/*
 * cidr_test - network parsing and matching, including the forms
 * mynetworks uses and hostile entries.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "cidr.h"

struct parse_case {
	const char *in;
	int ok;
};

static const struct parse_case parse_cases[] = {
	{ "127.0.0.0/8", 0 },
	{ "127.0.0.1", 0 },
	{ "[::1]/128", 0 },
	{ "::1/128", 0 },
	{ "[2001:db8::]/32", 0 },
	{ "0.0.0.0/0", 0 },
	{ "::/0", 0 },
	{ "127.0.0.1/8", -1 },      /* host bits set */
	{ "10.0.0.0/33", -1 },
	{ "10.0.0.0/-1", -1 },
	{ "10.0.0.0/", -1 },
	{ "10.0.0.0/8x", -1 },
	{ "10.0.0", -1 },
	{ "example.com", -1 },
	{ "", -1 },
	{ "[::ffff:127.0.0.1]", -1 }, /* mapped form is refused: write IPv4 */
	{ "[::1", -1 },
	{ "1.2.3.4/32/1", -1 },
	{ "2001:db8::/129", -1 },
};

static void
test_parse(void **state)
{
	struct cidr c;
	const char *why;
	size_t i;

	for (i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
		int r = cidr_parse(parse_cases[i].in, &c, &why);

		if (r != parse_cases[i].ok)
			fail_msg("\"%s\": got %d", parse_cases[i].in, r);
	}
	{
		char big[4096];

		memset(big, '1', sizeof(big) - 1);
		big[sizeof(big) - 1] = 0;
		assert_int_equal(cidr_parse(big, &c, &why), -1);
	}
}

struct match_case {
	const char *net, *addr;
	bool want;
};

static const struct match_case match_cases[] = {
	{ "127.0.0.0/8", "127.0.0.1", true },
	{ "127.0.0.0/8", "127.255.255.255", true },
	{ "127.0.0.0/8", "128.0.0.1", false },
	{ "127.0.0.0/8", "::ffff:127.0.0.1", true },
	{ "127.0.0.0/8", "::1", false },
	{ "[::1]/128", "::1", true },
	{ "[::1]/128", "::2", false },
	{ "192.0.2.128/25", "192.0.2.200", true },
	{ "192.0.2.128/25", "192.0.2.127", false },
	{ "0.0.0.0/0", "8.8.8.8", true },
	{ "0.0.0.0/0", "2001:db8::1", false },
	{ "2001:db8::/32", "2001:db8:ffff::1", true },
	{ "2001:db8::/33", "2001:db8:8000::1", false },
	{ "10.1.2.3", "10.1.2.3", true },
	{ "10.1.2.3", "10.1.2.4", false },
	{ "10.0.0.0/8", "not an address", false },
	{ "10.0.0.0/8", "", false },
};

static void
test_match(void **state)
{
	struct cidr c;
	const char *why;
	size_t i;

	for (i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]); i++) {
		assert_int_equal(cidr_parse(match_cases[i].net, &c, &why), 0);
		if (cidr_match(&c, match_cases[i].addr) != match_cases[i].want)
			fail_msg("%s vs %s", match_cases[i].net, match_cases[i].addr);
	}
}

static void
test_list(void **state)
{
	struct cidr_list l;
	struct buf err = BUF_INIT;

	assert_int_equal(cidr_list_parse("127.0.0.0/8 [::1]/128, 192.0.2.0/24", &l, &err), 0);
	assert_int_equal(l.n, 3);
	assert_true(cidr_list_match(&l, "192.0.2.9"));
	assert_true(cidr_list_match(&l, "::1"));
	assert_false(cidr_list_match(&l, "198.51.100.1"));
	cidr_list_free(&l);
	assert_int_equal(cidr_list_parse("", &l, &err), 0);
	assert_false(cidr_list_match(&l, "127.0.0.1"));
	cidr_list_free(&l);
	assert_int_equal(cidr_list_parse("127.0.0.0/8, hash:/etc/x", &l, &err), -1);
	assert_non_null(strstr(buf_str(&err), "hash:/etc/x"));
	buf_free(&err);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_match),
		cmocka_unit_test(test_list),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
