"""Damaged resume state or sample shards are set aside with a message, never loaded, never fatal."""

import json
import zipfile

import numpy as np
import torch

from conftest import run_rdd
from rdd import checkpoints
from rdd.generate import shard_key


def test_corrupt_resume_state_is_set_aside_and_the_run_completes(teacher, tiny, tmp_path, capsys):
    resume = tmp_path / "resume"
    resume.mkdir()
    (resume / "resume.pt").write_bytes(b"PK\x03\x04 a zip cut short")
    out = tmp_path / "s.pt"
    run_rdd("distill", "--settings", tiny["distill"], "--set", "method=pd", "--set", "train.iters=2",
            "--teacher", teacher, "--out", out, "--resume-dir", resume)
    log = capsys.readouterr().out
    assert f"resume state {resume / 'resume.pt'} cannot be read" in log and "starting afresh" in log
    [kept] = resume.glob("resume.pt.corrupt-*")
    assert kept.read_bytes() == b"PK\x03\x04 a zip cut short"
    assert checkpoints.load_torch(resume / "resume.pt")["step"] == 2 and out.is_file()


def test_unreadable_shard_is_sampled_again(teacher, tmp_path, capsys):
    straight, damaged = tmp_path / "straight.npz", tmp_path / "damaged.npz"
    args = ["--steps", "2", "--seeds", "0-5", "--shard-size", "3", "--batch-size", "3"]
    run_rdd("sample", "--model", teacher, *args, "--out", straight)
    parts = tmp_path / "damaged.npz.parts"
    parts.mkdir()
    (parts / "shard-00000.npz").write_bytes(b"not an npz")
    run_rdd("sample", "--model", teacher, *args, "--out", damaged)
    assert "shard-00000.npz is not an .npz archive" in capsys.readouterr().out
    assert np.array_equal(np.load(straight)["images"], np.load(damaged)["images"])


def test_shard_with_a_damaged_member_is_sampled_again(teacher, tmp_path, capsys):
    # A shard of the run's own key and seeds whose images fail their CRC: every member is read
    # before a shard is reused, so it is sampled again rather than failing the final assembly.
    args = ["--steps", "2", "--seeds", "0-5", "--shard-size", "3", "--batch-size", "3"]
    straight, rerun = tmp_path / "straight.npz", tmp_path / "rerun.npz"
    run_rdd("sample", "--model", teacher, *args, "--out", straight)
    first = {k: np.load(straight)[k][:3] for k in ("images", "labels", "seeds")}
    parts = tmp_path / "rerun.npz.parts"
    parts.mkdir()
    shard = parts / "shard-00000.npz"
    np.savez(shard, **first, key=np.asarray(shard_key(teacher, 2, 16, "fp32", None, "cpu")))
    with zipfile.ZipFile(shard) as archive:
        member = archive.getinfo("images.npy")
    data = bytearray(shard.read_bytes())
    # Past the member's local header (30 bytes, its name, its extra field) and the .npy header.
    start = member.header_offset + 30 + len(member.filename.encode()) + len(member.extra)
    data[start + 200] ^= 0xFF
    shard.write_bytes(bytes(data))
    run_rdd("sample", "--model", teacher, *args, "--out", rerun)
    assert "shard-00000.npz cannot be read (BadZipFile: Bad CRC-32 for file 'images.npy')" in capsys.readouterr().out
    assert np.array_equal(np.load(straight)["images"], np.load(rerun)["images"])


def test_shard_of_another_sampling_is_sampled_again_one_of_the_same_reused(teacher, tmp_path, capsys):
    common = ["--seeds", "0-5", "--shard-size", "3", "--batch-size", "3"]
    one_step, two_steps = tmp_path / "one.npz", tmp_path / "two.npz"
    run_rdd("sample", "--model", teacher, "--steps", "1", *common, "--out", one_step)
    run_rdd("sample", "--model", teacher, "--steps", "2", *common, "--out", two_steps)
    first = {k: np.load(one_step)[k][:3] for k in ("images", "labels", "seeds")}

    def rerun_over(shard_images, key_steps, kernels=None):
        """A 2-step run over the first shard a killed run left: `shard_images` made at `key_steps` (on a
        machine of other `kernels`, when given)."""
        key = json.loads(shard_key(teacher, key_steps, 16, "fp32", None, "cpu"))
        key["kernels"] = kernels or key["kernels"]
        out = tmp_path / f"rerun{key_steps}{'-elsewhere' if kernels else ''}.npz"
        parts = tmp_path / f"{out.name}.parts"
        parts.mkdir()
        np.savez(parts / "shard-00000.npz", **{**first, "images": shard_images},
                 key=np.asarray(json.dumps(key, sort_keys=True)))
        run_rdd("sample", "--model", teacher, "--steps", "2", *common, "--out", out)
        return np.load(out)["images"]

    # The 1-step shard is not the 2-step run's: sampled again, the result is the straight 2-step one.
    assert np.array_equal(rerun_over(first["images"], key_steps=1), np.load(two_steps)["images"])
    message = "shard-00000.npz was sampled from another model file, with other settings or on another kind of device"
    assert message in capsys.readouterr().out
    marked = 255 - np.load(two_steps)["images"][:3]
    # Nor is the 2-step shard of another machine (a GPU, say): a resumed run's images are its machine's alone.
    elsewhere = rerun_over(marked, key_steps=2, kernels={"torch": torch.__version__, "gpu": "NVIDIA H100"})
    assert np.array_equal(elsewhere, np.load(two_steps)["images"]) and message in capsys.readouterr().out
    # A shard under the run's own key is reused as it is (here marked by inverted images).
    reused = rerun_over(marked, key_steps=2)
    assert np.array_equal(reused[:3], marked) and np.array_equal(reused[3:], np.load(two_steps)["images"][3:])
