/*
 * flow - the in-flow regulator (flow.h).
 *
 * The page holds the backlog, written by qmgr only and read by everybody
 * else; it is a hint, so relaxed atomics are enough.  The trigger flag
 * orders file commits against qmgr's directory reads: sequentially
 * consistent exchange and store.  Every child maps
 * it lazily on first use; a process without the descriptor (started by
 * hand, in a test) simply never waits.  A stale value (qmgr died with a
 * large backlog) costs at most in_flow_delay per message until the next
 * qmgr publishes its own.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "flow.h"
#include "log.h"
#include "master_proto.h"

#define FLOW_PAGE   4096
#define FLOW_NAP_MS 10

struct flow_page {
	_Atomic unsigned backlog;
	_Atomic unsigned trigger; /* 1: a trigger for incoming/ is on its way to qmgr */
	struct flow_pool pool;    /* qpool.c */
};

static struct flow_page *page;
static bool tried;
static bool writable;

int
flow_create(void)
{
	int fd;

	if ((fd = memfd_create("flow", MFD_CLOEXEC | MFD_ALLOW_SEALING)) < 0)
		return -1;
	if (ftruncate(fd, FLOW_PAGE) < 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* flow_map - the shared page, or NULL when this process has none */
static struct flow_page *
flow_map(void)
{
	struct stat st;
	void *p;
	int fl;

	if (tried)
		return page;
	tried = true;
	if (fstat(MASTER_FLOW_FD, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size < FLOW_PAGE ||
	    (fl = fcntl(MASTER_FLOW_FD, F_GETFL)) < 0)
		return NULL;
	writable = (fl & O_ACCMODE) == O_RDWR;
	p = mmap(NULL, FLOW_PAGE, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, MASTER_FLOW_FD, 0);
	if (p == MAP_FAILED) {
		log_warn("flow: mmap: %m");
		return NULL;
	}
	page = p;
	return page;
}

void
flow_disable(void)
{
	tried = true;
	page = NULL;
}

void
flow_read_only(void)
{
	char path[64];
	int fd;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", MASTER_FLOW_FD);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		(void)close(MASTER_FLOW_FD); /* no page (or no /proc): this process never waits */
		return;
	}
	if (dup2(fd, MASTER_FLOW_FD) < 0)
		(void)close(MASTER_FLOW_FD);
	(void)close(fd);
}

void
flow_publish(unsigned backlog)
{
	struct flow_page *f = flow_map();

	if (f != NULL && writable)
		atomic_store_explicit(&f->backlog, backlog, memory_order_relaxed);
}

unsigned
flow_backlog(void)
{
	struct flow_page *f = flow_map();

	return f ? atomic_load_explicit(&f->backlog, memory_order_relaxed) : 0;
}

bool
flow_trigger_claim(void)
{
	struct flow_page *f = flow_map();

	return f == NULL || !writable || atomic_exchange(&f->trigger, 1u) == 0;
}

void
flow_trigger_reset(void)
{
	struct flow_page *f = flow_map();

	if (f != NULL && writable)
		atomic_store(&f->trigger, 0u);
}

struct flow_pool *
flow_pool(void)
{
	struct flow_page *f = flow_map();

	return f != NULL && writable ? &f->pool : NULL;
}

int
flow_wait(int max_ms)
{
	struct timespec nap = { 0, FLOW_NAP_MS * 1000000L };
	int waited = 0;

	while (waited < max_ms && flow_backlog() > FLOW_BACKLOG_LIMIT) {
		(void)nanosleep(&nap, NULL);
		waited += FLOW_NAP_MS;
	}
	return waited;
}
