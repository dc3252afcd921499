#!/usr/bin/env bash
# Stop the SLURM test cluster daemons that slurm-up.sh started, and nothing else.
#
#   tests/slurm/slurm-down.sh                  # every daemon recorded in $SLURM_UP_DIR
#   tests/slurm/slurm-down.sh slurmd:123 ...   # exactly these (slurm-up.sh's SLURM_UP_STARTED)
#
# A process is signalled only if it is alive and /proc/PID/exe is that daemon's program, so a
# recycled pid or a munged we merely used is never touched.  Before slurmctld goes, the jobs it
# still knows are cancelled, so no job outlives the cluster.  Order: slurmd, slurmctld, munged;
# SIGTERM, then SIGKILL after 10 s.  A pid file is removed when it names the process stopped:
# a stale slurmctld pid file is what makes `apt-get purge slurmctld` fail.
# Settings: SLURM_UP_DIR (default /run/slurm-up), as for slurm-up.sh.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=slurm-common.sh
. "$HERE/slurm-common.sh"

log() { printf 'slurm-down: %s\n' "$*" >&2; }

[ "$(id -u)" -eq 0 ] || { log "error: must run as root"; exit 1; }
if [ -d "$DIR" ]; then
    take_lock || { log "error: $DIR/.lock is held by another slurm-up.sh or slurm-down.sh"; exit 1; }
fi

# Which daemons: NAME -> PID, from the arguments or from the pid files.
declare -A target=()
if [ "$#" -gt 0 ]; then
    for word in "$@"; do
        name=${word%%:*} pid=${word#*:}
        case $name:$pid in
            munged:* | slurmctld:* | slurmd:*) ;;
            *) log "error: expected NAME:PID with NAME munged, slurmctld or slurmd, not '$word'"; exit 2 ;;
        esac
        case $pid in '' | *[!0-9]*) log "error: bad pid in '$word'"; exit 2 ;; esac
        target[$name]=$pid
    done
else
    for name in slurmd slurmctld munged; do
        if pid=$(ours "$name"); then target[$name]=$pid; fi
    done
fi

# cancel_jobs: cancel every job slurmctld knows and wait (5 s at most) until none is left.
cancel_jobs() {
    local ids tries=50
    ids=$(SLURM_CONF=$CONF squeue -h -o %A 2>/dev/null) || return 0
    [ -n "$ids" ] || return 0
    log "cancelling jobs: $(printf '%s ' "$ids" | tr '\n' ' ')"
    # shellcheck disable=SC2086  # ids are numbers, one per word
    SLURM_CONF=$CONF scancel $ids 2>/dev/null || true
    while [ -n "$(SLURM_CONF=$CONF squeue -h -o %A 2>/dev/null)" ] && [ "$tries" -gt 0 ]; do
        tries=$((tries - 1))
        sleep 0.1
    done
}

# stop NAME PID: SIGTERM, wait, SIGKILL; then drop pid files naming PID.
stop() {
    local name=$1 pid=$2 tries=200 file
    if ! alive "$pid"; then
        log "$name (pid $pid): not running"
    elif ! is_prog "$pid" "$name"; then
        log "$name: pid $pid is now $(readlink "/proc/$pid/exe" 2>/dev/null || echo 'another program'); left alone"
        return 0
    else
        kill -TERM "$pid" 2>/dev/null || true
        while alive "$pid" && [ "$tries" -gt 0 ]; do
            tries=$((tries - 1))
            sleep 0.05
        done
        if alive "$pid"; then
            log "$name (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        log "$name (pid $pid): stopped"
    fi
    for file in "$DIR/$name.pid" /run/munge/munged.pid; do
        if [ "$(cat "$file" 2>/dev/null)" = "$pid" ]; then rm -f "$file"; fi
    done
}

if [ -n "${target[slurmctld]:-}" ] && alive "${target[slurmctld]}"; then cancel_jobs; fi
for name in slurmd slurmctld munged; do
    if [ -n "${target[$name]:-}" ]; then stop "$name" "${target[$name]}"; fi
done
