# Sourced by slurm-up.sh and slurm-down.sh (bash): where the test cluster lives, and how we
# recognise the daemons we started.  Defines DIR, CONF, LOGS and the functions below.
# shellcheck shell=bash

DIR=${SLURM_UP_DIR:-/run/slurm-up}
case $DIR in
    /*) ;;
    *) printf 'slurm: error: SLURM_UP_DIR must be an absolute path, not %s\n' "$DIR" >&2; exit 1 ;;
esac
# shellcheck disable=SC2034  # used by the scripts that source this file
CONF=$DIR/slurm.conf LOGS=$DIR/log

# alive PID: the process exists and is not a zombie.  PID 1 in a container may reap killed
# daemons late, and a zombie still has a /proc entry.
alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ -n "$stat" ] && [ "${stat%% *}" != Z ]
}

# is_prog PID NAME: /proc/PID/exe is the program NAME (Debian installs slurmd as slurmd-wlm,
# reached through update-alternatives).  Guards against a recycled pid.
is_prog() {
    local exe
    exe=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1
    exe=${exe% (deleted)}
    case ${exe##*/} in "$2" | "$2-wlm") return 0 ;; esac
    return 1
}

# ours NAME: print the pid recorded in $DIR/NAME.pid if that process is alive and is NAME.
ours() {
    local pid
    pid=$(cat "$DIR/$1.pid" 2>/dev/null) || return 1
    case $pid in '' | *[!0-9]*) return 1 ;; esac
    alive "$pid" && is_prog "$pid" "$1" || return 1
    printf '%s\n' "$pid"
}

# take_lock: serialise slurm-up.sh and slurm-down.sh (fd 9 on $DIR/.lock, 60 s at most).  A
# script called by one that holds the lock gets SLURM_UP_LOCK_HELD=1 and must not wait for it.
take_lock() {
    [ -z "${SLURM_UP_LOCK_HELD:-}" ] || return 0
    exec 9>"$DIR/.lock"
    flock -w 60 9
}
