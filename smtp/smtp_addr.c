/*
 * smtp_addr - from a next hop to the addresses to try.
 *
 * Called by smtp_deliver.c once per request.  The next hop comes from
 * qmgr (transport_maps, relayhost or the recipient domain: the
 * administrator's and the sender's words, checked here); the rest comes
 * from DNS (dns.c bounds and checks every answer).  Temporary DNS
 * failures defer, never bounce; only a definite "no such domain" or a
 * null MX bounces, and only for next hops found through MX lookup.
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "smtp.h"
#include "str.h"
#include "xalloc.h"

/* host_ok - a host or domain name we accept in a next hop */
static bool
host_ok(const char *h)
{
	size_t n = strlen(h);

	return n > 0 && n <= DNS_NAME_MAX && h[0] != '.' && h[0] != '-' && strstr(h, "..") == NULL &&
	       strspn(h, "abcdefghijklmnopqrstuvwxyz0123456789-_.") == n;
}

/* port_parse - a port number or one of the names mail uses */
static int
port_parse(const char *s, int *port)
{
	long long v;

	if (strcmp(s, "smtp") == 0)
		*port = 25;
	else if (strcmp(s, "submission") == 0)
		*port = 587;
	else if (strcmp(s, "smtps") == 0 || strcmp(s, "submissions") == 0)
		*port = 465;
	else if (str_to_ll(s, 1, 65535, &v, NULL) == 0)
		*port = (int)v;
	else
		return -1;
	return 0;
}

int
smtp_nexthop_parse(const char *text, struct smtp_nexthop *nh, struct buf *err)
{
	char tmp[DNS_NAME_MAX + 80], *host, *port = NULL, *close;
	unsigned char a[16];
	size_t n;

	memset(nh, 0, sizeof(*nh));
	nh->port = SMTP_PORT;
	n = strlen(text);
	if (n == 0 || n >= sizeof(tmp)) {
		buf_printf(err, "bad next hop \"%.100s\": %s", text, n ? "too long" : "empty");
		return -1;
	}
	memcpy(tmp, text, n + 1);
	host = str_trim(tmp);
	if (*host == '[') {
		if ((close = strchr(host, ']')) == NULL)
			goto bad;
		*close = 0;
		host++;
		if (close[1] == ':')
			port = close + 2;
		else if (close[1] != 0)
			goto bad;
		if (str_ncasecmp(host, "ipv6:", 5) == 0)
			host += 5;
	} else {
		nh->mx = true;
		if ((port = strchr(host, ':')) != NULL) {
			*port++ = 0;
			if (strchr(port, ':') != NULL)
				goto bad; /* an IPv6 address needs brackets */
		}
	}
	if (port != NULL && port_parse(port, &nh->port) < 0)
		goto bad;
	str_lower(host);
	n = strlen(host);
	if (n > 0 && host[n - 1] == '.' && !nh->literal)
		host[--n] = 0;
	if (inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1) {
		nh->literal = true;
		nh->mx = false;
	} else if (!host_ok(host)) {
		goto bad;
	}
	strlcpy(nh->host, host, sizeof(nh->host));
	return 0;
bad:
	buf_printf(err, "bad next hop \"%.100s\"", text);
	return -1;
}

void
smtp_addr_order(struct dns_addr *v, size_t n, enum smtp_addr_pref pref)
{
	struct dns_addr *tmp;
	size_t i, k = 0;
	int first;

	if (n < 2)
		return;
	if (pref == SMTP_PREF_IPV4)
		first = AF_INET;
	else if (pref == SMTP_PREF_IPV6)
		first = AF_INET6;
	else
		first = arc4random_uniform(2) ? AF_INET : AF_INET6;
	/* A stable partition: the preferred family, then the other, each in the DNS order. */
	tmp = xcalloc(n, sizeof(*tmp));
	for (i = 0; i < n; i++)
		if (v[i].family == first)
			tmp[k++] = v[i];
	for (i = 0; i < n; i++)
		if (v[i].family != first)
			tmp[k++] = v[i];
	memcpy(v, tmp, n * sizeof(*v));
	free(tmp);
}

/* plan_fail - no address: the mail is deferred or bounced with this reason */
static void plan_fail(struct smtp_plan *p, enum deliver_status st, const char *dsn, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
plan_fail(struct smtp_plan *p, enum deliver_status st, const char *dsn, const char *fmt, ...)
{
	va_list ap;

	p->fail = st;
	strlcpy(p->dsn, dsn, sizeof(p->dsn));
	buf_reset(&p->why);
	va_start(ap, fmt);
	buf_vprintf(&p->why, fmt, ap);
	va_end(ap);
}

/* plan_host - the addresses of one host, appended in the order to try; its DNS status */
static enum dns_status
plan_host(struct smtp_plan *p, const char *host, int port, struct buf *why)
{
	struct dns_addr a[2 * DNS_ADDR_MAX];
	enum dns_status s4 = DNS_NOTFOUND, s6 = DNS_NOTFOUND;
	size_t n = 0, i;

	if (smtp_conf.use_v4)
		s4 = dns_addrs(host, AF_INET, a, DNS_ADDR_MAX, &n, why);
	if (smtp_conf.use_v6)
		s6 = dns_addrs(host, AF_INET6, a, n + DNS_ADDR_MAX, &n, why);
	smtp_addr_order(a, n, smtp_conf.pref);
	for (i = 0; i < n && p->n < (size_t)smtp_conf.mx_address_limit; i++) {
		p->v = xreallocarray(p->v, p->n + 1, sizeof(*p->v));
		strlcpy(p->v[p->n].host, host, sizeof(p->v[p->n].host));
		p->v[p->n].addr = a[i];
		p->v[p->n].port = port;
		p->n++;
	}
	if (n > 0)
		return DNS_OK;
	return s4 == DNS_RETRY || s6 == DNS_RETRY ? DNS_RETRY : DNS_NOTFOUND;
}

void
smtp_plan_make(const struct smtp_nexthop *nh, struct smtp_plan *p)
{
	struct dns_mx *mx = NULL, one;
	struct buf why = BUF_INIT;
	enum dns_status st;
	bool soft = false;
	size_t n = 0, i;

	memset(p, 0, sizeof(*p));
	p->fail = DELIVER_DEFERRED;
	if (nh->literal) {
		struct smtp_target t;

		memset(&t, 0, sizeof(t));
		strlcpy(t.host, nh->host, sizeof(t.host));
		t.port = nh->port;
		if (inet_pton(AF_INET, nh->host, t.addr.a) == 1)
			t.addr.family = AF_INET;
		else if (inet_pton(AF_INET6, nh->host, t.addr.a) == 1)
			t.addr.family = AF_INET6;
		if ((t.addr.family == AF_INET && !smtp_conf.use_v4) ||
		    (t.addr.family == AF_INET6 && !smtp_conf.use_v6)) {
			plan_fail(p, DELIVER_DEFERRED, "4.4.4", "address family of %s is disabled by inet_protocols",
			    nh->host);
			return;
		}
		p->v = xmalloc(sizeof(*p->v));
		p->v[0] = t;
		p->n = 1;
		return;
	}
	if (nh->mx) {
		switch (dns_mx(nh->host, &mx, &n, &why)) {
		case DNS_OK:
			break;
		case DNS_NULLMX:
			plan_fail(p, DELIVER_BOUNCED, "5.1.10", "%s", buf_str(&why));
			goto out;
		case DNS_NOTFOUND:
			plan_fail(p, DELIVER_BOUNCED, "5.4.4", "Host or domain name not found. %s", buf_str(&why));
			goto out;
		case DNS_RETRY:
			plan_fail(p, DELIVER_DEFERRED, "4.4.3", "Host or domain name not found. %s", buf_str(&why));
			goto out;
		}
		/* Exchangers at or after our own preference would send the mail back to us. */
		for (i = 0; i < n; i++) {
			if (str_casecmp(mx[i].host, smtp_conf.myhostname) == 0) {
				size_t k = 0;

				while (k < i && mx[k].pref < mx[i].pref)
					k++;
				n = k;
				if (n == 0) {
					plan_fail(
					    p, DELIVER_BOUNCED, "5.4.6", "mail for %s loops back to myself", nh->host);
					goto out;
				}
				break;
			}
		}
	}
	if (n == 0) {
		/* No MX (or not an MX next hop): the name itself, RFC 5321 5.1. */
		memset(&one, 0, sizeof(one));
		strlcpy(one.host, nh->host, sizeof(one.host));
		free(mx);
		mx = xmalloc(sizeof(*mx));
		mx[0] = one;
		n = 1;
	}
	buf_reset(&why);
	for (i = 0; i < n && p->n < (size_t)smtp_conf.mx_address_limit; i++) {
		st = plan_host(p, mx[i].host, nh->port, &why);
		if (st == DNS_RETRY)
			soft = true;
		if (st != DNS_OK)
			log_info("%s: %s", mx[i].host, buf_str(&why));
	}
	if (p->n == 0) {
		if (soft)
			plan_fail(p, DELIVER_DEFERRED, "4.4.3", "Host or domain name not found. %s", buf_str(&why));
		else if (nh->mx)
			plan_fail(p, DELIVER_BOUNCED, "5.4.4", "Host or domain name not found. %s", buf_str(&why));
		else /* a [host] the administrator named: a typo must not bounce mail */
			plan_fail(p, DELIVER_DEFERRED, "4.4.4", "Host or domain name not found. %s", buf_str(&why));
	}
out:
	free(mx);
	buf_free(&why);
}

void
smtp_plan_free(struct smtp_plan *p)
{
	free(p->v);
	buf_free(&p->why);
	memset(p, 0, sizeof(*p));
}
