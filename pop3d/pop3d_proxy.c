/*
 * pop3d_proxy - relay a TLS client's session to the mailbox part.
 *
 * A TLS session cannot be passed to another process, so for a client
 * that logged in over TLS the login part keeps the session and relays
 * plaintext between it and the mailbox part's session process over the
 * hand-off connection (doc/ipc.md 8.6), much as Dovecot's login
 * processes do.  The login part still parses nothing here: bytes go
 * through unread.
 *
 * Both directions move independently, through one bounded buffer each,
 * without blocking (poll on both descriptors; the TLS transport says
 * whether it needs to read or write to make progress), so a client that
 * pipelines while a long RETR streams back cannot wedge the relay.  It
 * ends when the mailbox part closes (QUIT, an error, its timeout), when
 * the client goes away (then the mailbox part sees end of file and
 * changes nothing), or after timeout seconds in which neither side moved.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "pop3d.h"

#define RELAY_BUF 16384

struct relay {
	unsigned char data[RELAY_BUF];
	size_t len;
};

static void
relay_consume(struct relay *r, size_t n)
{
	memmove(r->data, r->data + n, r->len - n);
	r->len -= n;
}

/* again - the errno of a call that would block */
static bool
again(void)
{
	return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
}

void
pop3d_proxy(struct stream *c, struct stream *m, int timeout)
{
	static struct relay up, down; /* client -> mailbox, mailbox -> client */
	bool c_eof = false, m_eof = false, m_shut = false;
	short c_rwant = POLLIN, c_wwant = POLLOUT;
	struct pollfd pfd[2];
	const char *why = NULL;
	ssize_t n;
	short want;
	int r;

	up.len = down.len = 0;
	/* What the mailbox part sent behind its reply, and is buffered already, goes first. */
	if (m->rend > m->rpos) {
		down.len = m->rend - m->rpos;
		memcpy(down.data, m->rbuf + m->rpos, down.len);
		m->rpos = m->rend;
	}
	for (;;) {
		bool progress = false;

		if (!c_eof && up.len < RELAY_BUF) {
			want = POLLIN;
			n = c->ops->read(c, up.data + up.len, RELAY_BUF - up.len, &want);
			if (n > 0) {
				up.len += (size_t)n;
				progress = true;
			} else if (n == 0) {
				c_eof = progress = true;
			} else if (again()) {
				c_rwant = errno == EINTR ? POLLIN : want;
				progress = errno == EINTR;
			} else {
				why = "client read error";
				break;
			}
		}
		if (up.len > 0) {
			n = send(m->fd, up.data, up.len, MSG_NOSIGNAL);
			if (n > 0) {
				relay_consume(&up, (size_t)n);
				progress = true;
			} else if (n < 0 && !again()) {
				why = "mailbox part write error";
				break;
			}
		}
		if (c_eof && up.len == 0 && !m_shut) {
			/* Let the mailbox part finish what the client sent (QUIT), then hear the end. */
			(void)shutdown(m->fd, SHUT_WR);
			m_shut = true;
		}
		if (!m_eof && down.len < RELAY_BUF) {
			n = read(m->fd, down.data + down.len, RELAY_BUF - down.len);
			if (n > 0) {
				down.len += (size_t)n;
				progress = true;
			} else if (n == 0) {
				m_eof = progress = true;
			} else if (!again()) {
				m_eof = progress = true; /* as end of file: deliver what we have */
			}
		}
		if (down.len > 0) {
			want = POLLOUT;
			n = c->ops->write(c, down.data, down.len, &want);
			if (n > 0) {
				relay_consume(&down, (size_t)n);
				progress = true;
			} else if (n < 0 && again()) {
				c_wwant = errno == EINTR ? POLLOUT : want;
			} else {
				why = c_eof ? NULL : "client write error";
				break;
			}
		}
		if (m_eof && down.len == 0)
			break; /* the session is over */
		if (progress)
			continue;
		pfd[0].fd = c->fd;
		pfd[0].events = 0;
		if (!c_eof && up.len < RELAY_BUF)
			pfd[0].events |= c_rwant;
		if (down.len > 0)
			pfd[0].events |= c_wwant;
		pfd[1].fd = m->fd;
		pfd[1].events = 0;
		if (!m_eof && down.len < RELAY_BUF)
			pfd[1].events |= POLLIN;
		if (up.len > 0)
			pfd[1].events |= POLLOUT;
		/* A closed peer reports POLLHUP even when nothing is asked: do not ask then. */
		if (pfd[0].events == 0)
			pfd[0].fd = -1;
		if (pfd[1].events == 0)
			pfd[1].fd = -1;
		do
			r = poll(pfd, 2, timeout > 0 ? timeout * 1000 : -1);
		while (r < 0 && errno == EINTR);
		if (r < 0) {
			why = "poll failed";
			break;
		}
		if (r == 0) {
			why = "timeout";
			break;
		}
	}
	if (why != NULL)
		log_info("TLS relay ended: %s", why);
	explicit_bzero(&up, sizeof(up));
	explicit_bzero(&down, sizeof(down));
}
