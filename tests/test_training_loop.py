"""The training loop's loss curves: each row the mean of its steps' losses, and the same rows after a
crash and a resume in the middle of a row's window; Ctrl-C's save-and-stop; the save when a
loader worker is killed, and when one of two processes cannot load its batch."""

import os
import signal
import tempfile
import time

import pytest
import torch

from conftest import join_two_ranks, leave_two_ranks
from rdd import checkpoints
from rdd.train import loop


class _Values:
    """A dataset of scalars: item i is (float i, 0) in every epoch."""

    def __len__(self):
        return 10

    def item(self, index, epoch):
        return torch.tensor(float(index)), 0


class _Crash(Exception):
    pass


def _stage(seen, crash_at=None):
    """A real stage on one parameter; its loss (and a second term) is a known function of the batch,
    and each step's values go to `seen`."""
    weight = torch.nn.Parameter(torch.zeros(()))
    opt = torch.optim.SGD([weight], lr=0.1)

    def loss(batch, step):
        if step == crash_at:
            raise _Crash(step)
        x, _ = batch
        value = (x.mean() - weight) ** 2
        seen.append((step, float(value.detach()), float(x.max())))
        return value, {"x_max": float(x.max())}

    return loop.Stage("toy", {"weight": torch.nn.ParameterDict({"w": weight})}, {"opt": opt}, lambda step: 1.0,
                      loss, export=lambda: {"w": weight.detach().clone()})


def _run(stage, resume_dir):
    return loop.run(stage, _Values(), iters=9, batch_size=4, seed=3, resume_dir=resume_dir, digest="toy",
                    checkpoint_every=2, log_every=3, log=lambda message: None)[1]


def test_curve_rows_are_means_over_their_steps(tmp_path):
    seen = []
    rows = _run(_stage(seen), tmp_path)
    assert [s for s, _, _ in seen] == list(range(9))
    for row, window in zip(rows, (seen[0:3], seen[3:6], seen[6:9])):
        assert row["steps_averaged"] == 3 and row["step"] == window[-1][0] + 1
        assert row["loss"] == pytest.approx(sum(v for _, v, _ in window) / 3, rel=1e-12)
        assert row["x_max"] == pytest.approx(sum(m for _, _, m in window) / 3, rel=1e-12)
    # the steps' losses differ, so a row of the last step alone would not match
    assert len({v for _, v, _ in seen[6:9]}) > 1


def test_rows_after_a_resume_mid_window_are_those_of_an_uninterrupted_run(tmp_path):
    whole = _run(_stage([]), tmp_path / "whole")
    # Crash at step 5: the last resume state is at step 4, one step into the window of steps 3..5.
    with pytest.raises(_Crash):
        _run(_stage([], crash_at=5), tmp_path / "cut")
    assert loop.checkpoints.load_torch(tmp_path / "cut" / "resume.pt")["step"] == 4
    seen = []
    resumed = _run(_stage(seen), tmp_path / "cut")
    assert seen[0][0] == 4
    assert resumed == whole


def _signalled_stage(seen, at_step, count):
    """`_stage`, whose loss sends itself SIGINT `count` times at step `at_step` (as Ctrl-C pressed)."""
    stage = _stage(seen)
    inner = stage.loss

    def loss(batch, step):
        if step == at_step:
            for _ in range(count):
                os.kill(os.getpid(), signal.SIGINT)
        return inner(batch, step)

    stage.loss = loss
    return stage


def test_ctrl_c_saves_the_step_then_stops_and_a_second_one_interrupts_at_once(tmp_path):
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(SystemExit) as stop:
        _run(_signalled_stage([], at_step=4, count=1), tmp_path / "once")
    assert stop.value.code == 130 and checkpoints.load_torch(tmp_path / "once" / "resume.pt")["step"] == 5
    with pytest.raises(KeyboardInterrupt):  # no save of its own: the last checkpoint stays
        _run(_signalled_stage([], at_step=4, count=2), tmp_path / "twice")
    assert checkpoints.load_torch(tmp_path / "twice" / "resume.pt")["step"] == 4
    assert signal.getsignal(signal.SIGINT) is handler  # the loop put the caller's handler back


class _KillsItsWorker(_Values):
    """`_Values` whose first item of epoch 3 (the batch of step 6) kills the loader worker fetching it,
    once (as the kernel's OOM killer would); `marker` records that it happened."""

    def __init__(self, marker):
        self.marker = marker

    def item(self, index, epoch):
        if epoch == 3 and not self.marker.exists():
            time.sleep(1.0)  # the main process has finished step 5 (microseconds) and waits for this batch
            self.marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return super().item(index, epoch)


def test_a_killed_loader_worker_keeps_the_steps_done(tmp_path, monkeypatch):
    # The killed worker cannot remove the temporary folder it made (multiprocessing's pymp-*): here, not /tmp.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def run(dataset, resume_dir, seen):
        return loop.run(_stage(seen), dataset, iters=9, batch_size=4, seed=3, resume_dir=resume_dir, digest="toy",
                        checkpoint_every=100, log_every=3, loader_options={"num_workers": 1},
                        log=lambda message: None)[1]

    whole = run(_Values(), tmp_path / "whole", [])
    seen = []
    with pytest.raises(RuntimeError, match="DataLoader worker"):
        run(_KillsItsWorker(tmp_path / "killed"), tmp_path / "cut", seen)
    # No checkpoint was due (every 100 steps): the 6 steps done are kept all the same.
    assert [s for s, _, _ in seen] == list(range(6))
    assert checkpoints.load_torch(tmp_path / "cut" / "resume.pt")["step"] == 6
    seen = []
    assert run(_KillsItsWorker(tmp_path / "killed"), tmp_path / "cut", seen) == whole
    assert seen[0][0] == 6


class _UnreadableOnRank(_Values):
    """`_Values` whose items of epoch 3 on (the batch of step 6) process `rank` cannot read, as an
    unreadable image (read in the process itself: no loader workers)."""

    def __init__(self, rank):
        self.rank = rank

    def item(self, index, epoch):
        if epoch == 3 and torch.distributed.get_rank() == self.rank:
            raise ValueError(f"cannot read image {index}")
        return super().item(index, epoch)


def _train_on_two_ranks(rank, init_file, resume_dir, unreadable_on, out):
    """One of two gloo processes training `_stage` (gradients averaged over both); its outcome, the
    steps it trained and the curve rows go to `out.<rank>`."""
    # A collective that one process never joins fails after a minute rather than hang the test run.
    join_two_ranks(rank, init_file, timeout_s=60)
    seen, rows = [], None
    stage = _stage(seen)
    stage.unsynced_parameters = list(stage.modules["weight"].parameters())
    dataset = _Values() if unreadable_on is None else _UnreadableOnRank(unreadable_on)
    try:
        rows = loop.run(stage, dataset, iters=9, batch_size=4, seed=3, resume_dir=resume_dir, digest="toy",
                        checkpoint_every=100, log_every=3, log=lambda message: None)[1]
        outcome = "finished"
    except Exception as error:
        outcome = f"{type(error).__name__}: {error}"
    torch.save({"outcome": outcome, "steps": [s for s, _, _ in seen], "rows": rows}, f"{out}.{rank}")
    leave_two_ranks()


def _two_ranks(tmp_path, name, resume_dir, unreadable_on=None):
    out = tmp_path / name
    torch.multiprocessing.spawn(_train_on_two_ranks, nprocs=2,
                                args=(str(tmp_path / f"{name}.init"), str(resume_dir), unreadable_on, str(out)))
    return [torch.load(f"{out}.{rank}", weights_only=True) for rank in (0, 1)]


def test_a_batch_one_process_cannot_load_stops_both_after_the_same_step(tmp_path):
    """Process 1 cannot read its batch of step 6; process 0 loaded its own. Both stop before step 6,
    the 6 steps done are saved (no checkpoint was due), and a rerun ends as an uninterrupted run."""
    whole, _ = _two_ranks(tmp_path, "whole", tmp_path / "whole")
    assert whole["outcome"] == "finished" and whole["steps"] == list(range(9))
    first, second = _two_ranks(tmp_path, "cut", tmp_path / "cut", unreadable_on=1)
    assert first["outcome"] == ("RuntimeError: another process failed to load its batch of step 7; "
                                "state saved at step 6")
    assert second["outcome"].startswith("ValueError: cannot read image")
    assert first["steps"] == second["steps"] == list(range(6))
    assert checkpoints.load_torch(tmp_path / "cut" / "resume.pt")["step"] == 6
    rerun, _ = _two_ranks(tmp_path, "rerun", tmp_path / "cut")
    assert rerun["outcome"] == "finished" and rerun["steps"] == list(range(6, 9))
    assert rerun["rows"] == whole["rows"]
