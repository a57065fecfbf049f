/*
 * dict_impl - what the table types (dict_db.c, dict_text.c,
 * dict_inline.c) share with the generic layer in dict.c.  Not for
 * callers of dict.h, except the unit test, which shortens the check
 * interval.
 *
 * A type's open function gets the name after "type:" and returns NULL
 * only for a malformed name (err says why); a table that exists in
 * principle but cannot be used is returned as a surrogate.  Keys reach
 * a type's lookup, update and remove already folded and length-checked.
 */
#ifndef POSTERN_DICT_IMPL_H
#define POSTERN_DICT_IMPL_H

#include <stdint.h>

#include "dict.h"

struct dict_type {
	const char *name;
	struct dict *(*open)(const char *name, int flags, struct buf *err);
};

/* How often (milliseconds) a reader stats its file; tests set it to 0. */
extern long long dict_check_interval_ms;

/* Allocate a dict with its names filled in; the caller sets priv. */
struct dict *dict_alloc(const char *type, const char *name, int flags, const struct dict_ops *ops);
/* Free what dict_alloc() made (not priv). */
void dict_free(struct dict *d);

/*
 * A table whose lookups answer DICT_RETRY with error set to the formatted
 * reason.  With a watch_path the surrogate notices when that file appears
 * or changes and then tries the real type again.
 */
struct dict *dict_surrogate(const char *type, const char *name, int flags, const char *watch_path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
bool dict_is_surrogate(const struct dict *d);

/* Replace dict->error (the reason lookups answer try-again). */
void dict_set_error(struct dict *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Watch "path" for replacement; fd is the descriptor the type reads
 * (or -1), whose identity is recorded so that a file swapped in between
 * the open and the fstat is noticed at the next check.
 */
void dict_watch(struct dict *d, const char *path, int fd);

/* reopen op for file types: open the type again by name and swap it in. */
int dict_reopen_by_name(struct dict *d);

/* The types. */
struct dict *dict_hash_open(const char *name, int flags, struct buf *err);
struct dict *dict_btree_open(const char *name, int flags, struct buf *err);
struct dict *dict_texthash_open(const char *name, int flags, struct buf *err);
struct dict *dict_inline_open(const char *name, int flags, struct buf *err);
struct dict *dict_static_open(const char *name, int flags, struct buf *err);
struct dict *dict_unix_open(const char *name, int flags, struct buf *err);

/*
 * dict_text.c: dict_text_parse() on a descriptor the caller opened
 * (texthash keeps it to watch); path is used in messages only.
 */
int dict_text_parse_fd(int fd, const char *path, int textflags,
    int (*fn)(const char *key, const char *value, int line, void *arg), void *arg, struct buf *err);

/*
 * An in-memory table (texthash:, inline:): entries kept in insertion
 * order for dict_sequence(), found through an open-addressing index with
 * a per-table random hash seed.
 */
struct dict_htab;
#define DICT_HTAB_MAX 16777216 /* entries in one in-memory table */

struct dict_htab *dict_htab_new(void);
void dict_htab_free(struct dict_htab *t);
/* Add or replace; returns 0 added, 1 replaced an existing key, -1 table full. */
int dict_htab_put(struct dict_htab *t, const char *key, size_t klen, const unsigned char *val, size_t vlen);
/* The value for key, or NULL. */
const unsigned char *dict_htab_get(const struct dict_htab *t, const char *key, size_t klen, size_t *vlen);
size_t dict_htab_count(const struct dict_htab *t);
/* Entry i (insertion order) into key and value; false past the end. */
bool dict_htab_entry(const struct dict_htab *t, size_t i, struct buf *key, struct buf *value);

/*
 * A table held in memory and loaded when opened (texthash:, unix:): priv
 * is a struct dict_memtab, and dict_memtab_ops serve it.
 */
struct dict_memtab {
	struct dict_htab *tab;
	int fd;     /* the source, kept open only to notice a rename-over (dict.c) */
	size_t seq; /* next entry for dict_sequence() */
};
extern const struct dict_ops dict_memtab_ops;

/* Fold ASCII upper case to lower case in place over n bytes. */
void dict_fold(char *s, size_t n);

#endif
