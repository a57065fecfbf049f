/*
 * master_proto - the contract between the master and the children it
 * starts.  doc/ipc.md ("master <-> child") describes the same in prose.
 *
 * A child is started as
 *
 *   DAEMON -C CONFIG_DIR -n SERVICE -t TYPE -s NSOCK [-u] [-c] [-v]
 *          [-o name=value ...] [ARGS ...]
 *
 * with these descriptors open, and no others:
 *
 *   0, 1, 2               /dev/null
 *   MASTER_STATUS_FD      write end of the master's status pipe
 *   MASTER_ALIVE_FD       read end of the service generation's "alive"
 *                         pipe: end of file means "finish the current
 *                         client, then exit" (stop, reload, master gone)
 *   MASTER_CONFIG_FD      main.cf as the master read and checked it (a
 *                         sealed memfd): children use this text, never a
 *                         main.cf edited since, so a half-saved file cannot
 *                         break new processes before "postern reload"
 *   MASTER_FLOW_FD        one shared page (a memfd) for the in-flow
 *                         regulator: qmgr writes its backlog there,
 *                         smtpd and pickup read it (flow.h)
 *   MASTER_LISTEN_FD ...  NSOCK listening sockets, non-blocking
 *
 * -u: the service is unprivileged (master.cf column 4); -c: chroot to the
 * queue directory (column 5).  The child writes a struct master_status to
 * MASTER_STATUS_FD when it takes a client and when it is available again;
 * writes are smaller than PIPE_BUF, hence atomic, so all children share
 * one pipe.  A child that exits with MASTER_EXIT_CONFIG reports a
 * configuration error: the master disables the service until the next
 * reload instead of restarting it.
 */
#ifndef POSTERN_MASTER_PROTO_H
#define POSTERN_MASTER_PROTO_H

#include <sys/types.h>

#define MASTER_STATUS_FD 3
#define MASTER_ALIVE_FD  4
#define MASTER_CONFIG_FD 5
#define MASTER_FLOW_FD   6
#define MASTER_LISTEN_FD 7

#define MASTER_STAT_TAKEN 0
#define MASTER_STAT_AVAIL 1

struct master_status {
	pid_t pid;
	int avail; /* MASTER_STAT_TAKEN or MASTER_STAT_AVAIL */
};

/* sysexits' EX_CONFIG: fix the configuration, then reload */
#define MASTER_EXIT_CONFIG 78

/* The master's pid file, relative to queue_directory. */
#define MASTER_PID_FILE "pid/master.pid"

#endif
