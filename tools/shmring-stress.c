/*
 * shmring-stress - P producers × M records through a small ring while producers and the
 * writer are randomly stopped, continued and killed; then every line of the output is
 * checked against what was sent, and the ring's counters against the producers' own.
 *
 *   shmring-stress [--producers P] [--records M] [--capacity C] [--slot-size B]
 *                  [--chaos-ms MS] [--mode chaos|kill|stop] [--spin] [--stall-timeout MS]
 *                  [--min-pad N] [--max-pad N] [--seed S] [--out PATH] [--keep]
 *
 * --mode kill SIGKILLs producers at random points of their sends (each is restarted
 * where it was), stop SIGSTOPs them, chaos does both and stops and kills the writer too.
 * --spin retries a dropped record with shmring_send at once instead of send_wait.
 *
 * Exit 0 when every check holds. The checks use counts kept outside the ring: each
 * producer counts the outcomes its calls returned, and marks when it is inside a call,
 * so that the killer knows how many calls died without an answer (`unanswered`).
 *   - every line is JSON; each producer's records appear in increasing order, none twice,
 *     none that was never sent; every record whose send returned 0 is in the file;
 *   - lines in the file == written; pending == 0 and head == tail once drained, and
 *     the ring keeps the invariants of shm_ring_valid() at rest;
 *   - answered <= sent <= answered + unanswered (exact when nothing was killed), and the
 *     same bounds for written (0), dropped_full (-EAGAIN), abandoned (-ECANCELED).
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <msgpack.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "shmring/reserve.h"

#define MAXP 64

enum { A_OK, A_FULL, A_OVERSIZE, A_CANCELED, A_OTHER, A_N };

struct shared {
	/* Per producer slot: next index to send, and 1 + the last index acknowledged. */
	volatile long attempted[MAXP];
	volatile long acked[MAXP];
	volatile long answered[MAXP][A_N];  /* calls that returned, by outcome */
	volatile int inside[MAXP];          /* 1 while a call is in progress */
	volatile unsigned char acked_map[MAXP][1 << 16]; /* 1 = send returned 0 */
};

static int g_spin;
static size_t g_min_pad = 0, g_max_pad = 279;

static const char *writer_path(const char *argv0)
{
	const char *e = getenv("SHMRING_WRITER");
	if (e)
		return e;
	static char p[4096];
	snprintf(p, sizeof(p), "%s", argv0);
	char *s = strrchr(p, '/');
	if (s) {
		snprintf(s + 1, sizeof(p) - (size_t)(s + 1 - p), "../shmring-writer");
		if (access(p, X_OK) == 0)
			return p;
		snprintf(s + 1, sizeof(p) - (size_t)(s + 1 - p), "shmring-writer");
		if (access(p, X_OK) == 0)
			return p;
	}
	return "shmring-writer";
}

static void msleep(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static const char *g_stall = "150";

static pid_t start_writer(const char *wp, const char *ring, const char *out, const char *cap, const char *slot)
{
	pid_t pid = fork();
	if (pid == 0) {
		if (!getenv("SHMRING_STRESS_VERBOSE"))
			freopen("/dev/null", "w", stderr);
		execl(wp, wp, "--ring", ring, "--out", out, "--capacity", cap, "--slot-size", slot,
		      "--stall-timeout", g_stall, (char *)NULL);
		_exit(127);
	}
	/* Wait until it serves (holds the lock and published its pid). */
	shmring *r = NULL;
	for (int i = 0; i < 400; i++) {
		struct shmring_stats st;
		if (!r && shmring_attach(ring, &r))
			r = NULL;
		if (r && shmring_stats(r, &st) == 0 && st.writer_alive && st.writer_pid == pid)
			break;
		msleep(5);
	}
	if (r)
		shmring_close(r);
	return pid;
}

static void quiet(enum shmring_log_level l, const char *msg, void *ctx)
{
	(void)l, (void)msg, (void)ctx;
}

static long g_pace = 1; /* a 1 ms pause every g_pace records keeps load through the chaos */

static void producer(shmring *r, struct shared *sh, int id, long m)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	char pad[300];
	for (long i = sh->attempted[id]; i < m; i++) {
		msgpack_sbuffer_clear(&sb);
		msgpack_packer pk;
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		msgpack_pack_map(&pk, 3);
		msgpack_pack_str_with_body(&pk, "p", 1);
		msgpack_pack_int(&pk, id);
		msgpack_pack_str_with_body(&pk, "i", 1);
		msgpack_pack_long(&pk, i);
		size_t n = g_min_pad + (size_t)(i * 37) % (g_max_pad - g_min_pad + 1);
		for (size_t k = 0; k < n; k++)
			pad[k] = (char)('a' + (k + (size_t)i) % 26);
		msgpack_pack_str_with_body(&pk, "s", 1);
		msgpack_pack_str_with_body(&pk, pad, n);
		if (i % g_pace == 0)
			msleep(1);
		sh->attempted[id] = i + 1;
		int rc;
		do {
			sh->inside[id] = 1;
			__atomic_signal_fence(__ATOMIC_SEQ_CST); /* marked before the call starts */
			rc = g_spin ? shmring_send(r, sb.data, sb.size) : shmring_send_wait(r, sb.data, sb.size, 20);
			__atomic_signal_fence(__ATOMIC_SEQ_CST);
			if (rc == 0) {
				sh->acked_map[id][i] = 1;
				sh->acked[id] = i + 1;
			}
			sh->answered[id][rc == 0 ? A_OK : rc == -EAGAIN ? A_FULL : rc == -EMSGSIZE ? A_OVERSIZE :
					 rc == -ECANCELED ? A_CANCELED : A_OTHER]++;
			__atomic_signal_fence(__ATOMIC_SEQ_CST);
			sh->inside[id] = 0;
		} while (g_spin && rc == -EAGAIN);
	}
	msgpack_sbuffer_destroy(&sb);
}

int main(int argc, char **argv)
{
	int P = 4;
	long M = 5000;
	const char *cap = "64", *slot = "256", *outp = NULL;
	unsigned chaos_ms = 2000, seed = (unsigned)time(NULL);
	int keep = 0;
	const char *mode = "chaos";
	static const struct option lo[] = {
		{ "producers", 1, 0, 'p' }, { "records", 1, 0, 'm' }, { "capacity", 1, 0, 'c' },
		{ "slot-size", 1, 0, 's' }, { "chaos-ms", 1, 0, 't' }, { "seed", 1, 0, 'S' },
		{ "out", 1, 0, 'o' },       { "keep", 0, 0, 'k' },     { "help", 0, 0, 'h' },
		{ "mode", 1, 0, 'M' },      { "spin", 0, 0, 'P' },     { "stall-timeout", 1, 0, 'T' },
		{ "min-pad", 1, 0, 'a' },   { "max-pad", 1, 0, 'b' },  { 0, 0, 0, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "p:m:c:s:t:S:o:kh", lo, NULL)) != -1) {
		switch (c) {
		case 'p': P = atoi(optarg); break;
		case 'm': M = atol(optarg); break;
		case 'c': cap = optarg; break;
		case 's': slot = optarg; break;
		case 't': chaos_ms = (unsigned)atoi(optarg); break;
		case 'S': seed = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'o': outp = optarg; break;
		case 'k': keep = 1; break;
		case 'M': mode = optarg; break;
		case 'P': g_spin = 1; break;
		case 'T': g_stall = optarg; break;
		case 'a': g_min_pad = (size_t)atol(optarg); break;
		case 'b': g_max_pad = (size_t)atol(optarg); break;
		default:
			printf("usage: shmring-stress [--producers P] [--records M] [--capacity C] [--slot-size B]\n"
			       "                      [--chaos-ms MS] [--mode chaos|kill|stop] [--spin]\n"
			       "                      [--stall-timeout MS] [--min-pad N] [--max-pad N]\n"
			       "                      [--seed S] [--out PATH] [--keep]\n");
			return c == 'h' ? 0 : 2;
		}
	}
	int m_kill = !strcmp(mode, "kill"), m_stop = !strcmp(mode, "stop"), m_chaos = !strcmp(mode, "chaos");
	if (P < 1 || P > MAXP || M < 1 || M > (1 << 16) || !(m_kill || m_stop || m_chaos) ||
	    g_max_pad < g_min_pad || g_max_pad > 8000 || atoi(g_stall) < 1) {
		fprintf(stderr, "shmring-stress: 1 <= producers <= %d, 1 <= records <= 65536, "
			"--mode chaos|kill|stop, min-pad <= max-pad <= 8000, stall-timeout >= 1\n", MAXP);
		return 2;
	}
	g_pace = M / (long)(chaos_ms ? chaos_ms : 1);
	if (g_pace < 1)
		g_pace = 1;
	char ring[64], out[256];
	snprintf(ring, sizeof(ring), "stress-%d", (int)getpid());
	if (outp)
		snprintf(out, sizeof(out), "%s", outp);
	else
		snprintf(out, sizeof(out), "/tmp/shmring-stress-%d.jsonl", (int)getpid());
	unlink(out);
	shmring_unlink(ring);
	struct shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		return 1;
	const char *wp = writer_path(argv[0]);
	pid_t writer = start_writer(wp, ring, out, cap, slot);
	shmring *r;
	int rc = shmring_open(ring, NULL, &r);
	if (rc) {
		fprintf(stderr, "shmring-stress: cannot open ring: %s\n", strerror(-rc));
		return 1;
	}
	shmring_set_log(quiet, NULL); /* drops are expected here: counted, not logged */
	pid_t prod[MAXP];
	for (int p = 0; p < P; p++)
		if ((prod[p] = fork()) == 0) {
			producer(r, sh, p, M);
			_exit(0);
		}
	/* Chaos: stop, continue, kill producers (a killed one is restarted where it was)
	 * and the writer (restarted at once). */
	unsigned long stops = 0, pkills = 0, wkills = 0, wstops = 0, unanswered = 0;
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000 > chaos_ms)
			break;
		msleep(2 + rand_r(&seed) % 15);
		int p = rand_r(&seed) % P;
		int act = rand_r(&seed) % 6;
		if (m_kill)
			act = 2;
		else if (m_stop)
			act = act < 3 ? 0 : 5;
		switch (act) {
		case 0:
		case 1:
			/* Aim for an instant inside a send: look for the mark a little first. */
			for (int k = 0; k < 100000 && !sh->inside[p]; k++)
				;
			if (kill(prod[p], SIGSTOP) == 0) {
				stops++;
				/* sometimes past the stall timeout: quarantine, -ECANCELED */
				msleep(rand_r(&seed) % (unsigned)(atoi(g_stall) * 3 / 2 + 1));
				kill(prod[p], SIGCONT);
			}
			break;
		case 2:
			if (waitpid(prod[p], NULL, WNOHANG) == 0 && kill(prod[p], SIGKILL) == 0) {
				waitpid(prod[p], NULL, 0);
				pkills++;
				/* A call cut off before it answered: its record may or may not count. */
				if (sh->inside[p]) {
					unanswered++;
					sh->inside[p] = 0;
				}
				if ((prod[p] = fork()) == 0) {
					producer(r, sh, p, M);
					_exit(0);
				}
			}
			break;
		case 3:
			kill(writer, SIGKILL);
			waitpid(writer, NULL, 0);
			wkills++;
			writer = start_writer(wp, ring, out, cap, slot);
			break;
		case 4:
			kill(writer, SIGSTOP);
			wstops++;
			msleep(rand_r(&seed) % 50);
			kill(writer, SIGCONT);
			break;
		default:
			break;
		}
	}
	for (int p = 0; p < P; p++) {
		kill(prod[p], SIGCONT);
		waitpid(prod[p], NULL, 0);
	}
	/* Drain: flush until confirmed and nothing is pending (the writer may still be
	 * revoking stalled claims), within the stall timeout and 10 s more. */
	struct shmring_stats st;
	struct timespec d0;
	clock_gettime(CLOCK_MONOTONIC, &d0);
	for (;;) {
		int frc = shmring_flush(r);
		shmring_stats(r, &st);
		if (frc == 0 && st.pending == 0 && st.head == st.tail)
			break;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - d0.tv_sec) * 1000 + (now.tv_nsec - d0.tv_nsec) / 1000000 > 10000 + atol(g_stall)) {
			fprintf(stderr, "not drained: flush %d, pending %llu, head %llu, tail %llu\n", frc,
				(unsigned long long)st.pending, (unsigned long long)st.head, (unsigned long long)st.tail);
			break;
		}
		msleep(10);
	}
	/* At rest, the ring keeps the protocol's invariants (the writer may still be
	 * finishing the commit that drained it: a second at most). */
	char why[160] = "";
	int valid = -1;
	for (int i = 0; i < 200 && (valid = shm_ring_valid(shm_ring_map(r), why, sizeof(why))); i++)
		msleep(5);
	kill(writer, SIGTERM);
	waitpid(writer, NULL, 0);

	/* Check the file line by line. */
	int bad = 0;
	FILE *f = fopen(out, "r");
	long lines = 0, *next = calloc((size_t)P, sizeof(long));
	unsigned char(*seen)[1 << 16] = calloc((size_t)P, sizeof(*seen));
	char *line = NULL;
	size_t lcap = 0;
	ssize_t n;
	while (f && (n = getline(&line, &lcap, f)) > 0) {
		json_error_t err;
		json_t *v = line[n - 1] == '\n' ? json_loadb(line, (size_t)n - 1, 0, &err) : NULL;
		if (!v) {
			fprintf(stderr, "line %ld: not a whole JSON line\n", lines + 1);
			bad++;
			break;
		}
		lines++;
		long p = (long)json_integer_value(json_object_get(v, "p"));
		long i = (long)json_integer_value(json_object_get(v, "i"));
		if (p < 0 || p >= P || i < 0 || i >= sh->attempted[p]) {
			fprintf(stderr, "line %ld: a record never sent (p %ld i %ld)\n", lines, p, i);
			bad++;
		} else if (seen[p][i]++) {
			fprintf(stderr, "line %ld: record p %ld i %ld written twice\n", lines, p, i);
			bad++;
		} else if (i < next[p]) {
			fprintf(stderr, "line %ld: producer %ld out of order (%ld after %ld)\n", lines, p, i, next[p]);
			bad++;
		} else {
			next[p] = i + 1;
		}
		json_decref(v);
	}
	if (f)
		fclose(f);
	long acked = 0, missing = 0;
	for (int p = 0; p < P; p++)
		for (long i = 0; i < sh->attempted[p]; i++)
			if (sh->acked_map[p][i]) {
				acked++;
				if (!seen[p][i]) {
					if (missing++ < 5)
						fprintf(stderr, "acknowledged record p %d i %ld is missing\n", p, i);
					bad++;
				}
			}
	long ans[A_N] = { 0 };
	for (int p = 0; p < P; p++)
		for (int k = 0; k < A_N; k++)
			ans[k] += sh->answered[p][k];
	uint64_t answered = (uint64_t)(ans[A_OK] + ans[A_FULL] + ans[A_OVERSIZE] + ans[A_CANCELED]);
	uint64_t lost = st.dropped_full + st.dropped_oversize + st.abandoned;
	/* The producers' own figures bound the ring's: each call that answered is counted by
	 * the ring under that outcome; a call killed before it answered, at most once. */
#define WITHIN(x, lo) ((x) >= (uint64_t)(lo) && (x) <= (uint64_t)(lo) + unanswered)
	int ok_sent = WITHIN(st.sent, answered), ok_written = WITHIN(st.written, ans[A_OK]),
	    ok_full = WITHIN(st.dropped_full, ans[A_FULL]), ok_over = WITHIN(st.dropped_oversize, ans[A_OVERSIZE]),
	    ok_ab = WITHIN(st.abandoned, ans[A_CANCELED]),
	    ok_spread = st.written - ans[A_OK] + st.dropped_full - ans[A_FULL] + st.abandoned - ans[A_CANCELED] +
			st.dropped_oversize - ans[A_OVERSIZE] <= unanswered;
	printf("chaos (%s%s): %lu producer stops, %lu producer kills (%lu cut off mid-call), "
	       "%lu writer stops, %lu writer kills\n", mode, g_spin ? ", spinning" : "", stops, pkills,
	       unanswered, wstops, wkills);
	printf("ring:      sent %llu = written %llu + dropped_full %llu + dropped_oversize %llu + "
	       "abandoned %llu + pending %llu\n",
	       (unsigned long long)st.sent, (unsigned long long)st.written,
	       (unsigned long long)st.dropped_full, (unsigned long long)st.dropped_oversize,
	       (unsigned long long)st.abandoned, (unsigned long long)st.pending);
	printf("producers: answered %llu = ok %ld + full %ld + oversize %ld + canceled %ld (other %ld), "
	       "%lu unanswered\n", (unsigned long long)answered, ans[A_OK], ans[A_FULL], ans[A_OVERSIZE],
	       ans[A_CANCELED], ans[A_OTHER], unanswered);
	printf("checks:    sent %s, written %s, dropped_full %s, dropped_oversize %s, abandoned %s, "
	       "spread %s, pending 0 %s\n", ok_sent ? "ok" : "BROKEN", ok_written ? "ok" : "BROKEN",
	       ok_full ? "ok" : "BROKEN", ok_over ? "ok" : "BROKEN", ok_ab ? "ok" : "BROKEN",
	       ok_spread ? "ok" : "BROKEN", st.pending == 0 && st.head == st.tail ? "ok" : "BROKEN");
	printf("invariants at rest: %s%s\n", valid ? "BROKEN: " : "ok", valid ? why : "");
	printf("file:      %ld lines (written %llu); acknowledged sends %ld, all present: %s\n", lines,
	       (unsigned long long)st.written, acked, missing ? "NO" : "yes");
	(void)lost;
	if (valid || !(ok_sent && ok_written && ok_full && ok_over && ok_ab && ok_spread) || ans[A_OTHER] ||
	    st.pending != 0 || st.head != st.tail || (uint64_t)lines != st.written)
		bad++;
	shmring_close(r);
	shmring_unlink(ring);
	if (!keep)
		unlink(out);
	free(line);
	free(next);
	free(seen);
	printf("%s\n", bad ? "FAILED" : "ok");
	return bad ? 1 : 0;
}
