/*
 * master_svc - services: master.cf entries with their listening sockets.
 *
 * Called by master.c at start and at every reload.  A service's listeners
 * are identified by what they are bound to (listen_id); a reload that
 * leaves that unchanged hands the open sockets to the new generation, so
 * no connection is refused while the configuration changes.  Trusts
 * master.cf and main.cf (the admin's files, already parsed and checked).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "buf.h"
#include "cfg.h"
#include "event.h"
#include "log.h"
#include "master.h"
#include "priv.h"
#include "str.h"
#include "xalloc.h"

#define LISTEN_BACKLOG 4096
#define MAX_LISTENERS  64

/*
 * Private services that the network-facing daemons (network_user) must be
 * able to reach, by service name (the socket name they connect to): their
 * sockets get the network user's group.  All other private sockets are
 * for mail_owner (and root) only.
 */
static const char *const network_reachable[] = { "cleanup", "auth", "anvil", "pop3d-mailbox", NULL };

static struct mcf_service *
mcf_service_dup(const struct mcf_service *s)
{
	struct mcf_service *d = xcalloc(1, sizeof(*d));
	size_t i;

	*d = *s;
	d->name = xstrdup(s->name);
	d->command = xstrdup(s->command);
	d->file = s->file ? xstrdup(s->file) : NULL;
	d->argv = xcalloc(s->argc + 1, sizeof(char *));
	for (i = 0; i < s->argc; i++)
		d->argv[i] = xstrdup(s->argv[i]);
	d->overrides = s->noverrides ? xcalloc(s->noverrides, sizeof(*d->overrides)) : NULL;
	for (i = 0; i < s->noverrides; i++) {
		d->overrides[i].name = xstrdup(s->overrides[i].name);
		d->overrides[i].value = xstrdup(s->overrides[i].value);
	}
	return d;
}

static void
mcf_service_free(struct mcf_service *d)
{
	size_t i;

	if (d == NULL)
		return;
	free(d->name);
	free(d->command);
	free(d->file);
	for (i = 0; i < d->argc; i++)
		free(d->argv[i]);
	free(d->argv);
	for (i = 0; i < d->noverrides; i++) {
		free(d->overrides[i].name);
		free(d->overrides[i].value);
	}
	free(d->overrides);
	free(d);
}

/* split_inet - "[::1]:25", "127.0.0.1:25", "host:smtp" or "25" */
static int
split_inet(const char *name, char **host, char **port)
{
	const char *colon;

	*host = *port = NULL;
	if (name[0] == '[') {
		const char *end = strchr(name, ']');

		if (end == NULL || end[1] != ':' || end[2] == 0)
			return -1;
		*host = xstrndup(name + 1, (size_t)(end - name - 1));
		*port = xstrdup(end + 2);
		return 0;
	}
	if ((colon = strrchr(name, ':')) == NULL) {
		*port = xstrdup(name);
		return 0;
	}
	if (colon == name || colon[1] == 0 || memchr(name, ':', (size_t)(colon - name)))
		return -1;
	*host = xstrndup(name, (size_t)(colon - name));
	*port = xstrdup(colon + 1);
	return 0;
}

static int
inet_family(void)
{
	const char *p = cfg_str(P_INET_PROTOCOLS);
	bool v4 = strstr(p, "ipv4") != NULL, v6 = strstr(p, "ipv6") != NULL;

	if (strcmp(p, "all") == 0 || (v4 && v6))
		return AF_UNSPEC;
	return v6 ? AF_INET6 : AF_INET;
}

/* listen_addrinfo - bind and listen on every address host/port resolves to */
static int
listen_addrinfo(const char *host, const char *port, int family, int *fds, int *nfds, struct buf *err)
{
	struct addrinfo hints, *res, *ai;
	char abuf[NI_MAXHOST];
	int fd, one = 1, r, bound = 0;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = family;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	if ((r = getaddrinfo(host, port, &hints, &res)) != 0) {
		buf_printf(err, "%s port %s: %s", host ? host : "*", port, gai_strerror(r));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		if (*nfds >= MAX_LISTENERS) {
			buf_printf(err, "too many addresses for port %s", port);
			goto fail;
		}
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			/* No IPv6 on this host: fine when we were not asked for it by name. */
			if ((errno == EAFNOSUPPORT || errno == EPROTONOSUPPORT) && host == NULL && family == AF_UNSPEC)
				continue;
			buf_printf(err, "socket: %s", strerror(errno));
			goto fail;
		}
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (ai->ai_family == AF_INET6)
			(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
			int e = errno;

			if (getnameinfo(ai->ai_addr, ai->ai_addrlen, abuf, sizeof(abuf), NULL, 0, NI_NUMERICHOST) != 0)
				strcpy(abuf, "?");
			close(fd);
			if (e == EADDRNOTAVAIL && ai->ai_family == AF_INET6 && host == NULL)
				continue;
			buf_printf(err, "bind %s port %s: %s", abuf, port, strerror(e));
			goto fail;
		}
		fds[(*nfds)++] = fd;
		bound++;
	}
	freeaddrinfo(res);
	if (bound == 0) {
		buf_printf(err, "%s port %s: no usable address", host ? host : "*", port);
		return -1;
	}
	return 0;
fail:
	freeaddrinfo(res);
	return -1;
}

/* listen_inet - the listeners of an inet service */
static int
listen_inet(const char *name, int *fds, int *nfds, struct buf *err)
{
	char *host, *port, *list, *p, *tok;
	const char *ifs;
	int family = inet_family(), r = 0;

	if (split_inet(name, &host, &port) < 0) {
		buf_printf(err, "bad inet service name \"%s\"", name);
		return -1;
	}
	if (host != NULL) {
		r = listen_addrinfo(host, port, family, fds, nfds, err);
	} else {
		ifs = cfg_str(P_INET_INTERFACES);
		if (strcmp(ifs, "all") == 0) {
			r = listen_addrinfo(NULL, port, family, fds, nfds, err);
		} else if (strcmp(ifs, "loopback-only") == 0) {
			if (family != AF_INET6)
				r = listen_addrinfo("127.0.0.1", port, AF_INET, fds, nfds, err);
			if (r == 0 && family != AF_INET && listen_addrinfo("::1", port, AF_INET6, fds, nfds, err) < 0) {
				if (family == AF_INET6)
					r = -1;
				else
					buf_reset(err);
			}
		} else {
			p = list = xstrdup(ifs);
			while (r == 0 && (tok = str_token(&p, STR_LIST_SEP)) != NULL) {
				if (tok[0] == '[' && tok[strlen(tok) - 1] == ']') {
					tok[strlen(tok) - 1] = 0;
					tok++;
				}
				r = listen_addrinfo(tok, port, family, fds, nfds, err);
			}
			free(list);
		}
	}
	free(host);
	free(port);
	return r;
}

/* listen_unix - a Unix-domain listener with the owner and mode it needs */
static int
listen_unix(const struct mcf_service *def, int *fds, int *nfds, struct buf *err)
{
	struct sockaddr_un sun;
	const char *dir = def->private_ ? "private" : "public";
	uid_t own_uid = 0;
	gid_t own_gid = 0;
	mode_t mode = def->private_ ? 0600 : 0660;
	struct stat st;
	int fd, i;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if ((size_t)snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/%s", dir, def->name) >= sizeof(sun.sun_path)) {
		buf_printf(err, "socket name too long: %s/%s", dir, def->name);
		return -1;
	}
	if (lstat(sun.sun_path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			buf_printf(err, "%s exists and is not a socket", sun.sun_path);
			return -1;
		}
		unlink(sun.sun_path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		buf_printf(err, "socket: %s", strerror(errno));
		return -1;
	}
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
		buf_printf(err, "bind %s: %s", sun.sun_path, strerror(errno));
		close(fd);
		return -1;
	}
	if (geteuid() == 0) {
		struct buf e2 = BUF_INIT;

		if (priv_user(cfg_str(P_MAIL_OWNER), &own_uid, &own_gid, &e2) < 0)
			goto bad_id;
		if (!def->private_) {
			if (priv_group(cfg_str(P_SETGID_GROUP), &own_gid, &e2) < 0)
				goto bad_id;
		} else {
			for (i = 0; network_reachable[i]; i++) {
				uid_t nu;

				if (strcmp(def->name, network_reachable[i]) == 0) {
					if (priv_user(cfg_str(P_NETWORK_USER), &nu, &own_gid, &e2) < 0)
						goto bad_id;
					mode = 0660;
				}
			}
		}
		if (chown(sun.sun_path, own_uid, own_gid) < 0) {
			buf_printf(err, "chown %s: %s", sun.sun_path, strerror(errno));
			buf_free(&e2);
			close(fd);
			return -1;
		}
		buf_free(&e2);
		goto chmod;
	bad_id:
		buf_printf(err, "%s", buf_str(&e2));
		buf_free(&e2);
		close(fd);
		unlink(sun.sun_path);
		return -1;
	}
chmod:
	if (chmod(sun.sun_path, mode) < 0) {
		buf_printf(err, "chmod %s: %s", sun.sun_path, strerror(errno));
		close(fd);
		return -1;
	}
	fds[(*nfds)++] = fd;
	return 0;
}

/* listen_id - what a service's listeners are bound to */
static char *
listen_id(const struct mcf_service *def)
{
	if (def->type == MCF_INET)
		return xasprintf("inet:%s|%s|%s", def->name, cfg_str(P_INET_INTERFACES), cfg_str(P_INET_PROTOCOLS));
	return xasprintf("unix:%s/%s", def->private_ ? "private" : "public", def->name);
}

/* program_path - the daemon a service runs */
static char *
program_path(const struct mcf_service *def, struct buf *err)
{
	char *path;

	if (strchr(def->command, '/') != NULL) {
		if (def->command[0] != '/') {
			buf_printf(
			    err, "command \"%s\" must be a name in daemon_directory or an absolute path", def->command);
			return NULL;
		}
		path = xstrdup(def->command);
	} else {
		path = xasprintf("%s/%s", cfg_str(P_DAEMON_DIRECTORY), def->command);
	}
	if (access(path, X_OK) < 0) {
		buf_printf(err, "%s: %s", path, strerror(errno));
		free(path);
		return NULL;
	}
	return path;
}

static struct service *
find_key(struct service *list, const char *key)
{
	for (; list; list = list->next)
		if (list->key && strcmp(list->key, key) == 0)
			return list;
	return NULL;
}

static struct service *
find_listen_id(struct service *list, const char *id)
{
	for (; list; list = list->next)
		if (list->nfds > 0 && list->listen_id && strcmp(list->listen_id, id) == 0)
			return list;
	return NULL;
}

/* unlink_list - remove s from *list */
static void
unlink_list(struct service **list, struct service *s)
{
	for (; *list; list = &(*list)->next) {
		if (*list == s) {
			*list = s->next;
			s->next = NULL;
			return;
		}
	}
}

int
master_svc_build(const struct mcf *m, struct service **oldp, bool keep_same, struct service **out, bool fatal_bind)
{
	struct service *old = *oldp;
	struct service *head = NULL, **tail = &head, *svc, *prev;
	struct buf err = BUF_INIT;
	int fds[MAX_LISTENERS], nfds;
	size_t i;
	char *key;

	for (i = 0; i < m->nservices; i++) {
		const struct mcf_service *def = &m->services[i];

		if (def->type == MCF_PASS) {
			log_warn("%s:%d: service %s: type \"pass\" is not supported; skipped",
			    def->file ? def->file : "master.cf", def->line, def->name);
			continue;
		}
		key = xasprintf("%s:%s", def->type == MCF_INET ? "inet" : "unix", def->name);
		/* An unchanged service keeps its children when main.cf is unchanged too. */
		if (keep_same && (prev = find_key(old, key)) != NULL && mcf_same(prev->def, def)) {
			unlink_list(oldp, prev);
			old = *oldp;
			free(key);
			*tail = prev;
			tail = &prev->next;
			continue;
		}
		svc = xcalloc(1, sizeof(*svc));
		svc->def = mcf_service_dup(def);
		svc->key = key;
		svc->alive_r = svc->alive_w = -1;
		svc->maxproc = def->maxproc < 0 ? (int)cfg_int(P_DEFAULT_PROCESS_LIMIT) : def->maxproc;
		svc->listen_id = listen_id(def);
		buf_reset(&err);
		if ((svc->path = program_path(def, &err)) == NULL) {
			log_warn("%s:%d: service %s: %s; service disabled", def->file ? def->file : "master.cf",
			    def->line, def->name, buf_str(&err));
			svc->disabled = true;
		}
		/* Keep open listeners when they are bound to the same thing. */
		if ((prev = find_listen_id(old, svc->listen_id)) != NULL) {
			svc->fds = prev->fds;
			svc->nfds = prev->nfds;
			prev->fds = NULL;
			prev->nfds = 0;
			if (prev->listening) {
				for (nfds = 0; nfds < svc->nfds; nfds++)
					event_forget(svc->fds[nfds]);
				prev->listening = false;
			}
		} else {
			nfds = 0;
			buf_reset(&err);
			if ((def->type == MCF_INET ? listen_inet(def->name, fds, &nfds, &err)
			                           : listen_unix(def, fds, &nfds, &err)) < 0) {
				if (fatal_bind) {
					while (nfds > 0)
						close(fds[--nfds]);
					log_warn("%s:%d: service %s: %s", def->file ? def->file : "master.cf",
					    def->line, def->name, buf_str(&err));
					buf_free(&err);
					master_svc_free(svc);
					*out = head;
					return -1;
				}
				log_warn("%s:%d: service %s: %s; service disabled", def->file ? def->file : "master.cf",
				    def->line, def->name, buf_str(&err));
				svc->disabled = true;
			}
			if (nfds > 0) {
				svc->fds = xcalloc((size_t)nfds, sizeof(int));
				memcpy(svc->fds, fds, (size_t)nfds * sizeof(int));
				svc->nfds = nfds;
			}
		}
		{
			int p[2];

			if (pipe2(p, O_CLOEXEC) < 0)
				log_fatal("pipe: %m");
			svc->alive_r = p[0];
			svc->alive_w = p[1];
		}
		*tail = svc;
		tail = &svc->next;
	}
	buf_free(&err);
	*out = head;
	return 0;
}

void
master_svc_close_listeners(struct service *svc)
{
	int i;

	for (i = 0; i < svc->nfds; i++) {
		event_forget(svc->fds[i]);
		close(svc->fds[i]);
	}
	free(svc->fds);
	svc->fds = NULL;
	svc->nfds = 0;
	svc->listening = false;
}

void
master_svc_retire(struct service *svc)
{
	/*
	 * Unix socket files stay: a new generation may have bound the same
	 * path already, and a stale one is replaced at the next bind.
	 */
	master_wakeup_stop(svc);
	master_svc_close_listeners(svc);
	if (svc->alive_w >= 0)
		close(svc->alive_w);
	svc->alive_w = -1;
	svc->retired = true;
}

void
master_svc_free(struct service *svc)
{
	master_wakeup_stop(svc);
	master_svc_close_listeners(svc);
	if (svc->alive_r >= 0)
		close(svc->alive_r);
	if (svc->alive_w >= 0)
		close(svc->alive_w);
	master_board_free(svc);
	mcf_service_free(svc->def);
	free(svc->key);
	free(svc->path);
	free(svc->listen_id);
	free(svc);
}

static void
listen_ready(int fd, int events, void *arg)
{
	struct service *svc = arg;

	(void)fd;
	(void)events;
	/* Children that became idle together may not have said so: look before starting another. */
	if (master_svc_avail(svc) == 0)
		master_spawn(svc);
	master_svc_update(svc);
}

void
master_svc_update(struct service *svc)
{
	bool want;
	int i;

	want = !master_stopping && !svc->retired && !svc->disabled && svc->throttled_until == 0 &&
	       master_svc_avail(svc) == 0 &&
	       (svc->maxproc == 0 || svc->total < svc->maxproc) && svc->nfds > 0;
	if (want == svc->listening)
		return;
	for (i = 0; i < svc->nfds; i++) {
		if (want)
			event_enable_read(svc->fds[i], listen_ready, svc);
		else
			event_disable_read(svc->fds[i]);
	}
	svc->listening = want;
}

void
master_svc_reap_retired(void)
{
	struct service **pp = &retired, *s;

	while ((s = *pp) != NULL) {
		if (s->total == 0) {
			*pp = s->next;
			master_svc_free(s);
		} else {
			pp = &s->next;
		}
	}
}
