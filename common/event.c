/*
 * event - epoll-based readiness callbacks and timers (see event.h).
 *
 * Descriptor state lives in a table indexed by descriptor number, grown
 * on demand.  A callback that forgets a descriptor while other events for
 * it are pending in the same batch is safe: dispatch re-checks the table
 * before each call.  Timers are few (wakeups, throttles, retries) and
 * kept in an unsorted array; the nearest is found by a scan.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "event.h"
#include "log.h"
#include "stream.h"
#include "xalloc.h"

struct event_fd {
	event_fn rfn, wfn;
	void *rarg, *warg;
	int mask; /* EVENT_READ | EVENT_WRITE registered with epoll */
};

struct event_timer {
	event_timer_fn fn;
	void *arg;
	int64_t when;
};

static int epfd = -1;
static struct event_fd *fds;
static size_t nfds;
static struct event_timer *timers;
static size_t ntimers, ctimers;

static void
event_init(void)
{
	if (epfd >= 0)
		return;
	if ((epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
		log_fatal("epoll_create1: %m");
}

static struct event_fd *
event_slot(int fd)
{
	size_t n;

	if (fd < 0)
		log_panic("event: bad descriptor %d", fd);
	if ((size_t)fd >= nfds) {
		n = (size_t)fd + 64;
		fds = xreallocarray(fds, n, sizeof(*fds));
		memset(fds + nfds, 0, (n - nfds) * sizeof(*fds));
		nfds = n;
	}
	return &fds[fd];
}

/* event_update - tell epoll what we now want for fd */
static void
event_update(int fd, struct event_fd *e, int mask)
{
	struct epoll_event ev;
	int op;

	event_init();
	if (mask == e->mask)
		return;
	memset(&ev, 0, sizeof(ev));
	ev.data.fd = fd;
	ev.events = ((mask & EVENT_READ) ? EPOLLIN : 0) | ((mask & EVENT_WRITE) ? EPOLLOUT : 0);
	op = e->mask == 0 ? EPOLL_CTL_ADD : mask == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
	if (epoll_ctl(epfd, op, fd, &ev) < 0 && !(op == EPOLL_CTL_DEL && (errno == EBADF || errno == ENOENT)))
		log_panic("epoll_ctl(%d, fd %d): %m", op, fd);
	e->mask = mask;
}

void
event_enable_read(int fd, event_fn fn, void *arg)
{
	struct event_fd *e = event_slot(fd);

	e->rfn = fn;
	e->rarg = arg;
	event_update(fd, e, e->mask | EVENT_READ);
}

void
event_enable_write(int fd, event_fn fn, void *arg)
{
	struct event_fd *e = event_slot(fd);

	e->wfn = fn;
	e->warg = arg;
	event_update(fd, e, e->mask | EVENT_WRITE);
}

void
event_disable_read(int fd)
{
	struct event_fd *e;

	if (fd < 0 || (size_t)fd >= nfds)
		return;
	e = &fds[fd];
	e->rfn = NULL;
	event_update(fd, e, e->mask & ~EVENT_READ);
}

void
event_disable_write(int fd)
{
	struct event_fd *e;

	if (fd < 0 || (size_t)fd >= nfds)
		return;
	e = &fds[fd];
	e->wfn = NULL;
	event_update(fd, e, e->mask & ~EVENT_WRITE);
}

void
event_forget(int fd)
{
	if (fd < 0 || (size_t)fd >= nfds)
		return;
	event_update(fd, &fds[fd], 0);
	memset(&fds[fd], 0, sizeof(fds[fd]));
}

void
event_timer_set(event_timer_fn fn, void *arg, int64_t delay_ms)
{
	int64_t when = stream_now_ms() + (delay_ms > 0 ? delay_ms : 0);
	size_t i;

	for (i = 0; i < ntimers; i++) {
		if (timers[i].fn == fn && timers[i].arg == arg) {
			timers[i].when = when;
			return;
		}
	}
	if (ntimers == ctimers) {
		ctimers = ctimers ? ctimers * 2 : 16;
		timers = xreallocarray(timers, ctimers, sizeof(*timers));
	}
	timers[ntimers].fn = fn;
	timers[ntimers].arg = arg;
	timers[ntimers].when = when;
	ntimers++;
}

void
event_timer_cancel(event_timer_fn fn, void *arg)
{
	size_t i;

	for (i = 0; i < ntimers; i++) {
		if (timers[i].fn == fn && timers[i].arg == arg) {
			timers[i] = timers[--ntimers];
			return;
		}
	}
}

/* event_run_timers - call every timer that is due, each at most once */
static void
event_run_timers(void)
{
	int64_t now = stream_now_ms();
	event_timer_fn fn;
	size_t i;
	void *arg;

	for (i = 0; i < ntimers;) {
		if (timers[i].when <= now) {
			fn = timers[i].fn;
			arg = timers[i].arg;
			timers[i] = timers[--ntimers];
			fn(arg);
			i = 0; /* the callback may have changed the array */
			now = stream_now_ms();
			continue;
		}
		i++;
	}
}

void
event_run(int max_ms)
{
	struct epoll_event evs[64];
	int64_t now, next = -1;
	int i, n, wait_ms;
	size_t t;

	event_init();
	now = stream_now_ms();
	for (t = 0; t < ntimers; t++)
		if (next < 0 || timers[t].when < next)
			next = timers[t].when;
	wait_ms = max_ms;
	if (next >= 0) {
		int64_t d = next - now;

		if (d < 0)
			d = 0;
		if (wait_ms < 0 || d < wait_ms)
			wait_ms = d > 86400000 ? 86400000 : (int)d;
	}
	n = epoll_wait(epfd, evs, (int)(sizeof(evs) / sizeof(evs[0])), wait_ms);
	if (n < 0 && errno != EINTR)
		log_fatal("epoll_wait: %m");
	for (i = 0; i < n; i++) {
		int fd = evs[i].data.fd, ev = 0;
		struct event_fd *e;

		if (evs[i].events & (EPOLLERR | EPOLLHUP))
			ev |= EVENT_ERROR;
		if ((size_t)fd >= nfds)
			continue;
		e = &fds[fd];
		if ((evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && e->rfn)
			e->rfn(fd, EVENT_READ | ev, e->rarg);
		if ((size_t)fd >= nfds)
			continue;
		e = &fds[fd];
		if ((evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && e->wfn)
			e->wfn(fd, EVENT_WRITE | ev, e->warg);
	}
	event_run_timers();
}
