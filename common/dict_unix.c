/*
 * dict_unix - "unix:passwd.byname": the system's users as a table, for
 * local_recipient_maps.
 *
 * The users are read once, when the table is opened (in a daemon's
 * pre_init, before any chroot), into memory; a chrooted smtpd can then
 * validate local recipients without reaching /etc/passwd.  The table
 * watches /etc/passwd through the descriptor it read, so a daemon learns
 * of new users (dict_changed) and is replaced by a fresh one.  Keys are
 * user names (folded unless DICT_FLAG_NOFOLD); values are passwd lines
 * "name:x:uid:gid:gecos:home:shell".
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dict_impl.h"
#include "xalloc.h"

#define PASSWD_FILE "/etc/passwd"

struct dict *
dict_unix_open(const char *name, int flags, struct buf *err)
{
	struct dict_memtab *p;
	struct passwd *pw;
	struct buf line = BUF_INIT;
	struct dict *d;
	char *key;
	int fd;

	if (strcmp(name, "passwd.byname") != 0) {
		buf_printf(err, "unix:%s: unsupported table (only unix:passwd.byname)", name);
		return NULL;
	}
	if (flags & (DICT_FLAG_WRITE | DICT_FLAG_CREATE)) {
		buf_printf(err, "unix:%s: read-only table", name);
		return NULL;
	}
	/* Hold the file we enumerate so a replacement is noticed even in a chroot. */
	fd = open(PASSWD_FILE, O_RDONLY | O_CLOEXEC);
	d = dict_alloc("unix", name, flags, &dict_memtab_ops);
	p = xcalloc(1, sizeof(*p));
	p->tab = dict_htab_new();
	p->fd = fd;
	d->priv = p;
	errno = 0;
	setpwent();
	while ((pw = getpwent()) != NULL) {
		key = xstrdup(pw->pw_name);
		if (!(flags & DICT_FLAG_NOFOLD))
			dict_fold(key, strlen(key));
		buf_reset(&line);
		buf_printf(&line, "%s:x:%ld:%ld:%s:%s:%s", pw->pw_name, (long)pw->pw_uid, (long)pw->pw_gid,
		    pw->pw_gecos ? pw->pw_gecos : "", pw->pw_dir ? pw->pw_dir : "", pw->pw_shell ? pw->pw_shell : "");
		if (dict_htab_put(p->tab, key, strlen(key), line.data, line.len) < 0) {
			free(key);
			break;
		}
		free(key);
	}
	endpwent();
	buf_free(&line);
	if (fd >= 0)
		dict_watch(d, PASSWD_FILE, fd);
	return d;
}
