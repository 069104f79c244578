/* fpfmt.c: the shortest round-trip digits of a double or float, and serde_json's layout.
 *
 * The digit search follows Ulf Adams, "Ryu: fast float-to-string conversion" (PLDI 2018):
 * with the value written m2 * 2^e2 (m2 scaled by 4 so that the halfway points to its
 * neighbours are integers too), compute at one decimal scale 10^e10 the floors of the
 * value (vr) and of the ends of its rounding interval (vm, vp) with one 64x128-bit multiply
 * each by a precomputed power of five, then drop decimal digits while vm and vp still
 * differ above the dropped ones. The interval's ends belong to it exactly when m2 is even
 * (round-half-even reading), so it matters whether the dropped digits of vm (and of vr)
 * were all zero: the slow path tracks that; the common path, where neither can be, does
 * not. A float goes through the same search: its mantissa is narrower and its exponents
 * lie inside the double's, and the tables are exact enough for any mantissa below 2^55.
 *
 * The layout is the Rust ryu crate's format64/format32 (what serde_json 1.0 writes).
 * Nothing here allocates or reads the locale. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "digits.h"
#include "fpfmt.h"
#include "fpfmt_tables.h"

/* floor(log10(2^e)) for 0 <= e <= 1650, floor(log10(5^e)) for 0 <= e <= 2620, and the bit
 * length of 5^e for 0 <= e <= 3528: the multipliers are the usual fixed-point logs. */
static inline uint32_t log10_pow2(int32_t e)
{
	return ((uint32_t)e * 78913) >> 18;
}

static inline uint32_t log10_pow5(int32_t e)
{
	return ((uint32_t)e * 732923) >> 20;
}

static inline int32_t pow5bits(int32_t e)
{
	return (int32_t)(((uint32_t)e * 1217359) >> 19) + 1;
}

static inline uint32_t pow5_factor(uint64_t v)
{
	uint32_t n = 0;

	while (v % 5 == 0) {
		v /= 5;
		n++;
	}
	return n;
}

static inline bool multiple_of_pow5(uint64_t v, uint32_t p)
{
	return pow5_factor(v) >= p;
}

static inline bool multiple_of_pow2(uint64_t v, uint32_t p)
{
	return (v & ((1ull << p) - 1)) == 0;
}

/* floor(m * mul / 2^j) for m < 2^58 and j >= 64; mul is {low, high}. */
static inline uint64_t mul_shift(uint64_t m, const uint64_t mul[2], int32_t j)
{
	unsigned __int128 lo = (unsigned __int128)m * mul[0];
	unsigned __int128 hi = (unsigned __int128)m * mul[1];

	return (uint64_t)(((lo >> 64) + hi) >> (j - 64));
}

struct decimal {
	uint64_t digits;
	int32_t exp; /* value = digits * 10^exp */
};

/* The interval scaled by 10^-e10: vr the value, vp and vm its ends; *_tz whether the
 * digits the scaling dropped from vm and vr were all zero (exact ends, exact ties). */
struct scaled {
	uint64_t vr, vp, vm;
	int32_t e10;
	bool vm_tz, vr_tz;
};

static inline __attribute__((always_inline)) struct scaled
scale(uint64_t m2, int32_t e2, bool mm_shift, bool even)
{
	const uint64_t mv = 4 * m2;
	struct scaled s;

	s.vm_tz = s.vr_tz = false;

	e2 -= 2;
	if (e2 >= 0) {
		/* One digit more than needed when e2 > 3, so that the last dropped digit is known. */
		const uint32_t q = log10_pow2(e2) - (e2 > 3);
		const int32_t j = -e2 + (int32_t)q + FPFMT_POW5_BITS + pow5bits((int32_t)q) - 1;

		s.e10 = (int32_t)q;
		s.vr = mul_shift(mv, fpfmt_pow5_inv[q], j);
		s.vp = mul_shift(mv + 2, fpfmt_pow5_inv[q], j);
		s.vm = mul_shift(mv - 1 - mm_shift, fpfmt_pow5_inv[q], j);
		/* 5^22 > 2^55 > mv: past q = 21 nothing here is a multiple of 5^q. */
		if (q <= 21) {
			if (mv % 5 == 0)
				s.vr_tz = multiple_of_pow5(mv, q);
			else if (even)
				s.vm_tz = multiple_of_pow5(mv - 1 - mm_shift, q);
			else
				s.vp -= multiple_of_pow5(mv + 2, q);
		}
	} else {
		const uint32_t q = log10_pow5(-e2) - (-e2 > 1);
		const int32_t i = -e2 - (int32_t)q;
		const int32_t j = (int32_t)q - (pow5bits(i) - FPFMT_POW5_BITS);

		s.e10 = (int32_t)q + e2;
		s.vr = mul_shift(mv, fpfmt_pow5[i], j);
		s.vp = mul_shift(mv + 2, fpfmt_pow5[i], j);
		s.vm = mul_shift(mv - 1 - mm_shift, fpfmt_pow5[i], j);
		if (q <= 1) {
			/* mv has two trailing zero bits, so vr's dropped digits are all zero. */
			s.vr_tz = true;
			if (even)
				s.vm_tz = mm_shift;
			else
				s.vp--;
		} else if (q < 63) {
			s.vr_tz = multiple_of_pow2(mv, q);
		}
	}
	return s;
}

/* The lowest k digits (div = 10^k, k >= 1) off all three, remembering the highest of them
 * (last) and whether every digit dropped before it was zero (vr_tz), and whether vm's were
 * (vm_tz): what the tie rule of trim_exact needs. Dropping k at once is k single drops:
 * vr_tz takes in the old last and the k - 1 digits under the new one. */
static inline __attribute__((always_inline)) void
drop_exact(struct scaled *s, uint64_t div, uint8_t *last)
{
	const uint64_t sub = div / 10;

	s->vm_tz &= s->vm % div == 0;
	s->vr_tz &= *last == 0 && s->vr % sub == 0;
	*last = (uint8_t)(s->vr % div / sub);
	s->vr /= div;
	s->vp /= div;
	s->vm /= div;
}

/* While vp and vm differ above the lowest k digits, drop them; then, while vm's lowest k
 * are zero and vm is an exact end, drop those too (if vp / div > vm / div then the same
 * holds at every smaller div, so the chunks take exactly the single steps' path). */
#define TRIM_EXACT_BY(div, k)                                                   \
	do {                                                                    \
		while (s.vp / (div) > s.vm / (div)) {                           \
			drop_exact(&s, (div), &last);                           \
			removed += (k);                                         \
		}                                                               \
	} while (0)
#define TRIM_EXACT_ZEROS_BY(div, k)                                             \
	do {                                                                    \
		while (s.vm % (div) == 0) {                                     \
			drop_exact(&s, (div), &last);                           \
			removed += (k);                                         \
		}                                                               \
	} while (0)

/* Rare for random bits, common for short decimals such as 0.25 or 97.5: an end of the
 * interval or the value itself may be exact at 10^e10, so the dropped digits are looked
 * at, four, then two, then one at a time. */
static __attribute__((noinline)) struct decimal trim_exact(struct scaled s, bool even)
{
	int32_t removed = 0;
	uint8_t last = 0;

	TRIM_EXACT_BY(10000, 4);
	TRIM_EXACT_BY(100, 2);
	TRIM_EXACT_BY(10, 1);
	if (s.vm_tz) {
		TRIM_EXACT_ZEROS_BY(10000, 4);
		TRIM_EXACT_ZEROS_BY(100, 2);
		TRIM_EXACT_ZEROS_BY(10, 1);
	}
	/* Exactly halfway between two candidates: round to even. */
	if (s.vr_tz && last == 5 && s.vr % 2 == 0)
		last = 4;
	return (struct decimal){ s.vr + ((s.vr == s.vm && (!even || !s.vm_tz)) || last >= 5),
				 s.e10 + removed };
}

/* Drop the lowest k digits (div = 10^k) of all three if vp and vm still differ above
 * them; *up says whether the highest digit dropped was 5 or more. */
static inline __attribute__((always_inline)) bool drop(struct scaled *s, uint64_t div, bool *up)
{
	if (s->vp / div <= s->vm / div)
		return false;
	*up = s->vr % div >= div / 2;
	s->vr /= div;
	s->vp /= div;
	s->vm /= div;
	return true;
}

/* The usual case: four, then two digits at a time while all can go, then one. */
static inline __attribute__((always_inline)) struct decimal trim_fast(struct scaled s)
{
	int32_t removed = 0;
	bool up = false;

	while (drop(&s, 10000, &up))
		removed += 4;
	if (drop(&s, 100, &up))
		removed += 2;
	while (drop(&s, 10, &up))
		removed++;
	return (struct decimal){ s.vr + (s.vr == s.vm || up), s.e10 + removed };
}

/* The shortest decimal in the rounding interval of m2 * 2^e2 (m2 the full significand with
 * its hidden bit, e2 the exponent of its last bit); mm_shift says whether the gap below is
 * as wide as the gap above (it is not at a power of two, except for the smallest normals). */
static struct decimal shortest(uint64_t m2, int32_t e2, bool mm_shift)
{
	const bool even = (m2 & 1) == 0;
	struct scaled s = scale(m2, e2, mm_shift, even);

	if (s.vm_tz || s.vr_tz)
		return trim_exact(s, even);
	return trim_fast(s);
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

/* The n digits of v at p[0..n), 0 < n <= 24, in 8-byte stores: p[n .. max(n, 8)) gets
 * garbage, so the buffer has room for it (FPFMT_MAX) and what follows is written after.
 * The leading chunk is stored first: its wide store would overwrite the next one's. */
static inline void put_digits(char *p, uint64_t v, int n)
{
	uint32_t chunk[2];
	int k = 0;

	while (n > 8) {
		chunk[k++] = (uint32_t)(v % 100000000);
		v /= 100000000;
		n -= 8;
	}
	uint64_t w = digits8((uint32_t)v) >> (8 * (8 - n));
	memcpy(p, &w, 8);
	p += n;
	while (k) {
		w = digits8(chunk[--k]);
		memcpy(p, &w, 8);
		p += 8;
	}
}

static const char zeros[8] = { '0', '0', '0', '0', '0', '0', '0', '0' };

/* ryu's layout: max_kk is 16 for a double, 13 for a float; min_kk -5 and -6. */
static size_t layout(char *buf, bool neg, struct decimal d, int max_kk, int min_kk)
{
	char *p = buf;
	const int n = (int)ndigits(d.digits);
	const int k = d.exp, kk = n + k; /* 10^(kk-1) <= value < 10^kk */

	if (neg)
		*p++ = '-';
	if (k >= 0 && kk <= max_kk) {
		/* 1234e7 -> 12340000000.0; k > 0 leaves n <= 15, so 16 zeros fit in the room. */
		put_digits(p, d.digits, n);
		if (k > 0) {
			memcpy(p + n, zeros, 8);
			memcpy(p + n + 8, zeros, 8);
		}
		p += kk;
		memcpy(p, ".0", 2);
		return (size_t)(p + 2 - buf);
	}
	if (kk > 0 && kk <= max_kk) {
		/* 1234e-2 -> 12.34: write all digits one place right, then pull the head left. */
		put_digits(p + 1, d.digits, n);
		memmove(p, p + 1, (size_t)kk);
		p[kk] = '.';
		return (size_t)(p + n + 1 - buf);
	}
	if (kk > min_kk && kk <= 0) {
		/* 1234e-6 -> 0.001234 */
		p[0] = '0';
		p[1] = '.';
		memcpy(p + 2, zeros, 8); /* -kk <= 5 */
		p += 2 - kk;
		put_digits(p, d.digits, n);
		return (size_t)(p + n - buf);
	}
	if (n == 1) {
		/* 1e30 */
		*p++ = (char)('0' + d.digits);
	} else {
		/* 1234e30 -> 1.234e33 */
		put_digits(p + 1, d.digits, n);
		p[0] = p[1];
		p[1] = '.';
		p += n + 1;
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
		d = shortest(m, 1 - 1075, true);
	} else {
		const int32_t e2 = (int32_t)be - 1075;

		m |= 1ull << 52;
		/* An integer below 2^53: its digits are exact; only trailing zeros go. */
		if (e2 <= 0 && e2 >= -52 && (m & ((1ull << -e2) - 1)) == 0) {
			d.digits = m >> -e2;
			d.exp = 0;
			while (d.digits % 10 == 0) {
				d.digits /= 10;
				d.exp++;
			}
		} else {
			d = shortest(m, e2, (bits & ((1ull << 52) - 1)) != 0 || be <= 1);
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
		d = shortest(m, 1 - 150, true);
	else
		d = shortest(m | 1u << 23, (int32_t)be - 150, m != 0 || be <= 1);
	return layout(buf, neg, d, 13, -6);
}
