# bash completion for shmring(1): commands, each command's options, and ring names
# (from /dev/shm/shmring.*). Installed as share/bash-completion/completions/shmring;
# needs only bash (no bash-completion helpers).

# Ring names on this host. SHMRING_SHM_DIR is for tests.
_shmring_rings()
{
	local f
	for f in "${SHMRING_SHM_DIR:-/dev/shm}"/shmring.*; do
		[ -e "$f" ] && printf '%s\n' "${f##*/shmring.}"
	done
}

_shmring()
{
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
	local commands="ls stat peek send flush rm gc metrics help"
	local cmd="" i nargs=0
	for ((i = 1; i < COMP_CWORD; i++)); do
		case ${COMP_WORDS[i]} in
		-*) ;;
		*) if [ -z "$cmd" ]; then cmd=${COMP_WORDS[i]}; else nargs=$((nargs + 1)); fi ;;
		esac
	done
	COMPREPLY=()
	if [ -z "$cmd" ]; then
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "--help --version" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "$commands" -- "$cur"))
		fi
		return
	fi
	local opts="--help" rings=0
	case $cmd in
	ls) opts="--json --help" ;;
	stat)
		opts="--json --watch --count --help"
		case $prev in --count | -c | --watch | -w) return ;; esac
		rings=$((nargs == 0)) ;;
	peek)
		opts="--count --help"
		case $prev in --count | -n) return ;; esac
		rings=$((nargs == 0)) ;;
	send | flush) rings=$((nargs == 0)) ;;
	rm) opts="--force --help"; rings=$((nargs == 0)) ;;
	gc)
		opts="--dry-run --min-age --help"
		case $prev in --min-age | -a) return ;; esac ;;
	metrics) rings=1 ;;
	help)
		((nargs == 0)) && COMPREPLY=($(compgen -W "$commands" -- "$cur"))
		return ;;
	*) return ;;
	esac
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$opts" -- "$cur"))
	elif ((rings)); then
		COMPREPLY=($(compgen -W "$(_shmring_rings)" -- "$cur"))
	fi
}
complete -F _shmring shmring
