/*
 * fuzz_smtpd_cmd - the SMTP command language (smtpd/smtpd_parse.c):
 * the command line splitter and the MAIL, RCPT and BDAT argument parsers
 * with their ESMTP parameters.
 *
 * Input: one options byte (SMTPUTF8 and DSN offered, a SIZE limit, the
 * transaction's SMTPUTF8), then one command line.  Properties: a reply
 * for an error is a real 4xx/5xx reply whose text can go on the wire
 * as is (printable ASCII, no CR or LF); accepted parameters are what the
 * parser promises (xtext valid, within their bounds); an accepted
 * address is printable.
 */
#include "config.h"

#include "fuzz.h"
#include "qfile.h"
#include "smtpd_parse.h"

static void
check_reply(const struct smtpd_reply *rep)
{
	const char *p;

	FUZZ_ASSERT(rep->code >= 400 && rep->code <= 599);
	FUZZ_ASSERT(
	    rep->dsn != NULL && (rep->dsn[0] == '4' || rep->dsn[0] == '5') && rep->dsn[0] - '0' == rep->code / 100);
	FUZZ_ASSERT(memchr(rep->text, 0, sizeof(rep->text)) != NULL);
	for (p = rep->text; *p; p++)
		FUZZ_ASSERT(*p >= 0x20 && *p < 0x7f);
}

static void
check_addr(const struct buf *b)
{
	size_t i;

	FUZZ_ASSERT(strlen(buf_str(b)) == b->len);
	for (i = 0; i < b->len; i++)
		FUZZ_ASSERT(b->data[i] >= 0x20 && b->data[i] != 0x7f);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtpd_parse_opts o;
	struct smtpd_cmd cmd;
	struct smtpd_reply rep;
	struct smtpd_mail_args margs;
	struct smtpd_rcpt_args rargs;
	struct buf addr = BUF_INIT, shown = BUF_INIT;
	long long bsize;
	bool last;
	char *line;

	fuzz_quiet();
	if (size < 1)
		return 0;
	memset(&o, 0, sizeof(o));
	o.smtputf8_ok = data[0] & 1;
	o.dsn_ok = data[0] & 2;
	o.size_max = (data[0] & 4) ? 10240000 : 0;
	line = fuzz_str(data + 1, size - 1);

	memset(&rep, 0, sizeof(rep));
	if (smtpd_parse_line(line, size - 1, &cmd, &rep) < 0) {
		check_reply(&rep);
		FUZZ_ASSERT(rep.code == 500);
		goto out;
	}
	FUZZ_ASSERT(cmd.name != NULL && cmd.arg != NULL);
	FUZZ_ASSERT(strchr(cmd.arg, '\r') == NULL && strchr(cmd.arg, '\n') == NULL);
	switch (cmd.verb) {
	case SMTPD_MAIL:
		memset(&margs, 0xA5, sizeof(margs));
		if (smtpd_parse_mail(cmd.arg, &o, &addr, &margs, &rep) == 0) {
			check_addr(&addr);
			FUZZ_ASSERT(margs.size >= 0);
			FUZZ_ASSERT(o.size_max == 0 || margs.size <= o.size_max);
			FUZZ_ASSERT(
			    margs.envid == NULL || (smtpd_xtext_valid(margs.envid) && strlen(margs.envid) <= 100));
			FUZZ_ASSERT(margs.auth == NULL || (smtpd_xtext_valid(margs.auth) && strlen(margs.auth) <= 500));
			FUZZ_ASSERT(
			    margs.ret == NULL || strcmp(margs.ret, "FULL") == 0 || strcmp(margs.ret, "HDRS") == 0);
			FUZZ_ASSERT(!margs.smtputf8 || o.smtputf8_ok);
			FUZZ_ASSERT(o.dsn_ok || (margs.envid == NULL && margs.ret == NULL));
			if (margs.envid)
				FUZZ_ASSERT(smtpd_xtext_display(margs.envid, &shown) == 0);
			smtpd_mail_args_free(&margs);
		} else {
			check_reply(&rep);
		}
		break;
	case SMTPD_RCPT:
		memset(&rargs, 0xA5, sizeof(rargs));
		if (smtpd_parse_rcpt(cmd.arg, &o, data[0] & 8, &addr, &rargs, &rep) == 0) {
			check_addr(&addr);
			FUZZ_ASSERT(addr.len > 0);
			FUZZ_ASSERT(
			    rargs.orcpt == NULL || (strlen(rargs.orcpt) <= 500 && strchr(rargs.orcpt, ';') != NULL));
			FUZZ_ASSERT(o.dsn_ok || (rargs.orcpt == NULL && rargs.notify == 0));
			FUZZ_ASSERT((rargs.notify & ~(QF_NOTIFY_NEVER | QF_NOTIFY_SUCCESS | QF_NOTIFY_FAILURE |
			                                QF_NOTIFY_DELAY)) == 0);
			smtpd_rcpt_args_free(&rargs);
		} else {
			check_reply(&rep);
		}
		break;
	case SMTPD_BDAT:
		if (smtpd_parse_bdat(cmd.arg, &bsize, &last, &rep) == 0)
			FUZZ_ASSERT(bsize >= 0 && bsize <= (1LL << 40));
		else
			check_reply(&rep);
		break;
	default:
		if (smtpd_xtext_display(cmd.arg, &shown) == 0)
			FUZZ_ASSERT(smtpd_xtext_valid(cmd.arg));
		break;
	}
out:
	free(line);
	buf_free(&addr);
	buf_free(&shown);
	return 0;
}
