/*
 * bench_common.c - shmring-bench's clock calibration, histogram arithmetic, the record
 * pool and the batched JSONL output the peers' consumers share with nothing else.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench.h"
#include "shmring/json.h"

const char *const peer_names[PEER_N] = {
	"shmring", "pipe", "posix-mq", "unix-dgram", "append-file", "zmq",
};

double bench_ns_per_tick = 1.0;

void bench_clock_calibrate(void)
{
#ifdef BENCH_TSC
	/* Two readings 50 ms apart; the TSC is invariant here (constant_tsc, nonstop_tsc). */
	uint64_t n0 = bench_now_ns(), t0 = __rdtsc();
	struct timespec d = { 0, 50 * 1000 * 1000 };
	while (nanosleep(&d, &d) < 0 && errno == EINTR)
		;
	uint64_t n1 = bench_now_ns(), t1 = __rdtsc();
	bench_ns_per_tick = (double)(n1 - n0) / (double)(t1 - t0);
#endif
}

void hist_merge(struct hist *into, const struct hist *from)
{
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		into->b[i] += from->b[i];
	into->n += from->n;
	if (from->max > into->max)
		into->max = from->max;
}

static uint64_t bucket_upper(unsigned i)
{
	if (i < HIST_SUB)
		return i;
	unsigned e = i / HIST_SUB + HIST_SUB_BITS - 1, sub = i % HIST_SUB;
	uint64_t lo = (uint64_t)(HIST_SUB + sub) << (e - HIST_SUB_BITS);
	return lo + (1ull << (e - HIST_SUB_BITS)) - 1;
}

double hist_quantile_ns(const struct hist *h, double q)
{
	if (!h->n)
		return 0;
	uint64_t rank = (uint64_t)(q * (double)h->n + 0.999999);
	if (rank < 1)
		rank = 1;
	uint64_t seen = 0;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= rank) {
			uint64_t up = bucket_upper(i);
			if (up > h->max)
				up = h->max;
			return (double)up * bench_ns_per_tick;
		}
	}
	return (double)h->max * bench_ns_per_tick;
}

/* ---- the record pool ---------------------------------------------------------------- */

int fixbuf_write(void *data, const char *buf, size_t len)
{
	struct fixbuf *f = data;
	if (len > f->cap - f->used)
		return -1;
	memcpy(f->p + f->used, buf, len);
	f->used += len;
	return 0;
}

static const char *const tools_[] = { "read_file", "grep", "bash", "web_search", "edit_file",
				      "list_directory", "run_tests", "git_diff" };
static const char *const labels[] = { "memory/notes/project-plan.md", "memory/user-preferences.md",
				      "memory/incidents/2026-11-02-outage.md" };
static const char *const keys[] = { "system_prompt.tools", "system_prompt.safety", "repo_summary" };
static const char *const fidelity[] = { "summary", "excerpt", "outline", "pointer" };
static const char *const providers[] = { "anthropic", "openai", "local-llama" };
static const struct shmring_violation viol = {
	"exit_code", "tool output truncated at 65536 bytes; exit status not captured",
};

/* Crockford base32, as ULIDs print. */
static void ulid(char *out, uint64_t a, uint64_t b)
{
	static const char al[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
	for (int i = 0; i < 26; i++) {
		uint64_t v = i < 13 ? a : b;
		out[i] = al[(v >> (5 * (i % 13))) & 31];
	}
	out[26] = 0;
}

int pool_build(struct pool *p, int who)
{
	memset(p, 0, sizeof(*p));
	uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(who + 1);
	uint8_t buf[2048];
	for (int i = 0; i < POOL_SIZE; i++) {
		struct rec_strings *s = &p->str[i];
		struct shmring_compacted_page_record *r = &p->rec[i];
		char u[32];
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		snprintf(s->ts, sizeof(s->ts), "2026-11-24T08:%02d:%02d.%06dZ", i / 60 % 60, i % 60,
			 (int)(x % 1000000));
		ulid(u, x, x * 31 + (uint64_t)who);
		snprintf(s->turn_id, sizeof(s->turn_id), "turn_%s", u);
		snprintf(s->page_id, sizeof(s->page_id), "page_p%02d_%04d_%.12s", who, i, u + 8);
		r->ts = s->ts;
		r->turn_id = s->turn_id;
		r->page_id = s->page_id;
		r->page_type = (enum shmring_page_type)(i % 4);
		r->origin.kind = (enum shmring_origin_kind)(i / 4 % 4);
		switch (r->origin.kind) {
		case SHMRING_ORIGIN_TOOL_PAIR:
			snprintf(s->origin_value, sizeof(s->origin_value), "%s", tools_[i % 8]);
			break;
		case SHMRING_ORIGIN_TURN:
			snprintf(s->origin_value, sizeof(s->origin_value), "msg_%.20s", u);
			break;
		case SHMRING_ORIGIN_EXCERPT:
			snprintf(s->origin_value, sizeof(s->origin_value), "%s", labels[i % 3]);
			break;
		default:
			snprintf(s->origin_value, sizeof(s->origin_value), "%s", keys[i % 3]);
		}
		r->origin.value = s->origin_value;
		r->original_tokens = 1000u + (uint32_t)(x % 180000u);
		r->compacted_tokens = r->original_tokens / 4u;
		r->fidelity_level = fidelity[i % 4];
		r->invariant_version = 2;
		r->provider_name = providers[i % 3];
		r->violations = i % 10 == 0 ? &viol : NULL;
		r->violation_count = i % 10 == 0;
		r->classification_fallback = i % 7 == 3;

		struct fixbuf fb = { buf, 0, sizeof(buf) };
		msgpack_packer pk;
		msgpack_packer_init(&pk, &fb, fixbuf_write);
		int rc = shmring_audit_pack(&pk, r);
		if (rc)
			return rc;
		p->mp[i] = malloc(fb.used);
		if (!p->mp[i])
			return -ENOMEM;
		memcpy(p->mp[i], buf, fb.used);
		p->mp_len[i] = (uint32_t)fb.used;
		p->mp_total += fb.used;
	}
	return 0;
}

void pool_free(struct pool *p)
{
	for (int i = 0; i < POOL_SIZE; i++)
		free(p->mp[i]);
}

uint32_t pool_fixed_pad(uint32_t bytes)
{
	/* map(2) + "seq" + fixint + "pad" = 10 bytes, then a string header of 1, 2 or 3 bytes
	 * (str fix/8/16) and the padding: pick the header that makes the sum exact. */
	uint32_t hdr = bytes <= 10 + 1 + 31 ? 1 : bytes <= 10 + 2 + 255 ? 2 : 3;
	return bytes - 10 - hdr;
}

int pool_fixed_size(struct pool *p, uint32_t bytes)
{
	if (bytes < 11 || bytes > 65535)
		return -EINVAL;
	uint32_t pad = pool_fixed_pad(bytes), hdr = bytes - 10 - pad;
	p->mp_total = 0;
	for (int i = 0; i < POOL_SIZE; i++) {
		uint8_t *m = realloc(p->mp[i], bytes);
		if (!m)
			return -ENOMEM;
		uint8_t *o = m;
		*o++ = 0x82;
		memcpy(o, "\xa3seq", 4), o += 4;
		*o++ = (uint8_t)(i % 128);
		memcpy(o, "\xa3pad", 4), o += 4;
		if (hdr == 1) {
			*o++ = (uint8_t)(0xa0 | pad);
		} else if (hdr == 2) {
			*o++ = 0xd9;
			*o++ = (uint8_t)pad;
		} else {
			*o++ = 0xda;
			*o++ = (uint8_t)(pad >> 8);
			*o++ = (uint8_t)pad;
		}
		for (uint32_t k = 0; k < pad; k++)
			*o++ = (uint8_t)('a' + (i + k) % 26);
		p->mp[i] = m;
		p->mp_len[i] = bytes;
		p->mp_total += bytes;
	}
	return 0;
}

int pool_floats(struct pool *p)
{
	/* 1 + 16 x (key "fN"/"fNN" + 0xcb + 8 bytes): at most 3 + 16 x 13 bytes. */
	p->mp_total = 0;
	for (int i = 0; i < POOL_SIZE; i++) {
		uint8_t *m = realloc(p->mp[i], 3 + FLOAT_KEYS * 13), *o = m;
		if (!m)
			return -ENOMEM;
		*o++ = 0xde, *o++ = 0, *o++ = FLOAT_KEYS; /* map 16 */
		for (int k = 0; k < FLOAT_KEYS; k++) {
			char key[4];
			int kl = snprintf(key, sizeof(key), "f%d", k);
			*o++ = (uint8_t)(0xa0 | kl);
			memcpy(o, key, (size_t)kl), o += kl;
			/* even keys: short decimals of every layout; odd: 15-17 digits */
			double sh[4] = { (i % 400) / 4.0, (i + 1) * 1e-7, 6.02214076e23 + i * 1e15, -0.001 * (i % 7 + 1) };
			double d = k % 2 ? 1.0 / (i * 16 + k + 3) * (k % 3 ? 1e6 : 1e-6) : sh[k / 2 % 4];
			uint64_t u;
			memcpy(&u, &d, 8);
			*o++ = 0xcb;
			for (int b = 7; b >= 0; b--)
				*o++ = (uint8_t)(u >> (8 * b));
		}
		p->mp[i] = m;
		p->mp_len[i] = (uint32_t)(o - m);
		p->mp_total += p->mp_len[i];
	}
	return 0;
}

/* ---- batched output ----------------------------------------------------------------- */

void self_cpu(uint64_t *cpu_ns, uint64_t *csw)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	*cpu_ns = ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) * 1000000000ull +
		  ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000ull;
	if (csw)
		*csw = (uint64_t)ru.ru_nvcsw + (uint64_t)ru.ru_nivcsw;
}

uint64_t runq_wait_ns(const char *path)
{
	unsigned long long run = 0, wait = 0;
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	if (fscanf(f, "%llu %llu", &run, &wait) != 2)
		wait = 0;
	fclose(f);
	return wait;
}

int write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t k = write(fd, c, n);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		c += k;
		n -= (size_t)k;
	}
	return 0;
}

int outbuf_init(struct outbuf *o, const char *path, size_t batch, uint64_t warm_lines,
		struct cons_result *res)
{
	memset(o, 0, sizeof(*o));
	/* The writer's own flags: append, create 0600, never through a symlink. */
	o->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (o->fd < 0)
		return -errno;
	o->batch = batch;
	o->cap = batch + 65536;
	o->buf = malloc(o->cap);
	o->warm_lines = warm_lines;
	o->res = res;
	return o->buf ? 0 : -ENOMEM;
}

int outbuf_commit(struct outbuf *o)
{
	if (!o->used)
		return 0;
	int rc = write_all(o->fd, o->buf, o->used);
	if (rc)
		return rc;
	o->writes++;
	o->used = 0;
	uint64_t before = o->lines;
	o->lines += o->pending;
	o->pending = 0;
	if (before < o->warm_lines && o->lines >= o->warm_lines) {
		self_cpu(&o->res->cpu_warm_ns, &o->res->csw_warm);
		o->res->runq_warm_ns = runq_wait_ns("/proc/thread-self/schedstat");
	}
	atomic_store_explicit(&o->res->progress, o->lines, memory_order_release);
	return 0;
}

/* The same conversion and line framing as shmring-writer's convert(). */
int outbuf_add(struct outbuf *o, const void *mp, size_t len)
{
	size_t need = shmring_json_bound(len) + 1;
	if (o->cap - o->used < need || o->used >= o->batch) {
		int rc = outbuf_commit(o);
		if (rc)
			return rc;
		if (o->cap < need)
			return -EMSGSIZE;
	}
	const char *why = NULL;
	ssize_t k = shmring_msgpack_to_json(mp, len, o->buf + o->used, o->cap - o->used, &why);
	if (k < 0) {
		k = shmring_json_error_record(why ? why : "invalid msgpack", o->lines + o->pending, mp,
					      len, o->buf + o->used, o->cap - o->used);
		if (k < 0)
			return (int)k;
		o->invalid++;
	}
	o->used += (size_t)k;
	o->buf[o->used++] = '\n';
	o->pending++;
	return 0;
}

void outbuf_close(struct outbuf *o)
{
	if (o->fd >= 0)
		close(o->fd);
	free(o->buf);
	o->buf = NULL;
	o->fd = -1;
}
