"""Peak memory and time of IS-P2P versus M-P2P (forward + backward) as batch and map size grow.

Run from the repository root:  python -m benchmarks.bench_relational_memory [--device cuda]
Each case runs in a fresh subprocess. CPU: peak resident memory of the case, i.e. the
VmHWM high-water mark (reset through /proc/self/clear_refs, Linux) minus VmRSS just before
it. CUDA: torch.cuda.max_memory_allocated minus memory_allocated just before it.
Inputs, the loss module and its 20000-slot memory exist before the baseline.
"""

import argparse
import functools
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import peak_memory  # noqa: E402

CHANNELS = 64
BATCHES = (8, 16, 32, 64, 128, 256)
MAP_SIDES = (4, 8, 16)
BATCH_SIZE_SIDE = 8  # map side of the batch sweep
MAP_SWEEP_BATCH = 32
NUM_ANCHORS = 4096
# Peak bytes per element of the B*HW x B*HW (IS-P2P) or B*HW x K (M-P2P) relation matrix:
# 7 float32 tensors of that size (scaled logits and log-softmaxes of student and teacher, KL
# terms), 28.1-28.4 measured on the CPU. Only used to skip cases; the tables print measurements.
BYTES_PER_RELATION = 28


def relation_elements(kind, batch, side):
    pixels = side * side
    return (batch * pixels) ** 2 if kind == "is_p2p" else batch * pixels * NUM_ANCHORS


def run_case(kind, batch, side, device):
    """Child process: one forward + backward for memory, then up to 3 runs for time."""
    import torch

    from rdd.losses.relational import MP2PLoss, is_p2p_loss

    torch.manual_seed(0)
    if kind == "is_p2p":
        loss_fn = is_p2p_loss
    else:
        loss_fn = MP2PLoss(CHANNELS, num_anchors=NUM_ANCHORS).to(device)

    def step(b, s):
        F_student = torch.randn(b, CHANNELS, s, s, device=device, requires_grad=True)
        F_teacher = torch.randn(b, CHANNELS, s, s, device=device)
        loss_fn(F_student, F_teacher).backward()

    step(2, 2)  # warm-up: lazy kernels, thread pools, allocator set-up
    F_student = torch.randn(batch, CHANNELS, side, side, device=device, requires_grad=True)
    F_teacher = torch.randn(batch, CHANNELS, side, side, device=device)
    baseline = peak_memory.reset(device)
    times = []
    while len(times) < 3 and sum(times) < 10.0:
        start = time.perf_counter()
        loss_fn(F_student, F_teacher).backward()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        if len(times) == 1:
            peak = peak_memory.peak_since(device, baseline)
        F_student.grad = None
    print(json.dumps({"peak_bytes": peak, "seconds": min(times)}))


@functools.cache  # a case in both sweeps (batch 32 on the 8x8 map) is measured once
def measure(kind, batch, side, device, limit_bytes):
    """Run one case in a fresh interpreter, or report it skipped when predicted above the limit."""
    predicted = BYTES_PER_RELATION * relation_elements(kind, batch, side)
    if predicted > limit_bytes:
        return {"skipped": predicted}
    return peak_memory.run_child(__file__, ["--child", kind, batch, side, device], timeout=300)


def cell(result):
    if "skipped" in result:
        return f"{'skip (~%.1f GB)' % (result['skipped'] / 1e9):>17} {'':>8}"
    return f"{result['peak_bytes'] / 2**20:>13.1f} MiB {result['seconds']:>7.3f}s"


def slope(xs, results):
    """Least-squares slope of log(peak) against log(x) over the measured cases."""
    points = [(math.log(x), math.log(r["peak_bytes"])) for x, r in zip(xs, results)
              if "peak_bytes" in r and r["peak_bytes"] > 0]
    if len(points) < 2:
        return float("nan")
    mean_x = sum(p[0] for p in points) / len(points)
    mean_y = sum(p[1] for p in points) / len(points)
    return (sum((x - mean_x) * (y - mean_y) for x, y in points)
            / sum((x - mean_x) ** 2 for x, _ in points))


def sweep(title, label, xs, cases, device, limit_bytes):
    print(f"\n{title}")
    print(f"{label:>7} | {'IS-P2P peak':>17} {'time':>8} | {'M-P2P peak':>17} {'time':>8} | IS/M mem")
    columns = {"is_p2p": [], "m_p2p": []}
    for x, (batch, side) in zip(xs, cases):
        row = {kind: measure(kind, batch, side, device, limit_bytes) for kind in columns}
        for kind in columns:
            columns[kind].append(row[kind])
        ratio = ("%8.2f" % (row["is_p2p"]["peak_bytes"] / row["m_p2p"]["peak_bytes"])
                 if all("peak_bytes" in r for r in row.values()) else "       -")
        print(f"{x:>7} | {cell(row['is_p2p'])} | {cell(row['m_p2p'])} | {ratio}", flush=True)
    return columns


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto (the default): cuda when available")
    parser.add_argument("--limit-gb", type=float, default=8.0,
                        help="skip cases predicted to need more (default 8)")
    parser.add_argument("--json", metavar="PATH",
                        help="also write the sweeps as a memory_benchmark record (see reports/README.md)")
    parser.add_argument("--child", nargs=4, metavar=("KIND", "BATCH", "SIDE", "DEVICE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, batch, side, device = args.child
        return run_case(kind, int(batch), int(side), device)

    import torch

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    what = "CUDA max_memory_allocated" if device == "cuda" else "peak RSS"
    print(f"IS-P2P vs M-P2P, forward + backward, float32, C={CHANNELS}, device {device}; "
          f"memory = increment of {what} over the pre-case baseline (fresh process per case); "
          f"M-P2P: memory 20000, K={NUM_ANCHORS}, 128 enqueued; time = best of up to 3 runs.")
    limit_bytes = args.limit_gb * 1e9
    print(f"Cases predicted above {args.limit_gb:g} GB ({BYTES_PER_RELATION} B per relation "
          "element) are skipped.")
    start = time.perf_counter()
    by_batch = sweep(f"Batch sweep ({BATCH_SIZE_SIDE}x{BATCH_SIZE_SIDE} map)", "batch", BATCHES,
                     [(b, BATCH_SIZE_SIDE) for b in BATCHES], device, limit_bytes)
    by_map = sweep(f"Map sweep (batch {MAP_SWEEP_BATCH})", "H*W", [s * s for s in MAP_SIDES],
                   [(MAP_SWEEP_BATCH, s) for s in MAP_SIDES], device, limit_bytes)
    print("\nGrowth exponents (log-log least-squares slope of peak memory, measured cases):")
    print(f"  vs batch: IS-P2P {slope(BATCHES, by_batch['is_p2p']):.2f} (expected 2), "
          f"M-P2P {slope(BATCHES, by_batch['m_p2p']):.2f} (expected 1)")
    hw = [s * s for s in MAP_SIDES]
    print(f"  vs H*W:   IS-P2P {slope(hw, by_map['is_p2p']):.2f} (expected 2), "
          f"M-P2P {slope(hw, by_map['m_p2p']):.2f} (expected 1)")
    print(f"Total wall time {time.perf_counter() - start:.0f} s")
    if args.json:
        from rdd import io, records
        from rdd.provenance import environment_record

        io.write_json(records.memory_benchmark(
            device=device, measure=f"{what} increment", channels=CHANNELS, num_anchors=NUM_ANCHORS,
            batch_sweep={"map_side": BATCH_SIZE_SIDE, "batch": list(BATCHES), **by_batch},
            map_sweep={"batch": MAP_SWEEP_BATCH, "hw": hw, **by_map},
            environment=environment_record(device)), args.json)


if __name__ == "__main__":
    main()
