/*
 * cfg_expand - $name expansion of main.cf values and the computed defaults
 * (myhostname, mydomain, config_directory).
 *
 * Called through cfg.c's accessors and cfg_expand().  Values are input:
 * every reference is checked for syntax, loops are found by keeping the
 * chain of names being expanded, nesting is limited to CFG_EXPAND_DEPTH
 * and results to CFG_VALUE_MAX.  Expanded values are cached in the
 * entries; cfg.c flushes the cache whenever a value changes.
 */
#include "config.h"

#include <netdb.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cfg_impl.h"
#include "xalloc.h"

/* Expansion state: the chain of names being expanded, for loops and errors. */
struct xp {
	struct cfg_store *st;
	const char *stack[CFG_EXPAND_DEPTH + 1];
	int nstack;
	int base;  /* names pushed for the caller's own subject */
	int depth; /* nesting of names and ${name?text} texts */
	struct buf *err;
	bool scan; /* cfg_check: note references, expand nothing */
	const char *scan_origin;
	const char *scan_name;
};

static char *def_override[P_COUNT]; /* cfg_set_default(); kept across loads */
static char *sys_hostname;

static int xp_text(struct xp *x, const char *s, size_t n, struct buf *out);
static int xp_value(struct xp *x, struct cfg_entry *e, const char **val);

void
cfg_set_default(enum param_id id, const char *value)
{
	if ((unsigned)id >= P_COUNT)
		log_panic("cfg_set_default: bad id %d", (int)id);
	cfg_store_bury(cfg_store_current(), def_override[id]);
	def_override[id] = xstrdup(value);
	cfg_store_flush(cfg_store_current());
}

/* xp_fail - record why expansion failed, naming the value it happened in */
static int LOG_PRINTF(2, 3) xp_fail(struct xp *x, const char *fmt, ...)
{
	va_list ap;

	if (x->scan || x->err == NULL)
		return -1;
	buf_reset(x->err);
	va_start(ap, fmt);
	buf_vprintf(x->err, fmt, ap);
	va_end(ap);
	if (x->nstack > x->base)
		buf_printf(x->err, " (in the value of %s)", x->stack[x->nstack - 1]);
	return -1;
}

/* xp_put - append expanded text, within CFG_VALUE_MAX */
static int
xp_put(struct xp *x, struct buf *out, const char *s, size_t n)
{
	if (x->scan)
		return 0;
	if (n > CFG_VALUE_MAX || buf_len(out) > CFG_VALUE_MAX - n)
		return xp_fail(x, "value longer than %d bytes after $name expansion", CFG_VALUE_MAX);
	buf_append(out, s, n);
	return 0;
}

/* system_hostname - the computed default of myhostname: a name with a dot */
static const char *
system_hostname(void)
{
	struct addrinfo hints, *res;
	char host[256];
	const char *canon;

	if (sys_hostname != NULL)
		return sys_hostname;
	if (gethostname(host, sizeof(host)) != 0 || host[0] == 0)
		strcpy(host, "localhost");
	host[sizeof(host) - 1] = 0;
	if (strchr(host, '.') == NULL) {
		memset(&hints, 0, sizeof(hints));
		hints.ai_flags = AI_CANONNAME;
		hints.ai_socktype = SOCK_STREAM;
		if (getaddrinfo(host, NULL, &hints, &res) == 0) {
			/* The resolver's answer is input: take it only if it looks like a host name. */
			canon = res->ai_canonname;
			if (canon != NULL && strchr(canon, '.') != NULL && strlen(canon) < sizeof(host) &&
			    strspn(canon, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") ==
			        strlen(canon))
				strcpy(host, canon);
			freeaddrinfo(res);
		}
	}
	if (strchr(host, '.') == NULL)
		sys_hostname = xasprintf("%s.localdomain", host);
	else
		sys_hostname = xstrdup(host);
	return sys_hostname;
}

/*
 * default_source - the text of a declared parameter's default, and whether
 * it is literal (computed values and CFG_RAW) rather than to be expanded.
 * Called with the entry's name pushed, so mydomain -> myhostname loops show.
 */
static int
default_source(struct xp *x, struct cfg_entry *e, const char **src, bool *literal)
{
	enum param_id id = cfg_param_id(e->param);
	const char *host, *dot;

	*literal = e->param->type == CFG_RAW;
	if (def_override[id] != NULL) {
		*src = def_override[id];
		return 0;
	}
	switch (id) {
	case P_MYHOSTNAME:
		*src = system_hostname();
		*literal = true;
		return 0;
	case P_MYDOMAIN:
		if (e->computed == NULL) {
			if (xp_value(x, x->st->byid[P_MYHOSTNAME], &host) != 0)
				return -1;
			dot = strchr(host, '.');
			e->computed = xstrdup(dot && dot[1] ? dot + 1 : "localdomain");
			x->st->ncached++;
		}
		*src = e->computed;
		*literal = true;
		return 0;
	case P_CONFIG_DIRECTORY:
		*src = x->st->dir ? x->st->dir : e->param->def;
		*literal = true;
		return 0;
	default:
		*src = e->param->def;
		return 0;
	}
}

/* xp_value - the expanded value of an entry (cached) */
static int
xp_value(struct xp *x, struct cfg_entry *e, const char **val)
{
	struct buf tmp = BUF_INIT, chain = BUF_INIT;
	const char *src;
	bool literal;
	int i, rc;

	if (e->cooked != NULL) {
		*val = e->cooked;
		return 0;
	}
	for (i = 0; i < x->nstack; i++) {
		if (strcmp(x->stack[i], e->name) == 0) {
			for (; i < x->nstack; i++)
				buf_printf(&chain, "%s -> ", x->stack[i]);
			buf_puts(&chain, e->name);
			x->base = x->nstack; /* the chain says where */
			rc = xp_fail(x, "$name loop: %s", buf_str(&chain));
			buf_free(&chain);
			return rc;
		}
	}
	if (x->nstack >= CFG_EXPAND_DEPTH)
		return xp_fail(x, "$name references nested more than %d deep", CFG_EXPAND_DEPTH);
	x->stack[x->nstack++] = e->name;
	if (e->raw != NULL) {
		src = e->raw;
		literal = e->param && e->param->type == CFG_RAW;
		rc = 0;
	} else if (e->param != NULL) {
		rc = default_source(x, e, &src, &literal);
	} else {
		src = "";
		literal = true;
		rc = 0;
	}
	if (rc == 0) {
		if (strlen(src) > CFG_VALUE_MAX)
			rc = xp_fail(x, "value longer than %d bytes", CFG_VALUE_MAX);
		else if (literal)
			rc = xp_put(x, &tmp, src, strlen(src));
		else
			rc = xp_text(x, src, strlen(src), &tmp);
	}
	x->nstack--;
	if (rc != 0) {
		buf_free(&tmp);
		return -1;
	}
	e->cooked = buf_export(&tmp);
	x->st->ncached++;
	*val = e->cooked;
	return 0;
}

/* xp_ref - one $name reference; op is 0, '?' or ':' with its text */
static int
xp_ref(struct xp *x, const char *name, size_t n, int op, const char *text, size_t tlen, struct buf *out)
{
	struct cfg_entry *e = cfg_store_find(x->st, name, n);
	const char *val = "";

	if (x->scan) {
		if (e != NULL)
			e->referenced = true;
		else if (op == 0 && x->scan_name != NULL)
			log_warn(
			    "%s: parameter %s: $%.*s is not set and no program declares it (it expands to nothing)",
			    x->scan_origin, x->scan_name, (int)n, name);
		return op ? xp_text(x, text, tlen, out) : 0;
	}
	if (e != NULL && xp_value(x, e, &val) != 0)
		return -1;
	if (op == 0)
		return xp_put(x, out, val, strlen(val));
	if ((op == '?') == (*val != 0))
		return xp_text(x, text, tlen, out);
	return 0;
}

/* xp_text - expand $name, ${name}, $(name), ${name?text}, ${name:text} and $$ */
static int
xp_text(struct xp *x, const char *s, size_t n, struct buf *out)
{
	const char *d, *name;
	size_t i = 0, lit, nlen, tstart;
	int open, close, level, op, rc = -1;

	if (++x->depth > CFG_EXPAND_DEPTH) {
		xp_fail(x, "$name references nested more than %d deep", CFG_EXPAND_DEPTH);
		goto out;
	}
	while (i < n) {
		d = memchr(s + i, '$', n - i);
		lit = d ? (size_t)(d - (s + i)) : n - i;
		if (xp_put(x, out, s + i, lit) != 0)
			goto out;
		if ((i += lit) == n)
			break;
		if (++i == n) {
			xp_fail(x, "\"$\" at the end of the value (write \"$$\" for a dollar sign)");
			goto out;
		}
		open = (unsigned char)s[i];
		if (open == '$') {
			if (xp_put(x, out, "$", 1) != 0)
				goto out;
			i++;
			continue;
		}
		if (cfg_name_char(open)) {
			for (name = s + i; i < n && cfg_name_char((unsigned char)s[i]); i++)
				;
			if (xp_ref(x, name, (size_t)(s + i - name), 0, NULL, 0, out) != 0)
				goto out;
			continue;
		}
		if (open != '{' && open != '(') {
			xp_fail(x, "\"$\" followed by '%c' (write \"$$\" for a dollar sign)", open < 0x20 ? '?' : open);
			goto out;
		}
		close = open == '{' ? '}' : ')';
		for (name = s + ++i; i < n && cfg_name_char((unsigned char)s[i]); i++)
			;
		nlen = (size_t)(s + i - name);
		if (nlen == 0) {
			xp_fail(x, "no parameter name after \"$%c\"", open);
			goto out;
		}
		if (i == n) {
			xp_fail(x, "missing '%c' after \"$%c%.*s\"", close, open, (int)(nlen > 60 ? 60 : nlen), name);
			goto out;
		}
		op = (unsigned char)s[i];
		if (op == close) {
			i++;
			if (xp_ref(x, name, nlen, 0, NULL, 0, out) != 0)
				goto out;
			continue;
		}
		if (op != '?' && op != ':') {
			xp_fail(x, "unexpected '%c' after \"$%c%.*s\" (expected '%c', '?' or ':')",
			    op < 0x20 ? '?' : op, open, (int)(nlen > 60 ? 60 : nlen), name, close);
			goto out;
		}
		/* The text runs to the matching close; nested pairs may appear in it. */
		for (tstart = ++i, level = 0; i < n; i++) {
			if (s[i] == open)
				level++;
			else if (s[i] == close && level-- == 0)
				break;
		}
		if (i == n) {
			xp_fail(
			    x, "missing '%c' after \"$%c%.*s%c\"", close, open, (int)(nlen > 60 ? 60 : nlen), name, op);
			goto out;
		}
		if (xp_ref(x, name, nlen, op, s + tstart, i - tstart, out) != 0)
			goto out;
		i++;
	}
	rc = 0;
out:
	x->depth--;
	return rc;
}

static void
xp_init(struct xp *x, struct cfg_store *st, struct buf *err)
{
	memset(x, 0, sizeof(*x));
	x->st = st;
	x->err = err;
	x->depth = -1; /* the outermost text is not a nested reference */
}

int
cfg_expand(const char *text, struct buf *out, struct buf *err)
{
	struct xp x;

	xp_init(&x, cfg_store_current(), err);
	buf_reset(out);
	return xp_text(&x, text, strlen(text), out);
}

const char *
cfg_entry_value(struct cfg_store *st, struct cfg_entry *e, struct buf *why)
{
	const char *val;
	struct xp x;

	xp_init(&x, st, why);
	x.base = 1; /* errors in e's own value need no "in the value of" */
	if (xp_value(&x, e, &val) != 0)
		return NULL;
	return val;
}

const char *
cfg_entry_default(struct cfg_store *st, struct cfg_entry *e)
{
	const char *src;
	bool literal;
	struct xp x;

	xp_init(&x, st, NULL);
	x.stack[x.nstack++] = e->name;
	if (default_source(&x, e, &src, &literal) != 0)
		return ""; /* myhostname is broken; cfg_check says how */
	return src;
}

void
cfg_scan_refs(struct cfg_store *st, const char *text, const char *origin, const char *name)
{
	struct xp x;

	xp_init(&x, st, NULL);
	x.scan = true;
	x.scan_origin = origin;
	x.scan_name = name;
	(void)xp_text(&x, text, strlen(text), NULL);
}
