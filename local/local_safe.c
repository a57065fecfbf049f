/*
 * local_safe - privilege switching and file safety for the local
 * delivery agent.
 *
 * local stays root between deliveries.  For file work (mailboxes,
 * Maildir directories, .forward and :include: files) it switches its
 * effective user and group IDs and supplementary groups to the
 * recipient's and back (the real and saved uid stay 0 so it can return);
 * commands get a full, irrevocable drop in their own process (local_pipe.c).
 * Nothing here runs as uid 0 on a recipient's behalf: local_become()
 * refuses it.
 *
 * Files and directories under a recipient's control are hostile: they
 * are opened with O_NOFOLLOW and checked after opening (fstat) so that a
 * symbolic link, a hard link or a file of someone else is refused before
 * a byte is written.  Started as an ordinary user (a test instance) local
 * does no switching and files must belong to that user.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "local.h"
#include "log.h"
#include "xalloc.h"

#define SAFE_GROUPS_MAX 65536

bool local_privileged;

void
local_safe_init(void)
{
	local_privileged = geteuid() == 0;
}

uid_t
local_owner(const struct local_ident *id)
{
	return local_privileged ? id->uid : geteuid();
}

int
local_become(const struct local_ident *id, struct buf *err)
{
	gid_t *groups;
	int n = 32;

	if (!local_privileged)
		return 0;
	if (id->uid == 0) {
		buf_puts(err, "refusing to deliver with root privileges");
		return -1;
	}
	/* The recipient's own groups (a group-writable spool works as for them), else just its gid. */
	groups = xreallocarray(NULL, (size_t)n, sizeof(*groups));
	if (id->user != NULL) {
		int want = n;

		while (getgrouplist(id->user, id->gid, groups, &want) < 0) {
			if (want <= n || want > SAFE_GROUPS_MAX) {
				want = 1;
				groups[0] = id->gid;
				break;
			}
			n = want;
			groups = xreallocarray(groups, (size_t)n, sizeof(*groups));
		}
		n = want;
	} else {
		n = 1;
		groups[0] = id->gid;
	}
	if (setgroups((size_t)n, groups) < 0 || setegid(id->gid) < 0) {
		buf_printf(err, "cannot take group ID %ld: %s", (long)id->gid, strerror(errno));
		free(groups);
		local_unbecome();
		return -1;
	}
	free(groups);
	if (seteuid(id->uid) < 0) {
		buf_printf(err, "cannot take user ID %ld: %s", (long)id->uid, strerror(errno));
		local_unbecome();
		return -1;
	}
	return 0;
}

void
local_unbecome(void)
{
	if (!local_privileged)
		return;
	if (seteuid(0) < 0 || setegid(0) < 0 || setgroups(0, NULL) < 0)
		log_fatal("cannot switch back to root: %m");
}

/* safe_rebecome - back to the recipient after a step as root; fatal when that fails */
static void
safe_rebecome(const struct local_ident *id)
{
	struct buf err = BUF_INIT;

	if (local_become(id, &err) < 0)
		log_fatal("cannot switch back to uid %ld: %s", (long)id->uid, buf_str(&err));
	buf_free(&err);
}

int
local_write_all(int fd, const void *p, size_t n)
{
	const unsigned char *q = p;
	ssize_t w;

	while (n > 0) {
		w = write(fd, q, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		q += w;
		n -= (size_t)w;
	}
	return 0;
}

/* safe_check - a file we are about to write: regular, one link, the right owner */
static int
safe_check(const char *path, const struct stat *st, uid_t owner, bool owner_check, struct buf *why, bool *unsafe)
{
	if (!S_ISREG(st->st_mode)) {
		buf_printf(why, "%s is not a regular file", path);
	} else if (st->st_nlink != 1) {
		buf_printf(why, "%s has %lu hard links", path, (unsigned long)st->st_nlink);
	} else if (owner_check && st->st_uid != owner) {
		buf_printf(
		    why, "%s is owned by uid %ld, not by the recipient (uid %ld)", path, (long)st->st_uid, (long)owner);
	} else {
		return 0;
	}
	*unsafe = true;
	return -1;
}

/*
 * safe_root_create - as root, make path (a file or a directory) for the
 * recipient in a directory only root may write (the spool).  It is made
 * under a temporary name (".NAME.postern-new.PID", never a user name),
 * given to the recipient, and renamed into place without replacing
 * anything, so no other delivery ever sees it owned by root.  Returns 0
 * when path exists now (made here or by someone else), -1 with errno.
 */
static int
safe_root_create(const char *path, const struct local_ident *id, bool dir)
{
	const char *slash = strrchr(path, '/');
	char tmp[4096];
	int fd, e, n;

	n = slash ? snprintf(tmp, sizeof(tmp), "%.*s/.%s.postern-new.%ld", (int)(slash - path), path, slash + 1,
	                (long)getpid())
	          : snprintf(tmp, sizeof(tmp), ".%s.postern-new.%ld", path, (long)getpid());
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	/* A leftover of a crashed process that had our pid. */
	(void)(dir ? rmdir(tmp) : unlink(tmp));
	if (dir) {
		if (mkdir(tmp, 0700) < 0)
			return -1;
	} else {
		if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC, 0600)) < 0)
			return -1;
		close(fd);
	}
	if (lchown(tmp, id->uid, id->gid) < 0)
		goto fail;
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno == EINVAL || errno == ENOSYS) {
		/*
		 * A file system without RENAME_NOREPLACE: link() does not
		 * replace either (a concurrent delivery may then see two links
		 * for a moment and retry later); an empty directory of the same
		 * owner may be replaced harmlessly.
		 */
		if ((dir ? rename(tmp, path) : link(tmp, path)) == 0 || errno == EEXIST || errno == ENOTEMPTY) {
			(void)(dir ? rmdir(tmp) : unlink(tmp));
			return 0;
		}
	}
	if (errno == EEXIST) {
		(void)(dir ? rmdir(tmp) : unlink(tmp));
		return 0;
	}
fail:
	e = errno;
	(void)(dir ? rmdir(tmp) : unlink(tmp));
	errno = e;
	return -1;
}

int
local_safe_append(
    const char *path, const struct local_ident *id, int flags, struct stat *st, struct buf *why, bool *unsafe)
{
	bool owner_check = (flags & LOCAL_MBOX_OWNER) != 0;
	/* O_NONBLOCK: a FIFO planted as the mailbox must not hang us; it is refused below. */
	const int oflags = O_WRONLY | O_APPEND | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC | O_NONBLOCK;
	int fd, cfd, e, fl;

	*unsafe = false;
	fd = open(path, oflags);
	if (fd < 0 && errno == ENOENT) {
		fd = open(path, oflags | O_CREAT | O_EXCL, 0600);
		if (fd < 0 && errno == EEXIST) {
			fd = open(path, oflags); /* another delivery made it first */
		} else if (fd < 0 && errno == EACCES && local_privileged && (flags & LOCAL_MBOX_SPOOL)) {
			/* The spool is not writable by the recipient: root makes the file for them. */
			local_unbecome();
			cfd = safe_root_create(path, id, false);
			e = errno;
			safe_rebecome(id);
			if (cfd < 0) {
				buf_printf(why, "cannot create %s: %s", path, strerror(e));
				return -1;
			}
			fd = open(path, oflags);
		}
	}
	if (fd < 0) {
		e = errno;
		if (e == ELOOP) {
			buf_printf(why, "%s is a symbolic link", path);
			*unsafe = true;
		} else if ((e == EACCES || e == EPERM) && owner_check && lstat(path, st) == 0 &&
		           st->st_uid != local_owner(id)) {
			/* Say why: a mailbox of someone else's is not a permission problem to retry. */
			(void)safe_check(path, st, local_owner(id), true, why, unsafe);
		} else {
			errno = e;
			buf_printf(why, "cannot open %s: %s", path, strerror(errno));
		}
		return -1;
	}
	if (fstat(fd, st) < 0) {
		buf_printf(why, "fstat %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (safe_check(path, st, local_owner(id), owner_check, why, unsafe) < 0) {
		close(fd);
		return -1;
	}
	if ((fl = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		buf_printf(why, "fcntl %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* safe_mkdir - mkdir as the recipient, or (spool) as root for the recipient in a directory they cannot write */
static int
safe_mkdir(const char *path, const struct local_ident *id, bool spool, struct buf *why)
{
	int e, r;

	if (mkdir(path, 0700) == 0 || errno == EEXIST)
		return 0;
	if (errno == EACCES && local_privileged && spool) {
		local_unbecome();
		r = safe_root_create(path, id, true);
		e = errno;
		safe_rebecome(id);
		if (r == 0)
			return 0;
		errno = e;
	}
	buf_printf(why, "cannot create directory %s: %s", path, strerror(errno));
	return -1;
}

/* safe_isdir - lstat: a real directory (owned by the recipient when owned) */
static int
safe_isdir(const char *path, const struct local_ident *id, bool owned, struct buf *why, bool *unsafe)
{
	struct stat st;

	if (lstat(path, &st) < 0) {
		int e = errno;

		buf_printf(why, "cannot access %s: %s", path, strerror(e));
		errno = e;
		return -1;
	}
	if (S_ISLNK(st.st_mode)) {
		buf_printf(why, "%s is a symbolic link", path);
	} else if (!S_ISDIR(st.st_mode)) {
		buf_printf(why, "%s is not a directory", path);
	} else if (owned && st.st_uid != local_owner(id)) {
		buf_printf(why, "%s is owned by uid %ld, not by the recipient (uid %ld)", path, (long)st.st_uid,
		    (long)local_owner(id));
	} else {
		return 0;
	}
	*unsafe = true;
	return -1;
}

/*
 * safe_dir - path is a real directory (owned by the recipient when owned),
 * made first if it does not exist.  Nearly always it exists: one lstat
 * answers, where a mkdir that fails with EEXIST would also take the
 * parent directory's lock, which every parallel delivery to the mailbox
 * wants.
 */
static int
safe_dir(const char *path, const struct local_ident *id, bool spool, bool owned, struct buf *why, bool *unsafe)
{
	size_t len = why->len;

	*unsafe = false;
	if (safe_isdir(path, id, owned, why, unsafe) == 0)
		return 0;
	if (*unsafe || errno != ENOENT)
		return -1;
	buf_truncate(why, len);
	if (safe_mkdir(path, id, spool, why) < 0)
		return -1;
	return safe_isdir(path, id, owned, why, unsafe);
}

int
local_safe_dir(const char *path, const struct local_ident *id, struct buf *why, bool *unsafe)
{
	return safe_dir(path, id, false, true, why, unsafe);
}

int
local_safe_mkdirs(const char *base, const char *rel, size_t ndirs, bool owned_last, bool spool,
    const struct local_ident *id, struct buf *why, bool *unsafe)
{
	struct buf path = BUF_INIT;
	char *copy = xstrdup(rel), *p = copy, *comp;
	size_t i = 0;
	int rc = 0;

	*unsafe = false;
	buf_puts(&path, base);
	while (i < ndirs && (comp = strsep(&p, "/")) != NULL) {
		if (*comp == 0)
			continue;
		if (strcmp(comp, ".") == 0 || strcmp(comp, "..") == 0) {
			buf_printf(why, "mailbox path %s: \"%s\" is not allowed", rel, comp);
			rc = -1;
			break;
		}
		if (path.len == 0 || path.data[path.len - 1] != '/')
			buf_putc(&path, '/');
		buf_puts(&path, comp);
		i++;
		if (safe_dir(buf_str(&path), id, spool, owned_last && i == ndirs, why, unsafe) < 0) {
			rc = -1;
			break;
		}
	}
	free(copy);
	buf_free(&path);
	return rc;
}

int
local_safe_read_list(const char *path, const struct local_ident *id, const uid_t *owners, size_t nowners,
    struct buf *out, uid_t *owner, struct buf *why)
{
	unsigned char chunk[8192];
	struct stat st;
	ssize_t n;
	size_t i;
	int fd, e, rc = 2;

	buf_reset(out);
	if (local_become(id, why) < 0)
		return -1;
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		e = errno;
		local_unbecome();
		if (e == ENOENT || e == ENOTDIR)
			return 1;
		if (e == ELOOP) {
			buf_printf(why, "%s is a symbolic link", path);
			return 2;
		}
		buf_printf(why, "cannot open %s: %s", path, strerror(e));
		return e == EACCES ? 2 : -1;
	}
	if (fstat(fd, &st) < 0) {
		buf_printf(why, "fstat %s: %s", path, strerror(errno));
		rc = -1;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		buf_printf(why, "%s is not a regular file", path);
		goto out;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		buf_printf(why, "%s is writable by group or others", path);
		goto out;
	}
	for (i = 0; i < nowners; i++)
		if (st.st_uid == owners[i])
			break;
	if (i == nowners) {
		buf_printf(why, "%s is owned by uid %ld", path, (long)st.st_uid);
		goto out;
	}
	if (st.st_size > LOCAL_LIST_FILE_MAX) {
		buf_printf(why, "%s is larger than %d bytes", path, LOCAL_LIST_FILE_MAX);
		goto out;
	}
	for (;;) {
		n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			buf_printf(why, "read %s: %s", path, strerror(errno));
			rc = -1;
			goto out;
		}
		if (n == 0)
			break;
		if (out->len + (size_t)n > LOCAL_LIST_FILE_MAX) {
			buf_printf(why, "%s is larger than %d bytes", path, LOCAL_LIST_FILE_MAX);
			goto out;
		}
		buf_append(out, chunk, (size_t)n);
	}
	if (buf_has_nul(out)) {
		buf_printf(why, "%s contains a NUL byte", path);
		goto out;
	}
	*owner = st.st_uid;
	rc = 0;
out:
	close(fd);
	local_unbecome();
	if (rc != 0)
		buf_reset(out);
	return rc;
}
