/* test_json: msgpack -> JSON conversion, every type, escape, error and buffer-size rule. */
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <locale.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <msgpack.h>

#include "ref_mp2json.h"
#include "shmring/json.h"

/* Raw msgpack bytes given as a string literal. */
#define RAW(s) (const uint8_t *)(s), sizeof(s) - 1

/* ---- helpers ---- */

static void assert_parses(const char *js, size_t n)
{
	json_error_t err;
	json_t *j = json_loadb(js, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);

	/* jansson holds integers in long long: take those past it as reals */
	if (!j && json_error_code(&err) == json_error_numeric_overflow)
		j = json_loadb(js, n, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL,
			       &err);
	if (!j)
		fail_msg("jansson rejects %.*s: %s", (int)n, js, err.text);
	json_decref(j);
}

/* Converts with an exactly sized heap buffer (so ASan sees any overrun), checks every smaller
 * cap fails with -ENOSPC, the bound holds, jansson parses the text, and the reference agrees. */
static char *convert_ok(const uint8_t *in, size_t len, size_t *outlen)
{
	size_t bound = shmring_json_bound(len);
	char *big = malloc(bound), *ref = malloc(bound), *exact;
	const char *why = NULL;
	ssize_t n = shmring_msgpack_to_json(in, len, big, bound, &why);
	ssize_t rn = ref_msgpack_to_json(in, len, ref, bound, &why);

	if (n < 0)
		fail_msg("conversion failed: %zd (%s)", n, why ? why : "-");
	assert_true((size_t)n <= bound);
	assert_int_equal(rn, n);
	assert_memory_equal(ref, big, (size_t)n);
	assert_parses(big, (size_t)n);
	/* Every cap below the size needed must say -ENOSPC and stay inside the buffer. */
	for (size_t cap = 0; cap < (size_t)n; cap++) {
		char *tight = malloc(cap ? cap : 1);

		assert_int_equal(shmring_msgpack_to_json(in, len, tight, cap, NULL), -ENOSPC);
		free(tight);
		/* Long outputs: the exhaustive walk is quadratic, sample past 4 KiB. */
		if (cap > 4096)
			cap += cap / 8;
	}
	exact = malloc((size_t)n + 1);
	assert_int_equal(shmring_msgpack_to_json(in, len, exact, (size_t)n, NULL), n);
	assert_memory_equal(exact, big, (size_t)n);
	exact[n] = '\0';
	free(big);
	free(ref);
	*outlen = (size_t)n;
	return exact;
}

static void expect_json(const uint8_t *in, size_t len, const char *want)
{
	size_t n;
	char *got = convert_ok(in, len, &n);

	if (n != strlen(want) || memcmp(got, want, n))
		fail_msg("got  %.*s\nwant %s", (int)n, got, want);
	free(got);
}

static void expect_bad(const uint8_t *in, size_t len, const char *reason)
{
	size_t bound = shmring_json_bound(len);
	char *out = malloc(bound), *ref = malloc(bound);
	const char *why = NULL, *rwhy = NULL;

	assert_int_equal(shmring_msgpack_to_json(in, len, out, bound, &why), -EBADMSG);
	assert_non_null(why);
	assert_string_equal(why, reason);
	assert_int_equal(ref_msgpack_to_json(in, len, ref, bound, &rwhy), -EBADMSG);
	assert_string_equal(rwhy, reason);
	/* why may be NULL */
	assert_int_equal(shmring_msgpack_to_json(in, len, out, bound, NULL), -EBADMSG);
	free(out);
	free(ref);
}

/* Packs with msgpack-c into a heap buffer the caller frees. */
struct pk {
	msgpack_sbuffer sb;
	msgpack_packer pk;
};

static void pk_init(struct pk *p)
{
	msgpack_sbuffer_init(&p->sb);
	msgpack_packer_init(&p->pk, &p->sb, msgpack_sbuffer_write);
}

static void pk_str(struct pk *p, const char *s, size_t n)
{
	msgpack_pack_str(&p->pk, n);
	msgpack_pack_str_body(&p->pk, s, n);
}

static void pk_cstr(struct pk *p, const char *s)
{
	pk_str(p, s, strlen(s));
}

/* ---- scalars ---- */

static void test_nil_bool(void **state)
{
	(void)state;
	expect_json(RAW("\xc0"), "null");
	expect_json(RAW("\xc2"), "false");
	expect_json(RAW("\xc3"), "true");
}

static void test_int_widths(void **state)
{
	(void)state;
	expect_json(RAW("\x00"), "0");
	expect_json(RAW("\x07"), "7");
	expect_json(RAW("\x7f"), "127");
	expect_json(RAW("\xe0"), "-32");
	expect_json(RAW("\xff"), "-1");
	expect_json(RAW("\xcc\x00"), "0");
	expect_json(RAW("\xcc\xff"), "255");
	expect_json(RAW("\xcd\x00\x00"), "0");
	expect_json(RAW("\xcd\xff\xff"), "65535");
	expect_json(RAW("\xce\xff\xff\xff\xff"), "4294967295");
	expect_json(RAW("\xcf\x00\x00\x00\x00\x00\x00\x00\x00"), "0");
	expect_json(RAW("\xcf\xff\xff\xff\xff\xff\xff\xff\xff"), "18446744073709551615");
	expect_json(RAW("\xcf\x80\x00\x00\x00\x00\x00\x00\x00"), "9223372036854775808");
	expect_json(RAW("\xd0\x80"), "-128");
	expect_json(RAW("\xd0\x7f"), "127");
	expect_json(RAW("\xd0\xff"), "-1");
	expect_json(RAW("\xd1\x80\x00"), "-32768");
	expect_json(RAW("\xd1\x7f\xff"), "32767");
	expect_json(RAW("\xd2\x80\x00\x00\x00"), "-2147483648");
	expect_json(RAW("\xd2\x7f\xff\xff\xff"), "2147483647");
	expect_json(RAW("\xd3\x80\x00\x00\x00\x00\x00\x00\x00"), "-9223372036854775808");
	expect_json(RAW("\xd3\x7f\xff\xff\xff\xff\xff\xff\xff"), "9223372036854775807");
	expect_json(RAW("\xd3\xff\xff\xff\xff\xff\xff\xff\xff"), "-1");
	expect_json(RAW("\xd3\x00\x00\x00\x00\x00\x00\x00\x00"), "0");
}

/* The msgpack item tag, then v big-endian in n bytes (n <= 8), gives want. */
static void expect_be(uint8_t tag, uint64_t v, int n, const char *want)
{
	uint8_t in[9] = { tag };

	for (int j = 0; j < n; j++)
		in[1 + j] = (uint8_t)(v >> (8 * (n - 1 - j)));
	expect_json(in, (size_t)n + 1, want);
}

/* Every digit count, either side of each power of ten, both signs. */
static void test_int_digits(void **state)
{
	uint64_t p = 1;

	(void)state;
	for (int k = 0; k < 20; k++, p *= 10) {
		uint64_t vals[3] = { p - 1, p, p + 1 };

		for (int i = 0; i < 3; i++) {
			char want[32];

			snprintf(want, sizeof(want), "%" PRIu64, vals[i]);
			expect_be(0xcf, vals[i], 8, want);
			if (vals[i] <= INT64_MAX) {
				int64_t neg = -(int64_t)vals[i];

				snprintf(want, sizeof(want), "%" PRId64, neg);
				expect_be(0xd3, (uint64_t)neg, 8, want);
			}
		}
	}
}

static void f64_case(double v, const char *want)
{
	uint64_t u;

	memcpy(&u, &v, 8);
	expect_be(0xcb, u, 8, want);
}

static void f32_case(float v, const char *want)
{
	uint32_t u;

	memcpy(&u, &v, 4);
	expect_be(0xca, u, 4, want);
}

static void test_floats(void **state)
{
	(void)state;
	f64_case(0.1, "0.1");
	f64_case(1.0, "1.0");
	f64_case(0.0, "0.0");
	f64_case(-0.0, "-0.0");
	f64_case(1.5, "1.5");
	f64_case(123.0, "123.0");
	f64_case(100.0, "100.0");	/* serde_json (ryu) layout: fixed up to 16 integer digits */
	f64_case(1e15, "1000000000000000.0");
	f64_case(-1234567890123450.0, "-1234567890123450.0");
	f64_case(-0.000012345, "-0.000012345");
	f64_case(1e16, "1e16");
	f64_case(12.34, "12.34");
	f64_case(0.00001, "0.00001");
	f64_case(0.0001234, "0.0001234");
	f64_case(1e-7, "1e-7");
	f64_case(1.5e-7, "1.5e-7");
	f64_case(1.2345678901234568e17, "1.2345678901234568e17");
	f64_case(9007199254740993.0, "9007199254740992.0");
	f64_case(0x1p-1022 / 2, "1.1125369292536007e-308");	/* subnormal */
	f64_case(0x1p60, "1.152921504606847e18");		/* power of two: narrower gap below */
	f64_case(1e20, "1e20");
	f64_case(1e300, "1e300");
	f64_case(5e-324, "5e-324");
	f64_case(1.0 / 3, "0.3333333333333333");
	f64_case(0.1 + 0.2, "0.30000000000000004");
	f64_case(DBL_MAX, "1.7976931348623157e308");
	f64_case(-DBL_MAX, "-1.7976931348623157e308");
	f64_case(DBL_MIN, "2.2250738585072014e-308");
	f64_case(123456789.0, "123456789.0");
	f64_case(NAN, "null");
	f64_case(-NAN, "null");
	f64_case(INFINITY, "null");
	f64_case(-INFINITY, "null");
	f32_case(0.1f, "0.1");
	f32_case(1.0f, "1.0");
	f32_case(-0.0f, "-0.0");
	f32_case(0.2f, "0.2");
	f32_case(16777216.0f, "16777216.0");
	f32_case(FLT_MAX, "3.4028235e38");
	f32_case(100.0f, "100.0");	/* f32 layout: 13 and -6 in place of 16 and -5 */
	f32_case(1e12f, "1000000000000.0");
	f32_case(1e13f, "1e13");
	f32_case(1e-6f, "0.000001");
	f32_case(1e-7f, "1e-7");
	f32_case(-1.2345678e-6f, "-0.0000012345678");	/* stores reach buf[FPFMT_MAX) */
	f32_case(0x1p-130f, "7.34684e-40");	/* subnormal */
	f32_case(FLT_MIN, "1.1754944e-38");
	f32_case(1.4e-45f, "1e-45");
	f32_case(3.14159265f, "3.1415927");
	f32_case(NAN, "null");
	f32_case(INFINITY, "null");
	f32_case(-INFINITY, "null");
}

/* The float text must not follow LC_NUMERIC (fpfmt.c never reads the locale). Debian
 * ships no such locale by default: `localedef -i de_DE -f UTF-8 DIR/de_DE.UTF-8` and
 * LOCPATH=DIR make one. */
static void test_float_locale(void **state)
{
	static const char *const names[] = { "de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "ru_RU.UTF-8" };
	const char *set = NULL;

	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && !set; i++)
		set = setlocale(LC_NUMERIC, names[i]);
	if (!set) {
		skip();
		return;
	}
	f64_case(0.1, "0.1");
	f64_case(1.0, "1.0");
	f64_case(-2.5, "-2.5");
	f64_case(1.5e-7, "1.5e-7");
	f64_case(1e20, "1e20");
	f32_case(0.1f, "0.1");
}

static int restore_locale(void **state)
{
	(void)state;
	setlocale(LC_NUMERIC, "C");
	return 0;
}

/* ---- strings ---- */

static void test_str_widths(void **state)
{
	char *body = malloc(70001), *want = malloc(70004);
	uint8_t *in = malloc(70010);

	(void)state;
	expect_json(RAW("\xa0"), "\"\"");
	expect_json(RAW("\xa3" "abc"), "\"abc\"");
	expect_json(RAW("\xd9\x03" "abc"), "\"abc\"");
	expect_json(RAW("\xd9\x00"), "\"\"");
	expect_json(RAW("\xda\x00\x03" "abc"), "\"abc\"");
	expect_json(RAW("\xdb\x00\x00\x00\x03" "abc"), "\"abc\"");
	for (size_t i = 0; i < 70000; i++)
		body[i] = (char)('a' + i % 26);
	/* str8 (200), str16 (300), str32 (70000) */
	{
		const size_t lens[] = { 31, 200, 300, 70000 };

		for (size_t k = 0; k < 4; k++) {
			size_t n = lens[k], h;

			if (n < 32) {
				in[0] = (uint8_t)(0xa0 | n);
				h = 1;
			} else if (n < 256) {
				in[0] = 0xd9;
				in[1] = (uint8_t)n;
				h = 2;
			} else if (n < 65536) {
				in[0] = 0xda;
				in[1] = (uint8_t)(n >> 8);
				in[2] = (uint8_t)n;
				h = 3;
			} else {
				in[0] = 0xdb;
				in[1] = (uint8_t)(n >> 24);
				in[2] = (uint8_t)(n >> 16);
				in[3] = (uint8_t)(n >> 8);
				in[4] = (uint8_t)n;
				h = 5;
			}
			memcpy(in + h, body, n);
			want[0] = '"';
			memcpy(want + 1, body, n);
			want[n + 1] = '"';
			want[n + 2] = '\0';
			expect_json(in, h + n, want);
		}
	}
	free(body);
	free(want);
	free(in);
}

/* The escape of each byte below 0x80, spelled out. */
static const char *const ascii_escape[32] = {
	"\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005", "\\u0006", "\\u0007",
	"\\b", "\\t", "\\n", "\\u000b", "\\f", "\\r", "\\u000e", "\\u000f",
	"\\u0010", "\\u0011", "\\u0012", "\\u0013", "\\u0014", "\\u0015", "\\u0016", "\\u0017",
	"\\u0018", "\\u0019", "\\u001a", "\\u001b", "\\u001c", "\\u001d", "\\u001e", "\\u001f",
};

static void want_for(int c, char *w)
{
	if (c < 0x20)
		strcpy(w, ascii_escape[c]);
	else if (c == '"')
		strcpy(w, "\\\"");
	else if (c == '\\')
		strcpy(w, "\\\\");
	else {
		w[0] = (char)c;
		w[1] = '\0';
	}
}

static void test_escape_ascii(void **state)
{
	(void)state;
	for (int c = 0; c < 0x80; c++) {
		uint8_t in[4] = { 0xa1, (uint8_t)c };
		uint8_t in3[4] = { 0xa3, 'x', (uint8_t)c, 'y' };
		char w[16], want[32];

		want_for(c, w);
		snprintf(want, sizeof(want), "\"%s\"", w);
		expect_json(in, 2, want);
		snprintf(want, sizeof(want), "\"x%sy\"", w);
		expect_json(in3, 4, want);
	}
	expect_json(RAW("\xa3/\x7f~"), "\"/\x7f~\"");
	expect_json(RAW("\xa4" "a\"\\b"), "\"a\\\"\\\\b\"");
}

/* A special byte at every position of strings of every length up to 40, both in the middle
 * of a larger record (the vector scan may read past the string) and at the very end. */
static void test_escape_positions(void **state)
{
	const int specials[] = { 0x00, 0x0a, 0x1f, '"', '\\', 0x80, 0xc3 };

	(void)state;
	for (size_t len = 0; len <= 40; len++) {
		for (size_t at = 0; at <= len; at++) {
			for (size_t s = 0; s < sizeof(specials) / sizeof(specials[0]); s++) {
				uint8_t in[100];
				char want[600], *w = want;
				size_t h = 0;

				in[h++] = 0x92;
				in[h++] = 0xd9;
				in[h++] = (uint8_t)len;
				for (size_t i = 0; i < len; i++)
					in[h + i] = (uint8_t)('A' + i % 26);
				if (at < len)
					in[h + at] = (uint8_t)specials[s];
				*w++ = '[';
				*w++ = '"';
				for (size_t i = 0; i < len; i++) {
					int c = in[h + i];

					if (c >= 0x80) {
						memcpy(w, "\xef\xbf\xbd", 3);
						w += 3;
					} else {
						want_for(c, w);
						w += strlen(w);
					}
				}
				*w++ = '"';
				*w = '\0';
				h += len;
				/* the string alone, so it ends the input */
				expect_json(in + 1, h - 1, want + 1);
				/* once with nil after it, once with a long string */
				strcpy(w, ",null]");
				in[h] = 0xc0;
				expect_json(in, h + 1, want);
				strcpy(w, ",\"0123456789abcdef0123456789\"]");
				in[h] = 0xba;
				memcpy(in + h + 1, "0123456789abcdef0123456789", 26);
				expect_json(in, h + 27, want);
			}
		}
	}
}

static void test_utf8_valid(void **state)
{
	(void)state;
	expect_json(RAW("\xa2\xc3\xa9"), "\"\xc3\xa9\"");
	expect_json(RAW("\xa3\xe2\x82\xac"), "\"\xe2\x82\xac\"");
	expect_json(RAW("\xa4\xf0\x9f\x98\x80"), "\"\xf0\x9f\x98\x80\"");
	expect_json(RAW("\xa2\xc2\x80"), "\"\xc2\x80\"");		/* U+0080 */
	expect_json(RAW("\xa2\xdf\xbf"), "\"\xdf\xbf\"");		/* U+07FF */
	expect_json(RAW("\xa3\xe0\xa0\x80"), "\"\xe0\xa0\x80\"");	/* U+0800 */
	expect_json(RAW("\xa3\xed\x9f\xbf"), "\"\xed\x9f\xbf\"");	/* U+D7FF */
	expect_json(RAW("\xa3\xee\x80\x80"), "\"\xee\x80\x80\"");	/* U+E000 */
	expect_json(RAW("\xa3\xef\xbf\xbf"), "\"\xef\xbf\xbf\"");	/* U+FFFF */
	expect_json(RAW("\xa4\xf0\x90\x80\x80"), "\"\xf0\x90\x80\x80\"");	/* U+10000 */
	expect_json(RAW("\xa4\xf4\x8f\xbf\xbf"), "\"\xf4\x8f\xbf\xbf\"");	/* U+10FFFF */
	expect_json(RAW("\xb6" "h\xc3\xa9llo \xe2\x82\xac\xf0\x9f\x98\x80 w\xc3\xb6rld!"),
		    "\"h\xc3\xa9llo \xe2\x82\xac\xf0\x9f\x98\x80 w\xc3\xb6rld!\"");
}

#define FFFD "\xef\xbf\xbd"

static void test_utf8_invalid(void **state)
{
	(void)state;
	expect_json(RAW("\xa1\xff"), "\"" FFFD "\"");
	expect_json(RAW("\xa1\x80"), "\"" FFFD "\"");
	expect_json(RAW("\xa1\xf5"), "\"" FFFD "\"");
	expect_json(RAW("\xa1\xc2"), "\"" FFFD "\"");
	expect_json(RAW("\xa3\xe2\x82" "A"), "\"" FFFD "A\"");
	expect_json(RAW("\xa2\xe2\x82"), "\"" FFFD "\"");
	expect_json(RAW("\xa3\xed\xa0\x80"), "\"" FFFD FFFD FFFD "\"");	/* surrogate */
	expect_json(RAW("\xa3\xed\xbf\xbf"), "\"" FFFD FFFD FFFD "\"");
	expect_json(RAW("\xa2\xc0\xaf"), "\"" FFFD FFFD "\"");		/* overlong '/' */
	expect_json(RAW("\xa2\xc1\xbf"), "\"" FFFD FFFD "\"");
	expect_json(RAW("\xa3\xe0\x80\xaf"), "\"" FFFD FFFD FFFD "\"");
	expect_json(RAW("\xa4\xf0\x80\x80\xaf"), "\"" FFFD FFFD FFFD FFFD "\"");
	expect_json(RAW("\xa4\xf4\x90\x80\x80"), "\"" FFFD FFFD FFFD FFFD "\"");	/* > U+10FFFF */
	expect_json(RAW("\xa3\xf0\x9f\x98"), "\"" FFFD "\"");
	expect_json(RAW("\xa4\xf0\x9f\x98" "A"), "\"" FFFD "A\"");
	expect_json(RAW("\xa3\xc2\xc2\xa9"), "\"" FFFD "\xc2\xa9\"");
	expect_json(RAW("\xa2\xe2\x22"), "\"" FFFD "\\\"\"");
	/* Unicode 3.9, table 3-8: 61 F1 80 80 E1 80 C2 62 80 63 80 BF 64 */
	expect_json(RAW("\xad\x61\xf1\x80\x80\xe1\x80\xc2\x62\x80\x63\x80\xbf\x64"),
		    "\"a" FFFD FFFD FFFD "b" FFFD "c" FFFD FFFD "d\"");
}

/* ---- bin, ext, timestamps ---- */

static void test_bin(void **state)
{
	(void)state;
	expect_json(RAW("\xc4\x00"), "\"\"");
	expect_json(RAW("\xc4\x01\x00"), "\"AA==\"");
	expect_json(RAW("\xc4\x02\x00\x01"), "\"AAE=\"");
	expect_json(RAW("\xc4\x03" "Man"), "\"TWFu\"");
	expect_json(RAW("\xc4\x04" "Many"), "\"TWFueQ==\"");
	expect_json(RAW("\xc4\x03\xfb\xff\xbf"), "\"+/+/\"");
	expect_json(RAW("\xc5\x00\x02\x00\x01"), "\"AAE=\"");
	expect_json(RAW("\xc6\x00\x00\x00\x02\x00\x01"), "\"AAE=\"");
}

static void test_ext(void **state)
{
	(void)state;
	expect_json(RAW("\xd4\x01\x01"), "{\"ext\":1,\"base64\":\"AQ==\"}");
	expect_json(RAW("\xd5\x7f\x01\x02"), "{\"ext\":127,\"base64\":\"AQI=\"}");
	expect_json(RAW("\xd6\x80\x01\x02\x03\x04"), "{\"ext\":-128,\"base64\":\"AQIDBA==\"}");
	expect_json(RAW("\xd7\xfe\x01\x02\x03\x04\x05\x06\x07\x08"),
		    "{\"ext\":-2,\"base64\":\"AQIDBAUGBwg=\"}");
	expect_json(RAW("\xd8\x00" "0123456789abcdef"),
		    "{\"ext\":0,\"base64\":\"MDEyMzQ1Njc4OWFiY2RlZg==\"}");
	expect_json(RAW("\xc7\x00\x05"), "{\"ext\":5,\"base64\":\"\"}");
	expect_json(RAW("\xc7\x03\x05" "Man"), "{\"ext\":5,\"base64\":\"TWFu\"}");
	expect_json(RAW("\xc8\x00\x03\x05" "Man"), "{\"ext\":5,\"base64\":\"TWFu\"}");
	expect_json(RAW("\xc9\x00\x00\x00\x03\x9c" "Man"), "{\"ext\":-100,\"base64\":\"TWFu\"}");
	/* ext -1 of a size that is no timestamp */
	expect_json(RAW("\xd4\xff\x01"), "{\"ext\":-1,\"base64\":\"AQ==\"}");
	expect_json(RAW("\xc7\x05\xff\x00\x00\x00\x00\x00"), "{\"ext\":-1,\"base64\":\"AAAAAAA=\"}");
	expect_json(RAW("\xc7\x00\xff"), "{\"ext\":-1,\"base64\":\"\"}");
}

static void ts32(uint32_t sec, const char *want)
{
	uint8_t in[6] = { 0xd6, 0xff, (uint8_t)(sec >> 24), (uint8_t)(sec >> 16),
			  (uint8_t)(sec >> 8), (uint8_t)sec };

	expect_json(in, 6, want);
}

static void ts64(uint32_t nsec, uint64_t sec, const char *want)
{
	uint64_t x = (uint64_t)nsec << 34 | sec;
	uint8_t in[10] = { 0xd7, 0xff };

	for (int j = 0; j < 8; j++)
		in[2 + j] = (uint8_t)(x >> (56 - 8 * j));
	expect_json(in, 10, want);
}

static void ts96(uint32_t nsec, int64_t sec, const char *want)
{
	uint8_t in[15] = { 0xc7, 12, 0xff };

	for (int j = 0; j < 4; j++)
		in[3 + j] = (uint8_t)(nsec >> (24 - 8 * j));
	for (int j = 0; j < 8; j++)
		in[7 + j] = (uint8_t)((uint64_t)sec >> (56 - 8 * j));
	expect_json(in, 15, want);
}

static void test_timestamp(void **state)
{
	(void)state;
	ts32(0, "\"1970-01-01T00:00:00Z\"");
	ts32(1718000000, "\"2024-06-10T06:13:20Z\"");
	ts32(951782400, "\"2000-02-29T00:00:00Z\"");
	ts32(0xffffffffu, "\"2106-02-07T06:28:15Z\"");
	ts64(0, 0, "\"1970-01-01T00:00:00Z\"");
	ts64(500000000, 1, "\"1970-01-01T00:00:01.5Z\"");
	ts64(123456000, 1718000000, "\"2024-06-10T06:13:20.123456Z\"");
	ts64(1, 0, "\"1970-01-01T00:00:00.000000001Z\"");
	ts64(999999999, 17179869183ull, "\"2514-05-30T01:53:03.999999999Z\"");
	ts64(100000000, 0, "\"1970-01-01T00:00:00.1Z\"");
	/* nsec >= 1e9 is no timestamp: the generic ext form */
	ts64(1000000000, 0, "{\"ext\":-1,\"base64\":\"7msoAAAAAAA=\"}");
	ts96(0, 0, "\"1970-01-01T00:00:00Z\"");
	ts96(0, -1, "\"1969-12-31T23:59:59Z\"");
	ts96(500000000, -1, "\"1969-12-31T23:59:59.5Z\"");
	ts96(0, -2203891200LL, "\"1900-03-01T00:00:00Z\"");
	ts96(0, -11670955199LL, "\"1600-02-29T12:00:01Z\"");
	ts96(0, -62135596800LL, "\"0001-01-01T00:00:00Z\"");
	ts96(0, -62162121600LL, "\"0000-02-29T00:00:00Z\"");
	ts96(0, -62167219200LL, "\"0000-01-01T00:00:00Z\"");
	ts96(999999999, 253402300799LL, "\"9999-12-31T23:59:59.999999999Z\"");
	ts96(0, -62167219201LL,
	     "{\"ext\":-1,\"base64\":\"AAAAAP////GGi4P/\"}");
	ts96(0, 253402300800LL, "{\"ext\":-1,\"base64\":\"AAAAAAAAADr/9EGA\"}");
	ts96(0, INT64_MIN, "{\"ext\":-1,\"base64\":\"AAAAAIAAAAAAAAAA\"}");
	ts96(0, INT64_MAX, "{\"ext\":-1,\"base64\":\"AAAAAH//////////\"}");
	ts96(1000000000, 0, "{\"ext\":-1,\"base64\":\"O5rKAAAAAAAAAAAA\"}");
}

/* A record as the writer sees them, packed by msgpack-c. */
static void test_packed_record(void **state)
{
	struct pk p;

	(void)state;
	pk_init(&p);
	msgpack_pack_map(&p.pk, 6);
	pk_cstr(&p, "id");
	pk_cstr(&p, "rec_01J9Z3");
	pk_cstr(&p, "detail");
	msgpack_pack_map(&p.pk, 2);
	pk_cstr(&p, "kind");
	pk_cstr(&p, "tool_pair");
	pk_cstr(&p, "tool_name");
	pk_cstr(&p, "read_file");
	pk_cstr(&p, "tokens");
	msgpack_pack_int64(&p.pk, -123456789012LL);
	pk_cstr(&p, "violations");
	msgpack_pack_array(&p.pk, 1);
	msgpack_pack_map(&p.pk, 1);
	pk_cstr(&p, "rule");
	pk_cstr(&p, "path\\with \"quotes\"\ttab");
	pk_cstr(&p, "ok");
	msgpack_pack_true(&p.pk);
	msgpack_pack_uint64(&p.pk, 7);
	msgpack_pack_double(&p.pk, 2.5);
	expect_json((const uint8_t *)p.sb.data, p.sb.size,
		    "{\"id\":\"rec_01J9Z3\",\"detail\":{\"kind\":\"tool_pair\","
		    "\"tool_name\":\"read_file\"},\"tokens\":-123456789012,"
		    "\"violations\":[{\"rule\":\"path\\\\with \\\"quotes\\\"\\ttab\"}],"
		    "\"ok\":true,\"7\":2.5}");
	msgpack_sbuffer_destroy(&p.sb);
}

/* ---- containers and keys ---- */

static void test_containers(void **state)
{
	(void)state;
	expect_json(RAW("\x90"), "[]");
	expect_json(RAW("\x80"), "{}");
	expect_json(RAW("\x93\x01\x92\x02\x92\x03\x80\x81\xa1" "a\x90"),
		    "[1,[2,[3,{}]],{\"a\":[]}]");
	expect_json(RAW("\xdc\x00\x02\xc0\xc3"), "[null,true]");
	expect_json(RAW("\xdd\x00\x00\x00\x02\xc0\xc3"), "[null,true]");
	expect_json(RAW("\xdc\x00\x00"), "[]");
	expect_json(RAW("\xde\x00\x01\xa1" "k\xc2"), "{\"k\":false}");
	expect_json(RAW("\xdf\x00\x00\x00\x01\xa1" "k\xc2"), "{\"k\":false}");
	expect_json(RAW("\xdf\x00\x00\x00\x00"), "{}");
	/* order kept, duplicates kept */
	expect_json(RAW("\x83\xa1" "b\x01\xa1" "a\x02\xa1" "b\x03"), "{\"b\":1,\"a\":2,\"b\":3}");
	expect_json(RAW("\x82\xa0\xa0\xa1\x22\xa1\x5c"), "{\"\":\"\",\"\\\"\":\"\\\\\"}");
}

static void test_long_array(void **state)
{
	uint8_t *in = malloc(70000 + 5);
	char *want = malloc(70000 * 5 + 2), *w = want;

	(void)state;
	in[0] = 0xdd;
	in[1] = 0;
	in[2] = 1;
	in[3] = (uint8_t)(70000 >> 8);
	in[4] = (uint8_t)70000;
	*w++ = '[';
	for (int i = 0; i < 70000; i++) {
		in[5 + i] = (uint8_t)(i % 128);
		w += sprintf(w, "%s%d", i ? "," : "", i % 128);
	}
	strcpy(w, "]");
	expect_json(in, 70005, want);
	free(in);
	free(want);
}

static void test_nonstring_keys(void **state)
{
	(void)state;
	expect_json(RAW("\x81\x01\x02"), "{\"1\":2}");
	expect_json(RAW("\x81\xff\x02"), "{\"-1\":2}");
	expect_json(RAW("\x81\xc3\x02"), "{\"true\":2}");
	expect_json(RAW("\x81\xc2\x02"), "{\"false\":2}");
	expect_json(RAW("\x81\xc0\x02"), "{\"null\":2}");
	expect_json(RAW("\x81\x92\x01\xa1" "a\x02"), "{\"[1,\\\"a\\\"]\":2}");
	expect_json(RAW("\x81\xc4\x02\x00\x01\x02"), "{\"\\\"AAE=\\\"\":2}");
	expect_json(RAW("\x81\x80\x02"), "{\"{}\":2}");
	expect_json(RAW("\x81\x90\x02"), "{\"[]\":2}");
	expect_json(RAW("\x81\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00\x02"), "{\"1.5\":2}");
	expect_json(RAW("\x81\xd4\x01\x01\x02"),
		    "{\"{\\\"ext\\\":1,\\\"base64\\\":\\\"AQ==\\\"}\":2}");
	expect_json(RAW("\x81\xd6\xff\x00\x00\x00\x00\x02"),
		    "{\"\\\"1970-01-01T00:00:00Z\\\"\":2}");
	/* a key string holding '"', '\\' and a control byte is escaped twice */
	expect_json(RAW("\x81\x91\xa3" "\"\\\n" "\x02"),
		    "{\"[\\\"\\\\\\\"\\\\\\\\\\\\n\\\"]\":2}");
	/* a string key inside a non-string key */
	expect_json(RAW("\x81\x81\xa1" "a\x01\x02"), "{\"{\\\"a\\\":1}\":2}");
	/* mixed keys, and a non-string key that is a value's container */
	expect_json(RAW("\x83\xa1" "a\x01\x02\x03\xc0\x81\x04\x05"),
		    "{\"a\":1,\"2\":3,\"null\":{\"4\":5}}");
	/* a non-string key inside a non-string key: escaped twice */
	expect_json(RAW("\x81\x81\x01\x02\x03"), "{\"{\\\"1\\\":2}\":3}");
	expect_json(RAW("\x81\x81\x91\xa0\x01\x02"),
		    "{\"{\\\"[\\\\\\\"\\\\\\\"]\\\":1}\":2}");
	expect_json(RAW("\x81\x91\x81\xc2\xc2\xc0"), "{\"[{\\\"false\\\":false}]\":null}");
	/* three levels is refused */
	expect_bad(RAW("\x81\x81\x81\x01\x02\x03\x04"), "non-string keys nested deeper than 2");
	expect_bad(RAW("\x81\x91\x81\x91\x81\xc0\xc0\xc0\xc0"),
		   "non-string keys nested deeper than 2");
	/* ... but a string key there is fine */
	expect_json(RAW("\x81\x81\x81\xa1" "x\x01\x02\x03"),
		    "{\"{\\\"{\\\\\\\"x\\\\\\\":1}\\\":2}\":3}");
	/* 0xc1 in key position is an invalid byte first */
	expect_bad(RAW("\x81\x81\x81\xc1\x02\x03\x04"), "invalid byte 0xc1");
}

static void nest(uint8_t *in, size_t depth, int map, size_t *len)
{
	size_t h = 0;

	for (size_t i = 0; i < depth; i++) {
		if (map) {
			in[h++] = 0x81;
			in[h++] = 0xa1;
			in[h++] = 'k';
		} else {
			in[h++] = 0x91;
		}
	}
	*len = h;
}

static void test_depth(void **state)
{
	uint8_t in[400];
	char want[600], *w;
	size_t h;

	(void)state;
	for (int map = 0; map < 2; map++) {
		/* 64 deep with a scalar inside: fine */
		nest(in, 64, map, &h);
		in[h++] = 0xc0;
		w = want;
		for (int i = 0; i < 64; i++)
			w += sprintf(w, map ? "{\"k\":" : "[");
		w += sprintf(w, "null");
		for (int i = 0; i < 64; i++)
			*w++ = map ? '}' : ']';
		*w = '\0';
		expect_json(in, h, want);
		/* 63 containers around an empty one: the empty one is depth 64, fine */
		nest(in, 63, map, &h);
		in[h++] = map ? 0x80 : 0x90;
		w = want;
		for (int i = 0; i < 63; i++)
			w += sprintf(w, map ? "{\"k\":" : "[");
		w += sprintf(w, map ? "{}" : "[]");
		for (int i = 0; i < 63; i++)
			*w++ = map ? '}' : ']';
		*w = '\0';
		expect_json(in, h, want);
		/* depth 65, empty or not */
		nest(in, 64, map, &h);
		in[h++] = 0x90;
		expect_bad(in, h, "nesting deeper than 64");
		nest(in, 64, map, &h);
		in[h++] = 0x91;
		in[h++] = 0xc0;
		expect_bad(in, h, "nesting deeper than 64");
		nest(in, 100, map, &h);
		in[h++] = 0xc0;
		expect_bad(in, h, "nesting deeper than 64");
	}
	/* containers in a key count too: {[nil]:1} at depth 63, so [nil] is at 64 */
	nest(in, 62, 0, &h);
	memcpy(in + h, "\x81\x91\xc0\x01", 4);
	w = want;
	for (int i = 0; i < 62; i++)
		*w++ = '[';
	w += sprintf(w, "{\"[null]\":1}");
	for (int i = 0; i < 62; i++)
		*w++ = ']';
	*w = '\0';
	expect_json(in, h + 4, want);
	nest(in, 63, 0, &h);
	memcpy(in + h, "\x81\x91\xc0\x01", 4);
	expect_bad(in, h + 4, "nesting deeper than 64");
}

/* ---- errors ---- */

/* A document with one of everything, used for truncation and tight-buffer checks. */
static uint8_t *sample_doc(size_t *len)
{
	static const uint8_t tail[] =
		"\xcc\xff\xcd\xff\xff\xce\xff\xff\xff\xff\xcf\x01\x02\x03\x04\x05\x06\x07\x08"
		"\xd0\x80\xd1\x80\x00\xd2\x80\x00\x00\x00\xd3\x80\x00\x00\x00\x00\x00\x00\x00"
		"\xca\x3f\x80\x00\x00\xcb\x3f\xb9\x99\x99\x99\x99\x99\x9a"
		"\xd9\x05hello\xda\x00\x03\xe2\x82\xac\xdb\x00\x00\x00\x02\x22\x0a"
		"\xc4\x02\x00\x01\xc5\x00\x01\x7f\xc6\x00\x00\x00\x00"
		"\xd4\x01\x01\xd5\x02\x01\x02\xd7\xff\x00\x00\x00\x00\x00\x00\x00\x01"
		"\xd8\x03" "0123456789abcdef\xc7\x01\x04\x00\xc8\x00\x00\x05\xc9\x00\x00\x00\x01\x06\x07"
		"\xd6\xff\x00\x00\x00\x01\xc7\x0c\xff\x00\x00\x00\x01\xff\xff\xff\xff\xff\xff\xff\xff"
		"\xdc\x00\x01\xc0\xdd\x00\x00\x00\x01\xc3\xde\x00\x01\x01\x02\xdf\x00\x00\x00\x01\xa0\xa0"
		"\x82\x92\x01\xa1" "a\xc2\xc3\x7f\xe0\xc0\xc2\x80\x90\xa2\xc3\xa9";
	uint8_t *in = malloc(sizeof(tail) + 3);	/* array16 of everything */
	size_t count = 0, off = 0;

	/* count the objects in tail by walking with msgpack-c */
	while (off < sizeof(tail) - 1) {
		msgpack_unpacked r;

		msgpack_unpacked_init(&r);
		assert_int_equal(msgpack_unpack_next(&r, (const char *)tail, sizeof(tail) - 1, &off),
				 MSGPACK_UNPACK_SUCCESS);
		msgpack_unpacked_destroy(&r);
		count++;
	}
	in[0] = 0xdc;
	in[1] = (uint8_t)(count >> 8);
	in[2] = (uint8_t)count;
	memcpy(in + 3, tail, sizeof(tail) - 1);
	*len = sizeof(tail) - 1 + 3;
	return in;
}

static void test_sample_doc(void **state)
{
	size_t len, n;
	uint8_t *in = sample_doc(&len);
	char *out = convert_ok(in, len, &n);

	(void)state;
	assert_string_equal(out,
		"[255,65535,4294967295,72623859790382856,-128,-32768,-2147483648,"
		"-9223372036854775808,1.0,0.1,\"hello\",\"\xe2\x82\xac\",\"\\\"\\n\",\"AAE=\","
		"\"fw==\",\"\",{\"ext\":1,\"base64\":\"AQ==\"},{\"ext\":2,\"base64\":\"AQI=\"},"
		"\"1970-01-01T00:00:01Z\",{\"ext\":3,\"base64\":\"MDEyMzQ1Njc4OWFiY2RlZg==\"},"
		"{\"ext\":4,\"base64\":\"AA==\"},{\"ext\":5,\"base64\":\"\"},"
		"{\"ext\":6,\"base64\":\"Bw==\"},\"1970-01-01T00:00:01Z\","
		"\"1969-12-31T23:59:59.000000001Z\",[null],[true],{\"1\":2},{\"\":\"\"},"
		"{\"[1,\\\"a\\\"]\":false,\"true\":127},-32,null,false,{},[],\"\xc3\xa9\"]");
	free(out);
	free(in);
}

static void test_truncated_prefixes(void **state)
{
	size_t len;
	uint8_t *in = sample_doc(&len);

	(void)state;
	for (size_t n = 0; n < len; n++) {
		/* exact-size copy so a read past the end is an ASan error */
		uint8_t *cut = malloc(n ? n : 1);

		memcpy(cut, in, n);
		expect_bad(cut, n, "truncated");
		free(cut);
	}
	free(in);
	expect_bad(NULL, 0, "truncated");
}

static void test_bad_input(void **state)
{
	(void)state;
	expect_bad(RAW("\xc1"), "invalid byte 0xc1");
	expect_bad(RAW("\x92\x01\xc1"), "invalid byte 0xc1");
	expect_bad(RAW("\x81\xc1\x01"), "invalid byte 0xc1");
	expect_bad(RAW("\x81\x01\xc1"), "invalid byte 0xc1");
	expect_bad(RAW("\xc0\xc0"), "trailing bytes");
	expect_bad(RAW("\x91\x01\x02"), "trailing bytes");
	expect_bad(RAW("\xc0\xc1"), "trailing bytes");
	expect_bad(RAW("\xa3" "ab"), "truncated");
	expect_bad(RAW("\x92\x01"), "truncated");
	expect_bad(RAW("\x81\x01"), "truncated");
	/* counts and lengths far past the end are refused at once */
	expect_bad(RAW("\xdd\xff\xff\xff\xff\xc0\xc0"), "truncated");
	expect_bad(RAW("\xdf\xff\xff\xff\xff\xc0\xc0"), "truncated");
	expect_bad(RAW("\xdf\x00\x00\x00\x02\xc0\xc0\xc0"), "truncated");	/* 2 pairs, 3 bytes */
	expect_bad(RAW("\xdd\x00\x00\x00\x03\xc1\xc0"), "truncated");	/* before the 0xc1 */
	expect_bad(RAW("\xdb\xff\xff\xff\xff" "abc"), "truncated");
	expect_bad(RAW("\xc6\xff\xff\xff\xff" "abc"), "truncated");
	expect_bad(RAW("\xc9\xff\xff\xff\xff\x01" "abc"), "truncated");
	expect_bad(RAW("\xd8\x01" "abc"), "truncated");
	expect_bad(RAW("\xc7\x01"), "truncated");
}

static void test_null_out(void **state)
{
	const char *why = "untouched";

	(void)state;
	assert_int_equal(shmring_msgpack_to_json("\xc0", 1, NULL, 0, &why), -ENOSPC);
	assert_string_equal(why, "untouched");
	assert_int_equal(shmring_msgpack_to_json("\xc0", 1, NULL, 0, NULL), -ENOSPC);
	assert_int_equal(shmring_json_error_record("x", 1, "a", 1, NULL, 0), -ENOSPC);
}

/* ---- the error record ---- */

static int b64_val(int c)
{
	const char *dig = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *p = c ? strchr(dig, c) : NULL;

	return p ? (int)(p - dig) : -1;
}

static size_t b64_decode(const char *s, uint8_t *out)
{
	size_t n = strlen(s), o = 0;

	assert_int_equal(n % 4, 0);
	for (size_t i = 0; i < n; i += 4) {
		int v[4];

		for (int k = 0; k < 4; k++)
			v[k] = s[i + k] == '=' ? 0 : b64_val(s[i + k]);
		for (int k = 0; k < 4; k++)
			assert_true(v[k] >= 0);
		out[o++] = (uint8_t)(v[0] << 2 | v[1] >> 4);
		if (s[i + 2] != '=')
			out[o++] = (uint8_t)(v[1] << 4 | v[2] >> 2);
		if (s[i + 3] != '=')
			out[o++] = (uint8_t)(v[2] << 6 | v[3]);
	}
	return o;
}

static void check_error_record(const char *why, const char *want_why, uint64_t seq,
			       const uint8_t *raw, size_t len)
{
	size_t bound = shmring_json_bound(len);
	char *out = malloc(bound);
	uint8_t *dec = malloc(len + 3);
	ssize_t n = shmring_json_error_record(why, seq, raw, len, out, bound);
	json_error_t err;
	json_t *j;

	assert_true(n > 0 && (size_t)n <= bound);
	j = json_loadb(out, (size_t)n, 0, &err);
	if (!j)
		fail_msg("jansson rejects %.*s: %s", (int)n, out, err.text);
	assert_int_equal(json_object_size(j), 3);
	assert_string_equal(json_string_value(json_object_get(j, "shmring_error")), want_why);
	assert_int_equal(json_integer_value(json_object_get(j, "seq")), (json_int_t)seq);
	assert_int_equal(b64_decode(json_string_value(json_object_get(j, "base64")), dec), len);
	if (len)
		assert_memory_equal(dec, raw, len);
	json_decref(j);
	for (size_t cap = 0; cap < (size_t)n; cap++) {
		char *tight = malloc(cap ? cap : 1);

		assert_int_equal(shmring_json_error_record(why, seq, raw, len, tight, cap), -ENOSPC);
		free(tight);
	}
	free(out);
	free(dec);
}

static void test_error_record(void **state)
{
	uint8_t raw[300];
	char out[2048], longwhy[400];

	(void)state;
	for (size_t i = 0; i < sizeof(raw); i++)
		raw[i] = (uint8_t)(i * 37 + 11);
	for (size_t len = 0; len < 8; len++)
		check_error_record("truncated", "truncated", 42, raw, len);
	check_error_record("invalid byte 0xc1", "invalid byte 0xc1", 0, raw, 300);
	check_error_record(NULL, "unknown", INT64_MAX, raw, 1);
	check_error_record("q\"b\\s\n\x01", "q\"b\\s\n\x01", 7, raw, 3);
	check_error_record("bad \xff utf8", "bad \xef\xbf\xbd utf8", 7, raw, 3);
	/* the exact text, including a seq jansson could not hold */
	assert_int_equal(shmring_json_error_record("truncated", UINT64_MAX, "\xde\xad", 2, out,
						   sizeof(out)),
			 strlen("{\"shmring_error\":\"truncated\",\"seq\":18446744073709551615,"
				"\"base64\":\"3q0=\"}"));
	assert_memory_equal(out, "{\"shmring_error\":\"truncated\",\"seq\":18446744073709551615,"
			    "\"base64\":\"3q0=\"}", 71);
	/* why is cut at SHMRING_JSON_WHY_MAX bytes */
	memset(longwhy, 'w', sizeof(longwhy) - 1);
	longwhy[sizeof(longwhy) - 1] = '\0';
	{
		char want[SHMRING_JSON_WHY_MAX + 1];

		memset(want, 'w', SHMRING_JSON_WHY_MAX);
		want[SHMRING_JSON_WHY_MAX] = '\0';
		check_error_record(longwhy, want, 1, raw, 10);
	}
}

/* ---- the bound ---- */

/* Fills in[] with `reps` copies of unit inside a container, checks output <= bound. */
static double bound_ratio(const uint8_t *pre, size_t npre, const uint8_t *unit, size_t nunit,
			  size_t reps, const uint8_t *post, size_t npost)
{
	size_t len = npre + nunit * reps + npost;
	uint8_t *in = malloc(len);
	size_t bound = shmring_json_bound(len);
	char *out = malloc(bound);
	ssize_t n;

	memcpy(in, pre, npre);
	for (size_t i = 0; i < reps; i++)
		memcpy(in + npre + i * nunit, unit, nunit);
	if (npost)
		memcpy(in + npre + nunit * reps, post, npost);
	n = shmring_msgpack_to_json(in, len, out, bound, NULL);
	if (n < 0)
		fail_msg("adversarial input rejected: %zd (%02x %02x %02x %02x)", n, in[0], in[1],
			 in[2], in[3]);
	assert_true((size_t)n <= bound);
	assert_parses(out, (size_t)n);
	free(in);
	free(out);
	return (double)n / (double)len;
}

static void test_bound(void **state)
{
	/* array16 of 65535 units; map16 of 65535 pairs */
	const uint8_t arr[] = { 0xdc, 0xff, 0xff }, map[] = { 0xde, 0xff, 0xff };
	/* {[ map16 ... ]: nil} — content inside one key, and {{ map16 ...: nil }: nil} — inside
	 * a key inside a key (the map16 is written by bound_ratio's pre) */
	const uint8_t k1arr[] = { 0x81, 0xdc, 0xff, 0xff };
	const uint8_t k1map[] = { 0x81, 0xde, 0xff, 0xff };
	const uint8_t k2map[] = { 0x81, 0x81, 0xde, 0xff, 0xff };
	const uint8_t k2arr[] = { 0x81, 0x81, 0xdc, 0xff, 0xff };
	const uint8_t post1[] = { 0xc0 }, post2[] = { 0xc0, 0xc0, 0xc0 };
	double worst = 0, r;
	const struct {
		const uint8_t *u;
		size_t n;
	} units[] = {
		{ (const uint8_t *)"\xc2", 1 },
		{ (const uint8_t *)"\xc0", 1 },
		{ (const uint8_t *)"\xa0", 1 },
		{ (const uint8_t *)"\x90", 1 },
		{ (const uint8_t *)"\xe0", 1 },
		{ (const uint8_t *)"\xd4\x80\x00", 3 },
		{ (const uint8_t *)"\xc7\x00\x80", 3 },
		{ (const uint8_t *)"\xc4\x00", 2 },
		{ (const uint8_t *)"\xa1\x01", 2 },
		{ (const uint8_t *)"\xa1\x22", 2 },
		{ (const uint8_t *)"\xa2\x01\x01", 3 },
		{ (const uint8_t *)"\xd3\x80\x00\x00\x00\x00\x00\x00\x00", 9 },
		{ (const uint8_t *)"\xcb\x80\x10\x00\x00\x00\x00\x00\x00", 9 },
		{ (const uint8_t *)"\xca\x80\x80\x00\x01", 5 },
		{ (const uint8_t *)"\xd6\xff\xff\xff\xff\xff", 6 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		const uint8_t *u = units[i].u;
		size_t n = units[i].n;
		/* each unit as a value (arrays) and as key and value (maps), at each key level */
		r = bound_ratio(arr, 3, u, n, 65535, NULL, 0);
		worst = r > worst ? r : worst;
		r = bound_ratio(k1arr, 4, u, n, 65535, post1, 1);
		worst = r > worst ? r : worst;
		r = bound_ratio(k2arr, 5, u, n, 65535, post2, 2);
		worst = r > worst ? r : worst;
		/* maps need pairs: the unit as key, nil as value */
		{
			uint8_t *pair = malloc(2 * n + 1);

			memcpy(pair, u, n);
			pair[n] = 0xc0;
			r = bound_ratio(map, 3, pair, n + 1, 65535, NULL, 0);
			worst = r > worst ? r : worst;
			r = bound_ratio(k1map, 4, pair, n + 1, 65535, post1, 1);
			worst = r > worst ? r : worst;
			/* a key at the second level must be a string: only strings qualify */
			if (u[0] >= 0xa0 && u[0] <= 0xbf) {
				r = bound_ratio(k2map, 5, pair, n + 1, 65535, post2, 2);
				worst = r > worst ? r : worst;
			}
			/* the unit as both key and value */
			memcpy(pair + n, u, n);
			r = bound_ratio(map, 3, pair, 2 * n, 65535, NULL, 0);
			worst = r > worst ? r : worst;
			r = bound_ratio(k1map, 4, pair, 2 * n, 65535, post1, 1);
			worst = r > worst ? r : worst;
			free(pair);
		}
		/* a unit as a key at the second level: map of one pair {unit:nil} per array element
		 * of a key: {[{u:nil},...]: nil} */
		{
			uint8_t *el = malloc(n + 2);

			el[0] = 0x81;
			memcpy(el + 1, u, n);
			el[n + 1] = 0xc0;
			r = bound_ratio(k1arr, 4, el, n + 2, 65535, post1, 1);
			worst = r > worst ? r : worst;
			free(el);
		}
	}
	/* control bytes in one long string, at each key level */
	{
		uint8_t *in = malloc(70010);
		char *out;
		size_t len, bound;
		ssize_t n;

		memcpy(in, "\x81\x81\x91\xdb\x00\x01\x00\x00", 8);
		memset(in + 8, 0x01, 65536);
		memcpy(in + 8 + 65536, "\xc0\xc0", 2);
		len = 8 + 65536 + 2;
		bound = shmring_json_bound(len);
		out = malloc(bound);
		n = shmring_msgpack_to_json(in, len, out, bound, NULL);
		assert_true(n > 0 && (size_t)n <= bound);
		r = (double)n / (double)len;
		worst = r > worst ? r : worst;
		free(out);
		free(in);
	}
	/* libshm/mp2json.c argues 17 is the most any input can reach */
	print_message("worst output/input ratio seen: %.2f (at most 17)\n", worst);
	assert_true(worst <= 17.0);
	/* small inputs */
	assert_true(shmring_json_bound(0) >= 830);
	assert_true(shmring_json_bound(SIZE_MAX) == SIZE_MAX);
	/* the error record of a large input */
	{
		static uint8_t raw[100000];
		size_t bound = shmring_json_bound(sizeof(raw));
		char *out = malloc(bound), why[SHMRING_JSON_WHY_MAX + 1];

		memset(why, 0x01, SHMRING_JSON_WHY_MAX);
		why[SHMRING_JSON_WHY_MAX] = '\0';
		assert_true(shmring_json_error_record(why, UINT64_MAX, raw, sizeof(raw), out, bound) >
			    0);
		for (size_t len = 0; len < 10; len++)
			assert_true(shmring_json_error_record(why, UINT64_MAX, raw, len, out,
							      shmring_json_bound(len)) > 0);
		free(out);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nil_bool),
		cmocka_unit_test(test_int_widths),
		cmocka_unit_test(test_int_digits),
		cmocka_unit_test(test_floats),
		cmocka_unit_test_teardown(test_float_locale, restore_locale),
		cmocka_unit_test(test_str_widths),
		cmocka_unit_test(test_escape_ascii),
		cmocka_unit_test(test_escape_positions),
		cmocka_unit_test(test_utf8_valid),
		cmocka_unit_test(test_utf8_invalid),
		cmocka_unit_test(test_bin),
		cmocka_unit_test(test_ext),
		cmocka_unit_test(test_timestamp),
		cmocka_unit_test(test_packed_record),
		cmocka_unit_test(test_containers),
		cmocka_unit_test(test_long_array),
		cmocka_unit_test(test_nonstring_keys),
		cmocka_unit_test(test_depth),
		cmocka_unit_test(test_sample_doc),
		cmocka_unit_test(test_truncated_prefixes),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_null_out),
		cmocka_unit_test(test_error_record),
		cmocka_unit_test(test_bound),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
