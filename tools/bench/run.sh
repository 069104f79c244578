#!/usr/bin/env bash
# run.sh - build (if needed) and run shmring's benchmark, then write docs/bench/:
#   results.md   machine, command, every table (targets, ratios to each peer, all
#                configurations, writer batch sizes, micro-benchmarks, callgrind Ir per
#                record, where the writer's CPU goes)
#   results.csv  every row (all runs of every configuration, medians, micro-benchmarks)
#   plot.png     throughput and p99 against P (gnuplot; gnuplot-nox is installed if missing)
#   machine.md   the machine it came from
#   profile-writer.txt  perf's view of shmring-writer (when perf can sample)
#
#   tools/bench/run.sh            full run (about 5 minutes on 2 cores)
#   tools/bench/run.sh --quick    smoke run (about 30 s)
# Other arguments go to shmring-bench (see shmring-bench --help). BUILD_DIR (default build)
# and OUT_DIR (default docs/bench) may be set in the environment.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${BUILD_DIR:-build}
out=${OUT_DIR:-docs/bench}
quick=0
for a in "$@"; do [ "$a" = --quick ] && quick=1; done

# gnuplot draws the plot, valgrind counts instructions: Debian packages, installed if missing.
need=()
command -v gnuplot >/dev/null || need+=(gnuplot-nox)
command -v valgrind >/dev/null || need+=(valgrind)
if ((${#need[@]})); then
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	echo "run.sh: installing ${need[*]}" >&2
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

[ -f "$build/CMakeCache.txt" ] || cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" --target shmring-writer shmring-bench mp2json_bench >/dev/null
bench=$build/tools/shmring-bench
writer=$build/shmring-writer
[ -x "$bench" ] || { echo "run.sh: $bench was not built (is libjansson-dev installed?)" >&2; exit 1; }

mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# ---- the machine ---------------------------------------------------------------------
model=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
cpus=$(nproc)
kernel=$(uname -r)
when=$(date -u +%Y-%m-%dT%H:%MZ)
load0=$(cut -d' ' -f1-3 /proc/loadavg)
psi() { sed -n 's/^some avg10=\([0-9.]*\) avg60=\([0-9.]*\).*/\2%/p' /proc/pressure/cpu 2>/dev/null || echo "?"; }
psi0=$(psi)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit+changes"
sysval() { cat "$1" 2>/dev/null || echo "?"; }
perf_instr="no"
if command -v perf >/dev/null; then
	if perf stat -x, -e instructions true 2>&1 | grep -q "not supported"; then
		perf_instr="not supported (perf stat -e instructions true: <not supported>; virtual machine)"
	else
		perf_instr="yes"
	fi
fi

# ---- the writer's instructions per record (callgrind), before the benchmark so that the
# targets table shows them beside its CPU time ------------------------------------------
# The bench starts the writer through a wrapper that runs it under callgrind; blocking
# sends, so that the slow writer drops nothing. Ir per record = the writer's whole user
# space (system calls are not counted: write(2)'s copy is in the perf profile below).
wir_md="$tmp/wir.md"
: >"$wir_md"
writer_ir=""
if command -v valgrind >/dev/null; then
	printf '#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file="%s/cg.writer.%%p" "%s" "$@"\n' \
		"$tmp" "$(realpath "$writer")" >"$tmp/cgwriter"
	chmod +x "$tmp/cgwriter"
	wm=$((quick ? 20000 : 100000))
	"$bench" -P 1 -m "$wm" --peers shmring --modes transport --blocking yes --reps 1 --no-micro \
		--sweep none --sizes none --floats none --writer "$tmp/cgwriter" --md /dev/null \
		--csv "$tmp/wir.csv" >/dev/null 2>&1 || true
	cgf=$(ls "$tmp"/cg.writer.* 2>/dev/null | head -1)
	recs=$(awk -F, '$1=="e2e" {printf "%d", $11 + $29 * $4}' "$tmp/wir.csv" 2>/dev/null)
	if [ -n "$cgf" ] && [ -n "$recs" ] && [ "$recs" -gt 0 ]; then
		callgrind_annotate --inclusive=yes "$cgf" >"$tmp/cg.writer.annot" 2>/dev/null || true
		wirof() { awk -v f=":$1 " '$0 ~ f {gsub(",","",$1); print $1; exit}' "$tmp/cg.writer.annot"; }
		tot=$(wirof writer_run); conv=$(wirof shmring_msgpack_to_json); com=$(wirof commit)
		step=$(wirof shm_drain_step); rec=$(wirof on_record)
		writer_ir=$(awk -v a="${tot:-0}" -v r="$recs" 'BEGIN{printf "%.0f", a/r}')
		{
			echo "## shmring-writer's instructions per record (callgrind)"
			echo
			echo "The writer of one configuration (transport, blocking, P=1, M=$wm, plus the warm-up:"
			echo "$recs records) run under \`valgrind --tool=callgrind\`; user space only, so write(2)'s"
			echo "copy into the page cache is not in these counts (see the perf profile below)."
			echo
			echo "| part | Ir / record | share |"
			echo "|---|---:|---:|"
			awk -v t="${tot:-0}" -v c="${conv:-0}" -v m="${com:-0}" -v s="${step:-0}" -v o="${rec:-0}" -v r="$recs" 'BEGIN {
				walk = s - o; rest = t - c - m - walk
				printf "| reading the ring (shm_drain_step without the record callback) | %.0f | %.1f%% |\n", walk/r, 100*walk/t
				printf "| msgpack → JSON (shmring_msgpack_to_json) | %.0f | %.1f%% |\n", c/r, 100*c/t
				printf "| the line around it (convert(), ensure_space, the loop) | %.0f | %.1f%% |\n", rest/r, 100*rest/t
				printf "| commit: intent, free the slots, publish (write(2) itself: kernel) | %.0f | %.1f%% |\n", m/r, 100*m/t
				printf "| **the writer in all** | **%.0f** | 100%% |\n", t/r }'
			echo
		} >"$wir_md"
	fi
fi

# ---- how fast the CPUs are at the moment: one converter loop on each, before and after --
# The host shares its cores with other machines, and nothing in the guest shows it (steal
# time reads 0, the load average is ours): mp2json_bench's typical record, best of five
# 20 000-record loops, has read ~100 ns and ~190 ns on the same CPU minutes apart. Each run
# states the probe so that its figures can be read against the host's speed of the moment.
probe() {
	local c r=""
	for c in $(seq 0 $((cpus - 1))); do
		r="$r${r:+, }CPU $c $(taskset -c "$c" "$build/tools/mp2json_bench" 20000 200 2>/dev/null |
			awk '/^fast/ { printf "%.0f ns", $2; exit }')"
	done
	echo "$r"
}
probe0=$(probe)

# ---- the benchmark -------------------------------------------------------------------
cmd="tools/bench/run.sh${*:+ $*}"
echo "run.sh: $bench $*  (tables in $out/results.md)" >&2
t0=$(date +%s)
status=0
"$bench" "$@" ${writer_ir:+--writer-ir "$writer_ir"} --md "$tmp/tables.md" --csv "$out/results.csv" || status=$?
t1=$(date +%s)
load1=$(cut -d' ' -f1-3 /proc/loadavg)
psi1=$(psi)
probe1=$(probe)

# ---- ring size: the same P=1 transport runs on a ring that fits in L2 -----------------
cap_md="$tmp/cap.md"
"$bench" -P 1 --peers shmring --modes transport --reps "$((quick ? 1 : 3))" -m "$((quick ? 20000 : 100000))" \
	--no-micro --sweep none --sizes none --floats none --capacity 4096 --md /dev/null --csv "$tmp/cap.csv" >/dev/null 2>&1 || true
{
	echo "## Ring size (shmring, transport, P=1, median of runs)"
	echo
	echo "The runs above use 65536 slots × 512 B (32 MiB: more than L2 and the TLB's reach);"
	echo "the same runs on 4096 slots × 512 B (2 MiB), right after them:"
	echo
	echo "| ring | send | M rec/s | p50 | p99 | p99.9 | drops |"
	echo "|---|---|---:|---:|---:|---:|---:|"
	awk -F, '$1=="e2e" && $5=="shmring" && $2=="transport" && $4==1 && $7==1048576 {
		printf "| 32 MiB | %s | %.2f | %.0f | %.0f | %.0f | %.1f%% |\n", $3, $12/1e6, $13, $14, $15, 100*$10/$9 }' "$out/results.csv"
	awk -F, '$1=="e2e" {
		printf "| 2 MiB | %s | %.2f | %.0f | %.0f | %.0f | %.1f%% |\n", $3, $12/1e6, $13, $14, $15, 100*$10/$9 }' "$tmp/cap.csv" 2>/dev/null
	echo
} >"$cap_md"

# ---- paced producers: latency when the consumer keeps up (the usual case for audit logs) -
pace_md="$tmp/pace.md"
{
	echo "## Paced sends: one producer sending at a fixed rate (transport, non-blocking)"
	echo
	echo "Above, producers send as fast as they can, so the ring is rarely empty and the writer"
	echo "never sleeps. An audit source usually sends far below the writer's speed: here one"
	echo "producer sends one record every interval (spinning in between) and every send is timed."
	echo
	echo "| interval | peer | p50 | p99 | p99.9 | drops |"
	echo "|---|---|---:|---:|---:|---:|"
} >"$pace_md"
for pace in 5000 50000 1000000; do
	m=$((pace >= 1000000 ? 2000 : 20000))
	"$bench" -P 1 -m "$m" --pace "$pace" --peers shmring,pipe,posix-mq,unix-dgram,zmq --modes transport \
		--blocking no --reps 1 --no-micro --sweep none --sizes none --floats none --md /dev/null --csv "$tmp/pace.csv" >/dev/null 2>&1 || true
	awk -F, -v pace="$pace" '$1=="e2e" {
		printf "| %g µs | %s | %.0f | %.0f | %.0f | %.1f%% |\n", pace/1000, $5, $13, $14, $15, 100*$10/$9 }' \
		"$tmp/pace.csv" >>"$pace_md"
done
echo >>"$pace_md"
# What a paced send costs in system calls (tracepoints count even where hardware counters do not).
if command -v perf >/dev/null; then
	perf stat -x, -o "$tmp/pace.perf" -e syscalls:sys_enter_futex,syscalls:sys_enter_write,context-switches \
		-- "$bench" -P 1 -m 20000 --pace 50000 --warm 0 --peers shmring --modes transport --blocking no \
		--reps 1 --no-micro --sweep none --sizes none --floats none --md /dev/null --csv /dev/null >/dev/null 2>&1 || true
	awk -F, '/sys_enter_futex/ {f=$1} /sys_enter_write/ {w=$1} /context-switches/ {c=$1}
		END { if (f != "") printf "shmring at one record per 50 µs (`perf stat`, all processes, 20000 records): " \
			"%.2f futex calls, %.2f write(2) calls and %.2f context switches per record.\n\n", f/20000, w/20000, c/20000 }' \
		"$tmp/pace.perf" >>"$pace_md"
fi

# ---- instructions per record (callgrind) ---------------------------------------------
n=$((quick ? 5000 : 20000))
ir_md="$tmp/ir.md"
{
	echo "## Instructions per record (callgrind, fixed iteration counts)"
	echo
	echo "\`perf stat -e instructions\`: $perf_instr. Instruction counts therefore come from"
	echo "\`valgrind --tool=callgrind\` (user space only: system calls are not counted)."
	echo
	echo "| function | what | Ir / record | native ns / record |"
	echo "|---|---|---:|---:|"
} >"$ir_md"
if command -v valgrind >/dev/null; then
	# shmring-bench --ir: the benchmark's own records, inclusive cost per function.
	valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.ir" "$bench" --ir "$n" >"$tmp/ir.txt" 2>"$tmp/cg.ir.log" || true
	callgrind_annotate --inclusive=yes "$tmp/cg.ir" >"$tmp/cg.ir.annot" 2>/dev/null || true
	calls() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" "$tmp/ir.txt"; }
	irof() { awk -v f=":$1 " '$0 ~ f {gsub(",","",$1); print $1; exit}' "$tmp/cg.ir.annot"; }
	perbyte() { awk -v a="$(irof "$1")" -v b="$(calls "$1")" -v j="$(calls "$2")" 'BEGIN{if (b*j > 0) printf "%.1f", a/b/j}'; }
	micro_ns() { awk -F, -v a="$1" -v b="$2" '$1=="micro" && $2=="\""a"\"" && $3=="\""b"\"" {print $13}' "$out/results.csv"; }
	for f in shmring_send shmring_audit_pack convert_generic convert_floats; do
		ir=$(irof "$f"); c=$(calls "$f")
		case $f in
		shmring_send) what="pre-encoded record into a ring with room (no writer)"; ns=$(micro_ns shmring_send "pre-encoded record: mean of a loop (best of 10)") ;;
		shmring_audit_pack) what="build + encode one compaction record (ts = now)"; ns=$(micro_ns "build + encode" "shmring_audit_pack with ts = now") ;;
		convert_generic) what="shmring_msgpack_to_json, the benchmark's records ($(calls avg_record) B → $(calls avg_json) B JSON: $(perbyte convert_generic avg_json) Ir per JSON byte)"; ns=$(micro_ns convert shmring_msgpack_to_json) ;;
		*) what="shmring_msgpack_to_json, float-heavy records of 16 doubles ($(calls float_record) B → $(calls float_json) B JSON: $(perbyte convert_floats float_json) Ir per JSON byte)"; ns=$(micro_ns convert "float-heavy records") ;;
		esac
		[ -n "$ir" ] && [ -n "$c" ] && echo "| $f | $what, $c calls | $(awk -v a="$ir" -v b="$c" 'BEGIN{printf "%.0f", a/b}') | ${ns:-} |" >>"$ir_md"
	done
	wcb=$(irof fixbuf_write)
	[ -n "$wcb" ] && echo "| (fixbuf_write) | the packer's write callback inside shmring_audit_pack (one call: the whole record), per record | $(awk -v a="$wcb" -v b="$(calls shmring_audit_pack)" 'BEGIN{printf "%.0f", a/b}') | |" >>"$ir_md"
else
	echo "| (valgrind missing) | | | |" >>"$ir_md"
fi
echo >>"$ir_md"

# ---- where the writer's time goes (perf, software clock sampling) ----------------------
prof_md="$tmp/prof.md"
: >"$prof_md"
if command -v perf >/dev/null && perf record -q -o "$tmp/probe.data" -e cpu-clock true >/dev/null 2>&1; then
	m=$((quick ? 300000 : 1500000))
	perf record -q -o "$tmp/perf.data" -e cpu-clock -F 4999 -g -- "$bench" -P 1 -m "$m" \
		--peers shmring --modes transport --blocking yes --reps 1 --no-micro --sweep none --sizes none \
		--floats none --md /dev/null --csv "$tmp/prof.csv" >/dev/null 2>&1 || true
	perf report -i "$tmp/perf.data" --comm shmring-writer --children --sort sym --stdio \
		--percentage relative -g none 2>/dev/null | grep '%' >"$out/profile-writer.txt" || true
	share() { awk -v s="$1" '$0 ~ "] "s"$" {print $1; exit}' "$out/profile-writer.txt"; }
	# The converter runs in a static instance (convert_roomy, or convert_checked for small
	# buffers) that the call chains do not always tie to shmring_msgpack_to_json: the
	# largest of their children-included shares.
	share_max() { awk -v s="$1" '$0 ~ "] ("s")(\\.constprop\\.[0-9]+)?$" { v = $1 + 0; if (v > m) m = v }
		END { if (m != "") printf "%.2f%%", m }' "$out/profile-writer.txt"; }
	{
		echo "## Where shmring-writer's CPU time goes (perf, cpu-clock sampling)"
		echo
		echo "One configuration (transport, blocking, P=1, M=$m) under \`perf record -e cpu-clock -g\`;"
		echo "shares of the writer's samples, children included (full list: profile-writer.txt)."
		echo
		echo "| part | share |"
		echo "|---|---:|"
		echo "| write(2) in all (ksys_write) | $(share ksys_write) |"
		echo "| … copying the lines into the page cache (copy_folio_from_iter_atomic) | $(share copy_folio_from_iter_atomic) |"
		echo "| … allocating page-cache folios (folio_alloc_noprof) | $(share folio_alloc_noprof) |"
		echo "| … of which direct memory compaction (__alloc_pages_direct_compact) | $(share __alloc_pages_direct_compact) |"
		echo "| … ext4 block reservation (ext4_da_get_block_prep) | $(share ext4_da_get_block_prep) |"
		echo "| msgpack → JSON (shmring_msgpack_to_json, run as convert_roomy) | $(share_max 'shmring_msgpack_to_json|convert_roomy|convert_checked') |"
		echo "| … reserving blocks ahead, and the ring's creation (__x64_sys_fallocate) | $(share __x64_sys_fallocate) |"
		echo "| reading the ring (shm_drain_step) | $(share shm_drain_step) |"
		echo "| freeing slots (shm_drain_free) | $(share shm_drain_free) |"
		echo
	} >"$prof_md"
fi

# ---- the report ----------------------------------------------------------------------
cat >"$out/machine.md" <<EOF
# The machine of the last benchmark run

| | |
|---|---|
| date | $when |
| CPU | $model, $cpus logical CPUs ($(lscpu | sed -n 's/^Thread(s) per core: *//p') thread(s) per core) |
| hypervisor | $(lscpu | sed -n 's/^Hypervisor vendor: *//p' | head -1) |
| kernel | $kernel ($(uname -v)) |
| distribution | Debian $(sysval /etc/debian_version) |
| compiler | $(cc --version | head -1) |
| memory | $(free -m | awk '/^Mem/ {print $2 " MiB, " $7 " MiB available at the start"}') |
| output file system | $(findmnt -n -o FSTYPE,SOURCE -T "${TMPDIR:-/var/tmp}" 2>/dev/null | tr -s ' ') |
| load average (1, 5, 15 min) | $load0 before, $load1 after (other users' jobs share the machine) |
| CPU pressure (PSI some, avg60) | $psi0 before, $psi1 after: the share of time some runnable task waited for a CPU |
| CPU speed probe (\`mp2json_bench\`'s typical record, best of 5, per CPU) | $probe0 before, $probe1 after (~100 ns when the host's cores were ours, ~190 ns when shared) |
| limits | pipe-max-size $(sysval /proc/sys/fs/pipe-max-size), fs.mqueue.msg_max $(sysval /proc/sys/fs/mqueue/msg_max), net.unix.max_dgram_qlen $(sysval /proc/sys/net/unix/max_dgram_qlen), vm.dirty_ratio $(sysval /proc/sys/vm/dirty_ratio), THP $(sed 's/.*\[\(.*\)\].*/\1/' /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null) |
| perf | hardware counters: $perf_instr |
| commit | $commit |
EOF

{
	echo "# shmring benchmark results"
	echo
	echo "Produced by \`$cmd\` on $when in $((t1 - t0)) s (commit $commit). Machine: $model, $cpus CPUs,"
	echo "Linux $kernel; load average $load0 before and $load1 after — a shared machine, so the"
	echo "figures carry other users' load ([machine.md](machine.md)); the CPU speed probe (one converter loop"
	echo "per CPU: ~100 ns a record when the host's cores were ours, ~190 ns when shared) read $probe0"
	echo "before and $probe1 after. Raw rows: [results.csv](results.csv);"
	echo "plot: [plot.png](plot.png); analysis of what bounds each target: [README.md](README.md)."
	echo
	echo "![throughput and p99 against P](plot.png)"
	echo
	cat "$tmp/tables.md"
	cat "$cap_md"
	cat "$pace_md"
	cat "$ir_md"
	cat "$wir_md"
	cat "$prof_md"
} >"$out/results.md"

gnuplot -e "csv='$out/results.csv'; png='$out/plot.png'; machine='$model, $cpus CPUs, Linux $kernel, $when'" \
	tools/bench/plot.gnuplot 2> >(grep -v 'no valid points' >&2)
echo "run.sh: wrote $out/results.md, $out/results.csv, $out/plot.png, $out/machine.md ($((t1 - t0)) s)" >&2
exit $status
