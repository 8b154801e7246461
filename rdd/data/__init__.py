"""Datasets by name: Fashion-MNIST, CIFAR-10, ImageNet 64x64 and image folders, read offline-first.

A dataset spec is a JSON-serialisable dict (see DEFAULTS); images come out as
float32 [-1, 1] CHW, and to_uint8 / from_uint8 are the one quantisation used
for datasets, reference statistics and samples alike.

The names below are loaded from their modules on first use: the registry's spec
checks import no torch, so the workflow plans a study (a dry run, a config error)
in seconds, while training and sampling import what they use.
"""

import importlib

_MODULE_OF = {
    "Augmentation": "augment",
    "ImageDataset": "base", "build_dataset": "base", "iter_uint8_batches": "base",
    "CHANNEL_STATS": "normalization", "input_norm": "normalization", "normalize_input": "normalization",
    "DatasetMissingError": "missing",
    "from_uint8": "quantize", "to_uint8": "quantize",
    "DATASETS": "registry", "DEFAULTS": "registry", "check_available": "registry", "dataset_defaults": "registry",
    "normalize_spec": "registry", "num_classes": "registry",
    "hflip_decision": "transforms",
}
__all__ = sorted(_MODULE_OF)


def __getattr__(name):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)


def __dir__():
    return __all__
