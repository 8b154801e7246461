"""Sampling intervals of FID from the generated images' own features: a bootstrap over images.

With N generated images and Sigma_g = A A^T (A: the centred features over sqrt(N - 1), d x N),
tr sqrtm(Sigma_g Sigma_r) = sum_i sqrt(lambda_i(A^T Sigma_r A)): an N x N eigenproblem instead of
a d x d matrix square root. With the Gram matrices G = X Sigma_r X^T and K = X X^T computed once,
a bootstrap replicate (images drawn with replacement) only double-centres an N x N submatrix, so
hundreds of replicates take seconds at N <= 2048. Above `MAX_GRAM_IMAGES` the d x d form is used
(one eigendecomposition of Sigma_r, then one of sqrt(Sigma_r) Sigma_g sqrt(Sigma_r) per replicate),
with fewer replicates, in float64 on the evaluation's device (rdd.metrics.covariance_fid: a GPU
where the job has one, as KID's and IS's intervals).

The interval is the replicates' spread around the estimate (see `interval`). Replicate r draws its
images from a generator seeded by (seed, r) and N alone. Every model of a study samples the same
seeds in the same order, so replicate r of two models resamples the same sample seeds: the
difference of their replicates is a paired bootstrap of the difference (`difference`).
"""

import numpy as np
# Not scipy.stats: it adds about 0.7 s to the start of every evaluation job (rdd.evaluation's import, 2 CPU cores).
from scipy.special import stdtrit

MAX_GRAM_IMAGES = 2048
REPLICATES = 200           # FID's at N <= MAX_GRAM_IMAGES; KID's at any N (kid_bootstrap.py)
REPLICATES_LARGE_N = 20    # above it (each replicate is a d x d covariance and eigenproblem: at
                           # N = 50,000, d = 2048 on 2 CPU cores 6.4 s in torch, 11.5 s in numpy)
MIN_PERCENTILE_REPLICATES = 100  # fewer: their spread, not their percentiles (see `interval`)
LEVEL = 0.95


def t_quantile(df, level=LEVEL):
    """The Student's t quantile of a two-sided `level` interval with `df` degrees of freedom."""
    return float(stdtrit(df, 0.5 + level / 2.0))


def _double_centred(matrix):
    return matrix - matrix.mean(0, keepdims=True) - matrix.mean(1, keepdims=True) + matrix.mean()


def _trace_sqrt(eigenvalues):
    return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def fid_from_features(features, mu_r, sigma_r):
    """FID of generated `features` [N, d] against reference statistics, through the N x N eigenproblem."""
    x = np.asarray(features, dtype=np.float64)
    return _GramFID(x, mu_r, sigma_r).fid(np.arange(len(x)))


class _GramFID:
    """FID of any resample of the rows of `x`, from Gram matrices computed once (N x N form)."""

    def __init__(self, x, mu_r, sigma_r):
        self.x, self.mu_r = x, np.asarray(mu_r, dtype=np.float64)
        sigma_r = np.asarray(sigma_r, dtype=np.float64)
        self.trace_r = float(np.trace(sigma_r))
        self.gram_r = x @ sigma_r @ x.T  # G = X Sigma_r X^T
        self.gram = x @ x.T              # K = X X^T

    def fid(self, idx):
        n = len(idx)
        mean_term = float(((self.x[idx].mean(0) - self.mu_r) ** 2).sum())
        trace_g = float(np.trace(_double_centred(self.gram[np.ix_(idx, idx)]))) / (n - 1)
        cross = np.linalg.eigvalsh(_double_centred(self.gram_r[np.ix_(idx, idx)]) / (n - 1))
        return mean_term + trace_g + self.trace_r - 2.0 * _trace_sqrt(cross)


def resample_indices(n, replicate, seed=0):
    """The images of bootstrap replicate `replicate`: a function of (seed, replicate, n) only."""
    return np.random.default_rng([seed, replicate, n]).integers(0, n, size=n)


def fid_replicates(features, mu_r, sigma_r, replicates=None, seed=0, device="cpu"):
    """FID of `replicates` bootstrap resamples of the generated images (the reference held fixed);
    above MAX_GRAM_IMAGES images computed on `device`."""
    x = np.asarray(features, dtype=np.float64)
    n = len(x)
    if n < 2:
        raise ValueError(f"a bootstrap of FID needs at least 2 images, got {n}")
    small = n <= MAX_GRAM_IMAGES
    if small:
        scorer = _GramFID(x, mu_r, sigma_r)
    else:
        # Imported here: the report reads this module's intervals without loading torch.
        from rdd.metrics.covariance_fid import CovarianceFID
        scorer = CovarianceFID(x, mu_r, sigma_r, device)
    count = replicates or (REPLICATES if small else REPLICATES_LARGE_N)
    return np.array([scorer.fid(resample_indices(n, r, seed)) for r in range(count)])


def interval(estimate, replicates, level=LEVEL):
    """A `level` interval of the expected FID at this N: the replicates' central percentiles, shifted
    so that their mean falls on `estimate`.

    Resampling with replacement repeats images, and FID rises as distinct images fall, so the raw
    percentiles sit above the estimate. On synthetic Gaussian features with a known expected FID
    (tests/test_metrics.py), the raw percentiles covered it in 31% of draws at d = 16, N = 60 and
    in 0.5% at d = 32, N = 100; the shifted interval in 99% of draws in both (so it is conservative).

    With fewer than MIN_PERCENTILE_REPLICATES replicates (FID above MAX_GRAM_IMAGES images) the
    2.5% and 97.5% points of so few fall short: from 20 normal replicates they make an 89% interval
    on average (tests/test_metrics.py). The interval is then `estimate` ± Student's t (R - 1 degrees
    of freedom) times their standard deviation, 95% on average, symmetric (the bootstrap of FID at
    many images is close to normal)."""
    replicates = np.asarray(replicates, dtype=np.float64)
    if len(replicates) < 2:
        raise ValueError(f"an interval needs at least 2 bootstrap replicates, got {len(replicates)}")
    if len(replicates) < MIN_PERCENTILE_REPLICATES:
        half = t_quantile(len(replicates) - 1, level) * replicates.std(ddof=1)
        return float(estimate - half), float(estimate + half)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(replicates, [tail, 100.0 - tail]) - replicates.mean()
    return float(estimate + low), float(estimate + high)


def interval_method(count):
    """How `interval` turns `count` replicates into an interval, in words (kept in metric records)."""
    if count < MIN_PERCENTILE_REPLICATES:
        return f"the estimate ± Student's t ({count - 1} degrees of freedom) x the replicates' standard deviation"
    return "percentiles re-centred on the estimate"


def difference(first, second, level=LEVEL):
    """FID(second) - FID(first), each the mean over its evaluation seeds, with a `level` interval.

    `first`, `second`: {image seed range: (FID, its bootstrap replicates)}, one item per evaluation
    seed. Replicate r of the difference is the mean of second's replicates r minus the mean of
    first's. Where both evaluated the same image seeds, replicate r resamples the same seeds in both
    (see the module's note): the interval is paired, and the noise the two share cancels. Otherwise
    the two resamples are of different images, hence independent, and the same formula gives the
    unpaired interval.
    """
    counts = {len(reps) for side in (first, second) for _, reps in side.values()}
    if not first or not second or len(counts) != 1:
        raise ValueError("each side needs at least one evaluation, all with the same number of replicates")
    mean = {name: (np.mean([fid for fid, _ in side.values()]),
                   np.mean([np.asarray(reps, dtype=np.float64) for _, reps in side.values()], axis=0))
            for name, side in (("first", first), ("second", second))}
    estimate = float(mean["second"][0] - mean["first"][0])
    low, high = interval(estimate, mean["second"][1] - mean["first"][1], level)
    return {"estimate": estimate, "low": low, "high": high, "paired": set(first) == set(second),
            "half_width": (high - low) / 2.0}


def images_needed(half_width, estimate, num_images):
    """Images per evaluation at which an interval of `half_width` at `num_images` would shrink to
    |estimate| (the half-width falling as 1 / sqrt(N)); None when the estimate is 0."""
    if estimate == 0:
        return None
    return int(np.ceil(num_images * (half_width / abs(estimate)) ** 2))
