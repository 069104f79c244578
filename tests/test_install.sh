#!/usr/bin/env bash
# test_install.sh - install into a temporary prefix, build tests/install_consumer/ against
# it with pkg-config and with CMake, move the prefix elsewhere (relocatability), build
# again from the moved prefix and run both consumers against the installed writer.
#
#   test_install.sh BUILD_DIR SOURCE_DIR CMAKE VERSION [SANITIZERS]
set -euo pipefail

build=$1 src=$2 cmake=$3 version=$4 sanitize=${5:-}
# An instrumented library needs instrumented consumers (the runtime must come first).
cflags="-Wall -Wextra -Werror"
[ -z "$sanitize" ] || cflags="$cflags -fsanitize=$sanitize"
consumer_src="$src/tests/install_consumer"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/shmring-install.XXXXXX")
ring="install-test-$$-$RANDOM"
writer_pid=""

cleanup() {
	if [ -n "$writer_pid" ]; then
		kill "$writer_pid" 2>/dev/null || true
		wait "$writer_pid" 2>/dev/null || true
	fi
	rm -f "/dev/shm/shmring.$ring" /dev/shm/sem.shmring."$ring".f.* 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

"$cmake" --install "$build" --prefix "$tmp/a" >"$tmp/install.log" || fail "cmake --install: $(cat "$tmp/install.log")"

# What is installed, and what is not.
for f in lib/libshmring.so lib/libshmring.so.0 "lib/libshmring.so.$version" lib/libshmring.a \
	include/shmring.h include/shmring/json.h include/shmring/reserve.h include/shmring/audit.h \
	lib/pkgconfig/shmring.pc lib/cmake/shmring/shmringConfig.cmake \
	lib/cmake/shmring/shmringConfigVersion.cmake lib/cmake/shmring/shmringTargets.cmake \
	bin/shmring-writer bin/shmring share/man/man1/shmring.1 share/man/man1/shmring-writer.1; do
	[ -e "$tmp/a/$f" ] || fail "$f is not installed"
done
# Only the two programs: no demo, benchmark or test program.
bins=$(cd "$tmp/a/bin" && echo *)
[ "$bins" = "shmring shmring-writer" ] || fail "bin/ holds $bins, want shmring shmring-writer"
soname=$(objdump -p "$tmp/a/lib/libshmring.so" | awk '$1 == "SONAME" {print $2}')
[ "$soname" = libshmring.so.0 ] || fail "soname is $soname, not libshmring.so.0"
# Only the public API is exported.
foreign=$(nm -D --defined-only "$tmp/a/lib/libshmring.so" | awk '$2 ~ /^[TDBRVW]$/ && $3 !~ /^shmring_/ {print $3}')
[ -z "$foreign" ] || fail "libshmring.so exports symbols outside shmring_*: $foreign"
# Nothing installed for other projects records where it was built or installed.
if grep -rlF -e "$build" -e "$src" -e "$tmp" "$tmp/a/lib/pkgconfig" "$tmp/a/lib/cmake"; then
	fail "absolute build, source or install paths in the installed package files"
fi
# No path of this build in the installed libraries and writer (a library that knew the
# build tree would start a developer's writer), not even in their debug information.
# A sanitized build is exempt: the sanitizers' own metadata names the source files (gcc
# 12's ASan does not apply -ffile-prefix-map to it), and such a build is never shipped.
checked="lib/libshmring.so lib/libshmring.a bin/shmring-writer bin/shmring"
[ -z "$sanitize" ] || checked=""
for f in $checked; do
	if strings -a "$tmp/a/$f" | grep -F -e "$build" -e "$src"; then
		fail "$f holds a build or source path (above)"
	fi
done
[ "$("$tmp/a/bin/shmring" --version)" = "shmring $version" ] || fail "shmring --version"

# Build the consumer from prefix $1 into directory $2, with pkg-config and with CMake.
build_consumer() {
	local prefix=$1 out=$2
	mkdir -p "$out"
	export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
	[ "$(pkg-config --modversion shmring)" = "$version" ] || fail "pkg-config --modversion"
	[ "$(realpath "$(pkg-config --variable=libdir shmring)")" = "$(realpath "$prefix/lib")" ] ||
		fail "pkg-config libdir is not under $prefix"
	local static_libs
	static_libs=$(pkg-config --static --libs shmring)
	case " $static_libs " in *" -lrt "*) ;; *) fail "Libs.private misses -lrt: $static_libs" ;; esac
	# Public headers include <msgpack.h>: msgpack is in Requires, so its -I and -l come
	# with plain --cflags and --libs too.
	pkg-config --print-requires shmring | grep -qw msgpack || fail "Requires misses msgpack"
	case " $(pkg-config --libs shmring) " in *" -lmsgpackc"*) ;; *) fail "--libs misses msgpack" ;; esac
	# shellcheck disable=SC2046,SC2086
	gcc $cflags -o "$out/consumer-pc" "$consumer_src/consumer.c" \
		$(pkg-config --cflags --libs shmring) || fail "pkg-config build from $prefix"
	unset PKG_CONFIG_PATH
	"$cmake" -S "$consumer_src" -B "$out/cmake" -DCMAKE_PREFIX_PATH="$prefix" \
		-DCMAKE_C_FLAGS="$cflags" >"$out/cmake.log" 2>&1 ||
		fail "CMake configure from $prefix: $(cat "$out/cmake.log")"
	"$cmake" --build "$out/cmake" >>"$out/cmake.log" 2>&1 || fail "CMake build from $prefix: $(cat "$out/cmake.log")"
	# The imported target resolved to the library of this prefix.
	grep -rqF "$prefix/lib/libshmring.so" "$out/cmake" || fail "CMake consumer does not link $prefix/lib"
}

build_consumer "$tmp/a" "$tmp/build-a"

# Relocate: nothing may still point at the first prefix.
mv "$tmp/a" "$tmp/b"
build_consumer "$tmp/b" "$tmp/build-b"

# Run both consumers against a writer started from the moved bin/.
"$tmp/b/bin/shmring-writer" --ring "$ring" --out "$tmp/out.jsonl" 2>"$tmp/writer.log" &
writer_pid=$!
for _ in $(seq 200); do
	case $("$tmp/b/bin/shmring" stat "$ring" --json 2>/dev/null) in *'"writer_alive":true'*) break ;; esac
	sleep 0.05
done
case $("$tmp/b/bin/shmring" stat "$ring" --json) in *'"writer_alive":true'*) ;; *) fail "the installed writer did not start" ;; esac

export LD_LIBRARY_PATH="$tmp/b/lib"
case $(ldd "$tmp/build-b/consumer-pc") in *"$tmp/b/lib/libshmring.so.0"*) ;; *) fail "consumer-pc does not load the moved library: $(ldd "$tmp/build-b/consumer-pc")" ;; esac
"$tmp/build-b/consumer-pc" "$ring" pkg-config >"$tmp/run.log" || fail "consumer-pc: $(cat "$tmp/run.log")"
"$tmp/build-b/cmake/consumer" "$ring" cmake >>"$tmp/run.log" || fail "CMake consumer: $(cat "$tmp/run.log")"
unset LD_LIBRARY_PATH
"$tmp/build-b/cmake/consumer_static" "$ring" static >>"$tmp/run.log" || fail "static consumer: $(cat "$tmp/run.log")"
case $(ldd "$tmp/build-b/cmake/consumer_static") in *libshmring*) fail "consumer_static loads libshmring.so" ;; esac

expected=$(printf '{"consumer":"%s","version":"%s"}\n' pkg-config "$version" cmake "$version" static "$version")
[ "$(cat "$tmp/out.jsonl")" = "$expected" ] || fail "output file: $(cat "$tmp/out.jsonl")"

kill "$writer_pid"
wait "$writer_pid" || fail "writer exit status $?"
writer_pid=""
"$tmp/b/bin/shmring" rm "$ring" || fail "shmring rm"
echo "ok: installed, built with pkg-config and CMake, relocated, ran"
