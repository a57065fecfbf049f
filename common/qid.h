/*
 * qid - queue IDs.
 *
 * A queue ID is QID_LEN characters from [0-9A-V] (base 32, upper case):
 * 7 characters of seconds since the epoch, 4 of microseconds, then 5 of
 * the process ID.  IDs sort by time as strings, never repeat within one
 * process (the clock reading is forced to increase), differ between
 * processes (the pid) and across restarts (the time).  The writer still
 * creates queue files with O_EXCL and takes a new ID on a clash.
 *
 * Anything that joins a queue ID into a path calls qid_valid() first; a
 * name with "/" or ".." can never become a path.
 */
#ifndef POSTERN_QID_H
#define POSTERN_QID_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/time.h>

#define QID_LEN 16

/* Make a new ID (out must hold QID_LEN + 1 bytes). */
void qid_new(char *out);
/* Make the ID for a given time and pid (tests). */
void qid_make(char *out, const struct timeval *tv, long pid);
bool qid_valid(const char *s);
/* The arrival time encoded in an ID; -1 when invalid. */
int qid_time(const char *s, struct timeval *tv);
/*
 * The hash subdirectory character for hashed queues (deferred, defer,
 * bounce): the last microsecond digit.  0 when the ID is invalid.
 */
char qid_hash(const char *id);

/*
 * Build "queue/ID" or, for hashed queues, "queue/H/ID" into out.
 * Returns -1 (and builds nothing) when the ID or queue name is invalid or
 * out is too small.  Queue names are the fixed set in qfile.h.
 */
int qid_path(char *out, size_t outlen, const char *queue, const char *id);
bool qid_queue_hashed(const char *queue);

#endif
