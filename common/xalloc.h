/*
 * xalloc - memory allocation that succeeds or does not return.
 *
 * Every allocation in Postern goes through these wrappers.  Running out of
 * memory is a broken environment, not a peer's fault: the process logs a
 * fatal error and exits, the master restarts it, and the mail stays queued.
 * Size computations are overflow-checked (reallocarray semantics).
 */
#ifndef POSTERN_XALLOC_H
#define POSTERN_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t nmemb, size_t size);
void *xreallocarray(void *ptr, size_t nmemb, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
void *xmemdup(const void *p, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Free a secret after wiping it; NULL is allowed. */
void xfreezero_str(char *s);

#endif
