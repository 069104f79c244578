/*
 * shmring - inspect and operate shmring rings from the shell, git style:
 *
 *   shmring ls [--json]                    every ring on this host
 *   shmring stat NAME [--json] [--watch [S]] [--count N]
 *   shmring peek NAME [-n N]               pending records as JSON lines, not consumed
 *   shmring send NAME [JSON ...]           JSON values (or stdin lines) as msgpack records
 *   shmring flush NAME                     the flush barrier: 0 ok, 3 no writer, 4 timeout,
 *                                          5 the writer's output fails
 *   shmring rm NAME [--force]              unlink a ring and its leftover semaphores
 *   shmring gc [--dry-run] [--min-age S]   remove what dead processes left behind
 *   shmring metrics [NAME ...]             counters in the Prometheus text format
 *
 * Commands that read a ring map it with SHM_INSPECT: read-only (O_RDONLY, PROT_READ), so
 * read permission suffices, they never create one, never take a producer entry and
 * change neither the ring's bytes nor its timestamps (gc ages a ring by its ctime).
 * Only send and flush attach as a producer (shmring_attach), as any producer would.
 *
 * main.c dispatches; each command lives in its own file with its usage text (ls.c,
 * stat.c, peek.c, send.c, flush.c, rm.c, gc.c, metrics.c), and common.c has what they
 * share.
 */
#include <string.h>
#include <unistd.h>

#include "cli.h"

static void usage_main(FILE *f)
{
	fprintf(f,
		"usage: shmring [--help] [--version] COMMAND [ARGS]\n"
		"Inspect and operate shmring rings (/dev/shm/shmring.NAME) from the shell.\n\n"
		"Commands:\n"
		"  ls [--json]                         list every ring on this host\n"
		"  stat NAME [--json] [--watch [S]]    counters of ring NAME, once or every S seconds\n"
		"  peek NAME [-n N]                    the next N pending records as JSON lines,\n"
		"                                      without consuming them\n"
		"  send NAME [JSON ...]                send JSON values (arguments, else stdin lines)\n"
		"  flush NAME                          wait until every record sent before is written\n"
		"  rm NAME [--force]                   remove ring NAME and its leftover semaphores\n"
		"  gc [--dry-run] [--min-age S]        remove flush semaphores and unused rings left\n"
		"                                      by dead processes\n"
		"  metrics [NAME ...]                  counters of every ring (or of NAMEs) in the\n"
		"                                      Prometheus text format\n"
		"  help [COMMAND]                      this text, or the usage of COMMAND\n\n"
		"`shmring COMMAND --help` prints the usage of COMMAND. Commands that read a ring never\n"
		"create it and never attach as a producer; ls, stat, peek and metrics open it\n"
		"read-only, so read permission is enough and the ring and its times stay unchanged.\n"
		"Numbers are decimal digits; durations S are seconds, or a number with s, m, h or d.\n\n"
		"Exit status: 0 ok, 1 error, 2 usage; flush: 3 no live writer, 4 timed out,\n"
		"5 the writer's output fails.\n");
}

/* ---- main ----------------------------------------------------------------------- */

static const struct cmd {
	const char *name;
	int (*run)(int, char **);
	void (*usage)(FILE *);
} cmds[] = {
	{ "ls", cmd_ls, usage_ls },       { "stat", cmd_stat, usage_stat },
	{ "peek", cmd_peek, usage_peek }, { "send", cmd_send, usage_send },
	{ "flush", cmd_flush, usage_flush }, { "rm", cmd_rm, usage_rm },
	{ "gc", cmd_gc, usage_gc },       { "metrics", cmd_metrics, usage_metrics },
};

static const struct cmd *find_cmd(const char *name)
{
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(cmds[i].name, name))
			return &cmds[i];
	return NULL;
}

/* A ring truncated under us turns the next read into SIGBUS: say so in one line. */
static void on_sigbus(int sig)
{
	static const char msg[] = "shmring: the ring's shm object was truncated while being read\n";
	(void)sig;
	(void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
	_exit(CLI_ERR);
}

int main(int argc, char **argv)
{
	signal(SIGBUS, on_sigbus);
	if (argc < 2) {
		usage_main(stderr);
		return CLI_USAGE;
	}
	const char *a = argv[1];
	if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
		usage_main(stdout);
		return CLI_OK;
	}
	if (!strcmp(a, "--version") || !strcmp(a, "-V")) {
		printf("shmring %d.%d.%d\n", SHMRING_VERSION_MAJOR, SHMRING_VERSION_MINOR,
		       SHMRING_VERSION_PATCH);
		return CLI_OK;
	}
	if (!strcmp(a, "help")) {
		/* "help --help" too: every command takes --help */
		if (argc == 2 || (argc == 3 && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h")))) {
			usage_main(stdout);
			return CLI_OK;
		}
		const struct cmd *c = find_cmd(argv[2]);
		if (!c || argc > 3) {
			fprintf(stderr, "shmring: no such command: %s\n", argv[2]);
			return CLI_USAGE;
		}
		c->usage(stdout);
		return CLI_OK;
	}
	const struct cmd *c = find_cmd(a);
	if (!c) {
		fprintf(stderr, "shmring: no such command: %s (see shmring --help)\n", a);
		return CLI_USAGE;
	}
	/* getopt's messages then say "shmring stat: ..." */
	static char prog[32];
	snprintf(prog, sizeof(prog), "shmring %s", c->name);
	argv[1] = prog;
	cli_prog = prog;
	return c->run(argc - 1, argv + 1);
}
