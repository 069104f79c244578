/* test_writer_fail: the writer's output fails (ENOSPC on a small tmpfs, EFBIG past
 * RLIMIT_FSIZE, open ENOTDIR) or is removed, replaced, or rotated when the writer is
 * killed: the failure shows in stats, shmring stat and flush; SIGTERM ends the writer
 * within 2 s; nothing acknowledged is lost or written twice. The tmpfs tests need root
 * (mount); without it the others run and the program exits 77 saying why. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/mount.h>
#include <sys/resource.h>

#include "testutil.h"

#define N_SMALL 1000L /* ~130 KB of lines against ~40 KB of room */

static char g_no_tmpfs[256]; /* why the tmpfs tests cannot run, or "" */

/* Flush until confirmed (a failing output makes it -EIO until the disk recovers). */
static int flush_within(shmring *r, unsigned ms)
{
	uint64_t end = tu_now_ms() + ms;
	int rc;
	while (((rc = shmring_flush(r)) == -ETIMEDOUT || rc == -EIO) && tu_now_ms() < end)
		tu_sleep_ms(10);
	return rc;
}

/* The "i" of every line of path, in file order, into is[] (at most max); every line
 * must be whole JSON. Returns the count (0 for a missing file). */
static long read_is(const char *path, long *is, long max)
{
	long bad;
	json_t *arr = tu_read_jsonl(path, &bad);
	if (!arr)
		fail_msg("%s: line %ld is partial or not JSON", path, bad);
	size_t k;
	json_t *v;
	long n = 0;
	json_array_foreach(arr, k, v) {
		assert_true(n < max);
		is[n++] = (long)json_integer_value(json_object_get(v, "i"));
	}
	json_decref(arr);
	return n;
}

/* path holds exactly records from..to-1, in order. */
static void assert_file_is(const char *path, long from, long to)
{
	long *is = calloc((size_t)(to - from) + 16, sizeof(long));
	long n = read_is(path, is, to - from + 16);
	if (n != to - from)
		fail_msg("%s: %ld lines, expected %ld (%ld..%ld)", path, n, to - from, from, to - 1);
	for (long k = 0; k < n; k++)
		if (is[k] != from + k)
			fail_msg("%s: line %ld is record %ld, expected %ld", path, k, is[k], from + k);
	free(is);
}

static struct shmring_stats stats_of(shmring *r)
{
	struct shmring_stats st;
	assert_int_equal(shmring_stats(r, &st), 0);
	return st;
}

/* The end of a recovery: no writer error, `written` records written (-1: not checked),
 * none pending, the counters balance. */
static void assert_recovered(shmring *r, long written)
{
	struct shmring_stats st = stats_of(r);
	assert_int_equal(st.writer_errno, 0);
	if (written >= 0)
		assert_int_equal(st.written, written);
	assert_int_equal(st.pending, 0);
	TU_ASSERT_SETTLED(st);
}

/* Wait (up to 5 s) until the writer reports err; returns the stats then. */
static struct shmring_stats wait_writer_errno(shmring *r, int err)
{
	struct shmring_stats st;
	for (int i = 0; i < 500; i++) {
		st = stats_of(r);
		if (st.writer_errno == err)
			return st;
		tu_sleep_ms(10);
	}
	fail_msg("the writer never reported %s (errno %d, op %u)", strerror(err), st.writer_errno,
		 st.writer_error_op);
	return st;
}

/* The expected text: "write <realpath of out>: <strerror>". */
static void assert_error_text(shmring *r, const char *out, const char *op, int err)
{
	char real[PATH_MAX], want[PATH_MAX + 128], got[PATH_MAX + 128];
	assert_non_null(realpath(out, real));
	snprintf(want, sizeof(want), "%s %s: %s", op, real, strerror(err));
	int n = shmring_writer_error(r, got, sizeof(got));
	assert_int_equal(n, (int)strlen(want));
	assert_string_equal(got, want);
	char tiny[8];
	assert_int_equal(shmring_writer_error(r, tiny, sizeof(tiny)), 7); /* truncated, terminated */
	assert_int_equal(strncmp(tiny, want, 7), 0);
}

/* SIGTERM a writer whose output fails: gone within 2 s, exit status 1. */
static void assert_term_fast(struct tu_ring *t)
{
	uint64_t t0 = tu_now_ms();
	kill(t->writer, SIGTERM);
	int st;
	assert_int_equal(waitpid(t->writer, &st, 0), t->writer);
	uint64_t dt = tu_now_ms() - t0;
	t->writer = 0;
	if (getenv("SHMRING_TEST_VERBOSE"))
		printf("the failing writer stopped in %llu ms\n", (unsigned long long)dt);
	if (dt > 2000)
		fail_msg("the failing writer took %llu ms to stop", (unsigned long long)dt);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 1);
}

#ifdef SHMRING_CLI_PATH
/* Run the shmring program; its stdout into out. Returns its exit status. */
static int run_cli(char *out, size_t len, const char *a1, const char *a2, const char *a3)
{
	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(p[1], STDOUT_FILENO);
		freopen("/dev/null", "w", stderr);
		execl(SHMRING_CLI_PATH, SHMRING_CLI_PATH, a1, a2, a3, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	size_t n = 0;
	ssize_t k;
	while (n + 1 < len && (k = read(p[0], out + n, len - 1 - n)) > 0)
		n += (size_t)k;
	out[n] = 0;
	close(p[0]);
	int st;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* shmring stat --json, stat and flush tell the failure. */
static void assert_cli_reports(const char *name, const char *text)
{
	static char buf[65536];
	assert_int_equal(run_cli(buf, sizeof(buf), "stat", name, "--json"), 0);
	json_error_t e;
	json_t *o = json_loads(buf, 0, &e);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "writer_error")), text);
	const char *since = json_string_value(json_object_get(o, "writer_error_since"));
	assert_non_null(since);
	assert_int_equal(strlen(since), strlen("2026-12-04T16:40:00.123456Z"));
	assert_int_equal(since[strlen(since) - 1], 'Z');
	json_decref(o);
	assert_int_equal(run_cli(buf, sizeof(buf), "stat", name, NULL), 0);
	char line[PATH_MAX + 256];
	snprintf(line, sizeof(line), "writer_error      %s (since %s", text, "");
	assert_non_null(strstr(buf, line));
	assert_int_equal(run_cli(buf, sizeof(buf), "flush", name, NULL), 5);
}

static void assert_cli_clear(const char *name)
{
	static char buf[65536];
	assert_int_equal(run_cli(buf, sizeof(buf), "stat", name, "--json"), 0);
	json_error_t e;
	json_t *o = json_loads(buf, 0, &e);
	assert_non_null(o);
	assert_true(json_is_null(json_object_get(o, "writer_error")));
	assert_true(json_is_null(json_object_get(o, "writer_error_since")));
	json_decref(o);
}
#else
static void assert_cli_reports(const char *name, const char *text) { (void)name, (void)text; }
static void assert_cli_clear(const char *name) { (void)name; }
#endif

/* ---- a small tmpfs ------------------------------------------------------------------ */

struct small_fs {
	char dir[64];
	char filler[96];
};

/* Mounts a failed assertion would leave behind: detached at exit. */
static char g_mounts[8][64];
static int g_nmounts;
static void umount_all(void)
{
	for (int i = 0; i < g_nmounts; i++)
		if (umount2(g_mounts[i], MNT_DETACH) == 0)
			rmdir(g_mounts[i]);
}

/* Mount a 256 KiB tmpfs and fill all but `room` bytes of it with a filler file. */
static void fs_mount(struct small_fs *fs, struct tu_ring *t, size_t room)
{
	snprintf(fs->dir, sizeof(fs->dir), "/tmp/shmring-fail-XXXXXX");
	assert_non_null(mkdtemp(fs->dir));
	assert_int_equal(mount("none", fs->dir, "tmpfs", 0, "size=256k,mode=0700"), 0);
	if (g_nmounts == 0)
		atexit(umount_all);
	if (g_nmounts < 8)
		snprintf(g_mounts[g_nmounts++], sizeof(g_mounts[0]), "%s", fs->dir);
	snprintf(t->dir, sizeof(t->dir), "%s", fs->dir);
	snprintf(t->out, sizeof(t->out), "%s/out.jsonl", fs->dir);
	snprintf(fs->filler, sizeof(fs->filler), "%s/filler", fs->dir);
	if (room) {
		int fd = open(fs->filler, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
		assert_true(fd >= 0);
		static char page[4096];
		memset(page, 'x', sizeof(page));
		for (size_t n = 0; n + room < 256 * 1024; n += sizeof(page))
			assert_int_equal(write(fd, page, sizeof(page)), (ssize_t)sizeof(page));
		close(fd);
	}
}

/* A writer on t whose output is on a small tmpfs with `room` bytes left (fs_mount);
 * skipped where no tmpfs can be mounted. The test's teardown is teardown_fs. */
static shmring *serve_on_small_fs(struct tu_ring *t, struct small_fs *fs, size_t room)
{
	if (g_no_tmpfs[0])
		skip();
	fs_mount(fs, t, room);
	return tu_serve(t, NULL, NULL, NULL);
}

/* Teardown of the tests on a small tmpfs: the writer stopped (exit 0), then the tmpfs
 * (t->dir, fs_mount) unmounted, then the ring removed. */
static int teardown_fs(void **state)
{
	struct tu_ring *t = *state;
	int rc = tu_end(t, 1);
	umount2(t->dir, MNT_DETACH);
	return tu_teardown_kill(state) ? -1 : rc;
}

/* Disk full: seen in stats, text, CLI and flush (-EIO); SIGTERM stops the writer within
 * 2 s, exit 1, with no partial line; a new writer, once space is freed, writes what was
 * left exactly once, in order, and the counters balance. */
static void test_enospc_stop_then_new_writer(void **state)
{
	struct tu_ring *t = *state;
	struct small_fs fs;
	shmring *r = serve_on_small_fs(t, &fs, 40 * 1024);
	tu_send_range(r, 0, 100); /* a first batch that fits: the failing one starts past 0 */
	assert_int_equal(tu_flush(r), 0);
	tu_send_range(r, 100, N_SMALL);
	struct shmring_stats st = wait_writer_errno(r, ENOSPC);
	assert_int_equal(st.writer_error_op, SHMRING_WOP_WRITE);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	uint64_t now_ns = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
	assert_true(st.writer_error_since_ns <= now_ns && now_ns - st.writer_error_since_ns < 30000000000ull);
	assert_true(st.writer_alive);
	assert_true(st.pending > 0);
	assert_error_text(r, t->out, "write", ENOSPC);
	char text[PATH_MAX + 128];
	shmring_writer_error(r, text, sizeof(text));
	assert_cli_reports(t->name, text);
	assert_int_equal(shmring_flush(r), -EIO);

	assert_term_fast(t);
	long *is = calloc(N_SMALL, sizeof(long));
	long before = read_is(t->out, is, N_SMALL); /* whole lines only: the partial batch was cut */
	assert_true(before >= 100 && before < N_SMALL);
	free(is);
	assert_file_is(t->out, 0, before);
	st = stats_of(r);
	assert_false(st.writer_alive);
	assert_int_equal(st.writer_errno, ENOSPC); /* the stopped writer's reason stays visible */

	assert_int_equal(unlink(fs.filler), 0); /* space comes back */
	assert_true(tu_writer_start(t, NULL, NULL) > 0);
	assert_int_equal(flush_within(r, 10000), 0);
	assert_file_is(t->out, 0, N_SMALL);
	st = stats_of(r);
	assert_int_equal(st.writer_errno, 0);
	assert_int_equal(st.writer_error_op, 0);
	assert_int_equal(st.writer_error_since_ns, 0);
	assert_int_equal(shmring_writer_error(r, text, sizeof(text)), 0);
	assert_string_equal(text, "");
	assert_cli_clear(t->name);
	assert_int_equal(st.pending, 0);
	assert_int_equal(st.written, N_SMALL);
	TU_ASSERT_SETTLED(st);
}

/* Disk full, then space freed while the same writer keeps retrying: it resumes by itself
 * from the first byte not written, nothing lost or doubled, the error cleared. */
static void test_enospc_recovers_in_place(void **state)
{
	struct tu_ring *t = *state;
	struct small_fs fs;
	shmring *r = serve_on_small_fs(t, &fs, 40 * 1024);
	tu_send_range(r, 0, N_SMALL);
	wait_writer_errno(r, ENOSPC);
	assert_int_equal(shmring_flush(r), -EIO);
	assert_int_equal(unlink(fs.filler), 0);
	assert_int_equal(flush_within(r, 5000), 0); /* retried within a second */
	tu_send_range(r, N_SMALL, N_SMALL + 100);
	assert_int_equal(flush_within(r, 5000), 0);
	assert_file_is(t->out, 0, N_SMALL + 100);
	assert_recovered(r, N_SMALL + 100);
}

/* The operator frees space by removing the output file: the writer sees PATH gone, opens
 * it anew and writes its whole failed batch there (the part in the removed file went
 * with it): the new file holds a contiguous tail of the records, each once, no partial
 * line. */
static void test_enospc_output_removed(void **state)
{
	struct tu_ring *t = *state;
	struct small_fs fs;
	shmring *r = serve_on_small_fs(t, &fs, 0); /* the output itself fills the disk */
	/* Batches of 100 (~13 KB) until one fails: 256 KiB hold ~2000 records. */
	long N = 0;
	int rc = 0;
	while (N < 4000 && rc != -EIO) {
		tu_send_range(r, N, N + 100);
		N += 100;
		rc = tu_flush(r);
		assert_true(rc == 0 || rc == -EIO);
	}
	assert_int_equal(rc, -EIO);
	wait_writer_errno(r, ENOSPC);
	assert_int_equal(unlink(t->out), 0);
	assert_int_equal(flush_within(r, 5000), 0);
	long *is = calloc((size_t)N, sizeof(long));
	long n = read_is(t->out, is, N);
	assert_true(n > 0 && n < N);
	long first = is[0];
	free(is);
	assert_true(first > 0);
	assert_file_is(t->out, first, N);
	assert_recovered(r, N); /* the removed file's lines were written, then removed */
}

/* File size limit (RLIMIT_FSIZE, SIGXFSZ ignored): EFBIG shown, flush -EIO, SIGTERM
 * within 2 s, exit 1, the file cut back to whole lines; the next writer without the limit
 * writes the rest exactly once. */
static void test_efbig_stop_then_new_writer(void **state)
{
	struct tu_ring *t = *state;
	pid_t w = tu_writer_start_limited(t, 20000, 20000);
	assert_true(w > 0);
	shmring *r = t->r;
	tu_send_range(r, 0, 100);
	assert_int_equal(tu_flush(r), 0);
	tu_send_range(r, 100, N_SMALL);
	struct shmring_stats st = wait_writer_errno(r, EFBIG);
	assert_int_equal(st.writer_error_op, SHMRING_WOP_WRITE);
	assert_error_text(r, t->out, "write", EFBIG);
	assert_int_equal(shmring_flush(r), -EIO);
	assert_term_fast(t);
	struct stat sb;
	assert_int_equal(stat(t->out, &sb), 0);
	assert_true(sb.st_size > 0 && sb.st_size < 20000); /* the partial batch was cut off */
	long *is = calloc(N_SMALL, sizeof(long));
	long before = read_is(t->out, is, N_SMALL);
	free(is);
	assert_true(before >= 100 && before < N_SMALL);
	assert_file_is(t->out, 0, before);
	assert_true(tu_writer_start(t, NULL, NULL) > 0);
	assert_int_equal(flush_within(r, 10000), 0);
	assert_file_is(t->out, 0, N_SMALL);
	assert_recovered(r, -1);
}

/* The output removed, then replaced (renamed away, another file put at PATH), without a
 * SIGHUP: each is noticed before the next batch; no record goes to the removed file. */
static void test_output_removed_or_replaced(void **state)
{
	struct tu_ring *t = *state;
	shmring *r = tu_serve(t, NULL, NULL, NULL);
	tu_send_range(r, 0, 100);
	assert_int_equal(tu_flush(r), 0);
	assert_int_equal(unlink(t->out), 0);
	tu_send_range(r, 100, 200);
	assert_int_equal(tu_flush(r), 0);
	assert_file_is(t->out, 100, 200); /* recreated; 100..199 none lost */
	char old[300];
	snprintf(old, sizeof(old), "%s.old", t->out);
	assert_int_equal(rename(t->out, old), 0);
	int fd = open(t->out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600); /* the replacement */
	assert_true(fd >= 0);
	close(fd);
	tu_send_range(r, 200, 300);
	assert_int_equal(tu_flush(r), 0);
	assert_file_is(old, 100, 200);
	assert_file_is(t->out, 200, 300);
	assert_recovered(r, 300);
	unlink(old);
}

/* PATH cannot be opened (its folder replaced by a file): at start the writer exits 1 and
 * leaves "open PATH: Not a directory" for stat; while serving, the removed output cannot
 * be created again: the error is shown, flush says -EIO, and once the folder is back the
 * records reach the new file, none lost. */
static void test_open_fails(void **state)
{
	struct tu_ring *t = *state;
	assert_int_equal(shmring_open(t->name, NULL, &t->r), 0);
	shmring *r = t->r;
	int fd = open(t->dir, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600); /* a file, not a folder */
	assert_true(fd >= 0);
	close(fd);
	int st = tu_writer_run(t, NULL);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 1);
	struct shmring_stats s = stats_of(r);
	assert_false(s.writer_alive);
	assert_int_equal(s.writer_error_op, SHMRING_WOP_OPEN);
	assert_int_equal(s.writer_errno, ENOTDIR);
	char want[PATH_MAX + 128], got[PATH_MAX + 128];
	snprintf(want, sizeof(want), "open %s: %s", t->out, strerror(ENOTDIR));
	assert_int_equal(shmring_writer_error(r, got, sizeof(got)), (int)strlen(want));
	assert_string_equal(got, want);
	assert_int_equal(unlink(t->dir), 0);

	assert_true(tu_writer_start(t, NULL, NULL) > 0);
	s = stats_of(r);
	assert_int_equal(s.writer_errno, 0); /* a new writer starts clean */
	tu_send_range(r, 0, 100);
	assert_int_equal(tu_flush(r), 0);
	assert_int_equal(unlink(t->out), 0);
	assert_int_equal(rmdir(t->dir), 0);
	fd = open(t->dir, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	tu_send_range(r, 100, 200);
	wait_writer_errno(r, ENOTDIR);
	assert_int_equal(stats_of(r).writer_error_op, SHMRING_WOP_OPEN);
	assert_int_equal(shmring_flush(r), -EIO);
	assert_int_equal(unlink(t->dir), 0); /* the writer makes the folder again */
	assert_int_equal(flush_within(r, 5000), 0);
	assert_file_is(t->out, 100, 200);
	assert_recovered(r, 200);
}

/* A rotation killed between its renames and the reopen (SHMRING_WRITER_CRASH=1:5): PATH
 * is missing, nothing was in flight; the next writer creates PATH and every record is in
 * PATH or PATH.k exactly once, in order across the files. */
static void test_rotation_killed(void **state)
{
	struct tu_ring *t = *state;
	static const char *args[] = { "--max-bytes", "20000", "--keep", "50", NULL };
	setenv("SHMRING_WRITER_CRASH", "1:5", 1);
	assert_true(tu_writer_start_with(t, NULL, NULL, args) > 0);
	unsetenv("SHMRING_WRITER_CRASH");
	assert_int_equal(shmring_attach(t->name, &t->r), 0);
	shmring *r = t->r;
	long i = 0;
	int st = 0;
	pid_t dead = 0;
	while (i < 5000 && dead == 0) {
		tu_send_range(r, i, i + 50);
		i += 50;
		int rc = tu_flush(r);
		assert_true(rc == 0 || rc == -ENOTCONN);
		dead = waitpid(t->writer, &st, WNOHANG);
	}
	if (!dead)
		fail_msg("the writer never reached the crash point");
	assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	t->writer = 0;
	assert_int_equal(access(t->out, F_OK), -1); /* renamed away, not yet reopened */
	assert_true(tu_writer_start_with(t, NULL, NULL, args) > 0);
	tu_send_range(r, i, i + 200);
	i += 200;
	assert_int_equal(tu_flush(r), 0);
	/* Oldest first: PATH.k .. PATH.1, then PATH. */
	long *is = calloc((size_t)i + 16, sizeof(long));
	long n = 0;
	char p[300];
	int k = 50;
	for (; k >= 1; k--) {
		snprintf(p, sizeof(p), "%s.%d", t->out, k);
		if (access(p, F_OK) == 0)
			break;
	}
	assert_true(k >= 2);
	for (; k >= 0; k--) {
		if (k)
			snprintf(p, sizeof(p), "%s.%d", t->out, k);
		else
			snprintf(p, sizeof(p), "%s", t->out);
		n += read_is(p, is + n, i + 16 - n);
		unlink(p);
	}
	assert_int_equal(n, i);
	for (long j = 0; j < n; j++)
		if (is[j] != j)
			fail_msg("line %ld across the files is record %ld", j, is[j]);
	free(is);
	struct shmring_stats s = stats_of(r);
	TU_ASSERT_SETTLED(s);
	assert_int_equal(s.pending, 0);
}

/* Whether a small tmpfs can be mounted here; the reason in g_no_tmpfs if not. */
static void probe_tmpfs(void)
{
	if (geteuid() != 0) {
		snprintf(g_no_tmpfs, sizeof(g_no_tmpfs), "not root: cannot mount a small tmpfs");
		return;
	}
	char dir[] = "/tmp/shmring-probe-XXXXXX";
	if (!mkdtemp(dir)) {
		snprintf(g_no_tmpfs, sizeof(g_no_tmpfs), "mkdtemp: %s", strerror(errno));
		return;
	}
	if (mount("none", dir, "tmpfs", 0, "size=256k") < 0)
		snprintf(g_no_tmpfs, sizeof(g_no_tmpfs), "mount -t tmpfs refused: %s", strerror(errno));
	else
		umount2(dir, MNT_DETACH);
	rmdir(dir);
}

int main(void)
{
	probe_tmpfs();
	const struct CMUnitTest tests[] = {
		TU_TEST_WITH(test_enospc_stop_then_new_writer, teardown_fs),
		TU_TEST_WITH(test_enospc_recovers_in_place, teardown_fs),
		TU_TEST_WITH(test_enospc_output_removed, teardown_fs),
		TU_TEST(test_efbig_stop_then_new_writer),
		TU_TEST(test_output_removed_or_replaced),
		TU_TEST(test_open_fails),
		TU_TEST(test_rotation_killed),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	if (rc == 0 && g_no_tmpfs[0]) {
		printf("SKIP: the full-disk tests did not run: %s\n", g_no_tmpfs);
		return 77;
	}
	return rc;
}
