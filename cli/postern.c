/*
 * postern - the administration command: dispatch to subcommands.
 *
 *   postern [-c DIR] [-v] COMMAND [ARGS]
 *
 * Runs as whoever calls it; it trusts its caller as much as the caller's
 * own permissions on the config and queue do, and no more.  Messages go
 * to standard error as "postern: ..." lines.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "log.h"
#include "postern.h"

const char *cli_config_dir;

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *usage;
};

static const struct command commands[] = {
	{ "start", cmd_ctl, "start [-f]" },
	{ "stop", cmd_ctl, "stop" },
	{ "reload", cmd_ctl, "reload" },
	{ "status", cmd_ctl, "status" },
	{ "check", cmd_ctl, "check [-f]" },
	{ "init", cmd_init, "init [-H hostname] [-p smtp,submission,smtps,pop3,pop3s] DIR" },
	{ "setup", cmd_setup, "setup [--replace-sendmail] [--root DIR]" },
	{ "cat", cmd_cat, "cat [-e | -h | -b | -hb] QUEUEID" },
	{ "queue", cmd_queue, "queue [-j | -f | -s site | -i queueid]" },
	{ "flush", cmd_flush, "flush [-s site | -i queueid]" },
	{ "super", cmd_super, "super [-s] [-d|-h|-H|-r queueid|ALL|-] ... [queue ...]" },
	{ "conf", cmd_conf, "conf [-c DIR] [-d | -n] [-e name=value ...] [name ...]" },
	{ "map", cmd_map, "map [-c DIR] [-a] [-f] [-q key | -d key | -s] [type:]file" },
	{ "hash-password", cmd_hash_password, "hash-password [-m yescrypt|sha512|bcrypt]  (password on stdin)" },
};

static void
usage(void)
{
	size_t i;

	fprintf(stderr, "usage: postern [-c DIR] [-v] COMMAND [ARGS]\n");
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(stderr, "       postern %s\n", commands[i].usage);
	fprintf(stderr, "       postern version\n");
	exit(2);
}

void
cli_load_config(void)
{
	struct buf err = BUF_INIT;

	if (cfg_load(cli_config_dir, &err) != 0)
		log_fatal("%s", buf_str(&err));
	buf_free(&err);
}

int
main(int argc, char **argv)
{
	size_t i;
	int ch;

	log_init(NULL, LOG_DEST_STDERR);
	/* Global options stop at the first non-option: the subcommand. */
	while ((ch = getopt(argc, argv, "+c:v")) != -1) {
		switch (ch) {
		case 'c':
			cli_config_dir = optarg;
			break;
		case 'v':
			log_set_verbose(log_verbose + 1);
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		usage();
	if (strcmp(argv[0], "version") == 0 || strcmp(argv[0], "--version") == 0) {
		printf("postern %s\n", PACKAGE_VERSION);
		return 0;
	}
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(argv[0], commands[i].name) == 0) {
			optind = 1;
			return commands[i].fn(argc, argv);
		}
	}
	fprintf(stderr, "postern: unknown command \"%s\"\n", argv[0]);
	usage();
}
