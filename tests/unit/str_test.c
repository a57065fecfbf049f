/*
 * str_test - strict number parsing, case folding and list tokens.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <limits.h>
#include <string.h>

#include "str.h"

struct num_case {
	const char *in;
	long long min, max;
	int ok;
	long long want;
	const char *why;
};

static const struct num_case num_cases[] = {
	{ "0", 0, 10, 0, 0, NULL },
	{ "10", 0, 10, 0, 10, NULL },
	{ "11", 0, 10, -1, 0, "too large" },
	{ "-1", 0, 10, -1, 0, "invalid" },
	{ "-5", -10, 10, 0, -5, NULL },
	{ "-11", -10, 10, -1, 0, "too small" },
	{ "", 0, 10, -1, 0, "invalid" },
	{ " 1", 0, 10, -1, 0, "invalid" },
	{ "1 ", 0, 10, -1, 0, "invalid" },
	{ "1x", 0, 10, -1, 0, "invalid" },
	{ "0x10", 0, 100, -1, 0, "invalid" },
	{ "+", 0, 10, -1, 0, "invalid" },
	{ "99999999999999999999999", 0, LLONG_MAX, -1, 0, "too large" },
	{ "9223372036854775807", 0, LLONG_MAX, 0, LLONG_MAX, NULL },
};

static void
test_numbers(void **state)
{
	size_t i;

	for (i = 0; i < sizeof(num_cases) / sizeof(num_cases[0]); i++) {
		const struct num_case *c = &num_cases[i];
		const char *why = NULL;
		long long v = -12345;
		int r = str_to_ll(c->in, c->min, c->max, &v, &why);

		if (r != c->ok)
			fail_msg("case %zu \"%s\": got %d want %d", i, c->in, r, c->ok);
		if (c->ok == 0)
			assert_int_equal(v, c->want);
		else
			assert_string_equal(why, c->why);
	}
	assert_int_equal(str_to_ll(NULL, 0, 1, &(long long){ 0 }, NULL), -1);
}

static void
test_case(void **state)
{
	char s[] = "MiXeD-Case@Example.COM";

	assert_string_equal(str_lower(s), "mixed-case@example.com");
	assert_int_equal(str_casecmp("ABC", "abc"), 0);
	assert_true(str_casecmp("abc", "abd") < 0);
	assert_true(str_casecmp("abc", "ab") > 0);
	assert_int_equal(str_ncasecmp("MAIL FROM:", "mail from:<x>", 10), 0);
	assert_true(str_ncasecmp("MAIL", "MAIX", 4) != 0);
	assert_int_equal(str_ncasecmp("a", "b", 0), 0);
	/* Non-ASCII bytes are not folded by any locale. */
	assert_true(str_casecmp("\xc4", "\xe4") != 0);
}

static void
test_tokens(void **state)
{
	char list[] = " a, b\tc,,\n d ";
	const char *want[] = { "a", "b", "c", "d" };
	char *p = list, *t;
	size_t n = 0;

	while ((t = str_token(&p, STR_LIST_SEP)) != NULL) {
		assert_true(n < 4);
		assert_string_equal(t, want[n]);
		n++;
	}
	assert_int_equal(n, 4);
	assert_null(str_token(&p, STR_LIST_SEP));
	{
		char empty[] = " , ";

		p = empty;
		assert_null(str_token(&p, STR_LIST_SEP));
	}
}

static void
test_tokens_braced(void **state)
{
	char list[] = "check_sender_access inline:{a=b, { c = d e }}, permit_mynetworks,,{x y}";
	const char *want[] = { "check_sender_access", "inline:{a=b, { c = d e }}", "permit_mynetworks", "{x y}" };
	char unbalanced[] = "a{b, c";
	char *p = list, *t;
	size_t n = 0;

	while ((t = str_token_braced(&p, STR_LIST_SEP)) != NULL) {
		assert_true(n < 4);
		assert_string_equal(t, want[n]);
		n++;
	}
	assert_int_equal(n, 4);
	/* An unclosed brace runs to the end: one token, no overrun. */
	p = unbalanced;
	assert_string_equal(str_token_braced(&p, STR_LIST_SEP), "a{b, c");
	assert_null(str_token_braced(&p, STR_LIST_SEP));
}

static void
test_trim(void **state)
{
	char a[] = " \t x y \r\n";
	char b[] = "";
	char c[] = "   ";

	assert_string_equal(str_trim(a), "x y");
	assert_string_equal(str_trim(b), "");
	assert_string_equal(str_trim(c), "");
	assert_true(str_ends_with("file.db", ".db"));
	assert_false(str_ends_with("db", ".db"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_case),
		cmocka_unit_test(test_tokens),
		cmocka_unit_test(test_tokens_braced),
		cmocka_unit_test(test_trim),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
