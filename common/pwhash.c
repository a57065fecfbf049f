/*
 * pwhash - make and verify crypt(3) hashes (see pwhash.h).
 *
 * The crypt_data work area holds the password's derived state; it is
 * wiped before it is freed.  Callers wipe the password itself.
 */
#include "config.h"

#include <crypt.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "log.h"
#include "pwhash.h"
#include "xalloc.h"

int
pwhash_make(const char *password, const char *method, struct buf *out, struct buf *err)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *cd;
	const char *prefix, *h;
	unsigned long cost = 0; /* libxcrypt's default, except below */

	if (method == NULL || strcmp(method, "yescrypt") == 0)
		prefix = "$y$";
	else if (strcmp(method, "sha512") == 0)
		prefix = "$6$";
	else if (strcmp(method, "bcrypt") == 0) {
		prefix = "$2b$";
		cost = 10; /* libxcrypt's default of 5 is too cheap for today's hardware */
	} else {
		buf_printf(err, "unknown hash method \"%s\" (use yescrypt, sha512 or bcrypt)", method);
		return -1;
	}
	if (*password == 0 || strlen(password) > PWHASH_PASSWORD_MAX) {
		buf_printf(err, "a password must have 1 to %d characters", PWHASH_PASSWORD_MAX);
		return -1;
	}
	if (crypt_gensalt_rn(prefix, cost, NULL, 0, salt, sizeof(salt)) == NULL) {
		buf_printf(err, "cannot make a %s salt", method ? method : "yescrypt");
		return -1;
	}
	cd = xcalloc(1, sizeof(*cd));
	h = crypt_r(password, salt, cd);
	if (h == NULL || h[0] == '*') {
		buf_printf(err, "crypt failed for method %s", method ? method : "yescrypt");
		freezero(cd, sizeof(*cd));
		return -1;
	}
	buf_strcpy(out, h);
	freezero(cd, sizeof(*cd));
	return 0;
}

bool
pwhash_verify(const char *password, const char *hash)
{
	struct crypt_data *cd;
	const char *h;
	size_t n;
	bool ok;

	if (hash == NULL || *hash == 0 || *hash == '*' || *hash == '!')
		return false;
	cd = xcalloc(1, sizeof(*cd));
	h = crypt_r(password, hash, cd);
	n = strlen(hash);
	ok = h != NULL && h[0] != '*' && strlen(h) == n && CRYPTO_memcmp(h, hash, n) == 0;
	freezero(cd, sizeof(*cd));
	return ok;
}
