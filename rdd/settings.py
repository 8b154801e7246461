"""Settings records: one defaults record per command, merged with the user's values.

A settings record is plain JSON (nested dicts, lists, numbers, strings) and is
stored beside every output it produced.
"""

import copy
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import yaml

from rdd import io, methods
from rdd.data.registry import normalize_spec
from rdd.seeds import MAX_TRAINING_SEED
from rdd.train.checks import COMMANDS
from rdd.values import brief, colon_hint, is_int, is_number


class SettingsError(ValueError):
    """A settings value that is unknown or of the wrong kind; the message names the key."""


# ----------------------------------------------------------------------------- kinds of value

@dataclass(frozen=True)
class Kind:
    """What a setting allows: `base` the type (checked first, its message names only the type),
    `test` the values of that type (its message is `allowed`)."""

    base: str  # "integer", "number", "boolean", "text" or "list"
    allowed: str
    test: Callable = lambda v: True


# Each base type's name in messages and its test; integers may be written 5.0 (the range test then
# asks for an int); booleans are not numbers.
BASE_TESTS = {
    "integer": ("an integer", lambda v: is_number(v) and float(v).is_integer()),
    "number": ("a number", is_number),
    "boolean": ("true or false", lambda v: isinstance(v, bool)),
    "text": ("str", lambda v: isinstance(v, str)),
    "list": ("list", lambda v: isinstance(v, list)),
}


def integer(low, high=None):
    if high is None:
        return Kind("integer", f"an integer >= {low}", lambda v: is_int(v) and v >= low)
    return Kind("integer", f"an integer in [{low}, {high}]", lambda v: is_int(v) and low <= v <= high)


def number_above(low):
    return Kind("number", f"a number > {low}", lambda v: v > low)


def number_from(low):
    return Kind("number", f"a number >= {low}", lambda v: v >= low)


FRACTION = Kind("number", "a number in [0, 1)", lambda v: 0 <= v < 1)
BOOLEAN = Kind("boolean", "true or false")
POWER_OF_TWO = Kind("integer", "a power of two (1, 2, 4, ...)", lambda v: is_int(v) and v >= 1 and not v & (v - 1))


def check_choice(name, value, allowed):
    """ValueError unless `value` is one of `allowed` (one of the name tuples here), for code called
    without the settings check (the library's functions, the command line's own options)."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


def one_of(*names):
    return Kind("text", "one of " + ", ".join(names), lambda v: v in names)


def subset_of(*names):
    return Kind("list", f"a list naming each of {', '.join(names)} at most once",
                lambda v: all(x in names for x in v) and len(set(map(str, v))) == len(v))


FRACTIONS = Kind("list", "a list of numbers in (0, 1)", lambda v: all(is_number(x) and 0 < x < 1 for x in v))
DEVICE = Kind("text", "auto, cpu, cuda or cuda:N", lambda v: re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", v) is not None)


@dataclass(frozen=True)
class Setting:
    """One setting: its default, the values it allows, and one line of help."""

    default: object
    kind: Optional[Kind]  # None: a record checked by its owner (the dataset or network registry)
    help: str
    optional: bool = False  # null is allowed too (its meaning is in the help)

    def allows(self):
        return self.kind.allowed + (" or null" if self.optional else "")


# ----------------------------------------------------------------------------- the settings of each command

# The M-P2P queue's modes (see rdd.losses.relational), released first.
ENQUEUE_MODES = ("columns", "pixels")
WRAP_MODES = ("tail", "modulo")
ANCHOR_MODES = ("linspace", "stride")
# The classifier's augmentations (rdd.data.augment), in the order of the released recipe.
AUGMENTATIONS = ("crop", "hflip", "autoaugment", "cutout")
# How float32 matmuls and convolutions run (rdd.precision), exact first.
PRECISIONS = ("fp32", "tf32")
# How images reach the FID Inception network (rdd.metrics.inception), the default first.
INCEPTION_INPUTS = ("torch-fidelity", "pytorch-fid")
DEFAULT_INCEPTION_INPUT = INCEPTION_INPUTS[0]
# How IS splits the images: torch-fidelity shuffles them first (its rng seed); the released evaluation
# splits them in their order (image seed order here). The default first.
ISC_SPLIT_ORDERS = ("shuffled", "in-order")
DEFAULT_ISC_SPLIT_ORDER = ISC_SPLIT_ORDERS[0]


def _data(default):
    return Setting({"name": default}, None, "the dataset spec: name and its keys (see rdd.data.registry; the "
                                            "workflow writes the study's data here)")


def _train(iters, lr, batch_size=64, grad_clip=1.0, **extra):
    return {
        "iters": Setting(iters, integer(1), "optimiser steps of the run"),
        "batch_size": Setting(batch_size, integer(1), "images per step, over all processes"),
        "lr": Setting(lr, number_above(0), "base learning rate"),
        "grad_clip": Setting(grad_clip, number_from(0), "clip the gradient's global norm to this (0: no clipping)"),
        "checkpoint_every": Setting(200, integer(1), "steps between resume checkpoints"),
        "log_every": Setting(50, integer(1), "steps between log lines and loss-curve rows"),
        **extra,
    }


def _device():
    return {
        "device": Setting("auto", DEVICE, "where to train: auto (CUDA when present), cpu, cuda or cuda:N"),
        "amp_bf16": Setting(False, BOOLEAN, "bf16 autocast on CUDA (ignored on the CPU)"),
    }


# How the hardware runs the same training (rdd.train.speed_settings): results change at the rounding
# level only, so they are left out of the resume digest. The README's "Speed settings" says which
# defaults benchmarks/bench_speed_settings.py measured, and where.
SPEED_KEY = "speed"


def _speed():
    return {
        "tf32": Setting(True, BOOLEAN, "TF32 matmuls and convolutions for fp32 work on CUDA (ignored on the CPU)"),
        "deterministic": Setting(True, BOOLEAN, "deterministic CUDA kernels (torch.use_deterministic_algorithms): "
                                                "the same seeds train the same weights bit for bit on one machine; "
                                                "false: PyTorch's default kernels, some of which sum in a varying "
                                                "order (ignored on the CPU, which is deterministic)"),
        "cudnn_benchmark": Setting(False, BOOLEAN, "cuDNN times each convolution's algorithms on its first call "
                                                   "and keeps the fastest; the choice, and so the rounding, can "
                                                   "differ from run to run (ignored on the CPU)"),
        "channels_last": Setting(False, BOOLEAN, "networks and images in channels-last memory format"),
        "fused_optimizer": Setting(False, BOOLEAN, "the optimiser's fused kernel (Adam, SGD); false: "
                                                   "PyTorch's default implementation"),
        "compile": Setting(False, BOOLEAN, "torch.compile the trained network (compiled on the first steps)"),
        "num_workers": Setting(0, integer(0), "data-loader worker processes (0: load in the main process)"),
        "pin_memory": Setting(True, BOOLEAN, "page-locked loader batches, copied to CUDA without blocking "
                                             "(ignored on the CPU)"),
    }


SEED = Setting(0, integer(0, MAX_TRAINING_SEED),
               "the run's seed: initial weights, data order and every step's noise")

SETTINGS = {
    "teacher": {
        "seed": SEED,
        "data": _data("fashion_mnist"),
        # The embedded default: a small UNet on Fashion-MNIST padded to 32x32.
        "net": Setting({"ch": 32, "ch_mult": [1, 2, 2], "attn": [], "num_res_blocks": 1, "dropout": 0.1,
                        "class_conditional": False}, None,
                       "the UNet: ch (a multiple of 32), ch_mult, attn (levels with attention), num_res_blocks, "
                       "dropout, class_conditional"),
        "T_base": Setting(1024, POWER_OF_TWO, "the teacher's number of time steps (the workflow writes the study's)"),
        "train": _train(2000, 2e-4, **{
            "warmup_iters": Setting(200, integer(0), "steps of linear lr warm-up, factor min(s, w) / w"),
            "ema_decay": Setting(0.999, FRACTION, "decay of the exported EMA of the weights, per step"),
        }),
        "device": _device(),
        SPEED_KEY: _speed(),
    },
    "classifier": {
        "seed": SEED,
        "data": _data("fashion_mnist"),
        "net": Setting({"name": "densenet_small"}, None,
                       "the DenseNet: name (densenet201, densenet121, densenet_small) and optional DenseNet "
                       "keyword overrides"),
        # The released CIFAR-10 recipe (METHOD.md, "Released behaviour"; see rdd.train.classifier).
        # The suite's earlier recipe: lr_schedule cosine, drop_last true, augment [hflip] ([] for data
        # not flipped), input_norm minus1_1, select final.
        "train": _train(1500, 0.1, batch_size=128, grad_clip=0.0, **{
            "momentum": Setting(0.9, FRACTION, "SGD momentum"),
            "weight_decay": Setting(5e-4, number_from(0), "SGD weight decay"),
            "epochs": Setting(None, integer(1), "the run's length in epochs; null: train.iters steps "
                                                "(released: 300)", optional=True),
            "lr_schedule": Setting("multistep", one_of("multistep", "cosine"),
                                   "multistep: lr x lr_gamma at each milestone; cosine: decay to 0"),
            "lr_milestones": Setting([0.5, 0.75], FRACTIONS, "multistep milestones as increasing fractions of "
                                                             "the run (epochs 150 and 225 of 300)"),
            "lr_gamma": Setting(0.1, number_above(0), "multistep lr factor at each milestone"),
            "drop_last": Setting(False, BOOLEAN, "drop each epoch's last partial batch (false, as released: "
                                                 "it is a step of its own, 391 steps of 128 per CIFAR-10 epoch)"),
            "augment": Setting(list(AUGMENTATIONS), subset_of(*AUGMENTATIONS),
                               "augmentations, applied in this order (the data spec's hflip is not consulted; "
                               "autoaugment: the CIFAR-10 policy as the released CIFAR10Policy, grey fill)"),
            "crop_padding": Setting(4, integer(1), "random crop: pixels of grey (128) padding each side"),
            "cutout_length": Setting(16, integer(1), "cutout: side of the square hole in pixels"),
            "input_norm": Setting("mean_std", one_of("mean_std", "minus1_1"),
                                  "classifier inputs: (x01 - dataset mean) / std, or x in [-1, 1]"),
            "select": Setting("best_test", one_of("best_test", "final"),
                              "the exported weights: the epoch of best test accuracy, or the last step"),
            "eval_every_epochs": Setting(1, integer(1), "epochs between test-accuracy evaluations"),
            "sync_bn": Setting(True, BOOLEAN, "under data parallelism, BatchNorm statistics over every process's "
                                              "batch, as the released run on one GPU had them; false: per process"),
        }),
        "device": _device(),
        SPEED_KEY: _speed(),
    },
    # Released behaviour by default; each alternative is the paper's description (METHOD.md,
    # "Released behaviour"; see RELEASED_VS_DESCRIBED and rdd.losses.relational for the modes).
    "distill": {
        "seed": SEED,
        "data": _data("fashion_mnist"),
        "method": Setting("rdd", one_of(*methods.method_names(distilled=True)),
                          "the method; picks the loss weights not set in `weights` (see rdd.methods)"),
        "weights": {term: Setting(None, number_from(0), f"weight of the {methods.TERMS[term].label} term "
                                                        "(null: the method's preset)", optional=True)
                    for term in methods.TERMS},
        "tau": Setting(0.9, number_above(0), "CFD: the teacher features' softmax temperature tau"),
        "is_p2p_temperature": Setting(1.0, number_above(0), "IS-P2P: temperature of the pixel similarities' softmax"),
        "dropout": Setting(0.0, FRACTION, "the student's dropout in the round (null: keep the teacher's)",
                           optional=True),
        "feature_map": Setting("post_relu", one_of("post_relu", "pre_relu"),
                               "the map IS-P2P and M-P2P relate: relu(F) or F"),
        "is_p2p_group_size": Setting(None, integer(1), "samples related per IS-P2P group (null: each "
                                                       "process's batch)", optional=True),
        "memory_size": Setting(20000, integer(1), "M-P2P: slots of the memory queue"),
        "num_anchors": Setting(4096, integer(1), "M-P2P: queue slots read as anchors (at most memory_size)"),
        "enqueue_per_step": Setting(128, integer(1), "M-P2P: vectors written to the queue per step, over all "
                                                     "processes (at most memory_size)"),
        "contrast_temperature": Setting(0.1, number_above(0), "M-P2P: temperature of the similarities to the anchors"),
        "kd_temperature": Setting(1.0, number_above(0), "M-P2P: temperature of the KL between the anchor relations"),
        "m_p2p_enqueue": Setting("columns", one_of(*ENQUEUE_MODES),
                                 "M-P2P enqueue: the map reinterpreted as [C, BHW] columns, or pixel vectors"),
        "m_p2p_wrap": Setting("tail", one_of(*WRAP_MODES),
                              "M-P2P queue end: write the last n slots then restart at 0, or wrap modulo"),
        "m_p2p_anchors": Setting("linspace", one_of(*ANCHOR_MODES),
                                 "M-P2P anchors: float32 linspace then round, or an integer stride"),
        "m_p2p_head_bias": Setting(False, BOOLEAN, "M-P2P head convolutions with bias"),
        "m_p2p_head_lr": Setting("constant", one_of("constant", "cosine"),
                                 "the M-P2P head's Adam lr: constant, or the student's cosine decay"),
        "m_p2p_sync_bn": Setting(True, BOOLEAN, "the M-P2P head's BatchNorm synchronised across processes "
                                                "under data parallelism (any device)"),
        "classifier_input": Setting("raw", one_of("raw", "as_trained"),
                                    "images fed to the classifier: raw [-1, 1], or normalised as it was trained"),
        # The released rounds seeded every GPU alike (rdd.diffusion.draw_times_and_noise).
        "train": _train(1000, 5e-5, noise_group_size=Setting(
            None, integer(1), "samples sharing one draw of diffusion time and noise: the sample at batch "
                              "position i takes draw i mod this, as in the released multi-GPU rounds, whose GPUs "
                              "all drew alike (their batch per GPU reproduces them on any number of processes); "
                              "null: a draw per sample", optional=True)),
        "device": _device(),
        SPEED_KEY: _speed(),
    },
}
# How one integer setting must relate to another: name -> (what the message says, when the pair fails).
RELATIONS = {"at_most": ("be at most", lambda value, other: value > other),
             "divides": ("divide", lambda value, other: other % value)}
# (command, key, relation, the other key).
BOUNDS = [("distill", "num_anchors", "at_most", "memory_size"),
          ("distill", "enqueue_per_step", "at_most", "memory_size"),
          ("distill", "train.noise_group_size", "divides", "train.batch_size")]

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


def flat(command):
    """{dotted key: Setting} of `command`, in definition order."""
    def walk(tree, prefix):
        for key, value in tree.items():
            if isinstance(value, Setting):
                yield prefix + key, value
            else:
                yield from walk(value, f"{prefix}{key}.")
    return dict(walk(SETTINGS[command], ""))


def _defaults(tree):
    return {k: copy.deepcopy(v.default) if isinstance(v, Setting) else _defaults(v) for k, v in tree.items()}


def defaults(command):
    """The defaults record of `command` (a fresh copy)."""
    return _defaults(SETTINGS[command])


# ----------------------------------------------------------------------------- checking a user's record

def _not_a_mapping(where, value, keys):
    """The message for a value where a mapping with `keys` belongs (with the colon advice for 'key:value')."""
    return f"setting '{where}' must be a mapping, got {brief(value)}{colon_hint(value, keys, 'text')}"


def _merge(tree, user, errors, path=""):
    """`tree`'s defaults overlaid with `user`; each unknown key or wrong value is added to `errors`."""
    out = _defaults(tree)
    for key, value in user.items():
        where = path + key
        entry = tree.get(key)
        if entry is None:
            errors.append(f"unknown setting '{where}'{colon_hint(key, tree)} (allowed here: {', '.join(sorted(tree))})")
        elif not isinstance(entry, Setting):
            if isinstance(value, dict):
                out[key] = _merge(entry, value, errors, where + ".")
            else:
                errors.append(_not_a_mapping(where, value, entry))
        elif entry.kind is None:  # a record: its owner checks its keys
            if isinstance(value, dict):
                out[key] = {**out[key], **copy.deepcopy(value)}
            else:
                errors.append(_not_a_mapping(where, value, entry.default or {}))
        else:
            value = _yaml_float(entry, value)
            problem = _value_error(where, entry, value)
            if problem:
                errors.append(problem)
            else:
                out[key] = copy.deepcopy(value)
    return out


def _yaml_float(entry, value):
    """YAML 1.1 reads `1e-4` (no dot) as a string; take it as the number it means."""
    if entry.kind.base == "number" and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def _value_error(where, entry, value):
    """The message when `value` is not allowed for `entry` (None: it is)."""
    if value is None:
        return None if entry.optional else f"setting '{where}' must be {entry.allows()}, got None"
    kind_text, of_kind = BASE_TESTS[entry.kind.base]
    if not of_kind(value):
        return f"setting '{where}' must be {kind_text}, got {brief(value)}"
    if not entry.kind.test(value):
        return f"setting '{where}' must be {entry.allows()}, got {brief(value)}"
    return None


def _bound_errors(command, record):
    errors = []
    for owner, key, relation, other in BOUNDS:
        values = (_lookup(record, key), _lookup(record, other))
        words, fails = RELATIONS[relation]
        if owner == command and all(is_int(v) and v >= 1 for v in values) and fails(*values):
            errors.append(f"setting '{key}' ({values[0]}) must {words} '{other}' ({values[1]})")
    return errors


def check_block(command, block):
    """SettingsError for each unknown key or wrong value in `block`, one layer of `command`'s settings.

    The bounds between two settings are left to `resolve`: another layer may set the other one."""
    errors = []
    _merge(SETTINGS[command], block or {}, errors)
    if errors:
        raise SettingsError("; ".join(errors))


def resolve(command, user=None):
    """The full settings record of `command`: its defaults overlaid with `user`, each value checked.

    Checked before any data or model is loaded; the workflow resolves every stage's settings through
    here too, so its config check and the command line agree."""
    if command not in SETTINGS:
        raise SettingsError(f"unknown command '{command}' (allowed: {', '.join(SETTINGS)})")
    errors = []
    record = _merge(SETTINGS[command], user or {}, errors)
    if not errors:
        errors = _bound_errors(command, record)
    if errors:
        # Every problem at once, on one line: a user fixes them all in one go.
        raise SettingsError("; ".join(errors))
    return record


def validate(command, user=None):
    """`resolve`, the dataset spec completed, then the command's own checks (no network is built).

    One call for the command line and the workflow, before any data or model is loaded. Raises
    SettingsError naming the key."""
    record = resolve(command, user)
    try:
        record["data"] = normalize_spec(record["data"])
    except ValueError as exc:
        raise SettingsError(f"data: {exc}") from None
    try:
        COMMANDS[command](record)
    except (ValueError, TypeError, KeyError) as exc:
        raise SettingsError(str(exc)) from None
    return record


def _lookup(record, dotted):
    for part in dotted.split("."):
        record = record.get(part) if isinstance(record, dict) else None
    return record


def _yaml_scalar(value):
    """`value` in YAML flow style (JSON, with floats that YAML 1.1 reads back as numbers: 5e-05 is a
    string there, 5.0e-05 a float)."""
    text = json.dumps(value)
    if isinstance(value, float) and "e" in text and "." not in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}.0e{exponent}"
    return text


def help_text(command):
    """`command`'s defaults as commented YAML: every key with its default and its one line of help
    (the text can be saved and edited as a --settings file)."""
    lines = [f"# python -m rdd {'train-' + command if command != 'distill' else command} settings "
             "(defaults; edit and pass with --settings, or one key with --set key=value)"]

    def walk(tree, indent):
        for key, entry in tree.items():
            pad = "  " * indent
            if not isinstance(entry, Setting):
                lines.append(f"{pad}{key}:")
                walk(entry, indent + 1)
                continue
            value = _yaml_scalar(entry.default)
            allowed = f" [{entry.allows()}]" if entry.kind else ""
            lines.append(f"{pad}{key}: {value}  # {entry.help}{allowed}")
    walk(SETTINGS[command], 0)
    return "\n".join(lines) + "\n"


def deep_merge(*layers):
    """Mappings merged left to right, nested mappings key by key; other values replaced."""
    out = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = deep_merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
    return out


def load_file(path, kind="settings file"):
    """Read a settings file (YAML or JSON; YAML parsed safely); errors call it `kind`."""
    path = Path(path)
    if problem := io.file_problem(path):
        raise SettingsError(f"{kind} {problem}: {path}")
    try:
        data = io.read_yaml(path) or {}
    except io.YamlError as exc:
        raise SettingsError(f"{kind} {exc}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{kind} {path} must hold a mapping")
    return data


def write_files(folder, records):
    """{command: record} written as <folder>/<command>.yaml, the files `--settings` reads; {command: path}."""
    paths = {}
    for command, record in records.items():
        paths[command] = Path(folder) / f"{command}.yaml"
        paths[command].write_text(yaml.safe_dump(record))
    return paths


def digest(record):
    """A short, stable hash of a settings record (used to match resume state to its settings).

    The speed settings are left out: a run resumes across a change of them (another machine, compile
    turned off), as it does across a change in the number of processes."""
    trained = {k: v for k, v in record.items() if k != SPEED_KEY}
    return hashlib.sha256(json.dumps(trained, sort_keys=True).encode()).hexdigest()[:16]
