#!/usr/bin/env bash
# test_rust.sh: the Rust crate's tests (bindings/rust: serde_json oracle, audit sink through a
# real ring and writer, Rust+C+Python producers, doctests), built offline with cargo against
# this build tree's libshmring. 77 = skipped (no cargo, or Debian's crate sources missing).
# usage: test_rust.sh SOURCE_DIR BUILD_DIR WRITER CLI
set -euo pipefail
src=$1 build=$2 writer=$3 cli=$4

if [ -n "${SHMRING_TEST_SKIP:-}" ]; then
	echo "SKIP: $SHMRING_TEST_SKIP"
	exit 77
fi
# Debian's cargo first (tools/setup-debian.sh installs it), else whichever is on PATH.
cargo=""
for c in /usr/bin/cargo "$(command -v cargo || true)" "$HOME/.cargo/bin/cargo"; do
	if [ -n "$c" ] && [ -x "$c" ]; then cargo=$c; break; fi
done
if [ -z "$cargo" ]; then
	echo "SKIP: no cargo (apt-get install cargo, or tools/setup-debian.sh)"
	exit 77
fi
for crate in serde serde_derive serde_json rmp rmp-serde tokio libc log rand tempfile pkg-config; do
	if ! compgen -G "/usr/share/cargo/registry/$crate-[0-9]*" >/dev/null; then
		echo "SKIP: /usr/share/cargo/registry has no $crate (apt-get install librust-$crate-dev)"
		exit 77
	fi
done

export SHMRING_LIB_DIR=$build                 # build.rs links this libshmring.so
export LD_LIBRARY_PATH=$build${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export SHMRING_WRITER=$writer SHMRING_WRITER_IDLE_EXIT=2
export SHMRING_CLI_PATH=$cli SHMRING_LIB=$build/libshmring.so SHMRING_PYTHONPATH=$src/bindings/python
export CARGO_TARGET_DIR=$build/rust-target
cd "$src/bindings/rust"
# Cargo.lock is not kept (a newer cargo writes a format Debian's refuses): make it afresh.
rm -f Cargo.lock
echo "$("$cargo" --version) in $CARGO_TARGET_DIR"
rc=0
"$cargo" test --offline || rc=$?
rm -f Cargo.lock
exit $rc
