/*
 * ipc - attribute lists over Unix-domain stream sockets (see ipc.h and
 * doc/ipc.md, which is the specification).
 *
 * Every internal client and server uses this module to frame its
 * requests and replies.  The sending side is trusted to be our own code:
 * a bad attribute name there is a bug and aborts.  The receiving side
 * trusts nothing: names are checked byte by byte, and every value, every
 * list and the number of attributes are capped before memory is used.
 * After any framing error the position in the stream is undefined, so
 * callers must drop the connection.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "ipc.h"
#include "log.h"
#include "proto.h"
#include "str.h"
#include "xalloc.h"

static int ipc_fail(struct ipc_msg *m, int status);

/* The greeting is small; a peer that sends more is not a Postern server. */
#define IPC_HELLO_VALUE_MAX 256
#define IPC_HELLO_LIST_MAX  4096
#define IPC_HELLO_ATTRS_MAX 32
#define IPC_VERSION_MAX     1000000

static const struct ipc_limits ipc_default_limits = {
	IPC_VALUE_MAX_DEFAULT,
	IPC_LIST_MAX_DEFAULT,
	IPC_ATTRS_MAX_DEFAULT,
};

/* ipc_seterr - replace the contents of err (which may be NULL) */
static void ipc_seterr(struct buf *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
ipc_seterr(struct buf *err, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return;
	buf_reset(err);
	va_start(ap, fmt);
	buf_vprintf(err, fmt, ap);
	va_end(ap);
}

static bool
ipc_name_char(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

bool
ipc_name_valid(const char *name)
{
	size_t i;

	if (name == NULL)
		return false;
	for (i = 0; name[i]; i++)
		if (i >= IPC_NAME_MAX || !ipc_name_char((unsigned char)name[i]))
			return false;
	return i > 0;
}

const char *
ipc_strerror(int status)
{
	switch (status) {
	case IPC_ERR_SYNTAX:
		return "malformed attribute list";
	case IPC_ERR_TOOBIG:
		return "attribute list over its size limit";
	case IPC_ERR_PROTO:
		return "protocol mismatch";
	default:
		return stream_strerror(status);
	}
}

void
ipc_msg_init(struct ipc_msg *m)
{
	m->attrs = NULL;
	m->n = m->cap = 0;
	buf_init(&m->store, 0);
}

void
ipc_msg_reset(struct ipc_msg *m)
{
	m->n = 0;
	buf_reset(&m->store);
}

void
ipc_msg_free(struct ipc_msg *m)
{
	free(m->attrs);
	m->attrs = NULL;
	m->n = m->cap = 0;
	buf_free(&m->store);
}

/* Sending. */

int
ipc_put_str(struct stream *s, const char *name, const char *value)
{
	int r;

	if (!ipc_name_valid(name))
		log_panic("ipc_put_str: invalid attribute name \"%s\"", name ? name : "(null)");
	if (value == NULL)
		log_panic("ipc_put_str: attribute %s has no value", name);
	/* Write the terminating NULs of both strings along with them. */
	if ((r = stream_write(s, name, strlen(name) + 1)) != STREAM_OK)
		return r;
	return stream_write(s, value, strlen(value) + 1);
}

int
ipc_put_int(struct stream *s, const char *name, long long value)
{
	char num[32];

	snprintf(num, sizeof(num), "%lld", value);
	return ipc_put_str(s, name, num);
}

int
ipc_put_end(struct stream *s)
{
	int r;

	if ((r = stream_write(s, "", 1)) != STREAM_OK)
		return r;
	return stream_flush(s);
}

void
ipc_buf_str(struct buf *out, const char *name, const char *value)
{
	if (!ipc_name_valid(name))
		log_panic("ipc_buf_str: invalid attribute name \"%s\"", name ? name : "(null)");
	if (value == NULL)
		log_panic("ipc_buf_str: attribute %s has no value", name);
	buf_append(out, name, strlen(name) + 1);
	buf_append(out, value, strlen(value) + 1);
}

void
ipc_buf_int(struct buf *out, const char *name, long long value)
{
	char num[32];

	snprintf(num, sizeof(num), "%lld", value);
	ipc_buf_str(out, name, num);
}

void
ipc_buf_end(struct buf *out)
{
	buf_putc(out, 0);
}

int
ipc_parse(const unsigned char *p, size_t len, struct ipc_msg *m, const struct ipc_limits *lim, size_t *used)
{
	const unsigned char *end = p + len, *q = p, *nul;
	size_t nlen, vlen, i;
	struct ipc_attr *a;

	if (lim == NULL)
		lim = &ipc_default_limits;
	ipc_msg_reset(m);
	for (;;) {
		if ((size_t)(q - p) > lim->list_max)
			return ipc_fail(m, IPC_ERR_TOOBIG);
		if (q == end)
			return ipc_fail(m, 0);
		if (*q == 0) {
			*used = (size_t)(q - p) + 1;
			return 1;
		}
		if (m->n >= lim->attrs_max)
			return ipc_fail(m, IPC_ERR_TOOBIG);
		/* the name */
		nul = memchr(q, 0, (size_t)(end - q) < IPC_NAME_MAX + 1 ? (size_t)(end - q) : IPC_NAME_MAX + 1);
		if (nul == NULL)
			return ipc_fail(m, (size_t)(end - q) > IPC_NAME_MAX ? IPC_ERR_SYNTAX : 0);
		nlen = (size_t)(nul - q);
		for (i = 0; i < nlen; i++)
			if (!ipc_name_char(q[i]))
				return ipc_fail(m, IPC_ERR_SYNTAX);
		/* the value */
		nul = memchr(q + nlen + 1, 0, (size_t)(end - (q + nlen + 1)));
		if (nul == NULL) {
			vlen = (size_t)(end - (q + nlen + 1));
			return ipc_fail(m, vlen > lim->value_max ? IPC_ERR_TOOBIG : 0);
		}
		vlen = (size_t)(nul - (q + nlen + 1));
		if (vlen > lim->value_max)
			return ipc_fail(m, IPC_ERR_TOOBIG);
		if (m->n == m->cap) {
			m->cap = m->cap ? m->cap * 2 : 16;
			m->attrs = xreallocarray(m->attrs, m->cap, sizeof(*m->attrs));
		}
		a = &m->attrs[m->n++];
		a->name_off = m->store.len;
		buf_append(&m->store, q, nlen + 1);
		a->value_off = m->store.len;
		a->value_len = vlen;
		buf_append(&m->store, q + nlen + 1, vlen + 1);
		q = nul + 1;
	}
}

/* Receiving. */

/*
 * ipc_scan - move input bytes up to and including the next NUL into m's
 * store, at most max bytes (the NUL included).  Works on the stream's
 * buffered input in chunks (memchr) rather than one call per byte: the
 * buffer fields are part of stream.h's public structure, and the input
 * is refilled through stream_getc() only, so the stream's bounds,
 * timeouts and descriptor collection all still apply.  Returns the
 * number of bytes before the NUL, or a negative status: a stream error,
 * or IPC_ERR_TOOBIG when max bytes passed without a NUL.  *got counts
 * the bytes consumed.
 */
static ssize_t
ipc_scan(struct stream *s, struct buf *store, size_t max, size_t *got)
{
	size_t start = store->len, avail, take;
	unsigned char *nul;
	int c;

	*got = 0;
	for (;;) {
		if (*got >= max)
			return IPC_ERR_TOOBIG;
		if (s->rpos == s->rend) {
			if ((c = stream_getc(s)) < 0)
				return c;
			buf_putc(store, c);
			++*got;
			if (c == 0)
				return (ssize_t)(store->len - start - 1);
			continue;
		}
		avail = s->rend - s->rpos;
		take = max - *got;
		if (take > avail)
			take = avail;
		nul = memchr(s->rbuf + s->rpos, 0, take);
		if (nul != NULL)
			take = (size_t)(nul - (s->rbuf + s->rpos)) + 1;
		buf_append(store, s->rbuf + s->rpos, take);
		s->rpos += take;
		*got += take;
		if (nul != NULL)
			return (ssize_t)(store->len - start - 1);
	}
}

/* ipc_fail - reset m and pass on an error status */
static int
ipc_fail(struct ipc_msg *m, int status)
{
	ipc_msg_reset(m);
	return status;
}

int
ipc_get(struct stream *s, struct ipc_msg *m, const struct ipc_limits *lim)
{
	size_t total = 0, got, name_off, value_off, i, max;
	struct ipc_attr *a;
	ssize_t n;
	int c;

	if (lim == NULL)
		lim = &ipc_default_limits;
	ipc_msg_reset(m);
	for (;;) {
		/*
		 * The first byte of a name decides between the end of the list and
		 * another attribute.  EOF here on an empty list is a clean close by
		 * the peer; anywhere else it truncates the list.
		 */
		if ((c = stream_getc(s)) < 0)
			return ipc_fail(m, (c == STREAM_EOF && total > 0) ? IPC_ERR_SYNTAX : c);
		if (++total > lim->list_max)
			return ipc_fail(m, IPC_ERR_TOOBIG);
		if (c == 0)
			return STREAM_OK;
		if (m->n >= lim->attrs_max)
			return ipc_fail(m, IPC_ERR_TOOBIG);
		name_off = m->store.len;
		buf_putc(&m->store, c);
		n = ipc_scan(s, &m->store, IPC_NAME_MAX, &got);
		total += got;
		if (n == STREAM_EOF || n == IPC_ERR_TOOBIG)
			return ipc_fail(m, IPC_ERR_SYNTAX);
		if (n < 0)
			return ipc_fail(m, (int)n);
		if (total > lim->list_max)
			return ipc_fail(m, IPC_ERR_TOOBIG);
		for (i = name_off; i < m->store.len - 1; i++)
			if (!ipc_name_char(m->store.data[i]))
				return ipc_fail(m, IPC_ERR_SYNTAX);

		value_off = m->store.len;
		/*
		 * Allow one byte past the value cap so that an over-long value is
		 * told apart, but never more than the list has left.
		 */
		max = lim->value_max < SIZE_MAX ? lim->value_max + 1 : SIZE_MAX;
		if (max > lim->list_max - total)
			max = lim->list_max - total;
		n = ipc_scan(s, &m->store, max, &got);
		total += got;
		if (n == STREAM_EOF)
			return ipc_fail(m, IPC_ERR_SYNTAX);
		if (n < 0)
			return ipc_fail(m, (int)n);
		if ((size_t)n > lim->value_max || total > lim->list_max)
			return ipc_fail(m, IPC_ERR_TOOBIG);

		if (m->n == m->cap) {
			m->cap = m->cap ? m->cap * 2 : 16;
			m->attrs = xreallocarray(m->attrs, m->cap, sizeof(*m->attrs));
		}
		a = &m->attrs[m->n++];
		a->name_off = name_off;
		a->value_off = value_off;
		a->value_len = (size_t)n;
	}
}

/* Reading a received list. */

size_t
ipc_msg_count(const struct ipc_msg *m)
{
	return m->n;
}

const char *
ipc_msg_name(const struct ipc_msg *m, size_t i)
{
	if (i >= m->n)
		log_panic("ipc_msg_name: index %zu of %zu", i, m->n);
	return (const char *)m->store.data + m->attrs[i].name_off;
}

const char *
ipc_msg_value(const struct ipc_msg *m, size_t i, size_t *len)
{
	if (i >= m->n)
		log_panic("ipc_msg_value: index %zu of %zu", i, m->n);
	if (len)
		*len = m->attrs[i].value_len;
	return (const char *)m->store.data + m->attrs[i].value_off;
}

const char *
ipc_msg_str(const struct ipc_msg *m, const char *name)
{
	size_t i;

	for (i = 0; i < m->n; i++)
		if (strcmp(ipc_msg_name(m, i), name) == 0)
			return ipc_msg_value(m, i, NULL);
	return NULL;
}

int
ipc_msg_int(const struct ipc_msg *m, const char *name, long long min, long long max, long long *out)
{
	const char *v = ipc_msg_str(m, name);

	if (v == NULL)
		return -1;
	return str_to_ll(v, min, max, out, NULL);
}

size_t
ipc_msg_count_name(const struct ipc_msg *m, const char *name)
{
	size_t i, n = 0;

	for (i = 0; i < m->n; i++)
		if (strcmp(ipc_msg_name(m, i), name) == 0)
			n++;
	return n;
}

static bool
ipc_in_list(const char *name, const char *const *list)
{
	if (list == NULL)
		return false;
	for (; *list; list++)
		if (strcmp(name, *list) == 0)
			return true;
	return false;
}

int
ipc_msg_check(
    const struct ipc_msg *m, const char *const *required, const char *const *optional, int mode, struct buf *err)
{
	const char *const *r;
	const char *name;
	size_t i;

	for (r = required; r != NULL && *r != NULL; r++)
		if (ipc_msg_str(m, *r) == NULL) {
			ipc_seterr(err, "missing attribute \"%s\"", *r);
			return -1;
		}
	if (!(mode & IPC_STRICT))
		return 0;
	for (i = 0; i < m->n; i++) {
		name = ipc_msg_name(m, i);
		if (!ipc_in_list(name, required) && !ipc_in_list(name, optional)) {
			ipc_seterr(err, "unknown attribute \"%s\"", name);
			return -1;
		}
	}
	return 0;
}

/* The greeting. */

int
ipc_send_hello(struct stream *s, const char *protocol, int version)
{
	int r;

	if ((r = ipc_put_str(s, ATTR_PROTOCOL, protocol)) != STREAM_OK)
		return r;
	if ((r = ipc_put_int(s, ATTR_VERSION, version)) != STREAM_OK)
		return r;
	return ipc_put_end(s);
}

int
ipc_expect_hello(struct stream *s, const char *protocol, int min_version, int *version)
{
	static const struct ipc_limits lim = { IPC_HELLO_VALUE_MAX, IPC_HELLO_LIST_MAX, IPC_HELLO_ATTRS_MAX };
	struct ipc_msg m;
	const char *name;
	long long v;
	int r;

	ipc_msg_init(&m);
	if ((r = ipc_get(s, &m, &lim)) != STREAM_OK)
		goto out;
	name = ipc_msg_str(&m, ATTR_PROTOCOL);
	if (name == NULL || strcmp(name, protocol) != 0 || ipc_msg_int(&m, ATTR_VERSION, 0, IPC_VERSION_MAX, &v) < 0 ||
	    v < min_version) {
		log_warn("expected protocol %s version %d or later, the peer greeted with %s version %s", protocol,
		    min_version, name ? name : "(none)",
		    ipc_msg_str(&m, ATTR_VERSION) ? ipc_msg_str(&m, ATTR_VERSION) : "(none)");
		r = IPC_ERR_PROTO;
		goto out;
	}
	if (version)
		*version = (int)v;
out:
	ipc_msg_free(&m);
	return r;
}

/* Descriptors and connections. */

static const char *
ipc_type_name(mode_t type)
{
	switch (type & S_IFMT) {
	case S_IFREG:
		return "regular file";
	case S_IFDIR:
		return "directory";
	case S_IFSOCK:
		return "socket";
	case S_IFIFO:
		return "pipe";
	case S_IFCHR:
		return "character device";
	case S_IFBLK:
		return "block device";
	case S_IFLNK:
		return "symbolic link";
	default:
		return "unknown file type";
	}
}

static const char *
ipc_accmode_name(int accmode)
{
	switch (accmode) {
	case O_RDONLY:
		return "read-only";
	case O_WRONLY:
		return "write-only";
	case O_RDWR:
		return "read-write";
	default:
		return "unknown access mode";
	}
}

int
ipc_check_fd(int fd, mode_t type, int accmode, struct buf *err)
{
	struct stat st;
	int fl;

	if (fd < 0) {
		ipc_seterr(err, "no descriptor");
		return -1;
	}
	if (type != (mode_t)-1) {
		if (fstat(fd, &st) < 0) {
			ipc_seterr(err, "passed descriptor: fstat: %s", strerror(errno));
			return -1;
		}
		if ((st.st_mode & S_IFMT) != (type & S_IFMT)) {
			ipc_seterr(err, "passed descriptor is a %s, expected a %s", ipc_type_name(st.st_mode),
			    ipc_type_name(type));
			return -1;
		}
	}
	if (accmode != -1) {
		if ((fl = fcntl(fd, F_GETFL)) < 0) {
			ipc_seterr(err, "passed descriptor: fcntl: %s", strerror(errno));
			return -1;
		}
		if ((fl & O_ACCMODE) != accmode) {
			ipc_seterr(err, "passed descriptor is %s, expected %s", ipc_accmode_name(fl & O_ACCMODE),
			    ipc_accmode_name(accmode));
			return -1;
		}
	}
	return 0;
}

struct stream *
ipc_connect(const char *path, int timeout_seconds, struct buf *err)
{
	struct sockaddr_un sun;
	struct stream *s;
	struct timeval tv;
	int fd, saved;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (path == NULL || *path == 0 || strlen(path) >= sizeof(sun.sun_path)) {
		ipc_seterr(err, "connect to %s: socket path empty or too long", path ? path : "(null)");
		return NULL;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
		ipc_seterr(err, "connect to %s: socket: %s", path, strerror(errno));
		return NULL;
	}
	/*
	 * A blocking connect to a Unix socket waits while the listener's backlog
	 * is full; the send timeout bounds that wait (Linux applies it to
	 * connect on AF_UNIX).  The stream switches to non-blocking I/O later.
	 */
	if (timeout_seconds > 0) {
		tv.tv_sec = timeout_seconds;
		tv.tv_usec = 0;
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	while (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		if (errno == EINTR)
			continue;
		if (errno == EISCONN)
			break;
		saved = errno;
		close(fd);
		ipc_seterr(err, "connect to %s: %s", path,
		    saved == EAGAIN || saved == EINPROGRESS ? "timed out (service busy)" : strerror(saved));
		return NULL;
	}
	if (timeout_seconds > 0) {
		tv.tv_sec = tv.tv_usec = 0;
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	s = stream_new(fd, STREAM_FDPASS);
	stream_set_timeout(s, timeout_seconds);
	return s;
}
