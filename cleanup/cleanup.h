/*
 * cleanup - the only writer of queue files: the parts that the daemon
 * (cleanup.c) and the unit tests share.
 *
 *   cleanup_envelope.c  envelope addresses: canonical_maps and
 *                       virtual_alias_maps rewriting, duplicate removal
 *   cleanup_message.c   the content: a state machine fed with chunks that
 *                       checks and completes the header and passes every
 *                       byte on to be stored
 *
 * Neither module touches a socket or the queue: they take input, give
 * back bytes or addresses, and say what went wrong in a cleanup_status
 * that becomes the reply to the client (doc/ipc.md 8.1).
 */
#ifndef POSTERN_CLEANUP_H
#define POSTERN_CLEANUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"
#include "cleanup_client.h"
#include "dict.h"
#include "qid.h"

/* Every recipient of one message, after alias expansion. */
#define CLEANUP_EXPANDED_MAX 1000000

/*
 * What became of a message: status 0 (queued), 4 (try again) or 5 (never),
 * the RFC 3463 code and a reason.  The first failure set sticks.
 */
struct cleanup_status {
	int status;
	const char *dsn; /* a string constant */
	struct buf reason;
};

void cleanup_status_init(struct cleanup_status *st);
void cleanup_status_free(struct cleanup_status *st);
/* Record a failure unless one is recorded already; returns -1. */
int cleanup_status_set(struct cleanup_status *st, int status, const char *dsn, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * Envelope rewriting (cleanup_envelope.c).  A key "user@domain" is looked
 * up as "user@domain", then (with recipient_delimiter) "user@domain"
 * without the extension, then "user" and "user" without the extension
 * when the domain is one of local_domains, then "@domain".
 */
struct cleanup_rewrite {
	struct dict_list *canonical;           /* canonical_maps */
	struct dict_list *sender_canonical;    /* sender_canonical_maps */
	struct dict_list *recipient_canonical; /* recipient_canonical_maps */
	struct dict_list *virtual_alias;       /* virtual_alias_maps */
	char **local_domains;                  /* mydestination and myorigin, lower case */
	size_t nlocal;
	char *myorigin;   /* appended to addresses without a domain */
	char *delimiters; /* recipient_delimiter, "" for none */
	long recursion_limit;
	long expansion_limit;
};

/*
 * Open the four table lists (each may be "" for none) and take the
 * settings; returns 0, or -1 with err set for a malformed table spec.  A
 * table that cannot be read is not an error here: its lookups answer
 * try-again, and the mail using it waits.
 */
int cleanup_rewrite_open(struct cleanup_rewrite *rw, const char *canonical, const char *sender_canonical,
    const char *recipient_canonical, const char *virtual_alias, struct buf *err);
/* Domains for "user" keys (a main.cf list such as mydestination) and myorigin. */
void cleanup_rewrite_local(struct cleanup_rewrite *rw, const char *mydestination, const char *myorigin);
void cleanup_rewrite_close(struct cleanup_rewrite *rw);

/*
 * The minimal check every stored address passes: 1 to 1023 bytes, no
 * control character, no angle brackets around it.  (smtpd has parsed it
 * fully; this guards the queue file against other clients and tables.)
 */
bool cleanup_addr_ok(const char *addr);

/* A recipient as it goes into the queue file. */
struct cleanup_rcpt_out {
	char *addr;
	char *orcpt; /* or NULL */
	int notify;
};

struct cleanup_rcpts {
	struct cleanup_rcpt_out *v;
	size_t n, cap;
	/* Duplicate detection: open addressing over v's indexes + 1. */
	size_t *slots;
	size_t nslots;
};

void cleanup_rcpts_init(struct cleanup_rcpts *l);
void cleanup_rcpts_free(struct cleanup_rcpts *l);

/*
 * The sender after sender_canonical_maps and canonical_maps ("" stays
 * ""): into out, 0; or -1 with st set (a table asked us to try again).
 */
int cleanup_rewrite_sender(struct cleanup_rewrite *rw, const char *sender, struct buf *out, struct cleanup_status *st);
/*
 * One envelope recipient: recipient_canonical_maps, canonical_maps, then
 * (unless no_alias) virtual_alias_maps, recursively; each result not
 * already in l is appended.  A recipient that changed keeps its ORCPT,
 * or gets "rfc822;" plus the original address (RFC 3461) when it had
 * none.  Returns 0, or -1 with st set: 4.3.0 for a table that asks us to
 * try again or an expansion over its limits, 5.5.3 for too many
 * recipients in all.
 */
int cleanup_rewrite_rcpt(struct cleanup_rewrite *rw, struct cleanup_rcpts *l, const char *addr, const char *orcpt,
    int notify, bool no_alias, struct cleanup_status *st);

/* RFC 3461 xtext of s appended to out ("utf-8;" form per RFC 6533 is the caller's choice). */
void cleanup_xtext(struct buf *out, const char *s);
/* "rfc822;" + xtext, or "utf-8;" + RFC 6533 utf-8-addr-xtext when addr has 8-bit bytes. */
void cleanup_orcpt_of(struct buf *out, const char *addr);

/*
 * The content (cleanup_message.c).  Feed it the message in chunks of
 * any size; it passes every byte on through out() unchanged, except that
 * it appends missing header fields at the end of the header and a final
 * newline when the last line has none.  The header section is the lines
 * up to the first empty line; a line that is neither a header field nor
 * a continuation of one ends it too and starts the body (and when fields
 * were added before such a line, an empty line goes between them).
 */
struct cleanup_msg_conf {
	uint64_t message_size_limit; /* content bytes from the client; 0 = none */
	size_t header_size_limit;    /* bytes of the header section */
	int hopcount_limit;          /* Received: fields */
	bool add_missing;            /* add Message-ID, Date, From when missing */
	const char *myhostname;
	const char *queue_id;
	const char *sender; /* for From: ("" = MAILER-DAEMON@myhostname) */
	time_t now;         /* for Date:; 0 = time(NULL) */
};

/* Where the bytes to store go: 0, or -1 (st says why: a queue file write error). */
typedef int (*cleanup_out_fn)(void *arg, const unsigned char *p, size_t n);

#define CLEANUP_NAME_MAX  998 /* longest field name (RFC 5322 line length) */
#define CLEANUP_MSGID_MAX 998 /* longest Message-ID value kept for the log */

struct cleanup_msg {
	struct cleanup_msg_conf conf;
	cleanup_out_fn out;
	void *arg;
	int state;
	int field;       /* the current header field (CM_F_*) */
	struct buf pend; /* start of a line not yet known to be a field */
	size_t name_len; /* bytes of the field name in pend */
	bool have_field; /* a field was seen: a white-space line continues it */
	bool failed;
	bool seen_msgid, seen_date, seen_from;
	struct buf msgid;   /* the (first) Message-ID value, for the log */
	uint64_t in_bytes;  /* content bytes from the client */
	uint64_t out_bytes; /* bytes passed to out() */
	size_t header_bytes;
	int received;   /* Received: fields */
	uint64_t lines; /* lines stored (the last one counts even without its newline) */
	int last;       /* last byte stored, or -1 */
};

void cleanup_msg_init(struct cleanup_msg *m, const struct cleanup_msg_conf *conf, cleanup_out_fn out, void *arg);
/* Returns 0, or -1 with st set; after a failure further input is ignored (-1). */
int cleanup_msg_feed(struct cleanup_msg *m, const unsigned char *p, size_t n, struct cleanup_status *st);
/* End of the content: finish the header, the last line. 0 or -1. */
int cleanup_msg_finish(struct cleanup_msg *m, struct cleanup_status *st);
/* The Message-ID for the log, trimmed and printable, or "" (after finish). */
const char *cleanup_msg_id(struct cleanup_msg *m);
void cleanup_msg_free(struct cleanup_msg *m);

#endif
