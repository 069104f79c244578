/* mp2json.c: streaming msgpack -> compact JSON for the record writer.
 *
 * One forward pass over the input with an explicit, fixed stack: no object tree, no
 * allocation, no recursion. Records are maps of short ASCII keys to short strings and small
 * integers, so the hot path is: fixstr keys and their simple values handled without going
 * through the dispatch; otherwise a 256-entry table that gives, per type byte, the header's
 * length, the width of the number in it and what to do with it; strings up to 32 bytes
 * tested and copied as one or two 16-byte vectors (longer ones a vector at a time, SWAR where
 * there is no SSE2), and a digit-pair table. Everything else (floats, timestamps, non-string
 * keys, escapes, UTF-8 checking) takes a slower but exact path. Output rules are in
 * include/shmring/json.h.
 *
 * Space is checked exactly before every write, so a too-small buffer gives -ENOSPC and never
 * a wrong answer; a buffer of shmring_json_bound() bytes can never run out (see there).
 */
#include "shmring/json.h"
#include "digits.h"
#include "fpfmt.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__) && !defined(MP2JSON_NO_SIMD)
#include <emmintrin.h>
#define MP2JSON_SSE2 1
#endif

#define SHMRING_EXPORT __attribute__((visibility("default")))

#define MAX_FRAMES (SHMRING_JSON_MAX_DEPTH + SHMRING_JSON_MAX_KEY_NEST)

static const char R_TRUNC[] = "truncated";
static const char R_C1[] = "invalid byte 0xc1";
static const char R_DEEP[] = "nesting deeper than 64";
static const char R_KEYNEST[] = "non-string keys nested deeper than 2";
static const char R_TRAIL[] = "trailing bytes";

/* What the converter does with an object, by its type byte. */
enum { A_UINT, A_INT, A_F32, A_F64, A_LIT, A_STR, A_BIN, A_EXT, A_ARRAY, A_MAP, A_BAD };

/* An object's header: its type byte, then `width` bytes of big-endian number (the value, a
 * length or a count), then for ext its type: `hdr` bytes in all. With no width the number
 * is `num`, which the type byte itself carries. */
struct op {
	uint8_t act, hdr, width, num;
};

#define OP(act, hdr, width) { act, hdr, width, 0 }
#define FIX(act, hdr, num) { act, hdr, 0, num }
#define POSFIX(i) FIX(A_UINT, 1, (i))
#define NEGFIX(i) FIX(A_INT, 1, 0xe0 + (i))	/* a one-byte two's complement number */
#define FIXMAP(i) FIX(A_MAP, 1, (i))
#define FIXARR(i) FIX(A_ARRAY, 1, (i))
#define FIXSTR(i) FIX(A_STR, 1, (i))
#define R4(m, i) m(i), m((i) + 1), m((i) + 2), m((i) + 3)
#define R16(m, i) R4(m, i), R4(m, (i) + 4), R4(m, (i) + 8), R4(m, (i) + 12)
static const struct op head_of[] = {
	R16(POSFIX, 0x00), R16(POSFIX, 0x10), R16(POSFIX, 0x20), R16(POSFIX, 0x30),
	R16(POSFIX, 0x40), R16(POSFIX, 0x50), R16(POSFIX, 0x60), R16(POSFIX, 0x70),
	R16(FIXMAP, 0), R16(FIXARR, 0), R16(FIXSTR, 0), R16(FIXSTR, 16),	/* 0x80 */
	/* 0xc0: nil, never used, false, true */
	FIX(A_LIT, 1, 0), FIX(A_BAD, 1, 0), FIX(A_LIT, 1, 1), FIX(A_LIT, 1, 2),
	/* 0xc4: bin 8, 16, 32; ext 8, 16, 32; float 32, 64 */
	OP(A_BIN, 2, 1), OP(A_BIN, 3, 2), OP(A_BIN, 5, 4),
	OP(A_EXT, 3, 1), OP(A_EXT, 4, 2), OP(A_EXT, 6, 4),
	OP(A_F32, 5, 4), OP(A_F64, 9, 8),
	/* 0xcc: uint 8, 16, 32, 64; int 8, 16, 32, 64 */
	OP(A_UINT, 2, 1), OP(A_UINT, 3, 2), OP(A_UINT, 5, 4), OP(A_UINT, 9, 8),
	OP(A_INT, 2, 1), OP(A_INT, 3, 2), OP(A_INT, 5, 4), OP(A_INT, 9, 8),
	/* 0xd4: fixext 1, 2, 4, 8, 16 */
	FIX(A_EXT, 2, 1), FIX(A_EXT, 2, 2), FIX(A_EXT, 2, 4), FIX(A_EXT, 2, 8), FIX(A_EXT, 2, 16),
	/* 0xd9: str 8, 16, 32; array 16, 32; map 16, 32 */
	OP(A_STR, 2, 1), OP(A_STR, 3, 2), OP(A_STR, 5, 4),
	OP(A_ARRAY, 3, 2), OP(A_ARRAY, 5, 4), OP(A_MAP, 3, 2), OP(A_MAP, 5, 4),
	R16(NEGFIX, 0), R16(NEGFIX, 16),					/* 0xe0 */
};
_Static_assert(sizeof(head_of) == 256 * sizeof(struct op), "one header per byte value");

/* What a string byte below 0x80 turns into: 0 = itself, 'u' = \u00XX, else \<that char>.
 * Same set as serde_json: control bytes, '"' and '\\'; 0x7f and '/' pass as they are. */
static const char esc_of[128] = {
	'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'b', 't', 'n', 'u', 'f', 'r', 'u', 'u',
	'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
	0, 0, '"', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '\\', 0, 0, 0,
};

static const char hexdig[] = "0123456789abcdef";
static const char b64dig[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static inline uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t be32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return __builtin_bswap32(v);
}

static inline uint64_t be64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return __builtin_bswap64(v);
}

static inline bool is_str_byte(uint8_t b)
{
	return (b & 0xe0) == 0xa0 || (b >= 0xd9 && b <= 0xdb);
}

/* Writes exactly nd digits of v ending at o + nd, from the back: four per 64-bit division,
 * then the last pairs in 32-bit arithmetic (cheaper than a 64-bit division per pair). */
static inline void put_digits(char *o, uint64_t v, unsigned nd)
{
	char *q = o + nd;
	uint32_t w;

	while (v >= 10000) {
		uint32_t r = (uint32_t)(v % 10000);

		v /= 10000;
		q -= 4;
		memcpy(q, digit_pairs + 2 * (r / 100), 2);
		memcpy(q + 2, digit_pairs + 2 * (r % 100), 2);
	}
	w = (uint32_t)v;
	if (w >= 100) {
		q -= 2;
		memcpy(q, digit_pairs + 2 * (w % 100), 2);
		w /= 100;
	}
	if (w >= 10) {
		q -= 2;
		memcpy(q, digit_pairs + 2 * w, 2);
	} else {
		*--q = (char)('0' + w);
	}
}

static inline uint64_t b64_len(uint64_t n)
{
	return (n + 2) / 3 * 4;
}

static char *put_b64(char *o, const uint8_t *s, size_t n)
{
	for (; n >= 3; n -= 3, s += 3) {
		uint32_t v = (uint32_t)s[0] << 16 | (uint32_t)s[1] << 8 | s[2];

		o[0] = b64dig[v >> 18];
		o[1] = b64dig[v >> 12 & 63];
		o[2] = b64dig[v >> 6 & 63];
		o[3] = b64dig[v & 63];
		o += 4;
	}
	if (n) {
		uint32_t v = (uint32_t)s[0] << 16 | (n == 2 ? (uint32_t)s[1] << 8 : 0);

		o[0] = b64dig[v >> 18];
		o[1] = b64dig[v >> 12 & 63];
		o[2] = n == 2 ? b64dig[v >> 6 & 63] : '=';
		o[3] = '=';
		o += 4;
	}
	return o;
}

#ifdef MP2JSON_SSE2
/* One bit per byte that a JSON string cannot carry as is: control bytes, '"', '\\', and
 * (signed compare: they are negative) every byte >= 0x80, which needs UTF-8 checking. */
static inline unsigned special_mask(__m128i v)
{
	__m128i m = _mm_or_si128(_mm_cmplt_epi8(v, _mm_set1_epi8(0x20)),
				 _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
					      _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))));

	return (unsigned)_mm_movemask_epi8(m);
}
#endif

/* Length of the run at s (within [s, e)) of bytes that copy through unchanged: printable
 * ASCII other than '"' and '\\'. May read up to iend (the end of the readable input, iend >= e),
 * never past it, so whole vectors are loaded even for short strings in the middle of a record. */
static inline size_t clean_prefix(const uint8_t *s, const uint8_t *e, const uint8_t *iend)
{
	const uint8_t *q = s;

#ifdef MP2JSON_SSE2
	while (q < e && iend - q >= 16) {
		unsigned bits = special_mask(_mm_loadu_si128((const __m128i *)(const void *)q));

		if (bits) {
			size_t r = (size_t)(q - s) + (size_t)__builtin_ctz(bits);

			return r < (size_t)(e - s) ? r : (size_t)(e - s);
		}
		q += 16;
	}
#endif
	/* SWAR, eight bytes at a time. The lowest flagged byte of each test is exact (a false
	 * flag can only sit above a true one), and that is the only one we use. */
	while (q < e && iend - q >= 8) {
		const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
		uint64_t w, x, y, m;

		memcpy(&w, q, 8);
		x = w ^ (ones * '"');
		y = w ^ (ones * '\\');
		m = (w & high) | ((w - ones * 0x20) & ~w & high) | ((x - ones) & ~x & high) |
		    ((y - ones) & ~y & high);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
		m = __builtin_bswap64(m);
#endif
		if (m) {
			size_t r = (size_t)(q - s) + (size_t)(__builtin_ctzll(m) >> 3);

			return r < (size_t)(e - s) ? r : (size_t)(e - s);
		}
		q += 8;
	}
	if (q >= e)
		return (size_t)(e - s);
	while (q < e && *q >= 0x20 && *q < 0x80 && !esc_of[*q])
		q++;
	return (size_t)(q - s);
}

/* One UTF-8 sequence at s (*s >= 0x80, s < e): its length when valid, else minus the length
 * of its maximal invalid subpart (Unicode 3.9 / WHATWG: that many bytes become one U+FFFD,
 * and the byte that broke the sequence is looked at again). */
static inline int utf8_seq(const uint8_t *s, const uint8_t *e)
{
	size_t avail = (size_t)(e - s);
	uint8_t c = s[0], lo = 0x80, hi = 0xbf;
	int need;

	if (c < 0xc2 || c > 0xf4)
		return -1;
	if (c < 0xe0) {
		need = 1;
	} else if (c < 0xf0) {
		need = 2;
		if (c == 0xe0)
			lo = 0xa0;	/* overlong */
		else if (c == 0xed)
			hi = 0x9f;	/* surrogates */
	} else {
		need = 3;
		if (c == 0xf0)
			lo = 0x90;	/* overlong */
		else if (c == 0xf4)
			hi = 0x8f;	/* > U+10FFFF */
	}
	if (avail < 2 || s[1] < lo || s[1] > hi)
		return -1;
	for (int i = 2; i <= need; i++)
		if (avail <= (size_t)i || (s[i] & 0xc0) != 0x80)
			return -i;
	return need + 1;
}

/* Room for n more bytes. chk is a constant in each instance of convert(): false in the one
 * that runs when the buffer holds shmring_json_bound() of the input, where every check would
 * pass (the dearest input writes 17 bytes per byte and nothing writes more than 32 bytes past
 * its end: the bound's 18 per byte and 1024 leave room for both), so the compiler drops it. */
static inline bool room(const char *o, const char *oend, uint64_t n, bool chk)
{
	return !chk || (uint64_t)(oend - o) >= n;
}

/* The general case of put_str(): the opening quote is out and room for the rest checked.
 * Every input byte gives at least one output byte, so that one check covers plain bytes and
 * each expansion checks for its extra bytes with the rest of the string still owed. */
static char *put_str_slow(char *o, char *oend, const uint8_t *s, const uint8_t *e,
			  const uint8_t *iend)
{
	for (;;) {
		size_t run;

#ifdef MP2JSON_SSE2
		/* Copy whole vectors while they are clean and both sides have room for them. */
		while (e - s >= 16 && oend - o >= 16) {
			__m128i v = _mm_loadu_si128((const __m128i *)(const void *)s);
			unsigned bits = special_mask(v);

			_mm_storeu_si128((__m128i *)(void *)o, v);
			if (bits) {
				s += __builtin_ctz(bits);
				o += __builtin_ctz(bits);
				goto special;
			}
			s += 16;
			o += 16;
		}
#endif
		run = clean_prefix(s, e, iend);
		memcpy(o, s, run);
		o += run;
		s += run;
		if (s == e)
			break;
#ifdef MP2JSON_SSE2
special:
#endif
		while (s < e && *s >= 0x80) {
			int k = utf8_seq(s, e);

			if (k > 0) {
				memcpy(o, s, (size_t)k);
				o += k;
				s += k;
			} else {
				/* -k bytes in, 3 out (plus the rest and the closing quote). */
				if ((size_t)(oend - o) < (size_t)(e - s) - (size_t)-k + 4)
					return NULL;
				memcpy(o, "\xef\xbf\xbd", 3);
				o += 3;
				s += -k;
			}
		}
		if (s < e && (*s < 0x20 || esc_of[*s])) {
			char c = esc_of[*s];
			size_t extra = c == 'u' ? 5 : 1;

			if ((size_t)(oend - o) < (size_t)(e - s) + extra + 1)
				return NULL;
			o[0] = '\\';
			if (c == 'u') {
				memcpy(o + 1, "u00", 3);
				o[4] = hexdig[*s >> 4];
				o[5] = hexdig[*s & 15];
				o += 6;
			} else {
				o[1] = c;
				o += 2;
			}
			s++;
		}
	}
	*o++ = '"';
	return o;
}

/* Writes s[0..n) as a JSON string. iend bounds what may be read ahead (see clean_prefix).
 * Returns the new cursor, or NULL when out of space. */
static inline __attribute__((always_inline)) char *put_str(char *o, char *oend,
							     const uint8_t *s, size_t n,
							     const uint8_t *iend, bool chk)
{
	const uint8_t *e = s + n;

	if (!room(o, oend, (uint64_t)n + 2, chk))
		return NULL;
	*o++ = '"';
#ifdef MP2JSON_SSE2
	/* Short strings (ids, keys, names) whose 16-byte block is readable and writable: one
	 * load, one test, one store. The store may write past the string; later output or
	 * nothing at all lands there, and it stays below oend. */
	if (n <= 16 && iend - s >= 16 && room(o, oend, 16, chk)) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)s);
		unsigned bits = special_mask(v) & ((1u << n) - 1);

		if (!bits) {
			_mm_storeu_si128((__m128i *)(void *)o, v);
			o += n;
			*o++ = '"';
			return o;
		}
	} else if (n <= 32 && iend - s >= 32 && room(o, oend, 32, chk)) {
		/* ids and paths: two vectors */
		__m128i v0 = _mm_loadu_si128((const __m128i *)(const void *)s);
		__m128i v1 = _mm_loadu_si128((const __m128i *)(const void *)(s + 16));
		uint64_t bits = (special_mask(v0) | (uint64_t)special_mask(v1) << 16) &
				((1ull << n) - 1);

		if (!bits) {
			_mm_storeu_si128((__m128i *)(void *)o, v0);
			_mm_storeu_si128((__m128i *)(void *)(o + 16), v1);
			o += n;
			*o++ = '"';
			return o;
		}
	}
#endif
	return put_str_slow(o, oend, s, e, iend);
}


/* A finished non-string key: its JSON text sits in [start, o); escape it in place as string
 * content and close the quote opened before it. The text is our own output, so it holds no
 * control bytes and valid UTF-8 only: '"' and '\\' are all that change. Nested keys were
 * escaped when they finished, so their text is escaped once more here, as the spec says. */
static char *close_key(char *start, char *o, char *oend)
{
	size_t q = 0, grow;

	for (char *c = start; c < o; c++)
		q += *c == '"' || *c == '\\';
	if ((size_t)(oend - o) < q + 1)
		return NULL;
	/* Back to front, so nothing is overwritten before it has moved. */
	grow = q;
	for (char *src = o - 1, *dst = o - 1 + q; q; src--) {
		*dst-- = *src;
		if (*src == '"' || *src == '\\') {
			*dst-- = '\\';
			q--;
		}
	}
	o += grow;
	*o++ = '"';
	return o;
}

/* msgpack timestamp (ext -1) as a quoted RFC 3339 UTC string into buf (room for 40), or 0 when
 * it is not one we render: wrong size, nanoseconds >= 1e9, or a year outside 0000..9999. */
static size_t fmt_timestamp(char *buf, const uint8_t *d, size_t n)
{
	/* 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z */
	const int64_t min_sec = -62167219200LL, max_sec = 253402300799LL;
	int64_t sec, days, doe, yoe, y, doy, mp, era;
	uint32_t nsec, sod;
	unsigned mon, day;
	char *o = buf;

	if (n == 4) {
		sec = be32(d);
		nsec = 0;
	} else if (n == 8) {
		uint64_t x = be64(d);

		nsec = (uint32_t)(x >> 34);
		sec = (int64_t)(x & 0x3ffffffffull);
	} else if (n == 12) {
		nsec = be32(d);
		sec = (int64_t)be64(d + 4);
	} else {
		return 0;
	}
	if (nsec >= 1000000000u || sec < min_sec || sec > max_sec)
		return 0;
	/* Floor division, then days-to-civil (H. Hinnant's algorithm, proleptic Gregorian). */
	days = sec / 86400;
	if (sec % 86400 < 0)
		days--;
	sod = (uint32_t)(sec - days * 86400);
	days += 719468;
	era = (days >= 0 ? days : days - 146096) / 146097;
	doe = days - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	day = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
	mon = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
	y = yoe + era * 400 + (mon <= 2);

	*o++ = '"';
	memcpy(o, digit_pairs + 2 * (y / 100), 2);
	memcpy(o + 2, digit_pairs + 2 * (y % 100), 2);
	o[4] = '-';
	memcpy(o + 5, digit_pairs + 2 * mon, 2);
	o[7] = '-';
	memcpy(o + 8, digit_pairs + 2 * day, 2);
	o[10] = 'T';
	memcpy(o + 11, digit_pairs + 2 * (sod / 3600), 2);
	o[13] = ':';
	memcpy(o + 14, digit_pairs + 2 * (sod / 60 % 60), 2);
	o[16] = ':';
	memcpy(o + 17, digit_pairs + 2 * (sod % 60), 2);
	o += 19;
	if (nsec) {
		unsigned nd = 9;

		while (nsec % 10 == 0) {
			nsec /= 10;
			nd--;
		}
		*o++ = '.';
		/* put_digits writes exactly nd digits, so leading zeros come out too */
		memset(o, '0', nd);
		put_digits(o + nd - ndigits(nsec), nsec, ndigits(nsec));
		o += nd;
	}
	memcpy(o, "Z\"", 2);
	o += 2;
	return (size_t)(o - buf);
}

/* The number in the header at p: in the type byte itself or the big-endian bytes after it. */
static inline uint64_t head_num(const uint8_t *p, struct op op)
{
	switch (op.width) {
	case 0:
		return op.num;
	case 1:
		return p[1];
	case 2:
		return be16(p + 1);
	case 4:
		return be32(p + 1);
	default:
		return be64(p + 1);
	}
}

/* The writers below return the new cursor, or NULL when out of space. */

static inline char *put_uint(char *o, char *oend, uint64_t v, bool chk)
{
	unsigned nd = ndigits(v);

	if (!room(o, oend, nd, chk))
		return NULL;
	put_digits(o, v, nd);
	return o + nd;
}

/* n is a two's complement number of `width` bytes (a negative fixint: its one type byte). */
static inline char *put_int(char *o, char *oend, uint64_t n, unsigned width, bool chk)
{
	uint64_t sign = 1ull << (8 * (width ? width : 1) - 1);
	uint64_t v = (n ^ sign) - sign;		/* sign-extended to 64 bits */
	unsigned nd;

	if (!(v >> 63))
		return put_uint(o, oend, v, chk);
	v = 0 - v;				/* the magnitude, exact for INT64_MIN too */
	nd = ndigits(v);
	if (!room(o, oend, nd + 1, chk))
		return NULL;
	*o++ = '-';
	put_digits(o, v, nd);
	return o + nd;
}

static inline char *put_text(char *o, char *oend, const char *t, size_t tl, bool chk)
{
	if (!room(o, oend, tl, chk))
		return NULL;
	memcpy(o, t, tl);
	return o + tl;
}

/* bits: an f32 (width 4) or an f64. Formatted in place when the longest text fits, else
 * through a buffer so that running out of space is still exact. */
static inline char *put_float(char *o, char *oend, uint64_t bits, unsigned width, bool chk)
{
	uint32_t u = (uint32_t)bits;
	char tmp[FPFMT_MAX];
	double d;
	float f;

	memcpy(&f, &u, 4);
	memcpy(&d, &bits, 8);
	if (room(o, oend, FPFMT_MAX, chk))
		return o + (width == 4 ? fpfmt_f32(o, f) : fpfmt_f64(o, d));
	return put_text(o, oend, tmp, width == 4 ? fpfmt_f32(tmp, f) : fpfmt_f64(tmp, d), chk);
}

/* which: 0 nil, 1 false, 2 true */
static inline char *put_lit(char *o, char *oend, uint64_t which, bool chk)
{
	if (which == 1)
		return put_text(o, oend, "false", 5, chk);
	return put_text(o, oend, which ? "true" : "null", 4, chk);
}

static char *put_bin(char *o, char *oend, const uint8_t *d, size_t n)
{
	if (!room(o, oend, b64_len(n) + 2, true))
		return NULL;
	*o++ = '"';
	o = put_b64(o, d, n);
	*o++ = '"';
	return o;
}

/* A timestamp (type -1) as text when it is one fmt_timestamp() renders, any other ext as
 * {"ext":TYPE,"base64":"..."}. */
static char *put_ext(char *o, char *oend, int8_t type, const uint8_t *d, size_t n)
{
	unsigned mag = (unsigned)(type < 0 ? -type : type), nd = ndigits(mag);
	char ts[40];
	size_t tl;

	if (type == -1 && (tl = fmt_timestamp(ts, d, n)) != 0)
		return put_text(o, oend, ts, tl, true);
	if (!room(o, oend, sizeof("{\"ext\":,\"base64\":\"\"}") - 1 + (type < 0) + nd + b64_len(n), true))
		return NULL;
	memcpy(o, "{\"ext\":", 7);
	o += 7;
	if (type < 0)
		*o++ = '-';
	put_digits(o, mag, nd);
	memcpy(o + nd, ",\"base64\":\"", 11);
	o = put_b64(o + nd + 11, d, n);
	memcpy(o, "\"}", 2);
	return o + 2;
}

/* A saved enclosing frame; the innermost one lives in locals (left, kind) so the hot loop
 * keeps it in registers. */
struct frame {
	uint64_t left;		/* items still to come: elements, or keys plus values */
	uint8_t kind;
};

enum { F_TOP, F_ARRAY, F_MAP, F_KEY };
_Static_assert(F_ARRAY >> 1 == 0 && F_MAP >> 1 == 1, "kind >> 1 tells a map from an array");

#define ROOM(n)                                                 \
	do {                                                    \
		if (!room(o, oend, (n), chk))                   \
			goto nospace;                           \
	} while (0)
#define PUSH(n, k)                                              \
	do {                                                    \
		stk[sp].left = left;                            \
		stk[sp].kind = (uint8_t)kind;                   \
		sp++;                                           \
		left = (n);                                     \
		kind = (k);                                     \
	} while (0)

SHMRING_EXPORT size_t shmring_json_bound(size_t len)
{
	/* Charge each object's output to its own bytes: its text, the separator before it, and
	 * for a non-string key the escaped quotes around it. Escaping leaves every byte but '"'
	 * and '\\' alone and doubles those, so at the deepest level (a key inside a key: two
	 * escapes) each of them costs 4. The dearest object per byte is then a fixext1 key there:
	 * {"ext":-128,"base64":"AA=="} is 22 plain bytes and 6 quotes, 22 + 24 + 4 + 1 = 51 bytes
	 * for 3 in, 17 per byte. Others: ext8 of length 0 15.7, false as such a key 10, a control
	 * byte in a string there (\\\\u001f) 9, false in an array 6. The error record is
	 * 2 * len + at most 830 bytes (why is capped at SHMRING_JSON_WHY_MAX bytes, 6 out per
	 * byte). tests/test_json.c measures these. */
	if (len > (SIZE_MAX - 1024) / 18)
		return SIZE_MAX;
	return 18 * len + 1024;
}

/* The conversion proper: one object at [p, end) (p < end) into [out, oend). Returns the
 * length written, -ENOSPC, or -EBADMSG with *err set.
 * Longer than our ~100 lines on purpose: it is the state machine (fast paths, dispatch,
 * containers, separators) as one function with gotos, so that the cursors and the innermost
 * frame stay in registers from one object to the next; the work is in the writers above. */
static inline __attribute__((always_inline)) ssize_t
convert(const uint8_t *p, const uint8_t *end, char *out, char *oend, const char **err,
	const bool chk)
{
	struct frame stk[MAX_FRAMES];
	char *kstart[SHMRING_JSON_MAX_KEY_NEST];	/* where each open key's text starts */
	unsigned sp = 0, klev = 0, kind = F_TOP;	/* sp - klev: containers open */
	uint64_t left = 0, n;
	char *o = out;
	struct op op;
	uint8_t b;

next:
	if (p == end)
		goto truncated;
	b = *p;
	if (kind == F_MAP && !(left & 1)) {
		if ((b & 0xe0) == 0xa0) {
			/* The usual key, a fixstr: write it and the colon here, saving a trip
			 * through the dispatch and the completion loop. */
			n = b & 31;
			p += 1;
			if ((size_t)(end - p) < n)
				goto truncated;
			o = put_str(o, oend, p, (size_t)n, end, chk);
			if (!o || (chk && o == oend))
				goto nospace;
			*o++ = ':';
			p += n;
			left--;
			/* and the usual values, short strings and small integers, likewise */
			if (p == end)
				goto truncated;
			b = *p;
			if ((b & 0xe0) == 0xa0) {
				n = b & 31;
				p += 1;
				goto str;
			}
			if (b < 0x80) {
				n = b;
				p += 1;
				goto uint;
			}
			goto dispatch;
		}
		if (!is_str_byte(b)) {
			/* A non-string key: render it as usual after an opening quote;
			 * close_key() escapes the text when the key is complete. */
			if (b == 0xc1)
				goto bad_c1;
			if (klev == SHMRING_JSON_MAX_KEY_NEST) {
				*err = R_KEYNEST;
				return -EBADMSG;
			}
			ROOM(1);
			*o++ = '"';
			kstart[klev++] = o;
			PUSH(1, F_KEY);
		}
	}
dispatch:
	/* Every other object: its header, then what its type byte says to do. */
	op = head_of[b];
	if ((size_t)(end - p) < op.hdr)
		goto truncated;
	n = head_num(p, op);
	p += op.hdr;
	switch (op.act) {
	case A_UINT:
		goto uint;
	case A_STR:
		goto str;
	case A_ARRAY:
	case A_MAP:
		goto open;
	case A_BAD:
		goto bad_c1;
	case A_INT:
		o = put_int(o, oend, n, op.width, chk);
		goto put;
	case A_F32:
		o = put_float(o, oend, n, 4, chk);
		goto put;
	case A_F64:
		o = put_float(o, oend, n, 8, chk);
		goto put;
	case A_LIT:
		o = put_lit(o, oend, n, chk);
		goto put;
	}
	/* bin and ext: a payload of n bytes, the ext's type just before it */
	if ((uint64_t)(end - p) < n)
		goto truncated;
	o = op.act == A_BIN ? put_bin(o, oend, p, (size_t)n)
			    : put_ext(o, oend, (int8_t)p[-1], p, (size_t)n);
	p += n;
	goto put;
uint:
	o = put_uint(o, oend, n, chk);
	goto put;
str:
	if ((uint64_t)(end - p) < n)
		goto truncated;
	o = put_str(o, oend, p, (size_t)n, end, chk);
	p += n;
put:
	if (!o)
		goto nospace;
	goto done;
open:
	if (sp - klev == SHMRING_JSON_MAX_DEPTH) {
		*err = R_DEEP;
		return -EBADMSG;
	}
	/* Each element takes at least one byte, each pair two: refuse a count the input
	 * cannot hold now, rather than discover it one element at a time. */
	n <<= op.act == A_MAP;
	if (n > (uint64_t)(end - p))
		goto truncated;
	ROOM(1 + !n);
	*o++ = op.act == A_MAP ? '{' : '[';
	if (n == 0) {
		*o++ = op.act == A_MAP ? '}' : ']';
		goto done;
	}
	PUSH(n, op.act == A_MAP ? F_MAP : F_ARRAY);
	goto next;

done:
	/* An item is complete: separate it from the next one, or close what it completed. */
	while (kind != F_TOP) {
		if (--left) {
			ROOM(1);
			/* In a map an odd count left means a value comes next. Only arrays
			 * and maps get here (a key frame holds one item), so kind >> 1 tells
			 * a map, without a branch. */
			*o++ = (char)(',' + (':' - ',') * ((kind >> 1) & left & 1));
			goto next;
		}
		if (kind == F_KEY) {
			o = close_key(kstart[--klev], o, oend);
			if (!o)
				goto nospace;
		} else {
			ROOM(1);
			*o++ = (char)(']' + ('}' - ']') * (kind >> 1));
		}
		sp--;
		left = stk[sp].left;
		kind = stk[sp].kind;
	}
	if (p != end) {
		*err = R_TRAIL;
		return -EBADMSG;
	}
	return (ssize_t)(o - out);

truncated:
	*err = R_TRUNC;
	return -EBADMSG;
bad_c1:
	*err = R_C1;
	return -EBADMSG;
nospace:
	return -ENOSPC;
}

/* The two instances: with every room check, and without (the writer's case: it always
 * gives the bound; 4 % fewer instructions a record). */
static ssize_t convert_checked(const uint8_t *in, size_t len, char *out, size_t cap,
			       const char **err)
{
	return convert(in, in + len, out, out + cap, err, true);
}

static ssize_t convert_roomy(const uint8_t *in, size_t len, char *out, size_t cap,
			     const char **err)
{
	return convert(in, in + len, out, out + cap, err, false);
}

SHMRING_EXPORT ssize_t shmring_msgpack_to_json(const void *in, size_t len, char *out,
					       size_t cap, const char **why)
{
	const char *err = R_TRUNC;
	ssize_t r = -EBADMSG;
	char dummy;

	if (!out) {
		out = &dummy;
		cap = 0;
	}
	if (len)
		r = cap >= shmring_json_bound(len) ? convert_roomy(in, len, out, cap, &err)
						   : convert_checked(in, len, out, cap, &err);
	if (r == -EBADMSG && why)
		*why = err;
	return r;
}

SHMRING_EXPORT ssize_t shmring_json_error_record(const char *why, uint64_t seq, const void *raw,
						 size_t len, char *out, size_t cap)
{
	static const char head[] = "{\"shmring_error\":";
	static const char mid[] = ",\"seq\":";
	static const char tail[] = ",\"base64\":\"";
	char dummy, *o, *oend;
	size_t wl;
	unsigned nd = ndigits(seq);

	if (!why)
		why = "unknown";
	wl = strnlen(why, SHMRING_JSON_WHY_MAX);
	if (!out) {
		out = &dummy;
		cap = 0;
	}
	o = out;
	oend = out + cap;
	const bool chk = true;
	ROOM(sizeof(head) - 1);
	memcpy(o, head, sizeof(head) - 1);
	o = put_str(o + sizeof(head) - 1, oend, (const uint8_t *)why, wl,
		    (const uint8_t *)why + wl, true);
	if (!o)
		goto nospace;
	ROOM(sizeof(mid) - 1 + nd + sizeof(tail) - 1 + b64_len(len) + 2);
	memcpy(o, mid, sizeof(mid) - 1);
	o += sizeof(mid) - 1;
	put_digits(o, seq, nd);
	o += nd;
	memcpy(o, tail, sizeof(tail) - 1);
	o += sizeof(tail) - 1;
	if (len)
		o = put_b64(o, raw, len);
	memcpy(o, "\"}", 2);
	o += 2;
	return (ssize_t)(o - out);
nospace:
	return -ENOSPC;
}
