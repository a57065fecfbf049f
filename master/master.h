/*
 * master - the supervisor's internal interfaces.
 *
 * master.c        main(): start-up, the pid lock, signals, stop and reload
 * master_svc.c    services from master.cf: listeners, reload differences
 * master_spawn.c  children: fork and exec, status messages, reaping,
 *                 throttling, wakeup triggers
 */
#ifndef POSTERN_MASTER_H
#define POSTERN_MASTER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "mastercf.h"

struct service;

struct child {
	pid_t pid;
	struct service *svc;
	bool avail;
	int slot; /* in svc->board, or -1 */
	unsigned uses;
	struct child *next; /* in the global list */
};

struct service {
	struct mcf_service *def; /* owned copy of the master.cf entry */
	char *key;               /* "inet:NAME" or "unix:NAME": identity across reloads */
	char *path;              /* daemon program */
	char *listen_id;         /* what the listeners are bound to (reuse on reload) */
	int *fds;                /* listening sockets */
	int nfds;
	int maxproc;             /* 0 = no limit */
	int alive_r, alive_w;    /* this generation's alive pipe */
	int total, avail;        /* children of this generation (avail: those without a slot) */
	_Atomic unsigned char *board; /* scoreboard shared with the children (master_proto.h), or NULL */
	int board_fd;
	bool *slot_used;         /* the master's own record of the slots it handed out */
	int nslots;
	bool board_failed;
	bool listening;          /* master watches fds (no child available) */
	bool used;               /* a child took a client at least once */
	bool disabled;           /* configuration error: wait for reload */
	bool retired;            /* replaced by a reload; waiting for children */
	int64_t throttled_until; /* ms, CLOCK_MONOTONIC; 0 = not throttled */
	struct service *next;
};

/* master.c */
extern struct service *services; /* current generation */
extern struct service *retired;  /* old generations with children left */
extern struct child *children;
extern bool master_stopping;
extern const char *master_config_dir;
extern int master_status_r, master_status_w;
extern int master_config_fd; /* sealed memfd with the checked main.cf */

/* master_svc.c */
/* Build the services of master.cf, reusing listeners of old ones where equal. */
int master_svc_build(const struct mcf *m, struct service **old, bool keep_same, struct service **out, bool fatal_bind);
void master_svc_retire(struct service *svc);
void master_svc_free(struct service *svc);
void master_svc_close_listeners(struct service *svc);
/* Watch a service's listeners when it has no available child, else not. */
void master_svc_update(struct service *svc);
/* Drop retired services whose children are all gone. */
void master_svc_reap_retired(void);

/* master_spawn.c */
void master_spawn_init(void);
void master_spawn(struct service *svc);
void master_reap(void);
void master_status_event(int fd, int events, void *arg);
/* Children of svc waiting for a client: from the scoreboard, or the status messages. */
int master_svc_avail(struct service *svc);
void master_board_free(struct service *svc);
void master_wakeup_start(struct service *svc);
void master_wakeup_stop(struct service *svc);
void master_signal_children(int sig);
int master_child_count(void);

#endif
