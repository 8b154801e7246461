"""Peak memory of a block of code, for benchmarks that run each case in a fresh process.

CPU: the VmHWM high-water mark (reset through /proc/self/clear_refs, Linux)
minus VmRSS just before. CUDA: torch.cuda.max_memory_allocated minus the
memory allocated just before.
"""

import json
import os
import subprocess
import sys


def _proc_status_bytes(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not found in /proc/self/status")


def reset(device):
    """Start a measurement; returns the baseline."""
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    baseline = _proc_status_bytes("VmRSS")
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset VmHWM to the current RSS
    return baseline


def peak_since(device, baseline):
    """Bytes above `baseline` at the high-water mark since `reset`."""
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - baseline
    return _proc_status_bytes("VmHWM") - baseline


def run_child(script, args, timeout=600):
    """Run `script ARGS` in a fresh interpreter; return the JSON its last line prints.

    glibc's malloc is pinned to mmap every block above 128 KiB and to unmap it when freed: by default
    it raises that threshold after the first frees and then reuses freed heap memory, which the
    high-water mark never sees again (a case after its warm-up measured 0 MiB)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p or os.getcwd() for p in sys.path),
               MALLOC_MMAP_THRESHOLD_="131072")
    out = subprocess.run([sys.executable, os.path.abspath(script), *map(str, args)],
                         capture_output=True, text=True, env=env, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark case {args} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])
