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
/* The row's index (its enum param_id). */
enum param_id cfg_param_id(const struct cfg_param *p);
/* "str", "raw", "int", "bool" or "time". */
const char *cfg_type_name(enum cfg_type t);

/* Where a row's default comes from ("postern conf -D", the man page check). */
enum cfg_default_kind {
	CFG_DEF_LITERAL,  /* the text in cfg_param.def */
	CFG_DEF_BUILD,    /* a path or identity chosen by configure */
	CFG_DEF_COMPUTED, /* worked out at run time (myhostname, mydomain) */
};
enum cfg_default_kind cfg_param_default_kind(enum param_id id);

#endif
