/*
 * postdrop - put a locally submitted message into the maildrop queue.
 *
 *   postdrop            read a message (maildrop.h records) on stdin
 *   postdrop -p [-j]    list the queue (through the showq service), as
 *                       mailq does; -j: one JSON object per message
 *   postdrop -q         ask qmgr to deliver deferred mail now
 *
 * The only set-group-id program of Postern (group setgid_group): that
 * group may write into maildrop/ (mode 1730) and reach public/.  It runs
 * as the calling user, so it trusts nothing the caller controls: the
 * environment is cleared, the configuration directory comes from the
 * compiled-in default (POSTERN_CONFIG_DIR is ignored when set-id; -c
 * from a user other than root must name a directory that the default
 * main.cf lists in alternate_config_directories, as with Postfix), it
 * changes into the queue before it touches any file, and every record it
 * reads is bounded.  The maildrop file is owned by the caller, which is
 * how pickup knows who submitted it.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sysexits.h>
#include <unistd.h>

#include "buf.h"
#include "cfg.h"
#include "ipc.h"
#include "log.h"
#include "maildrop.h"
#include "proto.h"
#include "qfile.h"
#include "qlist.h"
#include "str.h"
#include "stream.h"
#include "trigger.h"
#include "xalloc.h"

#ifdef __SANITIZE_ADDRESS__
/*
 * Sanitizer builds only: run set-group-id, postdrop can neither read its
 * own environment (/proc/self/environ, so ASAN_OPTIONS is not seen) nor
 * be traced, which the leak checker needs at exit.
 */
const char *__asan_default_options(void);
__attribute__((used)) const char *
__asan_default_options(void)
{
	return "detect_leaks=0";
}
#endif

static const char *const allowed_attrs[] = { MAILDROP_ATTRS, NULL };

static int
attr_allowed(const char *rec)
{
	size_t i, n = strcspn(rec, "=");

	if (rec[n] != '=')
		return 0;
	for (i = 0; allowed_attrs[i]; i++)
		if (strlen(allowed_attrs[i]) == n && strncmp(rec, allowed_attrs[i], n) == 0)
			return 1;
	return 0;
}

/* printable - no control characters in a value we store */
static int
printable(const struct buf *b)
{
	size_t i;

	for (i = 0; i < b->len; i++)
		if (b->data[i] < 0x20 || b->data[i] == 0x7f)
			return 0;
	return 1;
}

/* submit - stdin records -> maildrop/ID; returns a sysexits code */
static int
submit(void)
{
	struct stream *in = stream_new(STDIN_FILENO, STREAM_NOCLOSE | STREAM_BLOCKING);
	struct qfile_writer w;
	struct buf rec = BUF_INIT, err = BUF_INIT;
	long long limit = cfg_int(P_MESSAGE_SIZE_LIMIT), size = 0;
	struct timeval tv;
	size_t nrcpt = 0;
	int type = 0, r, state = 0; /* 0 want S, 1 A/R, 2 C */
	char *eq;

	stream_set_timeout(in, 3600);
	if (qfile_create_id(&w, QUEUE_MAILDROP, NULL, QF_CREATE_LAZY, &err) < 0)
		goto tempfail;
	gettimeofday(&tv, NULL);
	if (qfile_put_time(&w, &tv, &err) < 0)
		goto tempfail;
	for (;;) {
		r = maildrop_get(in, &type, &rec, 65536);
		if (r < 0) {
			fprintf(stderr, "postdrop: %s\n",
			    r == -100 ? "malformed input" : "input ended before the message did");
			qfile_abort(&w);
			return EX_DATAERR;
		}
		if (type != 'C' && rec.len > MAILDROP_VALUE_MAX)
			goto bad;
		if (type == 'S' && state == 0) {
			if (!printable(&rec))
				goto bad;
			if (qfile_put_sender(&w, buf_str(&rec), &err) < 0)
				goto tempfail;
			state = 1;
		} else if (type == 'A' && state == 1) {
			if (buf_has_nul(&rec) || !printable(&rec) || !attr_allowed(buf_str(&rec)))
				goto bad;
			eq = strchr((char *)rec.data, '=');
			*eq = 0; /* attr_allowed() found it */
			r = qfile_put_attr(&w, (const char *)rec.data, eq + 1, &err);
			*eq = '=';
			if (r < 0)
				goto tempfail;
		} else if (type == 'R' && state == 1) {
			if (rec.len == 0 || !printable(&rec) || ++nrcpt > MAILDROP_RCPT_MAX)
				goto bad;
			if (qfile_put_rcpt(&w, buf_str(&rec), NULL, 0, &err) < 0)
				goto tempfail;
		} else if (type == 'C' && (state == 1 || state == 2) && nrcpt > 0) {
			if (state == 1 && qfile_begin_content(&w, &err) < 0)
				goto tempfail;
			state = 2;
			size += (long long)rec.len;
			if (limit > 0 && size > limit) {
				fprintf(stderr, "postdrop: message is larger than message_size_limit (%lld bytes)\n",
				    limit);
				qfile_abort(&w);
				return EX_DATAERR;
			}
			if (qfile_put_content(&w, rec.data, rec.len, &err) < 0)
				goto tempfail;
		} else if (type == 'E' && nrcpt > 0 && state >= 1) {
			if (state == 1 && qfile_begin_content(&w, &err) < 0)
				goto tempfail;
			break;
		} else {
			goto bad;
		}
	}
	if (qfile_commit(&w, QF_COMMIT_MAILDROP, &err) < 0)
		goto tempfail;
	buf_reset(&err);
	/* pickup also scans on its own; a missing one only delays the mail. */
	(void)trigger_send(SVC_PUBLIC_DIR "/" SVC_PICKUP, TRIGGER_WAKEUP, &err);
	stream_free(in);
	buf_free(&rec);
	buf_free(&err);
	return EX_OK;
bad:
	fprintf(stderr, "postdrop: malformed input (record '%c')\n", type > 32 && type < 127 ? type : '?');
	qfile_abort(&w);
	return EX_DATAERR;
tempfail:
	fprintf(stderr, "postdrop: cannot queue the message: %s\n", buf_str(&err));
	qfile_abort(&w);
	return EX_TEMPFAIL;
}

/* list_emit - the listing to standard output */
static int
list_emit(void *arg, const unsigned char *data, size_t len)
{
	(void)arg;
	return fwrite(data, 1, len, stdout) == len ? 0 : -1;
}

/* list - copy the showq service's listing to stdout (doc/ipc.md 8.7) */
static int
list(bool json)
{
	struct buf err = BUF_INIT;
	int rc = EX_OK;

	if (qlist_fetch(SVC_PUBLIC_DIR "/" SVC_SHOWQ, json, 60, list_emit, NULL, &err) < 0) {
		fflush(stdout);
		fprintf(stderr, "postdrop: the queue cannot be listed: %s\n", buf_str(&err));
		rc = EX_UNAVAILABLE;
	}
	buf_free(&err);
	if (fflush(stdout) != 0)
		rc = EX_IOERR;
	return rc;
}

/* flush - the same request as "postern flush" */
static int
flush(void)
{
	struct buf err = BUF_INIT;

	if (trigger_send(SVC_PUBLIC_DIR "/" SVC_QMGR, TRIGGER_FLUSH, &err) < 0) {
		fprintf(stderr, "postdrop: flush: qmgr is not running (%s)\n", buf_str(&err));
		return EX_UNAVAILABLE;
	}
	return EX_OK;
}

/*
 * alternate_ok - whether a caller who is not root may use dir: it must be
 * the default or be listed in alternate_config_directories of the
 * default main.cf.  The real path goes to *real (the caller's string is
 * not used again, so a link swapped afterwards changes nothing).
 */
static bool
alternate_ok(const char *dir, char *real, size_t len)
{
	struct buf err = BUF_INIT;
	char *list, *p, *tok, cand[PATH_MAX], tmp[PATH_MAX];
	bool ok = false;

	if (realpath(dir, tmp) == NULL || strlen(tmp) >= len)
		return false;
	snprintf(real, len, "%s", tmp);
	if (realpath(DEF_CONFIG_DIR, cand) != NULL && strcmp(cand, real) == 0)
		return true;
	/* Only the default main.cf can authorise another one. */
	if (cfg_load(DEF_CONFIG_DIR, &err) < 0) {
		buf_free(&err);
		return false;
	}
	p = list = xstrdup(cfg_str(P_ALTERNATE_CONFIG_DIRECTORIES));
	while (!ok && (tok = str_token(&p, ", \t")) != NULL)
		ok = tok[0] == '/' && realpath(tok, cand) != NULL && strcmp(cand, real) == 0;
	free(list);
	buf_free(&err);
	return ok;
}

int
main(int argc, char **argv)
{
	struct buf err = BUF_INIT;
	const char *dir = NULL, *given;
	char real[PATH_MAX];
	bool setid = getegid() != getgid() || geteuid() != getuid(), json = false;
	int ch, mode = 's';

	log_init("postdrop", LOG_DEST_STDERR);
	/* Nothing in the caller's directory (a DB_CONFIG, say) is ever looked at. */
	if (chdir("/") < 0)
		log_fatal("chdir /: %m");
	while ((ch = getopt(argc, argv, "c:jpqv")) != -1) {
		switch (ch) {
		case 'c':
			dir = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'p':
		case 'q':
			mode = ch;
			break;
		case 'v':
			break;
		default:
			fprintf(stderr, "usage: postdrop [-c DIR] [-p [-j] | -q]  (message records on stdin)\n");
			return EX_USAGE;
		}
	}
	given = dir;
	dir = cfg_resolve_dir(dir); /* secure_getenv: no environment when set-id */
	if (clearenv() != 0 || setenv("PATH", "/usr/bin:/bin", 1) != 0)
		log_fatal("cannot clear the environment");
	closefrom(3);
	/* Another configuration is for root, or one the default main.cf allows. */
	if (given != NULL && setid && getuid() != 0) {
		if (!alternate_ok(given, real, sizeof(real))) {
			fprintf(stderr,
			    "postdrop: -c %s is not allowed: only root may name a configuration directory that "
			    "is not listed in alternate_config_directories of %s/main.cf\n",
			    given, DEF_CONFIG_DIR);
			return EX_NOPERM;
		}
		dir = real;
	}
	if (cfg_load(dir, &err) < 0) {
		fprintf(stderr, "postdrop: %s\n", buf_str(&err));
		return EX_CONFIG;
	}
	if (chdir(cfg_str(P_QUEUE_DIRECTORY)) < 0) {
		fprintf(stderr, "postdrop: %s: %s\n", cfg_str(P_QUEUE_DIRECTORY), strerror(errno));
		return EX_TEMPFAIL;
	}
	buf_free(&err);
	if (mode == 'p')
		return list(json);
	if (mode == 'q')
		return flush();
	return submit();
}
