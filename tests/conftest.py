"""Shared fixtures: tiny settings on real Fashion-MNIST, and a tiny trained teacher and classifier."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rdd.cli import main as rdd_main
from rdd.launch import rdd_command
from rdd.settings import write_files

REPO = Path(__file__).resolve().parent.parent
# Where the device subset (`pytest -m gpu`) runs: RDD_TEST_DEVICE when set, else CUDA when present, else
# the CPU, so the CPU suite exercises the same code; benchmarks/gpu_check.py sets it to the GPU it checks.
DEVICE = os.environ.get("RDD_TEST_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
# Each torchrun (the two-process tests, gpu_check's tiny run) would leave a folder /tmp/torchelastic_* for
# log files it writes only when told to redirect the ranks' streams, which the tests never do; with its
# --log-dir (PET_LOG_DIR) at /dev/null it makes none.
os.environ.setdefault("PET_LOG_DIR", os.devnull)


def run_rdd(*args):
    """`python -m rdd ...` in this process; fails the test on a non-zero exit."""
    code = rdd_main([str(a) for a in args])
    assert code == 0, f"python -m rdd {' '.join(map(str, args))} exited {code}"


def subprocess_env(torch_threads=1):
    """The environment of a command that a test starts as a process of its own: this checkout importable,
    `torch_threads` threads (one by default, so that two processes, torchrun's ranks or a run beside its
    rerun, share CI's two cores)."""
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(torch_threads)}


_LOADED_PROBE = """
import json, sys
status = 0
{code}
print("loaded:", json.dumps(sorted({{name.split(".")[0] for name in sys.modules}})))
sys.exit(status)
"""


def packages_loaded(code, *args):
    """The top-level packages a fresh Python holds once it has run `code` (which may set `status`, its exit
    status) with `args` as sys.argv[1:]: what a job of that code pays to import."""
    result = subprocess.run([sys.executable, "-c", _LOADED_PROBE.format(code=code), *map(str, args)], cwd=REPO,
                            capture_output=True, text=True, env=subprocess_env())
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in reversed(result.stdout.splitlines()) if line.startswith("loaded: "))
    return set(json.loads(line.removeprefix("loaded: ")))


def start_together(procs):
    """Let processes that each print 'ready' and then wait for a line on stdin go at the same moment (to
    race for what they share); their (stdout, stderr) once they end."""
    assert [p.stdout.readline() for p in procs] == ["ready\n"] * len(procs)
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    return [p.communicate(timeout=300) for p in procs]


def rdd_argv(*args, processes=1):
    """The command line of `python -m rdd ARGS` as a process of its own, under torchrun when `processes` > 1."""
    return [*rdd_command(processes, sys.executable), *map(str, args)]


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def tiny(data_root, tmp_path_factory):
    """Settings files of a tiny study: 16x16 Fashion-MNIST, a 2-level UNet, T_base 16."""
    folder = tmp_path_factory.mktemp("settings")
    data = {"name": "fashion_mnist", "root": str(data_root), "image_size": 16, "resize": "resize"}
    records = {
        "teacher": {"data": data, "T_base": 16, "net": {"ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1},
                    "train": {"iters": 12, "batch_size": 16, "log_every": 4, "checkpoint_every": 4,
                              "warmup_iters": 2, "ema_decay": 0.5, "lr": 1e-3}},
        # The released recipe with its crop padding and Cutout hole scaled from 32x32 to 16x16.
        "classifier": {"data": data, "train": {"iters": 36, "batch_size": 32, "log_every": 12,
                                                "checkpoint_every": 12, "crop_padding": 2, "cutout_length": 8}},
        "distill": {"data": data, "memory_size": 300, "num_anchors": 32, "enqueue_per_step": 24,
                    "train": {"iters": 4, "batch_size": 8, "log_every": 2, "checkpoint_every": 2}},
    }
    return write_files(folder, records)


@pytest.fixture(scope="session")
def teacher(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    run_rdd("train-teacher", "--settings", tiny["teacher"], "--out", out, "--resume-dir", out.parent / "resume")
    return out


@pytest.fixture(scope="session")
def classifier(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("classifier") / "classifier.pt"
    run_rdd("train-classifier", "--settings", tiny["classifier"], "--out", out,
            "--resume-dir", out.parent / "resume")
    return out


def read_record(model_path):
    return json.loads(Path(str(model_path).removesuffix(".pt") + ".json").read_text())


def float32_flags():
    """The process's float32 precision flags: (matmul precision, cuDNN TF32)."""
    return torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32


def kernel_flags():
    """The process's kernel choice: (deterministic algorithms, warn only, cuDNN autotuner)."""
    return (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.benchmark)


@pytest.fixture
def process_flags(monkeypatch):
    """Restores the process's float32 precision and kernel flags (and the environment) after a test
    that changes them."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    saved, kernels = float32_flags(), kernel_flags()
    yield
    torch.set_float32_matmul_precision(saved[0])
    torch.backends.cudnn.allow_tf32 = saved[1]
    torch.use_deterministic_algorithms(kernels[0], warn_only=kernels[1])
    torch.backends.cudnn.benchmark = kernels[2]


def inception_weights_with_fc(weights_path, out):
    """`weights_path`'s network with a random, finite fc layer, written to `out`: a test stand-in for
    weights that carry logits (the offline copy has none, so no IS)."""
    from rdd.checkpoints import load_torch, save_torch

    state = load_torch(weights_path)
    generator = torch.Generator().manual_seed(0)
    state["fc.weight"] = torch.randn(state["fc.weight"].shape, generator=generator) * 0.05
    state["fc.bias"] = torch.randn(state["fc.bias"].shape, generator=generator)
    save_torch(state, out)
    return out


def join_two_ranks(rank, init_file, timeout_s=None):
    """Join this spawned process, as `rank`, to a gloo group of two rendezvousing at `init_file`;
    `timeout_s`: how long a collective that the other process never joins may wait (torch's default)."""
    import datetime

    import torch.distributed as torch_dist

    timeout = {} if timeout_s is None else {"timeout": datetime.timedelta(seconds=timeout_s)}
    torch_dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2, **timeout)


def leave_two_ranks():
    """End a process that `join_two_ranks` joined, once its results are written: destroy the group, then
    exit without interpreter finalization. There, threads torch leaves behind can still abort a process
    whose work is done (SIGABRT, "terminate called without an active exception"; seen in two of these
    tests' workers in one CI run), which `torch.multiprocessing.spawn` reports as a failed test."""
    import torch.distributed as torch_dist

    torch_dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
