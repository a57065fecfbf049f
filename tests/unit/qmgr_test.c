/*
 * qmgr_test - the queue manager's modules without the master: routing
 * (inline: transport_maps, domain lists, a table that answers "try
 * again"), backoff and expiry arithmetic, trigger parsing, log formats,
 * and whole attempts in a temporary queue: files taken from incoming/,
 * delivered through a delivery agent running in a thread of this test
 * (the real protocol over a real socket), deferred with their next
 * attempt time, bounced, expired, removed, and kept within
 * qmgr_message_active_limit.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cfg.h"
#include "deliver.h"
#include "event.h"
#include "log.h"
#include "qfile.h"
#include "qlog.h"
#include "qmgr.h"
#include "stream.h"
#include "xalloc.h"

/* ---------------------------------------------------------------- config */

static void
load_config(const char *text)
{
	struct buf err = BUF_INIT;

	if (cfg_load_string(text, "qmgr_test", &err) != 0)
		fail_msg("config: %s", buf_str(&err));
	buf_free(&err);
	qmgr_conf_load();
}

static const char base_cf[] = "myhostname = mx.example.test\n"
                              "mydestination = example.test, localhost\n"
                              "virtual_mailbox_domains = virt.test\n"
                              "virtual_alias_domains = alias.test\n"
                              "relay_domains = relay.test\n"
                              "recipient_delimiter = +\n";

/* ---------------------------------------------------------------- routing */

struct route_case {
	const char *addr;
	enum qmgr_route_status st;
	const char *transport; /* or the DSN code when not OK */
	const char *nexthop;   /* or a piece of the reason when not OK */
	bool per_rcpt;
};

static void
run_routes(const char *cf, const struct route_case *cases, size_t n)
{
	struct buf err = BUF_INIT;
	struct qmgr_router *r;
	struct qmgr_route rt;
	size_t i;

	load_config(cf);
	r = qmgr_router_open(&err);
	if (r == NULL)
		fail_msg("router: %s", buf_str(&err));
	qmgr_route_init(&rt);
	for (i = 0; i < n; i++) {
		const struct route_case *c = &cases[i];
		enum qmgr_route_status st = qmgr_route_rcpt(r, c->addr, &rt);

		if (st != c->st)
			fail_msg("%s: status %d, expected %d (%s)", c->addr, st, c->st, buf_str(&rt.reason));
		if (st == QMGR_ROUTE_OK) {
			if (strcmp(rt.transport, c->transport) != 0 || strcmp(buf_str(&rt.nexthop), c->nexthop) != 0)
				fail_msg("%s: %s:%s, expected %s:%s", c->addr, rt.transport, buf_str(&rt.nexthop),
				    c->transport, c->nexthop);
			if (rt.per_rcpt != c->per_rcpt)
				fail_msg("%s: per_rcpt %d", c->addr, rt.per_rcpt);
		} else {
			if (strcmp(rt.dsn, c->transport) != 0 || strstr(buf_str(&rt.reason), c->nexthop) == NULL)
				fail_msg("%s: %s %s, expected %s ...%s...", c->addr, rt.dsn, buf_str(&rt.reason),
				    c->transport, c->nexthop);
		}
	}
	qmgr_route_free(&rt);
	qmgr_router_close(r);
	buf_free(&err);
}

static void
test_route_classes(void **state)
{
	static const struct route_case cases[] = {
		{ "bob@example.test", QMGR_ROUTE_OK, "local", "example.test", true },
		{ "Bob@EXAMPLE.Test.", QMGR_ROUTE_OK, "local", "example.test", true },
		{ "bob+tag@localhost", QMGR_ROUTE_OK, "local", "localhost", true },
		{ "postmaster", QMGR_ROUTE_OK, "local", "mx.example.test", true },
		{ "user@virt.test", QMGR_ROUTE_OK, "local", "virt.test", true },
		{ "user@alias.test", QMGR_ROUTE_BOUNCE, "5.1.1", "virtual alias table", false },
		{ "user@relay.test", QMGR_ROUTE_OK, "smtp", "relay.test", false },
		{ "user@sub.relay.test", QMGR_ROUTE_OK, "smtp", "sub.relay.test", false },
		{ "user@remote.org", QMGR_ROUTE_OK, "smtp", "remote.org", false },
		{ "\"odd@local\"@remote.org", QMGR_ROUTE_OK, "smtp", "remote.org", false },
		{ "user@[192.0.2.1]", QMGR_ROUTE_OK, "smtp", "[192.0.2.1]", false },
		{ "a@"
		  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		  "xx"
		  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		  "xx"
		  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.org",
		    QMGR_ROUTE_BOUNCE, "5.1.2", "too long", false },
	};

	(void)state;
	run_routes(base_cf, cases, sizeof(cases) / sizeof(cases[0]));
}

static void
test_route_relayhost(void **state)
{
	static const struct route_case cases[] = {
		/* relayhost for relay and remote classes, never for ours */
		{ "user@relay.test", QMGR_ROUTE_OK, "smtp", "[smart.example]:587", false },
		{ "user@remote.org", QMGR_ROUTE_OK, "smtp", "[smart.example]:587", false },
		{ "user@example.test", QMGR_ROUTE_OK, "local", "example.test", true },
	};
	char cf[1024];

	(void)state;
	snprintf(cf, sizeof(cf), "%srelayhost = [smart.example]:587\n", base_cf);
	run_routes(cf, cases, sizeof(cases) / sizeof(cases[0]));
}

static void
test_route_class_transports(void **state)
{
	static const struct route_case cases[] = {
		/* a class transport's own next hop wins over relayhost and the domain */
		{ "user@remote.org", QMGR_ROUTE_OK, "relay2", "[out.example]", false },
		{ "user@relay.test", QMGR_ROUTE_OK, "smtp", "[smart.example]", false },
		{ "user@example.test", QMGR_ROUTE_OK, "local", "mx.example.test", true },
		{ "user@virt.test", QMGR_ROUTE_OK, "virtual", "virt.test", true },
	};
	char cf[1024];

	(void)state;
	snprintf(cf, sizeof(cf),
	    "%srelayhost = [smart.example]\ndefault_transport = relay2:[out.example]\n"
	    "local_transport = local:$myhostname\nvirtual_transport = virtual\n",
	    base_cf);
	run_routes(cf, cases, sizeof(cases) / sizeof(cases[0]));
}

static void
test_route_transport_maps(void **state)
{
	static const struct route_case cases[] = {
		/* full address first */
		{ "special@remote.org", QMGR_ROUTE_OK, "smtp", "[special.example]:2525", false },
		{ "SPECIAL@Remote.ORG", QMGR_ROUTE_OK, "smtp", "[special.example]:2525", false },
		/* then without the extension */
		{ "user+tag@ext.test", QMGR_ROUTE_OK, "local", "ext.test", true },
		{ "user@ext.test", QMGR_ROUTE_OK, "local", "ext.test", true },
		/* then the domain */
		{ "other@ext.test", QMGR_ROUTE_OK, "relay", "[gw.example]", false },
		/* ".parent" matches subdomains only */
		{ "x@a.sub.test", QMGR_ROUTE_OK, "smtp", "[subgw]", false },
		{ "x@b.a.sub.test", QMGR_ROUTE_OK, "smtp", "[subgw]", false },
		{ "x@sub.test", QMGR_ROUTE_OK, "smtp", "sub.test", false },
		/* empty transport: the class's; empty next hop: the domain */
		{ "x@example.test", QMGR_ROUTE_OK, "local", "[elsewhere]", true },
		{ "x@hop.test", QMGR_ROUTE_OK, "slow", "hop.test", false },
		{ "x@both.test", QMGR_ROUTE_OK, "smtp", "both.test", false },
		/* a transport that cannot be a socket name: defer, never bounce */
		{ "x@bad.test", QMGR_ROUTE_DEFER, "4.3.5", "configuration", false },
		/* the virtual alias check comes first */
		{ "x@alias.test", QMGR_ROUTE_BOUNCE, "5.1.1", "virtual alias", false },
	};
	char cf[2048];

	(void)state;
	snprintf(cf, sizeof(cf),
	    "%stransport_maps = inline:{ special@remote.org=smtp:[special.example]:2525, user@ext.test=local:,"
	    " ext.test=relay:[gw.example], .sub.test=:[subgw], example.test=:[elsewhere], hop.test=slow:,"
	    " both.test=:, bad.test=../x:y, alias.test=smtp: }\n",
	    base_cf);
	run_routes(cf, cases, sizeof(cases) / sizeof(cases[0]));
}

static void
test_route_catchall_and_retry(void **state)
{
	static const struct route_case wild[] = {
		{ "x@anything.example", QMGR_ROUTE_OK, "smtp", "[hub]", false },
		{ "x@example.test", QMGR_ROUTE_OK, "smtp", "[hub]", false },
		{ "postmaster", QMGR_ROUTE_OK, "smtp", "[hub]", false },
	};
	static const struct route_case retry[] = {
		{ "x@remote.org", QMGR_ROUTE_DEFER, "4.3.0", "transport_maps", false },
		{ "x@example.test", QMGR_ROUTE_DEFER, "4.3.0", "transport_maps", false },
	};
	static const struct route_case dom_retry[] = {
		{ "x@remote.org", QMGR_ROUTE_DEFER, "4.3.0", "domain lookup", false },
		/* a list that matched before the broken table is still an answer */
		{ "x@example.test", QMGR_ROUTE_OK, "local", "example.test", true },
	};
	char cf[1024];

	(void)state;
	snprintf(cf, sizeof(cf), "%stransport_maps = inline:{*=smtp:[hub]}\n", base_cf);
	run_routes(cf, wild, sizeof(wild) / sizeof(wild[0]));
	snprintf(cf, sizeof(cf), "%stransport_maps = hash:/nonexistent/qmgr_test/transport\n", base_cf);
	run_routes(cf, retry, sizeof(retry) / sizeof(retry[0]));
	snprintf(cf, sizeof(cf), "%srelay_domains = hash:/nonexistent/qmgr_test/relay\n", base_cf);
	run_routes(cf, dom_retry, sizeof(dom_retry) / sizeof(dom_retry[0]));
}

static void
test_route_bad_config(void **state)
{
	struct buf err = BUF_INIT;
	char cf[1024];

	(void)state;
	snprintf(cf, sizeof(cf), "%sdefault_transport = ../etc:x\n", base_cf);
	load_config(cf);
	assert_null(qmgr_router_open(&err));
	assert_non_null(strstr(buf_str(&err), "default_transport"));
	buf_reset(&err);
	snprintf(cf, sizeof(cf), "%slocal_transport = :nohost\n", base_cf);
	load_config(cf);
	assert_null(qmgr_router_open(&err));
	buf_reset(&err);
	snprintf(cf, sizeof(cf), "%stransport_maps = nosuchtype:/x\n", base_cf);
	load_config(cf);
	assert_null(qmgr_router_open(&err));
	assert_non_null(strstr(buf_str(&err), "transport_maps"));
	buf_free(&err);
}

static void
test_transport_valid(void **state)
{
	static const struct {
		const char *name;
		bool ok;
	} cases[] = {
		{ "smtp", true },
		{ "local", true },
		{ "relay-2.x_y", true },
		{ "", false },
		{ ".", false },
		{ "..", false },
		{ "../x", false },
		{ "a/b", false },
		{ "-x", false },
		{ "a b", false },
		{ "a\nb", false },
		{ "\xc3\xa9", false },
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", true },
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (qmgr_transport_valid(cases[i].name) != cases[i].ok)
			fail_msg("\"%s\": expected %d", cases[i].name, cases[i].ok);
}

/* ---------------------------------------------------------------- arithmetic */

static void
test_backoff(void **state)
{
	static const struct {
		long long now, arrival, min, max, warn, next;
	} cases[] = {
		/* young message: the minimum */
		{ 1000000, 1000000, 300, 4000, 0, 1000300 },
		{ 1000000, 999990, 300, 4000, 0, 1000300 },
		/* the age, so intervals roughly double */
		{ 1000000, 999400, 300, 4000, 0, 1000600 },
		{ 1000000, 998800, 300, 4000, 0, 1001200 },
		/* capped */
		{ 1000000, 900000, 300, 4000, 0, 1004000 },
		/* arrival in the future (clock step): the minimum */
		{ 1000000, 1000500, 300, 4000, 0, 1000300 },
		/* back in time for the delay notice */
		{ 1000000, 999000, 300, 4000, 1100, 1000100 },
		/* ... unless it is past, or later than the backoff anyway */
		{ 1000000, 999000, 300, 4000, 900, 1001000 },
		{ 1000000, 999000, 300, 4000, 5000, 1001000 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		time_t next = qmgr_next_attempt(
		    (time_t)cases[i].now, (time_t)cases[i].arrival, cases[i].min, cases[i].max, cases[i].warn);

		if ((long long)next != cases[i].next)
			fail_msg("case %zu: next %lld, expected %lld", i, (long long)next, cases[i].next);
	}
}

static void
test_expired(void **state)
{
	(void)state;
	assert_true(qmgr_expired(1000, 1000, 0));
	assert_true(qmgr_expired(1000, 2000, 0));
	assert_false(qmgr_expired(1000, 1000, 1));
	assert_false(qmgr_expired(1001, 1000, 1));
	assert_true(qmgr_expired(1002, 1000, 1));
	assert_false(qmgr_expired(1000 + 5 * 86400, 1000, 5 * 86400));
	assert_true(qmgr_expired(1001 + 5 * 86400, 1000, 5 * 86400));
}

static void
test_notify(void **state)
{
	(void)state;
	assert_true(qmgr_notify_failure(0));
	assert_true(qmgr_notify_failure(QF_NOTIFY_FAILURE));
	assert_true(qmgr_notify_failure(QF_NOTIFY_FAILURE | QF_NOTIFY_DELAY));
	assert_false(qmgr_notify_failure(QF_NOTIFY_NEVER));
	assert_false(qmgr_notify_failure(QF_NOTIFY_SUCCESS));
	assert_true(qmgr_notify_delay(0));
	assert_true(qmgr_notify_delay(QF_NOTIFY_DELAY | QF_NOTIFY_SUCCESS));
	assert_false(qmgr_notify_delay(QF_NOTIFY_FAILURE));
	assert_false(qmgr_notify_delay(QF_NOTIFY_NEVER));
	assert_false(qmgr_notify_success(0));
	assert_true(qmgr_notify_success(QF_NOTIFY_SUCCESS | QF_NOTIFY_FAILURE));
	assert_false(qmgr_notify_success(QF_NOTIFY_NEVER));
}

static void
test_trigger_parse(void **state)
{
	static const struct {
		const char *bytes;
		size_t len;
		int req;
		size_t unknown;
	} cases[] = {
		{ "", 0, 0, 0 },
		{ "I", 1, QMGR_REQ_INCOMING, 0 },
		{ "IIIIIIII", 8, QMGR_REQ_INCOMING, 0 },
		{ "D", 1, QMGR_REQ_DEFERRED, 0 },
		{ "W", 1, QMGR_REQ_INCOMING | QMGR_REQ_DEFERRED, 0 },
		{ "F", 1, QMGR_REQ_FLUSH | QMGR_REQ_DEFERRED, 0 },
		{ "IDF", 3, QMGR_REQ_INCOMING | QMGR_REQ_DEFERRED | QMGR_REQ_FLUSH, 0 },
		{ "x", 1, 0, 1 },
		{ "i", 1, 0, 1 },
		{ "I\0\n", 3, QMGR_REQ_INCOMING, 2 },
		{ "\xffW\xfe", 3, QMGR_REQ_INCOMING | QMGR_REQ_DEFERRED, 2 },
	};
	size_t i, unknown;
	int req;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		req = 0;
		unknown = qmgr_trigger_parse((const unsigned char *)cases[i].bytes, cases[i].len, &req);
		if (req != cases[i].req || unknown != cases[i].unknown)
			fail_msg("case %zu: req %d unknown %zu", i, req, unknown);
	}
}

static void
test_fmt_delay(void **state)
{
	static const struct {
		double v;
		const char *s;
	} cases[] = {
		{ 0, "0" },
		{ 0.001, "0" },
		{ -3, "0" },
		{ 0.004999, "0" },
		{ 0.01, "0.01" },
		{ 0.1, "0.1" },
		{ 0.123, "0.12" },
		{ 1, "1" },
		{ 1.5, "1.5" },
		{ 9.999, "10" },
		{ 12.34, "12.3" },
		{ 20.04, "20" },
		{ 99.99, "100" },
		{ 150.7, "151" },
		{ 3600, "3600" },
	};
	char out[32];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		qmgr_fmt_delay(out, sizeof(out), cases[i].v);
		if (strcmp(out, cases[i].s) != 0)
			fail_msg("%g: \"%s\", expected \"%s\"", cases[i].v, out, cases[i].s);
	}
}

static void
test_orcpt_addr(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "rfc822;bob@example.com", "bob@example.com" },
		{ "RFC822;Bob@Example.com", "Bob@Example.com" },
		{ "rfc822;a+2Bb@x", "a+b@x" },
		{ "rfc822;a+3Db+2B@x", "a=b+@x" },
		{ "rfc822;", NULL },
		{ "rfc822;a+0Ab@x", NULL }, /* a control byte */
		{ "rfc822;a+2", NULL },     /* cut short */
		{ "rfc822;a+2b@x", NULL },  /* lower-case hex is not xtext */
		{ "rfc822;a+ZZ@x", NULL },
		{ "utf-8;bob@example.com", NULL },
		{ "bob@example.com", NULL },
		{ NULL, NULL },
	};
	size_t i;
	char *s;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		s = qmgr_orcpt_addr(cases[i].in);
		if ((s == NULL) != (cases[i].out == NULL) || (s && strcmp(s, cases[i].out) != 0))
			fail_msg("\"%s\": \"%s\"", cases[i].in ? cases[i].in : "(null)", s ? s : "(null)");
		free(s);
	}
}

/* ---------------------------------------------------------------- a queue */

static char qdir[64];
static char saved_cwd[4096];

/* The agent thread: the real protocol, fates by local part as tests/fakeagent.c. */
static int agent_listen = -1;
static pthread_t agent_thread;
static pthread_mutex_t agent_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile int agent_stop;
static int agent_requests, agent_max_rcpts;
static char agent_seen[4096];

static void *
agent_main(void *arg)
{
	struct pollfd pfd;
	size_t i;

	(void)arg;
	pfd.fd = agent_listen;
	pfd.events = POLLIN;
	while (!agent_stop) {
		struct deliver_request req;
		struct buf err = BUF_INIT;
		struct stream *s;
		int fd;

		if (poll(&pfd, 1, 50) <= 0)
			continue;
		if ((fd = accept4(agent_listen, NULL, NULL, SOCK_CLOEXEC)) < 0)
			continue;
		s = stream_new(fd, STREAM_FDPASS);
		stream_set_timeout(s, 10);
		if (deliver_request_read(s, &req, &err) == 0) {
			pthread_mutex_lock(&agent_lock);
			agent_requests++;
			if ((int)req.nrcpts > agent_max_rcpts)
				agent_max_rcpts = (int)req.nrcpts;
			for (i = 0; i < req.nrcpts; i++) {
				strlcat(agent_seen, req.rcpts[i].addr, sizeof(agent_seen));
				strlcat(agent_seen, " ", sizeof(agent_seen));
			}
			pthread_mutex_unlock(&agent_lock);
			for (i = 0; i < req.nrcpts; i++) {
				const char *a = req.rcpts[i].addr;

				if (strncmp(a, "crash", 5) == 0)
					break;
				if (strncmp(a, "defer", 5) == 0)
					deliver_status_send(s, req.rcpts[i].offset, DELIVER_DEFERRED, "4.2.0", "agent",
					    "fake deferral");
				else if (strncmp(a, "bounce", 6) == 0)
					deliver_status_send(
					    s, req.rcpts[i].offset, DELIVER_BOUNCED, "5.1.1", "agent", "fake bounce");
				else if (strncmp(a, "liar", 4) == 0)
					deliver_status_send(s, 1, DELIVER_SENT, "2.0.0", "agent", "not yours");
				else
					deliver_status_send(
					    s, req.rcpts[i].offset, DELIVER_SENT, "2.0.0", "agent", "ok");
			}
			if (i == req.nrcpts)
				deliver_done_send(s);
			deliver_request_free(&req);
		}
		buf_free(&err);
		stream_free(s);
	}
	return NULL;
}

static void
agent_start(void)
{
	struct sockaddr_un sun;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strcpy(sun.sun_path, "private/local");
	agent_listen = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(agent_listen >= 0);
	assert_int_equal(bind(agent_listen, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(agent_listen, 64), 0);
	agent_stop = 0;
	assert_int_equal(pthread_create(&agent_thread, NULL, agent_main, NULL), 0);
}

static void
agent_end(void)
{
	agent_stop = 1;
	pthread_join(agent_thread, NULL);
	close(agent_listen);
	unlink("private/local");
}

static void
mkdirs(void)
{
	static const char *const plain[] = { "incoming", "active", "deferred", "hold", "corrupt", "defer", "bounce",
		"private", "public", NULL };
	static const char *const hashed[] = { "deferred", "defer", "bounce", NULL };
	const char *h = "0123456789ABCDEFGHIJKLMNOPQRSTUV";
	char path[64];
	size_t i, k;

	for (i = 0; plain[i]; i++)
		assert_int_equal(mkdir(plain[i], 0700), 0);
	for (i = 0; hashed[i]; i++)
		for (k = 0; h[k]; k++) {
			snprintf(path, sizeof(path), "%s/%c", hashed[i], h[k]);
			assert_int_equal(mkdir(path, 0700), 0);
		}
}

static int
queue_setup(void **state)
{
	char cf[1024];

	(void)state;
	if (getcwd(saved_cwd, sizeof(saved_cwd)) == NULL)
		return -1;
	strcpy(qdir, "/tmp/qmgr_test.XXXXXX");
	if (mkdtemp(qdir) == NULL || chdir(qdir) < 0)
		return -1;
	mkdirs();
	snprintf(cf, sizeof(cf), "%squeue_directory = %s\nmaximal_queue_lifetime = 5d\n", base_cf, qdir);
	load_config(cf);
	qmgr_deliver_init(NULL);
	{
		struct buf err = BUF_INIT;

		qmgr_router = qmgr_router_open(&err);
		buf_free(&err);
	}
	if (qmgr_router == NULL)
		return -1;
	agent_start();
	return 0;
}

static int
queue_teardown(void **state)
{
	char cmd[128];

	(void)state;
	agent_end();
	qmgr_router_close(qmgr_router);
	qmgr_router = NULL;
	if (chdir(saved_cwd) < 0)
		return -1;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", qdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* put - a complete message in incoming/; its ID into id; recipients separated by spaces, "addr/notify" */
static void
put(char *id, const char *sender, const char *rcpts, const struct timeval *arrival)
{
	struct qfile_writer w;
	struct buf err = BUF_INIT;
	struct timeval now;
	char *list = xstrdup(rcpts), *p = list, *tok, *slash;

	gettimeofday(&now, NULL);
	if (qfile_create(&w, QUEUE_INCOMING, &err) != 0)
		fail_msg("create: %s", buf_str(&err));
	assert_int_equal(qfile_put_time(&w, arrival ? arrival : &now, &err), 0);
	assert_int_equal(qfile_put_sender(&w, sender, &err), 0);
	assert_int_equal(qfile_put_attr(&w, "protocol", "ESMTP", &err), 0);
	while ((tok = strsep(&p, " ")) != NULL) {
		int notify = 0;

		if ((slash = strchr(tok, '/')) != NULL) {
			*slash = 0;
			notify = atoi(slash + 1);
		}
		assert_int_equal(qfile_put_rcpt(&w, tok, NULL, notify, &err), 0);
	}
	assert_int_equal(qfile_begin_content(&w, &err), 0);
	assert_int_equal(qfile_put_content(&w, "Subject: test\n\nhello\n", 21, &err), 0);
	assert_int_equal(qfile_commit(&w, QF_COMMIT_NOSYNC, &err), 0);
	strcpy(id, w.id);
	free(list);
	buf_free(&err);
}

static bool
exists(const char *queue, const char *id)
{
	char path[64];

	assert_int_equal(qid_path(path, sizeof(path), queue, id), 0);
	return access(path, F_OK) == 0;
}

/* run_until - the event loop until no message is in memory (at most 10 s); the highest active count seen */
static size_t
run_until_idle(void)
{
	time_t end = time(NULL) + 10;
	size_t most = 0;

	do {
		event_run(20);
		if (qmgr_active_count > most)
			most = qmgr_active_count;
	} while ((qmgr_active_count > 0 || qmgr_deliver_inflight() > 0) && time(NULL) < end);
	/* a scan may still be walking its directory */
	for (int i = 0; i < 20; i++)
		event_run(5);
	assert_int_equal(qmgr_active_count, 0);
	return most;
}

/* read_env - the file of id in queue */
static void
read_env(const char *queue, const char *id, struct qfile_env *env)
{
	struct buf err = BUF_INIT;
	char path[64];
	int fd;

	assert_int_equal(qid_path(path, sizeof(path), queue, id), 0);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	if (qfile_read(fd, env, NULL, &err) != 0)
		fail_msg("%s: %s", path, buf_str(&err));
	close(fd);
	buf_free(&err);
}

static const struct qfile_rcpt *
rcpt_of(const struct qfile_env *env, const char *addr)
{
	size_t i;

	for (i = 0; i < env->nrcpts; i++)
		if (strcmp(env->rcpts[i].addr, addr) == 0)
			return &env->rcpts[i];
	fail_msg("no recipient %s", addr);
	return NULL;
}

static const struct qlog_entry *
log_of(struct qlog_entry *v, size_t n, const char *addr, char status)
{
	const struct qlog_entry *found = NULL;
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(v[i].addr, addr) == 0 && v[i].status == status)
			found = &v[i];
	return found;
}

static void
test_queue_delivered_removed(void **state)
{
	char id[QID_LEN + 1];

	(void)state;
	put(id, "alice@example.org", "ok1@example.test ok2@example.test ok3@localhost", NULL);
	qmgr_scan_request(QMGR_REQ_INCOMING);
	run_until_idle();
	assert_false(exists(QUEUE_INCOMING, id));
	assert_false(exists(QUEUE_ACTIVE, id));
	assert_false(exists(QUEUE_DEFERRED, id));
	assert_false(exists(QUEUE_DEFER, id));
	assert_false(exists(QUEUE_BOUNCE, id));
	assert_non_null(strstr(agent_seen, "ok1@example.test"));
	assert_non_null(strstr(agent_seen, "ok3@localhost"));
}

static void
test_queue_mixed_outcomes(void **state)
{
	struct qlog_entry *v = NULL;
	struct qfile_env env;
	struct buf err = BUF_INIT;
	struct stat st;
	char id[QID_LEN + 1], path[64];
	size_t n = 0;
	time_t before = time(NULL);

	(void)state;
	put(id, "alice@example.org", "ok@example.test/2 defer@example.test bounce@example.test", NULL);
	qmgr_scan_request(QMGR_REQ_INCOMING);
	run_until_idle();
	/* cleanup is not running, so the notices cannot go: the message stays, its logs too */
	assert_true(exists(QUEUE_DEFERRED, id));
	assert_false(exists(QUEUE_ACTIVE, id));
	read_env(QUEUE_DEFERRED, id, &env);
	assert_true(rcpt_of(&env, "ok@example.test")->done);
	assert_true(rcpt_of(&env, "bounce@example.test")->done);
	assert_false(rcpt_of(&env, "defer@example.test")->done);
	qfile_env_free(&env);
	/* the next attempt time */
	assert_int_equal(qid_path(path, sizeof(path), QUEUE_DEFERRED, id), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_true(st.st_mtime >= before + qmgr_conf.min_backoff);
	assert_true(st.st_mtime <= time(NULL) + qmgr_conf.min_backoff);

	assert_int_equal(qlog_read(QUEUE_DEFER, id, &v, &n, &err), 0);
	assert_non_null(log_of(v, n, "defer@example.test", 'd'));
	assert_string_equal(log_of(v, n, "defer@example.test", 'd')->reason, "fake deferral");
	assert_null(log_of(v, n, "ok@example.test", 'd'));
	qlog_free(v, n);
	assert_int_equal(qlog_read(QUEUE_BOUNCE, id, &v, &n, &err), 0);
	assert_non_null(log_of(v, n, "bounce@example.test", 'b'));
	assert_string_equal(log_of(v, n, "bounce@example.test", 'b')->dsn, "5.1.1");
	/* NOTIFY=SUCCESS: a delivered notice is owed too */
	assert_non_null(log_of(v, n, "ok@example.test", 's'));
	qlog_free(v, n);

	/* A flush makes it due at once; the deferral repeats, nothing is delivered twice. */
	agent_seen[0] = 0;
	qmgr_scan_request(QMGR_REQ_FLUSH);
	run_until_idle();
	assert_string_equal(agent_seen, "defer@example.test ");
	assert_true(exists(QUEUE_DEFERRED, id));
	/* Without a flush a deferred message is not due yet. */
	agent_seen[0] = 0;
	qmgr_scan_request(QMGR_REQ_DEFERRED);
	run_until_idle();
	assert_string_equal(agent_seen, "");
	buf_free(&err);
}

static void
test_queue_transport_unavailable(void **state)
{
	struct qlog_entry *v = NULL;
	struct buf err = BUF_INIT;
	char id[QID_LEN + 1];
	size_t n = 0;

	(void)state;
	put(id, "alice@example.org", "x@remote.org y@other.org", NULL);
	qmgr_scan_request(QMGR_REQ_INCOMING);
	run_until_idle();
	assert_true(exists(QUEUE_DEFERRED, id));
	assert_int_equal(qlog_read(QUEUE_DEFER, id, &v, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].reason, "mail transport unavailable: private/smtp: No such file or directory");
	assert_string_equal(v[0].dsn, "4.3.0");
	qlog_free(v, n);
	buf_free(&err);
}

static void
test_queue_expiry(void **state)
{
	struct qlog_entry *v = NULL;
	struct qfile_env env;
	struct buf err = BUF_INIT;
	char id[QID_LEN + 1];
	size_t n = 0;
	long long saved = qmgr_conf.max_lifetime;

	(void)state;
	/* maximal_queue_lifetime = 0: bounce after the first failed attempt */
	qmgr_conf.max_lifetime = 0;
	put(id, "alice@example.org", "defer@example.test ok@example.test", NULL);
	qmgr_scan_request(QMGR_REQ_INCOMING);
	run_until_idle();
	qmgr_conf.max_lifetime = saved;
	read_env(QUEUE_DEFERRED, id, &env);
	assert_true(rcpt_of(&env, "defer@example.test")->done);
	qfile_env_free(&env);
	assert_int_equal(qlog_read(QUEUE_BOUNCE, id, &v, &n, &err), 0);
	assert_non_null(log_of(v, n, "defer@example.test", 'b'));
	/* the deferral's own code and reason, reported as a failure */
	assert_string_equal(log_of(v, n, "defer@example.test", 'b')->dsn, "4.2.0");
	assert_string_equal(log_of(v, n, "defer@example.test", 'b')->reason, "fake deferral");
	qlog_free(v, n);
	buf_free(&err);
}

static void
test_queue_double_bounce(void **state)
{
	char id[QID_LEN + 1];
	struct qfile_writer w;
	struct buf err = BUF_INIT;
	struct timeval now;

	(void)state;
	/* Postern's own notice (sender <>, flags=4) that bounces: discarded, nothing kept */
	gettimeofday(&now, NULL);
	assert_int_equal(qfile_create(&w, QUEUE_INCOMING, &err), 0);
	assert_int_equal(qfile_put_time(&w, &now, &err), 0);
	assert_int_equal(qfile_put_sender(&w, "", &err), 0);
	assert_int_equal(qfile_put_attr(&w, "flags", "4", &err), 0);
	assert_int_equal(qfile_put_rcpt(&w, "bounce@example.test", NULL, 0, &err), 0);
	assert_int_equal(qfile_begin_content(&w, &err), 0);
	assert_int_equal(qfile_put_content(&w, "Subject: x\n\nx\n", 14, &err), 0);
	assert_int_equal(qfile_commit(&w, QF_COMMIT_NOSYNC, &err), 0);
	strcpy(id, w.id);
	qmgr_scan_request(QMGR_REQ_INCOMING);
	run_until_idle();
	assert_false(exists(QUEUE_DEFERRED, id));
	assert_false(exists(QUEUE_ACTIVE, id));
	assert_false(exists(QUEUE_BOUNCE, id));
	buf_free(&err);
}

static void
test_queue_liar_and_crash(void **state)
{
	struct qlog_entry *v = NULL;
	struct qfile_env env;
	struct buf err = BUF_INIT;
	char id[QID_LEN + 1];
	size_t n = 0;

	(void)state;
	/* a status for an offset that was not asked about changes nothing; the recipient is deferred */
	put(id, "alice@example.org", "liar@example.test", NULL);
	qmgr_scan_request(QMGR_REQ_INCOMING);
	run_until_idle();
	read_env(QUEUE_DEFERRED, id, &env);
	assert_false(rcpt_of(&env, "liar@example.test")->done);
	qfile_env_free(&env);
	assert_int_equal(qlog_read(QUEUE_DEFER, id, &v, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].dsn, "4.3.0");
	qlog_free(v, n);
	/* an agent that goes away: deferred, not lost */
	put(id, "alice@example.org", "crash@example.test", NULL);
	qmgr_scan_request(QMGR_REQ_INCOMING);
	run_until_idle();
	assert_true(exists(QUEUE_DEFERRED, id));
	assert_int_equal(qlog_read(QUEUE_DEFER, id, &v, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].reason, "delivery agent went away");
	qlog_free(v, n);
	buf_free(&err);
}

static void
test_queue_active_limit(void **state)
{
	char id[QID_LEN + 1], ids[8][QID_LEN + 1];
	long long saved = qmgr_conf.active_limit, saved_r = qmgr_conf.rcpt_limit;
	size_t i, most;

	(void)state;
	qmgr_conf.active_limit = 2;
	/* and messages bigger than the recipient limit, loaded a batch at a time */
	qmgr_conf.rcpt_limit = 2;
	for (i = 0; i < 8; i++) {
		put(id, "alice@example.org",
		    "ok1@example.test ok2@example.test ok3@example.test ok4@virt.test ok5@x.test", NULL);
		strcpy(ids[i], id);
	}
	agent_seen[0] = 0;
	agent_max_rcpts = 0;
	qmgr_scan_request(QMGR_REQ_INCOMING);
	most = run_until_idle();
	qmgr_conf.active_limit = saved;
	qmgr_conf.rcpt_limit = saved_r;
	assert_true(most <= 2);
	for (i = 0; i < 8; i++) {
		assert_false(exists(QUEUE_INCOMING, ids[i]));
		/* ok5@x.test goes to smtp, which does not exist here */
		assert_true(exists(QUEUE_DEFERRED, ids[i]));
	}
	/* every local recipient exactly once per message */
	{
		size_t count = 0;
		const char *p = agent_seen;

		while ((p = strstr(p, "ok1@example.test")) != NULL) {
			count++;
			p++;
		}
		assert_int_equal(count, 8);
	}
	assert_true(agent_max_rcpts <= 2);
}

static void
test_queue_corrupt_and_debris(void **state)
{
	char id[QID_LEN + 1], path[64], bad[64];
	struct timespec ts[2];
	struct timeval tv;
	int fd;

	(void)state;
	/* complete mode, garbage content: into corrupt/ */
	gettimeofday(&tv, NULL);
	qid_make(id, &tv, 1);
	assert_int_equal(qid_path(path, sizeof(path), QUEUE_INCOMING, id), 0);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0700);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "garbage", 7), 7);
	assert_int_equal(fchmod(fd, 0700), 0);
	close(fd);
	/* an old 0600 file: a dead writer's, removed; a fresh one: left alone */
	tv.tv_usec = (tv.tv_usec + 1) % 1000000;
	qid_make(bad, &tv, 2);
	assert_int_equal(qid_path(path, sizeof(path), QUEUE_INCOMING, bad), 0);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	close(fd);
	ts[0].tv_sec = ts[1].tv_sec = time(NULL) - 2 * QMGR_DEBRIS_AGE;
	ts[0].tv_nsec = ts[1].tv_nsec = 0;
	assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
	{
		char fresh[QID_LEN + 1], fpath[64];

		tv.tv_usec = (tv.tv_usec + 1) % 1000000;
		qid_make(fresh, &tv, 3);
		assert_int_equal(qid_path(fpath, sizeof(fpath), QUEUE_INCOMING, fresh), 0);
		fd = open(fpath, O_WRONLY | O_CREAT | O_EXCL, 0600);
		assert_true(fd >= 0);
		close(fd);
		/* and a name that is not a queue ID */
		fd = open("incoming/not-an-id", O_WRONLY | O_CREAT | O_EXCL, 0700);
		assert_true(fd >= 0);
		close(fd);
		qmgr_scan_request(QMGR_REQ_INCOMING);
		run_until_idle();
		assert_true(exists(QUEUE_CORRUPT, id));
		assert_false(exists(QUEUE_INCOMING, id));
		assert_false(exists(QUEUE_INCOMING, bad));
		assert_true(exists(QUEUE_INCOMING, fresh));
		assert_int_equal(access("incoming/not-an-id", F_OK), 0);
		unlink(fpath);
		unlink("incoming/not-an-id");
	}
}

static void
test_queue_recover(void **state)
{
	char id[QID_LEN + 1], from[64], to[64];

	(void)state;
	/* a message left in active/ by a qmgr that died: back to incoming/, then delivered */
	put(id, "alice@example.org", "ok-recovered@example.test", NULL);
	assert_int_equal(qid_path(from, sizeof(from), QUEUE_INCOMING, id), 0);
	assert_int_equal(qid_path(to, sizeof(to), QUEUE_ACTIVE, id), 0);
	assert_int_equal(rename(from, to), 0);
	agent_seen[0] = 0;
	qmgr_scan_recover();
	run_until_idle();
	assert_false(exists(QUEUE_ACTIVE, id));
	assert_false(exists(QUEUE_INCOMING, id));
	assert_false(exists(QUEUE_DEFERRED, id));
	assert_string_equal(agent_seen, "ok-recovered@example.test ");
}

int
main(void)
{
	const struct CMUnitTest pure[] = {
		cmocka_unit_test(test_route_classes),
		cmocka_unit_test(test_route_relayhost),
		cmocka_unit_test(test_route_class_transports),
		cmocka_unit_test(test_route_transport_maps),
		cmocka_unit_test(test_route_catchall_and_retry),
		cmocka_unit_test(test_route_bad_config),
		cmocka_unit_test(test_transport_valid),
		cmocka_unit_test(test_backoff),
		cmocka_unit_test(test_expired),
		cmocka_unit_test(test_notify),
		cmocka_unit_test(test_trigger_parse),
		cmocka_unit_test(test_fmt_delay),
		cmocka_unit_test(test_orcpt_addr),
	};
	const struct CMUnitTest queue[] = {
		cmocka_unit_test(test_queue_delivered_removed),
		cmocka_unit_test(test_queue_mixed_outcomes),
		cmocka_unit_test(test_queue_transport_unavailable),
		cmocka_unit_test(test_queue_expiry),
		cmocka_unit_test(test_queue_double_bounce),
		cmocka_unit_test(test_queue_liar_and_crash),
		cmocka_unit_test(test_queue_active_limit),
		cmocka_unit_test(test_queue_corrupt_and_debris),
		cmocka_unit_test(test_queue_recover),
	};
	int rc;

	log_init("qmgr_test", LOG_DEST_STDERR);
	rc = cmocka_run_group_tests_name("qmgr pure", pure, NULL, NULL);
	rc += cmocka_run_group_tests_name("qmgr queue", queue, queue_setup, queue_teardown);
	return rc;
}
