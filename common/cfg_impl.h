/*
 * cfg_impl - what cfg.c, cfg_expand.c and cfg_text.c share: the store of
 * main.cf values.  Internal to the cfg module; other code uses cfg.h.
 */
#ifndef POSTERN_CFG_IMPL_H
#define POSTERN_CFG_IMPL_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "cfg.h"
#include "log.h"

#define CFG_BUCKETS 1024

struct cfg_entry {
	char *name;
	const struct cfg_param *param; /* NULL: no program declares the name */
	char *raw;                     /* as set, or NULL: the default applies */
	char *origin;                  /* "file:line", "-o", ...; with raw */
	char *cooked;                  /* cached expansion, or NULL */
	char *computed;                /* cached computed default (mydomain) */
	bool referenced;               /* cfg_check: some value mentions $name */
	struct cfg_entry *next;        /* hash chain */
};

struct cfg_store {
	struct cfg_entry *bucket[CFG_BUCKETS];
	struct cfg_entry *byid[P_COUNT]; /* the entries of declared names */
	struct cfg_entry **order;        /* entries set, in the order first set */
	size_t norder, ordercap;
	size_t nundeclared; /* entries for names nobody declares */
	size_t ncached;     /* cooked/computed strings held (skip needless flushes) */
	char *dir;          /* where main.cf was read, or NULL */
	char **grave;       /* strings handed out before, freed with the store */
	size_t ngrave, gravecap;
	char **refs; /* cfg_note_references() texts */
	size_t nrefs, refscap;
};

/* cfg.c: the store. */
struct cfg_store *cfg_store_current(void);
struct cfg_entry *cfg_store_find(struct cfg_store *st, const char *name, size_t n);
/* Keep a string someone may still point to until the store is freed. */
void cfg_store_bury(struct cfg_store *st, char *s);
/* Forget every cached expansion (any value may depend on any other). */
void cfg_store_flush(struct cfg_store *st);
bool cfg_name_char(int c);

/* cfg_text.c */
void cfg_err_line(struct buf *err, const char *fmt, ...) LOG_PRINTF(2, 3);
bool cfg_blank(int c);

/* cfg_expand.c: values of entries. */
/* The expanded value (cached), or NULL with the reason in why. */
const char *cfg_entry_value(struct cfg_store *st, struct cfg_entry *e, struct buf *why);
/* A declared, unset entry's default as written (computed ones computed). */
const char *cfg_entry_default(struct cfg_store *st, struct cfg_entry *e);
/* cfg_check: mark the entries text refers to; warn (naming origin and name) about undefined ones. */
void cfg_scan_refs(struct cfg_store *st, const char *text, const char *origin, const char *name);

#endif
