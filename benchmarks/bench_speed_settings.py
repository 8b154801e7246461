"""What each speed setting (rdd.train.speed_settings) buys on this machine, for a study's own stages.

Run from the repository root:

    python benchmarks/bench_speed_settings.py                          # the embedded default, here
    python benchmarks/bench_speed_settings.py --study cifar10 --device cuda

For each timed stage (the teacher and each method's first round, rdd's by default) one case runs
the study's speed settings and one case each flips one of them (TF32, deterministic kernels and
cuDNN's autotuner on CUDA only); all cases live in this one process and their iterations interleave
round-robin, in an order rotated every repeat, so a slow spell of the machine falls on every case
alike. Reported per case: the median seconds per iteration, its ratio to the study's settings, the
first call's seconds (compilation), and the relative difference of the loss from the study's at the
first and the last step (same weights, batch and noise: only rounding should differ). A setting
"pays" when its median ratio is at most 0.95 and both differences are at most 1e-3. The loader part
times the study's real data through the DataLoader at 0, 2 and 4 workers (pinned memory on CUDA).
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.plan_iterations import (build_iteration, load_plans, per_gpu_batch, time_cases,  # noqa: E402
                                        timed_stages)
from rdd.cli import positive_int  # noqa: E402

TOGGLED = ("tf32", "deterministic", "cudnn_benchmark", "channels_last", "fused_optimizer", "compile")
CUDA_ONLY = ("tf32", "deterministic", "cudnn_benchmark")
PAYS_RATIO, LOSS_TOLERANCE = 0.95, 1e-3


def _loss(terms):
    return terms["loss"]


def measure_settings(plan, kind, device, names=TOGGLED, repeats=10, log=print):
    """{case: figures} for the study's speed settings ("study") and each of `names` flipped."""
    import torch

    study_speed = timed_stages(plan)[kind].settings["speed"]
    cases, results = {"study": {}}, {}
    for name in names:
        if name in CUDA_ONLY and device != "cuda":
            results[name] = {"skipped": f"{name} is a CUDA setting (ignored on the CPU)"}
            continue
        cases[name] = {name: not study_speed[name]}
    # The iterations (and on CUDA their memory) live only as long as this call.
    timed = time_cases({case: build_iteration(plan, kind, device, {"speed": flipped})
                        for case, flipped in cases.items()}, repeats)
    study = timed["study"]

    def relative(key, case):
        loss, reference = _loss(timed[case][key]), _loss(study[key])
        return abs(loss - reference) / max(abs(reference), 1e-12)

    for case, row in timed.items():
        # The first step shows what the forward pass changes; the last (every case ran the same steps)
        # what the optimiser's steps add.
        first, last = relative("first_value", case), relative("last_value", case)
        results[case] = {
            "value": None if case == "study" else cases[case][case],
            **{key: row[key] for key in ("seconds_per_iteration", "min", "max", "first_call_seconds")},
            "ratio_to_study": row["seconds_per_iteration"] / study["seconds_per_iteration"],
            "first_loss_relative_difference": first, "last_loss_relative_difference": last, "steps": repeats + 2}
        if case != "study":
            saved = study["seconds_per_iteration"] - row["seconds_per_iteration"]
            results[case]["pays"] = (results[case]["ratio_to_study"] <= PAYS_RATIO
                                     and max(first, last) <= LOSS_TOLERANCE)
            results[case]["break_even_iterations"] = (
                max(0.0, row["first_call_seconds"] - study["first_call_seconds"]) / saved if saved > 0 else None)
    if device == "cuda":
        torch.cuda.empty_cache()
    return results


def loader_rates(plan, kind, device, workers=(0, 2, 4), batches=20, log=print):
    """{workers: images/s} of the stage's real training data through the production DataLoader (its
    augmentations, the step sampler), moved to `device`; or {"skipped": why} without the data."""
    import torch
    from torch.utils.data import DataLoader

    from rdd.data import build_dataset, check_available
    from rdd.train import speed_settings
    from rdd.train.batches import EpochItems, StepBatchSampler
    from rdd.train.runner import train_augmentation

    stage = timed_stages(plan)[kind]
    settings = stage.settings
    try:
        check_available(settings["data"])
    except (FileNotFoundError, ValueError) as exc:
        return {"skipped": str(exc).splitlines()[0]}
    dataset = build_dataset(settings["data"], "train", augment=train_augmentation(settings["train"]),
                            seed=settings["seed"])
    batch_size, dev = per_gpu_batch(plan, stage), torch.device(device)
    rates = {}
    for count in workers:
        speed = {**settings["speed"], "num_workers": count}
        sampler = StepBatchSampler(len(dataset), batch_size, settings["seed"], 0, batches + 1)
        loader = DataLoader(EpochItems(dataset), batch_sampler=sampler,
                            **speed_settings.loader_options(speed, dev))
        iterator = iter(loader)
        speed_settings.to_device(next(iterator), dev, speed)  # workers started, first batch ready
        started = time.perf_counter()
        for batch in iterator:
            speed_settings.to_device(batch, dev, speed)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        rates[count] = batches * batch_size / (time.perf_counter() - started)
    return rates


def print_settings(kind, results, log=print):
    log(f"  {kind}:")
    for case, row in results.items():
        if "skipped" in row:
            log(f"    {case:>15}: skipped ({row['skipped']})")
            continue
        label = "study's settings" if case == "study" else f"{case}={row['value']}"
        verdict = "" if case == "study" else ("  pays" if row["pays"] else "  does not pay")
        even = row.get("break_even_iterations")
        log(f"    {label:>22}: {row['seconds_per_iteration']:.4f} s/it (x{row['ratio_to_study']:.2f}, range "
            f"{row['min']:.4f}-{row['max']:.4f}), first call {row['first_call_seconds']:.1f} s, loss differs by "
            f"{row['first_loss_relative_difference']:.1e} at step 1, {row['last_loss_relative_difference']:.1e} at "
            f"step {row['steps']}"
            + (f", pays back after {even:.0f} iterations" if even else "") + verdict)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="fmnist", help="a study of config/config.yaml (default: fmnist)")
    parser.add_argument("--tiny", action="store_true", help="config/tiny.yaml merged over the config")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: CUDA when present")
    parser.add_argument("--stages", nargs="+", default=["teacher", "rdd"],
                        help="kinds of stage: teacher, pd_chain, pd, rcfd, rdd")
    parser.add_argument("--settings", nargs="+", default=list(TOGGLED), choices=TOGGLED)
    parser.add_argument("--repeats", type=positive_int, default=10)
    parser.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--workers", type=int, nargs="*", default=[0, 2, 4], help="loader workers to time")
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    (plan,) = load_plans([args.study], args.tiny).values()
    print(f"Speed settings of study {args.study} on {device} ({torch.get_num_threads()} threads, torch "
          f"{torch.__version__}), {args.repeats} interleaved repeats; each case flips one setting of the study's "
          f"{timed_stages(plan)['teacher'].settings['speed']}")
    for kind in args.stages:
        print_settings(kind, measure_settings(plan, kind, device, args.settings, args.repeats))
    if args.workers:
        rates = loader_rates(plan, "teacher", device, args.workers)
        print("  loader (teacher's data, images/s): " + (
            rates["skipped"] if "skipped" in rates else ", ".join(f"{w} workers {r:.0f}" for w, r in rates.items())))


if __name__ == "__main__":
    main()
