"""Inception pool3 features (and logits) of uint8 images through torch-fidelity's extractor.

Fast path over torch-fidelity's default loop: batch norms folded, the model in channels_last (NHWC
input is already that layout), fixed-size batches, inference_mode, fp32 only
(TF32 and reduced-precision matmuls off: they move features too much for a
reported FID).
"""

import numpy as np
import torch

from rdd import precision
from rdd.metrics.inception import load_extractor

# Part of every reference-statistics cache key: change it when the pixels fed to the network change.
PREPROCESSING = (
    "uint8 NHWC; grey repeated to RGB; torch-fidelity inception-v3-compat input: "
    "TF1-compatible bilinear resize to 299x299, (x - 128) / 128"
)


def check_uint8_batch(batch, first_shape=None):
    """`batch` if it is a uint8 [N, H, W, C] array (C = 1 or 3) of images shaped `first_shape`, else ValueError."""
    if not isinstance(batch, np.ndarray) or batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[3] not in (1, 3):
        got = f"{type(batch).__name__} {getattr(batch, 'dtype', '')} {getattr(batch, 'shape', '')}"
        raise ValueError(f"images must be numpy uint8 arrays [N, H, W, C] with C = 1 or 3, got {got}")
    if first_shape is not None and batch.shape[1:] != first_shape:
        raise ValueError(f"all batches must share one image shape: {first_shape} then {batch.shape[1:]}")
    return batch


def _fixed_size_batches(images_or_batches, batch_size):
    """Re-chunk an array or an iterable of arrays into batches of exactly `batch_size` (the last may be short)."""
    batches = [images_or_batches] if isinstance(images_or_batches, np.ndarray) else images_or_batches
    pending, count, first_shape = [], 0, None
    for batch in batches:
        batch = check_uint8_batch(batch, first_shape)
        first_shape = batch.shape[1:]
        start = 0
        while start < len(batch):
            take = min(batch_size - count, len(batch) - start)
            pending.append(batch[start:start + take])
            count, start = count + take, start + take
            if count == batch_size:
                yield pending[0] if len(pending) == 1 else np.concatenate(pending)
                pending, count = [], 0
    if count:
        yield np.concatenate(pending)


def default_device():
    """CUDA when present, CPU otherwise."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def extract_features(images_or_batches, handle, batch_size=64, device=None):
    """Pool3 features [N, 2048] and logits [N, 1008] (None without logits) as float32 numpy arrays."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    device = torch.device(device or default_device())
    model = load_extractor(handle, device)
    features, logits = [], []
    with torch.inference_mode(), precision.float32("fp32"):
        for batch in _fixed_size_batches(images_or_batches, batch_size):
            # NHWC memory viewed as NCHW is already channels_last, the layout the model runs in.
            x = torch.from_numpy(np.require(batch, requirements=["C", "W"])).to(device).permute(0, 3, 1, 2)
            x = x.expand(-1, 3, -1, -1)  # grey to RGB; a no-op for RGB
            out = model(x)
            features.append(out[0].cpu())
            if handle.has_logits:
                logits.append(out[1].cpu())
    if not features:
        raise ValueError("no images to extract features from")
    features = torch.cat(features).numpy()
    return features, (torch.cat(logits).numpy() if handle.has_logits else None)
