"""Training augmentation by name, every random choice a function of (seed, epoch, index).

The released CIFAR-10 classifier recipe is `[crop, hflip, autoaugment, cutout]`:
random crop with grey padding, horizontal flip, AutoAugment's CIFAR-10 policy
and Cutout. Each operation draws from its own generator seeded by (seed, epoch,
index), so an item's augmentation does not depend on worker count, loading
order or the global RNG (whose state the resume file restores).

Images stay float [-1, 1] CHW throughout; only AutoAugment, whose operations
need uint8, runs on the image quantised with rdd.data.quantize.
"""

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps

from rdd.data.quantize import from_uint8, to_uint8
from rdd.data.transforms import hflip_decision
from rdd.settings import AUGMENTATIONS
from rdd.values import is_int
# Generator stream of each operation (hflip keeps hflip_decision's own, shared with the diffusion models).
_STREAM = {"crop": 1, "autoaugment": 2, "cutout": 3}
# The released fill of crop padding and of AutoAugment's shifts, shears and turns ("grey"), in uint8
# and as a [-1, 1] value.
GREY_UINT8 = 128
GREY = GREY_UINT8 / 127.5 - 1.0
# Cutout's hole: 0 in the [0, 1] tensor the released code cut, -1 here.
BLACK = -1.0


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


# AutoAugment's CIFAR-10 policy (Cubuk et al. 2019): 25 sub-policies, each two (operation,
# probability, magnitude bin 0..9; None where the operation takes no magnitude).
CIFAR10_POLICY = (
    (("Invert", 0.1, None), ("Contrast", 0.2, 6)),
    (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
    (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
    (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)),
    (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
    (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
    (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
    (("Equalize", 0.6, None), ("Equalize", 0.5, None)),
    (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
    (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
    (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
    (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
    (("Solarize", 0.5, 2), ("Invert", 0.0, None)),
    (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.2, None), ("Equalize", 0.6, None)),
    (("Color", 0.9, 9), ("Equalize", 0.6, None)),
    (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)),
    (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)),
    (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)),
    (("Equalize", 0.8, None), ("Invert", 0.1, None)),
    (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
)
# The released ranges, indexed by magnitude bin: shear factor, shift as a fraction of the image's
# side, degrees, enhancement (factor 1 +- it), posterize bits, solarize threshold.
_RANGE = {
    "Shear": np.linspace(0, 0.3, 10),
    "Translate": np.linspace(0, 150 / 331, 10),
    "Rotate": np.linspace(0, 30, 10),
    "Enhance": np.linspace(0.0, 0.9, 10),
    "Posterize": np.round(np.linspace(8, 4, 10)).astype(int),
    "Solarize": np.linspace(256, 0, 10),
}
_ENHANCERS = {"Color": ImageEnhance.Color, "Contrast": ImageEnhance.Contrast,
              "Sharpness": ImageEnhance.Sharpness, "Brightness": ImageEnhance.Brightness}
_UNARY = {"AutoContrast": ImageOps.autocontrast, "Equalize": ImageOps.equalize, "Invert": ImageOps.invert}


def autoaugment_op(image, name, magnitude_bin, sign):
    """One operation of the policy on a PIL image, as the released recipe applies it.

    The released `classifier/train.py` imports `CIFAR10Policy` from an `autoaugment.py` that the
    repository does not hold; its transform chain is the usage example of the DeepVoltaire
    AutoAugment implementation that this class name comes from, so these are that implementation's
    semantics (PIL, as released): grey (128) fill, bicubic shears, nearest-pixel shifts and
    rotations, shifts of `sign * fraction * side` pixels, solarize thresholds 256 .. 0. Rotations
    turn counter-clockwise only, as in its single-file version (a later refactor turns both ways;
    which one the authors copied is not known). `sign` (+1 or -1) is ignored by the unsigned
    operations.
    """
    fill = GREY_UINT8 if image.mode == "L" else (GREY_UINT8,) * len(image.getbands())
    # PIL's affine maps each output pixel to its source: x_in = a x + b y + c, y_in = d x + e y + f.
    if name == "ShearY":  # (the CIFAR-10 policy has no ShearX)
        matrix = (1, 0, 0, sign * _RANGE["Shear"][magnitude_bin], 1, 0)
        return image.transform(image.size, Image.Transform.AFFINE, matrix, Image.Resampling.BICUBIC, fillcolor=fill)
    if name in ("TranslateX", "TranslateY"):
        shift = sign * _RANGE["Translate"][magnitude_bin] * image.size[0 if name == "TranslateX" else 1]
        matrix = (1, 0, shift, 0, 1, 0) if name == "TranslateX" else (1, 0, 0, 0, 1, shift)
        return image.transform(image.size, Image.Transform.AFFINE, matrix, Image.Resampling.NEAREST, fillcolor=fill)
    if name == "Rotate":
        return image.rotate(_RANGE["Rotate"][magnitude_bin], Image.Resampling.NEAREST, fillcolor=fill)
    if name in _ENHANCERS:
        return _ENHANCERS[name](image).enhance(1 + sign * _RANGE["Enhance"][magnitude_bin])
    if name == "Posterize":
        return ImageOps.posterize(image, int(_RANGE["Posterize"][magnitude_bin]))
    if name == "Solarize":
        return ImageOps.solarize(image, _RANGE["Solarize"][magnitude_bin])
    return _UNARY[name](image)


def autoaugment(x, rng):
    """AutoAugment's CIFAR-10 policy on the quantised image: one sub-policy drawn uniformly, then each
    of its two operations applied with its probability (and a random sign), as `autoaugment_op`."""
    pixels = to_uint8(x[None])[0]
    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    for name, probability, magnitude_bin in CIFAR10_POLICY[int(rng.integers(len(CIFAR10_POLICY)))]:
        applied, sign = rng.random() < probability, 1 if rng.random() < 0.5 else -1
        if applied:
            image = autoaugment_op(image, name, magnitude_bin, sign)
    return from_uint8(np.asarray(image).reshape(pixels.shape)[None])[0]


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
