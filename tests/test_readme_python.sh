#!/usr/bin/env bash
# test_readme_python: the README's Python sample (between the readme-python-sample
# markers) run as written, from a scratch folder whose bindings/ and build/ link to the
# source and build trees, the names readme-demo made unique; then its lines checked and
# no ring left behind. 77 = skipped.
# usage: test_readme_python.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1 bld=$2
if [ -n "${SHMRING_TEST_SKIP:-}" ]; then echo "skipped: $SHMRING_TEST_SKIP"; exit 77; fi
/usr/bin/python3 -c 'import msgpack' 2>/dev/null || { echo "skipped: no python3-msgpack"; exit 77; }
block=$(sed -n '/<!-- readme-python-sample begin -->/,/<!-- readme-python-sample end -->/p' "$src/README.md" |
	sed '1,2d;$d' | sed '$d')
[ -n "$block" ] || { echo "README.md: no readme-python-sample block"; exit 1; }
name="readme-demo-$$"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp" "/tmp/$name.jsonl" "/tmp/$name"; "$bld/tools/shmring" rm --force "$name" >/dev/null 2>&1 || true' EXIT
ln -s "$src/bindings" "$tmp/bindings"
ln -s "$bld" "$tmp/build"
out=$(cd "$tmp" && env -u PYTHONPATH -u SHMRING_LIB -u SHMRING_WRITER bash -euo pipefail -c "${block//readme-demo/$name}")
echo "$out"
want_ring='{"event":"compacted","tokens":240}'
want_sink='"turn_id":"t-42","page_id":"p-7","page_type":"tool_output","origin":{"kind":"tool_pair","tool_name":"read_file"},"original_tokens":1800,"compacted_tokens":240,"fidelity_level":"summary","invariant_version":1,"provider_name":"anthropic","violations":[]}'
mapfile -t lines < <(grep -v '^stopped writer pid [0-9]*$' <<<"$out") # shmring rm --force says so
[ "${#lines[@]}" -eq 3 ] || { echo "FAIL: want 3 lines of output"; exit 1; }
[ "${lines[0]}" = "0 1" ] || { echo "FAIL: the Python print: ${lines[0]}"; exit 1; }
[ "${lines[1]}" = "$want_ring" ] || { echo "FAIL: ring line ${lines[1]}"; exit 1; }
[[ "${lines[2]}" =~ ^\{\"ts\":\"[0-9T:.-]+Z\",(.*)$ ]] && [ "${BASH_REMATCH[1]}" = "$want_sink" ] ||
	{ echo "FAIL: audit line ${lines[2]}"; exit 1; }
# No ring of ours left: neither the named one nor the sink's (any new audit-* ring).
[ ! -e "/dev/shm/shmring.$name" ] || { echo "FAIL: ring $name left behind"; exit 1; }
# The sink's ring: audit-<FNV-1a 64 of the canonical path> (shmring_audit_ring_name).
sink_ring=$(/usr/bin/python3 -c '
import os, sys
h = 0xcbf29ce484222325
for b in os.fsencode(os.path.realpath(sys.argv[1])):
    h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
print("audit-%016x" % h)' "/tmp/$name/compaction.jsonl")
[ ! -e "/dev/shm/shmring.$sink_ring" ] || { echo "FAIL: the sink's ring $sink_ring left behind"; exit 1; }
echo ok
