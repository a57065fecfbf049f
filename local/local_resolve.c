/*
 * local_resolve - what the local delivery agent does with one request:
 * read the message's envelope and header from the queue file qmgr
 * passed, decide for each recipient what delivery means, do it, and
 * report one status per recipient.
 *
 *   virtual_mailbox_domains  virtual_mailbox_maps -> a Maildir or mbox
 *                            under virtual_mailbox_base, as the uid and
 *                            gid from virtual_uid_maps/virtual_gid_maps
 *   anything else            alias_maps (local part), then the user's
 *                            .forward (forward_path), then the mailbox:
 *                            mailbox_command, home_mailbox, or
 *                            mail_spool_directory
 *
 * Alias, .forward and :include: destinations nest (local_recursion_limit,
 * local_expansion_limit); an address met again on its own expansion path
 * is a loop, one met again elsewhere in the request is a duplicate and is
 * delivered once (duplicate_filter_limit).  Addresses that are not local
 * are forwarded: one new message through cleanup, with a Delivered-To
 * line so that it is recognised if it comes back.  A recipient that
 * expands to several destinations gets the worst outcome among them
 * (deferred, then bounced, then sent).
 *
 * Trusted: qmgr (the request) and main.cf.  Not trusted: the message
 * (its header is scanned with bounded lines), the tables and files that
 * name destinations (parsed with limits, checked for ownership).
 */
#include "config.h"

#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "cleanup_client.h"
#include "local.h"
#include "log.h"
#include "resolve.h"
#include "str.h"
#include "xalloc.h"

struct local_conf local_conf;

static struct resolve *lr_resolve;
static struct dict_list *lr_vmailbox, *lr_vuid, *lr_vgid;
static char *lr_default_home;

/* ---------------------------------------------------------------- one recipient */

/* Forwarded addresses that share one Delivered-To line. */
struct lr_fwd {
	char *dt;
	char **addrs;
	size_t n;
};

/* Everything one original recipient expands to. */
struct lr_state {
	struct local_msg *m;
	const struct deliver_rcpt *orig;
	int nexp;                  /* destinations so far */
	bool any;                  /* some destination has an outcome */
	struct local_result worst; /* the worst outcome so far */
	struct buf sent;           /* what was delivered, for the reason */
	unsigned ndup;             /* destinations skipped as duplicates */
	struct lr_fwd *fwd;
	size_t nfwd;
	char **anc; /* the addresses being expanded, outermost first */
	size_t nanc;
};

/* A user from the password database, copied (getpw* reuse their storage). */
struct lr_user {
	char *name;
	uid_t uid;
	gid_t gid;
	char *home;
};

static void lr_local(struct lr_state *s, const char *addr, int depth, bool self_only);

static int
rank(enum deliver_status st)
{
	return st == DELIVER_DEFERRED ? 2 : st == DELIVER_BOUNCED ? 1 : 0;
}

/* lr_merge - fold one destination's outcome into the recipient's */
static void
lr_merge(struct lr_state *s, const struct local_result *r)
{
	if (r->status == DELIVER_SENT && s->sent.len < LOCAL_REASON_MAX) {
		if (s->sent.len > 0)
			buf_puts(&s->sent, "; ");
		buf_append(&s->sent, r->reason.data, r->reason.len);
	}
	if (!s->any || rank(r->status) > rank(s->worst.status)) {
		s->worst.status = r->status;
		strlcpy(s->worst.dsn, r->dsn, sizeof(s->worst.dsn));
		buf_set(&s->worst.reason, r->reason.data, r->reason.len);
	}
	s->any = true;
}

/* lr_leaf - an outcome decided here rather than by a delivery */
static void __attribute__((format(printf, 4, 5)))
lr_leaf(struct lr_state *s, enum deliver_status st, const char *dsn, const char *fmt, ...)
{
	struct local_result r;
	va_list ap;

	local_result_init(&r);
	r.status = st;
	strlcpy(r.dsn, dsn, sizeof(r.dsn));
	va_start(ap, fmt);
	buf_vprintf(&r.reason, fmt, ap);
	va_end(ap);
	lr_merge(s, &r);
	local_result_free(&r);
}

static void
lr_user_free(struct lr_user *u)
{
	free(u->name);
	free(u->home);
	memset(u, 0, sizeof(*u));
}

static void
lr_user_copy(const struct passwd *pw, struct lr_user *u)
{
	u->name = xstrdup(pw->pw_name);
	u->uid = pw->pw_uid;
	u->gid = pw->pw_gid;
	u->home = xstrdup(pw->pw_dir ? pw->pw_dir : "");
}

/* lr_getpw - a system user by name: 0 found, 1 unknown, -1 the lookup failed */
static int
lr_getpw(const char *name, struct lr_user *u, struct buf *why)
{
	struct passwd *pw;

	errno = 0;
	if ((pw = getpwnam(name)) != NULL) {
		lr_user_copy(pw, u);
		return 0;
	}
	if (errno == 0 || errno == ENOENT || errno == ESRCH || errno == EBADF || errno == EPERM)
		return 1;
	buf_printf(why, "cannot look up user %s: %s", name, strerror(errno));
	return -1;
}

/* lr_default_ident - default_privs: mail for root, and commands of root-owned files */
static void
lr_default_ident(struct local_ident *id)
{
	id->uid = local_conf.default_uid;
	id->gid = local_conf.default_gid;
	id->user = local_conf.default_user;
	id->home = lr_default_home;
}

/* lr_user_ident - who delivers for a system user (never root) */
static void
lr_user_ident(const struct lr_user *u, struct local_ident *id)
{
	if (u->uid == 0) {
		lr_default_ident(id);
		return;
	}
	id->uid = u->uid;
	id->gid = u->gid;
	id->user = u->name;
	id->home = u->home;
}

/* lr_owner_ident - who runs the commands and files named in a file owned by uid */
static void
lr_owner_ident(uid_t owner, struct lr_user *store, struct local_ident *id)
{
	struct passwd *pw;

	if (owner == 0 || !local_privileged) {
		lr_default_ident(id);
		return;
	}
	if ((pw = getpwuid(owner)) != NULL) {
		lr_user_copy(pw, store);
		lr_user_ident(store, id);
		return;
	}
	/* A uid without a name: its own uid, the default group, no extra groups. */
	id->uid = owner;
	id->gid = local_conf.default_gid;
	id->user = NULL;
	id->home = NULL;
}

/* lr_rel_ok - a mailbox path from a table: no "." or ".." components */
static bool
lr_rel_ok(const char *rel)
{
	const char *p = rel, *e;
	size_t n;

	if (*rel == 0)
		return false;
	while (*p) {
		e = strchr(p, '/');
		n = e ? (size_t)(e - p) : strlen(p);
		if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		p += n;
		if (*p == '/')
			p++;
	}
	return true;
}

/* lr_store - deliver into a Maildir (rel ends in '/') or an mbox file, base/rel; spool: base is the mail spool */
static void
lr_store(struct lr_state *s, const struct local_addr *a, const char *base, const char *rel,
    const struct local_ident *id, long long limit, bool spool)
{
	struct buf path = BUF_INIT, key = BUF_INIT, why = BUF_INIT;
	struct local_result r;
	bool maildir = str_ends_with(rel, "/"), unsafe = false;
	const char *p;
	size_t ncomp = 0;
	int rc;

	if (!lr_rel_ok(rel)) {
		lr_leaf(s, DELIVER_DEFERRED, "4.3.5", "configuration error: mailbox path \"%s\" for %s is not allowed",
		    rel, a->addr);
		return;
	}
	for (p = rel; *p; p++)
		if (*p != '/' && (p == rel || p[-1] == '/'))
			ncomp++;
	buf_puts(&path, base);
	if (*base && !str_ends_with(base, "/") && rel[0] != '/')
		buf_putc(&path, '/');
	buf_puts(&path, rel);
	while (path.len > 1 && path.data[path.len - 1] == '/')
		buf_truncate(&path, path.len - 1);
	buf_printf(&key, "%s:%s", maildir ? "maildir" : "mbox", buf_str(&path));
	if (local_dup_seen(s->m->dup, buf_str(&key))) {
		s->ndup++;
		goto out;
	}
	local_result_init(&r);
	if (local_become(id, &why) < 0) {
		local_result_set(&r, DELIVER_DEFERRED, "4.3.0", "%s", buf_str(&why));
	} else {
		rc = local_safe_mkdirs(base, rel, maildir ? ncomp : ncomp - 1, maildir, spool, id, &why, &unsafe);
		local_unbecome();
		if (rc < 0) {
			if (unsafe)
				log_warn("%s: %s: unsafe mailbox: %s", s->m->queue_id, a->addr, buf_str(&why));
			local_result_set(&r, DELIVER_DEFERRED, unsafe ? "4.2.0" : "4.3.0",
			    "mailbox delivery failed: %s", buf_str(&why));
		} else if (maildir) {
			local_maildir_deliver(s->m, a->addr, buf_str(&path), id, &r);
		} else {
			local_mbox_deliver(s->m, a->addr, buf_str(&path), id, limit,
			    LOCAL_MBOX_OWNER | (spool ? LOCAL_MBOX_SPOOL : 0), &r);
		}
	}
	if (r.status == DELIVER_SENT)
		local_dup_add(s->m->dup, buf_str(&key));
	lr_merge(s, &r);
	local_result_free(&r);
out:
	buf_free(&path);
	buf_free(&key);
	buf_free(&why);
}

/* lr_vlookup - address, address without extension, @domain */
static enum dict_result
lr_vlookup(struct dict_list *l, const struct local_addr *a, struct buf *val)
{
	enum dict_result r;
	char *key;

	if ((r = dict_list_lookup(l, a->addr, val)) != DICT_NOTFOUND)
		return r;
	if (*a->ext) {
		key = xasprintf("%s@%s", a->user, a->domain);
		r = dict_list_lookup(l, key, val);
		free(key);
		if (r != DICT_NOTFOUND)
			return r;
	}
	key = xasprintf("@%s", a->domain);
	r = dict_list_lookup(l, key, val);
	free(key);
	return r;
}

/* lr_vid - a uid or gid for a virtual mailbox: 0, or -1 after recording a deferral */
static int
lr_vid(struct lr_state *s, struct dict_list *l, const struct local_addr *a, const char *param, long long *out)
{
	struct buf val = BUF_INIT;
	enum dict_result r = lr_vlookup(l, a, &val);
	int rc = -1;

	buf_reserve(&val, 0); /* a terminated string even when empty */
	if (r == DICT_RETRY)
		lr_leaf(
		    s, DELIVER_DEFERRED, "4.3.0", "%s lookup for %s failed: %s", param, a->addr, dict_list_error(l));
	else if (r == DICT_NOTFOUND)
		lr_leaf(s, DELIVER_DEFERRED, "4.3.5", "configuration error: no %s entry for %s", param, a->addr);
	else if (str_to_ll(str_trim((char *)val.data), 1, 0x7ffffffe, out, NULL) < 0)
		lr_leaf(s, DELIVER_DEFERRED, "4.3.5",
		    "configuration error: %s gives \"%s\" for %s (not a number above 0)", param, buf_str(&val),
		    a->addr);
	else
		rc = 0;
	buf_free(&val);
	return rc;
}

/* lr_virtual - a recipient in a virtual mailbox domain */
static void
lr_virtual(struct lr_state *s, const char *addr)
{
	struct local_addr a;
	struct local_ident id;
	struct buf val = BUF_INIT;
	enum dict_result r;
	long long uid, gid;
	char *rel;

	local_addr_split(&a, addr, local_conf.recipient_delimiter, false);
	if (local_dt_match(s->m->dt, s->m->ndt, a.addr)) {
		lr_leaf(s, DELIVER_BOUNCED, "5.4.6", "mail forwarding loop for %s", a.addr);
		goto out;
	}
	r = lr_vlookup(lr_vmailbox, &a, &val);
	if (r == DICT_RETRY) {
		lr_leaf(s, DELIVER_DEFERRED, "4.3.0", "virtual_mailbox_maps lookup for %s failed: %s", a.addr,
		    dict_list_error(lr_vmailbox));
		goto out;
	}
	if (r == DICT_NOTFOUND) {
		lr_leaf(s, DELIVER_BOUNCED, "5.1.1", "unknown user: \"%s\"", a.addr);
		goto out;
	}
	if (lr_vid(s, lr_vuid, &a, "virtual_uid_maps", &uid) < 0 ||
	    lr_vid(s, lr_vgid, &a, "virtual_gid_maps", &gid) < 0)
		goto out;
	buf_reserve(&val, 0); /* a terminated string even when empty */
	rel = str_trim((char *)val.data);
	if (*local_conf.virtual_mailbox_base == 0 && rel[0] != '/') {
		lr_leaf(s, DELIVER_DEFERRED, "4.3.5", "configuration error: virtual_mailbox_base is not set");
		goto out;
	}
	id.uid = (uid_t)uid;
	id.gid = (gid_t)gid;
	id.user = NULL;
	id.home = NULL;
	lr_store(s, &a, local_conf.virtual_mailbox_base, rel, &id, local_conf.virtual_mailbox_limit, false);
out:
	buf_free(&val);
	local_addr_free(&a);
}

/* lr_command - a |command destination */
static void
lr_command(struct lr_state *s, const struct local_addr *a, const char *cmd, const struct local_ident *id)
{
	struct local_result r;
	char *key = xasprintf("command:%ld:%s", (long)id->uid, cmd);

	if (local_dup_seen(s->m->dup, key)) {
		s->ndup++;
		free(key);
		return;
	}
	local_result_init(&r);
	local_pipe_deliver(s->m, a, cmd, id, &r);
	if (r.status == DELIVER_SENT)
		local_dup_add(s->m->dup, key);
	lr_merge(s, &r);
	local_result_free(&r);
	free(key);
}

/* lr_file - a /file destination */
static void
lr_file(struct lr_state *s, const struct local_addr *a, const char *path, const struct local_ident *id)
{
	struct local_result r;
	char *key = xasprintf("file:%s", path);

	if (local_dup_seen(s->m->dup, key)) {
		s->ndup++;
		free(key);
		return;
	}
	local_result_init(&r);
	local_mbox_deliver(s->m, a->addr, path, id, local_conf.mailbox_size_limit, 0, &r);
	if (r.status == DELIVER_SENT) {
		local_dup_add(s->m->dup, key);
		buf_reset(&r.reason);
		buf_printf(&r.reason, "delivered to file: %s", path);
	}
	lr_merge(s, &r);
	local_result_free(&r);
	free(key);
}

/* lr_forward_add - remember an address to forward to, under the Delivered-To it gets */
static void
lr_forward_add(struct lr_state *s, const char *dt, const char *addr)
{
	struct lr_fwd *f = NULL;
	char *key = xasprintf("forward:%s", addr);
	size_t i;

	str_lower(key);
	if (local_dup_seen(s->m->dup, key)) {
		s->ndup++;
		free(key);
		return;
	}
	free(key);
	for (i = 0; i < s->nfwd; i++)
		if (strcmp(s->fwd[i].dt, dt) == 0)
			f = &s->fwd[i];
	if (f == NULL) {
		s->fwd = xreallocarray(s->fwd, s->nfwd + 1, sizeof(*s->fwd));
		f = &s->fwd[s->nfwd++];
		memset(f, 0, sizeof(*f));
		f->dt = xstrdup(dt);
	}
	for (i = 0; i < f->n; i++)
		if (str_casecmp(f->addrs[i], addr) == 0)
			return;
	f->addrs = xreallocarray(f->addrs, f->n + 1, sizeof(*f->addrs));
	f->addrs[f->n++] = xstrdup(addr);
}

/* fwd_write - one piece of the content to cleanup */
static int
fwd_write(void *arg, const unsigned char *p, size_t n)
{
	return cleanup_write(arg, p, n) < 0 ? -1 : 0;
}

/* lr_forward_flush - submit the forwarded copies through cleanup */
static void
lr_forward_flush(struct lr_state *s)
{
	const struct qfile_env *env = s->m->env;
	struct cleanup_client cc;
	struct cleanup_result res;
	struct cleanup_env ce;
	struct cleanup_rcpt *rc;
	struct buf err = BUF_INIT, head = BUF_INIT;
	const char *v;
	size_t i, j;
	int r = 0;

	for (i = 0; i < s->nfwd; i++) {
		struct lr_fwd *f = &s->fwd[i];

		memset(&ce, 0, sizeof(ce));
		ce.sender = s->m->sender;
		ce.flags = s->m->flags & CLEANUP_FLAG_BOUNCE; /* aliases apply again: not NO_ALIAS */
		ce.protocol = "local";
		ce.envid = qfile_env_attr(env, CLEANUP_ATTR_ENVID);
		ce.ret = qfile_env_attr(env, CLEANUP_ATTR_RET);
		ce.body = qfile_env_attr(env, CLEANUP_ATTR_BODY);
		ce.smtputf8 = (v = qfile_env_attr(env, CLEANUP_ATTR_SMTPUTF8)) != NULL && strcmp(v, "0") != 0;
		rc = xcalloc(f->n, sizeof(*rc));
		for (j = 0; j < f->n; j++) {
			rc[j].addr = f->addrs[j];
			rc[j].orcpt = s->orig->orcpt;
			rc[j].notify = s->orig->notify;
		}
		ce.rcpts = rc;
		ce.nrcpts = f->n;
		cleanup_result_init(&res);
		buf_reset(&err);
		buf_reset(&head);
		r = 0;
		if (cleanup_open(&cc, &ce, local_conf.ipc_timeout, &err) < 0) {
			lr_leaf(s, DELIVER_DEFERRED, "4.3.0", "cannot forward to %s: %s", f->addrs[0], buf_str(&err));
			log_warn("%s: cannot forward: %s", s->m->queue_id, buf_str(&err));
			goto next;
		}
		buf_puts(&head, "Delivered-To: ");
		local_hdr_value(&head, f->dt);
		buf_putc(&head, '\n');
		if (cleanup_write(&cc, head.data, head.len) < 0 ||
		    (r = local_msg_content(s->m, fwd_write, &cc, &err)) != 0) {
			cleanup_abort(&cc);
			if (r < 0)
				lr_leaf(s, DELIVER_DEFERRED, "4.3.0", "reading the queue file: %s", buf_str(&err));
			else
				lr_leaf(s, DELIVER_DEFERRED, "4.3.0",
				    "cannot forward to %s: lost the connection to cleanup", f->addrs[0]);
			goto next;
		}
		cleanup_finish(&cc, &res);
		if (res.status == CLEANUP_STAT_OK) {
			lr_leaf(s, DELIVER_SENT, "2.0.0", "forwarded as %s", res.queue_id);
			for (j = 0; j < f->n; j++) {
				char *key = str_lower(xasprintf("forward:%s", f->addrs[j]));

				local_dup_add(s->m->dup, key);
				free(key);
			}
		} else {
			bool perm = res.status == CLEANUP_STAT_PERM && res.dsn[0] == '5';

			lr_leaf(s, perm ? DELIVER_BOUNCED : DELIVER_DEFERRED, perm ? res.dsn : "4.3.0",
			    "cannot forward to %s: %s", f->addrs[0], buf_str(&res.reason));
		}
	next:
		cleanup_result_free(&res);
		free(rc);
	}
	buf_free(&err);
	buf_free(&head);
}

static void lr_expand(struct lr_state *s, const struct local_dests *d, const struct local_addr *a, int depth, int src,
    const struct local_ident *id, uid_t inc_owner, bool root_ok);

/* lr_include - an :include: file: its destinations, as its owner */
static void
lr_include(struct lr_state *s, const struct local_addr *a, const char *path, int depth, const struct local_ident *id,
    uid_t inc_owner, bool root_ok)
{
	struct buf text = BUF_INIT, why = BUF_INIT;
	struct local_dests d = { NULL, 0 };
	struct local_ident nid;
	struct lr_user store = { NULL, 0, 0, NULL };
	uid_t owners[2] = { inc_owner, 0 }, owner = 0;
	int r;

	if (depth + 1 > local_conf.recursion_limit) {
		lr_leaf(s, DELIVER_BOUNCED, "5.4.6", "mail forwarding loop for %s: nested more than %d levels deep",
		    a->addr, local_conf.recursion_limit);
		return;
	}
	r = local_safe_read_list(path, id, owners, root_ok ? 2 : 1, &text, &owner, &why);
	if (r == 1) {
		log_warn("%s: %s: :include: file %s does not exist", s->m->queue_id, a->addr, path);
		lr_leaf(s, DELIVER_DEFERRED, "4.3.0", ":include: file %s does not exist", path);
	} else if (r == 2) {
		log_warn("%s: %s: unsafe :include: file ignored: %s", s->m->queue_id, a->addr, buf_str(&why));
		lr_leaf(s, DELIVER_DEFERRED, "4.3.0", "unsafe :include: file: %s", buf_str(&why));
	} else if (r < 0) {
		lr_leaf(s, DELIVER_DEFERRED, "4.3.0", ":include: file: %s", buf_str(&why));
	} else if (local_alias_parse((char *)text.data, text.len, true, (size_t)local_conf.expansion_limit, &d, &why) <
	           0) {
		log_warn("%s: %s: :include: file %s: %s", s->m->queue_id, a->addr, path, buf_str(&why));
		lr_leaf(s, DELIVER_DEFERRED, "4.3.0", ":include: file %s: %s", path, buf_str(&why));
	} else {
		lr_owner_ident(owner, &store, &nid);
		lr_expand(s, &d, a, depth + 1, LOCAL_SRC_INCLUDE, &nid, inc_owner, root_ok);
	}
	local_dests_free(&d);
	lr_user_free(&store);
	buf_free(&text);
	buf_free(&why);
}

/* lr_member - an address in an alias, .forward or :include: list */
static void
lr_member(struct lr_state *s, const struct local_addr *a, const char *value, int depth)
{
	enum resolve_class cls;
	const char *at = strrchr(value, '@');
	char *q, *dom;
	bool self;

	if (at == NULL) {
		char *lv = str_lower(xstrdup(value));

		/* "name: name, other" delivers to name's own mailbox. */
		self = strcmp(lv, a->local) == 0 || strcmp(lv, a->user) == 0;
		q = xasprintf("%s@%s", value, a->domain);
		lr_local(s, q, depth + 1, self);
		free(lv);
		free(q);
		return;
	}
	dom = str_lower(xstrdup(at + 1));
	cls = *dom ? resolve_domain(lr_resolve, dom) : RESOLVE_LOCAL;
	free(dom);
	if (cls == RESOLVE_RETRY)
		lr_leaf(s, DELIVER_DEFERRED, "4.3.0", "cannot resolve the domain of %s now", value);
	else if (cls == RESOLVE_LOCAL)
		lr_local(s, value, depth + 1, str_casecmp(value, a->addr) == 0);
	else
		lr_forward_add(s, a->addr, value);
}

/* lr_expand - the destinations of an alias, a .forward or an :include: file */
static void
lr_expand(struct lr_state *s, const struct local_dests *d, const struct local_addr *a, int depth, int src,
    const struct local_ident *id, uid_t inc_owner, bool root_ok)
{
	const struct local_dest *dest;
	const char *what = src == LOCAL_SRC_ALIAS ? "alias" : src == LOCAL_SRC_FORWARD ? ".forward" : ":include:";
	size_t i;

	for (i = 0; i < d->n; i++) {
		dest = &d->v[i];
		if (++s->nexp > local_conf.expansion_limit) {
			lr_leaf(s, DELIVER_BOUNCED, "5.3.0",
			    "%s expands to more than %d destinations (local_expansion_limit)", s->orig->addr,
			    local_conf.expansion_limit);
			return;
		}
		switch (dest->type) {
		case LOCAL_DEST_ADDR:
			lr_member(s, a, dest->value, depth);
			break;
		case LOCAL_DEST_SELF: {
			char *q = xasprintf("%s@%s", dest->value, a->domain);

			lr_local(s, q, depth + 1, true);
			free(q);
			break;
		}
		case LOCAL_DEST_COMMAND:
			if (!(local_conf.allow_commands & src))
				lr_leaf(s, DELIVER_BOUNCED, "5.7.1",
				    "mail to command is not allowed in %s destinations (allow_mail_to_commands): %s",
				    what, a->addr);
			else
				lr_command(s, a, dest->value, id);
			break;
		case LOCAL_DEST_FILE:
			if (!(local_conf.allow_files & src))
				lr_leaf(s, DELIVER_BOUNCED, "5.7.1",
				    "mail to file is not allowed in %s destinations (allow_mail_to_files): %s", what,
				    a->addr);
			else
				lr_file(s, a, dest->value, id);
			break;
		case LOCAL_DEST_INCLUDE:
			lr_include(s, a, dest->value, depth, id, inc_owner, root_ok);
			break;
		}
	}
}

/* lr_alias - alias_maps; true when the address is an alias (whatever came of it) */
static bool
lr_alias(struct lr_state *s, const struct local_addr *a, int depth)
{
	struct buf val = BUF_INIT, why = BUF_INIT;
	struct local_dests d = { NULL, 0 };
	struct local_ident id;
	struct lr_user store = { NULL, 0, 0, NULL };
	enum dict_result r = DICT_NOTFOUND;
	const char *keys[2], *key = NULL;
	size_t nkeys = 0, i;
	uid_t owner = 0;

	if (*a->ext)
		keys[nkeys++] = a->local;
	keys[nkeys++] = a->user;
	for (i = 0; i < nkeys && r == DICT_NOTFOUND; i++)
		r = local_alias_lookup(key = keys[i], &val, &owner, &why);
	if (r == DICT_NOTFOUND)
		goto out;
	if (r == DICT_RETRY) {
		lr_leaf(s, DELIVER_DEFERRED, "4.3.0", "alias_maps lookup for %s failed: %s", key, buf_str(&why));
		goto out;
	}
	if (local_alias_parse((char *)val.data, val.len, false, (size_t)local_conf.expansion_limit, &d, &why) < 0) {
		log_warn("%s: alias %s: %s", s->m->queue_id, key, buf_str(&why));
		lr_leaf(s, DELIVER_DEFERRED, "4.3.0", "alias %s has a malformed value: %s", key, buf_str(&why));
		goto out;
	}
	lr_owner_ident(owner, &store, &id);
	lr_expand(s, &d, a, depth, LOCAL_SRC_ALIAS, &id, local_privileged ? owner : geteuid(), true);
out:
	local_dests_free(&d);
	lr_user_free(&store);
	buf_free(&val);
	buf_free(&why);
	return r != DICT_NOTFOUND;
}

/* lr_dotforward - the user's .forward; true when one was used */
static bool
lr_dotforward(struct lr_state *s, const struct local_addr *a, const struct lr_user *u, int depth)
{
	struct buf paths = BUF_INIT, text = BUF_INIT, why = BUF_INIT;
	struct local_dests d = { NULL, 0 };
	struct local_ident id;
	char *p, *path;
	uid_t owners[1], owner;
	bool used = false;
	int r;

	if (*local_conf.forward_path == 0)
		return false;
	lr_user_ident(u, &id);
	owners[0] = local_privileged ? u->uid : geteuid();
	if (local_path_expand(local_conf.forward_path, a, u->home, u->name, &paths, &why) < 0) {
		log_warn("forward_path: %s", buf_str(&why));
		lr_leaf(s, DELIVER_DEFERRED, "4.3.5", "configuration error in forward_path: %s", buf_str(&why));
		used = true;
		goto out;
	}
	p = (char *)paths.data;
	while (p != NULL && (path = str_token(&p, STR_LIST_SEP)) != NULL) {
		if (*path != '/')
			continue;
		buf_reset(&why);
		r = local_safe_read_list(path, &id, owners, 1, &text, &owner, &why);
		if (r == 1)
			continue;
		if (r == 2) {
			log_warn("%s: %s: ignoring .forward file: %s", s->m->queue_id, a->addr, buf_str(&why));
			continue;
		}
		if (r < 0) {
			lr_leaf(s, DELIVER_DEFERRED, "4.3.0", "cannot read %s: %s", path, buf_str(&why));
			used = true;
			break;
		}
		if (local_alias_parse((char *)text.data, text.len, true, (size_t)local_conf.expansion_limit, &d, &why) <
		    0) {
			log_warn("%s: %s: ignoring .forward file %s: %s", s->m->queue_id, a->addr, path, buf_str(&why));
			continue;
		}
		if (d.n == 0)
			continue; /* an empty .forward: the mailbox as usual */
		lr_expand(s, &d, a, depth, LOCAL_SRC_FORWARD, &id, owners[0], false);
		used = true;
		break;
	}
out:
	local_dests_free(&d);
	buf_free(&paths);
	buf_free(&text);
	buf_free(&why);
	return used;
}

/* lr_mailbox - a system user's mailbox: mailbox_command, home_mailbox or the spool */
static void
lr_mailbox(struct lr_state *s, const struct local_addr *a, const struct lr_user *u)
{
	struct local_ident id;
	char *rel;

	lr_user_ident(u, &id);
	if (*local_conf.mailbox_command) {
		lr_command(s, a, local_conf.mailbox_command, &id);
	} else if (*local_conf.home_mailbox) {
		if (u->home[0] != '/')
			lr_leaf(s, DELIVER_DEFERRED, "4.3.0", "user %s has no usable home directory", u->name);
		else
			lr_store(s, a, u->home, local_conf.home_mailbox, &id, local_conf.mailbox_size_limit, false);
	} else {
		rel = xasprintf("%s%s", u->name, str_ends_with(local_conf.mail_spool_directory, "/") ? "/" : "");
		lr_store(s, a, local_conf.mail_spool_directory, rel, &id, local_conf.mailbox_size_limit, true);
		free(rel);
	}
}

/* lr_ancestor - is addr being expanded already, further up? */
static bool
lr_ancestor(const struct lr_state *s, const char *addr)
{
	size_t i;

	for (i = 0; i < s->nanc; i++)
		if (str_casecmp(s->anc[i], addr) == 0)
			return true;
	return false;
}

/* lr_local - a recipient in a local domain (or any domain qmgr sent us as local) */
static void
lr_local(struct lr_state *s, const char *addr, int depth, bool self_only)
{
	struct local_addr a;
	struct lr_user u = { NULL, 0, 0, NULL };
	struct buf why = BUF_INIT;
	char *q = NULL;
	int r;

	if (strchr(addr, '@') == NULL)
		addr = q = xasprintf("%s@%s", addr, local_conf.myhostname);
	local_addr_split(&a, addr, local_conf.recipient_delimiter, true);
	free(q);
	if (depth > local_conf.recursion_limit) {
		lr_leaf(s, DELIVER_BOUNCED, "5.4.6", "mail forwarding loop for %s: nested more than %d levels deep",
		    a.addr, local_conf.recursion_limit);
		goto out;
	}
	if (local_dt_match(s->m->dt, s->m->ndt, a.addr)) {
		lr_leaf(s, DELIVER_BOUNCED, "5.4.6", "mail forwarding loop for %s", a.addr);
		goto out;
	}
	if (!self_only && lr_ancestor(s, a.addr)) {
		lr_leaf(s, DELIVER_BOUNCED, "5.4.6", "mail forwarding loop for %s (it expands to itself)", a.addr);
		goto out;
	}
	s->anc = xreallocarray(s->anc, s->nanc + 1, sizeof(*s->anc));
	s->anc[s->nanc++] = a.addr;
	if (self_only || !lr_alias(s, &a, depth)) {
		if ((r = lr_getpw(a.user, &u, &why)) > 0)
			lr_leaf(s, DELIVER_BOUNCED, "5.1.1", "unknown user: \"%s\"", a.user);
		else if (r < 0)
			lr_leaf(s, DELIVER_DEFERRED, "4.3.0", "%s", buf_str(&why));
		else if (self_only || !lr_dotforward(s, &a, &u, depth))
			lr_mailbox(s, &a, &u);
	}
	s->nanc--;
out:
	lr_user_free(&u);
	buf_free(&why);
	local_addr_free(&a);
}

/* local_deliver - one recipient of the request, to its final outcome */
static void
local_deliver(struct local_msg *m, const struct deliver_rcpt *rcpt, struct local_result *res)
{
	struct lr_state s;
	enum resolve_class cls;
	const char *at = strrchr(rcpt->addr, '@');
	char *dom = str_lower(xstrdup(at ? at + 1 : ""));
	size_t i, j;

	memset(&s, 0, sizeof(s));
	s.m = m;
	s.orig = rcpt;
	local_result_init(&s.worst);
	buf_init(&s.sent, 0);
	cls = *dom ? resolve_domain(lr_resolve, dom) : RESOLVE_LOCAL;
	if (cls == RESOLVE_RETRY)
		lr_leaf(&s, DELIVER_DEFERRED, "4.3.0", "cannot resolve the domain of %s now", rcpt->addr);
	else if (cls == RESOLVE_VIRTUAL)
		lr_virtual(&s, rcpt->addr);
	else
		lr_local(&s, rcpt->addr, 0, false);
	lr_forward_flush(&s);

	if (!s.any)
		local_result_set(res, DELIVER_SENT, "2.0.0", "%s",
		    s.ndup ? "delivered once already (duplicate destination)" : "discarded: no destinations");
	else if (s.worst.status == DELIVER_SENT)
		local_result_set(res, DELIVER_SENT, "2.0.0", "%s", buf_str(&s.sent));
	else
		local_result_set(res, s.worst.status, s.worst.dsn, "%s", buf_str(&s.worst.reason));

	for (i = 0; i < s.nfwd; i++) {
		for (j = 0; j < s.fwd[i].n; j++)
			free(s.fwd[i].addrs[j]);
		free(s.fwd[i].addrs);
		free(s.fwd[i].dt);
	}
	free(s.fwd);
	free(s.anc);
	local_result_free(&s.worst);
	buf_free(&s.sent);
	free(dom);
}

/* ---------------------------------------------------------------- the request */

void
local_request(struct stream *st, struct deliver_request *req)
{
	static const struct qfile_read_limits lim = { .max_rcpts = 10000000, .max_attrs = 1000000 };
	struct qfile_env env;
	struct local_msg m;
	struct local_result res;
	struct buf err = BUF_INIT;
	size_t i;
	int r;

	memset(&m, 0, sizeof(m));
	r = qfile_read(req->fd, &env, &lim, &err);
	if (r != 0) {
		log_warn("%s: cannot read the queue file: %s", req->queue_id, r > 0 ? "incomplete" : buf_str(&err));
		for (i = 0; i < req->nrcpts; i++)
			if (deliver_status_send(st, req->rcpts[i].offset, DELIVER_DEFERRED, "4.3.0", LOCAL_RELAY,
			        "the queue file cannot be read") != STREAM_OK)
				break;
		buf_free(&err);
		return;
	}
	m.queue_id = req->queue_id;
	m.sender = req->sender;
	m.fd = req->fd;
	m.content_offset = env.content_offset;
	m.content_size = env.content_size;
	m.flags = req->flags;
	m.env = &env;
	m.dup = local_dup_new((size_t)local_conf.dup_limit);
	if (local_msg_scan_header(&m, &err) < 0) {
		log_warn("%s: cannot read the message: %s", req->queue_id, buf_str(&err));
		for (i = 0; i < req->nrcpts; i++)
			if (deliver_status_send(st, req->rcpts[i].offset, DELIVER_DEFERRED, "4.3.0", LOCAL_RELAY,
			        "the queue file cannot be read") != STREAM_OK)
				break;
		goto out;
	}
	for (i = 0; i < req->nrcpts; i++) {
		local_result_init(&res);
		local_deliver(&m, &req->rcpts[i], &res);
		r = deliver_status_send(
		    st, req->rcpts[i].offset, res.status, res.dsn, LOCAL_RELAY, buf_str(&res.reason));
		local_result_free(&res);
		if (r != STREAM_OK) {
			/* qmgr is gone: what it did not hear about stays deferred there. */
			log_warn("%s: cannot report to qmgr: %s", req->queue_id, stream_strerror(r));
			break;
		}
	}
out:
	for (i = 0; i < m.ndt; i++)
		free(m.dt[i]);
	free(m.dt);
	local_dup_free(m.dup);
	qfile_env_free(&env);
	buf_free(&err);
}

/* ---------------------------------------------------------------- start */

int
local_init(struct buf *err)
{
	struct passwd *pw;
	const char *user;

	local_safe_init();
	local_conf.myhostname = cfg_str(P_MYHOSTNAME);
	local_conf.recipient_delimiter = cfg_str(P_RECIPIENT_DELIMITER);
	local_conf.home_mailbox = cfg_str(P_HOME_MAILBOX);
	local_conf.mailbox_command = cfg_str(P_MAILBOX_COMMAND);
	local_conf.mail_spool_directory = cfg_str(P_MAIL_SPOOL_DIRECTORY);
	local_conf.virtual_mailbox_base = cfg_str(P_VIRTUAL_MAILBOX_BASE);
	local_conf.forward_path = cfg_str(P_FORWARD_PATH);
	local_conf.mailbox_size_limit = cfg_int(P_MAILBOX_SIZE_LIMIT);
	local_conf.maildir_sync_dir = cfg_bool(P_MAILDIR_SYNC_DIRECTORY);
	local_conf.virtual_mailbox_limit = cfg_int(P_VIRTUAL_MAILBOX_LIMIT);
	local_conf.command_time_limit = (int)cfg_time(P_COMMAND_TIME_LIMIT);
	local_conf.recursion_limit = (int)cfg_int(P_LOCAL_RECURSION_LIMIT);
	local_conf.expansion_limit = (int)cfg_int(P_LOCAL_EXPANSION_LIMIT);
	local_conf.dup_limit = (int)cfg_int(P_DUPLICATE_FILTER_LIMIT);
	local_conf.ipc_timeout = (int)cfg_time(P_IPC_TIMEOUT);
	if (local_src_parse(cfg_str(P_ALLOW_MAIL_TO_COMMANDS), &local_conf.allow_commands, err) < 0) {
		buf_puts(err, " in allow_mail_to_commands");
		return -1;
	}
	if (local_src_parse(cfg_str(P_ALLOW_MAIL_TO_FILES), &local_conf.allow_files, err) < 0) {
		buf_puts(err, " in allow_mail_to_files");
		return -1;
	}
	if (local_conf.mail_spool_directory[0] != '/') {
		buf_printf(
		    err, "mail_spool_directory must be an absolute path, not \"%s\"", local_conf.mail_spool_directory);
		return -1;
	}
	user = cfg_str(P_DEFAULT_PRIVS);
	errno = 0;
	if (!local_privileged) {
		/* Not root: everything runs as ourselves anyway. */
		pw = getpwuid(geteuid());
		local_conf.default_user = xstrdup(pw ? pw->pw_name : user);
		local_conf.default_uid = geteuid();
		local_conf.default_gid = getegid();
		lr_default_home = xstrdup(pw && pw->pw_dir ? pw->pw_dir : "/");
	} else if ((pw = getpwnam(user)) == NULL) {
		buf_printf(err, "default_privs: user \"%s\": %s", user, errno ? strerror(errno) : "no such user");
		return -1;
	} else if (pw->pw_uid == 0) {
		buf_printf(err, "default_privs: user \"%s\" is root; it must be an unprivileged user", user);
		return -1;
	} else {
		local_conf.default_user = xstrdup(pw->pw_name);
		local_conf.default_uid = pw->pw_uid;
		local_conf.default_gid = pw->pw_gid;
		lr_default_home = xstrdup(pw->pw_dir ? pw->pw_dir : "/");
	}
	if (local_alias_open(cfg_str(P_ALIAS_MAPS), err) < 0)
		return -1;
	if ((lr_vmailbox = dict_list_open(cfg_str(P_VIRTUAL_MAILBOX_MAPS), 0, err)) == NULL ||
	    (lr_vuid = dict_list_open(cfg_str(P_VIRTUAL_UID_MAPS), 0, err)) == NULL ||
	    (lr_vgid = dict_list_open(cfg_str(P_VIRTUAL_GID_MAPS), 0, err)) == NULL)
		return -1;
	if ((lr_resolve = resolve_open(err)) == NULL)
		return -1;
	/* Commands are waited for; an inherited SIG_IGN would make waitpid fail. */
	signal(SIGCHLD, SIG_DFL);
	return 0;
}
