/*
 * dict - the generic layer of the lookup tables (see dict.h).
 *
 * Every program that consults a table comes through here: dict_open()
 * finds the type in the registry, dict_lookup() checks and folds the key,
 * notices a rebuilt file and hands the key to the type.  The type code
 * (dict_db.c, dict_text.c, dict_inline.c) trusts that keys reaching it
 * are within DICT_KEY_MAX and folded as the flags ask; nothing here
 * trusts the table files or the keys callers pass, which come from the
 * network more often than not.
 *
 * A table that cannot be used is replaced by a surrogate whose lookups
 * answer DICT_RETRY: mail then waits in the queue until the admin fixes
 * the table, instead of bouncing because a broken table "did not find"
 * a valid recipient.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "dict.h"
#include "dict_impl.h"
#include "log.h"
#include "str.h"
#include "xalloc.h"

long long dict_check_interval_ms = DICT_CHECK_SECONDS * 1000LL;

static const struct dict_type dict_types[] = {
	{ "hash", dict_hash_open },
	{ "btree", dict_btree_open },
	{ "texthash", dict_texthash_open },
	{ "inline", dict_inline_open },
	{ "static", dict_static_open },
	{ "unix", dict_unix_open },
};

#define DICT_TYPE_NAME_MAX 32

/* dict_type_findn - the registry entry for the n-byte type name, or NULL */
static const struct dict_type *
dict_type_findn(const char *name, size_t n)
{
	size_t i;

	for (i = 0; i < sizeof(dict_types) / sizeof(dict_types[0]); i++)
		if (strlen(dict_types[i].name) == n && memcmp(dict_types[i].name, name, n) == 0)
			return &dict_types[i];
	return NULL;
}

bool
dict_type_known(const char *type)
{
	return type != NULL && dict_type_findn(type, strlen(type)) != NULL;
}

/* dict_now_ms - CLOCK_MONOTONIC in milliseconds (immune to clock steps) */
static long long
dict_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
dict_fold(char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (s[i] >= 'A' && s[i] <= 'Z')
			s[i] = (char)(s[i] + ('a' - 'A'));
}

struct dict *
dict_alloc(const char *type, const char *name, int flags, const struct dict_ops *ops)
{
	struct dict *d;

	d = xcalloc(1, sizeof(*d));
	d->ops = ops;
	d->type = xstrdup(type);
	d->name = xstrdup(name);
	d->spec = xasprintf("%s:%s", type, name);
	d->flags = flags;
	d->watch_fd = -1;
	d->last_check = dict_now_ms();
	return d;
}

void
dict_free(struct dict *d)
{
	free(d->type);
	free(d->name);
	free(d->spec);
	free(d->error);
	free(d->watch_path);
	free(d);
}

void
dict_set_error(struct dict *d, const char *fmt, ...)
{
	struct buf b = BUF_INIT;
	va_list ap;

	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	free(d->error);
	d->error = buf_export(&b);
}

/* ---------------------------------------------------------------- surrogate */

static enum dict_result
surrogate_lookup(struct dict *d, const char *key, size_t klen, struct buf *value)
{
	return DICT_RETRY;
}

static int
surrogate_update(struct dict *d, const char *key, size_t klen, const unsigned char *val, size_t vlen)
{
	return -1;
}

static int
surrogate_remove(struct dict *d, const char *key, size_t klen)
{
	return -1;
}

static int
surrogate_sequence(struct dict *d, bool first, struct buf *key, struct buf *value)
{
	return -1;
}

static int
surrogate_sync(struct dict *d)
{
	return -1;
}

static void
surrogate_close(struct dict *d)
{
}

static const struct dict_ops surrogate_ops = {
	.lookup = surrogate_lookup,
	.update = surrogate_update,
	.remove = surrogate_remove,
	.sequence = surrogate_sequence,
	.sync = surrogate_sync,
	.close = surrogate_close,
	.reopen = dict_reopen_by_name,
};

struct dict *
dict_surrogate(const char *type, const char *name, int flags, const char *watch_path, const char *fmt, ...)
{
	struct buf b = BUF_INIT;
	struct dict *d;
	va_list ap;

	d = dict_alloc(type, name, flags, &surrogate_ops);
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	d->error = buf_export(&b);
	/* Recovery needs something to watch; without it the surrogate is final. */
	if (watch_path != NULL)
		dict_watch(d, watch_path, -1);
	return d;
}

bool
dict_is_surrogate(const struct dict *d)
{
	return d->ops == &surrogate_ops;
}

/* ---------------------------------------------------------------- change detection */

void
dict_watch(struct dict *d, const char *path, int fd)
{
	struct stat st;
	int rc;

	if (d->watch_path != path) {
		free(d->watch_path);
		d->watch_path = xstrdup(path);
	}
	d->watch_fd = fd;
	rc = fd >= 0 ? fstat(fd, &st) : stat(path, &st);
	if (rc == 0) {
		d->dev = st.st_dev;
		d->ino = st.st_ino;
		d->mtime = st.st_mtim;
	} else {
		/* Nothing there yet: any file that appears later is a change. */
		d->dev = 0;
		d->ino = 0;
		d->mtime.tv_sec = 0;
		d->mtime.tv_nsec = 0;
	}
	d->last_check = dict_now_ms();
}

int
dict_reopen_by_name(struct dict *d)
{
	const struct dict_type *t;
	struct buf err = BUF_INIT;
	struct dict *nd;

	t = dict_type_findn(d->type, strlen(d->type));
	nd = t ? t->open(d->name, d->flags, &err) : NULL;
	if (nd == NULL)
		nd = dict_surrogate(d->type, d->name, d->flags, d->watch_path, "cannot reopen: %s",
		    buf_len(&err) ? buf_str(&err) : "unknown table type");
	buf_free(&err);

	/* Retire the old state, then move the new one into the caller's handle. */
	d->ops->close(d);
	d->ops = nd->ops;
	d->priv = nd->priv;
	nd->priv = NULL;
	free(d->error);
	d->error = nd->error;
	nd->error = NULL;
	if (nd->watch_path != NULL) {
		free(d->watch_path);
		d->watch_path = nd->watch_path;
		nd->watch_path = NULL;
	}
	d->watch_fd = nd->watch_fd;
	d->dev = nd->dev;
	d->ino = nd->ino;
	d->mtime = nd->mtime;
	d->last_check = nd->last_check;
	dict_free(nd);

	if (dict_is_surrogate(d)) {
		log_warn("%s: table changed and cannot be reopened: %s", d->spec, d->error);
		return -1;
	}
	log_info("%s: table changed, reopened", d->spec);
	return 0;
}

/*
 * dict_check - notice a replaced or modified file, at most once per
 * interval.  When the path cannot be seen (a chrooted daemon) a file
 * renamed over leaves the open one with no links, which is enough to
 * set the changed flag; the old data keep being served until the daemon
 * exits.
 */
static void
dict_check(struct dict *d)
{
	struct stat st;
	long long now;

	if (d->watch_path == NULL)
		return;
	now = dict_now_ms();
	if (now - d->last_check < dict_check_interval_ms)
		return;
	d->last_check = now;
	if (stat(d->watch_path, &st) == 0) {
		if (st.st_dev == d->dev && st.st_ino == d->ino && st.st_mtim.tv_sec == d->mtime.tv_sec &&
		    st.st_mtim.tv_nsec == d->mtime.tv_nsec)
			return;
		d->changed = true;
		if (d->ops->reopen != NULL)
			(void)d->ops->reopen(d);
		return;
	}
	if (d->watch_fd >= 0 && fstat(d->watch_fd, &st) == 0 && st.st_nlink == 0)
		d->changed = true;
}

bool
dict_changed(struct dict *d)
{
	dict_check(d);
	return d->changed;
}

/* ---------------------------------------------------------------- open, lookup, update */

struct dict *
dict_open(const char *spec, int flags, struct buf *err)
{
	const struct dict_type *t;
	struct buf scratch = BUF_INIT;
	const char *colon, *name;
	struct dict *d;
	size_t tlen;

	if (err == NULL)
		err = &scratch;
	if (spec == NULL || (colon = strchr(spec, ':')) == NULL || colon == spec) {
		buf_printf(err, "malformed table \"%s\": expected type:name", spec ? spec : "(null)");
		buf_free(&scratch);
		return NULL;
	}
	tlen = (size_t)(colon - spec);
	if ((t = dict_type_findn(spec, tlen)) == NULL) {
		buf_printf(err, "unsupported table type: %.*s",
		    (int)(tlen > DICT_TYPE_NAME_MAX ? DICT_TYPE_NAME_MAX : tlen), spec);
		buf_free(&scratch);
		return NULL;
	}
	name = colon + 1;
	if (*name == 0) {
		buf_printf(err, "malformed table \"%s\": empty name", spec);
		buf_free(&scratch);
		return NULL;
	}
	if (flags & DICT_FLAG_CREATE)
		flags |= DICT_FLAG_WRITE;
	d = t->open(name, flags, err);
	buf_free(&scratch);
	return d;
}

void
dict_close(struct dict *d)
{
	if (d == NULL)
		return;
	d->ops->close(d);
	dict_free(d);
}

/*
 * dict_key - copy key into out (DICT_KEY_MAX + 1 bytes), folded unless
 * the table is case sensitive; -1 for an empty or over-long key.
 */
static int
dict_key(struct dict *d, const char *key, char *out, size_t *klen)
{
	size_t n;

	n = strnlen(key, DICT_KEY_MAX + 1);
	if (n == 0)
		return -1;
	if (n > DICT_KEY_MAX) {
		/* A caller bug or hostile input: say so once, not per message. */
		if (!d->warned_key) {
			d->warned_key = true;
			log_warn("%s: ignoring a lookup key longer than %d bytes", d->spec, DICT_KEY_MAX);
		}
		return -1;
	}
	memcpy(out, key, n);
	out[n] = 0;
	if (!(d->flags & DICT_FLAG_NOFOLD))
		dict_fold(out, n);
	*klen = n;
	return 0;
}

enum dict_result
dict_lookup(struct dict *d, const char *key, struct buf *value)
{
	char kbuf[DICT_KEY_MAX + 1];
	enum dict_result r;
	size_t klen;

	buf_reset(value);
	if (key == NULL || dict_key(d, key, kbuf, &klen) != 0)
		return DICT_NOTFOUND;
	dict_check(d);
	r = d->ops->lookup(d, kbuf, klen, value);
	if (r == DICT_RETRY) {
		buf_reset(value);
		if (d->error == NULL)
			dict_set_error(d, "lookup failed");
	} else if (d->error != NULL) {
		/* error describes the table's present state: it works again. */
		free(d->error);
		d->error = NULL;
	}
	return r;
}

int
dict_update(struct dict *d, const char *key, const char *value)
{
	char kbuf[DICT_KEY_MAX + 1];
	size_t klen, vlen;

	if (!(d->flags & DICT_FLAG_WRITE) || d->ops->update == NULL) {
		dict_set_error(d, "table is not open for writing");
		return -1;
	}
	if (dict_key(d, key, kbuf, &klen) != 0) {
		dict_set_error(d, "empty key or key longer than %d bytes", DICT_KEY_MAX);
		return -1;
	}
	if ((vlen = strnlen(value, DICT_VALUE_MAX + 1)) > DICT_VALUE_MAX) {
		dict_set_error(d, "value longer than %d bytes", DICT_VALUE_MAX);
		return -1;
	}
	return d->ops->update(d, kbuf, klen, (const unsigned char *)value, vlen);
}

int
dict_remove(struct dict *d, const char *key)
{
	char kbuf[DICT_KEY_MAX + 1];
	size_t klen;

	if (!(d->flags & DICT_FLAG_WRITE) || d->ops->remove == NULL) {
		dict_set_error(d, "table is not open for writing");
		return -1;
	}
	if (dict_key(d, key, kbuf, &klen) != 0)
		return 1;
	return d->ops->remove(d, kbuf, klen);
}

int
dict_sequence(struct dict *d, bool first, struct buf *key, struct buf *value)
{
	if (d->ops->sequence == NULL) {
		dict_set_error(d, "table type %s cannot be listed", d->type);
		return -1;
	}
	buf_reset(key);
	buf_reset(value);
	return d->ops->sequence(d, first, key, value);
}

int
dict_sync(struct dict *d)
{
	if (d->ops->sync == NULL)
		return 0;
	return d->ops->sync(d);
}

/* ---------------------------------------------------------------- lists */

struct dict_list {
	struct dict **dicts;
	size_t n;
	struct buf why; /* reason for the last try-again */
};

struct dict_list *
dict_list_open(const char *specs, int flags, struct buf *err)
{
	struct dict_list *l;
	char *copy = xstrdup(specs ? specs : ""), *p = copy, *spec;
	struct dict *d;

	l = xcalloc(1, sizeof(*l));
	while ((spec = str_token_braced(&p, STR_LIST_SEP)) != NULL) {
		if (l->n >= DICT_LIST_MAX) {
			if (err)
				buf_printf(err, "more than %d tables in \"%s\"", DICT_LIST_MAX, specs);
			free(copy);
			dict_list_close(l);
			return NULL;
		}
		if ((d = dict_open(spec, flags, err)) == NULL) {
			free(copy);
			dict_list_close(l);
			return NULL;
		}
		l->dicts = xreallocarray(l->dicts, l->n + 1, sizeof(*l->dicts));
		l->dicts[l->n++] = d;
	}
	free(copy);
	return l;
}

enum dict_result
dict_list_lookup(struct dict_list *l, const char *key, struct buf *value)
{
	enum dict_result r;
	size_t i;

	buf_reset(&l->why);
	buf_reset(value);
	for (i = 0; i < l->n; i++) {
		r = dict_lookup(l->dicts[i], key, value);
		if (r == DICT_NOTFOUND)
			continue;
		/* A later table must not answer for a key an earlier one could not look up. */
		if (r == DICT_RETRY)
			buf_printf(&l->why, "%s: %s", l->dicts[i]->spec,
			    l->dicts[i]->error ? l->dicts[i]->error : "lookup failed");
		return r;
	}
	return DICT_NOTFOUND;
}

const char *
dict_list_error(const struct dict_list *l)
{
	return buf_str(&l->why);
}

bool
dict_list_changed(struct dict_list *l)
{
	bool changed = false;
	size_t i;

	for (i = 0; i < l->n; i++)
		if (dict_changed(l->dicts[i]))
			changed = true;
	return changed;
}

void
dict_list_close(struct dict_list *l)
{
	size_t i;

	if (l == NULL)
		return;
	for (i = 0; i < l->n; i++)
		dict_close(l->dicts[i]);
	free(l->dicts);
	buf_free(&l->why);
	free(l);
}
