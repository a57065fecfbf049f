/*
 * dns - DNS lookups with libresolv (see dns.h).
 *
 * Answers come from the network and are parsed with ns_initparse and
 * dn_expand, which check every length against the message; names longer
 * than NS_MAXDNAME are refused there.  Loopback addresses are answered
 * without a query: they are always "localhost".
 */
#include "config.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>
#include <stdio.h>
#include <string.h>

#include "dns.h"
#include "log.h"
#include "str.h"

static struct __res_state res;
static bool res_ready;

void
dns_init(void)
{
	if (res_ready)
		return;
	memset(&res, 0, sizeof(res));
	if (res_ninit(&res) == 0)
		res_ready = true;
	else
		log_warn("cannot read the resolver configuration; DNS lookups will fail");
}

/* query - one question; fills msg, returns its length or -1 with *st set */
static int
query(const char *name, int type, unsigned char *msg, int msglen, enum dns_status *st)
{
	int n;

	dns_init();
	if (!res_ready) {
		*st = DNS_RETRY;
		return -1;
	}
	n = res_nquery(&res, name, ns_c_in, type, msg, msglen);
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
