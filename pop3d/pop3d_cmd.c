/*
 * pop3d_cmd - what both pop3d parts need to read POP3: the shared
 * settings, command lines (RFC 1939 3), numeric arguments, base64 and the
 * AUTH PLAIN response (RFC 5034, RFC 4616), and the reply helpers.
 *
 * Everything here parses what a network client sent, before or after
 * login: lines arrive NUL-terminated with their length, bounded by
 * pop3d_command_limit; a NUL inside, a sign, a leading "+", surplus
 * digits or junk after a number are all errors, never guesses.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cfg.h"
#include "log.h"
#include "pop3d.h"
#include "server.h"
#include "str.h"

struct pop3d_config pop3d_cfg;

void
pop3d_config_common(void)
{
	struct pop3d_config *c = &pop3d_cfg;
	const char *v;

	c->timeout = (int)cfg_time(P_POP3D_TIMEOUT);
	c->error_limit = cfg_int(P_POP3D_ERROR_LIMIT);
	c->command_limit = (size_t)cfg_int(P_POP3D_COMMAND_LIMIT);
	c->mail_name = cfg_str(P_MAIL_NAME);
	v = cfg_str(P_POP3D_PLAINTEXT_AUTH);
	if (strcmp(v, "mynetworks") == 0)
		c->plaintext = POP3D_PLAINTEXT_MYNETWORKS;
	else if (strcmp(v, "yes") == 0)
		c->plaintext = POP3D_PLAINTEXT_YES;
	else if (strcmp(v, "no") == 0)
		c->plaintext = POP3D_PLAINTEXT_NO;
	else
		server_config_error("pop3d_plaintext_auth = %s: use mynetworks, yes or no", v);
}

static const struct {
	const char *name;
	enum pop3_verb verb;
} verbs[] = {
	{ "USER", POP3_USER },
	{ "PASS", POP3_PASS },
	{ "APOP", POP3_APOP },
	{ "AUTH", POP3_AUTH },
	{ "CAPA", POP3_CAPA },
	{ "STLS", POP3_STLS },
	{ "QUIT", POP3_QUIT },
	{ "STAT", POP3_STAT },
	{ "LIST", POP3_LIST },
	{ "RETR", POP3_RETR },
	{ "DELE", POP3_DELE },
	{ "NOOP", POP3_NOOP },
	{ "RSET", POP3_RSET },
	{ "TOP", POP3_TOP },
	{ "UIDL", POP3_UIDL },
};

int
pop3_parse_line(char *line, size_t len, struct pop3_cmd *c, const char **why)
{
	size_t klen, i;

	c->verb = POP3_UNKNOWN;
	c->name = "unknown";
	c->arg = line + len;
	if (len == 0) {
		*why = "empty command line";
		return -1;
	}
	if (memchr(line, 0, len) != NULL) {
		*why = "NUL byte in the command line";
		return -1;
	}
	klen = strcspn(line, " ");
	if (klen == 0) {
		*why = "no command keyword";
		return -1;
	}
	/* Keywords are three or four letters (RFC 1939 3); anything else is unknown. */
	c->arg = line[klen] == ' ' ? line + klen + 1 : line + klen;
	if (klen > 4)
		return 0;
	for (i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		if (strlen(verbs[i].name) == klen && str_ncasecmp(line, verbs[i].name, klen) == 0) {
			c->verb = verbs[i].verb;
			c->name = verbs[i].name;
			break;
		}
	}
	return 0;
}

int
pop3_parse_numbers(const char *arg, int min, int max, unsigned long long *v, const char **why)
{
	const char *p = arg;
	int n = 0;

	if (*p == 0) {
		if (min > 0) {
			*why = "argument missing";
			return -1;
		}
		return 0;
	}
	for (;;) {
		unsigned long long x = 0;
		size_t digits = 0;

		if (n == max) {
			*why = "too many arguments";
			return -1;
		}
		while (*p >= '0' && *p <= '9') {
			if (++digits > 10) {
				*why = "number too large";
				return -1;
			}
			x = x * 10 + (unsigned long long)(*p++ - '0');
		}
		if (digits == 0 || x > 4294967295ULL) {
			*why = digits == 0 ? "not a number" : "number too large";
			return -1;
		}
		v[n++] = x;
		if (*p == 0)
			break;
		if (*p != ' ' || p[1] == 0) {
			*why = "not a number";
			return -1;
		}
		p++;
	}
	if (n < min) {
		*why = "argument missing";
		return -1;
	}
	return n;
}

static void
reply(struct stream *s, const char *status, const char *fmt, va_list ap)
{
	char text[512];

	vsnprintf(text, sizeof(text), fmt, ap);
	stream_printf(s, "%s %s\r\n", status, text);
}

void
pop3_ok(struct stream *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	reply(s, "+OK", fmt, ap);
	va_end(ap);
}

void
pop3_err(struct stream *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	reply(s, "-ERR", fmt, ap);
	va_end(ap);
}

void
pop3_capa(struct stream *s, bool login, bool password_ok, bool stls)
{
	pop3_ok(s, "Capability list follows");
	stream_puts(s, "TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n");
	if (login && password_ok)
		stream_puts(s, "USER\r\nSASL PLAIN\r\n");
	if (login && stls)
		stream_puts(s, "STLS\r\n");
	stream_printf(s, "IMPLEMENTATION %s\r\n.\r\n", pop3d_cfg.mail_name ? pop3d_cfg.mail_name : "Postern");
}

int
pop3_read_line(struct stream *s, struct buf *line)
{
	size_t len;
	int r;

	/* pop3d_timeout bounds the whole line: a client that drips a byte now and then must not keep us. */
	stream_set_deadline(s, pop3d_cfg.timeout);
	r = stream_getline(s, line, pop3d_cfg.command_limit);
	if (r == STREAM_TOOLONG) {
		/* The rest of the line is skipped, within a bound: it may hold a password. */
		if (line->data != NULL)
			explicit_bzero(line->data, line->cap);
		r = stream_skipline(s, POP3_SKIP_MAX);
		stream_set_deadline(s, 0);
		if (s->rbuf != NULL && s->rpos > 0)
			explicit_bzero(s->rbuf, s->rpos);
		buf_reset(line);
		return r == STREAM_OK ? 1 : (r == STREAM_TOOLONG ? STREAM_TOOLONG : r);
	}
	stream_set_deadline(s, 0);
	if (r != STREAM_OK)
		return r;
	len = line->len;
	if (len == 0 || line->data[len - 1] != '\n')
		return STREAM_EOF; /* a last line without its line end: the client went away */
	len--;
	if (len > 0 && line->data[len - 1] == '\r')
		len--;
	buf_truncate(line, len);
	return 0;
}
