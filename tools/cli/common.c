/*
 * common.c - what the subcommands of `shmring` share: error lines naming the ring and
 * its cause, read-only attachment, the output path, strict option values, JSON output.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

const char *cli_cause(int err)
{
	switch (err) {
	case -ENOENT: return "not found";
	case -EACCES:
	case -EPERM: return "permission denied";
	case -EPROTO: return "not a shmring ring (wrong layout or corrupt)";
	case -ENOSPC: return "its pages cannot be had: /dev/shm is full";
	case -EINVAL: return "invalid ring name (1 to 200 of [A-Za-z0-9._-], one leading '/' allowed)";
	default: return strerror(-err);
	}
}

void cli_ring_err(const char *name, int err)
{
	fprintf(stderr, "shmring: ring %s: %s\n", name, cli_cause(err));
}

void cli_ring_msg(const char *name, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "shmring: ring %s: ", name);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

int cli_map(const char *name, struct shm_map *m)
{
	int rc = shm_map_open(name, NULL, SHM_INSPECT, m);
	if (rc)
		cli_ring_err(name, rc);
	return rc;
}

void cli_out_path(const struct shm_map *m, char *buf, size_t size)
{
	static char tmp[SHM_PATH_MAX];
	buf[0] = 0;
	if (shm_path_read(m->hdr, tmp) == 0)
		snprintf(buf, size, "%s", tmp);
}

const char *cli_prog = "shmring";

int cli_opt_uint(const char *opt, const char *arg, uint64_t min, uint64_t max, uint64_t *out)
{
	char why[512];
	if (shm_opt_uint(arg, min, max, out, why, sizeof(why)) == 0)
		return 0;
	fprintf(stderr, "%s: %s: %s (see %s --help)\n", cli_prog, opt, why, cli_prog);
	return -1;
}

int cli_opt_seconds(const char *opt, const char *arg, double min, double max, double *out)
{
	char why[512];
	if (shm_opt_seconds(arg, min, max, out, why, sizeof(why)) == 0)
		return 0;
	fprintf(stderr, "%s: %s: %s (see %s --help)\n", cli_prog, opt, why, cli_prog);
	return -1;
}


int cli_print_json(json_t *v)
{
	if (!v) {
		fprintf(stderr, "shmring: out of memory\n");
		return CLI_ERR;
	}
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(v);
	if (!s) {
		fprintf(stderr, "shmring: out of memory\n");
		return CLI_ERR;
	}
	puts(s);
	free(s);
	return CLI_OK;
}

volatile sig_atomic_t cli_stop;

void cli_on_stop(int sig)
{
	(void)sig;
	cli_stop = 1;
}

double cli_mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void cli_sleep_s(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
	nanosleep(&ts, NULL); /* a signal ends it early: the loop checks cli_stop */
}
