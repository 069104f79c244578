/* test_json_diff: random and mutated msgpack through the fast and the reference converter, byte for byte. */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "ref_mp2json.h"
#include "shmring/json.h"

/* usage: test_json_diff [seed [iterations]] */
static uint64_t seed = 0x5eed2024;
static unsigned long iterations = 8000;

static uint64_t rng;

static uint64_t rnd(void)
{
	/* splitmix64: tiny, and every seed is a good one */
	uint64_t z = (rng += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static unsigned below(unsigned n)
{
	return (unsigned)(rnd() % n);
}

struct buf {
	uint8_t *p;
	size_t len, cap;
};

static void put(struct buf *b, const void *s, size_t n)
{
	if (b->len + n > b->cap) {
		while (b->len + n > b->cap)
			b->cap = b->cap ? 2 * b->cap : 1024;
		b->p = realloc(b->p, b->cap);
		assert_non_null(b->p);
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void put1(struct buf *b, unsigned x)
{
	uint8_t c = (uint8_t)x;

	put(b, &c, 1);
}

static void put_be(struct buf *b, uint64_t x, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		put1(b, (unsigned)(x >> (8 * (n - 1 - i))));
}

/* Integers that sit on edges. */
static uint64_t edgy(void)
{
	static const uint64_t e[] = {
		0, 1, 9, 10, 99, 100, 127, 128, 255, 256, 65535, 65536, 0x7fffffff, 0x80000000,
		0xffffffff, 0x100000000ull, 999999999, 1000000000, 0x3ffffffffull,
		0x7fffffffffffffffull, 0x8000000000000000ull, 0xffffffffffffffffull,
		10000000000000000000ull, 9999999999999999999ull,
	};

	switch (below(3)) {
	case 0:
		return e[below(sizeof(e) / sizeof(e[0]))];
	case 1:
		return e[below(sizeof(e) / sizeof(e[0]))] - 1;
	default: {
		unsigned shift = below(64);	/* its own statement: operand order is unspecified */

		return rnd() >> shift;
	}
	}
}

static void gen_str_body(struct buf *b, size_t n)
{
	static const char *const pieces[] = {
		"\"", "\\", "\n", "\t", "\x01", "\x1f", "\x7f", "/", "\xc3\xa9", "\xe2\x82\xac",
		"\xf0\x9f\x98\x80", "\xed\xa0\x80", "\xc0\xaf", "\xe2\x82", "\xf4\x90\x80\x80",
		"\xff", "\x80", "\xf0\x9f\x98", "\xef\xbf\xbd", "\xe0\xa0\x80", "\xf4\x8f\xbf\xbf",
	};
	size_t start = b->len;
	unsigned style = below(4);

	while (b->len - start < n) {
		size_t left = n - (b->len - start);

		if (style == 0 || below(4)) {
			/* mostly plain ASCII, in runs long enough for the vector scan */
			put1(b, 0x20 + below(95));
		} else if (style == 1) {
			put1(b, below(256));
		} else {
			const char *pc = pieces[below(sizeof(pieces) / sizeof(pieces[0]))];
			size_t pl = strlen(pc);

			put(b, pc, pl < left ? pl : left);
		}
	}
}

static void gen(struct buf *b, unsigned depth, unsigned klev, int is_key);

static void gen_str(struct buf *b)
{
	size_t n;

	switch (below(8)) {
	case 0:
		n = below(300);
		break;
	case 1:
		n = below(64);
		if (!below(16))
			n = below(70000);
		break;
	default:
		n = below(40);
	}
	if (n < 32 && below(2)) {
		put1(b, 0xa0 | (unsigned)n);
	} else if (n < 256 && below(2)) {
		put1(b, 0xd9);
		put_be(b, n, 1);
	} else if (n < 65536 && below(2)) {
		put1(b, 0xda);
		put_be(b, n, 2);
	} else {
		put1(b, 0xdb);
		put_be(b, n, 4);
	}
	gen_str_body(b, n);
}

static void gen_ext(struct buf *b)
{
	int8_t type = below(3) ? -1 : (int8_t)rnd();
	size_t n;
	uint8_t data[32];

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)rnd();
	if (type == -1 && below(4)) {
		/* timestamps around the edges of what we render */
		static const int64_t secs[] = {
			0, -1, 1, 951782400, -2203891200LL, -62167219200LL, -62167219201LL,
			253402300799LL, 253402300800LL, INT64_MIN, INT64_MAX, 0xffffffffll,
			0x3ffffffffll,
		};
		int64_t sec = below(2) ? secs[below(sizeof(secs) / sizeof(secs[0]))]
				       : (int64_t)(rnd() % 600000000000ull) - 300000000000LL;
		uint32_t nsec = below(2) ? 0 : below(3) ? (uint32_t)(rnd() % 1000000000u)
						: (uint32_t)rnd();

		switch (below(3)) {
		case 0:
			put(b, "\xd6\xff", 2);
			put_be(b, (uint64_t)sec, 4);
			return;
		case 1:
			put(b, "\xd7\xff", 2);
			put_be(b, (uint64_t)(nsec & 0x3fffffff) << 34 | ((uint64_t)sec & 0x3ffffffffull),
			       8);
			return;
		default:
			put(b, "\xc7\x0c\xff", 3);
			put_be(b, nsec, 4);
			put_be(b, (uint64_t)sec, 8);
			return;
		}
	}
	n = below(20);
	switch (n) {
	case 1: put1(b, 0xd4); break;
	case 2: put1(b, 0xd5); break;
	case 4: put1(b, 0xd6); break;
	case 8: put1(b, 0xd7); break;
	case 16: put1(b, 0xd8); break;
	default:
		switch (below(3)) {
		case 0: put1(b, 0xc7); put_be(b, n, 1); break;
		case 1: put1(b, 0xc8); put_be(b, n, 2); break;
		default: put1(b, 0xc9); put_be(b, n, 4); break;
		}
	}
	put1(b, (unsigned)(uint8_t)type);
	put(b, data, n);
}

static void gen_float(struct buf *b)
{
	static const uint64_t f64[] = {
		0x3fb999999999999aull /* 0.1 */, 0x3ff0000000000000ull, 0x8000000000000000ull,
		0x0000000000000001ull, 0x7fefffffffffffffull, 0x7ff0000000000000ull,
		0xfff0000000000000ull, 0x7ff8000000000001ull, 0x4415af1d78b58c40ull /* 1e20 */,
		0x0010000000000000ull, 0x4059000000000000ull /* 100 */,
	};
	static const uint32_t f32[] = {
		0x3dcccccd, 0x3f800000, 0x80000000, 0x00000001, 0x7f7fffff, 0x7f800000,
		0xff800000, 0x7fc00000, 0x00800000, 0x4b800000,
	};

	if (below(2)) {
		uint64_t u = below(2) ? f64[below(sizeof(f64) / sizeof(f64[0]))] : rnd();

		if (below(3) == 0) {
			/* A short decimal (97.5, 0.0625, 3e-7, 12345e20): exact values, ends of
			 * intervals on a decimal, long runs of trailing zeros to strip. */
			char t[40];
			double d;

			snprintf(t, sizeof(t), "%s%u%s%ue%d", below(2) ? "-" : "", below(100000),
				 below(2) ? "." : "", below(10000), (int)below(640) - 330);
			d = below(2) ? strtod(t, NULL) : (double)(int)below(2000000) / (1 << below(24));
			memcpy(&u, &d, 8);
		}
		put1(b, 0xcb);
		put_be(b, u, 8);
	} else {
		put1(b, 0xca);
		put_be(b, below(2) ? f32[below(sizeof(f32) / sizeof(f32[0]))] : (uint32_t)rnd(), 4);
	}
}

static void gen_container(struct buf *b, unsigned depth, unsigned klev, int map)
{
	unsigned n = below(6) ? below(6) : below(40);

	/* sometimes dive straight down, to reach msgpack-c's and our depth limits */
	if (depth > 20 && below(4))
		n = 1;
	if (n < 16 && below(3)) {
		put1(b, (map ? 0x80 : 0x90) | n);
	} else if (below(2)) {
		put1(b, map ? 0xde : 0xdc);
		put_be(b, n, 2);
	} else {
		put1(b, map ? 0xdf : 0xdd);
		put_be(b, n, 4);
	}
	for (unsigned i = 0; i < n; i++) {
		if (map)
			gen(b, depth + 1, klev, 1);
		gen(b, depth + 1, klev, 0);
	}
}

static void gen(struct buf *b, unsigned depth, unsigned klev, int is_key)
{
	unsigned what;

	if (is_key && (klev >= 2 || below(4)))
		what = 0;	/* a string key */
	else if (depth > 66 || b->len > 20000)
		what = 1 + below(5);	/* no more containers: keep documents small */
	else
		what = 1 + below(depth < 3 ? 7 : 9) % 7;
	if (is_key && what)
		klev++;
	switch (what) {
	case 0:
		gen_str(b);
		break;
	case 1: {
		/* integers of every width, not always the narrowest */
		uint64_t v = edgy();

		switch (below(10)) {
		case 0: put1(b, (unsigned)(v & 0x7f)); break;
		case 1: put1(b, 0xe0 | (unsigned)(v & 0x1f)); break;
		case 2: put1(b, 0xcc); put_be(b, v, 1); break;
		case 3: put1(b, 0xcd); put_be(b, v, 2); break;
		case 4: put1(b, 0xce); put_be(b, v, 4); break;
		case 5: put1(b, 0xcf); put_be(b, v, 8); break;
		case 6: put1(b, 0xd0); put_be(b, v, 1); break;
		case 7: put1(b, 0xd1); put_be(b, v, 2); break;
		case 8: put1(b, 0xd2); put_be(b, v, 4); break;
		default: put1(b, 0xd3); put_be(b, v, 8); break;
		}
		break;
	}
	case 2:
		put1(b, 0xc0 + (unsigned)"\x00\x02\x03"[below(3)]);
		break;
	case 3:
		gen_float(b);
		break;
	case 4:
		if (below(2)) {
			gen_ext(b);
		} else {
			size_t n = below(2) ? below(10) : below(400);
			unsigned w = below(3);

			if (w == 0)
				n &= 0xff;
			put1(b, 0xc4 + w);
			put_be(b, n, w == 0 ? 1 : w == 1 ? 2 : 4);
			for (size_t i = 0; i < n; i++)
				put1(b, (unsigned)rnd());
		}
		break;
	case 5:
		gen_str(b);
		break;
	default:
		gen_container(b, depth, klev, what == 6);
		break;
	}
}

static void hexdump(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n && i < 4096; i++)
		fprintf(stderr, "%02x", p[i]);
	fprintf(stderr, "%s\n", n > 4096 ? "..." : "");
}

/* jansson cannot hold integers past long long, nor "\u0000" in a key: parse again with
 * integers as reals and each \u0000 read as \u0001, which keeps the text valid either way. */
static json_t *json_retry(const char *js, size_t n, json_error_t *err)
{
	char *c = malloc(n ? n : 1);
	json_t *j;

	memcpy(c, js, n);
	for (size_t i = 0; i + 6 <= n; i++)
		if (!memcmp(c + i, "\\u0000", 6))
			c[i + 5] = '1';
	j = json_loadb(c, n, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, err);
	free(c);
	return j;
}

static unsigned long n_ok, n_bad;

static void check_one(const uint8_t *in, size_t len, unsigned long iter)
{
	size_t bound = shmring_json_bound(len);
	char *a = malloc(bound), *r = malloc(bound);
	const char *wa = NULL, *wr = NULL;
	ssize_t na = shmring_msgpack_to_json(in, len, a, bound, &wa);
	ssize_t nr = ref_msgpack_to_json(in, len, r, bound, &wr);

	if (na != nr || (na >= 0 && memcmp(a, r, (size_t)na)) ||
	    (na == -EBADMSG && strcmp(wa, wr))) {
		fprintf(stderr, "seed %" PRIu64 " iteration %lu: fast %zd (%s) ref %zd (%s)\ninput: ",
			seed, iter, na, na == -EBADMSG ? wa : "", nr, nr == -EBADMSG ? wr : "");
		hexdump(in, len);
		if (na > 0)
			fprintf(stderr, "fast: %.*s\n", (int)na, a);
		if (nr > 0)
			fprintf(stderr, "ref:  %.*s\n", (int)nr, r);
		fail();
	}
	if (na >= 0) {
		json_error_t err;
		json_t *j = json_loadb(a, (size_t)na, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);

		if (!j)
			j = json_retry(a, (size_t)na, &err);
		if (!j) {
			fprintf(stderr, "seed %" PRIu64 " iteration %lu: jansson: %s\n", seed, iter,
				err.text);
			hexdump(in, len);
			fail();
		}
		json_decref(j);
		/* one byte short must say so; exactly enough must work */
		if (na > 0) {
			char *t = malloc((size_t)na);

			assert_int_equal(shmring_msgpack_to_json(in, len, t, (size_t)na - 1, NULL),
					 -ENOSPC);
			assert_int_equal(shmring_msgpack_to_json(in, len, t, (size_t)na, NULL), na);
			assert_memory_equal(t, a, (size_t)na);
			free(t);
		}
		n_ok++;
	} else {
		ssize_t ne = shmring_json_error_record(wa, iter, in, len, a, bound);

		assert_true(ne > 0 && (size_t)ne <= bound);
		n_bad++;
	}
	free(a);
	free(r);
}

static void mutate(struct buf *b)
{
	unsigned k = 1 + below(3);

	while (k-- && b->len) {
		size_t at = below((unsigned)b->len);

		switch (below(6)) {
		case 0:
			b->p[at] = (uint8_t)rnd();
			break;
		case 1:
			b->p[at] ^= (uint8_t)(1u << below(8));
			break;
		case 2:
			b->len = at;	/* truncate */
			break;
		case 3:
			b->p[at] = 0xc1;
			break;
		case 4:
			memmove(b->p + at, b->p + at + 1, b->len - at - 1);
			b->len--;
			break;
		default:
			put1(b, 0);
			memmove(b->p + at + 1, b->p + at, b->len - at - 1);
			b->p[at] = (uint8_t)rnd();
			break;
		}
	}
}

static void test_random_docs(void **state)
{
	struct buf b = { 0 };

	(void)state;
	rng = seed;
	for (unsigned long i = 0; i < iterations; i++) {
		b.len = 0;
		if (i % 8 == 7) {
			/* a deep tower around a random document: msgpack-c's limit is 32, ours 64 */
			unsigned d = 28 + below(40), klev = 0;

			for (unsigned k = 0; k < d; k++) {
				switch (below(4)) {
				case 0:
					put(&b, "\x81\xa1k", 3);
					break;
				case 1:
					if (klev < 2) {
						put1(&b, 0x81);	/* the tower goes on in the key */
						klev++;
						break;
					}
					/* fall through */
				default:
					put1(&b, 0x91);
				}
			}
			gen(&b, d, klev, 0);
			/* close the maps whose key the tower went through: each wants a value */
			for (unsigned k = 0; k < klev; k++)
				put1(&b, 0xc0);
		} else {
			gen(&b, 0, 0, 0);
		}
		check_one(b.p, b.len, i);
		/* exact-size copies, so a read past the end is an ASan error */
		for (int m = 0; m < 3; m++) {
			struct buf c = { 0 };

			put(&c, b.p, b.len);
			mutate(&c);
			{
				uint8_t *exact = malloc(c.len ? c.len : 1);

				memcpy(exact, c.p, c.len);
				check_one(exact, c.len, i);
				free(exact);
			}
			free(c.p);
		}
	}
	free(b.p);
	print_message("seed %" PRIu64 ": %lu converted, %lu rejected, all agree\n", seed, n_ok,
		      n_bad);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_random_docs),
	};

	if (argc > 1)
		seed = strtoull(argv[1], NULL, 0);
	if (argc > 2)
		iterations = strtoul(argv[2], NULL, 0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
