"""The 95% interval of a proportion measured on n items (a classifier's test accuracy).

Wilson's score interval: the proportions p0 for which the observed fraction lies within z
standard errors sqrt(p0 (1 - p0) / n) of p0. Unlike the normal approximation around the
observed fraction, it stays inside [0, 1] and does not collapse at 0 or 1.
"""

import math
from statistics import NormalDist

from rdd.metrics.bootstrap import LEVEL


def wilson_interval(fraction, n, level=LEVEL):
    """(low, high) of the proportion behind `fraction` observed on `n` items."""
    if not (isinstance(n, int) and n >= 1) or not 0.0 <= fraction <= 1.0:
        raise ValueError(f"wilson_interval needs a fraction in [0, 1] and n >= 1, got {fraction!r}, {n!r}")
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    centre = (fraction + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(fraction * (1 - fraction) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)
