/*
 * main.c - shmring-writer: command line, signals, then writer_run().
 *
 *   shmring-writer --ring NAME --out PATH [--capacity N] [--slot-size B]
 *                  [--stall-timeout MS] [--batch-bytes B] [--exit-when-idle S]
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
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
		"      --mark-losses        before the first line after records were lost, write\n"
		"                           {\"shmring_lost\":{\"dropped_full\":N,\"dropped_oversize\":N,\"abandoned\":N},\"ts\":T}\n"
		"  -h, --help               this text\n\n"
		"SIGTERM/SIGINT: write everything already in the ring, then exit 0; while PATH\n"
		"cannot be written (full disk, I/O error, file size limit), exit 1 within a second,\n"
		"leaving what was not written in the ring for the next writer.\n"
		"SIGHUP: reopen PATH (after logrotate renamed it). PATH removed or replaced is also\n"
		"noticed before each batch, and opened anew.\n"
		"A failing write or open is retried every second; `shmring stat` shows the error.\n"
		"Exit status: 0 ok, 1 error, 2 usage, 3 another live writer serves the ring, 4 ring damaged.\n");
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || !*s || *end || s[0] == '-')
		return -1;
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "ring", required_argument, 0, 'r' },      { "out", required_argument, 0, 'o' },
		{ "capacity", required_argument, 0, 'c' },  { "slot-size", required_argument, 0, 's' },
		{ "stall-timeout", required_argument, 0, 'T' }, { "batch-bytes", required_argument, 0, 'B' },
		{ "exit-when-idle", required_argument, 0, 'I' }, { "help", no_argument, 0, 'h' },
		{ "mark-losses", no_argument, 0, 'L' },   { "fsync", required_argument, 0, 'F' },
		{ "max-bytes", required_argument, 0, 'M' }, { "keep", required_argument, 0, 'K' },
		{ "detach", no_argument, 0, 'D' },        { "pid-file", required_argument, 0, 'P' },
		{ 0, 0, 0, 0 },
	};
	struct writer_opts o = { .stall_ns = 1000000000ull, .batch_bytes = 1 << 20, .keep = 5, .ready_fd = -1 };
	int want_detach = 0;
	int c;
	uint64_t v;
	while ((c = getopt_long(argc, argv, "r:o:c:s:h", lo, NULL)) != -1) {
		switch (c) {
		case 'r': o.ring = optarg; break;
		case 'o': o.out = optarg; break;
		case 'c':
		case 's':
		case 'T':
		case 'B':
		case 'I':
			if (parse_u64(optarg, &v) || v > UINT32_MAX * 1000ull) {
				fprintf(stderr, "shmring-writer: bad number for --%s: %s\n",
					c == 'c' ? "capacity" : c == 's' ? "slot-size" : c == 'T' ? "stall-timeout" :
					c == 'B' ? "batch-bytes" : "exit-when-idle", optarg);
				return WEXIT_USAGE;
			}
			if (c == 'c') o.ring_opts.capacity = (uint32_t)v;
			if (c == 's') o.ring_opts.slot_size = (uint32_t)v;
			if (c == 'T') o.stall_ns = v * 1000000ull;
			if (c == 'B') o.batch_bytes = v < 65536 ? 65536 : v;
			if (c == 'I') o.idle_exit_ns = v * 1000000000ull;
			break;
		case 'L': o.mark_losses = 1; break;
		case 'D': want_detach = 1; break;
		case 'P': o.pid_file = optarg; break;
		case 'F':
			if (!strcmp(optarg, "never")) o.fsync = FSYNC_NEVER;
			else if (!strcmp(optarg, "flush")) o.fsync = FSYNC_FLUSH;
			else if (!strcmp(optarg, "always")) o.fsync = FSYNC_ALWAYS;
			else {
				fprintf(stderr, "shmring-writer: --fsync takes never, flush or always\n");
				return WEXIT_USAGE;
			}
			break;
		case 'M':
		case 'K':
			if (parse_u64(optarg, &v) || (c == 'K' && (v < 1 || v > 1000))) {
				fprintf(stderr, "shmring-writer: bad number for --%s: %s\n",
					c == 'M' ? "max-bytes" : "keep", optarg);
				return WEXIT_USAGE;
			}
			if (c == 'M') o.max_bytes = v;
			else o.keep = (unsigned)v;
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return WEXIT_USAGE;
		}
	}
	if (!o.ring || !o.out || optind != argc) {
		usage(stderr);
		return WEXIT_USAGE;
	}
	struct sigaction sa = { .sa_handler = on_stop };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL); /* no SA_RESTART: the idle wait must return */
	sigaction(SIGINT, &sa, NULL);
	struct sigaction hup = { .sa_handler = on_hup };
	sigemptyset(&hup.sa_mask);
	sigaction(SIGHUP, &hup, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (o.max_bytes && strcmp(o.out, "-") == 0) {
		fprintf(stderr, "shmring-writer: --max-bytes needs a file, not stdout\n");
		return WEXIT_USAGE;
	}
	if (o.batch_bytes > (2u << 20))
		/* Measured (docs/bench/README.md): 4 and 16 MiB batches made the writer 2.3x
		 * slower per record than 1 MiB; the batch no longer fits in L2. */
		fprintf(stderr, "shmring-writer: warning: --batch-bytes above 2 MiB is slower, not "
				"faster (the batch leaves the CPU cache); 1 MiB is the default\n");
	if (want_detach && detach(&o) < 0) {
		perror("shmring-writer: --detach");
		return WEXIT_ERROR;
	}
	return writer_run(&o);
}
