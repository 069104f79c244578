/*
 * bench_micro.c - the pieces of the end-to-end figures, each on its own: the timer, a null
 * system call, packing and converting one record, shmring_send with no writer running, and
 * ways of writing the JSONL file (batch sizes, preallocation, mmap, O_DIRECT, one line per
 * write) - to tell what bounds the writer, measured rather than guessed.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "shmring.h"
#include "shmring/json.h"
#include "shmring/reserve.h"

static void mrow(struct micro_env *e, const char *name, const char *variant, size_t batch,
		 double wall_ns, double cpu_ns, const char *note)
{
	char w[32], c[32] = ""; /* no CPU figure (negative): an empty column */
	snprintf(w, sizeof(w), "%.1f", wall_ns);
	if (cpu_ns >= 0)
		snprintf(c, sizeof(c), "%.1f", cpu_ns);
	fprintf(e->md, "| %s | %s | %s | %s | %s |\n", name, variant, w, cpu_ns >= 0 ? c : "", note);
	/* Same columns as the end-to-end rows: wall ns in p50_ns, CPU ns in cpu_ns_per_rec. */
	fprintf(e->csv, "micro,\"%s\",\"%s\",0,,0,%zu,,,,,,%.1f,,,,,,,,,%s,,,,,,,,,,,1,,,ok\n", name, variant, batch,
		wall_ns, cpu_ns >= 0 ? c : "");
}

/* Best of `reps` runs of body, ns per iteration. Runs are kept short (a few ms) and many,
 * so that on a shared machine some of them run undisturbed: noise only ever adds. */
#define BEST_NS(reps, n, body)                                                          \
	({                                                                              \
		double best_ = 1e30;                                                    \
		for (int r_ = 0; r_ < (reps); r_++) {                                   \
			uint64_t t0_ = bench_now_ns();                                  \
			for (long i = 0; i < (n); i++) {                                \
				body;                                                   \
			}                                                               \
			double d_ = (double)(bench_now_ns() - t0_) / (double)(n);       \
			if (d_ < best_)                                                 \
				best_ = d_;                                             \
		}                                                                       \
		best_;                                                                  \
	})

/*
 * One cache line handed back and forth between a thread on CPU 0 and one on CPU 1: half a
 * round trip is what a line written on one CPU costs the other to take (a producer's first
 * store into a slot the writer read, a claim on a word its free pass wrote). 0 when there
 * is one CPU or pinning fails.
 */
static _Alignas(64) _Atomic long pp_ball;
static long pp_n;

static void cpu_only(cpu_set_t *s, int cpu)
{
	CPU_ZERO(s);
	CPU_SET(cpu, s);
}

/* Each side waits for its turn (acquire: the other's store), then passes the ball. */
static void pp_play(long first)
{
	for (long i = first; i < 2 * pp_n; i += 2) {
		while (atomic_load_explicit(&pp_ball, memory_order_acquire) != i)
			;
		atomic_store_explicit(&pp_ball, i + 1, memory_order_release);
	}
}

static void *pp_other(void *arg)
{
	(void)arg;
	pp_play(1);
	return NULL;
}

/* Best of reps; 0 if either thread cannot be placed (the other starts pinned to CPU 1
 * or not at all, so neither side can wait for a partner that never plays). */
static double line_handoff_ns(long n, int reps)
{
	double best = 0;
	cpu_set_t old, c0, c1;
	pthread_attr_t a;
	if (pthread_getaffinity_np(pthread_self(), sizeof(old), &old))
		return 0;
	cpu_only(&c0, 0);
	cpu_only(&c1, 1);
	pp_n = n;
	for (int r = 0; r < reps; r++) {
		pthread_t t;
		int bad = pthread_attr_init(&a);
		if (!bad)
			bad = pthread_attr_setaffinity_np(&a, sizeof(c1), &c1) ||
			      pthread_setaffinity_np(pthread_self(), sizeof(c0), &c0);
		atomic_store(&pp_ball, 0);
		if (!bad)
			bad = pthread_create(&t, &a, pp_other, NULL);
		pthread_attr_destroy(&a);
		if (bad)
			break;
		uint64_t t0 = bench_now_ns();
		pp_play(0);
		while (atomic_load_explicit(&pp_ball, memory_order_acquire) != 2 * n)
			;
		double d = (double)(bench_now_ns() - t0) / (double)(2 * n);
		pthread_join(t, NULL);
		if (best == 0 || d < best)
			best = d;
	}
	pthread_setaffinity_np(pthread_self(), sizeof(old), &old);
	return best;
}

/* A fixbuf that counts how often msgpack-c calls it. */
struct cfixbuf {
	struct fixbuf fb;
	uint64_t calls;
};

static int counting_write(void *data, const char *buf, size_t len)
{
	struct cfixbuf *c = data;
	c->calls++;
	return fixbuf_write(&c->fb, buf, len);
}

static void quiet_log(enum shmring_log_level l, const char *m, void *c)
{
	(void)l, (void)m, (void)c;
}

/* A ring whose pages this process has touched once (a writer drained one full lap), then
 * the writer stopped: sends land in an empty ring and nobody else touches its lines. */
static int ring_no_writer(struct micro_env *e, const struct pool *pl, const char *name, unsigned cap,
			  shmring **out)
{
	char out_path[400], caps[16];
	snprintf(caps, sizeof(caps), "%u", cap);
	snprintf(out_path, sizeof(out_path), "%s/micro-ring.jsonl", e->dir);
	shmring_unlink(name);
	pid_t w = fork();
	if (w == 0) {
		int fd = open("/dev/null", O_WRONLY);
		dup2(fd, 2);
		execl(e->writer, e->writer, "--ring", name, "--out", out_path, "--capacity", caps,
		      "--slot-size", "512", (char *)NULL);
		_exit(127);
	}
	shmring *r = NULL;
	for (int i = 0; i < 2000; i++) {
		struct shmring_stats st;
		if (!r && shmring_attach(name, &r))
			r = NULL;
		if (r && shmring_stats(r, &st) == 0 && st.writer_alive && st.writer_pid == w)
			break;
		struct timespec d = { 0, 1000000 };
		nanosleep(&d, NULL);
	}
	int rc = r ? 0 : -ENOENT;
	for (long i = 0; rc == 0 && i < (long)cap + 1024; i++)
		rc = shmring_send_wait(r, pl->mp[i % POOL_SIZE], pl->mp_len[i % POOL_SIZE], 1000);
	for (int i = 0; rc == 0 && i < 100 && (rc = shmring_flush(r)) == -ETIMEDOUT; i++)
		;
	kill(w, SIGTERM);
	waitpid(w, NULL, 0);
	unlink(out_path);
	*out = r;
	return rc;
}

/* ---- the file-writing experiments --------------------------------------------------- */

enum wmethod { W_WRITE, W_FALLOC, W_AHEAD, W_REWRITE, W_MMAP, W_DIRECT, W_LINE };

struct lines {
	char *buf;           /* whole lines, back to back, 4096-aligned */
	size_t len;
	uint32_t *ll;        /* line lengths */
	size_t nl;
	double avg;
};

static int lines_build(struct lines *L, const struct pool *pl, size_t bytes)
{
	if (posix_memalign((void **)&L->buf, 4096, bytes))
		return -ENOMEM;
	L->ll = malloc(bytes / 64 * sizeof(*L->ll));
	L->len = L->nl = 0;
	for (unsigned i = 0;; i++) {
		char tmp[4096];
		ssize_t k = shmring_msgpack_to_json(pl->mp[i % POOL_SIZE], pl->mp_len[i % POOL_SIZE], tmp,
						    sizeof(tmp) - 1, NULL);
		if (k < 0)
			return (int)k;
		tmp[k++] = '\n';
		if (L->len + (size_t)k > bytes)
			break;
		memcpy(L->buf + L->len, tmp, (size_t)k);
		L->len += (size_t)k;
		L->ll[L->nl++] = (uint32_t)k;
	}
	/* Batches are cut from a buffer of exactly `bytes`: pad the tail with the first lines. */
	memcpy(L->buf + L->len, L->buf, bytes - L->len);
	L->avg = (double)L->len / (double)L->nl;
	L->len = bytes;
	return 0;
}

/*
 * The writer's serial work without the ring protocol: records read in order from a 32 MiB
 * array of 512-byte slots (the benchmark ring's size, so they come from memory as the
 * writer's do), converted into a batch buffer, written with write(2) when it is full;
 * `ahead`: blocks reserved 8 MiB ahead and given back at the end, as shmring-writer does;
 * -1: no write(2) at all (the batch is dropped): what a second thread that wrote would
 * leave to the converting one.
 */
#define CW_SLOTS 65536u
static int cw_test(struct micro_env *e, const uint8_t *slots, const uint32_t *lens, size_t batch,
		   int ahead, long nrec, double *wall, double *cpu)
{
	char path[400];
	snprintf(path, sizeof(path), "%s/micro-cw.jsonl", e->dir);
	unlink(path);
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600), rc = 0;
	char *buf = malloc(batch);
	if (fd < 0 || !buf) {
		rc = fd < 0 ? -errno : -ENOMEM;
		goto out;
	}
	size_t used = 0, size = 0, end = 0;
	uint64_t c0, c1;
	self_cpu(&c0, NULL);
	uint64_t t0 = bench_now_ns();
	for (long i = 0; rc == 0 && i <= nrec; i++) {
		size_t s = (size_t)i % CW_SLOTS;
		size_t need = i < nrec ? shmring_json_bound(lens[s]) + 1 : batch + 1;
		if (batch - used < need) {
			if (ahead && size + used > end &&
			    fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)size, (off_t)(used + (8u << 20))) == 0)
				end = size + used + (8u << 20);
			rc = ahead < 0 ? 0 : write_all(fd, buf, used);
			size += used;
			used = 0;
		}
		if (i == nrec)
			break;
		ssize_t k = shmring_msgpack_to_json(slots + s * 512, lens[s], buf + used, batch - used, NULL);
		if (k < 0) {
			rc = (int)k;
			break;
		}
		buf[used + (size_t)k] = '\n';
		used += (size_t)k + 1;
	}
	if (rc == 0 && ahead > 0 && ftruncate(fd, (off_t)size) < 0)
		rc = -errno;
	uint64_t t1 = bench_now_ns();
	self_cpu(&c1, NULL);
	*wall = (double)(t1 - t0) / (double)nrec;
	*cpu = (double)(c1 - c0) / (double)nrec;
out:
	free(buf);
	if (fd >= 0)
		close(fd);
	unlink(path);
	return rc;
}

/*
 * What a two-thread writer would reach, without building it: the converting thread fills
 * one batch while a second thread reserves ahead and write(2)s the other (two buffers,
 * handed over whole, in order). The hand-off is once a batch (~2900 records of 1 MiB), so a
 * mutex and a condition variable cost nothing a record. Wall time a record is the pair's
 * throughput on this machine's two CPUs with no producer; CPU is both threads'.
 */
struct cw2 {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	char *buf[2];
	size_t len[2];		/* bytes handed to the writing thread; 0: the converter's */
	int fd, rc, stop;
};

static void *cw2_write(void *arg)
{
	struct cw2 *c = arg;
	size_t size = 0, end = 0;

	for (unsigned k = 0;; k ^= 1) {
		pthread_mutex_lock(&c->mu);
		while (!c->len[k] && !c->stop)
			pthread_cond_wait(&c->cv, &c->mu);
		size_t n = c->len[k];
		pthread_mutex_unlock(&c->mu);
		if (!n)		/* stopped, and buffers are handed over in order: all written */
			break;
		if (size + n > end &&
		    fallocate(c->fd, FALLOC_FL_KEEP_SIZE, (off_t)size, (off_t)(n + (8u << 20))) == 0)
			end = size + n + (8u << 20);
		int rc = write_all(c->fd, c->buf[k], n);
		size += n;
		pthread_mutex_lock(&c->mu);
		if (rc)
			c->rc = rc;
		c->len[k] = 0;
		pthread_cond_broadcast(&c->cv);
		pthread_mutex_unlock(&c->mu);
	}
	if (ftruncate(c->fd, (off_t)size) < 0 && !c->rc)
		c->rc = -errno;
	return NULL;
}

/* Hand buffer k (used bytes) to the writing thread; wait until the other one is free. */
static unsigned cw2_hand_off(struct cw2 *c, unsigned k, size_t used)
{
	pthread_mutex_lock(&c->mu);
	c->len[k] = used;
	pthread_cond_broadcast(&c->cv);
	k ^= 1;
	while (c->len[k])
		pthread_cond_wait(&c->cv, &c->mu);
	pthread_mutex_unlock(&c->mu);
	return k;
}

static int cw2_test(struct micro_env *e, const uint8_t *slots, const uint32_t *lens, size_t batch,
		    long nrec, double *wall, double *cpu)
{
	struct cw2 c = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
	char path[400];
	pthread_t th;
	int rc = 0;

	snprintf(path, sizeof(path), "%s/micro-cw2.jsonl", e->dir);
	unlink(path);
	c.fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	c.buf[0] = malloc(batch);
	c.buf[1] = malloc(batch);
	if (c.fd < 0 || !c.buf[0] || !c.buf[1]) {
		rc = c.fd < 0 ? -errno : -ENOMEM;
		goto out;
	}
	uint64_t c0, c1;
	self_cpu(&c0, NULL);
	uint64_t t0 = bench_now_ns();
	if ((rc = -pthread_create(&th, NULL, cw2_write, &c)))
		goto out;
	unsigned k = 0;
	size_t used = 0, total = 0;
	for (long i = 0; i < nrec; i++) {
		size_t s = (size_t)i % CW_SLOTS;
		if (batch - used < shmring_json_bound(lens[s]) + 1) {
			k = cw2_hand_off(&c, k, used);
			total += used;
			used = 0;
		}
		ssize_t n = shmring_msgpack_to_json(slots + s * 512, lens[s], c.buf[k] + used,
						    batch - used, NULL);
		if (n < 0) {
			rc = (int)n;
			break;
		}
		c.buf[k][used + (size_t)n] = '\n';
		used += (size_t)n + 1;
	}
	if (used)
		cw2_hand_off(&c, k, used);
	total += used;
	pthread_mutex_lock(&c.mu);
	c.stop = 1;
	pthread_cond_broadcast(&c.cv);
	pthread_mutex_unlock(&c.mu);
	pthread_join(th, NULL);
	uint64_t t1 = bench_now_ns();
	self_cpu(&c1, NULL);
	if (!rc)
		rc = c.rc;
	struct stat st;
	if (!rc && (fstat(c.fd, &st) < 0 || (size_t)st.st_size != total))
		rc = -EIO;	/* every byte handed over is in the file, once */
	*wall = (double)(t1 - t0) / (double)nrec;
	*cpu = (double)(c1 - c0) / (double)nrec;
out:
	free(c.buf[0]);
	free(c.buf[1]);
	if (c.fd >= 0)
		close(c.fd);
	unlink(path);
	return rc;
}

static int write_test(struct micro_env *e, const struct lines *L, enum wmethod m, size_t batch,
		      size_t total, double *wall, double *cpu)
{
	char path[400];
	snprintf(path, sizeof(path), "%s/micro-write.jsonl", e->dir);
	unlink(path);
	int flags = O_WRONLY | O_CREAT | O_CLOEXEC;
	if (m == W_DIRECT)
		flags |= O_DIRECT;
	else if (m != W_MMAP && m != W_REWRITE)
		flags |= O_APPEND;
	if (m == W_MMAP)
		flags = O_RDWR | O_CREAT | O_CLOEXEC;
	int fd = open(path, flags, 0600), rc = 0;
	if (fd < 0)
		return -errno;
	if (m == W_FALLOC && fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)total) < 0)
		rc = -errno;
	if (m == W_MMAP && fallocate(fd, 0, 0, (off_t)total) < 0)
		rc = -errno;
	if (m == W_REWRITE)
		for (size_t off = 0; rc == 0 && off < total; off += batch)
			rc = write_all(fd, L->buf + off % L->len, batch);
	uint64_t c0, c1;
	self_cpu(&c0, NULL);
	uint64_t t0 = bench_now_ns();
	switch (m) {
	case W_AHEAD: /* what shmring-writer does: 8 MiB reserved ahead, given back at the end */
		for (size_t off = 0, end = 0; rc == 0 && off < total; off += batch) {
			if (off + batch > end && fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)off,
							   (off_t)(batch + (8u << 20))) == 0)
				end = off + batch + (8u << 20);
			rc = write_all(fd, L->buf + off % L->len, batch);
		}
		if (rc == 0 && ftruncate(fd, (off_t)total) < 0)
			rc = -errno;
		break;
	case W_WRITE:
	case W_FALLOC:
	case W_DIRECT:
		for (size_t off = 0; rc == 0 && off < total; off += batch)
			rc = write_all(fd, L->buf + off % L->len, batch);
		break;
	case W_REWRITE:
		for (size_t off = 0; rc == 0 && off < total; off += batch)
			if (pwrite(fd, L->buf + off % L->len, batch, (off_t)off) != (ssize_t)batch)
				rc = -EIO;
		break;
	case W_MMAP: {
		char *map = mmap(NULL, total, PROT_WRITE, MAP_SHARED, fd, 0);
		if (map == MAP_FAILED) {
			rc = -errno;
			break;
		}
		for (size_t off = 0; off < total; off += batch)
			memcpy(map + off, L->buf + off % L->len, batch);
		munmap(map, total);
		break;
	}
	case W_LINE: {
		size_t off = 0, done = 0;
		for (size_t i = 0; rc == 0 && done < total; i = (i + 1) % L->nl) {
			if (write(fd, L->buf + off, L->ll[i]) != (ssize_t)L->ll[i])
				rc = -EIO;
			off = i + 1 == L->nl ? 0 : off + L->ll[i];
			done += L->ll[i];
		}
		break;
	}
	}
	uint64_t t1 = bench_now_ns();
	self_cpu(&c1, NULL);
	close(fd);
	unlink(path);
	double recs = (double)total / L->avg;
	*wall = (double)(t1 - t0) / recs;
	*cpu = (double)(c1 - c0) / recs;
	return rc;
}

/* Output room for one record as the writer gives it, shmring_json_bound() of the record
 * (records up to 1763 bytes): the converter then runs its instance without room checks. */
#define CONV_BUF 32768

int micro_run(struct micro_env *e)
{
	static struct pool pl;
	char buf[CONV_BUF];
	int rc = pool_build(&pl, 0), failed = 0;
	if (rc)
		return rc;
	long n = 20000;
	int reps = e->quick ? 10 : 40;
	fprintf(e->md, "## Micro-benchmarks (one process)\n\n"
		       "| what | variant | wall ns/op | CPU ns/op | note |\n|---|---|---:|---:|---|\n");

	/* The timer itself: an empty timed region. */
	struct hist h = { 0 };
	for (long i = 0; i < n; i++) {
		uint64_t t0 = tick_start();
		uint64_t t1 = tick_end();
		hist_add(&h, t1 - t0);
	}
	char tnote[160];
	snprintf(tnote, sizeof(tnote), "included in every latency figure; p99 %.0f, p99.9 %.0f ns",
		 hist_quantile_ns(&h, 0.99), hist_quantile_ns(&h, 0.999));
	mrow(e, "timer", "empty timed region p50", 0, hist_quantile_ns(&h, 0.5), -1, tnote);

	double ns = BEST_NS(reps, n, (void)syscall(SYS_getppid));
	mrow(e, "null syscall", "getppid", 0, ns, -1, "");

	ns = line_handoff_ns(e->quick ? 20000 : 100000, 5);
	if (ns > 0)
		mrow(e, "cache line", "handed from CPU 0 to CPU 1 and back: one way", 0, ns, -1,
		     "what a store into a line the other CPU wrote last waits for");

	volatile ssize_t sink = 0;
	ns = BEST_NS(reps, n, sink += shmring_msgpack_to_json(pl.mp[i % POOL_SIZE], pl.mp_len[i % POOL_SIZE],
							    buf, sizeof(buf), NULL));
	char note[200];
	snprintf(note, sizeof(note), "msgpack → JSON, the benchmark's records (%.0f B avg)",
		 (double)pl.mp_total / POOL_SIZE);
	mrow(e, "convert", "shmring_msgpack_to_json", 0, ns, -1, note);
	/* Float-heavy records (16 doubles): #14 asks that they convert no slower per byte. */
	static struct pool fp;
	if (pool_build(&fp, 0) == 0 && pool_floats(&fp) == 0) {
		double gout = 0, fout = 0;
		for (int i = 0; i < POOL_SIZE; i++) {
			gout += (double)shmring_msgpack_to_json(pl.mp[i], pl.mp_len[i], buf, sizeof(buf), NULL);
			fout += (double)shmring_msgpack_to_json(fp.mp[i], fp.mp_len[i], buf, sizeof(buf), NULL);
		}
		gout /= POOL_SIZE, fout /= POOL_SIZE;
		double fns = BEST_NS(reps, n / 4, sink += shmring_msgpack_to_json(fp.mp[i % POOL_SIZE],
						fp.mp_len[i % POOL_SIZE], buf, sizeof(buf), NULL));
		double gin = (double)pl.mp_total / POOL_SIZE, fin = (double)fp.mp_total / POOL_SIZE;
		snprintf(note, sizeof(note), "16 doubles (%.0f B → %.0f B JSON): %.3f ns per JSON byte "
			 "(%.1f per double) against %.3f for the benchmark's records (%.0f B → %.0f B): %s",
			 fin, fout, fns / fout, fns / FLOAT_KEYS, ns / gout, gin, gout,
			 fns / fout <= ns / gout ? "no slower per byte" : "slower per byte");
		mrow(e, "convert", "float-heavy records", 0, fns, -1, note);
	}
	pool_free(&fp);

	struct fixbuf fb = { (uint8_t *)buf, 0, sizeof(buf) };
	ns = BEST_NS(reps, n, sink += build_and_pack(&pl, (uint64_t)i, &fb));
	mrow(e, "build + encode", "shmring_audit_pack with ts = now", 0, ns, -1, "what pipeline mode adds per send");
	ns = BEST_NS(reps, n, {
		msgpack_packer pk;
		fb.used = 0;
		msgpack_packer_init(&pk, &fb, fixbuf_write);
		sink += shmring_audit_pack(&pk, &pl.rec[i % POOL_SIZE]);
	});
	mrow(e, "build + encode", "shmring_audit_pack with ts given", 0, ns, -1, "without reading the clock");
	{
		struct cfixbuf cb = { { (uint8_t *)buf, 0, sizeof(buf) }, 0 };
		msgpack_packer pk;
		for (int i = 0; i < POOL_SIZE; i++) {
			cb.fb.used = 0;
			msgpack_packer_init(&pk, &cb, counting_write);
			sink += shmring_audit_pack(&pk, &pl.rec[i]);
		}
		snprintf(note, sizeof(note), "the msgpack_packer's write callback is called %.1f times per record",
			 (double)cb.calls / POOL_SIZE);
		mrow(e, "build + encode", "write callbacks per record", 0, (double)cb.calls / POOL_SIZE, -1, note);
	}

	/* shmring_send into a ring nobody else touches: the send path's own cost. */
	char name[64];
	snprintf(name, sizeof(name), "bench-micro-%d", (int)getpid());
	shmring_set_log(quiet_log, NULL);
	shmring *r = NULL;
	if ((rc = ring_no_writer(e, &pl, name, 65536, &r)) == 0) {
		static struct hist hs, hw;
		memset(&hs, 0, sizeof(hs));
		memset(&hw, 0, sizeof(hw));
		for (long i = 0; i < 20000; i++) {
			uint64_t t0 = tick_start();
			rc |= shmring_send(r, pl.mp[i % POOL_SIZE], pl.mp_len[i % POOL_SIZE]);
			uint64_t t1 = tick_end();
			hist_add(&hs, t1 - t0);
		}
		ns = 1e30;
		for (int k = 0; k < 10; k++) { /* the best of 10 untimed runs of 2000 */
			uint64_t t0 = bench_now_ns();
			for (long i = 0; i < 2000; i++)
				rc |= shmring_send(r, pl.mp[i % POOL_SIZE], pl.mp_len[i % POOL_SIZE]);
			double d = (double)(bench_now_ns() - t0) / 2000.0;
			if (d < ns)
				ns = d;
		}
		/* The blocking variant on a ring with room: it never waits, so any difference is
		 * what it does before trying. */
		for (long i = 0; i < 20000; i++) {
			uint64_t a = tick_start();
			rc |= shmring_send_wait(r, pl.mp[i % POOL_SIZE], pl.mp_len[i % POOL_SIZE], 1000);
			uint64_t b = tick_end();
			hist_add(&hw, b - a);
		}
		snprintf(note, sizeof(note), "no writer running, ring pages touched before: timed p50 %.0f, p99 %.0f ns",
			 hist_quantile_ns(&hs, 0.5), hist_quantile_ns(&hs, 0.99));
		mrow(e, "shmring_send", "pre-encoded record: mean of a loop (best of 10)", 0, ns, -1, note);
		snprintf(note, sizeof(note), "same ring, room for every record (never waits): p99 %.0f ns",
			 hist_quantile_ns(&hw, 0.99));
		mrow(e, "shmring_send_wait", "timeout 1000 ms: timed p50", 0, hist_quantile_ns(&hw, 0.5), -1, note);
		if (rc)
			failed = 1;
	} else {
		failed = 1;
		mrow(e, "shmring_send", "failed", 0, 0, -1, strerror(-rc));
	}
	if (r)
		shmring_close(r);
	shmring_unlink(name);
	/* The same on a ring of 2 MiB (4096 slots): it fits in L2 and in the TLB's reach. */
	r = NULL;
	if ((rc = ring_no_writer(e, &pl, name, 4096, &r)) == 0) {
		static struct hist hs;
		memset(&hs, 0, sizeof(hs));
		for (long i = 0; i < 2000; i++) {
			uint64_t a = tick_start();
			rc |= shmring_send(r, pl.mp[i % POOL_SIZE], pl.mp_len[i % POOL_SIZE]);
			uint64_t b = tick_end();
			hist_add(&hs, b - a);
		}
		uint64_t t0 = bench_now_ns();
		for (long i = 0; i < 1600; i++)
			rc |= shmring_send(r, pl.mp[i % POOL_SIZE], pl.mp_len[i % POOL_SIZE]);
		ns = (double)(bench_now_ns() - t0) / 1600.0;
		snprintf(note, sizeof(note), "ring of 4096 x 512 B (2 MiB) instead of 32 MiB: timed p50 %.0f, p99 %.0f ns",
			 hist_quantile_ns(&hs, 0.5), hist_quantile_ns(&hs, 0.99));
		mrow(e, "shmring_send", "2 MiB ring: mean of a loop", 0, ns, -1, note);
		if (rc)
			failed = 1;
	}
	if (r)
		shmring_close(r);
	shmring_unlink(name);
	fputc('\n', e->md);

	/* Writing the file: where the writer's ~200-260 ns per record goes. */
	struct lines L;
	size_t total = e->quick ? (32u << 20) : (128u << 20);
	if ((rc = lines_build(&L, &pl, 16u << 20))) {
		pool_free(&pl);
		return rc;
	}
	fprintf(e->md, "### Writing %zu MiB of JSON lines (%.0f bytes each) to the local disk, best of 5\n\n"
		       "| method | batch | wall ns/record | CPU ns/record | note |\n|---|---|---:|---:|---|\n",
		total >> 20, L.avg);
	static const struct {
		enum wmethod m;
		size_t batch;
		const char *name, *note;
	} T[] = {
		{ W_WRITE, 64u << 10, "write(2) O_APPEND", "" },
		{ W_WRITE, 1u << 20, "write(2) O_APPEND", "shmring-writer's default" },
		{ W_WRITE, 4u << 20, "write(2) O_APPEND", "" },
		{ W_WRITE, 16u << 20, "write(2) O_APPEND", "" },
		{ W_FALLOC, 1u << 20, "fallocate(KEEP_SIZE) ahead + write(2)", "blocks reserved first" },
		{ W_FALLOC, 16u << 20, "fallocate(KEEP_SIZE) ahead + write(2)", "" },
		{ W_AHEAD, 1u << 20, "fallocate(KEEP_SIZE) 8 MiB ahead, in the loop, + write(2)",
		  "shmring-writer's way: reserving and giving back timed too" },
		{ W_REWRITE, 1u << 20, "pwrite(2) over cached pages", "no page allocation: not an append" },
		{ W_MMAP, 1u << 20, "fallocate + mmap + memcpy", "page faults instead of write(2)" },
		{ W_DIRECT, 16u << 20, "O_DIRECT write(2)", "skips the page cache; waits for the disk" },
		{ W_LINE, 0, "write(2) per line O_APPEND", "what append-file producers do" },
	};
	/* Five rounds, interleaved; the least disturbed (lowest) figure of each is kept: the
	 * machine's noise only ever adds. */
	enum { NT = sizeof(T) / sizeof(T[0]), ROUNDS = 5 };
	double best_w[NT], best_c[NT];
	int err[NT];
	for (size_t i = 0; i < NT; i++)
		best_w[i] = best_c[i] = 1e30, err[i] = 0;
	for (int round = 0; round < ROUNDS; round++)
		for (size_t i = 0; i < NT; i++) {
			double wall = 0, cpu = 0;
			size_t tot = T[i].m == W_DIRECT ? total / 4 : T[i].m == W_LINE ? total / 8 : total;
			if ((rc = write_test(e, &L, T[i].m, T[i].batch, tot, &wall, &cpu))) {
				err[i] = rc;
				continue;
			}
			if (wall < best_w[i])
				best_w[i] = wall;
			if (cpu < best_c[i])
				best_c[i] = cpu;
		}
	for (size_t i = 0; i < NT; i++) {
		char b[32];
		if (T[i].batch >= (1u << 20))
			snprintf(b, sizeof(b), "%zu MiB", T[i].batch >> 20);
		else if (T[i].batch)
			snprintf(b, sizeof(b), "%zu KiB", T[i].batch >> 10);
		else
			snprintf(b, sizeof(b), "1 line");
		if (err[i]) {
			fprintf(e->md, "| %s | %s | failed: %s | | |\n", T[i].name, b, strerror(-err[i]));
			failed = 1;
			continue;
		}
		fprintf(e->md, "| %s | %s | %.0f | %.0f | %s |\n", T[i].name, b, best_w[i], best_c[i], T[i].note);
		fprintf(e->csv, "micro,write,\"%s\",0,,0,%zu,,,,,,%.1f,,,,,,,,,%.1f,,,,,,,,,,,1,,,ok\n", T[i].name,
			T[i].batch, best_w[i], best_c[i]);
		fprintf(stderr, "micro: %-40s %8s  %6.0f ns/rec wall  %6.0f ns/rec CPU\n", T[i].name, b,
			best_w[i], best_c[i]);
	}
	fputc('\n', e->md);

	/* Convert + write(2): the writer's serial work per record, batch size and reservation. */
	static const struct {
		size_t batch;
		int ahead;
	} CW[] = { { 256u << 10, 0 }, { 512u << 10, 0 }, { 1u << 20, 0 }, { 2u << 20, 0 },
		   { 256u << 10, 1 }, { 1u << 20, 1 }, { 1u << 20, -1 }, { 256u << 10, 2 }, { 1u << 20, 2 } };
	/* ahead: 1 reserve, 0 not, -1 no write(2), 2 a second thread reserves and writes */
	static const char *const cw_what[] = { "no write(2) at all: the converting thread's share",
					       "no", "yes",
					       "yes, by a second thread: convert ∥ write(2)" };
	static const char *const cw_tag[] = { " no write", "", " ahead", " two threads" };
	enum { NCW = sizeof(CW) / sizeof(CW[0]) };
	uint8_t *slots = malloc((size_t)CW_SLOTS * 512);
	uint32_t *lens = malloc(CW_SLOTS * sizeof(*lens));
	if (slots && lens) {
		for (unsigned i = 0; i < CW_SLOTS; i++) {
			lens[i] = pl.mp_len[i % POOL_SIZE];
			memcpy(slots + (size_t)i * 512, pl.mp[i % POOL_SIZE], lens[i]);
		}
		double cw_w[NCW], cw_c[NCW];
		int cw_err = 0;
		long nrec = e->quick ? 100000 : 400000;
		for (int i = 0; i < NCW; i++)
			cw_w[i] = cw_c[i] = 1e30;
		for (int round = 0; round < 5; round++)
			for (int i = 0; i < NCW; i++) {
				double wall = 0, cpu = 0;
				if ((rc = CW[i].ahead == 2
						  ? cw2_test(e, slots, lens, CW[i].batch, nrec, &wall, &cpu)
						  : cw_test(e, slots, lens, CW[i].batch, CW[i].ahead, nrec,
							    &wall, &cpu)))
					cw_err = rc;
				if (wall < cw_w[i])
					cw_w[i] = wall;
				if (cpu < cw_c[i])
					cw_c[i] = cpu;
			}
		fprintf(e->md, "### Convert + write(2): the writer's serial work, and split over two threads, %ld records from a 32 MiB "
			       "array of 512 B slots, best of 5\n\n"
			       "| batch | blocks reserved 8 MiB ahead | wall ns/record | CPU ns/record |\n"
			       "|---:|---|---:|---:|\n", nrec);
		for (int i = 0; i < NCW; i++) {
			char b[32];
			snprintf(b, sizeof(b), "%zu KiB", CW[i].batch >> 10);
			const char *what = cw_what[CW[i].ahead + 1], *tag = cw_tag[CW[i].ahead + 1];
			if (cw_err)
				fprintf(e->md, "| %s | %s | failed: %s | |\n", b, what, strerror(-cw_err));
			else
				fprintf(e->md, "| %s | %s | %.0f | %.0f |\n", b, what, cw_w[i], cw_c[i]);
			fprintf(e->csv, "micro,\"convert + write\",\"%s%s\",0,,0,%zu,,,,,,%.1f,,,,,,,,,%.1f,,,,,,,,,,,1,,,ok\n",
				b, tag, CW[i].batch, cw_w[i], cw_c[i]);
			fprintf(stderr, "micro: convert + write(2) %8s%s  %6.0f ns/rec wall  %6.0f ns/rec CPU\n", b,
				tag, cw_w[i], cw_c[i]);
		}
		fputc('\n', e->md);
		failed |= cw_err != 0;
	}
	free(slots);
	free(lens);
	(void)sink;
	free(L.buf);
	free(L.ll);
	pool_free(&pl);
	return failed;
}

/* Fixed-count loops for `valgrind --tool=callgrind`: Ir per call of each function is its
 * inclusive cost divided by n (printed). The ring has no writer: n <= 60000 fit. */
/* Each kind of record through its own symbol, so that callgrind's inclusive costs keep
 * them apart (the wrapper adds a call and a return). gcc's noipa also keeps it from
 * folding the two identical bodies into one; clang has no noipa and does not fold them. */
#ifdef __clang__
#define BENCH_OWN_SYMBOL __attribute__((noinline))
#else
#define BENCH_OWN_SYMBOL __attribute__((noipa))
#endif
BENCH_OWN_SYMBOL static ssize_t convert_generic(const uint8_t *p, size_t len, char *out, size_t cap)
{
	return shmring_msgpack_to_json(p, len, out, cap, NULL);
}

BENCH_OWN_SYMBOL static ssize_t convert_floats(const uint8_t *p, size_t len, char *out, size_t cap)
{
	return shmring_msgpack_to_json(p, len, out, cap, NULL);
}

int micro_ir(long n)
{
	static struct pool pl;
	char buf[CONV_BUF], name[64];
	struct fixbuf fb = { (uint8_t *)buf, 0, sizeof(buf) };
	shmring *r;
	if (n > 60000)
		n = 60000;
	if (pool_build(&pl, 0))
		return -1;
	snprintf(name, sizeof(name), "bench-ir-%d", (int)getpid());
	shmring_unlink(name);
	struct shmring_options o = { .capacity = 65536, .slot_size = 512 };
	shmring_set_log(quiet_log, NULL);
	int rc = shmring_open(name, &o, &r);
	if (rc) {
		fprintf(stderr, "shmring_open: %s\n", strerror(-rc));
		return rc;
	}
	for (long i = 0; i < n; i++)
		rc |= shmring_send(r, pl.mp[i % POOL_SIZE], pl.mp_len[i % POOL_SIZE]);
	for (long i = 0; i < n; i++)
		rc |= build_and_pack(&pl, (uint64_t)i, &fb);
	double gout = 0, fout = 0;
	for (long i = 0; i < n; i++)
		gout += (double)convert_generic(pl.mp[i % POOL_SIZE], pl.mp_len[i % POOL_SIZE], buf, sizeof(buf));
	static struct pool fp;
	if (pool_build(&fp, 0) == 0 && pool_floats(&fp) == 0)
		for (long i = 0; i < n; i++)
			fout += (double)convert_floats(fp.mp[i % POOL_SIZE], fp.mp_len[i % POOL_SIZE], buf, sizeof(buf));
	shmring_close(r);
	shmring_unlink(name);
	/* Each pool_build packed its records once more. JSON sizes without the newline. */
	printf("calls shmring_send=%ld shmring_audit_pack=%ld convert_generic=%ld convert_floats=%ld "
	       "avg_record=%.0f avg_json=%.1f float_record=%.0f float_json=%.1f\n",
	       n, n + 2 * POOL_SIZE, n, n, (double)pl.mp_total / POOL_SIZE, gout / (double)n,
	       (double)fp.mp_total / POOL_SIZE, fout / (double)n);
	pool_free(&pl);
	pool_free(&fp);
	return rc;
}
