/*
 * werr.c - reading the writer's output error (struct shm_werr) out of shared memory and
 * composing its text, "write /var/log/a.jsonl: No space left on device". Only the writer
 * stores the record (writer/writer.c, werr_store); everyone else reads it here, so that
 * shmring_stats, shmring_flush and the tools agree on what "failing" means.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/*
 * Seqlock reader. E3 (acquire load of seq) pairs with the writer's E2 (release store of
 * the even count after its stores); E4 (acquire fence before the re-read) pairs with the
 * writer's E1 (release fence after its odd store): a copy that raced a store sees the
 * count change. A writer killed while storing leaves the count odd until the next writer
 * stores again: give up then (-EAGAIN) rather than spin.
 */
int shm_werr_read(const struct shm_hdr *h, struct shm_werr_view *v)
{
	const struct shm_werr *e = &h->werr;
	for (int tries = 0; tries < 1000; tries++) {
		uint32_t s1 = atomic_load_explicit(&e->seq, memory_order_acquire); /* E3 */
		if (s1 & 1) {
			sched_yield();
			continue;
		}
		v->op = atomic_load_explicit(&e->op, memory_order_relaxed);
		v->err = atomic_load_explicit(&e->err, memory_order_relaxed);
		v->since_ns = atomic_load_explicit(&e->since, memory_order_relaxed);
		atomic_thread_fence(memory_order_acquire); /* E4 */
		if (atomic_load_explicit(&e->seq, memory_order_relaxed) == s1) {
			if (v->op == SHMRING_WOP_NONE)
				v->err = 0, v->since_ns = 0;
			return 0;
		}
	}
	memset(v, 0, sizeof(*v));
	return -EAGAIN;
}

void shm_werr_stats(const struct shm_hdr *h, struct shmring_stats *st)
{
	struct shm_werr_view v;
	if (shm_werr_read(h, &v))
		return; /* unreadable: reported as no error (stats are a snapshot anyway) */
	st->writer_errno = v.err;
	st->writer_error_op = v.op;
	st->writer_error_since_ns = v.since_ns;
}

const char *shm_werr_op_name(unsigned op)
{
	static const char *const names[] = {
		[SHMRING_WOP_NONE] = "none",     [SHMRING_WOP_OPEN] = "open",
		[SHMRING_WOP_WRITE] = "write",   [SHMRING_WOP_FSYNC] = "fsync",
		[SHMRING_WOP_ROTATE] = "rotate",
	};
	return op < sizeof(names) / sizeof(names[0]) ? names[op] : "output";
}

int shm_werr_text(const struct shm_hdr *h, char *buf, size_t len)
{
	struct shm_werr_view v;
	if (!buf || !len)
		return -EINVAL;
	buf[0] = 0;
	int rc = shm_werr_read(h, &v);
	if (rc || v.op == SHMRING_WOP_NONE)
		return rc;
	char path[SHM_PATH_MAX];
	shm_path_read(h, path);
	char why[128];
	const char *e = strerror_r(v.err, why, sizeof(why)); /* GNU: may return a static string */
	int n = path[0] ? snprintf(buf, len, "%s %s: %s", shm_werr_op_name(v.op), path, e)
			: snprintf(buf, len, "%s: %s", shm_werr_op_name(v.op), e);
	if (n < 0)
		return -EINVAL;
	return (size_t)n < len ? n : (int)(len - 1);
}

SHM_EXPORT int shmring_writer_error(const shmring *r, char *buf, size_t len)
{
	if (!r || !buf || !len)
		return -EINVAL;
	return shm_werr_text(shm_ring_map((shmring *)r)->hdr, buf, len);
}
