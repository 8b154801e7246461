"""Settings records: one defaults record per command, merged with the user's values.

A settings record is plain JSON (nested dicts, lists, numbers, strings) and is
stored beside every output it produced.
"""

import copy
import hashlib
import json
from pathlib import Path

import yaml

from rdd import methods

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
        # None: take the method's preset weight (see rdd.methods.METHODS).
        "weights": {term: None for term in methods.TERMS},
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


# ----------------------------------------------------------------------------- allowed values

def _rule(test, allowed, optional=False):
    """(test, what is allowed) of a setting; `optional` lets null through."""
    return (lambda v: (optional and v is None) or (v is not None and test(v)),
            allowed + (" or null" if optional else ""))


def _int_from(low, optional=False):
    return _rule(lambda v: type(v) is int and v >= low, f"an integer >= {low}", optional)


def _number_above(low, optional=False):
    return _rule(lambda v: v > low, f"a number > {low}", optional)


def _number_from(low, optional=False):
    return _rule(lambda v: v >= low, f"a number >= {low}", optional)


def _fraction(optional=False):
    return _rule(lambda v: 0 <= v < 1, "a number in [0, 1)", optional)


def _one_of(*names):
    return _rule(lambda v: v in names, "one of " + ", ".join(names))


# The M-P2P queue's modes (see rdd.losses.relational), released first.
ENQUEUE_MODES = ("columns", "pixels")
WRAP_MODES = ("tail", "modulo")
ANCHOR_MODES = ("linspace", "stride")

_POWER_OF_TWO = _rule(lambda v: type(v) is int and v >= 1 and not v & (v - 1), "a power of two (1, 2, 4, ...)")

# What each setting allows: (command, key path) -> rule; "*" applies to every command that has the key.
# Checked when settings are resolved, before any data or model is loaded (the workflow resolves
# every stage's settings through here too, so its config check and the command line agree).
LIMITS = {
    ("*", "seed"): _int_from(0),
    ("*", "train.iters"): _int_from(1),
    ("*", "train.batch_size"): _int_from(1),
    ("*", "train.lr"): _number_above(0),
    ("*", "train.grad_clip"): _number_from(0),
    ("*", "train.checkpoint_every"): _int_from(1),
    ("*", "train.log_every"): _int_from(1),
    ("*", "train.num_workers"): _int_from(0),
    ("teacher", "T_base"): _POWER_OF_TWO,
    ("teacher", "train.warmup_iters"): _int_from(0),
    ("teacher", "train.ema_decay"): _fraction(),
    ("classifier", "train.momentum"): _fraction(),
    ("classifier", "train.weight_decay"): _number_from(0),
    ("classifier", "train.epochs"): _int_from(1, optional=True),
    ("classifier", "train.lr_schedule"): _one_of("multistep", "cosine"),
    ("classifier", "train.lr_gamma"): _number_above(0),
    ("classifier", "train.crop_padding"): _int_from(1),
    ("classifier", "train.cutout_length"): _int_from(1),
    ("classifier", "train.input_norm"): _one_of("mean_std", "minus1_1"),
    ("classifier", "train.select"): _one_of("best_test", "final"),
    ("classifier", "train.eval_every_epochs"): _int_from(1),
    ("distill", "method"): _one_of(*methods.method_names(distilled=True)),
    **{("distill", f"weights.{term}"): _number_from(0, optional=True) for term in methods.TERMS},
    ("distill", "tau"): _number_above(0),
    ("distill", "is_p2p_temperature"): _number_above(0),
    ("distill", "dropout"): _fraction(optional=True),
    ("distill", "feature_map"): _one_of("post_relu", "pre_relu"),
    ("distill", "is_p2p_group_size"): _int_from(1, optional=True),
    ("distill", "memory_size"): _int_from(1),
    ("distill", "num_anchors"): _int_from(1),
    ("distill", "enqueue_per_step"): _int_from(1),
    ("distill", "contrast_temperature"): _number_above(0),
    ("distill", "kd_temperature"): _number_above(0),
    ("distill", "m_p2p_enqueue"): _one_of(*ENQUEUE_MODES),
    ("distill", "m_p2p_wrap"): _one_of(*WRAP_MODES),
    ("distill", "m_p2p_anchors"): _one_of(*ANCHOR_MODES),
    ("distill", "m_p2p_head_lr"): _one_of("constant", "cosine"),
    ("distill", "classifier_input"): _one_of("raw", "as_trained"),
    ("*", "device.device"): _rule(lambda v: v in ("auto", "cpu") or v == "cuda" or v.startswith("cuda:"),
                                  "auto, cpu, cuda or cuda:N"),
}
# Settings that must not exceed another: (command, key, the key bounding it).
AT_MOST = [("distill", "num_anchors", "memory_size"), ("distill", "enqueue_per_step", "memory_size")]


def _limit_errors(command, record):
    errors = []
    for (owner, key), (test, allowed) in LIMITS.items():
        if owner not in ("*", command) or not _has(record, key):
            continue
        value = _lookup(record, key)
        if not test(value):
            errors.append(f"setting '{key}' must be {allowed}, got {value!r}")
    for owner, key, bound in AT_MOST:
        values = (_lookup(record, key), _lookup(record, bound))
        if owner == command and all(type(v) is int and v >= 1 for v in values) and values[0] > values[1]:
            errors.append(f"setting '{key}' ({_lookup(record, key)}) must be at most "
                          f"'{bound}' ({_lookup(record, bound)})")
    return errors


def _merge(defaults, user, errors, path=""):
    """`defaults` overlaid with `user`; each unknown key or wrong kind is added to `errors`."""
    out = copy.deepcopy(defaults)
    for key, value in user.items():
        where = f"{path}.{key}" if path else key
        if key not in defaults and path not in _OPEN:
            allowed = ", ".join(sorted(defaults))
            errors.append(f"unknown setting '{where}' (allowed here: {allowed})")
        elif isinstance(defaults.get(key), dict):
            if isinstance(value, dict):
                out[key] = _merge(defaults[key], value, errors, where)
            else:
                errors.append(f"setting '{where}' must be a mapping, got {value!r}")
        else:
            value = _yaml_float(defaults.get(key), value)
            problem = _kind_error(where, defaults.get(key), value)
            if problem:
                errors.append(problem)
            else:
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


def _kind_error(where, default, value):
    """The message when `value` is not of the kind of `default` (None: it is)."""
    if default is None or value is None:
        return None
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, kind = number and float(value).is_integer(), "an integer"
    elif isinstance(default, float):
        ok, kind = number, "a number"
    else:
        ok, kind = isinstance(value, type(default)), type(default).__name__
    return None if ok else f"setting '{where}' must be {kind}, got {value!r}"


# Sub-records whose keys are checked by their owners (the dataset and network registries).
_OPEN = {"data", "net"}


def resolve(command, user=None):
    """The full settings record of `command`: its defaults overlaid with `user`."""
    if command not in DEFAULTS:
        raise SettingsError(f"unknown command '{command}' (allowed: {', '.join(DEFAULTS)})")
    errors = []
    record = _merge(DEFAULTS[command], user or {}, errors)
    errors += _limit_errors(command, record)
    if errors:
        # Every problem at once, on one line: a user fixes them all in one go.
        raise SettingsError("; ".join(errors))
    return record


def _has(record, dotted):
    for part in dotted.split("."):
        if not isinstance(record, dict) or part not in record:
            return False
        record = record[part]
    return True


def _lookup(record, dotted):
    for part in dotted.split("."):
        record = record.get(part) if isinstance(record, dict) else None
    return record


def load_file(path):
    """Read a settings file (YAML or JSON; YAML parsed safely)."""
    path = Path(path)
    if not path.is_file():
        raise SettingsError(f"settings file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SettingsError(f"settings file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"settings file {path} must hold a mapping")
    return data


def digest(record):
    """A short, stable hash of a settings record (used to match resume state to its settings)."""
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]
