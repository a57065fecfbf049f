/*
 * fuzz_xtext - RFC 3461 xtext: smtpd's check and display
 * (smtpd/smtpd_parse.c) and cleanup's encoder (cleanup_xtext,
 * cleanup_orcpt_of in cleanup/cleanup_envelope.c).  ENVID, ORCPT and
 * AUTH= values travel as xtext from the client into the queue file and
 * into DSNs, so a value must never decode into a line break where a
 * reader does not expect one.
 *
 * Properties: whatever the encoder makes is valid xtext and decodes
 * (for display) to exactly what addr_printable shows for the original;
 * the display of any valid xtext is printable ASCII.
 */
#include "config.h"

#include "addr.h"
#include "cleanup.h"
#include "fuzz.h"
#include "smtpd_parse.h"

static void
check_printable(const struct buf *b)
{
	size_t i;

	for (i = 0; i < b->len; i++)
		FUZZ_ASSERT(b->data[i] >= 0x20 && b->data[i] < 0x7f);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf enc = BUF_INIT, shown = BUF_INIT, expect = BUF_INIT;
	char *s = fuzz_str(data, size);
	size_t n = strlen(s);
	bool valid;

	fuzz_quiet();
	/* The input as xtext: display succeeds exactly when it is valid. */
	valid = smtpd_xtext_valid(s);
	FUZZ_ASSERT((smtpd_xtext_display(s, &shown) == 0) == valid);
	if (valid)
		check_printable(&shown);

	/* The input as a raw value: encode, check, decode for display. */
	cleanup_xtext(&enc, s);
	FUZZ_ASSERT(smtpd_xtext_valid(buf_str(&enc)));
	FUZZ_ASSERT(memchr(enc.data ? enc.data : (unsigned char *)"", '\n', enc.len) == NULL);
	FUZZ_ASSERT(smtpd_xtext_display(buf_str(&enc), &shown) == 0);
	addr_printable(&expect, s, n);
	FUZZ_ASSERT(shown.len == expect.len && memcmp(shown.data, expect.data, shown.len) == 0);

	/* An ORCPT made from any address: a type, a ';', then text without controls. */
	cleanup_orcpt_of(&enc, s);
	FUZZ_ASSERT(strncmp(buf_str(&enc), "rfc822;", 7) == 0 || strncmp(buf_str(&enc), "utf-8;", 6) == 0);
	FUZZ_ASSERT(strlen(buf_str(&enc)) == enc.len);
	for (size_t i = 0; i < enc.len; i++)
		FUZZ_ASSERT(enc.data[i] >= 0x20 && enc.data[i] != 0x7f);

	free(s);
	buf_free(&enc);
	buf_free(&shown);
	buf_free(&expect);
	return 0;
}
