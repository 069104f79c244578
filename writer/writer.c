/*
 * writer.c - shmring-writer's process: the output file (rotation, reopen, failures),
 * batching, the commit intent, signals and idle waits. The slot reader it drives — the
 * consumer half of the protocol (W1…W4, revocation, quarantine) — is libshm/drain.c.
 *
 * Each published record becomes one JSON line in a private batch buffer; when the buffer
 * is large, the ring is momentarily empty, or a flush sentinel asks for it, the batch is
 * written under a commit intent, its slots freed and progress published
 * (shm_drain_commit: W3, W4), and only then are the sentinels posted.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <semaphore.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "drain.h"
#include "shmring/json.h"
#include "writer.h"

volatile sig_atomic_t writer_stop;
volatile sig_atomic_t writer_hup;

/* A ring truncated under us turns the next access into SIGBUS: the handler jumps back to
 * writer_run, which reports the ring damaged and stops cleanly (exit 4). */
static sigjmp_buf bus_jmp;
static volatile sig_atomic_t bus_armed;
static uintptr_t bus_lo[2], bus_hi[2];

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	uintptr_t a = (uintptr_t)si->si_addr;
	for (int i = 0; i < 2; i++)
		if (bus_armed && a >= bus_lo[i] && a < bus_hi[i])
			siglongjmp(bus_jmp, 1);
	signal(sig, SIG_DFL); /* not ours: die as we would have */
	raise(sig);
}

#define MAX_SENTINELS 256

struct wr {
	const struct writer_opts *o;
	struct shm_map m;
	struct shm_hdr *h;
	struct shm_drain d;     /* the slot reader: head, freed, stall clock (libshm/drain.c) */
	int out_fd;
	char *buf;
	size_t used, cap;
	uint64_t b_written, b_invalid; /* lines of the batch (the drain counts the rest) */
	struct shm_totals t;        /* committed: written ... flushes_done, losses marked */
	uint64_t loss_seen;         /* hdr->loss_seq when last looked at */
	unsigned commits, crash_after, crash_point; /* tests: SHMRING_WRITER_CRASH=N:P */
	int out_regular;            /* a regular file: its size tells what a batch reached */
	uint64_t alloc_end;         /* blocks reserved up to here (reserve_ahead); 0 = none */
	int prealloc_off;           /* the file system cannot reserve, or we cannot give back */
	uint64_t out_dev, out_ino, file_size;
	unsigned werr_op;           /* the output error as last stored in hdr->werr */
	int werr_err;
	uint64_t werr_logged;       /* when it was last logged (CLOCK_MONOTONIC ns) */
	struct { uint64_t pos; char name[SHM_NAME_MAX + 64]; } sent[MAX_SENTINELS];
	unsigned nsent;
	uint64_t last_drops, last_report_ns, idle_since;
	uint64_t last_record_ns;    /* when step() last consumed something */
	uint64_t metrics_due;       /* --metrics-file: next rewrite (CLOCK_MONOTONIC ns) */
	int metrics_err;            /* the errno of the last failed rewrite, logged once */
	char sem_prefix[SHM_NAME_MAX + 32];
	size_t sem_prefix_len;
};

static void wlog(const char *lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void wlog(const char *lvl, const char *fmt, ...)
{
	char ts[40];
	struct timespec now;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s.%06ldZ shmring-writer %s ", ts, now.tv_nsec / 1000, lvl);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/*
 * Blocks reserved ahead of the end of the file with fallocate(FALLOC_FL_KEEP_SIZE): ext4
 * then finds each page's block allocated instead of reserving it inside write(2)
 * (ext4_da_get_block_prep, buffer heads). KEEP_SIZE leaves i_size alone, so the size still
 * says exactly what a batch reached (recover(), DESIGN §4.1). What is reserved past the
 * end is given back by release_tail() before a rotation renames the file, whenever the
 * writer lets go of it, and at open for what a killed writer left.
 */
#define PREALLOC_AHEAD (8u << 20)

static void reserve_ahead(struct wr *w)
{
	if (!w->out_regular || w->prealloc_off || w->file_size + w->used <= w->alloc_end)
		return;
	uint64_t from = w->file_size, to = from + w->used + PREALLOC_AHEAD;
	if (w->o->max_bytes && to > w->o->max_bytes) /* not past the rotation */
		to = w->o->max_bytes > from + w->used ? w->o->max_bytes : from + w->used;
	if (fallocate(w->out_fd, FALLOC_FL_KEEP_SIZE, (off_t)from, (off_t)(to - from)) < 0) {
		if (errno != ENOSPC && errno != EINTR && errno != EDQUOT)
			w->prealloc_off = 1; /* EOPNOTSUPP (tmpfs, NFS, ...), EPERM: plain writes */
		return;
	}
	w->alloc_end = to;
}

/* Give back the blocks reserved past the end of the file: ftruncate to its own size
 * frees them (ext4, xfs) and changes nothing else. Only when we reserved (or, at open,
 * found a killed writer's reservation): the file is ours alone, but an append by anyone
 * else between the fstat and the ftruncate would be cut (DESIGN §11). A file we cannot
 * truncate (the append-only attribute) gets no more reservations. */
static void release_tail(struct wr *w, int found)
{
	struct stat st;
	if ((!w->alloc_end && !found) || w->out_fd < 0 || !w->out_regular || fstat(w->out_fd, &st) < 0)
		return;
	if (ftruncate(w->out_fd, st.st_size) < 0)
		w->prealloc_off = 1;
	w->alloc_end = 0;
}

static int open_out(struct wr *w)
{
	if (strcmp(w->o->out, "-") == 0) {
		w->out_fd = STDOUT_FILENO;
		return 0;
	}
	int rc = shm_mkdir_parents(w->o->out);
	if (rc)
		return rc;
	/* O_NOFOLLOW: an audit file is never written through a symlink someone planted. */
	w->out_fd = open(w->o->out, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (w->out_fd < 0)
		return -errno;
	struct stat st;
	if (fstat(w->out_fd, &st) < 0) {
		rc = -errno;
		close(w->out_fd);
		w->out_fd = -1;
		return rc;
	}
	w->out_regular = S_ISREG(st.st_mode);
	w->out_dev = st.st_dev;
	w->out_ino = st.st_ino;
	w->file_size = (uint64_t)st.st_size;
	w->alloc_end = 0;
	/* More than a block past the size: a killed writer's reservation (reserve_ahead). */
	if (w->out_regular && (uint64_t)st.st_blocks * 512u > (uint64_t)st.st_size + (1u << 20))
		release_tail(w, 1);
	return 0;
}

static void crash_point(struct wr *w, int point);

/* PATH -> PATH.1 -> ... -> PATH.keep (the oldest is replaced), then a fresh PATH. Only
 * between batches, with nothing in flight, so a line is never split across files. */
static int rotate(struct wr *w)
{
	char from[PATH_MAX + 16], to[PATH_MAX + 16];
	release_tail(w, 0); /* before the renames: a rotated file never keeps reserved blocks */
	for (unsigned i = w->o->keep; i > 1; i--) {
		snprintf(from, sizeof(from), "%s.%u", w->o->out, i - 1);
		snprintf(to, sizeof(to), "%s.%u", w->o->out, i);
		if (rename(from, to) < 0 && errno != ENOENT)
			return -errno;
	}
	snprintf(to, sizeof(to), "%s.1", w->o->out);
	if (rename(w->o->out, to) < 0)
		return -errno;
	/* Killed here, PATH is gone and nothing is in flight (the intent of the last batch
	 * was cleared): the next writer creates PATH and goes on. */
	crash_point(w, 5);
	close(w->out_fd);
	w->out_fd = -1;
	return open_out(w);
}

static void publish_path(struct wr *w, const char *path)
{
	char abs[SHM_PATH_MAX];
	if (strcmp(path, "-") == 0 || !realpath(path, abs))
		snprintf(abs, sizeof(abs), "%s", path);
	shm_path_store(w->h, abs);
}

/*
 * The output error record in shared memory (hdr->werr), which only the writer stores:
 * shmring stat shows it, a flush that times out while it is set returns -EIO. Seqlock
 * writer: the odd count first (a count left odd by a writer killed here is made odd
 * again, then even); E1, the release fence after it, orders it before the field stores
 * (pairs with the readers' E4 fence in libshm/werr.c: a reader that copied a new field
 * sees the count changed); E2, the release store of the even count, publishes the
 * fields (pairs with the readers' E3 acquire load).
 */
static void werr_store(struct wr *w, unsigned op, int err)
{
	struct shm_werr *e = &w->h->werr;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	uint64_t since = op ? (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec : 0;
	uint32_t odd = atomic_load_explicit(&e->seq, memory_order_relaxed) | 1;
	atomic_store_explicit(&e->seq, odd, memory_order_relaxed);
	atomic_thread_fence(memory_order_release); /* E1 */
	atomic_store_explicit(&e->op, op, memory_order_relaxed);
	atomic_store_explicit(&e->err, err, memory_order_relaxed);
	atomic_store_explicit(&e->since, since, memory_order_relaxed);
	atomic_store_explicit(&e->seq, odd + 1, memory_order_release); /* E2 */
	w->werr_op = op;
	w->werr_err = err;
}

/* op failed with rc (-errno): recorded once per change of op or errno, and logged then
 * and once a minute while it goes on. */
static void werr_set(struct wr *w, unsigned op, int rc, const char *then)
{
	uint64_t now = shm_now_ns();
	if (w->werr_op == op && w->werr_err == -rc) {
		if (now - w->werr_logged < 60000000000ull)
			return;
		/* Relaxed: we are the only process that stores it. */
		uint64_t since = atomic_load_explicit(&w->h->werr.since, memory_order_relaxed);
		long long secs = (long long)time(NULL) - (long long)(since / 1000000000ull);
		wlog("ERROR", "%s %s: %s, for %lld s now; %s", shm_werr_op_name(op), w->o->out,
		     strerror(-rc), secs, then);
		w->werr_logged = now;
		return;
	}
	werr_store(w, op, -rc);
	w->werr_logged = now;
	wlog("ERROR", "%s %s: %s; %s", shm_werr_op_name(op), w->o->out, strerror(-rc), then);
}

/* op worked: clear the record if it was op's failure. */
static void werr_clear(struct wr *w, unsigned op)
{
	if (w->werr_op != op)
		return;
	werr_store(w, SHMRING_WOP_NONE, 0);
	wlog("INFO", "%s %s works again", shm_werr_op_name(op), w->o->out);
}

/*
 * After a failed output operation: 1 to try it again after a pause of 1 s, 0 to give up
 * because a stop was asked (SIGTERM, SIGINT). The pause is slept in 50 ms slices so a
 * stop is seen at once; the operation is then tried once more before giving up.
 */
static int keep_trying(void)
{
	if (writer_stop)
		return 0;
	for (int i = 0; i < 20 && !writer_stop; i++) {
		struct timespec d = { 0, 50000000L };
		nanosleep(&d, NULL);
	}
	return 1;
}

/* 1: PATH still names the file we append to (or we cannot tell: not a regular file, or
 * stat fails otherwise than ENOENT or ENOTDIR); 0: it was removed or replaced. */
static int out_is_ours(const struct wr *w)
{
	struct stat st;
	if (!w->out_regular)
		return 1;
	if (lstat(w->o->out, &st) < 0)
		return errno != ENOENT && errno != ENOTDIR;
	return (uint64_t)st.st_dev == w->out_dev && (uint64_t)st.st_ino == w->out_ino;
}

static int reopen_out(struct wr *w)
{
	release_tail(w, 0);
	if (w->out_fd > STDOUT_FILENO)
		close(w->out_fd);
	w->out_fd = -1;
	return open_out(w);
}

/*
 * Before a batch: the output is open and PATH still names it. A file removed or replaced
 * under us (rm, a rename without SIGHUP) is noticed here, before a byte of the batch goes
 * to it, and PATH is opened anew (created): no record goes to a file nobody can read.
 * One lstat(2) per batch (2-3 µs measured on this machine). A failing open is retried
 * every second; returns <0 only when a stop was asked meanwhile.
 */
static int ensure_out(struct wr *w, int force)
{
	if (strcmp(w->o->out, "-") == 0)
		return 0;
	int gone = force;
	for (;;) {
		if (w->out_fd >= 0 && !force) {
			if (out_is_ours(w))
				return 0;
			wlog("WARN", "%s was removed or replaced under the writer: opening it anew", w->o->out);
			gone = 1;
		}
		force = 0;
		int rc = reopen_out(w);
		if (rc == 0) {
			werr_clear(w, SHMRING_WOP_OPEN);
			if (gone)
				wlog("INFO", "reopened %s", w->o->out);
			return 0;
		}
		werr_set(w, SHMRING_WOP_OPEN, rc, "retrying every second, the records wait in the ring");
		if (!keep_trying())
			return rc;
	}
}

/* fdatasync for --fsync. A regular file only: a pipe or a tty has nothing to sync. The
 * failure is recorded and the lines stay confirmed: they are in the page cache, and an
 * fsync failing again after an error proves nothing (Linux reports a writeback error
 * once). */
static void sync_out(struct wr *w)
{
	if (fdatasync(w->out_fd) == 0)
		werr_clear(w, SHMRING_WOP_FSYNC);
	else if (w->out_regular)
		werr_set(w, SHMRING_WOP_FSYNC, -errno, "the lines written may not be on disk");
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t k = write(fd, p, n);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static int ensure_space(struct wr *w, size_t need);

/* Tests kill the writer at a chosen point of its Nth commit with a batch: 1 after the
 * intent, 2 after half the batch was written, 3 after the write, 4 halfway through
 * freeing, 5 in a rotation between the renames and the reopen. Only in the testing
 * build (shmring-writer-testing), through SHMRING_WRITER_CRASH=N:P. */
static void crash_point(struct wr *w, int point)
{
#ifdef SHMRING_TESTING
	if (unlikely(w->crash_point == (unsigned)point) && w->commits >= w->crash_after) {
		if (point == 2)
			(void)write_all(w->out_fd, w->buf, w->used / 2);
		if (point == 4) {
			shm_progress_begin(w->h);
			shm_drain_free(&w->d, w->d.freed, w->d.freed + (w->d.head - w->d.freed) / 2);
		}
		kill(getpid(), SIGKILL);
	}
#else
	(void)w, (void)point;
#endif
}

/* The intent of the batch about to be written to the file now open (DESIGN §4.1). */
static void intent_begin(struct wr *w)
{
	struct shm_intent *in = &w->h->intent;
	in->dev = w->out_dev;
	in->ino = w->out_ino;
	in->file_start = w->file_size;
	in->len = w->used;
	in->head_before = w->d.freed;
	in->head_after = w->d.head;
	in->totals = w->t;
	/* I1: the intent is complete before it says a batch is in flight. */
	atomic_store_explicit(&in->state, 1, memory_order_release);
}

/*
 * Asked to stop while the output fails: cut off what this batch wrote, so that the file
 * ends with a whole line, and leave the intent as it is. The batch's records are still in
 * the ring (head did not move); the next writer's recover() finds the batch absent from
 * the file (or cuts it off itself if this ftruncate failed) and writes it again: exactly
 * once, as after a SIGKILL.
 */
static int give_up(struct wr *w, size_t done, int rc)
{
	if (done && w->out_regular && ftruncate(w->out_fd, (off_t)w->h->intent.file_start) < 0) {
		/* recover() cuts it */
	}
	wlog("ERROR", "stopping while %s fails: %s; the records of positions %llu..%llu stay in "
	     "the ring for the next writer", w->o->out, strerror(-rc), (unsigned long long)w->d.freed,
	     (unsigned long long)w->d.head);
	return rc;
}

/*
 * Commit the batch: record the intent, write(2) it, free the consumed slots, publish,
 * clear the intent, then post the sentinels. A writer killed anywhere in here is
 * followed by one whose recover() finishes or redoes exactly this batch.
 */
static int commit(struct wr *w)
{
	struct shm_intent *in = &w->h->intent;
	int rc;
	if (w->used && (rc = ensure_out(w, 0)))
		return rc;
	if (w->o->max_bytes && w->out_regular && w->used && w->file_size &&
	    w->file_size + w->used > w->o->max_bytes) {
		rc = rotate(w);
		if (rc && w->out_fd >= 0)
			werr_set(w, SHMRING_WOP_ROTATE, rc, "going on in the same file");
		else if (rc && (rc = ensure_out(w, 0)))
			return rc; /* renamed, but PATH cannot be created: retried above */
		else
			werr_clear(w, SHMRING_WOP_ROTATE);
	}
	w->t.written += w->b_written;
	w->t.invalid += w->b_invalid;
	w->t.abandoned += w->d.b_abandoned;
	w->t.corrupt += w->d.b_corrupt;
	w->t.flushes_done += w->d.b_flushes;
	w->b_written = w->b_invalid = w->d.b_abandoned = w->d.b_corrupt = w->d.b_flushes = 0;
	if (w->used)
		reserve_ahead(w);
	intent_begin(w);
	if (w->used)
		w->commits++;
	if (w->used) {
		crash_point(w, 1);
		crash_point(w, 2);
	}
	if (w->used) {
		/* A full disk or an I/O error loses nothing: keep the batch and retry every
		 * second from the first byte not yet written (never from the start: no line
		 * twice), until it works or a stop is asked. */
		size_t done = 0;
		while (done < w->used) {
			ssize_t k = write(w->out_fd, w->buf + done, w->used - done);
			if (k >= 0) {
				done += (size_t)k;
				continue;
			}
			if (errno == EINTR)
				continue;
			rc = -errno;
			werr_set(w, SHMRING_WOP_WRITE, rc, "retrying every second, the records wait in the ring");
			if (!keep_trying())
				return give_up(w, done, rc);
			if (out_is_ours(w))
				continue;
			/* PATH was removed (to free space: the blocks of a file we hold open are
			 * freed only when we close it) or renamed away: cut off what the batch
			 * wrote to the old file and clear the intent (the batch is in no file
			 * now: a writer killed from here on leaves nothing in flight, and the next
			 * one reads the batch again from the ring); then write the whole batch to
			 * PATH anew under a new intent. Relaxed: a successor reads the intent only
			 * after we died, through the writer lock the kernel drops. */
			if (done && ftruncate(w->out_fd, (off_t)in->file_start) < 0)
				wlog("WARN", "cannot cut the partial batch off the old %s: %s", w->o->out,
				     strerror(errno));
			w->alloc_end = 0; /* the ftruncate gave the reservation back */
			atomic_store_explicit(&in->state, 0, memory_order_relaxed);
			wlog("WARN", "%s was removed or replaced while failing: writing the batch to it anew",
			     w->o->out);
			if ((rc = ensure_out(w, 1)))
				return give_up(w, 0, rc);
			intent_begin(w);
			done = 0;
		}
		werr_clear(w, SHMRING_WOP_WRITE);
		w->file_size += w->used;
		/* --fsync: after every batch, or before confirming a flush (durable once the
		 * flusher hears back); never by default (write(2) only). */
		if (w->o->fsync == FSYNC_ALWAYS || (w->o->fsync == FSYNC_FLUSH && w->nsent))
			sync_out(w);
		crash_point(w, 3);
		crash_point(w, 4); /* halfway through freeing */
		w->used = 0;
	}
	if (!w->used && w->o->fsync == FSYNC_FLUSH && w->nsent)
		sync_out(w);
	shm_drain_commit(&w->d, w->d.freed, w->d.head, &w->t);
	/* I2: the batch is committed (W3, W4 above) before the intent says none is in flight;
	 * pairs with I3 in recover(). */
	atomic_store_explicit(&in->state, 0, memory_order_release);
	for (unsigned i = 0; i < w->nsent; i++) {
		sem_t *s = sem_open(w->sent[i].name, 0);
		if (s == SEM_FAILED)
			continue; /* the flusher timed out and closed it: nothing to tell */
		sem_post(s);
		sem_close(s);
	}
	w->nsent = 0;
	return 0;
}

/*
 * A predecessor was killed with a batch in flight: if the whole batch is in the file,
 * finish its commit; otherwise cut the partial batch off and read it again (the ring
 * still holds every record of it, and conversion is deterministic).
 */
static int recover(struct wr *w)
{
	struct shm_hdr *h = w->h;
	struct shm_intent *in = &h->intent;
	w->t.written = atomic_load_explicit(&h->written, memory_order_relaxed);
	w->t.invalid = atomic_load_explicit(&h->invalid, memory_order_relaxed);
	w->t.abandoned = atomic_load_explicit(&h->abandoned, memory_order_relaxed);
	w->t.corrupt = atomic_load_explicit(&h->corrupt, memory_order_relaxed);
	w->t.flushes_done = atomic_load_explicit(&h->flushes_done, memory_order_relaxed);
	for (int i = 0; i < 3; i++)
		w->t.marked[i] = atomic_load_explicit(&h->marked[i], memory_order_relaxed);
	/* I3: pairs with W4 and with I1/I2 of the killed writer: an intent seen in flight
	 * was complete, and a head that moved says how far its batch got. */
	uint64_t head = atomic_load_explicit(&h->head, memory_order_acquire);
	if (atomic_load_explicit(&in->state, memory_order_acquire) != 1 || head == in->head_after) {
		atomic_store_explicit(&in->state, 0, memory_order_relaxed);
		return 0;
	}
	uint64_t span = in->head_after - in->head_before;
	if (in->head_before != head || span > w->m.g.capacity) {
		wlog("WARN", "ring %s: ignoring an inconsistent commit intent", w->o->ring);
		atomic_store_explicit(&in->state, 0, memory_order_relaxed);
		return 0;
	}
	int same = w->out_regular && in->dev == w->out_dev && in->ino == w->out_ino;
	if (same && w->file_size >= in->file_start + in->len) {
		w->t = in->totals;
		shm_drain_commit(&w->d, in->head_before, in->head_after, &w->t);
		wlog("INFO", "ring %s: the killed writer's last batch (%llu bytes) is complete",
		     w->o->ring, (unsigned long long)in->len);
	} else if (same && w->file_size >= in->file_start) {
		/* No partial line stays: the batch is written again, whole. */
		if (ftruncate(w->out_fd, (off_t)in->file_start) < 0)
			return -errno;
		if (w->file_size == in->file_start)
			wlog("INFO", "ring %s: the last writer's last batch (%llu bytes) is not in the "
			     "file; writing it", w->o->ring, (unsigned long long)in->len);
		else
			wlog("INFO", "ring %s: removed %llu bytes of a partial batch; writing it again",
			     w->o->ring, (unsigned long long)(w->file_size - in->file_start));
		w->file_size = in->file_start;
	} else {
		wlog("WARN", "ring %s: the output is not the file the killed writer used; its "
		     "last batch is written again (may repeat lines)", w->o->ring);
	}
	/* I2 again: recovery done before the intent is cleared. */
	atomic_store_explicit(&in->state, 0, memory_order_release);
	return 0;
}

static int ensure_space(struct wr *w, size_t need)
{
	if (w->cap - w->used >= need)
		return 0;
	int rc = commit(w);
	if (rc)
		return rc;
	if (w->cap < need) {
		char *nb = realloc(w->buf, need);
		if (!nb)
			return -ENOMEM;
		w->buf = nb;
		w->cap = need;
	}
	return 0;
}

/* Sentinel names are untrusted: only our own flush semaphores of this ring are posted. */
static int sentinel_name_ok(const struct wr *w, const char *s, size_t n)
{
	if (n <= w->sem_prefix_len || n >= SHM_NAME_MAX + 64 || memcmp(s, w->sem_prefix, w->sem_prefix_len))
		return 0;
	for (size_t i = w->sem_prefix_len; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || s[i] == '.'))
			return 0;
	return 1;
}

/* --mark-losses: one line telling how many records were lost since the last line. */
static int mark_losses(struct wr *w)
{
	uint64_t seq = atomic_load_explicit(&w->h->loss_seq, memory_order_relaxed);
	uint64_t ab = w->t.abandoned + w->d.b_abandoned;
	if (seq == w->loss_seen && ab == w->t.marked[2])
		return 0;
	w->loss_seen = seq;
	struct shm_psum s;
	shm_producer_sum(&w->m, &s, 0, -1);
	uint64_t now[3] = { s.dropped_full, s.dropped_oversize, ab };
	if (now[0] <= w->t.marked[0] && now[1] <= w->t.marked[1] && now[2] <= w->t.marked[2])
		return 0;
	int rc = ensure_space(w, 256);
	if (rc)
		return rc;
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	char when[40];
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	int n = snprintf(w->buf + w->used, w->cap - w->used,
			 "{\"shmring_lost\":{\"dropped_full\":%llu,\"dropped_oversize\":%llu,"
			 "\"abandoned\":%llu},\"ts\":\"%s.%06ldZ\"}\n",
			 (unsigned long long)(now[0] - w->t.marked[0]), (unsigned long long)(now[1] - w->t.marked[1]),
			 (unsigned long long)(now[2] - w->t.marked[2]), when, ts.tv_nsec / 1000);
	w->used += (size_t)n;
	memcpy(w->t.marked, now, sizeof(now));
	return 0;
}

/* --seq: the line was converted SEQ_ROOM bytes after dst; move it to dst with the key
 * "shmring_seq":POS in front. An object gets it as its first member; any other value
 * (array, string, number, ...) is wrapped as {"shmring_seq":POS,"record":VALUE}. POS is
 * the record's ring position: unique and increasing within the ring (not consecutive:
 * flush sentinels take positions too), so a reader removes the copies of an
 * at-least-once hop by this key. Returns the new length, newline included. */
#define SEQ_ROOM 64 /* {"shmring_seq":<20 digits>,"record": and the closing } */
static size_t add_seq(char *dst, const char *line, size_t k, uint64_t pos)
{
	char pre[SEQ_ROOM];
	int obj = line[0] == '{';
	int n = snprintf(pre, sizeof(pre), "{\"shmring_seq\":%llu%s", (unsigned long long)pos,
			 !obj ? ",\"record\":" : line[1] == '}' ? "" : ",");
	if (obj) { /* drop the object's own '{' */
		line++;
		k--;
	}
	memcpy(dst, pre, (size_t)n);
	memmove(dst + n, line, k); /* the regions may overlap: line is at most SEQ_ROOM on */
	if (!obj) { /* VALUE\n -> VALUE}\n */
		dst[n + k - 1] = '}';
		dst[n + k++] = '\n';
	}
	return (size_t)n + k;
}

static int convert(struct wr *w, uint64_t pos, const uint8_t *p, uint32_t len)
{
	if (w->o->mark_losses) {
		int rc = mark_losses(w);
		if (rc)
			return rc;
	}
	size_t need = shmring_json_bound(len) + 1 + (w->o->seq ? SEQ_ROOM : 0);
	int rc = ensure_space(w, need);
	if (rc)
		return rc;
	int invalid;
	char *line = w->buf + w->used + (w->o->seq ? SEQ_ROOM : 0);
	ssize_t k = shm_record_line(p, len, pos, line, w->cap - w->used - (w->o->seq ? SEQ_ROOM : 0),
				    &invalid);
	if (k < 0)
		return (int)k;
	if (w->o->seq)
		k = add_seq(w->buf + w->used, line, (size_t)k, pos);
	w->used += (size_t)k;
	w->b_invalid += (uint64_t)invalid;
	w->b_written++;
	return 0;
}

/* The drain's consumer: a record becomes a line of the batch; a sentinel of our own ring
 * is remembered and posted after the commit that covers it. */
static int on_record(void *ctx, uint64_t pos, const uint8_t *p, uint32_t len)
{
	return convert(ctx, pos, p, len);
}

static int on_sentinel(void *ctx, uint64_t pos, const uint8_t *p, uint32_t len)
{
	struct wr *w = ctx;
	if (!sentinel_name_ok(w, (const char *)p, len))
		return 0;
	if (w->nsent == MAX_SENTINELS) {
		int rc = commit(w);
		if (rc)
			return rc;
	}
	memcpy(w->sent[w->nsent].name, p, len);
	w->sent[w->nsent].name[len] = 0;
	w->sent[w->nsent++].pos = pos;
	return 0;
}

static void on_revoked(void *ctx, uint64_t pos, unsigned kind, int stopped)
{
	struct wr *w = ctx;
	wlog("WARN", "ring %s: %s at position %llu revoked after %.1f s (%s producer)", w->o->ring,
	     kind ? "flush sentinel" : "record", (unsigned long long)pos, w->o->stall_ns / 1e9,
	     stopped ? "stopped" : "dead");
}

static const struct shm_drain_ops drain_ops = { on_record, on_sentinel, on_revoked };

/*
 * --metrics-file: the ring's counters in the Prometheus text format, for node_exporter's
 * textfile collector, which must never read a half-written file: write PATH.tmp, then
 * rename it over PATH. Between commits, so the figures are one instant's. A failure is
 * logged once (and its end), never fatal: the audit trail matters more than its gauges.
 */
static void write_metrics(struct wr *w, int alive)
{
	const struct writer_opts *o = w->o;
	struct shmring_stats st;
	char *text = NULL, tmp[PATH_MAX];
	size_t len = 0;
	int fd = -1, rc;
	/* Its only error is the liveness query, and our own OFD lock is invisible to our
	 * GETLK anyway: say what we know. */
	(void)shm_stats_read(&w->m, &st, -1);
	st.writer_alive = alive;
	struct shm_metrics_ring r = { o->ring, &st };
	if ((rc = shm_metrics_text(&r, 1, &text, &len)))
		goto fail;
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", o->metrics_file) >= (int)sizeof(tmp)) {
		rc = -ENAMETOOLONG;
		goto fail;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
		goto fail;
	}
	if ((rc = write_all(fd, text, len)) < 0)
		goto fail;
	rc = close(fd) < 0 ? -errno : 0;
	fd = -1;
	if (rc < 0 || rename(tmp, o->metrics_file) < 0) {
		rc = rc < 0 ? rc : -errno;
		goto fail;
	}
	free(text);
	if (w->metrics_err)
		wlog("INFO", "metrics file %s written again", o->metrics_file);
	w->metrics_err = 0;
	return;
fail:
	if (fd >= 0)
		close(fd);
	free(text);
	if (w->metrics_err != -rc)
		wlog("WARN", "cannot write metrics file %s: %s", o->metrics_file, strerror(-rc));
	w->metrics_err = -rc;
}

static void report_drops(struct wr *w, uint64_t now)
{
	if (now - w->last_report_ns < 1000000000ull)
		return;
	w->last_report_ns = now;
	/* Once a second: a truncated object is reported before it is touched. */
	struct stat st;
	if (fstat(w->m.fd, &st) == 0 && (uint64_t)st.st_size < w->m.g.total_size)
		siglongjmp(bus_jmp, 2);
	struct shm_psum s;
	shm_producer_sum(&w->m, &s, 0, -1);
	uint64_t d = s.dropped_full + s.dropped_oversize;
	if (d != w->last_drops)
		wlog("WARN", "ring %s: %llu records dropped since last report (%llu full, %llu oversize in all)",
		     w->o->ring, (unsigned long long)(d - w->last_drops),
		     (unsigned long long)s.dropped_full, (unsigned long long)s.dropped_oversize);
	w->last_drops = d;
}

/*
 * Records arriving one every few µs to ms are the usual audit stream. If the writer slept
 * on its semaphore between them, every send would find it asleep and pay the wake-up
 * (FUTEX_WAKE, and a halted vCPU woken: ~11 µs p50 here at one record per 50 µs). So for
 * IDLE_POLL_WINDOW_NS after its last record the writer polls the ring with short sleeps
 * instead of announcing that it sleeps: senders never make a system call, records wait
 * at most IDLE_POLL_NS longer to be written (a flush too), and an idle writer costs
 * ~5000 wake-ups per second for that window, then blocks for real.
 */
#define IDLE_POLL_NS        200000ull   /* 200 µs */
#define IDLE_POLL_WINDOW_NS 50000000ull /* 50 ms */

/* Sleep until a producer publishes (it posts only if we announced we sleep). */
static void idle_wait(struct wr *w, uint64_t max_ns)
{
	struct shm_hdr *h = w->h;
	uint64_t pos = w->d.head;
	for (int i = 0; i < 256; i++) {
		/* W1: pairs with P1 (a record published) as the drain's own read does. */
		uint64_t wd = atomic_load_explicit(&w->m.words[pos & w->d.mask], memory_order_acquire);
		if (w_state(wd) != W_FREE && w_state(wd) != W_CLAIMED)
			return;
		__builtin_ia32_pause();
	}
	uint64_t now = shm_now_ns();
	if (now - w->last_record_ns < IDLE_POLL_WINDOW_NS) {
		atomic_store_explicit(&h->writer_beat_ns, now, memory_order_relaxed);
		struct timespec d = { 0, (long)IDLE_POLL_NS };
		nanosleep(&d, NULL);
		return;
	}
	/* S1 then S2 (both seq_cst): with P1/P2 at least one side sees the other. */
	atomic_store_explicit(&h->writer_sleeping, 1, memory_order_seq_cst);
	uint64_t wd = atomic_load_explicit(&w->m.words[pos & w->d.mask], memory_order_seq_cst);
	if (w_state(wd) == W_FREE || w_state(wd) == W_CLAIMED) {
		struct timespec ts = shm_ns_to_ts(shm_now_ns() + max_ns);
		sem_clockwait(&h->wake, CLOCK_MONOTONIC, &ts);
	}
	atomic_store_explicit(&h->writer_sleeping, 0, memory_order_seq_cst);
}

/*
 * --group and --mode, applied to the ring (new or existing) by the writer that serves it:
 * what the operator asked for is what the ring has, or the writer does not serve. Flush
 * semaphores are created by producers, which give them the ring's mode and group.
 */
static int ring_access(struct wr *w)
{
	const struct writer_opts *o = w->o;
	struct stat st;
	if (fstat(w->m.fd, &st) < 0)
		return -errno;
	if (o->group != (gid_t)-1 && st.st_gid != o->group && fchown(w->m.fd, (uid_t)-1, o->group) < 0) {
		int e = errno;
		wlog("ERROR", "ring %s: cannot give it group %u: %s%s", o->ring, (unsigned)o->group,
		     strerror(e), e == EPERM ? " (the writer must be root, or the owner and a member)" : "");
		return -e;
	}
	mode_t want = o->ring_opts.mode ? o->ring_opts.mode : (st.st_mode & 0777);
	if ((st.st_mode & 0777) != want && fchmod(w->m.fd, want) < 0) {
		int e = errno;
		wlog("ERROR", "ring %s: cannot set its mode to %04o: %s", o->ring, (unsigned)want, strerror(e));
		return -e;
	}
	return 0;
}

/* What writer_open acquired, released once, in reverse order. */
static void writer_close(struct wr *w)
{
	free(w->buf);
	w->buf = NULL;
	release_tail(w, 0);
	if (w->out_fd > STDOUT_FILENO)
		close(w->out_fd);
	w->out_fd = -1;
	if (w->h)
		shm_map_close(&w->m);
	w->h = NULL;
}

/*
 * Take the ring (created if missing), its writer lock and the output, then recover what a
 * killed predecessor left in flight. 0, or the exit status, everything released.
 */
static int writer_open(struct wr *w, const struct writer_opts *o)
{
	int ex = WEXIT_ERROR;
	/* With --group, a new ring is created for the owner alone and opened to the group
	 * only once it has that group (never to the writer's own group meanwhile). */
	struct shmring_options create_opts = o->ring_opts;
	if (o->group != (gid_t)-1)
		create_opts.mode = 0600;
	int rc = shm_map_open(o->ring, &create_opts, SHM_CREATE, &w->m);
	if (rc) {
		wlog("ERROR", "ring %s: cannot open: %s", o->ring,
		     rc == -EPROTO ? "not a shmring ring of this layout" : strerror(-rc));
		return rc == -EINVAL ? WEXIT_USAGE : WEXIT_ERROR;
	}
	w->h = w->m.hdr;
	/* An existing ring keeps its geometry: say so when another one was asked for. */
	const struct shmring_options *ro = &o->ring_opts;
	if ((ro->capacity && ro->capacity != w->m.g.capacity) ||
	    (ro->slot_size && ro->slot_size != w->m.g.slot_size))
		wlog("WARN", "ring %s exists with capacity %u, slot size %u; asked for capacity %u, "
		     "slot size %u: serving it as it is", o->ring, w->m.g.capacity, w->m.g.slot_size,
		     ro->capacity ? ro->capacity : w->m.g.capacity,
		     ro->slot_size ? ro->slot_size : w->m.g.slot_size);
	if ((rc = shm_lock_try(w->m.fd, SHM_LOCK_WRITER))) {
		wlog("ERROR", "ring %s: another live writer serves it (pid %d)", o->ring,
		     (int)atomic_load(&w->h->writer_pid));
		ex = rc == -EAGAIN ? WEXIT_BUSY : WEXIT_ERROR;
		goto fail;
	}
	if (ring_access(w))
		goto fail;
	if ((rc = open_out(w))) {
		wlog("ERROR", "cannot open %s for appending: %s", o->out, strerror(-rc));
		/* Left for shmring stat to show: "open PATH: <why>" (with no writer alive). */
		publish_path(w, o->out);
		werr_store(w, SHMRING_WOP_OPEN, -rc);
		goto fail;
	}
	const char *rn = o->ring[0] == '/' ? o->ring + 1 : o->ring;
	w->sem_prefix_len = (size_t)shm_sem_prefix(w->sem_prefix, sizeof(w->sem_prefix), rn);
	w->cap = o->batch_bytes;
	if (!(w->buf = malloc(w->cap)))
		goto fail;
#ifdef SHMRING_TESTING
	const char *crash = getenv("SHMRING_WRITER_CRASH");
	if (crash && sscanf(crash, "%u:%u", &w->crash_after, &w->crash_point) != 2)
		w->crash_point = 0;
#endif
	int gone = shm_gc(o->ring, 0, 10, NULL, NULL);
	if (gone > 0)
		wlog("INFO", "ring %s: removed %d flush semaphores left by dead processes", o->ring, gone);
	shm_drain_init(&w->d, &w->m, o->stall_ns, &drain_ops, w);
	if ((rc = recover(w))) {
		wlog("ERROR", "ring %s: cannot recover the last batch: %s", o->ring, strerror(-rc));
		goto fail;
	}
	/* Pairs with W4 of the previous writer (and recover()'s commit). */
	w->d.head = w->d.freed = atomic_load_explicit(&w->h->head, memory_order_acquire);
	shm_progress_end(w->h, shm_progress_begin(w->h)); /* settle a count a killed commit left odd */
	publish_path(w, o->out);
	werr_store(w, SHMRING_WOP_NONE, 0); /* what a predecessor left is not ours */
	atomic_store_explicit(&w->h->writer_pid, (int32_t)getpid(), memory_order_relaxed);
	/* Release: one who sees the new epoch (tests, a debugger) also sees writer_pid and the
	 * path above; nothing in the protocol waits on it. */
	atomic_fetch_add_explicit(&w->h->writer_epoch, 1, memory_order_release);
	wlog("INFO", "serving ring %s (capacity %u, slot %u) into %s", o->ring, w->m.g.capacity,
	     w->m.g.slot_size, o->out);
	return 0;
fail:
	writer_close(w);
	return ex;
}

/* Say that we serve: the pid file, the --detach parent, systemd (Type=notify). 0, or
 * the exit status. */
static int writer_ready(struct wr *w, const struct writer_opts *o)
{
	if (o->pid_file) {
		FILE *pf = fopen(o->pid_file, "w");
		int e = pf ? 0 : errno;
		if (pf && fprintf(pf, "%d\n", (int)getpid()) < 0)
			e = errno ? errno : EIO;
		if (pf && fclose(pf) && !e)
			e = errno;
		if (e) {
			wlog("ERROR", "cannot write pid file %s: %s", o->pid_file, strerror(e));
			return WEXIT_ERROR;
		}
	}
	if (o->ready_fd >= 0) {
		char c = 1;
		if (write(o->ready_fd, &c, 1) != 1) { /* the parent of --detach went away */ }
		close(o->ready_fd);
	}
	/* Ready: it holds the writer lock, recovered, and serves (systemd Type=notify). */
	char state[SHM_NAME_MAX + 64];
	snprintf(state, sizeof(state), "READY=1\nMAINPID=%d\nSTATUS=serving ring %s", (int)getpid(), o->ring);
	int rc = writer_notify(state);
	if (rc)
		wlog("WARN", "cannot notify the service manager ($NOTIFY_SOCKET): %s", strerror(-rc));
	/* Drops counted before this writer started were reported by its predecessor (or
	 * are visible in shmring stat): report only what is new from here on. */
	struct shm_psum s;
	shm_producer_sum(&w->m, &s, 0, -1);
	w->last_drops = s.dropped_full + s.dropped_oversize;
	return 0;
}

/* The drain loop, until SIGTERM/SIGINT (after what is in the ring), --exit-when-idle, or
 * a fatal error. Returns 0 or a negative errno. */
static int writer_serve(struct wr *w, const struct writer_opts *o)
{
	/* With rotation, batches stay well under the file size limit. */
	size_t batch = o->batch_bytes;
	if (o->max_bytes && o->max_bytes / 4 < batch)
		batch = o->max_bytes / 4 ? o->max_bytes / 4 : 1;
	int rc = 0;
	uint64_t stop_since = 0;
	w->idle_since = shm_now_ns();
	for (;;) {
		int progressed = 0;
		for (int i = 0; i < 65536; i++) {
			rc = shm_drain_step(&w->d);
			if (rc <= 0)
				break;
			progressed = 1;
			if (w->used >= batch || w->nsent)
				if ((rc = commit(w)))
					break;
		}
		if (rc < 0)
			break;
		if (w->used || w->d.head != w->d.freed || w->nsent)
			if ((rc = commit(w)))
				break;
		if (writer_hup) {
			/* logrotate renamed the file: everything so far is in the old one (just
			 * committed); reopen the path now, so the old one is closed. A failure is
			 * retried before the next batch. */
			writer_hup = 0;
			if (strcmp(o->out, "-") != 0) {
				if ((rc = reopen_out(w)) == 0) {
					werr_clear(w, SHMRING_WOP_OPEN);
					wlog("INFO", "reopened %s", o->out);
				} else {
					werr_set(w, SHMRING_WOP_OPEN, rc, "retrying before the next batch");
				}
				rc = 0;
			}
		}
		uint64_t now = shm_now_ns();
		report_drops(w, now);
		if (o->metrics_file && now >= w->metrics_due) {
			write_metrics(w, 1);
			w->metrics_due = now + o->metrics_interval_ns;
		}
		/* W1: pairs with P1 and C3, as in the drain. */
		uint64_t wd = atomic_load_explicit(&w->m.words[w->d.head & w->d.mask], memory_order_acquire);
		int empty = wd == w_make((unsigned)shm_lap(&w->m.g, w->d.head), 0, 0, 0, W_FREE);
		if (writer_stop) {
			/* Drain what is in the ring; a claim still open waits its stall timeout. */
			if (!stop_since) {
				stop_since = now;
				(void)writer_notify("STOPPING=1\nSTATUS=writing what is in the ring, then exiting");
			}
			if (empty || now - stop_since > o->stall_ns + 1000000000ull)
				break;
		}
		if (progressed) {
			w->idle_since = w->last_record_ns = now;
			continue;
		}
		if (!empty)
			w->idle_since = now;
		if (o->idle_exit_ns && empty && now - w->idle_since > o->idle_exit_ns) {
			/* Under the spawn lock, so that an opener that attaches after our check
			 * finds no writer and starts one, instead of trusting us to stay. */
			if (shm_lock_try(w->m.fd, SHM_LOCK_SPAWN) == 0) {
				struct shm_psum s;
				shm_producer_sum(&w->m, &s, 1, -1);
				if (s.live == 0) {
					wlog("INFO", "ring %s: no producer for %.1f s, exiting", o->ring,
					     o->idle_exit_ns / 1e9);
					break; /* both locks go with our descriptor */
				}
				shm_lock_drop(w->m.fd, SHM_LOCK_SPAWN);
			}
			w->idle_since = now;
		}
		if (!writer_stop)
			idle_wait(w, empty ? 100000000ull : 2000000ull);
	}
	if (rc >= 0)
		rc = commit(w);
	if (o->metrics_file)
		write_metrics(w, 0); /* the last figures, and that this writer is gone */
	atomic_store_explicit(&w->h->writer_beat_ns, 0, memory_order_relaxed);
	wlog("INFO", "ring %s: stopping (head %llu)", o->ring, (unsigned long long)w->d.head);
	return rc;
}

int writer_run(const struct writer_opts *o)
{
	static struct wr w; /* static: its fields stay valid across the SIGBUS siglongjmp */
	memset(&w, 0, sizeof(w));
	w.o = o;
	w.out_fd = -1;
	int ex = writer_open(&w, o);
	if (ex)
		return ex;
	bus_lo[0] = (uintptr_t)w.m.hdr;
	bus_hi[0] = bus_lo[0] + w.m.front_len;
	bus_lo[1] = (uintptr_t)w.m.data;
	bus_hi[1] = bus_lo[1] + 2 * w.m.g.data_size;
	struct sigaction sa = { .sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	if (sigsetjmp(bus_jmp, 1)) {
		bus_armed = 0;
		wlog("ERROR", "ring %s: damaged (its shm object was truncated under the writer); "
		     "stopping", o->ring);
		/* Lines already converted are still good: keep them. Nothing more is read. */
		if (w.used)
			(void)write_all(w.out_fd, w.buf, w.used);
		ex = WEXIT_DAMAGED;
		goto out;
	}
	bus_armed = 1;
	if ((ex = writer_ready(&w, o)))
		goto out;
	ex = writer_serve(&w, o) < 0 ? WEXIT_ERROR : WEXIT_OK;
out:
	bus_armed = 0;
	writer_close(&w);
	return ex;
}
