/*
 * spawn.h - starting a writer for a ring from a library call (spawn.c): the audit sink's
 * autostart.
 */
#ifndef SHMRING_SPAWN_H
#define SHMRING_SPAWN_H

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

#include "internal.h"

/* Everything starting a writer needs, fixed when the sink opens. */
struct shm_spawn {
	bool autostart;                    /* SHMRING_NO_AUTOSTART unset (or 0) */
	_Atomic pid_t starting;            /* pid whose thread is starting a writer, or 0 */
	char ring[SHM_NAME_MAX + 1];
	char path[SHM_PATH_MAX];           /* the output: canonical, realpath(dir) + "/" + base */
	char idle[24];                     /* --exit-when-idle seconds */
	char writer_env[PATH_MAX];         /* SHMRING_WRITER at open, or "" */
	char log_env[PATH_MAX];            /* SHMRING_WRITER_LOG at open, or "" */
};

/* 1: a live writer serves the ring (mapped as m) into s->path; 0: none; -EEXIST: one
 * serves it into another file; other <0: error. */
int shm_spawn_served(const struct shm_spawn *s, const struct shm_map *m);
/* Make sure a live writer serves the ring into s->path, starting one (detached, at most
 * one across processes, within SHMRING_AUDIT_START_TIMEOUT_MS) if there is none and
 * autostart is on. 0 served (or autostart off and none), <0 error. */
int shm_spawn_ensure(struct shm_spawn *s, struct shm_map *m);

#endif
