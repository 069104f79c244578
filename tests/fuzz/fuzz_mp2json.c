/* fuzz_mp2json: libFuzzer target, fast msgpack -> JSON against the reference, bound and buffer limits. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ref_mp2json.h"
#include "shmring/json.h"

/* jansson holds integers in long long and refuses "\u0000" in a key: parse again with
 * integers as reals and each \u0000 read as \u0001 (valid JSON either way). */
static int parses(const char *js, size_t n)
{
	const size_t flags = JSON_DECODE_ANY | JSON_ALLOW_NUL;
	json_error_t err;
	json_t *j = json_loadb(js, n, flags, &err);
	char *c;

	if (j) {
		json_decref(j);
		return 1;
	}
	c = malloc(n ? n : 1);
	memcpy(c, js, n);
	for (size_t i = 0; i + 6 <= n; i++)
		if (!memcmp(c + i, "\\u0000", 6))
			c[i + 5] = '1';
	j = json_loadb(c, n, flags | JSON_DECODE_INT_AS_REAL, &err);
	free(c);
	json_decref(j);
	return j != NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t bound = shmring_json_bound(size);
	char *a = malloc(bound), *r = malloc(bound), *t;
	const char *wa = NULL, *wr = NULL;
	ssize_t na = shmring_msgpack_to_json(data, size, a, bound, &wa);
	ssize_t nr = ref_msgpack_to_json(data, size, r, bound, &wr);

	if (na != nr || na == -ENOSPC)
		abort();
	if (na >= 0) {
		if (memcmp(a, r, (size_t)na) || (size_t)na > bound || !parses(a, (size_t)na))
			abort();
		/* exactly enough works, in a buffer with no slack for ASan to hide an overrun in;
		 * any less says -ENOSPC */
		t = malloc(na ? (size_t)na : 1);
		if (shmring_msgpack_to_json(data, size, t, (size_t)na, NULL) != na ||
		    memcmp(t, a, (size_t)na))
			abort();
		if (na > 0 && shmring_msgpack_to_json(data, size, t, (size_t)na - 1, NULL) != -ENOSPC)
			abort();
		if (na > 0 && shmring_msgpack_to_json(data, size, t, (size_t)na / 2, NULL) != -ENOSPC)
			abort();
		free(t);
	} else {
		ssize_t ne;

		if (na != -EBADMSG || !wa || !wr || strcmp(wa, wr))
			abort();
		ne = shmring_json_error_record(wa, size, data, size, a, bound);
		if (ne <= 0 || (size_t)ne > bound || !parses(a, (size_t)ne))
			abort();
	}
	free(a);
	free(r);
	return 0;
}
