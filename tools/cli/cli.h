/*
 * cli.h - what the subcommands of the `shmring` program share: exit codes, error lines
 * that name the ring and the cause, read-only attachment (never creating a ring) and
 * the seqlocked output path.
 */
#ifndef SHMRING_CLI_H
#define SHMRING_CLI_H

/* What every subcommand uses: printing, JSON, the stop flag of its signal handler. */
#include <jansson.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>

#include "internal.h"

enum { CLI_OK = 0, CLI_ERR = 1, CLI_USAGE = 2, CLI_NOWRITER = 3, CLI_TIMEOUT = 4, CLI_OUTPUT = 5 };

/* "shmring: ring NAME: <cause of -err>" on stderr. */
void cli_ring_err(const char *name, int err);
/* "shmring: ring NAME: <printf text>" on stderr. */
void cli_ring_msg(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The cause text cli_ring_err prints. */
const char *cli_cause(int err);

/* Map ring NAME read-only (SHM_INSPECT): never created, no producer entry taken. Prints the
 * error and returns it (negative errno), or 0. */
int cli_map(const char *name, struct shm_map *m);

/* Copy the writer's output path (seqlock over hdr->out_path) into buf; "" when no writer
 * ever served the ring or the path could not be read consistently. */
void cli_out_path(const struct shm_map *m, char *buf, size_t size);

/* "shmring" or "shmring COMMAND": what messages start with. */
extern const char *cli_prog;
/* Option values (strict: libshm/optparse.c). 0, or -1 after one line on stderr that names
 * the option and says what is wrong; the caller exits CLI_USAGE. */
int cli_opt_uint(const char *opt, const char *arg, uint64_t min, uint64_t max, uint64_t *out);
int cli_opt_seconds(const char *opt, const char *arg, double min, double max, double *out);

/* JSON output: v printed compactly on one line (and freed). CLI_OK, or CLI_ERR. */
int cli_print_json(json_t *v);
/* Set by SIGINT/SIGTERM while a command loops (stat --watch). */
extern volatile sig_atomic_t cli_stop;
void cli_on_stop(int sig);
/* CLOCK_MONOTONIC in seconds, and a sleep a signal may cut short. */
double cli_mono_s(void);
void cli_sleep_s(double s);

/* The commands, one file each (tools/cli/CMD.c), each with its usage text beside it. */
#define CLI_COMMAND(name) \
	int cmd_##name(int argc, char **argv); \
	void usage_##name(FILE *f)
CLI_COMMAND(ls);
CLI_COMMAND(stat);
CLI_COMMAND(peek);
CLI_COMMAND(send);
CLI_COMMAND(flush);
CLI_COMMAND(rm);
CLI_COMMAND(gc);
CLI_COMMAND(metrics);

#endif
