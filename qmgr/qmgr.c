/*
 * qmgr - the queue manager's main: a service description for the
 * event-driven skeleton (one process, master.cf "qmgr unix n - n 300 1
 * qmgr"), what it reads once at start, and how it stops.  The work is in
 * the qmgr_*.c modules (qmgr.h).
 *
 * Runs as mail_owner in queue_directory.  Trusts main.cf and master.cf;
 * everything else it reads (queue files, logs, agents' replies, trigger
 * bytes) is checked where it is read.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "flow.h"
#include "event.h"
#include "log.h"
#include "mastercf.h"
#include "qmgr.h"
#include "server.h"
#include "stream.h"
#include "xalloc.h"

static struct mcf qmgr_mcf;
static int64_t drain_deadline;

static void
qmgr_pre_init(struct server_ctx *ctx)
{
	struct buf err = BUF_INIT;
	char *path;

	(void)ctx;
	qmgr_conf_load();
	/* The transports' process limits: a request per agent process, no more. */
	path = xasprintf("%s/master.cf", cfg_config_dir());
	if (mcf_load(path, &qmgr_mcf, &err) < 0) {
		log_warn("%s; using default_process_limit for every transport", buf_str(&err));
		memset(&qmgr_mcf, 0, sizeof(qmgr_mcf));
	}
	free(path);
	qmgr_deliver_init(&qmgr_mcf);
	/* Tables are opened with the privileges we start with. */
	buf_reset(&err);
	if ((qmgr_router = qmgr_router_open(&err)) == NULL)
		server_config_error("%s", buf_str(&err));
	buf_free(&err);
}

static void
qmgr_post_init(struct server_ctx *ctx)
{
	(void)ctx;
	flow_publish(0); /* forget what a previous qmgr left there */
	qmgr_scan_recover();
	qmgr_scan_start_timer();
}

static void
qmgr_accept(int fd, struct server_ctx *ctx)
{
	(void)ctx;
	qmgr_trigger_accept(fd);
}

/* qmgr_drain - exit once the requests in flight are answered (their outcomes are recorded) */
static void
qmgr_drain(void *arg)
{
	int n = qmgr_deliver_inflight();

	(void)arg;
	if (n == 0)
		exit(0);
	if (stream_now_ms() >= drain_deadline) {
		log_warn("stopping with %d delivery request%s in flight; their recipients will be tried again", n,
		    n == 1 ? "" : "s");
		exit(0);
	}
	event_timer_set(qmgr_drain, NULL, 100);
}

static void
qmgr_stop(struct server_ctx *ctx)
{
	(void)ctx;
	qmgr_scan_stop();
	qmgr_deliver_stop();
	drain_deadline = stream_now_ms() + QMGR_DRAIN_SECONDS * 1000;
	qmgr_drain(NULL);
}

int
main(int argc, char **argv)
{
	static const struct server_desc desc = {
		.name = "qmgr",
		.kind = SERVER_EVENT,
		.identity = SERVER_ID_QUEUE,
		.solitary = true,
		.pre_init = qmgr_pre_init,
		.post_init = qmgr_post_init,
		.accept = qmgr_accept,
		.stop = qmgr_stop,
	};

	server_main(argc, argv, &desc);
}
