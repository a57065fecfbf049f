/*
 * cfg_param - the one table of main.cf parameters.
 *
 * cfg_param.def holds one row per parameter; this header turns the rows
 * into an enum (P_<NAME>) and declares the table that cfg.c, "postern conf"
 * and the man page check read.  Add a parameter by adding a row there.
 */
#ifndef POSTERN_CFG_PARAM_H
#define POSTERN_CFG_PARAM_H

#include <stddef.h>

enum cfg_type {
	CFG_STR,  /* text, $name expanded */
	CFG_RAW,  /* text, no expansion (expanded later by its user) */
	CFG_INT,  /* integer in [min, max] */
	CFG_BOOL, /* yes or no */
	CFG_TIME, /* number + optional unit s/m/h/d/w, in seconds in [min, max] */
};

struct cfg_param {
	const char *name;
	enum cfg_type type;
	const char *def; /* default, as it would be written in main.cf */
	long long min;   /* bounds for INT and TIME (seconds) */
	long long max;
	char unit;       /* TIME: unit of a bare number ('s', 'm', 'h', 'd', 'w') */
	const char *doc; /* one line */
};

#define PARAM(id, name, type, def, min, max, unit, doc) P_##id,
enum param_id {
#include "cfg_param.def"
	P_COUNT
};
#undef PARAM

extern const struct cfg_param cfg_params[P_COUNT];

/* The row for a name, or NULL when no program declares it. */
const struct cfg_param *cfg_param_find(const char *name);

#endif
