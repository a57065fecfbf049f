/*
 * postern hash-password - turn a password into a crypt(3) hash for
 * auth_passwd_maps.
 *
 *   postern hash-password [-m yescrypt|sha512|bcrypt]  < password
 *
 * Reads one line from standard input (with echo off and a prompt on
 * standard error when that is a terminal), hashes it with pwhash_make()
 * (a fresh salt from libxcrypt at the method's default cost), and prints
 * the hash.  The
 * password never appears on the command line (where ps would show it)
 * and is read with read(2), not stdio, so no copy stays in a stdio
 * buffer; our copies are wiped before exit.
 *
 * Lines over 1024 bytes are refused while reading; libxcrypt itself takes
 * at most CRYPT_MAX_PASSPHRASE_SIZE - 1 (511) bytes, so longer ones are
 * refused with that reason rather than hashed in part.
 *
 * Exit status: 0 printed a hash, 1 bad input or failure, 2 usage error.
 */
#include "config.h"

#include <crypt.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "buf.h"
#include "postern.h"
#include "pwhash.h"

#define HASHPW_MAX 1024 /* longest password accepted, in bytes */

/* Checked before the prompt, so a typo fails before the password is typed. */
static const char *const hashpw_methods[] = { "yescrypt", "sha512", "bcrypt" };

/* The terminal state to restore, also from a signal handler. */
static struct termios hashpw_saved;
static volatile sig_atomic_t hashpw_echo_off;

static void
hashpw_restore(void)
{
	if (hashpw_echo_off) {
		(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &hashpw_saved);
		hashpw_echo_off = 0;
	}
}

/* hashpw_signal - give the terminal its echo back, then die of the signal as usual */
static void
hashpw_signal(int sig)
{
	hashpw_restore();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void
hashpw_echo(bool on)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP };
	struct termios t;
	size_t i;

	if (on) {
		hashpw_restore();
		return;
	}
	if (tcgetattr(STDIN_FILENO, &hashpw_saved) != 0)
		return;
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		signal(sigs[i], hashpw_signal);
	t = hashpw_saved;
	t.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &t) == 0)
		hashpw_echo_off = 1;
}

/*
 * hashpw_read - one line from standard input into pw (HASHPW_MAX + 2
 * bytes), without its line end; returns the length, or -1 with a reason.
 */
static ssize_t
hashpw_read(char *pw, const char **why)
{
	size_t len = 0;
	ssize_t n;
	char c;

	for (;;) {
		n = read(STDIN_FILENO, &c, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*why = strerror(errno);
			return -1;
		}
		if (n == 0 || c == '\n')
			break;
		if (len > HASHPW_MAX) {
			*why = "password longer than 1024 bytes";
			return -1;
		}
		pw[len++] = c;
	}
	explicit_bzero(&c, sizeof(c));
	if (len > 0 && pw[len - 1] == '\r')
		len--;
	if (len > HASHPW_MAX) {
		*why = "password longer than 1024 bytes";
		return -1;
	}
	pw[len] = 0;
	if (memchr(pw, 0, len) != NULL) {
		*why = "password contains a NUL byte";
		return -1;
	}
	if (len == 0) {
		*why = "empty password";
		return -1;
	}
	return (ssize_t)len;
}

int
cmd_hash_password(int argc, char **argv)
{
	const char *method = hashpw_methods[0];
	struct buf hash = BUF_INIT, err = BUF_INIT;
	char pw[HASHPW_MAX + 2];
	const char *why = NULL;
	bool tty;
	size_t i;
	int ch, rc;

	while ((ch = getopt(argc, argv, "m:")) != -1) {
		switch (ch) {
		case 'm':
			for (i = 0; i < sizeof(hashpw_methods) / sizeof(hashpw_methods[0]); i++)
				if (strcmp(optarg, hashpw_methods[i]) == 0)
					break;
			if (i == sizeof(hashpw_methods) / sizeof(hashpw_methods[0])) {
				fprintf(stderr,
				    "postern: hash-password: unknown method \"%s\" (yescrypt, sha512, bcrypt)\n",
				    optarg);
				return 2;
			}
			method = hashpw_methods[i];
			break;
		default:
			fprintf(
			    stderr, "usage: postern hash-password [-m yescrypt|sha512|bcrypt]  (password on stdin)\n");
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "usage: postern hash-password [-m yescrypt|sha512|bcrypt]  (password on stdin)\n");
		return 2;
	}

	tty = isatty(STDIN_FILENO);
	if (tty) {
		fputs("Password: ", stderr);
		fflush(stderr);
		hashpw_echo(false);
	}
	if (hashpw_read(pw, &why) < 0) {
		if (tty) {
			hashpw_echo(true);
			fputc('\n', stderr);
		}
		fprintf(stderr, "postern: hash-password: %s\n", why);
		explicit_bzero(pw, sizeof(pw));
		return 1;
	}
	if (tty) {
		hashpw_echo(true);
		fputc('\n', stderr);
	}

	/* libxcrypt refuses longer passphrases; say so instead of "hashing failed". */
	if (strlen(pw) >= CRYPT_MAX_PASSPHRASE_SIZE) {
		fprintf(stderr, "postern: hash-password: password longer than %d bytes (the crypt library's limit)\n",
		    CRYPT_MAX_PASSPHRASE_SIZE - 1);
		explicit_bzero(pw, sizeof(pw));
		return 1;
	}
	if (strcmp(method, "bcrypt") == 0 && strlen(pw) > 72)
		fprintf(stderr, "postern: hash-password: warning: bcrypt uses only the first 72 bytes of a password\n");

	rc = pwhash_make(pw, method, &hash, &err);
	explicit_bzero(pw, sizeof(pw));
	if (rc != 0) {
		fprintf(stderr, "postern: hash-password: %s\n", buf_str(&err));
		rc = 1;
	} else {
		printf("%s\n", buf_str(&hash));
		if (fflush(stdout) != 0 || ferror(stdout)) {
			fprintf(stderr, "postern: hash-password: write error: %s\n", strerror(errno));
			rc = 1;
		}
	}
	buf_free(&err);
	buf_freezero(&hash);
	return rc;
}
