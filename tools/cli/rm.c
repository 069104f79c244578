/*
 * rm.c - `shmring rm`: unlink a ring and its leftover flush semaphores; a ring a live
 * writer serves only with --force, which stops that writer first.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <semaphore.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cli.h"

void usage_rm(FILE *f)
{
	fprintf(f,
		"usage: shmring rm NAME [--force]\n"
		"Unlink ring NAME (/dev/shm/shmring.NAME) and its leftover flush semaphores\n"
		"(/dev/shm/sem.shmring.NAME.f.*). Processes that have it mapped keep their mapping;\n"
		"new opens create a new ring.\n\n"
		"  -f, --force  remove it even while a writer serves it (refused otherwise): that\n"
		"               writer is sent SIGTERM (it writes what the ring holds, then exits)\n"
		"               and waited for up to 5 s, so that none serves a ring no one sees\n"
		"  -h, --help   this text\n\n"
		"Exit status: 0 removed (and its writer stopped), 1 error or refused.\n");
}

/* ---- rm ------------------------------------------------------------------------- */

/* Remove /dev/shm/sem.shmring.NAME.f.<digits and dots>: the flush semaphores of NAME's
 * producers (ring.c names them /shmring.NAME.f.ENTRY.GEN.SEQ). The tail must be digits
 * and dots so that ring "a" never takes the semaphores of ring "a.f.x". */
static int rm_semaphores(const char *name)
{
	char sp[SHM_NAME_MAX + 32], prefix[SHM_NAME_MAX + 40];
	shm_sem_prefix(sp, sizeof(sp), name);
	int plen = snprintf(prefix, sizeof(prefix), "sem.%s", sp + 1); /* glibc's file name */
	DIR *d = opendir(SHM_DIR);
	if (!d)
		return 0;
	int removed = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, prefix, (size_t)plen) || !e->d_name[plen])
			continue;
		if (strspn(e->d_name + plen, "0123456789.") != strlen(e->d_name + plen))
			continue;
		char sem[NAME_MAX + 2];
		snprintf(sem, sizeof(sem), "/%s", e->d_name + 4); /* without "sem." */
		if (sem_unlink(sem) == 0)
			removed++;
	}
	closedir(d);
	return removed;
}

/* How long rm --force waits for the writer it stopped to let go of the ring. */
#define RM_WAIT_S 5.0

/* SIGTERM the writer of ring name, pid as it published it: 0, or -errno after a message. */
static int rm_stop_writer(const char *name, int pid)
{
	char path[64], comm[64] = "";
	if (pid <= 0) {
		cli_ring_msg(name, "a live writer serves it but its pid is unknown; not removed");
		return -ESRCH;
	}
	snprintf(path, sizeof(path), "/proc/%d/comm", pid);
	FILE *f = fopen(path, "r");
	if (f) {
		if (!fgets(comm, sizeof(comm), f))
			comm[0] = 0;
		fclose(f);
	}
	comm[strcspn(comm, "\n")] = 0;
	if (strcmp(comm, "shmring-writer")) {
		cli_ring_msg(name, "its writer's pid %d is not a shmring-writer (%s); not removed", pid,
			     comm[0] ? comm : "gone");
		return -ESRCH;
	}
	if (kill(pid, SIGTERM) < 0) {
		int e = errno;
		cli_ring_msg(name, "cannot stop its writer (pid %d): %s; not removed", pid, strerror(e));
		return -e;
	}
	return 0;
}

int cmd_rm(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "force", no_argument, 0, 'f' }, { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
	};
	int force = 0, c;
	while ((c = getopt_long(argc, argv, "fh", lo, NULL)) != -1) {
		switch (c) {
		case 'f': force = 1; break;
		case 'h': usage_rm(stdout); return CLI_OK;
		default: usage_rm(stderr); return CLI_USAGE;
		}
	}
	if (optind != argc - 1) {
		usage_rm(stderr);
		return CLI_USAGE;
	}
	const char *arg = argv[optind];
	char shm[SHM_NAME_MAX + 16];
	int rc = shm_name_check(arg, shm);
	if (rc) {
		cli_ring_err(arg, rc);
		return CLI_ERR;
	}
	const char *name = shm + 1 + strlen(SHM_PREFIX); /* as given, without the leading '/' */
	/* Whether a writer serves it: its OFD lock, which GETLK sees through any descriptor
	 * of the object, even one that is not a ring of this layout. */
	int fd = shm_open(shm, O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0 && errno == ENOENT) {
		rm_semaphores(name);
		cli_ring_err(name, -ENOENT);
		return CLI_ERR;
	}
	if (fd < 0 && !force) {
		cli_ring_err(name, -errno);
		return CLI_ERR;
	}
	int pid = 0;
	if (fd >= 0 && shm_lock_held(fd, SHM_LOCK_WRITER) == 1) {
		struct shm_map m;
		if (shm_map_open(name, NULL, SHM_INSPECT, &m) == 0) {
			pid = atomic_load_explicit(&m.hdr->writer_pid, memory_order_relaxed);
			shm_map_close(&m);
		}
		if (!force) {
			if (pid > 0)
				cli_ring_msg(name, "a live writer (pid %d) serves it; stop it first or use --force", pid);
			else
				cli_ring_msg(name, "a live writer serves it; stop it first or use --force");
			close(fd);
			return CLI_ERR;
		}
		/* Removing the ring under a live writer would leave it serving a ring no one can
		 * open again: stop it. The lock says a writer lives; the pid is the one the
		 * serving writer published, and its name is checked, as pids are reused. */
		if ((rc = rm_stop_writer(name, pid))) {
			close(fd);
			return CLI_ERR;
		}
	}
	if (shm_unlink(shm) < 0) {
		rc = -errno;
		cli_ring_err(name, rc);
		if (fd >= 0)
			close(fd);
		return CLI_ERR;
	}
	rm_semaphores(name);
	rc = CLI_OK;
	if (pid > 0) {
		/* SIGTERM: it writes what is in the ring, then exits (and drops its lock). */
		double end = cli_mono_s() + RM_WAIT_S;
		while (shm_lock_held(fd, SHM_LOCK_WRITER) == 1 && cli_mono_s() < end)
			cli_sleep_s(0.01);
		if (shm_lock_held(fd, SHM_LOCK_WRITER) == 1) {
			cli_ring_msg(name, "removed, but its writer (pid %d) is still running after %.0f s",
				     pid, RM_WAIT_S);
			rc = CLI_ERR;
		} else {
			printf("stopped writer pid %d\n", pid);
		}
	}
	if (fd >= 0)
		close(fd);
	return rc;
}
