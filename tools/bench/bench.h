/*
 * bench.h - what the parts of shmring-bench share: the clock (rdtsc calibrated against
 * CLOCK_MONOTONIC), the log-bucket latency histogram, the compaction-record pool, the
 * per-process results that travel back through shared memory, and the peers.
 */
#ifndef SHMRING_BENCH_H
#define SHMRING_BENCH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <msgpack.h>

#include "shmring/audit.h"

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define BENCH_TSC 1
#endif

/* ---- clocks ------------------------------------------------------------------------- */

static inline uint64_t bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Ticks of the sampling clock: the TSC where there is one (the fences keep the call
 * being timed between the two reads), else CLOCK_MONOTONIC nanoseconds. */
static inline uint64_t tick_start(void)
{
#ifdef BENCH_TSC
	_mm_lfence();
	uint64_t t = __rdtsc();
	_mm_lfence();
	return t;
#else
	return bench_now_ns();
#endif
}

static inline uint64_t tick_end(void)
{
#ifdef BENCH_TSC
	unsigned aux;
	uint64_t t = __rdtscp(&aux);
	_mm_lfence();
	return t;
#else
	return bench_now_ns();
#endif
}

extern double bench_ns_per_tick; /* set once by bench_clock_calibrate(), before any fork */
void bench_clock_calibrate(void);

/* ---- histogram: 16 sub-buckets per power of two, in ticks ------------------------------ */

#define HIST_SUB_BITS 4
#define HIST_SUB      (1u << HIST_SUB_BITS)
#define HIST_BUCKETS  ((64 - HIST_SUB_BITS + 1) * HIST_SUB)

struct hist {
	uint64_t n;
	uint64_t max;
	uint64_t b[HIST_BUCKETS];
};

static inline unsigned hist_index(uint64_t v)
{
	if (v < HIST_SUB)
		return (unsigned)v;
	unsigned e = 63u - (unsigned)__builtin_clzll(v); /* e >= HIST_SUB_BITS */
	return (e - HIST_SUB_BITS + 1) * HIST_SUB + (unsigned)((v >> (e - HIST_SUB_BITS)) & (HIST_SUB - 1));
}

static inline void hist_add(struct hist *h, uint64_t v)
{
	h->b[hist_index(v)]++;
	h->n++;
	if (v > h->max)
		h->max = v;
}

void hist_merge(struct hist *into, const struct hist *from);
/* The q-quantile (0..1) in ns: the upper edge of its bucket (at most 1/16 high). */
double hist_quantile_ns(const struct hist *h, double q);

/* ---- records ------------------------------------------------------------------------ */

#define POOL_SIZE 256 /* distinct records per producer; one in ten has a violation */

struct rec_strings {
	char ts[32], turn_id[48], page_id[64], origin_value[64];
};

struct pool {
	struct shmring_compacted_page_record rec[POOL_SIZE];
	struct rec_strings str[POOL_SIZE];
	uint8_t *mp[POOL_SIZE];   /* pre-encoded msgpack (transport mode) */
	uint32_t mp_len[POOL_SIZE];
	size_t mp_total;
};

/* Build producer `who`'s records; fixed timestamps (pipeline mode sends with ts = NULL). */
int pool_build(struct pool *p, int who);
void pool_free(struct pool *p);
/* Replace the pre-encoded records with generic ones of exactly `bytes` bytes of msgpack,
 * {"seq": i % 128, "pad": "..."} (11..65535 bytes), for the record-size sweep. */
int pool_fixed_size(struct pool *p, uint32_t bytes);
/* The "pad" string's length in such a record of `bytes` bytes (the checker's twin). */
uint32_t pool_fixed_pad(uint32_t bytes);
/* Replace the pre-encoded records with float-heavy ones: a map of 16 doubles
 * {"f0": d, ..., "f15": d}, 8 short decimals (0.25, 1e-7, ...) and 8 with 15-17
 * significant digits (1/3, ...), varying with the record: 0 or -ENOMEM. */
#define REC_FLOATS 1u /* run_cfg.rec_bytes: float-heavy records (generic ones are >= 11 B) */
#define FLOAT_KEYS 16
int pool_floats(struct pool *p);

/* A msgpack_packer writing into a fixed buffer. */
struct fixbuf {
	uint8_t *p;
	size_t used, cap;
};
int fixbuf_write(void *data, const char *buf, size_t len);

/* Build the record for sequence number i (pipeline mode): the pool's strings, ts = NULL
 * (now), counts that change per record. build_and_pack also packs it with the typed API
 * into fb: 0 or <0. */
static inline void build_record(const struct pool *pl, uint64_t i,
				struct shmring_compacted_page_record *rec)
{
	*rec = pl->rec[i % POOL_SIZE];
	rec->ts = NULL;
	rec->original_tokens = 1000u + (uint32_t)(i % 180000u);
	rec->compacted_tokens = rec->original_tokens / 4u;
}

static inline int build_and_pack(const struct pool *pl, uint64_t i, struct fixbuf *fb)
{
	struct shmring_compacted_page_record rec;
	msgpack_packer pk;
	build_record(pl, i, &rec);
	fb->used = 0;
	msgpack_packer_init(&pk, fb, fixbuf_write);
	return shmring_audit_pack(&pk, &rec);
}

/* ---- configuration and results ------------------------------------------------------ */

enum peer { PEER_SHMRING, PEER_PIPE, PEER_MQ, PEER_DGRAM, PEER_FILE, PEER_ZMQ, PEER_N };
extern const char *const peer_names[PEER_N];
enum mode { MODE_TRANSPORT, MODE_PIPELINE };

#define MAXP 64

struct run_cfg {
	enum peer peer;
	enum mode mode;
	bool blocking;
	int P;
	uint64_t M;             /* measured records per producer */
	uint64_t warm;          /* warm-up records per producer, before the start barrier */
	size_t batch_bytes;     /* consumer write(2) size */
	char dir[256];          /* temp dir on the local disk */
	char out[320];          /* output file */
	char chan[320];         /* channel name or path (mq name, socket path, ring name) */
	uint32_t mq_depth;      /* what the peer was given (reported) */
	uint32_t capacity;      /* shmring: ring slots */
	int writer_nice;        /* shmring: nice value the writer runs at (0 = as we do) */
	uint64_t pace_ns;       /* 0: send as fast as possible; else one send per pace_ns */
	uint32_t slot_size;     /* shmring: bytes per slot (0: the default of the run) */
	uint32_t rec_bytes;     /* 0: compaction records; REC_FLOATS: float-heavy; else generic of this size */
	int pipe_bytes, sndbuf, zmq_hwm;
};

struct prod_result {
	uint64_t sent, dropped, errors;
	uint64_t cpu_ns;                 /* getrusage(SELF) over the measured window */
	uint64_t csw;                    /* context switches over the window */
	uint64_t runq_ns;                /* time runnable but not running, over the window */
	uint64_t t_first, t_last;        /* CLOCK_MONOTONIC ns */
	struct hist lat;                 /* the sampled call (pipeline: build+encode+send) */
	struct hist lat_ok;              /* the same, only calls whose record was accepted */
	struct hist lat_enc;             /* pipeline: the build+encode part of it */
	int failed;
	char err[512];          /* room for a path of out/chan and strerror */
};

struct cons_result {
	_Atomic uint64_t progress;       /* lines written so far (parent waits for the warm-up) */
	uint64_t lines, invalid, writes, ends;
	uint64_t cpu_warm_ns, csw_warm;  /* at the write that completed the warm-up */
	uint64_t cpu_end_ns, csw_end;
	uint64_t runq_warm_ns, runq_end_ns;
	uint64_t t_end;
	int failed;
	char err[512];          /* room for a path of out/chan and strerror */
};

struct shared {
	struct cons_result cons;
	struct prod_result prod[MAXP];
};

/* Peers (bench_peers.c). Channel setup runs in the parent before any fork; the consumer
 * and producers run in their own processes and report through struct shared. */
int peer_available(enum peer p);
int chan_setup(struct run_cfg *c, int fds[2]);
void chan_teardown(struct run_cfg *c, int fds[2]);
void consumer_main(const struct run_cfg *c, int fds[2], struct shared *sh, int ready_fd);
void producer_main(const struct run_cfg *c, int fds[2], struct shared *sh, int who, int ready_fd,
		   int start_fd);

/* The writer's batched output, also used by the peers' consumers. */
struct outbuf {
	int fd;
	char *buf;
	size_t used, cap, batch;
	uint64_t lines, pending, invalid, writes;
	uint64_t warm_lines;
	struct cons_result *res;
};
int outbuf_init(struct outbuf *o, const char *path, size_t batch, uint64_t warm_lines,
		struct cons_result *res);
int outbuf_add(struct outbuf *o, const void *mp, size_t len);
int outbuf_commit(struct outbuf *o);
void outbuf_close(struct outbuf *o);

void self_cpu(uint64_t *cpu_ns, uint64_t *csw);
/* Run-queue wait of a thread (/proc/.../schedstat, second field), ns; 0 if unknown. */
uint64_t runq_wait_ns(const char *schedstat_path);
int write_all(int fd, const void *p, size_t n);

/* Micro-benchmarks (bench_micro.c); each prints a markdown table to f and CSV rows. */
struct micro_env {
	const char *dir;
	const char *writer;
	int quick;
	FILE *md, *csv;
};
int micro_run(struct micro_env *e);
int micro_ir(long n); /* fixed-count loops for callgrind: send, pack, convert */

#endif
