"""The training loop every stage shares: resume state, loss curves, export.

Resume state (all modules, optimisers, RNG states of every rank, the step) is
written atomically every `checkpoint_every` steps and on SIGTERM, to a folder
kept apart from the exported model. A run started again with the same
settings continues from it; state written for other settings is set aside.
"""

import json
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as torch_dist
from torch.utils.data import DataLoader

from rdd import checkpoints, dist, io
from rdd.train.batches import EpochItems, StepBatchSampler


@dataclass
class Stage:
    """What one training run is made of; the loop does the rest."""

    name: str
    modules: dict                      # name -> nn.Module, all kept in the resume state
    optimizers: dict                   # name -> torch.optim.Optimizer
    lr_factor: Callable[[int], float]  # multiplier of every optimiser's base lr at a step
    train_step: Callable               # (batch, step) -> dict of float loss terms
    export: Callable[[], dict]         # the exported model payload
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


def _rng_state():
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return {"cpu": torch.get_rng_state(), "cuda": cuda}


def _gather_rng():
    state = _rng_state()
    if not torch_dist.is_initialized():
        return [state]
    states = [None] * dist.world_size()
    torch_dist.all_gather_object(states, state)
    return states


def save_resume(stage, path, step, digest):
    states = _gather_rng()
    if not dist.is_main():
        return
    checkpoints.save_torch({
        "settings_digest": digest, "step": step,
        "modules": {k: m.state_dict() for k, m in stage.modules.items()},
        "optimizers": {k: o.state_dict() for k, o in stage.optimizers.items()},
        "rng": states,
    }, path)


def load_resume(stage, path, digest, log):
    """Restore the state at `path`; return its step (0 when there is none for these settings)."""
    path = Path(path)
    if not path.exists():
        return 0
    try:
        state = checkpoints.load_torch(path)
    except checkpoints.CheckpointError as exc:
        # Writes are atomic, so this is damage from outside (a full disk, a copy cut short): the run
        # starts afresh rather than fail, and the damaged file is kept for a look.
        bad = path.with_name(path.name + f".corrupt-{int(time.time())}")
        if dist.is_main():
            path.replace(bad)
        log(f"resume state {path} cannot be read ({exc}); moved to {bad}, starting afresh")
        return 0
    if state.get("settings_digest") != digest:
        stale = path.with_name(path.name + f".stale-{state.get('settings_digest')}")
        if dist.is_main():
            path.replace(stale)
        log(f"resume state {path} was written for other settings; moved to {stale}, starting afresh")
        return 0
    for k, m in stage.modules.items():
        m.load_state_dict(state["modules"][k])
    for k, o in stage.optimizers.items():
        o.load_state_dict(state["optimizers"][k])
    rng = state["rng"]
    if len(rng) != dist.world_size():
        raise RuntimeError(f"{path} holds {len(rng)} ranks' RNG states; this run has {dist.world_size()}")
    mine = rng[dist.rank()]
    torch.set_rng_state(mine["cpu"])
    if mine["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(mine["cuda"])
    log(f"resumed from {path} at step {state['step']}")
    return state["step"]


class _Curves:
    """Loss terms every `log_every` steps, appended to a JSON-lines file in the resume folder."""

    def __init__(self, path, start_step):
        self.path = Path(path)
        rows = []
        if self.path.exists() and start_step > 0:
            rows = [r for r in map(json.loads, self.path.read_text().splitlines()) if r["step"] <= start_step]
        if dist.is_main():
            io.write_bytes("".join(json.dumps(r) + "\n" for r in rows).encode(), self.path)
        self.rows = rows

    def append(self, row):
        self.rows.append(row)
        if dist.is_main():
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")


class _Terminate:
    """Turns SIGTERM (a SLURM time limit, a Snakemake cancel) into a save-and-stop at the next step."""

    def __init__(self):
        self.requested = False
        self.previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        self.requested = True

    def restore(self):
        signal.signal(signal.SIGTERM, self.previous)


def log_line(message):
    print(message, flush=True)  # logs are read live, through Snakemake's and SLURM's log files


def run(stage, dataset, *, iters, batch_size, seed, resume_dir, digest, checkpoint_every,
        log_every, num_workers=0, log=log_line):
    """Train `stage` for `iters` steps; return (export payload, curve rows, seconds trained)."""
    resume_dir = Path(resume_dir)
    resume_path = resume_dir / "resume.pt"
    start = load_resume(stage, resume_path, digest, log)
    if start == 0:
        torch.manual_seed(seed * 1000 + dist.rank())
    curves = _Curves(resume_dir / "curves.jsonl", start)
    sampler = StepBatchSampler(len(dataset), batch_size, seed, start, iters, dist.rank(), dist.world_size())
    # The loader's own generator: creating an iterator must not draw from the global
    # RNG, whose state the resume file restores.
    loader = DataLoader(EpochItems(dataset), batch_sampler=sampler, num_workers=num_workers,
                        generator=torch.Generator().manual_seed(seed))
    if start >= iters:
        log(f"[{stage.name}] resume state is already at step {start} of {iters}")
    terminate = _Terminate()
    t0 = window_t = time.perf_counter()
    window_steps = 0
    try:
        for step, batch in enumerate(loader, start=start):
            stage.set_lr(step)
            terms = stage.train_step(batch, step)
            window_steps += 1
            done = step + 1
            if done % log_every == 0 or done == iters:
                now = time.perf_counter()
                rate = window_steps / (now - window_t)
                curves.append({"step": done, **terms})
                log(f"[{stage.name}] step {done}/{iters} " +
                    " ".join(f"{k}={v:.4g}" for k, v in terms.items()) +
                    f" ({rate:.2f} it/s, eta {(iters - done) / rate / 60:.1f} min)")
                window_t, window_steps = now, 0
            if done % checkpoint_every == 0 or done == iters or terminate.requested:
                save_resume(stage, resume_path, done, digest)
            if terminate.requested:
                log(f"[{stage.name}] SIGTERM: state saved at step {done}; stopping")
                raise SystemExit(143)
    finally:
        terminate.restore()
    return stage.export(), curves.rows, time.perf_counter() - t0
