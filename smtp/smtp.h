/*
 * smtp - the outbound SMTP client's modules (see smtp(8)).
 *
 *   smtp.c          main: the service description and the request loop
 *   smtp_deliver.c  one delivery request: the message, the plan, the
 *                   sessions, one status per recipient; configuration
 *   smtp_addr.c     next hop -> mail exchangers -> addresses (DNS)
 *   smtp_connect.c  TCP connect, greeting, EHLO/HELO, STARTTLS, AUTH, QUIT
 *   smtp_reply.c    reading and parsing server replies; reasons
 *   smtp_trans.c    one mail transaction: MAIL, RCPT, DATA, pipelining
 *   smtp_content.c  the content on the wire: CRLF, dot-stuffing, long lines
 *   smtp_mime.c     8-bit MIME downgrade to quoted-printable / base64
 *   smtp_policy.c   per-destination TLS levels and AUTH credentials
 *
 * Trust: qmgr is trusted to name recipients and pass the queue file; the
 * queue file is read with bounds; DNS answers and everything a server
 * says are hostile: every reply line, reply and wait is bounded, and a
 * reply's text reaches logs and DSNs only as bounded printable text.
 */
#ifndef POSTERN_SMTP_H
#define POSTERN_SMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/ssl.h>

#include "buf.h"
#include "deliver.h"
#include "dict.h"
#include "dns.h"
#include "qfile.h"
#include "stream.h"

#define SMTP_PORT            25
#define SMTP_REPLY_LINE_MAX  2048               /* bytes of one reply line we keep; the rest of it is skipped */
#define SMTP_REPLY_SKIP_MAX  65536              /* bytes of one over-long line we skip before giving up */
#define SMTP_REPLY_LINES_MAX 200                /* lines of one multi-line reply */
#define SMTP_REPLY_TEXT_MAX  2000               /* bytes of a reply kept for logs and DSNs */
#define SMTP_PIPELINE_BATCH  100                /* RCPT commands sent before their replies are read */
#define SMTP_DOWNGRADE_MAX   (64 * 1024 * 1024) /* largest message converted for a 7-bit server */
#define SMTP_MIME_DEPTH_MAX  20                 /* nesting of multiparts the converter follows */
#define SMTP_MIME_HEADER_MAX (1024 * 1024)      /* one header section the converter reads */
#define SMTP_REUSE_WAIT      60                 /* seconds to wait for qmgr's next request on a kept session */
#define SMTP_RELAY_MAX       (DNS_NAME_MAX + 1 + 64 + 16)

enum smtp_tls_level {
	SMTP_TLS_NONE,
	SMTP_TLS_MAY,
	SMTP_TLS_ENCRYPT,
	SMTP_TLS_VERIFY,
};

enum smtp_addr_pref {
	SMTP_PREF_ANY,
	SMTP_PREF_IPV4,
	SMTP_PREF_IPV6,
};

/* main.cf, read once per process before the chroot. */
struct smtp_conf {
	const char *helo_name;
	const char *myhostname;
	int connect_timeout, helo_timeout, mail_timeout, rcpt_timeout, rset_timeout, quit_timeout;
	int data_init_timeout, data_xfer_timeout, data_done_timeout, starttls_timeout;
	int ipc_timeout;
	long long reuse_limit;
	long long mx_address_limit, mx_session_limit;
	int line_limit;
	enum smtp_addr_pref pref;
	bool use_v4, use_v6;
	enum smtp_tls_level tls_level;
	bool sasl_enable, sasl_tls_only;
	SSL_CTX *tls_ctx;
	struct dict_list *tls_policy;  /* NULL when smtp_tls_policy_maps is empty */
	struct dict_list *sasl_passwd; /* NULL unless AUTH is on and tables are set */
};
extern struct smtp_conf smtp_conf;

/* Read the configuration, open tables, make the TLS context; -1 with err. */
int smtp_init(struct buf *err);
/* True when a table changed since it was opened (the process should exit after its client). */
bool smtp_tables_changed(void);

/* ---------------------------------------------------------------- next hop and addresses */

struct smtp_nexthop {
	char host[DNS_NAME_MAX + 1]; /* domain or host, lower case, no brackets, no trailing dot */
	int port;
	bool mx;      /* look up MX records: the next hop had no [brackets] */
	bool literal; /* host is an IPv4 or IPv6 address */
};

/*
 * "domain", "domain:port", "[host]", "[host]:port", "[192.0.2.1]",
 * "[ipv6:2001:db8::1]:25" (also without "ipv6:").  -1 with err.
 */
int smtp_nexthop_parse(const char *text, struct smtp_nexthop *nh, struct buf *err);

/* One address to try, and the host name it belongs to. */
struct smtp_target {
	char host[DNS_NAME_MAX + 1];
	struct dns_addr addr;
	int port;
};

/* Where a delivery goes: the addresses in the order to try them, or why there are none. */
struct smtp_plan {
	struct smtp_target *v;
	size_t n;
	enum deliver_status fail; /* when n == 0: deferred or bounced */
	char dsn[16];
	struct buf why;
};
/*
 * Resolve a next hop: MX records (sorted, random among equals; implicit
 * MX; null MX: bounce 5.1.10; NXDOMAIN: bounce 5.4.4; server failure:
 * defer 4.4.3), then A/AAAA of each exchanger as inet_protocols and
 * smtp_address_preference say, at most smtp_mx_address_limit addresses.
 * Exchangers named myhostname, and those after them, are dropped (mail
 * would loop: 5.4.6 when nothing is left).
 */
void smtp_plan_make(const struct smtp_nexthop *nh, struct smtp_plan *plan);
void smtp_plan_free(struct smtp_plan *plan);
/* Order the addresses of one host: preferred family first (any: random). */
void smtp_addr_order(struct dns_addr *v, size_t n, enum smtp_addr_pref pref);

/* ---------------------------------------------------------------- replies */

#define SMTP_FEAT_ESMTP      0x0001
#define SMTP_FEAT_PIPELINING 0x0002
#define SMTP_FEAT_SIZE       0x0004
#define SMTP_FEAT_8BITMIME   0x0008
#define SMTP_FEAT_SMTPUTF8   0x0010
#define SMTP_FEAT_DSN        0x0020
#define SMTP_FEAT_STARTTLS   0x0040
#define SMTP_FEAT_AUTH       0x0080

#define SMTP_AUTH_PLAIN 0x01
#define SMTP_AUTH_LOGIN 0x02

struct smtp_reply {
	int code;         /* 200..599 */
	char dsn[16];     /* the reply's enhanced status code, or one made from the code */
	struct buf text;  /* "250 2.0.0 Ok" lines joined with spaces, printable, bounded */
	struct buf lines; /* each line's text after the code and separator, '\n' after each (EHLO) */
};

void smtp_reply_init(struct smtp_reply *r);
void smtp_reply_free(struct smtp_reply *r);
/*
 * Read one reply, its lines bounded by SMTP_REPLY_LINE_MAX and
 * SMTP_REPLY_LINES_MAX, the whole of it by the stream's deadline.
 * STREAM_OK, a stream status (EOF, timeout, error), or STREAM_TOOLONG
 * for a reply that breaks the syntax or the limits (why says how).
 */
int smtp_reply_read(struct stream *s, struct smtp_reply *r, struct buf *why);
/*
 * One reply line (without CRLF): its code, whether it is the last line,
 * and where its text starts.  -1 when it is not "ddd", "ddd text" or
 * "ddd-text" with ddd in 200..599.
 */
int smtp_reply_parse_line(const char *line, size_t len, int *code, bool *last, size_t *text_off);
/* An enhanced status code "c.d.d" at the start of text with class c: its length, else 0. */
size_t smtp_dsn_prefix(const char *text, int cls);
/* EHLO keywords -> SMTP_FEAT_* (and SIZE's value, AUTH's mechanisms). */
unsigned smtp_ehlo_parse(const char *lines, long long *size_max, unsigned *auth_mechs);

/* ---------------------------------------------------------------- sessions */

struct smtp_session {
	struct stream *s;
	char host[DNS_NAME_MAX + 1];
	char addr[64];
	int port;
	char relay[SMTP_RELAY_MAX]; /* "host[addr]:port" */
	char *nexthop;              /* the next hop it serves (for reuse) */
	unsigned features;
	long long size_max;
	unsigned auth_mechs;
	bool tls, trusted;
	int count;   /* transactions started */
	bool broken; /* no further command may be sent */
	bool secret; /* commands carry credentials: never logged */
};

/* Why a session could not be used, and what that means for the mail. */
struct smtp_fail {
	enum deliver_status status; /* deferred or bounced */
	char dsn[16];
	struct buf why;
	bool reached;               /* a server answered (the destination is not unreachable) */
	char relay[SMTP_RELAY_MAX]; /* the server that failed us, or "none" */
};

/* Per-request settings that come from policy lookups. */
struct smtp_sess_opts {
	enum smtp_tls_level tls;
	const char *nexthop; /* the request's next hop (credentials lookup) */
	bool no_starttls;    /* the plaintext retry after a failed "may" handshake */
};

/*
 * Connect to t and bring the session to the point where MAIL may be
 * sent: greeting, EHLO (HELO when refused), STARTTLS as the TLS level
 * asks, AUTH when credentials exist.  NULL with f filled when that fails
 * (the session is closed); *tls_failed tells the caller that a "may"
 * handshake failed, so the same address may be tried in plaintext.
 */
struct smtp_session *smtp_session_open(
    const struct smtp_target *t, const struct smtp_sess_opts *o, struct smtp_fail *f, bool *tls_failed);
/* QUIT (when still usable) and close. */
void smtp_session_close(struct smtp_session *ss);
/* RSET before another transaction; false when the session is gone. */
bool smtp_session_rset(struct smtp_session *ss);
/* Queue one command line (CRLF added) without sending it yet (pipelining). */
void smtp_send(struct smtp_session *ss, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Send what is queued and read one reply within timeout; STREAM_OK or a failure status (the session is then broken). */
int smtp_read(struct smtp_session *ss, int timeout, struct smtp_reply *r, struct buf *why);
/*
 * Send one command line (CRLF added) and read its reply within timeout;
 * STREAM_OK or a failure status (the session is then broken).
 */
int smtp_command(struct smtp_session *ss, int timeout, struct smtp_reply *r, struct buf *why, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* "lost connection with host[addr] while STAGE" / "conversation ... timed out while STAGE" into why. */
void smtp_io_reason(const struct smtp_session *ss, int status, const char *stage, struct buf *why);
/* "host NAME[ADDR] said: REPLY (in reply to STAGE)" into why. */
void smtp_said(const struct smtp_session *ss, const struct smtp_reply *r, const char *stage, struct buf *why);

/* ---------------------------------------------------------------- policy */

/* The TLS level for a next hop (smtp_tls_policy_maps, else the default); -1 with why on a lookup failure. */
int smtp_tls_policy(const char *nexthop, const struct smtp_nexthop *nh, enum smtp_tls_level *level, struct buf *why);
/* "none", "may", "encrypt", "verify" ("secure" reads as verify); -1 for anything else. */
int smtp_tls_level_parse(const char *word, enum smtp_tls_level *level);
/* Credentials for a next hop or host: 1 found (user and password set), 0 none, -1 try again. */
int smtp_sasl_lookup(const char *nexthop, const char *host, struct buf *user, struct buf *pass);

/* ---------------------------------------------------------------- the message */

/* What the transaction needs to know about the message, from the queue file. */
struct smtp_msg {
	const struct deliver_request *req;
	int fd;
	off_t content_offset;
	uint64_t content_size;
	const char *envid; /* xtext, or NULL */
	const char *ret;   /* FULL or HDRS, or NULL */
	bool smtputf8;     /* the message was received with SMTPUTF8 */
	bool need_utf8;    /* ...and an address or header holds UTF-8: the server must offer SMTPUTF8 */
	bool has_8bit;     /* some content byte has the high bit set */
	bool hdr_8bit;     /* in the top-level header section */
	uint64_t wire_size;
	/* The converted content for servers without 8BITMIME (made once). */
	bool converted;
	int convert_rc; /* 0 done, -1 not convertible */
	struct buf seven;
	struct buf convert_why;
};

/* Scan the content: 8-bit bytes, size on the wire.  -1 with err when it cannot be read. */
int smtp_msg_scan(struct smtp_msg *m, struct buf *err);

/* The state of one recipient in this request. */
struct smtp_rcpt {
	const struct deliver_rcpt *r;
	bool final;    /* has its outcome */
	bool accepted; /* RCPT said 2xx in the current transaction */
	enum deliver_status status;
	char dsn[16];
	struct buf reason;
	char relay[SMTP_RELAY_MAX];
};

enum smtp_tx_result {
	SMTP_TX_DONE, /* every recipient has its outcome */
	SMTP_TX_NEXT, /* the session failed before anything was delivered: try another server for the rest */
};

/* One transaction over ss for the recipients without an outcome; sets ss->broken when the session is over. */
enum smtp_tx_result smtp_trans(
    struct smtp_session *ss, struct smtp_msg *m, struct smtp_rcpt *v, size_t n, struct smtp_fail *f);
/* Give a recipient its outcome. */
void smtp_rcpt_set(struct smtp_rcpt *r, enum deliver_status st, const char *dsn, const char *relay, const char *reason);

/* One delivery request; *cache is the kept session (may be replaced or closed).  Returns DELIVER_DONE_* flags. */
int smtp_request(struct stream *ipc, struct deliver_request *req, struct smtp_session **cache);

/* ---------------------------------------------------------------- content */

/* The content writer's state across chunks. */
struct smtp_wstate {
	size_t col;      /* bytes on the current output line */
	bool bol;        /* at the start of a line */
	bool cr;         /* a CR waits to see whether LF follows */
	size_t limit;    /* longest line (smtp_line_length_limit) */
	uint64_t broken; /* lines broken because they were too long */
};
void smtp_content_init(struct smtp_wstate *w, size_t limit);
/* Stored content (LF line ends) -> wire form appended to out: CRLF only, dot-stuffed, long lines broken. */
void smtp_content_put(struct smtp_wstate *w, const unsigned char *p, size_t n, struct buf *out);
/* The end: a last CRLF when needed, then ".\r\n". */
void smtp_content_end(struct smtp_wstate *w, struct buf *out);

/*
 * The 8-bit downgrade (RFC 6152 section 3 as Postfix does it): every
 * MIME leaf part whose body holds 8-bit bytes is re-encoded, text parts as
 * quoted-printable and the rest as base64, and its Content-Transfer-
 * Encoding replaced; multipart and message/rfc822 containers are walked
 * (SMTP_MIME_DEPTH_MAX deep) and relabelled 7bit.  A message without
 * MIME-Version gets MIME headers (text/plain, charset utf-8 when the
 * body is valid UTF-8, else unknown-8bit).  Input and output use LF line
 * ends.  -1 with why when the message cannot be made 7-bit: 8-bit bytes
 * in a header, a preamble, a boundary line or a base64 part, or limits.
 */
int smtp_mime_downgrade(const unsigned char *p, size_t n, struct buf *out, struct buf *why);

#endif
