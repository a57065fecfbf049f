/*
 * postern conf - show and edit main.cf, in the manner of postconf(1).
 *
 *   postern conf [-c DIR] [-d | -n] [-h] [-x] [name ...]
 *   postern conf [-c DIR] -e name=value ...
 *   postern conf -D        (for maintainers: the parameter table)
 *
 * Values are shown as written (main.cf's text, or the default), like
 * postconf; -x expands $name references.  -e edits main.cf as text: it
 * replaces a parameter's logical line (continuation lines included) or
 * appends one, keeps every other byte, and swaps the new file in with
 * rename(2), so a broken main.cf can still be repaired with it.  The
 * caller's permissions on DIR decide what may be read or changed.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg.h"
#include "log.h"
#include "postern.h"
#include "xalloc.h"

struct edit {
	char *name;
	char *value;
	bool done; /* written over the first line that set it */
};

static int
usage(void)
{
	fprintf(stderr, "usage: postern conf [-c DIR] [-d | -n] [-h] [-x] [name ...]\n"
	                "       postern conf [-c DIR] -e name=value ...\n");
	return 2;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* declared_names - every declared parameter name, sorted */
static const char **
declared_names(size_t *n)
{
	const char **v = xreallocarray(NULL, P_COUNT, sizeof(*v));
	size_t i;

	for (i = 0; i < P_COUNT; i++)
		v[i] = cfg_params[i].name;
	qsort(v, P_COUNT, sizeof(*v), cmp_str);
	*n = P_COUNT;
	return v;
}

/* print_table - -D: name, type, default, doc and where the default comes from */
static int
print_table(void)
{
	static const char *const kinds[] = { "literal", "build", "computed" };
	const struct cfg_param *p;
	const char **names;
	size_t i, n;

	names = declared_names(&n);
	for (i = 0; i < n; i++) {
		p = cfg_param_find(names[i]);
		printf("%s\t%s\t%s\t%s\t%s\n", p->name, cfg_type_name(p->type), p->def, p->doc,
		    kinds[cfg_param_default_kind(cfg_param_id(p))]);
	}
	free(names);
	return fflush(stdout) == 0 ? 0 : 1;
}

struct set_list {
	const char **v;
	size_t n;
};

static void
collect_set(const char *name, const char *raw, const char *origin, void *arg)
{
	struct set_list *l = arg;

	(void)raw;
	(void)origin;
	l->v = xreallocarray(l->v, l->n + 1, sizeof(*l->v));
	l->v[l->n++] = name;
}

/* show_one - print one parameter; returns 0, or 1 after a warning */
static int
show_one(const char *name, bool only_set, bool expand, bool values_only)
{
	struct buf out = BUF_INIT, why = BUF_INIT;
	const struct cfg_param *p = cfg_param_find(name);
	const char *raw, *origin, *v;
	int rc = 0;

	if (only_set && !cfg_is_set(name))
		return 0;
	if ((raw = cfg_raw(name, &origin)) == NULL) {
		log_warn("%s: unknown parameter", name);
		return 1;
	}
	v = raw;
	if (expand && !(p != NULL && p->type == CFG_RAW)) {
		if (cfg_expand(raw, &out, &why) != 0) {
			log_warn("%s: %s", name, buf_str(&why));
			rc = 1;
			goto out;
		}
		v = buf_str(&out);
	}
	if (values_only)
		printf("%s\n", v);
	else
		printf("%s = %s\n", name, v);
out:
	buf_free(&out);
	buf_free(&why);
	return rc;
}

/* parse_assignment - "name=value" or "name = value" from the command line */
static int
parse_assignment(const char *arg, struct edit *ed)
{
	const char *eq = strchr(arg, '='), *v;
	size_t n, vlen;

	if (eq == NULL) {
		log_warn("-e %s: expected name=value", arg);
		return -1;
	}
	while (*arg == ' ' || *arg == '\t')
		arg++;
	for (n = (size_t)(eq - arg); n > 0 && (arg[n - 1] == ' ' || arg[n - 1] == '\t'); n--)
		;
	if (!cfg_valid_name(arg, n)) {
		log_warn("-e %s: bad parameter name (letters, digits and _ only)", arg);
		return -1;
	}
	for (v = eq + 1; *v == ' ' || *v == '\t'; v++)
		;
	for (vlen = strlen(v); vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'); vlen--)
		;
	if (strcspn(v, "\r\n") < vlen) {
		log_warn("-e %.*s: a value cannot contain a line break", (int)n, arg);
		return -1;
	}
	if (vlen > CFG_VALUE_MAX) {
		log_warn("-e %.*s: value longer than %d bytes", (int)n, arg, CFG_VALUE_MAX);
		return -1;
	}
	ed->name = xstrndup(arg, n);
	ed->value = xstrndup(v, vlen);
	ed->done = false;
	return 0;
}

/* blank_char - white space as main.cf's reader sees it */
static bool
blank_char(int c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/* line_name - the name a parameter line sets, or 0 when it is not one */
static size_t
line_name(const char *s, size_t len)
{
	size_t n = 0, i;

	while (n < len && ((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z') ||
	                      (s[n] >= '0' && s[n] <= '9') || s[n] == '_'))
		n++;
	for (i = n; i < len && (s[i] == ' ' || s[i] == '\t'); i++)
		;
	return n > 0 && i < len && s[i] == '=' ? n : 0;
}

/* find_edit - the last edit of a name (a later -e of the same name wins) */
static struct edit *
find_edit(struct edit *ed, size_t ned, const char *name, size_t n)
{
	size_t i;

	for (i = ned; i-- > 0;)
		if (strlen(ed[i].name) == n && memcmp(ed[i].name, name, n) == 0)
			return &ed[i];
	return NULL;
}

/* rewrite - main.cf's text with the edits applied */
static void
rewrite(const unsigned char *text, size_t len, struct edit *ed, size_t ned, struct buf *out)
{
	const char *s = (const char *)text, *line, *nl, *p;
	bool dropping = false;
	struct edit *e;
	size_t n, i;

	for (line = s; line < s + len; line = nl) {
		nl = memchr(line, '\n', (size_t)(s + len - line));
		nl = nl ? nl + 1 : s + len;
		n = (size_t)(nl - line);
		for (p = line; p < nl && (*p == '\n' || blank_char((unsigned char)*p)); p++)
			;
		/* Blank and comment lines are kept, even inside a replaced line. */
		if (p == nl || *p == '#') {
			buf_append(out, line, n);
			continue;
		}
		if (p != line) {
			if (!dropping)
				buf_append(out, line, n);
			continue;
		}
		dropping = false;
		if ((i = line_name(line, n)) != 0 && (e = find_edit(ed, ned, line, i)) != NULL) {
			/* The first line of the name gets the new value; later ones go. */
			if (!e->done)
				buf_printf(out, "%s =%s%s\n", e->name, *e->value ? " " : "", e->value);
			e->done = true;
			dropping = true;
			continue;
		}
		buf_append(out, line, n);
	}
	for (i = 0; i < ned; i++) {
		if (ed[i].done || find_edit(ed, ned, ed[i].name, strlen(ed[i].name)) != &ed[i])
			continue;
		if (buf_len(out) > 0 && out->data[buf_len(out) - 1] != '\n')
			buf_putc(out, '\n');
		buf_printf(out, "%s =%s%s\n", ed[i].name, *ed[i].value ? " " : "", ed[i].value);
		ed[i].done = true;
	}
}

/* replace_file - write data next to path, fsync, and rename it over path */
static int
replace_file(const char *dir, const char *path, const struct buf *data)
{
	struct stat sb;
	bool existed = stat(path, &sb) == 0;
	mode_t mode = existed ? (sb.st_mode & 07777) : 0644;
	char *tmp = xasprintf("%s/.main.cf.%ld.tmp", dir, (long)getpid());
	size_t off = 0;
	ssize_t w;
	int fd, dfd;

	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0) {
		log_warn("%s: cannot create: %m", tmp);
		free(tmp);
		return -1;
	}
	while (off < buf_len(data)) {
		if ((w = write(fd, data->data + off, buf_len(data) - off)) < 0) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		off += (size_t)w;
	}
	/* Same owner (when we may) and mode as before, so daemons can still read it. */
	if (existed && (sb.st_uid != geteuid() || sb.st_gid != getegid()))
		(void)!fchown(fd, sb.st_uid, sb.st_gid);
	if (fchmod(fd, mode) != 0 || fsync(fd) != 0)
		goto fail;
	if (close(fd) != 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) != 0)
		goto fail;
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	free(tmp);
	return 0;
fail:
	log_warn("%s: cannot write: %m", path);
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	free(tmp);
	return -1;
}

/* edit_main_cf - -e: set each name=value in DIR/main.cf */
static int
edit_main_cf(const char *dir, int nargs, char **args)
{
	struct buf text = BUF_INIT, out = BUF_INIT, err = BUF_INIT;
	struct edit *ed;
	char *path;
	size_t i;
	int rc = 1;

	if (nargs < 1)
		return usage();
	ed = xcalloc((size_t)nargs, sizeof(*ed));
	for (i = 0; i < (size_t)nargs; i++) {
		if (parse_assignment(args[i], &ed[i]) != 0)
			goto out;
		if (cfg_param_find(ed[i].name) == NULL)
			log_warn("%s: unknown parameter (setting it anyway)", ed[i].name);
	}
	path = xasprintf("%s/main.cf", dir);
	if (cfg_read_file(path, CFG_FILE_MAX, &text, &err) < 0) {
		log_warn("%s", buf_str(&err));
	} else {
		rewrite(text.data, buf_len(&text), ed, (size_t)nargs, &out);
		rc = replace_file(dir, path, &out) == 0 ? 0 : 1;
	}
	free(path);
out:
	for (i = 0; i < (size_t)nargs; i++) {
		free(ed[i].name);
		free(ed[i].value);
	}
	free(ed);
	buf_free(&text);
	buf_free(&out);
	buf_free(&err);
	return rc;
}

/* load_errors - print a failed load's "file:line: reason" lines */
static void
load_errors(const struct buf *err)
{
	const char *s = buf_str(err), *nl;

	for (; *s; s = *nl ? nl + 1 : nl) {
		nl = s + strcspn(s, "\n");
		fprintf(stderr, "postern: %.*s\n", (int)(nl - s), s);
	}
}

int
cmd_conf(int argc, char **argv)
{
	bool defaults = false, only_set = false, expand = false, values_only = false, edit = false, table = false;
	struct set_list set = { NULL, 0 };
	struct buf err = BUF_INIT;
	const char **names = NULL;
	size_t i, n;
	int ch, rc = 0;

	while ((ch = getopt(argc, argv, "+c:dDehnx")) != -1) {
		switch (ch) {
		case 'c':
			cli_config_dir = optarg;
			break;
		case 'd':
			defaults = true;
			break;
		case 'D':
			table = true;
			break;
		case 'e':
			edit = true;
			break;
		case 'h':
			values_only = true;
			break;
		case 'n':
			only_set = true;
			break;
		case 'x':
			expand = true;
			break;
		default:
			return usage();
		}
	}
	argc -= optind;
	argv += optind;
	if ((defaults && only_set) || (edit && (defaults || only_set || expand || values_only || table)))
		return usage();
	if (table)
		return argc ? usage() : print_table();
	if (edit)
		return edit_main_cf(cfg_resolve_dir(cli_config_dir), argc, argv);

	/* -d: the values an empty main.cf would give. */
	if ((defaults ? cfg_load_string("", "defaults", &err) : cfg_load(cli_config_dir, &err)) != 0) {
		load_errors(&err);
		buf_free(&err);
		return 1;
	}
	buf_free(&err);
	if (argc > 0) {
		for (i = 0; i < (size_t)argc; i++)
			rc |= show_one(argv[i], only_set, expand, values_only);
	} else if (only_set) {
		cfg_walk_set(collect_set, &set);
		if (set.n > 0)
			qsort(set.v, set.n, sizeof(*set.v), cmp_str);
		for (i = 0; i < set.n; i++)
			rc |= show_one(set.v[i], true, expand, values_only);
		free(set.v);
	} else {
		names = declared_names(&n);
		for (i = 0; i < n; i++)
			rc |= show_one(names[i], false, expand, values_only);
		free(names);
	}
	if (fflush(stdout) != 0)
		rc = 1;
	return rc;
}
