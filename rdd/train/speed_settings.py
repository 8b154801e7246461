"""The `speed` settings of every training command: how the hardware runs the same training.

TF32 matmuls and convolutions, deterministic kernels and cuDNN's autotuner (CUDA), channels-last
tensors, fused optimiser kernels, torch.compile of the trained network, and the data loader's
workers and page-locked buffers. None changes what is trained: results differ from the plain run
by floating-point rounding only (tests/test_speed_settings.py bounds it), so a run resumes across a
change of them (rdd.settings.digest leaves them out). benchmarks/bench_speed_settings.py measures
what each one buys.
"""

import os

import torch

from rdd import precision

# cuBLAS sums in a fixed order only with one of its fixed workspace configurations; it reads the
# variable when the process makes its first cuBLAS call, which comes after configure().
CUBLAS_WORKSPACE = ("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def configure(speed, device):
    """Set the process-wide backend flags for training on `device`: TF32 or exact fp32, and on CUDA
    deterministic kernels and cuDNN's autotuner as the settings say (both off on the CPU)."""
    precision.set_float32(precision.effective("tf32" if speed["tf32"] else "fp32", device))
    cuda = device.type == "cuda"
    deterministic = bool(speed["deterministic"]) and cuda
    if deterministic:
        os.environ.setdefault(*CUBLAS_WORKSPACE)
    # warn_only: an operation with no deterministic CUDA kernel warns (PyTorch names it) instead of
    # stopping a long run; the device tests check that every stage trains bit for bit alike.
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = bool(speed["cudnn_benchmark"]) and cuda


def memory_format(speed):
    return torch.channels_last if speed["channels_last"] else torch.contiguous_format


def prepare(module, speed):
    """`module` (changed in place) in the settings' memory format."""
    return module.to(memory_format=memory_format(speed))


def to_device(batch, device, speed):
    """The loader's tensors on `device`; images in the settings' memory format."""
    non_blocking = pinned(speed, device)
    return tuple(v.to(device, non_blocking=non_blocking, memory_format=memory_format(speed)) if v.dim() == 4
                 else v.to(device, non_blocking=non_blocking) for v in batch)


def optimizer(kind, parameters, speed, **options):
    """torch.optim.Adam or SGD; with `fused_optimizer` its fused kernel, else PyTorch's default
    (the for-each kernel on CUDA, a loop over the parameters on the CPU)."""
    cls = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[kind]
    return cls(parameters, fused=True if speed["fused_optimizer"] else None, **options)


def compiled(model, speed):
    """`model` compiled when asked; its parameters stay those of `model` (the resume state keeps the
    plain module)."""
    if not speed["compile"]:
        return model
    import torch._inductor.config

    # Random ops (dropout) through torch's own generator, as in the eager run, not inductor's: the
    # same seeds then draw the same masks.
    torch._inductor.config.fallback_random = True
    return torch.compile(model)


def pinned(speed, device):
    return bool(speed["pin_memory"]) and device.type == "cuda"


def loader_options(speed, device):
    """DataLoader keywords: the workers and the page-locked buffers."""
    return {"num_workers": speed["num_workers"], "pin_memory": pinned(speed, device)}
