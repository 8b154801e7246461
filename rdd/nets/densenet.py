"""DenseNet-BC for small images (Huang et al. 2017), the feature classifier of RCFD/RDD.

Follows the RCFD authors' small-image variant: a 3x3 stride-1 stem conv with
BatchNorm and ReLU, no stem pooling. Submodule names match theirs (their
`features` stem is our `stem`, since `features` is our feature method; see
from_authors_names).
"""

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from rdd.nets.configs import densenet_config


class DenseLayer(nn.Module):
    """Bottleneck layer: BN-ReLU-Conv1x1 to bn_size*growth, BN-ReLU-Conv3x3 to growth, appended."""

    def __init__(self, in_ch, growth_rate, bn_size):
        super().__init__()
        mid = bn_size * growth_rate
        self.norm1 = nn.BatchNorm2d(in_ch)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_ch, mid, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(mid)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(mid, growth_rate, 3, padding=1, bias=False)

    def forward(self, x):
        h = self.conv1(self.relu1(self.norm1(x)))
        h = self.conv2(self.relu2(self.norm2(h)))
        return torch.cat([x, h], dim=1)


def _dense_block(num_layers, in_ch, growth_rate, bn_size):
    layers = [(f"denselayer{i + 1}", DenseLayer(in_ch + i * growth_rate, growth_rate, bn_size))
              for i in range(num_layers)]
    return nn.Sequential(OrderedDict(layers))


def _transition(in_ch, out_ch):
    return nn.Sequential(OrderedDict([
        ("norm", nn.BatchNorm2d(in_ch)),
        ("relu", nn.ReLU(inplace=True)),
        ("conv", nn.Conv2d(in_ch, out_ch, 1, bias=False)),
        ("pool", nn.AvgPool2d(2)),
    ]))


class DenseNet(nn.Module):
    """DenseNet-BC; features(x) -> (F pre-ReLU map, pooled f), forward(x) -> logits. Its arguments,
    their defaults and checks: rdd.nets.configs.densenet_config."""

    def __init__(self, *args, **kwargs):
        super().__init__()
        config = densenet_config(*args, **kwargs)
        block_config, growth_rate, num_classes, in_channels, bn_size, compression = (
            config[k] for k in ("block_config", "growth_rate", "num_classes", "in_channels", "bn_size",
                                "compression"))
        ch = 2 * growth_rate
        self.stem = nn.Sequential(OrderedDict([
            ("conv0", nn.Conv2d(in_channels, ch, 3, padding=1, bias=False)),
            ("norm0", nn.BatchNorm2d(ch)),
            ("relu0", nn.ReLU(inplace=True)),
        ]))
        stages = []
        for i, num_layers in enumerate(block_config):
            stages.append((f"block{i + 1}", _dense_block(num_layers, ch, growth_rate, bn_size)))
            ch += num_layers * growth_rate
            if i != len(block_config) - 1:
                stages.append((f"trans{i + 1}", _transition(ch, int(ch * compression))))
                ch = int(ch * compression)
        for name, module in stages:
            self.add_module(name, module)
        self._stage_names = [name for name, _ in stages]
        self.final_norm = nn.BatchNorm2d(ch)
        self.fc = nn.Linear(ch, num_classes)
        self.num_features = ch
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)

    def features(self, x):
        """Return F, the final BatchNorm output (pre-ReLU) [B, C, h, w], and f = avgpool(relu(F)) [B, C]."""
        h = self.stem(x)
        for name in self._stage_names:
            h = getattr(self, name)(h)
        feat_map = self.final_norm(h)
        return feat_map, F.relu(feat_map).mean(dim=(2, 3))

    def logits(self, pooled):
        """Class logits [B, num_classes] of pooled vectors f (the second output of `features`)."""
        return self.fc(pooled)

    def forward(self, x):
        """Logits [B, num_classes] of images x, normalised as in training (see rdd.data.normalization)."""
        return self.logits(self.features(x)[1])


def from_authors_names(state_dict):
    """An RCFD authors' DenseNet state dict under our names: DataParallel's `module.` dropped, `features.` -> `stem.`.

    Their stem is under `features.`; every other name is already ours.
    """
    renamed = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        renamed["stem." + key.removeprefix("features.") if key.startswith("features.") else key] = value
    return renamed


def block_config_of(state_dict):
    """`(block_config, growth_rate)` of a DenseNet state dict under our names."""
    layers = {}
    for key in state_dict:
        parts = key.split(".")
        if len(parts) > 2 and parts[0].startswith("block") and parts[1].startswith("denselayer"):
            layers.setdefault(int(parts[0].removeprefix("block")), set()).add(parts[1])
    growth = state_dict["block1.denselayer1.conv2.weight"].shape[0]
    return tuple(len(layers[i]) for i in sorted(layers)), growth
