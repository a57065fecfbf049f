/*
 * local - the local delivery agent's modules (see local(8)).
 *
 *   local.c          main: the service description and the qmgr check
 *   local_resolve.c  one request: the message, each recipient -> what to
 *                    do (virtual mailbox, alias, .forward, mailbox),
 *                    status per recipient, forwarding through cleanup
 *   local_alias.c    aliases(5) values, alias tables, forward_path
 *   local_maildir.c  Maildir delivery and file names
 *   local_mbox.c     mbox and /file delivery: locking, From_ quoting
 *   local_pipe.c     |command delivery: splitting, running, sysexits
 *   local_safe.c     privilege switching and file safety checks
 *
 * The request comes from qmgr, which is trusted to name recipients; the
 * message, the tables, .forward and :include: files and the mailboxes
 * are input and are checked before use.
 */
#ifndef POSTERN_LOCAL_H
#define POSTERN_LOCAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include "buf.h"
#include "deliver.h"
#include "dict.h"
#include "qfile.h"
#include "stream.h"

#define LOCAL_RELAY         "local"
#define LOCAL_OUTPUT_MAX    8192          /* command output kept for the reason */
#define LOCAL_LIST_FILE_MAX (1024 * 1024) /* a .forward or :include: file */
#define LOCAL_DEST_LEN_MAX  4096          /* one destination in an alias value */
#define LOCAL_DT_MAX        256           /* Delivered-To header lines remembered */
#define LOCAL_HDR_LINE_MAX  4096          /* longest header line looked at */
#define LOCAL_LOCK_SECONDS  60            /* waiting for an mbox lock */
#define LOCAL_STALE_LOCK    300           /* a dot-lock older than this is stale */
#define LOCAL_ARGV_MAX      256           /* words of a command run without a shell */
#define LOCAL_COMMAND_PATH  "/usr/bin:/bin"
#define LOCAL_REASON_MAX    900

/* Where a destination came from (allow_mail_to_commands, allow_mail_to_files). */
#define LOCAL_SRC_ALIAS   0x01
#define LOCAL_SRC_FORWARD 0x02
#define LOCAL_SRC_INCLUDE 0x04

/* main.cf, read once per process. */
struct local_conf {
	const char *myhostname;
	const char *recipient_delimiter;
	const char *home_mailbox;
	const char *mailbox_command;
	const char *mail_spool_directory;
	const char *virtual_mailbox_base;
	const char *forward_path;
	long long mailbox_size_limit;
	long long virtual_mailbox_limit;
	int command_time_limit;
	int recursion_limit;
	int expansion_limit;
	int dup_limit;
	int allow_commands; /* LOCAL_SRC_* */
	int allow_files;
	int ipc_timeout;
	bool maildir_sync_dir; /* maildir_sync_directory */
	char *default_user;    /* default_privs */
	uid_t default_uid;
	gid_t default_gid;
};
extern struct local_conf local_conf;

/* Who a delivery runs as. */
struct local_ident {
	uid_t uid;
	gid_t gid;
	const char *user; /* login name (supplementary groups, $USER), or NULL: no extra groups */
	const char *home; /* $HOME and the command's directory, or NULL */
};

/* The outcome of one destination or one recipient. */
struct local_result {
	enum deliver_status status;
	char dsn[16];
	struct buf reason;
};
void local_result_init(struct local_result *r);
void local_result_free(struct local_result *r);
void local_result_set(struct local_result *r, enum deliver_status st, const char *dsn, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A recipient address taken apart. */
struct local_addr {
	char *addr;   /* as delivered: Delivered-To, $RECIPIENT */
	char *local;  /* the local part, with the extension */
	char *user;   /* the local part without the extension */
	char *ext;    /* the extension, "" when none */
	char *domain; /* "" when none */
};
/* Split at the last '@' and at the first delimiter character; fold lower-cases the local part. */
void local_addr_split(struct local_addr *a, const char *addr, const char *delim, bool fold);
void local_addr_free(struct local_addr *a);

struct local_dup;

/* The message of one request. */
struct local_msg {
	const char *queue_id;
	const char *sender; /* "" for <> */
	int fd;             /* the queue file: pread only */
	off_t content_offset;
	uint64_t content_size;
	int flags; /* CLEANUP_FLAG_* */
	const struct qfile_env *env;
	char **dt; /* Delivered-To addresses in the header, lower case */
	size_t ndt;
	struct local_dup *dup; /* destinations delivered by this request */
};

/* ---------------------------------------------------------------- local_resolve.c */

int local_init(struct buf *err);
/* Deliver every recipient of a request and send each status (not "done"). */
void local_request(struct stream *s, struct deliver_request *req);

/* Delivered-To lines of a header, fed in pieces of any size. */
struct local_hdrscan {
	struct buf line; /* the logical line being collected */
	bool skip;       /* it is too long to be one of ours */
	bool bol;        /* at the start of a physical line */
	bool started;    /* a logical line is open */
	bool done;       /* the empty line that ends the header was seen */
	char **dt;
	size_t ndt;
};
void local_hdrscan_init(struct local_hdrscan *h);
/* Returns true once the header is complete. */
bool local_hdrscan_feed(struct local_hdrscan *h, const unsigned char *p, size_t n);
void local_hdrscan_end(struct local_hdrscan *h);
void local_hdrscan_free(struct local_hdrscan *h);
/* Is addr (any case, optionally in <>) one of the Delivered-To values? */
bool local_dt_match(char *const *dt, size_t ndt, const char *addr);

/* Header text made safe: control characters become '?'. */
void local_hdr_value(struct buf *out, const char *s);
/* "Return-Path: <sender>" and "Delivered-To: rcpt" lines. */
void local_msg_prepend(const struct local_msg *m, const char *rcpt, struct buf *out);
/*
 * Hand the content to fn chunk by chunk.  Returns 0 when all of it went,
 * 1 when fn returned non-zero (fn keeps its own reason), -1 when the
 * queue file could not be read (err says why).
 */
int local_msg_content(
    const struct local_msg *m, int (*fn)(void *arg, const unsigned char *p, size_t n), void *arg, struct buf *err);
/* Collect the message's Delivered-To lines into m (bounded); -1 with err when unreadable. */
int local_msg_scan_header(struct local_msg *m, struct buf *err);

/* Destinations already delivered in this request (duplicate_filter_limit). */
struct local_dup *local_dup_new(size_t limit);
bool local_dup_seen(struct local_dup *d, const char *key);
void local_dup_add(struct local_dup *d, const char *key);
void local_dup_free(struct local_dup *d);

/* ---------------------------------------------------------------- local_alias.c */

enum local_dest_type {
	LOCAL_DEST_ADDR,    /* an address: local -> delivered again, else forwarded */
	LOCAL_DEST_SELF,    /* \user: that user's mailbox, no alias or .forward */
	LOCAL_DEST_COMMAND, /* |command */
	LOCAL_DEST_FILE,    /* /path */
	LOCAL_DEST_INCLUDE, /* :include:/path */
};
struct local_dest {
	enum local_dest_type type;
	char *value; /* address, user, command, or absolute path */
};
struct local_dests {
	struct local_dest *v;
	size_t n;
};
/*
 * Parse an alias value or the text of a .forward or :include: file
 * (is_file: '#' lines are comments).  At most max destinations.  Returns
 * 0, or -1 with err set (unbalanced quote, empty command, relative
 * :include: path, a destination over LOCAL_DEST_LEN_MAX, too many).
 */
int local_alias_parse(const char *text, size_t len, bool is_file, size_t max, struct local_dests *out, struct buf *err);
void local_dests_free(struct local_dests *d);
const char *local_dest_type_name(enum local_dest_type t);

int local_alias_open(const char *maps, struct buf *err);
void local_alias_close(void);
/* Look a name up in alias_maps; *owner is the owner of the table file that had it (0 when none). */
enum dict_result local_alias_lookup(const char *name, struct buf *value, uid_t *owner, struct buf *why);
/*
 * Expand forward_path-style text: $home, $user, $local, $extension,
 * $recipient, $domain, $recipient_delimiter, ${name}, ${name?text},
 * ${name:text} and $$.  Values from the address have '/' and control
 * characters replaced.  Returns 0 or -1 with err.
 */
int local_path_expand(
    const char *text, const struct local_addr *a, const char *home, const char *user, struct buf *out, struct buf *err);
/* "alias, forward, include" -> LOCAL_SRC_* bits; -1 with err on an unknown word. */
int local_src_parse(const char *list, int *bits, struct buf *err);

/* ---------------------------------------------------------------- local_maildir.c */

/* A host name as Maildir names want it: '/' -> \057, ':' -> \072. */
void local_maildir_hostname(const char *host, struct buf *out);
/* "SEC.M<usec>P<pid>Q<counter>.HOST" */
void local_maildir_unique(
    struct buf *out, long long sec, long usec, long pid, unsigned long long counter, const char *host);
/* "UNIQUE,S=size,W=wsize": wsize counts every LF as CR LF. */
void local_maildir_final(struct buf *out, const char *unique, unsigned long long size, unsigned long long nlf);
/* Count LF bytes (for W=). */
unsigned long long local_count_lf(const unsigned char *p, size_t n);
/* Deliver into the Maildir dir (absolute, may end in '/'); 0 when sent, else res says why. */
int local_maildir_deliver(const struct local_msg *m, const char *rcpt, const char *dir, const struct local_ident *id,
    struct local_result *res);

/* ---------------------------------------------------------------- local_mbox.c */

/* mboxrd quoting: a '>' before every line that matches /^>*From /. */
struct local_quote {
	int state;  /* 0 line start ('>'s), 1 matching "From ", 2 rest of line */
	size_t len; /* bytes of "From " matched so far */
};
void local_quote_init(struct local_quote *q);
void local_quote(struct local_quote *q, const unsigned char *p, size_t n, struct buf *out);
/* End of input: release a partial "From" held back. */
void local_quote_end(struct local_quote *q, struct buf *out);
/* "From SENDER DATE\n" (MAILER-DAEMON for <>; asctime-style date). */
void local_mbox_from(struct buf *out, const char *sender, time_t when);
/* local_mbox_deliver() and local_safe_append() flags */
#define LOCAL_MBOX_OWNER 0x01 /* the file must belong to the recipient */
#define LOCAL_MBOX_SPOOL 0x02 /* in mail_spool_directory: root may create the file and its lock */
/*
 * Append to an mbox file (a mailbox or a /file destination) with fcntl and
 * dot-lock locking.  limit: largest file size (0 none).  0 when sent,
 * else res says why.
 */
int local_mbox_deliver(const struct local_msg *m, const char *rcpt, const char *path, const struct local_ident *id,
    long long limit, int flags, struct local_result *res);

/* ---------------------------------------------------------------- local_pipe.c */

/* Characters that make local run a command through /bin/sh -c. */
#define LOCAL_SHELL_META "`~!#$&*()|;<>[]{}'\"\\?=%\n\r"
/*
 * Split a command into words when it needs no shell: 1 with *argv
 * (NULL-terminated; local_argv_free), 0 when it needs a shell (or has
 * more than LOCAL_ARGV_MAX words), -1 when it is empty.
 */
int local_cmd_split(const char *cmd, char ***argv);
void local_argv_free(char **argv);

struct local_sysexit {
	int code;
	enum deliver_status status;
	const char *dsn;
	const char *name; /* "EX_NOUSER" */
};
/* The sysexits.h meaning of an exit code, or NULL. */
const struct local_sysexit *local_sysexit(int code);
/* A command's wait status (and whether it was killed for time) -> result. */
void local_cmd_result(
    int wstatus, bool timed_out, const char *cmd, const unsigned char *out, size_t outlen, struct local_result *res);
/* Run cmd as id with the message on its input; 0 when sent, else res says why. */
int local_pipe_deliver(const struct local_msg *m, const struct local_addr *rcpt, const char *cmd,
    const struct local_ident *id, struct local_result *res);

/* ---------------------------------------------------------------- local_safe.c */

extern bool local_privileged; /* started as root: switch identities */
void local_safe_init(void);
/* Take the recipient's identity for file work (effective IDs only); refuses uid 0. */
int local_become(const struct local_ident *id, struct buf *err);
/* Back to root (fatal when that fails). */
void local_unbecome(void);
/* The uid files written for id belong to: id->uid, or ours when not privileged. */
uid_t local_owner(const struct local_ident *id);
/*
 * Open a mailbox or file for appending as id (the caller has become id),
 * creating it 0600 when missing.  With LOCAL_MBOX_SPOOL, a file the
 * recipient cannot create (a root-owned spool) is created by root and
 * given to them.  It must be a regular file with one link, owned by the
 * recipient with LOCAL_MBOX_OWNER.  Returns the descriptor, or -1 with
 * why set and *unsafe true when the file itself was refused.
 */
int local_safe_append(
    const char *path, const struct local_ident *id, int flags, struct stat *st, struct buf *why, bool *unsafe);
/*
 * Make the directories of rel (relative, '/'-separated) under base as id
 * (the caller has become id), 0700; every one must be a directory and not
 * a symbolic link, and the last (when owned_last) owned by the recipient.
 * ndirs: how many leading components are directories.  spool: a directory
 * the recipient cannot create is made by root and given to them.
 * Returns 0, or -1 with why and *unsafe.
 */
int local_safe_mkdirs(const char *base, const char *rel, size_t ndirs, bool owned_last, bool spool,
    const struct local_ident *id, struct buf *why, bool *unsafe);
/* A directory that must exist (or be made, as id) 0700, owned by the recipient, not a symlink. */
int local_safe_dir(const char *path, const struct local_ident *id, struct buf *why, bool *unsafe);
/*
 * Read a .forward or :include: file as id.  It must be a regular file,
 * not group or world writable, owned by one of owners[].  Returns 0 with
 * the text in out and its owner in *owner, 1 when there is no such file,
 * 2 when it is unsafe (why says why; the caller ignores it), -1 on a
 * temporary error.
 */
int local_safe_read_list(const char *path, const struct local_ident *id, const uid_t *owners, size_t nowners,
    struct buf *out, uid_t *owner, struct buf *why);
/* write(2) all of it; -1 with errno. */
int local_write_all(int fd, const void *p, size_t n);

#endif
