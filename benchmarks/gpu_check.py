"""The paper-scale path on one GPU, checked in one prepared run: tests, torchrun, speed and the studies' cost.

Run from the repository root (prints a report, writes one JSON):

    python benchmarks/gpu_check.py --out gpu_check.json           # one H100/H200 (sized for 8 minutes)
    python benchmarks/gpu_check.py --tiny --out gpu_check.json    # toy sizes, any machine (the CPU too)

Items, each with a verdict (ran / failed / skipped, and why):
1. tests: the test subset marked `gpu` (tests/test_gpu.py, tests/test_speed_settings.py) on this device;
2. torchrun: one RDD round of a few iterations under `torchrun --nproc_per_node 1` (NCCL on CUDA,
   gloo on the CPU), the M-P2P queue filled through the all-gather;
3. per study (cifar10 and imagenet64; with --tiny the tiny preset), with the networks, batches and
   GPUs per job its plan gives: seconds per iteration and peak memory of a teacher step and of one
   iteration of each method's first round and of the shared chain, with the study's speed settings,
   in fp32 (TF32 on CUDA unless speed.tf32 is false) and with bf16 autocast (CUDA only); images/s
   of 1-step and T_base-step DDIM sampling (above 64 steps from a 64-step run, time linear in the
   steps) at the evaluation batch and network batch, in the study's sampling precision (on CUDA both
   fp32 and TF32); Inception feature extraction images/s in fp32 (as reported FIDs need); the
   seconds of one evaluation's FID, KID and IS intervals at the study's sample count;
4. the cost of the whole study in GPU-hours per stage (teacher, chain, rounds, ablations, sampling,
   metrics) from those rates and the plan's iteration and sample counts;
5. speed settings (cifar10; with --tiny the tiny preset): what flipping each of the study's TF32,
   deterministic-kernel, cuDNN-autotuner, channels-last, fused-optimiser and torch.compile settings
   does to a teacher step and an RDD iteration, and the loader's images/s at 0, 4 and 8 workers (0
   and 2 with --tiny; see benchmarks/bench_speed_settings.py).
Networks have random weights: speed does not depend on them.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benchmarks import bench_speed_settings, peak_memory  # noqa: E402
from benchmarks.plan_iterations import (build_iteration, load_plans, per_gpu_batch, time_cases,  # noqa: E402
                                        timed_stages)
from rdd.cli import output_file, positive_int  # noqa: E402
from rdd.launch import rdd_command  # noqa: E402
from rdd.settings import PRECISIONS as SAMPLING_PRECISIONS  # noqa: E402

RAN, FAILED, SKIPPED = "ran", "failed", "skipped"
PRECISIONS = ("fp32", "bf16")


def verdict(item, outcome, why, **figures):
    return {"item": item, "verdict": outcome, "why": why, **figures}


# ----------------------------------------------------------------------------- timings

def time_iteration(iteration, device, repeats):
    """Median seconds of `repeats` iterations after two warm-ups (plan_iterations.time_cases), and the
    peak memory of any of them (CUDA)."""
    baseline = peak_memory.reset(device) if device == "cuda" else None
    row = time_cases({"case": iteration}, repeats)["case"]
    peak = peak_memory.peak_since(device, baseline) if device == "cuda" else None
    return {key: row[key] for key in ("seconds_per_iteration", "min", "max")} | {"peak_bytes": peak}


def training_rates(plan, device, repeats, log):
    """{kind: {precision: timing or verdict}} of every timed stage."""
    import torch

    rates = {}
    for kind, stage in timed_stages(plan).items():
        rates[kind] = {"per_gpu_batch": per_gpu_batch(plan, stage), "gpus": plan.resources(stage.rule)["gpu"]}
        for precision in PRECISIONS:
            if precision == "bf16" and device != "cuda":
                rates[kind][precision] = verdict(f"{kind} {precision}", SKIPPED, "bf16 autocast runs on CUDA only")
                continue
            try:
                # With the study's speed settings (fp32 matmuls and convolutions in TF32 on CUDA unless
                # its speed.tf32 is false).
                iteration = build_iteration(plan, kind, device, {"device": {"amp_bf16": precision == "bf16"}})
                timing = time_iteration(iteration, device, repeats)
                rates[kind][precision] = {"verdict": RAN, **timing}
                log(f"  {kind:>9} {precision}: {timing['seconds_per_iteration']:.4f} s/it at batch "
                    f"{rates[kind]['per_gpu_batch']} per GPU"
                    + (f", peak {timing['peak_bytes'] / 2**30:.2f} GiB" if timing["peak_bytes"] else ""))
            except Exception as exc:  # a failure is a finding of the check, reported with the others
                rates[kind][precision] = verdict(f"{kind} {precision}", FAILED, f"{type(exc).__name__}: {exc}")
                log(f"  {kind:>9} {precision}: FAILED {type(exc).__name__}: {exc}")
            finally:
                if device == "cuda":
                    torch.cuda.empty_cache()
    return rates


def sampling_rates(plan, device, repeats, log, precision, max_steps=64):
    """Images/s of 1-step and T_base-step DDIM sampling with the study's UNet at its evaluation batch
    and network batch, in `precision` (rdd.precision).

    Above `max_steps` (1024 steps at batch 500 take minutes on one GPU) the T_base-step rate comes
    from a `max_steps` run: the time of a batch is linear in the steps (one network call each), so
    seconds(T_base) = seconds(1) + (seconds(max_steps) - seconds(1)) (T_base - 1) / (max_steps - 1).
    Returns ({steps: images/s}, {steps: the step count actually timed, where it differs})."""
    import torch

    from rdd.diffusion import TimeGrid
    from rdd.generate import image_shape, sample_batch
    from rdd.nets import build_unet
    from rdd.train.checks import unet_kwargs

    kwargs = unet_kwargs(timed_stages(plan)["teacher"].settings)
    net = build_unet(**kwargs).to(device).eval()
    grid = TimeGrid(plan.config["T_base"], plan.config["T_base"])
    batch, net_batch = plan.config["evaluate"]["batch_size"], plan.config["evaluate"]["net_batch"]
    T_base = plan.config["T_base"]

    def seconds(steps, count):
        times = []
        for _ in range(count):
            started = time.perf_counter()
            sample_batch(net, grid, list(range(batch)), steps, image_shape(kwargs), kwargs["num_classes"], device,
                         net_batch, precision)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    seconds(1, 1)  # warm-up
    one = seconds(1, repeats)
    timed = min(T_base, max_steps)
    many = seconds(timed, 1 if timed > 8 else repeats) if T_base > 1 else one
    full = one + (many - one) * (T_base - 1) / (timed - 1) if timed > 1 else one
    out, extrapolated = {1: batch / one, T_base: batch / full}, ({T_base: timed} if timed != T_base else {})
    for steps, rate in out.items():
        how = f" (from a {extrapolated[steps]}-step run, linear in the steps)" if steps in extrapolated else ""
        log(f"  DDIM {steps} step(s), {precision}: {rate:.1f} images/s at batch {batch}, network batch {net_batch}"
            f"{how}")
    return out, extrapolated


def inception_rate(plan, device, images, log):
    """Inception (pool3 and logits, fp32) images/s on random uint8 images of the study's size, fed as the
    study's evaluations feed it (its inception_input)."""
    import numpy as np

    from rdd.metrics.features import extract_features
    from rdd.metrics.inception import resolve_inception

    evaluate = plan.config["evaluate"]
    handle = resolve_inception(evaluate.get("inception_weights"), cache_dir=str(REPO / "cache" / "inception"),
                               allow_download=False, inception_input=evaluate["inception_input"])
    from rdd.data import normalize_spec

    data = normalize_spec(plan.config["data"])
    size, channels = data["image_size"], data["channels"]
    x = np.random.default_rng(0).integers(0, 256, (images, size, size, channels), dtype=np.uint8)
    extract_features(x[: min(images, 16)], handle, batch_size=16, device=device)  # warm-up
    started = time.perf_counter()
    extract_features(x, handle, batch_size=min(images, 256), device=device)
    rate = images / (time.perf_counter() - started)
    log(f"  Inception: {rate:.1f} images/s (fp32, {handle.inception_input} input)")
    return rate


def interval_seconds(plan, device, log):
    """Seconds of one evaluation's sampling intervals (the FID, KID and IS bootstraps of
    rdd.metrics) at the study's sample count N, on random 2048-d features and 1008 logits, against N
    random reference features (KID's cross term grows with the reference's size)."""
    import numpy as np

    from rdd.metrics import bootstrap, kid_bootstrap, scores

    n = plan.config["evaluate"]["num_samples"]
    rng = np.random.default_rng(0)
    features, ref = (rng.standard_normal((n, 2048), dtype=np.float32) for _ in range(2))
    logits = rng.standard_normal((n, 1008), dtype=np.float32)
    mu_r, sigma_r = ref.mean(0, dtype=np.float64), np.cov(ref, rowvar=False)
    runs = {"fid": lambda: bootstrap.fid_replicates(features, mu_r, sigma_r, device=device),
            "kid": lambda: kid_bootstrap.kid_replicates(features, ref, device=device),
            "is": lambda: scores.isc_replicates(logits, min(scores.ISC_SPLITS, n), scores.RNG_SEED, device=device)}
    seconds = {}
    for name, run in runs.items():
        started = time.perf_counter()
        run()  # returns numpy arrays: the device work has finished
        seconds[name] = time.perf_counter() - started
    log(f"  intervals at N = {n}: " + ", ".join(f"{k.upper()} {v:.1f} s" for k, v in seconds.items()))
    return seconds


# ----------------------------------------------------------------------------- cost

def _stage_group(stage):
    labels = stage.labels
    if labels.get("ablation"):
        return "ablations"
    return {"train_teacher": "teacher", "train_classifier": "classifier"}.get(stage.rule) or (
        "chain" if labels.get("stage") == "pd_chain" else "rounds")


def cost_table(plan, rates, sampling, inception, intervals, precision="fp32"):
    """GPU-hours per stage group of the whole study from the measured rates ({group: {jobs, gpu_hours,
    note}}): a training job costs iters x s/it x GPUs; a sampling job num_samples / images/s at its
    steps (time per image linear in the steps, through the 1-step and T_base-step rates); a metric job
    num_samples / Inception images/s plus the seconds of its intervals. Ablation lines are costed at
    their method's rate."""
    table = {}

    def add(group, hours, note=None):
        row = table.setdefault(group, {"jobs": 0, "gpu_hours": 0.0, "notes": set()})
        row["jobs"] += 1
        if hours is None:
            row["notes"].add(note)
        else:
            row["gpu_hours"] += hours

    for stage in plan.stages.values():
        group = _stage_group(stage)
        if group == "classifier":
            add(group, None, "the classifier's training is not timed by this check")
            continue
        kind = "teacher" if group == "teacher" else "pd_chain" if group == "chain" else stage.labels["method"]
        rate = (rates.get(kind) or {}).get(precision) or {}
        if rate.get("verdict") != RAN:
            add(group, None, f"{kind} not timed")
            continue
        iters = stage.settings["train"].get("iters") or 0
        add(group, iters * rate["seconds_per_iteration"] * max(1, rates[kind]["gpus"]) / 3600)
    low, high = min(sampling), max(sampling)
    per_step = (1 / sampling[high] - 1 / sampling[low]) / max(1, high - low)
    num_samples = plan.config["evaluate"]["num_samples"]
    for evaluation in plan.evaluations.values():
        if evaluation.model is not None:
            add("sampling", num_samples * (1 / sampling[low] + per_step * (evaluation.steps - low)) / 3600)
        add("metrics", (num_samples / inception + sum(intervals.values())) / 3600)
    return {group: {"jobs": row["jobs"], "gpu_hours": row["gpu_hours"],
                    "note": "; ".join(sorted(row["notes"])) or None} for group, row in table.items()}


# ----------------------------------------------------------------------------- tests and torchrun

def _child_env(**extra):
    """The environment of a child process: this one's, with the checkout importable."""
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


def run_tests(device, log):
    env = _child_env(RDD_TEST_DEVICE=device)
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
                          str(REPO / "tests" / "test_gpu.py"), str(REPO / "tests" / "test_speed_settings.py")],
                         cwd=REPO, env=env, capture_output=True, text=True)
    summary = (out.stdout.strip().splitlines() or ["(no output)"])[-1]
    log(f"  pytest -m gpu on {device}: {summary}")
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error)", summary)}
    if out.returncode == 0 and counts.get("passed"):
        return verdict("tests", RAN, f"pytest -m gpu on {device}: {summary}", counts=counts)
    return verdict("tests", FAILED, f"pytest -m gpu on {device}: {summary}", counts=counts,
                   output=out.stdout[-4000:] + out.stderr[-2000:])


def _tiny_settings(folder, device):
    from rdd.settings import write_files

    data = {"name": "fashion_mnist", "root": str(REPO / "data"), "image_size": 16, "resize": "resize"}
    records = {
        "teacher": {"data": data, "T_base": 8, "device": {"device": device},
                    "net": {"ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1},
                    "train": {"iters": 2, "batch_size": 8, "log_every": 1, "checkpoint_every": 2}},
        "classifier": {"data": data, "device": {"device": device}, "net": {"name": "densenet_small"},
                       "train": {"iters": 2, "batch_size": 16, "log_every": 1, "checkpoint_every": 2}},
        "distill": {"data": data, "method": "rdd", "device": {"device": device}, "memory_size": 64,
                    "num_anchors": 16, "enqueue_per_step": 16, "is_p2p_group_size": 8,
                    "train": {"iters": 3, "batch_size": 8, "noise_group_size": 4, "log_every": 1,
                              "checkpoint_every": 3}},
    }
    return write_files(folder, records)


def run_torchrun(device, log):
    """A teacher and classifier of 2 steps, then an RDD round of 3 under torchrun on one process."""
    env = _child_env()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        settings = _tiny_settings(folder, device)
        one_process = rdd_command(python=sys.executable)
        commands = [
            [*one_process, "train-teacher", "--settings", settings["teacher"], "--out",
             folder / "teacher.pt", "--resume-dir", folder / "r_teacher"],
            [*one_process, "train-classifier", "--settings", settings["classifier"], "--out",
             folder / "classifier.pt", "--resume-dir", folder / "r_classifier"],
            [*rdd_command(1, sys.executable, torchrun=True),
             "distill", "--settings", settings["distill"], "--teacher", folder / "teacher.pt", "--classifier",
             folder / "classifier.pt", "--out", folder / "student.pt", "--resume-dir", folder / "r_student"]]
        for command in commands:
            out = subprocess.run([str(c) for c in command], cwd=REPO, env=env, capture_output=True, text=True)
            if out.returncode != 0:
                return verdict("torchrun", FAILED, f"{' '.join(map(str, command[1:5]))} exited {out.returncode}",
                               output=out.stdout[-3000:] + out.stderr[-3000:])
        record = json.loads((folder / "student.json").read_text())
    backend = "NCCL" if device == "cuda" else "gloo"
    terms = record["final_terms"] or {}
    ok = record["world_size"] == 1 and terms.get("m_p2p") is not None
    why = (f"torchrun --nproc_per_node 1 ({backend}): RDD round of 3 iterations, world size {record['world_size']}, "
           f"final M-P2P term {terms.get('m_p2p')}")
    log(f"  {why}")
    return verdict("torchrun", RAN if ok else FAILED, why, final_terms=terms)


# ----------------------------------------------------------------------------- speed settings

def speed_settings_item(name, tiny, device, repeats, names, log):
    """Each of the speed settings `names` flipped against the study's, for its teacher and RDD's first round."""
    (plan,) = load_plans([name], tiny).values()
    log(f"speed settings of study {name} (each flipped against the study's {plan.speed()}):")
    figures = {}
    try:
        for kind in ("teacher", "rdd"):
            figures[kind] = bench_speed_settings.measure_settings(plan, kind, device, names, repeats, log)
            bench_speed_settings.print_settings(kind, figures[kind], log)
        figures["loader"] = bench_speed_settings.loader_rates(plan, "teacher", device, (0, 2) if tiny else (0, 4, 8))
        log(f"  loader (teacher's data, images/s): {figures['loader']}")
    except Exception as exc:  # a failure is a finding of the check, reported with the others
        return verdict("speed settings", FAILED, f"{type(exc).__name__}: {exc}", figures=figures)
    paying = [f"{case} for {kind}" for kind in ("teacher", "rdd") for case, row in figures[kind].items()
              if row.get("pays")]
    return verdict("speed settings", RAN, "pays: " + (", ".join(paying) or "none"), figures=figures)


# ----------------------------------------------------------------------------- main

def _print_cost(name, cost, log):
    log(f"  cost of study {name} (GPU-hours, fp32/TF32 rates):")
    for group in ("teacher", "classifier", "chain", "rounds", "ablations", "sampling", "metrics"):
        if group in cost:
            row = cost[group]
            log(f"    {group:>10}: {row['gpu_hours']:10.2f} over {row['jobs']} jobs"
                + (f" ({row['note']})" if row["note"] else ""))
    log(f"    {'total':>10}: {sum(r['gpu_hours'] for r in cost.values()):10.2f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny preset's sizes (any machine, the CPU too)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: CUDA when present")
    parser.add_argument("--repeats", type=positive_int, default=None,
                        help="timed iterations per case (default 5, tiny 2)")
    parser.add_argument("--inception-images", type=positive_int, default=None, help="default 2048, tiny 32")
    parser.add_argument("--skip", nargs="*", default=[], choices=("tests", "torchrun", "timings", "speed"))
    parser.add_argument("--speed-settings", nargs="*", default=list(bench_speed_settings.TOGGLED),
                        choices=bench_speed_settings.TOGGLED, help="the speed settings item 5 flips (default: all)")
    parser.add_argument("--out", type=output_file(".json"), default="gpu_check.json",
                        help="the JSON report (checked before the run, which takes minutes)")
    args = parser.parse_args(argv)
    import torch

    from rdd import io
    from rdd.provenance import environment_record

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    repeats = args.repeats or (2 if args.tiny else 5)
    studies = ["tiny"] if args.tiny else ["cifar10", "imagenet64"]
    log = print
    started = time.time()
    log(f"GPU check on {device} ({'tiny sizes' if args.tiny else 'paper sizes'}), torch {torch.__version__}")
    result = {"device": device, "tiny": args.tiny, "items": [], "studies": {}}
    if device == "cpu" and not args.tiny:
        log("  note: no CUDA device; paper sizes on the CPU are slow (use --tiny)")
    for item, run in (("tests", run_tests), ("torchrun", run_torchrun)):
        found = verdict(item, SKIPPED, "--skip") if item in args.skip else run(device, log)
        result["items"].append(found)
    if "timings" in args.skip:
        result["items"].append(verdict("timings", SKIPPED, "--skip"))
    else:
        plans = load_plans(studies, args.tiny)
        for name, plan in plans.items():
            log(f"study {name}:")
            rates = training_rates(plan, device, repeats, log)
            # The study's sampling precision prices its sample jobs; on CUDA the other one is timed beside it.
            study_precision = plan.config["evaluate"]["sampling_precision"]
            by_precision = {p: sampling_rates(plan, device, repeats, log, p)
                            for p in (SAMPLING_PRECISIONS if device == "cuda" else [study_precision])}
            sampling, extrapolated = by_precision[study_precision]
            inception = inception_rate(plan, device, args.inception_images or (32 if args.tiny else 2048), log)
            intervals = interval_seconds(plan, device, log)
            cost = cost_table(plan, rates, sampling, inception, intervals)
            _print_cost(name, cost, log)
            failed = [f"{k} {p}" for k, r in rates.items() for p in PRECISIONS if r[p].get("verdict") == FAILED]
            result["studies"][name] = {"training": rates, "sampling_precision": study_precision,
                                       "sampling_images_per_second": sampling,
                                       "sampling_images_per_second_by_precision": {
                                           p: rates_of for p, (rates_of, _) in by_precision.items()},
                                       "sampling_steps_timed": extrapolated,
                                       "inception_images_per_second": inception,
                                       "interval_seconds": intervals, "cost_gpu_hours": cost}
            result["items"].append(verdict(f"timings {name}", FAILED if failed else RAN,
                                           f"failed: {', '.join(failed)}" if failed else
                                           "every stage timed (bf16 skipped off CUDA)" if device != "cuda" else
                                           "every stage timed in fp32/TF32 and bf16"))
    if "speed" in args.skip:
        result["items"].append(verdict("speed settings", SKIPPED, "--skip"))
    else:
        result["items"].append(speed_settings_item("tiny" if args.tiny else "cifar10", args.tiny, device, repeats,
                                                   args.speed_settings, log))
    result["seconds"] = time.time() - started
    result["environment"] = environment_record(torch.device(device))
    io.write_json(result, args.out)
    log("verdicts:")
    for item in result["items"]:
        log(f"  {item['item']}: {item['verdict']} ({item['why']})")
    log(f"{result['seconds']:.0f} s; written to {args.out}")
    return 1 if any(i["verdict"] == FAILED for i in result["items"]) else 0


if __name__ == "__main__":
    sys.exit(main())
