"""Fashion-MNIST (60k train / 10k test, 28x28 grey, 10 classes) in torchvision's layout.

Looked for, in order: decompressed idx files in <root>/FashionMNIST/raw/; the
Debian package's .gz files, decompressed once into that folder (torchvision
md5-checks only the .gz files it downloads itself, and the Debian copies do not
match those sums); torchvision's download when the spec says download: true.
"""

import gzip
from pathlib import Path

import torchvision

from rdd.data.base import missing_error
from rdd.io import write_bytes

NUM_CLASSES = 10
NATIVE_SIZE = 28
# `apt-get install dataset-fashion-mnist` puts the four idx .gz files here
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
# torchvision's loader requires all four, whichever split it reads
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
            write_bytes(gzip.decompress(gz.read_bytes()), raw)


class FashionMNISTSource:
    """uint8 images [N, 28, 28, 1] and labels of one split."""

    def __init__(self, spec, split):
        check(spec, [split])
        _decompress_system_copy(spec)
        try:
            ds = torchvision.datasets.FashionMNIST(spec["root"], train=split == "train", download=spec["download"])
        except (RuntimeError, OSError) as exc:  # torchvision's download failed (offline, mirror down)
            files = [raw_dir(spec) / f for f in FILES]
            raise missing_error("fashion_mnist", files, f"{HOW} (torchvision: {exc})") from exc
        self.data = ds.data.numpy()
        self.labels = ds.targets.numpy()

    def __len__(self):
        return len(self.labels)

    def read(self, start, stop):
        """One uint8 NHWC chunk of images [start, stop)."""
        return [self.data[start:stop, :, :, None]]
