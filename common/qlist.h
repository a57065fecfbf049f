/*
 * qlist - the queue listing, in one place: "postern queue" prints it and
 * the showq daemon sends it to mailq users (doc/ipc.md 8.7).
 *
 * Text is mailq's shape (Postfix's): a heading, then per message its
 * queue ID with a mark ('*' active, '!' on hold), content size, arrival
 * time and sender, the recipients still to be delivered, each group under
 * the latest reason it was deferred for, an empty line; and a summary
 * "-- N Kbytes in M Requests." or "Mail queue is empty".  JSON is one
 * object per message and line (members in qlist.c and postern(1)).
 *
 * Everything printed from a queue file or a defer log is escaped (text:
 * control bytes as \xHH; JSON: a valid string), and bounded: a reason is
 * cut at QLIST_REASON_MAX bytes, a listing names at most QLIST_MSGS_MAX
 * messages and then says how many it left out.
 */
#ifndef POSTERN_QLIST_H
#define POSTERN_QLIST_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "stream.h"

#define QLIST_MSGS_MAX   1000000 /* messages named by one listing */
#define QLIST_REASON_MAX 2048    /* bytes of one deferral reason shown */

/* qlist_run() results besides 0. */
#define QLIST_ERR_IO     -1 /* a queue directory cannot be read, or emit failed */
#define QLIST_ERR_ACCESS -2 /* a queue directory cannot be read: permission denied */

/* Where the listing goes, a piece at a time; non-zero stops the listing. */
typedef int (*qlist_emit_fn)(void *arg, const unsigned char *data, size_t len);

/*
 * List incoming/ (complete files only), active/, deferred/ and hold/ of
 * the queue in the current directory, oldest ID first, as text or JSON.
 * Every directory is read before anything is emitted, so a directory
 * that cannot be read yields an error (in err) and no output.  Queue
 * files that are corrupt are skipped with a warning in the log.
 */
int qlist_run(bool json, qlist_emit_fn emit, void *arg, struct buf *err);

/*
 * The showq protocol (doc/ipc.md 8.7), both ends: greeting "showq"
 * version 1; the client's request list (optional "format": "text" or
 * "json"); the server's status list (status 0, or 5 and a reason); then
 * the listing as frames "LENGTH" LF and that many bytes, ended by "0" LF.
 */
#define QLIST_PROTOCOL    "showq"
#define QLIST_VERSION     1
#define QLIST_ATTR_FORMAT "format"
#define QLIST_FRAME_MAX   (1024 * 1024) /* bytes in one frame */

/* Serve one client on s (showq); the caller closes it. */
void qlist_serve(struct stream *s);
/*
 * Ask the showq service at path (relative to queue_directory, or
 * absolute) for a listing and pass it to emit as it arrives.  Returns 0
 * when the whole listing arrived, -1 with err otherwise (a listing cut
 * short has been partly emitted).
 */
int qlist_fetch(const char *path, bool json, int timeout, qlist_emit_fn emit, void *arg, struct buf *err);

/* Append s with control bytes, DEL and backslash as \xHH. */
void qlist_escape(struct buf *out, const char *s);
/* Append s as a JSON string; bytes that are not UTF-8 become \u00XX. */
void qlist_json_str(struct buf *out, const char *s);

#endif
