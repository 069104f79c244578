#!/bin/bash
# ab.sh - two builds of shmring through the same benchmark configuration, alternated, and
# their medians compared. The host shares its CPUs with other machines and switches
# between a fast and a slow state without the guest seeing it (docs/bench/README.md, "The
# host's two speeds"), so one run of each proves nothing: this alternates A and B for N
# rounds, reads a CPU speed probe before each round, and reports the medians over all
# rounds and over the rounds the probe found fast.
#
#   tools/bench/ab.sh [-n ROUNDS] [--pin] BUILD_A BUILD_B [shmring-bench args...]
#
# BUILD_x is a build directory: its tools/shmring-bench sends (the producers are the
# library built there) and its shmring-writer writes. To compare with another commit:
#   git worktree add /tmp/old <commit> && cmake -S /tmp/old -B /tmp/old/build \
#       -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build /tmp/old/build -j2
#   tools/bench/ab.sh /tmp/old/build build
# The bench arguments default to one configuration, -P 1 -m 1000000 --modes transport
# --blocking no --reps 3; given, they replace it (--peers shmring and the options that
# switch off the sweeps are always added). --pin runs the producers on CPU 0 and the
# writer on CPU 1.
set -euo pipefail

rounds=10 pin=0
while [ $# -gt 0 ]; do
	case $1 in
	-n) rounds=$2; shift 2 ;;
	--pin) pin=1; shift ;;
	*) break ;;
	esac
done
[ $# -ge 2 ] || { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
A=$1 B=$2
shift 2
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(-P 1 -m 1000000 --modes transport --blocking no --reps 3)
for d in "$A" "$B"; do
	if [ ! -x "$d/tools/shmring-bench" ] || [ ! -x "$d/shmring-writer" ]; then
		echo "ab.sh: $d has no tools/shmring-bench or shmring-writer (build it first)" >&2
		exit 1
	fi
done
probe_bin=$B/tools/mp2json_bench
[ -x "$probe_bin" ] || probe_bin=$A/tools/mp2json_bench

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rows=$tmp/rows.txt
: >"$rows"
for i in $(seq "$rounds"); do
	# mp2json_bench's typical record, best of five loops: ~100 ns fast, ~190 ns shared.
	probe=$("$probe_bin" 20000 200 2>/dev/null | awk '/^fast/ { print $2; exit }')
	for ab in A B; do
		if [ $ab = A ]; then d=$A; else d=$B; fi
		writer=$d/shmring-writer
		run=("$d/tools/shmring-bench")
		if [ "$pin" = 1 ]; then
			printf '#!/bin/sh\nexec taskset -c 1 "%s" "$@"\n' "$writer" >"$tmp/writer"
			chmod +x "$tmp/writer"
			writer=$tmp/writer
			run=(taskset -c 0 "${run[@]}")
		fi
		"${run[@]}" "${args[@]}" --peers shmring --no-micro --sweep none --sizes none --floats none \
			--writer "$writer" --md /dev/null --csv "$tmp/run.csv" >/dev/null 2>&1 ||
			echo "ab.sh: a run of $d failed (round $i)" >&2
		# One row per run: which build, the probe, then the figures by column name.
		awk -F, -v who="$ab" -v probe="$probe" '
			NR == 1 { for (k = 1; k <= NF; k++) col[$k] = k; next }
			$1 == "run" { print who, probe, $col["rec_per_s"], $col["cpu_prod_ns_per_rec"],
				      $col["cpu_cons_ns_per_rec"], $col["p99_ns"] }' "$tmp/run.csv" >>"$rows"
	done
done

python3 - "$rows" "$A" "$B" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
def show(label, keep):
    print(label)
    for who, path in (("A", sys.argv[2]), ("B", sys.argv[3])):
        v = [r for r in rows if r[0] == who and keep(float(r[1] or 0))]
        if not v:
            print(f"  {who} ({path}): no runs")
            continue
        def q(k, scale=1.0):
            x = sorted(float(r[k]) / scale for r in v)
            return f"{statistics.median(x):.2f} [{x[len(x) // 4]:.2f}..{x[3 * len(x) // 4]:.2f}]"
        print(f"  {who} ({path}): {len(v)} runs; M rec/s {q(2, 1e6)}; producers ns/rec {q(3)}; "
              f"writer ns/rec {q(4)}; send p99 ns {q(5)}")
print("medians [quartiles] per build")
show("all rounds:", lambda p: True)
show("rounds whose probe read < 150 ns (the host's fast state):", lambda p: 0 < p < 150)
EOF
