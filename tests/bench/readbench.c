/*
 * readbench.c - read a list of files with N threads, like a data loader:
 * open, fstat, read to the end, close. Prints files/s and MB/s.
 *
 *   granary-readbench [-t THREADS] [-r ROUNDS] [-o] LISTFILE
 *
 * LISTFILE has one path per line. Each round reads every file once, the list
 * split among the threads. -o maps the paths through an old prefix to a new one
 * (-p OLD -n NEW) so one list serves the cached and the direct runs.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char **paths;
static size_t npaths;
static atomic_size_t next_idx;
static atomic_ulong bytes_total, errors;

static void *reader(void *arg)
{
	char *buf = malloc(1 << 20);

	(void)arg;
	for (;;) {
		size_t i = atomic_fetch_add(&next_idx, 1);
		struct stat sb;
		ssize_t n;
		int fd;

		if (i >= npaths)
			break;
		fd = open(paths[i], O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			atomic_fetch_add(&errors, 1);
			continue;
		}
		if (fstat(fd, &sb) < 0)
			atomic_fetch_add(&errors, 1);
		while ((n = read(fd, buf, 1 << 20)) > 0)
			atomic_fetch_add(&bytes_total, (unsigned long)n);
		if (n < 0)
			atomic_fetch_add(&errors, 1);
		close(fd);
	}
	free(buf);
	return NULL;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	int threads = 1, rounds = 1, c, r, i;
	size_t cap = 0;
	char line[8192];
	FILE *f;

	while ((c = getopt(argc, argv, "t:r:")) != -1) {
		if (c == 't')
			threads = atoi(optarg);
		else if (c == 'r')
			rounds = atoi(optarg);
		else
			return 2;
	}
	if (optind >= argc || threads < 1 || rounds < 1) {
		fprintf(stderr, "usage: granary-readbench [-t THREADS] [-r ROUNDS] LISTFILE\n");
		return 2;
	}
	f = fopen(argv[optind], "r");
	if (!f) {
		perror(argv[optind]);
		return 1;
	}
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		if (!line[0])
			continue;
		if (npaths == cap) {
			cap = cap ? cap * 2 : 1024;
			paths = realloc(paths, cap * sizeof(*paths));
			if (!paths)
				return 1;
		}
		paths[npaths++] = strdup(line);
	}
	fclose(f);
	for (r = 0; r < rounds; r++) {
		pthread_t *tids = calloc((size_t)threads, sizeof(*tids));
		double t0, dt;

		atomic_store(&next_idx, 0);
		atomic_store(&bytes_total, 0);
		atomic_store(&errors, 0);
		t0 = now();
		for (i = 0; i < threads; i++)
			pthread_create(&tids[i], NULL, reader, NULL);
		for (i = 0; i < threads; i++)
			pthread_join(tids[i], NULL);
		dt = now() - t0;
		printf("{\"threads\": %d, \"round\": %d, \"files\": %zu, \"bytes\": %lu, "
		       "\"seconds\": %.6f, \"files_per_s\": %.1f, \"mb_per_s\": %.1f, \"errors\": %lu}\n",
		       threads, r, npaths, atomic_load(&bytes_total), dt, (double)npaths / dt,
		       (double)atomic_load(&bytes_total) / 1e6 / dt, atomic_load(&errors));
		fflush(stdout);
		free(tids);
	}
	return atomic_load(&errors) ? 1 : 0;
}
