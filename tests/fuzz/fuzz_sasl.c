/*
 * fuzz_sasl - the SASL server helpers smtpd and pop3d share
 * (common/sasl.c): strict base64 and the PLAIN mechanism, reached by
 * any client before it has authenticated.
 *
 * Properties: a decoded value encodes back to the same text (base64 is
 * canonical here, "=" aside); never more than the limit; PLAIN gives a
 * non-empty user and password without NUL, or a reason.
 */
#include "config.h"

#include "fuzz.h"
#include "sasl.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf dec = BUF_INIT, enc = BUF_INIT, user = BUF_INIT, pass = BUF_INIT, raw = BUF_INIT;
	const char *why;
	size_t max;
	char *s;

	fuzz_quiet();
	if (size < 1)
		return 0;
	max = (data[0] & 1) ? 16 : SASL_LINE_MAX;
	s = fuzz_str(data + 1, size - 1);
	if (sasl_b64_decode(s, &dec, max) == 0) {
		FUZZ_ASSERT(dec.len <= max);
		sasl_b64_encode(dec.data, dec.len, &enc);
		FUZZ_ASSERT(strcmp(buf_str(&enc), s) == 0 || (strcmp(s, "=") == 0 && enc.len == 0));
	}
	/* The raw bytes as a PLAIN response. */
	buf_set(&raw, data + 1, size - 1);
	if (sasl_plain(&raw, &user, &pass, &why) == 0) {
		FUZZ_ASSERT(user.len > 0 && pass.len > 0);
		FUZZ_ASSERT(strlen(buf_str(&user)) == user.len && strlen(buf_str(&pass)) == pass.len);
	} else {
		FUZZ_ASSERT(why != NULL);
	}
	free(s);
	buf_free(&dec);
	buf_free(&enc);
	buf_freezero(&user);
	buf_freezero(&pass);
	buf_free(&raw);
	return 0;
}
