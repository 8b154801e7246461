"""Datasets by name: Fashion-MNIST, CIFAR-10, ImageNet 64x64 and image folders, read offline-first.

A dataset spec is a JSON-serialisable dict (see DEFAULTS); images come out as
float32 [-1, 1] CHW, and to_uint8 / from_uint8 are the one quantisation used
for datasets, reference statistics and samples alike. The registry's spec checks
import no torch (see rdd.lazy).
"""

from rdd import lazy

_MODULE_OF = {
    "Augmentation": "augment",
    "ImageDataset": "base", "build_dataset": "base", "iter_uint8_batches": "base",
    "DatasetMissingError": "missing",
    "CHANNEL_STATS": "normalization", "input_norm": "normalization", "normalize_input": "normalization",
    "from_uint8": "quantize", "to_uint8": "quantize",
    "DATASETS": "registry", "DEFAULTS": "registry", "check_available": "registry", "check_first_images": "registry",
    "dataset_defaults": "registry", "image_identity": "registry", "normalize_spec": "registry",
    "num_classes": "registry", "split_names": "registry",
    "hflip_decision": "transforms",
}
__all__ = sorted(_MODULE_OF)
__getattr__, __dir__ = lazy.exports(__name__, _MODULE_OF)
