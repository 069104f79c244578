/*
 * drain.c - the consumer half of the protocol: the slot reader the writer runs (W1, W1',
 * W2, W3, W4, G0/G3, V2 below; their producer partners C2, P1, Q1, V1 are in ring.c),
 * and the read-only helpers every other reader of a ring shares.
 *
 * Nothing read from shared memory is trusted: every word, size and length is checked
 * against the geometry validated at open, and what cannot be read is skipped and counted,
 * never followed.
 */
#include <errno.h>
#include <string.h>

#include "drain.h"
#include "shmring/json.h"

void shm_drain_init(struct shm_drain *d, struct shm_map *m, uint64_t stall_ns,
		    const struct shm_drain_ops *ops, void *ctx)
{
	memset(d, 0, sizeof(*d));
	d->m = m;
	d->mask = m->g.capacity - 1;
	d->stall_ns = stall_ns;
	d->ops = ops;
	d->ctx = ctx;
	/* Pairs with W4 of the previous writer: its frees below head are visible. */
	d->head = d->freed = atomic_load_explicit(&m->hdr->head, memory_order_acquire);
}

/* ---- read-only helpers ------------------------------------------------------------ */

unsigned shm_run_span(const struct shm_map *m, uint64_t w)
{
	unsigned st = w_state(w), n = w_n(w);
	if (st == W_QUAR || st == W_HOLE)
		/* Relaxed: the entry was complete before the word named it (Q0); a value out
		 * of range is refused below. */
		n = n < SHM_QMAX ? atomic_load_explicit(&m->hdr->quarantine[n].n, memory_order_relaxed) : 0;
	else if (st == W_FREE || st > W_HOLE)
		n = 0;
	return n <= m->g.max_slots ? n : 0;
}

uint32_t shm_record_at(const struct shm_map *m, uint64_t pos, unsigned n, const uint8_t **p)
{
	const uint8_t *rp = m->data + (size_t)(pos & (m->g.capacity - 1)) * m->g.slot_size;
	struct shm_rec rec;
	memcpy(&rec, rp, sizeof(rec));
	*p = rp + SHM_REC_HDR;
	return rec.len <= (uint64_t)n * m->g.slot_size - SHM_REC_HDR ? rec.len : 0;
}

ssize_t shm_record_line(const uint8_t *p, uint32_t len, uint64_t pos, char *out, size_t cap,
			int *invalid)
{
	const char *why = NULL;
	*invalid = 0;
	ssize_t k = shmring_msgpack_to_json(p, len, out, cap, &why);
	if (k < 0) {
		k = shmring_json_error_record(why ? why : "invalid msgpack", pos, p, len, out, cap);
		if (k < 0)
			return k;
		*invalid = 1;
	}
	if ((size_t)k >= cap)
		return -ENOBUFS;
	out[k++] = '\n';
	return k;
}

/* ---- the writer's side ------------------------------------------------------------ */

/* Is the claimer named by owner alive? Its producer entry's OFD lock says so, and the
 * entry's generation says it is still the same registration. */
static int owner_alive(const struct shm_drain *d, unsigned owner)
{
	if (owner == W_OWNER_ANON)
		return 1; /* cannot tell: treat as alive (quarantine), never as dead */
	unsigned idx = shm_owner_index(owner);
	if (idx >= SHM_MAX_PRODUCERS - 1)
		return 0;
	/* R2: pairs with R1 in ring.c (the entry's registration). */
	uint32_t gen = atomic_load_explicit(&d->m->hdr->producers[idx].gen, memory_order_acquire);
	if (shm_owner_gen(gen) != shm_owner_gen(owner))
		return 0; /* the entry was taken again since: the claimer is gone */
	return shm_lock_held(d->m->fd, SHM_LOCK_PRODUCER(idx)) == 1;
}

static int quarantine_alloc(struct shm_drain *d, uint64_t pos, unsigned n, unsigned owner)
{
	for (unsigned q = 0; q < SHM_QMAX; q++) {
		struct shm_quarantine *e = &d->m->hdr->quarantine[q];
		if (atomic_load_explicit(&e->owner, memory_order_relaxed))
			continue;
		atomic_store_explicit(&e->start, pos, memory_order_relaxed);
		atomic_store_explicit(&e->n, n, memory_order_relaxed);
		atomic_store_explicit(&e->released, 0, memory_order_relaxed);
		/* Q0: the entry is complete before the word names it (pairs with the claimers'
		 * acquire of the word, then of n). */
		atomic_store_explicit(&e->owner, owner ? owner : W_OWNER_ANON, memory_order_release);
		return (int)q;
	}
	return -1;
}

/* A claim at pos has not been published for stall_ns: revoke it. */
static int revoke_claim(struct shm_drain *d, uint64_t pos, uint64_t wd)
{
	unsigned lap = w_lap(wd), n = w_n(wd), kind = w_kind(wd), owner = w_owner(wd);
	uint64_t nw;
	int q = -1;
	if (owner_alive(d, owner)) {
		/* Alive but stopped: it may still write into these slots, so they stay out of
		 * use (quarantined) until it resumes or dies; others' records go on. */
		if ((q = quarantine_alloc(d, pos, n, owner)) < 0)
			return 0; /* table full: keep waiting */
		nw = w_make(lap, owner, (unsigned)q, kind, W_QUAR);
	} else {
		nw = w_make(lap, owner, n, kind, W_DEAD);
	}
	/* W2: fails if the producer published at the last instant (P1); then we consume
	 * it. The quarantined owner's failed P1 finds the entry (Q1). */
	if (!atomic_compare_exchange_strong_explicit(&d->m->words[pos & d->mask], &wd, nw,
			memory_order_acq_rel, memory_order_acquire)) {
		if (q >= 0)
			atomic_store_explicit(&d->m->hdr->quarantine[q].owner, 0, memory_order_relaxed);
		return 1;
	}
	if (d->ops->revoked)
		d->ops->revoked(d->ctx, pos, kind, q >= 0);
	return 1;
}

/*
 * Which word stands at the head, loaded so that its view is consistent with the tail:
 * returns the word and sets *room (tail - pos), or returns 0 with *room 0 when there is
 * nothing to read yet, or sets *corrupt for a word that cannot be explained.
 */
static uint64_t head_word(struct shm_drain *d, uint64_t pos, uint64_t *room, int *corrupt)
{
	const struct shm_geom *g = &d->m->g;
	_Atomic uint64_t *wp = &d->m->words[pos & d->mask];
	unsigned lap = (unsigned)shm_lap(g, pos);
	*corrupt = 0;
	/* W1: pairs with P1; the record's bytes are visible once we see READY. */
	uint64_t wd = atomic_load_explicit(wp, memory_order_acquire);
	/* The tail is the producers' hottest line, and every load of it here makes their
	 * next C4 miss. A READY record of this lap that the tail seen before already covers
	 * needs no fresh tail (the tail only grows, and W1 alone orders the record's bytes):
	 * load it only when that does not settle the case, so about once per batch of
	 * records the producers added since, not once per record. */
	uint64_t tail = d->tail_seen;
	if (!(w_state(wd) == W_READY && w_lap(wd) == lap && w_n(wd) <= tail - pos &&
	      tail - pos <= g->capacity))
		d->tail_seen = tail = atomic_load_explicit(&d->m->hdr->tail, memory_order_acquire);
	*room = tail - pos;
	if (wd == w_make(lap, 0, 0, 0, W_FREE)) {
		if (*room == 0 || *room > g->capacity)
			return *room = 0; /* nothing claimed here yet */
		/* The tail is past us, and C4 (release) follows the claim's C3: re-read. A word
		 * still FREE means the head stands inside a record, which only a skip over an
		 * unreadable word can do: skip on, counting, rather than wait for ever. */
		wd = atomic_load_explicit(wp, memory_order_acquire);
		if (wd == w_make(lap, 0, 0, 0, W_FREE))
			return *corrupt = 1, wd;
	}
	if (*room == 0 && w_lap(wd) == lap && w_state(wd) == W_CLAIMED && w_n(wd) >= 1 &&
	    w_n(wd) <= g->max_slots) {
		/* H1: a claimer stopped or died between C3 and C4 with nobody behind it to help:
		 * move the tail for it like any producer would (release, as C4), so that its
		 * stall is seen and, after the timeout, revoked. */
		uint64_t t = pos;
		atomic_compare_exchange_strong_explicit(&d->m->hdr->tail, &t, pos + w_n(wd),
			memory_order_release, memory_order_relaxed);
		d->tail_seen = tail = atomic_load_explicit(&d->m->hdr->tail, memory_order_acquire);
		*room = tail - pos;
	}
	if (*room == 0 || *room > g->capacity)
		return *room = 0; /* tail not past us (or torn view): treat as empty */
	if (w_lap(wd) != lap) {
		/* W1': the word may have changed between W1 and the tail load: a claimer turns
		 * last lap's quarantined run here into a hole of this lap and then moves the
		 * tail (release). Our acquire of the tail pairs with it, so a second load sees
		 * this lap's word. Only a word still from another lap is corrupt (found by the
		 * spin model, docs/model/README.md). */
		wd = atomic_load_explicit(wp, memory_order_acquire);
		if (w_lap(wd) != lap)
			*corrupt = 1;
	}
	return wd;
}

/* CLAIMED at the head: start the stall clock, or revoke once it ran out. */
static int stalled(struct shm_drain *d, uint64_t pos, uint64_t wd)
{
	uint64_t now = shm_now_ns();
	if (d->stall_pos != pos || !d->stall_since) {
		d->stall_pos = pos;
		d->stall_since = now;
		return 0;
	}
	if (now - d->stall_since < d->stall_ns)
		return 0;
	d->stall_since = 0;
	return revoke_claim(d, pos, wd);
}

/* A quarantined run (QUAR) or its hole of a later lap (HOLE) of qn slots: skip it, and
 * recycle it into padding once its owner released it (Q1) or died. */
static void pass_quarantine(struct shm_drain *d, uint64_t pos, uint64_t wd, unsigned qn)
{
	struct shm_quarantine *e = &d->m->hdr->quarantine[w_n(wd)];
	unsigned st = w_state(wd);
	if (st == W_QUAR && w_kind(wd) == 0)
		d->b_abandoned++;
	unsigned owner = atomic_load_explicit(&e->owner, memory_order_relaxed);
	/* Q1 partner: the owner resumed and is done with the bytes, or it died. */
	if (atomic_load_explicit(&e->released, memory_order_acquire) || !owner_alive(d, owner)) {
		/* The PAD of a record still uncounted (its batch not committed) says so, for
		 * shm_pending_scan(). */
		uint64_t pad = w_make(w_lap(wd), st == W_QUAR && w_kind(wd) == 0 ? W_PAD_REVOKED : 0,
				      qn, 0, W_PAD);
		if (atomic_compare_exchange_strong_explicit(&d->m->words[pos & d->mask], &wd, pad,
				memory_order_acq_rel, memory_order_relaxed))
			atomic_store_explicit(&e->owner, 0, memory_order_release);
	}
}

int shm_drain_step(struct shm_drain *d)
{
	uint64_t pos = d->head, room;
	int corrupt, rc;
	uint64_t wd = head_word(d, pos, &room, &corrupt);
	if (!corrupt && room == 0)
		return 0;
	unsigned st = w_state(wd), n = shm_run_span(d->m, wd);
	if (corrupt)
		goto corrupt;
	if (st == W_CLAIMED) /* its size is checked when the revoked word is passed */
		return stalled(d, pos, wd);
	if (n == 0 || n > room)
		goto corrupt;
	switch (st) {
	case W_READY: {
		const uint8_t *p;
		uint32_t len = shm_record_at(d->m, pos, n, &p);
		if (w_kind(wd)) {
			if (len == 0)
				goto corrupt;
			if ((rc = d->ops->sentinel(d->ctx, pos, p, len)))
				return rc;
			d->b_flushes++;
		} else if ((rc = d->ops->record(d->ctx, pos, p, len))) {
			return rc; /* len 0: published but unreadable, still a record */
		}
		break;
	}
	case W_DEAD:
		if (w_kind(wd) == 0)
			d->b_abandoned++;
		break;
	case W_QUAR:
	case W_HOLE:
		pass_quarantine(d, pos, wd, n);
		break;
	case W_PAD:
		break;
	default:
		goto corrupt;
	}
	d->head = pos + n;
	return 1;
corrupt:
	/* A word we cannot read: skip one slot, count it; the free pass repairs the word. */
	d->b_corrupt++;
	d->head = pos + 1;
	return 1;
}

void shm_drain_free(struct shm_drain *d, uint64_t from, uint64_t to)
{
	const struct shm_geom *g = &d->m->g;
	for (uint64_t p = from; p != to; p++) {
		_Atomic uint64_t *wp = &d->m->words[p & d->mask];
		uint64_t wd = atomic_load_explicit(wp, memory_order_relaxed);
		unsigned lap = (unsigned)shm_lap(g, p);
		if (w_lap(wd) == ((lap + 1) & W_LAP_MASK))
			continue; /* freed already (and maybe claimed again): a recovery's rerun */
		/* A run still quarantined keeps its start word: claimers turn it into a hole. */
		if ((w_state(wd) == W_QUAR || w_state(wd) == W_HOLE) && w_lap(wd) == lap)
			continue;
		/* W3: only the writer frees, and nobody claims p + capacity before this store
		 * (pairs with the claimers' C2). */
		atomic_store_explicit(wp, w_make(lap + 1, 0, 0, 0, W_FREE), memory_order_release);
	}
}

/*
 * The progress seqlock (G0/G3, read by shm_stats_read's G1/G2): odd from before the first
 * word of a batch is freed until its totals, head and confirmed are stored, so that a
 * reader never counts a record both in `written` and among the words above the head, nor
 * in neither. A writer killed inside leaves it odd; the next one settles it at start.
 */
uint32_t shm_progress_begin(struct shm_hdr *h)
{
	uint32_t s = atomic_load_explicit(&h->progress_seq, memory_order_relaxed);
	if (!(s & 1))
		atomic_store_explicit(&h->progress_seq, ++s, memory_order_relaxed);
	/* G0: the odd count is ordered before every store of the commit. */
	atomic_thread_fence(memory_order_release);
	return s;
}

void shm_progress_end(struct shm_hdr *h, uint32_t s)
{
	/* G3: pairs with the readers' G1. */
	atomic_store_explicit(&h->progress_seq, s + 1, memory_order_release);
}

void shm_drain_commit(struct shm_drain *d, uint64_t from, uint64_t to, const struct shm_totals *t)
{
	struct shm_hdr *h = d->m->hdr;
	uint32_t seq = shm_progress_begin(h);
	shm_drain_free(d, from, to);
	d->freed = to;
	/* Relaxed: a hint for senders that find the ring full (ring.c yield_to_writer). */
	atomic_store_explicit(&h->writer_beat_ns, shm_now_ns(), memory_order_relaxed);
	/* Only the writer stores these: plain totals, so a recovery can store them again. */
	atomic_store_explicit(&h->written, t->written, memory_order_relaxed);
	atomic_store_explicit(&h->invalid, t->invalid, memory_order_relaxed);
	atomic_store_explicit(&h->abandoned, t->abandoned, memory_order_relaxed);
	atomic_store_explicit(&h->corrupt, t->corrupt, memory_order_relaxed);
	atomic_store_explicit(&h->flushes_done, t->flushes_done, memory_order_relaxed);
	for (int i = 0; i < 3; i++)
		atomic_store_explicit(&h->marked[i], t->marked[i], memory_order_relaxed);
	/* W4: pairs with the claimers' repair() and shm_stats_read (head), and with F1 in
	 * shmring_flush (confirmed): every record below is in the file. */
	atomic_store_explicit(&h->head, to, memory_order_release);
	atomic_store_explicit(&h->confirmed, to, memory_order_release);
	shm_progress_end(h, seq);
	/* V2: the fence orders W3 before the load of space_waiters (pairs with V1). */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&h->space_waiters, memory_order_seq_cst)) {
		atomic_fetch_add_explicit(&h->space_seq, 1, memory_order_seq_cst);
		shm_futex_wake_all(&h->space_seq);
	}
}
