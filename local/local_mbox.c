/*
 * local_mbox - delivery by appending to an mbox file: a system user's
 * mailbox, a virtual mbox, or a /file destination of an alias or a
 * .forward.
 *
 * Called by local_resolve.c; every file operation runs as the
 * recipient (in mail_spool_directory, which the recipient usually
 * cannot write, root briefly makes the file and the dot-lock for them).
 * Locking is both kinds mail readers use: a dot-lock (FILE.lock,
 * created exclusively; one older than LOCAL_STALE_LOCK seconds is a
 * leftover and is removed; skipped outside the spool when the directory
 * is not writable, as no other writer could make one there either) and
 * then an fcntl write lock, each waited for in a bounded loop.  The message is
 * written as "From SENDER DATE", Return-Path, Delivered-To, the content
 * with mboxrd quoting (a '>' before every line that matches /^>*From /),
 * and an empty line; then fsync.  When anything fails the file is cut
 * back to the size it had, so a reader never sees half a message.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "local.h"
#include "log.h"
#include "stream.h"

#define MBOX_FLUSH 65536

/* One copy in progress. */
struct mbox_copy {
	int fd;
	struct local_quote q;
	struct buf out;
	int last; /* the last byte written, -1 before any */
	int error;
};

void
local_quote_init(struct local_quote *q)
{
	q->state = 0;
	q->len = 0;
}

void
local_quote(struct local_quote *q, const unsigned char *p, size_t n, struct buf *out)
{
	static const char from[] = "From ";
	const unsigned char *end = p + n, *nl;

	while (p < end) {
		switch (q->state) {
		case 0: /* start of a line, maybe in a run of '>' */
			if (*p == '>') {
				/* One more '>' before "From" is the same as one in front of the line. */
				buf_putc(out, *p++);
			} else if (*p == 'F') {
				q->state = 1;
				q->len = 1;
				p++;
			} else {
				q->state = *p == '\n' ? 0 : 2;
				buf_putc(out, *p++);
			}
			break;
		case 1: /* matched q->len bytes of "From " */
			if (*p == (unsigned char)from[q->len]) {
				p++;
				if (++q->len == sizeof(from) - 1) {
					buf_puts(out, ">From ");
					q->state = 2;
				}
			} else {
				buf_append(out, from, q->len);
				q->state = *p == '\n' ? 0 : 2;
				buf_putc(out, *p++);
			}
			break;
		default: /* the rest of a line: copy up to and including its LF */
			nl = memchr(p, '\n', (size_t)(end - p));
			if (nl == NULL) {
				buf_append(out, p, (size_t)(end - p));
				p = end;
			} else {
				buf_append(out, p, (size_t)(nl - p) + 1);
				p = nl + 1;
				q->state = 0;
			}
			break;
		}
	}
}

void
local_quote_end(struct local_quote *q, struct buf *out)
{
	if (q->state == 1)
		buf_append(out, "From ", q->len);
	local_quote_init(q);
}

void
local_mbox_from(struct buf *out, const char *sender, time_t when)
{
	char date[64];
	struct tm tm;
	const char *p;

	buf_puts(out, "From ");
	if (sender == NULL || *sender == 0) {
		buf_puts(out, "MAILER-DAEMON");
	} else {
		/* One word on one line, whatever the address holds. */
		for (p = sender; *p; p++)
			buf_putc(out, (unsigned char)*p <= 0x20 || *p == 0x7f ? '_' : *p);
	}
	localtime_r(&when, &tm);
	/* asctime(3)'s layout, without its locale or its newline */
	strftime(date, sizeof(date), "%a %b %e %H:%M:%S %Y", &tm);
	buf_printf(out, " %s\n", date);
}

/* mbox_flush - write what is buffered */
static int
mbox_flush(struct mbox_copy *c)
{
	if (c->out.len == 0)
		return 0;
	if (local_write_all(c->fd, c->out.data, c->out.len) < 0) {
		c->error = errno;
		return -1;
	}
	c->last = c->out.data[c->out.len - 1];
	buf_reset(&c->out);
	return 0;
}

/* mbox_piece - quote one piece of content, write when enough is buffered */
static int
mbox_piece(void *arg, const unsigned char *p, size_t n)
{
	struct mbox_copy *c = arg;

	local_quote(&c->q, p, n, &c->out);
	return c->out.len >= MBOX_FLUSH ? mbox_flush(c) : 0;
}

/* lock_create - make the dot-lock file as the recipient or as root */
static int
lock_create(const char *lock, bool as_root, const struct local_ident *id)
{
	struct buf err = BUF_INIT;
	int fd, e;

	if (as_root)
		local_unbecome();
	fd = open(lock, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC, 0600);
	e = errno;
	if (fd >= 0) {
		char pid[32];
		int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());

		(void)local_write_all(fd, pid, (size_t)n);
		close(fd);
	}
	if (as_root && local_become(id, &err) < 0)
		log_fatal("cannot switch back to uid %ld: %s", (long)id->uid, buf_str(&err));
	buf_free(&err);
	errno = e;
	return fd >= 0 ? 0 : -1;
}

/* lock_remove - remove the dot-lock the way it was made */
static void
lock_remove(const char *lock, bool as_root, const struct local_ident *id)
{
	struct buf err = BUF_INIT;

	if (as_root)
		local_unbecome();
	(void)unlink(lock);
	if (as_root && local_become(id, &err) < 0)
		log_fatal("cannot switch back to uid %ld: %s", (long)id->uid, buf_str(&err));
	buf_free(&err);
}

/* lock_pause - the wait between two tries, growing to half a second */
static void
lock_pause(long *ms)
{
	struct timespec ts = { *ms / 1000, (*ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
	if (*ms < 500)
		*ms *= 2;
}

/*
 * mbox_dotlock - take FILE.lock before the deadline: 1 taken, 0 none to
 * take (the directory is not writable and not the spool), -1 with why
 */
static int
mbox_dotlock(
    const char *lock, const struct local_ident *id, bool spool, int64_t deadline, bool *as_root, struct buf *why)
{
	struct stat st;
	long ms = 10;

	*as_root = false;
	for (;;) {
		if (lock_create(lock, *as_root, id) == 0)
			return 1;
		if (errno == EACCES && !*as_root) {
			if (!spool || !local_privileged)
				return 0; /* nobody who can write here could lock here either: fcntl only */
			/* The spool is not the recipient's to write (/var/mail): root makes the lock. */
			*as_root = true;
			continue;
		}
		if (errno != EEXIST) {
			buf_printf(why, "cannot create lock file %s: %s", lock, strerror(errno));
			return -1;
		}
		if (lstat(lock, &st) == 0 && st.st_mtime + LOCAL_STALE_LOCK < time(NULL)) {
			log_warn("removing stale lock file %s", lock);
			lock_remove(lock, *as_root, id);
			continue;
		}
		if (stream_now_ms() >= deadline) {
			buf_printf(why, "the mailbox is locked (%s exists)", lock);
			return -1;
		}
		lock_pause(&ms);
	}
}

/* mbox_fcntl - an fcntl write lock on the whole file before the deadline */
static int
mbox_fcntl(int fd, const char *path, int64_t deadline, struct buf *why)
{
	struct flock fl;
	long ms = 10;

	for (;;) {
		memset(&fl, 0, sizeof(fl));
		fl.l_type = F_WRLCK;
		fl.l_whence = SEEK_SET;
		if (fcntl(fd, F_SETLK, &fl) == 0)
			return 0;
		if (errno != EACCES && errno != EAGAIN && errno != EINTR) {
			buf_printf(why, "cannot lock %s: %s", path, strerror(errno));
			return -1;
		}
		if (stream_now_ms() >= deadline) {
			buf_printf(why, "%s is locked by another process", path);
			return -1;
		}
		lock_pause(&ms);
	}
}

int
local_mbox_deliver(const struct local_msg *m, const char *rcpt, const char *path, const struct local_ident *id,
    long long limit, int flags, struct local_result *res)
{
	struct buf why = BUF_INIT, lock = BUF_INIT;
	struct mbox_copy c;
	struct stat st;
	bool unsafe = false, locked = false, lock_root = false;
	off_t orig = -1;
	int64_t deadline;
	int r;

	memset(&c, 0, sizeof(c));
	c.fd = -1;
	c.last = -1;
	local_quote_init(&c.q);
	if (strcmp(path, "/dev/null") == 0) {
		local_result_set(res, DELIVER_SENT, "2.0.0", "delivered to /dev/null");
		return 0;
	}
	if (local_become(id, &why) < 0) {
		local_result_set(res, DELIVER_DEFERRED, "4.3.0", "mailbox %s: %s", path, buf_str(&why));
		goto out_free;
	}
	if ((c.fd = local_safe_append(path, id, flags, &st, &why, &unsafe)) < 0) {
		if (unsafe)
			log_warn("%s: %s: unsafe mailbox: %s", m->queue_id, rcpt, buf_str(&why));
		local_result_set(
		    res, DELIVER_DEFERRED, unsafe ? "4.2.0" : "4.3.0", "mailbox delivery failed: %s", buf_str(&why));
		goto out;
	}
	deadline = stream_now_ms() + LOCAL_LOCK_SECONDS * 1000;
	buf_printf(&lock, "%s.lock", path);
	if ((r = mbox_dotlock(buf_str(&lock), id, (flags & LOCAL_MBOX_SPOOL) != 0, deadline, &lock_root, &why)) < 0) {
		local_result_set(res, DELIVER_DEFERRED, "4.2.0", "mailbox delivery failed: %s", buf_str(&why));
		goto out;
	}
	locked = r > 0;
	if (mbox_fcntl(c.fd, path, deadline, &why) < 0) {
		local_result_set(res, DELIVER_DEFERRED, "4.2.0", "mailbox delivery failed: %s", buf_str(&why));
		goto out;
	}
	/* The size now, under the lock: what to go back to when anything fails. */
	if (fstat(c.fd, &st) < 0) {
		local_result_set(res, DELIVER_DEFERRED, "4.3.0", "fstat %s: %s", path, strerror(errno));
		goto out;
	}
	orig = st.st_size;
	local_mbox_from(&c.out, m->sender, time(NULL));
	local_msg_prepend(m, rcpt, &c.out);
	if (limit > 0 && (unsigned long long)orig + c.out.len + m->content_size + 2 > (unsigned long long)limit) {
		local_result_set(
		    res, DELIVER_BOUNCED, "5.2.2", "mailbox %s is full (mailbox size limit %lld bytes)", path, limit);
		orig = -1;
		goto out;
	}
	r = local_msg_content(m, mbox_piece, &c, &why);
	if (r == 0) {
		local_quote_end(&c.q, &c.out);
		r = mbox_flush(&c);
		/* The message ends with a line end, then an empty line separates it from the next. */
		if (r == 0) {
			buf_puts(&c.out, c.last == '\n' ? "\n" : "\n\n");
			r = mbox_flush(&c) < 0 ? 1 : 0;
		} else {
			r = 1;
		}
	}
	if (r < 0) {
		local_result_set(res, DELIVER_DEFERRED, "4.3.0", "reading the queue file: %s", buf_str(&why));
		goto out;
	}
	if (r > 0 || fsync(c.fd) < 0) {
		int e = r > 0 ? c.error : errno;

		local_result_set(res, DELIVER_DEFERRED, e == EDQUOT || e == ENOSPC ? "4.2.2" : "4.3.0",
		    "mailbox delivery failed: write %s: %s", path, strerror(e));
		goto out;
	}
	local_result_set(res, DELIVER_SENT, "2.0.0", "delivered to mailbox");
	orig = -1;
out:
	if (c.fd >= 0) {
		if (orig >= 0 && ftruncate(c.fd, orig) < 0)
			log_warn("%s: cannot truncate %s back to %lld bytes: %m", m->queue_id, path, (long long)orig);
		if (orig >= 0)
			(void)fsync(c.fd);
		close(c.fd); /* also drops the fcntl lock */
	}
	if (locked)
		lock_remove(buf_str(&lock), lock_root, id);
	local_unbecome();
out_free:
	buf_free(&c.out);
	buf_free(&why);
	buf_free(&lock);
	return res->status == DELIVER_SENT ? 0 : -1;
}
