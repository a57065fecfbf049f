/*
 * sendmail - the sendmail-compatible front (sendmail.c) and its header
 * helpers (sendmail_hdr.c), which unit tests link directly.
 */
#ifndef POSTERN_SENDMAIL_H
#define POSTERN_SENDMAIL_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

/*
 * The header section of a message as read from stdin (LF line ends).
 * sendmail_extract() appends to rcpts the addresses of the To:, Cc: and
 * Bcc: fields (Resent-To:, Resent-Cc:, Resent-Bcc: instead when any
 * Resent- field is present), one NUL-terminated address after another,
 * and copies the header to out without the Bcc (or Resent-Bcc) fields.
 * Returns the number of addresses found.
 */
size_t sendmail_extract(const char *header, size_t len, struct buf *out, struct buf *rcpts);

/*
 * The addresses of one RFC 5322 address list ("A <a@x>, b@y, grp: c@z;"),
 * comments and display names removed, one NUL-terminated address after
 * another in out.  Returns how many.
 */
size_t sendmail_addresses(const char *value, struct buf *out);

#endif
