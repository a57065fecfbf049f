/*
 * buf - growable byte buffers (see buf.h).
 *
 * Used everywhere input is handled.  The invariant cap > len and
 * data[len] == 0 holds whenever data != NULL.  Sizes are checked before
 * every addition so that no caller-controlled length can wrap around.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "log.h"
#include "xalloc.h"

void
buf_init(struct buf *b, size_t hint)
{
	b->data = NULL;
	b->len = b->cap = 0;
	if (hint)
		buf_reserve(b, hint);
}

void
buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

void
buf_freezero(struct buf *b)
{
	if (b->data)
		freezero(b->data, b->cap);
	b->data = NULL;
	b->len = b->cap = 0;
}

void
buf_reserve(struct buf *b, size_t extra)
{
	size_t need, ncap;

	if (extra > (size_t)-1 - b->len - 1)
		log_panic("buf_reserve: size overflow (%zu + %zu)", b->len, extra);
	need = b->len + extra + 1;
	if (need <= b->cap)
		return;
	ncap = b->cap ? b->cap : 64;
	while (ncap < need)
		ncap = ncap > (size_t)-1 / 2 ? need : ncap * 2;
	b->data = xreallocarray(b->data, ncap, 1);
	b->cap = ncap;
	b->data[b->len] = 0;
}

void
buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = 0;
}

void
buf_truncate(struct buf *b, size_t len)
{
	if (len > b->len)
		log_panic("buf_truncate: %zu beyond length %zu", len, b->len);
	b->len = len;
	if (b->data)
		b->data[len] = 0;
}

void
buf_consume(struct buf *b, size_t n)
{
	if (n > b->len)
		log_panic("buf_consume: %zu beyond length %zu", n, b->len);
	if (n == 0)
		return;
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
	b->data[b->len] = 0;
}

void
buf_append(struct buf *b, const void *p, size_t n)
{
	if (n == 0) {
		buf_reserve(b, 0);
		b->data[b->len] = 0; /* buf_set(b, p, 0) must leave "" behind */
		return;
	}
	buf_reserve(b, n);
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = 0;
}

void
buf_set(struct buf *b, const void *p, size_t n)
{
	b->len = 0;
	buf_append(b, p, n);
}

void
buf_putc(struct buf *b, int c)
{
	buf_reserve(b, 1);
	b->data[b->len++] = (unsigned char)c;
	b->data[b->len] = 0;
}

void
buf_puts(struct buf *b, const char *s)
{
	buf_append(b, s, strlen(s));
}

void
buf_strcpy(struct buf *b, const char *s)
{
	buf_set(b, s, strlen(s));
}

void
buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
	va_list aq;
	int n;

	buf_reserve(b, 128);
	va_copy(aq, ap);
	n = vsnprintf((char *)b->data + b->len, b->cap - b->len, fmt, aq);
	va_end(aq);
	if (n < 0)
		log_panic("buf_vprintf: bad format \"%s\"", fmt);
	if ((size_t)n >= b->cap - b->len) {
		buf_reserve(b, (size_t)n);
		n = vsnprintf((char *)b->data + b->len, b->cap - b->len, fmt, ap);
		if (n < 0)
			log_panic("buf_vprintf: bad format \"%s\"", fmt);
	}
	b->len += (size_t)n;
}

void
buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	buf_vprintf(b, fmt, ap);
	va_end(ap);
}

const char *
buf_str(const struct buf *b)
{
	return b->data ? (const char *)b->data : "";
}

bool
buf_has_nul(const struct buf *b)
{
	return b->len && memchr(b->data, 0, b->len) != NULL;
}

char *
buf_export(struct buf *b)
{
	char *s;

	buf_reserve(b, 0);
	s = (char *)b->data;
	b->data = NULL;
	b->len = b->cap = 0;
	return s;
}
