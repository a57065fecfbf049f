/*
 * addr - mail addresses as SMTP carries them (RFC 5321 section 4.1.2,
 * RFC 6531 for UTF-8).
 *
 * The external form is what Postern stores and passes on: the mailbox as
 * the client wrote it, without angle brackets and without a source route
 * ("@a,@b:" is dropped, as RFC 5321 section 4.1.1.3 asks), with a quoted
 * local part kept quoted and the domain folded to lower case.  The
 * unquoted local part is what lookups use ("john doe" for
 * "\"john doe\"@example.com").  Shell, template and header metacharacters
 * in a valid address are plain data everywhere: nothing here or later
 * interprets them.
 */
#ifndef POSTERN_ADDR_H
#define POSTERN_ADDR_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

#define ADDR_LOCAL_MAX  64  /* RFC 5321 4.5.3.1.1 (enforced unless ADDR_LONG_LOCAL) */
#define ADDR_DOMAIN_MAX 255 /* RFC 5321 4.5.3.1.2 */
#define ADDR_PATH_MAX   512 /* more than RFC 5321's 256 for quoted local parts */

/* addr_parse_path() flags */
#define ADDR_NULL_OK    0x01 /* "<>" is acceptable (MAIL FROM) */
#define ADDR_UTF8       0x02 /* SMTPUTF8: UTF-8 in local part and domain */
#define ADDR_BARE_OK    0x04 /* accept a path without angle brackets */
#define ADDR_LOCAL_OK   0x08 /* accept "postmaster" (no domain), RCPT TO:<postmaster> */
#define ADDR_LONG_LOCAL 0x10 /* do not enforce ADDR_LOCAL_MAX */

/*
 * Parse a reverse-path or forward-path at the start of s: "<addr>",
 * "<>", "<@relay:addr>", or (ADDR_BARE_OK) addr up to the first space
 * outside quotes.  On success out holds the external form ("" for the
 * null path), *end points just past the path (the caller checks what
 * follows), and 0 is returned; otherwise -1 and *why is a short reason
 * fit for a 501 reply.  An empty local part ("" quoted included) is
 * refused; lengths are counted in bytes as written.
 */
int addr_parse_path(const char *s, int flags, struct buf *out, const char **end, const char **why);

/* Is this a valid domain (LDH labels, or an address literal [IPv4] / [IPv6:...])? */
bool addr_domain_valid(const char *domain, bool utf8);
/* Is this domain an address literal "[...]"? */
bool addr_is_literal(const char *domain);
/* Does the domain have a dot inside it (a fully qualified name)?  Address literals count as qualified. */
bool addr_domain_fqdn(const char *domain);

/*
 * Split an external-form address at its last '@' outside quotes: local
 * gets the unquoted local part, domain the domain folded to lower case
 * ("" when there is none).  Returns 0, or -1 for a malformed address
 * (unbalanced quotes, text beside a quoted local part, nothing before or
 * after the '@').
 */
int addr_split(const char *addr, struct buf *local, struct buf *domain);
/* The domain part (pointer into addr, after the last '@' outside quotes), or NULL. */
const char *addr_domain(const char *addr);

/*
 * Build an external-form address from an unquoted local part and a
 * domain (into out, replacing it), quoting the local part when it is not
 * a dot-atom (UTF-8 counts as atext), with a backslash before each
 * backslash and double quote.  No "@" when domain is ""; both "" give ""
 * (the null address).
 */
void addr_join(struct buf *out, const char *local, const char *domain);

/* Copy s into out (replacing it) with every byte outside printable ASCII shown as \xhh (for logs and replies). */
void addr_printable(struct buf *out, const char *s, size_t len);

#endif
