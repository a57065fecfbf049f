/*
 * priv - identities and the one way to give up root.
 *
 * priv_drop() is the only place a Postern program changes its user: it
 * clears the supplementary groups, sets real, effective and saved group
 * and user IDs, and then verifies that none of them can be set back to 0.
 * Anything unexpected is fatal.
 */
#ifndef POSTERN_PRIV_H
#define POSTERN_PRIV_H

#include <stdbool.h>
#include <sys/types.h>

#include "buf.h"

/* Look up a user name: its uid and primary gid.  -1 with err when unknown. */
int priv_user(const char *name, uid_t *uid, gid_t *gid, struct buf *err);
/* Look up a group name.  -1 with err when unknown. */
int priv_group(const char *name, gid_t *gid, struct buf *err);

/* chroot(dir) then chdir("/"); fatal on failure. */
void priv_chroot(const char *dir);
/* Become uid/gid with no supplementary groups, irrevocably; fatal on failure. */
void priv_drop(uid_t uid, gid_t gid);
/* Become uid/gid keeping extra groups (setgid_group for showq); same checks. */
void priv_drop_groups(uid_t uid, gid_t gid, const gid_t *groups, int ngroups);

#endif
