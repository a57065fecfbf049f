/*
 * fsync_limit - how many durable small-file commits the disk allows.
 *
 * Each thread repeats what a mail queue does for one message: create a
 * file, write 2 KiB, fsync() it, close it and rename() it to its final
 * name (over an older file, so the directory stays small).  Prints one
 * line per thread count: "threads=T ops=N seconds=S ops_per_s=R".
 *
 * Usage: fsync_limit DIR SECONDS THREADS...   (e.g. fsync_limit q 5 1 4 16)
 * Run by bench/run in the directory that holds the benchmark's queues.
 * Trusts its arguments (a benchmark tool, not a daemon).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PAYLOAD 2048
#define NAMES 64 /* final names per thread, reused round robin */

struct worker {
	const char *dir;
	int id;
	unsigned long ops;
};

static atomic_int stop;

/* now - monotonic seconds */
static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* worker_main - commit files until told to stop */
static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	char tmp[4096], dst[4096];
	unsigned char data[PAYLOAD];
	int fd;

	memset(data, 'x', sizeof(data));
	while (!atomic_load(&stop)) {
		snprintf(tmp, sizeof(tmp), "%s/t%d.tmp", w->dir, w->id);
		snprintf(dst, sizeof(dst), "%s/f%d.%lu", w->dir, w->id,
		    w->ops % NAMES);
		fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd < 0) {
			perror(tmp);
			exit(1);
		}
		if (write(fd, data, sizeof(data)) != (ssize_t)sizeof(data) ||
		    fsync(fd) != 0 || close(fd) != 0) {
			perror("write/fsync/close");
			exit(1);
		}
		if (rename(tmp, dst) != 0) {
			perror("rename");
			exit(1);
		}
		w->ops++;
	}
	return NULL;
}

/* run - one measurement with n threads for secs seconds */
static void
run(const char *dir, int n, double secs)
{
	pthread_t *tid = calloc(n, sizeof(*tid));
	struct worker *w = calloc(n, sizeof(*w));
	unsigned long total = 0;
	double t0, t1;
	char path[4096];
	int i, j;

	if (tid == NULL || w == NULL) {
		perror("calloc");
		exit(1);
	}
	atomic_store(&stop, 0);
	t0 = now();
	for (i = 0; i < n; i++) {
		w[i].dir = dir;
		w[i].id = i;
		if (pthread_create(&tid[i], NULL, worker_main, &w[i]) != 0) {
			fprintf(stderr, "pthread_create failed\n");
			exit(1);
		}
	}
	while (now() - t0 < secs)
		usleep(10000);
	atomic_store(&stop, 1);
	for (i = 0; i < n; i++) {
		pthread_join(tid[i], NULL);
		total += w[i].ops;
	}
	t1 = now();
	printf("threads=%d ops=%lu seconds=%.3f ops_per_s=%.1f\n", n, total,
	    t1 - t0, total / (t1 - t0));
	fflush(stdout);
	for (i = 0; i < n; i++)
		for (j = 0; j < NAMES; j++) {
			snprintf(path, sizeof(path), "%s/f%d.%d", dir, i, j);
			(void)unlink(path);
		}
	free(tid);
	free(w);
}

int
main(int argc, char **argv)
{
	double secs;
	int i, n;

	if (argc < 4) {
		fprintf(stderr, "usage: fsync_limit DIR SECONDS THREADS...\n");
		return 2;
	}
	secs = atof(argv[2]);
	if (secs <= 0) {
		fprintf(stderr, "fsync_limit: bad seconds\n");
		return 2;
	}
	for (i = 3; i < argc; i++) {
		n = atoi(argv[i]);
		if (n < 1 || n > 1024) {
			fprintf(stderr, "fsync_limit: bad thread count\n");
			return 2;
		}
		run(argv[1], n, secs);
	}
	return 0;
}
