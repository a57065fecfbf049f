/*
 * pop3d_mailbox - the mailbox part's side of doc/ipc.md 8.6: take a
 * session from the login part, and start a process that serves it as the
 * mailbox owner.
 *
 * pop3d-mailbox runs as root (it must become any mailbox owner) and talks
 * only to local processes: a connection is served only when its peer
 * (SO_PEERCRED) is root, network_user or ourselves.  It trusts none of
 * the request but the login token, which it checks with the key auth
 * made (private/auth.key): a login part that was taken over cannot name
 * a user whose password it was not given moments ago.  The key is read
 * for each request and wiped before anything else happens.
 *
 * For an accepted session it forks; the child closes what it inherited
 * from the master and the tables, drops to the mailbox's uid and gid
 * (never 0; no supplementary groups), replies, and runs the session
 * (pop3d_session.c) on the client socket that came with the request, or
 * on the request connection itself when the login part relays TLS.  The
 * parent reaps nothing (SIGCHLD is ignored, children are not zombies)
 * and serves the next request.  Requests are wiped from memory when done,
 * so a session process inherits no other user's token.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth_client.h"
#include "cfg.h"
#include "log.h"
#include "mailbox.h"
#include "master_proto.h"
#include "pop3d.h"
#include "priv.h"
#include "proto.h"
#include "server.h"

#define LISTEN_FDS_MAX 64 /* the master passes at most this many listeners */

/* The token and the read-ahead input (hex) are the largest values. */
static const struct ipc_limits request_limits = { 2 * POP3D_INPUT_MAX + 16, 2 * POP3D_INPUT_MAX + 4096, 16 };

static struct mailbox_maps *maps;
static uid_t network_uid, key_owner;

void
pop3d_mailbox_init(bool privileged)
{
	struct buf err = BUF_INIT;
	struct sigaction sa;
	gid_t gid;

	pop3d_config_common();
	if ((maps = mailbox_open(&err)) == NULL)
		server_config_error("%s", buf_str(&err));
	network_uid = key_owner = geteuid();
	if (privileged) {
		if (priv_user(cfg_str(P_NETWORK_USER), &network_uid, &gid, &err) < 0)
			server_config_error("network_user: %s", buf_str(&err));
		if (priv_user(cfg_str(P_MAIL_OWNER), &key_owner, &gid, &err) < 0)
			server_config_error("mail_owner: %s", buf_str(&err));
	}
	/* Session processes are nobody's business once started: no zombies, no waiting. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sa.sa_flags = SA_NOCLDWAIT;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGCHLD, &sa, NULL) < 0)
		log_fatal("sigaction SIGCHLD: %m");
	buf_free(&err);
}

/* peer_ok - the connection comes from root, network_user (the login part) or ourselves */
static bool
peer_ok(int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		log_warn("SO_PEERCRED: %m");
		return false;
	}
	if (cred.uid == 0 || cred.uid == network_uid || cred.uid == geteuid())
		return true;
	log_warn("refusing a hand-off from uid %ld (pid %ld): only the login part may connect", (long)cred.uid,
	    (long)cred.pid);
	return false;
}

static void
reply(struct stream *conn, int status, const char *reason)
{
	if (ipc_put_int(conn, ATTR_STATUS, status) == STREAM_OK && ipc_put_str(conn, ATTR_REASON, reason) == STREAM_OK)
		(void)ipc_put_end(conn);
}

/* client_socket_ok - what came with the request is a connected stream socket */
static int
client_socket_ok(int fd, struct buf *err)
{
	int type = 0;
	socklen_t len = sizeof(type);

	if (ipc_check_fd(fd, S_IFSOCK, O_RDWR, err) < 0)
		return -1;
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM) {
		buf_strcpy(err, "passed descriptor is not a stream socket");
		return -1;
	}
	return 0;
}

/* close_inherited - the master's descriptors and listening sockets: not for a session process */
static void
close_inherited(void)
{
	int fd, listening;
	socklen_t len;

	(void)close(MASTER_STATUS_FD);
	(void)close(MASTER_ALIVE_FD);
	(void)close(MASTER_CONFIG_FD);
	(void)close(MASTER_FLOW_FD);
	/*
	 * A session process that kept the listener could accept other users'
	 * hand-offs: their tokens and sockets.
	 */
	for (fd = MASTER_LISTEN_FD; fd < MASTER_LISTEN_FD + LISTEN_FDS_MAX; fd++) {
		listening = 0;
		len = sizeof(listening);
		if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening)
			(void)close(fd);
	}
}

/* session_child - the forked process: become the owner, reply, serve; never returns */
static _Noreturn void
session_child(
    struct stream *conn, int cfd, const char *user, struct mailbox *mb, struct pop3d_request *req, bool privileged)
{
	struct stream *s;
	struct sigaction sa;
	char addr[65];

	strlcpy(addr, req->client_addr, sizeof(addr));
	/* The request (its token) is read and done with: no trace of it in the session. */
	if (conn->rbuf != NULL)
		explicit_bzero(conn->rbuf, conn->rpos);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	(void)sigaction(SIGCHLD, &sa, NULL);
	close_inherited();
	mailbox_close(maps);
	maps = NULL;
	if (privileged)
		priv_drop(mb->uid, mb->gid);
	else if (mb->uid != geteuid())
		log_debug(
		    "not started as root: serving the mailbox of uid %ld as uid %ld", (long)mb->uid, (long)geteuid());
	setproctitle("session %s [%s]", user, addr);
	/* The watchdog, as for any client: a session cannot hang around for ever. */
	alarm((unsigned)cfg_time(P_DAEMON_TIMEOUT));
	reply(conn, POP3D_STATUS_OK, "");
	if (req->fd_mode) {
		stream_free(conn);
		s = stream_new(cfd, 0);
	} else {
		s = conn;
	}
	stream_set_timeout(s, pop3d_cfg.timeout);
	stream_set_deadline(s, 0);
	pop3d_stream_preload(s, req->input.data, req->input.len);
	pop3d_request_free(req);
	pop3d_session_run(s, user, addr, mb->path);
	stream_free(s);
	exit(0);
}

void
pop3d_mailbox_serve(struct stream *conn, bool privileged)
{
	unsigned char key[AUTH_TOKEN_KEY_LEN];
	struct buf err = BUF_INIT, user = BUF_INIT;
	struct pop3d_request req;
	struct mailbox mb;
	struct ipc_msg m;
	enum mailbox_result mr;
	int r, cfd = -1;
	pid_t pid;

	memset(&req, 0, sizeof(req));
	memset(&mb, 0, sizeof(mb));
	ipc_msg_init(&m);
	if (!peer_ok(conn->fd))
		goto out;
	/* The client socket comes with the request; the skeleton's stream does not expect one. */
	conn->flags |= STREAM_FDPASS;
	stream_set_timeout(conn, POP3D_HANDOFF_TIMEOUT);
	stream_set_deadline(conn, POP3D_HANDOFF_TIMEOUT);
	if (ipc_send_hello(conn, POP3D_MAILBOX_PROTOCOL, POP3D_MAILBOX_VERSION) != STREAM_OK)
		goto out;
	if ((r = ipc_get(conn, &m, &request_limits)) != STREAM_OK) {
		if (r != STREAM_EOF)
			log_warn("bad hand-off request: %s", ipc_strerror(r));
		goto out;
	}
	if (pop3d_request_parse(&m, &req, &err) < 0) {
		log_warn("bad hand-off request: %s", buf_str(&err));
		reply(conn, POP3D_STATUS_TEMP, "protocol error");
		goto out;
	}
	if (req.fd_mode) {
		if ((r = stream_recv_fd(conn, &cfd)) != STREAM_OK) {
			log_warn("hand-off from [%s]: no client socket: %s", req.client_addr, ipc_strerror(r));
			goto out;
		}
		if (client_socket_ok(cfd, &err) < 0) {
			log_warn("hand-off from [%s]: %s", req.client_addr, buf_str(&err));
			reply(conn, POP3D_STATUS_TEMP, "protocol error");
			goto out;
		}
	}
	if (auth_key_load(AUTH_TOKEN_KEY_FILE, false, key_owner, key, &err) < 0) {
		log_warn("cannot check login tokens: %s", buf_str(&err));
		reply(conn, POP3D_STATUS_TEMP, "no token key");
		goto out;
	}
	r = auth_token_verify(key, "pop3d", req.token, (long long)time(NULL), &user, &err);
	explicit_bzero(key, sizeof(key));
	if (r < 0) {
		log_warn("hand-off from [%s] refused: %s", req.client_addr, buf_str(&err));
		reply(conn, POP3D_STATUS_TEMP, "invalid login token");
		goto out;
	}
	mr = mailbox_find(maps, buf_str(&user), &mb, &err);
	if (mr != MAILBOX_FOUND) {
		log_warn("user=<%s> [%s]: %s", buf_str(&user), req.client_addr, buf_str(&err));
		reply(conn, mr == MAILBOX_RETRY ? POP3D_STATUS_TEMP : POP3D_STATUS_PERM,
		    mr == MAILBOX_RETRY ? "mailbox lookup failed" : "no usable mailbox");
		goto out;
	}
	/* The token may not linger where the session process could read it. */
	explicit_bzero((char *)req.token, strlen(req.token));
	req.token = NULL;
	if ((pid = fork()) < 0) {
		log_warn("fork: %m");
		reply(conn, POP3D_STATUS_TEMP, "cannot start a session");
		goto out;
	}
	if (pid == 0)
		session_child(conn, cfd, buf_str(&user), &mb, &req, privileged);
	log_debug("user=<%s> [%s]: session process %ld", buf_str(&user), req.client_addr, (long)pid);
out:
	if (cfd >= 0)
		close(cfd);
	if (conn->rbuf != NULL)
		explicit_bzero(conn->rbuf, conn->rcap);
	if (m.store.data != NULL)
		explicit_bzero(m.store.data, m.store.cap);
	ipc_msg_free(&m);
	pop3d_request_free(&req);
	mailbox_free(&mb);
	buf_free(&user);
	buf_free(&err);
}

/* pop3d_mailbox_changed - for the main: a table changed, start afresh after this request */
bool
pop3d_mailbox_changed(void)
{
	return maps != NULL && mailbox_changed(maps);
}
