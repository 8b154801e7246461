"""The JSON records the commands write beside their outputs: one builder per kind, one shape each.

    training   beside every model (train-teacher, train-classifier, distill)
    samples    beside every samples file (sample)
    reference  results/<study>/reference/<split>.json (ref-stats): points at cached statistics
    metric     results/<study>/metrics/... (evaluate)
    memory     results/<study>/memory_benchmark.json (benchmarks/bench_relational_memory.py)
    speed      results/<study>/speed_benchmark.json (speed-benchmark): images/s of every model

Each carries `kind` and the provenance of the run (`code`, `packages`, `machine`
from rdd.provenance.environment_record). The commands, the report and the
report's test fixtures all build or read records through this module, so a
field is written once, in one place, and read under one name. No torch here.
"""

import statistics

# The `kind` of each record, which is also the kind of its entry in a study's manifest.
KINDS = ("training", "samples", "reference", "metric", "memory_benchmark", "speed_benchmark")

# metric["metrics"]: the values (None with a reason when a metric cannot be computed).
METRIC_VALUES = ("fid", "fid_ci95_low", "fid_ci95_high", "kid_mean", "kid_std", "kid_ci95_low",
                 "kid_ci95_high", "is_mean", "is_std", "is_ci95_low", "is_ci95_high", "is_unavailable_reason",
                 "kid_unavailable_reason")
# torch-fidelity's names in rdd.metrics.scores
_SCORE_NAMES = {"is_mean": "isc_mean", "is_std": "isc_std", "is_ci95_low": "isc_ci95_low",
                "is_ci95_high": "isc_ci95_high"}
_REASONS = {"is_unavailable_reason": "isc", "kid_unavailable_reason": "kid"}  # why a metric is None


def training(command, settings, *, started_unix, train_seconds, world_size, final_terms, details, environment):
    """A training run: its full settings, time, last logged terms, and the command's own `details`
    (e.g. the classifier's test accuracy, a round's loss weights), which sit at the top level."""
    return {"kind": "training", "command": command, "settings": settings, "started_unix": started_unix,
            "train_seconds_this_run": train_seconds, "world_size": world_size, "final_terms": final_terms,
            **details, **environment}


def samples(*, model, steps, T, seeds, batch_size, net_batch, precision, latencies, wall_seconds, environment):
    """A samples file: its model, steps (NFE = steps for DDIM), seeds, how the network ran (images per
    call, the float32 precision it ran in), and the speed measured while sampling; `latencies` holds
    (images, seconds) per batch. Real images have no network: net_batch and precision None."""
    full = [seconds for n, seconds in latencies if n == batch_size]
    timed = sum(seconds for _, seconds in latencies)
    return {"kind": "samples", "model": str(model), "steps": steps, "nfe": steps, "T": T, "num_images": len(seeds),
            "seed_first": int(seeds[0]), "seed_last": int(seeds[-1]), "batch_size": batch_size,
            "net_batch": net_batch, "precision": precision,
            "speed": {"images_per_second": sum(n for n, _ in latencies) / timed if latencies else None,
                      "median_latency_per_full_batch_s": statistics.median(full) if full else None,
                      "batches_timed": len(latencies)},
            "wall_seconds": wall_seconds, **environment}


def reference(*, stats_path, stats_sha256, stats_record, dataset, split, limit, inception):
    """Reference statistics of a dataset split: the cached statistics file (content-addressed, shared
    by studies), its own record, and the Inception weights they were computed with."""
    return {"kind": "reference", "path": str(stats_path), "sha256": stats_sha256, "dataset": dataset,
            "split": split, "limit": limit, "record": stats_record, "inception": inception}


def metric(*, scores, extractor, reference_stats, reference_pointer, sampling, labels, wall_seconds, environment):
    """FID/KID/IS of one samples file with everything needed to judge it.

    `scores` is rdd.metrics.scores' result (values, unavailable, settings); `extractor` the
    Inception handle's protocol; `reference_stats` the RefStats used; `reference_pointer` the
    reference record it came from (None for a user-supplied npz); `sampling` the samples record.
    """
    values, unavailable, settings = scores["values"], scores["unavailable"], scores["settings"]
    ref = reference_stats.record
    return {
        "kind": "metric",
        "metrics": {key: values[_SCORE_NAMES.get(key, key)] for key in METRIC_VALUES if key not in _REASONS}
                   | {key: unavailable.get(metric) for key, metric in _REASONS.items()},
        "protocol": {
            "extractor": extractor["extractor_name"], "inception_input": extractor["inception_input"],
            "weights_source": extractor["source"],
            "weights_path": extractor["path"], "weights_sha256": extractor["sha256"],
            "reference": {"path": reference_stats.path, "sha256": reference_stats.sha256,
                          "num_images": ref.get("num_images"), "source": ref.get("source"),
                          "dataset": reference_pointer["dataset"] if reference_pointer else None,
                          "split": reference_pointer["split"] if reference_pointer else None},
            "num_generated": scores["num_generated"],
            "kid_subset_size": settings.get("kid", {}).get("subset_size"),
            "seed_first": sampling["seed_first"], "seed_last": sampling["seed_last"],
            "steps": sampling["steps"], "nfe": sampling["nfe"], "net_batch": sampling.get("net_batch"),
            "sampling_precision": sampling.get("precision"), "settings": settings,
            "implementation": scores["implementation"]},
        "labels": {**labels, "model": sampling["model"], "steps": sampling["steps"]},
        "wall_seconds": wall_seconds,
        **environment,
    }


def memory_benchmark(*, device, measure, channels, num_anchors, batch_sweep, map_sweep, environment):
    """Peak memory and time of IS-P2P and M-P2P over batch sizes and feature-map sizes."""
    return {"kind": "memory_benchmark", "benchmark": "bench_relational_memory", "device": device, "measure": measure,
            "channels": channels, "num_anchors": num_anchors, "batch_sweep": batch_sweep, "map_sweep": map_sweep,
            **environment}


def speed_benchmark(*, results, batch_size, net_batch, precision, repeats, min_seconds, threads, device,
                    wall_seconds, environment):
    """Sampling speed of a study's models measured in one process holding the machine (rdd.speed):
    per case its labels, model, steps, median images/s over `repeats` with their range, batch latency,
    the batches each timing sampled (to last `min_seconds`) and each repeat's seconds per batch."""
    return {"kind": "speed_benchmark", "cases": results, "batch_size": batch_size, "net_batch": net_batch,
            "precision": precision, "repeats": repeats, "min_seconds": min_seconds, "threads": threads,
            "device": str(device), "wall_seconds": wall_seconds, **environment}
