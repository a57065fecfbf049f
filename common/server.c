/*
 * server - the daemon skeleton (see server.h and master_proto.h).
 *
 * Every daemon's main() ends here.  This file is the one place where a
 * daemon reads its options, loads and checks main.cf, gives up root and
 * talks to the master; daemons never do those things by hand.  It trusts
 * the master (its options and inherited descriptors) and main.cf; it does
 * not trust clients, which only ever reach the daemon's service function
 * through a bounded stream with the watchdog armed.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "cfg.h"
#include "event.h"
#include "flow.h"
#include "log.h"
#include "master_proto.h"
#include "priv.h"
#include "server.h"
#include "str.h"
#include "xalloc.h"

#define SERVER_MAX_SOCKETS 64

static const struct server_desc *sd;
static struct server_ctx ctx;
static int nsock;
static bool have_master; /* MASTER_STATUS_FD is the master's pipe */
static bool stopping;
static long board_slot = -1;     /* -i: our byte in the service's scoreboard */
static _Atomic unsigned char *board; /* the scoreboard, or NULL: a status message every time */
static size_t board_len;

void
server_config_error(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_fatal_status(MASTER_EXIT_CONFIG, "%s", msg);
}

/* board_map - the scoreboard at MASTER_BOARD_FD, when the master gave us a slot in it */
static void
board_map(void)
{
	struct stat st;
	void *p;

	if (!have_master || board_slot < 0 || fstat(MASTER_BOARD_FD, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_size <= board_slot || st.st_size > MASTER_BOARD_MAX)
		return;
	p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, MASTER_BOARD_FD, 0);
	if (p == MAP_FAILED) {
		log_warn("scoreboard: mmap: %m");
		return;
	}
	board = p;
	board_len = (size_t)st.st_size;
}

/* board_other_idle - is another process of this service waiting for a client? */
static bool
board_other_idle(void)
{
	size_t i;

	for (i = 0; i < board_len; i++)
		if ((long)i != board_slot && (atomic_load(&board[i]) & ~MASTER_SLOT_SERVED) == MASTER_SLOT_IDLE)
			return true;
	return false;
}

/* server_notify - tell the master whether we are busy (master_proto.h) */
static void
server_notify(int avail)
{
	struct master_status st;

	if (!have_master)
		return;
	if (board != NULL) {
		atomic_store(&board[board_slot],
		    (avail == MASTER_STAT_AVAIL ? MASTER_SLOT_IDLE : MASTER_SLOT_BUSY) | MASTER_SLOT_SERVED);
		/* Someone else is idle: the master's decision stays what it is. */
		if (board_other_idle())
			return;
	}
	memset(&st, 0, sizeof(st));
	st.pid = log_pid();
	st.avail = avail;
	if (write(MASTER_STATUS_FD, &st, sizeof(st)) != (ssize_t)sizeof(st)) {
		/* The master is gone: finish what we are doing, then leave. */
		have_master = false;
		stopping = true;
	}
}

void
server_busy(void)
{
	server_notify(MASTER_STAT_TAKEN);
}

void
server_idle(void)
{
	server_notify(MASTER_STAT_AVAIL);
}

static _Noreturn void
usage(void)
{
	log_fatal(
	    "usage: %s -C config_dir -n service -t type -s sockets [-i slot] [-u] [-c] [-v] [-o name=value] [args]",
	    sd->name);
}

/* server_options - parse what the master gave us */
static const char *
server_options(int argc, char **argv, struct buf *overrides, bool *unpriv, bool *want_chroot)
{
	const char *config_dir = NULL;
	long long n;
	int ch;

	ctx.service = sd->name;
	ctx.type = "unix";
	opterr = 0;
	while ((ch = getopt(argc, argv, "+C:n:t:s:i:ucvo:")) != -1) {
		switch (ch) {
		case 'C':
			config_dir = optarg;
			break;
		case 'n':
			ctx.service = optarg;
			break;
		case 't':
			ctx.type = optarg;
			break;
		case 's':
			if (str_to_ll(optarg, 0, SERVER_MAX_SOCKETS, &n, NULL) < 0)
				usage();
			nsock = (int)n;
			break;
		case 'i':
			if (str_to_ll(optarg, 0, MASTER_BOARD_MAX - 1, &n, NULL) < 0)
				usage();
			board_slot = (long)n;
			break;
		case 'u':
			*unpriv = true;
			break;
		case 'c':
			*want_chroot = true;
			break;
		case 'v':
			log_set_verbose(log_verbose + 1);
			break;
		case 'o':
			buf_append(overrides, optarg, strlen(optarg) + 1);
			break;
		default:
			usage();
		}
	}
	ctx.argc = argc - optind;
	ctx.argv = argv + optind;
	return config_dir;
}

/* server_config - load main.cf and the overrides; exit on any error */
static void
server_config(const char *config_dir, const struct buf *overrides)
{
	struct buf err = BUF_INIT;
	const char *p, *end, *file;
	int nerr;

	if (have_master) {
		struct buf text = BUF_INIT;
		char chunk[65536];
		off_t off = 0;
		ssize_t n;

		/* The text the master checked, not whatever main.cf holds now. */
		while ((n = pread(MASTER_CONFIG_FD, chunk, sizeof(chunk), off)) > 0 && text.len <= CFG_FILE_MAX) {
			buf_append(&text, chunk, (size_t)n);
			off += n;
		}
		if (n < 0)
			log_fatal("read the configuration from the master: %m");
		if (cfg_load_text(config_dir, (const char *)text.data, text.len, &err) < 0)
			server_config_error("%s", buf_str(&err));
		buf_free(&text);
	} else if (cfg_load(config_dir, &err) < 0) {
		server_config_error("%s", buf_str(&err));
	}
	p = (const char *)overrides->data;
	end = p + overrides->len;
	for (; p && p < end; p += strlen(p) + 1) {
		buf_reset(&err);
		if (cfg_set_option(p, "master.cf -o", &err) < 0)
			server_config_error("bad -o option \"%s\": %s", p, buf_str(&err));
	}
	/* Log where main.cf says, now that we know. */
	log_set_syslog_name(cfg_str(P_SYSLOG_NAME));
	file = cfg_str(P_MAILLOG_FILE);
	if (*file) {
		if (log_open_file(file) < 0)
			log_fatal("open maillog_file %s: %m", file);
		log_set_dests(LOG_DEST_FILE);
	}
	buf_reset(&err);
	if ((nerr = cfg_check(&err)) > 0) {
		char *lines = buf_export(&err), *line, *q = lines;

		while ((line = strsep(&q, "\n")) != NULL)
			if (*line)
				log_warn("%s", line);
		free(lines);
		server_config_error(
		    "%d error%s in the configuration; fix it and run \"postern reload\"", nerr, nerr == 1 ? "" : "s");
	}
	buf_free(&err);
}

/* server_identity - who this daemon becomes after the privilege drop */
static void
server_identity(bool unpriv, uid_t *uid, gid_t *gid, bool *stay_root)
{
	struct buf err = BUF_INIT;
	enum server_identity id = sd->identity;
	const char *user;

	*stay_root = false;
	if (id == SERVER_ID_ROOT) {
		if (unpriv)
			log_warn("%s: master.cf says unprivileged, but %s needs root to switch users; ignored",
			    ctx.service, sd->name);
		*stay_root = true;
		return;
	}
	if (!unpriv) {
		if (sd->root_ok) {
			*stay_root = true;
			return;
		}
		log_warn("%s: master.cf says privileged, but %s never runs as root; ignored", ctx.service, sd->name);
	}
	user = id == SERVER_ID_NETWORK ? cfg_str(P_NETWORK_USER) : cfg_str(P_MAIL_OWNER);
	if (priv_user(user, uid, gid, &err) < 0)
		server_config_error("%s: %s", id == SERVER_ID_NETWORK ? "network_user" : "mail_owner", buf_str(&err));
	buf_free(&err);
}

/* server_setup - everything between the options and the first client */
static void
server_setup(int argc, char **argv)
{
	struct buf overrides = BUF_INIT;
	bool unpriv = false, want_chroot = false, stay_root = false;
	const char *config_dir, *queue_dir;
	struct stat st;
	uid_t uid = 0;
	gid_t gid = 0;

	umask(077);
	log_init(sd->name, LOG_DEST_SYSLOG);
	config_dir = server_options(argc, argv, &overrides, &unpriv, &want_chroot);
	if (isatty(STDIN_FILENO) && getenv("POSTERN_BY_HAND") == NULL)
		log_fatal("do not run %s by hand: the master starts it (see master.cf(5))", sd->name);
	have_master = fstat(MASTER_STATUS_FD, &st) == 0 && S_ISFIFO(st.st_mode);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	server_config(config_dir, &overrides);
	buf_free(&overrides);
	/* "postern status" reads "PROGRAM: SERVICE TYPE" from /proc/PID/cmdline. */
	setproctitle("%s %s", ctx.service, ctx.type);

	queue_dir = cfg_str(P_QUEUE_DIRECTORY);
	if (chdir(queue_dir) < 0)
		log_fatal("chdir %s: %m", queue_dir);
	ctx.privileged = geteuid() == 0;
	if (ctx.privileged)
		server_identity(unpriv, &uid, &gid, &stay_root);
	ctx.uid = ctx.privileged && !stay_root ? uid : geteuid();
	ctx.gid = ctx.privileged && !stay_root ? gid : getegid();

	if (sd->pre_init)
		sd->pre_init(&ctx);
	/* Only the queue daemons write the in-flow page; the others get it read-only. */
	if (!have_master)
		flow_disable(); /* descriptor 6 is not the master's page: never touch it */
	else if (sd->identity != SERVER_ID_QUEUE)
		flow_read_only();
	board_map();
	tzset(); /* the time zone file cannot be read inside a chroot */
	log_prepare_chroot();
	if (ctx.privileged) {
		if (want_chroot && sd->chroot_ok)
			priv_chroot(".");
		else if (want_chroot)
			log_warn("%s: %s does not run chrooted; master.cf chroot=y ignored", ctx.service, sd->name);
		if (!stay_root)
			priv_drop(uid, gid);
	} else {
		log_debug("not started as root: chroot and privilege drop skipped");
	}
	if (sd->post_init)
		sd->post_init(&ctx);
}

/* server_accept - accept one client on a listener, or -1 */
static int
server_accept(int lfd)
{
	int fd;

	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED) {
		log_warn("accept: %m");
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
			sleep(1);
	}
	return fd;
}

/*
 * server_single_loop - one client at a time until max_use, max_idle or
 * stop.  Every idle process of a service waits on the same listeners;
 * EPOLLEXCLUSIVE wakes one of them per connection instead of all (with
 * poll(2) each connection woke every idle process and all but one
 * found nothing to accept).
 */
static _Noreturn void
server_single_loop(void)
{
	struct epoll_event ev, evs[SERVER_MAX_SOCKETS + 1];
	long long max_use = cfg_int(P_MAX_USE), uses = 0;
	long long max_idle = cfg_time(P_MAX_IDLE);
	unsigned watchdog = (unsigned)cfg_time(P_DAEMON_TIMEOUT);
	int i, n, fd, ep;

	if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		log_fatal("epoll_create1: %m");
	for (i = 0; i < nsock; i++) {
		memset(&ev, 0, sizeof(ev));
		ev.events = EPOLLIN | EPOLLEXCLUSIVE;
		ev.data.fd = MASTER_LISTEN_FD + i;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, ev.data.fd, &ev) < 0)
			log_fatal("epoll_ctl: %m");
	}
	if (have_master) {
		memset(&ev, 0, sizeof(ev));
		ev.events = EPOLLIN;
		ev.data.fd = MASTER_ALIVE_FD;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, MASTER_ALIVE_FD, &ev) < 0)
			log_fatal("epoll_ctl: %m");
	}
	for (;;) {
		if (stopping)
			exit(0);
		n = epoll_wait(
		    ep, evs, nsock + 1, max_idle > 0 ? (int)(max_idle > 86400 ? 86400000 : max_idle * 1000) : -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_fatal("epoll_wait: %m");
		}
		if (n == 0) {
			log_debug("idle for %llds, exiting", max_idle);
			exit(0);
		}
		for (i = 0; i < n; i++)
			if (evs[i].data.fd == MASTER_ALIVE_FD)
				exit(0); /* the master closed the alive pipe: stop or reload */
		for (i = 0; i < n; i++) {
			if ((fd = server_accept(evs[i].data.fd)) < 0)
				continue;
			server_notify(MASTER_STAT_TAKEN);
			alarm(watchdog);
			{
				struct stream *s = stream_new(fd, 0);

				sd->service(s, &ctx);
				stream_free(s);
			}
			alarm(0);
			uses++;
			if (uses >= max_use) {
				log_debug("served %lld clients, exiting", uses);
				exit(0);
			}
			server_notify(MASTER_STAT_AVAIL);
			break; /* look at the alive pipe before the next client */
		}
	}
}

static void
server_event_accept(int lfd, int events, void *arg)
{
	int fd;

	(void)events;
	(void)arg;
	if ((fd = server_accept(lfd)) >= 0)
		sd->accept(fd, &ctx);
}

static void
server_event_alive(int fd, int events, void *arg)
{
	int i;

	(void)events;
	(void)arg;
	event_forget(fd);
	for (i = 0; i < nsock; i++)
		event_forget(MASTER_LISTEN_FD + i);
	if (sd->stop)
		sd->stop(&ctx);
	else
		exit(0);
}

/* server_event_loop - hand clients to the daemon's own event handlers */
static _Noreturn void
server_event_loop(void)
{
	int i;

	for (i = 0; i < nsock; i++)
		event_enable_read(MASTER_LISTEN_FD + i, server_event_accept, NULL);
	if (have_master)
		event_enable_read(MASTER_ALIVE_FD, server_event_alive, NULL);
	for (;;)
		event_run(-1);
}

void
server_main(int argc, char **argv, const struct server_desc *desc)
{
	extern char **environ;
	int i, fl;

	sd = desc;
	setproctitle_init(argc, argv, environ);
	if ((sd->kind == SERVER_SINGLE && sd->service == NULL) || (sd->kind == SERVER_EVENT && sd->accept == NULL))
		log_panic("server_main: %s has no service function", sd->name);
	server_setup(argc, argv);
	for (i = 0; i < nsock; i++) {
		if ((fl = fcntl(MASTER_LISTEN_FD + i, F_GETFL)) < 0)
			log_fatal("listening socket %d: %m", MASTER_LISTEN_FD + i);
		if (!(fl & O_NONBLOCK))
			(void)fcntl(MASTER_LISTEN_FD + i, F_SETFL, fl | O_NONBLOCK);
	}
	if (sd->kind == SERVER_EVENT)
		server_event_loop();
	server_single_loop();
}
