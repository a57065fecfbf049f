/*
 * smtp_policy - what each destination asks of a delivery: its TLS level
 * (smtp_tls_security_level, smtp_tls_policy_maps) and the credentials
 * for SMTP AUTH (smtp_sasl_password_maps).
 *
 * Called by smtp_deliver.c (TLS level, once per request) and
 * smtp_connect.c (credentials, once per session).  The tables are the
 * administrator's; a table that cannot answer makes the mail wait, it
 * never downgrades TLS or sends mail without the credentials asked for.
 */
#include "config.h"

#include <string.h>

#include "log.h"
#include "smtp.h"
#include "str.h"

int
smtp_tls_level_parse(const char *word, enum smtp_tls_level *level)
{
	if (strcmp(word, "none") == 0)
		*level = SMTP_TLS_NONE;
	else if (strcmp(word, "may") == 0)
		*level = SMTP_TLS_MAY;
	else if (strcmp(word, "encrypt") == 0)
		*level = SMTP_TLS_ENCRYPT;
	else if (strcmp(word, "verify") == 0 || strcmp(word, "secure") == 0)
		*level = SMTP_TLS_VERIFY;
	else
		return -1;
	return 0;
}

/* policy_find - the policy table's value for key: 1 found, 0 not, -1 try again */
static int
policy_find(const char *key, struct buf *value)
{
	switch (dict_list_lookup(smtp_conf.tls_policy, key, value)) {
	case DICT_FOUND:
		return 1;
	case DICT_NOTFOUND:
		return 0;
	default:
		return -1;
	}
}

int
smtp_tls_policy(const char *nexthop, const struct smtp_nexthop *nh, enum smtp_tls_level *level, struct buf *why)
{
	struct buf value = BUF_INIT, key = BUF_INIT;
	const char *p;
	char *v, *word;
	int r;

	*level = smtp_conf.tls_level;
	if (smtp_conf.tls_policy == NULL)
		return 0;
	/* The next hop as written, then the bare name, then its parent domains. */
	if ((r = policy_find(nexthop, &value)) == 0 && strcmp(nexthop, nh->host) != 0)
		r = policy_find(nh->host, &value);
	for (p = strchr(nh->host, '.'); r == 0 && p != NULL && p[1] && !nh->literal; p = strchr(p + 1, '.'))
		r = policy_find(p, &value);
	if (r < 0) {
		buf_printf(why, "TLS policy lookup for %s failed: %s", nexthop, dict_list_error(smtp_conf.tls_policy));
		goto out;
	}
	if (r == 1) {
		v = (char *)value.data;
		if ((word = str_token(&v, STR_LIST_SEP)) == NULL || smtp_tls_level_parse(word, level) < 0) {
			log_warn("smtp_tls_policy_maps: bad TLS level \"%s\" for %s", buf_str(&value), nexthop);
			buf_printf(why, "invalid TLS policy for %s", nexthop);
			r = -1;
			goto out;
		}
		r = 0;
	}
out:
	buf_free(&value);
	buf_free(&key);
	return r;
}

int
smtp_sasl_lookup(const char *nexthop, const char *host, struct buf *user, struct buf *pass)
{
	struct buf value = BUF_INIT, key = BUF_INIT;
	const char *keys[3], *colon;
	enum dict_result res = DICT_NOTFOUND;
	size_t i, nk = 0;
	int r = 0;

	if (!smtp_conf.sasl_enable || smtp_conf.sasl_passwd == NULL)
		return 0;
	keys[nk++] = nexthop;
	/* "[relay.example]:587" -> "[relay.example]" */
	if (nexthop[0] == '[' && (colon = strstr(nexthop, "]:")) != NULL) {
		buf_append(&key, nexthop, (size_t)(colon - nexthop) + 1);
		keys[nk++] = buf_str(&key);
	}
	keys[nk++] = host;
	for (i = 0; i < nk && res == DICT_NOTFOUND; i++)
		res = dict_list_lookup(smtp_conf.sasl_passwd, keys[i], &value);
	if (res == DICT_RETRY) {
		r = -1;
	} else if (res == DICT_FOUND) {
		const char *v = buf_str(&value), *c = strchr(v, ':');

		if (c == NULL || c == v) {
			log_warn("smtp_sasl_password_maps: the value for %s is not user:password", keys[i - 1]);
			r = -1;
		} else {
			buf_reset(user);
			buf_reset(pass);
			buf_append(user, v, (size_t)(c - v));
			buf_puts(pass, c + 1);
			r = 1;
		}
	}
	buf_freezero(&value);
	buf_free(&key);
	return r;
}
