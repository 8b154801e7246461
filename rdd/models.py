"""Exported model files: ours, and the authors' released RCFD/RDD checkpoints.

An exported model is a plain dict (loadable with weights_only=True) holding
the network's constructor arguments, its time grid and its weights; training
resume state is kept elsewhere.
"""

from rdd import io
from rdd.diffusion import TimeGrid
from rdd.nets import load_authors_state_dict, build_classifier, build_unet

DENOISER_FORMAT = "rdd/denoiser-v1"
CLASSIFIER_FORMAT = "rdd/classifier-v1"

# The authors' CIFAR-10 network; their files do not say which network they hold.
AUTHORS_CIFAR10_NET = {"img_resolution": 32, "in_channels": 3, "ch": 128, "ch_mult": [1, 2, 2, 2],
                       "attn": [1], "num_res_blocks": 2, "dropout": 0.1, "num_classes": 0}


def denoiser_payload(net, net_kwargs, grid, settings=None):
    return {"format": DENOISER_FORMAT, "net": dict(net_kwargs), "T": grid.T, "T_base": grid.T_base,
            "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "settings": settings or {}}


def classifier_payload(net, net_kwargs, settings=None):
    return {"format": CLASSIFIER_FORMAT, "net": dict(net_kwargs),
            "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "settings": settings or {}}


def load_denoiser(path, device="cpu", authors_net=None):
    """`(net, net_kwargs, grid)` from our exported file or an authors' checkpoint.

    Authors' files (keys `net_model`/`ema_model`, `T`, `time_scale`, `x_T`) do
    not record the architecture: `authors_net` gives it (default: their
    CIFAR-10 network). Their EMA weights are used when present.
    """
    payload = io.load_torch(path)
    if not isinstance(payload, dict):
        raise io.CheckpointError(f"{path} does not hold a model dict")
    if payload.get("format") == DENOISER_FORMAT:
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
            raise io.CheckpointError(f"{path}: weights do not fit the network {net_kwargs}: {exc}") from exc
        T, time_scale = int(payload["T"]), int(payload["time_scale"])
        grid = TimeGrid(T, T * time_scale)
    else:
        raise io.CheckpointError(f"{path} is neither an exported rdd model nor an authors' checkpoint "
                                 f"(keys: {sorted(payload)[:8]})")
    return net.to(device).eval(), net_kwargs, grid


def load_classifier(path, device="cpu"):
    """`(net, net_kwargs)` of an exported feature classifier, frozen, in eval mode."""
    payload = io.load_torch(path)
    if not isinstance(payload, dict) or payload.get("format") != CLASSIFIER_FORMAT:
        raise io.CheckpointError(f"{path} is not an exported rdd classifier")
    net = build_classifier(**payload["net"])
    net.load_state_dict(payload["state_dict"])
    net.requires_grad_(False)
    return net.to(device).eval(), payload["net"]
