"""Local multi-GPU runs give each GPU job GPUs of its own (workflow/scripts/claim_gpu.sh).

No GPU here: `nvidia-smi` is a two-line script listing two GPUs, which is all the claim reads;
the locking, waiting and environment are the real ones.
"""

import os
import subprocess
import time

import pytest

from fixtures_workflow import REPO

CLAIM = REPO / "workflow" / "scripts" / "claim_gpu.sh"
# What the job does once it holds its GPUs: say which, then keep them for `hold` seconds.
JOB = 'set -euo pipefail; source "$0"; rdd_claim_gpu "$1"; echo "gpus=${CUDA_VISIBLE_DEVICES:-none}"; sleep "$2"'


@pytest.fixture
def machine(tmp_path):
    """Environment of a machine with two (listed) GPUs and its own lock folder."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text('#!/bin/sh\necho "GPU 0: Listed GPU (UUID: GPU-0)"\necho "GPU 1: Listed GPU (UUID: GPU-1)"\n')
    smi.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", RDD_GPU_LOCK_DIR=str(tmp_path / "locks"))
    return env


def start(env, gpus, hold):
    return subprocess.Popen(["bash", "-c", JOB, str(CLAIM), str(gpus), str(hold)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def claimed(proc):
    return proc.stdout.readline().strip()


def test_concurrent_jobs_get_different_gpus_and_a_third_waits(machine):
    first, second = start(machine, 1, 4), start(machine, 1, 4)
    assert sorted([claimed(first), claimed(second)]) == ["gpus=0", "gpus=1"]
    third = start(machine, 1, 0)
    time.sleep(1.5)
    assert third.poll() is None  # both GPUs are held: it waits instead of sharing one
    first.wait(timeout=30)
    second.wait(timeout=30)
    assert claimed(third) in ("gpus=0", "gpus=1")
    assert third.wait(timeout=30) == 0


def test_a_two_gpu_job_gets_both(machine):
    job = start(machine, 2, 0)
    assert claimed(job) == "gpus=0,1" and job.wait(timeout=30) == 0


def test_cpu_jobs_and_scheduler_assignments_are_left_alone(machine):
    cpu_job = start(machine, 0, 0)
    assert claimed(cpu_job) == "gpus=none"
    slurm_job = start({**machine, "CUDA_VISIBLE_DEVICES": "3"}, 1, 0)
    assert claimed(slurm_job) == "gpus=3"
    assert not os.path.exists(machine["RDD_GPU_LOCK_DIR"])


def test_asking_for_more_gpus_than_the_machine_has_fails(machine):
    job = start(machine, 3, 0)
    assert job.wait(timeout=30) != 0
    assert "3 GPU(s) asked for, 2 on this machine" in job.stderr.read()
