/*
 * dict_db - hash: and btree: tables on Berkeley DB 5.3's native API.
 *
 * "hash:/etc/postern/aliases" reads /etc/postern/aliases.db.  Readers are
 * the daemons; the only writer is "postern map", which builds a new file
 * under a temporary name and renames it over the old one, so a reader
 * never sees a half-written table and needs no locks: it notices the new
 * inode (dict.c) and reopens.
 *
 * Keys and values are stored as bytes without a trailing NUL.  The file
 * is input like any other: a file that is not a Berkeley DB of the right
 * kind, or one whose pages fail to read, makes the table answer
 * try-again with Berkeley DB's reason, never a crash or "not found".
 */
#include "config.h"

#include <db.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dict.h"
#include "dict_impl.h"
#include "log.h"
#include "xalloc.h"

struct db_priv {
	DB *db;
	DBC *cursor; /* open between sequence calls */
};

/* Berkeley DB reports details through a callback; keep the last one for our messages. */
static char db_errtext[256];

static void
db_errcall(const DB_ENV *env, const char *prefix, const char *msg)
{
	snprintf(db_errtext, sizeof(db_errtext), "%s", msg);
}

/* db_reason - the text for Berkeley DB error code rc, with the callback's detail if any */
static const char *
db_reason(int rc)
{
	static char text[384];

	if (db_errtext[0] != 0 && rc != ENOENT && rc != EACCES)
		snprintf(text, sizeof(text), "%s (%s)", db_strerror(rc), db_errtext);
	else
		snprintf(text, sizeof(text), "%s", db_strerror(rc));
	return text;
}

/*
 * db_version_mismatch - NULL when the library we run with is the one we
 * were compiled against; a file written by one minor version may not be
 * readable by another, so refuse rather than guess.
 */
static const char *
db_version_mismatch(void)
{
	static char why[128];
	static int checked;
	int major, minor, patch;

	if (!checked) {
		checked = 1;
		(void)db_version(&major, &minor, &patch);
		if (major != DB_VERSION_MAJOR || minor != DB_VERSION_MINOR)
			snprintf(why, sizeof(why),
			    "Berkeley DB run-time version %d.%d differs from compile-time version %d.%d", major, minor,
			    DB_VERSION_MAJOR, DB_VERSION_MINOR);
	}
	return why[0] ? why : NULL;
}

static enum dict_result
db_lookup(struct dict *d, const char *key, size_t klen, struct buf *value)
{
	struct db_priv *p = d->priv;
	DBT k, v;
	int rc;

	memset(&k, 0, sizeof(k));
	memset(&v, 0, sizeof(v));
	k.data = (void *)key;
	k.size = (u_int32_t)klen;
	db_errtext[0] = 0;
	rc = p->db->get(p->db, NULL, &k, &v, 0);
	if (rc == DB_NOTFOUND)
		return DICT_NOTFOUND;
	if (rc != 0) {
		dict_set_error(d, "lookup error: %s", db_reason(rc));
		return DICT_RETRY;
	}
	if (v.size > DICT_VALUE_MAX) {
		dict_set_error(d, "value longer than %d bytes", DICT_VALUE_MAX);
		return DICT_RETRY;
	}
	/* The DBT points into Berkeley DB's cache until the next call: copy now. */
	buf_set(value, v.data, v.size);
	return DICT_FOUND;
}

static int
db_update(struct dict *d, const char *key, size_t klen, const unsigned char *val, size_t vlen)
{
	struct db_priv *p = d->priv;
	DBT k, v;
	int rc;

	if (klen == 0 || klen > DICT_KEY_MAX || vlen > DICT_VALUE_MAX) {
		dict_set_error(d, "key or value out of bounds");
		return -1;
	}
	memset(&k, 0, sizeof(k));
	memset(&v, 0, sizeof(v));
	k.data = (void *)key;
	k.size = (u_int32_t)klen;
	v.data = (void *)val;
	v.size = (u_int32_t)vlen;
	db_errtext[0] = 0;
	if ((rc = p->db->put(p->db, NULL, &k, &v, 0)) != 0) {
		dict_set_error(d, "write error: %s", db_reason(rc));
		return -1;
	}
	return 0;
}

static int
db_remove(struct dict *d, const char *key, size_t klen)
{
	struct db_priv *p = d->priv;
	DBT k;
	int rc;

	memset(&k, 0, sizeof(k));
	k.data = (void *)key;
	k.size = (u_int32_t)klen;
	db_errtext[0] = 0;
	rc = p->db->del(p->db, NULL, &k, 0);
	if (rc == DB_NOTFOUND)
		return 1;
	if (rc != 0) {
		dict_set_error(d, "delete error: %s", db_reason(rc));
		return -1;
	}
	return 0;
}

static void
db_cursor_close(struct db_priv *p)
{
	if (p->cursor != NULL) {
		(void)p->cursor->close(p->cursor);
		p->cursor = NULL;
	}
}

static int
db_sequence(struct dict *d, bool first, struct buf *key, struct buf *value)
{
	struct db_priv *p = d->priv;
	DBT k, v;
	int rc;

	db_errtext[0] = 0;
	if (first)
		db_cursor_close(p);
	if (p->cursor == NULL) {
		if (!first)
			return 1; /* the previous pass ended */
		if ((rc = p->db->cursor(p->db, NULL, &p->cursor, 0)) != 0) {
			p->cursor = NULL;
			dict_set_error(d, "cannot read: %s", db_reason(rc));
			return -1;
		}
	}
	memset(&k, 0, sizeof(k));
	memset(&v, 0, sizeof(v));
	rc = p->cursor->get(p->cursor, &k, &v, first ? DB_FIRST : DB_NEXT);
	if (rc == DB_NOTFOUND) {
		db_cursor_close(p);
		return 1;
	}
	if (rc != 0) {
		db_cursor_close(p);
		dict_set_error(d, "read error: %s", db_reason(rc));
		return -1;
	}
	if (k.size > DICT_KEY_MAX || v.size > DICT_VALUE_MAX) {
		db_cursor_close(p);
		dict_set_error(
		    d, "entry longer than the limits (key %d, value %d bytes)", DICT_KEY_MAX, DICT_VALUE_MAX);
		return -1;
	}
	buf_set(key, k.data, k.size);
	buf_set(value, v.data, v.size);
	return 0;
}

static int
db_sync(struct dict *d)
{
	struct db_priv *p = d->priv;
	int rc;

	db_errtext[0] = 0;
	if ((rc = p->db->sync(p->db, 0)) != 0) {
		dict_set_error(d, "sync error: %s", db_reason(rc));
		return -1;
	}
	return 0;
}

static void
db_close(struct dict *d)
{
	struct db_priv *p = d->priv;
	int rc;

	if (p == NULL)
		return;
	db_cursor_close(p);
	db_errtext[0] = 0;
	/* Writers call dict_sync() first and check it; a failure here is all we can still report. */
	if ((rc = p->db->close(p->db, 0)) != 0 && (d->flags & DICT_FLAG_WRITE))
		log_warn("%s: close: %s", d->spec, db_reason(rc));
	free(p);
	d->priv = NULL;
	d->watch_fd = -1;
}

static const struct dict_ops db_reader_ops = {
	.lookup = db_lookup,
	.sequence = db_sequence,
	.close = db_close,
	.reopen = dict_reopen_by_name,
};

static const struct dict_ops db_writer_ops = {
	.lookup = db_lookup,
	.update = db_update,
	.remove = db_remove,
	.sequence = db_sequence,
	.sync = db_sync,
	.close = db_close,
};

/*
 * db_truncated - NULL, or why the file is shorter than its metadata says.
 * Berkeley DB reads a missing page as an empty one, so a cut-off copy
 * would answer "not found" for the keys it lost; make it try-again.
 */
static const char *
db_truncated(DB *db, DBTYPE dbtype)
{
	static char why[128];
	unsigned long long need = 0;
	DB_HASH_STAT *hs;
	DB_BTREE_STAT *bs;
	struct stat st;
	int fd;

	if (db->fd(db, &fd) != 0 || fstat(fd, &st) != 0)
		return "cannot stat the file";
	if (dbtype == DB_HASH) {
		if (db->stat(db, NULL, &hs, DB_FAST_STAT) != 0)
			return "cannot read the metadata";
		need = (unsigned long long)hs->hash_pagecnt * hs->hash_pagesize;
		free(hs);
	} else {
		if (db->stat(db, NULL, &bs, DB_FAST_STAT) != 0)
			return "cannot read the metadata";
		need = (unsigned long long)bs->bt_pagecnt * bs->bt_pagesize;
		free(bs);
	}
	if ((unsigned long long)st.st_size >= need)
		return NULL;
	snprintf(why, sizeof(why), "truncated file (%lld bytes, metadata says %llu)", (long long)st.st_size, need);
	return why;
}

/*
 * db_open_file - open "path" as a table of the given kind.  name is what
 * the dict is called (the part after "type:"); reopen goes by name, so
 * only a name-derived path may be watched.
 */
static struct dict *
db_open_file(const char *type, DBTYPE dbtype, const char *name, const char *path, int flags, bool watch)
{
	const char *why;
	struct db_priv *p;
	struct dict *d;
	u_int32_t oflags;
	DB *db;
	int rc, fd;

	if ((why = db_version_mismatch()) != NULL)
		return dict_surrogate(type, name, flags, NULL, "%s", why);

	/*
	 * No environment (NULL DB_ENV): the table is a single file with a
	 * private cache, no lock or log regions, and Berkeley DB never reads
	 * a DB_CONFIG file from the current directory, which a daemon does
	 * not control.  Safe for readers because writers replace the file by
	 * rename instead of changing it under them.
	 */
	if ((rc = db_create(&db, NULL, 0)) != 0)
		return dict_surrogate(
		    type, name, flags, watch ? path : NULL, "cannot open %s: %s", path, db_strerror(rc));
	db->set_errcall(db, db_errcall);
	/*
	 * Page checksums: Berkeley DB trusts the pages it reads, so a torn
	 * or damaged file could make it read out of bounds.  With checksums
	 * a damaged page is an error (try-again) instead.
	 */
	if ((rc = db->set_flags(db, DB_CHKSUM)) != 0) {
		(void)db->close(db, 0);
		return dict_surrogate(
		    type, name, flags, watch ? path : NULL, "cannot open %s: %s", path, db_strerror(rc));
	}
	if (flags & DICT_FLAG_CREATE)
		oflags = DB_CREATE | DB_TRUNCATE;
	else if (flags & DICT_FLAG_WRITE)
		oflags = 0;
	else
		oflags = DB_RDONLY;
	db_errtext[0] = 0;
	/* Mode 0644 before umask: "postern map" sets the final mode itself. */
	if ((rc = db->open(db, NULL, path, NULL, dbtype, oflags, 0644)) != 0) {
		why = db_reason(rc);
		d = dict_surrogate(type, name, flags, watch ? path : NULL, "cannot open %s: %s", path, why);
		(void)db->close(db, 0);
		return d;
	}
	if (!(flags & DICT_FLAG_CREATE) && (why = db_truncated(db, dbtype)) != NULL) {
		d = dict_surrogate(type, name, flags, watch ? path : NULL, "cannot open %s: %s", path, why);
		(void)db->close(db, 0);
		return d;
	}
	p = xcalloc(1, sizeof(*p));
	p->db = db;
	d = dict_alloc(type, name, flags, (flags & DICT_FLAG_WRITE) ? &db_writer_ops : &db_reader_ops);
	d->priv = p;
	if (watch) {
		if (db->fd(db, &fd) != 0)
			fd = -1;
		dict_watch(d, path, fd);
	}
	return d;
}

/* db_open_name - "type:name" opens name.db; readers watch it */
static struct dict *
db_open_name(const char *type, DBTYPE dbtype, const char *name, int flags)
{
	struct dict *d;
	char *path;

	path = xasprintf("%s.db", name);
	d = db_open_file(type, dbtype, name, path, flags, !(flags & DICT_FLAG_WRITE));
	free(path);
	return d;
}

struct dict *
dict_hash_open(const char *name, int flags, struct buf *err)
{
	return db_open_name("hash", DB_HASH, name, flags);
}

struct dict *
dict_btree_open(const char *name, int flags, struct buf *err)
{
	return db_open_name("btree", DB_BTREE, name, flags);
}

struct dict *
dict_db_open(const char *type, const char *path, int flags, struct buf *err)
{
	DBTYPE dbtype;

	if (strcmp(type, "hash") == 0)
		dbtype = DB_HASH;
	else if (strcmp(type, "btree") == 0)
		dbtype = DB_BTREE;
	else {
		if (err)
			buf_printf(err, "table type %s is not a Berkeley DB file", type);
		return NULL;
	}
	if (!(flags & (DICT_FLAG_WRITE | DICT_FLAG_CREATE))) {
		if (err)
			buf_printf(err, "%s:%s: dict_db_open is for writers", type, path);
		return NULL;
	}
	if (*path == 0) {
		if (err)
			buf_printf(err, "%s: empty file name", type);
		return NULL;
	}
	if (flags & DICT_FLAG_CREATE)
		flags |= DICT_FLAG_WRITE;
	return db_open_file(type, dbtype, path, path, flags, false);
}
