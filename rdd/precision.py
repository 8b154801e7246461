"""How float32 matmuls and convolutions run: exact fp32, or TF32 where the device has it (CUDA).

One place for the backend flags, so that training (process-wide), sampling and Inception (each for
the duration of its work) set them alike. PyTorch's own default is a mix: TF32 in cuDNN
convolutions, exact fp32 in matmuls; every path here sets both.
"""

import contextlib

import torch

from rdd.settings import PRECISIONS, check_choice


def effective(precision, device):
    """What `precision` runs as on `device`: TF32 on CUDA only (the CPU computes fp32 exactly)."""
    check_choice("precision", precision, PRECISIONS)
    return "tf32" if precision == "tf32" and torch.device(device).type == "cuda" else "fp32"


def set_float32(precision):
    """Set the process-wide flags for an effective `precision` ("fp32" or "tf32")."""
    tf32 = precision == "tf32"
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    torch.backends.cudnn.allow_tf32 = tf32


@contextlib.contextmanager
def float32(precision):
    """The flags of an effective `precision` for the duration; the previous ones restored after."""
    saved = (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32)
    set_float32(precision)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(saved[0])
        torch.backends.cudnn.allow_tf32 = saved[1]
