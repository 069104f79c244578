/* test_writer_kill: shmring-writer SIGKILLed at random instants under load, dozens of
 * times, and restarted each time: no record lost, none written twice, no partial line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "shmring/reserve.h"
#include <fcntl.h>

#include "testutil.h"

static void test_kill_restart(void **state)
{
	struct tu_ring *t = *state;
	shmring *r = tu_serve(t, "256", "256", NULL);
	enum { P = 3 };
	/* Producers send until the kill loop is over (stop pipe at EOF), then report how
	 * many records they sent. */
	int stop[2], res[2];
	assert_int_equal(pipe2(stop, O_CLOEXEC), 0);
	assert_int_equal(pipe2(res, O_CLOEXEC), 0);
	for (int p = 0; p < P; p++) {
		if (fork() == 0) {
			close(stop[1]);
			fcntl(stop[0], F_SETFL, O_NONBLOCK);
			msgpack_sbuffer sb;
			msgpack_sbuffer_init(&sb);
			long i = 0, full = 0;
			char c;
			pid_t parent = getppid();
			for (;; i++) {
				if (i % 64 == 0) {
					/* Stop at EOF, and never outlive the test or grow without bound. */
					if (read(stop[0], &c, 1) == 0 || getppid() != parent || i >= 2000000)
						break;
					tu_sleep_ms(1); /* keep the load going for the whole kill loop */
				}
				tu_pack_record(&sb, p, i, 16 + (size_t)(i % 300));
				int rc;
				while ((rc = shmring_send_wait(r, sb.data, sb.size, 1000)) == -EAGAIN)
					full++; /* the producer's own count of drops */
				if (rc)
					_exit(1);
			}
			long msg[3] = { p, i, full };
			if (write(res[1], msg, sizeof(msg)) != sizeof(msg))
				_exit(2);
			_exit(0);
		}
	}
	close(stop[0]);
	unsigned seed = (unsigned)getpid();
	int kills = 0;
	for (; kills < 40; kills++) {
		tu_sleep_ms(5 + rand_r(&seed) % 40);
		kill(t->writer, SIGKILL);
		waitpid(t->writer, NULL, 0);
		t->writer = 0;
		assert_true(tu_writer_start(t, NULL, NULL) > 0);
	}
	close(stop[1]);
	assert_int_equal(tu_wait_children(P), 0);
	long M[P] = { 0 }, total = 0, full = 0;
	for (int p = 0; p < P; p++) {
		long msg[3];
		assert_int_equal(read(res[0], msg, sizeof(msg)), sizeof(msg));
		M[msg[0]] = msg[1];
		total += msg[1];
		full += msg[2];
	}
	uint64_t end = tu_now_ms() + 5000;
	while (shmring_flush(r) != 0 && tu_now_ms() < end)
		;
	assert_int_equal(tu_writer_stop(t), 0);
	/* Every line parses (no partial line), each producer's records once, in order. */
	long bad;
	json_t *arr = tu_read_jsonl(t->out, &bad);
	if (!arr)
		fail_msg("line %ld of the output is partial or not JSON", bad);
	long next[3] = { 0, 0, 0 };
	size_t k;
	json_t *v;
	json_array_foreach(arr, k, v) {
		int p = (int)json_integer_value(json_object_get(v, "p"));
		long i = (long)json_integer_value(json_object_get(v, "i"));
		assert_true(p >= 0 && p < P);
		if (i != next[p])
			fail_msg("producer %d: line %zu has record %ld, expected %ld", p, k, i, next[p]);
		next[p]++;
	}
	for (int p = 0; p < P; p++)
		assert_int_equal(next[p], M[p]);
	json_decref(arr);
	struct shmring_stats st;
	assert_int_equal(shmring_stats(r, &st), 0);
	assert_int_equal(st.written, (uint64_t)total);
	assert_int_equal(st.pending, 0);
	/* The ring's figures against the producers' own answers: every send answered 0
	 * once and -EAGAIN `full` times, whatever the writer's deaths. */
	assert_int_equal(st.dropped_full, (uint64_t)full);
	assert_int_equal(st.sent, (uint64_t)(total + full));
	TU_ASSERT_SETTLED(st);
	TU_ASSERT_RING_VALID(r);
	printf("# %d writer kills, %llu records, %llu full-ring retries\n", kills,
	       (unsigned long long)st.written, (unsigned long long)st.dropped_full);
}

/* The writer killed at each point of a commit (after the intent, mid-write, after the
 * write, mid-free): the next writer finishes or redoes exactly that batch. */
static void test_crash_points(void **state)
{
	(void)state;
	for (int point = 1; point <= 4; point++) {
		struct tu_ring t;
		tu_ring_init(&t, "wcrash");
		char env[32];
		snprintf(env, sizeof(env), "3:%d", point);
		setenv("SHMRING_WRITER_CRASH", env, 1);
		shmring *r = tu_serve(&t, "256", "256", NULL);
		unsetenv("SHMRING_WRITER_CRASH");
		msgpack_sbuffer sb;
		msgpack_sbuffer_init(&sb);
		long i = 0;
		int st;
		/* Batches of 50 records with a flush between, until the writer kills itself. */
		while (waitpid(t.writer, &st, WNOHANG) == 0 && i < 100000) {
			for (int k = 0; k < 50; k++, i++) {
				tu_pack_record(&sb, 0, i, 40);
				while (shmring_send_wait(r, sb.data, sb.size, 100) == -EAGAIN)
					;
			}
			shmring_flush(r);
		}
		assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
		t.writer = 0;
		assert_true(tu_writer_start(&t, NULL, NULL) > 0);
		for (int k = 0; k < 50; k++, i++) {
			tu_pack_record(&sb, 0, i, 40);
			while (shmring_send_wait(r, sb.data, sb.size, 100) == -EAGAIN)
				;
		}
		assert_int_equal(tu_flush(r), 0);
		long bad;
		json_t *arr = tu_read_jsonl(t.out, &bad);
		if (!arr)
			fail_msg("point %d: line %ld is partial or not JSON", point, bad);
		assert_int_equal(json_array_size(arr), (size_t)i);
		size_t k;
		json_t *v;
		json_array_foreach(arr, k, v)
			assert_int_equal(json_integer_value(json_object_get(v, "i")), (long)k);
		json_decref(arr);
		struct shmring_stats s;
		shmring_stats(r, &s);
		assert_int_equal(s.written, (uint64_t)i);
		assert_int_equal(s.pending, 0);
		msgpack_sbuffer_destroy(&sb);
		tu_ring_done(&t);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crash_points),
		TU_TEST_KILL(test_kill_restart),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
