"""The Dataset built from a registry entry (rdd.data.registry), and the uint8 batches read through it."""

import numpy as np
import torch
from torch.utils.data import Dataset

from rdd.data.augment import Augmentation
from rdd.data.quantize import to_uint8
from rdd.data.registry import normalize_spec, source
from rdd.data.transforms import prepare
from rdd.values import is_int


class ImageDataset(Dataset):
    """(image, label) pairs: image float32 [-1, 1] CHW at the spec's size, label int (-1 if unlabelled).

    `source` supplies uint8 images: `len(source)`, `source.labels` (int64 array) and
    `source.read(start, stop)`, an iterable of uint8 NHWC chunks covering [start, stop).
    `augment`: False (none); True, the seeded flip when spec["hflip"] (sample i is
    mirrored in epoch e when hflip_decision(seed, e, i) is true); or an
    rdd.data.augment.Augmentation. Either way an item depends only on (seed, epoch,
    index), not on worker count or loading order. Call set_epoch before each epoch's
    DataLoader iterator is created (persistent workers keep the epoch they were started with).
    """

    def __init__(self, source, spec, augment=False, seed=0):
        self.source, self.spec = source, dict(spec)
        self.labels = np.asarray(source.labels, dtype=np.int64)
        if augment is True:
            augment = Augmentation(["hflip"] if spec["hflip"] else [])
        self.augment = augment or None
        self.seed, self.epoch = int(seed), 0

    def set_epoch(self, epoch):
        """Select the epoch whose augmentation __getitem__ draws."""
        self.epoch = int(epoch)

    def __len__(self):
        return len(self.labels)

    def images(self, start, stop):
        """Non-augmented images [start, stop) as one float32 NCHW tensor."""
        return torch.cat([prepare(chunk, self.spec) for chunk in self.source.read(start, stop)])

    def __getitem__(self, index):
        return self.item(index, self.epoch)

    def item(self, index, epoch):
        """Sample `index` as augmented in `epoch` (used by step-indexed training batches)."""
        index = range(len(self))[index]  # negative indices, and IndexError past the end
        x = self.images(index, index + 1)[0]
        if self.augment:
            x = self.augment(x, self.seed, epoch, index)
        return x, int(self.labels[index])


def build_dataset(spec, split, augment=False, seed=0):
    """The (image, label) Dataset of `split`; augment: False, True (the seeded flip when spec["hflip"])
    or an rdd.data.augment.Augmentation."""
    spec = normalize_spec(spec)
    return ImageDataset(source(spec, split), spec, augment=augment, seed=seed)


def iter_uint8_batches(spec, split, batch_size, limit=None):
    """Yield uint8 [n, H, W, C] arrays of the non-augmented images of `split`, in order, at most `limit` in all."""
    if not is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if limit is not None and (not is_int(limit) or limit < 0):
        raise ValueError(f"limit must be None or a non-negative integer, got {limit!r}")
    ds = build_dataset(spec, split)
    n = len(ds) if limit is None else min(limit, len(ds))
    for start in range(0, n, batch_size):
        yield to_uint8(ds.images(start, min(n, start + batch_size)))
