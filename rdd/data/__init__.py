"""Datasets by name: Fashion-MNIST, CIFAR-10, ImageNet 64x64 and image folders, read offline-first.

A dataset spec is a JSON-serialisable dict (see DEFAULTS); images come out as
float32 [-1, 1] CHW, and to_uint8 / from_uint8 are the one quantisation used
for datasets, reference statistics and samples alike.
"""

from rdd.data.augment import Augmentation
from rdd.data.base import DatasetMissingError, ImageDataset
from rdd.data.input_norm import CHANNEL_STATS, input_norm, normalize_input
from rdd.data.quantize import from_uint8, to_uint8
from rdd.data.registry import (
    DATASETS,
    DEFAULTS,
    build_dataset,
    check_available,
    dataset_defaults,
    iter_uint8_batches,
    normalize_spec,
    num_classes,
)
from rdd.data.transforms import hflip_decision

__all__ = [
    "Augmentation", "CHANNEL_STATS", "DATASETS", "DEFAULTS", "DatasetMissingError", "ImageDataset",
    "build_dataset", "check_available", "dataset_defaults", "from_uint8", "hflip_decision", "input_norm",
    "iter_uint8_batches", "normalize_input", "normalize_spec", "num_classes", "to_uint8",
]
