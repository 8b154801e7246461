"""The speed settings (rdd.train.speed_settings) train what the plain run trains, up to rounding.

Part of the device subset (`pytest -m gpu`): on conftest.DEVICE, the CPU here and the GPU under
benchmarks/gpu_check.py. On CUDA every run is in exact fp32 (speed.tf32 false), so that two runs
differ by the flipped setting's rounding alone.
"""

import os

import pytest
import torch

from conftest import DEVICE, float32_flags, kernel_flags, run_rdd
from rdd import checkpoints, settings as settings_mod
from rdd.cli import main as rdd_main
from rdd.train import speed_settings

pytestmark = pytest.mark.gpu
PLAIN = settings_mod.defaults("teacher")["speed"]
COMMANDS = ("teacher", "classifier", "distill")
ON_CUDA = DEVICE.startswith("cuda")
BASE = {"tf32": False} if ON_CUDA else {}
# Pinned memory, PyTorch's default kernels and cuDNN's autotuner only act on CUDA.
FLIPPED = [{"channels_last": True}, {"fused_optimizer": True}, {"num_workers": 2},
           *([{"pin_memory": False}, {"deterministic": False}, {"cudnn_benchmark": True}] if ON_CUDA else [])]


def _outputs(command, path):
    """The exported network's outputs on a fixed batch of 16x16 images (x0 predictions or logits):
    what it computes, not its raw weights (Adam turns rounding in the near-zero gradients of biases
    that feed a GroupNorm into weight changes of order lr that change no output)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(8, 1, 16, 16, generator=generator) * 2 - 1
    with torch.no_grad():
        if command == "classifier":
            return checkpoints.load_classifier(path)[0](x)
        net = checkpoints.load_denoiser(path)[0].eval()
        return net(x, torch.rand(8, generator=generator) * 1000)


def _train(command, tiny, out, extra, teacher=None, classifier=None):
    # The classifier's first 3 of its 36 steps: at SGD lr 0.1 from random weights, its batch norms
    # amplify rounding (7e-6 of the logits' scale after one forward pass in channels-last) to the
    # third digit of the loss by step 10.
    args = {"teacher": ["train-teacher"], "classifier": ["train-classifier", "--set", "train.iters=3"],
            "distill": ["distill", "--set", "method=rdd", "--teacher", teacher, "--classifier", classifier]}[command]
    sets = [item for key, value in {**BASE, **extra}.items() for item in ("--set", f"speed.{key}={str(value).lower()}")]
    run_rdd(*args, "--settings", tiny[command], "--set", f"device.device={DEVICE}", *sets, "--out", out,
            "--resume-dir", out.parent / "resume")
    return out


@pytest.fixture(scope="module")
def plain_runs(tiny, teacher, classifier, tmp_path_factory):
    return {command: _train(command, tiny, tmp_path_factory.mktemp(f"plain_{command}") / "model.pt", {},
                            teacher, classifier) for command in COMMANDS}


def test_the_defaults_are_the_plain_run():
    """The defaults change nothing on the CPU, where they were measured (README, "Speed settings")."""
    assert PLAIN == {"tf32": True, "deterministic": True, "cudnn_benchmark": False, "channels_last": False,
                     "fused_optimizer": False, "compile": False, "num_workers": 0, "pin_memory": True}
    for command in COMMANDS:
        assert settings_mod.defaults(command)["speed"] == PLAIN


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("setting", FLIPPED)
def test_a_speed_setting_trains_the_same_weights(command, setting, plain_runs, tiny, teacher, classifier, tmp_path):
    fast = _train(command, tiny, tmp_path / "model.pt", setting, teacher, classifier)
    plain, outputs = _outputs(command, plain_runs[command]), _outputs(command, fast)
    if setting == {"num_workers": 2}:
        # Workers change who loads a batch, not what it holds: the same weights bit for bit.
        _assert_same_weights(plain_runs[command], fast)
    # The classifier's logits to 1e-3 of their scale (see _train), the denoisers' x0 to 1e-4.
    atol = 1e-3 * float(plain.abs().max()) if command == "classifier" else 1e-4
    torch.testing.assert_close(outputs, plain, rtol=1e-4, atol=atol)
    assert checkpoints.load_torch(fast)["settings"]["speed"] == {**PLAIN, **BASE, **setting}


def _assert_same_weights(a, b):
    a, b = (checkpoints.load_torch(path)["state_dict"] for path in (a, b))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("command", COMMANDS)
def test_the_same_seeds_train_the_same_weights_bit_for_bit(command, plain_runs, tiny, teacher, classifier, tmp_path):
    """Deterministic kernels (speed.deterministic, the default; the CPU's are): a second run of the
    same settings trains exactly the first run's weights (on CUDA, what shows that no operation of
    the stage fell back to a kernel that sums in a varying order)."""
    _assert_same_weights(plain_runs[command], _train(command, tiny, tmp_path / "model.pt", {}, teacher, classifier))


def test_a_compiled_round_trains_the_same_weights(plain_runs, tiny, teacher, classifier, tmp_path):
    """torch.compile of the student (inductor's generated kernels): the round's student computes
    what the eager run's does, to rounding."""
    fast = _train("distill", tiny, tmp_path / "model.pt", {"compile": True}, teacher, classifier)
    torch.testing.assert_close(_outputs("distill", fast), _outputs("distill", plain_runs["distill"]),
                               rtol=1e-4, atol=1e-4)


def test_a_run_resumes_across_a_change_of_speed_settings(tiny, teacher, tmp_path, capsys):
    args = ["distill", "--settings", tiny["distill"], "--set", "method=pd", "--set", f"device.device={DEVICE}",
            "--teacher", teacher, "--resume-dir", tmp_path / "resume"]
    run_rdd(*args, "--out", tmp_path / "a.pt")
    capsys.readouterr()
    run_rdd(*args, "--set", "speed.channels_last=true", "--set", "speed.num_workers=1", "--out", tmp_path / "b.pt")
    assert "resume state is already at step 4 of 4" in capsys.readouterr().out
    assert not list((tmp_path / "resume").glob("resume.pt.stale-*"))
    record = settings_mod.defaults("distill")
    assert settings_mod.digest(record) == settings_mod.digest({**record, "speed": {**PLAIN, "compile": True}})
    assert settings_mod.digest(record) != settings_mod.digest({**record, "seed": 1})


def test_tf32_is_set_both_ways_on_cuda_only(process_flags):
    speed_settings.configure({**PLAIN, "tf32": True}, torch.device("cuda"))
    assert float32_flags() == ("high", True)
    speed_settings.configure({**PLAIN, "tf32": False}, torch.device("cuda"))
    assert float32_flags() == ("highest", False)
    speed_settings.configure({**PLAIN, "tf32": True}, torch.device("cpu"))
    assert float32_flags() == ("highest", False)


def test_deterministic_kernels_and_the_autotuner_are_set_both_ways_on_cuda_only(process_flags):
    """Only flags are set, so this runs without a GPU too."""
    speed_settings.configure({**PLAIN, "deterministic": True, "cudnn_benchmark": True}, torch.device("cuda"))
    assert kernel_flags() == (True, True, True)
    # cuBLAS's fixed-order workspace, unless the user chose one.
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    speed_settings.configure({**PLAIN, "deterministic": False, "cudnn_benchmark": False}, torch.device("cuda"))
    assert kernel_flags()[::2] == (False, False)
    speed_settings.configure({**PLAIN, "deterministic": True, "cudnn_benchmark": True}, torch.device("cpu"))
    assert kernel_flags()[::2] == (False, False)


def test_a_cublas_workspace_the_user_chose_is_kept(process_flags, monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    speed_settings.configure(PLAIN, torch.device("cuda"))
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_pinned_memory_only_on_cuda():
    assert speed_settings.loader_options(PLAIN, torch.device("cpu")) == {"num_workers": 0, "pin_memory": False}
    assert speed_settings.loader_options({**PLAIN, "num_workers": 3}, torch.device("cuda")) == {
        "num_workers": 3, "pin_memory": True}


def test_settings_files_are_merged_in_order(tiny, tmp_path):
    """The workflow passes a stage's settings file, then the study's speed settings file."""
    speed = tmp_path / "speed.yaml"
    speed.write_text("speed: {fused_optimizer: true}\ntrain: {iters: 3}\n")
    code = rdd_main(["train-teacher", "--settings", str(tiny["teacher"]), "--settings", str(speed),
                     "--out", str(tmp_path / "t.pt"), "--resume-dir", str(tmp_path / "resume")])
    assert code == 0
    settings = checkpoints.load_torch(tmp_path / "t.pt")["settings"]
    assert settings["speed"]["fused_optimizer"] is True and settings["train"]["iters"] == 3
    assert settings["train"]["batch_size"] == 16  # from the first file

