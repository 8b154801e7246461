"""Reference statistics of a dataset split, and metric records of a samples file.

Glue between the data layer, the samples files and rdd.metrics. A metric
record holds its values, its full protocol and the labels saying what was
evaluated (study, method, variant, steps, seed); see reports/README.md.
"""

import dataclasses
import time
from pathlib import Path

from rdd import checkpoints, io, records
from rdd.data import check_first_images, image_identity, iter_uint8_batches, normalize_spec
from rdd.metrics.inception import DEFAULT_INCEPTION_INPUT, InceptionHandle, resolve_inception
from rdd.metrics.reference import RefStats, reference_statistics, user_statistics
from rdd.metrics.scores import compute_metrics
from rdd.provenance import environment_record
from rdd.samples_file import read_samples, read_samples_record
from rdd.settings import DEFAULT_ISC_SPLIT_ORDER

# What evaluate reads of a record written by compute_reference.
REFERENCE_POINTER_KEYS = ("path", "sha256", "record", "inception")


def compute_reference(data_spec, split, out, *, limit=None, inception_weights=None,
                      inception_input=DEFAULT_INCEPTION_INPUT, cache_dir="cache", batch_size=64, device=None):
    """Statistics of `split` (first `limit` images), cached under `cache_dir`; record written to `out` (.json)."""
    spec = normalize_spec(data_spec)
    check_first_images(spec, split, limit)
    handle = resolve_inception(inception_weights, cache_dir=Path(cache_dir) / "inception",
                               inception_input=inception_input)
    identity = image_identity(spec)
    stats = reference_statistics(
        lambda: iter_uint8_batches(spec, split, batch_size=256, limit=limit), identity,
        Path(cache_dir) / "refstats", handle, split=split, num_images=limit,
        preprocessing={"dataset": "rdd.data.to_uint8 at the spec's size"}, batch_size=batch_size, device=device)
    io.write_json(records.reference(stats_path=stats.path, stats_sha256=stats.sha256, stats_record=stats.record,
                                    dataset=identity, split=split, limit=limit, inception=handle.protocol()), out)
    return out


def load_reference(path):
    """RefStats from a record written by compute_reference (.json) or a user-supplied npz."""
    path = Path(path)
    if path.suffix == ".npz":
        return user_statistics(path), None
    if problem := io.file_problem(path):
        raise FileNotFoundError(f"reference statistics record {problem}: {path} (written by `python -m rdd "
                                "ref-stats`; or pass a statistics .npz with mu and sigma)")
    pointer = io.read_json(path)
    missing = [key for key in REFERENCE_POINTER_KEYS if key not in pointer]
    if missing:
        raise ValueError(f"{path} is not a reference statistics record written by `python -m rdd ref-stats` "
                         f"(it lacks {', '.join(missing)})")
    return RefStats(pointer["path"], pointer["sha256"], pointer["record"]), pointer


def _recorded_inception(recorded):
    handle = InceptionHandle(**recorded)
    if not Path(handle.path).is_file() or io.sha256_file(handle.path) != handle.sha256:
        raise checkpoints.CheckpointError(f"Inception weights {handle.path} are missing or changed since the reference "
                                 f"statistics were computed (sha256 {handle.sha256}); recompute them")
    return handle


def _recorded_input(pointer):
    """The Inception input the reference statistics of `pointer` were made with; the default for a
    user-supplied npz (pointer None), which records none."""
    return (pointer or {}).get("inception", {}).get("inception_input", DEFAULT_INCEPTION_INPUT)


def _size_problem(shape, pointer):
    """Why images of `shape` (H, W, C) must not be scored against the reference of `pointer`, or None.

    Inception resizes every image to 299x299, so a mismatch gives a number, but one that measures
    the resizing as much as the model."""
    dataset = (pointer or {}).get("dataset") or {}
    if "image_size" not in dataset:  # user-supplied statistics say nothing of their images
        return None
    size, channels = dataset["image_size"], dataset.get("channels", shape[2])
    if tuple(shape) == (size, size, channels):
        return None
    return (f"the images are {shape[0]}x{shape[1]} with {shape[2]} channel(s), but the reference statistics "
            f"were computed from {size}x{size} images with {channels} ({dataset.get('name', 'a dataset')}); "
            "score samples against statistics of images of their own size")


def evaluate(samples, ref_stats, out, *, labels=None, inception_weights=None, inception_input=None,
             isc_split_order=DEFAULT_ISC_SPLIT_ORDER, cache_dir="cache", batch_size=64, device=None):
    """FID/KID/IS of a samples file (.npz beside its .json record) against reference statistics.

    `inception_input` None takes the reference statistics' (torch-fidelity's for a user-supplied npz);
    another one than theirs is refused. `isc_split_order`: how IS splits the images (rdd.settings)."""
    started = time.perf_counter()
    samples = Path(samples)
    images, _ = read_samples(samples)
    sampling = read_samples_record(samples)
    ref, pointer = load_reference(ref_stats)
    if problem := _size_problem(images.shape[1:], pointer):
        raise ValueError(f"{samples}: {problem}")
    if inception_weights is None and pointer is not None:
        handle = _recorded_inception(pointer["inception"])  # the network the statistics were made with
    else:
        handle = resolve_inception(inception_weights, cache_dir=Path(cache_dir) / "inception",
                                   inception_input=_recorded_input(pointer))
    if inception_input is not None:
        handle = dataclasses.replace(handle, inception_input=inception_input)  # a mismatch is refused below
    scores = compute_metrics(images, ref, handle, batch_size=batch_size, device=device, isc_split_order=isc_split_order)
    record = records.metric(scores=scores, extractor=handle.protocol(), reference_stats=ref,
                            reference_pointer=pointer, sampling=sampling, labels=labels or {},
                            wall_seconds=time.perf_counter() - started,
                            environment=environment_record(device))
    io.write_json(record, out)
    return record
