/*
 * logsink - the benchmark's syslog daemon: one Unix datagram socket in,
 * one log file out, every line stamped with microseconds.
 *
 * bench/run starts Postern and Postfix in private mount namespaces where
 * /dev/log is this socket, so both log through syslog(3) exactly as they
 * do on a server, and both get the same clock: the kernel's receive time
 * of each datagram (SO_TIMESTAMP), which is the moment the daemon sent
 * it, however late this process gets to read it.  Postfix 3.7's own
 * maillog_file has whole seconds only, too coarse for latencies.
 *
 * Output lines look like maillog_file lines of Postern:
 *   "Nov 22 12:53:00.441562 bench postern/qmgr[3977]: ..."
 * Usage: logsink SOCKET OUTFILE.  Exits on SIGTERM (flushing first).
 * Trusts its senders (the benchmark's own daemons) only to send text; a
 * datagram is cut at 8 KiB and control characters are not interpreted.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t done;

static void
on_term(int sig)
{
	(void)sig;
	done = 1;
}

/* skip_header - past "<PRI>" and the "Mmm dd hh:mm:ss " that syslog(3) adds */
static const char *
skip_header(const char *p, size_t *len)
{
	const char *q = p, *end = p + *len;

	if (q < end && *q == '<') {
		while (q < end && *q != '>')
			q++;
		if (q < end)
			q++;
	}
	/* "Nov 22 12:53:00 " is 16 characters with a colon at 9 and 12 */
	if (end - q >= 16 && q[3] == ' ' && q[9] == ':' && q[12] == ':' &&
	    q[15] == ' ')
		q += 16;
	*len = (size_t)(end - q);
	return q;
}

int
main(int argc, char **argv)
{
	struct sockaddr_un sun;
	struct sigaction sa;
	char buf[8192], stamp[64], cbuf[CMSG_SPACE(sizeof(struct timeval))];
	int fd, on = 1, rcvbuf = 4 << 20;
	time_t stamp_sec = -1;
	FILE *out;

	if (argc != 3) {
		fprintf(stderr, "usage: logsink SOCKET OUTFILE\n");
		return 2;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	if ((out = fopen(argv[2], "a")) == NULL) {
		perror(argv[2]);
		return 1;
	}
	setvbuf(out, NULL, _IOFBF, 1 << 16);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		perror("socket");
		return 1;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(argv[1]) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "logsink: socket path too long\n");
		return 1;
	}
	strcpy(sun.sun_path, argv[1]);
	(void)unlink(argv[1]);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		perror("bind");
		return 1;
	}
	(void)chmod(argv[1], 0666);
	(void)setsockopt(fd, SOL_SOCKET, SO_TIMESTAMP, &on, sizeof(on));
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));

	while (!done) {
		struct iovec iov = {buf, sizeof(buf) - 1};
		struct msghdr msg = {0};
		struct cmsghdr *c;
		struct timeval tv = {0, 0};
		struct pollfd pfd = {fd, POLLIN, 0};
		const char *text;
		struct tm tm;
		ssize_t n;
		size_t len;

		msg.msg_iov = &iov;
		msg.msg_iovlen = 1;
		msg.msg_control = cbuf;
		msg.msg_controllen = sizeof(cbuf);
		n = recvmsg(fd, &msg, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				/* Queue drained: make the lines visible, then wait. */
				fflush(out);
				(void)poll(&pfd, 1, 200);
				continue;
			}
			if (errno == EINTR)
				continue;
			perror("recvmsg");
			break;
		}
		for (c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c))
			if (c->cmsg_level == SOL_SOCKET &&
			    c->cmsg_type == SCM_TIMESTAMP)
				memcpy(&tv, CMSG_DATA(c), sizeof(tv));
		if (tv.tv_sec == 0)
			gettimeofday(&tv, NULL);
		len = (size_t)n;
		while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == 0))
			len--;
		text = skip_header(buf, &len);
		/* localtime_r may look at the zone file; once a second is enough. */
		if (tv.tv_sec != stamp_sec) {
			localtime_r(&tv.tv_sec, &tm);
			strftime(stamp, sizeof(stamp), "%b %e %H:%M:%S", &tm);
			stamp_sec = tv.tv_sec;
		}
		fprintf(out, "%s.%06ld bench %.*s\n", stamp, (long)tv.tv_usec,
		    (int)len, text);
	}
	fflush(out);
	fclose(out);
	(void)unlink(argv[1]);
	return 0;
}
