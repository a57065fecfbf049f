/*
 * cleanup_envelope - envelope addresses on their way into the queue:
 * canonical_maps (senders and recipients, one address for another) and
 * virtual_alias_maps (recipients, one address for a list, recursively),
 * then duplicate removal.
 *
 * cleanup.c calls it once per envelope address, before any content is
 * read.  Addresses come from smtpd, pickup or qmgr in external form and
 * have been checked by cleanup.c; table values are the admin's, but a
 * value that is not an address is refused with a warning rather than
 * stored.  A table that answers "try again" makes the whole message wait
 * (status 4): a recipient is never dropped, bounced or delivered to its
 * unexpanded address because a table was unreadable.  Expansion is
 * iterative with an explicit stack whose size, like the nesting depth,
 * is bounded by virtual_alias_expansion_limit and
 * virtual_alias_recursion_limit, so a hostile or looping table costs
 * bounded memory and time.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "log.h"
#include "str.h"
#include "xalloc.h"

/* Longest address accepted from a table (the envelope's own cap is larger than RFC 5321's). */
#define CR_ADDR_MAX 1024

/* How a lookup matched (decides what happens to the extension and the local part). */
enum {
	CR_FULL,     /* the whole address, or the whole local part */
	CR_NOEXT,    /* the address without its extension: propagate the extension */
	CR_CATCHALL, /* "@domain": a result "@other" keeps the local part */
};

bool
cleanup_addr_ok(const char *addr)
{
	size_t i;

	for (i = 0; addr[i]; i++)
		if ((unsigned char)addr[i] < 0x20 || addr[i] == 0x7f || i >= CR_ADDR_MAX)
			return false;
	return i > 0 && addr[0] != '<' && addr[i - 1] != '>';
}

/* cr_at - the offset of the '@' before the domain (the last one outside quotes), or -1 */
static ssize_t
cr_at(const char *addr)
{
	ssize_t at = -1, i;
	bool quoted = false;

	for (i = 0; addr[i]; i++) {
		if (addr[i] == '\\' && quoted && addr[i + 1]) {
			i++;
			continue;
		}
		if (addr[i] == '"')
			quoted = !quoted;
		else if (addr[i] == '@' && !quoted)
			at = i;
	}
	return at;
}

/* cr_same - same mailbox: equal local parts, domains equal ignoring case */
static bool
cr_same(const char *a, const char *b)
{
	ssize_t aa = cr_at(a), ba = cr_at(b);

	if (aa != ba)
		return false;
	if (aa < 0)
		return strcmp(a, b) == 0;
	return memcmp(a, b, (size_t)aa) == 0 && str_casecmp(a + aa, b + ba) == 0;
}

/* cr_hash - FNV-1a over the local part and the folded domain */
static uint64_t
cr_hash(const char *addr)
{
	ssize_t at = cr_at(addr), i;
	uint64_t h = 14695981039346656037ULL;
	unsigned char c;

	for (i = 0; addr[i]; i++) {
		c = (unsigned char)addr[i];
		if (at >= 0 && i > at && c >= 'A' && c <= 'Z')
			c += 'a' - 'A';
		h = (h ^ c) * 1099511628211ULL;
	}
	return h;
}

void
cleanup_rcpts_init(struct cleanup_rcpts *l)
{
	memset(l, 0, sizeof(*l));
}

void
cleanup_rcpts_free(struct cleanup_rcpts *l)
{
	size_t i;

	for (i = 0; i < l->n; i++) {
		free(l->v[i].addr);
		free(l->v[i].orcpt);
	}
	free(l->v);
	free(l->slots);
	memset(l, 0, sizeof(*l));
}

/* cr_slot - the slot for addr: holding its index + 1, or 0 (free) */
static size_t *
cr_slot(struct cleanup_rcpts *l, const char *addr)
{
	size_t i = (size_t)cr_hash(addr) & (l->nslots - 1);

	while (l->slots[i] != 0 && !cr_same(l->v[l->slots[i] - 1].addr, addr))
		i = (i + 1) & (l->nslots - 1);
	return &l->slots[i];
}

/* cr_rehash - keep the table at most half full */
static void
cr_rehash(struct cleanup_rcpts *l)
{
	size_t i;

	if (l->nslots > 2 * (l->n + 1))
		return;
	free(l->slots);
	l->nslots = l->nslots ? l->nslots * 2 : 64;
	l->slots = xcalloc(l->nslots, sizeof(*l->slots));
	for (i = 0; i < l->n; i++)
		*cr_slot(l, l->v[i].addr) = i + 1;
}

/* cr_add - append a recipient unless it is there already; -1 when the list is full */
static int
cr_add(struct cleanup_rcpts *l, const char *addr, const char *orcpt, int notify)
{
	size_t *slot;

	cr_rehash(l);
	slot = cr_slot(l, addr);
	if (*slot != 0)
		return 0;
	if (l->n >= CLEANUP_EXPANDED_MAX)
		return -1;
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		l->v = xreallocarray(l->v, l->cap, sizeof(*l->v));
	}
	l->v[l->n].addr = xstrdup(addr);
	l->v[l->n].orcpt = orcpt ? xstrdup(orcpt) : NULL;
	l->v[l->n].notify = notify;
	*slot = ++l->n;
	return 0;
}

int
cleanup_rewrite_open(struct cleanup_rewrite *rw, const char *canonical, const char *sender_canonical,
    const char *recipient_canonical, const char *virtual_alias, struct buf *err)
{
	const char *specs[4] = { canonical, sender_canonical, recipient_canonical, virtual_alias };
	struct dict_list **lists[4];
	size_t i;

	memset(rw, 0, sizeof(*rw));
	lists[0] = &rw->canonical;
	lists[1] = &rw->sender_canonical;
	lists[2] = &rw->recipient_canonical;
	lists[3] = &rw->virtual_alias;
	rw->myorigin = xstrdup("");
	rw->delimiters = xstrdup("");
	rw->recursion_limit = 1000;
	rw->expansion_limit = 1000;
	for (i = 0; i < 4; i++) {
		/* An empty setting costs nothing per lookup. */
		if (specs[i] == NULL || specs[i][strspn(specs[i], STR_LIST_SEP)] == 0)
			continue;
		if ((*lists[i] = dict_list_open(specs[i], 0, err)) == NULL) {
			cleanup_rewrite_close(rw);
			return -1;
		}
	}
	return 0;
}

void
cleanup_rewrite_local(struct cleanup_rewrite *rw, const char *mydestination, const char *myorigin)
{
	char *copy, *p, *tok;
	size_t i;

	for (i = 0; i < rw->nlocal; i++)
		free(rw->local_domains[i]);
	free(rw->local_domains);
	rw->local_domains = NULL;
	rw->nlocal = 0;
	free(rw->myorigin);
	rw->myorigin = str_lower(xstrdup(myorigin ? myorigin : ""));
	copy = p = xstrdup(mydestination ? mydestination : "");
	while ((tok = str_token(&p, STR_LIST_SEP)) != NULL) {
		/* Table lookups in mydestination are for trivial-rewrite's successor, not for keys here. */
		if (strchr(tok, ':') != NULL || strchr(tok, '/') != NULL)
			continue;
		rw->local_domains = xreallocarray(rw->local_domains, rw->nlocal + 2, sizeof(char *));
		rw->local_domains[rw->nlocal++] = str_lower(xstrdup(tok));
	}
	if (*rw->myorigin) {
		rw->local_domains = xreallocarray(rw->local_domains, rw->nlocal + 1, sizeof(char *));
		rw->local_domains[rw->nlocal++] = xstrdup(rw->myorigin);
	}
	free(copy);
}

void
cleanup_rewrite_close(struct cleanup_rewrite *rw)
{
	size_t i;

	if (rw->canonical)
		dict_list_close(rw->canonical);
	if (rw->sender_canonical)
		dict_list_close(rw->sender_canonical);
	if (rw->recipient_canonical)
		dict_list_close(rw->recipient_canonical);
	if (rw->virtual_alias)
		dict_list_close(rw->virtual_alias);
	for (i = 0; i < rw->nlocal; i++)
		free(rw->local_domains[i]);
	free(rw->local_domains);
	free(rw->myorigin);
	free(rw->delimiters);
	memset(rw, 0, sizeof(*rw));
}

static bool
cr_local_domain(const struct cleanup_rewrite *rw, const char *domain)
{
	size_t i;

	for (i = 0; i < rw->nlocal; i++)
		if (str_casecmp(rw->local_domains[i], domain) == 0)
			return true;
	return false;
}

/* cr_qualify - addr into out, with "@myorigin" when it has no domain */
static void
cr_qualify(const struct cleanup_rewrite *rw, const char *addr, struct buf *out)
{
	buf_strcpy(out, addr);
	if (cr_at(addr) < 0 && *rw->myorigin)
		buf_printf(out, "@%s", rw->myorigin);
}

/*
 * cr_lookup - look addr up in l in Postfix's order; on DICT_FOUND value
 * holds the result, *how says which key matched and ext holds the
 * extension (with its delimiter) that the key left out, if any.
 */
static enum dict_result
cr_lookup(const struct cleanup_rewrite *rw, struct dict_list *l, const char *addr, struct buf *value, int *how,
    struct buf *ext)
{
	struct buf key = BUF_INIT;
	ssize_t at = cr_at(addr);
	size_t local_len, user_len;
	const char *domain;
	enum dict_result r;

	buf_reset(ext);
	if ((r = dict_list_lookup(l, addr, value)) != DICT_NOTFOUND || at < 0) {
		*how = CR_FULL;
		goto out;
	}
	domain = addr + at + 1;
	local_len = (size_t)at;
	/* The extension starts at the first delimiter that is not the first character. */
	user_len = local_len;
	if (*rw->delimiters && local_len > 1) {
		user_len = 1 + strcspn(addr + 1, rw->delimiters);
		if (user_len >= local_len)
			user_len = local_len;
	}
	if (user_len < local_len) {
		buf_set(&key, addr, user_len);
		buf_printf(&key, "@%s", domain);
		if ((r = dict_list_lookup(l, buf_str(&key), value)) != DICT_NOTFOUND) {
			*how = CR_NOEXT;
			buf_set(ext, addr + user_len, local_len - user_len);
			goto out;
		}
	}
	if (cr_local_domain(rw, domain)) {
		buf_set(&key, addr, local_len);
		if ((r = dict_list_lookup(l, buf_str(&key), value)) != DICT_NOTFOUND) {
			*how = CR_FULL;
			goto out;
		}
		if (user_len < local_len) {
			buf_set(&key, addr, user_len);
			if ((r = dict_list_lookup(l, buf_str(&key), value)) != DICT_NOTFOUND) {
				*how = CR_NOEXT;
				buf_set(ext, addr + user_len, local_len - user_len);
				goto out;
			}
		}
	}
	buf_strcpy(&key, addr + at);
	r = dict_list_lookup(l, buf_str(&key), value);
	*how = CR_CATCHALL;
out:
	buf_free(&key);
	return r;
}

/*
 * cr_result - one address of a lookup result into out: "@domain" after a
 * catch-all keeps the local part, a bare name gets "@myorigin", and the
 * extension a key left out goes back in.  False when it is no address.
 */
static bool
cr_result(const struct cleanup_rewrite *rw, const char *addr, const char *res, int how, const struct buf *ext,
    struct buf *out)
{
	ssize_t at;

	if (how == CR_CATCHALL && res[0] == '@' && (at = cr_at(addr)) >= 0) {
		buf_set(out, addr, (size_t)at);
		buf_puts(out, res);
	} else {
		cr_qualify(rw, res, out);
		if (how == CR_NOEXT && ext->len > 0 && (at = cr_at(buf_str(out))) > 0) {
			struct buf tmp = BUF_INIT;

			buf_set(&tmp, out->data, (size_t)at);
			buf_append(&tmp, ext->data, ext->len);
			buf_puts(&tmp, buf_str(out) + at);
			buf_set(out, tmp.data, tmp.len);
			buf_free(&tmp);
		}
	}
	return cleanup_addr_ok(buf_str(out)) && !buf_has_nul(out) && out->data[0] != '@';
}

/* cr_retry - a table asked us to try again */
static int
cr_retry(struct dict_list *l, const char *param, const char *addr, struct cleanup_status *st)
{
	log_warn("%s: lookup of <%s> failed: %s", param, addr, dict_list_error(l));
	return cleanup_status_set(st, CLEANUP_STAT_TEMP, "4.3.0", "%s lookup error, try again later", param);
}

/* cr_bad_value - a table gave something that is not an address */
static int
cr_bad_value(const char *param, const char *addr, const char *value, struct cleanup_status *st)
{
	log_warn("%s: the result for <%s> is not a valid address: \"%.100s\"", param, addr, value);
	return cleanup_status_set(st, CLEANUP_STAT_TEMP, "4.3.0", "%s lookup error, try again later", param);
}

/* cr_canonical - one canonical table list applied to the address in addr (in place) */
static int
cr_canonical(const struct cleanup_rewrite *rw, struct dict_list *l, const char *param, struct buf *addr,
    struct cleanup_status *st)
{
	struct buf value = BUF_INIT, ext = BUF_INIT, out = BUF_INIT;
	char *copy, *p, *first;
	int how, ret = 0;

	if (l == NULL)
		return 0;
	switch (cr_lookup(rw, l, buf_str(addr), &value, &how, &ext)) {
	case DICT_RETRY:
		ret = cr_retry(l, param, buf_str(addr), st);
		break;
	case DICT_FOUND:
		/* One address for one: the first of a list counts. */
		copy = p = xstrdup(buf_str(&value));
		if ((first = str_token(&p, STR_LIST_SEP)) == NULL ||
		    !cr_result(rw, buf_str(addr), first, how, &ext, &out))
			ret = cr_bad_value(param, buf_str(addr), buf_str(&value), st);
		else
			buf_set(addr, out.data, out.len);
		free(copy);
		break;
	default:
		break;
	}
	buf_free(&value);
	buf_free(&ext);
	buf_free(&out);
	return ret;
}

int
cleanup_rewrite_sender(struct cleanup_rewrite *rw, const char *sender, struct buf *out, struct cleanup_status *st)
{
	if (*sender == 0) {
		buf_reset(out);
		return 0;
	}
	cr_qualify(rw, sender, out);
	if (cr_canonical(rw, rw->sender_canonical, "sender_canonical_maps", out, st) < 0 ||
	    cr_canonical(rw, rw->canonical, "canonical_maps", out, st) < 0)
		return -1;
	return 0;
}

/* One address waiting to be expanded. */
struct cr_item {
	char *addr;
	long depth; /* lookups that found something on the way here */
	bool final; /* mapped to itself: stored as it is */
};

struct cr_stack {
	struct cr_item *v;
	size_t n, cap;
};

static void
cr_push(struct cr_stack *s, const char *addr, long depth, bool final)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 16;
		s->v = xreallocarray(s->v, s->cap, sizeof(*s->v));
	}
	s->v[s->n].addr = xstrdup(addr);
	s->v[s->n].depth = depth;
	s->v[s->n].final = final;
	s->n++;
}

/* cr_store - one final recipient into the list, with the ORCPT it deserves */
static int
cr_store(struct cleanup_rcpts *l, const char *addr, const char *original, const char *orcpt, int notify,
    struct cleanup_status *st)
{
	struct buf o = BUF_INIT;
	int r;

	/* A changed recipient remembers what the client asked for (RFC 3461 ORCPT). */
	if (orcpt == NULL && strcmp(addr, original) != 0) {
		cleanup_orcpt_of(&o, original);
		orcpt = buf_str(&o);
	}
	r = cr_add(l, addr, orcpt, notify);
	buf_free(&o);
	if (r < 0)
		return cleanup_status_set(
		    st, CLEANUP_STAT_PERM, "5.5.3", "too many recipients (more than %d)", CLEANUP_EXPANDED_MAX);
	return 0;
}

/* cr_virtual - expand addr through virtual_alias_maps into l */
static int
cr_virtual(struct cleanup_rewrite *rw, struct cleanup_rcpts *l, const char *addr, const char *original,
    const char *orcpt, int notify, struct cleanup_status *st)
{
	struct buf value = BUF_INIT, ext = BUF_INIT, res = BUF_INIT;
	struct cr_stack stack = { NULL, 0, 0 };
	struct cr_item it;
	size_t produced = 0, mark, i;
	char *copy, *p, *tok;
	int how, ret = 0;

	cr_push(&stack, addr, 0, false);
	while (stack.n > 0 && ret == 0) {
		it = stack.v[--stack.n];
		if (it.final) {
			ret = cr_store(l, it.addr, original, orcpt, notify, st);
			produced++;
			free(it.addr);
			continue;
		}
		switch (cr_lookup(rw, rw->virtual_alias, it.addr, &value, &how, &ext)) {
		case DICT_RETRY:
			ret = cr_retry(rw->virtual_alias, "virtual_alias_maps", it.addr, st);
			break;
		case DICT_NOTFOUND:
			ret = cr_store(l, it.addr, original, orcpt, notify, st);
			produced++;
			break;
		case DICT_FOUND:
			if (it.depth >= rw->recursion_limit) {
				log_warn("virtual_alias_maps: unreasonable nesting for <%s> (more than %ld levels), "
				         "message not accepted",
				    original, rw->recursion_limit);
				ret = cleanup_status_set(st, CLEANUP_STAT_TEMP, "4.3.0",
				    "unreasonable virtual_alias_maps map nesting for <%s>", original);
				break;
			}
			/* Push in reverse so that the results come out in table order. */
			mark = stack.n;
			copy = p = xstrdup(buf_str(&value));
			while (ret == 0 && (tok = str_token(&p, STR_LIST_SEP)) != NULL) {
				if (!cr_result(rw, it.addr, tok, how, &ext, &res))
					ret = cr_bad_value("virtual_alias_maps", it.addr, tok, st);
				else
					cr_push(&stack, buf_str(&res), it.depth + 1, cr_same(buf_str(&res), it.addr));
				if (stack.n + produced > (size_t)rw->expansion_limit) {
					log_warn(
					    "virtual_alias_maps: unreasonable expansion size for <%s> (more than %ld "
					    "addresses), message not accepted",
					    original, rw->expansion_limit);
					ret = cleanup_status_set(st, CLEANUP_STAT_TEMP, "4.3.0",
					    "unreasonable virtual_alias_maps map expansion size for <%s>", original);
				}
			}
			free(copy);
			if (ret == 0 && stack.n == mark) {
				/* An empty value: keep the address rather than lose the mail. */
				log_warn("virtual_alias_maps: empty result for <%s>", it.addr);
				ret = cr_store(l, it.addr, original, orcpt, notify, st);
				produced++;
			}
			for (i = 0; i < (stack.n - mark) / 2; i++) {
				struct cr_item t = stack.v[mark + i];

				stack.v[mark + i] = stack.v[stack.n - 1 - i];
				stack.v[stack.n - 1 - i] = t;
			}
			break;
		}
		free(it.addr);
	}
	for (i = 0; i < stack.n; i++)
		free(stack.v[i].addr);
	free(stack.v);
	buf_free(&value);
	buf_free(&ext);
	buf_free(&res);
	return ret;
}

int
cleanup_rewrite_rcpt(struct cleanup_rewrite *rw, struct cleanup_rcpts *l, const char *addr, const char *orcpt,
    int notify, bool no_alias, struct cleanup_status *st)
{
	struct buf a = BUF_INIT;
	int ret = -1;

	cr_qualify(rw, addr, &a);
	if (cr_canonical(rw, rw->recipient_canonical, "recipient_canonical_maps", &a, st) < 0 ||
	    cr_canonical(rw, rw->canonical, "canonical_maps", &a, st) < 0)
		goto out;
	if (no_alias || rw->virtual_alias == NULL)
		ret = cr_store(l, buf_str(&a), addr, orcpt, notify, st);
	else
		ret = cr_virtual(rw, l, buf_str(&a), addr, orcpt, notify, st);
out:
	buf_free(&a);
	return ret;
}

void
cleanup_xtext(struct buf *out, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p;

	for (p = (const unsigned char *)s; *p; p++) {
		if (*p >= 33 && *p <= 126 && *p != '+' && *p != '=') {
			buf_putc(out, *p);
		} else {
			buf_putc(out, '+');
			buf_putc(out, hex[*p >> 4]);
			buf_putc(out, hex[*p & 15]);
		}
	}
}

void
cleanup_orcpt_of(struct buf *out, const char *addr)
{
	const unsigned char *p;

	buf_reset(out);
	for (p = (const unsigned char *)addr; *p; p++)
		if (*p >= 0x80)
			break;
	if (*p == 0) {
		buf_puts(out, "rfc822;");
		cleanup_xtext(out, addr);
		return;
	}
	/* RFC 6533 utf-8-addr-xtext: UTF-8 stays, the few special ASCII bytes become \x{HH}. */
	buf_puts(out, "utf-8;");
	for (p = (const unsigned char *)addr; *p; p++) {
		if (*p >= 0x80 || (*p >= 33 && *p <= 126 && *p != '+' && *p != '=' && *p != '\\'))
			buf_putc(out, *p);
		else
			buf_printf(out, "\\x{%02X}", *p);
	}
}
