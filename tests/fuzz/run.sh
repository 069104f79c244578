#!/usr/bin/env bash
# Build the libFuzzer targets with clang (ASan + UBSan, UBSan fatal) and run each for
# SECONDS (default 60) on a copy of its seed corpus. Exit non-zero on any finding.
#   tests/fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-60}
command -v clang >/dev/null || { echo "fuzz: clang not installed, skipped"; exit 77; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
flags=(-g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=undefined -Iinclude -Ilibshm -Iwriter -Itests)
clang "${flags[@]}" tests/fuzz/fuzz_mp2json.c libshm/mp2json.c libshm/fpfmt.c tests/ref_mp2json.c \
	-ljansson -lmsgpackc -lm -o "$out/fuzz_mp2json"
clang "${flags[@]}" tests/fuzz/fuzz_slots.c libshm/*.c \
	-lmsgpackc -lpthread -lrt -o "$out/fuzz_slots"
for t in mp2json slots; do
	cp -r "tests/fuzz/corpus/$t" "$out/corpus-$t"
	echo "fuzz_$t: ${secs}s"
	(cd "$out" && ./fuzz_$t -max_total_time="$secs" -print_final_stats=1 "corpus-$t" 2>&1 |
		grep -E "^(stat::number_of_executed_units|stat::new_units_added|==.*ERROR|SUMMARY|Done)" ) ||
		{ echo "fuzz_$t: FAILED"; exit 1; }
	# libFuzzer writes crash-*/leak-*/timeout-* files on a finding.
	if ls "$out"/crash-* "$out"/leak-* "$out"/timeout-* >/dev/null 2>&1; then
		echo "fuzz_$t: finding saved in $out"; exit 1
	fi
done
echo "fuzz: no findings"
