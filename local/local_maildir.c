/*
 * local_maildir - delivery into a Maildir.
 *
 * Called by local_resolve.c with the recipient's identity; every file
 * operation here runs with it.  The message goes to tmp/ under a name
 * no other delivery can pick (time, microseconds, pid, a counter, the
 * host), is fsync()ed, and is renamed into new/ with its size in the
 * name: ",S=" the bytes of the file and ",W=" its size with CR LF line
 * ends, so a POP3 server can list the mailbox without reading or even
 * stat()ing the files.  Success is reported only after the file's fsync,
 * as Postfix does: a crash before that leaves at worst a file in tmp/ and
 * a second delivery, never a lost message.  The rename itself is made
 * durable by the journal before the queue file's removal can be (same
 * file system), or by an fsync of new/ (maildir_sync_directory = yes).
 *
 * The directories must be real directories owned by the recipient (no
 * symbolic links): they are checked with lstat before use.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "local.h"
#include "log.h"

/* What one copy has written so far. */
struct md_copy {
	int fd;
	unsigned long long size;
	unsigned long long nlf;
	int error; /* errno of a failed write */
};

void
local_maildir_hostname(const char *host, struct buf *out)
{
	const char *p;

	if (host == NULL || *host == 0)
		host = "localhost";
	for (p = host; *p; p++) {
		if (*p == '/')
			buf_puts(out, "\\057");
		else if (*p == ':')
			buf_puts(out, "\\072");
		else if ((unsigned char)*p < 0x21 || (unsigned char)*p >= 0x7f)
			buf_putc(out, '_');
		else
			buf_putc(out, *p);
	}
}

void
local_maildir_unique(struct buf *out, long long sec, long usec, long pid, unsigned long long counter, const char *host)
{
	buf_printf(out, "%lld.M%ldP%ldQ%llu.", sec, usec, pid, counter);
	local_maildir_hostname(host, out);
}

void
local_maildir_final(struct buf *out, const char *unique, unsigned long long size, unsigned long long nlf)
{
	buf_printf(out, "%s,S=%llu,W=%llu", unique, size, size + nlf);
}

unsigned long long
local_count_lf(const unsigned char *p, size_t n)
{
	const unsigned char *end = p + n, *q;
	unsigned long long c = 0;

	while (p < end && (q = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		c++;
		p = q + 1;
	}
	return c;
}

/* md_write - append one piece and count it */
static int
md_write(void *arg, const unsigned char *p, size_t n)
{
	struct md_copy *c = arg;

	if (local_write_all(c->fd, p, n) < 0) {
		c->error = errno;
		return -1;
	}
	c->size += n;
	c->nlf += local_count_lf(p, n);
	return 0;
}

/* md_fail - a failed write: a full disk or quota is said so, everything else is temporary */
static void
md_fail(struct local_result *res, const char *what, const char *path, int e)
{
	local_result_set(res, DELIVER_DEFERRED, e == EDQUOT || e == ENOSPC ? "4.2.2" : "4.3.0",
	    "maildir delivery failed: %s %s: %s", what, path, strerror(e));
}

int
local_maildir_deliver(const struct local_msg *m, const char *rcpt, const char *dir, const struct local_ident *id,
    struct local_result *res)
{
	static unsigned long long counter;
	static const char *const subdirs[] = { "tmp", "new", "cur" };
	struct buf base = BUF_INIT, sub = BUF_INIT, uniq = BUF_INIT, tmp = BUF_INIT, fin = BUF_INIT, why = BUF_INIT;
	struct md_copy c = { -1, 0, 0, 0 };
	struct timeval tv;
	bool unsafe = false;
	size_t i;
	int r, dfd;

	buf_puts(&base, dir);
	while (base.len > 1 && base.data[base.len - 1] == '/')
		buf_truncate(&base, base.len - 1);
	if (local_become(id, &why) < 0) {
		local_result_set(res, DELIVER_DEFERRED, "4.3.0", "maildir %s: %s", buf_str(&base), buf_str(&why));
		goto out_free;
	}
	for (i = 0; i < 3; i++) {
		buf_reset(&sub);
		buf_printf(&sub, "%s/%s", buf_str(&base), subdirs[i]);
		if (local_safe_dir(buf_str(&sub), id, &why, &unsafe) < 0) {
			if (unsafe)
				log_warn("%s: %s: unsafe maildir: %s", m->queue_id, rcpt, buf_str(&why));
			local_result_set(res, DELIVER_DEFERRED, unsafe ? "4.2.0" : "4.3.0",
			    "maildir delivery failed: %s", buf_str(&why));
			goto out;
		}
	}
	gettimeofday(&tv, NULL);
	local_maildir_unique(
	    &uniq, (long long)tv.tv_sec, (long)tv.tv_usec, (long)log_pid(), ++counter, local_conf.myhostname);
	buf_printf(&tmp, "%s/tmp/%s", buf_str(&base), buf_str(&uniq));
	c.fd = open(buf_str(&tmp), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC, 0600);
	if (c.fd < 0) {
		md_fail(res, "create", buf_str(&tmp), errno);
		goto out;
	}
	{
		struct buf head = BUF_INIT;

		local_msg_prepend(m, rcpt, &head);
		r = md_write(&c, head.data, head.len);
		buf_free(&head);
	}
	if (r == 0)
		r = local_msg_content(m, md_write, &c, &why);
	if (r < 0) {
		/* The queue file could not be read: not the mailbox's fault. */
		local_result_set(res, DELIVER_DEFERRED, "4.3.0", "reading the queue file: %s", buf_str(&why));
		goto out_unlink;
	}
	if (r > 0) {
		md_fail(res, "write", buf_str(&tmp), c.error);
		goto out_unlink;
	}
	if (fsync(c.fd) < 0) {
		md_fail(res, "fsync", buf_str(&tmp), errno);
		goto out_unlink;
	}
	r = close(c.fd);
	c.fd = -1;
	if (r < 0) {
		md_fail(res, "close", buf_str(&tmp), errno);
		goto out_unlink;
	}
	buf_printf(&fin, "%s/new/", buf_str(&base));
	local_maildir_final(&fin, buf_str(&uniq), c.size, c.nlf);
	if (rename(buf_str(&tmp), buf_str(&fin)) < 0) {
		md_fail(res, "rename to", buf_str(&fin), errno);
		goto out_unlink;
	}
	/*
	 * The new name must survive a crash before the queue file's removal
	 * does.  On the queue's own ext4 or XFS file system the journal sees
	 * to that: the removal comes later, in the same or a later journal
	 * transaction, so no crash keeps it and loses the rename.  Mailboxes
	 * on another file system need new/ synced (maildir_sync_directory).
	 */
	if (local_conf.maildir_sync_dir) {
		buf_reset(&sub);
		buf_printf(&sub, "%s/new", buf_str(&base));
		if ((dfd = open(buf_str(&sub), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
		    fsync(dfd) < 0) {
			md_fail(res, "fsync", buf_str(&sub), errno);
			if (dfd >= 0)
				close(dfd);
			goto out;
		}
		close(dfd);
	}
	local_result_set(res, DELIVER_SENT, "2.0.0", "delivered to maildir");
	goto out;
out_unlink:
	if (c.fd >= 0)
		close(c.fd);
	c.fd = -1;
	(void)unlink(buf_str(&tmp));
out:
	local_unbecome();
out_free:
	buf_free(&base);
	buf_free(&sub);
	buf_free(&uniq);
	buf_free(&tmp);
	buf_free(&fin);
	buf_free(&why);
	return res->status == DELIVER_SENT ? 0 : -1;
}
