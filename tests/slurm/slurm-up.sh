#!/usr/bin/env bash
# Start a one-node SLURM test cluster on this machine, or check that the one we started is up.
#
# For root on a Debian-like machine without systemd (CI runners, containers), with slurm-wlm and
# munge installed.  Everything of ours lives in one directory, $SLURM_UP_DIR (default
# /run/slurm-up): slurm.conf, the controller's state, slurmd's spool, the logs, and the pid
# files that mark the daemons this script started.  /etc/slurm is never written, so a site's own
# configuration is never touched; clients find the cluster through SLURM_CONF (printed below).
#
#   tests/slurm/slurm-up.sh            # start (or check) the cluster, print where it is
#   eval "$(tests/slurm/slurm-up.sh)"; export SLURM_CONF; sbatch ...
#
# Idempotent:
#   - daemons started here earlier (pid file alive, /proc/PID/exe the right program) are kept;
#   - a munged that already answers is used and never recorded, so slurm-down.sh leaves it be;
#   - a slurmctld or slurmd we did not start makes us refuse (two would fight over the ports);
#   - a fresh start wipes the old controller state and spool first, so a node drained by an
#     earlier bad configuration, or jobs from a crashed run, cannot come back.
# If a start fails half way, what this run started is stopped again (logs are kept).
#
# stdout, only on success, one KEY=VALUE per line (shell-quoted, so `eval` works):
#   SLURM_CONF        the configuration file: export it before sbatch, squeue, scontrol
#   SLURM_UP_LOGS     the directory of the daemons' logs
#   SLURM_UP_STARTED  NAME:PID words for the daemons this run started (empty when all were
#                     already up): `slurm-down.sh $SLURM_UP_STARTED` stops exactly those
#
# Settings (environment):
#   SLURM_UP_DIR          where everything lives (default /run/slurm-up)
#   SLURM_UP_PROBE        1 (default): end with a probe batch job, which proves munge,
#                         slurmctld, slurmd and batch launch work, and takes the ~3 s wait for
#                         the controller's first batch scheduling pass so later jobs do not
#   SLURM_UP_CPUS         CPUs to advertise (default: what `slurmd -C` finds; more than that
#                         adds SlurmdParameters=config_overrides so the node is not drained)
#   SLURM_UP_MIN_JOB_AGE  seconds a finished job stays visible to `scontrol show job`
#                         (default 30: long enough for a poller to see every final state)
#
# Choices (measured on Debian 12 with Slurm 22.05): proctrack/linuxproc and task/none need no
# cgroups; 127.0.0.1 everywhere needs no DNS; DefMemPerCPU lets jobs share the node (without it
# a job takes all memory and array tasks run one at a time); batch_sched_delay=0 starts batch
# jobs at the next scheduler tick; no accounting, so `sacct` does not work.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=slurm-common.sh
. "$HERE/slurm-common.sh"
PROBE=${SLURM_UP_PROBE:-1}
MIN_JOB_AGE=${SLURM_UP_MIN_JOB_AGE:-30}
MUNGE_KEY=/etc/munge/munge.key
MUNGE_RUN=/run/munge
STARTED=()

log() { printf 'slurm-up: %s\n' "$*" >&2; }

die() {
    log "error: $*"
    local f
    for f in "$LOGS"/munged.log "$LOGS"/slurmctld.log "$LOGS"/slurmd.log "$LOGS"/daemons.out; do
        if [ -s "$f" ]; then
            printf -- '--- last lines of %s\n' "$f" >&2
            tail -n 15 "$f" >&2 || true
        fi
    done
    exit 1
}

# foreign NAME [PID]: pids of live NAME programs other than PID (a /proc scan with builtins).
foreign() {
    local comm_file comm pid
    for comm_file in /proc/[0-9]*/comm; do
        read -r comm 2>/dev/null <"$comm_file" || continue
        case $comm in "$1" | "$1-wlm") ;; *) continue ;; esac
        pid=${comm_file#/proc/} pid=${pid%/comm}
        if [ "$pid" != "${2:-}" ] && alive "$pid" && is_prog "$pid" "$1"; then
            printf '%s\n' "$pid"
        fi
    done
}

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.05 s until it succeeds.
wait_for() {
    local tries=$(($1 * 20)) what=$2
    shift 2
    while ! "$@" >/dev/null 2>&1; do
        tries=$((tries - 1))
        [ "$tries" -gt 0 ] || die "timed out waiting for $what"
        sleep 0.05
    done
}

# On any failure, stop what this run started: half a cluster is worse than none.
on_exit() {
    local status=$?
    if [ "$status" -ne 0 ] && [ "${#STARTED[@]}" -gt 0 ]; then
        log "stopping what this run started: ${STARTED[*]}"
        SLURM_UP_LOCK_HELD=1 "$HERE/slurm-down.sh" "${STARTED[@]}" || true
    fi
}
trap on_exit EXIT

# --- preconditions ------------------------------------------------------------------------

[ "$(id -u)" -eq 0 ] || die "must run as root (slurmd launches jobs as their users)"
for tool in munged munge unmunge slurmctld slurmd sbatch scontrol sinfo flock runuser; do
    command -v "$tool" >/dev/null || die "'$tool' not found; install: apt-get install -y --no-install-recommends slurm-wlm munge util-linux"
done
if ! id munge >/dev/null 2>&1 || ! id slurm >/dev/null 2>&1; then
    die "the munge or slurm user is missing; reinstall: apt-get install --reinstall munge slurmctld"
fi

install -d -m 0755 "$DIR" "$LOGS"
take_lock || die "another slurm-up.sh or slurm-down.sh has held $DIR/.lock for 60 s"
export SLURM_CONF=$CONF

# --- munge --------------------------------------------------------------------------------

munge_answers() { munge -n </dev/null | unmunge >/dev/null; }

start_munged() {
    local pid
    if pid=$(ours munged); then
        log "munged: running (pid $pid)"
        return
    fi
    if munge_answers 2>/dev/null; then
        log "munged: using the one already running (not ours: slurm-down.sh leaves it alone)"
        rm -f "$DIR/munged.pid"
        return
    fi
    if [ ! -s "$MUNGE_KEY" ]; then
        log "munged: creating $MUNGE_KEY"
        install -d -o munge -g munge -m 0700 "${MUNGE_KEY%/*}"
        mungekey --create --keyfile="$MUNGE_KEY" --force
    fi
    chown munge:munge "$MUNGE_KEY" # munged refuses a key other users can read
    chmod 0400 "$MUNGE_KEY"
    # Without systemd nothing creates munged's runtime directory (its unit's RuntimeDirectory).
    install -d -o munge -g munge -m 0755 "$MUNGE_RUN"
    [ -d /var/lib/munge ] || install -d -o munge -g munge -m 0700 /var/lib/munge
    install -o munge -g munge -m 0640 /dev/null "$LOGS/munged.log"
    rm -f "$MUNGE_RUN/munged.pid"
    runuser -u munge -- munged --log-file="$LOGS/munged.log" </dev/null >>"$LOGS/daemons.out" 2>&1 9>&- ||
        die "munged did not start"
    wait_for 10 "munged to answer" munge_answers
    pid=$(cat "$MUNGE_RUN/munged.pid" 2>/dev/null) || die "munged wrote no pid file"
    is_prog "$pid" munged || die "munged's pid file names pid $pid, which is not munged"
    printf '%s\n' "$pid" >"$DIR/munged.pid"
    STARTED+=("munged:$pid")
    log "munged: started (pid $pid)"
}

# --- slurm.conf ---------------------------------------------------------------------------

write_conf() {
    local node found cpus real_cpus mem overrides=''
    node=$(hostname -s)
    found=$(slurmd -C) || die "slurmd -C failed"
    real_cpus=$(printf '%s\n' "$found" | sed -n 's/.* CPUs=\([0-9]*\).*/\1/p')
    mem=$(printf '%s\n' "$found" | sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p')
    if [ -z "$real_cpus" ] || [ -z "$mem" ]; then
        die "cannot read CPUs and RealMemory from: $found"
    fi
    cpus=${SLURM_UP_CPUS:-$real_cpus}
    # Advertising more CPUs than found would drain the node, unless slurmd is told to trust us.
    [ "$cpus" -le "$real_cpus" ] || overrides=$'\nSlurmdParameters=config_overrides'
    # 95 % of what slurmd finds: configuring more than it reports would drain the node too.
    mem=$((mem * 95 / 100))
    cat >"$CONF.tmp" <<EOF
# Managed by tests/slurm/slurm-up.sh: a one-node test cluster. Not for production.
ClusterName=localcluster
SlurmctldHost=$node(127.0.0.1)
AuthType=auth/munge
CredType=cred/munge
SlurmUser=slurm
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups: works in containers and VMs whatever their cgroup layout.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
# No mail binary here: silences "Configured MailProg is invalid".
MailProg=/bin/true
SchedulerType=sched/backfill
# Start batch jobs at the next scheduler tick instead of after up to 3 s.
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
# Without a default a job with no --mem takes the whole node and nothing runs side by side.
DefMemPerCPU=$((mem / cpus))
MinJobAge=$MIN_JOB_AGE
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2$overrides
# Two pretend GPUs: jobs can ask for them (--gres, --gpus-per-node) and be given them, and
# scontrol shows what they got.  slurmd wants a device file per GPU: /dev/zero and /dev/null
# stand in (with task/none nothing restricts devices, so nothing is changed on them).
GresTypes=gpu

NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:tesla:2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    # slurmd and slurmctld read gres.conf from the directory of slurm.conf.
    printf 'NodeName=%s Name=gpu Type=tesla File=/dev/zero,/dev/null\n' "$node" >"$DIR/gres.conf"
    mv -f "$CONF.tmp" "$CONF"
}

# --- slurmctld and slurmd -----------------------------------------------------------------

# start_daemon NAME: start slurmctld or slurmd (they fork and write their pid files), record it.
start_daemon() {
    local pid
    rm -f "$DIR/$1.pid"
    # 9>&-: a daemon must not inherit (and so hold forever) our lock on $DIR/.lock.
    "$1" -f "$CONF" </dev/null >>"$LOGS/daemons.out" 2>&1 9>&- || die "$1 did not start"
    wait_for 10 "$1 to write $DIR/$1.pid" test -s "$DIR/$1.pid"
    pid=$(cat "$DIR/$1.pid")
    if ! alive "$pid" || ! is_prog "$pid" "$1"; then
        die "$1 (pid $pid) died right after starting"
    fi
    STARTED+=("$1:$pid")
    log "$1: started (pid $pid)"
}

node_idle() {
    case $(sinfo -h -o %t) in idle | mix | alloc) return 0 ;; esac
    return 1
}

start_slurm() {
    local ctld slurmd pid
    ctld=$(ours slurmctld) || ctld=''
    slurmd=$(ours slurmd) || slurmd=''
    for pid in $(foreign slurmctld "$ctld") $(foreign slurmd "$slurmd"); do
        die "a $(readlink "/proc/$pid/exe") (pid $pid) not started by this script is running; stop it first"
    done
    if [ -n "$ctld" ] && [ -n "$slurmd" ]; then
        log "slurmctld (pid $ctld) and slurmd (pid $slurmd): running"
        return
    fi
    # Half a cluster (one daemon died): stop our other half and start afresh.
    if [ -n "$ctld$slurmd" ]; then
        log "only one of slurmctld and slurmd is running; restarting both"
        SLURM_UP_LOCK_HELD=1 "$HERE/slurm-down.sh" ${ctld:+"slurmctld:$ctld"} ${slurmd:+"slurmd:$slurmd"}
    fi
    write_conf
    rm -rf "$DIR/state" "$DIR/spool"
    install -d -o slurm -g slurm -m 0700 "$DIR/state"
    install -d -m 0755 "$DIR/spool"
    install -o slurm -g slurm -m 0640 /dev/null "$LOGS/slurmctld.log"
    install -m 0640 /dev/null "$LOGS/slurmd.log"
    start_daemon slurmctld
    start_daemon slurmd
    wait_for 15 "the node to become idle (sinfo)" node_idle
}

# --- probe --------------------------------------------------------------------------------

# A trivial batch job, polled every 0.1 s (sbatch --wait would poll at 2, 10, 42 s).  Right
# after slurmctld starts this takes about 3 s: its first batch scheduling pass.
probe() {
    local id state='' tries=600
    id=$(sbatch --parsable --job-name=slurm-up-probe --chdir=/ --output=/dev/null \
        --wrap=true 2>&1) || die "sbatch of the probe job failed: $id"
    id=${id%%;*}
    while [ "$tries" -gt 0 ]; do
        state=$(scontrol show job -o "$id" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
        case $state in
            COMPLETED) return 0 ;;
            PENDING | CONFIGURING | RUNNING | COMPLETING | '') ;;
            *) die "probe job $id ended $state" ;;
        esac
        tries=$((tries - 1))
        sleep 0.1
    done
    die "probe job $id did not complete within 60 s (state: ${state:-unknown})"
}

start_munged
start_slurm
[ "$PROBE" = 0 ] || probe

printf 'SLURM_CONF=%q\n' "$CONF"
printf 'SLURM_UP_LOGS=%q\n' "$LOGS"
printf 'SLURM_UP_STARTED=%q\n' "${STARTED[*]:-}"
log "up: SLURM_CONF=$CONF, logs in $LOGS"
