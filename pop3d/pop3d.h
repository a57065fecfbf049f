/*
 * pop3d - the POP3 server, in two programs (pop3d(8), doc/ipc.md 8.6):
 *
 *   pop3d          the login part: network_user, chrooted; TLS, CAPA, STLS,
 *                  USER/PASS, AUTH PLAIN; asks auth for a login token and
 *                  hands the session to the mailbox part.  It never opens
 *                  a mailbox or sees a password hash.
 *   pop3d-mailbox  the mailbox part: root; checks the token, finds the
 *                  mailbox, and forks a session process that becomes the
 *                  mailbox owner and serves TRANSACTION and UPDATE.
 *
 * This header is what the modules of both share, and what the unit tests
 * link: command parsing (pop3d_cmd.c), the LF to CRLF and dot-stuffing
 * converter (pop3d_conv.c), Maildir names, scans and updates
 * (pop3d_maildir.c), the hand-off protocol (pop3d_handoff.c), the TLS
 * proxy (pop3d_proxy.c), the two sessions (pop3d_login.c,
 * pop3d_session.c) and the mailbox part's request handling
 * (pop3d_mailbox.c).
 */
#ifndef POSTERN_POP3D_H
#define POSTERN_POP3D_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <openssl/ssl.h>

#include "buf.h"
#include "cidr.h"
#include "ipc.h"
#include "stream.h"

/* ---------------------------------------------------------------- configuration */

enum pop3d_plaintext {
	POP3D_PLAINTEXT_NO,
	POP3D_PLAINTEXT_MYNETWORKS,
	POP3D_PLAINTEXT_YES,
};

struct pop3d_config {
	int timeout;           /* pop3d_timeout, seconds */
	long long error_limit; /* pop3d_error_limit */
	size_t command_limit;  /* pop3d_command_limit, CRLF included */
	enum pop3d_plaintext plaintext;
	bool tls_required; /* pop3d_tls_security_level = encrypt */
	bool tls_wrapper;  /* pop3d_tls_wrappermode */
	SSL_CTX *tls_ctx;  /* NULL: no TLS */
	struct cidr_list mynetworks;
	const char *mail_name;
};

extern struct pop3d_config pop3d_cfg;

/* The settings both parts share; fatal (a configuration error) on a bad value. */
void pop3d_config_common(void);

/* ---------------------------------------------------------------- commands */

enum pop3_verb {
	POP3_UNKNOWN,
	POP3_USER,
	POP3_PASS,
	POP3_APOP,
	POP3_AUTH,
	POP3_CAPA,
	POP3_STLS,
	POP3_QUIT,
	POP3_STAT,
	POP3_LIST,
	POP3_RETR,
	POP3_DELE,
	POP3_NOOP,
	POP3_RSET,
	POP3_TOP,
	POP3_UIDL,
	POP3_NVERBS,
};

struct pop3_cmd {
	enum pop3_verb verb;
	const char *name; /* "RETR"; "unknown" for POP3_UNKNOWN */
	char *arg;        /* after the keyword and its space; "" when none (points into the line) */
};

#define POP3_ARGS_MAX 2 /* TOP msg n */

/*
 * Split one command line (its CRLF already removed; len bytes, NUL
 * terminated) into keyword and argument.  -1 with *why for a line that is
 * not a command at all (empty, a NUL byte, no keyword); an unknown
 * keyword is not an error here (verb POP3_UNKNOWN).
 */
int pop3_parse_line(char *line, size_t len, struct pop3_cmd *c, const char **why);
/*
 * Numeric arguments: between min and max decimal numbers, each 0 to
 * 4294967295 without sign or junk, separated by single spaces.  Returns
 * the count, or -1 with *why.
 */
int pop3_parse_numbers(const char *arg, int min, int max, unsigned long long *v, const char **why);

#define POP3_SKIP_MAX (1024 * 1024) /* the rest of an over-long line is skipped up to this much */

/*
 * Read one command line into line, without its CRLF (or bare LF): 0; 1
 * when the line was longer than pop3d_command_limit (skipped and wiped:
 * answer -ERR and read on); or a negative stream status (EOF, timeout,
 * STREAM_TOOLONG when even the skip limit was passed) that ends the
 * session.
 */
int pop3_read_line(struct stream *s, struct buf *line);

/* ---------------------------------------------------------------- LF to CRLF, dot-stuffing */

/*
 * The converter streams a Maildir file to a client: every LF becomes
 * CRLF (a CR before it is content, kept), a line that starts with "."
 * gets another ".", and a TOP limit stops it after the header, the empty
 * line (a line that is empty or only a CR) and max_lines body lines.
 * Input may come in chunks of any size, split anywhere.
 */
struct pop3_conv {
	long long max_lines; /* body lines to send; -1: all (RETR) */
	long long body_lines;
	size_t line_len; /* bytes of the current line so far (saturating) */
	bool last_cr;    /* the current line's last byte so far is CR */
	bool in_body;
	bool done; /* the TOP limit was reached */
};

void pop3_conv_init(struct pop3_conv *cv, long long max_lines);
/* Convert in[0..n), appending to out; returns the bytes consumed (fewer than n once done). */
size_t pop3_conv_feed(struct pop3_conv *cv, const unsigned char *in, size_t n, struct buf *out);
/* CRLF when the last line had no line end, then ".\r\n". */
void pop3_conv_finish(struct pop3_conv *cv, struct buf *out);
/* Octets of the converted form (no stuffing) of in[0..n): n plus one per LF, as local's ,W= counts. */
long long pop3_crlf_size(const unsigned char *in, size_t n);

/* ---------------------------------------------------------------- Maildir */

#define POP3_UIDL_MAX    70     /* RFC 1939: 1 to 70 characters 0x21 to 0x7E */
#define POP3_MAILDIR_MAX 500000 /* messages listed in one session; more wait for the next */

struct pop3_name {
	size_t base_len;   /* the unique part: up to the first ',' or ':' */
	long long size_s;  /* ,S=: size of the file; -1 when absent */
	long long size_w;  /* ,W=: size with CRLF line ends; -1 when absent */
	const char *flags; /* after ":2,", or NULL */
};

/* Parse a Maildir file name; -1 for names that are not messages (dot files, empty, bad fields). */
int pop3_name_parse(const char *name, struct pop3_name *out);
/* The UIDL of a message: its base name, or a SHA-256 of it when too long or not printable. */
void pop3_uidl(const char *base, size_t len, char out[POP3_UIDL_MAX + 1]);

struct pop3_msg {
	char *name;     /* file name in new/ or cur/ */
	long long size; /* octets with CRLF line ends; -1 until known */
	char uidl[POP3_UIDL_MAX + 1];
	bool in_cur;
	bool deleted;
	bool retrieved; /* RETR: moves to cur/ with the S flag at QUIT */
};

struct pop3_maildir {
	int dfd, newfd, curfd; /* -1 when absent */
	int lockfd;
	struct pop3_msg *msgs;
	size_t n;
	bool truncated; /* more than POP3_MAILDIR_MAX messages */
};

#define POP3_MD_INUSE   1 /* another session holds the lock */
#define POP3_MD_MISSING 2 /* no Maildir yet: an empty maildrop */

void pop3_maildir_init(struct pop3_maildir *md);
/* Open and lock the Maildir at path: 0, POP3_MD_INUSE, POP3_MD_MISSING, or -1 with err. */
int pop3_maildir_open(struct pop3_maildir *md, const char *path, struct buf *err);
/* List new/ and cur/ (readdir only: sizes come from the names); 0 or -1 with err. */
int pop3_maildir_scan(struct pop3_maildir *md, struct buf *err);
/* The size of message i (0-based), scanning the file once when its name has no W=; -1 with err. */
int pop3_maildir_size(struct pop3_maildir *md, size_t i, long long *size, struct buf *err);
/* Open message i read-only; a descriptor, or -1 with err. */
int pop3_maildir_open_msg(struct pop3_maildir *md, size_t i, struct buf *err);
/* UPDATE: unlink the deleted, move the retrieved to cur/ with S.  0, or the number of failures. */
int pop3_maildir_update(struct pop3_maildir *md, struct buf *err);
void pop3_maildir_close(struct pop3_maildir *md);

/* ---------------------------------------------------------------- hand-off (doc/ipc.md 8.6) */

#define POP3D_MAILBOX_PROTOCOL "pop3d-mailbox"
#define POP3D_MAILBOX_VERSION  1
#define POP3D_ATTR_TOKEN       "token"
#define POP3D_ATTR_CLIENT_ADDR "client_addr"
#define POP3D_ATTR_TLS         "tls"
#define POP3D_ATTR_METHOD      "method"
#define POP3D_ATTR_MODE        "mode"
#define POP3D_ATTR_INPUT       "input"
#define POP3D_MODE_FD          "fd"
#define POP3D_MODE_PROXY       "proxy"
#define POP3D_STATUS_OK        0     /* the mailbox part has the session now */
#define POP3D_STATUS_TEMP      1     /* -ERR [SYS/TEMP] */
#define POP3D_STATUS_PERM      2     /* -ERR [SYS/PERM] */
#define POP3D_INPUT_MAX        16384 /* client bytes read ahead of the login, passed along */
#define POP3D_HANDOFF_TIMEOUT  30

struct pop3d_request {
	const char *token;
	const char *client_addr;
	const char *method;
	bool tls;
	bool fd_mode; /* the client socket follows; else the connection is the proxy */
	struct buf input;
};

/* Parse a received request list (strict); 0, or -1 with err. */
int pop3d_request_parse(const struct ipc_msg *m, struct pop3d_request *r, struct buf *err);
void pop3d_request_free(struct pop3d_request *r);
/* Hex for the input attribute; decoding rejects anything but pairs of lower case hex digits. */
void pop3d_hex_encode(const unsigned char *p, size_t n, struct buf *out);
int pop3d_hex_decode(const char *in, struct buf *out, size_t max);

/* ---------------------------------------------------------------- the login part */

struct pop3d_login {
	struct stream *s;
	char addr[64];
	bool tls;
	bool in_mynetworks;
	bool quit;
	long long errors;
	unsigned counts[POP3_NVERBS];
	struct buf user; /* from USER, until PASS */
};

void pop3d_login_run(struct pop3d_login *ls);
/* True when this client may send a password now (TLS, or pop3d_plaintext_auth allows it). */
bool pop3d_login_plaintext_ok(const struct pop3d_login *ls);

/*
 * Hand the authenticated session to the mailbox part.  Returns 1 when
 * the mailbox part took it (and served it, for a TLS proxy session),
 * or 0 after telling the client why it did not (the login goes on).
 */
int pop3d_handoff(struct pop3d_login *ls, const char *token, const char *method);

/*
 * Relay bytes both ways between the client (TLS, under stream c) and the
 * mailbox part (stream m), until the mailbox part closes, the client goes
 * away, or neither side moves for timeout seconds.  Bytes already
 * buffered in m are sent to the client first.
 */
void pop3d_proxy(struct stream *c, struct stream *m, int timeout);

/* ---------------------------------------------------------------- the mailbox part */

/* Serve one hand-off request on conn (pop3d-mailbox's service function). */
void pop3d_mailbox_serve(struct stream *conn, bool privileged);
/* pre_init of pop3d-mailbox: tables and identities, while root. */
void pop3d_mailbox_init(bool privileged);
/* True when a table behind the mailbox lookup changed (exit after this request). */
bool pop3d_mailbox_changed(void);

/*
 * TRANSACTION and UPDATE for user on the client stream s, whose first
 * input bytes are input; returns when the client quits or goes away.
 * The process is the mailbox owner already; path is the Maildir.
 */
void pop3d_session_run(struct stream *s, const char *user, const char *addr, const char *path);

/* Fill a stream's input buffer with bytes read before it existed (the login's read-ahead). */
void pop3d_stream_preload(struct stream *s, const unsigned char *p, size_t n);

/*
 * The CAPA answer (RFC 2449).  In the login part (login) USER and SASL
 * PLAIN are listed only when a password may be sent now, and STLS when
 * it is available; after login neither is.
 */
void pop3_capa(struct stream *s, bool login, bool password_ok, bool stls);

/* Replies: "+OK text" / "-ERR text", CRLF added. */
void pop3_ok(struct stream *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pop3_err(struct stream *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
