#!/usr/bin/python3
"""test_python: the ctypes binding (bindings/python/shmring): Python producers (forked) and
C producers (the shmring send command) into one ring, every record checked in the JSONL;
the context manager, OSError errnos, the stats dict, full and oversize drops, send_wait,
the audit sink's exact lines, log lines through logging, __version__ against the header.

Run by ctest with SHMRING_LIB (the built libshmring.so), SHMRING_WRITER_PATH and
SHMRING_CLI_PATH set; exit 77 (skipped) when the msgpack module is missing."""

import base64
import errno
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

if os.environ.get("SHMRING_TEST_SKIP"):
    print("skipped: " + os.environ["SHMRING_TEST_SKIP"])
    sys.exit(77)

try:
    import msgpack
except ImportError:
    print("skipped: the msgpack module is not installed for %s (python3-msgpack)" % sys.executable)
    sys.exit(77)

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(SRC, "bindings", "python"))
import shmring  # noqa: E402

WRITER = os.environ.get("SHMRING_WRITER_PATH", "")
CLI = os.environ.get("SHMRING_CLI_PATH", "")
TAG = "%d-%d" % (os.getpid(), int(time.time()))
N_PY_PROCS, N_PY, N_C = 3, 300, 300

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)
    return cond


def ring_name(tag):
    return "test-py-%s-%s" % (tag, TAG)


def start_writer(name, out):
    p = subprocess.Popen([WRITER, "--ring", name, "--out", out], stderr=subprocess.DEVNULL)
    deadline = time.time() + 5
    while time.time() < deadline:
        try:
            with shmring.Ring.attach(name) as r:
                st = r.stats()
                if st["writer_alive"] and st["writer_pid"] == p.pid:
                    return p
        except FileNotFoundError:
            pass
        time.sleep(0.01)
    p.kill()
    raise RuntimeError("writer did not start")


def as_json(v):
    """What the writer's JSON line holds for a value packed by Python's msgpack."""
    if isinstance(v, (bytes, bytearray)):
        return base64.b64encode(v).decode()
    if isinstance(v, (list, tuple)):
        return [as_json(x) for x in v]
    if isinstance(v, dict):
        return {k: as_json(x) for k, x in v.items()}
    return v


def py_record(p, i):
    return {"src": "py", "p": p, "i": i, "f": i / 7, "neg": -i * 1000003, "b": bytes([i % 256, 0, 255]),
            "t": (True, False, None), "u": "\u00e9\n\"\u2603\U0001F600", "big": 2 ** 63 + i}


def send_retry(ring, value):
    """Send; on a full ring wait for the writer and retry (the drop is counted)."""
    for _ in range(2000):
        try:
            ring.send(value)
            return
        except BlockingIOError:
            time.sleep(0.002)
    raise RuntimeError("ring stayed full")


def py_producer(name, p):
    """A forked Python producer: map records packed by msgpack, and raw bytes."""
    try:
        with shmring.Ring(name) as ring:
            for i in range(N_PY):
                if i % 10 == 9:
                    send_retry(ring, msgpack.packb({"src": "raw", "p": p, "i": i}))
                else:
                    send_retry(ring, py_record(p, i))
        os._exit(0)
    except BaseException as e:  # noqa: BLE001 - report anything from the child
        print("producer %d: %r" % (p, e), file=sys.stderr)
        os._exit(1)


def test_mixed_producers(tmp):
    name = ring_name("mix")
    out = os.path.join(tmp, "mix.jsonl")
    writer = start_writer(name, out)
    try:
        pids = []
        for p in range(N_PY_PROCS):
            pid = os.fork()
            if pid == 0:
                py_producer(name, p)
            pids.append(pid)
        c_lines = "".join(json.dumps({"src": "c", "i": i, "s": "x" * (i % 50)}) + "\n" for i in range(N_C))
        c = subprocess.run([CLI, "send", name], input=c_lines.encode(), capture_output=True)
        check(c.returncode == 0, "shmring send exit %d: %s" % (c.returncode, c.stderr.decode()))
        for pid in pids:
            _, st = os.waitpid(pid, 0)
            check(os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0, "python producer %d failed" % pid)

        with shmring.Ring(name) as ring:
            ring.flush()
            st = ring.stats()
        with open(out) as f:
            lines = [json.loads(line) for line in f]

        expected = []
        for p in range(N_PY_PROCS):
            for i in range(N_PY):
                expected.append({"src": "raw", "p": p, "i": i} if i % 10 == 9 else as_json(py_record(p, i)))
        expected += [{"src": "c", "i": i, "s": "x" * (i % 50)} for i in range(N_C)]
        key = lambda v: json.dumps(v, sort_keys=True)  # noqa: E731
        check(len(lines) == len(expected), "%d lines, want %d" % (len(lines), len(expected)))
        check(sorted(map(key, lines)) == sorted(map(key, expected)), "the lines are not the records sent")
        # Each producer's records arrive in the order it sent them.
        seen = {}
        for v in lines:
            src = (v.get("src"), v.get("p")) if v.get("src") != "raw" else ("py", v.get("p"))
            check(seen.get(src, -1) < v["i"], "record out of order: %r" % v)
            seen[src] = v["i"]
        check(st["pending"] == 0, "pending %d after flush" % st["pending"])
        check(st["written"] == len(lines), "written %d, %d lines" % (st["written"], len(lines)))
        check(st["sent"] == st["written"] + st["dropped_full"] + st["dropped_oversize"] + st["abandoned"]
              + st["pending"], "accounting identity: %r" % st)
        check(st["writer_alive"] is True and st["writer_pid"] == writer.pid, "writer in stats: %r" % st)
        print("mixed: %d lines from %d Python producers and shmring send" % (len(lines), N_PY_PROCS))
    finally:
        writer.send_signal(signal.SIGTERM)
        check(writer.wait(10) == 0, "writer exit status")
        shmring.unlink(name)


def test_stats_dict():
    name = ring_name("stats")
    with shmring.Ring(name, capacity=64, slot_size=256) as ring:
        st = ring.stats()
        check(tuple(st) == shmring.STATS_FIELDS, "stats keys: %r" % list(st))
        check(set(st) == {"capacity", "slot_size", "max_record", "head", "tail", "pending", "sent", "written",
                          "invalid", "dropped_full", "dropped_oversize", "abandoned", "aborted", "flushes",
                          "flushes_done", "corrupt", "writer_pid", "writer_alive", "producers",
                          "writer_errno", "writer_error_op", "writer_error_since_ns"},
              "stats field names")
        check(st["capacity"] == 64 and st["slot_size"] == 256, "geometry %r" % st)
        check(st["max_record"] == 16 * 256 - 8, "max_record %d" % st["max_record"])
        check(st["producers"] == 1 and st["writer_alive"] is False, "liveness %r" % st)
        ring.send({"a": 1})
        ring.send(b"\x01")
        st = ring.stats()
        check(st["sent"] == 2 and st["pending"] == 2 and st["tail"] == 2, "after two sends %r" % st)
        check(st["writer_errno"] == 0 and ring.writer_error() is None, "no writer error %r" % st)
        # No writer: flush answers ENOTCONN at once.
        try:
            ring.flush()
            check(False, "flush without a writer did not raise")
        except OSError as e:
            check(e.errno == errno.ENOTCONN, "flush errno %r" % e.errno)
        # Oversize: dropped and counted apart.
        try:
            ring.send(b"\xc4" + b"x" * 5000)
            check(False, "oversize send did not raise")
        except OSError as e:
            check(e.errno == errno.EMSGSIZE, "oversize errno %r" % e.errno)
        # Full: BlockingIOError (EAGAIN), counted in dropped_count.
        full = None
        for i in range(200):
            try:
                ring.send({"i": i})
            except BlockingIOError as e:
                full = e
                break
        check(full is not None and full.errno == errno.EAGAIN, "full ring did not raise EAGAIN")
        check(ring.dropped_count() == 1, "dropped_count %d" % ring.dropped_count())
        st = ring.stats()
        check(st["dropped_full"] == 1 and st["dropped_oversize"] == 1, "drops %r" % st)
        # inspect: the same figures by name, read-only: no producer entry, no timestamp moved.
        path = "/dev/shm/shmring." + name
        before = os.stat(path)
        time.sleep(0.02)
        ins = shmring.inspect(name)
        after = os.stat(path)
        check(ins == ring.stats(), "inspect %r != stats %r" % (ins, ring.stats()))
        check((before.st_mtime_ns, before.st_ctime_ns) == (after.st_mtime_ns, after.st_ctime_ns),
              "inspect changed the ring's timestamps")
    try:
        shmring.inspect(ring_name("none"))
        check(False, "inspect of a missing ring did not raise")
    except FileNotFoundError:
        pass
    shmring.unlink(name)


def test_handle_and_errors():
    name = ring_name("ctx")
    with shmring.Ring(name) as ring:
        check(not ring.closed, "open handle says closed")
    check(ring.closed, "context manager did not close")
    try:
        ring.send(b"\x01")
        check(False, "send on a closed handle did not raise")
    except ValueError:
        pass
    ring.close()  # idempotent
    for bad in ("bad/name", "", "x" * 201, "sp ace"):
        try:
            shmring.Ring(bad)
            check(False, "Ring(%r) did not raise" % bad)
        except OSError as e:
            check(e.errno == errno.EINVAL, "Ring(%r): errno %r" % (bad, e.errno))
            check("shmring" in str(e), "message %r" % str(e))
    try:
        shmring.Ring(ring_name("geom"), capacity=3)
        check(False, "capacity 3 did not raise")
    except OSError as e:
        check(e.errno == errno.EINVAL, "capacity 3: errno %r" % e.errno)
    try:
        shmring.Ring.attach(ring_name("missing"))
        check(False, "attach to a missing ring did not raise")
    except FileNotFoundError as e:
        check(e.errno == errno.ENOENT, "attach errno %r" % e.errno)
    check(not os.path.exists("/dev/shm/shmring." + ring_name("missing")), "attach created a ring")
    shmring.unlink(name)
    try:
        shmring.unlink(name)
        check(False, "unlink twice did not raise")
    except FileNotFoundError:
        pass


def test_version():
    with open(os.path.join(SRC, "include", "shmring.h")) as f:
        parts = dict(re.findall(r"#define SHMRING_VERSION_(MAJOR|MINOR|PATCH) +(\d+)", f.read()))
    want = "%s.%s.%s" % (parts["MAJOR"], parts["MINOR"], parts["PATCH"])
    check(shmring.__version__ == want, "__version__ %s, include/shmring.h says %s" % (shmring.__version__, want))


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def test_send_wait_and_log():
    """send_wait on a full ring without a writer waits its timeout, then EAGAIN; the drop's
    WARN line arrives through logging("shmring")."""
    cap = _Capture()
    log = logging.getLogger("shmring")
    log.addHandler(cap)
    log.setLevel(logging.DEBUG)
    name = ring_name("wait")
    try:
        with shmring.Ring(name, capacity=64, slot_size=64) as ring:
            ring.send_wait({"i": 0}, 10)  # room: at once
            n = 1
            while True:
                try:
                    ring.send({"i": n})
                    n += 1
                except BlockingIOError:
                    break
            t0 = time.monotonic()
            try:
                ring.send_wait({"i": n}, 50)
                check(False, "send_wait on a full ring did not raise")
            except BlockingIOError:
                waited = time.monotonic() - t0
                check(0.04 <= waited < 2, "send_wait waited %.3f s for a 50 ms timeout" % waited)
            check(ring.stats()["dropped_full"] == 2, "dropped_full %r" % ring.stats()["dropped_full"])
    finally:
        log.removeHandler(cap)
        log.setLevel(logging.NOTSET)
        shmring.unlink(name)
    warns = [r for r in cap.records if r.levelno == logging.WARNING and name in r.getMessage()]
    check(len(warns) >= 1 and "record dropped" in warns[0].getMessage(), "log records %r"
          % [r.getMessage() for r in cap.records])


AUDIT_REC = {
    "ts": "2026-11-24T08:55:52.123456Z", "turn_id": "t-42", "page_id": "p-7", "page_type": "tool_output",
    "origin": {"kind": "tool_pair", "tool_name": "read_file"}, "original_tokens": 1800,
    "compacted_tokens": 240, "fidelity_level": "summary", "invariant_version": 1,
    "provider_name": "anthropic", "violations": [{"missing_field": "exit_code", "detail": 'tool said "exit 1"'}],
}
# What the C sink (and serde_json) writes for AUDIT_REC: the README's example line.
AUDIT_LINE = ('{"ts":"2026-11-24T08:55:52.123456Z","turn_id":"t-42","page_id":"p-7","page_type":"tool_output",'
              '"origin":{"kind":"tool_pair","tool_name":"read_file"},"original_tokens":1800,'
              '"compacted_tokens":240,"fidelity_level":"summary","invariant_version":1,'
              '"provider_name":"anthropic","violations":[{"missing_field":"exit_code",'
              '"detail":"tool said \\"exit 1\\""}]}')


def test_audit_sink(tmp):
    """AuditSink over shmring_audit_*: an autostarted writer (INFO line via logging), exact
    lines for each page type and origin kind, bad dicts refused before anything is sent."""
    os.environ["SHMRING_WRITER"] = WRITER
    path = os.path.join(tmp, "audit", "compaction.jsonl")
    cap = _Capture()
    log = logging.getLogger("shmring")
    log.addHandler(cap)
    log.setLevel(logging.DEBUG)
    try:
        with shmring.AuditSink(path, 100) as sink:
            ring = sink.ring_name
            check(re.fullmatch(r"audit-[0-9a-f]{16}", ring) is not None, "ring name %r" % ring)
            sink.send(AUDIT_REC)
            want = [AUDIT_LINE]
            for i, (pt, (kind, key)) in enumerate(zip(shmring.PAGE_TYPES, shmring.ORIGIN_KINDS)):
                rec = dict(AUDIT_REC, page_type=pt, origin={"kind": kind, key: "v\u00e9%d" % i},
                           violations=[], classification_fallback=(i % 2 == 1), invariant_version=255,
                           original_tokens=2 ** 32 - 1)
                sink.send(rec)
                want.append(
                    '{"ts":"2026-11-24T08:55:52.123456Z","turn_id":"t-42","page_id":"p-7","page_type":"%s",'
                    '"origin":{"kind":"%s","%s":"v\u00e9%d"},"original_tokens":4294967295,'
                    '"compacted_tokens":240,"fidelity_level":"summary","invariant_version":255,'
                    '"provider_name":"anthropic","violations":[]%s}'
                    % (pt, kind, key, i, ',"classification_fallback":true' if i % 2 else ""))
            now = dict(AUDIT_REC)
            del now["ts"]
            sink.send(now)
            bad = [dict(AUDIT_REC, page_type="nope"), dict(AUDIT_REC, extra=1),
                   dict(AUDIT_REC, origin={"kind": "turn", "tool_name": "x"}),
                   dict(AUDIT_REC, original_tokens=-1), dict(AUDIT_REC, invariant_version=256),
                   dict(AUDIT_REC, turn_id=None), dict(AUDIT_REC, turn_id="a\0b"),
                   dict(AUDIT_REC, violations=[{"missing_field": "x"}]),
                   {k: v for k, v in AUDIT_REC.items() if k != "page_id"}]
            for b in bad:
                try:
                    sink.send(b)
                    check(False, "a bad record was accepted: %r" % (b,))
                except (ValueError, TypeError):
                    pass
            sink.flush()
            st = sink.stats()
            check(st["written"] == len(want) + 1 and sink.dropped_count() == 0, "sink stats %r" % st)
        check(sink.closed, "AuditSink context manager did not close")
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        check(lines[:-1] == want, "audit lines differ:\n%s\nwant\n%s" % ("\n".join(lines), "\n".join(want)))
        last = json.loads(lines[-1])
        check(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", last["ts"]) is not None,
              "ts of now: %r" % last["ts"])
        check(any(r.levelno == logging.INFO and "started shmring-writer" in r.getMessage()
                  for r in cap.records), "no INFO line for the autostart: %r" % [r.getMessage() for r in cap.records])
    finally:
        log.removeHandler(cap)
        log.setLevel(logging.NOTSET)
        # Stop the autostarted writer and remove its ring: nothing left behind.
        subprocess.run([CLI, "rm", "--force", "audit-" + shmring_audit_hash(path)], capture_output=True)


def shmring_audit_hash(path):
    """FNV-1a 64 of the canonical path, as the C sink names its ring."""
    h = 0xcbf29ce484222325
    for b in os.fsencode(os.path.realpath(path)):
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def main():
    if not WRITER or not os.access(WRITER, os.X_OK):
        print("SHMRING_WRITER_PATH is not set to the writer", file=sys.stderr)
        return 1
    if not CLI or not os.access(CLI, os.X_OK):
        print("SHMRING_CLI_PATH is not set to the shmring command", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="shmring-py-") as tmp:
        for t in (test_version, test_stats_dict, test_handle_and_errors, test_send_wait_and_log,
                  lambda: test_audit_sink(tmp), lambda: test_mixed_producers(tmp)):
            t()
    if failures:
        print("%d check(s) failed" % len(failures), file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
