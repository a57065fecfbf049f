/*
 * fakeagent - a delivery agent that exists only for qmgr's system tests.
 * It speaks the real delivery protocol (deliver.h, doc/ipc.md 8.3) and
 * decides each recipient's fate from the start of its local part:
 *
 *   ok...      sent, 2.0.0
 *   defer...   deferred, 4.2.0 "fake deferral"
 *   bounce...  bounced, 5.1.1 "fake bounce"
 *   crash...   abort() before answering anything (the whole request)
 *   slow...    sleep 3 seconds, then sent
 *   anything else: sent
 *
 * master.cf: "local unix - n n - - /path/to/fakeagent LOG [DIR]".  For
 * every sent recipient it appends one line to LOG:
 *
 *   QUEUEID ADDRESS START END
 *
 * START and END are the wall-clock seconds (with microseconds) when it
 * began and finished that recipient, so tests can check that deliveries
 * to one mailbox never overlap.  With DIR it also stores each delivered
 * message's content, once per request, as DIR/QUEUEID.N (N counts up).
 * Both are opened before the privilege drop, so the test may own them.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "buf.h"
#include "deliver.h"
#include "log.h"
#include "qfile.h"
#include "server.h"

static int log_fd = -1;
static int dir_fd = -1;

static void
fake_pre_init(struct server_ctx *ctx)
{
	if (ctx->argc < 1)
		server_config_error("usage: fakeagent LOGFILE [DIR]");
	if ((log_fd = open(ctx->argv[0], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666)) < 0)
		log_fatal("open %s: %m", ctx->argv[0]);
	if (ctx->argc > 1 && (dir_fd = open(ctx->argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		log_fatal("open %s: %m", ctx->argv[1]);
}

static double
now(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (double)tv.tv_sec + tv.tv_usec / 1e6;
}

/* store - the message content into DIR/QUEUEID.N */
static void
store(const struct deliver_request *req)
{
	struct qfile_env env;
	struct buf err = BUF_INIT, chunk = BUF_INIT;
	char name[64];
	off_t pos;
	int fd = -1, i, r;

	if (dir_fd < 0)
		return;
	if (qfile_read(req->fd, &env, NULL, &err) != 0) {
		log_warn("%s: %s", req->queue_id, buf_str(&err));
		buf_free(&err);
		return;
	}
	for (i = 0; i < 1000 && fd < 0; i++) {
		snprintf(name, sizeof(name), "%s.%d", req->queue_id, i);
		fd = openat(dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0 && errno != EEXIST)
			break;
	}
	if (fd < 0) {
		log_warn("%s: cannot store the content: %m", req->queue_id);
	} else {
		pos = env.content_offset;
		while ((r = qfile_content_next(req->fd, &pos, &chunk, &err)) == 1)
			if (write(fd, chunk.data, chunk.len) != (ssize_t)chunk.len)
				log_warn("%s: write %s: %m", req->queue_id, name);
		close(fd);
	}
	qfile_env_free(&env);
	buf_free(&chunk);
	buf_free(&err);
}

static void
fake_service(struct stream *client, struct server_ctx *ctx)
{
	struct stream *s = stream_new(client->fd, STREAM_FDPASS | STREAM_NOCLOSE);
	struct deliver_request req;
	struct buf err = BUF_INIT, line = BUF_INIT;
	bool stored = false;
	double start;
	size_t i;

	(void)ctx;
	/* The skeleton's stream does not accept descriptors: ours, on the same socket, does. */
	stream_set_timeout(s, 60);
	if (deliver_request_read(s, &req, &err) < 0) {
		log_warn("bad request: %s", buf_str(&err));
		buf_free(&err);
		stream_free(s);
		return;
	}
	for (i = 0; i < req.nrcpts; i++)
		if (strncmp(req.rcpts[i].addr, "crash", 5) == 0)
			abort();
	for (i = 0; i < req.nrcpts; i++) {
		const char *a = req.rcpts[i].addr;
		off_t off = req.rcpts[i].offset;

		start = now();
		if (strncmp(a, "defer", 5) == 0) {
			deliver_status_send(s, off, DELIVER_DEFERRED, "4.2.0", "fake", "fake deferral");
			continue;
		}
		if (strncmp(a, "bounce", 6) == 0) {
			deliver_status_send(s, off, DELIVER_BOUNCED, "5.1.1", "fake", "fake bounce");
			continue;
		}
		if (strncmp(a, "slow", 4) == 0)
			sleep(3);
		if (!stored) {
			store(&req);
			stored = true;
		}
		buf_reset(&line);
		buf_printf(&line, "%s %s %.6f %.6f\n", req.queue_id, a, start, now());
		if (write(log_fd, line.data, line.len) != (ssize_t)line.len)
			log_warn("write the delivery log: %m");
		deliver_status_send(s, off, DELIVER_SENT, "2.0.0", "fake", "delivered by fakeagent");
	}
	deliver_done_send(s);
	stream_free(s);
	deliver_request_free(&req);
	buf_free(&line);
	buf_free(&err);
}

int
main(int argc, char **argv)
{
	static const struct server_desc desc = {
		.name = "fakeagent",
		.kind = SERVER_SINGLE,
		.identity = SERVER_ID_QUEUE,
		.pre_init = fake_pre_init,
		.service = fake_service,
	};

	server_main(argc, argv, &desc);
}
