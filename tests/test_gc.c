/* test_gc: leftovers of dead processes (flush semaphores, unused rings) are found and
 * removed, by the writer at start and by shm_gc (the `shmring gc` command), never those
 * of live processes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>

#include "internal.h"
#include "testutil.h"

/* Flush semaphores of ring `name` whose names carry the entry of pid's handle... we just
 * count them: which survive is told by who made them (entry numbers from the children). */
static int count_sems(const char *ring)
{
	char pre[160];
	snprintf(pre, sizeof(pre), "sem.shmring.%s.f.", ring);
	DIR *d = opendir("/dev/shm");
	struct dirent *de;
	int n = 0;
	while ((de = readdir(d)))
		n += strncmp(de->d_name, pre, strlen(pre)) == 0;
	closedir(d);
	return n;
}

static void test_writer_removes_dead_semaphores(void **state)
{
	struct tu_ring *t = *state;
	assert_true(tu_writer_start(t, NULL, NULL) > 0);
	int hold[2];
	assert_int_equal(pipe2(hold, O_CLOEXEC), 0);
	/* A: flushes, then dies without closing: its semaphore is left behind. */
	if (fork() == 0) {
		shmring *r;
		if (shmring_open(t->name, NULL, &r) || tu_flush(r))
			_exit(1);
		_exit(0);
	}
	assert_int_equal(tu_wait_children(1), 0);
	/* B: flushes and stays alive, holding its handle. */
	int ready[2];
	assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
	pid_t b = fork();
	if (b == 0) {
		close(hold[1]);
		shmring *r;
		if (shmring_open(t->name, NULL, &r) || tu_flush(r))
			_exit(1);
		char c = 1;
		if (write(ready[1], &c, 1) != 1)
			_exit(2);
		if (read(hold[0], &c, 1) < 0)
			_exit(3);
		int rc = tu_flush(r); /* its semaphore must still work */
		shmring_close(r);
		_exit(rc ? 4 : 0);
	}
	char c;
	assert_int_equal(read(ready[0], &c, 1), 1);
	assert_int_equal(count_sems(t->name), 2);
	/* A new writer cleans at start: A's semaphore goes, B's stays. */
	kill(t->writer, SIGKILL);
	waitpid(t->writer, NULL, 0);
	assert_true(tu_writer_start(t, NULL, NULL) > 0);
	assert_int_equal(count_sems(t->name), 1);
	close(hold[1]);
	assert_int_equal(tu_wait_children(1), 0);
	assert_int_equal(count_sems(t->name), 0); /* B closed: its own semaphore is gone */
}

static int exists(const char *name)
{
	char p[200];
	snprintf(p, sizeof(p), "/dev/shm/shmring.%s", name);
	return access(p, F_OK) == 0;
}

static void test_gc_rings(void **state)
{
	(void)state;
	struct tu_ring unused, busy, pending;
	tu_ring_init(&unused, "gcunused");
	tu_ring_init(&busy, "gcbusy");
	tu_ring_init(&pending, "gcpending");
	shmring *r;
	assert_int_equal(shmring_open(unused.name, NULL, &r), 0);
	shmring_close(r); /* nobody attached, nothing pending */
	shmring *rb;
	assert_int_equal(shmring_open(busy.name, NULL, &rb), 0); /* we stay attached */
	assert_int_equal(shmring_open(pending.name, NULL, &r), 0);
	char rec[1] = { (char)0xc0 };
	assert_int_equal(shmring_send(r, rec, 1), 0);
	shmring_close(r); /* nobody attached, but a record waits for a writer */
	assert_true(exists(unused.name) && exists(busy.name) && exists(pending.name));
	assert_int_equal(shm_gc("test-gc*", 1, 3600, NULL, NULL) >= 0, 1); /* young rings are left alone */
	assert_true(shm_gc("test-gc*", 1, 0, NULL, NULL) >= 1);     /* dry run removes nothing */
	assert_true(exists(unused.name));
	assert_true(shm_gc("test-gc*", 0, 0, NULL, NULL) >= 1);
	assert_false(exists(unused.name));
	assert_true(exists(busy.name));
	assert_true(exists(pending.name));
	shmring_close(rb);
	tu_ring_cleanup(&unused);
	tu_ring_cleanup(&busy);
	tu_ring_cleanup(&pending);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TU_TEST(test_writer_removes_dead_semaphores),
		cmocka_unit_test(test_gc_rings),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
