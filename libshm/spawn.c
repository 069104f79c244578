/*
 * spawn.c - starting a shmring-writer for a ring that no live writer serves, from a
 * library call in any process (the audit sink's autostart), without leaving the caller
 * a child to reap and without ever starting two.
 *
 * In one picture (every opener of the same file runs it):
 *
 *   shmring_open(audit-HASH)             our producer entry first: a writer exits idle
 *                                        only with none attached (one that decided
 *                                        just before is replaced by the next flush)
 *   writer lock held?  -> served         (kernel-held OFD lock: a live writer)
 *   take SPAWN lock (retry 1 ms, <= 2 s) serialises starters across processes
 *   writer lock held?  -> served         someone started one while we waited
 *   double fork: caller -> mid (setsid) -> writer; mid reports the pid and exits
 *   wait: writer lock held and writer_pid == pid   (the writer stores its pid after
 *                                                   taking the lock and the file)
 *   drop SPAWN lock
 *
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "spawn.h"
#include "shmring/audit.h"

#ifndef SHMRING_INSTALL_BINDIR
#define SHMRING_INSTALL_BINDIR "bin"
#endif

/* ---- writer liveness ------------------------------------------------------------------ */

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* 1: a live writer serves the ring into our file; 0: no live writer; -EEXIST: a live
 * writer serves it into another file; other <0: error. Liveness is the writer's OFD lock,
 * which the kernel drops when it dies. */
int shm_spawn_served(const struct shm_spawn *s, const struct shm_map *m)
{
	int held = shm_lock_held(m->fd, SHM_LOCK_WRITER);
	if (held <= 0)
		return held;
	char out[SHM_PATH_MAX];
	if (shm_path_read(m->hdr, out) == 0 && out[0] && strcmp(out, s->path) != 0)
		return -EEXIST;
	return 1;
}

/* Whether pid is a running process (not gone, not a zombie nobody reaped yet). */
static bool proc_running(pid_t pid)
{
	char p[64], buf[512];
	snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return kill(pid, 0) == 0 || errno == EPERM;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	const char *rp = strrchr(buf, ')');
	return rp && rp[1] == ' ' && rp[2] != 'Z' && rp[2] != 'X' && rp[2] != 'x';
}

/* ---- starting the writer -------------------------------------------------------------- */

static bool executable(const char *p)
{
	struct stat st;
	return p[0] && access(p, X_OK) == 0 && stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* SHMRING_WRITER, else next to the library (<dir>/../bin, <dir>). No build tree is
 * compiled in: an installed library must never start a developer's writer (the tests
 * and tools of the build tree set SHMRING_WRITER). The result is absolute: the writer
 * runs in "/". */
static int find_writer(const struct shm_spawn *s, char out[PATH_MAX])
{
	char cand[PATH_MAX];
	if (s->writer_env[0])
		return realpath(s->writer_env, out) ? 0 : -errno;
	Dl_info di;
	if (dladdr((void *)shm_spawn_ensure, &di) && di.dli_fname && strchr(di.dli_fname, '/')) {
		const char *slash = strrchr(di.dli_fname, '/');
		int dl = (int)(slash - di.dli_fname);
		/* An absolute bindir (CMAKE_INSTALL_BINDIR=/usr/bin) is taken as it is. */
		const char *fmt[] = { SHMRING_INSTALL_BINDIR[0] == '/'
					      ? "%.0s" SHMRING_INSTALL_BINDIR "/shmring-writer"
					      : "%.*s/../" SHMRING_INSTALL_BINDIR "/shmring-writer",
				      "%.*s/shmring-writer" };
		for (int i = 0; i < 2; i++) {
			if (snprintf(cand, sizeof(cand), fmt[i], dl, di.dli_fname) < (int)sizeof(cand) &&
			    executable(cand) && realpath(cand, out))
				return 0;
		}
	}
	return -ENOENT;
}

static int read_full(int fd, void *buf, size_t n, int timeout_ms)
{
	size_t got = 0;
	while (got < n) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int k = poll(&p, 1, timeout_ms);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		ssize_t r = read(fd, (char *)buf + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return 0;
}

/* The writer process, between _Fork and exec: async-signal-safe calls only. */
static void __attribute__((noreturn)) exec_writer(const char *exe, char *const argv[],
						  const char *log, int err_fd)
{
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (chdir("/") < 0) { /* not keeping the caller's folder busy; harmless if it fails */
	}
	int nul = open("/dev/null", O_RDWR);
	int efd = log ? open(log, O_WRONLY | O_APPEND | O_CREAT, 0600) : -1;
	if (nul >= 0) {
		dup2(nul, 0);
		dup2(nul, 1);
	}
	dup2(efd >= 0 ? efd : nul, 2);
	if (nul > 2)
		close(nul);
	if (efd > 2)
		close(efd);
#ifdef CLOSE_RANGE_CLOEXEC
	/* The caller's descriptors must not live on in a daemon; err_fd still reports a
	 * failed exec and closes on a good one. */
	close_range(3, ~0u, CLOSE_RANGE_CLOEXEC);
#endif
	execve(exe, argv, environ);
	int e = errno;
	ssize_t k = write(err_fd, &e, sizeof(e));
	(void)k;
	_exit(127);
}

/* The intermediate child: a new session, the writer forked from it, {pid, errno} reported
 * to the caller, then exit. Async-signal-safe calls only. */
static void __attribute__((noreturn)) spawn_mid(const char *exe, char *const argv[], const char *log,
						const int rep[2], const int ex[2])
{
	int32_t msg[2] = { 0, 0 };
	close(rep[0]);
	setsid();
	pid_t w = _Fork();
	if (w == 0) {
		close(ex[0]);
		exec_writer(exe, argv, log, ex[1]);
	}
	close(ex[1]);
	if (w < 0) {
		msg[1] = errno;
	} else {
		/* EOF: the exec happened (the pipe is CLOEXEC); 4 bytes: its errno. */
		int e;
		msg[0] = (int32_t)w;
		if (read_full(ex[0], &e, sizeof(e), SHMRING_AUDIT_START_TIMEOUT_MS) == 0)
			msg[1] = e;
	}
	ssize_t k = write(rep[1], msg, sizeof(msg));
	(void)k;
	_exit(0);
}

/*
 * Start "shmring-writer --ring NAME --out PATH --exit-when-idle N" detached: the caller
 * forks an intermediate child that calls setsid() and forks the writer; it learns from a
 * CLOEXEC pipe whether exec worked, reports {pid, errno} and exits, and the caller reaps
 * it at once, so the writer is never the caller's child. _Fork (no atfork handlers) and
 * only async-signal-safe calls after it: the caller may have other threads. argv is built
 * before forking.
 */
static int spawn_writer(const struct shm_spawn *s, pid_t *out)
{
	char exe[PATH_MAX];
	int rc = find_writer(s, exe);
	if (rc)
		return rc;
	char *const argv[] = { exe, "--ring", (char *)s->ring, "--out", (char *)s->path,
			       "--exit-when-idle", (char *)s->idle, NULL };
	const char *log = s->log_env[0] ? s->log_env : NULL;
	int rep[2] = { -1, -1 }, ex[2] = { -1, -1 };
	int32_t msg[2];
	if (pipe2(rep, O_CLOEXEC) < 0 || pipe2(ex, O_CLOEXEC) < 0) {
		rc = -errno;
		goto fail;
	}
	pid_t mid = _Fork();
	if (mid < 0) {
		rc = -errno;
		goto fail;
	}
	if (mid == 0)
		spawn_mid(exe, argv, log, rep, ex);
	close(rep[1]);
	close(ex[0]);
	close(ex[1]);
	rep[1] = ex[0] = ex[1] = -1;
	int got = read_full(rep[0], msg, sizeof(msg), SHMRING_AUDIT_START_TIMEOUT_MS);
	if (got < 0)
		kill(mid, SIGKILL); /* never seen in practice: do not wait on it forever */
	while (waitpid(mid, NULL, 0) < 0 && errno == EINTR)
		;
	if (got < 0)
		rc = -ECHILD;
	else if (msg[1])
		rc = -msg[1];   /* fork or exec failed; the child has already exited */
	else
		*out = (pid_t)msg[0];
fail:
	for (int i = 0; i < 2; i++) {
		if (rep[i] >= 0)
			close(rep[i]);
		if (ex[i] >= 0)
			close(ex[i]);
	}
	return rc;
}

/* Wait until the writer we started serves: it holds the writer lock and has stored its
 * pid (after taking the lock and opening the file). */
static int start_and_wait(const struct shm_spawn *s, const struct shm_map *m,
			  uint64_t deadline)
{
	pid_t pid = 0;
	int rc = spawn_writer(s, &pid);
	if (rc)
		return rc;
	shm_log(SHMRING_LOG_INFO, "ring %s: started shmring-writer pid %d on ring %s", s->ring,
		(int)pid, s->ring);
	for (;;) {
		int held = shm_lock_held(m->fd, SHM_LOCK_WRITER);
		/* Relaxed: only compared with a pid; the lock (a syscall) is the liveness. */
		int32_t wp = atomic_load_explicit(&m->hdr->writer_pid, memory_order_relaxed);
		if (held == 1 && wp == pid)
			return shm_spawn_served(s, m);
		if (held < 0) {
			rc = held;
			break;
		}
		if (!proc_running(pid)) {
			/* It exited without serving: e.g. status 3, another writer took the lock
			 * (one started by hand). If someone serves, that is all we need. */
			rc = shm_spawn_served(s, m);
			return rc ? rc : -ECHILD;
		}
		if (shm_now_ns() >= deadline) {
			rc = -ETIMEDOUT;
			break;
		}
		sleep_ms(1);
	}
	/* Leave no writer behind: kill it and see it gone (the kernel drops its lock). */
	kill(pid, SIGKILL);
	for (int i = 0; i < 200 && proc_running(pid); i++)
		sleep_ms(1);
	return rc;
}

/* Make sure a live writer serves the ring into our file, starting one if there is none
 * and autostart is on. 0 served (or autostart off and none), <0 error. */
int shm_spawn_ensure(struct shm_spawn *s, struct shm_map *m)
{
	uint64_t deadline = shm_now_ns() + SHMRING_AUDIT_START_TIMEOUT_MS * 1000000ull;
	if (m->fd < 0)
		return -EBADF;
	int rc = shm_spawn_served(s, m);
	if (rc != 0 || !s->autostart)
		return rc < 0 ? rc : 0;
	/* One starter at a time, across processes: an OFD lock, so threads of this process
	 * are kept apart by s->starting (same descriptor, no conflict between them), a lock
	 * word whose acquire CAS pairs with the release store at out:. */
	pid_t self = getpid();
	for (;;) {
		pid_t cur = atomic_load_explicit(&s->starting, memory_order_relaxed);
		/* A value of another pid was inherited through fork(): nobody here holds it. */
		if (cur != self &&
		    atomic_compare_exchange_weak_explicit(&s->starting, &cur, self,
							  memory_order_acquire, memory_order_relaxed))
			break;
		if (shm_now_ns() >= deadline)
			return -ETIMEDOUT;
		sleep_ms(1);
	}
	while ((rc = shm_lock_try(m->fd, SHM_LOCK_SPAWN)) == -EAGAIN) {
		/* Another process is starting one: its writer may already serve. */
		if ((rc = shm_spawn_served(s, m)) != 0)
			goto out;
		if (shm_now_ns() >= deadline) {
			rc = -ETIMEDOUT;
			goto out;
		}
		sleep_ms(1);
	}
	if (rc)
		goto out;
	/* Re-check under the lock: a starter before us may have finished. */
	rc = shm_spawn_served(s, m);
	if (rc == 0)
		rc = start_and_wait(s, m, deadline);
	shm_lock_drop(m->fd, SHM_LOCK_SPAWN);
out:
	atomic_store_explicit(&s->starting, 0, memory_order_release);
	return rc < 0 ? rc : 0;
}
