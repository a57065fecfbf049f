/*
 * smtpd - the SMTP server's internal interfaces.
 *
 * smtpd.c          main(): the service description, pre_init (tables,
 *                  TLS keys, resolver: everything that needs files before
 *                  the chroot) and the per-client entry
 * smtpd_session.c  the command loop: replies, pipelining, error limits,
 *                  HELO/EHLO, MAIL, RCPT, RSET, STARTTLS, ...
 * smtpd_data.c     DATA and BDAT: the message stream to cleanup
 * smtpd_check.c    policy: restrictions, access tables, relay control,
 *                  recipient validation
 * smtpd_auth.c     AUTH PLAIN and LOGIN through the auth service
 * smtpd_parse.c    the command language (pure functions)
 */
#ifndef POSTERN_SMTPD_H
#define POSTERN_SMTPD_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

#include "buf.h"
#include "cidr.h"
#include "cleanup_client.h"
#include "dict.h"
#include "qid.h"
#include "resolve.h"
#include "smtpd_parse.h"
#include "stream.h"

enum smtpd_bare_lf { BARE_LF_NO, BARE_LF_NORMALIZE, BARE_LF_REJECT };
enum smtpd_tls_level { TLS_LEVEL_NONE, TLS_LEVEL_MAY, TLS_LEVEL_ENCRYPT };

struct smtpd_restriction; /* smtpd_check.c */

/* Configuration, read once per process (post_init). */
struct smtpd_config {
	const char *myhostname;
	const char *banner;
	const char *mail_name;
	long long message_size_limit;
	long long recipient_limit;
	long long line_limit;
	int timeout;
	int error_sleep;
	long long soft_error_limit, hard_error_limit, junk_limit;
	long long conn_count_limit, conn_rate_limit;
	enum smtpd_bare_lf bare_lf;
	enum smtpd_tls_level tls_level;
	bool tls_wrapper;
	bool tls_auth_only;
	bool sasl_enable;
	bool sasl_header;
	bool helo_required;
	bool reject_unlisted_recipient;
	bool vrfy_disabled;
	bool peername_lookup;
	bool smtputf8;
	int unknown_address_code;
	SSL_CTX *tls_ctx; /* NULL: no TLS */
	struct cidr_list mynetworks;
	struct resolve *resolve;
	struct dict_list *local_rcpt, *relay_rcpt, *valias, *vmailbox, *sender_login;
	const char *recipient_delimiter;
	struct smtpd_restriction *client_r, *helo_r, *sender_r, *relay_r, *recipient_r;
};

extern struct smtpd_config smtpd_cfg;

struct smtpd_rcpt {
	char *addr;
	char *orcpt;
	int notify;
};

/* One client connection. */
struct smtpd_session {
	struct stream *s;
	const char *service; /* master.cf name, for the anvil counters */
	char addr[64];       /* client address, printable */
	struct buf name;     /* client host name, or "unknown" */
	char *helo;          /* NULL before HELO/EHLO */
	bool esmtp;          /* EHLO (pipelining allowed) */
	bool tls;            /* TLS is active */
	char *sasl_user;     /* authenticated login, or NULL */
	const char *sasl_method;
	bool in_mynetworks;
	bool anvil_counted;
	/* transaction */
	bool mail; /* MAIL FROM accepted */
	struct buf sender;
	struct smtpd_mail_args margs;
	struct smtpd_rcpt *rcpts;
	size_t nrcpts, crcpts;
	size_t rcpt_attempts;
	char queue_id[QID_LEN + 1]; /* assigned at the first accepted RCPT */
	bool bdat;                  /* a BDAT transfer is in progress */
	bool bdat_failed;           /* ... and will be rejected at LAST */
	bool bdat_cr;               /* the last BDAT chunk ended in CR */
	int fail_code;              /* the reply a failed BDAT transfer gets */
	const char *fail_dsn, *fail_text;
	long long msg_size;       /* content bytes so far */
	bool too_big;             /* over message_size_limit: discard the rest */
	struct cleanup_client cc; /* open during DATA/BDAT */
	bool cc_open;
	/* counters */
	long long errors;
	long long junk;
	unsigned counts[16]; /* commands per verb, for the disconnect log line */
	unsigned oks[16];    /* ... and how many of them succeeded */
	unsigned ncommands;
	bool quit; /* leave after this reply */
};

/* smtpd_session.c */
void smtpd_session_run(struct smtpd_session *ss);
/* Queue a reply; flushed when the client has nothing pipelined. */
void smtpd_reply(struct smtpd_session *ss, int code, const char *dsn, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void smtpd_flush(struct smtpd_session *ss);
/* An error reply: counts towards the error limits. */
void smtpd_error(struct smtpd_session *ss, int code, const char *dsn, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void smtpd_reset_transaction(struct smtpd_session *ss);
/* "ESMTP", "ESMTPSA", "UTF8SMTPS", ... (RFC 3848, RFC 6531) */
const char *smtpd_protocol_name(const struct smtpd_session *ss);

/* smtpd_data.c */
void smtpd_cmd_data(struct smtpd_session *ss, const char *arg);
void smtpd_cmd_bdat(struct smtpd_session *ss, const char *arg);

/* smtpd_check.c */
int smtpd_check_init(struct buf *err);
bool smtpd_check_changed(void);
/*
 * Decide on one recipient: 0 accept, or -1 with the reply already sent.
 * Runs the restriction lists (client, helo, sender, relay, recipient) and
 * then recipient validation.
 */
int smtpd_check_rcpt(struct smtpd_session *ss, const char *rcpt);
/* VRFY: 0 valid, -1 with the reply sent. */
int smtpd_check_vrfy(struct smtpd_session *ss, const char *rcpt);

/* smtpd_auth.c */
void smtpd_cmd_auth(struct smtpd_session *ss, const char *arg);
bool smtpd_auth_offered(const struct smtpd_session *ss);

#endif
