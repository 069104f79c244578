#!/bin/sh
# test_completion: tools/completion/shmring.bash, sourced into bash, completes commands,
# each command's options and ring names (a scratch SHMRING_SHM_DIR) for a few command
# lines; every option it offers is one `shmring CMD --help` names. 77 = no bash.
# usage: test_completion.sh SOURCE_DIR CLI
command -v bash >/dev/null || { echo "skipped: no bash"; exit 77; }
src=$1 cli=$2
exec bash --norc --noprofile -s "$src" "$cli" <<'SH'
set -u
src=$1 cli=$2
source "$src/tools/completion/shmring.bash" || exit 1
fail=0
SHMRING_SHM_DIR=$(mktemp -d)
trap 'rm -rf "$SHMRING_SHM_DIR"' EXIT
touch "$SHMRING_SHM_DIR/shmring.audit-1" "$SHMRING_SHM_DIR/shmring.alpha" "$SHMRING_SHM_DIR/sem.shmring.alpha.f.1"

# complete LINE EXPECTED...: LINE's last word is the one completed ("" after a space).
complete_is() {
	local line=$1; shift
	read -ra COMP_WORDS <<<"$line"
	[[ $line == *" " ]] && COMP_WORDS+=("")
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMP_LINE=$line COMP_POINT=${#line}
	_shmring
	local got want
	got=$(printf '%s\n' "${COMPREPLY[@]}" | sort | xargs)
	want=$(printf '%s\n' "$@" | sort | xargs)
	if [ "$got" != "$want" ]; then
		echo "FAIL: '$line' completes to [$got], want [$want]"
		fail=1
	fi
}
complete_is "shmring " ls stat peek send flush rm gc metrics help
complete_is "shmring s" stat send
complete_is "shmring --v" --version
complete_is "shmring stat " alpha audit-1
complete_is "shmring stat a" alpha audit-1
complete_is "shmring stat al" alpha
complete_is "shmring stat alpha " 
complete_is "shmring stat alpha --" --json --watch --count --help
complete_is "shmring stat --count " 
complete_is "shmring rm -" --force --help
complete_is "shmring gc --" --dry-run --min-age --help
complete_is "shmring gc " 
complete_is "shmring metrics alpha " alpha audit-1
complete_is "shmring peek au" audit-1
complete_is "shmring help f" flush
complete_is "shmring ls --j" --json
complete_is "shmring nosuch " 

# Every option offered is one the command's --help names; every command is one shmring has.
for c in ls stat peek send flush rm gc metrics; do
	read -ra COMP_WORDS <<<"shmring $c -"; COMP_CWORD=2; _shmring
	help=$("$cli" "$c" --help)
	for o in "${COMPREPLY[@]}"; do
		grep -qE -- "(^|[ ,\[])$o([] ,=]|\$)" <<<"$help" || { echo "FAIL: $c offers $o, not in its --help"; fail=1; }
	done
	# the option lines of the help ("  -j, --json ...")
	for o in $(grep -E '^ +-' <<<"$help" | grep -oE -- '(^|[ ,[])--[a-z][a-z-]*' | sed -E 's/^[ ,[]//' | sort -u); do
		[[ " ${COMPREPLY[*]} " == *" $o "* ]] || { echo "FAIL: $c --help names $o, not completed"; fail=1; }
	done
done
for c in ls stat peek send flush rm gc metrics help; do
	"$cli" --help | grep -qE "^  $c( |\$)" || { echo "FAIL: completion offers $c, not in shmring --help"; fail=1; }
done
[ $fail -eq 0 ] && echo ok
exit $fail
SH
