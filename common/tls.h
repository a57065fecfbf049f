/*
 * tls - TLS under a stream, with OpenSSL 3.
 *
 * A server context is made once, in pre_init (before the chroot: the key
 * file is read there and nowhere else).  tls_server_start() runs the
 * handshake on an existing stream, with the stream's timeout, and then
 * slots the TLS transport under it (stream_set_ops), discarding any
 * plaintext the client sent after the STARTTLS command.  TLS 1.2 is the
 * minimum; compression and renegotiation are off.
 *
 * The client side (the smtp client) is the mirror image: a context made
 * once before the chroot (the CA file is read there), and
 * tls_client_start() after the server's 220 to STARTTLS, which throws
 * away anything the server sent after that reply (response injection)
 * and, for the "verify" level, fails the handshake unless the chain
 * verifies against the CA file and the certificate names the host.
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
/* A client context: TLS 1.2 or later; ca_file ("" or NULL: the system's default CA paths) for verification. */
SSL_CTX *tls_client_ctx(const char *ca_file, struct buf *err);

struct tls_client_opts {
	const char *sni;         /* server name indication, or NULL (never for address literals) */
	const char *verify_name; /* the name (or IP address) the certificate must match, or NULL */
	bool verify;             /* fail the handshake unless the chain and verify_name check out */
};

/*
 * Handshake as a client on s (the server has said 220 to STARTTLS);
 * input the server sent before the handshake is discarded.  0 on success
 * with *trusted true when the chain verified and matched verify_name,
 * else -1 with err (the caller drops the connection).
 */
int tls_client_start(struct stream *s, SSL_CTX *ctx, const struct tls_client_opts *o, bool *trusted, struct buf *err);
/* The peer certificate's subject common name into out ("" without one). */
void tls_peer_cn(const struct stream *s, struct buf *out);

/* Send close_notify (best effort) and detach TLS from the stream. */
void tls_stop(struct stream *s);

/* About the session on s (NULL / 0 when s has no TLS). */
bool tls_active(const struct stream *s);
const char *tls_version(const struct stream *s); /* "TLSv1.3" */
const char *tls_cipher(const struct stream *s);  /* "TLS_AES_256_GCM_SHA384" */
int tls_cipher_bits(const struct stream *s);

#endif
