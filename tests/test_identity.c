/* test_identity: a producer killed at each instant of a send leaves the counters settled
 * (pending 0 once drained, sent = written + dropped + abandoned) and counts its record
 * exactly when the record got an outcome; a full ring yields the CPU only to a running
 * writer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "internal.h"
#include "testutil.h"
#include "shmring/reserve.h"

#define K_ACKED 5 /* records each victim sends, acknowledged, before the fatal one */

static int g_target;
static void kill_at(int point, uint64_t pos)
{
	(void)pos;
	if (point == g_target)
		raise(SIGKILL);
}

static const char *stall_args[] = { "--stall-timeout", "200", NULL };

struct expect {
	int sent;      /* the fatal record counted at all */
	int written;   /* ... as written */
	int abandoned; /* ... as abandoned (claimed, never published) */
	int dropped;   /* ... as dropped_full */
};

/* Wait until the writer has settled everything: flushed and pending 0 (a claim left by
 * the victim is revoked after the stall timeout, then counted with its batch). */
static void drain(shmring *r, struct shmring_stats *st)
{
	uint64_t end = tu_now_ms() + 5000;
	do {
		(void)shmring_flush(r);
		assert_int_equal(shmring_stats(r, st), 0);
		if (st->pending == 0 && st->head == st->tail) {
			TU_ASSERT_RING_VALID(r);
			return;
		}
		tu_sleep_ms(20);
	} while (tu_now_ms() < end);
	fail_msg("pending stays %llu (head %llu, tail %llu)", (unsigned long long)st->pending,
		 (unsigned long long)st->head, (unsigned long long)st->tail);
}

/* A child sends K_ACKED records, then dies at `point` in the next call (`how`: 0 send,
 * 1 send_wait, 2 a record too large). Returns its pid. */
static pid_t victim(shmring *r, int point, int how, int acked)
{
	pid_t pid = fork();
	if (pid)
		return pid;
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	for (int i = 0; i < acked; i++) {
		tu_pack_record(&sb, 0, i, 40);
		if (shmring_send(r, sb.data, sb.size))
			_exit(10);
	}
	tu_pack_record(&sb, 0, acked, how == 2 ? 4096 : 40);
	g_target = point;
	shm_test_hook = kill_at;
	if (how == 1)
		(void)shmring_send_wait(r, sb.data, sb.size, 10000);
	else
		(void)shmring_send(r, sb.data, sb.size);
	_exit(0); /* the point was not reached: the parent sees exit 0, not SIGKILL */
}

/* Fill the ring with `n` acknowledged one-slot records from this process (producer 1). */
static void fill(shmring *r, int n)
{
	tu_send_records(r, 1, 0, n, 40);
}

/* Lines per producer, checked by jansson; every acknowledged record is present. */
static void check_file(const char *out, long acked0, long acked1, const struct shmring_stats *st)
{
	long bad;
	json_t *arr = tu_read_jsonl(out, &bad);
	assert_non_null(arr);
	long per[2] = { 0, 0 }, seen0 = 0;
	size_t k;
	json_t *v;
	json_array_foreach(arr, k, v) {
		json_int_t p = json_integer_value(json_object_get(v, "p"));
		json_int_t i = json_integer_value(json_object_get(v, "i"));
		assert_true(p == 0 || p == 1);
		per[p]++;
		if (p == 0 && i < acked0)
			seen0++;
	}
	assert_int_equal(json_array_size(arr), st->written);
	assert_int_equal(seen0, acked0);
	assert_int_equal(per[1], acked1);
	json_decref(arr);
}

static void run_point(int point, int how, int full, struct expect e)
{
	struct tu_ring t;
	tu_ring_init(&t, "ident");
	assert_true(tu_writer_start_with(&t, "64", "128", stall_args) > 0);
	shmring *r;
	assert_int_equal(shmring_open(t.name, NULL, &r), 0);
	int acked1 = 0, acked0 = K_ACKED;
	if (full) {
		/* The victim's K_ACKED records, then the ring filled while the writer is stopped. */
		pid_t a = victim(r, 0, 0, K_ACKED); /* point 0: never fires */
		int ws;
		waitpid(a, &ws, 0);
		assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
		assert_int_equal(tu_flush(r), 0);
		kill(t.writer, SIGSTOP);
		fill(r, 64);
		acked1 = 64;
		acked0 = K_ACKED + 1; /* the child's last send above was acknowledged too */
	}
	pid_t pid = victim(r, point, how, full ? 0 : K_ACKED);
	int ws;
	waitpid(pid, &ws, 0);
	if (!WIFSIGNALED(ws) || WTERMSIG(ws) != SIGKILL)
		fail_msg("point %d: the victim was not killed there (status %#x)", point, ws);
	if (full)
		kill(t.writer, SIGCONT);
	struct shmring_stats st;
	drain(r, &st);
	long base = acked0 + acked1;
	assert_int_equal(st.pending, 0);
	assert_int_equal(st.sent, base + e.sent);
	assert_int_equal(st.written, base + e.written);
	assert_int_equal(st.abandoned, e.abandoned);
	assert_int_equal(st.dropped_full, e.dropped);
	assert_int_equal(st.dropped_oversize, 0);
	assert_int_equal(st.sent, st.written + st.dropped_full + st.dropped_oversize + st.abandoned);
	check_file(t.out, acked0, acked1, &st);
	shmring_close(r);
	tu_writer_stop(&t);
	tu_ring_cleanup(&t);
}

/* Before the claim: nothing in the ring, nothing counted. */
static void test_killed_on_entry(void **s) { (void)s; run_point(SHM_TP_OFFER, 0, 0, (struct expect){ 0, 0, 0, 0 }); }
static void test_killed_in_claim(void **s) { (void)s; run_point(SHM_TP_CLAIM_LOOP, 0, 0, (struct expect){ 0, 0, 0, 0 }); }
static void test_killed_oversize(void **s) { (void)s; run_point(SHM_TP_OVERSIZE, 2, 0, (struct expect){ 0, 0, 0, 0 }); }
/* Claimed, never published: in the ring, revoked after the stall timeout, abandoned. */
static void test_killed_after_c3(void **s) { (void)s; run_point(SHM_TP_CLAIMED, 0, 0, (struct expect){ 1, 0, 1, 0 }); }
static void test_killed_after_c4(void **s) { (void)s; run_point(SHM_TP_TAIL_MOVED, 0, 0, (struct expect){ 1, 0, 1, 0 }); }
static void test_killed_header(void **s) { (void)s; run_point(SHM_TP_FILLED_HDR, 0, 0, (struct expect){ 1, 0, 1, 0 }); }
static void test_killed_mid_copy(void **s) { (void)s; run_point(SHM_TP_HALF_COPY, 0, 0, (struct expect){ 1, 0, 1, 0 }); }
static void test_killed_before_p1(void **s) { (void)s; run_point(SHM_TP_COPIED, 0, 0, (struct expect){ 1, 0, 1, 0 }); }
/* Published: written, although the sender never heard back. */
static void test_killed_after_p1(void **s) { (void)s; run_point(SHM_TP_PUBLISHED, 0, 0, (struct expect){ 1, 1, 0, 0 }); }
/* A full ring: killed before the drop's add (nothing), after it (one drop), or asleep in
 * send_wait waiting for room (nothing). */
static void test_killed_full(void **s) { (void)s; run_point(SHM_TP_FULL, 0, 1, (struct expect){ 0, 0, 0, 0 }); }
static void test_killed_dropped(void **s) { (void)s; run_point(SHM_TP_DROPPED, 0, 1, (struct expect){ 1, 0, 0, 1 }); }
static void test_killed_waiting(void **s) { (void)s; run_point(SHM_TP_WAIT, 1, 1, (struct expect){ 0, 0, 0, 0 }); }

/* The same from outside, with no hook: SIGKILL a send_wait blocked on a full ring. */
static void test_sigkill_send_wait(void **state)
{
	struct tu_ring *t = *state;
	shmring *r = tu_serve(t, "64", "128", NULL);
	kill(t->writer, SIGSTOP);
	fill(r, 64);
	pid_t pid = fork();
	if (pid == 0) {
		msgpack_sbuffer sb;
		msgpack_sbuffer_init(&sb);
		tu_pack_record(&sb, 0, 0, 40);
		_exit(shmring_send_wait(r, sb.data, sb.size, 20000) == 0 ? 0 : 1);
	}
	tu_sleep_ms(200); /* asleep on the futex by now (it would wait 20 s) */
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	kill(t->writer, SIGCONT);
	struct shmring_stats st;
	drain(r, &st);
	assert_int_equal(st.sent, 64);
	assert_int_equal(st.written, 64);
	assert_int_equal(st.dropped_full + st.abandoned + st.pending, 0);
	check_file(t->out, 0, 64, &st);
}

/* ---- item: a full ring yields only to a running writer ---------------------------- */

static int g_yields;
static void count_yield(int point, uint64_t pos)
{
	(void)pos;
	if (point == SHM_TP_YIELD)
		g_yields++;
}

/* 1000 sends into a full ring; returns how many yielded. beat: keep the writer's beat
 * fresh before each send, as a writer that keeps committing does (a yield on a loaded
 * host may last longer than the 20 ms a beat stays fresh). */
static int full_sends(shmring *r, _Atomic uint64_t *beat)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	tu_pack_record(&sb, 1, 0, 40);
	g_yields = 0;
	shm_test_hook = count_yield;
	for (int i = 0; i < 1000; i++) {
		if (beat)
			atomic_store(beat, shm_now_ns());
		assert_int_equal(shmring_send(r, sb.data, sb.size), -EAGAIN);
	}
	shm_test_hook = NULL;
	msgpack_sbuffer_destroy(&sb);
	return g_yields;
}

static void test_yield_policy(void **state)
{
	struct tu_ring *t = *state;
	struct shmring_options o = { .capacity = 64, .slot_size = 128 };
	assert_int_equal(shmring_open(t->name, &o, &t->r), 0);
	shmring *r = t->r;
	fill(r, 64);
	struct shm_hdr *h = shm_ring_map(r)->hdr;
	/* No writer has ever served: no yield. */
	uint64_t t0 = shm_now_ns();
	assert_int_equal(full_sends(r, NULL), 0);
	print_message("1000 full-ring sends with no writer: %.1f us (a measurement, not a bound)\n",
		      (double)(shm_now_ns() - t0) / 1e3);
	/* A writer that committed just now and is awake: each drop yields once. */
	assert_int_equal(full_sends(r, &h->writer_beat_ns), 1000);
	/* ... asleep (a publish wakes it, not a yield): none. */
	atomic_store(&h->writer_sleeping, 1);
	assert_int_equal(full_sends(r, NULL), 0);
	atomic_store(&h->writer_sleeping, 0);
	/* ... silent for longer than 20 ms (killed, stopped, stuck on a failing disk): none. */
	atomic_store(&h->writer_beat_ns, shm_now_ns() - 50000000ull);
	assert_int_equal(full_sends(r, NULL), 0);
	/* A real writer, stopped: its beat goes stale within 20 ms. */
	assert_true(tu_writer_start(t, "64", "128") > 0);
	assert_int_equal(tu_flush(r), 0);
	kill(t->writer, SIGSTOP);
	fill(r, 64);
	tu_sleep_ms(60);
	assert_int_equal(full_sends(r, NULL), 0);
	kill(t->writer, SIGCONT);
	struct shmring_stats st;
	drain(r, &st);
	assert_int_equal(st.dropped_full, 5000);
	assert_int_equal(st.written, 128);
	assert_int_equal(st.sent, 5128);
}

/* The invariant checker itself: it passes a ring at rest and names what is broken. */
static void test_ring_valid(void **state)
{
	struct tu_ring *t = *state;
	struct shmring_options o = { .capacity = 64, .slot_size = 128 };
	assert_int_equal(shmring_open(t->name, &o, &t->r), 0);
	shmring *r = t->r;
	struct shm_map *m = shm_ring_map(r);
	char why[160];
	assert_int_equal(shm_ring_valid(m, why, sizeof(why)), 0);
	fill(r, 3); /* three published records in [head, tail): still valid */
	assert_int_equal(shm_ring_valid(m, why, sizeof(why)), 0);
	/* A word past the tail that is not free for its next position. */
	uint64_t save = atomic_load(&m->words[10]);
	atomic_store(&m->words[10], w_make(0, 0, 1, 0, W_READY));
	assert_int_equal(shm_ring_valid(m, why, sizeof(why)), -EPROTO);
	assert_non_null(strstr(why, "INV3"));
	atomic_store(&m->words[10], save);
	/* A run that claims to reach past the tail. */
	save = atomic_load(&m->words[2]);
	atomic_store(&m->words[2], w_make(0, 0, 5, 0, W_READY));
	assert_int_equal(shm_ring_valid(m, why, sizeof(why)), -EPROTO);
	assert_non_null(strstr(why, "INV2"));
	atomic_store(&m->words[2], save);
	/* confirmed behind head; an odd progress count. */
	atomic_store(&m->hdr->confirmed, 7);
	assert_int_equal(shm_ring_valid(m, why, sizeof(why)), -EPROTO);
	atomic_store(&m->hdr->confirmed, 0);
	atomic_store(&m->hdr->progress_seq, 1);
	assert_int_equal(shm_ring_valid(m, why, sizeof(why)), -EPROTO);
	atomic_store(&m->hdr->progress_seq, 0);
	assert_int_equal(shm_ring_valid(m, why, sizeof(why)), 0);
}

static void quiet(enum shmring_log_level l, const char *msg, void *ctx)
{
	(void)l, (void)msg, (void)ctx;
}

int main(void)
{
	shmring_set_log(quiet, NULL); /* the drops here are the subject, counted not logged */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_killed_on_entry),
		cmocka_unit_test(test_killed_in_claim),
		cmocka_unit_test(test_killed_oversize),
		cmocka_unit_test(test_killed_after_c3),
		cmocka_unit_test(test_killed_after_c4),
		cmocka_unit_test(test_killed_header),
		cmocka_unit_test(test_killed_mid_copy),
		cmocka_unit_test(test_killed_before_p1),
		cmocka_unit_test(test_killed_after_p1),
		cmocka_unit_test(test_killed_full),
		cmocka_unit_test(test_killed_dropped),
		cmocka_unit_test(test_killed_waiting),
		TU_TEST_KILL(test_sigkill_send_wait),
		TU_TEST_KILL(test_yield_policy),
		TU_TEST_KILL(test_ring_valid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
