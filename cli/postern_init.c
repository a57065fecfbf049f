/*
 * postern_init - "postern init DIR" makes a self-contained instance, and
 * "postern setup" prepares a host for a root-run Postern (system users
 * and groups, the queue tree).
 *
 * An instance is ordinary configuration: DIR/main.cf and DIR/master.cf
 * say everything, so an admin can build the same by hand from the man
 * pages.  Run as root, init first makes the system users (as setup does)
 * and the instance runs with full privilege separation; run as anybody
 * else, everything runs as that user.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdbool.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "cfg.h"
#include "dict.h"
#include "log.h"
#include "postern.h"
#include "priv.h"
#include "pwhash.h"
#include "qdir.h"
#include "str.h"
#include "xalloc.h"

#define DEMO_DOMAIN "example.test"
#define DEMO_USER   "demo"

/* run - run a command without a shell; returns its exit status */
static int
run(char *const argv[])
{
	static char *const env[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL };
	int status;
	pid_t pid;

	if ((pid = fork()) < 0)
		log_fatal("fork: %m");
	if (pid == 0) {
		execve(argv[0], argv, env);
		log_fatal("execute %s: %m", argv[0]);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			log_fatal("waitpid: %m");
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* ensure_group - create a system group unless it exists */
static int
ensure_group(const char *name)
{
	char *av[] = { "/usr/sbin/groupadd", "--system", (char *)name, NULL };

	if (getgrnam(name) != NULL)
		return 0;
	printf("postern: creating system group %s\n", name);
	return run(av) == 0 ? 0 : -1;
}

/* ensure_user - create a system user with a group of its own unless it exists */
static int
ensure_user(const char *name, const char *home)
{
	char *av[] = { "/usr/sbin/useradd", "--system", "--user-group", "--no-create-home", "--home-dir", (char *)home,
		"--shell", "/usr/sbin/nologin", "--comment", "Postern", (char *)name, NULL };

	if (getpwnam(name) != NULL)
		return 0;
	printf("postern: creating system user %s\n", name);
	return run(av) == 0 ? 0 : -1;
}

/* setup_users - the identities of DESIGN.md's process table */
static int
setup_users(void)
{
	const char *queue = cfg_str(P_QUEUE_DIRECTORY);

	if (geteuid() != 0) {
		fprintf(stderr, "postern: only root can create system users\n");
		return -1;
	}
	if (ensure_group(cfg_str(P_SETGID_GROUP)) < 0 || ensure_user(cfg_str(P_MAIL_OWNER), queue) < 0 ||
	    ensure_user(cfg_str(P_NETWORK_USER), "/nonexistent") < 0 ||
	    ensure_user(DEF_VMAIL_USER, "/nonexistent") < 0) {
		fprintf(stderr, "postern: could not create the system users and groups\n");
		return -1;
	}
	return 0;
}

/* setgid_postdrop - postdrop gets the group setgid_group and the set-group-id bit */
static int
setgid_postdrop(const char *root)
{
	struct buf err = BUF_INIT;
	char *path = xasprintf("%s%s/postdrop", root, cfg_str(P_COMMAND_DIRECTORY));
	gid_t gid;
	int rc = 0;

	if (priv_group(cfg_str(P_SETGID_GROUP), &gid, &err) < 0) {
		fprintf(stderr, "postern: %s\n", buf_str(&err));
		rc = -1;
	} else if (access(path, F_OK) < 0) {
		fprintf(stderr, "postern: %s: %s (install Postern first)\n", path, strerror(errno));
		rc = -1;
	} else if (chown(path, 0, gid) < 0 || chmod(path, 02755) < 0) {
		fprintf(stderr, "postern: %s: %s\n", path, strerror(errno));
		rc = -1;
	} else {
		printf("postern: %s is set-group-id %s\n", path, cfg_str(P_SETGID_GROUP));
	}
	free(path);
	buf_free(&err);
	return rc;
}

/* replace_sendmail - sendmail, mailq and newaliases in root's /usr/sbin and /usr/bin point at ours */
static int
replace_sendmail(const char *root)
{
	static const char *const links[] = { "/usr/sbin/sendmail", "/usr/bin/mailq", "/usr/bin/newaliases" };
	char *target = xasprintf("%s/sendmail", cfg_str(P_COMMAND_DIRECTORY)), *path, *old;
	struct stat st;
	size_t i;
	int rc = 0;

	for (i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
		path = xasprintf("%s%s", root, links[i]);
		/* A staging root (--root) may not have the directories yet. */
		if (*root) {
			char *dir = xstrdup(path), *p;

			for (p = dir + strlen(root) + 1; (p = strchr(p, '/')) != NULL; p++) {
				*p = 0;
				if (mkdir(dir, 0755) < 0 && errno != EEXIST)
					fprintf(stderr, "postern: mkdir %s: %s\n", dir, strerror(errno));
				*p = '/';
			}
			free(dir);
		}
		/* Keep what was there, once: "postern setup" may run many times. */
		if (lstat(path, &st) == 0) {
			char cur[4096];
			ssize_t n = readlink(path, cur, sizeof(cur) - 1);

			if (n > 0 && (size_t)n == strlen(target) && memcmp(cur, target, (size_t)n) == 0) {
				free(path);
				continue;
			}
			old = xasprintf("%s.postern-orig", path);
			if (access(old, F_OK) != 0 && rename(path, old) < 0) {
				fprintf(stderr, "postern: keep %s: %s\n", path, strerror(errno));
				rc = -1;
			} else if (access(path, F_OK) == 0 && unlink(path) < 0) {
				fprintf(stderr, "postern: %s: %s\n", path, strerror(errno));
				rc = -1;
			}
			free(old);
		}
		if (rc == 0 && symlink(target, path) < 0) {
			fprintf(stderr, "postern: link %s: %s\n", path, strerror(errno));
			rc = -1;
		} else if (rc == 0) {
			printf("postern: %s -> %s\n", path, target);
		}
		free(path);
	}
	free(target);
	return rc;
}

int
cmd_setup(int argc, char **argv)
{
	struct buf err = BUF_INIT;
	struct qdir_ids ids;
	const char *root = "";
	bool replace = false;
	int ch, problems;
	static const struct option longopts[] = {
		{ "replace-sendmail", no_argument, NULL, 'S' },
		{ "root", required_argument, NULL, 'R' },
		{ NULL, 0, NULL, 0 },
	};

	while ((ch = getopt_long(argc, argv, "R:S", longopts, NULL)) != -1) {
		switch (ch) {
		case 'S':
			replace = true;
			break;
		case 'R':
			root = optarg;
			break;
		default:
			fprintf(stderr, "usage: postern setup [--replace-sendmail] [--root DIR]\n");
			return 2;
		}
	}
	cli_load_config();
	if (setup_users() < 0)
		return 1;
	if (*root == 0) {
		if (qdir_ids_load(&ids, &err) < 0) {
			fprintf(stderr, "postern: %s\n", buf_str(&err));
			return 1;
		}
		if ((problems = qdir_setup(cfg_str(P_QUEUE_DIRECTORY), &ids, true, true, &err)) > 0) {
			fprintf(stderr, "%s", buf_str(&err));
			return 1;
		}
		printf("postern: users, groups and the queue in %s are ready\n", cfg_str(P_QUEUE_DIRECTORY));
	}
	if (setgid_postdrop(root) < 0)
		return 1;
	if (replace && replace_sendmail(root) < 0)
		return 1;
	buf_free(&err);
	return 0;
}

/* write_file - create path with mode and contents; refuses to overwrite */
static void
write_file(const char *path, mode_t mode, const char *text)
{
	size_t len = strlen(text);
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0)
		log_fatal("create %s: %m", path);
	if (write(fd, text, len) != (ssize_t)len || fsync(fd) < 0 || close(fd) < 0)
		log_fatal("write %s: %m", path);
}

/* build_table - write a text table (aliases(5) syntax when aliases) and its hash: .db */
static void
build_table(const char *dir, const char *name, mode_t mode, bool aliases, const char *const *kv)
{
	struct buf text = BUF_INIT, err = BUF_INIT;
	char *path = xasprintf("%s/%s", dir, name), *spec;
	struct dict *d;
	size_t i;

	for (i = 0; kv[i]; i += 2)
		buf_printf(&text, "%s%s %s\n", kv[i], aliases ? ":" : "", kv[i + 1]);
	write_file(path, mode, buf_str(&text));
	spec = xasprintf("hash:%s", path);
	if ((d = dict_open(spec, DICT_FLAG_CREATE, &err)) == NULL || d->error)
		log_fatal("%s: %s", spec, d && d->error ? d->error : buf_str(&err));
	for (i = 0; kv[i]; i += 2)
		if (dict_update(d, kv[i], kv[i + 1]) < 0)
			log_fatal("%s: cannot add %s", spec, kv[i]);
	dict_close(d);
	free(spec);
	free(path);
	buf_free(&text);
	buf_free(&err);
}

/* random_password - 16 characters anyone can type */
static void
random_password(char *out, size_t len)
{
	static const char set[] = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
	size_t i;

	for (i = 0; i + 1 < len; i++)
		out[i] = set[arc4random_uniform(sizeof(set) - 1)];
	out[len - 1] = 0;
}

/* self_dir - directory of this program, to find the daemons next to it */
static char *
daemon_dir_guess(void)
{
	char exe[PATH_MAX], *slash, *cand;
	ssize_t n;

	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = 0;
		if ((slash = strrchr(exe, '/')) != NULL) {
			*slash = 0;
			/* A build tree: cli/postern next to libexec/master. */
			cand = xasprintf("%s/../libexec", exe);
			{
				char *m = xasprintf("%s/master", cand), real[PATH_MAX];

				if (access(m, X_OK) == 0 && realpath(cand, real) != NULL) {
					free(m);
					free(cand);
					return xstrdup(real);
				}
				free(m);
			}
			free(cand);
		}
	}
	return xstrdup(DEF_DAEMON_DIR);
}

static const char master_cf_text[] = "# master.cf of a Postern instance: see master.cf(5).\n"
                                     "#\n"
                                     "# service          type  private unpriv  chroot  wakeup  maxproc command + args\n"
                                     "#                        (yes)   (yes)   (no)    (never) (100)\n"
                                     "# ===========================================================================\n"
                                     "127.0.0.1:%d   inet  n       -       y       -       -       smtpd\n"
                                     "127.0.0.1:%d   inet  n       -       y       -       -       smtpd\n"
                                     "  -o syslog_name=postern/submission\n"
                                     "  -o smtpd_tls_security_level=encrypt -o smtpd_sasl_auth_enable=yes\n"
                                     "  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject\n"
                                     "  -o smtpd_sender_restrictions=reject_sender_login_mismatch\n"
                                     "127.0.0.1:%d   inet  n       -       y       -       -       smtpd\n"
                                     "  -o syslog_name=postern/smtps\n"
                                     "  -o smtpd_tls_wrappermode=yes -o smtpd_sasl_auth_enable=yes\n"
                                     "  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject\n"
                                     "  -o smtpd_sender_restrictions=reject_sender_login_mismatch\n"
                                     "cleanup          unix  -       -       n       -       0       cleanup\n"
                                     "auth             unix  -       -       n       -       -       auth\n"
                                     "anvil            unix  -       -       n       -       1       anvil\n"
                                     "qmgr             unix  n       -       n       300     1       qmgr\n"
                                     "local            unix  -       n       n       -       -       local\n"
                                     "pickup           unix  n       -       n       60      1       pickup\n"
                                     "showq            unix  n       -       n       -       -       showq\n"
                                     "127.0.0.1:%d   inet  n       -       y       -       -       pop3d\n"
                                     "127.0.0.1:%d   inet  n       -       y       -       -       pop3d\n"
                                     "  -o syslog_name=postern/pop3s -o pop3d_tls_wrappermode=yes\n"
                                     "pop3d-mailbox    unix  -       n       n       -       -       pop3d-mailbox\n"
                                     "smtp             unix  -       -       y       -       -       smtp\n";

int
cmd_init(int argc, char **argv)
{
	struct buf text = BUF_INIT, hash = BUF_INIT, err = BUF_INIT;
	long long ports[5] = { 2525, 2587, 2465, 2110, 2995 };
	const char *host = "mail." DEMO_DOMAIN;
	char real[PATH_MAX], password[17], *dir, *p, *list, *tok, *daemon_dir, *path;
	uid_t vuid = getuid();
	gid_t vgid = getgid();
	struct qdir_ids ids;
	int ch, i;
	time_t now = time(NULL);

	while ((ch = getopt(argc, argv, "H:p:")) != -1) {
		switch (ch) {
		case 'H':
			host = optarg;
			break;
		case 'p':
			p = list = xstrdup(optarg);
			for (i = 0; i < 5 && (tok = str_token(&p, ",")) != NULL; i++)
				if (str_to_ll(tok, 1, 65535, &ports[i], NULL) < 0)
					log_fatal("bad port \"%s\" in -p", tok);
			if (i != 5 || str_token(&p, ",") != NULL)
				log_fatal("-p wants five ports: smtp,submission,smtps,pop3,pop3s");
			free(list);
			break;
		default:
			goto usage;
		}
	}
	if (argc - optind != 1)
		goto usage;
	dir = argv[optind];
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		log_fatal("mkdir %s: %m", dir);
	if (realpath(dir, real) == NULL)
		log_fatal("%s: %m", dir);
	dir = real;
	path = xasprintf("%s/main.cf", dir);
	if (access(path, F_OK) == 0)
		log_fatal("%s already exists: %s is an instance already", path, dir);

	/* Identities first: as root the instance uses the system users. */
	if (cfg_load(dir, &err) < 0)
		log_fatal("%s", buf_str(&err));
	if (geteuid() == 0) {
		struct buf e2 = BUF_INIT;

		if (setup_users() < 0)
			return 1;
		if (priv_user(DEF_VMAIL_USER, &vuid, &vgid, &e2) < 0)
			log_fatal("%s", buf_str(&e2));
		buf_free(&e2);
	}
	daemon_dir = daemon_dir_guess();
	buf_printf(&text,
	    "# main.cf of a Postern instance, made by \"postern init\" on %s"
	    "# See main.cf(5); \"postern -c %s conf -n\" lists these settings.\n"
	    "config_directory = %s\n"
	    "queue_directory = %s/queue\n"
	    "daemon_directory = %s\n"
	    "maillog_file = %s/maillog\n"
	    "myhostname = %s\n"
	    "mydestination = $myhostname, localhost\n"
	    "inet_interfaces = loopback-only\n"
	    "mynetworks = 127.0.0.0/8 [::1]/128\n"
	    "alias_maps = hash:%s/aliases\n"
	    "alias_database = hash:%s/aliases\n"
	    "virtual_mailbox_domains = %s\n"
	    "virtual_mailbox_base = %s/mail\n"
	    "virtual_mailbox_maps = hash:%s/vmailbox\n"
	    "virtual_uid_maps = static:%ld\n"
	    "virtual_gid_maps = static:%ld\n"
	    "auth_passwd_maps = hash:%s/passwd\n"
	    "smtpd_tls_cert_file = %s/cert.pem\n"
	    "smtpd_tls_key_file = %s/key.pem\n"
	    "smtpd_tls_security_level = may\n",
	    ctime(&now), dir, dir, dir, daemon_dir, dir, host, dir, dir, DEMO_DOMAIN, dir, dir, (long)vuid, (long)vgid,
	    dir, dir, dir);
	write_file(path, 0644, buf_str(&text));
	free(path);
	buf_reset(&text);
	buf_printf(&text, master_cf_text, (int)ports[0], (int)ports[1], (int)ports[2], (int)ports[3], (int)ports[4]);
	path = xasprintf("%s/master.cf", dir);
	write_file(path, 0644, buf_str(&text));
	free(path);

	/* Reload: everything below follows the new main.cf. */
	buf_reset(&err);
	if (cfg_load(dir, &err) < 0)
		log_fatal("%s", buf_str(&err));

	/* Queue, mailboxes, certificate, tables. */
	buf_reset(&err);
	if (qdir_ids_load(&ids, &err) < 0)
		log_fatal("%s", buf_str(&err));
	if (qdir_setup(cfg_str(P_QUEUE_DIRECTORY), &ids, true, true, &err) > 0)
		log_fatal("%s", buf_str(&err));
	path = xasprintf("%s/mail", dir);
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		log_fatal("mkdir %s: %m", path);
	if (geteuid() == 0 && chown(path, vuid, vgid) < 0)
		log_fatal("chown %s: %m", path);
	free(path);
	{
		char *cert = xasprintf("%s/cert.pem", dir), *key = xasprintf("%s/key.pem", dir);

		buf_reset(&err);
		if (cli_make_cert(host, cert, key, &err) < 0)
			log_fatal("certificate: %s", buf_str(&err));
		free(cert);
		free(key);
	}
	random_password(password, sizeof(password));
	buf_reset(&err);
	if (pwhash_make(password, NULL, &hash, &err) < 0)
		log_fatal("%s", buf_str(&err));
	{
		const char *vmailbox[] = { DEMO_USER "@" DEMO_DOMAIN, DEMO_DOMAIN "/" DEMO_USER "/", NULL };
		const char *passwd[] = { DEMO_USER "@" DEMO_DOMAIN, buf_str(&hash), NULL };
		const char *aliases[] = { "postmaster", DEMO_USER "@" DEMO_DOMAIN, NULL };

		build_table(dir, "vmailbox", 0644, false, vmailbox);
		build_table(dir, "passwd", 0600, false, passwd);
		build_table(dir, "aliases", 0644, true, aliases);
	}
	printf("postern: instance created in %s\n", dir);
	printf("postern: mail domain %s, user %s@%s, password %s\n", DEMO_DOMAIN, DEMO_USER, DEMO_DOMAIN, password);
	printf("postern: ports on 127.0.0.1: smtp %lld, submission %lld, smtps %lld, pop3 %lld, pop3s %lld\n", ports[0],
	    ports[1], ports[2], ports[3], ports[4]);
	printf("postern: start it with: postern -c %s start\n", dir);
	explicit_bzero(password, sizeof(password));
	buf_freezero(&hash);
	buf_free(&text);
	buf_free(&err);
	free(daemon_dir);
	return 0;
usage:
	fprintf(stderr, "usage: postern init [-H hostname] [-p smtp,submission,smtps,pop3,pop3s] DIR\n");
	return 2;
}
