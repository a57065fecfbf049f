/*
 * local_pipe - delivery to a command: |command in an alias, a .forward
 * or an :include: file, and mailbox_command.
 *
 * Called by local_resolve.c with the identity the command runs as (never
 * root).  The command runs in its own process and process group, fully
 * and irrevocably switched to that identity and its own supplementary
 * groups, in the user's home directory, with exactly three descriptors
 * (0: the message with Return-Path and Delivered-To; 1 and 2: a pipe
 * local reads) and an environment made here from nothing (no LD_*, no
 * inherited variable).  A command without shell metacharacters runs
 * directly (execve, PATH=/usr/bin:/bin); anything else through
 * /bin/sh -c.  After command_time_limit the whole process group is
 * killed and the delivery deferred.  The exit status is read as
 * sysexits(3); at most LOCAL_OUTPUT_MAX bytes of output are kept, and
 * the first line goes into the reason.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include "local.h"
#include "log.h"
#include "stream.h"
#include "xalloc.h"

#define PIPE_CMD_SHOWN 100 /* bytes of a command shown in a reason */

static const struct local_sysexit sysexits[] = {
	{ 64, DELIVER_BOUNCED, "5.3.0", "EX_USAGE" },
	{ 65, DELIVER_BOUNCED, "5.6.0", "EX_DATAERR" },
	{ 66, DELIVER_BOUNCED, "5.3.0", "EX_NOINPUT" },
	{ 67, DELIVER_BOUNCED, "5.1.1", "EX_NOUSER" },
	{ 68, DELIVER_BOUNCED, "5.1.2", "EX_NOHOST" },
	{ 69, DELIVER_BOUNCED, "5.3.0", "EX_UNAVAILABLE" },
	{ 70, DELIVER_BOUNCED, "5.3.0", "EX_SOFTWARE" },
	{ 71, DELIVER_DEFERRED, "4.3.0", "EX_OSERR" },
	{ 72, DELIVER_BOUNCED, "5.3.0", "EX_OSFILE" },
	{ 73, DELIVER_BOUNCED, "5.2.0", "EX_CANTCREAT" },
	{ 74, DELIVER_BOUNCED, "5.3.0", "EX_IOERR" },
	{ 75, DELIVER_DEFERRED, "4.3.0", "EX_TEMPFAIL" },
	{ 76, DELIVER_BOUNCED, "5.5.0", "EX_PROTOCOL" },
	{ 77, DELIVER_BOUNCED, "5.7.0", "EX_NOPERM" },
	{ 78, DELIVER_BOUNCED, "5.3.5", "EX_CONFIG" },
};

const struct local_sysexit *
local_sysexit(int code)
{
	size_t i;

	for (i = 0; i < sizeof(sysexits) / sizeof(sysexits[0]); i++)
		if (sysexits[i].code == code)
			return &sysexits[i];
	return NULL;
}

int
local_cmd_split(const char *cmd, char ***argv)
{
	char *copy, *p, *w, **v = NULL;
	size_t n = 0;

	*argv = NULL;
	if (strspn(cmd, " \t") == strlen(cmd))
		return -1;
	if (strpbrk(cmd, LOCAL_SHELL_META) != NULL)
		return 0;
	copy = xstrdup(cmd);
	p = copy;
	while ((w = strsep(&p, " \t")) != NULL) {
		if (*w == 0)
			continue;
		if (n >= LOCAL_ARGV_MAX) {
			/* Let the shell deal with a command this long. */
			local_argv_free(v);
			free(copy);
			return 0;
		}
		v = xreallocarray(v, n + 2, sizeof(*v));
		v[n++] = xstrdup(w);
		v[n] = NULL;
	}
	free(copy);
	*argv = v;
	return 1;
}

void
local_argv_free(char **argv)
{
	size_t i;

	for (i = 0; argv != NULL && argv[i] != NULL; i++)
		free(argv[i]);
	free(argv);
}

/* shown - text for a reason: printable, shortened */
static void
shown(struct buf *out, const unsigned char *p, size_t n, size_t max)
{
	size_t i;

	for (i = 0; i < n && i < max; i++)
		buf_putc(out, p[i] < 0x20 || p[i] >= 0x7f ? '?' : p[i]);
	if (n > max)
		buf_puts(out, "...");
}

void
local_cmd_result(
    int wstatus, bool timed_out, const char *cmd, const unsigned char *out, size_t outlen, struct local_result *res)
{
	struct buf c = BUF_INIT, o = BUF_INIT;
	const struct local_sysexit *se;
	const unsigned char *nl;
	int code;

	shown(&c, (const unsigned char *)cmd, strlen(cmd), PIPE_CMD_SHOWN);
	/* The first non-empty line of output, if any. */
	while (outlen > 0 && (out[0] == '\n' || out[0] == '\r')) {
		out++;
		outlen--;
	}
	if ((nl = memchr(out, '\n', outlen)) != NULL)
		outlen = (size_t)(nl - out);
	while (outlen > 0 && (out[outlen - 1] == '\r' || out[outlen - 1] == ' '))
		outlen--;
	if (outlen > 0) {
		buf_puts(&o, ": ");
		shown(&o, out, outlen, 300);
	}
	if (timed_out) {
		local_result_set(res, DELIVER_DEFERRED, "4.3.0", "command timed out after %d seconds: %s%s",
		    local_conf.command_time_limit, buf_str(&c), buf_str(&o));
	} else if (WIFSIGNALED(wstatus)) {
		local_result_set(res, DELIVER_DEFERRED, "4.3.0", "command killed by signal %d: %s%s", WTERMSIG(wstatus),
		    buf_str(&c), buf_str(&o));
	} else if ((code = WEXITSTATUS(wstatus)) == 0) {
		local_result_set(res, DELIVER_SENT, "2.0.0", "delivered to command: %s", buf_str(&c));
	} else if ((se = local_sysexit(code)) != NULL) {
		local_result_set(res, se->status, se->dsn, "command failed: exit status %d (%s): %s%s", code, se->name,
		    buf_str(&c), buf_str(&o));
	} else {
		local_result_set(res, DELIVER_BOUNCED, "5.3.0", "command failed: exit status %d: %s%s", code,
		    buf_str(&c), buf_str(&o));
	}
	buf_free(&c);
	buf_free(&o);
}

/* env_add - one NAME=value with control characters in the value replaced */
static void
env_add(char **env, size_t *n, const char *name, const char *value)
{
	struct buf b = BUF_INIT;
	const unsigned char *p;

	buf_printf(&b, "%s=", name);
	for (p = (const unsigned char *)(value ? value : ""); *p; p++)
		buf_putc(&b, *p < 0x20 || *p == 0x7f ? '_' : *p);
	env[(*n)++] = buf_export(&b);
	env[*n] = NULL;
}

/* child_die - report why the command could not start, and exit with code */
static _Noreturn void
child_die(int code, const char *what)
{
	char msg[256];
	int n = snprintf(msg, sizeof(msg), "%s: %s\n", what, strerror(errno));

	if (n > 0)
		(void)local_write_all(2, msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
	_exit(code);
}

/* child_drop - become id for good: its groups, then gid, then uid; verify */
static void
child_drop(const struct local_ident *id)
{
	gid_t groups[256];
	int n = (int)(sizeof(groups) / sizeof(groups[0]));
	uid_t ru, eu, su;

	if (id->uid == 0) {
		errno = EPERM;
		child_die(EX_TEMPFAIL, "refusing to run a command as root");
	}
	if (id->user == NULL || getgrouplist(id->user, id->gid, groups, &n) < 0) {
		groups[0] = id->gid;
		n = 1;
	}
	if (setgroups((size_t)n, groups) < 0)
		child_die(EX_TEMPFAIL, "setgroups");
	if (setresgid(id->gid, id->gid, id->gid) < 0)
		child_die(EX_TEMPFAIL, "setresgid");
	if (setresuid(id->uid, id->uid, id->uid) < 0)
		child_die(EX_TEMPFAIL, "setresuid");
	if (getresuid(&ru, &eu, &su) < 0 || ru != id->uid || eu != id->uid || su != id->uid || setuid(0) == 0) {
		errno = EPERM;
		child_die(EX_TEMPFAIL, "privilege drop failed");
	}
}

/* pipe_child - the command's process; never returns */
static _Noreturn void
pipe_child(int in, int out, const struct local_ident *id, char **argv, const char *cmd, char **envp)
{
	static const int sigs[] = { SIGPIPE, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGALRM, SIGCHLD, SIGUSR1, SIGUSR2 };
	sigset_t none;
	size_t i;

	if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
		_exit(EX_TEMPFAIL);
	closefrom(3);
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		signal(sigs[i], SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	(void)setsid(); /* its own process group: killed as a whole on timeout */
	if (local_privileged)
		child_drop(id);
	if (id->home == NULL || *id->home != '/' || chdir(id->home) < 0)
		(void)chdir("/");
	umask(077);
	if (argv == NULL) {
		char *sh[] = { "sh", "-c", (char *)cmd, NULL };

		execve("/bin/sh", sh, envp);
		child_die(126, "/bin/sh");
	} else if (strchr(argv[0], '/') != NULL) {
		execve(argv[0], argv, envp);
		child_die(errno == ENOENT ? 127 : 126, argv[0]);
	} else {
		static const char *const dirs[] = { "/usr/bin", "/bin" };
		char path[4096];
		int e = ENOENT;

		for (i = 0; i < 2; i++) {
			if ((size_t)snprintf(path, sizeof(path), "%s/%s", dirs[i], argv[0]) >= sizeof(path))
				break;
			execve(path, argv, envp);
			if (errno != ENOENT)
				e = errno;
		}
		errno = e;
		child_die(e == ENOENT ? 127 : 126, argv[0]);
	}
}

/* Parent side of one command. */
struct pipe_io {
	const struct local_msg *m;
	int in;  /* the command's input, -1 once closed */
	int out; /* its output, -1 at end of file */
	struct buf pending;
	size_t pos;
	off_t cpos;
	bool content_done;
	struct buf output; /* the first LOCAL_OUTPUT_MAX bytes */
};

/* pipe_feed - keep the command's input fed; -1 when the queue file cannot be read */
static int
pipe_feed(struct pipe_io *io, struct buf *err)
{
	ssize_t w;
	int r;

	for (;;) {
		if (io->pos == io->pending.len && !io->content_done) {
			buf_reset(&io->pending);
			io->pos = 0;
			r = qfile_content_next(io->m->fd, &io->cpos, &io->pending, err);
			if (r < 0)
				return -1;
			if (r == 0)
				io->content_done = true;
		}
		if (io->pos == io->pending.len) {
			close(io->in); /* all of it: the command sees end of file */
			io->in = -1;
			return 0;
		}
		w = write(io->in, io->pending.data + io->pos, io->pending.len - io->pos);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (w < 0) {
			/* It stopped reading (EPIPE): what counts is how it exits. */
			close(io->in);
			io->in = -1;
			return 0;
		}
		io->pos += (size_t)w;
	}
}

/* pipe_drain - read what the command wrote; keep the start of it */
static void
pipe_drain(struct pipe_io *io)
{
	unsigned char chunk[8192];
	ssize_t n;

	for (;;) {
		n = read(io->out, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			close(io->out);
			io->out = -1;
			return;
		}
		if (io->output.len < LOCAL_OUTPUT_MAX)
			buf_append(&io->output, chunk,
			    (size_t)n < LOCAL_OUTPUT_MAX - io->output.len ? (size_t)n
			                                                  : LOCAL_OUTPUT_MAX - io->output.len);
	}
}

int
local_pipe_deliver(const struct local_msg *m, const struct local_addr *rcpt, const char *cmd,
    const struct local_ident *id, struct local_result *res)
{
	char *envp[16], **argv = NULL;
	struct pipe_io io;
	struct buf err = BUF_INIT;
	int inp[2] = { -1, -1 }, outp[2] = { -1, -1 };
	int wstatus = 0, split, r;
	bool exited = false, timed_out = false;
	int64_t deadline;
	size_t ne = 0, i;
	pid_t pid;

	if (local_privileged && id->uid == 0) {
		local_result_set(res, DELIVER_DEFERRED, "4.3.0", "refusing to run a command as root");
		return -1;
	}
	if ((split = local_cmd_split(cmd, &argv)) < 0) {
		local_result_set(res, DELIVER_BOUNCED, "5.3.5", "empty command");
		return -1;
	}
	env_add(envp, &ne, "HOME", id->home ? id->home : "/");
	env_add(envp, &ne, "USER", id->user ? id->user : "");
	env_add(envp, &ne, "LOGNAME", id->user ? id->user : "");
	env_add(envp, &ne, "SHELL", "/bin/sh");
	env_add(envp, &ne, "PATH", LOCAL_COMMAND_PATH);
	env_add(envp, &ne, "SENDER", m->sender);
	env_add(envp, &ne, "RECIPIENT", rcpt->addr);
	env_add(envp, &ne, "LOCAL", rcpt->local);
	env_add(envp, &ne, "DOMAIN", rcpt->domain);
	env_add(envp, &ne, "EXTENSION", rcpt->ext);

	memset(&io, 0, sizeof(io));
	io.m = m;
	io.in = io.out = -1;
	io.cpos = m->content_offset;
	local_msg_prepend(m, rcpt->addr, &io.pending);
	if (pipe2(inp, O_CLOEXEC) < 0 || pipe2(outp, O_CLOEXEC) < 0) {
		local_result_set(res, DELIVER_DEFERRED, "4.3.0", "pipe: %s", strerror(errno));
		goto out;
	}
	if ((pid = fork()) < 0) {
		local_result_set(res, DELIVER_DEFERRED, "4.3.0", "fork: %s", strerror(errno));
		goto out;
	}
	if (pid == 0)
		pipe_child(inp[0], outp[1], id, split ? argv : NULL, cmd, envp);
	close(inp[0]);
	close(outp[1]);
	inp[0] = outp[1] = -1;
	io.in = inp[1];
	io.out = outp[0];
	inp[1] = outp[0] = -1;
	(void)fcntl(io.in, F_SETFL, O_NONBLOCK);
	(void)fcntl(io.out, F_SETFL, O_NONBLOCK);

	deadline = stream_now_ms() + (int64_t)local_conf.command_time_limit * 1000;
	for (;;) {
		struct pollfd pfd[2];
		int64_t left = deadline - stream_now_ms();
		int np = 0, wait_ms;

		if (io.in >= 0 && io.pos == io.pending.len && pipe_feed(&io, &err) < 0) {
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
			(void)waitpid(pid, &wstatus, 0);
			local_result_set(res, DELIVER_DEFERRED, "4.3.0", "reading the queue file: %s", buf_str(&err));
			goto out;
		}
		if (!exited && waitpid(pid, &wstatus, WNOHANG) == pid)
			exited = true;
		if (io.out < 0 && (exited || io.in < 0))
			break;
		if (left <= 0) {
			timed_out = true;
			break;
		}
		if (io.in >= 0) {
			pfd[np].fd = io.in;
			pfd[np++].events = POLLOUT;
		}
		if (io.out >= 0) {
			pfd[np].fd = io.out;
			pfd[np++].events = POLLIN;
		}
		/* Wake up now and then to notice an exit while a descendant keeps the pipe open. */
		wait_ms = left < 200 ? (int)left : 200;
		r = poll(pfd, (nfds_t)np, wait_ms);
		if (r < 0 && errno != EINTR) {
			timed_out = true; /* cannot wait: treat as stuck */
			break;
		}
		if (r == 0 && exited) {
			/* Gone, and nothing more to read for a while: done with it. */
			break;
		}
		for (i = 0; r > 0 && i < (size_t)np; i++) {
			if (pfd[i].revents == 0)
				continue;
			if (pfd[i].fd == io.in && io.in >= 0 && pipe_feed(&io, &err) < 0) {
				kill(-pid, SIGKILL);
				kill(pid, SIGKILL);
				(void)waitpid(pid, &wstatus, 0);
				local_result_set(
				    res, DELIVER_DEFERRED, "4.3.0", "reading the queue file: %s", buf_str(&err));
				goto out;
			}
			if (pfd[i].fd == io.out && io.out >= 0)
				pipe_drain(&io);
		}
	}
	/* The command may have closed its output and still be running. */
	while (!timed_out && !exited) {
		if (waitpid(pid, &wstatus, WNOHANG) == pid) {
			exited = true;
			break;
		}
		if (stream_now_ms() >= deadline) {
			timed_out = true;
			break;
		}
		poll(NULL, 0, 20);
	}
	if (timed_out) {
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
		if (!exited)
			(void)waitpid(pid, &wstatus, 0);
		log_warn("%s: %s: command timed out after %ds, killed: %s", m->queue_id, rcpt->addr,
		    local_conf.command_time_limit, cmd);
	}
	local_cmd_result(
	    wstatus, timed_out, cmd, io.output.data ? io.output.data : (const unsigned char *)"", io.output.len, res);
out:
	if (io.in >= 0)
		close(io.in);
	if (io.out >= 0)
		close(io.out);
	for (i = 0; i < 2; i++) {
		if (inp[i] >= 0)
			close(inp[i]);
		if (outp[i] >= 0)
			close(outp[i]);
	}
	buf_free(&io.pending);
	buf_free(&io.output);
	buf_free(&err);
	for (i = 0; i < ne; i++)
		free(envp[i]);
	local_argv_free(argv);
	return res->status == DELIVER_SENT ? 0 : -1;
}
