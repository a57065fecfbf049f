/*
 * master_spawn - the master's children: fork and exec, status messages,
 * reaping, throttling, and wakeup triggers.
 *
 * Called from master.c's event loop.  Children are trusted only to write
 * well-formed status messages; a message from a pid we do not know is
 * ignored.  Every child is a fresh exec of its daemon (new address space,
 * new ASLR layout) with exactly the descriptors of master_proto.h.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cfg.h"
#include "event.h"
#include "flow.h"
#include "log.h"
#include "master.h"
#include "master_proto.h"
#include "proto.h"
#include "stream.h"
#include "trigger.h"
#include "xalloc.h"

#define MAX_ARGS 512

static char **child_env;

/* The in-flow regulator's shared page (flow.h), made before the first child. */
static int master_flow_fd = -1;

/* Variables a child may inherit; everything else is dropped. */
static const char *const env_keep[] = { "TZ", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", NULL };

void
master_spawn_init(void)
{
	size_t n = 0, i;
	const char *v;

	child_env = xcalloc(8, sizeof(char *));
	child_env[n++] = xstrdup("PATH=/usr/bin:/bin:/usr/sbin:/sbin");
	for (i = 0; env_keep[i]; i++)
		if ((v = getenv(env_keep[i])) != NULL)
			child_env[n++] = xasprintf("%s=%s", env_keep[i], v);
	child_env[n] = NULL;
}

/*
 * board_create - the scoreboard of a service: one byte per slot, shared
 * with its children, as many as the process limit or, without a limit
 * (or one above MASTER_BOARD_MAX), MASTER_BOARD_UNLIMITED.  Children
 * beyond the slots, and all of them when there is no memfd, report every
 * change on the status pipe.
 */
static void
board_create(struct service *svc)
{
	int n = svc->maxproc > 0 && svc->maxproc < MASTER_BOARD_MAX ? svc->maxproc : MASTER_BOARD_UNLIMITED;
	void *p;
	int fd;

	if (svc->board != NULL || svc->board_failed)
		return;
	if ((fd = memfd_create("board", MFD_CLOEXEC | MFD_ALLOW_SEALING)) < 0 || ftruncate(fd, n) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0 ||
	    (p = mmap(NULL, (size_t)n, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) == MAP_FAILED) {
		svc->board_failed = true;
		log_warn("service %s: no scoreboard (%m): its processes report every client", svc->def->name);
		if (fd >= 0)
			close(fd);
		return;
	}
	svc->board = p;
	svc->board_fd = fd;
	svc->nslots = n;
	svc->slot_used = xcalloc((size_t)svc->nslots, sizeof(bool));
}

void
master_board_free(struct service *svc)
{
	if (svc->board == NULL)
		return;
	munmap((void *)svc->board, (size_t)svc->nslots);
	close(svc->board_fd);
	free(svc->slot_used);
	svc->board = NULL;
}

int
master_svc_avail(struct service *svc)
{
	int i, n = svc->avail; /* children without a slot */

	for (i = 0; svc->board != NULL && i < svc->nslots; i++)
		if (svc->slot_used[i] && (atomic_load(&svc->board[i]) & ~MASTER_SLOT_SERVED) == MASTER_SLOT_IDLE)
			n++;
	return n;
}

/* board_served - has any child of svc taken a client (wakeup_if_used)? */
static bool
board_served(struct service *svc)
{
	int i;

	for (i = 0; svc->board != NULL && i < svc->nslots; i++)
		if (svc->slot_used[i] && (atomic_load(&svc->board[i]) & MASTER_SLOT_SERVED))
			return true;
	return false;
}

/* child_argv - the command line of a child (master_proto.h) */
static char **
child_argv(struct service *svc, int slot)
{
	const struct mcf_service *d = svc->def;
	char **av = xcalloc(MAX_ARGS + 1, sizeof(char *));
	size_t n = 0, i;

	av[n++] = xstrdup(svc->path);
	av[n++] = xstrdup("-C");
	av[n++] = xstrdup(master_config_dir);
	av[n++] = xstrdup("-n");
	av[n++] = xstrdup(d->name);
	av[n++] = xstrdup("-t");
	av[n++] = xstrdup(mcf_type_name(d->type));
	av[n++] = xstrdup("-s");
	av[n++] = xasprintf("%d", svc->nfds);
	if (slot >= 0) {
		av[n++] = xstrdup("-i");
		av[n++] = xasprintf("%d", slot);
	}
	if (d->unpriv)
		av[n++] = xstrdup("-u");
	if (d->chroot)
		av[n++] = xstrdup("-c");
	for (i = 0; i < (size_t)log_verbose && n < 20; i++)
		av[n++] = xstrdup("-v");
	for (i = 0; i < d->noverrides && n + 2 < MAX_ARGS; i++) {
		av[n++] = xstrdup("-o");
		av[n++] = xasprintf("%s=%s", d->overrides[i].name, d->overrides[i].value);
	}
	for (i = 1; i < d->argc && n < MAX_ARGS; i++)
		av[n++] = xstrdup(d->argv[i]);
	av[n] = NULL;
	return av;
}

/* child_setup_fds - in the child: put descriptors where master_proto.h says */
static void
child_setup_fds(struct service *svc)
{
	int high[5 + 64], i, n = 5 + svc->nfds, devnull, fd;

	/* Everything above the target range first, /dev/null too, so no dup2 clobbers a source. */
	if ((fd = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0 || (devnull = fcntl(fd, F_DUPFD_CLOEXEC, 100)) < 0)
		_exit(127);
	close(fd);
	high[0] = fcntl(master_status_w, F_DUPFD_CLOEXEC, 100);
	high[1] = fcntl(svc->alive_r, F_DUPFD_CLOEXEC, 100);
	high[2] = fcntl(master_config_fd, F_DUPFD_CLOEXEC, 100);
	high[3] = fcntl(master_flow_fd, F_DUPFD_CLOEXEC, 100);
	high[4] = fcntl(svc->board != NULL ? svc->board_fd : devnull, F_DUPFD_CLOEXEC, 100);
	for (i = 0; i < svc->nfds; i++)
		high[5 + i] = fcntl(svc->fds[i], F_DUPFD_CLOEXEC, 100);
	for (i = 0; i < n; i++)
		if (high[i] < 0 || dup2(high[i], MASTER_STATUS_FD + i) < 0)
			_exit(127);
	dup2(devnull, 0);
	dup2(devnull, 1);
	dup2(devnull, 2);
	closefrom(MASTER_STATUS_FD + n);
}

void
master_spawn(struct service *svc)
{
	struct child *c;
	sigset_t all, old;
	char **av;
	pid_t pid;
	size_t i;
	int slot = -1;

	if (svc->disabled || svc->retired || master_stopping || svc->throttled_until)
		return;
	if (svc->maxproc > 0 && svc->total >= svc->maxproc)
		return;
	if (master_flow_fd < 0 && (master_flow_fd = flow_create()) < 0)
		log_fatal("memfd_create for the in-flow regulator: %m");
	board_create(svc);
	for (i = 0; svc->board != NULL && slot < 0 && i < (size_t)svc->nslots; i++)
		if (!svc->slot_used[i])
			slot = (int)i;
	if (slot >= 0) {
		/* Idle from the start: a sibling that looks now must count it. */
		svc->slot_used[slot] = true;
		atomic_store(&svc->board[slot], MASTER_SLOT_IDLE);
	}
	av = child_argv(svc, slot);
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	pid = fork();
	if (pid == 0) {
		/* Default signal handling for the daemon; then its fresh image. */
		signal(SIGHUP, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGCHLD, SIG_DFL);
		signal(SIGPIPE, SIG_IGN);
		sigprocmask(SIG_SETMASK, &old, NULL);
		child_setup_fds(svc);
		execve(av[0], av, child_env);
		_exit(127);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	for (i = 0; av[i]; i++)
		free(av[i]);
	free(av);
	if (pid < 0) {
		log_warn("fork: %m");
		if (slot >= 0) {
			atomic_store(&svc->board[slot], MASTER_SLOT_FREE);
			svc->slot_used[slot] = false;
		}
		return;
	}
	c = xcalloc(1, sizeof(*c));
	c->pid = pid;
	c->svc = svc;
	c->slot = slot;
	c->avail = slot < 0; /* without a slot: counts as available until it takes a client */
	c->next = children;
	children = c;
	svc->total++;
	if (c->avail)
		svc->avail++;
	log_debug("spawned %s pid %ld for service %s", svc->path, (long)pid, svc->def->name);
}

static struct child *
child_find(pid_t pid, struct child ***prevp)
{
	struct child **pp, *c;

	for (pp = &children; (c = *pp) != NULL; pp = &c->next) {
		if (c->pid == pid) {
			if (prevp)
				*prevp = pp;
			return c;
		}
	}
	return NULL;
}

void
master_status_event(int fd, int events, void *arg)
{
	struct master_status st[64];
	struct child *c;
	ssize_t n;
	size_t i;

	(void)events;
	(void)arg;
	for (;;) {
		n = read(fd, st, sizeof(st));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		for (i = 0; i < (size_t)n / sizeof(st[0]); i++) {
			if ((c = child_find(st[i].pid, NULL)) == NULL)
				continue;
			if (c->slot >= 0) {
				/* The counting is on the scoreboard; the message says "look again". */
				if (st[i].avail == MASTER_STAT_TAKEN) {
					c->uses++;
					c->svc->used = true;
				}
			} else if (st[i].avail == MASTER_STAT_TAKEN && c->avail) {
				c->avail = false;
				c->uses++;
				c->svc->avail--;
				c->svc->used = true;
			} else if (st[i].avail == MASTER_STAT_AVAIL && !c->avail) {
				c->avail = true;
				c->svc->avail++;
			}
			master_svc_update(c->svc);
		}
	}
}

static void
unthrottle(void *arg)
{
	struct service *svc = arg;

	svc->throttled_until = 0;
	log_info("service %s: throttle ended", svc->def->name);
	master_svc_update(svc);
}

/* reaped - account for one dead child and decide what the service does next */
static void
reaped(struct child *c, int status)
{
	struct service *svc = c->svc;
	bool crashed_at_start;

	svc->total--;
	if (c->avail)
		svc->avail--;
	if (c->slot >= 0) {
		if (atomic_load(&svc->board[c->slot]) & MASTER_SLOT_SERVED) {
			c->uses++;
			svc->used = true;
		}
		atomic_store(&svc->board[c->slot], MASTER_SLOT_FREE);
		svc->slot_used[c->slot] = false;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == MASTER_EXIT_CONFIG && !svc->retired) {
		if (!svc->disabled)
			log_warn("service %s: %s reported a configuration error (see above); service disabled until "
			         "\"postern reload\"",
			    svc->def->name, svc->path);
		svc->disabled = true;
	} else if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
		log_warn("process %s pid %ld exit status %d", svc->path, (long)c->pid, WEXITSTATUS(status));
	} else if (WIFSIGNALED(status)) {
		log_warn("process %s pid %ld killed by signal %d%s", svc->path, (long)c->pid, WTERMSIG(status),
		    WTERMSIG(status) == SIGALRM ? " (watchdog: daemon_timeout)" : "");
	}
	/*
	 * A process that fails before it ever served a client would fail the
	 * same way again: pause the service instead of forking in a loop.
	 * Being killed from outside (SIGKILL, SIGTERM) is not such a failure.
	 */
	crashed_at_start =
	    c->uses == 0 &&
	    ((WIFEXITED(status) && WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != MASTER_EXIT_CONFIG) ||
	        (WIFSIGNALED(status) && WTERMSIG(status) != SIGKILL && WTERMSIG(status) != SIGTERM));
	if (crashed_at_start && !svc->retired && !master_stopping && svc->throttled_until == 0) {
		long long t = cfg_time(P_SERVICE_THROTTLE_TIME);

		log_warn("service %s: %s fails at start; throttling for %lld seconds", svc->def->name, svc->path, t);
		svc->throttled_until = stream_now_ms() + t * 1000;
		event_timer_set(unthrottle, svc, t * 1000);
	}
	master_svc_update(svc);
}

void
master_reap(void)
{
	struct child **pp, *c;
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if ((c = child_find(pid, &pp)) == NULL)
			continue;
		*pp = c->next;
		reaped(c, status);
		free(c);
	}
	master_svc_reap_retired();
}

void
master_signal_children(int sig)
{
	struct child *c;

	for (c = children; c; c = c->next)
		kill(c->pid, sig);
}

int
master_child_count(void)
{
	struct child *c;
	int n = 0;

	for (c = children; c; c = c->next)
		n++;
	return n;
}

/* wakeup - poke a trigger service (one byte on its socket) */
static void
wakeup(void *arg)
{
	struct service *svc = arg;
	struct buf err = BUF_INIT;
	char path[256];

	event_timer_set(wakeup, svc, (int64_t)svc->def->wakeup * 1000);
	if (!svc->used && board_served(svc))
		svc->used = true;
	if (svc->disabled || (svc->def->wakeup_if_used && !svc->used))
		return;
	snprintf(path, sizeof(path), "%s/%s", svc->def->private_ ? "private" : "public", svc->def->name);
	/* A full backlog (EAGAIN) means the service is busy anyway. */
	if (trigger_send(path, TRIGGER_WAKEUP, &err) < 0 && strstr(buf_str(&err), "temporarily unavailable") == NULL)
		log_warn("wakeup: %s", buf_str(&err));
	buf_free(&err);
}

void
master_wakeup_start(struct service *svc)
{
	/*
	 * The first wakeup comes a second after start or reload, not a whole
	 * interval later: qmgr must look at mail left in the queue at once.
	 */
	if (svc->def->wakeup > 0 && svc->def->type != MCF_INET)
		event_timer_set(wakeup, svc, svc->def->wakeup > 1 ? 1000 : (int64_t)svc->def->wakeup * 1000);
}

void
master_wakeup_stop(struct service *svc)
{
	event_timer_cancel(wakeup, svc);
}
