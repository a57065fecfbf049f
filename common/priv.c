/*
 * priv - identity lookup and privilege drop (see priv.h).
 *
 * Called by the server skeleton, the master and the admin command.  It
 * trusts the password and group databases, and nothing else: after a drop
 * it proves to itself that setuid(0) fails, instead of assuming it.
 */
#include "config.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "priv.h"

int
priv_user(const char *name, uid_t *uid, gid_t *gid, struct buf *err)
{
	struct passwd *pw;

	errno = 0;
	if ((pw = getpwnam(name)) == NULL) {
		buf_printf(err, "user \"%s\": %s", name, errno ? strerror(errno) : "no such user");
		return -1;
	}
	if (pw->pw_uid == 0) {
		buf_printf(err, "user \"%s\" has user ID 0; a Postern identity must not be root", name);
		return -1;
	}
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	return 0;
}

int
priv_group(const char *name, gid_t *gid, struct buf *err)
{
	struct group *gr;

	errno = 0;
	if ((gr = getgrnam(name)) == NULL) {
		buf_printf(err, "group \"%s\": %s", name, errno ? strerror(errno) : "no such group");
		return -1;
	}
	*gid = gr->gr_gid;
	return 0;
}

void
priv_chroot(const char *dir)
{
	if (chroot(dir) < 0)
		log_fatal("chroot(%s): %m", dir);
	if (chdir("/") < 0)
		log_fatal("chdir(/) after chroot: %m");
}

void
priv_drop_groups(uid_t uid, gid_t gid, const gid_t *groups, int ngroups)
{
	uid_t ru, eu, su;
	gid_t rg, eg, sg;

	if (uid == 0)
		log_panic("priv_drop: refusing to \"drop\" to uid 0");
	if (setgroups((size_t)ngroups, ngroups ? groups : NULL) < 0)
		log_fatal("setgroups: %m");
	if (setresgid(gid, gid, gid) < 0)
		log_fatal("setresgid(%ld): %m", (long)gid);
	if (setresuid(uid, uid, uid) < 0)
		log_fatal("setresuid(%ld): %m", (long)uid);
	/* Verify: every ID is what we asked for and root is out of reach. */
	if (getresuid(&ru, &eu, &su) < 0 || ru != uid || eu != uid || su != uid)
		log_fatal("privilege drop did not take effect (uid)");
	if (getresgid(&rg, &eg, &sg) < 0 || rg != gid || eg != gid || sg != gid)
		log_fatal("privilege drop did not take effect (gid)");
	if (setuid(0) == 0 || seteuid(0) == 0)
		log_fatal("privilege drop failed: root could be regained");
	if (gid != 0 && (setgid(0) == 0 || setegid(0) == 0))
		log_fatal("privilege drop failed: group 0 could be regained");
}

void
priv_drop(uid_t uid, gid_t gid)
{
	priv_drop_groups(uid, gid, NULL, 0);
}
