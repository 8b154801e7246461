"""The one conversion between uint8 images and float [-1, 1] tensors, and the check of a uint8 batch.

Datasets, reference statistics and generated samples all pass through these
two functions, so every image is quantised the same way.
"""

import numpy as np
import torch


def to_uint8(x):
    """Float [-1, 1] NCHW tensor -> uint8 NHWC numpy array: round(127.5 * (x + 1)), clipped to 0..255."""
    if not torch.is_tensor(x) or x.ndim != 4:
        raise ValueError(f"to_uint8 expects a 4-d NCHW tensor, got {type(x).__name__} "
                         f"with shape {tuple(getattr(x, 'shape', ()))}")
    # float64 so that values close to a .5 boundary round as the formula says
    q = (x.detach().to("cpu", torch.float64) + 1.0).mul_(127.5).round_().clamp_(0, 255)
    return q.to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def from_uint8(images, device=None):
    """uint8 NHWC array (numpy or tensor) -> float32 NCHW tensor in [-1, 1]; the exact inverse of to_uint8."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.require(images, requirements=["C", "W"]))
    if not torch.is_tensor(images) or images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"from_uint8 expects a 4-d uint8 NHWC array, got {type(images).__name__} "
                         f"dtype {getattr(images, 'dtype', None)} shape {tuple(getattr(images, 'shape', ()))}")
    x = images.to(device).permute(0, 3, 1, 2).to(torch.float32)
    return (x / 127.5 - 1.0).contiguous()


def check_uint8_batch(batch, first_shape=None):
    """`batch` if it is a uint8 [N, H, W, C] array (C = 1 or 3) of images shaped `first_shape`, else ValueError."""
    if not isinstance(batch, np.ndarray) or batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[3] not in (1, 3):
        got = f"{type(batch).__name__} {getattr(batch, 'dtype', '')} {getattr(batch, 'shape', '')}"
        raise ValueError(f"images must be numpy uint8 arrays [N, H, W, C] with C = 1 or 3, got {got}")
    if first_shape is not None and batch.shape[1:] != first_shape:
        raise ValueError(f"all batches must share one image shape: {first_shape} then {batch.shape[1:]}")
    return batch
