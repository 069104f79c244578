/*
 * layout.h - the shared-memory layout of one shmring ring: the only struct that other
 * processes see. Fixed-width types, offsets instead of pointers, one cache line per
 * writer group. Every change to it bumps SHMRING_LAYOUT_VERSION; the fingerprint folds
 * in the layout facts (sizes, offsets, cache line, page size) so that two builds that
 * disagree on any of them refuse each other's rings with -EPROTO.
 *
 * The protocol that runs over it is described in docs/DESIGN.md; the slot word encoding
 * is here because both the library and the writer decode it.
 */
#ifndef SHMRING_LAYOUT_H
#define SHMRING_LAYOUT_H

#include <assert.h>
#include <semaphore.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SHM_MAGIC          0x31474e4952484d53ull /* "SMHRING1", stored last by the creator */
#define SHM_LAYOUT_VERSION 3u
#define SHM_CACHELINE      64
#define SHM_PAGE           4096u
#define SHM_DIR            "/dev/shm"          /* where glibc puts POSIX shm and semaphores */
#define SHM_PREFIX         "shmring."          /* /dev/shm/shmring.NAME */
#define SHM_SEM_TAG        ".f."               /* flush semaphores: /shmring.NAME.f.ENTRY.GEN.SEQ */
#define SHM_NAME_MAX       200
#define SHM_MAX_PRODUCERS  1024u               /* owner index: 10 bits */
#define SHM_QMAX           64u                 /* quarantined runs (issue 4) */
#define SHM_PATH_MAX       4096

/* Limits on the geometry a ring may have. */
#define SHM_CAP_MIN        4u
#define SHM_CAP_MAX        (1u << 20)
#define SHM_SLOT_MIN       64u
#define SHM_SLOT_MAX       (1u << 16)
#define SHM_SLOTS_PER_REC_MAX 0xffffu          /* 16 bits of n in a slot word */

/* Each record starts with this header in the data area of its first slot. */
struct shm_rec {
	uint32_t len;   /* msgpack bytes that follow (sentinel: name length) */
	uint32_t aux;   /* sentinel: flush token low bits; record: 0 */
};
#define SHM_REC_HDR ((uint32_t)sizeof(struct shm_rec))

/*
 * Slot words. One 64-bit word per slot, in its own array (the data area stays one
 * contiguous byte range so that records spanning slots, and records wrapping past the
 * end, are contiguous through the double mapping).
 *
 *   63         40 39        20 19        4  3    2  0
 *  +-------------+------------+-----------+----+-----+
 *  | lap (24)    | owner (20) |  n / q    |kind|state|
 *  +-------------+------------+-----------+----+-----+
 *
 * lap   = (position >> log2(capacity)) mod 2^24: which turn of the ring the word speaks of.
 * n     = slots the record spans (1..65535); for QUAR/HOLE the quarantine index q.
 * kind  = 0 record, 1 flush sentinel.
 * owner = producer table index (10 bits) and its registration generation (10 bits).
 */
enum shm_state {
	W_FREE    = 0, /* free for the position of this lap */
	W_CLAIMED = 1, /* claimed by owner, being filled */
	W_READY   = 2, /* published: data complete */
	W_PAD     = 3, /* padding: skip and free, count nothing (owner W_PAD_REVOKED: a
			* quarantined record the writer released, counted with its batch) */
	W_DEAD    = 4, /* revoked, owner dead: skip, count abandoned, free */
	W_QUAR    = 5, /* revoked, owner alive: skip, count abandoned, keep (it may still
			* be copying into the slots: reused only once it releases them) */
	W_HOLE    = 6, /* a quarantined run carried to a later lap: skip, keep */
};

#define W_LAP_BITS   24
#define W_LAP_MASK   ((1u << W_LAP_BITS) - 1)
#define W_OWNER_ANON 0xfffffu
#define W_PAD_REVOKED 0xffffeu /* owner field of a PAD that was a quarantined record */

static inline unsigned w_state(uint64_t w) { return (unsigned)(w & 7); }
static inline unsigned w_kind(uint64_t w)  { return (unsigned)((w >> 3) & 1); }
static inline unsigned w_n(uint64_t w)     { return (unsigned)((w >> 4) & 0xffff); }
static inline unsigned w_owner(uint64_t w) { return (unsigned)((w >> 20) & 0xfffff); }
static inline unsigned w_lap(uint64_t w)   { return (unsigned)(w >> 40); }

/* Owner ids in claims: producer table index (10 bits) and registration generation
 * (10 bits), so that a claim of a dead predecessor of the same entry is told apart. */
static inline unsigned shm_owner_make(unsigned idx, uint32_t gen) { return (idx << 10) | (gen & 1023); }
static inline unsigned shm_owner_index(unsigned owner)          { return owner >> 10; }
static inline unsigned shm_owner_gen(unsigned owner)            { return owner & 1023; }

static inline uint64_t w_make(unsigned lap, unsigned owner, unsigned n, unsigned kind, unsigned state)
{
	return ((uint64_t)(lap & W_LAP_MASK) << 40) | ((uint64_t)(owner & 0xfffff) << 20) |
	       ((uint64_t)(n & 0xffff) << 4) | ((uint64_t)(kind & 1) << 3) | (state & 7);
}

/* The writer's totals, as stored in the header at each commit (W4) and in the intent. */
struct shm_totals {
	uint64_t written, invalid, abandoned, corrupt, flushes_done;
	uint64_t marked[3]; /* losses told by shmring_lost lines: full, oversize, abandoned */
};

/* One registered producer process; its liveness is an OFD lock on SHM_LOCK_PRODUCER(i). */
struct shm_producer {
	_Atomic uint32_t gen;             /* bumped at each registration (10 bits used in owner) */
	_Atomic int32_t  pid;             /* informational: liveness comes from the lock */
	/* Each drop counter is bumped by one atomic add that is itself the record's outcome:
	 * no death can leave a drop half-counted (DESIGN §9). A record that got into the
	 * ring is counted by the ring, not here. */
	_Atomic uint64_t dropped_full;
	_Atomic uint64_t dropped_oversize;
	_Atomic uint64_t aborted;         /* reservations aborted (never records) */
	_Atomic uint64_t flushes;         /* flush calls */
	uint64_t reserved[3];
} __attribute__((aligned(SHM_CACHELINE)));

/* A run of slots the writer revoked while its owner was alive: kept out of use until the
 * owner resumes and releases it, so a stalled producer's late copy lands in no one's record. */
struct shm_quarantine {
	_Atomic uint64_t start;   /* position of the run's first slot when revoked */
	_Atomic uint32_t n;       /* slots */
	_Atomic uint32_t owner;   /* owner id as in the slot word; 0 = entry free */
	_Atomic uint32_t released;/* set by the owner when it resumes and sees the revocation */
	uint32_t pad;
};

struct shm_hdr {
	/* Line 0: identity, immutable once magic is set. */
	_Atomic uint64_t magic;
	uint32_t version;
	uint32_t hdr_size;
	uint64_t fingerprint;
	uint32_t capacity;      /* slots, power of two */
	uint32_t slot_size;     /* bytes */
	uint32_t cap_shift;     /* log2(capacity) */
	uint32_t max_slots;     /* largest record in slots */
	uint64_t words_off;     /* slot words: capacity * 8 bytes */
	uint64_t data_off;      /* data area: capacity * slot_size bytes, page aligned */
	uint64_t data_size;
	uint64_t total_size;    /* the object's size; openers compare it with fstat */

	/* Producers' line: claims. */
	alignas(SHM_CACHELINE) _Atomic uint64_t tail; /* next position to claim */

	/* Wake line: producers touch it only when the writer sleeps or someone waits for room. */
	alignas(SHM_CACHELINE) _Atomic uint32_t writer_sleeping;
	_Atomic uint32_t space_seq;      /* futex word, bumped when the writer frees slots */
	_Atomic uint32_t space_waiters;

	/* Loss line: bumped at every drop so the writer can tell, with one load per record,
	 * that it must look at the producer table (--mark-losses). */
	alignas(SHM_CACHELINE) _Atomic uint64_t loss_seq;

	/* Writer's line: only shmring-writer stores here. */
	alignas(SHM_CACHELINE) _Atomic uint64_t head;     /* every slot below head is free again */
	_Atomic uint64_t confirmed;      /* every record below this position is in the file */
	_Atomic uint64_t written;        /* records whose line was written (including invalid) */
	_Atomic uint64_t invalid;        /* records written as a shmring_error line */
	_Atomic uint64_t abandoned;      /* records revoked after the stall timeout */
	_Atomic uint64_t flushes_done;   /* sentinels confirmed */
	_Atomic uint64_t corrupt;        /* unreadable slot words skipped */
	_Atomic uint64_t marked[3];      /* losses already told by a shmring_lost line */
	_Atomic int32_t  writer_pid;     /* pid of the serving writer (0 = none yet) */
	_Atomic uint32_t writer_epoch;   /* bumped by each writer that starts serving */
	/* Seqlock over a commit (odd while the writer frees a batch's words and stores the
	 * totals, head and confirmed), so that a reader's counters and its scan of the words
	 * from head describe the same instant (shm_stats_read, DESIGN §9). */
	_Atomic uint32_t progress_seq;
	uint32_t pad0;
	/* CLOCK_MONOTONIC ns of the writer's last commit or idle round: a sender that finds
	 * the ring full yields the CPU only to a writer that is running (DESIGN §3). */
	_Atomic uint64_t writer_beat_ns;

	/* The writer's commit intent (DESIGN §4.1): written before each batch's write(2),
	 * so a writer started after one was killed knows whether that batch reached the
	 * file. Only the writer reads or writes it. */
	alignas(SHM_CACHELINE) struct shm_intent {
		_Atomic uint64_t state;           /* 0 none, 1 a batch in flight */
		uint64_t dev, ino;                /* the output file */
		uint64_t file_start, len;         /* the batch is [file_start, file_start + len) */
		uint64_t head_before, head_after;
		struct shm_totals totals;         /* the writer's totals after it */
	} intent;

	alignas(SHM_CACHELINE) sem_t wake; /* process-shared; posted when writer_sleeping */

	alignas(SHM_CACHELINE) _Atomic uint32_t path_seq;  /* seqlock over out_path */
	char out_path[SHM_PATH_MAX];     /* the file the writer appends to, for tools */

	alignas(SHM_CACHELINE) struct shm_quarantine quarantine[SHM_QMAX];

	/* The writer's output error (werr.c, writer.c): which operation on its output failed,
	 * with which errno, since when. Only the writer stores, under a seqlock (E1/E2 pair
	 * with the readers' E3/E4); readers compose "write PATH: strerror" with out_path.
	 * Carved out of the reserved words: every other offset is unchanged, and a ring
	 * made before it reads as all zero, "no error". */
	struct shm_werr {
		_Atomic uint32_t seq;     /* odd while the writer stores */
		_Atomic uint32_t op;      /* enum shmring_writer_op; 0 = no error */
		_Atomic int32_t  err;     /* errno of the failure */
		uint32_t pad;
		_Atomic uint64_t since;   /* CLOCK_REALTIME ns when this op and errno first failed */
	} werr;
	uint64_t reserved[61];

	struct shm_producer producers[SHM_MAX_PRODUCERS];
};

static_assert(sizeof(struct shm_producer) == SHM_CACHELINE, "one line per producer");
static_assert(offsetof(struct shm_hdr, tail) % SHM_CACHELINE == 0, "tail on its own line");
static_assert(offsetof(struct shm_hdr, writer_sleeping) - offsetof(struct shm_hdr, tail) >= SHM_CACHELINE,
	      "producer and wake lines apart");
static_assert(offsetof(struct shm_hdr, head) - offsetof(struct shm_hdr, writer_sleeping) >= SHM_CACHELINE,
	      "writer line apart from producers'");
static_assert(offsetof(struct shm_hdr, producers) % SHM_CACHELINE == 0, "producer table aligned");
static_assert(sizeof(uint64_t) == 8 && sizeof(_Atomic uint64_t) == 8, "64-bit words");
/* Shared atomics work across processes only if they are lock-free (an address-free
 * instruction, not a lock in one process's memory). */
static_assert(__atomic_always_lock_free(sizeof(uint64_t), 0) && __atomic_always_lock_free(sizeof(uint32_t), 0) &&
	      ATOMIC_LLONG_LOCK_FREE == 2 && ATOMIC_INT_LOCK_FREE == 2, "shared atomics must be lock-free");

/* The header's cache-line map, which DESIGN §1 draws: a change that moves a line fails
 * here rather than leaving the drawing stale. */
#define SHM_LINE(f) (offsetof(struct shm_hdr, f) / SHM_CACHELINE)
static_assert(SHM_LINE(magic) == 0 && SHM_LINE(total_size) == 1, "lines 0-1: identity, immutable");
static_assert(offsetof(struct shm_hdr, tail) == 2 * SHM_CACHELINE, "line 2: the tail alone (C1, C4)");
static_assert(offsetof(struct shm_hdr, writer_sleeping) == 3 * SHM_CACHELINE && SHM_LINE(space_waiters) == 3,
	      "line 3: wake (writer_sleeping, space_seq, space_waiters)");
static_assert(offsetof(struct shm_hdr, loss_seq) == 4 * SHM_CACHELINE, "line 4: loss_seq alone");
static_assert(offsetof(struct shm_hdr, head) == 5 * SHM_CACHELINE && SHM_LINE(writer_beat_ns) == 6,
	      "lines 5-6: the writer's (head, confirmed, totals, pid, progress_seq, beat)");
static_assert(offsetof(struct shm_hdr, intent) == 7 * SHM_CACHELINE && SHM_LINE(wake) == 9,
	      "lines 7-8: the commit intent; line 9: the wake semaphore");
static_assert(offsetof(struct shm_hdr, path_seq) == 10 * SHM_CACHELINE, "line 10: out_path's seqlock, then the path");
static_assert(offsetof(struct shm_hdr, quarantine) % SHM_CACHELINE == 0, "quarantine table aligned");
static_assert(offsetof(struct shm_hdr, werr) ==
	      offsetof(struct shm_hdr, quarantine) + sizeof(struct shm_quarantine) * SHM_QMAX &&
	      offsetof(struct shm_hdr, producers) - offsetof(struct shm_hdr, werr) == 64 * 8,
	      "werr is carved out of the 64 reserved words: no other offset, no size changes");
static_assert(sizeof(struct shm_werr) == 24, "werr: three words");

/* OFD lock bytes on the shm object (far past its end: locks do not need data there). */
#define SHM_LOCK_BASE          ((off_t)1 << 40)
#define SHM_LOCK_WRITER        (SHM_LOCK_BASE + 0)  /* held by the serving writer */
#define SHM_LOCK_SPAWN         (SHM_LOCK_BASE + 1)  /* serialises writer autostart */
#define SHM_LOCK_PRODUCER(i)   (SHM_LOCK_BASE + 64 + (off_t)(i))

/* Geometry and validation shared by the library, the writer and the tools. */
struct shm_geom {
	uint32_t capacity, slot_size, cap_shift, max_slots;
	uint64_t words_off, data_off, data_size, total_size;
};

/* The largest record a ring of geometry g takes: its largest run, less the header. */
static inline uint64_t shm_max_record(const struct shm_geom *g)
{
	return (uint64_t)g->max_slots * g->slot_size - SHM_REC_HDR;
}

uint64_t shm_fingerprint(void);
int      shm_geom_make(uint32_t capacity, uint32_t slot_size, struct shm_geom *g);
int      shm_hdr_check(const struct shm_hdr *h, uint64_t object_size, struct shm_geom *g);
int      shm_name_check(const char *name, char out[SHM_NAME_MAX + 16]);
/* A producer's flush semaphore name "/shmring.RING.f.ENTRY.GEN.SEQ" (what shm_gc and
 * shmring rm parse back), and its ring's prefix "/shmring.RING.f." (what the writer
 * accepts in a sentinel). Return the length, as snprintf. */
int      shm_sem_name(char *out, size_t len, const char *ring, unsigned entry, uint32_t gen, unsigned seq);
int      shm_sem_prefix(char *out, size_t len, const char *ring);
/* The output path the writer publishes under a seqlock over out_path (O1…O4, layout.c):
 * the writer stores it, anyone reads a consistent copy (-EAGAIN if a writer died while
 * storing it; the next writer stores it again). */
void     shm_path_store(struct shm_hdr *h, const char *path);
int      shm_path_read(const struct shm_hdr *h, char out[SHM_PATH_MAX]);

#endif
