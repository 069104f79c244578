/* fpfmt.c: the shortest round-trip digits of a double or float, and serde_json's layout.
 *
 * The digit search is Raffaello Giulietti's Schubfach ("The Schubfach way to render
 * doubles", 2020). The value is c * 2^q; its rounding interval runs between the halfway
 * points to its neighbours, (4c - 2) / 4 * 2^q and (4c + 2) / 4 * 2^q (4c - 1 below a
 * power of two, where the gap below is half as wide), and its ends belong to it exactly
 * when c is even (round-half-even reading). Pick k with 10^k <= the interval's width
 * < 10^(k+1), so at most one multiple of 10^(k+1) lies in it and at least one of 10^k; one
 * 64x128-bit multiply per point by a 128-bit 10^-k, rounded to odd (the low bit says
 * "inexact"), places the value and both ends at that scale exactly enough to compare.
 * Then: the one multiple of 10^(k+1) if the interval holds it (its trailing zeros are
 * the shorter decimals), else the multiple of 10^k closest to the value (ties to even).
 * That is the decimal Ryu finds, in a fixed number of steps (no digit-by-digit loop):
 * when it replaced our Ryu code, all 2^32 floats and 700 M doubles (random bits, short
 * decimals, powers of two, subnormals) came out byte for byte the same; the tests compare
 * with the shortest strtod round trip (test_json_diff) and with serde_json (test_rust).
 *
 * A float goes through the same search: its significand is narrower and its exponents lie
 * inside the double's. The layout is the Rust ryu crate's format64/format32 (what
 * serde_json 1.0 writes). Nothing here allocates or reads the locale. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "digits.h"
#include "fpfmt.h"
#include "fpfmt_tables.h"

/* floor(log10(2^q)), floor(log10(3/4 * 2^q)) and floor(log2(10^e)) as fixed-point logs
 * (an arithmetic shift floors); tools/gen_fpfmt_tables.py checks them against exact integer
 * arithmetic for -1100 <= q < 1100 and -400 <= e < 400, past every exponent used here. */
static inline int32_t flog10_pow2(int32_t q)
{
	return (q * 315653) >> 20;
}

static inline int32_t flog10_three_quarters_pow2(int32_t q)
{
	return (q * 1262611 - 524031) >> 22;
}

static inline int32_t flog2_pow10(int32_t e)
{
	return (e * 1741647) >> 19;
}

/* floor(g * cp / 2^128), its lowest bit set when the product was not exact: g is 10^e
 * rounded up to 128 bits, and g's excess stays under 2 in the discarded part (hence > 1). */
static inline uint64_t round_to_odd(const uint64_t g[2], uint64_t cp)
{
	const unsigned __int128 x = (unsigned __int128)g[0] * cp;
	const unsigned __int128 y = (unsigned __int128)g[1] * cp + (uint64_t)(x >> 64);

	return (uint64_t)(y >> 64) | ((uint64_t)y > 1);
}

struct decimal {
	uint64_t digits;
	int32_t exp; /* value = digits * 10^exp */
};

/* d without its trailing zeros (the search returns the 10^(k+1) candidate at 16 or 17
 * digits even when it is 25000000000000000: 0.25). */
static inline struct decimal strip_zeros(struct decimal d)
{
	if (d.digits % 10)
		return d;
	while (d.digits % 100000000 == 0) {
		d.digits /= 100000000;
		d.exp += 8;
	}
	if (d.digits % 10000 == 0) {
		d.digits /= 10000;
		d.exp += 4;
	}
	if (d.digits % 100 == 0) {
		d.digits /= 100;
		d.exp += 2;
	}
	if (d.digits % 10 == 0) {
		d.digits /= 10;
		d.exp++;
	}
	return d;
}

/* The shortest decimal in the rounding interval of c * 2^q (c the full significand, with
 * its hidden bit; c < 2^53), the closest to it among those; lower_closer says the gap
 * below is half the gap above (a power of two, except the smallest normal). */
static struct decimal shortest(uint64_t c, int32_t q, bool lower_closer)
{
	const bool even = (c & 1) == 0;
	/* 10^k <= the interval's width (2^q, or 3/4 2^q below a power of two) < 10^(k+1). */
	const int32_t k = lower_closer ? flog10_three_quarters_pow2(q) : flog10_pow2(q);
	/* 1 <= h <= 4, so 4c << h < 2^59: the points at 10^-k, times 4, in one multiply each. */
	const int32_t h = q + flog2_pow10(-k) + 1;
	const uint64_t *g = fpfmt_g[-k - FPFMT_G_EMIN];
	const uint64_t vb = round_to_odd(g, c << 2 << h);
	const uint64_t lower = round_to_odd(g, ((c << 2) - 2 + lower_closer) << h) + !even;
	const uint64_t upper = round_to_odd(g, ((c << 2) + 2) << h) - !even;
	const uint64_t s = vb >> 2;

	if (s >= 10) {
		/* The multiples of 10^(k+1) each side of the value: is exactly one inside? */
		const uint64_t sp = s / 10, up = sp * 40, wp = up + 40;
		const bool u_in = lower <= up, w_in = wp <= upper;

		if (u_in != w_in)
			return strip_zeros((struct decimal){ sp + w_in, k + 1 });
	}
	const uint64_t u = vb & ~(uint64_t)3, w = u + 4, mid = u + 2;
	const bool u_in = lower <= u, w_in = w <= upper;

	if (u_in != w_in)
		return strip_zeros((struct decimal){ s + w_in, k });
	/* Both inside: the closer; exactly halfway (vb even: exact), the even one. */
	return strip_zeros((struct decimal){ s + (vb > mid || (vb == mid && (s & 1))), k });
}

/* The 8 digits of v < 10^8 as ASCII, the first in the lowest byte (SWAR: split into
 * halves of 4, of 2, of 1 digit inside one register; no lane can carry into the next:
 * 9999 * 10486 < 2^32 and 99 * 103 < 2^16). */
static inline uint64_t digits8(uint32_t v)
{
	uint64_t y = (v / 10000) | (uint64_t)(v % 10000) << 32;
	uint64_t t = ((y * 10486) >> 20) & 0x0000007f0000007full;	/* y / 100 per lane */
	uint64_t z = t | (y - t * 100) << 16;
	uint64_t u = ((z * 103) >> 10) & 0x000f000f000f000full;		/* z / 10 per lane */

	return (u | (z - u * 10) << 8) | 0x3030303030303030ull;
}

/* The n <= 17 digits of v as ASCII, ending at db[24) (db: 48 bytes), and '0's in the rest
 * of db; returns where they start. Any 16-byte window from one byte before the start lies
 * inside db, and the 24 bytes from the end of the digits are '0's (the layout's padding). */
static inline const char *digits_of(char db[48], uint64_t v, int n)
{
	uint64_t w;

	memset(db, '0', 48);
	if (n > 8) {
		const uint64_t hi = v / 100000000;

		w = digits8((uint32_t)(v - hi * 100000000));
		memcpy(db + 16, &w, 8);
		if (n > 16) {
			w = digits8((uint32_t)(hi % 100000000));
			memcpy(db + 8, &w, 8);
			w = digits8((uint32_t)(hi / 100000000));
			memcpy(db, &w, 8);
		} else {
			w = digits8((uint32_t)hi);
			memcpy(db + 8, &w, 8);
		}
	} else {
		w = digits8((uint32_t)v);
		memcpy(db + 16, &w, 8);
	}
	return db + 24 - n;
}

/* p[0 .. n + 1) = D[0 .. kk) '.' D[kk .. n) for the n <= 17 digits D at d, 0 < kk <= 16:
 * each byte of p[0 .. 16) is D[i] left of the dot and D[i - 1] right of it, one blend of
 * two 16-byte loads; p[16 .. 24) is D[15 .. 23); then the dot. No memmove. */
static inline void put_with_dot(char *p, const char *d, int kk)
{
#ifdef __SSE2__
	/* 16 bytes of 0xff, then 16 of 0: read from 16 - kk, the first kk bytes are 0xff. */
	static const uint8_t lead[32] = {
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	};
	const __m128i m = _mm_loadu_si128((const __m128i *)(const void *)(lead + 16 - kk));
	const __m128i here = _mm_loadu_si128((const __m128i *)(const void *)d);
	const __m128i right = _mm_loadu_si128((const __m128i *)(const void *)(d - 1));

	_mm_storeu_si128((__m128i *)(void *)p,
			 _mm_or_si128(_mm_and_si128(m, here), _mm_andnot_si128(m, right)));
	memcpy(p + 16, d + 15, 8);
#else
	memcpy(p + 1, d, 16);
	memcpy(p + 17, d + 16, 8);
	memmove(p, p + 1, (size_t)kk);
#endif
	p[kk] = '.';
}

/* ryu's layout: max_kk is 16 for a double, 13 for a float; min_kk -5 and -6. Every store
 * is fixed-width (16 or 8 bytes): what lies past the text is garbage inside FPFMT_MAX. */
static size_t layout(char *buf, bool neg, struct decimal d, int max_kk, int min_kk)
{
	char *p = buf, db[48];
	const int n = (int)ndigits(d.digits);
	const int k = d.exp, kk = n + k; /* 10^(kk-1) <= value < 10^kk */
	const char *D = digits_of(db, d.digits, n);

	if (neg)
		*p++ = '-';
	if (k >= 0 && kk <= max_kk) {
		/* 1234e7 -> 12340000000.0: kk <= 16, and the window's '0's are the padding. */
		memcpy(p, D, 16);
		p += kk;
		memcpy(p, ".0", 2);
		return (size_t)(p + 2 - buf);
	}
	if (kk > 0 && kk <= max_kk) {
		/* 1234e-2 -> 12.34 (kk < n <= 17) */
		put_with_dot(p, D, kk);
		return (size_t)(p + n + 1 - buf);
	}
	if (kk > min_kk && kk <= 0) {
		/* 1234e-6 -> 0.001234 (-kk <= 5, so p + 24 stays inside FPFMT_MAX) */
		p[0] = '0';
		p[1] = '.';
		memcpy(p + 2, D + n, 8); /* '0's */
		p += 2 - kk;
		memcpy(p, D, 16);
		memcpy(p + 16, D + 16, 8);
		return (size_t)(p + n - buf);
	}
	/* 1e30, 1234e30 -> 1.234e33 */
	p[0] = D[0];
	if (n > 1) {
		p[1] = '.';
		memcpy(p + 2, D + 1, 16);
		p += n + 1;
	} else {
		p++;
	}
	*p++ = 'e';
	int e = kk - 1;

	if (e < 0) {
		*p++ = '-';
		e = -e;
	}
	if (e >= 100) {
		*p++ = (char)('0' + e / 100);
		memcpy(p, digit_pairs + 2 * (e % 100), 2);
		p += 2;
	} else if (e >= 10) {
		memcpy(p, digit_pairs + 2 * e, 2);
		p += 2;
	} else {
		*p++ = (char)('0' + e);
	}
	return (size_t)(p - buf);
}

size_t fpfmt_f64(char *buf, double v)
{
	uint64_t bits, m;
	uint32_t be;
	bool neg;
	struct decimal d;

	memcpy(&bits, &v, 8);
	neg = bits >> 63;
	m = bits & ((1ull << 52) - 1);
	be = (uint32_t)(bits >> 52) & 0x7ff;
	if (be == 0x7ff) {
		memcpy(buf, "null", 4);
		return 4;
	}
	if (be == 0 && m == 0) {
		memcpy(buf, "-0.0", 4);
		return neg ? 4 : (memcpy(buf, "0.0", 3), 3);
	}
	if (be == 0) {
		d = shortest(m, 1 - 1075, false);
	} else {
		const int32_t e2 = (int32_t)be - 1075;

		m |= 1ull << 52;
		/* An integer below 2^53: its digits are exact; only trailing zeros go. */
		if (e2 <= 0 && e2 >= -52 && (m & ((1ull << -e2) - 1)) == 0) {
			d = strip_zeros((struct decimal){ m >> -e2, 0 });
		} else {
			d = shortest(m, e2, (bits & ((1ull << 52) - 1)) == 0 && be > 1);
		}
	}
	return layout(buf, neg, d, 16, -5);
}

size_t fpfmt_f32(char *buf, float v)
{
	uint32_t bits, m, be;
	bool neg;
	struct decimal d;

	memcpy(&bits, &v, 4);
	neg = bits >> 31;
	m = bits & ((1u << 23) - 1);
	be = (bits >> 23) & 0xff;
	if (be == 0xff) {
		memcpy(buf, "null", 4);
		return 4;
	}
	if (be == 0 && m == 0) {
		memcpy(buf, "-0.0", 4);
		return neg ? 4 : (memcpy(buf, "0.0", 3), 3);
	}
	if (be == 0)
		d = shortest(m, 1 - 150, false);
	else
		d = shortest(m | 1u << 23, (int32_t)be - 150, m == 0 && be > 1);
	return layout(buf, neg, d, 13, -6);
}
