/*
 * qlist - the queue listing shared by "postern queue" and showq (see
 * qlist.h).
 *
 * Callers run it in queue_directory with the queue owner's rights.  Names
 * from directory listings become paths only after qid_valid(); files are
 * opened read-only without following links and must be regular files;
 * every queue file goes through qfile_read(), which trusts nothing in it,
 * and defer logs through qlog_read(), which bounds what it reads.  A
 * message may move or vanish while we look (qmgr works meanwhile): it is
 * then looked for once more in the queue it usually moves to, else left
 * out quietly.
 *
 * The showq protocol is here too, both ends: qlist_serve() for the showq
 * daemon, qlist_fetch() for postdrop -p.  The client trusts the server no
 * further than its bounds: frame lengths are checked, every wait has a
 * timeout, and what it passes on is only what the server sent.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ipc.h"
#include "log.h"
#include "proto.h"
#include "qfile.h"
#include "qid.h"
#include "qlist.h"
#include "qlog.h"
#include "str.h"
#include "xalloc.h"

#define QLIST_FLUSH 65536 /* bytes gathered before they are emitted */

static const char hash_chars[] = "0123456789ABCDEFGHIJKLMNOPQRSTUV";
static const char *const list_queues[] = { QUEUE_INCOMING, QUEUE_ACTIVE, QUEUE_DEFERRED, QUEUE_HOLD, NULL };

/* Far above anything cleanup writes; a guard against a hostile file only. */
static const struct qfile_read_limits list_limits = { 2000000, 100000 };

struct q_entry {
	char id[QID_LEN + 1];
	const char *queue;
};

struct q_list {
	struct q_entry *v;
	size_t n, cap;
	unsigned long long left_out; /* names beyond QLIST_MSGS_MAX */
};

struct q_out {
	struct buf b;
	qlist_emit_fn emit;
	void *arg;
	bool failed;
};

/* escape_n - at most n bytes of s, control bytes as \xHH */
static void
escape_n(struct buf *out, const char *s, size_t n)
{
	const unsigned char *p;

	for (p = (const unsigned char *)s; *p && n > 0; p++, n--) {
		if (*p < 0x20 || *p == 0x7f || *p == '\\')
			buf_printf(out, "\\x%02X", *p);
		else
			buf_putc(out, *p);
	}
}

void
qlist_escape(struct buf *out, const char *s)
{
	escape_n(out, s, (size_t)-1);
}

/* json_n - at most n bytes of s as the inside of a JSON string */
static void
json_n(struct buf *out, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + strnlen(s, n);
	size_t k, i;

	buf_putc(out, '"');
	while (p < end) {
		if (*p == '"' || *p == '\\') {
			buf_putc(out, '\\');
			buf_putc(out, *p++);
		} else if (*p < 0x20 || *p == 0x7f) {
			buf_printf(out, "\\u%04x", *p++);
		} else if (*p < 0x80) {
			buf_putc(out, *p++);
		} else {
			/* A well-formed UTF-8 sequence passes as it is. */
			k = (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3 : (*p & 0xf8) == 0xf0 ? 4 : 0;
			for (i = 1; i < k && p + i < end && (p[i] & 0xc0) == 0x80; i++)
				;
			if (k >= 2 && i == k && !(k == 2 && *p < 0xc2) && !(*p == 0xf4 && p[1] > 0x8f) && *p <= 0xf4 &&
			    !(*p == 0xe0 && p[1] < 0xa0) && !(*p == 0xf0 && p[1] < 0x90) &&
			    !(*p == 0xed && p[1] > 0x9f)) {
				buf_append(out, p, k);
				p += k;
			} else {
				buf_printf(out, "\\u%04x", *p++);
			}
		}
	}
	buf_putc(out, '"');
}

void
qlist_json_str(struct buf *out, const char *s)
{
	json_n(out, s, (size_t)-1);
}

/* out_flush - hand what has gathered to the caller's sink */
static void
out_flush(struct q_out *o)
{
	if (!o->failed && o->b.len > 0 && o->emit(o->arg, o->b.data, o->b.len) != 0)
		o->failed = true;
	buf_reset(&o->b);
}

static void
out_maybe_flush(struct q_out *o)
{
	if (o->b.len >= QLIST_FLUSH)
		out_flush(o);
}

/* scan_dir - the valid queue IDs in one directory; 0, or an error with err */
static int
scan_dir(struct q_list *l, const char *dir, const char *queue, struct buf *err)
{
	struct dirent *de;
	DIR *d;

	if ((d = opendir(dir)) == NULL) {
		if (errno == ENOENT)
			return 0;
		buf_printf(err, "%s: %s", dir, strerror(errno));
		return errno == EACCES ? QLIST_ERR_ACCESS : QLIST_ERR_IO;
	}
	while ((de = readdir(d)) != NULL) {
		if (!qid_valid(de->d_name))
			continue;
		if (l->n >= QLIST_MSGS_MAX) {
			l->left_out++;
			continue;
		}
		if (l->n == l->cap) {
			l->cap = l->cap ? l->cap * 2 : 256;
			l->v = xreallocarray(l->v, l->cap, sizeof(*l->v));
		}
		memcpy(l->v[l->n].id, de->d_name, QID_LEN + 1);
		l->v[l->n].queue = queue;
		l->n++;
	}
	closedir(d);
	return 0;
}

static int
entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct q_entry *)a)->id, ((const struct q_entry *)b)->id);
}

/* open_entry - the file of e, also when qmgr just moved it; -1 when it is gone */
static int
open_entry(struct q_entry *e, struct stat *st)
{
	/* Where a message goes next: incoming and deferred to active, active to deferred. */
	const char *next = strcmp(e->queue, QUEUE_ACTIVE) == 0 ? QUEUE_DEFERRED
	                   : strcmp(e->queue, QUEUE_HOLD) == 0 ? NULL
	                                                       : QUEUE_ACTIVE;
	char path[64];
	int fd, tries;

	for (tries = 0; tries < 2; tries++) {
		if (qid_path(path, sizeof(path), e->queue, e->id) < 0)
			log_panic("qlist: no path for %s/%s", e->queue, e->id);
		fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
		if (fd >= 0) {
			if (fstat(fd, st) == 0 && S_ISREG(st->st_mode))
				return fd;
			close(fd);
			return -1;
		}
		if (errno != ENOENT || next == NULL)
			return -1;
		e->queue = next;
		next = NULL;
	}
	return -1;
}

/* reason_of - the latest deferral reason logged for the recipient at offset, or NULL */
static const char *
reason_of(const struct qlog_entry *log, size_t nlog, off_t offset)
{
	const char *why = NULL;
	size_t i;

	for (i = 0; i < nlog; i++)
		if (log[i].offset == offset && log[i].status == QLOG_DEFERRED && log[i].reason)
			why = log[i].reason;
	return why;
}

/* print_json - one message as one line of JSON */
static void
print_json(struct q_out *o, const struct q_entry *e, const struct stat *st, const struct qfile_env *env,
    const struct qlog_entry *log, size_t nlog)
{
	const char *why;
	size_t i;

	buf_puts(&o->b, "{\"queue_name\": ");
	qlist_json_str(&o->b, e->queue);
	buf_puts(&o->b, ", \"queue_id\": ");
	qlist_json_str(&o->b, e->id);
	buf_printf(&o->b, ", \"arrival_time\": %lld, \"message_size\": %llu", (long long)env->arrival.tv_sec,
	    (unsigned long long)env->content_size);
	/* A deferred file's mtime is the time of its next attempt (qmgr(8)). */
	if (strcmp(e->queue, QUEUE_DEFERRED) == 0)
		buf_printf(&o->b, ", \"next_retry_time\": %lld", (long long)st->st_mtime);
	buf_puts(&o->b, ", \"sender\": ");
	qlist_json_str(&o->b, env->sender);
	buf_puts(&o->b, ", \"recipients\": [");
	for (i = 0; i < env->nrcpts; i++) {
		buf_puts(&o->b, i ? ", {\"address\": " : "{\"address\": ");
		qlist_json_str(&o->b, env->rcpts[i].addr);
		buf_printf(&o->b, ", \"done\": %s", env->rcpts[i].done ? "true" : "false");
		if (!env->rcpts[i].done && (why = reason_of(log, nlog, env->rcpts[i].offset)) != NULL) {
			buf_puts(&o->b, ", \"delay_reason\": ");
			json_n(&o->b, why, QLIST_REASON_MAX);
		}
		buf_putc(&o->b, '}');
		out_maybe_flush(o);
	}
	buf_puts(&o->b, "]}\n");
}

/* print_text - one message the way mailq shows it */
static void
print_text(
    struct q_out *o, const struct q_entry *e, const struct qfile_env *env, const struct qlog_entry *log, size_t nlog)
{
	const char *why, *last = NULL;
	char when[64];
	time_t t = env->arrival.tv_sec;
	struct tm tm;
	char mark = strcmp(e->queue, QUEUE_ACTIVE) == 0 ? '*' : strcmp(e->queue, QUEUE_HOLD) == 0 ? '!' : ' ';
	size_t i;

	if (localtime_r(&t, &tm) == NULL || strftime(when, sizeof(when), "%a %b %e %H:%M:%S", &tm) == 0)
		snprintf(when, sizeof(when), "%lld", (long long)t);
	buf_printf(&o->b, "%s%c %8llu %-20s ", e->id, mark, (unsigned long long)env->content_size, when);
	qlist_escape(&o->b, *env->sender ? env->sender : "MAILER-DAEMON");
	buf_putc(&o->b, '\n');
	/* Only the recipients still to be delivered, each group under its reason. */
	for (i = 0; i < env->nrcpts; i++) {
		if (env->rcpts[i].done)
			continue;
		if ((why = reason_of(log, nlog, env->rcpts[i].offset)) != NULL &&
		    (last == NULL || strcmp(why, last) != 0)) {
			buf_printf(&o->b, "%42s(", "");
			escape_n(&o->b, why, QLIST_REASON_MAX);
			buf_puts(&o->b, ")\n");
		}
		last = why;
		buf_printf(&o->b, "%48s", "");
		qlist_escape(&o->b, env->rcpts[i].addr);
		buf_putc(&o->b, '\n');
		out_maybe_flush(o);
	}
	buf_putc(&o->b, '\n');
}

int
qlist_run(bool json, qlist_emit_fn emit, void *arg, struct buf *err)
{
	struct q_list l = { NULL, 0, 0, 0 };
	struct q_out o = { BUF_INIT, emit, arg, false };
	struct qlog_entry *log;
	struct qfile_env env;
	struct stat st;
	unsigned long long total = 0;
	size_t i, shown = 0, nlog;
	const char *const *q;
	const char *h;
	char dir[64];
	int fd, r, rc = 0;

	/* Every directory first: one that cannot be read says all there is to say. */
	for (q = list_queues; *q && rc == 0; q++) {
		if (!qid_queue_hashed(*q)) {
			rc = scan_dir(&l, *q, *q, err);
			continue;
		}
		for (h = hash_chars; *h && rc == 0; h++) {
			snprintf(dir, sizeof(dir), "%s/%c", *q, *h);
			rc = scan_dir(&l, dir, *q, err);
		}
	}
	if (rc != 0)
		goto out;
	if (l.n > 1)
		qsort(l.v, l.n, sizeof(*l.v), entry_cmp);
	for (i = 0; i < l.n && !o.failed; i++) {
		struct buf why = BUF_INIT;

		if ((fd = open_entry(&l.v[i], &st)) < 0)
			continue;
		r = qfile_read(fd, &env, &list_limits, &why);
		close(fd);
		if (r == 1 && strcmp(l.v[i].queue, QUEUE_INCOMING) == 0) {
			buf_free(&why);
			continue; /* still being written */
		}
		if (r != 0) {
			log_warn("%s: corrupt queue file in %s: %s", l.v[i].id, l.v[i].queue, buf_str(&why));
			buf_free(&why);
			continue;
		}
		if (!json && shown == 0)
			buf_puts(&o.b, "-Queue ID-        --Size-- ----Arrival Time---- -Sender/Recipient-------\n");
		log = NULL;
		nlog = 0;
		if (qlog_read(QUEUE_DEFER, l.v[i].id, &log, &nlog, &why) < 0)
			nlog = 0;
		if (json)
			print_json(&o, &l.v[i], &st, &env, log, nlog);
		else
			print_text(&o, &l.v[i], &env, log, nlog);
		out_maybe_flush(&o);
		qlog_free(log, nlog);
		total += env.content_size;
		shown++;
		qfile_env_free(&env);
		buf_free(&why);
	}
	if (!json) {
		if (shown == 0)
			buf_puts(&o.b, "Mail queue is empty\n");
		else
			buf_printf(&o.b, "-- %llu Kbytes in %zu Request%s.\n", (total + 1023) / 1024, shown,
			    shown == 1 ? "" : "s");
		if (l.left_out)
			buf_printf(&o.b, "-- %llu more messages are not listed (at most %d are)\n", l.left_out,
			    QLIST_MSGS_MAX);
	} else if (l.left_out) {
		log_warn("queue listing: %llu messages left out (at most %d are listed)", l.left_out, QLIST_MSGS_MAX);
	}
	out_flush(&o);
	if (o.failed) {
		buf_printf(err, "the listing could not be written");
		rc = QLIST_ERR_IO;
	}
out:
	free(l.v);
	buf_free(&o.b);
	return rc;
}

/* ---------------------------------------------------------------- showq protocol */

#define SHOWQ_TIMEOUT 60 /* seconds the server waits for each read and write */

static const struct ipc_limits showq_req_limits = { 64, 1024, 8 };
static const struct ipc_limits showq_reply_limits = { 1024, 4096, 8 };

/* emit_frame - one piece of the listing as "LENGTH" LF and the bytes */
static int
emit_frame(void *arg, const unsigned char *data, size_t len)
{
	struct stream *s = arg;
	size_t n;

	while (len > 0) {
		n = len > QLIST_FRAME_MAX ? QLIST_FRAME_MAX : len;
		if (stream_printf(s, "%zu\n", n) != STREAM_OK || stream_write(s, data, n) != STREAM_OK)
			return -1;
		data += n;
		len -= n;
	}
	return 0;
}

/* serve_reply - the status list */
static int
serve_reply(struct stream *s, int status, const char *reason)
{
	ipc_put_int(s, ATTR_STATUS, status);
	if (reason)
		ipc_put_str(s, ATTR_REASON, reason);
	return ipc_put_end(s);
}

void
qlist_serve(struct stream *s)
{
	static const char *const required[] = { NULL };
	static const char *const optional[] = { QLIST_ATTR_FORMAT, NULL };
	struct ipc_msg m;
	struct buf err = BUF_INIT;
	const char *format;
	int r;

	ipc_msg_init(&m);
	stream_set_timeout(s, SHOWQ_TIMEOUT);
	if (ipc_send_hello(s, QLIST_PROTOCOL, QLIST_VERSION) != STREAM_OK)
		goto out;
	if ((r = ipc_get(s, &m, &showq_req_limits)) != STREAM_OK) {
		if (r != STREAM_EOF)
			log_warn("showq request: %s", ipc_strerror(r));
		goto out;
	}
	format = ipc_msg_str(&m, QLIST_ATTR_FORMAT);
	if (ipc_msg_check(&m, required, optional, IPC_STRICT, &err) < 0 ||
	    ipc_msg_count_name(&m, QLIST_ATTR_FORMAT) > 1 ||
	    (format != NULL && strcmp(format, "json") != 0 && strcmp(format, "text") != 0)) {
		log_warn("bad showq request: %s", err.len ? buf_str(&err) : "bad format");
		(void)serve_reply(s, 5, "bad request");
		goto out;
	}
	if (serve_reply(s, 0, NULL) != STREAM_OK)
		goto out;
	buf_reset(&err);
	/* A listing cut short ends without the empty frame; the client notices. */
	if (qlist_run(format != NULL && strcmp(format, "json") == 0, emit_frame, s, &err) != 0)
		log_warn("queue listing: %s", buf_str(&err));
	else if (stream_puts(s, "0\n") == STREAM_OK)
		(void)stream_flush(s);
out:
	ipc_msg_free(&m);
	buf_free(&err);
}

int
qlist_fetch(const char *path, bool json, int timeout, qlist_emit_fn emit, void *arg, struct buf *err)
{
	struct stream *s;
	struct ipc_msg m;
	struct buf line = BUF_INIT, data = BUF_INIT;
	long long status, len;
	const char *reason;
	int r, rc = -1;

	ipc_msg_init(&m);
	if ((s = ipc_connect(path, timeout, err)) == NULL)
		return -1;
	stream_set_timeout(s, timeout);
	if ((r = ipc_expect_hello(s, QLIST_PROTOCOL, QLIST_VERSION, NULL)) != STREAM_OK) {
		buf_printf(err, "%s: greeting: %s", path, ipc_strerror(r));
		goto out;
	}
	if (json)
		ipc_put_str(s, QLIST_ATTR_FORMAT, "json");
	if (ipc_put_end(s) != STREAM_OK || (r = ipc_get(s, &m, &showq_reply_limits)) != STREAM_OK) {
		buf_printf(err, "%s: no answer", path);
		goto out;
	}
	if (ipc_msg_int(&m, ATTR_STATUS, 0, 5, &status) < 0) {
		buf_printf(err, "%s: malformed answer", path);
		goto out;
	}
	if (status != 0) {
		reason = ipc_msg_str(&m, ATTR_REASON);
		buf_printf(err, "%s: refused: ", path);
		qlist_escape(err, reason ? reason : "no reason given");
		goto out;
	}
	for (;;) {
		if ((r = stream_getline(s, &line, 24)) != STREAM_OK || line.len < 2 ||
		    line.data[line.len - 1] != '\n') {
			buf_printf(err, "%s: the listing ended early", path);
			goto out;
		}
		line.data[line.len - 1] = 0;
		if (str_to_ll((const char *)line.data, 0, QLIST_FRAME_MAX, &len, NULL) < 0) {
			buf_printf(err, "%s: malformed listing", path);
			goto out;
		}
		if (len == 0)
			break;
		buf_reset(&data);
		buf_reserve(&data, (size_t)len);
		if (stream_read(s, data.data, (size_t)len) != (ssize_t)len) {
			buf_printf(err, "%s: the listing ended early", path);
			goto out;
		}
		if (emit(arg, data.data, (size_t)len) != 0) {
			buf_printf(err, "cannot write the listing");
			goto out;
		}
	}
	rc = 0;
out:
	stream_free(s);
	ipc_msg_free(&m);
	buf_free(&line);
	buf_free(&data);
	return rc;
}
