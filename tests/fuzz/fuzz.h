/*
 * fuzz.h - what the libFuzzer targets in tests/fuzz/ share: quiet
 * logging, the input as a NUL-terminated string, and a stream that reads
 * from memory (so the code under test reads its input the way it reads
 * a socket, through struct stream, without a descriptor).
 *
 * Each target defines LLVMFuzzerTestOneInput and nothing else; tools/fuzz
 * builds them with clang -fsanitize=fuzzer,address,undefined and runs
 * them on the seed corpus in tests/fuzz/corpus/NAME/.  A target fails
 * (abort) when the code under test breaks a property it promises, not
 * only when it crashes.
 */
#ifndef POSTERN_FUZZ_H
#define POSTERN_FUZZ_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "log.h"
#include "stream.h"
#include "xalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* FUZZ_ASSERT - a broken promise: report it and abort, so libFuzzer keeps the input */
#define FUZZ_ASSERT(cond)                                                                           \
	do {                                                                                        \
		if (!(cond)) {                                                                      \
			fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                                    \
		}                                                                                   \
	} while (0)

/* fuzz_quiet - log nowhere (a warning per input would drown the fuzzer) */
static inline void
fuzz_quiet(void)
{
	static int done;

	if (!done) {
		log_init("fuzz", 0);
		log_set_dests(0);
		done = 1;
	}
}

/* fuzz_str - the input as a malloc'ed NUL-terminated string (it may hold earlier NULs) */
static inline char *
fuzz_str(const uint8_t *data, size_t size)
{
	char *s = xmalloc(size + 1);

	if (size)
		memcpy(s, data, size);
	s[size] = 0;
	return s;
}

/* A stream over memory: reads hand out the bytes in pieces of at most piece bytes, then end of file. */
struct fuzz_mem {
	const uint8_t *p;
	size_t len, pos, piece;
};

static ssize_t
fuzz_mem_read(struct stream *s, void *p, size_t n, short *want)
{
	struct fuzz_mem *m = s->ctx;
	size_t k = m->len - m->pos;

	(void)want;
	if (k > n)
		k = n;
	if (m->piece && k > m->piece)
		k = m->piece;
	memcpy(p, m->p + m->pos, k);
	m->pos += k;
	return (ssize_t)k;
}

static ssize_t
fuzz_mem_write(struct stream *s, const void *p, size_t n, short *want)
{
	(void)s, (void)p, (void)want;
	return (ssize_t)n; /* replies go nowhere */
}

static const struct stream_ops fuzz_mem_ops = { fuzz_mem_read, fuzz_mem_write, NULL, NULL };

/* fuzz_stream - a stream reading m (which must outlive it); free with stream_free */
static inline struct stream *
fuzz_stream(struct fuzz_mem *m)
{
	struct stream *s = stream_new(-1, STREAM_NOCLOSE | STREAM_BLOCKING);

	stream_set_ops(s, &fuzz_mem_ops, m);
	return s;
}

#endif
