/* test_writer_ops: rotation by size (never splitting a line), a rename noticed and SIGHUP
 * reopen, --out - to a pipe, --fsync modes, --detach with a pid file, its errors, drops
 * counted before a writer started not reported as new, systemd readiness notification,
 * --seq keys on objects, other values and invalid records. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "testutil.h"

/* Append the "i" of every line of path to seen[]; every line must be whole JSON. */
static long collect(const char *path, char *seen, long n, long *bytes)
{
	long bad;
	json_t *arr = tu_read_jsonl(path, &bad);
	assert_non_null(arr);
	struct stat st;
	*bytes = stat(path, &st) == 0 ? (long)st.st_size : 0;
	size_t k;
	json_t *v;
	json_array_foreach(arr, k, v) {
		long i = (long)json_integer_value(json_object_get(v, "i"));
		assert_true(i >= 0 && i < n);
		assert_int_equal(seen[i], 0);
		seen[i] = 1;
	}
	long c = (long)json_array_size(arr);
	json_decref(arr);
	return c;
}

static void test_rotation(void **state)
{
	struct tu_ring *t = *state;
	static const char *args[] = { "--max-bytes", "20000", "--keep", "20", NULL };
	shmring *r = tu_serve(t, NULL, NULL, args);
	const long N = 1500; /* ~130 bytes a line: ~195 KB over files of at most 20000 */
	for (long i = 0; i < N; i += 100) {
		tu_send_range(r, i, i + 100);
		assert_int_equal(tu_flush(r), 0);
	}
	char *seen = calloc((size_t)N, 1);
	long total = 0, bytes, files = 0;
	total += collect(t->out, seen, N, &bytes);
	assert_true(bytes <= 20000);
	for (int k = 1; k <= 20; k++) {
		char p[300];
		snprintf(p, sizeof(p), "%s.%d", t->out, k);
		if (access(p, F_OK))
			break;
		files++;
		total += collect(p, seen, N, &bytes);
		assert_true(bytes > 0 && bytes <= 20000); /* whole lines only (collect parses each) */
		unlink(p);
	}
	assert_true(files >= 9);
	assert_int_equal(total, N); /* each record once, across the files */
	free(seen);
}

/* Bytes of blocks a file holds past its size (0 if none): what reserve_ahead left. */
static long long blocks_past_size(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	long long past = (long long)st.st_blocks * 512 - (long long)st.st_size;
	return past > 0 ? past : 0;
}

/* The writer reserves blocks ahead of the file's end (fallocate KEEP_SIZE) and gives them
 * back: a rotated file keeps none, a stopped writer leaves none, and a writer that finds
 * a killed one's reservation returns it at open. The size never counts them. */
static void test_reserve_released(void **state)
{
	struct tu_ring *t = *state;
	static const char *args[] = { "--max-bytes", "3000000", "--keep", "2", NULL };
	shmring *r = tu_serve(t, NULL, NULL, args);
	tu_send_range(r, 0, 200);
	assert_int_equal(tu_flush(r), 0);
	if (blocks_past_size(t->out) < (1 << 20)) {
		print_message("no blocks reserved ahead on this file system: nothing to give back\n");
		skip();
	}
	const long N = 30000; /* ~3.9 MB of lines: one rotation at 3 MB */
	for (long i = 200; i < N; i += 1000) {
		tu_send_range(r, i, i + 1000 < N ? i + 1000 : N);
		assert_int_equal(tu_flush(r), 0);
	}
	char rotated[300];
	snprintf(rotated, sizeof(rotated), "%s.1", t->out);
	assert_int_equal(access(rotated, F_OK), 0);
	assert_true(blocks_past_size(rotated) < 65536); /* a block's rounding, not 8 MiB */
	assert_true(blocks_past_size(t->out) >= (1 << 20)); /* still writing: reserved */
	/* Killed while holding a reservation: the next writer gives it back at open. */
	kill(t->writer, SIGKILL);
	waitpid(t->writer, NULL, 0);
	t->writer = 0;
	assert_true(blocks_past_size(t->out) >= (1 << 20));
	assert_true(tu_writer_start_with(t, NULL, NULL, args) > 0);
	assert_true(blocks_past_size(t->out) < 65536);
	/* A clean stop after more lines leaves nothing reserved either. */
	tu_send_range(r, N, N + 100);
	assert_int_equal(tu_flush(r), 0);
	assert_int_equal(tu_writer_stop(t), 0);
	assert_true(blocks_past_size(t->out) < 65536);
	unlink(rotated);
}

/* --seq: an object gets "shmring_seq":POS first, any other value is wrapped, an invalid
 * record's error object is keyed too; positions count from the ring's first record. */
static void test_seq(void **state)
{
	struct tu_ring *t = *state;
	static const char *args[] = { "--seq", NULL };
	shmring *r = tu_serve(t, NULL, NULL, args);
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	msgpack_pack_str_with_body(&pk, "a", 1);
	msgpack_pack_int(&pk, 1);
	assert_int_equal(shmring_send(r, sb.data, sb.size), 0);
	msgpack_sbuffer_clear(&sb);
	msgpack_pack_map(&pk, 0);
	assert_int_equal(shmring_send(r, sb.data, sb.size), 0);
	msgpack_sbuffer_clear(&sb);
	msgpack_pack_array(&pk, 2);
	msgpack_pack_int(&pk, 1);
	msgpack_pack_str_with_body(&pk, "x", 1);
	assert_int_equal(shmring_send(r, sb.data, sb.size), 0);
	msgpack_sbuffer_clear(&sb);
	msgpack_pack_str_with_body(&pk, "s", 1);
	assert_int_equal(shmring_send(r, sb.data, sb.size), 0);
	msgpack_sbuffer_clear(&sb);
	msgpack_pack_nil(&pk);
	assert_int_equal(shmring_send(r, sb.data, sb.size), 0);
	static const uint8_t invalid[] = { 0xc1 };
	assert_int_equal(shmring_send(r, invalid, sizeof(invalid)), 0);
	msgpack_sbuffer_destroy(&sb);
	assert_int_equal(tu_flush(r), 0);
	char buf[4096];
	int fd = open(t->out, O_RDONLY);
	assert_true(fd >= 0);
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	assert_true(n > 0);
	buf[n] = 0;
	static const char want[] = "{\"shmring_seq\":0,\"a\":1}\n"
				   "{\"shmring_seq\":1}\n"
				   "{\"shmring_seq\":2,\"record\":[1,\"x\"]}\n"
				   "{\"shmring_seq\":3,\"record\":\"s\"}\n"
				   "{\"shmring_seq\":4,\"record\":null}\n"
				   "{\"shmring_seq\":5,\"shmring_error\":";
	assert_memory_equal(buf, want, sizeof(want) - 1);
	long bad = 0;
	json_t *all = tu_read_jsonl(t->out, &bad); /* every line is whole JSON */
	assert_non_null(all);
	assert_int_equal(json_array_size(all), 6);
	json_decref(all);
}

static void test_sighup_reopen(void **state)
{
	struct tu_ring *t = *state;
	shmring *r = tu_serve(t, NULL, NULL, NULL);
	tu_send_range(r, 0, 100);
	assert_int_equal(tu_flush(r), 0);
	char old[300], old2[300];
	snprintf(old, sizeof(old), "%s.old", t->out);
	snprintf(old2, sizeof(old2), "%s.old2", t->out);
	/* A rename without the signal: noticed before the next batch, which goes to a new
	 * PATH (the writer stats PATH before each batch). */
	assert_int_equal(rename(t->out, old), 0);
	tu_send_range(r, 100, 150);
	assert_int_equal(tu_flush(r), 0);
	/* logrotate: rename, then signal: PATH is reopened at once, with nothing to write. */
	assert_int_equal(rename(t->out, old2), 0);
	kill(t->writer, SIGHUP);
	for (int i = 0; i < 5000 && access(t->out, F_OK); i++)
		usleep(1000);
	assert_int_equal(access(t->out, F_OK), 0);
	tu_send_range(r, 150, 200);
	assert_int_equal(tu_flush(r), 0);
	char *seen = calloc(200, 1);
	long bytes;
	assert_int_equal(collect(old, seen, 200, &bytes), 100);
	assert_int_equal(collect(old2, seen, 200, &bytes), 50);
	assert_int_equal(collect(t->out, seen, 200, &bytes), 50);
	free(seen);
	unlink(old);
	unlink(old2);
}

static void test_stdout_and_fsync(void **state)
{
	(void)state;
	const char *modes[] = { "never", "flush", "always" };
	for (int m = 0; m < 3; m++) {
		struct tu_ring t;
		tu_ring_init(&t, "stdout");
		int p[2];
		assert_int_equal(pipe2(p, O_CLOEXEC), 0);
		pid_t w = fork();
		if (w == 0) {
			dup2(p[1], STDOUT_FILENO);
			freopen("/dev/null", "w", stderr);
			execl(SHMRING_WRITER_PATH, SHMRING_WRITER_PATH, "--ring", t.name, "--out", "-",
			      "--fsync", modes[m], (char *)NULL);
			_exit(127);
		}
		close(p[1]);
		shmring *r = NULL;
		for (int i = 0; i < 400; i++) {
			struct shmring_stats st;
			if (!r && shmring_attach(t.name, &r))
				r = NULL;
			if (r && shmring_stats(r, &st) == 0 && st.writer_alive)
				break;
			tu_sleep_ms(5);
		}
		assert_non_null(r);
		tu_send_range(r, 0, 20);
		assert_int_equal(tu_flush(r), 0);
		kill(w, SIGTERM);
		waitpid(w, NULL, 0);
		FILE *f = fdopen(p[0], "r");
		char line[1024];
		long n = 0;
		while (fgets(line, sizeof(line), f)) {
			json_error_t e;
			json_t *v = json_loads(line, 0, &e);
			assert_non_null(v);
			assert_int_equal(json_integer_value(json_object_get(v, "i")), n);
			json_decref(v);
			n++;
		}
		fclose(f);
		assert_int_equal(n, 20);
		shmring_close(r);
		tu_ring_cleanup(&t);
	}
}

static void test_detach_pid_file(void **state)
{
	struct tu_ring *t = *state;
	mkdir(t->dir, 0700);
	char pidf[300];
	snprintf(pidf, sizeof(pidf), "%s/writer.pid", t->dir);
	const char *args[] = { "--detach", "--pid-file", pidf, NULL };
	int st = tu_writer_run(t, args);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0); /* returned once serving */
	FILE *f = fopen(pidf, "r");
	assert_non_null(f);
	int pid = 0;
	assert_int_equal(fscanf(f, "%d", &pid), 1);
	fclose(f);
	shmring *r;
	assert_int_equal(shmring_attach(t->name, &r), 0);
	struct shmring_stats s;
	shmring_stats(r, &s);
	assert_true(s.writer_alive);
	assert_int_equal(s.writer_pid, pid);
	assert_int_not_equal(getsid(pid), getsid(0)); /* its own session */
	tu_send_range(r, 0, 10);
	assert_int_equal(tu_flush(r), 0);
	shmring_close(r);
	kill(pid, SIGTERM);
	for (int i = 0; i < 200 && kill(pid, 0) == 0; i++)
		tu_sleep_ms(10);
	unlink(pidf);
}

/* Run the writer on t with stderr into errf and the extra arguments; returns its pid. */
static pid_t writer_logged(struct tu_ring *t, const char *errf, const char *a1, const char *a2)
{
	pid_t c = fork();
	if (c == 0) {
		freopen(errf, "w", stderr);
		execl(SHMRING_WRITER_PATH, SHMRING_WRITER_PATH, "--ring", t->name, "--out", t->out,
		      a1, a2, (char *)NULL);
		_exit(127);
	}
	tu_track(c, NULL);
	return c;
}

static int file_has(const char *path, const char *text)
{
	char buf[8192] = "";
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = 0;
	fclose(f);
	return strstr(buf, text) != NULL;
}

/* A pid file that cannot be written says why; a writer's restart does not report the drops
 * counted before it as new ones. */
static void test_pid_file_error_old_drops(void **state)
{
	struct tu_ring *t = *state;
	mkdir(t->dir, 0700);
	char errf[300], pidf[300];
	snprintf(errf, sizeof(errf), "%s/writer.err", t->dir);
	snprintf(pidf, sizeof(pidf), "%s/no-such-dir/writer.pid", t->dir);
	/* Drops while no writer serves: the small ring fills up. */
	struct shmring_options o = { .capacity = 64, .slot_size = 64 };
	shmring *r;
	assert_int_equal(shmring_open(t->name, &o, &r), 0);
	char rec[1] = { (char)0xc0 };
	int dropped = 0;
	for (int i = 0; i < 200; i++)
		dropped += shmring_send(r, rec, 1) == -EAGAIN;
	assert_true(dropped > 0);
	assert_true(shmring_dropped_count(r) > 0);
	int st;
	waitpid(writer_logged(t, errf, "--pid-file", pidf), &st, 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 1);
	char want[400];
	snprintf(want, sizeof(want), "cannot write pid file %s: No such file or directory", pidf);
	assert_true(file_has(errf, want));

	/* The first writer reports nothing as dropped "since last report" that it did not
	 * see dropped; its drop report runs at once and then every second. */
	t->writer = writer_logged(t, errf, "--stall-timeout", "1000");
	struct shmring_stats s = { 0 };
	for (int i = 0; i < 400 && !(shmring_stats(r, &s) == 0 && s.writer_alive); i++)
		tu_sleep_ms(5);
	assert_int_equal(tu_flush(r), 0);
	tu_sleep_ms(1200);
	assert_int_equal(tu_writer_stop(t), 0);
	assert_true(file_has(errf, "serving ring"));
	assert_false(file_has(errf, "dropped since last report"));
	shmring_close(r);
	unlink(errf);
}

/* A datagram from the socket within ms, NUL-terminated in buf; its length or -1. */
static ssize_t recv_within(int fd, char *buf, size_t len, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	if (poll(&p, 1, ms) != 1)
		return -1;
	ssize_t n = recv(fd, buf, len - 1, 0);
	if (n >= 0)
		buf[n] = 0;
	return n;
}

/* systemd Type=notify: READY=1 (with MAINPID) once the writer serves, STOPPING=1 at
 * SIGTERM, through $NOTIFY_SOCKET. */
static void test_sd_notify(void **state)
{
	struct tu_ring *t = *state;
	mkdir(t->dir, 0700);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char sock[300];
	snprintf(sock, sizeof(sock), "%s/notify", t->dir);
	assert_true(strlen(sock) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, sock, strlen(sock) + 1);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	pid_t w = fork();
	if (w == 0) {
		setenv("NOTIFY_SOCKET", sa.sun_path, 1);
		tu_exec_writer(SHMRING_WRITER_PATH, t, NULL, NULL, NULL);
	}
	t->writer = w;
	tu_track(w, NULL);
	char msg[512], want[64];
	assert_true(recv_within(fd, msg, sizeof(msg), 10000) > 0);
	assert_true(strncmp(msg, "READY=1\n", 8) == 0);
	snprintf(want, sizeof(want), "MAINPID=%d\n", (int)w);
	assert_non_null(strstr(msg, want));
	/* Ready means serving: the lock is held and the pid published already. */
	shmring *r;
	assert_int_equal(shmring_attach(t->name, &r), 0);
	struct shmring_stats st;
	assert_int_equal(shmring_stats(r, &st), 0);
	assert_true(st.writer_alive);
	assert_int_equal(st.writer_pid, w);
	shmring_close(r);
	kill(w, SIGTERM);
	assert_true(recv_within(fd, msg, sizeof(msg), 10000) > 0);
	assert_true(strncmp(msg, "STOPPING=1\n", 11) == 0);
	assert_int_equal(tu_writer_wait(t), 0);
	close(fd);
	unlink(sa.sun_path);
}

/* A write that fails part-way (file size limit, like a full disk) is retried from the
 * first byte not written: once room comes back, every record is there exactly once. */
static void test_partial_write_retry(void **state)
{
	struct tu_ring *t = *state;
	pid_t w = tu_writer_start_limited(t, 20000, RLIM_INFINITY); /* soft: raised later without privilege */
	assert_true(w > 0);
	shmring *r = t->r;
	const long N = 600; /* ~78 KB of lines against a 20000-byte limit */
	tu_send_range(r, 0, N);
	tu_sleep_ms(300);      /* the writer hits the limit mid-batch and retries */
	struct stat st;
	assert_int_equal(stat(t->out, &st), 0);
	assert_true(st.st_size <= 20000);
	struct rlimit big = { RLIM_INFINITY, RLIM_INFINITY }; /* room comes back */
	assert_int_equal(prlimit(w, RLIMIT_FSIZE, &big, NULL), 0);
	/* -EIO until the writer's next try (every second) finds the room. */
	uint64_t end = tu_now_ms() + 10000;
	int rc;
	while (((rc = shmring_flush(r)) == -EIO || rc == -ETIMEDOUT) && tu_now_ms() < end)
		tu_sleep_ms(10);
	assert_int_equal(rc, 0);
	char *seen = calloc((size_t)N, 1);
	long bytes;
	assert_int_equal(collect(t->out, seen, N, &bytes), N); /* each once, no partial line */
	free(seen);
}

/* After a record the writer polls for 50 ms (writer_sleeping stays 0: a sender makes no
 * system call), then blocks on its semaphore (writer_sleeping 1; the next sender posts). */
static void test_idle_poll_then_block(void **state)
{
	struct tu_ring *t = *state;
	shmring *r = tu_serve(t, NULL, NULL, NULL);
	_Atomic uint32_t *sleeping = &shm_ring_map(r)->hdr->writer_sleeping;
	for (int round = 0; round < 3; round++) {
		uint64_t t0 = shm_now_ns();
		tu_send_range(r, round, round + 1);
		assert_int_equal(tu_flush(r), 0); /* the writer consumed it before this returns */
		/* The writer consumed the record after t0, so it polls until at least t0 + 50 ms:
		 * every sample read before t0 + 40 ms must say awake. The time is taken after the
		 * load, so a test process descheduled in between asserts nothing it cannot know. */
		for (;;) {
			uint32_t s = atomic_load(sleeping);
			if (shm_now_ns() - t0 >= 40000000ull)
				break;
			assert_int_equal(s, 0);
			usleep(500);
		}
		int slept = 0;
		for (int i = 0; i < 2000 && !slept; i++) {
			slept = atomic_load(sleeping) == 1;
			usleep(1000);
		}
		assert_true(slept);
	}
	/* A send to the blocked writer wakes it: the record is written. */
	tu_send_range(r, 3, 4);
	assert_int_equal(tu_flush(r), 0);
	struct shmring_stats st;
	assert_int_equal(shmring_stats(r, &st), 0);
	assert_int_equal(st.written, 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TU_TEST(test_rotation),
		TU_TEST(test_sighup_reopen),
		cmocka_unit_test(test_stdout_and_fsync),
		TU_TEST_KILL(test_detach_pid_file),
		TU_TEST_KILL(test_pid_file_error_old_drops),
		TU_TEST_KILL(test_sd_notify),
		TU_TEST(test_partial_write_retry),
		TU_TEST(test_idle_poll_then_block),
		TU_TEST(test_seq),
		TU_TEST(test_reserve_released),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
