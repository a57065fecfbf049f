/*
 * cleanup - the only writer of queue files.
 *
 * smtpd (and later pickup, and qmgr for bounces) connects to
 * private/cleanup once per message and sends the envelope as one
 * attribute list and the content in frames (doc/ipc.md 8.1).  cleanup
 * checks the envelope, rewrites its addresses (canonical_maps,
 * virtual_alias_maps), checks and completes the header, writes
 * incoming/ID, makes it durable, answers, and pokes qmgr.  The answer
 * comes only after the fsync, so a client may say "250 queued" as soon as
 * it has it.
 *
 * Clients are trusted no further than the protocol: every list, value,
 * frame and wait is bounded, and the envelope is checked again here (a
 * bad one is refused with status 5, a malformed list or frame ends the
 * connection without a reply).  A client that goes away before the last
 * frame leaves nothing behind.  One process serves up to max_use
 * messages with the tables it opened at start; the only fsync per
 * message is the commit's.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "cfg.h"
#include "cleanup.h"
#include "flow.h"
#include "ipc.h"
#include "log.h"
#include "proto.h"
#include "qfile.h"
#include "server.h"
#include "trigger.h"
#include "str.h"
#include "xalloc.h"

/* Every recipient may bring an orcpt and a notify; a few more for the rest. */
#define CL_ATTRS_MAX  (4 * CLEANUP_RCPT_MAX + 64)
#define CL_LIST_MAX   (16 * 1024 * 1024)
#define CL_READ_CHUNK 65536
#define CL_SIZE_MAX   (1LL << 62)

static struct cleanup_rewrite cl_rw;
static struct cleanup_msg_conf cl_conf; /* the per-message fields are filled in per message */
static int cl_timeout;

/* Envelope names (doc/ipc.md 8.1): all but rcpt, orcpt and notify occur at most once. */
static const char *const cl_required[] = { CLEANUP_ATTR_SENDER, CLEANUP_ATTR_RCPT, NULL };
static const char *const cl_optional[] = { ATTR_QUEUE_ID, CLEANUP_ATTR_FLAGS, CLEANUP_ATTR_CLIENT_NAME,
	CLEANUP_ATTR_CLIENT_ADDR, CLEANUP_ATTR_HELO, CLEANUP_ATTR_PROTOCOL, CLEANUP_ATTR_SASL_METHOD,
	CLEANUP_ATTR_SASL_USERNAME, CLEANUP_ATTR_ENVID, CLEANUP_ATTR_RET, CLEANUP_ATTR_BODY, CLEANUP_ATTR_SMTPUTF8,
	CLEANUP_ATTR_SIZE, CLEANUP_ATTR_ORCPT, CLEANUP_ATTR_NOTIFY, NULL };

/* Text attributes copied into the queue file, in this order. */
static const char *const cl_stored[] = { CLEANUP_ATTR_CLIENT_NAME, CLEANUP_ATTR_CLIENT_ADDR, CLEANUP_ATTR_HELO,
	CLEANUP_ATTR_PROTOCOL, CLEANUP_ATTR_SASL_METHOD, CLEANUP_ATTR_SASL_USERNAME, CLEANUP_ATTR_ENVID,
	CLEANUP_ATTR_RET, CLEANUP_ATTR_BODY, NULL };

/* One envelope recipient as received. */
struct cl_rcpt {
	const char *addr;
	const char *orcpt;
	int notify;
};

/* One message. */
struct cl_msg {
	char id[QID_LEN + 1]; /* or "NOQUEUE" until we have one */
	struct ipc_msg env;
	struct cl_rcpt *rcpts;
	size_t nrcpts;
	long long flags;
	bool smtputf8;
	struct buf sender; /* after rewriting */
	struct cleanup_rcpts out;
	struct cleanup_status st;
	struct qfile_writer w;
	bool writing; /* w is open and content goes to it */
	struct buf err;
	struct cleanup_msg content;
};

static void
cl_pre_init(struct server_ctx *ctx)
{
	struct buf err = BUF_INIT;

	(void)ctx;
	/* Tables are opened once: every message this process serves uses them. */
	if (cleanup_rewrite_open(&cl_rw, cfg_str(P_CANONICAL_MAPS), cfg_str(P_SENDER_CANONICAL_MAPS),
	        cfg_str(P_RECIPIENT_CANONICAL_MAPS), cfg_str(P_VIRTUAL_ALIAS_MAPS), &err) < 0)
		server_config_error("%s", buf_str(&err));
	cleanup_rewrite_local(&cl_rw, cfg_str(P_MYDESTINATION), cfg_str(P_MYORIGIN));
	free(cl_rw.delimiters);
	cl_rw.delimiters = xstrdup(cfg_str(P_RECIPIENT_DELIMITER));
	cl_rw.recursion_limit = (long)cfg_int(P_VIRTUAL_ALIAS_RECURSION_LIMIT);
	cl_rw.expansion_limit = (long)cfg_int(P_VIRTUAL_ALIAS_EXPANSION_LIMIT);
	cl_timeout = (int)cfg_time(P_IPC_TIMEOUT);
	cl_conf.message_size_limit = (uint64_t)cfg_int(P_MESSAGE_SIZE_LIMIT);
	cl_conf.header_size_limit = (size_t)cfg_int(P_HEADER_SIZE_LIMIT);
	cl_conf.hopcount_limit = (int)cfg_int(P_HOPCOUNT_LIMIT);
	cl_conf.add_missing = cfg_bool(P_ALWAYS_ADD_MISSING_HEADERS);
	cl_conf.myhostname = cfg_str(P_MYHOSTNAME);
	buf_free(&err);
}

/* cl_printable - s for a log line: bytes outside printable ASCII as \xHH, at most 200 of them */
static const char *
cl_printable(struct buf *out, const char *s)
{
	size_t i;

	buf_reset(out);
	for (i = 0; s[i] && i < 200; i++) {
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
			buf_printf(out, "\\x%02X", (unsigned char)s[i]);
		else
			buf_putc(out, s[i]);
	}
	if (s[i])
		buf_puts(out, "...");
	return buf_str(out);
}

/* cl_text_ok - a value fit for a queue file attribute and a log line */
static bool
cl_text_ok(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

/* cl_xtext_ok - RFC 3461 xtext: printable ASCII without space (the '+HH' form is not decoded) */
static bool
cl_xtext_ok(const char *s, size_t max)
{
	size_t i;

	for (i = 0; s[i]; i++)
		if ((unsigned char)s[i] < 33 || (unsigned char)s[i] > 126 || i >= max)
			return false;
	return i > 0;
}

/* cl_orcpt_ok - "addr-type;value": an atom, ';', then no control bytes or spaces */
static bool
cl_orcpt_ok(const char *s)
{
	const char *semi = strchr(s, ';');
	size_t i;

	if (semi == NULL || semi == s || semi[1] == 0 || strlen(s) > CLEANUP_ORCPT_MAX)
		return false;
	for (i = 0; s[i]; i++)
		if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

/* cl_notify_ok - NEVER alone, or any set of SUCCESS, FAILURE, DELAY */
static bool
cl_notify_ok(long long v)
{
	if (v < 1 || v > 15)
		return false;
	return !((v & QF_NOTIFY_NEVER) && v != QF_NOTIFY_NEVER);
}

/* cl_check_env - check the envelope list and take the recipients; -1 with st set */
static int
cl_check_env(struct cl_msg *m)
{
	const struct ipc_msg *e = &m->env;
	const char *name, *value, *const *np;
	struct cl_rcpt *r = NULL;
	bool have_orcpt = false, have_notify = false;
	long long v;
	size_t i, nrcpt;

	if (ipc_msg_check(e, cl_required, cl_optional, IPC_STRICT, &m->err) < 0)
		return cleanup_status_set(&m->st, CLEANUP_STAT_PERM, "5.5.4", "invalid envelope: %s", buf_str(&m->err));
	for (np = cl_optional; *np; np++)
		if (strcmp(*np, CLEANUP_ATTR_ORCPT) != 0 && strcmp(*np, CLEANUP_ATTR_NOTIFY) != 0 &&
		    ipc_msg_count_name(e, *np) > 1)
			return cleanup_status_set(
			    &m->st, CLEANUP_STAT_PERM, "5.5.4", "invalid envelope: attribute \"%s\" given twice", *np);
	if (ipc_msg_count_name(e, CLEANUP_ATTR_SENDER) > 1)
		return cleanup_status_set(&m->st, CLEANUP_STAT_PERM, "5.5.4", "invalid envelope: two senders");
	nrcpt = ipc_msg_count_name(e, CLEANUP_ATTR_RCPT);
	if (nrcpt > CLEANUP_RCPT_MAX)
		return cleanup_status_set(&m->st, CLEANUP_STAT_PERM, "5.5.3", "too many recipients");
	m->rcpts = xreallocarray(NULL, nrcpt, sizeof(*m->rcpts));

	for (i = 0; i < ipc_msg_count(e); i++) {
		name = ipc_msg_name(e, i);
		value = ipc_msg_value(e, i, NULL);
		if (strcmp(name, CLEANUP_ATTR_RCPT) == 0) {
			if (!cleanup_addr_ok(value))
				return cleanup_status_set(
				    &m->st, CLEANUP_STAT_PERM, "5.1.3", "bad recipient address syntax");
			r = &m->rcpts[m->nrcpts++];
			r->addr = value;
			r->orcpt = NULL;
			r->notify = 0;
			have_orcpt = have_notify = false;
		} else if (strcmp(name, CLEANUP_ATTR_ORCPT) == 0) {
			if (r == NULL || have_orcpt || !cl_orcpt_ok(value))
				return cleanup_status_set(
				    &m->st, CLEANUP_STAT_PERM, "5.5.4", "invalid envelope: bad orcpt");
			r->orcpt = value;
			have_orcpt = true;
		} else if (strcmp(name, CLEANUP_ATTR_NOTIFY) == 0) {
			if (r == NULL || have_notify || str_to_ll(value, 1, 15, &v, NULL) < 0 || !cl_notify_ok(v))
				return cleanup_status_set(
				    &m->st, CLEANUP_STAT_PERM, "5.5.4", "invalid envelope: bad notify");
			r->notify = (int)v;
			have_notify = true;
		} else if (!cl_text_ok(value)) {
			return cleanup_status_set(
			    &m->st, CLEANUP_STAT_PERM, "5.5.4", "invalid envelope: control character in %s", name);
		}
	}

	value = ipc_msg_str(e, CLEANUP_ATTR_SENDER);
	if (*value && !cleanup_addr_ok(value))
		return cleanup_status_set(&m->st, CLEANUP_STAT_PERM, "5.1.7", "bad sender address syntax");
	m->flags = 0;
	if (ipc_msg_str(e, CLEANUP_ATTR_FLAGS) != NULL &&
	    ipc_msg_int(e, CLEANUP_ATTR_FLAGS, 0, CLEANUP_FLAG_MASK, &m->flags) < 0)
		return cleanup_status_set(&m->st, CLEANUP_STAT_PERM, "5.5.4", "invalid envelope: bad flags");
	v = 0;
	if (ipc_msg_str(e, CLEANUP_ATTR_SMTPUTF8) != NULL && ipc_msg_int(e, CLEANUP_ATTR_SMTPUTF8, 0, 1, &v) < 0)
		return cleanup_status_set(&m->st, CLEANUP_STAT_PERM, "5.5.4", "invalid envelope: bad smtputf8");
	m->smtputf8 = v == 1;
	v = 0;
	if (ipc_msg_str(e, CLEANUP_ATTR_SIZE) != NULL && ipc_msg_int(e, CLEANUP_ATTR_SIZE, 0, CL_SIZE_MAX, &v) < 0)
		return cleanup_status_set(&m->st, CLEANUP_STAT_PERM, "5.5.4", "invalid envelope: bad size");
	if (cl_conf.message_size_limit > 0 && (uint64_t)v > cl_conf.message_size_limit)
		return cleanup_status_set(&m->st, CLEANUP_STAT_PERM, "5.3.4", "message file too big");
	if ((value = ipc_msg_str(e, CLEANUP_ATTR_ENVID)) != NULL && !cl_xtext_ok(value, CLEANUP_ENVID_MAX))
		return cleanup_status_set(&m->st, CLEANUP_STAT_PERM, "5.5.4", "invalid envelope: bad envid");
	if ((value = ipc_msg_str(e, CLEANUP_ATTR_RET)) != NULL && strcmp(value, "FULL") != 0 &&
	    strcmp(value, "HDRS") != 0)
		return cleanup_status_set(&m->st, CLEANUP_STAT_PERM, "5.5.4", "invalid envelope: bad ret");
	if ((value = ipc_msg_str(e, CLEANUP_ATTR_BODY)) != NULL && strcmp(value, "7BIT") != 0 &&
	    strcmp(value, "8BITMIME") != 0 && strcmp(value, "BINARYMIME") != 0)
		return cleanup_status_set(&m->st, CLEANUP_STAT_PERM, "5.5.4", "invalid envelope: bad body");
	return 0;
}

/* cl_rewrite - the sender and every recipient through the tables */
static int
cl_rewrite(struct cl_msg *m)
{
	size_t i;

	if (cleanup_rewrite_sender(&cl_rw, ipc_msg_str(&m->env, CLEANUP_ATTR_SENDER), &m->sender, &m->st) < 0)
		return -1;
	for (i = 0; i < m->nrcpts; i++)
		if (cleanup_rewrite_rcpt(&cl_rw, &m->out, m->rcpts[i].addr, m->rcpts[i].orcpt, m->rcpts[i].notify,
		        (m->flags & CLEANUP_FLAG_NO_ALIAS) != 0, &m->st) < 0)
			return -1;
	return 0;
}

/*
 * cl_write_error - the queue file could not be written: the client tries
 * again later.  A full file system gets its own code (4.3.1, which smtpd
 * answers with 452) so the client and the admin see the cause.
 */
static int
cl_write_error(struct cl_msg *m)
{
	log_warn("%s: %s", m->id, buf_str(&m->err));
	if (m->w.error == ENOSPC || m->w.error == EDQUOT)
		return cleanup_status_set(&m->st, CLEANUP_STAT_TEMP, "4.3.1", "Insufficient system storage");
	return cleanup_status_set(&m->st, CLEANUP_STAT_TEMP, "4.3.0", "queue file write error");
}

/* cl_begin_file - incoming/ID with everything up to the content */
static int
cl_begin_file(struct cl_msg *m)
{
	const char *const *np;
	const char *value;
	struct timeval now;
	size_t i;

	gettimeofday(&now, NULL);
	/* Lazy: a small message costs one open, write, fchmod, fsync and close at the commit. */
	if (qfile_create_id(&m->w, QUEUE_INCOMING, m->id, QF_CREATE_LAZY | QF_CREATE_POOL, &m->err) < 0)
		return cl_write_error(m);
	m->writing = true;
	if (qfile_put_time(&m->w, &now, &m->err) < 0 || qfile_put_sender(&m->w, buf_str(&m->sender), &m->err) < 0)
		return cl_write_error(m);
	for (np = cl_stored; *np; np++)
		if ((value = ipc_msg_str(&m->env, *np)) != NULL && *value &&
		    qfile_put_attr(&m->w, *np, value, &m->err) < 0)
			return cl_write_error(m);
	if ((m->smtputf8 && qfile_put_attr(&m->w, CLEANUP_ATTR_SMTPUTF8, "1", &m->err) < 0))
		return cl_write_error(m);
	if (m->flags) {
		char num[16];

		snprintf(num, sizeof(num), "%lld", m->flags);
		if (qfile_put_attr(&m->w, CLEANUP_ATTR_FLAGS, num, &m->err) < 0)
			return cl_write_error(m);
	}
	for (i = 0; i < m->out.n; i++)
		if (qfile_put_rcpt(&m->w, m->out.v[i].addr, m->out.v[i].orcpt, m->out.v[i].notify, &m->err) < 0)
			return cl_write_error(m);
	if (qfile_begin_content(&m->w, &m->err) < 0)
		return cl_write_error(m);
	return 0;
}

/* cl_store - cleanup_msg's output: content into the queue file */
static int
cl_store(void *arg, const unsigned char *p, size_t n)
{
	struct cl_msg *m = arg;

	/* The status recorded here is the one the client gets; the content machine's own comes too late. */
	if (qfile_put_content(&m->w, p, n, &m->err) < 0)
		return cl_write_error(m);
	return 0;
}

/* cl_frame_len - "LENGTH\n": decimal, no sign, no leading zero; -1 when malformed */
static long long
cl_frame_len(const struct buf *line)
{
	long long v = 0;
	size_t i, n = line->len;

	/* CLEANUP_FRAME_MAX has 7 digits: anything longer is over it. */
	if (n < 2 || n > 8 || line->data[n - 1] != '\n' || (line->data[0] == '0' && n > 2))
		return -1;
	for (i = 0; i + 1 < n; i++) {
		if (line->data[i] < '0' || line->data[i] > '9')
			return -1;
		v = v * 10 + (line->data[i] - '0');
	}
	return v <= CLEANUP_FRAME_MAX ? v : -1;
}

/*
 * cl_read_content - frames until "0\n", each fed to the content machine
 * when feed is set (the machine ignores what comes after its own
 * failure).  Returns 0 at the last frame, -1 when the client broke the
 * framing or went away (logged).
 */
static int
cl_read_content(struct stream *s, struct cl_msg *m, bool feed)
{
	static unsigned char chunk[CL_READ_CHUNK];
	struct buf line = BUF_INIT;
	unsigned long long total = 0;
	long long len;
	ssize_t got;
	size_t want;
	int r, ret = -1;

	for (;;) {
		r = stream_getline(s, &line, CLEANUP_FRAME_LINE_MAX);
		if (r == STREAM_EOF || (r == STREAM_OK && (line.len == 0 || line.data[line.len - 1] != '\n'))) {
			log_info("%s: lost connection with client after %llu bytes of content", m->id, total);
			goto out;
		}
		if (r != STREAM_OK) {
			log_warn("%s: reading content from client: %s", m->id,
			    r == STREAM_TOOLONG ? "frame length line too long" : stream_strerror(r));
			goto out;
		}
		if ((len = cl_frame_len(&line)) < 0) {
			log_warn("%s: bad content frame length from client", m->id);
			goto out;
		}
		if (len == 0)
			break;
		while (len > 0) {
			want = len < CL_READ_CHUNK ? (size_t)len : CL_READ_CHUNK;
			got = stream_read_some(s, chunk, want);
			if (got == 0) {
				log_info("%s: lost connection with client after %llu bytes of content", m->id, total);
				goto out;
			}
			if (got < 0) {
				log_warn("%s: reading content from client: %s", m->id, stream_strerror((int)got));
				goto out;
			}
			if (feed)
				(void)cleanup_msg_feed(&m->content, chunk, (size_t)got, &m->st);
			total += (unsigned long long)got;
			len -= got;
		}
	}
	ret = 0;
out:
	buf_free(&line);
	return ret;
}

/*
 * cl_trigger - tell qmgr there is new mail, unless a trigger is already on
 * its way (flow.h); qmgr rescans anyway, so failure is fine.
 */
static void
cl_trigger(void)
{
	struct buf err = BUF_INIT;

	if (!flow_trigger_claim())
		return;
	/* Non-blocking: a busy or absent qmgr must not hold up the next message. */
	if (trigger_send(SVC_PUBLIC_DIR "/" SVC_QMGR, TRIGGER_SCAN_INCOMING, &err) < 0) {
		flow_trigger_reset(); /* the next message tries again */
		log_debug("trigger: %s (qmgr will find the mail at its next scan)", buf_str(&err));
	}
	buf_free(&err);
}

/* cl_reply - the result list; a failure to send it is only logged (the client retries) */
static void
cl_reply(struct stream *s, struct cl_msg *m)
{
	int r;

	r = ipc_put_int(s, ATTR_STATUS, m->st.status);
	if (r == STREAM_OK)
		r = ipc_put_str(s, CLEANUP_ATTR_DSN, m->st.dsn);
	if (r == STREAM_OK && m->st.status != CLEANUP_STAT_OK)
		r = ipc_put_str(s, ATTR_REASON, buf_str(&m->st.reason));
	if (r == STREAM_OK && m->st.status == CLEANUP_STAT_OK)
		r = ipc_put_str(s, ATTR_QUEUE_ID, m->id);
	if (r == STREAM_OK)
		r = ipc_put_end(s);
	if (r != STREAM_OK)
		log_warn("%s: sending the result to the client: %s", m->id, stream_strerror(r));
}

static void
cl_service(struct stream *s, struct server_ctx *ctx)
{
	static const struct ipc_limits lim = { CLEANUP_VALUE_MAX, CL_LIST_MAX, CL_ATTRS_MAX };
	struct cleanup_msg_conf conf;
	struct cl_msg m;
	const char *qid;
	int r;

	(void)ctx;
	memset(&m, 0, sizeof(m));
	strlcpy(m.id, "NOQUEUE", sizeof(m.id));
	ipc_msg_init(&m.env);
	cleanup_rcpts_init(&m.out);
	cleanup_status_init(&m.st);
	stream_set_timeout(s, cl_timeout);

	if ((r = ipc_send_hello(s, CLEANUP_PROTOCOL, CLEANUP_VERSION)) != STREAM_OK) {
		log_warn("sending the greeting: %s", stream_strerror(r));
		goto out;
	}
	if ((r = ipc_get(s, &m.env, &lim)) != STREAM_OK) {
		if (r == STREAM_EOF)
			log_debug("client closed the connection before the envelope");
		else
			log_warn("reading the envelope: %s", ipc_strerror(r));
		goto out;
	}
	qid = ipc_msg_str(&m.env, ATTR_QUEUE_ID);
	if (qid == NULL)
		qid_new(m.id);
	else if (qid_valid(qid))
		strlcpy(m.id, qid, sizeof(m.id));
	else
		cleanup_status_set(&m.st, CLEANUP_STAT_PERM, "5.5.4", "invalid envelope: bad queue_id");

	if (m.st.status == CLEANUP_STAT_OK && cl_check_env(&m) == 0 && cl_rewrite(&m) == 0)
		(void)cl_begin_file(&m);
	conf = cl_conf;
	conf.add_missing = conf.add_missing || (m.flags & CLEANUP_FLAG_SUBMISSION);
	conf.queue_id = m.id;
	conf.sender = buf_str(&m.sender);
	cleanup_msg_init(&m.content, &conf, cl_store, &m);

	/* Even a refused envelope gets its content read, so the reply comes where the client expects it. */
	if (cl_read_content(s, &m, m.st.status == CLEANUP_STAT_OK) < 0)
		goto out;
	if (m.st.status == CLEANUP_STAT_OK && cleanup_msg_finish(&m.content, &m.st) == 0 &&
	    qfile_commit(&m.w, 0, &m.err) < 0)
		cl_write_error(&m);

	if (m.st.status == CLEANUP_STAT_OK) {
		if (*cleanup_msg_id(&m.content))
			log_info("%s: message-id=%s", m.id, cleanup_msg_id(&m.content));
		log_info("%s: from=<%s>, size=%llu, nrcpt=%zu (queue active)", m.id, buf_str(&m.sender),
		    (unsigned long long)m.content.out_bytes, m.out.n);
	} else {
		const char *sender = ipc_msg_str(&m.env, CLEANUP_ATTR_SENDER);

		log_info("%s: reject: %s %s; from=<%s>", m.id, m.st.dsn, buf_str(&m.st.reason),
		    cl_printable(&m.err, sender ? sender : ""));
	}
	cl_reply(s, &m);
	if (m.st.status == CLEANUP_STAT_OK)
		cl_trigger();

out:
	if (m.writing)
		qfile_abort(&m.w); /* nothing to do after a commit */
	cleanup_msg_free(&m.content);
	cleanup_status_free(&m.st);
	cleanup_rcpts_free(&m.out);
	free(m.rcpts);
	ipc_msg_free(&m.env);
	buf_free(&m.sender);
	buf_free(&m.err);
}

int
main(int argc, char **argv)
{
	static const struct server_desc desc = {
		.name = "cleanup",
		.kind = SERVER_SINGLE,
		.identity = SERVER_ID_QUEUE,
		.root_ok = false,
		.chroot_ok = false,
		.pre_init = cl_pre_init,
		.service = cl_service,
	};

	server_main(argc, argv, &desc);
}
