#!/usr/bin/env bash
# test_systemd.sh - the systemd unit as `cmake --install` puts it: it names the installed
# writer, its sysusers.d entry is beside it and creates the user, `systemd-analyze verify` has nothing to say
# about it, and `systemd-analyze security --offline` rates it 2.0 or lower ("SAFE"/"OK").
# No running systemd is needed; 77 = skipped (no systemd-analyze, or it cannot run here).
#
#   test_systemd.sh BUILD_DIR CMAKE UNITDIR SYSUSERSDIR
set -euo pipefail

build=$1 cmake=$2 unitdir=$3 sysusersdir=$4
skip() {
	echo "skipped: $*"
	exit 77
}
fail() {
	echo "FAIL: $*" >&2
	exit 1
}
command -v systemd-analyze >/dev/null || skip "no systemd-analyze (package systemd)"
case $unitdir$sysusersdir in /*) skip "SHMRING_SYSTEMD_UNITDIR or SHMRING_SYSUSERSDIR is absolute: not under a test prefix" ;; esac
tmp=$(mktemp -d "${TMPDIR:-/tmp}/shmring-systemd.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# Can systemd-analyze verify anything here (it needs no manager, but a usable /proc)?
printf '[Service]\nType=oneshot\nExecStart=/bin/true\n' >"$tmp/probe.service"
probe=$(systemd-analyze verify "$tmp/probe.service" 2>&1) || skip "systemd-analyze verify cannot run here: $probe"

"$cmake" --install "$build" --prefix "$tmp/p" >"$tmp/install.log" || fail "cmake --install: $(cat "$tmp/install.log")"
unit="$tmp/p/$unitdir/shmring-writer@.service"
[ -f "$unit" ] || fail "$unitdir/shmring-writer@.service is not installed"
[ -f "$tmp/p/$sysusersdir/shmring.conf" ] || fail "$sysusersdir/shmring.conf is not installed"
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
case $exec_start in "$tmp/p/bin/shmring-writer "*) ;; *) fail "ExecStart is not the installed writer: $exec_start" ;; esac
grep -qx 'User=shmring' "$unit" || fail "the unit does not run as the user shmring"
grep -q '^u shmring ' "$tmp/p/$sysusersdir/shmring.conf" || fail "sysusers.d entry: $(cat "$tmp/p/$sysusersdir/shmring.conf")"
# The entry creates the user and its group (in a scratch root, not this host's /etc).
if command -v systemd-sysusers >/dev/null; then
	mkdir -p "$tmp/root/etc"
	systemd-sysusers --root="$tmp/root" "$tmp/p/$sysusersdir/shmring.conf" >"$tmp/sysusers.log" 2>&1 ||
		fail "systemd-sysusers: $(cat "$tmp/sysusers.log")"
	grep -q '^shmring:.*:/usr/sbin/nologin$' "$tmp/root/etc/passwd" || fail "no user shmring: $(cat "$tmp/root/etc/passwd")"
	grep -q '^shmring:' "$tmp/root/etc/group" || fail "no group shmring"
fi
# The template, instantiated; the man page of Documentation= from the prefix. Warnings
# (an unknown key, a bad value) leave verify's status 0: any output is a failure.
cp "$unit" "$tmp/shmring-writer@test.service"
out=$(MANPATH="$tmp/p/share/man:" systemd-analyze verify "$tmp/shmring-writer@test.service" 2>&1) ||
	fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify: $out"

if systemd-analyze security --help 2>&1 | grep -q -- '--offline'; then
	# --threshold counts tenths: 20 = an exposure of 2.0.
	out=$(cd "$tmp" && systemd-analyze security --offline=true --threshold=20 \
		"shmring-writer@test.service" 2>&1) || fail "systemd-analyze security: $(echo "$out" | tail -25)"
	echo "$out" | grep 'Overall exposure level'
else
	echo "note: this systemd-analyze has no security --offline (systemd < 250): exposure not rated"
fi
echo "ok: unit installed, verified"
