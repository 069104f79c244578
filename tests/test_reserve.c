/* test_reserve: records of every size up to the limit across wrap-around from many
 * processes; reserve/commit/abort/overflow; send_wait against a stopped and a resumed
 * writer (returns in time, never early, never hangs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "shmring/reserve.h"
#include "testutil.h"

/* A msgpack record of exactly `size` bytes: bin8/bin16 header + payload tagged (p, i). */
static size_t make_rec(uint8_t *buf, size_t size, int p, uint32_t i)
{
	size_t hdr = size - 2 <= 255 ? 2 : 3;
	size_t body = size - hdr;
	if (hdr == 2) {
		buf[0] = 0xc4;
		buf[1] = (uint8_t)body;
	} else {
		buf[0] = 0xc5;
		buf[1] = (uint8_t)(body >> 8);
		buf[2] = (uint8_t)body;
	}
	for (size_t k = 0; k < body; k++)
		buf[hdr + k] = (uint8_t)(k * 7 + (size_t)p * 31 + i);
	if (body >= 5) {
		buf[hdr] = (uint8_t)p;
		memcpy(buf + hdr + 1, &i, 4);
	}
	return size;
}

static void test_every_size(void **state)
{
	struct tu_ring *t = *state;
	shmring *r = tu_serve(t, "64", "64", NULL);
	struct shmring_stats st;
	shmring_stats(r, &st);
	const size_t max = st.max_record; /* 16 slots of 64 - 8 */
	assert_int_equal(max, 1016);
	const int P = 3;
	for (int p = 0; p < P; p++) {
		if (fork() == 0) {
			uint8_t buf[2048];
			unsigned seed = (unsigned)p * 7919u + 1;
			/* The smallest records: 1 to 6 bytes (a fixint, then fixstr of 1..5). */
			for (int k = 1; k <= 6; k++) {
				uint8_t small[6] = { 0x7f };
				if (k > 1) {
					small[0] = (uint8_t)(0xa0 | (k - 1));
					memset(small + 1, 'z', (size_t)k - 1);
				}
				if (shmring_send_wait(r, small, (size_t)k, 5000))
					_exit(4);
			}
			/* Every size from 7 to max once, in a scattered order, then random mixes. */
			for (uint32_t i = 0; i < 3000; i++) {
				size_t size = i < max - 6 ? 7 + (i * 389u) % (max - 6) : 7 + rand_r(&seed) % (max - 6);
				make_rec(buf, size, p, i);
				int rc;
				while ((rc = shmring_send_wait(r, buf, size, 1000)) == -EAGAIN)
					;
				if (rc)
					_exit(1);
			}
			/* One byte past the limit is refused. */
			if (shmring_send(r, buf, max + 1) != -EMSGSIZE)
				_exit(2);
			_exit(tu_flush(r) ? 3 : 0);
		}
	}
	assert_int_equal(tu_wait_children(P), 0);
	assert_int_equal(tu_flush(r), 0);
	long bad;
	json_t *arr = tu_read_jsonl(t->out, &bad);
	assert_non_null(arr);
	/* bin → base64 string: decode each and check it byte for byte. */
	uint32_t next[3] = { 0, 0, 0 };
	size_t k;
	json_t *v;
	int smalls = 0;
	json_array_foreach(arr, k, v) {
		if (json_is_integer(v) || (json_is_string(v) && json_string_value(v)[0] == 'z')) {
			smalls++;
			continue;
		}
		assert_true(json_is_string(v));
		const char *b64 = json_string_value(v);
		size_t n = json_string_length(v);
		static uint8_t raw[2048];
		size_t m = 0;
		uint32_t acc = 0;
		int bits = 0;
		for (size_t j = 0; j < n && b64[j] != '='; j++) {
			const char *al = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
			acc = acc << 6 | (uint32_t)(strchr(al, b64[j]) - al);
			bits += 6;
			if (bits >= 8) {
				bits -= 8;
				raw[m++] = (uint8_t)(acc >> bits);
			}
		}
		assert_true(m >= 5);
		int p = raw[0];
		uint32_t i;
		memcpy(&i, raw + 1, 4);
		assert_true(p < 3);
		assert_int_equal(i, next[p]);
		next[p]++;
		uint8_t want[2048];
		size_t hdr = m + 2 <= 257 ? 2 : 3;
		make_rec(want, m + hdr, p, i);
		assert_memory_equal(raw, want + hdr, m);
	}
	for (int p = 0; p < P; p++)
		assert_int_equal(next[p], 3000);
	assert_int_equal(smalls, 3 * 6);
	json_decref(arr);
	shmring_stats(r, &st);
	assert_int_equal(st.written, 3 * 3006);
	assert_int_equal(st.dropped_oversize, 3);
	assert_int_equal(st.sent, st.written + st.dropped_full + st.dropped_oversize + st.abandoned + st.pending);
}

static void test_reserve_commit_abort_overflow(void **state)
{
	struct tu_ring *t = *state;
	shmring *r = tu_serve(t, "64", "256", NULL);
	struct shmring_reservation res;
	/* committed */
	assert_int_equal(shmring_reserve(r, 100, &res), 0);
	msgpack_pack_map(&res.pk, 1);
	msgpack_pack_str_with_body(&res.pk, "k", 1);
	msgpack_pack_str_with_body(&res.pk, "v", 1);
	assert_int_equal(shmring_commit(&res), 0);
	/* aborted */
	assert_int_equal(shmring_reserve(r, 100, &res), 0);
	msgpack_pack_str_with_body(&res.pk, "gone", 4);
	shmring_abort(&res);
	/* overflowed: packed past max_len → -EMSGSIZE, nothing published */
	assert_int_equal(shmring_reserve(r, 10, &res), 0);
	msgpack_pack_str_with_body(&res.pk, "0123456789abcdef", 16);
	assert_int_equal(shmring_commit(&res), -EMSGSIZE);
	/* spanning reservation (several slots), committed */
	assert_int_equal(shmring_reserve(r, 1500, &res), 0);
	char big[1400];
	memset(big, 'x', sizeof(big));
	msgpack_pack_str_with_body(&res.pk, big, sizeof(big));
	assert_int_equal(shmring_commit(&res), 0);
	/* too large to reserve */
	assert_int_equal(shmring_reserve(r, 1u << 20, &res), -EMSGSIZE);
	assert_int_equal(tu_flush(r), 0);
	long bad;
	json_t *arr = tu_read_jsonl(t->out, &bad);
	assert_non_null(arr);
	assert_int_equal(json_array_size(arr), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 0), "k")), "v");
	assert_int_equal(json_string_length(json_array_get(arr, 1)), sizeof(big));
	json_decref(arr);
	struct shmring_stats st;
	shmring_stats(r, &st);
	assert_int_equal(st.sent, 4); /* committed, overflowed, spanning, too large */
	assert_int_equal(st.written, 2);
	assert_int_equal(st.aborted, 1);
	assert_int_equal(st.dropped_oversize, 2);
	assert_int_equal(st.pending, 0);
}

static void test_send_wait(void **state)
{
	struct tu_ring *t = *state;
	shmring *r = tu_serve(t, "64", "64", NULL);
	uint8_t rec[20];
	make_rec(rec, sizeof(rec), 0, 0);
	kill(t->writer, SIGSTOP);
	for (int i = 0; i < 64; i++)
		assert_int_equal(shmring_send(r, rec, sizeof(rec)), 0);
	/* Stopped writer: returns -EAGAIN after the timeout, never early, never hangs. */
	uint64_t t0 = tu_now_ms();
	assert_int_equal(shmring_send_wait(r, rec, sizeof(rec), 200), -EAGAIN);
	uint64_t dt = tu_now_ms() - t0;
	assert_true(dt >= 200 && dt < 600);
	assert_int_equal(shmring_send(r, rec, sizeof(rec)), -EAGAIN); /* send itself never waits */
	/* Resumed after 100 ms: returns 0 soon after, well before its timeout. */
	pid_t c = fork();
	if (c == 0) {
		tu_sleep_ms(100);
		kill(t->writer, SIGCONT);
		_exit(0);
	}
	t0 = tu_now_ms();
	assert_int_equal(shmring_send_wait(r, rec, sizeof(rec), 5000), 0);
	dt = tu_now_ms() - t0;
	assert_true(dt >= 90 && dt < 1500);
	assert_int_equal(tu_wait_children(1), 0);
	assert_int_equal(tu_flush(r), 0);
	struct shmring_stats st;
	shmring_stats(r, &st);
	assert_int_equal(st.written, 65);
	assert_int_equal(st.dropped_full, 2);
	assert_int_equal(st.sent, 67);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TU_TEST(test_reserve_commit_abort_overflow),
		TU_TEST(test_send_wait),
		TU_TEST(test_every_size),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
