/* test_scenarios: edges with defined outcomes: 50 processes flushing at once, more
 * producers than the producer table holds, fork while another thread is inside a send,
 * the writer stopped for 5 s under load, two writers started at once, no fd left. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "testutil.h"

/* Lines of the file per producer p < P, checked to be i = 0, 1, ... in order. Returns
 * -1 if a line is out of place or not JSON, else fills got[p]. */
static int count_lines(const char *path, int P, long *got)
{
	return tu_count_records(path, P, got, 1, -1) < 0 ? -1 : 0;
}

/* Children blocked on a pipe until the parent closes its end: all start at once. */
struct gate { int fd[2]; };
static void gate_init(struct gate *g) { assert_int_equal(pipe(g->fd), 0); }
static void gate_wait(struct gate *g)
{
	char c;
	close(g->fd[1]);
	while (read(g->fd[0], &c, 1) < 0 && errno == EINTR)
		;
	close(g->fd[0]);
}
static void gate_open(struct gate *g)
{
	close(g->fd[0]);
	close(g->fd[1]);
}

/* 50 processes, each sends one record and flushes, all at the same instant: every flush
 * returns 0 (a timeout on a loaded machine is retried: tu_flush) and every record is in
 * the file. */
static void test_flush_50(void **state)
{
	enum { N = 50 };
	struct tu_ring *t = *state;
	assert_true(tu_writer_start(t, NULL, NULL) > 0);
	struct gate g;
	gate_init(&g);
	for (int p = 0; p < N; p++) {
		if (fork() == 0) {
			shmring *r = tu_child_open(t->name);
			msgpack_sbuffer sb;
			msgpack_sbuffer_init(&sb);
			tu_pack_record(&sb, p, 0, 16);
			gate_wait(&g);
			if (shmring_send(r, sb.data, sb.size))
				_exit(2);
			tu_child_exit(r, 3);
		}
	}
	tu_sleep_ms(200); /* let them all reach the gate */
	gate_open(&g);
	assert_int_equal(tu_wait_children(N), 0);
	long got[N];
	assert_int_equal(count_lines(t->out, N, got), 0);
	for (int p = 0; p < N; p++)
		assert_int_equal(got[p], 1);
}

/* The producer table full (1023 entries held, as by 1023 live producers): new producers
 * share the last, unlocked entry. Their sends are still counted and delivered. */
static void test_overflow_entry(void **state)
{
	enum { P = 3, M = 2000 };
	struct tu_ring *t = *state;
	assert_true(tu_writer_start(t, NULL, NULL) > 0);
	char shm[160];
	snprintf(shm, sizeof(shm), "/shmring.%s", t->name);
	int fd = shm_open(shm, O_RDWR | O_CLOEXEC, 0);
	assert_true(fd >= 0);
	for (unsigned i = 0; i < SHM_MAX_PRODUCERS - 1; i++)
		assert_int_equal(shm_lock_try(fd, SHM_LOCK_PRODUCER(i)), 0);
	for (int p = 0; p < P; p++) {
		if (fork() == 0) {
			shmring *r = tu_child_open(t->name);
			/* No entry of its own: none bears its pid (registration stores it). */
			struct shm_hdr *h = shm_ring_map(r)->hdr;
			for (unsigned i = 0; i < SHM_MAX_PRODUCERS; i++)
				if (atomic_load(&h->producers[i].pid) == getpid())
					_exit(4);
			msgpack_sbuffer sb;
			msgpack_sbuffer_init(&sb);
			for (long i = 0; i < M; i++) {
				tu_pack_record(&sb, p, i, 16);
				int rc = tu_send_all(r, &sb);
				if (rc) {
					fprintf(stderr, "overflow producer %d: send %ld: %s\n", p, i, strerror(-rc));
					_exit(2);
				}
			}
			int rc = tu_flush(r);
			if (rc)
				fprintf(stderr, "overflow producer %d: flush: %s\n", p, strerror(-rc));
			shmring_close(r);
			_exit(rc ? 3 : 0);
		}
	}
	assert_int_equal(tu_wait_children(P), 0);
	assert_int_equal(shmring_open(t->name, NULL, &t->r), 0);
	shmring *r = t->r;
	assert_int_equal(tu_flush(r), 0);
	long got[P];
	assert_int_equal(count_lines(t->out, P, got), 0);
	for (int p = 0; p < P; p++)
		assert_int_equal(got[p], M);
	struct shmring_stats st;
	assert_int_equal(shmring_stats(r, &st), 0);
	assert_int_equal(st.written, (uint64_t)P * M);
	TU_ASSERT_SETTLED(st);
	/* The children's counters went to the shared entry (ours holds every other one). */
	struct shm_map *m = shm_ring_map(r);
	struct shm_producer *ov = &m->hdr->producers[SHM_MAX_PRODUCERS - 1];
	assert_true(atomic_load(&ov->flushes) >= (uint64_t)P + 1);
	tu_close(t);
	close(fd);
}

/* fork() while another thread of the process is between claim and publish: the child
 * sends and flushes; every record of the parent's arrives. */
static pid_t g_parent;
static _Atomic int g_in_send, g_forked, g_want_stop;

static void hold_in_send(int phase, uint64_t pos)
{
	(void)pos;
	if (phase != 1 || getpid() != g_parent || !atomic_load(&g_want_stop))
		return;
	atomic_store(&g_want_stop, 0);
	atomic_store(&g_in_send, 1);
	while (!atomic_load(&g_forked))
		sched_yield();
	atomic_store(&g_forked, 0);
}

struct sender { shmring *r; long n; int rc; };

static void *send_loop(void *a)
{
	struct sender *s = a;
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	for (long i = 0; i < s->n; i++) {
		tu_pack_record(&sb, 0, i, 16);
		int rc;
		while ((rc = shmring_send(s->r, sb.data, sb.size)) == -EAGAIN)
			sched_yield();
		if (rc)
			s->rc = rc;
	}
	msgpack_sbuffer_destroy(&sb);
	return NULL;
}

static void test_fork_inside_send(void **state)
{
	enum { FORKS = 8, M = 100 };
	struct tu_ring *t = *state;
	shmring *r = tu_serve(t, NULL, NULL, NULL);
	g_parent = getpid();
	shm_test_hook = hold_in_send;
	struct sender s = { r, 20000, 0 };
	pthread_t th;
	pthread_create(&th, NULL, send_loop, &s);
	for (int f = 0; f < FORKS; f++) {
		atomic_store(&g_want_stop, 1);
		while (!atomic_load(&g_in_send))
			sched_yield();
		atomic_store(&g_in_send, 0);
		pid_t c = fork(); /* the sender thread holds a claimed, unpublished slot */
		if (c == 0) {
			msgpack_sbuffer sb;
			msgpack_sbuffer_init(&sb);
			for (long i = 0; i < M; i++) {
				tu_pack_record(&sb, 1 + f, i, 16);
				if (tu_send_all(r, &sb))
					_exit(1);
			}
			tu_child_exit(r, 2);
		}
		atomic_store(&g_forked, 1);
		assert_true(c > 0);
	}
	pthread_join(th, NULL);
	shm_test_hook = NULL;
	assert_int_equal(s.rc, 0);
	assert_int_equal(tu_wait_children(FORKS), 0);
	assert_int_equal(tu_flush(r), 0);
	long got[1 + FORKS];
	assert_int_equal(count_lines(t->out, 1 + FORKS, got), 0);
	assert_int_equal(got[0], 20000);
	for (int f = 1; f <= FORKS; f++)
		assert_int_equal(got[f], M);
	struct shmring_stats st;
	assert_int_equal(shmring_stats(r, &st), 0);
	TU_ASSERT_SETTLED(st);
}

/* The writer stopped (SIGSTOP) for 5 s while two producers send, then continued: every
 * acknowledged record is in the file, in order; every other one is counted dropped. */
static void test_writer_stopped_5s(void **state)
{
	enum { P = 2 };
	struct tu_ring *t = *state;
	assert_true(tu_writer_start(t, "1024", "256") > 0);
	/* Per producer: records accepted and dropped, in shared memory. */
	long *acc = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(acc != MAP_FAILED);
	_Atomic int *stop = (_Atomic int *)&acc[2 * P];
	for (int p = 0; p < P; p++) {
		if (fork() == 0) {
			shmring *r = tu_child_open(t->name);
			msgpack_sbuffer sb;
			msgpack_sbuffer_init(&sb);
			long i = 0, drops = 0;
			while (!atomic_load(stop)) {
				tu_pack_record(&sb, p, i, 16);
				int rc = shmring_send(r, sb.data, sb.size);
				if (rc == 0)
					i++; /* i numbers the accepted records only */
				else if (rc == -EAGAIN)
					drops++;
				else
					_exit(2);
				if (rc)
					tu_sleep_ms(1);
				else if (i % 64 == 0)
					tu_sleep_ms(1); /* load, not a flood */
			}
			acc[p] = i;
			acc[P + p] = drops;
			tu_child_exit(r, 3);
		}
	}
	tu_sleep_ms(300);
	assert_int_equal(kill(t->writer, SIGSTOP), 0);
	tu_sleep_ms(5000);
	assert_int_equal(kill(t->writer, SIGCONT), 0);
	tu_sleep_ms(500);
	atomic_store(stop, 1);
	assert_int_equal(tu_wait_children(P), 0);
	long got[P], drops = 0;
	assert_int_equal(count_lines(t->out, P, got), 0);
	for (int p = 0; p < P; p++) {
		assert_int_equal(got[p], acc[p]);
		drops += acc[P + p];
	}
	assert_true(drops > 0); /* the ring did fill while the writer was stopped */
	assert_int_equal(shmring_attach(t->name, &t->r), 0);
	shmring *r = t->r;
	struct shmring_stats st;
	assert_int_equal(shmring_stats(r, &st), 0);
	assert_int_equal(st.dropped_full, (uint64_t)drops);
	assert_int_equal(st.written, (uint64_t)(acc[0] + acc[1]));
	assert_int_equal(st.abandoned, 0);
	TU_ASSERT_SETTLED(st);
	tu_close(t);
	munmap(acc, 4096);
}

/* Two writers started on one (new) ring at the same instant: exactly one serves, the
 * other exits 3. Five times. */
static void test_two_writers_at_once(void **state)
{
	(void)state;
	for (int round = 0; round < 5; round++) {
		struct tu_ring t;
		tu_ring_init(&t, "twowriters");
		struct gate g;
		gate_init(&g);
		pid_t w[2];
		for (int k = 0; k < 2; k++) {
			if ((w[k] = fork()) == 0) {
				gate_wait(&g);
				tu_exec_writer(SHMRING_WRITER_PATH, &t, NULL, NULL, NULL);
			}
			tu_track(w[k], NULL);
		}
		tu_sleep_ms(50);
		gate_open(&g);
		/* One of them exits 3 (another live writer serves it). */
		int st, loser = -1;
		uint64_t t0 = tu_now_ms();
		while (loser < 0 && tu_now_ms() - t0 < 10000) {
			for (int k = 0; k < 2 && loser < 0; k++)
				if (waitpid(w[k], &st, WNOHANG) == w[k])
					loser = k;
			tu_sleep_ms(5);
		}
		assert_true(loser >= 0);
		assert_true(WIFEXITED(st));
		assert_int_equal(WEXITSTATUS(st), 3);
		/* The other serves: it holds the lock and has published its pid. */
		t.writer = w[1 - loser];
		assert_int_equal(shmring_attach(t.name, &t.r), 0);
		shmring *r = t.r;
		struct shmring_stats s;
		for (int i = 0; i < 400; i++) {
			if (shmring_stats(r, &s) == 0 && s.writer_alive && s.writer_pid == t.writer)
				break;
			tu_sleep_ms(5);
		}
		assert_true(s.writer_alive);
		assert_int_equal(s.writer_pid, t.writer);
		char rec[1] = { (char)0xc0 };
		assert_int_equal(shmring_send(r, rec, 1), 0);
		assert_int_equal(tu_flush(r), 0);
		tu_ring_done(&t);
	}
}

/* A producer with no file descriptor left: open says -EMFILE; with the ring open, send
 * works (no fd needed) and flush says -EMFILE (its semaphore needs one); never a crash. */
static void test_no_fd_left(void **state)
{
	struct tu_ring *t = *state;
	assert_true(tu_writer_start(t, NULL, NULL) > 0);
	pid_t c = fork();
	if (c == 0) {
		struct rlimit rl = { 64, 64 };
		if (setrlimit(RLIMIT_NOFILE, &rl))
			_exit(10);
		int last = -1, fd;
		while ((fd = dup(0)) >= 0)
			last = fd; /* every descriptor taken */
		if (errno != EMFILE || last < 0)
			_exit(11);
		shmring *r = NULL;
		if (shmring_open(t->name, NULL, &r) != -EMFILE || r)
			_exit(12);
		close(last); /* one for the ring */
		if (shmring_open(t->name, NULL, &r))
			_exit(13);
		char rec[1] = { (char)0xc0 };
		if (shmring_send(r, rec, 1))
			_exit(14);
		int rc = shmring_flush(r);
		if (rc != -EMFILE)
			_exit(15);
		close(last - 1); /* one for the semaphore: flush works again */
		if (tu_flush(r))
			_exit(16);
		shmring_close(r);
		_exit(0);
	}
	int st;
	assert_int_equal(waitpid(c, &st, 0), c);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	/* The record sent before the failed flush is in the file: its flush only failed to
	 * wait, the record was never at stake. */
	assert_int_equal(tu_writer_stop(t), 0);
	long bad;
	json_t *arr = tu_read_jsonl(t->out, &bad);
	assert_non_null(arr);
	assert_int_equal(json_array_size(arr), 1);
	json_decref(arr);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TU_TEST(test_flush_50),
		TU_TEST(test_overflow_entry),
		TU_TEST(test_fork_inside_send),
		TU_TEST(test_writer_stopped_5s),
		cmocka_unit_test(test_two_writers_at_once),
		TU_TEST_KILL(test_no_fd_left),
	};
	return TU_RUN_TESTS(tests);
}
