//! The compaction audit sink over libshmring's C audit API (include/shmring/audit.h):
//! the record is encoded by the C sink straight into the ring, so the line in the file
//! is the C sink's, which is `serde_json::to_string(&record)`.
use std::ffi::CString;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr::{self, NonNull};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{ffi, init_log, Error, Ring};

/// What kind of context page was compacted. JSON: `"tool_output"`,
/// `"conversation_turn"`, `"memory_excerpt"`, `"system_context"`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum PageType {
    /// A tool call and its output.
    ToolOutput,
    /// A conversation turn.
    ConversationTurn,
    /// An excerpt of memory.
    MemoryExcerpt,
    /// System context.
    SystemContext,
}

/// Where the page came from. JSON: an object tagged by `"kind"`, e.g.
/// `{"kind":"tool_pair","tool_name":"grep"}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PageOrigin {
    /// `{"kind":"tool_pair","tool_name":...}`
    ToolPair {
        /// The tool's name.
        tool_name: String,
    },
    /// `{"kind":"turn","message_id":...}`
    Turn {
        /// The message's id.
        message_id: String,
    },
    /// `{"kind":"excerpt","source_label":...}`
    Excerpt {
        /// The excerpt's source.
        source_label: String,
    },
    /// `{"kind":"system","key":...}`
    System {
        /// The system context's key.
        key: String,
    },
}

/// A field the compacted page was expected to keep but lost.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct SchemaViolation {
    /// The missing field.
    pub missing_field: String,
    /// What was wrong.
    pub detail: String,
}

/// One compaction record. Its JSON (field order as declared; `classification_fallback`
/// left out when false and read back as false when missing) is, on one line:
///
/// ```text
/// {"ts":"2026-11-24T08:55:52.123456Z","turn_id":"t1","page_id":"p1",
///  "page_type":"tool_output","origin":{"kind":"tool_pair","tool_name":"grep"},
///  "original_tokens":1200,"compacted_tokens":300,"fidelity_level":"summary",
///  "invariant_version":2,"provider_name":"anthropic",
///  "violations":[{"missing_field":"exit_code","detail":"..."}],
///  "classification_fallback":true}
/// ```
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct CompactedPageRecord {
    /// When, as RFC 3339 UTC text (written as given).
    pub ts: String,
    /// The turn the page belongs to.
    pub turn_id: String,
    /// The page.
    pub page_id: String,
    /// What kind of page.
    pub page_type: PageType,
    /// Where it came from.
    pub origin: PageOrigin,
    /// Tokens before compaction.
    pub original_tokens: u32,
    /// Tokens after compaction.
    pub compacted_tokens: u32,
    /// How faithful the compacted page is ("summary", ...).
    pub fidelity_level: String,
    /// Version of the invariants checked.
    pub invariant_version: u8,
    /// The model provider.
    pub provider_name: String,
    /// Invariants the compacted page violates.
    pub violations: Vec<SchemaViolation>,
    /// The page type was a fallback guess.
    #[serde(default, skip_serializing_if = "is_false")]
    pub classification_fallback: bool,
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_false(b: &bool) -> bool {
    !*b
}

/// The C sink, closed when the last clone of the Rust sink goes.
struct Handle(NonNull<ffi::shmring_audit_sink>);

// SAFETY: shmring_audit_send/flush/dropped_count may be called from any thread at once
// (the ring is multi-producer; the sink's only mutable field is an atomic).
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the last reference; closed once.
        unsafe { ffi::shmring_audit_close(self.0.as_ptr()) }
    }
}

/// A bounded, never-blocking channel of [`CompactedPageRecord`]s into one JSONL file,
/// shared by every process (Rust, C, Python) that opens the same file: one ring in shared
/// memory named after the file, drained by one `shmring-writer` that the sink starts when
/// none serves the ring (`SHMRING_WRITER` names the binary; by default the one installed
/// next to libshmring). Clones share one handle.
#[derive(Clone)]
pub struct CompactionAuditSink {
    inner: Arc<Handle>,
}

impl fmt::Debug for CompactionAuditSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompactionAuditSink").field("ring", &self.ring_name()).finish()
    }
}

impl CompactionAuditSink {
    /// Open the sink appending to `path` (missing folders are created 0700, the file
    /// 0600) with a ring of `capacity` slots (rounded up to a power of two, at least 64;
    /// 0 means 4096; an existing ring keeps its size), starting a writer if none serves
    /// it. Runs on tokio's blocking pool: starting a writer may take up to 2 s.
    /// Errors carry the errno of `shmring_audit_open` (`EINVAL`, `EACCES`, `ENOENT` no
    /// writer binary found, `ETIMEDOUT`, ...).
    pub async fn open(path: &Path, capacity: usize) -> Result<Self, Error> {
        init_log();
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| Error::invalid("shmring_audit_open", "the path holds a NUL byte".into()))?;
        let opened = tokio::task::spawn_blocking(move || {
            let mut p = ptr::null_mut();
            // SAFETY: valid C string; p receives an owned sink on success.
            let rc = unsafe { ffi::shmring_audit_open(c.as_ptr(), capacity, &mut p) };
            if rc < 0 {
                Err(Error::from_rc("shmring_audit_open", rc))
            } else {
                NonNull::new(p).map(Handle).ok_or_else(|| Error::from_rc("shmring_audit_open", -libc::EIO))
            }
        })
        .await
        .map_err(|e| Error::invalid("shmring_audit_open", e.to_string()))??;
        Ok(CompactionAuditSink { inner: Arc::new(opened) })
    }

    /// Send one record. Never blocks: a full ring drops the record, counts it in
    /// [`dropped_count`](Self::dropped_count) and logs a WARN (first drop and each power
    /// of two) through the `log` facade. A record larger than the ring's largest is
    /// dropped and logged too.
    pub fn send(&self, record: CompactedPageRecord) {
        if let Err(e) = self.try_send(&record) {
            if !e.is_full() {
                // A full ring is logged by the library itself, rate-limited.
                log::warn!(target: "shmring", "compaction record dropped: {}", e);
            }
        }
    }

    /// [`send`](Self::send) that says what happened: `EAGAIN` full (dropped and counted),
    /// `EMSGSIZE` too large, `ECANCELED` stalled past the writer's stall timeout.
    pub fn try_send(&self, record: &CompactedPageRecord) -> Result<(), Error> {
        match CRecord::new(record) {
            // SAFETY: the record's pointers live as long as `c`.
            Some(c) => rc_to_result("shmring_audit_send", unsafe { ffi::shmring_audit_send(self.inner.0.as_ptr(), &c.rec) }),
            // A string with a NUL byte has no C form: send the same map, encoded by
            // rmp-serde, through the sink's ring (serde_json writes NUL as \u0000, and so
            // does the writer).
            None => self.ring().send_value(record),
        }
    }

    /// Wait until every record accepted before the call, by any process, is in the file,
    /// for at most 100 ms; silent when not confirmed in time or when no writer serves.
    /// The wait runs on tokio's blocking pool, never on a worker thread; it needs the
    /// runtime's time driver (`#[tokio::main]` enables it).
    pub async fn flush(&self) {
        let h = self.inner.clone();
        // SAFETY: valid sink, kept alive by the clone.
        let job = tokio::task::spawn_blocking(move || unsafe { ffi::shmring_audit_flush(h.0.as_ptr()) });
        let _ = tokio::time::timeout(Duration::from_millis(100), job).await;
    }

    /// Records dropped because the ring was full, ring-wide (all processes).
    pub fn dropped_count(&self) -> u64 {
        // SAFETY: valid sink.
        unsafe { ffi::shmring_audit_dropped_count(self.inner.0.as_ptr()) }
    }

    /// The ring's name, `audit-<16 hex digits>` of the canonical path.
    pub fn ring_name(&self) -> String {
        // SAFETY: the sink's own NUL-terminated name, valid while the sink lives.
        unsafe { std::ffi::CStr::from_ptr(ffi::shmring_audit_ring_name(self.inner.0.as_ptr())) }
            .to_string_lossy()
            .into_owned()
    }

    /// The sink's ring, for [`Ring::stats`] and friends; it keeps the sink's handle open.
    pub fn ring(&self) -> Ring {
        // SAFETY: the sink owns the ring; the returned Ring holds a clone of the sink's
        // handle, so the ring stays open while it lives.
        let p = unsafe { ffi::shmring_audit_ring(self.inner.0.as_ptr()) };
        Ring::borrowed(p, self.inner.clone()).expect("sink without a ring")
    }
}

fn rc_to_result(op: &'static str, rc: i32) -> Result<(), Error> {
    if rc < 0 {
        Err(Error::from_rc(op, rc))
    } else {
        Ok(())
    }
}

/// A record's C view and the strings it points into.
struct CRecord {
    _strings: Vec<CString>,
    _violations: Vec<ffi::shmring_violation>,
    rec: ffi::shmring_compacted_page_record,
}

impl CRecord {
    /// None when a string holds a NUL byte.
    fn new(r: &CompactedPageRecord) -> Option<CRecord> {
        let (kind, value) = match &r.origin {
            PageOrigin::ToolPair { tool_name } => (0, tool_name),
            PageOrigin::Turn { message_id } => (1, message_id),
            PageOrigin::Excerpt { source_label } => (2, source_label),
            PageOrigin::System { key } => (3, key),
        };
        let mut s = Vec::with_capacity(7 + 2 * r.violations.len());
        for t in [&r.ts, &r.turn_id, &r.page_id, value, &r.fidelity_level, &r.provider_name] {
            s.push(CString::new(t.as_str()).ok()?);
        }
        for v in &r.violations {
            s.push(CString::new(v.missing_field.as_str()).ok()?);
            s.push(CString::new(v.detail.as_str()).ok()?);
        }
        // A CString's buffer does not move when the Vec holding it does.
        let vs: Vec<ffi::shmring_violation> = s[6..]
            .chunks(2)
            .map(|p| ffi::shmring_violation { missing_field: p[0].as_ptr(), detail: p[1].as_ptr() })
            .collect();
        let rec = ffi::shmring_compacted_page_record {
            ts: s[0].as_ptr(),
            turn_id: s[1].as_ptr(),
            page_id: s[2].as_ptr(),
            page_type: r.page_type as u32,
            origin: ffi::shmring_origin { kind, value: s[3].as_ptr() },
            original_tokens: r.original_tokens,
            compacted_tokens: r.compacted_tokens,
            fidelity_level: s[4].as_ptr(),
            invariant_version: r.invariant_version,
            provider_name: s[5].as_ptr(),
            violations: if vs.is_empty() { ptr::null() } else { vs.as_ptr() },
            violation_count: vs.len(),
            classification_fallback: r.classification_fallback,
        };
        Some(CRecord { _strings: s, _violations: vs, rec })
    }
}
