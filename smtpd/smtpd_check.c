/*
 * smtpd_check - who may send what to whom: the restriction lists, access
 * tables, relay control and recipient validation.
 *
 * All five lists (smtpd_client_, _helo_, _sender_, _relay_ and
 * _recipient_restrictions) are evaluated at RCPT TO, in that order, as
 * Postfix does with smtpd_delay_reject=yes: one reply per recipient, and
 * the client learns nothing before it names one.  In each list the first
 * restriction that permits or rejects decides for that list.  Then
 * recipients in our own domains must be listed somewhere (550 5.1.1),
 * and a table that cannot answer makes the reply temporary (451 4.3.0),
 * never "unknown".  Tables are opened in pre_init (before the chroot).
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "cfg.h"
#include "dict.h"
#include "dns.h"
#include "log.h"
#include "resolve.h"
#include "smtpd.h"
#include "str.h"
#include "xalloc.h"

enum r_kind {
	R_PERMIT,
	R_REJECT,
	R_DEFER,
	R_DUNNO,
	R_PERMIT_MYNETWORKS,
	R_PERMIT_SASL,
	R_REJECT_UNAUTH_DEST,
	R_DEFER_UNAUTH_DEST,
	R_REJECT_UNKNOWN_RCPT_DOMAIN,
	R_REJECT_UNKNOWN_SENDER_DOMAIN,
	R_REJECT_NON_FQDN_SENDER,
	R_REJECT_NON_FQDN_RCPT,
	R_REJECT_NON_FQDN_HELO,
	R_REJECT_UNLISTED_RCPT,
	R_REJECT_SENDER_LOGIN_MISMATCH,
	R_CHECK_CLIENT,
	R_CHECK_HELO,
	R_CHECK_SENDER,
	R_CHECK_RCPT,
};

static const struct {
	const char *name;
	enum r_kind kind;
} r_names[] = {
	{ "permit", R_PERMIT },
	{ "reject", R_REJECT },
	{ "defer", R_DEFER },
	{ "dunno", R_DUNNO },
	{ "permit_mynetworks", R_PERMIT_MYNETWORKS },
	{ "permit_sasl_authenticated", R_PERMIT_SASL },
	{ "reject_unauth_destination", R_REJECT_UNAUTH_DEST },
	{ "defer_unauth_destination", R_DEFER_UNAUTH_DEST },
	{ "reject_unknown_recipient_domain", R_REJECT_UNKNOWN_RCPT_DOMAIN },
	{ "reject_unknown_sender_domain", R_REJECT_UNKNOWN_SENDER_DOMAIN },
	{ "reject_non_fqdn_sender", R_REJECT_NON_FQDN_SENDER },
	{ "reject_non_fqdn_recipient", R_REJECT_NON_FQDN_RCPT },
	{ "reject_non_fqdn_helo_hostname", R_REJECT_NON_FQDN_HELO },
	{ "reject_unlisted_recipient", R_REJECT_UNLISTED_RCPT },
	{ "reject_sender_login_mismatch", R_REJECT_SENDER_LOGIN_MISMATCH },
	{ "check_client_access", R_CHECK_CLIENT },
	{ "check_helo_access", R_CHECK_HELO },
	{ "check_sender_access", R_CHECK_SENDER },
	{ "check_recipient_access", R_CHECK_RCPT },
};

struct r_entry {
	enum r_kind kind;
	struct dict_list *table; /* check_*_access */
};

struct smtpd_restriction {
	const char *param;
	struct r_entry *v;
	size_t n;
};

enum verdict { V_DUNNO, V_PERMIT, V_DONE /* rejected or deferred: reply sent */ };

/* the restriction lists and the recipient tables, opened once */
static struct dict_list **all_tables;
static size_t n_tables;

static struct dict_list *
open_tables(const char *spec, struct buf *err)
{
	struct dict_list *l = dict_list_open(spec, 0, err);

	if (l == NULL)
		return NULL;
	all_tables = xreallocarray(all_tables, n_tables + 1, sizeof(*all_tables));
	all_tables[n_tables++] = l;
	return l;
}

/* parse_list - a restriction list from its parameter */
static struct smtpd_restriction *
parse_list(enum param_id id, struct buf *err)
{
	struct smtpd_restriction *r = xcalloc(1, sizeof(*r));
	char *copy = xstrdup(cfg_str(id)), *p = copy, *tok, *spec;
	size_t i;

	r->param = cfg_params[id].name;
	while ((tok = str_token_braced(&p, STR_LIST_SEP)) != NULL) {
		struct r_entry e;

		memset(&e, 0, sizeof(e));
		for (i = 0; i < sizeof(r_names) / sizeof(r_names[0]); i++)
			if (str_casecmp(tok, r_names[i].name) == 0)
				break;
		if (i == sizeof(r_names) / sizeof(r_names[0])) {
			buf_printf(err, "%s: unknown restriction \"%s\"", r->param, tok);
			goto fail;
		}
		e.kind = r_names[i].kind;
		if (e.kind >= R_CHECK_CLIENT) {
			if ((spec = str_token_braced(&p, STR_LIST_SEP)) == NULL || strchr(spec, ':') == NULL) {
				buf_printf(err, "%s: %s needs a type:table argument", r->param, tok);
				goto fail;
			}
			if ((e.table = open_tables(spec, err)) == NULL)
				goto fail;
		}
		r->v = xreallocarray(r->v, r->n + 1, sizeof(*r->v));
		r->v[r->n++] = e;
	}
	free(copy);
	return r;
fail:
	free(copy);
	free(r->v);
	free(r);
	return NULL;
}

static bool
has_relay_guard(const struct smtpd_restriction *r)
{
	size_t i;

	for (i = 0; i < r->n; i++)
		if (r->v[i].kind == R_REJECT_UNAUTH_DEST || r->v[i].kind == R_DEFER_UNAUTH_DEST ||
		    r->v[i].kind == R_REJECT || r->v[i].kind == R_DEFER)
			return true;
	return false;
}

int
smtpd_check_init(struct buf *err)
{
	struct smtpd_config *c = &smtpd_cfg;
	static const struct {
		enum param_id id;
		size_t off;
	} maps[] = {
		{ P_LOCAL_RECIPIENT_MAPS, offsetof(struct smtpd_config, local_rcpt) },
		{ P_RELAY_RECIPIENT_MAPS, offsetof(struct smtpd_config, relay_rcpt) },
		{ P_VIRTUAL_ALIAS_MAPS, offsetof(struct smtpd_config, valias) },
		{ P_VIRTUAL_MAILBOX_MAPS, offsetof(struct smtpd_config, vmailbox) },
		{ P_SMTPD_SENDER_LOGIN_MAPS, offsetof(struct smtpd_config, sender_login) },
	};
	size_t i;

	for (i = 0; i < sizeof(maps) / sizeof(maps[0]); i++) {
		struct dict_list *l = NULL;

		if (*cfg_str(maps[i].id) && (l = open_tables(cfg_str(maps[i].id), err)) == NULL) {
			buf_printf(err, " (in %s)", cfg_params[maps[i].id].name);
			return -1;
		}
		*(struct dict_list **)((char *)c + maps[i].off) = l;
	}
	if ((c->resolve = resolve_open(err)) == NULL)
		return -1;
	if ((c->client_r = parse_list(P_SMTPD_CLIENT_RESTRICTIONS, err)) == NULL ||
	    (c->helo_r = parse_list(P_SMTPD_HELO_RESTRICTIONS, err)) == NULL ||
	    (c->sender_r = parse_list(P_SMTPD_SENDER_RESTRICTIONS, err)) == NULL ||
	    (c->relay_r = parse_list(P_SMTPD_RELAY_RESTRICTIONS, err)) == NULL ||
	    (c->recipient_r = parse_list(P_SMTPD_RECIPIENT_RESTRICTIONS, err)) == NULL)
		return -1;
	/* An empty relay guard makes an open relay: refuse to run, as Postfix does. */
	if (!has_relay_guard(c->relay_r) && !has_relay_guard(c->recipient_r)) {
		buf_puts(err, "smtpd_relay_restrictions or smtpd_recipient_restrictions must contain "
		              "reject_unauth_destination, defer_unauth_destination, reject or defer; "
		              "otherwise this is an open relay");
		return -1;
	}
	return 0;
}

bool
smtpd_check_changed(void)
{
	size_t i;

	for (i = 0; i < n_tables; i++)
		if (dict_list_changed(all_tables[i]))
			return true;
	return smtpd_cfg.resolve && resolve_changed(smtpd_cfg.resolve);
}

/* refuse - log a rejection in Postfix's shape and reply */
static enum verdict refuse(struct smtpd_session *ss, const char *rcpt, int code, const char *dsn, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static enum verdict
refuse(struct smtpd_session *ss, const char *rcpt, int code, const char *dsn, const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	log_info("%s: %s: RCPT from %s[%s]: %d %s %s; from=<%s> to=<%s> proto=%s helo=<%s>",
	    ss->queue_id[0] ? ss->queue_id : "NOQUEUE", code >= 500 ? "reject" : "defer", buf_str(&ss->name), ss->addr,
	    code, dsn, text, buf_str(&ss->sender), rcpt, smtpd_protocol_name(ss), ss->helo ? ss->helo : "");
	smtpd_error(ss, code, dsn, "%s", text);
	return V_DONE;
}

/* access_action - apply an access table's answer */
static enum verdict
access_action(struct smtpd_session *ss, const char *rcpt, const char *what, const char *kind, const char *value)
{
	char word[32], *end;
	const char *rest;
	size_t n;
	long code;

	while (*value == ' ' || *value == '\t')
		value++;
	n = strcspn(value, " \t");
	snprintf(word, sizeof(word), "%.*s", (int)(n < sizeof(word) ? n : sizeof(word) - 1), value);
	rest = value + n;
	while (*rest == ' ' || *rest == '\t')
		rest++;
	if (str_casecmp(word, "OK") == 0 || str_casecmp(word, "RELAY") == 0 || str_casecmp(word, "PERMIT") == 0)
		return V_PERMIT;
	if (str_casecmp(word, "DUNNO") == 0)
		return V_DUNNO;
	if (str_casecmp(word, "REJECT") == 0)
		return refuse(
		    ss, rcpt, 554, "5.7.1", "<%s>: %s rejected: %s", what, kind, *rest ? rest : "Access denied");
	if (str_casecmp(word, "DEFER") == 0)
		return refuse(
		    ss, rcpt, 450, "4.7.1", "<%s>: %s rejected: %s", what, kind, *rest ? rest : "Access denied");
	code = strtol(word, &end, 10);
	if (*end == 0 && n == 3 && code >= 400 && code <= 599) {
		char dsn[16];

		/* "550 5.7.1 text" or "550 text" */
		if (rest[0] >= '2' && rest[0] <= '5' && rest[1] == '.' && strspn(rest, "0123456789.") >= 5) {
			size_t d = strspn(rest, "0123456789.");

			snprintf(dsn, sizeof(dsn), "%.*s", (int)(d < sizeof(dsn) ? d : sizeof(dsn) - 1), rest);
			rest += d;
			while (*rest == ' ')
				rest++;
		} else {
			snprintf(dsn, sizeof(dsn), "%c.7.1", code >= 500 ? '5' : '4');
		}
		if (dsn[0] != word[0])
			dsn[0] = word[0]; /* the enhanced code's class must agree with the reply */
		return refuse(
		    ss, rcpt, (int)code, dsn, "<%s>: %s rejected: %s", what, kind, *rest ? rest : "Access denied");
	}
	log_warn("access table: unknown action \"%s\" for %s; ignored", word, what);
	return V_DUNNO;
}

/* lookup_keys - try keys in order; the first answer (found or try-again) decides */
static enum dict_result
lookup_keys(struct dict_list *t, const char *const *keys, size_t nkeys, struct buf *value)
{
	enum dict_result r;
	size_t i;

	for (i = 0; i < nkeys; i++) {
		if (keys[i] == NULL || *keys[i] == 0)
			continue;
		r = dict_list_lookup(t, keys[i], value);
		if (r != DICT_NOTFOUND)
			return r;
	}
	return DICT_NOTFOUND;
}

/* domain_keys - name and each parent domain ("a.b.c", "b.c", "c") into keys */
static size_t
domain_keys(const char *name, const char **keys, size_t max)
{
	size_t n = 0;
	const char *p = name;

	while (p && *p && n < max) {
		keys[n++] = p;
		p = strchr(p, '.');
		if (p)
			p++;
	}
	return n;
}

/* check_address_access - check_sender_access / check_recipient_access */
static enum verdict
check_address_access(
    struct smtpd_session *ss, struct dict_list *t, const char *rcpt, const char *addr, const char *kind)
{
	const char *keys[32];
	struct buf value = BUF_INIT, local = BUF_INIT, domain = BUF_INIT, userat = BUF_INIT;
	enum dict_result r;
	enum verdict v = V_DUNNO;
	size_t n = 0;

	if (*addr == 0) {
		keys[n++] = "<>";
	} else {
		keys[n++] = addr;
		if (addr_split(addr, &local, &domain) == 0) {
			n += domain_keys(buf_str(&domain), keys + n, 28);
			buf_printf(&userat, "%s@", buf_str(&local));
			keys[n++] = buf_str(&userat);
		}
	}
	r = lookup_keys(t, keys, n, &value);
	if (r == DICT_FOUND)
		v = access_action(ss, rcpt, addr, kind, buf_str(&value));
	else if (r == DICT_RETRY)
		v = refuse(ss, rcpt, 451, "4.3.0", "<%s>: %s rejected: Server configuration error", addr, kind);
	buf_free(&value);
	buf_free(&local);
	buf_free(&domain);
	buf_free(&userat);
	return v;
}

static enum verdict
check_client_access(struct smtpd_session *ss, struct dict_list *t, const char *rcpt)
{
	const char *keys[40];
	char nets[3][64];
	struct buf value = BUF_INIT;
	enum dict_result r;
	enum verdict v = V_DUNNO;
	size_t n = 0;
	int i;

	keys[n++] = ss->addr;
	/* IPv4 networks by whole octets: "192.0.2", "192.0", "192" */
	if (strchr(ss->addr, ':') == NULL) {
		strlcpy(nets[0], ss->addr, sizeof(nets[0]));
		for (i = 0; i < 3; i++) {
			char *dot;

			if (i > 0)
				strlcpy(nets[i], nets[i - 1], sizeof(nets[i]));
			if ((dot = strrchr(nets[i], '.')) == NULL)
				break;
			*dot = 0;
			keys[n++] = nets[i];
		}
	}
	if (strcmp(buf_str(&ss->name), "unknown") != 0)
		n += domain_keys(buf_str(&ss->name), keys + n, 30);
	r = lookup_keys(t, keys, n, &value);
	if (r == DICT_FOUND)
		v = access_action(ss, rcpt, buf_str(&ss->name), "Client host", buf_str(&value));
	else if (r == DICT_RETRY)
		v = refuse(ss, rcpt, 451, "4.3.0", "<%s>: Client host rejected: Server configuration error", ss->addr);
	buf_free(&value);
	return v;
}

static enum verdict
check_helo_access(struct smtpd_session *ss, struct dict_list *t, const char *rcpt)
{
	const char *keys[32];
	struct buf value = BUF_INIT;
	enum dict_result r;
	enum verdict v = V_DUNNO;
	size_t n;

	if (ss->helo == NULL)
		return V_DUNNO;
	n = domain_keys(ss->helo, keys, 32);
	r = lookup_keys(t, keys, n, &value);
	if (r == DICT_FOUND)
		v = access_action(ss, rcpt, ss->helo, "Helo command", buf_str(&value));
	else if (r == DICT_RETRY)
		v = refuse(ss, rcpt, 451, "4.3.0", "<%s>: Helo command rejected: Server configuration error", ss->helo);
	buf_free(&value);
	return v;
}

/* domain_of - the domain of addr, or "" */
static const char *
domain_of(const char *addr)
{
	const char *d = addr_domain(addr);

	return d ? d : "";
}

static enum verdict
unknown_domain(struct smtpd_session *ss, const char *rcpt, const char *addr, const char *kind)
{
	const char *d = domain_of(addr);
	enum resolve_class c;

	if (*addr == 0 || *d == 0 || addr_is_literal(d))
		return V_DUNNO;
	c = resolve_domain(smtpd_cfg.resolve, d);
	if (c != RESOLVE_REMOTE && c != RESOLVE_RELAY)
		return V_DUNNO;
	switch (dns_mail_domain(d)) {
	case DNS_OK:
		return V_DUNNO;
	case DNS_NULLMX:
		return refuse(ss, rcpt, 556, "5.1.10",
		    "<%s>: %s address rejected: Domain %s does not accept mail (nullMX)", addr, kind, d);
	case DNS_NOTFOUND:
		return refuse(ss, rcpt, smtpd_cfg.unknown_address_code,
		    smtpd_cfg.unknown_address_code >= 500 ? "5.1.2" : "4.1.2",
		    "<%s>: %s address rejected: Domain not found", addr, kind);
	case DNS_RETRY:
	default:
		return refuse(ss, rcpt, 450, "4.1.2", "<%s>: %s address rejected: Domain not found", addr, kind);
	}
}

static enum verdict
non_fqdn(struct smtpd_session *ss, const char *rcpt, const char *addr, const char *kind)
{
	const char *d = domain_of(addr);

	if (*addr == 0 || addr_is_literal(d) || (*d && addr_domain_fqdn(d)))
		return V_DUNNO;
	return refuse(ss, rcpt, 504, "5.5.2", "<%s>: %s address rejected: need fully-qualified address", addr, kind);
}

/* login_mismatch - may this login use this envelope sender? */
static enum verdict
login_mismatch(struct smtpd_session *ss, const char *rcpt)
{
	const char *sender = buf_str(&ss->sender);
	struct buf owners = BUF_INIT;
	enum dict_result r = DICT_NOTFOUND;
	enum verdict v = V_DUNNO;
	char *copy, *p, *tok;
	bool owned = false;

	if (*sender == 0)
		return V_DUNNO;
	if (smtpd_cfg.sender_login != NULL) {
		const char *keys[32];
		struct buf local = BUF_INIT, domain = BUF_INIT;
		size_t n = 0;

		keys[n++] = sender;
		if (addr_split(sender, &local, &domain) == 0) {
			char *at = xasprintf("@%s", buf_str(&domain));

			keys[n++] = at;
			r = lookup_keys(smtpd_cfg.sender_login, keys, n, &owners);
			free(at);
		} else {
			r = lookup_keys(smtpd_cfg.sender_login, keys, n, &owners);
		}
		buf_free(&local);
		buf_free(&domain);
		if (r == DICT_RETRY) {
			v = refuse(ss, rcpt, 451, "4.3.0", "<%s>: Sender address rejected: Server configuration error",
			    sender);
			goto out;
		}
	}
	if (r == DICT_FOUND) {
		p = copy = xstrdup(buf_str(&owners));
		while ((tok = str_token(&p, STR_LIST_SEP)) != NULL)
			if (ss->sasl_user && str_casecmp(tok, ss->sasl_user) == 0)
				owned = true;
		free(copy);
		if (!owned)
			v = refuse(ss, rcpt, 553, "5.7.1", "<%s>: Sender address rejected: not owned by user %s",
			    sender, ss->sasl_user ? ss->sasl_user : "(unauthenticated)");
	} else if (ss->sasl_user && str_casecmp(sender, ss->sasl_user) != 0) {
		/* Not in the table (or no table): a login may use its own address only. */
		v = refuse(ss, rcpt, 553, "5.7.1", "<%s>: Sender address rejected: not owned by user %s", sender,
		    ss->sasl_user);
	}
out:
	buf_free(&owners);
	return v;
}

/* apply - one restriction */
static enum verdict
apply(struct smtpd_session *ss, const struct r_entry *e, const char *rcpt)
{
	const char *sender = buf_str(&ss->sender);
	enum resolve_class c;

	switch (e->kind) {
	case R_PERMIT:
		return V_PERMIT;
	case R_REJECT:
		return refuse(ss, rcpt, 554, "5.7.1", "<%s>: Recipient address rejected: Access denied", rcpt);
	case R_DEFER:
		return refuse(ss, rcpt, 450, "4.7.1", "<%s>: Recipient address rejected: Try again later", rcpt);
	case R_DUNNO:
		return V_DUNNO;
	case R_PERMIT_MYNETWORKS:
		return ss->in_mynetworks ? V_PERMIT : V_DUNNO;
	case R_PERMIT_SASL:
		return ss->sasl_user ? V_PERMIT : V_DUNNO;
	case R_REJECT_UNAUTH_DEST:
	case R_DEFER_UNAUTH_DEST:
		if (*domain_of(rcpt) == 0)
			return V_DUNNO; /* <postmaster> */
		c = resolve_domain(smtpd_cfg.resolve, domain_of(rcpt));
		if (c == RESOLVE_RETRY)
			return refuse(ss, rcpt, 451, "4.3.0",
			    "<%s>: Recipient address rejected: Server configuration error", rcpt);
		if (c != RESOLVE_REMOTE)
			return V_DUNNO;
		if (e->kind == R_REJECT_UNAUTH_DEST)
			return refuse(ss, rcpt, 554, "5.7.1", "<%s>: Relay access denied", rcpt);
		return refuse(ss, rcpt, 454, "4.7.1", "<%s>: Relay access denied", rcpt);
	case R_REJECT_UNKNOWN_RCPT_DOMAIN:
		return unknown_domain(ss, rcpt, rcpt, "Recipient");
	case R_REJECT_UNKNOWN_SENDER_DOMAIN:
		return unknown_domain(ss, rcpt, sender, "Sender");
	case R_REJECT_NON_FQDN_SENDER:
		return non_fqdn(ss, rcpt, sender, "Sender");
	case R_REJECT_NON_FQDN_RCPT:
		return *domain_of(rcpt) == 0 ? V_DUNNO : non_fqdn(ss, rcpt, rcpt, "Recipient");
	case R_REJECT_NON_FQDN_HELO:
		if (ss->helo == NULL || (ss->helo[0] == '[') || addr_domain_fqdn(ss->helo))
			return V_DUNNO;
		return refuse(
		    ss, rcpt, 504, "5.5.2", "<%s>: Helo command rejected: need fully-qualified hostname", ss->helo);
	case R_REJECT_UNLISTED_RCPT:
		return smtpd_check_vrfy(ss, rcpt) < 0 ? V_DONE : V_DUNNO;
	case R_REJECT_SENDER_LOGIN_MISMATCH:
		return login_mismatch(ss, rcpt);
	case R_CHECK_CLIENT:
		return check_client_access(ss, e->table, rcpt);
	case R_CHECK_HELO:
		return check_helo_access(ss, e->table, rcpt);
	case R_CHECK_SENDER:
		return check_address_access(ss, e->table, rcpt, sender, "Sender address");
	case R_CHECK_RCPT:
		return check_address_access(ss, e->table, rcpt, rcpt, "Recipient address");
	}
	return V_DUNNO;
}

static enum verdict
run_list(struct smtpd_session *ss, const struct smtpd_restriction *r, const char *rcpt)
{
	enum verdict v;
	size_t i;

	for (i = 0; i < r->n; i++)
		if ((v = apply(ss, &r->v[i], rcpt)) != V_DUNNO)
			return v;
	return V_DUNNO;
}

/* lookup_address - "user@domain", then "user@domain" without extension, then "@domain" */
static enum dict_result
lookup_address(struct dict_list *t, const char *addr, bool catchall)
{
	struct buf local = BUF_INIT, domain = BUF_INIT, base = BUF_INIT, at = BUF_INIT, value = BUF_INIT;
	const char *keys[3] = { addr, NULL, NULL };
	const char *delim = smtpd_cfg.recipient_delimiter;
	enum dict_result r;

	if (t == NULL)
		return DICT_NOTFOUND;
	if (addr_split(addr, &local, &domain) == 0) {
		size_t cut = *delim ? strcspn(buf_str(&local), delim) : local.len;

		if (cut < local.len && cut > 0) {
			buf_printf(&base, "%.*s@%s", (int)cut, buf_str(&local), buf_str(&domain));
			keys[1] = buf_str(&base);
		}
		if (catchall) {
			buf_printf(&at, "@%s", buf_str(&domain));
			keys[2] = buf_str(&at);
		}
	}
	r = lookup_keys(t, keys, 3, &value);
	buf_free(&local);
	buf_free(&domain);
	buf_free(&base);
	buf_free(&at);
	buf_free(&value);
	return r;
}

/* lookup_local - a local user or alias by its local part (and without its extension) */
static enum dict_result
lookup_local(struct dict_list *t, const char *addr)
{
	struct buf local = BUF_INIT, domain = BUF_INIT, base = BUF_INIT, value = BUF_INIT;
	const char *keys[2] = { NULL, NULL };
	const char *delim = smtpd_cfg.recipient_delimiter;
	enum dict_result r;
	size_t cut;

	if (addr_split(addr, &local, &domain) < 0)
		buf_strcpy(&local, addr);
	keys[0] = buf_str(&local);
	cut = *delim ? strcspn(buf_str(&local), delim) : local.len;
	if (cut < local.len && cut > 0) {
		buf_set(&base, local.data, cut);
		keys[1] = buf_str(&base);
	}
	r = lookup_keys(t, keys, 2, &value);
	buf_free(&local);
	buf_free(&domain);
	buf_free(&base);
	buf_free(&value);
	return r;
}

/* validate - is rcpt a recipient we know?  0 yes (or not ours to know), -1 replied */
int
smtpd_check_vrfy(struct smtpd_session *ss, const char *rcpt)
{
	const char *d = domain_of(rcpt);
	enum dict_result r;
	const char *table;

	if (*d == 0)
		return 0; /* <postmaster>, which RFC 5321 says we must accept */
	switch (resolve_domain(smtpd_cfg.resolve, d)) {
	case RESOLVE_LOCAL:
		if ((r = lookup_address(smtpd_cfg.valias, rcpt, false)) == DICT_FOUND)
			return 0;
		if (r != DICT_RETRY) {
			if (smtpd_cfg.local_rcpt == NULL)
				return 0;
			r = lookup_local(smtpd_cfg.local_rcpt, rcpt);
		}
		table = "local recipient table";
		break;
	case RESOLVE_VIRTUAL_ALIAS:
		r = lookup_address(smtpd_cfg.valias, rcpt, true);
		table = "virtual alias table";
		break;
	case RESOLVE_VIRTUAL:
		if ((r = lookup_address(smtpd_cfg.valias, rcpt, true)) == DICT_NOTFOUND)
			r = lookup_address(smtpd_cfg.vmailbox, rcpt, true);
		table = "virtual mailbox table";
		break;
	case RESOLVE_RELAY:
		if (smtpd_cfg.relay_rcpt == NULL)
			return 0;
		r = lookup_address(smtpd_cfg.relay_rcpt, rcpt, true);
		table = "relay recipient table";
		break;
	case RESOLVE_RETRY:
		r = DICT_RETRY;
		table = "domain tables";
		break;
	case RESOLVE_REMOTE:
	default:
		return 0;
	}
	if (r == DICT_FOUND)
		return 0;
	if (r == DICT_RETRY) {
		refuse(ss, rcpt, 451, "4.3.0", "<%s>: Recipient address rejected: temporary lookup failure in the %s",
		    rcpt, table);
		return -1;
	}
	refuse(ss, rcpt, 550, "5.1.1", "<%s>: Recipient address rejected: User unknown in %s", rcpt, table);
	return -1;
}

int
smtpd_check_rcpt(struct smtpd_session *ss, const char *rcpt)
{
	const struct smtpd_restriction *lists[] = { smtpd_cfg.client_r, smtpd_cfg.helo_r, smtpd_cfg.sender_r,
		smtpd_cfg.relay_r, smtpd_cfg.recipient_r };
	size_t i;

	for (i = 0; i < sizeof(lists) / sizeof(lists[0]); i++)
		if (run_list(ss, lists[i], rcpt) == V_DONE)
			return -1;
	if (smtpd_cfg.reject_unlisted_recipient && smtpd_check_vrfy(ss, rcpt) < 0)
		return -1;
	return 0;
}
