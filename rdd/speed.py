"""Sampling speed of a study's models, measured in one process that holds the machine.

Every case (a model at a step count) samples the same batch of image seeds. After one
warm-up batch per case, each repeat times every case once, in an order rotated by one
from the previous repeat, so that a slow spell of the machine falls on every case
alike. Reported per case: the median images per second over repeats with its range,
and the median latency of one batch. Models with the same network at the same step
count do the same work, so their medians should agree within those ranges.
"""

import statistics
import time

import torch

from rdd.checkpoints import load_denoiser
from rdd.generate import image_shape, sample_batch


def _timed(case, seeds, device, net_batch, precision):
    net, kwargs, grid = case["loaded"]
    started = time.perf_counter()
    sample_batch(net, grid, seeds, case["steps"], image_shape(kwargs), kwargs["num_classes"], device, net_batch,
                 precision)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def measure(cases, *, batch_size, net_batch, repeats, threads, device="cpu", precision="fp32", log=print):
    """Images/s of every case ({"model", "steps", labels...}), sampled as the sample jobs do (network
    batch, precision); returns one result per case, in order."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _measure(cases, batch_size, net_batch, precision, repeats, torch.device(device), log)
    finally:
        torch.set_num_threads(previous)  # a caller in the same process keeps its own setting


def _measure(cases, batch_size, net_batch, precision, repeats, device, log):
    seeds = list(range(batch_size))
    cases = [{**case, "loaded": load_denoiser(case["model"], device, case.get("authors_net"))} for case in cases]
    for case in cases:
        _timed(case, seeds, device, net_batch, precision)  # warm-up: allocations, kernel selection
    seconds = [[] for _ in cases]
    for repeat in range(repeats):
        order = list(range(len(cases)))
        order = order[repeat % len(cases):] + order[:repeat % len(cases)]
        for i in order:
            seconds[i].append(_timed(cases[i], seeds, device, net_batch, precision))
        log(f"[speed] repeat {repeat + 1}/{repeats} done")
    results = []
    for case, times in zip(cases, seconds):
        rates = [batch_size / t for t in times]
        results.append({**{k: v for k, v in case.items() if k != "loaded"},
                        "images_per_second": statistics.median(rates), "images_per_second_low": min(rates),
                        "images_per_second_high": max(rates), "latency_per_batch_s": statistics.median(times),
                        "seconds": times})
    return results
