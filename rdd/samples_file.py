"""Reading a samples file (.npz from `sample` or `real-samples`, see rdd.generate) and its record.

Every command that reads one (evaluate, export-images, the grids) goes through here, so that a
missing, truncated or foreign file is named in one line, with the command that writes it again.
"""

from pathlib import Path

from rdd import io, layout
from rdd.data.quantize import check_uint8_batch

WRITERS = "`python -m rdd sample` or `python -m rdd real-samples`"


class SamplesFileError(ValueError):
    """A samples file or record that is missing, damaged or not one the suite wrote; the message names it."""


def read_samples(path):
    """(images uint8 [N, H, W, C], seeds [N]) of a samples file, checked."""
    path = Path(path)
    if problem := io.file_problem(path):
        raise SamplesFileError(f"samples file {problem}: {path} (written by {WRITERS})")
    try:
        arrays = io.read_npz(path, ("images", "seeds"), required=("images", "seeds"))
    except io.NpzError as exc:
        raise SamplesFileError(f"samples file {path} {exc}; write it again with {WRITERS}") from exc
    images, seeds = arrays["images"], arrays["seeds"]
    try:
        check_uint8_batch(images)
    except ValueError as exc:
        raise SamplesFileError(f"samples file {path}: {exc}") from exc
    if seeds.shape != (len(images),):
        raise SamplesFileError(f"samples file {path} holds {len(images)} images but seeds of shape {seeds.shape}")
    return images, seeds


def read_samples_record(path):
    """The JSON record written beside a samples file."""
    record = layout.samples_record(Path(path))
    if problem := io.file_problem(record):
        raise SamplesFileError(f"samples record {problem}: {record} (written beside {path} by {WRITERS})")
    return io.read_json(record)
