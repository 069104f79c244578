/*
 * optparse.c - the strict parsing of numeric command-line values that shmring and
 * shmring-writer share: a value is all digits (a duration may have a fraction and one
 * unit), or it is refused, with a one-line reason the program prints after the option's
 * name. strtoul alone took "abc" as 0 and "10x" as 10; `gc --min-age abc` then removed
 * every idle ring.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

int shm_opt_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out, char *why, size_t len)
{
	uint64_t v = 0;
	int big = 0;
	if (!s || !*s || strspn(s, "0123456789") != strlen(s)) {
		snprintf(why, len, "not a whole number: '%s'", s ? s : "");
		return -EINVAL;
	}
	for (const char *p = s; *p; p++) {
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			big = 1;
		else
			v = v * 10 + d;
	}
	if (big || v < min || v > max) {
		snprintf(why, len, "out of range (%llu to %llu): '%s'", (unsigned long long)min,
			 (unsigned long long)max, s);
		return -ERANGE;
	}
	*out = v;
	return 0;
}

int shm_opt_seconds(const char *s, double min, double max, double *out, char *why, size_t len)
{
	/* By hand rather than strtod: no sign, exponent, hex, inf or nan, no spaces. */
	const char *p = s ? s : "";
	double v = 0, scale = 1;
	size_t digits = strspn(p, "0123456789");
	for (size_t i = 0; i < digits; i++)
		v = v * 10 + (p[i] - '0');
	p += digits;
	if (*p == '.') {
		size_t frac = strspn(p + 1, "0123456789");
		for (size_t i = 1; i <= frac; i++)
			v += (p[i] - '0') / (scale *= 10);
		p += 1 + frac;
		digits += frac;
	}
	double unit = 1;
	if (*p && !p[1]) {
		switch (*p) {
		case 's': unit = 1; p++; break;
		case 'm': unit = 60; p++; break;
		case 'h': unit = 3600; p++; break;
		case 'd': unit = 86400; p++; break;
		}
	}
	if (!digits || *p) {
		snprintf(why, len, "not a duration (seconds, or a number with s, m, h or d): '%s'",
			 s ? s : "");
		return -EINVAL;
	}
	v *= unit;
	if (!(v >= min && v <= max)) {
		snprintf(why, len, "out of range (%g s to %g s): '%s'", min, max, s);
		return -ERANGE;
	}
	*out = v;
	return 0;
}
