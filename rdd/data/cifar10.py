"""CIFAR-10 (50k train / 10k test, 32x32 RGB, 10 classes) from the python pickle batches.

The batches in <root>/cifar-10-batches-py/ are read here, not by torchvision's
CIFAR10: that class insists on the md5 of each released batch file, which would
reject any other file in the same format. Unpickling is restricted to the numpy
globals the format needs. download: true uses torchvision's URL and md5-checked
archive download.
"""

import pickle
from pathlib import Path

import numpy as np

from rdd.data.missing import fetch_once, missing_error

NUM_CLASSES = 10
NATIVE_SIZE = 32
FOLDER = "cifar-10-batches-py"
FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
META = "batches.meta"


def _torchvision_cifar10():
    """torchvision's CIFAR10 class (its URL, file name and md5); imported when needed, not with the
    registry, which the workflow's plan imports without torch."""
    import torchvision

    return torchvision.datasets.CIFAR10


def _paths(spec, splits):
    folder = Path(spec["root"]) / FOLDER
    return [folder / f for s in splits for f in FILES[s]] + [folder / META]


def check(spec, splits):
    """Raise DatasetMissingError unless every batch of `splits` and batches.meta exist (or download is on)."""
    absent = [p for p in _paths(spec, splits) if not p.is_file()]
    if absent and not spec["download"]:
        url = _torchvision_cifar10().url
        how = (f"download {url} and extract it into {spec['root']} (it unpacks to {FOLDER}/), "
               "or set download: true in the dataset spec")
        raise missing_error("cifar10", absent, how)


class _BatchUnpickler(pickle.Unpickler):
    """Refuses every global except those a pickled numpy array needs."""

    _reconstruct = np.zeros(0).__reduce__()[0]  # numpy's _reconstruct, whatever its module in this version
    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module, name):
        if (module, name) == ("_codecs", "encode"):  # bytes in protocol-2 pickles
            return super().find_class(module, name)
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR-10 batch")
        return self._ALLOWED[(module, name)]


def read_batch(path):
    """One pickled batch as a dict with str keys (the released files are Python 2 pickles)."""
    try:
        with open(path, "rb") as f:
            obj = _BatchUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise ValueError(f"cannot read CIFAR-10 batch {path}: {exc}") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{path} is not a CIFAR-10 batch (a {type(obj).__name__}, not a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _read_images(path):
    batch = read_batch(path)
    data, labels = np.asarray(batch.get("data")), np.asarray(batch.get("labels", []), dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * NATIVE_SIZE**2 or len(labels) != len(data):
        raise ValueError(f"{path} is not a CIFAR-10 batch: need 'data' uint8 [N, 3072] and N 'labels', "
                         f"got data {data.dtype} {data.shape} and {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(f"{path}: labels outside 0..{NUM_CLASSES - 1}")
    # channel-planar rows (R plane, G plane, B plane) -> NHWC
    return data.reshape(-1, 3, NATIVE_SIZE, NATIVE_SIZE).transpose(0, 2, 3, 1), labels


def _download(spec, split):
    from torchvision.datasets.utils import download_and_extract_archive

    tv = _torchvision_cifar10()
    try:
        download_and_extract_archive(tv.url, spec["root"], filename=tv.filename, md5=tv.tgz_md5)
    except (RuntimeError, OSError) as exc:
        raise missing_error("cifar10", _paths(spec, [split]),
                            f"download {tv.url} by hand and extract it into {spec['root']} "
                            f"(download failed: {exc})") from exc


class CIFAR10Source:
    """uint8 images [N, 32, 32, 3], labels and class names of one split."""

    def __init__(self, spec, split):
        if spec["download"]:
            fetch_once(spec, lambda: all(p.is_file() for p in _paths(spec, [split])), lambda: _download(spec, split))
        check(spec, [split])
        folder = Path(spec["root"]) / FOLDER
        parts = [_read_images(folder / f) for f in FILES[split]]
        self.data = np.ascontiguousarray(np.concatenate([p[0] for p in parts]))
        self.labels = np.concatenate([p[1] for p in parts])
        names = read_batch(folder / META).get("label_names", [])
        self.classes = [n.decode() if isinstance(n, bytes) else n for n in names]

    def __len__(self):
        return len(self.labels)

    def read(self, start, stop):
        """One uint8 NHWC chunk of images [start, stop)."""
        return [self.data[start:stop]]
