#!/usr/bin/env bash
# test_abi: libshmring.so exports exactly the symbols libshm/shmring.map lists, each under
# its version node, each declared in a public header; nothing internal (shm_*) leaks,
# the static library defines those names only, and it carries no test hook.
#   test_abi.sh SHARED_LIB STATIC_LIB SOURCE_DIR
set -euo pipefail
so=$1 ar=$2 src=$3
command -v nm >/dev/null || { echo "test_abi: nm not installed: skipped"; exit 77; }
listed=$(sed -n 's/^[[:space:]]*\(shmring_[a-z_0-9]*\);$/\1/p' "$src/libshm/shmring.map" | sort)
exported=$(nm -D --defined-only "$so" | awk '$3 ~ /@@/ { sub(/@@.*/, "", $3); print $3 }' | sort)
fail=0
if [ "$listed" != "$exported" ]; then
	echo "test_abi: exported symbols differ from libshm/shmring.map:"
	diff <(echo "$listed") <(echo "$exported") || true
	fail=1
fi
for f in $listed; do
	grep -qE "[ *]$f\(" "$src"/include/shmring.h "$src"/include/shmring/*.h ||
		{ echo "test_abi: $f is exported but declared in no public header"; fail=1; }
done
if nm -D --defined-only "$so" | awk '{print $3}' | grep -q '^shm_'; then
	echo "test_abi: internal shm_* symbols exported"; fail=1
fi
# The static library defines the same names and nothing else (ld -r + objcopy
# --localize-hidden): a program linking it cannot reach or collide with shm_* internals.
static_defs=$(nm -g --defined-only "$ar" | awk 'NF == 3 { print $3 }' | sort -u)
if [ "$static_defs" != "$exported" ]; then
	echo "test_abi: libshmring.a defines other global symbols than libshmring.so exports:"
	diff <(echo "$exported") <(echo "$static_defs") || true
	fail=1
fi
if nm "$ar" 2>/dev/null | grep -q 'shm_test_hook'; then
	echo "test_abi: the installed static library carries the test hook"; fail=1
fi
[ "$fail" -eq 0 ] && echo "test_abi: $(echo "$listed" | wc -l) symbols, as listed, each declared"
exit $fail
