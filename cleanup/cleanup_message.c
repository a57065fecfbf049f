/*
 * cleanup_message - the content of a message on its way into the queue.
 *
 * cleanup.c feeds this module the content in whatever pieces the client's
 * frames bring (a header field may be split anywhere); the module passes
 * the bytes on unchanged to be stored, watches the header section, and
 * at the end adds the header fields a submitted message lacks and a
 * final newline.  It stores headers byte for byte: it unfolds only the
 * few values it looks at, never what it writes.
 *
 * The content is hostile.  Memory is bounded whatever arrives: the body
 * and header lines stream through, and only the start of a line whose
 * fate is still open (at most CLEANUP_NAME_MAX bytes of a field name) and
 * the Message-ID value (for the log, at most CLEANUP_MSGID_MAX bytes) are
 * kept.  header_size_limit, message_size_limit and hopcount_limit are
 * checked as the bytes arrive, so an over-size message fails early; the
 * caller keeps reading to the end of the client's content before it
 * replies.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "log.h"
#include "str.h"

/* Where in the content we are. */
enum {
	CM_LINE_START, /* at the start of a line of the header section */
	CM_NAME,       /* reading what may be a field name (held in pend) */
	CM_NAME_WS,    /* white space after it, before a ':' (obsolete syntax, held) */
	CM_FIELD,      /* inside a header field line */
	CM_BODY,       /* after the header section */
};

/* Fields we look at. */
enum {
	CM_F_OTHER,
	CM_F_MSGID, /* the first Message-ID: its value is kept for the log */
};

void
cleanup_status_init(struct cleanup_status *st)
{
	st->status = CLEANUP_STAT_OK;
	st->dsn = "2.0.0";
	buf_init(&st->reason, 0);
}

void
cleanup_status_free(struct cleanup_status *st)
{
	buf_free(&st->reason);
}

int
cleanup_status_set(struct cleanup_status *st, int status, const char *dsn, const char *fmt, ...)
{
	va_list ap;

	if (st->status != CLEANUP_STAT_OK)
		return -1;
	st->status = status;
	st->dsn = dsn;
	buf_reset(&st->reason);
	va_start(ap, fmt);
	buf_vprintf(&st->reason, fmt, ap);
	va_end(ap);
	return -1;
}

void
cleanup_msg_init(struct cleanup_msg *m, const struct cleanup_msg_conf *conf, cleanup_out_fn out, void *arg)
{
	memset(m, 0, sizeof(*m));
	m->conf = *conf;
	m->out = out;
	m->arg = arg;
	m->state = CM_LINE_START;
	m->last = -1;
	buf_init(&m->pend, 0);
	buf_init(&m->msgid, 0);
}

void
cleanup_msg_free(struct cleanup_msg *m)
{
	buf_free(&m->pend);
	buf_free(&m->msgid);
}

/* ftext (RFC 5322 3.6.8): printable ASCII except ':' */
static bool
cm_ftext(int c)
{
	return c >= 33 && c <= 126 && c != ':';
}

static int
cm_fail(struct cleanup_msg *m, struct cleanup_status *st, int status, const char *dsn, const char *reason)
{
	m->failed = true;
	return cleanup_status_set(st, status, dsn, "%s", reason);
}

/* cm_emit - pass bytes on to be stored, counting lines */
static int
cm_emit(struct cleanup_msg *m, struct cleanup_status *st, const void *data, size_t n)
{
	const unsigned char *p = data, *e = p + n, *nl;

	if (n == 0)
		return 0;
	if (m->out(m->arg, p, n) < 0)
		return cm_fail(m, st, CLEANUP_STAT_TEMP, "4.3.0", "queue file write error");
	for (; p < e && (nl = memchr(p, '\n', (size_t)(e - p))) != NULL; p = nl + 1)
		m->lines++;
	m->out_bytes += n;
	m->last = ((const unsigned char *)data)[n - 1];
	return 0;
}

/* cm_header_bytes - count bytes of the header section against its limit */
static int
cm_header_bytes(struct cleanup_msg *m, struct cleanup_status *st, size_t n)
{
	m->header_bytes += n;
	if (m->header_bytes > m->conf.header_size_limit)
		return cm_fail(m, st, CLEANUP_STAT_PERM, "5.3.4", "message header size exceeds limit");
	return 0;
}

/* cm_missing - the header fields to add, into out; false when none */
static bool
cm_missing(struct cleanup_msg *m, struct buf *out)
{
	static const char days[][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
		"Dec" };
	const char *host = m->conf.myhostname && *m->conf.myhostname ? m->conf.myhostname : "localhost";
	time_t now = m->conf.now ? m->conf.now : time(NULL);
	struct tm tm;
	long off;
	size_t start;

	if (!m->conf.add_missing)
		return false;
	if (localtime_r(&now, &tm) == NULL)
		memset(&tm, 0, sizeof(tm));
	if (!m->seen_msgid) {
		/* Unique without the random part; the random part keeps it from being guessed. */
		buf_puts(out, "Message-ID: ");
		start = out->len;
		buf_printf(out, "<%04d%02d%02d%02d%02d%02d.%08X.%s@%s>", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
		    tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)arc4random(), m->conf.queue_id ? m->conf.queue_id : "0",
		    host);
		buf_set(&m->msgid, out->data + start, out->len - start);
		buf_putc(out, '\n');
	}
	if (!m->seen_date) {
		off = (long)tm.tm_gmtoff / 60;
		buf_printf(out, "Date: %s, %d %s %d %02d:%02d:%02d %c%02ld%02ld\n", days[tm.tm_wday % 7], tm.tm_mday,
		    months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, off < 0 ? '-' : '+',
		    (off < 0 ? -off : off) / 60, (off < 0 ? -off : off) % 60);
	}
	if (!m->seen_from) {
		if (m->conf.sender && *m->conf.sender)
			buf_printf(out, "From: %s\n", m->conf.sender);
		else
			buf_printf(out, "From: MAILER-DAEMON@%s\n", host);
	}
	return out->len > 0;
}

/*
 * cm_end_header - the header section ends: add what is missing.  When a
 * body line follows without an empty line, one goes after added fields
 * so that the line does not read as part of them.
 */
static int
cm_end_header(struct cleanup_msg *m, struct cleanup_status *st, bool body_follows)
{
	struct buf add = BUF_INIT;
	int r = 0;

	m->state = CM_BODY;
	if (cm_missing(m, &add)) {
		if (body_follows)
			buf_putc(&add, '\n');
		r = cm_emit(m, st, add.data, add.len);
	}
	buf_free(&add);
	return r;
}

/* cm_classify - a field name is complete (pend holds it and maybe white space) */
static int
cm_classify(struct cleanup_msg *m, struct cleanup_status *st)
{
	const char *name = (const char *)m->pend.data;
	size_t n = m->name_len;

	m->field = CM_F_OTHER;
	if (n == 10 && str_ncasecmp(name, "message-id", n) == 0) {
		if (!m->seen_msgid)
			m->field = CM_F_MSGID;
		m->seen_msgid = true;
	} else if (n == 4 && str_ncasecmp(name, "date", n) == 0) {
		m->seen_date = true;
	} else if (n == 4 && str_ncasecmp(name, "from", n) == 0) {
		m->seen_from = true;
	} else if (n == 8 && str_ncasecmp(name, "received", n) == 0) {
		/* Each relay adds one: too many means the message loops. */
		if (++m->received > m->conf.hopcount_limit)
			return cm_fail(m, st, CLEANUP_STAT_PERM, "5.4.6", "too many hops");
	}
	return 0;
}

/* cm_capture - keep (a bounded part of) the Message-ID value, unfolded */
static void
cm_capture(struct cleanup_msg *m, const unsigned char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n && m->msgid.len < CLEANUP_MSGID_MAX; i++)
		if (p[i] != '\n' && p[i] != '\r')
			buf_putc(&m->msgid, p[i]);
}

/* cm_not_a_field - the held line start is body text: end the header first */
static int
cm_not_a_field(struct cleanup_msg *m, struct cleanup_status *st)
{
	if (cm_end_header(m, st, true) < 0 || cm_emit(m, st, m->pend.data, m->pend.len) < 0)
		return -1;
	buf_reset(&m->pend);
	return 0;
}

int
cleanup_msg_feed(struct cleanup_msg *m, const unsigned char *p, size_t n, struct cleanup_status *st)
{
	const unsigned char *nl;
	size_t take;
	int c;

	if (m->failed)
		return -1;
	m->in_bytes += n;
	if (m->conf.message_size_limit && m->in_bytes > m->conf.message_size_limit)
		return cm_fail(m, st, CLEANUP_STAT_PERM, "5.3.4", "message file too big");
	while (n > 0) {
		switch (m->state) {
		case CM_BODY:
			return cm_emit(m, st, p, n);
		case CM_FIELD:
			nl = memchr(p, '\n', n);
			take = nl ? (size_t)(nl - p) + 1 : n;
			if (cm_header_bytes(m, st, take) < 0)
				return -1;
			if (m->field == CM_F_MSGID)
				cm_capture(m, p, take);
			if (cm_emit(m, st, p, take) < 0)
				return -1;
			if (nl != NULL)
				m->state = CM_LINE_START;
			p += take;
			n -= take;
			break;
		case CM_LINE_START:
			c = *p;
			if (c == '\n') {
				/* The empty line: it ends the header and is stored as is. */
				if (cm_end_header(m, st, false) < 0)
					return -1;
			} else if ((c == ' ' || c == '\t') && m->have_field) {
				m->state = CM_FIELD; /* a continuation of the same field */
			} else if (cm_ftext(c)) {
				buf_reset(&m->pend);
				m->state = CM_NAME;
			} else if (cm_end_header(m, st, true) < 0) {
				return -1;
			}
			break;
		case CM_NAME:
		case CM_NAME_WS:
			/* Names are short: one byte at a time until the line's fate is known. */
			c = *p;
			if (c == ':') {
				if (m->state == CM_NAME)
					m->name_len = m->pend.len;
				buf_putc(&m->pend, c);
				p++;
				n--;
				if (cm_header_bytes(m, st, m->pend.len) < 0 || cm_classify(m, st) < 0 ||
				    cm_emit(m, st, m->pend.data, m->pend.len) < 0)
					return -1;
				buf_reset(&m->pend);
				m->have_field = true;
				m->state = CM_FIELD;
			} else if (m->state == CM_NAME && cm_ftext(c) && m->pend.len < CLEANUP_NAME_MAX) {
				buf_putc(&m->pend, c);
				p++;
				n--;
			} else if ((c == ' ' || c == '\t') && m->pend.len < CLEANUP_NAME_MAX) {
				if (m->state == CM_NAME)
					m->name_len = m->pend.len;
				m->state = CM_NAME_WS;
				buf_putc(&m->pend, c);
				p++;
				n--;
			} else if (cm_not_a_field(m, st) < 0) {
				return -1;
			}
			break;
		default:
			log_panic("cleanup_msg_feed: state %d", m->state);
		}
	}
	return 0;
}

int
cleanup_msg_finish(struct cleanup_msg *m, struct cleanup_status *st)
{
	if (m->failed)
		return -1;
	switch (m->state) {
	case CM_NAME:
	case CM_NAME_WS:
		if (cm_not_a_field(m, st) < 0)
			return -1;
		break;
	case CM_FIELD:
		/* The last field lacks its newline: complete it before adding more. */
		if (cm_emit(m, st, "\n", 1) < 0 || cm_end_header(m, st, false) < 0)
			return -1;
		return 0;
	case CM_LINE_START:
		return cm_end_header(m, st, false);
	default:
		break;
	}
	if (m->out_bytes > 0 && m->last != '\n')
		return cm_emit(m, st, "\n", 1);
	return 0;
}

const char *
cleanup_msg_id(struct cleanup_msg *m)
{
	struct buf *id = &m->msgid;
	size_t i, start = 0, end = id->len;

	/* Trim white space and make the rest printable for a log line. */
	while (start < end && (id->data[start] == ' ' || id->data[start] == '\t'))
		start++;
	while (end > start && (id->data[end - 1] == ' ' || id->data[end - 1] == '\t'))
		end--;
	for (i = start; i < end; i++)
		if (id->data[i] < 0x20 || id->data[i] >= 0x7f)
			id->data[i] = '?';
	if (start > 0)
		memmove(id->data, id->data + start, end - start);
	buf_truncate(id, end - start);
	return buf_str(id);
}
