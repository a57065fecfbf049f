/*
 * pop3d_session - the TRANSACTION and UPDATE states (RFC 1939 5, 6):
 * STAT, LIST, RETR, DELE, NOOP, RSET, TOP, UIDL, CAPA and QUIT.
 *
 * Runs in the mailbox part's session process, which is the mailbox owner
 * by now and holds the Maildir's lock (pop3d_maildir.c).  The client is
 * still hostile (it has a password, nothing more): command lines are
 * bounded, waits are pop3d_timeout, bad commands count towards
 * pop3d_error_limit.  Message numbers are fixed for the session; DELE
 * only marks, and files change only at QUIT: a connection that drops, or
 * a session that ends on an error, changes nothing.  RETR and TOP stream
 * the file through the converter (pop3d_conv.c) in chunks.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "pop3d.h"
#include "xalloc.h"

#define READ_CHUNK 65536

struct session {
	struct stream *s;
	struct pop3_maildir md;
	const char *user, *addr;
	long long errors;
	bool quit;
	bool broken; /* a reply could not be completed: end without UPDATE */
	unsigned retr, top, dele;
	long long retr_bytes;
	struct buf out;
};

/* session_error - a -ERR reply that counts towards pop3d_error_limit */
static void __attribute__((format(printf, 2, 3))) session_error(struct session *ss, const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (++ss->errors >= pop3d_cfg.error_limit) {
		log_info("too many errors from user=<%s> [%s]; disconnecting", ss->user, ss->addr);
		pop3_err(ss->s, "%s (too many errors, closing connection)", text);
		ss->quit = true;
		return;
	}
	pop3_err(ss->s, "%s", text);
}

/* msgnum - the message an argument names, 0-based, or -1 after replying */
static long long
msgnum(struct session *ss, const char *arg, int nargs, unsigned long long *extra)
{
	unsigned long long v[POP3_ARGS_MAX];
	const char *why;
	size_t i;

	if (pop3_parse_numbers(arg, nargs, nargs, v, &why) < 0) {
		session_error(ss, "Syntax: %s", why);
		return -1;
	}
	if (v[0] == 0 || v[0] > ss->md.n) {
		session_error(ss, "No such message");
		return -1;
	}
	i = (size_t)v[0] - 1;
	if (ss->md.msgs[i].deleted) {
		session_error(ss, "Message %zu is deleted", i + 1);
		return -1;
	}
	if (extra != NULL)
		*extra = v[1];
	return (long long)i;
}

/* msgsize - the size of message i, or -1 after replying (the file could not be read) */
static long long
msgsize(struct session *ss, size_t i)
{
	struct buf err = BUF_INIT;
	long long size;

	if (pop3_maildir_size(&ss->md, i, &size, &err) < 0) {
		log_warn("user=<%s>: %s", ss->user, buf_str(&err));
		pop3_err(ss->s, "[SYS/TEMP] Cannot read message %zu", i + 1);
		buf_free(&err);
		return -1;
	}
	return size;
}

/* totals - undeleted messages and their octets; -1 after replying */
static int
totals(struct session *ss, size_t *count, long long *octets)
{
	size_t i;
	long long size;

	*count = 0;
	*octets = 0;
	for (i = 0; i < ss->md.n; i++) {
		if (ss->md.msgs[i].deleted)
			continue;
		if ((size = msgsize(ss, i)) < 0)
			return -1;
		(*count)++;
		*octets += size;
	}
	return 0;
}

static void
cmd_stat(struct session *ss, const char *arg)
{
	size_t n;
	long long octets;

	if (*arg) {
		session_error(ss, "Syntax: STAT");
		return;
	}
	if (totals(ss, &n, &octets) == 0)
		pop3_ok(ss->s, "%zu %lld", n, octets);
}

static void
cmd_list(struct session *ss, const char *arg, bool uidl)
{
	long long i, size;
	size_t n, k;

	if (*arg) {
		if ((i = msgnum(ss, arg, 1, NULL)) < 0)
			return;
		if (uidl) {
			pop3_ok(ss->s, "%lld %s", i + 1, ss->md.msgs[i].uidl);
		} else if ((size = msgsize(ss, (size_t)i)) >= 0) {
			pop3_ok(ss->s, "%lld %lld", i + 1, size);
		}
		return;
	}
	if (uidl) {
		pop3_ok(ss->s, "Unique-ID listing follows");
		for (k = 0; k < ss->md.n; k++)
			if (!ss->md.msgs[k].deleted)
				stream_printf(ss->s, "%zu %s\r\n", k + 1, ss->md.msgs[k].uidl);
		stream_puts(ss->s, ".\r\n");
		return;
	}
	if (totals(ss, &n, &size) < 0)
		return;
	pop3_ok(ss->s, "%zu messages (%lld octets)", n, size);
	for (k = 0; k < ss->md.n; k++)
		if (!ss->md.msgs[k].deleted)
			stream_printf(ss->s, "%zu %lld\r\n", k + 1, ss->md.msgs[k].size);
	stream_puts(ss->s, ".\r\n");
}

/* send_message - RETR (max_lines -1) or TOP; the session breaks when the file fails half-way */
static void
send_message(struct session *ss, size_t i, long long max_lines)
{
	unsigned char *chunk = NULL;
	struct buf err = BUF_INIT;
	struct pop3_conv cv;
	long long size;
	ssize_t n = 0;
	int fd;

	if ((size = msgsize(ss, i)) < 0)
		return;
	if ((fd = pop3_maildir_open_msg(&ss->md, i, &err)) < 0) {
		log_warn("user=<%s>: %s", ss->user, buf_str(&err));
		pop3_err(ss->s, "[SYS/TEMP] Cannot read message %zu", i + 1);
		buf_free(&err);
		return;
	}
	if (max_lines < 0)
		pop3_ok(ss->s, "%lld octets", size);
	else
		pop3_ok(ss->s, "Top of message follows");
	chunk = xmalloc(READ_CHUNK);
	pop3_conv_init(&cv, max_lines);
	while (!cv.done && (n = read(fd, chunk, READ_CHUNK)) > 0) {
		buf_reset(&ss->out);
		(void)pop3_conv_feed(&cv, chunk, (size_t)n, &ss->out);
		if (stream_write(ss->s, ss->out.data, ss->out.len) != STREAM_OK)
			break;
	}
	if (n < 0) {
		/* "+OK" went out already: no way to say -ERR now but to hang up. */
		log_warn("user=<%s>: read %s: %s", ss->user, ss->md.msgs[i].name, strerror(errno));
		ss->broken = ss->quit = true;
	} else {
		buf_reset(&ss->out);
		pop3_conv_finish(&cv, &ss->out);
		(void)stream_write(ss->s, ss->out.data, ss->out.len);
		if (max_lines < 0) {
			ss->md.msgs[i].retrieved = true;
			ss->retr++;
			ss->retr_bytes += size;
		} else {
			ss->top++;
		}
	}
	free(chunk);
	close(fd);
	/* A big buffer from a big message is not kept for the whole session. */
	if (ss->out.cap > 4 * READ_CHUNK)
		buf_free(&ss->out);
}

static void
cmd_retr(struct session *ss, const char *arg)
{
	long long i = msgnum(ss, arg, 1, NULL);

	if (i >= 0)
		send_message(ss, (size_t)i, -1);
}

static void
cmd_top(struct session *ss, const char *arg)
{
	unsigned long long lines = 0;
	long long i = msgnum(ss, arg, 2, &lines);

	if (i >= 0)
		send_message(ss, (size_t)i, (long long)lines);
}

static void
cmd_dele(struct session *ss, const char *arg)
{
	long long i = msgnum(ss, arg, 1, NULL);

	if (i < 0)
		return;
	ss->md.msgs[i].deleted = true;
	ss->dele++;
	pop3_ok(ss->s, "Message %lld deleted", i + 1);
}

static void
cmd_rset(struct session *ss, const char *arg)
{
	size_t i;

	if (*arg) {
		session_error(ss, "Syntax: RSET");
		return;
	}
	for (i = 0; i < ss->md.n; i++)
		ss->md.msgs[i].deleted = false;
	ss->dele = 0;
	pop3_ok(ss->s, "%zu messages", ss->md.n);
}

static void
cmd_quit(struct session *ss, const char *arg)
{
	struct buf err = BUF_INIT;
	int failures;

	(void)arg;
	ss->quit = true;
	failures = pop3_maildir_update(&ss->md, &err);
	if (failures > 0) {
		log_warn("user=<%s>: UPDATE: %d change%s failed, the first: %s", ss->user, failures,
		    failures == 1 ? "" : "s", buf_str(&err));
		pop3_err(ss->s, "[SYS/TEMP] Some deleted messages were not removed");
	} else {
		pop3_ok(ss->s, "Bye (%zu message%s left)", ss->md.n - ss->dele, ss->md.n - ss->dele == 1 ? "" : "s");
	}
	buf_free(&err);
}

static void
dispatch(struct session *ss, struct pop3_cmd *c)
{
	switch (c->verb) {
	case POP3_STAT:
		cmd_stat(ss, c->arg);
		break;
	case POP3_LIST:
		cmd_list(ss, c->arg, false);
		break;
	case POP3_UIDL:
		cmd_list(ss, c->arg, true);
		break;
	case POP3_RETR:
		cmd_retr(ss, c->arg);
		break;
	case POP3_TOP:
		cmd_top(ss, c->arg);
		break;
	case POP3_DELE:
		cmd_dele(ss, c->arg);
		break;
	case POP3_RSET:
		cmd_rset(ss, c->arg);
		break;
	case POP3_NOOP:
		pop3_ok(ss->s, "Nothing happens");
		break;
	case POP3_CAPA:
		pop3_capa(ss->s, false, false, false);
		break;
	case POP3_QUIT:
		cmd_quit(ss, c->arg);
		break;
	case POP3_USER:
	case POP3_PASS:
	case POP3_APOP:
	case POP3_AUTH:
	case POP3_STLS:
		session_error(ss, "Already logged in");
		break;
	default:
		session_error(ss, "Unknown command");
		break;
	}
}

void
pop3d_session_run(struct stream *s, const char *user, const char *addr, const char *path)
{
	struct buf line = BUF_INIT, err = BUF_INIT;
	struct session ss;
	struct pop3_cmd c;
	const char *why;
	int r;

	memset(&ss, 0, sizeof(ss));
	ss.s = s;
	ss.user = user;
	ss.addr = addr;
	pop3_maildir_init(&ss.md);
	r = path != NULL ? pop3_maildir_open(&ss.md, path, &err) : POP3_MD_MISSING;
	if (r == POP3_MD_INUSE) {
		log_info("user=<%s> [%s]: mailbox in use by another session", user, addr);
		pop3_err(s, "[IN-USE] The mailbox is in use by another POP3 session; try again later");
		goto out;
	}
	if (r < 0 || (r == 0 && pop3_maildir_scan(&ss.md, &err) < 0)) {
		log_warn("user=<%s> [%s]: %s", user, addr, buf_str(&err));
		pop3_err(s, "[SYS/TEMP] Cannot open the mailbox; try again later");
		goto out;
	}
	if (ss.md.truncated)
		log_warn(
		    "user=<%s>: more than %d messages; the rest are listed in a later session", user, POP3_MAILDIR_MAX);
	log_info("session: user=<%s>, client=[%s], messages=%zu", user, addr, ss.md.n);
	pop3_ok(s, "Logged in");
	if (stream_pending(s) == 0)
		(void)stream_flush(s);
	while (!ss.quit && stream_status(s) == STREAM_OK) {
		r = pop3_read_line(s, &line);
		if (r == 1) {
			session_error(&ss, "Line too long");
		} else if (r < 0) {
			log_info("user=<%s> [%s]: %s; nothing changed", user, addr,
			    r == STREAM_TOOLONG ? "line too long" : stream_strerror(r));
			break;
		} else if (pop3_parse_line((char *)line.data, line.len, &c, &why) < 0) {
			session_error(&ss, "Invalid command: %s", why);
		} else {
			dispatch(&ss, &c);
		}
		if (stream_pending(s) == 0 || ss.quit)
			(void)stream_flush(s);
	}
	log_info("disconnect: user=<%s>, client=[%s], top=%u, retr=%u/%lld, dele=%u, %s", user, addr, ss.top, ss.retr,
	    ss.retr_bytes, ss.dele, ss.quit && !ss.broken && ss.errors < pop3d_cfg.error_limit ? "quit" : "no update");
out:
	(void)stream_flush(s);
	pop3_maildir_close(&ss.md);
	buf_free(&ss.out);
	buf_free(&line);
	buf_free(&err);
}
