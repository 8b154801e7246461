"""Aggregate one metric over several sampling seeds: mean, standard deviation, bootstrap CI."""

import numpy as np

N_BOOT = 10_000


def aggregate_seeds(values, n_boot=N_BOOT, seed=0, confidence=0.95):
    """Mean, sample std (ddof=1) and a seeded percentile-bootstrap CI of the mean over per-seed values."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0 or not np.isfinite(values).all():
        raise ValueError(f"aggregate_seeds needs a non-empty list of finite numbers, got {values.tolist()}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    summary = {
        "n": len(values),
        "values": values.tolist(),
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if len(values) > 1 else None,
        "std_ddof": 1,
        "ci_method": "percentile bootstrap of the mean",
        "ci_level": confidence,
        "n_boot": n_boot,
        "boot_seed": seed,
    }
    if len(values) == 1:
        summary["ci_low"] = summary["ci_high"] = None
        summary["ci_note"] = "one seed: no spread to estimate"
        return summary
    rng = np.random.default_rng(seed)
    boot_means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
    tail = (1 - confidence) / 2
    summary["ci_low"], summary["ci_high"] = (float(q) for q in np.quantile(boot_means, [tail, 1 - tail]))
    return summary
