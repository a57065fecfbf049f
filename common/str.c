/*
 * str - string helpers (see str.h).  No locale: mail protocols are ASCII.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "str.h"

int
str_to_ll(const char *s, long long min, long long max, long long *out, const char **why)
{
	const char *p = s;
	char *end;
	long long v;

	if (why)
		*why = "invalid";
	if (s == NULL || *s == 0)
		return -1;
	if (*p == '-' || *p == '+')
		p++;
	if (!isdigit((unsigned char)*p))
		return -1;
	if (*s == '-' && min >= 0)
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (*end != 0)
		return -1;
	if (errno == ERANGE) {
		if (why)
			*why = v < 0 ? "too small" : "too large";
		return -1;
	}
	if (v < min) {
		if (why)
			*why = "too small";
		return -1;
	}
	if (v > max) {
		if (why)
			*why = "too large";
		return -1;
	}
	*out = v;
	return 0;
}

char *
str_lower(char *s)
{
	char *p;

	for (p = s; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p + ('a' - 'A'));
	return s;
}

static int
lc(int c)
{
	return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

int
str_casecmp(const char *a, const char *b)
{
	const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b;

	while (*x && lc(*x) == lc(*y))
		x++, y++;
	return lc(*x) - lc(*y);
}

int
str_ncasecmp(const char *a, const char *b, size_t n)
{
	const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b;

	if (n == 0)
		return 0;
	while (--n && *x && lc(*x) == lc(*y))
		x++, y++;
	return lc(*x) - lc(*y);
}

char *
str_trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
		*--e = 0;
	return s;
}

char *
str_token(char **sp, const char *sep)
{
	char *s = *sp, *tok;

	if (s == NULL)
		return NULL;
	s += strspn(s, sep);
	if (*s == 0) {
		*sp = s;
		return NULL;
	}
	tok = s;
	s += strcspn(s, sep);
	if (*s)
		*s++ = 0;
	*sp = s;
	return tok;
}

char *
str_token_braced(char **sp, const char *sep)
{
	char *s = *sp, *tok;
	int depth = 0;

	if (s == NULL)
		return NULL;
	s += strspn(s, sep);
	if (*s == 0) {
		*sp = s;
		return NULL;
	}
	for (tok = s; *s; s++) {
		if (*s == '{')
			depth++;
		else if (*s == '}' && depth > 0)
			depth--;
		else if (depth == 0 && strchr(sep, *s) != NULL)
			break;
	}
	if (*s)
		*s++ = 0;
	*sp = s;
	return tok;
}

bool
str_ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && memcmp(s + a - b, suffix, b) == 0;
}
