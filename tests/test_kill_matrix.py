"""Every stage survives SIGKILL (and each training stage SIGTERM and SIGINT) at a random point: the
same command run again completes, reuses what was finished (resume state of the last checkpoint interval, sample
shards) and writes final files equal to those of a run that was never interrupted.

Bitwise on the CPU, except the records' wall-clock fields and the zip timestamps inside `.npz` files
(their arrays are compared instead). The random points are drawn from a seeded generator per stage and
signal, so a failure can be replayed.
"""

import json
import random
import shutil
import signal
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import pytest
import torch
import yaml

from conftest import run_rdd, subprocess_env
from fixtures_report import STUDY, make_study
from rdd import checkpoints, io, layout
from rdd.metrics.inception import resolve_inception

# Fields that measure time, not results.
WALL_CLOCK_KEYS = {"started_unix", "train_seconds_this_run", "wall_seconds", "wall_time_s", "speed"}
# 143, 130: the training loop saved and stopped; outside the loop SIGINT raises KeyboardInterrupt (1 or -2)
EXIT_CODES = {signal.SIGKILL: {-9}, signal.SIGTERM: {-15, 143}, signal.SIGINT: {-2, 1, 130}}


@dataclass
class StageRun:
    """One command of the matrix, in its working folder `work`."""

    argv: list                           # arguments of `python -m ...`
    outputs: list                        # final files, relative to `work`
    ready: Optional[Callable] = None     # no signal before this holds (a finished unit to reuse)
    delay_s: tuple = (0.0, 0.4)          # after `ready`; without it, fractions of the uninterrupted run
    reused: Optional[Callable] = None    # (log of the rerun) -> asserts what was reused


def _resume_step(folder):
    path = folder / "resume.pt"
    return checkpoints.load_torch(path)["step"] if path.exists() else -1


def _training(command, settings, checkpoint_every, extra_args=lambda inputs: []):
    """A training command killed once its resume state holds at least one checkpoint interval."""
    def build(work, inputs):
        resume = work / "resume"

        def reused(log):
            line = next(line for line in log.splitlines() if line.startswith(f"resumed from {resume / 'resume.pt'}"))
            step = int(line.rsplit(" ", 1)[1])
            assert step >= checkpoint_every
            assert not any(f" step {s}/" in log for s in range(1, step + 1)), "finished steps were trained again"

        return StageRun(["rdd", command, "--settings", inputs["tiny"][settings], *extra_args(inputs),
                         "--out", work / "model.pt", "--resume-dir", resume],
                        ["model.pt", "model.json", "model.curves.csv", "resume/resume.pt", "resume/curves.jsonl"],
                        ready=lambda: _resume_step(resume) >= checkpoint_every, reused=reused)
    return build


def _sample(work, inputs):
    parts = work / "s.npz.parts"

    def reused(log):
        reused_lines = [line for line in log.splitlines() if " reused from " in line]
        sampled = [line for line in log.splitlines() if line.endswith(" done")]
        assert len(reused_lines) >= 2 and len(reused_lines) + len(sampled) == 12, log

    return StageRun(["rdd", "sample", "--model", inputs["teacher"], "--steps", 4, "--seeds", "0-119",
                     "--shard-size", 10, "--batch-size", 5, "--device", "cpu", "--out", work / "s.npz",
                     "--grid", work / "s.png"],
                    ["s.npz", "s.json", "s.png"], ready=lambda: (parts / "shard-00001.npz").exists(),
                    delay_s=(0.0, 0.3), reused=reused)


def _ref_stats(work, inputs):
    return StageRun(["rdd", "ref-stats", "--data-settings", inputs["data"], "--limit", 40,
                     "--inception-weights", inputs["inception"], "--cache-dir", work / "cache",
                     "--device", "cpu", "--out", work / "ref.json"],
                    ["ref.json", *inputs["refstats_files"]], delay_s=(0.2, 0.9))


def _evaluate(work, inputs):
    return StageRun(["rdd", "evaluate", "--samples", inputs["samples"], "--ref-stats", inputs["ref"],
                     "--label", "method=ddim", "--cache-dir", work / "cache", "--device", "cpu",
                     "--out", work / "m.json"], ["m.json"], delay_s=(0.2, 0.9))


def _report(work, inputs):
    make_study(work)
    manifest, tables, report = (layout.path(p, study=STUDY)
                                for p in (layout.MANIFEST, layout.TABLES_DIR, layout.REPORT))
    return StageRun(["rdd.report", "build", "--manifest", manifest, "--tables-dir", tables, "--out", report],
                    [report, layout.summary(report), *(layout.table_file(tables, name) for name in layout.TABLES)],
                    delay_s=(0.2, 0.9))


STAGES = {
    "ref-stats": _ref_stats,
    "teacher": _training("train-teacher", "teacher", 4),
    "classifier": _training("train-classifier", "classifier", 12),
    "round": _training("distill", "distill", 3, lambda inputs: [
        "--teacher", inputs["teacher"], "--classifier", inputs["classifier"],
        "--set", "train.iters=18", "--set", "train.checkpoint_every=3"]),
    "sampling": _sample,
    "evaluation": _evaluate,
    "report": _report,
}


def _start(run, work, log_path):
    with open(log_path, "w") as log:
        return subprocess.Popen([sys.executable, "-m", *map(str, run.argv)], cwd=work, stdout=log,
                                stderr=subprocess.STDOUT, env=subprocess_env())


def _run_to_end(run, work, log_path):
    started = time.monotonic()
    proc = _start(run, work, log_path)
    assert proc.wait(timeout=600) == 0, log_path.read_text()[-3000:]
    return time.monotonic() - started


def _comparable(path):
    """The content of a final file: bytes, except records without their wall-clock fields and the
    arrays of `.npz` and `.pt` files (their containers hold timestamps, ids and pickle memo order)."""
    if path.suffix == ".json":
        return _plain(json.loads(path.read_text()))
    if path.suffix == ".npz":
        with np.load(path) as npz:
            return {k: (npz[k].dtype.str, npz[k].shape, npz[k].tobytes()) for k in sorted(npz.files)}
    if path.suffix == ".pt":
        return _plain(checkpoints.load_torch(path))
    return path.read_bytes()


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items() if k not in WALL_CLOCK_KEYS}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return (str(obj.dtype), tuple(obj.shape), obj.contiguous().numpy().tobytes())
    return obj


@pytest.fixture(scope="module")
def inputs(tiny, teacher, classifier, tmp_path_factory):
    """What the stages read: the tiny settings, teacher and classifier, a samples file and reference statistics."""
    folder = tmp_path_factory.mktemp("kill-inputs")
    data = folder / "data.yaml"
    data.write_text(yaml.safe_dump({"data": yaml.safe_load(tiny["teacher"].read_text())["data"]}))
    inception = resolve_inception(cache_dir=folder / "inception").path
    values = {"tiny": tiny, "teacher": teacher, "classifier": classifier, "data": data, "inception": inception}
    ref_cache = folder / "ref-cache"
    run_rdd("ref-stats", "--data-settings", data, "--limit", 40, "--inception-weights", inception,
            "--cache-dir", ref_cache, "--device", "cpu", "--out", folder / "ref.json")
    run_rdd("sample", "--model", teacher, "--steps", 2, "--seeds", "0-39", "--device", "cpu", "--out", folder / "s.npz")
    values.update(ref=folder / "ref.json", samples=folder / "s.npz",
                  refstats_files=[f"cache/refstats/{p.name}" for p in sorted((ref_cache / "refstats").iterdir())])
    return values


SIGNALS = {"SIGKILL": signal.SIGKILL, "SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT}
# Only the training loop handles SIGTERM and SIGINT (save, then stop). Elsewhere they end the process
# at once (SIGINT through KeyboardInterrupt), as SIGKILL does, so the SIGKILL case covers them.
CASES = [(stage, sig) for stage in STAGES for sig in SIGNALS
         if sig == "SIGKILL" or stage in ("teacher", "classifier", "round")]


def _kill_and_rerun(stage, sig, inputs, work, expected, straight_s, logs):
    """Start the stage, send `sig` at a random point, run the same command again; assert that the final
    files equal the uninterrupted run's and that finished work was reused."""
    rng = random.Random(f"{stage}-{sig.name}")
    for attempt in range(4):  # a draw past the end of the run is drawn again, earlier
        shutil.rmtree(work)
        work.mkdir()
        run = STAGES[stage](work, inputs)
        killed_log = logs / f"{sig.name}-killed-{attempt}.log"
        proc = _start(run, work, killed_log)
        while run.ready and not run.ready() and proc.poll() is None:
            time.sleep(0.02)
        low, high = run.delay_s
        scale = 1.0 if run.ready else straight_s
        delay = rng.uniform(low, high) * scale / 2 ** attempt
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(sig)
            break
        proc.wait()
    else:
        raise AssertionError(f"{stage} finished before every drawn kill point")
    assert proc.wait(timeout=120) in EXIT_CODES[sig], killed_log.read_text()[-3000:]

    rerun_log = logs / f"{sig.name}-rerun.log"
    _run_to_end(run, work, rerun_log)
    for name, value in expected.items():
        assert _comparable(work / name) == value, f"{name} differs after {sig.name} at {delay:.2f} s"
    if run.reused:
        run.reused(rerun_log.read_text())
    assert not list(work.rglob(".*.tmp")), "a partial write was left behind"


@pytest.fixture(scope="module")
def outcomes(inputs, tmp_path_factory):
    """(stage, signal name) -> None, or the traceback of what failed.

    Each stage runs in its own folder (records name the paths they read and write): uninterrupted,
    then killed by SIGKILL and rerun, then (training stages) by SIGTERM and rerun, all in that folder.
    Two stages run at a time, each command on one torch thread."""
    def stage_cases(stage):
        folder = tmp_path_factory.mktemp(f"kill-{stage}")
        work = folder / "work"
        work.mkdir()
        run = STAGES[stage](work, inputs)
        straight_s = _run_to_end(run, work, folder / "uninterrupted.log")
        expected = {name: _comparable(work / name) for name in run.outputs}
        found = {}
        for name in [name for each, name in CASES if each == stage]:
            sig = SIGNALS[name]
            try:
                _kill_and_rerun(stage, sig, inputs, work, expected, straight_s, folder)
                found[stage, name] = None
            except Exception:  # reported by the test of this case
                found[stage, name] = traceback.format_exc()
        return found

    with ThreadPoolExecutor(max_workers=2) as pool:
        return {key: value for found in pool.map(stage_cases, STAGES) for key, value in found.items()}


@pytest.mark.parametrize("stage, sig", CASES)
def test_killed_stage_finishes_as_if_never_killed(stage, sig, outcomes):
    failure = outcomes[stage, sig]
    if failure:
        pytest.fail(failure, pytrace=False)


def test_checkpoint_write_cut_short_leaves_the_previous_one_loadable(tmp_path):
    """SIGKILL while the next checkpoint is being written: the previous one still loads, and the
    next run under the lock clears the partial file."""
    path = tmp_path / "resume.pt"
    checkpoints.save_torch({"step": 1}, path)
    writer = ("import sys, torch; from rdd import checkpoints; "
              "checkpoints.save_torch({'step': 2, 'big': torch.zeros(150_000_000)}, sys.argv[1])")
    proc = subprocess.Popen([sys.executable, "-c", writer, str(path)], env=subprocess_env())
    deadline = time.monotonic() + 120
    while not any(p.stat().st_size > 1 << 20 for p in tmp_path.glob(".resume.pt.*.tmp")):
        assert proc.poll() is None and time.monotonic() < deadline, "the write ended before it could be cut"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert checkpoints.load_torch(path) == {"step": 1}
    with io.exclusive(path):
        assert len(io.remove_partial_writes(tmp_path)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resume.pt"]
