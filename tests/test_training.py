"""Training commands on real Fashion-MNIST: teacher, classifier, the three distillation methods,
settings changed under a resume state, torchrun, and the authors' checkpoint format (kills: test_kill_matrix)."""

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import (REPO, join_two_ranks, leave_two_ranks, packages_loaded, rdd_argv, read_record, run_rdd,
                      subprocess_env)
from fixtures_authors import authors_checkpoint
from rdd import checkpoints, io, methods
from rdd.cli import main as rdd_main
from rdd.data import build_dataset, normalize_spec
from rdd.diffusion import TimeGrid
from rdd.losses.relational import PixelMemory
from rdd.losses.truncated_snr import TeacherLoss
from rdd.checkpoints import load_classifier, load_denoiser
from rdd.nets import build_unet


def held_out_teacher_loss(net, spec, T_base):
    """Teacher loss on 128 fixed test images with fixed times and noise."""
    data = build_dataset(normalize_spec(spec), "test")
    x = torch.stack([data[i][0] for i in range(128)])
    torch.manual_seed(123)
    with torch.no_grad():
        return float(TeacherLoss(TimeGrid(T_base, T_base))(net.eval(), x).mean())


def test_teacher_training_lowers_the_loss(teacher, tiny):
    settings = yaml.safe_load(tiny["teacher"].read_text())
    trained, kwargs, grid = load_denoiser(teacher)
    assert grid.T == grid.T_base == 16
    torch.manual_seed(0)  # the runner's initial weights for seed 0
    initial = build_unet(**kwargs)
    before = held_out_teacher_loss(initial, settings["data"], 16)
    after = held_out_teacher_loss(trained, settings["data"], 16)
    assert after < 0.7 * before, (before, after)
    record = read_record(teacher)
    assert record["settings"]["train"]["iters"] == 12 and record["final_terms"]["step"] == 12
    rows = list(csv.DictReader(open(str(teacher).removesuffix(".pt") + ".curves.csv")))
    assert [int(r["step"]) for r in rows] == [4, 8, 12]
    assert [int(r["steps_averaged"]) for r in rows] == [4, 4, 4] and record["final_terms"]["steps_averaged"] == 4


def test_a_training_record_given_as_settings_runs_the_training_again(teacher, tmp_path, capsys):
    record = str(teacher).removesuffix(".pt") + ".json"
    again = tmp_path / "again.pt"
    run_rdd("train-teacher", "--settings", record, "--out", again, "--resume-dir", tmp_path / "resume")
    first, second = checkpoints.load_torch(teacher), checkpoints.load_torch(again)
    assert first["settings"] == second["settings"]
    assert first["state_dict"].keys() == second["state_dict"].keys()
    assert all(torch.equal(first["state_dict"][k], second["state_dict"][k]) for k in first["state_dict"])
    # A record of another command is refused, naming both.
    code = rdd_main(["train-classifier", "--settings", record, "--out", str(tmp_path / "c.pt"),
                     "--resume-dir", str(tmp_path / "resume_c")])
    assert code == 2 and f"{record} is the record of a teacher training, not of a classifier one" in \
        capsys.readouterr().err


def test_classifier_learns_fashion_mnist(classifier):
    net, kwargs = load_classifier(classifier)
    assert kwargs["num_classes"] == 10 and not any(p.requires_grad for p in net.parameters())
    assert read_record(classifier)["test_accuracy"] > 0.2  # chance is 0.1; 36 steps of SGD


@pytest.mark.parametrize("method,extra,terms", [
    ("pd", [], {"pd"}), ("rcfd", [], {"cfd"}), ("rdd", [], {"cfd", "is_p2p", "m_p2p"}),
    # RCFD's optional dataset-oriented terms at alpha 0.1, beta 0.5.
    ("rcfd", ["weights.entropy=0.05", "weights.diversity=0.05"], {"cfd", "entropy", "diversity"})])
def test_each_method_round_trains_the_student(method, extra, terms, teacher, classifier, tiny, tmp_path):
    out = tmp_path / "student.pt"
    run_rdd("distill", "--settings", tiny["distill"], "--set", f"method={method}", "--teacher", teacher,
            *(["--classifier", classifier] if method != "pd" else []), "--out", out, "--resume-dir",
            tmp_path / "resume", *[arg for setting in extra for arg in ("--set", setting)])
    t_net, _, t_grid = load_denoiser(teacher)
    s_net, _, s_grid = load_denoiser(out)
    assert (s_grid.T, s_grid.time_scale) == (t_grid.T // 2, 2 * t_grid.time_scale)
    changed = [not torch.equal(a, b) for a, b in zip(t_net.state_dict().values(), s_net.state_dict().values())]
    assert any(changed)
    record = read_record(out)
    assert set(record["final_terms"]) - {"step", "steps_averaged", "loss"} == terms
    assert all(np.isfinite(v) for v in record["final_terms"].values())


# A valid value other than the default of every setting that some loss term reads (rdd.methods.TERMS).
OTHER_VALUES = {"tau": 0.5, "classifier_input": "as_trained", "feature_map": "pre_relu", "is_p2p_temperature": 0.5,
                "is_p2p_group_size": 2, "memory_size": 64, "num_anchors": 16, "enqueue_per_step": 8,
                "contrast_temperature": 0.2, "kd_temperature": 2.0, "m_p2p_enqueue": "pixels", "m_p2p_wrap": "modulo",
                "m_p2p_anchors": "stride", "m_p2p_head_bias": True, "m_p2p_head_lr": "cosine", "m_p2p_sync_bn": False}


def _student_weights(method, changes, teacher, classifier, tiny, folder):
    out = folder / "student.pt"
    run_rdd("distill", "--settings", tiny["distill"], "--set", f"method={method}", "--set", "train.iters=2",
            "--teacher", teacher, *(["--classifier", classifier] if method != "pd" else []), "--out", out,
            "--resume-dir", folder / "resume", *[a for k, v in changes.items() for a in ("--set", f"{k}={v}")])
    return load_denoiser(out)[0].state_dict()


@pytest.mark.parametrize("method", ["pd", "rcfd"])
def test_settings_no_term_of_a_round_reads_leave_its_student_unchanged(method, teacher, classifier, tiny,
                                                                          tmp_path):
    """What the workflow relies on to retrain nothing when such a setting changes (tau for a PD round)
    and to let an ablation variant changing only them stand for its main run."""
    assert set(OTHER_VALUES) == {key for term in methods.TERMS.values() for key in term.settings}
    unread = methods.unread_settings(methods.METHODS[method].weights)
    assert ("tau" in unread) == (method == "pd") and "memory_size" in unread
    baseline = _student_weights(method, {}, teacher, classifier, tiny, tmp_path / "default")
    changed = {k: yaml.safe_dump(OTHER_VALUES[k]).split("\n")[0] for k in unread}
    other = _student_weights(method, changed, teacher, classifier, tiny, tmp_path / "changed")
    assert all(torch.equal(baseline[k], other[k]) for k in baseline)
    if method == "rcfd":  # a setting the round reads does change it
        read = _student_weights(method, {"tau": 0.5}, teacher, classifier, tiny, tmp_path / "tau")
        assert not all(torch.equal(baseline[k], read[k]) for k in baseline)


def _resume_state(folder):
    return checkpoints.load_torch(folder / "resume.pt")


def _pd_round(tiny, teacher, folder):
    """The command line of a tiny PD round from `teacher` to `folder`/s.pt, its resume state in `folder`/resume."""
    return ["distill", "--settings", tiny["distill"], "--set", "method=pd", "--teacher", teacher,
            "--out", folder / "s.pt", "--resume-dir", folder / "resume"]


def test_resume_state_of_other_settings_is_set_aside(teacher, tiny, tmp_path):
    args = _pd_round(tiny, teacher, tmp_path)
    run_rdd(*args)
    run_rdd(*args, "--set", "train.lr=1e-4")
    assert list((tmp_path / "resume").glob("resume.pt.stale-*"))


def test_settings_changed_and_changed_back_take_up_their_own_state(teacher, tiny, tmp_path, capsys):
    """A setting edited and then reverted trains nothing twice: the state set aside for the edit's
    settings comes back, with its curve rows (not the other run's), and exports the same student."""
    args = _pd_round(tiny, teacher, tmp_path)
    run_rdd(*args)
    first = checkpoints.load_torch(tmp_path / "s.pt")["state_dict"]
    first_curves = (tmp_path / "s.curves.csv").read_text()
    run_rdd(*args, "--set", "train.lr=1e-4")
    assert (tmp_path / "s.curves.csv").read_text() != first_curves
    capsys.readouterr()
    run_rdd(*args)
    log = capsys.readouterr().out
    assert "set aside earlier, was written for these settings and inputs; moved back" in log, log
    assert "resume state is already at step 4 of 4" in log, log
    again = checkpoints.load_torch(tmp_path / "s.pt")["state_dict"]
    assert all(torch.equal(v, first[k]) for k, v in again.items())
    assert (tmp_path / "s.curves.csv").read_text() == first_curves
    assert len(list((tmp_path / "resume").glob("resume.pt.stale-*"))) == 1  # the edited run's, aside


def test_prune_resume_lists_then_deletes_only_what_no_run_reads(teacher, tiny, tmp_path, capsys):
    """`prune-resume` lists each set-aside state and write cut short with its size, deletes them only with
    --delete, never the current state or any other file, and leaves a folder that a job holds alone; the
    settings whose state it deleted then train from step 0."""
    args = _pd_round(tiny, teacher, tmp_path)
    run_rdd(*args)
    run_rdd(*args, "--set", "train.lr=1e-4")
    resume = tmp_path / "resume"
    (stale,) = resume.glob("resume.pt.stale-*")
    partial, damaged = resume / ".resume.pt.x1y2.tmp", resume / "resume.pt.corrupt-1765000000"
    partial.write_bytes(b"cut")
    damaged.write_bytes(b"junk")
    (resume / "notes.txt").write_text("the user's own file")
    unread = {stale.name, partial.name, damaged.name}
    before = {p.name for p in resume.iterdir()}
    capsys.readouterr()

    run_rdd("prune-resume", "--root", tmp_path)
    out = capsys.readouterr().out
    assert {p.name for p in resume.iterdir()} == before, out  # listed only
    assert all(f"{resume / name}: " in out for name in unread), out
    state_mib = (resume / "resume.pt").stat().st_size / 2**20
    assert (f"3 files that no run reads, {(stale.stat().st_size + 7) / 2**20:.1f} MiB: nothing deleted" in out
            and f"the 1 current resume states ({state_mib:.1f} MiB) are kept" in out), out

    with io.exclusive(resume / "resume.pt"):  # as a training job holds its folder
        run_rdd("prune-resume", "--root", tmp_path, "--delete")
        assert {p.name for p in resume.iterdir()} == before | {"resume.pt.lock"}
    assert f"left alone: {resume} (a training job is using it)" in capsys.readouterr().out

    run_rdd("prune-resume", "--root", tmp_path, "--delete")
    assert "3 files that no run reads" in capsys.readouterr().out
    assert {p.name for p in resume.iterdir()} == before - unread
    run_rdd(*args)
    assert "starting afresh" in capsys.readouterr().out


def test_on_two_processes_every_process_takes_up_the_state_brought_back(teacher, tiny, tmp_path):
    """Rank 0 brings the set-aside state back before any process reads: both resume at its step."""
    def distill(*changes, processes=2):
        proc = subprocess.run(
            rdd_argv(*_pd_round(tiny, teacher, tmp_path), *changes, processes=processes),
            env=subprocess_env(), cwd=REPO, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    distill(processes=1)
    first = checkpoints.load_torch(tmp_path / "s.pt")["state_dict"]
    distill("--set", "train.lr=1e-4")
    log = distill()
    assert log.count(f"resumed from {tmp_path / 'resume' / 'resume.pt'} at step 4") == 2, log
    assert all(torch.equal(v, first[k]) for k, v in checkpoints.load_torch(tmp_path / "s.pt")["state_dict"].items())


def test_a_resume_state_without_its_curve_rows_takes_them_from_the_folder(teacher, tiny, tmp_path):
    """States written before they kept their curve rows (the previous stop's) still resume."""
    args = _pd_round(tiny, teacher, tmp_path)
    run_rdd(*args)
    curves = (tmp_path / "s.curves.csv").read_text()
    state = _resume_state(tmp_path / "resume")
    del state["curves"]
    checkpoints.save_torch(state, tmp_path / "resume" / "resume.pt")
    run_rdd(*args)
    assert (tmp_path / "s.curves.csv").read_text() == curves


def test_a_round_whose_teacher_changed_starts_afresh(teacher, tiny, tmp_path):
    """A round's resume state belongs to its teacher's content: with a teacher retrained under the same
    path (here: its weights perturbed), rerunning the round trains a new student, not resumes (or, at
    its last step, re-exports) the old teacher's."""
    from rdd import io

    path = tmp_path / "teacher.pt"
    payload = checkpoints.load_torch(teacher)
    checkpoints.save_torch(payload, path)
    args = _pd_round(tiny, path, tmp_path)
    run_rdd(*args)
    first = checkpoints.load_torch(tmp_path / "s.pt")["state_dict"]
    run_rdd(*args)  # the same teacher: the finished state is reused, the same student exported
    assert all(torch.equal(v, first[k]) for k, v in checkpoints.load_torch(tmp_path / "s.pt")["state_dict"].items())
    assert not list((tmp_path / "resume").glob("resume.pt.stale-*"))

    payload["state_dict"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    checkpoints.save_torch(payload, path)
    run_rdd(*args)
    assert list((tmp_path / "resume").glob("resume.pt.stale-*"))
    again = checkpoints.load_torch(tmp_path / "s.pt")["state_dict"]
    assert not all(torch.equal(v, first[k]) for k, v in again.items())
    assert read_record(tmp_path / "s.pt")["inputs_sha256"] == {"teacher": io.sha256_file(path)}


def test_two_process_torchrun_round(teacher, classifier, tiny, tmp_path):
    out = tmp_path / "student.pt"
    proc = subprocess.run(
        rdd_argv("distill", "--settings", tiny["distill"], "--teacher", teacher, "--classifier", classifier,
                 "--out", out, "--resume-dir", tmp_path / "resume", processes=2),
        env=subprocess_env(), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record = read_record(out)
    assert record["world_size"] == 2
    state = _resume_state(tmp_path / "resume")
    # As released, the ranks' teacher maps are gathered and enqueue_per_step (24) vectors are then
    # chosen in total: 4 steps write 96 slots of 300 (per rank, it would be 192).
    assert int(state["modules"]["m_p2p"]["memory.ptr"]) == 4 * 24
    assert record["m_p2p_head_norm"] == "SyncBatchNorm across processes"  # as released, on gloo too
    assert load_denoiser(out)[2].T == 8



def relative_l2(a, b):
    """||a - b|| / ||b||: the size of a difference in weights or updates as a whole. The largest element's
    relative difference would be ruled by values near 0 (BatchNorm biases a few steps in, weights Adam
    moved by the sign of a gradient near 0), which float rounding alone can move by much of their size."""
    return float((a - b).norm() / b.norm())


def test_the_classifier_trains_on_two_processes_as_on_one(tiny, tmp_path):
    """With its BatchNorm synchronised (train.sync_bn, the default) the classifier trains on two
    processes as on one with the whole batch, to float rounding; with one BatchNorm per process the
    statistics of half batches make other weights."""
    def train(name, processes, *settings):
        out = tmp_path / name / "classifier.pt"
        proc = subprocess.run(rdd_argv("train-classifier", "--settings", tiny["classifier"], "--set", "train.iters=3",
                                       *settings, "--out", out, "--resume-dir", out.parent / "resume",
                                       processes=processes),
                              env=subprocess_env(), cwd=REPO, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return checkpoints.load_torch(out)["state_dict"], read_record(out)

    def relative_difference(a, b):
        # Over every floating tensor at once (weights and BatchNorm statistics): BatchNorm biases are
        # about 1e-3 after three steps, and float rounding alone reaches a few 1e-4 of their size.
        def flat(state):
            return torch.cat([state[k].double().flatten() for k in b if b[k].is_floating_point()])
        return relative_l2(flat(a), flat(b))

    one, one_record = train("one", 1)
    synced, synced_record = train("synced", 2)
    per_process, per_process_record = train("per_process", 2, "--set", "train.sync_bn=false")
    assert (one_record["batch_norm"], synced_record["batch_norm"], per_process_record["batch_norm"]) == (
        None, "SyncBatchNorm across processes", "BatchNorm per process (train.sync_bn: false)")
    assert relative_difference(synced, one) < 1e-5  # 4e-7 on this machine
    assert relative_difference(per_process, one) > 100 * relative_difference(synced, one)  # 5.5e-3


def _save_both_queues(rank, queue, out, terms=None, head=None):
    """Rank 0 saves the queues of both ranks, stacked (and the loss terms each rank's train_step
    returned, and its M-P2P head's state as one vector); then the process ends."""
    from rdd import dist

    saved = {"queues": dist.all_gather_cat(queue[None])}
    if terms is not None:
        saved["terms"] = dist.all_gather_cat(torch.tensor([list(terms.values())], dtype=torch.float64))
    if head is not None:
        state = torch.cat([t.double().flatten() for t in head.state_dict().values()])
        saved["heads"] = dist.all_gather_cat(state[None])
    if rank == 0:
        torch.save(saved, out)
    leave_two_ranks()


def _queues_of_two_ranks(rank, init_file, shared, out):
    """One of two gloo processes: three M-P2P steps on this rank's own maps, seeded as train_step
    seeds a step; rank 0 saves both ranks' queues."""
    from rdd import dist
    from rdd.losses.relational import MP2PLoss
    from rdd.train.loop import shared_generator, step_seed

    join_two_ranks(rank, init_file)
    loss_fn = MP2PLoss(8, memory_size=64, num_anchors=16, enqueue_per_step=12, gather=dist.all_gather_cat)
    for step in range(3):
        torch.manual_seed(step_seed(0, rank, step))
        F_s, F_t = torch.randn(2, 8, 3, 3), torch.randn(2, 8, 3, 3)
        loss_fn(F_s, F_t, generator=shared_generator(0, step) if shared else None)
    _save_both_queues(rank, loss_fn.memory.queue, out)


@pytest.mark.parametrize("shared", [True, False])
def test_m_p2p_queue_is_one_queue_on_every_rank(shared, tmp_path):
    """Under data parallelism each rank keeps a copy of the queue (only rank 0's is saved for a resume):
    the vectors to enqueue are chosen with a generator seeded by (seed, step), not the rank, so the
    copies stay equal. With each rank's own generator (shared=False) they part at the first step."""
    out = tmp_path / "queues.pt"
    torch.multiprocessing.spawn(_queues_of_two_ranks, args=(str(tmp_path / "init"), shared, str(out)), nprocs=2)
    queues = torch.load(out, weights_only=True)["queues"]
    assert queues.shape == (2, 64, 8)
    assert torch.equal(queues[0], queues[1]) == shared


def _means_of_two_ranks(rank, init_file, out):
    from rdd import dist

    join_two_ranks(rank, init_file)
    means = dist.mean_over_ranks({"loss": 1.0 + rank, "term": -3.0 * rank})
    torch.save(means, f"{out}.{rank}")
    leave_two_ranks()


def test_mean_over_ranks(tmp_path):
    out = tmp_path / "means"
    torch.multiprocessing.spawn(_means_of_two_ranks, args=(str(tmp_path / "init"), str(out)), nprocs=2)
    for rank in (0, 1):
        assert torch.load(f"{out}.{rank}", weights_only=True) == {"loss": 1.5, "term": -1.5}


def _sync_batchnorm_of_two_ranks(rank, init_file, out):
    """One of two gloo processes: two training steps of a synchronised BatchNorm2d on this rank's
    share of a fixed batch (3 and 5 images), for momentum 0.1 and None; each rank saves its results."""
    from rdd.nets.sync_batchnorm import convert_sync_batchnorm

    join_two_ranks(rank, init_file)
    rows = slice(0, 3) if rank == 0 else slice(3, 8)
    saved = {}
    for momentum in (0.1, None):
        norm = convert_sync_batchnorm(_seeded_batchnorm(momentum))
        for step, (x, weights) in enumerate(_batchnorm_inputs()):
            x = x[rows].clone().requires_grad_(True)
            y = norm(x)
            (y * weights[rows]).sum().backward()
            saved[momentum, step] = {"y": y.detach(), "x_grad": x.grad, "weight_grad": norm.weight.grad.clone(),
                                     "bias_grad": norm.bias.grad.clone(), **{k: v.clone() for k, v in
                                                                            norm.state_dict().items()}}
            norm.zero_grad()
    torch.save(saved, f"{out}.{rank}")
    leave_two_ranks()


def _seeded_batchnorm(momentum):
    norm = torch.nn.BatchNorm2d(6, momentum=momentum)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(5)
        norm.weight.copy_(torch.rand(6, generator=generator) + 0.5)
        norm.bias.copy_(torch.randn(6, generator=generator))
    return norm


def _batchnorm_inputs():
    generator = torch.Generator().manual_seed(6)
    return [(torch.randn(8, 6, 3, 3, generator=generator) * 3 + 1, torch.randn(8, 6, 3, 3, generator=generator))
            for _ in range(2)]


def test_sync_batchnorm_on_two_processes_equals_one_batchnorm_over_the_whole_batch(tmp_path):
    """Two gloo processes with 3 and 5 images normalise, back-propagate and track running statistics
    as one nn.BatchNorm2d over all 8 does (the loss being the sum of the processes' losses): outputs
    and input gradients per process, parameter gradients summed over them, equal running statistics."""
    out = tmp_path / "norm"
    torch.multiprocessing.spawn(_sync_batchnorm_of_two_ranks, args=(str(tmp_path / "init"), str(out)), nprocs=2)
    ranks = [torch.load(f"{out}.{rank}", weights_only=True) for rank in (0, 1)]
    for momentum in (0.1, None):
        reference = _seeded_batchnorm(momentum)
        for step, (x, weights) in enumerate(_batchnorm_inputs()):
            x = x.clone().requires_grad_(True)
            y = reference(x)
            (y * weights).sum().backward()
            got = [saved[momentum, step] for saved in ranks]
            close = dict(rtol=1e-5, atol=1e-5)
            assert torch.allclose(torch.cat([g["y"] for g in got]), y.detach(), **close)
            assert torch.allclose(torch.cat([g["x_grad"] for g in got]), x.grad, **close)
            assert torch.allclose(got[0]["weight_grad"] + got[1]["weight_grad"], reference.weight.grad, **close)
            assert torch.allclose(got[0]["bias_grad"] + got[1]["bias_grad"], reference.bias.grad, **close)
            for key, value in reference.state_dict().items():
                for g in got:
                    assert torch.allclose(g[key].to(value.dtype), value, **close), (momentum, step, key)
            reference.zero_grad()


def _cpu_round(settings, teacher_path, classifier_path):
    """`(stage, teacher)`: the real round of `settings` on the CPU, from the given files."""
    from rdd.train.round import round_stage

    teacher, kwargs, grid = load_denoiser(teacher_path)
    torch.manual_seed(settings["seed"])
    classifier = load_classifier(classifier_path)[0]
    return round_stage(settings, torch.device("cpu"), teacher, kwargs, grid, classifier)[0], teacher


def _round_queue_of_two_ranks(rank, init_file, settings_path, teacher_path, classifier_path, out):
    """One of two gloo processes: two steps of the real RDD round on this rank's own images."""
    from rdd import settings as settings_mod
    from rdd.train.loop import train_step

    join_two_ranks(rank, init_file)
    settings = settings_mod.validate("distill", yaml.safe_load(open(settings_path)))
    stage, _ = _cpu_round(settings, teacher_path, classifier_path)
    images = torch.Generator().manual_seed(rank)
    for step in range(2):
        batch = (torch.rand(8, 1, 16, 16, generator=images) * 2 - 1, torch.zeros(8, dtype=torch.long))
        terms = train_step(stage, batch, step, settings["seed"])
    m_p2p = stage.modules["m_p2p"]
    _save_both_queues(rank, m_p2p.memory.queue, out, terms, m_p2p.head)


def test_the_rdd_round_keeps_one_m_p2p_queue_on_every_rank(teacher, classifier, tiny, tmp_path):
    """The round passes the (seed, step) generator down to M-P2P: after two steps on different images
    per rank, the ranks' queues are equal (and were written: they differ from the initial queue).
    The loss terms train_step returns are the mean over the ranks, so equal on both. The head's
    BatchNorm is synchronised and its gradients averaged, so its weights and running statistics
    are equal on both ranks too (per-process BatchNorm statistics would differ)."""
    out = tmp_path / "queues.pt"
    torch.multiprocessing.spawn(_round_queue_of_two_ranks, nprocs=2, args=(
        str(tmp_path / "init"), str(tiny["distill"]), str(teacher), str(classifier), str(out)))
    saved = torch.load(out, weights_only=True)
    queues, terms, heads = saved["queues"], saved["terms"], saved["heads"]
    assert terms.shape == (2, 4) and torch.equal(terms[0], terms[1])
    assert torch.allclose(heads[0], heads[1], rtol=1e-5, atol=1e-7)
    assert torch.equal(queues[0], queues[1])
    initial = PixelMemory(queues.shape[1], queues.shape[2]).queue
    assert (queues[0] != initial).any(dim=1).sum() == 2 * 24  # two steps of enqueue_per_step vectors


def _round_update(settings, teacher_path, classifier_path, rank=0, world_size=1):
    """What two steps of a round on this process's slice (rdd.train.batches.process_slice) of fixed
    global batches change in the student's parameters, as one float64 vector."""
    from rdd.train.batches import process_slice
    from rdd.train.loop import train_step

    stage, teacher = _cpu_round(settings, teacher_path, classifier_path)
    initial = torch.cat([p.detach().double().flatten() for p in teacher.parameters()])
    images = torch.Generator().manual_seed(0)
    start, stop = process_slice(8, rank, world_size)
    for step in range(2):
        x = torch.rand(8, 1, 16, 16, generator=images) * 2 - 1
        train_step(stage, (x[start:stop], torch.zeros(stop - start, dtype=torch.long)), step, settings["seed"])
    return torch.cat([p.detach().double().flatten() for p in stage.modules["student"].parameters()]) - initial


def _round_of_two_ranks(rank, init_file, settings, teacher_path, classifier_path, out):
    join_two_ranks(rank, init_file)
    update = _round_update(settings, teacher_path, classifier_path, rank, 2)
    if rank == 0:
        torch.save(update, out)
    leave_two_ranks()


def test_grouped_noise_trains_on_two_processes_as_on_one(teacher, classifier, tiny, tmp_path):
    """With train.noise_group_size the batch's times and noise are one group's draws from the (seed,
    step) generator, placed by batch position, and each process holds a contiguous slice of the
    batch: an RDD round (IS-P2P in groups of 4, M-P2P's gathered queue, its synchronised head) on two
    processes trains the student that one process trains on the whole batch, to float rounding. With
    a draw per sample (null) each process seeds its own, so the two part (each compared by what the
    steps changed)."""
    from rdd import settings as settings_mod

    def update(group, processes):
        block = {**yaml.safe_load(open(tiny["distill"])), "method": "rdd", "is_p2p_group_size": 4}
        block["train"] = {**block["train"], "noise_group_size": group}
        settings = settings_mod.validate("distill", block)
        if processes == 1:
            return _round_update(settings, teacher, classifier)
        out = tmp_path / f"two-{group}.pt"
        torch.multiprocessing.spawn(_round_of_two_ranks, nprocs=2, args=(
            str(tmp_path / f"init-{group}"), settings, str(teacher), str(classifier), str(out)))
        return torch.load(out, weights_only=True)

    grouped, per_sample = relative_l2(update(4, 2), update(4, 1)), relative_l2(update(None, 2), update(None, 1))
    # Measured 3e-4 and 1.3; the first step's loss terms agree to 1e-7 (float rounding, which Adam's
    # near-sign steps then magnify).
    assert grouped < 3e-3
    assert per_sample > 100 * grouped


def _worker_of_rank(parent_pid, rank):
    """The pid of torchrun's worker process of `rank` (None until it has started)."""
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if f"\nPPid:\t{parent_pid}\n" in status.read_text() and \
                    f"RANK={rank}".encode() in (status.parent / "environ").read_bytes().split(b"\0"):
                return int(status.parent.name)
        except OSError:  # a process that ended meanwhile
            continue
    return None


def test_a_round_resumes_on_another_number_of_processes(teacher, classifier, tiny, tmp_path):
    """Stopped on two processes by a signal to one of them (Ctrl-C to rank 1 alone), continued on one.
    Both stop after the same step, and the state of that step is saved (no checkpoint falls due before
    the end here). The global RNG is seeded per step from (seed, rank, step), so the resume state holds
    no per-process random state."""
    resume, log_path = tmp_path / "resume", tmp_path / "two.log"
    iters = 60  # about 15 s of margin after step 4 on two processes, at 4 steps/s here
    args = ["distill", "--settings", tiny["distill"], "--set", f"train.iters={iters}",
            "--set", f"train.checkpoint_every={iters}", "--teacher", teacher, "--classifier", classifier,
            "--out", tmp_path / "s.pt", "--resume-dir", resume]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(rdd_argv(*args, processes=2), env=subprocess_env(), cwd=REPO, stdout=log, stderr=log)
    deadline = time.monotonic() + 300
    while f" step 4/{iters} " not in log_path.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
        time.sleep(0.05)
    os.kill(_worker_of_rank(proc.pid, 1), signal.SIGINT)
    proc.wait(timeout=120)
    stopped_at = _resume_state(resume)["step"]
    assert 4 <= stopped_at < iters and not (tmp_path / "s.pt").exists()
    assert f"another process's signal: state saved at step {stopped_at}; stopping" in log_path.read_text()
    one = subprocess.run(rdd_argv(*args), env=subprocess_env(), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stdout + one.stderr
    assert f"resumed from {resume / 'resume.pt'} at step {stopped_at}" in one.stdout
    record = read_record(tmp_path / "s.pt")
    assert record["world_size"] == 1 and record["final_terms"]["step"] == iters


def test_authors_checkpoint_is_a_working_teacher(teacher, classifier, tiny, tmp_path):
    ours, kwargs, grid = load_denoiser(teacher)
    authors = tmp_path / "authors_ckpt.pt"
    authors_checkpoint(ours, 8, 2, authors)  # as if our net were their 8-step PD model on T_base 16
    net, _, agrid = load_denoiser(authors, authors_net=kwargs)
    assert (agrid.T, agrid.T_base, agrid.time_scale) == (8, 16, 2)
    z, t = torch.randn(3, 1, 16, 16), torch.tensor([4.0, 10.0, 16.0])
    with torch.no_grad():
        assert torch.equal(net(z, t), ours(z, t))
    out = tmp_path / "student.pt"
    run_rdd("distill", "--settings", tiny["distill"], "--teacher", authors, "--classifier", classifier,
            "--authors-net", json.dumps(kwargs), "--out", out, "--resume-dir", tmp_path / "resume")
    assert load_denoiser(out)[2].T == 4
    run_rdd("sample", "--model", authors, "--authors-net", json.dumps(kwargs), "--steps", 2,
            "--seeds", "0-3", "--out", tmp_path / "s.npz", "--device", "cpu")
    assert np.load(tmp_path / "s.npz")["images"].shape == (4, 16, 16, 1)


def test_samples_do_not_depend_on_batch_size(teacher, tmp_path):
    files = {}
    for batch in (1, 7, 64):
        files[batch] = tmp_path / f"b{batch}.npz"
        run_rdd("sample", "--model", teacher, "--steps", 4, "--seeds", "0-63", "--batch-size", batch,
                "--shard-size", 30, "--out", files[batch], "--device", "cpu")
    ref = np.load(files[1])
    assert ref["images"].dtype == np.uint8 and ref["images"].shape == (64, 16, 16, 1)
    assert ref["images"].std() > 0
    assert np.array_equal(ref["seeds"], np.arange(64))
    for batch in (7, 64):
        assert np.array_equal(np.load(files[batch])["images"], ref["images"])
    part = tmp_path / "part.npz"
    run_rdd("sample", "--model", teacher, "--steps", 4, "--seeds", "40-63", "--out", part, "--device", "cpu")
    assert np.array_equal(np.load(part)["images"], ref["images"][40:])


def test_sampling_and_distillation_jobs_load_no_metrics_stack(tiny, teacher, classifier, tmp_path):
    """The commands most jobs run (`sample`, `distill`) start without torch-fidelity and torchvision:
    importing them costs about 3 s a job on CI's machine (torchvision imports torch._dynamo), which only the
    evaluation and reference-statistics jobs need."""
    commands = {
        "sample": ["sample", "--model", teacher, "--steps", 1, "--seeds", "0-3", "--device", "cpu",
                   "--out", tmp_path / "s.npz", "--grid", tmp_path / "s.png"],
        "distill": ["distill", "--settings", tiny["distill"], "--teacher", teacher, "--classifier", classifier,
                    "--set", "train.iters=1", "--out", tmp_path / "student.pt", "--resume-dir", tmp_path / "resume"],
    }
    for name, args in commands.items():
        loaded = packages_loaded("from rdd.cli import main\nstatus = main(sys.argv[1:])", *args)
        assert not loaded & {"torchvision", "torch_fidelity"}, name
        assert "torch" in loaded, name  # the probe saw the command's own imports


@pytest.mark.parametrize("count, channels", [(64, 3), (13, 3), (5, 1)])
def test_sample_grid_is_torchvision_make_grid(count, channels):
    """rdd.generate.tile against torchvision's make_grid (white padding 1, 8 to a row) on the same
    uint8 images; make_grid repeats a grey image's channel three times, tile keeps the one."""
    from torchvision.utils import make_grid

    from rdd.data import from_uint8, to_uint8
    from rdd.generate import tile

    images = np.random.default_rng(count).integers(0, 256, (count, 6, 5, channels), dtype=np.uint8)
    expected = to_uint8(make_grid(from_uint8(images), nrow=8, padding=1, pad_value=1.0)[None])[0]
    got = tile(images, nrow=8)
    assert got.dtype == np.uint8 and got.shape[-1] == channels
    assert np.array_equal(got, expected[..., :channels])

def test_corrupt_checkpoint_is_named(tmp_path, tiny):
    bad = tmp_path / "teacher.pt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(checkpoints.CheckpointError, match=str(bad)):
        load_denoiser(bad)


def test_bad_settings_exit_with_the_key_named(tmp_path, tiny, capsys):
    from rdd.cli import main
    code = main(["train-teacher", "--settings", str(tiny["teacher"]), "--set", "train.itres=5",
                 "--out", str(tmp_path / "t.pt"), "--resume-dir", str(tmp_path / "r")])
    assert code == 2 and "train.itres" in capsys.readouterr().err
