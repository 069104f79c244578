#!/usr/bin/env bash
# Install shmring's build and test dependencies from Debian packages, then configure and
# build into ./build. Safe to run again. Extra arguments go to the cmake configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(cmake gcc make pkg-config libmsgpack-dev libcmocka-dev libjansson-dev python3-msgpack
	# bindings/rust, built offline from Debian's crate sources (tests/test_rust.sh)
	cargo librust-serde-dev librust-serde-derive-dev librust-serde-json-dev librust-rmp-dev librust-rmp-serde-dev
	librust-tokio-dev librust-libc-dev librust-log-dev librust-rand-dev librust-tempfile-dev
	librust-pkg-config-dev)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build build -j"$(nproc)"
