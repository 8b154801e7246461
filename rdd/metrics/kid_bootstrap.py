"""Sampling interval of KID: its unbiased MMD^2 over bootstrap resamples of the generated images.

MMD^2 of N generated and M reference images = sum_{p != q} k(g_p, g_q) / (N (N - 1))
- 2 sum_{p, a} k(g_p, r_a) / (N M) + sum_{a != b} k(r_a, r_b) / (M (M - 1)), with torch-fidelity's
KID kernel k(x, y) = (x . y / d + 1) ** 3. A resample that draws image p c_p times (sum_p c_p = N) has

    generated term = (c^T K c - sum_p c_p k(g_p, g_p)) / (N (N - 1)),
    cross term     = 2 sum_p c_p m_p / N,   m_p = sum_a k(g_p, r_a) / M,

and the reference term does not change, so it is left out (every use of the replicates centres it
away). With the counts of all replicates as the rows of C, the N x N kernel matrix K is computed in
blocks of rows, once, for all replicates, and the N x M cross kernel in blocks of reference images:
memory stays bounded at any N and M (50,000 and 1.28 million at paper scale), and the work is one
pass over each, done in float64 on the evaluation's device. The work grows as N (N + M): measured on
2 CPU cores with 200 replicates of 2048-d features, 0.8 s at N = M = 2048 and 4.2 s at 5,000.
"""

import numpy as np
import torch
from torch_fidelity.defaults import DEFAULTS

from rdd.metrics.bootstrap import REPLICATES, resample_indices

# The kernel of torch-fidelity's KID, whose estimate the interval surrounds (gamma None: 1 / d).
KERNEL_DEGREE, KERNEL_GAMMA, KERNEL_COEF0 = (DEFAULTS[f"kid_kernel_poly_{k}"] for k in ("degree", "gamma", "coef0"))
BLOCK_ELEMENTS = 1 << 25  # float64 elements of one block of kernel rows (256 MiB)


def polynomial_kernel(x, y):
    """KID's kernel between the rows of `x` and of `y` (torch tensors)."""
    return _kernel_of(x @ y.T, x.shape[1])


def _kernel_of(inner_products, d):
    gamma = KERNEL_GAMMA if KERNEL_GAMMA is not None else 1.0 / d
    return (inner_products * gamma + KERNEL_COEF0) ** KERNEL_DEGREE


def kid_terms(features, ref_features, counts, device="cpu", block_elements=BLOCK_ELEMENTS):
    """The generated and cross terms of MMD^2 (see the module's note) for each row of `counts`
    [R, N] (how often each generated image is drawn; a row of ones is the sample itself), with at
    most `block_elements` kernel values held at once. The reference features stay where they are
    and go to the device a block at a time (ImageNet's are 1.28 million)."""
    device = torch.device(device)
    x = torch.as_tensor(np.asarray(features), device=device, dtype=torch.float64)
    c = torch.as_tensor(np.asarray(counts), device=device, dtype=torch.float64)
    n = len(x)
    if c.ndim != 2 or c.shape[1] != n:
        raise ValueError(f"counts must be [replicates, {n}], got {tuple(c.shape)}")
    rows = max(1, block_elements // n)  # a block is [rows, N] or [N, rows]
    quadratic = torch.zeros(len(c), device=device, dtype=torch.float64)
    for start in range(0, n, rows):
        block = slice(start, start + rows)
        quadratic += ((polynomial_kernel(x[block], x) @ c.T) * c[:, block].T).sum(0)  # these rows' share of c^T K c
    to_ref = torch.zeros(n, device=device, dtype=torch.float64)  # m_p, summed over reference blocks
    for start in range(0, len(ref_features), rows):
        r = torch.as_tensor(np.asarray(ref_features[start:start + rows]), device=device, dtype=torch.float64)
        to_ref += polynomial_kernel(x, r).sum(1)
    to_ref /= len(ref_features)
    diagonal = _kernel_of((x * x).sum(1), x.shape[1])  # k(g_p, g_p)
    values = (quadratic - c @ diagonal) / (n * (n - 1)) - 2.0 * (c @ to_ref) / n
    return values.cpu().numpy()


def resample_counts(n, replicates=REPLICATES, seed=0):
    """[replicates, n]: how often each image is drawn by bootstrap replicate r (FID's draws)."""
    return np.stack([np.bincount(resample_indices(n, rep, seed), minlength=n) for rep in range(replicates)])


def kid_replicates(features, ref_features, replicates=REPLICATES, seed=0, device="cpu"):
    """Bootstrap replicates of KID, up to its constant reference-only term: the generated images
    resampled as FID's replicates resample them (the same draws for the same seed), the reference
    fixed; `bootstrap.interval` centres them on the estimate."""
    if len(features) < 2:
        raise ValueError(f"a bootstrap of KID needs at least 2 images, got {len(features)}")
    return kid_terms(features, ref_features, resample_counts(len(features), replicates, seed), device)
