/*
 * mailbox - find the Maildir of a login and its owner (see mailbox.h).
 *
 * Called by pop3d's mailbox part, as root, with a login that auth has
 * vouched for.  It trusts main.cf and the tables the admin names; it does
 * not trust what the tables hold: paths are checked so that they stay
 * inside virtual_mailbox_base, numbers are parsed strictly, and uid 0 is
 * never an answer.  It only looks things up; opening the Maildir is left
 * to the caller, after it has become the owner.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "dict.h"
#include "log.h"
#include "mailbox.h"
#include "resolve.h"
#include "str.h"
#include "xalloc.h"

#define MAILBOX_ID_MAX 4294967294LL /* (uid_t)-1 means "no change" to set*id() */

struct mailbox_maps {
	struct resolve *resolve;
	struct dict_list *maps, *uids, *gids;
};

struct mailbox_maps *
mailbox_open(struct buf *err)
{
	struct mailbox_maps *m = xcalloc(1, sizeof(*m));
	const struct {
		enum param_id id;
		struct dict_list **l;
	} lists[] = {
		{ P_VIRTUAL_MAILBOX_MAPS, &m->maps },
		{ P_VIRTUAL_UID_MAPS, &m->uids },
		{ P_VIRTUAL_GID_MAPS, &m->gids },
	};
	size_t i;

	if ((m->resolve = resolve_open(err)) == NULL)
		goto fail;
	for (i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		if ((*lists[i].l = dict_list_open(cfg_str(lists[i].id), 0, err)) == NULL) {
			buf_printf(err, " (in %s)", cfg_params[lists[i].id].name);
			goto fail;
		}
	}
	return m;
fail:
	mailbox_close(m);
	return NULL;
}

void
mailbox_close(struct mailbox_maps *m)
{
	if (m == NULL)
		return;
	resolve_close(m->resolve);
	dict_list_close(m->maps);
	dict_list_close(m->uids);
	dict_list_close(m->gids);
	free(m);
}

bool
mailbox_changed(struct mailbox_maps *m)
{
	return resolve_changed(m->resolve) || dict_list_changed(m->maps) || dict_list_changed(m->uids) ||
	       dict_list_changed(m->gids);
}

void
mailbox_free(struct mailbox *mb)
{
	free(mb->path);
	mb->path = NULL;
}

/* strip_extension - "user+ext" -> "user" with recipient_delimiter; into out */
static void
strip_extension(const char *local, size_t len, struct buf *out)
{
	const char *delim = cfg_str(P_RECIPIENT_DELIMITER);
	size_t n = len;

	if (*delim) {
		size_t i;

		for (i = 0; i < len; i++)
			if (strchr(delim, local[i]) != NULL) {
				n = i;
				break;
			}
	}
	buf_set(out, local, n);
}

/*
 * lookup_keys - look login up in l with the keys virtual(8) uses: the
 * address, the address without its extension, "@domain".
 */
static enum dict_result
lookup_keys(struct dict_list *l, const char *login, const char *at, struct buf *value)
{
	struct buf key = BUF_INIT;
	enum dict_result r;

	r = dict_list_lookup(l, login, value);
	if (r == DICT_NOTFOUND) {
		strip_extension(login, (size_t)(at - login), &key);
		if (key.len > 0 && key.len != (size_t)(at - login)) {
			buf_puts(&key, at);
			r = dict_list_lookup(l, buf_str(&key), value);
		}
	}
	if (r == DICT_NOTFOUND)
		r = dict_list_lookup(l, at, value);
	buf_free(&key);
	return r;
}

/* parse_id - a table's uid or gid: decimal, 1 to MAILBOX_ID_MAX (0 only for gids) */
static int
parse_id(const char *v, long long min, long long *out)
{
	char *copy = str_trim(xstrdup(v));
	int r = str_to_ll(copy, min, MAILBOX_ID_MAX, out, NULL);

	free(copy);
	return r;
}

/* path_ok - PATH from virtual_mailbox_maps: relative, no "..", no control bytes */
static bool
path_ok(const char *p, const char **why)
{
	const char *c, *seg;
	size_t n;

	if (*p == 0) {
		*why = "empty path";
		return false;
	}
	if (*p == '/') {
		*why = "absolute path (it must be relative to virtual_mailbox_base)";
		return false;
	}
	for (c = p; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f) {
			*why = "control character in the path";
			return false;
		}
	for (seg = p; *seg; seg += n + (seg[n] == '/')) {
		n = strcspn(seg, "/");
		if (n == 2 && seg[0] == '.' && seg[1] == '.') {
			*why = "\"..\" in the path";
			return false;
		}
	}
	return true;
}

/* maildir_path - dir + "/" + rel, minus trailing slashes; -1 when rel is not a Maildir ("/" at the end) */
static int
maildir_path(const char *dir, const char *rel, struct mailbox *out, struct buf *err)
{
	struct buf p = BUF_INIT;
	size_t n = strlen(rel);

	if (n == 0 || rel[n - 1] != '/') {
		buf_printf(err,
		    "mailbox %s/%s is not a Maildir (POP3 serves Maildir only; a Maildir path ends in \"/\")", dir,
		    rel);
		return -1;
	}
	while (n > 0 && rel[n - 1] == '/')
		n--;
	buf_puts(&p, dir);
	while (p.len > 1 && p.data[p.len - 1] == '/')
		p.len--;
	if (n > 0) {
		buf_putc(&p, '/');
		buf_append(&p, rel, n);
	}
	if (p.len >= PATH_MAX) {
		buf_printf(err, "mailbox path too long (%zu bytes)", p.len);
		buf_free(&p);
		return -1;
	}
	out->path = buf_export(&p);
	return 0;
}

static enum mailbox_result
find_virtual(struct mailbox_maps *m, const char *login, const char *at, struct mailbox *out, struct buf *err)
{
	struct buf v = BUF_INIT;
	const char *base = cfg_str(P_VIRTUAL_MAILBOX_BASE), *why;
	enum mailbox_result res = MAILBOX_REFUSED;
	enum dict_result r;
	long long uid, gid;
	char *path = NULL;

	r = lookup_keys(m->maps, login, at, &v);
	if (r == DICT_RETRY) {
		buf_printf(err, "virtual_mailbox_maps: %s", dict_list_error(m->maps));
		res = MAILBOX_RETRY;
		goto out;
	}
	if (r == DICT_NOTFOUND) {
		buf_printf(err, "%s has no entry in virtual_mailbox_maps", login);
		res = MAILBOX_NOTFOUND;
		goto out;
	}
	path = str_trim(xstrdup(buf_str(&v)));
	if (!path_ok(path, &why)) {
		buf_printf(err, "virtual_mailbox_maps entry for %s: %s", login, why);
		goto out;
	}
	if (*base != '/') {
		buf_printf(err, "virtual_mailbox_base must be an absolute path (it is \"%s\")", base);
		goto out;
	}
	r = lookup_keys(m->uids, login, at, &v);
	if (r == DICT_RETRY) {
		buf_printf(err, "virtual_uid_maps: %s", dict_list_error(m->uids));
		res = MAILBOX_RETRY;
		goto out;
	}
	if (r == DICT_NOTFOUND || parse_id(buf_str(&v), 1, &uid) < 0) {
		buf_printf(err, "virtual_uid_maps has %s for %s (a uid other than 0 is needed)",
		    r == DICT_NOTFOUND ? "no entry" : "an invalid entry", login);
		goto out;
	}
	r = lookup_keys(m->gids, login, at, &v);
	if (r == DICT_RETRY) {
		buf_printf(err, "virtual_gid_maps: %s", dict_list_error(m->gids));
		res = MAILBOX_RETRY;
		goto out;
	}
	if (r == DICT_NOTFOUND || parse_id(buf_str(&v), 0, &gid) < 0) {
		buf_printf(
		    err, "virtual_gid_maps has %s for %s", r == DICT_NOTFOUND ? "no entry" : "an invalid entry", login);
		goto out;
	}
	if (maildir_path(base, path, out, err) < 0)
		goto out;
	out->uid = (uid_t)uid;
	out->gid = (gid_t)gid;
	out->virtual = true;
	res = MAILBOX_FOUND;
out:
	free(path);
	buf_free(&v);
	return res;
}

static enum mailbox_result
find_system(const char *name, size_t len, struct mailbox *out, struct buf *err)
{
	struct buf user = BUF_INIT, rel = BUF_INIT;
	const char *home_mailbox = cfg_str(P_HOME_MAILBOX), *spool = cfg_str(P_MAIL_SPOOL_DIRECTORY);
	enum mailbox_result res = MAILBOX_REFUSED;
	struct passwd *pw;
	size_t i;

	strip_extension(name, len, &user);
	for (i = 0; i < user.len; i++)
		if (user.data[i] <= ' ' || user.data[i] == '/' || user.data[i] == 0x7f) {
			buf_strcpy(err, "the user name has a character no system user name has");
			res = MAILBOX_NOTFOUND;
			goto out;
		}
	if (user.len == 0 || user.len > 256) {
		buf_strcpy(err, "no such system user");
		res = MAILBOX_NOTFOUND;
		goto out;
	}
	errno = 0;
	if ((pw = getpwnam(buf_str(&user))) == NULL) {
		if (errno != 0 && errno != ENOENT && errno != ESRCH && errno != EBADF && errno != EPERM) {
			buf_printf(err, "getpwnam(%s): %s", buf_str(&user), strerror(errno));
			res = MAILBOX_RETRY;
		} else {
			buf_printf(err, "no system user %s", buf_str(&user));
			res = MAILBOX_NOTFOUND;
		}
		goto out;
	}
	if (pw->pw_uid == 0) {
		buf_printf(err, "system user %s has uid 0: its mail is not served", buf_str(&user));
		goto out;
	}
	if (*home_mailbox) {
		if (pw->pw_dir == NULL || pw->pw_dir[0] != '/') {
			buf_printf(err, "system user %s has no absolute home directory", buf_str(&user));
			goto out;
		}
		if (maildir_path(pw->pw_dir, home_mailbox, out, err) < 0)
			goto out;
	} else {
		size_t n = strlen(spool);

		if (n == 0 || spool[n - 1] != '/' || spool[0] != '/') {
			buf_printf(err,
			    "system user %s has an mbox mailbox (home_mailbox is empty and mail_spool_directory does "
			    "not end in \"/\"); POP3 serves Maildir only",
			    buf_str(&user));
			goto out;
		}
		buf_printf(&rel, "%s/", buf_str(&user));
		if (maildir_path(spool, buf_str(&rel), out, err) < 0)
			goto out;
	}
	out->uid = pw->pw_uid;
	out->gid = pw->pw_gid;
	out->virtual = false;
	res = MAILBOX_FOUND;
out:
	buf_free(&user);
	buf_free(&rel);
	return res;
}

enum mailbox_result
mailbox_find(struct mailbox_maps *m, const char *login, struct mailbox *out, struct buf *err)
{
	const char *at = strrchr(login, '@');
	enum mailbox_result r;

	memset(out, 0, sizeof(*out));
	buf_reset(err);
	if (*login == 0) {
		buf_strcpy(err, "empty login");
		return MAILBOX_NOTFOUND;
	}
	if (at == NULL) {
		r = find_system(login, strlen(login), out, err);
	} else if (at == login || at[1] == 0) {
		buf_strcpy(err, "the login is not an address");
		r = MAILBOX_NOTFOUND;
	} else {
		switch (resolve_domain(m->resolve, at + 1)) {
		case RESOLVE_VIRTUAL:
			r = find_virtual(m, login, at, out, err);
			break;
		case RESOLVE_LOCAL:
			r = find_system(login, (size_t)(at - login), out, err);
			break;
		case RESOLVE_RETRY:
			buf_printf(err, "cannot tell now whether %s is a domain of ours", at + 1);
			r = MAILBOX_RETRY;
			break;
		default:
			buf_printf(err, "%s is neither in mydestination nor in virtual_mailbox_domains", at + 1);
			r = MAILBOX_NOTFOUND;
			break;
		}
	}
	/* Belt and braces: root's mail is never served, whatever a table says. */
	if (r == MAILBOX_FOUND && out->uid == 0) {
		mailbox_free(out);
		buf_strcpy(err, "mailbox owner is uid 0");
		r = MAILBOX_REFUSED;
	}
	if (r != MAILBOX_FOUND)
		mailbox_free(out);
	return r;
}
