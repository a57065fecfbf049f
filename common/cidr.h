/*
 * cidr - IPv4 and IPv6 networks: "192.0.2.0/24", "[2001:db8::]/32",
 * "2001:db8::/32", or a single address.  Used for mynetworks and other
 * client address lists.
 */
#ifndef POSTERN_CIDR_H
#define POSTERN_CIDR_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

struct cidr {
	int family;              /* AF_INET or AF_INET6 */
	unsigned char addr[16];  /* network, host bits cleared */
	int bits;                /* prefix length */
};

/* Parse one network; -1 with *why on error. Host bits set below the prefix are an error. */
int cidr_parse(const char *s, struct cidr *out, const char **why);
/* Is the textual address (as inet_ntop writes it; IPv4-mapped IPv6 counts as IPv4) inside c? */
bool cidr_match(const struct cidr *c, const char *addr);

struct cidr_list {
	struct cidr *v;
	size_t n;
};

/* Parse a list ("127.0.0.0/8 [::1]/128, 192.0.2.0/24"); -1 with err naming the bad entry. */
int cidr_list_parse(const char *text, struct cidr_list *out, struct buf *err);
bool cidr_list_match(const struct cidr_list *l, const char *addr);
void cidr_list_free(struct cidr_list *l);

#endif
