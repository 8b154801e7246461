"""Settings records: one defaults record per command, merged with the user's values.

A settings record is plain JSON (nested dicts, lists, numbers, strings) and is
stored beside every output it produced.
"""

import copy
import hashlib
import json
from pathlib import Path

import yaml

DEVICE_DEFAULTS = {"device": "auto", "amp_bf16": False}

# The embedded default: small models on Fashion-MNIST padded to 32x32.
UNET_DEFAULTS = {"ch": 32, "ch_mult": [1, 2, 2], "attn": [], "num_res_blocks": 1, "dropout": 0.1,
                 "class_conditional": False}

TRAIN_DEFAULTS = {"iters": 2000, "batch_size": 64, "lr": 2e-4, "grad_clip": 1.0,
                  "checkpoint_every": 200, "log_every": 50, "num_workers": 0}

DEFAULTS = {
    "teacher": {
        "seed": 0, "data": {"name": "fashion_mnist"}, "net": UNET_DEFAULTS, "T_base": 1024,
        "train": {**TRAIN_DEFAULTS, "warmup_iters": 200, "ema_decay": 0.999},
        "device": DEVICE_DEFAULTS,
    },
    "classifier": {
        "seed": 0, "data": {"name": "fashion_mnist"},
        "net": {"name": "densenet_small"},
        # The released CIFAR-10 recipe (METHOD.md, "Released behaviour"; see rdd.train.classifier).
        # The suite's earlier recipe: lr_schedule cosine, augment [hflip] ([] for data not flipped),
        # input_norm minus1_1, select final.
        "train": {**TRAIN_DEFAULTS, "iters": 1500, "batch_size": 128, "lr": 0.1, "momentum": 0.9,
                  "weight_decay": 5e-4, "grad_clip": 0.0,
                  "epochs": None,  # when set, the run's length in epochs (iters is then ignored); released 300
                  "lr_schedule": "multistep",  # lr x lr_gamma at each milestone; or cosine (decay to 0)
                  "lr_milestones": [0.5, 0.75],  # fractions of the run: epochs 150 and 225 of 300
                  "lr_gamma": 0.1,
                  # applied in this order; the data spec's hflip is not consulted
                  "augment": ["crop", "hflip", "autoaugment", "cutout"],
                  "crop_padding": 4, "cutout_length": 16,  # pixels
                  "input_norm": "mean_std",  # (x01 - dataset mean) / std; or minus1_1 (x in [-1, 1])
                  "select": "best_test",  # export the epoch of best test accuracy; or final
                  "eval_every_epochs": 1},
        "device": DEVICE_DEFAULTS,
    },
    "distill": {
        "seed": 0, "data": {"name": "fashion_mnist"},
        "method": "rdd",
        # None: take the method's preset weight (see rdd.distill.METHOD_WEIGHTS).
        "weights": {"pd": None, "cfd": None, "is_p2p": None, "m_p2p": None},
        "tau": 0.9, "is_p2p_temperature": 1.0,
        # Released behaviour by default; each alternative is the paper's description
        # (METHOD.md, "Released behaviour"; see rdd.losses.relational for the modes).
        "dropout": 0.0,  # the student's dropout in the round (None: keep the teacher's)
        "feature_map": "post_relu",  # the map IS-P2P and M-P2P relate: relu(F) or F
        "is_p2p_group_size": None,  # samples related per IS-P2P group (None: each process's batch)
        "memory_size": 20000, "num_anchors": 4096, "enqueue_per_step": 128,
        "contrast_temperature": 0.1, "kd_temperature": 1.0,
        "m_p2p_enqueue": "columns", "m_p2p_wrap": "tail", "m_p2p_anchors": "linspace",
        "m_p2p_head_bias": False,
        "m_p2p_head_lr": "constant",  # the head's Adam: constant lr, or the student's cosine decay
        "m_p2p_sync_bn": True,  # SyncBatchNorm in the head under multi-GPU data parallelism
        "classifier_input": "raw",  # images fed to the classifier: raw [-1, 1], or as it was trained
        "train": {**TRAIN_DEFAULTS, "iters": 1000, "lr": 5e-5},
        "device": DEVICE_DEFAULTS,
    },
}


class SettingsError(ValueError):
    """A settings value that is unknown or of the wrong kind; the message names the key."""


# Settings that take one of a few names: (command, key path) -> allowed values.
CHOICES = {
    ("distill", "feature_map"): ("post_relu", "pre_relu"),
    ("distill", "m_p2p_enqueue"): ("columns", "pixels"),
    ("distill", "m_p2p_wrap"): ("tail", "modulo"),
    ("distill", "m_p2p_anchors"): ("linspace", "stride"),
    ("distill", "m_p2p_head_lr"): ("constant", "cosine"),
    ("distill", "classifier_input"): ("raw", "as_trained"),
}
# Where the released training code departs from the paper's description (METHOD.md, "Released
# behaviour"): distill setting -> (what it is, the released value, the paper's description's value).
# The released value is each setting's default; the report says which one every study ran.
RELEASED_VS_DESCRIBED = {
    "dropout": ("student dropout in the rounds", 0.0, None),
    "feature_map": ("map related by IS-P2P and M-P2P", "post_relu", "pre_relu"),
    "m_p2p_enqueue": ("vectors M-P2P enqueues", "columns", "pixels"),
    "m_p2p_wrap": ("M-P2P queue write at its end", "tail", "modulo"),
    "m_p2p_anchors": ("M-P2P anchor slots", "linspace", "stride"),
    "m_p2p_head_bias": ("M-P2P head convolutions with bias", False, True),
    "m_p2p_head_lr": ("M-P2P head's learning rate", "constant", "cosine"),
    "classifier_input": ("images the classifier is fed while distilling", "raw", "as_trained"),
}
# Settings whose default is None and whose value, when given, is a positive integer.
OPTIONAL_POSITIVE_INTS = {("distill", "is_p2p_group_size")}


def _merge(defaults, user, path=""):
    out = copy.deepcopy(defaults)
    for key, value in user.items():
        where = f"{path}.{key}" if path else key
        if key not in defaults and path not in _OPEN:
            allowed = ", ".join(sorted(defaults))
            raise SettingsError(f"unknown setting '{where}' (allowed here: {allowed})")
        if isinstance(defaults.get(key), dict):
            if not isinstance(value, dict):
                raise SettingsError(f"setting '{where}' must be a mapping, got {value!r}")
            out[key] = _merge(defaults[key], value, where)
        else:
            value = _yaml_float(defaults.get(key), value)
            _check_kind(where, defaults.get(key), value)
            out[key] = copy.deepcopy(value)
    return out


def _yaml_float(default, value):
    """YAML 1.1 reads `1e-4` (no dot) as a string; take it as the number it means."""
    if isinstance(default, float) and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def _check_kind(where, default, value):
    if default is None or value is None:
        return
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, kind = number and float(value).is_integer(), "an integer"
    elif isinstance(default, float):
        ok, kind = number, "a number"
    else:
        ok, kind = isinstance(value, type(default)), type(default).__name__
    if not ok:
        raise SettingsError(f"setting '{where}' must be {kind}, got {value!r}")


# Sub-records whose keys are checked by their owners (the dataset and network registries).
_OPEN = {"data", "net"}


def resolve(command, user=None):
    """The full settings record of `command`: its defaults overlaid with `user`."""
    if command not in DEFAULTS:
        raise SettingsError(f"unknown command '{command}' (allowed: {', '.join(DEFAULTS)})")
    record = _merge(DEFAULTS[command], user or {})
    for (owner, key), allowed in CHOICES.items():
        value = _lookup(record, key)
        if owner == command and value not in allowed:
            raise SettingsError(f"setting '{key}' must be one of {', '.join(allowed)}, got {value!r}")
    for owner, key in OPTIONAL_POSITIVE_INTS:
        value = _lookup(record, key)
        if owner == command and value is not None and (type(value) is not int or value < 1):
            raise SettingsError(f"setting '{key}' must be a positive integer or null, got {value!r}")
    return record


def _lookup(record, dotted):
    for part in dotted.split("."):
        record = record.get(part) if isinstance(record, dict) else None
    return record


def load_file(path):
    """Read a settings file (YAML or JSON; YAML parsed safely)."""
    path = Path(path)
    if not path.is_file():
        raise SettingsError(f"settings file not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise SettingsError(f"settings file {path} must hold a mapping")
    return data


def digest(record):
    """A short, stable hash of a settings record (used to match resume state to its settings)."""
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]
