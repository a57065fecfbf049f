/*
 * smtp - the outbound SMTP client (smtp(8)): qmgr's delivery agent for
 * mail that leaves this host.
 *
 * Runs as network_user, chrooted in the queue directory on a root
 * install: the CA file, the tables and the resolver configuration are
 * read in pre_init, before the chroot; when a table changes, the process
 * exits after its client and the master starts a fresh one.  qmgr
 * connects to private/smtp and sends delivery requests (doc/ipc.md 8.3);
 * after each one the agent reports every recipient and, while it holds a
 * usable SMTP session to that next hop, offers the connection for the
 * next request (reuse), which qmgr takes when it has more mail for the
 * same destination and otherwise closes.
 */
#include "config.h"

#include <stdlib.h>

#include "cfg.h"
#include "deliver.h"
#include "log.h"
#include "server.h"
#include "smtp.h"

static void
smtp_pre_init(struct server_ctx *ctx)
{
	struct buf err = BUF_INIT;

	(void)ctx;
	if (smtp_init(&err) < 0)
		server_config_error("%s", buf_str(&err));
	buf_free(&err);
}

static void
smtp_service(struct stream *client, struct server_ctx *ctx)
{
	struct smtp_session *cache = NULL;
	struct deliver_request req;
	struct buf err = BUF_INIT;
	struct stream *s;
	int rc, flags;

	(void)ctx;
	/* The same socket, able to receive the queue file descriptor. */
	s = stream_new(client->fd, STREAM_FDPASS | STREAM_NOCLOSE);
	stream_set_timeout(s, smtp_conf.ipc_timeout);
	rc = deliver_request_read(s, &req, &err);
	while (rc == 0) {
		flags = smtp_request(s, &req, &cache);
		if (deliver_done_send_flags(s, flags) != STREAM_OK) {
			log_warn("%s: cannot report to qmgr: %s", req.queue_id, stream_strerror(stream_status(s)));
			flags = 0;
		}
		deliver_request_free(&req);
		if (!(flags & DELIVER_DONE_REUSE))
			break;
		/* qmgr sends the next request at once, or hangs up. */
		stream_set_timeout(s, SMTP_REUSE_WAIT);
		rc = deliver_request_next(s, &req, &err);
		stream_set_timeout(s, smtp_conf.ipc_timeout);
	}
	if (rc < 0)
		log_warn("delivery request: %s", buf_str(&err));
	smtp_session_close(cache);
	stream_free(s);
	buf_free(&err);
	if (smtp_tables_changed()) {
		log_info("a lookup table changed; restarting");
		exit(0);
	}
}

int
main(int argc, char **argv)
{
	static const struct server_desc desc = {
		.name = "smtp",
		.kind = SERVER_SINGLE,
		.identity = SERVER_ID_NETWORK,
		.chroot_ok = true,
		.pre_init = smtp_pre_init,
		.service = smtp_service,
	};

	server_main(argc, argv, &desc);
}
