/*
 * valid.c - shm_ring_valid(): does a ring at rest keep the protocol's invariants (as
 * Concurrency Kit's ck_ring_valid)? For tests and fuzzers, after a drain: it reads
 * everything as untrusted and only ever reports.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "drain.h"

static int invalid(char *why, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int invalid(char *why, size_t len, const char *fmt, ...)
{
	if (why && len) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(why, len, fmt, ap);
		va_end(ap);
	}
	return -EPROTO;
}

/*
 * At rest (no send, flush or commit in progress), a ring satisfies:
 *  INV1  head <= tail <= head + capacity, confirmed == head, the progress count even and
 *      no commit intent in flight;
 *  INV2  [head, tail) is a chain of runs of this lap, each starting with a claimed,
 *      published, padded or revoked word whose span stays below the tail, and whose
 *      other words are FREE for their own lap;
 *  INV3  every other slot is free for its next position p in [tail, head + capacity):
 *      FREE(lap(p)), or the kept start of a run quarantined a lap ago (its entry live);
 *  INV4  every live quarantine entry covers 1 .. max_slots slots.
 * Returns 0, or -EPROTO with the first broken invariant in why.
 */
int shm_ring_valid(const struct shm_map *m, char *why, size_t len)
{
	const struct shm_hdr *h = m->hdr;
	const struct shm_geom *g = &m->g;
	const uint64_t mask = g->capacity - 1;
	uint64_t head = atomic_load_explicit(&h->head, memory_order_acquire);
	uint64_t tail = atomic_load_explicit(&h->tail, memory_order_acquire);
	if (tail - head > g->capacity)
		return invalid(why, len, "INV1: tail %llu not within a lap above head %llu",
			       (unsigned long long)tail, (unsigned long long)head);
	if (atomic_load_explicit(&h->confirmed, memory_order_relaxed) != head)
		return invalid(why, len, "INV1: confirmed %llu != head %llu",
			       (unsigned long long)atomic_load_explicit(&h->confirmed, memory_order_relaxed),
			       (unsigned long long)head);
	if (atomic_load_explicit(&h->progress_seq, memory_order_relaxed) & 1)
		return invalid(why, len, "INV1: a commit is in progress (progress_seq odd)");
	if (atomic_load_explicit(&h->intent.state, memory_order_relaxed))
		return invalid(why, len, "INV1: a commit intent is in flight");
	for (uint64_t p = head; p != tail;) {
		uint64_t w = atomic_load_explicit(&m->words[p & mask], memory_order_relaxed);
		unsigned n = shm_run_span(m, w);
		if (w_lap(w) != shm_lap(g, p) || n == 0 || n > tail - p)
			return invalid(why, len, "INV2: word %#llx at %llu starts no run of this lap below the tail",
				       (unsigned long long)w, (unsigned long long)p);
		for (unsigned k = 1; k < n; k++) {
			uint64_t c = atomic_load_explicit(&m->words[(p + k) & mask], memory_order_relaxed);
			if (c != w_make((unsigned)shm_lap(g, p + k), 0, 0, 0, W_FREE))
				return invalid(why, len, "INV2: continuation word %#llx at %llu is not free",
					       (unsigned long long)c, (unsigned long long)(p + k));
		}
		p += n;
	}
	for (uint64_t p = tail; p != head + g->capacity; p++) {
		uint64_t w = atomic_load_explicit(&m->words[p & mask], memory_order_relaxed);
		unsigned lap = (unsigned)shm_lap(g, p), st = w_state(w);
		if (w == w_make(lap, 0, 0, 0, W_FREE))
			continue;
		if ((st == W_QUAR || st == W_HOLE) && ((w_lap(w) + 1) & W_LAP_MASK) == lap && w_n(w) < SHM_QMAX &&
		    atomic_load_explicit(&h->quarantine[w_n(w)].owner, memory_order_relaxed))
			continue;
		return invalid(why, len, "INV3: word %#llx at %llu is not free for position %llu",
			       (unsigned long long)w, (unsigned long long)(p & mask), (unsigned long long)p);
	}
	for (unsigned q = 0; q < SHM_QMAX; q++) {
		unsigned n = atomic_load_explicit(&h->quarantine[q].n, memory_order_relaxed);
		if (atomic_load_explicit(&h->quarantine[q].owner, memory_order_relaxed) &&
		    (n == 0 || n > g->max_slots))
			return invalid(why, len, "INV4: quarantine entry %u covers %u slots", q, n);
	}
	return 0;
}
