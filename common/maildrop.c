/*
 * maildrop - records on the sendmail -> postdrop pipe (see maildrop.h).
 */
#include "config.h"

#include "maildrop.h"
#include "qfile.h"

void
maildrop_put(struct buf *out, int type, const void *data, size_t len)
{
	unsigned char hdr[8];
	size_t n;

	hdr[0] = (unsigned char)type;
	n = qfile_varint_put(hdr + 1, len);
	buf_append(out, hdr, n + 1);
	buf_append(out, data, len);
}

int
maildrop_get(struct stream *s, int *type, struct buf *data, size_t max)
{
	unsigned char hdr[8];
	size_t len, n = 0;
	int c, t, r;

	buf_reset(data);
	/* The header: a type byte and at most four length bytes. */
	for (;;) {
		if ((c = stream_getc(s)) < 0)
			return c;
		hdr[n++] = (unsigned char)c;
		r = qfile_rec_header(hdr, n, &t, &len);
		if (r > 0)
			break;
		if (r < 0 || n >= 5)
			return -100;
	}
	if (len > max)
		return -100;
	buf_reserve(data, len);
	if (len > 0) {
		ssize_t got = stream_read(s, data->data, len);

		if (got < 0)
			return (int)got;
		if ((size_t)got != len)
			return STREAM_EOF;
		data->len = len;
		data->data[len] = 0;
	}
	*type = t;
	return 0;
}
