/*
 * shmring.h - carry msgpack audit records from many processes on one host into one
 * JSONL file, through a lock-free bounded ring in POSIX shared memory.
 *
 * Producers (any process, any thread, forked children too) call shmring_send(): it
 * claims slots with atomic sequence numbers, copies the record in and publishes it.
 * It never blocks: a full ring drops the record and counts it. One shmring-writer
 * process drains the ring in order and appends one JSON line per record.
 *
 * Every function returns 0 (or a count) on success and a negative errno on failure;
 * the errors each one can return are listed with it. See docs/DESIGN.md for the
 * protocol and README.md for the guarantees.
 */
#ifndef SHMRING_H
#define SHMRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SHMRING_VERSION_MAJOR 0
#define SHMRING_VERSION_MINOR 2
#define SHMRING_VERSION_PATCH 0

typedef struct shmring shmring;

struct shmring_options {      /* zero fields mean defaults */
	uint32_t capacity;    /* slots, power of two; default 4096 */
	uint32_t slot_size;   /* bytes per slot, multiple of 64; default 1024 */
	mode_t   mode;        /* permission bits; default 0600 */
};

#define SHMRING_DEFAULT_CAPACITY  4096u
#define SHMRING_DEFAULT_SLOT_SIZE 1024u
#define SHMRING_FLUSH_TIMEOUT_MS  100

/* Ring-wide figures, read from shared memory: any process sees the same. */
struct shmring_stats {
	uint32_t capacity;         /* slots */
	uint32_t slot_size;        /* bytes per slot */
	uint64_t max_record;       /* largest msgpack record accepted, bytes */
	uint64_t head;             /* slots below head are free again (writer) */
	uint64_t tail;             /* next slot position to claim (producers) */
	uint64_t pending;          /* records in the ring not yet written nor abandoned */
	uint64_t sent;             /* records sent that got an outcome: the sum below */
	uint64_t written;          /* records whose JSON line was written */
	uint64_t invalid;          /* of written: records written as a shmring_error line */
	uint64_t dropped_full;     /* records dropped because the ring was full */
	uint64_t dropped_oversize; /* records dropped because larger than max_record */
	uint64_t abandoned;        /* records whose producer died or stalled mid-send */
	uint64_t aborted;          /* reservations aborted (not in sent) */
	uint64_t flushes;          /* flush calls */
	uint64_t flushes_done;     /* flush sentinels the writer confirmed */
	uint64_t corrupt;          /* unreadable slot words the writer skipped */
	int32_t  writer_pid;       /* pid of shmring-writer (last one that served) */
	bool     writer_alive;     /* a writer holds the ring's writer lock now */
	uint32_t producers;        /* producer processes attached now */
	/* The writer's output error, as the serving writer (or the last one, if it stopped
	 * on it) recorded it; all 0 while its output works. See shmring_writer_error(). */
	int32_t  writer_errno;          /* errno of the failing operation; 0 = none */
	uint32_t writer_error_op;       /* enum shmring_writer_op */
	uint64_t writer_error_since_ns; /* CLOCK_REALTIME ns when it began failing so */
};

/* What the writer was doing to its output when it failed (writer_error_op). */
enum shmring_writer_op {
	SHMRING_WOP_NONE = 0,
	SHMRING_WOP_OPEN,     /* open(2) of the output path (at start, reopen, rotation) */
	SHMRING_WOP_WRITE,    /* write(2) of a batch: retried every second, nothing dropped */
	SHMRING_WOP_FSYNC,    /* fdatasync(2) of --fsync */
	SHMRING_WOP_ROTATE,   /* rename(2) of --max-bytes rotation (it goes on in the same file) */
};

/*
 * Attach to ring NAME, creating it from opts (NULL = defaults) if it does not exist.
 * NAME: [A-Za-z0-9._-], 1 to 200 characters, one leading '/' allowed. An existing ring
 * keeps its geometry (opts are ignored then).
 * Errors: -EINVAL bad name or option, -EPROTO the object is not a ring of this layout,
 * -EACCES permission denied, -ENOSPC /dev/shm cannot hold a new ring (nothing is left
 * behind), -ENOMEM, -EMFILE. A full producer table is not an error: the process shares
 * the overflow entry (see docs/DESIGN.md, caveats).
 */
int shmring_open(const char *name, const struct shmring_options *opts, shmring **out);

/* Like shmring_open but never creates: -ENOENT when the ring does not exist. */
int shmring_attach(const char *name, shmring **out);

/*
 * Send one msgpack-encoded record (len bytes). Never blocks, never allocates, no syscall
 * while the writer is awake and the ring has room. On a full ring it yields the CPU once
 * if a writer is running (awake, committed within 20 ms: it is behind and a yield lets
 * it make room), else returns at once. Errors: -EAGAIN ring full (dropped
 * and counted),
 * -EMSGSIZE larger than the ring's max record (dropped, counted separately),
 * -EINVAL bad arguments, -ECANCELED this call stalled past the writer's stall timeout
 * and its record was revoked (counted as abandoned).
 */
int shmring_send(shmring *r, const void *msgpack, size_t len);

/*
 * Barrier: returns 0 once every record accepted before it, from any process, has been
 * written by the writer (write(2) returned). Bounded at SHMRING_FLUSH_TIMEOUT_MS.
 * Errors: -ENOTCONN no live writer (answered at once), -ETIMEDOUT not confirmed in time,
 * -EIO not confirmed in time while the live writer reports that it cannot write or open
 * its output (full disk, I/O error, file size limit...: shmring_writer_error() says
 * what; the records stay in the ring), -ECANCELED the sentinel was revoked, -EINVAL,
 * -ENOMEM/-EMFILE (semaphore: records already sent are not at stake).
 */
int shmring_flush(shmring *r);

/* Ring-wide count of records dropped because the ring was full. */
uint64_t shmring_dropped_count(const shmring *r);

/* Fill *out with the ring-wide counters. Errors: -EINVAL. */
int shmring_stats(const shmring *r, struct shmring_stats *out);

/*
 * The counters of ring NAME without becoming its producer: the ring is mapped read-only
 * (O_RDONLY, PROT_READ) for the call, so read permission suffices and neither the ring's
 * bytes nor its timestamps change (a monitor polling it keeps `shmring gc` working).
 * Errors: -EINVAL bad name, -ENOENT, -EACCES, -EPROTO not a ring of this layout.
 */
int shmring_inspect(const char *name, struct shmring_stats *out);

/*
 * The writer's output error as one line, e.g. "write /var/log/a.jsonl: No space left on
 * device": the operation, the output path and strerror of the errno the writer recorded
 * (struct shmring_stats has them as numbers). Truncated to fit buf, always terminated.
 * Returns the length of the text in buf, 0 (and "") when the writer reports no error,
 * -EINVAL bad arguments, -EAGAIN the record could not be read consistently (a writer
 * killed while storing it; the next writer repairs it).
 */
int shmring_writer_error(const shmring *r, char *buf, size_t len);

/* The ring's name as given to open (without the leading '/'). */
const char *shmring_name(const shmring *r);

/* Detach; unlinks this process's flush semaphores. The ring itself stays. */
void shmring_close(shmring *r);

/* Remove ring NAME (its shm object). Errors: -EINVAL, -ENOENT, -EACCES. */
int shmring_unlink(const char *name);

/* Logging: the library prints nothing except through this callback. */
enum shmring_log_level { SHMRING_LOG_DEBUG, SHMRING_LOG_INFO, SHMRING_LOG_WARN, SHMRING_LOG_ERROR };
typedef void (*shmring_log_fn)(enum shmring_log_level level, const char *msg, void *ctx);
/*
 * Replace the log callback for the whole process (NULL restores the default, which
 * writes WARN and ERROR lines, "shmring: WARN ...", to stderr and ignores DEBUG and
 * INFO). A handle logs its first drop and then each power of two of its drop count
 * (WARN); an audit sink that starts a writer says so (INFO).
 */
void shmring_set_log(shmring_log_fn fn, void *ctx);

#ifdef __cplusplus
}
#endif
#endif
