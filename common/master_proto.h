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
 *   MASTER_BOARD_FD       the service's scoreboard (a memfd, one byte per
 *                         process slot), or /dev/null when the master has
 *                         none
 *   MASTER_LISTEN_FD ...  NSOCK listening sockets, non-blocking
 *
 * -u: the service is unprivileged (master.cf column 4); -c: chroot to the
 * queue directory (column 5); -i SLOT: the child's byte in the scoreboard.
 *
 * A child with a slot stores MASTER_SLOT_BUSY there when it takes a client
 * and MASTER_SLOT_IDLE when it is available again (with MASTER_SLOT_SERVED
 * once it has served one); the master counts the idle bytes when it must
 * decide whether to start another process.  A message on the status pipe
 * is needed only when that decision changes: after taking a client a
 * child writes one when no other slot is idle (the master starts watching
 * the listeners), after finishing one when no other slot was idle (the
 * master stops).  The child stores its own byte before it looks at the
 * others, so of two children becoming busy at once at least one sees the
 * other and reports.  A child without a slot writes a message every time.
 * A struct master_status is smaller than PIPE_BUF, so writes are atomic
 * and all children share one pipe.  A child that exits with MASTER_EXIT_CONFIG reports a
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
#define MASTER_BOARD_FD  7
#define MASTER_LISTEN_FD 8

/* Scoreboard bytes. */
#define MASTER_SLOT_FREE   0    /* no process */
#define MASTER_SLOT_IDLE   1    /* waiting for a client */
#define MASTER_SLOT_BUSY   2    /* serving one */
#define MASTER_SLOT_SERVED 0x80 /* flag: has taken a client at least once */
#define MASTER_BOARD_MAX       4096 /* slots at most */
#define MASTER_BOARD_UNLIMITED 256  /* slots of a service without a process limit */

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
