/*
 * fuzz_alias - the alias value and .forward/:include: parser
 * (local/local_alias.c).  Alias tables are the admin's, but .forward and
 * :include: files are written by users, and local runs as root until it
 * switches to the recipient: what the parser hands on decides whether a
 * command or a file path is used.
 *
 * Input: one option byte (.forward syntax; the destination limit), then
 * the text.  Properties: every destination has a type and a value within
 * LOCAL_DEST_LEN_MAX and without NUL or line break; files and includes
 * are absolute paths; commands are not empty; never more than max.
 */
#include "config.h"

#include "fuzz.h"
#include "local.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct local_dests d;
	struct buf err = BUF_INIT;
	size_t i, max;
	char *text;

	fuzz_quiet();
	if (size < 1)
		return 0;
	max = 1 + (data[0] >> 1);
	text = fuzz_str(data + 1, size - 1);
	if (local_alias_parse(text, size - 1, data[0] & 1, max, &d, &err) == 0) {
		FUZZ_ASSERT(d.n <= max);
		for (i = 0; i < d.n; i++) {
			const char *v = d.v[i].value;

			FUZZ_ASSERT(v != NULL && *v);
			FUZZ_ASSERT(strlen(v) <= LOCAL_DEST_LEN_MAX);
			FUZZ_ASSERT(strchr(v, '\n') == NULL);
			FUZZ_ASSERT(local_dest_type_name(d.v[i].type) != NULL);
			if (d.v[i].type == LOCAL_DEST_FILE || d.v[i].type == LOCAL_DEST_INCLUDE)
				FUZZ_ASSERT(v[0] == '/');
		}
		local_dests_free(&d);
	} else {
		FUZZ_ASSERT(err.len > 0);
		FUZZ_ASSERT(d.n == 0);
	}
	free(text);
	buf_free(&err);
	return 0;
}
