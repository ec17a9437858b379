#!/bin/bash
# A one-node Slurm cluster on this machine, for the tests: no systemd, no root-owned
# system paths. Everything (munge key and socket, slurm.conf, spool, state, logs) lives
# in one state directory.
#
#   tests/slurm/cluster.sh start [STATE_DIR]   # starts munged, slurmctld -D, slurmd -D
#   tests/slurm/cluster.sh stop  [STATE_DIR]   # stops them (and any job still running)
#   tests/slurm/cluster.sh status [STATE_DIR]  # exit 0 when the node is up
#   eval "$(tests/slurm/cluster.sh env [STATE_DIR])"   # SLURM_CONF for sbatch, squeue, ...
#
# STATE_DIR defaults to $TFDIST_SLURM_DIR, else /tmp/tfdist-slurm. Needs Debian's
# slurm-wlm and munge (apt-get install -y --no-install-recommends slurm-wlm munge) and
# root (slurmd starts each job as its user). The node is this host (`hostname -s`) at
# 127.0.0.1, with TFDIST_SLURM_CPUS task slots (default 4, whatever the real core count:
# slurmd reports the configured CPUs, SlurmdParameters=config_overrides), one partition
# `debug`, no cgroups and no accounting database: finished jobs stay visible to
# `scontrol show job` for MinJobAge (10 min) and are written to STATE_DIR/jobcomp.txt.
# KillWait is 60 s (Slurm's default: 30 s), so that a busy test machine still lets a
# cancelled trainer save its checkpoint before SIGKILL.
# Ports: TFDIST_SLURM_CTLD_PORT (default 6817) and TFDIST_SLURM_D_PORT (default 6818).
set -euo pipefail

command=${1:-}
state=${2:-${TFDIST_SLURM_DIR:-/tmp/tfdist-slurm}}
cpus=${TFDIST_SLURM_CPUS:-4}
ctld_port=${TFDIST_SLURM_CTLD_PORT:-6817}
d_port=${TFDIST_SLURM_D_PORT:-6818}
node=$(hostname -s)

die() { echo "cluster.sh: $*" >&2; exit 1; }

need() {
    for tool in munged mungekey slurmctld slurmd sinfo scontrol; do
        command -v "$tool" >/dev/null 2>&1 || die "'$tool' is not installed; run: apt-get install -y --no-install-recommends slurm-wlm munge"
    done
    [ "$(id -u)" = 0 ] || die "needs root: slurmd starts each job as the user who submits it"
    getent hosts "$node" >/dev/null || die "host name '$node' does not resolve; add '127.0.0.1 $node' to /etc/hosts (the tasks' TF_CONFIG names the node)"
}

write_conf() {
    cat > "$state/slurm.conf" <<CONF
# Written by tests/slurm/cluster.sh: one node ($node), $cpus task slots.
ClusterName=tfdist-test
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$state/munge/munge.socket
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$state/jobcomp.txt
MinJobAge=600
KillWait=60
ReturnToService=2
SchedulerType=sched/backfill
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF
}

pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
    need
    mkdir -p "$state/munge" "$state/ctld" "$state/d"
    chmod 700 "$state" "$state/munge"
    export SLURM_CONF="$state/slurm.conf"
    if pid_alive "$state/slurmctld.pid" && pid_alive "$state/slurmd.pid"; then
        echo "cluster.sh: already running in $state" >&2
    else
        write_conf
        if ! pid_alive "$state/munge/munged.pid"; then
            [ -s "$state/munge/munge.key" ] || mungekey --create --keyfile="$state/munge/munge.key" >/dev/null
            chmod 400 "$state/munge/munge.key"
            munged --force --socket="$state/munge/munge.socket" \
                --key-file="$state/munge/munge.key" --pid-file="$state/munge/munged.pid" \
                --log-file="$state/munge/munged.log" --seed-file="$state/munge/munged.seed"
        fi
        pid_alive "$state/slurmctld.pid" || {
            setsid slurmctld -D -i -f "$SLURM_CONF" >>"$state/slurmctld.out" 2>&1 &
            echo $! > "$state/slurmctld.pid"; }
        pid_alive "$state/slurmd.pid" || {
            setsid slurmd -D -f "$SLURM_CONF" -N "$node" >>"$state/slurmd.out" 2>&1 &
            echo $! > "$state/slurmd.pid"; }
    fi
    for _ in $(seq 1 60); do
        if sinfo -h -n "$node" -o '%t' 2>/dev/null | grep -Eq '^(idle|mix|alloc)'; then
            echo "cluster.sh: node $node is up ($cpus task slots); SLURM_CONF=$SLURM_CONF" >&2
            return 0
        fi
        sleep 1
    done
    tail -n 20 "$state/slurmctld.log" "$state/slurmd.log" >&2 || true
    die "the node did not come up within 60 s (logs in $state)"
}

stop_pid() {
    local file=$1
    if pid_alive "$file"; then
        local pid; pid=$(cat "$file")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}

stop() {
    if [ -f "$state/slurm.conf" ] && pid_alive "$state/slurmctld.pid"; then
        export SLURM_CONF="$state/slurm.conf"
        scancel --user="$(id -un)" 2>/dev/null || true
        for _ in $(seq 1 70); do  # Jobs get KillWait (60 s) to stop before SIGKILL.
            [ -z "$(squeue -h 2>/dev/null)" ] && break
            sleep 1
        done
    fi
    stop_pid "$state/slurmd.pid"
    stop_pid "$state/slurmctld.pid"
    if pid_alive "$state/munge/munged.pid"; then
        munged --stop --socket="$state/munge/munge.socket" >/dev/null 2>&1 || stop_pid "$state/munge/munged.pid"
    fi
    echo "cluster.sh: stopped the cluster in $state" >&2
}

case "$command" in
    start) start ;;
    stop) stop ;;
    status) SLURM_CONF="$state/slurm.conf" sinfo -h -n "$node" -o '%t' 2>/dev/null | grep -Eq '^(idle|mix|alloc)' ;;
    env) echo "export SLURM_CONF=$state/slurm.conf" ;;
    *) die "usage: $0 start|stop|status|env [STATE_DIR]" ;;
esac
