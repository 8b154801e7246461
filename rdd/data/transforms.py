"""Bringing source images to the spec's size and channels, and the seeded flip."""

import numpy as np
import torch.nn.functional as F

from rdd.data.quantize import from_uint8


def fit_to_size(x, image_size, mode):
    """Float NCHW [-1, 1] -> NCHW at image_size x image_size.

    "pad": centred padding with -1 (black); the image must not be larger.
    "resize": bilinear with antialiasing so the shorter side is image_size, then a centre crop.
    """
    h, w = x.shape[-2:]
    if (h, w) == (image_size, image_size):
        return x
    if mode == "pad":
        if h > image_size or w > image_size:
            raise ValueError(f"a {h}x{w} image cannot be padded to image_size {image_size}; use resize: resize")
        top, left = (image_size - h) // 2, (image_size - w) // 2
        return F.pad(x, (left, image_size - w - left, top, image_size - h - top), value=-1.0)
    if mode != "resize":
        raise ValueError(f"resize must be 'pad' or 'resize', got {mode!r}")
    scale = image_size / min(h, w)
    size = (max(image_size, round(h * scale)), max(image_size, round(w * scale)))
    x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    top, left = (size[0] - image_size) // 2, (size[1] - image_size) // 2
    # the triangle filter is a convex combination; clamp only removes float rounding past +-1
    return x[..., top:top + image_size, left:left + image_size].clamp(-1.0, 1.0).contiguous()


def prepare(images, spec):
    """uint8 NHWC source images -> float32 NCHW in [-1, 1] at the spec's image_size and channels."""
    x = fit_to_size(from_uint8(images), spec["image_size"], spec["resize"])
    if x.shape[1] == 1 and spec["channels"] == 3:
        x = x.repeat(1, 3, 1, 1)
    if x.shape[1] != spec["channels"]:
        raise ValueError(f"source images have {x.shape[1]} channels, spec asks for {spec['channels']}")
    return x


def hflip_decision(seed, epoch, index):
    """Whether sample `index` is flipped in `epoch`: one bit of numpy's SeedSequence over (seed, epoch, index)."""
    return bool(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0] & 1)
