/*
 * layout.c - geometry, fingerprint and validation of the shared layout. Everything an
 * opener reads from shared memory before touching a slot is checked here, so that a
 * truncated, foreign or corrupt object is refused with -EPROTO instead of being read.
 */
#include <errno.h>
#include <stddef.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "layout.h"

/* FNV-1a over the layout facts that two processes must agree on. */
static uint64_t fnv(uint64_t h, uint64_t v)
{
	for (int i = 0; i < 8; i++) {
		h ^= (v >> (8 * i)) & 0xff;
		h *= 0x100000001b3ull;
	}
	return h;
}

uint64_t shm_fingerprint(void)
{
	uint64_t h = 0xcbf29ce484222325ull;
	const uint64_t facts[] = {
		SHM_LAYOUT_VERSION, sizeof(struct shm_hdr), sizeof(struct shm_producer),
		sizeof(struct shm_quarantine), sizeof(sem_t), SHM_CACHELINE, SHM_PAGE,
		offsetof(struct shm_hdr, tail), offsetof(struct shm_hdr, writer_sleeping),
		offsetof(struct shm_hdr, loss_seq), offsetof(struct shm_hdr, marked),
		offsetof(struct shm_hdr, head), offsetof(struct shm_hdr, intent), sizeof(struct shm_intent),
		offsetof(struct shm_hdr, wake),
		offsetof(struct shm_hdr, out_path), offsetof(struct shm_hdr, quarantine),
		offsetof(struct shm_hdr, producers), SHM_MAX_PRODUCERS, SHM_QMAX,
		sizeof(struct shm_rec), sizeof(void *), 0x01020304u /* byte order, via fnv's bytes */,
	};
	for (size_t i = 0; i < sizeof(facts) / sizeof(facts[0]); i++)
		h = fnv(h, facts[i]);
	return h;
}

static uint64_t page_up(uint64_t v) { return (v + SHM_PAGE - 1) & ~(uint64_t)(SHM_PAGE - 1); }

int shm_geom_make(uint32_t capacity, uint32_t slot_size, struct shm_geom *g)
{
	if (capacity < SHM_CAP_MIN || capacity > SHM_CAP_MAX || (capacity & (capacity - 1)))
		return -EINVAL;
	if (slot_size < SHM_SLOT_MIN || slot_size > SHM_SLOT_MAX || slot_size % 64)
		return -EINVAL;
	uint64_t data = (uint64_t)capacity * slot_size;
	/* The data area is mapped twice back to back, so it must be whole pages. */
	if (data % SHM_PAGE)
		return -EINVAL;
	memset(g, 0, sizeof(*g));
	g->capacity = capacity;
	g->slot_size = slot_size;
	g->cap_shift = (uint32_t)__builtin_ctz(capacity);
	g->max_slots = capacity / 4 ? capacity / 4 : 1;
	if (g->max_slots > SHM_SLOTS_PER_REC_MAX)
		g->max_slots = SHM_SLOTS_PER_REC_MAX;
	g->words_off = page_up(sizeof(struct shm_hdr));
	g->data_off = g->words_off + page_up((uint64_t)capacity * 8);
	g->data_size = data;
	g->total_size = g->data_off + data;
	return 0;
}

int shm_hdr_check(const struct shm_hdr *h, uint64_t object_size, struct shm_geom *g)
{
	/* Pairs with M1: a magic seen means a header complete. */
	if (atomic_load_explicit(&h->magic, memory_order_acquire) != SHM_MAGIC)
		return -EPROTO;
	if (h->version != SHM_LAYOUT_VERSION || h->hdr_size != sizeof(struct shm_hdr) ||
	    h->fingerprint != shm_fingerprint())
		return -EPROTO;
	if (shm_geom_make(h->capacity, h->slot_size, g))
		return -EPROTO;
	if (h->cap_shift != g->cap_shift || h->max_slots != g->max_slots ||
	    h->words_off != g->words_off || h->data_off != g->data_off ||
	    h->data_size != g->data_size || h->total_size != g->total_size ||
	    object_size != g->total_size)
		return -EPROTO;
	return 0;
}

/* Valid names: [A-Za-z0-9._-]{1,200}, one optional leading '/'. out = "/shmring.NAME". */
int shm_name_check(const char *name, char out[SHM_NAME_MAX + 16])
{
	if (!name)
		return -EINVAL;
	if (name[0] == '/')
		name++;
	size_t n = strlen(name);
	if (n == 0 || n > SHM_NAME_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return -EINVAL;
	}
	out[0] = '/';
	memcpy(out + 1, SHM_PREFIX, sizeof(SHM_PREFIX) - 1);
	memcpy(out + sizeof(SHM_PREFIX), name, n + 1);
	return 0;
}

int shm_sem_prefix(char *out, size_t len, const char *ring)
{
	return snprintf(out, len, "/%s%s%s", SHM_PREFIX, ring[0] == '/' ? ring + 1 : ring, SHM_SEM_TAG);
}

int shm_sem_name(char *out, size_t len, const char *ring, unsigned entry, uint32_t gen, unsigned seq)
{
	return snprintf(out, len, "/%s%s%s%u.%u.%u", SHM_PREFIX, ring[0] == '/' ? ring + 1 : ring,
			SHM_SEM_TAG, entry, gen, seq);
}

void shm_path_store(struct shm_hdr *h, const char *path)
{
	size_t n = strnlen(path, SHM_PATH_MAX - 1);
	uint32_t s = atomic_load_explicit(&h->path_seq, memory_order_relaxed);
	if (s & 1)
		s++; /* a writer killed while storing left it odd */
	atomic_store_explicit(&h->path_seq, s + 1, memory_order_relaxed);
	/* O1: the odd count is ordered before the copy (pairs with the readers' O4). */
	atomic_thread_fence(memory_order_release);
	memcpy(h->out_path, path, n);
	h->out_path[n] = 0;
	/* O2: the copy is complete before the even count (pairs with the readers' O3). */
	atomic_store_explicit(&h->path_seq, s + 2, memory_order_release);
}

int shm_path_read(const struct shm_hdr *h, char out[SHM_PATH_MAX])
{
	for (int tries = 0; tries < 1000; tries++) {
		/* O3: pairs with O2. */
		uint32_t s1 = atomic_load_explicit(&h->path_seq, memory_order_acquire);
		if (s1 & 1) {
			sched_yield();
			continue;
		}
		memcpy(out, h->out_path, SHM_PATH_MAX);
		/* O4: the copy completes before the count is read again (pairs with O1). */
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&h->path_seq, memory_order_relaxed) == s1) {
			out[SHM_PATH_MAX - 1] = 0;
			return 0;
		}
	}
	out[0] = 0;
	return -EAGAIN;
}
