/*
 * smtpd - the SMTP server: ports 25, 587 and 465, one program, three
 * master.cf services told apart by -o overrides.
 *
 * Runs as network_user, chrooted in the queue directory on a root
 * install; it never touches the queue: messages stream to cleanup over
 * private/cleanup, passwords go to auth over private/auth.  Everything it
 * needs from the file system (tables, the TLS key, the resolver
 * configuration) is opened in pre_init, before the chroot; when one of
 * the tables changes, the process exits after its current client and the
 * master starts a fresh one.  Clients are hostile: every line, count and
 * wait is bounded (smtpd_session.c, smtpd_data.c).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netdb.h>
#include <unistd.h>

#include "anvil_client.h"
#include "cfg.h"
#include "dns.h"
#include "log.h"
#include "server.h"
#include "smtpd.h"
#include "str.h"
#include "tls.h"
#include "xalloc.h"

struct smtpd_config smtpd_cfg;

static void
smtpd_pre_init(struct server_ctx *ctx)
{
	struct smtpd_config *c = &smtpd_cfg;
	struct buf err = BUF_INIT;
	const char *v;

	(void)ctx;
	c->myhostname = cfg_str(P_MYHOSTNAME);
	c->banner = cfg_str(P_SMTPD_BANNER);
	c->mail_name = cfg_str(P_MAIL_NAME);
	c->message_size_limit = cfg_int(P_MESSAGE_SIZE_LIMIT);
	c->recipient_limit = cfg_int(P_SMTPD_RECIPIENT_LIMIT);
	c->line_limit = cfg_int(P_LINE_LENGTH_LIMIT);
	c->timeout = (int)cfg_time(P_SMTPD_TIMEOUT);
	c->error_sleep = (int)cfg_time(P_SMTPD_ERROR_SLEEP_TIME);
	c->soft_error_limit = cfg_int(P_SMTPD_SOFT_ERROR_LIMIT);
	c->hard_error_limit = cfg_int(P_SMTPD_HARD_ERROR_LIMIT);
	c->junk_limit = cfg_int(P_SMTPD_JUNK_COMMAND_LIMIT);
	c->conn_count_limit = cfg_int(P_SMTPD_CLIENT_CONNECTION_COUNT_LIMIT);
	c->conn_rate_limit = cfg_int(P_SMTPD_CLIENT_CONNECTION_RATE_LIMIT);
	c->tls_wrapper = cfg_bool(P_SMTPD_TLS_WRAPPERMODE);
	c->tls_auth_only = cfg_bool(P_SMTPD_TLS_AUTH_ONLY);
	c->sasl_enable = cfg_bool(P_SMTPD_SASL_AUTH_ENABLE);
	c->sasl_header = cfg_bool(P_SMTPD_SASL_AUTHENTICATED_HEADER);
	c->helo_required = cfg_bool(P_SMTPD_HELO_REQUIRED);
	c->reject_unlisted_recipient = cfg_bool(P_SMTPD_REJECT_UNLISTED_RECIPIENT);
	c->vrfy_disabled = cfg_bool(P_DISABLE_VRFY_COMMAND);
	c->peername_lookup = cfg_bool(P_SMTPD_PEERNAME_LOOKUP);
	c->smtputf8 = cfg_bool(P_SMTPUTF8_ENABLE);
	c->unknown_address_code = (int)cfg_int(P_UNKNOWN_ADDRESS_REJECT_CODE);
	c->recipient_delimiter = cfg_str(P_RECIPIENT_DELIMITER);

	v = cfg_str(P_SMTPD_FORBID_BARE_NEWLINE);
	if (strcmp(v, "normalize") == 0 || strcmp(v, "yes") == 0)
		c->bare_lf = BARE_LF_NORMALIZE;
	else if (strcmp(v, "reject") == 0)
		c->bare_lf = BARE_LF_REJECT;
	else if (strcmp(v, "no") == 0)
		c->bare_lf = BARE_LF_NO;
	else
		server_config_error("smtpd_forbid_bare_newline = %s: use normalize, reject or no", v);

	v = cfg_str(P_SMTPD_TLS_SECURITY_LEVEL);
	if (*v == 0 || strcmp(v, "none") == 0)
		c->tls_level = TLS_LEVEL_NONE;
	else if (strcmp(v, "may") == 0)
		c->tls_level = TLS_LEVEL_MAY;
	else if (strcmp(v, "encrypt") == 0)
		c->tls_level = TLS_LEVEL_ENCRYPT;
	else
		server_config_error("smtpd_tls_security_level = %s: use none, may or encrypt", v);
	/* The key is read here, as root, and never again. */
	if (c->tls_level != TLS_LEVEL_NONE || c->tls_wrapper) {
		if (*cfg_str(P_SMTPD_TLS_CERT_FILE) == 0)
			server_config_error("TLS is on (smtpd_tls_security_level or smtpd_tls_wrappermode) but "
			                    "smtpd_tls_cert_file is empty");
		c->tls_ctx = tls_server_ctx(cfg_str(P_SMTPD_TLS_CERT_FILE), cfg_str(P_SMTPD_TLS_KEY_FILE), &err);
		if (c->tls_ctx == NULL)
			server_config_error("smtpd TLS: %s", buf_str(&err));
	}
	if (c->tls_wrapper && c->tls_level == TLS_LEVEL_NONE)
		c->tls_level = TLS_LEVEL_ENCRYPT;

	buf_reset(&err);
	if (cidr_list_parse(cfg_str(P_MYNETWORKS), &c->mynetworks, &err) < 0)
		server_config_error("mynetworks: %s", buf_str(&err));
	buf_reset(&err);
	if (smtpd_check_init(&err) < 0)
		server_config_error("%s", buf_str(&err));
	/* The resolver's files, and NSS modules a lookup may need, before the chroot. */
	dns_init();
	buf_free(&err);
}

/* client_info - the peer's address and, when asked for, its name */
static void
client_info(struct smtpd_session *ss)
{
	struct sockaddr_storage sa;
	socklen_t len = sizeof(sa);

	buf_strcpy(&ss->name, "unknown");
	strcpy(ss->addr, "unknown");
	if (getpeername(ss->s->fd, (struct sockaddr *)&sa, &len) < 0)
		return;
	if (sa.ss_family == AF_UNIX) {
		strcpy(ss->addr, "127.0.0.1");
		buf_strcpy(&ss->name, "localhost");
		return;
	}
	if (getnameinfo((struct sockaddr *)&sa, len, ss->addr, sizeof(ss->addr), NULL, 0, NI_NUMERICHOST) != 0)
		strcpy(ss->addr, "unknown");
	if (strncmp(ss->addr, "::ffff:", 7) == 0 && strchr(ss->addr, '.') != NULL)
		memmove(ss->addr, ss->addr + 7, strlen(ss->addr + 7) + 1);
	if (smtpd_cfg.peername_lookup)
		(void)dns_client_name(ss->addr, &ss->name);
}

static void
smtpd_service(struct stream *client, struct server_ctx *ctx)
{
	struct smtpd_session ss;

	memset(&ss, 0, sizeof(ss));
	ss.s = client;
	ss.service = ctx->service;
	stream_set_timeout(client, smtpd_cfg.timeout);
	client_info(&ss);
	ss.in_mynetworks = cidr_list_match(&smtpd_cfg.mynetworks, ss.addr);
	smtpd_session_run(&ss);
	buf_free(&ss.name);
	/* A changed table: let the master start a process that reads the new one. */
	if (smtpd_check_changed()) {
		log_info("a lookup table changed; restarting");
		exit(0);
	}
}

int
main(int argc, char **argv)
{
	static const struct server_desc desc = {
		.name = "smtpd",
		.kind = SERVER_SINGLE,
		.identity = SERVER_ID_NETWORK,
		.chroot_ok = true,
		.pre_init = smtpd_pre_init,
		.service = smtpd_service,
	};

	server_main(argc, argv, &desc);
}
