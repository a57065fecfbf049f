/*
 * qfile - queue files (see qfile.h; doc/queue-format.md is the
 * specification).
 *
 * The writer is used by cleanup only, on the hot path of mail reception:
 * records are gathered in memory and go to the disk in large writes, so
 * a small message costs one write(2), one fchmod(2) and one fsync(2).
 * The writer trusts its caller for the order of calls only as far as the
 * state check below lets it; record order mistakes are reported, not
 * written.
 *
 * The reader is used by qmgr, the delivery agents, showq and the admin
 * commands.  It trusts nothing in the file: every record length is
 * bounded before anything is allocated, the record order is checked
 * against the grammar, and the sizes promised by the V record must agree
 * with the records found.  It reads with pread(2) and never depends on
 * the descriptor's file offset, which a passed descriptor shares with
 * other processes.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "qfile.h"
#include "qpool.h"
#include "xalloc.h"

#define QF_VARINT_MAX    4 /* 28 bits: any record length we allow */
#define QF_HEADER_MAX    (1 + QF_VARINT_MAX)
#define QF_CHUNK_HEADER  4 /* 'C' and 3 length bytes hold QF_CHUNK_MAX */
#define QF_FLUSH_SIZE    65536
#define QF_CREATE_TRIES  5
#define QF_ATTR_NAME_MAX 64
#define QF_TIME_SEC_MAX  0xFFFFFFFFFFLL /* 40 bits: far beyond any real clock */

/* The V record: 'V', one length byte (64), then the fixed payload. */
#define QF_V_PAYLOAD_OFFSET 2
#define QF_V_FORMAT         "POSTERN %d offset=%010llu size=%012llu rcpts=%08zu    "
#define QF_V_OFFSET_MAX     9999999999ULL
#define QF_V_SIZE_MAX       999999999999ULL
#define QF_V_RCPTS_MAX      99999999U

/* Reader window sizes: large for the envelope, small when hopping over C records. */
#define QF_READ_ENVELOPE 65536
#define QF_READ_HOP      512

/* Writer states: the last thing written. */
enum {
	QS_NONE,
	QS_VERSION,
	QS_TIME,
	QS_SENDER,
	QS_ATTR,
	QS_RCPT,
	QS_CONTENT,
	QS_XTRACT,
	QS_DONE,
	QS_FAILED,
};

#define QS(x) (1U << (x))

static const char *const qf_state_names[] = {
	"nothing",
	"the version record",
	"the arrival time",
	"the sender",
	"an envelope attribute",
	"an envelope recipient",
	"the content",
	"the extracted segment",
	"the commit",
	"a failure",
};

/* qf_seterr - replace the contents of err (which may be NULL) */
static void qf_seterr(struct buf *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
qf_seterr(struct buf *err, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return;
	buf_reset(err);
	va_start(ap, fmt);
	buf_vprintf(err, fmt, ap);
	va_end(ap);
}

bool
qfile_queue_valid(const char *queue)
{
	static const char *const names[] = {
		QUEUE_MAILDROP,
		QUEUE_INCOMING,
		QUEUE_ACTIVE,
		QUEUE_DEFERRED,
		QUEUE_HOLD,
		QUEUE_CORRUPT,
		QUEUE_DEFER,
		QUEUE_BOUNCE,
	};
	size_t i;

	if (queue == NULL)
		return false;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(queue, names[i]) == 0)
			return true;
	return false;
}

/* Record codec. */

size_t
qfile_varint_put(unsigned char *out, size_t len)
{
	size_t n = 0;

	if (len >> (7 * QF_VARINT_MAX))
		log_panic("qfile_varint_put: length %zu does not fit", len);
	do {
		out[n] = len & 0x7f;
		len >>= 7;
		if (len)
			out[n] |= 0x80;
		n++;
	} while (len);
	return n;
}

int
qfile_rec_header(const unsigned char *p, size_t avail, int *type, size_t *len)
{
	size_t v = 0, i;

	if (avail < 2)
		return 0;
	for (i = 0; i < QF_VARINT_MAX; i++) {
		if (1 + i >= avail)
			return 0;
		v |= (size_t)(p[1 + i] & 0x7f) << (7 * i);
		if (!(p[1 + i] & 0x80)) {
			/* One encoding per length: no trailing zero groups. */
			if (i > 0 && p[1 + i] == 0)
				return -1;
			*type = p[0];
			*len = v;
			return (int)(i + 2);
		}
	}
	return -1;
}

/* Writer. */

/* qf_write_all - write(2) everything, across short writes and signals */
static int
qf_write_all(int fd, const unsigned char *p, size_t n)
{
	ssize_t r;

	while (n > 0) {
		r = write(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0) {
			errno = EIO;
			return -1;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static int
qf_fail(struct qfile_writer *w, struct buf *err, const char *what)
{
	w->error = errno;
	qf_seterr(err, "%s %s: %s", what, w->path, strerror(errno));
	w->state = QS_FAILED;
	return -1;
}

/* qf_open - create w->path exclusively (or take a spare to that name); the name is never replaced */
static int
qf_open(struct qfile_writer *w)
{
	if (w->pool && (w->fd = qpool_take(w->path)) >= 0) {
		w->reused = true;
	} else {
		w->fd = open(w->path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, QF_MODE_INCOMPLETE);
		if (w->fd < 0)
			return -1;
	}
	w->created = true;
	return 0;
}

/* qf_flush - write out everything buffered (no C record may be open) */
static int
qf_flush(struct qfile_writer *w, struct buf *err)
{
	if (w->chunk_open)
		log_panic("qf_flush: content chunk still open");
	if (w->out.len == 0)
		return 0;
	if (w->fd < 0 && w->lazy && qf_open(w) < 0)
		return qf_fail(w, err, "create");
	if (qf_write_all(w->fd, w->out.data, w->out.len) < 0)
		return qf_fail(w, err, "write");
	w->flushed += (off_t)w->out.len;
	buf_reset(&w->out);
	return 0;
}

/* qf_record_done - a record is complete; write when enough has gathered */
static int
qf_record_done(struct qfile_writer *w, struct buf *err)
{
	return w->out.len >= QF_FLUSH_SIZE ? qf_flush(w, err) : 0;
}

static void
qf_put_header(struct qfile_writer *w, int type, size_t len)
{
	unsigned char h[QF_HEADER_MAX];

	h[0] = (unsigned char)type;
	buf_append(&w->out, h, 1 + qfile_varint_put(h + 1, len));
}

/* qf_order - check that a record may follow what was written last */
static int
qf_order(struct qfile_writer *w, unsigned allowed, const char *what, struct buf *err)
{
	if (w->state < 0 || w->state > QS_FAILED)
		log_panic("qfile: writer state %d", w->state);
	if (QS(w->state) & allowed)
		return 0;
	qf_seterr(err, "queue file %s: %s may not follow %s", w->path, what, qf_state_names[w->state]);
	return -1;
}

static int
qf_check_len(struct qfile_writer *w, size_t len, const char *what, struct buf *err)
{
	if (len <= QF_RECORD_MAX)
		return 0;
	qf_seterr(err, "queue file %s: %s too long (%zu bytes)", w->path, what, len);
	return -1;
}

/* qf_chunk_close - give the open C record its final, minimal header */
static void
qf_chunk_close(struct qfile_writer *w)
{
	unsigned char h[QF_HEADER_MAX];
	size_t hl, shift;

	if (!w->chunk_open)
		return;
	h[0] = QR_CONTENT;
	hl = 1 + qfile_varint_put(h + 1, w->chunk_len);
	shift = QF_CHUNK_HEADER - hl;
	if (shift > 0) {
		memmove(
		    w->out.data + w->chunk_start + hl, w->out.data + w->chunk_start + QF_CHUNK_HEADER, w->chunk_len);
		buf_truncate(&w->out, w->out.len - shift);
	}
	memcpy(w->out.data + w->chunk_start, h, hl);
	w->content_size += w->chunk_len;
	w->chunk_open = false;
	w->chunk_len = 0;
}

/* qf_format_version - the V payload; the caller has range-checked the numbers */
static void
qf_format_version(unsigned char *out, unsigned long long offset, unsigned long long size, size_t rcpts)
{
	char v[128];
	int n;

	n = snprintf(v, sizeof(v), QF_V_FORMAT, QF_FORMAT_VERSION, offset, size, rcpts);
	if (n != QF_VERSION_LEN)
		log_panic("qfile: version record of %d bytes", n);
	memcpy(out, v, QF_VERSION_LEN);
}

int
qfile_create(struct qfile_writer *w, const char *queue, struct buf *err)
{
	return qfile_create_id(w, queue, NULL, 0, err);
}

int
qfile_create_id(struct qfile_writer *w, const char *queue, const char *id, int flags, struct buf *err)
{
	unsigned char v[QF_VERSION_LEN];
	int tries;

	memset(w, 0, sizeof(*w));
	w->fd = -1;
	w->state = QS_FAILED;
	if (!qfile_queue_valid(queue)) {
		qf_seterr(err, "invalid queue name \"%s\"", queue ? queue : "(null)");
		return -1;
	}
	if (id != NULL && !qid_valid(id)) {
		qf_seterr(err, "invalid queue ID");
		return -1;
	}
	w->lazy = (flags & QF_CREATE_LAZY) != 0;
	w->pool = (flags & QF_CREATE_POOL) != 0 && strcmp(queue, QUEUE_INCOMING) == 0;
	for (tries = 0; tries < QF_CREATE_TRIES; tries++) {
		if (id != NULL)
			memcpy(w->id, id, QID_LEN + 1);
		else
			qid_new(w->id);
		if (qid_path(w->path, sizeof(w->path), queue, w->id) < 0)
			log_panic("qfile_create: cannot build a path for %s/%s", queue, w->id);
		if (w->lazy || qf_open(w) == 0)
			break;
		if (errno != EEXIST || id != NULL) {
			w->error = errno;
			qf_seterr(err, "create %s: %s", w->path, strerror(errno));
			w->path[0] = 0;
			return -1;
		}
	}
	if (tries == QF_CREATE_TRIES) {
		qf_seterr(err, "create %s: queue ID collisions %d times in a row", w->path, QF_CREATE_TRIES);
		w->path[0] = 0;
		return -1;
	}
	buf_init(&w->out, QF_FLUSH_SIZE + QF_CHUNK_HEADER + 1);
	/* A placeholder with offset 0, which no committed file can have. */
	qf_format_version(v, 0, 0, 0);
	qf_put_header(w, QR_VERSION, QF_VERSION_LEN);
	buf_append(&w->out, v, QF_VERSION_LEN);
	w->state = QS_VERSION;
	return 0;
}

int
qfile_put_time(struct qfile_writer *w, const struct timeval *tv, struct buf *err)
{
	char t[64];
	int n;

	if (qf_order(w, QS(QS_VERSION), "the arrival time", err) < 0)
		return -1;
	if (tv->tv_sec < 0 || tv->tv_sec > QF_TIME_SEC_MAX || tv->tv_usec < 0 || tv->tv_usec >= 1000000) {
		qf_seterr(err, "queue file %s: arrival time out of range", w->path);
		return -1;
	}
	n = snprintf(t, sizeof(t), "%lld.%06ld", (long long)tv->tv_sec, (long)tv->tv_usec);
	qf_put_header(w, QR_TIME, (size_t)n);
	buf_append(&w->out, t, (size_t)n);
	w->state = QS_TIME;
	return qf_record_done(w, err);
}

int
qfile_put_sender(struct qfile_writer *w, const char *sender, struct buf *err)
{
	size_t len = strlen(sender);

	if (qf_order(w, QS(QS_TIME), "the sender", err) < 0 || qf_check_len(w, len, "sender", err) < 0)
		return -1;
	qf_put_header(w, QR_SENDER, len);
	buf_append(&w->out, sender, len);
	w->state = QS_SENDER;
	return qf_record_done(w, err);
}

/* qf_attr_name_ok - attribute names: 1..64 of [a-z0-9_] */
static bool
qf_attr_name_ok(const unsigned char *p, size_t n)
{
	size_t i;

	if (n == 0 || n > QF_ATTR_NAME_MAX)
		return false;
	for (i = 0; i < n; i++)
		if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9') || p[i] == '_'))
			return false;
	return true;
}

int
qfile_put_attr(struct qfile_writer *w, const char *name, const char *value, struct buf *err)
{
	size_t nl = strlen(name), vl = strlen(value);

	if (qf_order(w, QS(QS_SENDER) | QS(QS_ATTR) | QS(QS_XTRACT), "an attribute", err) < 0)
		return -1;
	if (!qf_attr_name_ok((const unsigned char *)name, nl)) {
		qf_seterr(err, "queue file %s: invalid attribute name \"%s\"", w->path, name);
		return -1;
	}
	if (qf_check_len(w, nl + 1 + vl, "attribute", err) < 0)
		return -1;
	qf_put_header(w, QR_ATTR, nl + 1 + vl);
	buf_append(&w->out, name, nl);
	buf_putc(&w->out, '=');
	buf_append(&w->out, value, vl);
	if (w->state != QS_XTRACT)
		w->state = QS_ATTR;
	return qf_record_done(w, err);
}

/* qf_notify_ok - NOTIFY bits: NEVER alone, or any of the other three */
static bool
qf_notify_ok(int notify)
{
	if (notify & ~(QF_NOTIFY_NEVER | QF_NOTIFY_SUCCESS | QF_NOTIFY_FAILURE | QF_NOTIFY_DELAY))
		return false;
	return !((notify & QF_NOTIFY_NEVER) && notify != QF_NOTIFY_NEVER);
}

int
qfile_put_rcpt(struct qfile_writer *w, const char *addr, const char *orcpt, int notify, struct buf *err)
{
	size_t al = strlen(addr), ol = 0, len;
	char nbuf[32];
	int nl = 0;

	if (qf_order(w, QS(QS_SENDER) | QS(QS_ATTR) | QS(QS_RCPT) | QS(QS_XTRACT), "a recipient", err) < 0)
		return -1;
	if (al == 0) {
		qf_seterr(err, "queue file %s: empty recipient address", w->path);
		return -1;
	}
	if (!qf_notify_ok(notify)) {
		qf_seterr(err, "queue file %s: invalid NOTIFY value %d for <%s>", w->path, notify, addr);
		return -1;
	}
	if (w->nrcpt >= QF_V_RCPTS_MAX) {
		qf_seterr(err, "queue file %s: too many recipients", w->path);
		return -1;
	}
	len = al;
	if (orcpt != NULL && *orcpt) {
		ol = strlen(orcpt);
		len += sizeof("\0orcpt=") - 1 + ol;
	}
	if (notify) {
		nl = snprintf(nbuf, sizeof(nbuf), "%cnotify=%d", 0, notify);
		len += (size_t)nl;
	}
	if (qf_check_len(w, len, "recipient", err) < 0)
		return -1;
	qf_put_header(w, QR_RCPT, len);
	buf_append(&w->out, addr, al);
	if (ol) {
		buf_append(&w->out, "\0orcpt=", sizeof("\0orcpt=") - 1);
		buf_append(&w->out, orcpt, ol);
	}
	if (nl)
		buf_append(&w->out, nbuf, (size_t)nl);
	w->nrcpt++;
	if (w->state != QS_XTRACT)
		w->state = QS_RCPT;
	return qf_record_done(w, err);
}

int
qfile_begin_content(struct qfile_writer *w, struct buf *err)
{
	if (qf_order(w, QS(QS_SENDER) | QS(QS_ATTR) | QS(QS_RCPT), "the start of the content", err) < 0)
		return -1;
	qf_put_header(w, QR_MESSAGE, 0);
	w->content_offset = w->flushed + (off_t)w->out.len;
	w->state = QS_CONTENT;
	return qf_record_done(w, err);
}

int
qfile_put_content(struct qfile_writer *w, const void *data, size_t len, struct buf *err)
{
	static const unsigned char room[QF_CHUNK_HEADER];
	const unsigned char *p = data;
	size_t take;

	if (qf_order(w, QS(QS_CONTENT), "content", err) < 0)
		return -1;
	while (len > 0) {
		/* Small writes grow the open chunk; its header is settled when it closes. */
		if (!w->chunk_open) {
			w->chunk_start = w->out.len;
			buf_append(&w->out, room, sizeof(room));
			w->chunk_len = 0;
			w->chunk_open = true;
		}
		take = QF_CHUNK_MAX - w->chunk_len;
		if (take > len)
			take = len;
		buf_append(&w->out, p, take);
		w->chunk_len += take;
		p += take;
		len -= take;
		if (w->chunk_len == QF_CHUNK_MAX) {
			qf_chunk_close(w);
			if (qf_record_done(w, err) < 0)
				return -1;
		}
	}
	return 0;
}

int
qfile_begin_extracted(struct qfile_writer *w, struct buf *err)
{
	if (qf_order(w, QS(QS_CONTENT), "the extracted segment", err) < 0)
		return -1;
	qf_chunk_close(w);
	qf_put_header(w, QR_XTRACT, 0);
	w->state = QS_XTRACT;
	return qf_record_done(w, err);
}

int
qfile_commit(struct qfile_writer *w, int flags, struct buf *err)
{
	unsigned char v[QF_VERSION_LEN];
	ssize_t r;

	if (qf_order(w, QS(QS_CONTENT) | QS(QS_XTRACT), "the commit", err) < 0)
		return -1;
	if (w->nrcpt == 0) {
		qf_seterr(err, "queue file %s: no recipients", w->path);
		return -1;
	}
	qf_chunk_close(w);
	if ((unsigned long long)w->content_offset > QF_V_OFFSET_MAX || w->content_size > QF_V_SIZE_MAX) {
		qf_seterr(err, "queue file %s: too large", w->path);
		return -1;
	}
	qf_put_header(w, QR_END, 0);
	qf_format_version(v, (unsigned long long)w->content_offset, w->content_size, w->nrcpt);
	if (w->flushed == 0) {
		/* Everything is still in memory: the file is one write. */
		memcpy(w->out.data + QF_V_PAYLOAD_OFFSET, v, QF_VERSION_LEN);
		if (qf_flush(w, err) < 0)
			return -1;
	} else {
		if (qf_flush(w, err) < 0)
			return -1;
		do
			r = pwrite(w->fd, v, QF_VERSION_LEN, QF_V_PAYLOAD_OFFSET);
		while (r < 0 && errno == EINTR);
		if (r != QF_VERSION_LEN) {
			if (r >= 0)
				errno = EIO;
			return qf_fail(w, err, "write");
		}
	}
	/* A spare still holds the end of its last message beyond ours. */
	if (w->reused && ftruncate(w->fd, w->flushed) < 0)
		return qf_fail(w, err, "truncate");
	/* The mode says "complete" only after every byte, E included, is written. */
	if (fchmod(w->fd, (flags & QF_COMMIT_MAILDROP) ? QF_MODE_MAILDROP : QF_MODE_COMPLETE) < 0)
		return qf_fail(w, err, "fchmod");
	if (!(flags & QF_COMMIT_NOSYNC) && fsync(w->fd) < 0)
		return qf_fail(w, err, "fsync");
	r = close(w->fd);
	w->fd = -1;
	if (r < 0)
		return qf_fail(w, err, "close");
	w->state = QS_DONE;
	buf_free(&w->out);
	return 0;
}

void
qfile_abort(struct qfile_writer *w)
{
	if (w->state == QS_DONE)
		return;
	if (w->fd >= 0) {
		close(w->fd);
		w->fd = -1;
	}
	/* A lazy writer may never have created its file: leave that name alone. */
	if (w->path[0] && w->created) {
		if (unlink(w->path) < 0 && errno != ENOENT)
			log_warn("remove %s: %m", w->path);
		w->path[0] = 0;
	}
	buf_free(&w->out);
	w->chunk_open = false;
	w->state = QS_FAILED;
}

/* Reader. */

/* A window of the file, filled with pread(2). */
struct qf_reader {
	int fd;
	off_t size;
	struct buf win;
	off_t win_off;
	size_t readahead;
};

/* qf_pread_full - pread(2) until n bytes, end of file or an error */
static ssize_t
qf_pread_full(int fd, unsigned char *p, size_t n, off_t off)
{
	size_t done = 0;
	ssize_t r;

	while (done < n) {
		r = pread(fd, p + done, n - done, off + (off_t)done);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		done += (size_t)r;
	}
	return (ssize_t)done;
}

/*
 * qf_get - bytes [off, off + n) of the file, or NULL: *status is 1 when
 * they lie past the end of the file, -1 on a read error.  The pointer is
 * valid until the next call.
 */
static const unsigned char *
qf_get(struct qf_reader *rd, off_t off, size_t n, int *status, struct buf *err)
{
	static const unsigned char empty[1];
	size_t want;
	ssize_t r;

	if (off < 0 || off > rd->size || n > (size_t)(rd->size - off)) {
		*status = 1;
		return NULL;
	}
	if (n == 0)
		return empty;
	if (off >= rd->win_off && n <= rd->win.len && (size_t)(off - rd->win_off) <= rd->win.len - n)
		return rd->win.data + (off - rd->win_off);
	want = n > rd->readahead ? n : rd->readahead;
	if (want > (size_t)(rd->size - off))
		want = (size_t)(rd->size - off);
	buf_reset(&rd->win);
	buf_reserve(&rd->win, want);
	rd->win_off = off;
	r = qf_pread_full(rd->fd, rd->win.data, want, off);
	if (r < 0) {
		qf_seterr(err, "read: %s", strerror(errno));
		*status = -1;
		return NULL;
	}
	rd->win.len = (size_t)r;
	if ((size_t)r < n) {
		/* The file shrank under us: treat like a file that ends early. */
		*status = 1;
		return NULL;
	}
	return rd->win.data;
}

/* qf_digits - parse exactly n decimal digits */
static bool
qf_digits(const unsigned char *p, size_t n, unsigned long long *out)
{
	unsigned long long v = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		v = v * 10 + (p[i] - '0');
	}
	*out = v;
	return true;
}

struct qf_version {
	int version;
	unsigned long long offset, size, rcpts;
};

/* qf_parse_version - the fixed 64-byte V payload (doc/queue-format.md) */
static bool
qf_parse_version(const unsigned char *p, size_t n, struct qf_version *v)
{
	unsigned long long ver;
	size_t i;

	if (n != QF_VERSION_LEN || memcmp(p, "POSTERN ", 8) != 0 || !qf_digits(p + 8, 1, &ver) ||
	    memcmp(p + 9, " offset=", 8) != 0 || !qf_digits(p + 17, 10, &v->offset) ||
	    memcmp(p + 27, " size=", 6) != 0 || !qf_digits(p + 33, 12, &v->size) || memcmp(p + 45, " rcpts=", 7) != 0 ||
	    !qf_digits(p + 52, 8, &v->rcpts))
		return false;
	for (i = 60; i < QF_VERSION_LEN; i++)
		if (p[i] != ' ')
			return false;
	v->version = (int)ver;
	return true;
}

/* qf_parse_time - "SECONDS.MICROSECONDS": no sign, no leading zeros, 6 digits after the dot */
static bool
qf_parse_time(const unsigned char *p, size_t n, struct timeval *tv)
{
	unsigned long long sec = 0, usec;

	if (n < 8 || p[n - 7] != '.' || !qf_digits(p + n - 6, 6, &usec))
		return false;
	n -= 7;
	if (n > 13 || (n > 1 && p[0] == '0') || !qf_digits(p, n, &sec) || sec > (unsigned long long)QF_TIME_SEC_MAX)
		return false;
	tv->tv_sec = (time_t)sec;
	tv->tv_usec = (suseconds_t)usec;
	return true;
}

static char *
qf_strdup(const unsigned char *p, size_t n)
{
	return xstrndup((const char *)p, n);
}

/* qf_grow - make room for element n of an array grown in powers of two */
static void *
qf_grow(void *p, size_t n, size_t size)
{
	if (n == 0)
		return xreallocarray(p, 8, size);
	if (n >= 8 && (n & (n - 1)) == 0)
		return xreallocarray(p, n, 2 * size);
	return p;
}

/* qf_parse_attr - "name=value", no NUL */
static int
qf_parse_attr(struct qfile_env *env, const unsigned char *p, size_t n, size_t max, struct buf *err)
{
	const unsigned char *eq = memchr(p, '=', n);
	struct qfile_attr *a;

	if (eq == NULL || !qf_attr_name_ok(p, (size_t)(eq - p)) || memchr(p, 0, n) != NULL) {
		qf_seterr(err, "malformed attribute record");
		return -1;
	}
	if (max && env->nattrs >= max) {
		qf_seterr(err, "more than %zu attributes", max);
		return -1;
	}
	env->attrs = qf_grow(env->attrs, env->nattrs, sizeof(*env->attrs));
	a = &env->attrs[env->nattrs++];
	a->name = qf_strdup(p, (size_t)(eq - p));
	a->value = qf_strdup(eq + 1, n - (size_t)(eq - p) - 1);
	return 0;
}

/* qf_parse_rcpt - "address" [NUL "orcpt=" value] [NUL "notify=" N] */
static int
qf_parse_rcpt(struct qfile_env *env, int type, off_t off, const unsigned char *p, size_t n, size_t max, struct buf *err)
{
	const unsigned char *end = p + n, *f, *nul;
	unsigned long long v;
	struct qfile_rcpt r;
	size_t alen, fl;
	int seen = 0; /* 1 after orcpt, 2 after notify: that order, each once */

	memset(&r, 0, sizeof(r));
	nul = memchr(p, 0, n);
	alen = nul ? (size_t)(nul - p) : n;
	if (alen == 0) {
		qf_seterr(err, "empty recipient address");
		return -1;
	}
	for (f = nul ? nul + 1 : NULL; f != NULL; f = nul ? nul + 1 : NULL) {
		nul = memchr(f, 0, (size_t)(end - f));
		fl = nul ? (size_t)(nul - f) : (size_t)(end - f);
		if (seen < 1 && fl > 6 && memcmp(f, "orcpt=", 6) == 0) {
			r.orcpt = qf_strdup(f + 6, fl - 6);
			seen = 1;
		} else if (seen < 2 && fl > 7 && fl <= 9 && memcmp(f, "notify=", 7) == 0 && f[7] != '0' &&
		           qf_digits(f + 7, fl - 7, &v) && v <= 15 && qf_notify_ok((int)v)) {
			r.notify = (int)v;
			seen = 2;
		} else {
			free(r.orcpt);
			qf_seterr(err, "malformed recipient field");
			return -1;
		}
	}
	if (max && env->nrcpts >= max) {
		free(r.orcpt);
		qf_seterr(err, "more than %zu recipients", max);
		return -1;
	}
	r.addr = qf_strdup(p, alen);
	r.offset = off;
	r.done = type == QR_DONE;
	env->rcpts = qf_grow(env->rcpts, env->nrcpts, sizeof(*env->rcpts));
	env->rcpts[env->nrcpts++] = r;
	if (r.done)
		env->ndone++;
	return 0;
}

/* Reader states: what may come next. */
enum {
	QR_S_VERSION,
	QR_S_TIME,
	QR_S_SENDER,
	QR_S_ATTR,    /* A, R, M */
	QR_S_RCPT,    /* R, M */
	QR_S_CONTENT, /* C, X, E */
	QR_S_XTRACT,  /* R, A, E */
};

static const char *const qf_expect[] = {
	"V",
	"T",
	"S",
	"A, R or M",
	"R or M",
	"C, X or E",
	"R, A or E",
};

static void
qf_printable_type(char *out, int type)
{
	if (type > 0x20 && type < 0x7f)
		snprintf(out, 8, "'%c'", type);
	else
		snprintf(out, 8, "0x%02x", type);
}

int
qfile_read(int fd, struct qfile_env *env, const struct qfile_read_limits *lim, struct buf *err)
{
	return qfile_read_mode(fd, QF_MODE_COMPLETE, env, lim, err);
}

int
qfile_read_mode(int fd, mode_t complete, struct qfile_env *env, const struct qfile_read_limits *lim, struct buf *err)
{
	struct qf_reader rd;
	struct qf_version ver;
	const unsigned char *p;
	size_t max_rcpts = lim ? lim->max_rcpts : 0, max_attrs = lim ? lim->max_attrs : 0;
	size_t len, avail;
	struct stat st;
	off_t off = 0;
	int state = QR_S_VERSION, type, hl, status = 0, ret;
	char tname[8];

	memset(env, 0, sizeof(*env));
	memset(&ver, 0, sizeof(ver));
	if (fstat(fd, &st) < 0) {
		qf_seterr(err, "fstat: %s", strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		qf_seterr(err, "not a regular file");
		return -1;
	}
	if ((st.st_mode & 07777) != complete) {
		qf_seterr(err, "incomplete (mode %04o)", (unsigned)(st.st_mode & 07777));
		return 1;
	}
	rd.fd = fd;
	rd.size = st.st_size;
	rd.win_off = 0;
	rd.readahead = QF_READ_ENVELOPE;
	buf_init(&rd.win, 0);
	env->file_size = st.st_size;

	for (;;) {
		avail = rd.size - off < QF_HEADER_MAX ? (size_t)(rd.size - off) : QF_HEADER_MAX;
		if (avail == 0) {
			qf_seterr(err, "offset %lld: the file ends before its end record", (long long)off);
			ret = 1;
			goto fail;
		}
		if ((p = qf_get(&rd, off, avail, &status, err)) == NULL)
			goto io;
		hl = qfile_rec_header(p, avail, &type, &len);
		if (hl == 0) {
			qf_seterr(err, "offset %lld: the file ends inside a record header", (long long)off);
			ret = 1;
			goto fail;
		}
		if (hl < 0) {
			qf_seterr(err, "offset %lld: malformed record length", (long long)off);
			ret = -1;
			goto fail;
		}
		qf_printable_type(tname, type);
		if (len > (type == QR_CONTENT ? QF_CHUNK_MAX : QF_RECORD_MAX)) {
			qf_seterr(err, "offset %lld: record %s too long (%zu bytes)", (long long)off, tname, len);
			ret = -1;
			goto fail;
		}
		if ((size_t)(rd.size - off) - (size_t)hl < len) {
			qf_seterr(err, "offset %lld: the file ends inside a %s record", (long long)off, tname);
			ret = 1;
			goto fail;
		}

		/* The grammar: V T S A* R* M C* [X (R|A)*] E. */
		switch (type) {
		case QR_VERSION:
			if (state != QR_S_VERSION)
				goto order;
			break;
		case QR_TIME:
			if (state != QR_S_TIME)
				goto order;
			break;
		case QR_SENDER:
			if (state != QR_S_SENDER)
				goto order;
			break;
		case QR_ATTR:
			if (state != QR_S_ATTR && state != QR_S_XTRACT)
				goto order;
			break;
		case QR_RCPT:
		case QR_DONE:
			if (state != QR_S_ATTR && state != QR_S_RCPT && state != QR_S_XTRACT)
				goto order;
			break;
		case QR_MESSAGE:
			if (state != QR_S_ATTR && state != QR_S_RCPT)
				goto order;
			break;
		case QR_CONTENT:
		case QR_XTRACT:
			if (state != QR_S_CONTENT)
				goto order;
			break;
		case QR_END:
			if (state != QR_S_CONTENT && state != QR_S_XTRACT)
				goto order;
			break;
		default:
			qf_seterr(err, "offset %lld: unknown record type %s", (long long)off, tname);
			ret = -1;
			goto fail;
		}

		if (type == QR_CONTENT) {
			if (len == 0) {
				qf_seterr(err, "offset %lld: empty content record", (long long)off);
				ret = -1;
				goto fail;
			}
			env->content_size += len;
			off += hl + (off_t)len;
			continue;
		}
		if ((type == QR_MESSAGE || type == QR_XTRACT || type == QR_END) && len != 0) {
			qf_seterr(err, "offset %lld: record %s must be empty", (long long)off, tname);
			ret = -1;
			goto fail;
		}
		if ((p = qf_get(&rd, off + hl, len, &status, err)) == NULL)
			goto io;
		switch (type) {
		case QR_VERSION:
			if (!qf_parse_version(p, len, &ver)) {
				qf_seterr(err, "offset %lld: malformed version record", (long long)off);
				ret = -1;
				goto fail;
			}
			if (ver.version != QF_FORMAT_VERSION) {
				qf_seterr(err, "unsupported queue file format version %d", ver.version);
				ret = -1;
				goto fail;
			}
			env->version = ver.version;
			state = QR_S_TIME;
			break;
		case QR_TIME:
			if (!qf_parse_time(p, len, &env->arrival)) {
				qf_seterr(err, "offset %lld: malformed arrival time", (long long)off);
				ret = -1;
				goto fail;
			}
			state = QR_S_SENDER;
			break;
		case QR_SENDER:
			if (memchr(p, 0, len) != NULL) {
				qf_seterr(err, "offset %lld: NUL in the sender", (long long)off);
				ret = -1;
				goto fail;
			}
			env->sender = qf_strdup(p, len);
			state = QR_S_ATTR;
			break;
		case QR_ATTR:
			if (qf_parse_attr(env, p, len, max_attrs, err) < 0)
				goto corrupt_at;
			break;
		case QR_RCPT:
		case QR_DONE:
			if (qf_parse_rcpt(env, type, off, p, len, max_rcpts, err) < 0)
				goto corrupt_at;
			if (state == QR_S_ATTR)
				state = QR_S_RCPT;
			break;
		case QR_MESSAGE:
			env->content_offset = off + hl;
			rd.readahead = QF_READ_HOP;
			state = QR_S_CONTENT;
			break;
		case QR_XTRACT:
			rd.readahead = QF_READ_ENVELOPE;
			state = QR_S_XTRACT;
			break;
		case QR_END:
			if (off + hl != rd.size) {
				qf_seterr(err, "offset %lld: data after the end record", (long long)off);
				ret = -1;
				goto fail;
			}
			goto end;
		}
		off += hl + (off_t)len;
	}

end:
	if (env->nrcpts == 0) {
		qf_seterr(err, "no recipients");
		ret = -1;
		goto fail;
	}
	if (ver.offset != (unsigned long long)env->content_offset || ver.size != env->content_size ||
	    ver.rcpts != env->nrcpts) {
		qf_seterr(err,
		    "version record disagrees with the file (offset %llu/%lld, size %llu/%llu, recipients %llu/%zu)",
		    ver.offset, (long long)env->content_offset, ver.size, (unsigned long long)env->content_size,
		    ver.rcpts, env->nrcpts);
		ret = -1;
		goto fail;
	}
	buf_free(&rd.win);
	return 0;

corrupt_at : {
	/* Prefix the parser's reason with the record's offset. */
	struct buf tmp = BUF_INIT;

	if (err) {
		buf_printf(&tmp, "offset %lld: %s", (long long)off, buf_str(err));
		buf_set(err, tmp.data, tmp.len);
		buf_free(&tmp);
	}
}
	ret = -1;
	goto fail;
order:
	qf_seterr(err, "offset %lld: record %s out of order (expected %s)", (long long)off, tname, qf_expect[state]);
	ret = -1;
	goto fail;
io:
	if (status == 1)
		qf_seterr(err, "offset %lld: the file ends early", (long long)off);
	ret = status;
fail:
	buf_free(&rd.win);
	qfile_env_free(env);
	return ret;
}

void
qfile_env_free(struct qfile_env *env)
{
	size_t i;

	free(env->sender);
	for (i = 0; i < env->nattrs; i++) {
		free(env->attrs[i].name);
		free(env->attrs[i].value);
	}
	free(env->attrs);
	for (i = 0; i < env->nrcpts; i++) {
		free(env->rcpts[i].addr);
		free(env->rcpts[i].orcpt);
	}
	free(env->rcpts);
	memset(env, 0, sizeof(*env));
}

const char *
qfile_env_attr(const struct qfile_env *env, const char *name)
{
	size_t i;

	for (i = 0; i < env->nattrs; i++)
		if (strcmp(env->attrs[i].name, name) == 0)
			return env->attrs[i].value;
	return NULL;
}

int
qfile_content_next(int fd, off_t *pos, struct buf *out, struct buf *err)
{
	unsigned char h[QF_HEADER_MAX];
	size_t len;
	ssize_t r;
	int type, hl;
	char tname[8];

	buf_reset(out);
	if (*pos <= 0) {
		qf_seterr(err, "content offset %lld invalid", (long long)*pos);
		return -1;
	}
	if ((r = qf_pread_full(fd, h, sizeof(h), *pos)) < 0) {
		qf_seterr(err, "read: %s", strerror(errno));
		return -1;
	}
	hl = qfile_rec_header(h, (size_t)r, &type, &len);
	if (hl <= 0) {
		qf_seterr(err, "offset %lld: %s", (long long)*pos,
		    hl == 0 ? "the file ends inside a record header" : "malformed record length");
		return -1;
	}
	if (type == QR_XTRACT || type == QR_END)
		return 0;
	if (type != QR_CONTENT) {
		qf_printable_type(tname, type);
		qf_seterr(err, "offset %lld: record %s inside the content", (long long)*pos, tname);
		return -1;
	}
	if (len == 0 || len > QF_CHUNK_MAX) {
		qf_seterr(err, "offset %lld: content record of %zu bytes", (long long)*pos, len);
		return -1;
	}
	buf_reserve(out, len);
	if ((r = qf_pread_full(fd, out->data, len, *pos + hl)) < 0) {
		qf_seterr(err, "read: %s", strerror(errno));
		return -1;
	}
	if ((size_t)r != len) {
		qf_seterr(err, "offset %lld: the file ends inside a content record", (long long)*pos);
		return -1;
	}
	out->len = len;
	out->data[len] = 0;
	*pos += hl + (off_t)len;
	return 1;
}

int
qfile_mark_done(int fd, off_t offset, struct buf *err)
{
	unsigned char c;
	ssize_t r;

	if (offset <= 0) {
		qf_seterr(err, "mark done: offset %lld invalid", (long long)offset);
		return -1;
	}
	do
		r = pread(fd, &c, 1, offset);
	while (r < 0 && errno == EINTR);
	if (r != 1) {
		qf_seterr(
		    err, "mark done: offset %lld: %s", (long long)offset, r < 0 ? strerror(errno) : "past the end");
		return -1;
	}
	if (c == QR_DONE)
		return 0;
	if (c != QR_RCPT) {
		qf_seterr(err, "mark done: offset %lld is not a recipient record", (long long)offset);
		return -1;
	}
	c = QR_DONE;
	do
		r = pwrite(fd, &c, 1, offset);
	while (r < 0 && errno == EINTR);
	if (r != 1) {
		qf_seterr(
		    err, "mark done: offset %lld: %s", (long long)offset, r < 0 ? strerror(errno) : "short write");
		return -1;
	}
	return 0;
}
