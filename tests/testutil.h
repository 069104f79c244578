/*
 * testutil.h - shared helpers for the fork-based tests: unique ring names, a writer
 * started from the build tree, cmocka fixtures that create and remove both, reading the
 * JSONL back with an independent parser.
 */
#ifndef SHMRING_TESTUTIL_H
#define SHMRING_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <sched.h>
#include <jansson.h>
#include <msgpack.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "shmring.h"

#ifndef SHMRING_WRITER_PATH
#error "tests are built with SHMRING_WRITER_PATH"
#endif

static inline uint64_t tu_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline void tu_sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static inline void tu_track(pid_t pid, const char *name);

/* Drained: nothing pending, so sent (the sum of outcomes, DESIGN §9) is written + drops +
 * abandoned. A check that pending, counted from the ring's words, agrees with the
 * writer's totals; tests compare those with counts of their own (lines parsed, answers
 * their sends returned). For use in cmocka tests (assert_int_equal). */
#define TU_ASSERT_SETTLED(st) \
	assert_int_equal((st).sent, (st).written + (st).dropped_full + (st).dropped_oversize + (st).abandoned)

/* The ring keeps the protocol's invariants once at rest (shm_ring_valid): retried for up
 * to a second, since the writer may still be finishing the commit that drained it. */
#define TU_ASSERT_RING_VALID(r) \
	do { \
		char why_[160] = ""; \
		uint64_t end_ = tu_now_ms() + 1000; \
		while (shm_ring_valid(shm_ring_map(r), why_, sizeof(why_)) && tu_now_ms() < end_) \
			tu_sleep_ms(5); \
		if (shm_ring_valid(shm_ring_map(r), why_, sizeof(why_))) \
			fail_msg("ring not valid at rest: %s", why_); \
	} while (0)

/* A ring name and an output path unique to this process and call; the writer serving
 * it and a handle on it, when a test has them (the fixtures below end both). */
struct tu_ring {
	char name[96];
	char out[256];
	char dir[128];
	pid_t writer;
	shmring *r;
};

static inline void tu_ring_init(struct tu_ring *t, const char *tag)
{
	static int seq;
	snprintf(t->name, sizeof(t->name), "test-%s-%d-%d-%ld", tag, (int)getpid(), seq++, (long)time(NULL));
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	snprintf(t->dir, sizeof(t->dir), "%s/shmring-%s", tmp, t->name);
	snprintf(t->out, sizeof(t->out), "%s/out.jsonl", t->dir);
	t->writer = 0;
	t->r = NULL;
	shmring_unlink(t->name);
	tu_track(0, t->name);
}

/* Writers and rings a failed assertion would leave behind: removed at exit. Every tracked
 * pid is a child of the test: one already reaped is no longer ours (waitpid: ECHILD) and
 * its number may belong to another process by now, so only unreaped children are killed. */
static pid_t tu_pids[256];
static char tu_names[256][96];
static int tu_npids, tu_nnames;
static void tu_atexit(void)
{
	for (int i = 0; i < tu_npids; i++) {
		if (tu_pids[i] <= 0 || waitpid(tu_pids[i], NULL, WNOHANG) != 0)
			continue; /* reaped before (ECHILD) or just now (a zombie) */
		kill(tu_pids[i], SIGKILL);
		waitpid(tu_pids[i], NULL, 0);
	}
	for (int i = 0; i < tu_nnames; i++)
		shmring_unlink(tu_names[i]);
}

static inline void tu_track(pid_t pid, const char *name)
{
	static pid_t owner;
	if (owner != getpid()) { /* atexit handlers are inherited: only the test process cleans */
		owner = getpid();
		tu_npids = tu_nnames = 0;
		atexit(tu_atexit);
	}
	if (pid > 0 && tu_npids < 256)
		tu_pids[tu_npids++] = pid;
	if (name && tu_nnames < 256)
		snprintf(tu_names[tu_nnames++], sizeof(tu_names[0]), "%s", name);
}

/* In a forked child: exec the writer program exe on t with capacity and slot size as
 * strings (or NULL), then extra arguments (a NULL-terminated list, or NULL); its stderr
 * goes to /dev/null unless SHMRING_TEST_VERBOSE is set. Never returns. */
static inline void tu_exec_writer(const char *exe, struct tu_ring *t, const char *cap, const char *slot,
				  const char *const *extra)
{
	const char *argv[16];
	int n = 0;
	argv[n++] = exe;
	argv[n++] = "--ring";
	argv[n++] = t->name;
	argv[n++] = "--out";
	argv[n++] = t->out;
	if (cap) {
		argv[n++] = "--capacity";
		argv[n++] = cap;
	}
	if (slot) {
		argv[n++] = "--slot-size";
		argv[n++] = slot;
	}
	for (int k = 0; extra && extra[k] && n < 15; k++)
		argv[n++] = extra[k];
	argv[n] = NULL;
	if (!getenv("SHMRING_TEST_VERBOSE"))
		freopen("/dev/null", "w", stderr);
	execv(exe, (char **)argv);
	_exit(127);
}

/* Fork and exec shmring-writer on t (tu_exec_writer). Returns its pid at once (-1 if
 * fork fails). */
static inline pid_t tu_writer_spawn(struct tu_ring *t, const char *cap, const char *slot,
				    const char *const *extra)
{
	pid_t pid = fork();
	if (pid == 0)
		tu_exec_writer(SHMRING_WRITER_PATH, t, cap, slot, extra);
	return pid;
}

/* A writer on t with the extra arguments, run to its end (one that refuses to start, or
 * a second writer): its wait status, or -1. */
static inline int tu_writer_run(struct tu_ring *t, const char *const *extra)
{
	int st;
	pid_t pid = tu_writer_spawn(t, NULL, NULL, extra);
	return pid > 0 && waitpid(pid, &st, 0) == pid ? st : -1;
}

/* Start shmring-writer on t (tu_writer_spawn) as t->writer. Returns its pid once it
 * serves, or -1. */
static inline pid_t tu_writer_start_with(struct tu_ring *t, const char *cap, const char *slot,
					 const char *const *extra)
{
	pid_t pid = tu_writer_spawn(t, cap, slot, extra);
	t->writer = pid;
	tu_track(pid, NULL);
	/* Serving = it holds the writer lock and has published its pid. */
	shmring *r = NULL;
	for (int i = 0; i < 400; i++) {
		if (!r && shmring_attach(t->name, &r) != 0)
			r = NULL;
		if (r) {
			struct shmring_stats st;
			if (shmring_stats(r, &st) == 0 && st.writer_alive && st.writer_pid == pid) {
				shmring_close(r);
				return pid;
			}
		}
		tu_sleep_ms(5);
	}
	if (r)
		shmring_close(r);
	return -1;
}

static inline pid_t tu_writer_start(struct tu_ring *t, const char *cap, const char *slot)
{
	return tu_writer_start_with(t, cap, slot, NULL);
}

/* Create the ring (t->r, the writer would need room to size a new shm object), then
 * start the writer under RLIMIT_FSIZE soft/hard with SIGXFSZ ignored, so that write(2)
 * fails with EFBIG. Returns its pid once it serves, or -1. */
static inline pid_t tu_writer_start_limited(struct tu_ring *t, rlim_t soft, rlim_t hard)
{
	if (shmring_open(t->name, NULL, &t->r) != 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		struct rlimit rl = { soft, hard };
		setrlimit(RLIMIT_FSIZE, &rl);
		signal(SIGXFSZ, SIG_IGN);
		tu_exec_writer(SHMRING_WRITER_PATH, t, NULL, NULL, NULL);
	}
	t->writer = pid;
	tu_track(pid, NULL);
	for (int i = 0; i < 400; i++) {
		struct shmring_stats st;
		if (shmring_stats(t->r, &st) == 0 && st.writer_alive && st.writer_pid == pid)
			return pid;
		tu_sleep_ms(5);
	}
	return -1;
}

/* A writer on t (tu_writer_start_with), then a handle on its ring: t->r, returned. */
static inline shmring *tu_serve(struct tu_ring *t, const char *cap, const char *slot,
				const char *const *extra)
{
	assert_true(tu_writer_start_with(t, cap, slot, extra) > 0);
	assert_int_equal(shmring_attach(t->name, &t->r), 0);
	return t->r;
}

/* A flush that retries while it times out (a slow, loaded or instrumented machine):
 * for tests whose subject is not the 100 ms bound itself. */
static inline int tu_flush(shmring *r)
{
	uint64_t end = tu_now_ms() + 10000;
	int rc;
	while ((rc = shmring_flush(r)) == -ETIMEDOUT && tu_now_ms() < end)
		;
	return rc;
}

/* SIGTERM the writer (it drains, then exits 0); returns its exit status. */
/* Reap a writer already told to stop: its exit status, or 128 + the signal. No second
 * signal: one arriving while LeakSanitizer suspends the exiting writer hung it (ASan). */
static inline int tu_writer_wait(struct tu_ring *t)
{
	int st = -1;
	if (t->writer <= 0)
		return -1;
	waitpid(t->writer, &st, 0);
	t->writer = 0;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static inline int tu_writer_stop(struct tu_ring *t)
{
	if (t->writer <= 0)
		return -1;
	kill(t->writer, SIGCONT);
	kill(t->writer, SIGTERM);
	return tu_writer_wait(t);
}

static inline void tu_ring_cleanup(struct tu_ring *t)
{
	if (t->writer > 0) {
		kill(t->writer, SIGKILL);
		waitpid(t->writer, NULL, 0);
		t->writer = 0;
	}
	shm_gc(t->name, 0, 0, NULL, NULL); /* semaphores of processes the test killed */
	shmring_unlink(t->name);
	unlink(t->out);
	rmdir(t->dir);
}

/* Close t->r before the end of a test (teardown closes it otherwise). */
static inline void tu_close(struct tu_ring *t)
{
	shmring_close(t->r);
	t->r = NULL;
}

/* cmocka fixtures. The state is a struct tu_ring named after the test (TU_TEST passes
 * the test's name as the initial state). Teardown closes t->r and stops a writer still
 * running: tu_teardown requires it to exit 0 (it drained), tu_teardown_kill SIGKILLs it,
 * for tests that stop or break their writer on purpose. TU_TEST_WITH names another
 * teardown, for a fixture that holds more (one that calls tu_end, then tu_teardown_kill);
 * tu_setup_as sets up a state of another type, named by its init function. */
static inline int tu_setup_as(void **state, size_t size, void (*init)(void *t, const char *tag))
{
	const char *name = *state ? *state : "fx";
	char tag[17]; /* paths under $TMPDIR stay short (a socket's must fit sun_path) */
	snprintf(tag, sizeof(tag), "%s", strncmp(name, "test_", 5) ? name : name + 5);
	void *t = calloc(1, size);
	if (!t)
		return -1;
	init(t, tag);
	*state = t;
	return 0;
}

static inline void tu_ring_init_any(void *t, const char *tag)
{
	tu_ring_init(t, tag);
}

static inline int tu_setup(void **state)
{
	return tu_setup_as(state, sizeof(struct tu_ring), tu_ring_init_any);
}

/* Close t->r and, when stop, SIGTERM a writer still running: nonzero (with a message)
 * unless it exited 0. For teardowns of fixtures that hold more than the ring. */
static inline int tu_end(struct tu_ring *t, int stop)
{
	if (t->r)
		shmring_close(t->r);
	t->r = NULL;
	int rc = stop && t->writer > 0 ? tu_writer_stop(t) : 0;
	if (rc != 0)
		print_error("the writer exited %d on SIGTERM, not 0\n", rc);
	return rc;
}

/* The end of a ring a test made itself (one per round of a loop): as tu_teardown. */
static inline void tu_ring_done(struct tu_ring *t)
{
	assert_int_equal(tu_end(t, 1), 0);
	tu_ring_cleanup(t);
}

static inline int tu_teardown_with(void **state, int stop)
{
	struct tu_ring *t = *state;
	int rc = tu_end(t, stop);
	tu_ring_cleanup(t);
	free(t);
	return rc;
}

static inline int tu_teardown(void **state)
{
	return tu_teardown_with(state, 1);
}

static inline int tu_teardown_kill(void **state)
{
	return tu_teardown_with(state, 0);
}

#define TU_TEST_WITH(f, teardown) cmocka_unit_test_prestate_setup_teardown(f, tu_setup, teardown, (void *)#f)
#define TU_TEST(f) TU_TEST_WITH(f, tu_teardown)
#define TU_TEST_KILL(f) TU_TEST_WITH(f, tu_teardown_kill)

/* A copy of the program src that any user can run, dir/leaf in a new folder dir (a
 * mkdtemp template, filled in), its path in path: for a test that runs it as another
 * user, to whom the build tree may be closed. The test removes both. */
static inline void tu_copy_exe(const char *src, char *dir, const char *leaf, char *path, size_t len)
{
	assert_non_null(mkdtemp(dir));
	assert_int_equal(chmod(dir, 0755), 0);
	snprintf(path, len, "%s/%s", dir, leaf);
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && chmod 0755 '%s'", src, path, path);
	assert_int_equal(system(cmd), 0);
}

/* Run the group; SHMRING_TEST_FILTER=test_name runs only the tests it matches (e.g. one
 * test in a loop). */
#define TU_RUN_TESTS(tests) \
	((getenv("SHMRING_TEST_FILTER") ? cmocka_set_test_filter(getenv("SHMRING_TEST_FILTER")) : (void)0), \
	 cmocka_run_group_tests(tests, NULL, NULL))

/* Read the whole file; every line must parse as JSON. Returns an array of json_t*, or
 * NULL with *bad set to the first line that did not parse. live: the writer may be
 * appending right now, so an unterminated last line is a write in progress (a read(2)
 * concurrent with a write(2) that spans pages sees part of it, on ext4 and tmpfs
 * alike), left out rather than an error. */
static inline json_t *tu_read_jsonl_ex(const char *path, long *bad, int live)
{
	FILE *f = fopen(path, "r");
	*bad = -1;
	json_t *arr = json_array();
	if (!f)
		return arr;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	long no = 0;
	while ((n = getline(&line, &cap, f)) > 0) {
		if (line[n - 1] != '\n') {
			if (!live)
				*bad = no; /* partial line */
			break;
		}
		json_error_t err;
		json_t *v = json_loadb(line, (size_t)n - 1, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
		if (!v) {
			*bad = no;
			break;
		}
		json_array_append_new(arr, v);
		no++;
	}
	free(line);
	fclose(f);
	if (*bad >= 0) {
		json_decref(arr);
		return NULL;
	}
	return arr;
}

static inline json_t *tu_read_jsonl(const char *path, long *bad)
{
	return tu_read_jsonl_ex(path, bad, 0);
}

/* Test records (tu_pack_record) in the file, counted per producer p < P into per[].
 * Returns how many lines, or -1 if one is not JSON or not a record of a producer < P,
 * if in_order and a producer's "i" do not run 0, 1, ..., or if pad >= 0 and an "s" is
 * not pad bytes long. */
static inline long tu_count_records(const char *path, int P, long *per, int in_order, long pad)
{
	long bad;
	json_t *arr = tu_read_jsonl(path, &bad);
	if (!arr)
		return -1;
	memset(per, 0, sizeof(long) * (size_t)P);
	long n = (long)json_array_size(arr);
	size_t k;
	json_t *v;
	json_array_foreach(arr, k, v) {
		json_t *jp = json_object_get(v, "p"), *js = json_object_get(v, "s");
		long p = json_is_integer(jp) ? (long)json_integer_value(jp) : -1;
		if (p < 0 || p >= P || (in_order && json_integer_value(json_object_get(v, "i")) != per[p]) ||
		    (pad >= 0 && (!json_is_string(js) || json_string_length(js) != (size_t)pad))) {
			n = -1;
			break;
		}
		per[p]++;
	}
	json_decref(arr);
	return n;
}

/* The test record: {"p":P,"i":I,"s":"<pad>"} packed with msgpack-c. */
static inline size_t tu_pack_record(msgpack_sbuffer *sb, int p, long i, size_t pad)
{
	msgpack_sbuffer_clear(sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 3);
	msgpack_pack_str_with_body(&pk, "p", 1);
	msgpack_pack_int(&pk, p);
	msgpack_pack_str_with_body(&pk, "i", 1);
	msgpack_pack_long(&pk, i);
	msgpack_pack_str_with_body(&pk, "s", 1);
	char buf[8192];
	size_t n = pad < sizeof(buf) ? pad : sizeof(buf);
	for (size_t k = 0; k < n; k++)
		buf[k] = (char)('a' + (k + (size_t)i) % 26);
	msgpack_pack_str_with_body(&pk, buf, n);
	return sb->size;
}

/* A forked producer's own handle on ring name; it exits 1 if it cannot open one. */
static inline shmring *tu_child_open(const char *name)
{
	shmring *r;
	if (shmring_open(name, NULL, &r))
		_exit(1);
	return r;
}

/* A forked producer's end: flush (tu_flush), close, exit 0, or code if the flush failed. */
static inline void tu_child_exit(shmring *r, int code)
{
	int rc = tu_flush(r);
	shmring_close(r);
	_exit(rc ? code : 0);
}

/* Send test records i = from .. to-1 of producer p with pad bytes each: every send must
 * return 0 (the ring has room, or a writer drains it). */
static inline void tu_send_records(shmring *r, int p, long from, long to, size_t pad)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	for (long i = from; i < to; i++) {
		tu_pack_record(&sb, p, i, pad);
		assert_int_equal(shmring_send(r, sb.data, sb.size), 0);
	}
	msgpack_sbuffer_destroy(&sb);
}

/* Send sb, retrying at once while the ring is full (never blocks, and the count of
 * records stays exact): 0, or the first other answer of shmring_send. */
static inline int tu_send_all(shmring *r, const msgpack_sbuffer *sb)
{
	int rc;
	while ((rc = shmring_send(r, sb->data, sb->size)) == -EAGAIN)
		sched_yield();
	return rc;
}

/* Send test records i = from .. to-1 of producer 0, 100 bytes of pad each, each retried
 * while the ring is full. */
static inline void tu_send_range(shmring *r, long from, long to)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	for (long i = from; i < to; i++) {
		tu_pack_record(&sb, 0, i, 100);
		while (shmring_send(r, sb.data, sb.size) == -EAGAIN)
			tu_sleep_ms(1);
	}
	msgpack_sbuffer_destroy(&sb);
}

/* Wait for child processes; returns how many exited non-zero. */
static inline int tu_wait_children(int n)
{
	int bad = 0;
	for (int i = 0; i < n; i++) {
		int st;
		if (wait(&st) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
			bad++;
	}
	return bad;
}

#endif
