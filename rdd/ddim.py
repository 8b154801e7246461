"""Deterministic DDIM sampling as a pure function of a denoiser.

Noise and class labels are drawn per image from that image's seed, so a sample
does not depend on batch size or on how the seeds are split into shards.
"""

import torch

from rdd.diffusion import ddim_step


def initial_noise(seeds, shape, num_classes=0, device="cpu"):
    """`x_T ~ N(0, I)` of `shape` (C, H, W) for each seed, and labels when `num_classes` > 0.

    Each image's generator is seeded by its own seed; labels are drawn from the
    same generator after its noise.
    """
    noise, labels = [], []
    for seed in seeds:
        gen = torch.Generator().manual_seed(int(seed))
        noise.append(torch.randn(shape, generator=gen))
        if num_classes:
            labels.append(int(torch.randint(num_classes, (), generator=gen)))
    x_T = torch.stack(noise).to(device)
    y = torch.tensor(labels, dtype=torch.long, device=device) if num_classes else None
    return x_T, y


def check_steps(T, num_steps):
    """ValueError unless a model of `T` steps can sample with `num_steps` (a divisor of T)."""
    if num_steps < 1 or T % num_steps:
        allowed = ", ".join(str(n) for n in range(1, T + 1) if T % n == 0)
        raise ValueError(f"{num_steps} steps: a model of T={T} samples with a number of steps that "
                         f"divides T (allowed: {allowed})")


def ddim_sample(denoise, grid, x_T, num_steps, y=None, clip=True):
    """Sample with `num_steps` DDIM steps at stride `grid.T / num_steps`, from t = T to 0.

    `denoise(z, t_net, y)` returns the x0 prediction. Each step clips that
    prediction to [-1, 1] (when `clip`) before re-deriving the noise, and the
    output is clipped to [-1, 1].
    """
    check_steps(grid.T, num_steps)
    stride = grid.T // num_steps
    z = x_T
    for t in range(grid.T, 0, -stride):
        x0 = denoise(z, grid.net_time(t, z), y)
        if clip:
            x0 = x0.clamp(-1, 1)
        z = ddim_step(grid, z, t, t - stride, x0)
    return z.clamp(-1, 1)


def fixed_batch(denoise, net_batch):
    """`denoise` evaluated in chunks of exactly `net_batch` images, the last one zero-padded.

    CPU and GPU kernels pick their algorithms by batch size, which moves results
    in the last bits; with one fixed evaluation size, each image's samples are
    bit-identical whatever batch size the caller groups them in.
    """

    def chunked(z, t_net, y=None):
        outs = []
        for i in range(0, z.shape[0], net_batch):
            zc, tc = z[i:i + net_batch], t_net[i:i + net_batch]
            yc = y[i:i + net_batch] if y is not None else None
            n = zc.shape[0]
            if n < net_batch:
                pad = net_batch - n
                zc = torch.cat([zc, zc.new_zeros((pad,) + zc.shape[1:])])
                tc = torch.cat([tc, tc.new_zeros(pad)])
                yc = torch.cat([yc, yc.new_zeros(pad)]) if yc is not None else None
            outs.append(denoise(zc, tc, yc)[:n])
        return torch.cat(outs)

    return chunked
