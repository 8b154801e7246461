"""The progressive-distillation target (Salimans & Ho): two teacher DDIM steps, one student step."""

import torch

from rdd.diffusion import ddim_step, eps_from_x0


def x_target_from_two_steps(grid, z_t, t, z_t2):
    """The x that one DDIM step from `z_t` (time t) would need to land on `z_t2` (time t-2).

    With r = s_{t-2} / s_t: x_target = (z_{t-2} - r z_t) / (a_{t-2} - r a_t).
    """
    a_t, s_t = grid.coefficients(t, z_t)
    a_2, s_2 = grid.coefficients(t - 2, z_t)
    r = s_2 / s_t
    return (z_t2 - r * z_t) / (a_2 - r * a_t)


@torch.no_grad()
def pd_target(teacher, grid, z_t, t, y=None):
    """`(x_target, eps_target, z_{t-2})` from two teacher DDIM steps t -> t-1 -> t-2.

    `grid` is the teacher's grid. As in the authors' code (and unlike the
    sampler), the teacher's x0 predictions are not clipped here.
    """
    z = z_t
    for step in (t, t - 1):
        x0 = teacher(z, grid.net_time(step, z), y)
        z = ddim_step(grid, z, step, step - 1, x0)
    x_target = x_target_from_two_steps(grid, z_t, t, z)
    return x_target, eps_from_x0(grid, z_t, t, x_target), z
