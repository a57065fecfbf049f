/*
 * xalloc - allocation wrappers that either succeed or end the process.
 *
 * Called from everywhere.  Trusts nothing about sizes: every product is
 * checked for overflow before it reaches the allocator.  A zero-sized
 * request is an interface violation (panic), as it usually hides a
 * length bug.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "xalloc.h"

void *
xmalloc(size_t size)
{
	void *p;

	if (size == 0)
		log_panic("xmalloc: zero-sized request");
	if ((p = malloc(size)) == NULL)
		log_fatal("out of memory allocating %zu bytes", size);
	return p;
}

void *
xcalloc(size_t nmemb, size_t size)
{
	void *p;

	if (nmemb == 0 || size == 0)
		log_panic("xcalloc: zero-sized request");
	if ((p = calloc(nmemb, size)) == NULL)
		log_fatal("out of memory allocating %zu x %zu bytes", nmemb, size);
	return p;
}

void *
xreallocarray(void *ptr, size_t nmemb, size_t size)
{
	void *p;

	if (nmemb == 0 || size == 0)
		log_panic("xreallocarray: zero-sized request");
	if ((p = reallocarray(ptr, nmemb, size)) == NULL) {
		if (errno == ENOMEM && nmemb > (size_t)-1 / size)
			log_panic("xreallocarray: %zu x %zu overflows", nmemb, size);
		log_fatal("out of memory allocating %zu x %zu bytes", nmemb, size);
	}
	return p;
}

char *
xstrdup(const char *s)
{
	char *p;

	if ((p = strdup(s)) == NULL)
		log_fatal("out of memory copying a string");
	return p;
}

char *
xstrndup(const char *s, size_t n)
{
	char *p;

	if ((p = strndup(s, n)) == NULL)
		log_fatal("out of memory copying a string");
	return p;
}

void *
xmemdup(const void *src, size_t n)
{
	void *p = xmalloc(n ? n : 1);

	if (n)
		memcpy(p, src, n);
	return p;
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		log_fatal("out of memory formatting a string");
	return s;
}

void
xfreezero_str(char *s)
{
	if (s != NULL)
		freezero(s, strlen(s));
}
