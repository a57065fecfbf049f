/*
 * cfg - main.cf: parsing, the parameter store and typed access (see cfg.h).
 *
 * Called by every program at start (and by the master on reload) and by
 * "postern conf".  main.cf is written by the administrator but still
 * treated as input: the file size, line length, number of names, value
 * length and $name nesting are all bounded, and a bad line is reported
 * with file:line instead of being guessed at.  The parameter table
 * (cfg_param.def) is trusted.
 *
 * Values are stored as written; expansion (cfg_expand.c) happens on
 * access and the results are cached per name.  A cached or replaced
 * string is never freed before the next load (it goes to the store's
 * "grave"), so that callers may keep the pointers they were given.
 * Reading files and splitting logical lines is in cfg_text.c.
 */
#include "config.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg_impl.h"
#include "log.h"
#include "str.h"
#include "xalloc.h"

#define CFG_MAX_ERRORS 100 /* per load; the rest are summarised */

static struct cfg_store *cur;

/* quote - s as "text", shortened and with control bytes shown as '?' */
static const char *
quote(struct buf *tmp, const char *s, size_t n)
{
	size_t i, lim = n > 60 ? 57 : n;

	buf_reset(tmp);
	buf_putc(tmp, '"');
	for (i = 0; i < lim; i++)
		buf_putc(tmp, (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i]);
	if (lim < n)
		buf_puts(tmp, "...");
	buf_putc(tmp, '"');
	return buf_str(tmp);
}

bool
cfg_name_char(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

bool
cfg_valid_name(const char *s, size_t len)
{
	size_t i;

	if (len == 0)
		return false;
	for (i = 0; i < len; i++)
		if (!cfg_name_char((unsigned char)s[i]))
			return false;
	return true;
}

/* ---------------------------------------------------------------- the store */

static unsigned
hash_name(const char *s, size_t n)
{
	unsigned h = 2166136261u;

	while (n--)
		h = (h ^ (unsigned char)*s++) * 16777619u;
	return h % CFG_BUCKETS;
}

struct cfg_entry *
cfg_store_find(struct cfg_store *st, const char *name, size_t n)
{
	struct cfg_entry *e;

	for (e = st->bucket[hash_name(name, n)]; e; e = e->next)
		if (strncmp(e->name, name, n) == 0 && e->name[n] == 0)
			return e;
	return NULL;
}

static struct cfg_entry *
store_add(struct cfg_store *st, const char *name, size_t n)
{
	struct cfg_entry *e = xcalloc(1, sizeof(*e));
	unsigned h = hash_name(name, n);

	e->name = xstrndup(name, n);
	e->param = cfg_param_find(e->name);
	if (e->param)
		st->byid[cfg_param_id(e->param)] = e;
	else
		st->nundeclared++;
	e->next = st->bucket[h];
	st->bucket[h] = e;
	return e;
}

static struct cfg_store *
store_new(void)
{
	struct cfg_store *st = xcalloc(1, sizeof(*st));
	size_t i;

	for (i = 0; i < P_COUNT; i++)
		store_add(st, cfg_params[i].name, strlen(cfg_params[i].name));
	return st;
}

static void
store_free(struct cfg_store *st)
{
	struct cfg_entry *e, *next;
	size_t i;

	for (i = 0; i < CFG_BUCKETS; i++) {
		for (e = st->bucket[i]; e; e = next) {
			next = e->next;
			free(e->name);
			free(e->raw);
			free(e->origin);
			free(e->cooked);
			free(e->computed);
			free(e);
		}
	}
	for (i = 0; i < st->ngrave; i++)
		free(st->grave[i]);
	for (i = 0; i < st->nrefs; i++)
		free(st->refs[i]);
	free(st->grave);
	free(st->refs);
	free(st->order);
	free(st->dir);
	free(st);
}

/* push_str - append a string to a growable array of strings */
static void
push_str(char ***v, size_t *n, size_t *cap, char *s)
{
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 16;
		*v = xreallocarray(*v, *cap, sizeof(**v));
	}
	(*v)[(*n)++] = s;
}

void
cfg_store_bury(struct cfg_store *st, char *s)
{
	if (s != NULL)
		push_str(&st->grave, &st->ngrave, &st->gravecap, s);
}

void
cfg_store_flush(struct cfg_store *st)
{
	struct cfg_entry *e;
	size_t i;

	if (st->ncached == 0)
		return;
	for (i = 0; i < CFG_BUCKETS; i++) {
		for (e = st->bucket[i]; e; e = e->next) {
			cfg_store_bury(st, e->cooked);
			cfg_store_bury(st, e->computed);
			e->cooked = e->computed = NULL;
		}
	}
	st->ncached = 0;
}

static void
store_set(struct cfg_store *st, const char *name, const char *value, const char *origin)
{
	size_t n = strlen(name);
	struct cfg_entry *e;

	if ((e = cfg_store_find(st, name, n)) == NULL)
		e = store_add(st, name, n);
	if (e->raw == NULL) {
		if (st->norder == st->ordercap) {
			st->ordercap = st->ordercap ? st->ordercap * 2 : 64;
			st->order = xreallocarray(st->order, st->ordercap, sizeof(*st->order));
		}
		st->order[st->norder++] = e;
	}
	cfg_store_bury(st, e->raw);
	cfg_store_bury(st, e->origin);
	e->raw = xstrdup(value);
	e->origin = xstrdup(origin);
	cfg_store_flush(st);
}

struct cfg_store *
cfg_store_current(void)
{
	if (cur == NULL)
		cur = store_new();
	return cur;
}

/* parse - read main.cf text into a store; errors go to err, one per line */
static int
parse(struct cfg_store *st, const char *text, size_t len, const char *origin, struct buf *err)
{
	struct buf line = BUF_INIT, why = BUF_INIT, q = BUF_INIT;
	struct cfg_lines r;
	const char *eq, *name, *value;
	char *where;
	size_t nlen;
	int first, rc, nerr = 0;

	cfg_lines_init(&r, text, len, CFG_LINE_MAX);
	while ((rc = cfg_lines_next(&r, &line, &first, &why)) != 0) {
		if (nerr >= CFG_MAX_ERRORS) {
			cfg_err_line(err, "%s: too many errors, giving up", origin);
			break;
		}
		if (rc < 0) {
			cfg_err_line(err, "%s:%d: %s", origin, first, buf_str(&why));
			nerr++;
			continue;
		}
		name = buf_str(&line);
		if ((eq = strchr(name, '=')) == NULL) {
			cfg_err_line(err, "%s:%d: missing \"=\" in %s", origin, first, quote(&q, name, buf_len(&line)));
			nerr++;
			continue;
		}
		for (nlen = (size_t)(eq - name); nlen > 0 && cfg_blank((unsigned char)name[nlen - 1]); nlen--)
			;
		if (!cfg_valid_name(name, nlen)) {
			cfg_err_line(err, "%s:%d: bad parameter name %s (letters, digits and _ only)", origin, first,
			    quote(&q, name, nlen));
			nerr++;
			continue;
		}
		for (value = eq + 1; cfg_blank((unsigned char)*value); value++)
			;
		if (strlen(value) > CFG_VALUE_MAX) {
			cfg_err_line(err, "%s:%d: value longer than %d bytes", origin, first, CFG_VALUE_MAX);
			nerr++;
			continue;
		}
		if (cfg_store_find(st, name, nlen) == NULL && st->nundeclared >= CFG_NAMES_MAX) {
			cfg_err_line(err, "%s:%d: more than %d parameter names", origin, first, CFG_NAMES_MAX);
			nerr++;
			break;
		}
		line.data[nlen] = 0; /* ends the name; the value lies past the '=' */
		where = xasprintf("%s:%d", origin, first);
		store_set(st, name, value, where);
		free(where);
	}
	buf_free(&line);
	buf_free(&why);
	buf_free(&q);
	return nerr ? -1 : 0;
}

/* ---------------------------------------------------------------- loading */

const char *
cfg_resolve_dir(const char *dir)
{
	const char *env;

	if (dir != NULL && *dir)
		return dir;
	/* secure_getenv: a set-id program (postdrop) must not take a config from its caller. */
	if ((env = secure_getenv("POSTERN_CONFIG_DIR")) != NULL && *env)
		return env;
	return DEF_CONFIG_DIR;
}

/* install - make st the configuration; the old one's strings die with it */
static void
install(struct cfg_store *st)
{
	if (cur != NULL)
		store_free(cur);
	cur = st;
}

int
cfg_load(const char *dir, struct buf *err)
{
	struct buf text = BUF_INIT;
	char *path;
	int rc;

	dir = cfg_resolve_dir(dir);
	path = xasprintf("%s/main.cf", dir);
	rc = cfg_read_file(path, CFG_FILE_MAX, &text, err);
	free(path);
	if (rc >= 0)
		rc = cfg_load_text(dir, (const char *)text.data, buf_len(&text), err);
	buf_free(&text);
	return rc;
}

int
cfg_load_text(const char *dir, const char *text, size_t len, struct buf *err)
{
	struct cfg_store *st;
	char *path;
	int rc = 0;

	dir = cfg_resolve_dir(dir);
	path = xasprintf("%s/main.cf", dir);
	st = store_new();
	st->dir = xstrdup(dir);
	if (len > CFG_FILE_MAX) {
		cfg_err_line(err, "%s: larger than %d bytes", path, CFG_FILE_MAX);
		rc = -1;
	} else if (len > 0 && parse(st, text, len, path, err) != 0) {
		rc = -1;
	}
	free(path);
	if (rc < 0) {
		store_free(st);
		return -1;
	}
	install(st);
	return 0;
}

int
cfg_load_string(const char *text, const char *origin, struct buf *err)
{
	struct cfg_store *st = store_new();

	if (parse(st, text, strlen(text), origin ? origin : "main.cf", err) != 0) {
		store_free(st);
		return -1;
	}
	install(st);
	return 0;
}

const char *
cfg_config_dir(void)
{
	return cfg_store_current()->dir ? cfg_store_current()->dir : DEF_CONFIG_DIR;
}

void
cfg_set(const char *name, const char *value, const char *origin)
{
	struct cfg_store *st = cfg_store_current();

	if (!cfg_valid_name(name, strlen(name)))
		log_panic("cfg_set: bad parameter name \"%s\"", name);
	if (cfg_store_find(st, name, strlen(name)) == NULL && st->nundeclared >= CFG_NAMES_MAX)
		log_fatal("%s: more than %d parameter names", origin, CFG_NAMES_MAX);
	store_set(st, name, value, origin ? origin : "override");
}

int
cfg_set_option(const char *arg, const char *origin, struct buf *err)
{
	struct buf q = BUF_INIT;
	const char *eq = strchr(arg, '='), *value;
	char *name;
	size_t n;

	if (eq == NULL) {
		cfg_err_line(err, "-o %s: expected name=value", quote(&q, arg, strlen(arg)));
		buf_free(&q);
		return -1;
	}
	while (cfg_blank((unsigned char)*arg))
		arg++;
	for (n = (size_t)(eq - arg); n > 0 && cfg_blank((unsigned char)arg[n - 1]); n--)
		;
	if (!cfg_valid_name(arg, n)) {
		cfg_err_line(err, "-o %s: bad parameter name", quote(&q, arg, n));
		buf_free(&q);
		return -1;
	}
	buf_free(&q);
	for (value = eq + 1; cfg_blank((unsigned char)*value); value++)
		;
	if (strlen(value) > CFG_VALUE_MAX) {
		cfg_err_line(err, "-o %.*s: value longer than %d bytes", (int)n, arg, CFG_VALUE_MAX);
		return -1;
	}
	name = xstrndup(arg, n);
	n = strlen(value);
	while (n > 0 && cfg_blank((unsigned char)value[n - 1]))
		n--;
	value = xstrndup(value, n);
	cfg_set(name, value, origin);
	free(name);
	free((char *)value);
	return 0;
}

void
cfg_note_references(const char *text)
{
	struct cfg_store *st = cfg_store_current();

	push_str(&st->refs, &st->nrefs, &st->refscap, xstrdup(text));
}

static const char *
entry_origin(const struct cfg_entry *e)
{
	return e->raw ? e->origin : "default";
}

/* ---------------------------------------------------------------- typed access */

int
cfg_parse_bool(const char *s, bool *out)
{
	if (str_casecmp(s, "yes") == 0 || str_casecmp(s, "true") == 0 || strcmp(s, "1") == 0)
		*out = true;
	else if (str_casecmp(s, "no") == 0 || str_casecmp(s, "false") == 0 || strcmp(s, "0") == 0)
		*out = false;
	else
		return -1;
	return 0;
}

int
cfg_parse_time(const char *s, char default_unit, long long *seconds)
{
	char digits[32];
	long long n, mul;
	size_t len = strlen(s);
	int unit = default_unit ? default_unit : 's';

	if (len > 0 && !isdigit((unsigned char)s[len - 1]))
		unit = (unsigned char)s[--len];
	if (len == 0 || len >= sizeof(digits) || strspn(s, "0123456789") != len)
		return -1;
	switch (unit) {
	case 's':
		mul = 1;
		break;
	case 'm':
		mul = 60;
		break;
	case 'h':
		mul = 3600;
		break;
	case 'd':
		mul = 86400;
		break;
	case 'w':
		mul = 7 * 86400;
		break;
	default:
		return -1;
	}
	memcpy(digits, s, len);
	digits[len] = 0;
	if (str_to_ll(digits, 0, LLONG_MAX / mul, &n, NULL) != 0)
		return -1;
	*seconds = n * mul;
	return 0;
}

/* check_value - parse an expanded value by the row's type and bounds */
static int
check_value(const struct cfg_param *p, const char *v, long long *num, bool *flag, struct buf *why)
{
	long long min = p->min, max = p->max;
	const char *what;

	if (p->type == CFG_INT || p->type == CFG_TIME) {
		if (min == 0 && max == 0)
			min = LLONG_MIN, max = LLONG_MAX;
	}
	switch (p->type) {
	case CFG_STR:
	case CFG_RAW:
		return 0;
	case CFG_BOOL:
		if (cfg_parse_bool(v, flag) == 0)
			return 0;
		buf_printf(why, "\"%.60s\" is not yes or no", v);
		return -1;
	case CFG_INT:
		if (str_to_ll(v, LLONG_MIN, LLONG_MAX, num, &what) != 0) {
			buf_printf(why, "\"%.60s\" is not an integer%s", v, strcmp(what, "invalid") ? " in range" : "");
			return -1;
		}
		break;
	case CFG_TIME:
		if (cfg_parse_time(v, p->unit, num) != 0) {
			buf_printf(why, "\"%.60s\" is not a time (a number with an optional unit s, m, h, d or w)", v);
			return -1;
		}
		break;
	}
	if (*num < min) {
		buf_printf(why, "\"%.60s\" is below the minimum of %lld%s", v, min, p->type == CFG_TIME ? "s" : "");
		return -1;
	}
	if (*num > max) {
		buf_printf(why, "\"%.60s\" is above the maximum of %lld%s", v, max, p->type == CFG_TIME ? "s" : "");
		return -1;
	}
	return 0;
}

/* value_fatal - end the process over a bad value (why is freed first, for leak checkers) */
static _Noreturn void
value_fatal(const struct cfg_entry *e, struct buf *why)
{
	char msg[1024];

	snprintf(msg, sizeof(msg), "%s", buf_str(why));
	buf_free(why);
	log_fatal("%s: parameter %s: %s", entry_origin(e), e->name, msg);
}

/* typed - the checked value of a declared parameter; fatal when invalid */
static const char *
typed(enum param_id id, enum cfg_type want, long long *num, bool *flag)
{
	struct buf why = BUF_INIT;
	struct cfg_entry *e;
	const char *v;
	long long n = 0;
	bool b = false;

	if ((unsigned)id >= P_COUNT)
		log_panic("cfg: bad parameter id %d", (int)id);
	e = cfg_store_current()->byid[id];
	if (want != CFG_STR && e->param->type != want)
		log_panic(
		    "cfg: parameter %s is a %s, not a %s", e->name, cfg_type_name(e->param->type), cfg_type_name(want));
	if ((v = cfg_entry_value(cfg_store_current(), e, &why)) == NULL || check_value(e->param, v, &n, &b, &why) != 0)
		value_fatal(e, &why);
	buf_free(&why);
	if (num)
		*num = n;
	if (flag)
		*flag = b;
	return v;
}

const char *
cfg_str(enum param_id id)
{
	return typed(id, CFG_STR, NULL, NULL);
}

long long
cfg_int(enum param_id id)
{
	long long n = 0;

	typed(id, CFG_INT, &n, NULL);
	return n;
}

bool
cfg_bool(enum param_id id)
{
	bool b = false;

	typed(id, CFG_BOOL, NULL, &b);
	return b;
}

long long
cfg_time(enum param_id id)
{
	long long n = 0;

	typed(id, CFG_TIME, &n, NULL);
	return n;
}

const char *
cfg_lookup(const char *name)
{
	struct buf why = BUF_INIT;
	struct cfg_entry *e;
	const char *v;

	if ((e = cfg_store_find(cfg_store_current(), name, strlen(name))) == NULL)
		return NULL;
	if ((v = cfg_entry_value(cfg_store_current(), e, &why)) == NULL)
		value_fatal(e, &why);
	buf_free(&why);
	return v;
}

const char *
cfg_raw(const char *name, const char **origin)
{
	struct cfg_entry *e;

	if (origin)
		*origin = NULL;
	if ((e = cfg_store_find(cfg_store_current(), name, strlen(name))) == NULL)
		return NULL;
	if (e->raw != NULL) {
		if (origin)
			*origin = e->origin;
		return e->raw;
	}
	if (e->param == NULL)
		return NULL;
	return cfg_entry_default(cfg_store_current(), e);
}

bool
cfg_is_set(const char *name)
{
	struct cfg_entry *e = cfg_store_find(cfg_store_current(), name, strlen(name));

	return e != NULL && e->raw != NULL;
}

void
cfg_walk_set(void (*fn)(const char *name, const char *raw, const char *origin, void *arg), void *arg)
{
	struct cfg_store *st = cfg_store_current();
	size_t i;

	for (i = 0; i < st->norder; i++)
		fn(st->order[i]->name, st->order[i]->raw, st->order[i]->origin, arg);
}

/* ---------------------------------------------------------------- checking */

int
cfg_check(struct buf *err)
{
	struct cfg_store *st = cfg_store_current();
	struct buf why = BUF_INIT;
	struct cfg_entry *e;
	const char *v;
	long long num;
	bool flag;
	size_t i;
	int nerr = 0;

	for (i = 0; i < P_COUNT; i++) {
		e = st->byid[i];
		buf_reset(&why);
		if ((v = cfg_entry_value(cfg_store_current(), e, &why)) == NULL ||
		    check_value(e->param, v, &num, &flag, &why) != 0) {
			cfg_err_line(err, "%s: parameter %s: %s", entry_origin(e), e->name, buf_str(&why));
			nerr++;
		}
	}
	buf_free(&why);
	/* Names nobody declares are fine when some value uses them as $name. */
	for (i = 0; i < st->norder; i++)
		st->order[i]->referenced = false;
	for (i = 0; i < st->norder; i++) {
		e = st->order[i];
		if (e->param == NULL || e->param->type != CFG_RAW)
			cfg_scan_refs(st, e->raw, e->origin, e->name);
	}
	for (i = 0; i < st->nrefs; i++)
		cfg_scan_refs(st, st->refs[i], "master.cf", NULL);
	for (i = 0; i < st->norder; i++) {
		e = st->order[i];
		if (e->param == NULL && !e->referenced)
			log_warn("%s: unknown parameter %s", e->origin, e->name);
	}
	return nerr;
}
