/*
 * pickup - move locally submitted mail from maildrop/ to cleanup.
 *
 * postdrop writes maildrop/ID as the submitting user; pickup (mail_owner)
 * reads it as untrusted input: the file must be a regular file with one
 * link, opened without following links, complete (mode 0744) and a valid
 * queue file in every record.  The submitter is the file's owner, not
 * anything the file says.  A sender other than the submitter's own
 * address gets an X-Authentication-Warning header, as sendmail and
 * Postfix do.  The message goes to cleanup like any other (one
 * connection per message); the maildrop file is removed only after
 * cleanup has committed its copy.  A file that is not valid (a file with
 * the complete mode that ends early included), or has been incomplete or
 * unreadable for an hour, is moved to corrupt/ with a log line.
 *
 * Woken by postdrop (one byte on public/pickup) and by the master every
 * wakeup interval (master.cf: "pickup unix n - n 60 1 pickup").
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cfg.h"
#include "cleanup_client.h"
#include "flow.h"
#include "log.h"
#include "maildrop.h"
#include "qfile.h"
#include "qid.h"
#include "server.h"
#include "str.h"
#include "xalloc.h"

#define STALE_SECONDS 3600  /* an incomplete maildrop file older than this is debris */
#define SCAN_MAX      10000 /* files handled per wakeup; the rest at the next one */

static uid_t trusted_uid;

/* to_corrupt - keep a bad file for the admin, under a valid queue ID */
static void
to_corrupt(const char *name, const char *why)
{
	char id[QID_LEN + 1], path[64], from[300];

	if (qid_valid(name))
		snprintf(id, sizeof(id), "%s", name);
	else
		qid_new(id);
	snprintf(path, sizeof(path), "%s/%s", QUEUE_CORRUPT, id);
	snprintf(from, sizeof(from), "%s/%s", QUEUE_MAILDROP, name);
	if (rename(from, path) < 0) {
		log_warn("maildrop/%s: %s; cannot move it to %s: %m", name, why, path);
		return;
	}
	log_warn("maildrop/%s: %s; moved to %s", name, why, path);
}

/* owner_name - the submitter's login name, or "uid N" */
static void
owner_name(uid_t uid, char *out, size_t len)
{
	struct passwd *pw = getpwuid(uid);

	if (pw != NULL)
		snprintf(out, len, "%s", pw->pw_name);
	else
		snprintf(out, len, "%lu", (unsigned long)uid);
}

/* warning_header - the sender is not the submitter's own address */
static bool
needs_warning(uid_t uid, const char *user, const char *sender)
{
	const char *at;
	size_t n;

	if (uid == 0 || uid == trusted_uid || *sender == 0)
		return false;
	if (str_casecmp(sender, user) == 0)
		return false;
	n = strlen(user);
	at = sender + n;
	return !(str_ncasecmp(sender, user, n) == 0 && *at == '@' && str_casecmp(at + 1, cfg_str(P_MYORIGIN)) == 0);
}

/* pass_on - one maildrop file to cleanup; 0 done (file removed), 1 try later */
static int
pass_on(const char *name, int fd, const struct stat *st)
{
	static const struct qfile_read_limits lim = { MAILDROP_RCPT_MAX, 64 };
	struct cleanup_rcpt *rcpts = NULL;
	struct cleanup_client cc;
	struct cleanup_result res;
	struct cleanup_env env;
	struct qfile_env qe;
	struct buf err = BUF_INIT, chunk = BUF_INIT;
	char user[64], qid[QID_LEN + 1], date[64];
	time_t now = time(NULL);
	struct tm tm;
	off_t pos;
	size_t i;
	int r, rc = 1;

	r = qfile_read_mode(fd, QF_MODE_MAILDROP, &qe, &lim, &err);
	/* postdrop sets the complete mode only after the last record: a short file with it is broken. */
	if (r == 1 && (st->st_mode & 07777) == QF_MODE_MAILDROP) {
		to_corrupt(name, buf_str(&err));
		buf_free(&err);
		return 0;
	}
	if (r == 1) {
		if (time(NULL) - st->st_mtime > STALE_SECONDS)
			to_corrupt(name, "incomplete for over an hour");
		buf_free(&err);
		return 1;
	}
	if (r < 0) {
		to_corrupt(name, buf_str(&err));
		buf_free(&err);
		return 0;
	}
	owner_name(st->st_uid, user, sizeof(user));
	memset(&env, 0, sizeof(env));
	qid_new(qid);
	env.queue_id = qid;
	env.sender = qe.sender;
	env.flags = CLEANUP_FLAG_SUBMISSION;
	env.client_name = "localhost";
	env.client_addr = "127.0.0.1";
	env.protocol = "local";
	env.body = qfile_env_attr(&qe, "body");
	env.envid = qfile_env_attr(&qe, "envid");
	env.ret = qfile_env_attr(&qe, "ret");
	rcpts = xcalloc(qe.nrcpts ? qe.nrcpts : 1, sizeof(*rcpts));
	for (i = 0; i < qe.nrcpts; i++) {
		long long n = 0;
		const char *notify = qfile_env_attr(&qe, "notify");

		rcpts[i].addr = qe.rcpts[i].addr;
		if (notify && str_to_ll(notify, 0, 0xff, &n, NULL) == 0)
			rcpts[i].notify = (int)n;
	}
	env.rcpts = rcpts;
	env.nrcpts = qe.nrcpts;
	buf_reset(&err);
	/* The in-flow regulator: while qmgr is far behind, local submissions wait too (flow.h). */
	(void)flow_wait((int)cfg_time(P_IN_FLOW_DELAY) * 1000);
	if (cleanup_open(&cc, &env, (int)cfg_time(P_IPC_TIMEOUT), &err) < 0) {
		log_warn("maildrop/%s: cleanup: %s (will retry)", name, buf_str(&err));
		goto out;
	}
	/* Like Postfix: "Received: by host (name, from userid N) id QUEUEID; date" */
	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	buf_printf(&chunk, "Received: by %s (%s, from userid %lu)\n\tid %s; %s\n", cfg_str(P_MYHOSTNAME),
	    cfg_str(P_MAIL_NAME), (unsigned long)st->st_uid, qid, date);
	cleanup_write(&cc, chunk.data, chunk.len);
	buf_reset(&chunk);
	if (needs_warning(st->st_uid, user, qe.sender)) {
		buf_printf(&chunk, "X-Authentication-Warning: %s: %s set sender to %s using -f\n",
		    cfg_str(P_MYHOSTNAME), user, qe.sender);
		cleanup_write(&cc, chunk.data, chunk.len);
	}
	for (pos = qe.content_offset; (r = qfile_content_next(fd, &pos, &chunk, &err)) == 1;)
		if (cleanup_write(&cc, chunk.data, chunk.len) < 0)
			break;
	if (r < 0) {
		cleanup_abort(&cc);
		to_corrupt(name, buf_str(&err));
		rc = 0;
		goto out;
	}
	cleanup_result_init(&res);
	cleanup_finish(&cc, &res);
	if (res.status == 0) {
		char path[300];

		log_info("%s: uid=%lu from=<%s>", res.queue_id, (unsigned long)st->st_uid, qe.sender);
		snprintf(path, sizeof(path), "%s/%s", QUEUE_MAILDROP, name);
		if (unlink(path) < 0)
			log_warn("remove %s: %m", path);
		rc = 0;
	} else if (res.status == 5) {
		to_corrupt(name, buf_str(&res.reason));
		rc = 0;
	} else {
		log_warn("maildrop/%s: %s (will retry)", name, buf_str(&res.reason));
	}
	cleanup_result_free(&res);
out:
	free(rcpts);
	qfile_env_free(&qe);
	buf_free(&chunk);
	buf_free(&err);
	return rc;
}

/*
 * unreadable - a file we may not open: postdrop's files stay mode 0600
 * until they are complete, so this is one being written, or the debris
 * of a postdrop that died (kept for the admin once it is an hour old).
 */
static void
unreadable(int dfd, const char *name)
{
	struct stat st;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return;
	if (time(NULL) - st.st_mtime > STALE_SECONDS)
		to_corrupt(name, "unreadable and incomplete for over an hour");
}

/* scan - every file in maildrop/ once */
static void
scan(void)
{
	struct dirent *de;
	struct stat st;
	DIR *d;
	int fd, n = 0;

	/* Files are opened relative to the directory; cleanup is reached from the queue. */
	if ((d = opendir(QUEUE_MAILDROP)) == NULL)
		log_fatal("open %s: %m", QUEUE_MAILDROP);
	while ((de = readdir(d)) != NULL && n < SCAN_MAX) {
		if (de->d_name[0] == '.')
			continue;
		n++;
		fd = openat(dirfd(d), de->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0) {
			if (errno == ELOOP)
				to_corrupt(de->d_name, "a symbolic link");
			else if (errno == EACCES)
				unreadable(dirfd(d), de->d_name);
			else if (errno != ENOENT)
				log_warn("open maildrop/%s: %m", de->d_name);
			continue;
		}
		if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
			close(fd);
			to_corrupt(de->d_name, "not a regular file with one link");
			continue;
		}
		if (!qid_valid(de->d_name)) {
			close(fd);
			to_corrupt(de->d_name, "not a queue ID");
			continue;
		}
		(void)pass_on(de->d_name, fd, &st);
		close(fd);
	}
	closedir(d);
}

static void
pickup_service(struct stream *client, struct server_ctx *ctx)
{
	char req[16];

	(void)ctx;
	/* The request bytes do not matter: any of them means "look now". */
	stream_set_timeout(client, 5);
	(void)stream_read_some(client, req, sizeof(req));
	scan();
}

static void
pickup_post_init(struct server_ctx *ctx)
{
	(void)ctx;
	trusted_uid = geteuid();
	scan();
}

int
main(int argc, char **argv)
{
	static const struct server_desc desc = {
		.name = "pickup",
		.kind = SERVER_SINGLE,
		.identity = SERVER_ID_QUEUE,
		.chroot_ok = true,
		.post_init = pickup_post_init,
		.service = pickup_service,
	};

	server_main(argc, argv, &desc);
}
