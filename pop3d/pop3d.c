/*
 * pop3d - the login part of the POP3 server (pop3d(8)): ports 110 (STLS)
 * and 995 (implicit TLS, -o pop3d_tls_wrappermode=yes).
 *
 * Runs as network_user, chrooted in the queue directory on a root
 * install.  The TLS key is read in pre_init, before the chroot; after
 * that the process can reach only private/auth (passwords) and
 * private/pop3d-mailbox (the mailbox part), and holds no mailbox and no
 * password hash.  All pre-authentication parsing happens here
 * (pop3d_login.c); after a login the session belongs to the mailbox part
 * (pop3d_handoff.c, doc/ipc.md 8.6).
 */
#include "config.h"

#include <netdb.h>
#include <string.h>
#include <sys/socket.h>

#include "cfg.h"
#include "log.h"
#include "pop3d.h"
#include "server.h"
#include "tls.h"

static void
pop3d_pre_init(struct server_ctx *ctx)
{
	struct pop3d_config *c = &pop3d_cfg;
	struct buf err = BUF_INIT;
	const char *level = cfg_str(P_POP3D_TLS_SECURITY_LEVEL), *cert = cfg_str(P_POP3D_TLS_CERT_FILE);
	bool want_tls;

	(void)ctx;
	pop3d_config_common();
	c->tls_wrapper = cfg_bool(P_POP3D_TLS_WRAPPERMODE);
	if (strcmp(level, "encrypt") == 0)
		c->tls_required = true;
	else if (strcmp(level, "may") != 0 && strcmp(level, "none") != 0 && *level != 0)
		server_config_error("pop3d_tls_security_level = %s: use none, may or encrypt", level);
	want_tls = c->tls_wrapper || c->tls_required || strcmp(level, "may") == 0;
	if (want_tls && *cert == 0 && (c->tls_wrapper || c->tls_required))
		server_config_error("pop3d needs TLS (pop3d_tls_wrappermode or pop3d_tls_security_level=encrypt) "
		                    "but pop3d_tls_cert_file is empty");
	/* The key is read here, as root, and never again. */
	if (want_tls && *cert != 0) {
		c->tls_ctx = tls_server_ctx(cert, cfg_str(P_POP3D_TLS_KEY_FILE), &err);
		if (c->tls_ctx == NULL)
			server_config_error("pop3d TLS: %s", buf_str(&err));
	}
	buf_reset(&err);
	if (cidr_list_parse(cfg_str(P_MYNETWORKS), &c->mynetworks, &err) < 0)
		server_config_error("mynetworks: %s", buf_str(&err));
	buf_free(&err);
}

/* client_addr - the peer's numeric address ("127.0.0.1" for a Unix socket: a local test client) */
static void
client_addr(int fd, char *addr, size_t size)
{
	struct sockaddr_storage sa;
	socklen_t len = sizeof(sa);

	memset(&sa, 0, sizeof(sa));
	strlcpy(addr, "unknown", size);
	if (getpeername(fd, (struct sockaddr *)&sa, &len) < 0)
		return;
	if (sa.ss_family == AF_UNIX) {
		strlcpy(addr, "127.0.0.1", size);
		return;
	}
	if (getnameinfo((struct sockaddr *)&sa, len, addr, size, NULL, 0, NI_NUMERICHOST) != 0)
		strlcpy(addr, "unknown", size);
	if (strncmp(addr, "::ffff:", 7) == 0 && strchr(addr, '.') != NULL)
		memmove(addr, addr + 7, strlen(addr + 7) + 1);
}

static void
pop3d_service(struct stream *client, struct server_ctx *ctx)
{
	struct pop3d_login ls;

	(void)ctx;
	memset(&ls, 0, sizeof(ls));
	ls.s = client;
	stream_set_timeout(client, pop3d_cfg.timeout);
	client_addr(client->fd, ls.addr, sizeof(ls.addr));
	ls.in_mynetworks = cidr_list_match(&pop3d_cfg.mynetworks, ls.addr);
	pop3d_login_run(&ls);
}

int
main(int argc, char **argv)
{
	static const struct server_desc desc = {
		.name = "pop3d",
		.kind = SERVER_SINGLE,
		.identity = SERVER_ID_NETWORK,
		.chroot_ok = true,
		.pre_init = pop3d_pre_init,
		.service = pop3d_service,
	};

	server_main(argc, argv, &desc);
}
