"""Networks: the DDPM UNet (teachers and students) and the DenseNet feature classifier."""

import inspect

from rdd.nets import densenet, unet
from rdd.nets.densenet import DenseNet, block_config_of, from_authors_names
from rdd.nets.unet import UNet, load_authors_state_dict

__all__ = ["CLASSIFIERS", "DenseNet", "UNet", "build_classifier", "build_unet", "check_classifier", "check_unet",
           "classifier_kwargs_of", "from_authors_names", "load_authors_state_dict"]

# DenseNet-BC presets: name -> DenseNet keyword arguments.
CLASSIFIERS = {
    "densenet201": dict(block_config=(6, 12, 48, 32), growth_rate=32),  # the papers' CIFAR-10 classifier
    "densenet121": dict(block_config=(6, 12, 24, 16), growth_rate=32),
    # CPU default: F is [B, 32, 8, 8] at 32x32; bottleneck 2x growth (not 4x) for speed
    "densenet_small": dict(block_config=(2, 2, 2), growth_rate=8, bn_size=2),
}


def _full_kwargs(cls, given, what):
    """`given` with the constructor's defaults filled in; unknown or missing keys raise ValueError."""
    params = {name: p for name, p in inspect.signature(cls.__init__).parameters.items() if name != "self"}
    unknown = sorted(set(given) - set(params))
    missing = [name for name, p in params.items() if p.default is p.empty and name not in given]
    if unknown or missing:
        raise ValueError(f"bad {what} config: unknown keys {unknown}, missing keys {missing}; "
                         f"allowed: {list(params)}")
    return {name: given.get(name, p.default) for name, p in params.items()}


def check_unet(**cfg):
    """Raise ValueError for a UNet keyword config that cannot be built (nothing is built)."""
    unet.check_config(**_full_kwargs(UNet, cfg, "UNet"))


def build_unet(**cfg):
    """UNet from keyword config; unknown, missing or inconsistent keys raise ValueError."""
    check_unet(**cfg)
    return UNet(**cfg)


def _classifier_kwargs(name, num_classes, in_channels=3, **overrides):
    if name not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {name!r}; allowed: {sorted(CLASSIFIERS)}")
    kwargs = {**CLASSIFIERS[name], **overrides, "num_classes": num_classes, "in_channels": in_channels}
    densenet.check_config(**_full_kwargs(DenseNet, kwargs, f"classifier {name!r}"))
    return kwargs


def check_classifier(name, num_classes, in_channels=3, **overrides):
    """Raise ValueError for `build_classifier` arguments that cannot be built (nothing is built)."""
    _classifier_kwargs(name, num_classes, in_channels, **overrides)


def build_classifier(name, num_classes, in_channels=3, **overrides):
    """DenseNet preset `name` (a key of CLASSIFIERS), with optional DenseNet keyword overrides."""
    return DenseNet(**_classifier_kwargs(name, num_classes, in_channels, **overrides))


def classifier_kwargs_of(state_dict):
    """`build_classifier` arguments of a DenseNet state dict under our names: the preset recognised
    from its layers per block and growth rate, its classes and input channels."""
    block_config, growth = block_config_of(state_dict)
    for name, preset in CLASSIFIERS.items():
        if (tuple(preset["block_config"]), preset["growth_rate"]) == (block_config, growth):
            return {"name": name, "num_classes": state_dict["fc.weight"].shape[0],
                    "in_channels": state_dict["stem.conv0.weight"].shape[1]}
    raise ValueError(f"blocks {block_config} with growth {growth} are none of the presets {sorted(CLASSIFIERS)}")
