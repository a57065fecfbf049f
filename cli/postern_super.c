/*
 * postern_super - "postern super": the queue administrator's tool, like
 * postsuper.
 *
 *   -d ID|ALL|-   delete (queue file, defer and bounce logs)
 *   -h ID|ALL|-   put on hold: into hold/, which qmgr never scans
 *   -H ID|ALL|-   release from hold: into deferred/, due now
 *   -r ID|ALL|-   requeue: into incoming/, so qmgr resolves the routing
 *                 afresh (after a change of transport_maps or relayhost)
 *   -s            repair: see repair() below
 *
 * "-" reads queue IDs from standard input, one per line.  Names on the
 * command line after the options restrict the queues searched.  Run by
 * root or the mail_owner; every name, from the command line, standard
 * input or a directory, passes qid_valid() before it becomes a path, and
 * nothing here follows a symbolic link.
 *
 * qmgr owns active/: while it runs (it holds an flock on the directory)
 * a message in active/ is left alone and reported as being delivered.
 * When qmgr is not running, this command takes the same lock for as long
 * as it works, so a qmgr that starts meanwhile waits for it.  Every other
 * move is a rename that either wins or finds the file gone (qmgr took
 * it), never a copy.  Each action is logged in Postfix's words
 * ("ID: removed", "ID: placed on hold", "ID: released from hold",
 * "ID: requeued") to the mail log and to standard error.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "cfg.h"
#include "log.h"
#include "postern.h"
#include "proto.h"
#include "qdir.h"
#include "qfile.h"
#include "qid.h"
#include "qlog.h"
#include "str.h"
#include "stream.h"
#include "trigger.h"
#include "xalloc.h"

#define STALE_AGE   86400   /* an incomplete incoming/ file this old is debris */
#define ORPHAN_AGE  86400   /* a defer/bounce log without a message, this old, goes */
#define STDIN_MAX   1000000 /* queue IDs read from standard input */
#define NQUEUES_MAX 8

enum op { OP_DELETE, OP_HOLD, OP_RELEASE, OP_REQUEUE, OP_COUNT };

/* Outcome of one action. */
enum res { R_DONE, R_NOTFOUND, R_BUSY, R_FAIL };

static const char *const op_done[OP_COUNT] = { "removed", "placed on hold", "released from hold", "requeued" };
static const char *const op_title[OP_COUNT] = { "Deleted", "Placed on hold", "Released from hold", "Requeued" };

/* Queues each operation searches when none are named (as postsuper). */
static const char *const op_queues[OP_COUNT][NQUEUES_MAX] = {
	{ QUEUE_HOLD, QUEUE_INCOMING, QUEUE_DEFERRED, QUEUE_ACTIVE, NULL },
	{ QUEUE_INCOMING, QUEUE_DEFERRED, QUEUE_ACTIVE, NULL },
	{ QUEUE_HOLD, NULL },
	{ QUEUE_HOLD, QUEUE_INCOMING, QUEUE_DEFERRED, QUEUE_ACTIVE, NULL },
};

/* Queues an admin may name (maildrop and corrupt only for -d). */
static const char *const nameable[] = { QUEUE_HOLD, QUEUE_INCOMING, QUEUE_ACTIVE, QUEUE_DEFERRED, QUEUE_MAILDROP,
	QUEUE_CORRUPT, NULL };

static const char hash_chars[] = "0123456789ABCDEFGHIJKLMNOPQRSTUV";

struct super {
	bool qmgr_running; /* qmgr holds active/: its files are not ours */
	int lock_fd;
	struct qdir_ids ids;
	bool have_ids;
	unsigned long count[OP_COUNT];
	unsigned long busy;
	bool wake_incoming, wake_deferred;
	int problems;
};

/* take_lock - find out whether qmgr runs; when not, keep it from starting */
static void
take_lock(struct super *s)
{
	s->lock_fd = open(QUEUE_ACTIVE, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (s->lock_fd < 0) {
		s->qmgr_running = false;
		return;
	}
	/* Any failure counts as a running qmgr: active/ is then left alone. */
	s->qmgr_running = flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0;
}

/* act - one operation on queue/id; what happened */
static enum res
act(struct super *s, enum op op, const char *queue, const char *id)
{
	char path[64], dest[64];
	struct stat st;

	if (!qid_valid(id) || qid_path(path, sizeof(path), queue, id) < 0)
		return R_NOTFOUND;
	/* Release is from hold only; submissions and corrupt files can only be deleted. */
	if ((op == OP_RELEASE && strcmp(queue, QUEUE_HOLD) != 0) ||
	    (op != OP_DELETE && (strcmp(queue, QUEUE_MAILDROP) == 0 || strcmp(queue, QUEUE_CORRUPT) == 0)))
		return R_NOTFOUND;
	if (fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno == ENOENT)
			return R_NOTFOUND;
		log_warn("%s: %m", path);
		return R_FAIL;
	}
	if (!S_ISREG(st.st_mode)) {
		log_warn("%s: not a regular file; left alone (\"postern super -s\" removes it)", path);
		return R_FAIL;
	}
	if (strcmp(queue, QUEUE_ACTIVE) == 0 && s->qmgr_running) {
		fprintf(stderr, "postern: super: %s is being delivered; try again\n", id);
		return R_BUSY;
	}
	if (strcmp(queue, QUEUE_INCOMING) == 0 && (st.st_mode & 07777) == QF_MODE_INCOMPLETE) {
		fprintf(stderr, "postern: super: %s is still being written; try again\n", id);
		return R_BUSY;
	}
	switch (op) {
	case OP_DELETE:
		if (unlink(path) < 0) {
			if (errno == ENOENT)
				return R_NOTFOUND;
			log_warn("%s: unlink %s: %m", id, path);
			return R_FAIL;
		}
		(void)qlog_remove(QUEUE_DEFER, id);
		(void)qlog_remove(QUEUE_BOUNCE, id);
		break;
	case OP_HOLD:
		if (strcmp(queue, QUEUE_HOLD) == 0)
			return R_DONE;
		if (qid_path(dest, sizeof(dest), QUEUE_HOLD, id) < 0 || qdir_move(path, dest) < 0) {
			if (errno == ENOENT)
				return R_NOTFOUND;
			log_warn("%s: rename %s to %s: %m", id, path, dest);
			return R_FAIL;
		}
		break;
	case OP_RELEASE: {
		struct timespec ts[2] = { { 0, UTIME_OMIT }, { 0, UTIME_NOW } };

		/* Due at once: a deferred file's mtime is its next attempt time. */
		if (utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW) < 0 && errno != ENOENT)
			log_warn("%s: set the time of %s: %m", id, path);
		if (qid_path(dest, sizeof(dest), QUEUE_DEFERRED, id) < 0 || qdir_move(path, dest) < 0) {
			if (errno == ENOENT)
				return R_NOTFOUND;
			log_warn("%s: rename %s to %s: %m", id, path, dest);
			return R_FAIL;
		}
		s->wake_deferred = true;
		break;
	}
	case OP_REQUEUE:
		if (strcmp(queue, QUEUE_INCOMING) != 0) {
			if (qid_path(dest, sizeof(dest), QUEUE_INCOMING, id) < 0 || qdir_move(path, dest) < 0) {
				if (errno == ENOENT)
					return R_NOTFOUND;
				log_warn("%s: rename %s to %s: %m", id, path, dest);
				return R_FAIL;
			}
		}
		/* Old reasons may no longer hold once the routing changed. */
		(void)qlog_remove(QUEUE_DEFER, id);
		s->wake_incoming = true;
		break;
	default:
		log_panic("act: operation %d", (int)op);
	}
	log_info("%s: %s", id, op_done[op]);
	s->count[op]++;
	return R_DONE;
}

/* one_id - an operation on one message, wherever it is among queues */
static void
one_id(struct super *s, enum op op, const char *const *queues, const char *id)
{
	enum res r = R_NOTFOUND;
	size_t i;
	int pass;

	if (!qid_valid(id)) {
		fprintf(stderr, "postern: super: \"%.100s\" is not a queue ID\n", id);
		s->problems++;
		return;
	}
	/* Twice: qmgr may move the message from a queue not yet searched to one already searched. */
	for (pass = 0; pass < 2 && r == R_NOTFOUND; pass++)
		for (i = 0; queues[i] && r == R_NOTFOUND; i++)
			r = act(s, op, queues[i], id);
	if (r == R_NOTFOUND) {
		fprintf(stderr, "postern: super: %s: no such message in %s", id, queues[0]);
		for (i = 1; queues[i]; i++)
			fprintf(stderr, "%s%s", queues[i + 1] ? ", " : " or ", queues[i]);
		fputc('\n', stderr);
		s->problems++;
	} else if (r == R_BUSY) {
		s->busy++;
	} else if (r == R_FAIL) {
		s->problems++;
	}
}

/* all_in - an operation on every message of one queue */
static void
all_in(struct super *s, enum op op, const char *queue)
{
	struct dirent *de;
	char dir[32];
	size_t h, nsub = qid_queue_hashed(queue) ? sizeof(hash_chars) - 1 : 1;
	enum res r;
	DIR *d;

	for (h = 0; h < nsub; h++) {
		if (nsub > 1)
			snprintf(dir, sizeof(dir), "%s/%c", queue, hash_chars[h]);
		else
			snprintf(dir, sizeof(dir), "%s", queue);
		if ((d = opendir(dir)) == NULL) {
			if (errno != ENOENT) {
				log_warn("open %s: %m", dir);
				s->problems++;
			}
			continue;
		}
		while ((de = readdir(d)) != NULL) {
			if (!qid_valid(de->d_name))
				continue;
			r = act(s, op, queue, de->d_name);
			if (r == R_BUSY)
				s->busy++;
			else if (r == R_FAIL)
				s->problems++;
		}
		closedir(d);
	}
}

/* ---------------------------------------------------------------- repair (-s) */

/* exists_anywhere - a queue file of id is in some queue */
static bool
exists_anywhere(const char *id)
{
	static const char *const queues[] = { QUEUE_INCOMING, QUEUE_ACTIVE, QUEUE_DEFERRED, QUEUE_HOLD, QUEUE_CORRUPT,
		NULL };
	char path[64];
	size_t i;
	int pass;

	/* Twice, in opposite orders, so a message moving meanwhile is still seen. */
	for (pass = 0; pass < 2; pass++)
		for (i = 0; queues[i]; i++) {
			const char *q = pass == 0 ? queues[i] : queues[sizeof(queues) / sizeof(queues[0]) - 2 - i];

			if (qid_path(path, sizeof(path), q, id) == 0 &&
			    faccessat(AT_FDCWD, path, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
				return true;
		}
	return false;
}

/* to_corrupt - keep a bad file for the admin: under its own ID (its logs still match), else a fresh one */
static void
to_corrupt(struct super *s, const char *path, const char *why)
{
	const char *base = strrchr(path, '/');
	char id[QID_LEN + 1], dest[64];
	int tries;

	base = base ? base + 1 : path;
	for (tries = qid_valid(base) ? 0 : 1; tries < 2; tries++) {
		if (tries == 0)
			snprintf(id, sizeof(id), "%s", base);
		else
			qid_new(id);
		snprintf(dest, sizeof(dest), "%s/%s", QUEUE_CORRUPT, id);
		if (strcmp(path, dest) == 0)
			continue;
		if (qdir_move(path, dest) == 0) {
			log_warn("%s: %s; moved to %s", path, why, dest);
			return;
		}
		if (errno != EEXIST)
			break;
	}
	log_warn("%s: %s; cannot move it to %s: %m", path, why, dest);
	s->problems++;
}

/* fix_owner - a queue file or log belongs to mail_owner */
static void
fix_owner(struct super *s, const char *path, const struct stat *st)
{
	if (!s->have_ids || !s->ids.root || (st->st_uid == s->ids.mail_uid && st->st_gid == s->ids.mail_gid))
		return;
	if (fchownat(AT_FDCWD, path, s->ids.mail_uid, s->ids.mail_gid, AT_SYMLINK_NOFOLLOW) < 0) {
		log_warn("%s: chown: %m", path);
		s->problems++;
		return;
	}
	log_info("%s: owner %ld:%ld changed to %ld:%ld", path, (long)st->st_uid, (long)st->st_gid,
	    (long)s->ids.mail_uid, (long)s->ids.mail_gid);
}

/* fix_queue_file - owner and mode of one message file at path */
static void
fix_queue_file(struct super *s, const char *queue, const char *path, const struct stat *st)
{
	static const struct qfile_read_limits lim = { 2000000, 100000 };
	mode_t mode = st->st_mode & 07777;
	struct qfile_env env;
	struct buf err = BUF_INIT;
	int fd, r;

	fix_owner(s, path, st);
	if (strcmp(queue, QUEUE_CORRUPT) == 0 || mode == QF_MODE_COMPLETE)
		return;
	if (strcmp(queue, QUEUE_INCOMING) == 0 && mode == QF_MODE_INCOMPLETE) {
		/* A writer that has been gone this long left debris. */
		if (time(NULL) - st->st_mtime > STALE_AGE) {
			if (unlink(path) == 0)
				log_info("%s: removed stale temporary file", path);
			else if (errno != ENOENT)
				log_warn("unlink %s: %m", path), s->problems++;
		}
		return;
	}
	/* Any other mode: the file keeps its place only if it is complete. */
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)) < 0)
		return;
	r = qfile_read_mode(fd, mode, &env, &lim, &err);
	if (r == 0) {
		qfile_env_free(&env);
		if (fchmod(fd, QF_MODE_COMPLETE) == 0)
			log_info("%s: mode %04o changed to %04o", path, (unsigned)mode, (unsigned)QF_MODE_COMPLETE);
		else
			log_warn("%s: chmod: %m", path), s->problems++;
		close(fd);
	} else {
		close(fd);
		to_corrupt(s, path, r == 1 ? "incomplete, with an unexpected mode" : buf_str(&err));
	}
	buf_free(&err);
}

/* fix_log - owner and mode of a defer or bounce log; an old orphan goes */
static void
fix_log(struct super *s, const char *id, const char *path, const struct stat *st)
{
	if (!exists_anywhere(id) && time(NULL) - st->st_mtime > ORPHAN_AGE) {
		if (unlink(path) == 0)
			log_info("%s: removed (the message is no longer queued)", path);
		return;
	}
	fix_owner(s, path, st);
	if ((st->st_mode & 07777) != 0600) {
		if (fchmodat(AT_FDCWD, path, 0600, 0) == 0)
			log_info("%s: mode %04o changed to 0600", path, (unsigned)(st->st_mode & 07777));
		else
			log_warn("%s: chmod: %m", path), s->problems++;
	}
}

/* repair_entry - one name found in dir (a queue or one of its subdirectories) */
static void
repair_entry(struct super *s, const char *queue, const char *dir, char sub, const char *name)
{
	bool hashed = qid_queue_hashed(queue),
	     is_log = strcmp(queue, QUEUE_DEFER) == 0 || strcmp(queue, QUEUE_BOUNCE) == 0;
	char path[300], right[64];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return;
	if (S_ISDIR(st.st_mode)) {
		/* The hash subdirectories themselves are qdir_setup's. */
		if (!(hashed && sub == 0 && strlen(name) == 1 && strchr(hash_chars, name[0])))
			log_warn("%s: unexpected directory; left alone", path), s->problems++;
		return;
	}
	if (!S_ISREG(st.st_mode)) {
		if (unlink(path) == 0)
			log_info("%s: removed (not a regular file)", path);
		else
			log_warn("unlink %s: %m", path), s->problems++;
		return;
	}
	if (!qid_valid(name)) {
		if (!is_log)
			to_corrupt(s, path, "not a queue ID");
		else if (unlink(path) == 0)
			log_info("%s: removed (not a queue ID)", path);
		return;
	}
	if (strcmp(queue, QUEUE_ACTIVE) == 0 && s->qmgr_running)
		return;
	/* A file in the wrong hash subdirectory, or above them, goes where readers look. */
	if (qid_path(right, sizeof(right), queue, name) < 0)
		return;
	if (strcmp(path, right) != 0) {
		if (qdir_move(path, right) < 0) {
			log_warn("%s: cannot move it to %s: %m", path, right);
			s->problems++;
			return;
		}
		log_info("%s: moved to %s", path, right);
		snprintf(path, sizeof(path), "%s", right);
		if (fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return;
	}
	if (is_log)
		fix_log(s, name, path, &st);
	else
		fix_queue_file(s, queue, path, &st);
}

/* repair_dir - every entry of one directory */
static void
repair_dir(struct super *s, const char *queue, const char *dir, char sub)
{
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0, i;
	DIR *d;

	if ((d = opendir(dir)) == NULL) {
		if (errno != ENOENT)
			log_warn("open %s: %m", dir), s->problems++;
		return;
	}
	/* Names first: the repairs rename within the directory being read. */
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			names = xreallocarray(names, cap, sizeof(*names));
		}
		names[n++] = xstrdup(de->d_name);
	}
	closedir(d);
	for (i = 0; i < n; i++) {
		repair_entry(s, queue, dir, sub, names[i]);
		free(names[i]);
	}
	free(names);
}

/*
 * repair - what postsuper -s does, the Postern way: the queue tree
 * (qdir_setup: directories, owners, modes); in incoming/, active/,
 * deferred/, hold/ and corrupt/: non-regular files removed, names that
 * are not queue IDs moved to corrupt/ under a fresh ID, files in the
 * wrong hash subdirectory moved to the right one, owners set to
 * mail_owner, incomplete incoming/ files older than a day removed, and a
 * file with another mode than 0700 made 0700 when it is complete, moved
 * to corrupt/ when not; in defer/ and bounce/ the same placement, mode
 * 0600, and logs of messages that are gone removed after a day.
 */
static void
repair(struct super *s)
{
	static const char *const queues[] = { QUEUE_INCOMING, QUEUE_ACTIVE, QUEUE_DEFERRED, QUEUE_HOLD, QUEUE_CORRUPT,
		QUEUE_DEFER, QUEUE_BOUNCE, NULL };
	struct buf err = BUF_INIT;
	char dir[32];
	size_t i, h;

	if (s->have_ids && qdir_setup(NULL, &s->ids, true, true, &err) > 0) {
		char *lines = buf_export(&err), *line, *p = lines;

		while ((line = strsep(&p, "\n")) != NULL)
			if (*line)
				log_warn("%s", line), s->problems++;
		free(lines);
	}
	for (i = 0; queues[i]; i++) {
		repair_dir(s, queues[i], queues[i], 0);
		for (h = 0; qid_queue_hashed(queues[i]) && h < sizeof(hash_chars) - 1; h++) {
			snprintf(dir, sizeof(dir), "%s/%c", queues[i], hash_chars[h]);
			repair_dir(s, queues[i], dir, hash_chars[h]);
		}
	}
	buf_free(&err);
}

/* ---------------------------------------------------------------- the command */

struct request {
	enum op op;
	const char *arg; /* ID, "ALL" or "-" */
};

static bool
queue_nameable(const char *q)
{
	size_t i;

	for (i = 0; nameable[i]; i++)
		if (strcmp(nameable[i], q) == 0)
			return true;
	return false;
}

/* run_request - one -d/-h/-H/-r option */
static void
run_request(struct super *s, const struct request *rq, const char *const *named)
{
	const char *const *queues = named ? named : op_queues[rq->op];
	struct stream *in;
	struct buf line = BUF_INIT;
	const char *id;
	size_t i, n = 0;
	int r;

	if (strcmp(rq->arg, "ALL") == 0) {
		for (i = 0; queues[i]; i++)
			all_in(s, rq->op, queues[i]);
		return;
	}
	if (strcmp(rq->arg, "-") != 0) {
		one_id(s, rq->op, queues, rq->arg);
		return;
	}
	in = stream_new(STDIN_FILENO, STREAM_NOCLOSE | STREAM_BLOCKING);
	while ((r = stream_getline(in, &line, 256)) == STREAM_OK || r == STREAM_TOOLONG) {
		if (r == STREAM_TOOLONG || ++n > STDIN_MAX) {
			fprintf(stderr, "postern: super: standard input: a line too long, or too many lines\n");
			s->problems++;
			break;
		}
		buf_putc(&line, 0);
		id = str_trim((char *)line.data);
		if (*id)
			one_id(s, rq->op, queues, id);
	}
	stream_free(in);
	buf_free(&line);
}

int
cmd_super(int argc, char **argv)
{
	struct request rq[64];
	struct super s;
	struct buf err = BUF_INIT;
	const char *named[NQUEUES_MAX + 1];
	size_t nrq = 0, i, nnamed = 0;
	bool do_repair = false, stdin_used = false;
	int ch, op;

	memset(&s, 0, sizeof(s));
	s.lock_fd = -1;
	while ((ch = getopt(argc, argv, "c:d:h:H:r:s")) != -1) {
		switch (ch) {
		case 'c':
			cli_config_dir = optarg;
			continue;
		case 's':
			do_repair = true;
			continue;
		case 'd':
			op = OP_DELETE;
			break;
		case 'h':
			op = OP_HOLD;
			break;
		case 'H':
			op = OP_RELEASE;
			break;
		case 'r':
			op = OP_REQUEUE;
			break;
		default:
			goto usage;
		}
		if (nrq >= sizeof(rq) / sizeof(rq[0])) {
			fprintf(stderr, "postern: super: too many options\n");
			return 2;
		}
		if (strcmp(optarg, "-") == 0) {
			if (stdin_used)
				goto usage;
			stdin_used = true;
		} else if (strcmp(optarg, "ALL") != 0 && !qid_valid(optarg)) {
			fprintf(stderr, "postern: super: \"%.100s\" is not a queue ID\n", optarg);
			return 2;
		}
		rq[nrq].op = (enum op)op;
		rq[nrq].arg = optarg;
		nrq++;
	}
	for (i = (size_t)optind; i < (size_t)argc; i++) {
		if (!queue_nameable(argv[i]) || nnamed >= NQUEUES_MAX) {
			fprintf(stderr, "postern: super: \"%.100s\" is not a queue name\n", argv[i]);
			return 2;
		}
		named[nnamed++] = argv[i];
	}
	named[nnamed] = NULL;
	if (nrq == 0 && !do_repair)
		goto usage;

	cli_load_config();
	log_init("super", LOG_DEST_STDERR);
	log_set_syslog_name(cfg_str(P_SYSLOG_NAME));
	if (*cfg_str(P_MAILLOG_FILE) && log_open_file(cfg_str(P_MAILLOG_FILE)) == 0)
		log_set_dests(LOG_DEST_STDERR | LOG_DEST_FILE);
	else if (!*cfg_str(P_MAILLOG_FILE))
		log_set_dests(LOG_DEST_STDERR | LOG_DEST_SYSLOG);
	if (chdir(cfg_str(P_QUEUE_DIRECTORY)) < 0) {
		fprintf(stderr, "postern: super: %s: %s\n", cfg_str(P_QUEUE_DIRECTORY), strerror(errno));
		return 1;
	}
	if (access(QUEUE_ACTIVE, W_OK | X_OK) < 0) {
		fprintf(stderr,
		    "postern: super: cannot change the queue in %s: %s (run as root or as the mail_owner, %s)\n",
		    cfg_str(P_QUEUE_DIRECTORY), strerror(errno), cfg_str(P_MAIL_OWNER));
		return 1;
	}
	s.have_ids = qdir_ids_load(&s.ids, &err) == 0;
	if (!s.have_ids && do_repair)
		log_warn("%s: owners are not checked", buf_str(&err));
	take_lock(&s);

	/* The order postsuper uses: repair, delete, hold, release, requeue. */
	if (do_repair)
		repair(&s);
	for (op = 0; op < OP_COUNT; op++)
		for (i = 0; i < nrq; i++)
			if ((int)rq[i].op == op)
				run_request(&s, &rq[i], nnamed ? named : NULL);

	for (op = 0; op < OP_COUNT; op++)
		if (s.count[op])
			fprintf(stderr, "postern: super: %s: %lu message%s\n", op_title[op], s.count[op],
			    s.count[op] == 1 ? "" : "s");
	if (s.busy)
		fprintf(stderr, "postern: super: %lu message%s being delivered or written; try again\n", s.busy,
		    s.busy == 1 ? " is" : "s are");
	/* Let qmgr see the changes now rather than at its next scan. */
	buf_reset(&err);
	if (s.wake_incoming)
		(void)trigger_send(SVC_PUBLIC_DIR "/" SVC_QMGR, TRIGGER_SCAN_INCOMING, &err);
	if (s.wake_deferred)
		(void)trigger_send(SVC_PUBLIC_DIR "/" SVC_QMGR, TRIGGER_SCAN_DEFERRED, &err);
	if (s.lock_fd >= 0)
		close(s.lock_fd);
	buf_free(&err);
	return s.problems || s.busy ? 1 : 0;
usage:
	fprintf(stderr, "usage: postern super [-c DIR] [-s] [-d queueid|ALL|-] [-h queueid|ALL|-] [-H queueid|ALL|-]\n"
	                "                     [-r queueid|ALL|-] [queue ...]\n");
	return 2;
}
