/*
 * cfg_text - reading main.cf and master.cf: bounded whole-file reads and
 * the logical-line rules both files share (comments, blank lines,
 * indented continuation lines).
 *
 * Called by cfg.c, mastercf.c and "postern conf -e".  The text is input:
 * NUL bytes and over-long lines are errors with a line number, never
 * truncated or skipped silently.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg_impl.h"

void
cfg_err_line(struct buf *err, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return;
	if (buf_len(err) > 0)
		buf_putc(err, '\n');
	va_start(ap, fmt);
	buf_vprintf(err, fmt, ap);
	va_end(ap);
}

int
cfg_read_file(const char *path, size_t max, struct buf *out, struct buf *err)
{
	struct stat sb;
	ssize_t n;
	int fd;

	buf_reset(out);
	/* O_NONBLOCK: a FIFO planted as main.cf must not hang the reader. */
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) < 0) {
		if (errno == ENOENT)
			return 1;
		cfg_err_line(err, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		cfg_err_line(err, "%s: not a regular file", path);
		close(fd);
		return -1;
	}
	for (;;) {
		buf_reserve(out, 8192);
		n = read(fd, out->data + out->len, out->cap - out->len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			cfg_err_line(err, "%s: read error: %s", path, strerror(errno));
			close(fd);
			return -1;
		}
		if (n == 0)
			break;
		out->len += (size_t)n;
		out->data[out->len] = 0;
		if (out->len > max) {
			cfg_err_line(err, "%s: file too large (more than %zu bytes)", path, max);
			close(fd);
			return -1;
		}
	}
	close(fd);
	return 0;
}

bool
cfg_blank(int c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

void
cfg_lines_init(struct cfg_lines *r, const char *text, size_t len, size_t max)
{
	memset(r, 0, sizeof(*r));
	r->text = text;
	r->len = len;
	r->max = max;
}

/*
 * next_physical - the next physical line, trimmed at both ends.  Returns
 * 1 for a content line (*indented says whether it continues), 0 for a
 * blank or comment line, -1 on a bad line (why set), 2 at the end.
 */
static int
next_physical(struct cfg_lines *r, const char **s, size_t *n, bool *indented, struct buf *why)
{
	const char *p, *e, *nl;

	if (r->pos >= r->len)
		return 2;
	p = r->text + r->pos;
	nl = memchr(p, '\n', r->len - r->pos);
	e = nl ? nl : r->text + r->len;
	r->pos = (size_t)(e - r->text) + (nl ? 1 : 0);
	r->lineno++;
	if (memchr(p, 0, (size_t)(e - p)) != NULL) {
		buf_strcpy(why, "NUL byte in line");
		return -1;
	}
	if ((size_t)(e - p) > r->max) {
		buf_reset(why);
		buf_printf(why, "line longer than %zu bytes", r->max);
		return -1;
	}
	*indented = p < e && cfg_blank((unsigned char)*p);
	while (p < e && cfg_blank((unsigned char)*p))
		p++;
	while (e > p && cfg_blank((unsigned char)e[-1]))
		e--;
	if (p == e || *p == '#')
		return 0;
	*s = p;
	*n = (size_t)(e - p);
	return 1;
}

int
cfg_lines_next(struct cfg_lines *r, struct buf *line, int *first, struct buf *why)
{
	const char *s = NULL;
	size_t n = 0, save;
	bool indented = false;
	int rc, saveno;

	buf_reset(line);
	/* Find the start of a logical line. */
	for (;;) {
		rc = next_physical(r, &s, &n, &indented, why);
		if (rc == 2)
			return 0;
		if (rc < 0) {
			*first = r->lineno;
			r->broken = true;
			return -1;
		}
		if (rc == 0)
			continue;
		if (!indented)
			break;
		if (r->broken)
			continue; /* the rest of a line already reported */
		*first = r->lineno;
		r->broken = true;
		buf_strcpy(why,
		    "continuation line with no line to continue (a parameter line must not start with white space)");
		return -1;
	}
	r->broken = false;
	*first = r->lineno;
	buf_append(line, s, n);
	/* Collect continuations; stop before the next unindented line. */
	for (;;) {
		save = r->pos;
		saveno = r->lineno;
		rc = next_physical(r, &s, &n, &indented, why);
		if (rc == 2)
			break;
		if (rc < 0) {
			*first = r->lineno;
			r->broken = true;
			return -1;
		}
		if (rc == 0)
			continue;
		if (!indented) {
			r->pos = save;
			r->lineno = saveno;
			break;
		}
		if (buf_len(line) + 1 + n > r->max) {
			buf_reset(why);
			buf_printf(why, "logical line (with its continuation lines) longer than %zu bytes", r->max);
			r->broken = true;
			return -1;
		}
		buf_putc(line, ' ');
		buf_append(line, s, n);
	}
	return 1;
}
