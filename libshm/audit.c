/*
 * audit.c - the compaction audit sink: compaction records packed as msgpack maps whose
 * JSON is what serde_json writes for the Rust record, sent through a shmring ring named
 * after the output file, drained by one shmring-writer that the first opener starts.
 *
 * Writer autostart, in one picture (every opener of the same file runs it):
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
 * The send path reserves the record's exact size in the ring and encodes it there: no
 * buffer, no copy, no allocation, no syscall while the writer is awake.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "shmring/reserve.h"
#include "shmring/audit.h"

#ifndef SHMRING_BUILD_WRITER
#define SHMRING_BUILD_WRITER ""
#endif
#ifndef SHMRING_INSTALL_BINDIR
#define SHMRING_INSTALL_BINDIR "bin"
#endif

#define AUDIT_NAME_LEN    (6 + 16 + 1)   /* "audit-" + 16 hex + NUL */
#define AUDIT_ENV_MAX     PATH_MAX

struct shmring_audit_sink {
	shmring *r;
	bool autostart;
	_Atomic pid_t starting;            /* pid whose thread is starting a writer, or 0 */
	char name[AUDIT_NAME_LEN];
	char path[SHM_PATH_MAX];           /* canonical: realpath(dir) + "/" + base */
	char idle[24];                     /* --exit-when-idle seconds */
	char writer_env[AUDIT_ENV_MAX];    /* SHMRING_WRITER at open, or "" */
	char log_env[AUDIT_ENV_MAX];       /* SHMRING_WRITER_LOG at open, or "" */
};

/* ---- the record as msgpack ---------------------------------------------------------- */

static const char *const page_type_names[] = {
	"tool_output", "conversation_turn", "memory_excerpt", "system_context",
};
static const char *const origin_kind_names[] = { "tool_pair", "turn", "excerpt", "system" };
static const char *const origin_value_keys[] = { "tool_name", "message_id", "source_label", "key" };

/* Everything that would make the record unpackable, checked before a byte is written,
 * so an invalid record sends nothing. */
static int record_check(const struct shmring_compacted_page_record *rec)
{
	if (!rec || !rec->turn_id || !rec->page_id || !rec->origin.value || !rec->fidelity_level ||
	    !rec->provider_name)
		return -EINVAL;
	if ((unsigned)rec->page_type > SHMRING_PAGE_SYSTEM_CONTEXT ||
	    (unsigned)rec->origin.kind > SHMRING_ORIGIN_SYSTEM)
		return -EINVAL;
	if (rec->violation_count && !rec->violations)
		return -EINVAL;
	if (rec->violation_count > UINT32_MAX)
		return -EINVAL;
	for (size_t i = 0; i < rec->violation_count; i++)
		if (!rec->violations[i].missing_field || !rec->violations[i].detail)
			return -EINVAL;
	return 0;
}

static inline void put2(char *o, int v)
{
	o[0] = (char)('0' + v / 10);
	o[1] = (char)('0' + v % 10);
}

/* UTC now as 2026-11-24T08:55:52.123456Z (27 bytes + NUL). The date and time of day are
 * formatted once per second per thread: no gmtime_r per record. */
static size_t format_now(char out[32])
{
	static _Thread_local struct {
		time_t sec;
		bool valid;
		char text[20]; /* YYYY-MM-DDTHH:MM:SS */
	} cache;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	if (!cache.valid || cache.sec != now.tv_sec) {
		struct tm tm;
		gmtime_r(&now.tv_sec, &tm);
		/* Years outside 0000..9999 would change the width: clamp (RFC 3339 has 4 digits). */
		int year = tm.tm_year + 1900;
		year = year < 0 ? 0 : year > 9999 ? 9999 : year;
		char *t = cache.text;
		put2(t, year / 100);
		put2(t + 2, year % 100);
		t[4] = '-';
		put2(t + 5, tm.tm_mon + 1);
		t[7] = '-';
		put2(t + 8, tm.tm_mday);
		t[10] = 'T';
		put2(t + 11, tm.tm_hour);
		t[13] = ':';
		put2(t + 14, tm.tm_min);
		t[16] = ':';
		put2(t + 17, tm.tm_sec);
		t[19] = 0;
		cache.sec = now.tv_sec;
		cache.valid = true;
	}
	memcpy(out, cache.text, 19);
	out[19] = '.';
	unsigned us = (unsigned)(now.tv_nsec / 1000);
	for (int i = 25; i >= 20; i--) {
		out[i] = (char)('0' + us % 10);
		us /= 10;
	}
	out[26] = 'Z';
	out[27] = 0;
	return 27;
}

/*
 * The encoder. The record's layout is fixed, so it is written straight into a buffer of
 * its exact size, computed first: keys are constants, every string is a header and one
 * memcpy. Through msgpack-c's packer the same record took 49 write callbacks (224 ns);
 * this takes one pass (see docs/bench). The bytes are exactly msgpack-c's choices, the
 * smallest form of each header (tests/test_audit.c checks this against msgpack-c's
 * packer on random records).
 */
struct enc_len {
	size_t ts, turn, page, origin, fid, prov;
};

static inline size_t str_size(size_t n)
{
	return (n < 32 ? 1 : n < 256 ? 2 : n < 65536 ? 3 : 5) + n;
}

static inline size_t uint_size(uint32_t v)
{
	return v < 128 ? 1 : v < 256 ? 2 : v < 65536 ? 3 : 5;
}

static inline size_t count_size(size_t n) /* map or array header */
{
	return n < 16 ? 1 : n < 65536 ? 3 : 5;
}

static inline uint8_t *put_be(uint8_t *o, uint32_t v, int bytes)
{
	for (int i = bytes - 1; i >= 0; i--, v >>= 8)
		o[i] = (uint8_t)v;
	return o + bytes;
}

static inline uint8_t *put_str(uint8_t *o, const char *s, size_t n)
{
	if (n < 32) {
		*o++ = (uint8_t)(0xa0 | n);
	} else if (n < 256) {
		*o++ = 0xd9;
		*o++ = (uint8_t)n;
	} else if (n < 65536) {
		*o++ = 0xda;
		o = put_be(o, (uint32_t)n, 2);
	} else {
		*o++ = 0xdb;
		o = put_be(o, (uint32_t)n, 4);
	}
	memcpy(o, s, n);
	return o + n;
}

static inline uint8_t *put_uint(uint8_t *o, uint32_t v)
{
	if (v < 128) {
		*o++ = (uint8_t)v;
	} else if (v < 256) {
		*o++ = 0xcc;
		*o++ = (uint8_t)v;
	} else if (v < 65536) {
		*o++ = 0xcd;
		o = put_be(o, v, 2);
	} else {
		*o++ = 0xce;
		o = put_be(o, v, 4);
	}
	return o;
}

static inline uint8_t *put_count(uint8_t *o, size_t n, uint8_t fix, uint8_t b16)
{
	if (n < 16) {
		*o++ = (uint8_t)(fix | n);
	} else if (n < 65536) {
		*o++ = b16;
		o = put_be(o, (uint32_t)n, 2);
	} else {
		*o++ = (uint8_t)(b16 + 1);
		o = put_be(o, (uint32_t)n, 4);
	}
	return o;
}

/* A key is a literal shorter than 32 bytes: a fixstr of sizeof - 1 bytes. */
#define KEY_SIZE(lit) sizeof(lit)
#define PUT_KEY(o, lit) put_str((o), (lit), sizeof(lit) - 1)

static size_t enc_size(const struct shmring_compacted_page_record *rec, struct enc_len *l)
{
	l->turn = strlen(rec->turn_id);
	l->page = strlen(rec->page_id);
	l->origin = strlen(rec->origin.value);
	l->fid = strlen(rec->fidelity_level);
	l->prov = strlen(rec->provider_name);
	size_t n = 1 + KEY_SIZE("ts") + str_size(l->ts) + KEY_SIZE("turn_id") + str_size(l->turn) +
		   KEY_SIZE("page_id") + str_size(l->page) + KEY_SIZE("page_type") +
		   str_size(strlen(page_type_names[rec->page_type])) + KEY_SIZE("origin") + 1 +
		   KEY_SIZE("kind") + str_size(strlen(origin_kind_names[rec->origin.kind])) +
		   str_size(strlen(origin_value_keys[rec->origin.kind])) + str_size(l->origin) +
		   KEY_SIZE("original_tokens") + uint_size(rec->original_tokens) +
		   KEY_SIZE("compacted_tokens") + uint_size(rec->compacted_tokens) +
		   KEY_SIZE("fidelity_level") + str_size(l->fid) + KEY_SIZE("invariant_version") +
		   uint_size(rec->invariant_version) + KEY_SIZE("provider_name") + str_size(l->prov) +
		   KEY_SIZE("violations") + count_size(rec->violation_count);
	for (size_t i = 0; i < rec->violation_count; i++)
		n += 1 + KEY_SIZE("missing_field") + str_size(strlen(rec->violations[i].missing_field)) +
		     KEY_SIZE("detail") + str_size(strlen(rec->violations[i].detail));
	if (rec->classification_fallback)
		n += KEY_SIZE("classification_fallback") + 1;
	return n;
}

/* Field order is the Rust struct's. Returns the end; enc_size said how far that is. */
static uint8_t *enc_write(uint8_t *o, const struct shmring_compacted_page_record *rec,
			  const struct enc_len *l, const char *ts)
{
	*o++ = (uint8_t)(0x80 | (rec->classification_fallback ? 12 : 11));
	o = PUT_KEY(o, "ts");
	o = put_str(o, ts, l->ts);
	o = PUT_KEY(o, "turn_id");
	o = put_str(o, rec->turn_id, l->turn);
	o = PUT_KEY(o, "page_id");
	o = put_str(o, rec->page_id, l->page);
	o = PUT_KEY(o, "page_type");
	const char *pt = page_type_names[rec->page_type];
	o = put_str(o, pt, strlen(pt));
	/* Internally tagged enum: {"kind":..., "<variant's field>":...}. */
	o = PUT_KEY(o, "origin");
	*o++ = 0x82;
	o = PUT_KEY(o, "kind");
	const char *kn = origin_kind_names[rec->origin.kind], *vk = origin_value_keys[rec->origin.kind];
	o = put_str(o, kn, strlen(kn));
	o = put_str(o, vk, strlen(vk));
	o = put_str(o, rec->origin.value, l->origin);
	o = PUT_KEY(o, "original_tokens");
	o = put_uint(o, rec->original_tokens);
	o = PUT_KEY(o, "compacted_tokens");
	o = put_uint(o, rec->compacted_tokens);
	o = PUT_KEY(o, "fidelity_level");
	o = put_str(o, rec->fidelity_level, l->fid);
	o = PUT_KEY(o, "invariant_version");
	o = put_uint(o, rec->invariant_version);
	o = PUT_KEY(o, "provider_name");
	o = put_str(o, rec->provider_name, l->prov);
	o = PUT_KEY(o, "violations");
	o = put_count(o, rec->violation_count, 0x90, 0xdc);
	for (size_t i = 0; i < rec->violation_count; i++) {
		const struct shmring_violation *v = &rec->violations[i];
		*o++ = 0x82;
		o = PUT_KEY(o, "missing_field");
		o = put_str(o, v->missing_field, strlen(v->missing_field));
		o = PUT_KEY(o, "detail");
		o = put_str(o, v->detail, strlen(v->detail));
	}
	/* skip_serializing_if = "Not::not": the key exists only when true. */
	if (rec->classification_fallback) {
		o = PUT_KEY(o, "classification_fallback");
		*o++ = 0xc3;
	}
	return o;
}

/* The record's timestamp: its own, or now (formatted into buf). */
static const char *enc_ts(const struct shmring_compacted_page_record *rec, struct enc_len *l,
			  char buf[32])
{
	if (rec->ts) {
		l->ts = strlen(rec->ts);
		return rec->ts;
	}
	l->ts = format_now(buf);
	return buf;
}

SHM_EXPORT int shmring_audit_pack(msgpack_packer *pk, const struct shmring_compacted_page_record *rec)
{
	if (!pk)
		return -EINVAL;
	int rc = record_check(rec);
	if (rc)
		return rc;
	char tsbuf[32];
	struct enc_len l;
	const char *ts = enc_ts(rec, &l, tsbuf);
	size_t n = enc_size(rec, &l);
	uint8_t stack[4096], *buf = n <= sizeof(stack) ? stack : malloc(n);
	if (!buf)
		return -ENOMEM;
	uint8_t *end = enc_write(buf, rec, &l, ts);
	/* One call to the packer's writer with the whole record. */
	rc = (size_t)(end - buf) == n && pk->callback(pk->data, (const char *)buf, n) == 0 ? 0 : -ENOBUFS;
	if (buf != stack)
		free(buf);
	return rc;
}

SHM_EXPORT int shmring_audit_send_to(shmring *r, const struct shmring_compacted_page_record *rec)
{
	if (unlikely(!r))
		return -EINVAL;
	int rc = record_check(rec);
	if (unlikely(rc))
		return rc;
	/* Reserve the exact size and encode into the slots: no buffer, no copy. A record
	 * over the ring's max is refused (and counted) by the reservation itself. */
	char tsbuf[32];
	struct enc_len l;
	const char *ts = enc_ts(rec, &l, tsbuf);
	size_t n = enc_size(rec, &l);
	struct shmring_reservation res;
	if (unlikely((rc = shmring_reserve(r, n, &res))))
		return rc;
	uint8_t *end = enc_write((uint8_t *)res.buf, rec, &l, ts);
	res.len = (size_t)(end - (uint8_t *)res.buf);
	return shmring_commit(&res);
}

SHM_EXPORT int shmring_audit_send(shmring_audit_sink *s, const struct shmring_compacted_page_record *rec)
{
	if (unlikely(!s))
		return -EINVAL;
	return shmring_audit_send_to(s->r, rec);
}

/* ---- path, name ---------------------------------------------------------------------- */

/* realpath() of the folder + "/" + the last component: the same string however the
 * folder is spelled, and the file itself need not be resolved (it is never a symlink:
 * O_NOFOLLOW refused that already). */
static int canonical_path(const char *path, char out[SHM_PATH_MAX])
{
	char dir[PATH_MAX], real[PATH_MAX];
	const char *slash = strrchr(path, '/');
	const char *base = slash ? slash + 1 : path;
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else if ((size_t)(slash - path) >= sizeof(dir))
		return -ENAMETOOLONG;
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	if (!*base)
		return -EISDIR;
	if (!realpath(dir, real))
		return -errno;
	int n = snprintf(out, SHM_PATH_MAX, "%s/%s", strcmp(real, "/") == 0 ? "" : real, base);
	return n < 0 || n >= SHM_PATH_MAX ? -ENAMETOOLONG : 0;
}

/* FNV-1a 64 over the canonical path: simple enough for any language to derive the name. */
static uint64_t fnv1a64(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (; *s; s++) {
		h ^= (uint8_t)*s;
		h *= 0x100000001b3ull;
	}
	return h;
}

static uint32_t round_capacity(size_t c)
{
	if (c == 0)
		return SHMRING_AUDIT_DEFAULT_CAPACITY;
	if (c > SHM_CAP_MAX)
		return 0;
	uint32_t p = SHMRING_AUDIT_MIN_CAPACITY;
	while (p < c)
		p <<= 1;
	return p;
}

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
static int served(const struct shmring_audit_sink *s, const struct shm_map *m)
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

/* SHMRING_WRITER, else next to the library (<dir>/../bin, <dir>), else the build tree.
 * The result is absolute: the writer runs in "/". */
static int find_writer(const struct shmring_audit_sink *s, char out[PATH_MAX])
{
	char cand[PATH_MAX];
	if (s->writer_env[0])
		return realpath(s->writer_env, out) ? 0 : -errno;
	Dl_info di;
	if (dladdr((void *)shmring_audit_open, &di) && di.dli_fname && strchr(di.dli_fname, '/')) {
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
	if (executable(SHMRING_BUILD_WRITER) && realpath(SHMRING_BUILD_WRITER, out))
		return 0;
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
static int spawn_writer(const struct shmring_audit_sink *s, pid_t *out)
{
	char exe[PATH_MAX];
	int rc = find_writer(s, exe);
	if (rc)
		return rc;
	char *const argv[] = { exe, "--ring", (char *)s->name, "--out", (char *)s->path,
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
static int start_and_wait(const struct shmring_audit_sink *s, const struct shm_map *m,
			  uint64_t deadline)
{
	pid_t pid = 0;
	int rc = spawn_writer(s, &pid);
	if (rc)
		return rc;
	shm_log(SHMRING_LOG_INFO, "audit sink %s: started shmring-writer pid %d on ring %s", s->path,
		(int)pid, s->name);
	for (;;) {
		int held = shm_lock_held(m->fd, SHM_LOCK_WRITER);
		/* Relaxed: only compared with a pid; the lock (a syscall) is the liveness. */
		int32_t wp = atomic_load_explicit(&m->hdr->writer_pid, memory_order_relaxed);
		if (held == 1 && wp == pid)
			return served(s, m);
		if (held < 0) {
			rc = held;
			break;
		}
		if (!proc_running(pid)) {
			/* It exited without serving: e.g. status 3, another writer took the lock
			 * (one started by hand). If someone serves, that is all we need. */
			rc = served(s, m);
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
static int ensure_writer(struct shmring_audit_sink *s)
{
	uint64_t deadline = shm_now_ns() + SHMRING_AUDIT_START_TIMEOUT_MS * 1000000ull;
	struct shm_map *m = shm_ring_map(s->r);
	if (m->fd < 0)
		return -EBADF;
	int rc = served(s, m);
	if (rc != 0 || !s->autostart)
		return rc < 0 ? rc : 0;
	/* One starter at a time, across processes: an OFD lock, so threads of this process
	 * are kept apart by s->starting (same descriptor, no conflict between them). */
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
		if ((rc = served(s, m)) != 0)
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
	rc = served(s, m);
	if (rc == 0)
		rc = start_and_wait(s, m, deadline);
	shm_lock_drop(m->fd, SHM_LOCK_SPAWN);
out:
	atomic_store_explicit(&s->starting, 0, memory_order_release);
	return rc < 0 ? rc : 0;
}

/* ---- the public calls ------------------------------------------------------------------ */

static bool env_copy(const char *var, char *out, size_t cap)
{
	const char *v = getenv(var);
	out[0] = 0;
	if (!v)
		return true;
	return (size_t)snprintf(out, cap, "%s", v) < cap;
}

SHM_EXPORT int shmring_audit_open(const char *jsonl_path, size_t capacity, shmring_audit_sink **out)
{
	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!jsonl_path || !*jsonl_path)
		return -EINVAL;
	uint32_t cap = round_capacity(capacity);
	if (!cap)
		return -EINVAL;
	int rc = shm_mkdir_parents(jsonl_path);
	if (rc)
		return rc;
	/* What the writer will do: fail here, in the caller, with the real errno. */
	int fd = open(jsonl_path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	close(fd);
	struct shmring_audit_sink *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	if ((rc = canonical_path(jsonl_path, s->path)))
		goto fail;
	snprintf(s->name, sizeof(s->name), "audit-%016" PRIx64, fnv1a64(s->path));
	const char *na = getenv("SHMRING_NO_AUTOSTART");
	s->autostart = !(na && *na && strcmp(na, "0") != 0);
	const char *idle = getenv("SHMRING_WRITER_IDLE_EXIT");
	bool idle_ok = idle && *idle && strlen(idle) < 10 && strspn(idle, "0123456789") == strlen(idle);
	snprintf(s->idle, sizeof(s->idle), "%s", idle_ok ? idle : "10");
	if (!env_copy("SHMRING_WRITER", s->writer_env, sizeof(s->writer_env)) ||
	    !env_copy("SHMRING_WRITER_LOG", s->log_env, sizeof(s->log_env))) {
		rc = -ENAMETOOLONG;
		goto fail;
	}
	struct shmring_options o = { .capacity = cap };
	if ((rc = shmring_open(s->name, &o, &s->r)))
		goto fail;
	/* Our producer entry is registered: a writer sees us attached from here on. */
	if ((rc = ensure_writer(s)))
		goto fail;
	*out = s;
	return 0;
fail:
	if (s->r)
		shmring_close(s->r);
	free(s);
	return rc;
}

SHM_EXPORT int shmring_audit_flush(shmring_audit_sink *s)
{
	if (!s)
		return -EINVAL;
	int rc = shmring_flush(s->r);
	if (rc != -ENOTCONN || !s->autostart)
		return rc;
	/* The writer is gone (it exited idle just as we attached, or was killed). Records
	 * wait in the ring: a new writer drains them from the head. */
	int e = ensure_writer(s);
	return e ? e : shmring_flush(s->r);
}

SHM_EXPORT uint64_t shmring_audit_dropped_count(const shmring_audit_sink *s)
{
	return s ? shmring_dropped_count(s->r) : 0;
}

SHM_EXPORT const char *shmring_audit_ring_name(const shmring_audit_sink *s)
{
	return s ? s->name : NULL;
}

SHM_EXPORT shmring *shmring_audit_ring(const shmring_audit_sink *s)
{
	return s ? s->r : NULL;
}

SHM_EXPORT void shmring_audit_close(shmring_audit_sink *s)
{
	if (!s)
		return;
	shmring_close(s->r);
	free(s);
}
