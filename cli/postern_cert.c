/*
 * postern_cert - a self-signed certificate for an instance ("postern
 * init"): an RSA 2048 key and a certificate for the host name, localhost
 * and the loopback addresses, valid for ten years, made with OpenSSL's
 * library (no openssl command needed).  The key file is created 0600.
 */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "buf.h"
#include "postern.h"
#include "xalloc.h"

static int
add_ext(X509 *cert, int nid, const char *value)
{
	X509V3_CTX v3;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, cert, cert, NULL, NULL, 0);
	if ((ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value)) == NULL)
		return -1;
	ok = X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -1;
}

int
cli_make_cert(const char *host, const char *cert_path, const char *key_path, struct buf *err)
{
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	X509_NAME *name;
	FILE *f = NULL;
	char *san = NULL;
	int fd, rc = -1;

	if ((key = EVP_RSA_gen(2048)) == NULL || (cert = X509_new()) == NULL) {
		buf_puts(err, "cannot generate a key");
		goto out;
	}
	X509_set_version(cert, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(cert), (long)time(NULL));
	X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
	X509_gmtime_adj(X509_getm_notAfter(cert), 10L * 365 * 24 * 3600);
	X509_set_pubkey(cert, key);
	name = X509_get_subject_name(cert);
	X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"Postern instance", -1, -1, 0);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)host, -1, -1, 0);
	X509_set_issuer_name(cert, name);
	san = xasprintf("DNS:%s,DNS:localhost,IP:127.0.0.1,IP:::1", host);
	if (add_ext(cert, NID_subject_alt_name, san) < 0 ||
	    add_ext(cert, NID_basic_constraints, "critical,CA:TRUE") < 0 ||
	    add_ext(cert, NID_subject_key_identifier, "hash") < 0) {
		buf_puts(err, "cannot add certificate extensions");
		goto out;
	}
	if (!X509_sign(cert, key, EVP_sha256())) {
		buf_puts(err, "cannot sign the certificate");
		goto out;
	}
	if ((fd = open(key_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0 ||
	    (f = fdopen(fd, "w")) == NULL || !PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) ||
	    fclose(f) != 0) {
		buf_printf(err, "write %s failed", key_path);
		f = NULL;
		goto out;
	}
	f = NULL;
	if ((fd = open(cert_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644)) < 0 ||
	    (f = fdopen(fd, "w")) == NULL || !PEM_write_X509(f, cert) || fclose(f) != 0) {
		buf_printf(err, "write %s failed", cert_path);
		f = NULL;
		goto out;
	}
	f = NULL;
	rc = 0;
out:
	if (f)
		fclose(f);
	free(san);
	X509_free(cert);
	EVP_PKEY_free(key);
	return rc;
}
