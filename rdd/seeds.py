"""Seeds: the per-image noise seeds of the command line (`--seeds`) and of the workflow's blocks, and
the bounds of every seed, training seeds included.

Each generated image has a seed of its own (rdd.ddim.initial_noise), so a seed names one image
whatever the batch; evaluation seed s of a study is the block s*N ... (s+1)*N-1 of N images.
"""

import re

# Seeds are stored as numpy int64 beside the images, and torch generators take any of them.
MAX_SEED = 2**63 - 1
# One samples file holds every image in memory (ten million CIFAR-10-sized images: 31 GB).
MAX_SEEDS = 10_000_000
# A training run's seed: the data order's generator takes seed * 1_000_003 + epoch, which must fit
# torch's 64 bits; 2**32 - 1 leaves room and is the usual range of seeds.
MAX_TRAINING_SEED = 2**32 - 1

_RANGE = re.compile(r"(\d+)(?:-(\d+))?", re.ASCII)


def parse_seeds(text):
    """'0-99' or '0,5,7' or '0-9,20-29' -> list of ints (non-negative, each at most once)."""
    ranges = []
    for part in text.split(","):
        found = _RANGE.fullmatch(part.strip())
        if not found or int(found[2] or found[1]) < int(found[1]):
            raise ValueError(f"--seeds: {text!r} is not a list of seeds (allowed: a-b ranges with a <= b and "
                             "non-negative integers, separated by commas, e.g. 0-99 or 0,5,7)")
        ranges.append((int(found[1]), int(found[2] or found[1])))
    if max(high for _, high in ranges) > MAX_SEED:
        raise ValueError(f"--seeds: {text!r} names a seed above {MAX_SEED} (2**63 - 1), the largest allowed")
    count = sum(high - low + 1 for low, high in ranges)
    if count > MAX_SEEDS:
        raise ValueError(f"--seeds: {text!r} names {count:,} seeds; one command samples at most {MAX_SEEDS:,} "
                         "(a samples file holds all its images in memory): split them over several")
    seeds = [seed for low, high in ranges for seed in range(low, high + 1)]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds: {text!r} names a seed more than once")
    return seeds


def block(seed, num_samples):
    """The image seeds of evaluation seed `seed`, as `--seeds` text: s*N ... (s+1)*N-1."""
    return f"{seed * num_samples}-{(seed + 1) * num_samples - 1}"
