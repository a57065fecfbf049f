/*
 * echod - a service built only for the system tests of the master and
 * the skeleton.  It is a one-page daemon like every other: a service
 * function and a call to server_main().
 *
 * Each inet client gets "hello SERVICE PID", then one answer per line:
 *   pid            "pid N"
 *   id             "uid U gid G groups G1,G2,..."
 *   sleep N        sleeps N seconds, then "slept"
 *   crash          abort()
 *   quit           closes the connection
 *   anything else  "echo: " and the line
 * Arguments in master.cf: "fail-start" exits 1 before serving,
 * "config-error" reports a configuration error, "event" runs the
 * event-driven skeleton instead: one process serves every client at
 * once, answering each line with "PID: line".
 */
#include "config.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "event.h"
#include "log.h"
#include "server.h"
#include "str.h"

static void
echod_pre_init(struct server_ctx *ctx)
{
	int i;

	for (i = 0; i < ctx->argc; i++) {
		if (strcmp(ctx->argv[i], "fail-start") == 0)
			log_fatal("failing at start, as asked");
		if (strcmp(ctx->argv[i], "config-error") == 0)
			server_config_error("echod: a configuration error, as asked");
	}
}

static void
echod_service(struct stream *s, struct server_ctx *ctx)
{
	struct buf line = BUF_INIT;
	long long n;
	gid_t groups[64];
	int ng, i;

	stream_set_timeout(s, 60);
	/* Trigger clients (the master's wakeups) write and hang up: no greeting. */
	if (strcmp(ctx->type, "inet") == 0)
		stream_printf(s, "hello %s %ld\n", ctx->service, (long)getpid());
	while (stream_flush(s) == STREAM_OK && stream_getline(s, &line, 1000) == STREAM_OK) {
		char *cmd = str_trim((char *)line.data);

		if (strcmp(cmd, "W") == 0) {
			log_info("wakeup received");
			break;
		} else if (strcmp(cmd, "pid") == 0) {
			stream_printf(s, "pid %ld\n", (long)getpid());
		} else if (strcmp(cmd, "id") == 0) {
			ng = getgroups(64, groups);
			stream_printf(s, "uid %ld gid %ld groups ", (long)getuid(), (long)getgid());
			for (i = 0; i < ng; i++)
				stream_printf(s, "%s%ld", i ? "," : "", (long)groups[i]);
			stream_puts(s, "\n");
		} else if (strncmp(cmd, "sleep ", 6) == 0 && str_to_ll(cmd + 6, 0, 3600, &n, NULL) == 0) {
			sleep((unsigned)n);
			stream_puts(s, "slept\n");
		} else if (strcmp(cmd, "crash") == 0) {
			abort();
		} else if (strcmp(cmd, "quit") == 0) {
			break;
		} else {
			stream_printf(s, "echo: %s\n", cmd);
		}
	}
	stream_flush(s);
	buf_free(&line);
}

/* The event-driven form: each client is a read callback on the shared loop. */
struct eclient {
	struct stream *s;
	struct buf line;
};

static void
echod_event_read(int fd, int events, void *arg)
{
	struct eclient *c = arg;
	int r;

	(void)events;
	/* Everything already buffered, then back to the loop: never block here. */
	do {
		r = stream_getline(c->s, &c->line, 1000);
		if (r == STREAM_OK) {
			stream_printf(c->s, "%ld: %s", (long)getpid(), buf_str(&c->line));
			if (stream_flush(c->s) != STREAM_OK)
				r = STREAM_EOF;
		}
	} while (r == STREAM_OK && stream_pending(c->s) > 0);
	if (r != STREAM_OK) {
		event_forget(fd);
		stream_free(c->s);
		buf_free(&c->line);
		free(c);
	}
}

static void
echod_accept(int fd, struct server_ctx *ctx)
{
	struct eclient *c = calloc(1, sizeof(*c));

	if (c == NULL)
		log_fatal("out of memory");
	c->s = stream_new(fd, 0);
	stream_set_timeout(c->s, 10);
	stream_printf(c->s, "hello %s %ld\n", ctx->service, (long)getpid());
	stream_flush(c->s);
	event_enable_read(fd, echod_event_read, c);
}

int
main(int argc, char **argv)
{
	static const struct server_desc event_desc = {
		.name = "echod",
		.kind = SERVER_EVENT,
		.identity = SERVER_ID_QUEUE,
		.accept = echod_accept,
	};
	static const struct server_desc desc = {
		.name = "echod",
		.kind = SERVER_SINGLE,
		.identity = SERVER_ID_NETWORK,
		.root_ok = true,
		.chroot_ok = true,
		.pre_init = echod_pre_init,
		.service = echod_service,
	};

	int i;

	for (i = 1; i < argc; i++)
		if (strcmp(argv[i], "event") == 0)
			server_main(argc, argv, &event_desc);
	server_main(argc, argv, &desc);
}
