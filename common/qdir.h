/*
 * qdir - the queue directory tree: which directories exist, who owns them
 * and with what mode.  The one table that the master (creates and repairs
 * at every start), "postern check" (reports) and "postern init" use.
 */
#ifndef POSTERN_QDIR_H
#define POSTERN_QDIR_H

#include <stdbool.h>
#include <sys/types.h>

#include "buf.h"

/* Identities the tree is made for; from main.cf when running as root. */
struct qdir_ids {
	bool root;      /* running as root: set owners */
	uid_t mail_uid; /* mail_owner */
	gid_t mail_gid;
	gid_t setgid_gid;  /* setgid_group */
	gid_t network_gid; /* primary group of network_user */
};

/* Resolve the identities from main.cf (as root) or the current user. */
int qdir_ids_load(struct qdir_ids *ids, struct buf *err);

/*
 * Create missing directories of the queue at queue_dir (the current
 * directory when NULL) and, with fix, repair owners and modes.  Problems
 * found are described in err, one per line; returns the number of
 * problems that remain (0 = all good).
 */
int qdir_setup(const char *queue_dir, const struct qdir_ids *ids, bool create, bool fix, struct buf *err);

/*
 * Move a queue file: rename that never replaces an existing file (a
 * queue ID names one message).  Falls back to link and unlink on a file
 * system without RENAME_NOREPLACE.  0, or -1 with errno.
 */
int qdir_move(const char *from, const char *to);

#endif
