/*
 * shmring-bench - shmring against the channels a user would otherwise choose, end to end:
 * P forked producers x M compaction records -> one consumer -> a JSONL file on the local
 * disk, every line counted and a sample parsed at the end.
 *
 *   shmring-bench [--quick] [-P 1,2,4,8] [-m M] [--reps N] [--modes transport,pipeline]
 *                 [--peers shmring,pipe,posix-mq,unix-dgram,append-file,zmq]
 *                 [--blocking both|yes|no] [--batch-bytes B] [--sweep 1,4,16|none]
 *                 [--sweep-P 1,2] [--capacity SLOTS] [--writer-nice N] [--warm N] [--pace NS]
 *                 [--no-micro | --micro-only] [--dir DIR] [--md FILE] [--csv FILE]
 *                 [--writer PATH]
 *   shmring-bench --ir N      fixed-count send/pack/convert loops, for callgrind
 *
 * Defaults: P = 1,2,4,8, M = 100000 (--quick: 20000), 3 runs per configuration (--quick:
 * 1), both modes, both kinds of send, every peer built, writer batches of 1 MiB and a
 * sweep of 1, 4, 16 MiB at P = 1, 2; temp files under $TMPDIR or /var/tmp (never tmpfs).
 *
 * transport: records pre-encoded once, only the hand-off and the consumer are measured;
 * pipeline: each record built per send and encoded into the ring (shmring_audit_send_to)
 * or, for the peers and blocking sends, packed with shmring_audit_pack. Non-blocking
 * sends drop on a full channel (counted); blocking ones wait. Each configuration starts
 * a fresh consumer (for shmring the shmring-writer of the build tree, or $SHMRING_WRITER),
 * warms the channel up with records sent before the clock starts, then opens a start
 * barrier (a pipe all producers block on) and stops the clock when the last line is
 * written. Latency: one send in 64 timed with the TSC (calibrated against
 * CLOCK_MONOTONIC) into a per-process log-bucket histogram, merged through shared memory.
 * CPU: every process's own time over the measured window (getrusage in the bench's
 * processes, /proc/PID/schedstat for the writer), and RUSAGE_CHILDREN over each
 * configuration's whole life as a cross-check.
 *
 * Output: a markdown report (tables: per configuration, ratios to shmring, targets, the
 * batch-size sweep, micro-benchmarks) and a CSV of every row. Exit status: 0 ok, 1 a
 * check failed or an error, 2 usage.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "shmring.h"

#ifndef SHMRING_WRITER_PATH
#define SHMRING_WRITER_PATH ""
#endif

#define RING_CAPACITY 65536u
#define RING_SLOT     512u

struct row {
	struct run_cfg c;
	int ok;
	char err[640];          /* room for two paths and strerror */
	double secs, rate;
	uint64_t sent, dropped, delivered, lines, writes;
	uint64_t out_bytes;      /* size of the output file: JSON bytes, warm-up included */
	double p50, p99, p999, pmax, enc_p50, enc_p99; /* every sampled call */
	double ok_p50, ok_p99, ok_p999;                /* sampled calls that were accepted */
	double rate_lo, rate_hi;                       /* over the repetitions */
	int nrep;
	double cpu_prod, cpu_cons, cpu_life; /* ns, totals over the window (life: whole config) */
	double csw;
	double runq;    /* ns runnable but waiting for a CPU, all processes, over the window */
	uint64_t samples;
	enum { ROW_MAIN, ROW_BATCH, ROW_SIZE, ROW_FLOAT } sweep; /* main tables, --batch-bytes, --sizes or --floats */
};

static struct {
	const char *writer;
	char dir[256];
	int quick, micro, reps, writer_nice;
	uint64_t pace_ns;
	uint32_t capacity;
	uint64_t M, warm_ring, warm_peer;
	int Ps[16], nP;
	int sweepP[8], nsweepP;
	size_t sweep[8];
	int nsweep;
	int sizes[8], nsizes;  /* record-size sweep (bytes) */
	int floatP[8], nfloatP; /* --floats: P of the float-heavy runs */
	double writer_ir;      /* --writer-ir: the writer's callgrind Ir per record (run.sh) */
	int modes[2], nmodes;
	int blk[2], nblk;
	int peers[PEER_N], npeers;
	size_t batch;
	FILE *md, *csv;
	int seq;
	int failures;
} G;

static struct row *rows;
static int nrows, caprows;

/* ---- small helpers ------------------------------------------------------------------ */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("shmring-bench: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static void sleep_us(unsigned us)
{
	struct timespec d = { us / 1000000, (long)(us % 1000000) * 1000 };
	while (nanosleep(&d, &d) < 0 && errno == EINTR)
		;
}

static uint64_t children_cpu_ns(void)
{
	struct rusage ru;
	getrusage(RUSAGE_CHILDREN, &ru);
	return ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) * 1000000000ull +
	       ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000ull;
}

/* CPU time of a live process (all its threads so far), ns: /proc/PID/schedstat. */
static uint64_t proc_cpu_ns(pid_t pid, uint64_t *csw, uint64_t *runq)
{
	char p[64], line[256];
	unsigned long long run = 0, wait = 0, v = 0, nv = 0;
	snprintf(p, sizeof(p), "/proc/%d/schedstat", (int)pid);
	FILE *f = fopen(p, "r");
	if (f) {
		if (fscanf(f, "%llu %llu", &run, &wait) != 2)
			run = wait = 0;
		fclose(f);
	}
	snprintf(p, sizeof(p), "/proc/%d/status", (int)pid);
	if ((f = fopen(p, "r"))) {
		while (fgets(line, sizeof(line), f)) {
			sscanf(line, "voluntary_ctxt_switches: %llu", &v);
			sscanf(line, "nonvoluntary_ctxt_switches: %llu", &nv);
		}
		fclose(f);
	}
	if (csw)
		*csw = v + nv;
	if (runq)
		*runq = wait;
	return run;
}

static int parse_list(const char *s, int *out, int max)
{
	int n = 0;
	char *dup = strdup(s), *save = NULL;
	for (char *t = strtok_r(dup, ",", &save); t && n < max; t = strtok_r(NULL, ",", &save))
		out[n++] = atoi(t);
	free(dup);
	return n;
}

static size_t parse_size(const char *s)
{
	char *end;
	double v = strtod(s, &end);
	if (*end == 'k' || *end == 'K')
		v *= 1024;
	else if (*end == 'm' || *end == 'M')
		v *= 1024 * 1024;
	return (size_t)v;
}

/* ---- the output check --------------------------------------------------------------- */

/* Count lines (each must end with '\n') and parse a sample of ~256 of them. */
static int verify_output(const char *path, uint64_t expect, uint32_t rec_bytes, uint64_t *lines,
			 uint64_t *bytes, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	*lines = 0;
	if (fd < 0 || fstat(fd, &st) < 0) {
		snprintf(err, errlen, "open %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (st.st_size == 0) {
		close(fd);
		if (expect)
			snprintf(err, errlen, "empty output, %llu lines expected", (unsigned long long)expect);
		return expect ? -1 : 0;
	}
	size_t sz = (size_t)st.st_size;
	*bytes = sz;
	const char *m = mmap(NULL, sz, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (m == MAP_FAILED) {
		snprintf(err, errlen, "mmap: %s", strerror(errno));
		return -1;
	}
	madvise((void *)m, sz, MADV_SEQUENTIAL);
	uint64_t n = 0;
	for (const char *p = m, *e = m + sz; p < e; p++) {
		p = memchr(p, '\n', (size_t)(e - p));
		if (!p)
			break;
		n++;
	}
	*lines = n;
	int rc = 0;
	if (m[sz - 1] != '\n') {
		snprintf(err, errlen, "the last line is not complete");
		rc = -1;
	} else if (n != expect) {
		snprintf(err, errlen, "%llu lines, %llu expected", (unsigned long long)n,
			 (unsigned long long)expect);
		rc = -1;
	}
	/* Parse the first line, the last and 256 at pseudo-random places (a fixed stride could
	 * alias with the period of the records) with an independent parser. */
	uint64_t parsed = 0, viol = 0, x = 0x2545f4914f6cdd1dull ^ sz;
	for (int k = 0; rc == 0 && k < 258; k++) {
		const char *p;
		if (k == 0) {
			p = m;
		} else if (k == 1) {
			p = m + sz - 1;
			while (p > m && p[-1] != '\n')
				p--;
		} else {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			p = m + x % sz;
			while (p > m && p[-1] != '\n')
				p--;
		}
		const char *nl = memchr(p, '\n', (size_t)(m + sz - p));
		if (!nl)
			break;
		json_error_t je;
		json_t *v = json_loadb(p, (size_t)(nl - p), 0, &je);
		if (rec_bytes == REC_FLOATS) { /* {"f0":d,...,"f15":d} */
			int good = json_is_object(v) && json_object_size(v) == FLOAT_KEYS;
			for (int f = 0; good && f < FLOAT_KEYS; f++) {
				char key[8];
				snprintf(key, sizeof(key), "f%d", f);
				good = json_is_number(json_object_get(v, key));
			}
			if (!good) {
				snprintf(err, errlen, "a line is not a float-heavy record: %.80s", v ? p : je.text);
				rc = -1;
			}
			parsed++;
			json_decref(v);
			continue;
		}
		if (rec_bytes) { /* the size sweep's generic record: {"seq":n,"pad":"..."} */
			json_t *pad = v ? json_object_get(v, "pad") : NULL;
			if (!json_is_integer(v ? json_object_get(v, "seq") : NULL) || !json_is_string(pad) ||
			    json_string_length(pad) != pool_fixed_pad(rec_bytes)) {
				snprintf(err, errlen, "a line is not a %u-byte record: %.80s", rec_bytes,
					 v ? p : je.text);
				rc = -1;
			}
			parsed++;
			json_decref(v);
			continue;
		}
		json_t *o = v ? json_object_get(v, "origin") : NULL;
		json_t *vi = v ? json_object_get(v, "violations") : NULL;
		if (!v || !json_is_object(v) || !json_is_string(json_object_get(v, "turn_id")) ||
		    !json_is_string(json_object_get(v, "ts")) || !json_is_object(o) ||
		    !json_is_string(json_object_get(o, "kind")) || !json_is_array(vi) ||
		    !json_is_integer(json_object_get(v, "original_tokens"))) {
			snprintf(err, errlen, "a line is not a compaction record: %.80s", v ? p : je.text);
			rc = -1;
		} else {
			parsed++;
			viol += json_array_size(vi) > 0;
		}
		json_decref(v);
	}
	if (rc == 0 && !rec_bytes && n > 1000 && (viol * 40 < parsed || viol * 3 > parsed)) {
		snprintf(err, errlen, "sample of %llu lines has %llu with violations (about 1 in 10 expected)",
			 (unsigned long long)parsed, (unsigned long long)viol);
		rc = -1;
	}
	munmap((void *)m, sz);
	return rc;
}

/* ---- one configuration -------------------------------------------------------------- */

static pid_t writer_start(const struct run_cfg *c, shmring **r)
{
	char cap[16], slot[16], batch[24], log[300];
	snprintf(cap, sizeof(cap), "%u", c->capacity);
	snprintf(slot, sizeof(slot), "%u", c->slot_size ? c->slot_size : RING_SLOT);
	snprintf(batch, sizeof(batch), "%zu", c->batch_bytes);
	snprintf(log, sizeof(log), "%s/writer.log", c->dir);
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd >= 0)
			dup2(fd, 2);
		if (c->writer_nice && setpriority(PRIO_PROCESS, 0, c->writer_nice) < 0)
			perror("setpriority");
		execl(G.writer, G.writer, "--ring", c->chan, "--out", c->out, "--capacity", cap,
		      "--slot-size", slot, "--batch-bytes", batch, (char *)NULL);
		_exit(127);
	}
	*r = NULL;
	for (int i = 0; pid > 0 && i < 2000; i++) {
		if (!*r && shmring_attach(c->chan, r) != 0)
			*r = NULL;
		struct shmring_stats st;
		if (*r && shmring_stats(*r, &st) == 0 && st.writer_alive && st.writer_pid == pid)
			return pid;
		if (waitpid(pid, NULL, WNOHANG) == pid)
			break;
		sleep_us(1000);
	}
	if (*r)
		shmring_close(*r);
	*r = NULL;
	return -1;
}

/* The writer's own account of trouble (a full disk, ...): its first ERROR line, if any,
 * goes with the row; the log is emptied for the next configuration. */
static void writer_errors(const struct run_cfg *c, struct row *rw)
{
	char log[300], line[400];
	snprintf(log, sizeof(log), "%s/writer.log", c->dir);
	FILE *f = fopen(log, "r");
	while (f && fgets(line, sizeof(line), f)) {
		if (!strstr(line, " ERROR "))
			continue;
		line[strcspn(line, "\n")] = 0;
		size_t n = strlen(rw->err);
		snprintf(rw->err + n, sizeof(rw->err) - n, "%swriter: %s", n ? "; " : "", strstr(line, " ERROR ") + 7);
		rw->ok = 0; /* counted as a failure by the caller */
		break;
	}
	if (f)
		fclose(f);
	unlink(log);
}

static int flush_all(shmring *r)
{
	int rc = -ETIMEDOUT;
	for (int i = 0; i < 600 && (rc = shmring_flush(r)) == -ETIMEDOUT; i++)
		;
	return rc;
}

static void kill_all(pid_t *pids, int n)
{
	for (int i = 0; i < n; i++)
		if (pids[i] > 0) {
			kill(pids[i], SIGKILL);
			waitpid(pids[i], NULL, 0);
			pids[i] = 0;
		}
}

static void run_one(struct run_cfg *c, struct row *rw)
{
	static struct shared *sh;
	pid_t prod[MAXP] = { 0 }, cons = 0, writer = 0;
	shmring *r = NULL;
	int fds[2] = { -1, -1 }, ready[2] = { -1, -1 }, start[2] = { -1, -1 }, rc;
	uint64_t wcpu0 = 0, wcsw0 = 0, wcpu1 = 0, wcsw1 = 0, wrq0 = 0, wrq1 = 0;
	uint64_t life0 = children_cpu_ns();
	uint64_t t0 = 0, t_end = 0;
	char one;

	memset(rw, 0, sizeof(*rw));
	if (!sh) {
		sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (sh == MAP_FAILED)
			die("mmap: %s", strerror(errno));
	}
	memset(sh, 0, sizeof(*sh));
	int seq = G.seq++;
	snprintf(c->out, sizeof(c->out), "%s/out-%d.jsonl", c->dir, seq);
	if (c->peer == PEER_SHMRING)
		snprintf(c->chan, sizeof(c->chan), "bench-%d-%d", (int)getpid(), seq);
	else if (c->peer == PEER_MQ)
		snprintf(c->chan, sizeof(c->chan), "/shmring-bench-%d-%d", (int)getpid(), seq);
	else
		snprintf(c->chan, sizeof(c->chan), "%s/sock-%d", c->dir, seq);
	c->zmq_hwm = (int)RING_CAPACITY;
	if (!c->capacity)
		c->capacity = G.capacity;
	unlink(c->out);

#define BAIL(...)                                                                       \
	do {                                                                            \
		snprintf(rw->err, sizeof(rw->err), __VA_ARGS__);                        \
		goto fail;                                                              \
	} while (0)

	if (c->peer == PEER_SHMRING) {
		shmring_unlink(c->chan);
		if ((writer = writer_start(c, &r)) < 0)
			BAIL("shmring-writer %s did not start (see %s/writer.log)", G.writer, c->dir);
	} else if ((rc = chan_setup(c, fds))) {
		BAIL("channel setup: %s", strerror(-rc));
	}
	if (c->peer != PEER_SHMRING && c->peer != PEER_FILE) {
		if (pipe2(ready, O_CLOEXEC) < 0)
			BAIL("pipe: %s", strerror(errno));
		if ((cons = fork()) == 0) {
			close(ready[0]);
			consumer_main(c, fds, sh, ready[1]);
			_exit(sh->cons.failed ? 1 : 0);
		}
		close(ready[1]);
		ready[1] = -1;
		if (read(ready[0], &one, 1) != 1)
			BAIL("consumer did not start: %s", sh->cons.err);
		close(ready[0]);
		ready[0] = -1;
	}
	if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(start, O_CLOEXEC) < 0)
		BAIL("pipe: %s", strerror(errno));
	for (int i = 0; i < c->P; i++) {
		if ((prod[i] = fork()) == 0) {
			close(ready[0]);
			close(start[1]);
			producer_main(c, fds, sh, i, ready[1], start[0]);
			_exit(sh->prod[i].failed ? 1 : 0);
		}
		if (prod[i] < 0)
			BAIL("fork: %s", strerror(errno));
	}
	close(ready[1]);
	close(start[0]);
	ready[1] = start[0] = -1;
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0) { /* the pipe ends with EOF only once we hold no write end */
			close(fds[i]);
			fds[i] = -1;
		}
	for (int i = 0; i < c->P; i++)
		if (read(ready[0], &one, 1) != 1) {
			for (int k = 0; k < c->P; k++)
				if (sh->prod[k].failed)
					BAIL("producer %d: %s", k, sh->prod[k].err);
			BAIL("a producer did not get ready");
		}
	/* Wait until the warm-up is written: then every process is idle at the barrier. */
	uint64_t warm_lines = (uint64_t)c->P * c->warm;
	if (c->peer == PEER_SHMRING) {
		if ((rc = flush_all(r)))
			BAIL("flush after warm-up: %s", strerror(-rc));
		wcpu0 = proc_cpu_ns(writer, &wcsw0, &wrq0);
	} else if (cons) {
		for (int i = 0; atomic_load(&sh->cons.progress) < warm_lines; i++) {
			if (i > 60000 || sh->cons.failed)
				BAIL("consumer did not write the warm-up: %s", sh->cons.err);
			sleep_us(500);
		}
		sleep_us(2000); /* let it record its CPU time and go back to sleep */
	}
	t0 = bench_now_ns();
	close(start[1]); /* the start barrier opens */
	start[1] = -1;
	/* A watchdog: a peer that hangs (a consumer died under blocking producers) fails this
	 * configuration instead of the whole run. SIGALRM interrupts waitpid (no SA_RESTART). */
	alarm((unsigned)(120 + (uint64_t)c->P * c->M / 100000));
	for (int i = 0; i < c->P; i++) {
		int st;
		if (waitpid(prod[i], &st, 0) < 0)
			BAIL("timed out waiting for producer %d", i);
		prod[i] = 0;
		if (!WIFEXITED(st) || WEXITSTATUS(st))
			BAIL("producer %d failed: %s", i, sh->prod[i].err);
	}
	if (c->peer == PEER_SHMRING) {
		if ((rc = flush_all(r)))
			BAIL("final flush: %s", strerror(-rc));
		t_end = bench_now_ns();
		wcpu1 = proc_cpu_ns(writer, &wcsw1, &wrq1);
	} else if (cons) {
		int st;
		if (waitpid(cons, &st, 0) < 0)
			BAIL("timed out waiting for the consumer");
		cons = 0;
		if (!WIFEXITED(st) || WEXITSTATUS(st))
			BAIL("consumer failed: %s", sh->cons.err);
		t_end = sh->cons.t_end;
	} else {
		for (int i = 0; i < c->P; i++)
			if (sh->prod[i].t_last > t_end)
				t_end = sh->prod[i].t_last;
	}

	/* Collect. */
	static struct hist lat, enc, lok;
	memset(&lat, 0, sizeof(lat));
	memset(&enc, 0, sizeof(enc));
	memset(&lok, 0, sizeof(lok));
	for (int i = 0; i < c->P; i++) {
		struct prod_result *p = &sh->prod[i];
		rw->sent += p->sent;
		rw->dropped += p->dropped;
		rw->cpu_prod += (double)p->cpu_ns;
		rw->csw += (double)p->csw;
		rw->runq += (double)p->runq_ns;
		hist_merge(&lat, &p->lat);
		hist_merge(&enc, &p->lat_enc);
		hist_merge(&lok, &p->lat_ok);
		if (p->errors)
			BAIL("producer %d: %s", i, p->err);
	}
	rw->delivered = rw->sent - rw->dropped;
	rw->secs = (double)(t_end - t0) / 1e9;
	rw->rate = (double)rw->delivered / rw->secs;
	rw->p50 = hist_quantile_ns(&lat, 0.50);
	rw->p99 = hist_quantile_ns(&lat, 0.99);
	rw->p999 = hist_quantile_ns(&lat, 0.999);
	rw->pmax = (double)lat.max * bench_ns_per_tick;
	rw->ok_p50 = hist_quantile_ns(&lok, 0.50);
	rw->ok_p99 = hist_quantile_ns(&lok, 0.99);
	rw->ok_p999 = hist_quantile_ns(&lok, 0.999);
	rw->samples = lat.n;
	if (c->mode == MODE_PIPELINE) {
		rw->enc_p50 = hist_quantile_ns(&enc, 0.50);
		rw->enc_p99 = hist_quantile_ns(&enc, 0.99);
	}
	if (c->peer == PEER_SHMRING) {
		struct shmring_stats st;
		shmring_stats(r, &st);
		rw->cpu_cons = (double)(wcpu1 - wcpu0);
		rw->csw += (double)(wcsw1 - wcsw0);
		rw->runq += (double)(wrq1 - wrq0);
		if (st.written != warm_lines + rw->delivered || st.dropped_full != rw->dropped)
			BAIL("ring stats: written %llu dropped %llu; expected %llu, %llu",
			     (unsigned long long)st.written, (unsigned long long)st.dropped_full,
			     (unsigned long long)(warm_lines + rw->delivered), (unsigned long long)rw->dropped);
		kill(writer, SIGTERM);
		waitpid(writer, NULL, 0);
		writer = 0;
	} else if (c->peer != PEER_FILE) {
		rw->cpu_cons = (double)(sh->cons.cpu_end_ns - sh->cons.cpu_warm_ns);
		rw->csw += (double)(sh->cons.csw_end - sh->cons.csw_warm);
		rw->runq += (double)(sh->cons.runq_end_ns - sh->cons.runq_warm_ns);
		rw->writes = sh->cons.writes;
	}
	rw->cpu_life = (double)(children_cpu_ns() - life0);
	if (verify_output(c->out, warm_lines + rw->delivered, c->rec_bytes, &rw->lines, &rw->out_bytes,
			  rw->err, sizeof(rw->err)))
		goto fail;
	rw->ok = 1;
fail:
	alarm(0);
	if (c->peer == PEER_SHMRING)
		writer_errors(c, rw);
	if (!rw->ok)
		G.failures++;
	kill_all(prod, c->P);
	kill_all(&cons, 1);
	if (writer > 0) {
		kill(writer, SIGTERM);
		waitpid(writer, NULL, 0);
	}
	if (r)
		shmring_close(r);
	if (c->peer == PEER_SHMRING)
		shmring_unlink(c->chan);
	else
		chan_teardown(c, fds);
	for (int i = 0; i < 2; i++) {
		if (ready[i] >= 0)
			close(ready[i]);
		if (start[i] >= 0)
			close(start[i]);
	}
	unlink(c->out);
	rw->c = *c;
}

static void add_row(const struct row *rw)
{
	if (nrows == caprows) {
		caprows = caprows ? 2 * caprows : 256;
		rows = realloc(rows, (size_t)caprows * sizeof(*rows));
		if (!rows)
			die("out of memory");
	}
	rows[nrows++] = *rw;
}

static const char *mode_name(int m)
{
	return m == MODE_TRANSPORT ? "transport" : "pipeline";
}

static const char *blk_name(bool b)
{
	return b ? "blocking" : "non-blocking";
}

static double per_rec(const struct row *w, double v)
{
	return w->delivered ? v / (double)w->delivered : 0;
}

static double busy_pct(const struct row *w)
{
	return w->secs > 0 ? 100.0 * w->cpu_cons / (w->secs * 1e9) : 0;
}

static double drop_pct(const struct row *w)
{
	return w->sent ? 100.0 * (double)w->dropped / (double)w->sent : 0;
}

/* Time our processes spent runnable but without a CPU, as a share of the window and of
 * the processes (producers + consumer): how much the machine was taken by others. */
static double runq_pct(const struct row *w)
{
	int n = w->c.P + (w->c.peer == PEER_FILE ? 0 : 1);
	return w->secs > 0 ? 100.0 * w->runq / (w->secs * 1e9 * n) : 0;
}

static void progress(const struct row *w, const char *tag)
{
	fprintf(stderr, "%-9s %-12s P=%-2d %-11s %-4s %7.3f M rec/s  p50 %6.0f  p99 %7.0f  p99.9 %9.0f ns  "
		"cpu %5.0f ns/rec  cons %3.0f%%  runq %3.0f%%  csw/k %6.1f  drops %5.1f%%  %s%s\n",
		mode_name(w->c.mode), blk_name(w->c.blocking), w->c.P, peer_names[w->c.peer], tag,
		w->rate / 1e6, w->ok_p50, w->ok_p99, w->ok_p999, per_rec(w, w->cpu_prod + w->cpu_cons),
		busy_pct(w), runq_pct(w), per_rec(w, w->csw * 1000.0),
		drop_pct(w), w->ok ? "ok" : "FAILED: ",
		w->ok ? "" : w->err);
}

static void csv_row(const struct row *w, const char *kind)
{
	fprintf(G.csv,
		"%s,%s,%s,%d,%s,%llu,%zu,%.6f,%llu,%llu,%llu,%.0f,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,"
		"%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,%.3f,%.1f,%.1f,%llu,%u,%d,%d,%.0f,%.0f,%s\n",
		kind, mode_name(w->c.mode), w->c.blocking ? "blocking" : "nonblocking", w->c.P,
		peer_names[w->c.peer], (unsigned long long)w->c.M, w->c.batch_bytes, w->secs,
		(unsigned long long)w->sent, (unsigned long long)w->dropped,
		(unsigned long long)w->delivered, w->rate, w->ok_p50, w->ok_p99, w->ok_p999, w->p50,
		w->p99, w->p999, w->pmax, w->enc_p50, w->enc_p99, per_rec(w, w->cpu_prod + w->cpu_cons),
		per_rec(w, w->cpu_prod), per_rec(w, w->cpu_cons), per_rec(w, w->cpu_life),
		per_rec(w, w->csw * 1000.0), busy_pct(w), runq_pct(w),
		(double)w->c.warm, (unsigned long long)w->writes, w->c.mq_depth, w->c.pipe_bytes, w->ok,
		w->rate_lo, w->rate_hi, w->ok ? "ok" : "failed");
	fflush(G.csv);
}

static const char *const csv_header =
	"kind,mode,send,P,peer,M,batch_bytes,secs,sent,dropped,delivered,rec_per_s,"
	"p50_ns,p99_ns,p999_ns,all_p50_ns,all_p99_ns,all_p999_ns,max_ns,enc_p50_ns,enc_p99_ns,"
	"cpu_ns_per_rec,cpu_prod_ns_per_rec,cpu_cons_ns_per_rec,cpu_life_ns_per_rec,csw_per_krec,"
	"consumer_busy_pct,runq_wait_pct,warm_per_producer,writes,mq_depth,pipe_bytes,ok,rate_min,rate_max,check\n";

static struct row *find(int mode, bool blk, int P, int peer, size_t batch)
{
	for (int i = 0; i < nrows; i++)
		if ((int)rows[i].c.mode == mode && rows[i].c.blocking == blk && rows[i].c.P == P &&
		    (int)rows[i].c.peer == peer && rows[i].c.batch_bytes == batch && rows[i].ok &&
		    rows[i].sweep == ROW_MAIN)
			return &rows[i];
	return NULL;
}

/* ---- report ------------------------------------------------------------------------- */

static const char *fmt_ns(char *b, size_t n, double v)
{
	if (v >= 1e6)
		snprintf(b, n, "%.1f ms", v / 1e6);
	else if (v >= 1e4)
		snprintf(b, n, "%.1f µs", v / 1e3);
	else
		snprintf(b, n, "%.0f", v);
	return b;
}

static void report_configs(void)
{
	FILE *f = G.md;
	fprintf(f, "## Every configuration\n\n"
		   "`M rec/s`: records written per second from the start barrier to the last line written "
		   "(median of %d runs; the range is min–max). Latency: one send in 64 timed around the "
		   "call, sends whose record was accepted (pipeline: build + encode + send; `enc` is the "
		   "build + encode part); `p50 all` also counts sends refused by a full channel. ns unless "
		   "marked. `CPU`: all processes (producers + consumer) over the measured window, per "
		   "record written; `cons`: the consumer's CPU time ÷ wall time. `csw`: context switches "
		   "per 1000 records. `drops`: sends refused by a full channel.\n\n", G.reps);
	for (int mi = 0; mi < G.nmodes; mi++)
		for (int bi = 0; bi < G.nblk; bi++) {
			int mode = G.modes[mi];
			bool blk = G.blk[bi], pl = mode == MODE_PIPELINE;
			fprintf(f, "### %s, %s\n\n", mode_name(mode), blk_name(blk));
			fprintf(f, "| P | peer | M rec/s | range | p50 | p99 | p99.9 |%s%s CPU ns/rec (prod + cons) | cons | drops | csw | lines |\n",
				blk ? "" : " p50 all |", pl ? " enc p50 |" : "");
			fprintf(f, "|---:|---|---:|---|---:|---:|---:|%s%s---:|---:|---:|---:|---|\n",
				blk ? "" : "---:|", pl ? "---:|" : "");
			for (int pi = 0; pi < G.nP; pi++)
				for (int k = 0; k < G.npeers; k++) {
					struct row *w = NULL;
					for (int i = 0; i < nrows; i++)
						if ((int)rows[i].c.mode == mode && rows[i].c.blocking == blk &&
						    rows[i].c.P == G.Ps[pi] && (int)rows[i].c.peer == G.peers[k] &&
						    rows[i].sweep == ROW_MAIN)
							w = &rows[i];
					if (!w)
						continue;
					char a[32], b[32], c[32], e[32], g[32], x1[48] = "", x2[48] = "";
					if (!blk)
						snprintf(x1, sizeof(x1), " %s |", fmt_ns(g, sizeof(g), w->p50));
					if (pl)
						snprintf(x2, sizeof(x2), " %s |", w->enc_p50 > 0 ?
							 fmt_ns(e, sizeof(e), w->enc_p50) : "in the send");
					fprintf(f, "| %d | %s | %.3f | %.2f–%.2f | %s | %s | %s |%s%s %.0f (%.0f + %.0f) | %.0f%% | %.1f%% | %.1f | %s |\n",
						w->c.P, peer_names[w->c.peer], w->rate / 1e6, w->rate_lo / 1e6,
						w->rate_hi / 1e6, fmt_ns(a, sizeof(a), w->ok_p50),
						fmt_ns(b, sizeof(b), w->ok_p99), fmt_ns(c, sizeof(c), w->ok_p999), x1, x2,
						per_rec(w, w->cpu_prod + w->cpu_cons), per_rec(w, w->cpu_prod),
						per_rec(w, w->cpu_cons), busy_pct(w),
						drop_pct(w),
						per_rec(w, w->csw * 1000.0), w->ok ? "ok" : w->err);
				}
			fputc('\n', f);
		}
}

static void report_ratios(void)
{
	FILE *f = G.md;
	fprintf(f, "## Each peer against shmring, same run\n\n"
		   "How many times better shmring is (> 1: shmring better): throughput shmring ÷ peer; "
		   "p50, p99 (accepted sends) and CPU per record peer ÷ shmring.\n\n"
		   "| mode | send | P | peer | throughput × | p50 × | p99 × | CPU/rec × |\n"
		   "|---|---|---:|---|---:|---:|---:|---:|\n");
	for (int mi = 0; mi < G.nmodes; mi++)
		for (int bi = 0; bi < G.nblk; bi++)
			for (int pi = 0; pi < G.nP; pi++) {
				int mode = G.modes[mi], P = G.Ps[pi];
				bool blk = G.blk[bi];
				struct row *s = find(mode, blk, P, PEER_SHMRING, G.batch);
				if (!s)
					continue;
				for (int k = 0; k < G.npeers; k++) {
					if (G.peers[k] == PEER_SHMRING)
						continue;
					struct row *w = find(mode, blk, P, G.peers[k], G.batch);
					if (!w)
						continue;
					fprintf(f, "| %s | %s | %d | %s | %.2f | %.1f | %.1f | %.2f |\n",
						mode_name(mode), blk ? "blocking" : "non-blocking", P,
						peer_names[w->c.peer], s->rate / w->rate, w->ok_p50 / s->ok_p50,
						w->ok_p99 / s->ok_p99,
						per_rec(w, w->cpu_prod + w->cpu_cons) / per_rec(s, s->cpu_prod + s->cpu_cons));
				}
			}
	fputc('\n', f);
}

static void target(const char *what, const char *goal, int met, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void target(const char *what, const char *goal, int met, const char *fmt, ...)
{
	char b[300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(b, sizeof(b), fmt, ap);
	va_end(ap);
	fprintf(G.md, "| %s | %s | %s | %s |\n", what, goal, b, met < 0 ? "n/a" : met ? "met" : "**not met**");
}

static double timer_ns;

/* The float-heavy row (--floats) of P, or NULL. */
static struct row *float_row(int P, int peer)
{
	for (int i = 0; i < nrows; i++)
		if (rows[i].sweep == ROW_FLOAT && rows[i].c.P == P && (int)rows[i].c.peer == peer)
			return &rows[i];
	return NULL;
}

/* JSON bytes per record of a row (warm-up included in both counts: the same records). */
static double json_per_rec(const struct row *w)
{
	return w->lines ? (double)w->out_bytes / (double)w->lines : 0;
}

/* Issue #14's targets: the writer at the pace of memory. */
static void report_targets(void)
{
	fprintf(G.md, "## Targets (this run)\n\n"
		      "Issue #14's targets. Latencies are of accepted sends, shown gross (timer "
		      "included) and net of the empty timed region (%.0f ns here); throughput and CPU "
		      "are medians of %d runs. `runq` is the share of the window our processes spent "
		      "runnable but waiting for a CPU that other users' jobs held. README.md says what "
		      "bounds each target not met.\n\n"
		      "| what | target | measured | |\n|---|---|---|---|\n", timer_ns, G.reps);
	char what[160], a[32], b[64];
	for (int bi = 0; bi < G.nblk; bi++) {
		bool blk = G.blk[bi];
		struct row *s1 = find(MODE_TRANSPORT, blk, 1, PEER_SHMRING, G.batch);
		if (!s1)
			continue;
		snprintf(what, sizeof(what), "send latency, transport, P=1, %s", blk_name(blk));
		target(what, "p50 ≤ 50 ns, p99 ≤ 250 ns", s1->ok_p50 <= 50 && s1->ok_p99 <= 250,
		       "p50 %.0f ns, p99 %.0f ns; net of the timer %.0f / %.0f ns; p99.9 %s",
		       s1->ok_p50, s1->ok_p99, s1->ok_p50 - timer_ns, s1->ok_p99 - timer_ns,
		       fmt_ns(a, sizeof(a), s1->ok_p999));
	}
	for (int bi = 0; bi < G.nblk; bi++) {
		bool blk = G.blk[bi];
		for (int P = 1; P <= 2; P++) {
			struct row *s = find(MODE_TRANSPORT, blk, P, PEER_SHMRING, G.batch);
			if (!s)
				continue;
			double wns = per_rec(s, s->cpu_cons);
			/* #14 sets the throughput targets for non-blocking sends; blocking is shown. */
			snprintf(what, sizeof(what), "end to end, transport, P=%d, %s", P, blk_name(blk));
			target(what, "≥ 8 M rec/s", blk ? -1 : s->rate >= 8e6,
			       "%.2f M rec/s (runs %.2f–%.2f; runq %.0f%%); the writer's %.0f ns of CPU per "
			       "record is %.1f M rec/s per core", s->rate / 1e6, s->rate_lo / 1e6,
			       s->rate_hi / 1e6, runq_pct(s), wns, 1e3 / wns);
			struct row *pp = find(MODE_TRANSPORT, blk, P, PEER_PIPE, G.batch);
			if (pp) {
				snprintf(what, sizeof(what), "throughput vs pipe, transport, P=%d, %s", P, blk_name(blk));
				target(what, "≥ 4×", blk ? -1 : s->rate / pp->rate >= 4,
				       "%.2f× (pipe %.2f M rec/s); consumer CPU per record: pipe %.0f ns ÷ "
				       "writer %.0f ns = %.2f×", s->rate / pp->rate, pp->rate / 1e6,
				       per_rec(pp, pp->cpu_cons), wns, per_rec(pp, pp->cpu_cons) / wns);
			}
			snprintf(what, sizeof(what), "writer CPU per record, transport, P=%d, %s", P, blk_name(blk));
			if (G.writer_ir > 0)
				snprintf(b, sizeof(b), "; %.0f Ir/record (callgrind, user space)", G.writer_ir);
			else
				snprintf(b, sizeof(b), "; Ir: run.sh");
			target(what, "≤ 120 ns", wns <= 120, "%.0f ns%s", wns, b);
		}
	}
	for (int bi = 0; bi < G.nblk; bi++)
		for (int mi = 0; mi < G.nmodes; mi++) {
			bool blk = G.blk[bi];
			struct row *s2 = find(G.modes[mi], blk, 2, PEER_SHMRING, G.batch);
			struct row *s8 = find(G.modes[mi], blk, 8, PEER_SHMRING, G.batch);
			if (!s2 || !s8)
				continue;
			snprintf(what, sizeof(what), "no cliff, %s, %s: P=8 vs P=2", mode_name(G.modes[mi]),
				 blk_name(blk));
			target(what, "≥ 80%, p99.9 bounded", s8->rate >= 0.8 * s2->rate,
			       "%.0f%% (%.2f vs %.2f M rec/s); p99.9 %s at P=8 (%s at P=2); writer on CPU "
			       "%.0f%% vs %.0f%% of the time", 100 * s8->rate / s2->rate, s8->rate / 1e6,
			       s2->rate / 1e6, fmt_ns(a, sizeof(a), s8->ok_p999), fmt_ns(b, sizeof(b), s2->ok_p999),
			       busy_pct(s8), busy_pct(s2));
		}
	struct row *gf = find(MODE_TRANSPORT, false, 1, PEER_SHMRING, G.batch), *ff = float_row(1, PEER_SHMRING);
	if (gf && ff && ff->ok && json_per_rec(gf) > 0 && json_per_rec(ff) > 0) {
		double g = per_rec(gf, gf->cpu_cons) / json_per_rec(gf), f = per_rec(ff, ff->cpu_cons) / json_per_rec(ff);
		target("float-heavy records (16 doubles), transport, P=1, non-blocking",
		       "writer ns per JSON byte ≤ generic records'", f <= g,
		       "%.3f vs %.3f ns/byte (%.0f B and %.0f B lines); %.2f M rec/s; converter alone: "
		       "micro-benchmarks below", f, g, json_per_rec(ff), json_per_rec(gf), ff->rate / 1e6);
	}
	/* Earlier rounds' targets that #14 keeps. */
	for (int bi = 0; bi < G.nblk; bi++) {
		bool blk = G.blk[bi];
		for (int P = 1; P <= 2; P++) {
			struct row *s = find(MODE_TRANSPORT, blk, P, PEER_SHMRING, G.batch);
			struct row *mq = find(MODE_TRANSPORT, blk, P, PEER_MQ, G.batch);
			if (s && mq) {
				snprintf(what, sizeof(what), "throughput vs POSIX mq, transport, P=%d, %s", P, blk_name(blk));
				target(what, "≥ 5×", s->rate / mq->rate >= 5, "%.2f× (mq %.2f M rec/s)",
				       s->rate / mq->rate, mq->rate / 1e6);
			}
			if (!s)
				continue;
			double cpu = per_rec(s, s->cpu_prod + s->cpu_cons);
			snprintf(what, sizeof(what), "CPU per record, all processes, transport, P=%d, %s", P, blk_name(blk));
			target(what, "≤ 500 ns", cpu <= 500, "%.0f ns (producers %.0f + writer %.0f)", cpu,
			       per_rec(s, s->cpu_prod), per_rec(s, s->cpu_cons));
		}
	}
	for (int bi = 0; bi < G.nblk; bi++) {
		bool blk = G.blk[bi];
		struct row *pl = find(MODE_PIPELINE, blk, 1, PEER_SHMRING, G.batch);
		if (!pl)
			continue;
		snprintf(what, sizeof(what), "build + encode + send, pipeline, P=1, %s", blk_name(blk));
		if (pl->enc_p50 > 0)
			target(what, "≤ 200 ns", pl->ok_p50 <= 200,
			       "p50 %.0f ns (of which build + encode into a buffer %.0f; then shmring_send_wait), "
			       "producer CPU %.0f ns/record", pl->ok_p50, pl->enc_p50, per_rec(pl, pl->cpu_prod));
		else
			target(what, "≤ 200 ns", pl->ok_p50 <= 200,
			       "p50 %.0f ns (shmring_audit_send_to: encoded in the ring), producer CPU "
			       "%.0f ns/record", pl->ok_p50, per_rec(pl, pl->cpu_prod));
	}
	fputs("\nRetired with #14: a send p50 7× below the pipe's (it would need 25 ns with the 16 ns "
	      "timer included) and 20× below POSIX mq's; ≥ 2.5 M rec/s and ≥ 2.5× the pipe became "
	      "≥ 8 M rec/s and ≥ 4×. The p50 ratios stay in the table of peers below.\n\n", G.md);
}

/* --floats: float-heavy records against the compaction records, same P, same writer. */
static void report_floats(void)
{
	if (!G.nfloatP)
		return;
	fprintf(G.md, "## Float-heavy records (transport, non-blocking, median of %d)\n\n"
		      "Each record is a map of 16 doubles (8 short decimals, 8 of 15-17 significant "
		      "digits), against the compaction records of the main table at the same P. Per JSON "
		      "byte: the consumer's CPU divided by the output's bytes per line.\n\n"
		      "| P | records | peer | M rec/s | JSON B/line | consumer CPU ns/rec | ns per JSON byte | p50 | p99 | drops |\n"
		      "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|\n", G.reps);
	for (int k = 0; k < G.nfloatP; k++)
		for (int v = 0; v < 2; v++)
			for (int pi = 0; pi < 2; pi++) {
				int peer = pi ? PEER_PIPE : PEER_SHMRING;
				struct row *w = v ? float_row(G.floatP[k], peer)
						  : find(MODE_TRANSPORT, false, G.floatP[k], peer, G.batch);
				if (!w)
					continue;
				if (!w->ok) {
					fprintf(G.md, "| %d | %s | %s | failed: %s | | | | | | |\n", G.floatP[k],
						v ? "16 doubles" : "compaction", peer_names[peer], w->err);
					continue;
				}
				double c = per_rec(w, w->cpu_cons);
				fprintf(G.md, "| %d | %s | %s | %.3f | %.0f | %.0f | %.3f | %.0f | %.0f | %.1f%% |\n",
					G.floatP[k], v ? "16 doubles" : "compaction", peer_names[peer], w->rate / 1e6,
					json_per_rec(w), c, json_per_rec(w) > 0 ? c / json_per_rec(w) : 0, w->ok_p50,
					w->ok_p99, drop_pct(w));
			}
	fputc('\n', G.md);
}

static void report_sweep(void)
{
	if (!G.nsweep)
		return;
	fprintf(G.md, "## shmring-writer --batch-bytes (transport, blocking, median of %d)\n\n"
		      "| P | batch | M rec/s | range | CPU ns/rec (prod + writer) | writer on CPU | p99 |\n"
		      "|---:|---:|---:|---|---:|---:|---:|\n", G.reps);
	for (int i = 0; i < nrows; i++) {
		struct row *w = &rows[i];
		if (w->sweep != ROW_BATCH)
			continue;
		if (!w->ok) {
			fprintf(G.md, "| %d | %zu MiB | failed: %s | | | | |\n", w->c.P, w->c.batch_bytes >> 20, w->err);
			continue;
		}
		fprintf(G.md, "| %d | %zu MiB | %.3f | %.2f–%.2f | %.0f (%.0f + %.0f) | %.0f%% | %.0f |\n", w->c.P,
			w->c.batch_bytes >> 20, w->rate / 1e6, w->rate_lo / 1e6, w->rate_hi / 1e6,
			per_rec(w, w->cpu_prod + w->cpu_cons), per_rec(w, w->cpu_prod), per_rec(w, w->cpu_cons),
			busy_pct(w), w->ok_p99);
	}
	fputc('\n', G.md);
}

/* The record-size sweep: the same sizes with every record in one slot (slots of
 * SIZE_SLOT_ONE bytes, the fixed-slot ring records could not span before) and spanning
 * slots of SIZE_SLOT_SPAN bytes; both rings have the same 32 MiB data area. */
#define SIZE_SLOT_ONE  1024u
#define SIZE_SLOT_SPAN 64u
#define SIZE_DATA      (32u << 20)

static const struct row *size_row(int bytes, uint32_t slot)
{
	for (int i = 0; i < nrows; i++)
		if (rows[i].sweep == ROW_SIZE && rows[i].c.rec_bytes == (uint32_t)bytes && rows[i].c.slot_size == slot)
			return &rows[i];
	return NULL;
}

static void report_sizes(void)
{
	if (!G.nsizes)
		return;
	fprintf(G.md, "## Record sizes (transport, P=1, non-blocking, median of %d)\n\n"
		      "Generic records of exactly the size shown, through a ring whose slots hold each "
		      "record whole (%u B slots) and through one whose records span several slots "
		      "(%u B slots); both rings have %u MiB of data. `span ÷ one` > 1 means spanning "
		      "is faster. Latency is of accepted sends, ns.\n\n"
		      "| record | slots each (one / span) | one slot: M rec/s | MB/s | p50 | p99 | drops "
		      "| spanning: M rec/s | MB/s | p50 | p99 | drops | span ÷ one |\n"
		      "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
		G.reps, SIZE_SLOT_ONE, SIZE_SLOT_SPAN, SIZE_DATA >> 20);
	for (int k = 0; k < G.nsizes; k++) {
		const struct row *a = size_row(G.sizes[k], SIZE_SLOT_ONE), *b = size_row(G.sizes[k], SIZE_SLOT_SPAN);
		if (!a || !b)
			continue;
		if (!a->ok || !b->ok) {
			fprintf(G.md, "| %d B | failed: %s | | | | | | | | | | | |\n", G.sizes[k], a->ok ? b->err : a->err);
			continue;
		}
		unsigned na = (G.sizes[k] + 8 + SIZE_SLOT_ONE - 1) / SIZE_SLOT_ONE;
		unsigned nb = (G.sizes[k] + 8 + SIZE_SLOT_SPAN - 1) / SIZE_SLOT_SPAN;
		fprintf(G.md, "| %d B | %u / %u | %.3f | %.0f | %.0f | %.0f | %.1f%% | %.3f | %.0f | %.0f | "
			      "%.0f | %.1f%% | %.2f |\n",
			G.sizes[k], na, nb, a->rate / 1e6, a->rate * G.sizes[k] / 1e6, a->ok_p50, a->ok_p99,
			drop_pct(a), b->rate / 1e6,
			b->rate * G.sizes[k] / 1e6, b->ok_p50, b->ok_p99,
			drop_pct(b), b->rate / a->rate);
	}
	fputc('\n', G.md);
}

/* Run cfg G.reps times; keep the run with the median throughput (all runs go to the CSV). */
static void run_median(struct run_cfg *base, struct row *out, const char *kind, const char *tag,
		       struct row *reps, int r, int nrep)
{
	struct run_cfg cfg = *base;
	run_one(&cfg, &reps[r]);
	progress(&reps[r], tag);
	csv_row(&reps[r], "run");
	if (r + 1 < nrep)
		return;
	struct row *ok[16];
	int n = 0;
	for (int i = 0; i < nrep; i++)
		if (reps[i].ok)
			ok[n++] = &reps[i];
	if (!n) {
		*out = reps[nrep - 1];
	} else {
		for (int i = 1; i < n; i++) /* insertion sort by rate */
			for (int j = i; j > 0 && ok[j]->rate < ok[j - 1]->rate; j--) {
				struct row *t = ok[j];
				ok[j] = ok[j - 1];
				ok[j - 1] = t;
			}
		*out = *ok[(n - 1) / 2];
		out->rate_lo = ok[0]->rate;
		out->rate_hi = ok[n - 1]->rate;
		out->nrep = n;
	}
	csv_row(out, kind);
}

/* ---- main --------------------------------------------------------------------------- */

static int find_peer(const char *s)
{
	for (int i = 0; i < PEER_N; i++)
		if (strcmp(s, peer_names[i]) == 0)
			return i;
	if (!strcmp(s, "mq"))
		return PEER_MQ;
	if (!strcmp(s, "dgram"))
		return PEER_DGRAM;
	if (!strcmp(s, "file"))
		return PEER_FILE;
	return -1;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: shmring-bench [--quick] [-P 1,2,4,8] [-m M] [--modes transport,pipeline]\n"
		   "         [--peers shmring,pipe,posix-mq,unix-dgram,append-file,zmq] [--blocking both|yes|no]\n"
		   "         [--batch-bytes B] [--sweep 1,4,16|none] [--sweep-P 1,2] [--sizes 64,128,256,512,900|none]\n"
		   "         [--floats 1,2|none] [--writer-ir IR] [--warm N] [--no-micro] [--micro-only] [--reps N]\n"
		   "         [--capacity SLOTS] [--writer-nice N] [--pace NS]\n"
		   "         [--dir DIR] [--md FILE] [--csv FILE] [--writer PATH]\n"
		   "       shmring-bench --ir N   (fixed-count loops for callgrind)\n");
}

static int is_tmpfs(const char *d)
{
	struct statfs s;
	return statfs(d, &s) == 0 && (s.f_type == 0x01021994 || s.f_type == 0x858458f6);
}

static void find_writer(char *buf, size_t n)
{
	const char *e = getenv("SHMRING_WRITER");
	if (e && *e) {
		snprintf(buf, n, "%s", e);
		return;
	}
	char self[PATH_MAX];
	ssize_t k = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (k > 0) {
		self[k] = 0;
		char *slash = strrchr(self, '/');
		if (slash) {
			*slash = 0;
			const char *cand[] = { "/shmring-writer", "/../shmring-writer" };
			for (int i = 0; i < 2; i++) {
				/* A cut-short path could name another program: skip it. */
				if ((size_t)snprintf(buf, n, "%s%s", self, cand[i]) < n &&
				    access(buf, X_OK) == 0)
					return;
			}
		}
	}
	snprintf(buf, n, "%s", SHMRING_WRITER_PATH);
}

static void rm_dir(const char *d)
{
	DIR *dir = opendir(d);
	struct dirent *e;
	char p[600];
	while (dir && (e = readdir(dir))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(p, sizeof(p), "%s/%s", d, e->d_name);
		unlink(p);
	}
	if (dir)
		closedir(dir);
	rmdir(d);
}

static void on_alarm(int sig)
{
	(void)sig;
}

static void run_cfg_init(struct run_cfg *c, int peer, int mode, bool blk, int P, size_t batch)
{
	memset(c, 0, sizeof(*c));
	c->peer = (enum peer)peer;
	c->mode = (enum mode)mode;
	c->blocking = blk;
	c->P = P;
	c->M = G.M;
	uint64_t warm = peer == PEER_SHMRING ? G.warm_ring : G.warm_peer;
	c->warm = (warm + (uint64_t)P - 1) / (uint64_t)P;
	c->batch_bytes = batch;
	snprintf(c->dir, sizeof(c->dir), "%s", G.dir);
	c->capacity = G.capacity;
	c->writer_nice = G.writer_nice;
	c->pace_ns = G.pace_ns;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "quick", no_argument, 0, 'q' },        { "producers", required_argument, 0, 'P' },
		{ "records", required_argument, 0, 'm' }, { "modes", required_argument, 0, 'o' },
		{ "peers", required_argument, 0, 'p' },  { "blocking", required_argument, 0, 'b' },
		{ "batch-bytes", required_argument, 0, 'B' }, { "sweep", required_argument, 0, 's' },
		{ "sweep-P", required_argument, 0, 'S' }, { "warm", required_argument, 0, 'w' },
		{ "no-micro", no_argument, 0, 'n' },    { "dir", required_argument, 0, 'd' },
		{ "md", required_argument, 0, 'M' },     { "csv", required_argument, 0, 'C' },
		{ "writer", required_argument, 0, 'W' }, { "ir", required_argument, 0, 'I' },
		{ "reps", required_argument, 0, 'R' },    { "micro-only", no_argument, 0, 'u' },
		{ "capacity", required_argument, 0, 'c' }, { "writer-nice", required_argument, 0, 'N' },
		{ "pace", required_argument, 0, 'T' },   { "sizes", required_argument, 0, 'z' },
		{ "floats", required_argument, 0, 'F' }, { "writer-ir", required_argument, 0, 'i' },
		{ "help", no_argument, 0, 'h' },         { 0, 0, 0, 0 },
	};
	const char *Ps = NULL, *modes = "transport,pipeline", *peers = NULL, *blk = "both",
		   *sweep = NULL, *sweepP = "1,2", *base = NULL, *md = NULL, *csv = NULL, *sizes = NULL,
		   *floats = NULL;
	long M = -1, warm = -1, ir = -1, reps = -1;
	int micro_only = 0;
	char writer[PATH_MAX];
	int c;
	G.micro = 1;
	G.batch = 1 << 20;
	G.capacity = RING_CAPACITY;
	find_writer(writer, sizeof(writer));
	while ((c = getopt_long(argc, argv, "qP:m:h", lo, NULL)) != -1) {
		switch (c) {
		case 'q': G.quick = 1; break;
		case 'P': Ps = optarg; break;
		case 'm': M = atol(optarg); break;
		case 'o': modes = optarg; break;
		case 'p': peers = optarg; break;
		case 'b': blk = optarg; break;
		case 'B': G.batch = parse_size(optarg); break;
		case 's': sweep = optarg; break;
		case 'S': sweepP = optarg; break;
		case 'w': warm = atol(optarg); break;
		case 'n': G.micro = 0; break;
		case 'd': base = optarg; break;
		case 'M': md = optarg; break;
		case 'C': csv = optarg; break;
		case 'W': snprintf(writer, sizeof(writer), "%s", optarg); break;
		case 'I': ir = atol(optarg); break;
		case 'R': reps = atol(optarg); break;
		case 'u': micro_only = 1; break;
		case 'c': G.capacity = (uint32_t)atol(optarg); break;
		case 'N': G.writer_nice = atoi(optarg); break;
		case 'T': G.pace_ns = (uint64_t)atol(optarg); break;
		case 'z': sizes = optarg; break;
		case 'F': floats = optarg; break;
		case 'i': G.writer_ir = atof(optarg); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	bench_clock_calibrate();
	if (ir > 0)
		return micro_ir(ir) ? 1 : 0;
	G.writer = writer;
	if (access(G.writer, X_OK) != 0)
		die("shmring-writer not found (%s); set SHMRING_WRITER or --writer", G.writer);
	G.M = M > 0 ? (uint64_t)M : G.quick ? 20000 : 100000;
	/* One full lap of the ring, so that every page of it has been touched by the writer
	 * and the producers; the peers' buffers are far smaller. */
	G.warm_ring = warm >= 0 ? (uint64_t)warm : G.capacity;
	G.warm_peer = warm >= 0 ? (uint64_t)warm : G.quick ? 4096 : 8192;
	G.reps = reps > 0 ? (int)(reps > 16 ? 16 : reps) : G.quick ? 1 : 3;
	G.nP = micro_only ? 0 : parse_list(Ps ? Ps : "1,2,4,8", G.Ps, 16);
	if (micro_only)
		sweep = sizes = floats = "none";
	if (!floats)
		floats = "1";
	if (strcmp(floats, "none"))
		G.nfloatP = parse_list(floats, G.floatP, 8);
	if (!sizes)
		sizes = G.quick ? "64,900" : "64,128,256,512,900";
	if (strcmp(sizes, "none")) {
		G.nsizes = parse_list(sizes, G.sizes, 8);
		for (int i = 0; i < G.nsizes; i++)
			if (G.sizes[i] < 11 || G.sizes[i] > (int)SIZE_SLOT_ONE - 8)
				die("--sizes: record sizes must be 11..1016 bytes (one slot of the first ring)");
	}
	G.nsweepP = parse_list(sweepP, G.sweepP, 8);
	if (!sweep)
		sweep = "1,4,16";
	if (strcmp(sweep, "none")) {
		int mb[8];
		G.nsweep = parse_list(sweep, mb, 8);
		for (int i = 0; i < G.nsweep; i++)
			G.sweep[i] = (size_t)mb[i] << 20;
	}
	for (int i = 0; i < G.nP; i++)
		if (G.Ps[i] < 1 || G.Ps[i] > MAXP)
			die("P must be 1..%d", MAXP);
	if (strstr(modes, "transport"))
		G.modes[G.nmodes++] = MODE_TRANSPORT;
	if (strstr(modes, "pipeline"))
		G.modes[G.nmodes++] = MODE_PIPELINE;
	if (!strcmp(blk, "both") || !strcmp(blk, "no"))
		G.blk[G.nblk++] = 0;
	if (!strcmp(blk, "both") || !strcmp(blk, "yes"))
		G.blk[G.nblk++] = 1;
	if (!G.nmodes || !G.nblk) {
		usage(stderr);
		return 2;
	}
	{
		char *dup = strdup(peers ? peers : "shmring,pipe,posix-mq,unix-dgram,append-file,zmq"), *save;
		for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
			int p = find_peer(t);
			if (p < 0)
				die("unknown peer %s", t);
			if (!peer_available(p)) {
				fprintf(stderr, "shmring-bench: %s: not built (libzmq missing), skipped\n", t);
				continue;
			}
			G.peers[G.npeers++] = p;
		}
		free(dup);
	}

	/* Output files go to the local disk, not to a memory file system. */
	if (!base) {
		base = getenv("TMPDIR");
		if (!base || is_tmpfs(base))
			base = is_tmpfs("/var/tmp") ? "/tmp" : "/var/tmp";
	}
	snprintf(G.dir, sizeof(G.dir), "%s/shmring-bench.XXXXXX", base);
	if (!mkdtemp(G.dir))
		die("mkdtemp %s: %s", G.dir, strerror(errno));
	if (is_tmpfs(G.dir))
		fprintf(stderr, "shmring-bench: warning: %s is a memory file system\n", G.dir);
	struct statfs sf;
	if (statfs(G.dir, &sf) == 0 && (double)sf.f_bavail * (double)sf.f_bsize < 4e9)
		fprintf(stderr, "shmring-bench: warning: less than 4 GB free in %s; a full disk stalls "
				"the writer (it retries every second) and fails the run\n", G.dir);
	G.md = md ? fopen(md, "w") : stdout;
	G.csv = csv ? fopen(csv, "w") : NULL;
	if (!G.md || (csv && !G.csv))
		die("cannot open the output files");
	if (!G.csv)
		G.csv = fopen("/dev/null", "w");
	fputs(csv_header, G.csv);
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = { .sa_handler = on_alarm };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	fprintf(stderr, "shmring-bench: M=%llu per producer, %d run(s) each, warm-up %llu (peers %llu), "
			"batch %zu, dir %s, writer %s, TSC %.4f ns/tick\n",
		(unsigned long long)G.M, G.reps, (unsigned long long)G.warm_ring,
		(unsigned long long)G.warm_peer, G.batch, G.dir, G.writer,
		bench_ns_per_tick);

	uint64_t t_start = bench_now_ns();
	uint32_t mq_depth = 0;
	int pipe_bytes = 0;
	/* Repetitions interleaved (every peer once, then again): a disturbance of the shared
	 * machine hits all peers of a configuration alike, not one peer's every run. */
	static struct row reps_[PEER_N][16];
	for (int mi = 0; mi < G.nmodes; mi++)
		for (int bi = 0; bi < G.nblk; bi++)
			for (int pi = 0; pi < G.nP; pi++)
				for (int r = 0; r < G.reps; r++)
					for (int k = 0; k < G.npeers; k++) {
						/* O_NONBLOCK is ignored by regular files: one mode. */
						if (G.peers[k] == PEER_FILE && !G.blk[bi])
							continue;
						struct run_cfg cfg;
						struct row med;
						run_cfg_init(&cfg, G.peers[k], G.modes[mi], G.blk[bi], G.Ps[pi], G.batch);
						run_median(&cfg, &med, "e2e", "", reps_[G.peers[k]], r, G.reps);
						if (reps_[G.peers[k]][r].c.mq_depth)
							mq_depth = reps_[G.peers[k]][r].c.mq_depth;
						if (reps_[G.peers[k]][r].c.pipe_bytes)
							pipe_bytes = reps_[G.peers[k]][r].c.pipe_bytes;
						if (r + 1 == G.reps)
							add_row(&med);
					}
	/* Batch sizes of the writer, interleaved the same way. */
	static struct row sw_[8][16];
	for (int pi = 0; pi < G.nsweepP; pi++)
		for (int r = 0; r < G.reps; r++)
			for (int k = 0; k < G.nsweep; k++) {
				struct run_cfg cfg;
				struct row med;
				char tag[16];
				run_cfg_init(&cfg, PEER_SHMRING, MODE_TRANSPORT, true, G.sweepP[pi], G.sweep[k]);
				snprintf(tag, sizeof(tag), "%zuM", G.sweep[k] >> 20);
				run_median(&cfg, &med, "sweep", tag, sw_[k], r, G.reps);
				if (r + 1 == G.reps) {
					med.sweep = ROW_BATCH;
					add_row(&med);
				}
			}
	/* Record sizes: one slot each against spanning slots, interleaved the same way. */
	static struct row sz_[16][16];
	for (int r = 0; r < G.reps; r++)
		for (int k = 0; k < G.nsizes; k++)
			for (int v = 0; v < 2; v++) {
				struct run_cfg cfg;
				struct row med;
				char tag[32];
				run_cfg_init(&cfg, PEER_SHMRING, MODE_TRANSPORT, false, 1, G.batch);
				cfg.rec_bytes = (uint32_t)G.sizes[k];
				cfg.slot_size = v ? SIZE_SLOT_SPAN : SIZE_SLOT_ONE;
				cfg.capacity = SIZE_DATA / cfg.slot_size;
				snprintf(tag, sizeof(tag), "%dB/%uB", G.sizes[k], cfg.slot_size);
				run_median(&cfg, &med, "sizes", tag, sz_[2 * k + v], r, G.reps);
				if (r + 1 == G.reps) {
					med.sweep = ROW_SIZE;
					add_row(&med);
				}
			}
	/* Float-heavy records: shmring and the pipe, transport, non-blocking, interleaved. */
	static struct row fl_[16][16];
	for (int r = 0; r < G.reps; r++)
		for (int k = 0; k < G.nfloatP; k++)
			for (int v = 0; v < 2; v++) {
				struct run_cfg cfg;
				struct row med;
				char tag[32];
				int want = 0;
				for (int q = 0; q < G.npeers; q++)
					want |= G.peers[q] == (v ? PEER_PIPE : PEER_SHMRING);
				if (!want)
					continue;
				run_cfg_init(&cfg, v ? PEER_PIPE : PEER_SHMRING, MODE_TRANSPORT, false, G.floatP[k], G.batch);
				cfg.rec_bytes = REC_FLOATS;
				snprintf(tag, sizeof(tag), "floats");
				run_median(&cfg, &med, "floats", tag, fl_[2 * k + v], r, G.reps);
				if (r + 1 == G.reps) {
					med.sweep = ROW_FLOAT;
					add_row(&med);
				}
			}
	double e2e_secs = (double)(bench_now_ns() - t_start) / 1e9;
	static struct pool pl;
	double avg = 0;
	if (pool_build(&pl, 0) == 0)
		avg = (double)pl.mp_total / POOL_SIZE;
	pool_free(&pl);
	char qlen[32] = "?";
	FILE *qf = fopen("/proc/sys/net/unix/max_dgram_qlen", "r");
	if (qf) {
		if (!fgets(qlen, sizeof(qlen), qf))
			snprintf(qlen, sizeof(qlen), "?");
		qlen[strcspn(qlen, "\n")] = 0;
		fclose(qf);
	}

	FILE *f = G.md;
	if (G.nP)
		fprintf(f, "## Parameters\n\n"
		   "M = %llu records per producer (P × M per configuration), each configuration run %d "
		   "times (interleaved) and the median kept. Before the clock starts, a warm-up is sent "
		   "and written: %llu records for shmring (one lap of the ring), %llu for the peers. "
		   "transport: records packed once, before the clock; pipeline: every send fills a "
		   "compaction record (ts = now); shmring's non-blocking send encodes it straight into "
		   "the ring with `shmring_audit_send_to` (what `shmring_audit_send` does), the peers and "
		   "shmring's blocking send pack it with `shmring_audit_pack` into a buffer and send it "
		   "with the same call as transport. "
		   "Records average %.0f bytes of "
		   "msgpack, one in ten with a violation. shmring: ring of %u slots × %u bytes, fresh "
		   "`shmring-writer --batch-bytes %zu` per configuration. Peers: pipe of %d bytes "
		   "(F_SETPIPE_SZ), POSIX mq of %u messages × 512 bytes, AF_UNIX datagram socket "
		   "buffers up to 32 MiB (queue length net.unix.max_dgram_qlen = %s), ZeroMQ ipc with "
		   "HWM %u; each consumer converts with the same `shmring_msgpack_to_json` and "
		   "write(2)s batches of %zu bytes to an O_APPEND file (flushing whenever its channel is "
		   "momentarily empty, as the writer does). append-file: every producer converts and "
		   "write(2)s its own line (O_NONBLOCK is ignored by regular files, so it is run "
		   "blocking only). TSC: %.4f ns per tick; latency buckets are 1/16 of a power of two "
		   "wide and the upper edge is reported. End-to-end part took %.0f s.\n\n",
		(unsigned long long)G.M, G.reps, (unsigned long long)G.warm_ring,
		(unsigned long long)G.warm_peer, avg, G.capacity,
		RING_SLOT, G.batch, pipe_bytes, mq_depth, qlen, RING_CAPACITY, G.batch,
		bench_ns_per_tick, e2e_secs);
	{
		static struct hist th;
		for (int i = 0; i < 200000; i++) {
			uint64_t a = tick_start(), b = tick_end();
			hist_add(&th, b - a);
		}
		timer_ns = hist_quantile_ns(&th, 0.5);
	}
	if (G.nP) {
		report_targets();
		report_ratios();
		report_configs();
		report_sweep();
	}
	report_sizes();
	report_floats();
	if (G.micro) {
		struct micro_env me = { G.dir, G.writer, G.quick, G.md, G.csv };
		if (micro_run(&me))
			G.failures++;
	}
	fclose(G.csv);
	if (G.md != stdout)
		fclose(G.md);
	rm_dir(G.dir);
	fprintf(stderr, "shmring-bench: %d configuration(s) failed\n", G.failures);
	return G.failures ? 1 : 0;
}
