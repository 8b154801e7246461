"""Checkpoint files: safe loading and atomic saving, exported models (ours and the authors' released
RCFD/RDD checkpoints).

An exported model is a plain dict (loadable with weights_only=True) holding
the network's constructor arguments, its time grid and its weights; training
resume state is kept elsewhere (rdd.train.loop), in the same kind of file.
"""

import contextlib
import pickle
import re
from pathlib import Path

import torch

from rdd import io
from rdd.data.normalization import input_norm
from rdd.data.registry import num_classes
from rdd.diffusion import TimeGrid
from rdd.nets import build_classifier, build_unet, classifier_kwargs_of, from_authors_names, load_authors_state_dict

class CheckpointError(RuntimeError):
    """A checkpoint or weights file that cannot be read; the message names it."""


def save_torch(obj, path):
    """torch.save to `path` atomically (temporary file in the same folder, then rename)."""
    io.write_with(path, lambda f: torch.save(obj, f), "wb")


def load_torch(path, map_location="cpu"):
    """torch.load with weights_only=True; any failure names the file."""
    path = Path(path)
    if problem := io.file_problem(path):
        raise CheckpointError(f"checkpoint {problem}: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, wrong format, pickled code objects
        raise CheckpointError(
            f"cannot read checkpoint {path} ({_load_failure(exc)}); "
            "it is corrupt, truncated, or not a weights-only torch file"
        ) from exc


def _load_failure(exc):
    """Why torch.load refused a file, in one sentence.

    torch's message for a pickled object a weights-only load refuses is a page that advises loading
    with weights_only=False, which this suite never does: only its reason is kept."""
    found = isinstance(exc, pickle.UnpicklingError) and re.search(
        r"WeightsUnpickler error:(.*?)(?:Check the documentation|$)", str(exc), re.DOTALL)
    if not found:
        return f"{type(exc).__name__}: {exc}"
    reason = " ".join(found.group(1).split())
    return "a weights-only load refuses it: " + re.split(r"(?<=\.) ", reason, maxsplit=1)[0]


@contextlib.contextmanager
def _damaged_export(path):
    """An exported file whose format tag is ours but whose contents do not build: named, not a traceback."""
    try:
        yield
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        reason = " ".join(str(exc).split())
        reason = reason if len(reason) <= 300 else reason[:300] + " ..."  # a state dict's missing keys: all of them
        raise CheckpointError(f"{path} is an exported rdd model whose contents do not load "
                              f"({type(exc).__name__}: {reason}); it was changed after export, or written by "
                              "another version of this suite") from exc


DENOISER_FORMAT = "rdd/denoiser-v1"
CLASSIFIER_FORMAT = "rdd/classifier-v1"

# The released CIFAR-10 classifier was trained on CIFAR-10's channel mean and std; its file does
# not say so (METHOD.md, "Released behaviour", classifier recipe).
AUTHORS_CLASSIFIER_INPUT_NORM = input_norm("mean_std", {"name": "cifar10", "channels": 3})

# The authors' CIFAR-10 network; their files do not say which network they hold.
AUTHORS_CIFAR10_NET = {"img_resolution": 32, "in_channels": 3, "ch": 128, "ch_mult": [1, 2, 2, 2],
                       "attn": [1], "num_res_blocks": 2, "dropout": 0.1, "num_classes": 0}


def denoiser_payload(net, net_kwargs, grid, settings=None):
    return {"format": DENOISER_FORMAT, "net": dict(net_kwargs), "T": grid.T, "T_base": grid.T_base,
            "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "settings": settings or {}}


def classifier_payload(net, net_kwargs, input_norm, settings=None):
    """The exported classifier; `input_norm` is the normalisation it was trained with (see load_classifier)."""
    return {"format": CLASSIFIER_FORMAT, "net": dict(net_kwargs), "input_norm": dict(input_norm),
            "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "settings": settings or {}}


def load_denoiser(path, device="cpu", authors_net=None):
    """`(net, net_kwargs, grid)` from our exported file or an authors' checkpoint.

    Authors' files (keys `net_model`/`ema_model`, `T`, `time_scale`, `x_T`) do
    not record the architecture: `authors_net` gives it (default: their
    CIFAR-10 network). Their EMA weights are used when present.
    """
    payload = load_torch(path)
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} does not hold a model dict")
    if payload.get("format") == DENOISER_FORMAT:
        if authors_net is not None:  # the export records its network: another one given is a mistake
            raise CheckpointError(f"{path} is an exported rdd model, which records its own network: the authors' "
                                  "network arguments (--authors-net) are for an authors' checkpoint only")
        with _damaged_export(path):
            net_kwargs = payload["net"]
            net = build_unet(**net_kwargs)
            net.load_state_dict(payload["state_dict"])
            grid = TimeGrid(int(payload["T"]), int(payload["T_base"]))
    elif "T" in payload and ("ema_model" in payload or "net_model" in payload):
        net_kwargs = dict(authors_net or AUTHORS_CIFAR10_NET)
        net = build_unet(**net_kwargs)
        weights = payload.get("ema_model") or payload["net_model"]
        try:
            load_authors_state_dict(net, weights)
        except (RuntimeError, ValueError) as exc:
            raise CheckpointError(f"{path}: weights do not fit the network {net_kwargs}: {exc}") from exc
        T, time_scale = int(payload["T"]), int(payload["time_scale"])
        grid = TimeGrid(T, T * time_scale)
    elif payload.get("format") == CLASSIFIER_FORMAT:
        raise CheckpointError(f"{path} is an exported rdd classifier, not a diffusion model")
    else:
        raise CheckpointError(f"{path} is neither an exported rdd model nor an authors' checkpoint "
                                 f"(keys: {sorted(payload)[:8]})")
    return net.to(device).eval(), net_kwargs, grid


def _classes(n):
    return f"{n} class" + ("es" if n != 1 else "")


def data_problem(net_kwargs, data_spec):
    """Why a network built with `net_kwargs` cannot take the data of `data_spec` (a completed dataset
    spec), or None. A UNet is built for one size and channel count (and, class-conditional, for the
    data's classes); a classifier for a channel count (its classes are only read as features)."""
    channels, size = data_spec["channels"], data_spec["image_size"]
    takes_channels, takes_size = net_kwargs["in_channels"], net_kwargs.get("img_resolution")
    if takes_channels != channels or takes_size not in (None, size):
        takes = f"{takes_channels}-channel" + (f" {takes_size}x{takes_size}" if takes_size else "")
        return f"takes {takes} images; the data settings give {channels}-channel {size}x{size} images"
    conditioned_on = net_kwargs.get("num_classes", 0) if takes_size else 0  # a UNet's default: unconditional
    if conditioned_on and (classes := num_classes(data_spec)) != conditioned_on:
        return (f"is conditioned on {_classes(conditioned_on)}; the data settings give "
                + (_classes(classes) if classes else "unlabelled images"))
    return None


def load_classifier(path, device="cpu", authors_input_norm=AUTHORS_CLASSIFIER_INPUT_NORM):
    """`(net, net_kwargs)` of our exported classifier or the RCFD authors' one, frozen, in eval mode.

    `net.input_norm` is the normalisation the classifier was trained with:
    `{"mean": [...], "std": [...]}`, per channel, of images in [0, 1]
    (rdd.data.normalize_input applies it to images in [-1, 1]). Our files record
    it; those from before they did were trained on [-1, 1]. The authors' file,
    `{'model': state_dict}` of a DenseNet-201 (or -121), does not:
    `authors_input_norm` gives it.
    """
    payload = load_torch(path)
    if isinstance(payload, dict) and payload.get("format") == CLASSIFIER_FORMAT:
        with _damaged_export(path):
            net_kwargs = payload["net"]
            net = build_classifier(**net_kwargs)
            net.load_state_dict(payload["state_dict"])
            norm = payload.get("input_norm") or input_norm("minus1_1", {"channels": net_kwargs["in_channels"]})
    elif isinstance(payload, dict) and isinstance(payload.get("model"), dict):
        weights = from_authors_names(payload["model"])
        try:
            net_kwargs = classifier_kwargs_of(weights)
            net = build_classifier(**net_kwargs)
            net.load_state_dict(weights)
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"{path}: 'model' is not a DenseNet state dict in the authors' layout "
                                     f"({type(exc).__name__}: {exc})") from exc
        norm = dict(authors_input_norm)
    elif isinstance(payload, dict) and payload.get("format") == DENOISER_FORMAT:
        raise CheckpointError(f"{path} is an exported rdd diffusion model, not a classifier")
    else:
        keys = sorted(payload)[:8] if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path} is neither an exported rdd classifier nor the authors' classifier "
                                 f"{{'model': state_dict}} (found: {keys})")
    net.requires_grad_(False)
    net.input_norm = norm
    return net.to(device).eval(), net_kwargs
