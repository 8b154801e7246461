"""Files in the layout of the authors' releases (RCFD/RDD): a diffusion checkpoint and the classifier."""

import numpy as np
import torch

from rdd.nets.unet import AUTHORS_TIME_TABLE_KEY


def authors_checkpoint(net, T, time_scale, path):
    """A checkpoint in the RCFD/RDD release format: DataParallel names and a frozen time table."""
    ch = net.time_embedding.timembedding[1].in_features
    t = torch.arange(T * time_scale + 1, dtype=torch.float64)[:, None]
    freq = torch.exp(-torch.arange(0, ch, 2, dtype=torch.float64) / ch * np.log(10000))[None]
    table = torch.stack([torch.sin(t * freq), torch.cos(t * freq)], -1).reshape(len(t), ch).float()
    weights = {f"module.{k}": v for k, v in net.state_dict().items()}
    weights[f"module.{AUTHORS_TIME_TABLE_KEY}"] = table
    torch.save({"net_model": weights, "ema_model": weights, "T": T, "time_scale": time_scale,
                "x_T": torch.randn(4, 1, 16, 16)}, path)


def authors_classifier_file(net, path, prefix):
    """`{'model': state_dict}` in the RCFD release layout: the stem under `features.`, `prefix` (e.g. `module.`)."""
    weights = {prefix + ("features." + k.removeprefix("stem.") if k.startswith("stem.") else k): v
               for k, v in net.state_dict().items()}
    assert any(k.startswith(f"{prefix}features.conv0") for k in weights)
    torch.save({"model": weights}, path)
