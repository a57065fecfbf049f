/*
 * qmgr_scan - how mail reaches the active queue: triggers on public/qmgr,
 * scans of incoming/ and deferred/, and the start-up recovery.
 *
 * Triggers (doc/ipc.md 6 and 8.2) are read without blocking, a few bytes
 * per connection, and only set request bits; the scans run later from the
 * event loop, so a burst of triggers costs one scan.  A scan walks its
 * directory a slice at a time (the loop serves the agents in between),
 * validates every name with qid_valid() before it becomes a path, and
 * moves due files into active/ while the active queue has room
 * (qmgr_message_active_limit).  When it is full the scan stops where it is
 * and resumes as messages leave, so a million queued files stream through
 * memory instead of being loaded at once.
 *
 *   incoming/   mode 0700 files are complete and taken; 0600 files are
 *               being written, or debris of a writer that died: removed
 *               once older than an hour.
 *   deferred/H/ a file is due when its mtime (the next attempt time) has
 *               passed; a flush makes every file due now.
 *   hold/       never looked at.
 *
 * At start, before anything else, qmgr takes an exclusive lock on active/
 * (a replaced qmgr that is still finishing its requests keeps its files),
 * then puts every file in active/ back into incoming/: whatever was in
 * flight is tried again (recipients already marked done are not).
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "event.h"
#include "flow.h"
#include "log.h"
#include "proto.h"
#include "qdir.h"
#include "qfile.h"
#include "qpool.h"
#include "qmgr.h"
#include "xalloc.h"

#define SCAN_SLICE       200   /* directory entries per turn of the event loop */
#define TRIGGER_READ_MAX 16    /* bytes read from one trigger connection */
#define TRIGGER_CONN_MAX 64    /* trigger connections open at once */
#define TRIGGER_TIMEOUT  10000 /* ms a trigger client may take to write its bytes */
#define LOCK_WAIT        60    /* seconds to wait for a previous qmgr to let go of active/ */

static const char hash_chars[] = "0123456789ABCDEFGHIJKLMNOPQRSTUV";

struct scan {
	const char *queue;
	bool hashed;
	bool running;            /* a pass is under way */
	bool again;              /* another pass was asked for during this one */
	bool flush;              /* this pass makes every deferred file due */
	bool flush_next;         /* ... and so will the next */
	bool blocked;            /* stopped for lack of room in the active queue */
	bool skipped;            /* a flush pass left due files behind (no room) */
	struct timespec started; /* when the pass began: a flush leaves files deferred since alone */
	DIR *dir;
	size_t sub;                /* hashed: index of the subdirectory being read */
	char pending[QID_LEN + 1]; /* the entry that found the active queue full */
};

static struct scan scan_in = { .queue = QUEUE_INCOMING };
static struct scan scan_def = { .queue = QUEUE_DEFERRED, .hashed = true };
static bool scan_stopped;
static int yield_fd = -1;
static int ntriggers;

static void scan_yield(void);

/* take - move queue/ID into active/ and load it */
static void
take(const char *queue, const char *id)
{
	char from[64], to[64];

	if (qid_path(from, sizeof(from), queue, id) < 0 || qid_path(to, sizeof(to), QUEUE_ACTIVE, id) < 0)
		log_panic("qmgr: no path for %s/%s", queue, id);
	if (qdir_move(from, to) < 0) {
		if (errno != ENOENT)
			log_warn("%s: rename %s to %s: %m", id, from, to);
		return;
	}
	(void)qmgr_message_load(id, strcmp(queue, QUEUE_INCOMING) == 0);
}

/* ---------------------------------------------------------------- one entry */

/* entry_incoming - one name in incoming/; false when the active queue is full */
static bool
entry_incoming(struct scan *s, const char *name)
{
	struct stat st;
	char path[64];
	mode_t mode;

	if (qid_path(path, sizeof(path), QUEUE_INCOMING, name) < 0)
		log_panic("qmgr: no path for %s", name);
	if (fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno != ENOENT)
			log_warn("stat %s: %m", path);
		return true;
	}
	if (!S_ISREG(st.st_mode)) {
		log_warn("%s: not a regular file; ignored", path);
		return true;
	}
	mode = st.st_mode & 07777;
	if (mode == QF_MODE_INCOMPLETE) {
		/* Still being written, or what a killed writer left behind. */
		if (time(NULL) - st.st_mtime > QMGR_DEBRIS_AGE) {
			if (unlink(path) == 0)
				log_info("%s: removed incomplete queue file %s (its writer is gone)", name, path);
			else if (errno != ENOENT)
				log_warn("unlink %s: %m", path);
		}
		return true;
	}
	if (mode != QF_MODE_COMPLETE) {
		log_warn("%s: unexpected mode %04o; ignored", path, (unsigned)mode);
		return true;
	}
	if (qmgr_active_count >= (size_t)qmgr_conf.active_limit) {
		memcpy(s->pending, name, QID_LEN + 1);
		return false;
	}
	take(QUEUE_INCOMING, name);
	return true;
}

/* entry_deferred - one name in deferred/H/; false when the active queue is full */
static bool
entry_deferred(struct scan *s, int dfd, const char *name)
{
	struct timespec ts[2];
	struct stat st;
	time_t now = time(NULL);

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno != ENOENT)
			log_warn("stat %s/%c/%s: %m", QUEUE_DEFERRED, qid_hash(name), name);
		return true;
	}
	if (!S_ISREG(st.st_mode))
		return true;
	if (st.st_mtime > now) {
		/* Deferred again during this flush: it had its attempt. */
		if (!s->flush || st.st_ctim.tv_sec > s->started.tv_sec ||
		    (st.st_ctim.tv_sec == s->started.tv_sec && st.st_ctim.tv_nsec >= s->started.tv_nsec))
			return true;
		/* Due now, also for a later pass should this one find no room. */
		ts[0].tv_sec = 0;
		ts[0].tv_nsec = UTIME_OMIT;
		ts[1].tv_sec = now;
		ts[1].tv_nsec = 0;
		if (utimensat(dfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0 && errno != ENOENT)
			log_warn("set the time of %s/%c/%s: %m", QUEUE_DEFERRED, qid_hash(name), name);
	}
	if (qmgr_active_count >= (size_t)qmgr_conf.active_limit) {
		if (s->flush) {
			s->skipped = true;
			return true;
		}
		memcpy(s->pending, name, QID_LEN + 1);
		return false;
	}
	take(QUEUE_DEFERRED, name);
	return true;
}

static bool
entry(struct scan *s, const char *name)
{
	if (s->hashed)
		return entry_deferred(s, dirfd(s->dir), name);
	return entry_incoming(s, name);
}

/* ---------------------------------------------------------------- passes */

/* scan_open - the next directory of the pass; false when the pass is over */
static bool
scan_open(struct scan *s)
{
	char dir[64];

	while (s->dir == NULL) {
		if (s->hashed && s->sub >= sizeof(hash_chars) - 1)
			return false;
		if (!s->hashed && s->sub >= 1)
			return false;
		if (s->hashed)
			snprintf(dir, sizeof(dir), "%s/%c", s->queue, hash_chars[s->sub]);
		else
			snprintf(dir, sizeof(dir), "%s", s->queue);
		/* What cleanup commits from now on wants a new trigger (flow.h). */
		if (s == &scan_in)
			flow_trigger_reset();
		s->sub++;
		if ((s->dir = opendir(dir)) == NULL && errno != ENOENT)
			log_warn("opendir %s: %m", dir);
	}
	return true;
}

static void
scan_begin(struct scan *s)
{
	s->running = true;
	s->blocked = false;
	s->skipped = false;
	s->sub = 0;
	s->pending[0] = 0;
	clock_gettime(CLOCK_REALTIME, &s->started);
	scan_yield();
}

/* scan_end - the pass is over; start the next one if one was asked for */
static void
scan_end(struct scan *s)
{
	if (s->dir) {
		closedir(s->dir);
		s->dir = NULL;
	}
	s->running = false;
	if (s->skipped)
		s->again = true; /* a flush touched files it had no room for: take them as room frees */
	if (s->again) {
		s->again = false;
		s->flush = s->flush_next;
		s->flush_next = false;
		scan_begin(s);
	} else {
		s->flush = false;
	}
}

/* scan_step - one slice of a pass; true when there is more to do now */
static bool
scan_step(struct scan *s)
{
	struct dirent *de;
	int n;

	if (!s->running || s->blocked || scan_stopped)
		return false;
	if (s->pending[0]) {
		char name[QID_LEN + 1];

		memcpy(name, s->pending, sizeof(name));
		s->pending[0] = 0;
		if (!entry(s, name)) {
			s->blocked = true;
			return false;
		}
	}
	for (n = 0; n < SCAN_SLICE; n++) {
		if (!scan_open(s)) {
			scan_end(s);
			return s->running;
		}
		errno = 0;
		if ((de = readdir(s->dir)) == NULL) {
			if (errno != 0)
				log_warn("readdir %s: %m", s->queue);
			closedir(s->dir);
			s->dir = NULL;
			continue;
		}
		if (de->d_name[0] == '.')
			continue;
		if (!qid_valid(de->d_name)) {
			log_warn("%s: ignoring \"%.100s\": not a queue ID", s->queue, de->d_name);
			continue;
		}
		if (!entry(s, de->d_name)) {
			s->blocked = true;
			return false;
		}
		if (scan_stopped)
			return false;
	}
	return true;
}

/* yield_run - the event loop came round: one slice of each scan that has work */
static void
yield_run(int fd, int events, void *arg)
{
	uint64_t v;
	bool more;

	(void)events;
	(void)arg;
	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn("read the scan eventfd: %m");
	more = scan_step(&scan_in);
	more = scan_step(&scan_def) || more;
	if (more)
		scan_yield();
}

/*
 * scan_yield - run the scans again at the next turn of the event loop,
 * after the descriptors that are ready now (a timer would run before them).
 */
static void
scan_yield(void)
{
	uint64_t one = 1;

	if (yield_fd < 0) {
		if ((yield_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
			log_fatal("eventfd: %m");
		event_enable_read(yield_fd, yield_run, NULL);
	}
	if (write(yield_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_fatal("write the scan eventfd: %m");
}

static void
scan_want(struct scan *s, bool flush)
{
	if (scan_stopped)
		return;
	if (s->running) {
		s->again = true;
		s->flush_next = s->flush_next || flush;
		return;
	}
	s->flush = flush;
	scan_begin(s);
}

void
qmgr_scan_request(int req)
{
	if (req & QMGR_REQ_INCOMING)
		scan_want(&scan_in, false);
	if (req & QMGR_REQ_FLUSH)
		qmgr_deliver_revive();
	if (req & (QMGR_REQ_DEFERRED | QMGR_REQ_FLUSH))
		scan_want(&scan_def, (req & QMGR_REQ_FLUSH) != 0);
}

void
qmgr_scan_slot_free(void)
{
	bool any = false;

	if (scan_in.blocked) {
		scan_in.blocked = false;
		any = true;
	}
	if (scan_def.blocked) {
		scan_def.blocked = false;
		any = true;
	}
	if (any)
		scan_yield();
}

void
qmgr_scan_stop(void)
{
	scan_stopped = true;
}

static void
scan_periodic(void *arg)
{
	(void)arg;
	qmgr_scan_request(QMGR_REQ_INCOMING | QMGR_REQ_DEFERRED);
	event_timer_set(scan_periodic, NULL, qmgr_conf.queue_run_delay * 1000);
}

void
qmgr_scan_start_timer(void)
{
	event_timer_set(scan_periodic, NULL, qmgr_conf.queue_run_delay * 1000);
}

/* ---------------------------------------------------------------- recovery */

/* recover_lock - exclusive use of active/ for as long as this process lives */
static void
recover_lock(void)
{
	int fd, i;

	if ((fd = open(QUEUE_ACTIVE, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		log_fatal("open %s: %m", QUEUE_ACTIVE);
	for (i = 0; flock(fd, LOCK_EX | LOCK_NB) < 0; i++) {
		if (errno != EWOULDBLOCK && errno != EINTR)
			log_fatal("lock %s: %m", QUEUE_ACTIVE);
		if (i == 0)
			log_info("another qmgr is still finishing its deliveries; waiting for it");
		if (i >= LOCK_WAIT)
			log_fatal("another qmgr holds the lock on %s", QUEUE_ACTIVE);
		sleep(1);
	}
	/* fd stays open: the lock goes when the process does. */
}

void
qmgr_scan_recover(void)
{
	struct dirent *de;
	char from[64], to[64];
	size_t n = 0;
	DIR *d;

	recover_lock();
	/* The old qmgr is gone: nobody adds spares while the pool is swept. */
	(void)qpool_sweep();
	if ((d = opendir(QUEUE_ACTIVE)) == NULL)
		log_fatal("opendir %s: %m", QUEUE_ACTIVE);
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (!qid_valid(de->d_name)) {
			log_warn("%s: ignoring \"%.100s\": not a queue ID", QUEUE_ACTIVE, de->d_name);
			continue;
		}
		if (qid_path(from, sizeof(from), QUEUE_ACTIVE, de->d_name) < 0 ||
		    qid_path(to, sizeof(to), QUEUE_INCOMING, de->d_name) < 0)
			log_panic("qmgr: no path for %s", de->d_name);
		if (qdir_move(from, to) < 0)
			log_warn("rename %s to %s: %m", from, to);
		else
			n++;
	}
	closedir(d);
	if (n > 0)
		log_info("put %zu message%s from %s back into %s", n, n == 1 ? "" : "s", QUEUE_ACTIVE, QUEUE_INCOMING);
	qmgr_scan_request(QMGR_REQ_INCOMING | QMGR_REQ_DEFERRED);
}

/* ---------------------------------------------------------------- triggers */

size_t
qmgr_trigger_parse(const unsigned char *p, size_t n, int *req)
{
	size_t i, unknown = 0;

	for (i = 0; i < n; i++) {
		switch (p[i]) {
		case TRIGGER_WAKEUP:
			*req |= QMGR_REQ_INCOMING | QMGR_REQ_DEFERRED;
			break;
		case TRIGGER_SCAN_INCOMING:
			*req |= QMGR_REQ_INCOMING;
			break;
		case TRIGGER_SCAN_DEFERRED:
			*req |= QMGR_REQ_DEFERRED;
			break;
		case TRIGGER_FLUSH:
			*req |= QMGR_REQ_FLUSH | QMGR_REQ_DEFERRED;
			break;
		default:
			unknown++;
			break;
		}
	}
	return unknown;
}

struct trigger {
	int fd;
};

static void trigger_timeout(void *arg);

static void
trigger_close(struct trigger *t)
{
	event_timer_cancel(trigger_timeout, t);
	event_forget(t->fd);
	close(t->fd);
	free(t);
	ntriggers--;
}

static void
trigger_timeout(void *arg)
{
	trigger_close(arg);
}

static void
trigger_read(int fd, int events, void *arg)
{
	unsigned char b[TRIGGER_READ_MAX];
	ssize_t n;
	int req = 0;

	(void)events;
	n = read(fd, b, sizeof(b));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n > 0) {
		if (qmgr_trigger_parse(b, (size_t)n, &req) > 0)
			log_warn("trigger: ignoring %s request byte(s)", req ? "some unknown" : "an unknown");
		qmgr_scan_request(req);
	}
	trigger_close(arg);
}

void
qmgr_trigger_accept(int fd)
{
	struct trigger *t;
	int fl;

	if (ntriggers >= TRIGGER_CONN_MAX || scan_stopped) {
		/* Unread, it may have been cleanup's one trigger for a burst: scan anyway. */
		close(fd);
		qmgr_scan_request(QMGR_REQ_INCOMING);
		return;
	}
	if ((fl = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		log_warn("trigger connection: %m");
		close(fd);
		return;
	}
	t = xcalloc(1, sizeof(*t));
	t->fd = fd;
	ntriggers++;
	event_enable_read(fd, trigger_read, t);
	event_timer_set(trigger_timeout, t, TRIGGER_TIMEOUT);
}
