/*
 * gc.c - `shmring gc`: remove what dead processes left behind (libshm/gc.c decides).
 */
#include <getopt.h>
#include <string.h>

#include "cli.h"

void usage_gc(FILE *f)
{
	fprintf(f,
		"usage: shmring gc [--dry-run] [--min-age S]\n"
		"Remove what dead processes left in /dev/shm: flush semaphores whose producer is gone,\n"
		"and rings with no writer, no producer attached and nothing pending, older than S\n"
		"seconds (default 10). Liveness is the kernel-released lock of each process, so\n"
		"nothing of a live process is touched. Prints one line per object removed.\n\n"
		"  -n, --dry-run    only print what would be removed\n"
		"  -a, --min-age S  leave rings younger than S seconds (their creator may be starting);\n"
		"                   S is seconds, or a number with s, m, h or d (e.g. 90, 1.5m, 2h)\n"
		"  -h, --help       this text\n");
}

/* ---- gc ------------------------------------------------------------------------- */

static void gc_report(const char *kind, const char *name, void *ctx)
{
	printf("%s %s %s\n", *(int *)ctx ? "would remove" : "removed", kind, name);
}

int cmd_gc(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "dry-run", no_argument, 0, 'n' }, { "min-age", required_argument, 0, 'a' },
		{ "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
	};
	int dry = 0, c;
	double age = 10;
	while ((c = getopt_long(argc, argv, "na:h", lo, NULL)) != -1) {
		switch (c) {
		case 'n': dry = 1; break;
		case 'a':
			if (cli_opt_seconds("--min-age", optarg, 0, UINT32_MAX, &age))
				return CLI_USAGE;
			break;
		case 'h': usage_gc(stdout); return CLI_OK;
		default: usage_gc(stderr); return CLI_USAGE;
		}
	}
	if (optind != argc) {
		usage_gc(stderr);
		return CLI_USAGE;
	}
	int n = shm_gc(NULL, dry, (unsigned)age, gc_report, &dry);
	if (n < 0) {
		fprintf(stderr, "shmring: gc: %s\n", strerror(-n));
		return CLI_ERR;
	}
	return CLI_OK;
}
