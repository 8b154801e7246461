"""The device subset (`pytest -m gpu`): the paths a paper-scale run takes on a GPU, at toy sizes.

They run on conftest.DEVICE (RDD_TEST_DEVICE when set, else CUDA when present, else the CPU), so the
CPU suite exercises the same code; benchmarks/gpu_check.py runs them on the GPU it checks (with
tests/test_speed_settings.py, the other half of the subset). What CUDA changes
is asserted where it applies (bf16 autocast).
"""

import json
import math
import signal
import subprocess
import time

import numpy as np
import pytest
import torch
import yaml

from conftest import DEVICE, rdd_argv, read_record, run_rdd, subprocess_env
from rdd import checkpoints

pytestmark = pytest.mark.gpu
# Long enough that a run is still going when the test stops it (a GPU takes milliseconds per step).
RESUME_ITERS = 12 if DEVICE == "cpu" else 400


def _on_device(path, folder, **changes):
    """A copy of a settings file with `device` (and `changes`, merged key by key) set."""
    record = yaml.safe_load(path.read_text())
    record["device"] = {**record.get("device", {}), "device": DEVICE}
    for key, value in changes.items():
        record[key] = {**record.get(key, {}), **value} if isinstance(value, dict) else value
    out = folder / path.name
    out.write_text(yaml.safe_dump(record))
    return out


def _sample(model, folder, batch_size, net_batch):
    out = folder / f"b{batch_size}_{net_batch}.npz"
    run_rdd("sample", "--model", model, "--steps", 2, "--seeds", "0-23", "--batch-size", batch_size,
            "--net-batch", net_batch, "--device", DEVICE, "--out", out)
    with np.load(out) as data:
        return data["images"].copy()


def test_samples_do_not_depend_on_the_batch_size(teacher, tmp_path):
    """Per-image noise and a fixed network batch: the same images whatever the sampling batch."""
    reference = _sample(teacher, tmp_path, 24, 8)
    for batch_size in (5, 16):
        assert np.array_equal(_sample(teacher, tmp_path, batch_size, 8), reference), batch_size


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_every_stage_trains_and_evaluates_on_the_device(precision, tiny, classifier, tmp_path_factory, tmp_path):
    if precision == "bf16" and not DEVICE.startswith("cuda"):
        pytest.skip("bf16 autocast runs on CUDA only (the CPU ignores the setting)")
    amp = {"amp_bf16": precision == "bf16"}
    teacher_settings = _on_device(tiny["teacher"], tmp_path, train={"iters": 2}, device=amp)
    teacher = tmp_path / "teacher.pt"
    run_rdd("train-teacher", "--settings", teacher_settings, "--out", teacher, "--resume-dir", tmp_path / "r_t")
    record = read_record(teacher)
    assert record["machine"]["device"].startswith(DEVICE)
    assert record["settings"]["device"]["amp_bf16"] is amp["amp_bf16"]
    assert math.isfinite(record["final_terms"]["loss"])
    for method in ("pd", "rcfd", "rdd"):
        # Grouped draws of time and noise, as the paper studies' rounds (drawn on the CPU, then moved).
        settings = _on_device(tiny["distill"], tmp_path, method=method, train={"iters": 2, "noise_group_size": 4},
                              device=amp)
        student = tmp_path / f"{method}.pt"
        run_rdd("distill", "--settings", settings, "--teacher", teacher,
                *(["--classifier", classifier] if method != "pd" else []), "--out", student,
                "--resume-dir", tmp_path / f"r_{method}")
        terms = read_record(student)["final_terms"]
        assert all(math.isfinite(v) for k, v in terms.items() if k != "step"), (method, terms)
    samples = tmp_path / "rdd_samples.npz"
    run_rdd("sample", "--model", tmp_path / "rdd.pt", "--steps", 1, "--seeds", "0-15", "--device", DEVICE,
            "--out", samples)
    ref = tmp_path / "ref.json"
    data = yaml.safe_load(tiny["teacher"].read_text())["data"]
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({"data": data}))
    run_rdd("ref-stats", "--data-settings", tmp_path / "data.yaml", "--split", "train", "--limit", 32,
            "--device", DEVICE, "--cache-dir", tmp_path_factory.getbasetemp() / "gpu_cache", "--out", ref)
    metric = tmp_path / "metric.json"
    run_rdd("evaluate", "--samples", samples, "--ref-stats", ref, "--out", metric, "--device", DEVICE,
            "--cache-dir", tmp_path_factory.getbasetemp() / "gpu_cache")
    values = json.loads(metric.read_text())["metrics"]
    assert values["fid"] > 0 and values["fid_ci95_low"] < values["fid_ci95_high"]


def _resume_step(folder):
    path = folder / "resume.pt"
    try:
        return checkpoints.load_torch(path)["step"] if path.exists() else -1
    except Exception:  # a write in progress
        return -1


def test_a_run_stopped_and_resumed_on_the_device_equals_an_uninterrupted_one(tiny, tmp_path):
    settings = _on_device(tiny["teacher"], tmp_path,
                          train={"iters": RESUME_ITERS, "checkpoint_every": 2, "log_every": 2})
    whole = tmp_path / "whole.pt"
    run_rdd("train-teacher", "--settings", settings, "--out", whole, "--resume-dir", tmp_path / "r_whole")
    resumed, resume = tmp_path / "resumed.pt", tmp_path / "r_resumed"
    command = rdd_argv("train-teacher", "--settings", settings, "--out", resumed, "--resume-dir", resume)
    # This process's thread count: on the CPU, float sums depend on it, and `whole` was trained here.
    proc = subprocess.Popen(command, env=subprocess_env(torch.get_num_threads()), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while _resume_step(resume) < 4 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stopped = proc.wait(timeout=120)
    assert stopped != 0 and not resumed.exists(), "the run ended before it could be stopped"
    step = _resume_step(resume)
    assert 4 <= step < RESUME_ITERS
    run_rdd("train-teacher", "--settings", settings, "--out", resumed, "--resume-dir", resume)
    a, b = (checkpoints.load_torch(p)["state_dict"] for p in (whole, resumed))
    assert a.keys() == b.keys()
    for key in a:  # bit for bit on CUDA too: deterministic kernels (speed.deterministic, the default)
        assert torch.equal(a[key], b[key]), key
