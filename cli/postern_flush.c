/*
 * postern_flush - "postern flush": ask qmgr to try every deferred message
 * now (the trigger byte F on public/qmgr, doc/ipc.md 8.2).  Like
 * "postqueue -f": no reply is awaited; qmgr makes every file in deferred/
 * due and scans.  Needs the right to connect to public/qmgr (root, the
 * mail_owner, or a member of setgid_group).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "cfg.h"
#include "postern.h"
#include "proto.h"
#include "trigger.h"

int
cmd_flush(int argc, char **argv)
{
	struct buf err = BUF_INIT;
	const char *dir;
	int ch;

	while ((ch = getopt(argc, argv, "c:")) != -1) {
		switch (ch) {
		case 'c':
			cli_config_dir = optarg;
			break;
		default:
			goto usage;
		}
	}
	if (argc != optind)
		goto usage;
	cli_load_config();
	dir = cfg_str(P_QUEUE_DIRECTORY);
	if (chdir(dir) < 0) {
		fprintf(stderr, "postern: flush: %s: %s\n", dir, strerror(errno));
		return 1;
	}
	if (trigger_send(SVC_PUBLIC_DIR "/" SVC_QMGR, TRIGGER_FLUSH, &err) < 0) {
		fprintf(stderr, "postern: flush: qmgr is not running (%s)\n", buf_str(&err));
		buf_free(&err);
		return 1;
	}
	buf_free(&err);
	return 0;
usage:
	fprintf(stderr, "usage: postern flush [-c DIR]\n");
	return 2;
}
