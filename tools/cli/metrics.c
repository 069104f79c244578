/*
 * metrics.c - `shmring metrics`: the counters of every ring (or the named ones) in
 * the Prometheus text format (libshm/metrics.c formats them).
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

void usage_metrics(FILE *f)
{
	fprintf(f,
		"usage: shmring metrics [NAME ...]\n"
		"Print the counters of rings NAME (default: every ring on this host) in the Prometheus\n"
		"text exposition format: every field of `shmring stat`, counters as shmring_*_total,\n"
		"gauges for capacity, pending, producers, writer liveness and the writer's output\n"
		"error (errno, operation, since), each with a ring=\"NAME\" label. Objects that are\n"
		"not readable rings are left out (a NAME given is an error). For node_exporter's\n"
		"textfile collector, shmring-writer --metrics-file keeps such a file up to date.\n\n"
		"  -h, --help   this text\n\n"
		"Exit status: 0 ok, 1 a NAME given could not be read (the others are printed).\n");
}

/* ---- metrics -------------------------------------------------------------------- */

struct metrics_ring {
	char name[SHM_NAME_MAX + 1];
	struct shmring_stats st;
};

/* Read ring name into *r; 0, or the error (printed when `loud`: a ring asked by name). */
static int metrics_read(const char *name, struct metrics_ring *r, int loud)
{
	struct shm_map m;
	int rc = shm_map_open(name, NULL, SHM_INSPECT, &m);
	if (!rc) {
		rc = shm_stats_read(&m, &r->st, -1);
		shm_map_close(&m);
	}
	if (rc && loud)
		cli_ring_err(name, rc);
	snprintf(r->name, sizeof(r->name), "%s", name[0] == '/' ? name + 1 : name);
	return rc;
}

static int metrics_cmp(const void *a, const void *b)
{
	return strcmp(((const struct metrics_ring *)a)->name, ((const struct metrics_ring *)b)->name);
}

int cmd_metrics(int argc, char **argv)
{
	static const struct option lo[] = { { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
	int c;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		if (c == 'h') {
			usage_metrics(stdout);
			return CLI_OK;
		}
		usage_metrics(stderr);
		return CLI_USAGE;
	}
	struct metrics_ring *rings = NULL;
	struct shm_metrics_ring *view = NULL;
	size_t n = 0, cap = 0;
	int rc = CLI_OK;
	DIR *d = NULL;
	const size_t plen = strlen(SHM_PREFIX);
	struct dirent *e = NULL;
	if (optind == argc && !(d = opendir(SHM_DIR))) {
		fprintf(stderr, "shmring: cannot list %s: %s\n", SHM_DIR, strerror(errno));
		return CLI_ERR;
	}
	for (int i = optind; d ? (e = readdir(d)) != NULL : i < argc; i++) {
		const char *name = d ? e->d_name + plen : argv[i];
		/* As ls: shmring.NAME regular files; semaphores are sem.shmring.* */
		if (d && (strncmp(e->d_name, SHM_PREFIX, plen) || !*name || strlen(name) > SHM_NAME_MAX ||
			  (e->d_type != DT_REG && e->d_type != DT_UNKNOWN)))
			continue;
		if (n == cap) {
			size_t nc = cap ? 2 * cap : 16;
			struct metrics_ring *nr = realloc(rings, nc * sizeof(*rings));
			if (!nr) {
				fprintf(stderr, "shmring: out of memory\n");
				rc = CLI_ERR;
				goto out;
			}
			rings = nr;
			cap = nc;
		}
		if (metrics_read(name, &rings[n], !d) == 0)
			n++;
		else if (!d)
			rc = CLI_ERR;
	}
	if (d)
		qsort(rings, n, sizeof(*rings), metrics_cmp);
	view = calloc(n ? n : 1, sizeof(*view));
	char *text = NULL;
	size_t len = 0;
	for (size_t i = 0; view && i < n; i++)
		view[i] = (struct shm_metrics_ring){ rings[i].name, &rings[i].st };
	if (!view || shm_metrics_text(view, n, &text, &len)) {
		fprintf(stderr, "shmring: out of memory\n");
		rc = CLI_ERR;
		goto out;
	}
	if (fwrite(text, 1, len, stdout) != len || fflush(stdout)) {
		fprintf(stderr, "shmring: metrics: %s\n", strerror(errno));
		rc = CLI_ERR;
	}
	free(text);
out:
	if (d)
		closedir(d);
	free(view);
	free(rings);
	return rc;
}
