/*
 * dns - the DNS questions Postern asks, through libresolv (no NSS, so it
 * works in a chroot once dns_init() has read /etc/resolv.conf before it).
 *
 * smtpd asks about clients (dns_client_name) and sender domains
 * (dns_mail_domain); the smtp client asks for the mail exchangers of a
 * destination (dns_mx) and the addresses of each (dns_addrs).  Answers
 * come from the network: the parsers (dns_parse_*) check every length
 * and keep at most DNS_MX_MAX exchangers and DNS_ADDR_MAX addresses.
 */
#ifndef POSTERN_DNS_H
#define POSTERN_DNS_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

enum dns_status {
	DNS_OK,       /* found */
	DNS_NOTFOUND, /* the name does not exist, or has no such records */
	DNS_NULLMX,   /* RFC 7505: the domain accepts no mail */
	DNS_RETRY,    /* no answer now (server failure, timeout) */
};

#define DNS_NAME_MAX 255 /* a host name in presentation form, without the trailing dot */
#define DNS_MX_MAX   64  /* exchangers kept from one answer */
#define DNS_ADDR_MAX 32  /* addresses kept for one host and family */

struct dns_mx {
	char host[DNS_NAME_MAX + 1]; /* lower case, no trailing dot */
	int pref;
};

struct dns_addr {
	int family; /* AF_INET or AF_INET6 */
	unsigned char a[16];
};

/* Read the resolver configuration; call before a chroot. */
void dns_init(void);
/*
 * Send every question to one name server instead of resolv.conf's:
 * "IPv4:port" or "IPv4" (port 53); "" goes back to resolv.conf.  For
 * tests that run their own server on loopback (smtp_dns_resolver).
 * -1 with err for a malformed spec.
 */
int dns_set_resolver(const char *spec, struct buf *err);
/* Reverse-map an address and confirm the name maps back to it. */
enum dns_status dns_client_name(const char *addr, struct buf *name);
/* Does a mail domain exist (MX, or else A or AAAA)? */
enum dns_status dns_mail_domain(const char *domain);

/*
 * The MX records of domain, sorted by preference with a random order
 * among equal preferences, into *mx (malloc'ed; free it) and *n.
 * DNS_OK with *n == 0: the domain exists but has no MX (the caller uses
 * the domain itself, RFC 5321 5.1).  DNS_NULLMX: RFC 7505.  DNS_NOTFOUND:
 * the domain does not exist (NXDOMAIN).  DNS_RETRY: server failure,
 * timeout, or a malformed answer.  why gets a reason for the log and
 * the DSN on anything but DNS_OK.
 */
enum dns_status dns_mx(const char *domain, struct dns_mx **mx, size_t *n, struct buf *why);
/*
 * The addresses of host in one family (AF_INET: A, AF_INET6: AAAA), at
 * most max of them, appended to out[*n].  DNS_NOTFOUND covers both "no
 * such name" and "no such record"; why as for dns_mx.
 */
enum dns_status dns_addrs(const char *host, int family, struct dns_addr *out, size_t max, size_t *n, struct buf *why);

/* Pure parts, for the unit tests. */
/*
 * MX records in a DNS answer (len bytes): appended to *mx (growing it)
 * up to DNS_MX_MAX; *nullmx is set when a record is the RFC 7505 null MX.
 * Names that do not expand, are longer than DNS_NAME_MAX or hold bytes
 * outside letters, digits, '-', '_' and '.' are skipped.  -1 when the
 * message itself is malformed.
 */
int dns_parse_mx(const unsigned char *msg, size_t len, struct dns_mx **mx, size_t *n, bool *nullmx);
/* A or AAAA records of family in an answer, appended up to max; -1 when malformed. */
int dns_parse_addrs(const unsigned char *msg, size_t len, int family, struct dns_addr *out, size_t max, size_t *n);
/* Sort by preference; shuffle each run of equal preferences. */
void dns_mx_sort(struct dns_mx *mx, size_t n);
/* "192.0.2.1" or "2001:db8::1" for an address. */
void dns_addr_str(const struct dns_addr *a, char *out, size_t len);

#endif
