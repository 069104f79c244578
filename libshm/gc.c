/*
 * gc.c - find and remove what dead processes left in /dev/shm: flush semaphores whose
 * producer entry is no longer held by the process that named them, and rings nobody
 * uses any more (no writer, no producer, nothing pending). Liveness always comes from
 * the kernel-released OFD locks, never from a pid.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"


/* "sem.shmring.RING.f.ENTRY.GEN.SEQ" → RING (into ring), ENTRY, GEN. */
static int parse_sem(const char *d, char *ring, size_t cap, unsigned *entry, unsigned *gen)
{
	static const char pre[] = "sem." SHM_PREFIX;
	if (strncmp(d, pre, sizeof(pre) - 1))
		return -1;
	d += sizeof(pre) - 1;
	const char *f = strstr(d, SHM_SEM_TAG);
	const char *last = NULL;
	for (const char *p = f; p; p = strstr(p + 1, SHM_SEM_TAG))
		last = p; /* ring names may contain ".f." themselves: the suffix is the last one */
	if (!last || (size_t)(last - d) >= cap || last == d)
		return -1;
	unsigned seq;
	if (sscanf(last + sizeof(SHM_SEM_TAG) - 1, "%u.%u.%u", entry, gen, &seq) != 3)
		return -1;
	memcpy(ring, d, (size_t)(last - d));
	ring[last - d] = 0;
	return 0;
}

/* Is the semaphore's owner (entry, gen) still the live holder of that entry? */
static int sem_owner_alive(const struct shm_map *m, unsigned entry, unsigned gen)
{
	if (entry >= SHM_MAX_PRODUCERS)
		return 0;
	/* The overflow entry has no lock and its semaphores carry the pid (ring.c pool_get):
	 * a live pid keeps them. A reused pid only keeps a leftover longer, never removes a
	 * live one. */
	if (entry == SHM_MAX_PRODUCERS - 1)
		return gen > 0 && (kill((pid_t)gen, 0) == 0 || errno == EPERM);
	/* R2: pairs with R1 in ring.c (the entry's registration). */
	if (atomic_load_explicit(&m->hdr->producers[entry].gen, memory_order_acquire) != gen)
		return 0;
	return shm_lock_held(m->fd, SHM_LOCK_PRODUCER(entry)) == 1;
}

static int ring_unused(const struct shm_map *m)
{
	if (shm_lock_held(m->fd, SHM_LOCK_WRITER) != 0 || shm_lock_held(m->fd, SHM_LOCK_SPAWN) != 0)
		return 0;
	for (unsigned i = 0; i < SHM_MAX_PRODUCERS; i++)
		if (shm_lock_held(m->fd, SHM_LOCK_PRODUCER(i)) != 0)
			return 0;
	return atomic_load_explicit(&m->hdr->head, memory_order_acquire) ==
	       atomic_load_explicit(&m->hdr->tail, memory_order_acquire);
}

/*
 * Remove leftovers. ring: only this ring's semaphores (and the ring itself is never
 * removed); NULL: every ring on the host, removing unused rings too; "PREFIX*": the
 * same for the rings whose names start with PREFIX (tests use it to stay in their own
 * namespace).
 * report(kind, name, ctx) is called for each object removed ("semaphore" or "ring"),
 * or that would be with dry_run. Rings younger than min_age_s are left alone: their
 * creator may not have registered yet. Returns the count, or a negative errno.
 */
int shm_gc(const char *ring, int dry_run, unsigned min_age_s,
	   void (*report)(const char *kind, const char *name, void *ctx), void *ctx)
{
	DIR *dir = opendir(SHM_DIR);
	if (!dir)
		return -errno;
	int count = 0;
	struct dirent *de;
	size_t plen = 0;
	if (ring && ring[0] == '/')
		ring++;
	int prefix = ring && (plen = strlen(ring)) && ring[plen - 1] == '*';
	if (prefix)
		plen--;
	/* Rings first (all, or by prefix): an unused ring takes its semaphores with it. */
	if (!ring || prefix) {
		while ((de = readdir(dir))) {
			if (strncmp(de->d_name, SHM_PREFIX, sizeof(SHM_PREFIX) - 1))
				continue;
			const char *name = de->d_name + sizeof(SHM_PREFIX) - 1;
			if (prefix && strncmp(name, ring, plen))
				continue;
			char path[512];
			struct stat st;
			snprintf(path, sizeof(path), SHM_DIR "/%s", de->d_name);
			if (stat(path, &st) || time(NULL) - st.st_ctim.tv_sec < (time_t)min_age_s)
				continue;
			struct shm_map m;
			if (shm_map_open(name, NULL, SHM_ATTACH, &m))
				continue; /* not a ring of ours, or young: never touched */
			int unused = ring_unused(&m);
			shm_map_close(&m);
			if (!unused)
				continue;
			if (report)
				report("ring", name, ctx);
			if (!dry_run)
				shmring_unlink(name);
			count++;
		}
		rewinddir(dir);
	}
	char cur[SHM_NAME_MAX + 1] = "";
	struct shm_map m = { .fd = -1 };
	enum { GONE, OPEN, UNREADABLE } state = GONE;
	while ((de = readdir(dir))) {
		char rn[SHM_NAME_MAX + 1];
		unsigned entry, gen;
		if (parse_sem(de->d_name, rn, sizeof(rn), &entry, &gen))
			continue;
		if (ring && (prefix ? strncmp(rn, ring, plen) : strcmp(rn, ring)))
			continue;
		if (strcmp(rn, cur)) {
			if (state == OPEN)
				shm_map_close(&m);
			snprintf(cur, sizeof(cur), "%s", rn);
			if (shm_map_open(rn, NULL, SHM_ATTACH, &m) == 0) {
				state = OPEN;
			} else {
				/* No ring: the semaphore has no owner left. A ring we cannot read
				 * (another user's, still being created): leave its semaphores. */
				char path[512];
				snprintf(path, sizeof(path), SHM_DIR "/" SHM_PREFIX "%s", rn);
				state = access(path, F_OK) == 0 ? UNREADABLE : GONE;
			}
		}
		if (state == UNREADABLE || (state == OPEN && sem_owner_alive(&m, entry, gen)))
			continue;
		if (report)
			report("semaphore", de->d_name + 4, ctx);
		if (!dry_run) {
			char sn[300];
			snprintf(sn, sizeof(sn), "/%s", de->d_name + 4);
			sem_unlink(sn);
		}
		count++;
	}
	if (state == OPEN)
		shm_map_close(&m);
	closedir(dir);
	return count;
}
