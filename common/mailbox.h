/*
 * mailbox - where the mailbox of a login is, and who owns it.
 *
 * pop3d's mailbox part asks this after auth has vouched for a login (the
 * canonical name from auth_passwd_maps).  The answer follows the same
 * settings that delivery follows:
 *
 *   user@domain, domain in virtual_mailbox_domains:
 *       virtual_mailbox_maps, tried with the address, the address without
 *       its extension (recipient_delimiter), then "@domain", gives PATH;
 *       the mailbox is virtual_mailbox_base/PATH.  virtual_uid_maps and
 *       virtual_gid_maps, with the same keys, give its owner.
 *   user, or user@domain with domain in mydestination:
 *       the system user (getpwnam, extension removed), mailbox
 *       HOME/home_mailbox, or mail_spool_directory/USER/ when home_mailbox
 *       is empty and mail_spool_directory ends in "/".
 *
 * POP3 serves Maildir only: a PATH or home_mailbox that does not end in
 * "/" (an mbox file) is refused, with a reason that says so.  So is an
 * owner with uid 0, a PATH that leaves virtual_mailbox_base ("..", an
 * absolute path), and a table value that is not a number.
 */
#ifndef POSTERN_MAILBOX_H
#define POSTERN_MAILBOX_H

#include <stdbool.h>
#include <sys/types.h>

#include "buf.h"

enum mailbox_result {
	MAILBOX_FOUND,
	MAILBOX_NOTFOUND, /* no mailbox for this login */
	MAILBOX_REFUSED,  /* there is one, but it cannot be served (mbox, uid 0, bad path) */
	MAILBOX_RETRY,    /* a table answered try-again */
};

struct mailbox {
	char *path; /* absolute path of the Maildir, without a trailing "/" */
	uid_t uid;  /* its owner: never 0 */
	gid_t gid;
	bool virtual; /* virtual_mailbox_maps (else a system user) */
};

struct mailbox_maps;

/* Open the tables of the current configuration; NULL with err on a bad setting. */
struct mailbox_maps *mailbox_open(struct buf *err);
void mailbox_close(struct mailbox_maps *m);
/* True when a table behind the answer changed since it was opened. */
bool mailbox_changed(struct mailbox_maps *m);

/*
 * The mailbox of login (lower case, as auth returns it).  FOUND fills
 * out (free it with mailbox_free); every other result puts the reason,
 * for the log, in err.
 */
enum mailbox_result mailbox_find(struct mailbox_maps *m, const char *login, struct mailbox *out, struct buf *err);
void mailbox_free(struct mailbox *mb);

#endif
