/* ref_mp2json.c: reference msgpack -> JSON converter for the differential and fuzz tests.
 *
 * Written for obviousness, not speed: a recursive validator settles whether the input is one
 * well-formed object (and why not), then msgpack-c builds the object tree and a recursive walk
 * prints it into a growing buffer. Two limits of msgpack-c shape the code:
 *   - its unpacker nests at most 32 containers (MSGPACK_EMBED_STACK_SIZE), so a subtree deeper
 *     than that is opened by hand, one container level at a time, until msgpack-c can take it;
 *   - it allocates count * sizeof(msgpack_object) for a container before reading it, so it is
 *     only handed inputs whose counts the validator has checked against the bytes present.
 * Where the validator rejects an input that msgpack-c can safely parse, msgpack-c must reject it
 * too: that cross-check is what keeps the validator honest.
 */
#include "ref_mp2json.h"

#include <errno.h>
#include <inttypes.h>
#include <locale.h>
#include <math.h>
#include <msgpack.h>
#include <msgpack/timestamp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REF_MAX_DEPTH 64
#define REF_MAX_KEY_NEST 2
#define MSGPACK_C_MAX_DEPTH 32

struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void sb_put(struct sbuf *b, const void *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n > b->cap) {
		size_t nc = b->cap ? b->cap : 256;
		char *np;

		while (nc < b->len + n)
			nc *= 2;
		np = realloc(b->p, nc);
		if (!np) {
			b->oom = true;
			return;
		}
		b->p = np;
		b->cap = nc;
	}
	if (n)
		memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void sb_puts(struct sbuf *b, const char *s)
{
	sb_put(b, s, strlen(s));
}

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	char t[128];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(t, sizeof(t), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(t)) {
		b->oom = true;
		return;
	}
	sb_put(b, t, (size_t)n);
}

/* ---- validation ---- */

struct vstate {
	const uint8_t *in;
	size_t len;
	const char *why;
	unsigned maxdepth;	/* deepest container seen, top level = 1 */
	uint64_t maxcount;	/* largest container count seen in a header */
	bool ext_max;		/* an ext32 of length 2^32-1: msgpack-c's length + 1 wraps */
	bool by_count;		/* "truncated" from a count the input cannot hold */
};

static int fail(struct vstate *v, const char *why)
{
	v->why = why;
	return -1;
}

static uint64_t load_be(const uint8_t *p, unsigned n)
{
	uint64_t x = 0;

	for (unsigned i = 0; i < n; i++)
		x = x << 8 | p[i];
	return x;
}

/* Validates the object at *off and moves *off past it. depth counts the enclosing
 * containers, klev the enclosing non-string keys. */
static int v_obj(struct vstate *v, size_t *off, unsigned depth, unsigned klev, bool is_key)
{
	size_t o = *off, avail;
	uint8_t b;
	uint64_t count = 0, payload = 0;
	unsigned hl = 1, lenbytes = 0;
	bool is_map = false, is_cont = false;

	if (o >= v->len)
		return fail(v, "truncated");
	avail = v->len - o;
	b = v->in[o];
	if (b == 0xc1)
		return fail(v, "invalid byte 0xc1");
	if (is_key && !((b >= 0xa0 && b <= 0xbf) || (b >= 0xd9 && b <= 0xdb))) {
		if (klev >= REF_MAX_KEY_NEST)
			return fail(v, "non-string keys nested deeper than 2");
		klev++;
	}
	if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
		*off = o + 1;
		return 0;
	}
	if (b >= 0x80 && b <= 0x9f) {
		is_cont = true;
		is_map = b <= 0x8f;
		count = b & 0x0f;
	} else if (b >= 0xa0 && b <= 0xbf) {
		payload = b & 0x1f;
	} else {
		switch (b) {
		case 0xca: case 0xce: case 0xd2: hl = 5; break;
		case 0xcb: case 0xcf: case 0xd3: hl = 9; break;
		case 0xcc: case 0xd0: hl = 2; break;
		case 0xcd: case 0xd1: hl = 3; break;
		case 0xd4: hl = 3; break;
		case 0xd5: hl = 4; break;
		case 0xd6: hl = 6; break;
		case 0xd7: hl = 10; break;
		case 0xd8: hl = 18; break;
		case 0xc4: case 0xd9: hl = 2; lenbytes = 1; break;
		case 0xc5: case 0xda: hl = 3; lenbytes = 2; break;
		case 0xc6: case 0xdb: hl = 5; lenbytes = 4; break;
		case 0xc7: hl = 3; lenbytes = 1; break;
		case 0xc8: hl = 4; lenbytes = 2; break;
		case 0xc9: hl = 6; lenbytes = 4; break;
		case 0xdc: hl = 3; lenbytes = 2; is_cont = true; break;
		case 0xdd: hl = 5; lenbytes = 4; is_cont = true; break;
		case 0xde: hl = 3; lenbytes = 2; is_cont = true; is_map = true; break;
		case 0xdf: hl = 5; lenbytes = 4; is_cont = true; is_map = true; break;
		default: abort();
		}
		/* msgpack-c rejects this length as soon as it has read it */
		if (b == 0xc9 && avail >= 5 && load_be(v->in + o + 1, 4) == UINT32_MAX)
			v->ext_max = true;
		if (avail < hl)
			return fail(v, "truncated");
		if (lenbytes) {
			if (is_cont)
				count = load_be(v->in + o + 1, lenbytes);
			else
				payload = load_be(v->in + o + 1, lenbytes);
		}
	}
	o += hl;
	if (!is_cont) {
		if (v->len - o < payload)
			return fail(v, "truncated");
		*off = o + payload;
		return 0;
	}
	if (depth + 1 > REF_MAX_DEPTH)
		return fail(v, "nesting deeper than 64");
	if (depth + 1 > v->maxdepth)
		v->maxdepth = depth + 1;
	if (count > v->maxcount)
		v->maxcount = count;
	if ((is_map ? 2 * count : count) > v->len - o) {
		/* msgpack-c would go on parsing bytes we never looked at: no cross-check */
		v->by_count = true;
		return fail(v, "truncated");
	}
	for (uint64_t i = 0; i < count; i++) {
		if (is_map && v_obj(v, &o, depth + 1, klev, true))
			return -1;
		if (v_obj(v, &o, depth + 1, klev, false))
			return -1;
	}
	*off = o;
	return 0;
}

/* ---- output ---- */

static void put_jstr(struct sbuf *b, const uint8_t *s, size_t n)
{
	static const char fffd[] = "\xef\xbf\xbd";
	size_t i = 0;

	sb_put(b, "\"", 1);
	while (i < n) {
		uint8_t c = s[i], lo2 = 0x80, hi2 = 0xbf;
		size_t want, k;

		if (c < 0x80) {
			switch (c) {
			case '"': sb_puts(b, "\\\""); break;
			case '\\': sb_puts(b, "\\\\"); break;
			case '\b': sb_puts(b, "\\b"); break;
			case '\f': sb_puts(b, "\\f"); break;
			case '\n': sb_puts(b, "\\n"); break;
			case '\r': sb_puts(b, "\\r"); break;
			case '\t': sb_puts(b, "\\t"); break;
			default:
				if (c < 0x20)
					sb_printf(b, "\\u%04x", c);
				else
					sb_put(b, &c, 1);
			}
			i++;
			continue;
		}
		/* Well-formed sequences, Unicode Table 3-7. */
		if (c >= 0xc2 && c <= 0xdf) {
			want = 2;
		} else if (c == 0xe0) {
			want = 3;
			lo2 = 0xa0;
		} else if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef) {
			want = 3;
		} else if (c == 0xed) {
			want = 3;
			hi2 = 0x9f;
		} else if (c == 0xf0) {
			want = 4;
			lo2 = 0x90;
		} else if (c >= 0xf1 && c <= 0xf3) {
			want = 4;
		} else if (c == 0xf4) {
			want = 4;
			hi2 = 0x8f;
		} else {
			sb_put(b, fffd, 3);
			i++;
			continue;
		}
		for (k = 1; k < want && i + k < n; k++) {
			uint8_t lo = k == 1 ? lo2 : 0x80, hi = k == 1 ? hi2 : 0xbf;

			if (s[i + k] < lo || s[i + k] > hi)
				break;
		}
		if (k == want)
			sb_put(b, s + i, want);
		else
			sb_put(b, fffd, 3);	/* the maximal subpart s[i..i+k) */
		i += k;
	}
	sb_put(b, "\"", 1);
}

static void put_b64(struct sbuf *b, const uint8_t *s, size_t n)
{
	static const char dig[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

	for (size_t i = 0; i < n; i += 3) {
		uint32_t x = (uint32_t)s[i] << 16;
		char q[4];

		if (i + 1 < n)
			x |= (uint32_t)s[i + 1] << 8;
		if (i + 2 < n)
			x |= s[i + 2];
		q[0] = dig[(x >> 18) & 63];
		q[1] = dig[(x >> 12) & 63];
		q[2] = i + 1 < n ? dig[(x >> 6) & 63] : '=';
		q[3] = i + 2 < n ? dig[x & 63] : '=';
		sb_put(b, q, 4);
	}
}

/* Does the decimal digits * 10^exp read back as v? */
static bool reads_back(uint64_t digits, int exp, double v, bool f32)
{
	char t[64];

	snprintf(t, sizeof(t), "%" PRIu64 "e%d", digits, exp);
	return f32 ? strtof(t, NULL) == (float)v : strtod(t, NULL) == v;
}

/* serde_json's float text, the slow way: the fewest significant digits that read back
 * (from %.{p-1}e, correctly rounded, or its neighbour in the last place when v's rounding
 * interval is narrower below, at a power of two), then the layout of the Rust ryu crate:
 * with n digits d and value d * 10^k, kk = n + k:
 *   0 <= k, kk <= 16      digits, k zeros, ".0"
 *   0 < kk <= 16          point inside
 *   -5 < kk <= 0          "0.", -kk zeros, digits
 *   otherwise             d[.ddd]e<kk-1>
 * and for an f32 13 in place of 16, -6 in place of -5. */
static void put_float(struct sbuf *b, double v, bool f32)
{
	char t[64], ds[32];
	locale_t c, old;
	uint64_t d = 0;
	int e = 0, n, k, kk;
	const int maxkk = f32 ? 13 : 16, minkk = f32 ? -6 : -5;

	if (!isfinite(v)) {
		sb_puts(b, "null");
		return;
	}
	if (v == 0) {
		sb_puts(b, signbit(v) ? "-0.0" : "0.0");
		return;
	}
	if (signbit(v)) {
		sb_puts(b, "-");
		v = -v;
	}
	/* in the C locale whatever the process uses */
	c = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
	if (!c) {
		b->oom = true;
		return;
	}
	old = uselocale(c);
	for (int p = 1; p <= 17; p++) {
		char *dot;

		snprintf(t, sizeof(t), "%.*e", p - 1, v);
		dot = strchr(t, '.');
		if (dot)
			memmove(dot, dot + 1, strlen(dot));
		d = strtoull(t, NULL, 10);
		e = atoi(strchr(t, 'e') + 1) - (p - 1);
		if (reads_back(d, e, v, f32))
			break;
		if (reads_back(d + 1, e, v, f32)) {
			d++;
			break;
		}
		if (reads_back(d - 1, e, v, f32)) {
			d--;
			break;
		}
	}
	uselocale(old);
	freelocale(c);
	while (d % 10 == 0) {
		d /= 10;
		e++;
	}
	n = snprintf(ds, sizeof(ds), "%" PRIu64, d);
	k = e;
	kk = n + k;
	if (k >= 0 && kk <= maxkk) {
		sb_puts(b, ds);
		for (int i = 0; i < k; i++)
			sb_puts(b, "0");
		sb_puts(b, ".0");
	} else if (kk > 0 && kk <= maxkk) {
		sb_put(b, ds, (size_t)kk);
		sb_puts(b, ".");
		sb_puts(b, ds + kk);
	} else if (kk > minkk && kk <= 0) {
		sb_puts(b, "0.");
		for (int i = 0; i < -kk; i++)
			sb_puts(b, "0");
		sb_puts(b, ds);
	} else {
		sb_put(b, ds, 1);
		if (n > 1) {
			sb_puts(b, ".");
			sb_puts(b, ds + 1);
		}
		sb_printf(b, "e%d", kk - 1);
	}
}

static void put_ext(struct sbuf *b, const msgpack_object *o)
{
	msgpack_timestamp ts;

	if (msgpack_object_to_timestamp(o, &ts) && ts.tv_nsec < 1000000000u) {
		time_t t = (time_t)ts.tv_sec;
		struct tm tm;

		if (gmtime_r(&t, &tm) && tm.tm_year >= -1900 && tm.tm_year <= 9999 - 1900) {
			sb_printf(b, "\"%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
				  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
			if (ts.tv_nsec) {
				/* Trailing zeros dropped by arithmetic, not by trimming a buffer
				 * (gcc 12 -O2 could not bound that loop: -Wstringop-overflow). */
				uint32_t ns = ts.tv_nsec;
				int digits = 9;

				while (ns % 10 == 0) {
					ns /= 10;
					digits--;
				}
				sb_printf(b, ".%0*" PRIu32, digits, ns);
			}
			sb_puts(b, "Z\"");
			return;
		}
	}
	sb_printf(b, "{\"ext\":%d,\"base64\":\"", o->via.ext.type);
	put_b64(b, (const uint8_t *)o->via.ext.ptr, o->via.ext.size);
	sb_puts(b, "\"}");
}

static void conv_obj(struct sbuf *b, const msgpack_object *o);

/* A map key: strings as they are, anything else as its own JSON text in a string. */
static void conv_key(struct sbuf *b, const msgpack_object *k)
{
	struct sbuf t = { 0 };

	if (k->type == MSGPACK_OBJECT_STR) {
		put_jstr(b, (const uint8_t *)k->via.str.ptr, k->via.str.size);
		return;
	}
	conv_obj(&t, k);
	if (t.oom)
		b->oom = true;
	else
		put_jstr(b, (const uint8_t *)t.p, t.len);
	free(t.p);
}

static void conv_obj(struct sbuf *b, const msgpack_object *o)
{
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		sb_puts(b, "null");
		break;
	case MSGPACK_OBJECT_BOOLEAN:
		sb_puts(b, o->via.boolean ? "true" : "false");
		break;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		sb_printf(b, "%" PRIu64, o->via.u64);
		break;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		sb_printf(b, "%" PRId64, o->via.i64);
		break;
	case MSGPACK_OBJECT_FLOAT32:
		put_float(b, o->via.f64, true);
		break;
	case MSGPACK_OBJECT_FLOAT64:
		put_float(b, o->via.f64, false);
		break;
	case MSGPACK_OBJECT_STR:
		put_jstr(b, (const uint8_t *)o->via.str.ptr, o->via.str.size);
		break;
	case MSGPACK_OBJECT_BIN:
		sb_puts(b, "\"");
		put_b64(b, (const uint8_t *)o->via.bin.ptr, o->via.bin.size);
		sb_puts(b, "\"");
		break;
	case MSGPACK_OBJECT_EXT:
		put_ext(b, o);
		break;
	case MSGPACK_OBJECT_ARRAY:
		sb_puts(b, "[");
		for (uint32_t i = 0; i < o->via.array.size; i++) {
			if (i)
				sb_puts(b, ",");
			conv_obj(b, &o->via.array.ptr[i]);
		}
		sb_puts(b, "]");
		break;
	case MSGPACK_OBJECT_MAP:
		sb_puts(b, "{");
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			if (i)
				sb_puts(b, ",");
			conv_key(b, &o->via.map.ptr[i].key);
			sb_puts(b, ":");
			conv_obj(b, &o->via.map.ptr[i].val);
		}
		sb_puts(b, "}");
		break;
	default:
		abort();
	}
}

struct rstate {
	const uint8_t *in;
	size_t len;
	int err;	/* -EPROTO once msgpack-c disagrees */
};

/* Converts the (already validated) object at *off. Subtrees msgpack-c can hold go to
 * msgpack-c whole; a deeper one has its outer container opened here. */
static void conv_at(struct rstate *r, struct sbuf *b, size_t *off, bool is_key)
{
	struct vstate v = { .in = r->in, .len = r->len };
	size_t end = *off, o;
	uint8_t c = r->in[*off];
	bool is_str = (c >= 0xa0 && c <= 0xbf) || (c >= 0xd9 && c <= 0xdb);
	uint64_t count;
	bool is_map;

	if (v_obj(&v, &end, 0, 0, false)) {
		r->err = -EPROTO;
		return;
	}
	if (is_key && !is_str) {
		struct sbuf t = { 0 };

		conv_at(r, &t, off, false);
		if (t.oom)
			b->oom = true;
		else
			put_jstr(b, (const uint8_t *)t.p, t.len);
		free(t.p);
		return;
	}
	if (v.maxdepth <= MSGPACK_C_MAX_DEPTH) {
		msgpack_unpacked res;
		size_t noff = *off;

		msgpack_unpacked_init(&res);
		if (msgpack_unpack_next(&res, (const char *)r->in, end, &noff) !=
			    MSGPACK_UNPACK_SUCCESS || noff != end)
			r->err = -EPROTO;
		else
			conv_obj(b, &res.data);
		msgpack_unpacked_destroy(&res);
		*off = end;
		return;
	}
	o = *off;
	if (c >= 0x80 && c <= 0x9f) {
		is_map = c <= 0x8f;
		count = c & 0x0f;
		o += 1;
	} else if (c == 0xdc || c == 0xde) {
		is_map = c == 0xde;
		count = load_be(r->in + o + 1, 2);
		o += 3;
	} else if (c == 0xdd || c == 0xdf) {
		is_map = c == 0xdf;
		count = load_be(r->in + o + 1, 4);
		o += 5;
	} else {
		r->err = -EPROTO;
		return;
	}
	sb_puts(b, is_map ? "{" : "[");
	for (uint64_t i = 0; i < count && !r->err; i++) {
		if (i)
			sb_puts(b, ",");
		if (is_map) {
			conv_at(r, b, &o, true);
			sb_puts(b, ":");
		}
		conv_at(r, b, &o, false);
	}
	sb_puts(b, is_map ? "}" : "]");
	*off = end;
}

/* msgpack-c's verdict on a rejected input must match the validator's reason. */
static int cross_check_reject(const uint8_t *in, size_t len, const char *why)
{
	msgpack_unpacked res;
	size_t off = 0;
	int rc, ok;

	/* Other reasons stop the validator where msgpack-c goes on, into unchecked counts. */
	if (strcmp(why, "truncated") && strcmp(why, "invalid byte 0xc1") &&
	    strcmp(why, "trailing bytes"))
		return 0;
	msgpack_unpacked_init(&res);
	rc = msgpack_unpack_next(&res, (const char *)in, len, &off);
	msgpack_unpacked_destroy(&res);
	if (!strcmp(why, "truncated"))
		ok = rc == MSGPACK_UNPACK_CONTINUE;
	else if (!strcmp(why, "invalid byte 0xc1"))
		ok = rc == MSGPACK_UNPACK_PARSE_ERROR;
	else
		ok = rc == MSGPACK_UNPACK_SUCCESS && off < len;
	return ok ? 0 : -EPROTO;
}

ssize_t ref_msgpack_to_json(const void *in, size_t len, char *out, size_t cap, const char **why)
{
	struct vstate v = { .in = in, .len = len };
	struct rstate r = { .in = in, .len = len };
	struct sbuf b = { 0 };
	size_t off = 0;
	ssize_t ret;

	if (v_obj(&v, &off, 0, 0, false) == 0 && off != len)
		fail(&v, "trailing bytes");
	if (v.why) {
		/* msgpack-c only sees inputs it can parse without huge allocations. */
		if (v.maxdepth <= MSGPACK_C_MAX_DEPTH && v.maxcount <= 65536 && !v.ext_max &&
		    !v.by_count &&
		    cross_check_reject(in, len, v.why))
			return -EPROTO;
		if (why)
			*why = v.why;
		return -EBADMSG;
	}
	off = 0;
	conv_at(&r, &b, &off, false);
	if (r.err)
		ret = r.err;
	else if (b.oom)
		ret = -ENOMEM;
	else if (b.len > cap)
		ret = -ENOSPC;
	else {
		if (b.len)
			memcpy(out, b.p, b.len);
		ret = (ssize_t)b.len;
	}
	free(b.p);
	return ret;
}
