/*
 * fuzz_pop3_cmd - the POP3 command language and the message converter
 * (pop3d/pop3d_cmd.c, pop3d/pop3d_conv.c, pop3d/pop3d_maildir.c's name
 * parser): what pop3d's login part reads from the network before any
 * authentication, and what its mailbox part makes of a Maildir file.
 *
 * Input: one option byte, then bytes used three ways: as a stream of
 * command lines (read as pop3d reads them, in pieces), as a message to
 * convert for RETR/TOP, and as a Maildir file name.  Properties: parsed
 * numbers are within the bounds asked for; a converted message has only
 * CRLF line ends, ends with the terminator and contains no earlier line
 * that is a lone "."; its size matches pop3_crlf_size plus stuffing.
 */
#include "config.h"

#include "fuzz.h"
#include "pop3d.h"

#define LINES_MAX 200

static void
commands(const uint8_t *data, size_t size, size_t piece)
{
	struct fuzz_mem mem = { data, size, 0, piece };
	struct stream *s = fuzz_stream(&mem);
	struct buf line = BUF_INIT;
	struct pop3_cmd c;
	unsigned long long v[POP3_ARGS_MAX];
	const char *why;
	int r, k, n;

	for (k = 0; k < LINES_MAX; k++) {
		r = pop3_read_line(s, &line);
		if (r < 0)
			break;
		if (r == 1)
			continue; /* too long: skipped */
		FUZZ_ASSERT(line.len < pop3d_cfg.command_limit);
		buf_reserve(&line, 1);
		line.data[line.len] = 0;
		if (pop3_parse_line((char *)line.data, line.len, &c, &why) < 0) {
			FUZZ_ASSERT(why != NULL);
			continue;
		}
		FUZZ_ASSERT(c.name != NULL && c.arg != NULL);
		n = pop3_parse_numbers(c.arg, 0, POP3_ARGS_MAX, v, &why);
		FUZZ_ASSERT(n <= POP3_ARGS_MAX);
		while (n-- > 0)
			FUZZ_ASSERT(v[n] <= 4294967295ULL);
	}
	buf_free(&line);
	stream_free(s);
}

static void
convert(const uint8_t *data, size_t size, size_t piece, long long max_lines)
{
	struct pop3_conv cv;
	struct buf out = BUF_INIT;
	size_t off = 0, used, k, i, stuffed = 0;
	bool bol = true;

	pop3_conv_init(&cv, max_lines);
	while (off < size) {
		k = size - off < piece ? size - off : piece;
		used = pop3_conv_feed(&cv, data + off, k, &out);
		FUZZ_ASSERT(used <= k);
		off += used;
		if (used < k)
			break; /* TOP limit reached */
	}
	FUZZ_ASSERT(max_lines >= 0 || off == size);
	pop3_conv_finish(&cv, &out);

	/* Every LF has its CR; the terminator comes once, at the end. */
	FUZZ_ASSERT(out.len >= 3 && memcmp(out.data + out.len - 3, ".\r\n", 3) == 0);
	FUZZ_ASSERT(out.len == 3 || (out.len >= 5 && memcmp(out.data + out.len - 5, "\r\n", 2) == 0));
	for (i = 0; i < out.len; i++)
		if (out.data[i] == '\n')
			FUZZ_ASSERT(i > 0 && out.data[i - 1] == '\r');
	for (i = 0; i + 3 < out.len; i++) {
		bool at_line = i == 0 || out.data[i - 1] == '\n';

		FUZZ_ASSERT(!(at_line && out.data[i] == '.' && out.data[i + 1] == '\r' && out.data[i + 2] == '\n'));
	}
	if (max_lines < 0) {
		/* RETR: the size announced by LIST is the size sent, stuffing and terminator aside. */
		for (i = 0; i < size; i++) {
			if (bol && data[i] == '.')
				stuffed++;
			bol = data[i] == '\n';
		}
		FUZZ_ASSERT((long long)(out.len - 3 - stuffed - (size > 0 && data[size - 1] != '\n' ? 2 : 0)) ==
		            pop3_crlf_size(data, size));
	}
	buf_free(&out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pop3_name pn;
	char uidl[POP3_UIDL_MAX + 1];
	char *name;
	size_t i;

	fuzz_quiet();
	if (size < 1)
		return 0;
	pop3d_cfg.command_limit = (data[0] & 1) ? 64 : 512;
	commands(data + 1, size - 1, 1 + (data[0] >> 4));
	convert(data + 1, size - 1, 1 + (data[0] >> 3), (data[0] & 2) ? (long long)(data[0] >> 2) : -1);

	name = fuzz_str(data + 1, size - 1);
	if (pop3_name_parse(name, &pn) == 0) {
		FUZZ_ASSERT(pn.base_len > 0 && pn.base_len <= strlen(name));
		pop3_uidl(name, pn.base_len, uidl);
		FUZZ_ASSERT(strlen(uidl) >= 1 && strlen(uidl) <= POP3_UIDL_MAX);
		for (i = 0; uidl[i]; i++)
			FUZZ_ASSERT(uidl[i] >= 0x21 && uidl[i] <= 0x7e);
	}
	free(name);
	return 0;
}
