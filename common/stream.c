/*
 * stream - buffered I/O with bounds and timeouts (see stream.h).
 *
 * Used by every program for sockets, pipes and files.  Trusts nothing the
 * peer sends: line length is bounded by the caller, every wait is bounded
 * by poll() with the stream's timeout and deadline, and descriptors that
 * arrive with SCM_RIGHTS on a stream that did not ask for them are closed.
 * The descriptor is put in non-blocking mode so that a write to a slow
 * peer cannot block past the timeout.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "stream.h"
#include "xalloc.h"

#define STREAM_RBUF 16384
#define STREAM_WBUF 16384
#define FD_MARK     'F'

int64_t
stream_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* plain_read - read(2), or recvmsg(2) collecting passed descriptors */
static ssize_t
plain_read(struct stream *s, void *p, size_t n, short *want)
{
	union {
		struct cmsghdr hdr;
		char space[CMSG_SPACE(sizeof(int) * STREAM_MAXFDS)];
	} cm;
	struct msghdr msg;
	struct cmsghdr *c;
	struct iovec iov;
	ssize_t r;

	if (!s->is_socket) {
		r = read(s->fd, p, n);
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			*want = POLLIN;
		return r;
	}
	memset(&msg, 0, sizeof(msg));
	iov.iov_base = p;
	iov.iov_len = n;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cm.space;
	msg.msg_controllen = sizeof(cm.space);
	r = recvmsg(s->fd, &msg, MSG_CMSG_CLOEXEC);
	if (r < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			*want = POLLIN;
		return r;
	}
	for (c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
		int *fdp, nfd, i;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		fdp = (int *)CMSG_DATA(c);
		nfd = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		for (i = 0; i < nfd; i++) {
			int fd;

			memcpy(&fd, fdp + i, sizeof(fd));
			if ((s->flags & STREAM_FDPASS) && s->nfds < STREAM_MAXFDS) {
				s->fds[s->nfds++] = fd;
			} else {
				log_warn("closing an unexpected descriptor passed by a peer");
				close(fd);
			}
		}
	}
	if (msg.msg_flags & MSG_CTRUNC)
		log_warn("descriptors passed by a peer were truncated");
	return r;
}

static ssize_t
plain_write(struct stream *s, const void *p, size_t n, short *want)
{
	ssize_t r;

	if (s->is_socket)
		r = send(s->fd, p, n, MSG_NOSIGNAL);
	else
		r = write(s->fd, p, n);
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		*want = POLLOUT;
	return r;
}

static const struct stream_ops plain_ops = { plain_read, plain_write, NULL, NULL };

struct stream *
stream_new(int fd, int flags)
{
	struct stream *s = xcalloc(1, sizeof(*s));
	struct stat st;
	int fl;

	s->fd = fd;
	s->flags = flags;
	s->ops = &plain_ops;
	s->timeout_ms = -1;
	s->is_socket = fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
	if (!(flags & STREAM_BLOCKING) && (fl = fcntl(fd, F_GETFL)) >= 0 && !(fl & O_NONBLOCK))
		(void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	return s;
}

void
stream_free(struct stream *s)
{
	int i;

	if (s == NULL)
		return;
	if (s->ops->close != NULL)
		s->ops->close(s);
	for (i = 0; i < s->nfds; i++)
		close(s->fds[i]);
	if (!(s->flags & STREAM_NOCLOSE) && s->fd >= 0)
		close(s->fd);
	free(s->rbuf);
	free(s->wbuf);
	free(s);
}

void
stream_set_ops(struct stream *s, const struct stream_ops *ops, void *ctx)
{
	s->ops = ops ? ops : &plain_ops;
	s->ctx = ctx;
	s->rpos = s->rend = 0;
}

void
stream_set_timeout(struct stream *s, int seconds)
{
	/* Anything beyond INT_MAX ms (24 days) is "forever" for our purposes. */
	s->timeout_ms = seconds > 0 ? (seconds > INT_MAX / 1000 ? INT_MAX / 1000 : seconds) * 1000 : -1;
}

void
stream_set_deadline(struct stream *s, int seconds)
{
	s->deadline = seconds > 0 ? stream_now_ms() + (int64_t)seconds * 1000 : 0;
}

int
stream_status(const struct stream *s)
{
	return s->status;
}

void
stream_clear_error(struct stream *s)
{
	if (s->status == STREAM_TOOLONG)
		s->status = STREAM_OK;
}

const char *
stream_strerror(int status)
{
	switch (status) {
	case STREAM_OK:
		return "ok";
	case STREAM_EOF:
		return "lost connection";
	case STREAM_TIMEOUT:
		return "timeout";
	case STREAM_TOOLONG:
		return "line too long";
	default:
		return "I/O error";
	}
}

int
stream_wait(struct stream *s, short events)
{
	struct pollfd pfd;
	int64_t now, left;
	int ms, r;

	for (;;) {
		ms = s->timeout_ms;
		if (s->deadline) {
			now = stream_now_ms();
			left = s->deadline - now;
			if (left <= 0)
				return STREAM_TIMEOUT;
			if (ms < 0 || left < ms)
				ms = (int)left;
		}
		pfd.fd = s->fd;
		pfd.events = events;
		pfd.revents = 0;
		r = poll(&pfd, 1, ms);
		if (r > 0)
			return STREAM_OK;
		if (r == 0) {
			if (s->deadline && stream_now_ms() < s->deadline && ms != s->timeout_ms)
				continue;
			return STREAM_TIMEOUT;
		}
		if (errno != EINTR)
			return STREAM_ERROR;
	}
}

/* stream_fill - read more input into the buffer; returns bytes or status */
static ssize_t
stream_fill(struct stream *s)
{
	short want;
	ssize_t r;
	int w;

	if (s->status != STREAM_OK && s->status != STREAM_TOOLONG)
		return s->status;
	if (s->rbuf == NULL) {
		s->rcap = STREAM_RBUF;
		s->rbuf = xmalloc(s->rcap);
	}
	if (s->rpos == s->rend)
		s->rpos = s->rend = 0;
	else if (s->rend == s->rcap && s->rpos > 0) {
		memmove(s->rbuf, s->rbuf + s->rpos, s->rend - s->rpos);
		s->rend -= s->rpos;
		s->rpos = 0;
	}
	if (s->rend == s->rcap)
		log_panic("stream_fill: buffer full");
	for (;;) {
		want = POLLIN;
		r = s->ops->read(s, s->rbuf + s->rend, s->rcap - s->rend, &want);
		if (r > 0) {
			s->rend += (size_t)r;
			s->nread += (uint64_t)r;
			return r;
		}
		if (r == 0)
			return s->status = STREAM_EOF;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return s->status = (errno == ECONNRESET || errno == EPIPE) ? STREAM_EOF : STREAM_ERROR;
		if ((w = stream_wait(s, want)) != STREAM_OK)
			return s->status = w;
	}
}

int
stream_getline(struct stream *s, struct buf *line, size_t maxlen)
{
	unsigned char *nl;
	size_t avail, take;
	ssize_t r;

	buf_reset(line);
	if (maxlen == 0)
		log_panic("stream_getline: zero maximum length");
	for (;;) {
		avail = s->rend - s->rpos;
		if (avail > 0) {
			take = avail;
			if (take > maxlen - line->len)
				take = maxlen - line->len;
			nl = memchr(s->rbuf + s->rpos, '\n', take);
			if (nl != NULL)
				take = (size_t)(nl - (s->rbuf + s->rpos)) + 1;
			buf_append(line, s->rbuf + s->rpos, take);
			s->rpos += take;
			if (nl != NULL)
				return STREAM_OK;
			if (line->len >= maxlen)
				return STREAM_TOOLONG;
		}
		r = stream_fill(s);
		if (r < 0) {
			if (r == STREAM_EOF && line->len > 0)
				return STREAM_OK;
			return (int)r;
		}
	}
}

int
stream_skipline(struct stream *s, size_t maxskip)
{
	unsigned char *nl;
	size_t avail, skipped = 0;
	ssize_t r;

	for (;;) {
		avail = s->rend - s->rpos;
		if (avail > 0) {
			nl = memchr(s->rbuf + s->rpos, '\n', avail);
			if (nl != NULL) {
				s->rpos = (size_t)(nl - s->rbuf) + 1;
				return STREAM_OK;
			}
			skipped += avail;
			s->rpos = s->rend;
			if (skipped > maxskip)
				return STREAM_TOOLONG;
		}
		if ((r = stream_fill(s)) < 0)
			return (int)r;
	}
}

ssize_t
stream_read_some(struct stream *s, void *p, size_t n)
{
	size_t avail;
	ssize_t r;

	if (n == 0)
		return 0;
	if (s->rpos == s->rend) {
		r = stream_fill(s);
		if (r == STREAM_EOF)
			return 0;
		if (r < 0)
			return r;
	}
	avail = s->rend - s->rpos;
	if (avail > n)
		avail = n;
	memcpy(p, s->rbuf + s->rpos, avail);
	s->rpos += avail;
	return (ssize_t)avail;
}

ssize_t
stream_read(struct stream *s, void *p, size_t n)
{
	size_t done = 0;
	ssize_t r;

	while (done < n) {
		r = stream_read_some(s, (unsigned char *)p + done, n - done);
		if (r == 0)
			break;
		if (r < 0)
			return done ? (ssize_t)done : r;
		done += (size_t)r;
	}
	return (ssize_t)done;
}

int
stream_getc(struct stream *s)
{
	ssize_t r;

	if (s->rpos == s->rend && (r = stream_fill(s)) < 0)
		return (int)r;
	return s->rbuf[s->rpos++];
}

size_t
stream_pending(const struct stream *s)
{
	size_t n = s->rend - s->rpos;

	if (s->ops->pending)
		n += s->ops->pending((struct stream *)s);
	return n;
}

void
stream_discard_input(struct stream *s)
{
	s->rpos = s->rend = 0;
}

int
stream_wait_readable(struct stream *s, int ms)
{
	struct pollfd pfd;
	int r;

	if (stream_pending(s) > 0)
		return 1;
	pfd.fd = s->fd;
	pfd.events = POLLIN;
	do
		r = poll(&pfd, 1, ms);
	while (r < 0 && errno == EINTR);
	return r < 0 ? STREAM_ERROR : r > 0;
}

/* stream_write_raw - write everything in p to the transport */
static int
stream_write_raw(struct stream *s, const unsigned char *p, size_t n)
{
	short want;
	ssize_t r;
	int w;

	while (n > 0) {
		want = POLLOUT;
		r = s->ops->write(s, p, n, &want);
		if (r > 0) {
			p += r;
			n -= (size_t)r;
			s->nwritten += (uint64_t)r;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if ((w = stream_wait(s, want)) != STREAM_OK)
				return s->status = w;
			continue;
		}
		return s->status = (r < 0 && (errno == EPIPE || errno == ECONNRESET)) ? STREAM_EOF : STREAM_ERROR;
	}
	return STREAM_OK;
}

int
stream_flush(struct stream *s)
{
	int r;

	if (s->status != STREAM_OK && s->status != STREAM_TOOLONG)
		return s->status;
	if (s->wlen == 0)
		return STREAM_OK;
	r = stream_write_raw(s, s->wbuf, s->wlen);
	s->wlen = 0;
	return r;
}

int
stream_write(struct stream *s, const void *p, size_t n)
{
	int r;

	if (s->status != STREAM_OK && s->status != STREAM_TOOLONG)
		return s->status;
	if (s->wbuf == NULL) {
		s->wcap = STREAM_WBUF;
		s->wbuf = xmalloc(s->wcap);
	}
	if (n > s->wcap - s->wlen) {
		if ((r = stream_flush(s)) != STREAM_OK)
			return r;
		/* A large write goes straight out instead of through the buffer. */
		if (n >= s->wcap)
			return stream_write_raw(s, p, n);
	}
	memcpy(s->wbuf + s->wlen, p, n);
	s->wlen += n;
	return STREAM_OK;
}

int
stream_puts(struct stream *s, const char *str)
{
	return stream_write(s, str, strlen(str));
}

int
stream_printf(struct stream *s, const char *fmt, ...)
{
	char small[512];
	va_list ap;
	char *big;
	int n, r;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		log_panic("stream_printf: bad format \"%s\"", fmt);
	if ((size_t)n < sizeof(small))
		return stream_write(s, small, (size_t)n);
	big = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	r = stream_write(s, big, (size_t)n);
	free(big);
	return r;
}

ssize_t
stream_sendmsg_fd(int sock, int fd, int flags)
{
	union {
		struct cmsghdr hdr;
		char space[CMSG_SPACE(sizeof(int))];
	} cm;
	struct msghdr msg;
	struct cmsghdr *c;
	struct iovec iov;
	char mark = FD_MARK;

	memset(&msg, 0, sizeof(msg));
	memset(&cm, 0, sizeof(cm));
	iov.iov_base = &mark;
	iov.iov_len = 1;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cm.space;
	msg.msg_controllen = sizeof(cm.space);
	c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(sock, &msg, MSG_NOSIGNAL | flags);
}

int
stream_send_fd(struct stream *s, int fd)
{
	ssize_t r;
	int w;

	if ((w = stream_flush(s)) != STREAM_OK)
		return w;
	for (;;) {
		r = stream_sendmsg_fd(s->fd, fd, 0);
		if (r == 1) {
			s->nwritten++;
			return STREAM_OK;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if ((w = stream_wait(s, POLLOUT)) != STREAM_OK)
				return s->status = w;
			continue;
		}
		return s->status = STREAM_ERROR;
	}
}

int
stream_recv_fd(struct stream *s, int *fd)
{
	int c, i;

	*fd = -1;
	if (!(s->flags & STREAM_FDPASS))
		log_panic("stream_recv_fd: stream was not opened with STREAM_FDPASS");
	c = stream_getc(s);
	if (c < 0)
		return c;
	if (c != FD_MARK || s->nfds == 0) {
		log_warn("peer did not pass the expected descriptor");
		return s->status = STREAM_ERROR;
	}
	*fd = s->fds[0];
	for (i = 1; i < s->nfds; i++)
		s->fds[i - 1] = s->fds[i];
	s->nfds--;
	return STREAM_OK;
}
