/*
 * fuzz_dns - the DNS answer parsers (common/dns.c): dns_parse_mx and
 * dns_parse_addrs, which read what a name server (or anyone who can
 * spoof one) sends back to the smtp client.
 *
 * Input: one byte (the address family and the address limit), then the
 * answer.  Properties: at most DNS_MX_MAX exchangers, each a non-empty
 * lower-case host name of allowed characters within DNS_NAME_MAX; sorting
 * keeps them and orders them by preference; addresses are of the family
 * asked for, within the limit and without duplicates.
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "dns.h"
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dns_mx *mx = NULL;
	struct dns_addr addrs[DNS_ADDR_MAX];
	char text[INET6_ADDRSTRLEN + 8];
	size_t n = 0, na = 0, i, j, max;
	long long sum = 0, sum2 = 0;
	bool nullmx;
	int family;

	fuzz_quiet();
	if (size < 1)
		return 0;
	family = (data[0] & 1) ? AF_INET6 : AF_INET;
	max = 1 + (data[0] >> 1) % DNS_ADDR_MAX;
	data++;
	size--;

	if (dns_parse_mx(data, size, &mx, &n, &nullmx) == 0) {
		FUZZ_ASSERT(n <= DNS_MX_MAX);
		for (i = 0; i < n; i++) {
			const char *h = mx[i].host;

			FUZZ_ASSERT(*h && strlen(h) <= DNS_NAME_MAX);
			for (; *h; h++)
				FUZZ_ASSERT((*h >= 'a' && *h <= 'z') || (*h >= '0' && *h <= '9') || *h == '-' ||
				            *h == '_' || *h == '.');
			FUZZ_ASSERT(mx[i].pref >= 0 && mx[i].pref <= 65535);
			sum += mx[i].pref;
		}
		dns_mx_sort(mx, n);
		for (i = 0; i < n; i++) {
			sum2 += mx[i].pref;
			FUZZ_ASSERT(i == 0 || mx[i - 1].pref <= mx[i].pref);
		}
		FUZZ_ASSERT(sum == sum2);
	}
	free(mx);

	if (dns_parse_addrs(data, size, family, addrs, max, &na) == 0) {
		FUZZ_ASSERT(na <= max);
		for (i = 0; i < na; i++) {
			FUZZ_ASSERT(addrs[i].family == family);
			for (j = 0; j < i; j++)
				FUZZ_ASSERT(memcmp(addrs[i].a, addrs[j].a, sizeof(addrs[i].a)) != 0);
			dns_addr_str(&addrs[i], text, sizeof(text));
			FUZZ_ASSERT(*text);
		}
	}
	return 0;
}
