/*
 * fuzz_mastercf - the master.cf parser (common/mastercf.c), which the
 * master (root) runs at start and at every reload.
 *
 * Properties: a parse either fails with a reason and an empty result or
 * gives services that keep the parser's promises (a command, argv ending
 * in NULL, at most MCF_MAX_SERVICES, each found again by name and type,
 * each the same as itself).
 */
#include "config.h"

#include "fuzz.h"
#include "mastercf.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf err = BUF_INIT;
	struct mcf m;
	size_t i, j;
	char *text;

	fuzz_quiet();
	if (memchr(data, 0, size) != NULL)
		return 0; /* mcf_load reads a file and refuses NUL itself; the string API cannot carry one */
	text = fuzz_str(data, size);
	if (mcf_load_string(text, "master.cf", &m, &err) == 0) {
		FUZZ_ASSERT(m.nservices <= MCF_MAX_SERVICES);
		for (i = 0; i < m.nservices; i++) {
			const struct mcf_service *sv = &m.services[i];

			FUZZ_ASSERT(sv->name && *sv->name && sv->command && *sv->command);
			FUZZ_ASSERT(sv->argc >= 1 && sv->argc <= MCF_MAX_ARGS && sv->argv[sv->argc] == NULL);
			for (j = 0; j < sv->argc; j++)
				FUZZ_ASSERT(sv->argv[j] != NULL);
			for (j = 0; j < sv->noverrides; j++)
				FUZZ_ASSERT(sv->overrides[j].name && sv->overrides[j].value);
			FUZZ_ASSERT(sv->maxproc >= -1 && sv->wakeup >= 0);
			FUZZ_ASSERT(mcf_find(&m, sv->name, sv->type) != NULL);
			FUZZ_ASSERT(mcf_same(sv, sv));
			FUZZ_ASSERT(mcf_type_name(sv->type) != NULL);
		}
		mcf_free(&m);
	} else {
		FUZZ_ASSERT(err.len > 0);
		FUZZ_ASSERT(m.nservices == 0);
		mcf_free(&m);
	}
	free(text);
	buf_free(&err);
	return 0;
}
