/*
 * pop3d_maildir - one Maildir as a POP3 maildrop: the lock, the listing,
 * message sizes, and the UPDATE state's changes.
 *
 * Called by the mailbox part's session process, which runs as the
 * mailbox owner: every open here is checked by the kernel against that
 * user, and nothing follows a symbolic link (O_NOFOLLOW on the Maildir
 * and its files).  File names are input written by whoever can write the
 * Maildir: they are parsed strictly, and a name that is not a message
 * (dot files, junk fields) is left alone.
 *
 * The listing reads directories only: a message's size is the ,W= field
 * of its name (the CRLF size local writes there), and only names without
 * it cost one read of the file, once per session.  The list is fixed for
 * the session (message numbers stay stable); mail that arrives meanwhile
 * is listed in the next session.  One session per Maildir at a time:
 * flock() on .pop3d.lock in the Maildir, which the kernel releases with
 * the process, so a killed session leaves no stale lock.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "log.h"
#include "pop3d.h"
#include "xalloc.h"

#define LOCK_NAME ".pop3d.lock"

/* size_field - ",X=digits" value at p (after "X="), up to the next ',' or ':' or end; -1 when malformed */
static long long
size_field(const char *p)
{
	long long v = 0;
	size_t digits = 0;

	while (*p >= '0' && *p <= '9') {
		if (++digits > 15)
			return -1;
		v = v * 10 + (*p++ - '0');
	}
	if (digits == 0 || (*p != 0 && *p != ',' && *p != ':'))
		return -1;
	return v;
}

int
pop3_name_parse(const char *name, struct pop3_name *out)
{
	const char *p, *colon;

	memset(out, 0, sizeof(*out));
	out->size_s = out->size_w = -1;
	if (name[0] == 0 || name[0] == '.')
		return -1;
	out->base_len = strcspn(name, ",:");
	if (out->base_len == 0)
		return -1;
	colon = strchr(name, ':');
	/* Fields between the base name and the info: ",S=123,W=130" (others are ignored). */
	for (p = name + out->base_len; *p == ',';) {
		p++;
		if ((p[0] == 'S' || p[0] == 'W') && p[1] == '=') {
			long long v = size_field(p + 2);

			if (v < 0)
				return -1;
			if (p[0] == 'S')
				out->size_s = v;
			else
				out->size_w = v;
		}
		p += strcspn(p, ",:");
	}
	if (colon != NULL && strncmp(colon, ":2,", 3) == 0)
		out->flags = colon + 3;
	return 0;
}

/* uidl_hash - 64 hex digits of SHA-256: stable, unique enough, always a valid UIDL */
static void
uidl_hash(const char *p, size_t len, char out[POP3_UIDL_MAX + 1])
{
	static const char digits[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0, i;

	if (EVP_Digest(p, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen * 2 > POP3_UIDL_MAX)
		log_panic("pop3_uidl: SHA-256 failed");
	for (i = 0; i < mdlen; i++) {
		out[2 * i] = digits[md[i] >> 4];
		out[2 * i + 1] = digits[md[i] & 15];
	}
	out[2 * mdlen] = 0;
}

void
pop3_uidl(const char *base, size_t len, char out[POP3_UIDL_MAX + 1])
{
	bool printable = len > 0 && len <= POP3_UIDL_MAX;
	size_t k;

	for (k = 0; printable && k < len; k++)
		if ((unsigned char)base[k] < 0x21 || (unsigned char)base[k] > 0x7e)
			printable = false;
	if (!printable) {
		uidl_hash(base, len, out);
		return;
	}
	memcpy(out, base, len);
	out[len] = 0;
}

void
pop3_maildir_init(struct pop3_maildir *md)
{
	memset(md, 0, sizeof(*md));
	md->dfd = md->newfd = md->curfd = md->lockfd = -1;
}

int
pop3_maildir_open(struct pop3_maildir *md, const char *path, struct buf *err)
{
	struct stat st;

	md->dfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (md->dfd < 0) {
		if (errno == ENOENT)
			return POP3_MD_MISSING;
		buf_printf(err, "open %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(md->dfd, &st) < 0 || (geteuid() != 0 && st.st_uid != geteuid())) {
		buf_printf(err, "%s is not owned by uid %ld", path, (long)geteuid());
		return -1;
	}
	md->lockfd = openat(md->dfd, LOCK_NAME, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (md->lockfd < 0) {
		buf_printf(err, "open %s/%s: %s", path, LOCK_NAME, strerror(errno));
		return -1;
	}
	if (flock(md->lockfd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK)
			return POP3_MD_INUSE;
		buf_printf(err, "lock %s/%s: %s", path, LOCK_NAME, strerror(errno));
		return -1;
	}
	md->newfd = openat(md->dfd, "new", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (md->newfd < 0 && errno != ENOENT) {
		buf_printf(err, "open %s/new: %s", path, strerror(errno));
		return -1;
	}
	md->curfd = openat(md->dfd, "cur", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (md->curfd < 0 && errno != ENOENT) {
		buf_printf(err, "open %s/cur: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* name_cmp - order by the leading number (delivery time), then by name */
static int
name_cmp(const void *a, const void *b)
{
	const struct pop3_msg *x = a, *y = b;
	size_t dx = strspn(x->name, "0123456789"), dy = strspn(y->name, "0123456789");

	if (dx != dy && dx > 0 && dy > 0)
		return dx < dy ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* scan_dir - add the messages of one directory; -1 with err on a read error */
static int
scan_dir(struct pop3_maildir *md, int fd, bool cur, size_t *cap, struct buf *err)
{
	struct pop3_name pn;
	struct dirent *de;
	DIR *d;
	int dup;

	if (fd < 0)
		return 0;
	if ((dup = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0 || (d = fdopendir(dup)) == NULL) {
		buf_printf(err, "open %s/: %s", cur ? "cur" : "new", strerror(errno));
		if (dup >= 0)
			close(dup);
		return -1;
	}
	rewinddir(d);
	for (;;) {
		struct pop3_msg *m;

		errno = 0;
		if ((de = readdir(d)) == NULL)
			break;
		/* Only files; DT_UNKNOWN (some file systems) is taken as a file and checked at open. */
		if (de->d_type != DT_REG && de->d_type != DT_UNKNOWN)
			continue;
		if (pop3_name_parse(de->d_name, &pn) < 0)
			continue;
		if (md->n >= POP3_MAILDIR_MAX) {
			md->truncated = true;
			continue;
		}
		if (md->n == *cap) {
			*cap = *cap ? *cap * 2 : 256;
			md->msgs = xreallocarray(md->msgs, *cap, sizeof(*md->msgs));
		}
		m = &md->msgs[md->n++];
		memset(m, 0, sizeof(*m));
		m->name = xstrdup(de->d_name);
		m->size = pn.size_w;
		m->in_cur = cur;
		pop3_uidl(de->d_name, pn.base_len, m->uidl);
	}
	if (errno != 0) {
		buf_printf(err, "read %s/: %s", cur ? "cur" : "new", strerror(errno));
		closedir(d);
		return -1;
	}
	closedir(d);
	return 0;
}

/* uidl_cmp - for finding duplicate UIDLs */
static int
uidl_cmp(const void *a, const void *b)
{
	const struct pop3_msg *const *x = a, *const *y = b;

	return strcmp((*x)->uidl, (*y)->uidl);
}

/*
 * unique_uidls - a UIDL must name one message (RFC 1939 7).  Two files
 * with one base name (a copy made by hand) get UIDLs from their whole
 * names instead, which stay stable as long as the files do.
 */
static void
unique_uidls(struct pop3_maildir *md)
{
	struct pop3_msg **v;
	size_t i, j;

	if (md->n < 2)
		return;
	v = xreallocarray(NULL, md->n, sizeof(*v));
	for (i = 0; i < md->n; i++)
		v[i] = &md->msgs[i];
	qsort(v, md->n, sizeof(*v), uidl_cmp);
	for (i = 0; i + 1 < md->n; i = j) {
		for (j = i + 1; j < md->n && strcmp(v[i]->uidl, v[j]->uidl) == 0; j++)
			;
		if (j - i > 1) {
			size_t k;

			for (k = i; k < j; k++) {
				char name[512];
				int len =
				    snprintf(name, sizeof(name), "%s/%s", v[k]->in_cur ? "cur" : "new", v[k]->name);

				uidl_hash(
				    name, (size_t)len < sizeof(name) ? (size_t)len : sizeof(name) - 1, v[k]->uidl);
			}
		}
	}
	free(v);
}

int
pop3_maildir_scan(struct pop3_maildir *md, struct buf *err)
{
	size_t cap = 0;

	if (scan_dir(md, md->newfd, false, &cap, err) < 0 || scan_dir(md, md->curfd, true, &cap, err) < 0)
		return -1;
	if (md->n > 1)
		qsort(md->msgs, md->n, sizeof(*md->msgs), name_cmp);
	unique_uidls(md);
	return 0;
}

int
pop3_maildir_open_msg(struct pop3_maildir *md, size_t i, struct buf *err)
{
	struct pop3_msg *m = &md->msgs[i];
	struct stat st;
	int fd;

	fd = openat(m->in_cur ? md->curfd : md->newfd, m->name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		buf_printf(err, "open %s/%s: %s", m->in_cur ? "cur" : "new", m->name, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		buf_printf(err, "%s/%s is not a regular file", m->in_cur ? "cur" : "new", m->name);
		close(fd);
		return -1;
	}
	return fd;
}

int
pop3_maildir_size(struct pop3_maildir *md, size_t i, long long *size, struct buf *err)
{
	struct pop3_msg *m = &md->msgs[i];
	unsigned char chunk[65536];
	long long total = 0;
	ssize_t n;
	int fd;

	if (m->size >= 0) {
		*size = m->size;
		return 0;
	}
	if ((fd = pop3_maildir_open_msg(md, i, err)) < 0)
		return -1;
	while ((n = read(fd, chunk, sizeof(chunk))) > 0)
		total += pop3_crlf_size(chunk, (size_t)n);
	if (n < 0) {
		buf_printf(err, "read %s: %s", m->name, strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	*size = m->size = total;
	return 0;
}

/* seen_name - NAME with the S flag: "base...:2,FLAGS" with S added in ASCII order */
static void
seen_name(const char *name, struct buf *out)
{
	struct pop3_name pn;
	const char *colon = strchr(name, ':'), *f;
	bool added = false;

	buf_reset(out);
	(void)pop3_name_parse(name, &pn);
	if (colon == NULL || pn.flags == NULL) {
		/* No info, or an info of another version: keep the unique part and start afresh. */
		buf_append(out, name, colon ? (size_t)(colon - name) : strlen(name));
		buf_puts(out, ":2,S");
		return;
	}
	buf_append(out, name, (size_t)(pn.flags - name));
	for (f = pn.flags; *f; f++) {
		if (!added && *f > 'S') {
			buf_putc(out, 'S');
			added = true;
		}
		if (*f == 'S')
			added = true;
		buf_putc(out, *f);
	}
	if (!added)
		buf_putc(out, 'S');
}

int
pop3_maildir_update(struct pop3_maildir *md, struct buf *err)
{
	struct buf to = BUF_INIT;
	bool made_cur = false;
	int failures = 0;
	size_t i;

	for (i = 0; i < md->n; i++) {
		struct pop3_msg *m = &md->msgs[i];
		int dirfd = m->in_cur ? md->curfd : md->newfd;

		if (m->deleted) {
			/* Already gone (removed by hand meanwhile) is what we wanted. */
			if (unlinkat(dirfd, m->name, 0) < 0 && errno != ENOENT) {
				if (failures++ == 0)
					buf_printf(err, "unlink %s: %s", m->name, strerror(errno));
			}
			continue;
		}
		if (!m->retrieved)
			continue;
		seen_name(m->name, &to);
		if (m->in_cur && strcmp(buf_str(&to), m->name) == 0)
			continue;
		if (md->curfd < 0 && !made_cur) {
			made_cur = true;
			if (mkdirat(md->dfd, "cur", 0700) < 0 && errno != EEXIST) {
				if (failures++ == 0)
					buf_printf(err, "mkdir cur: %s", strerror(errno));
				continue;
			}
			md->curfd = openat(md->dfd, "cur", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		}
		if (md->curfd < 0)
			continue;
		if (renameat(dirfd, m->name, md->curfd, buf_str(&to)) < 0 && errno != ENOENT) {
			if (failures++ == 0)
				buf_printf(err, "rename %s: %s", m->name, strerror(errno));
		}
	}
	/* The changes are the user's: make them survive a crash. */
	if (md->newfd >= 0)
		(void)fsync(md->newfd);
	if (md->curfd >= 0)
		(void)fsync(md->curfd);
	buf_free(&to);
	return failures;
}

void
pop3_maildir_close(struct pop3_maildir *md)
{
	size_t i;

	for (i = 0; i < md->n; i++)
		free(md->msgs[i].name);
	free(md->msgs);
	if (md->newfd >= 0)
		close(md->newfd);
	if (md->curfd >= 0)
		close(md->curfd);
	if (md->lockfd >= 0)
		close(md->lockfd);
	if (md->dfd >= 0)
		close(md->dfd);
	pop3_maildir_init(md);
}
