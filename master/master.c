/*
 * master - the Postern supervisor.
 *
 *   master -C CONFIG_DIR [-f] [-v]
 *
 * Reads main.cf and master.cf, makes and checks the queue tree, holds the
 * pid lock, binds every listener, and starts daemons on demand (see
 * master_spawn.c).  SIGHUP reloads both files without closing listeners
 * that did not change; SIGTERM stops: no new children, the alive pipes
 * close so children finish their client and exit, and after
 * master_stop_timeout the rest are killed.  Runs as root on a real
 * install (the only long-running process that does, with local); as
 * another user it runs everything as that user.
 *
 * Without -f it forks once after everything that can fail at start-up has
 * succeeded, so "postern start" returns only when the master is ready.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "cfg.h"
#include "event.h"
#include "log.h"
#include "master.h"
#include "master_proto.h"
#include "mastercf.h"
#include "qdir.h"
#include "xalloc.h"

struct service *services;
struct service *retired;
struct child *children;
bool master_stopping;
const char *master_config_dir;
int master_status_r = -1, master_status_w = -1;
int master_config_fd = -1;

static int sig_pipe[2] = { -1, -1 };
static int pid_fd = -1;
static char *main_cf_text; /* main.cf as last loaded, to see if a reload changed it */
static bool foreground;

static void
on_signal(int sig)
{
	int saved = errno;
	unsigned char c = (unsigned char)sig;

	(void)!write(sig_pipe[1], &c, 1);
	errno = saved;
}

/* read_main_cf - main.cf's text ("" when there is none); NULL with err on failure */
static char *
read_main_cf(struct buf *err)
{
	struct buf text = BUF_INIT;
	char *path = xasprintf("%s/main.cf", master_config_dir);
	int rc = cfg_read_file(path, CFG_FILE_MAX, &text, err);

	free(path);
	if (rc < 0) {
		buf_free(&text);
		return NULL;
	}
	return buf_export(&text);
}

/* publish_config - the checked text, sealed, for every child started from now on */
static void
publish_config(const char *text)
{
	size_t len = strlen(text), off = 0;
	ssize_t n;
	int fd;

	if ((fd = memfd_create("main.cf", MFD_CLOEXEC | MFD_ALLOW_SEALING)) < 0)
		log_fatal("memfd_create: %m");
	while (off < len) {
		if ((n = write(fd, text + off, len - off)) < 0) {
			if (errno == EINTR)
				continue;
			log_fatal("write the configuration for children: %m");
		}
		off += (size_t)n;
	}
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
		log_fatal("seal the configuration for children: %m");
	if (master_config_fd >= 0)
		close(master_config_fd);
	master_config_fd = fd;
}

/* note_overrides - master.cf -o values may use the admin's own $names */
static void
note_overrides(const struct mcf *m)
{
	size_t i, j;

	for (i = 0; i < m->nservices; i++)
		for (j = 0; j < m->services[i].noverrides; j++)
			cfg_note_references(m->services[i].overrides[j].value);
}

/* config_errors - log every line of a cfg_check report; returns the count */
static int
config_errors(void)
{
	struct buf err = BUF_INIT;
	char *text, *line, *p;
	int n;

	n = cfg_check(&err);
	p = text = buf_export(&err);
	while ((line = strsep(&p, "\n")) != NULL)
		if (*line)
			log_warn("%s", line);
	free(text);
	return n;
}

/* setup_logging - maillog_file or syslog, plus standard error while it is a terminal's */
static void
setup_logging(bool with_stderr)
{
	const char *file = cfg_str(P_MAILLOG_FILE);
	int dests = foreground || with_stderr ? LOG_DEST_STDERR : 0;

	log_set_syslog_name(cfg_str(P_SYSLOG_NAME));
	if (*file && log_open_file(file) == 0)
		dests |= LOG_DEST_FILE;
	else {
		if (*file)
			log_warn("cannot open maillog_file %s: %m; using syslog", file);
		dests |= LOG_DEST_SYSLOG;
	}
	log_set_dests(dests);
}

static struct mcf *
load_master_cf(struct buf *err)
{
	struct mcf *m = xcalloc(1, sizeof(*m));
	char *path = xasprintf("%s/master.cf", master_config_dir);

	if (mcf_load(path, m, err) < 0) {
		free(path);
		mcf_free(m);
		free(m);
		return NULL;
	}
	free(path);
	return m;
}

/* lock_pid_file - one master per queue */
static void
lock_pid_file(void)
{
	char pidbuf[32];
	ssize_t n;

	pid_fd = open(MASTER_PID_FILE, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (pid_fd < 0)
		log_fatal("open %s/%s: %m", cfg_str(P_QUEUE_DIRECTORY), MASTER_PID_FILE);
	if (flock(pid_fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK)
			log_fatal("lock %s: %m", MASTER_PID_FILE);
		n = pread(pid_fd, pidbuf, sizeof(pidbuf) - 1, 0);
		pidbuf[n > 0 ? n : 0] = 0;
		pidbuf[strcspn(pidbuf, "\n")] = 0;
		log_fatal("the Postern master is already running for %s (pid %s)", cfg_str(P_QUEUE_DIRECTORY),
		    *pidbuf ? pidbuf : "unknown");
	}
}

static void
write_pid(pid_t pid)
{
	char pidbuf[32];
	int n = snprintf(pidbuf, sizeof(pidbuf), "%ld\n", (long)pid);

	if (ftruncate(pid_fd, 0) < 0 || pwrite(pid_fd, pidbuf, (size_t)n, 0) != n)
		log_warn("write %s: %m", MASTER_PID_FILE);
}

static void
start_services(void)
{
	struct service *s;

	for (s = services; s; s = s->next) {
		master_wakeup_start(s);
		master_svc_update(s);
	}
}

/* reload - re-read both files; keep running on the old ones if they are broken */
static void
reload(void)
{
	struct buf err = BUF_INIT;
	char *new_text;
	struct service *old, *fresh, *s;
	struct mcf *m = NULL;
	bool same_main;

	if ((new_text = read_main_cf(&err)) == NULL ||
	    cfg_load_text(master_config_dir, new_text, strlen(new_text), &err) < 0 ||
	    (m = load_master_cf(&err)) == NULL) {
		log_warn("reload: %s; keeping the running configuration", buf_str(&err));
		goto revert;
	}
	note_overrides(m);
	if (config_errors() > 0) {
		log_warn("reload: errors above; keeping the running configuration");
		goto revert;
	}
	setup_logging(false);
	same_main = strcmp(main_cf_text, new_text) == 0;
	free(main_cf_text);
	main_cf_text = new_text;
	publish_config(main_cf_text);

	old = services;
	services = NULL;
	master_svc_build(m, &old, same_main, &fresh, false);
	services = fresh;
	/* What is left of the old list is replaced or gone: retire it. */
	while ((s = old) != NULL) {
		old = s->next;
		master_svc_retire(s);
		s->next = retired;
		retired = s;
	}
	mcf_free(m);
	free(m);
	start_services();
	master_svc_reap_retired();
	log_info("reload -- version %s, configuration %s", PACKAGE_VERSION, master_config_dir);
	buf_free(&err);
	return;
revert:
	buf_reset(&err);
	if (cfg_load_text(master_config_dir, main_cf_text, strlen(main_cf_text), &err) < 0)
		log_panic("reload: the running configuration no longer parses: %s", buf_str(&err));
	if (m != NULL) {
		mcf_free(m);
		free(m);
	}
	free(new_text);
	buf_free(&err);
}

static void
stop_kill(void *arg)
{
	int sig = (int)(long)arg;

	if (master_child_count() == 0)
		return;
	log_warn("%d process%s still running; sending signal %d", master_child_count(),
	    master_child_count() == 1 ? "" : "es", sig);
	master_signal_children(sig);
	if (sig != SIGKILL)
		event_timer_set(stop_kill, (void *)(long)SIGKILL, 2000);
}

/* stop - stop accepting, ask children to finish, and leave when they have */
static void
stop(int sig)
{
	struct service *s;

	if (master_stopping)
		return;
	master_stopping = true;
	log_info("terminating on signal %d", sig);
	for (s = services; s; s = s->next) {
		master_svc_retire(s);
		master_svc_update(s);
	}
	for (s = retired; s; s = s->next)
		master_svc_update(s);
	event_timer_set(stop_kill, (void *)(long)SIGTERM, cfg_time(P_MASTER_STOP_TIMEOUT) * 1000);
}

static void
signal_event(int fd, int events, void *arg)
{
	unsigned char sigs[64];
	ssize_t n, i;

	(void)events;
	(void)arg;
	while ((n = read(fd, sigs, sizeof(sigs))) > 0) {
		for (i = 0; i < n; i++) {
			switch (sigs[i]) {
			case SIGCHLD:
				master_reap();
				break;
			case SIGHUP:
				if (!master_stopping)
					reload();
				break;
			case SIGTERM:
			case SIGINT:
				stop(sigs[i]);
				break;
			}
		}
	}
}

static void
setup_signals(void)
{
	struct sigaction sa;
	int p[2], i;
	static const int sigs[] = { SIGCHLD, SIGHUP, SIGTERM, SIGINT };

	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
		log_fatal("pipe: %m");
	sig_pipe[0] = p[0];
	sig_pipe[1] = p[1];
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	for (i = 0; i < (int)(sizeof(sigs) / sizeof(sigs[0])); i++)
		if (sigaction(sigs[i], &sa, NULL) < 0)
			log_fatal("sigaction: %m");
	signal(SIGPIPE, SIG_IGN);
	event_enable_read(sig_pipe[0], signal_event, NULL);
}

static void
daemonize(void)
{
	pid_t pid;
	int fd;

	if ((pid = fork()) < 0)
		log_fatal("fork: %m");
	if (pid > 0) {
		/* The child inherits the lock; record its pid before we report success. */
		write_pid(pid);
		_exit(0);
	}
	setsid();
	if ((fd = open("/dev/null", O_RDWR)) >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
}

static _Noreturn void
usage(void)
{
	fprintf(stderr, "usage: master -C config_dir [-f] [-v]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	struct buf err = BUF_INIT;
	struct qdir_ids ids;
	const char *dir = NULL, *queue_dir;
	char real[4096];
	struct mcf *m;
	int ch, p[2], problems;

	log_init("master", LOG_DEST_STDERR);
	while ((ch = getopt(argc, argv, "C:fv")) != -1) {
		switch (ch) {
		case 'C':
			dir = optarg;
			break;
		case 'f':
			foreground = true;
			break;
		case 'v':
			log_set_verbose(log_verbose + 1);
			break;
		default:
			usage();
		}
	}
	dir = cfg_resolve_dir(dir);
	master_config_dir = xstrdup(realpath(dir, real) ? real : dir);
	if ((main_cf_text = read_main_cf(&err)) == NULL ||
	    cfg_load_text(master_config_dir, main_cf_text, strlen(main_cf_text), &err) < 0)
		log_fatal("%s", buf_str(&err));
	setup_logging(true);
	if ((m = load_master_cf(&err)) == NULL)
		log_fatal("%s", buf_str(&err));
	note_overrides(m);
	if (config_errors() > 0)
		log_fatal("fix the configuration errors above");
	publish_config(main_cf_text);

	/* The queue tree: made and repaired at every start. */
	queue_dir = cfg_str(P_QUEUE_DIRECTORY);
	buf_reset(&err);
	if (qdir_ids_load(&ids, &err) < 0)
		log_fatal("%s (run \"postern setup\" to create the system users)", buf_str(&err));
	buf_reset(&err);
	if ((problems = qdir_setup(queue_dir, &ids, true, true, &err)) > 0)
		log_fatal("queue directory %s: %s", queue_dir, buf_str(&err));
	if (chdir(queue_dir) < 0)
		log_fatal("chdir %s: %m", queue_dir);
	lock_pid_file();

	if (pipe2(p, O_CLOEXEC) < 0)
		log_fatal("pipe: %m");
	master_status_r = p[0];
	master_status_w = p[1];
	(void)fcntl(master_status_r, F_SETFL, O_NONBLOCK);
	master_spawn_init();
	if (master_svc_build(m, &services, false, &services, true) < 0)
		log_fatal("cannot start the listeners above");
	mcf_free(m);
	free(m);
	buf_free(&err);

	if (!foreground)
		daemonize();
	else
		write_pid(getpid());
	setup_logging(false);
	setup_signals();
	event_enable_read(master_status_r, master_status_event, NULL);
	if (geteuid() != 0)
		log_info(
		    "running as uid %ld, not root: every service runs as this user, without chroot", (long)geteuid());
	log_info("daemon started -- version %s, configuration %s", PACKAGE_VERSION, master_config_dir);
	start_services();

	while (!master_stopping || master_child_count() > 0)
		event_run(-1);
	log_info("stopped");
	return 0;
}
