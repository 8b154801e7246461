"""The training loop every stage shares: the optimiser step, resume state, loss curves, export.

A stage gives its loss and its optimisers; the loop does the step (zero_grad, backward, gradient
averaging, clipping, the optimisers' steps). The global RNG is seeded at every step from (seed,
rank, step), so a step's noise does not depend on what ran before it.

Each loss-curve row is the mean over the steps since the previous row of every process's batch
loss, so that the curves and a stage's final loss are not one batch's noise.

Resume state (all modules, optimisers, the step, the current row's running sums, the curve rows)
is written atomically every `checkpoint_every` steps, on SIGTERM or SIGINT, and when loading a batch
fails on any process (a loader worker killed, an unreadable image), to a folder kept apart from the
exported model. A run started again with the same settings and inputs (rdd.train.runner.resume_digest)
continues from it, on any number of processes; state written for others is set aside under its
digest and comes back when they do.
"""

import hashlib
import json
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader

from rdd import checkpoints, dist, io
from rdd.train.batches import EpochItems, StepBatchSampler
from rdd.train.resume_files import DAMAGED, OTHER_SETTINGS, set_aside_path, state_path


@dataclass
class Stage:
    """What one training run is made of; the loop does the rest."""

    name: str
    modules: dict                      # name -> nn.Module, all kept in the resume state
    optimizers: dict                   # name -> torch.optim.Optimizer
    lr_factor: Callable[[int], float]  # multiplier of every optimiser's base lr at a step
    loss: Callable                     # (batch, step) -> (loss tensor, {term: float})
    export: Callable[[], dict]         # the exported model payload
    clip_parameters: list = field(default_factory=list)  # their gradient norm is clipped to grad_clip
    grad_clip: float = 0.0             # 0: no clipping
    unsynced_parameters: list = field(default_factory=list)  # outside DDP: the loop averages their gradients
    after_step: Callable = None        # (step) -> None, after the optimisers' steps (EMA, evaluation)
    constant_lr: tuple = ()            # optimisers that keep their base lr (no lr_factor)
    base_lrs: dict = field(default_factory=dict)

    def __post_init__(self):
        self.base_lrs = {name: [g["lr"] for g in opt.param_groups] for name, opt in self.optimizers.items()}

    def set_lr(self, step):
        factor = self.lr_factor(step)
        for name, opt in self.optimizers.items():
            if name in self.constant_lr:
                continue
            for group, base in zip(opt.param_groups, self.base_lrs[name]):
                group["lr"] = base * factor


def cosine_decay(total_steps):
    """lr factor decaying from 1 to 0 over the run (a cosine half-period)."""
    return lambda step: 0.5 * (1 + math.cos(math.pi * step / total_steps))


def linear_warmup(warmup_steps):
    """lr factor min(step, warmup) / warmup, as released: the first step runs at lr 0."""
    if warmup_steps <= 0:
        return lambda step: 1.0
    return lambda step: min(step, warmup_steps) / warmup_steps


def step_seed(seed, rank, step):
    """The global RNG's seed at `step` of process `rank` (a hash, so nearby values do not collide)."""
    digest = hashlib.sha256(f"{seed}/{rank}/{step}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def shared_generator(seed, step):
    """A CPU generator for the draws of `step` that every process must make alike (M-P2P's choice of
    vectors to enqueue, so the ranks' queues stay one queue): seeded by (seed, step), not the rank."""
    return torch.Generator().manual_seed(step_seed(seed, "every rank", step))


def train_step(stage, batch, step, seed):
    """One optimiser step of `stage` on `batch`; returns its loss terms (floats), each the mean over
    the processes' batches."""
    torch.manual_seed(step_seed(seed, dist.rank(), step))
    stage.set_lr(step)
    loss, terms = stage.loss(batch, step)
    for opt in stage.optimizers.values():
        opt.zero_grad(set_to_none=True)
    loss.backward()
    dist.average_gradients(stage.unsynced_parameters)
    if stage.grad_clip:
        torch.nn.utils.clip_grad_norm_(stage.clip_parameters, stage.grad_clip)
    for opt in stage.optimizers.values():
        opt.step()
    if stage.after_step is not None:
        stage.after_step(step)
    return dist.mean_over_ranks({"loss": float(loss.detach()), **terms})


class _LossWindow:
    """Running sums of the loss terms over the steps since the last curve row."""

    def __init__(self, state=None):
        state = state or {"steps": 0, "sums": {}}
        self.steps, self.sums = state["steps"], dict(state["sums"])

    def add(self, terms):
        for name, value in terms.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        self.steps += 1

    def row(self, step):
        """The curve row at `step` (the window's mean of each term, and its length); starts a new window."""
        row = {"step": step, "steps_averaged": self.steps, **{k: v / self.steps for k, v in self.sums.items()}}
        self.steps, self.sums = 0, {}
        return row

    def state_dict(self):
        return {"steps": self.steps, "sums": dict(self.sums)}


def save_resume(stage, window, curves, path, step, digest):
    if not dist.is_main():
        return
    checkpoints.save_torch({
        "digest": digest, "step": step,
        "modules": {k: m.state_dict() for k, m in stage.modules.items()},
        "optimizers": {k: o.state_dict() for k, o in stage.optimizers.items()},
        "loss_window": window.state_dict(),
        "curves": list(curves.rows),  # up to `step`: a row is appended once its step is done
    }, path)


def _set_aside(path, kind, tag, why, log):
    """Move the resume state at `path` aside as `kind` with `tag` (rdd.train.resume_files), unloaded (rank 0
    only)."""
    moved = set_aside_path(path, kind, tag)
    path.replace(moved)
    log(f"resume state {path} {why}; moved to {moved}")


def _readable(path, log):
    """The state at `path`, or None once a damaged one is set aside: writes are atomic, so damage comes
    from outside (a full disk, a copy cut short); the run goes on without it and the file is kept for
    a look."""
    try:
        return checkpoints.load_torch(path)
    except checkpoints.CheckpointError as exc:
        _set_aside(path, DAMAGED, int(time.time()), f"cannot be read ({exc})", log)
        return None


def _arrange_resume(path, digest, log):
    """Rank 0's part of resuming: afterwards `path` holds a readable state written for `digest`, which
    is returned, or nothing (None). A state of other settings or inputs is set aside under its digest,
    and one set aside earlier under `digest` comes back, so that settings changed and changed back lose
    no training."""
    if path.exists():
        state = _readable(path, log)
        if state is not None and state.get("digest") == digest:
            return state
        if state is not None:
            _set_aside(path, OTHER_SETTINGS, state.get("digest"), "was written for other settings or inputs", log)
    earlier = set_aside_path(path, OTHER_SETTINGS, digest)
    if earlier.exists():
        earlier.replace(path)
        log(f"resume state {earlier}, set aside earlier, was written for these settings and inputs; moved back")
        if (state := _readable(path, log)) is not None:
            return state
    log(f"no resume state for these settings and inputs in {path.parent}: starting afresh")
    return None


def load_resume(stage, path, digest, log):
    """Restore the state for `digest` (see _arrange_resume); return its step, loss window and curve rows
    (0, an empty window and no rows when there is none)."""
    path = Path(path)
    state = _arrange_resume(path, digest, log) if dist.is_main() else None
    dist.barrier()  # the other processes read what rank 0 left
    if state is None and path.exists():
        state = checkpoints.load_torch(path)
    if state is None:
        return 0, _LossWindow(), []
    for k, m in stage.modules.items():
        m.load_state_dict(state["modules"][k])
    for k, o in stage.optimizers.items():
        o.load_state_dict(state["optimizers"][k])
    log(f"resumed from {path} at step {state['step']}")
    rows = state.get("curves")
    if rows is None:  # a state written before states kept their rows: the folder's file holds them
        old = path.parent / "curves.jsonl"
        lines = old.read_text().splitlines() if old.exists() else []
        rows = [r for r in map(json.loads, lines) if r["step"] <= state["step"]]
    return state["step"], _LossWindow(state.get("loss_window")), rows


class _Curves:
    """Loss-curve rows every `log_every` steps, appended to a JSON-lines file in the resume folder (read
    live); the resume state keeps the rows up to its step, so the file is rewritten from them on resume."""

    def __init__(self, path, rows):
        self.path = Path(path)
        if dist.is_main():
            io.write_bytes("".join(json.dumps(r) + "\n" for r in rows).encode(), self.path)
        self.rows = list(rows)

    def append(self, row):
        self.rows.append(row)
        if dist.is_main():
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")


class _Terminate:
    """Turns SIGTERM (a SLURM time limit, a Snakemake cancel) and SIGINT (Ctrl-C) into a save-and-stop
    before the next step; a second SIGINT interrupts at once, as usual."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received = None
        self.previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum)
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, self.previous[signal.SIGINT])

    def restore(self):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def log_line(message):
    print(message, flush=True)  # logs are read live, through Snakemake's and SLURM's log files


def _batches(loader):
    """(batch, None) for each of the loader's batches; (None, the error) when fetching one fails, then no more."""
    iterator = iter(loader)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except Exception as error:
            yield None, error
            return
        yield batch, None


# What a process brings to the agreement before each step; the largest over the processes is the verdict.
GO, SIGNALLED, LOAD_FAILED = 0, 1, 2


def run(stage, dataset, *, iters, batch_size, seed, resume_dir, digest, checkpoint_every,
        log_every, drop_last=True, loader_options=None, log=log_line):
    """Train `stage` for `iters` steps (each epoch's partial batch dropped or a step of its own);
    return (export payload, curve rows, seconds trained)."""
    resume_dir = Path(resume_dir)
    resume_path = state_path(resume_dir)
    start, window, rows = load_resume(stage, resume_path, digest, log)
    curves = _Curves(resume_dir / "curves.jsonl", rows)
    sampler = StepBatchSampler(len(dataset), batch_size, seed, start, iters, dist.rank(), dist.world_size(),
                               drop_last)
    # The loader's own generator: creating an iterator must not draw from the global
    # RNG, whose state the resume file restores.
    loader = DataLoader(EpochItems(dataset), batch_sampler=sampler, generator=torch.Generator().manual_seed(seed),
                        **(loader_options or {}))
    if start >= iters:
        log(f"[{stage.name}] resume state is already at step {start} of {iters}")
    terminate = _Terminate()
    t0 = timed_from = time.perf_counter()
    timed_steps, done = 0, start

    def stop(verdict, step, load_error):
        # Between steps the state is whole (a failure inside a step may leave it half-updated: never saved).
        save_resume(stage, window, curves, resume_path, done, digest)
        dist.barrier()  # saved before any process exits (torchrun then ends the others)
        if verdict == LOAD_FAILED:
            where = "" if load_error else " on another process"
            log(f"[{stage.name}] loading the batch of step {step + 1} failed{where}: state saved at step {done}")
            raise load_error or RuntimeError(f"another process failed to load its batch of step {step + 1}; "
                                             f"state saved at step {done}")
        why = terminate.received.name if terminate.received else "another process's signal"
        log(f"[{stage.name}] {why}: state saved at step {done}; stopping")
        raise SystemExit(128 + (terminate.received or signal.SIGTERM))  # 143: stopped from outside

    try:
        for step, (batch, load_error) in enumerate(_batches(loader), start=start):
            # One agreement before each step (a one-element MAX all-reduce): after a signal to any process
            # (SLURM's reach them at different moments) or a batch that one of them could not load, every
            # process stops before the same step, with the state of the one before saved.
            verdict = dist.max_over_ranks(LOAD_FAILED if load_error else SIGNALLED if terminate.received else GO)
            if verdict != GO:
                stop(verdict, step, load_error)
            window.add(train_step(stage, batch, step, seed))
            timed_steps += 1
            done = step + 1
            if done % log_every == 0 or done == iters:
                now = time.perf_counter()
                rate = timed_steps / (now - timed_from)
                row = window.row(done)
                curves.append(row)
                log(f"[{stage.name}] step {done}/{iters} mean of {row['steps_averaged']} steps: " +
                    " ".join(f"{k}={v:.4g}" for k, v in row.items() if k not in ("step", "steps_averaged")) +
                    f" ({rate:.2f} it/s, eta {(iters - done) / rate / 60:.1f} min)")
                timed_from, timed_steps = now, 0
            if done % checkpoint_every == 0 or done == iters:
                save_resume(stage, window, curves, resume_path, done, digest)
    finally:
        terminate.restore()
    return stage.export(), curves.rows, time.perf_counter() - t0
