/*
 * postern - the administration command.  postern.c dispatches to one
 * function per subcommand; each lives in its own cli/postern_*.c file.
 * A subcommand gets argv starting at its own name (argv[0] = "conf") and
 * returns the process exit status.
 */
#ifndef POSTERN_CLI_H
#define POSTERN_CLI_H

#include "buf.h"

/* Set by "postern -c DIR" before the subcommand, or NULL. */
extern const char *cli_config_dir;

int cmd_conf(int argc, char **argv);
int cmd_map(int argc, char **argv);
int cmd_hash_password(int argc, char **argv);
int cmd_ctl(int argc, char **argv); /* start, stop, reload, status, check */
int cmd_init(int argc, char **argv);
int cmd_setup(int argc, char **argv);
int cmd_cat(int argc, char **argv);   /* postern cat [-h|-b|-e] ID */
int cmd_queue(int argc, char **argv); /* postern queue: list (or flush, as -f, -s, -i) */
int cmd_flush(int argc, char **argv); /* postern flush: retry deferred mail now */
int cmd_super(int argc, char **argv); /* postern super: delete, hold, release, requeue, repair */

/* Deferred mail due now: all of it, one site's (site) or one message (id); exit status (postern_flush.c). */
int cli_flush(const char *site, const char *id);

/* A self-signed certificate and key for host (postern_cert.c). */
int cli_make_cert(const char *host, const char *cert_path, const char *key_path, struct buf *err);

/* Load main.cf from cli_config_dir (or the default); fatal on syntax errors. */
void cli_load_config(void);

#endif
