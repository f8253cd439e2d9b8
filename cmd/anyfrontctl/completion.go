package main

import (
	"fmt"
	"io"
)

// bashCompletion completes commands, their fixed words, flags, and node
// names from the -fleet file on the line (read with a plain grep: the
// script must not need anything the host may lack).
const bashCompletion = `# bash completion for anyfrontctl (anyfrontctl completion bash)
_anyfrontctl() {
    local cur prev words cword
    _init_completion 2>/dev/null || {
        cur="${COMP_WORDS[COMP_CWORD]}"; prev="${COMP_WORDS[COMP_CWORD-1]}"
        words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD
    }
    local flags="-admin -token-file -cacert -insecure -json -timeout -fleet -node -version -h"
    local cmds="backends drain undrain up down weight node bgp reload cache rules blocks top stats status completion"
    case "$prev" in
        -token-file|-cacert|-fleet) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        -admin|-timeout) return ;;
        -node)
            local i f=""
            for ((i=1; i<${#words[@]}; i++)); do
                [[ ${words[i]} == -fleet ]] && f="${words[i+1]}"
            done
            [[ -n $f && -r $f ]] && COMPREPLY=($(compgen -W "$(sed -n 's/.*name: *\([^,} ]*\).*/\1/p' "$f" | tr -d "\"'")" -- "$cur"))
            return ;;
        node) COMPREPLY=($(compgen -W "status drain undrain" -- "$cur")); return ;;
        cache) COMPREPLY=($(compgen -W "purge" -- "$cur")); return ;;
        blocks) COMPREPLY=($(compgen -W "lift" -- "$cur")); return ;;
        completion) COMPREPLY=($(compgen -W "bash" -- "$cur")); return ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$flags" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$cmds" -- "$cur"))
    fi
}
complete -F _anyfrontctl anyfrontctl
`

// completion prints a shell completion script.
func completion(words []string, stdout, stderr io.Writer) int {
	if len(words) != 2 || words[1] != "bash" {
		fmt.Fprintln(stderr, "anyfrontctl: usage: anyfrontctl completion bash")
		return exitUsage
	}
	fmt.Fprint(stdout, bashCompletion)
	return exitOK
}
