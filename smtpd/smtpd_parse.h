/*
 * smtpd_parse - the SMTP command language, as pure functions: split a
 * command line into its verb and argument, parse MAIL FROM and RCPT TO
 * with their ESMTP parameters (RFC 1870 SIZE, RFC 6152 BODY, RFC 3461
 * DSN, RFC 6531 SMTPUTF8, RFC 4954 AUTH), check xtext (RFC 3461 4),
 * (AUTH's base64 and PLAIN are in common/sasl.h).  No I/O and no policy: the session decides
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

/*
 * A reply for a syntax error: "501 5.5.4 Syntax: ...".  text is an array
 * because some replies name the client's parameter ("Unsupported option:
 * X", shown printable and cut short); the struct can be copied freely.
 */
#define SMTPD_REPLY_TEXT_MAX 128
struct smtpd_reply {
	int code;
	const char *dsn;
	char text[SMTPD_REPLY_TEXT_MAX];
	const char *why; /* detail for the log (an address parser's reason), or NULL */
};

struct smtpd_cmd {
	enum smtpd_verb verb;
	const char *name; /* the verb as written, for logs ("MAIL") */
	char *arg;        /* what follows the verb and one space; "" when none */
};

/*
 * Split one command line (CRLF already removed, NUL-terminated, len bytes)
 * into verb and argument.  The verb is 1-16 ASCII letters, case-
 * insensitive, followed by the end or by blanks (spaces/tabs, any number);
 * trailing blanks are cut from the argument.  Returns 0, or -1 with rep
 * set (500 5.5.2): a NUL byte, a CR or LF inside the line, an empty line,
 * or a verb that is not letters only.  Bytes >= 0x80 may appear in the
 * argument.  An unknown verb is not an error here (verb = SMTPD_UNKNOWN,
 * name = the verb as written).  line is modified.
 */
int smtpd_parse_line(char *line, size_t len, struct smtpd_cmd *cmd, struct smtpd_reply *rep);

/* BODY= values */
#define SMTPD_BODY_NONE     0
#define SMTPD_BODY_7BIT     1
#define SMTPD_BODY_8BITMIME 2

struct smtpd_mail_args {
	long long size; /* SIZE=, 0 when absent */
	int body;       /* SMTPD_BODY_* */
	bool smtputf8;
	char *envid; /* ENVID= as received (valid xtext), or NULL */
	char *ret;   /* "FULL" or "HDRS" (upper case), or NULL */
	char *auth;  /* AUTH= as received (valid xtext), or NULL */
};

struct smtpd_rcpt_args {
	int notify;  /* QF_NOTIFY_* bits, 0 when absent */
	char *orcpt; /* ORCPT= as received: "addr-type;xtext", or NULL */
};

/* Parameter-level options for smtpd_parse_mail/rcpt. */
struct smtpd_parse_opts {
	bool smtputf8_ok;   /* SMTPUTF8 offered */
	bool dsn_ok;        /* DSN offered */
	long long size_max; /* SIZE= above this: 552 5.3.4 (0: no limit) */
};

/*
 * "FROM:<addr> [params]" (the argument of MAIL; blanks may follow the
 * colon).  addr gets the external form ("" for <>).  args' strings are
 * malloc'ed (smtpd_mail_args_free).  Returns 0, or -1 with rep set and
 * nothing left allocated in args: 501 5.5.4 for command or parameter
 * syntax (a bad value: "Bad value for SIZE"), 501 5.1.7 for the address
 * (rep->why says what is wrong), 555 5.5.4 for an unknown, not offered or
 * repeated parameter and for BODY=BINARYMIME, 552 5.3.4 for a SIZE over
 * the limit.  Bounds: SIZE 20 digits, ENVID 100 and AUTH 500 characters
 * (ORCPT 500 for RCPT); xtext values are kept undecoded.
 */
int smtpd_parse_mail(const char *arg, const struct smtpd_parse_opts *o, struct buf *addr, struct smtpd_mail_args *args,
    struct smtpd_reply *rep);
void smtpd_mail_args_free(struct smtpd_mail_args *args);

/*
 * "TO:<addr> [params]" (the argument of RCPT); as smtpd_parse_mail, with
 * 501 5.1.3 for the address.  smtputf8: the transaction's MAIL had
 * SMTPUTF8, so the address may be UTF-8.
 */
int smtpd_parse_rcpt(const char *arg, const struct smtpd_parse_opts *o, bool smtputf8, struct buf *addr,
    struct smtpd_rcpt_args *args, struct smtpd_reply *rep);
void smtpd_rcpt_args_free(struct smtpd_rcpt_args *args);

/*
 * RFC 3461 xtext: true when s is valid xtext ("+" followed by two
 * upper-case hex digits, or a char in "!".."~" other than "+" and "=").
 * "" is valid xtext; the parameter parsers refuse empty values themselves.
 */
bool smtpd_xtext_valid(const char *s);
/* Decode xtext into out (replacing it) for display: bytes outside printable ASCII appear as \xhh. -1 for bad xtext. */
int smtpd_xtext_display(const char *s, struct buf *out);

/*
 * "BDAT size [LAST]" (size decimal, at most 2^40; LAST case-insensitive):
 * returns 0 with *size and *last, or -1 with rep (501 5.5.4).
 */
int smtpd_parse_bdat(const char *arg, long long *size, bool *last, struct smtpd_reply *rep);

#endif
