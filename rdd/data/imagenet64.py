"""Downsampled ImageNet 64x64 (1000 classes) in its published npz batch format.

Files under root: train_data_batch_1..10.npz and val_data.npz (the "test" split),
each holding `data` uint8 [N, 12288] (R, G and B planes of 64x64, row-major) and
`labels` 1..1000 (returned as 0..999). Only the labels are read up front; the
image arrays are memory-mapped on first use: in place when the npz member is
stored uncompressed, otherwise from a one-off decompressed .npy copy in
<root>/_extracted/.
"""

import shutil
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np

from rdd import io
from rdd.data.missing import missing_error

NUM_CLASSES = 1000
NATIVE_SIZE = 64
FILES = {"train": [f"train_data_batch_{i}.npz" for i in range(1, 11)], "test": ["val_data.npz"]}
URL = "https://image-net.org/download-images"
EXTRACT_DIR = "_extracted"


def check(spec, splits):
    """Raise DatasetMissingError unless every npz file of `splits` exists."""
    absent = [p for s in splits for f in FILES[s] if not (p := Path(spec["root"]) / f).is_file()]
    if absent:
        how = (f"download 'Downsampled ImageNet 64x64' (npz format) from {URL} (free account) and unpack "
               f"the train and val archives so that these files lie directly in {spec['root']}")
        raise missing_error("imagenet64", absent, how)


def _read_npy_header(f):
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return read(f)  # shape, fortran_order, dtype


def _extract_member(npz_path, member, target):
    """Decompress one npz member to `target` atomically, streaming (members can be GBs), once: the
    first process that needs it decompresses while the others (loader workers, other ranks, a
    statistics job beside a training) wait for its file, instead of each writing a copy of its own
    at the same time. The lock file stays beside the copy."""
    with io.one_at_a_time(target.with_name(target.name + ".lock")):
        if target.is_file():  # made while this process waited
            return

        def copy(out):
            with zipfile.ZipFile(npz_path) as z, z.open(member) as src:
                shutil.copyfileobj(src, out, length=1 << 24)
        print(f"[imagenet64] decompressing {member} of {npz_path} to {target} (once)", file=sys.stderr, flush=True)
        io.write_with(target, copy)


def _data_info(npz_path):
    with zipfile.ZipFile(npz_path) as z:
        return z.getinfo("data.npy")


def _extracted_copy(npz_path, extract_dir, info):
    """Where the decompressed `data` of `npz_path` (its zip entry `info`) goes when the npz stores it
    compressed, else None."""
    compressed = info.compress_type != zipfile.ZIP_STORED
    return Path(extract_dir) / f"{Path(npz_path).stem}.data.npy" if compressed else None


def open_data(npz_path, extract_dir):
    """The `data` array of an npz file, memory-mapped read-only."""
    info = _data_info(npz_path)
    if target := _extracted_copy(npz_path, extract_dir, info):
        if not target.is_file():
            _extract_member(npz_path, "data.npy", target)
        return np.load(target, mmap_mode="r")
    with open(npz_path, "rb") as f:
        # the member's bytes follow its local header (30 bytes, then name and extra field)
        f.seek(info.header_offset)
        local = f.read(30)
        if local[:4] != b"PK\x03\x04":
            raise ValueError(f"{npz_path}: broken zip local header for data.npy")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        shape, fortran_order, dtype = _read_npy_header(f)
        offset = f.tell()
    return np.memmap(npz_path, dtype=dtype, mode="r", shape=shape, offset=offset,
                     order="F" if fortran_order else "C")


def _read_labels(path):
    """The 0-based labels of one batch file, after checking it holds `data` too (read later, mapped)."""
    try:
        labels = io.read_npz(path, ["labels"], required=("data", "labels"))["labels"]
    except io.NpzError as exc:
        raise ValueError(f"ImageNet 64x64 batch {path} {exc}") from exc
    if labels.ndim != 1 or (labels.size and (labels.min() < 1 or labels.max() > NUM_CLASSES)):
        raise ValueError(f"{path}: labels must be a 1-d array of values 1..{NUM_CLASSES}")
    return labels.astype(np.int64) - 1


class ImageNet64Source:
    """Labels of one split in memory; images read from memory-mapped batch files on demand."""

    def __init__(self, spec, split):
        check(spec, [split])
        root = Path(spec["root"])
        self.paths = [root / f for f in FILES[split]]
        self.extract_dir = root / EXTRACT_DIR
        per_file = [_read_labels(p) for p in self.paths]
        # A compressed file is decompressed on first use, in a loader worker: say now, before any work,
        # when its copy cannot be written there.
        for path in self.paths:
            target = _extracted_copy(path, self.extract_dir, _data_info(path))
            if target and not target.is_file() and (problem := io.output_problem(target)):
                raise ValueError(f"{path} stores its images compressed, to be decompressed once (about 1.6 GB "
                                 f"per training file) to {target}, which {problem}; make {self.extract_dir} "
                                 "writable, or store the files uncompressed (numpy.savez)")
        self.labels = np.concatenate(per_file)
        self.bounds = np.cumsum([0] + [len(lab) for lab in per_file])
        self._arrays = {}

    def __getstate__(self):
        # DataLoader workers re-open their own memory maps instead of pickling the image data
        return {**self.__dict__, "_arrays": {}}

    def __len__(self):
        return len(self.labels)

    def _array(self, k):
        if k not in self._arrays:
            data = open_data(self.paths[k], self.extract_dir)
            rows = self.bounds[k + 1] - self.bounds[k]
            if data.dtype != np.uint8 or data.shape != (rows, 3 * NATIVE_SIZE**2):
                raise ValueError(f"{self.paths[k]}: 'data' must be uint8 [{rows}, {3 * NATIVE_SIZE**2}], "
                                 f"got {data.dtype} {data.shape}")
            self._arrays[k] = data
        return self._arrays[k]

    def read(self, start, stop):
        """uint8 NHWC chunks of images [start, stop), one per batch file touched."""
        k = int(np.searchsorted(self.bounds, start, side="right")) - 1
        while start < stop:
            end = min(stop, int(self.bounds[k + 1]))
            if end > start:
                rows = self._array(k)[start - self.bounds[k]:end - self.bounds[k]]
                yield np.ascontiguousarray(rows.reshape(-1, 3, NATIVE_SIZE, NATIVE_SIZE).transpose(0, 2, 3, 1))
            start, k = end, k + 1
