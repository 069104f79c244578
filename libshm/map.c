/*
 * map.c - create or attach one ring's shm object and map it (data area twice, back to
 * back, so that a record wrapping past the end is still one contiguous range); the
 * ring-wide figures read from it. The OS calls it builds on are in os.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <linux/futex.h>
#include <limits.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include "drain.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

/*
 * Make this process's page table entries for [p, p + len) now, writable: otherwise a
 * producer's first store to each 4 KiB page of the ring is a fault (~300 ns measured,
 * once per 8 slots of 512 B through its first lap; MAP_POPULATE is not enough, it maps
 * shared pages read-only and the first store still faults). It costs ~0.05 ms per MiB at
 * attach and makes them resident. An older kernel says EINVAL: the pages then fault
 * lazily as before. Any other error is the open's: EFAULT means a page could not be had
 * (a hole that a full tmpfs cannot fill, or an object cut short under us), which a later
 * store would have turned into SIGBUS.
 */
static int populate_write(void *p, size_t len)
{
	if (madvise(p, len, MADV_POPULATE_WRITE) < 0 && errno != EINVAL)
		return -errno;
	return 0;
}

/* Reserve 2 * data_size of address space, then map the data range into both halves. */
static int map_data_twice(struct shm_map *m)
{
	size_t sz = m->g.data_size;
	uint8_t *base = mmap(NULL, 2 * sz, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED)
		return -errno;
	for (int i = 0; i < 2; i++) {
		void *p = mmap(base + i * sz, sz, m->inspect ? PROT_READ : PROT_READ | PROT_WRITE,
			       MAP_SHARED | MAP_FIXED, m->fd, (off_t)m->g.data_off);
		if (p == MAP_FAILED) {
			int e = -errno;
			munmap(base, 2 * sz);
			return e;
		}
	}
	m->data = base;
	/* Inspection maps read-only: no page table to make writable. */
	return m->inspect ? 0 : populate_write(base, sz); /* the caller unmaps on failure */
}

static int map_front(struct shm_map *m, size_t len)
{
	void *p = mmap(NULL, len, m->inspect ? PROT_READ : PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	m->hdr = p;
	m->front_len = len;
	return m->inspect ? 0 : populate_write(p, len); /* the caller unmaps on failure */
}

/*
 * Size and initialise a fresh object, all but its magic (shm_map_open stores it once
 * everything is mapped). The pages are allocated here, not at first touch: on a full
 * /dev/shm (tmpfs) ftruncate succeeds and the first store to a page is SIGBUS, in the
 * creator or in any process that maps the ring later; fallocate says ENOSPC instead.
 */
static int init_new(struct shm_map *m, const struct shmring_options *o)
{
	uint32_t cap = o && o->capacity ? o->capacity : SHMRING_DEFAULT_CAPACITY;
	uint32_t slot = o && o->slot_size ? o->slot_size : SHMRING_DEFAULT_SLOT_SIZE;
	int rc = shm_geom_make(cap, slot, &m->g);
	if (rc)
		return rc;
	/* posix_fallocate returns the error; tmpfs gives up with EINTR on a signal. */
	while ((rc = posix_fallocate(m->fd, 0, (off_t)m->g.total_size)) == EINTR)
		;
	if (rc)
		return -rc;
	if ((rc = map_front(m, m->g.data_off)))
		return rc;
	struct shm_hdr *h = m->hdr;
	/* The object is zero-filled: every slot word is FREE at lap 0, all counters 0. */
	h->version = SHM_LAYOUT_VERSION;
	h->hdr_size = sizeof(*h);
	h->fingerprint = shm_fingerprint();
	h->capacity = m->g.capacity;
	h->slot_size = m->g.slot_size;
	h->cap_shift = m->g.cap_shift;
	h->max_slots = m->g.max_slots;
	h->words_off = m->g.words_off;
	h->data_off = m->g.data_off;
	h->data_size = m->g.data_size;
	h->total_size = m->g.total_size;
	if (sem_init(&h->wake, 1, 0) < 0)
		return -errno;
	return 0;
}

/* The identity line as pread(2) sees it: read without mapping, so that a page the
 * object does not have, or that tmpfs cannot back, is never touched. */
static int read_identity(int fd, uint64_t *magic, uint64_t *total)
{
	char b[offsetof(struct shm_hdr, total_size) + sizeof(uint64_t)];
	ssize_t n = pread(fd, b, sizeof(b), 0);
	if (n < 0)
		return -errno;
	if ((size_t)n < sizeof(b))
		return -EPROTO;
	memcpy(magic, b + offsetof(struct shm_hdr, magic), sizeof(*magic));
	memcpy(total, b + offsetof(struct shm_hdr, total_size), sizeof(*total));
	return 0;
}

/*
 * Nothing is mapped before the object is known to be whole: magic set and the size the
 * header gives (fstat), read with pread. A truncated or foreign object is -EPROTO, never
 * SIGBUS. (An object cut short after this check is the caller's risk: see the caveats.)
 */
static int attach_existing(struct shm_map *m)
{
	struct stat st;
	/* A creator is between shm_open and the magic store for a few ms (it allocates the
	 * pages); wait up to 1 s. */
	for (int tries = 0;; tries++) {
		if (fstat(m->fd, &st) < 0)
			return -errno;
		uint64_t magic = 0, total = 0;
		if ((uint64_t)st.st_size >= sizeof(struct shm_hdr)) {
			int rc = read_identity(m->fd, &magic, &total);
			if (rc && rc != -EPROTO)
				return rc;
			if (!rc && magic == SHM_MAGIC && total == (uint64_t)st.st_size)
				break;
		}
		/* Only a young object can still be in its creator's hands. */
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		if (tries >= 100 || now.tv_sec - st.st_ctim.tv_sec > 2)
			return -EPROTO;
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	int rc = map_front(m, sizeof(struct shm_hdr));
	if (rc)
		return rc;
	/* M1 (acquire inside) pairs with the creator's release of magic. */
	if ((rc = shm_hdr_check(m->hdr, (uint64_t)st.st_size, &m->g)))
		return rc;
	munmap(m->hdr, m->front_len);
	m->hdr = NULL;
	return map_front(m, m->g.data_off);
}

int shm_map_open(const char *name, const struct shmring_options *opts, int create, struct shm_map *m)
{
	memset(m, 0, sizeof(*m));
	m->fd = -1;
	int rc = shm_name_check(name, m->shm_name);
	if (rc)
		return rc;
	if (opts && opts->capacity) {
		struct shm_geom g;
		if ((rc = shm_geom_make(opts->capacity,
					opts->slot_size ? opts->slot_size : SHMRING_DEFAULT_SLOT_SIZE, &g)))
			return rc;
	}
	mode_t mode = opts && opts->mode ? (opts->mode & 0777) : 0600;
	int created = 0;
	/* SHM_INSPECT: read access is enough, and a read-only mapping can neither change the
	 * ring nor touch its timestamps (gc ages rings by ctime). */
	m->inspect = create == SHM_INSPECT;
	if (m->inspect)
		create = 0;
	for (int attempt = 0; attempt < 8; attempt++) {
		m->fd = shm_open(m->shm_name, (m->inspect ? O_RDONLY : O_RDWR) | O_CLOEXEC, 0);
		if (m->fd >= 0) {
			rc = attach_existing(m);
			break;
		}
		if (errno != ENOENT || !create)
			return -errno;
		m->fd = shm_open(m->shm_name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
		if (m->fd < 0) {
			if (errno == EEXIST)
				continue; /* lost the creation race: attach to the winner's */
			return -errno;
		}
		/* umask must not narrow what the caller asked for. */
		created = 1;
		if (fchmod(m->fd, mode) < 0)
			rc = -errno;
		else
			rc = init_new(m, opts);
		break;
	}
	if (m->fd < 0)
		return -EAGAIN;
	if (rc)
		goto fail;
	m->words = (_Atomic uint64_t *)((uint8_t *)m->hdr + m->g.words_off);
	if ((rc = map_data_twice(m)))
		goto fail;
	if (created)
		/* M1: publishes the initialised header; pairs with the acquire in shm_hdr_check. */
		atomic_store_explicit(&m->hdr->magic, SHM_MAGIC, memory_order_release);
	return 0;
fail:
	/* EFAULT from populate: a page tmpfs could not back (full), or one past the end of
	 * an object cut short since we checked its size. */
	if (rc == -EFAULT) {
		struct stat st;
		rc = fstat(m->fd, &st) == 0 && (uint64_t)st.st_size < m->g.total_size ? -EPROTO : -ENOSPC;
	}
	/* A ring we failed to create leaves nothing behind: it never had its magic. */
	if (created)
		shm_unlink(m->shm_name);
	shm_map_close(m);
	return rc;
}

int shm_reopen_fd(struct shm_map *m)
{
	int fd = shm_open(m->shm_name, (m->inspect ? O_RDONLY : O_RDWR) | O_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	m->fd = fd;
	return 0;
}

void shm_map_close(struct shm_map *m)
{
	if (m->data)
		munmap(m->data, 2 * m->g.data_size);
	if (m->hdr)
		munmap(m->hdr, m->front_len);
	if (m->fd >= 0)
		close(m->fd);
	m->data = NULL;
	m->hdr = NULL;
	m->fd = -1;
}

void shm_producer_sum(const struct shm_map *m, struct shm_psum *s, int count_live, int self)
{
	memset(s, 0, sizeof(*s));
	for (unsigned i = 0; i < SHM_MAX_PRODUCERS; i++) {
		const struct shm_producer *p = &m->hdr->producers[i];
		/* Relaxed: counters are independent monotone figures, read for reporting. */
		s->dropped_full += atomic_load_explicit(&p->dropped_full, memory_order_relaxed);
		s->dropped_oversize += atomic_load_explicit(&p->dropped_oversize, memory_order_relaxed);
		s->aborted += atomic_load_explicit(&p->aborted, memory_order_relaxed);
		s->flushes += atomic_load_explicit(&p->flushes, memory_order_relaxed);
		if (count_live && atomic_load_explicit(&p->pid, memory_order_relaxed) &&
		    ((int)i == self || shm_lock_held(m->fd, SHM_LOCK_PRODUCER(i)) == 1))
			s->live++;
	}
}

/*
 * Count the records in [head, tail) that the writer has not counted yet, walking record
 * starts as step() does: CLAIMED and READY records, and claims revoked (DEAD, QUAR) or
 * released (PAD marked W_PAD_REVOKED) that the writer has not committed past. Flush
 * sentinels, padding and holes are not records. A word of another lap (freed under us,
 * or scribbled) or an unreadable span moves on one slot, as the writer does.
 */
uint64_t shm_pending_scan(const struct shm_map *m, uint64_t head, uint64_t tail)
{
	const struct shm_geom *g = &m->g;
	const uint64_t mask = g->capacity - 1;
	uint64_t n_rec = 0;
	if (tail - head > g->capacity)
		return 0; /* a torn view: the caller retries */
	for (uint64_t p = head; p != tail && (int64_t)(tail - p) > 0;) {
		/* Acquire: pairs with C3/P1/W2, for the span the word names. */
		uint64_t w = atomic_load_explicit(&m->words[p & mask], memory_order_acquire);
		unsigned st = w_state(w), span = shm_run_span(m, w);
		if (w_lap(w) != shm_lap(g, p) || span == 0) {
			p++;
			continue;
		}
		if (w_kind(w) == 0 && (st == W_CLAIMED || st == W_READY || st == W_DEAD || st == W_QUAR ||
				       (st == W_PAD && w_owner(w) == W_PAD_REVOKED)))
			n_rec++;
		p += span;
	}
	return n_rec;
}

/*
 * Every figure describes one instant: the writer's totals and head are read under its
 * progress seqlock (odd while it frees a batch and stores them), and `pending` counts the
 * ring's records above that head. `sent` is not a counter of its own: a record is counted
 * by the act that gives it an outcome (its claim puts it in the ring; a drop is one
 * atomic add), so no death can leave a count without an outcome (DESIGN §9).
 */
int shm_stats_read(const struct shm_map *m, struct shmring_stats *st, int self)
{
	const struct shm_hdr *h = m->hdr;
	struct shm_psum ps;
	memset(st, 0, sizeof(*st));
	st->capacity = m->g.capacity;
	st->slot_size = m->g.slot_size;
	st->max_record = shm_max_record(&m->g);
	/* Bounded: a writer killed inside a commit leaves the count odd until the next one
	 * recovers; then the figures are read as they stand. */
	for (int tries = 0; tries < 64; tries++) {
		/* G1: pairs with the writer's G3 (release) at the end of a commit. */
		uint32_t s1 = atomic_load_explicit(&h->progress_seq, memory_order_acquire);
		if ((s1 & 1) && tries < 63) {
			sched_yield();
			continue;
		}
		st->head = atomic_load_explicit(&h->head, memory_order_acquire);
		st->written = atomic_load_explicit(&h->written, memory_order_relaxed);
		st->invalid = atomic_load_explicit(&h->invalid, memory_order_relaxed);
		st->abandoned = atomic_load_explicit(&h->abandoned, memory_order_relaxed);
		st->flushes_done = atomic_load_explicit(&h->flushes_done, memory_order_relaxed);
		st->corrupt = atomic_load_explicit(&h->corrupt, memory_order_relaxed);
		st->tail = atomic_load_explicit(&h->tail, memory_order_acquire);
		st->pending = shm_pending_scan(m, st->head, st->tail);
		/* G2: the loads above complete before the re-check (seqlock reader). */
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&h->progress_seq, memory_order_relaxed) == s1)
			break;
	}
	st->writer_pid = atomic_load_explicit(&h->writer_pid, memory_order_relaxed);
	shm_producer_sum(m, &ps, 1, self);
	st->dropped_full = ps.dropped_full;
	st->dropped_oversize = ps.dropped_oversize;
	st->flushes = ps.flushes;
	st->aborted = ps.aborted;
	st->producers = ps.live;
	st->sent = st->written + st->abandoned + st->pending + st->dropped_full + st->dropped_oversize;
	shm_werr_stats(h, st);
	int live = shm_lock_held(m->fd, SHM_LOCK_WRITER);
	st->writer_alive = live == 1;
	return live < 0 ? live : 0;
}
