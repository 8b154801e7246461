"""The classifier's input normalisation: per-dataset channel statistics and applying them.

A normalisation is a record `{"mean": [...], "std": [...]}` with one value per
channel, for images in [0, 1]: the classifier sees `(x01 - mean) / std`. Our
images are in [-1, 1] (x01 = (x + 1) / 2); "minus1_1" (mean = std = 0.5) feeds
them unchanged.

No torch import: the settings check (rdd.train.checks) reads the records here.
"""

INPUT_NORMS = ("mean_std", "minus1_1")

# Channel mean and std of images in [0, 1], by dataset name.
CHANNEL_STATS = {
    # The released CIFAR-10 classifier's constants, as its code has them.
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    # Computed once from the 60,000 training images at their native 28x28: mean and
    # (population) std of all pixels / 255 (0.28604, 0.35302).
    "fashion_mnist": ((0.2860,), (0.3530,)),
}


def input_norm(kind, data):
    """The normalisation record of `kind` ("mean_std" or "minus1_1") for dataset spec `data`."""
    channels = data["channels"]
    if kind == "minus1_1":
        return {"mean": [0.5] * channels, "std": [0.5] * channels}
    if kind != "mean_std":
        raise ValueError(f"setting 'train.input_norm' must be one of {', '.join(INPUT_NORMS)}, got {kind!r}")
    if data["name"] not in CHANNEL_STATS:
        raise ValueError(f"setting 'train.input_norm': mean_std has no channel statistics for dataset "
                         f"{data['name']!r} (known: {', '.join(sorted(CHANNEL_STATS))}); use minus1_1")
    mean, std = CHANNEL_STATS[data["name"]]
    if len(mean) == 1:  # a grey dataset read with 3 channels repeats its one channel
        mean, std = mean * channels, std * channels
    return {"mean": list(mean), "std": list(std)}


def normalize_input(x, norm):
    """Images x in [-1, 1] (NCHW) -> (x01 - mean) / std, as the classifier with `norm` was trained.

    Computed as x * 1 / (2 std) + (0.5 - mean) / std, which is x itself for minus1_1.
    """
    # In double precision (Python floats), then rounded once to x's dtype.
    scale = [1 / (2 * s) for s in norm["std"]]
    shift = [(0.5 - m) / s for m, s in zip(norm["mean"], norm["std"])]
    shape = (1, -1, 1, 1)
    return x * x.new_tensor(scale).view(shape) + x.new_tensor(shift).view(shape)
