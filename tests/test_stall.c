/* test_stall: producers killed or stopped between claim and publish cost exactly their own
 * record; the writer moves on after the stall timeout, others' records go on, the ring
 * keeps its capacity, and the accounting identity holds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "internal.h"
#include "testutil.h"

static int g_fire_at = -1, g_fire_phase, g_calls;
static int g_action; /* 0 exit, 1 stop */

static void hook(int phase, uint64_t pos)
{
	(void)pos;
	if (phase == 1 || phase == 3)
		g_calls++;
	if (g_calls - 1 == g_fire_at && phase == g_fire_phase) {
		if (g_action == 0)
			_exit(0); /* dies holding the claim */
		raise(SIGSTOP);
	}
}

static const char *stall_args[] = { "--stall-timeout", "200", NULL };

static size_t g_pad = 40; /* payload bytes per record: 40 fits a slot, 1100 spans five */

static void send_n(shmring *r, int p, long from, long n)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	for (long i = from; i < from + n; i++) {
		tu_pack_record(&sb, p, i, g_pad);
		int rc;
		while ((rc = shmring_send(r, sb.data, sb.size)) == -EAGAIN)
			tu_sleep_ms(1);
		if (rc)
			_exit(10);
	}
	msgpack_sbuffer_destroy(&sb);
}

static int flush_retry(shmring *r, unsigned ms)
{
	uint64_t end = tu_now_ms() + ms;
	int rc;
	while ((rc = shmring_flush(r)) != 0 && tu_now_ms() < end)
		;
	return rc;
}

/* Count lines per producer; -1 if any line is not a clean record. */
static long count_lines(const char *path, long *per, int P)
{
	return tu_count_records(path, P, per, 0, (long)g_pad);
}

static void check_identity(shmring *r)
{
	struct shmring_stats st;
	assert_int_equal(shmring_stats(r, &st), 0);
	assert_int_equal(st.pending, 0);
	TU_ASSERT_SETTLED(st);
	TU_ASSERT_RING_VALID(r);
}

/* The file holds `lines` records, `first` of them of producer 0; one record was
 * abandoned and the counters balance. */
static void assert_lines_one_abandoned(shmring *r, const char *out, long lines, long first)
{
	long per[2];
	assert_int_equal(count_lines(out, per, 2), lines);
	assert_int_equal(per[0], first);
	struct shmring_stats s;
	shmring_stats(r, &s);
	assert_int_equal(s.abandoned, 1);
	check_identity(r);
}

/* Full capacity: with the writer stopped, exactly `slots` one-slot records fit; then they
 * are written and the identity holds. */
static void assert_full_capacity(shmring *r, pid_t writer, int slots)
{
	kill(writer, SIGSTOP);
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	int ok = 0;
	for (int i = 0; i < slots + 36; i++) {
		tu_pack_record(&sb, 1, 500 + i, 40);
		ok += shmring_send(r, sb.data, sb.size) == 0;
	}
	assert_int_equal(ok, slots);
	kill(writer, SIGCONT);
	assert_int_equal(flush_retry(r, 2000), 0);
	check_identity(r);
	msgpack_sbuffer_destroy(&sb);
}

/* A producer killed mid-copy (phase 2) or right after its claim (phase 1). */
static void killed(struct tu_ring *t, int phase)
{
	shmring *r = tu_serve(t, "64", "256", stall_args);
	pid_t a = fork();
	if (a == 0) {
		g_fire_at = 3, g_fire_phase = phase, g_action = 0;
		shm_test_hook = hook;
		send_n(r, 0, 0, 10);
		_exit(99); /* not reached */
	}
	int st;
	waitpid(a, &st, 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	/* Others go on: more than a lap of records through the 64-slot ring. */
	send_n(r, 1, 0, 500);
	assert_int_equal(flush_retry(r, 2000), 0);
	assert_lines_one_abandoned(r, t->out, 3 + 500, 3);
	assert_full_capacity(r, t->writer, 64); /* the ring keeps its capacity */
}

static void test_killed_after_claim(void **s) { killed(*s, 1); }
static void test_killed_mid_copy(void **s) { killed(*s, 2); }

/* A producer that dies holding five slots costs exactly its record, and the ring keeps
 * all 64 slots. */
static void test_killed_holding_five_slots(void **s)
{
	g_pad = 1100;
	killed(*s, 2);
	g_pad = 40;
}

/* A producer stopped mid-copy for longer than the stall timeout: others' records are
 * written meanwhile, for several laps; when it resumes its call returns -ECANCELED, its
 * record is not written (never torn, never over another), and the ring goes on. */
static void test_stopped_mid_copy(void **state)
{
	struct tu_ring *t = *state;
	shmring *r = tu_serve(t, "64", "256", stall_args);
	int pfd[2];
	assert_int_equal(pipe(pfd), 0);
	pid_t a = fork();
	if (a == 0) {
		g_fire_at = 0, g_fire_phase = 2, g_action = 1;
		shm_test_hook = hook;
		msgpack_sbuffer sb;
		msgpack_sbuffer_init(&sb);
		tu_pack_record(&sb, 0, 0, 40);
		int rc = shmring_send(r, sb.data, sb.size);
		shm_test_hook = NULL;
		send_n(r, 0, 1, 20);
		int frc = flush_retry(r, 2000);
		char res[2] = { (char)(rc == -ECANCELED), (char)(frc == 0) };
		if (write(pfd[1], res, 2) != 2)
			_exit(3);
		shmring_close(r);
		_exit(0);
	}
	int st;
	assert_int_equal(waitpid(a, &st, WUNTRACED), a);
	assert_true(WIFSTOPPED(st));
	/* Three laps of others' records while A holds its slot. */
	uint64_t t0 = tu_now_ms();
	send_n(r, 1, 0, 200);
	assert_int_equal(flush_retry(r, 3000), 0);
	assert_true(tu_now_ms() - t0 < 2000);
	long per[2];
	assert_int_equal(count_lines(t->out, per, 2), 200);
	kill(a, SIGCONT);
	char res[2] = { 0, 0 };
	assert_int_equal(read(pfd[0], res, 2), 2);
	assert_int_equal(res[0], 1); /* the stalled send was revoked */
	assert_int_equal(res[1], 1);
	assert_int_equal(tu_wait_children(1), 0);
	send_n(r, 1, 200, 300); /* the released run is reused */
	assert_int_equal(flush_retry(r, 2000), 0);
	assert_lines_one_abandoned(r, t->out, 20 + 500, 20);
	assert_full_capacity(r, t->writer, 64); /* again, once the quarantine is released */
}

/* A flusher killed holding its sentinel costs only its sentinel. */
static void test_killed_flusher(void **state)
{
	struct tu_ring *t = *state;
	shmring *r = tu_serve(t, "64", "256", stall_args);
	pid_t a = fork();
	if (a == 0) {
		g_fire_at = 0, g_fire_phase = 3, g_action = 0;
		shm_test_hook = hook;
		shmring_flush(r);
		_exit(99);
	}
	assert_int_equal(tu_wait_children(1), 0);
	send_n(r, 1, 0, 300);
	assert_int_equal(flush_retry(r, 2000), 0);
	long per[2];
	assert_int_equal(count_lines(t->out, per, 2), 300);
	struct shmring_stats s;
	shmring_stats(r, &s);
	assert_int_equal(s.abandoned, 0); /* a sentinel is not a record */
	check_identity(r);
}

/* --mark-losses: the file tells its own gaps, with exact counts, before the next line. */
static void test_mark_losses(void **state)
{
	struct tu_ring *t = *state;
	static const char *args[] = { "--stall-timeout", "200", "--mark-losses", NULL };
	shmring *r = tu_serve(t, "64", "256", args);
	kill(t->writer, SIGSTOP);
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	for (int i = 0; i < 74; i++) {
		tu_pack_record(&sb, 1, i < 64 ? i : 0, 40);
		shmring_send(r, sb.data, sb.size);
	}
	static char big[64 * 256];
	big[0] = (char)0xc0;
	assert_int_equal(shmring_send(r, big, sizeof(big)), -EMSGSIZE);
	kill(t->writer, SIGCONT);
	assert_int_equal(flush_retry(r, 2000), 0);
	pid_t a = fork();
	if (a == 0) {
		g_fire_at = 0, g_fire_phase = 2, g_action = 0;
		shm_test_hook = hook;
		send_n(r, 0, 0, 1);
		_exit(99);
	}
	assert_int_equal(tu_wait_children(1), 0);
	send_n(r, 1, 64, 1);
	assert_int_equal(flush_retry(r, 2000), 0);
	long bad;
	json_t *arr = tu_read_jsonl(t->out, &bad);
	assert_non_null(arr);
	assert_int_equal(json_array_size(arr), 1 + 64 + 1 + 1);
	json_t *m1 = json_object_get(json_array_get(arr, 0), "shmring_lost");
	assert_non_null(m1);
	assert_int_equal(json_integer_value(json_object_get(m1, "dropped_full")), 10);
	assert_int_equal(json_integer_value(json_object_get(m1, "dropped_oversize")), 1);
	assert_int_equal(json_integer_value(json_object_get(m1, "abandoned")), 0);
	assert_true(json_is_string(json_object_get(json_array_get(arr, 0), "ts")));
	for (int i = 1; i <= 64; i++)
		assert_int_equal(json_integer_value(json_object_get(json_array_get(arr, (size_t)i), "i")), i - 1);
	json_t *m2 = json_object_get(json_array_get(arr, 65), "shmring_lost");
	assert_non_null(m2);
	assert_int_equal(json_integer_value(json_object_get(m2, "dropped_full")), 0);
	assert_int_equal(json_integer_value(json_object_get(m2, "abandoned")), 1);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(arr, 66), "i")), 64);
	json_decref(arr);
	msgpack_sbuffer_destroy(&sb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TU_TEST(test_killed_after_claim),
		TU_TEST(test_killed_mid_copy),
		TU_TEST(test_killed_holding_five_slots),
		TU_TEST(test_stopped_mid_copy),
		TU_TEST(test_killed_flusher),
		TU_TEST(test_mark_losses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
