/*
 * qmgr_route - where a recipient goes: a transport (a master.cf service
 * in private/) and a next hop.
 *
 * The domain's class (resolve.h: mydestination, virtual alias, virtual
 * mailbox, relay, anything else) picks local_transport,
 * virtual_transport, relay_transport or default_transport; transport_maps
 * override that, looked up as Postfix does: the full address, the address
 * without its extension (recipient_delimiter), the domain, each parent
 * domain as ".parent", then "*".  The next hop comes, in decreasing
 * precedence, from transport_maps, the class transport's ":nexthop",
 * relayhost (relay and remote classes only), and the recipient domain.
 *
 * Called by qmgr_message.c for every recipient it loads.  The addresses
 * come from queue files (cleanup checked them, we still bound them); the
 * tables and lists are the administrator's.  A table that cannot answer
 * defers the recipient; nothing here ever turns "try again" into a bounce.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "log.h"
#include "qmgr.h"
#include "str.h"
#include "xalloc.h"

#define DOMAIN_MAX 255

/* A class's transport: "local" or "local:nexthop". */
struct qmgr_class_tr {
	char transport[QMGR_TRANSPORT_MAX + 1];
	char *nexthop; /* "" when the setting has none */
};

struct qmgr_router {
	struct resolve *res;
	struct dict_list *tmaps; /* NULL when transport_maps is empty */
	char *delims;
	char *relayhost;
	char *myhostname;
	int virtual_limit; /* virtual_destination_concurrency_limit */
	struct qmgr_class_tr local, virtual_, relay, remote;
};

bool
qmgr_transport_valid(const char *name)
{
	size_t n = strlen(name);

	/* It becomes private/NAME: no "/", no leading ".", nothing odd. */
	if (n == 0 || n > QMGR_TRANSPORT_MAX || name[0] == '.' || name[0] == '-')
		return false;
	return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

/* split_tr - "transport:nexthop" into its parts; either may be empty; -1 when the transport is invalid */
static int
split_tr(const char *value, char *transport, size_t tlen, const char **nexthop)
{
	const char *colon = strchr(value, ':');
	size_t n = colon ? (size_t)(colon - value) : strlen(value);

	*nexthop = colon ? colon + 1 : "";
	if (n >= tlen)
		return -1;
	memcpy(transport, value, n);
	transport[n] = 0;
	if (n > 0 && !qmgr_transport_valid(transport))
		return -1;
	return 0;
}

/* class_tr - a *_transport setting; -1 with err when it names no usable transport */
static int
class_tr(struct qmgr_class_tr *c, enum param_id id, struct buf *err)
{
	const char *value = cfg_str(id), *nh;
	char *v = str_trim(xstrdup(value));
	int rc = 0;

	if (split_tr(v, c->transport, sizeof(c->transport), &nh) < 0 || c->transport[0] == 0) {
		buf_printf(err, "%s: \"%s\" does not name a transport", cfg_params[id].name, value);
		rc = -1;
	} else {
		c->nexthop = xstrdup(nh);
	}
	free(v);
	return rc;
}

struct qmgr_router *
qmgr_router_open(struct buf *err)
{
	struct qmgr_router *r = xcalloc(1, sizeof(*r));
	const char *tm = cfg_str(P_TRANSPORT_MAPS);

	if ((r->res = resolve_open(err)) == NULL)
		goto fail;
	if (class_tr(&r->local, P_LOCAL_TRANSPORT, err) < 0 || class_tr(&r->virtual_, P_VIRTUAL_TRANSPORT, err) < 0 ||
	    class_tr(&r->relay, P_RELAY_TRANSPORT, err) < 0 || class_tr(&r->remote, P_DEFAULT_TRANSPORT, err) < 0)
		goto fail;
	tm += strspn(tm, STR_LIST_SEP);
	if (*tm && (r->tmaps = dict_list_open(tm, 0, err)) == NULL) {
		buf_puts(err, " (in transport_maps)");
		goto fail;
	}
	r->delims = xstrdup(cfg_str(P_RECIPIENT_DELIMITER));
	r->relayhost = str_trim(xstrdup(cfg_str(P_RELAYHOST)));
	r->virtual_limit = (int)cfg_int(P_VIRTUAL_DESTINATION_CONCURRENCY_LIMIT);
	r->myhostname = str_lower(xstrdup(cfg_str(P_MYHOSTNAME)));
	return r;
fail:
	qmgr_router_close(r);
	return NULL;
}

void
qmgr_router_close(struct qmgr_router *r)
{
	if (r == NULL)
		return;
	resolve_close(r->res);
	if (r->tmaps)
		dict_list_close(r->tmaps);
	free(r->local.nexthop);
	free(r->virtual_.nexthop);
	free(r->relay.nexthop);
	free(r->remote.nexthop);
	free(r->delims);
	free(r->relayhost);
	free(r->myhostname);
	free(r);
}

void
qmgr_route_init(struct qmgr_route *out)
{
	memset(out, 0, sizeof(*out));
}

void
qmgr_route_free(struct qmgr_route *out)
{
	buf_free(&out->nexthop);
	buf_free(&out->reason);
}

static enum qmgr_route_status
route_fail(struct qmgr_route *out, enum qmgr_route_status st, const char *dsn, const char *reason)
{
	out->status = st;
	strlcpy(out->dsn, dsn, sizeof(out->dsn));
	buf_strcpy(&out->reason, reason);
	return st;
}

/*
 * tmaps_find - transport_maps for addr (whose domain is domain, already
 * lower case): DICT_FOUND with the value, DICT_NOTFOUND, or DICT_RETRY.
 */
static enum dict_result
tmaps_find(struct qmgr_router *r, const char *addr, const char *domain, struct buf *value)
{
	struct buf key = BUF_INIT;
	const char *at = strrchr(addr, '@'), *p;
	enum dict_result res;
	size_t llen;

	/* The full address, then without its extension. */
	if ((res = dict_list_lookup(r->tmaps, addr, value)) != DICT_NOTFOUND)
		goto out;
	llen = at ? (size_t)(at - addr) : strlen(addr);
	if (*r->delims) {
		size_t cut = strcspn(addr, r->delims);

		if (cut > 0 && cut < llen) {
			buf_append(&key, addr, cut);
			if (at)
				buf_puts(&key, at);
			if ((res = dict_list_lookup(r->tmaps, buf_str(&key), value)) != DICT_NOTFOUND)
				goto out;
		}
	}
	/* The domain, then ".parent" for each parent, then the catch-all. */
	if (*domain) {
		if ((res = dict_list_lookup(r->tmaps, domain, value)) != DICT_NOTFOUND)
			goto out;
		for (p = strchr(domain, '.'); p && p[1]; p = strchr(p + 1, '.'))
			if ((res = dict_list_lookup(r->tmaps, p, value)) != DICT_NOTFOUND)
				goto out;
	}
	res = dict_list_lookup(r->tmaps, "*", value);
out:
	buf_free(&key);
	return res;
}

enum qmgr_route_status
qmgr_route_rcpt(struct qmgr_router *r, const char *addr, struct qmgr_route *out)
{
	struct buf value = BUF_INIT;
	const char *at = strrchr(addr, '@'), *tnh = "";
	char domain[DOMAIN_MAX + 1], tmap_tr[QMGR_TRANSPORT_MAX + 1] = "";
	const struct qmgr_class_tr *ct;
	enum resolve_class cls;
	bool have_domain;
	size_t dlen;

	buf_reset(&out->nexthop);
	buf_reset(&out->reason);
	out->dsn[0] = 0;
	out->per_rcpt = false;
	out->dest_limit = 0;
	out->status = QMGR_ROUTE_OK;

	/* The domain, folded, without a trailing dot; none means a local name. */
	dlen = at ? strlen(at + 1) : 0;
	if (dlen > 0 && at[dlen] == '.')
		dlen--;
	if (dlen > DOMAIN_MAX)
		return route_fail(out, QMGR_ROUTE_BOUNCE, "5.1.2", "recipient domain name too long");
	memcpy(domain, at ? at + 1 : "", dlen);
	domain[dlen] = 0;
	str_lower(domain);
	have_domain = dlen > 0;

	if (r->tmaps != NULL) {
		switch (tmaps_find(r, addr, domain, &value)) {
		case DICT_RETRY:
			buf_free(&value);
			return route_fail(out, QMGR_ROUTE_DEFER, "4.3.0", "transport_maps lookup failure");
		case DICT_FOUND:
			if (split_tr(str_trim((char *)value.data), tmap_tr, sizeof(tmap_tr), &tnh) < 0) {
				log_warn("transport_maps: bad result \"%s\" for %s", buf_str(&value), addr);
				buf_free(&value);
				return route_fail(out, QMGR_ROUTE_DEFER, "4.3.5",
				    "mail transport configuration error (transport_maps)");
			}
			break;
		case DICT_NOTFOUND:
			break;
		}
	}

	cls = have_domain ? resolve_domain(r->res, domain) : RESOLVE_LOCAL;
	switch (cls) {
	case RESOLVE_RETRY:
		buf_free(&value);
		return route_fail(out, QMGR_ROUTE_DEFER, "4.3.0", "recipient domain lookup failure");
	case RESOLVE_VIRTUAL_ALIAS:
		/* cleanup expands these; one that is left has no alias. */
		buf_free(&value);
		return route_fail(out, QMGR_ROUTE_BOUNCE, "5.1.1", "User unknown in virtual alias table");
	case RESOLVE_LOCAL:
		ct = &r->local;
		break;
	case RESOLVE_VIRTUAL:
		ct = &r->virtual_;
		break;
	case RESOLVE_RELAY:
		ct = &r->relay;
		break;
	default:
		ct = &r->remote;
		break;
	}
	strlcpy(out->transport, tmap_tr[0] ? tmap_tr : ct->transport, sizeof(out->transport));
	if (*tnh)
		buf_strcpy(&out->nexthop, tnh);
	else if (*ct->nexthop)
		buf_strcpy(&out->nexthop, ct->nexthop);
	else if ((cls == RESOLVE_RELAY || cls == RESOLVE_REMOTE) && *r->relayhost)
		buf_strcpy(&out->nexthop, r->relayhost);
	else
		buf_strcpy(&out->nexthop, have_domain ? domain : r->myhostname);
	buf_free(&value);
	if (out->nexthop.len > QMGR_NEXTHOP_MAX || buf_has_nul(&out->nexthop))
		return route_fail(out, QMGR_ROUTE_DEFER, "4.3.5", "mail transport configuration error (next hop)");
	/* The mailbox is the destination for final delivery; the next hop for everything else. */
	out->per_rcpt =
	    strcmp(out->transport, r->local.transport) == 0 || strcmp(out->transport, r->virtual_.transport) == 0;
	/* A virtual mailbox (a Maildir, no lock) takes more parallel deliveries than a local user's mbox. */
	if (out->per_rcpt && cls == RESOLVE_VIRTUAL && !tmap_tr[0])
		out->dest_limit = r->virtual_limit;
	return QMGR_ROUTE_OK;
}
