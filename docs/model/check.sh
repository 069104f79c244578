#!/bin/sh
# check.sh - model-check shmring's ring protocol (shmring.pml) with spin: each
# configuration for safety (assertions, invalid end states) and liveness (LTL "live",
# weak fairness). One line per run; exits 1 if any run finds an error or does not finish
# its search, 77 (skipped) if spin or a C compiler is missing. pan is built in a temporary
# directory, kept (and named) only when a run fails, so that its trail can be replayed.
#
# usage: docs/model/check.sh [PATTERN]    runs only the configurations whose name matches
# env:   SHMRING_MODEL_DEFS  extra spin -D flags for every run, e.g. -DW1_OLD to check the old step()
set -u

here=$(cd "$(dirname "$0")" && pwd)
model="$here/shmring.pml"
pattern=${1:-}
defs=${SHMRING_MODEL_DEFS:-}

command -v spin >/dev/null 2>&1 || { echo "check.sh: spin not found: skipped"; exit 77; }
cc=${CC:-gcc}
command -v "$cc" >/dev/null 2>&1 || cc=cc
command -v "$cc" >/dev/null 2>&1 || { echo "check.sh: no C compiler: skipped"; exit 77; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/shmring-model.XXXXXX") || exit 1
failed=0
trap 'if [ "$failed" -eq 0 ]; then rm -rf "$tmp"; fi' EXIT
trap 'exit 1' INT TERM

# pan: exhaustive search (no bitstate); COLLAPSE only compresses the stored states.
# MEMLIM stops a run cleanly (reported as incomplete) instead of exhausting the machine.
pan_cc="-O2 -w -DCOLLAPSE -DMEMLIM=8192"
safety_cc="$pan_cc -DSAFETY -DNOCLAIM"
safety_run="-m1000000 -w26"
live_cc="$pan_cc -DNFAIR=3"
live_run="-a -f -N live -m1000000 -w26"

# name  mode  spin flags (CAP ring slots, NMAX record slots, NREC/NREC1 records of
# producer 0/1, KILLS crashes, STALLS stall timeouts of live owners, QMAX entries)
configs='
ring2-n1        safety   -DCAP=2 -DNMAX=1 -DNREC=2 -DNREC1=2 -DKILL_ANYWHERE
ring2-n1-stall2 safety   -DCAP=2 -DNMAX=1 -DNREC=2 -DNREC1=2 -DKILLS=2 -DSTALLS=2 -DQMAX=1
ring4-n1        safety   -DCAP=4 -DNMAX=1 -DNREC=2 -DNREC1=2
ring4-n12       safety   -DCAP=4 -DNMAX=2 -DNREC=2 -DNREC1=1
ring2-n1        liveness -DCAP=2 -DNMAX=1 -DNREC=2 -DNREC1=1
ring2-n1-stall2 liveness -DCAP=2 -DNMAX=1 -DNREC=2 -DNREC1=1 -DKILLS=2 -DSTALLS=2 -DQMAX=1
ring4-n1        liveness -DCAP=4 -DNMAX=1 -DNREC=2 -DNREC1=1
ring4-n12       liveness -DCAP=4 -DNMAX=2 -DNREC=1 -DNREC1=1
'

run() { # name mode flags...
	name=$1 mode=$2
	shift 2
	dir="$tmp/$name.$mode"
	mkdir -p "$dir" && cp "$model" "$dir/" || return 1
	if [ "$mode" = safety ]; then ccf=$safety_cc runf=$safety_run; else ccf=$live_cc runf=$live_run; fi
	# shellcheck disable=SC2086 # flags are word lists on purpose
	if ! (cd "$dir" && spin $defs "$@" -a shmring.pml >spin.log 2>&1); then
		printf '%-16s %-9s FAIL  spin -a failed: %s\n' "$name" "$mode" "$dir/spin.log"
		return 1
	fi
	# shellcheck disable=SC2086
	if ! (cd "$dir" && $cc $ccf -o pan pan.c >cc.log 2>&1); then
		printf '%-16s %-9s FAIL  pan did not build: %s\n' "$name" "$mode" "$dir/cc.log"
		return 1
	fi
	# shellcheck disable=SC2086
	(cd "$dir" && ./pan $runf >pan.log 2>&1)
	log="$dir/pan.log"
	errors=$(sed -n 's/.*errors: \([0-9][0-9]*\).*/\1/p' "$log" | head -n 1)
	stored=$(awk '/states, stored/ { print $1; exit }' "$log")
	secs=$(sed -n 's/^pan: elapsed time \([0-9.e+]*\) seconds.*/\1/p' "$log" | head -n 1)
	line=$(printf '%-16s %-9s states=%s time=%ss errors=%s' "$name" "$mode" \
		"${stored:-?}" "${secs:-?}" "${errors:-?}")
	if [ "${errors:-x}" != 0 ] || grep -q -e 'max search depth too small' -e 'MEMLIM' \
		-e 'out of memory' "$log"; then
		echo "$line  FAIL"
		grep -m 3 -e '^pan:[0-9]*:' -e 'max search depth' -e 'MEMLIM' -e 'out of memory' "$log" |
			sed 's/^/    /'
		if [ -f "$dir/shmring.pml.trail" ]; then
			echo "    replay: cd $dir && spin -t -p $defs $* shmring.pml"
		fi
		return 1
	fi
	echo "$line  ok"
	return 0
}

echo "spin model of the shmring protocol: $model${defs:+ ($defs)}"
echo "$configs" | while read -r name mode flags; do
	[ -n "$name" ] || continue
	case "$name.$mode" in *"$pattern"*) ;; *) continue ;; esac
	# shellcheck disable=SC2086
	run "$name" "$mode" $flags || echo "$name.$mode" >>"$tmp/failed"
done

if [ -s "$tmp/failed" ]; then
	failed=1
	echo "check.sh: $(wc -l <"$tmp/failed") run(s) failed; their files are kept in $tmp"
	exit 1
fi
echo "check.sh: all runs passed"
exit 0
