#!/usr/bin/env bash
# test_man: the man pages are complete and render cleanly: every option of
# `shmring-writer --help`, every command of `shmring --help` and every option of each
# `shmring CMD --help` is in its page; the writer's signals too; every public function of
# include/ has a section-3 page (or an alias); groff renders each page without a warning
# (that part skipped when groff is missing).
# usage: test_man.sh SOURCE_DIR WRITER CLI
set -uo pipefail
src=$1 writer=$2 cli=$3
man=$src/tools/man
fail=0
bad() { echo "FAIL: $*"; fail=1; }

# Page source with the escapes that matter removed: \- is -, font changes vanish.
plain() { sed -e 's/\\-/-/g' -e 's/\\f[BIRPV]//g' -e 's/\\f(..//g' -e 's/\\(dq/"/g' "$1"; }
# The options a --help text names: -x and --long, at a word's start.
options() { grep -oE '(^|[][ ,(|])--?[a-zA-Z][a-zA-Z0-9-]*' | sed -E 's/^[][ ,(|]//' | sort -u; }
has() { grep -qE -- "(^|[^a-zA-Z0-9-])$2([^a-zA-Z0-9-]|\$)" <<<"$1"; }

page=$(plain "$man/shmring-writer.1")
for o in $("$writer" --help | options); do
	has "$page" "$o" || bad "shmring-writer(1) lacks $o (in shmring-writer --help)"
done
for s in $("$writer" --help | grep -oE 'SIG[A-Z]+' | sort -u) SIGTERM SIGINT SIGHUP; do
	has "$page" "$s" || bad "shmring-writer(1) lacks the signal $s"
done

page=$(plain "$man/shmring.1")
for o in $("$cli" --help | options); do
	has "$page" "$o" || bad "shmring(1) lacks $o (in shmring --help)"
done
cmds=$("$cli" --help | sed -n '/^Commands:/,/^$/p' | grep -oE '^  [a-z]+' | sort -u)
[ -n "$cmds" ] || bad "no commands found in shmring --help"
for c in $cmds; do
	has "$page" "shmring $c" || bad "shmring(1) lacks the command $c"
	"$cli" "$c" --help >/dev/null || bad "shmring $c --help fails"
	[ "$c" = help ] && continue
	for o in $("$cli" "$c" --help | options); do
		has "$page" "$o" || bad "shmring(1) lacks $o (in shmring $c --help)"
	done
done

# Every public function has a section-3 page, whose NAME section names it.
for f in $(sed -nE 's/^[a-z].*[ *](shmring_[a-z0-9_]+)\(.*/\1/p' "$src"/include/shmring.h "$src"/include/shmring/*.h | sort -u); do
	p=$man/man3/$f.3
	if [ ! -f "$p" ]; then bad "no page man3/$f.3"; continue; fi
	t=$(sed -nE 's|^\.so (.*)|\1|p' "$p")
	[ -n "$t" ] && p=$man/$t
	[ -f "$p" ] || { bad "man3/$f.3: .so $t: no such page"; continue; }
	sed -n '/^\.SH NAME/,/^\.SH/p' "$p" | plain /dev/stdin | grep -qw -- "$f" || bad "$p: NAME does not list $f"
done

if command -v groff >/dev/null; then
	cd "$man" || exit 1
	for p in *.1 man3/*.3; do
		grep -q '^\.so ' "$p" && continue
		err=$(groff -man -Tutf8 -ww -z "$p" 2>&1)
		[ -z "$err" ] || bad "groff warns on $p: $err"
	done
else
	echo "groff missing: rendering not checked"
fi
[ $fail -eq 0 ] && echo ok
exit $fail
