/*
 * flush.c - `shmring flush`: the flush barrier from the shell, its outcome as the exit
 * status.
 */
#include <errno.h>
#include <getopt.h>
#include <string.h>

#include "cli.h"

void usage_flush(FILE *f)
{
	fprintf(f,
		"usage: shmring flush NAME\n"
		"Flush barrier: returns once every record accepted by ring NAME before it, from any\n"
		"process, has been written by the writer (bounded at %d ms).\n\n"
		"  -h, --help   this text\n\n"
		"Exit status: 0 flushed, 3 no live writer, 4 not confirmed in time (writer stopped\n"
		"or overloaded), 5 not confirmed in time while the writer reports that its output\n"
		"fails (full disk, I/O error, file size limit: the message says what; the records\n"
		"wait in the ring), 1 any other error.\n",
		SHMRING_FLUSH_TIMEOUT_MS);
}

/* ---- flush ---------------------------------------------------------------------- */

static void quiet_log(enum shmring_log_level level, const char *msg, void *ctx)
{
	(void)level, (void)msg, (void)ctx;
}

int cmd_flush(int argc, char **argv)
{
	static const struct option lo[] = { { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
	int c;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		if (c == 'h') {
			usage_flush(stdout);
			return CLI_OK;
		}
		usage_flush(stderr);
		return CLI_USAGE;
	}
	if (optind != argc - 1) {
		usage_flush(stderr);
		return CLI_USAGE;
	}
	const char *name = argv[optind];
	shmring *r;
	shmring_set_log(quiet_log, NULL);
	int rc = shmring_attach(name, &r);
	if (rc) {
		cli_ring_err(name, rc);
		return CLI_ERR;
	}
	rc = shmring_flush(r);
	char werr[SHM_PATH_MAX + 256] = "";
	if (rc == -EIO && shmring_writer_error(r, werr, sizeof(werr)) <= 0)
		snprintf(werr, sizeof(werr), "an error it no longer reports");
	shmring_close(r);
	switch (rc) {
	case 0: return CLI_OK;
	case -ENOTCONN:
		cli_ring_msg(name, "no live writer serves it");
		return CLI_NOWRITER;
	case -ETIMEDOUT:
		cli_ring_msg(name, "flush not confirmed within %d ms (writer stopped or busy)",
			     SHMRING_FLUSH_TIMEOUT_MS);
		return CLI_TIMEOUT;
	case -EIO:
		cli_ring_msg(name, "flush not confirmed within %d ms: the writer's output fails: %s",
			     SHMRING_FLUSH_TIMEOUT_MS, werr);
		return CLI_OUTPUT;
	default:
		cli_ring_msg(name, "flush failed: %s", strerror(-rc));
		return CLI_ERR;
	}
}
