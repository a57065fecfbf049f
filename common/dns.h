/*
 * dns - the DNS questions Postern asks, through libresolv (no NSS, so it
 * works in a chroot once dns_init() has read /etc/resolv.conf before it).
 */
#ifndef POSTERN_DNS_H
#define POSTERN_DNS_H

#include "buf.h"

enum dns_status {
	DNS_OK,       /* found */
	DNS_NOTFOUND, /* the name does not exist, or has no such records */
	DNS_NULLMX,   /* RFC 7505: the domain accepts no mail */
	DNS_RETRY,    /* no answer now (server failure, timeout) */
};

/* Read the resolver configuration; call before a chroot. */
void dns_init(void);
/* Reverse-map an address and confirm the name maps back to it. */
enum dns_status dns_client_name(const char *addr, struct buf *name);
/* Does a mail domain exist (MX, or else A or AAAA)? */
enum dns_status dns_mail_domain(const char *domain);

#endif
