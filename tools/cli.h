/*
 * cli.h - what the subcommands of the `shmring` program share: exit codes, error lines
 * that name the ring and the cause, read-only attachment (never creating a ring) and
 * the seqlocked output path.
 */
#ifndef SHMRING_CLI_H
#define SHMRING_CLI_H

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

/* Parse a non-negative decimal; -1 on garbage. */
int cli_parse_ulong(const char *s, unsigned long *out);

int cmd_peek(int argc, char **argv);
int cmd_send(int argc, char **argv);
void usage_peek(FILE *f);
void usage_send(FILE *f);

#endif
