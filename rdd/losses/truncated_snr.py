"""The base teacher's loss: x0 prediction with truncated-SNR weighting (PD)."""

import torch

from rdd.diffusion import eps_from_x0, q_sample


def per_sample_mse(a, b):
    """Mean squared error per sample, [B]."""
    return (a - b).pow(2).flatten(1).mean(1)


def truncated_snr_loss(grid, z_t, t, x0_pred, x0_target, eps_target):
    """max(mse(x0_pred, x0_target), mse(eps_pred, eps_target)) per sample, [B]."""
    eps_pred = eps_from_x0(grid, z_t, t, x0_pred)
    return torch.maximum(per_sample_mse(x0_pred, x0_target), per_sample_mse(eps_pred, eps_target))


class TeacherLoss:
    """Per-sample teacher loss with `t` uniform on 0..T (both ends included)."""

    def __init__(self, grid):
        self.grid = grid

    def __call__(self, net, x, y=None):
        t = torch.randint(0, self.grid.T + 1, (x.shape[0],), device=x.device)
        eps = torch.randn_like(x)
        z_t = q_sample(self.grid, x, t, eps)
        x0_pred = net(z_t, self.grid.net_time(t, x), y)
        return truncated_snr_loss(self.grid, z_t, t, x0_pred, x, eps)
