/*
 * resolve - domain lists and destination classes (see resolve.h).
 *
 * Lists come from main.cf (trusted); domains come from SMTP clients (not
 * trusted), so matching never builds unbounded keys: a domain longer than
 * 255 bytes matches nothing, and parent-domain walking stops at the root.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "log.h"
#include "resolve.h"
#include "str.h"
#include "xalloc.h"

#define DOMAIN_MAX 255

struct domlist_entry {
	char *name;      /* lower case; for ".name" entries without the dot */
	bool subdomains; /* ".name": any subdomain of name */
	struct dict *table;
};

struct domlist {
	struct domlist_entry *v;
	size_t n;
};

struct resolve {
	struct domlist *local, *valias, *vmailbox, *relay;
};

struct domlist *
domlist_open(const char *text, struct buf *err)
{
	struct domlist *l = xcalloc(1, sizeof(*l));
	char *copy = xstrdup(text), *p = copy, *tok;
	size_t cap = 0;

	while ((tok = str_token(&p, STR_LIST_SEP)) != NULL) {
		struct domlist_entry *e;

		if (l->n == cap) {
			cap = cap ? cap * 2 : 8;
			l->v = xreallocarray(l->v, cap, sizeof(*l->v));
		}
		e = &l->v[l->n];
		memset(e, 0, sizeof(*e));
		if (strchr(tok, ':') != NULL && tok[0] != '[') {
			if ((e->table = dict_open(tok, 0, err)) == NULL) {
				free(copy);
				domlist_close(l);
				return NULL;
			}
		} else {
			if (tok[0] == '.') {
				e->subdomains = true;
				tok++;
			}
			e->name = str_lower(xstrdup(tok));
		}
		l->n++;
	}
	free(copy);
	return l;
}

enum dict_result
domlist_match(struct domlist *l, const char *domain)
{
	struct buf value = BUF_INIT;
	size_t i, dlen = strlen(domain), nlen;
	enum dict_result r;
	bool retry = false;

	if (dlen == 0 || dlen > DOMAIN_MAX)
		return DICT_NOTFOUND;
	for (i = 0; i < l->n; i++) {
		struct domlist_entry *e = &l->v[i];

		if (e->table != NULL) {
			r = dict_lookup(e->table, domain, &value);
			if (r == DICT_FOUND) {
				buf_free(&value);
				return DICT_FOUND;
			}
			if (r == DICT_RETRY)
				retry = true;
			continue;
		}
		nlen = strlen(e->name);
		if (!e->subdomains) {
			if (str_casecmp(e->name, domain) == 0) {
				buf_free(&value);
				return DICT_FOUND;
			}
		} else if (dlen > nlen + 1 && domain[dlen - nlen - 1] == '.' &&
		           str_casecmp(domain + dlen - nlen, e->name) == 0) {
			buf_free(&value);
			return DICT_FOUND;
		}
	}
	buf_free(&value);
	/* A table that could not answer might have listed the domain: do not guess. */
	return retry ? DICT_RETRY : DICT_NOTFOUND;
}

bool
domlist_changed(struct domlist *l)
{
	size_t i;

	for (i = 0; l && i < l->n; i++)
		if (l->v[i].table && dict_changed(l->v[i].table))
			return true;
	return false;
}

void
domlist_close(struct domlist *l)
{
	size_t i;

	if (l == NULL)
		return;
	for (i = 0; i < l->n; i++) {
		free(l->v[i].name);
		if (l->v[i].table)
			dict_close(l->v[i].table);
	}
	free(l->v);
	free(l);
}

struct resolve *
resolve_open(struct buf *err)
{
	struct resolve *r = xcalloc(1, sizeof(*r));
	static const struct {
		enum param_id id;
		size_t off;
	} lists[] = {
		{ P_MYDESTINATION, offsetof(struct resolve, local) },
		{ P_VIRTUAL_ALIAS_DOMAINS, offsetof(struct resolve, valias) },
		{ P_VIRTUAL_MAILBOX_DOMAINS, offsetof(struct resolve, vmailbox) },
		{ P_RELAY_DOMAINS, offsetof(struct resolve, relay) },
	};
	size_t i;

	for (i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		struct domlist *l = domlist_open(cfg_str(lists[i].id), err);

		if (l == NULL) {
			buf_printf(err, " (in %s)", cfg_params[lists[i].id].name);
			resolve_close(r);
			return NULL;
		}
		*(struct domlist **)((char *)r + lists[i].off) = l;
	}
	return r;
}

void
resolve_close(struct resolve *r)
{
	if (r == NULL)
		return;
	domlist_close(r->local);
	domlist_close(r->valias);
	domlist_close(r->vmailbox);
	domlist_close(r->relay);
	free(r);
}

enum resolve_class
resolve_domain(struct resolve *r, const char *domain)
{
	struct {
		struct domlist *l;
		enum resolve_class c;
	} order[] = {
		{ r->local, RESOLVE_LOCAL },
		{ r->valias, RESOLVE_VIRTUAL_ALIAS },
		{ r->vmailbox, RESOLVE_VIRTUAL },
		{ r->relay, RESOLVE_RELAY },
	};
	size_t i;

	for (i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		switch (domlist_match(order[i].l, domain)) {
		case DICT_FOUND:
			return order[i].c;
		case DICT_RETRY:
			return RESOLVE_RETRY;
		case DICT_NOTFOUND:
			break;
		}
	}
	return RESOLVE_REMOTE;
}

bool
resolve_changed(struct resolve *r)
{
	return domlist_changed(r->local) || domlist_changed(r->valias) || domlist_changed(r->vmailbox) ||
	       domlist_changed(r->relay);
}

const char *
resolve_class_name(enum resolve_class c)
{
	static const char *const names[] = { "local", "virtual alias", "virtual mailbox", "relay", "remote", "retry" };

	return names[c];
}
