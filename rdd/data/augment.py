"""Training augmentation by name, every random choice a function of (seed, epoch, index).

The released CIFAR-10 classifier recipe is `[crop, hflip, autoaugment, cutout]`:
random crop with grey padding, horizontal flip, torchvision's AutoAugment
(CIFAR-10 policy) and Cutout. Each operation draws from its own generator
seeded by (seed, epoch, index), so an item's augmentation does not depend on
worker count, loading order or the global RNG (whose state the resume file
restores).

Images stay float [-1, 1] CHW throughout; only AutoAugment, whose operations
need uint8, runs on the image quantised with rdd.data.quantize.
"""

import functools

import numpy as np
import torch

from rdd.data.quantize import from_uint8, to_uint8
from rdd.data.transforms import hflip_decision
from rdd.settings import AUGMENTATIONS
from rdd.values import is_int
# Generator stream of each operation (hflip keeps hflip_decision's own, shared with the diffusion models).
_STREAM = {"crop": 1, "autoaugment": 2, "cutout": 3}
# uint8 128, the released crop's padding ("grey"), as a [-1, 1] value
GREY = 128 / 127.5 - 1.0
# Cutout's hole: 0 in the [0, 1] tensor the released code cut, -1 here.
BLACK = -1.0


@functools.cache
def _autoaugment_policy():
    # torchvision is imported here, at the first AutoAugment: every job imports this module, and
    # torchvision (with torch._dynamo) adds seconds to the start of those that never use it.
    import torchvision.transforms as T

    return T.AutoAugment(T.AutoAugmentPolicy.CIFAR10)


def op_rng(seed, epoch, index, op):
    """numpy Generator of operation `op` for sample `index` in `epoch`."""
    return np.random.default_rng([seed, epoch, index, _STREAM[op]])


def random_crop(x, padding, rng):
    """Pad by `padding` pixels of grey on every side, crop back to the image's size.

    Offsets uniform over 0..2*padding per axis, as torchvision's RandomCrop(size, padding, fill=128).
    """
    h, w = x.shape[-2:]
    top, left = (int(v) for v in rng.integers(0, 2 * padding + 1, size=2))
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding), value=GREY)
    return padded[:, top:top + h, left:left + w]


def cutout(x, length, rng):
    """One length x length hole set to black; its centre uniform over the image, clipped at the borders.

    As released (DeVries & Taylor's Cutout): rows centre - length//2 .. centre + length//2 - 1,
    so an odd length cuts length - 1.
    """
    h, w = x.shape[-2:]
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    half = length // 2
    out = x.clone()
    out[:, max(0, cy - half):min(h, cy + half), max(0, cx - half):min(w, cx + half)] = BLACK
    return out


def autoaugment(x, rng):
    """torchvision's AutoAugment (CIFAR-10 policy) on the quantised image.

    The released code ran it on PIL images; these are torchvision's tensor
    versions of the same operations. AutoAugment draws from torch's global CPU
    generator: it runs on a forked state seeded from `rng`, leaving the global
    state as it was.
    """
    image = torch.from_numpy(to_uint8(x[None])[0]).permute(2, 0, 1)
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(int(rng.integers(2**63)))
        image = _autoaugment_policy()(image)
    return from_uint8(image.permute(1, 2, 0)[None])[0]


class Augmentation:
    """The named operations, applied in the order given, to one float [-1, 1] CHW image."""

    def __init__(self, names, crop_padding=4, cutout_length=16):
        unknown = [n for n in names if n not in AUGMENTATIONS]
        if unknown or len(set(names)) != len(names):
            raise ValueError(f"setting 'train.augment' must name each of {', '.join(AUGMENTATIONS)} at most once, "
                             f"got {list(names)}")
        for key, value in (("crop_padding", crop_padding), ("cutout_length", cutout_length)):
            if not is_int(value) or value < 1:
                raise ValueError(f"setting 'train.{key}' must be a positive integer, got {value!r}")
        self.names, self.crop_padding, self.cutout_length = list(names), crop_padding, cutout_length

    def __call__(self, x, seed, epoch, index):
        for name in self.names:
            if name == "hflip":
                x = x.flip(-1) if hflip_decision(seed, epoch, index) else x
            elif name == "crop":
                x = random_crop(x, self.crop_padding, op_rng(seed, epoch, index, name))
            elif name == "autoaugment":
                x = autoaugment(x, op_rng(seed, epoch, index, name))
            elif name == "cutout":
                x = cutout(x, self.cutout_length, op_rng(seed, epoch, index, name))
        return x
