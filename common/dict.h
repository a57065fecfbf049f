/*
 * dict - lookup tables behind one interface, named "type:name".
 *
 *   hash:/path      Berkeley DB 5.3 hash file /path.db (built by "postern map")
 *   btree:/path     Berkeley DB 5.3 btree file /path.db
 *   texthash:/path  plain "key value" text, read into memory (no .db)
 *   inline:{k1=v1, { k2 = v with spaces }, ...}
 *   static:value    every key maps to value (static:{value with spaces})
 *   unix:passwd.byname  the system's users, read at open (local_recipient_maps)
 *
 * Every lookup answers found, not found, or try-again.  Try-again (an I/O
 * error, a table that cannot be opened, a corrupt file) must make the
 * caller defer, never treat the key as unknown: a table that fails to
 * open still returns a usable dict whose lookups all answer DICT_RETRY.
 *
 * Key convention: keys are stored and looked up as bytes without a
 * trailing NUL.  Unless DICT_FLAG_NOFOLD is given, keys are folded to
 * lower case (ASCII) both when a table is built and when it is queried,
 * as Postfix does for domains and addresses.  Values are returned as
 * stored.  Readers of hash:/btree:/texthash: notice a rebuilt file
 * (another inode or mtime) at most once per DICT_CHECK_SECONDS and reopen
 * it; dict_changed() tells a chrooted daemon that it should exit instead.
 */
#ifndef POSTERN_DICT_H
#define POSTERN_DICT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include "buf.h"

enum dict_result {
	DICT_FOUND = 0,
	DICT_NOTFOUND = 1,
	DICT_RETRY = 2,
};

/* dict_open() flags */
#define DICT_FLAG_NOFOLD  0x01 /* keys are case sensitive */
#define DICT_FLAG_WRITE   0x02 /* open for update (postern map) */
#define DICT_FLAG_CREATE  0x04 /* create a new, empty table (implies WRITE) */
#define DICT_FLAG_DUP_OK  0x08 /* later duplicate keys replace earlier ones silently */
#define DICT_FLAG_ALIASES 0x10 /* texthash: the file uses aliases(5) "name: value" syntax */

#define DICT_KEY_MAX       4096    /* longest key accepted */
#define DICT_VALUE_MAX     1048576 /* longest value returned */
#define DICT_CHECK_SECONDS 1

struct dict;

struct dict_ops {
	enum dict_result (*lookup)(struct dict *d, const char *key, size_t klen, struct buf *value);
	/* Optional (NULL = read-only table type). */
	int (*update)(struct dict *d, const char *key, size_t klen, const unsigned char *val, size_t vlen);
	int (*remove)(struct dict *d, const char *key, size_t klen); /* 0 removed, 1 not found, -1 error */
	/* Iterate: first=true starts over; returns 0 with key/value, 1 at the end, -1 on error. */
	int (*sequence)(struct dict *d, bool first, struct buf *key, struct buf *value);
	int (*sync)(struct dict *d);
	void (*close)(struct dict *d);
	/* Reopen after the file changed (may be NULL). */
	int (*reopen)(struct dict *d);
};

struct dict {
	const struct dict_ops *ops;
	char *type; /* "hash" */
	char *name; /* "/etc/postern/aliases" */
	char *spec; /* "hash:/etc/postern/aliases" */
	int flags;
	char *error; /* why the table answers try-again, or NULL */
	/* change detection for file-backed tables */
	char *watch_path; /* file to stat, or NULL */
	int watch_fd;     /* the open file (owned by the type), or -1: notices a rename-over in a chroot */
	dev_t dev;
	ino_t ino;
	struct timespec mtime;
	long long last_check; /* CLOCK_MONOTONIC milliseconds of the last stat */
	bool changed;
	bool warned_key; /* an over-long key was logged once */
	void *priv;      /* type-specific state */
};

/*
 * Open "type:name".  Returns NULL only for an unknown type or a malformed
 * spec (err says why); a table that exists but cannot be opened returns a
 * surrogate whose lookups answer DICT_RETRY with dict->error set.
 */
struct dict *dict_open(const char *spec, int flags, struct buf *err);
void dict_close(struct dict *d);

enum dict_result dict_lookup(struct dict *d, const char *key, struct buf *value);
int dict_update(struct dict *d, const char *key, const char *value);
int dict_remove(struct dict *d, const char *key);
int dict_sequence(struct dict *d, bool first, struct buf *key, struct buf *value);
/* Flush a writer's changes to the file; 0 or -1 (dict->error says why). */
int dict_sync(struct dict *d);

/*
 * Open a hash: or btree: file at exactly "path" (no ".db" appended) for
 * writing; DICT_FLAG_WRITE or DICT_FLAG_CREATE is required.  "postern map"
 * builds its temporary files with it.  Returns NULL with err for a bad
 * type or missing flag, else a dict (a surrogate with dict->error set
 * when the file cannot be opened or created).
 */
struct dict *dict_db_open(const char *type, const char *path, int flags, struct buf *err);

/* True when the backing file was replaced since the table was opened. */
bool dict_changed(struct dict *d);

/* Is "type" a table type this build knows? */
bool dict_type_known(const char *type);

/*
 * A list of tables as in main.cf ("hash:/a, texthash:/b"): lookups try
 * each in order; the first found wins; a try-again from an earlier table
 * stops the search with try-again.  Specs are separated by commas or
 * white space outside braces; at most DICT_LIST_MAX of them.  An empty
 * list is valid: every lookup answers not found.
 */
#define DICT_LIST_MAX 64
struct dict_list;
struct dict_list *dict_list_open(const char *specs, int flags, struct buf *err);
enum dict_result dict_list_lookup(struct dict_list *l, const char *key, struct buf *value);
bool dict_list_changed(struct dict_list *l);
/* Why the last dict_list_lookup() answered DICT_RETRY ("" if it did not). */
const char *dict_list_error(const struct dict_list *l);
void dict_list_close(struct dict_list *l);

/*
 * Text table source format shared by texthash: and "postern map":
 *   - "key value": the key is the first white-space-delimited word, the
 *     value the rest of the logical line with white space trimmed;
 *   - with DICT_TEXT_ALIASES, "name: value" (aliases(5)): the name ends at
 *     the first ':' and may not contain white space unless quoted
 *     ("name with spaces": value, with \" and \\ inside the quotes);
 *   - a line starting with white space continues the previous entry and
 *     is joined to it with one space; a continuation with no entry
 *     before it is an error;
 *   - lines whose first non-blank character is '#', and blank lines, are
 *     ignored (also between an entry and its continuation lines);
 *   - errors: a key without a value, a NUL byte, a physical line over
 *     DICT_TEXT_LINE_MAX bytes, an entry over DICT_VALUE_MAX bytes, a
 *     key over DICT_KEY_MAX bytes, a missing or non-regular file.
 * Keys are passed as written (callers fold).  The callback gets each
 * entry with the line it starts on; returning non-zero stops the parse
 * (the callback may have put its reason in err; otherwise "file:line:
 * entry rejected" is added).  Returns 0, or -1 with "file:line: reason"
 * in err.
 */
#define DICT_TEXT_ALIASES  0x01 /* "name: value" syntax (aliases(5)) */
#define DICT_TEXT_LINE_MAX 65536
int dict_text_parse(const char *path, int textflags, int (*fn)(const char *key, const char *value, int line, void *arg),
    void *arg, struct buf *err);

#endif
