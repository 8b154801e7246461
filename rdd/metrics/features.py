"""Inception pool3 features (and logits) of uint8 images through torch-fidelity's extractor.

Fast path over torch-fidelity's default loop: batch norms folded, the model in channels_last (NHWC
input is already that layout), fixed-size batches, inference_mode, fp32 only
(TF32 and reduced-precision matmuls off: they move features too much for a
reported FID). The handle's `inception_input` says how images reach the network
(rdd.metrics.inception.INPUT_PIPELINES): torch-fidelity's own resize and scaling, or pytorch-fid's.
"""

import contextlib

import numpy as np
import torch
import torch.nn.functional as F

from rdd import precision
from rdd.data.quantize import check_uint8_batch
from rdd.metrics.inception import load_extractor

INPUT_SIZE = 299


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


def pytorch_fid_input(x):
    """pytorch-fid's network input for uint8 images [N, 3, H, W]: x / 255, PyTorch's bilinear resize to
    299x299 (half-pixel centres, no antialiasing), then 2x - 1."""
    x = x.to(torch.float32) / 255
    x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    return 2 * x - 1


@contextlib.contextmanager
def _network(model, inception_input):
    """A function uint8 images [N, 3, H, W] -> the model's outputs, fed as `inception_input` says."""
    if inception_input == "torch-fidelity":
        yield model
        return
    # torch-fidelity's forward resizes and scales its uint8 input itself; the first convolution's
    # input is swapped for pytorch-fid's, so that everything after it stays torch-fidelity's network.
    pending = []
    hook = model.Conv2d_1a_3x3.register_forward_pre_hook(lambda module, args: (pending.pop(),))

    def run(x):
        pending.append(pytorch_fid_input(x))
        return model(x)
    try:
        yield run
    finally:
        hook.remove()


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
    with torch.inference_mode(), precision.float32("fp32"), _network(model, handle.inception_input) as network:
        for batch in _fixed_size_batches(images_or_batches, batch_size):
            # NHWC memory viewed as NCHW is already channels_last, the layout the model runs in.
            x = torch.from_numpy(np.require(batch, requirements=["C", "W"])).to(device).permute(0, 3, 1, 2)
            x = x.expand(-1, 3, -1, -1)  # grey to RGB; a no-op for RGB
            out = network(x)
            features.append(out[0].cpu())
            if handle.has_logits:
                logits.append(out[1].cpu())
    if not features:
        raise ValueError("no images to extract features from")
    features = torch.cat(features).numpy()
    return features, (torch.cat(logits).numpy() if handle.has_logits else None)
