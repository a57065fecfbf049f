/*
 * stream - bounded, buffered I/O over a file descriptor.
 *
 * Every read is bounded: lines by a mandatory maximum length, waits by a
 * per-operation timeout and an optional overall deadline.  Reads and
 * writes go through a small operations table so that TLS (OpenSSL) can be
 * slotted under a stream after it was created (STARTTLS) without the
 * protocol code noticing.  Streams created with STREAM_FDPASS collect
 * descriptors passed with SCM_RIGHTS (see stream_send_fd/stream_recv_fd
 * and doc/ipc.md).
 *
 * Errors are sticky: after a timeout, EOF or I/O error every further call
 * fails with the same status, so a protocol loop can check once.
 */
#ifndef POSTERN_STREAM_H
#define POSTERN_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"

enum stream_status {
	STREAM_OK = 0,
	STREAM_EOF = -1,
	STREAM_TIMEOUT = -2,
	STREAM_ERROR = -3,
	STREAM_TOOLONG = -4,
};

/* stream_new() flags */
#define STREAM_FDPASS   0x01 /* receive SCM_RIGHTS descriptors (Unix sockets) */
#define STREAM_NOCLOSE  0x02 /* stream_free() leaves the descriptor open */
#define STREAM_BLOCKING 0x04 /* leave O_NONBLOCK alone (shared stdin/stdout) */

#define STREAM_MAXFDS 4

struct stream;

/*
 * The transport under a stream.  Both return the number of bytes moved,
 * 0 at end of file (read only), or -1 with errno set; for EAGAIN they set
 * *want to POLLIN or POLLOUT to say what to wait for.
 */
struct stream_ops {
	ssize_t (*read)(struct stream *s, void *p, size_t n, short *want);
	ssize_t (*write)(struct stream *s, const void *p, size_t n, short *want);
	/* Bytes the transport holds already decrypted (may be NULL). */
	size_t (*pending)(struct stream *s);
	/* Release the transport state (s->ctx); stream_free calls it before closing fd (may be NULL). */
	void (*close)(struct stream *s);
};

struct stream {
	int fd;
	int flags;
	bool is_socket;
	const struct stream_ops *ops;
	void *ctx; /* transport state, e.g. an SSL * */
	unsigned char *rbuf;
	size_t rpos, rend, rcap;
	unsigned char *wbuf;
	size_t wlen, wcap;
	int timeout_ms;   /* per wait; -1 = none */
	int64_t deadline; /* CLOCK_MONOTONIC ms; 0 = none */
	int status;       /* sticky: STREAM_OK or the first failure */
	int fds[STREAM_MAXFDS];
	int nfds;
	uint64_t nread, nwritten;
};

struct stream *stream_new(int fd, int flags);
/* Close (unless STREAM_NOCLOSE) and free; unread passed descriptors are closed. */
void stream_free(struct stream *s);
/* Replace the transport (STARTTLS).  Buffered plaintext input is discarded. */
void stream_set_ops(struct stream *s, const struct stream_ops *ops, void *ctx);

/* Timeout for each wait, in seconds (<= 0: wait forever). */
void stream_set_timeout(struct stream *s, int seconds);
/* Overall deadline, seconds from now (0 clears it). */
void stream_set_deadline(struct stream *s, int seconds);
int stream_status(const struct stream *s);
/* Clear a sticky STREAM_TOOLONG or similar soft state (not EOF/errors). */
void stream_clear_error(struct stream *s);
const char *stream_strerror(int status);

/*
 * Read one line into line (replacing its contents), including the "\n".
 * Returns STREAM_OK; STREAM_TOOLONG when maxlen bytes arrived without a
 * newline (line holds them, the rest stays in the stream); STREAM_EOF when
 * nothing was left.  A last line without "\n" before EOF is returned with
 * STREAM_OK and no "\n".
 */
int stream_getline(struct stream *s, struct buf *line, size_t maxlen);
/* Discard input up to and including the next "\n", at most maxskip bytes. */
int stream_skipline(struct stream *s, size_t maxskip);
/* Read exactly n bytes; returns n, fewer at EOF, or a negative status. */
ssize_t stream_read(struct stream *s, void *p, size_t n);
/* Read at least one and at most n bytes; 0 at EOF, or a negative status. */
ssize_t stream_read_some(struct stream *s, void *p, size_t n);
/* One byte (0..255) or a negative status. */
int stream_getc(struct stream *s);

/* Bytes already received but not yet consumed (pipelining, STARTTLS). */
size_t stream_pending(const struct stream *s);
void stream_discard_input(struct stream *s);
/* Wait up to ms for input; 1 readable, 0 not, negative on error. */
int stream_wait_readable(struct stream *s, int ms);

int stream_write(struct stream *s, const void *p, size_t n);
int stream_puts(struct stream *s, const char *str);
int stream_printf(struct stream *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int stream_flush(struct stream *s);

/* Pass a descriptor over a Unix socket (flushes first). */
int stream_send_fd(struct stream *s, int fd);
/*
 * The message stream_send_fd sends (one marker byte carrying fd), for an
 * event-driven caller without a stream: one sendmsg(2) with MSG_NOSIGNAL
 * and flags (MSG_DONTWAIT); its return value and errno.
 */
ssize_t stream_sendmsg_fd(int sock, int fd, int flags);
/* Receive a descriptor sent by stream_send_fd; *fd is -1 on failure. */
int stream_recv_fd(struct stream *s, int *fd);

/*
 * Wait until the descriptor is ready for events (POLLIN / POLLOUT), each
 * wait bounded by the stream's timeout and all of them by its deadline.
 * For transports (TLS) that do their own I/O on the descriptor.
 */
int stream_wait(struct stream *s, short events);

/* Monotonic clock in milliseconds. */
int64_t stream_now_ms(void);

#endif
