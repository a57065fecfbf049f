/*
 * server - the skeleton every daemon runs in.
 *
 * A daemon's main() fills in a struct server_desc and calls server_main(),
 * which never returns.  The skeleton owns everything that is not the
 * daemon's job, in this order:
 *
 *   1. options from the master (master_proto.h) and -o overrides;
 *      refuses to run by hand from a terminal;
 *   2. main.cf, checked as a whole (errors exit with MASTER_EXIT_CONFIG);
 *   3. logging (maillog_file or syslog) and chdir to queue_directory;
 *   4. pre_init, still with the privileges it was started with (open
 *      tables and keys that the service identity cannot read);
 *   5. chroot to queue_directory when master.cf asks and the daemon
 *      allows it; then setgroups, setresgid, setresuid to the identity
 *      below, and a check that root cannot be regained;
 *   6. post_init, then the loop: accept and serve, tell the master when
 *      busy and when available, watchdog per client, exit after max_use
 *      clients, after max_idle idle seconds, or when the master says so.
 *
 * Run as a non-root user every privilege step is skipped (one debug log
 * line); everything else is the same.
 */
#ifndef POSTERN_SERVER_H
#define POSTERN_SERVER_H

#include <stdbool.h>
#include <sys/types.h>

#include "stream.h"

enum server_kind {
	SERVER_SINGLE, /* one client at a time: service() per connection */
	SERVER_EVENT,  /* many clients: accept() hands new fds to the daemon's event loop */
};

enum server_identity {
	SERVER_ID_QUEUE,   /* mail_owner: cleanup, qmgr, pickup, showq */
	SERVER_ID_NETWORK, /* network_user: smtpd, smtp, pop3d login */
	SERVER_ID_ROOT,    /* stays root: local (switches per delivery) */
};

struct server_ctx {
	const char *service; /* master.cf service name */
	const char *type;    /* inet, unix, fifo, pass */
	int argc;            /* arguments after the options */
	char **argv;
	uid_t uid; /* identity after the privilege drop */
	gid_t gid;
	bool privileged; /* started as root */
};

struct server_desc {
	const char *name; /* program name in logs: postern/NAME */
	enum server_kind kind;
	enum server_identity identity;
	bool root_ok;   /* master.cf unpriv=n may keep root */
	bool chroot_ok; /* master.cf chroot=y is honoured */
	bool solitary;  /* exactly one process (qmgr) */
	void (*pre_init)(struct server_ctx *ctx);
	void (*post_init)(struct server_ctx *ctx);
	/* SERVER_SINGLE: serve one client; the skeleton frees the stream. */
	void (*service)(struct stream *client, struct server_ctx *ctx);
	/* SERVER_EVENT: a new client descriptor; the daemon owns it. */
	void (*accept)(int fd, struct server_ctx *ctx);
	/* SERVER_EVENT: the master asked us to go (may be NULL: exit at once). */
	void (*stop)(struct server_ctx *ctx);
};

_Noreturn void server_main(int argc, char **argv, const struct server_desc *desc);

/* Report a configuration problem and exit so the master does not restart us. */
_Noreturn void server_config_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* SERVER_EVENT daemons call these around work on one client (optional). */
void server_busy(void);
void server_idle(void);

#endif
