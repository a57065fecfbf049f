/*
 * dns - DNS lookups with libresolv (see dns.h).
 *
 * Called by smtpd (client names, sender domains) and the smtp client (MX
 * and address lookups).  Answers come from the network and are parsed
 * with ns_initparse and dn_expand, which check every length against the
 * message; names longer than NS_MAXDNAME are refused there, and names we
 * keep are checked again (length, characters).  Loopback addresses are
 * answered without a query: they are always "localhost".
 *
 * Try-again is never read as not-found: NXDOMAIN and "no such record"
 * are the only negative answers; a server failure, a timeout, a
 * truncated or malformed answer all say DNS_RETRY.
 */
#include "config.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dns.h"
#include "log.h"
#include "str.h"
#include "xalloc.h"

#define ANSWER_MAX 65536 /* the largest DNS message (TCP) */

static struct __res_state res;
static bool res_ready;
static struct sockaddr_in resolver; /* smtp_dns_resolver, when set */
static bool resolver_set;

/* resolver_apply - make the one configured server the only one */
static void
resolver_apply(void)
{
	if (!resolver_set || !res_ready)
		return;
	/* glibc prefers its IPv6 copy of a server when it has one: drop it. */
	if (res._u._ext.nsaddrs[0] != NULL) {
		free(res._u._ext.nsaddrs[0]);
		res._u._ext.nsaddrs[0] = NULL;
	}
	res.nsaddr_list[0] = resolver;
	res.nscount = 1;
}

void
dns_init(void)
{
	if (res_ready)
		return;
	memset(&res, 0, sizeof(res));
	if (res_ninit(&res) == 0) {
		res_ready = true;
		resolver_apply();
	} else {
		log_warn("cannot read the resolver configuration; DNS lookups will fail");
	}
}

int
dns_set_resolver(const char *spec, struct buf *err)
{
	char host[64];
	const char *colon;
	long long port = 53;
	size_t n;

	if (spec == NULL || *spec == 0) {
		if (resolver_set && res_ready) {
			res_nclose(&res);
			res_ready = false;
			resolver_set = false;
			dns_init();
		}
		resolver_set = false;
		return 0;
	}
	colon = strchr(spec, ':');
	n = colon ? (size_t)(colon - spec) : strlen(spec);
	if (n == 0 || n >= sizeof(host)) {
		buf_printf(err, "\"%s\": expected IPv4-address[:port]", spec);
		return -1;
	}
	memcpy(host, spec, n);
	host[n] = 0;
	memset(&resolver, 0, sizeof(resolver));
	resolver.sin_family = AF_INET;
	if (inet_pton(AF_INET, host, &resolver.sin_addr) != 1 ||
	    (colon && str_to_ll(colon + 1, 1, 65535, &port, NULL) < 0)) {
		buf_printf(err, "\"%s\": expected IPv4-address[:port]", spec);
		return -1;
	}
	resolver.sin_port = htons((uint16_t)port);
	resolver_set = true;
	resolver_apply();
	return 0;
}

/* query - one question; fills msg, returns its length or -1 with *st set (and *herr: h_errno) */
static int
query_h(const char *name, int type, unsigned char *msg, int msglen, enum dns_status *st, int *herr)
{
	int n;

	dns_init();
	*herr = 0;
	if (!res_ready) {
		*st = DNS_RETRY;
		*herr = TRY_AGAIN;
		return -1;
	}
	n = res_nquery(&res, name, ns_c_in, type, msg, msglen);
	*herr = n < 0 ? res.res_h_errno : 0;
	if (n >= msglen) {
		/* res_nquery returns the full length of an answer it had to cut. */
		*st = DNS_RETRY;
		*herr = TRY_AGAIN;
		return -1;
	}
	if (n < 0) {
		switch (res.res_h_errno) {
		case HOST_NOT_FOUND:
		case NO_DATA:
			*st = DNS_NOTFOUND;
			break;
		default:
			*st = DNS_RETRY;
		}
		return -1;
	}
	*st = DNS_OK;
	return n;
}

static int
query(const char *name, int type, unsigned char *msg, int msglen, enum dns_status *st)
{
	int herr;

	return query_h(name, type, msg, msglen, st, &herr);
}

/* loopback - is addr 127.0.0.0/8 or ::1 */
static bool
loopback(const char *addr)
{
	return strncmp(addr, "127.", 4) == 0 || strcmp(addr, "::1") == 0 || strncmp(addr, "::ffff:127.", 11) == 0;
}

/* ptr_name - the in-addr.arpa or ip6.arpa name of addr */
static int
ptr_name(const char *addr, char *out, size_t outlen)
{
	unsigned char b[16];
	size_t off = 0;
	int i;

	if (inet_pton(AF_INET, addr, b) == 1) {
		snprintf(out, outlen, "%u.%u.%u.%u.in-addr.arpa", b[3], b[2], b[1], b[0]);
		return 0;
	}
	if (inet_pton(AF_INET6, addr, b) != 1)
		return -1;
	for (i = 15; i >= 0 && off + 4 < outlen; i--)
		off += (size_t)snprintf(out + off, outlen - off, "%x.%x.", b[i] & 0xf, b[i] >> 4);
	snprintf(out + off, outlen - off, "ip6.arpa");
	return 0;
}

/* forward_has - does name have an A or AAAA record equal to addr */
static enum dns_status
forward_has(const char *name, const char *addr)
{
	unsigned char msg[NS_PACKETSZ * 4], want[16];
	int family = inet_pton(AF_INET, addr, want) == 1 ? AF_INET : AF_INET6;
	enum dns_status st;
	ns_msg h;
	ns_rr rr;
	int n, i;

	if (family == AF_INET6 && inet_pton(AF_INET6, addr, want) != 1)
		return DNS_NOTFOUND;
	n = query(name, family == AF_INET ? ns_t_a : ns_t_aaaa, msg, sizeof(msg), &st);
	if (n < 0)
		return st;
	if (ns_initparse(msg, n, &h) < 0)
		return DNS_RETRY;
	for (i = 0; i < ns_msg_count(h, ns_s_an); i++) {
		if (ns_parserr(&h, ns_s_an, i, &rr) < 0)
			return DNS_RETRY;
		if (ns_rr_type(rr) == (family == AF_INET ? ns_t_a : ns_t_aaaa) &&
		    ns_rr_rdlen(rr) == (family == AF_INET ? 4 : 16) &&
		    memcmp(ns_rr_rdata(rr), want, ns_rr_rdlen(rr)) == 0)
			return DNS_OK;
	}
	return DNS_NOTFOUND;
}

enum dns_status
dns_client_name(const char *addr, struct buf *name)
{
	unsigned char msg[NS_PACKETSZ * 4];
	char qname[128], host[NS_MAXDNAME];
	enum dns_status st;
	ns_msg h;
	ns_rr rr;
	int n, i;

	buf_strcpy(name, "unknown");
	if (loopback(addr)) {
		buf_strcpy(name, "localhost");
		return DNS_OK;
	}
	if (ptr_name(addr, qname, sizeof(qname)) < 0)
		return DNS_NOTFOUND;
	if ((n = query(qname, ns_t_ptr, msg, sizeof(msg), &st)) < 0)
		return st;
	if (ns_initparse(msg, n, &h) < 0)
		return DNS_RETRY;
	for (i = 0; i < ns_msg_count(h, ns_s_an); i++) {
		if (ns_parserr(&h, ns_s_an, i, &rr) < 0)
			return DNS_RETRY;
		if (ns_rr_type(rr) != ns_t_ptr)
			continue;
		if (dn_expand(ns_msg_base(h), ns_msg_end(h), ns_rr_rdata(rr), host, sizeof(host)) < 0)
			return DNS_RETRY;
		/* Forward-confirmed only: a PTR anyone can set is not a name we print. */
		if (forward_has(host, addr) == DNS_OK) {
			buf_strcpy(name, str_lower(host));
			return DNS_OK;
		}
	}
	return DNS_NOTFOUND;
}

enum dns_status
dns_mail_domain(const char *domain)
{
	unsigned char msg[NS_PACKETSZ * 4];
	enum dns_status st, st6;
	ns_msg h;
	ns_rr rr;
	int n, i;

	if ((n = query(domain, ns_t_mx, msg, sizeof(msg), &st)) >= 0) {
		if (ns_initparse(msg, n, &h) < 0)
			return DNS_RETRY;
		for (i = 0; i < ns_msg_count(h, ns_s_an); i++) {
			if (ns_parserr(&h, ns_s_an, i, &rr) < 0)
				return DNS_RETRY;
			if (ns_rr_type(rr) != ns_t_mx)
				continue;
			/* RFC 7505 null MX: preference 0 and the root name. */
			if (ns_rr_rdlen(rr) == 3 && ns_get16(ns_rr_rdata(rr)) == 0 && ns_rr_rdata(rr)[2] == 0)
				return DNS_NULLMX;
			return DNS_OK;
		}
	} else if (st == DNS_RETRY) {
		return DNS_RETRY;
	} else if (res.res_h_errno == HOST_NOT_FOUND) {
		return DNS_NOTFOUND; /* NXDOMAIN: no other type will exist either */
	}
	if ((n = query(domain, ns_t_a, msg, sizeof(msg), &st)) >= 0)
		return DNS_OK;
	if ((n = query(domain, ns_t_aaaa, msg, sizeof(msg), &st6)) >= 0)
		return DNS_OK;
	return st == DNS_RETRY || st6 == DNS_RETRY ? DNS_RETRY : DNS_NOTFOUND;
}

/* ---------------------------------------------------------------- mail exchangers */

/* name_ok - a host name we are willing to connect to and print */
static bool
name_ok(const char *name)
{
	size_t n = strlen(name);

	return n > 0 && n <= DNS_NAME_MAX &&
	       strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") == n &&
	       name[0] != '.' && strstr(name, "..") == NULL;
}

int
dns_parse_mx(const unsigned char *msg, size_t len, struct dns_mx **mx, size_t *n, bool *nullmx)
{
	char host[NS_MAXDNAME];
	const unsigned char *rd;
	ns_msg h;
	ns_rr rr;
	int i, count;

	*nullmx = false;
	if (len > ANSWER_MAX || ns_initparse(msg, (int)len, &h) < 0)
		return -1;
	count = ns_msg_count(h, ns_s_an);
	for (i = 0; i < count; i++) {
		if (ns_parserr(&h, ns_s_an, i, &rr) < 0)
			return -1;
		if (ns_rr_type(rr) != ns_t_mx || ns_rr_class(rr) != ns_c_in)
			continue;
		if (ns_rr_rdlen(rr) < 3)
			return -1;
		rd = ns_rr_rdata(rr);
		/* RFC 7505: preference 0 and the root name (one zero byte). */
		if (ns_rr_rdlen(rr) == 3 && rd[2] == 0) {
			*nullmx = true;
			continue;
		}
		if (dn_expand(ns_msg_base(h), ns_msg_end(h), rd + 2, host, sizeof(host)) < 0)
			return -1;
		if (host[0] == 0) {
			*nullmx = true; /* a root target with another preference: no mail either */
			continue;
		}
		if (!name_ok(host) || *n >= DNS_MX_MAX)
			continue;
		*mx = xreallocarray(*mx, *n + 1, sizeof(**mx));
		strlcpy((*mx)[*n].host, host, sizeof((*mx)[*n].host));
		str_lower((*mx)[*n].host);
		(*mx)[*n].pref = ns_get16(rd);
		(*n)++;
	}
	return 0;
}

int
dns_parse_addrs(const unsigned char *msg, size_t len, int family, struct dns_addr *out, size_t max, size_t *n)
{
	ns_type type = family == AF_INET ? ns_t_a : ns_t_aaaa;
	int i, count;
	size_t alen = family == AF_INET ? 4 : 16, k;
	ns_msg h;
	ns_rr rr;

	if (len > ANSWER_MAX || ns_initparse(msg, (int)len, &h) < 0)
		return -1;
	count = ns_msg_count(h, ns_s_an);
	for (i = 0; i < count; i++) {
		if (ns_parserr(&h, ns_s_an, i, &rr) < 0)
			return -1;
		if (ns_rr_type(rr) != type || ns_rr_class(rr) != ns_c_in)
			continue;
		if (ns_rr_rdlen(rr) != alen)
			return -1;
		if (*n >= max)
			break;
		/* A duplicate record is one address, tried once. */
		for (k = 0; k < *n; k++)
			if (out[k].family == family && memcmp(out[k].a, ns_rr_rdata(rr), alen) == 0)
				break;
		if (k < *n)
			continue;
		memset(&out[*n], 0, sizeof(out[*n]));
		out[*n].family = family;
		memcpy(out[*n].a, ns_rr_rdata(rr), alen);
		(*n)++;
	}
	return 0;
}

static int
mx_cmp(const void *a, const void *b)
{
	const struct dns_mx *x = a, *y = b;

	return (x->pref > y->pref) - (x->pref < y->pref);
}

void
dns_mx_sort(struct dns_mx *mx, size_t n)
{
	struct dns_mx tmp;
	size_t i, j, k;

	if (n < 2)
		return;
	qsort(mx, n, sizeof(*mx), mx_cmp);
	/* Fisher-Yates within each run of one preference: load spreads over equals. */
	for (i = 0; i < n; i = j) {
		for (j = i + 1; j < n && mx[j].pref == mx[i].pref; j++)
			;
		for (k = j - 1; k > i; k--) {
			size_t r = i + arc4random_uniform((uint32_t)(k - i + 1));

			tmp = mx[k];
			mx[k] = mx[r];
			mx[r] = tmp;
		}
	}
}

void
dns_addr_str(const struct dns_addr *a, char *out, size_t len)
{
	if (inet_ntop(a->family, a->a, out, (socklen_t)len) == NULL)
		strlcpy(out, "?", len);
}

/* why_text - the resolver's reason in Postfix's words */
static void
why_text(struct buf *why, const char *name, const char *type, int herr)
{
	const char *what;

	switch (herr) {
	case HOST_NOT_FOUND:
		what = "Host not found";
		break;
	case NO_DATA:
		what = "No address associated with hostname";
		break;
	case TRY_AGAIN:
		what = "Host not found, try again";
		break;
	default:
		what = "Non-recoverable error, try again";
		break;
	}
	if (why != NULL) {
		buf_reset(why);
		buf_printf(why, "Name service error for name=%s type=%s: %s", name, type, what);
	}
}

enum dns_status
dns_mx(const char *domain, struct dns_mx **mx, size_t *n, struct buf *why)
{
	unsigned char *msg = xmalloc(ANSWER_MAX);
	enum dns_status st;
	bool nullmx = false;
	int len, herr;

	*mx = NULL;
	*n = 0;
	len = query_h(domain, ns_t_mx, msg, ANSWER_MAX, &st, &herr);
	if (len < 0) {
		free(msg);
		if (herr == NO_DATA)
			return DNS_OK; /* the domain exists without MX: implicit MX */
		why_text(why, domain, "MX", herr);
		return herr == HOST_NOT_FOUND ? DNS_NOTFOUND : DNS_RETRY;
	}
	if (dns_parse_mx(msg, (size_t)len, mx, n, &nullmx) < 0) {
		free(msg);
		free(*mx);
		*mx = NULL;
		*n = 0;
		if (why) {
			buf_reset(why);
			buf_printf(why, "Name service error for name=%s type=MX: malformed answer", domain);
		}
		return DNS_RETRY;
	}
	free(msg);
	if (nullmx) {
		free(*mx);
		*mx = NULL;
		*n = 0;
		if (why) {
			buf_reset(why);
			buf_printf(why, "Domain %s does not accept mail (nullMX)", domain);
		}
		return DNS_NULLMX;
	}
	dns_mx_sort(*mx, *n);
	return DNS_OK;
}

enum dns_status
dns_addrs(const char *host, int family, struct dns_addr *out, size_t max, size_t *n, struct buf *why)
{
	unsigned char *msg = xmalloc(ANSWER_MAX);
	const char *type = family == AF_INET ? "A" : "AAAA";
	enum dns_status st;
	size_t before = *n;
	int len, herr;

	len = query_h(host, family == AF_INET ? ns_t_a : ns_t_aaaa, msg, ANSWER_MAX, &st, &herr);
	if (len < 0) {
		free(msg);
		why_text(why, host, type, herr);
		return herr == HOST_NOT_FOUND || herr == NO_DATA ? DNS_NOTFOUND : DNS_RETRY;
	}
	if (dns_parse_addrs(msg, (size_t)len, family, out, max, n) < 0) {
		free(msg);
		*n = before;
		if (why) {
			buf_reset(why);
			buf_printf(why, "Name service error for name=%s type=%s: malformed answer", host, type);
		}
		return DNS_RETRY;
	}
	free(msg);
	if (*n == before) {
		why_text(why, host, type, NO_DATA);
		return DNS_NOTFOUND;
	}
	return DNS_OK;
}
