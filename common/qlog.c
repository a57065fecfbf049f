/*
 * qlog - per-message delivery logs, defer/H/ID and bounce/H/ID (see
 * qlog.h; the record format is in doc/queue-format.md section 2.2).
 *
 * qmgr appends one line per recipient outcome; qmgr (bounces, delay
 * notices), postern queue and postern cat read them.  The writer trusts
 * its caller only as far as the types go: every text field is escaped so
 * that no byte of an address or a remote server's reply can forge a
 * field or a record.  The reader trusts nothing: the file is bounded in
 * bytes and in records, every field is checked, and a line that does not
 * parse (a torn last write, damage) is skipped.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "qfile.h"
#include "qid.h"
#include "qlog.h"
#include "str.h"
#include "xalloc.h"

#define QLOG_FIELDS 9

/* qlog_queue_ok - only the two log queues hold logs */
static bool
qlog_queue_ok(const char *queue)
{
	return queue != NULL && (strcmp(queue, QUEUE_DEFER) == 0 || strcmp(queue, QUEUE_BOUNCE) == 0);
}

/* qlog_path - "queue/H/ID" after checking both names; -1 with err */
static int
qlog_path(char *out, size_t outlen, const char *queue, const char *id, struct buf *err)
{
	if (!qlog_queue_ok(queue)) {
		buf_strcpy(err, "not a log queue");
		return -1;
	}
	if (id == NULL || !qid_valid(id) || qid_path(out, outlen, queue, id) < 0) {
		buf_strcpy(err, "invalid queue ID");
		return -1;
	}
	return 0;
}

bool
qlog_dsn_valid(const char *dsn)
{
	size_t n1, n2;

	/* class.subject.detail: RFC 3463, with the classes qmgr reports. */
	if (dsn == NULL || (dsn[0] != '2' && dsn[0] != '4' && dsn[0] != '5') || dsn[1] != '.')
		return false;
	n1 = strspn(dsn + 2, "0123456789");
	if (n1 < 1 || n1 > 3 || dsn[2 + n1] != '.')
		return false;
	n2 = strspn(dsn + 3 + n1, "0123456789");
	return n2 >= 1 && n2 <= 3 && dsn[3 + n1 + n2] == 0;
}

/* qlog_escape - append s, at most max bytes of it, escaped */
static void
qlog_escape(struct buf *out, const char *s, size_t max)
{
	size_t i;

	for (i = 0; i < max && s[i]; i++) {
		switch (s[i]) {
		case '\\':
			buf_puts(out, "\\\\");
			break;
		case '\t':
			buf_puts(out, "\\t");
			break;
		case '\n':
			buf_puts(out, "\\n");
			break;
		case '\r':
			buf_puts(out, "\\r");
			break;
		default:
			buf_putc(out, s[i]);
			break;
		}
	}
}

int
qlog_encode(const struct qlog_entry *e, struct buf *out, struct buf *err)
{
	size_t start = out->len;

	if (e->status != QLOG_DEFERRED && e->status != QLOG_BOUNCED && e->status != QLOG_SENT) {
		buf_strcpy(err, "invalid status letter");
		return -1;
	}
	if (!qlog_dsn_valid(e->dsn)) {
		buf_strcpy(err, "invalid DSN code");
		return -1;
	}
	if (e->addr == NULL || *e->addr == 0 || strlen(e->addr) > QLOG_ADDR_MAX) {
		buf_strcpy(err, "missing or over-long recipient address");
		return -1;
	}
	if (e->orcpt != NULL && (*e->orcpt == 0 || strlen(e->orcpt) > QLOG_ADDR_MAX)) {
		buf_strcpy(err, "empty or over-long ORCPT");
		return -1;
	}
	if (e->when < 0 || e->offset < 0 || e->notify < 0 || e->notify > 15) {
		buf_strcpy(err, "time, offset or notify out of range");
		return -1;
	}
	buf_printf(
	    out, "%lld\t%lld\t%c\t%s\t%d\t", (long long)e->when, (long long)e->offset, e->status, e->dsn, e->notify);
	qlog_escape(out, e->addr, QLOG_ADDR_MAX);
	buf_putc(out, '\t');
	if (e->orcpt == NULL)
		buf_putc(out, '-');
	else if (strcmp(e->orcpt, "-") == 0)
		buf_puts(out, "\\-"); /* not the "none" marker */
	else
		qlog_escape(out, e->orcpt, QLOG_ADDR_MAX);
	buf_putc(out, '\t');
	/* Relay and reason are detail: too long is cut, never refused. */
	qlog_escape(out, e->relay ? e->relay : "", QLOG_TEXT_MAX);
	buf_putc(out, '\t');
	qlog_escape(out, e->reason ? e->reason : "", QLOG_TEXT_MAX);
	buf_putc(out, '\n');
	if (out->len - start > QLOG_LINE_MAX)
		log_panic("qlog_encode: record of %zu bytes", out->len - start);
	return 0;
}

/* qlog_unescape - one field in place; -1 on an unknown escape */
static int
qlog_unescape(char *s)
{
	char *w = s;

	for (; *s; s++) {
		if (*s != '\\') {
			*w++ = *s;
			continue;
		}
		switch (*++s) {
		case '\\':
			*w++ = '\\';
			break;
		case 't':
			*w++ = '\t';
			break;
		case 'n':
			*w++ = '\n';
			break;
		case 'r':
			*w++ = '\r';
			break;
		case '-':
			*w++ = '-';
			break;
		default: /* "\0" too: NUL never belongs in a field */
			return -1;
		}
	}
	*w = 0;
	return 0;
}

/* qlog_number - a decimal field without sign or junk in [0, max] */
static int
qlog_number(const char *s, long long max, long long *out)
{
	if (*s < '0' || *s > '9')
		return -1;
	return str_to_ll(s, 0, max, out, NULL);
}

int
qlog_parse(char *line, struct qlog_entry *e)
{
	char *f[QLOG_FIELDS], *p = line;
	long long when, offset, notify;
	bool no_orcpt;
	size_t i;

	memset(e, 0, sizeof(*e));
	/* Exactly QLOG_FIELDS - 1 tabs. */
	for (i = 0; i < QLOG_FIELDS; i++) {
		f[i] = p;
		if ((p = strchr(p, '\t')) == NULL)
			break;
		*p++ = 0;
	}
	if (i != QLOG_FIELDS - 1)
		return -1;
	if (qlog_number(f[0], INT64_MAX, &when) < 0 || qlog_number(f[1], INT64_MAX, &offset) < 0 ||
	    qlog_number(f[4], 15, &notify) < 0)
		return -1;
	if (strlen(f[2]) != 1 || (f[2][0] != QLOG_DEFERRED && f[2][0] != QLOG_BOUNCED && f[2][0] != QLOG_SENT))
		return -1;
	if (strlen(f[3]) >= sizeof(e->dsn) || !qlog_dsn_valid(f[3]))
		return -1;
	/* The raw field "-" means none; an ORCPT that is "-" is written "\\-". */
	no_orcpt = strcmp(f[6], "-") == 0;
	for (i = 5; i < QLOG_FIELDS; i++)
		if (qlog_unescape(f[i]) < 0)
			return -1;
	if (*f[5] == 0 || strlen(f[5]) > QLOG_ADDR_MAX || *f[6] == 0 || strlen(f[6]) > QLOG_ADDR_MAX)
		return -1;
	e->when = (time_t)when;
	e->offset = (off_t)offset;
	e->status = f[2][0];
	strlcpy(e->dsn, f[3], sizeof(e->dsn));
	e->notify = (int)notify;
	e->addr = xstrdup(f[5]);
	e->orcpt = no_orcpt ? NULL : xstrdup(f[6]);
	e->relay = xstrdup(f[7]);
	e->reason = xstrdup(f[8]);
	return 0;
}

int
qlog_append(const char *queue, const char *id, const struct qlog_entry *e, struct buf *err)
{
	struct buf rec = BUF_INIT;
	char path[128];
	struct stat st;
	ssize_t n;
	int fd, ret = -1;

	if (qlog_path(path, sizeof(path), queue, id, err) < 0)
		return -1;
	if (qlog_encode(e, &rec, err) < 0)
		goto out;
	if ((fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0) {
		buf_reset(err);
		buf_printf(err, "open %s: %m", path);
		goto out;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		buf_reset(err);
		buf_printf(err, "%s: not a regular file", path);
		close(fd);
		goto out;
	}
	/* One write: a record is either whole or the torn last line readers skip. */
	n = write(fd, rec.data, rec.len);
	if (n != (ssize_t)rec.len) {
		buf_reset(err);
		if (n < 0)
			buf_printf(err, "write %s: %m", path);
		else
			buf_printf(err, "write %s: short write", path);
		/*
		 * Take a partial record back so that the next one starts on a
		 * line of its own (only qmgr writes, so the size is still ours).
		 */
		if (n > 0 && ftruncate(fd, st.st_size) < 0)
			log_warn("truncate %s: %m", path);
		close(fd);
		goto out;
	}
	if (close(fd) < 0) {
		buf_reset(err);
		buf_printf(err, "close %s: %m", path);
		goto out;
	}
	ret = 0;
out:
	buf_free(&rec);
	return ret;
}

int
qlog_read(const char *queue, const char *id, struct qlog_entry **out, size_t *n, struct buf *err)
{
	struct qlog_entry *v = NULL;
	size_t nv = 0, cap = 0, len = 0, bad = 0;
	char path[128], *data = NULL, *line, *nl;
	struct stat st;
	ssize_t r;
	int fd, ret = -1;

	*out = NULL;
	*n = 0;
	if (qlog_path(path, sizeof(path), queue, id, err) < 0)
		return -1;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)) < 0) {
		if (errno == ENOENT)
			return 0;
		buf_printf(err, "open %s: %m", path);
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		buf_printf(err, "%s: not a regular file", path);
		goto out;
	}
	/* One byte more than the limit tells a long file from one that fits. */
	data = xmalloc(QLOG_READ_MAX + 2);
	while (len < QLOG_READ_MAX + 1) {
		r = read(fd, data + len, QLOG_READ_MAX + 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			buf_printf(err, "read %s: %m", path);
			goto out;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	if (len > QLOG_READ_MAX) {
		log_warn("%s: log longer than %d bytes; reading only the start", path, QLOG_READ_MAX);
		len = QLOG_READ_MAX;
	}
	data[len] = 0;
	for (line = data; line < data + len; line = nl + 1) {
		struct qlog_entry e;

		/* A line without its LF is a torn last write (or cut above). */
		if ((nl = memchr(line, '\n', (size_t)(data + len - line))) == NULL)
			break;
		*nl = 0;
		if (strlen(line) != (size_t)(nl - line) || qlog_parse(line, &e) < 0) {
			bad++;
			continue;
		}
		if (nv == QLOG_RECORDS_MAX) {
			log_warn("%s: more than %d records; reading only the first", path, QLOG_RECORDS_MAX);
			qlog_entry_free(&e);
			break;
		}
		if (nv == cap) {
			cap = cap ? cap * 2 : 16;
			v = xreallocarray(v, cap, sizeof(*v));
		}
		v[nv++] = e;
	}
	if (bad)
		log_warn("%s: skipped %zu malformed record%s", path, bad, bad == 1 ? "" : "s");
	*out = v;
	*n = nv;
	v = NULL;
	nv = 0;
	ret = 0;
out:
	qlog_free(v, nv);
	free(data);
	close(fd);
	return ret;
}

void
qlog_entry_free(struct qlog_entry *e)
{
	free(e->addr);
	free(e->orcpt);
	free(e->relay);
	free(e->reason);
	e->addr = e->orcpt = e->relay = e->reason = NULL;
}

void
qlog_free(struct qlog_entry *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		qlog_entry_free(&v[i]);
	free(v);
}

int
qlog_remove(const char *queue, const char *id)
{
	struct buf err = BUF_INIT;
	char path[128];
	int ret = 0;

	if (qlog_path(path, sizeof(path), queue, id, &err) < 0) {
		errno = EINVAL;
		ret = -1;
	} else if (unlink(path) < 0 && errno != ENOENT) {
		ret = -1;
	}
	buf_free(&err);
	return ret;
}
