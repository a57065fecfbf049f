/*
 * buf - length-counted, growable byte buffers.
 *
 * A buffer may hold NUL bytes; it is also always NUL-terminated past its
 * length so that text can be handed to string functions with buf_str().
 * Growth is overflow-checked and an impossible size is fatal (xalloc).
 * Byte payloads are unsigned char; buf_str() is for text only.
 */
#ifndef POSTERN_BUF_H
#define POSTERN_BUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

struct buf {
	unsigned char *data;
	size_t len;
	size_t cap;
};

#define BUF_INIT           \
	{                  \
		NULL, 0, 0 \
	}

void buf_init(struct buf *b, size_t hint);
void buf_free(struct buf *b);
/* Wipe the contents (secrets), then free. */
void buf_freezero(struct buf *b);
/* Make room for at least extra more bytes (plus the terminator). */
void buf_reserve(struct buf *b, size_t extra);
void buf_reset(struct buf *b);
void buf_truncate(struct buf *b, size_t len);
/* Remove n bytes from the front. */
void buf_consume(struct buf *b, size_t n);

void buf_append(struct buf *b, const void *p, size_t n);
void buf_set(struct buf *b, const void *p, size_t n);
void buf_putc(struct buf *b, int c);
void buf_puts(struct buf *b, const char *s);
void buf_strcpy(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(struct buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* The contents as a C string ("" for an empty buffer); NULs end it early. */
const char *buf_str(const struct buf *b);
/* True when the buffer holds a NUL byte (so buf_str() would be short). */
bool buf_has_nul(const struct buf *b);
/* Hand over the storage as a malloc'ed C string and leave b empty. */
char *buf_export(struct buf *b);

static inline size_t
buf_len(const struct buf *b)
{
	return b->len;
}

#endif
