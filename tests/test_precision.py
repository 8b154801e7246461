"""The float32 precision flags: what each precision sets, and that sampling runs in the one asked for
whatever the process had set, leaving the process's flags as they were."""

import pytest
import torch

from conftest import float32_flags as _flags
from rdd.diffusion import TimeGrid
from rdd.generate import sample_batch
from rdd.precision import effective, float32, set_float32


def test_tf32_takes_effect_on_cuda_only():
    assert effective("tf32", "cuda") == effective("tf32", torch.device("cuda", 0)) == "tf32"
    assert effective("tf32", "cpu") == effective("fp32", "cuda") == effective("fp32", torch.device("cpu")) == "fp32"
    with pytest.raises(ValueError, match="precision must be one of fp32, tf32, got 'bf16'"):
        effective("bf16", "cpu")


@pytest.mark.parametrize("precision, flags", [("fp32", ("highest", False)), ("tf32", ("high", True))])
def test_each_precision_sets_matmuls_and_convolutions_and_the_context_restores_them(process_flags, precision, flags):
    # Start from the other precision's flags, so that each flag must be set to pass.
    other = ("high", True) if precision == "fp32" else ("highest", False)
    torch.set_float32_matmul_precision(other[0])
    torch.backends.cudnn.allow_tf32 = other[1]
    with float32(precision):
        assert _flags() == flags
    assert _flags() == other
    set_float32(precision)
    assert _flags() == flags


class _FlagProbe(torch.nn.Module):
    """A denoiser (x0 = 0) that records the flags it runs under."""

    def __init__(self):
        super().__init__()
        self.seen = set()

    def forward(self, z, t, y=None):
        self.seen.add(_flags())
        return torch.zeros_like(z)


@pytest.mark.parametrize("precision", ["fp32", "tf32"])
def test_sampling_runs_exact_fp32_on_the_cpu_whatever_the_process_set(process_flags, precision):
    torch.set_float32_matmul_precision("high")
    torch.backends.cudnn.allow_tf32 = True
    net = _FlagProbe()
    images, _ = sample_batch(net, TimeGrid(4, 4), [0, 1, 2], 2, (1, 8, 8), 0, torch.device("cpu"), net_batch=2,
                             precision=precision)
    # tf32 asked for on the CPU is fp32 (rdd.precision.effective): the network saw exact fp32 only.
    assert net.seen == {("highest", False)} and images.shape == (3, 8, 8, 1)
    assert _flags() == ("high", True)
