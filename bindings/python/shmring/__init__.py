"""shmring - Python producers for shmring rings, through ctypes (no compiled extension).

    import shmring
    with shmring.Ring("audit", capacity=4096, slot_size=1024) as ring:
        ring.send({"event": "login", "user": "ada"})   # packed with the msgpack module
        ring.send(b"\\x81\\xa1k\\x01")                    # bytes are sent as they are
        ring.flush()                                     # barrier, bounded at 100 ms
        print(ring.dropped_count(), ring.stats()["written"])

    with shmring.AuditSink("/var/log/agent/compaction.jsonl", 4096) as sink:
        sink.send({"turn_id": "t-42", "page_id": "p-7", "page_type": "tool_output", ...})
        sink.flush()

The ring is created when missing (capacity and slot_size apply then; 0 = defaults);
``Ring.attach(name)`` never creates. A shmring-writer process must serve the ring for the
records to reach its JSONL file; an ``AuditSink`` starts one itself (shmring_audit_open).

Errors raise OSError with the library's errno and a message: the subclasses Python picks
for an errno apply, so a full ring raises BlockingIOError (EAGAIN), a flush without a live
writer OSError(ENOTCONN), a flush that timed out TimeoutError (ETIMEDOUT), a bad name
OSError(EINVAL), a missing ring (attach) FileNotFoundError. A dropped record is counted in
the ring's stats like any other drop.

The library's log lines (a WARN at a handle's first drop and each power of two of its
drops, an INFO when an audit sink starts a writer) go to the logging module's logger
"shmring" once the library is loaded.

The library is found through the environment variable SHMRING_LIB (a path), then
ctypes.util.find_library("shmring"), then "libshmring.so.0" through the dynamic loader
(LD_LIBRARY_PATH, the system paths). Only ``send`` of a value that is not bytes needs the
msgpack module (Debian's python3-msgpack); the audit sink encodes in C.
"""

import ctypes
import ctypes.util
import errno as _errno
import logging
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple, TypeVar, Union

__version__ = "0.2.0"  # = SHMRING_VERSION_* of include/shmring.h (tests/test_python.py checks)

__all__ = ["Ring", "AuditSink", "Stats", "inspect", "unlink", "load_library", "STATS_FIELDS",
           "PAGE_TYPES", "ORIGIN_KINDS", "__version__"]

Value = Union[bytes, bytearray, memoryview, Any]
logger = logging.getLogger("shmring")


class Options(ctypes.Structure):
    """struct shmring_options (include/shmring.h)."""

    _fields_ = [
        ("capacity", ctypes.c_uint32),
        ("slot_size", ctypes.c_uint32),
        ("mode", ctypes.c_uint32),  # mode_t on Linux
    ]


class Stats(ctypes.Structure):
    """struct shmring_stats (include/shmring.h), field for field."""

    _fields_ = [
        ("capacity", ctypes.c_uint32),
        ("slot_size", ctypes.c_uint32),
        ("max_record", ctypes.c_uint64),
        ("head", ctypes.c_uint64),
        ("tail", ctypes.c_uint64),
        ("pending", ctypes.c_uint64),
        ("sent", ctypes.c_uint64),
        ("written", ctypes.c_uint64),
        ("invalid", ctypes.c_uint64),
        ("dropped_full", ctypes.c_uint64),
        ("dropped_oversize", ctypes.c_uint64),
        ("abandoned", ctypes.c_uint64),
        ("aborted", ctypes.c_uint64),
        ("flushes", ctypes.c_uint64),
        ("flushes_done", ctypes.c_uint64),
        ("corrupt", ctypes.c_uint64),
        ("writer_pid", ctypes.c_int32),
        ("writer_alive", ctypes.c_bool),
        ("producers", ctypes.c_uint32),
        ("writer_errno", ctypes.c_int32),
        ("writer_error_op", ctypes.c_uint32),
        ("writer_error_since_ns", ctypes.c_uint64),
    ]


STATS_FIELDS = tuple(name for name, _ in Stats._fields_)
# 2 x 4 + 14 x 8 + 4 + 1 (+3 padding) + 4 = 132, then 4 + 4 (+4 padding to 8) + 8 = 152.
assert ctypes.sizeof(Stats) == 152, "struct shmring_stats changed: update Stats"


class _Violation(ctypes.Structure):
    """struct shmring_violation (include/shmring/audit.h)."""

    _fields_ = [("missing_field", ctypes.c_char_p), ("detail", ctypes.c_char_p)]


class _Origin(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_int), ("value", ctypes.c_char_p)]


class _Record(ctypes.Structure):
    """struct shmring_compacted_page_record (include/shmring/audit.h), field for field."""

    _fields_ = [
        ("ts", ctypes.c_char_p),
        ("turn_id", ctypes.c_char_p),
        ("page_id", ctypes.c_char_p),
        ("page_type", ctypes.c_int),
        ("origin", _Origin),
        ("original_tokens", ctypes.c_uint32),
        ("compacted_tokens", ctypes.c_uint32),
        ("fidelity_level", ctypes.c_char_p),
        ("invariant_version", ctypes.c_uint8),
        ("provider_name", ctypes.c_char_p),
        ("violations", ctypes.POINTER(_Violation)),
        ("violation_count", ctypes.c_size_t),
        ("classification_fallback", ctypes.c_bool),
    ]


# 3 pointers, enum (+4), origin 16, 2 x u32, pointer, u8 (+7), 3 pointers/size_t, bool (+7).
assert ctypes.sizeof(_Record) == 104, "struct shmring_compacted_page_record changed: update _Record"

# enum shmring_page_type and enum shmring_origin_kind, in order, with the origin's value key.
PAGE_TYPES = ("tool_output", "conversation_turn", "memory_excerpt", "system_context")
ORIGIN_KINDS = (("tool_pair", "tool_name"), ("turn", "message_id"), ("excerpt", "source_label"),
                ("system", "key"))
_RECORD_KEYS = frozenset(("ts", "turn_id", "page_id", "page_type", "origin", "original_tokens",
                          "compacted_tokens", "fidelity_level", "invariant_version", "provider_name",
                          "violations", "classification_fallback"))

_LOG_FN = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
_LOG_LEVELS = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR)


def _log_to_logging(level: int, msg: Optional[bytes], ctx: Optional[int]) -> None:
    # Called by the library from the thread that logs; an exception cannot cross C.
    try:
        logger.log(_LOG_LEVELS[level & 3], "%s", (msg or b"").decode(errors="replace"))
    except Exception:  # noqa: BLE001
        pass


_log_callback = _LOG_FN(_log_to_logging)  # referenced for as long as the library may call it
_lib: Optional[ctypes.CDLL] = None


def load_library() -> ctypes.CDLL:
    """The loaded libshmring (cached); its log lines are routed to logging("shmring")."""
    global _lib
    if _lib is not None:
        return _lib
    candidates: List[str] = []
    if os.environ.get("SHMRING_LIB"):
        candidates.append(os.environ["SHMRING_LIB"])
    found = ctypes.util.find_library("shmring")
    if found:
        candidates.append(found)
    candidates.append("libshmring.so.0")
    errors = []
    for path in candidates:
        try:
            lib = ctypes.CDLL(path, use_errno=True)
            break
        except OSError as e:
            errors.append("%s: %s" % (path, e))
    else:
        raise OSError(_errno.ENOENT, "libshmring not found (set SHMRING_LIB): " + "; ".join(errors))

    vp = ctypes.c_void_p
    sigs = {
        "shmring_open": ([ctypes.c_char_p, ctypes.POINTER(Options), ctypes.POINTER(vp)], ctypes.c_int),
        "shmring_attach": ([ctypes.c_char_p, ctypes.POINTER(vp)], ctypes.c_int),
        "shmring_send": ([vp, ctypes.c_char_p, ctypes.c_size_t], ctypes.c_int),
        "shmring_send_wait": ([vp, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int], ctypes.c_int),
        "shmring_flush": ([vp], ctypes.c_int),
        "shmring_dropped_count": ([vp], ctypes.c_uint64),
        "shmring_stats": ([vp, ctypes.POINTER(Stats)], ctypes.c_int),
        "shmring_inspect": ([ctypes.c_char_p, ctypes.POINTER(Stats)], ctypes.c_int),
        "shmring_writer_error": ([vp, ctypes.c_char_p, ctypes.c_size_t], ctypes.c_int),
        "shmring_close": ([vp], None),
        "shmring_unlink": ([ctypes.c_char_p], ctypes.c_int),
        "shmring_set_log": ([_LOG_FN, vp], None),
        "shmring_audit_open": ([ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(vp)], ctypes.c_int),
        "shmring_audit_send": ([vp, ctypes.POINTER(_Record)], ctypes.c_int),
        "shmring_audit_flush": ([vp], ctypes.c_int),
        "shmring_audit_dropped_count": ([vp], ctypes.c_uint64),
        "shmring_audit_close": ([vp], None),
        "shmring_audit_ring_name": ([vp], ctypes.c_char_p),
        "shmring_audit_ring": ([vp], vp),
    }
    for fn, (args, res) in sigs.items():
        f = getattr(lib, fn)
        f.argtypes = args
        f.restype = res
    lib.shmring_set_log(_log_callback, None)
    _lib = lib
    return lib


def _check(rc: int, what: str, name: str) -> int:
    if rc < 0:
        err = -rc
        raise OSError(err, "shmring: ring %s: %s: %s" % (name, what, os.strerror(err)))
    return rc


def _name_bytes(name: Union[str, bytes]) -> bytes:
    if isinstance(name, str):
        return name.encode()
    if isinstance(name, bytes):
        return name
    raise TypeError("ring name must be str or bytes, not %s" % type(name).__name__)


def _pack(value: Value) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    import msgpack  # only needed for values that are not bytes

    return msgpack.packb(value, use_bin_type=True)


def _stats_of(st: Stats) -> Dict[str, Union[int, bool]]:
    return {n: (bool(getattr(st, n)) if n == "writer_alive" else int(getattr(st, n)))
            for n in STATS_FIELDS}


def _stats_dict(lib: ctypes.CDLL, h: Any, name: str) -> Dict[str, Union[int, bool]]:
    st = Stats()
    _check(lib.shmring_stats(h, ctypes.byref(st)), "stats", name)
    return _stats_of(st)


def inspect(name: Union[str, bytes]) -> Dict[str, Union[int, bool]]:
    """The counters of ring NAME, read without becoming its producer: the ring is mapped
    read-only for the call (read permission suffices; neither its bytes nor its timestamps
    change), as `shmring stat` does. FileNotFoundError, PermissionError, OSError."""
    st = Stats()
    _check(load_library().shmring_inspect(_name_bytes(name), ctypes.byref(st)), "inspect", str(name))
    return _stats_of(st)


def unlink(name: Union[str, bytes]) -> None:
    """Remove ring NAME (its shm object). OSError on failure (ENOENT, EINVAL, EACCES)."""
    _check(load_library().shmring_unlink(_name_bytes(name)), "unlink", str(name))


_H = TypeVar("_H", bound="_Handle")


class _Handle:
    """A C handle this object owns: released once, by close(), leaving the with-block, or
    the garbage collector. Subclasses name the C call that releases it."""

    _h: Optional[ctypes.c_void_p] = None
    _lib: Any

    def _free(self, h: ctypes.c_void_p) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release the handle (idempotent)."""
        h, self._h = self._h, None
        if h is not None:
            self._free(h)

    @property
    def closed(self) -> bool:
        return self._h is None

    def __enter__(self: _H) -> _H:
        return self

    def __exit__(self, *exc: Any) -> bool:
        self.close()
        return False

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


class Ring(_Handle):
    """A producer handle on one ring; usable from many threads, also as a context manager.
    close() detaches; the ring stays."""

    def _free(self, h: ctypes.c_void_p) -> None:
        self._lib.shmring_close(h)

    def __init__(self, name: Union[str, bytes], capacity: int = 0, slot_size: int = 0, mode: int = 0,
                 _attach: bool = False) -> None:
        self._h: Optional[ctypes.c_void_p] = None
        self.name = name
        lib = load_library()
        h = ctypes.c_void_p()
        if _attach:
            rc = lib.shmring_attach(_name_bytes(name), ctypes.byref(h))
        else:
            opts = Options(capacity, slot_size, mode)
            rc = lib.shmring_open(_name_bytes(name), ctypes.byref(opts), ctypes.byref(h))
        _check(rc, "attach" if _attach else "open", str(name))
        self._lib = lib
        self._h = h

    @classmethod
    def attach(cls, name: Union[str, bytes]) -> "Ring":
        """Attach to an existing ring; never creates (FileNotFoundError when missing)."""
        return cls(name, _attach=True)

    def _handle(self) -> ctypes.c_void_p:
        if self._h is None:
            raise ValueError("shmring: ring %s: handle is closed" % self.name)
        return self._h

    def send(self, value: Value) -> None:
        """Send one record: bytes as they are (they should be one msgpack object), any
        other value packed with msgpack. Never blocks. Raises BlockingIOError when the ring
        is full, OSError(EMSGSIZE) when larger than the ring's max record (both dropped and
        counted), OSError(ECANCELED) when the call stalled and the writer revoked it."""
        data = _pack(value)
        _check(self._lib.shmring_send(self._handle(), data, len(data)), "send", str(self.name))

    def send_wait(self, value: Value, timeout_ms: int) -> None:
        """As send, but on a full ring wait up to timeout_ms for the writer to make room
        (shmring_send_wait); then BlockingIOError as send. The GIL is released meanwhile."""
        data = _pack(value)
        _check(self._lib.shmring_send_wait(self._handle(), data, len(data), int(timeout_ms)),
               "send_wait", str(self.name))

    def flush(self) -> None:
        """Return once every record sent before, from any process, is written (100 ms at
        most). OSError(ENOTCONN) when no writer serves the ring, TimeoutError when the
        writer did not confirm in time, OSError(EIO) when it did not while its output
        fails (writer_error() says why)."""
        _check(self._lib.shmring_flush(self._handle()), "flush", str(self.name))

    def dropped_count(self) -> int:
        """Ring-wide count of records dropped because the ring was full."""
        return int(self._lib.shmring_dropped_count(self._handle()))

    def stats(self) -> Dict[str, Union[int, bool]]:
        """The ring-wide counters, a dict keyed by the struct shmring_stats field names."""
        return _stats_dict(self._lib, self._handle(), str(self.name))

    def writer_error(self) -> Optional[str]:
        """The writer's output error as text ("write PATH: No space left on device"), or
        None while its output works."""
        buf = ctypes.create_string_buffer(8192)
        n = _check(self._lib.shmring_writer_error(self._handle(), buf, len(buf)),
                   "writer_error", str(self.name))
        return buf.value.decode(errors="replace") if n else None

    def __repr__(self) -> str:
        return "<shmring.Ring %r%s>" % (self.name, " closed" if self._h is None else "")


def _cstr(rec: Mapping[str, Any], key: str, value: Any = None) -> bytes:
    v = rec[key] if value is None else value
    if not isinstance(v, str):
        raise TypeError("shmring: record field %s must be str, not %s" % (key, type(v).__name__))
    b = v.encode("utf-8", errors="surrogateescape")
    if b"\0" in b:
        raise ValueError("shmring: record field %s contains a NUL character" % key)
    return b


def _uint(rec: Mapping[str, Any], key: str, bits: int) -> int:
    v = rec[key]
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < (1 << bits):
        raise ValueError("shmring: record field %s must be an integer in 0..%d, not %r"
                         % (key, (1 << bits) - 1, v))
    return v


def _to_record(rec: Mapping[str, Any]) -> Tuple[_Record, List[Any]]:
    """The C struct for a dict shaped like the record's JSON line, and what it points to."""
    unknown = set(rec) - _RECORD_KEYS
    if unknown:
        raise ValueError("shmring: unknown record field(s): %s" % ", ".join(sorted(unknown)))
    missing = _RECORD_KEYS - {"ts", "violations", "classification_fallback"} - set(rec)
    if missing:
        raise ValueError("shmring: missing record field(s): %s" % ", ".join(sorted(missing)))
    keep: List[Any] = []  # the bytes and array the struct points into
    r = _Record()
    ts = rec.get("ts")
    r.ts = None if ts is None else _cstr(rec, "ts")
    r.turn_id = _cstr(rec, "turn_id")
    r.page_id = _cstr(rec, "page_id")
    if rec["page_type"] not in PAGE_TYPES:
        raise ValueError("shmring: page_type must be one of %s, not %r" % (", ".join(PAGE_TYPES),
                                                                           rec["page_type"]))
    r.page_type = PAGE_TYPES.index(rec["page_type"])
    origin = rec["origin"]
    kinds = dict(ORIGIN_KINDS)
    if not isinstance(origin, Mapping) or origin.get("kind") not in kinds:
        raise ValueError("shmring: origin must be {\"kind\": one of %s, ...}, not %r"
                         % (", ".join(kinds), origin))
    vkey = kinds[origin["kind"]]
    if set(origin) != {"kind", vkey}:
        raise ValueError("shmring: origin of kind %s must have exactly the keys kind, %s, not %r"
                         % (origin["kind"], vkey, sorted(origin)))
    r.origin.kind = [k for k, _ in ORIGIN_KINDS].index(origin["kind"])
    r.origin.value = _cstr(origin, vkey)
    r.original_tokens = _uint(rec, "original_tokens", 32)
    r.compacted_tokens = _uint(rec, "compacted_tokens", 32)
    r.fidelity_level = _cstr(rec, "fidelity_level")
    r.invariant_version = _uint(rec, "invariant_version", 8)
    r.provider_name = _cstr(rec, "provider_name")
    vs = rec.get("violations") or []
    if vs:
        arr = (_Violation * len(vs))()
        for i, v in enumerate(vs):
            if not isinstance(v, Mapping) or set(v) != {"missing_field", "detail"}:
                raise ValueError("shmring: a violation must be {\"missing_field\": str, \"detail\": str}, "
                                 "not %r" % (v,))
            arr[i].missing_field = _cstr(v, "missing_field")
            arr[i].detail = _cstr(v, "detail")
        keep.append(arr)
        r.violations = arr
    r.violation_count = len(vs)
    fb = rec.get("classification_fallback", False)
    if not isinstance(fb, bool):
        raise TypeError("shmring: classification_fallback must be bool, not %s" % type(fb).__name__)
    r.classification_fallback = fb
    return r, keep


class AuditSink(_Handle):
    """The compaction audit sink (include/shmring/audit.h): records, given as dicts shaped
    like their JSON line, appended to one JSONL file by a shmring-writer that the sink
    starts when none serves the file. send never blocks; a context manager. close()
    detaches; the writer serves others and exits by itself when idle."""

    def _free(self, h: ctypes.c_void_p) -> None:
        self._lib.shmring_audit_close(h)

    def __init__(self, path: Union[str, "os.PathLike[str]"], capacity: int = 0) -> None:
        self._h: Optional[ctypes.c_void_p] = None
        self.path = os.fspath(path)
        lib = load_library()
        h = ctypes.c_void_p()
        _check(lib.shmring_audit_open(os.fsencode(self.path), int(capacity), ctypes.byref(h)),
               "audit open", self.path)
        self._lib = lib
        self._h = h

    def _handle(self) -> ctypes.c_void_p:
        if self._h is None:
            raise ValueError("shmring: audit sink %s is closed" % self.path)
        return self._h

    @property
    def ring_name(self) -> str:
        """The ring's name, "audit-<16 hex digits>" (shared by every opener of the file)."""
        return self._lib.shmring_audit_ring_name(self._handle()).decode()

    def send(self, record: Mapping[str, Any]) -> None:
        """Send one record, a dict with the keys of the JSON line: ts (optional str; absent
        or None = now), turn_id, page_id, page_type (one of PAGE_TYPES), origin ({"kind":
        "tool_pair", "tool_name": ...} and the other ORIGIN_KINDS), original_tokens,
        compacted_tokens (0..2^32-1), fidelity_level, invariant_version (0..255),
        provider_name, violations (optional list of {"missing_field", "detail"}),
        classification_fallback (optional bool). Never blocks. ValueError/TypeError for a
        malformed dict (nothing sent); BlockingIOError when the ring is full (dropped and
        counted), OSError(EMSGSIZE) when too large."""
        rec, keep = _to_record(record)
        rc = self._lib.shmring_audit_send(self._handle(), ctypes.byref(rec))
        del keep
        _check(rc, "audit send", self.path)

    def flush(self) -> None:
        """Return once every record accepted before, by any process, is in the file (100 ms
        at most, more if a writer had to be restarted); OSError as Ring.flush."""
        _check(self._lib.shmring_audit_flush(self._handle()), "audit flush", self.path)

    def dropped_count(self) -> int:
        """Records dropped because the ring was full, ring-wide."""
        return int(self._lib.shmring_audit_dropped_count(self._handle()))

    def stats(self) -> Dict[str, Union[int, bool]]:
        """The counters of the sink's ring, as Ring.stats."""
        return _stats_dict(self._lib, self._lib.shmring_audit_ring(self._handle()), self.ring_name)

    def __repr__(self) -> str:
        return "<shmring.AuditSink %r%s>" % (self.path, " closed" if self._h is None else "")
