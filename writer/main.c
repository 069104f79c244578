/*
 * main.c - shmring-writer: command line, signals, then writer_run().
 *
 *   shmring-writer --ring NAME --out PATH [--capacity N] [--slot-size B]
 *                  [--stall-timeout MS] [--batch-bytes B] [--exit-when-idle S]
 *                  [--metrics-file PATH [--metrics-interval S]]
 *                  [--mode MODE] [--group GROUP] ...
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "writer.h"

static void on_stop(int sig)
{
	(void)sig;
	writer_stop++;
}

static void on_hup(int sig)
{
	(void)sig;
	writer_hup = 1;
}

/* --detach: run in the background, in our own session; the parent returns once the
 * writer serves (or with its failure status). */
static int detach(struct writer_opts *o)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid > 0) {
		close(p[1]);
		char c;
		ssize_t n = read(p[0], &c, 1);
		if (n == 1)
			_exit(0);
		int st;
		waitpid(pid, &st, 0);
		_exit(WIFEXITED(st) && WEXITSTATUS(st) ? WEXITSTATUS(st) : 1);
	}
	close(p[0]);
	setsid();
	int nul = open("/dev/null", O_RDWR);
	if (nul >= 0) {
		dup2(nul, STDIN_FILENO);
		if (strcmp(o->out, "-") != 0)
			dup2(nul, STDOUT_FILENO);
		if (nul > STDERR_FILENO)
			close(nul);
	}
	o->ready_fd = p[1];
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: shmring-writer --ring NAME --out PATH [options]\n"
		"Drain shmring ring NAME into PATH, one JSON line per record.\n\n"
		"  -r, --ring NAME          ring to serve (created if missing)\n"
		"  -o, --out PATH           file to append to (parents created, mode 0600); - for stdout\n"
		"  -c, --capacity N         slots, power of two, when creating the ring (default 4096)\n"
		"  -s, --slot-size B        bytes per slot, multiple of 64, when creating (default 1024)\n"
		"      --stall-timeout MS   revoke a claim not published after MS (default 1000)\n"
		"      --batch-bytes B      write(2) once B bytes of lines are buffered (default 1 MiB;\n"
		"                           above 2 MiB is slower: the batch leaves the CPU cache)\n"
		"      --exit-when-idle S   exit after S seconds with no producer attached and nothing to write\n"
		"      --fsync MODE         never (default: write(2) only), flush (fdatasync before a\n"
		"                           flush is confirmed) or always (after every batch)\n"
		"      --max-bytes N        rotate PATH -> PATH.1 -> ... before a batch would take it\n"
		"                           past N bytes (never splitting a line)\n"
		"      --keep K             rotated files kept, PATH.1 .. PATH.K (default 5)\n"
		"      --detach             run in the background (own session); return once serving\n"
		"      --pid-file PATH      write the serving writer's pid there\n"
		"      --metrics-file PATH  keep the ring's counters in PATH in the Prometheus text\n"
		"                           format (for node_exporter's textfile collector), rewritten\n"
		"                           atomically (PATH.tmp, then rename) every interval\n"
		"      --metrics-interval S seconds between rewrites (default 10; fractions and\n"
		"                           units s, m, h allowed)\n"
		"      --mode MODE          permissions of the ring and of its flush semaphores, octal\n"
		"                           (default 0600; 0660 lets the group send and flush)\n"
		"      --group GROUP        the ring's group (name or gid; the writer must be root or\n"
		"                           a member); producers give their flush semaphores this group\n"
		"      --mark-losses        before the first line after records were lost, write\n"
		"                           {\"shmring_lost\":{\"dropped_full\":N,\"dropped_oversize\":N,\"abandoned\":N},\"ts\":T}\n"
		"      --seq                begin every record's line with \"shmring_seq\":N, its ring\n"
		"                           position (unique, increasing): a key to drop duplicates by;\n"
		"                           a record that is not an object is written as\n"
		"                           {\"shmring_seq\":N,\"record\":VALUE}\n"
		"  -h, --help               this text\n"
		"  -V, --version            the version\n\n"
		"Numbers are decimal digits; durations S are seconds, or a number with s, m, h or d.\n"
		"SIGTERM/SIGINT: write everything already in the ring, then exit 0; while PATH\n"
		"cannot be written (full disk, I/O error, file size limit), exit 1 within a second,\n"
		"leaving what was not written in the ring for the next writer.\n"
		"NOTIFY_SOCKET (systemd Type=notify): READY=1 once serving, STOPPING=1 at SIGTERM.\n"
		"SIGHUP: reopen PATH (after logrotate renamed it). PATH removed or replaced is also\n"
		"noticed before each batch, and opened anew.\n"
		"A failing write or open is retried every second; `shmring stat` shows the error.\n"
		"Exit status: 0 ok, 1 error, 2 usage, 3 another live writer serves the ring, 4 ring damaged.\n");
}

/* One line naming what is wrong, never the whole usage: it would bury the line. */
static int __attribute__((format(printf, 1, 2))) usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "shmring-writer: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, " (try shmring-writer --help)\n");
	va_end(ap);
	return WEXIT_USAGE;
}

static int opt_uint(const char *opt, const char *arg, uint64_t min, uint64_t max, uint64_t *out)
{
	char why[512];
	if (shm_opt_uint(arg, min, max, out, why, sizeof(why)) == 0)
		return 0;
	usage_error("%s: %s", opt, why);
	return -1;
}

/* A group name, or a gid in decimal digits. */
static int opt_group(const char *arg, gid_t *out)
{
	char why[512];
	uint64_t v;
	if (arg[0] && strspn(arg, "0123456789") == strlen(arg)) {
		if (shm_opt_uint(arg, 0, (gid_t)-2, &v, why, sizeof(why)) == 0) {
			*out = (gid_t)v;
			return 0;
		}
		usage_error("--group: %s", why);
		return -1;
	}
	struct group gr, *g = NULL;
	char buf[16384];
	int e = getgrnam_r(arg, &gr, buf, sizeof(buf), &g);
	if (!g) {
		usage_error("--group: no group '%s'%s%s", arg, e ? ": " : "", e ? strerror(e) : "");
		return -1;
	}
	*out = g->gr_gid;
	return 0;
}

static int opt_seconds(const char *opt, const char *arg, double min, double max, double *out)
{
	char why[512];
	if (shm_opt_seconds(arg, min, max, out, why, sizeof(why)) == 0)
		return 0;
	usage_error("%s: %s", opt, why);
	return -1;
}

static const struct option long_opts[] = {
	{ "ring", required_argument, 0, 'r' },      { "out", required_argument, 0, 'o' },
	{ "capacity", required_argument, 0, 'c' },  { "slot-size", required_argument, 0, 's' },
	{ "stall-timeout", required_argument, 0, 'T' }, { "batch-bytes", required_argument, 0, 'B' },
	{ "exit-when-idle", required_argument, 0, 'I' }, { "help", no_argument, 0, 'h' },
	{ "mark-losses", no_argument, 0, 'L' },   { "fsync", required_argument, 0, 'F' },
	{ "max-bytes", required_argument, 0, 'M' }, { "keep", required_argument, 0, 'K' },
	{ "detach", no_argument, 0, 'D' },        { "pid-file", required_argument, 0, 'P' },
	{ "version", no_argument, 0, 'V' },       { "metrics-file", required_argument, 0, 'm' },
	{ "metrics-interval", required_argument, 0, 'i' },
	{ "mode", required_argument, 0, 'p' },    { "group", required_argument, 0, 'g' },
	{ "seq", no_argument, 0, 'S' },
	{ 0, 0, 0, 0 },
};

/* The geometry options: each must be valid alone (the pair is checked in check_opts). */
static int opt_geometry(int c, const char *arg, struct shmring_options *ro)
{
	uint64_t v;
	if (opt_uint(c == 'c' ? "--capacity" : "--slot-size", arg, 0, UINT32_MAX, &v))
		return WEXIT_USAGE;
	if (c == 'c') {
		if (v < SHM_CAP_MIN || v > SHM_CAP_MAX || (v & (v - 1)))
			return usage_error("--capacity %s: capacity must be a power of two (4 ... 1048576)", arg);
		ro->capacity = (uint32_t)v;
	} else {
		if (v < SHM_SLOT_MIN || v > SHM_SLOT_MAX || v % 64)
			return usage_error("--slot-size %s: slot size must be a multiple of 64 (64 ... 65536)",
					   arg);
		ro->slot_size = (uint32_t)v;
	}
	return -1;
}

/* One option into o. Returns -1 to go on, else the exit status (0 after --help). */
static int parse_opt(int c, char **argv, struct writer_opts *o, int *want_detach)
{
	uint64_t v;
	double sec;
	char why[512];
	switch (c) {
	case 'r': o->ring = optarg; break;
	case 'o': o->out = optarg; break;
	case 'c':
	case 's': return opt_geometry(c, optarg, &o->ring_opts);
	case 'T':
		if (opt_uint("--stall-timeout", optarg, 1, 3600000, &v))
			return WEXIT_USAGE;
		o->stall_ns = v * 1000000ull;
		break;
	case 'B':
		if (opt_uint("--batch-bytes", optarg, 1, 1ull << 30, &v))
			return WEXIT_USAGE;
		o->batch_bytes = v < 65536 ? 65536 : v;
		break;
	case 'I':
		if (opt_seconds("--exit-when-idle", optarg, 0, 365 * 86400.0, &sec))
			return WEXIT_USAGE;
		o->idle_exit_ns = (uint64_t)(sec * 1e9);
		break;
	case 'L': o->mark_losses = 1; break;
	case 'S': o->seq = 1; break;
	case 'D': *want_detach = 1; break;
	case 'P': o->pid_file = optarg; break;
	case 'F':
		if (!strcmp(optarg, "never")) o->fsync = FSYNC_NEVER;
		else if (!strcmp(optarg, "flush")) o->fsync = FSYNC_FLUSH;
		else if (!strcmp(optarg, "always")) o->fsync = FSYNC_ALWAYS;
		else
			return usage_error("--fsync: takes never, flush or always, not '%s'", optarg);
		break;
	case 'M':
		if (opt_uint("--max-bytes", optarg, 1, UINT64_MAX, &v))
			return WEXIT_USAGE;
		o->max_bytes = v;
		break;
	case 'K':
		if (opt_uint("--keep", optarg, 1, 1000, &v))
			return WEXIT_USAGE;
		o->keep = (unsigned)v;
		break;
	case 'm': o->metrics_file = optarg; break;
	case 'p':
		if (shm_opt_mode(optarg, &o->ring_opts.mode, why, sizeof(why)))
			return usage_error("--mode: %s", why);
		break;
	case 'g':
		if (opt_group(optarg, &o->group))
			return WEXIT_USAGE;
		break;
	case 'i':
		if (opt_seconds("--metrics-interval", optarg, 0.01, 86400, &sec))
			return WEXIT_USAGE;
		o->metrics_interval_ns = (uint64_t)(sec * 1e9);
		break;
	case 'h': usage(stdout); return 0;
	case 'V':
		printf("shmring-writer %d.%d.%d\n", SHMRING_VERSION_MAJOR, SHMRING_VERSION_MINOR,
		       SHMRING_VERSION_PATCH);
		return 0;
	case ':':
		return usage_error("%s needs a value", argv[optind - 1]);
	default:
		if (optopt)
			return usage_error("unknown option '-%c'", optopt);
		return usage_error("unknown option '%s'", argv[optind - 1]);
	}
	return -1;
}

/* What the options say together. Returns -1 if they agree, else the exit status. */
static int check_opts(const struct writer_opts *o)
{
	if (!o->ring || !o->out)
		return usage_error("%s is required", !o->ring ? "--ring NAME" : "--out PATH");
	if (o->ring_opts.capacity || o->ring_opts.slot_size) {
		uint32_t cap = o->ring_opts.capacity ? o->ring_opts.capacity : SHMRING_DEFAULT_CAPACITY;
		uint32_t slot = o->ring_opts.slot_size ? o->ring_opts.slot_size : SHMRING_DEFAULT_SLOT_SIZE;
		struct shm_geom g;
		if (shm_geom_make(cap, slot, &g))
			return usage_error("capacity %u x slot size %u = %llu bytes: the data area must be "
					   "whole pages (a multiple of %u)", cap, slot,
					   (unsigned long long)cap * slot, SHM_PAGE);
	}
	if (o->max_bytes && strcmp(o->out, "-") == 0)
		return usage_error("--max-bytes needs a file, not stdout");
	if (o->batch_bytes > (2u << 20))
		/* Measured (docs/bench/README.md): 4 and 16 MiB batches made the writer 2.3x
		 * slower per record than 1 MiB; the batch no longer fits in L2. */
		fprintf(stderr, "shmring-writer: warning: --batch-bytes above 2 MiB is slower, not "
				"faster (the batch leaves the CPU cache); 1 MiB is the default\n");
	return -1;
}

static void set_signals(void)
{
	struct sigaction sa = { .sa_handler = on_stop };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL); /* no SA_RESTART: the idle wait must return */
	sigaction(SIGINT, &sa, NULL);
	struct sigaction hup = { .sa_handler = on_hup };
	sigemptyset(&hup.sa_mask);
	sigaction(SIGHUP, &hup, NULL);
	signal(SIGPIPE, SIG_IGN);
}

int main(int argc, char **argv)
{
	struct writer_opts o = { .stall_ns = 1000000000ull, .batch_bytes = 1 << 20, .keep = 5, .ready_fd = -1,
				 .metrics_interval_ns = 10000000000ull, .group = (gid_t)-1 };
	int want_detach = 0, c, rc;
	opterr = 0; /* its messages are ours, in one line */
	while ((c = getopt_long(argc, argv, ":r:o:c:s:hV", long_opts, NULL)) != -1)
		if ((rc = parse_opt(c, argv, &o, &want_detach)) >= 0)
			return rc;
	if (optind != argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if ((rc = check_opts(&o)) >= 0)
		return rc;
	set_signals();
	if (want_detach && detach(&o) < 0) {
		perror("shmring-writer: --detach");
		return WEXIT_ERROR;
	}
	return writer_run(&o);
}
