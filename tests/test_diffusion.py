"""The schedule, the time grid, the DDIM sampler and the PD target against naive formulas."""

import math

import pytest
import torch

from rdd.diffusion import TimeGrid, cosine_alpha_bar, ddim_step, draw_times_and_noise, q_sample
from rdd.losses.pd import pd_target
from rdd.losses.truncated_snr import TeacherLoss
from rdd.ddim import ddim_sample, initial_noise
from rdd.train.batches import process_slice

T_BASE = 1024


def naive_alpha_bar(T_base, s=0.008):
    """alpha_bar by an explicit loop over the T_base + 1 clipped betas."""
    n = T_base + 1
    f = [math.cos((i / n + s) / (1 + s) * math.pi / 2) ** 2 for i in range(n + 1)]
    out, prod = [], 1.0
    for i in range(n):
        beta = min(1 - f[i + 1] / f[i], 0.999)
        prod *= 1 - beta
        out.append(prod)
    return torch.tensor(out, dtype=torch.float64)


def toy_teacher(z, t_net, y=None):
    """A smooth, time-dependent, nonlinear x0 predictor (stands in for a network)."""
    w = (t_net / T_BASE).reshape(-1, *([1] * (z.dim() - 1))).to(z.dtype)
    return torch.tanh(0.7 * z + w) * (1 - 0.3 * w)


def test_cosine_schedule_matches_naive_loop():
    assert torch.allclose(cosine_alpha_bar(T_BASE), naive_alpha_bar(T_BASE), rtol=1e-12, atol=1e-15)
    ab = cosine_alpha_bar(T_BASE)
    assert ab.shape == (T_BASE + 1,)
    assert torch.all(ab[1:] < ab[:-1]) and 0 < ab[-1] < 1e-6 and ab[0] < 1


@pytest.mark.parametrize("T", [1024, 64, 8, 2, 1])
def test_time_grid_indexes_the_base_schedule(T):
    grid = TimeGrid(T, T_BASE)
    assert grid.time_scale * T == T_BASE
    ab = naive_alpha_bar(T_BASE)
    for t in range(T + 1):
        assert torch.isclose(grid.alpha_bar(t), ab[t * grid.time_scale], rtol=1e-12, atol=0)
    x = torch.zeros(3, 1)
    assert torch.equal(grid.net_time(T, x), torch.full((3,), float(T_BASE)))


def test_student_time_k_is_teacher_time_2k():
    teacher = TimeGrid(16, T_BASE)
    student = teacher.student()
    assert student.T == 8 and student.time_scale == 2 * teacher.time_scale
    x = torch.zeros(1)
    for k in range(student.T + 1):
        assert torch.equal(student.net_time(k, x), teacher.net_time(2 * k, x))
        assert student.alpha_bar(k) == teacher.alpha_bar(2 * k)
    with pytest.raises(ValueError):
        TimeGrid(1, T_BASE).student()
    with pytest.raises(ValueError):
        TimeGrid(3, T_BASE)


@pytest.mark.parametrize("T,steps", [(1024, 1), (1024, 8), (1024, 1024), (8, 8), (8, 2), (2, 1)])
def test_ddim_with_true_x_network_returns_x(T, steps):
    # With x0_hat = x at every step, eps_hat stays eps* = (x_T - a_T x) / s_T, so the
    # output is a_0 x + s_0 eps*: x itself up to the schedule's s_0 (about 0.006),
    # which the authors' grid keeps at t = 0.
    grid = TimeGrid(T, T_BASE)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 5, 5, generator=gen, dtype=torch.float64) * 1.8 - 0.9
    x_T = torch.randn(4, 3, 5, 5, generator=gen, dtype=torch.float64)
    out = ddim_sample(lambda z, t, y: x, grid, x_T, steps)
    ab = naive_alpha_bar(T_BASE)
    eps_star = (x_T - ab[T_BASE].sqrt() * x) / (1 - ab[T_BASE]).sqrt()
    expected = (ab[0].sqrt() * x + (1 - ab[0]).sqrt() * eps_star).clamp(-1, 1)
    assert torch.allclose(out, expected, atol=1e-12)
    bound = (1 - ab[0]).sqrt() * eps_star.abs() + (1 - ab[0].sqrt()) * x.abs()
    assert torch.all((out - x).abs() <= bound + 1e-12)


def naive_ddim(denoise, T, steps, x_T):
    """DDIM written out with the base-table coefficients directly."""
    ab = naive_alpha_bar(T_BASE)
    scale, stride = T_BASE // T, T // steps
    z = x_T
    t = T
    while t > 0:
        s = t - stride
        x0 = denoise(z, torch.full((z.shape[0],), float(t * scale)), None).clamp(-1, 1)
        eps = (z - ab[t * scale].sqrt() * x0) / (1 - ab[t * scale]).sqrt()
        z = ab[s * scale].sqrt() * x0 + (1 - ab[s * scale]).sqrt() * eps
        t = s
    return z.clamp(-1, 1)


@pytest.mark.parametrize("T,steps", [(1024, 4), (8, 8), (4, 2)])
def test_ddim_matches_naive_implementation(T, steps):
    x_T = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = ddim_sample(toy_teacher, TimeGrid(T, T_BASE), x_T, steps)
    assert torch.allclose(out, naive_ddim(toy_teacher, T, steps, x_T), atol=1e-12)


@pytest.mark.parametrize("steps", [3, 16, 0])
def test_ddim_rejects_steps_that_do_not_divide_T(steps):
    with pytest.raises(ValueError, match=rf"^{steps} steps: a model of T=8 .* \(allowed: 1, 2, 4, 8\)$"):
        ddim_sample(toy_teacher, TimeGrid(8, T_BASE), torch.zeros(1, 1, 2, 2), steps)


@pytest.mark.parametrize("T", [1024, 16, 2])
def test_pd_target_lands_student_on_teacher_two_steps(T):
    teacher_grid = TimeGrid(T, T_BASE)
    student_grid = teacher_grid.student()
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(6, 2, 3, 3, generator=gen, dtype=torch.float64) * 2 - 1
    k = torch.randint(1, T // 2 + 1, (6,), generator=gen)
    k[0], k[1] = 1, T // 2  # both ends of the range
    t = 2 * k
    z_t = q_sample(teacher_grid, x, t, torch.randn(x.shape, generator=gen, dtype=torch.float64))
    x_target, eps_target, z_t2 = pd_target(toy_teacher, teacher_grid, z_t, t)

    # Naive: the teacher's two steps written out, then the student's one step.
    ab = naive_alpha_bar(T_BASE)
    scale = T_BASE // T
    z = z_t
    for step in (t, t - 1):
        idx = (step * scale)
        a = ab[idx].sqrt().reshape(-1, 1, 1, 1)
        s = (1 - ab[idx]).sqrt().reshape(-1, 1, 1, 1)
        x0 = toy_teacher(z, (step * scale).double())
        eps = (z - a * x0) / s
        a2 = ab[(step - 1) * scale].sqrt().reshape(-1, 1, 1, 1)
        s2 = (1 - ab[(step - 1) * scale]).sqrt().reshape(-1, 1, 1, 1)
        z = a2 * x0 + s2 * eps
    assert torch.allclose(z_t2, z, atol=1e-12)

    landed = ddim_step(student_grid, z_t, k, k - 1, x_target)
    assert torch.allclose(landed, z_t2, atol=1e-10, rtol=1e-10)
    a_t, s_t = teacher_grid.coefficients(t, x)
    assert torch.allclose(eps_target, (z_t - a_t * x_target) / s_t, atol=1e-12)


def test_teacher_loss_is_max_of_x_and_eps_errors():
    grid = TimeGrid(T_BASE, T_BASE)
    x = torch.rand(5, 1, 4, 4, dtype=torch.float64) * 2 - 1
    torch.manual_seed(3)
    loss = TeacherLoss(grid)(lambda z, t, y: torch.zeros_like(z), x)
    torch.manual_seed(3)
    t = torch.randint(0, T_BASE + 1, (5,))
    eps = torch.randn_like(x)
    ab = naive_alpha_bar(T_BASE)[t].reshape(-1, 1, 1, 1)
    z = ab.sqrt() * x + (1 - ab).sqrt() * eps
    eps_pred = z / (1 - ab).sqrt()  # x0_pred = 0
    expected = torch.maximum((x ** 2).flatten(1).mean(1), ((eps_pred - eps) ** 2).flatten(1).mean(1))
    assert torch.allclose(loss, expected, atol=1e-10)


def test_grouped_draws_repeat_one_groups_draws_over_the_batch():
    """With noise_group_size g the sample at batch position i has the t and eps of draw i mod g (as every
    released GPU drew alike for its share of the batch), the g draws made in order by the generator."""
    x = torch.zeros(12, 1, 3, 3)
    t, eps = draw_times_and_noise(x, 1, 4, group_size=4, generator=torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(7)
    t_group = torch.randint(1, 5, (4,), generator=gen)
    eps_group = torch.randn(4, 1, 3, 3, generator=gen)
    for i in range(12):
        assert t[i] == t_group[i % 4] and torch.equal(eps[i], eps_group[i % 4])
    assert eps.dtype == x.dtype and t.dtype == torch.long


def test_grouped_draws_do_not_depend_on_the_number_of_processes():
    """Each process holds a contiguous slice of the batch positions (StepBatchSampler): the draws each
    process makes for its slice, put back in order, are those one process makes for the whole batch."""
    x = torch.zeros(24, 2, 4, 4)
    one_t, one_eps = draw_times_and_noise(x, 0, 1024, 8, torch.Generator().manual_seed(3))
    for world_size in (2, 3, 4):
        slices = [process_slice(24, rank, world_size) for rank in range(world_size)]
        draws = [draw_times_and_noise(x[start:stop], 0, 1024, 8, torch.Generator().manual_seed(3), start)
                 for start, stop in slices]
        assert torch.equal(torch.cat([t for t, _ in draws]), one_t), world_size
        assert torch.equal(torch.cat([eps for _, eps in draws]), one_eps), world_size


def test_draws_cover_the_time_range_and_a_group_of_one_shares_everything():
    x = torch.zeros(4000, 1, 1, 1)
    t, _ = draw_times_and_noise(x, 0, 5, group_size=4000, generator=torch.Generator().manual_seed(0))
    assert set(t.tolist()) == set(range(6))  # both ends included
    t, eps = draw_times_and_noise(x[:6], 0, 5, group_size=1, generator=torch.Generator().manual_seed(0))
    assert (t == t[0]).all() and (eps == eps[0]).all()


def test_initial_noise_is_per_image_seed():
    a, ya = initial_noise([5, 6, 7], (1, 4, 4), num_classes=10)
    b, yb = initial_noise([7], (1, 4, 4), num_classes=10)
    assert torch.equal(a[2], b[0]) and ya[2] == yb[0]
    assert not torch.equal(a[0], a[1])
