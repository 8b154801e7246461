"""RDD relational losses on classifier feature maps: IS-P2P and memory-based M-P2P.

Where the released code departs from the paper's description, both behaviours
are available by name and the released one is the default (METHOD.md,
"Released behaviour").
"""

import torch
import torch.nn.functional as F
from torch import nn

from rdd.settings import ANCHOR_MODES, ENQUEUE_MODES, WRAP_MODES, check_choice

# The modes (their names live in rdd.settings, released first).
# How teacher vectors are taken from the map for the queue:
#   "columns" (released): the per-pixel-normalised map [B, C, H, W] is reinterpreted, without
#       permuting, as a [C, B*H*W] matrix and random columns are enqueued; a column holds the flat
#       elements j, j + BHW, ..., so it is not one pixel's channel vector.
#   "pixels" (the paper's description): random pixels' channel vectors.
# Where a write that reaches the end of the queue goes:
#   "tail" (released): when ptr + n >= M the n vectors fill the last n slots and ptr restarts at 0;
#   "modulo": a ring buffer, the write continues at slot 0.
# Which fixed queue slots are the K anchors:
#   "linspace" (released): round(linspace(0, M - 1, K)); "stride": floor(k * M / K).


def _check_maps(F_student, F_teacher, name):
    if F_student.ndim != 4 or F_student.shape != F_teacher.shape:
        raise ValueError(
            f"{name} expects two [B, C, H, W] feature maps of one shape, got "
            f"{tuple(F_student.shape)} and {tuple(F_teacher.shape)}"
        )


def _pixels(feature_map):
    """[B, C, H, W] -> [B*H*W, C], each pixel's channel vector (row order b, h, w)."""
    return feature_map.permute(0, 2, 3, 1).reshape(-1, feature_map.shape[1])


def _unit_pixels(feature_map):
    """`_pixels`, each vector L2-normalised."""
    return F.normalize(_pixels(feature_map), dim=1)


def _row_kl(logits_student, logits_teacher, temperature):
    """Mean over rows of KL(softmax(teacher / T) || softmax(student / T)) along the last dim."""
    log_p_student = F.log_softmax(logits_student / temperature, dim=-1)
    log_p_teacher = F.log_softmax(logits_teacher / temperature, dim=-1)
    rows = logits_student.numel() // logits_student.shape[-1]
    return F.kl_div(log_p_student, log_p_teacher, reduction="sum", log_target=True) / rows


def is_p2p_loss(F_student, F_teacher, temperature=1.0, group_size=None):
    """Inter-sample pixel-to-pixel relation loss on [B, C, H, W] maps.

    Samples are related within consecutive groups of `group_size` (default: the
    whole batch). In group g, row (b, d, i) is the softmax over pixels j of
    <F[b,:,i], F[d,:,j]> / temperature (unit pixel vectors); the loss is the
    mean over all rows of every group, i.e. the mean of the per-group losses.
    The released run related only the samples of one GPU's batch (4 GPUs x 32):
    groups of 32 reproduce it on fewer GPUs. No T^2 factor, as released.
    Memory grows as B * group_size * (HW)^2. The teacher side carries no gradient.
    """
    _check_maps(F_student, F_teacher, "is_p2p_loss")
    batch, _, height, width = F_student.shape
    group = batch if group_size is None else group_size
    if group < 1 or batch % group:
        raise ValueError(f"is_p2p_loss: group_size {group_size} must divide the batch of {batch}")
    pixels = height * width

    def relations(feature_map):
        # [G, g*HW, C] -> [G, g*HW, g*HW] viewed as [G, g, HW, g, HW]: rows (b, i, d), softmax over j.
        unit = _unit_pixels(feature_map).view(batch // group, group * pixels, -1)
        return (unit @ unit.transpose(1, 2)).view(batch // group, group, pixels, group, pixels)

    sim_student = relations(F_student)
    with torch.no_grad():
        sim_teacher = relations(F_teacher)
    return _row_kl(sim_student, sim_teacher, temperature)


class PixelMemory(nn.Module):
    """Queue of `size` unit vectors of dimension `channels`; queue and ptr are buffers."""

    def __init__(self, size, channels, seed=0, wrap="tail"):
        super().__init__()
        if size < 1 or channels < 1:
            raise ValueError(f"PixelMemory needs size >= 1 and channels >= 1, got {size}, {channels}")
        check_choice("wrap", wrap, WRAP_MODES)
        self.wrap = wrap
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("queue", F.normalize(torch.randn(size, channels, generator=generator), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @property
    def size(self):
        """Number of slots M."""
        return self.queue.shape[0]

    @torch.no_grad()
    def enqueue(self, vectors):
        """Write [n, C] vectors (expected unit norm) at ptr; n <= size. See WRAP_MODES for the end."""
        count = vectors.shape[0]
        if vectors.ndim != 2 or vectors.shape[1] != self.queue.shape[1]:
            raise ValueError(
                f"enqueue expects [n, {self.queue.shape[1]}] vectors, got {tuple(vectors.shape)}"
            )
        if count > self.size:
            raise ValueError(f"cannot enqueue {count} vectors into a memory of {self.size} slots")
        vectors = vectors.detach().to(self.queue.dtype)
        ptr = int(self.ptr)
        if self.wrap == "tail":
            if ptr + count >= self.size:
                self.queue[self.size - count:] = vectors
                self.ptr.zero_()
            else:
                self.queue[ptr:ptr + count] = vectors
                self.ptr.add_(count)
        else:
            slots = (ptr + torch.arange(count, device=self.queue.device)) % self.size
            self.queue[slots] = vectors
            self.ptr.add_(count).remainder_(self.size)

    def anchor_slots(self, num_anchors, mode="linspace"):
        """The K fixed, evenly spaced slots read as anchors (see ANCHOR_MODES)."""
        if not 1 <= num_anchors <= self.size:
            raise ValueError(f"num_anchors must be in 1..{self.size} (memory size), got {num_anchors}")
        check_choice("anchor mode", mode, ANCHOR_MODES)
        if mode == "linspace":
            # float32 linspace then round, exactly as released (the slots depend on that rounding).
            return torch.linspace(0, self.size - 1, num_anchors).round().long().to(self.queue.device)
        return torch.arange(num_anchors, device=self.queue.device) * self.size // num_anchors

    def anchors(self, num_anchors, mode="linspace"):
        """Copy of the vectors in the anchor slots."""
        return self.queue[self.anchor_slots(num_anchors, mode)]


def teacher_vectors(unit_map, count, mode="columns", generator=None):
    """`count` random vectors of a per-pixel-normalised teacher map [B, C, H, W], each unit norm.

    A map with fewer than `count` candidates gives all of them (in random order).
    """
    check_choice("enqueue mode", mode, ENQUEUE_MODES)
    channels = unit_map.shape[1]
    if mode == "columns":
        candidates = unit_map.contiguous().view(channels, -1).T  # column j of the reinterpreted matrix
    else:
        candidates = _pixels(unit_map)
    device = generator.device if generator is not None else "cpu"
    chosen = torch.randperm(candidates.shape[0], generator=generator, device=device)[:count]
    return F.normalize(candidates[chosen.to(candidates.device)], dim=1)


class MP2PLoss(nn.Module):
    """Memory-based pixel-to-pixel relation loss (M-P2P); memory grows as B (HW) K.

    `.head` is the trainable student projection head; the training loop optimises
    `head_parameters()` with its own optimiser. `gather` maps this process's
    normalised teacher map to the maps of every process (an all_gather under
    data parallelism); `enqueue_per_step` vectors are then chosen from all of
    them, as released, with `generator` (the round gives every process the same one, so that the
    processes' copies of the queue stay equal).
    """

    def __init__(self, channels, memory_size=20000, num_anchors=4096, enqueue_per_step=128,
                 contrast_temperature=0.1, kd_temperature=1.0, gather=None, memory_seed=0,
                 enqueue="columns", wrap="tail", anchor_slots="linspace", head_bias=False):
        super().__init__()
        if not 1 <= num_anchors <= memory_size:
            raise ValueError(f"num_anchors must be in 1..{memory_size} (memory_size), got {num_anchors}")
        if not 1 <= enqueue_per_step <= memory_size:
            raise ValueError(
                f"enqueue_per_step must be in 1..{memory_size} (memory_size), got {enqueue_per_step}"
            )
        if contrast_temperature <= 0 or kd_temperature <= 0:
            raise ValueError("contrast_temperature and kd_temperature must be positive")
        check_choice("enqueue", enqueue, ENQUEUE_MODES)
        check_choice("anchor_slots", anchor_slots, ANCHOR_MODES)
        self.channels = channels
        self.num_anchors = num_anchors
        self.enqueue_per_step = enqueue_per_step
        self.contrast_temperature = contrast_temperature
        self.kd_temperature = kd_temperature
        self.enqueue_mode, self.anchor_mode = enqueue, anchor_slots
        self.gather = gather if gather is not None else (lambda unit_map: unit_map)
        self.memory = PixelMemory(memory_size, channels, seed=memory_seed, wrap=wrap)
        self.head = nn.Sequential(
            nn.Conv2d(channels, channels, 1, bias=head_bias),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 1, bias=head_bias),
        )

    def head_parameters(self):
        """Parameters of the student projection head."""
        return self.head.parameters()

    def forward(self, F_student, F_teacher, generator=None):
        """Enqueue random teacher vectors, then KL(p_T || p_S) over the memory anchors."""
        _check_maps(F_student, F_teacher, "MP2PLoss")
        if F_student.shape[1] != self.channels:
            raise ValueError(f"MP2PLoss built for {self.channels} channels, got {F_student.shape[1]}")
        with torch.no_grad():
            teacher_map = F.normalize(F_teacher, dim=1)
            all_maps = self.gather(teacher_map)
            self.memory.enqueue(teacher_vectors(all_maps, self.enqueue_per_step, self.enqueue_mode, generator))
            anchors = self.memory.anchors(self.num_anchors, self.anchor_mode).to(teacher_map.dtype)
            logits_teacher = _pixels(teacher_map) @ anchors.T / self.contrast_temperature
        student = _unit_pixels(self.head(F_student))
        logits_student = student @ anchors.to(student.dtype).T / self.contrast_temperature
        # METHOD.md's "batch-mean, divided by H*W" = the mean over the B*H*W pixel rows; the KD
        # temperature's T^2 keeps gradient magnitudes independent of T (a no-op at T = 1).
        kd = self.kd_temperature
        return _row_kl(logits_student, logits_teacher, kd) * kd**2
