"""The networks' arguments: their defaults and checks, and the classifier presets.

No torch here: rdd.settings.validate (the command line and the workflow's plan, for every stage)
checks a network's arguments without building it or importing the library that would.
"""

import inspect

from rdd.values import brief, is_int, is_number

# DenseNet-BC presets: name -> DenseNet arguments.
CLASSIFIERS = {
    "densenet201": dict(block_config=(6, 12, 48, 32), growth_rate=32),  # the papers' CIFAR-10 classifier
    "densenet121": dict(block_config=(6, 12, 24, 16), growth_rate=32),
    # CPU default: F is [B, 32, 8, 8] at 32x32; bottleneck 2x growth (not 4x) for speed
    "densenet_small": dict(block_config=(2, 2, 2), growth_rate=8, bn_size=2),
}


def _typed(kind, **values):
    """ValueError naming the first of `values` that is not of `kind` (a key of _KINDS), before a
    comparison could raise a TypeError that names no argument."""
    for name, value in values.items():
        if not _KINDS[kind](value):
            raise ValueError(f"{name} must be {kind}, got {value!r}")


_KINDS = {"an integer": is_int, "a number": is_number,
          "a list of integers": lambda v: isinstance(v, (list, tuple)) and all(map(is_int, v))}


def unet_config(img_resolution, in_channels, ch=128, ch_mult=(1, 2, 2, 2), attn=(1,), num_res_blocks=2,
                dropout=0.1, num_classes=0):
    """UNet's arguments, complete; ValueError for any it cannot be built with."""
    _typed("an integer", img_resolution=img_resolution, in_channels=in_channels, ch=ch,
           num_res_blocks=num_res_blocks, num_classes=num_classes)
    _typed("a list of integers", ch_mult=ch_mult, attn=attn)
    _typed("a number", dropout=dropout)
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    if ch < 32 or ch % 32:
        raise ValueError(f"ch must be a positive multiple of 32 (GroupNorm with 32 groups), got {ch}")
    if not ch_mult or any(m < 1 for m in ch_mult):
        raise ValueError(f"ch_mult must be a non-empty sequence of positive ints, got {ch_mult}")
    if any(not 0 <= level < len(ch_mult) for level in attn):
        raise ValueError(f"attention levels {attn} out of range for {len(ch_mult)} levels (0..{len(ch_mult) - 1})")
    factor = 2 ** (len(ch_mult) - 1)
    if img_resolution < 1 or img_resolution % factor:
        raise ValueError(f"img_resolution {img_resolution} must be divisible by 2**(len(ch_mult)-1) = {factor}")
    if num_res_blocks < 1:
        raise ValueError(f"num_res_blocks must be >= 1, got {num_res_blocks}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0 (0 = unconditional), got {num_classes}")
    return dict(img_resolution=img_resolution, in_channels=in_channels, ch=ch, ch_mult=tuple(ch_mult),
                attn=tuple(attn), num_res_blocks=num_res_blocks, dropout=dropout, num_classes=num_classes)


def densenet_config(block_config, growth_rate, num_classes, in_channels=3, bn_size=4, compression=0.5):
    """DenseNet's arguments, complete; ValueError for any it cannot be built with."""
    _typed("a list of integers", block_config=block_config)
    _typed("an integer", growth_rate=growth_rate, num_classes=num_classes, in_channels=in_channels, bn_size=bn_size)
    _typed("a number", compression=compression)
    block_config = tuple(block_config)
    if not block_config or any(n < 1 for n in block_config):
        raise ValueError(f"block_config must be a non-empty sequence of positive ints, got {block_config}")
    if growth_rate < 1 or num_classes < 1 or in_channels < 1 or bn_size < 1:
        raise ValueError(f"growth_rate, num_classes, in_channels and bn_size must be >= 1, got "
                         f"{growth_rate}, {num_classes}, {in_channels}, {bn_size}")
    if not 0.0 < compression <= 1.0:
        raise ValueError(f"compression must be in (0, 1], got {compression}")
    return dict(block_config=block_config, growth_rate=growth_rate, num_classes=num_classes,
                in_channels=in_channels, bn_size=bn_size, compression=compression)


def _called(config, given, what):
    """config(**given); unknown or missing keys raise ValueError naming them and what is allowed."""
    params = inspect.signature(config).parameters
    unknown = sorted(set(given) - set(params))
    missing = [name for name, p in params.items() if p.default is p.empty and name not in given]
    if unknown or missing:
        problems = [f"{kind} keys {keys}" for kind, keys in (("unknown", unknown), ("missing", missing)) if keys]
        raise ValueError(f"bad {what} config: {', '.join(problems)}; allowed: {list(params)}")
    return config(**given)


def check_unet(**cfg):
    """UNet's complete arguments from keyword config; ValueError for unknown, missing or bad keys."""
    return _called(unet_config, cfg, "UNet")


def check_unet_arguments(value):
    """ValueError unless `value` (read from JSON or YAML: an authors' network) is a mapping of UNet
    arguments that check_unet accepts."""
    if not isinstance(value, dict):
        raise ValueError(f"must be a mapping of the UNet's arguments, got {brief(value)}")
    check_unet(**value)


def classifier_config(name, num_classes, in_channels=3, **overrides):
    """DenseNet's complete arguments of preset `name` (a key of CLASSIFIERS) with keyword overrides."""
    if name not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {name!r}; allowed: {sorted(CLASSIFIERS)}")
    kwargs = {**CLASSIFIERS[name], **overrides, "num_classes": num_classes, "in_channels": in_channels}
    return _called(densenet_config, kwargs, f"classifier {name!r}")
