/*
 * event - a small event loop: readiness callbacks on descriptors (epoll)
 * and one-shot timers.  One loop per process (the master, the SERVER_EVENT
 * skeleton, qmgr).  Callbacks may add and remove descriptors and timers,
 * including their own.
 */
#ifndef POSTERN_EVENT_H
#define POSTERN_EVENT_H

#include <stdint.h>

#define EVENT_READ  1
#define EVENT_WRITE 2
#define EVENT_ERROR 4 /* hang-up or error; delivered to the read and write callbacks */

typedef void (*event_fn)(int fd, int events, void *arg);
typedef void (*event_timer_fn)(void *arg);

/* Call fn when fd is readable (replaces an earlier read callback for fd). */
void event_enable_read(int fd, event_fn fn, void *arg);
void event_enable_write(int fd, event_fn fn, void *arg);
void event_disable_read(int fd);
void event_disable_write(int fd);
/* Forget fd entirely (call before closing it). */
void event_forget(int fd);

/* Call fn(arg) once, delay_ms from now; an existing fn/arg timer is moved. */
void event_timer_set(event_timer_fn fn, void *arg, int64_t delay_ms);
void event_timer_cancel(event_timer_fn fn, void *arg);

/* Wait at most max_ms (-1: until something happens), then run callbacks. */
void event_run(int max_ms);

#endif
