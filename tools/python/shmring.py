"""shmring - Python producers for shmring rings, through ctypes (no compiled extension).

    import shmring
    with shmring.Ring("audit", capacity=4096, slot_size=1024) as ring:
        ring.send({"event": "login", "user": "ada"})   # packed with the msgpack module
        ring.send(b"\\x81\\xa1k\\x01")                    # bytes are sent as they are
        ring.flush()                                     # barrier, bounded at 100 ms
        print(ring.dropped_count(), ring.stats()["written"])

The ring is created when missing (capacity and slot_size apply then; 0 = defaults);
``Ring.attach(name)`` never creates. A shmring-writer process must serve the ring for the
records to reach its JSONL file.

Errors raise OSError with the library's errno and a message: the subclasses Python picks
for an errno apply, so a full ring raises BlockingIOError (EAGAIN), a flush without a live
writer OSError(ENOTCONN), a flush that timed out TimeoutError (ETIMEDOUT), a bad name
OSError(EINVAL), a missing ring (attach) FileNotFoundError. A dropped record is counted in
the ring's stats like any other drop.

The library is found through the environment variable SHMRING_LIB (a path), then
ctypes.util.find_library("shmring"), then "libshmring.so.0" through the dynamic loader
(LD_LIBRARY_PATH, the system paths).
"""

import ctypes
import ctypes.util
import errno as _errno
import os

__all__ = ["Ring", "Stats", "unlink", "load_library", "STATS_FIELDS"]


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

_lib = None


def load_library():
    """The loaded libshmring (cached)."""
    global _lib
    if _lib is not None:
        return _lib
    candidates = []
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
    lib.shmring_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(Options), ctypes.POINTER(vp)]
    lib.shmring_open.restype = ctypes.c_int
    lib.shmring_attach.argtypes = [ctypes.c_char_p, ctypes.POINTER(vp)]
    lib.shmring_attach.restype = ctypes.c_int
    lib.shmring_send.argtypes = [vp, ctypes.c_char_p, ctypes.c_size_t]
    lib.shmring_send.restype = ctypes.c_int
    lib.shmring_flush.argtypes = [vp]
    lib.shmring_flush.restype = ctypes.c_int
    lib.shmring_dropped_count.argtypes = [vp]
    lib.shmring_dropped_count.restype = ctypes.c_uint64
    lib.shmring_stats.argtypes = [vp, ctypes.POINTER(Stats)]
    lib.shmring_stats.restype = ctypes.c_int
    lib.shmring_writer_error.argtypes = [vp, ctypes.c_char_p, ctypes.c_size_t]
    lib.shmring_writer_error.restype = ctypes.c_int
    lib.shmring_close.argtypes = [vp]
    lib.shmring_close.restype = None
    lib.shmring_unlink.argtypes = [ctypes.c_char_p]
    lib.shmring_unlink.restype = ctypes.c_int
    _lib = lib
    return lib


def _check(rc, what, name):
    if rc < 0:
        err = -rc
        raise OSError(err, "shmring: ring %s: %s: %s" % (name, what, os.strerror(err)))
    return rc


def _name_bytes(name):
    if isinstance(name, str):
        return name.encode()
    if isinstance(name, bytes):
        return name
    raise TypeError("ring name must be str or bytes, not %s" % type(name).__name__)


def unlink(name):
    """Remove ring NAME (its shm object). OSError on failure (ENOENT, EINVAL, EACCES)."""
    _check(load_library().shmring_unlink(_name_bytes(name)), "unlink", name)


class Ring:
    """A producer handle on one ring; usable from many threads, also as a context manager."""

    def __init__(self, name, capacity=0, slot_size=0, mode=0, _attach=False):
        self._h = None
        self.name = name
        lib = load_library()
        h = ctypes.c_void_p()
        if _attach:
            rc = lib.shmring_attach(_name_bytes(name), ctypes.byref(h))
        else:
            opts = Options(capacity, slot_size, mode)
            rc = lib.shmring_open(_name_bytes(name), ctypes.byref(opts), ctypes.byref(h))
        _check(rc, "attach" if _attach else "open", name)
        self._lib = lib
        self._h = h

    @classmethod
    def attach(cls, name):
        """Attach to an existing ring; never creates (FileNotFoundError when missing)."""
        return cls(name, _attach=True)

    def _handle(self):
        if self._h is None:
            raise ValueError("shmring: ring %s: handle is closed" % self.name)
        return self._h

    def send(self, value):
        """Send one record: bytes as they are (they should be one msgpack object), any
        other value packed with msgpack. Never blocks. Raises BlockingIOError when the ring
        is full, OSError(EMSGSIZE) when larger than the ring's max record (both dropped and
        counted), OSError(ECANCELED) when the call stalled and the writer revoked it."""
        if isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
        else:
            import msgpack  # only needed for values that are not bytes

            data = msgpack.packb(value, use_bin_type=True)
        _check(self._lib.shmring_send(self._handle(), data, len(data)), "send", self.name)

    def flush(self):
        """Return once every record sent before, from any process, is written (100 ms at
        most). OSError(ENOTCONN) when no writer serves the ring, TimeoutError when the
        writer did not confirm in time, OSError(EIO) when it did not while its output
        fails (writer_error() says why)."""
        _check(self._lib.shmring_flush(self._handle()), "flush", self.name)

    def dropped_count(self):
        """Ring-wide count of records dropped because the ring was full."""
        return int(self._lib.shmring_dropped_count(self._handle()))

    def stats(self):
        """The ring-wide counters, a dict keyed by the struct shmring_stats field names."""
        st = Stats()
        _check(self._lib.shmring_stats(self._handle(), ctypes.byref(st)), "stats", self.name)
        return {name: (bool(v) if name == "writer_alive" else int(v))
                for name, v in ((n, getattr(st, n)) for n in STATS_FIELDS)}

    def writer_error(self):
        """The writer's output error as text ("write PATH: No space left on device"), or
        None while its output works."""
        buf = ctypes.create_string_buffer(8192)
        n = _check(self._lib.shmring_writer_error(self._handle(), buf, len(buf)),
                   "writer_error", self.name)
        return buf.value.decode(errors="replace") if n else None

    def close(self):
        """Detach (the ring stays). Idempotent."""
        h, self._h = self._h, None
        if h is not None:
            self._lib.shmring_close(h)

    @property
    def closed(self):
        return self._h is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self):
        return "<shmring.Ring %r%s>" % (self.name, " closed" if self._h is None else "")
