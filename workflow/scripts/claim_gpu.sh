# Sourced by every job's shell (the prefix in workflow/rules/common.smk). `rdd_claim_gpu GPUS` gives
# a job that asks for GPUS > 0 GPUs of its own when Snakemake runs it on a local multi-GPU
# machine: Snakemake's `--resources gpu=N` bounds how many GPUs are busy, but it does not
# say which ones. The job takes the first free per-GPU lock (flock, held on a file descriptor until
# the job's processes exit) and sets CUDA_VISIBLE_DEVICES to the GPUs it holds. Where
# CUDA_VISIBLE_DEVICES is already set (SLURM's --gpus, or the user), or no nvidia-smi is found,
# it changes nothing. Locks live in $RDD_GPU_LOCK_DIR (default /tmp/rdd-gpu-locks-$UID).
rdd_claim_gpu() {
    local want=$1 count dir i fd fds claimed
    [ "$want" -gt 0 ] || return 0
    [ -z "${CUDA_VISIBLE_DEVICES:-}" ] || return 0
    command -v nvidia-smi >/dev/null || return 0
    count=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
    [ "$count" -ge "$want" ] || { echo "claim_gpu: $want GPU(s) asked for, $count on this machine" >&2; return 1; }
    dir=${RDD_GPU_LOCK_DIR:-/tmp/rdd-gpu-locks-$(id -u)}
    mkdir -p "$dir"
    while :; do
        fds=() claimed=()
        for ((i = 0; i < count && ${#claimed[@]} < want; i++)); do
            exec {fd}>"$dir/gpu$i.lock"
            if flock -n "$fd"; then claimed+=("$i") fds+=("$fd"); else exec {fd}>&-; fi
        done
        [ "${#claimed[@]}" -lt "$want" ] || break
        # Not enough free: give back what this job holds (two multi-GPU jobs must not each hold
        # half) and wait; another Snakemake on this machine, unseen by this one's --resources, has them.
        for fd in "${fds[@]}"; do exec {fd}>&-; done
        sleep 5
    done
    CUDA_VISIBLE_DEVICES=$(IFS=,; echo "${claimed[*]}")
    export CUDA_VISIBLE_DEVICES
    echo "claim_gpu: CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES (locks in $dir)" >&2
}
