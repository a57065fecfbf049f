/*
 * postern_cat - "postern cat" (one queue file, like postcat) and
 * "postern queue" (every queued message, like mailq; the listing itself is
 * common/qlist.c, shared with showq).
 *
 * Both read the queue directly and so need what its owner has: root or
 * mail_owner.  Other users list the queue with mailq, through showq, and
 * cannot read messages at all.  Queue IDs from the command line and from directory
 * listings are checked with qid_valid() before they become paths, files
 * are opened read-only without following links, and every file goes
 * through qfile_read(), which trusts nothing in it.  Envelope values are
 * printed with control bytes escaped (they could hold terminal escapes);
 * the content is printed byte for byte, as asked.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "cfg.h"
#include "log.h"
#include "postern.h"
#include "qfile.h"
#include "qid.h"
#include "qlist.h"
#include "str.h"
#include "xalloc.h"

/* Where cat looks, in order. */
static const char *const cat_queues[] = { QUEUE_INCOMING, QUEUE_ACTIVE, QUEUE_DEFERRED, QUEUE_HOLD, QUEUE_CORRUPT,
	NULL };

/* Far above anything cleanup writes; a guard against a hostile file only. */
static const struct qfile_read_limits cat_limits = { 100000000, 10000000 };

/* cat_queue_dir - chdir to queue_directory; an explanation on failure */
static int
cat_queue_dir(void)
{
	const char *dir;

	cli_load_config();
	dir = cfg_str(P_QUEUE_DIRECTORY);
	if (chdir(dir) < 0) {
		if (errno == EACCES)
			fprintf(stderr,
			    "postern: cannot read the queue in %s: %s (run as root or as the mail_owner, %s)\n", dir,
			    strerror(errno), cfg_str(P_MAIL_OWNER));
		else
			fprintf(stderr, "postern: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	return 0;
}

static void
cat_access_error(const char *path)
{
	fprintf(stderr, "postern: cannot read %s/%s: %s (run as root or as the mail_owner, %s)\n",
	    cfg_str(P_QUEUE_DIRECTORY), path, strerror(EACCES), cfg_str(P_MAIL_OWNER));
}

/* cat_print_value - s with control bytes as \xHH (envelope values are not trusted) */
static void
cat_print_value(const char *s)
{
	struct buf b = BUF_INIT;

	qlist_escape(&b, s);
	fwrite(b.data, 1, b.len, stdout);
	buf_free(&b);
}

static void
cat_line(const char *label, const char *value)
{
	printf("%s: ", label);
	cat_print_value(value);
	putchar('\n');
}

static const char *
cat_notify_names(int notify, char *out, size_t len)
{
	snprintf(out, len, "%s%s%s%s", notify & QF_NOTIFY_NEVER ? "NEVER," : "",
	    notify & QF_NOTIFY_SUCCESS ? "SUCCESS," : "", notify & QF_NOTIFY_FAILURE ? "FAILURE," : "",
	    notify & QF_NOTIFY_DELAY ? "DELAY," : "");
	if (*out)
		out[strlen(out) - 1] = 0;
	return out;
}

static void
cat_rcpt(const struct qfile_rcpt *r)
{
	char n[64];

	cat_line(r->done ? "done_recipient" : "recipient", r->addr);
	if (r->orcpt)
		cat_line("dsn_orig_rcpt", r->orcpt);
	if (r->notify)
		cat_line("dsn_notify_flags", cat_notify_names(r->notify, n, sizeof(n)));
}

/*
 * cat_find - open the queue file of id in the first queue that has it.
 * Returns the descriptor with its path in path, or -1 (reported) with
 * *missing set when no queue has it.
 */
static int
cat_find(const char *id, char *path, size_t len, const char **queue, bool *missing)
{
	size_t i;
	int fd;

	*missing = false;
	for (i = 0; cat_queues[i]; i++) {
		if (qid_path(path, len, cat_queues[i], id) < 0)
			log_panic("cat_find: no path for %s/%s", cat_queues[i], id);
		fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
		if (fd >= 0) {
			*queue = cat_queues[i];
			return fd;
		}
		if (errno == EACCES) {
			cat_access_error(path);
			return -1;
		}
		if (errno != ENOENT) {
			fprintf(stderr, "postern: %s/%s: %s\n", cfg_str(P_QUEUE_DIRECTORY), path, strerror(errno));
			return -1;
		}
	}
	*missing = true;
	return -1;
}

/* cat_read - qfile_read with the messages a reader of the queue needs */
static int
cat_read(int fd, const char *path, const char *queue, struct qfile_env *env)
{
	struct buf err = BUF_INIT;
	int r;

	r = qfile_read(fd, env, &cat_limits, &err);
	if (r == 1 && strcmp(queue, QUEUE_INCOMING) == 0)
		fprintf(stderr, "postern: %s: not complete yet (cleanup is still writing it, or died): %s\n", path,
		    buf_str(&err));
	else if (r != 0)
		fprintf(stderr, "postern: %s: corrupt queue file: %s\n", path, buf_str(&err));
	buf_free(&err);
	return r == 0 ? 0 : -1;
}

/* Header/body split of the content, the way cleanup sees it (cleanup.h). */
struct cat_split {
	int mode;        /* 'h' header or 'b' body */
	bool in_body;    /* past the header section */
	bool have_field; /* a field was seen: white space continues it */
	struct buf line; /* a header-section line not yet complete */
};

/* cat_is_field - "name:" with optional white space before the colon */
static bool
cat_is_field(const unsigned char *p, size_t n)
{
	size_t i = 0;

	while (i < n && p[i] >= 33 && p[i] <= 126 && p[i] != ':')
		i++;
	if (i == 0)
		return false;
	while (i < n && (p[i] == ' ' || p[i] == '\t'))
		i++;
	return i < n && p[i] == ':';
}

/* cat_header_line - classify one complete header-section line and print it if asked */
static void
cat_header_line(struct cat_split *cs, const unsigned char *p, size_t n)
{
	if (n == 1 && p[0] == '\n') {
		cs->in_body = true; /* the empty line belongs to neither part */
		return;
	}
	if (((p[0] == ' ' || p[0] == '\t') && cs->have_field) || cat_is_field(p, n)) {
		cs->have_field = true;
		if (cs->mode == 'h')
			fwrite(p, 1, n, stdout);
		return;
	}
	cs->in_body = true;
	if (cs->mode == 'b')
		fwrite(p, 1, n, stdout);
}

static void
cat_split_feed(struct cat_split *cs, const unsigned char *p, size_t n)
{
	const unsigned char *nl;
	size_t take;

	while (n > 0) {
		if (cs->in_body) {
			if (cs->mode == 'b')
				fwrite(p, 1, n, stdout);
			return;
		}
		nl = memchr(p, '\n', n);
		take = nl ? (size_t)(nl - p) + 1 : n;
		buf_append(&cs->line, p, take);
		if (nl != NULL) {
			cat_header_line(cs, cs->line.data, cs->line.len);
			buf_reset(&cs->line);
		}
		p += take;
		n -= take;
	}
}

/* cat_find_x - hop over the content records: the offset of X, or -1 when there is none */
static off_t
cat_find_x(int fd, off_t pos, off_t size)
{
	unsigned char h[8];
	size_t len;
	ssize_t r;
	int type, hl;

	while (pos < size) {
		r = pread(fd, h, sizeof(h), pos);
		if (r <= 0 || (hl = qfile_rec_header(h, (size_t)r, &type, &len)) <= 0)
			return -1;
		if (type == QR_XTRACT)
			return pos;
		if (type != QR_CONTENT)
			return -1;
		pos += hl + (off_t)len;
	}
	return -1;
}

/* cat_extracted_attrs - attributes after X (qfile_read lists them after the envelope's) */
static size_t
cat_extracted_attrs(int fd, off_t pos, off_t size)
{
	unsigned char h[8];
	size_t len, n = 0;
	ssize_t r;
	int type, hl;

	while (pos < size) {
		r = pread(fd, h, sizeof(h), pos);
		if (r <= 0 || (hl = qfile_rec_header(h, (size_t)r, &type, &len)) <= 0 || type == QR_END)
			break;
		if (type == QR_ATTR)
			n++;
		pos += hl + (off_t)len;
	}
	return n;
}

static void
cat_attrs(const struct qfile_env *env, size_t from, size_t to)
{
	size_t i;

	for (i = from; i < to; i++) {
		printf("named_attribute: %s=", env->attrs[i].name);
		cat_print_value(env->attrs[i].value);
		putchar('\n');
	}
}

int
cmd_cat(int argc, char **argv)
{
	struct qfile_env env;
	struct cat_split cs;
	struct buf chunk = BUF_INIT, err = BUF_INIT;
	char path[128], when[64];
	const char *id, *queue = NULL;
	size_t i, nx_attrs = 0, nenv_attrs;
	off_t pos, xpos;
	time_t t;
	int ch, fd, r, mode = 0, ret = 1;
	bool missing;

	while ((ch = getopt(argc, argv, "c:bhe")) != -1) {
		switch (ch) {
		case 'c':
			cli_config_dir = optarg;
			break;
		case 'b':
		case 'h':
			/* Both together: the whole content without banners (as postcat -bh). */
			if (mode == 'e')
				goto usage;
			mode = mode && mode != ch ? 'c' : ch;
			break;
		case 'e':
			if (mode && mode != ch)
				goto usage;
			mode = ch;
			break;
		default:
			goto usage;
		}
	}
	if (argc - optind != 1)
		goto usage;
	id = argv[optind];
	if (!qid_valid(id)) {
		fprintf(stderr, "postern: cat: \"%s\" is not a queue ID\n", id);
		return 2;
	}
	if (cat_queue_dir() < 0)
		return 1;
	if ((fd = cat_find(id, path, sizeof(path), &queue, &missing)) < 0) {
		if (missing)
			fprintf(stderr, "postern: cat: %s: no such message in the queue\n", id);
		return 1;
	}
	if (cat_read(fd, path, queue, &env) < 0) {
		close(fd);
		return 1;
	}
	memset(&cs, 0, sizeof(cs));
	cs.mode = mode;

	/* qfile_read gives all attributes in file order: those after X are the extracted ones. */
	if ((xpos = cat_find_x(fd, env.content_offset, env.file_size)) > 0)
		nx_attrs = cat_extracted_attrs(fd, xpos + 2, env.file_size);
	nenv_attrs = nx_attrs <= env.nattrs ? env.nattrs - nx_attrs : 0;
	if (mode == 0 || mode == 'e') {
		t = env.arrival.tv_sec;
		strftime(when, sizeof(when), "%a %b %e %H:%M:%S %Y", localtime(&t));
		printf("*** ENVELOPE RECORDS %s ***\n", path);
		printf("message_size: %llu\n", (unsigned long long)env.content_size);
		printf("message_arrival_time: %s\n", when);
		cat_line("sender", env.sender);
		cat_attrs(&env, 0, nenv_attrs);
		for (i = 0; i < env.nrcpts; i++)
			if (env.rcpts[i].offset < env.content_offset)
				cat_rcpt(&env.rcpts[i]);
	}
	if (mode != 'e') {
		if (mode == 0)
			printf("*** MESSAGE CONTENTS %s ***\n", path);
		fflush(stdout);
		pos = env.content_offset;
		while ((r = qfile_content_next(fd, &pos, &chunk, &err)) == 1) {
			if (mode == 0 || mode == 'c')
				fwrite(chunk.data, 1, chunk.len, stdout);
			else
				cat_split_feed(&cs, chunk.data, chunk.len);
		}
		if (r < 0) {
			fflush(stdout);
			fprintf(stderr, "postern: %s: %s\n", path, buf_str(&err));
			goto out;
		}
		if (cs.line.len > 0 && !cs.in_body)
			cat_header_line(&cs, cs.line.data, cs.line.len);
	}
	if (mode == 0) {
		printf("*** HEADER EXTRACTED %s ***\n", path);
		cat_attrs(&env, nenv_attrs, env.nattrs);
		for (i = 0; i < env.nrcpts; i++)
			if (env.rcpts[i].offset > env.content_offset)
				cat_rcpt(&env.rcpts[i]);
		printf("*** MESSAGE FILE END %s ***\n", path);
	}
	ret = fflush(stdout) == 0 ? 0 : 1;
out:
	close(fd);
	qfile_env_free(&env);
	buf_free(&chunk);
	buf_free(&err);
	buf_free(&cs.line);
	return ret;
usage:
	fprintf(stderr, "usage: postern cat [-c DIR] [-e | -h | -b | -hb] QUEUEID\n");
	return 2;
}

/* queue_emit - the listing to standard output */
static int
queue_emit(void *arg, const unsigned char *data, size_t len)
{
	(void)arg;
	return fwrite(data, 1, len, stdout) == len ? 0 : -1;
}

int
cmd_queue(int argc, char **argv)
{
	struct buf err = BUF_INIT;
	const char *site = NULL, *id = NULL;
	bool json = false, flush = false;
	int ch, r;

	while ((ch = getopt(argc, argv, "c:fi:js:")) != -1) {
		switch (ch) {
		case 'c':
			cli_config_dir = optarg;
			break;
		case 'f':
			flush = true;
			break;
		case 'i':
			id = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 's':
			site = optarg;
			break;
		default:
			goto usage;
		}
	}
	if (argc != optind || (flush + (site != NULL) + (id != NULL)) > 1 || (json && (flush || site || id)))
		goto usage;
	if (flush || site || id)
		return cli_flush(site, id);
	if (cat_queue_dir() < 0)
		return 1;
	r = qlist_run(json, queue_emit, NULL, &err);
	if (r == QLIST_ERR_ACCESS)
		fprintf(stderr, "postern: cannot read the queue in %s: %s (run as root or as the mail_owner, %s)\n",
		    cfg_str(P_QUEUE_DIRECTORY), buf_str(&err), cfg_str(P_MAIL_OWNER));
	else if (r != 0)
		fprintf(stderr, "postern: queue: %s: %s\n", cfg_str(P_QUEUE_DIRECTORY), buf_str(&err));
	buf_free(&err);
	if (fflush(stdout) != 0)
		r = -1;
	return r == 0 ? 0 : 1;
usage:
	fprintf(stderr, "usage: postern queue [-c DIR] [-j | -f | -s site | -i queueid]\n");
	return 2;
}
