"""Reference statistics of a dataset split, and metric records of a samples file.

Glue between the data layer, the samples files and rdd.metrics. A metric
record holds its values, its full protocol and the labels saying what was
evaluated (study, method, variant, steps, seed); see reports/README.md.
"""

import time
from pathlib import Path

import numpy as np

from rdd import checkpoints, io
from rdd.data import check_available, iter_uint8_batches, normalize_spec
from rdd.metrics.inception import InceptionHandle, resolve_inception, sha256_file
from rdd.metrics.reference import RefStats, reference_statistics, user_statistics
from rdd.metrics.scores import compute_metrics
from rdd.provenance import environment_record

DATASET_IDENTITY = ("name", "image_size", "channels", "resize")


def compute_reference(data_spec, split, out, *, limit=None, inception_weights=None, cache_dir="cache",
                      batch_size=64, device=None):
    """Statistics of `split` (first `limit` images), cached under `cache_dir`; record written to `out` (.json)."""
    spec = normalize_spec(data_spec)
    check_available(spec, [split])
    handle = resolve_inception(inception_weights, cache_dir=Path(cache_dir) / "inception")
    identity = {k: spec[k] for k in DATASET_IDENTITY if k in spec}
    stats = reference_statistics(
        lambda: iter_uint8_batches(spec, split, batch_size=256, limit=limit), identity,
        Path(cache_dir) / "refstats", handle, split=split, num_images=limit,
        preprocessing={"dataset": "rdd.data.to_uint8 at the spec's size"}, batch_size=batch_size, device=device)
    io.write_json({"kind": "reference-statistics-pointer", "path": stats.path, "sha256": stats.sha256,
                   "dataset": identity, "split": split, "limit": limit, "record": stats.record,
                   "inception": handle.protocol()}, out)
    return out


def load_reference(path):
    """RefStats from a record written by compute_reference (.json) or a user-supplied npz."""
    path = Path(path)
    if path.suffix == ".npz":
        return user_statistics(path), None
    pointer = io.read_json(path)
    return RefStats(pointer["path"], pointer["sha256"], pointer["record"]), pointer


def _recorded_inception(recorded):
    handle = InceptionHandle(**recorded)
    if not Path(handle.path).is_file() or sha256_file(handle.path) != handle.sha256:
        raise checkpoints.CheckpointError(f"Inception weights {handle.path} are missing or changed since the reference "
                                 f"statistics were computed (sha256 {handle.sha256}); recompute them")
    return handle


def evaluate(samples, ref_stats, out, *, labels=None, inception_weights=None, cache_dir="cache",
             batch_size=64, device=None):
    """FID/KID/IS of a samples file (.npz beside its .json record) against reference statistics."""
    started = time.perf_counter()
    samples = Path(samples)
    sampling = io.read_json(samples.with_suffix(".json"))
    ref, pointer = load_reference(ref_stats)
    if inception_weights is None and pointer is not None:
        handle = _recorded_inception(pointer["inception"])  # the network the statistics were made with
    else:
        handle = resolve_inception(inception_weights, cache_dir=Path(cache_dir) / "inception")
    with np.load(samples) as npz:
        images, seeds = npz["images"], npz["seeds"]
    protocol = {"model": sampling["model"], "steps": sampling["steps"],
                "seeds": [int(seeds[0]), int(seeds[-1])], **(labels or {})}
    details = compute_metrics(images, ref, handle, protocol, batch_size=batch_size, device=device)
    values, unavailable = details["values"], details["unavailable"]
    reference = {"path": ref.path, "sha256": ref.sha256, "num_images": ref.record.get("num_images"),
                 "source": ref.record.get("source"),
                 "dataset": pointer["dataset"] if pointer else None, "split": pointer["split"] if pointer else None}
    record = {
        "metrics": {"fid": values["fid"], "fid_ci95_low": values["fid_ci95_low"],
                    "fid_ci95_high": values["fid_ci95_high"], "kid_mean": values["kid_mean"],
                    "kid_std": values["kid_std"],
                    "is_mean": values["isc_mean"], "is_std": values["isc_std"],
                    "is_unavailable_reason": unavailable.get("isc"),
                    "kid_unavailable_reason": unavailable.get("kid")},
        "protocol": {"extractor": handle.extractor_name, "weights_source": handle.source,
                     "weights_path": handle.path, "weights_sha256": handle.sha256, "reference": reference,
                     "num_generated": int(len(images)),
                     "kid_subset_size": details["protocol"]["settings"].get("kid", {}).get("subset_size"),
                     "seed_first": int(seeds[0]), "seed_last": int(seeds[-1]),
                     "steps": sampling["steps"], "nfe": sampling["nfe"], "net_batch": sampling.get("net_batch")},
        "labels": {**(labels or {}), "model": sampling["model"], "steps": sampling["steps"]},
        "wall_seconds": time.perf_counter() - started,
        "details": details,
        **environment_record(device),
    }
    io.write_json(record, out)
    return record
