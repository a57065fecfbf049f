/*
 * local_alias - aliases(5) for the local delivery agent: the alias
 * tables, the syntax of an alias value (also the syntax of .forward and
 * :include: files), forward_path expansion, and the allow_mail_to_*
 * lists.
 *
 * Called by local_resolve.c.  Alias values and list files are input:
 * every destination and every list is bounded, quotes must balance, and
 * a parse error is reported, never half-applied.  The tables are trusted
 * as far as the owner of their file: local_alias_lookup() says who that
 * is, because commands and files named in a table run with its owner's
 * privileges (default_privs when root owns it).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "local.h"
#include "str.h"
#include "xalloc.h"

#define PATH_EXPAND_MAX 4096
#define PATH_DEPTH_MAX  10

static struct dict **alias_tab;
static size_t alias_n;

/* ---------------------------------------------------------------- parsing */

/* is_sep - the end of a destination: ',' or a line end, or white space for addresses */
static bool
is_sep(int c, bool spacey)
{
	return c == ',' || c == '\n' || (!spacey && (c == ' ' || c == '\t' || c == '\r'));
}

/* starts_spacey - destinations whose text may contain white space */
static bool
starts_spacey(const char *p, size_t n)
{
	return (n > 0 && (p[0] == '|' || p[0] == '/')) || (n >= 9 && str_ncasecmp(p, ":include:", 9) == 0);
}

/* dest_add - classify one destination and append it */
static int
dest_add(struct local_dests *out, char *s, size_t max, struct buf *err)
{
	struct local_dest d;
	char *v;

	s = str_trim(s);
	if (*s == 0)
		return 0;
	if (strlen(s) > LOCAL_DEST_LEN_MAX) {
		buf_printf(err, "a destination longer than %d bytes", LOCAL_DEST_LEN_MAX);
		return -1;
	}
	if (s[0] == '|') {
		d.type = LOCAL_DEST_COMMAND;
		v = str_trim(s + 1);
		if (*v == 0) {
			buf_puts(err, "an empty command");
			return -1;
		}
	} else if (str_ncasecmp(s, ":include:", 9) == 0) {
		d.type = LOCAL_DEST_INCLUDE;
		v = str_trim(s + 9);
		if (*v != '/') {
			buf_printf(err, ":include: needs an absolute path, not \"%s\"", v);
			return -1;
		}
	} else if (s[0] == '/') {
		d.type = LOCAL_DEST_FILE;
		v = s;
	} else if (s[0] == '\\') {
		d.type = LOCAL_DEST_SELF;
		v = str_trim(s + 1);
		if (*v == 0 || strchr(v, '@') != NULL) {
			buf_printf(err, "\"%s\": a backslash goes before a local user name", s);
			return -1;
		}
	} else {
		size_t len = strlen(s);

		d.type = LOCAL_DEST_ADDR;
		v = s;
		if (v[0] == '<' && len >= 2 && v[len - 1] == '>') {
			v[len - 1] = 0;
			v = str_trim(v + 1);
		}
		if (*v == 0)
			return 0; /* <> in a list means nothing */
	}
	if (out->n >= max) {
		buf_printf(err, "more than %zu destinations", max);
		return -1;
	}
	d.value = xstrdup(v);
	out->v = xreallocarray(out->v, out->n + 1, sizeof(*out->v));
	out->v[out->n++] = d;
	return 0;
}

int
local_alias_parse(const char *text, size_t len, bool is_file, size_t max, struct local_dests *out, struct buf *err)
{
	struct buf el = BUF_INIT;
	bool line_start = true;
	size_t i = 0, j;
	int rc = 0;

	out->v = NULL;
	out->n = 0;
	if (memchr(text, 0, len) != NULL) {
		buf_puts(err, "a NUL byte");
		return -1;
	}
	while (i < len && rc == 0) {
		int c = (unsigned char)text[i];
		bool spacey, inq;

		if (c == '\n') {
			line_start = true;
			i++;
			continue;
		}
		if (c == ' ' || c == '\t' || c == '\r') {
			i++;
			continue;
		}
		if (c == ',') {
			line_start = false;
			i++;
			continue;
		}
		if (is_file && line_start && c == '#') {
			while (i < len && text[i] != '\n')
				i++;
			continue;
		}
		line_start = false;
		buf_reset(&el);
		if (c == '"') {
			/* "..." around a whole destination ("|cmd, with commas") */
			bool closed = false;

			for (j = i + 1; j < len; j++) {
				if (text[j] == '\\' && j + 1 < len && text[j + 1] != '\n') {
					buf_putc(&el, text[++j]);
				} else if (text[j] == '"') {
					closed = true;
					j++;
					break;
				} else if (text[j] == '\n') {
					break;
				} else {
					buf_putc(&el, text[j]);
				}
			}
			if (!closed) {
				buf_puts(err, "a quote that does not end");
				rc = -1;
				break;
			}
			while (j < len && (text[j] == ' ' || text[j] == '\t' || text[j] == '\r'))
				j++;
			if (j >= len || text[j] == ',' || text[j] == '\n') {
				i = j;
				if (el.len > 0)
					rc = dest_add(out, (char *)el.data, max, err);
				continue;
			}
			/* A quoted local part ("a b"@example.com): keep the quotes. */
			buf_reset(&el);
		}
		spacey = starts_spacey(text + i, len - i);
		inq = false;
		for (j = i; j < len; j++) {
			int d = (unsigned char)text[j];

			if (!inq && is_sep(d, spacey))
				break;
			if (d == '\n') {
				break; /* inside quotes: caught below */
			}
			if (inq && d == '\\' && j + 1 < len && text[j + 1] != '\n') {
				buf_putc(&el, d);
				buf_putc(&el, text[++j]);
				continue;
			}
			if (d == '"')
				inq = !inq;
			buf_putc(&el, d);
		}
		if (inq) {
			buf_puts(err, "a quote that does not end");
			rc = -1;
			break;
		}
		i = j;
		if (el.len > 0)
			rc = dest_add(out, (char *)el.data, max, err);
	}
	buf_free(&el);
	if (rc < 0)
		local_dests_free(out);
	return rc;
}

void
local_dests_free(struct local_dests *d)
{
	size_t i;

	for (i = 0; i < d->n; i++)
		free(d->v[i].value);
	free(d->v);
	d->v = NULL;
	d->n = 0;
}

const char *
local_dest_type_name(enum local_dest_type t)
{
	switch (t) {
	case LOCAL_DEST_ADDR:
		return "address";
	case LOCAL_DEST_SELF:
		return "mailbox";
	case LOCAL_DEST_COMMAND:
		return "command";
	case LOCAL_DEST_FILE:
		return "file";
	case LOCAL_DEST_INCLUDE:
		return "include";
	}
	return "?";
}

int
local_src_parse(const char *list, int *bits, struct buf *err)
{
	char *copy = xstrdup(list), *p = copy, *tok;
	int rc = 0;

	*bits = 0;
	while ((tok = str_token(&p, STR_LIST_SEP)) != NULL) {
		if (str_casecmp(tok, "alias") == 0) {
			*bits |= LOCAL_SRC_ALIAS;
		} else if (str_casecmp(tok, "forward") == 0) {
			*bits |= LOCAL_SRC_FORWARD;
		} else if (str_casecmp(tok, "include") == 0) {
			*bits |= LOCAL_SRC_INCLUDE;
		} else {
			buf_printf(err, "\"%s\" is not one of alias, forward, include", tok);
			rc = -1;
			break;
		}
	}
	free(copy);
	return rc;
}

/* ---------------------------------------------------------------- tables */

int
local_alias_open(const char *maps, struct buf *err)
{
	char *copy = xstrdup(maps), *p = copy, *spec;
	struct dict *d;
	int rc = 0;

	local_alias_close();
	while ((spec = str_token_braced(&p, STR_LIST_SEP)) != NULL) {
		if (alias_n >= DICT_LIST_MAX) {
			buf_printf(err, "alias_maps: more than %d tables", DICT_LIST_MAX);
			rc = -1;
			break;
		}
		/* One by one rather than a dict_list: we need to know which table answered. */
		if ((d = dict_open(spec, DICT_FLAG_ALIASES, err)) == NULL) {
			rc = -1;
			break;
		}
		alias_tab = xreallocarray(alias_tab, alias_n + 1, sizeof(*alias_tab));
		alias_tab[alias_n++] = d;
	}
	free(copy);
	if (rc < 0)
		local_alias_close();
	return rc;
}

void
local_alias_close(void)
{
	size_t i;

	for (i = 0; i < alias_n; i++)
		dict_close(alias_tab[i]);
	free(alias_tab);
	alias_tab = NULL;
	alias_n = 0;
}

/* table_owner - who owns the file behind a table (root for tables without one) */
static uid_t
table_owner(struct dict *d)
{
	struct stat st;

	if (d->watch_fd >= 0 && fstat(d->watch_fd, &st) == 0)
		return st.st_uid;
	if (d->watch_path != NULL && stat(d->watch_path, &st) == 0)
		return st.st_uid;
	return 0;
}

enum dict_result
local_alias_lookup(const char *name, struct buf *value, uid_t *owner, struct buf *why)
{
	enum dict_result r;
	size_t i;

	*owner = 0;
	for (i = 0; i < alias_n; i++) {
		r = dict_lookup(alias_tab[i], name, value);
		if (r == DICT_FOUND) {
			*owner = table_owner(alias_tab[i]);
			return r;
		}
		if (r == DICT_RETRY) {
			buf_printf(why, "%s: %s", alias_tab[i]->spec,
			    alias_tab[i]->error ? alias_tab[i]->error : "lookup failed");
			return r;
		}
	}
	return DICT_NOTFOUND;
}

/* ---------------------------------------------------------------- forward_path */

/* path_value - the value of one $name, filtered when it comes from the address */
static int
path_value(
    const char *name, size_t nlen, const struct local_addr *a, const char *home, const char *user, struct buf *out)
{
	const char *v = NULL;
	bool filter = true;
	size_t start = out->len, i;

#define NAME_IS(s) (nlen == strlen(s) && strncmp(name, s, nlen) == 0)
	if (NAME_IS("home")) {
		v = home;
		filter = false;
	} else if (NAME_IS("user")) {
		v = user;
	} else if (NAME_IS("local")) {
		v = a->local;
	} else if (NAME_IS("extension")) {
		v = a->ext;
	} else if (NAME_IS("recipient")) {
		v = a->addr;
	} else if (NAME_IS("domain")) {
		v = a->domain;
	} else if (NAME_IS("recipient_delimiter")) {
		v = local_conf.recipient_delimiter;
	} else {
		return -1;
	}
#undef NAME_IS
	buf_puts(out, v ? v : "");
	if (filter) {
		/* An address must not steer the path: no '/', no "..", nothing unprintable. */
		for (i = start; i < out->len; i++)
			if (out->data[i] == '/' || out->data[i] < 0x20 || out->data[i] == 0x7f)
				out->data[i] = '_';
		if (out->len - start <= 2 && out->len > start &&
		    strspn((char *)out->data + start, ".") == out->len - start)
			memset(out->data + start, '_', out->len - start);
	}
	return 0;
}

/* path_expand - one level of local_path_expand (recursive for ${name?text}) */
static int
path_expand(const char *p, size_t len, const struct local_addr *a, const char *home, const char *user, int depth,
    struct buf *out, struct buf *err)
{
	size_t i = 0, j, nlen;

	if (depth > PATH_DEPTH_MAX) {
		buf_puts(err, "too deeply nested ${...}");
		return -1;
	}
	while (i < len) {
		if (out->len > PATH_EXPAND_MAX) {
			buf_printf(err, "the expansion is longer than %d bytes", PATH_EXPAND_MAX);
			return -1;
		}
		if (p[i] != '$') {
			buf_putc(out, p[i++]);
			continue;
		}
		i++;
		if (i < len && p[i] == '$') {
			buf_putc(out, '$');
			i++;
			continue;
		}
		if (i < len && p[i] == '{') {
			struct buf val = BUF_INIT;
			int nest = 1, rc;
			char op;

			for (j = i + 1; j < len && nest > 0; j++) {
				if (p[j] == '{')
					nest++;
				else if (p[j] == '}')
					nest--;
			}
			if (nest > 0) {
				buf_puts(err, "a ${ without its }");
				return -1;
			}
			/* p[i+1 .. j-2] is "name", "name?text" or "name:text" */
			nlen = strspn(p + i + 1, "abcdefghijklmnopqrstuvwxyz_");
			op = p[i + 1 + nlen];
			if (nlen == 0 || (op != '}' && op != '?' && op != ':') ||
			    path_value(p + i + 1, nlen, a, home, user, &val) < 0) {
				buf_printf(err, "unknown or malformed ${%.*s}", (int)(j - i - 2), p + i + 1);
				buf_free(&val);
				return -1;
			}
			rc = 0;
			if (op == '}')
				buf_append(out, val.data, val.len);
			else if ((op == '?') == (val.len > 0))
				rc = path_expand(
				    p + i + 2 + nlen, j - 1 - (i + 2 + nlen), a, home, user, depth + 1, out, err);
			buf_free(&val);
			if (rc < 0)
				return -1;
			i = j;
			continue;
		}
		nlen = strspn(p + i, "abcdefghijklmnopqrstuvwxyz_");
		if (nlen > len - i)
			nlen = len - i;
		if (nlen == 0 || path_value(p + i, nlen, a, home, user, out) < 0) {
			buf_printf(err, "unknown or malformed $%.*s", (int)nlen, p + i);
			return -1;
		}
		i += nlen;
	}
	if (out->len > PATH_EXPAND_MAX) {
		buf_printf(err, "the expansion is longer than %d bytes", PATH_EXPAND_MAX);
		return -1;
	}
	return 0;
}

int
local_path_expand(
    const char *text, const struct local_addr *a, const char *home, const char *user, struct buf *out, struct buf *err)
{
	buf_reset(out);
	return path_expand(text, strlen(text), a, home, user, 0, out, err);
}
