/* mp2json_bench: ns per record for msgpack -> JSON, fast converter against the reference.
 *
 * usage: mp2json_bench [records [reference-records]]
 * The record is a typical ~300-byte compaction record (ids, a nested map, integers, an array
 * with one violation map, a bool). Build with -O2; the target is <= 150 ns per record.
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

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 2000000, nref = argc > 2 ? atol(argv[2]) : 100000;
	msgpack_sbuffer sb;
	size_t cap;
	char *out, *ref;
	ssize_t len, rlen;
	double fast, slow;

	msgpack_sbuffer_init(&sb);
	build_record(&sb);
	cap = shmring_json_bound(sb.size);
	out = malloc(cap);
	ref = malloc(cap);
	len = shmring_msgpack_to_json(sb.data, sb.size, out, cap, NULL);
	rlen = ref_msgpack_to_json(sb.data, sb.size, ref, cap, NULL);
	if (len < 0 || len != rlen || memcmp(out, ref, (size_t)len)) {
		fprintf(stderr, "converters disagree: %zd vs %zd\n", len, rlen);
		return 1;
	}
	printf("record: %zu bytes msgpack -> %zd bytes JSON\n%.*s\n", sb.size, len, (int)len, out);
	fast = bench(shmring_msgpack_to_json, sb.data, sb.size, out, cap, n);
	slow = bench(ref_msgpack_to_json, sb.data, sb.size, ref, cap, nref);
	printf("fast      %8.1f ns/record  %6.2f GB/s in\n", fast, (double)sb.size / fast);
	printf("reference %8.1f ns/record  %6.2f GB/s in\n", slow, (double)sb.size / slow);
	printf("ratio     %8.1fx\n", slow / fast);
	free(out);
	free(ref);
	msgpack_sbuffer_destroy(&sb);
	return 0;
}
