/*
 * log.c - the library's only voice. Library code never prints: it calls shm_log(),
 * which hands the line to the application's callback (default: stderr).
 */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

/* WARN and ERROR only: an application that did not ask hears of drops, not of routine
 * events (an audit sink starting its writer is INFO); a callback receives every level. */
static void log_stderr(enum shmring_log_level lvl, const char *msg, void *ctx)
{
	static const char *names[] = { "DEBUG", "INFO", "WARN", "ERROR" };
	(void)ctx;
	if (lvl < SHMRING_LOG_WARN)
		return;
	fprintf(stderr, "shmring: %s %s\n", names[lvl & 3], msg);
}

/* The pair is read without a lock: a racing replacement may pair old fn with new ctx
 * for one line, which the contract of shmring_set_log (set it at start-up) accepts. */
static shmring_log_fn _Atomic g_fn = log_stderr;
static void *_Atomic g_ctx;

SHM_EXPORT void shmring_set_log(shmring_log_fn fn, void *ctx)
{
	atomic_store(&g_ctx, ctx);
	atomic_store(&g_fn, fn ? fn : log_stderr);
}

void shm_log(enum shmring_log_level lvl, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	shmring_log_fn fn = atomic_load(&g_fn);
	fn(lvl, buf, atomic_load(&g_ctx));
}
