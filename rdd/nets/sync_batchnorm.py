"""BatchNorm whose training statistics are those of the batch of every process, on any device.

torch's SyncBatchNorm refuses CPU tensors; this one reduces its statistics with differentiable
all-reduces, so a gloo run on the CPU and an NCCL run on GPUs normalise alike: as one process
would, over the concatenated batch. The released RDD synchronised its M-P2P head's BatchNorm.
"""

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import nn

from rdd.dist import world_size


class SyncBatchNorm2d(nn.BatchNorm2d):
    """`nn.BatchNorm2d` (same parameters, buffers and state dict), synchronised in training mode.

    Local batches may differ in size. Gradients reach every process's input through the shared
    statistics: the backward of each all-reduce sums the gradients of every process's loss, as
    torch's SyncBatchNorm does; the parameters' gradients stay per process (the caller averages
    them, as DDP would).
    """

    def forward(self, x):
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        if x.ndim != 4:
            raise ValueError(f"SyncBatchNorm2d expects a [B, C, H, W] input, got {tuple(x.shape)}")
        # Statistics in fp32 (at least) whatever the autocast dtype, as torch's batch norm keeps them.
        x32 = x.to(torch.promote_types(x.dtype, torch.float32))
        dims = (0, 2, 3)
        local_count = x32.new_tensor([x32.numel() / x32.shape[1]])
        totals = dist_fn.all_reduce(torch.cat([x32.sum(dims), local_count]))
        count = totals[-1].detach()
        if count < 2:  # every process sees the same count, so all of them stop here
            raise ValueError("SyncBatchNorm2d needs more than one value per channel over all processes")
        mean = totals[:-1] / count
        centred = x32 - mean.view(1, -1, 1, 1)
        var = dist_fn.all_reduce(centred.square().sum(dims)) / count  # biased, to normalise
        self._update_running_stats(mean.detach(), var.detach() * count / (count - 1))
        y = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return y.to(x.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean, unbiased_var):
        if not self.track_running_stats:
            return
        self.num_batches_tracked.add_(1)
        # momentum None: the cumulative average, as nn.BatchNorm2d.
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
        self.running_var.lerp_(unbiased_var.to(self.running_var.dtype), factor)


def convert_sync_batchnorm(module):
    """`module` with every `nn.BatchNorm2d` replaced by a `SyncBatchNorm2d` that holds the very same
    parameter and buffer tensors (an optimiser built before still trains them)."""
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, SyncBatchNorm2d):
        synced = SyncBatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                                 module.track_running_stats)
        for name, tensor in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
            setattr(synced, name, tensor)
        return synced.train(module.training)
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child))
    return module


def synchronised(module, enabled, setting):
    """`module` with its BatchNorm synchronised across processes under data parallelism when `enabled`,
    and what ran, in words (None for one process); `setting` names the key that turned it off."""
    if world_size() == 1:
        return module, None
    if not enabled:
        return module, f"BatchNorm per process ({setting}: false)"
    return convert_sync_batchnorm(module), "SyncBatchNorm across processes"
