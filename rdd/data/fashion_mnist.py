"""Fashion-MNIST (60k train / 10k test, 28x28 grey, 10 classes) in torchvision's layout.

Looked for, in order: decompressed idx files in <root>/FashionMNIST/raw/; the
Debian package's .gz files, decompressed once into that folder (torchvision
md5-checks only the .gz files it downloads itself, and the Debian copies do not
match those sums); torchvision's download when the spec says download: true.
The idx files are read here (numpy, their header checked), so a job that reads
the data does not import torchvision.
"""

import gzip
from pathlib import Path

import numpy as np

from rdd.data.missing import fetch_once, missing_error
from rdd.io import write_bytes

NUM_CLASSES = 10
NATIVE_SIZE = 28
# `apt-get install dataset-fashion-mnist` puts the four idx .gz files here
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
# All four are looked for whichever split is read (torchvision's loader, which downloads them, needs all four)
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
HOW = ("sudo apt-get install dataset-fashion-mnist (Debian/Ubuntu; installs the .gz files above), "
       "or set download: true in the dataset spec so torchvision fetches it")


def raw_dir(spec):
    """The torchvision folder holding the decompressed idx files."""
    return Path(spec["root"]) / "FashionMNIST" / "raw"


def _absent(spec):
    """Pairs (raw path, Debian .gz path) of files found in neither place."""
    pairs = [(raw_dir(spec) / f, SYSTEM_DIR / f"{f}.gz") for f in FILES]
    return [(raw, gz) for raw, gz in pairs if not raw.is_file() and not gz.is_file()]


def check(spec, splits):
    """Raise DatasetMissingError unless all four files (whatever `splits`) are present or downloadable."""
    absent = _absent(spec)
    if absent and not spec["download"]:
        raise missing_error("fashion_mnist", [p for pair in absent for p in pair], HOW)


def _decompress_system_copy(spec):
    for name in FILES:
        raw, gz = raw_dir(spec) / name, SYSTEM_DIR / f"{name}.gz"
        if not raw.is_file() and gz.is_file():
            try:
                data = gzip.decompress(gz.read_bytes())
            except (OSError, EOFError) as exc:  # gzip's messages do not name the file
                raise ValueError(f"cannot decompress {gz} ({exc}); reinstall it: "
                                 "sudo apt-get install --reinstall dataset-fashion-mnist") from exc
            write_bytes(data, raw)


def _download(spec):
    import torchvision  # only to download: reading needs none of it

    try:
        torchvision.datasets.FashionMNIST(spec["root"], download=True)
    except (RuntimeError, OSError) as exc:  # the download failed (offline, mirror down)
        files = [raw_dir(spec) / f for f in FILES]
        raise missing_error("fashion_mnist", files, f"{HOW} (torchvision: {exc})") from exc


def read_idx(path, ndim):
    """The uint8 array stored in an idx file: a big-endian header (magic 0x0800 + ndim for unsigned
    bytes, then ndim int32 sizes) and the bytes in C order."""
    raw = bytearray(Path(path).read_bytes())  # writable: torch.from_numpy warns on a read-only array
    header = 4 * (1 + ndim)
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if magic != 0x0800 + ndim or len(raw) < header:
        raise ValueError(f"{path} is not an idx file of {ndim}-d unsigned bytes (magic {magic!r}, "
                         f"expected {0x0800 + ndim}); delete it to have it decompressed again")
    shape = tuple(int.from_bytes(raw[4 * i:4 * i + 4], "big") for i in range(1, ndim + 1))
    if len(raw) - header != int(np.prod(shape)):
        raise ValueError(f"{path}: the header says {shape} ({int(np.prod(shape))} bytes), the file holds "
                         f"{len(raw) - header}; delete it to have it decompressed again")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


class FashionMNISTSource:
    """uint8 images [N, 28, 28, 1] and labels of one split."""

    def __init__(self, spec, split):
        check(spec, [split])
        _decompress_system_copy(spec)
        if spec["download"]:
            fetch_once(spec, lambda: not _absent(spec), lambda: _download(spec))
        prefix = "train" if split == "train" else "t10k"
        self.data = read_idx(raw_dir(spec) / f"{prefix}-images-idx3-ubyte", ndim=3)
        self.labels = read_idx(raw_dir(spec) / f"{prefix}-labels-idx1-ubyte", ndim=1).astype(np.int64)
        if len(self.labels) != len(self.data):
            raise ValueError(f"{raw_dir(spec)}: {len(self.data)} {split} images but {len(self.labels)} labels")

    def __len__(self):
        return len(self.labels)

    def read(self, start, stop):
        """One uint8 NHWC chunk of images [start, stop)."""
        return [self.data[start:stop, :, :, None]]
