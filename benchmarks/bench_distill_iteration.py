"""Wall time and peak memory of one distillation iteration for PD, RCFD and RDD, from a study's plan.

Run from the repository root:

    python benchmarks/bench_distill_iteration.py                         # the embedded default
    python benchmarks/bench_distill_iteration.py --overlay sizes.yaml    # a config overlay, e.g. other sizes
    python benchmarks/bench_distill_iteration.py --study cifar10 --device cuda

Each method's iteration is its first round of the study (its settings, teacher and classifier
networks, per-GPU batch; benchmarks/plan_iterations.py) and the production step. Times are measured
in this one process with the methods interleaved round-robin, and reported as medians and as ratios
to PD; peak memory of each method comes from a fresh process (see peak_memory.py).
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import peak_memory  # noqa: E402
from benchmarks.plan_iterations import build_iteration, load_plans, per_gpu_batch, timed_stages  # noqa: E402
from rdd import io, methods  # noqa: E402
from rdd.cli import positive_int  # noqa: E402

METHODS = tuple(methods.method_names(distilled=True))


def plan_of(args):
    overlay = io.read_yaml(args.overlay) if args.overlay else None
    return load_plans([args.study], args.tiny, overlay)[args.study]


def child(method, args, device):
    """Fresh process: one warm-up iteration, then the peak of one iteration."""
    iteration = build_iteration(plan_of(args), method, device)
    iteration()
    baseline = peak_memory.reset(device)
    iteration()
    print(json.dumps({"peak_bytes": peak_memory.peak_since(device, baseline)}))


def describe(plan):
    stages = timed_stages(plan)
    teacher, rdd = stages["teacher"].settings, stages["rdd"].settings
    data, net = teacher["data"], teacher["net"]
    batch = per_gpu_batch(plan, stages["rdd"])
    return (f"study {plan.name}: first round {stages['rdd'].labels['round']}, batch {batch} per GPU, "
            f"{data['image_size']}x{data['image_size']}x{data['channels']}, UNet ch {net['ch']} mult "
            f"{net['ch_mult']} attn {net['attn']} {net['num_res_blocks']} res block(s), classifier "
            f"{plan.stages[stages['rdd'].classifier].settings['net']['name']}; M-P2P memory {rdd['memory_size']}, "
            f"K {rdd['num_anchors']}, {rdd['enqueue_per_step']} enqueued")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="fmnist", help="a study of config/config.yaml (default: fmnist)")
    parser.add_argument("--tiny", action="store_true", help="config/tiny.yaml merged over the config")
    parser.add_argument("--overlay", help="a YAML config overlay merged last (e.g. other sizes)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None)
    parser.add_argument("--rounds", type=positive_int, default=5, help="timed iterations per method")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.child:
        return child(args.child, args, device)

    plan = plan_of(args)
    print(f"One distillation iteration per method, {describe(plan)}; device {device}, "
          f"{torch.get_num_threads()} threads.")
    iterations = {m: build_iteration(plan, m, device) for m in METHODS}
    for it in iterations.values():
        it()  # warm-up
    times = {m: [] for m in METHODS}
    for _ in range(args.rounds):
        for m in METHODS:
            start = time.perf_counter()
            iterations[m]()
            times[m].append(time.perf_counter() - start)
    forwarded = sys.argv[1:]
    peaks = {m: peak_memory.run_child(__file__, forwarded + ["--child", m])["peak_bytes"] for m in METHODS}
    pd_time, pd_peak = statistics.median(times["pd"]), peaks["pd"]
    print(f"{'method':>6} | {'median s/it':>11} | {'x PD':>5} | {'peak MiB':>9} | {'x PD':>5}")
    for m in METHODS:
        t = statistics.median(times[m])
        print(f"{m:>6} | {t:>11.3f} | {t / pd_time:>5.2f} | {peaks[m] / 2**20:>9.1f} | {peaks[m] / pd_peak:>5.2f}")
    ratio = statistics.median(times["rdd"]) / pd_time
    print(f"Goal: RDD at most 1.5x a PD iteration -> {ratio:.2f}x: {'met' if ratio <= 1.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
