/*
 * mastercf - master.cf parser: Postfix's eight columns.
 *
 *   service type private unpriv chroot wakeup maxproc command [args...]
 *
 * Lines starting with white space continue the previous line; '#' starts
 * a comment line; "-" in a column means its default.  "-o name=value"
 * arguments become per-service parameter overrides (the value may contain
 * spaces when written as "-o { name = value with spaces }").  Errors name
 * file:line.  The parser only checks syntax and column values; the master
 * decides what to do with the result.
 */
#ifndef POSTERN_MASTERCF_H
#define POSTERN_MASTERCF_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

#define MCF_LINE_MAX     65536
#define MCF_MAX_SERVICES 1000
#define MCF_MAX_ARGS     256 /* argv entries (command included); also -o options */
#define MCF_FILE_MAX     (4 * 1024 * 1024)

enum mcf_type {
	MCF_INET, /* [host:]port */
	MCF_UNIX, /* $queue_directory/{private,public}/NAME */
	MCF_FIFO, /* accepted for compatibility; run as unix */
	MCF_PASS, /* receives connections from another service */
};

struct mcf_override {
	char *name;
	char *value;
};

struct mcf_service {
	char *name; /* column 1: "smtp", "127.0.0.1:2525", "cleanup" */
	enum mcf_type type;
	bool private_;       /* column 3, default y (n for inet, which cannot be private) */
	bool unpriv;         /* column 4, default y */
	bool chroot;         /* column 5, default n */
	int wakeup;          /* column 6 in seconds; 0 = never */
	bool wakeup_if_used; /* "60?": only after the service was used once */
	int maxproc;         /* column 7; -1 = "-" (default_process_limit); 0 = no limit */
	char *command;       /* column 8: program name in daemon_directory, or an absolute path */
	char **argv;         /* command and its arguments, -o pairs removed; argv[argc] = NULL */
	size_t argc;
	struct mcf_override *overrides;
	size_t noverrides;
	char *file; /* where the entry was read */
	int line;
};

struct mcf {
	struct mcf_service *services;
	size_t nservices;
};

/*
 * Parse a file; returns 0, or -1 with "file:line: reason" lines in err
 * (out is then empty).  out need not be initialised; mcf_free() it.
 */
int mcf_load(const char *path, struct mcf *out, struct buf *err);
/* Same, from text (tests); origin names the source in errors. */
int mcf_load_string(const char *text, const char *origin, struct mcf *out, struct buf *err);
void mcf_free(struct mcf *m);
/* The entry named name with the given type, or NULL. */
const struct mcf_service *mcf_find(const struct mcf *m, const char *name, enum mcf_type type);
/* True when two entries define the same service the same way (reload). */
bool mcf_same(const struct mcf_service *a, const struct mcf_service *b);
const char *mcf_type_name(enum mcf_type t);

#endif
