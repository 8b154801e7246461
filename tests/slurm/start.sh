#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine, entirely under one folder, for the workflow test.
#
#   bash tests/slurm/start.sh PREFIX      then   export SLURM_CONF=PREFIX/etc/slurm.conf
#                                                PATH=PREFIX/bin:$PATH
#   bash tests/slurm/stop.sh PREFIX       stops every daemon this script started
#
# Needs root and the Debian packages munge slurm-wlm slurm-client slurmctld slurmd (SLURM 22.05).
# munged, slurmctld and slurmd run with their own key, sockets, ports, state and pid files under
# PREFIX; nothing in /etc is read or changed. No cgroups and no accounting database: jobs are
# tracked by process (so memory limits are not enforced) and their state is read with squeue.
# Two fake GPUs (empty files) let rules with resources gpu=1 get an allocation, not a device.
set -euo pipefail

prefix=$(realpath -m "${1:?usage: start.sh PREFIX}")
ctld_port=${RDD_SLURMCTLD_PORT:-16817}
slurmd_port=${RDD_SLURMD_PORT:-16818}
cpus=$(nproc)
# A node that advertises more memory than it has is drained; stay below what slurmd measures.
memory_mb=$(( $(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p') * 9 / 10 ))

mkdir -p "$prefix"/{bin,etc,state,spool,log,run,munge,gpu}
chmod 0700 "$prefix/munge"
: > "$prefix/gpu/gpu0"
: > "$prefix/gpu/gpu1"
: > "$prefix/etc/plugstack.conf"
[ -f "$prefix/munge/munge.key" ] || { head -c 1024 /dev/urandom > "$prefix/munge/munge.key"; chmod 0400 "$prefix/munge/munge.key"; }

cat > "$prefix/etc/slurm.conf" <<CONF
ClusterName=rddtest
SlurmctldHost=localhost
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$prefix/munge/munge.socket
StateSaveLocation=$prefix/state
SlurmdSpoolDir=$prefix/spool
SlurmctldPidFile=$prefix/run/slurmctld.pid
SlurmdPidFile=$prefix/run/slurmd.pid
SlurmctldLogFile=$prefix/log/slurmctld.log
SlurmdLogFile=$prefix/log/slurmd.log
PlugStackConfig=$prefix/etc/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
# squeue forgets finished jobs after MinJobAge seconds; the status poll must see them first.
MinJobAge=300
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory_mb Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
echo "NodeName=localhost Name=gpu File=$prefix/gpu/gpu[0-1]" > "$prefix/etc/gres.conf"
export SLURM_CONF="$prefix/etc/slurm.conf"

# Snakemake's slurm-jobstep plugin (0.6.1) removes SLURM_CONF from the environment of the srun it
# starts inside each job; a real cluster's config sits at the default path, this one's does not.
cat > "$prefix/bin/srun" <<SHIM
#!/bin/sh
SLURM_CONF="$SLURM_CONF" exec $(command -v srun) "\$@"
SHIM
chmod +x "$prefix/bin/srun"

# munged refuses to run as root without --force; its socket is ours alone.
munged --force --socket="$prefix/munge/munge.socket" --key-file="$prefix/munge/munge.key" \
    --pid-file="$prefix/run/munged.pid" --log-file="$prefix/log/munged.log" \
    --seed-file="$prefix/munge/munged.seed"
slurmctld -c -f "$SLURM_CONF"
slurmd -N localhost -f "$SLURM_CONF"

for _ in $(seq 1 60); do
    state=$(sinfo -h -n localhost -o %T 2>/dev/null || true)
    if [ "$state" = "idle" ]; then
        echo "slurm: up (SLURM_CONF=$SLURM_CONF; put $prefix/bin first on PATH)"
        exit 0
    fi
    sleep 0.5
done
echo "slurm: node not idle after 30 s (state: ${state:-none}); logs in $prefix/log" >&2
exit 1
