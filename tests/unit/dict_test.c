/*
 * dict_test - the lookup tables: every type, the three-way answers,
 * broken and rebuilt files, lists, and the text source parser with
 * hostile input.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "dict.h"
#include "dict_impl.h"
#include "log.h"
#include "xalloc.h"

static char tmpdir[64];

/*
 * Berkeley DB cannot free a handle after a damaged page made it give up
 * (DB_RUNRECOVERY); that memory is its, not ours.  LeakSanitizer reads
 * this hook in the sanitizer build; elsewhere it is an unused function.
 */
const char *__lsan_default_suppressions(void);
const char *
__lsan_default_suppressions(void)
{
	return "leak:libdb-5.3.so\n";
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int
setup(void **state)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/dict_test.XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	dict_check_interval_ms = 0;
	return 0;
}

static int
teardown(void **state)
{
	dict_check_interval_ms = DICT_CHECK_SECONDS * 1000LL;
	return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* tpath - a file name in the test directory (static storage, two slots) */
static const char *
tpath(const char *name)
{
	static char paths[2][256];
	static int which;

	which ^= 1;
	snprintf(paths[which], sizeof(paths[which]), "%s/%s", tmpdir, name);
	return paths[which];
}

static void
write_file(const char *path, const void *data, size_t len)
{
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(close(fd), 0);
}

static void
write_text(const char *path, const char *text)
{
	write_file(path, text, strlen(text));
}

/* fill_db - put key/value pairs (NULL-terminated list) into a writer and close it */
static void
fill_db(struct dict *w, const char *const *kv)
{
	assert_non_null(w);
	assert_null(w->error);
	for (; kv[0] != NULL; kv += 2)
		assert_int_equal(dict_update(w, kv[0], kv[1]), 0);
	assert_int_equal(dict_sync(w), 0);
	dict_close(w);
}

/* make_db - create type:dir/name (the file dir/name.db) holding kv */
static void
make_db(const char *type, const char *name, int flags, const char *const *kv)
{
	struct buf err = BUF_INIT;
	char *spec = xasprintf("%s:%s", type, tpath(name));

	fill_db(dict_open(spec, DICT_FLAG_CREATE | flags, &err), kv);
	free(spec);
	buf_free(&err);
}

/* replace_db - build a new table under a temporary name and rename it over dir/name.db */
static void
replace_db(const char *type, const char *name, const char *const *kv)
{
	struct buf err = BUF_INIT;
	char tmp[256], dst[256];

	snprintf(tmp, sizeof(tmp), "%s/%s.db.tmp", tmpdir, name);
	snprintf(dst, sizeof(dst), "%s/%s.db", tmpdir, name);
	fill_db(dict_db_open(type, tmp, DICT_FLAG_CREATE, &err), kv);
	assert_int_equal(rename(tmp, dst), 0);
	buf_free(&err);
}

/* topen - open type:dir/name */
static struct dict *
topen(const char *type, const char *name, int flags)
{
	char *spec = xasprintf("%s:%s", type, tpath(name));
	struct dict *d;

	d = dict_open(spec, flags, NULL);
	assert_non_null(d);
	free(spec);
	return d;
}

static void
expect(struct dict *d, const char *key, enum dict_result want, const char *value)
{
	struct buf v = BUF_INIT;
	enum dict_result r;

	r = dict_lookup(d, key, &v);
	if (r != want)
		fail_msg("%s: lookup \"%.40s\": got %d, want %d (error: %s)", d->spec, key, r, want,
		    d->error ? d->error : "none");
	if (want == DICT_FOUND)
		assert_string_equal(buf_str(&v), value);
	else
		assert_int_equal(buf_len(&v), 0);
	buf_free(&v);
}

/* ---------------------------------------------------------------- open */

static void
test_open_specs(void **state)
{
	static const struct {
		const char *spec;
		int flags;
		const char *err; /* NULL: must open */
	} cases[] = {
		{ "", 0, "malformed" },
		{ "hash", 0, "malformed" },
		{ ":x", 0, "malformed" },
		{ "hash:", 0, "empty name" },
		{ "nosuch:x", 0, "unsupported table type: nosuch" },
		{ "HASH:x", 0, "unsupported table type: HASH" },
		{ "inline:{a=b", 0, "missing '}'" },
		{ "inline:a=b", 0, "expected {" },
		{ "inline:{a}", 0, "has no '='" },
		{ "inline:{=b}", 0, "empty key" },
		{ "inline:{ = b}", 0, "empty key" },
		{ "inline:{a=}", 0, "empty value" },
		{ "inline:{a=b}}", 0, "text after" },
		{ "inline:{a=b} x", 0, "text after" },
		{ "inline:{a{b=c}}", 0, "unexpected '{'" },
		{ "inline:{{a=b}", 0, "missing '}'" },
		{ "inline:{a=b, {c=d}", 0, "missing '}'" },
		{ "inline:{a=b}", DICT_FLAG_WRITE, "cannot be written" },
		{ "static:{x", 0, "missing '}'" },
		{ "static:{}", 0, "empty value" },
		{ "static:{  }", 0, "empty value" },
		{ "static:{a}b", 0, "text after" },
		{ "static:x", DICT_FLAG_CREATE, "cannot be written" },
		{ "texthash:/x", DICT_FLAG_WRITE, "edited as text" },
		{ "inline:{}", 0, NULL },
		{ "inline:{ }", 0, NULL },
		{ "inline:{ {a = b c}, d=e f=g }", 0, NULL },
		{ "static:x", 0, NULL },
		{ "static:{ a b }", 0, NULL },
		{ "static:x:y", 0, NULL },
		/* A file table that cannot be opened is a surrogate, not NULL. */
		{ "hash:/nonexistent/dir/table", 0, NULL },
		{ "btree:/nonexistent/dir/table", 0, NULL },
		{ "texthash:/nonexistent/dir/table", 0, NULL },
	};
	struct buf err = BUF_INIT;
	struct dict *d;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		buf_reset(&err);
		d = dict_open(cases[i].spec, cases[i].flags, &err);
		if (cases[i].err == NULL) {
			if (d == NULL)
				fail_msg("\"%s\" did not open: %s", cases[i].spec, buf_str(&err));
			assert_string_equal(d->spec, cases[i].spec);
			dict_close(d);
		} else {
			if (d != NULL)
				fail_msg("\"%s\" opened; expected \"%s\"", cases[i].spec, cases[i].err);
			if (strstr(buf_str(&err), cases[i].err) == NULL)
				fail_msg(
				    "\"%s\": error \"%s\" lacks \"%s\"", cases[i].spec, buf_str(&err), cases[i].err);
		}
	}
	/* A NULL err is allowed. */
	assert_null(dict_open("nosuch:x", 0, NULL));
	buf_free(&err);

	assert_true(dict_type_known("hash"));
	assert_true(dict_type_known("btree"));
	assert_true(dict_type_known("texthash"));
	assert_true(dict_type_known("inline"));
	assert_true(dict_type_known("static"));
	assert_false(dict_type_known("has"));
	assert_false(dict_type_known("hashx"));
	assert_false(dict_type_known(""));
	assert_false(dict_type_known(NULL));
}

/* ---------------------------------------------------------------- inline, static */

static void
test_inline_static_lookups(void **state)
{
	static const struct {
		const char *spec;
		int flags;
		const char *key;
		enum dict_result want;
		const char *value;
	} cases[] = {
		{ "inline:{a=1, B=2}", 0, "a", DICT_FOUND, "1" },
		{ "inline:{a=1, B=2}", 0, "A", DICT_FOUND, "1" },
		{ "inline:{a=1, B=2}", 0, "b", DICT_FOUND, "2" },
		{ "inline:{a=1, B=2}", 0, "c", DICT_NOTFOUND, NULL },
		{ "inline:{a=1, B=2}", 0, "", DICT_NOTFOUND, NULL },
		{ "inline:{a=1, B=2}", DICT_FLAG_NOFOLD, "B", DICT_FOUND, "2" },
		{ "inline:{a=1, B=2}", DICT_FLAG_NOFOLD, "b", DICT_NOTFOUND, NULL },
		{ "inline:{a=1, B=2}", DICT_FLAG_NOFOLD, "A", DICT_NOTFOUND, NULL },
		{ "inline:{ { Key = value with spaces } }", 0, "KEY", DICT_FOUND, "value with spaces" },
		{ "inline:{ { k = {nested} x }, j=y }", 0, "k", DICT_FOUND, "{nested} x" },
		{ "inline:{ { k = {nested} x }, j=y }", 0, "j", DICT_FOUND, "y" },
		{ "inline:{a=1 a=2}", DICT_FLAG_DUP_OK, "a", DICT_FOUND, "2" },
		{ "inline:{a=x=y}", 0, "a", DICT_FOUND, "x=y" },
		{ "inline:{a=1,,, b=2\t\n c=3}", 0, "c", DICT_FOUND, "3" },
		{ "inline:{}", 0, "a", DICT_NOTFOUND, NULL },
		{ "inline:{user@example.com=ok}", 0, "USER@Example.COM", DICT_FOUND, "ok" },
		{ "static:hello", 0, "anything", DICT_FOUND, "hello" },
		{ "static:hello", 0, "", DICT_NOTFOUND, NULL },
		{ "static:{ with spaces }", 0, "x", DICT_FOUND, "with spaces" },
		{ "static:{a{b}c}", 0, "x", DICT_FOUND, "a{b}c" },
		{ "static:Mixed", 0, "x", DICT_FOUND, "Mixed" },
	};
	struct buf err = BUF_INIT;
	struct dict *d;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		d = dict_open(cases[i].spec, cases[i].flags, &err);
		if (d == NULL)
			fail_msg("\"%s\": %s", cases[i].spec, buf_str(&err));
		expect(d, cases[i].key, cases[i].want, cases[i].value);
		assert_false(dict_changed(d));
		dict_close(d);
	}
	buf_free(&err);
}

static void
test_inline_duplicate_warns(void **state)
{
	struct dict *d;

	d = dict_open("inline:{a=1, A=2}", 0, NULL);
	assert_non_null(d);
	assert_non_null(strstr(log_last_message(), "duplicate"));
	expect(d, "a", DICT_FOUND, "2");
	dict_close(d);
}

static void
test_read_only_types_refuse_writes(void **state)
{
	struct buf k = BUF_INIT, v = BUF_INIT;
	struct dict *d;

	d = dict_open("inline:{a=1, b=2}", 0, NULL);
	assert_int_equal(dict_update(d, "c", "3"), -1);
	assert_non_null(d->error);
	assert_int_equal(dict_remove(d, "a"), -1);
	expect(d, "a", DICT_FOUND, "1");
	/* Listing follows the written order. */
	assert_int_equal(dict_sequence(d, true, &k, &v), 0);
	assert_string_equal(buf_str(&k), "a");
	assert_int_equal(dict_sequence(d, false, &k, &v), 0);
	assert_string_equal(buf_str(&k), "b");
	assert_string_equal(buf_str(&v), "2");
	assert_int_equal(dict_sequence(d, false, &k, &v), 1);
	dict_close(d);

	d = dict_open("static:x", 0, NULL);
	assert_int_equal(dict_update(d, "c", "3"), -1);
	assert_int_equal(dict_sequence(d, true, &k, &v), -1);
	dict_close(d);
	buf_free(&k);
	buf_free(&v);
}

/* ---------------------------------------------------------------- keys */

static void
test_key_limits(void **state)
{
	struct dict *d;
	char *key;

	key = xmalloc(DICT_KEY_MAX + 2);
	memset(key, 'K', DICT_KEY_MAX);
	key[DICT_KEY_MAX] = 0;

	d = dict_open("static:v", 0, NULL);
	expect(d, key, DICT_FOUND, "v");
	assert_false(d->warned_key);
	key[DICT_KEY_MAX] = 'K';
	key[DICT_KEY_MAX + 1] = 0;
	/* static: finds everything, so NOTFOUND here comes from the generic key check. */
	expect(d, key, DICT_NOTFOUND, NULL);
	assert_true(d->warned_key);
	assert_non_null(strstr(log_last_message(), "longer than"));
	dict_close(d);

	/* Writers refuse an over-long key instead of truncating it. */
	d = topen("hash", "longkey", DICT_FLAG_CREATE);
	assert_null(d->error);
	assert_int_equal(dict_update(d, key, "v"), -1);
	assert_non_null(d->error);
	assert_int_equal(dict_update(d, "", "v"), -1);
	key[DICT_KEY_MAX] = 0;
	assert_int_equal(dict_update(d, key, "v"), 0);
	expect(d, key, DICT_FOUND, "v");
	dict_close(d);
	free(key);
}

/* ---------------------------------------------------------------- hash:, btree: */

static void
db_roundtrip(const char *type)
{
	static const char *const kv[] = {
		"alice@Example.COM",
		"alice",
		"bob",
		"bob@elsewhere.example, carol",
		"empty-ish",
		" ",
		NULL,
	};
	struct buf k = BUF_INIT, v = BUF_INIT;
	char *spec = xasprintf("%s:%s", type, tpath("rt"));
	static const unsigned char bin[] = { 'a', 0, 'b', 0xff, '\n' };
	struct dict *d;
	int n, rc;

	make_db(type, "rt", 0, kv);
	d = dict_open(spec, 0, NULL);
	assert_non_null(d);
	assert_null(d->error);
	expect(d, "alice@example.com", DICT_FOUND, "alice");
	expect(d, "ALICE@EXAMPLE.COM", DICT_FOUND, "alice");
	expect(d, "bob", DICT_FOUND, "bob@elsewhere.example, carol");
	expect(d, "empty-ish", DICT_FOUND, " ");
	expect(d, "nobody", DICT_NOTFOUND, NULL);
	expect(d, "bo", DICT_NOTFOUND, NULL);
	/* Readers cannot write. */
	assert_int_equal(dict_update(d, "x", "y"), -1);
	assert_int_equal(dict_remove(d, "bob"), -1);
	/* Keys are stored folded and without a trailing NUL. */
	for (n = 0, rc = dict_sequence(d, true, &k, &v); rc == 0; rc = dict_sequence(d, false, &k, &v), n++) {
		assert_false(buf_has_nul(&k));
		assert_string_not_equal(buf_str(&k), "alice@Example.COM");
	}
	assert_int_equal(rc, 1);
	assert_int_equal(n, 3);
	assert_false(dict_changed(d));
	dict_close(d);

	/* Writer: replace, remove, binary values. */
	d = dict_open(spec, DICT_FLAG_WRITE, NULL);
	assert_null(d->error);
	assert_int_equal(dict_update(d, "BOB", "robert"), 0);
	assert_int_equal(dict_remove(d, "Alice@example.com"), 0);
	assert_int_equal(dict_remove(d, "alice@example.com"), 1);
	assert_int_equal(d->ops->update(d, "bin", 3, bin, sizeof(bin)), 0);
	assert_int_equal(dict_sync(d), 0);
	dict_close(d);

	d = dict_open(spec, 0, NULL);
	expect(d, "bob", DICT_FOUND, "robert");
	expect(d, "alice@example.com", DICT_NOTFOUND, NULL);
	assert_int_equal(dict_lookup(d, "bin", &v), DICT_FOUND);
	assert_int_equal(buf_len(&v), sizeof(bin));
	assert_memory_equal(v.data, bin, sizeof(bin));
	dict_close(d);

	/* NOFOLD tables keep case both ways. */
	free(spec);
	spec = xasprintf("%s:%s", type, tpath("nofold"));
	d = dict_open(spec, DICT_FLAG_CREATE | DICT_FLAG_NOFOLD, NULL);
	assert_int_equal(dict_update(d, "Key", "v"), 0);
	dict_close(d);
	d = dict_open(spec, DICT_FLAG_NOFOLD, NULL);
	expect(d, "Key", DICT_FOUND, "v");
	expect(d, "key", DICT_NOTFOUND, NULL);
	dict_close(d);
	d = dict_open(spec, 0, NULL);
	expect(d, "Key", DICT_NOTFOUND, NULL);
	dict_close(d);

	free(spec);
	buf_free(&k);
	buf_free(&v);
}

static void
test_hash_roundtrip(void **state)
{
	db_roundtrip("hash");
}

static void
test_btree_roundtrip(void **state)
{
	db_roundtrip("btree");
}

static void
test_db_missing_is_retry(void **state)
{
	static const char *const kv[] = { "k", "v", NULL };
	char *spec = xasprintf("hash:%s", tpath("missing"));
	struct dict *d;

	d = dict_open(spec, 0, NULL);
	assert_non_null(d);
	assert_non_null(d->error);
	assert_non_null(strstr(d->error, "missing.db"));
	expect(d, "k", DICT_RETRY, NULL);
	expect(d, "anything", DICT_RETRY, NULL);
	assert_non_null(d->error);
	/* The table appears: the surrogate notices and recovers. */
	make_db("hash", "missing", 0, kv);
	expect(d, "k", DICT_FOUND, "v");
	assert_null(d->error);
	assert_true(dict_changed(d));
	dict_close(d);
	free(spec);
}

/* fill_random - deterministic junk */
static void
fill_random(unsigned char *p, size_t n, uint32_t seed)
{
	size_t i;

	for (i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (unsigned char)(seed >> 16);
	}
}

static void
test_db_corrupt_is_retry(void **state)
{
	static const char *const kv[] = { "k", "v", "k2", "v2", NULL };
	unsigned char junk[16384];
	struct buf k = BUF_INIT, v = BUF_INIT;
	struct dict *d;
	uint32_t seed;
	char *spec;

	spec = xasprintf("hash:%s", tpath("corrupt"));
	for (seed = 1; seed <= 8; seed++) {
		fill_random(junk, sizeof(junk), seed);
		write_file(tpath("corrupt.db"), junk, 512 * seed);
		d = dict_open(spec, 0, NULL);
		assert_non_null(d);
		expect(d, "k", DICT_RETRY, NULL);
		assert_non_null(d->error);
		assert_int_equal(dict_sequence(d, true, &k, &v), -1);
		dict_close(d);
	}
	/* An empty file (a writer that died before its first page). */
	write_file(tpath("corrupt.db"), "", 0);
	d = dict_open(spec, 0, NULL);
	expect(d, "k", DICT_RETRY, NULL);
	dict_close(d);
	/* Plain text where a table should be. */
	write_text(tpath("corrupt.db"), "k v\nthis is not a database\n");
	d = dict_open(spec, 0, NULL);
	expect(d, "k", DICT_RETRY, NULL);
	dict_close(d);
	free(spec);

	/* A btree file read as hash is the wrong kind of table, not an empty one. */
	make_db("btree", "kind", 0, kv);
	d = topen("hash", "kind", 0);
	expect(d, "k", DICT_RETRY, NULL);
	dict_close(d);
	d = topen("btree", "kind", 0);
	expect(d, "k", DICT_FOUND, "v");
	dict_close(d);
	buf_free(&k);
	buf_free(&v);
}

/* big_db - a table large enough to span many pages; returns its file size */
static off_t
big_db(const char *type, const char *name, int n)
{
	struct buf err = BUF_INIT;
	char *spec = xasprintf("%s:%s", type, tpath(name));
	char key[32], value[128];
	struct dict *w;
	struct stat st;
	int i;

	w = dict_open(spec, DICT_FLAG_CREATE, &err);
	assert_null(w->error);
	for (i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "key%d", i);
		snprintf(value, sizeof(value), "value %d %0*d", i, i % 100, 0);
		assert_int_equal(dict_update(w, key, value), 0);
	}
	assert_int_equal(dict_sync(w), 0);
	dict_close(w);
	free(spec);
	buf_free(&err);
	snprintf(value, sizeof(value), "%s.db", name);
	assert_int_equal(stat(tpath(value), &st), 0);
	return st.st_size;
}

static void
test_db_damaged_pages(void **state)
{
	static const char *const types[] = { "hash", "btree" };
	struct buf v = BUF_INIT;
	unsigned char *data;
	char key[32], value[128], file[64];
	struct dict *d;
	off_t size;
	size_t t;
	int fd, i, round, found, retry;
	uint32_t seed = 7;

	for (t = 0; t < 2; t++) {
		size = big_db(types[t], "damaged", 1500);
		snprintf(file, sizeof(file), "damaged.db");
		data = xmalloc((size_t)size);
		fd = open(tpath(file), O_RDONLY);
		assert_int_equal(read(fd, data, (size_t)size), size);
		close(fd);

		/* Cut off at a page boundary: not a silent "not found" for the lost keys. */
		/* 64 KiB is a multiple of every Berkeley DB page size. */
		assert_true(size > 2 * 65536);
		write_file(tpath(file), data, (size_t)size / 2 / 65536 * 65536);
		d = topen(types[t], "damaged", 0);
		expect(d, "key1", DICT_RETRY, NULL);
		assert_non_null(strstr(d->error, "truncated"));
		dict_close(d);

		/*
		 * Damage past the metadata page: every answer is either right or
		 * try-again (page checksums), never a wrong value, never a crash.
		 */
		for (round = 0, found = retry = 0; round < 12; round++) {
			unsigned char *copy = xmemdup(data, (size_t)size);

			for (i = 0; i < 1 + round; i++) {
				seed = seed * 1103515245u + 12345u;
				copy[4096 + (seed >> 8) % ((uint32_t)size - 4096)] ^=
				    (unsigned char)(1 + (seed & 0x7f));
			}
			write_file(tpath(file), copy, (size_t)size);
			free(copy);
			d = topen(types[t], "damaged", 0);
			for (i = 0; i < 1500; i += 3) {
				snprintf(key, sizeof(key), "key%d", i);
				snprintf(value, sizeof(value), "value %d %0*d", i, i % 100, 0);
				switch (dict_lookup(d, key, &v)) {
				case DICT_FOUND:
					assert_string_equal(buf_str(&v), value);
					found++;
					break;
				case DICT_RETRY:
					retry++;
					break;
				default:
					fail_msg("%s round %d: %s not found in a damaged table", types[t], round, key);
				}
			}
			dict_close(d);
		}
		assert_true(retry > 0);
		free(data);
	}
	buf_free(&v);
}

static void
test_db_rebuild_noticed(void **state)
{
	static const char *const v1[] = { "k", "one", "gone", "x", NULL };
	static const char *const v2[] = { "k", "two", NULL };
	char *spec = xasprintf("hash:%s", tpath("rebuilt"));
	unsigned char junk[4096];
	struct dict *d;

	/* With the real interval: not noticed at once, noticed after it. */
	dict_check_interval_ms = DICT_CHECK_SECONDS * 1000LL;
	make_db("hash", "rebuilt", 0, v1);
	d = dict_open(spec, 0, NULL);
	expect(d, "k", DICT_FOUND, "one");
	replace_db("hash", "rebuilt", v2);
	expect(d, "k", DICT_FOUND, "one");
	assert_false(dict_changed(d));
	usleep(DICT_CHECK_SECONDS * 1000000 + 100000);
	expect(d, "k", DICT_FOUND, "two");
	expect(d, "gone", DICT_NOTFOUND, NULL);
	assert_true(dict_changed(d));
	dict_close(d);

	/* A broken replacement turns lookups into try-again until a good one comes. */
	dict_check_interval_ms = 0;
	d = dict_open(spec, 0, NULL);
	expect(d, "k", DICT_FOUND, "two");
	fill_random(junk, sizeof(junk), 42);
	write_file(tpath("junk"), junk, sizeof(junk));
	assert_int_equal(rename(tpath("junk"), tpath("rebuilt.db")), 0);
	expect(d, "k", DICT_RETRY, NULL);
	assert_non_null(d->error);
	expect(d, "k", DICT_RETRY, NULL);
	replace_db("hash", "rebuilt", v1);
	expect(d, "k", DICT_FOUND, "one");
	assert_null(d->error);
	dict_close(d);
	free(spec);
}

static void
test_rename_over_noticed_without_path(void **state)
{
	static const char *const v1[] = { "k", "one", NULL };
	char *spec = xasprintf("hash:%s", tpath("chroot"));
	struct dict *d;

	/* As in a chroot: the path is gone, but the open file lost its last link. */
	make_db("hash", "chroot", 0, v1);
	d = dict_open(spec, 0, NULL);
	expect(d, "k", DICT_FOUND, "one");
	assert_false(dict_changed(d));
	assert_int_equal(unlink(tpath("chroot.db")), 0);
	assert_true(dict_changed(d));
	/* The old data keep serving until the daemon exits. */
	expect(d, "k", DICT_FOUND, "one");
	dict_close(d);
	free(spec);
}

/* ---------------------------------------------------------------- texthash: */

static void
test_texthash(void **state)
{
	struct buf k = BUF_INIT, v = BUF_INIT;
	char *spec = xasprintf("texthash:%s", tpath("text"));
	struct dict *d;

	write_text(tpath("text"), "# users\n"
	                          "Alice  alice@example.com\n"
	                          "bob bob@example.com,\n"
	                          "    carol@example.com\n"
	                          "\n"
	                          "alice later@example.com\n");
	d = dict_open(spec, 0, NULL);
	assert_null(d->error);
	assert_non_null(strstr(log_last_message(), "text:6: duplicate"));
	expect(d, "alice", DICT_FOUND, "later@example.com");
	expect(d, "ALICE", DICT_FOUND, "later@example.com");
	expect(d, "bob", DICT_FOUND, "bob@example.com, carol@example.com");
	expect(d, "carol@example.com", DICT_NOTFOUND, NULL);
	assert_int_equal(dict_update(d, "x", "y"), -1);
	assert_int_equal(dict_sequence(d, true, &k, &v), 0);
	assert_string_equal(buf_str(&k), "alice");
	assert_int_equal(dict_sequence(d, false, &k, &v), 0);
	assert_string_equal(buf_str(&k), "bob");
	assert_int_equal(dict_sequence(d, false, &k, &v), 1);

	/* Rewritten in place (new mtime) and by rename: both noticed. */
	write_text(tpath("text"), "alice changed\n");
	{
		struct timespec ts[2] = { { 0, UTIME_OMIT }, { 1000000000, 0 } };

		assert_int_equal(utimensat(AT_FDCWD, tpath("text"), ts, 0), 0);
	}
	expect(d, "alice", DICT_FOUND, "changed");
	expect(d, "bob", DICT_NOTFOUND, NULL);
	write_text(tpath("text2"), "bob back\n");
	assert_int_equal(rename(tpath("text2"), tpath("text")), 0);
	expect(d, "bob", DICT_FOUND, "back");
	/* A syntax error: try-again with file:line, then recovery. */
	write_text(tpath("text2"), "ok 1\n  \nbroken\n");
	assert_int_equal(rename(tpath("text2"), tpath("text")), 0);
	expect(d, "ok", DICT_RETRY, NULL);
	assert_non_null(strstr(d->error, "text:3:"));
	write_text(tpath("text2"), "ok 2\n");
	assert_int_equal(rename(tpath("text2"), tpath("text")), 0);
	expect(d, "ok", DICT_FOUND, "2");
	dict_close(d);

	/* NOFOLD; aliases syntax. */
	write_text(tpath("text"), "Root: Admin, \"|/bin/cmd arg\"\n\"two words\": x\n");
	d = dict_open(spec, DICT_FLAG_NOFOLD | DICT_FLAG_ALIASES, NULL);
	assert_null(d->error);
	expect(d, "Root", DICT_FOUND, "Admin, \"|/bin/cmd arg\"");
	expect(d, "root", DICT_NOTFOUND, NULL);
	expect(d, "two words", DICT_FOUND, "x");
	dict_close(d);
	/* Without DICT_FLAG_ALIASES the same file is "key value". */
	d = dict_open(spec, 0, NULL);
	expect(d, "root:", DICT_FOUND, "Admin, \"|/bin/cmd arg\"");
	dict_close(d);

	/* Missing, and not a regular file. */
	d = topen("texthash", "nothere", 0);
	expect(d, "k", DICT_RETRY, NULL);
	assert_non_null(strstr(d->error, "nothere"));
	write_text(tpath("nothere"), "k v\n");
	expect(d, "k", DICT_FOUND, "v");
	dict_close(d);
	assert_int_equal(mkfifo(tpath("fifo"), 0600), 0);
	d = topen("texthash", "fifo", 0);
	expect(d, "k", DICT_RETRY, NULL);
	dict_close(d);

	free(spec);
	buf_free(&k);
	buf_free(&v);
}

/* ---------------------------------------------------------------- lists */

static void
test_lists(void **state)
{
	static const char *const kv[] = { "c", "from-hash", NULL };
	static const struct {
		const char *specs;
		const char *key;
		enum dict_result want;
		const char *value;
	} cases[] = {
		{ "inline:{a=1}, inline:{a=2 b=2}", "a", DICT_FOUND, "1" },
		{ "inline:{a=1}, inline:{a=2 b=2}", "b", DICT_FOUND, "2" },
		{ "inline:{a=1}, inline:{a=2 b=2}", "z", DICT_NOTFOUND, NULL },
		{ "inline:{a=1} hash:@DIR@/absent, inline:{b=2}", "a", DICT_FOUND, "1" },
		{ "inline:{a=1} hash:@DIR@/absent, inline:{b=2}", "b", DICT_RETRY, NULL },
		{ "inline:{a=1} hash:@DIR@/absent, inline:{b=2}", "z", DICT_RETRY, NULL },
		{ "inline:{ {a = x y}, b=c },static:fallback", "A", DICT_FOUND, "x y" },
		{ "inline:{ {a = x y}, b=c },static:fallback", "q", DICT_FOUND, "fallback" },
		{ "hash:@DIR@/listdb, static:{no match}", "C", DICT_FOUND, "from-hash" },
		{ "hash:@DIR@/listdb, static:{no match}", "d", DICT_FOUND, "no match" },
		{ "", "a", DICT_NOTFOUND, NULL },
		{ " , ,\n", "a", DICT_NOTFOUND, NULL },
	};
	struct buf v = BUF_INIT, err = BUF_INIT, specs = BUF_INIT;
	struct dict_list *l;
	const char *p, *at;
	size_t i;

	make_db("hash", "listdb", 0, kv);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		buf_reset(&specs);
		for (p = cases[i].specs; (at = strstr(p, "@DIR@")) != NULL; p = at + 5) {
			buf_append(&specs, p, (size_t)(at - p));
			buf_puts(&specs, tmpdir);
		}
		buf_puts(&specs, p);
		l = dict_list_open(buf_str(&specs), 0, &err);
		if (l == NULL)
			fail_msg("\"%s\": %s", buf_str(&specs), buf_str(&err));
		if (dict_list_lookup(l, cases[i].key, &v) != cases[i].want)
			fail_msg("\"%s\" key %s: want %d", buf_str(&specs), cases[i].key, cases[i].want);
		if (cases[i].want == DICT_FOUND)
			assert_string_equal(buf_str(&v), cases[i].value);
		if (cases[i].want == DICT_RETRY)
			assert_non_null(strstr(dict_list_error(l), "absent.db"));
		else
			assert_string_equal(dict_list_error(l), "");
		assert_false(dict_list_changed(l));
		dict_list_close(l);
	}

	/* One bad spec fails the whole list. */
	buf_reset(&err);
	assert_null(dict_list_open("inline:{a=1}, nosuch:x", 0, &err));
	assert_non_null(strstr(buf_str(&err), "unsupported table type: nosuch"));
	buf_reset(&err);
	assert_null(dict_list_open("inline:{a=1, static:x", 0, &err));
	/* Too many tables. */
	buf_reset(&specs);
	for (i = 0; i <= DICT_LIST_MAX; i++)
		buf_puts(&specs, "static:x ");
	buf_reset(&err);
	assert_null(dict_list_open(buf_str(&specs), 0, &err));
	assert_non_null(strstr(buf_str(&err), "more than"));
	/* NULL is the empty list. */
	l = dict_list_open(NULL, 0, &err);
	assert_int_equal(dict_list_lookup(l, "a", &v), DICT_NOTFOUND);
	dict_list_close(l);

	buf_free(&v);
	buf_free(&err);
	buf_free(&specs);
}

/* ---------------------------------------------------------------- text parser */

struct collect {
	struct buf out;
	int stop_at; /* line whose entry the callback refuses, or 0 */
};

static int
collect(const char *key, const char *value, int line, void *arg)
{
	struct collect *c = arg;

	if (line == c->stop_at)
		return 1;
	buf_printf(&c->out, "%s=%s@%d;", key, value, line);
	return 0;
}

static void
test_text_parse(void **state)
{
	static const struct {
		const char *text;
		size_t len; /* 0: strlen */
		int flags;
		int rc;
		const char *out; /* entries seen (also on failure, those before it) */
		const char *err; /* substring of the error */
	} cases[] = {
		{ "a 1\nb 2\n", 0, 0, 0, "a=1@1;b=2@2;", NULL },
		{ "a   1 two  \t\n", 0, 0, 0, "a=1 two@1;", NULL },
		{ "a\t1\n", 0, 0, 0, "a=1@1;", NULL },
		{ "# c\n\n  \n\t\na 1\n", 0, 0, 0, "a=1@5;", NULL },
		{ "a 1\n 2\n\t3\nb x\n", 0, 0, 0, "a=1 2 3@1;b=x@4;", NULL },
		{ "a 1\n# comment\n 2\n", 0, 0, 0, "a=1 2@1;", NULL },
		{ "a 1\n   # indented comment\n", 0, 0, 0, "a=1@1;", NULL },
		{ "a 1\r\nb 2\r\n", 0, 0, 0, "a=1@1;b=2@2;", NULL },
		{ "a 1", 0, 0, 0, "a=1@1;", NULL },
		{ "a\n 1\n", 0, 0, 0, "a=1@1;", NULL },
		{ "", 0, 0, 0, "", NULL },
		{ "\n\n", 0, 0, 0, "", NULL },
		{ "a b#c\n", 0, 0, 0, "a=b#c@1;", NULL },
		{ " a 1\n", 0, 0, -1, "", ":1: continuation line" },
		{ "# c\n\tx\n", 0, 0, -1, "", ":2: continuation line" },
		{ "a\n", 0, 0, -1, "", ":1: no value for \"a\"" },
		{ "a 1\nb\n", 0, 0, -1, "a=1@1;", ":2: no value" },
		{ "a 1\nb \0x\n", 10, 0, -1, "", ":2: NUL byte" },
		{ "\0", 1, 0, -1, "", ":1: NUL byte" },
		/* aliases(5) */
		{ "root: admin, \"|/bin/cmd\"\npostmaster:root\n", 0, DICT_TEXT_ALIASES, 0,
		    "root=admin, \"|/bin/cmd\"@1;postmaster=root@2;", NULL },
		{ "\"a b\": x\n", 0, DICT_TEXT_ALIASES, 0, "a b=x@1;", NULL },
		{ "\"a \\\"q\\\"\" : x\n", 0, DICT_TEXT_ALIASES, 0, "a \"q\"=x@1;", NULL },
		{ "root :x\n", 0, DICT_TEXT_ALIASES, 0, "root=x@1;", NULL },
		{ "list: a,\n  b,\n  c\n", 0, DICT_TEXT_ALIASES, 0, "list=a, b, c@1;", NULL },
		{ "x: :include:/etc/list\n", 0, DICT_TEXT_ALIASES, 0, "x=:include:/etc/list@1;", NULL },
		{ "x: /var/mail/x, y:z\n", 0, DICT_TEXT_ALIASES, 0, "x=/var/mail/x, y:z@1;", NULL },
		{ "root admin\n", 0, DICT_TEXT_ALIASES, -1, "", ":1: missing ':'" },
		{ "a b: c\n", 0, DICT_TEXT_ALIASES, -1, "", ":1: white space in a name" },
		{ ": x\n", 0, DICT_TEXT_ALIASES, -1, "", ":1: empty name" },
		{ "\"\": x\n", 0, DICT_TEXT_ALIASES, -1, "", ":1: empty name" },
		{ "\"abc: x\n", 0, DICT_TEXT_ALIASES, -1, "", ":1: unterminated quoted name" },
		{ "\"abc\" x\n", 0, DICT_TEXT_ALIASES, -1, "", ":1: missing ':' after the quoted name" },
		{ "ok: 1\nroot:\n", 0, DICT_TEXT_ALIASES, -1, "ok=1@1;", ":2: no value for \"root\"" },
		{ "  root: x\n", 0, DICT_TEXT_ALIASES, -1, "", ":1: continuation line" },
	};
	struct collect c = { BUF_INIT, 0 };
	struct buf err = BUF_INIT;
	const char *path = tpath("parse");
	size_t i;
	int rc;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		write_file(path, cases[i].text, cases[i].len ? cases[i].len : strlen(cases[i].text));
		buf_reset(&c.out);
		buf_reset(&err);
		rc = dict_text_parse(path, cases[i].flags, collect, &c, &err);
		if (rc != cases[i].rc)
			fail_msg("case %zu: rc %d, want %d (%s)", i, rc, cases[i].rc, buf_str(&err));
		if (strcmp(buf_str(&c.out), cases[i].out) != 0)
			fail_msg("case %zu: entries \"%s\", want \"%s\"", i, buf_str(&c.out), cases[i].out);
		if (cases[i].err != NULL) {
			if (strstr(buf_str(&err), cases[i].err) == NULL)
				fail_msg("case %zu: error \"%s\" lacks \"%s\"", i, buf_str(&err), cases[i].err);
			/* Errors name the file. */
			assert_memory_equal(buf_str(&err), path, strlen(path));
		} else {
			assert_int_equal(buf_len(&err), 0);
		}
	}
	buf_free(&c.out);
	buf_free(&err);
}

static void
test_text_parse_limits(void **state)
{
	struct collect c = { BUF_INIT, 0 };
	struct buf text = BUF_INIT, err = BUF_INIT;
	const char *path = tpath("limits");
	size_t i;

	/* A line of exactly DICT_TEXT_LINE_MAX bytes is fine; one more is not. */
	buf_puts(&text, "k ");
	for (i = 2; i < DICT_TEXT_LINE_MAX; i++)
		buf_putc(&text, 'x');
	buf_putc(&text, '\n');
	write_file(path, text.data, buf_len(&text));
	assert_int_equal(dict_text_parse(path, 0, collect, &c, &err), 0);
	assert_int_equal(buf_len(&c.out), 1 + 1 + (DICT_TEXT_LINE_MAX - 2) + 3);

	buf_truncate(&text, buf_len(&text) - 1);
	buf_puts(&text, "x\n");
	write_file(path, text.data, buf_len(&text));
	buf_reset(&c.out);
	assert_int_equal(dict_text_parse(path, 0, collect, &c, &err), -1);
	assert_non_null(strstr(buf_str(&err), ":1: line longer than"));
	assert_int_equal(buf_len(&c.out), 0);

	/* Also without a newline at all (a file that is one long line). */
	buf_truncate(&text, buf_len(&text) - 1);
	write_file(path, text.data, buf_len(&text));
	buf_reset(&err);
	assert_int_equal(dict_text_parse(path, 0, collect, &c, &err), -1);
	assert_non_null(strstr(buf_str(&err), "line longer than"));

	/* A key over DICT_KEY_MAX. */
	buf_reset(&text);
	for (i = 0; i <= DICT_KEY_MAX; i++)
		buf_putc(&text, 'k');
	buf_puts(&text, " v\n");
	write_file(path, text.data, buf_len(&text));
	buf_reset(&err);
	assert_int_equal(dict_text_parse(path, 0, collect, &c, &err), -1);
	assert_non_null(strstr(buf_str(&err), ":1: key longer than"));

	/* Continuations that add up past DICT_VALUE_MAX. */
	buf_reset(&text);
	buf_puts(&text, "k v\n");
	for (i = 0; i < DICT_VALUE_MAX / 60000 + 1; i++) {
		buf_putc(&text, ' ');
		while (buf_len(&text) % 60000 != 0)
			buf_putc(&text, 'y');
		buf_putc(&text, '\n');
	}
	write_file(path, text.data, buf_len(&text));
	buf_reset(&err);
	assert_int_equal(dict_text_parse(path, 0, collect, &c, &err), -1);
	assert_non_null(strstr(buf_str(&err), ":1: entry longer than"));

	/* Missing file; a callback that refuses an entry. */
	buf_reset(&err);
	assert_int_equal(dict_text_parse(tpath("no-such-file"), 0, collect, &c, &err), -1);
	assert_non_null(strstr(buf_str(&err), "no-such-file"));
	assert_non_null(strstr(buf_str(&err), "No such file"));
	write_text(path, "a 1\nb 2\nc 3\n");
	buf_reset(&err);
	buf_reset(&c.out);
	c.stop_at = 2;
	assert_int_equal(dict_text_parse(path, 0, collect, &c, &err), -1);
	assert_string_equal(buf_str(&c.out), "a=1@1;");
	assert_non_null(strstr(buf_str(&err), ":2:"));

	buf_free(&c.out);
	buf_free(&text);
	buf_free(&err);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_specs),
		cmocka_unit_test(test_inline_static_lookups),
		cmocka_unit_test(test_inline_duplicate_warns),
		cmocka_unit_test(test_read_only_types_refuse_writes),
		cmocka_unit_test(test_key_limits),
		cmocka_unit_test(test_hash_roundtrip),
		cmocka_unit_test(test_btree_roundtrip),
		cmocka_unit_test(test_db_missing_is_retry),
		cmocka_unit_test(test_db_corrupt_is_retry),
		cmocka_unit_test(test_db_damaged_pages),
		cmocka_unit_test(test_db_rebuild_noticed),
		cmocka_unit_test(test_rename_over_noticed_without_path),
		cmocka_unit_test(test_texthash),
		cmocka_unit_test(test_lists),
		cmocka_unit_test(test_text_parse),
		cmocka_unit_test(test_text_parse_limits),
	};

	/* Warnings go nowhere; tests read them back with log_last_message(). */
	log_init("dict_test", 0);
	return cmocka_run_group_tests(tests, setup, teardown);
}
