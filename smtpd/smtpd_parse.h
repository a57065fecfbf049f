/*
 * smtpd_parse - the SMTP command language, as pure functions: split a
 * command line into its verb and argument, parse MAIL FROM and RCPT TO
 * with their ESMTP parameters (RFC 1870 SIZE, RFC 6152 BODY, RFC 3461
 * DSN, RFC 6531 SMTPUTF8, RFC 4954 AUTH), check xtext (RFC 3461 4),
 * and decode AUTH's base64.  No I/O and no policy: the session decides
 * what to do with the result.  Every error comes back as a complete
 * reply (code, enhanced status code, text).
 */
#ifndef POSTERN_SMTPD_PARSE_H
#define POSTERN_SMTPD_PARSE_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

enum smtpd_verb {
	SMTPD_UNKNOWN,
	SMTPD_HELO,
	SMTPD_EHLO,
	SMTPD_MAIL,
	SMTPD_RCPT,
	SMTPD_DATA,
	SMTPD_BDAT,
	SMTPD_RSET,
	SMTPD_NOOP,
	SMTPD_QUIT,
	SMTPD_VRFY,
	SMTPD_EXPN,
	SMTPD_HELP,
	SMTPD_STARTTLS,
	SMTPD_AUTH,
};

/* A reply for a syntax error: "501 5.5.4 Syntax: ..." */
struct smtpd_reply {
	int code;
	const char *dsn;
	const char *text;
};

struct smtpd_cmd {
	enum smtpd_verb verb;
	const char *name; /* the verb as written, for logs ("MAIL") */
	char *arg;        /* what follows the verb and one space; "" when none */
};

/*
 * Split one command line (CRLF already removed, NUL-terminated, len bytes)
 * into verb and argument.  Verbs are case-insensitive.  Returns 0, or -1
 * with rep set: a NUL byte, a bare CR or LF inside the line, or non-ASCII
 * bytes in the verb (500 5.5.2).  An unknown verb is not an error here
 * (verb = SMTPD_UNKNOWN).  line is modified.
 */
int smtpd_parse_line(char *line, size_t len, struct smtpd_cmd *cmd, struct smtpd_reply *rep);

/* BODY= values */
#define SMTPD_BODY_NONE 0
#define SMTPD_BODY_7BIT 1
#define SMTPD_BODY_8BITMIME 2

struct smtpd_mail_args {
	long long size;   /* SIZE=, 0 when absent */
	int body;         /* SMTPD_BODY_* */
	bool smtputf8;
	char *envid;      /* ENVID= as received (valid xtext), or NULL */
	char *ret;        /* "FULL" or "HDRS" (upper case), or NULL */
	char *auth;       /* AUTH= as received (valid xtext), or NULL */
};

struct smtpd_rcpt_args {
	int notify;       /* QF_NOTIFY_* bits, 0 when absent */
	char *orcpt;      /* ORCPT= as received: "addr-type;xtext", or NULL */
};

/* Parameter-level options for smtpd_parse_mail/rcpt. */
struct smtpd_parse_opts {
	bool smtputf8_ok;      /* SMTPUTF8 offered */
	bool dsn_ok;           /* DSN offered */
	long long size_max;    /* SIZE= above this: 552 5.3.4 (0: no limit) */
};

/*
 * "FROM:<addr> [params]" (the argument of MAIL).  addr gets the external
 * form ("" for <>).  args' strings are malloc'ed (smtpd_mail_args_free).
 * Returns 0, or -1 with rep set (501 for syntax, 555 5.5.4 for an
 * unknown or repeated parameter, 552 5.3.4 for a SIZE over the limit).
 */
int smtpd_parse_mail(const char *arg, const struct smtpd_parse_opts *o, struct buf *addr, struct smtpd_mail_args *args,
    struct smtpd_reply *rep);
void smtpd_mail_args_free(struct smtpd_mail_args *args);

/* "TO:<addr> [params]" (the argument of RCPT); as smtpd_parse_mail. */
int smtpd_parse_rcpt(const char *arg, const struct smtpd_parse_opts *o, bool smtputf8, struct buf *addr,
    struct smtpd_rcpt_args *args, struct smtpd_reply *rep);
void smtpd_rcpt_args_free(struct smtpd_rcpt_args *args);

/* RFC 3461 xtext: true when s is valid xtext ("+" followed by two upper-case hex digits, or a printable char). */
bool smtpd_xtext_valid(const char *s);
/* Decode xtext for display: bytes outside printable ASCII appear as \xHH. Returns -1 for bad xtext. */
int smtpd_xtext_display(const char *s, struct buf *out);

/*
 * "BDAT size [LAST]": returns 0 with *size and *last, or -1 with rep
 * (501 5.5.4).
 */
int smtpd_parse_bdat(const char *arg, long long *size, bool *last, struct smtpd_reply *rep);

/* Base64 (RFC 4648) decode for AUTH; "=" alone means empty.  -1 on bad input or over max bytes. */
int smtpd_base64_decode(const char *in, struct buf *out, size_t max);
void smtpd_base64_encode(const unsigned char *in, size_t len, struct buf *out);

#endif
