/*
 * sasl - the server side of SASL that smtpd (RFC 4954) and pop3d (RFC
 * 5034) share: strict base64 (RFC 4648), reading one client response,
 * and the PLAIN mechanism (RFC 4616).  Everything here handles
 * passwords: every buffer that held one is wiped before it is freed.
 */
#include "config.h"

#include <string.h>

#include <openssl/evp.h>

#include "sasl.h"

#define B64_CHUNK 65536 /* input bytes per EVP call: a multiple of 4 (decode) and of 3 (encode) */

static bool
is_b64(int c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

static int
b64val(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return c == '+' ? 62 : 63;
}

int
sasl_b64_decode(const char *in, struct buf *out, size_t max)
{
	size_t len = strlen(in), pad = 0, i, want, off, n;
	int got;

	buf_reset(out);
	buf_reserve(out, 0);
	if (strcmp(in, "=") == 0)
		return 0; /* RFC 4954 4: an empty initial response */
	if (len % 4 != 0)
		return -1;
	if (len > 0 && in[len - 1] == '=')
		pad = in[len - 2] == '=' ? 2 : 1;
	for (i = 0; i < len - pad; i++)
		if (!is_b64((unsigned char)in[i]))
			return -1;
	if (len == 0)
		return 0;
	/* The bits the padding leaves unused must be zero: one encoding per input. */
	if ((pad == 2 && (b64val(in[len - 3]) & 0x0f)) || (pad == 1 && (b64val(in[len - 2]) & 0x03)))
		return -1;
	want = len / 4 * 3 - pad;
	if (want > max)
		return -1;
	buf_reserve(out, len / 4 * 3);
	/* EVP_DecodeBlock() counts the padding as zero bytes; want excludes them. */
	for (off = 0; off < len; off += n) {
		n = len - off > B64_CHUNK ? B64_CHUNK : len - off;
		got = EVP_DecodeBlock(out->data + out->len, (const unsigned char *)in + off, (int)n);
		if (got < 0 || (size_t)got != n / 4 * 3) {
			buf_freezero(out);
			return -1;
		}
		out->len += (size_t)got;
	}
	buf_truncate(out, want);
	return 0;
}

void
sasl_b64_encode(const unsigned char *in, size_t len, struct buf *out)
{
	size_t n;
	int got;

	buf_reset(out);
	buf_reserve(out, 0);
	for (; len > 0; in += n, len -= n) {
		n = len > B64_CHUNK / 4 * 3 ? B64_CHUNK / 4 * 3 : len;
		buf_reserve(out, (n + 2) / 3 * 4);
		got = EVP_EncodeBlock(out->data + out->len, in, (int)n);
		out->len += (size_t)got;
	}
	out->data[out->len] = 0;
}

enum sasl_read
sasl_read_response(struct stream *s, struct buf *out)
{
	struct buf line = BUF_INIT;
	size_t n;
	int r;

	buf_reset(out);
	r = stream_getline(s, &line, SASL_LINE_MAX);
	if (r != STREAM_OK) {
		buf_freezero(&line);
		return r == STREAM_TOOLONG ? SASL_READ_TOOLONG : SASL_READ_LOST;
	}
	n = line.len;
	while (n > 0 && (line.data[n - 1] == '\n' || line.data[n - 1] == '\r'))
		n--;
	buf_truncate(&line, n);
	if (strcmp(buf_str(&line), "*") == 0) {
		buf_freezero(&line);
		return SASL_READ_CANCEL;
	}
	r = buf_has_nul(&line) ? -1 : sasl_b64_decode(buf_str(&line), out, SASL_LINE_MAX);
	buf_freezero(&line);
	return r < 0 ? SASL_READ_BAD : SASL_READ_OK;
}

int
sasl_plain(const struct buf *resp, struct buf *user, struct buf *pass, const char **why)
{
	const unsigned char *p = resp->data, *end, *z1, *z2;

	if (resp->len == 0 || (z1 = memchr(p, 0, resp->len)) == NULL) {
		*why = "invalid PLAIN response";
		return -1;
	}
	end = p + resp->len;
	if ((z2 = memchr(z1 + 1, 0, (size_t)(end - z1 - 1))) == NULL ||
	    memchr(z2 + 1, 0, (size_t)(end - z2 - 1)) != NULL) {
		*why = "invalid PLAIN response";
		return -1;
	}
	buf_set(user, z1 + 1, (size_t)(z2 - z1 - 1));
	buf_set(pass, z2 + 1, (size_t)(end - z2 - 1));
	/* Acting for somebody else (an authorization identity) is not supported. */
	if (z1 != p && ((size_t)(z1 - p) != user->len || memcmp(p, user->data, user->len) != 0)) {
		*why = "authorization identity not allowed";
		buf_freezero(pass);
		return -1;
	}
	if (user->len == 0 || pass->len == 0) {
		*why = "empty user name or password";
		buf_freezero(pass);
		return -1;
	}
	return 0;
}
