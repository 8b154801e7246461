"""The dataset registry: one defaults record, spec validation, the sources and the data check.

It imports no torch, so that the workflow plans a study (and a dry run answers) in seconds; the
Dataset built from a source is rdd.data.base's."""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable, Optional

from rdd.data import cifar10, fashion_mnist, folder, imagenet64
from rdd.values import is_int

# Every spec key and its default, per dataset; a spec may only use these keys.
DEFAULTS = {
    "fashion_mnist": {"name": "fashion_mnist", "root": "data", "image_size": 32, "channels": 1,
                      "resize": "pad", "hflip": False, "download": False},
    "cifar10": {"name": "cifar10", "root": "data", "image_size": 32, "channels": 3,
                "resize": "resize", "hflip": True, "download": False},
    "imagenet64": {"name": "imagenet64", "root": "data/imagenet64", "image_size": 64, "channels": 3,
                   "resize": "resize", "hflip": True},
    "folder": {"name": "folder", "root": None, "image_size": 32, "channels": 3,
               "resize": "resize", "hflip": False, "labels": "none", "test_fraction": 0.0},
}


@dataclass(frozen=True)
class DatasetEntry:
    """What the registry knows of one dataset."""

    source: type  # source(spec, split): len, .labels, .read(start, stop)
    check: Callable  # check(spec, splits) raises DatasetMissingError
    num_classes: Callable  # num_classes(spec) -> int, 0 when unlabelled
    splits: Callable  # splits(spec) -> tuple of split names
    channels: tuple  # allowed values of spec["channels"]
    native_size: Optional[int]  # fixed source resolution, None when images vary
    # content_key(spec) -> dict: what names the images beyond IMAGE_IDENTITY ({} for a published dataset,
    # whose name does)
    content_key: Callable = lambda spec: {}


def _train_and_test(spec):
    return ("train", "test")


DATASETS = {
    "fashion_mnist": DatasetEntry(fashion_mnist.FashionMNISTSource, fashion_mnist.check,
                                  lambda spec: fashion_mnist.NUM_CLASSES, _train_and_test, (1, 3),
                                  fashion_mnist.NATIVE_SIZE),
    "cifar10": DatasetEntry(cifar10.CIFAR10Source, cifar10.check, lambda spec: cifar10.NUM_CLASSES,
                            _train_and_test, (3,), cifar10.NATIVE_SIZE),
    "imagenet64": DatasetEntry(imagenet64.ImageNet64Source, imagenet64.check,
                               lambda spec: imagenet64.NUM_CLASSES, _train_and_test, (3,),
                               imagenet64.NATIVE_SIZE),
    "folder": DatasetEntry(folder.FolderSource, folder.check, folder.num_classes, folder.splits, (1, 3), None,
                           folder.content_key),
}
# The spec keys that decide a split's images as the metrics read them (not where the files lie, nor
# training's flips or labels).
IMAGE_IDENTITY = ("name", "image_size", "channels", "resize")

_CHOICES = {"resize": ("pad", "resize"), "labels": ("none", "subfolders")}


def dataset_defaults(name):
    """A fresh copy of the default spec of dataset `name`."""
    if name not in DATASETS:
        raise ValueError(f"name: unknown dataset {name!r}; allowed: {', '.join(sorted(DATASETS))}")
    return dict(DEFAULTS[name])


def _bad(key, value, allowed):
    return ValueError(f"{key}: {value!r} is not allowed; {allowed}")


def normalize_spec(spec):
    """The full, validated spec: defaults filled in; unknown keys or bad values raise ValueError."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"a dataset spec is a mapping with at least 'name', got {type(spec).__name__}")
    full = dataset_defaults(spec.get("name"))
    entry = DATASETS[full["name"]]
    unknown = sorted(set(spec) - set(full))
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown key for dataset {full['name']!r}; allowed keys: {', '.join(full)}")
    full.update(spec)
    root = full["root"]
    if not isinstance(root, (str, os.PathLike)) or not os.fspath(root):
        raise _bad("root", root, "it must be a non-empty path string")
    full["root"] = os.fspath(root)
    size = full["image_size"]
    if not is_int(size) or size < 1:
        raise _bad("image_size", size, "it must be a positive integer")
    if not is_int(full["channels"]) or full["channels"] not in entry.channels:
        raise _bad("channels", full["channels"], f"allowed for {full['name']}: {entry.channels}")
    for key in ("hflip", "download"):
        if key in full and not isinstance(full[key], bool):
            raise _bad(key, full[key], "it must be true or false")
    for key, allowed in _CHOICES.items():
        if key in full and full[key] not in allowed:
            raise _bad(key, full[key], f"allowed: {', '.join(allowed)}")
    fraction = full.get("test_fraction", 0.0)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise _bad("test_fraction", fraction, "it must be a number from 0 (no test split) up to, not including, 1")
    if full["resize"] == "pad" and entry.native_size and size < entry.native_size:
        raise _bad("image_size", size, f"resize: pad needs at least the native {entry.native_size}; "
                                       "use resize: resize to shrink")
    return full


def split_names(spec):
    """The split names of the dataset of `spec` ("train" first)."""
    spec = normalize_spec(spec)
    return DATASETS[spec["name"]].splits(spec)


def _entry(spec, split=None):
    entry = DATASETS[spec["name"]]
    if split is not None and split not in (allowed := entry.splits(spec)):
        raise ValueError(f"split: {split!r} is not a split of {spec['name']}; allowed: {', '.join(allowed)}")
    return entry


def check_available(spec, splits=None):
    """Cheap check, before any training, that the files of `splits` (default: all) exist or can be downloaded.

    Raises DatasetMissingError naming the paths looked in and the command that provides them.
    """
    spec = normalize_spec(spec)
    entry = _entry(spec)
    splits = entry.splits(spec) if splits is None else tuple(splits)
    for split in splits:
        _entry(spec, split)
    entry.check(spec, splits)


def check_first_images(spec, split, limit):
    """`check_available` for `split`, and that it holds at least `limit` images (None: all of them), so
    that a command reading the first `limit` stops before its work rather than after it."""
    check_available(spec, [split])
    if limit is not None and limit > (held := len(source(normalize_spec(spec), split))):
        raise ValueError(f"limit: {limit:,} images asked of the {split} split of {spec['name']}, which holds "
                         f"{held:,}")


def image_identity(spec):
    """What identifies the images of a spec, for the reference statistics' cache key and record: the
    IMAGE_IDENTITY keys and the dataset's content key."""
    spec = normalize_spec(spec)
    return {**{k: spec[k] for k in IMAGE_IDENTITY}, **_entry(spec).content_key(spec)}


def num_classes(spec):
    """Number of classes of the dataset (0 for an unlabelled folder)."""
    spec = normalize_spec(spec)
    return _entry(spec).num_classes(spec)


def source(spec, split):
    """The uint8 source of `split` of a normalised spec: len, .labels, .read(start, stop)."""
    return _entry(spec, split).source(spec, split)
