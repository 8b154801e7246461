"""The Dataset every registry entry returns, and the missing-data error."""

import os

import numpy as np
import torch
from torch.utils.data import Dataset

from rdd.data.augment import Augmentation
from rdd.data.transforms import prepare


class DatasetMissingError(FileNotFoundError):
    """Dataset files are absent; the message names the paths looked in and how to get the data."""


def missing_error(name, paths, how):
    """DatasetMissingError for dataset `name` listing `paths` and the instructions `how`."""
    listed = "\n".join(f"  {p}" for p in paths)
    # A config's data root is usually relative: say relative to what.
    where = "" if all(os.path.isabs(str(p)) for p in paths) else f"\n(relative paths are from {os.getcwd()})"
    return DatasetMissingError(f"dataset {name!r} not found; looked for:\n{listed}{where}\nto provide it: {how}")


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
