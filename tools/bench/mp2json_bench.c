/* mp2json_bench: ns per record for msgpack -> JSON, fast converter against the reference.
 *
 * usage: mp2json_bench [records [reference-records]]
 * The record is a typical ~300-byte compaction record (ids, a nested map, integers, an array
 * with one violation map, a bool). Build with -O2; the target is <= 150 ns per record.
 * A second, float-heavy record (16 doubles: 8 short decimals such as 0.25 or 1e-7, 8 with
 * 15-17 significant digits such as 1.0 / 3) gives the cost per double.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <msgpack.h>

#include "ref_mp2json.h"
#include "shmring/json.h"

static void pk_cstr(msgpack_packer *pk, const char *s)
{
	msgpack_pack_str(pk, strlen(s));
	msgpack_pack_str_body(pk, s, strlen(s));
}

static void build_record(msgpack_sbuffer *sb)
{
	msgpack_packer pk;

	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 12);
	pk_cstr(&pk, "v");
	msgpack_pack_uint8(&pk, 1);
	pk_cstr(&pk, "seq");
	msgpack_pack_uint64(&pk, 1234567);
	pk_cstr(&pk, "ts_ns");
	msgpack_pack_uint64(&pk, 1718000000123456789ull);
	pk_cstr(&pk, "session_id");
	pk_cstr(&pk, "sess_01J9Z3K4M5N6P7Q8R9S0T1V2W3");
	pk_cstr(&pk, "record_id");
	pk_cstr(&pk, "rec_01J9Z3K4M5N6P7Q8R9S0T1V2W4");
	pk_cstr(&pk, "type");
	pk_cstr(&pk, "compaction");
	pk_cstr(&pk, "detail");
	msgpack_pack_map(&pk, 2);
	pk_cstr(&pk, "kind");
	pk_cstr(&pk, "tool_pair");
	pk_cstr(&pk, "tool_name");
	pk_cstr(&pk, "read_file");
	pk_cstr(&pk, "tokens_before");
	msgpack_pack_uint32(&pk, 183442);
	pk_cstr(&pk, "tokens_after");
	msgpack_pack_uint32(&pk, 40211);
	pk_cstr(&pk, "violations");
	msgpack_pack_array(&pk, 1);
	msgpack_pack_map(&pk, 3);
	pk_cstr(&pk, "rule");
	pk_cstr(&pk, "max_tool_output_bytes");
	pk_cstr(&pk, "severity");
	pk_cstr(&pk, "warn");
	pk_cstr(&pk, "observed");
	msgpack_pack_uint32(&pk, 65536);
	pk_cstr(&pk, "redacted");
	msgpack_pack_false(&pk);
	pk_cstr(&pk, "path");
	pk_cstr(&pk, "/work/main/libshm/ring.c");
}

/* Mixed magnitudes, so that every layout (fixed, 0.000ddd, exponent) is exercised. */
static const double float_values[16] = {
	0.25,     1234.5,    1e-7,        6.02214076e23, 97.5,     100.0,    -0.001,    3e10,
	1.0 / 3,  2.0 / 7,   0.1 + 0.2,   1.7976931348623157e308, 2.2250738585072014e-308,
	123456.789012345678, -9.87654321987654e-5, 299792458.123456789,
};

static void build_float_record(msgpack_sbuffer *sb)
{
	msgpack_packer pk;
	char key[8];

	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 16);
	for (int i = 0; i < 16; i++) {
		snprintf(key, sizeof(key), "f%d", i);
		pk_cstr(&pk, key);
		msgpack_pack_double(&pk, float_values[i]);
	}
}

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

typedef ssize_t (*conv_fn)(const void *, size_t, char *, size_t, const char **);

/* Best of five runs: the least disturbed one is the converter's own speed. */
static double bench(conv_fn f, const void *in, size_t len, char *out, size_t cap, long n)
{
	double best = 1e30;
	volatile ssize_t sink = 0;

	for (int run = 0; run < 5; run++) {
		double t0 = now_ns(), dt;

		for (long i = 0; i < n; i++)
			sink += f(in, len, out, cap, NULL);
		dt = (now_ns() - t0) / (double)n;
		if (dt < best)
			best = dt;
	}
	(void)sink;
	return best;
}

/* Convert with both converters, check they agree, time both; 0 or 1 (disagreement). */
static int run(const char *what, msgpack_sbuffer *sb, long n, long nref, int per)
{
	size_t cap = shmring_json_bound(sb->size);
	char *out = malloc(cap), *ref = malloc(cap);
	ssize_t len, rlen;
	double fast, slow;

	len = shmring_msgpack_to_json(sb->data, sb->size, out, cap, NULL);
	rlen = ref_msgpack_to_json(sb->data, sb->size, ref, cap, NULL);
	if (len < 0 || len != rlen || memcmp(out, ref, (size_t)len)) {
		fprintf(stderr, "%s: converters disagree: %zd vs %zd\n%.*s\n%.*s\n", what, len, rlen,
			(int)(len > 0 ? len : 0), out, (int)(rlen > 0 ? rlen : 0), ref);
		return 1;
	}
	printf("%s record: %zu bytes msgpack -> %zd bytes JSON\n%.*s\n", what, sb->size, len,
	       (int)len, out);
	fast = bench(shmring_msgpack_to_json, sb->data, sb->size, out, cap, n);
	slow = bench(ref_msgpack_to_json, sb->data, sb->size, ref, cap, nref);
	printf("fast      %8.1f ns/record  %6.2f GB/s in", fast, (double)sb->size / fast);
	if (per)
		printf("  %6.1f ns per double", fast / per);
	printf("\nreference %8.1f ns/record  %6.2f GB/s in\n", slow, (double)sb->size / slow);
	printf("ratio     %8.1fx\n", slow / fast);
	free(out);
	free(ref);
	return 0;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 2000000, nref = argc > 2 ? atol(argv[2]) : 100000;
	msgpack_sbuffer sb, fsb;
	int rc;

	msgpack_sbuffer_init(&sb);
	msgpack_sbuffer_init(&fsb);
	build_record(&sb);
	build_float_record(&fsb);
	rc = run("typical", &sb, n, nref, 0) || run("float-heavy", &fsb, n / 4, nref / 10, 16);
	msgpack_sbuffer_destroy(&sb);
	msgpack_sbuffer_destroy(&fsb);
	return rc;
}
