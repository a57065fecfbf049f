/*
 * qdir - create and check the queue directory tree (see qdir.h).
 *
 * Called by the master at start (as root: create and repair) and by
 * "postern check" (report; repair with -f).  Directories are made with
 * mkdirat relative to an O_DIRECTORY descriptor of the queue, and checked
 * with fstatat(AT_SYMLINK_NOFOLLOW): a symlink where a queue directory
 * belongs is reported, never followed.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg.h"
#include "log.h"
#include "priv.h"
#include "qdir.h"

enum qdir_owner { OWN_ROOT, OWN_MAIL };
enum qdir_group { GRP_OWNER, GRP_SETGID, GRP_NETWORK };

struct qdir {
	const char *name;
	mode_t mode;
	enum qdir_owner owner;
	enum qdir_group group;
	bool hashed; /* one level of subdirectories 0-9, A-V (qid_hash) */
};

/* Keep in step with doc/queue-format.md ("Queue directories"). */
static const struct qdir qdirs[] = {
	{ "maildrop", 01730, OWN_MAIL, GRP_SETGID, false },
	{ "incoming", 0700, OWN_MAIL, GRP_OWNER, false },
	{ "active", 0700, OWN_MAIL, GRP_OWNER, false },
	{ "deferred", 0700, OWN_MAIL, GRP_OWNER, true },
	{ "hold", 0700, OWN_MAIL, GRP_OWNER, false },
	{ "corrupt", 0700, OWN_MAIL, GRP_OWNER, false },
	{ "defer", 0700, OWN_MAIL, GRP_OWNER, true },
	{ "bounce", 0700, OWN_MAIL, GRP_OWNER, true },
	{ "pool", 0700, OWN_MAIL, GRP_OWNER, false },
	{ "private", 0710, OWN_MAIL, GRP_NETWORK, false },
	{ "public", 0710, OWN_MAIL, GRP_SETGID, false },
	{ "pid", 0755, OWN_ROOT, GRP_OWNER, false },
};

static const char hash_chars[] = "0123456789ABCDEFGHIJKLMNOPQRSTUV";

int
qdir_ids_load(struct qdir_ids *ids, struct buf *err)
{
	gid_t gid;
	uid_t uid;

	memset(ids, 0, sizeof(*ids));
	ids->root = geteuid() == 0;
	if (!ids->root) {
		ids->mail_uid = geteuid();
		ids->mail_gid = ids->setgid_gid = ids->network_gid = getegid();
		return 0;
	}
	if (priv_user(cfg_str(P_MAIL_OWNER), &ids->mail_uid, &ids->mail_gid, err) < 0)
		return -1;
	if (priv_group(cfg_str(P_SETGID_GROUP), &ids->setgid_gid, err) < 0)
		return -1;
	if (priv_user(cfg_str(P_NETWORK_USER), &uid, &gid, err) < 0)
		return -1;
	if (uid == ids->mail_uid) {
		buf_printf(err, "network_user and mail_owner must be different users");
		return -1;
	}
	ids->network_gid = gid;
	return 0;
}

/* qdir_one - create and check one directory relative to dfd */
static int
qdir_one(
    int dfd, const char *name, const struct qdir *q, const struct qdir_ids *ids, bool create, bool fix, struct buf *err)
{
	uid_t uid = q->owner == OWN_ROOT && ids->root ? 0 : ids->mail_uid;
	gid_t gid = q->owner == OWN_ROOT && ids->root ? 0 : ids->mail_gid;
	struct stat st;
	int problems = 0;

	if (q->group == GRP_SETGID)
		gid = ids->setgid_gid;
	else if (q->group == GRP_NETWORK)
		gid = ids->network_gid;
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno != ENOENT || !create) {
			buf_printf(err, "%s: %s\n", name, strerror(errno));
			return 1;
		}
		if (mkdirat(dfd, name, q->mode) < 0 && errno != EEXIST) {
			buf_printf(err, "mkdir %s: %s\n", name, strerror(errno));
			return 1;
		}
		if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			buf_printf(err, "%s: %s\n", name, strerror(errno));
			return 1;
		}
		fix = true; /* a new directory gets its owner and exact mode */
	}
	if (!S_ISDIR(st.st_mode)) {
		buf_printf(err, "%s: not a directory%s\n", name, S_ISLNK(st.st_mode) ? " (a symbolic link)" : "");
		return 1;
	}
	if (ids->root && (st.st_uid != uid || st.st_gid != gid)) {
		if (fix && fchownat(dfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) == 0)
			;
		else {
			buf_printf(err, "%s: owner %ld:%ld, should be %ld:%ld\n", name, (long)st.st_uid,
			    (long)st.st_gid, (long)uid, (long)gid);
			problems++;
		}
	}
	if ((st.st_mode & 07777) != q->mode) {
		if (fix && fchmodat(dfd, name, q->mode, 0) == 0)
			;
		else {
			buf_printf(err, "%s: mode %04o, should be %04o\n", name, (unsigned)(st.st_mode & 07777),
			    (unsigned)q->mode);
			problems++;
		}
	}
	return problems;
}

int
qdir_setup(const char *queue_dir, const struct qdir_ids *ids, bool create, bool fix, struct buf *err)
{
	char sub[64];
	size_t i, h;
	int dfd, problems = 0;

	if (queue_dir && create && mkdir(queue_dir, 0755) < 0 && errno != EEXIST) {
		buf_printf(err, "mkdir %s: %s\n", queue_dir, strerror(errno));
		return 1;
	}
	dfd = open(queue_dir ? queue_dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		buf_printf(err, "%s: %s\n", queue_dir ? queue_dir : ".", strerror(errno));
		return 1;
	}
	for (i = 0; i < sizeof(qdirs) / sizeof(qdirs[0]); i++) {
		const struct qdir *q = &qdirs[i];

		problems += qdir_one(dfd, q->name, q, ids, create, fix, err);
		for (h = 0; q->hashed && h < sizeof(hash_chars) - 1; h++) {
			snprintf(sub, sizeof(sub), "%s/%c", q->name, hash_chars[h]);
			problems += qdir_one(dfd, sub, q, ids, create, fix, err);
		}
	}
	close(dfd);
	return problems;
}

int
qdir_move(const char *from, const char *to)
{
	if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
	/* link refuses to replace too */
	if (link(from, to) < 0)
		return -1;
	if (unlink(from) < 0)
		log_warn("unlink %s after linking it to %s: %m", from, to);
	return 0;
}
