/*
 * resolve - which kind of destination a recipient domain is, from
 * mydestination, virtual_alias_domains, virtual_mailbox_domains and
 * relay_domains.  smtpd uses it to validate recipients and to decide what
 * is relaying; qmgr uses it to route.
 *
 * A domain list ("example.com, .example.net, hash:/etc/postern/domains")
 * matches a domain exactly (ASCII case-insensitive), ".name" matches every
 * subdomain of name, and a type:table entry matches when the domain is a
 * key of the table.  A table that answers try-again makes the class
 * unknown for now (RESOLVE_RETRY): mail is deferred, never treated as
 * remote.
 */
#ifndef POSTERN_RESOLVE_H
#define POSTERN_RESOLVE_H

#include <stdbool.h>

#include "buf.h"
#include "dict.h"

enum resolve_class {
	RESOLVE_LOCAL,         /* mydestination: system users and aliases */
	RESOLVE_VIRTUAL_ALIAS, /* virtual_alias_domains: every address is an alias */
	RESOLVE_VIRTUAL,       /* virtual_mailbox_domains: hosted mailboxes */
	RESOLVE_RELAY,         /* relay_domains: accepted, delivered elsewhere */
	RESOLVE_REMOTE,        /* anything else */
	RESOLVE_RETRY,         /* a table could not answer now */
};

struct resolve;

/* Build from the current configuration; NULL with err on a bad list. */
struct resolve *resolve_open(struct buf *err);
void resolve_close(struct resolve *r);
/* The class of a domain (lower case, no trailing dot). */
enum resolve_class resolve_domain(struct resolve *r, const char *domain);
/* True when a table behind the lists changed (daemons exit after the client). */
bool resolve_changed(struct resolve *r);
const char *resolve_class_name(enum resolve_class c);

/* A domain list on its own (for other lists with the same syntax). */
struct domlist;
struct domlist *domlist_open(const char *text, struct buf *err);
/* DICT_FOUND, DICT_NOTFOUND or DICT_RETRY. */
enum dict_result domlist_match(struct domlist *l, const char *domain);
bool domlist_changed(struct domlist *l);
void domlist_close(struct domlist *l);

#endif
