/*
 * shmring/audit.h - the compaction audit sink: a bounded, never-blocking channel of
 * context-compaction records from any number of processes into one JSONL file.
 *
 * It is the cross-process form of an async bounded-mpsc sink: open(path, capacity),
 * send(record) that never blocks (a full channel drops the record, counts it and logs a
 * WARN), flush() bounded at 100 ms, dropped_count(). Underneath, every process that opens
 * the same file attaches to one shmring ring named after the file and one shmring-writer
 * process drains it; the sink starts that writer when none serves the ring.
 *
 * Each record becomes one line, byte for byte what serde_json::to_string writes for the
 * Rust CompactedPageRecord:
 *
 *   {"ts":"2026-11-24T08:55:52.123456Z","turn_id":"t1","page_id":"p1",
 *    "page_type":"tool_output","origin":{"kind":"tool_pair","tool_name":"grep"},
 *    "original_tokens":1200,"compacted_tokens":300,"fidelity_level":"summary",
 *    "invariant_version":2,"provider_name":"anthropic",
 *    "violations":[{"missing_field":"exit_code","detail":"..."}],
 *    "classification_fallback":true}
 *
 * (one line, no spaces; "classification_fallback" is left out when false; origin is
 * internally tagged: tool_pair/tool_name, turn/message_id, excerpt/source_label,
 * system/key). Strings are copied as given; bytes that are not valid UTF-8 are written as
 * U+FFFD by the writer (as String::from_utf8_lossy would).
 *
 * Environment read by shmring_audit_open:
 *   SHMRING_WRITER             the shmring-writer binary to start (default: next to the
 *                              library, <libdir>/../bin/shmring-writer, then the build tree)
 *   SHMRING_WRITER_IDLE_EXIT   seconds an autostarted writer lingers with no producer
 *                              attached and nothing to write (default 10; 0 = forever)
 *   SHMRING_WRITER_LOG         file the autostarted writer's stderr is appended to
 *                              (default /dev/null)
 *   SHMRING_NO_AUTOSTART=1     never start a writer: send still never blocks (records
 *                              wait in the ring, or are dropped when it is full) and
 *                              flush answers -ENOTCONN until some writer serves the ring
 *
 * Caveats: the ring is shared by everyone who opens the same file (its counters are
 * ring-wide); the writer started by the sink outlives the caller and exits by itself once
 * idle; a 64-bit hash collision between two paths is detected (-EEXIST) only while a
 * writer serves one of them.
 */
#ifndef SHMRING_AUDIT_H
#define SHMRING_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "shmring.h"

#ifdef __cplusplus
extern "C" {
#endif

enum shmring_page_type {
	SHMRING_PAGE_TOOL_OUTPUT,       /* "tool_output" */
	SHMRING_PAGE_CONVERSATION_TURN, /* "conversation_turn" */
	SHMRING_PAGE_MEMORY_EXCERPT,    /* "memory_excerpt" */
	SHMRING_PAGE_SYSTEM_CONTEXT,    /* "system_context" */
};

enum shmring_origin_kind {
	SHMRING_ORIGIN_TOOL_PAIR, /* {"kind":"tool_pair","tool_name":value} */
	SHMRING_ORIGIN_TURN,      /* {"kind":"turn","message_id":value} */
	SHMRING_ORIGIN_EXCERPT,   /* {"kind":"excerpt","source_label":value} */
	SHMRING_ORIGIN_SYSTEM,    /* {"kind":"system","key":value} */
};

struct shmring_violation {
	const char *missing_field;
	const char *detail;
};

/* Every string is NUL-terminated and must not be NULL, except ts: NULL means "now"
 * (UTC, RFC 3339 with microseconds, e.g. 2026-11-24T08:55:52.123456Z). */
struct shmring_compacted_page_record {
	const char *ts;
	const char *turn_id;
	const char *page_id;
	enum shmring_page_type page_type;
	struct {
		enum shmring_origin_kind kind;
		const char *value;
	} origin;
	uint32_t original_tokens;
	uint32_t compacted_tokens;
	const char *fidelity_level;
	uint8_t invariant_version;
	const char *provider_name;
	const struct shmring_violation *violations; /* violation_count entries; NULL if 0 */
	size_t violation_count;
	bool classification_fallback;                /* the key is written only when true */
};

typedef struct shmring_audit_sink shmring_audit_sink;

#define SHMRING_AUDIT_DEFAULT_CAPACITY 4096u
#define SHMRING_AUDIT_MIN_CAPACITY     64u
#define SHMRING_AUDIT_START_TIMEOUT_MS 2000

/*
 * Open the sink that appends to jsonl_path. Missing parent folders are created (0700);
 * the file is created (0600) if missing and must be openable for appending. Paths that
 * name the same file through "." or ".." or symlinked folders share one ring,
 * "audit-<16 hex digits of FNV-1a 64 of the canonical path>" (see
 * shmring_audit_ring_name), and one writer. capacity: slots, rounded up to a power of two,
 * at least 64; 0 means 4096; a ring that already exists keeps its size.
 * If no live writer serves the ring, one is started (see the environment above) and open
 * returns once it serves, so a flush right after open is confirmed.
 * Errors: -EINVAL bad argument or capacity above 2^20, -ENAMETOOLONG, any errno of
 * creating the folders or opening the file for appending (-EISDIR, -EACCES, -ENOTDIR,
 * -ELOOP for a symlink, ...), the errors of shmring_open (-EPROTO, -EACCES, -ENOSPC ...),
 * -EEXIST a live writer serves the ring into another file, -ENOENT no writer binary
 * found, the errno of exec (-EACCES ...) when it cannot be run, -ECHILD the started writer exited without serving and no other writer serves,
 * -ETIMEDOUT no writer served within 2 s (the started one is killed), -ENOMEM.
 */
int shmring_audit_open(const char *jsonl_path, size_t capacity, shmring_audit_sink **out);

/*
 * Send one record. Never blocks, never allocates: the record's exact packed size is
 * reserved in the ring and the record is encoded there. Nothing is sent when an argument
 * is invalid.
 * Returns 0, or -EINVAL (s or rec NULL, a NULL string other than ts, an enum out of
 * range, violations NULL with violation_count > 0), -EAGAIN the ring is full (dropped,
 * counted in shmring_audit_dropped_count, logged at WARN for the first drop and each
 * power of two), -EMSGSIZE larger than the ring's largest record (dropped, counted
 * separately), -ECANCELED stalled past the writer's stall timeout (counted abandoned).
 */
int shmring_audit_send(shmring_audit_sink *s, const struct shmring_compacted_page_record *rec);

/* shmring_audit_send into any ring (one a writer serves to a file of the caller's
 * choosing, opened with shmring_open/attach). Same returns, -EINVAL for r NULL. */
int shmring_audit_send_to(shmring *r, const struct shmring_compacted_page_record *rec);

/*
 * Returns 0 once every record accepted before the call, by any process, is in the file.
 * Waits at most SHMRING_FLUSH_TIMEOUT_MS (100 ms) for the writer. If no writer serves the
 * ring any more (it exited or was killed) and autostart is on, a new one is started first
 * (up to 2 s more) and the flush is retried once.
 * Errors: -EINVAL, -ENOTCONN no writer serves the ring, -ETIMEDOUT not confirmed in
 * time, -EIO not confirmed in time while the writer cannot write the file (full disk...:
 * shmring_writer_error() on shmring_audit_ring() says what; the records wait in the
 * ring), the other errors of shmring_flush, and those of starting a writer (see
 * shmring_audit_open) when one had to be started.
 */
int shmring_audit_flush(shmring_audit_sink *s);

/* Records dropped because the ring was full, ring-wide (all processes). 0 for NULL. */
uint64_t shmring_audit_dropped_count(const shmring_audit_sink *s);

/* Detach. The writer goes on serving other processes and exits by itself when idle. */
void shmring_audit_close(shmring_audit_sink *s);

/* The ring's name, "audit-%016" PRIx64 of the FNV-1a 64 hash of the canonical path. */
const char *shmring_audit_ring_name(const shmring_audit_sink *s);

/* The underlying ring handle (owned by the sink), for shmring_stats and friends. */
shmring *shmring_audit_ring(const shmring_audit_sink *s);

/*
 * Pack rec as the msgpack map whose JSON conversion (shmring/json.h) is the line above:
 * the same bytes msgpack-c's msgpack_pack_* calls would write, in one call of pk's
 * callback. Allocates only for a record over 4 KiB.
 * Returns 0, -EINVAL (as for shmring_audit_send), -ENOBUFS pk's callback failed,
 * -ENOMEM.
 */
int shmring_audit_pack(msgpack_packer *pk, const struct shmring_compacted_page_record *rec);

#ifdef __cplusplus
}
#endif
#endif
