//! Hand-written declarations of libshmring's C API (include/shmring.h,
//! include/shmring/json.h, include/shmring/audit.h). Layouts mirror the C structs field
//! for field (C enums are 32-bit unsigned ints; bool is C11 _Bool).
#![allow(non_camel_case_types)]

use libc::{c_char, c_int, c_void, mode_t, size_t, ssize_t};

#[repr(C)]
pub struct shmring {
    _private: [u8; 0],
}

#[repr(C)]
pub struct shmring_audit_sink {
    _private: [u8; 0],
}

#[repr(C)]
#[derive(Default)]
pub struct shmring_options {
    pub capacity: u32,
    pub slot_size: u32,
    pub mode: mode_t,
}

#[repr(C)]
#[derive(Default)]
pub struct shmring_stats {
    pub capacity: u32,
    pub slot_size: u32,
    pub max_record: u64,
    pub head: u64,
    pub tail: u64,
    pub pending: u64,
    pub sent: u64,
    pub written: u64,
    pub invalid: u64,
    pub dropped_full: u64,
    pub dropped_oversize: u64,
    pub abandoned: u64,
    pub aborted: u64,
    pub flushes: u64,
    pub flushes_done: u64,
    pub corrupt: u64,
    pub writer_pid: i32,
    pub writer_alive: bool,
    pub producers: u32,
    pub writer_errno: i32,
    pub writer_error_op: u32,
    pub writer_error_since_ns: u64,
}

// The C library writes sizeof(struct shmring_stats) bytes (libshm/internal.h asserts 152):
// a mirror of another size would be written past.
const _: () = assert!(std::mem::size_of::<shmring_stats>() == 152);

#[repr(C)]
pub struct shmring_violation {
    pub missing_field: *const c_char,
    pub detail: *const c_char,
}

#[repr(C)]
pub struct shmring_origin {
    pub kind: u32, // enum shmring_origin_kind
    pub value: *const c_char,
}

#[repr(C)]
pub struct shmring_compacted_page_record {
    pub ts: *const c_char,
    pub turn_id: *const c_char,
    pub page_id: *const c_char,
    pub page_type: u32, // enum shmring_page_type
    pub origin: shmring_origin,
    pub original_tokens: u32,
    pub compacted_tokens: u32,
    pub fidelity_level: *const c_char,
    pub invariant_version: u8,
    pub provider_name: *const c_char,
    pub violations: *const shmring_violation,
    pub violation_count: size_t,
    pub classification_fallback: bool,
}

pub type shmring_log_fn = extern "C" fn(level: c_int, msg: *const c_char, ctx: *mut c_void);

extern "C" {
    pub fn shmring_open(name: *const c_char, opts: *const shmring_options, out: *mut *mut shmring) -> c_int;
    pub fn shmring_attach(name: *const c_char, out: *mut *mut shmring) -> c_int;
    pub fn shmring_send(r: *mut shmring, msgpack: *const c_void, len: size_t) -> c_int;
    pub fn shmring_flush(r: *mut shmring) -> c_int;
    pub fn shmring_dropped_count(r: *const shmring) -> u64;
    pub fn shmring_stats(r: *const shmring, out: *mut shmring_stats) -> c_int;
    pub fn shmring_inspect(name: *const c_char, out: *mut shmring_stats) -> c_int;
    pub fn shmring_name(r: *const shmring) -> *const c_char;
    pub fn shmring_close(r: *mut shmring);
    pub fn shmring_unlink(name: *const c_char) -> c_int;
    pub fn shmring_set_log(f: Option<shmring_log_fn>, ctx: *mut c_void);

    pub fn shmring_json_bound(len: size_t) -> size_t;
    pub fn shmring_msgpack_to_json(
        input: *const c_void,
        len: size_t,
        out: *mut c_char,
        cap: size_t,
        why: *mut *const c_char,
    ) -> ssize_t;

    pub fn shmring_audit_open(path: *const c_char, capacity: size_t, out: *mut *mut shmring_audit_sink) -> c_int;
    pub fn shmring_audit_send(s: *mut shmring_audit_sink, rec: *const shmring_compacted_page_record) -> c_int;
    pub fn shmring_audit_flush(s: *mut shmring_audit_sink) -> c_int;
    pub fn shmring_audit_dropped_count(s: *const shmring_audit_sink) -> u64;
    pub fn shmring_audit_close(s: *mut shmring_audit_sink);
    pub fn shmring_audit_ring_name(s: *const shmring_audit_sink) -> *const c_char;
    pub fn shmring_audit_ring(s: *const shmring_audit_sink) -> *mut shmring;
}
