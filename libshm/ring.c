/*
 * ring.c - the producer side of shmring: claim, fill, publish; the flush barrier.
 *
 * Protocol in one picture (docs/DESIGN.md has the argument):
 *
 *   producer                                   writer
 *   T = tail                         (C1 acq)
 *   w = word[T]                      (C2 acq)
 *   CAS word[T]: FREE(lap) ->                  ...
 *       CLAIMED(lap,owner,n,kind)    (C3 acq_rel)  the claim point: owner and size
 *   CAS tail: T -> T+n               (C4 rel)      anyone who sees CLAIMED helps C4
 *   copy header + bytes into data[T..T+n)
 *   CAS word[T]: CLAIMED -> READY    (P1 seq_cst)  w = word[head]         (W1 acq, pairs P1)
 *   if writer_sleeping: post wake    (P2 seq_cst)  convert, write(2)
 *                                                  word[p] = FREE(lap+1)  (W3 rel, pairs C2)
 *                                                  head = p               (W4 rel)
 *
 * A claim is a single CAS on the first slot's word that records who claims and how
 * many slots: there is never a claimed-but-anonymous slot, so the writer can always
 * tell who to wait for and how far to skip. The tail only moves after the claim point
 * and any producer that finds a claimed word at the tail moves the tail for it, so a
 * producer stopped after C3 never stops the others (no spinning on another producer).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "shmring/reserve.h"

#define SEM_POOL_MAX 64

struct shmring {
	struct shm_map m;
	uint32_t owner;             /* owner id written into claims (shm_owner_make) */
	uint32_t entry;             /* producer table index */
	unsigned fork_gen;          /* g_fork_gen when this process took its entry */
	pthread_mutex_t mu;         /* entry re-registration and the semaphore pool */
	_Atomic uint64_t local_drops;
	struct flush_sem {
		sem_t *sem;
		char name[SHM_NAME_MAX + 64];
	} pool[SEM_POOL_MAX];
	unsigned pool_n;            /* idle semaphores in pool */
	unsigned sem_seq;           /* names this process has used */
	struct shmring *next;       /* g_handles */
	char name[SHM_NAME_MAX + 1];
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct shmring *g_handles;
static _Atomic unsigned g_fork_gen;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* fork(): the child must not share the parent's producer entry, lock or semaphores.
 * prepare takes every lock the child could inherit held; child drops its copy of the
 * parent's OFD (the parent keeps the lock) and marks every handle for re-registration. */
static void atfork_prepare(void)
{
	pthread_mutex_lock(&g_mu);
	for (struct shmring *r = g_handles; r; r = r->next)
		pthread_mutex_lock(&r->mu);
}

static void atfork_parent(void)
{
	for (struct shmring *r = g_handles; r; r = r->next)
		pthread_mutex_unlock(&r->mu);
	pthread_mutex_unlock(&g_mu);
}

static void atfork_child(void)
{
	atomic_fetch_add_explicit(&g_fork_gen, 1, memory_order_relaxed);
	for (struct shmring *r = g_handles; r; r = r->next) {
		if (r->m.fd >= 0)
			close(r->m.fd);
		r->m.fd = -1;
		pthread_mutex_unlock(&r->mu);
	}
	pthread_mutex_unlock(&g_mu);
}

static void init_once(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* Take a producer entry: the first whose OFD lock we can get. The lock is this
 * process's liveness; the kernel drops it when the process dies. */
static int register_entry(struct shmring *r)
{
	struct shm_hdr *h = r->m.hdr;
	unsigned start = (unsigned)getpid() % (SHM_MAX_PRODUCERS - 1);
	for (unsigned k = 0; k < SHM_MAX_PRODUCERS - 1; k++) {
		unsigned i = (start + k) % (SHM_MAX_PRODUCERS - 1);
		int rc = shm_lock_try(r->m.fd, SHM_LOCK_PRODUCER(i));
		if (rc == -EAGAIN)
			continue;
		if (rc)
			return rc;
		struct shm_producer *p = &h->producers[i];
		/* R1: pairs with R2 (drain.c owner_alive, gc.c): the new generation is visible
		 * before a claim carries it, so a dead predecessor's claims are told apart. */
		uint32_t gen = atomic_fetch_add_explicit(&p->gen, 1, memory_order_acq_rel) + 1;
		atomic_store_explicit(&p->pid, (int32_t)getpid(), memory_order_relaxed);
		r->entry = i;
		r->owner = shm_owner_make(i, gen);
		return 0;
	}
	/* The last entry is shared and unlocked: counters still add up, but a stalled
	 * claim under it cannot be told dead from stopped (see DESIGN caveats). */
	r->entry = SHM_MAX_PRODUCERS - 1;
	r->owner = W_OWNER_ANON;
	return 0;
}

static void pool_forget(struct shmring *r, int unlink_them)
{
	for (unsigned i = 0; i < r->pool_n; i++) {
		sem_close(r->pool[i].sem);
		if (unlink_them)
			sem_unlink(r->pool[i].name);
	}
	r->pool_n = 0;
}

/* In a forked child: a fresh fd (own OFD), a fresh entry, no inherited semaphores. */
static int refork(struct shmring *r)
{
	int rc = 0;
	pthread_mutex_lock(&r->mu);
	unsigned g = atomic_load_explicit(&g_fork_gen, memory_order_relaxed);
	if (r->fork_gen != g) {
		pool_forget(r, 0);
		r->sem_seq = 0;
		if (r->m.fd < 0 && (rc = shm_reopen_fd(&r->m)) == 0)
			rc = register_entry(r);
		if (rc) {
			r->entry = SHM_MAX_PRODUCERS - 1;
			r->owner = W_OWNER_ANON;
		}
		r->fork_gen = g;
	}
	pthread_mutex_unlock(&r->mu);
	return rc;
}

static inline void check_fork(struct shmring *r)
{
	if (unlikely(r->fork_gen != atomic_load_explicit(&g_fork_gen, memory_order_relaxed)))
		(void)refork(r);
}

static int open_common(const char *name, const struct shmring_options *opts, int create,
		       shmring **out)
{
	if (!out)
		return -EINVAL;
	*out = NULL;
	pthread_once(&g_once, init_once);
	struct shmring *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	int rc = shm_map_open(name, opts, create, &r->m);
	if (rc) {
		free(r);
		return rc;
	}
	snprintf(r->name, sizeof(r->name), "%s", name[0] == '/' ? name + 1 : name);
	pthread_mutex_init(&r->mu, NULL);
	if ((rc = register_entry(r))) {
		shm_map_close(&r->m);
		free(r);
		return rc;
	}
	pthread_mutex_lock(&g_mu);
	r->fork_gen = atomic_load_explicit(&g_fork_gen, memory_order_relaxed);
	r->next = g_handles;
	g_handles = r;
	pthread_mutex_unlock(&g_mu);
	*out = r;
	return 0;
}

SHM_EXPORT int shmring_open(const char *name, const struct shmring_options *opts, shmring **out)
{
	return open_common(name, opts, SHM_CREATE, out);
}

SHM_EXPORT int shmring_attach(const char *name, shmring **out)
{
	return open_common(name, NULL, SHM_ATTACH, out);
}

SHM_EXPORT const char *shmring_name(const shmring *r)
{
	return r ? r->name : NULL;
}

static void note_drop(struct shmring *r, const char *why)
{
	/* Relaxed: only a hint that the per-producer counters moved (--mark-losses). */
	atomic_fetch_add_explicit(&r->m.hdr->loss_seq, 1, memory_order_relaxed);
	uint64_t n = atomic_fetch_add_explicit(&r->local_drops, 1, memory_order_relaxed) + 1;
	if ((n & (n - 1)) == 0) /* the first drop, then each power of two */
		shm_log(SHMRING_LOG_WARN, "ring %s: record dropped (%s); %llu dropped by this handle",
			r->name, why, (unsigned long long)n);
}

static inline unsigned slots_for(const struct shmring *r, size_t bytes)
{
	/* No 64-bit divide on the send path (35-90 cycles on x86 cores before Ice Lake; no
	 * difference measured on this machine's): slot sizes are usually powers of two (a
	 * shift), and otherwise a record that passed the max_record check fits 32 bits
	 * (max_slots * slot_size <= 65535 * 65536). */
	uint32_t s = r->m.g.slot_size;
	if (likely((s & (s - 1)) == 0))
		return (unsigned)((bytes + SHM_REC_HDR + s - 1) >> __builtin_ctz(s));
	return (uint32_t)(bytes + SHM_REC_HDR + s - 1) / s;
}

/* Slots a claimed word spans, as any producer may read it to help the tail along. */
static unsigned claimed_span(const struct shmring *r, uint64_t w)
{
	unsigned s = w_state(w);
	if (s == W_QUAR || s == W_HOLE) {
		unsigned q = w_n(w);
		/* Pairs with Q0: the entry was filled before the word named it. */
		return q < SHM_QMAX ? atomic_load_explicit(&r->m.hdr->quarantine[q].n, memory_order_acquire) : 0;
	}
	return s == W_FREE ? 0 : w_n(w);
}

/* Does w name a live quarantine entry (as only the writer's W2 writes them)? */
static int quarantine_ok(const struct shmring *r, uint64_t w)
{
	unsigned s = w_state(w), q = w_n(w);
	if ((s != W_QUAR && s != W_HOLE) || q >= SHM_QMAX)
		return 0;
	const struct shm_quarantine *e = &r->m.hdr->quarantine[q];
	unsigned m = atomic_load_explicit(&e->n, memory_order_acquire);
	return atomic_load_explicit(&e->owner, memory_order_acquire) && m && m <= r->m.g.max_slots;
}

/*
 * The word w at position p (p >= the tail T) cannot be explained by the protocol: repair
 * it to FREE(lap(p)) if the writer has passed p's previous lap (head > p - capacity; head
 * is released after W3 freed that slot) and the tail has not moved, so that a scribbled
 * word costs a retry instead of a ring that reads full for ever. Returns 1 to retry.
 */
static int repair(struct shmring *r, uint64_t T, uint64_t p, uint64_t w)
{
	struct shm_hdr *h = r->m.hdr;
	const struct shm_geom *g = &r->m.g;
	uint64_t head = atomic_load_explicit(&h->head, memory_order_acquire);
	if ((int64_t)(head - (p - g->capacity)) <= 0 || (int64_t)(T - head) < 0 ||
	    atomic_load_explicit(&h->tail, memory_order_acquire) != T)
		return 0;
	atomic_compare_exchange_strong_explicit(&r->m.words[p & (g->capacity - 1)], &w,
		w_make((unsigned)shm_lap(g, p), 0, 0, 0, W_FREE), memory_order_acq_rel,
		memory_order_relaxed);
	return 1;
}

/* What one attempt at the tail came to. */
enum { CL_DONE = 0, CL_RETRY = 1, CL_FULL = -EAGAIN };

/* The word at T is FREE for T's lap: check the continuation slots, then claim (C3) and
 * move the tail (C4). A quarantined run starting inside the range is padded up to. */
static inline int claim_free(struct shmring *r, uint64_t T, uint64_t w, unsigned n, unsigned kind)
{
	struct shm_hdr *h = r->m.hdr;
	const struct shm_geom *g = &r->m.g;
	const uint64_t mask = g->capacity - 1;
	/* Continuation slots must be free for their own lap too. Only the claimer at T can
	 * take them, so checking before the CAS is enough. */
	unsigned want = n;
	for (unsigned k = 1; k < n; k++) {
		uint64_t p = T + k;
		uint64_t wk = atomic_load_explicit(&r->m.words[p & mask], memory_order_acquire);
		if (wk == w_make((unsigned)shm_lap(g, p), 0, 0, 0, W_FREE))
			continue;
		/* A quarantined run starts inside our range: pad up to it so that the tail
		 * reaches the run's start, where it becomes a hole. */
		if (quarantine_ok(r, wk)) {
			want = k;
			break;
		}
		if (((w_lap(wk) + 1) & W_LAP_MASK) == shm_lap(g, p) && !repair(r, T, p, wk))
			return CL_FULL; /* last lap's occupant not consumed yet */
		return CL_RETRY;
	}
	/* C3: the claim point. acq_rel: orders after C2's view, and the release half lets
	 * helpers that read CLAIMED see a consistent word. */
	unsigned lap = (unsigned)shm_lap(g, T);
	uint64_t nw = want == n ? w_make(lap, r->owner, n, kind, W_CLAIMED) : w_make(lap, 0, want, 0, W_PAD);
	if (!atomic_compare_exchange_strong_explicit(&r->m.words[T & mask], &w, nw,
			memory_order_acq_rel, memory_order_acquire))
		return CL_RETRY;
	if (want == n)
		SHM_TEST_POINT(SHM_TP_CLAIMED, T);
	/* C4: failure means a helper already moved it for us. */
	uint64_t t = T;
	atomic_compare_exchange_strong_explicit(&h->tail, &t, T + want, memory_order_release,
						memory_order_relaxed);
	if (want != n)
		return CL_RETRY; /* padded: claim again past the quarantined run */
	SHM_TEST_POINT(SHM_TP_TAIL_MOVED, T);
	return CL_DONE;
}

/* Someone claimed T (a word of T's lap) but has not moved the tail yet: move it for them
 * (H1, as C4), unless the word cannot be read, which costs a repair or a drop. */
static inline int help_tail(struct shmring *r, uint64_t T, uint64_t w)
{
	unsigned m = claimed_span(r, w);
	if (m == 0 || m > r->m.g.max_slots || (w_state(w) >= W_QUAR && !quarantine_ok(r, w)))
		return repair(r, T, T, w) ? CL_RETRY : CL_FULL; /* never spin on it */
	uint64_t t = T;
	atomic_compare_exchange_strong_explicit(&r->m.hdr->tail, &t, T + m, memory_order_release,
						memory_order_relaxed);
	return CL_RETRY;
}

/* A quarantined run of the last lap at T: once the writer has passed it, it becomes a
 * hole of this lap and the tail steps over it (DESIGN §6); until then the ring is full. */
static inline int hole_over(struct shmring *r, uint64_t T, uint64_t w)
{
	struct shm_hdr *h = r->m.hdr;
	const struct shm_geom *g = &r->m.g;
	unsigned m = claimed_span(r, w);
	/* Pairs with W4: the writer's frees up to head are visible. Then the word and the
	 * tail move as in help_tail (H1, C4). */
	if (atomic_load_explicit(&h->head, memory_order_acquire) < T - g->capacity + m)
		return CL_FULL;
	if (atomic_compare_exchange_strong_explicit(&r->m.words[T & (g->capacity - 1)], &w,
			w_make((unsigned)shm_lap(g, T), w_owner(w), w_n(w), w_kind(w), W_HOLE),
			memory_order_acq_rel, memory_order_acquire)) {
		uint64_t t = T;
		atomic_compare_exchange_strong_explicit(&h->tail, &t, T + m, memory_order_release,
							memory_order_relaxed);
	}
	return CL_RETRY;
}

/*
 * Claim n slots at the tail. Returns 0 and *pos, or -EAGAIN when the ring is full.
 * Bounded: every failed CAS means another producer made progress, and the retry count
 * is capped so that a corrupt ring costs a drop, never a hang.
 */
static int claim(struct shmring *r, unsigned n, const unsigned kind, uint64_t *pos)
{
	const struct shm_geom *g = &r->m.g;
	for (int tries = 0; tries < 10000; tries++) {
		SHM_TEST_POINT(SHM_TP_CLAIM_LOOP, 0);
		/* C1: pairs with C4/H1 so that the word at T is at least as new as the tail. */
		uint64_t T = atomic_load_explicit(&r->m.hdr->tail, memory_order_acquire);
		unsigned lap = (unsigned)shm_lap(g, T);
		/* C2: pairs with W3 (the writer freeing the slot for this lap). */
		uint64_t w = atomic_load_explicit(&r->m.words[T & (g->capacity - 1)], memory_order_acquire);
		int rc;
		if (w == w_make(lap, 0, 0, 0, W_FREE))
			rc = claim_free(r, T, w, n, kind);
		else if (w_lap(w) == lap)
			rc = help_tail(r, T, w);
		else if (((w_lap(w) + 1) & W_LAP_MASK) == lap && quarantine_ok(r, w))
			rc = hole_over(r, T, w);
		/* The last lap's occupant not yet consumed (full); or our T is stale; or the
		 * word was scribbled over, which repair() tells from the head and the tail. */
		else if (repair(r, T, T, w))
			rc = CL_RETRY;
		else
			rc = ((w_lap(w) + 1) & W_LAP_MASK) == lap ? CL_FULL : CL_RETRY;
		if (rc == CL_DONE)
			*pos = T;
		if (rc != CL_RETRY)
			return rc;
	}
	return -EAGAIN;
}

/* P1/P2: publish, then wake the writer if it announced it sleeps. */
static int publish(struct shmring *r, uint64_t pos, unsigned n, unsigned kind, unsigned state)
{
	struct shm_hdr *h = r->m.hdr;
	const struct shm_geom *g = &r->m.g;
	unsigned lap = (unsigned)shm_lap(g, pos);
	uint64_t exp = w_make(lap, r->owner, n, kind, W_CLAIMED);
	SHM_TEST_POINT(SHM_TP_COPIED, pos);
	/* P1: release makes the record's bytes visible to W1; seq_cst orders it before P2
	 * in the single total order, against the writer's S1 -> S2 (Dekker). */
	if (!atomic_compare_exchange_strong_explicit(&r->m.words[pos & (g->capacity - 1)], &exp,
			w_make(lap, 0, n, kind, state), memory_order_seq_cst, memory_order_acquire)) {
		/* The writer revoked the claim after its stall timeout. If it quarantined the
		 * run because we were alive, tell it we are done with the bytes. */
		unsigned s = w_state(exp);
		if ((s == W_QUAR || s == W_HOLE) && w_n(exp) < SHM_QMAX) {
			struct shm_quarantine *q = &h->quarantine[w_n(exp)];
			if (atomic_load_explicit(&q->owner, memory_order_acquire) == r->owner &&
			    (atomic_load_explicit(&q->start, memory_order_relaxed) & (g->capacity - 1)) ==
				    (pos & (g->capacity - 1)))
				/* Q1: pairs with the writer's acquire when it passes the run. */
				atomic_store_explicit(&q->released, 1, memory_order_release);
		}
		return -ECANCELED;
	}
	SHM_TEST_POINT(SHM_TP_PUBLISHED, pos);
	/* P2: seq_cst load; if it reads 0 the writer's S2 re-check will see our READY. */
	if (atomic_load_explicit(&h->writer_sleeping, memory_order_seq_cst) &&
	    atomic_exchange_explicit(&h->writer_sleeping, 0, memory_order_seq_cst))
		sem_post(&h->wake); /* only the producer that cleared the flag posts */
	return 0;
}

/* Test points (internal.h): hidden from the shared library; NULL outside tests. */
#ifdef SHMRING_TESTING
void (*shm_test_hook)(int point, uint64_t pos);
#endif

static inline uint8_t *slot_ptr(const struct shmring *r, uint64_t pos)
{
	return r->m.data + (size_t)(pos & (r->m.g.capacity - 1)) * r->m.g.slot_size;
}

/*
 * Send-ahead prefetch. The slots a send writes were last touched a lap ago, by the
 * writer: far from this core. A locked instruction (the claim C3, the publish P1) waits
 * until every earlier store has reached the cache, so without help each send that starts
 * a new line of words or a new page waits for its misses in full; that is the p99.
 * Asking now, for writing, for the word and the first lines of the slot a few records
 * ahead (assuming records of this one's size) lets those misses overlap the sends in
 * between. Measured on a 32 MiB ring: p99 of claim + copy + publish 407 -> 206 ns.
 */
#define SHM_PREFETCH_AHEAD 3 /* records ahead: 4 and more gained nothing more */
static inline void prefetch_w(const void *p)
{
#if defined(__x86_64__)
	/* PREFETCHW: the line arrives exclusive. gcc drops __builtin_prefetch(p, 1) for a
	 * target without -mprfchw; CPUs older than the instruction execute it as a NOP. */
	__asm__ volatile("prefetchw %0" : : "m"(*(const char *)p));
#else
	__builtin_prefetch(p, 1, 3);
#endif
}

static inline void prefetch_ahead(const struct shmring *r, uint64_t pos, unsigned n, size_t len)
{
	uint64_t next = pos + (uint64_t)n * (SHM_PREFETCH_AHEAD + 1);
	prefetch_w((const void *)&r->m.words[next & (r->m.g.capacity - 1)]);
	const uint8_t *d = slot_ptr(r, next);
	size_t lines = (len + SHM_REC_HDR + SHM_CACHELINE - 1) / SHM_CACHELINE;
	for (size_t k = 0; k < lines && k < 8; k++)
		prefetch_w(d + k * SHM_CACHELINE);
}

/*
 * Wait until the writer frees slots or deadline_ns passes (no spinning: a futex on
 * space_seq, which the writer bumps after W3 when space_waiters is non-zero).
 * Returns 0 on a wake or spurious return, -ETIMEDOUT at the deadline.
 */
static int wait_space(struct shmring *r, uint64_t deadline_ns)
{
	struct shm_hdr *h = r->m.hdr;
	uint64_t now = shm_now_ns();
	if (now >= deadline_ns)
		return -ETIMEDOUT;
	/* V1: seq_cst RMW; with the writer's seq_cst fence between W3 and its load of
	 * space_waiters, either it sees us waiting or our retry sees its freed slots. */
	atomic_fetch_add_explicit(&h->space_waiters, 1, memory_order_seq_cst);
	uint32_t seq = atomic_load_explicit(&h->space_seq, memory_order_seq_cst);
	uint64_t T = atomic_load_explicit(&h->tail, memory_order_seq_cst);
	uint64_t w = atomic_load_explicit(&r->m.words[T & (r->m.g.capacity - 1)], memory_order_seq_cst);
	/* Still full (the word at the tail is from the previous lap): sleep, at most 10 ms
	 * at a time so that a writer that died is noticed through the deadline. */
	if (((w_lap(w) + 1) & W_LAP_MASK) == shm_lap(&r->m.g, T)) {
		uint64_t left = deadline_ns - now;
		SHM_TEST_POINT(SHM_TP_WAIT, T);
		shm_futex_wait(&h->space_seq, seq, left < 10000000ull ? left : 10000000ull);
	}
	atomic_fetch_sub_explicit(&h->space_waiters, 1, memory_order_relaxed);
	return 0;
}

static inline uint64_t max_record(const struct shmring *r)
{
	return shm_max_record(&r->m.g);
}

/*
 * A full ring means the writer is behind. On a host with more runnable threads than
 * CPUs, senders that spin on -EAGAIN hold the CPUs the writer needs to make room, so a
 * drop yields once (at P=8 on 2 cores throughput went from 51 % to 91 % of P=2's, and
 * drops from 84 % to 17 %: docs/bench). But a yield helps only a writer that is running:
 * with no writer, a stopped one or one blocked on a failing disk, it hands the CPU to any
 * busy process for up to a time slice (measured: 1000 sends into a full ring, two busy
 * loops, no writer: 0.25-2.5 s). So yield only while the writer is awake and committed
 * or polled within the last SHM_BEAT_FRESH_NS. Relaxed loads: a hint, not a guarantee.
 */
#define SHM_BEAT_FRESH_NS 20000000ull /* 20 ms: it commits every ~1 ms when behind */
static void yield_to_writer(struct shmring *r, uint64_t pos)
{
	const struct shm_hdr *h = r->m.hdr;
	if (atomic_load_explicit(&h->writer_sleeping, memory_order_relaxed))
		return; /* it is woken by the next publish, not by our yield */
	uint64_t beat = atomic_load_explicit(&h->writer_beat_ns, memory_order_relaxed);
	if (!beat || (int64_t)(shm_now_ns() - beat) > (int64_t)SHM_BEAT_FRESH_NS)
		return;
	SHM_TEST_POINT(SHM_TP_YIELD, pos);
	sched_yield();
}

/* Check the size, claim (waiting up to timeout_ms if positive; the clock is read only
 * once the ring is found full), prefetch for the next claim. Nothing is counted until
 * the record has its outcome: the claim (C3) puts it in the ring, where the ring counts
 * it; a drop is one atomic add (DESIGN §9). */
static int offer(struct shmring *r, size_t len, int timeout_ms, uint64_t *pos, unsigned *n)
{
	uint64_t deadline_ns = 0;
	struct shm_producer *p = &r->m.hdr->producers[r->entry];
	SHM_TEST_POINT(SHM_TP_OFFER, 0);
	if (unlikely(len > max_record(r))) {
		SHM_TEST_POINT(SHM_TP_OVERSIZE, 0);
		atomic_fetch_add_explicit(&p->dropped_oversize, 1, memory_order_relaxed);
		note_drop(r, "larger than the ring's max record");
		return -EMSGSIZE;
	}
	*n = slots_for(r, len);
	while (unlikely(claim(r, *n, 0, pos))) {
		if (timeout_ms > 0 && !deadline_ns)
			deadline_ns = shm_now_ns() + (uint64_t)timeout_ms * 1000000ull;
		if (!deadline_ns || wait_space(r, deadline_ns)) {
			SHM_TEST_POINT(SHM_TP_FULL, 0);
			atomic_fetch_add_explicit(&p->dropped_full, 1, memory_order_relaxed);
			SHM_TEST_POINT(SHM_TP_DROPPED, 0);
			note_drop(r, "ring full");
			if (!deadline_ns)
				yield_to_writer(r, 0);
			return -EAGAIN;
		}
	}
	prefetch_ahead(r, *pos, *n, len);
	return 0;
}

static int send_common(shmring *r, const void *msgpack, size_t len, int timeout_ms)
{
	if (unlikely(!r || !msgpack || len == 0))
		return -EINVAL;
	check_fork(r);
	uint64_t pos;
	unsigned n;
	int rc = offer(r, len, timeout_ms, &pos, &n);
	if (unlikely(rc))
		return rc;
	uint8_t *dst = slot_ptr(r, pos);
	struct shm_rec rec = { .len = (uint32_t)len, .aux = 0 };
	memcpy(dst, &rec, sizeof(rec));
#ifdef SHMRING_TESTING
	if (unlikely(shm_test_hook)) { /* two instants inside the copy */
		shm_test_hook(SHM_TP_FILLED_HDR, pos);
		memcpy(dst + SHM_REC_HDR, msgpack, len / 2);
		shm_test_hook(SHM_TP_HALF_COPY, pos);
	}
#endif
	memcpy(dst + SHM_REC_HDR, msgpack, len);
	return publish(r, pos, n, 0, W_READY);
}

SHM_EXPORT int shmring_send(shmring *r, const void *msgpack, size_t len)
{
	return send_common(r, msgpack, len, 0);
}

SHM_EXPORT int shmring_send_wait(shmring *r, const void *msgpack, size_t len, int timeout_ms)
{
	return send_common(r, msgpack, len, timeout_ms);
}

/* ---- reserve / commit / abort: msgpack packed straight into the claimed slots ----- */

static int res_write(void *data, const char *buf, size_t len)
{
	struct shmring_reservation *res = data;
	if (unlikely(len > res->max_len - res->len)) {
		res->overflow = 1;
		return -1;
	}
	memcpy(res->buf + res->len, buf, len);
	res->len += len;
	return 0;
}

SHM_EXPORT int shmring_reserve(shmring *r, size_t max_len, struct shmring_reservation *res)
{
	if (unlikely(!r || !res || max_len == 0))
		return -EINVAL;
	check_fork(r);
	memset(res, 0, sizeof(*res));
	uint64_t pos;
	unsigned n;
	int rc = offer(r, max_len, 0, &pos, &n);
	if (unlikely(rc))
		return rc;
	res->r = r;
	res->pos = pos;
	res->n = n;
	res->max_len = max_len;
	res->buf = slot_ptr(r, pos) + SHM_REC_HDR;
	msgpack_packer_init(&res->pk, res, res_write);
	return 0;
}

SHM_EXPORT int shmring_commit(struct shmring_reservation *res)
{
	if (unlikely(!res || !res->r))
		return -EINVAL;
	shmring *r = res->r;
	res->r = NULL;
	struct shm_producer *p = &r->m.hdr->producers[r->entry];
	if (unlikely(res->overflow || res->len == 0)) {
		/* Nothing torn is published: the slots become padding the writer skips. If the
		 * writer revoked them meanwhile it counted the record as abandoned already. */
		if (publish(r, res->pos, res->n, 0, W_PAD))
			return -ECANCELED;
		if (res->len == 0 && !res->overflow) {
			atomic_fetch_add_explicit(&p->aborted, 1, memory_order_relaxed);
			return -EINVAL;
		}
		atomic_fetch_add_explicit(&p->dropped_oversize, 1, memory_order_relaxed);
		note_drop(r, "packed past its reservation");
		return -EMSGSIZE;
	}
	struct shm_rec rec = { .len = (uint32_t)res->len, .aux = 0 };
	memcpy(res->buf - SHM_REC_HDR, &rec, sizeof(rec));
	return publish(r, res->pos, res->n, 0, W_READY);
}

SHM_EXPORT void shmring_abort(struct shmring_reservation *res)
{
	if (!res || !res->r)
		return;
	shmring *r = res->r;
	res->r = NULL;
	struct shm_producer *p = &r->m.hdr->producers[r->entry];
	if (publish(r, res->pos, res->n, 0, W_PAD))
		return; /* revoked: the writer counted it as abandoned */
	/* An aborted reservation was never a record: a PAD the ring does not count. */
	atomic_fetch_add_explicit(&p->aborted, 1, memory_order_relaxed);
}

SHM_EXPORT uint64_t shmring_dropped_count(const shmring *r)
{
	if (!r)
		return 0;
	struct shm_psum s;
	shm_producer_sum(&r->m, &s, 0, -1);
	return s.dropped_full;
}

SHM_EXPORT int shmring_stats(const shmring *r, struct shmring_stats *out)
{
	if (!r || !out)
		return -EINVAL;
	if (r->m.fd < 0)
		check_fork((shmring *)r);
	return shm_stats_read(&r->m, out, r->owner == W_OWNER_ANON ? -1 : (int)r->entry);
}

SHM_EXPORT int shmring_inspect(const char *name, struct shmring_stats *out)
{
	if (!name || !out)
		return -EINVAL;
	struct shm_map m;
	int rc = shm_map_open(name, NULL, SHM_INSPECT, &m);
	if (rc)
		return rc;
	rc = shm_stats_read(&m, out, -1);
	shm_map_close(&m);
	return rc;
}

/* ---- flush ---------------------------------------------------------------------- */

static int pool_get(struct shmring *r, struct flush_sem *out)
{
	pthread_mutex_lock(&r->mu);
	if (r->pool_n) {
		*out = r->pool[--r->pool_n];
		pthread_mutex_unlock(&r->mu);
		return 0;
	}
	unsigned seq = r->sem_seq++;
	uint32_t gen = atomic_load_explicit(&r->m.hdr->producers[r->entry].gen, memory_order_relaxed);
	/* The processes of the unlocked overflow entry share its generation: the pid stands
	 * in for it, or two of them would take each other's names (shm_gc reads it back). */
	if (r->owner == W_OWNER_ANON)
		gen = (uint32_t)getpid();
	pthread_mutex_unlock(&r->mu);
	/* The name says whose it is: ring, producer entry and generation, so leftovers of
	 * dead processes can be told from live ones. */
	shm_sem_name(out->name, sizeof(out->name), r->name, r->entry, gen, seq);
	struct stat st;
	int have = fstat(r->m.fd, &st) == 0;
	mode_t mode = have ? (st.st_mode & 0777) : 0600;
	for (int tries = 0; tries < 2; tries++) {
		out->sem = sem_open(out->name, O_CREAT | O_EXCL, mode, 0);
		if (out->sem != SEM_FAILED)
			break;
		if (errno != EEXIST)
			return -errno;
		sem_unlink(out->name); /* a leftover of a dead process with our entry and gen */
	}
	if (out->sem == SEM_FAILED)
		return -EEXIST;
	/* sem_open applies the umask: a writer of another user whom the ring's mode admits
	 * could not open the semaphore to post it, and every flush would wait its full
	 * 100 ms. The ring's mode, as for the ring itself (glibc: /dev/shm/sem.NAME). */
	char path[sizeof(out->name) + 16];
	snprintf(path, sizeof(path), SHM_DIR "/sem.%s", out->name + 1);
	/* And the ring's group (shmring-writer --group G): sem_open gives it our effective
	 * group, which a writer of another user in G is not in. A producer not in G cannot
	 * chown (EPERM): the mode alone decides then, as before. */
	if (have && st.st_gid != getegid() && chown(path, (uid_t)-1, st.st_gid) < 0) {
	}
	if (chmod(path, mode) < 0) {
		int e = -errno;
		sem_close(out->sem);
		sem_unlink(out->name);
		return e;
	}
	return 0;
}

static void pool_put(struct shmring *r, struct flush_sem *s)
{
	pthread_mutex_lock(&r->mu);
	if (r->pool_n < SEM_POOL_MAX) {
		r->pool[r->pool_n++] = *s;
		s = NULL;
	}
	pthread_mutex_unlock(&r->mu);
	if (s) {
		sem_close(s->sem);
		sem_unlink(s->name);
	}
}

static int writer_alive(const struct shmring *r)
{
	return shm_lock_held(r->m.fd, SHM_LOCK_WRITER) == 1;
}

/* A flush not confirmed in time: -ENOTCONN the writer is gone, -EIO it lives but reports
 * that it cannot write or open its output (the records wait in the ring), else
 * -ETIMEDOUT. A failed rotation or fsync does not stop the lines: not -EIO. */
static int flush_late(const struct shmring *r)
{
	struct shm_werr_view v;
	if (!writer_alive(r))
		return -ENOTCONN;
	if (shm_werr_read(r->m.hdr, &v) == 0 &&
	    (v.op == SHMRING_WOP_WRITE || v.op == SHMRING_WOP_OPEN))
		return -EIO;
	return -ETIMEDOUT;
}

SHM_EXPORT int shmring_flush(shmring *r)
{
	if (!r)
		return -EINVAL;
	check_fork(r);
	if (r->m.fd < 0)
		return -ENOTCONN;
	struct shm_hdr *h = r->m.hdr;
	uint64_t deadline = shm_now_ns() + SHMRING_FLUSH_TIMEOUT_MS * 1000000ull;
	atomic_fetch_add_explicit(&h->producers[r->entry].flushes, 1, memory_order_relaxed);
	if (!writer_alive(r))
		return -ENOTCONN;
	struct flush_sem fs;
	int rc = pool_get(r, &fs);
	if (rc)
		return rc;
	/* A post for an earlier flush that timed out may still be counted: drop it, and
	 * re-check our own position after every wake anyway. */
	while (sem_trywait(fs.sem) == 0)
		;
	size_t nlen = strlen(fs.name);
	unsigned n = slots_for(r, nlen);
	uint64_t pos;
	struct timespec ts;
	while ((rc = claim(r, n, 1, &pos)) == -EAGAIN) {
		/* Full: wait for the writer to free slots, within the same 100 ms. */
		uint64_t now = shm_now_ns();
		if (now >= deadline) {
			rc = flush_late(r);
			goto out;
		}
		wait_space(r, deadline);
	}
	uint8_t *dst = slot_ptr(r, pos);
	struct shm_rec rec = { .len = (uint32_t)nlen, .aux = 0 };
	memcpy(dst, &rec, sizeof(rec));
	memcpy(dst + SHM_REC_HDR, fs.name, nlen);
	SHM_TEST_POINT(SHM_TP_FLUSH_CLAIMED, pos);
	if ((rc = publish(r, pos, n, 1, W_READY)))
		goto out;
	for (;;) {
		/* F1: pairs with the writer's release of confirmed after write(2) returned. */
		if ((int64_t)(atomic_load_explicit(&h->confirmed, memory_order_acquire) - (pos + n)) >= 0) {
			rc = 0;
			break;
		}
		ts = shm_ns_to_ts(deadline);
		if (sem_clockwait(fs.sem, CLOCK_MONOTONIC, &ts) < 0 && errno == ETIMEDOUT) {
			if ((int64_t)(atomic_load_explicit(&h->confirmed, memory_order_acquire) - (pos + n)) >= 0)
				rc = 0;
			else
				rc = flush_late(r);
			break;
		}
	}
out:
	pool_put(r, &fs);
	return rc;
}

struct shm_map *shm_ring_map(shmring *r)
{
	check_fork(r);
	return &r->m;
}

/* ---- close / unlink ------------------------------------------------------------- */

SHM_EXPORT void shmring_close(shmring *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&g_mu);
	for (struct shmring **pp = &g_handles; *pp; pp = &(*pp)->next)
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	pthread_mutex_unlock(&g_mu);
	int own = r->fork_gen == atomic_load_explicit(&g_fork_gen, memory_order_relaxed);
	/* Only this process's semaphores: a child that never flushed has none of its own. */
	pool_forget(r, own);
	if (own && r->m.fd >= 0 && r->owner != W_OWNER_ANON)
		atomic_store_explicit(&r->m.hdr->producers[r->entry].pid, 0, memory_order_relaxed);
	shm_map_close(&r->m); /* closing the fd drops our OFD lock */
	pthread_mutex_destroy(&r->mu);
	free(r);
}

SHM_EXPORT int shmring_unlink(const char *name)
{
	char shm[SHM_NAME_MAX + 16];
	int rc = shm_name_check(name, shm);
	if (rc)
		return rc;
	return shm_unlink(shm) < 0 ? -errno : 0;
}
