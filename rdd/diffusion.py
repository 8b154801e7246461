"""Cosine noise schedule and the discrete time grid shared by teacher and students.

A model with `T` sampling steps lives on integer times t = 0..T. Its network is
fed `t * time_scale` with `time_scale = T_base / T`, so every model of a
distillation chain reads one network time axis and one `alpha_bar` table built
for the base teacher.
"""

import math
from dataclasses import dataclass

import torch


def cosine_alpha_bar(T_base, cosine_s=0.008, max_beta=0.999):
    """`alpha_bar_t` for t = 0..T_base (float64), from T_base + 1 clipped cosine betas.

    Nichol & Dhariwal: f(u) = cos^2((u + s) / (1 + s) * pi / 2) on u = i / N,
    N = T_base + 1, beta_i = min(1 - f_{i+1} / f_i, max_beta).
    """
    n = T_base + 1
    u = torch.arange(n + 1, dtype=torch.float64) / n
    f = torch.cos((u + cosine_s) / (1 + cosine_s) * math.pi / 2) ** 2
    beta = (1 - f[1:] / f[:-1]).clamp(max=max_beta)
    return torch.cumprod(1 - beta, dim=0)


@dataclass(frozen=True)
class TimeGrid:
    """The time grid of a `T`-step model on a `T_base`-step cosine schedule."""

    T: int
    T_base: int

    def __post_init__(self):
        if self.T < 1 or self.T_base % self.T:
            raise ValueError(f"T={self.T} must divide T_base={self.T_base}")

    @property
    def time_scale(self):
        return self.T_base // self.T

    def student(self):
        """The grid of the student distilled from this model (half the steps)."""
        if self.T % 2:
            raise ValueError(f"a {self.T}-step model cannot be halved")
        return TimeGrid(self.T // 2, self.T_base)

    def base_index(self, t):
        """Index into the base `alpha_bar` table of grid time(s) `t`."""
        return t * self.time_scale

    def net_time(self, t, like):
        """Network time `t * time_scale` as a float tensor [B] on `like`'s device."""
        t = torch.as_tensor(t, device=like.device)
        return (t * self.time_scale).to(torch.float32).expand(like.shape[0])

    def alpha_bar(self, t):
        """`alpha_bar` at grid time(s) `t` (float64 tensor)."""
        idx = torch.as_tensor(self.base_index(t))
        return _alpha_bar_table(self.T_base, idx.device)[idx]

    def coefficients(self, t, like):
        """`(a_t, s_t)` = (sqrt(alpha_bar), sqrt(1 - alpha_bar)), broadcastable to `like`."""
        ab = self.alpha_bar(torch.as_tensor(t, device=like.device))
        shape = (-1,) + (1,) * (like.dim() - 1) if ab.dim() else ()
        a = ab.sqrt().to(like.dtype).reshape(shape)
        s = (1 - ab).sqrt().to(like.dtype).reshape(shape)
        return a, s


_TABLES = {}


def _alpha_bar_table(T_base, device):
    key = (T_base, str(device))
    if key not in _TABLES:
        _TABLES[key] = cosine_alpha_bar(T_base).to(device)
    return _TABLES[key]


def q_sample(grid, x, t, eps):
    """Noise `x` to grid time `t`: z_t = a_t x + s_t eps."""
    a, s = grid.coefficients(t, x)
    return a * x + s * eps


def eps_from_x0(grid, z, t, x0):
    """The noise implied by a clean-image prediction: (z_t - a_t x0) / s_t."""
    a, s = grid.coefficients(t, z)
    return (z - a * x0) / s


def ddim_step(grid, z, t, s_time, x0):
    """One deterministic DDIM move from grid time `t` to `s_time` given the prediction `x0`."""
    eps = eps_from_x0(grid, z, t, x0)
    a_s, s_s = grid.coefficients(s_time, z)
    return a_s * x0 + s_s * eps


def draw_times_and_noise(x, t_low, t_high, group_size=None, generator=None, first_position=0):
    """`(t, eps)` for the batch `x`: integer times uniform on t_low..t_high, standard normal noise like `x`.

    `group_size` None: a draw per sample, from the global RNG (the training loop seeds it per process
    and step). Otherwise the released multi-GPU rounds: every GPU was seeded alike, so each drew the
    same t and eps for its share of the batch. The sample at global batch position i takes draw
    i mod group_size, made with `generator` (seeded alike on every process); `x` holds positions
    `first_position` onwards (each process a contiguous slice: rdd.train.batches.process_slice). So the
    draws do not depend on the number of processes, and each group of `group_size` positions, a
    released GPU's batch, holds every draw once.
    """
    if group_size is None:
        t = torch.randint(t_low, t_high + 1, (x.shape[0],), device=x.device)
        return t, torch.randn_like(x)
    t_group = torch.randint(t_low, t_high + 1, (group_size,), generator=generator)
    eps_group = torch.randn((group_size, *x.shape[1:]), generator=generator, dtype=x.dtype)
    positions = (first_position + torch.arange(x.shape[0])) % group_size
    return t_group[positions].to(x.device), eps_group[positions].to(x.device)
