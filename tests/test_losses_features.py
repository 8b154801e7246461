"""CFD, IS-P2P, M-P2P and RCFD's dataset-oriented losses against naive loop implementations."""

import math
from fractions import Fraction

import pytest
import torch

from rdd.checkpoints import load_torch, save_torch
from rdd.losses.cfd import cfd_loss
from rdd.losses.dataset import class_diversity_loss, prediction_entropy
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
    """Every pair of samples of the batch, every pair of pixels; no T^2 factor (as released)."""
    ps, pt = pixel_vectors(F_student), pixel_vectors(F_teacher)
    batch, pixels = len(ps), len(ps[0])
    total = 0.0
    for b in range(batch):
        for d in range(batch):
            for i in range(pixels):
                row_s = [dot(ps[b][i], ps[d][j]) / temperature for j in range(pixels)]
                row_t = [dot(pt[b][i], pt[d][j]) / temperature for j in range(pixels)]
                total += naive_kl(row_t, row_s)
    return total / (batch * batch * pixels)


def naive_head(head, feature_map):
    """conv1x1 -> BatchNorm (training batch statistics, biased variance) -> ReLU -> conv1x1."""
    conv1, bn, _, conv2 = head
    w1, w2 = conv1.weight[:, :, 0, 0].tolist(), conv2.weight[:, :, 0, 0].tolist()
    zeros = [0.0] * feature_map.shape[1]
    b1 = conv1.bias.tolist() if conv1.bias is not None else zeros
    b2 = conv2.bias.tolist() if conv2.bias is not None else zeros
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


def naive_anchor_slots(size, num_anchors):
    """round(linspace(0, size - 1, K)) with exact fractions (ties to even, as torch.round)."""
    if num_anchors == 1:
        return [0]
    return [round(Fraction(k * (size - 1), num_anchors - 1)) for k in range(num_anchors)]


def naive_mp2p(head_out, F_teacher, anchors, contrast_temperature, kd_temperature):
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
    if temperature != 1.0:  # discriminating: the released loss has no T^2 factor
        assert loss != pytest.approx(naive_is_p2p(F_s, F_t, temperature) * temperature**2, rel=1e-3)


@pytest.mark.parametrize("group_size", [1, 2, 3, 6])
def test_is_p2p_groups_are_separate_losses_averaged(group_size):
    # As released on 4 GPUs x 32: each group's samples are related among themselves only,
    # each group's loss is its own batch-mean, and data parallelism averages them.
    F_s, F_t = maps(20, (6, C, 2, 2)), maps(21, (6, C, 2, 2))
    per_group = [naive_is_p2p(F_s[g:g + group_size], F_t[g:g + group_size]) for g in range(0, 6, group_size)]
    loss = is_p2p_loss(F_s, F_t, group_size=group_size).item()
    assert loss == pytest.approx(sum(per_group) / len(per_group), rel=1e-12)
    if group_size < 6:
        assert loss != pytest.approx(naive_is_p2p(F_s, F_t), rel=1e-3)


def test_is_p2p_group_size_must_divide_the_batch():
    with pytest.raises(ValueError, match="group_size 2 must divide the batch of 3"):
        is_p2p_loss(maps(0), maps(1), group_size=2)


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


def naive_enqueue(queue, ptr, vectors, wrap):
    """METHOD.md's write rule on a list: "tail" (released) or a ring buffer ("modulo")."""
    queue, n, size = list(queue), len(vectors), len(queue)
    if wrap == "tail":
        if ptr + n >= size:
            for k in range(n):
                queue[size - n + k] = vectors[k]
            return queue, 0
        for k in range(n):
            queue[ptr + k] = vectors[k]
        return queue, ptr + n
    for k in range(n):
        queue[(ptr + k) % size] = vectors[k]
    return queue, (ptr + n) % size


@pytest.mark.parametrize("wrap", ["tail", "modulo"])
def test_pixel_memory_write_rule_over_several_wraps(wrap):
    memory = PixelMemory(7, 2, wrap=wrap)
    queue, ptr = memory.queue.tolist(), 0
    for step, n in enumerate([3, 3, 1, 2, 4, 4, 7, 5, 2, 6]):
        vectors = rows(n, 2, 100 * step).tolist()
        memory.enqueue(torch.tensor(vectors))
        queue, ptr = naive_enqueue(queue, ptr, vectors, wrap)
        assert memory.queue.tolist() == queue and memory.ptr.item() == ptr, f"step {step}"


def test_pixel_memory_released_wrap_fills_the_last_slots_and_restarts():
    memory = PixelMemory(5, 2)  # wrap "tail" is the default, as released
    initial = memory.queue.clone()
    memory.enqueue(rows(3, 2, 100))
    assert memory.ptr.item() == 3
    memory.enqueue(rows(2, 2, 200))  # 3 + 2 >= 5: the last two slots, then ptr 0
    assert torch.equal(memory.queue[3:], rows(2, 2, 200)) and memory.ptr.item() == 0
    memory.enqueue(rows(3, 2, 300))  # 0 + 3 < 5: slots 0..2
    assert torch.equal(memory.queue[:3], rows(3, 2, 300)) and memory.ptr.item() == 3
    memory.enqueue(rows(3, 2, 400))  # 3 + 3 >= 5: slots 2..4, ptr 0 (slot 2 overwritten again)
    assert torch.equal(memory.queue[2:], rows(3, 2, 400)) and memory.ptr.item() == 0
    assert not torch.equal(memory.queue, initial)


@pytest.mark.parametrize("size,num_anchors", [(11, 4), (11, 11), (11, 1), (300, 32), (2048, 512),
                                              (20000, 4096), (20000, 1024)])
def test_pixel_memory_released_anchor_slots(size, num_anchors):
    memory = PixelMemory(size, 3)
    slots = memory.anchor_slots(num_anchors)
    exact = naive_anchor_slots(size, num_anchors)
    # The released slots come from a float32 linspace: where the exact value lies within float32
    # rounding of a half (k = 3781 at 20000 / 4096: 18465.4998...), it may round the other way.
    near_half = {k for k in range(num_anchors) if num_anchors > 1 and
                 abs(Fraction(k * (size - 1), num_anchors - 1) % 1 - Fraction(1, 2)) < Fraction(1, 1000)}
    assert all(got == want or (k in near_half and abs(got - want) == 1)
               for k, (got, want) in enumerate(zip(slots.tolist(), exact)))
    assert len(slots) == num_anchors
    assert torch.equal(memory.anchors(num_anchors), memory.queue[slots])
    memory.enqueue(rows(3, 3, 0))
    assert torch.equal(memory.anchors(num_anchors), memory.queue[slots])  # slots do not follow ptr


def test_pixel_memory_stride_anchor_slots():
    memory = PixelMemory(11, 3)
    assert memory.anchor_slots(4, "stride").tolist() == [k * 11 // 4 for k in range(4)] == [0, 2, 5, 8]
    # At the paper's sizes the two rules agree on only 134 of the 4096 anchors.
    released, stride = PixelMemory(20000, 1).anchor_slots(4096), PixelMemory(20000, 1).anchor_slots(4096, "stride")
    assert int((released == stride).sum()) == 134


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
    memory.enqueue(rows(1, 3, 50))  # ptr = 6
    save_torch(memory.state_dict(), tmp_path / "memory.pt")
    resumed = PixelMemory(7, 3, seed=99)
    resumed.load_state_dict(load_torch(tmp_path / "memory.pt"))
    assert torch.equal(resumed.queue, memory.queue) and resumed.ptr.item() == memory.ptr.item() == 6
    for m in (memory, resumed):
        m.enqueue(rows(3, 3, 900))
    assert torch.equal(resumed.queue, memory.queue) and torch.equal(resumed.ptr, memory.ptr)


# ---- M-P2P -------------------------------------------------------------------------------

M, K, ENQUEUE = 11, 4, 4


RELEASED = {"enqueue": "columns", "wrap": "tail", "anchor_slots": "linspace", "head_bias": False}
DESCRIBED = {"enqueue": "pixels", "wrap": "modulo", "anchor_slots": "stride", "head_bias": True}


def make_mp2p(**kwargs):
    torch.manual_seed(0)
    loss_fn = MP2PLoss(C, memory_size=M, num_anchors=K, enqueue_per_step=ENQUEUE, **kwargs).double()
    with torch.no_grad():  # non-trivial BatchNorm affine parameters
        loss_fn.head[1].weight.uniform_(0.5, 1.5)
        loss_fn.head[1].bias.uniform_(-0.5, 0.5)
    return loss_fn


def naive_columns(F_teacher):
    """Released candidates: the per-pixel-normalised map's elements, in memory order of
    [B, C, H, W], read as a row-major [C, B*H*W] matrix; column j, L2-normalised again."""
    unit = pixel_vectors(F_teacher)
    b_, c_, h_, w_ = F_teacher.shape
    flat = [unit[b][h * w_ + w][c] for b in range(b_) for c in range(c_) for h in range(h_) for w in range(w_)]
    n = b_ * h_ * w_
    return [naive_unit([flat[c * n + j] for c in range(c_)]) for j in range(n)]


def expected_queue_after_step(queue_before, ptr_before, F_teacher, seed, enqueue, wrap):
    """The queue after one step: randperm(seed) picks ENQUEUE candidates, written by `wrap`."""
    if enqueue == "columns":
        candidates = naive_columns(F_teacher)
    else:
        candidates = [v for sample in pixel_vectors(F_teacher) for v in sample]
    chosen = torch.randperm(len(candidates), generator=torch.Generator().manual_seed(seed))[:ENQUEUE]
    return naive_enqueue(queue_before.tolist(), ptr_before, [candidates[c] for c in chosen.tolist()], wrap)


@pytest.mark.parametrize("kd_temperature", [1.0, 2.0])
@pytest.mark.parametrize("modes", [RELEASED, DESCRIBED], ids=["released", "described"])
def test_mp2p_matches_naive_and_enqueues_before_the_loss(kd_temperature, modes):
    loss_fn = make_mp2p(kd_temperature=kd_temperature, **modes)
    loss_fn.memory.enqueue(loss_fn.memory.queue[:9].clone())  # start at ptr 9 so the step wraps
    F_s, F_t = maps(10), maps(11)
    queue_before, ptr_before = loss_fn.memory.queue.clone(), loss_fn.memory.ptr.item()
    loss = loss_fn(F_s, F_t, generator=torch.Generator().manual_seed(5)).item()

    queue_after, ptr_after = expected_queue_after_step(queue_before, ptr_before, F_t, 5, modes["enqueue"],
                                                       modes["wrap"])
    assert torch.allclose(loss_fn.memory.queue, torch.tensor(queue_after, dtype=torch.float64), atol=1e-14)
    assert loss_fn.memory.ptr.item() == ptr_after

    head_out = naive_head(loss_fn.head, F_s)
    slots = (naive_anchor_slots(M, K) if modes["anchor_slots"] == "linspace"
             else [k * M // K for k in range(K)])
    assert loss == pytest.approx(naive_mp2p(head_out, F_t, [queue_after[k] for k in slots], 0.1,
                                            kd_temperature), rel=1e-10)
    # Discriminating: anchors taken before the enqueue give another value.
    stale = naive_mp2p(head_out, F_t, [queue_before.tolist()[k] for k in slots], 0.1, kd_temperature)
    assert abs(loss - stale) > 1e-6


def test_released_columns_are_not_pixel_vectors():
    F_t = maps(22)
    columns, pixels = naive_columns(F_t), [v for s_ in pixel_vectors(F_t) for v in s_]
    assert len(columns) == len(pixels) == B * H * W
    assert not any(all(abs(a - b) < 1e-6 for a, b in zip(col, pix)) for col in columns for pix in pixels)


def test_mp2p_same_generator_seed_same_loss_and_memory():
    results = []
    for seed in (7, 7, 8):
        loss_fn = make_mp2p()
        loss = loss_fn(maps(12), maps(13), generator=torch.Generator().manual_seed(seed))
        results.append((loss.item(), loss_fn.memory.queue.clone()))
    assert results[0][0] == results[1][0] and torch.equal(results[0][1], results[1][1])
    assert not torch.equal(results[0][1], results[2][1])


@pytest.mark.parametrize("head_bias,count", [(False, 4), (True, 6)])
def test_mp2p_gradients_reach_student_and_head_not_teacher(head_bias, count):
    loss_fn = make_mp2p(head_bias=head_bias)
    F_s, F_t = maps(14).requires_grad_(), maps(15).requires_grad_()
    loss = loss_fn(F_s, F_t, generator=torch.Generator().manual_seed(0))
    head_params = list(loss_fn.head_parameters())
    assert len(head_params) == count  # conv1 w (b), bn w/b, conv2 w (b); the released head has no biases
    assert (loss_fn.head[0].bias is None) == (loss_fn.head[3].bias is None) == (not head_bias)
    grads = torch.autograd.grad(loss, [F_s, F_t, *head_params], allow_unused=True)
    assert grads[1] is None
    assert grads[0].abs().sum() > 0
    assert all(g is not None and g.abs().sum() > 0 for g in grads[2:])
    assert not loss_fn.memory.queue.requires_grad


@pytest.mark.parametrize("enqueue", ["columns", "pixels"])
def test_mp2p_chooses_from_the_gathered_maps_in_total(enqueue):
    # Under data parallelism the maps of every process are gathered first and enqueue_per_step
    # vectors are chosen from all of them: the queue advances by enqueue_per_step, not per process.
    loss_fn = make_mp2p(gather=lambda unit_map: torch.cat([unit_map, -unit_map.flip(0)]), enqueue=enqueue)
    F_t = maps(16)
    queue_before = loss_fn.memory.queue.clone()
    loss_fn(maps(17), F_t, generator=torch.Generator().manual_seed(1))
    gathered = torch.cat([F_t, -F_t.flip(0)])
    queue_after, ptr_after = expected_queue_after_step(queue_before, 0, gathered, 1, enqueue, "tail")
    assert loss_fn.memory.ptr.item() == ptr_after == ENQUEUE
    assert torch.allclose(loss_fn.memory.queue, torch.tensor(queue_after, dtype=torch.float64), atol=1e-14)


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


# ---- RCFD's dataset-oriented terms --------------------------------------------------------

def naive_entropy(logits):
    rows = [naive_log_softmax(row) for row in logits.tolist()]
    return sum(-sum(math.exp(lp) * lp for lp in row) for row in rows) / len(rows)


def naive_diversity(logits):
    rows = [[math.exp(lp) for lp in naive_log_softmax(row)] for row in logits.tolist()]
    p_mean = [sum(column) / len(rows) for column in zip(*rows)]
    return sum(p * math.log(p) for p in p_mean if p > 0)


@pytest.mark.parametrize("seed", [0, 1])
def test_dataset_terms_match_naive_loops(seed):
    logits = torch.randn(6, 10, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3
    assert prediction_entropy(logits).item() == pytest.approx(naive_entropy(logits), rel=1e-12)
    assert class_diversity_loss(logits).item() == pytest.approx(naive_diversity(logits), rel=1e-12)


def test_dataset_terms_extremes():
    classes = 10
    uniform = torch.zeros(4, classes, dtype=torch.float64)
    assert prediction_entropy(uniform).item() == pytest.approx(math.log(classes), rel=1e-12)
    assert class_diversity_loss(uniform).item() == pytest.approx(-math.log(classes), rel=1e-12)
    # Confident about every sample, one class per sample, each class once: entropy 0, diversity -log C.
    one_each = torch.eye(classes, dtype=torch.float64) * 1000
    assert prediction_entropy(one_each).item() == pytest.approx(0.0, abs=1e-12)
    assert class_diversity_loss(one_each).item() == pytest.approx(-math.log(classes), rel=1e-12)
    # The whole batch on one class: no diversity (0), and a class whose mean probability underflows to 0
    # gives 0 rather than the NaN of p * log(p).
    one_class = torch.zeros(4, classes, dtype=torch.float64)
    one_class[:, 3] = 1000
    assert class_diversity_loss(one_class).item() == pytest.approx(0.0, abs=1e-12)
    p_mean = torch.softmax(one_class, dim=1).mean(dim=0)
    assert torch.isnan((p_mean * p_mean.log()).sum())  # what the released p * log(p) gives here


def test_dataset_terms_reject_non_logit_shapes():
    with pytest.raises(ValueError, match="logits"):
        prediction_entropy(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="logits"):
        class_diversity_loss(torch.zeros(5))
