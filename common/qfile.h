/*
 * qfile - the queue file: typed, length-prefixed records.
 *
 *   record = type(1 byte) length(varint: 7 bits per byte, low first,
 *            high bit = more; at most 4 bytes) payload(length bytes)
 *
 * A file is, in order (doc/queue-format.md is the specification):
 *
 *   V  version and sizes: fixed QF_VERSION_LEN-byte payload, rewritten in
 *      place at commit (content offset and size, recipient count)
 *   T  arrival time "SECONDS.MICROSECONDS"
 *   S  envelope sender (empty payload = the null sender <>)
 *   A  "name=value" attributes (client, helo, protocol, DSN envid/ret, ...)
 *   R  recipient: "address\0orcpt=...\0notify=N" (fields after the address
 *      optional); the type byte becomes D in place when it is done
 *   M  start of content (empty payload)
 *   C  content chunk (at most QF_CHUNK_MAX bytes; the message with LF line ends)
 *   X  start of the extracted segment (empty); R and A records may follow
 *   E  end (empty payload); the last record, nothing after it
 *
 * A writer creates queue/ID with O_EXCL, mode 0600 (or renames a spare
 * there, qpool.h); at commit it writes E, cuts a spare to length, sets
 * mode 0700 (QF_MODE_COMPLETE), and fsyncs.  Readers accept only a
 * file with mode 0700 whose records parse to an E at exactly the end of
 * the file; anything else is incomplete or corrupt.  Every record length
 * is bounded on read.
 */
#ifndef POSTERN_QFILE_H
#define POSTERN_QFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>
#include <sys/types.h>

#include "buf.h"
#include "qid.h"

/* Queue directories, relative to queue_directory. */
#define QUEUE_MAILDROP "maildrop"
#define QUEUE_INCOMING "incoming"
#define QUEUE_ACTIVE   "active"
#define QUEUE_DEFERRED "deferred"
#define QUEUE_HOLD     "hold"
#define QUEUE_CORRUPT  "corrupt"
#define QUEUE_DEFER    "defer"  /* per-message defer reasons (hashed) */
#define QUEUE_BOUNCE   "bounce" /* per-message bounce reasons (hashed) */
/* true for the names above */
bool qfile_queue_valid(const char *queue);

/* Record types. */
#define QR_VERSION 'V'
#define QR_TIME    'T'
#define QR_SENDER  'S'
#define QR_ATTR    'A'
#define QR_RCPT    'R'
#define QR_DONE    'D'
#define QR_MESSAGE 'M'
#define QR_CONTENT 'C'
#define QR_XTRACT  'X'
#define QR_END     'E'

#define QF_FORMAT_VERSION  1
#define QF_VERSION_LEN     64
#define QF_CHUNK_MAX       65536
#define QF_RECORD_MAX      (1024 * 1024) /* any record other than C */
#define QF_MODE_INCOMPLETE 0600
#define QF_MODE_COMPLETE   0700
/*
 * maildrop/ files are written by postdrop as the submitting user and
 * read by pickup as mail_owner, so a complete one is also readable by
 * others (the maildrop directory itself admits nobody else).
 */
#define QF_MODE_MAILDROP 0744

/* Recipient DSN NOTIFY bits (RFC 3461); 0 = not given (default behaviour). */
#define QF_NOTIFY_NEVER   0x01
#define QF_NOTIFY_SUCCESS 0x02
#define QF_NOTIFY_FAILURE 0x04
#define QF_NOTIFY_DELAY   0x08

struct qfile_rcpt {
	char *addr;
	char *orcpt;  /* RFC 3461 ORCPT ("rfc822;user@example"), or NULL */
	int notify;   /* QF_NOTIFY_* bits */
	off_t offset; /* offset of the record's type byte */
	bool done;
};

struct qfile_attr {
	char *name;
	char *value;
};

struct qfile_writer {
	int fd;
	char id[QID_LEN + 1];
	char path[128];        /* relative to queue_directory */
	struct buf out;        /* bytes not yet written */
	off_t flushed;         /* bytes already written to fd */
	off_t content_offset;  /* first C record, 0 until content starts */
	uint64_t content_size; /* payload bytes of all C records */
	unsigned nrcpt;
	int state;          /* where in the record order we are */
	bool chunk_open;    /* the last record in out is a C record still filling */
	size_t chunk_start; /* its offset in out (header space reserved) */
	size_t chunk_len;   /* its payload bytes so far */
	bool lazy;          /* QF_CREATE_LAZY: fd is opened at the first write */
	bool pool;          /* QF_CREATE_POOL */
	bool reused;        /* fd is a spare: cut it to our length at the commit */
	bool created;       /* the file exists on disk and is ours to remove */
	int error;          /* errno of the system call that failed, 0 when none did (ENOSPC: disk full) */
};

/* Writing.  All return 0, or -1 with err set (the caller aborts). */
int qfile_create(struct qfile_writer *w, const char *queue, struct buf *err);
/* qfile_create_id() flags */
#define QF_CREATE_LAZY 0x01 /* open the file at the first write(2), not now */
#define QF_CREATE_POOL 0x02 /* incoming/ only: take a spare file when there is one (qpool.h) */
/*
 * As qfile_create, with the ID chosen by the caller (id, which must be
 * qid_valid; an existing file of that name is an error, never replaced)
 * or made here (id NULL).  With QF_CREATE_LAZY nothing touches the disk
 * until the buffer is first written out, which for a small message is at
 * qfile_commit: errors of the open (including EEXIST) then come from
 * that call, and qfile_abort before it has nothing to remove.
 */
int qfile_create_id(struct qfile_writer *w, const char *queue, const char *id, int flags, struct buf *err);
int qfile_put_time(struct qfile_writer *w, const struct timeval *tv, struct buf *err);
int qfile_put_sender(struct qfile_writer *w, const char *sender, struct buf *err);
int qfile_put_attr(struct qfile_writer *w, const char *name, const char *value, struct buf *err);
int qfile_put_rcpt(struct qfile_writer *w, const char *addr, const char *orcpt, int notify, struct buf *err);
int qfile_begin_content(struct qfile_writer *w, struct buf *err);
int qfile_put_content(struct qfile_writer *w, const void *data, size_t len, struct buf *err);
int qfile_begin_extracted(struct qfile_writer *w, struct buf *err);
/* Flags for qfile_commit. */
#define QF_COMMIT_NOSYNC   0x01 /* the caller makes it durable (group commit) */
#define QF_COMMIT_MAILDROP 0x02 /* mode QF_MODE_MAILDROP instead of QF_MODE_COMPLETE */
/* Finish: E record, mode 0700, fsync (unless NOSYNC); closes the file. */
int qfile_commit(struct qfile_writer *w, int flags, struct buf *err);
/* Give up: close and unlink.  Safe to call after a failed step. */
void qfile_abort(struct qfile_writer *w);

/* Reading. */
struct qfile_env {
	int version;
	struct timeval arrival;
	char *sender;
	struct qfile_attr *attrs;
	size_t nattrs;
	struct qfile_rcpt *rcpts;
	size_t nrcpts;
	size_t ndone;
	off_t content_offset; /* offset of the first C record (or of E/X when empty) */
	uint64_t content_size;
	off_t file_size;
};

/*
 * Guards against hostile files, not a paging mechanism: a file with more
 * recipients or attributes than allowed reads as corrupt (-1).
 */
struct qfile_read_limits {
	size_t max_rcpts; /* 0 = no limit */
	size_t max_attrs; /* 0 = no limit */
};

/*
 * Read the envelope and extracted segments of a complete queue file (the
 * content is skipped but its records are checked).  Returns 0, 1 when
 * the file is incomplete (mode or missing E: a writer may still be busy,
 * or crashed), or -1 when it is corrupt (err says where).  Outside
 * incoming/ callers treat 1 as corrupt.  env is zeroed on 1 and -1.
 * Reads with pread() only; the descriptor's offset is not used.
 */
int qfile_read(int fd, struct qfile_env *env, const struct qfile_read_limits *lim, struct buf *err);
/* As qfile_read, for files whose complete mode is not QF_MODE_COMPLETE (maildrop/). */
int qfile_read_mode(
    int fd, mode_t complete, struct qfile_env *env, const struct qfile_read_limits *lim, struct buf *err);
void qfile_env_free(struct qfile_env *env);
const char *qfile_env_attr(const struct qfile_env *env, const char *name);

/*
 * Content access: *pos starts at env->content_offset; each call appends
 * the next chunk's payload to out (replacing its contents) and advances
 * *pos.  Returns 1 with a chunk, 0 at the end of the content, -1 on error.
 */
int qfile_content_next(int fd, off_t *pos, struct buf *out, struct buf *err);

/*
 * Mark the recipient whose record starts at offset (from qfile_read) as
 * done: R -> D in place.  A D there already is fine; any other byte is
 * an error.  Needs a descriptor open for writing; no fsync (a lost marker
 * only means a duplicate delivery).
 */
int qfile_mark_done(int fd, off_t offset, struct buf *err);

/* Low-level record codec (also used by tests and the fuzzers). */
size_t qfile_varint_put(unsigned char *out, size_t len);
/* Decode a record header at p (avail bytes); returns header length, 0 if more bytes are needed, -1 if malformed. */
int qfile_rec_header(const unsigned char *p, size_t avail, int *type, size_t *len);

#endif
