/*
 * os.c - the few operating-system services shmring builds on, each behind one small
 * function: the monotonic clock, futexes on shared words, OFD locks (the kernel drops
 * them when their process dies: that is how shmring tells who is alive), and making the
 * folders above an output path.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* Create the missing folders above path (0700: audit trails are private by default). */
int shm_mkdir_parents(const char *path)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	return 0;
}

uint64_t shm_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int shm_futex_wait(_Atomic uint32_t *addr, uint32_t val, uint64_t timeout_ns)
{
	struct timespec ts = shm_ns_to_ts(timeout_ns);
	if (syscall(SYS_futex, addr, FUTEX_WAIT, val, &ts, NULL, 0) < 0)
		return -errno;
	return 0;
}

void shm_futex_wake_all(_Atomic uint32_t *addr)
{
	syscall(SYS_futex, addr, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static int ofd_lock(int fd, int cmd, short type, off_t byte, struct flock *out)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1 };
	if (fcntl(fd, cmd, &fl) < 0)
		return -errno;
	if (out)
		*out = fl;
	return 0;
}

int shm_lock_try(int fd, off_t byte)
{
	int rc = ofd_lock(fd, F_OFD_SETLK, F_WRLCK, byte, NULL);
	return rc == -EACCES ? -EAGAIN : rc;
}

int shm_lock_held(int fd, off_t byte)
{
	struct flock fl = { .l_type = F_UNLCK };
	int rc = ofd_lock(fd, F_OFD_GETLK, F_WRLCK, byte, &fl);
	if (rc)
		return rc;
	return fl.l_type != F_UNLCK;
}

void shm_lock_drop(int fd, off_t byte)
{
	(void)ofd_lock(fd, F_OFD_SETLK, F_UNLCK, byte, NULL);
}
