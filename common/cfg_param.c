/*
 * cfg_param - the parameter table, built from cfg_param.def.
 *
 * Read by cfg.c (defaults, types, bounds), "postern conf" (-d, -D) and,
 * through "postern conf -D", the man page check.  The rows are grouped by
 * topic rather than sorted, so name lookups go through an index sorted
 * once on first use.  Nothing here is input: the table is compiled in.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "cfg_param.h"
#include "log.h"

#define PARAM(id, name, type, def, min, max, unit, doc) [P_##id] = { name, type, def, min, max, unit, doc },
const struct cfg_param cfg_params[P_COUNT] = {
#include "cfg_param.def"
};
#undef PARAM

/*
 * How each default is spelled in cfg_param.def: a string literal, or a
 * macro that configure or the Makefile fills in (DEF_CONFIG_DIR, ...).
 */
#define PARAM(id, name, type, def, min, max, unit, doc) [P_##id] = #def,
static const char *const param_spelling[P_COUNT] = {
#include "cfg_param.def"
};
#undef PARAM

static unsigned short param_index[P_COUNT];
static int param_index_ready;

/* index_cmp - order index entries by parameter name */
static int
index_cmp(const void *a, const void *b)
{
	return strcmp(cfg_params[*(const unsigned short *)a].name, cfg_params[*(const unsigned short *)b].name);
}

/* index_build - sort the index once; a duplicate row is a build mistake */
static void
index_build(void)
{
	size_t i;

	for (i = 0; i < P_COUNT; i++)
		param_index[i] = (unsigned short)i;
	qsort(param_index, P_COUNT, sizeof(param_index[0]), index_cmp);
	for (i = 1; i < P_COUNT; i++)
		if (strcmp(cfg_params[param_index[i - 1]].name, cfg_params[param_index[i]].name) == 0)
			log_panic("cfg_param.def: parameter %s is declared twice", cfg_params[param_index[i]].name);
	param_index_ready = 1;
}

const struct cfg_param *
cfg_param_find(const char *name)
{
	size_t lo = 0, hi = P_COUNT, mid;
	int c;

	if (!param_index_ready)
		index_build();
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		c = strcmp(name, cfg_params[param_index[mid]].name);
		if (c == 0)
			return &cfg_params[param_index[mid]];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

enum param_id
cfg_param_id(const struct cfg_param *p)
{
	if (p < cfg_params || p >= cfg_params + P_COUNT)
		log_panic("cfg_param_id: pointer outside the table");
	return (enum param_id)(p - cfg_params);
}

const char *
cfg_type_name(enum cfg_type t)
{
	switch (t) {
	case CFG_STR:
		return "str";
	case CFG_RAW:
		return "raw";
	case CFG_INT:
		return "int";
	case CFG_BOOL:
		return "bool";
	case CFG_TIME:
		return "time";
	}
	return "?";
}

enum cfg_default_kind
cfg_param_default_kind(enum param_id id)
{
	if ((unsigned)id >= P_COUNT)
		log_panic("cfg_param_default_kind: bad id %d", (int)id);
	/* cfg.c works these out at run time; the table holds "". */
	if (id == P_MYHOSTNAME || id == P_MYDOMAIN)
		return CFG_DEF_COMPUTED;
	return param_spelling[id][0] == '"' ? CFG_DEF_LITERAL : CFG_DEF_BUILD;
}
