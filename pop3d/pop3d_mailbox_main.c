/*
 * pop3d-mailbox - the mailbox part of the POP3 server (pop3d(8)).
 *
 * master.cf: "pop3d-mailbox unix - n n - - pop3d-mailbox".  Stays root:
 * each session it accepts from the login part runs in a process of its
 * own as the mailbox owner (pop3d_mailbox.c).  It opens the mailbox
 * tables in pre_init; when one changes it exits after the current
 * request and the master starts a fresh process.  Not chrooted: mailboxes
 * live anywhere (virtual_mailbox_base, home directories).
 */
#include "config.h"

#include <stdlib.h>

#include "log.h"
#include "pop3d.h"
#include "server.h"

static void
mailbox_pre_init(struct server_ctx *ctx)
{
	pop3d_mailbox_init(ctx->privileged);
}

static void
mailbox_service(struct stream *conn, struct server_ctx *ctx)
{
	pop3d_mailbox_serve(conn, ctx->privileged);
	if (pop3d_mailbox_changed()) {
		log_info("a mailbox table changed; restarting");
		stream_free(conn);
		exit(0);
	}
}

int
main(int argc, char **argv)
{
	static const struct server_desc desc = {
		.name = "pop3d-mailbox",
		.kind = SERVER_SINGLE,
		.identity = SERVER_ID_ROOT,
		.root_ok = true,
		.pre_init = mailbox_pre_init,
		.service = mailbox_service,
	};

	server_main(argc, argv, &desc);
}
