/*
 * sendmail - the sendmail-compatible command (also run as mailq and
 * newaliases).  Programs that mail call it: cron, mail(1), mutt, git
 * send-email, PHP's mail().  It runs as whoever calls it, with nothing
 * but that user's rights: it reads the message from stdin and hands it to
 * postdrop (the one set-group-id program), which writes it into maildrop/
 * for pickup.  Exit statuses follow sysexits(3).
 *
 *   sendmail [-t] [-i|-oi] [-f sender] [-F name] [-B type] [-N dsn]
 *            [-R ret] [-V envid] [recipient ...]    submit a message
 *   sendmail -bs       SMTP on stdin/stdout
 *   sendmail -bp       list the queue (mailq)
 *   sendmail -bi       rebuild the aliases (newaliases)
 *   sendmail -bv addr  check addresses
 *   sendmail -q        deliver deferred mail now
 *
 * Options sendmail knows but that mean nothing here (-o7, -om, -oem,
 * -U, -X file, -v, -m, -n, -d...) are accepted and ignored, as Postfix's
 * sendmail does, so scripts written for sendmail keep working.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include "buf.h"
#include "cfg.h"
#include "log.h"
#include "maildrop.h"
#include "qfile.h"
#include "sendmail.h"
#include "smtpd_parse.h"
#include "str.h"
#include "stream.h"
#include "xalloc.h"

#define LINE_MAX_SM 65536

struct opts {
	const char *sender;
	bool extract; /* -t */
	bool dot_ok;  /* -i / -oi: a lone "." does not end the message */
	const char *body, *dsn_notify, *ret, *envid, *full_name;
	const char *config_dir;
	char **rcpts;
	int nrcpts;
};

static char self_dir[PATH_MAX];

/* program - a sibling program (build tree) or one in command_directory */
static char *
program(const char *name)
{
	char *p = xasprintf("%s/%s", self_dir, name);

	if (access(p, X_OK) == 0)
		return p;
	free(p);
	return xasprintf("%s/%s", cfg_str(P_COMMAND_DIRECTORY), name);
}

/*
 * child_env - what postdrop and postern get: a fixed PATH and the
 * sanitizers' options, nothing else the caller set (LD_PRELOAD, TZ,
 * TMPDIR...).  The configuration travels as -c.
 */
static char **
child_env(void)
{
	static const char *const keep[] = { "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", NULL };
	static char *env[8];
	const char *v;
	size_t i, n = 0;

	if (env[0] == NULL) {
		env[n++] = "PATH=/usr/bin:/bin";
		for (i = 0; keep[i]; i++)
			if ((v = getenv(keep[i])) != NULL)
				env[n++] = xasprintf("%s=%s", keep[i], v);
		env[n] = NULL;
	}
	return env;
}

/* run_wait - run argv with stdin from in_fd (-1: inherit); its exit status */
static int
run_wait(char *const argv[], int in_fd)
{
	int status;
	pid_t pid;

	if ((pid = fork()) < 0) {
		fprintf(stderr, "sendmail: fork: %s\n", strerror(errno));
		return EX_OSERR;
	}
	if (pid == 0) {
		if (in_fd >= 0 && dup2(in_fd, 0) < 0)
			_exit(EX_OSERR);
		execve(argv[0], argv, child_env());
		fprintf(stderr, "sendmail: execute %s: %s\n", argv[0], strerror(errno));
		_exit(EX_UNAVAILABLE);
	}
	if (in_fd >= 0)
		close(in_fd);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return EX_OSERR;
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return EX_SOFTWARE;
}

/*
 * postdrop_argv - the postdrop command with our configuration: a
 * directory other than the default goes as -c, which a set-group-id
 * postdrop accepts from users other than root only when the default
 * main.cf lists it in alternate_config_directories.
 */
static char **
postdrop_argv(const char *mode)
{
	static char *av[6];
	const char *dir = cfg_config_dir();
	int n = 0;

	av[n++] = program("postdrop");
	if (strcmp(dir, DEF_CONFIG_DIR) != 0) {
		av[n++] = "-c";
		av[n++] = (char *)dir;
	}
	if (mode)
		av[n++] = (char *)mode;
	av[n] = NULL;
	return av;
}

/* A running postdrop that receives one message's records. */
struct pd {
	pid_t pid;
	int fd;
	bool failed;
};

/* pd_start - run postdrop with a pipe on its stdin */
static int
pd_start(const struct opts *o, struct pd *pd)
{
	char **av = postdrop_argv(NULL);

	(void)o;
	int p[2];

	memset(pd, 0, sizeof(*pd));
	if (pipe2(p, O_CLOEXEC) < 0 || (pd->pid = fork()) < 0) {
		fprintf(stderr, "sendmail: cannot run postdrop: %s\n", strerror(errno));
		return EX_OSERR;
	}
	if (pd->pid == 0) {
		dup2(p[0], 0);
		execve(av[0], av, child_env());
		fprintf(stderr, "sendmail: execute %s: %s\n", av[0], strerror(errno));
		_exit(EX_UNAVAILABLE);
	}
	close(p[0]);
	pd->fd = p[1];
	return EX_OK;
}

/* pd_write - send records (and empty the buffer); postdrop's death shows in pd_finish */
static void
pd_write(struct pd *pd, struct buf *rec)
{
	size_t off = 0;
	ssize_t n;

	while (!pd->failed && off < rec->len) {
		n = write(pd->fd, rec->data + off, rec->len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			pd->failed = true;
		else
			off += (size_t)n;
	}
	buf_reset(rec);
}

/* pd_finish - close the pipe and collect postdrop's verdict (a sysexits code) */
static int
pd_finish(struct pd *pd)
{
	int status, rc;

	close(pd->fd);
	while (waitpid(pd->pid, &status, 0) < 0)
		if (errno != EINTR)
			return EX_OSERR;
	rc = WIFEXITED(status) ? WEXITSTATUS(status) : EX_SOFTWARE;
	if (rc == EX_OK && pd->failed)
		rc = EX_IOERR;
	return rc;
}

/* envelope - the S, A and R records */
static void
envelope(const struct opts *o, struct buf *rec, const struct buf *hdr_rcpts, size_t nhdr)
{
	const char *p;
	char *a;
	size_t i;
	int k;

	maildrop_put(rec, 'S', o->sender, strlen(o->sender));
	if (o->body) {
		a = xasprintf("body=%s", o->body);
		maildrop_put(rec, 'A', a, strlen(a));
		free(a);
	}
	if (o->ret) {
		a = xasprintf("ret=%s", o->ret);
		maildrop_put(rec, 'A', a, strlen(a));
		free(a);
	}
	if (o->envid) {
		a = xasprintf("envid=%s", o->envid);
		maildrop_put(rec, 'A', a, strlen(a));
		free(a);
	}
	if (o->dsn_notify) {
		a = xasprintf("notify=%s", o->dsn_notify);
		maildrop_put(rec, 'A', a, strlen(a));
		free(a);
	}
	for (k = 0; k < o->nrcpts; k++)
		maildrop_put(rec, 'R', o->rcpts[k], strlen(o->rcpts[k]));
	for (i = 0, p = hdr_rcpts ? (const char *)hdr_rcpts->data : NULL; p && i < nhdr; i++, p += strlen(p) + 1)
		maildrop_put(rec, 'R', p, strlen(p));
}

/* next_line - one input line as LF-terminated text; false at the end */
static bool
next_line(struct stream *in, struct buf *line, bool dot_ok, bool *toolong)
{
	size_t n;
	int r = stream_getline(in, line, LINE_MAX_SM);

	if (r != STREAM_OK && r != STREAM_TOOLONG)
		return false;
	*toolong = r == STREAM_TOOLONG;
	n = line->len;
	if (r == STREAM_OK && n > 0 && line->data[n - 1] == '\n') {
		n--;
		if (n > 0 && line->data[n - 1] == '\r')
			n--;
		buf_truncate(line, n);
		buf_putc(line, '\n');
	}
	/* Without -i, a line with just a dot ends the message. */
	return dot_ok || !(line->len == 2 && line->data[0] == '.' && line->data[1] == '\n');
}

/* submit - read the message from stdin and queue it, streaming */
static int
submit(struct opts *o)
{
	struct stream *in = stream_new(STDIN_FILENO, STREAM_NOCLOSE | STREAM_BLOCKING);
	struct buf line = BUF_INIT, header = BUF_INIT, rec = BUF_INIT, hdr_out = BUF_INIT, hdr_rcpts = BUF_INIT;
	long long hmax = cfg_int(P_HEADER_SIZE_LIMIT);
	bool more, toolong = false, first = true, pending = false;
	size_t nhdr = 0;
	struct pd pd;
	int rc;

	/* The header first: -t needs it whole.  A leading "From " line is dropped. */
	while ((more = next_line(in, &line, o->dot_ok, &toolong))) {
		if (first && line.len >= 5 && memcmp(line.data, "From ", 5) == 0) {
			first = false;
			continue;
		}
		first = false;
		if (toolong || (line.len == 1 && line.data[0] == '\n') || (long long)(header.len + line.len) > hmax) {
			pending = true; /* this line belongs to the body */
			break;
		}
		buf_append(&header, line.data, line.len);
	}
	if (o->extract)
		nhdr = sendmail_extract((const char *)header.data, header.len, &hdr_out, &hdr_rcpts);
	else
		buf_set(&hdr_out, header.data, header.len);
	if (o->nrcpts == 0 && nhdr == 0) {
		fprintf(stderr, "sendmail: no recipients given%s\n", o->extract ? " or found in the header" : "");
		rc = EX_USAGE;
		goto out;
	}
	if ((rc = pd_start(o, &pd)) != EX_OK)
		goto out;
	envelope(o, &rec, &hdr_rcpts, nhdr);
	maildrop_put(&rec, 'C', hdr_out.data, hdr_out.len);
	if (pending)
		maildrop_put(&rec, 'C', line.data, line.len);
	pd_write(&pd, &rec);
	/* The body, a line at a time: memory stays bounded whatever the size. */
	while (more && (more = next_line(in, &line, o->dot_ok, &toolong))) {
		maildrop_put(&rec, 'C', line.data, line.len);
		if (rec.len >= 65536)
			pd_write(&pd, &rec);
	}
	maildrop_put(&rec, 'E', "", 0);
	pd_write(&pd, &rec);
	rc = pd_finish(&pd);
out:
	stream_free(in);
	buf_free(&line);
	buf_free(&header);
	buf_free(&rec);
	buf_free(&hdr_out);
	buf_free(&hdr_rcpts);
	return rc;
}

/* smtp - "sendmail -bs": an SMTP conversation on stdin/stdout */
static int
smtp(struct opts *o)
{
	struct stream *in = stream_new(STDIN_FILENO, STREAM_NOCLOSE | STREAM_BLOCKING);
	struct stream *out = stream_new(STDOUT_FILENO, STREAM_NOCLOSE | STREAM_BLOCKING);
	struct smtpd_parse_opts po = { false, true, cfg_int(P_MESSAGE_SIZE_LIMIT) };
	struct buf line = BUF_INIT, addr = BUF_INIT, sender = BUF_INIT, rec = BUF_INIT, rcpts = BUF_INIT;
	struct smtpd_mail_args ma;
	struct smtpd_rcpt_args ra;
	struct smtpd_reply rep;
	struct smtpd_cmd c;
	struct pd pd;
	bool mail = false;
	size_t nrcpt = 0;
	int r, pdr;

	memset(&ma, 0, sizeof(ma));
	stream_set_timeout(in, 300);
	stream_printf(out, "220 %s ESMTP %s\r\n", cfg_str(P_MYHOSTNAME), cfg_str(P_MAIL_NAME));
	stream_flush(out);
	while (stream_getline(in, &line, 2048) == STREAM_OK) {
		while (line.len && (line.data[line.len - 1] == '\n' || line.data[line.len - 1] == '\r'))
			buf_truncate(&line, line.len - 1);
		if (smtpd_parse_line((char *)line.data, line.len, &c, &rep) < 0) {
			stream_printf(out, "%d %s %s\r\n", rep.code, rep.dsn, rep.text);
		} else if (c.verb == SMTPD_HELO || c.verb == SMTPD_EHLO) {
			stream_printf(out,
			    c.verb == SMTPD_EHLO ? "250-%s\r\n250-PIPELINING\r\n250 8BITMIME\r\n" : "250 %s\r\n",
			    cfg_str(P_MYHOSTNAME));
		} else if (c.verb == SMTPD_MAIL) {
			smtpd_mail_args_free(&ma);
			memset(&ma, 0, sizeof(ma));
			if (mail)
				stream_puts(out, "503 5.5.1 Error: nested MAIL command\r\n");
			else if (smtpd_parse_mail(c.arg, &po, &sender, &ma, &rep) < 0)
				stream_printf(out, "%d %s %s\r\n", rep.code, rep.dsn, rep.text);
			else
				mail = true, nrcpt = 0, buf_reset(&rcpts), stream_puts(out, "250 2.1.0 Ok\r\n");
		} else if (c.verb == SMTPD_RCPT) {
			memset(&ra, 0, sizeof(ra));
			if (!mail)
				stream_puts(out, "503 5.5.1 Error: need MAIL command\r\n");
			else if (smtpd_parse_rcpt(c.arg, &po, false, &addr, &ra, &rep) < 0)
				stream_printf(out, "%d %s %s\r\n", rep.code, rep.dsn, rep.text);
			else if (nrcpt >= MAILDROP_RCPT_MAX)
				stream_puts(out, "452 4.5.3 Error: too many recipients\r\n");
			else
				buf_append(&rcpts, addr.data, addr.len + 1), nrcpt++,
				    stream_puts(out, "250 2.1.5 Ok\r\n");
			smtpd_rcpt_args_free(&ra);
		} else if (c.verb == SMTPD_DATA) {
			const char *p;
			size_t i;

			if (nrcpt == 0) {
				stream_puts(out, "554 5.5.1 Error: no valid recipients\r\n");
				continue;
			}
			stream_puts(out, "354 End data with <CR><LF>.<CR><LF>\r\n");
			stream_flush(out);
			buf_reset(&rec);
			pdr = pd_start(o, &pd);
			maildrop_put(&rec, 'S', sender.data, sender.len);
			for (i = 0, p = (const char *)rcpts.data; i < nrcpt; i++, p += strlen(p) + 1)
				maildrop_put(&rec, 'R', p, strlen(p));
			/* content until CRLF "." CRLF, dot-stuffing undone, lines as LF */
			while ((r = stream_getline(in, &line, LINE_MAX_SM)) == STREAM_OK || r == STREAM_TOOLONG) {
				size_t n = line.len, skip = 0;

				if (r == STREAM_OK && n && line.data[n - 1] == '\n') {
					n--;
					if (n && line.data[n - 1] == '\r')
						n--;
					if (n == 1 && line.data[0] == '.')
						break;
					line.data[n++] = '\n';
				}
				if (line.data[0] == '.' && n > 1)
					skip = 1;
				maildrop_put(&rec, 'C', line.data + skip, n - skip);
				if (pdr == EX_OK && rec.len >= 65536)
					pd_write(&pd, &rec);
			}
			maildrop_put(&rec, 'E', "", 0);
			if (pdr == EX_OK) {
				pd_write(&pd, &rec);
				r = pd_finish(&pd);
			} else {
				r = pdr;
			}
			stream_puts(out,
			    r == EX_OK ? "250 2.0.0 Ok: queued\r\n" : "451 4.3.0 Error: queue file write error\r\n");
			mail = false;
		} else if (c.verb == SMTPD_RSET) {
			mail = false;
			stream_puts(out, "250 2.0.0 Ok\r\n");
		} else if (c.verb == SMTPD_NOOP) {
			stream_puts(out, "250 2.0.0 Ok\r\n");
		} else if (c.verb == SMTPD_QUIT) {
			stream_puts(out, "221 2.0.0 Bye\r\n");
			break;
		} else {
			stream_puts(out, "502 5.5.1 Error: command not implemented\r\n");
		}
		if (stream_pending(in) == 0)
			stream_flush(out);
	}
	stream_flush(out);
	smtpd_mail_args_free(&ma);
	stream_free(in);
	stream_free(out);
	buf_free(&line);
	buf_free(&addr);
	buf_free(&sender);
	buf_free(&rec);
	buf_free(&rcpts);
	return EX_OK;
}

/* notify_bits - sendmail's -N list as RFC 3461 NOTIFY bits (qfile.h); -1 when malformed */
static int
notify_bits(const char *list)
{
	char *copy = xstrdup(list), *p = copy, *w;
	int bits = 0, n = 0;

	while ((w = str_token(&p, ", ")) != NULL) {
		n++;
		if (str_casecmp(w, "never") == 0)
			bits |= QF_NOTIFY_NEVER;
		else if (str_casecmp(w, "success") == 0)
			bits |= QF_NOTIFY_SUCCESS;
		else if (str_casecmp(w, "failure") == 0)
			bits |= QF_NOTIFY_FAILURE;
		else if (str_casecmp(w, "delay") == 0)
			bits |= QF_NOTIFY_DELAY;
		else
			bits = -1;
		if (bits < 0)
			break;
	}
	free(copy);
	/* NEVER stands alone (RFC 3461 4.1). */
	if (n == 0 || (bits > 0 && (bits & QF_NOTIFY_NEVER) && bits != QF_NOTIFY_NEVER))
		return -1;
	return bits;
}

/* dsn_options - -B, -N, -R and -V in the form cleanup takes; false (reported) when one is wrong */
static bool
dsn_options(struct opts *o)
{
	static char notify[16];
	const char *p;
	int bits;

	if (o->body) {
		if (str_casecmp(o->body, "7bit") == 0)
			o->body = "7BIT";
		else if (str_casecmp(o->body, "8bitmime") == 0)
			o->body = "8BITMIME";
		else {
			fprintf(stderr, "sendmail: -B %s: use 7BIT or 8BITMIME\n", o->body);
			return false;
		}
	}
	if (o->ret) {
		if (str_casecmp(o->ret, "full") == 0)
			o->ret = "FULL";
		else if (str_casecmp(o->ret, "hdrs") == 0)
			o->ret = "HDRS";
		else {
			fprintf(stderr, "sendmail: -R %s: use full or hdrs\n", o->ret);
			return false;
		}
	}
	if (o->dsn_notify) {
		if ((bits = notify_bits(o->dsn_notify)) < 0) {
			fprintf(stderr, "sendmail: -N %s: use never, or a list of success, failure and delay\n",
			    o->dsn_notify);
			return false;
		}
		snprintf(notify, sizeof(notify), "%d", bits);
		o->dsn_notify = notify;
	}
	if (o->envid) {
		/* RFC 3461 xtext: printable US-ASCII without spaces, at most 100 bytes. */
		for (p = o->envid; *p && *p > 0x20 && *p < 0x7f; p++)
			;
		if (*p || p == o->envid || p - o->envid > 100) {
			fprintf(stderr, "sendmail: -V: the envelope ID must be 1 to 100 printable characters\n");
			return false;
		}
	}
	return true;
}

/* optarg_of - the value of "-fvalue" or "-f value" */
static const char *
value_of(int argc, char **argv, int *i, const char *arg)
{
	if (arg[2])
		return arg + 2;
	if (*i + 1 < argc)
		return argv[++*i];
	fprintf(stderr, "sendmail: option %s needs a value\n", arg);
	exit(EX_USAGE);
}

int
main(int argc, char **argv)
{
	struct opts o;
	struct buf err = BUF_INIT;
	struct passwd *pw;
	char exe[PATH_MAX], *base = basename(argv[0]), mode = 'm', *who = NULL;
	ssize_t n;
	int i;

	memset(&o, 0, sizeof(o));
	log_init("sendmail", LOG_DEST_STDERR);
	signal(SIGPIPE, SIG_IGN);
	if ((n = readlink("/proc/self/exe", exe, sizeof(exe) - 1)) > 0) {
		exe[n] = 0;
		strlcpy(self_dir, dirname(exe), sizeof(self_dir));
	}
	if (strcmp(base, "mailq") == 0)
		mode = 'p';
	else if (strcmp(base, "newaliases") == 0)
		mode = 'i';
	o.rcpts = xcalloc((size_t)argc + 1, sizeof(char *));
	for (i = 1; i < argc; i++) {
		char *a = argv[i];

		if (a[0] != '-' || a[1] == 0) {
			o.rcpts[o.nrcpts++] = a;
			continue;
		}
		if (strcmp(a, "--") == 0) {
			while (++i < argc)
				o.rcpts[o.nrcpts++] = argv[i];
			break;
		}
		switch (a[1]) {
		case 'b':
			if (strchr("spivm", a[2]) == NULL || a[2] == 0) {
				fprintf(stderr, "sendmail: -b%s is not supported (the daemon is \"postern start\")\n",
				    a + 2);
				return EX_USAGE;
			}
			mode = a[2];
			break;
		case 'f':
		case 'r':
			o.sender = value_of(argc, argv, &i, a);
			break;
		case 'F':
			o.full_name = value_of(argc, argv, &i, a);
			break;
		case 'B':
			o.body = value_of(argc, argv, &i, a);
			break;
		case 'N':
			o.dsn_notify = value_of(argc, argv, &i, a);
			break;
		case 'R':
			o.ret = value_of(argc, argv, &i, a);
			break;
		case 'V':
			o.envid = value_of(argc, argv, &i, a);
			break;
		case 'C':
			who = (char *)value_of(argc, argv, &i, a);
			if (getuid() != 0) {
				fprintf(stderr, "sendmail: -C is allowed for root only\n");
				return EX_NOPERM;
			}
			o.config_dir = xstrdup(dirname(xstrdup(who)));
			break;
		case 't':
			o.extract = true;
			break;
		case 'i':
			o.dot_ok = true;
			break;
		case 'o':
			if (a[2] == 'i')
				o.dot_ok = true;
			break; /* -oem, -om, -o7, ...: sendmail options that mean nothing here */
		case 'q':
			mode = 'q';
			if ((a[2] == 'R' || a[2] == 'S') && a[3] == 0 && i + 1 < argc)
				i++; /* -qR site: every deferred message is retried anyway */
			break;
		case 'X':
		case 'h':
		case 'L':
			(void)value_of(argc, argv, &i, a);
			break;
		default:
			break; /* -v, -m, -n, -U, -G, -d...: accepted and ignored */
		}
	}
	if (cfg_load(o.config_dir, &err) < 0) {
		fprintf(stderr, "sendmail: %s\n", buf_str(&err));
		return EX_CONFIG;
	}
	switch (mode) {
	case 'p': {
		/* Who can read the queue lists it directly; everybody else asks showq. */
		char *av[] = { program("postern"), "-c", (char *)cfg_config_dir(), "queue", NULL };

		if (access(cfg_str(P_QUEUE_DIRECTORY), R_OK | X_OK) == 0 && geteuid() == 0)
			return run_wait(av, -1);
		return run_wait(postdrop_argv("-p"), -1);
	}
	case 'q':
		return run_wait(postdrop_argv("-q"), -1);
	case 'i': {
		char *av[] = { program("postern"), "-c", (char *)cfg_config_dir(), "map", "-a", NULL };

		return run_wait(av, -1);
	}
	case 'v':
		for (i = 0; i < o.nrcpts; i++)
			printf("%s: deliverable (address syntax checked; delivery is decided when the mail is sent)\n",
			    o.rcpts[i]);
		return EX_OK;
	case 's':
		if (o.sender == NULL && (pw = getpwuid(getuid())) != NULL)
			o.sender = pw->pw_name;
		return smtp(&o);
	}
	if (o.sender == NULL) {
		if ((pw = getpwuid(getuid())) == NULL) {
			fprintf(stderr, "sendmail: who are you? (uid %lu has no name)\n", (unsigned long)getuid());
			return EX_NOUSER;
		}
		o.sender = pw->pw_name;
	}
	if (strcmp(o.sender, "<>") == 0)
		o.sender = "";
	if (!dsn_options(&o))
		return EX_USAGE;
	return submit(&o);
}
