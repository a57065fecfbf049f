/*
 * qpool - spare queue files (qpool.h).
 *
 * The indexes are 64-bit and only grow, so a name pool/N is used once
 * per master lifetime; under a new master (a new shared page, HEAD = 0)
 * qmgr's start renumbers the spares above the old names and sets the
 * indexes to match.  An index a cleanup claimed but could not
 * use (it died, or the file was not as expected) is simply skipped: the
 * file stays in pool/ until the next sweep.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "flow.h"
#include "log.h"
#include "qdir.h"
#include "qfile.h"
#include "qid.h"
#include "qpool.h"

static bool pool_missing; /* qmgr: no pool/ directory (a queue made before it existed) */

static void
pool_path(char *out, size_t len, unsigned long long n)
{
	snprintf(out, len, "%s/%llu", QUEUE_POOL, n);
}

int
qpool_put(const char *path, off_t size)
{
	struct flow_pool *p = flow_pool();
	unsigned long long head;
	char to[64];
	int tries;

	if (p == NULL || pool_missing || size > QPOOL_FILE_MAX)
		return -1;
	head = atomic_load(&p->head);
	if (head - atomic_load(&p->tail) >= QPOOL_MAX)
		return -1;
	/* Inert first: a spare never reads as a complete queue file. */
	if (chmod(path, QF_MODE_INCOMPLETE) < 0)
		return -1;
	pool_path(to, sizeof(to), head);
	for (tries = 0; renameat2(AT_FDCWD, path, AT_FDCWD, to, RENAME_NOREPLACE) < 0; tries++) {
		if (errno == ENOENT) {
			log_warn("no %s/ directory in the queue: finished queue files are removed (run \"postern check "
			         "-f\" to create it)",
			    QUEUE_POOL);
			pool_missing = true;
			return -1;
		}
		/* Not ours to keep (nothing should be there; see the sweep). */
		if (errno != EEXIST || tries > 0 || unlink(to) < 0)
			return -1;
	}
	atomic_store(&p->head, head + 1);
	return 0;
}

int
qpool_take(const char *path)
{
	struct flow_pool *p = flow_pool();
	unsigned long long tail;
	struct stat st;
	char from[64];
	int fd, e;

	if (p == NULL)
		return -1;
	tail = atomic_load(&p->tail);
	do {
		if (tail >= atomic_load(&p->head))
			return -1;
	} while (!atomic_compare_exchange_weak(&p->tail, &tail, tail + 1));
	pool_path(from, sizeof(from), tail);
	if ((fd = open(from, O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)) < 0)
		return -1;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1 || st.st_uid != geteuid() ||
	    (st.st_mode & 07777) != QF_MODE_INCOMPLETE) {
		log_warn("%s: not a spare queue file; left for the next sweep", from);
		close(fd);
		return -1;
	}
	if (renameat2(AT_FDCWD, from, AT_FDCWD, path, RENAME_NOREPLACE) < 0) {
		e = errno;
		close(fd);
		(void)unlink(from);
		errno = e;
		return -1;
	}
	return fd;
}

int
qpool_sweep(void)
{
	struct flow_pool *p = flow_pool();
	char from[300], to[64], id[QID_LEN + 1];
	unsigned long long top = 0, v, k = 0;
	struct dirent *de;
	struct stat st;
	char *end;
	int n = 0;
	DIR *d;

	/* Without a page nobody pools; with a used one the spares are live. */
	if (p == NULL || atomic_load(&p->head) != 0)
		return 0;
	if ((d = opendir(QUEUE_POOL)) == NULL) {
		if (errno != ENOENT)
			log_warn("opendir %s: %m", QUEUE_POOL);
		return 0;
	}
	/* First pass: recover committed files, drop what is not a spare, find the highest name. */
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(from, sizeof(from), "%s/%s", QUEUE_POOL, de->d_name);
		if (lstat(from, &st) < 0)
			continue;
		if (!S_ISREG(st.st_mode)) {
			log_warn("%s: not a regular file; left alone", from);
			continue;
		}
		if ((st.st_mode & 07777) == QF_MODE_COMPLETE && st.st_nlink == 1) {
			/* Committed by cleanup, but the rename to incoming/ did not survive. */
			qid_new(id);
			if (qid_path(to, sizeof(to), QUEUE_INCOMING, id) == 0 && qdir_move(from, to) == 0) {
				log_warn("%s: a committed message whose queue name was lost; queued again as %s", from, id);
				n++;
				continue;
			}
			log_warn("%s: a committed message whose queue name was lost; cannot queue it again: %m", from);
			continue;
		}
		v = strtoull(de->d_name, &end, 10);
		if (*end != 0 || (st.st_mode & 07777) != QF_MODE_INCOMPLETE || st.st_nlink != 1 || st.st_uid != geteuid() ||
		    st.st_size > QPOOL_FILE_MAX) {
			if (unlink(from) < 0)
				log_warn("unlink %s: %m", from);
			continue;
		}
		if (v >= top)
			top = v + 1;
	}
	/*
	 * Second pass: the spares of the last master are kept, renumbered
	 * from above every name in use so none collides.  Removing them
	 * would free hundreds of inodes at once, and on ext4 without a
	 * journal every create for the next minutes would step over them.
	 */
	rewinddir(d);
	while ((de = readdir(d)) != NULL && k < QPOOL_MAX) {
		v = strtoull(de->d_name, &end, 10);
		if (de->d_name[0] == '.' || *end != 0 || v >= top)
			continue;
		snprintf(from, sizeof(from), "%s/%s", QUEUE_POOL, de->d_name);
		/* Only what the first pass kept: a directory left alone there is no spare. */
		if (lstat(from, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		snprintf(to, sizeof(to), "%s/%llu", QUEUE_POOL, top + k);
		if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
			k++;
	}
	closedir(d);
	/* tail first: while tail >= head nobody takes anything. */
	atomic_store(&p->tail, top);
	atomic_store(&p->head, top + k);
	if (k > 0)
		log_debug("kept %llu spare queue file%s in %s/", k, k == 1 ? "" : "s", QUEUE_POOL);
	return n;
}
