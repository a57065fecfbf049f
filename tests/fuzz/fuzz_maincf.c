/*
 * fuzz_maincf - the main.cf parser and $name expansion (common/cfg*.c).
 * main.cf is written by an admin, but also by scripts and "postern conf
 * -e" from values that may come from anywhere; postern check, the master
 * and every daemon read it.
 *
 * Properties: a load either fails with a reason or installs a store in
 * which every set name expands (or fails to, with a reason) without
 * crashing or looping; a failed load keeps the previous configuration.
 */
#include "config.h"

#include "cfg.h"
#include "fuzz.h"

static void
expand_one(const char *name, const char *raw, const char *origin, void *arg)
{
	struct buf out = BUF_INIT, err = BUF_INIT;

	(void)origin, (void)arg;
	FUZZ_ASSERT(cfg_valid_name(name, strlen(name)));
	/* cfg_lookup is fatal for a value that does not expand (a configuration error): only ask for good ones. */
	if (cfg_expand(raw, &out, &err) < 0)
		FUZZ_ASSERT(err.len > 0);
	else
		FUZZ_ASSERT(cfg_lookup(name) != NULL);
	buf_free(&out);
	buf_free(&err);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf err = BUF_INIT;
	long long secs;
	bool b;
	char *text = fuzz_str(data, size);

	fuzz_quiet();
	/* A known good store first, so a failed load has something to keep. */
	FUZZ_ASSERT(cfg_load_string("myhostname = keep.example\n", "fuzz", &err) == 0);
	buf_reset(&err);
	if (cfg_load_text("/nonexistent", text, size, &err) == 0) {
		cfg_walk_set(expand_one, NULL);
		buf_reset(&err);
		(void)cfg_check(&err);
	} else {
		FUZZ_ASSERT(err.len > 0);
		FUZZ_ASSERT(strcmp(cfg_lookup("myhostname"), "keep.example") == 0);
	}
	(void)cfg_parse_time(text, 's', &secs);
	(void)cfg_parse_bool(text, &b);
	free(text);
	buf_free(&err);
	return 0;
}
