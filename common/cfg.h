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
#define CFG_LINE_MAX     65536             /* one logical line, continuations included */
#define CFG_VALUE_MAX    65536             /* one value after expansion */
#define CFG_EXPAND_DEPTH 100               /* nested $name references */
#define CFG_FILE_MAX     (4 * 1024 * 1024) /* main.cf size */
#define CFG_NAMES_MAX    10000             /* distinct names set in main.cf and overrides */

/*
 * Load DIR/main.cf (DIR may be NULL: $POSTERN_CONFIG_DIR, then the
 * compiled-in default).  A missing main.cf is not an error (defaults
 * apply); a syntax error is, and err receives "file:line: reason" lines
 * (separated by newlines, none after the last).  Returns 0 or -1.
 * Replaces any earlier configuration (reload), -o overrides included;
 * after a failure the earlier configuration stays in force.
 */
int cfg_load(const char *dir, struct buf *err);
/*
 * Load main.cf's text as read by someone else (the master hands its
 * children the exact text it checked); errors name DIR/main.cf.
 */
int cfg_load_text(const char *dir, const char *text, size_t len, struct buf *err);
/* Parse main.cf text (tests; "postern conf -d" loads ""); same rules, config_directory keeps its default. */
int cfg_load_string(const char *text, const char *origin, struct buf *err);
/* The directory main.cf was read from. */
const char *cfg_config_dir(void);
/* The directory cfg_load(dir) reads: dir, else $POSTERN_CONFIG_DIR (ignored when set-id), else the default. */
const char *cfg_resolve_dir(const char *dir);

/* Set a value with an origin such as "master.cf:12" or "-o". */
void cfg_set(const char *name, const char *value, const char *origin);
/* Parse "name=value" (a -o argument); returns -1 on a malformed argument. */
int cfg_set_option(const char *arg, const char *origin, struct buf *err);
/* Override a default (myhostname from the system, and so on); kept across loads. */
void cfg_set_default(enum param_id id, const char *value);

/* Typed access to declared parameters; fatal when the value is invalid. */
const char *cfg_str(enum param_id id);
long long cfg_int(enum param_id id);
bool cfg_bool(enum param_id id);
/* Time parameters in seconds (units s, m, h, d, w; the default unit applies to bare numbers). */
long long cfg_time(enum param_id id);

/*
 * Strings returned by cfg_str(), cfg_lookup() and cfg_raw() stay valid
 * until the next successful cfg_load() or cfg_load_string(), even when
 * cfg_set() changes the value in between (a failed load keeps the old
 * configuration and its strings).
 *
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
/*
 * Tell cfg_check() about text that may refer to main.cf names without
 * being in main.cf itself (master.cf -o values), so that the names it
 * mentions are not reported as unknown.  Forgotten by the next load.
 */
void cfg_note_references(const char *text);

/*
 * Expand $name references in text against the store.  out's contents are
 * replaced by the result; returns 0, or -1 with the reason in err (a
 * loop, too deep nesting, a result over CFG_VALUE_MAX, bad $ syntax).
 */
int cfg_expand(const char *text, struct buf *out, struct buf *err);

/* Visit every name set in main.cf or by overrides, in the order each was first set. */
void cfg_walk_set(void (*fn)(const char *name, const char *raw, const char *origin, void *arg), void *arg);

/* Parse helpers shared with master.cf and the CLI; 0 or -1. */
int cfg_parse_bool(const char *s, bool *out);
/* A number with an optional unit s, m, h, d or w (default_unit 0 means s); -1 on junk or overflow. */
int cfg_parse_time(const char *s, char default_unit, long long *seconds);
/* True for a parameter name: one or more of [A-Za-z0-9_]. */
bool cfg_valid_name(const char *s, size_t len);

/*
 * Read a whole file of at most max bytes into out (which may then hold
 * NUL bytes; the caller decides).  Returns 0, 1 when the file does not
 * exist, or -1 with "path: reason" in err.
 */
int cfg_read_file(const char *path, size_t max, struct buf *out, struct buf *err);

/*
 * Logical lines of main.cf and master.cf text: blank lines and lines whose
 * first non-blank character is '#' are skipped; a line starting with white
 * space continues the previous logical line (also across skipped lines);
 * the pieces are joined with one space and trimmed.
 */
struct cfg_lines {
	const char *text;
	size_t len;
	size_t pos;
	size_t max;  /* longest physical or logical line */
	int lineno;  /* physical lines consumed */
	bool broken; /* the last logical line failed: skip its continuations */
};
void cfg_lines_init(struct cfg_lines *r, const char *text, size_t len, size_t max);
/*
 * The next logical line into line, with *first its first physical line
 * number.  Returns 1, 0 at the end, or -1 with the reason in why and
 * *first the offending line (NUL byte, over-long line, a continuation
 * with nothing to continue); call again to go on after the bad line.
 */
int cfg_lines_next(struct cfg_lines *r, struct buf *line, int *first, struct buf *why);

#endif
