/*
 * internal.h - what the library, the writer and the tools share beyond the public API:
 * the mapping of one ring, OFD-lock liveness, clocks and the log sink.
 */
#ifndef SHMRING_INTERNAL_H
#define SHMRING_INTERNAL_H

#include <stdint.h>
#include <time.h>

#include "layout.h"
#include "shmring.h"

#define SHM_EXPORT __attribute__((visibility("default")))

/* The public struct is ABI: a binary built against another size would read or write past
 * it. Change it only with the version (0.x: minor versions may break the ABI). */
static_assert(sizeof(struct shmring_stats) == 152, "struct shmring_stats changed size");
#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* One process's mapping of a ring: header + words, and the data area mapped twice. */
struct shm_map {
	int fd;                        /* O_CLOEXEC; its OFD carries this mapping's locks */
	struct shm_hdr *hdr;
	_Atomic uint64_t *words;
	uint8_t *data;                 /* data_size bytes, then the same bytes again */
	size_t front_len;              /* bytes mapped at hdr (header + words) */
	struct shm_geom g;
	int inspect;                   /* SHM_INSPECT: O_RDONLY, PROT_READ */
	char shm_name[SHM_NAME_MAX + 16];
};

/* SHM_INSPECT attaches read-only (O_RDONLY, PROT_READ, no populate): for tools that only
 * look, so that read permission suffices and the object's bytes and times stay as they
 * are. OFD lock queries (F_OFD_GETLK) work on it; taking a lock does not. */
enum { SHM_ATTACH = 0, SHM_CREATE = 1, SHM_INSPECT = 2 };
int  shm_map_open(const char *name, const struct shmring_options *opts, int create, struct shm_map *m);
void shm_map_close(struct shm_map *m);
int  shm_reopen_fd(struct shm_map *m);

int  shm_lock_try(int fd, off_t byte);   /* 0 acquired, -EAGAIN held elsewhere, <0 error */
int  shm_lock_held(int fd, off_t byte);  /* 1 held by another OFD, 0 free, <0 error */
void shm_lock_drop(int fd, off_t byte);

static inline uint64_t shm_lap(const struct shm_geom *g, uint64_t pos)
{
	return (pos >> g->cap_shift) & W_LAP_MASK;
}

/* Futex on a word in shared memory (process-shared: no FUTEX_PRIVATE). */
int  shm_futex_wait(_Atomic uint32_t *addr, uint32_t val, uint64_t timeout_ns);
void shm_futex_wake_all(_Atomic uint32_t *addr);

uint64_t shm_now_ns(void);             /* CLOCK_MONOTONIC */
static inline struct timespec shm_ns_to_ts(uint64_t ns)
{
	return (struct timespec){ (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) };
}
int      shm_mkdir_parents(const char *path);
void     shm_log(enum shmring_log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Ring-wide producer counters summed over the producer table. */
struct shm_psum { uint64_t dropped_full, dropped_oversize, aborted, flushes; uint32_t live; };
/* count_live: also count entries whose lock is held; self: our own entry index (our own
 * OFD lock never conflicts with us, so GETLK cannot see it), or -1. */
void shm_producer_sum(const struct shm_map *m, struct shm_psum *s, int count_live, int self);

int shm_stats_read(const struct shm_map *m, struct shmring_stats *st, int self);
/* Does a ring at rest keep the protocol's invariants? 0, or -EPROTO and why (valid.c). */
int shm_ring_valid(const struct shm_map *m, char *why, size_t len);
/* Records in the ring not yet counted by the writer: a walk of the words in [head, tail). */
uint64_t shm_pending_scan(const struct shm_map *m, uint64_t head, uint64_t tail);

/* The writer's output error (werr.c): a consistent copy of hdr->werr (-EAGAIN when a
 * writer died while storing it), the stats fields, the op's name, and the composed text
 * "OP PATH: strerror" (its length, 0 when there is no error, or -errno). */
struct shm_werr_view { uint32_t op; int32_t err; uint64_t since_ns; };
int  shm_werr_read(const struct shm_hdr *h, struct shm_werr_view *v);
void shm_werr_stats(const struct shm_hdr *h, struct shmring_stats *st);
const char *shm_werr_op_name(unsigned op);
int  shm_werr_text(const struct shm_hdr *h, char *buf, size_t len);

/* A handle's mapping, for library code layered on a handle (audit.c): the fd is this
 * process's own (re-opened after fork), or -1 if that failed. */
struct shm_map *shm_ring_map(shmring *r);

/*
 * Strict option values (optparse.c), for shmring and shmring-writer: 0, or -EINVAL (not
 * a number of that kind) / -ERANGE (outside [min, max]) with a one-line reason in why.
 * shm_opt_uint: decimal digits only. shm_opt_seconds: digits, an optional fraction and
 * an optional unit s, m, h or d, in seconds.
 */
int shm_opt_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out, char *why, size_t len);
int shm_opt_seconds(const char *s, double min, double max, double *out, char *why, size_t len);

/*
 * The Prometheus text exposition of rings' stats (metrics.c), family by family with a
 * ring="NAME" label, for `shmring metrics` and shmring-writer --metrics-file. *out is
 * malloc'ed (free it), *len its length. 0, or -ENOMEM.
 */
struct shm_metrics_ring { const char *name; const struct shmring_stats *st; };
int shm_metrics_text(const struct shm_metrics_ring *rings, size_t n, char **out, size_t *len);

/* Remove leftovers of dead processes (gc.c). */
int shm_gc(const char *ring, int dry_run, unsigned min_age_s,
	   void (*report)(const char *kind, const char *name, void *ctx), void *ctx);

/*
 * Test points: tests set shm_test_hook to stop or kill a producer at each instant of a
 * send (DESIGN §9 lists what each death leaves counted). They exist only in the testing
 * build (SHMRING_TESTING: the libshmring_testing library and shmring-writer-testing that
 * the tests link and run); in what is installed SHM_TEST_POINT is nothing.
 */
enum shm_test_point {
	SHM_TP_FILLED_HDR = 1, /* the record's header is in its slots (pos) */
	SHM_TP_HALF_COPY,      /* half its bytes are (pos) */
	SHM_TP_FLUSH_CLAIMED,  /* a flush sentinel is claimed and filled (pos) */
	SHM_TP_OFFER,          /* send entered: nothing checked, nothing counted */
	SHM_TP_CLAIM_LOOP,     /* top of each claim attempt (before C1) */
	SHM_TP_CLAIMED,        /* after C3, before C4 (pos) */
	SHM_TP_TAIL_MOVED,     /* after C4 (pos) */
	SHM_TP_COPIED,         /* the whole record is in its slots, before P1 (pos) */
	SHM_TP_PUBLISHED,      /* after P1, before P2 (pos) */
	SHM_TP_FULL,           /* the ring is full, before the drop is counted */
	SHM_TP_DROPPED,        /* after dropped_full was bumped */
	SHM_TP_WAIT,           /* send_wait: about to sleep on the futex for room */
	SHM_TP_OVERSIZE,       /* too large, before dropped_oversize is bumped */
	SHM_TP_YIELD,          /* a full-ring send is about to sched_yield() */
	SHM_TP_MAX
};
#ifdef SHMRING_TESTING
extern void (*shm_test_hook)(int point, uint64_t pos);
#define SHM_TEST_POINT(tp, pos) \
	do { if (unlikely(shm_test_hook)) shm_test_hook((tp), (pos)); } while (0)
#else
#define SHM_TEST_POINT(tp, pos) do { (void)(tp); (void)(pos); } while (0)
#endif

#endif
