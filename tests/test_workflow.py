"""The Snakemake workflow: dry runs of every preset, lint, and the tiny preset end to end
(killed mid-way and resumed, then rerun only where something changed)."""

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import PurePosixPath

import pytest
import yaml
from PIL import Image

from fixtures_workflow import (REPO, job_counts, lint_findings, run_snakemake, snakemake_command,
                               snakemake_env, write_yaml)
from fixtures_authors import authors_checkpoint, authors_classifier_file
from rdd.data import cifar10, imagenet64
from rdd.nets import build_classifier, build_unet
from rdd.settings import defaults

TINY = REPO / "config" / "tiny.yaml"


# ----------------------------------------------------------------------------- dry runs and lint

def test_dry_run_embedded_default(tmp_path):
    result = run_snakemake(tmp_path, "all", "-n", "--cores", "8")
    assert result.returncode == 0, result.stdout[-3000:]
    # Chain 64 -> 8 (3 rounds), 3 methods x 3 rounds, 2 loss-ablation lines of their own
    # (CFD only and full RDD train exactly like RCFD and RDD, whose models they reuse).
    assert job_counts(result.stdout) == {
        "ref_stats": 1, "train_classifier": 1, "train_teacher": 1, "distill": 3 + 9 + 6,
        "sample": 6 + 1 + 9 + 6, "real_samples": 1, "evaluate": 6 + 1 + 9 + 6 + 1, "memory_benchmark": 1,
        "speed_benchmark": 1, "report": 1, "report_index": 1, "all": 1, "total": 72}
    # The released-vs-described lines (pre-ReLU map, pixel-vector queue) run with an overlay.
    overlay = write_yaml(tmp_path / "released.yaml", {"studies": {"fmnist": {"ablations": ["losses", "released"]}}})
    result = run_snakemake(tmp_path, "all", "-n", "--cores", "8", "--configfile", overlay)
    assert result.returncode == 0, result.stdout[-3000:]
    assert job_counts(result.stdout)["distill"] == 3 + 9 + 6 + 6
    released = yaml.safe_load((tmp_path / "results/fmnist/models/rdd/released-pre_relu_map/student_1.settings.yaml")
                              .read_text())
    assert released["feature_map"] == "pre_relu" and released["m_p2p_enqueue"] == "columns"


def test_dry_run_plans_every_ablation_file(tmp_path):
    """`ablations: all` on the tiny preset: each file in ablations/ validates and gets rounds of its own."""
    overlay = write_yaml(tmp_path / "all.yaml", {"studies": {"tiny": {"ablations": "all"}}})
    result = run_snakemake(tmp_path, "all", "-n", "--cores", "2", "--configfile", TINY, overlay)
    assert result.returncode == 0, result.stdout[-3000:]
    models = tmp_path / "results/tiny/models"
    schema = yaml.safe_load((REPO / "workflow/schemas/ablation.schema.yaml").read_text())
    for path in sorted((REPO / "ablations").glob("*.yaml")):
        method = yaml.safe_load(path.read_text()).get("method", schema["properties"]["method"]["default"])
        assert list(models.glob(f"{method}/{path.stem}-*/student_1.settings.yaml")), path.name
    both = yaml.safe_load((models / "rcfd/dataset_terms-both/student_1.settings.yaml").read_text())
    assert both["weights"] == {"pd": 0.0, "cfd": 1.0, "is_p2p": 0.0, "m_p2p": 0.0, "entropy": 0.05, "diversity": 0.05}


def test_dry_run_tiny_preset(tmp_path):
    result = run_snakemake(tmp_path, "all", "-n", "--cores", "2", "--configfile", TINY)
    assert result.returncode == 0, result.stdout[-3000:]
    # Chain 8 -> 4, 3 methods x 2 rounds x 2 training seeds, the loss ablation's 2 lines of their own
    # (2 rounds each) x 2 training seeds; students evaluated at 4 steps (the chain) and 1 step.
    assert job_counts(result.stdout) == {
        "ref_stats": 1, "train_classifier": 1, "train_teacher": 1, "distill": 1 + 12 + 8,
        "sample": 2 + 1 + 6 + 4, "real_samples": 1, "evaluate": 2 + 1 + 6 + 4 + 1, "memory_benchmark": 1,
        "speed_benchmark": 1, "report": 1, "report_index": 1, "all": 1, "total": 57}
    # The default evaluation protocol (torch-fidelity's input, IS of shuffled images) leaves the options out.
    assert "--inception-input" not in result.stdout and "--isc-split-order" not in result.stdout
    # The speed benchmark holds every core: nothing runs beside it.
    speed_job = result.stdout[result.stdout.index("rule speed_benchmark:"):]
    assert re.search(r"^\s+threads: 2$", speed_job[:speed_job.index("Shell command")], re.M)
    assert f"--threads {min(2, os.cpu_count())}" in speed_job[:speed_job.index("\n\n")]


def _fake_files(root, names):
    """Empty files where the data check looks: enough for a dry run, never read."""
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


@pytest.mark.parametrize("study", ["cifar10", "imagenet64"])
def test_dry_run_paper_protocol(tmp_path, study):
    offline = run_snakemake(tmp_path, f"reports/{study}.html", "-n", "--cores", "8")
    assert offline.returncode != 0
    assert f"studies.{study}.data" in offline.stdout and f"dataset '{study}' not found" in offline.stdout

    if study == "cifar10":
        folder = tmp_path / "data" / cifar10.FOLDER
        _fake_files(folder, [*cifar10.FILES["train"], *cifar10.FILES["test"], cifar10.META])
    else:
        _fake_files(tmp_path / "data" / "imagenet64", [*imagenet64.FILES["train"], *imagenet64.FILES["test"]])
    result = run_snakemake(tmp_path, f"reports/{study}.html", "-n", "--cores", "8")
    assert result.returncode == 0, result.stdout[-3000:]
    # 1024 -> 8: 7 shared PD rounds; 3 methods x 3 rounds; the ablations' own lines: CIFAR-10's loss
    # ablation has 3 (RDD's 20k-iteration rounds differ from RCFD's 10k/20k/20k; full RDD is RDD) and
    # released-vs-described 2 + 3; ImageNet's loss ablation 2 (CFD only is RCFD there) and 2.
    lines = {"cifar10": 3 + 2 + 3, "imagenet64": 2 + 2}[study]
    assert job_counts(result.stdout) == {
        "ref_stats": 1, "train_classifier": 1, "train_teacher": 1, "distill": 7 + 9 + 3 * lines,
        "sample": 10 + 1 + 9 + 3 * lines, "real_samples": 1, "evaluate": 10 + 1 + 9 + 3 * lines + 1,
        "memory_benchmark": 1, "speed_benchmark": 1, "report": 1, "total": 64 + 9 * lines}
    read = lambda name: yaml.safe_load((tmp_path / f"results/{study}/models/{name}.settings.yaml").read_text())
    rdd, pd_1, teacher = read("rdd/default/student_4"), read("pd/default/student_1"), read("teacher/teacher_1024")
    # As released: no pixel loss, and RCFD's dataset-oriented terms off.
    assert rdd["weights"] == {"pd": 0.0, "cfd": 1.0, "is_p2p": 1.0, "m_p2p": 0.1, "entropy": 0.0, "diversity": 0.0}
    released = {"dropout": 0.0, "feature_map": "post_relu", "is_p2p_group_size": 32, "m_p2p_enqueue": "columns",
                "m_p2p_wrap": "tail", "m_p2p_anchors": "linspace", "m_p2p_head_bias": False,
                "m_p2p_head_lr": "constant", "classifier_input": "raw"}
    assert {k: rdd[k] for k in released} == released
    # The released configs (METHOD.md): CIFAR10_PD / train_rdd.sh, and the IMAGENET64 PD/RCFD ones.
    gpus, batch, lr, iters, tau = {"cifar10": (4, 128, 5e-5, 20000, 0.9),
                                   "imagenet64": (8, 256, 1e-4, 50000, 0.75)}[study]
    assert (rdd["train"]["batch_size"], rdd["train"]["lr"], rdd["train"]["iters"], rdd["tau"]) == (batch, lr, iters, tau)
    assert pd_1["train"]["iters"] == iters and pd_1["train"]["lr"] == lr
    # Every round draws time and noise as one released GPU of 32 did (the teacher per sample).
    assert rdd["train"]["noise_group_size"] == pd_1["train"]["noise_group_size"] == 32
    assert "noise_group_size" not in teacher["train"]
    assert f"--standalone --nproc_per_node {gpus} -m rdd distill" in result.stdout
    # every sample job's; the batch size from a file that is not a param (a change of it resamples nothing)
    assert f"sample @results/{study}/sampling_speed.args --model" in result.stdout
    assert "--net-batch 500 --precision fp32" in result.stdout
    # Evaluated as released: pytorch-fid's Inception input (the statistics carry it to every evaluation)
    # and IS of the images in their order.
    assert result.stdout.count("--inception-input pytorch-fid") == 1
    assert result.stdout.count("--isc-split-order in-order") == job_counts(result.stdout)["evaluate"]
    assert (tmp_path / f"results/{study}/sampling_speed.args").read_text() == "--batch-size=500\n"
    if study == "cifar10":
        assert teacher["train"]["batch_size"] == 256 and teacher["net"]["dropout"] == 0.1
    else:
        assert teacher["net"] == {"ch": 128, "ch_mult": [1, 2, 3, 4], "attn": [2, 3], "num_res_blocks": 3,
                                  "dropout": 0.0, "class_conditional": True}
        assert (teacher["train"]["lr"], teacher["train"]["iters"]) == (2e-5, 1000000)


# The net of the authors' files in these tests (tiny's images: 16x16, one channel).
AUTHORS_NET = {"img_resolution": 16, "in_channels": 1, "ch": 32, "ch_mult": [1, 2], "attn": [], "num_res_blocks": 1}


def test_authors_checkpoints_replace_the_stages_they_stand_for(tmp_path):
    # Files in the release layout (read before any job starts: they must load into the configured net).
    (tmp_path / "theirs").mkdir()
    teacher, pd_8 = tmp_path / "theirs" / "teacher_8.pt", tmp_path / "theirs" / "pd_8.pt"
    authors_checkpoint(build_unet(**AUTHORS_NET), 8, 1, teacher)  # tiny's T_base is 8
    authors_checkpoint(build_unet(**AUTHORS_NET), 8, 1, pd_8)
    overlay = write_yaml(tmp_path / "authors.yaml", {"studies": {"tiny": {"authors_checkpoints": {
        "teacher": str(teacher), "net": AUTHORS_NET}}}})
    result = run_snakemake(tmp_path, "all", "-n", "--cores", "2", "--configfile", TINY, overlay)
    assert result.returncode == 0, result.stdout[-3000:]
    counts = job_counts(result.stdout)
    assert "train_teacher" not in counts and counts["distill"] == 1 + 12 + 8
    assert f"--teacher {teacher}" in result.stdout and "--authors-net" in result.stdout

    # Their 8-step PD model replaces the shared chain too (it must end at 8 steps).
    overlay = write_yaml(tmp_path / "pd8.yaml", {"studies": {"tiny": {"shared_steps": 8, "authors_checkpoints": {
        "teacher": str(teacher), "pd_8": str(pd_8), "net": AUTHORS_NET}}}})
    result = run_snakemake(tmp_path, "all", "-n", "--cores", "2", "--configfile", TINY, overlay)
    assert result.returncode == 0, result.stdout[-3000:]
    counts = job_counts(result.stdout)
    # 8 -> 4 -> 2 -> 1 per training seed, no chain
    assert "train_teacher" not in counts and counts["distill"] == 9 * 2 + 6 * 2


def test_authors_files_that_do_not_fit_stop_the_run_before_any_job(tmp_path):
    (tmp_path / "theirs").mkdir()
    sixteen = tmp_path / "theirs" / "teacher_16.pt"
    authors_checkpoint(build_unet(**AUTHORS_NET), 16, 1, sixteen)
    rgb = tmp_path / "theirs" / "densenet121_rgb.pt"
    authors_classifier_file(build_classifier("densenet121", num_classes=10, in_channels=3), rgb, "")
    large_net = {**AUTHORS_NET, "img_resolution": 32}
    large = tmp_path / "theirs" / "teacher_8_32px.pt"
    authors_checkpoint(build_unet(**large_net), 8, 1, large)
    cases = {  # authors_checkpoints: what the message says
        "grid": ({"teacher": str(sixteen), "net": AUTHORS_NET},
                 ["authors_checkpoints.teacher:", "is a 16-step model on a 16-step base grid",
                  "this study needs 8 steps on T_base = 8"]),
        "net": ({"teacher": str(sixteen), "net": {**AUTHORS_NET, "ch": 64}},
                ["authors_checkpoints.teacher:", "weights do not fit the network"]),
        "incomplete_net": ({"teacher": str(sixteen), "net": {"ch": 32}},
                           ["authors_checkpoints.net: bad UNet config", "missing keys ['img_resolution', 'in_channels']"]),
        "channels": ({"classifier": str(rgb)},
                     ["authors_checkpoints.classifier:", "takes 3-channel images; the data settings give "
                                                         "1-channel 16x16 images"]),
        "image_size": ({"teacher": str(large), "net": large_net},
                       ["authors_checkpoints.teacher:", "takes 1-channel 32x32 images; the data settings give "
                                                        "1-channel 16x16 images"]),
    }
    for name, (authors, expected) in cases.items():
        overlay = write_yaml(tmp_path / f"{name}.yaml", {"studies": {"tiny": {"authors_checkpoints": authors}}})
        result = run_snakemake(tmp_path, "all", "-n", "--cores", "2", "--configfile", TINY, overlay)
        text = " ".join(result.stdout.split())
        assert result.returncode != 0 and all(part in text for part in expected), (name, result.stdout[-3000:])


def test_authors_classifier_replaces_the_classifier_training(tmp_path):
    (tmp_path / "theirs").mkdir()
    theirs = tmp_path / "theirs" / "densenet121.pt"  # the release layout, of the smaller DenseNet
    authors_classifier_file(build_classifier("densenet121", num_classes=10, in_channels=1), theirs, "module.")
    overlay = write_yaml(tmp_path / "authors.yaml", {"studies": {"tiny": {"authors_checkpoints": {
        "classifier": str(theirs)}}}})
    result = run_snakemake(tmp_path, "all", "-n", "--cores", "2", "--configfile", TINY, overlay)
    assert result.returncode == 0, result.stdout[-3000:]
    counts = job_counts(result.stdout)
    assert "train_classifier" not in counts and counts["distill"] == 1 + 12 + 8
    # Every feature round reads their file: RCFD's and RDD's two rounds per training seed, the loss
    # ablation's two lines per training seed.
    assert result.stdout.count("--classifier ") == result.stdout.count(f"--classifier {theirs}") == (2 + 2 + 4) * 2


def test_an_image_folder_with_a_held_out_split_plans_the_classifier_and_the_real_row(tmp_path):
    """A study on a folder of class sub-folders trains its own classifier and scores held-out images once
    `test_fraction` gives it a test split; without one the plan stops before any job, naming the way out."""
    for i in range(120):  # the tiny preset's reference statistics take 64 training images
        path = tmp_path / "images" / f"class{i % 2}" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (16, 16), color=i * 2).save(path)
    data = {"name": "folder", "root": str(tmp_path / "images"), "labels": "subfolders"}
    study = {"data": data, "classifier": {"train": {"input_norm": "minus1_1"}}}
    overlay = write_yaml(tmp_path / "folder.yaml", {"studies": {"tiny": study}})
    result = run_snakemake(tmp_path, "all", "-n", "--cores", "2", "--configfile", TINY, overlay)
    assert result.returncode != 0 and "a folder holds images out as a test split with `test_fraction`" in " ".join(
        result.stdout.split()), result.stdout[-3000:]
    data["test_fraction"] = 0.3
    overlay = write_yaml(tmp_path / "folder.yaml", {"studies": {"tiny": study}})
    result = run_snakemake(tmp_path, "all", "-n", "--cores", "2", "--configfile", TINY, overlay)
    assert result.returncode == 0, result.stdout[-3000:]
    counts = job_counts(result.stdout)
    assert counts["train_classifier"] == counts["real_samples"] == counts["ref_stats"] == 1
    assert "python -m rdd real-samples" in result.stdout and "--split test " in result.stdout


def test_lint_has_only_the_explained_finding(tmp_path):
    # Snakemake 9.27.1's CLI prints its lints as text even with `--lint json` (cli.py calls
    # api.lint() without json=True), so the text report is parsed.
    result = run_snakemake(tmp_path, "--lint", "json", "--configfile", TINY)
    findings = lint_findings(result.stdout)
    assert findings, result.stdout[-3000:]
    # Explained: the suite installs into one pip environment (.ci/install, pyproject.toml); conda
    # channels are unreachable where it is tested, so no rule names a conda env or container.
    unexplained = [f for f in findings if f[1] != "Specify a conda environment or container for each rule."]
    assert unexplained == []
    assert {where.split(" (")[0] for where, _ in findings} == {
        f"rule {name}" for name in ("ref_stats", "train_teacher", "train_classifier", "distill", "sample",
                                    "real_samples", "evaluate", "speed_benchmark", "memory_benchmark", "report",
                                    "report_index")}


# ----------------------------------------------------------------------------- the tiny preset, for real

TEACHER_LOG = "logs/results/tiny/models/teacher/teacher_8.log"
TEACHER_RESUME = "resume/results/tiny/models/teacher/teacher_8/resume.pt"
# Long enough to be still training when the Ctrl-C comes, moments after step 20 (at 7 it/s, the rate seen on a
# busy 2-core machine, 80 steps are 11 s), short enough to keep the test quick: the rest of the DAG waits for it.
LONG_TEACHER_ITERS = 100


def _wait_while_running(proc, done, what, timeout_s=300):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None and not done():
        time.sleep(0.2)
    assert proc.poll() is None, f"the run ended before {what}"
    assert done(), f"not {what} after {timeout_s} s"


def _interrupt_during_teacher(workdir, overlay):
    """Start the tiny run; once its teacher job has started, start a second run on the same folder (which
    Snakemake's lock must refuse); once the teacher has saved state, press Ctrl-C (SIGINT to the process group).
    Returns the first run's exit code and the second run's CompletedProcess."""
    with open(workdir / "first-run.log", "w") as out:
        # SIGINT restored to its default: a test run started in the background of a shell inherits it ignored.
        proc = subprocess.Popen(snakemake_command(workdir, "all", "--cores", "2", "--configfile", TINY, overlay),
                                cwd=workdir, env=snakemake_env(), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        log = workdir / TEACHER_LOG
        # A job has started, so the run holds the folder's lock.
        _wait_while_running(proc, log.exists, "the teacher started")
        second = run_snakemake(workdir, "all", "--cores", "1", "--configfile", TINY, overlay)
        assert proc.poll() is None, "the first run ended while the second was refused"
        _wait_while_running(proc, lambda: (workdir / TEACHER_RESUME).exists() and "step 20/" in log.read_text(),
                            "the teacher saved state at step 20")
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=120)
    return proc.returncode, second


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny preset run to the end after a Ctrl-C during the teacher's training."""
    workdir = tmp_path_factory.mktemp("tiny")
    # A teacher long enough to be interrupted mid-way, saving its state every 5 steps; a copy of
    # the cited paper values that the rerun test can edit; a speed setting that is not the default.
    paper_values = workdir / "paper_values.yaml"
    paper_values.write_text((REPO / "reports" / "paper_values.yaml").read_text())
    overlay = write_yaml(workdir / "long_teacher.yaml", {"paper_values": str(paper_values), "studies": {"tiny": {
        "teacher": {"train": {"iters": LONG_TEACHER_ITERS, "checkpoint_every": 5, "log_every": 5}},
        "speed": {"num_workers": 1}}}})
    interrupted, second = _interrupt_during_teacher(workdir, overlay)
    teacher_after_kill = (workdir / "results/tiny/models/teacher/teacher_8.pt").exists()
    resume_after_kill = (workdir / TEACHER_RESUME).exists()
    result = run_snakemake(workdir, "all", "--cores", "2", "--configfile", TINY, overlay, timeout=900)
    return {"workdir": workdir, "overlay": overlay, "interrupted": interrupted, "second": second, "result": result,
            "teacher_after_kill": teacher_after_kill, "resume_after_kill": resume_after_kill}


@pytest.mark.slow
def test_interrupted_teacher_resumes_on_rerun(tiny_run):
    assert tiny_run["interrupted"] != 0
    assert not tiny_run["teacher_after_kill"] and tiny_run["resume_after_kill"]
    assert tiny_run["result"].returncode == 0, tiny_run["result"].stdout[-5000:]
    log = (tiny_run["workdir"] / TEACHER_LOG).read_text()
    resumed = [line for line in log.splitlines() if line.startswith(f"resumed from {TEACHER_RESUME} at step ")]
    assert len(resumed) == 1, log[:2000]
    step = int(resumed[0].rsplit(" ", 1)[1])
    assert 20 <= step < LONG_TEACHER_ITERS
    # Steps done before the interruption are not redone.
    assert f"[teacher] step {step}/{LONG_TEACHER_ITERS}" not in log
    assert f"[teacher] step {LONG_TEACHER_ITERS}/{LONG_TEACHER_ITERS}" in log


@pytest.mark.slow
def test_second_run_on_the_same_folder_is_refused(tiny_run):
    """Snakemake's lock: the second process stops with its message; the first is not disturbed (it
    kept running, and the other tests check what it and its resumed rerun produced)."""
    second = tiny_run["second"]
    assert second.returncode != 0
    assert "Directory cannot be locked" in second.stdout, second.stdout[-3000:]
    assert "[teacher]" not in second.stdout and "rule train_teacher" not in second.stdout


@pytest.mark.slow
def test_tiny_run_produces_every_record_and_the_report(tiny_run):
    workdir = tiny_run["workdir"]
    manifest = json.loads((workdir / "results/tiny/manifest.json").read_text())
    missing = [e["path"] for e in manifest["entries"] if not (workdir / e["path"]).is_file()]
    assert missing == []
    kinds = {}
    for entry in manifest["entries"]:
        kinds[entry["kind"]] = kinds.get(entry["kind"], 0) + 1
    # 13 evaluations of their own + 2 rows of aliased ablation variants per training seed (+ the
    # real-data row's metric); 21 rounds, teacher, classifier, + 4 aliased ablation rounds' records per seed.
    assert kinds == {"reference": 1, "memory_benchmark": 1, "speed_benchmark": 1, "metric": 18, "samples": 17,
                     "grid": 17, "training": 31, "curves": 31}
    # The speed table: each main model at each evaluated step count, timed by the benchmark job.
    with open(workdir / "results/tiny/tables/speed.csv", newline="") as f:
        speed = list(csv.DictReader(f))
    assert sorted((r["method"], int(r["steps"])) for r in speed) == sorted(
        [("ddim", 1), ("ddim", 8), ("pd", 4), ("pd", 1), ("rcfd", 1), ("rdd", 1)])
    assert all(float(r["images_per_second_low"]) <= float(r["images_per_second"]) for r in speed)
    # The study's batch sizes and sampling precision reach every sample job and the speed benchmark
    # (not the command line's defaults, 256 and 16).
    sampled = [json.loads((workdir / e["path"]).read_text()) for e in manifest["entries"]
               if e["kind"] in ("samples", "speed_benchmark")]
    assert {(r["batch_size"], r["net_batch"], r["precision"]) for r in sampled if r.get("steps") != 0} == {
        (16, 8, "fp32")}
    assert [r["min_seconds"] for r in sampled if r["kind"] == "speed_benchmark"] == [0.05]  # not the CLI's 1 s
    with open(workdir / "results/tiny/tables/metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 18 and {r["status"] for r in rows} == {"done"}
    real = [r for r in rows if r["method"] == "real"]
    assert len(real) == 1 and real[0]["steps"] == "0" and real[0]["num_generated"] == "16"
    assert all(float(r["fid"]) > 0 for r in rows)
    report = (workdir / "reports/tiny.html").read_text()
    assert "A tiny test run of the whole workflow" in report
    assert "10000 test images" in report  # the classifier's accuracy with its interval
    # The tiny chain stops at 4 steps, where its methods' rounds start: the report says 4, not the paper's 8.
    assert "Shared PD chain (base teacher down to 4 steps)" in report
    assert "The 4-step model is the shared PD chain's last" in report
    assert "tiny.html" in (workdir / "reports/index.html").read_text()


@pytest.mark.slow
def test_ablation_variants_train_or_reuse_the_main_runs(tiny_run):
    workdir = tiny_run["workdir"]
    variants = json.loads((workdir / "results/tiny/manifest.json").read_text())["ablations"]["losses"]["variants"]
    assert {name: v["same_as"] for name, v in variants.items()} == {
        "cfd_only": "rcfd", "cfd_is_p2p": None, "cfd_m_p2p": None, "full": "rdd"}
    assert {name: v["labelled_as"] for name, v in variants.items()} == {
        "cfd_only": "rcfd", "cfd_is_p2p": "rdd", "cfd_m_p2p": "rdd", "full": "rdd"}
    models = workdir / "results/tiny/models/rdd"
    assert sorted(p.name for p in models.iterdir()) == [
        "default", "losses-cfd_is_p2p", "losses-cfd_is_p2p-replicate1", "losses-cfd_m_p2p",
        "losses-cfd_m_p2p-replicate1", "replicate1"]
    settings = yaml.safe_load((models / "losses-cfd_is_p2p/student_1.settings.yaml").read_text())
    assert settings["weights"] == {"pd": 0.0, "cfd": 1.0, "is_p2p": 1.0, "m_p2p": 0.0, "entropy": 0.0, "diversity": 0.0}
    with open(models / "losses-cfd_is_p2p/student_1.curves.csv", newline="") as f:
        columns = next(csv.reader(f))
    assert "is_p2p" in columns and "cfd" in columns and "m_p2p" not in columns
    record = json.loads((workdir / "results/tiny/metrics/rdd/losses-cfd_m_p2p/steps1/seed0.json").read_text())
    assert record["labels"]["ablation"] == "losses" and record["labels"]["variant"] == "cfd_m_p2p"
    assert record["labels"]["method"] == "rdd" and record["labels"]["steps"] == 1
    # A variant of its own is trained with every training seed, as the main runs it is compared with.
    second = json.loads((models / "losses-cfd_is_p2p-replicate1/student_1.json").read_text())
    assert second["settings"]["seed"] == 1 and second["settings"]["weights"] == settings["weights"]
    with open(workdir / "results/tiny/tables/metrics.csv", newline="") as f:
        cells = [r for r in csv.DictReader(f) if (r["ablation"], r["variant"], r["steps"]) == ("losses", "cfd_is_p2p", "1")]
    assert sorted(r["replicate"] for r in cells) == ["0", "1"]


@pytest.mark.slow
def test_training_seeds_are_trained_from_one_chain_and_reported_as_their_mean(tiny_run):
    """The tiny preset trains every method's rounds with 2 training seeds: each replicate's rounds start
    from the one shared chain, sample the same image seeds, and each cell shows their mean with an
    interval of training and sampling noise."""
    workdir = tiny_run["workdir"]
    read = lambda path: json.loads((workdir / path).read_text())  # noqa: E731
    for method in ("pd", "rcfd", "rdd"):
        first, second = (read(f"results/tiny/models/{method}/{run}/student_2.json") for run in ("default", "replicate1"))
        assert (first["settings"]["seed"], second["settings"]["seed"]) == (0, 1)
        assert first["teacher"] == second["teacher"] == "results/tiny/models/pd/chain/student_4.pt"
    with open(workdir / "results/tiny/tables/metrics.csv", newline="") as f:
        rdd_1 = [r for r in csv.DictReader(f) if (r["method"], r["ablation"], r["steps"]) == ("rdd", "", "1")]
    assert sorted(r["replicate"] for r in rdd_1) == ["0", "1"]
    assert len({(r["seed_first"], r["seed_last"]) for r in rdd_1}) == 1  # the same image seeds
    fids = [float(r["fid"]) for r in rdd_1]
    assert fids[0] != fids[1]  # another training seed, another model
    report = (workdir / "reports/tiny.html").read_text()
    assert f"{sum(fids) / 2:.2f}" in report and "n=2, 2 training seeds" in report
    assert "training+sampling 95% CI [" in report and "training replicate 1 (seed + 1)" in report


@pytest.mark.slow
def test_rerun_does_only_what_changed(tiny_run):
    workdir, overlay = tiny_run["workdir"], tiny_run["overlay"]
    base = ["all", "-n", "--cores", "2", "--configfile", TINY, overlay]
    unchanged = run_snakemake(workdir, *base)
    assert unchanged.returncode == 0 and "Nothing to be done" in unchanged.stdout, unchanged.stdout[-3000:]

    # A training setting of PD's rounds: PD's two rounds of each training seed and what depends on them
    # (their samples, metrics, the speed benchmark that times them, the report), nothing else.
    pd_change = write_yaml(workdir / "pd_change.yaml", {"studies": {"tiny": {"rounds": {"pd": {"iters": 5}}}}})
    changed = run_snakemake(workdir, *base, pd_change)
    assert changed.returncode == 0, changed.stdout[-3000:]
    assert job_counts(changed.stdout) == {"distill": 4, "sample": 2, "evaluate": 2, "speed_benchmark": 1,
                                          "report": 1, "report_index": 1, "all": 1, "total": 12}
    assert "models/pd/default/student_2.pt" in changed.stdout

    # The report's inputs (here its cited paper values) rebuild the report only. Snakemake compares
    # checksums, so a file that is only touched changes nothing; an edit does.
    paper_values = workdir / "paper_values.yaml"
    os.utime(paper_values)
    touched_only = run_snakemake(workdir, *base)
    assert "Nothing to be done" in touched_only.stdout, touched_only.stdout[-3000:]
    paper_values.write_text(paper_values.read_text() + "# edited\n")
    touched = run_snakemake(workdir, *base)
    assert touched.returncode == 0, touched.stdout[-3000:]
    assert job_counts(touched.stdout) == {"report": 1, "report_index": 1, "all": 1, "total": 3}


@pytest.mark.slow
def test_a_round_after_a_retrained_teacher_trains_afresh(tiny_run, tmp_path):
    """Snakemake reruns a round whose teacher file changed (here: rewritten with other weights, as a
    retrained teacher is); the round trains a new student from it, not re-export the old one from its
    finished resume state (which every round did while that state named only its settings)."""
    from rdd import checkpoints

    workdir = tmp_path / "tiny"
    source = tiny_run["workdir"]
    shutil.copytree(source, workdir, ignore=shutil.ignore_patterns("cache"))  # copy2: file times kept
    (workdir / "cache").symlink_to(source / "cache")
    teacher = workdir / "results/tiny/models/teacher/teacher_8.pt"
    student = "results/tiny/models/pd/chain/student_4.pt"
    before = (workdir / student).read_bytes()
    payload = checkpoints.load_torch(teacher)
    payload["state_dict"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    checkpoints.save_torch(payload, teacher)
    rerun = run_snakemake(workdir, student, "--cores", "2", "--configfile", TINY, tiny_run["overlay"])
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    assert job_counts(rerun.stdout) == {"distill": 1, "total": 1}
    log = (workdir / "logs" / student).with_suffix(".log").read_text()
    assert "was written for other settings or inputs" in log and "already at step" not in log, log[-2000:]
    assert (workdir / student).read_bytes() != before


@pytest.mark.slow
def test_speed_settings_reach_every_training_job_and_rerun_nothing(tiny_run):
    """The study's speed settings go to one file that each training job reads after its stage's own
    settings file, and the sampling batch size to one that each sample job reads: every record holds
    them; a change of them retrains and resamples nothing (a real run, which rewrites the files for
    the jobs to come) and reruns only the speed benchmark (it times that batch size) and the report."""
    workdir = tiny_run["workdir"]
    speed_file = workdir / "results/tiny/speed_settings.yaml"
    assert yaml.safe_load(speed_file.read_text()) == {"speed": {**defaults("teacher")["speed"], "num_workers": 1}}
    for model in ("teacher/teacher_8", "classifier/default/classifier", "rdd/default/student_1"):
        record = json.loads((workdir / f"results/tiny/models/{model}.json").read_text())
        assert record["settings"]["speed"]["num_workers"] == 1, model
        assert "speed" not in yaml.safe_load((workdir / f"results/tiny/models/{model}.settings.yaml").read_text())
    sampling_file = workdir / "results/tiny/sampling_speed.args"
    assert sampling_file.read_text() == "--batch-size=16\n"
    faster = write_yaml(workdir / "faster.yaml", {"studies": {"tiny": {"speed": {"fused_optimizer": True},
                                                                       "evaluate": {"batch_size": 5}}}})
    changed = run_snakemake(workdir, "all", "--cores", "2", "--configfile", TINY, tiny_run["overlay"], faster)
    assert changed.returncode == 0, changed.stdout[-3000:]
    # No training, sampling or metric; the report lists the study's config (the rerun test also
    # edited its paper values).
    assert job_counts(changed.stdout) == {"speed_benchmark": 1, "report": 1, "report_index": 1, "all": 1,
                                          "total": 4}
    assert yaml.safe_load(speed_file.read_text())["speed"]["fused_optimizer"] is True
    assert sampling_file.read_text() == "--batch-size=5\n"
    assert json.loads((workdir / "results/tiny/speed_benchmark.json").read_text())["batch_size"] == 5


@pytest.mark.slow
def test_snakemake_report_gathers_the_marked_outputs(tiny_run):
    workdir = tiny_run["workdir"]
    out = workdir / "snakemake-report.zip"
    result = run_snakemake(workdir, "all", "--configfile", TINY, tiny_run["overlay"], "--report", out)
    assert result.returncode == 0, result.stdout[-3000:]
    with zipfile.ZipFile(out) as archive:
        names = [PurePosixPath(name).name for name in archive.namelist()]
    assert {"tiny.html", "metrics.csv", "speed.csv", "curves.csv", "stages.csv", "report.html"} <= set(names)
    assert names.count("seed0.png") == 13  # one sample grid per evaluation of the study's own models


# A method added as one entry of rdd/methods.py, and nothing else.
TOY_METHOD = ('    Method("toy", "Toy", "#2ca02c", "a test method: half the PD loss plus CFD",\n'
              '           weights={"pd": 0.5, "cfd": 1.0}),\n')


def _repository_with_toy_method(folder):
    """A copy of this checkout (its tracked and untracked files) with the toy method registered."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.split("\n")
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, folder / name)
    registry = folder / "rdd" / "methods.py"
    text = registry.read_text()
    end = text.index("\n])\n", text.index("METHODS = _by_name(["))
    registry.write_text(text[:end + 1] + TOY_METHOD + text[end + 1:])
    return folder


@pytest.mark.slow
def test_a_method_added_to_the_registry_alone_is_planned_trained_evaluated_and_reported(tiny_run, tmp_path):
    """The tiny run's results, copied, plus rounds of a toy method: only its rounds, their samples and
    evaluations and the report run, and the report shows it."""
    repo = _repository_with_toy_method(tmp_path / "repo")
    workdir = tmp_path / "work"
    shutil.copytree(tiny_run["workdir"], workdir, symlinks=True)
    overlay = write_yaml(workdir / "toy.yaml", {"studies": {"tiny": {"rounds": {"toy": {"iters": 2}}}}})
    command = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "--directory", str(workdir),
               "all", "--cores", "2", "--configfile", TINY, tiny_run["overlay"], overlay]
    result = subprocess.run(command, cwd=workdir, env=snakemake_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-5000:]
    counts = job_counts(result.stdout)
    # 2 rounds per training seed; each seed's 1-step student sampled and evaluated
    assert counts["distill"] == 4 and counts["sample"] == counts["evaluate"] == 2, counts
    assert "train_teacher" not in counts and "train_classifier" not in counts
    record = json.loads((workdir / "results/tiny/models/toy/default/student_1.json").read_text())
    assert record["loss_weights"] == {"pd": 0.5, "cfd": 1.0, "is_p2p": 0.0, "m_p2p": 0.0, "entropy": 0.0,
                                      "diversity": 0.0}
    assert record["classifier"]  # CFD needs the classifier: the plan gave it one
    with open(workdir / "results/tiny/tables/metrics.csv", newline="") as f:
        toy_rows = [r for r in csv.DictReader(f) if r["method"] == "toy"]
    assert [int(r["steps"]) for r in toy_rows] == [1, 1] and all(float(r["fid"]) > 0 for r in toy_rows)
    report = (workdir / "reports/tiny.html").read_text()
    assert ">Toy<" in report


def test_jobs_run_the_library_that_planned_them_not_a_package_in_the_working_directory(tmp_path):
    """A working directory holding another `rdd` package (an older checkout run with this Snakefile, say):
    the jobs still run this checkout's library, the one that planned them (`python -m` would otherwise
    put the working directory first on the module path)."""
    decoy = tmp_path / "rdd"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("")
    (decoy / "__main__.py").write_text("raise SystemExit('error: the rdd package of the working directory ran')\n")
    target = "results/tiny/samples/real/test/seed0.npz"
    result = run_snakemake(tmp_path, target, "--cores", "1", "--configfile", TINY)
    log = (tmp_path / "logs" / target).with_suffix(".log")
    assert result.returncode == 0, result.stdout[-3000:] + (log.read_text() if log.exists() else "")
    assert (tmp_path / target).is_file()
