/*
 * maildrop - the stream sendmail writes to postdrop: the queue file's own
 * record framing (qfile.h: type byte, varint length, payload), with
 *
 *   S  sender (empty: <>)                  once, first
 *   A  "name=value" (MAILDROP_ATTRS only)  any number
 *   R  recipient                           at least one
 *   C  content chunk (LF line ends)        any number
 *   E  end                                 last
 *
 * postdrop trusts none of it: every record is bounded, the order is
 * enforced, and it writes a fresh queue file of its own.  pickup then
 * treats the maildrop file as untrusted input again.
 */
#ifndef POSTERN_MAILDROP_H
#define POSTERN_MAILDROP_H

#include <stddef.h>

#include "buf.h"
#include "stream.h"

/* Attributes a local submitter may set. */
#define MAILDROP_ATTRS     "body", "envid", "ret", "notify", "full_name"
#define MAILDROP_VALUE_MAX 1024
#define MAILDROP_RCPT_MAX  10000

/* Append one record to out. */
void maildrop_put(struct buf *out, int type, const void *data, size_t len);
/*
 * Read one record: *type and its payload in data (at most max bytes).
 * Returns 0, or a negative stream status, or -100 for a malformed or
 * oversized record.
 */
int maildrop_get(struct stream *s, int *type, struct buf *data, size_t max);

#endif
