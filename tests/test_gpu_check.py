"""benchmarks/gpu_check.py: its cost arithmetic on the paper plans, and the whole check at toy sizes on the CPU."""

import json
import subprocess
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO))
from benchmarks import gpu_check, plan_iterations  # noqa: E402


def test_cost_of_the_paper_studies_from_given_rates():
    """With 1 s per iteration everywhere, a training stage costs iters x GPUs seconds; sampling and
    metrics cost num_samples over the images/s at their steps (linear in the steps between 1 and T_base),
    plus the seconds of their intervals."""
    plans = plan_iterations.load_plans(["cifar10", "imagenet64"], tiny=False)
    for name, plan in plans.items():
        timed = plan_iterations.timed_stages(plan)
        assert set(timed) == {"teacher", "pd_chain", "pd", "rcfd", "rdd"}
        rates = {kind: {"gpus": plan.resources(stage.rule)["gpu"],
                        "fp32": {"verdict": gpu_check.RAN, "seconds_per_iteration": 1.0}}
                 for kind, stage in timed.items()}
        T_base, n = plan.config["T_base"], plan.config["evaluate"]["num_samples"]
        cost = gpu_check.cost_table(plan, rates, {1: 100.0, T_base: 1.0}, 1000.0, {"fid": 2.0, "kid": 1.0, "is": 0.5})
        expected = {}
        for stage in plan.stages.values():
            if stage.rule == "train_classifier":
                continue
            group = ("teacher" if stage.rule == "train_teacher" else "ablations" if stage.labels.get("ablation")
                     else "chain" if stage.labels["stage"] == "pd_chain" else "rounds")
            gpus = max(1, plan.resources(stage.rule)["gpu"])
            expected[group] = expected.get(group, 0.0) + stage.settings["train"]["iters"] * gpus / 3600
        seconds_per_image = lambda steps: 1 / 100 + (1 - 1 / 100) * (steps - 1) / (T_base - 1)  # noqa: E731
        expected["sampling"] = sum(n * seconds_per_image(e.steps) for e in plan.evaluations.values() if e.model) / 3600
        expected["metrics"] = len(plan.evaluations) * (n / 1000 + 3.5) / 3600
        assert {g: row["gpu_hours"] for g, row in cost.items() if g != "classifier"} == pytest.approx(expected), name
        assert cost["rounds"]["jobs"] == 9 and cost["chain"]["jobs"] == 7
        assert cost["classifier"]["note"] == "the classifier's training is not timed by this check"


def test_many_step_sampling_is_timed_on_fewer_steps_and_extrapolated():
    (plan,) = plan_iterations.load_plans(["tiny"], tiny=True).values()
    rates, timed = gpu_check.sampling_rates(plan, "cpu", 1, log=lambda line: None, precision="fp32", max_steps=4)
    assert timed == {8: 4} and set(rates) == {1, 8}
    assert 0 < rates[8] < rates[1]


@pytest.mark.slow
def test_the_whole_check_runs_at_toy_sizes_on_the_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--tiny", "--device", "cpu",
                          "--skip", "tests", "--repeats", "1", "--inception-images", "8", "--out", str(out),
                          # torch.compile takes minutes on the CPU (tests/test_speed_settings.py runs it)
                          "--speed-settings", "channels_last", "fused_optimizer"],
                         cwd=REPO, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(out.read_text())
    verdicts = {item["item"]: item["verdict"] for item in result["items"]}
    assert verdicts == {"tests": "skipped", "torchrun": "ran", "timings tiny": "ran", "speed settings": "ran"}
    speed = next(item for item in result["items"] if item["item"] == "speed settings")["figures"]
    for kind in ("teacher", "rdd"):
        assert set(speed[kind]) == {"study", "channels_last", "fused_optimizer"}
        assert speed[kind]["study"]["ratio_to_study"] == 1
        assert speed[kind]["channels_last"]["first_loss_relative_difference"] < 1e-3
    assert all(rate > 0 for rate in speed["loader"].values())
    tiny = result["studies"]["tiny"]
    for kind in ("teacher", "pd_chain", "pd", "rcfd", "rdd"):
        assert tiny["training"][kind]["fp32"]["seconds_per_iteration"] > 0
        assert tiny["training"][kind]["bf16"] == {"item": f"{kind} bf16", "verdict": "skipped",
                                                  "why": "bf16 autocast runs on CUDA only"}
    assert set(tiny["sampling_images_per_second"]) == {"1", "8"} and tiny["inception_images_per_second"] > 0
    # Off CUDA only the study's sampling precision is timed (TF32 would be exact fp32 there).
    assert tiny["sampling_precision"] == "fp32" and set(tiny["sampling_images_per_second_by_precision"]) == {"fp32"}
    assert set(tiny["interval_seconds"]) == {"fid", "kid", "is"}
    assert all(seconds > 0 for seconds in tiny["interval_seconds"].values())
    assert tiny["sampling_steps_timed"] == {}  # T_base = 8: timed, not extrapolated
    cost = tiny["cost_gpu_hours"]
    assert set(cost) == {"teacher", "classifier", "chain", "rounds", "ablations", "sampling", "metrics"}
    assert cost["rounds"]["jobs"] == 12 and all(row["gpu_hours"] >= 0 for row in cost.values())
    assert "verdicts:" in run.stdout and "torchrun: ran" in run.stdout
