#!/usr/bin/env bash
# test_python_install: `pip install` of bindings/python offline (no index, no build
# isolation: Debian's python3-pip, python3-setuptools, python3-wheel) into a --target
# directory, then the installed package imported from elsewhere and used. 77 = skipped.
# usage: test_python_install.sh SOURCE_DIR LIBSHMRING
set -euo pipefail
src=$1 lib=$2
py=/usr/bin/python3
if [ -n "${SHMRING_TEST_SKIP:-}" ]; then echo "skipped: $SHMRING_TEST_SKIP"; exit 77; fi
for m in pip setuptools wheel; do
	"$py" -c "import $m" 2>/dev/null || { echo "skipped: no $m module for $py (python3-$m)"; exit 77; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# A copy: building in place would leave build/ and *.egg-info in the source tree.
cp -r "$src/bindings/python" "$tmp/src"
env -u PYTHONPATH -u LD_PRELOAD PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
	"$py" -m pip install -q --no-build-isolation --no-index --target "$tmp/site" "$tmp/src"
test -f "$tmp/site/shmring/__init__.py" -a -f "$tmp/site/shmring/py.typed"
cd "$tmp"
PYTHONPATH="$tmp/site" SHMRING_LIB="$lib" "$py" - "$tmp/site" <<'PY'
import os, sys
import shmring
assert os.path.dirname(shmring.__file__) == os.path.join(sys.argv[1], "shmring"), shmring.__file__
name = "test-pyinst-%d" % os.getpid()
with shmring.Ring(name, capacity=64, slot_size=64) as r:
    r.send(b"\x81\xa1k\x01")
    assert r.stats()["sent"] == 1
shmring.unlink(name)
print("installed shmring", shmring.__version__, "works")
PY
