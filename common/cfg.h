/*
 * cfg - main.cf: the parameter store, $name expansion and typed access.
 *
 * One process has one configuration.  cfg_load() reads DIR/main.cf into
 * the store (raw values with the file:line they came from); -o overrides
 * from master.cf or the command line are layered on top; typed accessors
 * expand $name, ${name}, $(name), ${name?text}, ${name:text} and $$ on
 * demand (with loop detection) and check the value against the bounds in
 * the parameter table (cfg_param.def).  Every parameter a program uses is
 * declared there, once.
 *
 * A value out of bounds is a configuration error: cfg_check() reports all
 * of them (with file:line) for the master and "postern check"; the typed
 * accessors treat one as fatal, naming the parameter and where it was set.
 */
#ifndef POSTERN_CFG_H
#define POSTERN_CFG_H

#include <stdbool.h>
#include <stdio.h>

#include "buf.h"
#include "cfg_param.h"

/* Maximum sizes accepted from main.cf (hostile input rules apply). */
#define CFG_LINE_MAX     65536 /* one logical line, continuations included */
#define CFG_VALUE_MAX    65536 /* one value after expansion */
#define CFG_EXPAND_DEPTH 100   /* nested $name references */

/*
 * Load DIR/main.cf (DIR may be NULL: $POSTERN_CONFIG_DIR, then the
 * compiled-in default).  A missing main.cf is not an error (defaults
 * apply); a syntax error is, and err receives "file:line: reason" lines.
 * Returns 0 or -1.  Replaces any earlier configuration (reload).
 */
int cfg_load(const char *dir, struct buf *err);
/* Parse main.cf text (for tests and "postern conf -e"); same rules. */
int cfg_load_string(const char *text, const char *origin, struct buf *err);
/* The directory main.cf was read from. */
const char *cfg_config_dir(void);

/* Set a value with an origin such as "master.cf:12" or "-o". */
void cfg_set(const char *name, const char *value, const char *origin);
/* Parse "name=value" (a -o argument); returns -1 on a malformed argument. */
int cfg_set_option(const char *arg, const char *origin, struct buf *err);
/* Override a computed default (myhostname from the system, and so on). */
void cfg_set_default(enum param_id id, const char *value);

/* Typed access to declared parameters; fatal when the value is invalid. */
const char *cfg_str(enum param_id id);
long long cfg_int(enum param_id id);
bool cfg_bool(enum param_id id);
/* Time parameters in seconds (units s, m, h, d, w; the default unit applies to bare numbers). */
long long cfg_time(enum param_id id);

/*
 * Any name, declared or not (transport-specific names such as
 * "relay_destination_concurrency_limit"): the expanded value, or NULL
 * when the name is neither set nor declared.  The returned string stays
 * valid until the next cfg_load().
 */
const char *cfg_lookup(const char *name);
/* The raw (unexpanded) value and where it was set; NULL origin = default. */
const char *cfg_raw(const char *name, const char **origin);
/* True when the name was set in main.cf or by an override. */
bool cfg_is_set(const char *name);

/*
 * Validate every declared parameter (expansion and bounds) and warn about
 * names in main.cf that no program knows (unless some value refers to
 * them with $name).  Errors go to err, one per line, and are counted.
 */
int cfg_check(struct buf *err);

/* Expand $name references in text against the store; -1 on a loop or overflow. */
int cfg_expand(const char *text, struct buf *out, struct buf *err);

/* Visit every name set in main.cf or by overrides, in file order. */
void cfg_walk_set(void (*fn)(const char *name, const char *raw, const char *origin, void *arg), void *arg);

/* Parse helpers shared with master.cf and the CLI. */
int cfg_parse_bool(const char *s, bool *out);
int cfg_parse_time(const char *s, char default_unit, long long *seconds);

#endif
