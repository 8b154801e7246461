"""CFD, IS-P2P and M-P2P losses against naive loop implementations."""

import math

import pytest
import torch

from rdd.io import load_torch, save_torch
from rdd.losses.cfd import cfd_loss
from rdd.losses.relational import MP2PLoss, PixelMemory, is_p2p_loss

B, C, H, W = 3, 5, 3, 3


# ---- naive references: plain Python floats and loops -------------------------------------

def naive_log_softmax(values):
    top = max(values)
    log_norm = top + math.log(sum(math.exp(v - top) for v in values))
    return [v - log_norm for v in values]


def naive_kl(teacher_logits, student_logits):
    """KL(softmax(teacher) || softmax(student)) for one row of logits."""
    log_p = naive_log_softmax(teacher_logits)
    log_q = naive_log_softmax(student_logits)
    return sum(math.exp(lp) * (lp - lq) for lp, lq in zip(log_p, log_q))


def naive_unit(vector):
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector]


def dot(u, v):
    return sum(a * b for a, b in zip(u, v))


def pixel_vectors(feature_map):
    """Unit channel vectors per pixel: [b][h * W + w] -> list of C floats."""
    fm = feature_map.tolist()
    b_, c_, h_, w_ = feature_map.shape
    return [[naive_unit([fm[b][c][h][w] for c in range(c_)]) for h in range(h_) for w in range(w_)]
            for b in range(b_)]


def naive_cfd(f_student, f_teacher, tau):
    fs, ft = f_student.tolist(), f_teacher.tolist()
    return sum(naive_kl([v / tau for v in ft[b]], fs[b]) for b in range(len(fs))) / len(fs)


def naive_is_p2p(F_student, F_teacher, temperature=1.0):
    ps, pt = pixel_vectors(F_student), pixel_vectors(F_teacher)
    batch, pixels = len(ps), len(ps[0])
    total = 0.0
    for b in range(batch):
        for d in range(batch):
            for i in range(pixels):
                row_s = [dot(ps[b][i], ps[d][j]) / temperature for j in range(pixels)]
                row_t = [dot(pt[b][i], pt[d][j]) / temperature for j in range(pixels)]
                total += naive_kl(row_t, row_s)
    return total / (batch * batch * pixels) * temperature**2


def naive_head(head, feature_map):
    """conv1x1 -> BatchNorm (training batch statistics, biased variance) -> ReLU -> conv1x1."""
    conv1, bn, _, conv2 = head
    w1, b1 = conv1.weight[:, :, 0, 0].tolist(), conv1.bias.tolist()
    w2, b2 = conv2.weight[:, :, 0, 0].tolist(), conv2.bias.tolist()
    gamma, beta = bn.weight.tolist(), bn.bias.tolist()
    fm = feature_map.tolist()
    b_, c_, h_, w_ = feature_map.shape
    coords = [(b, h, w) for b in range(b_) for h in range(h_) for w in range(w_)]
    y = {p: [sum(w1[o][c] * fm[p[0]][c][p[1]][p[2]] for c in range(c_)) + b1[o] for o in range(c_)]
         for p in coords}
    for o in range(c_):
        mean = sum(y[p][o] for p in coords) / len(coords)
        var = sum((y[p][o] - mean) ** 2 for p in coords) / len(coords)
        for p in coords:
            y[p][o] = max(0.0, (y[p][o] - mean) / math.sqrt(var + bn.eps) * gamma[o] + beta[o])
    out = torch.zeros(b_, c_, h_, w_, dtype=torch.float64)
    for p in coords:
        for o in range(c_):
            out[p[0], o, p[1], p[2]] = sum(w2[o][c] * y[p][c] for c in range(c_)) + b2[o]
    return out


def naive_mp2p(head_out, F_teacher, queue, num_anchors, contrast_temperature, kd_temperature):
    size = len(queue)
    anchors = [queue[k * size // num_anchors] for k in range(num_anchors)]
    ps, pt = pixel_vectors(head_out), pixel_vectors(F_teacher)
    rows = [(b, i) for b in range(len(ps)) for i in range(len(ps[0]))]
    total = 0.0
    for b, i in rows:
        row_s = [dot(ps[b][i], a) / contrast_temperature / kd_temperature for a in anchors]
        row_t = [dot(pt[b][i], a) / contrast_temperature / kd_temperature for a in anchors]
        total += naive_kl(row_t, row_s)
    return total / len(rows) * kd_temperature**2


def maps(seed, shape=(B, C, H, W)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


# ---- CFD ---------------------------------------------------------------------------------

def test_cfd_matches_naive_kl_teacher_to_student_with_tau_on_teacher_only():
    f_s, f_t = maps(0, (4, 7)), maps(1, (4, 7))
    loss = cfd_loss(f_s, f_t, tau=0.9).item()
    assert loss == pytest.approx(naive_cfd(f_s, f_t, 0.9), rel=1e-12)
    # Discriminating: wrong direction, or tau also on the student, would differ.
    reverse = sum(naive_kl(f_s[b].tolist(), (f_t[b] / 0.9).tolist()) for b in range(4)) / 4
    tau_both = naive_cfd(f_s / 0.9, f_t, 0.9)
    assert abs(loss - reverse) > 1e-3 and abs(loss - tau_both) > 1e-3
    assert cfd_loss(f_t, f_s, tau=1.0).item() != pytest.approx(cfd_loss(f_s, f_t, tau=1.0).item(), rel=1e-3)


def test_cfd_zero_when_student_equals_sharpened_teacher_and_gradient_only_to_student():
    f_t = maps(2, (4, 7)).requires_grad_()
    f_s = (f_t.detach() / 0.9).requires_grad_()
    assert cfd_loss(f_s, f_t, 0.9).item() == pytest.approx(0.0, abs=1e-14)
    f_s2 = maps(3, (4, 7)).requires_grad_()
    loss = cfd_loss(f_s2, f_t, 0.9)
    assert loss.item() > 0
    grad_s, grad_t = torch.autograd.grad(loss, [f_s2, f_t], allow_unused=True)
    assert grad_t is None and grad_s.abs().sum() > 0


def test_cfd_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="cfd_loss"):
        cfd_loss(torch.zeros(2, 3), torch.zeros(2, 4), 0.9)


# ---- IS-P2P ------------------------------------------------------------------------------

@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_is_p2p_matches_naive_loops(temperature):
    F_s, F_t = maps(4), maps(5)
    loss = is_p2p_loss(F_s, F_t, temperature=temperature).item()
    assert loss == pytest.approx(naive_is_p2p(F_s, F_t, temperature), rel=1e-12)


def test_is_p2p_relates_pixels_across_samples():
    # Rotating one sample's channel vectors keeps every within-sample relation but changes
    # its relations to the other samples: only the cross-sample rows can see it.
    F_t = maps(6)
    rotation, _ = torch.linalg.qr(maps(7, (C, C)))
    F_s = F_t.clone()
    F_s[1] = torch.einsum("oc,chw->ohw", rotation, F_t[1])
    within_only = sum(naive_is_p2p(F_s[b:b + 1], F_t[b:b + 1]) for b in range(B)) / B
    assert within_only == pytest.approx(0.0, abs=1e-12)
    assert is_p2p_loss(F_s, F_t).item() > 1e-3


def test_is_p2p_zero_on_equal_maps_positive_otherwise_and_grad_only_to_student():
    F_t = maps(8).requires_grad_()
    assert is_p2p_loss(F_t.detach().clone(), F_t).item() == pytest.approx(0.0, abs=1e-14)
    F_s = maps(9).requires_grad_()
    loss = is_p2p_loss(F_s, F_t)
    assert loss.item() > 0
    grad_s, grad_t = torch.autograd.grad(loss, [F_s, F_t], allow_unused=True)
    assert grad_t is None and grad_s.abs().sum() > 0


def test_is_p2p_rejects_bad_shapes():
    with pytest.raises(ValueError, match="is_p2p_loss"):
        is_p2p_loss(maps(0), maps(1, (B, C, H, W + 1)))


# ---- PixelMemory -------------------------------------------------------------------------

def rows(n, channels, start):
    return torch.arange(start, start + n * channels, dtype=torch.float32).view(n, channels)


def test_pixel_memory_initial_queue_is_unit_and_seeded():
    a, b, c = PixelMemory(11, 5, seed=3), PixelMemory(11, 5, seed=3), PixelMemory(11, 5, seed=4)
    assert torch.allclose(a.queue.norm(dim=1), torch.ones(11))
    assert torch.equal(a.queue, b.queue) and not torch.equal(a.queue, c.queue)
    assert a.ptr.dtype == torch.long and a.ptr.item() == 0


def test_pixel_memory_fifo_order_pointer_and_wrap_around():
    memory = PixelMemory(5, 2)
    initial = memory.queue.clone()
    first, second, third = rows(2, 2, 100), rows(2, 2, 200), rows(3, 2, 300)
    memory.enqueue(first)
    assert torch.equal(memory.queue[:2], first) and torch.equal(memory.queue[2:], initial[2:])
    assert memory.ptr.item() == 2
    memory.enqueue(second)
    assert torch.equal(memory.queue[2:4], second) and memory.ptr.item() == 4
    memory.enqueue(third)  # slots 4, 0, 1: crosses the end
    assert torch.equal(memory.queue[4], third[0])
    assert torch.equal(memory.queue[:2], third[1:])
    assert torch.equal(memory.queue[2:4], second)  # the oldest surviving entries are untouched
    assert memory.ptr.item() == 2
    memory.enqueue(rows(5, 2, 400))  # exactly a full turn from slot 2
    assert memory.ptr.item() == 2
    assert torch.equal(memory.queue[[2, 3, 4, 0, 1]], rows(5, 2, 400))


def test_pixel_memory_fixed_evenly_spaced_anchor_slots():
    memory = PixelMemory(11, 3)
    assert torch.equal(memory.anchors(4), memory.queue[[0, 2, 5, 8]])
    assert torch.equal(memory.anchors(11), memory.queue)
    memory.enqueue(rows(3, 3, 0))
    assert torch.equal(memory.anchors(4), memory.queue[[0, 2, 5, 8]])  # slots do not follow ptr


def test_pixel_memory_errors():
    memory = PixelMemory(5, 2)
    with pytest.raises(ValueError, match="cannot enqueue 6"):
        memory.enqueue(rows(6, 2, 0))
    with pytest.raises(ValueError, match="num_anchors"):
        memory.anchors(6)
    with pytest.raises(ValueError, match="num_anchors"):
        memory.anchors(0)
    with pytest.raises(ValueError, match="enqueue expects"):
        memory.enqueue(rows(2, 3, 0))


def test_pixel_memory_writes_are_outside_autograd():
    memory = PixelMemory(5, 2)
    vectors = torch.randn(3, 2, requires_grad=True)
    memory.enqueue(vectors * 2)
    assert not memory.queue.requires_grad and memory.queue.grad_fn is None


def test_pixel_memory_state_dict_round_trip_resumes_exactly(tmp_path):
    memory = PixelMemory(7, 3, seed=0)
    memory.enqueue(rows(5, 3, 0))
    memory.enqueue(rows(4, 3, 50))  # wraps, ptr = 2
    save_torch(memory.state_dict(), tmp_path / "memory.pt")
    resumed = PixelMemory(7, 3, seed=99)
    resumed.load_state_dict(load_torch(tmp_path / "memory.pt"))
    assert torch.equal(resumed.queue, memory.queue) and resumed.ptr.item() == memory.ptr.item() == 2
    for m in (memory, resumed):
        m.enqueue(rows(3, 3, 900))
    assert torch.equal(resumed.queue, memory.queue) and torch.equal(resumed.ptr, memory.ptr)


# ---- M-P2P -------------------------------------------------------------------------------

M, K, ENQUEUE = 11, 4, 4


def make_mp2p(**kwargs):
    torch.manual_seed(0)
    loss_fn = MP2PLoss(C, memory_size=M, num_anchors=K, enqueue_per_step=ENQUEUE, **kwargs).double()
    with torch.no_grad():  # non-trivial BatchNorm affine parameters
        loss_fn.head[1].weight.uniform_(0.5, 1.5)
        loss_fn.head[1].bias.uniform_(-0.5, 0.5)
    return loss_fn


def expected_queue_after_step(queue_before, ptr_before, F_teacher, seed):
    """Naive FIFO write of the teacher pixels randperm(seed) picks (row order b, h, w)."""
    pixels = [v for sample in pixel_vectors(F_teacher) for v in sample]
    chosen = torch.randperm(len(pixels), generator=torch.Generator().manual_seed(seed))[:ENQUEUE]
    queue = queue_before.tolist()
    for k, p in enumerate(chosen.tolist()):
        queue[(ptr_before + k) % len(queue)] = pixels[p]
    return queue


@pytest.mark.parametrize("kd_temperature", [1.0, 2.0])
def test_mp2p_matches_naive_and_enqueues_before_the_loss(kd_temperature):
    loss_fn = make_mp2p(kd_temperature=kd_temperature)
    loss_fn.memory.enqueue(loss_fn.memory.queue[:9].clone())  # start at ptr 9 so the step wraps
    F_s, F_t = maps(10), maps(11)
    queue_before, ptr_before = loss_fn.memory.queue.clone(), loss_fn.memory.ptr.item()
    loss = loss_fn(F_s, F_t, generator=torch.Generator().manual_seed(5)).item()

    queue_after = expected_queue_after_step(queue_before, ptr_before, F_t, seed=5)
    assert torch.allclose(loss_fn.memory.queue, torch.tensor(queue_after, dtype=torch.float64), atol=1e-14)
    assert loss_fn.memory.ptr.item() == (ptr_before + ENQUEUE) % M

    head_out = naive_head(loss_fn.head, F_s)
    assert loss == pytest.approx(naive_mp2p(head_out, F_t, queue_after, K, 0.1, kd_temperature), rel=1e-10)
    # Discriminating: anchors taken before the enqueue give another value.
    stale = naive_mp2p(head_out, F_t, queue_before.tolist(), K, 0.1, kd_temperature)
    assert abs(loss - stale) > 1e-6


def test_mp2p_same_generator_seed_same_loss_and_memory():
    results = []
    for seed in (7, 7, 8):
        loss_fn = make_mp2p()
        loss = loss_fn(maps(12), maps(13), generator=torch.Generator().manual_seed(seed))
        results.append((loss.item(), loss_fn.memory.queue.clone()))
    assert results[0][0] == results[1][0] and torch.equal(results[0][1], results[1][1])
    assert not torch.equal(results[0][1], results[2][1])


def test_mp2p_gradients_reach_student_and_head_not_teacher():
    loss_fn = make_mp2p()
    F_s, F_t = maps(14).requires_grad_(), maps(15).requires_grad_()
    loss = loss_fn(F_s, F_t, generator=torch.Generator().manual_seed(0))
    head_params = list(loss_fn.head_parameters())
    assert len(head_params) == 6  # conv1 w/b, bn w/b, conv2 w/b
    grads = torch.autograd.grad(loss, [F_s, F_t, *head_params], allow_unused=True)
    assert grads[1] is None
    assert grads[0].abs().sum() > 0
    assert all(g is not None and g.abs().sum() > 0 for g in grads[2:])
    assert not loss_fn.memory.queue.requires_grad


def test_mp2p_gather_output_is_enqueued():
    loss_fn = make_mp2p(gather=lambda pixels: torch.cat([pixels, -pixels]))
    F_t = maps(16)
    loss_fn(maps(17), F_t, generator=torch.Generator().manual_seed(1))
    queue = loss_fn.memory.queue
    assert loss_fn.memory.ptr.item() == 2 * ENQUEUE
    assert torch.equal(queue[ENQUEUE:2 * ENQUEUE], -queue[:ENQUEUE])
    teacher_pixels = torch.tensor([v for s in pixel_vectors(F_t) for v in s], dtype=torch.float64)
    for v in queue[:ENQUEUE]:
        assert torch.isclose(teacher_pixels, v, atol=1e-14).all(dim=1).any()


def test_mp2p_small_batch_enqueues_every_pixel():
    loss_fn = MP2PLoss(C, memory_size=M, num_anchors=K, enqueue_per_step=10).double()
    loss_fn(maps(18, (1, C, 2, 2)), maps(19, (1, C, 2, 2)))
    assert loss_fn.memory.ptr.item() == 4


def test_mp2p_argument_errors():
    with pytest.raises(ValueError, match="num_anchors"):
        MP2PLoss(C, memory_size=10, num_anchors=11)
    with pytest.raises(ValueError, match="enqueue_per_step"):
        MP2PLoss(C, memory_size=10, num_anchors=4, enqueue_per_step=11)
    loss_fn = make_mp2p()
    with pytest.raises(ValueError, match="channels"):
        loss_fn(maps(0, (B, C + 1, H, W)), maps(1, (B, C + 1, H, W)))
