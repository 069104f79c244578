/* shmring/json.h: msgpack -> compact JSON, for writing ring records out as JSON lines.
 *
 * One record is one msgpack object; it becomes one line of compact JSON (the caller adds
 * the newline). The converter makes a single forward pass, never allocates and never reads
 * or writes outside the buffers it is given, so it can run on untrusted bytes straight out
 * of shared memory.
 *
 * Output rules, in short (tests/test_json.c shows each one on examples):
 *   nil/bool/int       null, true/false, plain decimal (full uint64 and int64 range)
 *   float64            as serde_json 1.0 writes an f64: the shortest digits that read back
 *                      as the same value (ryu's), laid out as 100.0, 12.34, 0.00001, 1e16,
 *                      1.2345678901234568e17, 5e-324, -0.0 (fixed notation while the
 *                      integer part has at most 16 digits and down to 0.0000d; no "+"
 *                      and no leading zeros in an exponent); NaN and +-Inf become null
 *   float32            as serde_json writes an f32: shortest f32 digits, the same layout
 *                      with 13 integer digits and 0.00000d as the bounds of fixed notation
 *   str                JSON string, escaped like serde_json; invalid UTF-8 becomes U+FFFD
 *                      (one per maximal invalid subpart)
 *   bin                JSON string of standard base64 with padding
 *   ext -1 (timestamp) "YYYY-MM-DDTHH:MM:SS[.fffffffff]Z" for years 0000..9999
 *   other ext          {"ext":TYPE,"base64":"..."}
 *   array, map         [..], {..} in input order; duplicate keys are kept
 *   non-string key     a JSON string holding the key's own JSON text:
 *                      1 -> "1", [1,"a"] -> "[1,\"a\"]", nil -> "null"
 *
 * Caveats:
 *   - containers may nest 64 deep (the top level is depth 1);
 *   - a non-string key inside a non-string key is fine (its text is escaped twice), one more
 *     level is refused: every level doubles the backslashes and no linear bound would hold;
 *   - float text does not depend on the process locale;
 *   - the fractional seconds of a timestamp lose their trailing zeros (.5Z, .123456Z).
 */
#ifndef SHMRING_JSON_H
#define SHMRING_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Containers nested deeper than this are refused (the top-level container is depth 1). */
#define SHMRING_JSON_MAX_DEPTH 64
/* How many non-string map keys may enclose one another. */
#define SHMRING_JSON_MAX_KEY_NEST 2
/* shmring_json_error_record() uses at most this many bytes of `why`. */
#define SHMRING_JSON_WHY_MAX 128

/* Worst-case JSON bytes for `len` bytes of msgpack input: covers both the converted record
 * and the error record for it. Saturates at SIZE_MAX for absurd lengths. */
size_t shmring_json_bound(size_t len);

/* Convert exactly one msgpack object occupying in[0..len) to compact JSON in out[0..cap).
 * Returns the number of bytes written (no NUL terminator, no newline), or
 *   -ENOSPC   cap is too small; never happens when cap >= shmring_json_bound(len);
 *   -EBADMSG  the input is not exactly one valid msgpack object; *why (when why != NULL)
 *             then points to a static reason: "truncated", "invalid byte 0xc1",
 *             "nesting deeper than 64", "non-string keys nested deeper than 2",
 *             "trailing bytes".
 * The first problem met in a forward pass decides the error, so a too-small buffer may be
 * reported before a defect further on. *why is set only for -EBADMSG. Bytes of out past the
 * returned length (but below cap) may have been written to. Never allocates. */
ssize_t shmring_msgpack_to_json(const void *in, size_t len, char *out, size_t cap,
				const char **why);

/* The line written instead of a record that cannot be converted:
 *   {"shmring_error":"<why, JSON-escaped>","seq":<seq>,"base64":"<base64 of raw>"}
 * Only the first SHMRING_JSON_WHY_MAX bytes of why are used; NULL reads as "unknown".
 * Returns bytes written, or -ENOSPC (never when cap >= shmring_json_bound(len)). */
ssize_t shmring_json_error_record(const char *why, uint64_t seq, const void *raw, size_t len,
				  char *out, size_t cap);

#ifdef __cplusplus
}
#endif

#endif /* SHMRING_JSON_H */
