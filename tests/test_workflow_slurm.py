"""The workflow through a real SLURM: a one-node cluster started on this machine for the test.

Runs the site profile (profiles/slurm) with the test cluster's additions (tests/slurm/profile) on a
slice of the tiny preset (the teacher on a (fake) GPU, then its samples; the classifier beside them)
with `--executor slurm`, checks the outputs and SLURM's own record of the jobs, and stops every
daemon it started. Needs root and `apt-get install munge slurm-wlm slurm-client slurmctld slurmd`.
"""

import json
import os
import re
import shutil
import subprocess

import pytest

from fixtures_workflow import REPO, snakemake_command, snakemake_env

SLURM = REPO / "tests" / "slurm"
# Each link of a chain waits for one of the plugin's status polls (2, 14, 36 s, ... after the last
# finished job): a chain of two keeps the test short.
TARGETS = ["results/tiny/samples/ddim/teacher/steps1/seed0.json", "results/tiny/models/classifier/default/classifier.pt"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("slurmctld") is None or shutil.which("munged") is None,
                       reason="SLURM not installed: apt-get install munge slurm-wlm slurm-client slurmctld slurmd"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the one-node SLURM of tests/slurm runs its daemons as root"),
]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    prefix = tmp_path_factory.mktemp("slurm")
    started = subprocess.run(["timeout", "-s", "KILL", "60", "bash", str(SLURM / "start.sh"), str(prefix)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert started.returncode == 0, started.stdout
        yield {"SLURM_CONF": str(prefix / "etc" / "slurm.conf"), "bin": str(prefix / "bin")}
    finally:
        subprocess.run(["timeout", "-s", "KILL", "60", "bash", str(SLURM / "stop.sh"), str(prefix)])
        for name in ("munged", "slurmctld", "slurmd"):
            assert not (prefix / "run" / f"{name}.pid").exists(), f"{name} was not stopped"


def test_tiny_slice_runs_through_slurm(slurm, tmp_path):
    # The teacher's GPU is asked for on the command line: every job SLURM runs reads that --config
    # again, its values handed over as strings, as the submitting process did.
    command = ["timeout", "-s", "KILL", "480",
               *snakemake_command(tmp_path, *TARGETS, "--profile", REPO / "profiles" / "slurm",
                                  "--workflow-profile", SLURM / "profile",
                                  "--configfile", REPO / "config" / "tiny.yaml",
                                  "--config", "studies={tiny: {resources: {train_teacher: {gpu: 1}}}}")]
    env = snakemake_env(SLURM_CONF=slurm["SLURM_CONF"])
    env["PATH"] = os.pathsep.join([slurm["bin"], env["PATH"]])
    result = subprocess.run(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    assert result.returncode == 0, result.stdout[-5000:]

    record = json.loads((tmp_path / TARGETS[0]).read_text())
    assert record["model"] == "results/tiny/models/teacher/teacher_8.pt" and record["num_images"] == 16
    assert (tmp_path / TARGETS[0]).with_suffix(".npz").is_file()
    assert (tmp_path / TARGETS[1]).is_file()

    # Every job went through sbatch; SLURM still knows them (MinJobAge) and says they completed.
    job_ids = re.findall(r"SLURM jobid (\d+)", result.stdout)
    assert len(job_ids) == 3, result.stdout[-5000:]
    states = {}
    for job_id in job_ids:
        shown = subprocess.run(["scontrol", "show", "job", job_id], env=env, stdout=subprocess.PIPE, text=True).stdout
        states[job_id] = (re.search(r"JobState=(\w+)", shown)[1], shown)
        assert states[job_id][0] == "COMPLETED", shown
    teacher = [shown for _, shown in states.values() if "train_teacher" in shown]
    # The rule's gpu=1 reached sbatch as --gpus (SLURM 22.05 shows it as TresPerJob=gres:gpu:1).
    assert len(teacher) == 1 and re.search(r"TresPerJob=gres:gpu:1\b|gres/gpu=1\b", teacher[0]), teacher
    others = [shown for _, shown in states.values() if "train_teacher" not in shown]
    assert len(others) == 2 and not any(re.search(r"gres[:/]gpu", shown) for shown in others)
