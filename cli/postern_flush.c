/*
 * postern_flush - "postern flush" (also "postern queue -f", "-s site",
 * "-i ID"): ask qmgr to try deferred mail now, like postqueue -f, -s, -i.
 *
 *   flush          the trigger byte F on public/qmgr (doc/ipc.md 8.2):
 *                  qmgr makes every file in deferred/ due and scans.
 *   flush -i ID    deferred/H/ID becomes due (its mtime, the next attempt
 *                  time, is set to now), then the trigger D.
 *   flush -s SITE  every deferred message with a recipient still to be
 *                  delivered in domain SITE becomes due, then D.
 *
 * No reply is awaited.  The plain flush needs the right to connect to
 * public/qmgr (root, the mail_owner, or a member of setgid_group); -i and
 * -s change files in the queue and so need root or the mail_owner.  IDs
 * are checked with qid_valid() before they become paths; queue files are
 * read with qfile_read(), which trusts nothing in them.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "cfg.h"
#include "postern.h"
#include "proto.h"
#include "qfile.h"
#include "qid.h"
#include "str.h"
#include "trigger.h"

static const char hash_chars[] = "0123456789ABCDEFGHIJKLMNOPQRSTUV";

/* make_due - the deferred file at dfd/name is to be tried now; 0, or -1 with errno */
static int
make_due(int dfd, const char *name)
{
	struct timespec ts[2] = { { 0, UTIME_OMIT }, { 0, UTIME_NOW } };

	return utimensat(dfd, name, ts, AT_SYMLINK_NOFOLLOW);
}

/* for_site - true when a recipient still to be delivered is in domain site */
static bool
for_site(int fd, const char *site)
{
	static const struct qfile_read_limits lim = { 2000000, 100000 };
	struct qfile_env env;
	struct buf err = BUF_INIT;
	const char *at;
	bool hit = false;
	size_t i;

	if (qfile_read(fd, &env, &lim, &err) == 0) {
		for (i = 0; i < env.nrcpts && !hit; i++)
			hit = !env.rcpts[i].done && (at = strrchr(env.rcpts[i].addr, '@')) != NULL &&
			      str_casecmp(at + 1, site) == 0;
		qfile_env_free(&env);
	}
	buf_free(&err);
	return hit;
}

/* flush_site - make the deferred mail for site due; the count, or -1 */
static long
flush_site(const char *site)
{
	struct dirent *de;
	char dir[32];
	long n = 0;
	DIR *d;
	int fd;
	const char *h;

	for (h = hash_chars; *h; h++) {
		snprintf(dir, sizeof(dir), "%s/%c", QUEUE_DEFERRED, *h);
		if ((d = opendir(dir)) == NULL) {
			if (errno == ENOENT)
				continue;
			fprintf(
			    stderr, "postern: flush: %s/%s: %s\n", cfg_str(P_QUEUE_DIRECTORY), dir, strerror(errno));
			return -1;
		}
		while ((de = readdir(d)) != NULL) {
			if (!qid_valid(de->d_name))
				continue;
			fd = openat(dirfd(d), de->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
			if (fd < 0)
				continue; /* gone to active/ meanwhile */
			if (for_site(fd, site) && make_due(dirfd(d), de->d_name) == 0)
				n++;
			close(fd);
		}
		closedir(d);
	}
	return n;
}

/* flush_id - make one deferred message due; 0 or 1 (reported) */
static int
flush_id(const char *id)
{
	char path[64];

	if (!qid_valid(id)) {
		fprintf(stderr, "postern: flush: \"%s\" is not a queue ID\n", id);
		return 1;
	}
	if (qid_path(path, sizeof(path), QUEUE_DEFERRED, id) < 0)
		return 1;
	if (make_due(AT_FDCWD, path) == 0)
		return 0;
	if (errno != ENOENT) {
		fprintf(stderr, "postern: flush: %s/%s: %s\n", cfg_str(P_QUEUE_DIRECTORY), path, strerror(errno));
		return 1;
	}
	/* Not deferred: say where it is, or that it is not there. */
	if (qid_path(path, sizeof(path), QUEUE_HOLD, id) == 0 && access(path, F_OK) == 0) {
		fprintf(stderr, "postern: flush: %s is on hold; release it with \"postern super -H %s\"\n", id, id);
		return 1;
	}
	if ((qid_path(path, sizeof(path), QUEUE_ACTIVE, id) == 0 && access(path, F_OK) == 0) ||
	    (qid_path(path, sizeof(path), QUEUE_INCOMING, id) == 0 && access(path, F_OK) == 0)) {
		printf("postern: flush: %s is being delivered already\n", id);
		return 0;
	}
	fprintf(stderr, "postern: flush: %s: no such message in the deferred queue\n", id);
	return 1;
}

int
cli_flush(const char *site, const char *id)
{
	struct buf err = BUF_INIT;
	const char *dir;
	long n;

	cli_load_config();
	dir = cfg_str(P_QUEUE_DIRECTORY);
	if (chdir(dir) < 0) {
		fprintf(stderr, "postern: flush: %s: %s\n", dir, strerror(errno));
		return 1;
	}
	if (id != NULL && flush_id(id) != 0)
		return 1;
	if (site != NULL) {
		if ((n = flush_site(site)) < 0)
			return 1;
		printf("postern: flush: %ld deferred message%s for %s\n", n, n == 1 ? "" : "s", site);
	}
	if (trigger_send(SVC_PUBLIC_DIR "/" SVC_QMGR, id || site ? TRIGGER_SCAN_DEFERRED : TRIGGER_FLUSH, &err) < 0) {
		fprintf(stderr, "postern: flush: qmgr is not running (%s)\n", buf_str(&err));
		buf_free(&err);
		return 1;
	}
	buf_free(&err);
	return 0;
}

int
cmd_flush(int argc, char **argv)
{
	const char *site = NULL, *id = NULL;
	int ch;

	while ((ch = getopt(argc, argv, "c:i:s:")) != -1) {
		switch (ch) {
		case 'c':
			cli_config_dir = optarg;
			break;
		case 'i':
			id = optarg;
			break;
		case 's':
			site = optarg;
			break;
		default:
			goto usage;
		}
	}
	if (argc != optind || (site && id))
		goto usage;
	return cli_flush(site, id);
usage:
	fprintf(stderr, "usage: postern flush [-c DIR] [-s site | -i queueid]\n");
	return 2;
}
