"""FID in the d x d form for any resample of many generated images, in torch float64 on a device.

rdd.metrics.bootstrap uses it above MAX_GRAM_IMAGES images; it lives apart so that the bootstrap's
intervals, which the report reads, import no torch.
"""

import numpy as np
import torch


class CovarianceFID:
    """FID of any resample of the rows of `x` [N, d]: one eigendecomposition of Sigma_r, then one of
    sqrt(Sigma_r) Sigma_g sqrt(Sigma_r) per resample."""

    def __init__(self, x, mu_r, sigma_r, device="cpu"):
        def tensor(array):
            return torch.from_numpy(np.asarray(array, dtype=np.float64)).to(device)

        self.device = device
        self.x, self.mu_r, sigma_r = tensor(x), tensor(mu_r), tensor(sigma_r)
        self.trace_r = float(torch.trace(sigma_r))
        values, vectors = torch.linalg.eigh(sigma_r)
        self.sqrt_r = (vectors * values.clamp_min(0.0).sqrt()) @ vectors.T

    def fid(self, idx):
        """FID of the rows `idx` (with repeats) of `x`."""
        xb = self.x[torch.from_numpy(np.asarray(idx)).to(self.device)]
        mu_g = xb.mean(0)
        centred = xb - mu_g
        sigma_g = centred.T @ centred / (len(idx) - 1)
        cross = torch.linalg.eigvalsh(self.sqrt_r @ sigma_g @ self.sqrt_r)
        return float(((mu_g - self.mu_r) ** 2).sum() + torch.trace(sigma_g) + self.trace_r
                     - 2.0 * cross.clamp_min(0.0).sqrt().sum())
