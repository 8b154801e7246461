#!/usr/bin/env bash
# Stop the one-node SLURM started by start.sh PREFIX: cancel its jobs, then stop each daemon by
# the pid in its own pid file (never by name), waiting for it to exit.
set -uo pipefail

prefix=$(realpath -m "${1:?usage: stop.sh PREFIX}")
export SLURM_CONF="$prefix/etc/slurm.conf"
[ -f "$SLURM_CONF" ] && scancel --full --quiet --partition=debug 2>/dev/null

stop_pid_file() {
    local file=$1 pid
    [ -f "$file" ] || return 0
    pid=$(cat "$file")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
    rm -f "$file"
}

stop_pid_file "$prefix/run/slurmd.pid"
stop_pid_file "$prefix/run/slurmctld.pid"
stop_pid_file "$prefix/run/munged.pid"
echo "slurm: stopped"
