/*
 * fuzz_qfile - the queue file reader (common/qfile.c): qfile_read and
 * qfile_content_next on a hostile file, the way qmgr, local, the bounce
 * code and postern cat read every queue file.
 *
 * The input is the whole file (in a memfd, mode 0700 so it reads as
 * complete).  Properties: a file is complete, incomplete or corrupt,
 * never half-read; what is read is consistent (recipients done <= all,
 * content inside the file, every string without NUL); the content reads
 * to its end in a bounded number of chunks; marking a recipient done
 * and reading again shows it done.
 */
#include "config.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "qfile.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct qfile_read_limits lim = { 1000, 1000 };
	struct qfile_env env, env2;
	struct buf err = BUF_INIT, chunk = BUF_INIT;
	uint64_t content = 0;
	off_t pos;
	size_t i, chunks = 0, ndone;
	int fd, r, type;
	size_t len;

	fuzz_quiet();
	if ((fd = memfd_create("qfile", 0)) < 0)
		return 0;
	if (write(fd, data, size) != (ssize_t)size || fchmod(fd, 0700) < 0) {
		close(fd);
		return 0;
	}
	(void)qfile_rec_header(data, size, &type, &len);

	r = qfile_read(fd, &env, &lim, &err);
	FUZZ_ASSERT(r == 0 || r == 1 || r == -1);
	if (r == 0) {
		FUZZ_ASSERT(env.sender != NULL);
		FUZZ_ASSERT(env.nrcpts <= lim.max_rcpts && env.nattrs <= lim.max_attrs);
		FUZZ_ASSERT(env.ndone <= env.nrcpts);
		FUZZ_ASSERT(env.content_offset > 0 && env.content_offset <= (off_t)size);
		FUZZ_ASSERT(env.content_size <= size);
		for (i = 0, ndone = 0; i < env.nrcpts; i++) {
			FUZZ_ASSERT(env.rcpts[i].offset > 0 && env.rcpts[i].offset < (off_t)size);
			ndone += env.rcpts[i].done;
		}
		FUZZ_ASSERT(ndone == env.ndone);
		for (i = 0; i < env.nattrs; i++)
			FUZZ_ASSERT(env.attrs[i].name != NULL && env.attrs[i].value != NULL);

		pos = env.content_offset;
		while ((r = qfile_content_next(fd, &pos, &chunk, &err)) == 1) {
			content += chunk.len;
			FUZZ_ASSERT(++chunks <= size);
		}
		/* A file that read as complete has a readable content of the size its header says. */
		FUZZ_ASSERT(r == 0);
		FUZZ_ASSERT(content == env.content_size);

		/* Mark the first pending recipient done: a new read shows it. */
		for (i = 0; i < env.nrcpts && env.rcpts[i].done; i++)
			;
		if (i < env.nrcpts && qfile_mark_done(fd, env.rcpts[i].offset, &err) == 0) {
			FUZZ_ASSERT(qfile_read(fd, &env2, &lim, &err) == 0);
			FUZZ_ASSERT(env2.nrcpts == env.nrcpts && env2.ndone == env.ndone + 1);
			FUZZ_ASSERT(env2.rcpts[i].done);
			qfile_env_free(&env2);
		}
		qfile_env_free(&env);
	} else {
		FUZZ_ASSERT(env.nrcpts == 0 && env.rcpts == NULL && env.sender == NULL);
	}
	close(fd);
	buf_free(&err);
	buf_free(&chunk);
	return 0;
}
