/*
 * dict_inline - tables written out in main.cf itself.
 *
 *   inline:{ key=value, key2=value2, { key3 = value with spaces } }
 *   static:value   static:{ value with spaces }
 *
 * The text comes from main.cf, master.cf -o options or the command line:
 * trusted as the admin's, but parsed strictly, so that a typo is an error
 * at open (NULL from dict_open() with the reason) instead of a table that
 * quietly answers "not found".  Braces nest, so a braced value may itself
 * contain braces.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dict.h"
#include "dict_impl.h"
#include "log.h"
#include "xalloc.h"

#define INLINE_SEP " \t\r\n,"
#define INLINE_WS  " \t\r\n"

/* inline_close - the '}' matching the '{' at s, or NULL */
static const char *
inline_close(const char *s)
{
	int depth = 0;

	for (; *s; s++) {
		if (*s == '{')
			depth++;
		else if (*s == '}' && --depth == 0)
			return s;
	}
	return NULL;
}

/*
 * inline_braced - the text between the outer braces of "{...}" (white
 * space around allowed, nothing else), trimmed; NULL with err set.
 */
static char *
inline_braced(const char *type, const char *name, struct buf *err)
{
	const char *s = name, *e;
	char *inner, *a, *z;

	s += strspn(s, INLINE_WS);
	if (*s != '{') {
		buf_printf(err, "%s:%s: expected {...}", type, name);
		return NULL;
	}
	if ((e = inline_close(s)) == NULL) {
		buf_printf(err, "%s:%s: missing '}'", type, name);
		return NULL;
	}
	if (e[1 + strspn(e + 1, INLINE_WS)] != 0) {
		buf_printf(err, "%s:%s: text after the closing '}'", type, name);
		return NULL;
	}
	inner = xstrndup(s + 1, (size_t)(e - s - 1));
	for (a = inner; *a && strchr(INLINE_WS, *a); a++)
		;
	for (z = a + strlen(a); z > a && strchr(INLINE_WS, z[-1]); z--)
		;
	*z = 0;
	memmove(inner, a, strlen(a) + 1);
	return inner;
}

/* inline_trim - strip white space at both ends of [s, e) into a new string */
static char *
inline_trim(const char *s, const char *e)
{
	while (s < e && strchr(INLINE_WS, *s))
		s++;
	while (e > s && strchr(INLINE_WS, e[-1]))
		e--;
	return xstrndup(s, (size_t)(e - s));
}

/* inline_entry - add "key=value" ([s, e)) to the table; -1 with err set */
static int
inline_entry(struct dict_htab *t, const char *spec, const char *s, const char *e, int flags, struct buf *err)
{
	const char *eq;
	char *key, *value;
	int rc;

	if ((eq = memchr(s, '=', (size_t)(e - s))) == NULL) {
		buf_printf(err, "%s: entry \"%.*s\" has no '='", spec, (int)(e - s), s);
		return -1;
	}
	key = inline_trim(s, eq);
	value = inline_trim(eq + 1, e);
	rc = -1;
	if (*key == 0)
		buf_printf(err, "%s: entry \"%.*s\" has an empty key", spec, (int)(e - s), s);
	else if (*value == 0)
		buf_printf(err, "%s: entry \"%.*s\" has an empty value", spec, (int)(e - s), s);
	else if (strlen(key) > DICT_KEY_MAX)
		buf_printf(err, "%s: key longer than %d bytes", spec, DICT_KEY_MAX);
	else {
		if (!(flags & DICT_FLAG_NOFOLD))
			dict_fold(key, strlen(key));
		rc = dict_htab_put(t, key, strlen(key), (unsigned char *)value, strlen(value));
		if (rc == 1 && !(flags & DICT_FLAG_DUP_OK))
			log_warn("%s: duplicate key \"%s\"; the later one wins", spec, key);
		if (rc < 0)
			buf_printf(err, "%s: too many entries", spec);
		rc = rc < 0 ? -1 : 0;
	}
	free(key);
	free(value);
	return rc;
}

struct dict *
dict_inline_open(const char *name, int flags, struct buf *err)
{
	struct dict_memtab *p;
	struct dict_htab *t;
	const char *s, *e;
	struct dict *d;
	char *inner, *spec;

	if (flags & DICT_FLAG_WRITE) {
		buf_printf(err, "inline:%s: inline tables cannot be written", name);
		return NULL;
	}
	if ((inner = inline_braced("inline", name, err)) == NULL)
		return NULL;
	spec = xasprintf("inline:%s", name);
	t = dict_htab_new();
	for (s = inner;;) {
		s += strspn(s, INLINE_SEP);
		if (*s == 0)
			break;
		if (*s == '{') {
			if ((e = inline_close(s)) == NULL) {
				buf_printf(err, "%s: missing '}'", spec);
				goto bad;
			}
			if (inline_entry(t, spec, s + 1, e, flags, err) != 0)
				goto bad;
			s = e + 1;
			continue;
		}
		e = s + strcspn(s, INLINE_SEP "{}");
		if (*e == '{' || *e == '}') {
			buf_printf(
			    err, "%s: unexpected '%c' in an entry (brace the whole entry: { key = value })", spec, *e);
			goto bad;
		}
		if (inline_entry(t, spec, s, e, flags, err) != 0)
			goto bad;
		s = e;
	}
	free(inner);
	free(spec);
	d = dict_alloc("inline", name, flags, &dict_memtab_ops);
	p = xcalloc(1, sizeof(*p));
	p->tab = t;
	p->fd = -1;
	d->priv = p;
	return d;
bad:
	dict_htab_free(t);
	free(inner);
	free(spec);
	return NULL;
}

/* ---------------------------------------------------------------- static: */

static enum dict_result
static_lookup(struct dict *d, const char *key, size_t klen, struct buf *value)
{
	buf_strcpy(value, d->priv);
	return DICT_FOUND;
}

static void
static_close(struct dict *d)
{
	free(d->priv);
	d->priv = NULL;
}

static const struct dict_ops static_ops = {
	.lookup = static_lookup,
	.close = static_close,
};

struct dict *
dict_static_open(const char *name, int flags, struct buf *err)
{
	struct dict *d;
	char *value;

	if (flags & DICT_FLAG_WRITE) {
		buf_printf(err, "static:%s: static tables cannot be written", name);
		return NULL;
	}
	if (name[strspn(name, INLINE_WS)] == '{') {
		if ((value = inline_braced("static", name, err)) == NULL)
			return NULL;
		if (*value == 0) {
			buf_printf(err, "static:%s: empty value", name);
			free(value);
			return NULL;
		}
	} else {
		value = xstrdup(name);
	}
	if (strlen(value) > DICT_VALUE_MAX) {
		buf_printf(err, "static: value longer than %d bytes", DICT_VALUE_MAX);
		free(value);
		return NULL;
	}
	d = dict_alloc("static", name, flags, &static_ops);
	d->priv = value;
	return d;
}
