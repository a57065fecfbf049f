/*
 * pwhash - crypt(3) password hashes: making them (postern hash-password,
 * postern init) and checking them (auth).  yescrypt ($y$) by default;
 * SHA-512 ($6$) and bcrypt ($2b$) on request.  Uses libcrypt (libxcrypt).
 */
#ifndef POSTERN_PWHASH_H
#define POSTERN_PWHASH_H

#include <stdbool.h>

#include "buf.h"

/* libxcrypt's limit (CRYPT_MAX_PASSPHRASE_SIZE less the NUL). */
#define PWHASH_PASSWORD_MAX 511

/* Hash password with method "yescrypt", "sha512" or "bcrypt" (NULL: yescrypt). */
int pwhash_make(const char *password, const char *method, struct buf *out, struct buf *err);
/* True when password matches hash; the comparison takes constant time. */
bool pwhash_verify(const char *password, const char *hash);

#endif
