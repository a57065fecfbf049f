/*
 * postern map - build, query, list and edit lookup tables.
 *
 *   postern map [-c DIR] [-a] [-f] [-q key | -d key | -s] [type:]file
 *
 * Without -q, -d or -s it builds "file.db" from the text "file" (the
 * format of dict_text_parse(); aliases(5) syntax with -a).  The new
 * table is written to a temporary file beside the old one, synced, and
 * renamed over it, so daemons reading the table see either the old or
 * the new one, whole; a source error leaves the old table untouched.
 * Duplicate keys: the later entry wins, with a warning naming file:line
 * (Postfix's postmap keeps the first; "last wins" matches how texthash:
 * and main.cf treat repeated names).  Keys are folded to lower case
 * unless -f.  The .db gets the source's read permissions (and, when run
 * as root, its owner), so a secret source stays secret.
 *
 * Concurrent runs on one table serialize with flock() on the current
 * .db; readers never lock (they get whole files by rename).
 *
 * Called by admins and by newaliases; trusts the table sources no more
 * than any input (dict_text_parse bounds everything).
 *
 * Exit status: build 0 ok, 1 failed; -q 0 found, 1 not found, 2 error or
 * try-again; -d 0 deleted, 1 not found, 2 error; -s 0 ok, 2 error; usage
 * errors 2.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "cfg.h"
#include "dict.h"
#include "log.h"
#include "postern.h"
#include "str.h"
#include "xalloc.h"

enum map_mode {
	MAP_BUILD,
	MAP_QUERY,
	MAP_DELETE,
	MAP_DUMP,
};

struct map_opts {
	enum map_mode mode;
	const char *key; /* -q, -d */
	bool aliases;    /* -a */
	bool nofold;     /* -f */
};

/* The temporary file being written, removed if we die half-way. */
static char *map_tmp;

static void
map_cleanup(void)
{
	if (map_tmp != NULL)
		(void)unlink(map_tmp);
}

static void map_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
map_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "postern: map: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int
map_usage(void)
{
	fprintf(stderr, "usage: postern map [-c DIR] [-a] [-f] [-q key | -d key | -s] [type:]file\n");
	return 2;
}

/* map_config - read main.cf once, when a default is needed */
static void
map_config(void)
{
	static bool loaded;

	if (!loaded) {
		cli_load_config();
		loaded = true;
	}
}

/* map_default_type - default_database_type from main.cf ("hash" if unset) */
static const char *
map_default_type(void)
{
	const char *t;

	map_config();
	t = cfg_str(P_DEFAULT_DATABASE_TYPE);
	return t != NULL && *t != 0 ? t : "hash";
}

/*
 * map_split - "type:file" into its parts; a prefix that is not a known
 * type is part of the file name (names may contain colons).
 */
static int
map_split(const char *arg, char **type, char **file)
{
	const char *colon = strchr(arg, ':');
	const char *def;
	char *t;

	if (colon != NULL && colon != arg) {
		t = xstrndup(arg, (size_t)(colon - arg));
		if (dict_type_known(t)) {
			*type = t;
			*file = xstrdup(colon + 1);
			if (**file == 0) {
				map_error("%s: empty file name", arg);
				free(*type);
				free(*file);
				return -1;
			}
			return 0;
		}
		free(t);
	}
	def = map_default_type();
	if (!dict_type_known(def)) {
		map_error("default_database_type: unsupported table type: %s", def);
		return -1;
	}
	*type = xstrdup(def);
	*file = xstrdup(arg);
	return 0;
}

static bool
map_is_db(const char *type)
{
	return strcmp(type, "hash") == 0 || strcmp(type, "btree") == 0;
}

/*
 * map_lock - an exclusive lock on the file now at path, so that two runs
 * on one table do not lose each other's changes; -1 when there is no
 * file yet.  A file renamed over while we waited is locked afresh.
 */
static int
map_lock(const char *path)
{
	struct stat a, b;
	int fd, tries;

	for (tries = 0; tries < 10; tries++) {
		if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) < 0)
			return -1;
		if (flock(fd, LOCK_EX) != 0) {
			close(fd);
			return -1;
		}
		if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
			return fd;
		close(fd);
	}
	return -1;
}

/* map_tmp_create - a new, empty temporary file beside dbpath with the given mode and owner */
static int
map_tmp_create(const char *dbpath, mode_t mode, const struct stat *owner)
{
	int fd;

	map_tmp = xasprintf("%s.tmpXXXXXX", dbpath);
	if ((fd = mkostemp(map_tmp, O_CLOEXEC)) < 0) {
		map_error("cannot create a temporary file %s: %s", map_tmp, strerror(errno));
		free(map_tmp);
		map_tmp = NULL;
		return -1;
	}
	if (fchmod(fd, mode) != 0 ||
	    (owner != NULL && geteuid() == 0 && fchown(fd, owner->st_uid, owner->st_gid) != 0)) {
		map_error("%s: cannot set mode or owner: %s", map_tmp, strerror(errno));
		close(fd);
		map_cleanup();
		free(map_tmp);
		map_tmp = NULL;
		return -1;
	}
	return fd;
}

/* map_tmp_abandon - close and remove the temporary table after a failure */
static void
map_tmp_abandon(struct dict *d, int fd)
{
	dict_close(d);
	if (fd >= 0)
		close(fd);
	map_cleanup();
	free(map_tmp);
	map_tmp = NULL;
}

/* map_sync_dir - make the rename in path's directory durable */
static int
map_sync_dir(const char *path)
{
	char *copy = xstrdup(path);
	int fd, rc = 0;

	if ((fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 || fsync(fd) != 0)
		rc = -1;
	if (fd >= 0)
		close(fd);
	free(copy);
	return rc;
}

/*
 * map_commit - sync the new table, close it, fsync it and rename it over
 * dbpath.  Returns 0, or -1 after removing the temporary file.
 */
static int
map_commit(struct dict *d, int fd, const char *dbpath)
{
	if (dict_sync(d) != 0) {
		map_error("%s: %s", map_tmp, d->error ? d->error : "sync failed");
		map_tmp_abandon(d, fd);
		return -1;
	}
	dict_close(d);
	if (fsync(fd) != 0 || close(fd) != 0) {
		map_error("%s: %s", map_tmp, strerror(errno));
		map_tmp_abandon(NULL, -1);
		return -1;
	}
	if (rename(map_tmp, dbpath) != 0) {
		map_error("cannot rename %s to %s: %s", map_tmp, dbpath, strerror(errno));
		map_tmp_abandon(NULL, -1);
		return -1;
	}
	free(map_tmp);
	map_tmp = NULL;
	if (map_sync_dir(dbpath) != 0)
		map_error("%s: cannot sync the directory: %s", dbpath, strerror(errno));
	return 0;
}

struct map_build {
	struct dict *d;
	const char *src;
	struct buf *err;
	struct buf old;
};

static int
map_put(const char *key, const char *value, int line, void *arg)
{
	struct map_build *b = arg;

	if (dict_lookup(b->d, key, &b->old) == DICT_FOUND)
		log_warn("%s:%d: duplicate entry for \"%s\"; the later one wins", b->src, line, key);
	if (dict_update(b->d, key, value) != 0) {
		buf_printf(b->err, "%s:%d: %s", b->src, line, b->d->error ? b->d->error : "cannot store the entry");
		return -1;
	}
	return 0;
}

/* map_build_db - file -> file.db */
static int
map_build_db(const char *type, const char *file, const struct map_opts *o)
{
	struct map_build b = { NULL, file, NULL, BUF_INIT };
	struct buf err = BUF_INIT;
	struct stat src;
	char *dbpath;
	int fd, lockfd, rc = 1;

	if (stat(file, &src) != 0) {
		map_error("%s: %s", file, strerror(errno));
		return 1;
	}
	dbpath = xasprintf("%s.db", file);
	lockfd = map_lock(dbpath);
	/* The source's read bits, and always the owner's read and write. */
	if ((fd = map_tmp_create(dbpath, (src.st_mode & 0044) | 0600, &src)) < 0)
		goto out;
	b.d = dict_db_open(type, map_tmp, DICT_FLAG_CREATE | (o->nofold ? DICT_FLAG_NOFOLD : 0), &err);
	if (b.d == NULL || b.d->error != NULL) {
		map_error("%s", b.d ? b.d->error : buf_str(&err));
		map_tmp_abandon(b.d, fd);
		goto out;
	}
	b.err = &err;
	if (dict_text_parse(file, o->aliases ? DICT_TEXT_ALIASES : 0, map_put, &b, &err) != 0) {
		map_error("%s", buf_str(&err));
		map_tmp_abandon(b.d, fd);
		goto out;
	}
	if (map_commit(b.d, fd, dbpath) == 0)
		rc = 0;
out:
	if (lockfd >= 0)
		close(lockfd);
	buf_free(&b.old);
	buf_free(&err);
	free(dbpath);
	return rc;
}

/* map_build_one - build (or, for tables without a build step, check) one table */
static int
map_build_one(const char *type, const char *file, const struct map_opts *o)
{
	struct buf err = BUF_INIT;
	struct dict *d;
	char *spec;
	int rc = 0;

	if (map_is_db(type))
		return map_build_db(type, file, o);
	/* texthash:, inline:, static: are read as written: check that they parse. */
	spec = xasprintf("%s:%s", type, file);
	d = dict_open(spec, (o->nofold ? DICT_FLAG_NOFOLD : 0) | (o->aliases ? DICT_FLAG_ALIASES : 0), &err);
	if (d == NULL || d->error != NULL) {
		map_error("%s", d ? d->error : buf_str(&err));
		rc = 1;
	}
	dict_close(d);
	buf_free(&err);
	free(spec);
	return rc;
}

/* map_open - open type:file for reading, or print why not */
static struct dict *
map_open(const char *type, const char *file, const struct map_opts *o)
{
	struct buf err = BUF_INIT;
	struct dict *d;
	char *spec;

	spec = xasprintf("%s:%s", type, file);
	d = dict_open(spec, (o->nofold ? DICT_FLAG_NOFOLD : 0) | (o->aliases ? DICT_FLAG_ALIASES : 0), &err);
	if (d == NULL)
		map_error("%s", buf_str(&err));
	buf_free(&err);
	free(spec);
	return d;
}

/* map_query - print the value for o->key: 0 found, 1 not found, 2 error */
static int
map_query(const char *type, const char *file, const struct map_opts *o)
{
	struct buf value = BUF_INIT;
	struct dict *d;
	int rc;

	if ((d = map_open(type, file, o)) == NULL)
		return 2;
	switch (dict_lookup(d, o->key, &value)) {
	case DICT_FOUND:
		fwrite(value.data, 1, buf_len(&value), stdout);
		putchar('\n');
		rc = 0;
		break;
	case DICT_NOTFOUND:
		rc = 1;
		break;
	default:
		map_error("%s: %s", d->spec, d->error ? d->error : "lookup failed");
		rc = 2;
		break;
	}
	dict_close(d);
	buf_free(&value);
	return rc;
}

/* map_print_name - an alias name as aliases(5) reads it back (quoted when needed) */
static void
map_print_name(const struct buf *key)
{
	const unsigned char *p;
	bool quote = buf_len(key) == 0 || key->data[0] == '#' || key->data[0] == '"';

	for (p = key->data; p < key->data + buf_len(key); p++)
		if (*p == ' ' || *p == '\t' || *p == ':')
			quote = true;
	if (!quote) {
		fwrite(key->data, 1, buf_len(key), stdout);
		return;
	}
	putchar('"');
	for (p = key->data; p < key->data + buf_len(key); p++) {
		if (*p == '"' || *p == '\\')
			putchar('\\');
		putchar(*p);
	}
	putchar('"');
}

/* map_dump - every entry, "key value" (or "key: value" with -a) */
static int
map_dump(const char *type, const char *file, const struct map_opts *o)
{
	struct buf key = BUF_INIT, value = BUF_INIT;
	struct dict *d;
	bool first;
	int rc;

	if ((d = map_open(type, file, o)) == NULL)
		return 2;
	for (first = true; (rc = dict_sequence(d, first, &key, &value)) == 0; first = false) {
		if (o->aliases) {
			map_print_name(&key);
			fputs(": ", stdout);
		} else {
			fwrite(key.data, 1, buf_len(&key), stdout);
			putchar(' ');
		}
		fwrite(value.data, 1, buf_len(&value), stdout);
		putchar('\n');
	}
	if (rc < 0)
		map_error("%s: %s", d->spec, d->error ? d->error : "cannot list the table");
	dict_close(d);
	buf_free(&key);
	buf_free(&value);
	return rc < 0 ? 2 : 0;
}

/*
 * map_delete - remove o->key by writing a copy without it and renaming
 * that over the table (daemons reading the old file are never disturbed).
 */
static int
map_delete(const char *type, const char *file, const struct map_opts *o)
{
	struct buf err = BUF_INIT, key = BUF_INIT, value = BUF_INIT;
	struct dict *d = NULL, *w = NULL;
	char *dbpath, *want = NULL;
	size_t wlen, deleted = 0;
	struct stat st;
	int lockfd, fd = -1, rc = 2, seq;
	bool first;

	if (!map_is_db(type)) {
		map_error("%s:%s: only hash: and btree: tables can be edited; edit the text instead", type, file);
		return 2;
	}
	dbpath = xasprintf("%s.db", file);
	lockfd = map_lock(dbpath);
	if ((d = map_open(type, file, o)) == NULL)
		goto out;
	switch (dict_lookup(d, o->key, &value)) {
	case DICT_FOUND:
		break;
	case DICT_NOTFOUND:
		rc = 1;
		goto out;
	default:
		map_error("%s: %s", d->spec, d->error ? d->error : "lookup failed");
		goto out;
	}
	if (stat(dbpath, &st) != 0) {
		map_error("%s: %s", dbpath, strerror(errno));
		goto out;
	}
	if ((fd = map_tmp_create(dbpath, st.st_mode & 0666, &st)) < 0)
		goto out;
	/* Keys are copied exactly as stored: no folding on the way through. */
	w = dict_db_open(type, map_tmp, DICT_FLAG_CREATE | DICT_FLAG_NOFOLD, &err);
	if (w == NULL || w->error != NULL) {
		map_error("%s", w ? w->error : buf_str(&err));
		map_tmp_abandon(w, fd);
		goto out;
	}
	want = xstrdup(o->key);
	if (!o->nofold)
		str_lower(want);
	wlen = strlen(want);
	for (first = true; (seq = dict_sequence(d, first, &key, &value)) == 0; first = false) {
		if (buf_len(&key) == wlen && memcmp(key.data, want, wlen) == 0) {
			deleted++;
			continue;
		}
		if (w->ops->update(w, (const char *)key.data, buf_len(&key), value.data, buf_len(&value)) != 0) {
			map_error("%s: %s", map_tmp, w->error ? w->error : "write failed");
			map_tmp_abandon(w, fd);
			goto out;
		}
	}
	if (seq < 0) {
		map_error("%s: %s", d->spec, d->error ? d->error : "cannot read the table");
		map_tmp_abandon(w, fd);
		goto out;
	}
	if (deleted == 0) {
		map_tmp_abandon(w, fd);
		rc = 1;
		goto out;
	}
	if (map_commit(w, fd, dbpath) == 0)
		rc = 0;
out:
	dict_close(d);
	if (lockfd >= 0)
		close(lockfd);
	free(want);
	free(dbpath);
	buf_free(&err);
	buf_free(&key);
	buf_free(&value);
	return rc;
}

/* map_one - run the requested operation on one table */
static int
map_one(const char *arg, const struct map_opts *o)
{
	char *type, *file;
	int rc;

	if (map_split(arg, &type, &file) != 0)
		return o->mode == MAP_BUILD ? 1 : 2;
	switch (o->mode) {
	case MAP_QUERY:
		rc = map_query(type, file, o);
		break;
	case MAP_DELETE:
		rc = map_delete(type, file, o);
		break;
	case MAP_DUMP:
		rc = map_dump(type, file, o);
		break;
	default:
		rc = map_build_one(type, file, o);
		break;
	}
	free(type);
	free(file);
	return rc;
}

/*
 * map_all - the operation on every table of a list (alias_database):
 * a query stops at the first table that answers; a delete succeeds if
 * any table had the key; builds and dumps report the worst status.
 */
static int
map_all(const char *list, const struct map_opts *o)
{
	char *copy = xstrdup(list), *p = copy, *spec;
	int rc, worst = 0, deleted = 1, n = 0;

	while ((spec = str_token(&p, STR_LIST_SEP)) != NULL) {
		n++;
		rc = map_one(spec, o);
		if (o->mode == MAP_QUERY) {
			if (rc != 1) {
				free(copy);
				return rc;
			}
			worst = 1;
		} else if (o->mode == MAP_DELETE) {
			if (rc == 2)
				worst = 2;
			else if (rc == 0)
				deleted = 0;
		} else if (rc > worst) {
			worst = rc;
		}
	}
	free(copy);
	if (n == 0) {
		map_error("alias_database is empty");
		return 2;
	}
	if (o->mode == MAP_DELETE)
		return worst == 2 ? 2 : deleted;
	return worst;
}

int
cmd_map(int argc, char **argv)
{
	struct map_opts o = { MAP_BUILD, NULL, false, false };
	int ch, modes = 0, rc;

	while ((ch = getopt(argc, argv, "ac:d:fq:s")) != -1) {
		switch (ch) {
		case 'a':
			o.aliases = true;
			break;
		case 'c':
			cli_config_dir = optarg;
			break;
		case 'd':
			o.mode = MAP_DELETE;
			o.key = optarg;
			modes++;
			break;
		case 'f':
			o.nofold = true;
			break;
		case 'q':
			o.mode = MAP_QUERY;
			o.key = optarg;
			modes++;
			break;
		case 's':
			o.mode = MAP_DUMP;
			modes++;
			break;
		default:
			return map_usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (modes > 1 || argc > 1 || (argc == 0 && !o.aliases))
		return map_usage();
	log_set_cleanup(map_cleanup);
	if (argc == 1) {
		rc = map_one(argv[0], &o);
	} else {
		/* "postern map -a" (newaliases): every table in alias_database. */
		const char *list;

		map_config();
		list = cfg_str(P_ALIAS_DATABASE);
		rc = map_all(list ? list : "", &o);
	}
	if (fflush(stdout) != 0 || ferror(stdout)) {
		map_error("write error on standard output: %s", strerror(errno));
		return 2;
	}
	return rc;
}
