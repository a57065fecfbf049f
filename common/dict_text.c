/*
 * dict_text - the text source format of lookup tables, and texthash:.
 *
 * dict_text_parse() reads the files admins write: "postern map" builds
 * .db files from them and texthash: reads them straight into memory.
 * The file is trusted no more than any input: every physical line is
 * bounded by DICT_TEXT_LINE_MAX, every logical line (continuations
 * joined) by DICT_VALUE_MAX, keys by DICT_KEY_MAX, and a NUL byte is an
 * error rather than a silent truncation.  Errors name file:line.
 *
 * The in-memory table (dict_htab) used by texthash: and inline: lives
 * here too.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dict.h"
#include "dict_impl.h"
#include "log.h"
#include "xalloc.h"

/* ---------------------------------------------------------------- in-memory table */

struct dict_htab_ent {
	char *key;
	size_t klen;
	unsigned char *val;
	size_t vlen;
};

struct dict_htab {
	struct dict_htab_ent *ents; /* insertion order */
	size_t n, cap;
	size_t *slots; /* index + 1 into ents; 0 = empty */
	size_t nslots; /* a power of two, at least twice n */
	uint64_t seed;
};

/*
 * htab_hash - FNV-1a with a per-table random offset, so that the slot
 * order of a table is not predictable from its keys alone.
 */
static uint64_t
htab_hash(const struct dict_htab *t, const char *key, size_t klen)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ t->seed;
	size_t i;

	for (i = 0; i < klen; i++) {
		h ^= (unsigned char)key[i];
		h *= 0x100000001b3ULL;
	}
	return h ^ (h >> 29);
}

struct dict_htab *
dict_htab_new(void)
{
	struct dict_htab *t;

	t = xcalloc(1, sizeof(*t));
	t->nslots = 16;
	t->slots = xcalloc(t->nslots, sizeof(*t->slots));
	t->seed = ((uint64_t)arc4random() << 32) | arc4random();
	return t;
}

void
dict_htab_free(struct dict_htab *t)
{
	size_t i;

	if (t == NULL)
		return;
	for (i = 0; i < t->n; i++) {
		free(t->ents[i].key);
		free(t->ents[i].val);
	}
	free(t->ents);
	free(t->slots);
	free(t);
}

/* htab_slot - the slot holding key, or the empty slot where it would go */
static size_t
htab_slot(const struct dict_htab *t, const char *key, size_t klen)
{
	size_t mask = t->nslots - 1, i;
	const struct dict_htab_ent *e;

	for (i = (size_t)htab_hash(t, key, klen) & mask;; i = (i + 1) & mask) {
		if (t->slots[i] == 0)
			return i;
		e = &t->ents[t->slots[i] - 1];
		if (e->klen == klen && memcmp(e->key, key, klen) == 0)
			return i;
	}
}

static void
htab_grow(struct dict_htab *t)
{
	size_t i, j, mask;

	free(t->slots);
	t->nslots *= 2;
	t->slots = xcalloc(t->nslots, sizeof(*t->slots));
	mask = t->nslots - 1;
	for (i = 0; i < t->n; i++) {
		for (j = (size_t)htab_hash(t, t->ents[i].key, t->ents[i].klen) & mask; t->slots[j] != 0;
		     j = (j + 1) & mask)
			;
		t->slots[j] = i + 1;
	}
}

/* htab_dup - a copy of n bytes, NUL-terminated (n may be 0) */
static void *
htab_dup(const void *p, size_t n)
{
	unsigned char *c;

	c = xmalloc(n + 1);
	if (n)
		memcpy(c, p, n);
	c[n] = 0;
	return c;
}

int
dict_htab_put(struct dict_htab *t, const char *key, size_t klen, const unsigned char *val, size_t vlen)
{
	struct dict_htab_ent *e;
	size_t s;

	s = htab_slot(t, key, klen);
	if (t->slots[s] != 0) {
		e = &t->ents[t->slots[s] - 1];
		free(e->val);
		e->val = htab_dup(val, vlen);
		e->vlen = vlen;
		return 1;
	}
	if (t->n >= DICT_HTAB_MAX)
		return -1;
	if (t->n == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 16;
		t->ents = xreallocarray(t->ents, t->cap, sizeof(*t->ents));
	}
	e = &t->ents[t->n];
	e->key = htab_dup(key, klen);
	e->klen = klen;
	e->val = htab_dup(val, vlen);
	e->vlen = vlen;
	t->slots[s] = ++t->n;
	/* Keep the load at or under one half so probe runs stay short. */
	if (t->n * 2 > t->nslots)
		htab_grow(t);
	return 0;
}

const unsigned char *
dict_htab_get(const struct dict_htab *t, const char *key, size_t klen, size_t *vlen)
{
	const struct dict_htab_ent *e;
	size_t s;

	s = htab_slot(t, key, klen);
	if (t->slots[s] == 0)
		return NULL;
	e = &t->ents[t->slots[s] - 1];
	*vlen = e->vlen;
	return e->val;
}

size_t
dict_htab_count(const struct dict_htab *t)
{
	return t->n;
}

bool
dict_htab_entry(const struct dict_htab *t, size_t i, struct buf *key, struct buf *value)
{
	if (i >= t->n)
		return false;
	buf_set(key, t->ents[i].key, t->ents[i].klen);
	buf_set(value, t->ents[i].val, t->ents[i].vlen);
	return true;
}

/* ---------------------------------------------------------------- text source parser */

#define TEXT_READ_CHUNK 65536

struct text_parse {
	const char *path;
	int flags;
	int (*fn)(const char *key, const char *value, int line, void *arg);
	void *arg;
	struct buf *err;
	struct buf logical; /* the entry being assembled */
	int logical_line;   /* its first line, 0 = none */
};

static int text_error(struct text_parse *tp, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* text_error - append "path:line: reason" to err and return -1 */
static int
text_error(struct text_parse *tp, int line, const char *fmt, ...)
{
	va_list ap;

	if (tp->err == NULL)
		return -1;
	buf_printf(tp->err, "%s:%d: ", tp->path, line);
	va_start(ap, fmt);
	buf_vprintf(tp->err, fmt, ap);
	va_end(ap);
	return -1;
}

static bool
text_space(int c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

/*
 * text_alias_name - split an aliases(5) entry at the colon that ends the
 * name.  The name is a bare word up to the first ':' or a quoted string
 * ("name with spaces":) in which \" and \\ stand for themselves.  On
 * success returns NULL with *name a fresh string and *value pointing
 * into s; otherwise the reason.
 */
static const char *
text_alias_name(char *s, char **name, char **value)
{
	struct buf b = BUF_INIT;
	const char *why = NULL;
	char *p, *e;

	if (*s == '"') {
		for (p = s + 1; *p && *p != '"'; p++) {
			if (*p == '\\' && (p[1] == '"' || p[1] == '\\'))
				p++;
			buf_putc(&b, *p);
		}
		if (*p != '"') {
			why = "unterminated quoted name";
		} else {
			for (p++; text_space(*p); p++)
				;
			if (*p != ':')
				why = "missing ':' after the quoted name";
		}
	} else if ((p = strchr(s, ':')) == NULL) {
		why = "missing ':' after the name (expected \"name: value\")";
	} else {
		for (e = p; e > s && text_space(e[-1]); e--)
			;
		buf_append(&b, s, (size_t)(e - s));
		if (strpbrk(buf_str(&b), " \t") != NULL)
			why = "white space in a name; quote the name (\"a b\": value)";
	}
	if (why == NULL && buf_len(&b) == 0)
		why = "empty name";
	if (why != NULL) {
		buf_free(&b);
		return why;
	}
	*value = p + 1;
	*name = buf_export(&b);
	return NULL;
}

/* text_entry - split the assembled logical line into key and value and hand them over */
static int
text_entry(struct text_parse *tp)
{
	char *s = (char *)tp->logical.data, *key = NULL, *value = NULL, *e;
	const char *why;
	int rc;

	if (tp->flags & DICT_TEXT_ALIASES) {
		if ((why = text_alias_name(s, &key, &value)) != NULL)
			return text_error(tp, tp->logical_line, "%s", why);
	} else {
		for (e = s; *e && !text_space(*e); e++)
			;
		key = xstrndup(s, (size_t)(e - s));
		value = e;
	}
	while (text_space(*value))
		value++;
	/* Trailing white space was stripped from each physical line already. */
	if (strlen(key) > DICT_KEY_MAX) {
		free(key);
		return text_error(tp, tp->logical_line, "key longer than %d bytes", DICT_KEY_MAX);
	}
	if (*value == 0) {
		rc = text_error(tp, tp->logical_line, "no value for \"%s\"", key);
		free(key);
		return rc;
	}
	rc = tp->fn(key, value, tp->logical_line, tp->arg);
	free(key);
	if (rc != 0) {
		if (tp->err != NULL && buf_len(tp->err) == 0)
			text_error(tp, tp->logical_line, "entry rejected");
		return -1;
	}
	return 0;
}

/* text_line - one physical line (without its newline): a new entry, a continuation, or nothing */
static int
text_line(struct text_parse *tp, unsigned char *line, size_t len, int lineno)
{
	char *s = (char *)line, *p;

	if (memchr(line, 0, len) != NULL)
		return text_error(tp, lineno, "NUL byte in line");
	while (len > 0 && text_space(line[len - 1]))
		line[--len] = 0;
	for (p = s; text_space(*p); p++)
		;
	if (*p == 0 || *p == '#')
		return 0;
	if (p != s) {
		if (tp->logical_line == 0)
			return text_error(
			    tp, lineno, "continuation line (starts with white space) without an entry before it");
		if (buf_len(&tp->logical) + 1 + strlen(p) > DICT_VALUE_MAX)
			return text_error(tp, tp->logical_line, "entry longer than %d bytes", DICT_VALUE_MAX);
		buf_putc(&tp->logical, ' ');
		buf_puts(&tp->logical, p);
		return 0;
	}
	if (tp->logical_line != 0 && text_entry(tp) != 0)
		return -1;
	buf_strcpy(&tp->logical, s);
	tp->logical_line = lineno;
	return 0;
}

int
dict_text_parse_fd(int fd, const char *path, int textflags,
    int (*fn)(const char *key, const char *value, int line, void *arg), void *arg, struct buf *err)
{
	struct text_parse tp = { path, textflags, fn, arg, err, BUF_INIT, 0 };
	struct buf line = BUF_INIT;
	unsigned char *chunk, *nl, *p;
	int lineno = 1, rc = -1;
	ssize_t n;
	size_t take;

	chunk = xmalloc(TEXT_READ_CHUNK);
	for (;;) {
		n = read(fd, chunk, TEXT_READ_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			text_error(&tp, lineno, "read error: %s", strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		for (p = chunk; p < chunk + n; p += take) {
			nl = memchr(p, '\n', (size_t)(chunk + n - p));
			take = nl ? (size_t)(nl - p) + 1 : (size_t)(chunk + n - p);
			if (buf_len(&line) + (nl ? take - 1 : take) > DICT_TEXT_LINE_MAX) {
				text_error(&tp, lineno, "line longer than %d bytes", DICT_TEXT_LINE_MAX);
				goto out;
			}
			buf_append(&line, p, nl ? take - 1 : take);
			if (nl == NULL)
				continue;
			if (lineno == INT32_MAX) {
				text_error(&tp, lineno, "too many lines");
				goto out;
			}
			if (text_line(&tp, line.data, buf_len(&line), lineno) != 0)
				goto out;
			buf_reset(&line);
			lineno++;
		}
	}
	/* A last line without a newline still counts. */
	if (buf_len(&line) > 0 && text_line(&tp, line.data, buf_len(&line), lineno) != 0)
		goto out;
	if (tp.logical_line != 0 && text_entry(&tp) != 0)
		goto out;
	rc = 0;
out:
	free(chunk);
	buf_free(&line);
	buf_free(&tp.logical);
	return rc;
}

/* text_open - open a table source for reading; -1 with err set */
static int
text_open(const char *path, struct stat *st, struct buf *err)
{
	int fd;

	/* O_NONBLOCK: a FIFO put where a table should be must not hang a daemon. */
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) < 0) {
		if (err)
			buf_printf(err, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
		if (err)
			buf_printf(err, "%s: not a regular file", path);
		close(fd);
		return -1;
	}
	return fd;
}

int
dict_text_parse(const char *path, int textflags, int (*fn)(const char *key, const char *value, int line, void *arg),
    void *arg, struct buf *err)
{
	struct stat st;
	int fd, rc;

	if ((fd = text_open(path, &st, err)) < 0)
		return -1;
	rc = dict_text_parse_fd(fd, path, textflags, fn, arg, err);
	close(fd);
	return rc;
}

/* ---------------------------------------------------------------- texthash: */


struct texthash_load {
	struct dict *d;
	struct dict_htab *tab;
	const char *path;
};

static int
texthash_add(const char *key, const char *value, int line, void *arg)
{
	struct texthash_load *tl = arg;
	size_t klen = strlen(key);
	char *k;
	int rc;

	k = xstrndup(key, klen);
	if (!(tl->d->flags & DICT_FLAG_NOFOLD))
		dict_fold(k, klen);
	rc = dict_htab_put(tl->tab, k, klen, (const unsigned char *)value, strlen(value));
	if (rc == 1 && !(tl->d->flags & DICT_FLAG_DUP_OK))
		log_warn("%s:%d: duplicate entry for \"%s\"; the later one wins", tl->path, line, k);
	free(k);
	return rc < 0 ? -1 : 0;
}

static enum dict_result
memtab_lookup(struct dict *d, const char *key, size_t klen, struct buf *value)
{
	struct dict_memtab *p = d->priv;
	const unsigned char *v;
	size_t vlen;

	if ((v = dict_htab_get(p->tab, key, klen, &vlen)) == NULL)
		return DICT_NOTFOUND;
	buf_set(value, v, vlen);
	return DICT_FOUND;
}

static int
memtab_sequence(struct dict *d, bool first, struct buf *key, struct buf *value)
{
	struct dict_memtab *p = d->priv;

	if (first)
		p->seq = 0;
	if (!dict_htab_entry(p->tab, p->seq, key, value))
		return 1;
	p->seq++;
	return 0;
}

static void
memtab_close(struct dict *d)
{
	struct dict_memtab *p = d->priv;

	if (p == NULL)
		return;
	dict_htab_free(p->tab);
	if (p->fd >= 0)
		close(p->fd);
	free(p);
	d->priv = NULL;
	d->watch_fd = -1;
}

/* In-memory tables (texthash:, unix:, inline:) share these operations. */
const struct dict_ops dict_memtab_ops = {
	.lookup = memtab_lookup,
	.sequence = memtab_sequence,
	.close = memtab_close,
	.reopen = dict_reopen_by_name,
};

struct dict *
dict_texthash_open(const char *name, int flags, struct buf *err)
{
	struct texthash_load tl;
	struct dict_memtab *p;
	struct buf why = BUF_INIT;
	struct dict *d;
	struct stat st;
	int fd;

	if (flags & DICT_FLAG_WRITE) {
		buf_printf(err, "texthash:%s: texthash tables are edited as text, not written", name);
		return NULL;
	}
	if ((fd = text_open(name, &st, &why)) < 0) {
		d = dict_surrogate("texthash", name, flags, name, "%s", buf_str(&why));
		buf_free(&why);
		return d;
	}
	d = dict_alloc("texthash", name, flags, &dict_memtab_ops);
	tl.d = d;
	tl.tab = dict_htab_new();
	tl.path = name;
	if (dict_text_parse_fd(
	        fd, name, (flags & DICT_FLAG_ALIASES) ? DICT_TEXT_ALIASES : 0, texthash_add, &tl, &why) != 0) {
		dict_htab_free(tl.tab);
		dict_free(d);
		d = dict_surrogate("texthash", name, flags, NULL, "%s", buf_len(&why) ? buf_str(&why) : "cannot load");
		/* Watch the broken file itself: only a new version is worth another parse. */
		dict_watch(d, name, fd);
		close(fd);
		d->watch_fd = -1;
		buf_free(&why);
		return d;
	}
	buf_free(&why);
	p = xcalloc(1, sizeof(*p));
	p->tab = tl.tab;
	p->fd = fd;
	d->priv = p;
	dict_watch(d, name, fd);
	return d;
}
