/* digits.h: decimal digits, shared by the converter (integers, timestamps) and the float
 * formatter (internal to libshmring). */
#ifndef SHMRING_DIGITS_H
#define SHMRING_DIGITS_H

#include <stdint.h>

/* "00" "01" ... "99": two digits per copy. */
static const char digit_pairs[201] =
	"00010203040506070809101112131415161718192021222324252627282930313233343536373839"
	"40414243444546474849505152535455565758596061626364656667686970717273747576777879"
	"8081828384858687888990919293949596979899";

/* How many decimal digits v has (1 for 0). */
static inline unsigned ndigits(uint64_t v)
{
	static const uint64_t p10[20] = {
		1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull, 10000000ull,
		100000000ull, 1000000000ull, 10000000000ull, 100000000000ull,
		1000000000000ull, 10000000000000ull, 100000000000000ull,
		1000000000000000ull, 10000000000000000ull, 100000000000000000ull,
		1000000000000000000ull, 10000000000000000000ull,
	};
	/* log10 from the bit length (1233/4096 ~ log10(2)), then one correction. */
	unsigned t = (unsigned)(64 - __builtin_clzll(v | 1)) * 1233 >> 12;

	return t + 1 - ((v | 1) < p10[t]);
}

#endif
