/*
 * local_msg - the bookkeeping local_resolve.c builds on: delivery results,
 * recipient addresses split into their parts, the bounded scan of the
 * message header for Delivered-To lines (loop detection), the lines
 * prepended to every delivery, and the duplicate filter of one request.
 * Input here is the message, which nobody vouches for: header lines are
 * scanned with a length bound and only Delivered-To values are kept.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "local.h"
#include "log.h"
#include "str.h"
#include "xalloc.h"

/* ---------------------------------------------------------------- results */

void
local_result_init(struct local_result *r)
{
	r->status = DELIVER_DEFERRED;
	strlcpy(r->dsn, "4.3.0", sizeof(r->dsn));
	buf_init(&r->reason, 0);
}

void
local_result_free(struct local_result *r)
{
	buf_free(&r->reason);
}

void
local_result_set(struct local_result *r, enum deliver_status st, const char *dsn, const char *fmt, ...)
{
	va_list ap;

	r->status = st;
	strlcpy(r->dsn, dsn, sizeof(r->dsn));
	buf_reset(&r->reason);
	va_start(ap, fmt);
	buf_vprintf(&r->reason, fmt, ap);
	va_end(ap);
}

/* ---------------------------------------------------------------- addresses */

void
local_addr_split(struct local_addr *a, const char *addr, const char *delim, bool fold)
{
	const char *at = strrchr(addr, '@');
	size_t i;

	a->local = at ? xstrndup(addr, (size_t)(at - addr)) : xstrdup(addr);
	a->domain = str_lower(xstrdup(at ? at + 1 : ""));
	if (fold)
		str_lower(a->local);
	a->user = xstrdup(a->local);
	a->ext = xstrdup("");
	/* user+ext: the first delimiter that is not the first character */
	if (delim != NULL && *delim && a->user[0] != 0 && (i = strcspn(a->user + 1, delim) + 1) < strlen(a->user)) {
		free(a->ext);
		a->ext = xstrdup(a->user + i + 1);
		a->user[i] = 0;
	}
	if (fold)
		a->addr = *a->domain ? xasprintf("%s@%s", a->local, a->domain) : xstrdup(a->local);
	else
		a->addr = xstrdup(addr);
}

void
local_addr_free(struct local_addr *a)
{
	free(a->addr);
	free(a->local);
	free(a->user);
	free(a->ext);
	free(a->domain);
	memset(a, 0, sizeof(*a));
}

/* ---------------------------------------------------------------- the header */

void
local_hdrscan_init(struct local_hdrscan *h)
{
	memset(h, 0, sizeof(*h));
	buf_init(&h->line, 0);
	h->bol = true;
}

/* hdr_line_done - one logical header line is complete: keep a Delivered-To value */
static void
hdr_line_done(struct local_hdrscan *h)
{
	char *v;
	size_t len;

	if (!h->started)
		return;
	h->started = false;
	if (!h->skip && h->line.len > 13 && str_ncasecmp((char *)h->line.data, "delivered-to:", 13) == 0 &&
	    !buf_has_nul(&h->line)) {
		v = str_trim((char *)h->line.data + 13);
		len = strlen(v);
		if (len >= 2 && v[0] == '<' && v[len - 1] == '>') {
			v[len - 1] = 0;
			v = str_trim(v + 1);
		}
		if (*v && h->ndt < LOCAL_DT_MAX) {
			h->dt = xreallocarray(h->dt, h->ndt + 1, sizeof(*h->dt));
			h->dt[h->ndt++] = str_lower(xstrdup(v));
		}
	}
	buf_reset(&h->line);
	h->skip = false;
}

/* hdr_put - add a byte to the logical line, unless it is too long to matter */
static void
hdr_put(struct local_hdrscan *h, int c)
{
	if (h->skip)
		return;
	if (h->line.len >= LOCAL_HDR_LINE_MAX) {
		h->skip = true;
		buf_reset(&h->line);
		return;
	}
	buf_putc(&h->line, c);
}

bool
local_hdrscan_feed(struct local_hdrscan *h, const unsigned char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n && !h->done; i++) {
		int c = p[i];

		if (h->bol) {
			h->bol = c == '\n';
			if (c == '\n') {
				/* The empty line: the header ends here. */
				hdr_line_done(h);
				h->done = true;
			} else if (c == ' ' || c == '\t') {
				if (h->started)
					hdr_put(h, c); /* a folded continuation */
			} else {
				hdr_line_done(h);
				h->started = true;
				hdr_put(h, c);
			}
			continue;
		}
		if (c == '\n')
			h->bol = true;
		else if (h->started)
			hdr_put(h, c);
	}
	return h->done;
}

void
local_hdrscan_end(struct local_hdrscan *h)
{
	hdr_line_done(h);
	h->done = true;
}

void
local_hdrscan_free(struct local_hdrscan *h)
{
	size_t i;

	for (i = 0; i < h->ndt; i++)
		free(h->dt[i]);
	free(h->dt);
	buf_free(&h->line);
	memset(h, 0, sizeof(*h));
}

bool
local_dt_match(char *const *dt, size_t ndt, const char *addr)
{
	char *want = xstrdup(addr), *v = want;
	size_t len = strlen(v), i;
	bool found = false;

	if (len >= 2 && v[0] == '<' && v[len - 1] == '>') {
		v[len - 1] = 0;
		v++;
	}
	str_lower(v);
	for (i = 0; i < ndt && !found; i++)
		found = strcmp(dt[i], v) == 0;
	free(want);
	return found;
}

void
local_hdr_value(struct buf *out, const char *s)
{
	for (; *s; s++)
		buf_putc(out, (unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s);
}

void
local_msg_prepend(const struct local_msg *m, const char *rcpt, struct buf *out)
{
	buf_puts(out, "Return-Path: <");
	local_hdr_value(out, m->sender);
	buf_puts(out, ">\nDelivered-To: ");
	local_hdr_value(out, rcpt);
	buf_putc(out, '\n');
}

int
local_msg_content(
    const struct local_msg *m, int (*fn)(void *arg, const unsigned char *p, size_t n), void *arg, struct buf *err)
{
	struct buf chunk = BUF_INIT;
	off_t pos = m->content_offset;
	int r, rc = 0;

	while ((r = qfile_content_next(m->fd, &pos, &chunk, err)) > 0) {
		if (fn(arg, chunk.data, chunk.len) != 0) {
			rc = 1;
			break;
		}
	}
	if (r < 0)
		rc = -1;
	buf_free(&chunk);
	return rc;
}

/* local_msg_scan_header - collect the Delivered-To lines of the message */
int
local_msg_scan_header(struct local_msg *m, struct buf *err)
{
	struct local_hdrscan h;
	struct buf chunk = BUF_INIT;
	off_t pos = m->content_offset;
	int r;

	local_hdrscan_init(&h);
	while ((r = qfile_content_next(m->fd, &pos, &chunk, err)) > 0)
		if (local_hdrscan_feed(&h, chunk.data, chunk.len))
			break;
	local_hdrscan_end(&h);
	buf_free(&chunk);
	m->dt = h.dt;
	m->ndt = h.ndt;
	h.dt = NULL;
	h.ndt = 0;
	local_hdrscan_free(&h);
	return r < 0 ? -1 : 0;
}

/* ---------------------------------------------------------------- duplicates */

/* An open-addressing set of strings, at most limit of them. */
struct local_dup {
	char **slot;
	size_t cap; /* a power of two */
	size_t n;
	size_t limit;
};

static size_t
dup_hash(const char *s)
{
	size_t h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

struct local_dup *
local_dup_new(size_t limit)
{
	struct local_dup *d = xcalloc(1, sizeof(*d));

	d->limit = limit;
	return d;
}

bool
local_dup_seen(struct local_dup *d, const char *key)
{
	size_t i;

	if (d->cap == 0)
		return false;
	for (i = dup_hash(key) & (d->cap - 1); d->slot[i] != NULL; i = (i + 1) & (d->cap - 1))
		if (strcmp(d->slot[i], key) == 0)
			return true;
	return false;
}

void
local_dup_add(struct local_dup *d, const char *key)
{
	size_t i, j;

	if (d->n >= d->limit || local_dup_seen(d, key))
		return;
	if ((d->n + 1) * 2 > d->cap) {
		size_t ncap = d->cap ? d->cap * 2 : 64;
		char **ns = xcalloc(ncap, sizeof(*ns));

		for (j = 0; j < d->cap; j++) {
			if (d->slot[j] == NULL)
				continue;
			for (i = dup_hash(d->slot[j]) & (ncap - 1); ns[i] != NULL; i = (i + 1) & (ncap - 1))
				;
			ns[i] = d->slot[j];
		}
		free(d->slot);
		d->slot = ns;
		d->cap = ncap;
	}
	for (i = dup_hash(key) & (d->cap - 1); d->slot[i] != NULL; i = (i + 1) & (d->cap - 1))
		;
	d->slot[i] = xstrdup(key);
	d->n++;
}

void
local_dup_free(struct local_dup *d)
{
	size_t i;

	if (d == NULL)
		return;
	for (i = 0; i < d->cap; i++)
		free(d->slot[i]);
	free(d->slot);
	free(d);
}
