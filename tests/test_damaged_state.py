"""Damaged resume state or sample shards are set aside with a message, never loaded, never fatal."""

import numpy as np

from conftest import run_rdd
from rdd import checkpoints


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
    assert "shard-00000.npz cannot be read" in capsys.readouterr().out
    assert np.array_equal(np.load(straight)["images"], np.load(damaged)["images"])
