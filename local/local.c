/*
 * local - the local delivery agent (local(8)).
 *
 * qmgr connects to private/local and hands over one delivery request at
 * a time: the queue ID, the sender, the recipients with their record
 * offsets, and the queue file as a read-only descriptor (doc/ipc.md 8.3).
 * local delivers each recipient (local_resolve.c) and answers one status
 * per recipient, then "done" with "reuse": qmgr may send the next request
 * on the same connection.  It runs as root so that it can deliver as
 * each recipient, and so it talks to nobody but qmgr: a peer whose
 * SO_PEERCRED uid is neither root nor mail_owner (our own uid when not
 * started as root) is turned away before a byte is read.
 */
#include "config.h"

#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cfg.h"
#include "deliver.h"
#include "local.h"
#include "log.h"
#include "priv.h"
#include "server.h"

/*
 * Requests one connection may carry.  qmgr passes the next request for
 * any mailbox on the connection of one that just finished, which saves a
 * connection, an accept and two status messages to the master for each
 * delivery; the cap lets the master's max_use count.
 */
#define LOCAL_REUSE_MAX 100

static uid_t local_qmgr_uid; /* who may connect besides root */

static void
local_pre_init(struct server_ctx *ctx)
{
	struct buf err = BUF_INIT;
	gid_t gid;

	if (local_init(&err) < 0)
		server_config_error("%s", buf_str(&err));
	local_qmgr_uid = geteuid();
	if (ctx->privileged && priv_user(cfg_str(P_MAIL_OWNER), &local_qmgr_uid, &gid, &err) < 0)
		server_config_error("mail_owner: %s", buf_str(&err));
	buf_free(&err);
}

static void
local_service(struct stream *client, struct server_ctx *ctx)
{
	struct deliver_request req;
	struct buf err = BUF_INIT;
	struct stream *s;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	int rc, flags, served = 0;

	(void)ctx;
	if (getsockopt(client->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		log_warn("client credentials: %m");
		return;
	}
	if (cred.uid != 0 && cred.uid != local_qmgr_uid) {
		log_warn("refusing a client with uid %ld (pid %ld): only qmgr may request deliveries", (long)cred.uid,
		    (long)cred.pid);
		return;
	}
	/* The same socket, able to receive the queue file descriptor. */
	s = stream_new(client->fd, STREAM_FDPASS | STREAM_NOCLOSE);
	stream_set_timeout(s, local_conf.ipc_timeout);
	rc = deliver_request_read(s, &req, &err);
	while (rc == 0) {
		local_request(s, &req);
		/* Offer the connection for the next request, LOCAL_REUSE_MAX times. */
		flags = ++served < LOCAL_REUSE_MAX ? DELIVER_DONE_REUSE : 0;
		if (deliver_done_send_flags(s, flags) != STREAM_OK) {
			log_warn("%s: cannot report to qmgr: %s", req.queue_id, stream_strerror(stream_status(s)));
			flags = 0;
		}
		deliver_request_free(&req);
		if (!(flags & DELIVER_DONE_REUSE))
			break;
		/* qmgr sends the next request at once, or hangs up. */
		rc = deliver_request_next(s, &req, &err);
	}
	if (rc < 0)
		log_warn("delivery request: %s", buf_str(&err));
	stream_free(s);
	buf_free(&err);
}

int
main(int argc, char **argv)
{
	static const struct server_desc desc = {
		.name = "local",
		.kind = SERVER_SINGLE,
		.identity = SERVER_ID_ROOT,
		.root_ok = true,
		.pre_init = local_pre_init,
		.service = local_service,
	};

	server_main(argc, argv, &desc);
}
