/*
 * dsn - delivery status notifications (see dsn.h): RFC 3464 reports in
 * an RFC 6522 multipart/report, with the original message or its header
 * section (RFC 3462 text/rfc822-headers), submitted through cleanup.
 *
 * qmgr calls it for bounces, delay notices and NOTIFY=SUCCESS reports.
 * Everything it copies into the notice is treated as hostile: recipient
 * addresses and reasons (a remote server's reply) are cleaned of control
 * and 8-bit bytes and folded to short lines, so they can neither add a
 * header field nor end a MIME part early; the boundary is checked
 * against every byte of every part.  The queue file is read through the
 * bounded qfile reader and only as much of it as the notice returns.
 *
 * SMTPUTF8 messages (or addresses with 8-bit bytes) get the RFC 6533
 * types: message/global-delivery-status, message/global and
 * message/global-headers, with "utf-8" addresses where needed.  The
 * diagnostic text stays ASCII in every case.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cfg.h"
#include "cleanup_client.h"
#include "dsn.h"
#include "log.h"
#include "qfile.h"
#include "qid.h"
#include "str.h"
#include "xalloc.h"

#define DSN_FOLD_AT      78      /* fold header lines at a space after this */
#define DSN_LINE_HARD    900     /* cut a line with no space here (< 998) */
#define DSN_REASON_MAX   4000    /* bytes of one reason in the notice */
#define DSN_HEADERS_MAX  1048576 /* header section returned, at most */
#define DSN_BOUNDARY_TRY 16
#define DSN_TIMEOUT      100 /* seconds, at most, for the exchange with cleanup */

/* Everything dsn_build works out before it writes. */
struct dsn_ctx {
	const struct dsn_request *req;
	const char *host;   /* myhostname */
	bool global;        /* RFC 6533 types */
	bool eight_bit;     /* the notice holds 8-bit bytes */
	bool full;          /* part 3 is the whole message */
	struct buf human;   /* part 1, body */
	struct buf status;  /* part 2, body */
	struct buf orig;    /* part 3, body */
	time_t retry_until; /* DELAYED */
};

/* dsn_date - RFC 5322 date-time with a numeric zone, locale independent */
static void
dsn_date(struct buf *out, time_t t)
{
	static const char *const day[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char *const mon[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
		"Dec" };
	struct tm tm;
	long off;

	if (localtime_r(&t, &tm) == NULL) {
		t = 0;
		gmtime_r(&t, &tm);
		tm.tm_gmtoff = 0;
	}
	off = tm.tm_gmtoff / 60;
	buf_printf(out, "%s, %d %s %d %02d:%02d:%02d %c%02ld%02ld", day[tm.tm_wday % 7], tm.tm_mday,
	    mon[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, off < 0 ? '-' : '+',
	    labs(off) / 60, labs(off) % 60);
}

/* dsn_utf8_valid - s is well-formed UTF-8 (no overlongs, surrogates or > U+10FFFF) */
static bool
dsn_utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	unsigned cp, n, i;

	while (*p) {
		if (*p < 0x80) {
			p++;
			continue;
		}
		if (*p >= 0xc2 && *p <= 0xdf) {
			n = 1;
			cp = *p & 0x1f;
		} else if (*p >= 0xe0 && *p <= 0xef) {
			n = 2;
			cp = *p & 0x0f;
		} else if (*p >= 0xf0 && *p <= 0xf4) {
			n = 3;
			cp = *p & 0x07;
		} else {
			return false;
		}
		for (i = 1; i <= n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (p[i] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		p += n + 1;
	}
	return true;
}

static bool
dsn_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return false;
	return true;
}

/*
 * dsn_clean - append at most max bytes of s with control bytes (and,
 * unless keep_utf8, bytes above 0x7e) replaced; white space becomes one
 * space.  An 8-bit byte is kept only when the whole string is UTF-8.
 */
static void
dsn_clean(struct buf *out, const char *s, size_t max, bool keep_utf8)
{
	bool utf8 = keep_utf8 && dsn_utf8_valid(s);
	size_t i;

	for (i = 0; i < max && s[i]; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\t' || c == '\n' || c == '\r')
			buf_putc(out, ' ');
		else if (c < 0x20 || c == 0x7f || (c >= 0x80 && !utf8))
			buf_putc(out, '?');
		else
			buf_putc(out, c);
	}
	if (s[i])
		buf_puts(out, " [...]");
}

/*
 * dsn_fold - "prefix" + value as lines of at most DSN_FOLD_AT bytes where
 * a space allows it (the break goes before the space, so unfolding gives
 * the value back), never longer than DSN_LINE_HARD.  value has no
 * control bytes (dsn_clean).
 */
static void
dsn_fold(struct buf *out, const char *prefix, const char *value)
{
	struct buf line = BUF_INIT;
	size_t min = strlen(prefix), brk = 0, i, n = strlen(value);
	const char *v;

	/* Trailing white space could end up alone on a continuation line. */
	while (n > 0 && value[n - 1] == ' ')
		n--;
	buf_strcpy(&line, prefix);
	for (v = value; v < value + n; v++) {
		buf_putc(&line, *v);
		if (*v == ' ' && line.len - 1 > min)
			brk = line.len - 1;
		if (line.len > DSN_FOLD_AT && brk > 0) {
			buf_append(out, line.data, brk);
			buf_putc(out, '\n');
			buf_consume(&line, brk);
			/* The continuation starts with the space; look for a later one. */
			brk = 0;
			min = 1;
			for (i = line.len; i-- > 1;)
				if (line.data[i] == ' ') {
					brk = i;
					break;
				}
		} else if (line.len >= DSN_LINE_HARD) {
			buf_append(out, line.data, line.len);
			buf_puts(out, "\n");
			buf_strcpy(&line, " ");
			brk = 0;
			min = 1;
		}
	}
	buf_append(out, line.data, line.len);
	buf_putc(out, '\n');
	buf_free(&line);
}

/* dsn_field - "Name: value" with value cleaned and folded */
static void
dsn_field(struct buf *out, const char *name, const char *value, bool keep_utf8)
{
	struct buf v = BUF_INIT, prefix = BUF_INIT;

	dsn_clean(&v, value, DSN_REASON_MAX, keep_utf8);
	buf_printf(&prefix, "%s: ", name);
	dsn_fold(out, buf_str(&prefix), buf_str(&v));
	buf_free(&v);
	buf_free(&prefix);
}

/* dsn_smtp_reply - the SMTP reply inside a reason ("550 5.1.1 ..."), or NULL */
static const char *
dsn_smtp_reply(const char *reason)
{
	const char *p;

	if (reason == NULL)
		return NULL;
	if ((p = strstr(reason, " said: ")) != NULL)
		p += 7;
	else
		p = reason;
	if (p[0] >= '2' && p[0] <= '5' && p[1] >= '0' && p[1] <= '9' && p[2] >= '0' && p[2] <= '9' &&
	    (p[3] == ' ' || p[3] == '-' || p[3] == 0))
		return p;
	return NULL;
}

/*
 * dsn_remote_mta - the host of a relay such as "mx.example.com[192.0.2.1]:25"
 * or "[192.0.2.1]:25" into out; false for local delivery ("local", "none")
 * or anything that does not look like a host.
 */
static bool
dsn_remote_mta(const char *relay, struct buf *out)
{
	size_t n;

	buf_reset(out);
	if (relay == NULL || *relay == 0 || strcmp(relay, "local") == 0 || strcmp(relay, "none") == 0 ||
	    strcmp(relay, "-") == 0)
		return false;
	if (*relay == '[') {
		relay++;
		n = strcspn(relay, "]");
		if (relay[n] != ']')
			return false;
	} else {
		n = strcspn(relay, "[:");
	}
	if (n == 0 || n > 255)
		return false;
	buf_append(out, relay, n);
	if (strspn(buf_str(out), "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:_") != n)
		return false;
	/* A transport name alone ("local", "nosuch") is not a host. */
	return strchr(buf_str(out), '.') != NULL || strchr(buf_str(out), ':') != NULL;
}

/* dsn_addr_field - "Name: TYPE; addr": rfc822, or utf-8 (RFC 6533) for 8-bit addresses */
static void
dsn_addr_field(struct dsn_ctx *c, const char *name, const char *addr)
{
	struct buf v = BUF_INIT;
	bool ascii = dsn_ascii(addr);

	buf_puts(&v, ascii || !c->global ? "rfc822; " : "utf-8; ");
	buf_puts(&v, addr);
	dsn_field(&c->status, name, buf_str(&v), c->global);
	buf_free(&v);
}

/* dsn_orcpt_field - ORCPT "type;xtext" becomes "Original-Recipient: type; xtext" */
static void
dsn_orcpt_field(struct dsn_ctx *c, const char *orcpt)
{
	struct buf v = BUF_INIT;
	const char *semi;

	if (orcpt == NULL || (semi = strchr(orcpt, ';')) == NULL || semi == orcpt)
		return;
	buf_append(&v, orcpt, (size_t)(semi - orcpt));
	buf_puts(&v, "; ");
	semi++;
	while (*semi == ' ')
		semi++;
	buf_puts(&v, semi);
	dsn_field(&c->status, "Original-Recipient", buf_str(&v), c->global);
	buf_free(&v);
}

static const char *
dsn_action(enum dsn_kind kind)
{
	switch (kind) {
	case DSN_DELAYED:
		return "delayed";
	case DSN_DELIVERED:
		return "delivered";
	case DSN_FAILED:
	default:
		return "failed";
	}
}

/* dsn_status_code - the record's DSN code, or a generic one of the notice's class */
static const char *
dsn_status_code(enum dsn_kind kind, const char *dsn)
{
	if (qlog_dsn_valid(dsn))
		return dsn;
	return kind == DSN_DELIVERED ? "2.0.0" : kind == DSN_DELAYED ? "4.0.0" : "5.0.0";
}

/* dsn_status_part - the message/delivery-status body (RFC 3464 section 2) */
static void
dsn_status_part(struct dsn_ctx *c)
{
	const struct dsn_request *req = c->req;
	const char *envid = qfile_env_attr(req->env, CLEANUP_ATTR_ENVID), *smtp;
	struct buf v = BUF_INIT, host = BUF_INIT;
	size_t i;

	/* Per-message fields, in the order of RFC 3464's grammar. */
	if (envid != NULL && *envid)
		dsn_field(&c->status, "Original-Envelope-Id", envid, false);
	buf_printf(&c->status, "Reporting-MTA: dns; %s\n", c->host);
	dsn_date(&v, req->env->arrival.tv_sec);
	buf_printf(&c->status, "Arrival-Date: %s\n", buf_str(&v));
	buf_printf(&c->status, "X-Postern-Queue-ID: %s\n", req->queue_id);

	for (i = 0; i < req->nrcpts; i++) {
		const struct qlog_entry *e = &req->rcpts[i];

		buf_putc(&c->status, '\n');
		dsn_orcpt_field(c, e->orcpt);
		dsn_addr_field(c, "Final-Recipient", e->addr);
		buf_printf(&c->status, "Action: %s\n", dsn_action(req->kind));
		buf_printf(&c->status, "Status: %s\n", dsn_status_code(req->kind, e->dsn));
		if (dsn_remote_mta(e->relay, &host))
			buf_printf(&c->status, "Remote-MTA: dns; %s\n", buf_str(&host));
		buf_reset(&v);
		if ((smtp = dsn_smtp_reply(e->reason)) != NULL) {
			buf_printf(&v, "smtp; %s", smtp);
			dsn_field(&c->status, "Diagnostic-Code", buf_str(&v), false);
		} else if (e->reason != NULL && *e->reason) {
			buf_printf(&v, "X-Postern; %s", e->reason);
			dsn_field(&c->status, "Diagnostic-Code", buf_str(&v), false);
		}
		if (e->when > 0) {
			buf_reset(&v);
			dsn_date(&v, e->when);
			buf_printf(&c->status, "Last-Attempt-Date: %s\n", buf_str(&v));
		}
		if (req->kind == DSN_DELAYED) {
			buf_reset(&v);
			dsn_date(&v, c->retry_until);
			buf_printf(&c->status, "Will-Retry-Until: %s\n", buf_str(&v));
		}
	}
	buf_free(&v);
	buf_free(&host);
}

/* dsn_human_part - the text/plain explanation, in our own words */
static void
dsn_human_part(struct dsn_ctx *c)
{
	const struct dsn_request *req = c->req;
	struct buf v = BUF_INIT, line = BUF_INIT;
	size_t i;

	buf_printf(&c->human, "This is the mail system at host %s.\n\n", c->host);
	switch (req->kind) {
	case DSN_FAILED:
		buf_puts(&c->human, "Your message could not be delivered to one or more of its\n"
		                    "recipients, and the mail system has stopped trying. Each one is\n"
		                    "listed below with the reason. A delivery report and ");
		buf_puts(&c->human,
		    c->full ? "your message\nare attached.\n\n" : "the header of\nyour message are attached.\n\n");
		break;
	case DSN_DELAYED:
		dsn_date(&v, c->retry_until);
		buf_printf(&c->human,
		    "Your message has not yet been delivered to the recipients listed\n"
		    "below. The mail system keeps trying until\n"
		    "%s; you do not need to send it again.\n"
		    "If it still cannot be delivered by then, you will be told.\n\n",
		    buf_str(&v));
		break;
	case DSN_DELIVERED:
		buf_puts(&c->human, "Your message was delivered to the recipients listed below, as you\n"
		                    "asked with a delivery notification request.\n\n");
		break;
	}
	buf_printf(&c->human, "For help, write to postmaster@%s and include this report.\n\n", c->host);
	for (i = 0; i < req->nrcpts; i++) {
		const struct qlog_entry *e = &req->rcpts[i];

		buf_reset(&line);
		buf_putc(&line, '<');
		dsn_clean(&line, e->addr, DSN_REASON_MAX, c->global);
		buf_puts(&line, ">: ");
		dsn_clean(&line, e->reason && *e->reason ? e->reason : e->dsn, DSN_REASON_MAX, false);
		dsn_fold(&c->human, "", buf_str(&line));
		buf_putc(&c->human, '\n');
	}
	buf_free(&v);
	buf_free(&line);
}

/*
 * dsn_original - part 3's body: the whole content when wanted and small
 * enough (c->full), else the header section.  NUL bytes are never
 * returned: the whole message falls back to its header, and a header
 * section shows them as '?'.
 */
static int
dsn_original(struct dsn_ctx *c, struct buf *err)
{
	const struct dsn_request *req = c->req;
	struct buf chunk = BUF_INIT;
	off_t pos = req->env->content_offset;
	size_t i, end = 0;
	bool done = false;
	int r = 0, ret = -1;

	if (c->full) {
		while ((r = qfile_content_next(req->fd, &pos, &chunk, err)) == 1) {
			if (c->orig.len + chunk.len > (unsigned long long)req->return_limit) {
				/* The envelope's size was wrong: the file is corrupt. */
				buf_strcpy(err, "content larger than its recorded size");
				goto out;
			}
			buf_append(&c->orig, chunk.data, chunk.len);
		}
		if (r < 0)
			goto out;
		if (memchr(c->orig.data ? (const void *)c->orig.data : "", 0, c->orig.len) == NULL) {
			ret = 0;
			goto out;
		}
		c->full = false;
		buf_reset(&c->orig);
		pos = req->env->content_offset;
	}
	/* The header section: up to the first empty line (or all of it). */
	while (!done && (r = qfile_content_next(req->fd, &pos, &chunk, err)) == 1) {
		size_t start = c->orig.len;

		buf_append(&c->orig, chunk.data, chunk.len);
		for (i = start; i < c->orig.len; i++) {
			if (c->orig.data[i] == '\n' && (i == 0 || c->orig.data[i - 1] == '\n')) {
				end = i; /* the LF of the last header line is kept */
				done = true;
				break;
			}
		}
		if (!done && c->orig.len > DSN_HEADERS_MAX) {
			end = DSN_HEADERS_MAX;
			while (end > 0 && c->orig.data[end - 1] != '\n')
				end--;
			done = true;
		}
	}
	if (!done) {
		if (r < 0)
			goto out;
		end = c->orig.len;
	}
	buf_truncate(&c->orig, end);
	for (i = 0; i < c->orig.len; i++)
		if (c->orig.data[i] == 0)
			c->orig.data[i] = '?';
	ret = 0;
out:
	buf_free(&chunk);
	return ret;
}

static bool
dsn_has_8bit(const struct buf *b)
{
	size_t i;

	for (i = 0; i < b->len; i++)
		if (b->data[i] >= 0x80)
			return true;
	return false;
}

/* dsn_contains - needle occurs in b */
static bool
dsn_contains(const struct buf *b, const char *needle)
{
	return b->len > 0 && memmem(b->data, b->len, needle, strlen(needle)) != NULL;
}

/* dsn_boundary - a boundary that occurs in none of the parts; -1 when none was found */
static int
dsn_boundary(struct dsn_ctx *c, struct buf *out)
{
	static const char bchars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-";
	unsigned char rnd[8];
	size_t i, hostlen;
	int try;

	for (try = 0; try < DSN_BOUNDARY_TRY; try++) {
		buf_reset(out);
		arc4random_buf(rnd, sizeof(rnd));
		buf_printf(out, "%s.", c->req->queue_id);
		for (i = 0; i < sizeof(rnd); i++)
			buf_printf(out, "%02x", rnd[i]);
		buf_putc(out, '/');
		/* At most 70 characters (RFC 2046), all of them bchars. */
		hostlen = 0;
		for (i = 0; c->host[i] && out->len < 70; i++)
			if (strchr(bchars, c->host[i]) != NULL) {
				buf_putc(out, c->host[i]);
				hostlen++;
			}
		if (hostlen == 0)
			buf_puts(out, "x");
		if (!dsn_contains(&c->human, buf_str(out)) && !dsn_contains(&c->status, buf_str(out)) &&
		    !dsn_contains(&c->orig, buf_str(out)))
			return 0;
	}
	return -1;
}

static const char *
dsn_subject(enum dsn_kind kind)
{
	switch (kind) {
	case DSN_DELAYED:
		return "Delayed Mail (still being retried)";
	case DSN_DELIVERED:
		return "Successful Mail Delivery Report";
	case DSN_FAILED:
	default:
		return "Undelivered Mail Returned to Sender";
	}
}

/* dsn_orig_description - part 3's Content-Description */
static const char *
dsn_orig_description(const struct dsn_ctx *c)
{
	if (c->full)
		return "Undelivered Message";
	switch (c->req->kind) {
	case DSN_DELAYED:
		return "Delayed Message Headers";
	case DSN_DELIVERED:
		return "Delivered Message Headers";
	case DSN_FAILED:
	default:
		return "Undelivered Message Headers";
	}
}

/* dsn_ctx_init - decide what the notice holds; -1 with err on a bad request */
static int
dsn_ctx_init(struct dsn_ctx *c, const struct dsn_request *req, struct buf *err)
{
	const char *ret, *flags, *utf8;
	long long lifetime, fl = 0;
	size_t i;

	memset(c, 0, sizeof(*c));
	c->req = req;
	if (req->queue_id == NULL || !qid_valid(req->queue_id)) {
		buf_strcpy(err, "invalid queue ID");
		return -1;
	}
	if (req->env == NULL || req->to == NULL || *req->to == 0 || req->nrcpts == 0 || req->rcpts == NULL) {
		buf_strcpy(err, "no recipient for the notice, or nothing to report");
		return -1;
	}
	c->host = cfg_str(P_MYHOSTNAME);
	if (c->host == NULL || *c->host == 0)
		c->host = "localhost";
	utf8 = qfile_env_attr(req->env, CLEANUP_ATTR_SMTPUTF8);
	c->global = (utf8 != NULL && strcmp(utf8, "1") == 0) || !dsn_ascii(req->to);
	for (i = 0; i < req->nrcpts; i++) {
		if (req->rcpts[i].addr == NULL || *req->rcpts[i].addr == 0) {
			buf_strcpy(err, "recipient without an address");
			return -1;
		}
		if (!dsn_ascii(req->rcpts[i].addr) || (req->rcpts[i].orcpt && !dsn_ascii(req->rcpts[i].orcpt)))
			c->global = true;
	}
	ret = qfile_env_attr(req->env, CLEANUP_ATTR_RET);
	c->full = req->kind == DSN_FAILED && (ret == NULL || str_casecmp(ret, "HDRS") != 0) && req->return_limit > 0 &&
	          req->env->content_size <= (unsigned long long)req->return_limit;
	/* Bounces of bounces live for bounce_queue_lifetime, like qmgr keeps them. */
	flags = qfile_env_attr(req->env, CLEANUP_ATTR_FLAGS);
	if (flags != NULL && str_to_ll(flags, 0, CLEANUP_FLAG_MASK, &fl, NULL) == 0 && (fl & CLEANUP_FLAG_BOUNCE))
		lifetime = cfg_time(P_BOUNCE_QUEUE_LIFETIME);
	else
		lifetime = cfg_time(P_MAXIMAL_QUEUE_LIFETIME);
	c->retry_until = req->env->arrival.tv_sec + (time_t)lifetime;
	return 0;
}

static void
dsn_ctx_free(struct dsn_ctx *c)
{
	buf_free(&c->human);
	buf_free(&c->status);
	buf_free(&c->orig);
}

/* dsn_assemble - the header and the three parts */
static void
dsn_assemble(struct dsn_ctx *c, const char *boundary, struct buf *out)
{
	const char *cte = c->eight_bit ? "8bit" : "7bit";
	unsigned char rnd[8];
	struct buf v = BUF_INIT;
	size_t i;

	buf_printf(out, "From: %s@%s (Mail Delivery System)\n", cfg_str(P_BOUNCE_NOTICE_SENDER), c->host);
	dsn_field(out, "To", c->req->to, c->global);
	buf_printf(out, "Subject: %s\n", dsn_subject(c->req->kind));
	dsn_date(&v, time(NULL));
	buf_printf(out, "Date: %s\n", buf_str(&v));
	arc4random_buf(rnd, sizeof(rnd));
	buf_puts(out, "Message-Id: <");
	for (i = 0; i < sizeof(rnd); i++)
		buf_printf(out, "%02x", rnd[i]);
	buf_printf(out, ".%s@%s>\n", c->req->queue_id, c->host);
	buf_puts(out, "Auto-Submitted: auto-replied\n");
	buf_puts(out, "MIME-Version: 1.0\n");
	buf_printf(out, "Content-Type: multipart/report; report-type=delivery-status;\n\tboundary=\"%s\"\n", boundary);
	buf_printf(out, "Content-Transfer-Encoding: %s\n", cte);
	buf_puts(out, "\nThis is a MIME-encapsulated message.\n\n");

	buf_printf(out, "--%s\n", boundary);
	buf_puts(out, "Content-Description: Notification\n");
	buf_printf(out, "Content-Type: text/plain; charset=%s\n", dsn_has_8bit(&c->human) ? "utf-8" : "us-ascii");
	if (dsn_has_8bit(&c->human))
		buf_puts(out, "Content-Transfer-Encoding: 8bit\n");
	buf_putc(out, '\n');
	buf_append(out, c->human.data, c->human.len);

	buf_printf(out, "\n--%s\n", boundary);
	buf_puts(out, "Content-Description: Delivery report\n");
	buf_printf(out, "Content-Type: %s\n", c->global ? "message/global-delivery-status" : "message/delivery-status");
	if (c->global && dsn_has_8bit(&c->status))
		buf_puts(out, "Content-Transfer-Encoding: 8bit\n");
	buf_putc(out, '\n');
	buf_append(out, c->status.data, c->status.len);

	buf_printf(out, "\n--%s\n", boundary);
	buf_printf(out, "Content-Description: %s\n", dsn_orig_description(c));
	if (c->full)
		buf_printf(out, "Content-Type: %s\n", c->global ? "message/global" : "message/rfc822");
	else
		buf_printf(out, "Content-Type: %s\n", c->global ? "message/global-headers" : "text/rfc822-headers");
	if (dsn_has_8bit(&c->orig))
		buf_puts(out, "Content-Transfer-Encoding: 8bit\n");
	buf_putc(out, '\n');
	buf_append(out, c->orig.data, c->orig.len);
	/* The LF before "--" belongs to the delimiter (RFC 2046 5.1.1). */
	buf_printf(out, "\n--%s--\n", boundary);
	buf_free(&v);
}

int
dsn_build(const struct dsn_request *req, struct buf *out, struct buf *err)
{
	struct buf boundary = BUF_INIT;
	struct dsn_ctx c;
	int ret = -1;

	buf_reset(out);
	if (dsn_ctx_init(&c, req, err) < 0)
		goto out;
	if (dsn_original(&c, err) < 0)
		goto out;
	dsn_human_part(&c);
	dsn_status_part(&c);
	c.eight_bit = dsn_has_8bit(&c.human) || dsn_has_8bit(&c.status) || dsn_has_8bit(&c.orig);
	if (dsn_boundary(&c, &boundary) < 0) {
		buf_strcpy(err, "cannot find a MIME boundary that is not in the message");
		goto out;
	}
	dsn_assemble(&c, buf_str(&boundary), out);
	ret = 0;
out:
	dsn_ctx_free(&c);
	buf_free(&boundary);
	return ret;
}

int
dsn_send(const struct dsn_request *req, char *new_id, struct buf *err)
{
	struct cleanup_client cc;
	struct cleanup_result res;
	struct cleanup_rcpt rcpt = { .addr = req->to, .orcpt = NULL, .notify = 0 };
	struct cleanup_env env = {
		.sender = "",
		.flags = CLEANUP_FLAG_BOUNCE,
		.protocol = "local",
		.rcpts = &rcpt,
		.nrcpts = 1,
	};
	struct buf msg = BUF_INIT;
	long long timeout;
	size_t i;
	int ret = -1;

	new_id[0] = 0;
	cleanup_result_init(&res);
	if (dsn_build(req, &msg, err) < 0)
		goto out;
	if (dsn_has_8bit(&msg))
		env.body = "8BITMIME";
	/* UTF-8 addresses in the notice need SMTPUTF8 on the way out. */
	env.smtputf8 = !dsn_ascii(req->to);
	for (i = 0; i < req->nrcpts; i++)
		if (!dsn_ascii(req->rcpts[i].addr))
			env.smtputf8 = true;
	timeout = cfg_time(P_IPC_TIMEOUT);
	if (timeout > DSN_TIMEOUT)
		timeout = DSN_TIMEOUT;
	if (cleanup_open(&cc, &env, (int)timeout, err) < 0)
		goto out;
	if (cleanup_write(&cc, msg.data, msg.len) < 0) {
		cleanup_abort(&cc);
		buf_strcpy(err, "lost connection with cleanup");
		goto out;
	}
	if (cleanup_finish(&cc, &res) < 0 || res.status != CLEANUP_STAT_OK) {
		buf_reset(err);
		buf_printf(err, "cleanup: %s %s", res.dsn, buf_str(&res.reason));
		goto out;
	}
	if (!qid_valid(res.queue_id)) {
		buf_strcpy(err, "cleanup: no queue ID in the reply");
		goto out;
	}
	memcpy(new_id, res.queue_id, QID_LEN + 1);
	ret = 0;
out:
	cleanup_result_free(&res);
	buf_free(&msg);
	return ret;
}
