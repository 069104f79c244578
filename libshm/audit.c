/*
 * audit.c - the compaction audit sink: compaction records packed as msgpack maps whose
 * JSON is what serde_json writes for the Rust record, sent through a shmring ring named
 * after the output file, drained by one shmring-writer that the first opener starts
 * (spawn.c).
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

#include "spawn.h"
#include "shmring/reserve.h"
#include "shmring/audit.h"



struct shmring_audit_sink {
	shmring *r;
	struct shm_spawn sp;               /* ring name, canonical path, how to start a writer */
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
	if ((rc = canonical_path(jsonl_path, s->sp.path)))
		goto fail;
	snprintf(s->sp.ring, sizeof(s->sp.ring), "audit-%016" PRIx64, fnv1a64(s->sp.path));
	const char *na = getenv("SHMRING_NO_AUTOSTART");
	s->sp.autostart = !(na && *na && strcmp(na, "0") != 0);
	const char *idle = getenv("SHMRING_WRITER_IDLE_EXIT");
	bool idle_ok = idle && *idle && strlen(idle) < 10 && strspn(idle, "0123456789") == strlen(idle);
	snprintf(s->sp.idle, sizeof(s->sp.idle), "%s", idle_ok ? idle : "10");
	if (!env_copy("SHMRING_WRITER", s->sp.writer_env, sizeof(s->sp.writer_env)) ||
	    !env_copy("SHMRING_WRITER_LOG", s->sp.log_env, sizeof(s->sp.log_env))) {
		rc = -ENAMETOOLONG;
		goto fail;
	}
	struct shmring_options o = { .capacity = cap };
	if ((rc = shmring_open(s->sp.ring, &o, &s->r)))
		goto fail;
	/* Our producer entry is registered: a writer sees us attached from here on. */
	if ((rc = shm_spawn_ensure(&s->sp, shm_ring_map(s->r))))
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
	if (rc != -ENOTCONN || !s->sp.autostart)
		return rc;
	/* The writer is gone (it exited idle just as we attached, or was killed). Records
	 * wait in the ring: a new writer drains them from the head. */
	int e = shm_spawn_ensure(&s->sp, shm_ring_map(s->r));
	return e ? e : shmring_flush(s->r);
}

SHM_EXPORT uint64_t shmring_audit_dropped_count(const shmring_audit_sink *s)
{
	return s ? shmring_dropped_count(s->r) : 0;
}

SHM_EXPORT const char *shmring_audit_ring_name(const shmring_audit_sink *s)
{
	return s ? s->sp.ring : NULL;
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
