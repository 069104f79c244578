/* test_ring: the core ring across processes: P×M records, order, content, flush barrier,
 * full ring, oversize, names, foreign objects, fork, threads, spanning records. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <sys/resource.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>

#include "testutil.h"

/* Check the file: lines from producers 0..P-1, each producer's i strictly 0..M-1 in
 * order, and the payload exactly what was packed. Returns total lines. */
static long check_records(const char *path, int P, long M, size_t pad_mod)
{
	long bad;
	json_t *arr = tu_read_jsonl(path, &bad);
	assert_non_null(arr);
	long *next = calloc((size_t)P, sizeof(long));
	size_t idx;
	json_t *v;
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	json_array_foreach(arr, idx, v) {
		json_t *jp = json_object_get(v, "p"), *ji = json_object_get(v, "i"), *js = json_object_get(v, "s");
		assert_true(json_is_integer(jp) && json_is_integer(ji) && json_is_string(js));
		int p = (int)json_integer_value(jp);
		long i = (long)json_integer_value(ji);
		assert_true(p >= 0 && p < P);
		assert_int_equal(i, next[p]); /* each producer's order is kept, nothing twice */
		next[p]++;
		/* The payload string is exactly the one packed for (p, i). */
		size_t pad = pad_mod ? (size_t)(i % (long)pad_mod) : 16;
		char want[8192];
		for (size_t k = 0; k < pad; k++)
			want[k] = (char)('a' + (k + (size_t)i) % 26);
		assert_int_equal(json_string_length(js), pad);
		assert_memory_equal(json_string_value(js), want, pad);
	}
	for (int p = 0; p < P; p++)
		assert_int_equal(next[p], M);
	long total = (long)json_array_size(arr);
	free(next);
	msgpack_sbuffer_destroy(&sb);
	json_decref(arr);
	return total;
}

/* P forked producers × M records through a writer: exactly P·M lines, in order. */
static void run_pm(struct tu_ring *t, int P, long M, const char *cap, const char *slot, size_t pad_mod)
{
	shmring *r = tu_serve(t, cap, slot, NULL);
	for (int p = 0; p < P; p++) {
		if (fork() == 0) {
			msgpack_sbuffer sb;
			msgpack_sbuffer_init(&sb);
			for (long i = 0; i < M; i++) {
				size_t pad = pad_mod ? (size_t)(i % (long)pad_mod) : 16;
				tu_pack_record(&sb, p, i, pad);
				/* Never blocks; retry on a full ring so the count is exact. */
				if (tu_send_all(r, &sb))
					_exit(1);
			}
			tu_child_exit(r, 2);
		}
	}
	assert_int_equal(tu_wait_children(P), 0);
	assert_int_equal(tu_flush(r), 0);
	assert_int_equal(check_records(t->out, P, M, pad_mod), (long)P * M);
	struct shmring_stats st;
	assert_int_equal(shmring_stats(r, &st), 0);
	/* Retried sends count as drops: sent = written + dropped exactly. */
	assert_int_equal(st.written, (uint64_t)P * M);
	TU_ASSERT_SETTLED(st);
	assert_int_equal(st.pending, 0);
	assert_int_equal(st.invalid, 0);
	assert_int_equal(st.corrupt, 0);
}

static void test_producers_records(void **state)
{
	run_pm(*state, 4, 20000, NULL, NULL, 0);
}

/* Records spanning several slots, wrapping past the end of a small ring. */
static void test_spanning_wrap(void **state)
{
	run_pm(*state, 3, 4000, "64", "64", 700); /* pads 0..699 bytes: 1 to 12 slots of 64 */
}

/* As soon as flush returns 0 in a process, every record any process sent before its
 * sentinel is in the file. */
static void test_flush_barrier(void **state)
{
	struct tu_ring *t = *state;
	shmring *r = tu_serve(t, NULL, NULL, NULL);
	enum { P = 3 };
	pid_t kids[P];
	for (int p = 0; p < P; p++) {
		/* Exit status: 2 flush failed (the flush's error is printed), 3 file unreadable,
		 * 4 a line sent before a confirmed flush is missing, 5 a send failed. */
		if ((kids[p] = fork()) == 0) {
			msgpack_sbuffer sb;
			msgpack_sbuffer_init(&sb);
			for (long i = 0; i < 3000; i++) {
				tu_pack_record(&sb, p, i, 16);
				int sr = tu_send_all(r, &sb);
				if (sr != 0) { /* e.g. -ECANCELED: stalled past the stall timeout */
					fprintf(stderr, "send of producer %d at %ld: %s\n", p, i, strerror(-sr));
					_exit(5);
				}
				if (i % 500 == 499) {
					int rc = tu_flush(r);
					if (rc != 0) {
						fprintf(stderr, "flush of producer %d at %ld: %s\n", p, i, strerror(-rc));
						_exit(2);
					}
					/* Every line of ours up to i must be in the file now. The
					 * writer may be appending other producers' lines as we read:
					 * a partial last line is theirs, in progress (this made a
					 * child exit 3 once, under ASan). */
					long bad;
					json_t *arr = tu_read_jsonl_ex(t->out, &bad, 1);
					if (!arr) {
						fprintf(stderr, "producer %d: line %ld of the file is not JSON\n", p, bad);
						_exit(3);
					}
					long mine = 0;
					size_t k;
					json_t *v;
					json_array_foreach(arr, k, v)
						if (json_integer_value(json_object_get(v, "p")) == p)
							mine++;
					json_decref(arr);
					if (mine != i + 1) {
						fprintf(stderr, "producer %d: %ld lines after flush at %ld (bad line %ld)\n",
							p, mine, i, bad);
						_exit(4);
					}
				}
			}
			shmring_close(r);
			_exit(0);
		}
	}
	int st[P];
	for (int p = 0; p < P; p++) /* all of them before any assertion can jump away */
		if (waitpid(kids[p], &st[p], 0) != kids[p])
			st[p] = -1;
	for (int p = 0; p < P; p++)
		assert_int_equal(st[p], 0); /* 0x200: exit 2 ... 0x500: exit 5 */
}

/* No writer: -ENOTCONN at once. Writer stopped: -ETIMEDOUT after about 100 ms. */
static void test_flush_no_writer_and_stopped(void **state)
{
	struct tu_ring *t = *state;
	assert_int_equal(shmring_open(t->name, NULL, &t->r), 0);
	shmring *r = t->r;
	uint64_t t0 = tu_now_ms();
	assert_int_equal(shmring_flush(r), -ENOTCONN);
	assert_true(tu_now_ms() - t0 < 20);
	assert_true(tu_writer_start(t, NULL, NULL) > 0);
	assert_int_equal(tu_flush(r), 0);
	kill(t->writer, SIGSTOP);
	t0 = tu_now_ms();
	assert_int_equal(shmring_flush(r), -ETIMEDOUT);
	uint64_t dt = tu_now_ms() - t0;
	assert_true(dt >= 95 && dt < 400);
	kill(t->writer, SIGCONT);
	/* The late confirmation of the timed-out flush must not end this one early, and
	 * this one is confirmed. */
	assert_int_equal(tu_flush(r), 0);
	/* A killed writer: flush answers -ENOTCONN, at once. */
	kill(t->writer, SIGKILL);
	waitpid(t->writer, NULL, 0);
	t->writer = 0;
	t0 = tu_now_ms();
	assert_int_equal(shmring_flush(r), -ENOTCONN);
	assert_true(tu_now_ms() - t0 < 20);
}

/* Writer stopped, capacity C: C+X sends → exactly X dropped, seen by another process. */
static void test_full_ring(void **state)
{
	struct tu_ring *t = *state;
	assert_true(tu_writer_start(t, "256", "256") > 0);
	kill(t->writer, SIGSTOP);
	assert_int_equal(shmring_open(t->name, NULL, &t->r), 0);
	shmring *r = t->r;
	const int C = 256, X = 37;
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	int ok = 0, full = 0;
	for (int i = 0; i < C + X; i++) {
		tu_pack_record(&sb, 0, i, 16);
		int rc = shmring_send(r, sb.data, sb.size);
		if (rc == 0)
			ok++;
		else if (rc == -EAGAIN)
			full++;
	}
	assert_int_equal(ok, C);
	assert_int_equal(full, X);
	assert_int_equal(shmring_dropped_count(r), (uint64_t)X);
	pid_t c = fork();
	if (c == 0) {
		shmring *r2;
		if (shmring_attach(t->name, &r2))
			_exit(1);
		struct shmring_stats st;
		shmring_stats(r2, &st);
		_exit(shmring_dropped_count(r2) == (uint64_t)X && st.dropped_full == (uint64_t)X &&
		      st.pending == (uint64_t)C && st.tail - st.head == (uint64_t)C ? 0 : 2);
	}
	assert_int_equal(tu_wait_children(1), 0);
	kill(t->writer, SIGCONT);
	assert_int_equal(tu_flush(r), 0);
	assert_int_equal(check_records(t->out, 1, C, 0), C);
	msgpack_sbuffer_destroy(&sb);
}

/* Oversize, bad names, bad options, a foreign object. */
static void test_errors(void **state)
{
	struct tu_ring *t = *state;
	shmring *r;
	struct shmring_options o = { .capacity = 64, .slot_size = 64 };
	assert_int_equal(shmring_open(t->name, &o, &r), 0);
	struct shmring_stats st;
	assert_int_equal(shmring_stats(r, &st), 0);
	assert_int_equal(st.max_record, 16 * 64 - 8);
	static char big[4096];
	big[0] = (char)0xc4; /* content does not matter for the size check */
	assert_int_equal(shmring_send(r, big, st.max_record + 1), -EMSGSIZE);
	assert_int_equal(shmring_send(r, big, st.max_record), 0);
	assert_int_equal(shmring_stats(r, &st), 0);
	assert_int_equal(st.dropped_oversize, 1);
	assert_int_equal(st.dropped_full, 0);
	assert_int_equal(shmring_send(r, NULL, 3), -EINVAL);
	assert_int_equal(shmring_send(r, big, 0), -EINVAL);
	shmring_close(r);

	const char *bad[] = { "", "/", "a/b", "a b", "ä", "x\n", "../etc", "//x", NULL };
	for (int i = 0; bad[i]; i++)
		assert_int_equal(shmring_open(bad[i], NULL, &r), -EINVAL);
	assert_int_equal(shmring_open(NULL, NULL, &r), -EINVAL);
	char longname[202];
	memset(longname, 'a', 201);
	longname[201] = 0;
	assert_int_equal(shmring_open(longname, NULL, &r), -EINVAL);
	longname[200] = 0; /* 200 is allowed */
	assert_int_equal(shmring_open(longname, NULL, &r), 0);
	shmring_close(r);
	assert_int_equal(shmring_unlink(longname), 0);
	struct shmring_options badopt[] = { { .capacity = 100 }, { .capacity = 4096, .slot_size = 100 },
					    { .capacity = 1u << 21 }, { .capacity = 4, .slot_size = 64 } };
	for (size_t i = 0; i < sizeof(badopt) / sizeof(badopt[0]); i++)
		assert_int_equal(shmring_open("test-badopt", &badopt[i], &r), -EINVAL);
	assert_int_equal(shmring_attach("test-does-not-exist-xyz", &r), -ENOENT);

	/* Not a ring: a shm object with our prefix but other contents, of several sizes. */
	size_t sizes[] = { 0, 100, 1 << 20 };
	for (size_t i = 0; i < 3; i++) {
		char shm[128];
		snprintf(shm, sizeof(shm), "/shmring.test-foreign-%d", (int)getpid());
		int fd = shm_open(shm, O_RDWR | O_CREAT | O_TRUNC, 0600);
		assert_true(fd >= 0);
		assert_int_equal(ftruncate(fd, (off_t)sizes[i]), 0);
		if (sizes[i]) {
			char junk[100];
			memset(junk, 0x5a, sizeof(junk));
			assert_int_equal(pwrite(fd, junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
		}
		close(fd);
		uint64_t t0 = tu_now_ms();
		assert_int_equal(shmring_open(shm + 9, NULL, &r), -EPROTO);
		assert_true(tu_now_ms() - t0 < 3000);
		shm_unlink(shm);
	}
}

/* Permissions: default 0600, or the mode asked for, whatever the umask. */
static void test_mode(void **state)
{
	struct tu_ring *t = *state;
	mode_t old = umask(077);
	shmring *r;
	struct shmring_options o = { .mode = 0640 };
	assert_int_equal(shmring_open(t->name, &o, &r), 0);
	char path[256];
	snprintf(path, sizeof(path), "/dev/shm/shmring.%s", t->name);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0640);
	shmring_close(r);
	shmring_unlink(t->name);
	assert_int_equal(shmring_open(t->name, NULL, &r), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	umask(old);
	shmring_close(r);
}

/* One handle opened before fork() keeps working in the children, for send and flush. */
static void test_fork_shared_handle(void **state)
{
	struct tu_ring *t = *state;
	shmring *r = tu_serve(t, NULL, NULL, NULL);
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	tu_pack_record(&sb, 0, 0, 16);
	assert_int_equal(shmring_send(r, sb.data, sb.size), 0);
	assert_int_equal(tu_flush(r), 0);
	for (int p = 1; p <= 4; p++) {
		if (fork() == 0) {
			/* Grandchild too: a handle survives two forks. */
			pid_t g = fork();
			int base = g == 0 ? 4 : 0;
			msgpack_sbuffer s2;
			msgpack_sbuffer_init(&s2);
			for (long i = 0; i < 1000; i++) {
				tu_pack_record(&s2, p + base, i, 16);
				tu_send_all(r, &s2);
			}
			int rc = tu_flush(r);
			shmring_close(r);
			if (g > 0) {
				int st;
				waitpid(g, &st, 0);
				if (!WIFEXITED(st) || WEXITSTATUS(st))
					_exit(5);
			}
			_exit(rc ? 1 : 0);
		}
	}
	assert_int_equal(tu_wait_children(4), 0);
	/* The parent's handle still works after its children used and closed their copies. */
	tu_pack_record(&sb, 0, 1, 16);
	assert_int_equal(shmring_send(r, sb.data, sb.size), 0);
	assert_int_equal(tu_flush(r), 0);
	long bad;
	json_t *arr = tu_read_jsonl(t->out, &bad);
	assert_non_null(arr);
	assert_int_equal(json_array_size(arr), 2 + 8 * 1000);
	json_decref(arr);
	struct shmring_stats st;
	shmring_stats(r, &st);
	assert_int_equal(st.producers, 1); /* children's entries are released */
	/* Every process counted its sends in its own entry: the identity balances. */
	assert_int_equal(st.written, 2 + 8 * 1000);
	TU_ASSERT_SETTLED(st);
	/* No semaphore of any child is left behind. */
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "ls /dev/shm | grep -c 'sem.shmring.%s' >/dev/null", t->name);
	msgpack_sbuffer_destroy(&sb);
	tu_close(t);
	assert_int_not_equal(system(cmd), 0);
}

struct thr_arg { shmring *r; int p; long M; int flush_rc; uint64_t full; };

static void *thr_send(void *a)
{
	struct thr_arg *ta = a;
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	for (long i = 0; i < ta->M; i++) {
		tu_pack_record(&sb, ta->p, i, 16);
		while (shmring_send(ta->r, sb.data, sb.size) == -EAGAIN) {
			ta->full++; /* counted here, apart from the ring's dropped_full */
			sched_yield();
		}
		if (i % 1000 == 999 && tu_flush(ta->r))
			ta->flush_rc = -1;
	}
	msgpack_sbuffer_destroy(&sb);
	return NULL;
}

/* Many threads sending and flushing through one handle at once. */
static void test_threads(void **state)
{
	struct tu_ring *t = *state;
	shmring *r = tu_serve(t, NULL, NULL, NULL);
	enum { T = 8 };
	pthread_t th[T];
	struct thr_arg a[T];
	for (int i = 0; i < T; i++) {
		a[i] = (struct thr_arg){ r, i, 5000, 0, 0 };
		pthread_create(&th[i], NULL, thr_send, &a[i]);
	}
	for (int i = 0; i < T; i++)
		pthread_join(th[i], NULL); /* all of them before any assertion can jump away */
	for (int i = 0; i < T; i++)
		assert_int_equal(a[i].flush_rc, 0);
	assert_int_equal(tu_flush(r), 0);
	assert_int_equal(check_records(t->out, T, 5000, 0), T * 5000);
	/* The ring's counts agree with the threads' own: every send answered 0 once and
	 * -EAGAIN `full` times. A second round of new threads (whose pthread_t may reuse the
	 * first round's) must keep it so. */
	struct shmring_stats st;
	uint64_t full = 0;
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < T; i++)
			full += a[i].full;
		assert_int_equal(shmring_stats(r, &st), 0);
		assert_int_equal(st.written, (uint64_t)(round + 1) * T * 5000);
		assert_int_equal(st.dropped_full, full);
		assert_int_equal(st.sent, (uint64_t)(round + 1) * T * 5000 + full);
		TU_ASSERT_SETTLED(st);
		assert_int_equal(st.pending, 0);
		if (round)
			break;
		for (int i = 0; i < T; i++) {
			a[i] = (struct thr_arg){ r, T + i, 5000, 0, 0 };
			pthread_create(&th[i], NULL, thr_send, &a[i]);
		}
		for (int i = 0; i < T; i++)
			pthread_join(th[i], NULL);
		assert_int_equal(tu_flush(r), 0);
		assert_int_equal(check_records(t->out, 2 * T, 5000, 0), 2 * T * 5000);
	}
}

/* A second writer on a served ring exits 3; SIGTERM drains what is in the ring. */
static void test_writer_exclusive_and_drain(void **state)
{
	struct tu_ring *t = *state;
	assert_true(tu_writer_start(t, NULL, NULL) > 0);
	int st = tu_writer_run(t, NULL); /* a second writer */
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 3);
	/* Stop the writer, fill part of the ring, then SIGTERM: all of it gets written. */
	kill(t->writer, SIGSTOP);
	assert_int_equal(shmring_open(t->name, NULL, &t->r), 0);
	tu_send_records(t->r, 0, 0, 1000, 16);
	assert_int_equal(tu_writer_stop(t), 0);
	assert_int_equal(check_records(t->out, 1, 1000, 0), 1000);
}

/* Opening makes the ring's page table entries, writable: a first lap of sends takes no
 * page fault (without MADV_POPULATE_WRITE it took one per 4 KiB page: 512 here). */
static void test_no_faults_on_first_lap(void **state)
{
	struct tu_ring *t = *state;
	struct shmring_options o = { .capacity = 4096, .slot_size = 512 };
	assert_int_equal(shmring_open(t->name, &o, &t->r), 0);
	shmring *r = t->r;
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	tu_pack_record(&sb, 0, 0, 300);
	assert_int_equal(shmring_send(r, sb.data, sb.size), 0); /* first-call paths warmed */
	struct rusage a, b;
	getrusage(RUSAGE_SELF, &a);
	int ok = 0;
	for (int i = 1; i < 4000; i++)
		ok += shmring_send(r, sb.data, sb.size) == 0;
	getrusage(RUSAGE_SELF, &b);
	msgpack_sbuffer_destroy(&sb);
	assert_int_equal(ok, 3999);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
	/* (Under a sanitizer the ring's shadow memory faults in lazily: not countable.) */
	assert_true(b.ru_minflt - a.ru_minflt < 32);
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TU_TEST_KILL(test_errors),
		TU_TEST_KILL(test_mode),
		TU_TEST(test_producers_records),
		TU_TEST(test_spanning_wrap),
		TU_TEST(test_flush_barrier),
		TU_TEST_KILL(test_flush_no_writer_and_stopped),
		TU_TEST(test_full_ring),
		TU_TEST(test_fork_shared_handle),
		TU_TEST(test_threads),
		TU_TEST_KILL(test_writer_exclusive_and_drain),
		TU_TEST_KILL(test_no_faults_on_first_lap),
	};
	return TU_RUN_TESTS(tests); /* SHMRING_TEST_FILTER=test_flush_barrier: one test */
}
