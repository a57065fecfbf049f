/*
 * showq - the queue listing for users who cannot read the queue: mailq
 * (sendmail -bp) run by anybody but root reaches it through postdrop -p,
 * on public/showq (group setgid_group).  Like Postfix's showq it shows
 * every local user the envelopes (queue ID, size, arrival, sender,
 * recipients, deferral reasons), never a message's content: "postern
 * cat" stays with root and the mail_owner.
 *
 * One listing per connection (doc/ipc.md 8.7).  The protocol and the
 * listing are common/qlist.c, the same code as "postern queue": it runs
 * as the mail_owner, trusts nothing from the client but a bounded
 * request, escapes and bounds what it sends, and drops a client that
 * stops reading after a minute.
 */
#include "config.h"

#include <time.h>

#include "qlist.h"
#include "server.h"

static void
showq_service(struct stream *client, struct server_ctx *ctx)
{
	(void)ctx;
	qlist_serve(client);
}

static void
showq_pre_init(struct server_ctx *ctx)
{
	(void)ctx;
	/* Arrival times are shown in local time: read the zone before any chroot. */
	tzset();
}

int
main(int argc, char **argv)
{
	static const struct server_desc desc = {
		.name = "showq",
		.kind = SERVER_SINGLE,
		.identity = SERVER_ID_QUEUE,
		.chroot_ok = true,
		.pre_init = showq_pre_init,
		.service = showq_service,
	};

	server_main(argc, argv, &desc);
}
