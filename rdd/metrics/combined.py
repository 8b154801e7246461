"""Intervals of a cell trained with several training seeds: sampling and training noise together.

A cell (method, steps) may hold R training replicates (its rounds trained with seeds seed, seed + 1,
...), each evaluated at the same image seeds (as every model of a study). Its value is the mean over
replicates; that mean carries two kinds of noise:

- sampling noise, from the images: the bootstrap replicates of every evaluation (rdd.metrics.bootstrap),
  averaged over the replicates draw by draw. Draw k resamples the same image seeds in every replicate,
  so the noise the replicates share is counted once, as it is in their mean;
- training noise, from the training seed: the spread of the replicates' values s^2 contains it and the
  part of the sampling noise in which the replicates differ. That part is the mean over draws of the
  replicates' spread of their centred bootstrap replicates; the training variance is the excess,
  sigma_T^2 = max(0, s^2 - that part) (a method-of-moments split, as in a random-effects ANOVA). Its
  share of the mean's interval is t_{R-1} sigma_T / sqrt(R), with Student's t for R - 1 degrees of
  freedom: few seeds, wide interval.

The two halves of the sampling interval (it is not symmetric) and the training half-width add in
quadrature. With one replicate the interval is the sampling interval alone, and says so.

A difference of two cells trained with the same training seeds (every method and variant of a study)
is paired on them: the training noise is that of the per-seed differences, found the same way, so
what a seed does to both cells cancels, and a cell compared with itself differs by 0 with no spread.
"""

import math

import numpy as np

from rdd.metrics import bootstrap


def _by_replicate(side):
    """{replicate: (value, replicates)}, each the mean over that replicate's evaluation seeds.

    `side`: {(replicate, image seed range): (value, bootstrap replicates)}."""
    grouped = {}
    for (replicate, _), (value, reps) in side.items():
        grouped.setdefault(replicate, []).append((value, np.asarray(reps, dtype=np.float64)))
    return {r: (float(np.mean([v for v, _ in items])), np.mean([b for _, b in items], axis=0))
            for r, items in sorted(grouped.items())}


def training_spread(side, level=bootstrap.LEVEL):
    """The training noise of one cell: {'seeds': R, 'sd': sigma_T (None with one seed), 'half_width':
    t_{R-1} sigma_T / sqrt(R) (0 with one seed), 'between_sd': s, 'sampling_sd': the sampling part of s}."""
    replicates = _by_replicate(side)
    count = len(replicates)
    if count < 2:
        return {"seeds": count, "sd": None, "half_width": 0.0, "between_sd": None, "sampling_sd": None}
    values = np.array([v for v, _ in replicates.values()])
    draws = np.stack([b - b.mean() for _, b in replicates.values()])  # R x K, centred per replicate
    between = float(values.var(ddof=1))
    sampling = float(draws.var(axis=0, ddof=1).mean())
    sd = math.sqrt(max(0.0, between - sampling))
    t = bootstrap.t_quantile(count - 1, level)
    return {"seeds": count, "sd": sd, "half_width": t * sd / math.sqrt(count), "between_sd": math.sqrt(between),
            "sampling_sd": math.sqrt(sampling)}


def t_interval(values, level=bootstrap.LEVEL):
    """Student's t interval of the mean of per-replicate `values`, for a metric without bootstrap
    replicates (its spread then holds training and sampling noise together)."""
    values = np.asarray(values, dtype=np.float64)
    half = bootstrap.t_quantile(len(values) - 1, level) * values.std(ddof=1) / math.sqrt(len(values))
    return float(values.mean() - half), float(values.mean() + half)


def _mean_of(side):
    replicates = _by_replicate(side)
    return (float(np.mean([v for v, _ in replicates.values()])),
            np.mean([b for _, b in replicates.values()], axis=0))


def _widened(estimate, low, high, training_half_width):
    below, above = estimate - low, high - estimate
    return (estimate - math.hypot(below, training_half_width), estimate + math.hypot(above, training_half_width))


def cell_interval(side, level=bootstrap.LEVEL):
    """The mean over training replicates of one cell with its interval: {'estimate', 'low', 'high',
    'sampling_low', 'sampling_high', 'training': training_spread(side)}."""
    estimate, reps = _mean_of(side)
    sampling_low, sampling_high = bootstrap.interval(estimate, reps, level)
    training = training_spread(side, level)
    low, high = _widened(estimate, sampling_low, sampling_high, training["half_width"])
    return {"estimate": estimate, "low": low, "high": high, "sampling_low": sampling_low,
            "sampling_high": sampling_high, "training": training}


def _per_replicate_difference(first, second):
    """{(replicate, 'difference'): (value, replicates)} of second minus first, replicate by replicate
    and bootstrap draw by draw (the same image seeds resampled in a draw)."""
    a, b = _by_replicate(first), _by_replicate(second)
    return {(r, "difference"): (b[r][0] - a[r][0], b[r][1] - a[r][1]) for r in a}


def difference(first, second, level=bootstrap.LEVEL):
    """value(second) - value(first), each the mean over its training replicates and evaluation seeds,
    with an interval holding both kinds of noise: the paired (same image seeds) or unpaired bootstrap
    of the difference (rdd.metrics.bootstrap.difference), widened by the training noise.

    The training noise of the difference: where both sides were trained with the same training seeds,
    the spread of the per-seed differences (paired on training seeds, `training_spread` of them: a run
    compared with itself has none); otherwise each side's, independent trainings, their half-widths
    added in quadrature.

    `first`, `second`: {(replicate, image seed range): (value, bootstrap replicates)}. The result is
    bootstrap.difference's with 'training_half_width', 'sampling_half_width', 'training_seeds'
    ((R_first, R_second)) and 'paired_training' added; with one replicate on both sides it is
    bootstrap.difference's.
    """
    sampling = bootstrap.difference(first, second, level)
    trained = [{replicate for replicate, _ in side} for side in (first, second)]
    # Replicate r of either side used training seed seed + r: the differences are training-noise draws.
    paired_training = trained[0] == trained[1] and len(trained[0]) > 1
    if paired_training:
        training = training_spread(_per_replicate_difference(first, second), level)["half_width"]
    else:
        training = math.hypot(*(training_spread(side, level)["half_width"] for side in (first, second)))
    low, high = _widened(sampling["estimate"], sampling["low"], sampling["high"], training)
    return {**sampling, "low": low, "high": high, "half_width": (high - low) / 2.0,
            "sampling_half_width": sampling["half_width"], "training_half_width": training,
            "training_seeds": tuple(map(len, trained)), "paired_training": paired_training}


def seeds_needed(d):
    """Training seeds per method at which the training part of `d`'s interval (a difference) would let
    it exclude zero, its half-width falling as 1 / sqrt(R) (Student's t held at its present value);
    None when the sampling part alone already spans the estimate, or no training noise was measured."""
    room = d["estimate"] ** 2 - d["sampling_half_width"] ** 2
    if d["training_half_width"] == 0 or room <= 0:
        return None
    seeds = max(d["training_seeds"])
    return max(seeds + 1, int(math.ceil(seeds * d["training_half_width"] ** 2 / room)))
