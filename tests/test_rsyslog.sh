#!/usr/bin/env bash
# test_rsyslog.sh - ship the writer's JSONL with the configuration of docs/RSYSLOG.md:
# one rsyslogd (imfile) follows the writer's file through its own rotation and forwards
# each line over RELP to a second rsyslogd on 127.0.0.1, which writes the lines out again.
# Checks that every record arrived at least once and byte for byte as the writer wrote it
# (with --seq), with the writer rotating its file several times, the receiver started
# only after a third of the records (which wait in the sender's queue, across a restart
# of the sender), a second restart of the sender while both run, and the receiver killed
# (SIGKILL) and started three times while the last third flows. RELP is at-least-once:
# the lines that arrived twice are counted and printed, and removed by their shmring_seq
# key as a reader would, which must leave exactly the writer's lines.
#
#   test_rsyslog.sh WRITER CLI SRCDIR        exit 77 (skipped) without rsyslogd or RELP
#
# Environment: RSYSLOG_TEST_RECORDS (default 2000), RSYSLOG_TEST_CHUNK (records sent
# between two flushes, default 50), RSYSLOG_TEST_PAUSE (seconds after each flush,
# default 0.1: see docs/RSYSLOG.md, "Limits", for why files must not come and go faster
# than imfile can open them), RSYSLOG_TEST_KILL_EVERY (seconds between the receiver's
# kills once it takes lines, default 0.3), RSYSLOG_TEST_PAUSE_LAST (the pause while
# the last third flows, default 0.4), RSYSLOG_TEST_KEEP=1 keeps the temporary directory.
set -euo pipefail

writer=$1 cli=$2 src=$3
records=${RSYSLOG_TEST_RECORDS:-2000}
chunk=${RSYSLOG_TEST_CHUNK:-50}
pause=${RSYSLOG_TEST_PAUSE:-0.1}

rsyslogd=$(PATH="$PATH:/usr/sbin:/sbin" command -v rsyslogd || true)
if [ -z "$rsyslogd" ]; then
	echo "SKIP: rsyslogd is not installed (apt-get install rsyslog)"
	exit 77
fi
relp=0
for d in /usr/lib/*/rsyslog /usr/lib64/rsyslog /usr/lib/rsyslog; do
	[ -e "$d/imrelp.so" ] && [ -e "$d/omrelp.so" ] && relp=1
done
if [ "$relp" = 0 ]; then
	echo "SKIP: rsyslog's RELP modules are not installed (apt-get install rsyslog-relp)"
	exit 77
fi
py=$(command -v python3 || true)
if [ -z "$py" ]; then
	echo "SKIP: python3 is needed to check the output"
	exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/shmring-rsyslog.XXXXXX")
ring="rsys-$$"
recv_pid="" send_pid="" writer_pid=""
ok=0

stop() { # stop PID: SIGTERM, then SIGKILL after 20 s
	local pid=$1 _
	[ -n "$pid" ] || return 0
	kill "$pid" 2>/dev/null || return 0
	for _ in $(seq 200); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	stop "$writer_pid"
	stop "$send_pid"
	stop "$recv_pid"
	"$cli" rm --force "$ring" >/dev/null 2>&1 || true
	if [ "$ok" != 1 ]; then
		for f in "$tmp"/sender/rsyslogd.log "$tmp"/sender/stderr "$tmp"/receiver/rsyslogd.log \
			"$tmp"/receiver/stderr "$tmp"/writer.log; do
			[ -s "$f" ] && { echo "--- $f"; tail -n 20 "$f"; } >&2
		done
	fi
	if [ -n "${RSYSLOG_TEST_KEEP:-}" ]; then echo "kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

# The documented substitution (docs/RSYSLOG.md), with absolute paths.
render() { # render TEMPLATE OUTPUT WORKDIR PORT
	sed -e "s|@WORKDIR@|$3|g" -e "s|@JSONL@|$tmp/out.jsonl|g" -e "s|@PORT@|$4|g" \
		-e "s|@OUT@|$tmp/received.jsonl|g" "$1" >"$2"
	"$rsyslogd" -N1 -f "$2" >"$2.check" 2>&1 || fail "rsyslogd -N1 -f $2: $(cat "$2.check")"
}

# Is PID listening on 127.0.0.1:PORT? (its socket inodes against /proc/net/tcp)
listening() {
	"$py" - "$1" "$2" <<-'EOF'
	import os, sys
	pid, port = sys.argv[1], int(sys.argv[2])
	mine = set()
	for fd in os.listdir(f"/proc/{pid}/fd"):
	    try:
	        t = os.readlink(f"/proc/{pid}/fd/{fd}")
	    except OSError:
	        continue
	    if t.startswith("socket:["):
	        mine.add(t[8:-1])
	for line in open("/proc/net/tcp").readlines()[1:]:
	    f = line.split()
	    if f[1] == "0100007F:%04X" % port and f[3] == "0A" and f[9] in mine:
	        sys.exit(0)
	sys.exit(1)
	EOF
}

# A free port below the ephemeral range: 20000 + $$ % 12000, the next ones if taken.
port=""
for try in $(seq 0 19); do
	p=$((20000 + ($$ + try * 397) % 12000))
	if "$py" -c 'import socket, sys; socket.create_server(("127.0.0.1", int(sys.argv[1])))' "$p" \
		2>/dev/null; then
		port=$p
		break
	fi
done
[ -n "$port" ] || fail "no free port found"
mkdir -p "$tmp/receiver" "$tmp/sender"
render "$src/docs/rsyslog/sender.conf.in" "$tmp/sender.conf" "$tmp/sender" "$port"
render "$src/docs/rsyslog/receiver.conf.in" "$tmp/receiver.conf" "$tmp/receiver" "$port"

# Starts the sender; once the writer's file exists, waits until imfile has it open: lines
# of a file rotated away while the sender is not following it are not read (see the doc).
start_sender() {
	"$rsyslogd" -n -f "$tmp/sender.conf" -i "$tmp/sender/rsyslogd.pid" >>"$tmp/sender/stderr" 2>&1 &
	send_pid=$!
	[ -e "$tmp/out.jsonl" ] || return 0
	local _ fd
	for _ in $(seq 200); do
		kill -0 "$send_pid" 2>/dev/null || fail "the sending rsyslogd exited"
		for fd in /proc/"$send_pid"/fd/*; do
			[ "$(readlink "$fd" 2>/dev/null)" = "$tmp/out.jsonl" ] && return 0
		done
		sleep 0.05
	done
	fail "the sending rsyslogd does not follow $tmp/out.jsonl"
}

start_receiver() {
	"$rsyslogd" -n -f "$tmp/receiver.conf" -i "$tmp/receiver/rsyslogd.pid" >>"$tmp/receiver/stderr" 2>&1 &
	recv_pid=$!
	for _ in $(seq 200); do
		listening "$recv_pid" "$port" && return 0
		kill -0 "$recv_pid" 2>/dev/null || break
		sleep 0.05
	done
	fail "the receiving rsyslogd does not listen on 127.0.0.1:$port"
}

# The sender first, then the writer (rotating every 20000 bytes, all files kept); the
# receiver comes later, so that the first records wait in the sender's queue.
start_sender
"$writer" --ring "$ring" --out "$tmp/out.jsonl" --seq --max-bytes 20000 --keep 20 >"$tmp/writer.log" 2>&1 &
writer_pid=$!
for _ in $(seq 100); do
	[ -e "$tmp/out.jsonl" ] && break
	kill -0 "$writer_pid" 2>/dev/null || fail "the writer exited: $(cat "$tmp/writer.log")"
	sleep 0.05
done
kill -0 "$send_pid" 2>/dev/null || fail "the sending rsyslogd exited"

# Records {"i":N,"s":...}: a quote, a backslash, a tab (escaped in JSON), non-ASCII UTF-8
# and a raw DEL in every one, so that any rewriting on the way shows.
"$py" - "$records" >"$tmp/records.jsonl" <<-'EOF'
import json, sys
for i in range(int(sys.argv[1])):
    s = f'rec {i}: say "hi" \\ back\tslash, grüße € 😀 \x7f' + "x" * (i % 37)
    print(json.dumps({"i": i, "s": s}, ensure_ascii=False, separators=(",", ":")))
EOF
start=$(date +%s.%N)
# In chunks, a flush and a pause after each (see the header).
split -l "$chunk" -d -a 4 "$tmp/records.jsonl" "$tmp/chunk."
send_chunks() { # send_chunks FIRST LAST: chunk files FIRST..LAST (0-based)
	local n=0 f
	for f in "$tmp"/chunk.*; do
		if [ "$n" -ge "$1" ] && [ "$n" -le "$2" ]; then
			"$cli" send "$ring" <"$f" || fail "shmring send failed"
			"$cli" flush "$ring" || fail "shmring flush failed"
			sleep "$pause"
		fi
		n=$((n + 1))
	done
}
received() { (cat "$tmp/received.jsonl" 2>/dev/null || true) | wc -l; }
wait_received() { # wait_received N SECONDS: until the receiver wrote N lines
	local _
	for _ in $(seq $(($2 * 10))); do
		[ "$(received)" -ge "$1" ] && return 0
		sleep 0.1
	done
	return 1
}
nchunks=$(ls "$tmp"/chunk.* | wc -l)
third=$((nchunks / 3))
# 1. A third with no receiver: the lines wait in the sender's queue (omrelp retries).
send_chunks 0 $((third - 1))
queued=$((third * chunk))
sleep 0.5
# 2. Stop and start the sender meanwhile: its queue (on disk) is read back.
stop "$send_pid"
send_pid=""
[ -e "$tmp/sender/shmring-fwd.qi" ] || fail "the sender left no queue on disk (shmring-fwd.qi)"
start_sender
# 3. The receiver: the queued lines arrive.
start_receiver
wait_received "$queued" 30 || fail "the queued lines did not arrive: $(received) of $queued"
# 4. A third with both running.
send_chunks "$third" $((2 * third - 1))
wait_received $((2 * third * chunk)) 30 || fail "lines did not arrive: $(received) of $((2 * third * chunk))"
# 5. Stop and start the sender again (imfile goes on from its state files), then the rest,
# 6. killing the receiver (SIGKILL) and starting it again three times while it flows.
stop "$send_pid"
send_pid=""
start_sender
# Slower, so that the three kills fall while lines still flow.
(pause=${RSYSLOG_TEST_PAUSE_LAST:-0.4} && send_chunks $((2 * third)) $((nchunks - 1))) &
chunks_pid=$!
kills="" last=$(received)
for k in 1 2 3; do
	# Once this receiver takes lines (omrelp reconnects within about a second), kill it.
	for _ in $(seq 100); do
		[ "$(received)" -gt "$last" ] && break
		sleep 0.1
	done
	sleep "${RSYSLOG_TEST_KILL_EVERY:-0.3}"
	last=$(received)
	[ "$last" -lt "$records" ] || fail "kill $k came after the last line arrived: not mid-stream"
	kills="$kills $last"
	kill -KILL "$recv_pid"
	wait "$recv_pid" 2>/dev/null || true
	recv_pid=""
	sleep 0.2
	start_receiver
done
wait "$chunks_pid" || fail "sending the last third failed"
sent=$(date +%s.%N)

# Wait (at most 60 s: omrelp's retry pause grows up to 30 s) until the receiver has
# written a line for every record (counted by distinct shmring_seq: some arrive twice).
distinct() {
	(cat "$tmp/received.jsonl" 2>/dev/null || true) | grep -o '^{"shmring_seq":[0-9]*' | sort -u | wc -l
}
for _ in $(seq 600); do
	[ "$(distinct)" -ge "$records" ] && break
	sleep 0.1
done
sleep 0.5 # a duplicate arriving late would show too
done_t=$(date +%s.%N)

# Every record 0..N-1 once, each received line byte-identical to the writer's line.
"$py" - "$tmp" "$records" "$kills" <<-'EOF' || fail "the received lines do not match the written ones"
import glob, json, os, sys
tmp, n, kills = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
# Oldest first: out.jsonl.K .. out.jsonl.1, then out.jsonl.
files = sorted(glob.glob(os.path.join(tmp, "out.jsonl*")),
               key=lambda f: -int(f.rsplit(".", 1)[1]) if f[-1].isdigit() else 0)
written, byseq = {}, {}
for path in files:
    for line in open(path, "rb").read().split(b"\n")[:-1]:
        rec = json.loads(line)
        i, q = rec["i"], rec["shmring_seq"]
        if not line.startswith(b'{"shmring_seq":%d,' % q):
            sys.exit(f"--seq: the key is not first: {line[:80]!r}")
        if i in written or q in byseq:
            sys.exit(f"the writer wrote record {i} (shmring_seq {q}) twice")
        written[i] = byseq[q] = line
if list(byseq) != sorted(byseq):
    sys.exit("shmring_seq does not increase in the writer's order")
if sorted(written) != list(range(n)):
    sys.exit(f"the writer wrote {len(written)} records of {n}")
# The bytes that a careless hop would rewrite are there to be carried.
for piece in (b'\\"hi\\"', b"\\\\ back\\tslash", "grüße € 😀".encode()):
    if piece not in written[0]:
        sys.exit(f"the writer's line lacks {piece!r}: {written[0]!r}")
raw_del = b"\x7f" in written[0]
try:
    data = open(os.path.join(tmp, "received.jsonl"), "rb").read()
except FileNotFoundError:
    data = b""
if data and not data.endswith(b"\n"):
    sys.exit("the received file ends without a newline")
# What a reader does: keep the first line of each shmring_seq, drop the later copies.
seen, bad, kept, extra = {}, [], [], 0
for no, line in enumerate(data.split(b"\n")[:-1], 1):
    try:
        q = json.loads(line)["shmring_seq"]
    except Exception as e:
        bad.append(f"line {no} is not a record ({e}): {line[:80]!r}")
        continue
    seen[q] = seen.get(q, 0) + 1
    if byseq.get(q) != line:
        bad.append(f"shmring_seq {q} changed on the way: {byseq.get(q)!r} -> {line!r}")
    if seen[q] == 1:
        kept.append(line)
    else:
        extra += 1
missing = [json.loads(byseq[q])["i"] for q in byseq if q not in seen]
dups = sorted(q for q, c in seen.items() if c > 1)
if missing:
    bad.append(f"{len(missing)} records missing, first {missing[:10]}")
if sorted(kept) != sorted(byseq.values()):
    bad.append("the received lines without their duplicates are not the writer's lines")
if bad:
    sys.exit("\n".join(bad[:20]))
def runs(qs): # 5,6,7,9 -> "5..7, 9"
    out = []
    for q in qs:
        if out and q == out[-1][1] + 1:
            out[-1][1] = q
        else:
            out.append([q, q])
    return ", ".join(f"{a}..{b}" if a != b else f"{a}" for a, b in out)
if dups:
    print(f"test_rsyslog: arrived more than once (shmring_seq): {runs(dups)}")
# Order: the lines (without their copies) that came after a line with a higher key.
top, late = -1, 0
for line in kept:
    q = json.loads(line)["shmring_seq"]
    late += q < top
    top = max(top, q)
print(f"test_rsyslog: {n} records in {len(files)} writer files, each received at least once and"
      f" byte-identical (escapes, UTF-8{', raw DEL' if raw_del else ''}); {len(dups)} records"
      f" arrived twice or more ({extra} extra lines), removed by shmring_seq; {late} out of"
      f" order; receiver"
      f" killed at {', '.join(kills)} lines received", end="")
EOF
awk -v a="$start" -v b="$sent" -v c="$done_t" -v q="$queued" 'BEGIN { printf \
	"; %d queued while the receiver was down, across a sender restart; sender restarted" \
	" again; all received %.1f s after the first was sent\n", q, c - a - 0.5 }'
ok=1
