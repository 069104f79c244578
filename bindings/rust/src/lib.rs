//! Safe bindings to libshmring: msgpack records from many processes on one host carried
//! into one JSONL file through a lock-free ring in POSIX shared memory, drained by one
//! `shmring-writer` process that writes each record as one compact JSON line — the line
//! `serde_json::to_string` writes for the same value.
//!
//! Two ways in:
//!
//! * [`Ring`]: any ring by name; send msgpack bytes ([`Ring::send`]) or any
//!   `Serialize` value ([`Ring::send_value`]); a writer must serve the ring
//!   (`shmring-writer RING FILE`).
//! * [`CompactionAuditSink`]: the compaction audit sink, a bounded channel of
//!   [`CompactedPageRecord`]s into one JSONL file that never blocks its sender, shared
//!   by every process that opens the same file; it starts the writer itself.
//!
//! ```no_run
//! use shmring::{CompactedPageRecord, CompactionAuditSink, PageOrigin, PageType};
//! use std::path::Path;
//!
//! # async fn demo() -> Result<(), shmring::Error> {
//! let sink = CompactionAuditSink::open(Path::new(".local/audit/compaction.jsonl"), 256).await?;
//! sink.send(CompactedPageRecord {
//!     ts: "2026-11-24T08:55:52.123456Z".into(),
//!     turn_id: "t1".into(),
//!     page_id: "p1".into(),
//!     page_type: PageType::ToolOutput,
//!     origin: PageOrigin::ToolPair { tool_name: "grep".into() },
//!     original_tokens: 1200,
//!     compacted_tokens: 300,
//!     fidelity_level: "summary".into(),
//!     invariant_version: 2,
//!     provider_name: "anthropic".into(),
//!     violations: vec![],
//!     classification_fallback: false,
//! });
//! sink.flush().await;
//! assert_eq!(sink.dropped_count(), 0);
//! # Ok(())
//! # }
//! ```
//!
//! The C library is found at build time through pkg-config (`PKG_CONFIG_PATH` is
//! honoured) or `SHMRING_LIB_DIR`; at run time through the dynamic loader (this crate's
//! own tests and examples carry an rpath). The library's log lines (a dropped record is
//! logged at WARN for the first drop and each power of two) go to the [`log`] facade,
//! target `shmring`, once any ring or sink has been opened.
#![warn(missing_docs)]

use std::any::Any;
use std::ffi::{CStr, CString};
use std::fmt;
use std::os::raw::{c_char, c_int, c_void};
use std::ptr::{self, NonNull};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

mod audit;
mod ffi;

pub use audit::{CompactedPageRecord, CompactionAuditSink, PageOrigin, PageType, SchemaViolation};

/// A failure of a libshmring call, keeping the C library's errno.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    errno: i32,
    op: &'static str,
    detail: Option<String>,
}

impl Error {
    pub(crate) fn from_rc(op: &'static str, rc: c_int) -> Error {
        Error { errno: -rc, op, detail: None }
    }

    pub(crate) fn invalid(op: &'static str, detail: String) -> Error {
        Error { errno: libc::EINVAL, op, detail: Some(detail) }
    }

    /// The errno (positive), e.g. `libc::EAGAIN` for a full ring.
    pub fn errno(&self) -> i32 {
        self.errno
    }

    /// The operation that failed ("shmring_send", "msgpack encode", ...).
    pub fn op(&self) -> &'static str {
        self.op
    }

    /// True when the ring was full and the record was dropped (and counted).
    pub fn is_full(&self) -> bool {
        self.errno == libc::EAGAIN
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.op, std::io::Error::from_raw_os_error(self.errno))?;
        if let Some(d) = &self.detail {
            write!(f, " ({})", d)?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> std::io::Error {
        std::io::Error::new(std::io::Error::from_raw_os_error(e.errno).kind(), e)
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

extern "C" fn forward_log(level: c_int, msg: *const c_char, _ctx: *mut c_void) {
    if msg.is_null() {
        return;
    }
    // SAFETY: the library passes a NUL-terminated line valid for the call.
    let line = unsafe { CStr::from_ptr(msg) }.to_string_lossy();
    let level = match level {
        0 => log::Level::Debug,
        1 => log::Level::Info,
        2 => log::Level::Warn,
        _ => log::Level::Error,
    };
    log::log!(target: "shmring", level, "{}", line);
}

/// Route the C library's log lines to the `log` facade (once per process).
pub(crate) fn init_log() {
    static ONCE: Once = Once::new();
    // SAFETY: forward_log is a plain function valid for the whole process.
    ONCE.call_once(|| unsafe { ffi::shmring_set_log(Some(forward_log), ptr::null_mut()) });
}

pub(crate) fn cstring(op: &'static str, s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::invalid(op, format!("{:?} holds a NUL byte", s)))
}

/// How a ring is created when [`Ring::open`] finds none; zero fields mean the library's
/// defaults (4096 slots of 1024 bytes, mode 0600).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Slots, a power of two.
    pub capacity: u32,
    /// Bytes per slot, a multiple of 64.
    pub slot_size: u32,
    /// Permission bits of the shared-memory object.
    pub mode: u32,
}

/// Ring-wide figures read from shared memory: every process sees the same.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Slots.
    pub capacity: u32,
    /// Bytes per slot.
    pub slot_size: u32,
    /// Largest msgpack record accepted, bytes.
    pub max_record: u64,
    /// Slots below head are free again (the writer's position).
    pub head: u64,
    /// Next slot position to claim (the producers' position).
    pub tail: u64,
    /// Records sent but not yet written nor lost.
    pub pending: u64,
    /// Records offered to send.
    pub sent: u64,
    /// Records whose JSON line was written.
    pub written: u64,
    /// Of `written`: records written as a `shmring_error` line.
    pub invalid: u64,
    /// Records dropped because the ring was full.
    pub dropped_full: u64,
    /// Records dropped because larger than `max_record`.
    pub dropped_oversize: u64,
    /// Records whose producer died or stalled mid-send.
    pub abandoned: u64,
    /// Reservations aborted (not in `sent`).
    pub aborted: u64,
    /// Flush calls.
    pub flushes: u64,
    /// Flushes the writer confirmed.
    pub flushes_done: u64,
    /// Unreadable slot words the writer skipped.
    pub corrupt: u64,
    /// Pid of the writer that served last.
    pub writer_pid: i32,
    /// A writer serves the ring now.
    pub writer_alive: bool,
    /// Producer processes attached now.
    pub producers: u32,
    /// The errno of the writer's failing output operation; 0 while its output works.
    pub writer_errno: i32,
    /// Which operation failed (`enum shmring_writer_op`: 1 open, 2 write, 3 fsync, 4 rotate).
    pub writer_error_op: u32,
    /// When it began failing so, CLOCK_REALTIME nanoseconds (0: no error).
    pub writer_error_since_ns: u64,
}

/// A handle on one ring. `Send + Sync`: any number of threads may send through one
/// handle (and forked children through their inherited copy); dropping it detaches.
pub struct Ring {
    ptr: NonNull<ffi::shmring>,
    /// Set when the ring belongs to another object (an audit sink), kept alive here;
    /// such a ring is not closed on drop.
    owner: Option<Arc<dyn Any + Send + Sync>>,
}

// SAFETY: libshmring's producer side is multi-producer safe across threads and
// processes (shmring.h); the handle itself is immutable after open.
unsafe impl Send for Ring {}
unsafe impl Sync for Ring {}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring").field("name", &self.name()).finish()
    }
}

impl Ring {
    /// Open the ring `name` ("[A-Za-z0-9._-]", at most 200 bytes), creating it with `opts`
    /// when missing. Errors carry the errno of `shmring_open` (`EINVAL`, `EPROTO` for a
    /// ring of another layout, `EACCES`, ...).
    pub fn open(name: &str, opts: &Options) -> Result<Ring> {
        init_log();
        let c = cstring("shmring_open", name)?;
        let o = ffi::shmring_options { capacity: opts.capacity, slot_size: opts.slot_size, mode: opts.mode as libc::mode_t };
        let mut p = ptr::null_mut();
        // SAFETY: valid C string and options; p receives an owned handle on success.
        let rc = unsafe { ffi::shmring_open(c.as_ptr(), &o, &mut p) };
        Ring::wrap("shmring_open", rc, p)
    }

    /// Attach to the existing ring `name`; never creates it (`ENOENT` when missing).
    pub fn attach(name: &str) -> Result<Ring> {
        init_log();
        let c = cstring("shmring_attach", name)?;
        let mut p = ptr::null_mut();
        // SAFETY: as in open.
        let rc = unsafe { ffi::shmring_attach(c.as_ptr(), &mut p) };
        Ring::wrap("shmring_attach", rc, p)
    }

    fn wrap(op: &'static str, rc: c_int, p: *mut ffi::shmring) -> Result<Ring> {
        if rc < 0 {
            return Err(Error::from_rc(op, rc));
        }
        NonNull::new(p).map(|ptr| Ring { ptr, owner: None }).ok_or(Error { errno: libc::EIO, op, detail: None })
    }

    /// A handle on a ring `owner` closes; it keeps `owner` alive.
    pub(crate) fn borrowed(p: *mut ffi::shmring, owner: Arc<dyn Any + Send + Sync>) -> Option<Ring> {
        NonNull::new(p).map(|ptr| Ring { ptr, owner: Some(owner) })
    }

    /// Send one msgpack record. Never blocks. Errors: `EAGAIN` the ring is full (dropped
    /// and counted), `EMSGSIZE` larger than the ring's largest record, `ECANCELED`
    /// stalled past the writer's stall timeout, `EINVAL` empty.
    pub fn send(&self, msgpack: &[u8]) -> Result<()> {
        // SAFETY: the slice is valid for its length during the call.
        let rc = unsafe { ffi::shmring_send(self.ptr.as_ptr(), msgpack.as_ptr() as *const c_void, msgpack.len()) };
        if rc < 0 {
            Err(Error::from_rc("shmring_send", rc))
        } else {
            Ok(())
        }
    }

    /// Encode `value` as msgpack with rmp-serde (structs as maps, so the JSON line has
    /// their field names) and [`send`](Ring::send) it. An encoding failure is `EINVAL`.
    pub fn send_value<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        let buf = rmp_serde::to_vec_named(value).map_err(|e| Error::invalid("msgpack encode", e.to_string()))?;
        self.send(&buf)
    }

    /// [`send`](Ring::send), retrying while the ring is full for at most `timeout`
    /// (sleeping 50 µs to 1 ms between tries). The drops of the failed tries are counted
    /// like any other. Blocks the calling thread: in async code, call it from
    /// `spawn_blocking`.
    pub fn send_wait(&self, msgpack: &[u8], timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_micros(50);
        loop {
            match self.send(msgpack) {
                Err(e) if e.is_full() && Instant::now() < deadline => {
                    std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
                    pause = (pause * 2).min(Duration::from_millis(1));
                }
                r => return r,
            }
        }
    }

    /// Returns once every record sent before the call, by any process, is in the file;
    /// waits at most 100 ms for the writer. Errors: `ENOTCONN` no writer serves the
    /// ring, `ETIMEDOUT` not confirmed in time.
    pub fn flush(&self) -> Result<()> {
        // SAFETY: valid handle.
        let rc = unsafe { ffi::shmring_flush(self.ptr.as_ptr()) };
        if rc < 0 {
            Err(Error::from_rc("shmring_flush", rc))
        } else {
            Ok(())
        }
    }

    /// Ring-wide figures.
    pub fn stats(&self) -> Result<Stats> {
        let mut s = ffi::shmring_stats::default();
        // SAFETY: valid handle and out pointer.
        let rc = unsafe { ffi::shmring_stats(self.ptr.as_ptr(), &mut s) };
        if rc < 0 {
            return Err(Error::from_rc("shmring_stats", rc));
        }
        Ok(Stats::from(&s))
    }

    /// Records dropped because the ring was full, ring-wide (all processes).
    pub fn dropped_count(&self) -> u64 {
        // SAFETY: valid handle.
        unsafe { ffi::shmring_dropped_count(self.ptr.as_ptr()) }
    }

    /// The ring's name.
    pub fn name(&self) -> String {
        // SAFETY: the library returns the handle's own NUL-terminated name.
        unsafe { CStr::from_ptr(ffi::shmring_name(self.ptr.as_ptr())) }.to_string_lossy().into_owned()
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if self.owner.is_none() {
            // SAFETY: owned handle, closed once.
            unsafe { ffi::shmring_close(self.ptr.as_ptr()) }
        }
    }
}

impl From<&ffi::shmring_stats> for Stats {
    fn from(s: &ffi::shmring_stats) -> Stats {
        Stats {
            capacity: s.capacity,
            slot_size: s.slot_size,
            max_record: s.max_record,
            head: s.head,
            tail: s.tail,
            pending: s.pending,
            sent: s.sent,
            written: s.written,
            invalid: s.invalid,
            dropped_full: s.dropped_full,
            dropped_oversize: s.dropped_oversize,
            abandoned: s.abandoned,
            aborted: s.aborted,
            flushes: s.flushes,
            flushes_done: s.flushes_done,
            corrupt: s.corrupt,
            writer_pid: s.writer_pid,
            writer_alive: s.writer_alive,
            producers: s.producers,
            writer_errno: s.writer_errno,
            writer_error_op: s.writer_error_op,
            writer_error_since_ns: s.writer_error_since_ns,
        }
    }
}

/// The figures of ring `name`, read without becoming its producer: the ring is mapped
/// read-only for the call, so read permission suffices and neither its bytes nor its
/// timestamps change (`shmring_inspect`). `ENOENT`, `EACCES`, `EPROTO`.
pub fn inspect(name: &str) -> Result<Stats> {
    let c = cstring("shmring_inspect", name)?;
    let mut s = ffi::shmring_stats::default();
    // SAFETY: valid C string and out pointer.
    let rc = unsafe { ffi::shmring_inspect(c.as_ptr(), &mut s) };
    if rc < 0 {
        return Err(Error::from_rc("shmring_inspect", rc));
    }
    Ok(Stats::from(&s))
}

/// Remove the ring `name` (processes attached keep their mapping). `ENOENT` when missing.
pub fn unlink(name: &str) -> Result<()> {
    let c = cstring("shmring_unlink", name)?;
    // SAFETY: valid C string.
    let rc = unsafe { ffi::shmring_unlink(c.as_ptr()) };
    if rc < 0 {
        Err(Error::from_rc("shmring_unlink", rc))
    } else {
        Ok(())
    }
}

/// The JSON line the writer writes for one msgpack record (without the newline), from
/// the same converter (`shmring_msgpack_to_json`). Errors: `EBADMSG` the bytes are not
/// exactly one valid msgpack object, with the converter's reason in the message.
pub fn msgpack_to_json(msgpack: &[u8]) -> Result<String> {
    // SAFETY: pure function of its argument.
    let cap = unsafe { ffi::shmring_json_bound(msgpack.len()) };
    let mut out: Vec<u8> = Vec::with_capacity(cap);
    let mut why: *const c_char = ptr::null();
    // SAFETY: out has cap bytes of room; the converter writes at most cap and returns how many.
    let n = unsafe {
        ffi::shmring_msgpack_to_json(msgpack.as_ptr() as *const c_void, msgpack.len(), out.as_mut_ptr() as *mut c_char, cap, &mut why)
    };
    if n < 0 {
        let mut e = Error::from_rc("shmring_msgpack_to_json", n as c_int);
        if !why.is_null() {
            // SAFETY: a static reason string.
            e.detail = Some(unsafe { CStr::from_ptr(why) }.to_string_lossy().into_owned());
        }
        return Err(e);
    }
    // SAFETY: the converter initialized n <= cap bytes.
    unsafe { out.set_len(n as usize) };
    // The converter writes valid UTF-8 only (invalid input becomes U+FFFD).
    Ok(String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}
