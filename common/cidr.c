/*
 * cidr - network lists (see cidr.h).  Parses admin-written lists from
 * main.cf and matches client addresses that came from getpeername(), so
 * both sides are strict: anything inet_pton rejects is an error.
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cidr.h"
#include "str.h"
#include "xalloc.h"

/* to_bytes - a textual address as family and bytes; IPv4-mapped IPv6 becomes IPv4 */
static int
to_bytes(const char *s, int *family, unsigned char *out)
{
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	unsigned char v6[16];

	if (inet_pton(AF_INET, s, out) == 1) {
		*family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, s, v6) == 1) {
		if (memcmp(v6, mapped, sizeof(mapped)) == 0) {
			*family = AF_INET;
			memcpy(out, v6 + 12, 4);
		} else {
			*family = AF_INET6;
			memcpy(out, v6, 16);
		}
		return 0;
	}
	return -1;
}

int
cidr_parse(const char *s, struct cidr *out, const char **why)
{
	char host[INET6_ADDRSTRLEN + 2], *slash;
	const char *p = s;
	long long bits;
	size_t len;
	int i, maxbits;

	memset(out, 0, sizeof(*out));
	if (strlen(s) >= sizeof(host) + 4) {
		*why = "too long";
		return -1;
	}
	strlcpy(host, s, sizeof(host));
	slash = strchr(host, '/');
	if (slash)
		*slash++ = 0;
	p = host;
	len = strlen(host);
	if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
		host[len - 1] = 0;
		p = host + 1;
	}
	/* A mapped address in a list would only ever match IPv4 clients: say what is meant. */
	if (strchr(p, ':') != NULL && strchr(p, '.') != NULL) {
		*why = "write IPv4 networks in IPv4 form";
		return -1;
	}
	if (inet_pton(AF_INET, p, out->addr) == 1)
		out->family = AF_INET;
	else if (inet_pton(AF_INET6, p, out->addr) == 1)
		out->family = AF_INET6;
	else {
		*why = "not an IPv4 or IPv6 address";
		return -1;
	}
	maxbits = out->family == AF_INET ? 32 : 128;
	out->bits = maxbits;
	if (slash != NULL) {
		if (str_to_ll(slash, 0, maxbits, &bits, NULL) < 0) {
			*why = "bad prefix length";
			return -1;
		}
		out->bits = (int)bits;
	}
	for (i = 0; i < maxbits / 8; i++) {
		int keep = out->bits - i * 8;
		unsigned char mask = keep >= 8 ? 0xff : keep <= 0 ? 0 : (unsigned char)(0xff << (8 - keep));

		if (out->addr[i] & ~mask) {
			*why = "address has bits set beyond the prefix length";
			return -1;
		}
	}
	return 0;
}

bool
cidr_match(const struct cidr *c, const char *addr)
{
	unsigned char b[16];
	int family, i, full, rest;

	if (to_bytes(addr, &family, b) < 0 || family != c->family)
		return false;
	full = c->bits / 8;
	rest = c->bits % 8;
	for (i = 0; i < full; i++)
		if (b[i] != c->addr[i])
			return false;
	if (rest && ((b[full] ^ c->addr[full]) & (unsigned char)(0xff << (8 - rest))))
		return false;
	return true;
}

int
cidr_list_parse(const char *text, struct cidr_list *out, struct buf *err)
{
	char *copy = xstrdup(text), *p = copy, *tok;
	const char *why;
	size_t cap = 0;

	out->v = NULL;
	out->n = 0;
	while ((tok = str_token(&p, STR_LIST_SEP)) != NULL) {
		if (out->n == cap) {
			cap = cap ? cap * 2 : 8;
			out->v = xreallocarray(out->v, cap, sizeof(*out->v));
		}
		if (cidr_parse(tok, &out->v[out->n], &why) < 0) {
			buf_printf(err, "\"%s\": %s", tok, why);
			free(copy);
			cidr_list_free(out);
			return -1;
		}
		out->n++;
	}
	free(copy);
	return 0;
}

bool
cidr_list_match(const struct cidr_list *l, const char *addr)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		if (cidr_match(&l->v[i], addr))
			return true;
	return false;
}

void
cidr_list_free(struct cidr_list *l)
{
	free(l->v);
	l->v = NULL;
	l->n = 0;
}
