/*
 * qid_test - queue IDs: encoding, uniqueness, ordering, validation and
 * path building, with hostile names.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "qfile.h"
#include "qid.h"

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
test_make_known(void **state)
{
	struct timeval tv;
	char id[QID_LEN + 1];

	(void)state;
	tv.tv_sec = 0;
	tv.tv_usec = 0;
	qid_make(id, &tv, 0);
	assert_string_equal(id, "0000000000000000");
	tv.tv_sec = 1;
	tv.tv_usec = 999999;
	qid_make(id, &tv, 33554431);
	/* 999999 = 0xF423F = 30 16 17 31 in base 32 -> "UGHV" */
	assert_string_equal(id, "0000001UGHVVVVVV");
	tv.tv_sec = 1700000000; /* 0x6553F100 */
	tv.tv_usec = 32;
	qid_make(id, &tv, 4194304);
	assert_int_equal(strlen(id), QID_LEN);
	assert_string_equal(id + 7, "0010"
	                            "40000");
	assert_true(qid_valid(id));
}

static void
test_time_roundtrip(void **state)
{
	static const struct {
		long long sec;
		long usec;
		long pid;
	} cases[] = {
		{ 0, 0, 1 },
		{ 1, 1, 2 },
		{ 1700000000, 123456, 4194304 },
		{ 34359738367LL, 999999, 33554431 },
		{ 2147483648LL, 500000, 99999 },
	};
	struct timeval tv, back;
	char id[QID_LEN + 1];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tv.tv_sec = (time_t)cases[i].sec;
		tv.tv_usec = cases[i].usec;
		qid_make(id, &tv, cases[i].pid);
		assert_true(qid_valid(id));
		assert_int_equal(qid_time(id, &back), 0);
		assert_int_equal(back.tv_sec, tv.tv_sec);
		assert_int_equal(back.tv_usec, tv.tv_usec);
	}
	/* A well-formed ID whose microseconds are out of range has no time. */
	assert_int_equal(qid_time("0000000VVVV00001", &back), -1);
	assert_int_equal(qid_time("bad", &back), -1);
	assert_int_equal(qid_time(NULL, &back), -1);
}

#define NIDS 100000

static void
test_new_unique_monotonic(void **state)
{
	char **ids = calloc(NIDS, sizeof(*ids));
	char pid5[8];
	size_t i;

	(void)state;
	assert_non_null(ids);
	for (i = 0; i < NIDS; i++) {
		ids[i] = malloc(QID_LEN + 1);
		assert_non_null(ids[i]);
		qid_new(ids[i]);
		assert_true(qid_valid(ids[i]));
		/* Strictly increasing as strings: time first, same pid. */
		if (i > 0)
			assert_true(strcmp(ids[i - 1], ids[i]) < 0);
	}
	memcpy(pid5, ids[0] + 11, 5);
	pid5[5] = 0;
	{
		struct timeval tv = { 0, 0 };
		char ref[QID_LEN + 1];

		qid_make(ref, &tv, (long)getpid());
		assert_string_equal(pid5, ref + 11);
	}
	qsort(ids, NIDS, sizeof(*ids), cmp_str);
	for (i = 1; i < NIDS; i++)
		assert_true(strcmp(ids[i - 1], ids[i]) != 0);
	for (i = 0; i < NIDS; i++)
		free(ids[i]);
	free(ids);
}

static void
test_valid_table(void **state)
{
	static const struct {
		const char *s;
		bool ok;
	} cases[] = {
		{ "0000000000000000", true },
		{ "VVVVVVVVVVVVVVVV", true },
		{ "1A2B3C4D5E6F7G8H", true },
		{ "", false },
		{ "000000000000000", false },   /* 15 */
		{ "00000000000000000", false }, /* 17 */
		{ "000000000000000a", false },  /* lower case */
		{ "000000000000000W", false },
		{ "000000000000000X", false },
		{ "000000000000000Y", false },
		{ "000000000000000Z", false },
		{ "00000000/0000000", false },
		{ "../0000000000000", false },
		{ "..", false },
		{ "/", false },
		{ "0000000 00000000", false },
		{ "000000000000000\n", false },
		{ "0000000000000000\n", false },
		{ "\xff"
		  "000000000000000",
		    false },
		{ "-000000000000000", false },
	};
	char withnul[QID_LEN + 2];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (qid_valid(cases[i].s) != cases[i].ok)
			fail_msg("qid_valid(\"%s\") != %d", cases[i].s, cases[i].ok);
	assert_false(qid_valid(NULL));
	/* A NUL inside makes the string short. */
	memcpy(withnul,
	    "00000000\0"
	    "0000000",
	    QID_LEN + 1);
	assert_false(qid_valid(withnul));
}

static void
test_hash(void **state)
{
	struct timeval tv = { 1700000000, 0 };
	char id[QID_LEN + 1];
	long u;

	(void)state;
	for (u = 0; u < 32 * 100; u++) {
		tv.tv_usec = u;
		qid_make(id, &tv, 1234);
		assert_int_equal(qid_hash(id), id[10]);
		assert_true(
		    (qid_hash(id) >= '0' && qid_hash(id) <= '9') || (qid_hash(id) >= 'A' && qid_hash(id) <= 'V'));
	}
	/* Consecutive microseconds cycle through all 32 subdirectories. */
	for (u = 0; u < 32; u++) {
		char c;

		tv.tv_usec = 1000 + u;
		qid_make(id, &tv, 1);
		c = qid_hash(id);
		assert_int_equal(c, "0123456789ABCDEFGHIJKLMNOPQRSTUV"[(1000 + u) % 32]);
	}
	assert_int_equal(qid_hash("nonsense"), 0);
}

static void
test_path(void **state)
{
	static const struct {
		const char *queue;
		const char *id;
		const char *want; /* NULL: must fail */
	} cases[] = {
		{ QUEUE_INCOMING, "0123456789ABCDEF", "incoming/0123456789ABCDEF" },
		{ QUEUE_ACTIVE, "0123456789ABCDEF", "active/0123456789ABCDEF" },
		{ QUEUE_HOLD, "0123456789ABCDEF", "hold/0123456789ABCDEF" },
		{ QUEUE_CORRUPT, "0123456789ABCDEF", "corrupt/0123456789ABCDEF" },
		{ QUEUE_MAILDROP, "0123456789ABCDEF", "maildrop/0123456789ABCDEF" },
		{ QUEUE_DEFERRED, "0123456789ABCDEF", "deferred/A/0123456789ABCDEF" },
		{ QUEUE_DEFER, "0123456789ABCDEF", "defer/A/0123456789ABCDEF" },
		{ QUEUE_BOUNCE, "0123456789ABCDEF", "bounce/A/0123456789ABCDEF" },
		{ "private", "0123456789ABCDEF", NULL },
		{ "", "0123456789ABCDEF", NULL },
		{ "..", "0123456789ABCDEF", NULL },
		{ "incoming/", "0123456789ABCDEF", NULL },
		{ "/incoming", "0123456789ABCDEF", NULL },
		{ "INCOMING", "0123456789ABCDEF", NULL },
		{ QUEUE_INCOMING, "../../etc/passwd", NULL },
		{ QUEUE_INCOMING, "", NULL },
		{ QUEUE_INCOMING, "0123456789abcdef", NULL },
		{ QUEUE_INCOMING, "0123456789ABCDE", NULL },
	};
	char out[128];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(out, 'x', sizeof(out));
		if (cases[i].want) {
			assert_int_equal(qid_path(out, sizeof(out), cases[i].queue, cases[i].id), 0);
			assert_string_equal(out, cases[i].want);
		} else {
			assert_int_equal(qid_path(out, sizeof(out), cases[i].queue, cases[i].id), -1);
			assert_int_equal(out[0], 0);
		}
	}
	assert_int_equal(qid_path(out, sizeof(out), NULL, "0123456789ABCDEF"), -1);
	assert_int_equal(qid_path(out, sizeof(out), QUEUE_INCOMING, NULL), -1);
	assert_true(qid_queue_hashed(QUEUE_DEFERRED));
	assert_true(qid_queue_hashed(QUEUE_DEFER));
	assert_true(qid_queue_hashed(QUEUE_BOUNCE));
	assert_false(qid_queue_hashed(QUEUE_INCOMING));
	assert_false(qid_queue_hashed(QUEUE_ACTIVE));
	assert_false(qid_queue_hashed(NULL));
}

static void
test_path_small_buffer(void **state)
{
	const char *id = "0123456789ABCDEF";
	char out[64];
	size_t need;

	(void)state;
	/* "incoming/" + 16 = 25 characters + NUL */
	need = strlen("incoming/") + QID_LEN + 1;
	assert_int_equal(qid_path(out, need, QUEUE_INCOMING, id), 0);
	memset(out, 'x', sizeof(out));
	assert_int_equal(qid_path(out, need - 1, QUEUE_INCOMING, id), -1);
	assert_int_equal(out[0], 0);
	assert_int_equal(out[need - 1], 'x'); /* nothing written past the size given */
	need = strlen("deferred/A/") + QID_LEN + 1;
	assert_int_equal(qid_path(out, need, QUEUE_DEFERRED, id), 0);
	assert_int_equal(qid_path(out, need - 1, QUEUE_DEFERRED, id), -1);
	assert_int_equal(qid_path(out, 1, QUEUE_DEFERRED, id), -1);
	assert_int_equal(out[0], 0);
	assert_int_equal(qid_path(NULL, 0, QUEUE_DEFERRED, id), -1);
}

/* Out-of-range inputs to qid_make are our own bugs: log_panic. */

static jmp_buf panic_jmp;

static void
panic_hook(int status)
{
	longjmp(panic_jmp, status);
}

static void
test_make_panics(void **state)
{
	static const struct {
		long long sec;
		long usec;
		long pid;
	} bad[] = {
		{ -1, 0, 1 },
		{ 0, -1, 1 },
		{ 0, 1000000, 1 },
		{ 34359738368LL, 0, 1 },
		{ 0, 0, -1 },
		{ 0, 0, 33554432 },
	};
	struct timeval tv;
	char id[QID_LEN + 1];
	volatile size_t i;
	volatile int panics = 0;

	(void)state;
	log_set_exit_hook(panic_hook);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		tv.tv_sec = (time_t)bad[i].sec;
		tv.tv_usec = bad[i].usec;
		if (setjmp(panic_jmp) == 0)
			qid_make(id, &tv, bad[i].pid);
		else
			panics++;
	}
	log_set_exit_hook(NULL);
	assert_int_equal(panics, sizeof(bad) / sizeof(bad[0]));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_make_known),
		cmocka_unit_test(test_time_roundtrip),
		cmocka_unit_test(test_new_unique_monotonic),
		cmocka_unit_test(test_valid_table),
		cmocka_unit_test(test_hash),
		cmocka_unit_test(test_path),
		cmocka_unit_test(test_path_small_buffer),
		cmocka_unit_test(test_make_panics),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
