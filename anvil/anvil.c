/*
 * anvil - counters shared by every process of a service (doc/ipc.md 8.5,
 * anvil(8)).
 *
 * One event-driven process (master.cf: "anvil unix - - n - 1 anvil")
 * answers two kinds of question: how many connections a client has open
 * now and opened lately (smtpd's limits), and how many logins failed
 * lately for a client address or a user (auth's lockout).  Clients are
 * Postern's own processes on private/anvil, each keeping one connection
 * open for as long as it runs; connection counts belong to the connection
 * that made them and are released when it closes.
 *
 * Clients are trusted to be Postern's code, but not to be well behaved:
 * a slow or stuck client must not stall the others, so each connection is
 * read without blocking into its own bounded buffer and requests are
 * parsed from there.  Identifiers are bounded in length and in number;
 * idle entries are swept away periodically.  Counts live in memory only:
 * after a restart every limit starts again from zero.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "anvil_client.h"
#include "buf.h"
#include "cfg.h"
#include "event.h"
#include "ipc.h"
#include "log.h"
#include "proto.h"
#include "server.h"
#include "xalloc.h"

#define ANVIL_ENTRIES_MAX 100000 /* identifiers per table */
#define ANVIL_IN_MAX      8192   /* unparsed input per client; a list is at most ~4.7 kB */
#define ANVIL_ATTRS_MAX   8      /* attributes in one request */
#define ANVIL_HELD_MAX    1024   /* distinct identifiers one connection may hold */
#define ANVIL_SWEEP_MS    10000  /* how often idle entries are freed */
#define ANVIL_REQUEST_MAX 32     /* longest request name kept */

/* One identifier: a connection counter or a login failure counter. */
struct counter {
	char *key;
	long long conns; /* connections held now (sum over clients) */
	long long rate;  /* connections opened in the current window */
	long long fails; /* failed logins since the counter started */
	int64_t start;   /* connection window start, or time of the last failure */
};

/*
 * A table is a balanced tree (glibc's tsearch is a red-black tree): the
 * keys come from the network (addresses, user names), and a tree cannot
 * be pushed into a hash table's worst case by choosing them.
 */
struct table {
	void *root;
	size_t n;
	const char *what;
	int64_t full_warned; /* when "table full" was last logged */
	int64_t full_swept;  /* when a full table was last swept */
};

static struct table conn_table = { NULL, 0, "connection", 0, 0 };
static struct table auth_table = { NULL, 0, "login failure", 0, 0 };

struct held {
	struct counter *e;
	long long n;
};

struct client {
	int fd;
	struct buf in, out;
	struct held *held;
	size_t nheld;
	bool closing;  /* drop once the output is written */
	bool may_auth; /* the peer runs as we do (auth), not as network_user (smtpd) */
};

/* A parsed request. */
struct request {
	char name[ANVIL_REQUEST_MAX + 1];
	char ident[ANVIL_IDENT_MAX + 1];
	bool have_name, have_ident, name_toolong;
	char unknown[IPC_NAME_MAX + 1]; /* the first unknown attribute name, or "" */
};

static int64_t rate_unit_ms;
static int64_t lockout_ms;

/* ---------------------------------------------------------------- the tables */

static int
counter_cmp(const void *a, const void *b)
{
	return strcmp(((const struct counter *)a)->key, ((const struct counter *)b)->key);
}

static struct counter *
table_find(struct table *t, const char *key)
{
	struct counter probe;
	void *p;

	probe.key = (char *)key;
	p = tfind(&probe, &t->root, counter_cmp);
	return p ? *(struct counter **)p : NULL;
}

static void
table_remove(struct table *t, struct counter *e)
{
	if (tdelete(e, &t->root, counter_cmp) == NULL)
		log_panic("%s table: entry %s not in the tree", t->what, e->key);
	t->n--;
	free(e->key);
	free(e);
}

/* conn_idle - a connection entry that no one holds and whose window is over */
static bool
conn_idle(const struct counter *e, int64_t now)
{
	return e->conns == 0 && now - e->start >= rate_unit_ms;
}

/* auth_expired - a failure counter whose last failure is auth_lockout_time old */
static bool
auth_expired(const struct counter *e, int64_t now)
{
	return e->fails == 0 || now - e->start >= lockout_ms;
}

struct sweep {
	struct table *t;
	int64_t now;
	struct counter **dead;
	size_t n, cap;
};

static void
sweep_visit(const void *nodep, VISIT which, void *arg)
{
	struct counter *e = *(struct counter *const *)nodep;
	struct sweep *sw = arg;

	if (which != postorder && which != leaf)
		return;
	if (sw->t == &conn_table ? !conn_idle(e, sw->now) : !auth_expired(e, sw->now))
		return;
	if (sw->n == sw->cap) {
		sw->cap = sw->cap ? sw->cap * 2 : 64;
		sw->dead = xreallocarray(sw->dead, sw->cap, sizeof(*sw->dead));
	}
	sw->dead[sw->n++] = e;
}

/* table_sweep - free the entries that carry no information any more */
static void
table_sweep(struct table *t, int64_t now)
{
	struct sweep sw = { t, now, NULL, 0, 0 };
	size_t i;

	/* The tree cannot change during the walk: collect first, then delete. */
	twalk_r(t->root, sweep_visit, &sw);
	for (i = 0; i < sw.n; i++)
		table_remove(t, sw.dead[i]);
	free(sw.dead);
}

static void
anvil_sweep(void *arg)
{
	int64_t now = stream_now_ms();

	(void)arg;
	table_sweep(&conn_table, now);
	table_sweep(&auth_table, now);
	event_timer_set(anvil_sweep, NULL, ANVIL_SWEEP_MS);
}

/* table_get - the entry for key, made when missing; NULL when the table is full */
static struct counter *
table_get(struct table *t, const char *key, int64_t now)
{
	struct counter *e;

	if ((e = table_find(t, key)) != NULL)
		return e;
	/* A full table is swept at most once a second, not once per request. */
	if (t->n >= ANVIL_ENTRIES_MAX && now - t->full_swept >= 1000) {
		t->full_swept = now;
		table_sweep(t, now);
	}
	if (t->n >= ANVIL_ENTRIES_MAX) {
		if (t->full_warned == 0 || now - t->full_warned >= 60000) {
			t->full_warned = now;
			log_warn("%s table full (%d identifiers): refusing new ones", t->what, ANVIL_ENTRIES_MAX);
		}
		return NULL;
	}
	e = xcalloc(1, sizeof(*e));
	e->key = xstrdup(key);
	e->start = now;
	if (tsearch(e, &t->root, counter_cmp) == NULL)
		log_fatal("%s table: out of memory", t->what);
	t->n++;
	return e;
}

/* ---------------------------------------------------------------- the wire */

/*
 * parse_request - one attribute list at the front of p[0..len): 1 when a
 * whole list is there (req filled in, *used its length), 0 when more
 * input is needed, -1 when the bytes break the framing or the limits
 * (the connection must go: the position in the stream is lost).
 */
static int
parse_request(const unsigned char *p, size_t len, struct request *req, size_t *used, const char **why)
{
	static const struct ipc_limits lim = { ANVIL_IDENT_MAX, ANVIL_IN_MAX, ANVIL_ATTRS_MAX };
	struct ipc_msg m;
	size_t i, vlen;
	int r;

	memset(req, 0, sizeof(*req));
	ipc_msg_init(&m);
	if ((r = ipc_parse(p, len, &m, &lim, used)) <= 0) {
		if (r < 0)
			*why = ipc_strerror(r);
		ipc_msg_free(&m);
		return r < 0 ? -1 : 0;
	}
	for (i = 0; i < ipc_msg_count(&m); i++) {
		const char *name = ipc_msg_name(&m, i), *value = ipc_msg_value(&m, i, &vlen);

		/* A repeated name: the first one counts (doc/ipc.md 2.1). */
		if (strcmp(name, ANVIL_ATTR_REQUEST) == 0) {
			if (!req->have_name) {
				req->have_name = true;
				if (vlen > ANVIL_REQUEST_MAX)
					req->name_toolong = true;
				else
					memcpy(req->name, value, vlen + 1);
			}
		} else if (strcmp(name, ANVIL_ATTR_IDENT) == 0) {
			if (!req->have_ident) {
				req->have_ident = true;
				memcpy(req->ident, value, vlen + 1);
			}
		} else if (req->unknown[0] == 0) {
			strlcpy(req->unknown, name, sizeof(req->unknown));
		}
	}
	ipc_msg_free(&m);
	return 1;
}

/* ---------------------------------------------------------------- requests */

static struct held *
held_find(struct client *c, struct counter *e)
{
	size_t i;

	for (i = 0; i < c->nheld; i++)
		if (c->held[i].e == e)
			return &c->held[i];
	return NULL;
}

static void
reply_refused(struct client *c, const char *reason, bool fatal)
{
	ipc_buf_int(&c->out, ATTR_STATUS, ANVIL_STAT_REFUSED);
	ipc_buf_str(&c->out, ATTR_REASON, reason);
	ipc_buf_end(&c->out);
	if (fatal)
		c->closing = true;
}

static void
do_connect(struct client *c, const char *ident, int64_t now)
{
	struct counter *e;
	struct held *h;

	if ((e = table_get(&conn_table, ident, now)) == NULL) {
		reply_refused(c, "too many identifiers", false);
		return;
	}
	if ((h = held_find(c, e)) == NULL) {
		if (c->nheld >= ANVIL_HELD_MAX) {
			reply_refused(c, "too many identifiers on one connection", false);
			return;
		}
		c->held = xreallocarray(c->held, c->nheld + 1, sizeof(*c->held));
		h = &c->held[c->nheld++];
		h->e = e;
		h->n = 0;
	}
	/* A fixed window, opened by the first connection after the previous window ended. */
	if (now - e->start >= rate_unit_ms) {
		e->start = now;
		e->rate = 0;
	}
	h->n++;
	e->conns++;
	e->rate++;
	ipc_buf_int(&c->out, ATTR_STATUS, ANVIL_STAT_OK);
	ipc_buf_int(&c->out, ANVIL_ATTR_COUNT, e->conns);
	ipc_buf_int(&c->out, ANVIL_ATTR_RATE, e->rate);
	ipc_buf_end(&c->out);
}

static void
do_disconnect(struct client *c, const char *ident)
{
	struct counter *e = table_find(&conn_table, ident);
	struct held *h = e ? held_find(c, e) : NULL;

	/* Only what this connection holds can be released; anything else is ignored. */
	if (h != NULL && h->n > 0) {
		h->n--;
		e->conns--;
		if (h->n == 0)
			*h = c->held[--c->nheld];
	}
	ipc_buf_int(&c->out, ATTR_STATUS, ANVIL_STAT_OK);
	ipc_buf_int(&c->out, ANVIL_ATTR_COUNT, e ? e->conns : 0);
	ipc_buf_end(&c->out);
}

static void
do_auth(struct client *c, const char *request, const char *ident, int64_t now)
{
	struct counter *e = table_find(&auth_table, ident);
	long long count = 0;

	if (e != NULL && auth_expired(e, now)) {
		table_remove(&auth_table, e);
		e = NULL;
	}
	if (strcmp(request, ANVIL_REQ_AUTH_FAIL) == 0) {
		if (e == NULL && (e = table_get(&auth_table, ident, now)) == NULL) {
			reply_refused(c, "too many identifiers", false);
			return;
		}
		e->fails++;
		e->start = now;
		count = e->fails;
	} else if (strcmp(request, ANVIL_REQ_AUTH_COUNT) == 0) {
		count = e ? e->fails : 0;
	} else if (e != NULL) {
		table_remove(&auth_table, e);
	}
	ipc_buf_int(&c->out, ATTR_STATUS, ANVIL_STAT_OK);
	if (strcmp(request, ANVIL_REQ_AUTH_RESET) != 0)
		ipc_buf_int(&c->out, ANVIL_ATTR_COUNT, count);
	ipc_buf_end(&c->out);
}

/* handle_request - answer one well-framed request into c->out */
static void
handle_request(struct client *c, const struct request *req)
{
	int64_t now = stream_now_ms();

	if (req->unknown[0]) {
		log_warn("client %d: unknown attribute \"%s\"", c->fd, req->unknown);
		reply_refused(c, "unknown attribute", true);
	} else if (!req->have_name || !req->have_ident) {
		log_warn("client %d: missing attribute \"%s\"", c->fd,
		    req->have_name ? ANVIL_ATTR_IDENT : ANVIL_ATTR_REQUEST);
		reply_refused(c, "missing attribute", true);
	} else if (req->ident[0] == 0) {
		log_warn("client %d: empty identifier", c->fd);
		reply_refused(c, "empty identifier", true);
	} else if (strcmp(req->name, ANVIL_REQ_CONNECT) == 0 && !req->name_toolong) {
		do_connect(c, req->ident, now);
	} else if (strcmp(req->name, ANVIL_REQ_DISCONNECT) == 0 && !req->name_toolong) {
		do_disconnect(c, req->ident);
	} else if (!req->name_toolong &&
	           (strcmp(req->name, ANVIL_REQ_AUTH_FAIL) == 0 || strcmp(req->name, ANVIL_REQ_AUTH_COUNT) == 0 ||
	               strcmp(req->name, ANVIL_REQ_AUTH_RESET) == 0)) {
		if (c->may_auth) {
			do_auth(c, req->name, req->ident, now);
		} else {
			log_warn("client %d: %s refused: the peer is not auth", c->fd, req->name);
			reply_refused(c, "request not permitted", true);
		}
	} else {
		log_warn("client %d: unknown request \"%.32s\"", c->fd, req->name);
		reply_refused(c, "unknown request", true);
	}
}

/* ---------------------------------------------------------------- clients */

static void client_read(int fd, int events, void *arg);
static void client_write(int fd, int events, void *arg);

/* client_drop - close a connection and release every count it held */
static void
client_drop(struct client *c)
{
	size_t i;

	for (i = 0; i < c->nheld; i++)
		c->held[i].e->conns -= c->held[i].n;
	event_forget(c->fd);
	close(c->fd);
	buf_free(&c->in);
	buf_free(&c->out);
	free(c->held);
	free(c);
}

/*
 * client_flush - write what is pending without blocking; 0 when done or
 * when the rest waits for a write event, -1 when the client is gone.
 */
static int
client_flush(struct client *c)
{
	ssize_t n;

	while (c->out.len > 0) {
		n = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
		if (n > 0) {
			buf_consume(&c->out, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			/* No more requests from a client that does not read its replies. */
			event_disable_read(c->fd);
			event_enable_write(c->fd, client_write, c);
			return 0;
		}
		return -1;
	}
	if (c->closing)
		return -1;
	event_disable_write(c->fd);
	event_enable_read(c->fd, client_read, c);
	return 0;
}

/* client_work - answer every complete request buffered, then write */
static void
client_work(struct client *c)
{
	struct request req;
	const char *why = NULL;
	size_t used;
	int r;

	while (!c->closing && (r = parse_request(c->in.data, c->in.len, &req, &used, &why)) != 0) {
		if (r < 0) {
			log_warn("client %d: malformed request: %s", c->fd, why);
			client_drop(c);
			return;
		}
		handle_request(c, &req);
		buf_consume(&c->in, used);
	}
	if (client_flush(c) < 0)
		client_drop(c);
}

static void
client_read(int fd, int events, void *arg)
{
	struct client *c = arg;
	size_t room;
	ssize_t n;

	(void)events;
	room = ANVIL_IN_MAX - c->in.len;
	if (room == 0) {
		/* Cannot happen with a well-formed or a rejected list; be safe anyway. */
		log_warn("client %d: request over %d bytes", fd, ANVIL_IN_MAX);
		client_drop(c);
		return;
	}
	buf_reserve(&c->in, room);
	n = recv(fd, c->in.data + c->in.len, room, 0);
	if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	if (n <= 0) {
		if (n < 0 && errno != ECONNRESET)
			log_warn("client %d: read: %m", fd);
		else if (c->in.len > 0)
			log_warn("client %d: lost connection inside a request", fd);
		client_drop(c);
		return;
	}
	c->in.len += (size_t)n;
	client_work(c);
}

static void
client_write(int fd, int events, void *arg)
{
	struct client *c = arg;

	(void)fd;
	(void)events;
	if (client_flush(c) < 0) {
		client_drop(c);
		return;
	}
	/* Requests that arrived while we waited for the client to read. */
	if (c->out.len == 0 && c->in.len > 0)
		client_work(c);
}

static void
anvil_accept(int fd, struct server_ctx *ctx)
{
	struct client *c = xcalloc(1, sizeof(*c));
	struct ucred cred;
	socklen_t len;
	int fl;

	(void)ctx;
	if ((fl = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		log_warn("accepted connection: fcntl: %m");
		close(fd);
		free(c);
		return;
	}
	c->fd = fd;
	/*
	 * smtpd (network_user) reaches this socket too.  Only processes of our
	 * own identity (auth) may read or change the login failure counters,
	 * or a subverted smtpd could reset a lockout.
	 */
	len = sizeof(cred);
	c->may_auth =
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && (cred.uid == geteuid() || cred.uid == 0);
	buf_init(&c->in, 0);
	buf_init(&c->out, 0);
	ipc_buf_str(&c->out, ATTR_PROTOCOL, ANVIL_PROTOCOL);
	ipc_buf_int(&c->out, ATTR_VERSION, ANVIL_VERSION);
	ipc_buf_end(&c->out);
	if (client_flush(c) < 0)
		client_drop(c);
}

static void
anvil_post_init(struct server_ctx *ctx)
{
	(void)ctx;
	rate_unit_ms = cfg_time(P_ANVIL_RATE_TIME_UNIT) * 1000;
	lockout_ms = cfg_time(P_AUTH_LOCKOUT_TIME) * 1000;
	event_timer_set(anvil_sweep, NULL, ANVIL_SWEEP_MS);
}

int
main(int argc, char **argv)
{
	static const struct server_desc desc = {
		.name = "anvil",
		.kind = SERVER_EVENT,
		.identity = SERVER_ID_QUEUE,
		.chroot_ok = true,
		.solitary = true,
		.post_init = anvil_post_init,
		.accept = anvil_accept,
	};

	server_main(argc, argv, &desc);
}
