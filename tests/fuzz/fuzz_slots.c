/*
 * fuzz_slots - libFuzzer target for the writer's slot reader (libshm/drain.c): the input
 * becomes a ring image (tail, slot words, record headers and bytes) that the drain walks
 * and converts as the writer would, with a zero stall timeout. Every value
 * in it is what a buggy or hostile process could have written into shared memory; the
 * writer must never read outside the mapping, crash or loop for ever.
 *
 * Input layout: 8 bytes head, 1 byte tail distance, then per slot 8 bytes of word, then
 * the data area. Word laps are taken relative to the lap the writer expects (lap byte
 * mod 4 - 1), so that inputs reach the interesting states instead of "wrong lap".
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <unistd.h>

#include "drain.h"

enum { CAP = 16, SLOT = 64 };

/* The writer's consumer, minus the file: each record's line into a scratch buffer. */
static char line[1 << 16];
static int on_record(void *ctx, uint64_t pos, const uint8_t *p, uint32_t len)
{
	(void)ctx;
	int invalid;
	ssize_t k = shm_record_line(p, len, pos, line, sizeof(line), &invalid);
	return k < 0 ? (int)k : 0;
}

static int on_sentinel(void *ctx, uint64_t pos, const uint8_t *p, uint32_t len)
{
	(void)ctx, (void)pos;
	memcpy(line, p, len < sizeof(line) ? len : sizeof(line));
	return 0;
}

static const struct shm_drain_ops ops = { on_record, on_sentinel, NULL };

/* Drain as writer_run does: steps, a commit (W3, W4) whenever the walk pauses. */
static void drain_image(struct shm_map *m, unsigned max_steps)
{
	struct shm_drain d;
	struct shm_totals t = { 0 };
	shm_drain_init(&d, m, 0, &ops, NULL);
	for (unsigned steps = 0; steps < max_steps; steps++) {
		int rc = shm_drain_step(&d);
		if (rc < 0)
			break;
		if (rc == 0) {
			d.stall_since = 1; /* a stalled claim is revoked at the next step */
			if (shm_drain_step(&d) <= 0)
				break;
		}
	}
	shm_drain_commit(&d, d.freed, d.head, &t);
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len);
int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len)
{
	static struct shm_map m;
	if (!m.hdr) {
		/* A private image laid out like a real ring, data mapped twice as the writer expects. */
		shm_geom_make(CAP, 4096 / CAP, &m.g);
		m.hdr = aligned_alloc(4096, m.g.data_off);
		int fd = memfd_create("fuzz", 0);
		if (ftruncate(fd, (off_t)m.g.data_size))
			abort();
		uint8_t *base = mmap(NULL, 2 * m.g.data_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		mmap(base, m.g.data_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
		mmap(base + m.g.data_size, m.g.data_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
		m.data = base;
		m.fd = -1; /* no liveness locks: every owner reads as dead or unknown */
	}
	memset(m.hdr, 0, m.g.data_off);
	m.words = (_Atomic uint64_t *)((uint8_t *)m.hdr + m.g.words_off);
	memset(m.data, 0, m.g.data_size);
	uint64_t head = 0;
	uint8_t dist = 0;
	if (len >= 9) {
		memcpy(&head, in, 8);
		head &= (1ull << 40) - 1;
		dist = in[8];
		in += 9;
		len -= 9;
	}
	atomic_store(&m.hdr->head, head);
	atomic_store(&m.hdr->tail, head + dist % (2 * m.g.capacity)); /* sometimes impossible */
	for (unsigned i = 0; i < m.g.capacity && len >= 8; i++, in += 8, len -= 8) {
		uint64_t w;
		memcpy(&w, in, 8);
		uint64_t pos = head + i;
		unsigned lap = (unsigned)shm_lap(&m.g, pos) + (unsigned)(w_lap(w) % 4) - 1;
		w = (w & ((1ull << 40) - 1)) | ((uint64_t)(lap & W_LAP_MASK) << 40);
		atomic_store(&m.words[pos & (m.g.capacity - 1)], w);
	}
	memcpy(m.data, in, len < m.g.data_size ? len : m.g.data_size);
	for (unsigned q = 0; q < SHM_QMAX; q++) /* quarantine entries from the input too */
		if (len > m.g.data_size + q)
			atomic_store(&m.hdr->quarantine[q].n, in[m.g.data_size + q]);
	char why[160];
	(void)shm_ring_valid(&m, why, sizeof(why)); /* garbage: must report, never fault */
	drain_image(&m, 4 * m.g.capacity);
	(void)shm_ring_valid(&m, why, sizeof(why));
	return 0;
}
