"""Networks built from their checked arguments (rdd.nets.configs)."""

from rdd.nets.configs import CLASSIFIERS, check_unet, classifier_config
from rdd.nets.densenet import DenseNet, block_config_of
from rdd.nets.unet import UNet


def build_unet(**cfg):
    """UNet from keyword config; unknown, missing or inconsistent keys raise ValueError."""
    return UNet(**check_unet(**cfg))


def build_classifier(name, num_classes, in_channels=3, **overrides):
    """DenseNet preset `name` (a key of CLASSIFIERS), with optional DenseNet keyword overrides."""
    return DenseNet(**classifier_config(name, num_classes, in_channels, **overrides))


def classifier_kwargs_of(state_dict):
    """`build_classifier` arguments of a DenseNet state dict under our names: the preset recognised
    from its layers per block and growth rate, its classes and input channels."""
    block_config, growth = block_config_of(state_dict)
    for name, preset in CLASSIFIERS.items():
        if (tuple(preset["block_config"]), preset["growth_rate"]) == (block_config, growth):
            return {"name": name, "num_classes": state_dict["fc.weight"].shape[0],
                    "in_channels": state_dict["stem.conv0.weight"].shape[1]}
    raise ValueError(f"blocks {block_config} with growth {growth} are none of the presets {sorted(CLASSIFIERS)}")
