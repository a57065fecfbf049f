/*
 * smtpd_parse - the SMTP command language (see smtpd_parse.h).
 *
 * The smtpd session calls these for every line a client sends, and the
 * AUTH code for every SASL response.  All of it is untrusted network
 * text: lengths and counts are bounded, every byte is checked, and the
 * client's words only reach a reply after being made printable and cut
 * short.  No I/O, no policy and no global state, so the unit tests can
 * drive every branch; the session decides what a valid command means.
 */
#include "config.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "qfile.h"
#include "smtpd_parse.h"
#include "str.h"
#include "xalloc.h"

#define VERB_MAX        16
#define KEYWORD_MAX     64  /* longer is not an esmtp-keyword we could know */
#define SIZE_DIGITS_MAX 20  /* RFC 1870 size-value */
#define ENVID_MAX       100 /* RFC 3461 4.4 */
#define ORCPT_MAX       500 /* RFC 3461 4.2 */
#define AUTH_MAX        500 /* RFC 4954 sets none; the line limit would */
#define BDAT_SIZE_MAX   (1LL << 40)

static const struct {
	const char *name;
	enum smtpd_verb verb;
} verbs[] = {
	{ "HELO", SMTPD_HELO },
	{ "EHLO", SMTPD_EHLO },
	{ "MAIL", SMTPD_MAIL },
	{ "RCPT", SMTPD_RCPT },
	{ "DATA", SMTPD_DATA },
	{ "BDAT", SMTPD_BDAT },
	{ "RSET", SMTPD_RSET },
	{ "NOOP", SMTPD_NOOP },
	{ "QUIT", SMTPD_QUIT },
	{ "VRFY", SMTPD_VRFY },
	{ "EXPN", SMTPD_EXPN },
	{ "HELP", SMTPD_HELP },
	{ "STARTTLS", SMTPD_STARTTLS },
	{ "AUTH", SMTPD_AUTH },
};

/* ESMTP parameters, one bit each so that a repeat is easy to see. */
enum {
	P_SIZE = 0x01,
	P_BODY = 0x02,
	P_SMTPUTF8 = 0x04,
	P_RET = 0x08,
	P_ENVID = 0x10,
	P_AUTH = 0x20,
	P_NOTIFY = 0x40,
	P_ORCPT = 0x80,
};

static const struct {
	const char *name;
	int bit;
} params[] = {
	{ "SIZE", P_SIZE },
	{ "BODY", P_BODY },
	{ "SMTPUTF8", P_SMTPUTF8 },
	{ "RET", P_RET },
	{ "ENVID", P_ENVID },
	{ "AUTH", P_AUTH },
	{ "NOTIFY", P_NOTIFY },
	{ "ORCPT", P_ORCPT },
};
#define NPARAMS (sizeof(params) / sizeof(params[0]))

/* One "keyword[=value]" from the parameter list, pointing into the argument. */
struct param {
	const char *key;
	size_t klen;
	const char *val; /* NULL when there is no "=" */
	size_t vlen;
};

static bool
is_alpha(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
is_alnum(int c)
{
	return is_alpha(c) || (c >= '0' && c <= '9');
}

static bool
is_uhex(int c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

static int
reply(struct smtpd_reply *rep, int code, const char *dsn, const char *text)
{
	rep->code = code;
	rep->dsn = dsn;
	strlcpy(rep->text, text, sizeof(rep->text));
	rep->why = NULL;
	return -1;
}

/* reply_word - a reply naming a client's word, shown printable and cut short */
static int
reply_word(struct smtpd_reply *rep, int code, const char *dsn, const char *prefix, const char *word, size_t len)
{
	struct buf shown = BUF_INIT;
	size_t max = 40;

	/* 40 bytes when mostly printable, 20 (at most 80 characters) when not. */
	addr_printable(&shown, word, len > max ? max : len);
	if (shown.len > 80)
		addr_printable(&shown, word, max = 20);
	reply(rep, code, dsn, "");
	snprintf(rep->text, sizeof(rep->text), "%s%s%s", prefix, buf_str(&shown), len > max ? "..." : "");
	buf_free(&shown);
	return -1;
}

int
smtpd_parse_line(char *line, size_t len, struct smtpd_cmd *cmd, struct smtpd_reply *rep)
{
	size_t n, i;
	char *arg, *e;

	cmd->verb = SMTPD_UNKNOWN;
	cmd->name = "";
	cmd->arg = line + len;
	if (memchr(line, 0, len) != NULL)
		return reply(rep, 500, "5.5.2", "Error: NUL character in command");
	if (memchr(line, '\r', len) != NULL || memchr(line, '\n', len) != NULL)
		return reply(rep, 500, "5.5.2", "Error: bare CR or LF in command");
	for (n = 0; n < len && is_alpha((unsigned char)line[n]); n++)
		;
	if (n == 0)
		return reply(rep, 500, "5.5.2", "Error: bad syntax");
	if (n > VERB_MAX || (n < len && line[n] != ' ' && line[n] != '\t'))
		return reply(rep, 500, "5.5.2", "Error: command not recognized");
	arg = line + n;
	if (n < len) {
		*arg++ = 0;
		arg += strspn(arg, " \t");
		/* Trailing blanks are a common client habit, never meaningful. */
		for (e = line + len; e > arg && (e[-1] == ' ' || e[-1] == '\t'); e--)
			e[-1] = 0;
	}
	cmd->arg = arg;
	cmd->name = line;
	for (i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		if (str_casecmp(line, verbs[i].name) == 0) {
			cmd->verb = verbs[i].verb;
			cmd->name = verbs[i].name;
			break;
		}
	}
	return 0;
}

/* Are these len bytes valid xtext? */
static bool
xtext_valid_n(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '+') {
			if (len - i < 3 || !is_uhex(s[i + 1]) || !is_uhex(s[i + 2]))
				return false;
			i += 2;
		} else if (c < '!' || c > '~' || c == '=') {
			return false;
		}
	}
	return true;
}

bool
smtpd_xtext_valid(const char *s)
{
	return xtext_valid_n(s, strlen(s));
}

static int
hexval(int c)
{
	return c <= '9' ? c - '0' : c - 'A' + 10;
}

int
smtpd_xtext_display(const char *s, struct buf *out)
{
	const char *p;
	unsigned char c;

	buf_reset(out);
	buf_reserve(out, 0);
	if (!smtpd_xtext_valid(s))
		return -1;
	for (p = s; *p; p++) {
		c = (unsigned char)*p;
		if (c == '+') {
			c = (unsigned char)(hexval(p[1]) << 4 | hexval(p[2]));
			p += 2;
		}
		if (c >= 32 && c < 127)
			buf_putc(out, c);
		else
			buf_printf(out, "\\x%02x", c);
	}
	return 0;
}

/* Is the value exactly word (case-insensitive)?  False when there is none. */
static bool
val_is(const struct param *pm, const char *word)
{
	return pm->vlen == strlen(word) && str_ncasecmp(pm->val, word, pm->vlen) == 0;
}

/* next_param - split off the next "keyword[=value]"; false at the end of the list */
static bool
next_param(const char **sp, struct param *pm)
{
	const char *s = *sp + strspn(*sp, " \t");
	size_t n = strcspn(s, " \t");
	const char *eq = memchr(s, '=', n);

	if (n == 0)
		return false;
	pm->key = s;
	pm->klen = eq ? (size_t)(eq - s) : n;
	pm->val = eq ? eq + 1 : NULL;
	pm->vlen = eq ? n - pm->klen - 1 : 0;
	*sp = s + n;
	return true;
}

/* SIZE=: up to 20 digits; a value beyond long long counts as too large. */
static bool
parse_size(const struct param *pm, long long *size)
{
	long long v = 0;
	size_t i;

	if (pm->val == NULL || pm->vlen == 0 || pm->vlen > SIZE_DIGITS_MAX)
		return false;
	for (i = 0; i < pm->vlen; i++) {
		int d = pm->val[i] - '0';

		if (d < 0 || d > 9)
			return false;
		v = v > (LLONG_MAX - d) / 10 ? LLONG_MAX : v * 10 + d;
	}
	*size = v;
	return true;
}

/* NOTIFY=NEVER or a comma list of SUCCESS, FAILURE, DELAY (RFC 3461 4.1) */
static bool
parse_notify(const struct param *pm, int *notify)
{
	static const struct {
		const char *word;
		int bit;
	} words[] = {
		{ "NEVER", QF_NOTIFY_NEVER },
		{ "SUCCESS", QF_NOTIFY_SUCCESS },
		{ "FAILURE", QF_NOTIFY_FAILURE },
		{ "DELAY", QF_NOTIFY_DELAY },
	};
	const char *p = pm->val, *end;
	size_t n, i;
	int bits = 0;

	/* "NOTIFY" without "=" has no value: no pointer arithmetic on NULL (found by fuzzing) */
	if (pm->val == NULL || pm->vlen == 0)
		return false;
	end = pm->val + pm->vlen;
	for (;;) {
		const char *comma = memchr(p, ',', (size_t)(end - p));

		n = comma ? (size_t)(comma - p) : (size_t)(end - p);
		for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
			if (n == strlen(words[i].word) && str_ncasecmp(p, words[i].word, n) == 0)
				break;
		if (i == sizeof(words) / sizeof(words[0]))
			return false;
		bits |= words[i].bit;
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	if ((bits & QF_NOTIFY_NEVER) && bits != QF_NOTIFY_NEVER)
		return false;
	*notify = bits;
	return true;
}

/* ORCPT=addr-type;xtext, addr-type an atom ("rfc822", "utf-8") */
static bool
orcpt_valid(const struct param *pm)
{
	const char *semi;
	size_t i, tlen;

	if (pm->val == NULL || pm->vlen == 0 || pm->vlen > ORCPT_MAX)
		return false;
	if ((semi = memchr(pm->val, ';', pm->vlen)) == NULL)
		return false;
	tlen = (size_t)(semi - pm->val);
	if (tlen == 0 || tlen == pm->vlen - 1)
		return false;
	for (i = 0; i < tlen; i++)
		if (!is_alnum((unsigned char)pm->val[i]) && strchr("!#$%&'*+-/=?^_`{|}~", pm->val[i]) == NULL)
			return false;
	return xtext_valid_n(semi + 1, pm->vlen - tlen - 1);
}

static bool
xtext_param_valid(const struct param *pm, size_t max)
{
	return pm->val != NULL && pm->vlen > 0 && pm->vlen <= max && xtext_valid_n(pm->val, pm->vlen);
}

static char *
val_dup(const struct param *pm)
{
	return xstrndup(pm->val, pm->vlen);
}

/*
 * parse_params - the ESMTP parameters after a path, for MAIL (margs) or
 * RCPT (rargs); allowed is the set of P_* bits this command and session
 * permit.
 */
static int
parse_params(const char *s, int allowed, const struct smtpd_parse_opts *o, struct smtpd_mail_args *margs,
    struct smtpd_rcpt_args *rargs, struct smtpd_reply *rep)
{
	struct param pm;
	size_t i;
	int seen = 0, bit;
	char bad[32];

	while (next_param(&s, &pm)) {
		if (!is_alnum((unsigned char)pm.key[0]) || pm.klen > KEYWORD_MAX)
			return reply_word(rep, 501, "5.5.4", "Syntax: bad parameter: ", pm.key, pm.klen);
		for (i = 0; i < pm.klen; i++)
			if (!is_alnum((unsigned char)pm.key[i]) && pm.key[i] != '-')
				return reply_word(rep, 501, "5.5.4", "Syntax: bad parameter: ", pm.key, pm.klen);
		for (i = 0; i < NPARAMS; i++)
			if (pm.klen == strlen(params[i].name) && str_ncasecmp(pm.key, params[i].name, pm.klen) == 0)
				break;
		bit = i < NPARAMS ? params[i].bit : 0;
		if ((bit & allowed) == 0)
			return reply_word(rep, 555, "5.5.4", "Unsupported option: ", pm.key, pm.klen);
		if (seen & bit)
			return reply_word(rep, 555, "5.5.4", "Repeated option: ", pm.key, pm.klen);
		seen |= bit;
		snprintf(bad, sizeof(bad), "Bad value for %s", params[i].name);
		switch (bit) {
		case P_SIZE:
			if (!parse_size(&pm, &margs->size))
				return reply(rep, 501, "5.5.4", bad);
			if (margs->size == LLONG_MAX || (o->size_max > 0 && margs->size > o->size_max))
				return reply(rep, 552, "5.3.4", "Message size exceeds fixed limit");
			break;
		case P_BODY:
			if (val_is(&pm, "7BIT"))
				margs->body = SMTPD_BODY_7BIT;
			else if (val_is(&pm, "8BITMIME"))
				margs->body = SMTPD_BODY_8BITMIME;
			else if (val_is(&pm, "BINARYMIME"))
				return reply(rep, 555, "5.5.4", "Unsupported option: BODY=BINARYMIME");
			else
				return reply(rep, 501, "5.5.4", bad);
			break;
		case P_SMTPUTF8:
			if (pm.val != NULL)
				return reply(rep, 501, "5.5.4", bad);
			margs->smtputf8 = true;
			break;
		case P_RET:
			if (val_is(&pm, "FULL"))
				margs->ret = xstrdup("FULL");
			else if (val_is(&pm, "HDRS"))
				margs->ret = xstrdup("HDRS");
			else
				return reply(rep, 501, "5.5.4", bad);
			break;
		case P_ENVID:
			if (!xtext_param_valid(&pm, ENVID_MAX))
				return reply(rep, 501, "5.5.4", bad);
			margs->envid = val_dup(&pm);
			break;
		case P_AUTH:
			if (!xtext_param_valid(&pm, AUTH_MAX))
				return reply(rep, 501, "5.5.4", bad);
			margs->auth = val_dup(&pm);
			break;
		case P_NOTIFY:
			if (!parse_notify(&pm, &rargs->notify))
				return reply(rep, 501, "5.5.4", bad);
			break;
		case P_ORCPT:
			if (!orcpt_valid(&pm))
				return reply(rep, 501, "5.5.4", bad);
			rargs->orcpt = val_dup(&pm);
			break;
		}
	}
	return 0;
}

/* has_8bit - does the address hold bytes outside ASCII? */
static bool
has_8bit(const struct buf *b)
{
	size_t i;

	for (i = 0; i < b->len; i++)
		if (b->data[i] >= 0x80)
			return true;
	return false;
}

/*
 * parse_path_arg - "FROM:" / "TO:", optional blanks, the path, then the
 * end or a blank; *rest is what follows the path.
 */
static int
parse_path_arg(const char *arg, const char *prefix, int flags, struct buf *addr, const char **rest,
    struct smtpd_reply *rep, const char *syntax, const char *bad_dsn, const char *bad_text)
{
	size_t n = strlen(prefix);
	const char *p, *why;

	buf_reset(addr);
	if (str_ncasecmp(arg, prefix, n) != 0)
		return reply(rep, 501, "5.5.4", syntax);
	p = arg + n + strspn(arg + n, " \t");
	if (addr_parse_path(p, flags, addr, rest, &why) < 0) {
		reply(rep, 501, bad_dsn, bad_text);
		rep->why = why;
		return -1;
	}
	if (**rest != 0 && **rest != ' ' && **rest != '\t') {
		buf_reset(addr);
		reply(rep, 501, bad_dsn, bad_text);
		rep->why = "Junk after address";
		return -1;
	}
	return 0;
}

int
smtpd_parse_mail(const char *arg, const struct smtpd_parse_opts *o, struct buf *addr, struct smtpd_mail_args *args,
    struct smtpd_reply *rep)
{
	int flags = ADDR_NULL_OK | (o->smtputf8_ok ? ADDR_UTF8 : 0);
	int allowed = P_SIZE | P_BODY | P_AUTH;
	const char *rest;

	memset(args, 0, sizeof(*args));
	if (o->smtputf8_ok)
		allowed |= P_SMTPUTF8;
	if (o->dsn_ok)
		allowed |= P_RET | P_ENVID;
	if (parse_path_arg(arg, "FROM:", flags, addr, &rest, rep, "Syntax: MAIL FROM:<address>", "5.1.7",
	        "Bad sender address syntax") < 0)
		return -1;
	if (parse_params(rest, allowed, o, args, NULL, rep) < 0)
		goto bad;
	/* UTF-8 in the address was let through only in case SMTPUTF8 followed. */
	if (!args->smtputf8 && has_8bit(addr)) {
		reply(rep, 501, "5.1.7", "Bad sender address syntax");
		rep->why = "Non-ASCII address without SMTPUTF8";
		goto bad;
	}
	return 0;
bad:
	buf_reset(addr);
	smtpd_mail_args_free(args);
	return -1;
}

void
smtpd_mail_args_free(struct smtpd_mail_args *args)
{
	free(args->envid);
	free(args->ret);
	free(args->auth);
	memset(args, 0, sizeof(*args));
}

int
smtpd_parse_rcpt(const char *arg, const struct smtpd_parse_opts *o, bool smtputf8, struct buf *addr,
    struct smtpd_rcpt_args *args, struct smtpd_reply *rep)
{
	int flags = ADDR_LOCAL_OK | (smtputf8 ? ADDR_UTF8 : 0);
	const char *rest;

	memset(args, 0, sizeof(*args));
	if (parse_path_arg(arg, "TO:", flags, addr, &rest, rep, "Syntax: RCPT TO:<address>", "5.1.3",
	        "Bad recipient address syntax") < 0)
		return -1;
	if (parse_params(rest, o->dsn_ok ? P_NOTIFY | P_ORCPT : 0, o, NULL, args, rep) < 0) {
		buf_reset(addr);
		smtpd_rcpt_args_free(args);
		return -1;
	}
	return 0;
}

void
smtpd_rcpt_args_free(struct smtpd_rcpt_args *args)
{
	free(args->orcpt);
	memset(args, 0, sizeof(*args));
}

int
smtpd_parse_bdat(const char *arg, long long *size, bool *last, struct smtpd_reply *rep)
{
	const char *p = arg;
	long long v = 0;

	*size = 0;
	*last = false;
	if (*p < '0' || *p > '9')
		return reply(rep, 501, "5.5.4", "Syntax: BDAT size [LAST]");
	for (; *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (*p - '0');
		if (v > BDAT_SIZE_MAX)
			return reply(rep, 501, "5.5.4", "BDAT size too large");
	}
	if (*p == ' ' || *p == '\t') {
		p += strspn(p, " \t");
		if (str_ncasecmp(p, "LAST", 4) == 0) {
			*last = true;
			p += 4;
			p += strspn(p, " \t");
		}
	}
	if (*p != 0) {
		*last = false;
		return reply(rep, 501, "5.5.4", "Syntax: BDAT size [LAST]");
	}
	*size = v;
	return 0;
}
