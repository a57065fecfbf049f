/*
 * mastercf - master.cf parser (see mastercf.h).
 *
 * Called by the master at start and on reload, and by "postern check".
 * master.cf is the administrator's file but still input: the file size,
 * line length and the numbers of services and arguments are bounded, and
 * every column is checked for syntax only (names are not resolved, the
 * command is not looked for) so that the parser has no side effects.
 * Logical lines follow main.cf's rules (cfg_lines_next).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "log.h"
#include "mastercf.h"
#include "str.h"
#include "xalloc.h"

#define MCF_NAME_MAX    255
#define MCF_WAKEUP_MAX  (366 * 86400)
#define MCF_MAXPROC_MAX 100000
#define MCF_TOKENS_MAX  (7 + 2 * MCF_MAX_ARGS)

struct token {
	char *text;
	bool braced; /* written as { text }: braces removed, ends trimmed */
};

static const char *const type_names[] = { "inet", "unix", "fifo", "pass" };

const char *
mcf_type_name(enum mcf_type t)
{
	return (unsigned)t < sizeof(type_names) / sizeof(type_names[0]) ? type_names[t] : "?";
}

/* sanitize - a column for an error message: shortened, control bytes as '?' */
static const char *
sanitize(struct buf *tmp, const char *s)
{
	size_t i, n = strlen(s), lim = n > 60 ? 57 : n;

	buf_reset(tmp);
	for (i = 0; i < lim; i++)
		buf_putc(tmp, (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i]);
	if (lim < n)
		buf_puts(tmp, "...");
	return buf_str(tmp);
}

static void
free_tokens(struct token *t, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(t[i].text);
	free(t);
}

static bool
space(int c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/*
 * tokenize - split a logical line at white space; "{ text }" is one token
 * that may hold spaces (Postfix 3.0 syntax for -o and arguments).
 */
static int
tokenize(const char *s, struct token **out, size_t *nout, struct buf *why)
{
	struct token *t = NULL;
	size_t n = 0, cap = 0, len;
	const char *start, *end;
	int level;

	for (;;) {
		while (space((unsigned char)*s))
			s++;
		if (*s == 0)
			break;
		if (n == MCF_TOKENS_MAX) {
			buf_printf(why, "more than %d words", MCF_TOKENS_MAX);
			free_tokens(t, n);
			return -1;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			t = xreallocarray(t, cap, sizeof(*t));
		}
		t[n].braced = *s == '{';
		if (*s == '{') {
			for (level = 0, end = s; *end; end++) {
				if (*end == '{')
					level++;
				else if (*end == '}' && --level == 0)
					break;
			}
			if (*end == 0) {
				buf_strcpy(why, "missing '}'");
				free_tokens(t, n);
				return -1;
			}
			if (end[1] != 0 && !space((unsigned char)end[1])) {
				buf_strcpy(why, "text right after '}' (put white space after it)");
				free_tokens(t, n);
				return -1;
			}
			for (start = s + 1; space((unsigned char)*start); start++)
				;
			for (len = (size_t)(end - start); len > 0 && space((unsigned char)start[len - 1]); len--)
				;
			t[n++].text = xstrndup(start, len);
			s = end + 1;
		} else {
			for (end = s; *end && !space((unsigned char)*end); end++)
				;
			t[n++].text = xstrndup(s, (size_t)(end - s));
			s = end;
		}
	}
	*out = t;
	*nout = n;
	return 0;
}

/* check_port - a port number or a service name from /etc/services */
static int
check_port(const char *p, struct buf *why)
{
	long long port;

	if (*p == 0) {
		buf_strcpy(why, "missing port");
		return -1;
	}
	if (strspn(p, "0123456789") == strlen(p)) {
		if (str_to_ll(p, 1, 65535, &port, NULL) != 0) {
			buf_strcpy(why, "port number out of range 1..65535");
			return -1;
		}
		return 0;
	}
	if (strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != strlen(p)) {
		buf_strcpy(why, "bad port (a number or a service name)");
		return -1;
	}
	return 0;
}

/* check_inet - [host:]port, with an IPv6 address in brackets */
static int
check_inet(const char *s, struct buf *why)
{
	const char *close, *colon;
	size_t hlen;

	if (*s == '[') {
		if ((close = strchr(s, ']')) == NULL) {
			buf_strcpy(why, "missing ']' after the address");
			return -1;
		}
		hlen = (size_t)(close - s - 1);
		if (hlen == 0 || strspn(s + 1, "0123456789abcdefABCDEF:.") < hlen) {
			buf_strcpy(why, "bad address in [brackets]");
			return -1;
		}
		if (close[1] != ':') {
			buf_strcpy(why, "expected ':port' after ']'");
			return -1;
		}
		return check_port(close + 2, why);
	}
	if ((colon = strrchr(s, ':')) == NULL)
		return check_port(s, why);
	hlen = (size_t)(colon - s);
	if (hlen == 0) {
		buf_strcpy(why, "empty host before ':' (leave out the ':' to listen on inet_interfaces)");
		return -1;
	}
	if (memchr(s, ':', hlen) != NULL) {
		buf_strcpy(why, "an IPv6 address must be written in [brackets]");
		return -1;
	}
	if (strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") < hlen) {
		buf_strcpy(why, "bad host name");
		return -1;
	}
	return check_port(colon + 1, why);
}

/* safe_name - a file name of its own: no '/', not "." or ".." */
static bool
safe_name(const char *s)
{
	return *s && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == strlen(s) &&
	       strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* yes_no - a y/n/- column */
static int
yes_no(const char *s, bool def, bool *out)
{
	if (strcmp(s, "-") == 0)
		*out = def;
	else if (strcmp(s, "y") == 0)
		*out = true;
	else if (strcmp(s, "n") == 0)
		*out = false;
	else
		return -1;
	return 0;
}

/* add_override - one -o argument: "name=value", or "name = value" in braces */
static int
add_override(struct mcf_service *svc, const char *arg, struct buf *why)
{
	struct buf tmp = BUF_INIT;
	const char *eq = strchr(arg, '='), *v;
	size_t n, vlen;

	if (svc->noverrides == MCF_MAX_ARGS) {
		buf_printf(why, "more than %d -o options", MCF_MAX_ARGS);
		return -1;
	}
	if (eq == NULL) {
		buf_printf(why, "-o \"%s\": expected name=value", sanitize(&tmp, arg));
		buf_free(&tmp);
		return -1;
	}
	for (n = (size_t)(eq - arg); n > 0 && space((unsigned char)arg[n - 1]); n--)
		;
	if (!cfg_valid_name(arg, n)) {
		buf_printf(why, "-o \"%s\": bad parameter name", sanitize(&tmp, arg));
		buf_free(&tmp);
		return -1;
	}
	for (v = eq + 1; space((unsigned char)*v); v++)
		;
	for (vlen = strlen(v); vlen > 0 && space((unsigned char)v[vlen - 1]); vlen--)
		;
	svc->overrides = xreallocarray(svc->overrides, svc->noverrides + 1, sizeof(*svc->overrides));
	svc->overrides[svc->noverrides].name = xstrndup(arg, n);
	svc->overrides[svc->noverrides].value = xstrndup(v, vlen);
	svc->noverrides++;
	return 0;
}

static void
free_service(struct mcf_service *s)
{
	size_t i;

	free(s->name);
	free(s->command);
	for (i = 0; i < s->argc; i++)
		free(s->argv[i]);
	free(s->argv);
	for (i = 0; i < s->noverrides; i++) {
		free(s->overrides[i].name);
		free(s->overrides[i].value);
	}
	free(s->overrides);
	free(s->file);
	memset(s, 0, sizeof(*s));
}

/* parse_entry - one logical line into svc; why says what is wrong */
static int
parse_entry(const char *line, struct mcf_service *svc, struct buf *why)
{
	static const char *const yn_names[] = { "private", "unpriv", "chroot" };
	struct buf tmp = BUF_INIT, reason = BUF_INIT;
	struct token *t = NULL;
	long long num;
	size_t ntok = 0, i, len;
	bool scratch;
	char *w;
	int rc = -1;

	memset(svc, 0, sizeof(*svc));
	if (tokenize(line, &t, &ntok, why) != 0)
		return -1;
	if (ntok < 8) {
		buf_printf(why,
		    "%zu columns; a service needs 8 (service type private unpriv chroot wakeup maxproc command)", ntok);
		goto out;
	}
	for (i = 0; i < 8; i++) {
		if (t[i].braced) {
			buf_printf(why, "'{' in column %zu", i + 1);
			goto out;
		}
	}
	for (i = 0; i < sizeof(type_names) / sizeof(type_names[0]); i++)
		if (strcmp(t[1].text, type_names[i]) == 0)
			break;
	if (i == sizeof(type_names) / sizeof(type_names[0])) {
		buf_printf(
		    why, "bad service type \"%s\" (expected inet, unix, fifo or pass)", sanitize(&tmp, t[1].text));
		goto out;
	}
	svc->type = (enum mcf_type)i;
	if (strlen(t[0].text) > MCF_NAME_MAX) {
		buf_printf(why, "service name longer than %d bytes", MCF_NAME_MAX);
		goto out;
	}
	if (svc->type == MCF_INET) {
		if (check_inet(t[0].text, &reason) != 0) {
			buf_printf(
			    why, "bad inet service name \"%s\": %s", sanitize(&tmp, t[0].text), buf_str(&reason));
			goto out;
		}
	} else if (!safe_name(t[0].text)) {
		buf_printf(why, "bad %s service name \"%s\" (letters, digits, '.', '_' and '-' only; not . or ..)",
		    type_names[svc->type], sanitize(&tmp, t[0].text));
		goto out;
	}
	for (i = 2; i < 5; i++) {
		if (yes_no(t[i].text, false, &scratch) != 0) {
			buf_printf(why, "bad %s column \"%s\" (expected y, n or -)", yn_names[i - 2],
			    sanitize(&tmp, t[i].text));
			goto out;
		}
	}
	/* An inet listener is reachable by anyone: "-" means public there. */
	(void)yes_no(t[2].text, svc->type != MCF_INET, &svc->private_);
	(void)yes_no(t[3].text, true, &svc->unpriv);
	(void)yes_no(t[4].text, false, &svc->chroot);
	if (svc->type == MCF_INET && svc->private_) {
		buf_strcpy(why, "an inet service cannot be private (the private column must be n or -)");
		goto out;
	}
	w = t[5].text;
	if (strcmp(w, "-") != 0) {
		len = strlen(w);
		if (len > 1 && w[len - 1] == '?') {
			svc->wakeup_if_used = true;
			w[len - 1] = 0;
		}
		if (str_to_ll(w, 0, MCF_WAKEUP_MAX, &num, NULL) != 0) {
			buf_printf(why,
			    "bad wakeup column \"%s%s\" (seconds up to %d, optionally followed by '?', or -)",
			    sanitize(&tmp, w), svc->wakeup_if_used ? "?" : "", MCF_WAKEUP_MAX);
			goto out;
		}
		svc->wakeup = (int)num;
	}
	svc->maxproc = -1;
	if (strcmp(t[6].text, "-") != 0) {
		if (str_to_ll(t[6].text, 0, MCF_MAXPROC_MAX, &num, NULL) != 0) {
			buf_printf(why, "bad maxproc column \"%s\" (0 to %d, or -)", sanitize(&tmp, t[6].text),
			    MCF_MAXPROC_MAX);
			goto out;
		}
		svc->maxproc = (int)num;
	}
	/* A name in daemon_directory, or an absolute path (test programs). */
	if (!safe_name(t[7].text) && t[7].text[0] != '/') {
		buf_printf(why, "bad command \"%s\" (a program name in daemon_directory, or an absolute path)",
		    sanitize(&tmp, t[7].text));
		goto out;
	}
	svc->name = xstrdup(t[0].text);
	svc->command = xstrdup(t[7].text);
	svc->argv = xreallocarray(NULL, ntok - 7 + 1, sizeof(char *));
	svc->argv[svc->argc++] = xstrdup(t[7].text);
	svc->argv[svc->argc] = NULL;
	for (i = 8; i < ntok; i++) {
		if (!t[i].braced && strcmp(t[i].text, "-o") == 0) {
			if (i + 1 == ntok) {
				buf_strcpy(why, "-o at the end of the line (expected -o name=value)");
				goto out;
			}
			if (add_override(svc, t[++i].text, why) != 0)
				goto out;
		} else if (!t[i].braced && strncmp(t[i].text, "-o", 2) == 0) {
			if (add_override(svc, t[i].text + 2, why) != 0)
				goto out;
		} else {
			if (svc->argc == MCF_MAX_ARGS) {
				buf_printf(why, "more than %d arguments", MCF_MAX_ARGS);
				goto out;
			}
			svc->argv[svc->argc++] = xstrdup(t[i].text);
			svc->argv[svc->argc] = NULL;
		}
	}
	rc = 0;
out:
	free_tokens(t, ntok);
	buf_free(&tmp);
	buf_free(&reason);
	if (rc != 0)
		free_service(svc);
	return rc;
}

/* parse - every logical line of text into m; errors are collected in err */
static int
parse(const char *text, size_t len, const char *origin, struct mcf *m, struct buf *err)
{
	struct buf line = BUF_INIT, why = BUF_INIT;
	const struct mcf_service *dup;
	struct mcf_service svc;
	struct cfg_lines r;
	size_t cap = 0;
	int first, rc, nerr = 0;

	memset(m, 0, sizeof(*m));
	cfg_lines_init(&r, text, len, MCF_LINE_MAX);
	while ((rc = cfg_lines_next(&r, &line, &first, &why)) != 0) {
		if (nerr >= 100) {
			buf_printf(err, "%s%s: too many errors, giving up", buf_len(err) ? "\n" : "", origin);
			break;
		}
		if (rc > 0) {
			buf_reset(&why);
			rc = parse_entry(buf_str(&line), &svc, &why) == 0 ? 1 : -1;
		}
		if (rc > 0 && (dup = mcf_find(m, svc.name, svc.type)) != NULL) {
			buf_reset(&why);
			buf_printf(&why, "duplicate service \"%s\" type %s (first defined at line %d)", svc.name,
			    mcf_type_name(svc.type), dup->line);
			free_service(&svc);
			rc = -1;
		}
		if (rc > 0 && m->nservices == MCF_MAX_SERVICES) {
			buf_reset(&why);
			buf_printf(&why, "more than %d services", MCF_MAX_SERVICES);
			free_service(&svc);
			rc = -1;
		}
		if (rc < 0) {
			buf_printf(err, "%s%s:%d: %s", buf_len(err) ? "\n" : "", origin, first, buf_str(&why));
			nerr++;
			continue;
		}
		svc.file = xstrdup(origin);
		svc.line = first;
		if (m->nservices == cap) {
			cap = cap ? cap * 2 : 32;
			m->services = xreallocarray(m->services, cap, sizeof(*m->services));
		}
		m->services[m->nservices++] = svc;
	}
	buf_free(&line);
	buf_free(&why);
	if (nerr) {
		mcf_free(m);
		return -1;
	}
	return 0;
}

int
mcf_load_string(const char *text, const char *origin, struct mcf *out, struct buf *err)
{
	return parse(text, strlen(text), origin ? origin : "master.cf", out, err);
}

int
mcf_load(const char *path, struct mcf *out, struct buf *err)
{
	struct buf text = BUF_INIT;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = cfg_read_file(path, MCF_FILE_MAX, &text, err);
	if (rc == 1)
		buf_printf(err, "%s%s: no such file", buf_len(err) ? "\n" : "", path);
	if (rc == 0)
		rc = parse((const char *)text.data, buf_len(&text), path, out, err);
	buf_free(&text);
	return rc == 0 ? 0 : -1;
}

void
mcf_free(struct mcf *m)
{
	size_t i;

	for (i = 0; i < m->nservices; i++)
		free_service(&m->services[i]);
	free(m->services);
	m->services = NULL;
	m->nservices = 0;
}

const struct mcf_service *
mcf_find(const struct mcf *m, const char *name, enum mcf_type type)
{
	size_t i;

	for (i = 0; i < m->nservices; i++)
		if (m->services[i].type == type && strcmp(m->services[i].name, name) == 0)
			return &m->services[i];
	return NULL;
}

static bool
same_str(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

bool
mcf_same(const struct mcf_service *a, const struct mcf_service *b)
{
	size_t i;

	if (!same_str(a->name, b->name) || a->type != b->type || a->private_ != b->private_ || a->unpriv != b->unpriv ||
	    a->chroot != b->chroot || a->wakeup != b->wakeup || a->wakeup_if_used != b->wakeup_if_used ||
	    a->maxproc != b->maxproc || !same_str(a->command, b->command) || a->argc != b->argc ||
	    a->noverrides != b->noverrides)
		return false;
	for (i = 0; i < a->argc; i++)
		if (!same_str(a->argv[i], b->argv[i]))
			return false;
	/* Order matters: a later -o of the same name wins. */
	for (i = 0; i < a->noverrides; i++)
		if (!same_str(a->overrides[i].name, b->overrides[i].name) ||
		    !same_str(a->overrides[i].value, b->overrides[i].value))
			return false;
	return true;
}
