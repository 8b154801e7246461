"""Where a result came from: code version, packages, machine, device."""

import importlib.metadata
import platform
import subprocess
from pathlib import Path

import torch

_PACKAGES = ("torch", "torchvision", "torch-fidelity", "numpy", "snakemake", "pandas")


def _git(*args):
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def code_version():
    """The git commit of this checkout and whether its tree differs from it."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": bool(status) if status is not None else None}


def package_versions():
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_model(cpuinfo="/proc/cpuinfo"):
    """The processor's model name as Linux reports it ('AMD EPYC', 'Intel(R) Xeon(R) ...'), or None where
    it is not there to read (another system; ARM's cpuinfo names no model)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return None


def machine(device=None):
    # The kernels PyTorch picked for this CPU (AVX2, AVX512, ...) and the processor: their float rounding
    # differs (oneDNN's code paths depend on the processor too), so the same seeds can train to other
    # numbers on another CPU.
    info = {"host": platform.node(), "platform": platform.platform(), "processor": platform.machine(),
            "cpu_model": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu_threads": torch.get_num_threads()}
    if device is not None and torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    info["device"] = str(device) if device is not None else None
    return info


def kernels(device):
    """What sets the float rounding of a computation on `device` besides its inputs: the torch version
    and the GPU model, or the CPU kernels PyTorch picked (AVX2, AVX512, ...)."""
    device = torch.device(device)
    if device.type == "cuda":
        return {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(device)}
    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def environment_record(device=None):
    """Everything about the run's environment a result record should carry."""
    return {"code": code_version(), "packages": package_versions(), "machine": machine(device)}
