/*
 * postern_ctl - the system as a whole: start, stop, reload, status, check.
 *
 * These talk to the master through its pid file (a locked file in
 * $queue_directory/pid): the lock says whether a master runs, the file
 * says which pid to signal.  "status" counts the master's children in
 * /proc.  Runs as the admin; needs no privilege beyond the right to
 * signal the master (root for a root master).
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "cfg.h"
#include "log.h"
#include "master_proto.h"
#include "mastercf.h"
#include "postern.h"
#include "priv.h"
#include "qdir.h"
#include "str.h"
#include "xalloc.h"

/* master_pid - the running master's pid, 0 when none runs, -1 on error */
static pid_t
master_pid(void)
{
	char path[4096], buf[32];
	long long pid;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", cfg_str(P_QUEUE_DIRECTORY), MASTER_PID_FILE);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return errno == ENOENT ? 0 : -1;
	if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
		close(fd); /* nobody holds the lock: no master */
		return 0;
	}
	if (errno != EWOULDBLOCK) {
		close(fd);
		return -1;
	}
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	buf[n > 0 ? n : 0] = 0;
	buf[strcspn(buf, "\n")] = 0;
	if (str_to_ll(buf, 2, 1LL << 31, &pid, NULL) < 0)
		return -1;
	return (pid_t)pid;
}

static const char *
config_dir(void)
{
	static char real[4096];

	return realpath(cfg_config_dir(), real) ? real : cfg_config_dir();
}

/* check_config - print every configuration error; returns how many */
static int
check_config(bool quiet_ok)
{
	struct buf err = BUF_INIT;
	int n = cfg_check(&err);

	if (n > 0)
		fputs(buf_str(&err), stderr);
	if (n > 0 && buf_len(&err) && err.data[err.len - 1] != '\n')
		fputc('\n', stderr);
	(void)quiet_ok;
	buf_free(&err);
	return n;
}

static int
cmd_start(int argc, char **argv)
{
	bool fg = false;
	char *path, *av[8];
	int ch, status, n = 0;
	pid_t pid;

	while ((ch = getopt(argc, argv, "f")) != -1) {
		if (ch != 'f') {
			fprintf(stderr, "usage: postern [-c DIR] start [-f]\n");
			return 2;
		}
		fg = true;
	}
	cli_load_config();
	if (check_config(true) > 0)
		return 1;
	if ((pid = master_pid()) > 0) {
		fprintf(stderr, "postern: the master is already running (pid %ld)\n", (long)pid);
		return 1;
	}
	path = xasprintf("%s/master", cfg_str(P_DAEMON_DIRECTORY));
	av[n++] = path;
	av[n++] = "-C";
	av[n++] = (char *)config_dir();
	if (fg)
		av[n++] = "-f";
	if (log_verbose)
		av[n++] = "-v";
	av[n] = NULL;
	if (fg) {
		execv(path, av);
		log_fatal("execute %s: %m", path);
	}
	if ((pid = fork()) < 0)
		log_fatal("fork: %m");
	if (pid == 0) {
		execv(path, av);
		log_fatal("execute %s: %m", path);
	}
	free(path);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			log_fatal("waitpid: %m");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "postern: the master did not start (see the messages above)\n");
		return 1;
	}
	printf("postern: started (pid %ld), configuration %s\n", (long)master_pid(), config_dir());
	return 0;
}

/* wait_gone - wait until no master holds the lock, at most seconds */
static bool
wait_gone(long long seconds)
{
	struct timespec ts = { 0, 100 * 1000 * 1000 };
	long long i;

	for (i = 0; i < seconds * 10; i++) {
		if (master_pid() == 0)
			return true;
		nanosleep(&ts, NULL);
	}
	return master_pid() == 0;
}

static int
cmd_signal(int argc, char **argv, int sig)
{
	pid_t pid;

	(void)argc;
	cli_load_config();
	if ((pid = master_pid()) < 0) {
		fprintf(stderr, "postern: cannot read the master's pid file in %s\n", cfg_str(P_QUEUE_DIRECTORY));
		return 1;
	}
	if (pid == 0) {
		fprintf(stderr, "postern: the master is not running\n");
		return 1;
	}
	if (sig == SIGHUP && check_config(true) > 0) {
		fprintf(stderr, "postern: not reloading a broken configuration\n");
		return 1;
	}
	if (kill(pid, sig) < 0) {
		fprintf(stderr, "postern: signal the master (pid %ld): %s\n", (long)pid, strerror(errno));
		return 1;
	}
	if (sig == SIGTERM) {
		if (!wait_gone(cfg_time(P_MASTER_STOP_TIMEOUT) + 10)) {
			fprintf(stderr, "postern: the master (pid %ld) has not stopped yet\n", (long)pid);
			return 1;
		}
		printf("postern: stopped\n");
	} else {
		printf("postern: %s requested (pid %ld)\n", argv[0], (long)pid);
	}
	return 0;
}

struct svc_count {
	char *name;
	char *type;
	int n;
};

/* count_children - how many processes each service of the master has */
static void
count_children(pid_t master, struct svc_count *sc, size_t nsc)
{
	char path[64], buf[8192];
	struct dirent *de;
	DIR *d;

	if ((d = opendir("/proc")) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		long long pid, ppid;
		char *p, *name = NULL, *type = NULL;
		ssize_t n;
		size_t i;
		int fd;

		if (str_to_ll(de->d_name, 1, 1LL << 31, &pid, NULL) < 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%lld/stat", pid);
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
			continue;
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0)
			continue;
		buf[n] = 0;
		/* "pid (comm) state ppid ...": comm may hold spaces and parentheses. */
		if ((p = strrchr(buf, ')')) == NULL || sscanf(p + 1, " %*c %lld", &ppid) != 1 || ppid != master)
			continue;
		snprintf(path, sizeof(path), "/proc/%lld/cmdline", pid);
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
			continue;
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0)
			continue;
		buf[n] = 0;
		/* The skeleton's process title: "PROGRAM: SERVICE TYPE ...". */
		if ((p = strstr(buf, ": ")) == NULL)
			continue;
		name = p + 2;
		if ((p = strchr(name, ' ')) == NULL)
			continue;
		*p++ = 0;
		type = p;
		type[strcspn(type, " ")] = 0;
		for (i = 0; name && type && i < nsc; i++)
			if (strcmp(sc[i].name, name) == 0 && strcmp(sc[i].type, type) == 0)
				sc[i].n++;
	}
	closedir(d);
}

static int
cmd_status(int argc, char **argv)
{
	struct buf err = BUF_INIT;
	struct svc_count *sc;
	struct mcf m = { 0 };
	char *path;
	pid_t pid;
	size_t i;

	(void)argc;
	(void)argv;
	cli_load_config();
	pid = master_pid();
	if (pid <= 0) {
		printf("postern: the master is not running (configuration %s)\n", config_dir());
		return pid < 0 ? 2 : 1;
	}
	printf("postern: the master is running (pid %ld), configuration %s\n", (long)pid, config_dir());
	path = xasprintf("%s/master.cf", cfg_config_dir());
	if (mcf_load(path, &m, &err) < 0) {
		fprintf(stderr, "%s\n", buf_str(&err));
		free(path);
		buf_free(&err);
		return 0;
	}
	sc = xcalloc(m.nservices + 1, sizeof(*sc));
	for (i = 0; i < m.nservices; i++) {
		sc[i].name = m.services[i].name;
		sc[i].type = (char *)mcf_type_name(m.services[i].type);
	}
	count_children(pid, sc, m.nservices);
	if (m.nservices)
		printf("%-24s %-5s %8s %9s\n", "service", "type", "maxproc", "processes");
	for (i = 0; i < m.nservices; i++) {
		char mp[16];

		if (m.services[i].maxproc < 0)
			snprintf(mp, sizeof(mp), "%lld", cfg_int(P_DEFAULT_PROCESS_LIMIT));
		else if (m.services[i].maxproc == 0)
			snprintf(mp, sizeof(mp), "-");
		else
			snprintf(mp, sizeof(mp), "%d", m.services[i].maxproc);
		printf("%-24s %-5s %8s %9d\n", sc[i].name, sc[i].type, mp, sc[i].n);
	}
	free(sc);
	mcf_free(&m);
	free(path);
	buf_free(&err);
	return 0;
}

/*
 * check_path - path (a directory or a file, never followed if a link)
 * must not be writable by group or others and, when we are root, must
 * belong to root; with fix, make it so.  Returns the problems left.
 */
static int
check_path(const char *path, bool fix)
{
	bool root = geteuid() == 0;
	struct stat st;
	int problems = 0;

	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0; /* what must exist is checked elsewhere */
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return 1;
	}
	if (S_ISLNK(st.st_mode))
		return 0; /* the target is checked under its own name, if at all */
	if (root && st.st_uid != 0) {
		if (!fix || lchown(path, 0, (gid_t)-1) < 0) {
			fprintf(stderr, "%s: owner uid %ld, should be root\n", path, (long)st.st_uid);
			problems++;
		}
	}
	if (st.st_mode & 022) {
		if (!fix || chmod(path, st.st_mode & 07755) < 0) {
			fprintf(stderr, "%s: mode %04o is writable by %s\n", path, (unsigned)(st.st_mode & 07777),
			    st.st_mode & 002 ? "everybody" : "the group");
			problems++;
		}
	}
	return problems;
}

/* check_dir_files - check_path for a directory and every file in it */
static int
check_dir_files(const char *dir, bool fix)
{
	struct dirent *de;
	char *path;
	int problems = check_path(dir, fix);
	DIR *d;

	if ((d = opendir(dir)) == NULL)
		return problems;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		path = xasprintf("%s/%s", dir, de->d_name);
		problems += check_path(path, fix);
		free(path);
	}
	closedir(d);
	return problems;
}

/* check_postdrop - set-group-id setgid_group, owned by root, mode 2755 (as root) */
static int
check_postdrop(bool fix)
{
	struct buf err = BUF_INIT;
	struct stat st;
	char *path = xasprintf("%s/postdrop", cfg_str(P_COMMAND_DIRECTORY));
	gid_t gid;
	int problems = 0;

	if (geteuid() != 0) {
		/* A personal instance runs as one user: nothing is set-id. */
	} else if (lstat(path, &st) < 0) {
		printf("postern: note: %s: %s; local submission (sendmail) needs it: \"make install\", then "
		       "\"postern setup\"\n",
		    path, strerror(errno));
	} else if (!S_ISREG(st.st_mode)) {
		fprintf(stderr, "%s: not a regular file\n", path);
		problems++;
	} else if (priv_group(cfg_str(P_SETGID_GROUP), &gid, &err) < 0) {
		fprintf(stderr, "postern: %s (run \"postern setup\")\n", buf_str(&err));
		problems++;
	} else if (st.st_uid != 0 || st.st_gid != gid || (st.st_mode & 07777) != 02755) {
		if (!fix || chown(path, 0, gid) < 0 || chmod(path, 02755) < 0) {
			fprintf(stderr, "%s: owner %ld:%ld mode %04o, should be root:%s mode 2755 (set-group-id)\n",
			    path, (long)st.st_uid, (long)st.st_gid, (unsigned)(st.st_mode & 07777),
			    cfg_str(P_SETGID_GROUP));
			problems++;
		}
	}
	free(path);
	buf_free(&err);
	return problems;
}

static int
cmd_check(int argc, char **argv)
{
	struct buf err = BUF_INIT;
	struct qdir_ids ids;
	struct mcf m = { 0 };
	bool fix = false;
	char *path, *prog;
	int ch, problems = 0;
	size_t i;

	while ((ch = getopt(argc, argv, "f")) != -1) {
		if (ch != 'f') {
			fprintf(stderr, "usage: postern [-c DIR] check [-f]\n");
			return 2;
		}
		fix = true;
	}
	(void)argv;
	cli_load_config();
	problems += check_config(false);
	path = xasprintf("%s/master.cf", cfg_config_dir());
	if (mcf_load(path, &m, &err) < 0) {
		fprintf(stderr, "%s\n", buf_str(&err));
		problems++;
	}
	for (i = 0; i < m.nservices; i++) {
		const char *cmd = m.services[i].command;

		prog = cmd[0] == '/' ? xstrdup(cmd) : xasprintf("%s/%s", cfg_str(P_DAEMON_DIRECTORY), cmd);
		if (access(prog, X_OK) < 0) {
			fprintf(stderr, "%s:%d: service %s: %s: %s\n", m.services[i].file ? m.services[i].file : path,
			    m.services[i].line, m.services[i].name, prog, strerror(errno));
			problems++;
		}
		free(prog);
	}
	mcf_free(&m);
	free(path);
	buf_reset(&err);
	if (qdir_ids_load(&ids, &err) < 0) {
		fprintf(stderr, "postern: %s (run \"postern setup\")\n", buf_str(&err));
		problems++;
	} else {
		buf_reset(&err);
		if (access(cfg_str(P_QUEUE_DIRECTORY), F_OK) == 0) {
			if (qdir_setup(cfg_str(P_QUEUE_DIRECTORY), &ids, fix, fix, &err) > 0) {
				fprintf(stderr, "%s", buf_str(&err));
				problems++;
			}
		} else if (errno != ENOENT) {
			fprintf(stderr, "postern: %s: %s\n", cfg_str(P_QUEUE_DIRECTORY), strerror(errno));
			problems++;
		}
	}
	/* What root runs or reads must not be changeable by anybody else. */
	problems += check_path(cfg_str(P_QUEUE_DIRECTORY), fix);
	problems += check_path(cfg_config_dir(), fix);
	path = xasprintf("%s/main.cf", cfg_config_dir());
	problems += check_path(path, fix);
	free(path);
	path = xasprintf("%s/master.cf", cfg_config_dir());
	problems += check_path(path, fix);
	free(path);
	problems += check_dir_files(cfg_str(P_DAEMON_DIRECTORY), fix);
	problems += check_postdrop(fix);
	buf_free(&err);
	if (problems) {
		fprintf(stderr, "postern: %d problem%s found\n", problems, problems == 1 ? "" : "s");
		return 1;
	}
	printf("postern: configuration %s is fine\n", config_dir());
	return 0;
}

int
cmd_ctl(int argc, char **argv)
{
	if (strcmp(argv[0], "start") == 0)
		return cmd_start(argc, argv);
	if (strcmp(argv[0], "stop") == 0)
		return cmd_signal(argc, argv, SIGTERM);
	if (strcmp(argv[0], "reload") == 0)
		return cmd_signal(argc, argv, SIGHUP);
	if (strcmp(argv[0], "status") == 0)
		return cmd_status(argc, argv);
	if (strcmp(argv[0], "check") == 0)
		return cmd_check(argc, argv);
	log_panic("cmd_ctl: %s", argv[0]);
}
