/*
 * qpool - spare queue files: a finished queue file is kept for the next
 * message instead of being removed.
 *
 * Every message used to cost the file system one inode allocated (the
 * queue file, created by cleanup) and one freed (qmgr's unlink), and a
 * directory entry made and removed.  Hundreds of concurrent creates in
 * incoming/ wait on each other for the directory and the allocator; on
 * ext4 without a journal each allocation also steps over every inode
 * freed in the last minute, which grows with the rate (bench/RESULTS.md).
 * With the pool, qmgr renames a finished file into pool/ (QUEUE_POOL)
 * and cleanup renames a spare to incoming/ID and overwrites it, so at a
 * steady rate no inode is allocated or freed for the queue at all.
 *
 * The order of the names lives in the shared page (flow.h): qmgr, the
 * only producer (one qmgr at a time, qmgr_scan.c's lock), renames a file
 * to pool/HEAD and then publishes HEAD + 1; a cleanup claims an index
 * below HEAD with a compare-and-swap on TAIL, so no two take the same
 * file.  Without the page (no master) there is no pool: files are
 * created and removed as before.
 *
 * Safety (doc/queue-format.md 2.3):
 *   - qmgr sets mode 0600 ("incomplete") before the rename into pool/:
 *     a spare is never a complete queue file, wherever a crash leaves it.
 *   - cleanup opens the spare, checks it (regular, one link, ours, mode
 *     0600), renames it to incoming/ID and writes the new message from
 *     offset 0; the commit cuts the file to the new length before it
 *     sets mode 0700, so nothing of the old message survives.
 *   - A complete file found in pool/ at start can only be a message
 *     committed after its rename to incoming/ was lost (a power cut on a
 *     file system that does not make the rename durable with the file's
 *     fsync): qmgr puts it back into incoming/ under a new queue ID.
 *     The spares are kept (renumbered), anything else is removed.
 * Only small files are kept (QPOOL_FILE_MAX), at most QPOOL_MAX of them.
 */
#ifndef POSTERN_QPOOL_H
#define POSTERN_QPOOL_H

#include <stdbool.h>
#include <sys/types.h>

#define QUEUE_POOL     "pool"
#define QPOOL_MAX      512
#define QPOOL_FILE_MAX (64 * 1024)

/*
 * qmgr: the finished queue file at path (size bytes) becomes a spare.
 * 0 when it did; -1 when the pool is full, absent or the file too large:
 * the caller removes the file itself.
 */
int qpool_put(const char *path, off_t size);

/*
 * cleanup: a spare, renamed to path (which must not exist), opened for
 * writing at offset 0 with mode 0600; -1 when there is none (the caller
 * creates the file).
 */
int qpool_take(const char *path);

/*
 * qmgr at start, before anything is put into the pool: when the shared
 * page is new (the master started), recover complete files from pool/,
 * keep the spares and remove the rest.  Returns the number of messages
 * recovered.
 */
int qpool_sweep(void);

#endif
