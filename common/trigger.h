/*
 * trigger - poke a trigger service (qmgr, pickup): connect to its socket,
 * write one request byte (TRIGGER_* in proto.h), hang up.  Never blocks:
 * a service that is busy (full backlog) or absent is not an error for
 * the sender, because every trigger service also scans on its own.
 */
#ifndef POSTERN_TRIGGER_H
#define POSTERN_TRIGGER_H

#include "buf.h"

/* path is relative to queue_directory ("public/qmgr") or absolute; 0 sent, -1 with err. */
int trigger_send(const char *path, char request, struct buf *err);

#endif
