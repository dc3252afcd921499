# >>> condatainer header >>>
# Re-runs this script inside its condatainer container (written by `condatainer header`).
if [ -z "${IN_CONDATAINER:-}" ] && [ ! -d /.singularity.d ]; then
    # Which file is this, and was it sourced?  bash: BASH_SOURCE; zsh: %x in a sourced file;
    # plain sh cannot tell, so $0 is only trusted if that file holds this header.
    __cnt_self=$0 __cnt_sourced='' __cnt_ok='' __cnt_err='' __cnt_rc=1
    if [ -n "${BASH_VERSION:-}" ]; then
        # shellcheck disable=SC3028  # BASH_SOURCE is read under bash only
        if [ "${BASH_SOURCE:-}" != "$0" ]; then __cnt_self=${BASH_SOURCE:-} __cnt_sourced=1; fi
    elif [ -n "${ZSH_VERSION:-}" ]; then
        # ${(%):-%x} is zsh syntax that dash cannot even parse: hence the constant eval.
        case ${ZSH_EVAL_CONTEXT:-} in
            *:file*) eval '__cnt_self=${(%):-%x}' && __cnt_sourced=1 ;;
        esac
    fi
    if [ -n "$__cnt_self" ] && [ -f "$__cnt_self" ] && [ -r "$__cnt_self" ]; then
        while IFS= read -r __cnt_line; do
            case $__cnt_line in '# >>> condatainer header >>>'*) __cnt_ok=1; break ;; esac
        done < "$__cnt_self"
    fi
    # CNT_REEXEC_DEPTH is raised by `condatainer run --reexec`; 2 means we are looping.
    case ${CNT_REEXEC_DEPTH:-0} in
        '' | *[!0-9]*) ;;
        *) if [ "${CNT_REEXEC_DEPTH:-0}" -ge 2 ] 2>/dev/null; then
               __cnt_err="condatainer: re-exec loop: started ${CNT_REEXEC_DEPTH:-0} times and still not inside a container; stopping"
           fi ;;
    esac
    if [ -n "$__cnt_err" ]; then
        :
    elif ! command -v condatainer >/dev/null 2>&1; then
        __cnt_err="condatainer: not found on PATH; this script needs it to re-run itself inside its container" __cnt_rc=127
    elif [ -z "$__cnt_ok" ]; then
        __cnt_err="condatainer: cannot tell which file this script is (sourced by plain sh, or read from stdin); run it as a file, or source it from bash or zsh"
    elif [ -z "$__cnt_sourced" ]; then
        # CNT_SCRIPT (the original path under SLURM) and everything else pass through exec.
        exec condatainer run --reexec "$__cnt_self" "$@"
    else
        __cnt_rc=0
        condatainer run --reexec "$__cnt_self" "$@" || __cnt_rc=$?
    fi
    if [ -n "$__cnt_err" ]; then printf '%s\n' "$__cnt_err" >&2; fi
    unset __cnt_self __cnt_sourced __cnt_ok __cnt_err __cnt_line
    # Leave this file: `return` when sourced; in a script that fails, and `exit` runs.
    eval "unset __cnt_rc; return $__cnt_rc 2>/dev/null || exit $__cnt_rc"
fi
# <<< condatainer header <<<
