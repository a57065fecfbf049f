/*
 * smtp_deliver - one delivery request (doc/ipc.md 8.3), from the queue
 * file to one status per recipient; and the client's configuration.
 *
 * Called by smtp.c for each request qmgr sends.  The message is read
 * from the passed descriptor only; the next hop is resolved into a plan
 * (smtp_addr.c); each address is tried in turn within
 * smtp_mx_address_limit and smtp_mx_session_limit until one transaction
 * settles every recipient, and what is left is deferred with the last
 * reason.  A session that ends well is kept for qmgr's next request to
 * the same next hop (RSET first), up to smtp_connection_reuse_count_limit
 * messages.  When no server could be reached at all the end list says so
 * (DELIVER_DONE_UNREACHABLE) and qmgr slows down for that destination.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "log.h"
#include "smtp.h"
#include "str.h"
#include "tls.h"
#include "xalloc.h"

struct smtp_conf smtp_conf;

int
smtp_init(struct buf *err)
{
	struct smtp_conf *c = &smtp_conf;
	const char *v;
	bool v4, v6;

	c->myhostname = cfg_str(P_MYHOSTNAME);
	c->helo_name = cfg_str(P_SMTP_HELO_NAME);
	if (*c->helo_name == 0)
		c->helo_name = c->myhostname;
	if (strpbrk(c->helo_name, " \t\r\n") != NULL || strlen(c->helo_name) > DNS_NAME_MAX) {
		buf_printf(err, "smtp_helo_name = %s: not a host name", c->helo_name);
		return -1;
	}
	c->connect_timeout = (int)cfg_time(P_SMTP_CONNECT_TIMEOUT);
	c->helo_timeout = (int)cfg_time(P_SMTP_HELO_TIMEOUT);
	c->mail_timeout = (int)cfg_time(P_SMTP_MAIL_TIMEOUT);
	c->rcpt_timeout = (int)cfg_time(P_SMTP_RCPT_TIMEOUT);
	c->rset_timeout = (int)cfg_time(P_SMTP_RSET_TIMEOUT);
	c->quit_timeout = (int)cfg_time(P_SMTP_QUIT_TIMEOUT);
	c->data_init_timeout = (int)cfg_time(P_SMTP_DATA_INIT_TIMEOUT);
	c->data_xfer_timeout = (int)cfg_time(P_SMTP_DATA_XFER_TIMEOUT);
	c->data_done_timeout = (int)cfg_time(P_SMTP_DATA_DONE_TIMEOUT);
	c->starttls_timeout = (int)cfg_time(P_SMTP_STARTTLS_TIMEOUT);
	c->ipc_timeout = (int)cfg_time(P_IPC_TIMEOUT);
	c->reuse_limit = cfg_int(P_SMTP_CONNECTION_REUSE_COUNT_LIMIT);
	c->mx_address_limit = cfg_int(P_SMTP_MX_ADDRESS_LIMIT);
	c->mx_session_limit = cfg_int(P_SMTP_MX_SESSION_LIMIT);
	c->line_limit = (int)cfg_int(P_SMTP_LINE_LENGTH_LIMIT);
	c->sasl_enable = cfg_bool(P_SMTP_SASL_AUTH_ENABLE);
	c->sasl_tls_only = cfg_bool(P_SMTP_SASL_TLS_ONLY);

	v = cfg_str(P_SMTP_ADDRESS_PREFERENCE);
	if (strcmp(v, "any") == 0)
		c->pref = SMTP_PREF_ANY;
	else if (strcmp(v, "ipv4") == 0)
		c->pref = SMTP_PREF_IPV4;
	else if (strcmp(v, "ipv6") == 0)
		c->pref = SMTP_PREF_IPV6;
	else {
		buf_printf(err, "smtp_address_preference = %s: use any, ipv4 or ipv6", v);
		return -1;
	}
	v = cfg_str(P_INET_PROTOCOLS);
	v4 = strstr(v, "ipv4") != NULL;
	v6 = strstr(v, "ipv6") != NULL;
	if (strcmp(v, "all") == 0)
		v4 = v6 = true;
	if (!v4 && !v6) {
		buf_printf(err, "inet_protocols = %s: use all, ipv4, ipv6 or ipv4, ipv6", v);
		return -1;
	}
	c->use_v4 = v4;
	c->use_v6 = v6;
	if (smtp_tls_level_parse(cfg_str(P_SMTP_TLS_SECURITY_LEVEL), &c->tls_level) < 0) {
		buf_printf(err, "smtp_tls_security_level = %s: use none, may, encrypt or verify",
		    cfg_str(P_SMTP_TLS_SECURITY_LEVEL));
		return -1;
	}
	/* The CA file is read here, before the chroot, and never again. */
	if ((c->tls_ctx = tls_client_ctx(cfg_str(P_SMTP_TLS_CAFILE), err)) == NULL) {
		buf_puts(err, " (smtp_tls_CAfile)");
		return -1;
	}
	v = cfg_str(P_SMTP_TLS_POLICY_MAPS);
	if (*(v + strspn(v, STR_LIST_SEP)) && (c->tls_policy = dict_list_open(v, 0, err)) == NULL) {
		buf_puts(err, " (in smtp_tls_policy_maps)");
		return -1;
	}
	v = cfg_str(P_SMTP_SASL_PASSWORD_MAPS);
	if (c->sasl_enable && *(v + strspn(v, STR_LIST_SEP)) && (c->sasl_passwd = dict_list_open(v, 0, err)) == NULL) {
		buf_puts(err, " (in smtp_sasl_password_maps)");
		return -1;
	}
	if (dns_set_resolver(cfg_str(P_SMTP_DNS_RESOLVER), err) < 0) {
		buf_puts(err, " (smtp_dns_resolver)");
		return -1;
	}
	dns_init();
	return 0;
}

bool
smtp_tables_changed(void)
{
	return (smtp_conf.tls_policy && dict_list_changed(smtp_conf.tls_policy)) ||
	       (smtp_conf.sasl_passwd && dict_list_changed(smtp_conf.sasl_passwd));
}

/* all_pending - every recipient without an outcome gets this one */
static void
all_pending(struct smtp_rcpt *v, size_t n, enum deliver_status st, const char *dsn, const char *relay, const char *why)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!v[i].final)
			smtp_rcpt_set(&v[i], st, dsn, relay, why);
}

static bool
any_pending(const struct smtp_rcpt *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!v[i].final)
			return true;
	return false;
}

/* keep_or_close - a session kept for the next request to the same next hop, or closed; true when kept */
static bool
keep_or_close(struct smtp_session *ss, struct smtp_session **cache)
{
	if (ss != NULL && !ss->broken && ss->count < smtp_conf.reuse_limit) {
		*cache = ss;
		return true;
	}
	smtp_session_close(ss);
	return false;
}

/*
 * deliver - the recipients of m over a kept session or the plan's
 * addresses; returns DELIVER_DONE_* flags.
 */
static int
deliver(struct smtp_msg *m, struct smtp_rcpt *v, size_t n, const struct smtp_nexthop *nh,
    const struct smtp_sess_opts *opts, struct smtp_session **cache)
{
	struct smtp_sess_opts o = *opts;
	struct smtp_session *ss = *cache;
	struct smtp_plan plan;
	struct smtp_fail f;
	long long sessions = 0;
	bool reached = false, tls_failed, tried = false;
	size_t i;
	int flags = 0;

	memset(&f, 0, sizeof(f));
	strlcpy(f.relay, "none", sizeof(f.relay));
	*cache = NULL;
	/* A kept session serves only its own next hop, and must still answer. */
	if (ss != NULL && (strcmp(ss->nexthop, m->req->nexthop) != 0 || !smtp_session_rset(ss))) {
		smtp_session_close(ss);
		ss = NULL;
	}
	if (ss != NULL) {
		if (smtp_trans(ss, m, v, n, &f) == SMTP_TX_DONE) {
			if (keep_or_close(ss, cache))
				flags |= DELIVER_DONE_REUSE;
			buf_free(&f.why);
			return flags;
		}
		smtp_session_close(ss);
		ss = NULL;
	}
	smtp_plan_make(nh, &plan);
	if (plan.n == 0) {
		all_pending(v, n, plan.fail, plan.dsn, "none", buf_str(&plan.why));
		goto out;
	}
	for (i = 0; i < plan.n && any_pending(v, n) && sessions < smtp_conf.mx_session_limit; i++) {
		tried = true;
		ss = smtp_session_open(&plan.v[i], &o, &f, &tls_failed);
		if (f.reached) {
			sessions++;
			reached = true;
		}
		if (ss == NULL && tls_failed && sessions < smtp_conf.mx_session_limit) {
			/* "may": a server whose TLS is broken still gets the mail, in plaintext. */
			log_info("%s: TLS failed; trying again without STARTTLS", f.relay);
			o.no_starttls = true;
			ss = smtp_session_open(&plan.v[i], &o, &f, &tls_failed);
			o.no_starttls = false;
			if (f.reached)
				sessions++;
		}
		if (ss == NULL)
			continue;
		ss->nexthop = xstrdup(m->req->nexthop);
		if (smtp_trans(ss, m, v, n, &f) == SMTP_TX_DONE)
			break;
		smtp_session_close(ss);
		ss = NULL;
	}
	if (any_pending(v, n)) {
		if (!tried)
			all_pending(v, n, DELIVER_DEFERRED, "4.4.1", "none", "no server address could be tried");
		else
			all_pending(v, n, f.status == DELIVER_BOUNCED ? DELIVER_BOUNCED : DELIVER_DEFERRED,
			    f.dsn[0] ? f.dsn : "4.4.1", f.relay, buf_len(&f.why) ? buf_str(&f.why) : "delivery failed");
	}
	if (tried && !reached)
		flags |= DELIVER_DONE_UNREACHABLE;
	if (ss != NULL && keep_or_close(ss, cache))
		flags |= DELIVER_DONE_REUSE;
out:
	smtp_plan_free(&plan);
	buf_free(&f.why);
	return flags;
}

int
smtp_request(struct stream *ipc, struct deliver_request *req, struct smtp_session **cache)
{
	static const struct qfile_read_limits lim = { .max_rcpts = 10000000, .max_attrs = 1000000 };
	struct smtp_sess_opts opts;
	struct smtp_nexthop nh;
	struct qfile_env env;
	struct smtp_msg m;
	struct smtp_rcpt *v;
	struct buf err = BUF_INIT;
	const char *a;
	size_t i;
	int r, flags = 0;

	v = xcalloc(req->nrcpts, sizeof(*v));
	for (i = 0; i < req->nrcpts; i++)
		v[i].r = &req->rcpts[i];
	memset(&m, 0, sizeof(m));
	memset(&env, 0, sizeof(env));
	if ((r = qfile_read(req->fd, &env, &lim, &err)) != 0) {
		log_warn("%s: cannot read the queue file: %s", req->queue_id, r > 0 ? "incomplete" : buf_str(&err));
		all_pending(v, req->nrcpts, DELIVER_DEFERRED, "4.3.0", "none", "the queue file cannot be read");
		goto report;
	}
	m.req = req;
	m.fd = req->fd;
	m.content_offset = env.content_offset;
	m.content_size = env.content_size;
	m.envid = qfile_env_attr(&env, "envid");
	m.ret = qfile_env_attr(&env, "ret");
	m.smtputf8 = (a = qfile_env_attr(&env, "smtputf8")) != NULL && strcmp(a, "1") == 0;
	if (m.ret && strcmp(m.ret, "FULL") != 0 && strcmp(m.ret, "HDRS") != 0)
		m.ret = NULL;
	if (m.envid && (strlen(m.envid) > 100 || strpbrk(m.envid, " \t\r\n") != NULL))
		m.envid = NULL;
	if (smtp_msg_scan(&m, &err) < 0) {
		log_warn("%s: cannot read the message: %s", req->queue_id, buf_str(&err));
		all_pending(v, req->nrcpts, DELIVER_DEFERRED, "4.3.0", "none", "the queue file cannot be read");
		goto report;
	}
	if (smtp_nexthop_parse(req->nexthop, &nh, &err) < 0) {
		log_warn("%s: %s", req->queue_id, buf_str(&err));
		buf_reset(&m.convert_why);
		buf_printf(&m.convert_why, "mail transport configuration error: %s", buf_str(&err));
		all_pending(v, req->nrcpts, DELIVER_DEFERRED, "4.3.5", "none", buf_str(&m.convert_why));
		goto report;
	}
	memset(&opts, 0, sizeof(opts));
	opts.nexthop = req->nexthop;
	buf_reset(&err);
	if (smtp_tls_policy(req->nexthop, &nh, &opts.tls, &err) < 0) {
		all_pending(v, req->nrcpts, DELIVER_DEFERRED, "4.7.5", "none", buf_str(&err));
		goto report;
	}
	flags = deliver(&m, v, req->nrcpts, &nh, &opts, cache);
report:
	/* Nothing leaves without an outcome: a slip here must defer, never read as sent. */
	all_pending(v, req->nrcpts, DELIVER_DEFERRED, "4.3.0", "none", "delivery was not attempted");
	for (i = 0; i < req->nrcpts; i++) {
		if (deliver_status_send(
		        ipc, v[i].r->offset, v[i].status, v[i].dsn, v[i].relay, buf_str(&v[i].reason)) != STREAM_OK) {
			/* qmgr is gone: what it did not hear about stays deferred there. */
			log_warn("%s: cannot report to qmgr: %s", req->queue_id, stream_strerror(stream_status(ipc)));
			flags &= ~DELIVER_DONE_REUSE;
			break;
		}
	}
	for (i = 0; i < req->nrcpts; i++)
		buf_free(&v[i].reason);
	free(v);
	buf_free(&m.seven);
	buf_free(&m.convert_why);
	buf_free(&err);
	qfile_env_free(&env);
	return flags;
}
