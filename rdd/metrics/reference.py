"""Reference statistics of a dataset split: computed once, cached as npz + JSON record, reused.

The cache key holds the dataset identity (a dict from the caller), the split,
the number of images, the preprocessing (the caller's and the Inception input's)
and the extractor with the sha256 of its weights; any change gives a new key and
a recomputation. A user-supplied npz (mu, sigma, optionally features) can stand
in for computed statistics.
"""

import hashlib
import io
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch_fidelity.metric_fid import fid_features_to_statistics

from rdd.io import (NpzError, file_problem, one_at_a_time, read_json, read_npz, sha256_file, write_bytes,
                    write_json)
from rdd.metrics.features import extract_features
from rdd.metrics.inception import INPUT_PIPELINES
from rdd.provenance import package_versions

NO_FEATURES_REASON = "the reference statistics file {path} holds mu and sigma only (no features)"


class StatisticsFileError(RuntimeError):
    """A statistics file that is missing, corrupt, truncated or malformed; the message names it."""


@dataclass(frozen=True)
class RefStats:
    """A reference statistics npz, its sha256 and its JSON record."""

    path: str
    sha256: str
    record: dict

    def arrays(self):
        """mu, sigma (float64) and features (float32 or None) read from the npz, checked against sha256."""
        sha256 = sha256_file(self.path) if Path(self.path).is_file() else None
        if sha256 is not None and sha256 != self.sha256:
            raise StatisticsFileError(f"statistics file {self.path} changed since it was recorded "
                                      f"(sha256 {sha256}, recorded {self.sha256})")
        return load_statistics_npz(self.path)


def load_statistics_npz(path):
    """Read and check a statistics npz: mu [D], sigma [D, D], optional features [N, D]."""
    path = Path(path)
    if problem := file_problem(path):
        raise StatisticsFileError(f"statistics file {problem}: {path}")
    try:
        arrays = read_npz(path, required=("mu", "sigma"))
    except NpzError as exc:
        raise StatisticsFileError(f"statistics file {path} {exc}") from exc
    mu, sigma, features = arrays["mu"], arrays["sigma"], arrays.get("features")
    dim = mu.shape[0] if mu.ndim == 1 else -1
    bad_features = features is not None and (features.ndim != 2 or features.shape[1] != dim or len(features) < 2)
    if dim < 1 or sigma.shape != (dim, dim) or bad_features:
        shapes = {k: v.shape for k, v in arrays.items()}
        raise StatisticsFileError(f"statistics file {path} has inconsistent shapes {shapes}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise StatisticsFileError(f"statistics file {path} holds non-finite mu or sigma")
    return {
        "mu": mu.astype(np.float64),
        "sigma": sigma.astype(np.float64),
        "features": None if features is None else features.astype(np.float32),
    }


def features_to_statistics(features):
    """mu and sigma (float64) of features [N, D] with torch-fidelity's fid_features_to_statistics."""
    stats = fid_features_to_statistics(torch.from_numpy(np.ascontiguousarray(features)))
    return {"mu": stats["mu"].astype(np.float64), "sigma": stats["sigma"].astype(np.float64)}


def _cache_key(dataset_id, split, num_images, preprocessing, handle):
    key = {
        "dataset": dataset_id,
        "split": split,
        "num_images": num_images,
        "preprocessing": {"pipeline": INPUT_PIPELINES[handle.inception_input], "caller": preprocessing},
        "extractor": {"name": handle.extractor_name, "weights_sha256": handle.sha256},
    }
    # Round-trip through JSON (paths become strings) so the stored key compares equal to the one read back.
    key = json.loads(json.dumps(key, sort_keys=True, default=str))
    return key, hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _first_images(batches, num_images):
    remaining = num_images
    for batch in batches:
        batch = batch[:remaining]
        yield batch
        remaining -= len(batch)
        if remaining <= 0:
            return


def _cached(npz_path, key):
    """The statistics cached at `npz_path` for `key`, or None; a file that does not match its record is
    named."""
    json_path = npz_path.with_suffix(".json")
    if not (json_path.is_file() and npz_path.is_file()):
        return None
    record = read_json(json_path)
    if record.get("key") != key:
        return None
    sha256 = sha256_file(npz_path)
    if sha256 != record["sha256"]:
        raise StatisticsFileError(
            f"cached statistics file {npz_path} does not match its record {json_path} "
            f"(sha256 {sha256} != {record['sha256']}); delete both to recompute"
        )
    return RefStats(str(npz_path), sha256, record)


def reference_statistics(batches_factory, dataset_id, cache_dir, handle, split="train", num_images=None,
                         preprocessing=None, batch_size=64, device=None):
    """Statistics of `batches_factory()` (uint8 NHWC batches), computed once per cache key and reused.

    `num_images=None` takes every image; `preprocessing` describes what the caller did to the pixels.
    """
    if num_images is not None and num_images < 2:
        raise ValueError(f"num_images must be at least 2 (a covariance needs two samples), got {num_images}")
    key, key_sha = _cache_key(dataset_id, split, num_images, preprocessing, handle)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{dataset_id.get('name', 'dataset')}-{split}")
    npz_path = Path(cache_dir) / f"ref-{name}-{key_sha[:16]}.npz"
    json_path = npz_path.with_suffix(".json")
    # Written whole (the statistics, then their record), a cache entry is read without a lock (and so from
    # a read-only cache). A missing one is computed once: two jobs that need it at once (two studies of one
    # dataset, nodes sharing the cache) would each compute it and could pair one's file with the other's
    # record, so the first computes while the other waits, then reads it.
    if cached := _cached(npz_path, key):
        return cached
    with one_at_a_time(npz_path.with_suffix(".lock")):
        if cached := _cached(npz_path, key):
            return cached

        start = time.perf_counter()
        batches = batches_factory()
        if num_images is not None:
            batches = _first_images(batches, num_images)
        features, _ = extract_features(batches, handle, batch_size=batch_size, device=device)
        if len(features) < max(2, num_images or 0):
            raise ValueError(f"{dataset_id} split {split!r} gave {len(features)} images, {num_images or 2} needed")
        stats = features_to_statistics(features)
        buffer = io.BytesIO()
        np.savez(buffer, mu=stats["mu"], sigma=stats["sigma"], features=features)
        data = buffer.getvalue()
        write_bytes(data, npz_path)
        record = {
            "kind": "reference-statistics",
            "source": "computed",
            "key": key,
            "key_sha256": key_sha,
            "num_images": len(features),
            "file": str(npz_path),
            "sha256": hashlib.sha256(data).hexdigest(),
            "extractor": handle.protocol(),
            "kid_available": True,
            "versions": package_versions(),
            "wall_time_s": time.perf_counter() - start,
        }
        write_json(record, json_path)
        return RefStats(str(npz_path), record["sha256"], record)



def user_statistics(path):
    """Accept a user-supplied statistics npz (mu, sigma; features optional) as reference statistics."""
    arrays = load_statistics_npz(path)
    has_features = arrays["features"] is not None
    record = {
        "kind": "reference-statistics",
        "source": "user-supplied",
        "file": str(path),
        "sha256": sha256_file(path),
        "num_images": len(arrays["features"]) if has_features else None,
        "extractor": "not recorded in a user-supplied file; assumed the FID Inception pool3 features",
        "kid_available": has_features,
    }
    if not has_features:
        record["kid_unavailable_reason"] = NO_FEATURES_REASON.format(path=path)
        record["num_images_note"] = "a mu/sigma file does not record how many images it came from"
    return RefStats(str(path), record["sha256"], record)
