/* test_space: a full /dev/shm and objects that are not whole rings. Creating a ring that
 * does not fit fails with -ENOSPC and leaves nothing; a truncated, foreign or empty
 * object is -EPROTO for an opener and one line in `shmring ls`, never a crash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>

#include "testutil.h"

#ifndef SHMRING_CLI_PATH
#error "test_space is built with SHMRING_CLI_PATH"
#endif

static int shm_exists(const char *name)
{
	char p[300];
	snprintf(p, sizeof(p), "/dev/shm/shmring.%s", name);
	return access(p, F_OK) == 0;
}

/* Run the shmring command; its stdout (and stderr) into out, its exit status returned. */
static int run_cli(const char *args, char *out, size_t cap)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "'%s' %s 2>&1", SHMRING_CLI_PATH, args);
	FILE *f = popen(cmd, "r");
	if (!f)
		return -1;
	size_t n = fread(out, 1, cap - 1, f);
	out[n] = 0;
	int st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The line of `shmring ls` that names ring, or NULL. */
static const char *ls_line(const char *out, const char *name, char *line, size_t cap)
{
	for (const char *p = out; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		size_t n = strlen(name);
		if (!strncmp(p, name, n) && p[n] == ' ') {
			const char *e = strchr(p, '\n');
			size_t len = e ? (size_t)(e - p) : strlen(p);
			if (len >= cap)
				len = cap - 1;
			memcpy(line, p, len);
			line[len] = 0;
			return line;
		}
	}
	return NULL;
}

/* A shm object made by hand: size bytes, the first len of them from data. */
static void make_object(const char *name, size_t size, const void *data, size_t len)
{
	char shm[300];
	snprintf(shm, sizeof(shm), "/shmring.%s", name);
	int fd = shm_open(shm, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	if (len)
		assert_int_equal(pwrite(fd, data, len, 0), (ssize_t)len);
	close(fd);
}

/* Truncated, foreign and empty objects next to a good ring: openers get -EPROTO, the
 * good ring still works, ls shows one line each and exits 0, gc passes over them. */
static void test_not_rings(void **state)
{
	(void)state;
	struct tu_ring good, trunc, junk, empty, big;
	tu_ring_init(&good, "space-good");
	tu_ring_init(&trunc, "space-trunc");
	tu_ring_init(&junk, "space-junk");
	tu_ring_init(&empty, "space-empty");
	tu_ring_init(&big, "space-big");
	struct shmring_options o = { .capacity = 64, .slot_size = 64 };
	shmring *r;
	assert_int_equal(shmring_open(good.name, &o, &r), 0);
	char rec[1] = { (char)0xc0 };
	assert_int_equal(shmring_send(r, rec, 1), 0);

	/* A ring cut to half its size (its magic and header intact), and one grown. */
	char p[300];
	struct stat st;
	snprintf(p, sizeof(p), "/dev/shm/shmring.%s", good.name);
	assert_int_equal(stat(p, &st), 0);
	size_t total = (size_t)st.st_size;
	char *copy = malloc(total);
	int fd = open(p, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, copy, total, 0), (ssize_t)total);
	close(fd);
	make_object(trunc.name, total / 2, copy, total / 2);
	make_object(big.name, total + 4096, copy, total);
	/* Random bytes the size of a ring; an empty object. */
	srand((unsigned)getpid());
	for (size_t i = 0; i < total; i++)
		copy[i] = (char)rand();
	make_object(junk.name, total, copy, total);
	make_object(empty.name, 0, NULL, 0);
	free(copy);

	const char *bad[] = { trunc.name, junk.name, empty.name, big.name };
	for (int i = 0; i < 4; i++) {
		shmring *x = NULL;
		uint64_t t0 = tu_now_ms();
		assert_int_equal(shmring_attach(bad[i], &x), -EPROTO);
		assert_int_equal(shmring_open(bad[i], &o, &x), -EPROTO); /* never re-created */
		assert_null(x);
		/* Young objects may still be in a creator's hands: at most ~1 s of waiting. */
		assert_true(tu_now_ms() - t0 < 5000);
		assert_true(shm_exists(bad[i]));
	}
	/* The good ring is untouched by all this. */
	assert_int_equal(shmring_send(r, rec, 1), 0);
	struct shmring_stats s;
	assert_int_equal(shmring_stats(r, &s), 0);
	assert_int_equal(s.sent, 2);

	/* gc: not rings of ours, never removed; the good ring (attached) neither. */
	assert_true(shm_gc("test-space-*", 0, 0, NULL, NULL) >= 0);
	for (int i = 0; i < 4; i++)
		assert_true(shm_exists(bad[i]));
	assert_true(shm_exists(good.name));

	/* ls: exit 0, the good ring as a row, each bad one as a row saying why. */
	static char out[1 << 20];
	char line[1024];
	assert_int_equal(run_cli("ls", out, sizeof(out)), 0);
	assert_non_null(ls_line(out, good.name, line, sizeof(line)));
	assert_null(strstr(line, "(not"));
	for (int i = 0; i < 4; i++) {
		assert_non_null(ls_line(out, bad[i], line, sizeof(line)));
		assert_non_null(strstr(line, "(not a shmring ring"));
	}
	assert_int_equal(run_cli("ls --json", out, sizeof(out)), 0);
	/* stat of a bad one: an error for that ring (exit 1), in words, no crash. */
	char args[300];
	snprintf(args, sizeof(args), "stat %s", trunc.name);
	assert_int_equal(run_cli(args, out, sizeof(out)), 1);
	assert_non_null(strstr(out, "not a shmring ring"));
	snprintf(args, sizeof(args), "stat %s", good.name);
	assert_int_equal(run_cli(args, out, sizeof(out)), 0);
	/* gc of the whole host, as a dry run (other rings on this host are not ours). */
	assert_int_equal(run_cli("gc --dry-run", out, sizeof(out)), 0);

	shmring_close(r);
	tu_ring_cleanup(&good);
	tu_ring_cleanup(&trunc);
	tu_ring_cleanup(&junk);
	tu_ring_cleanup(&empty);
	tu_ring_cleanup(&big);
}

/* In a child with its own mount namespace and a 1 MiB tmpfs on /dev/shm. Exit codes:
 * 0 ok, 77 cannot set it up here (reason on stderr), other: the check that failed. */
#define CHECK(cond, code)                                                                   \
	do {                                                                                \
		if (!(cond)) {                                                              \
			fprintf(stderr, "full tmpfs: check %d failed: %s\n", code, #cond); \
			_exit(code);                                                        \
		}                                                                           \
	} while (0)

static int run_writer(const char *ring, const char *out)
{
	pid_t w = fork();
	if (w == 0) {
		if (!getenv("SHMRING_TEST_VERBOSE"))
			freopen("/dev/null", "w", stderr);
		execl(SHMRING_WRITER_PATH, SHMRING_WRITER_PATH, "--ring", ring, "--out", out,
		      "--capacity", "4096", "--slot-size", "1024", (char *)NULL);
		_exit(127);
	}
	int st;
	if (waitpid(w, &st, 0) != w)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void full_child(const char tag[48])
{
	if (unshare(CLONE_NEWNS) < 0) {
		fprintf(stderr, "full tmpfs: unshare(CLONE_NEWNS): %s\n", strerror(errno));
		_exit(77);
	}
	/* Private first: the tmpfs must never show up in the host's /dev/shm. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("none", "/dev/shm", "tmpfs", 0, "size=1m,mode=1777") < 0) {
		fprintf(stderr, "full tmpfs: mount: %s\n", strerror(errno));
		_exit(77);
	}
	char name[96], small[96], holed[96], out[160];
	snprintf(name, sizeof(name), "%s-big", tag);
	snprintf(small, sizeof(small), "%s-small", tag);
	snprintf(holed, sizeof(holed), "%s-holed", tag);
	snprintf(out, sizeof(out), "/tmp/shmring-%s/out.jsonl", tag);

	/* 1. A default ring (4 MiB) does not fit: -ENOSPC, and no object is left. */
	shmring *r = NULL;
	int rc = shmring_open(name, NULL, &r);
	CHECK(rc == -ENOSPC || rc == -ENOMEM, 1);
	CHECK(r == NULL && !shm_exists(name), 2);
	/* 2. The writer creating it: a clean error exit, no SIGBUS, nothing left. */
	CHECK(run_writer(name, out) == 1, 3);
	CHECK(!shm_exists(name), 4);
	/* 3. A small ring fits and works. */
	struct shmring_options o = { .capacity = 64, .slot_size = 64 };
	CHECK(shmring_open(small, &o, &r) == 0, 5);
	char rec[1] = { (char)0xc0 };
	CHECK(shmring_send(r, rec, 1) == 0, 6);
	/* 4. A ring with a hole (as ftruncate alone made them), then the tmpfs filled: a
	 * producer's open says -ENOSPC where its first store used to be SIGBUS. */
	shmring *h;
	CHECK(shmring_open(holed, &o, &h) == 0, 7);
	struct shm_map *hm = shm_ring_map(h);
	off_t doff = (off_t)hm->g.data_off, dsz = (off_t)hm->g.data_size;
	shmring_close(h);
	char p[300];
	snprintf(p, sizeof(p), "/dev/shm/shmring.%s", holed);
	int fd = open(p, O_RDWR);
	CHECK(fd >= 0, 8);
	CHECK(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, doff, dsz) == 0, 9);
	close(fd);
	fd = open("/dev/shm/filler", O_RDWR | O_CREAT, 0600);
	CHECK(fd >= 0, 10);
	static char blk[4096];
	while (write(fd, blk, sizeof(blk)) == (ssize_t)sizeof(blk))
		;
	close(fd);
	h = NULL;
	rc = shmring_attach(holed, &h);
	CHECK(rc == -ENOSPC || rc == -ENOMEM, 11);
	CHECK(h == NULL, 12);
	/* 5. The small ring's pages were had at creation: sends go on. */
	for (int i = 0; i < 100; i++) {
		rc = shmring_send(r, rec, 1);
		CHECK(rc == 0 || rc == -EAGAIN, 13); /* no writer: full after 64 */
	}
	/* 6. Even a tiny ring cannot be created now: -ENOSPC, nothing left. */
	char tiny[96];
	snprintf(tiny, sizeof(tiny), "%s-tiny", tag);
	shmring *t = NULL;
	rc = shmring_open(tiny, &o, &t);
	CHECK(rc == -ENOSPC || rc == -ENOMEM, 14);
	CHECK(!shm_exists(tiny), 15);
	/* 7. What a creator that died of SIGBUS in its first store used to leave: the full
	 * size, all of it a hole, no magic. -EPROTO (read with pread, never mapped). */
	char dead[96];
	snprintf(dead, sizeof(dead), "%s-dead", tag);
	snprintf(p, sizeof(p), "/dev/shm/shmring.%s", dead);
	fd = open(p, O_RDWR | O_CREAT | O_EXCL, 0600);
	CHECK(fd >= 0 && ftruncate(fd, 4 << 20) == 0, 20);
	close(fd);
	CHECK(shmring_attach(dead, &t) == -EPROTO, 21);
	/* 8. ls: a row for each, exit 0. */
	static char lsout[1 << 16];
	char line[1024];
	CHECK(run_cli("ls", lsout, sizeof(lsout)) == 0, 16);
	CHECK(ls_line(lsout, small, line, sizeof(line)) && !strstr(line, "(no"), 17);
	/* (ls maps read-only and reads only the header, whose pages exist: a plain row.) */
	CHECK(ls_line(lsout, holed, line, sizeof(line)), 18);
	CHECK(ls_line(lsout, dead, line, sizeof(line)) && strstr(line, "(not a shmring ring"), 22);
	CHECK(run_cli("gc --dry-run", lsout, sizeof(lsout)) == 0, 19);
	shmring_close(r);
	_exit(0);
}

static void test_full_tmpfs(void **state)
{
	(void)state;
	if (geteuid() != 0) {
		fprintf(stderr, "skipped: needs root (a tmpfs in a private mount namespace)\n");
		skip();
	}
	char tag[48];
	snprintf(tag, sizeof(tag), "test-full-%d", (int)getpid());
	pid_t c = fork();
	if (c == 0)
		full_child(tag);
	int st;
	assert_int_equal(waitpid(c, &st, 0), c);
	assert_true(WIFEXITED(st)); /* not a signal: no SIGBUS */
	if (WEXITSTATUS(st) == 77)
		skip();
	assert_int_equal(WEXITSTATUS(st), 0);
	/* Nothing of it reached the host's /dev/shm. */
	char n[96];
	snprintf(n, sizeof(n), "%s-small", tag);
	assert_false(shm_exists(n));
	char d[128];
	snprintf(d, sizeof(d), "/tmp/shmring-%s", tag);
	rmdir(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_not_rings),
		cmocka_unit_test(test_full_tmpfs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
