/*
 * buf_test - growable byte buffers: growth, NUL safety, formatting,
 * consumption, and the invariant that data is always terminated.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

static void
test_empty(void **state)
{
	struct buf b = BUF_INIT;

	assert_string_equal(buf_str(&b), "");
	assert_int_equal(buf_len(&b), 0);
	assert_false(buf_has_nul(&b));
	buf_reset(&b);
	buf_free(&b);
	buf_free(&b);
}

static void
test_append_nul_safe(void **state)
{
	static const unsigned char bytes[] = { 'a', 0, 'b', 0xff, 0 };
	struct buf b = BUF_INIT;

	buf_append(&b, bytes, sizeof(bytes));
	assert_int_equal(buf_len(&b), sizeof(bytes));
	assert_memory_equal(b.data, bytes, sizeof(bytes));
	assert_true(buf_has_nul(&b));
	assert_int_equal(b.data[b.len], 0);
	assert_string_equal(buf_str(&b), "a");
	buf_free(&b);
}

static void
test_growth(void **state)
{
	struct buf b = BUF_INIT;
	size_t i;

	for (i = 0; i < 100000; i++)
		buf_putc(&b, 'a' + (int)(i % 26));
	assert_int_equal(buf_len(&b), 100000);
	assert_true(b.cap > b.len);
	for (i = 0; i < 100000; i++)
		assert_int_equal(b.data[i], 'a' + (int)(i % 26));
	assert_int_equal(b.data[b.len], 0);
	buf_free(&b);
}

static void
test_printf(void **state)
{
	struct buf b = BUF_INIT;
	char big[5000];

	buf_printf(&b, "%s=%d", "x", 42);
	assert_string_equal(buf_str(&b), "x=42");
	memset(big, 'z', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	buf_printf(&b, ";%s", big);
	assert_int_equal(buf_len(&b), 4 + 1 + sizeof(big) - 1);
	assert_int_equal(b.data[5], 'z');
	assert_int_equal(b.data[b.len], 0);
	buf_strcpy(&b, "reset");
	assert_string_equal(buf_str(&b), "reset");
	buf_strcpy(&b, "");
	assert_string_equal(buf_str(&b), "");
	buf_free(&b);
}

static void
test_consume_truncate(void **state)
{
	struct buf b = BUF_INIT;

	buf_puts(&b, "hello world");
	buf_consume(&b, 6);
	assert_string_equal(buf_str(&b), "world");
	buf_truncate(&b, 3);
	assert_string_equal(buf_str(&b), "wor");
	buf_consume(&b, 3);
	assert_int_equal(buf_len(&b), 0);
	assert_string_equal(buf_str(&b), "");
	buf_free(&b);
}

static void
test_export(void **state)
{
	struct buf b = BUF_INIT;
	char *s;

	buf_puts(&b, "take me");
	s = buf_export(&b);
	assert_string_equal(s, "take me");
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	free(s);
	s = buf_export(&b);
	assert_string_equal(s, "");
	free(s);
}

static void
test_freezero(void **state)
{
	struct buf b = BUF_INIT;

	buf_puts(&b, "secret");
	buf_freezero(&b);
	assert_null(b.data);
	assert_int_equal(b.cap, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_append_nul_safe),
		cmocka_unit_test(test_growth),
		cmocka_unit_test(test_printf),
		cmocka_unit_test(test_consume_truncate),
		cmocka_unit_test(test_export),
		cmocka_unit_test(test_freezero),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
