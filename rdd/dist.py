"""Devices and `torchrun` data parallelism (NCCL on GPUs, gloo on the CPU)."""

import os

import torch
import torch.distributed as dist


class DeviceError(ValueError):
    """A device asked for that this machine does not have."""


def resolve_device(name="auto"):
    """'auto' -> CUDA when present, else CPU; a CUDA device the machine lacks is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"device '{name}' was asked for, but torch sees no CUDA GPU")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise DeviceError(f"device '{name}' was asked for, but torch sees {torch.cuda.device_count()} CUDA GPU(s)")
    if name.startswith("cuda") and is_distributed():
        name = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return torch.device(name)


def data_parallel(module):
    """`module` wrapped in DistributedDataParallel when several processes train it, else `module`."""
    return torch.nn.parallel.DistributedDataParallel(module) if world_size() > 1 else module


def is_distributed():
    """Launched by torchrun with several processes (read before `init`; after it, `world_size()`)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device):
    """Join the process group started by torchrun (no-op for a single process)."""
    if is_distributed() and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend)


def rank():
    return dist.get_rank() if dist.is_initialized() else 0


def world_size():
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main():
    return rank() == 0


def barrier():
    if dist.is_initialized():
        dist.barrier()


def all_gather_cat(x):
    """Concatenate `x` from every rank along dim 0 (identity for one process)."""
    if not dist.is_initialized():
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def _reduce_device():
    """Where a collective's tensor lives: this process's GPU under NCCL, the CPU under gloo."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def mean_over_ranks(values):
    """{name: float} averaged over every rank (identity for one process)."""
    if not dist.is_initialized():
        return values
    totals = torch.tensor(list(values.values()), dtype=torch.float64, device=_reduce_device())
    dist.all_reduce(totals)
    return dict(zip(values, (totals / world_size()).tolist()))


def max_over_ranks(value):
    """The largest of every rank's small integer `value` (itself for one process): one tiny all-reduce."""
    if not dist.is_initialized():
        return int(value)
    total = torch.tensor([float(value)], device=_reduce_device())
    dist.all_reduce(total, op=dist.ReduceOp.MAX)
    return int(total.item())


def from_main(value):
    """Rank 0's `value` (a small picklable object) on every rank (itself for one process)."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0, device=_reduce_device())
    return box[0]


def average_gradients(parameters):
    """All-reduce-average the gradients of modules that DDP does not wrap."""
    if not dist.is_initialized():
        return
    for p in parameters:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world_size()


def shutdown():
    if dist.is_initialized():
        dist.destroy_process_group()
