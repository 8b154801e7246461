"""Sampling speed of a study's models, measured in one process that holds the machine.

Every case (a model at a step count) samples the same batch of image seeds. After one
warm-up batch per case, each repeat times every case once, in an order rotated by one
from the previous repeat, so that a slow spell of the machine falls on every case
alike. A timing samples the batch as many times as the warm-up says it takes to last
`min_seconds`: a timing of a fraction of a second varies with the clock's and the
machine's small hiccups. Reported per case: the median images per second over repeats
with its range, and the median latency of one batch. Models with the same network at
the same step count do the same work, so their medians should agree within those ranges.
"""

import math
import statistics
import time

import torch

from rdd.checkpoints import load_denoiser
from rdd.generate import image_shape, sample_batch
from rdd.nets.configs import check_unet_arguments
from rdd.values import brief, is_int, is_number


def check_cases(cases, source):
    """ValueError naming `source` and the case unless `cases` is a non-empty list of {model: a path, steps: a
    positive integer, authors_net: UNet arguments (optional, for an authors' checkpoint), labels: plain
    values (the result carries them)}, each model at each step count once."""
    if not isinstance(cases, list) or not cases:
        raise ValueError(f"{source} must hold 'cases': a non-empty list of {{model, steps, labels...}}")
    seen = {}
    for i, case in enumerate(cases):
        where = f"{source}: cases[{i}]"
        if not isinstance(case, dict):
            raise ValueError(f"{where} must be a mapping {{model, steps, labels...}}, got {brief(case)}")
        model, steps = case.get("model"), case.get("steps")
        if not isinstance(model, str) or not model:
            raise ValueError(f"{where}: 'model' must be a model file's path, got {brief(model)}")
        if not is_int(steps) or steps < 1:
            raise ValueError(f"{where}: 'steps' must be a positive integer, got {brief(steps)}")
        if "authors_net" in case:
            try:
                check_unet_arguments(case["authors_net"])
            except ValueError as exc:
                raise ValueError(f"{where}: 'authors_net': {exc}") from None
        for key, value in case.items():
            if key not in ("model", "steps", "authors_net") and not (
                    value is None or isinstance(value, (str, bool)) or is_number(value)):
                raise ValueError(f"{where}: the label {key!r} must be text, a number, true/false or null, got "
                                 f"{brief(value)}")
        if (first := seen.setdefault((model, steps), i)) != i:
            raise ValueError(f"{where} times {model} at {steps} steps again (cases[{first}] does)")


def batches_per_timing(warmup_seconds, min_seconds):
    """How many batches one timing samples so that it lasts about `min_seconds` (at least one)."""
    if min_seconds <= 0:
        return 1
    return max(1, math.ceil(min_seconds / max(warmup_seconds, 1e-9)))


def _timed(case, seeds, device, net_batch, precision, batches=1):
    net, kwargs, grid = case["loaded"]
    started = time.perf_counter()
    for _ in range(batches):
        sample_batch(net, grid, seeds, case["steps"], image_shape(kwargs), kwargs["num_classes"], device,
                     net_batch, precision)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def measure(cases, *, batch_size, net_batch, repeats, min_seconds, threads, device="cpu", precision="fp32",
            log=print):
    """Images/s of every case ({"model", "steps", labels...}), sampled as the sample jobs do (network
    batch, precision); returns one result per case, in order."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _measure(cases, batch_size, net_batch, precision, repeats, min_seconds, torch.device(device), log)
    finally:
        torch.set_num_threads(previous)  # a caller in the same process keeps its own setting


def _measure(cases, batch_size, net_batch, precision, repeats, min_seconds, device, log):
    seeds = list(range(batch_size))
    cases = [{**case, "loaded": load_denoiser(case["model"], device, case.get("authors_net"))} for case in cases]
    # The warm-up (allocations, kernel selection) also sizes each case's timings.
    batches = [batches_per_timing(_timed(case, seeds, device, net_batch, precision), min_seconds)
               for case in cases]
    seconds = [[] for _ in cases]
    for repeat in range(repeats):
        order = list(range(len(cases)))
        order = order[repeat % len(cases):] + order[:repeat % len(cases)]
        for i in order:
            seconds[i].append(_timed(cases[i], seeds, device, net_batch, precision, batches[i]) / batches[i])
        log(f"[speed] repeat {repeat + 1}/{repeats} done")
    results = []
    for case, times, count in zip(cases, seconds, batches):
        rates = [batch_size / t for t in times]
        results.append({**{k: v for k, v in case.items() if k != "loaded"},
                        "images_per_second": statistics.median(rates), "images_per_second_low": min(rates),
                        "images_per_second_high": max(rates), "latency_per_batch_s": statistics.median(times),
                        "batches_per_timing": count, "seconds": times})
    return results
