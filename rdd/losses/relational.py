"""RDD relational losses on classifier feature maps: IS-P2P and memory-based M-P2P."""

import torch
import torch.nn.functional as F
from torch import nn


def _check_maps(F_student, F_teacher, name):
    if F_student.ndim != 4 or F_student.shape != F_teacher.shape:
        raise ValueError(
            f"{name} expects two [B, C, H, W] feature maps of one shape, got "
            f"{tuple(F_student.shape)} and {tuple(F_teacher.shape)}"
        )


def _unit_pixels(feature_map):
    """[B, C, H, W] -> [B*H*W, C], each pixel's channel vector L2-normalised (row order b, h, w)."""
    channels = feature_map.shape[1]
    return F.normalize(feature_map.permute(0, 2, 3, 1).reshape(-1, channels), dim=1)


def _row_kl(logits_student, logits_teacher, temperature):
    """Mean over rows of KL(softmax(teacher / T) || softmax(student / T)) along the last dim, times T^2."""
    log_p_student = F.log_softmax(logits_student / temperature, dim=-1)
    log_p_teacher = F.log_softmax(logits_teacher / temperature, dim=-1)
    rows = logits_student.numel() // logits_student.shape[-1]
    kl_sum = F.kl_div(log_p_student, log_p_teacher, reduction="sum", log_target=True)
    # T^2 keeps gradient magnitudes independent of T (Hinton et al.); a no-op at T = 1.
    return kl_sum / rows * temperature**2


def is_p2p_loss(F_student, F_teacher, temperature=1.0):
    """Inter-sample pixel-to-pixel relation loss on [B, C, H, W] maps, mean over B*B*H*W rows.

    Row (b, d, i) is the softmax over pixels j of <F[b,:,i], F[d,:,j]> (unit pixel
    vectors); memory grows as B^2 (HW)^2. The teacher side carries no gradient.
    """
    _check_maps(F_student, F_teacher, "is_p2p_loss")
    batch, _, height, width = F_student.shape
    pixels = height * width
    student = _unit_pixels(F_student)
    # [B*HW, B*HW] viewed as [B, HW, B, HW]: rows (b, i, d), softmax over j of sample d.
    sim_student = (student @ student.T).view(batch, pixels, batch, pixels)
    with torch.no_grad():
        teacher = _unit_pixels(F_teacher)
        sim_teacher = (teacher @ teacher.T).view(batch, pixels, batch, pixels)
    return _row_kl(sim_student, sim_teacher, temperature)


class PixelMemory(nn.Module):
    """FIFO queue of `size` unit vectors of dimension `channels`; queue and ptr are buffers."""

    def __init__(self, size, channels, seed=0):
        super().__init__()
        if size < 1 or channels < 1:
            raise ValueError(f"PixelMemory needs size >= 1 and channels >= 1, got {size}, {channels}")
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("queue", F.normalize(torch.randn(size, channels, generator=generator), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @property
    def size(self):
        """Number of slots M."""
        return self.queue.shape[0]

    @torch.no_grad()
    def enqueue(self, vectors):
        """Write [n, C] vectors (expected unit norm) at ptr, wrapping past the end; n <= size."""
        count = vectors.shape[0]
        if vectors.ndim != 2 or vectors.shape[1] != self.queue.shape[1]:
            raise ValueError(
                f"enqueue expects [n, {self.queue.shape[1]}] vectors, got {tuple(vectors.shape)}"
            )
        if count > self.size:
            raise ValueError(f"cannot enqueue {count} vectors into a memory of {self.size} slots")
        slots = (self.ptr + torch.arange(count, device=self.queue.device)) % self.size
        self.queue[slots] = vectors.detach().to(self.queue.dtype)
        self.ptr.add_(count).remainder_(self.size)

    def anchors(self, num_anchors):
        """Copy of the vectors in the fixed, evenly spaced slots (arange(K) * size) // K."""
        if not 1 <= num_anchors <= self.size:
            raise ValueError(f"num_anchors must be in 1..{self.size} (memory size), got {num_anchors}")
        slots = torch.arange(num_anchors, device=self.queue.device) * self.size // num_anchors
        return self.queue[slots]


class MP2PLoss(nn.Module):
    """Memory-based pixel-to-pixel relation loss (M-P2P); memory grows as B (HW) K.

    `.head` is the trainable student projection head; the training loop optimises
    `head_parameters()` with its own optimiser. `gather` maps the chosen teacher
    pixels [n, C] to the vectors to enqueue (an all_gather under multi-GPU).
    """

    def __init__(self, channels, memory_size=20000, num_anchors=4096, enqueue_per_step=128,
                 contrast_temperature=0.1, kd_temperature=1.0, gather=None, memory_seed=0):
        super().__init__()
        if not 1 <= num_anchors <= memory_size:
            raise ValueError(f"num_anchors must be in 1..{memory_size} (memory_size), got {num_anchors}")
        if not 1 <= enqueue_per_step <= memory_size:
            raise ValueError(
                f"enqueue_per_step must be in 1..{memory_size} (memory_size), got {enqueue_per_step}"
            )
        if contrast_temperature <= 0 or kd_temperature <= 0:
            raise ValueError("contrast_temperature and kd_temperature must be positive")
        self.channels = channels
        self.num_anchors = num_anchors
        self.enqueue_per_step = enqueue_per_step
        self.contrast_temperature = contrast_temperature
        self.kd_temperature = kd_temperature
        self.gather = gather if gather is not None else (lambda pixels: pixels)
        self.memory = PixelMemory(memory_size, channels, seed=memory_seed)
        self.head = nn.Sequential(
            nn.Conv2d(channels, channels, 1),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 1),
        )

    def head_parameters(self):
        """Parameters of the student projection head."""
        return self.head.parameters()

    def forward(self, F_student, F_teacher, generator=None):
        """Enqueue random teacher pixels, then KL(p_T || p_S) over the memory anchors."""
        _check_maps(F_student, F_teacher, "MP2PLoss")
        if F_student.shape[1] != self.channels:
            raise ValueError(f"MP2PLoss built for {self.channels} channels, got {F_student.shape[1]}")
        with torch.no_grad():
            teacher = _unit_pixels(F_teacher)
            # A batch with fewer pixels than enqueue_per_step enqueues all of them.
            count = min(self.enqueue_per_step, teacher.shape[0])
            perm_device = generator.device if generator is not None else "cpu"
            chosen = torch.randperm(teacher.shape[0], generator=generator, device=perm_device)[:count]
            self.memory.enqueue(self.gather(teacher[chosen.to(teacher.device)]))
            anchors = self.memory.anchors(self.num_anchors).to(teacher.dtype)
            logits_teacher = teacher @ anchors.T / self.contrast_temperature
        student = _unit_pixels(self.head(F_student))
        logits_student = student @ anchors.to(student.dtype).T / self.contrast_temperature
        # METHOD.md's "batch-mean, divided by H*W" = sum / B / (H*W) = mean over the B*H*W pixel rows.
        return _row_kl(logits_student, logits_teacher, self.kd_temperature)
