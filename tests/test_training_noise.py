"""Intervals over training seeds (rdd.metrics.combined): against textbook formulas where one kind of
noise is absent, and their coverage on a synthetic case with a known answer."""

import math

import numpy as np
import pytest
from scipy import stats

from rdd.metrics import bootstrap, combined

SEEDS = (0, 99)  # an image seed range: every replicate sampled the same seeds


def _side(values, reps):
    return {(r, SEEDS): (value, rep) for r, (value, rep) in enumerate(zip(values, reps))}


def test_without_sampling_noise_the_interval_is_students_t_over_the_training_seeds():
    values = [10.0, 12.5, 11.0, 14.0]
    side = _side(values, [np.full(50, v) for v in values])
    found = combined.cell_interval(side)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert (found["low"], found["high"]) == pytest.approx((low, high), rel=1e-12)
    assert found["training"]["sd"] == pytest.approx(np.std(values, ddof=1))


def test_identical_replicates_give_the_sampling_interval_alone():
    reps = np.random.default_rng(0).normal(20.0, 1.0, 200)
    side = _side([20.3, 20.3, 20.3], [reps, reps, reps])
    found = combined.cell_interval(side)
    assert found["training"]["sd"] == 0.0
    assert (found["low"], found["high"]) == bootstrap.interval(20.3, reps)


def test_one_replicate_is_the_sampling_interval_and_says_it_has_no_training_spread():
    reps = np.random.default_rng(1).normal(5.0, 0.5, 200)
    found = combined.cell_interval(_side([5.1], [reps]))
    assert found["training"] == {"seeds": 1, "sd": None, "half_width": 0.0, "between_sd": None, "sampling_sd": None}
    assert (found["low"], found["high"]) == bootstrap.interval(5.1, reps)


def test_sampling_noise_the_replicates_do_not_share_is_not_counted_as_training_noise():
    """Replicates whose values differ by exactly their own sampling noise: no training variance."""
    rng = np.random.default_rng(2)
    spreads, count = [], 400
    for _ in range(count):
        own = rng.normal(0.0, 1.0, (3, 300))  # each replicate's sampling noise, independent
        values = 50.0 + rng.normal(0.0, 1.0, 3)  # values scattered by that much noise only
        spreads.append(combined.training_spread(_side(values, 50.0 + own))["sd"] ** 2)
    # sigma_T^2 = max(0, s^2 - 1) with s^2 ~ chi2_2 / 2: its mean is exp(-1) (no training noise would give
    # about twice s^2's mean, 1, if the sampling part were not removed).
    assert np.mean(spreads) == pytest.approx(math.exp(-1), abs=0.08)


def test_difference_reduces_to_the_bootstrap_difference_with_one_replicate_per_side():
    rng = np.random.default_rng(3)
    a = {(0, SEEDS): (30.0, rng.normal(30.0, 1.0, 200))}
    b = {(0, SEEDS): (33.0, rng.normal(33.0, 1.0, 200))}
    found, plain = combined.difference(a, b), bootstrap.difference(a, b)
    assert (found["low"], found["high"], found["paired"]) == (plain["low"], plain["high"], True)
    assert found["training_half_width"] == 0.0 and found["training_seeds"] == (1, 1)


def test_difference_without_sampling_noise_adds_each_sides_t_half_width_in_quadrature():
    first, second = [10.0, 11.0, 13.0], [14.0, 17.0]
    d = combined.difference(_side(first, [np.full(20, v) for v in first]),
                            _side(second, [np.full(20, v) for v in second]))
    naive = [stats.t.ppf(0.975, len(v) - 1) * np.std(v, ddof=1) / math.sqrt(len(v)) for v in (first, second)]
    estimate = np.mean(second) - np.mean(first)
    half = math.sqrt(naive[0] ** 2 + naive[1] ** 2)
    assert (d["estimate"], d["low"], d["high"]) == pytest.approx((estimate, estimate - half, estimate + half))
    assert d["training_seeds"] == (3, 2) and not d["paired"]


def test_difference_paired_on_training_seeds_is_students_paired_t_interval():
    """Both sides trained with the same training seeds and no sampling noise: the interval is the
    textbook paired t interval of the per-seed differences (scipy's ttest_rel), not the unpaired one."""
    first, second = [10.0, 11.0, 13.0, 12.0], [14.5, 15.0, 17.5, 16.0]
    d = combined.difference(_side(first, [np.full(20, v) for v in first]),
                            _side(second, [np.full(20, v) for v in second]))
    expected = stats.ttest_rel(second, first).confidence_interval(0.95)
    assert (d["low"], d["high"]) == pytest.approx((expected.low, expected.high), rel=1e-12)
    assert d["paired_training"] and d["training_seeds"] == (4, 4)
    unpaired = combined.difference(_side(first, [np.full(20, v) for v in first]),
                                   _side(second[:3], [np.full(20, v) for v in second[:3]]))
    assert not unpaired["paired_training"]  # other training seeds: each side's spread, in quadrature


def test_a_run_compared_with_itself_differs_by_zero_with_no_interval():
    """A variant that trains exactly like the main run holds the main run's records: the difference is
    0 at every training seed and every bootstrap draw, whatever the training spread of either."""
    rng = np.random.default_rng(5)
    values = [40.0, 47.0, 43.5]
    side = _side(values, [v + rng.normal(0.0, 2.0, 200) for v in values])
    d = combined.difference(side, side)
    assert (d["estimate"], d["low"], d["high"]) == (0.0, 0.0, 0.0)
    assert combined.training_spread(side)["sd"] > 2  # each side alone has training noise


def test_pairing_on_training_seeds_removes_the_noise_a_seed_gives_both_methods():
    """Seeds that move both methods alike (the same data order and time draws): by Monte Carlo, the
    paired interval of the difference covers the true difference in about 95% of trials and is far
    narrower than the one that treats the two sides' trainings as independent."""
    rng = np.random.default_rng(6)
    true_gap, seeds, trials = 1.0, 4, 400
    covered, widths, independent_widths = 0, [], []
    for _ in range(trials):
        by_seed = rng.normal(0.0, 3.0, seeds)  # what a training seed does to both methods
        first = 50.0 + by_seed + rng.normal(0.0, 0.5, seeds)
        second = 50.0 + true_gap + by_seed + rng.normal(0.0, 0.5, seeds)
        sides = [_side(v, [np.full(10, x) for x in v]) for v in (first, second)]
        d = combined.difference(*sides)
        covered += d["low"] <= true_gap <= d["high"]
        widths.append(d["high"] - d["low"])
        independent = math.hypot(*(combined.training_spread(s)["half_width"] for s in sides))
        independent_widths.append(2 * independent)
    assert covered / trials == pytest.approx(0.95, abs=0.03)
    assert np.median(widths) < 0.3 * np.median(independent_widths)


def test_seeds_needed_shrinks_the_training_half_width_below_the_room_left():
    d = {"estimate": 5.0, "sampling_half_width": 3.0, "training_half_width": 8.0, "training_seeds": (2, 2)}
    assert combined.seeds_needed(d) == math.ceil(2 * 64 / 16)  # 8 / sqrt(8 / 2) = 4 = sqrt(25 - 9)
    assert combined.seeds_needed({**d, "sampling_half_width": 6.0}) is None  # more images first
    assert combined.seeds_needed({**d, "training_half_width": 0.0}) is None


def test_interval_covers_the_expected_fid_over_training_and_sampling_noise():
    """A known answer: E[FID at N] over both training outcomes (a random shift of the generator's mean)
    and image draws, by Monte Carlo. Three replicates sampling the same image noise: the combined
    interval covers it in about 95% of trials; the sampling interval alone, far less often."""
    d, n, replicates, tau = 8, 60, 3, 0.3
    rng = np.random.default_rng(0)
    mixing = rng.standard_normal((d, d)) / np.sqrt(d)
    mu_r, sigma_r, mu_g = np.zeros(d), mixing @ mixing.T + 0.1 * np.eye(d), 0.3 * rng.standard_normal(d)
    fid = lambda x: bootstrap.fid_from_features(x, mu_r, sigma_r)  # noqa: E731
    trained = lambda: mu_g + tau * rng.standard_normal(d)  # noqa: E731 (one training seed's outcome)
    images = lambda: rng.standard_normal((n, d)) @ mixing.T  # noqa: E731
    expected = np.mean([fid(trained() + images()) for _ in range(2000)])
    covered = sampling_covered = 0
    trials = 60
    for trial in range(trials):
        noise = images()
        side = {}
        for r in range(replicates):
            x = trained() + noise
            side[(r, SEEDS)] = (fid(x), bootstrap.fid_replicates(x, mu_r, sigma_r, replicates=100, seed=trial))
        found = combined.cell_interval(side)
        covered += found["low"] <= expected <= found["high"]
        sampling_covered += found["sampling_low"] <= expected <= found["sampling_high"]
    assert covered / trials >= 0.88, covered
    assert sampling_covered / trials <= 0.8, sampling_covered
