/*
 * writer.h - the drain loop of shmring-writer: one process per ring that turns each
 * record into one JSON line appended to a file, in sequence order, in large writes.
 */
#ifndef SHMRING_WRITER_H
#define SHMRING_WRITER_H

#include <signal.h>
#include <stdint.h>

#include "internal.h"

struct writer_opts {
	const char *ring;
	const char *out;            /* path, or "-" for stdout */
	struct shmring_options ring_opts; /* .mode: --mode, 0 = the default 0600 */
	gid_t group;                /* --group: the ring's group; (gid_t)-1 = the writer's own */
	uint64_t stall_ns;          /* give up on a claimed slot after this long */
	size_t batch_bytes;         /* write(2) once this much is buffered */
	uint64_t idle_exit_ns;      /* exit after this long with no producer and nothing to do; 0 = never */
	int seq;                    /* --seq: "shmring_seq":POS first in every record's line */
	int mark_losses;            /* write a shmring_lost line before the next record after losses */
	enum { FSYNC_NEVER, FSYNC_FLUSH, FSYNC_ALWAYS } fsync;
	uint64_t max_bytes;         /* rotate before a batch would take the file past this; 0 = never */
	unsigned keep;              /* rotated files kept: PATH.1 .. PATH.keep */
	int ready_fd;               /* --detach: a byte is written here once serving; -1 = none */
	const char *metrics_file;   /* --metrics-file: rewritten every metrics_interval_ns; NULL = none */
	uint64_t metrics_interval_ns;
	const char *pid_file;       /* --pid-file: our pid, written once we serve; NULL = none */
};

/* Exit codes of shmring-writer. */
enum { WEXIT_OK = 0, WEXIT_ERROR = 1, WEXIT_USAGE = 2, WEXIT_BUSY = 3, WEXIT_DAMAGED = 4 };

extern volatile sig_atomic_t writer_stop;
extern volatile sig_atomic_t writer_hup;

int writer_run(const struct writer_opts *o);

/* Send state ("READY=1", "STOPPING=1", ...) to $NOTIFY_SOCKET if set (notify.c):
 * 0, or a negative errno (the writer logs it and goes on). */
int writer_notify(const char *state);

#endif
