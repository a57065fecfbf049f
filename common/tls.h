/*
 * tls - TLS under a stream, with OpenSSL 3.
 *
 * A server context is made once, in pre_init (before the chroot: the key
 * file is read there and nowhere else).  tls_server_start() runs the
 * handshake on an existing stream, with the stream's timeout, and then
 * slots the TLS transport under it (stream_set_ops), discarding any
 * plaintext the client sent after the STARTTLS command.  TLS 1.2 is the
 * minimum; compression and renegotiation are off.
 */
#ifndef POSTERN_TLS_H
#define POSTERN_TLS_H

#include <stdbool.h>

#include <openssl/ssl.h>

#include "buf.h"
#include "stream.h"

/* Load certificate chain and key; NULL with err on failure. */
SSL_CTX *tls_server_ctx(const char *cert_file, const char *key_file, struct buf *err);
/* Handshake as a server; 0 on success, -1 with err (the caller drops the client). */
int tls_server_start(struct stream *s, SSL_CTX *ctx, struct buf *err);
/* Send close_notify (best effort) and detach TLS from the stream. */
void tls_stop(struct stream *s);

/* About the session on s (NULL / 0 when s has no TLS). */
bool tls_active(const struct stream *s);
const char *tls_version(const struct stream *s); /* "TLSv1.3" */
const char *tls_cipher(const struct stream *s);  /* "TLS_AES_256_GCM_SHA384" */
int tls_cipher_bits(const struct stream *s);

#endif
