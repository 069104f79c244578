/*
 * drain.h - the consumer half of the protocol (DESIGN §4-6): read the slot words from
 * the head in position order, hand each published record or flush sentinel to the
 * consumer, revoke claims stalled past a timeout, free consumed slots and publish
 * progress. shmring-writer drives it with its batching and files; `shmring peek`, the
 * stats walk, the invariant checker and the slot fuzzer use its read-only helpers.
 */
#ifndef SHMRING_DRAIN_H
#define SHMRING_DRAIN_H

#include <sys/types.h>

#include "internal.h"

/* What the consumer does with what the walk finds. Each returns 0 or a negative errno
 * (which stops the step and is returned by it). */
struct shm_drain_ops {
	/* A published record at pos: len bytes at p, or len 0 when its header's length is
	 * unreadable (still a record: the writer writes an error line for it). */
	int (*record)(void *ctx, uint64_t pos, const uint8_t *p, uint32_t len);
	/* A published flush sentinel: the semaphore name it carries (untrusted bytes). */
	int (*sentinel)(void *ctx, uint64_t pos, const uint8_t *p, uint32_t len);
	/* A claim revoked after the stall timeout (for the log): its kind, and whether its
	 * owner was alive (the run is quarantined) or dead (freed). May be NULL. */
	void (*revoked)(void *ctx, uint64_t pos, unsigned kind, int stopped);
};

/* One consumer's walk over one ring. Only the serving writer may run shm_drain_step,
 * shm_drain_free and shm_drain_commit on a ring (the writer lock says who). */
struct shm_drain {
	struct shm_map *m;
	uint64_t mask;
	uint64_t head;        /* next position to read (private until committed) */
	uint64_t freed;       /* == hdr->head: slots below are free again */
	uint64_t tail_seen;   /* the tail as last loaded (it only grows) */
	uint64_t stall_ns;    /* revoke a claim not published for this long */
	uint64_t stall_pos, stall_since;
	uint64_t b_abandoned, b_corrupt, b_flushes; /* counted since the last commit */
	const struct shm_drain_ops *ops;
	void *ctx;
};

void shm_drain_init(struct shm_drain *d, struct shm_map *m, uint64_t stall_ns,
		    const struct shm_drain_ops *ops, void *ctx);
/* One step at the head: 1 progressed, 0 nothing to do now, <0 an ops error. */
int  shm_drain_step(struct shm_drain *d);
/* W3 over [from, to): idempotent (a recovery may free a range again). */
void shm_drain_free(struct shm_drain *d, uint64_t from, uint64_t to);
/* Free [from, to) and publish totals, head = confirmed = to, under the progress
 * seqlock; then wake producers waiting for room. d->freed = to. */
void shm_drain_commit(struct shm_drain *d, uint64_t from, uint64_t to, const struct shm_totals *t);
/* The progress seqlock's writer side (G0, G3), for a commit done piecewise. */
uint32_t shm_progress_begin(struct shm_hdr *h);
void     shm_progress_end(struct shm_hdr *h, uint32_t s);

/* ---- read-only helpers: any process, any mapping, nothing stored ------------------ */

/* Slots the run starting with word w covers, validated (0: not a run a walk can follow:
 * FREE, an unknown state, or a size or quarantine entry out of range). */
unsigned shm_run_span(const struct shm_map *m, uint64_t w);
/* The record of a READY run of n slots at pos: its bytes in *p and its length, or 0
 * when the header's length cannot be right (0, or past the run). */
uint32_t shm_record_at(const struct shm_map *m, uint64_t pos, unsigned n, const uint8_t **p);
/* The line the writer writes for a record (len bytes at p, at position pos): its JSON,
 * else a shmring_error line; then '\n'. Returns the bytes written into out (at least
 * shmring_json_bound(len) + 1 must fit), *invalid set for an error line, or -errno. */
ssize_t shm_record_line(const uint8_t *p, uint32_t len, uint64_t pos, char *out, size_t cap,
			int *invalid);

#endif
