#!/usr/bin/env bash
# storm.sh - the kill and stop storms, several rounds, under two busy loops (as a loaded
# host runs them): producers SIGKILLed or SIGSTOPped at random points of their sends,
# records of 100-400 bytes spanning several 128-byte slots of a 1024-slot ring, -EAGAIN
# retried at once, writer --stall-timeout 1000. Every round checks the ring's counters
# against the producers' own and every line of the file (shmring-stress); then the
# deterministic kill-point and stall tests run under the same load.
#
# usage: tests/storm.sh BUILD_DIR [ROUNDS] [SECONDS_PER_STORM]
set -euo pipefail
build=${1:?usage: storm.sh BUILD_DIR [ROUNDS] [SECONDS]}
rounds=${2:-3}
secs=${3:-8}
export SHMRING_WRITER="$build/shmring-writer"
busy=()
cleanup() { for p in "${busy[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
for _ in 1 2; do
	( while :; do :; done ) &
	busy+=($!)
done
fail=0
for r in $(seq 1 "$rounds"); do
	for mode in kill stop chaos; do
		seed=$((RANDOM * 32768 + RANDOM))
		echo "== round $r: $mode storm, ${secs} s, seed $seed"
		if ! timeout $((secs + 120)) "$build/tools/shmring-stress" --mode "$mode" --spin \
			--producers 8 --records 60000 --capacity 1024 --slot-size 128 \
			--min-pad 100 --max-pad 400 --stall-timeout 1000 --chaos-ms $((secs * 1000)) --seed "$seed"; then
			echo "storm.sh: round $r $mode FAILED (seed $seed)"
			fail=1
		fi
	done
done
echo "== deterministic kill points and stalls, under the same load"
"$build/tests/test_identity" || fail=1
"$build/tests/test_stall" || fail=1
exit $fail
