/*
 * postern_cat - "postern cat" (one queue file, like postcat) and
 * "postern queue" (every queued message, like mailq).
 *
 * Both read the queue directly and so need what its owner has: root or
 * mail_owner.  Queue IDs from the command line and from directory
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
#include "qlog.h"
#include "str.h"
#include "xalloc.h"

/* Where cat looks, in order; where queue looks (corrupt/ is the admin's). */
static const char *const cat_queues[] = { QUEUE_INCOMING, QUEUE_ACTIVE, QUEUE_DEFERRED, QUEUE_HOLD, QUEUE_CORRUPT,
	NULL };
static const char *const list_queues[] = { QUEUE_INCOMING, QUEUE_ACTIVE, QUEUE_DEFERRED, QUEUE_HOLD, NULL };

#define HASH_CHARS "0123456789ABCDEFGHIJKLMNOPQRSTUV"

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
	const unsigned char *p;

	for (p = (const unsigned char *)s; *p; p++) {
		if (*p < 0x20 || *p == 0x7f || *p == '\\')
			printf("\\x%02X", *p);
		else
			putchar(*p);
	}
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

/* One message found by the listing. */
struct q_entry {
	char id[QID_LEN + 1];
	const char *queue;
	char mark; /* ' ', '*' active, '!' hold */
};

struct q_list {
	struct q_entry *v;
	size_t n, cap;
};

/* q_scan - the valid queue IDs in one directory; -1 (reported) when it cannot be read */
static int
q_scan(struct q_list *l, const char *dir, const char *queue)
{
	struct dirent *de;
	DIR *d;

	if ((d = opendir(dir)) == NULL) {
		if (errno == ENOENT)
			return 0;
		if (errno == EACCES)
			cat_access_error(dir);
		else
			fprintf(stderr, "postern: %s/%s: %s\n", cfg_str(P_QUEUE_DIRECTORY), dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (!qid_valid(de->d_name))
			continue;
		if (l->n == l->cap) {
			l->cap = l->cap ? l->cap * 2 : 256;
			l->v = xreallocarray(l->v, l->cap, sizeof(*l->v));
		}
		memcpy(l->v[l->n].id, de->d_name, QID_LEN + 1);
		l->v[l->n].queue = queue;
		l->v[l->n].mark = strcmp(queue, QUEUE_ACTIVE) == 0 ? '*' : strcmp(queue, QUEUE_HOLD) == 0 ? '!' : ' ';
		l->n++;
	}
	closedir(d);
	return 0;
}

static int
q_cmp(const void *a, const void *b)
{
	return strcmp(((const struct q_entry *)a)->id, ((const struct q_entry *)b)->id);
}

/* json_str - s as a JSON string; bytes that are not UTF-8 become \u00XX */
static void
json_str(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n, i;

	putchar('"');
	while (*p) {
		if (*p == '"' || *p == '\\') {
			printf("\\%c", *p++);
		} else if (*p < 0x20 || *p == 0x7f) {
			printf("\\u%04x", *p++);
		} else if (*p < 0x80) {
			putchar(*p++);
		} else {
			/* A well-formed UTF-8 sequence passes as it is. */
			n = (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3 : (*p & 0xf8) == 0xf0 ? 4 : 0;
			for (i = 1; i < n && (p[i] & 0xc0) == 0x80; i++)
				;
			if (n >= 2 && i == n && !(n == 2 && *p < 0xc2)) {
				fwrite(p, 1, n, stdout);
				p += n;
			} else {
				printf("\\u%04x", *p++);
			}
		}
	}
	putchar('"');
}

/* q_reason - the latest deferral reason logged for the recipient at offset, or NULL */
static const char *
q_reason(const struct qlog_entry *log, size_t nlog, off_t offset)
{
	const char *why = NULL;
	size_t i;

	for (i = 0; i < nlog; i++)
		if (log[i].offset == offset && log[i].status == QLOG_DEFERRED)
			why = log[i].reason;
	return why;
}

static void
q_print_json(const struct q_entry *e, const struct qfile_env *env, const struct qlog_entry *log, size_t nlog)
{
	const char *why;
	size_t i;

	printf("{\"queue_name\": ");
	json_str(e->queue);
	printf(", \"queue_id\": ");
	json_str(e->id);
	printf(", \"arrival_time\": %lld, \"message_size\": %llu, \"sender\": ", (long long)env->arrival.tv_sec,
	    (unsigned long long)env->content_size);
	json_str(env->sender);
	printf(", \"recipients\": [");
	for (i = 0; i < env->nrcpts; i++) {
		printf("%s{\"address\": ", i ? ", " : "");
		json_str(env->rcpts[i].addr);
		printf(", \"done\": %s", env->rcpts[i].done ? "true" : "false");
		if (!env->rcpts[i].done && (why = q_reason(log, nlog, env->rcpts[i].offset)) != NULL) {
			printf(", \"delay_reason\": ");
			json_str(why);
		}
		putchar('}');
	}
	printf("]}\n");
}

static void
q_print_text(const struct q_entry *e, const struct qfile_env *env, const struct qlog_entry *log, size_t nlog)
{
	const char *why, *last = NULL;
	char when[64];
	time_t t = env->arrival.tv_sec;
	size_t i;

	strftime(when, sizeof(when), "%a %b %e %H:%M:%S", localtime(&t));
	printf("%s%c %8llu %-20s ", e->id, e->mark, (unsigned long long)env->content_size, when);
	cat_print_value(*env->sender ? env->sender : "MAILER-DAEMON");
	putchar('\n');
	/* Like mailq: only the recipients still to be delivered. */
	for (i = 0; i < env->nrcpts; i++) {
		if (env->rcpts[i].done)
			continue;
		/* As mailq: the reason above the recipients it applies to. */
		if ((why = q_reason(log, nlog, env->rcpts[i].offset)) != NULL &&
		    (last == NULL || strcmp(why, last) != 0)) {
			printf("%42s(", "");
			cat_print_value(why);
			printf(")\n");
		}
		last = why;
		printf("%48s", "");
		cat_print_value(env->rcpts[i].addr);
		putchar('\n');
	}
	putchar('\n');
}

int
cmd_queue(int argc, char **argv)
{
	struct q_list l = { NULL, 0, 0 };
	struct qlog_entry *log;
	struct qfile_env env;
	struct buf err = BUF_INIT;
	unsigned long long total = 0;
	size_t i, shown = 0, nlog;
	char dir[64], path[128];
	const char *const *q;
	const char *h;
	int ch, fd, r, ret = 0;
	bool json = false;

	while ((ch = getopt(argc, argv, "c:j")) != -1) {
		switch (ch) {
		case 'c':
			cli_config_dir = optarg;
			break;
		case 'j':
			json = true;
			break;
		default:
			fprintf(stderr, "usage: postern queue [-c DIR] [-j]\n");
			return 2;
		}
	}
	if (argc != optind) {
		fprintf(stderr, "usage: postern queue [-c DIR] [-j]\n");
		return 2;
	}
	if (cat_queue_dir() < 0)
		return 1;
	/* The first directory that cannot be read says all there is to say. */
	for (q = list_queues; *q && ret == 0; q++) {
		if (!qid_queue_hashed(*q)) {
			if (q_scan(&l, *q, *q) < 0)
				ret = 1;
			continue;
		}
		for (h = HASH_CHARS; *h && ret == 0; h++) {
			snprintf(dir, sizeof(dir), "%s/%c", *q, *h);
			if (q_scan(&l, dir, *q) < 0)
				ret = 1;
		}
	}
	if (ret != 0)
		goto out;
	if (l.n > 1)
		qsort(l.v, l.n, sizeof(*l.v), q_cmp);
	for (i = 0; i < l.n; i++) {
		if (qid_path(path, sizeof(path), l.v[i].queue, l.v[i].id) < 0)
			log_panic("cmd_queue: no path for %s/%s", l.v[i].queue, l.v[i].id);
		/* A message may move or go while we look: skip it quietly. */
		if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)) < 0) {
			if (errno == EACCES) {
				cat_access_error(path);
				ret = 1;
				break;
			}
			continue;
		}
		r = qfile_read(fd, &env, &cat_limits, &err);
		close(fd);
		if (r == 1 && strcmp(l.v[i].queue, QUEUE_INCOMING) == 0)
			continue; /* still being written */
		if (r != 0) {
			fprintf(stderr, "postern: %s: corrupt queue file: %s\n", path, buf_str(&err));
			continue;
		}
		if (!json && shown == 0)
			printf("-Queue ID-        --Size-- ----Arrival Time---- -Sender/Recipient-------\n");
		nlog = 0;
		log = NULL;
		if (qlog_read(QUEUE_DEFER, l.v[i].id, &log, &nlog, &err) < 0) {
			buf_reset(&err);
			nlog = 0;
		}
		if (json)
			q_print_json(&l.v[i], &env, log, nlog);
		else
			q_print_text(&l.v[i], &env, log, nlog);
		qlog_free(log, nlog);
		total += env.content_size;
		shown++;
		qfile_env_free(&env);
	}
	if (!json && ret == 0) {
		if (shown == 0)
			printf("Mail queue is empty\n");
		else
			printf(
			    "-- %llu Kbytes in %zu Request%s.\n", (total + 1023) / 1024, shown, shown == 1 ? "" : "s");
	}
	if (fflush(stdout) != 0)
		ret = 1;
out:
	free(l.v);
	buf_free(&err);
	return ret;
}
