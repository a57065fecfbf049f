/*
 * sasl - SASL server helpers shared by smtpd and pop3d: base64, one
 * client response line, and the PLAIN mechanism.
 */
#ifndef POSTERN_SASL_H
#define POSTERN_SASL_H

#include <stddef.h>

#include "buf.h"
#include "stream.h"

#define SASL_LINE_MAX 2048 /* base64 of the largest PLAIN response, with room */

/*
 * Strict base64 (RFC 4648): padding required, no white space, unused
 * bits zero; "=" alone is the empty string (RFC 4954 4).  Replaces out;
 * -1 on bad input or more than max decoded bytes.
 */
int sasl_b64_decode(const char *in, struct buf *out, size_t max);
void sasl_b64_encode(const unsigned char *in, size_t len, struct buf *out);

enum sasl_read {
	SASL_READ_OK,      /* out holds the decoded response */
	SASL_READ_CANCEL,  /* the client sent "*" */
	SASL_READ_BAD,     /* not base64 */
	SASL_READ_TOOLONG, /* a line over SASL_LINE_MAX: end the session */
	SASL_READ_LOST,    /* end of file or timeout: end the session */
};

/* Read one response line (after a challenge), decode it; the line is wiped. */
enum sasl_read sasl_read_response(struct stream *s, struct buf *out);

/*
 * PLAIN: "authzid NUL authcid NUL password".  An authorization identity
 * other than the user, an empty user or an empty password is refused
 * (-1 with *why).
 */
int sasl_plain(const struct buf *resp, struct buf *user, struct buf *pass, const char **why);

#endif
