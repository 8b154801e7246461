"""Wall time and peak memory of one distillation iteration for PD, RCFD and RDD.

Run from the repository root:  python benchmarks/bench_distill_iteration.py [--device cuda]
Same teacher/student, classifier and batch for every method (default: the
embedded default's sizes); each iteration is the production step (rdd.train.loop.train_step on the
round's stage: lr schedule, zero_grad, backward, head gradients, clipping, every optimiser). Times are measured in this one process with the
methods interleaved round-robin, and reported as medians and as ratios to PD;
peak memory of each method comes from a fresh process (see peak_memory.py).
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import peak_memory  # noqa: E402
from rdd import methods  # noqa: E402

METHODS = tuple(methods.method_names(distilled=True))


def build(method, args, device):
    """A one-iteration closure for `method`: the production round stage and training step."""
    import torch

    from rdd.diffusion import TimeGrid
    from rdd.nets import build_classifier, build_unet
    from rdd.settings import resolve
    from rdd.train.loop import train_step
    from rdd.train.round import check_relation_groups, round_stage

    torch.manual_seed(0)
    size = args.image_size
    net_kwargs = {"img_resolution": size, "in_channels": args.channels, "ch": args.ch, "ch_mult": args.ch_mult,
                  "attn": args.attn, "num_res_blocks": args.num_res_blocks, "dropout": 0.1, "num_classes": 0}
    teacher = build_unet(**net_kwargs).to(device).eval()
    classifier = build_classifier(args.classifier, 10, args.channels).to(device).eval().requires_grad_(False)
    settings = resolve("distill", {"method": method, "device": {"device": device},
                                   "train": {"batch_size": args.batch, "lr": 5e-5}})
    check_relation_groups(settings)
    stage, _ = round_stage(settings, torch.device(device), teacher, net_kwargs, TimeGrid(8, 1024), classifier,
                           log=lambda message: None)
    batch = (torch.rand(args.batch, args.channels, size, size) * 2 - 1, torch.zeros(args.batch, dtype=torch.long))
    steps = iter(range(1 << 30))

    def iteration():
        train_step(stage, batch, next(steps), settings["seed"])
        if device == "cuda":
            torch.cuda.synchronize()

    return iteration


def child(method, args, device):
    """Fresh process: one warm-up iteration, then the peak of one iteration."""
    import json

    iteration = build(method, args, device)
    iteration()
    baseline = peak_memory.reset(device)
    iteration()
    print(json.dumps({"peak_bytes": peak_memory.peak_since(device, baseline)}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--ch", type=int, default=32)
    parser.add_argument("--ch-mult", type=int, nargs="+", default=[1, 2, 2])
    parser.add_argument("--attn", type=int, nargs="*", default=[])
    parser.add_argument("--num-res-blocks", type=int, default=1)
    parser.add_argument("--classifier", default="densenet_small")
    parser.add_argument("--rounds", type=int, default=5, help="timed iterations per method")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.child:
        return child(args.child, args, device)

    print(f"One distillation iteration (8 -> 4 round), batch {args.batch}, {args.image_size}x{args.image_size}x"
          f"{args.channels}, UNet ch {args.ch} mult {args.ch_mult} attn {args.attn} "
          f"{args.num_res_blocks} res block(s), classifier {args.classifier}, device {device}, "
          f"{torch.get_num_threads()} threads; M-P2P memory 20000, K 4096, 128 enqueued.")
    iterations = {m: build(m, args, device) for m in METHODS}
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
