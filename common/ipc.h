/*
 * ipc - attribute lists over Unix-domain stream sockets.
 *
 * Wire format (doc/ipc.md is the specification):
 *
 *   list  = *attr NUL
 *   attr  = name NUL value NUL
 *   name  = 1*64( %x61-7A / DIGIT / "_" )      ; lower case
 *   value = *( %x01-FF )                        ; any byte but NUL
 *
 * Every receive is bounded: per value, per list (bytes) and per list
 * (attribute count), and by the stream's timeout.  A server speaks first
 * with a greeting list "protocol=NAME version=N".  Descriptors travel
 * beside a list with stream_send_fd/stream_recv_fd and are validated by
 * the receiver (ipc_check_fd).  Names may repeat (one "rcpt" per
 * recipient); order is preserved.
 */
#ifndef POSTERN_IPC_H
#define POSTERN_IPC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "buf.h"
#include "stream.h"

#define IPC_NAME_MAX          64
#define IPC_VALUE_MAX_DEFAULT 65536
#define IPC_LIST_MAX_DEFAULT  (4 * 1024 * 1024)
#define IPC_ATTRS_MAX_DEFAULT 100000

/* Receive errors beyond the stream's own (STREAM_EOF, STREAM_TIMEOUT, ...). */
#define IPC_ERR_SYNTAX -20 /* bad name, missing terminator */
#define IPC_ERR_TOOBIG -21 /* a value, the list or the count over its cap */
#define IPC_ERR_PROTO  -22 /* wrong protocol, version, or attributes */

/* True for a valid attribute name (1..IPC_NAME_MAX of [a-z0-9_]). */
bool ipc_name_valid(const char *name);
/* Text for a status from ipc_get/ipc_expect_hello (stream or IPC_ERR_*). */
const char *ipc_strerror(int status);

struct ipc_limits {
	size_t value_max;
	size_t list_max;
	size_t attrs_max;
};

struct ipc_attr {
	size_t name_off; /* offsets into ipc_msg.store (stable across growth) */
	size_t value_off;
	size_t value_len;
};

struct ipc_msg {
	struct ipc_attr *attrs;
	size_t n, cap;
	struct buf store;
};

void ipc_msg_init(struct ipc_msg *m);
void ipc_msg_reset(struct ipc_msg *m);
void ipc_msg_free(struct ipc_msg *m);

/* Sending: each call buffers one attribute; ipc_put_end terminates and flushes. */
int ipc_put_str(struct stream *s, const char *name, const char *value);
int ipc_put_int(struct stream *s, const char *name, long long value);
int ipc_put_end(struct stream *s);

/*
 * The same encoding into memory, for event-driven senders (qmgr, anvil)
 * that write when the socket is ready.
 */
void ipc_buf_str(struct buf *out, const char *name, const char *value);
void ipc_buf_int(struct buf *out, const char *name, long long value);
void ipc_buf_end(struct buf *out);

/*
 * Parse one list from memory (event-driven receivers): 1 with the list in
 * m and *used bytes consumed, 0 when p holds only part of a list (read
 * more and call again with all of it), or an IPC_ERR_* code.
 */
int ipc_parse(const unsigned char *p, size_t len, struct ipc_msg *m, const struct ipc_limits *lim, size_t *used);

/*
 * Receive one list into m (NULL limits: the defaults).  Returns STREAM_OK,
 * a negative stream status, or an IPC_ERR_* code; on error m is reset.
 * STREAM_EOF means the peer closed before the first byte of a list; EOF
 * inside a list is IPC_ERR_SYNTAX.  After any error the position in the
 * stream is undefined: the caller must drop the connection.
 */
int ipc_get(struct stream *s, struct ipc_msg *m, const struct ipc_limits *lim);

size_t ipc_msg_count(const struct ipc_msg *m);
const char *ipc_msg_name(const struct ipc_msg *m, size_t i);
const char *ipc_msg_value(const struct ipc_msg *m, size_t i, size_t *len);
/* First value of name, or NULL. */
const char *ipc_msg_str(const struct ipc_msg *m, const char *name);
/* First value of name as a number in [min, max]; -1 when absent or invalid. */
int ipc_msg_int(const struct ipc_msg *m, const char *name, long long min, long long max, long long *out);
/* Number of attributes called name. */
size_t ipc_msg_count_name(const struct ipc_msg *m, const char *name);

/*
 * Check a received list: every name in required (NULL-terminated) must be
 * present.  In strict mode every name must be in required or optional;
 * in lenient mode unknown names are ignored (newer peers may add some).
 */
#define IPC_STRICT  0x01
#define IPC_LENIENT 0x00
int ipc_msg_check(
    const struct ipc_msg *m, const char *const *required, const char *const *optional, int mode, struct buf *err);

/* The greeting a server sends first, and the client's check of it. */
int ipc_send_hello(struct stream *s, const char *protocol, int version);
int ipc_expect_hello(struct stream *s, const char *protocol, int min_version, int *version);

/*
 * Validate a passed descriptor: its file type (S_IFREG, S_IFSOCK, ...)
 * must be type and its access mode (O_RDONLY, O_WRONLY, O_RDWR) accmode,
 * or -1 to skip that test.  Returns 0 or -1 with err set.
 */
int ipc_check_fd(int fd, mode_t type, int accmode, struct buf *err);

/* Connect to $queue_directory/{private,public}/name (relative path ok). */
struct stream *ipc_connect(const char *path, int timeout_seconds, struct buf *err);

#endif
